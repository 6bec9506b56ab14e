/* SPDX-License-Identifier: MIT */
/*
 * serve.c - `shset serve`: hold a set and hand its fd to local clients.
 *
 * The socket is bound here or inherited from systemd (LISTEN_FDS); who may
 * connect follows the socket file's permissions, and readiness is told to
 * systemd (NOTIFY_SOCKET) with its datagram protocol, written by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <poll.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "shset/inspect.h"

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

/*
 * Socket activation (sd_listen_fds(3)): the one listening socket systemd
 * passed as fd 3.  Returns the fd, 0 when not activated, or -errno with
 * *@why.  The variables are removed so that no child takes them as its own.
 */
static int listen_activated(char *path, size_t cap, const char **why)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char *end;

	*why = NULL;
	if (!pid || !fds)
		return 0;
	errno = 0;
	long p = strtol(pid, &end, 10);
	if (errno || *end || p != getpid())
		return 0; /* meant for another process */
	long n = strtol(fds, &end, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (*end || n != 1) {
		*why = "LISTEN_FDS must pass exactly one socket";
		return -EINVAL;
	}
	int fd = 3, type = 0, acc = 0, dom = 0;
	socklen_t l = sizeof(int);
	struct sockaddr_un a = {0};
	socklen_t al = sizeof(a);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0 || dom != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		*why = "fd 3 is not a listening Unix stream socket (ListenStream= in the "
		       ".socket unit)";
		return -EINVAL;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	size_t off = offsetof(struct sockaddr_un, sun_path);
	size_t n2 = al > off ? al - off : 0;
	if (n2 && a.sun_path[0] == 0) { /* abstract */
		snprintf(path, cap, "@%.*s", (int)(n2 - 1), a.sun_path + 1);
	} else
		snprintf(path, cap, "%.*s", (int)strnlen(a.sun_path, n2), a.sun_path);
	return fd;
}

/* sd_notify(3)'s protocol: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un a;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	int len = sock_addr(path, &a);
	if (len < 0)
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&a, (socklen_t)len) < 0)
		fprintf(stderr, "%s serve: notify %s: %s\n", cmd, path, strerror(errno));
	close(fd);
}

/* --- who may connect ------------------------------------------------------------------- */

/* Besides the server's own user and root: what the socket file allows. */
struct admit {
	uid_t me, owner;
	int owner_ok, group_ok, everyone;
	gid_t gid;
};

static int group_parse(const char *arg, gid_t *gid)
{
	char *end;
	struct group *g = getgrnam(arg);

	if (g) {
		*gid = g->gr_gid;
		return 0;
	}
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || errno || *end || v >= (gid_t)-1)
		return -EINVAL;
	*gid = (gid_t)v;
	return 0;
}

/* Reads the socket file's permissions into @a: connecting needs write
 * permission, so that is what is followed. */
static void admit_from_file(struct admit *a, const struct stat *st)
{
	a->owner = st->st_uid;
	a->owner_ok = !!(st->st_mode & S_IWUSR);
	a->group_ok = !!(st->st_mode & S_IWGRP);
	a->gid = st->st_gid;
	a->everyone = !!(st->st_mode & S_IWOTH);
}

static int in_group(int c, const struct shset_peer *p, gid_t g)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (p->gid == g)
		return 1;
	if (getsockopt(c, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return 0;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == g)
			return 1;
	return 0;
}

/* NULL if @p may have the set, else why not. */
static const char *admitted(int c, const struct shset_peer *p, const struct admit *a, char *buf,
			    size_t cap)
{
	if (p->uid == a->me || p->uid == 0 || a->everyone || (a->owner_ok && p->uid == a->owner) ||
	    (a->group_ok && in_group(c, p, a->gid)))
		return NULL;
	int n =
	    a->me ? snprintf(buf, cap, "uid %u is not admitted: this server admits uid %u and root",
			     (unsigned)p->uid, (unsigned)a->me)
		  : snprintf(buf, cap, "uid %u is not admitted: this server admits root",
			     (unsigned)p->uid);
	if (a->owner_ok && a->owner != a->me && a->owner != 0)
		n += snprintf(buf + n, cap - (size_t)n, ", uid %u", (unsigned)a->owner);
	if (a->group_ok)
		snprintf(buf + n, cap - (size_t)n, ", and members of group %u", (unsigned)a->gid);
	else
		snprintf(buf + n, cap - (size_t)n, " (serve --mode/--group opens it to a group)");
	return buf;
}

/* --- snapshots ------------------------------------------------------------------------- */

/*
 * --load FILE: a missing file is a first boot (an empty set, as
 * redis-server starts without its dump); anything else must be a sound
 * snapshot, and the message names its defect as shset-inspect does.
 */
