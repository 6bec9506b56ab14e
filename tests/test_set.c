/* SPDX-License-Identifier: MIT */
/* test_set.c - the set API against a model, across threads and processes. */
#include "helpers.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "hash.h"
#include "region.h"
#include "set.h"
#include "shset.h"

#include "keys.h"

/* --- basics ------------------------------------------------------------------- */

START_TEST(basic_api)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_contains(s, "", 0), 0);
	ck_assert_int_eq(shset_add(s, "", 0), 1); /* the empty key is a key */
	ck_assert_int_eq(shset_add(s, NULL, 0), 0);
	ck_assert_int_eq(shset_contains(s, NULL, 0), 1);
	ck_assert_int_eq(shset_add(s, "apple", 5), 1);
	ck_assert_int_eq(shset_add(s, "apple", 5), 0);
	ck_assert_int_eq(shset_contains(s, "apple", 5), 1);
	ck_assert_int_eq(shset_contains(s, "apple", 4), 0);
	ck_assert_int_eq(shset_size(s), 2);
	ck_assert_int_eq(shset_remove(s, "apple", 5), 1);
	ck_assert_int_eq(shset_remove(s, "apple", 5), 0);
	ck_assert_int_eq(shset_contains(s, "apple", 5), 0);

	static uint8_t big[SHSET_KEY_MAX + 1];
	memset(big, 0xab, sizeof(big));
	ck_assert_int_eq(shset_add(s, big, SHSET_KEY_MAX), 1);
	ck_assert_int_eq(shset_add(s, big, SHSET_KEY_MAX - 1), 1);
	ck_assert_int_eq(shset_contains(s, big, SHSET_KEY_MAX), 1);
	ck_assert_int_eq(shset_add(s, big, SHSET_KEY_MAX + 1), -EINVAL);
	ck_assert_int_eq(shset_contains(s, big, SHSET_KEY_MAX + 1), -EINVAL);
	ck_assert_int_eq(shset_add(s, NULL, 3), -EINVAL);
	ck_assert_int_eq(shset_size(s), 3);
	ck_assert_int_eq(shset_verify(s), 0);

	uint8_t out[16];
	size_t len = 0;
	/* Too small a buffer: nothing removed, the needed size reported. */
	int popped = 0;
	for (;;) {
		int r = shset_pop(s, out, sizeof(out), &len);
		if (r == -ENOBUFS) {
			ck_assert_uint_ge(len, SHSET_KEY_MAX - 1);
			break;
		}
		ck_assert_int_eq(r, 1);
		popped++;
		ck_assert_uint_eq(len, 0);
	}
	ck_assert_int_eq(shset_size(s), 3 - popped);
	ck_assert_int_eq(shset_clear(s), 0);
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_pop(s, out, sizeof(out), &len), 0);
	ck_assert_int_eq(shset_contains(s, big, SHSET_KEY_MAX), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	ck_assert_int_eq(shset_add(s, "after", 5), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* The key type is fixed at creation and seen by attachers and copies. */
START_TEST(key_type_recorded)
{
	struct shset_opts o = {.key_type = SHSET_KEYS_INT};
	shset *s, *t, *c;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_int_eq(shset_key_type(s), SHSET_KEYS_INT);
	ck_assert_int_eq(shset_attach_fd(&t, shset_fd(s)), 0);
	ck_assert_int_eq(shset_key_type(t), SHSET_KEYS_INT);
	ck_assert_int_eq(shset_copy(t, &c), 0);
	ck_assert_int_eq(shset_key_type(c), SHSET_KEYS_INT);
	shset_close(c);
	shset_close(t);
	shset_close(s);
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_key_type(s), SHSET_KEYS_BYTES);
	shset_close(s);
	o.key_type = 3;
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL);
	/* The size field: 0 or this version's size; nothing smaller. */
	struct shset_opts sized = {.size = sizeof(sized), .key_type = SHSET_KEYS_STR};
	ck_assert_int_eq(shset_create(&s, &sized), 0);
	ck_assert_int_eq(shset_key_type(s), SHSET_KEYS_STR);
	shset_close(s);
	sized.size = 8;
	ck_assert_int_eq(shset_create(&s, &sized), -EINVAL);
	ck_assert_int_eq(shset_key_type(NULL), -EINVAL);
}
END_TEST

/* The shard count a set was made with, from its header. */
static uint32_t shards_of(shset *s)
{
	struct region_hdr h;
	ck_assert_int_eq(pread(shset_fd(s), &h, sizeof(h), 0), (ssize_t)sizeof(h));
	return h.nshards;
}

/* shset_opts.shards: read only from callers that say their struct has it
 * (size), a power of two up to 16 that leaves each shard room; by default
 * one per 512 MiB of max_bytes.  Every layout works the same. */
START_TEST(shard_options)
{
	shset *s, *c;
	struct shset_opts o = {0};

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_uint_eq(shards_of(s), 16); /* 8 GiB */
	shset_close(s);
	o.max_bytes = 1ull << 30;
	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_uint_eq(shards_of(s), 2);
	shset_close(s);
	o.max_bytes = 256 << 20;
	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_uint_eq(shards_of(s), 1);
	shset_close(s);
	/* size 0 is the 0.1 layout: shards is not read. */
	o = (struct shset_opts){.max_bytes = 4ull << 30, .shards = 3};
	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_uint_eq(shards_of(s), 8);
	shset_close(s);
	o.size = sizeof(o);
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL); /* not a power of two */
	o.shards = 32;
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL);
	o = (struct shset_opts){.size = sizeof(o), .pad = 1};
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL); /* reserved */
	o = (struct shset_opts){.size = sizeof(o), .max_bytes = 8 << 20, .shards = 16};
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL); /* 512 KiB a shard */
	o.size = 8;
	ck_assert_int_eq(shset_create(&s, &o), -EINVAL); /* smaller than 0.1 */
	for (uint32_t n = 1; n <= 16; n *= 2) {
		o = (struct shset_opts){.size = sizeof(o), .max_bytes = 1ull << 30, .shards = n};
		ck_assert_int_eq(shset_create(&s, &o), 0);
		ck_assert_uint_eq(shards_of(s), n);
		for (uint32_t i = 0; i < 3000; i++)
			ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
		uint32_t k = 7;
		ck_assert_int_eq(shset_remove(s, &k, sizeof(k)), 1);
		ck_assert_int_eq(shset_size(s), 2999);
		ck_assert_int_eq(shset_copy(s, &c), 0);
		ck_assert_uint_eq(shards_of(c), n);
		ck_assert_int_eq(shset_equal(s, c), 1);
		ck_assert_int_eq(shset_clear(c), 0);
		ck_assert_int_eq(shset_size(c), 0);
		ck_assert_int_eq(shset_verify(s), 0);
		ck_assert_int_eq(shset_verify(c), 0);
		shset_close(c);
		shset_close(s);
	}
}
END_TEST

