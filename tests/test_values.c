/* SPDX-License-Identifier: MIT */
/*
 * test_values.c - shared atomic values: every operation against a model,
 * validation of attached fds, passing over sockets, many threads in many
 * processes, torn reads, writers killed mid-store, and a hostile peer.
 */
#include "helpers.h"

#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "lease.h"
#include "shset.h"
#include "shset/values.h"

/* Layout facts the hostile tests aim at (see values.c). */
#define HDR_BYTES    64 /* struct values_hdr */
#define LOCK_OFF     256
#define BYTES_DATA   8192 /* byte strings: control line, then the buffers */
#define INT_DATA     4096 /* integers and arrays */
#define OFF_KIND     12
#define OFF_LENGTH   16
#define OFF_DATA_OFF 24
#define OFF_SIZE     32
#define OFF_NSLOTS   40
#define OFF_VERSION  8

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void *shared_page(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

static size_t file_size(int fd)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	return (size_t)st.st_size;
}

/*
 * The values writers store in the concurrency tests: distinct lengths, so
 * the length names the value, and bytes of every kind (non-ASCII too).
 */
static const size_t gen_lens[] = {0,  1,  7,   8,   9,	  15,	17,   63,
				  64, 65, 200, 333, 1000, 2048, 4095, 4096};
#define NGEN	(sizeof(gen_lens) / sizeof(gen_lens[0]))
#define GEN_CAP 4096

static uint8_t gen_byte(unsigned k, size_t j)
{
	return (uint8_t)(k * 131u + j * 7u + (j >> 8) + 0x80u);
}

static size_t gen_value(unsigned k, uint8_t *buf)
{
	size_t len = gen_lens[k % NGEN];
	for (size_t j = 0; j < len; j++)
		buf[j] = gen_byte(k % NGEN, j);
	return len;
}

/* 1 if @buf is one of the generated values. */
static int is_generated(const uint8_t *buf, size_t len)
{
	for (unsigned k = 0; k < NGEN; k++) {
		if (gen_lens[k] != len)
			continue;
		for (size_t j = 0; j < len; j++)
			if (buf[j] != gen_byte(k, j))
				return 0;
		return 1;
	}
	return 0;
}

/* --- every operation against a model --------------------------------------- */

START_TEST(int_operations)
{
	shset_value *v;
	int64_t x, old;

	ck_assert_int_eq(shset_int_create(&v, INT64_MAX), 0);
	ck_assert_int_eq(shset_value_kind(v), SHSET_VALUE_INT);
	ck_assert_uint_eq(shset_value_length(v), 1);
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == INT64_MAX);
	/* Wrap-around both ways, as two's complement. */
	ck_assert_int_eq(shset_int_fetch_add(v, 1, &old), 0);
	ck_assert(old == INT64_MAX);
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == INT64_MIN);
	ck_assert_int_eq(shset_int_sub_fetch(v, 1, &x), 0);
	ck_assert(x == INT64_MAX);
	ck_assert_int_eq(shset_int_add_fetch(v, INT64_MAX, &x), 0);
	ck_assert(x == -2);
	ck_assert_int_eq(shset_int_fetch_sub(v, INT64_MIN, &old), 0);
	ck_assert(old == -2);
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == INT64_MAX - 1);
	/* Bitwise. */
	ck_assert_int_eq(shset_int_store(v, 0x0ff0), 0);
	ck_assert_int_eq(shset_int_fetch_and(v, 0x00ff, &old), 0);
	ck_assert(old == 0x0ff0);
	ck_assert_int_eq(shset_int_fetch_or(v, -0x10000, &old), 0);
	ck_assert(old == 0x00f0);
	ck_assert_int_eq(shset_int_fetch_xor(v, -1, &old), 0);
	ck_assert(old == (-0x10000 | 0xf0));
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == 0xff0f);
	/* exchange and compare_exchange, failure giving the current value. */
	ck_assert_int_eq(shset_int_exchange(v, -5, &old), 0);
	ck_assert(old == 0xff0f);
	int64_t e = 7;
	ck_assert_int_eq(shset_int_compare_exchange(v, &e, 9), 0);
	ck_assert(e == -5);
	ck_assert_int_eq(shset_int_compare_exchange(v, &e, 9), 1);
	ck_assert(e == -5);
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == 9);
	/* NULL outputs are allowed; NULL expected is not. */
	ck_assert_int_eq(shset_int_fetch_add(v, 1, NULL), 0);
	ck_assert_int_eq(shset_int_compare_exchange(v, NULL, 1), -EINVAL);

	/* A random walk against a model kept in uint64_t. */
	uint64_t rng = 42, model = 10;
	const int64_t pick[] = {0, 1, -1, INT64_MAX, INT64_MIN, 12345, -98765};
	ck_assert_int_eq(shset_int_store(v, 10), 0);
	for (int i = 0; i < 20000; i++) {
		uint64_t r = rng_next(&rng);
		int64_t n = (r >> 8) % 3 ? pick[(r >> 16) % 7] : (int64_t)rng_next(&rng);
		uint64_t u = (uint64_t)n, want_old = model;
		int64_t res;
		switch (r % 9) {
		case 0:
			ck_assert_int_eq(shset_int_fetch_add(v, n, &res), 0);
			model += u;
			break;
		case 1:
			ck_assert_int_eq(shset_int_fetch_sub(v, n, &res), 0);
			model -= u;
			break;
		case 2:
			ck_assert_int_eq(shset_int_fetch_and(v, n, &res), 0);
			model &= u;
			break;
		case 3:
			ck_assert_int_eq(shset_int_fetch_or(v, n, &res), 0);
			model |= u;
			break;
		case 4:
			ck_assert_int_eq(shset_int_fetch_xor(v, n, &res), 0);
			model ^= u;
			break;
		case 5:
			ck_assert_int_eq(shset_int_add_fetch(v, n, &res), 0);
			model += u;
			want_old = model;
			break;
		case 6:
			ck_assert_int_eq(shset_int_sub_fetch(v, n, &res), 0);
			model -= u;
			want_old = model;
			break;
		case 7:
			ck_assert_int_eq(shset_int_exchange(v, n, &res), 0);
			model = u;
			break;
		default: {
			res = (r >> 40) & 1 ? (int64_t)model : n;
			int64_t exp = res;
			int ok = shset_int_compare_exchange(v, &exp, n ^ 1);
			ck_assert_int_eq(ok, exp == res && (uint64_t)res == model);
			ck_assert(exp == (int64_t)want_old);
			res = exp;
			if (ok)
				model = (uint64_t)(n ^ 1);
		}
		}
		ck_assert_msg((uint64_t)res == want_old, "op %d step %d", (int)(r % 9), i);
		ck_assert_int_eq(shset_int_load(v, &x), 0);
		ck_assert((uint64_t)x == model);
	}
	shset_value_close(v);
}
END_TEST

