/* SPDX-License-Identifier: MIT */
/*
 * prim.h - the primitives every file uses, defined once (private): clocks
 * in nanoseconds, timespec conversions, and the spin-wait hint.
 */
#ifndef SHSET_PRIM_H
#define SHSET_PRIM_H

#include <stdint.h>
#include <time.h>

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

#endif
