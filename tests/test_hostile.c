/* SPDX-License-Identifier: MIT */
/*
 * test_hostile.c - a peer that holds the fd and attacks the honest
 * processes through the shared region.
 *
 * Each test maps the memfd the way a hostile peer would (any byte, any
 * time, no lock) and checks that the honest process gets values or errors:
 * never a signal, a hang (every honest call runs under a watchdog), a write
 * outside the region, unbounded memory, or one set taken for another.  The
 * races are real: the peer is another process flipping words while the
 * honest one works.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "hash.h"
#include "keys.h"
#include "lease.h"
#include "region.h"
#include "set.h"
#include "shset.h"
#include "table.h"

#define STATE_OFF(field) (REGION_STATE_OFF + offsetof(struct tx_state, field))

/* A peer's view of a set: the whole reservation, writable. */
struct peer {
	int fd;
	uint8_t *m;
	uint64_t max;
	struct region_hdr h;
};

/* These tests poke the words of shard 0 (the header page's state, lock
 * and log): their sets have one shard.  random_words_peer and
 * shard_layout_checked cover sets of several. */
static int create1(shset **s, const struct shset_opts *o)
{
	struct shset_opts one = o ? *o : (struct shset_opts){0};

	one.size = sizeof(one);
	one.shards = one.shards ? one.shards : 1;
	return shset_create(s, &one);
}

static void peer_map(struct peer *p, int fd)
{
	p->fd = fd;
	ck_assert_int_eq(pread(fd, &p->h, sizeof(p->h), 0), (ssize_t)sizeof(p->h));
	p->max = p->h.max_size;
	p->m = mmap(NULL, p->max, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	ck_assert_ptr_ne(p->m, MAP_FAILED);
}

/* The bytes a peer may touch without faulting: the file only grows. */
static uint64_t peer_size(const struct peer *p)
{
	struct stat st;

	return fstat(p->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t *peer_word(const struct peer *p, uint64_t off)
{
	return (uint64_t *)(p->m + (off & ~7ull));
}

static void poke(const struct peer *p, uint64_t off, uint64_t v)
{
	__atomic_store_n(peer_word(p, off), v, __ATOMIC_RELAXED);
}

static uint64_t peek(const struct peer *p, uint64_t off)
{
	return __atomic_load_n(peer_word(p, off), __ATOMIC_RELAXED);
}

/* Shared between the test and its children. */
struct shared {
	volatile int stop;
	volatile int ready;
};

static struct shared *shared_new(void)
{
	struct shared *sh =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	return sh;
}

/* Runs @fn in a child with a watchdog of @secs: returns its exit status,
 * 128+signal if it crashed, 128+SIGALRM if it hung. */
static int run_honest(void (*fn)(void *), void *arg, unsigned secs)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(secs);
		fn(arg);
		_exit(0);
	}
	return wait_status(pid);
}

static uint64_t rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_maxrss;
}

static double seconds(void)
{
	return 2.0 * test_scale();
}

/* --- 1. the undo log is read once ------------------------------------------------ */

struct honest_arg {
	shset *s;
	struct shared *sh;
	int n;
};

static void honest_adds(void *a)
{
	struct honest_arg *h = a;
	shset *c;

	if (shset_attach_fd(&c, shset_fd(h->s)))
		_exit(10);
	uint64_t end = now_ns() + (uint64_t)(seconds() * 1e9);
	for (uint32_t i = 0; now_ns() < end; i++) {
		int r = shset_add(c, &i, sizeof(i));
		if (r != 0 && r != 1 && (r >= 0 || r < -4095))
			_exit(11); /* neither a value nor an error */
	}
	shset_close(c);
}

/*
 * The peer keeps a long undo log whose entries are valid when checked and
 * point far outside the mapping a moment later.  The honest process repairs
 * on every add (the log is never empty for long): it must check and use
 * one copy of each entry.
 */
START_TEST(rollback_reads_the_log_once)
{
	shset *s;
	struct shared *sh = shared_new();

	ck_assert_int_eq(create1(&s, NULL), 0);
	ck_assert_int_eq(shset_add(s, "x", 1), 1);
	pid_t peer = fork();
	if (peer == 0) {
		struct peer p;
		peer_map(&p, shset_fd(s));
		uint64_t n = p.h.log_bytes / 16;
		uint64_t good = STATE_OFF(pop_hint), wild = 1ull << 46;
		while (!sh->stop) {
			for (uint64_t i = 0; i < n; i++) {
				poke(&p, p.h.log_off + i * 16, good);
				poke(&p, p.h.log_off + i * 16 + 8, 0);
			}
			poke(&p, STATE_OFF(log_n), n);
			for (int k = 0; k < 200 && !sh->stop; k++)
				for (uint64_t i = 0; i < n; i += 97)
					poke(&p, p.h.log_off + i * 16, k & 1 ? wild : good);
		}
		_exit(0);
	}
	struct honest_arg h = {s, sh, 0};
	int st = run_honest(honest_adds, &h, (unsigned)(10 * test_scale()));
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(st == 0, "honest process ended with status %d", st);
	shset_close(s);
}
END_TEST

/* --- 2. a slot's length is read once --------------------------------------------- */

struct lookup_arg {
	shset *s;
	const uint8_t *key;
	size_t len;
};

static void honest_lookups(void *a)
{
	struct lookup_arg *l = a;
	uint64_t end = now_ns() + (uint64_t)(seconds() * 1e9);

	while (now_ns() < end) {
		int r = shset_contains(l->s, l->key, l->len);
		if (r != 0 && r != 1 && r != -EUCLEAN)
			_exit(11);
	}
}

/*
 * The peer plants a 16-slot table at the end of the file whose last slot
 * matches a 64-byte key's hash, and flips that slot's length between the
 * key's and an inline one.  A reader that compares lengths on one reading
 * and decides "inline" on another compares 64 bytes where 20 remain before
 * the end of the file: SIGBUS.  (Short keys make millions of lookups a
 * second, so the few-instruction window is hit.)
 */
