/* SPDX-License-Identifier: MIT */
/* common.c - helpers shared by the command-line tools. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

void key_print(FILE *f, const void *key, size_t len, enum key_format fmt)
{
	const unsigned char *k = key;

	switch (fmt) {
	case KEY_HEX:
		for (size_t i = 0; i < len; i++)
			fprintf(f, "%02x", k[i]);
		fputc('\n', f);
		break;
	case KEY_NUL:
		fwrite(k, 1, len, f);
		fputc(0, f);
		break;
	case KEY_JSON:
		json_string(f, k, len);
		break;
	case KEY_TEXT:
		for (size_t i = 0; i < len; i++) {
			if (k[i] == '\\')
				fputs("\\\\", f);
			else if (k[i] == '\n')
				fputs("\\n", f);
			else if (k[i] == '\t')
				fputs("\\t", f);
			else if (k[i] < 0x20 || k[i] >= 0x7f)
				fprintf(f, "\\x%02x", k[i]);
			else
				fputc(k[i], f);
		}
		fputc('\n', f);
		break;
	}
}

void json_string(FILE *f, const void *s, size_t len)
{
	const unsigned char *k = s;

	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		if (k[i] == '"' || k[i] == '\\')
			fprintf(f, "\\%c", k[i]);
		else if (k[i] < 0x20 || k[i] >= 0x7f)
			fprintf(f, "\\u%04x", k[i]);
		else
			fputc(k[i], f);
	}
	fputc('"', f);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long hex_decode(char *s)
{
	size_t n = strlen(s);

	if (n % 2)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		s[i / 2] = (char)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

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

int server_connect(const char *path, const struct server_trust *t, uid_t *server_uid)
{
	struct shset_peer peer;
	int fd = sock_connect(path), err;

	*server_uid = (uid_t)-1;
	if (fd < 0)
		return fd;
	/* The credentials the server had when it called listen(): a socket
	 * passed on to someone else still names who bound it. */
	err = shset_peer_cred(fd, &peer);
	if (!err && !trusted(peer.uid, t)) {
		*server_uid = peer.uid;
		err = -EPERM;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int server_perror(const char *prog, const char *path, int err, const struct server_trust *t,
		  uid_t server_uid)
{
	if (err != -EPERM || server_uid == (uid_t)-1) {
		sock_perror(prog, path, err);
		return EXIT_CONNECT;
	}
	char who[64];
	unsigned me = (unsigned)geteuid();
	int n = me ? snprintf(who, sizeof(who), "%u or 0", me) : snprintf(who, sizeof(who), "0");
	if (t && t->uid >= 0)
		snprintf(who + n, sizeof(who) - (size_t)n, " or %lld", t->uid);
	fprintf(stderr,
		"%s: refusing server on %s: it runs as uid %u, not %s; use --server-uid %u to "
		"trust it\n",
		prog, path, (unsigned)server_uid, who, (unsigned)server_uid);
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

int read_key(FILE *f, int nul, char **key, size_t *cap, size_t *len)
{
	ssize_t n = getdelim(key, cap, nul ? 0 : '\n', f);

	if (n < 0)
		return 0;
	if (n > 0 && (*key)[n - 1] == (nul ? 0 : '\n'))
		n--;
	*len = (size_t)n;
	return 1;
}

uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