static int load_checked(const char *path, shset **s, int *loaded)
{
	const char *what;
	char self[64];
	int fd = open_regular(path, &what), err;

	*loaded = 0;
	if (fd == -ENOENT)
		return 0;
	if (fd < 0) {
		if (what)
			fprintf(stderr, "%s serve: %s: is %s, not a snapshot file\n", cmd, path,
				what);
		else
			fail(0, path, fd);
		return EXIT_IO;
	}
	/* The library reads the file checked, through its fd, not what the
	 * path names by then. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	err = shset_load(s, self, NULL);
	if (err == -EBADMSG || err == -EPROTONOSUPPORT) {
		shset_snapfile *sf;
		struct shset_snapfile_info si;
		if (!shset_snapfile_open(&sf, self)) {
			if (!shset_snapfile_info(sf, &si) && !si.sound)
				fprintf(stderr,
					"%s serve: %s: %s: %s (shset-inspect %s tells more)\n", cmd,
					path,
					si.magic_ok ? "a damaged snapshot" : "not a shset snapshot",
					si.defect, path);
			else
				fail(0, path, err);
			shset_snapfile_close(sf);
		} else
			fail(0, path, err);
		close(fd);
		return EXIT_IO;
	}
	close(fd);
	if (err)
		return fail(EXIT_IO, path, err);
	*loaded = 1;
	return 0;
}

/* --save FILE must be writable now, not at the first save hours later. */
static int save_check(const char *path)
{
	struct stat st;
	char *copy = strdup(path);
	int err = 0;

	if (!copy)
		return -ENOMEM;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	else {
		const char *dir = dirname(copy);
		/* An unnamed file proves we may create one there, and leaves
		 * nothing behind. */
		int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		else if (errno == EOPNOTSUPP || errno == EISDIR) {
			if (access(dir, W_OK | X_OK) < 0)
				err = -errno;
		} else
			err = -errno;
	}
	free(copy);
	return err;
}

struct saver {
	const char *path;
	long long txns; /* the set's txn counter the file holds, or -1 */
	struct stat st; /* the file written then */
};

/* Saves unless the file already holds the set: nothing was committed since
 * (the txn counter) and the file is the one we wrote. */
static int save_if_changed(shset *s, struct saver *sv)
{
	struct shset_stats st;
	struct stat now;
	int err = shset_stats(s, &st);

	if (err)
		return err;
	if (sv->txns >= 0 && (long long)st.txns == sv->txns && stat(sv->path, &now) == 0 &&
	    now.st_dev == sv->st.st_dev && now.st_ino == sv->st.st_ino)
		return 0;
	if ((err = shset_save(s, sv->path)))
		return err;
	/* The count from before: a change during the save only costs one
	 * more save. */
	sv->txns = (long long)st.txns;
	if (stat(sv->path, &sv->st) < 0)
		sv->txns = -1;
	return 1;
}

/* --- the server ------------------------------------------------------------------------ */

int cmd_serve(struct opts *o)
{
	struct saver sv = {.path = o->save, .txns = -1};
	struct admit adm = {.me = geteuid()};
	const char *why;
	char path[SOCK_PATH_MAX + 2];
	shset *s = NULL;
	int err, loaded = 0, lfd, activated;
	gid_t gid = (gid_t)-1;

	if (o->group && group_parse(o->group, &gid)) {
		fprintf(stderr, "%s serve: --group: no group '%s'\n", cmd, o->group);
		return EXIT_USAGE;
	}
	lfd = listen_activated(path, sizeof(path), &why);
	activated = lfd > 0;
	if (lfd < 0) {
		fprintf(stderr, "%s serve: socket activation: %s\n", cmd, why);
		return EXIT_USAGE;
	}
	if (!activated && !o->client.path) {
		fprintf(stderr, "%s serve: --socket PATH is required (or socket activation)\n",
			cmd);
		return EXIT_USAGE;
	}
	if (!activated)
		snprintf(path, sizeof(path), "%s", o->client.path);
	if (path[0] == '@' && (o->mode >= 0 || o->group)) {
		fprintf(stderr, "%s serve: --mode and --group need a socket file, not %s\n", cmd,
			path);
		return EXIT_USAGE;
	}
	if (o->save && (err = save_check(o->save))) {
		fprintf(stderr, "%s serve: cannot save to %s: %s\n", cmd, o->save, strerror(-err));
		return EXIT_IO;
	}
	if (o->load && (err = load_checked(o->load, &s, &loaded)))
		return err;
	if (o->load && !loaded && !o->quiet)
		printf("%s serve: no snapshot at %s yet: starting with an empty set\n", cmd,
		       o->load);
	if (!s && (err = shset_create(&s, NULL)))
		return fail(EXIT_SET, "create", err);
	if (loaded && o->save) {
		/* Loaded from the file it saves to: it holds the set already. */
		struct stat a, b;
		struct shset_stats st;
		if (stat(o->load, &a) == 0 && stat(o->save, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino && !shset_stats(s, &st)) {
			sv.txns = (long long)st.txns;
			sv.st = b;
		}
	}
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
	if (!activated && (lfd = listen_on(path, &why)) < 0) {
		if (why)
			fprintf(stderr, "%s serve: %s: %s; not replacing it\n", cmd, path, why);
		else
			sock_perror("shset serve", path, lfd);
		close(sfd);
		shset_close(s);
		return EXIT_IO;
	}
	/* What we bound, so that we remove only our own socket at exit; and
	 * its permissions, which say who may connect. */
	struct stat bound = {0};
	int code = 0;
	if (path[0] != '@' && stat(path, &bound) == 0) {
		if ((o->mode >= 0 && chmod(path, (mode_t)o->mode) < 0) ||
		    (o->group && chown(path, (uid_t)-1, gid) < 0)) {
			code = fail(EXIT_IO, path, errno);
			goto out;
		}
		if (o->mode >= 0 || o->group || activated) {
			stat(path, &bound);
			admit_from_file(&adm, &bound);
		}
	}
	int tfd = -1;
	if (o->every > 0) {
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		struct itimerspec it = {.it_interval = {o->every, 0}, .it_value = {o->every, 0}};
		timerfd_settime(tfd, 0, &it, NULL);
	}
	char msg[160];
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %lld keys on %s\nMAINPID=%d",
		 shset_size(s), path, (int)getpid());
	notify(msg);
	if (!o->quiet) {
		printf("%s serve: listening on %s (pid %d, %lld keys%s)\n", cmd, path, getpid(),
		       shset_size(s), activated ? ", socket from systemd" : "");
		fflush(stdout);
	}
	struct timespec last_recover;
	clock_gettime(CLOCK_MONOTONIC, &last_recover);
	for (;;) {
		struct pollfd p[3] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}, {tfd, POLLIN, 0}};
		/* Once a second, take and release the lock: a lock word a peer
		 * forged to name this (otherwise idle) process would hold every
		 * client until then. */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > last_recover.tv_sec) {
			last_recover = now;
			if ((err = shset_recover(s)) < 0)
				fprintf(stderr, "%s serve: taking the lock: %s\n", cmd,
					strerror(-err));
		}
		if (poll(p, tfd >= 0 ? 3 : 2, 1000) < 0) {
			if (errno == EINTR)
				continue;
			code = fail(EXIT_IO, "poll", errno);
			break;
		}
		if (p[1].revents)
			break;
		if (tfd >= 0 && p[2].revents) {
			uint64_t n;
			if (read(tfd, &n, sizeof(n)) > 0 && (err = save_if_changed(s, &sv)) < 0)
				fprintf(stderr, "%s serve: periodic save to %s: %s\n", cmd, o->save,
					strerror(-err));
		}
		if (p[0].revents) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			struct shset_peer peer;
			char buf[200];
			const char *no;
			if ((err = shset_peer_cred(c, &peer))) {
				fprintf(stderr, "%s serve: refused a client: its credentials: %s\n",
					cmd, strerror(-err));
			} else if ((no = admitted(c, &peer, &adm, buf, sizeof(buf)))) {
				fprintf(stderr, "%s serve: refused pid %d: %s\n", cmd,
					(int)peer.pid, no);
				/* The client is told why, in one line; it may be gone. */
				char line[sizeof(buf) + 16];
				int n = snprintf(line, sizeof(line), REFUSAL_TAG "%s\n", no);
				if (send(c, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
					(void)0;
			} else if ((err = shset_send(c, s)) && err != -EPIPE) {
				/* EPIPE: the client left before taking it. */
				fprintf(stderr, "%s serve: send to pid %d: %s\n", cmd,
					(int)peer.pid, strerror(-err));
			}
			close(c);
		}
	}
	notify("STOPPING=1");
	if (o->save && (err = save_if_changed(s, &sv)) < 0)
		code = fail(EXIT_IO, o->save, err);
	if (tfd >= 0)
		close(tfd);
out:;
	struct stat now;
	/* An activated socket is systemd's: it stays for the next start. */
	if (!activated && path[0] != '@' && lstat(path, &now) == 0 && now.st_dev == bound.st_dev &&
	    now.st_ino == bound.st_ino)
		unlink(path);
	close(lfd);
	close(sfd);
	if (!o->quiet) {
		printf("%s serve: stopped with %lld keys\n", cmd, shset_size(s));
		fflush(stdout);
	}
	shset_close(s);
	return code;
}