START_TEST(uint_operations)
{
	shset_value *v;
	uint64_t x, old;

	ck_assert_int_eq(shset_uint_create(&v, 0), 0);
	ck_assert_int_eq(shset_value_kind(v), SHSET_VALUE_UINT);
	ck_assert_int_eq(shset_uint_fetch_sub(v, 1, &old), 0);
	ck_assert_uint_eq(old, 0);
	ck_assert_int_eq(shset_uint_load(v, &x), 0);
	ck_assert_uint_eq(x, UINT64_MAX);
	ck_assert_int_eq(shset_uint_add_fetch(v, 2, &x), 0);
	ck_assert_uint_eq(x, 1);
	ck_assert_int_eq(shset_uint_sub_fetch(v, 3, &x), 0);
	ck_assert_uint_eq(x, UINT64_MAX - 1);
	ck_assert_int_eq(shset_uint_fetch_and(v, 0xf0f0, &old), 0);
	ck_assert_uint_eq(old, UINT64_MAX - 1);
	ck_assert_int_eq(shset_uint_fetch_or(v, 1ull << 63, &old), 0);
	ck_assert_uint_eq(old, 0xf0f0);
	ck_assert_int_eq(shset_uint_fetch_xor(v, 0xffff, &old), 0);
	ck_assert_uint_eq(old, (1ull << 63) | 0xf0f0);
	ck_assert_int_eq(shset_uint_fetch_add(v, 1, &old), 0);
	ck_assert_uint_eq(old, (1ull << 63) | 0x0f0f);
	ck_assert_int_eq(shset_uint_exchange(v, 77, &old), 0);
	ck_assert_uint_eq(old, (1ull << 63) | 0x0f10);
	uint64_t e = 78;
	ck_assert_int_eq(shset_uint_compare_exchange(v, &e, 1), 0);
	ck_assert_uint_eq(e, 77);
	ck_assert_int_eq(shset_uint_compare_exchange(v, &e, UINT64_MAX), 1);
	ck_assert_int_eq(shset_uint_load(v, &x), 0);
	ck_assert_uint_eq(x, UINT64_MAX);
	ck_assert_int_eq(shset_uint_store(v, 5), 0);
	ck_assert_int_eq(shset_uint_load(v, &x), 0);
	ck_assert_uint_eq(x, 5);
	shset_value_close(v);
}
END_TEST

START_TEST(array_operations)
{
	shset_value *a, *u, *z;
	int64_t x, old;
	uint64_t ux;
	const size_t n = 10000;

	ck_assert_int_eq(shset_intarray_create(&a, n), 0);
	ck_assert_int_eq(shset_uintarray_create(&u, 3), 0);
	ck_assert_int_eq(shset_value_kind(a), SHSET_VALUE_INTARRAY);
	ck_assert_uint_eq(shset_value_length(a), n);
	/* 10,000 counters, one descriptor. */
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(shset_intarray_load(a, i, &x), 0);
		ck_assert(x == 0);
		ck_assert_int_eq(shset_intarray_fetch_add(a, i, (int64_t)i, NULL), 0);
	}
	int64_t model[16] = {0};
	uint64_t rng = 7;
	for (size_t i = 0; i < 16; i++)
		model[i] = (int64_t)i;
	for (int k = 0; k < 20000; k++) {
		uint64_t r = rng_next(&rng);
		size_t i = (r >> 8) % 16;
		int64_t m = (int64_t)rng_next(&rng) >> (r % 64), res;
		switch (r % 8) {
		case 0:
			ck_assert_int_eq(shset_intarray_fetch_add(a, i, m, &res), 0);
			ck_assert(res == model[i]);
			model[i] = (int64_t)((uint64_t)model[i] + (uint64_t)m);
			break;
		case 1:
			ck_assert_int_eq(shset_intarray_fetch_sub(a, i, m, &res), 0);
			ck_assert(res == model[i]);
			model[i] = (int64_t)((uint64_t)model[i] - (uint64_t)m);
			break;
		case 2:
			ck_assert_int_eq(shset_intarray_fetch_and(a, i, m, &res), 0);
			ck_assert(res == model[i]);
			model[i] &= m;
			break;
		case 3:
			ck_assert_int_eq(shset_intarray_fetch_or(a, i, m, &res), 0);
			ck_assert(res == model[i]);
			model[i] |= m;
			break;
		case 4:
			ck_assert_int_eq(shset_intarray_fetch_xor(a, i, m, &res), 0);
			ck_assert(res == model[i]);
			model[i] ^= m;
			break;
		case 5:
			ck_assert_int_eq(shset_intarray_add_fetch(a, i, m, &res), 0);
			model[i] = (int64_t)((uint64_t)model[i] + (uint64_t)m);
			ck_assert(res == model[i]);
			break;
		case 6:
			ck_assert_int_eq(shset_intarray_sub_fetch(a, i, m, &res), 0);
			model[i] = (int64_t)((uint64_t)model[i] - (uint64_t)m);
			ck_assert(res == model[i]);
			break;
		default: {
			int64_t e = r & (1ull << 40) ? model[i] : m;
			int want = e == model[i];
			ck_assert_int_eq(shset_intarray_compare_exchange(a, i, &e, m), want);
			ck_assert(e == model[i]);
			if (want)
				model[i] = m;
		}
		}
	}
	for (size_t i = 0; i < 16; i++) {
		ck_assert_int_eq(shset_intarray_load(a, i, &x), 0);
		ck_assert(x == model[i]);
	}
	/* The slots past the walk kept their values. */
	for (size_t i = 16; i < n; i++) {
		ck_assert_int_eq(shset_intarray_load(a, i, &x), 0);
		ck_assert(x == (int64_t)i);
	}
	ck_assert_int_eq(shset_intarray_store(a, n - 1, INT64_MAX), 0);
	ck_assert_int_eq(shset_intarray_add_fetch(a, n - 1, 1, &x), 0);
	ck_assert(x == INT64_MIN);
	ck_assert_int_eq(shset_intarray_exchange(a, 0, -3, &old), 0);
	ck_assert(old == model[0]);
	/* The index is checked against the length: -ERANGE. */
	ck_assert_int_eq(shset_intarray_load(a, n, &x), -ERANGE);
	ck_assert_int_eq(shset_intarray_store(a, SIZE_MAX, 1), -ERANGE);
	ck_assert_int_eq(shset_intarray_fetch_add(a, n, 1, NULL), -ERANGE);
	ck_assert_int_eq(shset_uintarray_fetch_sub(u, 2, 1, &ux), 0);
	ck_assert_uint_eq(ux, 0);
	ck_assert_int_eq(shset_uintarray_load(u, 2, &ux), 0);
	ck_assert_uint_eq(ux, UINT64_MAX);
	ck_assert_int_eq(shset_uintarray_load(u, 1, &ux), 0);
	ck_assert_uint_eq(ux, 0);
	ck_assert_int_eq(shset_uintarray_load(u, 3, &ux), -ERANGE);
	ux = 1;
	ck_assert_int_eq(shset_uintarray_compare_exchange(u, 2, &ux, 4), 0);
	ck_assert_uint_eq(ux, UINT64_MAX);
	/* An empty array is an array. */
	ck_assert_int_eq(shset_intarray_create(&z, 0), 0);
	ck_assert_uint_eq(shset_value_length(z), 0);
	ck_assert_int_eq(shset_intarray_load(z, 0, &x), -ERANGE);
	shset_value_close(z);
	ck_assert_int_eq(shset_intarray_create(&z, (size_t)SHSET_ARRAY_MAX + 1), -EINVAL);
	shset_value_close(a);
	shset_value_close(u);
}
END_TEST

