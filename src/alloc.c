/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the block allocator of a set's heap.
 *
 * [heap_off, brk) holds tables and key blocks, sized by class (alloc.h).
 * Blocks of 512 bytes or more start 64-byte aligned, smaller ones 16-byte
 * aligned; a class's blocks all share one alignment, so a block reused
 * from a free list is aligned as one carved from brk.  A free block's
 * first word links it into head[class] (40 bits, in 16-byte units: 2^44
 * bytes); popping leaves the link in place.  Blocks have no header: a key
 * block holds the key's bytes alone, so a 64-byte key takes 64 bytes.
 *
 * A freed block of 8 KiB or more (a table, or the block of a key over 8 KiB)
 * first goes to the punch list (first word: next block | its class << 56):
 * each transaction, as it begins, gives its pages back a bounded step at a
 * time; then it moves to the free list of its class.
 *
 * Freeing a block writes its first word (a link), which a rollback needs
 * back (the committed table still names the key, or table, it held), and
 * popping one overwrites the link the committed list needs: both log that
 * word.  A transaction that frees more key blocks than the undo log holds
 * (a batch removing a million long keys, set algebra on a fresh table),
 * or any that rebuilt its table, writes nothing into those it frees: it
 * lists them in the free queue instead, in queue blocks carved from brk
 * or popped from their free list, and later transactions move them to
 * the free lists, FQ_DRAIN at a time as they begin (the blocks are then
 * unreferenced, so their links need no logging either), or take them
 * for keys straight from the queue (queue_take).
 *
 * What needs no logging, and why:
 *   - memory past the committed brk (new queue blocks carved from it);
 *   - the rest of a block whose first word is logged (a queue block
 *     popped from its free list): nothing committed reads past that word;
 *   - the first word of a block that nothing committed refers to: one on
 *     the punch list or in the free queue, moved to a free list;
 *   - a queued block taken for a key: the queue block's count is logged,
 *     so a rollback lists it again, whatever it then holds;
 *   - freed blocks go to private pending lists and reach head[] only at
 *     commit, so no block freed in a transaction is reused by it.
 *
 * Links are read from shared memory, once each, and checked (in the heap,
 * aligned for the class) before anything follows them; walks over them are
 * bounded by the heap's size.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "crashpoint.h"
#include "prim.h"
#include "tx.h"

#define BLK_LINK_SHIFT 4u
#define BLK_NEXT_MASK  ((1ull << 40) - 1)
/* A block on the punch list: next block | its class << 56. */
#define PUNCH_CLS_SHIFT 56
#define PUNCH_NEXT_MASK ((1ull << PUNCH_CLS_SHIFT) - 1)
/* A free-queue block: its first word is the next queue block (a link) |
 * the number of entries << 40; then the entries, each a freed block (a
 * link) | its class << 40. */
#define FQ_BYTES   4096u
#define FQ_ENTRIES (FQ_BYTES / 8 - 1)
#define FQ_SHIFT   40
#define FQ_DRAIN   64u /* entries moved to the free lists per transaction */
/* Log entries a transaction keeps when it frees or reuses key blocks:
 * what it may still log besides slots (tables it allocates or frees while
 * shrinking, a few per halving), so that frees never make it fail. */
#define FREE_LOG_MARGIN 1024u

_Static_assert(2 * ALLOC_STEP + (ALLOC_SMALL - 1) * ALLOC_STEP == ALLOC_SMALL_MAX &&
		   (1ull << (8 + (ALLOC_CLASSES - ALLOC_SMALL) / ALLOC_PER_DOUBLING)) ==
		       REGION_MAX_BYTES,
	       "the classes run from 32 bytes to the largest region");
_Static_assert((1ull << BLK_LINK_SHIFT) == ALLOC_STEP, "links count 16-byte units");
_Static_assert((BLK_NEXT_MASK + 1) << BLK_LINK_SHIFT >= REGION_MAX_BYTES,
	       "a link addresses the largest region");
_Static_assert(ALLOC_STEP % VIEW_HEAP_ALIGN == 0 && ALLOC_BIG_ALIGN % VIEW_HEAP_ALIGN == 0,
	       "blocks pass view_heap's alignment check");
