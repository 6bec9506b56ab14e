/* SPDX-License-Identifier: MIT */
/*
 * shset - serve a set on a Unix socket, work on a served set directly
 * through shared memory, and run the demo.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "inspect.h"
#include "shset.h"

static const char *cmd = "shset";

static int fail(int code, const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", cmd, what, strerror(err < 0 ? -err : err));
	return code;
}

/* --- usage ------------------------------------------------------------------------ */

static const struct {
	const char *name, *args, *help;
} cmds[] = {
    {"serve", "--socket PATH [--load FILE] [--save FILE [--every SECONDS]]",
     "Create (or load) a set and hand its fd to local clients of the same user\n"
     "(or root) until SIGINT, SIGTERM or SIGHUP; save on exit with --save, and\n"
     "every SECONDS with --every.  PATH may be @name for an abstract socket; an\n"
     "existing file at PATH is replaced only if it is a socket nobody serves."},
    {"add", "--socket PATH [-0] [--hex] [--json] [KEY...]",
     "Add the keys (from arguments, or stdin one per line) in one atomic batch."},
    {"remove", "--socket PATH [-0] [--hex] [--json] [KEY...]",
     "Remove the keys in one atomic batch."},
    {"contains", "--socket PATH [--hex] [--json] KEY...",
     "Exit 0 if every key is present, 1 if one is not."},
    {"size", "--socket PATH [--json]", "Print the number of keys."},
    {"list", "--socket PATH [-0|--hex] [--json]",
     "Print every key of one consistent state (text escapes \\n \\\\ \\xHH)."},
    {"clear", "--socket PATH [--json]", "Remove every key."},
    {"save", "--socket PATH [--sorted] FILE", "Write a crash-safe snapshot of the set."},
    {"stats", "--socket PATH [--json]", "Print counts, memory and lock counters."},
    {"demo", "[--workers N] [--keys N] [--keep]",
     "Run a server, worker processes sharing its set (one killed mid-write),\n"
     "an atomic copy, a snapshot and an inspection, and print a summary."},
};

static int usage(FILE *f, int code)
{
	fprintf(f, "usage: %s COMMAND [OPTIONS]\n\n", cmd);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].args);
	fprintf(f,
		"\nClients trust a server run by their own user or root; --server-uid UID\n"
		"trusts one more user.\n"
		"\nExit codes: 0 ok, 1 no (contains), 2 usage, 3 server unreachable or\n"
		"not trusted, 4 refused by the library, 5 input or file error.\n"
		"'%s COMMAND --help' describes one command.\n",
		cmd);
	return code;
}

static int cmd_usage(const char *name, FILE *f, int code)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, name)) {
			fprintf(f, "usage: %s %s %s\n\n%s\n", cmd, name, cmds[i].args,
				cmds[i].help);
			if (strstr(cmds[i].args, "--socket") && strcmp(name, "serve"))
				fputs("\n--server-uid UID trusts a server run by UID (besides "
				      "your own user and root).\n",
				      f);
		}
	return code;
}

/* --- options -------------------------------------------------------------------------- */

struct opts {
	const char *socket, *load, *save;
	struct server_trust trust;
	long every;
	int nul, hex, json, sorted, keep;
	long workers, keys;
	char **args;
	int nargs;
};

