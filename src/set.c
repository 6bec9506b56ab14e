/* SPDX-License-Identifier: MIT */
/*
 * set.c - the public set operations, built on region, lock and table.
 *
 * A set's keys are split by hash over its shards (region.h), each with its
 * own lock, state, log and heap.  A mutation of one key is: take its
 * shard's lock (repairing after a dead owner), run one table transaction,
 * commit or abort, release.  Whole-set operations (batches over several
 * shards, clear, copy, collect, set algebra, comparisons) take every
 * shard's lock in shard order, and their mutations commit as one
 * (tx_commit_shards).  Readers (contains, size) first try the lock-free
 * path and fall back to the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "prim.h"
#include "lease.h"
#include "lockwait.h"
#include "filler.h"
#include "pager.h"
#include "region.h"
#include "set.h"
#include "shset.h"
#include "snapshot.h"
#include "table.h"

#define DEFAULT_LOG_BYTES (1u << 20)

/* How long the last copy or foreach of this process held the lock: for
 * the benchmarks, which compare it with a plain memcpy. */
static uint64_t last_hold_ns;

/* Touches every page of [p, p+len) so that faulting them in (costly on
 * some virtual machines) happens before the lock is taken, not under it. */
static void prefault(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		__atomic_store_n(p + i, 0, __ATOMIC_RELAXED);
	if (len)
		__atomic_store_n(p + len - 1, 0, __ATOMIC_RELAXED);
}

/* Faults in, in region @dst, the extent that holds data in the source:
 * allocated in one call if the kernel can, else page by page. */
static void prefault_extent(struct region *src, uint64_t off, uint64_t len, void *dst)
{
	(void)src;
	if (region_fill(dst, off, len))
		prefault(((struct region *)dst)->base + off, len);
}

uint64_t set_last_hold_ns(void)
{
	return __atomic_load_n(&last_hold_ns, __ATOMIC_RELAXED);
}

/* For the growth benchmark: when on, each one-shard transaction of the
 * calling thread records how long it held the shard's lock.  Off, it
 * costs a load and a branch. */
static int time_holds;
static _Thread_local struct set_hold last_tx_hold;

void set_time_holds(int on)
{
	__atomic_store_n(&time_holds, on, __ATOMIC_RELAXED);
}

void set_last_tx_hold(struct set_hold *h)
{
	*h = last_tx_hold;
}

static void hold_timed(uint64_t t0)
{
	struct set_hold *h = &last_tx_hold;

	h->ns = prim_mono_ns() - t0;
	h->long_hold = h->ns > SET_HOLD_LONG_NS;
	if (h->long_hold) {
		struct timespec ts;
		struct rusage ru;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
		getrusage(RUSAGE_THREAD, &ru);
		h->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		h->nvcsw = ru.ru_nvcsw;
		h->nivcsw = ru.ru_nivcsw;
	}
}

struct shset {
	struct region *r;
	/* Transaction storage, one per shard: shard i's is used under shard
	 * i's lock only. */
	uint8_t *txmem;
	size_t txstride;
	unsigned pop_next; /* the shard pop looks at first (a hint) */
	dev_t dev;	   /* the memfd's identity: what makes two handles one set */
	ino_t ino;
	struct filler fill; /* faults in the tables resizes fill (filler.c) */
	int give_back;	    /* batches punch what they freed (give_back) */
};

/* Once the region is open: its shard count sizes the storage. */
static int handle_init(struct shset *s)
{
	const char *e = getenv("SHSET_GIVE_BACK");

	s->give_back = !(e && !strcmp(e, "0"));
	s->txstride = (tx_size() + 63) & ~(size_t)63;
	s->txmem = aligned_alloc(64, s->txstride * s->r->nshards);
	filler_init(&s->fill, s->r);
	return s->txmem ? 0 : -ENOMEM;
}

static void *shard_txmem(struct shset *s, const struct region *sh)
{
	return s->txmem + s->txstride * sh->shard_idx;
}

/* Records the memfd's identity once the region is open. */
static int handle_identify(struct shset *s)
{
	struct stat st;

	if (fstat(s->r->fd, &st) < 0)
		return -errno;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return 0;
}

/* --- handles -------------------------------------------------------------- */

/* struct shset_opts as version 0.1 laid it out: up to `name`. */
#define OPTS_V01_SIZE (offsetof(struct shset_opts, name) + sizeof(const char *))

int set_opts_read(const struct shset_opts *in, struct shset_opts *out)
{
	memset(out, 0, sizeof(*out));
	if (!in)
		return 0;
	/* size 0 is 0.1's layout (no shards); a later, larger one is read
	 * as far as this version knows it. */
	size_t n = in->size ? in->size : OPTS_V01_SIZE;
	if (n < OPTS_V01_SIZE)
		return -EINVAL;
	memcpy(out, in, n < sizeof(*out) ? n : sizeof(*out));
	out->size = sizeof(*out);
	/* pad is reserved like flags: a later version may give it meaning. */
	return out->flags || out->pad ? -EINVAL : 0;
}

static int opts_to_region(const struct shset_opts *in, struct region_opts *ro)
{
	struct shset_opts o, *opts = &o;

	memset(ro, 0, sizeof(*ro));
	ro->log_bytes = DEFAULT_LOG_BYTES;
	int err = set_opts_read(in, &o);
	if (err || !in)
		return err;
	ro->max_size = opts->max_bytes;
	ro->nslots = opts->max_procs;
	if (opts->log_bytes)
		ro->log_bytes = opts->log_bytes < TX_MIN_LOG ? TX_MIN_LOG : opts->log_bytes;
	ro->name = opts->name;
	if (opts->key_type > SHSET_KEYS_INT)
		return -EINVAL;
	ro->key_type = opts->key_type;
	if (opts->shards > REGION_SHARDS_MAX || (opts->shards & (opts->shards - 1)))
		return -EINVAL;
	ro->nshards = opts->shards;
	return 0;
}

