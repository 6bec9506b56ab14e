/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c - the block allocator (src/alloc.c) on real regions: size
 * classes, carving from brk, free lists and when they are reused, what
 * is logged, the free queue, rollback, giving pages back, the checks of links a peer wrote, and the
 * end of the region.
 */
#include "helpers.h"
#include "txhelp.h"

#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "alloc.h"
#include "region.h"
#include "table.h"
#include "tx.h"
#include "view.h"

#define LINK_MASK ((1ull << 40) - 1)

static struct region *make_region(uint64_t max)
{
	return txh_region(max, TX_MIN_LOG, "test_alloc");
}

static struct tx *begin(struct region *r, struct tx *mem)
{
	return txh_begin(r, mem);
}

static uint64_t word(struct region *r, uint64_t off)
{
	uint64_t w;

	memcpy(&w, r->base + off, 8);
	return w;
}

/* The next block a free-list word links to. */
static uint64_t next_of(struct region *r, uint64_t b)
{
	return (word(r, b) & LINK_MASK) << 4;
}

/* Writes one word into the set from another process, as a peer would: its
 * own mapping of the fd, no lock. */
static void peer_write64(struct region *r, uint64_t off, uint64_t val)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t len = (off + 8 + 4095) & ~4095ull;
		uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (m == MAP_FAILED)
			_exit(1);
		memcpy(m + off, &val, 8);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(pid), 0);
}

/* The free list of a class as committed, walked with a bound. */
static int list_len(struct region *r, unsigned cls)
{
	int n = 0;

	for (uint64_t b = tx_state(r)->head[cls]; b && n < 100000; b = next_of(r, b))
		n++;
	return n;
}

static int verify_now(struct region *r)
{
	struct tx_state st;
	struct view v;

	memcpy(&st, tx_state(r), sizeof(st));
	view_region(&v, r, st.brk);
	return alloc_verify(&v, &st);
}

START_TEST(classes)
{
	ck_assert_uint_eq(ALLOC_CLASSES, 159);
	ck_assert_uint_eq(alloc_class_bytes(0), 32);
	ck_assert_uint_eq(alloc_class_bytes(14), 256);
	ck_assert_uint_eq(alloc_class_bytes(15), 320);
	ck_assert_uint_eq(alloc_class_bytes(16), 384);
	ck_assert_uint_eq(alloc_class_bytes(17), 448);
	ck_assert_uint_eq(alloc_class_bytes(18), 512);
	ck_assert_uint_eq(alloc_class_bytes(19), 640);
	ck_assert_uint_eq(alloc_class_bytes(ALLOC_CLASSES - 1), REGION_MAX_BYTES);
	for (unsigned c = 0; c < ALLOC_CLASSES; c++) {
		uint64_t sz = alloc_class_bytes(c);
		/* Each class is the smallest block for its own size, and the
		 * next byte needs the next class. */
		ck_assert_uint_eq(alloc_class(sz), c);
		ck_assert_uint_eq(alloc_class(sz + 1), c + 1);
		if (c)
			ck_assert_uint_eq(alloc_class(alloc_class_bytes(c - 1) + 1), c);
		ck_assert_uint_eq(sz % 16, 0);
		if (c)
			ck_assert_uint_gt(sz, alloc_class_bytes(c - 1));
		ck_assert_uint_eq(alloc_class_align(c), sz >= 512 ? 64 : 16);
	}
	/* Tables: every power of two from 512 on is exactly a class. */
	for (unsigned k = 9; k <= 44; k++)
		ck_assert_uint_eq(alloc_class_bytes(alloc_class(1ull << k)), 1ull << k);
	ck_assert_uint_eq(alloc_class(0), 0);
	ck_assert_uint_eq(alloc_class(1), 0);
	ck_assert_uint_eq(alloc_class(REGION_MAX_BYTES + 1), ALLOC_CLASSES);
	ck_assert_uint_eq(alloc_class(UINT64_MAX), ALLOC_CLASSES);
	/* Waste: under 16 bytes up to 256, under a fifth above. */
	for (uint64_t b = 1; b < (1u << 20); b += b < 4096 ? 1 : 97) {
		uint64_t sz = alloc_class_bytes(alloc_class(b));
		ck_assert_uint_ge(sz, b);
		if (b > 32)
			ck_assert(sz - b < 16 || (sz - b) * 5 < sz);
	}
	/* A key block: the key alone. */
	ck_assert_uint_eq(alloc_class_bytes(alloc_key_class(64)), 64);
	ck_assert_uint_eq(alloc_class_bytes(alloc_key_class(21)), 32);
	ck_assert_uint_eq(alloc_class_bytes(alloc_key_class(33)), 48);
	ck_assert_uint_eq(alloc_class_bytes(alloc_key_class(65535)), 65536);
}
END_TEST