/* Returns -1 when the command line is fine, else the exit code. */
static int parse(const char *name, int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->trust.uid = -1;
	o->args = calloc((size_t)argc + 1, sizeof(char *));
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int more = i + 1 < argc;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return cmd_usage(name, stdout, 0);
		else if (!strcmp(a, "--socket") && more)
			o->socket = argv[++i];
		else if (!strcmp(a, "--server-uid") && more) {
			if (server_trust_parse(&o->trust, argv[++i]) < 0) {
				fprintf(stderr,
					"%s %s: --server-uid needs a numeric uid, not '%s'\n", cmd,
					name, argv[i]);
				return EXIT_USAGE;
			}
		} else if (!strcmp(a, "--load") && more)
			o->load = argv[++i];
		else if (!strcmp(a, "--save") && more)
			o->save = argv[++i];
		else if (!strcmp(a, "--every") && more)
			o->every = strtol(argv[++i], NULL, 10);
		else if (!strcmp(a, "--workers") && more)
			o->workers = strtol(argv[++i], NULL, 10);
		else if (!strcmp(a, "--keys") && more)
			o->keys = strtol(argv[++i], NULL, 10);
		else if (!strcmp(a, "-0"))
			o->nul = 1;
		else if (!strcmp(a, "--hex"))
			o->hex = 1;
		else if (!strcmp(a, "--json"))
			o->json = 1;
		else if (!strcmp(a, "--sorted"))
			o->sorted = 1;
		else if (!strcmp(a, "--keep"))
			o->keep = 1;
		else if (!strcmp(a, "--"))
			while (++i < argc)
				o->args[o->nargs++] = argv[i];
		else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "%s %s: unknown or incomplete option '%s'\n", cmd, name, a);
			return cmd_usage(name, stderr, EXIT_USAGE);
		} else
			o->args[o->nargs++] = argv[i];
	}
	return -1;
}

/* Connects and receives the served set. */
static int open_served(const struct opts *o, shset **s)
{
	if (!o->socket) {
		fprintf(stderr, "%s: --socket PATH is required\n", cmd);
		return EXIT_USAGE;
	}
	uid_t server_uid;
	int c = server_connect(o->socket, &o->trust, &server_uid);
	if (c < 0)
		return server_perror(cmd, o->socket, c, &o->trust, server_uid);
	int err = shset_recv(c, s);
	close(c);
	if (err)
		return fail(EXIT_CONNECT, o->socket, err);
	return 0;
}

/* --- serve -------------------------------------------------------------------------- */

/*
 * Something is at @path where serve wants to bind.  Only a socket nobody
 * accepts on (its server died) is removed; anything else is someone's file
 * and stays.  Returns 0 when the path is free to bind again.
 */
static int replace_stale(const char *path, const char **why)
{
	struct stat st, now;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno; /* gone meanwhile: bind again */
	if (!S_ISSOCK(st.st_mode)) {
		*why = S_ISDIR(st.st_mode)    ? "exists and is a directory, not a socket"
		       : S_ISREG(st.st_mode)  ? "exists and is a regular file, not a socket"
		       : S_ISLNK(st.st_mode)  ? "exists and is a symbolic link, not a socket"
		       : S_ISFIFO(st.st_mode) ? "exists and is a FIFO, not a socket"
					      : "exists and is not a socket";
		return -EEXIST;
	}
	int c = sock_connect(path);
	if (c >= 0) {
		close(c);
		return -EADDRINUSE;
	}
	if (c != -ECONNREFUSED)
		return c;
	/* Still the socket we probed (narrows, cannot close, the window in
	 * which another process could put something else there). */
	if (lstat(path, &now) < 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)
		return -EADDRINUSE;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Binds and listens on @path; returns the fd, or -errno and maybe a
 * sentence in *@why. */
static int listen_on(const char *path, const char **why)
{
	struct sockaddr_un a;
	int len = sock_addr(path, &a), err = 0;

	*why = NULL;
	if (len < 0)
		return len;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, (socklen_t)len) < 0) {
		err = -errno;
		if (err == -EADDRINUSE && path[0] != '@') {
			err = replace_stale(path, why);
			if (!err && bind(fd, (struct sockaddr *)&a, (socklen_t)len) < 0)
				err = -errno;
		}
	}
	if (!err && listen(fd, 64) < 0)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Loads --load FILE only if it is a regular file: a FIFO must not block
 * the server, and the message says what it is instead.  The library then
 * reads the file checked, through its fd, not what the path names by then. */
