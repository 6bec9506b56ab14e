/* SPDX-License-Identifier: MIT */
/*
 * test_tx.c - the undo log and transactions (src/tx.c) and the bounds
 * checks of src/view.h, on real regions: what a rollback restores and in
 * which order, repair after an owner died mid-transaction, a full log, the
 * commit's reserve, log entries a peer forged, the seqcount readers rely
 * on.
 */
#include "helpers.h"
#include "txhelp.h"

#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "region.h"
#include "table.h"
#include "tx.h"
#include "view.h"

#define STATE_OFF(field) (REGION_STATE_OFF + offsetof(struct tx_state, field))

static struct region *make_region(uint64_t log_bytes)
{
	return txh_region(256ull << 20, log_bytes, "test_tx");
}

static struct tx *begin(struct region *r, struct tx *mem)
{
	return txh_begin(r, mem);
}

/* Heap words to play with: @n words carved and committed, zeroed. */
static uint64_t heap_words(struct region *r, unsigned n)
{
	struct tx t, *x = begin(r, &t);
	uint64_t b;

	ck_assert_int_eq(alloc_get(x, alloc_class(n < 64 ? 512 : 8ull * n), 1, &b), 0);
	memset(r->base + b, 0, 8ull * n);
	tx_commit(x);
	return b;
}

static uint64_t *w64(struct region *r, uint64_t off)
{
	return (uint64_t *)(r->base + off);
}

static uint64_t log_cap(struct region *r)
{
	return r->log_bytes / 16;
}

/* Writes into the log and the state from another process, as a peer. */
struct forged_entry {
	uint64_t off, old;
};

static void peer_forge_log(struct region *r, const struct forged_entry *e, uint64_t n,
			   uint64_t log_n)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t *m = mmap(NULL, r->heap_off, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (m == MAP_FAILED)
			_exit(1);
		memcpy(m + r->log_off, e, n * sizeof(*e));
		memcpy(m + STATE_OFF(log_n), &log_n, 8);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(pid), 0);
}

START_TEST(rollback_newest_first)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 64), b = a + 8;
	struct tx t, *x = begin(r, &t);

	*w64(r, a) = 1;
	*w64(r, b) = 10;
	tx_commit(x); /* nothing logged: not dirty */
	x = begin(r, &t);
	/* The same word logged twice: only restoring the older value last
	 * brings back the committed one. */
	ck_assert_int_eq(tx_log(x, a), 0);
	*w64(r, a) = 2;
	ck_assert_int_eq(tx_log(x, b), 0);
	*w64(r, b) = 20;
	ck_assert_int_eq(tx_log(x, a), 0);
	*w64(r, a) = 3;
	ck_assert_uint_eq(tx_state(r)->log_n, 3);
	const uint64_t *lg = w64(r, r->log_off);
	ck_assert_uint_eq(lg[0], a);
	ck_assert_uint_eq(lg[1], 1);
	ck_assert_uint_eq(lg[4], a);
	ck_assert_uint_eq(lg[5], 2);
	uint64_t aborts = tx_state(r)->n_aborts;
	tx_abort(x);
	ck_assert_uint_eq(*w64(r, a), 1);
	ck_assert_uint_eq(*w64(r, b), 10);
	ck_assert_uint_eq(tx_state(r)->log_n, 0);
	ck_assert_uint_eq(tx_state(r)->n_aborts, aborts + 1);
	ck_assert_uint_eq(tx_state(r)->seq & 1, 0);
	region_close(r);
}
END_TEST

/* A transaction whose own log a peer rewrote under it cannot be undone
 * (the rollback checks every entry before writing any): its abort leaves
 * seq odd and the log in place, so readers never take its half-written
 * words for a committed state; repair refuses the log too. */
START_TEST(abort_that_cannot_roll_back_stays_odd)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 64);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);

	ck_assert_int_eq(tx_log(x, a), 0);
	*w64(r, a) = 5; /* the transaction's write */
	uint64_t s1 = st->seq;
	ck_assert_uint_eq(s1 & 1, 1);
	struct forged_entry e = {UINT64_MAX - 7, 0};
	peer_forge_log(r, &e, 1, 1);
	tx_abort(x);
	ck_assert_uint_eq(st->seq, s1);
	ck_assert_uint_eq(st->log_n, 1);
	ck_assert_int_eq(tx_repair(r), -EUCLEAN);
	ck_assert_uint_eq(st->seq & 1, 1);
	/* The peer's scribble put right, repair undoes the write. */
	struct forged_entry good = {a, 0};
	peer_forge_log(r, &good, 1, 1);
	ck_assert_int_eq(tx_repair(r), 0);
	ck_assert_uint_eq(*w64(r, a), 0);
	ck_assert_uint_eq(st->seq, s1 + 1);
	region_close(r);
}
END_TEST

