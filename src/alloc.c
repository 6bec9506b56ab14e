/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the block allocator of a set's heap.
 *
 * [heap_off, brk) holds tables and key blocks, both power-of-two sized.  A
 * free block's first word links it into head[class]; popping leaves the
 * link in place.  A key block starts with a header word: free-list link
 * (40 bits, in 32-byte units) | stamp (24 bits).
 *
 * What needs no logging, and why:
 *   - memory past the committed brk;
 *   - the header of a key block freed by this transaction: freed blocks go
 *     to private pending lists and reach head[] only at commit, so no block
 *     freed in a transaction is reused by it.  The exception is a block
 *     popped from a free list in this same transaction (its link is still
 *     needed by the committed list): popping stamps the header with the
 *     transaction number, and freeing a block with the current stamp logs
 *     the header first.  Tables have no header, so their first word is
 *     always logged when they are freed or popped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "alloc.h"
#include "crashpoint.h"
#include "prim.h"
#include "tx.h"

#define BLK_NEXT_MASK ((1ull << 40) - 1)
#define BLK_STAMP(w)  ((uint32_t)((w) >> 40))
/* A table on the punch list: next table | its class << 56. */
#define PUNCH_CLS_SHIFT 56
#define PUNCH_NEXT_MASK ((1ull << PUNCH_CLS_SHIFT) - 1)

unsigned alloc_class(uint64_t bytes)
{
	unsigned c = ALLOC_MIN_CLASS;

	while ((1ull << c) < bytes)
		c++;
	return c;
}

uint64_t *alloc_head(struct tx *x, unsigned c)
{
	if (!(x->head_mask & (1ull << c))) {
		x->head[c] = __atomic_load_n(&x->st->head[c], __ATOMIC_RELAXED);
		x->head_mask |= 1ull << c;
	}
	return &x->head[c];
}

int alloc_get(struct tx *x, unsigned cls, int is_table, uint64_t *out)
{
	uint64_t size = alloc_class_bytes(cls), b = *alloc_head(x, cls);

	if (b) {
		uint8_t *p = view_heap(&x->v, b, size);
		if (!p)
			return -EUCLEAN;
		uint64_t w = prim_ld64(p);
		uint64_t next = (w & BLK_NEXT_MASK) << 5;
		if (next && !view_heap(&x->v, next, size))
			return -EUCLEAN;
		if (is_table) {
			int err = tx_log(x, b);
			if (err)
				return err;
		} else {
			/* Only the stamp: the committed list still needs the link. */
			tx_touch(x);
			prim_st64(p, (w & BLK_NEXT_MASK) | ((uint64_t)x->stamp << 40));
			CRASH_POINT("alloc: free block stamped");
		}
		*alloc_head(x, cls) = next;
		*out = b;
		return 0;
	}
	uint64_t align = size < 64 ? 32 : 64;
	b = (x->brk + align - 1) & ~(align - 1);
	if (b + size < b || b + size > x->r->map_size)
		return -ENOSPC;
	int err = region_grow(x->r, b + size);
	if (err)
		return err;
	x->brk = b + size;
	x->v.brk = x->brk;
	if (!is_table) {
		tx_touch(x);
		prim_st64(x->r->base + b, 0);
		CRASH_POINT("alloc: fresh block header");
	}
	*out = b;
	return 0;
}

int alloc_put(struct tx *x, uint64_t b, unsigned cls, int is_table)
{
	uint64_t size = alloc_class_bytes(cls);
	uint8_t *p = view_heap(&x->v, b, size);

	if (!p)
		return -EUCLEAN;
	uint64_t w = prim_ld64(p);
	if (is_table || BLK_STAMP(w) == x->stamp) {
		int err = tx_log(x, b);
		if (err)
			return err;
	}
	tx_touch(x);
	if (is_table && size >= 2 * ALLOC_PUNCH_MIN) {
		/* To the punch list: free once its pages are given back. */
		prim_st64(p, x->ppend_head | (uint64_t)cls << PUNCH_CLS_SHIFT);
		CRASH_POINT("free: table queued for punching");
		if (!x->ppend_head)
			x->ppend_tail = b;
		x->ppend_head = b;
		return 0;
	}
	if (!(x->pend_mask & (1ull << cls))) {
		x->pend_mask |= 1ull << cls;
		x->pend_head[cls] = 0;
		x->pend_tail[cls] = b;
	}
	prim_st64(p, x->pend_head[cls] >> 5);
	CRASH_POINT("free: block queued");
	x->pend_head[cls] = b;
	return 0;
}

/*
 * Gives back up to ALLOC_PUNCH_STEP bytes of the first table on the punch
 * list; a table done moves to the free list of its class.  Punching memory
 * nothing committed refers to is safe at any point of a transaction, and
 * idempotent: a crash only makes the next one punch it again.  Each step
 * is bounded, so freeing a big table never holds the lock for long.
 */