START_TEST(null_arguments)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_add(NULL, "a", 1), -EINVAL);
	ck_assert_int_eq(shset_remove(NULL, "a", 1), -EINVAL);
	ck_assert_int_eq(shset_contains(NULL, "a", 1), -EINVAL);
	ck_assert_int_eq(shset_size(NULL), -EINVAL);
	ck_assert_int_eq(shset_clear(NULL), -EINVAL);
	ck_assert_int_eq(shset_copy(NULL, NULL), -EINVAL);
	shset *c = (shset *)1;
	ck_assert_int_eq(shset_copy(NULL, &c), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(shset_foreach(NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_foreach(s, NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_add_batch(NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(shset_add_batch(s, NULL, NULL, 2), -EINVAL);
	ck_assert_int_eq(shset_remove_batch(NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(shset_pop(NULL, NULL, 0, NULL), -EINVAL);
	ck_assert_int_eq(shset_pop(s, NULL, 4, NULL), -EINVAL);
	ck_assert_int_eq(shset_update(s, NULL), -EINVAL);
	ck_assert_int_eq(shset_intersection_update(NULL, s), -EINVAL);
	ck_assert_int_eq(shset_difference_update(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_symmetric_difference_update(s, NULL), -EINVAL);
	ck_assert_int_eq(shset_isdisjoint(s, NULL), -EINVAL);
	ck_assert_int_eq(shset_issubset(NULL, s), -EINVAL);
	ck_assert_int_eq(shset_equal(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_verify(NULL), -EINVAL);
	ck_assert_int_eq(shset_stats(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_stats(s, NULL), -EINVAL);
	shset_close(s);
}
END_TEST

/* --- differential: random operations against a model ------------------------ */

#define UNIVERSE 3000

static int model_count(const uint8_t *m)
{
	int n = 0;
	for (int i = 0; i < UNIVERSE; i++)
		n += m[i];
	return n;
}

static void differential(uint64_t seed, int ops)
{
	shset *s;
	struct shset_opts o = {.log_bytes = 64 * 1024}; /* small: batches overflow it */
	uint8_t model[UNIVERSE] = {0}, key[300], out[300];
	const void *bk[64];
	size_t bl[64];
	static uint8_t bbuf[64][300];

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (int n = 0; n < ops; n++) {
		uint64_t r = rng_next(&seed);
		uint32_t i = (uint32_t)(rng_next(&seed) % UNIVERSE);
		size_t len = key_of(i, key);
		switch (r % 100) {
		case 0 ... 39:
			ck_assert_int_eq(shset_add(s, key, len), !model[i]);
			model[i] = 1;
			break;
		case 40 ... 64:
			ck_assert_int_eq(shset_remove(s, key, len), model[i]);
			model[i] = 0;
			break;
		case 65 ... 89:
			ck_assert_int_eq(shset_contains(s, key, len), model[i]);
			break;
		case 90 ... 94: {
			/* A batch, possibly naming a key twice. */
			int add = r & 256, nb = 1 + (int)(rng_next(&seed) % 64), expect = 0;
			for (int b = 0; b < nb; b++) {
				uint32_t j = (uint32_t)(rng_next(&seed) % UNIVERSE);
				bl[b] = key_of(j, bbuf[b]);
				bk[b] = bbuf[b];
				if (add ? !model[j] : model[j])
					expect++;
				model[j] = add ? 1 : 0;
			}
			long long got = add ? shset_add_batch(s, bk, bl, (size_t)nb)
					    : shset_remove_batch(s, bk, bl, (size_t)nb);
			ck_assert_int_eq(got, expect);
			break;
		}
		case 95 ... 98: {
			size_t ol;
			int res = shset_pop(s, out, sizeof(out), &ol);
			if (model_count(model) == 0) {
				ck_assert_int_eq(res, 0);
				break;
			}
			ck_assert_int_eq(res, 1);
			int k = key_index(out, ol);
			ck_assert_int_ge(k, 0);
			ck_assert_int_eq(model[k], 1);
			model[k] = 0;
			break;
		}
		default:
			if (r % 1000 < 995) /* clear rarely: mostly the set stays large */
				break;
			ck_assert_int_eq(shset_clear(s), 0);
			memset(model, 0, sizeof(model));
			break;
		}
		if (n % 5000 == 0) {
			ck_assert_int_eq(shset_size(s), model_count(model));
			ck_assert_int_eq(shset_verify(s), 0);
		}
	}
	ck_assert_int_eq(shset_size(s), model_count(model));
	ck_assert_int_eq(shset_verify(s), 0);
	for (uint32_t i = 0; i < UNIVERSE; i++) {
		size_t len = key_of(i, key);
		ck_assert_int_eq(shset_contains(s, key, len), model[i]);
	}
	shset_close(s);
}

START_TEST(differential_seeds)
{
	/* Several seeds, 100,000 operations each. */
	differential(1 + (uint64_t)_i * 1000003, 100000);
}
END_TEST

/* Batches big enough to be inserted in hash order (and small ones, which
 * prefetch): duplicates inside the batch, keys already present, into an
 * empty set (one fresh table) and into a full one; exact counts and
 * content against a model. */
START_TEST(big_batches_against_model)
{
	enum { N = 20000, U = 30000 };
	static uint8_t buf[N][300], model[U];
	static const void *kp[N];
	static size_t kl[N];
	uint64_t seed = 99;
	shset *s;

	memset(model, 0, sizeof(model));
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (int round = 0; round < 6; round++) {
		size_t n = round % 2 ? N : 1 + rng_next(&seed) % 5000;
		long long expect = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t j = (uint32_t)(rng_next(&seed) % U);
			kl[i] = key_of(j, buf[i]);
			kp[i] = buf[i];
			expect += !model[j];
			model[j] = 1;
		}
		ck_assert_int_eq(shset_add_batch(s, kp, kl, n), expect);
		ck_assert_int_eq(shset_verify(s), 0);
	}
	long long count = 0;
	uint8_t key[300];
	for (uint32_t j = 0; j < U; j++) {
		size_t len = key_of(j, key);
		ck_assert_int_eq(shset_contains(s, key, len), model[j]);
		count += model[j];
	}
	ck_assert_int_eq(shset_size(s), count);
	shset_close(s);
}
END_TEST

/* A batch the undo log can hold goes into a big set in place: no rebuild
 * of the whole table (which a resize in progress would also make wait),
 * whatever fraction of the log it needs. */
START_TEST(big_set_batch_in_place)
{
	enum { SET = 200000, BATCH = 40000 };
	static uint8_t buf[BATCH][16];
	static const void *kp[BATCH];
	static size_t kl[BATCH];
	struct shset_opts o = {.capacity = 400000};
	struct shset_stats a, b;
	uint8_t key[16] = {0};
	shset *s;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (uint32_t i = 0; i < SET; i++) {
		memcpy(key, &i, sizeof(i));
		ck_assert_int_eq(shset_add(s, key, sizeof(key)), 1);
	}
	for (uint32_t i = 0; i < BATCH; i++) {
		uint32_t k = SET + i;
		memset(buf[i], 0, 16);
		memcpy(buf[i], &k, sizeof(k));
		kp[i] = buf[i];
		kl[i] = 16;
	}
	ck_assert_int_eq(shset_stats(s, &a), 0);
	ck_assert_int_eq(shset_add_batch(s, kp, kl, BATCH), BATCH);
	ck_assert_int_eq(shset_stats(s, &b), 0);
	ck_assert_uint_eq(b.resizes, a.resizes);
	ck_assert_int_eq(shset_size(s), SET + BATCH);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

START_TEST(growth_to_a_million)
{
	shset *s;
	uint8_t k[16] = {0};
	const uint32_t n = 1000000;

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(k, &i, 4);
		ck_assert_int_eq(shset_add(s, k, 16), 1);
	}
	ck_assert_int_eq(shset_size(s), n);
	for (uint32_t i = 0; i < n; i += 7) {
		memcpy(k, &i, 4);
		ck_assert_int_eq(shset_contains(s, k, 16), 1);
	}
	uint32_t absent = n + 5;
	memcpy(k, &absent, 4);
	ck_assert_int_eq(shset_contains(s, k, 16), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	struct shset_stats st;
	ck_assert_int_eq(shset_stats(s, &st), 0);
	ck_assert_uint_eq(st.count, n);
	ck_assert(st.load <= 0.75);
	printf("growth: %u 16-byte keys, capacity %llu, %.1f bytes per key in memory "
	       "(file %.1f MiB, pages %.1f MiB)\n",
	       n, (unsigned long long)st.capacity, st.bytes_per_key, st.file_bytes / 1048576.0,
	       st.mem_bytes / 1048576.0);
	ck_assert_uint_le(st.mem_bytes, st.file_bytes);
	/* Removing everything leaves an empty, valid set. */
	for (uint32_t i = 0; i < n; i++) {
		memcpy(k, &i, 4);
		ck_assert_int_eq(shset_remove(s, k, 16), 1);
	}
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* Adds 16-byte keys from *@next on until this process's last commit
 * left a resize filling a table big enough for the filler (at most @n
 * keys); 1 if it did.  The table's pages in *@p, *@len. */
static int add_until_filling(shset *s, uint32_t *next, uint32_t n, uint8_t **p, size_t *len)
{
	uint8_t k[16] = {0};

	for (; *next < n; ++*next) {
		memcpy(k, next, 4);
		ck_assert_int_eq(shset_add(s, k, 16), 1);
		if (set_filling(s, 0, p, len)) {
			++*next;
			return 1;
		}
	}
	return 0;
}

/* Pages of [p, p+len) the file holds (the mapping is shared: mincore
 * tells what is in the page cache). */
static size_t resident_pages(uint8_t *p, size_t len)
{
	size_t n = len / 4096, in = 0;
	unsigned char *v = malloc(n);

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(mincore(p, len, v), 0);
	for (size_t i = 0; i < n; i++)
		in += v[i] & 1;
	free(v);
	return in;
}

/* A resize's new table is faulted in by the handle's filler thread, not
 * by the adds: once one starts, its pages all come to be held while no
 * add runs.  Small sets start no thread; shset_close stops it; a forked
 * child that grows the set starts its own; SHSET_FILLER=0 starts none. */
/* Waits (up to 10 s) until every page of [p, p+len) is held; how many are. */
static size_t resident_soon(uint8_t *p, size_t len)
{
	size_t in = resident_pages(p, len);
	for (int i = 0; i < 1000 && in < len / 4096; i++) {
		usleep(10000);
		in = resident_pages(p, len);
	}
	return in;
}

START_TEST(filler_faults_in_growing_tables)
{
	struct shset_opts o = {.size = sizeof(o), .max_bytes = 1ull << 30, .shards = 1};
	int base = count_threads();
	uint32_t next = 0;
	uint8_t *p, k[16] = {0};
	size_t len;
	shset *s;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	/* 1,000 keys fit a table too small to fault in by steps. */
	ck_assert_int_eq(add_until_filling(s, &next, 1000, &p, &len), 0);
	ck_assert_int_eq(list_threads(NULL, 0), base);
	ck_assert(!set_filler_running(s));

	/* The add that left the resize filling touched at most a few pages
	 * of the new table. */
	ck_assert_int_eq(add_until_filling(s, &next, 200000, &p, &len), 1);
	ck_assert(set_filler_running(s));
	ck_assert_int_eq(list_threads(NULL, 0), base + 1);
	ck_assert_uint_eq(resident_soon(p, len), len / 4096);

	/* After a clear the same keys, added by batches, bring resizes into
	 * the same ranges of the file: a table there is new all the same,
	 * and batches hand it over as single adds do. */
	uint8_t *p0 = p;
	size_t len0 = len;
	ck_assert_int_eq(shset_clear(s), 0);
	const void *kp[64];
	size_t kl[64];
	uint8_t keys[64][16];
	uint32_t m = 0;
	int filling = 0;
	while (!filling && m < 8 * next) {
		size_t c = 0;
		for (; c < 64; c++, m++) {
			memset(keys[c], 0, 16);
			memcpy(keys[c], &m, 4);
			kp[c] = keys[c];
			kl[c] = 16;
		}
		ck_assert_int_eq(shset_add_batch(s, kp, kl, c), (long long)c);
		filling = set_filling(s, 0, &p, &len) && len >= len0;
	}
	ck_assert(filling);
	ck_assert_uint_eq(resident_soon(p, len), len / 4096);
	if (p != p0)
		printf("filler: the table after the clear lies elsewhere\n");
	memcpy(k, &m, 4);
	ck_assert_int_eq(shset_add(s, k, 16), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
	ck_assert_int_eq(threads_now(base), base);
}
END_TEST

struct child_add {
	shset *s;
	pthread_barrier_t *go;
	uint32_t key;
	int res;
};

static void *child_adder(void *arg)
{
	struct child_add *a = arg;
	uint8_t k[16] = {0};

	memcpy(k, &a->key, 4);
	k[15] = 0xee; /* not one of add_until_filling's keys */
	pthread_barrier_wait(a->go);
	a->res = shset_add(a->s, k, 16);
	return NULL;
}

/* A forked child does not have its parent's filler.  When several of its
 * threads write at once, one of them starts the child's own, once; close
 * stops it.  With SHSET_FILLER=0 none starts.  (ThreadSanitizer cannot
 * start threads in a child of a multi-threaded process: there, only that
 * the parent's is not the child's.) */
START_TEST(filler_in_forked_children)
{
	struct shset_opts o = {.size = sizeof(o), .max_bytes = 1ull << 30, .shards = 1};
	uint32_t next = 0;
	uint8_t *p;
	size_t len;
	shset *s;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	/* A resize long enough that the children's adds do not finish it:
	 * into a table of 4 MiB or more (the old one has 98,304 slots or more). */
	do
		ck_assert_int_eq(add_until_filling(s, &next, 1000000, &p, &len), 1);
	while (len < (4u << 20));
	ck_assert(set_filler_running(s));
	for (uint32_t round = 0; round < 40; round++) {
		pid_t c = fork();
		ck_assert_int_ne(c, -1);
		if (c == 0) {
			alarm(60); /* a hang in shset_close fails the test */
			int ok = !set_filler_running(s), cbase = 0;
			if (CHILD_THREADS) {
				enum { N = 6 };
				pthread_barrier_t go;
				pthread_t t[N];
				struct child_add a[N];
				cbase = count_threads();
				pthread_barrier_init(&go, NULL, N);
				for (uint32_t i = 0; i < N; i++) {
					a[i] = (struct child_add){s, &go, round * N + i, 0};
					ok = ok &&
					     pthread_create(&t[i], NULL, child_adder, &a[i]) == 0;
				}
				for (uint32_t i = 0; i < N; i++)
					ok = ok && pthread_join(t[i], NULL) == 0 && a[i].res == 1;
				ok = ok && set_filling(s, 0, &p, &len) && set_filler_running(s) &&
				     threads_now(cbase + 1) == cbase + 1;
				ok = ok && shset_verify(s) == 0;
			}
			shset_close(s);
			ok = ok && (!CHILD_THREADS || threads_now(cbase) == cbase);
			/* Turned off: the adds fault in steps themselves. */
			setenv("SHSET_FILLER", "0", 1);
			shset *t = NULL;
			ok = ok && shset_create(&t, &o) == 0;
			uint32_t tn = 0;
			ok = ok && add_until_filling(t, &tn, 200000, &p, &len) == 1;
			ok = ok && !set_filler_running(t);
			ok = ok && (!CHILD_THREADS || list_threads(NULL, 0) == cbase);
			ok = ok && shset_size(t) == tn && shset_verify(t) == 0;
			shset_close(t);
			_exit(ok ? 0 : 1);
		}
		int wst;
		ck_assert_int_eq(waitpid(c, &wst, 0), c);
		ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "round %u: status %#x",
			      round, wst);
	}
	ck_assert(set_filler_running(s));
	ck_assert_int_eq(shset_size(s), next + (CHILD_THREADS ? 40 * 6 : 0));
	shset_close(s);
}
END_TEST

START_TEST(memory_of_removed_keys_is_reused)
{
	shset *s;
	uint8_t key[300];
	struct shset_stats a, b;

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < 2000; i++) {
		size_t len = key_of(i, key);
		ck_assert_int_eq(shset_add(s, key, len), 1);
	}
	shset_stats(s, &a);
	for (int round = 0; round < 20; round++) {
		for (uint32_t i = 1; i < 2000; i++) {
			size_t len = key_of(i, key);
			ck_assert_int_eq(shset_remove(s, key, len), 1);
			ck_assert_int_eq(shset_add(s, key, len), 1);
		}
	}
	shset_stats(s, &b);
	/* Churn of the same keys does not grow the heap. */
	ck_assert_uint_le(b.heap_bytes, a.heap_bytes * 2);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* Removing more long keys in one transaction than the undo log has room
 * for (their blocks' first words): the rest wait in the free queue, and
 * once later transactions have moved them to the free lists, new keys
 * take them instead of new memory. */
START_TEST(bulk_frees_of_long_keys)
{
	enum { M = 200000, N = 150000, LEN = 40 };
	static uint8_t buf[N][LEN];
	static const void *kp[N];
	static size_t kl[N];
	struct shset_opts o = {.size = sizeof(o), .max_bytes = 1ull << 30, .shards = 1};
	struct shset_stats a, b;
	uint8_t key[16] = {0};
	shset *s, *other;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_int_eq(shset_create(&other, &o), 0);
	/* Short keys (inline in their slots) keep the table from shrinking. */
	for (uint32_t i = 0; i < M; i++) {
		memcpy(key, &i, sizeof(i));
		ck_assert_int_eq(shset_add(s, key, sizeof(key)), 1);
	}
	for (uint32_t round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < N; i++) {
			memset(buf[i], 'a' + (int)round, LEN);
			memcpy(buf[i], &i, sizeof(i));
			kp[i] = buf[i];
			kl[i] = LEN;
		}
		ck_assert_int_eq(shset_add_batch(s, kp, kl, N), N);
		if (round == 0) {
			ck_assert_int_eq(shset_remove_batch(s, kp, kl, N), N);
		} else {
			ck_assert_int_eq(shset_add_batch(other, kp, kl, N), N);
			ck_assert_int_eq(shset_difference_update(s, other), N);
		}
		ck_assert_int_eq(shset_size(s), M);
		ck_assert_int_eq(shset_verify(s), 0);
		/* Transactions that free nothing drain the queue, 64 blocks
		 * each. */
		memset(key, 0xff, sizeof(key));
		for (uint32_t i = 0; i < N / 64 + 8; i++) {
			ck_assert_int_eq(shset_add(s, key, sizeof(key)), 1);
			ck_assert_int_eq(shset_remove(s, key, sizeof(key)), 1);
		}
		ck_assert_int_eq(shset_stats(s, &a), 0);
		for (uint32_t i = 0; i < N; i++)
			ck_assert_int_eq(shset_add(s, kp[i], LEN), 1);
		ck_assert_int_eq(shset_stats(s, &b), 0);
		ck_assert_uint_lt(b.heap_bytes - a.heap_bytes, (uint64_t)N * 48 / 10);
		ck_assert_int_eq(shset_verify(s), 0);
		ck_assert_int_eq(shset_remove_batch(s, kp, kl, N), N);
		ck_assert_int_eq(shset_clear(other), 0);
	}
	shset_close(other);
	shset_close(s);
}
END_TEST

/* Long keys of 40 bytes for the tests of batches over freed blocks. */
static void long_keys(uint8_t (*buf)[40], const void **kp, size_t *kl, uint32_t n, int tag)
{
	for (uint32_t i = 0; i < n; i++) {
		memset(buf[i], tag, 40);
		memcpy(buf[i], &i, sizeof(i));
		kp[i] = buf[i];
		kl[i] = 40;
	}
}

/* One batch adding more long keys than the undo log has entries, all of
 * them fitting blocks on the free lists: reusing a block must not cost a
 * log entry each once the log runs low (the batch would fail -E2BIG even
 * on a fresh table). */
START_TEST(batch_reuses_more_blocks_than_the_log_holds)
{
	enum { N = 8000 };
	static uint8_t buf[N][40];
	static const void *kp[N];
	static size_t kl[N];
	struct shset_opts o = {.size = sizeof(o), .log_bytes = 64 << 10, .shards = 1};
	uint8_t key[16];
	shset *s;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	long_keys(buf, kp, kl, N, 'a');
	ck_assert_int_eq(shset_add_batch(s, kp, kl, N), N);
	ck_assert_int_eq(shset_remove_batch(s, kp, kl, N), N);
	/* Every freed block on a free list. */
	memset(key, 0xff, sizeof(key));
	for (uint32_t i = 0; i < N / 64 + 8; i++) {
		ck_assert_int_eq(shset_add(s, key, sizeof(key)), 1);
		ck_assert_int_eq(shset_remove(s, key, sizeof(key)), 1);
	}
	long_keys(buf, kp, kl, N, 'b');
	ck_assert_int_eq(shset_add_batch(s, kp, kl, N), N);
	ck_assert_int_eq(shset_size(s), N);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* Keys of the full-set tests: full_kp[i] and full_kl[i] name key i. */
enum { FULL_MAX = 200000 };
static uint8_t full_keys[FULL_MAX][40];
static const void *full_kp[FULL_MAX + 2];
static size_t full_kl[FULL_MAX + 2];

/* Fills a set of @shards shards of @shard_bytes each (and a @log_bytes
 * log) with @len-byte keys until -ENOSPC: the number added. */
static uint32_t fill_full_as(shset **out, size_t len, uint32_t shards, uint64_t shard_bytes,
			     uint64_t log_bytes)
{
	struct shset_opts o = {.size = sizeof(o),
			       .max_bytes = shards * shard_bytes,
			       .log_bytes = log_bytes,
			       .shards = shards};
	uint32_t n;
	int r = 0;

	ck_assert_int_eq(shset_create(out, &o), 0);
	for (n = 0; n < FULL_MAX; n++) {
		memset(full_keys[n], 'f', len);
		memcpy(full_keys[n], &n, sizeof(n));
		full_kp[n] = full_keys[n];
		full_kl[n] = len;
		r = shset_add(*out, full_keys[n], len);
		if (r != 1)
			break;
	}
	ck_assert_int_eq(r, -ENOSPC);
	ck_assert_uint_gt(n, 3000);
	return n;
}

/* The same, 4 MiB a shard and a 64 KiB log. */
static uint32_t fill_full(shset **out, size_t len, uint32_t shards)
{
	return fill_full_as(out, len, shards, 4 << 20, 64 * 1024);
}

static uint64_t blocks_of(shset *s)
{
	struct stat st;
	set_filler_settle(s);
	ck_assert_int_eq(fstat(shset_fd(s), &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* A full set.  A remove batch bigger than the log that leaves a key needs
 * a new table beside the old one: it fails whole (-ENOSPC, nothing
 * removed), as documented, and batches the log holds do the same work.
 * One that removes every key is a clear: it works, with inline keys and
 * with keys in blocks, repeats and absent keys among them, and gives the
 * memory back. */
START_TEST(full_set_emptied_by_batches)
{
	shset *s;
	uint32_t n = fill_full(&s, 16, 1);
	uint64_t full = blocks_of(s);

	ck_assert_int_eq(shset_remove_batch(s, full_kp + 1, full_kl + 1, n - 1), -ENOSPC);
	ck_assert_int_eq(shset_size(s), n);
	ck_assert_int_eq(shset_verify(s), 0);
	for (uint32_t at = 1; at < n; at += 1000) {
		size_t m = n - at < 1000 ? n - at : 1000;
		ck_assert_int_eq(shset_remove_batch(s, full_kp + at, full_kl + at, m),
				 (long long)m);
	}
	ck_assert_int_eq(shset_size(s), 1);
	ck_assert_int_eq(shset_add_batch(s, full_kp + 1, full_kl + 1, 1000), 1000);
	shset_close(s);

	for (unsigned c = 0; c < 4; c++) {
		size_t len = c & 1 ? 40 : 16;
		n = fill_full(&s, len, c & 2 ? 4 : 1);
		/* Every key, the first twice, and one the set never had. */
		static const char absent[] = "never added";
		full_kp[n] = full_kp[0];
		full_kl[n] = full_kl[0];
		full_kp[n + 1] = absent;
		full_kl[n + 1] = sizeof(absent) - 1;
		ck_assert_int_eq(shset_remove_batch(s, full_kp, full_kl, n + 2), n);
		ck_assert_int_eq(shset_size(s), 0);
		ck_assert_int_eq(shset_verify(s), 0);
		ck_assert_uint_lt(blocks_of(s) * 4, full);
		ck_assert_int_eq(shset_add_batch(s, full_kp, full_kl, 1000), 1000);
		ck_assert_int_eq(shset_contains(s, full_kp[999], full_kl[999]), 1);
		shset_close(s);
	}
}
END_TEST

/* Batches only, the way a loader that swaps its data works: add 200,000
 * keys, remove all but one, again and again: in one shard, whose log
 * holds fewer changes than a batch makes, and over 8.  Each big batch builds a table
 * and frees one, and frees or takes more key blocks than the log could
 * name one by one; the freed tables come back from the punch list, the
 * key blocks from the free queue, so the heap stops growing after the
 * second round, with keys inline and in blocks. */
/*
 * Writers busier than any slack: set_collect sizes its buffer without the
 * locks, then collects with them, and tries again when the set outgrew it.
 * Here, each time the collector looks at the heap's first extent (sizing
 * and faulting in, unlocked: this executable's lseek interposes libc's, the
 * library's calls too), a writer adds a batch bigger than the whole set so
 * far, so every size it took unlocked is short.  The walk must still end,
 * and see one state: the first keys and whole batches.
 */
static int busy_fd = -1, busy_batches;
static off_t busy_first = -1;
static uint64_t busy_added;
static shset *busy_writer;

static void busy_batch(void)
{
	size_t n = 4000u << busy_batches++;
	char *keys = malloc(n * 16);
	const void **kp = malloc(n * sizeof(*kp));
	size_t *kl = malloc(n * sizeof(*kl));
	if (!keys || !kp || !kl)
		abort();
	for (size_t i = 0; i < n; i++) {
		kl[i] = (size_t)snprintf(keys + i * 16, 16, "busy%llu",
					 (unsigned long long)busy_added++);
		kp[i] = keys + i * 16;
	}
	if (shset_add_batch(busy_writer, kp, kl, n) != (long long)n)
		abort();
	free(kl);
	free(kp);
	free(keys);
}

off_t lseek(int fd, off_t off, int whence)
{
	if (fd >= 0 && fd == busy_fd && whence == SEEK_DATA) {
		if (busy_first < 0)
			busy_first = off;
		if (off == busy_first && busy_batches < 8)
			busy_batch();
	}
	return (off_t)syscall(SYS_lseek, fd, off, whence);
}

static int count_visit(const void *key, size_t len, void *arg)
{
	(void)key;
	(void)len;
	++*(uint64_t *)arg;
	return 0;
}

START_TEST(collect_keeps_up_with_busy_writers)
{
	shset *s;
	struct shset_opts o = {.size = sizeof(o), .shards = 1};

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (uint32_t i = 0; i < 1000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	ck_assert_int_eq(shset_attach_fd(&busy_writer, shset_fd(s)), 0);
	busy_fd = shset_fd(s);
	uint64_t seen = 0;
	int err = shset_foreach(s, count_visit, &seen);
	busy_fd = -1;
	ck_assert_int_eq(err, 0);
	ck_assert_int_eq(busy_batches, 8); /* each of its 8 unlocked sizes was short */
	/* One state: the first keys and all 8 batches (4000 << i keys). */
	ck_assert_uint_eq(seen, 1000 + 4000 * 255);
	ck_assert_int_eq(shset_size(s), (long long)seen);
	shset_close(busy_writer);
	shset_close(s);
}
END_TEST

START_TEST(batch_rounds_reuse_freed_memory)
{
	enum { N = 200000 };
	static uint8_t keys[N][40];
	static const void *kp[N];
	static size_t kl[N];

	for (unsigned c = 0; c < 4; c++) {
		size_t len = c & 1 ? 40 : 16;
		struct shset_opts o = {
		    .size = sizeof(o), .max_bytes = 1ull << 30, .shards = c & 2 ? 8 : 1};
		shset *s;
		uint64_t heap[6];
		ck_assert_int_eq(shset_create(&s, &o), 0);
		for (uint32_t i = 0; i < N; i++) {
			memset(keys[i], 'r', len);
			memcpy(keys[i], &i, sizeof(i));
			kp[i] = keys[i];
			kl[i] = len;
		}
		ck_assert_int_eq(shset_add(s, kp[0], kl[0]), 1);
		for (int round = 0; round < 6; round++) {
			ck_assert_int_eq(shset_add_batch(s, kp + 1, kl + 1, N - 1), N - 1);
			ck_assert_int_eq(shset_remove_batch(s, kp + 1, kl + 1, N - 1), N - 1);
			struct shset_stats st;
			ck_assert_int_eq(shset_stats(s, &st), 0);
			heap[round] = st.heap_bytes;
		}
		/* The second round may still carve a few blocks; from then on
		 * every round runs in the memory the earlier ones freed. */
		ck_assert_uint_le(heap[1], heap[0] + (1 << 20));
		for (int round = 2; round < 6; round++)
			ck_assert_uint_eq(heap[round], heap[1]);
		ck_assert_int_eq(shset_size(s), 1);
		ck_assert_int_eq(shset_verify(s), 0);
		shset_close(s);
	}
}
END_TEST

/* A full set.  A remove batch its log can hold runs in place, as big as
 * the shard or not.  Over two shards, one full: a batch that empties the
 * full one and leaves a key in the other, whose log cannot hold its part,
 * clears the first and runs the second again on a fresh table (it has
 * room), and works; one that leaves a key in the full shard needs a new
 * table there, and fails whole. */
START_TEST(full_set_removals_that_need_no_room)
{
	static const void *bp[FULL_MAX];
	static size_t bl[FULL_MAX];
	static const char absent[] = "not in the set";
	shset *s;
	uint32_t n = fill_full_as(&s, 16, 1, 1 << 20, 512 * 1024);

	ck_assert_uint_lt(n, 512 * 1024 / 16 / 2); /* the log holds the batch */
	full_kp[n] = absent;
	full_kl[n] = sizeof(absent) - 1;
	ck_assert_int_eq(shset_remove_batch(s, full_kp + 1, full_kl + 1, n), (long long)n - 1);
	ck_assert_int_eq(shset_size(s), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);

	/* Keys told apart by shard with a known hash key (region_shard). */
	static const uint64_t seed[2] = {0x1234, 0x5678};
	struct shset_opts o = {
	    .size = sizeof(o), .max_bytes = 8 << 20, .log_bytes = 64 * 1024, .shards = 2};
	ck_assert_int_eq(set_create_seeded(&s, &o, seed), 0);
	uint32_t in0 = 0, in1 = 0, kept0 = 0, kept1 = 0;
	int r = 0;
	for (uint32_t i = 0; i < FULL_MAX && (r != -ENOSPC || in1 < 10000); i++) {
		memset(full_keys[i], 'f', 16);
		memcpy(full_keys[i], &i, sizeof(i));
		full_kp[i] = full_keys[i];
		full_kl[i] = 16;
		int shard = (int)(hash_bytes(seed, full_keys[i], 16) & 1);
		if (shard == 0 && r == -ENOSPC)
			continue; /* shard 0 is full */
		if (shard == 1 && in1 >= 10000)
			continue;
		int a = shset_add(s, full_keys[i], 16);
		if (shard == 0 && a == -ENOSPC) {
			r = a;
			continue;
		}
		ck_assert_int_eq(a, 1);
		bp[in0 + in1] = full_keys[i];
		bl[in0 + in1] = 16;
		if (shard == 0) {
			in0++;
			kept0 = i;
		} else {
			in1++;
			kept1 = i;
		}
	}
	ck_assert_int_eq(r, -ENOSPC);
	ck_assert_uint_eq(in1, 10000);
	uint32_t m = in0 + in1;
	ck_assert_int_eq(shset_size(s), m);
	/* Leaving shard 0's last key: no room for its new table. */
	static const void *cp[FULL_MAX];
	static size_t cl[FULL_MAX];
	uint32_t c = 0;
	for (uint32_t i = 0; i < m; i++)
		if (bp[i] != full_kp[kept0]) {
			cp[c] = bp[i];
			cl[c++] = bl[i];
		}
	ck_assert_int_eq(shset_remove_batch(s, cp, cl, c), -ENOSPC);
	ck_assert_int_eq(shset_size(s), m);
	/* Leaving shard 1's last key: shard 0 cleared, shard 1 rebuilt. */
	c = 0;
	for (uint32_t i = 0; i < m; i++)
		if (bp[i] != full_kp[kept1]) {
			cp[c] = bp[i];
			cl[c++] = bl[i];
		}
	ck_assert_int_eq(shset_remove_batch(s, cp, cl, c), (long long)c);
	ck_assert_int_eq(shset_size(s), 1);
	ck_assert_int_eq(shset_contains(s, full_kp[kept1], 16), 1);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* Keys "<@prefix><i>" for i < @n, in the arrays a batch takes, which have
 * room for @slots entries (a batch of repeats refills them). */
struct keyarr {
	char (*b)[16];
	const void **p;
	size_t *l;
};

static struct keyarr keyarr_make(char prefix, int n, int slots)
{
	struct keyarr a = {malloc((size_t)n * sizeof(*a.b)), malloc((size_t)slots * sizeof(*a.p)),
			   malloc((size_t)slots * sizeof(*a.l))};
	ck_assert(a.b && a.p && a.l);
	for (int i = 0; i < n; i++) {
		a.l[i] = (size_t)snprintf(a.b[i], sizeof(a.b[i]), "%c%014d", prefix, i);
		a.p[i] = a.b[i];
	}
	return a;
}

static void keyarr_free(struct keyarr *a)
{
	free(a->b);
	free(a->p);
	free(a->l);
}

/* A remove batch of many copies of a few keys, at least as long as the
 * shard's keys, so that it asks whether the batch removes them all (a
 * clear): repeats cost once.  Before, each copy walked every copy indexed
 * before it, 160,000 copies 3.9 s with the lock held and growing with the
 * square: this test's 2,000,000 copies would outlast its timeout. */
START_TEST(remove_batch_of_repeats)
{
	enum { KEYS = 20000, COPIES = 2000000 };
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	struct keyarr a = keyarr_make('r', KEYS, COPIES);
	const void **kp = a.p;
	size_t *kl = a.l;
	ck_assert_int_eq(shset_add_batch(s, kp, kl, KEYS), KEYS);

	/* One absent key, over and over: nothing removed. */
	static const char absent[] = "not in the set";
	for (int i = 0; i < COPIES; i++) {
		kp[i] = absent;
		kl[i] = sizeof(absent) - 1;
	}
	ck_assert_int_eq(shset_remove_batch(s, kp, kl, COPIES), 0);
	ck_assert_int_eq(shset_size(s), KEYS);

	/* Every key, each a hundred times: all removed, counted once. */
	for (int i = 0; i < COPIES; i++) {
		kp[i] = a.b[i % KEYS];
		kl[i] = strlen(a.b[i % KEYS]);
	}
	ck_assert_int_eq(shset_remove_batch(s, kp, kl, COPIES), KEYS);
	ck_assert_int_eq(shset_size(s), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
	keyarr_free(&a);
}
END_TEST

/* Removing most of a shard in one batch, or by set algebra: the table
 * shrinks after the last removal, not halfway.  A big batch removes in the
 * order of the keys' hashes, and set algebra goes through the other set's
 * table in the same order when it is a copy; a table shrunk halfway held
 * only the keys above that point, all homed in its last slots, so the
 * moves piled them into one cluster that every later move walked, and
 * shset_verify found probe chains no random keys make (1,000,000 keys
 * down to one: 17.9 s). */
START_TEST(most_of_a_shard_removed_at_once)
{
	enum { N = 500000 };
	struct shset_opts o = {.size = sizeof(o), .shards = 1};
	struct keyarr a = keyarr_make('m', N, N);
	const void **kp = a.p;
	size_t *kl = a.l;

	for (int algebra = 0; algebra < 2; algebra++) {
		/* A batch keeps the first 20,000 of 200,000; algebra removes
		 * 450,000 of 500,000 as a copy without the first 50,000. */
		int n = algebra ? N : 200000, keep = n / 10;
		shset *s, *other;
		ck_assert_int_eq(shset_create(&s, &o), 0);
		ck_assert_int_eq(shset_add_batch(s, kp, kl, (size_t)n), n);
		struct shset_stats st;
		ck_assert_int_eq(shset_stats(s, &st), 0);
		uint64_t cap0 = st.capacity;
		if (algebra) {
			ck_assert_int_eq(shset_copy(s, &other), 0);
			ck_assert_int_eq(shset_remove_batch(other, kp, kl, (size_t)keep), keep);
			ck_assert_int_eq(shset_difference_update(s, other), n - keep);
			shset_close(other);
		} else {
			ck_assert_int_eq(
			    shset_remove_batch(s, kp + keep, kl + keep, (size_t)(n - keep)),
			    n - keep);
		}
		ck_assert_int_eq(shset_size(s), keep);
		ck_assert_int_eq(shset_verify(s), 0);
		for (int i = 0; i < n; i += 97)
			ck_assert_int_eq(shset_contains(s, kp[i], kl[i]), i < keep);
		ck_assert_int_eq(shset_stats(s, &st), 0);
		ck_assert_uint_le(st.capacity * 4, cap0); /* and it shrank */
		shset_close(s);
	}
	keyarr_free(&a);
}
END_TEST

/* A batch or set algebra that removes most keys gives their memory back
 * before it returns: the tables it freed are punched by its own steps
 * (before, by one step in each of the next hundreds of transactions, and
 * not at all while the set stayed idle), and the table it shrank is as
 * small as the keys left need (not an eighth of the old one).  The last
 * case turns the steps off (SHSET_GIVE_BACK=0): the memory waits. */
START_TEST(most_keys_removed_memory_given_back)
{
	enum { N = 400000, KEEP = 10 };
	struct keyarr a = keyarr_make('g', N, N);
	const void **kp = a.p;
	size_t *kl = a.l;
	for (unsigned c = 0; c < 5; c++) {
		struct shset_opts o = {.size = sizeof(o), .shards = c & 1 ? 1 : 0};
		shset *s, *other;
		if (c == 4)
			setenv("SHSET_GIVE_BACK", "0", 1);
		ck_assert_int_eq(shset_create(&s, &o), 0);
		ck_assert_int_eq(shset_add_batch(s, kp, kl, N), N);
		uint64_t full = blocks_of(s);
		if (c & 2) {
			ck_assert_int_eq(shset_copy(s, &other), 0);
			ck_assert_int_eq(shset_remove_batch(other, kp, kl, KEEP), KEEP);
			ck_assert_int_eq(shset_difference_update(s, other), N - KEEP);
			shset_close(other);
		} else {
			ck_assert_int_eq(shset_remove_batch(s, kp + KEEP, kl + KEEP, N - KEEP),
					 N - KEEP);
		}
		uint64_t left = blocks_of(s);
		struct shset_stats st;
		ck_assert_int_eq(shset_stats(s, &st), 0);
		ck_assert_uint_le(st.capacity, 1024); /* 16 shards of 10 keys at most */
		ck_assert_int_eq(shset_size(s), KEEP);
		for (int i = 0; i < KEEP + 5; i++)
			ck_assert_int_eq(shset_contains(s, kp[i], kl[i]), i < KEEP);
		ck_assert_int_eq(shset_verify(s), 0);
		/* What a set keeps whatever it holds (headers, the logs'
		 * written pages): what a clear leaves. */
		ck_assert_int_eq(shset_clear(s), 0);
		uint64_t kept = blocks_of(s);
		ck_assert_msg(left >= kept && ((left - kept) * 10 < full - kept) == (c < 4),
			      "case %u: %llu of %llu bytes held, %llu after a clear", c,
			      (unsigned long long)left, (unsigned long long)full,
			      (unsigned long long)kept);
		shset_close(s);
	}
	unsetenv("SHSET_GIVE_BACK");
	keyarr_free(&a);
}
END_TEST

struct seen {
	char (*k)[16];
	size_t *l, n;
};

static int seen_key(const void *k, size_t len, void *arg)
{
	struct seen *c = arg;
	ck_assert_uint_lt(len, sizeof(c->k[0]));
	memcpy(c->k[c->n], k, len);
	c->l[c->n++] = len;
	return 0;
}

/* Draining a shard the way callers do, by pop or by removing keys in the
 * order shset_foreach gives them, leaves the keys still there spread over
 * the hash range, so that the shrink at 3/32 full builds a table without
 * long clusters.  Pop and foreach used to go through a table front to
 * back, in the order of the keys' hashes: the keys left were all homed in
 * the last slots of the smaller table, and shset_verify found probe chains
 * no random keys make (popping 400,000 keys from one shard took 5.5 s). */
START_TEST(drained_in_visit_order_shrinks_cleanly)
{
	enum { N = 200000, LEFT = N / 20 };
	struct shset_opts o = {.size = sizeof(o), .shards = 1};
	struct seen c = {malloc(N * sizeof(*c.k)), malloc(N * sizeof(*c.l)), 0};
	const void **kp = malloc(N * sizeof(*kp));
	ck_assert(c.k && c.l && kp);
	for (int pop = 0; pop < 2; pop++) {
		shset *s;
		ck_assert_int_eq(shset_create(&s, &o), 0);
		for (int i = 0; i < N; i++) {
			c.l[i] = (size_t)snprintf(c.k[i], sizeof(c.k[i]), "v%d", i);
			kp[i] = c.k[i];
		}
		ck_assert_int_eq(shset_add_batch(s, kp, c.l, N), N);
		struct shset_stats st;
		ck_assert_int_eq(shset_stats(s, &st), 0);
		uint64_t cap0 = st.capacity;
		c.n = 0;
		ck_assert_int_eq(shset_foreach(s, seen_key, &c), 0);
		ck_assert_uint_eq(c.n, N);
		for (int i = 0; i < N - LEFT; i++) {
			char buf[16];
			size_t len;
			if (pop)
				ck_assert_int_eq(shset_pop(s, buf, sizeof(buf), &len), 1);
			else
				ck_assert_int_eq(shset_remove(s, c.k[i], c.l[i]), 1);
		}
		ck_assert_int_eq(shset_size(s), LEFT);
		ck_assert_int_eq(shset_stats(s, &st), 0);
		ck_assert_uint_le(st.capacity * 4, cap0); /* it did shrink */
		ck_assert_int_eq(shset_verify(s), 0);
		shset_close(s);
	}
	free(c.k);
	free(c.l);
	free(kp);
}
END_TEST

START_TEST(enospc_leaves_set_intact)
{
	shset *s;
	struct shset_opts o = {.max_bytes = 2 << 20, .log_bytes = 64 * 1024};
	uint8_t key[300];
	uint32_t i;
	int r = 0;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (i = 1; i < 1000000; i++) {
		size_t len = key_of(i, key);
		r = shset_add(s, key, len);
		if (r != 1)
			break;
	}
	ck_assert_int_eq(r, -ENOSPC);
	ck_assert_int_eq(shset_size(s), i - 1);
	ck_assert_int_eq(shset_verify(s), 0);
	for (uint32_t j = 1; j < i; j++) {
		size_t len = key_of(j, key);
		ck_assert_int_eq(shset_contains(s, key, len), 1);
	}
	/* A batch that cannot fit changes nothing either. */
	const void *bk[200];
	size_t bl[200];
	static uint8_t bb[200][300];
	for (int b = 0; b < 200; b++) {
		bl[b] = key_of(i + 1 + (uint32_t)b, bb[b]);
		bk[b] = bb[b];
	}
	ck_assert_int_eq(shset_add_batch(s, bk, bl, 200), -ENOSPC);
	ck_assert_int_eq(shset_size(s), i - 1);
	ck_assert_int_eq(shset_contains(s, bk[0], bl[0]), 0);
	ck_assert_int_eq(shset_verify(s), 0);
	/* Space comes back after removals. */
	size_t len = key_of(1, key);
	ck_assert_int_eq(shset_remove(s, key, len), 1);
	ck_assert_int_eq(shset_add(s, key, len), 1);
	shset_close(s);
}
END_TEST

/* --- foreach, copy, algebra ---------------------------------------------------- */

static int count_and_stop(const void *k, size_t len, void *arg)
{
	int *n = arg;
	(void)k;
	(void)len;
	return ++*n == 3 ? 7 : 0;
}

static int collect(const void *k, size_t len, void *arg)
{
	uint8_t *seen = arg;
	int i = key_index(k, len);
	if (i < 0 || seen[i])
		return -1;
	seen[i] = 1;
	return 0;
}

START_TEST(foreach_and_copy)
{
	shset *s, *c;
	uint8_t key[300], seen[UNIVERSE] = {0};

	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < UNIVERSE; i += 2) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	ck_assert_int_eq(shset_foreach(s, collect, seen), 0);
	for (uint32_t i = 0; i < UNIVERSE; i++)
		ck_assert_int_eq(seen[i], i % 2 == 0);
	int n = 0;
	ck_assert_int_eq(shset_foreach(s, count_and_stop, &n), 7);
	ck_assert_int_eq(n, 3);

	ck_assert_int_eq(shset_copy(s, &c), 0);
	ck_assert_int_ne(shset_fd(c), shset_fd(s));
	ck_assert_int_eq(shset_equal(s, c), 1);
	ck_assert_int_eq(shset_verify(c), 0);
	/* Independent afterwards. */
	ck_assert_int_eq(shset_add(c, "only in copy", 12), 1);
	ck_assert_int_eq(shset_contains(s, "only in copy", 12), 0);
	ck_assert_int_eq(shset_equal(s, c), 0);
	ck_assert_int_eq(shset_issubset(s, c), 1);
	ck_assert_int_eq(shset_issubset(c, s), 0);
	shset_close(c);
	shset_close(s);
}
END_TEST

START_TEST(algebra_against_model)
{
	shset *a, *b, *a2;
	uint8_t key[300];
	uint8_t ma[UNIVERSE], mb[UNIVERSE];
	uint64_t seed = 42;

	for (int round = 0; round < 12; round++) {
		ck_assert_int_eq(shset_create(&a, NULL), 0);
		ck_assert_int_eq(shset_create(&b, NULL), 0);
		for (int i = 0; i < UNIVERSE; i++) {
			ma[i] = rng_next(&seed) % 3 == 0;
			mb[i] = rng_next(&seed) % 2 == 0;
			size_t len = key_of((uint32_t)i, key);
			if (ma[i])
				shset_add(a, key, len);
			if (mb[i])
				shset_add(b, key, len);
		}
		int op = round % 4;
		long long expect = 0;
		for (int i = 0; i < UNIVERSE; i++) {
			int was = ma[i];
			switch (op) {
			case 0:
				ma[i] |= mb[i];
				break;
			case 1:
				ma[i] &= mb[i];
				break;
			case 2:
				ma[i] &= !mb[i];
				break;
			case 3:
				ma[i] ^= mb[i];
				break;
			}
			expect += was != ma[i];
		}
		long long got = op == 0	  ? shset_update(a, b)
				: op == 1 ? shset_intersection_update(a, b)
				: op == 2 ? shset_difference_update(a, b)
					  : shset_symmetric_difference_update(a, b);
		ck_assert_int_eq(got, expect);
		int disjoint = 1, subset = 1, equal = 1;
		for (int i = 0; i < UNIVERSE; i++) {
			size_t len = key_of((uint32_t)i, key);
			ck_assert_int_eq(shset_contains(a, key, len), ma[i]);
			if (ma[i] && mb[i])
				disjoint = 0;
			if (ma[i] && !mb[i])
				subset = 0;
			if (ma[i] != mb[i])
				equal = 0;
		}
		ck_assert_int_eq(shset_isdisjoint(a, b), disjoint);
		ck_assert_int_eq(shset_isdisjoint(b, a), disjoint);
		ck_assert_int_eq(shset_issubset(a, b), subset);
		ck_assert_int_eq(shset_equal(a, b), equal);
		ck_assert_int_eq(shset_verify(a), 0);

		/* With itself, through the same handle and through a second. */
		ck_assert_int_eq(shset_attach_fd(&a2, shset_fd(a)), 0);
		long long size = shset_size(a);
		ck_assert_int_eq(shset_update(a, a2), 0);
		ck_assert_int_eq(shset_intersection_update(a, a), 0);
		ck_assert_int_eq(shset_equal(a, a2), 1);
		ck_assert_int_eq(shset_issubset(a2, a), 1);
		ck_assert_int_eq(shset_isdisjoint(a, a2), size == 0);
		ck_assert_int_eq(shset_size(a), size);
		ck_assert_int_eq(round % 2 ? shset_difference_update(a, a2)
					   : shset_symmetric_difference_update(a, a),
				 size);
		ck_assert_int_eq(shset_size(a2), 0);
		shset_close(a2);
		shset_close(a);
		shset_close(b);
	}
}
END_TEST

START_TEST(algebra_lock_order_no_deadlock)
{
	shset *a, *b;
	ck_assert_int_eq(shset_create(&a, NULL), 0);
	ck_assert_int_eq(shset_create(&b, NULL), 0);
	shset_add(a, "x", 1);
	shset_add(b, "y", 1);
	pid_t p[2];
	for (int w = 0; w < 2; w++) {
		p[w] = fork();
		if (p[w] == 0) {
			shset *x, *y;
			if (shset_attach_fd(&x, shset_fd(w ? a : b)) ||
			    shset_attach_fd(&y, shset_fd(w ? b : a)))
				_exit(1);
			for (int i = 0; i < 20000; i++)
				if (shset_update(x, y) < 0 || shset_issubset(y, x) < 0)
					_exit(2);
			_exit(0);
		}
	}
	ck_assert_int_eq(wait_status(p[0]), 0);
	ck_assert_int_eq(wait_status(p[1]), 0);
	ck_assert_int_eq(shset_equal(a, b), 1);
	ck_assert_int_eq(shset_size(a), 2);
	shset_close(a);
	shset_close(b);
}
END_TEST

/* --- many processes and threads ------------------------------------------------- */

#define MP_PROCS   4
#define MP_THREADS 2
#define MP_KEYS	   3000

struct mp_arg {
	shset *s;
	int proc, thread;
};

static void mp_key(char *buf, size_t *len, const char *kind, int p, int t, int i)
{
	*len = (size_t)snprintf(buf, 64, "%s-%d-%d-%d", kind, p, t, i);
}

static void *mp_thread(void *argp)
{
	struct mp_arg *a = argp;
	char k[64];
	size_t len;

	/* Own keys: add all, remove the odd ones, check as we go. */
	for (int i = 0; i < MP_KEYS; i++) {
		mp_key(k, &len, "own", a->proc, a->thread, i);
		if (shset_add(a->s, k, len) != 1)
			_exit(10);
		if (i % 2) {
			if (shset_remove(a->s, k, len) != 1)
				_exit(11);
		} else if (shset_contains(a->s, k, len) != 1) {
			_exit(12);
		}
	}
	/* Shared keys: every thread adds every one; result 1 exactly once
	 * overall is checked through the final count. */
	for (int i = 0; i < MP_KEYS; i++) {
		mp_key(k, &len, "shared", 0, 0, i);
		if (shset_add(a->s, k, len) < 0)
			_exit(13);
	}
	return NULL;
}

START_TEST(processes_and_threads)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	pid_t pids[MP_PROCS];
	for (int p = 0; p < MP_PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			shset *c;
			if (shset_attach_fd(&c, shset_fd(s)))
				_exit(1);
			pthread_t th[MP_THREADS];
			struct mp_arg args[MP_THREADS];
			for (int t = 0; t < MP_THREADS; t++) {
				args[t] = (struct mp_arg){c, p, t};
				pthread_create(&th[t], NULL, mp_thread, &args[t]);
			}
			for (int t = 0; t < MP_THREADS; t++)
				pthread_join(th[t], NULL);
			/* Overlapping removals: every thread of every process
			 * removes the shared keys divisible by 3 once all added;
			 * here after its own adds. */
			shset_close(c);
			_exit(0);
		}
	}
	for (int p = 0; p < MP_PROCS; p++)
		ck_assert_int_eq(wait_status(pids[p]), 0);
	/* Exact content. */
	char k[64];
	size_t len;
	for (int p = 0; p < MP_PROCS; p++)
		for (int t = 0; t < MP_THREADS; t++)
			for (int i = 0; i < MP_KEYS; i++) {
				mp_key(k, &len, "own", p, t, i);
				ck_assert_int_eq(shset_contains(s, k, len), i % 2 == 0);
			}
	for (int i = 0; i < MP_KEYS; i++) {
		mp_key(k, &len, "shared", 0, 0, i);
		ck_assert_int_eq(shset_contains(s, k, len), 1);
	}
	ck_assert_int_eq(shset_size(s), MP_PROCS * MP_THREADS * MP_KEYS / 2 + MP_KEYS);
	ck_assert_int_eq(shset_verify(s), 0);

	/* Phase two, overlapping removals from all processes at once. */
	for (int p = 0; p < MP_PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			shset *c;
			if (shset_attach_fd(&c, shset_fd(s)))
				_exit(1);
			long removed = 0;
			for (int i = 0; i < MP_KEYS; i += 3) {
				mp_key(k, &len, "shared", 0, 0, i);
				int r = shset_remove(c, k, len);
				if (r < 0)
					_exit(2);
				removed += r;
			}
			shset_close(c);
			_exit(removed > 255 ? 255 : (int)removed);
		}
	}
	int total = 0;
	for (int p = 0; p < MP_PROCS; p++)
		total += wait_status(pids[p]);
	for (int i = 0; i < MP_KEYS; i++) {
		mp_key(k, &len, "shared", 0, 0, i);
		ck_assert_int_eq(shset_contains(s, k, len), i % 3 != 0);
	}
	(void)total; /* exit codes saturate; the content says it all */
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/* --- atomicity of copy, foreach and batches ------------------------------------ */

#define AT_N 20000

struct at_check {
	uint8_t a[AT_N], b[AT_N];
	int bad;
};

static int at_visit(const void *k, size_t len, void *arg)
{
	struct at_check *c = arg;
	int i;
	char kind, z[32];
	if (len >= sizeof(z))
		return 0;
	memcpy(z, k, len); /* keys are not NUL-terminated */
	z[len] = 0;
	if (len < 2 || sscanf(z, "%c%d", &kind, &i) != 2 || i < 0 || i >= AT_N)
		return 0;
	if (kind == 'a')
		c->a[i] = 1;
	else if (kind == 'b')
		c->b[i] = 1;
	return 0;
}

/* Every b_i present implies a_i present: the writer added a_i first. */
static int at_consistent(struct at_check *c)
{
	for (int i = 0; i < AT_N; i++)
		if (c->b[i] && !c->a[i])
			return 0;
	return 1;
}

static int batch_visit(const void *k, size_t len, void *arg)
{
	int *cnt = arg;
	int i, j;
	char z[32];
	if (len >= sizeof(z))
		return 0;
	memcpy(z, k, len);
	z[len] = 0;
	if (len > 2 && z[0] == 'B' && sscanf(z, "B%d-%d", &i, &j) == 2 && i >= 0 && i < 5000)
		cnt[i]++;
	return 0;
}

/* One walk of @x must show every b_i with its a_i, and whole batches. */
static void check_one_state(shset *x)
{
	static struct at_check chk;
	static int bcnt[5000];

	memset(&chk, 0, sizeof(chk));
	memset(bcnt, 0, sizeof(bcnt));
	ck_assert_int_eq(shset_foreach(x, at_visit, &chk), 0);
	ck_assert(at_consistent(&chk));
	ck_assert_int_eq(shset_foreach(x, batch_visit, bcnt), 0);
	for (int i = 0; i < 5000; i++)
		ck_assert(bcnt[i] == 0 || bcnt[i] == 8);
}

START_TEST(copy_foreach_batch_atomicity)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	pid_t w = fork();
	if (w == 0) {
		shset *c;
		char k[32];
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(1);
		for (int i = 0; i < AT_N; i++) {
			int n = snprintf(k, sizeof(k), "a%d", i);
			shset_add(c, k, (size_t)n);
			n = snprintf(k, sizeof(k), "b%d", i);
			shset_add(c, k, (size_t)n);
			if (i % 4 == 0 && i / 4 < 5000) {
				/* A batch of 8 keys, all or none. */
				char bk[8][32];
				const void *kp[8];
				size_t kl[8];
				for (int j = 0; j < 8; j++) {
					kl[j] = (size_t)snprintf(bk[j], 32, "B%d-%d", i / 4, j);
					kp[j] = bk[j];
				}
				if (shset_add_batch(c, kp, kl, 8) != 8)
					_exit(2);
				if (i % 8 == 0 && shset_remove_batch(c, kp, kl, 8) != 8)
					_exit(3);
			}
		}
		_exit(0);
	}
	int copies = 0;
	for (;;) {
		int done = waitpid(w, NULL, WNOHANG) == w;
		shset *c;
		ck_assert_int_eq(shset_copy(s, &c), 0);
		check_one_state(c); /* the copy */
		ck_assert_int_eq(shset_verify(c), 0);
		shset_close(c);
		copies++;
		check_one_state(s); /* foreach on the live set */
		if (done)
			break;
	}
	ck_assert_int_ge(copies, 2);
	ck_assert_int_eq(shset_size(s), 2 * AT_N + 8 * 2500);
	shset_close(s);
}
END_TEST

/* --- lock-free readers during writes -------------------------------------------- */

START_TEST(readers_never_see_garbage)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	/* Stable keys stay present while a writer churns (and resizes) the
	 * table around them. */
	uint8_t key[300];
	for (uint32_t i = 0; i < 500; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	pid_t w = fork();
	if (w == 0) {
		shset *c;
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(1);
		for (int round = 0; round < 6; round++) {
			for (uint32_t i = 1000; i < 20000; i++) {
				size_t len = key_of(i, key);
				shset_add(c, key, len);
			}
			for (uint32_t i = 1000; i < 20000; i++) {
				size_t len = key_of(i, key);
				shset_remove(c, key, len);
			}
		}
		_exit(0);
	}
	long checks = 0;
	while (waitpid(w, NULL, WNOHANG) != w) {
		for (uint32_t i = 0; i < 500; i++) {
			size_t len = key_of(i, key);
			ck_assert_int_eq(shset_contains(s, key, len), 1);
			checks++;
		}
		size_t len = key_of(999, key);
		ck_assert_int_eq(shset_contains(s, key, len), 0);
	}
	ck_assert_int_gt(checks, 0);
	ck_assert_int_eq(shset_size(s), 500);
	ck_assert_int_eq(shset_verify(s), 0);
	shset_close(s);
}
END_TEST

/*
 * Batches over several shards, seen by lock-free readers of single keys:
 * the writer adds batch g (16 keys, spread over the shards) after batch
 * g-1, and never removes.  A reader that finds batch g's last key then
 * looks up its others: each must be there already (they were added at the
 * same instant, before the key it saw).  A commit that let one shard's
 * keys show before another's had been published would fail here.  size()
 * is always a whole number of batches.
 */
START_TEST(readers_see_batches_whole)
{
	enum { BATCHES = 4000, PER = 16 };
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	pid_t w = fork();
	if (w == 0) {
		shset *c;
		char bk[PER][32];
		const void *kp[PER];
		size_t kl[PER];
		if (shset_attach_fd(&c, shset_fd(s)))
			_exit(1);
		for (int g = 0; g < BATCHES; g++) {
			for (int j = 0; j < PER; j++) {
				kl[j] = (size_t)snprintf(bk[j], 32, "g%d-%d", g, j);
				kp[j] = bk[j];
			}
			if (shset_add_batch(c, kp, kl, PER) != PER)
				_exit(2);
		}
		_exit(0);
	}
	long seen = 0, spanned = 0;
	char k[32];
	int g = 0, done = 0;
	while (!done) {
		done = waitpid(w, NULL, WNOHANG) == w;
		long long n = shset_size(s);
		ck_assert_int_ge(n, 0);
		ck_assert_msg(n % PER == 0, "size %lld: part of a batch", n);
		/* The newest batch whose last key is there. */
		for (;;) {
			int len = snprintf(k, sizeof(k), "g%d-%d", g + 1, PER - 1);
			if (g + 1 >= BATCHES || shset_contains(s, k, (size_t)len) != 1)
				break;
			g++;
		}
		int len = snprintf(k, sizeof(k), "g%d-%d", g, PER - 1);
		if (shset_contains(s, k, (size_t)len) != 1)
			continue;
		seen++;
		for (int j = 0; j < PER - 1; j++) {
			len = snprintf(k, sizeof(k), "g%d-%d", g, j);
			ck_assert_msg(shset_contains(s, k, (size_t)len) == 1,
				      "batch %d: key %d missing after key %d was seen", g, j,
				      PER - 1);
		}
		spanned++;
	}
	ck_assert_int_gt(seen, 0);
	ck_assert_int_eq(shset_size(s), BATCHES * PER);
	ck_assert_int_eq(shset_verify(s), 0);
	printf("batches seen whole by a reader: %ld checks\n", spanned);
	shset_close(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("set");
	TCase *tc = tcase_create("set");
	tcase_set_timeout(tc, 300 * test_scale());
	tcase_add_test(tc, basic_api);
	tcase_add_test(tc, null_arguments);
	tcase_add_test(tc, shard_options);
	tcase_add_test(tc, key_type_recorded);
	tcase_add_loop_test(tc, differential_seeds, 0, 4);
	tcase_add_test(tc, growth_to_a_million);
	tcase_add_test(tc, filler_faults_in_growing_tables);
	tcase_add_test(tc, filler_in_forked_children);
	tcase_add_test(tc, memory_of_removed_keys_is_reused);
	tcase_add_test(tc, bulk_frees_of_long_keys);
	tcase_add_test(tc, batch_reuses_more_blocks_than_the_log_holds);
	tcase_add_test(tc, most_of_a_shard_removed_at_once);
	tcase_add_test(tc, most_keys_removed_memory_given_back);
	tcase_add_test(tc, drained_in_visit_order_shrinks_cleanly);
	tcase_add_test(tc, enospc_leaves_set_intact);
	tcase_add_test(tc, full_set_emptied_by_batches);
	tcase_add_test(tc, full_set_removals_that_need_no_room);
	tcase_add_test(tc, batch_rounds_reuse_freed_memory);
	tcase_add_test(tc, collect_keeps_up_with_busy_writers);
	tcase_add_test(tc, foreach_and_copy);
	tcase_add_test(tc, algebra_against_model);
	tcase_add_test(tc, algebra_lock_order_no_deadlock);
	tcase_add_test(tc, processes_and_threads);
	tcase_add_test(tc, copy_foreach_batch_atomicity);
	tcase_add_test(tc, big_batches_against_model);
	tcase_add_test(tc, big_set_batch_in_place);
	tcase_add_test(tc, readers_never_see_garbage);
	tcase_add_test(tc, readers_see_batches_whole);
	suite_add_tcase(s, tc);
	/* Short enough that a batch whose cost grows with the square fails. */
	TCase *tq = tcase_create("repeats");
	tcase_set_timeout(tq, 30 * test_scale());
	tcase_add_test(tq, remove_batch_of_repeats);
	suite_add_tcase(s, tq);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