_Static_assert(ALLOC_CLASSES < 256 && REGION_MAX_BYTES <= PUNCH_NEXT_MASK,
	       "a punch-list word holds a class and an offset");
_Static_assert(FQ_ENTRIES < (1u << (64 - FQ_SHIFT)) && FQ_BYTES >= ALLOC_BIG &&
		   FQ_BYTES < 2 * ALLOC_PUNCH_MIN,
	       "a queue block's count fits its word; it is freed like a small table");

static inline uint64_t link_off(uint64_t w)
{
	return (w & BLK_NEXT_MASK) << BLK_LINK_SHIFT;
}

static inline uint64_t link_of(uint64_t off)
{
	return off >> BLK_LINK_SHIFT;
}

static inline int map_has(const uint64_t *m, unsigned c)
{
	return (int)((m[c / 64] >> (c % 64)) & 1);
}

static inline void map_set(uint64_t *m, unsigned c)
{
	m[c / 64] |= 1ull << (c % 64);
}

unsigned alloc_class(uint64_t bytes)
{
	if (bytes <= 2 * ALLOC_STEP)
		return 0;
	if (bytes <= ALLOC_SMALL_MAX)
		return (unsigned)((bytes - 2 * ALLOC_STEP + ALLOC_STEP - 1) / ALLOC_STEP);
	if (bytes > REGION_MAX_BYTES)
		return ALLOC_CLASSES;
	/* bytes in (2^k, 2^(k+1)]: the quarter steps of 2^k that cover it. */
	unsigned k = 63u - (unsigned)__builtin_clzll(bytes - 1);
	uint64_t q = (bytes - (1ull << k) + (1ull << (k - 2)) - 1) >> (k - 2);
	return ALLOC_SMALL + (k - 8) * ALLOC_PER_DOUBLING + (unsigned)q - 1;
}

/* A block of class @cls at @b: in the heap and aligned for its class. */
static uint8_t *block_at(const struct view *v, uint64_t b, unsigned cls)
{
	if (b & (alloc_class_align(cls) - 1))
		return NULL;
	return view_heap(v, b, alloc_class_bytes(cls));
}

/* The free list of class @c as this transaction sees it: read once. */
static uint64_t *head(struct tx *x, unsigned c)
{
	if (!map_has(x->head_map, c)) {
		x->head[c] = __atomic_load_n(&x->st->head[c], __ATOMIC_RELAXED);
		map_set(x->head_map, c);
	}
	return &x->head[c];
}

/* Puts @b (at @p, its first word already logged or unneeded by a
 * rollback) on this transaction's pending list of class @cls. */
static void pend(struct tx *x, uint64_t b, uint8_t *p, unsigned cls)
{
	if (!map_has(x->pend_map, cls)) {
		map_set(x->pend_map, cls);
		x->pend_head[cls] = 0;
		x->pend_tail[cls] = b;
	}
	prim_st64(p, link_of(x->pend_head[cls]));
	CRASH_POINT("free: block queued");
	x->pend_head[cls] = b;
}

/* A block of class @cls carved from brk (no free list): memory past the
 * committed heap, written unlogged. */
static int carve(struct tx *x, unsigned cls, uint64_t *out)
{
	if (x->brk < x->brk0)
		return -EINVAL;
	uint64_t size = alloc_class_bytes(cls), align = alloc_class_align(cls);
	uint64_t b = (x->brk + align - 1) & ~(align - 1);
	if (b < x->brk || b + size < b || b + size > x->r->heap_end)
		return -ENOSPC;
	int err = region_grow(x->r, b + size);
	if (err)
		return err;
	x->brk = b + size;
	x->v.brk = x->brk;
	*out = b;
	return 0;
}

/* How far down the punch list a table looks for a freed one to reuse. */
#define PUNCH_REUSE_SCAN 8u

/*
 * A table of class @cls taken from the punch list: a freed table still
 * giving its pages back (ALLOC_PUNCH_STEP a transaction) can be the new one
 * (new_table zeroes it by punching anyway).  Without this a workload of
 * big batches, each building a table and freeing one, takes new memory
 * for every table.  Only committed entries are looked at (this
 * transaction's freed tables are on its private list: a rollback needs
 * them).  Unlinking logs the block's link and its predecessor's.  Returns
 * 1 with *@out, 0 (none in reach, or a list that fails its checks:
 * punch_step drops that), or <0.
 */
