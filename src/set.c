/* SPDX-License-Identifier: MIT */
/* set.c - the public set operations, built on region, lock and table. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "region.h"
#include "shset.h"

struct shset {
	struct region *r;
};

int shset_create(shset **out, const struct shset_opts *opts)
{
	struct region_opts ro = {0};
	struct shset *s;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts) {
		if (opts->flags)
			return -EINVAL;
		ro.max_size = opts->max_bytes;
		ro.nslots = opts->max_procs;
		ro.log_bytes = opts->log_bytes;
		ro.name = opts->name;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	err = region_create(&s->r, &ro);
	if (err) {
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

int shset_attach_fd(shset **out, int fd)
{
	struct shset *s;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	err = region_attach(&s->r, fd, 0);
	if (err) {
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

int shset_fd(const shset *s)
{
	return s ? s->r->fd : -EINVAL;
}

void shset_close(shset *s)
{
	if (!s)
		return;
	region_close(s->r);
	free(s);
}
