/* SPDX-License-Identifier: MIT */
/*
 * test_table.c - the hash table proper: growth, shrinking and tombstone
 * shedding by incremental resizing, the punch list of freed tables, and
 * what every other operation does while a resize is in progress.
 *
 * Each set is a real memfd set.  The test attaches to it a second time
 * (struct region) to read the state words (old_tdesc, moved, punch_head,
 * ...) and to run transactions of its own (tx_begin, table_insert, ...,
 * tx_abort) where the public API cannot reach.  Content is checked exactly
 * against a private model: a bitmap over a universe of numbered keys,
 * short ones stored inline in the slot and long ones in the arena.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "alloc.h"
#include "hash.h"
#include "keys.h"
#include "region.h"
#include "set.h"
#include "shset.h"
#include "table.h"
#include "tx.h"

#define SLOT 32u
/* table.c: a resize step moves MOVE_STEP slots of the old table, times how
 * many times bigger it is than the new one (at most 8). */
#define MOVE_STEP 16u
#define MOVE_MAX  (MOVE_STEP * 8)

/* --- keys: id -> bytes; odd ids are long (arena) keys --------------------- */

#define KEY_BUF 128

static size_t mkkey(uint32_t id, uint8_t *buf)
{
	uint64_t s = id * 0x9e3779b97f4a7c15ull + 7;
	size_t len = (id & 1) ? 21 + (id >> 1) % 60 : 4 + (id >> 1) % 17;

	memcpy(buf, &id, 4);
	for (size_t j = 4; j < len; j++)
		buf[j] = (uint8_t)rng_next(&s);
	return len;
}

/* The id of a key made by mkkey, or -1. */
static long long key_id(const void *k, size_t len)
{
	uint8_t buf[KEY_BUF];
	uint32_t id;

	if (len < 4)
		return -1;
	memcpy(&id, k, 4);
	if (mkkey(id, buf) != len || memcmp(buf, k, len))
		return -1;
	return id;
}

/* An id of the kind asked for: inline (0), arena (1), or alternating (2). */
static uint32_t id_of(uint32_t n, int kind)
{
	return kind == 2 ? n : n * 2 + (uint32_t)kind;
}

/* --- the model ------------------------------------------------------------ */

struct model {
	uint8_t *in;
	uint32_t n; /* ids [0, n) */
	uint64_t count;
};

static void model_init(struct model *m, uint32_t n)
{
	m->in = calloc(n, 1);
	ck_assert_ptr_nonnull(m->in);
	m->n = n;
	m->count = 0;
}

static void model_free(struct model *m)
{
	free(m->in);
	m->in = NULL;
}

static int model_add(struct model *m, uint32_t id)
{
	ck_assert_uint_lt(id, m->n);
	if (m->in[id])
		return 0;
	m->in[id] = 1;
	m->count++;
	return 1;
}

static int model_del(struct model *m, uint32_t id)
{
	ck_assert_uint_lt(id, m->n);
	if (!m->in[id])
		return 0;
	m->in[id] = 0;
	m->count--;
	return 1;
}

struct content {
	const struct model *m;
	uint8_t *seen;
	uint64_t n, bad;
};

static int content_visit(const void *k, size_t len, void *arg)
{
	struct content *c = arg;
	long long id = key_id(k, len);

	if (id < 0 || id >= c->m->n || !c->m->in[id] || c->seen[id])
		c->bad++;
	else
		c->seen[id] = 1;
	c->n++;
	return 0;
}

/* The set holds exactly the model's keys, each once. */
static void assert_content(shset *s, const struct model *m)
{
	struct content c = {m, calloc(m->n, 1), 0, 0};

	ck_assert_ptr_nonnull(c.seen);
	ck_assert_int_eq(shset_foreach(s, content_visit, &c), 0);
	free(c.seen);
	ck_assert_msg(c.bad == 0, "%llu keys not in the model or seen twice",
		      (unsigned long long)c.bad);
	ck_assert_uint_eq(c.n, m->count);
	ck_assert_int_eq(shset_size(s), (long long)m->count);
}

/* --- a set under test ----------------------------------------------------- */

struct ts {
	shset *s;
	struct region *r; /* the same memfd, attached again */
	void *txmem;
};

static void ts_wrap(struct ts *t, shset *s)
{
	t->s = s;
	ck_assert_int_eq(region_attach(&t->r, shset_fd(s), 0), 0);
	t->txmem = malloc(tx_size());
	ck_assert_ptr_nonnull(t->txmem);
}

/* One shard: these tests look at the table, its state and its log. */
static struct shset_opts one_shard(const struct shset_opts *o)
{
	struct shset_opts one = o ? *o : (struct shset_opts){0};

	one.size = sizeof(one);
	one.shards = 1;
	return one;
}

static void ts_open(struct ts *t, const struct shset_opts *o)
{
	shset *s;
	struct shset_opts one = one_shard(o);

	ck_assert_int_eq(shset_create(&s, &one), 0);
	ts_wrap(t, s);
}

static void ts_close(struct ts *t)
{
	region_close(t->r);
	shset_close(t->s);
	free(t->txmem);
}

/* The end of a test against a model: the set holds exactly the model's
 * keys and passes its own check. */
static void close_checked(struct ts *t, struct model *m)
{
	assert_content(t->s, m);
	ck_assert_int_eq(shset_verify(t->s), 0);
	model_free(m);
	ts_close(t);
}

static struct tx_state *st(const struct ts *t)
{
	return tx_state(t->r);
}

static uint64_t word(const uint64_t *w)
{
	return __atomic_load_n(w, __ATOMIC_RELAXED);
}

static uint64_t cap_of(uint64_t tdesc)
{
	return tdesc ? table_code_cap((unsigned)(tdesc >> 56)) : 0;
}

static uint64_t off_of(uint64_t tdesc)
{
	return tdesc & ((1ull << 56) - 1);
}

static uint64_t old_cap(const struct ts *t)
{
	return cap_of(word(&st(t)->old_tdesc));
}

static uint64_t capacity(const struct ts *t)
{
	struct shset_stats ss;

	ck_assert_int_eq(shset_stats(t->s, &ss), 0);
	return ss.capacity;
}

/* The bytes @s's file holds, once its filler thread has faulted in all
 * it was handed (it works on after the writes that handed it a table). */
static uint64_t mem_bytes(shset *s)
{
	struct stat sb;

	set_filler_settle(s);
	ck_assert_int_eq(fstat(shset_fd(s), &sb), 0);
	return (uint64_t)sb.st_blocks * 512;
}

/* The live slots of the old table that have not been moved yet. */
static uint64_t live_in_old(const struct ts *t)
{
	uint64_t od = word(&st(t)->old_tdesc), moved = word(&st(t)->moved), n = 0;
	const uint8_t *o = t->r->base + off_of(od);

	for (uint64_t i = moved; i < cap_of(od); i++)
		n += (word((const uint64_t *)(o + i * SLOT)) & 3) == 2;
	return n;
}

/* The id of the key in slot @i of table @tdesc, or -1 if it holds none. */
static long long slot_id(const struct ts *t, uint64_t tdesc, uint64_t i)
{
	const uint8_t *s = t->r->base + off_of(tdesc) + i * SLOT;
	uint32_t len;

	if ((word((const uint64_t *)s) & 3) != 2)
		return -1;
	memcpy(&len, s + 8, 4);
	if (len > KEY_BUF)
		return -1;
	if (len <= 20)
		return key_id(s + 12, len);
	uint64_t blk;
	memcpy(&blk, s + 16, 8);
	return key_id(t->r->base + blk, len);
}

/* Locks the set for a transaction of the test's own. */
static struct tx *tx_open(struct ts *t)
{
	int err;

	ck_assert_int_eq(shset_lock_acquire(t->r->lock, t->r->lease), 0);
	struct tx *x = tx_begin(t->r, t->txmem, &err);
	ck_assert_msg(x != NULL, "tx_begin: %d", err);
	return x;
}

static void tx_close(struct ts *t)
{
	ck_assert_int_eq(shset_lock_release(t->r->lock, t->r->lease), 0);
}

static int add_id(struct ts *t, struct model *m, uint32_t id)
{
	uint8_t k[KEY_BUF];
	int r = shset_add(t->s, k, mkkey(id, k));

	ck_assert_int_eq(r, model_add(m, id));
	return r;
}

static int remove_id(struct ts *t, struct model *m, uint32_t id)
{
	uint8_t k[KEY_BUF];
	int r = shset_remove(t->s, k, mkkey(id, k));

	ck_assert_int_eq(r, model_del(m, id));
	return r;
}

static int has_id(shset *s, uint32_t id)
{
	uint8_t k[KEY_BUF];

	return shset_contains(s, k, mkkey(id, k));
}

/*
 * Verification while a resize is in progress: after every operation while
 * the table being drained has at most 2^@every_log2 slots, else at eight
 * points of each resize (verify walks both tables).
 */
struct sampler {
	unsigned every_log2;
	uint64_t old, mark;
	uint64_t verifies, resizes;
};

static void sample_verify(struct ts *t, struct sampler *sp)
{
	uint64_t od = word(&st(t)->old_tdesc), moved = word(&st(t)->moved);

	if (!od)
		return;
	if (od != sp->old) {
		sp->old = od;
		sp->mark = 0;
		sp->resizes++;
	}
	if (cap_of(od) > (1ull << sp->every_log2)) {
		if (moved < sp->mark)
			return;
		sp->mark = moved + cap_of(od) / 8;
	}
	ck_assert_int_eq(shset_verify(t->s), 0);
	sp->verifies++;
}

/* Adds new keys (ids from *@next, of @kind) until a resize of a table of
 * at least 2^@l2 slots is between a quarter and three quarters done. */
static void to_mid_resize(struct ts *t, struct model *m, uint32_t *next, int kind, unsigned l2)
{
	for (int n = 0;; n++) {
		uint64_t oc = old_cap(t), moved = word(&st(t)->moved);
		if (oc >= (1ull << l2) && moved >= oc / 4 && moved <= oc * 3 / 4)
			return;
		ck_assert_int_lt(n, 4000000);
		ck_assert_int_eq(add_id(t, m, id_of((*next)++, kind)), 1);
	}
}

/* Adds new keys until a resize from a table of at least 2^@l2 slots
 * completes; returns the table it drained (now freed). */
static uint64_t to_resize_done(struct ts *t, struct model *m, uint32_t *next, int kind, unsigned l2)
{
	uint64_t od = word(&st(t)->old_tdesc);

	for (int n = 0;; n++) {
		ck_assert_int_lt(n, 4000000);
		ck_assert_int_eq(add_id(t, m, id_of((*next)++, kind)), 1);
		uint64_t now = word(&st(t)->old_tdesc);
		if (od && now != od && cap_of(od) >= (1ull << l2))
			return od;
		od = now;
	}
}

/* While the set grows: removes @n keys still in the old table (beyond the
 * next steps) and @n already moved, making tombstones in both tables. */
static void remove_old_and_moved(struct ts *t, struct model *m, unsigned n)
{
	uint64_t od = word(&st(t)->old_tdesc), moved = word(&st(t)->moved);
	uint64_t ids[2][64];
	unsigned got[2] = {0, 0};

	ck_assert_uint_le(n, 64);
	for (uint64_t i = 0; i < cap_of(od); i++) {
		int side = i >= moved + (2 * n + 2) * MOVE_STEP;
		long long id = slot_id(t, od, i);
		if ((i < moved || side) && id >= 0 && m->in[id] && got[side] < n)
			ids[side][got[side]++] = (uint64_t)id;
	}
	ck_assert_uint_eq(got[0], n);
	ck_assert_uint_eq(got[1], n);
	for (unsigned side = 0; side < 2; side++)
		for (unsigned i = 0; i < n; i++)
			ck_assert_int_eq(remove_id(t, m, (uint32_t)ids[side][i]), 1);
	ck_assert_uint_eq(word(&st(t)->old_tdesc), od);
}