START_TEST(float_operations)
{
	shset_value *v;
	double d, old;

	ck_assert_int_eq(shset_float_create(&v, 1.5), 0);
	ck_assert_int_eq(shset_value_kind(v), SHSET_VALUE_FLOAT);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(d == 1.5);
	ck_assert_int_eq(shset_float_fetch_add(v, 0.25, &old), 0);
	ck_assert(old == 1.5);
	ck_assert_int_eq(shset_float_fetch_sub(v, 2.0, &old), 0);
	ck_assert(old == 1.75);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(d == -0.25);
	ck_assert_int_eq(shset_float_exchange(v, 1e300, &old), 0);
	ck_assert(old == -0.25);
	ck_assert_int_eq(shset_float_fetch_add(v, 1e300, NULL), 0);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(d == 2e300);
	ck_assert_int_eq(shset_float_fetch_add(v, DBL_MAX, NULL), 0);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(isinf(d) && d > 0);
	/* compare_exchange compares bit patterns: -0.0 is not 0.0, and a NaN
	 * matches itself. */
	ck_assert_int_eq(shset_float_store(v, -0.0), 0);
	double e = 0.0;
	ck_assert_int_eq(shset_float_compare_exchange(v, &e, 3.0), 0);
	ck_assert(e == 0.0 && signbit(e));
	ck_assert_int_eq(shset_float_compare_exchange(v, &e, NAN), 1);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(isnan(d));
	e = d;
	ck_assert_int_eq(shset_float_compare_exchange(v, &e, 0.5), 1);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(d == 0.5);
	/* A sum of many small additions, exactly representable. */
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(shset_float_fetch_add(v, 0.125, NULL), 0);
	ck_assert_int_eq(shset_float_load(v, &d), 0);
	ck_assert(d == 125.5);
	shset_value_close(v);
}
END_TEST

START_TEST(bytes_operations)
{
	shset_value *v, *s, *z;
	uint8_t buf[100], old[100];
	size_t len;

	/* Created empty; NULL init is fine for an empty value. */
	ck_assert_int_eq(shset_bytes_create(&v, 64, NULL, 0), 0);
	ck_assert_int_eq(shset_value_kind(v), SHSET_VALUE_BYTES);
	ck_assert_uint_eq(shset_value_length(v), 64);
	len = 99;
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(shset_bytes_load(v, NULL, 0, &len), 0);
	ck_assert_uint_eq(len, 0);
	/* Non-ASCII and NUL bytes round-trip. */
	const char utf8[] = "h\xc3\xa9llo \xe2\x98\x83\0\xff\x80";
	ck_assert_int_eq(shset_bytes_store(v, utf8, sizeof(utf8)), 0);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, sizeof(utf8));
	ck_assert_mem_eq(buf, utf8, sizeof(utf8));
	/* A buffer too small: -ENOBUFS with the length needed. */
	ck_assert_int_eq(shset_bytes_load(v, buf, 3, &len), -ENOBUFS);
	ck_assert_uint_eq(len, sizeof(utf8));
	/* Full capacity is accepted, one byte more is refused and changes
	 * nothing. */
	uint8_t full[65];
	for (int i = 0; i < 65; i++)
		full[i] = (uint8_t)(255 - i);
	ck_assert_int_eq(shset_bytes_store(v, full, 65), -EMSGSIZE);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, sizeof(utf8));
	ck_assert_int_eq(shset_bytes_store(v, full, 64), 0);
	ck_assert_int_eq(shset_bytes_load(v, buf, 64, &len), 0);
	ck_assert_uint_eq(len, 64);
	ck_assert_mem_eq(buf, full, 64);
	/* exchange gives the old value. */
	ck_assert_int_eq(shset_bytes_exchange(v, "abc", 3, old, sizeof(old), &len), 0);
	ck_assert_uint_eq(len, 64);
	ck_assert_mem_eq(old, full, 64);
	ck_assert_int_eq(shset_bytes_exchange(v, full, 65, old, sizeof(old), &len), -EMSGSIZE);
	/* ... or stores nothing when it cannot give it. */
	ck_assert_int_eq(shset_bytes_exchange(v, "xyz", 3, old, 2, &len), -ENOBUFS);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(buf, "abc", 3);
	ck_assert_int_eq(shset_bytes_exchange(v, "", 0, NULL, 0, NULL), 0);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 0);
	/* compare_exchange: equal bytes and equal length. */
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "a", 1, "b", 1), 0);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "", 0, "ab", 2), 1);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "a", 1, "c", 1), 0);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "abc", 3, "c", 1), 0);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "ab", 2, full, 65), -EMSGSIZE);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, "ab", 2, full, 64), 1);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 64);
	ck_assert_mem_eq(buf, full, 64);
	ck_assert_int_eq(shset_bytes_compare_exchange(v, full, 64, utf8, sizeof(utf8)), 1);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_mem_eq(buf, utf8, sizeof(utf8));

	/* Strings are byte strings with their own kind. */
	ck_assert_int_eq(shset_string_create(&s, 16,
					     "\xe2\x82\xac"
					     "5",
					     4),
			 0);
	ck_assert_int_eq(shset_value_kind(s), SHSET_VALUE_STRING);
	ck_assert_int_eq(shset_bytes_load(s, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert_mem_eq(buf,
			 "\xe2\x82\xac"
			 "5",
			 4);
	ck_assert_int_eq(shset_string_create(&z, 2, "abc", 3), -EMSGSIZE);
	ck_assert_ptr_null(z);
	ck_assert_int_eq(shset_bytes_create(&z, (size_t)SHSET_BYTES_MAX + 1, NULL, 0), -EINVAL);
	/* Capacity 0 holds only the empty value. */
	ck_assert_int_eq(shset_bytes_create(&z, 0, NULL, 0), 0);
	ck_assert_int_eq(shset_bytes_store(z, "a", 1), -EMSGSIZE);
	ck_assert_int_eq(shset_bytes_store(z, "", 0), 0);
	ck_assert_int_eq(shset_bytes_load(z, NULL, 0, &len), 0);
	ck_assert_uint_eq(len, 0);

	struct shset_value_info info;
	ck_assert_int_eq(shset_value_info(v, &info), 0);
	ck_assert_uint_eq(info.kind, SHSET_VALUE_BYTES);
	ck_assert_uint_eq(info.length, 64);
	ck_assert_uint_eq(info.value_len, sizeof(utf8));
	ck_assert_uint_eq(info.stores, 7);
	ck_assert_uint_eq(info.file_bytes, file_size(shset_value_fd(v)));
	ck_assert_int_eq(info.lock.locked, 0);
	shset_value_close(v);
	shset_value_close(s);
	shset_value_close(z);
}
END_TEST

START_TEST(large_bytes)
{
	shset_value *v;
	const size_t cap = 1 << 20;
	uint8_t *a = malloc(cap), *b = malloc(cap);
	size_t len;

	for (size_t i = 0; i < cap; i++)
		a[i] = (uint8_t)(i * 2654435761u >> 13);
	ck_assert_int_eq(shset_bytes_create(&v, cap, a, cap), 0);
	ck_assert_int_eq(shset_bytes_load(v, b, cap, &len), 0);
	ck_assert_uint_eq(len, cap);
	ck_assert_int_eq(memcmp(a, b, cap), 0);
	for (size_t l = cap - 9; l < cap; l++) {
		ck_assert_int_eq(shset_bytes_store(v, a + 1, l), 0);
		ck_assert_int_eq(shset_bytes_load(v, b, cap, &len), 0);
		ck_assert_uint_eq(len, l);
		ck_assert_int_eq(memcmp(a + 1, b, l), 0);
	}
	shset_value_close(v);
	free(a);
	free(b);
}
END_TEST

START_TEST(wrong_kind_is_einval)
{
	shset_value *i, *b, *a;
	int64_t x;
	uint64_t u;
	double d;
	size_t len;
	char buf[8];

	ck_assert_int_eq(shset_int_create(&i, 1), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 8, "x", 1), 0);
	ck_assert_int_eq(shset_intarray_create(&a, 4), 0);
	ck_assert_int_eq(shset_uint_load(i, &u), -EINVAL);
	ck_assert_int_eq(shset_float_load(i, &d), -EINVAL);
	ck_assert_int_eq(shset_float_fetch_add(i, 1.0, &d), -EINVAL);
	ck_assert_int_eq(shset_intarray_load(i, 0, &x), -EINVAL);
	ck_assert_int_eq(shset_bytes_load(i, buf, sizeof(buf), &len), -EINVAL);
	ck_assert_int_eq(shset_bytes_store(a, "x", 1), -EINVAL);
	ck_assert_int_eq(shset_int_fetch_add(b, 1, &x), -EINVAL);
	ck_assert_int_eq(shset_int_load(a, &x), -EINVAL);
	ck_assert_int_eq(shset_uintarray_load(a, 0, &u), -EINVAL);
	ck_assert_int_eq(shset_int_load(NULL, &x), -EINVAL);
	ck_assert_int_eq(shset_bytes_load(NULL, buf, sizeof(buf), &len), -EINVAL);
	ck_assert_int_eq(shset_value_fd(NULL), -EINVAL);
	ck_assert_int_eq(shset_value_kind(NULL), -EINVAL);
	ck_assert_int_eq(shset_int_create(NULL, 0), -EINVAL);
	shset_value *z;
	ck_assert_int_eq(shset_bytes_create(&z, 8, NULL, 1), -EINVAL);
	ck_assert_ptr_null(z);
	shset_value_close(NULL);
	/* Nothing changed. */
	ck_assert_int_eq(shset_int_load(i, &x), 0);
	ck_assert(x == 1);
	shset_value_close(i);
	shset_value_close(b);
	shset_value_close(a);
}
END_TEST

