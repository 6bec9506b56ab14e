/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c - writers killed with SIGKILL at random instants, and
 * regions scribbled with random bytes.
 *
 * SHSET_CRASH_TRIALS sets the number of kills (default 200); the ctest
 * label "torture" runs 2000.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "keys.h"
#include "shset.h"

#define U 4000 /* key universe */

enum { OP_ADD, OP_REMOVE, OP_BATCH_ADD, OP_BATCH_REMOVE, OP_POP, OP_CLEAR, OP_UNION, OP_DIFF };

struct op {
	int kind;
	uint32_t key;
	int nb;
	uint32_t batch[128];
};

/* The writer's n-th operation, derived from its seed alone so that the
 * parent can replay it. */
static void gen_op(uint64_t *rng, struct op *o)
{
	uint64_t r = rng_next(rng) % 1000;

	o->key = (uint32_t)(rng_next(rng) % U);
	o->nb = 0;
	if (r < 380)
		o->kind = OP_ADD;
	else if (r < 640)
		o->kind = OP_REMOVE;
	else if (r < 780)
		o->kind = OP_BATCH_ADD;
	else if (r < 900)
		o->kind = OP_BATCH_REMOVE;
	else if (r < 960)
		o->kind = OP_POP;
	else if (r < 964)
		o->kind = OP_CLEAR;
	else if (r < 982)
		o->kind = OP_UNION;
	else
		o->kind = OP_DIFF;
	if (o->kind == OP_BATCH_ADD || o->kind == OP_BATCH_REMOVE) {
		o->nb = 1 + (int)(rng_next(rng) % 128);
		for (int i = 0; i < o->nb; i++)
			o->batch[i] = (uint32_t)(rng_next(rng) % U);
	}
}

/* The other set of union/difference: every 7th key. */
static int in_other(uint32_t k)
{
	return k % 7 == 3;
}

struct ack {
	uint32_t n;
	int32_t popped;
};

static void apply(uint8_t *m, const struct op *o, int popped)
{
	switch (o->kind) {
	case OP_ADD:
		m[o->key] = 1;
		break;
	case OP_REMOVE:
		m[o->key] = 0;
		break;
	case OP_BATCH_ADD:
	case OP_BATCH_REMOVE:
		for (int i = 0; i < o->nb; i++)
			m[o->batch[i]] = o->kind == OP_BATCH_ADD;
		break;
	case OP_POP:
		if (popped >= 0)
			m[popped] = 0;
		break;
	case OP_CLEAR:
		memset(m, 0, U);
		break;
	case OP_UNION:
	case OP_DIFF:
		for (uint32_t k = 0; k < U; k++)
			if (in_other(k))
				m[k] = o->kind == OP_UNION;
		break;
	}
}

static int run_op(shset *s, shset *other, const struct op *o, int *popped)
{
	uint8_t key[300], bk[128][300];
	const void *kp[128];
	size_t kl[128], len;

	*popped = -1;
	switch (o->kind) {
	case OP_ADD:
		len = key_of(o->key, key);
		return shset_add(s, key, len);
	case OP_REMOVE:
		len = key_of(o->key, key);
		return shset_remove(s, key, len);
	case OP_BATCH_ADD:
	case OP_BATCH_REMOVE:
		for (int i = 0; i < o->nb; i++) {
			kl[i] = key_of(o->batch[i], bk[i]);
			kp[i] = bk[i];
		}
		return (int)(o->kind == OP_BATCH_ADD
				 ? shset_add_batch(s, kp, kl, (size_t)o->nb)
				 : shset_remove_batch(s, kp, kl, (size_t)o->nb));
	case OP_POP: {
		int r = shset_pop(s, key, sizeof(key), &len);
		if (r == 1)
			*popped = key_index(key, len);
		return r;
	}
	case OP_CLEAR:
		return shset_clear(s);
	case OP_UNION:
		return (int)shset_update(s, other);
	case OP_DIFF:
		return (int)shset_difference_update(s, other);
	}
	return -EINVAL;
}

static void writer(int fd, int ofd, uint64_t seed, int ackfd)
{
	shset *s, *other;
	uint64_t rng = seed;
	struct op o;

	if (shset_attach_fd(&s, fd) || shset_attach_fd(&other, ofd))
		_exit(1);
	for (uint32_t n = 0;; n++) {
		int popped;
		gen_op(&rng, &o);
		if (run_op(s, other, &o, &popped) < 0)
			_exit(2);
		struct ack a = {n, popped};
		write_all(ackfd, &a, sizeof(a));
	}
}