START_TEST(carved_from_brk)
{
	struct region *r = make_region(256ull << 20);
	struct tx t, *x = begin(r, &t);
	uint64_t heap = r->heap_off, prev_end = heap, off[70];
	unsigned n = 0;

	/* Whatever lay there before: a fresh block is the caller's to write. */
	ck_assert_int_eq(region_grow(r, heap + (8u << 20)), 0);
	memset(r->base + heap, 0xa5, 8u << 20);

	/* One block of each class up to 1 MiB, alternating key blocks and
	 * (from 512 bytes) tables: aligned, in order, not overlapping. */
	for (unsigned c = 0; alloc_class_bytes(c) <= (1u << 20); c++, n++) {
		uint64_t sz = alloc_class_bytes(c), b = 0;
		int table = sz >= 512 && (c & 1);
		ck_assert_int_eq(alloc_get(x, c, table, &b), 0);
		ck_assert_uint_eq(b % alloc_class_align(c), 0);
		ck_assert_uint_ge(b, prev_end);
		ck_assert_uint_lt(b - prev_end, alloc_class_align(c));
		memset(r->base + b, (int)c, sz);
		prev_end = b + sz;
		off[n] = b;
	}
	ck_assert_uint_eq(n, 15 + 4 * 12);
	/* Tables are never carved below 512 bytes (their alignment). */
	uint64_t b;
	ck_assert_int_eq(alloc_get(x, alloc_class(256), 1, &b), -EINVAL);
	tx_commit(x);
	ck_assert_uint_eq(tx_state(r)->brk, prev_end);
	for (unsigned i = 0; i < n; i++)
		ck_assert_uint_eq(r->base[off[i] + alloc_class_bytes(i) - 1], i);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

START_TEST(reuse_after_commit_only)
{
	struct region *r = make_region(64ull << 20);
	struct tx t, *x = begin(r, &t);
	unsigned c = alloc_key_class(64);
	uint64_t a, b, d, e;

	ck_assert_int_eq(alloc_get(x, c, 0, &a), 0);
	ck_assert_int_eq(alloc_get(x, c, 0, &b), 0);
	tx_commit(x);

	/* Freed blocks wait on private lists: the same transaction carves new
	 * ones instead of reusing them. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, a, c, 0), 0);
	ck_assert_int_eq(alloc_put(x, b, c, 0), 0);
	ck_assert_uint_eq(tx_state(r)->head[c], 0); /* not before the commit */
	ck_assert_int_eq(alloc_get(x, c, 0, &d), 0);
	ck_assert_uint_ne(d, a);
	ck_assert_uint_ne(d, b);
	ck_assert_uint_gt(d, b);
	tx_commit(x);
	ck_assert_int_eq(list_len(r, c), 2);
	/* The list is linked in 16-byte units: head -> b -> a -> end. */
	ck_assert_uint_eq(tx_state(r)->head[c], b);
	ck_assert_uint_eq(next_of(r, b), a);
	ck_assert_uint_eq(next_of(r, a), 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* After the commit they are reused, newest first; other classes are
	 * untouched. */
	uint64_t brk = tx_state(r)->brk;
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, c, 0, &e), 0);
	ck_assert_uint_eq(e, b);
	ck_assert_int_eq(alloc_get(x, c, 0, &e), 0);
	ck_assert_uint_eq(e, a);
	ck_assert_int_eq(alloc_get(x, c, 0, &e), 0);
	ck_assert_uint_ge(e, brk); /* list empty: from brk again */
	ck_assert_int_eq(alloc_get(x, c + 1, 0, &e), 0);
	ck_assert_uint_ge(e, brk);
	tx_commit(x);
	ck_assert_uint_eq(tx_state(r)->head[c], 0);
	for (unsigned k = 0; k < ALLOC_CLASSES; k++)
		ck_assert_uint_eq(tx_state(r)->head[k], 0);
	region_close(r);
}
END_TEST

START_TEST(classes_have_their_own_lists)
{
	struct region *r = make_region(64ull << 20);
	struct tx t, *x = begin(r, &t);
	unsigned cls[] = {0, 1, 3, 14, 15, 18, 19, 30};
	uint64_t b[8];

	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(alloc_get(x, cls[i], 0, &b[i]), 0);
	tx_commit(x);
	x = begin(r, &t);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(alloc_put(x, b[i], cls[i], 0), 0);
	tx_commit(x);
	for (int i = 0; i < 8; i++) {
		ck_assert_uint_eq(tx_state(r)->head[cls[i]], b[i]);
		ck_assert_int_eq(list_len(r, cls[i]), 1);
	}
	x = begin(r, &t);
	for (int i = 7; i >= 0; i--) {
		uint64_t got;
		ck_assert_int_eq(alloc_get(x, cls[i], 0, &got), 0);
		ck_assert_uint_eq(got, b[i]);
	}
	tx_commit(x);
	region_close(r);
}
END_TEST

START_TEST(first_words_logged)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	unsigned c = alloc_key_class(40);
	uint64_t a, b, got, *lg = (uint64_t *)(r->base + r->log_off);

	ck_assert_int_eq(alloc_get(x, c, 0, &a), 0);
	ck_assert_int_eq(alloc_get(x, c, 0, &b), 0);
	ck_assert_uint_eq(st->log_n, 0); /* carved: past the committed heap */
	memset(r->base + a, 'a', 40);
	memset(r->base + b, 'b', 40);
	tx_commit(x);

	/* Freeing a block logs its first word, a key's bytes: a rollback
	 * puts the key back whole. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, a, c, 0), 0);
	ck_assert_uint_eq(st->log_n, 1);
	ck_assert_uint_eq(lg[0], a);
	ck_assert_uint_eq(lg[1], 0x6161616161616161ull);
	ck_assert_uint_eq(next_of(r, a), 0); /* now a link (end of the list) */
	tx_abort(x);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(r->base[a + i], 'a');
	ck_assert_uint_eq(st->head[c], 0);

	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, a, c, 0), 0);
	ck_assert_int_eq(alloc_put(x, b, c, 0), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->head[c], b);
	ck_assert_uint_eq(next_of(r, b), a);

	/* Popping logs the link the committed list needs; a rollback puts
	 * the list back as it was. */
	x = begin(r, &t);
	uint64_t link = word(r, b);
	ck_assert_int_eq(alloc_get(x, c, 0, &got), 0);
	ck_assert_uint_eq(got, b);
	ck_assert_uint_eq(st->log_n, 1);
	ck_assert_uint_eq(lg[0], b);
	ck_assert_uint_eq(lg[1], link);
	memset(r->base + b, 'z', 40); /* the new key */
	/* Freed again in the same transaction: logged again; the oldest
	 * entry is what a rollback leaves. */
	ck_assert_int_eq(alloc_put(x, b, c, 0), 0);
	ck_assert_uint_eq(st->log_n, 2);
	tx_abort(x);
	ck_assert_uint_eq(st->head[c], b);
	ck_assert_uint_eq(word(r, b), link);
	ck_assert_int_eq(list_len(r, c), 2);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