START_TEST(probe_reads_the_length_once)
{
	shset *s;
	struct shared *sh = shared_new();
	struct shset_opts o = {.max_bytes = 64 << 20};
	static uint8_t key[64];
	uint64_t h;

	ck_assert_int_eq(create1(&s, &o), 0);
	struct peer p;
	peer_map(&p, shset_fd(s));
	memset(key, 'k', sizeof(key));
	for (uint64_t i = 0;; i++) {
		memcpy(key + sizeof(key) - 8, &i, 8);
		h = hash_bytes(p.h.seed, key, sizeof(key));
		if (h >> 60 == 15)
			break;
	}
	uint64_t size = peer_size(&p);
	uint64_t toff = size - 16 * 32;
	uint8_t *slot = p.m + toff + 15 * 32;
	memset(p.m + toff, 0, 16 * 32);
	poke(&p, STATE_OFF(brk), size);
	poke(&p, STATE_OFF(count), 1);
	poke(&p, STATE_OFF(tdesc), toff | ((uint64_t)TABLE_CODE(4, 0) << 56));
	__atomic_store_n((uint32_t *)(slot + 8), (uint32_t)sizeof(key), __ATOMIC_RELAXED);
	/* The 20 inline bytes equal the key's first 20, so a comparison of
	 * the whole key there runs off the end of the file. */
	memcpy(slot + 12, key, 20);
	__atomic_store_n((uint64_t *)slot, (h & ~3ull) | 2, __ATOMIC_RELEASE);
	pid_t peer = fork();
	if (peer == 0) {
		/* Random, not alternating: a strict alternation falls into step
		 * with the cache line's trips and the reader sees one value. */
		uint64_t rng = 7;
		while (!sh->stop)
			__atomic_store_n((uint32_t *)(slot + 8),
					 rng_next(&rng) & 1 ? 4 : (uint32_t)sizeof(key),
					 __ATOMIC_RELAXED);
		_exit(0);
	}
	struct lookup_arg l = {s, key, sizeof(key)};
	int st = run_honest(honest_lookups, &l, (unsigned)(10 * test_scale()));
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(st == 0, "honest reader ended with status %d", st);
	shset_close(s);
}
END_TEST

/* --- 3. verify bounds its walks by the state it checked --------------------------- */

static void honest_verifies(void *a)
{
	struct honest_arg *h = a;
	uint64_t end = now_ns() + (uint64_t)(seconds() * 1e9);

	while (now_ns() < end) {
		int r = shset_verify(h->s);
		if (r != 0 && r != -EUCLEAN)
			_exit(11);
		h->n++;
	}
}

/*
 * A free list that loops onto itself, and a brk that flips between the
 * true one and 2^60: the loop bound must come from the brk that was
 * checked, or verify spins (lock held) for about 2^59 steps.
 */
START_TEST(verify_reads_brk_once)
{
	shset *s;
	struct shared *sh = shared_new();

	ck_assert_int_eq(create1(&s, NULL), 0);
	for (uint32_t i = 0; i < 3000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint64_t brk = peek(&p, STATE_OFF(brk));
	/* A 32-byte block at the heap's start that links to itself. */
	uint64_t blk = p.h.heap_off;
	poke(&p, blk, blk >> 5);
	poke(&p, STATE_OFF(head[5]), blk);
	pid_t peer = fork();
	if (peer == 0) {
		for (uint64_t i = 0; !sh->stop; i++)
			poke(&p, STATE_OFF(brk), (i >> 4) & 1 ? 1ull << 60 : brk);
		_exit(0);
	}
	struct honest_arg h = {s, sh, 0};
	int st = run_honest(honest_verifies, &h, (unsigned)(10 * test_scale()));
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(st == 0, "verify ended with status %d (142: it hung)", st);
	poke(&p, STATE_OFF(brk), brk);
	ck_assert_int_eq(shset_verify(s), -EUCLEAN); /* the loop is still there */
	shset_close(s);
}
END_TEST

/* --- 4. a rebuild's probe is bounded ---------------------------------------------- */

/*
 * While the honest process grows the table, the peer fills everything past
 * brk with non-zero words: the fresh table it builds never has an empty
 * slot.  Each add must return (an error is fine) instead of probing forever
 * with the lock held.
 */
START_TEST(rebuild_probe_is_bounded)
{
	shset *s;
	struct shared *sh = shared_new();

	ck_assert_int_eq(create1(&s, NULL), 0);
	pid_t peer = fork();
	if (peer == 0) {
		struct peer p;
		peer_map(&p, shset_fd(s));
		while (!sh->stop) {
			uint64_t size = peer_size(&p);
			uint64_t brk = peek(&p, STATE_OFF(brk));
			if (brk < p.h.heap_off || brk > size)
				brk = p.h.heap_off;
			for (uint64_t off = brk & ~7ull; off + 8 <= size && !sh->stop; off += 8)
				poke(&p, off, 0x0101010101010101ull);
		}
		_exit(0);
	}
	struct honest_arg h = {s, sh, 0};
	int st = run_honest(honest_adds, &h, (unsigned)(10 * test_scale()));
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(st == 0, "honest writer ended with status %d (142: it hung)", st);
	shset_close(s);
}
END_TEST

/*
 * A peer gives live slots of a table one meta, so that every key a rebuild
 * (set algebra) or a one-step shrink (a big remove batch) places into its
 * new table has the same home: the i-th placement would walk i slots,
 * 200,000 keys 2 * 10^10 steps with the lock held.  Each must stop within
 * its budget of walked slots.
 */
#define ONE_HOME_KEYS 200000u

/* Rewrites the metas of the slots holding keys >= @from (4-byte keys,
 * inline at byte 12 of a slot). */
static void one_home(shset *s, uint32_t from)
{
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint64_t tdesc = peek(&p, STATE_OFF(tdesc));
	ck_assert_uint_eq(peek(&p, STATE_OFF(old_tdesc)), 0); /* no resize running */
	uint64_t toff = tdesc & ((1ull << 56) - 1), cap = table_code_cap((unsigned)(tdesc >> 56));
	ck_assert_uint_ge(cap, ONE_HOME_KEYS);
	uint64_t meta = 0, n = 0;
	for (uint64_t i = 0; i < cap; i++) {
		uint8_t *slot = p.m + toff + i * 32;
		uint32_t len, key;
		memcpy(&len, slot + 8, 4);
		memcpy(&key, slot + 12, 4);
		if (peek(&p, toff + i * 32) <= 1 || len != 4 || key < from)
			continue;
		if (!meta)
			meta = peek(&p, toff + i * 32);
		poke(&p, toff + i * 32, meta);
		n++;
	}
	ck_assert_uint_eq(n, ONE_HOME_KEYS - from);
	munmap(p.m, p.max);
}

static void honest_intersect(void *a)
{
	shset **two = a;
	_exit(shset_intersection_update(two[0], two[1]) == -EUCLEAN ? 0 : 20);
}

/* Removes keys below 9/10 of ONE_HOME_KEYS: the shrink then moves the
 * rest, which the peer gave one home. */
static void honest_remove_most(void *a)
{
	shset *s = a;
	size_t n = ONE_HOME_KEYS * 9 / 10;
	uint32_t *k = malloc(n * sizeof(*k));
	const void **keys = malloc(n * sizeof(*keys));
	size_t *lens = malloc(n * sizeof(*lens));
	if (!k || !keys || !lens)
		_exit(21);
	for (uint32_t i = 0; i < n; i++) {
		k[i] = i;
		keys[i] = &k[i];
		lens[i] = sizeof(k[i]);
	}
	long long r = shset_remove_batch(s, keys, lens, n);
	_exit(r == -EUCLEAN ? 0 : 22);
}

START_TEST(placements_into_a_new_table_are_bounded)
{
	shset *two[2];
	struct shset_opts o = {.capacity = ONE_HOME_KEYS};

	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(create1(&two[0], &o), 0);
		ck_assert_int_eq(create1(&two[1], &o), 0);
		for (uint32_t i = 0; i < ONE_HOME_KEYS; i++) {
			ck_assert_int_eq(shset_add(two[0], &i, sizeof(i)), 1);
			ck_assert_int_eq(shset_add(two[1], &i, sizeof(i)), 1);
		}
		int st;
		if (round == 0) {
			one_home(two[0], 0);
			st = run_honest(honest_intersect, two, (unsigned)(10 * test_scale()));
		} else {
			one_home(two[0], ONE_HOME_KEYS * 9 / 10);
			st = run_honest(honest_remove_most, two[0], (unsigned)(10 * test_scale()));
		}
		ck_assert_msg(st == 0, "round %d ended with status %d (142: it walked on)", round,
			      st);
		shset_close(two[0]);
		shset_close(two[1]);
	}
}
END_TEST