static int read_presence(const void *k, size_t len, void *arg)
{
	uint8_t *m = arg;
	int i = key_index(k, len);
	if (i < 0 || i >= U || m[i])
		return -100; /* a garbage key, or a duplicate */
	m[i] = 1;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(random_kills)
{
	const char *e = getenv("SHSET_CRASH_TRIALS");
	int trials = e ? atoi(e) : 200;
	shset *s, *other;
	static uint8_t model[U], after[U], actual[U];
	uint64_t *recovery = calloc((size_t)trials, sizeof(uint64_t));
	uint64_t krng = 7;
	long acked_total = 0;
	int in_flight_applied = 0;

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_create(&other, NULL), 0);
	uint8_t key[300];
	for (uint32_t k = 0; k < U; k++)
		if (in_other(k)) {
			size_t len = key_of(k, key);
			shset_add(other, key, len);
		}
	for (int t = 0; t < trials; t++) {
		int p[2];
		ck_assert_int_eq(pipe(p), 0);
		uint64_t seed = 1000 + (uint64_t)t;
		pid_t w = fork();
		if (w == 0) {
			close(p[0]);
			writer(shset_fd(s), shset_fd(other), seed, p[1]);
		}
		close(p[1]);
		/* Let it run a random while: from at once to 20 ms. */
		uint64_t d = rng_next(&krng) % 20000;
		if (d > 1000)
			usleep((useconds_t)d);
		kill(w, SIGKILL);
		ck_assert_int_eq(wait_status(w), 128 + SIGKILL);

		/* Replay what was acknowledged. */
		uint64_t rng = seed;
		struct op o;
		struct ack a;
		uint32_t n = 0;
		while (read_all(p[0], &a, sizeof(a)) == 0) {
			ck_assert_uint_eq(a.n, n);
			gen_op(&rng, &o);
			apply(model, &o, a.popped);
			n++;
		}
		close(p[0]);
		acked_total += n;
		gen_op(&rng, &o); /* the one in flight, maybe */

		/* The next operation takes the dead writer's lock over. */
		uint64_t t0 = now_ns();
		ck_assert_int_eq(shset_verify(s), 0);
		recovery[t] = now_ns() - t0;

		memset(actual, 0, U);
		ck_assert_int_eq(shset_foreach(s, read_presence, actual), 0);
		int n_actual = 0;
		for (int k = 0; k < U; k++)
			n_actual += actual[k];
		ck_assert_int_eq(shset_size(s), n_actual);
		if (memcmp(actual, model, U) != 0) {
			/* Only the in-flight operation may differ, and whole. */
			memcpy(after, model, U);
			if (o.kind == OP_POP) {
				int missing = 0, extra = 0;
				for (int k = 0; k < U; k++) {
					missing += model[k] && !actual[k];
					extra += !model[k] && actual[k];
				}
				ck_assert_int_eq(extra, 0);
				ck_assert_int_eq(missing, 1);
			} else {
				apply(after, &o, -1);
				ck_assert_msg(
				    memcmp(actual, after, U) == 0,
				    "trial %d: state is neither before nor after op kind %d", t,
				    o.kind);
			}
			in_flight_applied++;
			memcpy(model, actual, U);
		}
	}
	qsort(recovery, (size_t)trials, sizeof(uint64_t), cmp_u64);
	printf("random kills: %d trials, %ld acknowledged ops, 0 lost, 0 corrupt; in-flight op "
	       "applied in %d; recovery median %.2f ms, max %.2f ms\n",
	       trials, acked_total, in_flight_applied, recovery[trials / 2] / 1e6,
	       recovery[trials - 1] / 1e6);
	struct shset_stats st;
	shset_stats(s, &st);
	printf("random kills: %llu killed holding the lock, %llu repairs\n",
	       (unsigned long long)st.lock.owner_died, (unsigned long long)st.repairs);
	ck_assert_uint_gt(st.lock.owner_died, 0);
	free(recovery);
	shset_close(other);
	shset_close(s);
}
END_TEST

/* --- hostile bytes -------------------------------------------------------------- */

static int visit_any(const void *k, size_t len, void *arg)
{
	(void)k;
	(void)len;
	(*(long *)arg)++;
	return 0;
}