static int load_checked(const char *path, shset **s)
{
	const char *what;
	char self[64];
	int fd = open_regular(path, &what), err;

	if (fd < 0) {
		if (what)
			fprintf(stderr, "%s serve: %s: is %s, not a snapshot file\n", cmd, path,
				what);
		else
			fail(0, path, fd);
		return EXIT_IO;
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	err = shset_load(s, self, NULL);
	close(fd);
	return err ? fail(EXIT_IO, path, err) : 0;
}

static int serve(const struct opts *o, int quiet)
{
	shset *s;
	int err;

	if (!o->socket) {
		fprintf(stderr, "%s serve: --socket PATH is required\n", cmd);
		return EXIT_USAGE;
	}
	if (o->every && !o->save) {
		fprintf(stderr, "%s serve: --every needs --save FILE\n", cmd);
		return EXIT_USAGE;
	}
	if (o->load && (err = load_checked(o->load, &s)))
		return err;
	if (!o->load && (err = shset_create(&s, NULL)))
		return fail(EXIT_SET, "create", err);
	/* SIGHUP too: a server started from a terminal that closes stops
	 * cleanly (saves, removes its socket) instead of dying. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		err = -errno;
		shset_close(s);
		return fail(EXIT_IO, "signalfd", err);
	}
	const char *why;
	int lfd = listen_on(o->socket, &why);
	if (lfd < 0) {
		if (why)
			fprintf(stderr, "%s serve: %s: %s; not replacing it\n", cmd, o->socket,
				why);
		else
			sock_perror("shset serve", o->socket, lfd);
		close(sfd);
		shset_close(s);
		return EXIT_IO;
	}
	/* What we bound, so that we remove only our own socket at exit. */
	struct stat bound = {0};
	if (o->socket[0] != '@')
		stat(o->socket, &bound);
	int tfd = -1;
	if (o->every > 0) {
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		struct itimerspec it = {.it_interval = {o->every, 0}, .it_value = {o->every, 0}};
		timerfd_settime(tfd, 0, &it, NULL);
	}
	uid_t me = geteuid();
	if (!quiet) {
		printf("%s serve: listening on %s (pid %d, %lld keys)\n", cmd, o->socket, getpid(),
		       shset_size(s));
		fflush(stdout);
	}
	int code = 0;
	for (;;) {
		struct pollfd p[3] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}, {tfd, POLLIN, 0}};
		if (poll(p, tfd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			code = fail(EXIT_IO, "poll", errno);
			break;
		}
		if (p[1].revents)
			break;
		if (tfd >= 0 && p[2].revents) {
			uint64_t n;
			if (read(tfd, &n, sizeof(n)) > 0 && (err = shset_save(s, o->save)))
				fprintf(stderr, "%s serve: periodic save to %s: %s\n", cmd, o->save,
					strerror(-err));
		}
		if (p[0].revents) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			struct shset_peer peer;
			if ((err = shset_peer_cred(c, &peer))) {
				fprintf(stderr, "%s serve: refused a client: its credentials: %s\n",
					cmd, strerror(-err));
			} else if (peer.uid == me || peer.uid == 0) {
				/* EPIPE: the client left before taking it. */
				if ((err = shset_send(c, s)) && err != -EPIPE)
					fprintf(stderr, "%s serve: send to pid %d: %s\n", cmd,
						(int)peer.pid, strerror(-err));
			} else {
				fprintf(stderr, "%s serve: refused pid %d uid %u (not uid %u)\n",
					cmd, (int)peer.pid, (unsigned)peer.uid, (unsigned)me);
			}
			close(c);
		}
	}
	if (o->save && (err = shset_save(s, o->save)))
		code = fail(EXIT_IO, o->save, err);
	struct stat now;
	if (o->socket[0] != '@' && lstat(o->socket, &now) == 0 && now.st_dev == bound.st_dev &&
	    now.st_ino == bound.st_ino)
		unlink(o->socket);
	close(lfd);
	close(sfd);
	if (tfd >= 0)
		close(tfd);
	if (!quiet) {
		printf("%s serve: stopped with %lld keys\n", cmd, shset_size(s));
		fflush(stdout);
	}
	shset_close(s);
	return code;
}

