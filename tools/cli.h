/* SPDX-License-Identifier: MIT */
/* cli.h - the parts of the shset command shared by its source files. */
#ifndef SHSET_TOOLS_CLI_H
#define SHSET_TOOLS_CLI_H

#include <sys/types.h>

#include "common.h"
#include "shset.h"

extern const char *cmd;

/* Every option of every command; each command accepts a subset. */
struct opts {
	const char *name;		 /* the command */
	struct client client;		 /* --socket, --server-uid, --timeout */
	const char *load, *save, *group; /* serve */
	long every;			 /* serve: seconds, 0 none */
	long mode;			 /* serve --mode, or -1 */
	int quiet;			 /* serve: no banner (the demo's server) */
	long workers, keys;		 /* demo */
	int keep;			 /* demo */
	enum key_mode km;		 /* key encoding */
	int json, sorted, replace;
	const char *resp_key; /* export --resp KEY */
	char **args;
	int nargs;
};

/* "shset: @what: strerror(@err)"; returns @code. */
int fail(int code, const char *what, int err);

/* Connects and receives the served set; 0 or an exit code. */
int open_served(struct opts *o, shset **s);

int cmd_serve(struct opts *o);
int cmd_demo(struct opts *o);

#endif
