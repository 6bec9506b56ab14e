/* SPDX-License-Identifier: MIT */
/* common.c - helpers shared by the command-line tools. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "shset.h"

_Static_assert(SOCK_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path) - 1, "sun_path");

int sock_addr(const char *path, void *p)
{
	struct sockaddr_un *a = p;
	size_t n = strlen(path);

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (n == 0 || (n == 1 && path[0] == '@'))
		return -EINVAL;
	if (n > SOCK_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(a->sun_path, path, n);
	if (path[0] == '@') { /* abstract: a leading NUL, no file */
		a->sun_path[0] = 0;
		return (int)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	return (int)sizeof(*a);
}

int sock_connect(const char *path)
{
	struct sockaddr_un a;
	int len = sock_addr(path, &a), fd;

	if (len < 0)
		return len;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, (socklen_t)len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

void sock_perror(const char *prog, const char *path, int err)
{
	if (err == -ENAMETOOLONG && strlen(path) > SOCK_PATH_MAX)
		fprintf(stderr, "%s: %s: socket path too long (%zu bytes; at most %d fit)\n", prog,
			path, strlen(path), SOCK_PATH_MAX);
	else if (err == -EINVAL && (!path[0] || !strcmp(path, "@")))
		fprintf(stderr, "%s: '%s': empty socket path\n", prog, path);
	else
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(-err));
}

int server_trust_parse(struct server_trust *t, const char *arg)
{
	char *end;

	if (arg[0] < '0' || arg[0] > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(arg, &end, 10);
	/* (uid_t)-1 means "no user" to the kernel: never a server's uid. */
	if (errno || *end || v >= (uid_t)-1)
		return -EINVAL;
	t->uid = (long long)v;
	return 0;
}

static int trusted(uid_t uid, const struct server_trust *t)
{
	return uid == geteuid() || uid == 0 || (t && t->uid >= 0 && (long long)uid == t->uid);
}

int timeout_parse(const char *arg, int *ms)
{
	char *end;

	if (!((arg[0] >= '0' && arg[0] <= '9') || arg[0] == '.'))
		return -EINVAL;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || *end || !(v >= 0) || v > 86400 * 24)
		return -EINVAL;
	*ms = v == 0 ? -1 : (int)(v * 1000 + 0.999);
	return 0;
}

/* Milliseconds left until @deadline (ns), for poll; -1 forever. */
static int left_ms(uint64_t deadline)
{
	if (!deadline)
		return -1;
	uint64_t now = mono_ns();
	return now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
}

/* connect() that gives up at @deadline: a server that does not accept
 * fills its backlog, and a blocking connect would then wait for ever. */