/* Fills the undo log of @x (all but the reserve) with entries for a word
 * of the heap. */
static void fill_log(struct tx *x, uint64_t off)
{
	while (tx_log(x, off) == 0)
		;
}

/* The free queue: blocks freed once the log is full, their entries in
 * order; 0 if it fails the checks a drain makes. */
static uint64_t queued(struct region *r)
{
	uint64_t n = 0;

	for (uint64_t q = tx_state(r)->free_q; q; q = next_of(r, q))
		n += word(r, q) >> 40;
	return n;
}

START_TEST(free_queue_when_the_log_is_full)
{
	struct region *r = make_region(256ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	unsigned c = alloc_key_class(64), big = alloc_class(2 * ALLOC_PUNCH_MIN);
	enum { N = 1200 }; /* more than two queue blocks' worth */
	static uint64_t b[N];
	uint64_t pad, tb;

	ck_assert_int_eq(alloc_get(x, c, 0, &pad), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(alloc_get(x, c, 0, &b[i]), 0);
		memset(r->base + b[i], 'k', 64);
	}
	ck_assert_int_eq(alloc_get(x, big, 1, &tb), 0);
	tx_commit(x);
	uint64_t brk = st->brk;

	/* Past the log's room, frees write nothing into the blocks; undone,
	 * nothing is left of them. */
	x = begin(r, &t);
	fill_log(x, pad);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(alloc_put(x, b[i], c, 0), 0);
	ck_assert_int_eq(alloc_put(x, tb, big, 1), -E2BIG); /* a table needs the log */
	tx_abort(x);
	ck_assert_uint_eq(st->free_q, 0);
	ck_assert_uint_eq(st->brk, brk);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(word(r, b[i]), 0x6b6b6b6b6b6b6b6bull);

	/* Committed: listed in the queue, none yet on the free list, the
	 * keys' bytes untouched until then. */
	x = begin(r, &t);
	fill_log(x, pad);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(alloc_put(x, b[i], c, 0), 0);
	tx_commit(x);
	ck_assert_uint_ne(st->free_q, 0);
	ck_assert_uint_eq(queued(r), N);
	ck_assert_int_eq(list_len(r, c), 0);
	ck_assert_int_eq(verify_now(r), 0);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(word(r, b[i]), 0x6b6b6b6b6b6b6b6bull);

	/* Each transaction moves up to 64 to the free list as it begins; an
	 * undone one moves none. */
	x = begin(r, &t);
	ck_assert_uint_eq(queued(r), N - 64);
	tx_abort(x);
	ck_assert_uint_eq(queued(r), N);
	ck_assert_int_eq(list_len(r, c), 0);
	int txns = 0;
	while (st->free_q && txns < 100) {
		x = begin(r, &t);
		tx_commit(x);
		txns++;
		ck_assert_int_eq(verify_now(r), 0);
		ck_assert_uint_eq(queued(r) + (uint64_t)list_len(r, c), N);
	}
	/* Queue blocks of 511, 511 and 178 entries: 8 + 8 + 3 steps, each
	 * block freed by the step that empties it. */
	ck_assert_int_eq(txns, 19);
	ck_assert_int_eq(list_len(r, c), N);
	/* The queue's own blocks are free too. */
	ck_assert_int_eq(list_len(r, alloc_class(4096)), 3);
	region_close(r);
}
END_TEST

/* @n key blocks of class @c allocated, then freed by a transaction whose
 * log is full: all listed in the free queue. */
static void queue_blocks(struct region *r, unsigned c, int n)
{
	static uint64_t b[2048];
	struct tx t, *x = begin(r, &t);
	uint64_t pad;

	ck_assert_int_le(n, 2048);
	ck_assert_int_eq(alloc_get(x, c, 0, &pad), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(alloc_get(x, c, 0, &b[i]), 0);
	tx_commit(x);
	x = begin(r, &t);
	fill_log(x, pad);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(alloc_put(x, b[i], c, 0), 0);
	tx_commit(x);
}

/* Key blocks are taken from the free queue, its last entries first, with
 * one log entry per queue block, not one per block: a transaction can
 * reuse more queued blocks than its log holds.  Undone, the queue lists
 * them all again; emptied queue blocks are freed; a block of another
 * class is not taken. */
START_TEST(key_blocks_taken_from_the_free_queue)
{
	struct region *r = make_region(256ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x;
	unsigned c = alloc_key_class(64), other = alloc_key_class(200);
	enum { N = 1200 };
	uint64_t got;

	queue_blocks(r, c, N);
	ck_assert_uint_eq(queued(r), N);
	uint64_t brk = st->brk, q0 = st->free_q;

	/* Another class: none taken (a begin drains 64 to the free list). */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, other, 0, &got), 0);
	ck_assert_uint_ge(got, brk);
	tx_abort(x);
	ck_assert_uint_eq(queued(r), N);

	/* All of them in one transaction, for a handful of log entries:
	 * undone, every one is listed again. */
	x = begin(r, &t);
	uint64_t room = tx_log_room(x);
	for (int i = 0; i < N - 64; i++) {
		ck_assert_int_eq(alloc_get(x, c, 0, &got), 0);
		ck_assert_uint_lt(got, brk);
		memset(r->base + got, 'n', 64);
	}
	/* One entry for the drained block's count, one for each queue block
	 * the takes opened, and those the emptied ones needed: a handful. */
	ck_assert_uint_ge(tx_log_room(x) + 8, room);
	tx_abort(x);
	ck_assert_uint_eq(st->free_q, q0);
	ck_assert_uint_eq(queued(r), N);
	ck_assert_int_eq(verify_now(r), 0);

	x = begin(r, &t);
	for (int i = 0; i < N - 64; i++) {
		ck_assert_int_eq(alloc_get(x, c, 0, &got), 0);
		ck_assert_uint_lt(got, brk);
	}
	tx_commit(x);
	ck_assert_uint_eq(st->brk, brk);
	ck_assert_uint_eq(queued(r), 0);
	ck_assert_int_eq(list_len(r, c), 64); /* those the begin drained */
	ck_assert_int_eq(verify_now(r), 0);
	/* The last queue block, emptied, goes as the next one begins. */
	x = begin(r, &t);
	tx_commit(x);
	ck_assert_uint_eq(st->free_q, 0);
	ck_assert_int_eq(list_len(r, alloc_class(4096)), 3);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

/* What a transaction wrote into the first queue block is not read back
 * from it: a peer that puts the count back up after the begin's drain
 * does not make a key allocation take a block the drain already moved. */
START_TEST(queue_count_kept_private)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x;
	unsigned c = alloc_key_class(64);
	uint64_t got;

	queue_blocks(r, c, 600);
	uint64_t q = st->free_q, w0 = word(r, q), n0 = w0 >> 40;
	ck_assert_uint_gt(n0, 64);
	/* Entry n0 - 65: the last one the drain leaves. */
	uint64_t want = (word(r, q + 8 * (n0 - 64)) & LINK_MASK) << 4;

	x = begin(r, &t); /* drains 64 */
	ck_assert_uint_eq(word(r, q) >> 40, n0 - 64);
	peer_write64(r, q, w0);
	ck_assert_int_eq(alloc_get(x, c, 0, &got), 0);
	ck_assert_uint_eq(got, want);
	tx_abort(x);
	region_close(r);
}
END_TEST

START_TEST(hostile_free_queue)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	unsigned c = alloc_key_class(64);
	uint64_t pad, b[3];

	ck_assert_int_eq(alloc_get(x, c, 0, &pad), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(alloc_get(x, c, 0, &b[i]), 0);
	tx_commit(x);
	x = begin(r, &t);
	fill_log(x, pad);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(alloc_put(x, b[i], c, 0), 0);
	tx_commit(x);
	uint64_t q = st->free_q, w = word(r, q), e = word(r, q + 8);

	/* A count past the block, a queue block outside the heap, an entry
	 * of a class that does not exist or outside the heap: verify says
	 * so, and a transaction drops the queue (its blocks are lost, never
	 * misused) without writing anything. */
	const uint64_t bad[][2] = {
	    {q, (w & ((1ull << 40) - 1)) | (512ull << 40)},
	    {q + 8, e | (250ull << 40)},
	    {q + 8, (e & ~((1ull << 40) - 1)) | ((r->map_size >> 4) + 1)},
	};
	for (unsigned i = 0; i < 3; i++) {
		uint64_t keep = word(r, bad[i][0]);
		peer_write64(r, bad[i][0], bad[i][1]);
		ck_assert_int_eq(verify_now(r), -EUCLEAN);
		peer_write64(r, bad[i][0], keep);
		ck_assert_int_eq(verify_now(r), 0);
	}
	peer_write64(r, (uint64_t)((uint8_t *)&st->free_q - r->base), r->map_size + 4096);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	x = begin(r, &t);
	tx_commit(x);
	ck_assert_uint_eq(st->free_q, 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* The same for a bad entry met while draining. */
	x = begin(r, &t);
	fill_log(x, pad);
	ck_assert_int_eq(alloc_put(x, b[0], c, 0), 0);
	tx_commit(x);
	q = st->free_q;
	peer_write64(r, q + 8, word(r, q + 8) | (250ull << 40));
	x = begin(r, &t);
	tx_commit(x);
	ck_assert_uint_eq(st->free_q, 0);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

/* What the committed heap looks like to the allocator: brk, the heads, and
 * each list as walked. */
struct heap_image {
	uint64_t brk, head[ALLOC_CLASSES];
	uint64_t list[ALLOC_CLASSES][16];
	int n[ALLOC_CLASSES];
};

static void image_take(struct region *r, struct heap_image *im)
{
	memset(im, 0, sizeof(*im));
	im->brk = tx_state(r)->brk;
	memcpy(im->head, tx_state(r)->head, sizeof(im->head));
	for (unsigned c = 0; c < ALLOC_CLASSES; c++)
		for (uint64_t b = im->head[c]; b; b = next_of(r, b)) {
			ck_assert_int_lt(im->n[c], 16);
			im->list[c][im->n[c]++] = b;
		}
}

static void image_check(struct region *r, const struct heap_image *im)
{
	struct heap_image now;

	image_take(r, &now);
	ck_assert_uint_eq(now.brk, im->brk);
	for (unsigned c = 0; c < ALLOC_CLASSES; c++) {
		ck_assert_uint_eq(now.head[c], im->head[c]);
		ck_assert_int_eq(now.n[c], im->n[c]);
		for (int i = 0; i < im->n[c]; i++)
			ck_assert_uint_eq(now.list[c][i], im->list[c][i]);
	}
}

START_TEST(abort_restores_free_lists)
{
	struct region *r = make_region(64ull << 20);
	struct tx t, *x = begin(r, &t);
	unsigned kc = alloc_key_class(100), tc = alloc_class(4096); /* not punched */
	uint64_t k[6], tb[3], got;

	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(alloc_get(x, kc, 0, &k[i]), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(alloc_get(x, tc, 1, &tb[i]), 0);
	tx_commit(x);
	x = begin(r, &t);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(alloc_put(x, k[i], kc, 0), 0);
	ck_assert_int_eq(alloc_put(x, tb[0], tc, 1), 0);
	ck_assert_int_eq(alloc_put(x, tb[1], tc, 1), 0);
	tx_commit(x);
	ck_assert_int_eq(list_len(r, kc), 4);
	ck_assert_int_eq(list_len(r, tc), 2);

	static struct heap_image im;
	image_take(r, &im);
	uint8_t live_table[4096];
	memcpy(live_table, r->base + tb[2], sizeof(live_table));
	/* Pop from both lists (the tables wiped as table.c would), free live
	 * blocks and popped ones, carve from brk; then abort. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, kc, 0, &got), 0);
	memset(r->base + got + 8, 0x11, 100);
	ck_assert_int_eq(alloc_put(x, got, kc, 0), 0);
	ck_assert_int_eq(alloc_get(x, kc, 0, &got), 0);
	ck_assert_int_eq(alloc_get(x, tc, 1, &got), 0);
	ck_assert_int_eq(tx_log(x, got + 8), 0);
	memset(r->base + got, 0, 16);
	ck_assert_int_eq(alloc_put(x, k[4], kc, 0), 0);
	ck_assert_int_eq(alloc_put(x, tb[2], tc, 1), 0);
	ck_assert_int_eq(alloc_get(x, alloc_class(2048), 1, &got), 0);
	ck_assert_int_eq(alloc_get(x, kc, 0, &got), 0);
	tx_abort(x);
	image_check(r, &im);
	ck_assert_int_eq(memcmp(r->base + tb[2], live_table, sizeof(live_table)), 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* The same after the lists were committed-read in another order. */
	x = begin(r, &t);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(alloc_get(x, kc, 0, &got), 0);
	ck_assert_int_eq(alloc_get(x, tc, 1, &got), 0);
	ck_assert_int_eq(alloc_put(x, got, tc, 1), 0);
	tx_abort(x);
	image_check(r, &im);
	region_close(r);
}
END_TEST

static uint64_t file_blocks(struct region *r)
{
	struct stat s;

	ck_assert_int_eq(fstat(r->fd, &s), 0);
	return (uint64_t)s.st_blocks;
}

/* A transaction that writes something; its start takes a punch step. */
static void dirty_commit(struct region *r)
{
	struct tx t, *x = begin(r, &t);

	tx_touch(x);
	tx_commit(x);
}

/* Commits transactions that change nothing until the punch list is empty
 * (each gives back one step): how many it took. */
static unsigned punch_through(struct region *r)
{
	unsigned n = 0;

	while (tx_state(r)->punch_head && n < 100000) {
		dirty_commit(r);
		n++;
	}
	ck_assert_uint_eq(tx_state(r)->punch_head, 0);
	return n;
}

START_TEST(freed_tables_give_pages_back)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	uint64_t big = 4u << 20, tb;
	unsigned c = alloc_class(big);

	ck_assert_int_eq(alloc_get(x, c, 1, &tb), 0);
	memset(r->base + tb, 0x5a, big); /* every page in memory */
	tx_commit(x);
	uint64_t full = file_blocks(r);

	/* Not while a rollback may still need the table... */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, tb, c, 1), 0);
	ck_assert_uint_eq(file_blocks(r), full);
	tx_abort(x);
	ck_assert_uint_eq(file_blocks(r), full);
	ck_assert_uint_eq(st->punch_head, 0);
	ck_assert_uint_eq(r->base[tb + big - 1], 0x5a);
	ck_assert_uint_eq(r->base[tb], 0x5a);

	/* ...but once a commit made it free: to the punch list, then a
	 * bounded step as each later transaction begins (before it marks the
	 * set as changing), all but its first page... */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, tb, c, 1), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, tb);
	ck_assert_uint_eq(st->head[c], 0);
	ck_assert_uint_eq(file_blocks(r), full);
	ck_assert_int_eq(verify_now(r), 0);
	x = begin(r, &t);
	ck_assert_uint_eq(st->seq & 1, 0);
	uint64_t half = file_blocks(r);
	ck_assert_uint_le(half + (ALLOC_PUNCH_STEP - 4096) / 512, full);
	ck_assert_uint_gt(half + (big - 2 * 4096) / 512, full); /* one step only */
	tx_commit(x);
	ck_assert_uint_eq(st->punch_done, 4096 + ALLOC_PUNCH_STEP);
	ck_assert_uint_eq(st->punch_head, tb);
	ck_assert_int_eq(verify_now(r), 0);
	/* A step each: every page but the first (tb is page-aligned). */
	ck_assert_uint_eq(tb % 4096, 0);
	ck_assert_uint_eq(punch_through(r),
			  (big - 4096 + ALLOC_PUNCH_STEP - 1) / ALLOC_PUNCH_STEP - 1);
	ck_assert_uint_le(file_blocks(r) + (big - 2 * 4096) / 512, full);
	ck_assert_uint_eq(r->base[tb + big - 1], 0);
	/* ...and then onto the free list of its class, reused from there. */
	ck_assert_uint_eq(st->punch_head, 0);
	ck_assert_uint_eq(st->head[c], tb);
	ck_assert_uint_eq(next_of(r, tb), 0);
	ck_assert_int_eq(verify_now(r), 0);
	x = begin(r, &t);
	uint64_t again;
	ck_assert_int_eq(alloc_get(x, c, 1, &again), 0);
	ck_assert_uint_eq(again, tb);
	tx_commit(x);

	/* A small table keeps its pages and goes straight to its list. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, alloc_class(4096), 1, &tb), 0);
	memset(r->base + tb, 1, 4096);
	tx_commit(x);
	full = file_blocks(r);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, tb, alloc_class(4096), 1), 0);
	tx_commit(x);
	dirty_commit(r);
	ck_assert_uint_eq(file_blocks(r), full);
	ck_assert_uint_eq(st->head[alloc_class(4096)], tb);
	region_close(r);
}
END_TEST

/* A table whose punching ends as a transaction begins reaches its free
 * list at that transaction's commit even when the transaction filled the
 * log: the splice is logged from the commit's reserve. */