/* --- clients -------------------------------------------------------------------------- */

struct keys {
	char **k;
	size_t *len;
	size_t n, cap;
};

static int keys_push(struct keys *ks, const char *k, size_t len)
{
	if (ks->n == ks->cap) {
		ks->cap = ks->cap * 2 + 64;
		ks->k = realloc(ks->k, ks->cap * sizeof(char *));
		ks->len = realloc(ks->len, ks->cap * sizeof(size_t));
		if (!ks->k || !ks->len)
			return -ENOMEM;
	}
	ks->k[ks->n] = malloc(len + 1);
	if (!ks->k[ks->n])
		return -ENOMEM;
	memcpy(ks->k[ks->n], k, len);
	ks->len[ks->n++] = len;
	return 0;
}

static void keys_free(struct keys *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		free(ks->k[i]);
	free(ks->k);
	free(ks->len);
}

/* Keys from the arguments, or stdin when there are none. */
static int gather(const struct opts *o, struct keys *ks)
{
	char *buf = NULL;
	size_t cap = 0, len;

	memset(ks, 0, sizeof(*ks));
	if (o->nargs) {
		for (int i = 0; i < o->nargs; i++) {
			char *k = strdup(o->args[i]);
			long l = o->hex ? hex_decode(k) : (long)strlen(k);
			if (l < 0) {
				fprintf(stderr, "%s: '%s' is not hex\n", cmd, o->args[i]);
				free(k);
				return EXIT_USAGE;
			}
			keys_push(ks, k, (size_t)l);
			free(k);
		}
		return 0;
	}
	while (read_key(stdin, o->nul, &buf, &cap, &len)) {
		long l = (long)len;
		if (o->hex) {
			buf[len] = 0;
			l = hex_decode(buf);
			if (l < 0) {
				fprintf(stderr, "%s: input line is not hex\n", cmd);
				free(buf);
				return EXIT_USAGE;
			}
		}
		if (keys_push(ks, buf, (size_t)l)) {
			free(buf);
			return fail(EXIT_IO, "stdin", ENOMEM);
		}
	}
	free(buf);
	return ferror(stdin) ? fail(EXIT_IO, "stdin", errno) : 0;
}

static int cmd_batch(const char *name, const struct opts *o, int add)
{
	struct keys ks;
	shset *s;
	int code = gather(o, &ks);

	if (!code)
		code = open_served(o, &s);
	if (code) {
		keys_free(&ks);
		return code;
	}
	long long n = add ? shset_add_batch(s, (const void *const *)ks.k, ks.len, ks.n)
			  : shset_remove_batch(s, (const void *const *)ks.k, ks.len, ks.n);
	if (n < 0)
		code = fail(EXIT_SET, name, (int)n);
	else if (o->json)
		printf("{\"%s\": %lld, \"keys\": %zu}\n", add ? "added" : "removed", n, ks.n);
	else
		printf("%s %lld of %zu\n", add ? "added" : "removed", n, ks.n);
	shset_close(s);
	keys_free(&ks);
	return code;
}

static int cmd_contains(const struct opts *o)
{
	struct keys ks;
	shset *s;
	int code = gather(o, &ks), all = 1;

	if (!code && !ks.n) {
		fprintf(stderr, "%s contains: no key given\n", cmd);
		code = EXIT_USAGE;
	}
	if (!code)
		code = open_served(o, &s);
	if (code) {
		keys_free(&ks);
		return code;
	}
	if (o->json)
		fputs("[", stdout);
	for (size_t i = 0; i < ks.n && !code; i++) {
		int r = shset_contains(s, ks.k[i], ks.len[i]);
		if (r < 0) {
			code = fail(EXIT_SET, "contains", r);
			break;
		}
		all &= r;
		if (o->json) {
			fputs(i ? ", {\"key\": " : "{\"key\": ", stdout);
			json_string(stdout, ks.k[i], ks.len[i]);
			printf(", \"present\": %s}", r ? "true" : "false");
		}
	}
	if (o->json)
		fputs("]\n", stdout);
	shset_close(s);
	keys_free(&ks);
	return code ? code : all ? 0 : EXIT_NO;
}