START_TEST(seq_odd_while_dirty)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 64);
	struct tx_state *st = tx_state(r);
	uint64_t s0 = st->seq, txns = st->n_txns;
	struct tx t, *x;

	ck_assert_uint_eq(s0 & 1, 0);
	/* Beginning writes nothing readers see; a transaction that wrote
	 * nothing commits without touching seq. */
	x = begin(r, &t);
	ck_assert_uint_eq(st->seq, s0);
	tx_commit(x);
	ck_assert_uint_eq(st->seq, s0);
	ck_assert_uint_eq(st->n_txns, txns);

	x = begin(r, &t);
	ck_assert_int_eq(tx_log(x, a), 0);
	ck_assert_uint_eq(st->seq, s0 + 1);
	*w64(r, a) = 7;
	ck_assert_int_eq(tx_log(x, a + 8), 0);
	ck_assert_uint_eq(st->seq, s0 + 1); /* once per transaction */
	tx_commit(x);
	ck_assert_uint_eq(st->seq, s0 + 2);
	ck_assert_uint_eq(st->log_n, 0);
	ck_assert_uint_eq(st->n_txns, txns + 1);
	ck_assert_uint_eq(*w64(r, a), 7);

	x = begin(r, &t);
	tx_touch(x);
	ck_assert_uint_eq(st->seq, s0 + 3);
	tx_abort(x);
	ck_assert_uint_eq(st->seq, s0 + 4);
	region_close(r);
}
END_TEST

START_TEST(commit_publishes_state_words)
{
	struct region *r = make_region(TX_MIN_LOG);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	uint64_t b;

	/* brk and a head move only at commit, logged; an abort keeps both. */
	uint64_t brk = st->brk;
	ck_assert_int_eq(alloc_get(x, alloc_class(4096), 1, &b), 0);
	ck_assert_uint_eq(st->brk, brk);
	tx_abort(x);
	ck_assert_uint_eq(st->brk, brk);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, alloc_class(4096), 1, &b), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->brk, b + 4096);
	region_close(r);
}
END_TEST

/* A child that starts a transaction, changes logged words and a state word
 * through a commit, then dies before the commit point. */
static void die_mid_transaction(struct region *r, uint64_t a, int signal)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct tx t;
		int err;
		struct tx *x = tx_begin(r, &t, &err);
		if (!x)
			_exit(1);
		for (int i = 0; i < 32; i++) {
			if (tx_log(x, a + 8 * (uint64_t)i))
				_exit(2);
			*w64(r, a + 8 * (uint64_t)i) = 1000 + (uint64_t)i;
		}
		uint64_t b;
		if (alloc_get(x, alloc_class(8192), 1, &b))
			_exit(3);
		alloc_commit(x); /* brk published, logged */
		if (signal)
			raise(SIGKILL);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(pid), signal ? 128 + SIGKILL : 0);
}

START_TEST(repair_after_dead_owner)
{
	struct region *r = make_region(TX_MIN_LOG);
	struct tx_state *st = tx_state(r);
	uint64_t a = heap_words(r, 32);

	for (int i = 0; i < 32; i++)
		*w64(r, a + 8 * (uint64_t)i) = (uint64_t)i;
	uint64_t brk = st->brk, seq = st->seq, repairs = st->n_repairs;

	die_mid_transaction(r, a, 1);
	ck_assert_uint_eq(st->seq, seq + 1);
	ck_assert_uint_eq(st->log_n, 33);
	ck_assert_uint_ne(st->brk, brk);
	ck_assert_uint_eq(*w64(r, a + 8), 1001);

	ck_assert_int_eq(tx_repair(r), 0);
	for (int i = 0; i < 32; i++)
		ck_assert_uint_eq(*w64(r, a + 8 * (uint64_t)i), (uint64_t)i);
	ck_assert_uint_eq(st->brk, brk);
	ck_assert_uint_eq(st->log_n, 0);
	ck_assert_uint_eq(st->seq, seq + 2);
	ck_assert_uint_eq(st->n_repairs, repairs + 1);

	/* A log left behind with no one told: the next transaction undoes it
	 * before starting. */
	die_mid_transaction(r, a, 0);
	ck_assert_uint_eq(st->log_n, 33);
	struct tx t, *x = begin(r, &t);
	ck_assert_uint_eq(st->log_n, 0);
	ck_assert_uint_eq(*w64(r, a + 8 * 31), 31);
	ck_assert_uint_eq(st->brk, brk);
	ck_assert_uint_eq(x->brk, brk);
	ck_assert_uint_eq(st->n_repairs, repairs + 2);
	tx_commit(x);
	region_close(r);
}
END_TEST