/* --- growth --------------------------------------------------------------- */

/* Every key added so far present, and a few never added absent, with keys
 * both in the old table above `moved` and already moved. */
static void check_mid_resize(struct ts *t, uint32_t added, int kind)
{
	uint64_t in_old = live_in_old(t), count = word(&st(t)->count);

	ck_assert_uint_gt(in_old, 0);
	ck_assert_uint_lt(in_old, count);
	for (uint32_t n = 0; n < added; n++)
		ck_assert_msg(has_id(t->s, id_of(n, kind)) == 1, "key %u lost mid-resize", n);
	for (uint32_t n = added; n < added + 1000; n++)
		ck_assert_int_eq(has_id(t->s, id_of(n, kind)), 0);
}

START_TEST(growth_one_by_one)
{
	int kind = _i; /* 0: inline keys, 1: arena keys */
	uint32_t total = kind ? 200000 : 300000;
	struct ts t;
	struct model m;
	struct sampler sp = {.every_log2 = 14};
	uint64_t checked_old = 0, mids = 0, cap = 0;

	ts_open(&t, NULL);
	model_init(&m, id_of(total + 1000, kind) + 2);
	for (uint32_t n = 0; n < total; n++) {
		ck_assert_int_eq(add_id(&t, &m, id_of(n, kind)), 1);
		sample_verify(&t, &sp);
		uint64_t oc = old_cap(&t);
		if (oc >= 4096 && oc != checked_old && word(&st(&t)->moved) >= oc / 2) {
			checked_old = oc;
			check_mid_resize(&t, n + 1, kind);
			mids++;
		}
		uint64_t c = cap_of(word(&st(&t)->tdesc));
		ck_assert_uint_ge(c, cap); /* growing never shrinks */
		ck_assert_uint_le((n + 1) * 4, c * 3);
		/* A quarter-step capacity 4/3 to 3/2 times the last (not
		 * 2): the new table is at least half full. */
		if (c != cap && cap) {
			ck_assert_uint_ge(c * 3, cap * 4);
			ck_assert_uint_le(c * 2, cap * 3);
			ck_assert_uint_ge((n + 1) * 2, c);
		}
		cap = c;
	}
	/* 16 slots to 524,288 (inline) or 393,216: every resize sampled. */
	ck_assert_uint_ge(sp.resizes, 28);
	ck_assert_uint_ge(mids, 6);
	ck_assert_uint_ge(sp.verifies, 500);
	close_checked(&t, &m);
}
END_TEST

/* Another process looks keys up without the lock while this one grows the
 * set through many resizes: a key added before never reads as absent, one
 * never added never as present. */
START_TEST(lookups_race_resizes)
{
	const uint32_t base = 20000, more = 250000;
	struct ts t;
	struct model m;
	volatile uint64_t *stop =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne((void *)stop, MAP_FAILED);
	*stop = 0;
	ts_open(&t, NULL);
	model_init(&m, id_of(base + more, 2) + 1);
	for (uint32_t n = 0; n < base; n++)
		add_id(&t, &m, id_of(n, 2));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		shset *c;
		alarm((unsigned)(60 * test_scale()));
		if (shset_attach_fd(&c, shset_fd(t.s)))
			_exit(10);
		uint64_t rounds = 0;
		for (uint32_t n = 0; !__atomic_load_n(stop, __ATOMIC_RELAXED); n = (n + 1) % base) {
			if (has_id(c, id_of(n, 2)) != 1)
				_exit(11);
			if (has_id(c, id_of(base + more + 1 + n % 7, 2) | 1u << 31) != 0)
				_exit(12);
			rounds++;
		}
		shset_close(c);
		_exit(rounds > base ? 0 : 13);
	}
	uint64_t resizes = 0, od = 0;
	for (uint32_t n = base; n < base + more; n++) {
		add_id(&t, &m, id_of(n, 2));
		uint64_t now = word(&st(&t)->old_tdesc);
		resizes += now && now != od;
		od = now;
	}
	usleep(100000);
	*stop = 1;
	int status = wait_status(pid);
	ck_assert_msg(status == 0, "reader: status %d (11: a key missed, 12: a key invented)",
		      status);
	ck_assert_uint_ge(resizes, 4);
	ck_assert_int_eq(shset_verify(t.s), 0);
	munmap((void *)stop, 4096);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* --- removes, pops and re-adds while a resize is in progress -------------- */

/* Removes and re-adds a key that is still in the old table (and stays there
 * through the step the remove makes), then one already moved. */
static int poke_old_and_moved(struct ts *t, struct model *m)
{
	uint64_t od = word(&st(t)->old_tdesc), moved = word(&st(t)->moved);
	uint64_t oc = cap_of(od);
	int done = 0;

	for (uint64_t i = moved + 2 * MOVE_MAX; i < oc; i++) {
		long long id = slot_id(t, od, i);
		if (id < 0)
			continue;
		ck_assert_int_eq(m->in[id], 1);
		ck_assert_int_eq(remove_id(t, m, (uint32_t)id), 1);
		ck_assert_int_eq(has_id(t->s, (uint32_t)id), 0);
		ck_assert_int_eq(shset_verify(t->s), 0);
		ck_assert_int_eq(add_id(t, m, (uint32_t)id), 1);
		ck_assert_int_eq(has_id(t->s, (uint32_t)id), 1);
		done |= 1;
		break;
	}
	od = word(&st(t)->old_tdesc);
	moved = word(&st(t)->moved);
	for (uint64_t i = 0; od && i < moved; i++) {
		long long id = slot_id(t, od, i); /* moved slots keep their bytes */
		if (id < 0 || !m->in[id])
			continue;
		ck_assert_int_eq(remove_id(t, m, (uint32_t)id), 1);
		ck_assert_int_eq(has_id(t->s, (uint32_t)id), 0);
		ck_assert_int_eq(add_id(t, m, (uint32_t)id), 1);
		done |= 2;
		break;
	}
	return done;
}