/* --- attaching --------------------------------------------------------------- */

/* A copy of @v's file in a new memfd sealed with @seals, with @off..@off+8
 * replaced by @word (no change when @off is -1). */
static int forged_copy_sealed(shset_value *v, long off, uint64_t word, int seals)
{
	int src = shset_value_fd(v);
	size_t size = file_size(src);
	int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	uint8_t *m = malloc(size);
	ck_assert_int_eq(pread(src, m, size, 0), (ssize_t)size);
	if (off >= 0)
		memcpy(m + off, &word, 8);
	ck_assert_int_eq(pwrite(fd, m, size, 0), (ssize_t)size);
	free(m);
	if (seals)
		ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

static int forged_copy(shset_value *v, long off, uint64_t word)
{
	return forged_copy_sealed(v, off, word, F_SEAL_SHRINK | F_SEAL_GROW);
}

static uint64_t hdr_word(shset_value *v, long off)
{
	uint64_t w;
	ck_assert_int_eq(pread(shset_value_fd(v), &w, 8, off), 8);
	return w;
}

START_TEST(attach_validates)
{
	shset_value *v, *w, *b;
	int64_t x;
	int fds0 = count_fds();

	ck_assert_int_eq(shset_int_create(&v, 41), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 100, "hello", 5), 0);
	int fd = shset_value_fd(v);
	/* The fd is sealed against shrinking and growing, and close-on-exec. */
	ck_assert_int_eq(fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(ftruncate(fd, 1 << 20), 0);

	/* Any kind, or the right one; the fd is dup'ed. */
	ck_assert_int_eq(shset_value_attach_fd(&w, fd, SHSET_VALUE_ANY), 0);
	ck_assert_int_ne(shset_value_fd(w), fd);
	ck_assert_int_eq(shset_int_fetch_add(w, 1, NULL), 0);
	ck_assert_int_eq(shset_int_load(v, &x), 0);
	ck_assert(x == 42);
	shset_value_close(w);
	ck_assert_int_eq(shset_value_attach_fd(&w, fd, SHSET_VALUE_INT), 0);
	shset_value_close(w);
	ck_assert_int_eq(shset_value_attach_fd(&w, fd, SHSET_VALUE_UINT), -EPROTOTYPE);
	ck_assert_ptr_null(w);
	ck_assert_int_eq(shset_value_attach_fd(&w, shset_value_fd(b), SHSET_VALUE_STRING),
			 -EPROTOTYPE);
	ck_assert_int_eq(shset_value_attach_fd(&w, fd, 99), -EINVAL);
	ck_assert_int_eq(shset_value_attach_fd(NULL, fd, 0), -EINVAL);

	/* Not an fd, not a memfd, not sealed, not writable, too small. */
	ck_assert_int_eq(shset_value_attach_fd(&w, -1, 0), -EBADF);
	ck_assert_int_eq(shset_value_attach_fd(&w, 1000, 0), -EBADF);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, p[0], 0), -EMEDIUMTYPE);
	close(p[0]);
	close(p[1]);
	int m = forged_copy_sealed(v, -1, 0, 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, m, 0), -EPERM);
	close(m);
	m = forged_copy_sealed(v, -1, 0, F_SEAL_SHRINK);
	ck_assert_int_eq(shset_value_attach_fd(&w, m, 0), -EPERM); /* growable */
	close(m);
	m = forged_copy_sealed(v, -1, 0, F_SEAL_GROW);
	ck_assert_int_eq(shset_value_attach_fd(&w, m, 0), -EPERM); /* shrinkable */
	close(m);
	m = memfd_create("small", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(m, 100), 0);
	ck_assert_int_eq(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, m, 0), -ENODATA);
	close(m);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ro, 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, ro, 0), -EACCES);
	close(ro);

	/* A set is not a value, and a value is not a set. */
	shset *s, *s2;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, shset_fd(s), 0), -EPROTO);
	ck_assert_int_eq(shset_attach_fd(&s2, fd), -EPROTO);
	shset_close(s);

	/* Forged headers. */
	int f = forged_copy(v, -1, 0);
	ck_assert_int_eq(shset_value_attach_fd(&w, f, 0), 0);
	ck_assert_int_eq(shset_int_load(w, &x), 0);
	ck_assert(x == 42);
	shset_value_close(w);
	close(f);
	struct {
		long off;
		uint64_t word;
		int err;
	} forge[] = {
	    {0, 0x3145554c41564854ull, -EPROTO},
	    {OFF_VERSION, hdr_word(v, OFF_VERSION) + 1, -EPROTONOSUPPORT},
	    {OFF_VERSION, (hdr_word(v, OFF_VERSION) & 0xffffffffu) | 99ull << 32, -EUCLEAN},
	    {OFF_VERSION, (hdr_word(v, OFF_VERSION) & 0xffffffffu), -EUCLEAN},
	    {OFF_LENGTH, 2, -EUCLEAN},
	    {OFF_DATA_OFF, 8192, -EUCLEAN},
	    {OFF_SIZE, 4096, -EUCLEAN},
	    {OFF_NSLOTS, 256, -EUCLEAN},
	};
	for (size_t i = 0; i < sizeof(forge) / sizeof(forge[0]); i++) {
		f = forged_copy(v, forge[i].off, forge[i].word);
		ck_assert_int_eq(shset_value_attach_fd(&w, f, 0), forge[i].err);
		ck_assert_ptr_null(w);
		close(f);
	}
	/* Another kind, whose layout differs. */
	f = forged_copy(v, OFF_VERSION,
			(hdr_word(v, OFF_VERSION) & 0xffffffffu) | (uint64_t)SHSET_VALUE_BYTES
								       << 32);
	ck_assert_int_eq(shset_value_attach_fd(&w, f, 0), -EUCLEAN);
	close(f);
	/* Byte strings: the capacity must match the file. */
	f = forged_copy(b, OFF_LENGTH, 1 << 20);
	ck_assert_int_eq(shset_value_attach_fd(&w, f, 0), -EUCLEAN);
	close(f);
	f = forged_copy(b, OFF_LENGTH, 101);
	ck_assert_int_eq(shset_value_attach_fd(&w, f, 0), 0); /* same layout */
	shset_value_close(w);
	close(f);

	shset_value_close(v);
	shset_value_close(b);
	/* Every fd opened above is closed. */
	ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* Random words in the header of a copy: attach fails cleanly or the
 * value reads as stored; a live handle is never affected. */