static int create_region(struct shset **out, const struct region_opts *ro, uint64_t capacity)
{
	struct shset *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	err = region_create(&s->r, ro);
	if (!err) {
		err = handle_init(s);
		/* Each shard's table sized for its share, and an eighth more
		 * for the hash's unevenness. */
		unsigned n = s->r->nshards;
		uint64_t each = capacity ? capacity / n + capacity / (8 * n) + 1 : 0;
		for (unsigned i = 0; i < n && !err; i++)
			err = table_init(s->r->shard[i], n == 1 ? capacity : each);
		if (!err)
			err = handle_identify(s);
		if (err)
			region_close(s->r);
	}
	if (err) {
		free(s->txmem);
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

int set_create_seeded(shset **out, const struct shset_opts *opts, const uint64_t *seed)
{
	struct region_opts ro;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = opts_to_region(opts, &ro);
	if (err)
		return err;
	ro.seed = seed;
	return create_region(out, &ro, opts ? opts->capacity : 0);
}

int shset_create(shset **out, const struct shset_opts *opts)
{
	return set_create_seeded(out, opts, NULL);
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
	if (!err && s->r->log_bytes < TX_MIN_LOG)
		err = -EUCLEAN;
	if (!err)
		err = handle_init(s);
	if (!err)
		err = handle_identify(s);
	if (err && s->r)
		region_close(s->r);
	if (err) {
		free(s->txmem);
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

int shset_key_type(const shset *s)
{
	return s ? (int)s->r->key_type : -EINVAL;
}

int shset_slot(shset *s)
{
	return s ? shset_lease_slot(s->r->lease) : -EINVAL;
}

int set_filler_running(struct shset *s)
{
	return filler_running(&s->fill);
}

void set_filler_settle(struct shset *s)
{
	filler_settle(&s->fill);
}

int set_filling(struct shset *s, unsigned i, uint8_t **p, size_t *len)
{
	uint64_t lo, hi;

	if (i >= s->r->nshards)
		return 0;
	struct region *sh = s->r->shard[i];
	if (!table_populate_range(sh, __atomic_load_n(&sh->pop_want, __ATOMIC_RELAXED), &lo, &hi))
		return 0;
	*p = s->r->base + lo;
	*len = hi - lo;
	return 1;
}

void shset_close(shset *s)
{
	if (!s)
		return;
	filler_stop(&s->fill);
	region_close(s->r);
	free(s->txmem);
	free(s);
}

/* --- locking ----------------------------------------------------------------- */

static int lock_shard(struct region *sh)
{
	int res = shset_lock_acquire(sh->lock, sh->lease);

	if (res < 0)
		return res;
	if (res == SHSET_LOCK_OWNER_DIED) {
		/* The dead owner's transaction is undone (or, past its
		 * commit point, kept) before anyone looks. */
		int err = tx_repair(sh);
		if (err) {
			shset_lock_release(sh->lock, sh->lease);
			return err;
		}
		shset_lock_consistent(sh->lock, sh->lease);
	} else if (__builtin_expect((__atomic_load_n(&tx_state(sh)->seq, __ATOMIC_RELAXED) & 1) ||
					__atomic_load_n(&tx_state(sh)->log_n, __ATOMIC_ACQUIRE),
				    0)) {
		/* Odd, or a log, with the lock free: a peer wrote it, or its
		 * writer died without the lock saying so.  Repaired now, or
		 * readers would wait on it for ever. */
		int err = tx_repair(sh);
		if (err) {
			shset_lock_release(sh->lock, sh->lease);
			return err;
		}
	}
	return 0;
}

static void unlock_shard(struct region *sh)
{
	shset_lock_release(sh->lock, sh->lease);
}

/* Every shard's lock, in shard order (so two such callers never
 * deadlock, and a one-shard caller holds nothing else). */
static int set_lock(struct shset *s)
{
	for (unsigned i = 0; i < s->r->nshards; i++) {
		int err = lock_shard(s->r->shard[i]);
		if (err) {
			while (i-- > 0)
				unlock_shard(s->r->shard[i]);
			return err;
		}
	}
	return 0;
}

static void set_unlock(struct shset *s)
{
	for (unsigned i = s->r->nshards; i-- > 0;)
		unlock_shard(s->r->shard[i]);
}

/*
 * A set is its memfd: two handles name the same set exactly when their
 * files are the same inode.  The uuid in the header is bytes any peer can
 * copy, so it neither identifies a set nor orders locks.
 */
static int set_cmp(const struct shset *a, const struct shset *b)
{
	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	if (a->ino != b->ino)
		return a->ino < b->ino ? -1 : 1;
	return 0;
}

static int same_set(const struct shset *a, const struct shset *b)
{
	return set_cmp(a, b) == 0;
}

/* Both sets' locks in (device, inode) order, so (a, b) and (b, a) never
 * deadlock. */
static int lock_two(struct shset *a, struct shset *b)
{
	struct shset *first = a, *second = b;
	int err;

	if (same_set(a, b))
		return set_lock(a);
	if (set_cmp(a, b) > 0) {
		first = b;
		second = a;
	}
	err = set_lock(first);
	if (err)
		return err;
	err = set_lock(second);
	if (err)
		set_unlock(first);
	return err;
}

static void unlock_two(struct shset *a, struct shset *b)
{
	if (!same_set(a, b))
		set_unlock(b);
	set_unlock(a);
}

/* 1 if a transaction expecting @expect writes should start on a fresh
 * table: worth a pass over the shard when the log could not hold them and
 * the shard is no bigger than the batch.  A big shard tries in place
 * first (a resize in progress keeps moving a step at a time) and rebuilds
 * only if the log runs out. */
static int want_fresh(const struct tx *x, uint64_t expect)
{
	return expect * 2 > tx_log_room(x) && table_tx_count(x) <= expect;
}

/* Add batches this big (a shard's part) into a shard no bigger than them
 * start on a fresh table at their final size even when the log could hold
 * them: in place the table would grow step by step through every capacity
 * between, each carved anew and freed behind it.  A fresh table's
 * transaction also queues the key blocks it frees (alloc_put), which a
 * later batch takes back for a log entry per 511. */
#define BULK_MIN 512u

static int want_bulk(const struct tx *x, uint64_t n)
{
	return n >= BULK_MIN && table_tx_count(x) <= n;
}

/*
 * Runs @fn in one transaction of shard @sh, its lock held by the caller.
 * If the undo log runs out (-E2BIG), the transaction is undone and run
 * again on a fresh table, where slot writes need no log; with
 * @expect_writes 0, @fn is told (x->retry) and decides (a removal batch
 * that empties the shard clears it instead, which needs no room).
 */
typedef long long (*tx_fn)(struct tx *x, void *arg);

static long long run_tx(struct shset *s, struct region *sh, tx_fn fn, void *arg,
			uint64_t expect_writes)
{
	for (int fresh = 0; fresh < 2; fresh++) {
		int err;
		struct tx *x = tx_begin(sh, shard_txmem(s, sh), &err);
		if (!x)
			return err;
		if (fresh && !expect_writes) {
			x->retry = 1; /* @fn decides (a removal: split_part) */
		} else if (fresh || want_fresh(x, expect_writes)) {
			err = table_fresh(x, expect_writes);
			if (err) {
				tx_abort(x);
				return err;
			}
			fresh = 1;
		}
		long long res = fn(x, arg);
		if (res >= 0) {
			tx_commit(x);
			return res;
		}
		tx_abort(x);
		if (res != -E2BIG)
			return res;
	}
	return -E2BIG;
}

static long long shard_tx(struct shset *s, struct region *sh, tx_fn fn, void *arg,
			  uint64_t expect_writes)
{
	int err = lock_shard(sh);

	if (err)
		return err;
	uint64_t t0 = __atomic_load_n(&time_holds, __ATOMIC_RELAXED) ? prim_mono_ns() : 0;
	long long res = run_tx(s, sh, fn, arg, expect_writes);
	unlock_shard(sh);
	if (t0)
		hold_timed(t0);
	if (res >= 0)
		filler_after_commit(&s->fill, sh);
	return res;
}

/*
 * Runs @fn over one transaction per shard (xs[i] for shard i), every
 * shard's lock held by the caller, and commits them as one.  @expect (or
 * NULL) says how many writes each shard may take, to start it on a fresh
 * table as run_tx does; -E2BIG from any shard undoes all and runs again
 * with every shard fresh, or with NULL, every transaction told (retry)
 * and @fn deciding, as in run_tx.
 */
typedef long long (*multi_fn)(struct shset *s, struct tx **xs, void *arg);

static long long run_multi(struct shset *s, multi_fn fn, void *arg, const uint64_t *expect)
{
	struct region *r = s->r;
	struct tx *xs[REGION_SHARDS_MAX];
	unsigned n = r->nshards;

	for (int fresh = 0; fresh < 2; fresh++) {
		uint64_t tag = tx_new_tag(r);
		long long res = 0;
		unsigned began;
		for (began = 0; began < n && res >= 0; began++) {
			int err;
			struct region *sh = r->shard[began];
			uint64_t e = expect ? expect[began] : 0;
			xs[began] = tx_begin(sh, shard_txmem(s, sh), &err);
			if (!xs[began]) {
				res = err;
				break;
			}
			tx_join(xs[began], tag);
			if (fresh && !expect)
				xs[began]->retry = 1; /* @fn decides (split_part) */
			else if (fresh || want_fresh(xs[began], e))
				res = table_fresh(xs[began], e);
		}
		if (res >= 0)
			res = fn(s, xs, arg);
		if (res >= 0) {
			tx_commit_shards(xs, n, tag);
			return res;
		}
		while (began-- > 0)
			tx_abort(xs[began]);
		if (res != -E2BIG)
			return res;
	}
	return -E2BIG;
}

/* After a commit over every shard: each may have started or gone on with
 * a resize (filler.c). */
static void fill_after_multi(struct shset *s)
{
	for (unsigned i = 0; i < s->r->nshards; i++)
		filler_after_commit(&s->fill, s->r->shard[i]);
}

static long long locked_multi(struct shset *s, multi_fn fn, void *arg, const uint64_t *expect)
{
	int err = set_lock(s);

	if (err)
		return err;
	long long res = run_multi(s, fn, arg, expect);
	set_unlock(s);
	if (res >= 0)
		fill_after_multi(s);
	return res;
}

/* --- single keys ------------------------------------------------------------- */

struct key_arg {
	const void *key;
	size_t len;
	uint64_t h;
};

static int key_ok(const struct shset *s, const void *key, size_t len)
{
	if (!s || (!key && len) || len > SHSET_KEY_MAX)
		return -EINVAL;
	return 0;
}

static long long do_add(struct tx *x, void *arg)
{
	struct key_arg *k = arg;
	return table_insert_h(x, k->key, k->len, k->h);
}

static long long do_remove(struct tx *x, void *arg)
{
	struct key_arg *k = arg;
	return table_remove_h(x, k->key, k->len, k->h);
}

static int key_tx(shset *s, tx_fn fn, const void *key, size_t len)
{
	struct key_arg k = {key ? key : "", len, 0};
	int err = key_ok(s, key, len);

	if (err)
		return err;
	k.h = hash_bytes(s->r->seed, k.key, len);
	struct region *sh = region_shard(s->r, k.h);
	table_prefetch(sh, k.h);
	return (int)shard_tx(s, sh, fn, &k, 1);
}

int shset_add(shset *s, const void *key, size_t len)
{
	return key_tx(s, do_add, key, len);
}

int shset_remove(shset *s, const void *key, size_t len)
{
	return key_tx(s, do_remove, key, len);
}

/* Rounds of a reader's wait (each up to READ_WAIT_NS, 200 us) for a live
 * writer's transaction before it takes the lock: a time slice or two of a
 * writer switched out. */
#define READER_PATIENCE 25

/* After a lock-free read of shard @sh gave @res: 1 (having yielded the
 * CPU) if it should be tried again because a transaction outlasted the
 * reader's wait while its writer is alive (switched out, most likely) and
 * the reader has not waited *@rounds of READER_PATIENCE yet; 0 when the
 * lock must decide: a dead writer, or a long transaction (a big batch)
 * waited for on it. */
static int wait_for_writer(struct region *sh, long long res, int *rounds)
{
	if (res != -EBUSY || *rounds >= READER_PATIENCE || !sh->lease ||
	    !lease_holder_alive(sh->lease, sh->lock))
		return 0;
	++*rounds;
	sched_yield();
	return 1;
}

/* A key's presence in @r, every shard's lock held. */
static int contains_locked(struct region *r, const void *key, size_t len)
{
	uint64_t h = hash_bytes(r->seed, key, len);
	return table_contains_locked_h(region_shard(r, h), key, len, h);
}

int shset_contains(shset *s, const void *key, size_t len)
{
	int err = key_ok(s, key, len);

	if (err)
		return err;
	if (!key)
		key = "";
	uint64_t h = hash_bytes(s->r->seed, key, len);
	struct region *sh = region_shard(s->r, h);
	int res = table_contains_optimistic_h(sh, key, len, h);
	/* Rather than queue for a switched-out writer's lock and hold it in
	 * turn, wait for the writer a while longer. */
	for (int rounds = 0; wait_for_writer(sh, res, &rounds);)
		res = table_contains_optimistic_h(sh, key, len, h);
	if (res != -EAGAIN && res != -EBUSY)
		return res;
	/* Writers kept the sequence moving, or one died with it odd: the
	 * lock waits for them, or takes over and repairs. */
	err = lock_shard(sh);
	if (err)
		return err;
	res = table_contains_locked_h(sh, key, len, h);
	unlock_shard(sh);
	return res;
}

long long shset_size(shset *s)
{
	if (!s)
		return -EINVAL;
	struct region *busy;
	long long n = table_count_shards_optimistic(s->r, &busy);
	for (int rounds = 0; wait_for_writer(busy, n, &rounds);)
		n = table_count_shards_optimistic(s->r, &busy);
	if (n != -EAGAIN && n != -EBUSY)
		return n;
	int err = set_lock(s);
	if (err)
		return err;
	n = 0;
	for (unsigned i = 0; i < s->r->nshards && n >= 0; i++) {
		long long c = table_count_locked(s->r->shard[i]);
		n = c < 0 ? c : n + c;
	}
	set_unlock(s);
	return n;
}

/* Every shard emptied; returns how many keys that removed. */
static long long do_clear(struct shset *s, struct tx **xs, void *arg)
{
	long long n = 0;

	(void)arg;
	for (unsigned i = 0; i < s->r->nshards; i++) {
		n += (long long)table_tx_count(xs[i]);
		int err = table_clear(xs[i]);
		if (err)
			return err;
	}
	return n;
}

int shset_clear(shset *s)
{
	if (!s)
		return -EINVAL;
	long long res = locked_multi(s, do_clear, NULL, NULL);
	return res < 0 ? (int)res : 0;
}

struct pop_arg {
	void *buf;
	size_t cap;
	size_t *len;
};

static long long do_pop(struct tx *x, void *arg)
{
	struct pop_arg *p = arg;
	return table_pop(x, p->buf, p->cap, p->len);
}

int shset_pop(shset *s, void *buf, size_t cap, size_t *len)
{
	size_t dummy;
	struct pop_arg p = {buf, cap, len ? len : &dummy};

	if (!s || (!buf && cap))
		return -EINVAL;
	struct region *r = s->r;
	unsigned n = r->nshards;
	if (n == 1)
		return (int)shard_tx(s, r, do_pop, &p, 1);
	/* One shard at a time, from a different one each call, those whose
	 * count (a racy hint) is not 0. */
	unsigned first = __atomic_fetch_add(&s->pop_next, 1, __ATOMIC_RELAXED);
	for (unsigned k = 0; k < n; k++) {
		struct region *sh = r->shard[(first + k) & (n - 1)];
		if (!__atomic_load_n(&tx_state(sh)->count, __ATOMIC_RELAXED))
			continue;
		long long res = shard_tx(s, sh, do_pop, &p, 1);
		if (res != 0)
			return (int)res;
	}
	/* Every shard looked empty, but not at the same moment (a key may
	 * have moved from one not yet looked at to one already passed):
	 * empty is decided with every lock held. */
	int err = set_lock(s);
	if (err)
		return err;
	long long res = 0;
	for (unsigned i = 0; i < n && res == 0; i++)
		res = run_tx(s, r->shard[i], do_pop, &p, 1);
	set_unlock(s);
	return (int)res;
}

/* --- batches ------------------------------------------------------------------ */

struct batch_arg {
	const void *const *keys;
	const size_t *lens; /* NULL: strlen */
	size_t n;
};

static size_t batch_len(const struct batch_arg *b, size_t i)
{
	return b->lens ? b->lens[i] : strlen(b->keys[i]);
}

/* An add batch into a set of one shard, as it comes (removals go through
 * the split: split_part). */
static long long do_batch(struct tx *x, void *arg)
{
	struct batch_arg *b = arg;
	long long done = 0;
	int err = want_bulk(x, b->n) ? table_fresh(x, b->n) : 0;

	if (err)
		return err;
	if (b->lens)
		return table_insert_many(x, b->keys, b->lens, b->n);
	for (size_t i = 0; i < b->n; i++) {
		int r = table_insert(x, b->keys[i] ? b->keys[i] : "", batch_len(b, i));
		if (r < 0)
			return r;
		done += r;
	}
	return done;
}

/* Scratch arrays: a big one is faulted in with one call (a million keys'
 * worth is thousands of page faults one by one), by the caller or, given
 * a pager, ahead of it (*@job: the pager's job, or -1). */
#define SCRATCH_MAP (1u << 20)

static void *scratch_paged(size_t bytes, struct pager *pg, int *job)
{
	*job = -1;
	if (bytes < SCRATCH_MAP)
		return malloc(bytes ? bytes : 1);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (pg ? 0 : MAP_POPULATE), -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (pg)
		*job = pager_add(pg, NULL, (uintptr_t)p, bytes);
	return p;
}

static void scratch_free(void *p, size_t bytes)
{
	if (bytes < SCRATCH_MAP)
		free(p);
	else if (p)
		munmap(p, bytes);
}

/* Where the keys come from: arrays (@lens NULL: strings), or records
 * { u32 len; bytes } in @recs (@recs_len bytes). */
struct keys_in {
	const void *const *keys;
	const size_t *lens;
	/* Or a snapshot's records, unchecked: the first pass (split_hash)
	 * checks them, and that they hold key_bytes in all. */
	const uint8_t *recs;
	size_t recs_len, pos;
	uint64_t key_bytes;
};

static int keys_next(struct keys_in *in, size_t i, const void **key, size_t *len)
{
	if (in->recs) {
		const uint8_t *k;
		if (snap_next(in->recs, in->recs_len, &in->pos, &k, len) != 1)
			return -EBADMSG;
		*key = k;
		return 0;
	}
	*key = in->keys[i] ? in->keys[i] : "";
	*len = in->lens ? in->lens[i] : strlen(*key);
	return 0;
}

/*
 * A batch over several shards: its keys as records ready to insert
 * (table_rec), sorted by shard in one counting sort, and for a big batch
 * by home slot within the shard too (the hash's top bits), so that each
 * shard's table is written front to back (a home is monotone in the hash
 * whatever the table's capacity: table.c, home()).  Shard i's records are
 * rec[at[i], at[i+1]).  1024 buckets in all: the scatter writes that
 * many streams at once, few enough to stay in the caches (with 65,536 the
 * split of a 1,000,000-key load took 75 ms, with 1024 30 ms), and a bucket
 * of a shard's table is still small enough for them (64 KiB in that load).
 */
#define SPLIT_SORT_MIN 4096u
#define SPLIT_BITS     10u

struct split {
	struct table_rec *rec;
	size_t n, at[REGION_SHARDS_MAX + 1];
	uint64_t expect[REGION_SHARDS_MAX];
	int add;
	/* A load: each shard's table is built for expect[i] keys, its pages
	 * mapped by the pager (build_tables). */
	int build;
	struct pager *pager; /* a load's: maps its sort buffer and tables, then inserts too */
	unsigned shard;	     /* the one shard of split_one */
	/* Between split_hash and split_place: the keys, their hashes, the
	 * buckets' starts, and the pager's jobs for rec and th. */
	struct keys_in *in;
	size_t pos0;
	uint64_t *th;
	uint32_t *start;
	unsigned bits;
	int rec_job, th_job;
};

/* The first pass's arrays, once placed (or on the way out). */
static void split_free_hashes(struct split *sp)
{
	if (sp->pager && sp->th_job >= 0)
		pager_drop(sp->pager, sp->th_job);
	sp->th_job = -1;
	free(sp->start);
	scratch_free(sp->th, sp->n * sizeof(*sp->th));
	sp->start = NULL;
	sp->th = NULL;
}

static void split_free(struct split *sp)
{
	/* Not left for the pager to map after it is unmapped. */
	if (sp->pager && sp->rec_job >= 0)
		pager_drop(sp->pager, sp->rec_job);
	sp->rec_job = -1;
	split_free_hashes(sp);
	scratch_free(sp->rec, sp->n * sizeof(*sp->rec));
	sp->rec = NULL;
}

/* The bucket of hash @h: its shard, then for a big batch the hash's top
 * bits. */
static inline uint32_t split_bucket(const struct split *sp, unsigned ns, uint64_t h)
{
	return (uint32_t)((h & (ns - 1)) << sp->bits | (sp->bits ? h >> (64 - sp->bits) : 0));
}

/* The split's first pass: hashes @n keys and counts them by bucket, which
 * gives each shard's part (at[], expect[]).  Returns the shard every key
 * is in, -1 if they span several, or -errno (the split freed). */
static int split_hash(struct region *r, struct split *sp, struct keys_in *in, size_t n, int add,
		      struct pager *pg)
{
	unsigned ns = r->nshards, sbits = (unsigned)__builtin_ctz(ns);
	const void *k = NULL;
	size_t len = 0;
	int err = 0, only = -1;

	memset(sp, 0, sizeof(*sp));
	sp->rec_job = sp->th_job = -1;
	sp->n = n;
	sp->add = add;
	sp->pager = pg;
	sp->in = in;
	sp->pos0 = in->pos;
	if (n >= SPLIT_SORT_MIN)
		sp->bits = SPLIT_BITS - sbits;
	/* Mapped by the pager, if any, while the keys are hashed: th before
	 * rec, since this pass writes th front to back (in a load the pager
	 * checksums the body first, so the pass faults in th's first pages
	 * itself; the pager, a page at a time, soon overtakes it). */
	sp->th = scratch_paged(n * sizeof(*sp->th), pg, &sp->th_job);
	sp->rec = scratch_paged(n * sizeof(*sp->rec), pg, &sp->rec_job);
	sp->start = calloc((1u << (sbits + sp->bits)) + 1, sizeof(*sp->start));
	if (!sp->rec || !sp->th || !sp->start) {
		err = -ENOMEM;
		goto out;
	}
	uint64_t kb = 0;
	for (size_t i = 0; i < n; i++) {
		err = keys_next(in, i, &k, &len);
		if (err)
			goto out;
		kb += len;
		sp->th[i] = hash_bytes(r->seed, k, len);
		sp->start[split_bucket(sp, ns, sp->th[i]) + 1]++;
	}
	/* Every page of th is written now: its job has nothing left to do,
	 * and its number must not outlive the pager_reset of a load's
	 * build_tables, which hands the numbers to the tables' jobs. */
	if (pg && sp->th_job >= 0)
		pager_drop(pg, sp->th_job);
	sp->th_job = -1;
	/* Records: exactly n, and nothing after them (snap_check_records). */
	if (in->recs && (in->pos != in->recs_len || kb != in->key_bytes)) {
		err = -EBADMSG;
		goto out;
	}
	for (uint32_t b = 0; b < 1u << (sbits + sp->bits); b++)
		sp->start[b + 1] += sp->start[b];
	for (unsigned i = 0; i <= ns; i++)
		sp->at[i] = sp->start[i << sp->bits];
	for (unsigned i = 0; i < ns; i++) {
		sp->expect[i] = sp->at[i + 1] - sp->at[i];
		if (sp->expect[i] == n)
			only = (int)i;
	}
out:
	if (err) {
		split_free(sp);
		return err;
	}
	return only;
}

/* Waits for the pager to have mapped rec (or maps it itself). */
static void split_rec_mapped(struct split *sp)
{
	if (sp->pager && sp->rec_job >= 0)
		pager_need(sp->pager, sp->rec_job);
	sp->rec_job = -1;
}

/* The second pass: the keys as records, each at its bucket's next place.
 * The hashes and starts are freed: rec alone is left. */
static void split_place(struct region *r, struct split *sp)
{
	const void *k = NULL;
	size_t len = 0;

	if (!sp->th)
		return; /* placed already (a load's transaction run again) */
	sp->in->pos = sp->pos0;
	split_rec_mapped(sp);
	for (size_t i = 0; i < sp->n; i++) {
		/* The keys the first pass read without error. */
		keys_next(sp->in, i, &k, &len);
		table_rec_fill(&sp->rec[sp->start[split_bucket(sp, r->nshards, sp->th[i])]++], k,
			       len, sp->th[i]);
	}
	split_free_hashes(sp);
}

/* Splits @n keys by shard: split_hash, then split_place. */
static int split_keys(struct region *r, struct split *sp, struct keys_in *in, size_t n, int add)
{
	int only = split_hash(r, sp, in, n, add, NULL);

	if (only >= -1)
		split_place(r, sp);
	return only;
}

/* Shard @i's part of the split into transaction @x. */
static long long split_part(struct tx *x, const struct split *sp, unsigned i)
{
	const struct table_rec *rec = sp->rec + sp->at[i];
	size_t n = sp->at[i + 1] - sp->at[i];
	long long done = 0;

	if (sp->add) {
		int err = want_bulk(x, n) ? table_fresh(x, n) : 0;
		return err ? err : table_insert_recs(x, rec, n);
	}
	/* A batch at least as big as the shard may remove every key of it:
	 * then it is a clear, which logs nothing and needs no new table (a
	 * full set has no room for one).  Else a batch the log cannot hold
	 * runs on a fresh table, sized for the keys the shard has (removals
	 * add none). */
	uint64_t count = table_tx_count(x);
	if (count && n >= count) {
		int all = table_all_in(x, rec, n);
		if (all < 0)
			return all;
		if (all) {
			int err = table_clear(x);
			return err ? err : (long long)count;
		}
	}
	if (x->retry || want_fresh(x, n)) {
		int err = table_fresh(x, 0);
		if (err)
			return err;
	}
	for (size_t j = 0; j < n; j++) {
		int res = table_remove_many_h(x, table_rec_key(&rec[j]), rec[j].len, rec[j].h);
		if (res < 0)
			return res;
		done += res;
	}
	int err = table_shrink(x, (uint64_t)done);
	return err ? err : done;
}

/*
 * A load: every shard's table is allocated at its final size first, none
 * of its pages touched, and the pager maps them in shard order while this
 * thread places the keys and then inserts (load_inserts); a table the
 * pager has not reached yet is mapped by this thread itself (pager_need).
 * run_multi may run this twice (-E2BIG): the queue starts empty each
 * time, so every table of 64 KiB or more has a job (smaller ones were
 * written whole when zeroed).
 */
static int build_tables(struct shset *s, struct tx **xs, struct split *sp, int *job)
{
	/* The sort buffer's job first (done by now, most likely): the
	 * reset below would drop it, and renumbers the jobs. */
	split_rec_mapped(sp);
	pager_reset(sp->pager);
	for (unsigned i = 0; i < s->r->nshards; i++) {
		uint64_t off, len;
		job[i] = -1;
		if (!sp->expect[i])
			continue;
		xs[i]->fill_later = 1;
		int err = table_fresh(xs[i], sp->expect[i]);
		xs[i]->fill_later = 0;
		if (!err)
			err = table_fill_span(xs[i], &off, &len);
		if (err)
			return err;
		if (len)
			job[i] = pager_add(sp->pager, xs[i]->r, off, len);
	}
	return 0;
}

/*
 * A load's inserts, shard by shard: this thread takes the shards from the
 * first up, the pager's thread, once it has mapped every table (its jobs
 * run in order), from the last down.  Each shard's transaction is used by
 * one thread at a time; transactions on different shards are independent,
 * as are those of writers of different shards in the threads of one
 * process.
 */
struct load_work {
	struct tx **xs;
	const struct split *sp;
	pthread_mutex_t mu;
	unsigned front, back; /* shards [front, back) not taken yet */
	int failed;
	long long res[REGION_SHARDS_MAX];
};

/* The next shard to insert into, from the front or the back: -1 once
 * none is left or an insert failed. */
static int load_take(struct load_work *w, int back)
{
	int i = -1;

	pthread_mutex_lock(&w->mu);
	if (!w->failed && w->front < w->back)
		i = back ? (int)--w->back : (int)w->front++;
	pthread_mutex_unlock(&w->mu);
	return i;
}

static void load_one(struct load_work *w, int i)
{
	const struct split *sp = w->sp;
	long long res = 0;

	if (sp->at[i + 1] != sp->at[i])
		res = split_part(w->xs[i], sp, (unsigned)i);
	w->res[i] = res;
	if (res < 0) {
		pthread_mutex_lock(&w->mu);
		w->failed = 1;
		pthread_mutex_unlock(&w->mu);
	}
}

/* The pager's share (a work job). */
static void load_back(void *arg)
{
	struct load_work *w = arg;

	for (int i; (i = load_take(w, 1)) >= 0;)
		load_one(w, i);
}

static long long load_inserts(struct shset *s, struct tx **xs, struct split *sp, const int *job)
{
	unsigned ns = s->r->nshards;
	struct load_work w = {.xs = xs, .sp = sp, .back = ns};
	long long done = 0;

	pthread_mutex_init(&w.mu, NULL);
	int back_job = pager_add_work(sp->pager, load_back, &w);
	for (int i; (i = load_take(&w, 0)) >= 0;) {
		pager_need(sp->pager, job[i]);
		load_one(&w, i);
	}
	/* The pager's share finished, or run here (nothing is left by now):
	 * no other thread is in a transaction after this. */
	pager_need(sp->pager, back_job);
	pthread_mutex_destroy(&w.mu);
	for (unsigned i = 0; i < ns && done >= 0; i++)
		done = w.res[i] < 0 ? w.res[i] : done + w.res[i];
	return done;
}

_Static_assert(REGION_SHARDS_MAX + 1 <= PAGER_JOBS, "a job for every table and the inserts");

static long long do_split(struct shset *s, struct tx **xs, void *arg)
{
	struct split *sp = arg;
	long long done = 0;
	int job[REGION_SHARDS_MAX];

	if (sp->build) {
		done = build_tables(s, xs, sp, job);
		if (!done) {
			/* The keys are placed while the pager maps the tables. */
			split_place(s->r, sp);
			done = load_inserts(s, xs, sp, job);
			if (done >= 0)
				return done;
		}
		/* The tables go with the transaction: map no more of them. */
		pager_reset(sp->pager);
		return done;
	}
	for (unsigned i = 0; i < s->r->nshards; i++) {
		if (sp->at[i + 1] == sp->at[i])
			continue;
		long long res = split_part(xs[i], sp, i);
		if (res < 0)
			return res;
		done += res;
	}
	return done;
}

static long long split_one(struct tx *x, void *arg)
{
	struct split *sp = arg;
	return split_part(x, sp, sp->shard);
}

/* Runs the split's transaction: one shard's lock if every key is in it
 * (a small batch, most likely), else every shard's. */
static long long split_run(struct shset *s, struct split *sp, int only)
{
	if (only >= 0) {
		sp->shard = (unsigned)only;
		return shard_tx(s, s->r->shard[only], split_one, sp, sp->add ? sp->n : 0);
	}
	/* A removal decides for itself (split_part). */
	return locked_multi(s, do_split, sp, sp->add ? sp->expect : NULL);
}

/*
 * Freed tables give their pages back a step (ALLOC_PUNCH_STEP) a
 * transaction.  A batch or set algebra that changed many keys may have
 * freed tables of as many keys' worth: left alone, they would cost the next
 * hundreds of transactions a step each (30 to 100 us of their lock hold,
 * the adds' slowest), and stay allocated while the set is idle.  The
 * caller takes those steps itself instead: up to one per GIVE_BACK_KEYS
 * keys it changed in each shard (256 bytes a key, more than a table and
 * its keys' blocks free), each a transaction of its own, the shard's lock
 * taken for each.  Best effort: the operation's result is already decided.
 * SHSET_GIVE_BACK=0 in the environment leaves them to later transactions
 * as before (read when a handle is made: getenv is not safe beside a
 * thread of the host that sets variables).
 */
#define GIVE_BACK_KEYS 1024u

static long long no_op(struct tx *x, void *arg)
{
	(void)x;
	(void)arg;
	return 0;
}

static void give_back(struct shset *s, long long changed)
{
	unsigned ns = s->r->nshards;
	uint64_t steps = changed > 0 && s->give_back ? (uint64_t)changed / ns / GIVE_BACK_KEYS : 0;
	/* The operation has changed the set: its caller's wait hook must not
	 * make a wait here look like a cancelled operation. */
	struct lock_wait_hook hook = lock_wait_hook;

	lock_wait_hook.fn = NULL;
	for (unsigned i = 0; steps && i < ns; i++) {
		struct region *sh = s->r->shard[i];
		/* The list's head is a hint here: each step checks it. */
		for (uint64_t k = 0;
		     k < steps && __atomic_load_n(&tx_state(sh)->punch_head, __ATOMIC_RELAXED); k++)
			if (shard_tx(s, sh, no_op, NULL, 0) < 0)
				break;
	}
	lock_wait_hook = hook;
}

static long long batch(shset *s, const void *const *keys, const size_t *lens, size_t n, int add)
{
	struct batch_arg b = {keys, lens, n};

	if (!s || (!keys && n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!keys[i] && (!lens || lens[i]))
			return -EINVAL;
		if (keys[i] && batch_len(&b, i) > SHSET_KEY_MAX)
			return -EINVAL;
	}
	long long res;
	if (s->r->nshards == 1 && add) {
		res = shard_tx(s, s->r, do_batch, &b, n);
	} else {
		if (!n)
			return 0;
		/* Split before any lock is taken. */
		struct split sp;
		struct keys_in in = {.keys = keys, .lens = lens};
		int only = split_keys(s->r, &sp, &in, n, add);
		if (only < -1)
			return only;
		res = split_run(s, &sp, only);
		split_free(&sp);
	}
	give_back(s, res);
	return res;
}

struct records_arg {
	const uint8_t *recs;
	size_t len, n;
	uint64_t keys; /* to size the table for */
};

static long long do_records(struct tx *x, void *arg)
{
	struct records_arg *a = arg;
	int err = a->keys ? table_fresh(x, a->keys) : 0;

	return err ? err : table_insert_records(x, a->recs, a->len, a->n);
}

/* A load's check of its records' checksum, as a pager job. */
struct load_check {
	int (*fn)(void *arg);
	void *arg;
	int res;
};

static void load_check_run(void *arg)
{
	struct load_check *c = arg;
	c->res = c->fn(c->arg);
}

long long set_load_records(shset *s, const uint8_t *recs, size_t len, size_t n, uint64_t key_bytes,
			   uint64_t capacity, int (*check)(void *arg), void *arg)
{
	unsigned ns = s->r->nshards;
	/* A record is 4 bytes at least: what is sized from @n below (tables,
	 * a split's arrays) stays within a few times the file's size, whatever
	 * a crafted header says, before the records are walked. */
	if (n > len / 4 || key_bytes > len)
		return -EBADMSG;
	/* table_init's sizing: @capacity keys below the 3/4 load limit, and
	 * no fewer than the file's.  A load knows every key it will add, so
	 * its table is the one a set presized for them has, not one sized
	 * for as many again (a batch's), which would leave it at half load
	 * and a third bigger. */
	uint64_t expect = (capacity * 2 + 2) / 3;

	if (ns == 1) {
		uint64_t need = ((uint64_t)n * 2 + 2) / 3;
		struct records_arg a = {recs, len, n, expect > need ? expect : need};
		if (snap_check_records(recs, len, n, key_bytes) != SNAP_OK)
			return -EBADMSG;
		int err = check(arg);
		return err ? err : shard_tx(s, s->r, do_records, &a, a.keys);
	}
	/* Several shards: the records' keys split by shard, each shard's
	 * table built once at its final size. */
	struct split sp;
	struct keys_in in = {.recs = recs, .recs_len = len, .key_bytes = key_bytes};
	/* A thread for the page work if there is much of it (its start
	 * costs tens of microseconds).  It checks the checksum first, while
	 * this thread walks the records (split_hash): the two passes over
	 * the image take one's time, not both's (a 1,000,000-key load spent
	 * 7 of its 51 ms checking the image before the walk). */
	struct pager pg;
	struct load_check chk = {check, arg, 0};
	pager_start(&pg, n * sizeof(*sp.rec) >= SCRATCH_MAP);
	int chk_job = pager_add_work(&pg, load_check_run, &chk);
	if (chk_job < 0)
		load_check_run(&chk); /* never: the queue is empty */
	long long res = split_hash(s->r, &sp, &in, n, 1, &pg);
	if (res >= -1) {
		/* Nothing is built before the checksum has its say. */
		pager_need(&pg, chk_job);
		if (chk.res) {
			split_free(&sp);
			res = chk.res;
		}
	}
	if (res >= -1) {
		for (unsigned j = 0; j < ns; j++) {
			sp.expect[j] = (sp.expect[j] * 2 + 2) / 3;
			if (sp.expect[j] < expect / ns)
				sp.expect[j] = expect / ns;
		}
		sp.build = 1;
		res = locked_multi(s, do_split, &sp, NULL);
		split_free(&sp);
	}
	pager_stop(&pg);
	return res;
}

long long shset_add_batch(shset *s, const void *const *keys, const size_t *lens, size_t n)
{
	return batch(s, keys, lens, n, 1);
}

long long shset_remove_batch(shset *s, const void *const *keys, const size_t *lens, size_t n)
{
	return batch(s, keys, lens, n, 0);
}

/* --- whole-set views --------------------------------------------------------- */

int shset_copy(shset *s, shset **out)
{
	struct region_opts ro = {0};
	struct shset *c;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!s)
		return -EINVAL;
	ro.max_size = s->r->map_size;
	ro.nslots = s->r->nslots;
	ro.log_bytes = s->r->log_bytes;
	ro.seed = s->r->seed;
	ro.key_type = s->r->key_type;
	ro.nshards = s->r->nshards;
	err = create_region(&c, &ro, 0);
	if (err)
		return err;
	/* Fault the destination in before taking the locks, so they are
	 * held only for the memcpy itself.  The sizes are racy guesses; the
	 * copy grows the file further under the lock if it must. */
	for (unsigned i = 0; i < s->r->nshards; i++) {
		struct region *src = s->r->shard[i], *dst = c->r->shard[i];
		uint64_t guess = dst->heap_off + table_heap_bytes(src);
		region_check(src, 0, guess); /* learns of growth by other processes */
		if (guess > src->avail)	     /* a scribbled brk must not fault in GiBs */
			guess = src->avail;
		if (guess > dst->heap_off && guess <= dst->heap_end &&
		    region_grow(dst, guess) == 0) {
			/* Only where the source has data: its holes stay holes. */
			region_extents(src, dst->heap_off, guess, prefault_extent, dst);
			region_prefetch(src, src->heap_off, guess);
		}
	}
	err = set_lock(s);
	if (!err) {
		uint64_t t0 = prim_mono_ns();
		for (unsigned i = 0; i < s->r->nshards && !err; i++)
			err = table_copy_into(s->r->shard[i], c->r->shard[i]);
		set_unlock(s);
		__atomic_store_n(&last_hold_ns, prim_mono_ns() - t0, __ATOMIC_RELAXED);
	}
	if (err) {
		shset_close(c);
		return err;
	}
	*out = c;
	return 0;
}

/* Every shard's records into @buf, locks held: *@lenp the bytes written,
 * or with -ENOBUFS the bytes they need. */
static int collect_shards(struct region *r, uint8_t *buf, size_t cap, size_t *lenp, uint64_t *count,
			  uint64_t *key_bytes)
{
	size_t at = 0, need = 0;
	uint64_t n = 0, kb = 0;
	int short_of = 0;

	for (unsigned i = 0; i < r->nshards; i++) {
		size_t len;
		uint64_t c, k;
		int err =
		    table_collect(r->shard[i], buf + at, short_of ? 0 : cap - at, &len, &c, &k);
		if (err == -ENOBUFS) {
			short_of = 1;
			need += len;
			continue;
		}
		if (err)
			return err;
		if (short_of) {
			need += len;
			continue;
		}
		at += len;
		need += len;
		n += c;
		kb += k;
	}
	*lenp = short_of ? need : at;
	if (short_of)
		return -ENOBUFS;
	*count = n;
	*key_bytes = kb;
	return 0;
}

/* Tries of set_collect with its buffer sized unlocked; the last sizes it
 * under the locks. */
#define COLLECT_TRIES 8

/* The most bytes of records the set's file can account for: the records
 * of honest keys take no more than twice the memory their slots and
 * blocks occupy, so the bound is the memory the file really holds
 * (st_blocks), not counts or sizes a peer can write; a sparse file grown
 * to max_bytes holds nothing. */
static int collect_limit(shset *s, uint64_t *limit)
{
	struct stat fst;

	if (fstat(s->r->fd, &fst) < 0)
		return -errno;
	*limit = 2 * (uint64_t)fst.st_blocks * 512 + 4096;
	return 0;
}

/* set_collect's last try, every lock held: a buffer of exactly the *@lenp
 * bytes the tables need, bounded by the memory the file holds. */
static int collect_exact(shset *s, size_t headroom, uint8_t **bufp, size_t *lenp, uint64_t *count,
			 uint64_t *key_bytes)
{
	size_t need = *lenp;
	uint64_t limit = 0;
	int err = collect_limit(s, &limit);

	if (err)
		return err;
	if (need > limit)
		return -EUCLEAN;
	uint8_t *nb = realloc(*bufp, headroom + need);
	if (!nb)
		return -ENOMEM;
	*bufp = nb;
	err = collect_shards(s->r, nb + headroom, need, lenp, count, key_bytes);
	return err == -ENOBUFS ? -EUCLEAN : err;
}

int set_collect(shset *s, size_t headroom, uint8_t **bufp, size_t *lenp, uint64_t *count,
		uint64_t *key_bytes)
{
	struct table_stats ts;
	size_t cap, need;
	uint8_t *buf = NULL;
	int err = 0;

	*bufp = NULL;
	uint64_t limit = 0;
	err = collect_limit(s, &limit);
	if (err)
		return err;
	table_stats_shards(s->r, &ts);
	need = (size_t)(ts.count * 4 + ts.key_bytes);
	if (need > 2 * ts.heap_bytes + 4096) /* racy or scribbled: the lock decides */
		need = 2 * ts.heap_bytes + 4096;
	if (need > limit)
		need = limit;
	for (int tries = 0;; tries++) {
		/* Racy estimate plus slack, more each time writers outgrew it;
		 * allocated and faulted in unlocked. */
		cap = need + ((need / 16) << (tries < 4 ? tries : 4)) + 4096;
		uint8_t *nb = realloc(buf, headroom + cap);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		prefault(buf, headroom + cap);
		for (unsigned i = 0; i < s->r->nshards; i++) {
			struct region *sh = s->r->shard[i];
			uint64_t end = sh->heap_off + table_heap_bytes(sh);
			region_check(sh, 0, end);
			region_prefetch(sh, sh->heap_off, end);
		}
		err = set_lock(s);
		if (err)
			break;
		uint64_t t0 = prim_mono_ns();
		err = collect_shards(s->r, buf + headroom, cap, lenp, count, key_bytes);
		if (err == -ENOBUFS && tries == COLLECT_TRIES - 1) {
			/* Busy writers outgrew every slack: the size they need
			 * now, allocated with the locks held, where it cannot
			 * move.  Still short: a peer wrote the tables meanwhile. */
			err = collect_exact(s, headroom, &buf, lenp, count, key_bytes);
		}
		set_unlock(s);
		__atomic_store_n(&last_hold_ns, prim_mono_ns() - t0, __ATOMIC_RELAXED);
		if (err != -ENOBUFS)
			break;
		need = *lenp; /* grew meanwhile: try again with the size it has now */
		err = collect_limit(s, &limit);
		if (err)
			break;
		if (need > limit) {
			err = -EUCLEAN; /* more records than memory could hold */
			break;
		}
	}
	if (err) {
		free(buf);
		return err;
	}
	*bufp = buf;
	return 0;
}

/*
 * The keys come in runs of FOREACH_RUN as the tables hold them, the runs in
 * bit-reversed order, so that each stretch of the visit spreads over the
 * whole hash range.  A table holds its keys in the order of their hashes
 * (table.c, home()), and a caller removing keys as it sees them (a drain)
 * would otherwise leave only the highest: the shrink at 3/32 full homes
 * them all in the last slots of its smaller table, one cluster that every
 * move and probe walks (400,000 keys removed in slot order from one
 * shard: 2.2 s, an op up to 1.3 ms).
 */
#define FOREACH_RUN 16u

static int visit_run(const uint8_t *buf, size_t at, size_t end, shset_visit_fn fn, void *arg)
{
	int res = 0;

	while (at < end && !res) {
		uint32_t l;
		memcpy(&l, buf + at, 4);
		res = fn(buf + at + 4, l, arg);
		at += 4 + (size_t)l;
	}
	return res;
}

int shset_foreach(shset *s, shset_visit_fn fn, void *arg)
{
	uint8_t *buf;
	size_t len;
	uint64_t count, kb;
	int err, res = 0;

	if (!s || !fn)
		return -EINVAL;
	err = set_collect(s, 0, &buf, &len, &count, &kb);
	if (err)
		return err;
	/* Where each run starts (set_collect's records: count of them). */
	size_t runs = (size_t)((count + FOREACH_RUN - 1) / FOREACH_RUN);
	size_t *run = malloc((runs ? runs : 1) * sizeof(*run));
	if (!run) {
		free(buf);
		return -ENOMEM;
	}
	uint64_t i = 0;
	for (size_t at = 0; at < len && i < count; i++) {
		uint32_t l;
		if (i % FOREACH_RUN == 0)
			run[i / FOREACH_RUN] = at;
		memcpy(&l, buf + at, 4);
		at += 4 + (size_t)l;
	}
	runs = (size_t)((i + FOREACH_RUN - 1) / FOREACH_RUN); /* the records there are */
	unsigned bits = 0;
	while (((size_t)1 << bits) < runs)
		bits++;
	for (uint64_t c = 0; c < (1ull << bits) && !res; c++) {
		uint64_t r = bits ? prim_bitrev64(c) >> (64 - bits) : 0;
		/* The runs are far apart: fetch the one after next ahead. */
		uint64_t ahead = bits ? prim_bitrev64(c + 2) >> (64 - bits) : 0;
		if (c + 2 < (1ull << bits) && ahead < runs)
			__builtin_prefetch(buf + run[ahead]);
		if (r < runs)
			res = visit_run(buf, run[r], r + 1 < runs ? run[r + 1] : len, fn, arg);
	}
	free(run);
	free(buf);
	return res;
}

/* --- two sets ------------------------------------------------------------------- */

struct two_arg {
	struct shset *other;
	int mode;
	uint8_t *key; /* SHSET_KEY_MAX bytes: the other set's key, copied once */
};

enum { ALG_UNION, ALG_INTER, ALG_DIFF, ALG_SYMDIFF };

static int keep_if_in_other(const void *k, size_t len, void *arg)
{
	return contains_locked(arg, k, len);
}

static long long do_two(struct shset *s, struct tx **xs, void *arg)
{
	struct two_arg *a = arg;
	struct region *o = a->other->r, *r = s->r;
	long long done = 0;
	/* By shard: the shrink their removes may call for waits for the last
	 * (table_remove_many_h). */
	uint64_t removed[REGION_SHARDS_MAX] = {0};
	int res;

	if (a->mode == ALG_INTER) {
		for (unsigned i = 0; i < r->nshards; i++) {
			res = table_filter(xs[i], keep_if_in_other, o);
			if (res < 0)
				return res;
			done += res;
		}
		return done;
	}
	for (unsigned j = 0; j < o->nshards; j++) {
		struct table_iter it;
		const uint8_t *k;
		size_t len;
		table_iter_start(o->shard[j], &it);
		while ((res = table_iter_next(&it, &k, &len)) == 1) {
			/* The other set's key bytes are shared memory: hashed
			 * and stored from one private copy, so a peer changing
			 * them between the two cannot make this set disagree
			 * with itself. */
			memcpy(a->key, k, len);
			k = a->key;
			uint64_t h = hash_bytes(r->seed, k, len);
			unsigned i = h & (r->nshards - 1);
			if (a->mode == ALG_UNION) {
				res = table_insert_h(xs[i], k, len, h);
			} else {
				res = table_remove_many_h(xs[i], k, len, h);
				removed[i] += res == 1;
				if (res == 0 && a->mode == ALG_SYMDIFF)
					res = table_insert_h(xs[i], k, len, h);
			}
			if (res < 0)
				return res;
			done += res;
		}
		if (res < 0)
			return res;
	}
	for (unsigned i = 0; i < r->nshards; i++) {
		res = removed[i] ? table_shrink(xs[i], removed[i]) : 0;
		if (res)
			return res;
	}
	return done;
}

static long long algebra(shset *s, shset *other, int mode)
{
	if (!s || !other)
		return -EINVAL;
	if (same_set(s, other)) {
		/* s | s = s & s = s; s - s = s ^ s = empty. */
		if (mode == ALG_UNION || mode == ALG_INTER)
			return 0;
		return locked_multi(s, do_clear, NULL, NULL);
	}
	struct two_arg a = {other, mode, malloc(SHSET_KEY_MAX)};
	if (!a.key)
		return -ENOMEM;
	int err = lock_two(s, other);
	if (err) {
		free(a.key);
		return err;
	}
	/* How many keys may change, to size fresh tables: the other's count
	 * only if its tables fit its file, and no more keys than the memory
	 * its file holds could store (32 bytes a slot); a peer holding only
	 * the other set must not make this one allocate. */
	uint64_t writes = 0;
	for (unsigned i = 0; i < other->r->nshards; i++) {
		long long n = table_count_locked(other->r->shard[i]);
		writes += n > 0 ? (uint64_t)n : 0;
	}
	struct stat ost;
	if (fstat(other->r->fd, &ost) < 0 || writes > (uint64_t)ost.st_blocks * 512 / 32)
		writes = 0; /* unsized: the log's room decides, E2BIG retries fresh */
	uint64_t expect[REGION_SHARDS_MAX];
	unsigned ns = s->r->nshards;
	for (unsigned i = 0; i < ns; i++)
		expect[i] = mode == ALG_INTER ? 0 : writes / ns + writes / (8 * ns);
	long long res = run_multi(s, do_two, &a, expect);
	unlock_two(s, other);
	if (res >= 0)
		fill_after_multi(s);
	free(a.key);
	give_back(s, res);
	return res;
}

long long shset_update(shset *s, shset *other)
{
	return algebra(s, other, ALG_UNION);
}

long long shset_intersection_update(shset *s, shset *other)
{
	return algebra(s, other, ALG_INTER);
}

long long shset_difference_update(shset *s, shset *other)
{
	return algebra(s, other, ALG_DIFF);
}

long long shset_symmetric_difference_update(shset *s, shset *other)
{
	return algebra(s, other, ALG_SYMDIFF);
}

enum { CMP_DISJOINT, CMP_SUBSET, CMP_EQUAL };

static int compare(shset *a, shset *b, int mode)
{
	if (!a || !b)
		return -EINVAL;
	if (same_set(a, b)) {
		if (mode != CMP_DISJOINT)
			return 1;
		long long n = shset_size(a);
		return n < 0 ? (int)n : n == 0;
	}
	int err = lock_two(a, b);
	if (err)
		return err;
	struct table_stats sa, sb;
	table_stats_shards(a->r, &sa);
	table_stats_shards(b->r, &sb);
	int res = 1;
	struct region *walk = a->r, *probe = b->r;
	if (mode == CMP_DISJOINT && sb.count < sa.count) {
		walk = b->r;
		probe = a->r;
	}
	if ((mode == CMP_SUBSET && sa.count > sb.count) ||
	    (mode == CMP_EQUAL && sa.count != sb.count)) {
		res = 0;
	} else {
		for (unsigned j = 0; j < walk->nshards && res == 1; j++) {
			struct table_iter it;
			const uint8_t *k;
			size_t len;
			int r;
			table_iter_start(walk->shard[j], &it);
			while ((r = table_iter_next(&it, &k, &len)) == 1) {
				int in = contains_locked(probe, k, len);
				if (in < 0) {
					res = in;
					break;
				}
				if (mode == CMP_DISJOINT ? in : !in) {
					res = 0;
					break;
				}
			}
			if (r < 0)
				res = r;
		}
	}
	unlock_two(a, b);
	return res;
}

int shset_isdisjoint(shset *a, shset *b)
{
	return compare(a, b, CMP_DISJOINT);
}

int shset_issubset(shset *a, shset *b)
{
	return compare(a, b, CMP_SUBSET);
}

int shset_equal(shset *a, shset *b)
{
	return compare(a, b, CMP_EQUAL);
}

/* --- checks and numbers -------------------------------------------------------- */

int shset_recover(shset *s)
{
	if (!s)
		return -EINVAL;
	int err = set_lock(s);
	if (err)
		return err;
	set_unlock(s);
	return 0;
}

int shset_verify(shset *s)
{
	if (!s)
		return -EINVAL;
	int err = set_lock(s);
	if (err)
		return err;
	for (unsigned i = 0; i < s->r->nshards && !err; i++)
		err = table_verify(s->r->shard[i]);
	set_unlock(s);
	return err;
}

int shset_stats(shset *s, struct shset_stats *out)
{
	struct table_stats ts;
	struct shset_stats full, *st = &full;

	if (!s || !out)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	table_stats_shards(s->r, &ts);
	/* Figures a peer wrote are reported only if the region could hold
	 * them; otherwise the caller gets them together with -EUCLEAN. */
	int bad = ts.count > ts.capacity || ts.tombstones > ts.capacity - ts.count ||
		  ts.capacity > ts.file_bytes / 32 || ts.heap_bytes > ts.file_bytes ||
		  ts.key_bytes > ts.heap_bytes || ts.arena_bytes > ts.heap_bytes;
	st->count = ts.count;
	st->capacity = ts.capacity;
	st->tombstones = ts.tombstones;
	st->load = ts.capacity ? (double)(ts.count + ts.tombstones) / (double)ts.capacity : 0;
	st->key_bytes = ts.key_bytes;
	st->heap_bytes = ts.heap_bytes;
	st->file_bytes = ts.file_bytes;
	struct stat fs;
	if (fstat(s->r->fd, &fs) == 0)
		st->mem_bytes = (uint64_t)fs.st_blocks * 512;
	st->bytes_per_key = ts.count ? (double)st->mem_bytes / (double)ts.count : 0;
	st->repairs = ts.repairs;
	st->resizes = ts.resizes;
	st->txns = ts.txns;
	snapshot_counters(&st->saves_io_uring, &st->saves_fallback);
	st->max_procs = s->r->nslots;
	struct shset_lease_slot *slots = region_slots(s->r);
	for (uint32_t i = 0; i < s->r->nslots; i++)
		if (__atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED) &&
		    shset_lease_slot_alive(s->r->lease, i) == 1)
			st->attached++;
	int err = table_lock_state_shards(s->r, &st->lock);
	memcpy(out, st, sizeof(*st));
	return err ? err : bad ? -EUCLEAN : 0;
}