struct list_ctx {
	enum key_format fmt;
	int json, first;
};

static int list_one(const void *k, size_t len, void *arg)
{
	struct list_ctx *c = arg;
	if (c->json) {
		fputs(c->first ? "" : ", ", stdout);
		c->first = 0;
	}
	key_print(stdout, k, len, c->json ? KEY_JSON : c->fmt);
	return 0;
}

static int cmd_simple(const char *name, const struct opts *o)
{
	shset *s;
	int code = open_served(o, &s), err = 0;

	if (code)
		return code;
	if (!strcmp(name, "size")) {
		long long n = shset_size(s);
		if (n < 0)
			err = (int)n;
		else
			printf(o->json ? "{\"size\": %lld}\n" : "%lld\n", n);
	} else if (!strcmp(name, "list")) {
		struct list_ctx c = {o->nul ? KEY_NUL : o->hex ? KEY_HEX : KEY_TEXT, o->json, 1};
		if (o->json)
			fputs("[", stdout);
		err = shset_foreach(s, list_one, &c);
		if (o->json)
			fputs("]\n", stdout);
	} else if (!strcmp(name, "clear")) {
		err = shset_clear(s);
		if (!err && o->json)
			puts("{\"cleared\": true}");
	} else if (!strcmp(name, "save")) {
		if (o->nargs != 1) {
			shset_close(s);
			return cmd_usage(name, stderr, EXIT_USAGE);
		}
		err = shset_save_ex(s, o->args[0], o->sorted ? SHSET_SAVE_SORTED : 0);
		if (err) {
			shset_close(s);
			return fail(EXIT_IO, o->args[0], err);
		}
		if (o->json) {
			fputs("{\"saved\": ", stdout);
			json_string(stdout, o->args[0], strlen(o->args[0]));
			puts("}");
		}
	} else { /* stats */
		struct shset_stats st;
		err = shset_stats(s, &st);
		if (!err && o->json)
			printf(
			    "{\"count\": %llu, \"capacity\": %llu, \"tombstones\": %llu, "
			    "\"load\": %.4f, \"key_bytes\": %llu, \"heap_bytes\": %llu, "
			    "\"file_bytes\": %llu, \"mem_bytes\": %llu, \"bytes_per_key\": %.2f, "
			    "\"repairs\": %llu, \"resizes\": %llu, \"txns\": %llu, "
			    "\"max_procs\": %u, \"attached\": %u, \"lock\": {\"acquisitions\": "
			    "%llu, \"contended\": %llu, \"futex_waits\": %llu, \"owner_died\": "
			    "%llu}}\n",
			    (unsigned long long)st.count, (unsigned long long)st.capacity,
			    (unsigned long long)st.tombstones, st.load,
			    (unsigned long long)st.key_bytes, (unsigned long long)st.heap_bytes,
			    (unsigned long long)st.file_bytes, (unsigned long long)st.mem_bytes,
			    st.bytes_per_key, (unsigned long long)st.repairs,
			    (unsigned long long)st.resizes, (unsigned long long)st.txns,
			    st.max_procs, st.attached, (unsigned long long)st.lock.acquisitions,
			    (unsigned long long)st.lock.contended,
			    (unsigned long long)st.lock.futex_waits,
			    (unsigned long long)st.lock.owner_died);
		else if (!err)
			printf("keys %llu\ncapacity %llu\nload %.3f\ntombstones %llu\n"
			       "key bytes %llu\nmemory bytes %llu\nbytes per key %.1f\n"
			       "transactions %llu\nrepairs %llu\nresizes %llu\n"
			       "processes %u of %u\nlock acquisitions %llu (%llu contended, "
			       "%llu futex waits, %llu owner deaths)\n",
			       (unsigned long long)st.count, (unsigned long long)st.capacity,
			       st.load, (unsigned long long)st.tombstones,
			       (unsigned long long)st.key_bytes, (unsigned long long)st.mem_bytes,
			       st.bytes_per_key, (unsigned long long)st.txns,
			       (unsigned long long)st.repairs, (unsigned long long)st.resizes,
			       st.attached, st.max_procs, (unsigned long long)st.lock.acquisitions,
			       (unsigned long long)st.lock.contended,
			       (unsigned long long)st.lock.futex_waits,
			       (unsigned long long)st.lock.owner_died);
	}
	shset_close(s);
	return err ? fail(EXIT_SET, name, err) : 0;
}