START_TEST(scribbled_header)
{
	shset_value *v, *b, *w;
	uint64_t rng = 99;
	int64_t x;

	ck_assert_int_eq(shset_int_create(&v, -7), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 50, "stored", 6), 0);
	for (int i = 0; i < 2000; i++) {
		shset_value *src = i & 1 ? b : v;
		long off = (long)(rng_next(&rng) % (HDR_BYTES / 8)) * 8;
		uint64_t word = rng_next(&rng);
		if (word & 1)
			word &= 0xffff;
		int f = forged_copy(src, off, word);
		int err = shset_value_attach_fd(&w, f, 0);
		close(f);
		if (err) {
			ck_assert_int_lt(err, 0);
			ck_assert_ptr_null(w);
			continue;
		}
		if (src == v) {
			ck_assert_int_eq(shset_int_load(w, &x), 0);
			ck_assert(x == -7);
		} else {
			char buf[64];
			size_t len;
			ck_assert_int_eq(shset_bytes_load(w, buf, sizeof(buf), &len), 0);
			ck_assert_uint_eq(len, 6);
			ck_assert_mem_eq(buf, "stored", 6);
		}
		shset_value_close(w);
	}
	/* A scribbled header under live handles changes nothing they do. */
	int fd = shset_value_fd(v);
	uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	memset(m, 0xa5, 4096);
	ck_assert_int_eq(shset_int_add_fetch(v, 10, &x), 0);
	ck_assert(x == 3);
	ck_assert_int_eq(shset_value_attach_fd(&w, fd, 0), -EPROTO);
	munmap(m, 4096);
	shset_value_close(v);
	shset_value_close(b);
}
END_TEST

/* --- passing ----------------------------------------------------------------- */

START_TEST(fd_passing)
{
	int sv[2];
	shset_value *i, *b, *a;
	int fds0 = count_fds();

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(shset_int_create(&i, 100), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 32, "from parent", 11), 0);
	ck_assert_int_eq(shset_intarray_create(&a, 5), 0);
	pid_t pid = fork();
	if (pid == 0) {
		shset_value *ri, *rb, *ra, *bad;
		char buf[32], c;
		size_t len;
		if (shset_value_recv(sv[1], &ri, SHSET_VALUE_INT) ||
		    shset_value_recv(sv[1], &rb, SHSET_VALUE_ANY) ||
		    shset_value_recv(sv[1], &ra, SHSET_VALUE_INTARRAY))
			_exit(1);
		/* A value of another kind than asked for, and a set. */
		int fds = count_fds();
		if (shset_value_recv(sv[1], &bad, SHSET_VALUE_UINT) != -EPROTOTYPE || bad)
			_exit(2);
		if (shset_value_recv(sv[1], &bad, SHSET_VALUE_ANY) != -EBADMSG || bad)
			_exit(3);
		if (count_fds() != fds)
			_exit(4); /* refused fds are closed */
		if (shset_int_fetch_add(ri, 5, NULL) || shset_intarray_store(ra, 4, -9))
			_exit(5);
		if (shset_bytes_load(rb, buf, sizeof(buf), &len) || len != 11 ||
		    memcmp(buf, "from parent", 11))
			_exit(6);
		if (shset_bytes_store(rb, "from child", 10))
			_exit(7);
		write_all(sv[1], "k", 1);
		if (read_all(sv[1], &c, 1))
			_exit(8);
		int64_t x;
		if (shset_int_load(ri, &x) || x != 1000)
			_exit(9);
		_exit(0);
	}
	ck_assert_int_eq(shset_value_send(sv[0], i), 0);
	ck_assert_int_eq(shset_value_send(sv[0], b), 0);
	ck_assert_int_eq(shset_value_send(sv[0], a), 0);
	ck_assert_int_eq(shset_value_send(sv[0], i), 0);
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_send(sv[0], s), 0);
	char c;
	ck_assert_int_eq(read_all(sv[0], &c, 1), 0);
	int64_t x;
	ck_assert_int_eq(shset_int_load(i, &x), 0);
	ck_assert(x == 105);
	ck_assert_int_eq(shset_intarray_load(a, 4, &x), 0);
	ck_assert(x == -9);
	char buf[32];
	size_t len;
	ck_assert_int_eq(shset_bytes_load(b, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 10);
	ck_assert_mem_eq(buf, "from child", 10);
	ck_assert_int_eq(shset_int_store(i, 1000), 0);
	write_all(sv[0], "k", 1);
	ck_assert_int_eq(wait_status(pid), 0);

	/* A value's message is not a set's. */
	shset *rs;
	ck_assert_int_eq(shset_value_send(sv[0], i), 0);
	ck_assert_int_eq(shset_recv(sv[1], &rs), -EBADMSG);
	close(sv[0]);
	shset_value *r;
	ck_assert_int_eq(shset_value_recv(sv[1], &r, 0), -ECONNRESET);
	close(sv[1]);
	shset_close(s);
	shset_value_close(i);
	shset_value_close(b);
	shset_value_close(a);
	ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* A handle inherited over fork writes from the child (which takes its own
 * lease slot) as well as from the parent. */
START_TEST(fork_inherits_handles)
{
	shset_value *b;
	char buf[16];
	size_t len;

	ck_assert_int_eq(shset_bytes_create(&b, 16, "a", 1), 0);
	ck_assert_int_eq(shset_bytes_store(b, "parent", 6), 0);
	for (int k = 0; k < 3; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			if (shset_bytes_compare_exchange(b, "parent", 6, "child", 5) != 1)
				_exit(1);
			_exit(0);
		}
		ck_assert_int_eq(wait_status(pid), 0);
		ck_assert_int_eq(shset_bytes_load(b, buf, sizeof(buf), &len), 0);
		ck_assert_uint_eq(len, 5);
		ck_assert_mem_eq(buf, "child", 5);
		ck_assert_int_eq(shset_bytes_store(b, "parent", 6), 0);
	}
	shset_value_close(b);
}
END_TEST