START_TEST(churn_during_resizes)
{
	const uint32_t universe = 80000;
	struct ts t;
	struct model m;
	struct sampler sp = {.every_log2 = 12};
	uint64_t rng = 42, pops = 0, pokes = 0, contents = 0, shrinks = 0, grows = 0;
	uint64_t content_old = 0, last_old = 0, shrink_starts = 0, rebuild_starts = 0;
	uint8_t buf[KEY_BUF];

	ts_open(&t, NULL);
	model_init(&m, universe);
	/* Grow to ~50,000 keys, shrink to ~1,000, twice. */
	for (int phase = 0; phase < 4; phase++) {
		int growing = !(phase & 1);
		uint64_t prev_cap = capacity(&t);
		for (int op = 0; op < 120000; op++) {
			if (growing ? m.count >= 50000 : m.count <= 1000)
				break;
			uint32_t id = (uint32_t)(rng_next(&rng) % universe);
			unsigned dice = (unsigned)(rng_next(&rng) % 100);
			if (dice < (growing ? 70u : 25u)) {
				add_id(&t, &m, id);
			} else if (dice < 97) {
				/* Removing mostly keys that are there. */
				for (int k = 0; k < 64 && !m.in[id]; k++)
					id = (uint32_t)(rng_next(&rng) % universe);
				remove_id(&t, &m, id);
			} else {
				size_t len;
				int r = shset_pop(t.s, buf, sizeof(buf), &len);
				ck_assert_int_eq(r, m.count > 0);
				if (r) {
					long long pid = key_id(buf, len);
					ck_assert_int_ge(pid, 0);
					ck_assert_int_eq(model_del(&m, (uint32_t)pid), 1);
					pops++;
				}
			}
			sample_verify(&t, &sp);
			uint64_t oc = old_cap(&t);
			if (oc >= 1024 && op % 97 == 0 &&
			    word(&st(&t)->moved) + 3 * MOVE_MAX < oc) {
				if (poke_old_and_moved(&t, &m) == 3)
					pokes++;
				ck_assert_int_eq(shset_verify(t.s), 0);
			}
			uint64_t od = word(&st(&t)->old_tdesc), n = word(&st(&t)->count);
			if (od && od != last_old && cap_of(od) >= 1024 &&
			    n * 32 <= cap_of(od) * 3) {
				/* A shrink (at 3/32 full), as it starts: 4 to 8
				 * times smaller. */
				ck_assert_uint_le(capacity(&t) * 4, cap_of(od));
				ck_assert_uint_ge(capacity(&t) * 8, cap_of(od));
				shrink_starts++;
			} else if (od && od != last_old && cap_of(od) >= 1024 &&
				   capacity(&t) < cap_of(od)) {
				/* Else smaller only if tombstones filled it first
				 * (which comes first depends on the set's random
				 * hash seed): rebuilt at half load for the keys it
				 * has, the add that filled it included. */
				ck_assert_uint_eq(capacity(&t), table_code_cap(table_code_for(n)));
				rebuild_starts++;
			}
			last_old = od;
			if (oc >= 512 && od != content_old && word(&st(&t)->moved) >= oc / 2) {
				/* Once in the middle of each resize. */
				content_old = od;
				assert_content(t.s, &m);
				contents++;
			}
		}
		assert_content(t.s, &m);
		uint64_t c = capacity(&t);
		if (growing) {
			ck_assert_uint_gt(c, prev_cap);
			grows++;
		} else {
			/* Each shrink is checked as it starts (above). */
			ck_assert_uint_le(c * 4, prev_cap);
			shrinks++;
		}
	}
	ck_assert_uint_eq(grows, 2);
	ck_assert_uint_eq(shrinks, 2);
	/* At least one in each shrinking phase (each ends 4 times smaller). */
	ck_assert_uint_ge(shrink_starts + rebuild_starts, 2);
	ck_assert_uint_gt(pops, 100);
	ck_assert_uint_gt(pokes, 20);
	ck_assert_uint_gt(contents, 5);
	ck_assert_uint_ge(sp.resizes, 16);
	ck_assert_int_eq(shset_verify(t.s), 0);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* Churn at a steady size (the oldest key removed, a new one added) fills
 * the table with tombstones, not keys.  A rebuild that causes, while the
 * keys would fit the table 9/16 full, is sized at half load as before the
 * 9/16 growth sizing: at 9/16 such rebuilds would come twice as often. */
START_TEST(churn_rebuilds_at_half_load)
{
	const uint32_t keep = 9000, pairs = 20 * keep;
	struct ts t;
	struct model m;
	uint64_t last_old = 0, rebuilds = 0, grows = 0;

	ts_open(&t, NULL);
	model_init(&m, keep + pairs + 1);
	for (uint32_t n = 0; n < keep; n++)
		ck_assert_int_eq(add_id(&t, &m, n), 1);
	for (uint32_t n = 0; n < pairs; n++) {
		ck_assert_int_eq(remove_id(&t, &m, n), 1);
		uint64_t count = word(&st(&t)->count), cap0 = capacity(&t);
		ck_assert_int_eq(add_id(&t, &m, keep + n), 1);
		uint64_t od = word(&st(&t)->old_tdesc);
		if (od && od != last_old) {
			/* This add started a resize. */
			ck_assert_uint_eq(cap_of(od), cap0);
			if (count * 16 <= cap0 * 9) {
				ck_assert_msg(capacity(&t) >= 2 * (count + 1),
					      "%llu keys in %llu slots rebuilt into %llu",
					      (unsigned long long)count, (unsigned long long)cap0,
					      (unsigned long long)capacity(&t));
				rebuilds++;
			} else {
				grows++;
			}
		}
		last_old = od;
	}
	/* 9,000 keys: 12,288 slots, grown once to 16,384, then rebuilt into
	 * 20,480 every few thousand pairs. */
	ck_assert_uint_ge(grows, 1);
	ck_assert_uint_ge(rebuilds, 5);
	close_checked(&t, &m);
}
END_TEST

/* --- whole-set operations while a resize is in progress ------------------- */

START_TEST(foreach_and_copy_mid_resize)
{
	struct ts t, c;
	struct model m, mc;
	uint32_t next = 0;
	shset *cs;

	ts_open(&t, NULL);
	model_init(&m, 400000);
	to_mid_resize(&t, &m, &next, 2, 14);
	uint64_t od = word(&st(&t)->old_tdesc), moved = word(&st(&t)->moved);
	ck_assert_uint_gt(live_in_old(&t), 0);
	assert_content(t.s, &m);

	ck_assert_int_eq(shset_copy(t.s, &cs), 0);
	ts_wrap(&c, cs);
	/* The copy is the same state, resize and all. */
	ck_assert_uint_eq(word(&st(&c)->old_tdesc), od);
	ck_assert_uint_eq(word(&st(&c)->moved), moved);
	ck_assert_int_eq(shset_verify(c.s), 0);
	assert_content(c.s, &m);
	ck_assert_int_eq(shset_equal(t.s, c.s), 1);

	/* Both finish their resize independently, with different keys. */
	model_init(&mc, 400000);
	memcpy(mc.in, m.in, m.n);
	mc.count = m.count;
	struct sampler s1 = {.every_log2 = 0}, s2 = {.every_log2 = 0};
	for (uint32_t n = 0; n < 20000; n++) {
		ck_assert_int_eq(add_id(&t, &m, id_of(next + n, 2)), 1);
		ck_assert_int_eq(add_id(&c, &mc, id_of(next + 20000 + n, 2)), 1);
		if (n % 3 == 0 && n < next)
			ck_assert_int_eq(remove_id(&c, &mc, id_of(n, 2)), 1);
		sample_verify(&t, &s1);
		sample_verify(&c, &s2);
	}
	ck_assert_uint_ne(word(&st(&t)->old_tdesc), od);
	assert_content(t.s, &m);
	assert_content(c.s, &mc);
	ck_assert_int_eq(shset_equal(t.s, c.s), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	ck_assert_int_eq(shset_verify(c.s), 0);
	model_free(&mc);
	model_free(&m);
	ts_close(&c);
	ts_close(&t);
}
END_TEST

START_TEST(save_load_mid_resize)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;
	char path[64];
	shset *l;

	snprintf(path, sizeof(path), "/tmp/shset-table-%d.shs", (int)getpid());
	ts_open(&t, NULL);
	model_init(&m, 200000);
	to_mid_resize(&t, &m, &next, 2, 14);
	/* Tombstones in both tables. */
	remove_old_and_moved(&t, &m, 20);
	ck_assert_int_eq(shset_save(t.s, path), 0);
	ck_assert_int_eq(shset_load(&l, path, NULL), 0);
	unlink(path);
	ck_assert_int_eq(shset_verify(l), 0);
	assert_content(l, &m);
	ck_assert_int_eq(shset_equal(t.s, l), 1);
	shset_close(l);
	ck_assert_int_eq(shset_verify(t.s), 0);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* s OP= other, with both sets in the middle of a resize. */
START_TEST(algebra_mid_resize)
{
	int mode = _i;
	struct ts a, b;
	struct model ma, mb;
	uint32_t na = 0, nb = 0;

	ts_open(&a, NULL);
	ts_open(&b, NULL);
	model_init(&ma, 200000);
	model_init(&mb, 200000);
	/* a: ids 0.., b: ids from 6000 on, so they overlap. */
	to_mid_resize(&a, &ma, &na, 2, 13);
	nb = 6000;
	to_mid_resize(&b, &mb, &nb, 2, 13);
	ck_assert_uint_gt(live_in_old(&a), 0);
	ck_assert_uint_gt(live_in_old(&b), 0);

	long long expect = 0;
	for (uint32_t id = 0; id < ma.n; id++) {
		int ia = ma.in[id], ib = mb.in[id];
		switch (mode) {
		case 0: /* update */
			if (ib && !ia) {
				model_add(&ma, id);
				expect++;
			}
			break;
		case 1: /* intersection_update */
			if (ia && !ib) {
				model_del(&ma, id);
				expect++;
			}
			break;
		case 2: /* difference_update */
			if (ia && ib) {
				model_del(&ma, id);
				expect++;
			}
			break;
		default: /* symmetric_difference_update */
			if (ib) {
				if (ia)
					model_del(&ma, id);
				else
					model_add(&ma, id);
				expect++;
			}
		}
	}
	ck_assert_int_gt(expect, 0);
	long long r = mode == 0	  ? shset_update(a.s, b.s)
		      : mode == 1 ? shset_intersection_update(a.s, b.s)
		      : mode == 2 ? shset_difference_update(a.s, b.s)
				  : shset_symmetric_difference_update(a.s, b.s);
	ck_assert_int_eq(r, expect);
	ck_assert_int_eq(shset_verify(a.s), 0);
	ck_assert_int_eq(shset_verify(b.s), 0);
	assert_content(a.s, &ma);
	assert_content(b.s, &mb);
	/* And both keep working. */
	struct sampler sa = {.every_log2 = 0};
	for (uint32_t n = 0; n < 3000; n++) {
		add_id(&a, &ma, id_of(100000 + n, 2));
		remove_id(&a, &ma, id_of(n, 2));
		sample_verify(&a, &sa);
	}
	assert_content(a.s, &ma);
	model_free(&ma);
	model_free(&mb);
	ts_close(&a);
	ts_close(&b);
}
END_TEST

/* A batch (500 keys already there, 10 twice) mid-resize: 3000 keys with a
 * 64 KiB log rebuild on a fresh table (_i 0); with the default log they are
 * inserted in place and their steps move keys (_i 1), and 6000 are
 * inserted in place in the order of their home slots (_i 2).  Then a batch
 * remove. */
START_TEST(batch_mid_resize)
{
	struct shset_opts o = {.log_bytes = _i == 0 ? 64 * 1024 : 0};
	const uint32_t nb = _i == 2 ? 6000 : 3000;
	struct ts t;
	struct model m;
	uint32_t next = 0;
	static uint8_t keys[6000][KEY_BUF];
	static const void *kp[6000];
	static size_t kl[6000];

	ts_open(&t, &o);
	model_init(&m, 200000);
	to_mid_resize(&t, &m, &next, 2, _i == 2 ? 14 : 13);
	remove_old_and_moved(&t, &m, 10);
	uint64_t od = word(&st(&t)->old_tdesc), moved = word(&st(&t)->moved);
	uint64_t cur = word(&st(&t)->tdesc);
	long long expect = 0;
	for (uint32_t n = 0; n < nb; n++) {
		uint32_t id = n < 500 ? id_of(n * 3, 2) : id_of(next + n, 2);
		if (n >= nb - 10)
			id = id_of(next + n - 1000, 2);
		kl[n] = mkkey(id, keys[n]);
		kp[n] = keys[n];
		expect += model_add(&m, id);
	}
	ck_assert_int_ge(expect, nb - 510);
	ck_assert_int_eq(shset_add_batch(t.s, kp, kl, nb), expect);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	if (_i == 0) {
		/* Rebuilt on a fresh table. */
		ck_assert_uint_ne(word(&st(&t)->tdesc), cur);
		ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	} else {
		/* In place: the same table, its steps moved keys on. */
		ck_assert_uint_eq(word(&st(&t)->tdesc), cur);
		uint64_t od1 = word(&st(&t)->old_tdesc);
		ck_assert(od1 == 0 || (od1 == od && word(&st(&t)->moved) > moved));
	}
	next += nb;

	to_mid_resize(&t, &m, &next, 2, 13);
	expect = 0;
	for (uint32_t n = 0; n < 3000; n++) {
		uint32_t id = id_of(n * 2, 2);
		kl[n] = mkkey(id, keys[n]);
		kp[n] = keys[n];
		expect += model_del(&m, id);
	}
	ck_assert_int_eq(shset_remove_batch(t.s, kp, kl, 3000), expect);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* --- shrinking and clearing ----------------------------------------------- */

START_TEST(shrink_to_empty)
{
	int kind = _i;
	const uint32_t total = 100000;
	struct ts t;
	struct model m;
	struct sampler sp = {.every_log2 = 13};
	uint64_t rng = 7;

	ts_open(&t, NULL);
	model_init(&m, id_of(total, kind) + 2);
	for (uint32_t n = 0; n < total; n++)
		add_id(&t, &m, id_of(n, kind));
	uint64_t peak_cap = capacity(&t), peak_mem = mem_bytes(t.s);
	struct table_stats ts;
	ck_assert_int_eq(table_stats(t.r, &ts), 0);
	uint64_t peak_arena = ts.arena_bytes;
	ck_assert_uint_ge(peak_mem, 4u << 20);

	/* Removed in a random order. */
	uint32_t *order = malloc(total * sizeof(*order));
	ck_assert_ptr_nonnull(order);
	for (uint32_t n = 0; n < total; n++)
		order[n] = n;
	for (uint32_t n = total - 1; n > 0; n--) {
		uint32_t j = (uint32_t)(rng_next(&rng) % (n + 1)), x = order[n];
		order[n] = order[j];
		order[j] = x;
	}
	uint64_t last_cap = peak_cap, falls = 0;
	for (uint32_t n = 0; n < total; n++) {
		ck_assert_int_eq(remove_id(&t, &m, id_of(order[n], kind)), 1);
		sample_verify(&t, &sp);
		uint64_t c = cap_of(word(&st(&t)->tdesc));
		if (c < last_cap)
			falls++;
		last_cap = c;
		/* Never more than 16 times (+ the 8-fold step) what the keys need. */
		if (n % 1000 == 0 && m.count > 64)
			ck_assert_uint_le(c, m.count * 2 * 16 * 8);
	}
	free(order);
	ck_assert_uint_ge(falls, 3);
	ck_assert_uint_le(capacity(&t), 1024);
	ck_assert_int_eq(shset_size(t.s), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	/* The tables gave their pages back (a few writes finish the
	 * punching), all but the first page of each.  Freed key blocks keep
	 * theirs, on the free lists for the next keys: with arena keys the
	 * memory ends near the arena's peak, not near zero. */
	for (uint32_t n = 0; n < 64; n++) {
		add_id(&t, &m, id_of(n, kind));
		remove_id(&t, &m, id_of(n, kind));
	}
	ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
	uint64_t mem = mem_bytes(t.s);
	ck_assert_msg(mem < peak_arena + (4u << 20),
		      "%llu bytes still allocated (peak %llu, arena %llu)", (unsigned long long)mem,
		      (unsigned long long)peak_mem, (unsigned long long)peak_arena);
	if (kind == 0)
		ck_assert_uint_eq(peak_arena, 0);
	else
		ck_assert_uint_gt(peak_arena, 4u << 20);
	/* And it grows again. */
	for (uint32_t n = 0; n < 5000; n++)
		add_id(&t, &m, id_of(n, kind));
	close_checked(&t, &m);
}
END_TEST

START_TEST(clear_mid_resize_gives_memory_back)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 400000);
	to_mid_resize(&t, &m, &next, 2, 17);
	uint64_t before = mem_bytes(t.s);
	ck_assert_uint_gt(before, 8u << 20);
	ck_assert_int_eq(shset_clear(t.s), 0);
	ck_assert_int_eq(shset_size(t.s), 0);
	ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	ck_assert_uint_eq(word(&st(&t)->moved), 0);
	ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	uint64_t after = mem_bytes(t.s);
	ck_assert_msg(after < (1u << 20), "%llu of %llu bytes still allocated",
		      (unsigned long long)after, (unsigned long long)before);
	memset(m.in, 0, m.n);
	m.count = 0;
	for (uint32_t n = 0; n < 20000; n++)
		add_id(&t, &m, id_of(n * 5, 2));
	close_checked(&t, &m);
}
END_TEST

/* --- tombstones ----------------------------------------------------------- */

/* A sliding window: each step removes the oldest key and adds a new one, so
 * tombstones pile up and must be shed by same-size rebuilds.  _i 1: the
 * same window removed and added back whole, many times. */
START_TEST(tombstone_churn)
{
	const uint32_t w = 3000;
	struct ts t;
	struct model m;
	struct sampler sp = {.every_log2 = 14};
	uint64_t max_cap = 0;

	ts_open(&t, NULL);
	model_init(&m, 200000 + w);
	for (uint32_t n = 0; n < w; n++)
		add_id(&t, &m, id_of(n, 2));
	struct shset_stats s0;
	ck_assert_int_eq(shset_stats(t.s, &s0), 0);
	uint32_t steps = _i == 0 ? 200000 : 60;
	for (uint32_t n = 0; n < steps; n++) {
		if (_i == 0) {
			ck_assert_int_eq(remove_id(&t, &m, id_of(n, 2)), 1);
			ck_assert_int_eq(add_id(&t, &m, id_of(n + w, 2)), 1);
			sample_verify(&t, &sp);
		} else {
			for (uint32_t k = 0; k < w; k++)
				ck_assert_int_eq(remove_id(&t, &m, id_of(k, 2)), 1);
			sample_verify(&t, &sp);
			for (uint32_t k = 0; k < w; k++)
				ck_assert_int_eq(add_id(&t, &m, id_of(k, 2)), 1);
			sample_verify(&t, &sp);
		}
		uint64_t c = cap_of(word(&st(&t)->tdesc));
		if (c > max_cap)
			max_cap = c;
		ck_assert_uint_eq(word(&st(&t)->count), w);
		if (n % 5000 == 0 || _i)
			ck_assert_int_eq(shset_verify(t.s), 0);
	}
	/* 3000 keys need 8192 slots; the table never grew past twice that,
	 * and the tombstones were shed by rebuilds (_i 0). */
	ck_assert_uint_le(max_cap, 16384);
	struct shset_stats s1;
	ck_assert_int_eq(shset_stats(t.s, &s1), 0);
	if (_i == 0)
		ck_assert_uint_gt(s1.resizes, s0.resizes + 10);
	ck_assert_uint_le(s1.tombstones * 4, s1.capacity * 3);
	close_checked(&t, &m);
}
END_TEST

/* --- the punch list ------------------------------------------------------- */

/* Whether block @b is on the free list of class @cls. */
static int on_free_list(const struct ts *t, unsigned cls, uint64_t b)
{
	uint64_t p = word(&st(t)->head[cls]);

	for (int n = 0; p && n < 1000; n++) {
		if (p == b)
			return 1;
		p = (word((const uint64_t *)(t->r->base + p)) & ((1ull << 40) - 1))
		    << 4; /* 16-byte units (alloc.c) */
	}
	return 0;
}

/* The blocks of big keys (over 8 KiB) go through the punch list too: once
 * removed, their pages (all but the first of each) go back as later
 * transactions begin, and the blocks are reused. */
START_TEST(big_key_blocks_give_pages_back)
{
	enum { N = 1500, LEN = 20000 };
	static uint8_t key[LEN];
	shset *s;

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < N; i++) {
		memset(key, (int)(i % 251), LEN);
		memcpy(key, &i, sizeof(i));
		ck_assert_int_eq(shset_add(s, key, LEN), 1);
	}
	uint64_t peak = mem_bytes(s);
	for (uint32_t i = 0; i < N; i++) {
		memset(key, (int)(i % 251), LEN);
		memcpy(key, &i, sizeof(i));
		ck_assert_int_eq(shset_remove(s, key, LEN), 1);
	}
	/* A write per freed block and some: each begins with a punch step. */
	for (int i = 0; i < 2 * N; i++) {
		ck_assert_int_eq(shset_add(s, "x", 1), 1);
		ck_assert_int_eq(shset_remove(s, "x", 1), 1);
	}
	uint64_t after = mem_bytes(s);
	/* A 20,480-byte block keeps its first 4 KiB page (the list link) and,
	 * not being page-aligned, the page its end shares: two of five. */
	ck_assert_msg(after < peak / 2, "peak %llu, after %llu", (unsigned long long)peak,
		      (unsigned long long)after);
	ck_assert_int_eq(shset_verify(s), 0);
	/* The blocks are reused: adding the keys again does not grow the heap
	 * past its peak by more than a table. */
	for (uint32_t i = 0; i < N; i++) {
		memset(key, (int)(i % 251), LEN);
		memcpy(key, &i, sizeof(i));
		ck_assert_int_eq(shset_add(s, key, LEN), 1);
	}
	struct shset_stats st;
	ck_assert_int_eq(shset_stats(s, &st), 0);
	ck_assert_uint_le(st.heap_bytes, peak + (1u << 20));
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* The whole pages of a block at @b of @bytes that punching gives back:
 * from the one after its first word's to the last inside it. */
static uint64_t punch_first(uint64_t b)
{
	return ((b + 4096) & ~4095ull) - b;
}

static uint64_t punch_last(uint64_t b, uint64_t bytes)
{
	return ((b + bytes) & ~4095ull) - b;
}

/* Adds and removes @x by turns until the punch list's head is not @b or
 * its next step is its last: the number of writes. */
static int toggle_until_last_step(struct ts *t, struct model *m, uint32_t x, uint64_t b,
				  uint64_t bytes, int *in)
{
	int writes = 0;

	while (word(&st(t)->punch_head) == b &&
	       word(&st(t)->punch_done) + ALLOC_PUNCH_STEP < punch_last(b, bytes)) {
		ck_assert_int_lt(writes, 100000);
		if (*in)
			remove_id(t, m, x);
		else
			add_id(t, m, x);
		*in = !*in;
		writes++;
	}
	return writes;
}

/* The data extents of the file inside [@from, @to): bytes that hold data. */
static uint64_t data_bytes(int fd, uint64_t from, uint64_t to)
{
	uint64_t n = 0;

	for (off_t at = (off_t)from; at < (off_t)to;) {
		off_t d = lseek(fd, at, SEEK_DATA);
		if (d < 0 || d >= (off_t)to)
			break;
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || h > (off_t)to)
			h = (off_t)to;
		n += (uint64_t)(h - d);
		at = h;
	}
	return n;
}

/* Without the handle's filler thread (test_set covers that), while a
 * resize fills its new table, every write (outside the lock) faults in
 * the next 64 KiB of it: after table bytes / 64 KiB writes the whole table
 * holds data, where the writes themselves touched a few of its pages. */
START_TEST(resize_table_faulted_in_ahead)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	setenv("SHSET_FILLER", "0", 1);
	ts_open(&t, NULL);
	model_init(&m, 400000);
	/* Until a resize into a table of 2^17 slots (4 MiB) has begun. */
	while (!word(&st(&t)->old_tdesc) || cap_of(word(&st(&t)->tdesc)) < (1u << 17)) {
		ck_assert_uint_lt(next, 400000);
		ck_assert_int_eq(add_id(&t, &m, id_of(next++, 0)), 1);
	}
	uint64_t d = word(&st(&t)->tdesc), bytes = cap_of(d) * SLOT;
	uint64_t lo = off_of(d), hi = off_of(d) + bytes;
	uint64_t before = data_bytes(shset_fd(t.s), lo, hi);
	ck_assert_msg(before < bytes / 4, "%llu of %llu bytes hold data at the start",
		      (unsigned long long)before, (unsigned long long)bytes);
	for (uint64_t i = 0; i < bytes / (64 * 1024) + 1; i++)
		ck_assert_int_eq(add_id(&t, &m, id_of(next++, 0)), 1);
	/* Still the same resize: the table was faulted in ahead, not filled. */
	ck_assert_uint_eq(word(&st(&t)->tdesc), d);
	ck_assert_uint_ne(word(&st(&t)->old_tdesc), 0);
	ck_assert_uint_eq(data_bytes(shset_fd(t.s), lo, hi), bytes);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	model_free(&m);
	ts_close(&t);
	unsetenv("SHSET_FILLER");
}
END_TEST