START_TEST(punched_table_listed_from_a_full_log)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	const uint64_t size = 4 * ALLOC_PUNCH_STEP;
	unsigned c = alloc_class(size), small = alloc_class(512);
	uint64_t tb, pad;

	ck_assert_int_eq(alloc_get(x, c, 1, &tb), 0);
	ck_assert_int_eq(alloc_get(x, small, 1, &pad), 0);
	tx_commit(x);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, tb, c, 1), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, tb);
	/* All but the last step. */
	for (int i = 0; i < 1000 && st->punch_done + ALLOC_PUNCH_STEP < size; i++)
		dirty_commit(r);
	ck_assert_uint_eq(st->punch_head, tb);
	ck_assert_uint_gt(st->punch_done, 4096); /* steps were taken */
	ck_assert_uint_ge(st->punch_done + ALLOC_PUNCH_STEP, size);

	x = begin(r, &t);
	while (tx_log(x, pad) == 0)
		;
	ck_assert_uint_eq(tx_log_room(x), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, 0);
	ck_assert_uint_eq(st->head[c], tb);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

/* A table of a class none is free of is taken from the punch list when a
 * freed one of that class waits there (not the head only), unlinked with
 * logging: an abort puts the list back as it was.  Other classes, and
 * entries past the scan, are carved from brk; a scribbled list is not
 * followed. */
