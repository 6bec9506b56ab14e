/* SPDX-License-Identifier: MIT */
/* common.c - helpers shared by the command-line tools. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

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

int sock_addr(const char *path, void *p)
{
	struct sockaddr_un *a = p;
	size_t n = strlen(path);

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(a->sun_path))
		return -1;
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
		return -ENAMETOOLONG;
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