/* --- 5. foreach's buffer is bounded by the memory that exists ---------------------- */

static int count_visit(const void *k, size_t len, void *arg)
{
	(void)k;
	(void)len;
	(*(long *)arg)++;
	return 0;
}

static void honest_foreach_counted(void *a)
{
	struct honest_arg *h = a;
	long visits = 0;
	uint64_t before = rss_kib();
	int r = shset_foreach(h->s, count_visit, &visits);

	if (r != -EUCLEAN)
		_exit(21);
	_exit(rss_kib() - before > 64 * 1024 ? 20 : 0);
}

/*
 * The peer grows the file sparsely to 1 GiB and claims a heap and counts
 * to match: nothing is there, so foreach must not allocate (and fault in)
 * gigabytes before it finds out.
 */
START_TEST(collect_bounded_by_memory)
{
	shset *s;
	struct shset_opts o = {.max_bytes = 1ull << 30};

	ck_assert_int_eq(create1(&s, &o), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	struct peer p;
	peer_map(&p, shset_fd(s));
	ck_assert_int_eq(ftruncate(shset_fd(s), 1ll << 30), 0);
	poke(&p, STATE_OFF(brk), 1ull << 30);
	poke(&p, STATE_OFF(count), 1ull << 27);
	poke(&p, STATE_OFF(key_bytes), 1ull << 29);
	struct honest_arg h = {s, NULL, 0};
	int st = run_honest(honest_foreach_counted, &h, (unsigned)(20 * test_scale()));
	ck_assert_msg(st == 0, "foreach: status %d (20: it took more than 64 MiB)", st);
	shset_close(s);
}
END_TEST

/* --- 6. inspecting a live set does not change it ---------------------------------- */

static uint64_t allocated(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

START_TEST(inspection_allocates_nothing)
{
	shset *s;
	struct region *r;
	struct table_snap sn;

	ck_assert_int_eq(create1(&s, NULL), 0);
	/* Growth leaves old tables behind as holes. */
	for (uint32_t i = 0; i < 200000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	set_filler_settle(s); /* it may still be faulting in a table */
	uint64_t before = allocated(shset_fd(s));
	ck_assert_int_eq(region_attach(&r, shset_fd(s), 1), 0);
	ck_assert_int_eq(table_snap_optimistic(r, &sn, 2000000000ull), 0);
	ck_assert_int_eq(table_snap_verify(&sn), 0);
	table_snap_free(&sn);
	ck_assert_msg(allocated(shset_fd(s)) == before, "inspection allocated %llu bytes",
		      (unsigned long long)(allocated(shset_fd(s)) - before));

	/* A scribbled brk over a sparse 1 GiB file: neither the set nor the
	 * inspector's memory grows by it. */
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint64_t big = p.max < (1ull << 30) ? p.max : 1ull << 30;
	ck_assert_int_eq(ftruncate(shset_fd(s), (off_t)big), 0);
	poke(&p, STATE_OFF(brk), big);
	before = allocated(shset_fd(s));
	uint64_t rss0 = rss_kib();
	int err = table_snap_optimistic(r, &sn, 2000000000ull);
	ck_assert(err == 0 || err == -EUCLEAN);
	table_snap_free(&sn);
	ck_assert_uint_eq(allocated(shset_fd(s)), before);
	ck_assert_msg(rss_kib() - rss0 < 128 * 1024, "inspector grew by %llu KiB",
		      (unsigned long long)(rss_kib() - rss0));
	region_close(r);
	shset_close(s);
}
END_TEST

/* --- 8. a set is its memfd, not the uuid in its header ----------------------------- */

START_TEST(identity_is_the_memfd)
{
	shset *a, *b, *b2;

	ck_assert_int_eq(create1(&a, NULL), 0);
	ck_assert_int_eq(create1(&b, NULL), 0);
	ck_assert_int_eq(shset_add(a, "mine", 4), 1);
	ck_assert_int_eq(shset_add(b, "theirs", 6), 1);
	/* The peer copies a's uuid into b's header, then b is handed over. */
	struct region_hdr ha;
	ck_assert_int_eq(pread(shset_fd(a), &ha, sizeof(ha), 0), (ssize_t)sizeof(ha));
	ck_assert_int_eq(
	    pwrite(shset_fd(b), ha.uuid, sizeof(ha.uuid), (off_t)offsetof(struct region_hdr, uuid)),
	    (ssize_t)sizeof(ha.uuid));
	ck_assert_int_eq(shset_attach_fd(&b2, shset_fd(b)), 0);
	ck_assert_int_eq(shset_equal(a, b2), 0);
	ck_assert_int_eq(shset_issubset(a, b2), 0);
	ck_assert_int_eq(shset_difference_update(a, b2), 0);
	ck_assert_int_eq(shset_contains(a, "mine", 4), 1);
	ck_assert_int_eq(shset_update(a, b2), 1);
	ck_assert_int_eq(shset_size(a), 2);
	/* Two handles on one memfd are one set, whatever the header says. */
	shset *a2;
	ck_assert_int_eq(shset_attach_fd(&a2, shset_fd(a)), 0);
	ck_assert_int_eq(shset_equal(a, a2), 1);
	ck_assert_int_eq(shset_difference_update(a, a2), 2);
	ck_assert_int_eq(shset_size(a), 0);
	shset_close(a2);
	shset_close(b2);
	shset_close(b);
	shset_close(a);
}
END_TEST

/* --- 8b. a memfd sealed only at the last moment ------------------------------------ */

/*
 * The sender passes an unsealed memfd of the right size and, while the
 * honest process checks it, shrinks it and only then seals it.  To land
 * exactly between the checks, this executable's fcntl (it interposes
 * libc's, for the library's calls too) does the peer's part when the
 * library reads the seals of late_fd.  Every other call passes through.
 */
static int late_fd = -1;
static int late_seals;

int fcntl(int fd, int cmd, ...)
{
	va_list ap;

	va_start(ap, cmd);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (cmd == F_GET_SEALS && fd >= 0 && fd == late_fd) {
		late_fd = -1;
		if (ftruncate(fd, REGION_PAGE) < 0 ||
		    syscall(SYS_fcntl, fd, F_ADD_SEALS, late_seals))
			abort();
	}
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

/* An unsealed memfd holding a copy of @fd's bytes. */
static int unsealed_copy(int fd)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	char *img = malloc((size_t)st.st_size);
	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	int m = memfd_create("late-seals", MFD_ALLOW_SEALING);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(ftruncate(m, st.st_size), 0);
	ck_assert_int_eq(pwrite(m, img, (size_t)st.st_size, 0), st.st_size);
	free(img);
	return m;
}

START_TEST(sealed_after_its_size_was_read)
{
	shset *s, *s2;
	shset_value *v, *v2;

	/* A set: its size must not fall below what the header promises. */
	ck_assert_int_eq(create1(&s, NULL), 0);
	ck_assert_int_eq(shset_add(s, "a", 1), 1);
	int m = unsealed_copy(shset_fd(s));
	late_fd = m;
	late_seals = F_SEAL_SHRINK;
	ck_assert_int_eq(shset_attach_fd(&s2, m), -EUCLEAN);
	ck_assert_int_eq(late_fd, -1); /* the peer did act */
	close(m);
	shset_close(s);

	/* A value: its size is fixed by its seals, and must be its layout's. */
	ck_assert_int_eq(shset_intarray_create(&v, 1u << 16), 0);
	m = unsealed_copy(shset_value_fd(v));
	late_fd = m;
	late_seals = F_SEAL_SHRINK | F_SEAL_GROW;
	ck_assert_int_eq(shset_value_attach_fd(&v2, m, SHSET_VALUE_ANY), -EUCLEAN);
	ck_assert_int_eq(late_fd, -1);
	close(m);
	shset_value_close(v);
}
END_TEST

/*
 * A memfd of huge pages (MFD_HUGETLB) has a memfd's name and seals, but a
 * write into one of its holes when the pool is empty is SIGBUS: attach
 * refuses it before reading anything.  Where the pool has a page, the copy
 * carries the real set's or value's first bytes, so nothing but the kind of
 * memory tells it apart; otherwise its holes read as zeros (which an old
 * attach refused as -EPROTO, not as the wrong medium).
 */
static int huge_copy(int fd, unsigned seals)
{
	const size_t huge = 2u << 20;
	struct stat st;

	int m = memfd_create("huge", MFD_HUGETLB | MFD_ALLOW_SEALING);
	if (m < 0)
		return -errno;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(ftruncate(m, (off_t)huge), 0);
	/* Reserved, not NORESERVE: with an empty pool this fails instead of
	 * faulting. */
	char *p = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	if (p != MAP_FAILED) {
		size_t n = (size_t)st.st_size < huge ? (size_t)st.st_size : huge;
		ck_assert_int_eq(pread(fd, p, n, 0), (ssize_t)n);
		munmap(p, huge);
	}
	ck_assert_int_eq(fcntl(m, F_ADD_SEALS, seals), 0);
	return m;
}

START_TEST(huge_page_memfd_refused)
{
	shset *s, *s2;
	shset_value *v, *v2;
	struct shset_opts o = {.max_bytes = 64u << 20};

	ck_assert_int_eq(create1(&s, &o), 0);
	ck_assert_int_eq(shset_add(s, "a", 1), 1);
	int m = huge_copy(shset_fd(s), F_SEAL_SHRINK);
	if (m == -EINVAL || m == -ENOENT || m == -ENOSYS) {
		/* A kernel without hugetlbfs cannot make one either. */
		fprintf(stderr, "huge_page_memfd_refused: no MFD_HUGETLB here (%d)\n", m);
		shset_close(s);
		return;
	}
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(shset_attach_fd(&s2, m), -EMEDIUMTYPE);
	close(m);
	shset_close(s);

	ck_assert_int_eq(shset_intarray_create(&v, 16), 0);
	m = huge_copy(shset_value_fd(v), F_SEAL_SHRINK | F_SEAL_GROW);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(shset_value_attach_fd(&v2, m, SHSET_VALUE_ANY), -EMEDIUMTYPE);
	close(m);
	shset_value_close(v);
}
END_TEST

/* --- 9. figures returned to callers are bounded by the region --------------------- */

START_TEST(size_bounded_by_region)
{
	shset *s;

	ck_assert_int_eq(create1(&s, NULL), 0);
	for (uint32_t i = 0; i < 10; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	ck_assert_int_eq(shset_size(s), 10);
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint64_t count = peek(&p, STATE_OFF(count));
	poke(&p, STATE_OFF(count), 1000000000000000000ull);
	ck_assert_int_eq(shset_size(s), -EUCLEAN);
	/* A count a table of that capacity can hold is believed... */
	poke(&p, STATE_OFF(count), 11);
	ck_assert_int_eq(shset_size(s), 11);
	/* ...and a table that does not fit in the file is not. */
	uint64_t tdesc = peek(&p, STATE_OFF(tdesc));
	poke(&p, STATE_OFF(tdesc),
	     (tdesc & ((1ull << 56) - 1)) | ((uint64_t)TABLE_CODE(30, 0) << 56));
	ck_assert_int_eq(shset_size(s), -EUCLEAN);
	struct shset_stats st;
	ck_assert_int_eq(shset_stats(s, &st), -EUCLEAN);
	poke(&p, STATE_OFF(tdesc), tdesc);
	poke(&p, STATE_OFF(count), 1000000000000000000ull);
	ck_assert_int_eq(shset_stats(s, &st), -EUCLEAN);
	poke(&p, STATE_OFF(count), count);
	ck_assert_int_eq(shset_size(s), 10);
	ck_assert_int_eq(shset_stats(s, &st), 0);
	ck_assert_uint_eq(st.count, 10);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* --- 7. a lock word naming an idle process --------------------------------------- */

/*
 * The peer writes the holder's own owner value into the free lock word and
 * exits.  Another process then waits, as on any live holder, until the
 * named process takes the lock again: shset_recover, which an idle holder
 * (a server) calls now and then, takes it over and lets the waiter in.
 */
/* The owner value a lock word takes for the process holding @slot. */
static uint32_t owner_value(const struct peer *p, int slot)
{
	uint32_t gen = __atomic_load_n(
	    &((struct shset_lease_slot *)(p->m + REGION_SLOTS_OFF))[slot].gen, __ATOMIC_RELAXED);
	return (uint32_t)(slot + 1) | (gen & LEASE_GEN_MASK) << LEASE_GEN_SHIFT;
}

START_TEST(forged_word_cleared_by_recover)
{
	shset *s;

	ck_assert_int_eq(create1(&s, NULL), 0);
	ck_assert_int_eq(shset_add(s, "a", 1), 1);
	int slot = shset_slot(s);
	ck_assert_int_ge(slot, 0);
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint32_t forged = owner_value(&p, slot);
	pid_t peer = fork();
	if (peer == 0) {
		__atomic_store_n((uint32_t *)(p.m + REGION_LOCK_OFF), forged, __ATOMIC_RELEASE);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(peer), 0);
	pid_t waiter = fork();
	if (waiter == 0) {
		shset *c;
		alarm((unsigned)(30 * test_scale()));
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(10);
		_exit(shset_add(c, "b", 1) == 1 ? 0 : 11);
	}
	usleep(300000);
	int st;
	ck_assert_int_eq(waitpid(waiter, &st, WNOHANG), 0); /* still waiting */
	ck_assert_int_eq(shset_recover(s), 0);
	ck_assert_int_eq(wait_status(waiter), 0);
	ck_assert_int_eq(shset_contains(s, "b", 1), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/*
 * A peer writes shard 1's lock word to name an honest process S and exits.
 * Honest P takes shard 0 and waits on shard 1, whose named owner lives.
 * When S takes its locks it waits on shard 0, which P holds, and would never
 * reach shard 1, where it could tell the word is not its own: S's wait
 * must free the words that name S and that none of its threads holds.
 */
START_TEST(forged_word_naming_a_waiter)
{
	shset *s;
	struct shset_opts o = {.shards = 2};
	int go[2], slotp[2];

	ck_assert_int_eq(create1(&s, &o), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(slotp), 0);
	pid_t honest = fork();
	if (honest == 0) {
		shset *c;
		char b;
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(10);
		int slot = shset_slot(c);
		if (write(slotp[1], &slot, sizeof(slot)) != sizeof(slot) || read(go[0], &b, 1) != 1)
			_exit(11);
		/* Takes shard 0, then 1. */
		_exit(shset_recover(c) == 0 ? 0 : 12);
	}
	int slot;
	ck_assert_int_eq(read(slotp[0], &slot, sizeof(slot)), (ssize_t)sizeof(slot));
	ck_assert_int_ge(slot, 0);
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint32_t forged = owner_value(&p, slot);
	/* The peer's part: shard 1's word names S. */
	__atomic_store_n((uint32_t *)(p.m + p.h.shard_bytes + REGION_LOCK_OFF), forged,
			 __ATOMIC_RELEASE);
	pid_t clearer = fork();
	if (clearer == 0) {
		shset *c;
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(10);
		/* Takes shard 0, then waits on shard 1 for S. */
		_exit(shset_clear(c) == 0 ? 0 : 11);
	}
	usleep(300000);
	int st;
	ck_assert_int_eq(waitpid(clearer, &st, WNOHANG), 0); /* waits for S */
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	/* Both finish; without the fix, each waits for the other for ever. */
	uint64_t until = now_ns() + (uint64_t)(10e9 * test_scale());
	int done = 0, hst = -1, cst = -1;
	while (done < 2 && now_ns() < until) {
		if (hst < 0 && waitpid(honest, &st, WNOHANG) == honest)
			hst = WIFEXITED(st) ? WEXITSTATUS(st) : 128, done++;
		if (cst < 0 && waitpid(clearer, &st, WNOHANG) == clearer)
			cst = WIFEXITED(st) ? WEXITSTATUS(st) : 128, done++;
		usleep(10000);
	}
	if (done < 2) {
		kill(honest, SIGKILL);
		kill(clearer, SIGKILL);
		wait_status(honest);
		wait_status(clearer);
	}
	ck_assert_int_eq(hst, 0);
	ck_assert_int_eq(cst, 0);
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_add(s, "a", 1), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	close(go[0]);
	close(go[1]);
	close(slotp[0]);
	close(slotp[1]);
	shset_close(s);
}
END_TEST

/*
 * A live peer holds shard 1's lock for as long as it likes.  A whole-set
 * operation whose wait hook gives up returns -ECANCELED having changed
 * nothing, and the shard 0 it took first is free again.
 */
static int cancel_calls;
static int cancel_after_two(void *arg)
{
	(void)arg;
	return ++cancel_calls >= 2;
}

START_TEST(wait_hook_cancels_whole_set_operation)
{
	shset *s;
	struct shset_opts o = {.shards = 2};
	int rep[2];

	ck_assert_int_eq(create1(&s, &o), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	struct peer p;
	peer_map(&p, shset_fd(s));
	shset_lock *l0 = (shset_lock *)(p.m + REGION_LOCK_OFF);
	shset_lock *l1 = (shset_lock *)(p.m + p.h.shard_bytes + REGION_LOCK_OFF);
	ck_assert_int_eq(pipe(rep), 0);
	pid_t holder = fork();
	if (holder == 0) {
		shset_lease *l;
		int r = shset_lease_open(&l, shset_fd(s),
					 (struct shset_lease_slot *)(p.m + REGION_SLOTS_OFF),
					 p.h.nslots);
		if (!r)
			r = shset_lock_acquire(l1, l);
		if (write(rep[1], &r, sizeof(r)) != sizeof(r))
			_exit(1);
		for (;;)
			pause();
	}
	int r = -1;
	ck_assert_int_eq(read(rep[0], &r, sizeof(r)), (ssize_t)sizeof(r));
	ck_assert_int_eq(r, 0);

	cancel_calls = 0;
	shset_set_wait_hook(cancel_after_two, NULL);
	ck_assert_int_eq(shset_clear(s), -ECANCELED);
	ck_assert_int_eq(cancel_calls, 2);
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(l0, &st), 0);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_int_eq(shset_size(s), 100);
	kill(holder, SIGKILL);
	wait_status(holder);
	/* The dead holder's lock is taken over; the hook is not asked to give
	 * up again. */
	cancel_calls = -1000;
	ck_assert_int_eq(shset_clear(s), 0);
	shset_set_wait_hook(NULL, NULL);
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	close(rep[0]);
	close(rep[1]);
	shset_close(s);
}
END_TEST

/* --- set algebra reads the other set's words no further than they hold ---------- */

/*
 * A peer holding only B writes B's count and a table descriptor of 2^40
 * slots: shset_update(A, B) must not size (and fault in) a table in A from
 * them, a set the peer cannot even reach.
 */
START_TEST(algebra_sized_by_what_the_other_holds)
{
	shset *a, *b;
	struct shset_opts oa = {.max_bytes = 1ull << 30};

	ck_assert_int_eq(create1(&a, &oa), 0);
	ck_assert_int_eq(create1(&b, NULL), 0);
	for (uint32_t i = 0; i < 10; i++) {
		ck_assert_int_eq(shset_add(a, &i, sizeof(i)), 1);
		ck_assert_int_eq(shset_add(b, &i, sizeof(i)), 1);
	}
	struct peer p;
	peer_map(&p, shset_fd(b));
	poke(&p, STATE_OFF(tdesc), ((uint64_t)TABLE_CODE(39, 0) << 56) | 0x100000);
	poke(&p, STATE_OFF(count), 1ull << 22);
	uint64_t before = allocated(shset_fd(a));
	long long r = shset_update(a, b);
	ck_assert(r == -EUCLEAN || r >= 0);
	ck_assert_msg(allocated(shset_fd(a)) - before < (8ull << 20), "A grew by %llu bytes",
		      (unsigned long long)(allocated(shset_fd(a)) - before));
	ck_assert_int_eq(shset_size(a), 10);
	ck_assert_int_eq(shset_verify(a), 0);
	shset_close(b);
	shset_close(a);
}
END_TEST

/* --- signals do not keep a waiter from taking over a dead owner's lock ------------ */

static void on_tick(int sig)
{
	(void)sig;
}

static void honest_add_under_signals(void *arg)
{
	shset *c;
	struct sigaction sa = {.sa_handler = on_tick}; /* no SA_RESTART */
	struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	struct itimerspec it = {{0, 2000000}, {0, 2000000}}, off = {{0, 0}, {0, 0}};
	timer_t tm;

	if (shset_attach_fd(&c, shset_fd((shset *)arg)))
		_exit(10);
	/* A wall-clock timer: it fires while the waiter sleeps. */
	sigaction(SIGUSR1, &sa, NULL);
	if (timer_create(CLOCK_MONOTONIC, &ev, &tm) || timer_settime(tm, 0, &it, NULL))
		_exit(12);
	int r = shset_add(c, "after", 5);
	timer_settime(tm, 0, &off, NULL);
	_exit(r == 1 ? 0 : 11);
}

/*
 * The lock word names no live process (a dead owner, or a peer's word)
 * while the waiter gets a signal every 2 ms, more often than its liveness
 * check interval: each interrupted wait must not restart the interval.
 */
START_TEST(signals_do_not_stop_takeover)
{
	shset *s;

	ck_assert_int_eq(create1(&s, NULL), 0);
	struct peer p;
	peer_map(&p, shset_fd(s));
	/* Slot 3 + 1, generation 7: nobody holds that slot. */
	__atomic_store_n((uint32_t *)(p.m + REGION_LOCK_OFF), 4u | 7u << LEASE_GEN_SHIFT,
			 __ATOMIC_RELEASE);
	int st = run_honest(honest_add_under_signals, s, (unsigned)(10 * test_scale()));
	ck_assert_msg(st == 0, "honest process: status %d (142: it never took the lock over)", st);
	ck_assert_int_eq(shset_contains(s, "after", 5), 1);
	shset_close(s);
}
END_TEST

/* --- a peer writing random words while an honest process works ---------------------- */

struct fuzz_arg {
	shset *s;
	struct shared *sh;
	const char *dir;
	uint64_t worst_ns;
	uint64_t ops, errors;
};

static int visit_count(const void *k, size_t len, void *arg)
{
	(void)k;
	(void)len;
	(*(long *)arg)++;
	return 0;
}

/* One of every operation, timed; any value or error is fine. */
static void honest_everything(void *a)
{
	struct fuzz_arg *f = a;
	shset *c, *good, *cp;
	uint64_t rng = 11, rss0 = rss_kib();
	char path[256];

	if (shset_attach_fd(&c, shset_fd(f->s)) || create1(&good, NULL))
		_exit(10);
	f->sh->ready = 1; /* the peer starts once we are attached */
	for (uint32_t i = 0; i < 200; i++)
		shset_add(good, &i, sizeof(i));
	snprintf(path, sizeof(path), "%s/snap", f->dir);
	uint64_t end = now_ns() + (uint64_t)(seconds() * 1e9);
	while (now_ns() < end) {
		uint8_t key[300], out[SHSET_KEY_MAX];
		size_t len = key_of((uint32_t)(rng_next(&rng) % 3000), key), ol;
		const void *kp[8];
		size_t kl[8];
		long visits = 0;
		long long r = 0;
		uint64_t t0 = now_ns();
		switch (rng_next(&rng) % 16) {
		case 0:
		case 1:
			r = shset_add(c, key, len);
			break;
		case 2:
			r = shset_remove(c, key, len);
			break;
		case 3:
		case 4:
			r = shset_contains(c, key, len);
			break;
		case 5:
			r = shset_size(c);
			break;
		case 6:
			r = shset_copy(c, &cp);
			if (r == 0) {
				shset_verify(cp);
				shset_close(cp);
			}
			break;
		case 7:
			r = shset_foreach(c, visit_count, &visits);
			break;
		case 8:
			r = shset_save(c, path);
			break;
		case 9:
			r = shset_verify(c);
			break;
		case 10:
			for (int i = 0; i < 8; i++) {
				kp[i] = out + i * 300;
				kl[i] = key_of((uint32_t)(rng_next(&rng) % 3000), out + i * 300);
			}
			r = rng_next(&rng) & 1 ? shset_add_batch(c, kp, kl, 8)
					       : shset_remove_batch(c, kp, kl, 8);
			break;
		case 11:
			r = shset_pop(c, out, sizeof(out), &ol);
			break;
		case 12:
			r = shset_update(c, good);
			break;
		case 13:
			r = shset_difference_update(good, c);
			break;
		case 14:
			r = shset_issubset(good, c);
			break;
		case 15: {
			struct shset_stats st;
			r = shset_stats(c, &st);
			break;
		}
		}
		uint64_t took = now_ns() - t0;
		if (took > f->worst_ns)
			f->worst_ns = took;
		if (r < -4095)
			_exit(12); /* neither a value nor an error */
		f->errors += r < 0;
		f->ops++;
	}
	printf("random-word peer: %llu operations, %llu errors, slowest %.1f ms, rss +%llu KiB\n",
	       (unsigned long long)f->ops, (unsigned long long)f->errors, f->worst_ns / 1e6,
	       (unsigned long long)(rss_kib() - rss0));
	fflush(stdout);
	if (f->worst_ns > 2000000000ull * test_scale())
		_exit(13);
	/* Bounded by what exists: buffers sized by the file's memory (at
	 * most max_bytes, 256 MiB here) twice over, plus a sanitizer's
	 * quarantine of freed blocks (256 MiB). */
	if (rss_kib() - rss0 > 1024 * 1024)
		_exit(14);
	shset_close(good);
	shset_close(c);
}

/*
 * The peer writes random words, biased towards the header, the lock word,
 * the table state, the undo log and the current table's slots, replays
 * lock words it saw (naming a live process), and grows the file sparsely,
 * for a few seconds.  The honest process runs every operation under a
 * watchdog: no signal, no operation longer than 2 s, memory bounded.
 */
START_TEST(random_words_peer)
{
	shset *s;
	struct shared *sh = shared_new();
	/* One shard, then four: the peer writes any shard's words. */
	struct shset_opts o = {.max_bytes = _i ? 4ull << 30 : 256 << 20, .shards = _i ? 4 : 1};
	char dir[] = "/tmp/shset-hostile-XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(create1(&s, &o), 0);
	for (uint32_t i = 0; i < 2000; i++) {
		uint8_t key[300];
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	pid_t peer = fork();
	if (peer == 0) {
		struct peer p;
		uint64_t rng = 5, seen_lock = 0;
		peer_map(&p, shset_fd(s));
		while (!sh->ready && !sh->stop)
			usleep(100);
		while (!sh->stop) {
			uint64_t size = peer_size(&p), off, v = rng_next(&rng);
			/* A shard: its page (lock, state), log and heap. */
			uint64_t base = (rng_next(&rng) % p.h.nshards) * p.h.shard_bytes;
			uint64_t log_off = base ? base + REGION_PAGE : p.h.log_off;
			uint64_t heap_off = log_off + p.h.log_bytes;
			uint64_t heap_end =
			    base + p.h.shard_bytes < size ? base + p.h.shard_bytes : size;
			uint64_t tdesc = peek(&p, base + STATE_OFF(tdesc));
			uint64_t lw = peek(&p, base + REGION_LOCK_OFF);
			if (lw & 0xfff)
				seen_lock = lw;
			switch (rng_next(&rng) % 10) {
			case 0: /* the header: sizes, offsets, the file size */
				off = rng_next(&rng) % REGION_LOCK_OFF;
				break;
			case 1: /* the lock: a random word or one that names a live owner */
				off = base + REGION_LOCK_OFF + 8 * (rng_next(&rng) % 2);
				if (rng_next(&rng) & 1)
					v = seen_lock;
				break;
			case 2:
			case 3: /* the table state (shard 0's commit record too) */
				off = base + REGION_STATE_OFF +
				      rng_next(&rng) % sizeof(struct tx_state);
				break;
			case 4: /* the undo log and its length */
				off = log_off + rng_next(&rng) % 4096;
				if (rng_next(&rng) & 1) {
					off = base + STATE_OFF(log_n);
					v %= 64;
				}
				break;
			case 5:
			case 6:
			case 7: { /* the current table's slots: metas, lengths, offsets */
				uint64_t toff = tdesc & ((1ull << 56) - 1);
				uint64_t cap = table_code_cap((unsigned)(tdesc >> 56));
				if (!cap || cap > (1ull << 30) || toff >= size)
					toff = heap_off, cap = 16;
				off = toff + (rng_next(&rng) % cap) * 32 + 8 * (v % 4);
				break;
			}
			case 8: /* the heap */
				if (heap_end <= heap_off)
					continue;
				off = heap_off + rng_next(&rng) % (heap_end - heap_off);
				break;
			default: /* grow the file sparsely, now and then */
				if (rng_next(&rng) % 64 == 0 && size < p.max)
					if (ftruncate(p.fd, (off_t)(size + (rng_next(&rng) %
									    (16u << 20)))))
						_exit(2);
				continue;
			}
			if (v & (1ull << 63) &&
			    !(off >= base + REGION_LOCK_OFF && off < base + REGION_LOCK_OFF + 16))
				v = (v % size) & ~31ull; /* plausible offsets */
			else if (v & (1ull << 62))
				v &= 0xffff; /* plausible lengths and counts */
			if (off + 8 <= size)
				poke(&p, off, v);
			if (rng_next(&rng) % 8 == 0)
				usleep(20);
		}
		_exit(0);
	}
	struct fuzz_arg f = {s, sh, dir, 0, 0, 0};
	int st = run_honest(honest_everything, &f, (unsigned)(30 * test_scale()));
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(
	    st == 0,
	    "honest process: status %d (13: an operation took > 2 s, 14: memory, 142: hung)", st);
	shset_close(s);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* --- 10. the shard layout in the header ------------------------------------------ */

/* Attach checks the shard count and size against the reservation and the
 * file before it maps a shard: each forgery is refused, the set intact. */
START_TEST(shard_layout_checked)
{
	shset *s, *c;
	struct shset_opts o = {.size = sizeof(o), .max_bytes = 4ull << 30, .shards = 4};

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (uint32_t i = 0; i < 1000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	int fd = shset_fd(s);
	struct region_hdr h;
	ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_uint_eq(h.nshards, 4);
	ck_assert_uint_eq(h.shard_bytes, 1ull << 30);
	const struct {
		uint32_t n;
		uint64_t bytes;
	} bad[] = {
	    {0, h.shard_bytes},		     /* no shard */
	    {3, h.shard_bytes},		     /* not a power of two */
	    {32, h.shard_bytes / 8},	     /* too many */
	    {4, h.shard_bytes + 1},	     /* unaligned */
	    {4, h.shard_bytes * 2},	     /* past the reservation */
	    {4, h.heap_off},		     /* shard 0 has no heap */
	    {1, h.shard_bytes},		     /* one shard is the whole reservation */
	    {UINT32_MAX, UINT64_MAX / 2 + 1} /* overflowing products */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct region_hdr f = h;
		f.nshards = bad[i].n;
		f.shard_bytes = bad[i].bytes;
		ck_assert_int_eq(pwrite(fd, &f, sizeof(f), 0), (ssize_t)sizeof(f));
		ck_assert_msg(shset_attach_fd(&c, fd) == -EUCLEAN, "forgery %zu attached", i);
	}
	ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(shset_attach_fd(&c, fd), 0);
	ck_assert_int_eq(shset_size(c), 1000);
	ck_assert_int_eq(shset_verify(c), 0);
	shset_close(c);
	shset_close(s);
}
END_TEST

/*
 * A peer forges a finished transaction over several shards: a log left
 * in one shard, tagged as the transaction shard 0's commit record names.
 * The next lock holder keeps it (rolls forward) instead of undoing it;
 * the log's words were the peer's, so the set may be damaged, which
 * verify reports, but nothing crashes and every call returns.
 */
START_TEST(forged_commit_record)
{
	shset *s;
	struct shset_opts o = {.size = sizeof(o), .max_bytes = 4ull << 30, .shards = 4};

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (uint32_t i = 0; i < 1000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	struct peer p;
	peer_map(&p, shset_fd(s));
	uint64_t base = 2 * p.h.shard_bytes;
	uint64_t count = peek(&p, base + STATE_OFF(count));
	/* The log restores count to 7 on a rollback; kept, it does nothing. */
	poke(&p, base + REGION_PAGE, base + STATE_OFF(count));
	poke(&p, base + REGION_PAGE + 8, 7);
	poke(&p, base + STATE_OFF(mtx), 99);
	poke(&p, STATE_OFF(mtx_done), 99);
	poke(&p, base + STATE_OFF(log_n), 1);
	ck_assert_int_eq(shset_verify(s), 0); /* repaired: rolled forward */
	ck_assert_uint_eq(peek(&p, base + STATE_OFF(count)), count);
	ck_assert_uint_eq(peek(&p, base + STATE_OFF(log_n)), 0);
	/* Not committed: rolled back, count is what the log said. */
	poke(&p, base + STATE_OFF(mtx), 98);
	poke(&p, base + STATE_OFF(log_n), 1);
	int v = shset_verify(s);
	ck_assert_int_eq(v, -EUCLEAN);
	ck_assert_uint_eq(peek(&p, base + STATE_OFF(count)), 7);
	poke(&p, base + STATE_OFF(count), count);
	ck_assert_int_eq(shset_verify(s), 0);
	ck_assert_int_eq(shset_size(s), 1000);
	munmap(p.m, p.max);
	shset_close(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("hostile");
	TCase *tc = tcase_create("hostile");
	tcase_set_timeout(tc, 120 * test_scale());
	tcase_add_test(tc, rollback_reads_the_log_once);
	tcase_add_test(tc, probe_reads_the_length_once);
	tcase_add_test(tc, verify_reads_brk_once);
	tcase_add_test(tc, rebuild_probe_is_bounded);
	tcase_add_test(tc, placements_into_a_new_table_are_bounded);
	tcase_add_test(tc, collect_bounded_by_memory);
	tcase_add_test(tc, inspection_allocates_nothing);
	tcase_add_test(tc, identity_is_the_memfd);
	tcase_add_test(tc, sealed_after_its_size_was_read);
	tcase_add_test(tc, huge_page_memfd_refused);
	tcase_add_test(tc, size_bounded_by_region);
	tcase_add_test(tc, forged_word_cleared_by_recover);
	tcase_add_test(tc, forged_word_naming_a_waiter);
	tcase_add_test(tc, wait_hook_cancels_whole_set_operation);
	tcase_add_test(tc, algebra_sized_by_what_the_other_holds);
	tcase_add_test(tc, signals_do_not_stop_takeover);
	tcase_add_loop_test(tc, random_words_peer, 0, 2);
	tcase_add_test(tc, shard_layout_checked);
	tcase_add_test(tc, forged_commit_record);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
