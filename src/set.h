/* SPDX-License-Identifier: MIT */
/* set.h - internals of set.c for snapshot.c, the tests and the benchmarks
 * (private). */
#ifndef SHSET_SET_H
#define SHSET_SET_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds the last shset_copy or shset_foreach (and so shset_save) of
 * this process held the set's locks (every shard's). */
uint64_t set_last_hold_ns(void);
/* While @on, every one-shard transaction of a thread (a single add,
 * remove or pop) times its lock hold, from the lock taken to the lock
 * released; set_last_tx_hold gives the thread's last.  A hold over
 * SET_HOLD_LONG_NS also reads, right after the lock is released, the
 * thread's CPU clock and context switches (getrusage), so that a
 * benchmark can tell what happened up to the hold's end from what came
 * after it in the same call.  Off by default: the growth benchmark turns
 * it on in its writer. */
#define SET_HOLD_LONG_NS 100000u
struct set_hold {
	uint64_t ns;	 /* wall time of the hold */
	int long_hold;	 /* ns > SET_HOLD_LONG_NS: the rest is set */
	uint64_t cpu_ns; /* CLOCK_THREAD_CPUTIME_ID after the release */
	long nvcsw, nivcsw;
};
void set_time_holds(int on);
void set_last_tx_hold(struct set_hold *h);

/* One consistent state's keys as records { u32 len; bytes } in a new
 * buffer (*@bufp, free() it) that starts with @headroom spare bytes; the
 * locks are held only while the records are written. */
struct shset;
int set_collect(struct shset *s, size_t headroom, uint8_t **bufp, size_t *lenp, uint64_t *count,
		uint64_t *key_bytes);

/* Reads the caller's @in (NULL: defaults) as far as its size field says
 * into @out, a whole struct of this version: -EINVAL for a size too small
 * or flags set. */
struct shset_opts;
int set_opts_read(const struct shset_opts *in, struct shset_opts *out);

/* shset_create with a given hash key instead of a random one, so that a
 * test sees the same table layout every time. */
struct shset_opts;
int set_create_seeded(struct shset **out, const struct shset_opts *opts, const uint64_t *seed);

/* Adds @n records { u32 len; bytes } (@len bytes at @recs, a snapshot's
 * body, unchecked) to a new, empty set in one batch that builds each
 * shard's table once, at its final size (for at least @capacity keys in
 * all, as shset_opts say).  The records must be exactly @n, of @key_bytes
 * in all, and @check(@arg) (the body's checksum) must return 0, else the
 * load fails with -EBADMSG or what @check returned (or -ENOMEM); @check
 * may run in another thread, while the records are walked. */
long long set_load_records(struct shset *s, const uint8_t *recs, size_t len, size_t n,
			   uint64_t key_bytes, uint64_t capacity, int (*check)(void *arg),
			   void *arg);

/* For the tests: 1 if this process runs @s's filler thread (filler.c). */
int set_filler_running(struct shset *s);
/* Returns once the filler has faulted in all that this process's commits
 * handed it (or after 10 s): what the file holds then stays until the
 * next write, this process's or another's. */
void set_filler_settle(struct shset *s);
/* 1, with that table's pages in *@p and *@len, if the last commit of this
 * process into shard @i left a resize filling a table big enough for the
 * filler. */
int set_filling(struct shset *s, unsigned i, uint8_t **p, size_t *len);

#endif
