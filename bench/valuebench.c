/* SPDX-License-Identifier: MIT */
/*
 * valuebench - 2 processes incrementing one shared counter: shset's
 * fetch_add against a bare __atomic_fetch_add on a MAP_SHARED page (the
 * floor: what the hardware does) and against a process-shared pthread mutex
 * around a plain counter (what C programmers often write).
 *
 * Each run measures all three back to back, so they share the machine's
 * state; the ratios of each run are then summarised over the runs (median,
 * min, max).  Links the shared library, as a user's program would.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shset/values.h"
#include "spread.h"

enum { V_SHSET, V_ATOMIC, V_MUTEX, NVARIANTS };
static const char *variant_name[NVARIANTS] = {"shset_int_fetch_add", "__atomic_fetch_add",
					      "pthread mutex (pshared)"};

#define PROCS 2
#define RUNS  5

struct shared {
	pthread_mutex_t mutex;
	volatile int ready, go;
	volatile uint64_t end_ns[PROCS];
	uint64_t mutex_counter; /* under mutex */
	uint64_t atomic_counter __attribute__((aligned(64)));
};

static struct shared *S;
static shset_value *counter;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void work(int variant, uint64_t n)
{
	switch (variant) {
	case V_SHSET:
		for (uint64_t i = 0; i < n; i++)
			if (shset_int_fetch_add(counter, 1, NULL))
				_exit(1);
		break;
	case V_ATOMIC:
		for (uint64_t i = 0; i < n; i++)
			__atomic_fetch_add(&S->atomic_counter, 1, __ATOMIC_SEQ_CST);
		break;
	case V_MUTEX:
		for (uint64_t i = 0; i < n; i++) {
			pthread_mutex_lock(&S->mutex);
			S->mutex_counter++;
			pthread_mutex_unlock(&S->mutex);
		}
		break;
	}
}

/* Operations per second of PROCS processes doing @n increments each;
 * exits if the counter is not exactly PROCS * n more than before. */
static double measure(int variant, uint64_t n)
{
	pid_t pids[PROCS];
	int64_t before = 0, after = 0;

	shset_int_load(counter, &before);
	uint64_t atomic_before = S->atomic_counter, mutex_before = S->mutex_counter;
	S->ready = 0;
	S->go = 0;
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] < 0) {
			perror("fork");
			exit(1);
		}
		if (pids[p] == 0) {
			__atomic_add_fetch(&S->ready, 1, __ATOMIC_SEQ_CST);
			while (!__atomic_load_n(&S->go, __ATOMIC_ACQUIRE))
				;
			work(variant, n);
			S->end_ns[p] = now_ns();
			_exit(0);
		}
	}
	while (__atomic_load_n(&S->ready, __ATOMIC_ACQUIRE) < PROCS)
		usleep(100);
	uint64_t t0 = now_ns(), t1 = 0;
	__atomic_store_n(&S->go, 1, __ATOMIC_RELEASE);
	for (int p = 0; p < PROCS; p++) {
		int st;
		if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "valuebench: worker failed\n");
			exit(1);
		}
		if (S->end_ns[p] > t1)
			t1 = S->end_ns[p];
	}
	shset_int_load(counter, &after);
	uint64_t got = variant == V_SHSET    ? (uint64_t)(after - before)
		       : variant == V_ATOMIC ? S->atomic_counter - atomic_before
					     : S->mutex_counter - mutex_before;
	if (got != PROCS * n) {
		fprintf(stderr, "valuebench: %s counted %llu, expected %llu\n",
			variant_name[variant], (unsigned long long)got,
			(unsigned long long)(PROCS * n));
		exit(1);
	}
	return (double)(PROCS * n) / ((double)(t1 - t0) / 1e9);
}

int main(int argc, char **argv)
{
	uint64_t n_atomic = 50000000, n_mutex = 10000000;
	const char *csv_path = NULL;
	FILE *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			n_atomic /= 10;
			n_mutex /= 10;
		} else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
			csv_path = argv[++i];
		} else {
			fprintf(stderr, "usage: valuebench [--quick] [--csv FILE]\n");
			return 2;
		}
	}
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&S->mutex, &ma);
	int err = shset_int_create(&counter, 0);
	if (err) {
		fprintf(stderr, "valuebench: shset_int_create: %s\n", strerror(-err));
		return 1;
	}
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv) {
			perror(csv_path);
			return 1;
		}
		fprintf(csv, "run,variant,mops\n");
	}

	double mops[NVARIANTS][RUNS], vs_atomic[RUNS], vs_mutex[RUNS];
	printf("2 processes incrementing one shared counter (%d runs; Mops/s in total)\n", RUNS);
	for (int r = 0; r < RUNS; r++) {
		for (int v = 0; v < NVARIANTS; v++) {
			mops[v][r] = measure(v, v == V_MUTEX ? n_mutex : n_atomic) / 1e6;
			if (csv)
				fprintf(csv, "%d,%s,%.3f\n", r, variant_name[v], mops[v][r]);
		}
		vs_atomic[r] = mops[V_ATOMIC][r] / mops[V_SHSET][r];
		vs_mutex[r] = mops[V_SHSET][r] / mops[V_MUTEX][r];
	}
	printf("  %-26s %9s %9s %9s\n", "", "median", "min", "max");
	for (int v = 0; v < NVARIANTS; v++) {
		struct spread s = spread_of(mops[v], RUNS);
		printf("  %-26s %9.2f %9.2f %9.2f  Mops/s\n", variant_name[v], s.median, s.min,
		       s.max);
	}
	struct spread a = spread_of(vs_atomic, RUNS), m = spread_of(vs_mutex, RUNS);
	printf("  %-26s %9.2f %9.2f %9.2f  x (goal: at most 1.5)\n", "bare atomic / shset",
	       a.median, a.min, a.max);
	printf("  %-26s %9.2f %9.2f %9.2f  x\n", "shset / pthread mutex", m.median, m.min, m.max);
	if (csv)
		fclose(csv);
	shset_value_close(counter);
	return 0;
}