static int punch_reuse(struct tx *x, unsigned cls, uint64_t *out)
{
	uint64_t prev = 0, prev_w = 0, b = x->punch_head;

	for (unsigned k = 0; b && k < PUNCH_REUSE_SCAN; k++) {
		uint8_t *p = view_heap(&x->v, b, ALLOC_PUNCH_MIN);
		uint64_t w = p ? prim_ld64(p) : 0, next = w & PUNCH_NEXT_MASK;
		unsigned c = (unsigned)(w >> PUNCH_CLS_SHIFT);
		if (!p || c >= ALLOC_CLASSES || !block_at(&x->v, b, c) ||
		    (next &&
		     (!view_heap(&x->v, next, ALLOC_PUNCH_MIN) || (next & (ALLOC_BIG_ALIGN - 1)))))
			return 0;
		if (c == cls) {
			int err = tx_log(x, b);
			if (!err && prev)
				err = tx_log(x, prev);
			if (err)
				return err;
			if (prev) {
				/* From the copy read when it was checked. */
				prim_st64(x->r->base + prev, (prev_w & ~PUNCH_NEXT_MASK) | next);
			} else {
				x->punch_head = next;
				x->punch_done = 0;
			}
			CRASH_POINT("alloc: table taken from the punch list");
			*out = b;
			return 1;
		}
		prev = b;
		prev_w = w;
		b = next;
	}
	return 0;
}

static void release(struct tx *x, uint64_t b, uint8_t *p, unsigned cls);

/* Pops @b, the head of class @cls's free list. */
static int pop(struct tx *x, unsigned cls, uint64_t b, uint64_t *out)
{
	uint8_t *p = block_at(&x->v, b, cls);
	if (!p)
		return -EUCLEAN;
	uint64_t next = link_off(prim_ld64(p));
	if (next && !block_at(&x->v, next, cls))
		return -EUCLEAN;
	/* The committed list still needs the link the new content will
	 * overwrite. */
	int err = tx_log(x, b);
	if (err)
		return err;
	*head(x, cls) = next;
	*out = b;
	return 0;
}

/* Queue blocks a key allocation may step past (emptied) per call. */
#define QUEUE_TAKE_BLOCKS 4u

/*
 * The first queue block's word as this transaction sees it: read from the
 * block once, checked and logged (its count is about to change), then
 * kept in the transaction (q_w), so that what this transaction wrote into
 * it is never read back from shared memory, where a peer could change it.
 * 0 with *@pp and *@wp; -ENOENT for a queue that fails the checks
 * (drain_step drops it); tx_log's error.
 */
static int queue_head(struct tx *x, uint8_t **pp, uint64_t *wp)
{
	unsigned qcls = alloc_class(FQ_BYTES);
	uint64_t q = x->free_q;
	uint8_t *p = block_at(&x->v, q, qcls);

	if (!p)
		return -ENOENT;
	if (x->q_logged != q) {
		uint64_t w = prim_ld64(p), next = link_off(w);
		if ((w >> FQ_SHIFT) > FQ_ENTRIES || (next && !block_at(&x->v, next, qcls)))
			return -ENOENT;
		int err = tx_log(x, q);
		if (err)
			return err;
		x->q_logged = q;
		x->q_w = w;
	}
	*pp = p;
	*wp = x->q_w;
	return 0;
}

/* Writes the first queue block's word, and keeps it (queue_head). */
static void queue_head_set(struct tx *x, uint8_t *p, uint64_t w)
{
	tx_touch(x);
	x->q_w = w;
	prim_st64(p, w);
}

/*
 * A key block of class @cls taken from the free queue: its last entry, if
 * of that class.  The block is unreferenced (a committed transaction freed
 * it) and the queue block's count word is logged, once per queue block and
 * transaction: a rollback lists the block again, whatever it then holds.
 * So taking one needs no log entry of its own, and a batch can reuse more
 * freed blocks than its undo log holds (a free list's costs one each).
 * An emptied queue block is freed and the next one looked at.  Returns 1
 * with *@out, 0 (none there, or a queue that fails its checks: drain_step
 * drops that), or <0.
 */