static int connect_until(const char *path, uint64_t deadline)
{
	struct sockaddr_un a;
	int len = sock_addr(path, &a), fd, err = 0;

	if (len < 0)
		return len;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&a, (socklen_t)len) < 0) {
		err = -errno;
		if (err == -EINTR)
			continue;
		if (err != -EAGAIN)
			break;
		if (left_ms(deadline) == 0) {
			err = -ETIMEDOUT;
			break;
		}
		poll(NULL, 0, 10); /* the backlog is full: try again shortly */
		err = 0;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int server_connect(struct client *c)
{
	uint64_t deadline = c->timeout_ms < 0 ? 0 : mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
	struct shset_peer peer;
	char buf[sizeof(c->reason) + 8];
	int fd, err;

	c->server_uid = (uid_t)-1;
	c->reason[0] = 0;
	fd = connect_until(c->path, deadline);
	if (fd < 0)
		return fd;
	/* The credentials the server had when it called listen(): a socket
	 * passed on to someone else still names who bound it. */
	err = shset_peer_cred(fd, &peer);
	if (!err && !trusted(peer.uid, &c->trust)) {
		c->server_uid = peer.uid;
		err = -EPERM;
	}
	while (!err) {
		struct pollfd p = {fd, POLLIN, 0};
		int n = poll(&p, 1, left_ms(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -ETIMEDOUT;
			break;
		}
		/* A peek leaves the message, and any fd it carries, in place. */
		ssize_t got = recv(fd, buf, sizeof(buf) - 1, MSG_PEEK);
		if (got < 0) {
			err = errno == EINTR || errno == EAGAIN ? 0 : -errno;
			continue;
		}
		if (got == 0)
			err = -ECONNRESET;
		else if (got >= 6 && !memcmp(buf, "SHSETF", 6))
			break;
		else if ((size_t)got >= strlen(REFUSAL_TAG) &&
			 !memcmp(buf, REFUSAL_TAG, strlen(REFUSAL_TAG))) {
			/* The whole line, which may come in pieces. */
			size_t n2 = 0;
			ssize_t r;
			while (n2 < sizeof(buf) - 1 && left_ms(deadline) != 0 &&
			       (r = recv(fd, buf + n2, sizeof(buf) - 1 - n2, 0)) != 0) {
				if (r > 0)
					n2 += (size_t)r;
				else if (errno == EAGAIN)
					poll(&p, 1, left_ms(deadline));
				else if (errno != EINTR)
					break;
			}
			buf[n2] = 0;
			buf[strcspn(buf, "\n")] = 0;
			size_t rl = strnlen(buf + strlen(REFUSAL_TAG), sizeof(c->reason) - 1);
			memcpy(c->reason, buf + strlen(REFUSAL_TAG), rl);
			c->reason[rl] = 0;
			err = -EACCES;
		} else
			err = -EBADMSG;
	}
	if (err) {
		close(fd);
		return err;
	}
	/* shset_recv reads a whole message that is already there. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int client_perror(const char *prog, const struct client *c, int err)
{
	const char *path = c->path;

	if (err == -EPERM && c->server_uid != (uid_t)-1) {
		char who[64];
		unsigned me = (unsigned)geteuid();
		int n = me ? snprintf(who, sizeof(who), "%u or 0", me)
			   : snprintf(who, sizeof(who), "0");
		if (c->trust.uid >= 0)
			snprintf(who + n, sizeof(who) - (size_t)n, " or %lld", c->trust.uid);
		fprintf(stderr,
			"%s: refusing server on %s: it runs as uid %u, not %s; use --server-uid %u "
			"to trust it\n",
			prog, path, (unsigned)c->server_uid, who, (unsigned)c->server_uid);
	} else if (err == -ENOENT || err == -ECONNREFUSED)
		fprintf(stderr,
			"%s: cannot reach a server on %s: %s (is `shset serve --socket %s` "
			"running?)\n",
			prog, path, strerror(-err), path);
	else if (err == -ETIMEDOUT)
		fprintf(stderr,
			"%s: %s: no answer within %.1f s: is a shset server on it? (--timeout "
			"SECONDS waits longer, 0 for ever)\n",
			prog, path, c->timeout_ms / 1000.0);
	else if (err == -EACCES && c->reason[0])
		fprintf(stderr, "%s: %s: the server refused this client: %s\n", prog, path,
			c->reason);
	else if (err == -ECONNRESET)
		fprintf(stderr,
			"%s: %s: the server closed the connection without sending the set (see "
			"its log)\n",
			prog, path);
	else if (err == -EBADMSG)
		fprintf(stderr, "%s: %s: not a shset server: it sent something else\n", prog, path);
	else if (err == -EPROTONOSUPPORT)
		fprintf(stderr,
			"%s: %s: the server speaks a protocol or set format this program does "
			"not know (a different shset version?)\n",
			prog, path);
	else
		sock_perror(prog, path, err);
	return EXIT_CONNECT;
}

static const char *file_kind(mode_t m)
{
	return S_ISDIR(m)    ? "a directory"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISLNK(m)  ? "a symbolic link"
			     : "a special file";
}

int open_regular(const char *path, const char **what)
{
	struct stat st;
	int fd, err;

	*what = NULL;
	/* O_NONBLOCK: opening a FIFO (or a tty, a device) must not wait. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		err = -errno;
		/* A socket (also one behind /proc/PID/fd/N) cannot be opened. */
		if (err == -ENXIO && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
			*what = file_kind(st.st_mode);
			return -EINVAL;
		}
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		*what = file_kind(st.st_mode);
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	return fd;
}

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