START_TEST(full_log_is_e2big)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 8);
	struct tx t, *x = begin(r, &t);
	uint64_t room = tx_log_room(x), n = 0;
	int err;

	ck_assert_uint_eq(room, log_cap(r) - TX_LOG_RESERVE);
	ck_assert_uint_eq(log_cap(r), TX_MIN_LOG / 16);
	while ((err = tx_log(x, a)) == 0) {
		n++;
		ck_assert_uint_eq(tx_log_room(x), room - n);
		ck_assert_uint_le(n, room);
	}
	ck_assert_int_eq(err, -E2BIG);
	ck_assert_uint_eq(n, room);
	ck_assert_uint_eq(tx_log_room(x), 0);
	ck_assert_uint_eq(tx_state(r)->log_n, room);
	ck_assert_int_eq(tx_log(x, a), -E2BIG); /* and stays so */
	tx_abort(x);
	ck_assert_uint_eq(tx_state(r)->log_n, 0);
	region_close(r);
}
END_TEST

/* Two key blocks in each of the n classes below the punch list's, one freed and committed; the
 * other freed in a transaction that first filled the log to its limit: the commit splices n lists
 * and publishes n heads and brk from the reserve alone. */
START_TEST(commit_fits_the_reserve)
{
	struct region *r = make_region(TX_MIN_LOG);
	struct tx_state *st = tx_state(r);
	/* Every class whose freed blocks go to a free list (bigger ones go
	 * to the punch list, one chain whatever their classes). */
	enum { N = 100 };
	const unsigned n = alloc_class(2 * ALLOC_PUNCH_MIN);
	uint64_t b1[N], b2[N], pad = heap_words(r, 8);
	struct tx t, *x = begin(r, &t);

	ck_assert_uint_ge(TX_LOG_RESERVE, ALLOC_COMMIT_WORDS + TX_TABLE_WORDS);
	ck_assert_uint_le(TX_LOG_RESERVE * 8, log_cap(r));
	for (unsigned c = 0; c < n; c++) {
		ck_assert_int_eq(alloc_get(x, c, 0, &b1[c]), 0);
		ck_assert_int_eq(alloc_get(x, c, 0, &b2[c]), 0);
	}
	tx_commit(x);
	x = begin(r, &t);
	for (unsigned c = 0; c < n; c++)
		ck_assert_int_eq(alloc_put(x, b1[c], c, 0), 0);
	tx_commit(x);

	/* A dying owner: everything done but the commit point. */
	uint64_t brk = st->brk;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The frees log their blocks' first words while there is room
		 * (after it they would wait in the free queue). */
		x = begin(r, &t);
		for (unsigned c = 0; c < n; c++)
			if (alloc_put(x, b2[c], c, 0))
				_exit(1);
		while (tx_log(x, pad) == 0)
			;
		uint64_t b;
		if (alloc_get(x, n, 0, &b)) /* moves brk */
			_exit(2);
		uint64_t before = st->log_n;
		alloc_commit(x);
		/* One splice and one head per class and brk, all logged. */
		if (st->log_n != before + 2 * n + 1 || st->log_n > log_cap(r))
			_exit(3);
		for (unsigned c = 0; c < n; c++)
			if (st->head[c] != b2[c])
				_exit(4);
		raise(SIGKILL);
	}
	ck_assert_int_eq(wait_status(pid), 128 + SIGKILL);
	ck_assert_int_eq(tx_repair(r), 0);
	ck_assert_uint_eq(st->brk, brk);
	for (unsigned c = 0; c < n; c++) {
		ck_assert_uint_eq(st->head[c], b1[c]);
		ck_assert_uint_eq(*w64(r, b1[c]) & ((1ull << 40) - 1), 0);
	}

	/* Committed for real, from a full log: every list there. */
	x = begin(r, &t);
	for (unsigned c = 0; c < n; c++)
		ck_assert_int_eq(alloc_put(x, b2[c], c, 0), 0);
	while (tx_log(x, pad) == 0)
		;
	tx_commit(x);
	ck_assert_uint_eq(st->log_n, 0);
	for (unsigned c = 0; c < n; c++) {
		ck_assert_uint_eq(st->head[c], b2[c]);
		ck_assert_uint_eq((*w64(r, b2[c]) & ((1ull << 40) - 1)) << 4, b1[c]);
	}
	region_close(r);
}
END_TEST

