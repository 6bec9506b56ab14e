/* SPDX-License-Identifier: MIT */
/*
 * tx.c - the undo log and transactions (the protocol is in tx.h).
 *
 * The log is shared memory a peer can write, so a rollback copies it out
 * once, checks every entry, and restores from the copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crashpoint.h"
#include "prim.h"
#include "table.h"
#include "tx.h"

struct tx_entry {
	uint64_t off;
	uint64_t old;
};

static inline uint64_t log_cap(const struct region *r)
{
	return r->log_bytes / sizeof(struct tx_entry);
}

/* A word the log may restore: in the shard's state area past seq and the
 * log's own words, or in its heap. */
static int target_ok(struct region *r, uint64_t off)
{
	uint64_t lo = (uint64_t)((uint8_t *)r->state - r->base) + TX_STATE_LOGGED,
		 hi = lo - TX_STATE_LOGGED + sizeof(struct tx_state);

	if (off & 7)
		return 0;
	if (off >= lo && off <= hi - 8) /* off + 8 could wrap past 0 */
		return 1;
	return off >= r->heap_off && off <= r->heap_end - 8 && region_check(r, off, 8) == 0;
}

/*
 * Restores every logged word, newest first, then empties the log.  The
 * entries are copied out once, checked, and applied from the copy: a peer
 * rewriting an offset after the check must not steer the store.
 */
static int rollback(struct region *r)
{
	struct tx_state *st = tx_state(r);
	const uint8_t *lg = r->base + r->log_off;
	uint64_t n = __atomic_load_n(&st->log_n, __ATOMIC_ACQUIRE);

	if (n > log_cap(r))
		return -EUCLEAN;
	struct tx_entry *copy = malloc(n ? n * sizeof(*copy) : 1);
	if (!copy)
		return -ENOMEM;
	int err = 0;
	/* Check everything before writing anything. */
	for (uint64_t i = 0; i < n && !err; i++) {
		copy[i].off = prim_ld64(lg + i * sizeof(struct tx_entry));
		copy[i].old = prim_ld64(lg + i * sizeof(struct tx_entry) + 8);
		if (!target_ok(r, copy[i].off))
			err = -EUCLEAN;
	}
	for (uint64_t i = n; !err && i-- > 0;) {
		prim_st64(r->base + copy[i].off, copy[i].old);
		CRASH_POINT("rollback: word restored");
	}
	free(copy);
	if (err)
		return err;
	__atomic_store_n(&st->log_n, 0, __ATOMIC_RELEASE);
	CRASH_POINT("rollback: log emptied");
	return 0;
}

/* 1 if the log of @r holds a multi-shard transaction that passed its
 * commit point (tx.h): then it is kept, not undone. */
static int rolls_forward(struct region *r)
{
	uint64_t tag = __atomic_load_n(&tx_state(r)->mtx, __ATOMIC_RELAXED);

	return tag && tag == __atomic_load_n(&tx_state(r->owner)->mtx_done, __ATOMIC_ACQUIRE);
}

int tx_repair(struct region *r)
{
	struct tx_state *st = tx_state(r);
	int err = 0;

	if (__atomic_load_n(&st->log_n, __ATOMIC_ACQUIRE) && rolls_forward(r)) {
		__atomic_store_n(&st->log_n, 0, __ATOMIC_RELEASE);
		CRASH_POINT("repair: rolled forward");
	} else {
		err = rollback(r);
	}
	if (err)
		return err;
	uint64_t s = __atomic_load_n(&st->seq, __ATOMIC_RELAXED);
	if (s & 1)
		__atomic_store_n(&st->seq, s + 1, __ATOMIC_RELEASE);
	st->n_repairs++;
	return 0;
}

/* Marks the set as being changed: readers retry until commit.  The
 * exchange (acquire) keeps the writes that follow after it. */
void tx_touch(struct tx *x)
{
	if (x->dirty)
		return;
	uint64_t s = __atomic_load_n(&x->st->seq, __ATOMIC_RELAXED);
	x->seq0 = s | 1;
	__atomic_exchange_n(&x->st->seq, x->seq0, __ATOMIC_ACQ_REL);
	x->dirty = 1;
	CRASH_POINT("tx: seq odd");
}

static int log_limit(struct tx *x, uint64_t off, uint64_t limit)
{
	struct tx_state *st = x->st;
	uint64_t n = __atomic_load_n(&st->log_n, __ATOMIC_RELAXED); /* once */

	if (n >= limit)
		return -E2BIG;
	tx_touch(x);
	uint8_t *e = x->r->base + x->r->log_off + n * sizeof(struct tx_entry);
	prim_st64(e, off);
	prim_st64(e + 8, prim_ld64(x->r->base + off));
	CRASH_POINT("log: entry written");
	/* The entry is complete before log_n covers it, and log_n covers it
	 * before the word changes: a crash between any two stores undoes. */
	__atomic_store_n(&st->log_n, n + 1, __ATOMIC_RELEASE);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	CRASH_POINT("log: entry counted");
	return 0;
}

int tx_log(struct tx *x, uint64_t off)
{
	return log_limit(x, off, log_cap(x->r) - TX_LOG_RESERVE);
}

uint64_t tx_log_room(const struct tx *x)
{
	uint64_t cap = log_cap(x->r) - TX_LOG_RESERVE,
		 n = __atomic_load_n(&x->st->log_n, __ATOMIC_RELAXED);
	return n < cap ? cap - n : 0;
}

size_t tx_size(void)
{
	return sizeof(struct tx);
}

struct tx *tx_begin(struct region *r, void *mem, int *err)
{
	struct tx_state *st = tx_state(r);
	struct tx *x = mem;