START_TEST(table_taken_from_the_punch_list)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	const uint64_t next_mask = (1ull << 56) - 1;
	/* Several punch steps each, so that a step never finishes one. */
	unsigned c = alloc_class(4 * ALLOC_PUNCH_STEP), other = alloc_class(8 * ALLOC_PUNCH_STEP);
	uint64_t a, b, got;

	ck_assert_int_eq(alloc_get(x, other, 1, &a), 0);
	ck_assert_int_eq(alloc_get(x, c, 1, &b), 0);
	tx_commit(x);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, a, other, 1), 0);
	ck_assert_int_eq(alloc_put(x, b, c, 1), 0);
	tx_commit(x);
	/* The list: b (in front: freed last), then a. */
	ck_assert_uint_eq(st->punch_head, b);
	ck_assert_uint_eq(word(r, b) & next_mask, a);
	uint64_t brk = st->brk, wa = word(r, a), wb = word(r, b);

	/* Aborted: the list and its words as they were. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, other, 1, &got), 0);
	ck_assert_uint_eq(got, a);
	memset(r->base + a, 0x77, 64);
	tx_abort(x);
	ck_assert_uint_eq(st->punch_head, b);
	ck_assert_uint_eq(word(r, a), wa);
	ck_assert_uint_eq(word(r, b), wb);
	ck_assert_int_eq(verify_now(r), 0);

	/* Committed: a behind the head is unlinked, brk unchanged. */
	x = begin(r, &t);
	uint64_t head_done = x->punch_done;
	ck_assert_int_eq(alloc_get(x, other, 1, &got), 0);
	ck_assert_uint_eq(got, a);
	tx_commit(x);
	ck_assert_uint_eq(st->brk, brk);
	ck_assert_uint_eq(st->punch_head, b);
	ck_assert_uint_eq(st->punch_done, head_done); /* the head's progress kept */
	ck_assert_uint_eq(word(r, b) & next_mask, 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* The head itself: the list is then empty, its progress reset. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, c, 1, &got), 0);
	ck_assert_uint_eq(got, b);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, 0);
	ck_assert_uint_eq(st->punch_done, 0);
	ck_assert_uint_eq(st->brk, brk);
	ck_assert_int_eq(verify_now(r), 0);

	/* Nothing of the class waiting: from brk. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, c, 1, &got), 0);
	ck_assert_uint_ge(got, brk);
	tx_commit(x);

	/* A peer's link out of the heap: not followed, carved instead. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, b, c, 1), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, b);
	/* (Labelled with the class asked for, so only the link stops it.) */
	peer_write64(r, b, (uint64_t)other << 56 | (st->brk + (1ull << 30)));
	brk = st->brk;
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, other, 1, &got), 0);
	ck_assert_uint_ge(got, brk);
	tx_abort(x);
	region_close(r);
}
END_TEST

