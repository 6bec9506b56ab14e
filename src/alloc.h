/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - the block allocator of a set's heap (private): tables and key
 * blocks, carved from brk or reused from free lists kept by size class,
 * all inside a transaction.
 *
 * Size classes: 32 to 256 bytes in 16-byte steps, then four per doubling
 * (320, 384, 448, 512, 640, ...) up to 2^44 bytes, so that a key block
 * wastes under 16 bytes or under a fifth of its size, and every power of
 * two from 512 on (a table) is a class of its own.
 */
#ifndef SHSET_ALLOC_H
#define SHSET_ALLOC_H

#include <stdint.h>

#define ALLOC_STEP	   16u	/* sizes and alignment of small blocks */
#define ALLOC_SMALL_MAX	   256u /* the last class of the 16-byte steps */
#define ALLOC_SMALL	   15u	/* classes 32, 48, ..., 256 */
#define ALLOC_PER_DOUBLING 4u
/* Classes 32 .. 256, then 4 per doubling from 256 to 2^44. */
#define ALLOC_CLASSES (ALLOC_SMALL + ALLOC_PER_DOUBLING * (44u - 8u))
/* Blocks this big or bigger (every table) start 64-byte aligned. */
#define ALLOC_BIG	512u
#define ALLOC_BIG_ALIGN 64u
#define ALLOC_MAP_WORDS ((ALLOC_CLASSES + 63) / 64)
/* Freed blocks (tables, big keys') this big or bigger give their pages back (all but the
 * page that holds the list link and a last one shared with the next block), at most
 * ALLOC_PUNCH_STEP bytes a transaction, with the lock held.  A punch costs a few us
 * plus about 0.5 us a page, and some 20 us more when a process that maps the pages
 * runs on another CPU (the TLB shootdown there: a hypervisor exit each in a VM).  So a
 * step is big enough that a set growing with 16-byte keys takes one for about every
 * 2,000 adds (past an add's p99.9; and two writers of a growing set pay a shootdown
 * per 64 pages, not per 8) and short enough (30 to 100 us) to keep the lock's hold
 * far below a millisecond. */
#define ALLOC_PUNCH_MIN	 4096u
#define ALLOC_PUNCH_STEP (256u << 10)

struct tx;

/* The class of the smallest block that holds @bytes; ALLOC_CLASSES when
 * none does (more than 2^44 bytes). */
unsigned alloc_class(uint64_t bytes);
/* Bytes of a block of class @cls (<= ALLOC_CLASSES). */
static inline uint64_t alloc_class_bytes(unsigned cls)
{
	if (cls < ALLOC_SMALL)
		return 2 * ALLOC_STEP + (uint64_t)cls * ALLOC_STEP;
	unsigned j = cls - ALLOC_SMALL, k = 8 + j / ALLOC_PER_DOUBLING;
	return (1ull << k) + (uint64_t)(j % ALLOC_PER_DOUBLING + 1) * (1ull << (k - 2));
}
/* Where blocks of class @cls start: a multiple of this. */
static inline uint64_t alloc_class_align(unsigned cls)
{
	return alloc_class_bytes(cls) >= ALLOC_BIG ? ALLOC_BIG_ALIGN : ALLOC_STEP;
}
/* The block that holds a key of @len bytes (nothing else): its class. */
static inline unsigned alloc_key_class(uint64_t len)
{
	return alloc_class(len);
}

/* Allocates a block of class @cls: a key block from the free queue first,
 * then from its free list; a table from its free list, else a freed one
 * of its class waiting on the punch list; else from brk.
 * @is_table: a table (at least ALLOC_BIG bytes, for its alignment). */
int alloc_get(struct tx *x, unsigned cls, int is_table, uint64_t *out);
/* Queues a block for the free lists at commit.  A key block (!@is_table)
 * freed when the undo log runs low, or by a transaction that rebuilt its
 * table (tx->bulk), goes to the free queue instead. */
int alloc_put(struct tx *x, uint64_t b, unsigned cls, int is_table);
/* At the start of a transaction, before any write: gives back the next
 * step of the punch list and moves the next blocks of the free queue to
 * the free lists (see alloc.c). */
void alloc_begin(struct tx *x);
/* Everything in the heap is free (clear): brk back to its start, every
 * free list and the punch list empty once committed, nothing queued, and
 * after the commit the pages go back to the kernel.  The committed heap is
 * not touched, so nothing may be allocated after it in the same
 * transaction (-EINVAL). */
void alloc_reset(struct tx *x);
/* Commit: splices the queued blocks into the free lists and publishes brk
 * and the heads this transaction read. */
void alloc_commit(struct tx *x);
/* The most words alloc_commit may log: a splice and a head per class,
 * brk, the punch list's two words and the splice of the tables freed
 * behind its head (the tail's link and the head's), the free queue. */
#define ALLOC_COMMIT_WORDS (2 * ALLOC_CLASSES + 6)
/* After the commit point: gives the pages of a cleared heap back. */
void alloc_release(struct tx *x);
/* The free lists of the state @st (a private copy) seen through @v: in the
 * heap, aligned for their class, no cycles, no more bytes than the heap.
 * 0 or -EUCLEAN. */
struct view;
struct tx_state;
int alloc_verify(const struct view *v, const struct tx_state *st);

#endif