START_TEST(punch_list_gives_pages_back)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 400000);
	/* Until a table of 2^17 slots (4 MiB) has been drained and freed. */
	uint64_t od = to_resize_done(&t, &m, &next, 0, 17);
	ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	uint64_t b = off_of(od), bytes = cap_of(od) * SLOT;
	unsigned cls = alloc_class(bytes);
	/* Freed by this very commit: first on the list, nothing punched. */
	ck_assert_uint_eq(word(&st(&t)->punch_head), b);
	ck_assert_uint_eq(word(&st(&t)->punch_done), 0);
	ck_assert_int_eq(on_free_list(&t, cls, b), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	uint64_t mem0 = mem_bytes(t.s);

	/* Each write gives back ALLOC_PUNCH_STEP bytes. */
	uint32_t x = id_of(next + 1000, 0);
	ck_assert_int_eq(add_id(&t, &m, x), 1);
	ck_assert_uint_eq(word(&st(&t)->punch_head), b);
	ck_assert_uint_eq(word(&st(&t)->punch_done), punch_first(b) + ALLOC_PUNCH_STEP);
	ck_assert_uint_le(mem_bytes(t.s) + ALLOC_PUNCH_STEP - 4096, mem0);
	int in = 1, writes = 1 + toggle_until_last_step(&t, &m, x, b, bytes, &in);
	ck_assert_int_eq(shset_verify(t.s), 0);
	ck_assert_uint_eq(word(&st(&t)->punch_head), b);
	in ? remove_id(&t, &m, x) : add_id(&t, &m, x);
	writes++;
	ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
	ck_assert_uint_eq(word(&st(&t)->punch_done), 0);
	/* One step per write, whole pages only. */
	uint64_t span = punch_last(b, bytes) - punch_first(b);
	ck_assert_int_eq(writes, (int)((span + ALLOC_PUNCH_STEP - 1) / ALLOC_PUNCH_STEP));
	ck_assert_int_eq(on_free_list(&t, cls, b), 1);
	uint64_t mem1 = mem_bytes(t.s);
	/* All but its first page, give or take the pages the writes touched. */
	ck_assert_msg(mem1 + bytes - 64 * 1024 <= mem0, "%llu -> %llu bytes",
		      (unsigned long long)mem0, (unsigned long long)mem1);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/*
 * A freed table reaches a free list once punched, even when the
 * transaction that punches it fills the undo log to its limit.  (Punching
 * in the commit, after the commit's own state words had eaten into the
 * log's reserve, used to unlink the table from the punch list and then fail
 * to log its new link: its heap range was lost for good.)
 */
START_TEST(punched_table_reaches_free_list_with_full_log)
{
	struct shset_opts o = {.log_bytes = 64 * 1024};
	struct ts t;
	struct model m;
	uint32_t next = 0;
	uint8_t k[KEY_BUF];

	ts_open(&t, &o);
	model_init(&m, 400000);
	/* Until a table of 2^16 slots (2 MiB) is freed, then punched up to
	 * its last step. */
	uint64_t od = to_resize_done(&t, &m, &next, 0, 16);
	uint64_t b = off_of(od);
	unsigned cls = alloc_class(cap_of(od) * SLOT);
	ck_assert_uint_eq(word(&st(&t)->punch_head), b);
	int in = 0;
	toggle_until_last_step(&t, &m, id_of(next++, 0), b, cap_of(od) * SLOT, &in);
	ck_assert_uint_eq(word(&st(&t)->punch_head), b);

	/* One transaction of inserts that uses the log up to its limit (each
	 * insert into a table of an earlier transaction logs one word). */
	struct tx *x = tx_open(&t);
	while (tx_log_room(x) > 0) {
		uint32_t id = id_of(next++, 0);
		ck_assert_int_eq(table_insert(x, k, mkkey(id, k)), 1);
		model_add(&m, id);
	}
	tx_commit(x);
	tx_close(&t);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	/* That transaction punched the table's last step: it is off the
	 * punch list, and on the free list of its class. */
	ck_assert_uint_ne(word(&st(&t)->punch_head), b);
	ck_assert_msg(on_free_list(&t, cls, b),
		      "table %#llx (class %u) is on neither the punch list nor a free list",
		      (unsigned long long)b, cls);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* --- tx_abort in the middle of a resize ----------------------------------- */

/* The state words a committed state consists of. */
struct words {
	uint64_t tdesc, count, tombs, brk, key_bytes, arena_bytes, log_n, old_tdesc, moved;
	uint64_t punch_head, punch_done, seq;
	uint64_t head[ALLOC_CLASSES];
};

static struct words words_of(const struct ts *t)
{
	const struct tx_state *s = st(t);
	struct words w = {word(&s->tdesc),
			  word(&s->count),
			  word(&s->tombs),
			  word(&s->brk),
			  word(&s->key_bytes),
			  word(&s->arena_bytes),
			  word(&s->log_n),
			  word(&s->old_tdesc),
			  word(&s->moved),
			  word(&s->punch_head),
			  word(&s->punch_done),
			  word(&s->seq),
			  {0}};
	for (unsigned c = 0; c < ALLOC_CLASSES; c++)
		w.head[c] = word(&s->head[c]);
	return w;
}

static void assert_words(const struct words *a, const struct words *b)
{
	ck_assert_uint_eq(a->tdesc, b->tdesc);
	ck_assert_uint_eq(a->count, b->count);
	ck_assert_uint_eq(a->tombs, b->tombs);
	ck_assert_uint_eq(a->brk, b->brk);
	ck_assert_uint_eq(a->key_bytes, b->key_bytes);
	ck_assert_uint_eq(a->arena_bytes, b->arena_bytes);
	ck_assert_uint_eq(a->old_tdesc, b->old_tdesc);
	ck_assert_uint_eq(a->moved, b->moved);
	ck_assert_uint_eq(a->punch_head, b->punch_head);
	ck_assert_uint_eq(a->punch_done, b->punch_done);
	ck_assert_uint_eq(b->log_n, 0);
	ck_assert_uint_eq(b->seq & 1, 0);
	for (unsigned c = 0; c < ALLOC_CLASSES; c++)
		ck_assert_uint_eq(a->head[c], b->head[c]);
}

/*
 * One transaction of many inserts, removes (keys in the old table and keys
 * moved) and pops, aborted.  _i 0: mid-resize; 1: the transaction starts a
 * resize; 2: it finishes one (the old table freed to the punch list); 3:
 * it finishes one and starts the next; 4: it rebuilds on a fresh table
 * first (big batches); 5: it clears the set.
 */
START_TEST(abort_mid_resize)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;
	uint8_t k[KEY_BUF];

	ts_open(&t, NULL);
	model_init(&m, 400000);
	to_mid_resize(&t, &m, &next, 2, 13);
	if (_i == 1) {
		/* Resize done, and the next insert starts one. */
		while (word(&st(&t)->old_tdesc) ||
		       (word(&st(&t)->count) + word(&st(&t)->tombs) + 2) * 4 <= capacity(&t) * 3)
			add_id(&t, &m, id_of(next++, 2));
	} else if (_i == 2 || _i == 3) {
		while (word(&st(&t)->moved) + 4 * MOVE_STEP < old_cap(&t))
			add_id(&t, &m, id_of(next++, 2));
	}
	struct words w0 = words_of(&t);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	uint64_t od0 = w0.old_tdesc;

	struct model mx; /* as the transaction sees it */
	model_init(&mx, m.n);
	memcpy(mx.in, m.in, m.n);
	mx.count = m.count;
	struct tx *x = tx_open(&t);
	uint32_t inserts = _i == 3 ? 12000 : _i == 5 ? 0 : 400;
	int started = 0, finished = 0;
	if (_i == 4) {
		ck_assert_int_eq(table_fresh(x, 5000), 0);
		ck_assert_uint_eq(x->old_tdesc, 0);
		ck_assert_uint_ne(x->tdesc, w0.tdesc);
	} else if (_i == 5) {
		ck_assert_int_eq(table_clear(x), 0);
		ck_assert_uint_eq(table_tx_count(x), 0);
	}
	for (uint32_t n = 0; n < inserts; n++) {
		ck_assert_int_eq(table_insert(x, k, mkkey(id_of(next + n, 2), k)), 1);
		model_add(&mx, id_of(next + n, 2));
		if (x->old_tdesc && x->old_tdesc != od0)
			started = 1;
		if (od0 && x->old_tdesc != od0)
			finished = 1;
		if (n % 4 == 0) {
			/* A key added before: some in the old table, some moved. */
			uint32_t id = id_of(n * 3 % next, 2);
			ck_assert_int_eq(table_remove(x, k, mkkey(id, k)), model_del(&mx, id));
		}
		if (n % 50 == 0) {
			size_t len;
			ck_assert_int_eq(table_pop(x, k, sizeof(k), &len), 1);
			long long id = key_id(k, len);
			ck_assert_int_ge(id, 0);
			ck_assert_int_eq(model_del(&mx, (uint32_t)id), 1);
		}
		ck_assert_uint_eq(table_tx_count(x), mx.count);
	}
	if (_i == 1 || _i == 3)
		ck_assert_int_eq(started, 1);
	if (_i == 2 || _i == 3)
		ck_assert_int_eq(finished, 1);
	tx_abort(x);
	tx_close(&t);
	model_free(&mx);

	struct words w1 = words_of(&t);
	assert_words(&w0, &w1);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	/* And the set goes on from there. */
	struct sampler sp = {.every_log2 = 0};
	for (uint32_t n = 0; n < inserts; n++) {
		ck_assert_int_eq(add_id(&t, &m, id_of(next + n, 2)), 1);
		sample_verify(&t, &sp);
	}
	close_checked(&t, &m);
}
END_TEST

/* --- ENOSPC --------------------------------------------------------------- */

START_TEST(full_set_fills_to_seven_eighths)
{
	struct shset_opts o = {.max_bytes = 1u << 20, .log_bytes = 64 * 1024, .max_procs = 4};
	struct ts t;
	struct model m;
	uint32_t n = 0;
	int r;

	ts_open(&t, &o);
	model_init(&m, 100000);
	struct sampler sp = {.every_log2 = 20};
	uint64_t past_three_quarters = 0;
	for (;; n++) {
		ck_assert_uint_lt(n, 60000);
		uint8_t k[KEY_BUF];
		r = shset_add(t.s, k, mkkey(id_of(n, 0), k));
		if (r != 1)
			break;
		model_add(&m, id_of(n, 0));
		sample_verify(&t, &sp);
		uint64_t c = cap_of(word(&st(&t)->tdesc));
		if ((m.count + word(&st(&t)->tombs)) * 4 > c * 3)
			past_three_quarters++;
	}
	ck_assert_int_eq(r, -ENOSPC);
	/* No resize left half done, and the table is full to 7/8. */
	ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	uint64_t c = capacity(&t);
	ck_assert_uint_gt(past_three_quarters, c / 16);
	ck_assert_uint_le((m.count + word(&st(&t)->tombs)) * 8, c * 7);
	ck_assert_uint_gt((m.count + word(&st(&t)->tombs) + 1) * 8, c * 7);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);

	/* Still a working set: present keys, removes, re-adds (each finds
	 * its own tombstone on its path, so the load does not rise), and the
	 * limit again. */
	uint8_t k[KEY_BUF];
	ck_assert_int_eq(shset_add(t.s, k, mkkey(id_of(0, 0), k)), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(remove_id(&t, &m, id_of(i, 0)), 1);
	ck_assert_int_eq(shset_verify(t.s), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(add_id(&t, &m, id_of(i, 0)), 1);
	ck_assert_int_eq(shset_add(t.s, k, mkkey(id_of(n + 500, 0), k)), -ENOSPC);
	ck_assert_int_eq(shset_add(t.s, k, mkkey(id_of(n + 501, 1), k)), -ENOSPC);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	struct stat sb;
	ck_assert_int_eq(fstat(shset_fd(t.s), &sb), 0);
	ck_assert_int_le(sb.st_size, 1 << 20);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* --- capacities ----------------------------------------------------------- */

/* The capacities are the quarter steps (4 + q) << (e - 2), each a block
 * class of its own size; codes of no table read as 0; table_code_for is
 * the smallest capacity at most half full. */
START_TEST(capacity_codes)
{
	static const uint64_t first[] = {16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128};

	for (unsigned i = 0; i < sizeof(first) / sizeof(first[0]); i++)
		ck_assert_uint_eq(table_code_cap(TABLE_CODE_MIN + i), first[i]);
	ck_assert_uint_eq(table_code_cap(TABLE_CODE(17, 1)), 5ull << 15);
	ck_assert_uint_eq(table_code_cap(TABLE_CODE_MAX), 1ull << 39);
	for (unsigned code = 0; code < 256; code++) {
		uint64_t c = table_code_cap(code);
		if (code < TABLE_CODE_MIN || code > TABLE_CODE_MAX) {
			ck_assert_msg(c == 0, "code %u reads as %llu slots", code,
				      (unsigned long long)c);
			continue;
		}
		ck_assert_uint_eq(c, (uint64_t)(4 + code % 4) << (code / 4 - 2));
		ck_assert_uint_eq(alloc_class_bytes(alloc_class(c * SLOT)), c * SLOT);
		if (code > TABLE_CODE_MIN) {
			uint64_t p = table_code_cap(code - 1);
			ck_assert_uint_gt(c, p);
			ck_assert_uint_le(c * 4, p * 5); /* steps of 1.25 at most */
		}
		if (code + 4 <= TABLE_CODE_MAX)
			ck_assert_uint_eq(table_code_cap(code + 4), c * 2);
		/* The smallest at half load: the keys that just fit, and one
		 * more. */
		ck_assert_uint_eq(table_code_for(c / 2), code);
		if (code < TABLE_CODE_MAX)
			ck_assert_uint_eq(table_code_for(c / 2 + 1), code + 1);
		/* A full table (3/4) grows 4/3 to 3/2 times, to the smallest
		 * holding its keys at most 9/16 full. */
		unsigned g = table_code_grow(c * 3 / 4);
		if (c * 2 <= table_code_cap(TABLE_CODE_MAX)) {
			uint64_t gc = table_code_cap(g);
			ck_assert_msg(gc * 3 >= c * 4 && gc * 2 <= c * 3, "%llu slots grow to %llu",
				      (unsigned long long)c, (unsigned long long)gc);
			ck_assert_uint_ge(gc * 9, c * 3 / 4 * 16);
			ck_assert_uint_lt(table_code_cap(g - 1) * 9, c * 3 / 4 * 16);
		}
	}
	ck_assert_uint_eq(table_code_grow(0), TABLE_CODE_MIN);
	ck_assert_uint_eq(table_code_grow(UINT64_MAX), TABLE_CODE_MAX);
	/* 62,500 keys (1,000,000 over 16 shards) sit in 98,304 slots, not
	 * 114,688: from 65,536 slots at 49,152 keys. */
	ck_assert_uint_eq(table_code_cap(table_code_grow(49152)), 98304);
	ck_assert_uint_eq(table_code_for(0), TABLE_CODE_MIN);
	ck_assert_uint_eq(table_code_for(1), TABLE_CODE_MIN);
	ck_assert_uint_eq(table_code_for(50000), TABLE_CODE(16, 3)); /* 7 << 14 */
	ck_assert_uint_eq(table_code_for(UINT64_MAX), TABLE_CODE_MAX);
}
END_TEST

static uint64_t home_of(const struct ts *t, uint32_t id, uint64_t cap)
{
	uint8_t k[KEY_BUF];
	uint64_t h = hash_bytes(t->r->seed, k, mkkey(id, k));

	/* table.c: the hash but its low two bits, scaled to the capacity. */
	return (uint64_t)(((unsigned __int128)(h & ~3ull) * cap) >> 64);
}

/* The next @n ids from *@next whose home slot in a table of @cap slots is
 * @slot. */
static void ids_at_home(const struct ts *t, uint64_t cap, uint64_t slot, uint32_t *next,
			uint32_t *ids, unsigned n)
{
	for (unsigned got = 0; got < n; (*next)++) {
		ck_assert_uint_lt(*next, 50000);
		if (home_of(t, id_of(*next, 0), cap) == slot)
			ids[got++] = id_of(*next, 0);
	}
}

/* A table of 20, 24, 28 or 40 slots: keys whose home is its last slot
 * fill it, then wrap to slot 0, 1, ...; they are found there, a key of the
 * same home not added is not, and tombstones on the wrapped path keep it
 * intact. */
START_TEST(probe_wraps_past_the_end)
{
	static const uint64_t caps[] = {20, 24, 28, 40};
	const uint64_t c = caps[_i];
	struct shset_opts o = {.capacity = c * 3 / 4};
	struct ts t;
	struct model m;
	uint32_t next = 0, ids[7];

	ts_open(&t, &o);
	ck_assert_uint_eq(capacity(&t), c);
	model_init(&m, 100000);
	ids_at_home(&t, c, c - 1, &next, ids, 7);
	for (unsigned k = 0; k < 6; k++)
		ck_assert_int_eq(add_id(&t, &m, ids[k]), 1);
	uint64_t d = word(&st(&t)->tdesc);
	ck_assert_uint_eq(cap_of(d), c);
	/* Slots c-1, 0, 1, 2, 3, 4 in the order added. */
	for (unsigned k = 0; k < 6; k++)
		ck_assert_int_eq(slot_id(&t, d, (c - 1 + k) % c), ids[k]);
	ck_assert_int_eq(slot_id(&t, d, 5), -1);
	for (unsigned k = 0; k < 6; k++)
		ck_assert_int_eq(has_id(t.s, ids[k]), 1);
	ck_assert_int_eq(has_id(t.s, ids[6]), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	/* A tombstone at the end and one past the wrap: the path goes on. */
	ck_assert_int_eq(remove_id(&t, &m, ids[0]), 1);
	ck_assert_int_eq(remove_id(&t, &m, ids[2]), 1);
	for (unsigned k = 0; k < 6; k++)
		ck_assert_int_eq(has_id(t.s, ids[k]), k != 0 && k != 2);
	ck_assert_int_eq(has_id(t.s, ids[6]), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	/* Added back, a key takes the first tombstone on its path: the last
	 * slot; the next one the tombstone past the wrap. */
	ck_assert_int_eq(add_id(&t, &m, ids[6]), 1);
	ck_assert_int_eq(slot_id(&t, d, c - 1), ids[6]);
	ck_assert_int_eq(add_id(&t, &m, ids[0]), 1);
	ck_assert_int_eq(slot_id(&t, d, 1), ids[0]);
	ck_assert_uint_eq(word(&st(&t)->tdesc), d);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	/* Popped from the wrapped end too (the hint past the last slot). */
	uint8_t k[KEY_BUF];
	size_t len;
	for (unsigned n = 0; n < 6; n++) {
		ck_assert_int_eq(shset_pop(t.s, k, sizeof(k), &len), 1);
		ck_assert_int_eq(model_del(&m, (uint32_t)key_id(k, len)), 1);
	}
	ck_assert_int_eq(shset_size(t.s), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A lookup compares every byte of a key whose slot its hash leads to:
 * for each length up to 40 (inline, at the short compare's edges and in a
 * block), a byte changed anywhere in the stored key makes it absent. */
START_TEST(lookup_compares_every_key_byte)
{
	struct ts t;
	uint8_t key[40];

	ts_open(&t, NULL);
	for (size_t len = 1; len <= sizeof(key); len++) {
		for (size_t j = 0; j < len; j++)
			key[j] = (uint8_t)(len * 31 + j * 7);
		ck_assert_int_eq(shset_add(t.s, key, len), 1);
		uint64_t d = word(&st(&t)->tdesc);
		uint8_t *stored = NULL;
		for (uint64_t i = 0; i < cap_of(d) && !stored; i++) {
			uint8_t *slot = t.r->base + off_of(d) + i * SLOT;
			uint32_t l;
			uint64_t blk;
			memcpy(&l, slot + 8, 4);
			memcpy(&blk, slot + 16, 8);
			if ((word((const uint64_t *)slot) & 3) != 2 || l != len)
				continue;
			uint8_t *k = len <= 20 ? slot + 12 : t.r->base + blk;
			if (memcmp(k, key, len) == 0)
				stored = k;
		}
		ck_assert_ptr_nonnull(stored);
		for (size_t j = 0; j < len; j++) {
			stored[j] ^= 0x10;
			ck_assert_msg(shset_contains(t.s, key, len) == 0, "len %zu, byte %zu", len,
				      j);
			stored[j] ^= 0x10;
			ck_assert_int_eq(shset_contains(t.s, key, len), 1);
		}
	}
	ck_assert_int_eq(shset_verify(t.s), 0);
	ts_close(&t);
}
END_TEST

static int pow2(uint64_t c)
{
	return c && !(c & (c - 1));
}

/* Each id below @limit present exactly if the model holds it. */
static void check_model(struct ts *t, const struct model *m, uint32_t limit)
{
	for (uint32_t id = 0; id < limit; id++)
		ck_assert_msg(has_id(t->s, id) == m->in[id], "key %u: %d, model %d", id,
			      has_id(t->s, id), m->in[id]);
}

/* A resize from one capacity that is not a power of two to another, while
 * it grows and while it shrinks: lookups of every key mid-way and after,
 * the keys that wrap in both tables included. */
START_TEST(resize_between_quarter_steps)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;
	uint64_t rng = 11;

	/* A first table of 5,120 slots, from which growth goes through
	 * capacities that are not powers of two (7,168, 10,240, 14,336). */
	ts_open(&t, &(struct shset_opts){.capacity = 3840});
	model_init(&m, 40000);
	ck_assert_uint_eq(cap_of(word(&st(&t)->tdesc)), 5120);
	/* Growing: half way from 5,120 slots to 7,168. */
	for (;;) {
		uint64_t oc = old_cap(&t), moved = word(&st(&t)->moved);
		uint64_t c = cap_of(word(&st(&t)->tdesc));
		if (oc >= 2048 && !pow2(oc) && !pow2(c) && moved >= oc / 4 && moved <= oc * 3 / 4)
			break;
		ck_assert_uint_lt(next, 20000);
		ck_assert_int_eq(add_id(&t, &m, id_of(next++, 2)), 1);
	}
	check_mid_resize(&t, next, 2);
	remove_old_and_moved(&t, &m, 8);
	check_model(&t, &m, next + 100);
	ck_assert_int_eq(shset_verify(t.s), 0);
	/* On to a table of 14,336 slots, no resize left. */
	while (word(&st(&t)->old_tdesc) || cap_of(word(&st(&t)->tdesc)) < 12288 ||
	       pow2(cap_of(word(&st(&t)->tdesc)))) {
		ck_assert_uint_lt(next, 20000);
		ck_assert_int_eq(add_id(&t, &m, id_of(next++, 2)), 1);
	}
	uint64_t big = cap_of(word(&st(&t)->tdesc));
	ck_assert_uint_eq(big, 14336);
	check_model(&t, &m, next + 100);
	ck_assert_int_eq(shset_verify(t.s), 0);
	/* Shrinking: removed in a random order until the shrink starts, then
	 * checked at every step until it ends. */
	uint64_t steps = 0;
	int shrinking = 0;
	while (!shrinking || word(&st(&t)->old_tdesc)) {
		uint32_t id = (uint32_t)(rng_next(&rng) % next);
		if (!m.in[id_of(id, 2)])
			continue;
		ck_assert_int_eq(remove_id(&t, &m, id_of(id, 2)), 1);
		if (!shrinking && word(&st(&t)->old_tdesc)) {
			shrinking = 1;
			uint64_t oc = old_cap(&t), c = cap_of(word(&st(&t)->tdesc));
			ck_assert_uint_eq(oc, big);
			ck_assert(!pow2(c));
			ck_assert_uint_le(c * 4, oc); /* by 4 times or more */
			ck_assert_uint_ge(c * 8, oc);
		}
		if (shrinking) {
			check_model(&t, &m, next + 100);
			ck_assert_int_eq(shset_verify(t.s), 0);
			steps++;
		}
	}
	ck_assert_uint_ge(steps, 2);
	close_checked(&t, &m);
}
END_TEST

/* --- hostile state words -------------------------------------------------- */

/* Runs @fn(@t, @arg) in a child under a watchdog: its exit status, 128+signal
 * if it crashed, 128+SIGALRM if it hung. */
static int watched(void (*fn)(struct ts *t, uint64_t arg), struct ts *t, uint64_t arg)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm((unsigned)(20 * test_scale()));
		fn(t, arg);
		_exit(0);
	}
	return wait_status(pid);
}

static void poke_word(uint64_t *w, uint64_t v)
{
	__atomic_store_n(w, v, __ATOMIC_RELAXED);
}

static int ok_or_euclean(long long r)
{
	return r >= 0 || r == -EUCLEAN;
}

static int count_visit(const void *k, size_t len, void *arg)
{
	(void)k;
	(void)len;
	++*(uint64_t *)arg;
	return 0;
}

/* Every operation, a few hundred times: each gives a value or -EUCLEAN
 * (exit codes name the one that did not). */
static void honest_ops(struct ts *t, uint64_t rounds)
{
	uint8_t k[KEY_BUF];
	size_t len;
	uint64_t n_keys = 0;

	for (uint32_t n = 0; n < rounds; n++) {
		if (!ok_or_euclean(shset_add(t->s, k, mkkey(id_of(300000 + n, 2), k))))
			_exit(20);
		if (!ok_or_euclean(shset_contains(t->s, k, mkkey(id_of(n, 2), k))))
			_exit(21);
		if (!ok_or_euclean(shset_remove(t->s, k, mkkey(id_of(n * 7, 2), k))))
			_exit(22);
		if (n % 16 == 0 && !ok_or_euclean(shset_pop(t->s, k, sizeof(k), &len)))
			_exit(23);
		if (n % 64 == 0 && !ok_or_euclean(shset_size(t->s)))
			_exit(24);
		if (n % 128 == 0 && !ok_or_euclean(shset_foreach(t->s, count_visit, &n_keys)))
			_exit(25);
		if (n % 64 == 0 && !ok_or_euclean(shset_verify(t->s)))
			_exit(26);
	}
	shset *c;
	int r = shset_copy(t->s, &c);
	if (!ok_or_euclean(r))
		_exit(27);
	if (!r)
		shset_close(c);
}

/* verify says -EUCLEAN first, then every operation is a value or -EUCLEAN. */
static void honest_after_scribble(struct ts *t, uint64_t rounds)
{
	if (shset_verify(t->s) != -EUCLEAN)
		_exit(30);
	honest_ops(t, rounds);
}

static uint64_t tdesc_of(uint64_t off, unsigned code)
{
	return off | (uint64_t)code << 56;
}

/* A peer writes a bogus old_tdesc into a set in the middle of a resize. */
START_TEST(hostile_old_tdesc)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 200000);
	to_mid_resize(&t, &m, &next, 2, 12);
	uint64_t cur = word(&st(&t)->tdesc), brk = word(&st(&t)->brk);
	uint64_t heap = t.r->heap_off, od = word(&st(&t)->old_tdesc);
	const uint64_t bogus[] = {
	    1,							    /* no such size */
	    od | 8,						    /* misaligned */
	    tdesc_of(brk, TABLE_CODE(10, 0)),			    /* past the heap */
	    tdesc_of(heap, 255),				    /* no table's code */
	    tdesc_of(heap, TABLE_CODE_MAX + 1),			    /* 5 * 2^37 slots: no table's */
	    tdesc_of(heap, TABLE_CODE_MIN - 1),			    /* 14 slots: no table's */
	    tdesc_of(heap, TABLE_CODE(38, 0)),			    /* bigger than the file */
	    cur,						    /* drained into itself */
	    tdesc_of((brk - 16 * SLOT) & ~31ull, TABLE_CODE(4, 0)), /* the heap's tail */
	    tdesc_of(heap, TABLE_CODE(4, 0)),			    /* the first (freed) table */
	    od + ((uint64_t)1 << 56),				    /* a quarter step bigger */
	    od + ((uint64_t)4 << 56),				    /* twice its size */
	};
	for (unsigned v = 0; v < sizeof(bogus) / sizeof(bogus[0]); v++) {
		poke_word(&st(&t)->old_tdesc, bogus[v]);
		int status = watched(honest_after_scribble, &t, 300);
		ck_assert_msg(status == 0, "old_tdesc %#llx: status %d (142: hung)",
			      (unsigned long long)bogus[v], status);
	}
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A peer writes into the current tdesc a code that is no table's (below
 * the smallest, above the largest, or one whose slots times 32 overflow):
 * -EUCLEAN, never a read out of bounds. */
START_TEST(hostile_tdesc_code)
{
	struct ts t;
	struct model m;

	ts_open(&t, NULL);
	model_init(&m, 10000);
	for (uint32_t n = 0; n < 1000; n++)
		add_id(&t, &m, id_of(n, 2));
	ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	uint64_t cur = word(&st(&t)->tdesc), off = off_of(cur);
	const unsigned bogus[] = {0,
				  1,
				  TABLE_CODE_MIN - 1,
				  TABLE_CODE_MAX + 1,
				  TABLE_CODE(40, 3),
				  TABLE_CODE(50, 2),
				  TABLE_CODE(62, 0),
				  TABLE_CODE(63, 3)};
	for (unsigned v = 0; v < sizeof(bogus) / sizeof(bogus[0]); v++) {
		poke_word(&st(&t)->tdesc, tdesc_of(off, bogus[v]));
		ck_assert_int_eq(shset_size(t.s), -EUCLEAN);
		int status = watched(honest_after_scribble, &t, 300);
		ck_assert_msg(status == 0, "code %u: status %d (142: hung)", bogus[v], status);
	}
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A peer grows the file sparsely and, over and over, writes a state that
 * says a resize fills a 64 MiB table there (one no transaction accepts),
 * then puts the real one back.  The writer's adds succeed or fail with
 * -EUCLEAN; faulting in "the table being filled" after them must follow
 * only what the writer's own transactions checked, not the state as read
 * again outside the lock: else the peer's 64 MiB become shared memory
 * (charged to the writer), 64 KiB a write. */
START_TEST(hostile_tdesc_not_faulted_in)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 100000);
	while (next < 1000 || word(&st(&t)->old_tdesc))
		add_id(&t, &m, id_of(next++, 2));
	int fd = shset_fd(t.s);
	uint64_t cur = word(&st(&t)->tdesc), brk = word(&st(&t)->brk);
	uint64_t off = (brk + (1u << 16)) & ~(uint64_t)0xffff, bytes = 64u << 20;
	uint64_t bogus = tdesc_of(off, TABLE_CODE(21, 0)); /* 2^21 slots: 64 MiB */
	ck_assert_int_eq(ftruncate(fd, (off_t)(off + bytes)), 0);
	volatile int *stop =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne((void *)stop, MAP_FAILED);
	*stop = 0;
	pid_t peer = fork();
	ck_assert_int_ge(peer, 0);
	if (peer == 0) {
		/* By turns a resize into the bogus table and the real state:
		 * each add may find either. */
		while (!*stop) {
			poke_word(&st(&t)->old_tdesc, 1);
			poke_word(&st(&t)->tdesc, bogus);
			poke_word(&st(&t)->tdesc, cur);
			poke_word(&st(&t)->old_tdesc, 0);
		}
		_exit(0);
	}
	uint8_t k[KEY_BUF];
	size_t len = mkkey(id_of(0, 2), k); /* present: an add changes nothing */
	uint32_t ok = 0;
	for (uint32_t i = 0; i < 1000000 && ok < 32768; i++) {
		int r = shset_add(t.s, k, len);
		ck_assert_msg(r == 0 || r == -EUCLEAN, "add: %d", r);
		ok += r == 0;
	}
	*stop = 1;
	int status;
	ck_assert_int_eq(waitpid(peer, &status, 0), peer);
	ck_assert_int_eq(status, 0);
	uint64_t data = data_bytes(fd, off, off + bytes);
	ck_assert_msg(data < (1u << 20), "%u writes made %llu bytes of the peer's table data", ok,
		      (unsigned long long)data);
	/* Nothing was written: the words restored, the set is whole. */
	ck_assert_uint_eq(word(&st(&t)->tdesc), cur);
	ck_assert_uint_eq(word(&st(&t)->old_tdesc), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	munmap((void *)stop, 4096);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A peer's state says a resize fills a 64 MiB table past brk, in a shard
 * whose transactions never look at the table: a pop where the count says
 * the set is empty, and a batch that reaches other shards only.  Those
 * commits publish the state's words as they were; the table they name must
 * not be faulted in (without a filler thread each commit would fault in 64
 * KiB of it, which makes the test deterministic). */
static void peer_bogus_resize(struct region *sh, int fd, uint64_t *off, uint64_t *bytes)
{
	struct tx_state *ps = tx_state(sh);
	uint64_t cur = word(&ps->tdesc);

	*off = (word(&ps->brk) + (1u << 16)) & ~(uint64_t)0xffff;
	*bytes = 64u << 20;
	ck_assert_uint_le(*off + *bytes, sh->heap_end);
	struct stat fs;
	ck_assert_int_eq(fstat(fd, &fs), 0);
	if ((uint64_t)fs.st_size < *off + *bytes)
		ck_assert_int_eq(ftruncate(fd, (off_t)(*off + *bytes)), 0);
	poke_word(&ps->old_tdesc, cur);
	poke_word(&ps->moved, 0);
	poke_word(&ps->tdesc, tdesc_of(*off, TABLE_CODE(21, 0)));
}

START_TEST(hostile_tdesc_untouched_not_faulted_in)
{
	struct ts t;
	uint64_t off, bytes;
	uint8_t k[KEY_BUF];

	ck_assert_int_eq(setenv("SHSET_FILLER", "0", 1), 0);
	/* A pop that finds the set empty by its count. */
	ts_open(&t, NULL);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(shset_add(t.s, k, mkkey(id_of(i, 2), k)), 1);
	peer_bogus_resize(t.r, shset_fd(t.s), &off, &bytes);
	poke_word(&st(&t)->count, 0);
	poke_word(&st(&t)->tombs, 0);
	for (int i = 0; i < 16; i++) {
		size_t len;
		ck_assert_int_eq(shset_pop(t.s, k, sizeof(k), &len), 0);
	}
	ck_assert_uint_eq(data_bytes(shset_fd(t.s), off, off + bytes), 0);
	ts_close(&t);

	/* A batch over four shards that reaches none of shard 2's keys. */
	shset *s;
	struct region *r;
	struct shset_opts o = {.size = sizeof(o), .shards = 4};
	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_int_eq(region_attach(&r, shset_fd(s), 0), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(shset_add(s, k, mkkey(id_of(i, 2), k)), 1);
	peer_bogus_resize(r->shard[2], shset_fd(s), &off, &bytes);
	uint8_t *keys = malloc(64 * KEY_BUF);
	size_t lens[64];
	const void *ptrs[64];
	uint32_t n = 0;
	for (uint32_t i = 100; n < 64; i++) {
		uint8_t *kk = keys + n * KEY_BUF;
		size_t len = mkkey(id_of(i, 2), kk);
		if ((hash_bytes(r->seed, kk, len) & 3) == 2)
			continue;
		ptrs[n] = kk;
		lens[n++] = len;
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(shset_add_batch(s, ptrs + i * 16, lens + i * 16, 16), 16);
	ck_assert_uint_eq(data_bytes(shset_fd(s), off, off + bytes), 0);
	free(keys);
	region_close(r);
	shset_close(s);
}
END_TEST

/* A peer's resize: a current table of 2^20 tombstones (no EMPTY slot) and
 * an old one holding 2^18 well-placed keys.  Verification looks each old
 * key up in the current table too; counted against its budget, it stops
 * after about 10^8 slots.  Uncounted, each key walked all 2^20 slots:
 * 2^38 steps, hours with the lock held (the test's timeout says so). */
START_TEST(hostile_verify_cross_probe_bounded)
{
	struct ts t;
	const uint64_t C = 1u << 20, O = 1u << 19, N = O / 2;

	ts_open(&t, NULL);
	struct tx_state *ps = st(&t);
	uint64_t a = (t.r->heap_off + 4095) & ~4095ull, b = a + C * SLOT, end = b + O * SLOT;
	ck_assert_int_eq(ftruncate(t.r->fd, (off_t)end), 0);
	uint8_t *ct = t.r->base + a, *ot = t.r->base + b;
	for (uint64_t i = 0; i < C; i++)
		poke_word((uint64_t *)(ct + i * SLOT), 1); /* a tombstone */
	for (uint64_t n = 0; n < N; n++) {
		char k[24]; /* stored in the slot: at most 20 bytes */
		size_t len = (size_t)snprintf(k, sizeof(k), "k%llu", (unsigned long long)n);
		uint64_t h = hash_bytes(t.r->seed, k, len);
		uint64_t i = (uint64_t)(((unsigned __int128)(h & ~3ull) * O) >> 64);
		while (word((uint64_t *)(ot + i * SLOT)))
			i = (i + 1) % O;
		ck_assert_uint_le(len, 20);
		*(uint32_t *)(ot + i * SLOT + 8) = (uint32_t)len;
		memcpy(ot + i * SLOT + 12, k, len);
		poke_word((uint64_t *)(ot + i * SLOT), (h & ~3ull) | 2);
	}
	poke_word(&ps->brk, end);
	poke_word(&ps->tdesc, tdesc_of(a, TABLE_CODE(20, 0)));
	poke_word(&ps->old_tdesc, tdesc_of(b, TABLE_CODE(19, 0)));
	poke_word(&ps->moved, 0);
	poke_word(&ps->count, N);
	poke_word(&ps->tombs, C);
	ck_assert_int_eq(shset_verify(t.s), -EUCLEAN);
	ts_close(&t);
}
END_TEST

/* moved past the old table's end: every operation that would use it is
 * -EUCLEAN, and nothing was written (restoring the word restores the set). */
static void honest_bad_moved(struct ts *t, uint64_t id_in_old)
{
	uint8_t k[KEY_BUF];
	size_t len;
	uint64_t n;

	if (shset_verify(t->s) != -EUCLEAN)
		_exit(30);
	if (shset_add(t->s, k, mkkey(id_of(399999, 2), k)) != -EUCLEAN)
		_exit(31);
	if (shset_remove(t->s, k, mkkey((uint32_t)id_in_old, k)) != -EUCLEAN)
		_exit(32);
	if (shset_pop(t->s, k, sizeof(k), &len) != -EUCLEAN)
		_exit(33);
	if (shset_contains(t->s, k, mkkey((uint32_t)id_in_old, k)) != -EUCLEAN)
		_exit(34);
	if (shset_size(t->s) != -EUCLEAN)
		_exit(35);
	if (shset_foreach(t->s, count_visit, &n) != -EUCLEAN)
		_exit(36);
	honest_ops(t, 200);
}

START_TEST(hostile_moved)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 200000);
	to_mid_resize(&t, &m, &next, 2, 12);
	uint64_t od = word(&st(&t)->old_tdesc), moved = word(&st(&t)->moved), oc = cap_of(od);
	long long id = -1;
	for (uint64_t i = moved; id < 0 && i < oc; i++)
		id = slot_id(&t, od, i);
	ck_assert_int_ge(id, 0);
	const uint64_t bogus[] = {oc + 1, oc + MOVE_STEP, 1ull << 40, UINT64_MAX};
	for (unsigned v = 0; v < sizeof(bogus) / sizeof(bogus[0]); v++) {
		poke_word(&st(&t)->moved, bogus[v]);
		int status = watched(honest_bad_moved, &t, (uint64_t)id);
		ck_assert_msg(status == 0, "moved %#llx: status %d (142: hung)",
			      (unsigned long long)bogus[v], status);
		poke_word(&st(&t)->moved, moved);
		ck_assert_int_eq(shset_verify(t.s), 0);
		assert_content(t.s, &m);
	}
	/* A moved word with no table being drained. */
	poke_word(&st(&t)->old_tdesc, 0);
	poke_word(&st(&t)->moved, 5);
	ck_assert_int_eq(shset_verify(t.s), -EUCLEAN);
	uint8_t k[KEY_BUF];
	ck_assert_int_eq(shset_add(t.s, k, mkkey(id_of(399999, 2), k)), -EUCLEAN);
	poke_word(&st(&t)->old_tdesc, od);
	poke_word(&st(&t)->moved, moved);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A bogus punch list: verify reports it, writes drop it (its memory is
 * lost, nothing else) and go on. */
START_TEST(hostile_punch_list)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 200000);
	to_mid_resize(&t, &m, &next, 2, 12);
	uint64_t brk = word(&st(&t)->brk), heap = t.r->heap_off;
	const uint64_t bogus[] = {
	    1, 8, brk, brk - 32, UINT64_MAX & ~31ull, heap - 4096, (1ull << 55) + 64};
	for (unsigned v = 0; v < sizeof(bogus) / sizeof(bogus[0]); v++) {
		poke_word(&st(&t)->punch_head, bogus[v]);
		poke_word(&st(&t)->punch_done, v);
		int status = watched(honest_after_scribble, &t, 50);
		ck_assert_msg(status == 0, "punch_head %#llx: status %d (142: hung)",
			      (unsigned long long)bogus[v], status);
		/* The child's writes dropped it; the set is intact. */
		ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
		ck_assert_int_eq(shset_verify(t.s), 0);
	}

	/* A real list with a scribbled punch_done: dropped too.  (The
	 * children added keys the model does not know: start afresh.) */
	model_free(&m);
	model_init(&m, 400000);
	ck_assert_int_eq(shset_clear(t.s), 0);
	next = 0;
	uint64_t od = to_resize_done(&t, &m, &next, 2, 12);
	ck_assert_uint_eq(word(&st(&t)->punch_head), off_of(od));
	poke_word(&st(&t)->punch_done, UINT64_MAX - 4095);
	ck_assert_int_eq(shset_verify(t.s), 0);
	add_id(&t, &m, id_of(next++, 2));
	ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
	ck_assert_uint_eq(word(&st(&t)->punch_done), 0);
	ck_assert_int_eq(shset_verify(t.s), 0);
	assert_content(t.s, &m);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* A peer process flips the resize and punch words, valid values and bogus
 * ones, while an honest one works: values or errors, never a crash or a
 * hang. */
static void honest_racing(struct ts *t, uint64_t stop_ns)
{
	while (now_ns() < stop_ns)
		honest_ops(t, 64);
}

START_TEST(hostile_racing_peer)
{
	struct ts t;
	struct model m;
	uint32_t next = 0;

	ts_open(&t, NULL);
	model_init(&m, 400000);
	to_mid_resize(&t, &m, &next, 2, 12);
	struct words w = words_of(&t);
	uint64_t stop = now_ns() + (uint64_t)(1.5e9 * test_scale());
	pid_t peer = fork();
	ck_assert_int_ge(peer, 0);
	if (peer == 0) {
		uint64_t rng = 99;
		while (now_ns() < stop) {
			uint64_t v = rng_next(&rng), brk = word(&st(&t)->brk);
			uint64_t choice[] = {0,
					     w.old_tdesc,
					     w.tdesc,
					     v,
					     v & 0x0f0000000000ffe0ull,
					     w.moved,
					     cap_of(w.old_tdesc) + 1,
					     brk & ~31ull};
			uint64_t val = choice[v % 8];
			switch ((v >> 8) % 4) {
			case 0:
				poke_word(&st(&t)->old_tdesc, val);
				break;
			case 1:
				poke_word(&st(&t)->moved, val % (2 * cap_of(w.old_tdesc) + 2));
				break;
			case 2:
				poke_word(&st(&t)->punch_head, val);
				break;
			default:
				poke_word(&st(&t)->punch_done, val);
			}
			if (v % 4 == 0)
				usleep(50);
		}
		_exit(0);
	}
	int status = watched(honest_racing, &t, stop);
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(status == 0,
		      "honest process: status %d (2x: an operation's result, 142: hung)", status);
	model_free(&m);
	ts_close(&t);
}
END_TEST

/* --- copies and the punch list ------------------------------------------- */

/*
 * A copy taken while a freed table waits on the punch list carries the
 * list: the copy holds the table's unpunched pages (copied with the heap's
 * data), and both sets give the memory back as they are written.
 */
START_TEST(copy_keeps_punch_list)
{
	struct ts t, c;
	struct model m;
	uint32_t next = 0;
	shset *cs;

	ts_open(&t, NULL);
	model_init(&m, 400000);
	uint64_t od = to_resize_done(&t, &m, &next, 0, 17);
	ck_assert_uint_eq(word(&st(&t)->punch_head), off_of(od));
	ck_assert_int_eq(shset_copy(t.s, &cs), 0);
	ts_wrap(&c, cs);
	ck_assert_int_eq(shset_verify(c.s), 0);
	assert_content(c.s, &m);
	struct model mc;
	model_init(&mc, m.n);
	memcpy(mc.in, m.in, m.n);
	mc.count = m.count;
	uint32_t x = id_of(next + 1000, 0);
	for (int n = 0; n < 20 || word(&st(&t)->punch_head); n++) {
		ck_assert_int_lt(n, 100000);
		if (n & 1) {
			remove_id(&t, &m, x);
			remove_id(&c, &mc, x);
		} else {
			add_id(&t, &m, x);
			add_id(&c, &mc, x);
		}
	}
	ck_assert_uint_eq(word(&st(&t)->punch_head), 0);
	uint64_t mt = mem_bytes(t.s), mcopy = mem_bytes(c.s);
	ck_assert_msg(mcopy <= mt + (1u << 20),
		      "the copy holds %llu bytes, the original %llu: the freed table's pages stay",
		      (unsigned long long)mcopy, (unsigned long long)mt);
	ck_assert_int_eq(shset_verify(c.s), 0);
	assert_content(c.s, &mc);
	model_free(&mc);
	model_free(&m);
	ts_close(&c);
	ts_close(&t);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("table");
	TCase *tc = tcase_create("resize");
	tcase_set_timeout(tc, 120 * test_scale());
	tcase_add_loop_test(tc, growth_one_by_one, 0, 2);
	tcase_add_test(tc, lookups_race_resizes);
	tcase_add_test(tc, churn_during_resizes);
	tcase_add_test(tc, churn_rebuilds_at_half_load);
	tcase_add_test(tc, foreach_and_copy_mid_resize);
	tcase_add_test(tc, save_load_mid_resize);
	tcase_add_loop_test(tc, algebra_mid_resize, 0, 4);
	tcase_add_loop_test(tc, batch_mid_resize, 0, 3);
	tcase_add_loop_test(tc, shrink_to_empty, 0, 2);
	tcase_add_test(tc, clear_mid_resize_gives_memory_back);
	tcase_add_loop_test(tc, tombstone_churn, 0, 2);
	tcase_add_test(tc, punch_list_gives_pages_back);
	tcase_add_test(tc, resize_table_faulted_in_ahead);
	tcase_add_test(tc, punched_table_reaches_free_list_with_full_log);
	tcase_add_loop_test(tc, abort_mid_resize, 0, 6);
	tcase_add_test(tc, full_set_fills_to_seven_eighths);
	suite_add_tcase(s, tc);

	TCase *tq = tcase_create("capacities");
	tcase_set_timeout(tq, 120 * test_scale());
	tcase_add_test(tq, capacity_codes);
	tcase_add_test(tq, lookup_compares_every_key_byte);
	tcase_add_loop_test(tq, probe_wraps_past_the_end, 0, 4);
	tcase_add_test(tq, resize_between_quarter_steps);
	suite_add_tcase(s, tq);

	TCase *th = tcase_create("hostile");
	tcase_set_timeout(th, 120 * test_scale());
	tcase_add_test(th, hostile_old_tdesc);
	tcase_add_test(th, hostile_tdesc_code);
	tcase_add_test(th, hostile_tdesc_not_faulted_in);
	tcase_add_test(th, hostile_tdesc_untouched_not_faulted_in);
	tcase_add_test(th, hostile_verify_cross_probe_bounded);
	tcase_add_test(th, hostile_moved);
	tcase_add_test(th, hostile_punch_list);
	tcase_add_test(th, hostile_racing_peer);
	suite_add_tcase(s, th);
	tcase_add_test(th, copy_keeps_punch_list);
	tcase_add_test(th, big_key_blocks_give_pages_back);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
