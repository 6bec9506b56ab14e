/* SPDX-License-Identifier: MIT */
/*
 * view.h - bounds-checked access to a set's heap, in the live region or in
 * a private copy of it (private).
 *
 * The region is shared with processes that may be hostile, so every offset
 * and length read from it reaches memory only through view_at() /
 * view_heap(), which check it against the bytes known to exist (a live
 * region: the file's size, refreshed when needed; a copy: its buffer) and,
 * for heap objects, against [heap_off, brk).  Anything else is NULL, which
 * callers turn into -EUCLEAN.
 */
#ifndef SHSET_VIEW_H
#define SHSET_VIEW_H

#include <stdint.h>

#include "region.h"

/* Heap objects (tables and arena blocks) start on this boundary at least
 * (alloc.h: small key blocks on 16 bytes, tables on 64). */
#define VIEW_HEAP_ALIGN 16u

struct view {
	struct region *r;   /* a live region, or NULL for a copy */
	const uint8_t *buf; /* copy: byte at offset o is buf[o - bias] */
	uint64_t bias, end;
	uint64_t heap_off, brk; /* tables and blocks must lie in [heap_off, brk) */
	uint64_t seed[2];
	/* The shard it is: a live key's hash has (h & shard_mask) == shard. */
	uint32_t shard_mask, shard;
};

/* A view of the live region @r whose heap ends at @brk (a value the caller
 * read once and checked). */
static inline void view_region(struct view *v, struct region *r, uint64_t brk)
{
	v->r = r;
	v->buf = NULL;
	v->bias = 0;
	v->end = 0;
	v->heap_off = r->heap_off;
	v->brk = brk;
	v->seed[0] = r->seed[0];
	v->seed[1] = r->seed[1];
	v->shard_mask = r->nshards - 1;
	v->shard = r->shard_idx;
}

/* A view of a private copy: @buf holds the bytes [@heap_off, @brk). */
static inline void view_copy(struct view *v, const uint8_t *buf, uint64_t heap_off, uint64_t brk,
			     const uint64_t seed[2], uint32_t shard_mask, uint32_t shard)
{
	*v = (struct view){.r = NULL,
			   .buf = buf,
			   .bias = heap_off,
			   .end = brk,
			   .heap_off = heap_off,
			   .brk = brk,
			   .seed = {seed[0], seed[1]},
			   .shard_mask = shard_mask,
			   .shard = shard};
}

/* The one bounds check: a pointer to [off, off+len) or NULL. */
static inline uint8_t *view_at(const struct view *v, uint64_t off, uint64_t len)
{
	if (off + len < off)
		return NULL;
	if (v->r)
		return region_check(v->r, off, len) ? NULL : v->r->base + off;
	if (off < v->bias || off + len > v->end)
		return NULL;
	return (uint8_t *)v->buf + (off - v->bias);
}

/* A heap object (table or block) of @len bytes at @off. */
static inline uint8_t *view_heap(const struct view *v, uint64_t off, uint64_t len)
{
	if (off < v->heap_off || off + len > v->brk || off + len < off ||
	    (off & (VIEW_HEAP_ALIGN - 1)))
		return NULL;
	return view_at(v, off, len);
}

#endif
