/* SPDX-License-Identifier: MIT */
/* test_cli.c - the shset and shset-inspect programs, end to end. */
#include "helpers.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "json.h"
#include "shset.h"
#include "shset/inspect.h"

#if !defined(SHSET_TOOL) || !defined(INSPECT_TOOL)
#error "SHSET_TOOL and INSPECT_TOOL must name the programs"
#endif

static char dir[64], sock[96], snap[96], errpath[96];
static char out[1 << 20], err[1 << 16];
static size_t out_len; /* out may hold NULs */
/* Seconds after which a run is killed (SIGALRM: status 142); 0: never. */
static unsigned run_limit;

/* Drops root for user @uid, group and supplementary groups too. */
static int become(int uid)
{
	if (uid < 0)
		return 0;
	if (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0)
		return -1;
	return 0;
}

/* Runs argv with @in on stdin (may be NULL) as user @uid (-1: ours);
 * stdout goes to `out`, stderr to `err`.  Returns the exit status. */
static int run_as(int uid, const char *in, size_t inlen, const char *const *argv)
{
	int ip[2], op[2];
	ck_assert_int_eq(pipe(ip), 0);
	ck_assert_int_eq(pipe(op), 0);
	int ef = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	ck_assert_int_ge(ef, 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(ip[0], 0);
		dup2(op[1], 1);
		dup2(ef, 2);
		close(ip[1]);
		close(op[0]);
		if (become(uid) < 0)
			_exit(126);
		if (run_limit)
			alarm(run_limit); /* survives exec: a hung tool dies of SIGALRM */
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(ef);
	close(ip[0]);
	close(op[1]);
	if (in)
		write_all(ip[1], in, inlen);
	close(ip[1]);
	size_t n = 0;
	ssize_t r;
	while ((r = read(op[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	out_len = n;
	close(op[0]);
	int st = wait_status(pid);
	ef = open(errpath, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ef, 0);
	r = read(ef, err, sizeof(err) - 1);
	err[r > 0 ? r : 0] = 0;
	close(ef);
	return st;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

#define RUN(in, ...) run_as(-1, in, slen(in), (const char *const[]){__VA_ARGS__, NULL})
#define SH(...)	     RUN(NULL, SHSET_TOOL, __VA_ARGS__)

static pid_t server;

/* 1 when something accepts connections on @path (file or @abstract). */
static int listening(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	ck_assert_uint_lt(n, sizeof(a.sun_path));
	memcpy(a.sun_path, path, n);
	if (path[0] == '@')
		a.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ok = connect(fd, (struct sockaddr *)&a,
			 (socklen_t)(path[0] == '@' ? offsetof(struct sockaddr_un, sun_path) + n
						    : sizeof(a))) == 0;
	close(fd);
	return ok;
}

/* Starts `shset serve` on @socket_path as user @uid (-1: ours). */
static void start_server_as(int uid, const char *socket_path, const char *extra1,
			    const char *extra2)
{
	server = fork();
	if (server == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		/* After become(): a change of uid clears the death signal. */
		if (become(uid) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			_exit(126);
		execl(SHSET_TOOL, SHSET_TOOL, "serve", "--socket", socket_path, extra1, extra2,
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		if (listening(socket_path))
			return;
		usleep(10000);
	}
	ck_abort_msg("server did not come up");
}

static void start_server(const char *socket_path, const char *extra1, const char *extra2)
{
	start_server_as(-1, socket_path, extra1, extra2);
}

static int stop_server(void)
{
	kill(server, SIGTERM);
	return wait_status(server);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/shset-cli-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(snap, sizeof(snap), "%s/snap.shs", dir);
	snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
	run_limit = 0;
}

static void teardown(void)
{
	char p[160];
	const char *names[] = {"sock", "snap.shs",   "copy.shs", "bad.shs", "stderr", "fifo",
			       "file", "redis.sock", "dump.rdb", "new.shs", "notify"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

START_TEST(round_trip)
{
	start_server(sock, "--save", snap);
	ck_assert_int_eq(SH("add", "--socket", sock, "apple", "pear", "fig"), 0);
	ck_assert_str_eq(out, "added 3 of 3\n");
	ck_assert_int_eq(SH("add", "--socket", sock, "apple"), 0);
	ck_assert_str_eq(out, "added 0 of 1\n");
	ck_assert_int_eq(RUN("kiwi\nplum\n", SHSET_TOOL, "add", "--socket", sock), 0);
	ck_assert_str_eq(out, "added 2 of 2\n");
	ck_assert_int_eq(
	    run_as(-1, "a\nb\0line\nbreak\0", 15,
		   (const char *const[]){SHSET_TOOL, "add", "--socket", sock, "-0", NULL}),
	    0);
	ck_assert_str_eq(out, "added 2 of 2\n");
	ck_assert_int_eq(SH("add", "--socket", sock, "--hex", "00ff10"), 0);
	ck_assert_int_eq(SH("contains", "--socket", sock, "--hex", "00ff10"), 0);
	ck_assert_int_eq(SH("contains", "--socket", sock, "apple", "fig"), 0);
	ck_assert_int_eq(SH("contains", "--socket", sock, "apple", "durian"), 1);
	ck_assert_int_eq(SH("contains", "--socket", sock, "--json", "apple", "durian"), 1);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"present\": false"));
	ck_assert_int_eq(SH("remove", "--socket", sock, "pear", "durian"), 0);
	ck_assert_str_eq(out, "removed 1 of 2\n");
	ck_assert_int_eq(SH("size", "--socket", sock), 0);
	ck_assert_str_eq(out, "7\n");
	ck_assert_int_eq(SH("size", "--socket", sock, "--json"), 0);
	ck_assert(json_valid(out));
	ck_assert_str_eq(out, "{\"count\": 7}\n");
	ck_assert_int_eq(SH("list", "--socket", sock), 0);
	ck_assert_ptr_nonnull(strstr(out, "line\\nbreak\n"));
	ck_assert_ptr_nonnull(strstr(out, "\\x00\\xff\\x10\n"));
	ck_assert_ptr_nonnull(strstr(out, "kiwi\n"));
	ck_assert_int_eq(SH("list", "--socket", sock, "--json"), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "{\"base64\": \"AP8Q\"}"));
	ck_assert_int_eq(SH("list", "--socket", sock, "--hex"), 0);
	ck_assert_ptr_nonnull(strstr(out, "6b697769\n"));
	ck_assert_int_eq(SH("stats", "--socket", sock, "--json"), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"count\": 7"));
	ck_assert_int_eq(SH("stats", "--socket", sock), 0);
	ck_assert_ptr_nonnull(strstr(out, "keys 7\n"));

	/* The server saves on a clean stop and removes its socket. */
	ck_assert_int_eq(stop_server(), 0);
	ck_assert_int_ne(access(sock, F_OK), 0);
	shset *l;
	ck_assert_int_eq(shset_load(&l, snap, NULL), 0);
	ck_assert_int_eq(shset_size(l), 7);
	ck_assert_int_eq(shset_contains(l, "line\nbreak", 10), 1);
	shset_close(l);

	/* ... and loads it again. */
	start_server(sock, "--load", snap);
	ck_assert_int_eq(SH("contains", "--socket", sock, "kiwi"), 0);
	ck_assert_int_eq(SH("clear", "--socket", sock), 0);
	ck_assert_int_eq(SH("size", "--socket", sock), 0);
	ck_assert_str_eq(out, "0\n");
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

START_TEST(errors_and_usage)
{
	ck_assert_int_eq(SH("--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "usage:"));
	const char *sub[] = {"serve", "add",   "remove", "contains", "size",
			     "list",  "clear", "save",	 "stats",    "demo"};
	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		ck_assert_int_eq(SH(sub[i], "--help"), 0);
		ck_assert_ptr_nonnull(strstr(out, sub[i]));
	}
	ck_assert_int_eq(SH("frobnicate"), 2);
	ck_assert_int_eq(SH("add", "--bogus"), 2);
	ck_assert_int_eq(SH("add", "x"), 2);				 /* no --socket */
	ck_assert_int_eq(SH("add", "--socket", sock, "--hex", "zz"), 2); /* not hex */
	ck_assert_int_eq(SH("serve", "--socket", sock, "--every", "5"), 2);
	ck_assert_int_eq(SH("serve", "--socket", sock, "--server-uid", "5"), 2);
	ck_assert_ptr_nonnull(strstr(err, "option of the clients"));
	/* Nobody serves that socket. */
	ck_assert_int_eq(SH("size", "--socket", sock), 3);
	ck_assert_int_eq(SH("size", "--socket", "@shset-test-nobody"), 3);
	/* A snapshot that does not load. */
	ck_assert_int_eq(SH("serve", "--socket", sock, "--load", dir), 5);
	ck_assert_ptr_nonnull(strstr(err, "directory"));

	/* Abstract sockets work, and leave no file. */
	char abs_name[64];
	snprintf(abs_name, sizeof(abs_name), "@shset-test-%d", getpid());
	start_server(abs_name, NULL, NULL);
	ck_assert_int_eq(SH("add", "--socket", abs_name, "k"), 0);
	ck_assert_int_eq(SH("contains", "--socket", abs_name, "k"), 0);
	/* A second server on the same name is refused. */
	ck_assert_int_eq(SH("serve", "--socket", abs_name), 5);
	/* Another user is refused by the server (testable when we are root). */
	if (getuid() == 0) {
		ck_assert_int_eq(
		    run_as(65534, NULL, 0,
			   (const char *const[]){SHSET_TOOL, "size", "--socket", abs_name, NULL}),
		    3);
	}
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

START_TEST(inspect_files_and_live_sets)
{
	start_server(sock, NULL, NULL);
	ck_assert_int_eq(SH("add", "--socket", sock, "one", "two", "three"), 0);
	ck_assert_int_eq(SH("save", "--socket", sock, "--sorted", snap), 0);

	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, snap), 0);
	ck_assert_ptr_nonnull(strstr(out, "Keys: 3"));
	ck_assert_ptr_nonnull(strstr(out, "Status: sound"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--keys", snap), 0);
	ck_assert_ptr_nonnull(strstr(out, "one\ntwo\nthree\n")); /* sorted: length, bytes */
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", "--keys", snap), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"count\": 3"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--verify", "-q", snap), 0);
	ck_assert_str_eq(out, "");

	/* A corrupted copy. */
	char bad[160];
	snprintf(bad, sizeof(bad), "%s/bad.shs", dir);
	int in = open(snap, O_RDONLY), o2 = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[4096];
	ssize_t n = read(in, buf, sizeof(buf));
	buf[n - 1] ^= 0x40;
	ck_assert_int_eq(write(o2, buf, (size_t)n), n);
	close(in);
	close(o2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--verify", bad), 1);
	ck_assert_ptr_nonnull(strstr(out, "body checksum mismatch"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", bad), 4);
	ck_assert(json_valid(out));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL), 2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--bogus", snap), 2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "/nonexistent"), 5);

	/* Live, through the server's socket. */
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--socket", sock, "--keys"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Keys: 3"));
	ck_assert_ptr_nonnull(strstr(out, "Lock: free"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--socket", sock, "--json"), 0);
	ck_assert(json_valid(out));
	ck_assert_int_eq(stop_server(), 0);

	/* Live, through /proc/PID/fd/N, while other processes write. */
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	pid_t w[2];
	for (int i = 0; i < 2; i++) {
		w[i] = fork();
		if (w[i] == 0) {
			shset *c;
			char k[32];
			if (shset_attach_fd(&c, shset_fd(s)))
				_exit(1);
			for (int j = 0;; j++) {
				int len = snprintf(k, sizeof(k), "w%d-%d", i, j % 5000);
				if (j % 3 == 2)
					shset_remove(c, k, (size_t)len);
				else
					shset_add(c, k, (size_t)len);
				if (j % 500 == 499)
					usleep(1000); /* writers with a life besides the set */
			}
		}
	}
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", getpid(), shset_fd(s));
	usleep(50000);
	for (int i = 0; i < 5; i++) {
		int code = RUN(NULL, INSPECT_TOOL, "--json", "--verify", proc);
		ck_assert_int_eq(code, 0);
		ck_assert(json_valid(out));
		ck_assert_ptr_nonnull(strstr(out, "\"kind\": \"live\""));
		ck_assert_ptr_nonnull(strstr(out, "\"alive\": true"));
	}
	for (int i = 0; i < 2; i++) {
		kill(w[i], SIGKILL);
		wait_status(w[i]);
	}
	/* Inspection takes no slot and no lock: the counters show only the
	 * writers' acquisitions. */
	ck_assert_int_eq(shset_verify(s), 0);
	struct shset_stats a, b;
	shset_stats(s, &a);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--keys", "--verify", proc), 0);
	ck_assert_ptr_nonnull(strstr(out, "gone"));
	shset_stats(s, &b);
	ck_assert_uint_eq(a.lock.acquisitions, b.lock.acquisitions);
	ck_assert_uint_eq(a.attached, b.attached);
	ck_assert_uint_eq(a.txns, b.txns);
	shset_close(s);
}
END_TEST

/* Clients check who serves before they take anything from the socket: a
 * server of another user (one that bound the name first) is refused. */
START_TEST(clients_check_the_server)
{
	if (getuid() != 0)
		return; /* needs a second user to run the server */
	char name[64];
	snprintf(name, sizeof(name), "@shset-test-nobody-%d", getpid());
	start_server_as(65534, name, NULL, NULL);

	const char *msg = "refusing server on @shset-test-nobody-";
	ck_assert_int_eq(SH("add", "--socket", name, "secret"), 3);
	ck_assert_ptr_nonnull(strstr(err, msg));
	ck_assert_ptr_nonnull(
	    strstr(err, "it runs as uid 65534, not 0; use --server-uid 65534 to trust it"));
	ck_assert_str_eq(out, "");
	const char *clients[][2] = {{"size", NULL},  {"list", NULL},	   {"clear", NULL},
				    {"stats", NULL}, {"remove", "secret"}, {"contains", "secret"}};
	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		ck_assert_int_eq(SH(clients[i][0], "--socket", name, clients[i][1]), 3);
		ck_assert_ptr_nonnull(strstr(err, msg));
	}
	ck_assert_int_eq(SH("save", "--socket", name, snap), 3);
	ck_assert_ptr_nonnull(strstr(err, msg));
	ck_assert_int_ne(access(snap, F_OK), 0);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--socket", name), 3);
	ck_assert_ptr_nonnull(strstr(err, "refusing server on @"));
	ck_assert_str_eq(out, "");
	/* Trusting another uid is not trusting every uid. */
	ck_assert_int_eq(SH("add", "--server-uid", "1234", "--socket", name, "secret"), 3);
	ck_assert_ptr_nonnull(strstr(err, "not 0 or 1234"));
	ck_assert_int_eq(SH("size", "--server-uid", "nobody", "--socket", name), 2);
	ck_assert_int_eq(SH("size", "--server-uid", "-1", "--socket", name), 2);

	/* Named, it is trusted; and it received nothing before. */
	ck_assert_int_eq(SH("size", "--socket", name, "--server-uid", "65534"), 0);
	ck_assert_str_eq(out, "0\n");
	ck_assert_int_eq(SH("add", "--socket", name, "--server-uid", "65534", "k"), 0);
	ck_assert_str_eq(out, "added 1 of 1\n");
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--server-uid", "65534", "--socket", name), 0);
	ck_assert_ptr_nonnull(strstr(out, "Keys: 1"));
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* serve replaces only a stale socket; bind errors keep their errno. */
START_TEST(serve_socket_paths)
{
	char file[160], sub[160], path[300];
	snprintf(file, sizeof(file), "%s/file", dir);
	run_limit = (unsigned)(5 * test_scale()); /* a serve that starts would never end */

	/* A regular file is never replaced. */
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_eq(write(fd, "precious\n", 9), 9);
	close(fd);
	ck_assert_int_eq(SH("serve", "--socket", file), 5);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	char buf[32] = {0};
	fd = open(file, O_RDONLY);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 9);
	ck_assert_str_eq(buf, "precious\n");
	close(fd);

	/* Nor a FIFO, a directory or a symlink (even to a stale socket). */
	snprintf(sub, sizeof(sub), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(sub, 0600), 0);
	ck_assert_int_eq(SH("serve", "--socket", sub), 5);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	ck_assert_int_eq(unlink(sub), 0);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	ck_assert_int_eq(SH("serve", "--socket", sub), 5);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	ck_assert_int_eq(rmdir(sub), 0);

	/* A stale socket: its server was killed and left it. */
	start_server(sock, NULL, NULL);
	kill(server, SIGKILL);
	ck_assert_int_eq(wait_status(server), 128 + SIGKILL);
	struct stat st;
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	snprintf(sub, sizeof(sub), "%s/link", dir);
	ck_assert_int_eq(symlink(sock, sub), 0);
	ck_assert_int_eq(SH("serve", "--socket", sub), 5);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	ck_assert_int_eq(unlink(sub), 0);
	start_server(sock, NULL, NULL);
	ck_assert_int_eq(SH("add", "--socket", sock, "k"), 0);
	/* ... but a live one is not taken over. */
	ck_assert_int_eq(SH("serve", "--socket", sock), 5);
	ck_assert_ptr_nonnull(strstr(err, "Address already in use"));
	ck_assert_int_eq(SH("size", "--socket", sock), 0);
	ck_assert_str_eq(out, "1\n");
	ck_assert_int_eq(stop_server(), 0);

	/* bind's own errno, not listen's. */
	ck_assert_int_eq(SH("serve", "--socket", "/nonexistent-shset-dir/sock"), 5);
	ck_assert_ptr_nonnull(strstr(err, "No such file or directory"));
	ck_assert_ptr_null(strstr(err, "Invalid argument"));
	memset(path, 0, sizeof(path));
	snprintf(path, sizeof(path), "%s/", dir);
	memset(path + strlen(path), 'x', 150);
	ck_assert_int_eq(SH("serve", "--socket", path), 5);
	ck_assert_ptr_nonnull(strstr(err, "socket path too long"));
	ck_assert_int_eq(SH("size", "--socket", path), 3);
	ck_assert_ptr_nonnull(strstr(err, "socket path too long"));
}
END_TEST

/* SIGHUP (a closed terminal) stops the server as SIGTERM does. */
START_TEST(serve_stops_on_sighup)
{
	start_server(sock, "--save", snap);
	ck_assert_int_eq(SH("add", "--socket", sock, "kept"), 0);
	kill(server, SIGHUP);
	ck_assert_int_eq(wait_status(server), 0);
	ck_assert_int_ne(access(sock, F_OK), 0);
	shset *l;
	ck_assert_int_eq(shset_load(&l, snap, NULL), 0);
	ck_assert_int_eq(shset_contains(l, "kept", 4), 1);
	shset_close(l);
}
END_TEST

/* Paths that are not files are refused at once, never opened blocking. */
START_TEST(inspect_refuses_non_files)
{
	char fifo[160], buf[64];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	run_limit = (unsigned)(5 * test_scale());

	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, fifo), 5);
	ck_assert_ptr_nonnull(strstr(err, "FIFO"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--verify", fifo), 5);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, dir), 5);
	ck_assert_ptr_nonnull(strstr(err, "directory"));
	ck_assert_int_eq(SH("serve", "--socket", sock, "--load", fifo), 5);
	ck_assert_ptr_nonnull(strstr(err, "FIFO"));
	ck_assert_int_ne(access(sock, F_OK), 0);

	/* Descriptors that are not sets: a pipe, a socket, a plain memfd. */
	int p[2], sv[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	snprintf(buf, sizeof(buf), "/proc/%d/fd/%d", getpid(), p[0]);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, buf), 5);
	ck_assert_ptr_nonnull(strstr(err, "FIFO"));
	snprintf(buf, sizeof(buf), "/proc/%d/fd/%d", getpid(), sv[0]);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, buf), 5);
	ck_assert_ptr_nonnull(strstr(err, "socket"));
	int m = memfd_create("not-a-set", MFD_ALLOW_SEALING);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(ftruncate(m, 65536), 0);
	snprintf(buf, sizeof(buf), "/proc/%d/fd/%d", getpid(), m);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, buf), 4);
	ck_assert_ptr_nonnull(strstr(err, "not a live set"));
	close(m);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* shset-inspect shows the key type a live set records. */
START_TEST(inspect_key_type)
{
	shset *s;
	struct shset_opts so = {.key_type = SHSET_KEYS_STR};
	ck_assert_int_eq(shset_create(&s, &so), 0);
	ck_assert_int_eq(shset_add(s, "x", 1), 1);
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", getpid(), shset_fd(s));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, proc), 0);
	ck_assert_ptr_nonnull(strstr(out, "  Key type: str\n"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", proc), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"key_type\": \"str\""));
	shset_close(s);
	so.key_type = SHSET_KEYS_INT;
	ck_assert_int_eq(shset_create(&s, &so), 0);
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", getpid(), shset_fd(s));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", proc), 0);
	ck_assert_ptr_nonnull(strstr(out, "\"key_type\": \"int\""));
	shset_close(s);

	start_server(sock, NULL, NULL);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", "--socket", sock), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"key_type\": \"bytes\""));
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* --- keys through every mode ------------------------------------------------------------ */

/* The set a served socket holds, through the library. */
static shset *served(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	shset *s;
	ck_assert_int_eq(shset_recv(fd, &s), 0);
	close(fd);
	return s;
}

static const struct {
	const char *k;
	size_t len;
} hard[] = {
#define K(lit)                                                                                     \
	{                                                                                          \
		lit, sizeof(lit) - 1                                                               \
	}
    K("caf\xc3\xa9"),
    K("back\\slash"),
    K(""),
    K("\0"),
    K("a\0b"),
    K("line\nbreak"),
    K("\xff\xfe binary"),
    K("tab\there\r"),
    K("\\x41 is not A"),
    K("\\"),
    K("\xc2\x85 C1"),
    K("\xc0\xaf overlong"),
    K("\xed\xa0\x80 surrogate"),
    K("\xf0\x9f\x98\x80"),
    K("\x7f del"),
    K("\"quoted\""),
    K("{\"base64\": \"AA==\"}"),
    K("1) \"redis\""),
    K(" spaces "),
#undef K
};
#define NHARD (sizeof(hard) / sizeof(hard[0]))

static char in_copy[1 << 20];
static size_t in_len;

/* Keeps what the last run printed, to feed it to later runs. */
static void keep_output(void)
{
	ck_assert_uint_lt(out_len, sizeof(in_copy));
	memcpy(in_copy, out, out_len);
	in_len = out_len;
}

/* Feeds the kept output to `shset CMD --socket sock MODE`. */
static int feed_back(const char *cmd, const char *mode)
{
	return run_as(-1, in_copy, in_len,
		      (const char *const[]){SHSET_TOOL, cmd, "--socket", sock, mode, NULL});
}

/* Keeps the keys @keep accepts in the served set and in @ref. */
static void only_keys(shset *h, shset *ref, int (*keep)(size_t))
{
	for (size_t i = 0; i < NHARD; i++)
		if (!keep(i)) {
			shset_remove(h, hard[i].k, hard[i].len);
			shset_remove(ref, hard[i].k, hard[i].len);
		}
}

static int no_nul(size_t i)
{
	return !memchr(hard[i].k, 0, hard[i].len);
}

static int no_newline(size_t i)
{
	return !memchr(hard[i].k, '\n', hard[i].len);
}

/* `list` in a mode, then `remove` and `add` in the same mode: the same keys. */
static void round_trip_mode(const char *mode, shset *h, shset *ref, size_t n)
{
	char want[64];
	int json = !strcmp(mode, "--json");
	ck_assert_int_eq(SH("list", "--socket", sock, mode), 0);
	keep_output();
	int code = feed_back("remove", mode);
	ck_assert_msg(code == 0, "remove %s: exit %d: %s", mode, code, err);
	snprintf(want, sizeof(want),
		 json ? "{\"removed\": %zu, \"given\": %zu}\n" : "removed %zu of %zu\n", n, n);
	ck_assert_msg(!strcmp(out, want), "%s: %s / %s", mode, out, err);
	ck_assert_int_eq(shset_size(h), 0);
	code = feed_back("add", mode);
	ck_assert_msg(code == 0, "add %s: exit %d: %s", mode, code, err);
	snprintf(want, sizeof(want),
		 json ? "{\"added\": %zu, \"given\": %zu}\n" : "added %zu of %zu\n", n, n);
	ck_assert_msg(!strcmp(out, want), "%s: %s / %s", mode, out, err);
	ck_assert_int_eq(shset_equal(h, ref), 1);
}

START_TEST(keys_round_trip_every_mode)
{
	start_server(sock, NULL, NULL);
	shset *h = served(sock), *ref;
	ck_assert_int_eq(shset_create(&ref, NULL), 0);
	for (size_t i = 0; i < NHARD; i++) {
		ck_assert_int_eq(shset_add(h, hard[i].k, hard[i].len), 1);
		ck_assert_int_eq(shset_add(ref, hard[i].k, hard[i].len), 1);
	}
	round_trip_mode("--hex", h, ref, NHARD);
	round_trip_mode("--json", h, ref, NHARD);
	round_trip_mode("--", h, ref, NHARD); /* text */

	/* Text: UTF-8 as it is, escapes for the rest; JSON: strings for
	 * UTF-8, base64 for the others. */
	ck_assert_int_eq(SH("list", "--socket", sock), 0);
	ck_assert_ptr_nonnull(strstr(out, "\ncaf\xc3\xa9\n") ? out : strstr(out, "caf\xc3\xa9\n"));
	ck_assert_ptr_nonnull(strstr(out, "back\\\\slash\n"));
	ck_assert_ptr_nonnull(strstr(out, "\\\\x41 is not A\n"));
	ck_assert_ptr_nonnull(strstr(out, "\\xc2\\x85 C1\n"));
	ck_assert_ptr_nonnull(strstr(out, "\xf0\x9f\x98\x80\n"));
	/* The empty key: a blank line (the first line, if it is listed first). */
	ck_assert(out[0] == '\n' || strstr(out, "\n\n"));
	ck_assert_int_eq(SH("list", "--socket", sock, "--json"), 0);
	ck_assert(json_valid(out));
	ck_assert_ptr_nonnull(strstr(out, "\"caf\xc3\xa9\""));
	ck_assert_ptr_nonnull(strstr(out, "\"line\\nbreak\""));
	ck_assert_ptr_nonnull(strstr(out, "\"\\u0000\""));
	ck_assert_ptr_nonnull(strstr(out, "{\"base64\": \"//4gYmluYXJ5\"}"));
	ck_assert_ptr_nonnull(strstr(out, "\"{\\\"base64\\\": \\\"AA==\\\"}\""));

	/* -0 and --raw refuse a set they cannot carry, and print nothing. */
	ck_assert_int_eq(SH("list", "--socket", sock, "-0"), 5);
	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(strstr(err, "NUL byte, which -0 cannot carry: use --hex, --json"));
	ck_assert_int_eq(SH("list", "--socket", sock, "--raw", "--sorted"), 5);
	ck_assert_str_eq(out, "");
	ck_assert_ptr_nonnull(strstr(err, "newline, which --raw cannot carry"));
	size_t n0 = 0, nr = 0;
	for (size_t i = 0; i < NHARD; i++) {
		n0 += no_nul(i);
		nr += no_nul(i) && no_newline(i);
	}
	only_keys(h, ref, no_nul);
	round_trip_mode("-0", h, ref, n0);
	only_keys(h, ref, no_newline);
	round_trip_mode("--raw", h, ref, nr);

	/* --sorted is byte order: what LC_ALL=C sort makes of the raw lines. */
	ck_assert_int_eq(SH("list", "--socket", sock, "--raw", "--sorted"), 0);
	char sorted[4096];
	ck_assert_uint_lt(out_len, sizeof(sorted));
	memcpy(sorted, out, out_len + 1);
	ck_assert_int_eq(SH("list", "--socket", sock, "--raw"), 0);
	keep_output();
	setenv("LC_ALL", "C", 1);
	ck_assert_int_eq(run_as(-1, in_copy, in_len, (const char *const[]){"/usr/bin/sort", NULL}),
			 0);
	ck_assert_str_eq(out, sorted);
	shset_close(ref);
	shset_close(h);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* What the line modes read, exactly; and the errors, with line numbers. */
START_TEST(keys_input_rules)
{
	start_server(sock, NULL, NULL);
	shset *h = served(sock);
	/* A blank line is the empty key; a final newline is not one more. */
	ck_assert_int_eq(RUN("a\n\nb\n", SHSET_TOOL, "add", "--socket", sock), 0);
	ck_assert_str_eq(out, "added 3 of 3\n");
	ck_assert_int_eq(shset_contains(h, "", 0), 1);
	ck_assert_int_eq(RUN("c", SHSET_TOOL, "add", "--socket", sock), 0);
	ck_assert_str_eq(out, "added 1 of 1\n");
	ck_assert_int_eq(RUN("", SHSET_TOOL, "add", "--socket", sock), 0);
	ck_assert_str_eq(out, "added 0 of 0\n");
	ck_assert_int_eq(RUN("caf\\xC3\\xA9\\t\\\\\n", SHSET_TOOL, "add", "--socket", sock), 0);
	ck_assert_int_eq(shset_contains(h, "caf\xc3\xa9\t\\", 7), 1);
	/* Arguments are keys as they are. */
	ck_assert_int_eq(SH("add", "--socket", sock, "C:\\dir\\x41"), 0);
	ck_assert_int_eq(shset_contains(h, "C:\\dir\\x41", 10), 1);

	/* Errors name the line and the way out; nothing is added. */
	long long before = shset_size(h);
	ck_assert_int_eq(RUN("ok\nC:\\dir\n", SHSET_TOOL, "add", "--socket", sock), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 2: unknown escape '\\d'"));
	ck_assert_ptr_nonnull(strstr(err, "--raw"));
	ck_assert_int_eq(RUN("x\\\n", SHSET_TOOL, "add", "--socket", sock), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 1: a backslash ends the line"));
	ck_assert_int_eq(RUN("\\x4\n", SHSET_TOOL, "add", "--socket", sock), 5);
	ck_assert_ptr_nonnull(strstr(err, "two hex digits"));
	ck_assert_int_eq(RUN("00ff\n\nzz\n", SHSET_TOOL, "add", "--socket", sock, "--hex"), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 3: not hex"));
	ck_assert_int_eq(RUN("abc\n", SHSET_TOOL, "add", "--socket", sock, "--hex"), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 1: an odd number of hex digits"));
	ck_assert_int_eq(RUN("[\"a\",\n 7]", SHSET_TOOL, "add", "--socket", sock, "--json"), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 2: malformed JSON"));
	ck_assert_int_eq(
	    RUN("[{\"base64\": \"!!\"}]", SHSET_TOOL, "add", "--socket", sock, "--json"), 5);
	ck_assert_ptr_nonnull(strstr(err, "not base64"));
	ck_assert_int_eq(RUN("[\"\\ud800\"]", SHSET_TOOL, "add", "--socket", sock, "--json"), 5);
	ck_assert_ptr_nonnull(strstr(err, "surrogate"));
	ck_assert_int_eq(RUN("[\"\xff\"]", SHSET_TOOL, "add", "--socket", sock, "--json"), 5);
	ck_assert_ptr_nonnull(strstr(err, "not UTF-8"));
	ck_assert_int_eq(shset_size(h), before);

	/* The empty key first, before any buffer exists (UBSan: memcpy from
	 * NULL). */
	ck_assert_int_eq(RUN("[\"\", \"x\"]", SHSET_TOOL, "remove", "--socket", sock, "--json"), 0);
	ck_assert_int_eq(RUN("[\"\", \"x\"]", SHSET_TOOL, "add", "--socket", sock, "--json"), 0);
	ck_assert_str_eq(out, "{\"added\": 2, \"given\": 2}\n");

	/* JSON Lines, and escapes of every kind. */
	ck_assert_int_eq(RUN("\"j1\"\n{\"base64\":\"AAE=\"}\n\"\\u00e9\\ud83d\\ude00\\/\"\n",
			     SHSET_TOOL, "add", "--socket", sock, "--json"),
			 0);
	ck_assert_str_eq(out, "{\"added\": 3, \"given\": 3}\n");
	ck_assert_int_eq(shset_contains(h, "\0\1", 2), 1);
	ck_assert_int_eq(shset_contains(h, "\xc3\xa9\xf0\x9f\x98\x80/", 7), 1);

	/* redis-cli --no-raw replies. */
	ck_assert_int_eq(RUN(" 1) \"r\\xc3\\xa9\\n\\\"\"\n 2) \"\"\n10) \"ten\"\n", SHSET_TOOL,
			     "remove", "--socket", sock, "--redis"),
			 0);
	ck_assert_int_eq(RUN(" 1) \"r\\xc3\\xa9\\n\\\"\"\n 2) \"\"\n10) \"ten\"\n", SHSET_TOOL,
			     "add", "--socket", sock, "--redis"),
			 0);
	ck_assert_str_eq(out, "added 3 of 3\n");
	ck_assert_int_eq(shset_contains(h, "r\xc3\xa9\n\"", 5), 1);
	ck_assert_int_eq(RUN("(empty array)\n", SHSET_TOOL, "add", "--socket", sock, "--redis"), 0);
	ck_assert_str_eq(out, "added 0 of 0\n");
	ck_assert_int_eq(RUN("1) unquoted\n", SHSET_TOOL, "add", "--socket", sock, "--redis"), 5);
	ck_assert_ptr_nonnull(strstr(err, "line 1"));

	/* The key limit is named. */
	static char big[70002];
	memset(big, 'k', 70000);
	big[70000] = '\n';
	ck_assert_int_eq(
	    run_as(-1, big, 70001,
		   (const char *const[]){SHSET_TOOL, "add", "--socket", sock, "--raw", NULL}),
	    5);
	ck_assert_ptr_nonnull(strstr(err, "line 1: a key of 70000 bytes is longer than the limit "
					  "of 65535 bytes"));
	shset_close(h);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* Each command takes its own options, and checks their values. */
START_TEST(options_are_checked)
{
	run_limit = (unsigned)(10 * test_scale()); /* a serve that starts would never end */
	const char *bad[][8] = {
	    {"serve", "--socket", "S", "--save", "F", "--every", "abc"},
	    {"serve", "--socket", "S", "--save", "F", "--every", "0"},
	    {"serve", "--socket", "S", "--save", "F", "--every", "-3"},
	    {"serve", "--socket", "S", "--save", "F", "--every", "5x"},
	    {"serve", "--socket", "S", "--mode", "999"},
	    {"serve", "--socket", "S", "--hex"},
	    {"serve", "--socket", "S", "extra"},
	    {"list", "--socket", "S", "--hex", "-0"},
	    {"list", "--socket", "S", "--json", "--raw"},
	    {"list", "--socket", "S", "--redis"},
	    {"list", "--socket", "S", "extra"},
	    {"size", "--socket", "S", "--workers", "5"},
	    {"size", "--socket", "S", "--sorted"},
	    {"size", "--socket", "S", "extra"},
	    {"size", "--socket", "S", "--timeout", "abc"},
	    {"size", "--socket", "S", "--timeout", "-1"},
	    {"size", "--socket", "S", "--socket", "T"},
	    {"add", "--socket", "S", "-0", "key"},
	    {"add", "--socket", "S", "--raw", "key"},
	    {"add", "--socket", "S", "--sorted"},
	    {"add", "--socket", "S", "--hex=1"},
	    {"save", "--socket", "S"},
	    {"save", "--socket", "S", "a", "b"},
	    {"export", "--socket", "S"},
	    {"export", "--socket", "S", "--replace"},
	    {"demo", "--workers", "1"},
	    {"demo", "--workers", "two"},
	    {"demo", "--keys", "10"},
	    {"demo", "--socket", "S"},
	    {"stats", "--socket"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[10] = {SHSET_TOOL};
		for (int j = 0; j < 8 && bad[i][j]; j++)
			argv[j + 1] = bad[i][j];
		int code = run_as(-1, NULL, 0, argv);
		ck_assert_msg(code == 2, "%s %s %s %s: exit %d", bad[i][0], bad[i][3], bad[i][4],
			      bad[i][5] ? bad[i][5] : "", code);
		ck_assert_str_eq(out, "");
		ck_assert_str_ne(err, "");
	}
	ck_assert_int_eq(SH("list", "--socket", "S", "--hex", "-0"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--hex and -0 exclude each other"));
	ck_assert_int_eq(SH("size", "--socket", "S", "--workers", "5"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--workers is not an option of size"));
	ck_assert_int_eq(SH("serve", "--socket", "S", "--save", "F", "--every", "0"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--every needs a whole number of seconds > 0, not '0'"));
	ck_assert_int_eq(SH("size"), 2);
	ck_assert_ptr_nonnull(strstr(err, "SHSET_SOCKET"));
	/* --opt=value works as --opt value. */
	ck_assert_int_eq(SH("size", "--socket=@shset-test-none", "--timeout=0.5"), 3);
	ck_assert_int_eq(SH("--version"), 0);
	ck_assert_ptr_nonnull(strstr(out, "shset "));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--version"), 0);
	ck_assert_ptr_nonnull(strstr(out, "shset-inspect "));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--hex", "-0", "--keys", "x"), 2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--hex", "x"), 2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "-q", "x"), 2);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "a", "b"), 2);
	/* Per-command help explains the modes and the JSON shapes. */
	ck_assert_int_eq(SH("add", "--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "base64"));
	ck_assert_ptr_nonnull(strstr(out, "blank line is the empty key"));
	ck_assert_ptr_nonnull(strstr(out, "{\"added\": N, \"given\": M}"));
	ck_assert_ptr_null(strstr(out, "--workers"));
}
END_TEST

/* Messages say what failed and what to do. */
START_TEST(messages_say_what_to_do)
{
	run_limit = (unsigned)(10 * test_scale());
	/* A dead server (its socket left behind) and none at all. */
	start_server(sock, NULL, NULL);
	kill(server, SIGKILL);
	wait_status(server);
	ck_assert_int_eq(SH("size", "--socket", sock), 3);
	ck_assert_ptr_nonnull(strstr(err, "Connection refused (is `shset serve --socket"));
	unlink(sock);
	ck_assert_int_eq(SH("list", "--socket", sock), 3);
	ck_assert_ptr_nonnull(strstr(err, "No such file or directory (is `shset serve"));

	/* --load of something that is not a snapshot names the defect. */
	char file[160];
	snprintf(file, sizeof(file), "%s/file", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char junk[200];
	memset(junk, 'j', sizeof(junk));
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	ck_assert_int_eq(SH("serve", "--socket", sock, "--load", file), 5);
	ck_assert_ptr_nonnull(strstr(err, "not a shset snapshot: bad magic"));
	ck_assert_int_ne(access(sock, F_OK), 0);
	/* ... as shset-inspect does, without fields read from junk. */
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, file), 4);
	ck_assert_ptr_nonnull(strstr(out, "Status: not a shset snapshot: bad magic"));
	ck_assert_ptr_null(strstr(out, "Keys:"));
	ck_assert_ptr_null(strstr(out, "Format version"));
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--json", file), 4);
	ck_assert(json_valid(out));
	ck_assert_ptr_null(strstr(out, "\"count\""));
	/* A damaged snapshot is named as one. */
	start_server(sock, NULL, NULL);
	ck_assert_int_eq(SH("add", "--socket", sock, "k"), 0);
	ck_assert_int_eq(SH("save", "--socket", sock, snap), 0);
	ck_assert_int_eq(stop_server(), 0);
	fd = open(snap, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "X", 1, 66), 1); /* in the body */
	close(fd);
	ck_assert_int_eq(SH("serve", "--socket", sock, "--load", snap), 5);
	ck_assert_ptr_nonnull(strstr(err, "a damaged snapshot: body checksum mismatch"));

	/* A refused client is told why (a second user: when we are root). */
	if (getuid() == 0) {
		start_server(sock, NULL, NULL);
		chmod(dir, 0755);
		chmod(sock, 0777);
		ck_assert_int_eq(run_as(65534, NULL, 0,
					(const char *const[]){SHSET_TOOL, "size", "--socket", sock,
							      "--server-uid", "0", NULL}),
				 3);
		ck_assert_ptr_nonnull(strstr(err, "the server refused this client: uid 65534 is "
						  "not admitted"));
		ck_assert_ptr_nonnull(strstr(err, "--mode/--group"));
		ck_assert_int_eq(stop_server(), 0);
	}
}
END_TEST

/* A socket that accepts and never answers (Redis's, say) does not hang a
 * client: it gives up after --timeout. */
START_TEST(timeout_on_a_mute_socket)
{
	run_limit = (unsigned)(20 * test_scale()); /* a hang dies of SIGALRM: 142 */
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(SH("size", "--socket", sock, "--timeout", "0.3"), 3);
	ck_assert_ptr_nonnull(strstr(err, "no answer within 0.3 s: is a shset server on it?"));
	/* The backlog fills: connect itself must not block. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(SH("list", "--socket", sock, "--timeout", "0.3"), 3);
	ck_assert_int_eq(RUN(NULL, INSPECT_TOOL, "--socket", sock, "--timeout", "0.3"), 3);
	ck_assert_ptr_nonnull(strstr(err, "no answer within"));
	/* A server that answers something else. */
	pid_t p = fork();
	if (p == 0) {
		for (;;) {
			/* The clients that gave up are queued first: no SIGPIPE. */
			int c = accept(l, NULL, NULL);
			if (send(c, "-ERR unknown command\r\n", 22, MSG_NOSIGNAL) < 0)
				(void)0;
			close(c);
		}
	}
	ck_assert_int_eq(SH("size", "--socket", sock), 3);
	ck_assert_ptr_nonnull(strstr(err, "not a shset server"));
	kill(p, SIGKILL);
	wait_status(p);
	close(l);
}
END_TEST

/* --- the bridge to Redis ------------------------------------------------------------------ */

static pid_t redis;
static char redis_sock[128];

/* A throwaway redis-server: a Unix socket in our directory, no TCP port,
 * no persistence. */
static void start_redis(void)
{
	snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
	redis = fork();
	if (redis == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", redis_sock,
		       "--save", "", "--appendonly", "no", "--dir", dir, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000 && !listening(redis_sock); i++) {
		ck_assert_msg(waitpid(redis, NULL, WNOHANG) == 0,
			      "redis-server did not start (.ci/deps installs it)");
		usleep(10000);
	}
	ck_assert_msg(listening(redis_sock), "redis-server did not come up");
}

static void stop_redis(void)
{
	kill(redis, SIGTERM);
	wait_status(redis);
	unlink(redis_sock);
}

#define REDIS_CLI(...) RUN(NULL, "/usr/bin/env", "redis-cli", "-s", redis_sock, __VA_ARGS__)

/* shset -> Redis (export --resp | redis-cli --pipe) -> shset (redis-cli
 * --no-raw SMEMBERS | add --redis): the same keys, binary and UTF-8 ones
 * included. */
START_TEST(redis_round_trip)
{
	run_limit = (unsigned)(30 * test_scale());
	start_redis();
	start_server(sock, NULL, NULL);
	shset *h = served(sock), *ref;
	ck_assert_int_eq(shset_create(&ref, NULL), 0);
	for (size_t i = 0; i < NHARD; i++) {
		ck_assert_int_eq(shset_add(h, hard[i].k, hard[i].len), 1);
		ck_assert_int_eq(shset_add(ref, hard[i].k, hard[i].len), 1);
	}
	/* More than one SADD batch. */
	char k[32];
	for (int i = 0; i < 2500; i++) {
		int n = snprintf(k, sizeof(k), "bulk-%d", i);
		ck_assert_int_eq(shset_add(h, k, (size_t)n), 1);
		ck_assert_int_eq(shset_add(ref, k, (size_t)n), 1);
	}
	long long total = shset_size(ref);

	/* A stale member, which --replace drops. */
	ck_assert_int_eq(REDIS_CLI("SADD", "{app}:keys", "stale"), 0);
	ck_assert_int_eq(SH("export", "--socket", sock, "--resp", "{app}:keys", "--replace"), 0);
	ck_assert_ptr_nonnull(strstr(out, "*1\r\n$5\r\nMULTI\r\n"));
	keep_output();
	ck_assert_int_eq(run_as(-1, in_copy, in_len,
				(const char *const[]){"/usr/bin/env", "redis-cli", "-s", redis_sock,
						      "--pipe", NULL}),
			 0);
	ck_assert_ptr_nonnull(strstr(out, "errors: 0"));
	ck_assert_int_eq(REDIS_CLI("SCARD", "{app}:keys"), 0);
	char want[32];
	snprintf(want, sizeof(want), "%lld\n", total);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(REDIS_CLI("SISMEMBER", "{app}:keys", "caf\xc3\xa9"), 0);
	ck_assert_str_eq(out, "1\n");
	ck_assert_int_eq(REDIS_CLI("SISMEMBER", "{app}:keys", "stale"), 0);
	ck_assert_str_eq(out, "0\n");

	/* Back: clear the shset and read Redis's members. */
	ck_assert_int_eq(SH("clear", "--socket", sock), 0);
	ck_assert_int_eq(REDIS_CLI("--no-raw", "SMEMBERS", "{app}:keys"), 0);
	keep_output();
	ck_assert_int_eq(feed_back("add", "--redis"), 0);
	snprintf(want, sizeof(want), "added %lld of %lld\n", total, total);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(shset_equal(h, ref), 1);

	/* redis-cli --raw is read by --raw, for members without a newline. */
	only_keys(h, ref, no_newline);
	ck_assert_int_eq(SH("export", "--socket", sock, "--resp", "plain", "--sorted"), 0);
	keep_output();
	ck_assert_int_eq(run_as(-1, in_copy, in_len,
				(const char *const[]){"/usr/bin/env", "redis-cli", "-s", redis_sock,
						      "--pipe", NULL}),
			 0);
	ck_assert_int_eq(SH("clear", "--socket", sock), 0);
	ck_assert_int_eq(REDIS_CLI("--raw", "SMEMBERS", "plain"), 0);
	keep_output();
	ck_assert_int_eq(feed_back("add", "--raw"), 0);
	ck_assert_int_eq(shset_equal(h, ref), 1);
	shset_close(ref);
	shset_close(h);
	ck_assert_int_eq(stop_server(), 0);
	stop_redis();
}
END_TEST

/* --- serve as a service ------------------------------------------------------------------- */

/* Starts `shset serve` with @args (NULL-terminated) and waits for @path. */
static void start_serve_args(const char *path, const char *const *args)
{
	const char *argv[16] = {SHSET_TOOL, "serve"};
	int n = 2;
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	server = fork();
	if (server == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(SHSET_TOOL, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 1000 && !listening(path); i++)
		usleep(10000);
	ck_assert_msg(listening(path), "server did not come up");
}

static ino_t inode_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* First boot, the --save check, and saves only when something changed. */
START_TEST(serve_first_boot_and_saves)
{
	char fresh[160];
	snprintf(fresh, sizeof(fresh), "%s/new.shs", dir);
	run_limit = (unsigned)(10 * test_scale());
	const char *args[] = {"--socket", sock, "--load", fresh, "--save", fresh, NULL};

	/* A missing --load file: an empty set, saved on the way out. */
	start_serve_args(sock, args);
	ck_assert_int_eq(SH("size", "--socket", sock), 0);
	ck_assert_str_eq(out, "0\n");
	ck_assert_int_eq(SH("add", "--socket", sock, "first"), 0);
	ck_assert_int_eq(stop_server(), 0);
	ino_t ino = inode_of(fresh);
	ck_assert_uint_ne(ino, 0);

	/* Loaded and unchanged: the file is not rewritten. */
	start_serve_args(sock, args);
	ck_assert_int_eq(SH("contains", "--socket", sock, "first"), 0);
	ck_assert_int_eq(stop_server(), 0);
	ck_assert_uint_eq(inode_of(fresh), ino);
	/* Changed: it is. */
	start_serve_args(sock, args);
	ck_assert_int_eq(SH("add", "--socket", sock, "second"), 0);
	ck_assert_int_eq(stop_server(), 0);
	ck_assert_uint_ne(inode_of(fresh), ino);
	shset *l;
	ck_assert_int_eq(shset_load(&l, fresh, NULL), 0);
	ck_assert_int_eq(shset_size(l), 2);
	shset_close(l);

	/* --save is checked at start, before the socket exists. */
	ck_assert_int_eq(SH("serve", "--socket", sock, "--save", "/nonexistent-shset-dir/x.shs"),
			 5);
	ck_assert_ptr_nonnull(strstr(err, "cannot save to /nonexistent-shset-dir/x.shs"));
	ck_assert_int_eq(SH("serve", "--socket", sock, "--save", dir), 5);
	ck_assert_ptr_nonnull(strstr(err, "Is a directory"));
	ck_assert_int_ne(access(sock, F_OK), 0);
	unlink(fresh);
}
END_TEST

/* --mode and --group set the socket file's permissions, and the server
 * admits whoever they let connect. */
START_TEST(serve_mode_and_group)
{
	const char *args[] = {"--socket", sock, "--mode", "0660", "--group", "65534", NULL};
	start_serve_args(sock, args);
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0660);
	ck_assert_uint_eq(st.st_gid, 65534);
	if (getuid() == 0) {
		chmod(dir, 0755);
		/* uid 65534 is in group 65534: admitted, and trusts root. */
		ck_assert_int_eq(run_as(65534, NULL, 0,
					(const char *const[]){SHSET_TOOL, "add", "--socket", sock,
							      "member", NULL}),
				 0);
		ck_assert_str_eq(out, "added 1 of 1\n");
	}
	ck_assert_int_eq(stop_server(), 0);
	if (getuid() == 0) {
		/* Without the group, the same user is refused and told why. */
		const char *other[] = {"--socket", sock, "--mode", "0660", "--group", "0", NULL};
		start_serve_args(sock, other);
		chmod(sock, 0666); /* admission follows what serve set, not a later chmod */
		ck_assert_int_eq(
		    run_as(65534, NULL, 0,
			   (const char *const[]){SHSET_TOOL, "size", "--socket", sock, NULL}),
		    3);
		ck_assert_ptr_nonnull(strstr(err, "admits root, and members of group 0"));
		ck_assert_int_eq(stop_server(), 0);
		/* 0666: everyone. */
		const char *all[] = {"--socket", sock, "--mode", "0666", NULL};
		start_serve_args(sock, all);
		ck_assert_int_eq(
		    run_as(65534, NULL, 0,
			   (const char *const[]){SHSET_TOOL, "size", "--socket", sock, NULL}),
		    0);
		ck_assert_int_eq(stop_server(), 0);
	}
	ck_assert_int_eq(SH("serve", "--socket", "@abstract", "--mode", "0600"), 2);
	ck_assert_int_eq(SH("serve", "--socket", sock, "--group", "no-such-group-shset"), 2);
}
END_TEST

/* Socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET), as systemd
 * runs the service. */
START_TEST(serve_socket_activation)
{
	char notify_path[96], msg[512];
	snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
	int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", notify_path);
	ck_assert_int_eq(bind(nfd, (struct sockaddr *)&a, sizeof(a)), 0);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 16), 0);
	for (int nfds = 2; nfds >= 1; nfds--) {
		server = fork();
		if (server == 0) {
			char pid[16], n[16];
			int devnull = open("/dev/null", O_WRONLY);
			dup2(devnull, 1);
			dup2(l, 3);
			if (nfds == 2)
				dup2(l, 4);
			snprintf(pid, sizeof(pid), "%d", (int)getpid());
			snprintf(n, sizeof(n), "%d", nfds);
			setenv("LISTEN_PID", pid, 1);
			setenv("LISTEN_FDS", n, 1);
			setenv("NOTIFY_SOCKET", notify_path, 1);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			execl(SHSET_TOOL, SHSET_TOOL, "serve", (char *)NULL);
			_exit(127);
		}
		if (nfds == 2) { /* one socket only */
			ck_assert_int_eq(wait_status(server), 2);
			continue;
		}
	}
	/* Ready only once it serves. */
	struct pollfd p = {nfd, POLLIN, 0};
	ck_assert_int_eq(poll(&p, 1, 20000 * test_scale()), 1);
	ssize_t n = recv(nfd, msg, sizeof(msg) - 1, 0);
	ck_assert_int_gt(n, 0);
	msg[n] = 0;
	ck_assert_ptr_nonnull(strstr(msg, "READY=1\n"));
	ck_assert_ptr_nonnull(strstr(msg, "MAINPID="));
	ck_assert_int_eq(SH("add", "--socket", sock, "activated"), 0);
	ck_assert_int_eq(SH("contains", "--socket", sock, "activated"), 0);
	ck_assert_int_eq(stop_server(), 0);
	ck_assert_int_eq(poll(&p, 1, 20000 * test_scale()), 1);
	n = recv(nfd, msg, sizeof(msg) - 1, 0);
	msg[n > 0 ? n : 0] = 0;
	ck_assert_str_eq(msg, "STOPPING=1");
	/* The socket is systemd's: it stays, for the next start. */
	struct stat st;
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	close(l);
	close(nfd);
}
END_TEST

/* A peer writes the server's own owner value into the set's free lock
 * word and leaves: clients would wait on it until the server next takes
 * the lock, which it does once a second (shset_recover). */
START_TEST(serve_clears_a_forged_lock_word)
{
	start_server(sock, NULL, NULL);
	shset *h = served(sock);
	shset_view *v;
	struct shset_view_proc p;
	ck_assert_int_eq(shset_view_open(&v, shset_fd(h)), 0);
	int slot = -1;
	for (uint32_t i = 0; i < 256 && slot < 0; i++)
		if (shset_view_proc(v, i, &p) == 1 && p.alive && p.pid == (uint32_t)server)
			slot = (int)i;
	shset_view_close(v);
	ck_assert_int_ge(slot, 0);
	uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shset_fd(h), 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	/* The owner value: slot + 1 and the slot's generation (17 bits). */
	uint32_t forged = (uint32_t)(slot + 1) | (p.gen & 0x1ffffu) << 12;
	__atomic_store_n((uint32_t *)(m + 256), forged, __ATOMIC_RELEASE);
	munmap(m, 4096);
	shset_close(h);
	run_limit = (unsigned)(20 * test_scale());
	const char *add[] = {SHSET_TOOL, "add", "--socket", sock, "after", NULL};
	ck_assert_int_eq(run_as(-1, NULL, 0, add), 0);
	const char *has[] = {SHSET_TOOL, "contains", "--socket", sock, "after", NULL};
	ck_assert_int_eq(run_as(-1, NULL, 0, has), 0);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* shset-inspect shows a live value or array: its type, value or length and
 * first elements. */
START_TEST(inspect_values)
{
	shset_value *i, *b, *a;
	char path[64];
	ck_assert_int_eq(shset_int_create(&i, -42), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 16, "caf\xc3\xa9", 5), 0);
	ck_assert_int_eq(shset_intarray_create(&a, 3), 0);
	int64_t old;
	ck_assert_int_eq(shset_intarray_fetch_add(a, 1, 7, &old), 0);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), shset_value_fd(i));
	const char *ins[] = {INSPECT_TOOL, path, NULL};
	ck_assert_int_eq(run_as(-1, NULL, 0, ins), 0);
	ck_assert_ptr_nonnull(strstr(out, "Type: int\n"));
	ck_assert_ptr_nonnull(strstr(out, "Value: -42\n"));
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), shset_value_fd(b));
	ck_assert_int_eq(run_as(-1, NULL, 0, ins), 0);
	ck_assert_ptr_nonnull(strstr(out, "Type: bytes\n"));
	ck_assert_ptr_nonnull(strstr(out, "Value: caf\xc3\xa9\n"));
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), shset_value_fd(a));
	ck_assert_int_eq(run_as(-1, NULL, 0, ins), 0);
	ck_assert_ptr_nonnull(strstr(out, "Type: intarray\n"));
	ck_assert_ptr_nonnull(strstr(out, "Length: 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "First elements: 0 7 0\n"));
	const char *js[] = {INSPECT_TOOL, "--json", path, NULL};
	ck_assert_int_eq(run_as(-1, NULL, 0, js), 0);
	ck_assert_ptr_nonnull(strstr(out, "\"first\": [0, 7, 0]"));
	ck_assert(json_valid(out));
	shset_value_close(i);
	shset_value_close(b);
	shset_value_close(a);
}
END_TEST

START_TEST(demo_runs)
{
	ck_assert_int_eq(SH("demo", "--workers", "3", "--keys", "20000"), 0);
	ck_assert_ptr_nonnull(strstr(out, "demo OK"));
	/* The killed worker held one shard's lock or, mid-batch, several. */
	const char *t = strstr(out, "shard locks taken over from the dead: ");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_ge(atoi(t + strlen("shard locks taken over from the dead: ")), 1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120 * test_scale());
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, errors_and_usage);
	tcase_add_test(tc, inspect_files_and_live_sets);
	tcase_add_test(tc, clients_check_the_server);
	tcase_add_test(tc, serve_socket_paths);
	tcase_add_test(tc, serve_stops_on_sighup);
	tcase_add_test(tc, inspect_refuses_non_files);
	tcase_add_test(tc, inspect_key_type);
	tcase_add_test(tc, keys_round_trip_every_mode);
	tcase_add_test(tc, keys_input_rules);
	tcase_add_test(tc, options_are_checked);
	tcase_add_test(tc, messages_say_what_to_do);
	tcase_add_test(tc, timeout_on_a_mute_socket);
	tcase_add_test(tc, redis_round_trip);
	tcase_add_test(tc, serve_first_boot_and_saves);
	tcase_add_test(tc, serve_mode_and_group);
	tcase_add_test(tc, serve_socket_activation);
	tcase_add_test(tc, serve_clears_a_forged_lock_word);
	tcase_add_test(tc, inspect_values);
	tcase_add_test(tc, demo_runs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