/* --- the example's shape: 2 processes x 100 threads -------------------------- */

#define EX_PROCS   2
#define EX_THREADS 100
#define EX_INCS	   1000
#define EX_CAS	   20
#define EX_SLOTS   8

struct ex_arg {
	shset_value *i, *b, *a;
	int id; /* 0 .. EX_PROCS * EX_THREADS - 1 */
	int failed;
};

static void *ex_thread(void *p)
{
	struct ex_arg *e = p;

	for (int k = 0; k < EX_INCS; k++) {
		/* +3 -1 -1: +1 per round, through three operations. */
		if (shset_int_fetch_add(e->i, 3, NULL) || shset_int_sub_fetch(e->i, 1, NULL) ||
		    shset_int_fetch_sub(e->i, 1, NULL))
			e->failed = 1;
		if (shset_intarray_fetch_add(e->a, (size_t)(e->id % EX_SLOTS), 1, NULL) ||
		    shset_intarray_add_fetch(e->a, EX_SLOTS, 2, NULL) ||
		    shset_intarray_fetch_or(e->a, EX_SLOTS + 1, (int64_t)(1ull << (e->id % 64)),
					    NULL))
			e->failed = 1;
	}
	/* The byte string holds a decimal count, incremented by compare-and-
	 * swap loops. */
	for (int k = 0; k < EX_CAS; k++) {
		for (;;) {
			char cur[32], next[32];
			size_t len;
			if (shset_bytes_load(e->b, cur, sizeof(cur) - 1, &len)) {
				e->failed = 1;
				return NULL;
			}
			cur[len] = 0;
			int n = snprintf(next, sizeof(next), "%lld", atoll(cur) + 1);
			int r = shset_bytes_compare_exchange(e->b, cur, len, next, (size_t)n);
			if (r == 1)
				break;
			if (r < 0) {
				e->failed = 1;
				return NULL;
			}
		}
	}
	return NULL;
}

START_TEST(example_many_threads)
{
	shset_value *i, *b, *a;
	pid_t pids[EX_PROCS];

	ck_assert_int_eq(shset_int_create(&i, 0), 0);
	ck_assert_int_eq(shset_bytes_create(&b, 20, "0", 1), 0);
	ck_assert_int_eq(shset_intarray_create(&a, EX_SLOTS + 2), 0);
	for (int p = 0; p < EX_PROCS; p++) {
		pids[p] = fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			pthread_t th[EX_THREADS];
			struct ex_arg args[EX_THREADS];
			for (int t = 0; t < EX_THREADS; t++) {
				args[t] = (struct ex_arg){i, b, a, p * EX_THREADS + t, 0};
				if (pthread_create(&th[t], NULL, ex_thread, &args[t]))
					_exit(1);
			}
			int failed = 0;
			for (int t = 0; t < EX_THREADS; t++) {
				pthread_join(th[t], NULL);
				failed |= args[t].failed;
			}
			_exit(failed ? 2 : 0);
		}
	}
	for (int p = 0; p < EX_PROCS; p++)
		ck_assert_int_eq(wait_status(pids[p]), 0);
	const int64_t n = EX_PROCS * EX_THREADS;
	int64_t x;
	ck_assert_int_eq(shset_int_load(i, &x), 0);
	ck_assert(x == n * EX_INCS);
	for (int s = 0; s < EX_SLOTS; s++) {
		ck_assert_int_eq(shset_intarray_load(a, (size_t)s, &x), 0);
		ck_assert(x == n / EX_SLOTS * EX_INCS);
	}
	ck_assert_int_eq(shset_intarray_load(a, EX_SLOTS, &x), 0);
	ck_assert(x == 2 * n * EX_INCS);
	ck_assert_int_eq(shset_intarray_load(a, EX_SLOTS + 1, &x), 0);
	ck_assert(x == -1);
	char buf[32];
	size_t len;
	ck_assert_int_eq(shset_bytes_load(b, buf, sizeof(buf) - 1, &len), 0);
	buf[len] = 0;
	ck_assert_str_eq(buf, "4000");
	shset_value_close(i);
	shset_value_close(b);
	shset_value_close(a);
}
END_TEST

/* --- torn reads ---------------------------------------------------------------- */

struct torn_shared {
	volatile int stop;
	uint64_t reads[4];
	uint64_t bad[4];
};