/* A block freed while the head of the punch list is half punched goes
 * behind it: the head keeps its progress and is finished first, then the
 * new one.  A freeing transaction that aborts leaves the list as it was. */
START_TEST(freed_behind_a_half_punched_head)
{
	struct region *r = make_region(64ull << 20);
	struct tx_state *st = tx_state(r);
	struct tx t, *x = begin(r, &t);
	const uint64_t size = 4 * ALLOC_PUNCH_STEP, next_mask = (1ull << 56) - 1;
	unsigned c = alloc_class(size);
	uint64_t a, b;

	ck_assert_int_eq(alloc_get(x, c, 1, &a), 0);
	ck_assert_int_eq(alloc_get(x, c, 1, &b), 0);
	ck_assert_uint_eq(a % 4096, 0);
	ck_assert_uint_eq(b % 4096, 0);
	memset(r->base + a, 1, size); /* every page in memory */
	memset(r->base + b, 2, size);
	tx_commit(x);
	uint64_t full = file_blocks(r);

	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, a, c, 1), 0);
	tx_commit(x);
	dirty_commit(r); /* a's first step */
	ck_assert_uint_eq(st->punch_head, a);
	ck_assert_uint_eq(st->punch_done, 4096 + ALLOC_PUNCH_STEP);

	/* Aborted: a's link, the head and its progress as they were. */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, b, c, 1), 0);
	tx_abort(x);
	ck_assert_uint_eq(st->punch_head, a);
	ck_assert_uint_eq(st->punch_done, 4096 + ALLOC_PUNCH_STEP);
	ck_assert_uint_eq(word(r, a) & next_mask, 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* Committed: b after a, a's progress kept (one more step, this
	 * transaction's own). */
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, b, c, 1), 0);
	tx_commit(x);
	ck_assert_uint_eq(st->punch_head, a);
	ck_assert_uint_eq(st->punch_done, 4096 + 2 * ALLOC_PUNCH_STEP);
	ck_assert_uint_eq(word(r, a) & next_mask, b);
	ck_assert_uint_eq(word(r, b) & next_mask, 0);
	ck_assert_int_eq(verify_now(r), 0);

	/* a's remaining steps, then b's: a step each, none repeated. */
	uint64_t steps = (size - 4096 + ALLOC_PUNCH_STEP - 1) / ALLOC_PUNCH_STEP;
	ck_assert_uint_eq(punch_through(r), steps - 2 + steps);
	ck_assert_int_eq(list_len(r, c), 2);
	ck_assert_uint_le(file_blocks(r) + 2 * (size - 2 * 4096) / 512, full);
	ck_assert_int_eq(verify_now(r), 0);
	region_close(r);
}
END_TEST