static int queue_take(struct tx *x, unsigned cls, uint64_t *out)
{
	unsigned qcls = alloc_class(FQ_BYTES);

	for (unsigned k = 0; x->free_q && k < QUEUE_TAKE_BLOCKS; k++) {
		uint64_t q = x->free_q, w;
		uint8_t *p;
		/* Half the margin stays for what frees must log. */
		if (x->q_logged != q && tx_log_room(x) <= FREE_LOG_MARGIN / 2)
			return 0;
		int err = queue_head(x, &p, &w);
		if (err)
			return err == -ENOENT ? 0 : err;
		uint64_t n = w >> FQ_SHIFT;
		if (!n) {
			x->free_q = link_off(w);
			release(x, q, p, qcls);
			continue;
		}
		uint64_t e = prim_ld64(p + 8 * n); /* entry n - 1 */
		if ((unsigned)(e >> FQ_SHIFT) != cls || !block_at(&x->v, link_off(e), cls))
			return 0;
		queue_head_set(x, p, (w & BLK_NEXT_MASK) | (n - 1) << FQ_SHIFT);
		CRASH_POINT("alloc: key block taken from the free queue");
		*out = link_off(e);
		return 1;
	}
	return 0;
}

int alloc_get(struct tx *x, unsigned cls, int is_table, uint64_t *out)
{
	x->alloc_used = 1;
	if (cls >= ALLOC_CLASSES)
		return -ENOSPC;
	uint64_t size = alloc_class_bytes(cls), b = *head(x, cls);

	if (is_table && size < ALLOC_BIG)
		return -EINVAL; /* tables rely on the big blocks' alignment */
	/* A key block from the free queue first: a log entry per 511 of them,
	 * where a free list's cost one each. */
	if (!is_table) {
		int got = queue_take(x, cls, out);
		if (got)
			return got < 0 ? got : 0;
	}
	if (!b) {
		int got = is_table ? punch_reuse(x, cls, out) : 0;
		if (got)
			return got < 0 ? got : 0;
		return carve(x, cls, out);
	}
	/* Popping costs a log entry: a batch reusing more key blocks than
	 * the log holds would fail (-E2BIG) however it retried.  Once the
	 * log is down to the margin frees keep, key blocks come from brk,
	 * which needs no log; from the list again only if brk cannot grow. */
	if (!is_table && tx_log_room(x) <= FREE_LOG_MARGIN && carve(x, cls, out) == 0)
		return 0;
	return pop(x, cls, b, out);
}

/* Frees @b (at @p, its first word logged or needed by no rollback): to the
 * punch list if big, else to the pending list of its class. */
static void release(struct tx *x, uint64_t b, uint8_t *p, unsigned cls)
{
	tx_touch(x);
	if (alloc_class_bytes(cls) >= 2 * ALLOC_PUNCH_MIN) {
		/* A table or a big key's block, to the punch list: free once
		 * its pages are given back. */
		prim_st64(p, x->ppend_head | (uint64_t)cls << PUNCH_CLS_SHIFT);
		CRASH_POINT("free: block queued for punching");
		if (!x->ppend_head)
			x->ppend_tail = b;
		x->ppend_head = b;
		return;
	}
	pend(x, b, p, cls);
}

/* Lists @b in this transaction's part of the free queue, writing nothing
 * into it: its content stays as a rollback needs it. */
static int queue_free(struct tx *x, uint64_t b, unsigned cls)
{
	uint8_t *base = x->r->base;

	if (!x->q_new || x->q_n == FQ_ENTRIES) {
		/* A queue block the queue emptied before, from its free list,
		 * for one log entry while half the margin is left; else from
		 * brk.  (Either way nothing committed reads what follows.) */
		unsigned qcls = alloc_class(FQ_BYTES);
		uint64_t q, top = *head(x, qcls);
		int err =
		    top && tx_log_room(x) > FREE_LOG_MARGIN / 2 ? pop(x, qcls, top, &q) : -ENOSPC;
		if (err)
			err = carve(x, qcls, &q);
		if (err)
			return err;
		tx_touch(x);
		/* Linked to this transaction's previous queue block; the
		 * oldest is linked to the committed queue at commit. */
		x->q_next = link_of(x->q_new);
		prim_st64(base + q, x->q_next);
		if (!x->q_new)
			x->q_tail = q;
		x->q_new = q;
		x->q_n = 0;
	}
	prim_st64(base + x->q_new + 8 + 8 * (uint64_t)x->q_n,
		  link_of(b) | (uint64_t)cls << FQ_SHIFT);
	x->q_n++;
	/* From private copies: the block is in shared memory. */
	prim_st64(base + x->q_new, x->q_next | (uint64_t)x->q_n << FQ_SHIFT);
	CRASH_POINT("free: block listed in the free queue");
	return 0;
}

