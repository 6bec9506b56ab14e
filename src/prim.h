/* SPDX-License-Identifier: MIT */
/*
 * prim.h - the primitives every file uses, defined once (private): clocks
 * in nanoseconds, timespec conversions, the spin-wait hint and single
 * loads and stores of shared words, and a short compare of bytes.
 */
#ifndef SHSET_PRIM_H
#define SHSET_PRIM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it (EINVAL) */
#endif

#define PRIM_NS_PER_S 1000000000ull

static inline uint64_t prim_timespec_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * PRIM_NS_PER_S + (uint64_t)ts->tv_nsec;
}

static inline struct timespec prim_ns_timespec(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / PRIM_NS_PER_S),
				 .tv_nsec = (long)(ns % PRIM_NS_PER_S)};
}

/* CLOCK_MONOTONIC: durations, deadlines. */
static inline uint64_t prim_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return prim_timespec_ns(&ts);
}

/* CLOCK_REALTIME: timestamps shown to people. */
static inline uint64_t prim_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return prim_timespec_ns(&ts);
}

/* Tells the CPU we are spinning (frees the pipeline for a sibling thread
 * and saves power). */
static inline void prim_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* @x with its bits in reverse order.  Bit-reversed counts 0, 1, 2, ... (the
 * van der Corput sequence, read as fractions of 2^64) spread over a range
 * evenly at every length: each prefix leaves no big gap. */
static inline uint64_t prim_bitrev64(uint64_t x)
{
	x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
	x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
	x = ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
	return __builtin_bswap64(x);
}

/* Single loads and stores of shared words: the compiler may neither
 * split them nor read a word twice where the code reads it once. */
static inline uint64_t prim_ld64(const uint8_t *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline uint32_t prim_ld32(const uint8_t *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}

static inline void prim_st64(uint8_t *p, uint64_t v)
{
	__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}

static inline void prim_st32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELAXED);
}

/* Whether the @len bytes at @a and @b are equal.  A key of 8 to 16 bytes
 * (the common one) is two overlapping word compares rather than a call:
 * a lookup is a few hundred instructions around one cache miss. */
static inline int prim_bytes_eq(const void *a, const void *b, size_t len)
{
	if (len >= 8 && len <= 16) {
		uint64_t a0, a1, b0, b1;
		memcpy(&a0, a, 8);
		memcpy(&b0, b, 8);
		memcpy(&a1, (const uint8_t *)a + len - 8, 8);
		memcpy(&b1, (const uint8_t *)b + len - 8, 8);
		return ((a0 ^ b0) | (a1 ^ b1)) == 0;
	}
	return memcmp(a, b, len) == 0;
}

#endif