/* A forged log naming @bad among good entries: refused whole. */
static void forged_target_refused(uint64_t (*bad)(struct region *r))
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 8);
	struct tx_state *st = tx_state(r);

	*w64(r, a) = 5;
	uint8_t hdr[4096];
	memcpy(hdr, r->base, sizeof(hdr));
	uint64_t target = bad(r);
	struct forged_entry e[3] = {{a, 77}, {target, 0x4141414141414141ull}, {a + 8, 78}};
	peer_forge_log(r, e, 3, 3);
	ck_assert_int_eq(tx_repair(r), -EUCLEAN);
	/* Nothing was written: not the good entries either. */
	ck_assert_uint_eq(*w64(r, a), 5);
	ck_assert_uint_eq(*w64(r, a + 8), 0);
	ck_assert_int_eq(memcmp(r->base, hdr, REGION_STATE_OFF), 0);
	ck_assert_uint_eq(st->log_n, 3);
	int err = 0;
	struct tx t;
	ck_assert_ptr_null(tx_begin(r, &t, &err));
	ck_assert_int_eq(err, -EUCLEAN);
	region_close(r);
}

static uint64_t bad_header(struct region *r)
{
	(void)r;
	return 0; /* the magic */
}
static uint64_t bad_seq(struct region *r)
{
	(void)r;
	return STATE_OFF(seq);
}
/* The words before count in seq's line: restoring log_n would revive or
 * hide a log, restoring mtx would forge a multi-shard commit point. */
static uint64_t bad_log_n(struct region *r)
{
	(void)r;
	return STATE_OFF(log_n);
}
static uint64_t bad_mtx(struct region *r)
{
	(void)r;
	return STATE_OFF(mtx);
}
static uint64_t bad_lock(struct region *r)
{
	(void)r;
	return REGION_LOCK_OFF;
}
static uint64_t bad_log(struct region *r)
{
	return r->log_off;
}
static uint64_t bad_past_state(struct region *r)
{
	(void)r;
	return REGION_STATE_OFF + sizeof(struct tx_state);
}
static uint64_t bad_past_file(struct region *r)
{
	return r->hdr->size;
}
static uint64_t bad_past_map(struct region *r)
{
	return r->map_size + 4096;
}
static uint64_t bad_misaligned(struct region *r)
{
	return r->heap_off + 4;
}
static uint64_t bad_wrapping(struct region *r)
{
	(void)r;
	return UINT64_MAX - 7;
}

START_TEST(forged_targets_refused)
{
	uint64_t (*bad[])(struct region *) = {
	    bad_header,	    bad_seq,	   bad_log_n,	 bad_mtx,	 bad_lock,    bad_log,
	    bad_past_state, bad_past_file, bad_past_map, bad_misaligned, bad_wrapping};

	forged_target_refused(bad[_i]);
}
END_TEST

START_TEST(forged_length_refused)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t a = heap_words(r, 8);
	struct forged_entry e = {a, 9};

	peer_forge_log(r, &e, 1, log_cap(r) + 1);
	ck_assert_int_eq(tx_repair(r), -EUCLEAN);
	ck_assert_uint_eq(*w64(r, a), 0);
	/* A good log of the same entry is applied. */
	peer_forge_log(r, &e, 1, 1);
	ck_assert_int_eq(tx_repair(r), 0);
	ck_assert_uint_eq(*w64(r, a), 9);
	ck_assert_uint_eq(tx_state(r)->log_n, 0);
	region_close(r);
}
END_TEST