int alloc_put(struct tx *x, uint64_t b, unsigned cls, int is_table)
{
	x->alloc_used = 1;
	if (cls >= ALLOC_CLASSES)
		return -EUCLEAN;
	uint8_t *p = block_at(&x->v, b, cls);

	if (!p)
		return -EUCLEAN;
	/* Key blocks may be freed by the thousands in one transaction: when
	 * the log runs low, or in a batch's (it may free more than the log
	 * holds, and a batch that reuses them takes them from the queue at a
	 * log entry per 511), they wait in the free queue.  A transaction
	 * frees at most a few tables. */
	if (!is_table && (x->bulk || tx_log_room(x) <= FREE_LOG_MARGIN))
		return queue_free(x, b, cls);
	int err = tx_log(x, b);
	if (err)
		return err;
	release(x, b, p, cls);
	return 0;
}

/*
 * Gives back up to ALLOC_PUNCH_STEP bytes of the first block on the punch
 * list; a block done moves to the free list of its class.  Punching memory
 * nothing committed refers to is safe at any point of a transaction, and
 * idempotent: a crash only makes the next one punch it again.  Each step
 * is bounded, so freeing a big table never holds the lock for long.  A
 * @b that fails its checks was written by a peer: the list is dropped.
 */
static void punch_step(struct tx *x)
{
	uint64_t b = x->punch_head;

	x->alloc_used = 1;
	if (!b)
		return;
	uint8_t *p = view_heap(&x->v, b, ALLOC_PUNCH_MIN);
	uint64_t w = p ? prim_ld64(p) : 0;
	unsigned cls = (unsigned)(w >> PUNCH_CLS_SHIFT);
	uint64_t size = cls < ALLOC_CLASSES ? alloc_class_bytes(cls) : 0;
	uint64_t next = w & PUNCH_NEXT_MASK;
	if (!p || size < 2 * ALLOC_PUNCH_MIN || !block_at(&x->v, b, cls) ||
	    (next &&
	     (!view_heap(&x->v, next, ALLOC_PUNCH_MIN) || (next & (ALLOC_BIG_ALIGN - 1)))) ||
	    x->punch_done >= size) {
		/* Scribbled: drop the list (its memory is lost, not misused). */
		x->punch_head = 0;
		x->punch_done = 0;
		return;
	}
	/* Whole pages only, from the one after the link's to the last that
	 * ends inside the block (blocks are 64-byte aligned): a punch that
	 * starts or ends inside a page zeroes that part and keeps the page. */
	uint64_t first = ((b + REGION_PAGE) & ~(uint64_t)(REGION_PAGE - 1)) - b;
	uint64_t last = ((b + size) & ~(uint64_t)(REGION_PAGE - 1)) - b;
	uint64_t from = x->punch_done < first ? first : x->punch_done;
	if (from < last) {
		uint64_t len = last - from < ALLOC_PUNCH_STEP ? last - from : ALLOC_PUNCH_STEP;
		/* Before the transaction marks the set as changing: readers
		 * need not wait for the punch, which touches nothing they read. */
		region_punch(x->r, b + from, len); /* best effort: memory, not state */
		CRASH_POINT("punch: pages given back");
		x->punch_done = from + len;
		if (x->punch_done < last)
			return;
	}
	x->punch_head = next;
	x->punch_done = 0;
	/* Its link word becomes a free-list link (logged: a rollback puts
	 * it back on the punch list; the log is empty this early). */
	if (tx_log(x, b))
		return;
	pend(x, b, p, cls);
}