/* --- demo ------------------------------------------------------------------------------ */

struct wres {
	uint64_t ops, ns, errors, batches;
};

#define DEMO_BATCH 5000

/* An ordinary worker: add, check, remove; leaves every even key. */
static struct wres demo_worker(shset *s, int w, long keys)
{
	struct wres r = {0};
	char k[32];
	uint64_t t0 = mono_ns();

	for (long i = 0; i < keys; i++) {
		int n = snprintf(k, sizeof(k), "w%d-%ld", w, i);
		r.errors += shset_add(s, k, (size_t)n) != 1;
		r.errors += shset_contains(s, k, (size_t)n) != 1;
		r.ops += 2;
		if (i % 2) {
			r.errors += shset_remove(s, k, (size_t)n) != 1;
			r.ops++;
		}
	}
	r.ns = mono_ns() - t0;
	return r;
}

/* The victim: big atomic batches, acknowledged one by one, until killed.
 * It first tells its process slot, so the demo can kill it exactly while
 * it holds the lock. */
static void demo_victim(shset *s, int ack)
{
	static char keys[DEMO_BATCH][24];
	const void *kp[DEMO_BATCH];
	size_t kl[DEMO_BATCH];
	uint64_t slot = (uint64_t)shset_slot(s);

	if (write(ack, &slot, sizeof(slot)) != sizeof(slot))
		_exit(4);
	for (uint64_t b = 0;; b++) {
		for (int j = 0; j < DEMO_BATCH; j++) {
			kl[j] = (size_t)snprintf(keys[j], sizeof(keys[j]), "v%llu-%d",
						 (unsigned long long)b, j);
			kp[j] = keys[j];
		}
		if (shset_add_batch(s, kp, kl, DEMO_BATCH) != DEMO_BATCH)
			_exit(3);
		if (write(ack, &b, sizeof(b)) != sizeof(b))
			_exit(4);
	}
}

