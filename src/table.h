/* SPDX-License-Identifier: MIT */
/* table.h - the hash table of a set, inside its region (private). */
#ifndef SHSET_TABLE_H
#define SHSET_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "region.h"
#include "shset.h"
#include "tx.h"

/*
 * A table's capacity is a quarter step of a power of two, (4 + q) << (e - 2)
 * slots with q in 0..3 (16, 20, 24, 28, 32, 40, ...), so that a grown table
 * is 4/3 to 3/2 times the old one instead of 2; its bytes (32 a slot) are
 * classes of the block allocator (alloc.h: four per doubling).  A table
 * descriptor (tdesc) is its offset | code << 56, the code being 4e + q.
 */
#define TABLE_CODE(e, q) (4u * (e) + (q))
#define TABLE_CODE_MIN	 TABLE_CODE(4, 0)  /* 16 slots */
#define TABLE_CODE_MAX	 TABLE_CODE(39, 0) /* 2^39 slots: 2^44 bytes, REGION_MAX_BYTES */
/* The slots of a table of code @code, or 0 if no table has that code. */
static inline uint64_t table_code_cap(unsigned code)
{
	if (code < TABLE_CODE_MIN || code > TABLE_CODE_MAX)
		return 0;
	return (uint64_t)(4 + code % 4) << (code / 4 - 2);
}
/* The code of the smallest table with room for @keys at half load (a
 * batch's, a shrink's, or one rebuilt because tombstones filled it);
 * TABLE_CODE_MAX past it. */
unsigned table_code_for(uint64_t keys);
/* The code of the table a full one (3/4) grows to: the smallest with room
 * for @keys at 9/16 full.  The growth is then 4/3 to 3/2 times, so with
 * half-load sizing a table would skip a step (from 6 << e at 4.5 << e keys
 * to 10 << e, not 8); the new table's load starts at 1/2 to 9/16. */
unsigned table_code_grow(uint64_t keys);

/* Creator only, before the fd is shared. */
int table_init(struct region *r, uint64_t capacity);

/* Lock-free lookup under the seqcount: 1 present, 0 absent, -EAGAIN when
 * writers kept interfering (take the lock and use table_contains_locked),
 * -EBUSY when one transaction lasted READ_WAIT_NS (its writer was switched
 * out, or died: the lock tells), -EUCLEAN when the table is inconsistent. */
int table_contains_optimistic(struct region *r, const void *key, size_t len);
/* The same for a key whose hash @h the caller has (it chose the shard by
 * it). */
int table_contains_optimistic_h(struct region *r, const void *key, size_t len, uint64_t h);
long long table_count_optimistic(struct region *r);
/* The count of all shards of @r at one moment; on -EBUSY *@busy is the
 * shard whose writer kept it waiting. */
long long table_count_shards_optimistic(struct region *r, struct region **busy);

/* Before the lock: fetches the home slot of hash @h in @r's current table
 * into the cache, so that the miss overlaps taking the lock. */
void table_prefetch(struct region *r, uint64_t h);
/* Outside the lock (a hint; see table.c): faults in the next step of
 * table @want (a shard's pop_want: what this process's last commit left a
 * resize filling) from *@done on, if that resize still runs; 1 if more of
 * it remains.  table_populate_ahead takes a step of pop_want, after a
 * write, when the handle has no filler thread. */
int table_populate_step(struct region *r, uint64_t want, uint64_t *done);
/* The whole pages [*@lo, *@hi) (file offsets) of table @want if a resize
 * still fills it and it is big enough to fault in by steps; else 0. */
int table_populate_range(struct region *r, uint64_t want, uint64_t *lo, uint64_t *hi);
void table_populate_ahead(struct region *r);

/* With the lock held. */
int table_contains_locked(struct region *r, const void *key, size_t len);
int table_contains_locked_h(struct region *r, const void *key, size_t len, uint64_t h);
/* Needs no seqcount: the lock excludes writers (and a scribbled odd
 * sequence must not make size fail under the lock). */
long long table_count_locked(struct region *r);
/* Every invariant; 0 or -EUCLEAN. */
int table_verify(struct region *r);

/* Mutations, inside a transaction (tx.h), lock held. */
/* tx_begin's checks of the table's words: 0 or -EUCLEAN. */
int table_begin(struct tx *x);
/* tx_commit's publication of the table's words. */
void table_commit(struct tx *x);
/* Moves the table to fresh memory sized for @keys more, after which slot
 * writes need no logging: big batches call it first. */
int table_fresh(struct tx *x, uint64_t keys);
/* The part of the heap to map before the current table is written whole:
 * the table, checked to lie inside the heap, or 0 bytes for a small one
 * (a table_fresh with fill_later set leaves this to the caller); or
 * -EUCLEAN. */
int table_fill_span(struct tx *x, uint64_t *off, uint64_t *len);
int table_insert(struct tx *x, const void *key, size_t len); /* 1 added, 0 present */
int table_remove(struct tx *x, const void *key, size_t len); /* 1 removed, 0 absent */
int table_insert_h(struct tx *x, const void *key, size_t len, uint64_t h);
int table_remove_h(struct tx *x, const void *key, size_t len, uint64_t h);
/*
 * table_remove_h without the shrink that follows a remove (table_shrink):
 * for many removes in one transaction, the caller calls table_shrink after
 * the last.  A big batch comes in the order of the keys' hashes (set.c's
 * split), and set algebra in the other set's table order, the same order
 * when it is a copy: a table shrunk halfway through holds only keys whose
 * hashes are above the batch's, all of them homed in its last slots, and
 * every move into it walks one cluster growing to the whole remainder
 * (999,999 keys removed from 1,000,000 in one shard: 17.9 s).
 */
