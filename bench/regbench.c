/* SPDX-License-Identifier: MIT */
/*
 * regbench - the figures a change must not lose, measured the same way on
 * any version of the library: bench/regress.py compiles this one file
 * against a baseline commit's headers and static library and against this
 * code's, and runs the two in turn.  It uses only calls every version has
 * (create, add, contains, copy, save, close; options max_bytes and
 * capacity).
 *
 * One line per figure, "name value unit", higher is better:
 *   lookups 1p   shset_contains on a 1,000,000-key set, half the probes
 *                absent, random order (Mops/s)
 *   lookups 2p   the same from two processes at once (Mops/s in all)
 *   adds 1p      shset_add of 1,000,000 new keys into a set presized for
 *                2,000,000 holding 1,000,000 (Mops/s)
 *   copy         shset_copy of the 1,000,000-key set (copies/s)
 *   snapshot     shset_save of it to a file in /tmp (saves/s)
 * Each is the median of REPS repetitions.
 *
 * usage: regbench
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shset.h"

#define N      1000000u
#define KEYLEN 16
#define PROBES 2000000u
#define REPS   3

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "regbench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* Key @i: 8 bytes of a mix of i (so keys spread), then filler. */
static void key_of(uint64_t i, uint8_t *k)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;
	memset(k, 'k', KEYLEN);
	memcpy(k, &x, 8);
}

static shset *filled(uint64_t capacity)
{
	struct shset_opts o;
	shset *s;
	uint8_t k[KEYLEN];

	memset(&o, 0, sizeof(o));
	o.max_bytes = 4ull << 30;
	o.capacity = capacity;
	int err = shset_create(&s, &o);
	if (err)
		die("shset_create", err);
	for (uint64_t i = 0; i < N; i++) {
		key_of(i, k);
		if (shset_add(s, k, KEYLEN) != 1)
			die("shset_add", EIO);
	}
	return s;
}

/* Seconds for PROBES lookups, keys [0, 2N) in a random order. */
static double lookups(shset *s, uint64_t seed)
{
	uint8_t k[KEYLEN];
	uint64_t x = seed | 1, found = 0;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < PROBES; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		key_of(x % (2 * N), k);
		found += shset_contains(s, k, KEYLEN) == 1;
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	if (found < PROBES / 4 || found > PROBES * 3 / 4)
		die("lookups found the wrong keys", EIO);
	return secs;
}

static double median_of(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

int main(void)
{
	double r[REPS];
	uint8_t k[KEYLEN];
	char path[64];

	shset *s = filled(N);

	for (int i = 0; i < REPS; i++)
		r[i] = PROBES / lookups(s, (uint64_t)i + 1) / 1e6;
	printf("lookups_1p %.3f Mops/s\n", median_of(r, REPS));

	/* Two processes at once, each timing itself; the figure is the sum. */
	double *shared =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		die("mmap", errno);
	for (int i = 0; i < REPS; i++) {
		for (int p = 0; p < 2; p++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork", errno);
			if (pid == 0) {
				shared[p] = PROBES / lookups(s, (uint64_t)(i * 2 + p) + 7) / 1e6;
				_exit(0);
			}
		}
		for (int p = 0; p < 2; p++) {
			int st;
			if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
				die("a lookup process failed", EIO);
		}
		r[i] = shared[0] + shared[1];
	}
	printf("lookups_2p %.3f Mops/s\n", median_of(r, REPS));

	for (int i = 0; i < REPS; i++) {
		shset *c;
		uint64_t t0 = now_ns();
		int err = shset_copy(s, &c);
		double secs = (double)(now_ns() - t0) / 1e9;
		if (err)
			die("shset_copy", err);
		shset_close(c);
		r[i] = 1 / secs;
	}
	printf("copy %.3f per_s\n", median_of(r, REPS));

	snprintf(path, sizeof(path), "/tmp/regbench.%d.shs", (int)getpid());
	for (int i = 0; i < REPS; i++) {
		uint64_t t0 = now_ns();
		int err = shset_save(s, path);
		double secs = (double)(now_ns() - t0) / 1e9;
		if (err)
			die("shset_save", err);
		r[i] = 1 / secs;
	}
	unlink(path);
	printf("snapshot %.3f per_s\n", median_of(r, REPS));
	shset_close(s);

	for (int i = 0; i < REPS; i++) {
		shset *a = filled(2 * N);
		uint64_t t0 = now_ns();
		for (uint64_t j = N; j < 2 * N; j++) {
			key_of(j, k);
			if (shset_add(a, k, KEYLEN) != 1)
				die("shset_add", EIO);
		}
		r[i] = N / ((double)(now_ns() - t0) / 1e9) / 1e6;
		shset_close(a);
	}
	printf("adds_1p %.3f Mops/s\n", median_of(r, REPS));
	return 0;
}