/*
 * Moves up to FQ_DRAIN blocks of the free queue's first block (from its
 * last entry down) to the free lists, and the queue block itself once it
 * is empty.  The queued blocks are unreferenced, so their links are
 * written unlogged; the queue block's count is logged, so a rollback
 * lists them again and the next transaction redoes the same.  A queue
 * that fails its checks was written by a peer: it is dropped.
 */
static void drain_step(struct tx *x)
{
	uint64_t q = x->free_q, w;
	unsigned qcls = alloc_class(FQ_BYTES);
	uint8_t *p;

	x->alloc_used = 1;
	int err = queue_head(x, &p, &w);
	if (err == -ENOENT)
		x->free_q = 0;
	if (err)
		return;
	uint64_t next = link_off(w), n = w >> FQ_SHIFT;
	for (unsigned k = 0; n && k < FQ_DRAIN; k++, n--) {
		uint64_t e = prim_ld64(p + 8 * n); /* entry n - 1 */
		unsigned cls = (unsigned)(e >> FQ_SHIFT);
		uint8_t *bp = cls < ALLOC_CLASSES ? block_at(&x->v, link_off(e), cls) : NULL;
		if (!bp) {
			x->free_q = 0;
			return;
		}
		release(x, link_off(e), bp, cls);
		CRASH_POINT("free queue: block moved to a free list");
	}
	if (n) {
		queue_head_set(x, p, (w & BLK_NEXT_MASK) | n << FQ_SHIFT);
		return;
	}
	x->free_q = next;
	release(x, q, p, qcls);
}

void alloc_begin(struct tx *x)
{
	if (x->punch_head)
		punch_step(x);
	if (x->free_q)
		drain_step(x);
}

void alloc_commit(struct tx *x)
{
	struct tx_state *st = x->st;

	/* Most transactions neither allocate nor free. */
	if (!x->alloc_used)
		return;
	if (x->ppend_head) {
		/* This transaction's freed tables go right after the head, whose
		 * punch goes on where it stopped: put in front, they would
		 * restart it, and a set that frees a table every few dozen
		 * transactions would never finish a big one.  The head was
		 * checked in the heap by punch_step (or is its checked next). */
		uint8_t *tail = x->r->base + x->ppend_tail;
		if (x->punch_head) {
			uint8_t *hp = x->r->base + x->punch_head;
			uint64_t hw = prim_ld64(hp);
			tx_publish(x, (uint64_t *)tail,
				   (prim_ld64(tail) & ~PUNCH_NEXT_MASK) | (hw & PUNCH_NEXT_MASK));
			tx_publish(x, (uint64_t *)hp, (hw & ~PUNCH_NEXT_MASK) | x->ppend_head);
		} else {
			/* The tail's link is 0 (alloc_put). */
			x->punch_head = x->ppend_head;
			x->punch_done = 0;
		}
	}
	tx_publish(x, &st->punch_head, x->punch_head);
	tx_publish(x, &st->punch_done, x->punch_done);
	if (x->q_new) {
		/* This transaction's queue blocks go in front: each keeps its
		 * own count, so the head's progress is not lost.  The oldest
		 * was carved past the committed brk or popped with its first
		 * word logged: its link is written unlogged. */
		uint64_t n = x->q_tail == x->q_new ? x->q_n : FQ_ENTRIES;
		prim_st64(x->r->base + x->q_tail, link_of(x->free_q) | n << FQ_SHIFT);
		x->free_q = x->q_new;
	}
	tx_publish(x, &st->free_q, x->free_q);

	for (unsigned i = 0; i < ALLOC_MAP_WORDS; i++)
		for (uint64_t m = x->pend_map[i]; m; m &= m - 1) {
			unsigned c = i * 64 + (unsigned)__builtin_ctzll(m);
			uint64_t tail = x->pend_tail[c];
			tx_publish(x, (uint64_t *)(x->r->base + tail), link_of(*head(x, c)));
			CRASH_POINT("commit: free list spliced");
			x->head[c] = x->pend_head[c];
		}
	tx_publish(x, &st->brk, x->brk);
	for (unsigned i = 0; i < ALLOC_MAP_WORDS; i++)
		for (uint64_t m = x->head_map[i]; m; m &= m - 1) {
			unsigned c = i * 64 + (unsigned)__builtin_ctzll(m);
			tx_publish(x, &st->head[c], x->head[c]);
		}
}