/* One random operation on a possibly hostile set: any result but a crash. */
static void exercise_one(shset *c, uint64_t *rng)
{
	uint8_t key[300], out[300];
	size_t len = key_of((uint32_t)(rng_next(rng) % 4000), key), ol;
	long visits = 0;
	switch (rng_next(rng) % 8) {
	case 0:
	case 1:
		shset_contains(c, key, len);
		break;
	case 2:
		shset_add(c, key, len);
		break;
	case 3:
		shset_remove(c, key, len);
		break;
	case 4:
		shset_pop(c, out, sizeof(out), &ol);
		break;
	case 5:
		shset_size(c);
		break;
	case 6:
		shset_foreach(c, visit_any, &visits);
		break;
	case 7:
		shset_verify(c);
		break;
	}
}

/* Runs every operation; each must return a value or an error, never crash. */
static void exercise(shset *c, shset *good)
{
	uint8_t key[300], out[SHSET_KEY_MAX];
	const void *kp[4];
	size_t kl[4], len;
	long visits = 0;
	shset *cc;

	for (uint32_t i = 0; i < 60; i++) {
		len = key_of(i * 31, key);
		int r = shset_contains(c, key, len);
		ck_assert(r == 0 || r == 1 || r == -EUCLEAN);
		r = shset_add(c, key, len);
		ck_assert(r == 0 || r == 1 || r < 0);
		r = shset_remove(c, key, len);
		ck_assert(r == 0 || r == 1 || r < 0);
	}
	for (int i = 0; i < 4; i++) {
		kl[i] = key_of((uint32_t)i * 97, (uint8_t *)out + i * 300);
		kp[i] = out + i * 300;
	}
	ck_assert(shset_add_batch(c, kp, kl, 4) >= -4095);
	ck_assert(shset_remove_batch(c, kp, kl, 4) >= -4095);
	ck_assert(shset_pop(c, out, sizeof(out), &len) >= -4095);
	ck_assert(shset_size(c) >= -4095);
	ck_assert(shset_foreach(c, visit_any, &visits) >= -4095);
	if (shset_copy(c, &cc) == 0)
		shset_close(cc);
	ck_assert(shset_update(good, c) >= -4095);
	ck_assert(shset_update(c, good) >= -4095);
	ck_assert(shset_intersection_update(c, good) >= -4095);
	ck_assert(shset_issubset(c, good) >= -4095);
	ck_assert(shset_equal(good, c) >= -4095);
	struct shset_stats st;
	int sr = shset_stats(c, &st);
	ck_assert(sr == 0 || sr == -EUCLEAN);
	ck_assert(shset_verify(c) >= -4095);
	ck_assert(shset_clear(c) >= -4095);
}

START_TEST(scribbled_regions)
{
	shset *s;
	uint8_t key[300];
	uint64_t rng = 99;
	int detected = 0, rounds = 300;

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < 2500; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
		if (i % 3 == 0)
			shset_remove(s, key, len);
	}
	for (int round = 0; round < rounds; round++) {
		shset *c, *g;
		ck_assert_int_eq(shset_copy(s, &c), 0);
		ck_assert_int_eq(shset_copy(s, &g), 0);
		int fd = shset_fd(c);
		struct stat stt;
		ck_assert_int_eq(fstat(fd, &stt), 0);
		uint64_t size = (uint64_t)stt.st_size;
		/* Where the file holds data (every shard's state, log and
		 * heap; the rest is holes), as extents. */
		uint64_t ext[64][2], data = 0;
		int next = 0;
		for (off_t at = 0; next < 64;) {
			off_t d = lseek(fd, at, SEEK_DATA);
			if (d < 0)
				break;
			off_t h = lseek(fd, d, SEEK_HOLE);
			ext[next][0] = (uint64_t)d;
			ext[next][1] = (uint64_t)(h - d);
			data += ext[next++][1];
			at = h;
		}
		ck_assert_uint_gt(data, 4096);
		/* Everything a peer could scribble on without holding the lock
		 * word hostage: the table states, the undo logs, the heaps. */
		int writes = 1 + (int)(rng_next(&rng) % 16);
		for (int w = 0; w < writes; w++) {
			uint64_t pick = rng_next(&rng) % data, off = 0;
			for (int e = 0; e < next; e++) {
				if (pick < ext[e][1]) {
					off = ext[e][0] + pick;
					break;
				}
				pick -= ext[e][1];
			}
			if (off % 4096 < 512 + 64 && rng_next(&rng) % 2)
				off = off / 4096 * 4096 + 512 + 64 + rng_next(&rng) % 600;
			if (off < 512 + 64 || off + 8 > size)
				continue; /* the header: read once at attach */
			if (off >= 4096 && off < 4096 * 2 && rng_next(&rng) % 2)
				off = 512 + 64 + rng_next(&rng) % 600; /* favour the state */
			if (off >= 4096 && off < 4096 + 256 * 16)
				continue; /* lease slots: liveness, not data */
			uint64_t v = rng_next(&rng);
			int kind = (int)(rng_next(&rng) % 3);
			if (kind == 1)
				v &= 0xffff; /* small numbers look like plausible lengths */
			else if (kind == 2)
				v = (v % size) & ~31ull; /* plausible offsets */
			ck_assert_int_eq(pwrite(fd, &v, 8, (off_t)(off & ~7ull)), 8);
		}
		int v0 = shset_verify(c);
		ck_assert(v0 == 0 || v0 == -EUCLEAN);
		detected += v0 == -EUCLEAN;
		exercise(c, g);
		shset_close(c);
		shset_close(g);
	}
	printf("scribbles: %d rounds, %d detected as -EUCLEAN by verify, no crash\n", rounds,
	       detected);
	ck_assert_int_gt(detected, rounds / 4);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* A peer that keeps the fd and scribbles on the live region while others
 * work: they get values or errors, never a crash. */
