/* SPDX-License-Identifier: MIT */
/* inspect.h - inspection of snapshot files and live sets. */
#ifndef SHSET_TOOLS_INSPECT_H
#define SHSET_TOOLS_INSPECT_H

#include <stdio.h>

#include "common.h"

struct inspect_opts {
	int keys;	   /* print the keys */
	enum key_mode fmt; /* how */
	int json;	   /* one JSON object */
	int verify;	   /* exit 0 sound, 1 corrupt */
	int quiet;	   /* with verify: print nothing */
};

/* Each returns the tool's exit code. */
int inspect_snapshot(const char *path, const struct inspect_opts *o, FILE *f);
int inspect_live(int fd, const char *name, const struct inspect_opts *o, FILE *f);
/* A memfd (e.g. /proc/PID/fd/N) is inspected live, anything else as a
 * snapshot file. */
int inspect_path(const char *path, const struct inspect_opts *o, FILE *f);

#endif