void alloc_reset(struct tx *x)
{
	uint64_t heap = x->r->heap_off;

	x->alloc_used = 1;
	if (x->brk > x->punch_to)
		x->punch_to = x->brk;
	x->brk = heap;
	x->v.brk = heap;
	memset(x->head, 0, sizeof(x->head));
	for (unsigned c = 0; c < ALLOC_CLASSES; c++)
		map_set(x->head_map, c);
	memset(x->pend_map, 0, sizeof(x->pend_map));
	/* Tables waiting to be punched and queued blocks go with the rest. */
	x->punch_head = 0;
	x->punch_done = 0;
	x->ppend_head = 0;
	x->free_q = 0;
	x->q_new = 0;
}

/* Gives the pages of a cleared heap back to the kernel.  Only after the
 * commit: until then a rollback may need what they hold. */
void alloc_release(struct tx *x)
{
	uint64_t heap = x->r->heap_off;

	if (x->punch_to > heap)
		region_punch(x->r, heap, x->punch_to - heap);
}

/*
 * Brent's cycle finder for a walk of linked blocks: call with each block
 * reached; 1 when @b was reached before.  The byte budget bounds a walk by
 * the heap's size, but a peer sets brk (the file grows sparsely), so a
 * block linked to itself would be walked heap/size times: hours under
 * every lock for a shard of a few hundred GiB.  This finds any cycle in at
 * most about three times its tail and length, so a long walk needs a link
 * written into each distinct block, memory that exists.
 */
struct walk {
	uint64_t mark, steps, power;
};

static int walk_again(struct walk *w, uint64_t b)
{
	if (b == w->mark)
		return 1;
	if (++w->steps == w->power) {
		w->mark = b;
		w->steps = 0;
		w->power *= 2;
	}
	return 0;
}

int alloc_verify(const struct view *v, const struct tx_state *st)
{
	/* Free blocks and tables waiting to be punched are disjoint pieces of
	 * the heap: together no bigger than it, which also bounds the walks;
	 * a cycle is found sooner (walk_again). */
	uint64_t budget = v->brk > v->heap_off ? v->brk - v->heap_off : 0;

	for (unsigned c = 0; c < ALLOC_CLASSES; c++) {
		uint64_t b = st->head[c], size = alloc_class_bytes(c);
		struct walk fw = {0, 0, 1};
		while (b) {
			const uint8_t *p = block_at(v, b, c);
			if (!p || size > budget || walk_again(&fw, b))
				return -EUCLEAN;
			budget -= size;
			b = link_off(prim_ld64(p));
		}
	}
	struct walk pw = {0, 0, 1}, qw = {0, 0, 1};
	for (uint64_t b = st->punch_head; b;) {
		const uint8_t *p = view_heap(v, b, ALLOC_PUNCH_MIN);
		uint64_t w = p ? prim_ld64(p) : 0;
		unsigned cls = (unsigned)(w >> PUNCH_CLS_SHIFT);
		uint64_t size = cls < ALLOC_CLASSES ? alloc_class_bytes(cls) : 0;
		if (!p || size < 2 * ALLOC_PUNCH_MIN || !block_at(v, b, cls) || size > budget ||
		    walk_again(&pw, b))
			return -EUCLEAN;
		budget -= size;
		b = w & PUNCH_NEXT_MASK;
	}
	unsigned qcls = alloc_class(FQ_BYTES);
	for (uint64_t q = st->free_q; q;) {
		const uint8_t *p = block_at(v, q, qcls);
		uint64_t w = p ? prim_ld64(p) : 0, n = w >> FQ_SHIFT;
		if (!p || n > FQ_ENTRIES || FQ_BYTES > budget || walk_again(&qw, q))
			return -EUCLEAN;
		budget -= FQ_BYTES;
		for (uint64_t i = 1; i <= n; i++) {
			uint64_t e = prim_ld64(p + 8 * i);
			unsigned cls = (unsigned)(e >> FQ_SHIFT);
			if (cls >= ALLOC_CLASSES || !block_at(v, link_off(e), cls) ||
			    alloc_class_bytes(cls) > budget)
				return -EUCLEAN;
			budget -= alloc_class_bytes(cls);
		}
		q = link_off(w);
	}
	return 0;
}