START_TEST(read_only_refused)
{
	struct region *r = make_region(TX_MIN_LOG), *ro = NULL;

	ck_assert_int_eq(region_attach(&ro, r->fd, 1), 0);
	int err = 0;
	struct tx t;
	ck_assert_ptr_null(tx_begin(ro, &t, &err));
	ck_assert_int_eq(err, -EROFS);
	region_close(ro);
	region_close(r);
}
END_TEST

START_TEST(view_bounds)
{
	struct region *r = make_region(TX_MIN_LOG);
	uint64_t h = r->heap_off, brk = h + 4096;
	struct view v;

	ck_assert_int_eq(region_grow(r, brk), 0);
	view_region(&v, r, brk);
	ck_assert_ptr_eq(view_heap(&v, h, 16), r->base + h);
	ck_assert_ptr_eq(view_heap(&v, brk - 16, 16), r->base + brk - 16);
	ck_assert_ptr_eq(view_heap(&v, h + 16, 4096 - 16), r->base + h + 16);
	ck_assert_ptr_null(view_heap(&v, brk - 16, 17));	/* past brk */
	ck_assert_ptr_null(view_heap(&v, h - 16, 16));		/* below the heap */
	ck_assert_ptr_null(view_heap(&v, h + 8, 8));		/* misaligned */
	ck_assert_ptr_null(view_heap(&v, h + 4, 4));		/* misaligned */
	ck_assert_ptr_null(view_heap(&v, h, UINT64_MAX));	/* wraps */
	ck_assert_ptr_null(view_heap(&v, UINT64_MAX - 15, 32)); /* wraps */
	ck_assert_ptr_null(view_heap(&v, 1ull << 63, 1ull << 63));
	/* view_at: anything in the file, nothing past it or wrapping. */
	ck_assert_ptr_eq(view_at(&v, 0, 8), r->base);
	ck_assert_ptr_eq(view_at(&v, 3, 5), r->base + 3);
	uint64_t size = r->hdr->size;
	ck_assert_ptr_nonnull(view_at(&v, size - 8, 8));
	ck_assert_ptr_null(view_at(&v, size - 8, 9));
	ck_assert_ptr_null(view_at(&v, r->map_size, 8));
	ck_assert_ptr_null(view_at(&v, 8, UINT64_MAX - 7));
	ck_assert_ptr_null(view_at(&v, UINT64_MAX, 2));

	/* A private copy of [h, brk): only that, at its own address. */
	static uint8_t buf[4096];
	uint64_t seed[2] = {1, 2};
	view_copy(&v, buf, h, brk, seed, 0, 0);
	ck_assert_ptr_eq(view_heap(&v, h, 16), buf);
	ck_assert_ptr_eq(view_heap(&v, brk - 32, 32), buf + 4096 - 32);
	ck_assert_ptr_eq(view_at(&v, h + 3, 1), buf + 3);
	ck_assert_ptr_null(view_at(&v, h - 1, 1));
	ck_assert_ptr_null(view_at(&v, brk - 4, 8));
	ck_assert_ptr_null(view_heap(&v, h + 24, 8));
	ck_assert_ptr_null(view_heap(&v, brk, 0 + 16));
	ck_assert_ptr_null(view_at(&v, h, UINT64_MAX));
	ck_assert_uint_eq(v.seed[1], 2);
	region_close(r);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("tx");
	TCase *tc = tcase_create("tx");

	tcase_set_timeout(tc, 60 * test_scale());
	tcase_add_test(tc, rollback_newest_first);
	tcase_add_test(tc, seq_odd_while_dirty);
	tcase_add_test(tc, abort_that_cannot_roll_back_stays_odd);
	tcase_add_test(tc, commit_publishes_state_words);
	tcase_add_test(tc, repair_after_dead_owner);
	tcase_add_test(tc, full_log_is_e2big);
	tcase_add_test(tc, commit_fits_the_reserve);
	tcase_add_loop_test(tc, forged_targets_refused, 0, 11);
	tcase_add_test(tc, forged_length_refused);
	tcase_add_test(tc, read_only_refused);
	tcase_add_test(tc, view_bounds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