START_TEST(hostile_peer_scribbles_live)
{
	shset *s;
	uint8_t key[300];
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < 3000; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	volatile int *stop =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t w[3];
	for (int i = 0; i < 3; i++) {
		w[i] = fork();
		if (w[i] == 0) {
			shset *c;
			uint64_t rng = (uint64_t)i + 1;
			if (shset_attach_fd(&c, shset_fd(s)))
				_exit(1);
			if (i == 2) {
				/* The hostile one: random words into the table state,
				 * the undo log and the heap (not the lock word or the
				 * process slots, which would only make others wait). */
				struct stat stt;
				fstat(shset_fd(c), &stt);
				uint8_t *m = mmap(NULL, (size_t)stt.st_size, PROT_READ | PROT_WRITE,
						  MAP_SHARED, shset_fd(c), 0);
				while (!*stop) {
					uint64_t off =
					    576 + rng_next(&rng) % ((uint64_t)stt.st_size - 584);
					if (off >= 4096 && off < 8192)
						continue;
					uint64_t v = rng_next(&rng);
					if (v & 1)
						v = (v >> 1) % (uint64_t)stt.st_size & ~31ull;
					__atomic_store_n((uint64_t *)(m + (off & ~7ull)), v,
							 __ATOMIC_RELAXED);
					usleep(50);
				}
				_exit(0);
			}
			while (!*stop)
				exercise_one(c, &rng);
			_exit(0);
		}
	}
	usleep(1500000);
	*stop = 1;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(wait_status(w[i]), 0); /* no signal: no crash */
	int v = shset_verify(s);
	ck_assert(v == 0 || v == -EUCLEAN);
	shset_close(s);
}
END_TEST

/* A peer leaves the seqcount odd without holding the lock: readers fall
 * back to the lock and still answer (contains and size alike). */
START_TEST(odd_seqcount_left_behind)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_add(s, "k", 1), 1);
	struct stat stt;
	ck_assert_int_eq(fstat(shset_fd(s), &stt), 0);
	uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shset_fd(s), 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	uint64_t *seq = (uint64_t *)(m + 512); /* the table state's seqcount */
	__atomic_store_n(seq, *seq | 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(shset_contains(s, "k", 1), 1);
	ck_assert_int_eq(shset_size(s), 1);
	/* The next write makes it even again. */
	ck_assert_int_eq(shset_add(s, "j", 1), 1);
	ck_assert_int_eq(shset_size(s), 2);
	ck_assert_int_eq(shset_verify(s), 0);
	munmap(m, 4096);
	shset_close(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 600 * test_scale());
	tcase_add_test(tc, random_kills);
	tcase_add_test(tc, scribbled_regions);
	tcase_add_test(tc, hostile_peer_scribbles_live);
	tcase_add_test(tc, odd_seqcount_left_behind);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