static void punch_step(struct tx *x)
{
	uint64_t b = x->punch_head;

	if (!b)
		return;
	uint8_t *p = view_heap(&x->v, b, ALLOC_PUNCH_MIN);
	uint64_t w = p ? prim_ld64(p) : 0;
	unsigned cls = (unsigned)(w >> PUNCH_CLS_SHIFT);
	uint64_t size = cls < ALLOC_CLASSES ? alloc_class_bytes(cls) : 0;
	uint64_t next = w & PUNCH_NEXT_MASK;
	if (!p || size < 2 * ALLOC_PUNCH_MIN || !view_heap(&x->v, b, size) ||
	    (next && !view_heap(&x->v, next, ALLOC_PUNCH_MIN)) || x->punch_done >= size) {
		/* Scribbled: drop the list (its memory is lost, not misused). */
		x->punch_head = 0;
		x->punch_done = 0;
		return;
	}
	uint64_t from = x->punch_done < ALLOC_PUNCH_MIN ? ALLOC_PUNCH_MIN : x->punch_done;
	uint64_t len = size - from < ALLOC_PUNCH_STEP ? size - from : ALLOC_PUNCH_STEP;
	/* Before the transaction marks the set as changing: readers need not
	 * wait for the punch, which touches nothing they read. */
	fallocate(x->r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(b + from),
		  (off_t)len);
	CRASH_POINT("punch: pages given back");
	x->punch_done = from + len;
	if (x->punch_done < size)
		return;
	x->punch_head = next;
	x->punch_done = 0;
	/* Its link word becomes a free-list link (logged: a rollback puts
	 * it back on the punch list).  The reserve has room for this word. */
	if (tx_log(x, b))
		return;
	if (!(x->pend_mask & (1ull << cls))) {
		x->pend_mask |= 1ull << cls;
		x->pend_head[cls] = 0;
		x->pend_tail[cls] = b;
	}
	prim_st64(p, x->pend_head[cls] >> 5);
	x->pend_head[cls] = b;
}

void alloc_begin(struct tx *x)
{
	punch_step(x);
}

void alloc_commit(struct tx *x)
{
	struct tx_state *st = x->st;
	if (x->ppend_head) {
		/* This transaction's freed tables go in front of the list. */
		uint64_t w = prim_ld64(x->r->base + x->ppend_tail);
		tx_publish(x, (uint64_t *)(x->r->base + x->ppend_tail),
			   (w & ~PUNCH_NEXT_MASK) | x->punch_head);
		x->punch_head = x->ppend_head;
		x->punch_done = 0; /* a half-done table is punched again: harmless */
	}
	tx_publish(x, &st->punch_head, x->punch_head);
	tx_publish(x, &st->punch_done, x->punch_done);

	for (uint64_t m = x->pend_mask; m; m &= m - 1) {
		unsigned c = (unsigned)__builtin_ctzll(m);
		uint64_t tail = x->pend_tail[c];
		tx_publish(x, (uint64_t *)(x->r->base + tail), *alloc_head(x, c) >> 5);
		CRASH_POINT("commit: free list spliced");
		x->head[c] = x->pend_head[c];
	}
	tx_publish(x, &st->brk, x->brk);
	for (uint64_t m = x->head_mask; m; m &= m - 1) {
		unsigned c = (unsigned)__builtin_ctzll(m);
		tx_publish(x, &st->head[c], x->head[c]);
	}
}

void alloc_reset(struct tx *x)
{
	uint64_t heap = x->r->heap_off;

	if (x->brk > x->punch_to)
		x->punch_to = x->brk;
	x->brk = heap;
	x->v.brk = heap;
	memset(x->head, 0, sizeof(x->head));
	x->head_mask = (1ull << ALLOC_CLASSES) - 1;
	x->pend_mask = 0;
	/* Tables waiting to be punched go with the rest. */
	x->punch_head = 0;
	x->punch_done = 0;
	x->ppend_head = 0;
}

/* Gives the pages of a cleared heap back to the kernel.  Only after the
 * commit: until then a rollback may need what they hold. */
void alloc_release(struct tx *x)
{
	uint64_t heap = x->r->heap_off;

	if (x->punch_to > heap)
		fallocate(x->r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)heap,
			  (off_t)(x->punch_to - heap));
}

int alloc_verify(const struct view *v, const struct tx_state *st)
{
	for (unsigned c = 0; c < ALLOC_CLASSES; c++) {
		uint64_t b = st->head[c], steps = 0, size = alloc_class_bytes(c);
		uint64_t limit = (st->brk - v->heap_off) / size + 1;
		while (b) {
			const uint8_t *p = view_heap(v, b, size);
			if (!p || c < ALLOC_MIN_CLASS || ++steps > limit)
				return -EUCLEAN;
			b = (prim_ld64(p) & BLK_NEXT_MASK) << 5;
		}
	}
	uint64_t b = st->punch_head, steps = 0;
	uint64_t limit = (st->brk - v->heap_off) / (2 * ALLOC_PUNCH_MIN) + 1;
	while (b) {
		const uint8_t *p = view_heap(v, b, ALLOC_PUNCH_MIN);
		unsigned cls = p ? (unsigned)(prim_ld64(p) >> PUNCH_CLS_SHIFT) : 0;
		if (!p || cls >= ALLOC_CLASSES || alloc_class_bytes(cls) < 2 * ALLOC_PUNCH_MIN ||
		    !view_heap(v, b, alloc_class_bytes(cls)) || ++steps > limit)
			return -EUCLEAN;
		b = prim_ld64(p) & PUNCH_NEXT_MASK;
	}
	return 0;
}
