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

#include "keyfmt.h"

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
/*
 * What a client needs to reach a server: its socket, whom to trust, and how
 * long to wait (a socket that accepts and never answers, Redis's say, must
 * not hang a script).
 */
struct client {
	const char *path;
	struct server_trust trust;
	int timeout_ms; /* < 0: wait forever */
	/* Filled when something fails, for client_perror: */
	uid_t server_uid; /* an untrusted server's uid, or -1 */
	char reason[256]; /* what a refusing server said */
};
#define CLIENT_TIMEOUT_MS 5000

/* Parses seconds ("5", "0.5"; "0" waits forever) into milliseconds. */
int timeout_parse(const char *arg, int *ms);

/*
 * Connects to the server on c->path, checks its credentials before anything
 * is read, and waits (at most c->timeout_ms in all) until the server's
 * message is there.  Returns the fd, ready for shset_recv, or -errno:
 *   -EPERM      the server runs as an untrusted user (c->server_uid)
 *   -EACCES     the server refused us and said why (c->reason)
 *   -ETIMEDOUT  nothing came in time
 *   -ECONNRESET the server closed without a word
 *   -EBADMSG    it sent something that is not a shset message
 */
int server_connect(struct client *c);
/* Prints why server_connect or shset_recv failed; returns EXIT_CONNECT. */
int client_perror(const char *prog, const struct client *c, int err);

/* The first bytes of a refusal: a server that will not hand its set to a
 * client says why in one line, after this tag. */
#define REFUSAL_TAG "SHSETE"

/* Opens @path read-only without blocking (a FIFO with no writer, a
 * device) and returns the fd if it is a regular file, memfds included.
 * Anything else is -EINVAL (-EISDIR for a directory), *@what naming it
 * ("a FIFO"); errors of open leave *@what NULL. */
int open_regular(const char *path, const char **what);

uint64_t mono_ns(void);

#endif