/* A committed list of three blocks of class @c; returns them. */
static void three_free(struct region *r, unsigned c, uint64_t b[3])
{
	struct tx t, *x = begin(r, &t);

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(alloc_get(x, c, 0, &b[i]), 0);
	tx_commit(x);
	x = begin(r, &t);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(alloc_put(x, b[i], c, 0), 0);
	tx_commit(x);
	ck_assert_int_eq(list_len(r, c), 3);
	ck_assert_int_eq(verify_now(r), 0);
}

START_TEST(verify_catches_a_cycle)
{
	struct region *r = make_region(64ull << 20);
	unsigned c = alloc_key_class(30);
	uint64_t b[3];

	three_free(r, c, b);
	/* b2 -> b1 -> b0 -> b2 ... */
	peer_write64(r, b[0], b[2] >> 4);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	peer_write64(r, b[0], 0);
	ck_assert_int_eq(verify_now(r), 0);
	/* A block linking to itself, over a heap of a million bytes: found
	 * all the same, by the heap's size. */
	struct tx t, *x = begin(r, &t);
	uint64_t pad;
	ck_assert_int_eq(alloc_get(x, alloc_class(1u << 20), 1, &pad), 0);
	tx_commit(x);
	peer_write64(r, b[2], b[2] >> 4);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	region_close(r);
}
END_TEST

/* The same block linking to itself, in a heap a peer says is 1 TiB (it
 * raised brk and grew the file sparsely): the heap's size would allow 2^35
 * steps round it, hours; the walk finds the cycle on its second. */
START_TEST(verify_catches_a_cycle_in_a_sparse_heap)
{
	struct region *r = make_region(1ull << 40);
	unsigned c = alloc_key_class(30);
	uint64_t b[3], end = (1ull << 40) - REGION_PAGE;

	three_free(r, c, b);
	ck_assert_int_eq(ftruncate(r->fd, (off_t)end), 0);
	peer_write64(r, REGION_STATE_OFF + offsetof(struct tx_state, brk), end);
	ck_assert_int_eq(verify_now(r), 0);
	peer_write64(r, b[2], b[2] >> 4);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	region_close(r);
}
END_TEST

START_TEST(verify_catches_misaligned_links)
{
	struct region *r = make_region(64ull << 20);
	unsigned small = alloc_key_class(30), big = alloc_class(1024);
	uint64_t b[3], t3[3];

	three_free(r, small, b);
	three_free(r, big, t3);
	/* 16-byte units cannot say "8 bytes in", but a 512-byte-or-more
	 * class must be 64-byte aligned: a link 16 bytes off is refused, by
	 * verify and by the allocator, which would put a table there. */
	peer_write64(r, t3[2], (t3[1] + 16) >> 4);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	struct tx t, *x = begin(r, &t);
	uint64_t got;
	ck_assert_int_eq(alloc_get(x, big, 1, &got), -EUCLEAN);
	tx_abort(x);
	peer_write64(r, t3[2], t3[1] >> 4);
	ck_assert_int_eq(verify_now(r), 0);
	/* A scribbled punch list too. */
	peer_write64(r, REGION_STATE_OFF + offsetof(struct tx_state, punch_head), t3[0] + 16);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	peer_write64(r, REGION_STATE_OFF + offsetof(struct tx_state, punch_head), 0);
	ck_assert_int_eq(verify_now(r), 0);
	/* A head that is not aligned for its class. */
	peer_write64(r, REGION_STATE_OFF + offsetof(struct tx_state, head) + 8 * small, b[2] + 8);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, small, 0, &got), -EUCLEAN);
	tx_abort(x);
	region_close(r);
}
END_TEST

