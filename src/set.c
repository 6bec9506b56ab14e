/* SPDX-License-Identifier: MIT */
/*
 * set.c - the public set operations, built on region, lock and table.
 *
 * Every mutation is: take the lock (repairing after a dead owner), run one
 * table transaction, commit or abort, release.  Readers (contains, size)
 * first try the lock-free path and fall back to the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "prim.h"
#include "lease.h"
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

/* Faults in, in region @dst, the extent that holds data in the source. */
static void prefault_extent(struct region *src, uint64_t off, uint64_t len, void *dst)
{
	(void)src;
	prefault(((struct region *)dst)->base + off, len);
}

uint64_t set_last_hold_ns(void)
{
	return __atomic_load_n(&last_hold_ns, __ATOMIC_RELAXED);
}

struct shset {
	struct region *r;
	void *txmem; /* transaction storage, used under the set's lock */
	dev_t dev;   /* the memfd's identity: what makes two handles one set */
	ino_t ino;
};

static int handle_init(struct shset *s)
{
	s->txmem = malloc(tx_size());
	return s->txmem ? 0 : -ENOMEM;
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

static int opts_to_region(const struct shset_opts *opts, struct region_opts *ro)
{
	memset(ro, 0, sizeof(*ro));
	ro->log_bytes = DEFAULT_LOG_BYTES;
	if (!opts)
		return 0;
	/* 0.1 is the first layout with a size: nothing is smaller. */
	if (opts->flags || (opts->size && opts->size < sizeof(struct shset_opts)))
		return -EINVAL;
	ro->max_size = opts->max_bytes;
	ro->nslots = opts->max_procs;
	if (opts->log_bytes)
		ro->log_bytes = opts->log_bytes < TX_MIN_LOG ? TX_MIN_LOG : opts->log_bytes;
	ro->name = opts->name;
	if (opts->key_type > SHSET_KEYS_INT)
		return -EINVAL;
	ro->key_type = opts->key_type;
	return 0;
}

static int create_region(struct shset **out, const struct region_opts *ro, uint64_t capacity)
{
	struct shset *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	err = handle_init(s);
	if (!err)
		err = region_create(&s->r, ro);
	if (!err) {
		err = table_init(s->r, capacity);
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
	err = handle_init(s);
	if (!err)
		err = region_attach(&s->r, fd, 0);
	if (!err && s->r->log_bytes < TX_MIN_LOG)
		err = -EUCLEAN;
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

void shset_close(shset *s)
{
	if (!s)
		return;
	region_close(s->r);
	free(s->txmem);
	free(s);
}

/* --- locking ----------------------------------------------------------------- */

static int set_lock(struct shset *s)
{
	struct region *r = s->r;
	int res = shset_lock_acquire(r->lock, r->lease);

	if (res < 0)
		return res;
	if (res == SHSET_LOCK_OWNER_DIED) {
		/* The dead owner's transaction is undone before anyone looks. */
		int err = tx_repair(r);
		if (err) {
			shset_lock_release(r->lock, r->lease);
			return err;
		}
		shset_lock_consistent(r->lock, r->lease);
	}
	return 0;
}

static void set_unlock(struct shset *s)
{
	shset_lock_release(s->r->lock, s->r->lease);
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

/* Both locks in (device, inode) order, so (a, b) and (b, a) never
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

/*
 * Runs @fn in one transaction of @s, lock held by the caller.  If the undo
 * log runs out (-E2BIG), the transaction is undone and run again on a
 * fresh table, where slot writes need no log.
 */
typedef long long (*tx_fn)(struct tx *x, void *arg);

static long long run_tx(struct shset *s, tx_fn fn, void *arg, uint64_t expect_writes)
{
	for (int fresh = 0; fresh < 2; fresh++) {
		int err;
		struct tx *x = tx_begin(s->r, s->txmem, &err);
		if (!x)
			return err;
		/* A fresh table costs a pass over the whole set: worth it when
		 * the log could not hold the batch and the set is no bigger
		 * than the batch.  A big set tries in place first (a resize
		 * in progress keeps moving a step at a time) and rebuilds
		 * only if the log runs out. */
		if (fresh ||
		    (expect_writes * 2 > tx_log_room(x) && table_tx_count(x) <= expect_writes)) {
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

static long long locked_tx(struct shset *s, tx_fn fn, void *arg, uint64_t expect_writes)
{
	int err = set_lock(s);

	if (err)
		return err;
	long long res = run_tx(s, fn, arg, expect_writes);
	set_unlock(s);
	return res;
}

/* --- single keys ------------------------------------------------------------- */

struct key_arg {
	const void *key;
	size_t len;
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
	return table_insert(x, k->key, k->len);
}

static long long do_remove(struct tx *x, void *arg)
{
	struct key_arg *k = arg;
	return table_remove(x, k->key, k->len);
}

int shset_add(shset *s, const void *key, size_t len)
{
	struct key_arg k = {key ? key : "", len};
	int err = key_ok(s, key, len);

	return err ? err : (int)locked_tx(s, do_add, &k, 1);
}

int shset_remove(shset *s, const void *key, size_t len)
{
	struct key_arg k = {key ? key : "", len};
	int err = key_ok(s, key, len);

	return err ? err : (int)locked_tx(s, do_remove, &k, 1);
}

/* Rounds of a reader's wait (each up to READ_WAIT_NS, 200 us) for a live
 * writer's transaction before it takes the lock: a time slice or two of a
 * writer switched out. */
#define READER_PATIENCE 25

/* After a lock-free read gave @res: 1 (having yielded the CPU) if it
 * should be tried again because a transaction outlasted the reader's wait
 * while its writer is alive (switched out, most likely) and the reader has
 * not waited *@rounds of READER_PATIENCE yet; 0 when the lock must decide:
 * a dead writer, or a long transaction (a big batch) waited for on it. */
static int wait_for_writer(struct shset *s, long long res, int *rounds)
{
	if (res != -EBUSY || *rounds >= READER_PATIENCE || !s->r->lease ||
	    !lease_holder_alive(s->r->lease, s->r->lock))
		return 0;
	++*rounds;
	sched_yield();
	return 1;
}

int shset_contains(shset *s, const void *key, size_t len)
{
	int err = key_ok(s, key, len);

	if (err)
		return err;
	if (!key)
		key = "";
	int res = table_contains_optimistic(s->r, key, len);
	/* Rather than queue for a switched-out writer's lock and hold it in
	 * turn, wait for the writer a while longer. */
	for (int rounds = 0; wait_for_writer(s, res, &rounds);)
		res = table_contains_optimistic(s->r, key, len);
	if (res != -EAGAIN && res != -EBUSY)
		return res;
	/* Writers kept the sequence moving, or one died with it odd: the
	 * lock waits for them, or takes over and repairs. */
	err = set_lock(s);
	if (err)
		return err;
	res = table_contains_locked(s->r, key, len);
	set_unlock(s);
	return res;
}

long long shset_size(shset *s)
{
	if (!s)
		return -EINVAL;
	long long n = table_count_optimistic(s->r);
	for (int rounds = 0; wait_for_writer(s, n, &rounds);)
		n = table_count_optimistic(s->r);
	if (n != -EAGAIN && n != -EBUSY)
		return n;
	int err = set_lock(s);
	if (err)
		return err;
	n = table_count_locked(s->r);
	set_unlock(s);
	return n;
}

/* Returns how many keys it removed. */
static long long do_clear(struct tx *x, void *arg)
{
	(void)arg;
	long long n = (long long)table_tx_count(x);
	int err = table_clear(x);
	return err ? err : n;
}

int shset_clear(shset *s)
{
	if (!s)
		return -EINVAL;
	long long res = locked_tx(s, do_clear, NULL, 0);
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
	return (int)locked_tx(s, do_pop, &p, 1);
}

/* --- batches ------------------------------------------------------------------ */

struct batch_arg {
	const void *const *keys;
	const size_t *lens;
	size_t n;
	int add;
};

static size_t batch_len(const struct batch_arg *b, size_t i)
{
	return b->lens ? b->lens[i] : strlen(b->keys[i]);
}

static long long do_batch(struct tx *x, void *arg)
{
	struct batch_arg *b = arg;
	long long done = 0;

	if (b->add && b->lens)
		return table_insert_many(x, b->keys, b->lens, b->n);
	for (size_t i = 0; i < b->n; i++) {
		const void *k = b->keys[i] ? b->keys[i] : "";
		int r = b->add ? table_insert(x, k, batch_len(b, i))
			       : table_remove(x, k, batch_len(b, i));
		if (r < 0)
			return r;
		done += r;
	}
	return done;
}

static long long batch(shset *s, const void *const *keys, const size_t *lens, size_t n, int add)
{
	struct batch_arg b = {keys, lens, n, add};

	if (!s || (!keys && n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!keys[i] && (!lens || lens[i]))
			return -EINVAL;
		if (keys[i] && batch_len(&b, i) > SHSET_KEY_MAX)
			return -EINVAL;
	}
	return locked_tx(s, do_batch, &b, n);
}

struct records_arg {
	const uint8_t *recs;
	size_t len, n;
};

static long long do_records(struct tx *x, void *arg)
{
	struct records_arg *a = arg;

	return table_insert_records(x, a->recs, a->len, a->n);
}

long long set_load_records(shset *s, const uint8_t *recs, size_t len, size_t n, uint64_t capacity)
{
	struct records_arg a = {recs, len, n};
	/* table_init's sizing: @capacity keys below the 3/4 load limit. */
	uint64_t expect = (capacity * 2 + 2) / 3;

	return locked_tx(s, do_records, &a, expect > n ? expect : n);
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
	err = create_region(&c, &ro, 0);
	if (err)
		return err;
	/* Fault the destination in before taking the lock, so the lock is
	 * held only for the memcpy itself.  The size is a racy guess; the
	 * copy grows the file further under the lock if it must. */
	struct table_stats ts;
	table_stats(s->r, &ts);
	uint64_t guess = c->r->heap_off + ts.heap_bytes;
	region_check(s->r, 0, guess); /* learns of growth by other processes */
	if (guess > s->r->avail)      /* a scribbled brk must not make us fault in GiBs */
		guess = s->r->avail;
	if (guess > c->r->heap_off && guess <= c->r->map_size && region_grow(c->r, guess) == 0) {
		/* Only where the source has data: its holes stay holes. */
		region_extents(s->r, c->r->heap_off, guess, prefault_extent, c->r);
		region_prefetch(s->r, s->r->heap_off, guess);
	}
	err = set_lock(s);
	if (!err) {
		uint64_t t0 = prim_mono_ns();
		err = table_copy_into(s->r, c->r);
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

int set_collect(shset *s, size_t headroom, uint8_t **bufp, size_t *lenp, uint64_t *count,
		uint64_t *key_bytes)
{
	struct table_stats ts;
	size_t cap, need;
	uint8_t *buf = NULL;
	int err = 0;

	*bufp = NULL;
	/* The records of honest keys take no more than twice the memory
	 * their slots and blocks occupy, so the buffer is bounded by the
	 * memory the file really holds (st_blocks), not by counts or sizes a
	 * peer can write: a sparse file grown to max_bytes holds nothing. */
	struct stat fst;
	if (fstat(s->r->fd, &fst) < 0)
		return -errno;
	uint64_t limit = 2 * (uint64_t)fst.st_blocks * 512 + 4096;
	table_stats(s->r, &ts);
	need = (size_t)(ts.count * 4 + ts.key_bytes);
	if (need > 2 * ts.heap_bytes + 4096) /* racy or scribbled: the lock decides */
		need = 2 * ts.heap_bytes + 4096;
	if (need > limit)
		need = limit;
	for (int tries = 0; tries < 8; tries++) {
		/* Racy estimate plus slack; allocated and faulted in unlocked. */
		cap = need + need / 16 + 4096;
		uint8_t *nb = realloc(buf, headroom + cap);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		prefault(buf, headroom + cap);
		region_check(s->r, 0, s->r->heap_off + ts.heap_bytes);
		region_prefetch(s->r, s->r->heap_off, s->r->heap_off + ts.heap_bytes);
		err = set_lock(s);
		if (err)
			break;
		uint64_t t0 = prim_mono_ns();
		err = table_collect(s->r, buf + headroom, cap, lenp, count, key_bytes);
		set_unlock(s);
		__atomic_store_n(&last_hold_ns, prim_mono_ns() - t0, __ATOMIC_RELAXED);
		if (err != -ENOBUFS)
			break;
		need = *lenp; /* grew meanwhile: try again with the size it has now */
		if (fstat(s->r->fd, &fst) < 0) {
			err = -errno;
			break;
		}
		limit = 2 * (uint64_t)fst.st_blocks * 512 + 4096;
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
	for (size_t at = 0; at < len && !res;) {
		uint32_t l;
		memcpy(&l, buf + at, 4);
		res = fn(buf + at + 4, l, arg);
		at += 4 + (size_t)l;
	}
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
	return table_contains_locked(arg, k, len);
}

static long long do_two(struct tx *x, void *arg)
{
	struct two_arg *a = arg;
	struct region *o = a->other->r;
	struct table_iter it;
	const uint8_t *k;
	size_t len;
	long long done = 0;
	int r;

	if (a->mode == ALG_INTER) {
		r = table_filter(x, keep_if_in_other, o);
		return r;
	}
	table_iter_start(o, &it);
	while ((r = table_iter_next(&it, &k, &len)) == 1) {
		int res;
		/* The other set's key bytes are shared memory: hashed and
		 * stored from one private copy, so a peer changing them
		 * between the two cannot make this set disagree with itself. */
		memcpy(a->key, k, len);
		k = a->key;
		if (a->mode == ALG_UNION) {
			res = table_insert(x, k, len);
		} else if (a->mode == ALG_DIFF) {
			res = table_remove(x, k, len);
		} else {
			res = table_remove(x, k, len);
			if (res == 0)
				res = table_insert(x, k, len);
		}
		if (res < 0)
			return res;
		done += res;
	}
	return r < 0 ? r : done;
}

static long long algebra(shset *s, shset *other, int mode)
{
	if (!s || !other)
		return -EINVAL;
	if (same_set(s, other)) {
		/* s | s = s & s = s; s - s = s ^ s = empty. */
		if (mode == ALG_UNION || mode == ALG_INTER)
			return 0;
		return locked_tx(s, do_clear, NULL, 0);
	}
	struct two_arg a = {other, mode, malloc(SHSET_KEY_MAX)};
	if (!a.key)
		return -ENOMEM;
	int err = lock_two(s, other);
	if (err) {
		free(a.key);
		return err;
	}
	/* How many keys may change, to size a fresh table: the other's count
	 * only if its table fits its file, and no more keys than the memory
	 * its file holds could store (32 bytes a slot); a peer holding only
	 * the other set must not make this one allocate. */
	long long n = table_count_locked(other->r);
	struct stat ost;
	uint64_t writes = n > 0 ? (uint64_t)n : 0;
	if (fstat(other->r->fd, &ost) < 0 || writes > (uint64_t)ost.st_blocks * 512 / 32)
		writes = 0; /* unsized: the log's room decides, E2BIG retries fresh */
	long long res = run_tx(s, do_two, &a, mode == ALG_INTER ? 0 : writes);
	unlock_two(s, other);
	free(a.key);
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
	table_stats(a->r, &sa);
	table_stats(b->r, &sb);
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
		struct table_iter it;
		const uint8_t *k;
		size_t len;
		int r;
		table_iter_start(walk, &it);
		while ((r = table_iter_next(&it, &k, &len)) == 1) {
			int in = table_contains_locked(probe, k, len);
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
	err = table_verify(s->r);
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
	table_stats(s->r, &ts);
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
	int err = shset_lock_state(s->r->lock, &st->lock);
	memcpy(out, st, sizeof(*st));
	return err ? err : bad ? -EUCLEAN : 0;
}