	*err = 0;
	if (r->readonly) {
		*err = -EROFS;
		return NULL;
	}
	/* A log left behind means an owner died without us being told (a
	 * scribbled lock word): undo it now. */
	if (__atomic_load_n(&st->log_n, __ATOMIC_ACQUIRE)) {
		*err = tx_repair(r);
		if (*err)
			return NULL;
	}
	/* Untagged: a crash undoes this transaction whatever mtx_done says
	 * (the log is empty here, so the tag means nothing yet). */
	if (__builtin_expect(__atomic_load_n(&st->mtx, __ATOMIC_RELAXED) != 0, 0))
		__atomic_store_n(&st->mtx, 0, __ATOMIC_RELAXED);
	/* Field by field: a memset of the head of struct tx cost more than
	 * the rest of this function. */
	x->r = r;
	x->st = st;
	x->seq0 = 0;
	x->dirty = 0;
	for (unsigned i = 0; i < ALLOC_MAP_WORDS; i++) {
		x->head_map[i] = 0;
		x->pend_map[i] = 0;
	}
	/* Each state word read once (atomically: the compiler must not read
	 * it again); the transaction works on these copies. */
	x->brk = __atomic_load_n(&st->brk, __ATOMIC_RELAXED);
	x->brk0 = x->brk;
	x->tdesc = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
	x->count = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
	x->tombs = __atomic_load_n(&st->tombs, __ATOMIC_RELAXED);
	x->key_bytes = __atomic_load_n(&st->key_bytes, __ATOMIC_RELAXED);
	x->arena_bytes = __atomic_load_n(&st->arena_bytes, __ATOMIC_RELAXED);
	x->old_tdesc = __atomic_load_n(&st->old_tdesc, __ATOMIC_RELAXED);
	x->moved = __atomic_load_n(&st->moved, __ATOMIC_RELAXED);
	x->punch_to = 0;
	x->punch_head = __atomic_load_n(&st->punch_head, __ATOMIC_RELAXED);
	x->punch_done = __atomic_load_n(&st->punch_done, __ATOMIC_RELAXED);
	x->free_q = __atomic_load_n(&st->free_q, __ATOMIC_RELAXED);
	x->q_new = 0;
	x->q_logged = 0;
	x->bulk = 0;
	x->retry = 0;
	x->fill_later = 0;
	x->ppend_head = 0;
	x->ppend_tail = 0;
	x->cleared = 0;
	x->fresh = 0;
	x->fresh_tdesc = 0;
	x->old_fresh = 0;
	/* Cheap sanity before anything is sized from these numbers: a
	 * scribbled count must not make a resize allocate gigabytes. */
	if (x->brk < r->heap_off || x->brk > r->heap_end || region_check(r, 0, x->brk) ||
	    table_begin(x)) {
		*err = -EUCLEAN;
		return NULL;
	}
	view_region(&x->v, r, x->brk);
	x->alloc_used = 0;
	if (x->punch_head || x->free_q)
		alloc_begin(x);
	return x;
}

void tx_publish_changed(struct tx *x, uint64_t *field, uint64_t val)
{
	/* The reserve always has room for the commit's few words. */
	log_limit(x, (uint64_t)((uint8_t *)field - x->r->base), log_cap(x->r));
	__atomic_store_n(field, val, __ATOMIC_RELAXED);
	CRASH_POINT("commit: state word published");
}

/* The first half of a commit: the state words, logged. */
static void commit_publish(struct tx *x)
{
	table_commit(x);
	alloc_commit(x);
}

/* The second half: the log emptied (the commit point of a lone
 * transaction), then readers may trust the table again. */
static void commit_finish(struct tx *x)
{
	struct tx_state *st = x->st;

	if (x->dirty) {
		CRASH_POINT("commit: before the commit point");
		__atomic_store_n(&st->log_n, 0, __ATOMIC_RELEASE);
		CRASH_POINT("commit: committed");
		__atomic_store_n(&st->seq, x->seq0 + 1, __ATOMIC_RELEASE);
		CRASH_POINT("commit: seq even");
		st->n_txns++;
		alloc_release(x);
	}
}

void tx_commit(struct tx *x)
{
	commit_publish(x);
	commit_finish(x);
}

uint64_t tx_new_tag(struct region *r)
{
	uint64_t t = __atomic_load_n(&tx_state(r->owner)->mtx_done, __ATOMIC_RELAXED) + 1;
	return t ? t : 1;
}

void tx_join(struct tx *x, uint64_t tag)
{
	__atomic_store_n(&x->st->mtx, tag, __ATOMIC_RELAXED);
}

void tx_commit_shards(struct tx **xs, unsigned n, uint64_t tag)
{
	unsigned dirty = 0;

	for (unsigned i = 0; i < n; i++) {
		commit_publish(xs[i]);
		dirty += xs[i]->dirty != 0;
	}
	/* Every changed shard stays odd until all have published: a reader
	 * that saw one shard's new keys finds the others' new keys too. */
	if (dirty > 1) {
		CRASH_POINT("commit: shards published");
		__atomic_store_n(&tx_state(xs[0]->r->owner)->mtx_done, tag, __ATOMIC_RELEASE);
		CRASH_POINT("commit: shards committed");
	}
	for (unsigned i = 0; i < n; i++)
		commit_finish(xs[i]);
}

void tx_abort(struct tx *x)
{
	struct tx_state *st = x->st;

	if (x->dirty) {
		/* Our own log: its targets were all checked when written.  A
		 * rollback that could not run (no memory for its copy, or a
		 * peer rewrote the log) leaves the log and seq odd: readers
		 * must not take the half-written state for a committed one,
		 * and the next holder of the lock repairs (tx_repair). */
		if (rollback(x->r))
			return;
		__atomic_store_n(&st->seq, x->seq0 + 1, __ATOMIC_RELEASE);
		st->n_aborts++;
	}
}