static int wait_for_server(const char *sock, pid_t server)
{
	for (int i = 0; i < 500; i++) {
		int c = sock_connect(sock);
		if (c >= 0) {
			close(c);
			return 0;
		}
		if (waitpid(server, NULL, WNOHANG) == server)
			return -ECHILD;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static int cmd_demo(const struct opts *o)
{
	long nw = o->workers ? o->workers : 2 * sysconf(_SC_NPROCESSORS_ONLN);
	long keys = o->keys ? o->keys : 200000;
	char dir[] = "/tmp/shset-demo-XXXXXX", sock[64], snap[64];

	if (nw < 2 || nw > 200 || keys < 1000 || keys > 100000000) {
		fprintf(stderr, "%s demo: --workers must be 2..200 and --keys 1000..1e8\n", cmd);
		return EXIT_USAGE;
	}
	if (!mkdtemp(dir))
		return fail(EXIT_IO, "mkdtemp", errno);
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(snap, sizeof(snap), "%s/demo.shs", dir);
	printf("shset demo in %s: %ld processes share one set through %s\n\n", dir, nw, sock);
	fflush(stdout);

	/* 1. The server. */
	pid_t server = fork();
	if (server == 0) {
		struct opts so = {.socket = sock};
		_exit(serve(&so, 1));
	}
	if (wait_for_server(sock, server))
		return fail(EXIT_CONNECT, "server did not start", ETIMEDOUT);

	/* 2. Workers, each receiving the set's fd from the server. */
	int res[2], ack[2];
	if (pipe(res) || pipe(ack))
		return fail(EXIT_IO, "pipe", errno);
	pid_t *pids = calloc((size_t)nw, sizeof(pid_t));
	uint64_t t0 = mono_ns();
	for (long w = 0; w < nw; w++) {
		pids[w] = fork();
		if (pids[w] == 0) {
			struct opts co = {.socket = sock};
			shset *s;
			/* Only the victim may hold the ack pipe open. */
			close(ack[0]);
			close(res[0]);
			if (w != 0)
				close(ack[1]);
			if (open_served(&co, &s))
				_exit(1);
			if (w == 0)
				demo_victim(s, ack[1]);
			struct wres r = demo_worker(s, (int)w, keys);
			if (write(res[1], &r, sizeof(r)) != sizeof(r))
				_exit(2);
			_exit(0);
		}
	}
	close(ack[1]);
	close(res[1]);

	/* 3. Kill the victim while it holds the lock, mid-batch. */
	struct opts co = {.socket = sock};
	shset *s;
	if (open_served(&co, &s))
		return EXIT_CONNECT;
	uint64_t b, acked = 0, vslot = UINT64_MAX;
	if (read(ack[0], &vslot, sizeof(vslot)) != sizeof(vslot))
		return fail(EXIT_SET, "worker 0", EIO);
	while (acked < 5 && read(ack[0], &b, sizeof(b)) == sizeof(b))
		acked++;
	struct shset_stats st;
	uint64_t t_kill = 0;
	for (int i = 0; i < 2000000; i++) {
		shset_stats(s, &st);
		if (st.lock.locked && st.lock.owner_slot == (int)vslot) {
			kill(pids[0], SIGKILL);
			t_kill = mono_ns();
			break;
		}
	}
	if (!t_kill) { /* never caught it holding the lock: kill it anyway */
		kill(pids[0], SIGKILL);
		t_kill = mono_ns();
	}
	waitpid(pids[0], NULL, 0);
	while (read(ack[0], &b, sizeof(b)) == sizeof(b))
		acked++;
	/* Recovered when some process has taken the dead owner's lock over
	 * and rolled its batch back. */
	uint64_t t_rec = 0;
	for (int i = 0; i < 1000000 && !t_rec; i++) {
		shset_stats(s, &st);
		if (st.lock.owner_died > 0 || !st.lock.locked || st.lock.owner_slot != (int)vslot)
			t_rec = mono_ns();
	}
	int verr = shset_verify(s);

	/* 4. The others finish. */
	struct wres tot = {0};
	printf("  %-10s %12s %10s %12s\n", "process", "operations", "seconds", "ops/s");
	for (long w = 1; w < nw; w++) {
		struct wres r;
		if (read(res[0], &r, sizeof(r)) != sizeof(r))
			r = (struct wres){0, 1, 1, 0};
		printf("  worker %-3ld %12llu %10.2f %12.0f\n", w, (unsigned long long)r.ops,
		       r.ns / 1e9, r.ops / (r.ns / 1e9));
		tot.ops += r.ops;
		tot.errors += r.errors;
		if (r.ns > tot.ns)
			tot.ns = r.ns;
	}
	for (long w = 1; w < nw; w++)
		waitpid(pids[w], NULL, 0);
	uint64_t t_end = mono_ns();
	printf("  %-10s %12llu %10.2f %12.0f\n\n", "all", (unsigned long long)tot.ops,
	       (t_end - t0) / 1e9, tot.ops / ((t_end - t0) / 1e9));

	/* 5. Every acknowledged batch is whole; the one in flight is all or
	 *    nothing. */
	long long size = shset_size(s);
	long long others = (long long)(nw - 1) * (keys - keys / 2);
	long long victim = size - others;
	int whole = victim == (long long)acked * DEMO_BATCH ||
		    victim == (long long)(acked + 1) * DEMO_BATCH;
	shset_stats(s, &st);
	printf("  worker 0 killed with SIGKILL after %llu acknowledged batches of %d keys\n",
	       (unsigned long long)acked, DEMO_BATCH);
	printf("  lock taken over from the dead: %llu time(s); transactions rolled back: %llu\n",
	       (unsigned long long)st.lock.owner_died, (unsigned long long)st.repairs);
	printf("  lock recovered %.1f ms after the kill; verify: %s\n",
	       ((t_rec ? t_rec : t_kill) - t_kill) / 1e6, verr ? strerror(-verr) : "clean");
	printf("  worker 0 left %lld keys: %s\n", victim,
	       whole ? "every acknowledged batch, the one in flight all or nothing" : "MISMATCH");

	/* 6. An atomic copy and a snapshot. */
	shset *c;
	uint64_t tc = mono_ns();
	int cerr = shset_copy(s, &c);
	uint64_t tc1 = mono_ns();
	if (cerr)
		return fail(EXIT_SET, "copy", cerr);
	int serr = shset_save(s, snap);
	uint64_t tc2 = mono_ns();
	struct stat sst = {0};
	stat(snap, &sst);
	printf("  atomic copy: %lld keys in %.1f ms, equal to the set: %s\n", shset_size(c),
	       (tc1 - tc) / 1e6, shset_equal(s, c) == 1 ? "yes" : "NO");
	printf("  snapshot: %s, %lld bytes in %.1f ms (%s)\n\n", serr ? strerror(-serr) : snap,
	       (long long)sst.st_size, (tc2 - tc1) / 1e6,
	       st.saves_io_uring || !serr ? "io_uring" : "fallback");
	fflush(stdout);

	/* 7. Inspect the snapshot. */
	struct inspect_opts io = {.fmt = KEY_TEXT};
	int icode = inspect_snapshot(snap, &io, stdout);

	/* 8. Stop the server: it removes its socket. */
	kill(server, SIGTERM);
	int sst2;
	waitpid(server, &sst2, 0);
	int sock_gone = access(sock, F_OK) != 0;
	printf("\n  final size %lld keys, %.1f bytes per key in memory; server stopped (%s)\n",
	       size, st.bytes_per_key, sock_gone ? "socket removed" : "SOCKET LEFT");
	shset_close(c);
	shset_close(s);
	if (!o->keep) {
		unlink(snap);
		rmdir(dir);
	}
	free(pids);
	int ok = !verr && whole && !tot.errors && !serr && !icode && sock_gone && WIFEXITED(sst2) &&
		 WEXITSTATUS(sst2) == 0;
	printf("  %s\n", ok ? "demo OK" : "demo FAILED");
	return ok ? 0 : EXIT_SET;
}

int main(int argc, char **argv)
{
	struct opts o;

	if (argc < 2)
		return usage(stderr, EXIT_USAGE);
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help"))
		return usage(stdout, 0);
	int code = parse(name, argc - 2, argv + 2, &o);
	if (code >= 0) {
		free(o.args);
		return code;
	}
	if ((!strcmp(name, "serve") || !strcmp(name, "demo")) && o.trust.uid >= 0) {
		/* serve admits clients of its own user and root only. */
		fprintf(stderr, "%s %s: --server-uid is an option of the clients\n", cmd, name);
		code = EXIT_USAGE;
	} else if (!strcmp(name, "serve"))
		code = serve(&o, 0);
	else if (!strcmp(name, "add"))
		code = cmd_batch(name, &o, 1);
	else if (!strcmp(name, "remove"))
		code = cmd_batch(name, &o, 0);
	else if (!strcmp(name, "contains"))
		code = cmd_contains(&o);
	else if (!strcmp(name, "size") || !strcmp(name, "list") || !strcmp(name, "clear") ||
		 !strcmp(name, "save") || !strcmp(name, "stats"))
		code = cmd_simple(name, &o);
	else if (!strcmp(name, "demo"))
		code = cmd_demo(&o);
	else {
		fprintf(stderr, "%s: unknown command '%s'\n", cmd, name);
		code = usage(stderr, EXIT_USAGE);
	}
	free(o.args);
	return code;
}
