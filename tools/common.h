/* SPDX-License-Identifier: MIT */
/* common.h - helpers shared by the command-line tools. */
#ifndef SHSET_TOOLS_COMMON_H
#define SHSET_TOOLS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Exit codes shared by the tools. */
enum {
	EXIT_NO = 1,	  /* contains: absent; inspect --verify: corrupt */
	EXIT_USAGE = 2,	  /* bad command line */
	EXIT_CONNECT = 3, /* could not reach or receive from the server */
	EXIT_SET = 4,	  /* the library refused an operation */
	EXIT_IO = 5,	  /* reading input or a file failed */
};

enum key_format { KEY_TEXT, KEY_HEX, KEY_NUL, KEY_JSON };

/* Prints a key: text escapes anything but printable ASCII (\n, \\, \xHH),
 * hex prints two digits a byte, NUL prints raw bytes, JSON a string with
 * \u00XX for every byte outside printable ASCII. */
void key_print(FILE *f, const void *key, size_t len, enum key_format fmt);
void json_string(FILE *f, const void *s, size_t len);
/* Decodes hex in place; returns the length or -1. */
long hex_decode(char *s);

/* The longest socket path: sun_path less its terminating (or, for an
 * abstract name, leading) NUL. */
#define SOCK_PATH_MAX 107

/* Fills a sockaddr_un for a filesystem path or, with a leading '@', an
 * abstract name; returns its length, -EINVAL if empty or -ENAMETOOLONG. */
int sock_addr(const char *path, void *sun);
/* Connects to @path as sock_addr names it; returns the fd or -errno. */
int sock_connect(const char *path);
/* Prints "@prog: @path: why" for an error of sock_addr, bind or connect. */
void sock_perror(const char *prog, const char *path, int err);

/*
 * Clients trust a server run by their own user or root, and by the one
 * more uid named with --server-uid: anyone can bind a name first, and a
 * client of a stranger's server would write its keys into a set the
 * stranger controls.
 */
struct server_trust {
	long long uid; /* the extra uid to trust, or -1 */
};
/* Parses a --server-uid value (a number, not -1); 0 or -EINVAL. */
int server_trust_parse(struct server_trust *t, const char *arg);
/* Connects to the server on @path and checks its credentials before
 * anything is read.  Returns the fd, or -errno; -EPERM when the server
 * runs as an untrusted user, whose uid is then in *@server_uid. */
int server_connect(const char *path, const struct server_trust *t, uid_t *server_uid);
/* Prints why server_connect failed; returns EXIT_CONNECT. */
int server_perror(const char *prog, const char *path, int err, const struct server_trust *t,
		  uid_t server_uid);

/* Opens @path read-only without blocking (a FIFO with no writer, a
 * device) and returns the fd if it is a regular file, memfds included.
 * Anything else is -EINVAL (-EISDIR for a directory), *@what naming it
 * ("a FIFO"); errors of open leave *@what NULL. */
int open_regular(const char *path, const char **what);

/* Reads the next key from @f: lines, or NUL-separated with @nul.
 * Returns 1 with *@key (malloc'd buffer reused) and *@len, 0 at EOF. */
int read_key(FILE *f, int nul, char **key, size_t *cap, size_t *len);

uint64_t mono_ns(void);

#endif