START_TEST(verify_catches_links_out_of_the_heap)
{
	struct region *r = make_region(64ull << 20);
	unsigned c = alloc_key_class(30);
	uint64_t b[3], brk;

	three_free(r, c, b);
	brk = tx_state(r)->brk;
	uint64_t bad[] = {brk, brk + (1u << 20), r->heap_off - 64, REGION_STATE_OFF,
			  (LINK_MASK << 4)};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		peer_write64(r, b[1], bad[i] >> 4);
		ck_assert_int_eq(verify_now(r), -EUCLEAN);
		/* The allocator will not follow it either: popping b1 would
		 * make it the head. */
		struct tx t, *x = begin(r, &t);
		uint64_t got;
		ck_assert_int_eq(alloc_get(x, c, 0, &got), 0); /* b2 */
		ck_assert_int_eq(alloc_get(x, c, 0, &got), -EUCLEAN);
		tx_abort(x);
	}
	/* The last block of the heap, whole: fine; one that runs past brk:
	 * not. */
	peer_write64(r, b[1], b[0] >> 4);
	ck_assert_int_eq(verify_now(r), 0);
	peer_write64(r, REGION_STATE_OFF + offsetof(struct tx_state, brk), brk - 16);
	ck_assert_int_eq(verify_now(r), -EUCLEAN);
	region_close(r);
}
END_TEST

START_TEST(enospc_at_max_size)
{
	uint64_t max = 4ull << 20;
	struct region *r = make_region(max);
	struct tx t, *x = begin(r, &t);
	unsigned c = alloc_class(256 * 1024);
	uint64_t b, n = 0, brk0 = tx_state(r)->brk;
	int err;

	while ((err = alloc_get(x, c, 1, &b)) == 0) {
		ck_assert_uint_le(b + 256 * 1024, max);
		ck_assert_uint_lt(++n, 64);
	}
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_uint_eq(n, (max - r->heap_off) / (256 * 1024));
	/* Smaller blocks still fit in what is left, if anything is. */
	uint64_t left = max - tx_state(r)->brk - n * 256 * 1024;
	ck_assert_int_eq(alloc_get(x, alloc_key_class(64), 0, &b), left >= 80 ? 0 : -ENOSPC);
	ck_assert_int_eq(alloc_get(x, ALLOC_CLASSES, 0, &b), -ENOSPC);
	ck_assert_int_eq(alloc_get(x, ALLOC_CLASSES - 1, 1, &b), -ENOSPC);
	tx_abort(x);
	ck_assert_uint_eq(tx_state(r)->brk, brk0);
	/* A freed block is reused at the limit. */
	x = begin(r, &t);
	while (alloc_get(x, c, 1, &b) == 0)
		;
	tx_commit(x);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_put(x, b, c, 1), 0);
	tx_commit(x);
	punch_through(r); /* punched, then on its free list */
	x = begin(r, &t);
	uint64_t again;
	ck_assert_int_eq(alloc_get(x, c, 1, &again), 0);
	ck_assert_uint_eq(again, b);
	ck_assert_int_eq(alloc_get(x, c, 1, &again), -ENOSPC);
	tx_commit(x);
	region_close(r);
}
END_TEST

START_TEST(clear_empties_every_list)
{
	struct region *r = make_region(64ull << 20);
	unsigned c1 = alloc_key_class(30), c2 = alloc_class(2048);
	uint64_t b[3], t3[3], got;

	three_free(r, c1, b);
	three_free(r, c2, t3);
	static struct heap_image im;
	image_take(r, &im);
	uint64_t heap = tx_state(r)->brk - r->heap_off;
	uint8_t *bytes = malloc(heap);
	ck_assert_ptr_nonnull(bytes);
	memcpy(bytes, r->base + r->heap_off, heap);

	/* Cleared, the committed heap must stay intact until the commit (a
	 * rollback needs it): nothing is carved from it meanwhile. */
	struct tx t, *x = begin(r, &t);
	alloc_reset(x);
	ck_assert_int_eq(alloc_get(x, c1, 0, &got), -EINVAL);
	ck_assert_int_eq(alloc_get(x, c2, 1, &got), -EINVAL);
	tx_abort(x);
	image_check(r, &im);
	ck_assert_int_eq(memcmp(r->base + r->heap_off, bytes, heap), 0);
	free(bytes);

	x = begin(r, &t);
	alloc_reset(x);
	tx_commit(x);
	ck_assert_uint_eq(tx_state(r)->brk, r->heap_off);
	for (unsigned c = 0; c < ALLOC_CLASSES; c++)
		ck_assert_uint_eq(tx_state(r)->head[c], 0);
	ck_assert_int_eq(verify_now(r), 0);
	x = begin(r, &t);
	ck_assert_int_eq(alloc_get(x, c1, 0, &got), 0);
	ck_assert_uint_eq(got, r->heap_off);
	tx_commit(x);
	region_close(r);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tcase_create("alloc");

	tcase_set_timeout(tc, 60 * test_scale());
	tcase_add_test(tc, classes);
	tcase_add_test(tc, carved_from_brk);
	tcase_add_test(tc, reuse_after_commit_only);
	tcase_add_test(tc, classes_have_their_own_lists);
	tcase_add_test(tc, first_words_logged);
	tcase_add_test(tc, free_queue_when_the_log_is_full);
	tcase_add_test(tc, hostile_free_queue);
	tcase_add_test(tc, key_blocks_taken_from_the_free_queue);
	tcase_add_test(tc, queue_count_kept_private);
	tcase_add_test(tc, abort_restores_free_lists);
	tcase_add_test(tc, freed_tables_give_pages_back);
	tcase_add_test(tc, punched_table_listed_from_a_full_log);
	tcase_add_test(tc, freed_behind_a_half_punched_head);
	tcase_add_test(tc, table_taken_from_the_punch_list);
	tcase_add_test(tc, verify_catches_a_cycle);
	tcase_add_test(tc, verify_catches_a_cycle_in_a_sparse_heap);
	tcase_add_test(tc, verify_catches_misaligned_links);
	tcase_add_test(tc, verify_catches_links_out_of_the_heap);
	tcase_add_test(tc, enospc_at_max_size);
	tcase_add_test(tc, clear_empties_every_list);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