int table_remove_many_h(struct tx *x, const void *key, size_t len, uint64_t h);
/* A table at most 3/32 full starts shrinking, after @removed removes in
 * this transaction; optional (0 without room). */
int table_shrink(struct tx *x, uint64_t removed);
/* Inserts @n keys (@keys[i] of @lens[i] bytes; NULL: empty), their home
 * slots prefetched ahead: the number added, or <0. */
long long table_insert_many(struct tx *x, const void *const *keys, const size_t *lens, size_t n);
/* The same for @n records { u32 len; bytes } in @recs (@len bytes): a
 * snapshot's body.  -EINVAL if they run past it. */
long long table_insert_records(struct tx *x, const uint8_t *recs, size_t len, size_t n);
/* A key ready for a bulk insert: its hash, and its bytes inline if it is
 * short (as its slot will hold them), else a pointer to them. */
struct table_rec {
	uint64_t h;
	uint32_t len;
	uint8_t k[20];
};
static inline void table_rec_fill(struct table_rec *r, const void *key, size_t len, uint64_t h)
{
	r->h = h;
	r->len = (uint32_t)len;
	if (len <= sizeof(r->k))
		memcpy(r->k, key, len);
	else
		memcpy(r->k, &key, sizeof(key));
}
static inline const void *table_rec_key(const struct table_rec *r)
{
	const void *key = r->k;
	if (r->len > sizeof(r->k))
		memcpy(&key, r->k, sizeof(key));
	return key;
}
/* Inserts @n records, best in the order of their home slots (sorted by
 * the hash's top bits): the number added, or <0. */
long long table_insert_recs(struct tx *x, const struct table_rec *rec, size_t n);
int table_clear(struct tx *x);
/* 1 if every key of the transaction's tables is among @rec (@n records;
 * repeats allowed): removing them is a clear.  0 if not, or <0. */
int table_all_in(struct tx *x, const struct table_rec *rec, size_t n);
/* Removes one key, copying it to @buf (@cap bytes); *@len gets its length.
 * 1 popped, 0 empty, -ENOBUFS if @cap is too small (nothing removed). */
int table_pop(struct tx *x, void *buf, size_t cap, size_t *len);
/* Keeps only the keys for which @keep returns 1 (<0 aborts with it). */
int table_filter(struct tx *x, int (*keep)(const void *k, size_t len, void *arg), void *arg);
/* The count as this transaction sees it. */
uint64_t table_tx_count(const struct tx *x);

/* Iteration over the live keys of a region, lock held.  The table is read
 * once at the start, so the walk is one pass over one table whatever a
 * peer writes into the state meanwhile.  table_iter_next: 1 with *@key
 * and *@len set, 0 at the end, -EUCLEAN. */
/* The tables of a set: the current one, and while it grows or shrinks
 * the one being drained into it (old), of which slots [0, moved) are gone.
 * Every live key is in exactly one of them. */
struct tables {
	uint64_t cur, old, moved;
};
struct table_iter {
	struct region *r;
	struct tables tb;
	uint64_t brk, pos;
};
void table_iter_start(struct region *r, struct table_iter *it);
int table_iter_next(struct table_iter *it, const uint8_t **key, size_t *len);

/* A private copy of a set's state and heap, walked without the lock. */
struct table_snap {
	uint8_t *buf;
	uint64_t cap;
	uint64_t heap_off;
	uint64_t seed[2];
	uint32_t shard_mask, shard;
	struct tx_state st;
};
/* Without the lock and without writing to the region (inspection): copies
 * until a copy lands between two equal even seqcounts; -EAGAIN if writers
 * left no such window for @timeout_ns. */
int table_snap_optimistic(struct region *r, struct table_snap *sn, uint64_t timeout_ns);
void table_snap_free(struct table_snap *sn);
int table_snap_next(const struct table_snap *sn, uint64_t *pos, const uint8_t **key, size_t *len);
/* Every invariant of the copy: 0 or -EUCLEAN. */
int table_snap_verify(const struct table_snap *sn);

/* Lock held: the live keys as records { u32 len; bytes } (the snapshot
 * body format) into @buf.  -ENOBUFS with *@len = the size needed. */
int table_collect(struct region *r, uint8_t *buf, size_t cap, size_t *len, uint64_t *count,
		  uint64_t *key_bytes);

/* Lock held on @src: copies the used heap and the table state into @dst,
 * a fresh region with the same layout and seed. */
int table_copy_into(struct region *src, struct region *dst);

struct table_stats {
	uint64_t count, capacity, tombstones, key_bytes, arena_bytes, heap_bytes, file_bytes;
	uint64_t repairs, resizes, aborts, txns, log_capacity;
};
int table_stats(struct region *r, struct table_stats *st);
/* The bytes below the heap's end (brk), a racy read: a size to prefault. */
uint64_t table_heap_bytes(struct region *r);
/* The sums over the shards of @r (file_bytes: the file's). */
void table_stats_shards(struct region *r, struct table_stats *sum);
/* The shards' locks as one: counters summed, held (and its owner) if any
 * shard's lock is held (the first such), waiters and inconsistent if any. */
int table_lock_state_shards(struct region *r, struct shset_lock_state *st);

#endif