START_TEST(readers_never_see_torn_values)
{
	shset_value *v;
	struct torn_shared *sh = shared_page(4096);
	uint8_t init[GEN_CAP];
	pid_t w[2], r[2];

	ck_assert_int_eq(shset_bytes_create(&v, GEN_CAP, init, gen_value(0, init)), 0);
	const int stores = (int)(20000 * test_scale());
	for (int k = 0; k < 2; k++) {
		w[k] = fork();
		if (w[k] == 0) {
			uint8_t buf[GEN_CAP];
			/* Each writer walks the lengths in its own order. */
			for (int n = 0; n < stores; n++) {
				unsigned g = k ? (unsigned)n : (unsigned)(NGEN * 1000 - n);
				if (shset_bytes_store(v, buf, gen_value(g, buf)))
					_exit(1);
			}
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		r[k] = fork();
		if (r[k] == 0) {
			uint8_t buf[GEN_CAP];
			size_t len;
			for (uint64_t n = 0; !sh->stop && n < 100000000; n++) {
				if (shset_bytes_load(v, buf, sizeof(buf), &len))
					_exit(1);
				sh->reads[k]++;
				if (!is_generated(buf, len))
					sh->bad[k]++;
			}
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(wait_status(w[k]), 0);
	sh->stop = 1;
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(wait_status(r[k]), 0);
	for (int k = 0; k < 2; k++) {
		ck_assert_uint_gt(sh->reads[k], 0);
		ck_assert_uint_eq(sh->bad[k], 0);
	}
	struct shset_value_info info;
	ck_assert_int_eq(shset_value_info(v, &info), 0);
	ck_assert_uint_eq(info.stores, 2u * (unsigned)stores);
	fprintf(stderr, "torn reads: %d stores, %" PRIu64 " + %" PRIu64 " reads, all whole\n",
		2 * stores, sh->reads[0], sh->reads[1]);
	shset_value_close(v);
}
END_TEST

/* --- writers killed mid-store ---------------------------------------------------- */

START_TEST(killed_writers_leave_a_stored_value)
{
	/* Large values, and a writer that does nothing but store, so most
	 * kills land inside a store. */
	enum { CAP = 64 * 1024, TRIALS = 200 };
	shset_value *v;
	/* Three values, so each buffer is refilled with a different one. */
	uint8_t *buf = malloc(CAP), *val[3] = {malloc(CAP), malloc(CAP), malloc(CAP)};
	const size_t vlen[3] = {CAP - 3, 777, CAP / 2 + 5};
	size_t len;
	uint64_t rng = 3;

	for (size_t j = 0; j < CAP; j++) {
		val[0][j] = (uint8_t)(j * 7 + 1);
		val[1][j] = (uint8_t)(0xff - j);
		val[2][j] = (uint8_t)(j * 13 + 0x80);
	}
	ck_assert_int_eq(shset_bytes_create(&v, CAP, "alive", 5), 0);
	for (int t = 0; t < TRIALS; t++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			for (unsigned n = 0;; n++)
				if (shset_bytes_store(v, val[n % 3], vlen[n % 3]))
					_exit(1);
		}
		usleep((useconds_t)(rng_next(&rng) % 3000));
		kill(pid, SIGKILL);
		ck_assert_int_eq(wait_status(pid), 128 + SIGKILL);
		/* The published value is one of those stored, whole. */
		ck_assert_int_eq(shset_bytes_load(v, buf, CAP, &len), 0);
		int which = len == vlen[0] ? 0 : len == vlen[1] ? 1 : len == vlen[2] ? 2 : 3;
		if (which < 3)
			ck_assert_int_eq(memcmp(buf, val[which], len), 0);
		else
			ck_assert(len == 5 && memcmp(buf, "alive", 5) == 0);
		/* The next writer gets the lock back (from a dead owner at times)
		 * and the next reader sees its value.  The next child then starts
		 * with the lock free, instead of waiting out the takeover. */
		ck_assert_int_eq(shset_bytes_store(v, "alive", 5), 0);
		ck_assert_int_eq(shset_bytes_load(v, buf, CAP, &len), 0);
		ck_assert_uint_eq(len, 5);
		ck_assert_mem_eq(buf, "alive", 5);
	}
	struct shset_value_info info;
	ck_assert_int_eq(shset_value_info(v, &info), 0);
	fprintf(stderr, "killed writers: %d trials, %" PRIu64 " died holding the lock\n", TRIALS,
		info.lock.owner_died);
	shset_value_close(v);
	free(buf);
	free(val[0]);
	free(val[1]);
	free(val[2]);
}
END_TEST

/* --- a hostile peer ---------------------------------------------------------------- */

struct hostile_shared {
	volatile int stop;
	uint64_t loads, ok, euclean;
};

/*
 * A peer writes random words anywhere in a byte string's file (header,
 * lock, lease slots, control line, both buffers) while an honest process
 * loads, stores, exchanges and compares under a watchdog: every load gives
 * a value some writer stored, or -EUCLEAN; nothing crashes or hangs.
 * Afterwards a store repairs the value.
 */
START_TEST(random_words_peer)
{
	shset_value *v;
	struct hostile_shared *sh = shared_page(4096);
	uint8_t init[GEN_CAP];

	ck_assert_int_eq(shset_bytes_create(&v, GEN_CAP, init, gen_value(3, init)), 0);
	int fd = shset_value_fd(v);
	size_t size = file_size(fd);
	pid_t peer = fork();
	if (peer == 0) {
		uint64_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		uint64_t rng = 11;
		if (m == MAP_FAILED)
			_exit(1);
		while (!sh->stop) {
			uint64_t r = rng_next(&rng), word = rng_next(&rng), off;
			switch (r % 8) {
			case 0: /* the header and the lock */
				off = (r >> 8) % (LOCK_OFF + 64);
				break;
			case 1:
			case 2: /* the control line: published word and sums */
				off = BYTES_DATA + (r >> 8) % 24;
				if (word & 1)
					word &= 0xffffffff8000ffffull; /* plausible lengths */
				break;
			default: /* the buffers */
				off = BYTES_DATA + 64 + (r >> 8) % (2 * GEN_CAP);
				break;
			}
			__atomic_store_n(&m[off / 8], word, __ATOMIC_RELAXED);
			if (r % 16 == 0)
				usleep(50);
		}
		_exit(0);
	}
	pid_t honest = fork();
	if (honest == 0) {
		uint8_t buf[GEN_CAP], val[GEN_CAP];
		size_t len;
		uint64_t rng = 5, t0 = now_ns();
		alarm((unsigned)(60 * test_scale()));
		while (now_ns() - t0 < (uint64_t)(2e9 * test_scale())) {
			uint64_t r = rng_next(&rng);
			size_t l = gen_value((unsigned)r, val);
			int err;
			switch (r % 4) {
			case 0:
				err = shset_bytes_store(v, val, l);
				break;
			case 1:
				err = shset_bytes_exchange(v, val, l, buf, sizeof(buf), &len);
				if (err == 0 && !is_generated(buf, len))
					_exit(2);
				break;
			case 2:
				err = shset_bytes_compare_exchange(v, val, l, val, l);
				break;
			default:
				err = shset_bytes_load(v, buf, sizeof(buf), &len);
				sh->loads++;
				if (err == 0) {
					if (!is_generated(buf, len))
						_exit(3);
					sh->ok++;
				} else if (err == -EUCLEAN) {
					sh->euclean++;
				} else {
					_exit(4);
				}
			}
			(void)err;
		}
		_exit(0);
	}
	int st = wait_status(honest);
	sh->stop = 1;
	ck_assert_int_eq(wait_status(peer), 0);
	ck_assert_msg(st == 0,
		      "honest process: status %d (2, 3: a value never stored; 4: an "
		      "unexpected error; 142: hung)",
		      st);
	/* A store publishes a fresh buffer and word: the value is whole again. */
	uint8_t buf[GEN_CAP];
	size_t len;
	ck_assert_int_eq(shset_bytes_store(v, "repaired", 8), 0);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 8);
	ck_assert_mem_eq(buf, "repaired", 8);
	fprintf(stderr,
		"hostile peer: %" PRIu64 " loads, %" PRIu64 " values, %" PRIu64 " -EUCLEAN\n",
		sh->loads, sh->ok, sh->euclean);
	shset_value_close(v);
}
END_TEST

/* Integers keep no state but their words: a peer scribbling on everything
 * else changes nothing an honest process reads. */
START_TEST(integer_header_scribbles)
{
	shset_value *i, *a;
	uint64_t rng = 17;
	int64_t x;

	ck_assert_int_eq(shset_int_create(&i, 0), 0);
	ck_assert_int_eq(shset_intarray_create(&a, 1000), 0);
	uint8_t *mi =
	    mmap(NULL, INT_DATA, PROT_READ | PROT_WRITE, MAP_SHARED, shset_value_fd(i), 0);
	uint8_t *ma =
	    mmap(NULL, INT_DATA, PROT_READ | PROT_WRITE, MAP_SHARED, shset_value_fd(a), 0);
	ck_assert_ptr_ne(mi, MAP_FAILED);
	ck_assert_ptr_ne(ma, MAP_FAILED);
	for (int k = 0; k < 10000; k++) {
		uint64_t off = rng_next(&rng) % (INT_DATA / 8) * 8, w = rng_next(&rng);
		memcpy(mi + off, &w, 8);
		memcpy(ma + off, &w, 8);
		ck_assert_int_eq(shset_int_fetch_add(i, 1, NULL), 0);
		ck_assert_int_eq(shset_intarray_fetch_add(a, (size_t)k % 1000, 1, NULL), 0);
		ck_assert_int_eq(shset_intarray_load(a, 1000, &x), -ERANGE);
	}
	ck_assert_int_eq(shset_int_load(i, &x), 0);
	ck_assert(x == 10000);
	for (size_t k = 0; k < 1000; k++) {
		ck_assert_int_eq(shset_intarray_load(a, k, &x), 0);
		ck_assert(x == 10);
	}
	munmap(mi, INT_DATA);
	munmap(ma, INT_DATA);
	shset_value_close(i);
	shset_value_close(a);
}
END_TEST

/* Where a byte string keeps its writer lock and the lease slots (values.c's
 * layout), for a peer that writes them. */
#define VALUE_LOCK_OFF	256
#define VALUE_SLOTS_OFF 4096

/* As a hostile peer: writes into @v's lock word the owner value of this
 * process's writer slot (it must hold one: it wrote through @v). */
static void forge_own_word(shset_value *v)
{
	size_t len = VALUE_SLOTS_OFF + SHSET_VALUE_WRITERS * sizeof(struct shset_lease_slot);
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, shset_value_fd(v), 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	const struct shset_lease_slot *sl = (const void *)(m + VALUE_SLOTS_OFF);
	uint32_t me = 0;
	for (uint32_t i = 0; i < SHSET_VALUE_WRITERS && !me; i++)
		if (__atomic_load_n(&sl[i].pid, __ATOMIC_RELAXED) == (uint32_t)getpid())
			me = (i + 1) |
			     ((__atomic_load_n(&sl[i].gen, __ATOMIC_RELAXED) & LEASE_GEN_MASK)
			      << LEASE_GEN_SHIFT);
	ck_assert_uint_ne(me, 0);
	__atomic_store_n((uint32_t *)(m + VALUE_LOCK_OFF), me, __ATOMIC_SEQ_CST);
	munmap(m, len);
}

/* A child that stores "from B" through a handle of its own and writes the
 * result to @p[1]. */
static pid_t storer(shset_value *v, int p[2])
{
	ck_assert_int_eq(pipe(p), 0);
	pid_t b = fork();
	ck_assert_int_ge(b, 0);
	if (b == 0) {
		shset_value *vb;
		int r = shset_value_attach_fd(&vb, shset_value_fd(v), SHSET_VALUE_BYTES);
		r = r ? r : shset_bytes_store(vb, "from B", 6);
		_exit(write(p[1], &r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	return b;
}

/* Waits up to @ms for the storer's result: 1 with *@r, 0 if none came. */
static int stored(int p[2], int ms, int *r)
{
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	if (poll(&pf, 1, ms) != 1)
		return 0;
	ck_assert_int_eq(read(p[0], r, sizeof(*r)), (ssize_t)sizeof(*r));
	return 1;
}

static void storer_done(shset_value *v, pid_t b, int p[2])
{
	uint8_t buf[64];
	size_t len;
	int st;

	ck_assert_int_eq(waitpid(b, &st, 0), b);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(shset_bytes_load(v, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 6);
	ck_assert_int_eq(memcmp(buf, "from B", 6), 0);
}

/* A peer forges the writer lock's word to name a process that wrote once
 * and stays idle, and leaves.  Another writer waits until that process
 * calls shset_value_recover (before it existed: for ever). */
START_TEST(recover_frees_a_forged_word)
{
	shset_value *v;
	int p[2], r;

	ck_assert_int_eq(shset_bytes_create(&v, 64, "init", 4), 0);
	ck_assert_int_eq(shset_bytes_store(v, "mine", 4), 0);
	forge_own_word(v);
	pid_t b = storer(v, p);
	ck_assert_int_eq(stored(p, 300, &r), 0); /* the word names us, alive */
	ck_assert_int_eq(shset_value_recover(v), 0);
	ck_assert_int_eq(stored(p, 10000, &r), 1);
	ck_assert_int_eq(r, 0);
	storer_done(v, b, p);
	shset_value *i;
	ck_assert_int_eq(shset_int_create(&i, 7), 0);
	ck_assert_int_eq(shset_value_recover(i), 0);
	ck_assert_int_eq(shset_value_recover(NULL), -EINVAL);
	shset_value_close(i);
	shset_value_close(v);
}
END_TEST

/* The same forged word is freed when a thread of the named process waits
 * on another lock that a live process holds: the byte string's lock is
 * watched with the lease, as a set's shard locks are. */
START_TEST(forged_word_freed_by_a_wait)
{
	shset_value *v;
	int p[2], r, go[2];

	ck_assert_int_eq(shset_bytes_create(&v, 64, "init", 4), 0);
	ck_assert_int_eq(shset_bytes_store(v, "mine", 4), 0);
	forge_own_word(v);
	pid_t b = storer(v, p);
	ck_assert_int_eq(stored(p, 300, &r), 0);
	/* Another lock, held by a live child. */
	struct {
		shset_lock lock;
		struct shset_lease_slot slots[4];
	} *o = shared_page(4096);
	int ofd = memfd_create("other", MFD_CLOEXEC);
	ck_assert_int_ge(ofd, 0);
	ck_assert_int_eq(ftruncate(ofd, 4096), 0);
	shset_lock_init(&o->lock);
	ck_assert_int_eq(pipe(go), 0);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		shset_lease *lc;
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with a failed test */
		if (shset_lease_open(&lc, ofd, o->slots, 4) || shset_lock_acquire(&o->lock, lc))
			_exit(1);
		char x = 1;
		if (write(go[1], &x, 1) != 1)
			_exit(1);
		pause(); /* holding it, alive */
		_exit(0);
	}
	char x;
	ck_assert_int_eq(read(go[0], &x, 1), 1);
	shset_lease *lp;
	ck_assert_int_eq(shset_lease_open(&lp, ofd, o->slots, 4), 0);
	shset_lease_set_check_interval(lp, 5 * 1000 * 1000);
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += 1;
	ck_assert_int_eq(shset_lock_timedacquire(&o->lock, lp, &dl), -ETIMEDOUT);
	ck_assert_int_eq(stored(p, 0, &r), 1); /* B got in while we waited */
	ck_assert_int_eq(r, 0);
	storer_done(v, b, p);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	shset_lease_close(lp);
	close(go[0]);
	close(go[1]);
	close(ofd);
	shset_value_close(v);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("values");
	TCase *tc = tcase_create("values");
	tcase_set_timeout(tc, 180 * test_scale());
	tcase_add_test(tc, int_operations);
	tcase_add_test(tc, uint_operations);
	tcase_add_test(tc, array_operations);
	tcase_add_test(tc, float_operations);
	tcase_add_test(tc, bytes_operations);
	tcase_add_test(tc, large_bytes);
	tcase_add_test(tc, wrong_kind_is_einval);
	tcase_add_test(tc, attach_validates);
	tcase_add_test(tc, scribbled_header);
	tcase_add_test(tc, fd_passing);
	tcase_add_test(tc, fork_inherits_handles);
	tcase_add_test(tc, example_many_threads);
	tcase_add_test(tc, readers_never_see_torn_values);
	tcase_add_test(tc, killed_writers_leave_a_stored_value);
	tcase_add_test(tc, random_words_peer);
	tcase_add_test(tc, integer_header_scribbles);
	tcase_add_test(tc, recover_frees_a_forged_word);
	tcase_add_test(tc, forged_word_freed_by_a_wait);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
