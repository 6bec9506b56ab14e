/* SPDX-License-Identifier: MIT */
/* shset - command-line front end. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shset.h"

static const char *prog = "shset";

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int usage(FILE *f, int code)
{
	fprintf(f,
		"usage: %s demo [--workers N]\n"
		"       %s --help\n",
		prog, prog);
	return code;
}

/* --- demo: processes sharing one robust lock ---------------------------- */

#define DEMO_SLOTS 64

struct demo_area {
	struct shset_lease_slot slots[DEMO_SLOTS];
	shset_lock lock;
	uint64_t counter; /* under the lock */
	uint64_t done[DEMO_SLOTS];
};

static int demo_worker(int fd, struct demo_area *a, int idx, uint64_t iters, int hold_forever)
{
	shset_lease *l;
	int r = shset_lease_open(&l, fd, a->slots, DEMO_SLOTS);

	if (r)
		return 1;
	for (uint64_t i = 0; i < iters; i++) {
		r = shset_lock_acquire(&a->lock, l);
		if (r < 0)
			return 2;
		if (r == SHSET_LOCK_OWNER_DIED)
			shset_lock_consistent(&a->lock, l); /* a plain counter needs no repair */
		a->counter++;
		a->done[idx]++;
		if (hold_forever && i == iters / 2)
			for (;;)
				pause(); /* killed while holding the lock */
		shset_lock_release(&a->lock, l);
	}
	shset_lease_close(l);
	return 0;
}

static int cmd_demo(int argc, char **argv)
{
	long nworkers = 2 * sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t iters = 200000;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--workers") && i + 1 < argc)
			nworkers = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--help"))
			return usage(stdout, 0);
		else
			return usage(stderr, 2);
	}
	if (nworkers < 2 || nworkers > DEMO_SLOTS - 1) {
		fprintf(stderr, "%s demo: --workers must be 2..%d\n", prog, DEMO_SLOTS - 1);
		return 2;
	}
	int fd = memfd_create("shset-demo", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, sizeof(struct demo_area)) < 0) {
		fprintf(stderr, "%s demo: memfd: %s\n", prog, strerror(errno));
		return 1;
	}
	struct demo_area *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED) {
		fprintf(stderr, "%s demo: mmap: %s\n", prog, strerror(errno));
		return 1;
	}
	printf("shset demo: %ld processes share one robust futex lock in a memfd\n", nworkers);
	pid_t *pids = calloc((size_t)nworkers, sizeof(pid_t));
	uint64_t t0 = mono_ns();
	for (long w = 0; w < nworkers; w++) {
		pids[w] = fork();
		if (pids[w] == 0)
			_exit(demo_worker(fd, a, (int)w, iters, w == 0));
	}
	/* Worker 0 stops halfway while holding the lock; kill it there. */
	while (__atomic_load_n(&a->done[0], __ATOMIC_RELAXED) < iters / 2 + 1)
		usleep(1000);
	usleep(5000);
	uint64_t tk = mono_ns();
	kill(pids[0], SIGKILL);
	int bad = 0;
	for (long w = 0; w < nworkers; w++) {
		int st;
		waitpid(pids[w], &st, 0);
		if (w > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
			bad++;
	}
	uint64_t t1 = mono_ns();
	struct shset_lock_state st;
	shset_lock_state(&a->lock, &st);
	uint64_t expect = 0;
	for (long w = 0; w < nworkers; w++)
		expect += a->done[w];
	printf("  worker 0 killed with SIGKILL holding the lock after %llu increments\n",
	       (unsigned long long)a->done[0]);
	printf("  lock taken over by a waiter: owner-died recoveries %llu\n",
	       (unsigned long long)st.owner_died);
	printf("  counter %llu, sum of increments %llu: %s\n", (unsigned long long)a->counter,
	       (unsigned long long)expect, a->counter == expect ? "exact" : "MISMATCH");
	printf("  %llu acquisitions (%llu contended, %llu futex waits) in %.2f s: %.0f ops/s\n",
	       (unsigned long long)st.acquisitions, (unsigned long long)st.contended,
	       (unsigned long long)st.futex_waits, (t1 - t0) / 1e9,
	       st.acquisitions / ((t1 - t0) / 1e9));
	printf("  time from kill to all workers done: %.1f ms\n", (t1 - tk) / 1e6);
	free(pids);
	return (a->counter == expect && st.owner_died == 1 && !bad) ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, 2);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
		return usage(stdout, 0);
	if (!strcmp(argv[1], "demo"))
		return cmd_demo(argc - 2, argv + 2);
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
	return usage(stderr, 2);
}
