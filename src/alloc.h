/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - the block allocator of a set's heap (private): tables and key
 * blocks, power-of-two sized, carved from brk or reused from free lists
 * kept by size class, all inside a transaction.
 */
#ifndef SHSET_ALLOC_H
#define SHSET_ALLOC_H

#include <stdint.h>

#define ALLOC_CLASSES	45u /* block sizes 2^0 .. 2^44; used from 2^5 */
#define ALLOC_MIN_CLASS 5u
/* Bytes of a key block before the key: free-list link | stamp. */
#define ALLOC_HDR 8u
/* Freed tables this big or bigger give their pages back (all but the
 * first page, which holds the list link), at most ALLOC_PUNCH_STEP bytes
 * a transaction. */
#define ALLOC_PUNCH_MIN	 4096u
#define ALLOC_PUNCH_STEP (2u << 20)

struct tx;

/* The class of the smallest block that holds @bytes. */
unsigned alloc_class(uint64_t bytes);
/* Bytes of a block of class @cls. */
static inline uint64_t alloc_class_bytes(unsigned cls)
{
	return 1ull << cls;
}
/* The block that holds a key of @len bytes (and its header): its class. */
static inline unsigned alloc_key_class(uint64_t len)
{
	return alloc_class(ALLOC_HDR + len);
}

/* Allocates a block of class @cls: from its free list, else from brk.
 * @is_table: the block has no header (its first word is logged instead of
 * stamped). */
int alloc_get(struct tx *x, unsigned cls, int is_table, uint64_t *out);
/* Queues a block for the free lists at commit. */
int alloc_put(struct tx *x, uint64_t b, unsigned cls, int is_table);
/* At the start of a transaction, before any write: gives back the next
 * step of the punch list (see alloc.c). */
void alloc_begin(struct tx *x);
/* Commit: splices the queued blocks into the free lists and publishes brk
 * and the heads this transaction read. */
void alloc_commit(struct tx *x);
/* Everything in the heap is free: brk back to its start, no free lists,
 * and after the commit the pages go back to the kernel (clear). */
void alloc_reset(struct tx *x);
/* After the commit point: gives the pages of a cleared heap back. */
void alloc_release(struct tx *x);
/* The free lists of the state @st (a private copy) seen through @v: in the
 * heap, aligned, no cycles.  0 or -EUCLEAN. */
struct view;
struct tx_state;
int alloc_verify(const struct view *v, const struct tx_state *st);
/* The free list of class @c as this transaction sees it. */
uint64_t *alloc_head(struct tx *x, unsigned c);

#endif
