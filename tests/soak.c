/* SPDX-License-Identifier: MIT */
/*
 * soak - many processes and threads doing random operations for a while.
 *
 *   soak [--seconds S] [--procs P] [--threads T]     (default 20 s, 64 x 2)
 *
 * Every thread owns a slice of the keys and keeps its own model of it; at
 * the end the set must match the merged models exactly (nothing lost),
 * shset_verify must pass, the set's memory must not have grown after the
 * first half (steady state), and no process may have gained descriptors.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"
#include "shset.h"

#define SLICE 400

static long seconds = 20, nprocs = 64, nthreads = 2;
static uint8_t *models; /* shared: one slice per thread */
static volatile int *stop;

struct targ {
	shset *s;
	uint32_t id;
	uint64_t ops;
	int bad;
};

static void *thread_main(void *p)
{
	struct targ *a = p;
	uint8_t *m = models + (size_t)a->id * SLICE, key[300];
	uint64_t rng = a->id * 7919ull + 1;
	const void *kp[16];
	size_t kl[16];
	static __thread uint8_t bk[16][300];

	while (!*stop) {
		uint64_t r = rng_next(&rng) % 100;
		uint32_t k = (uint32_t)(rng_next(&rng) % SLICE), key_no = a->id * SLICE + k;
		size_t len = key_of(key_no, key);
		int res;
		if (r < 40) {
			res = shset_add(a->s, key, len);
			a->bad |= res != !m[k];
			m[k] = 1;
		} else if (r < 75) {
			res = shset_remove(a->s, key, len);
			a->bad |= res != m[k];
			m[k] = 0;
		} else if (r < 95) {
			res = shset_contains(a->s, key, len);
			a->bad |= res != m[k];
		} else {
			int n = 1 + (int)(rng_next(&rng) % 16), add = r & 1;
			for (int i = 0; i < n; i++) {
				uint32_t kk = (uint32_t)(rng_next(&rng) % SLICE);
				kl[i] = key_of(a->id * SLICE + kk, bk[i]);
				kp[i] = bk[i];
				m[kk] = (uint8_t)add;
			}
			res = (int)(add ? shset_add_batch(a->s, kp, kl, (size_t)n)
					: shset_remove_batch(a->s, kp, kl, (size_t)n));
			a->bad |= res < 0;
		}
		a->ops++;
	}
	return NULL;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static int visit(const void *k, size_t len, void *arg)
{
	uint8_t *seen = arg;
	int i = key_index(k, len);
	if (i < 0 || i >= nprocs * nthreads * SLICE || seen[i])
		return -100;
	seen[i] = 1;
	return 0;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--procs") && i + 1 < argc)
			nprocs = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			nthreads = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: soak [--seconds S] [--procs P] [--threads T]\n");
			return 2;
		}
	}
	if (seconds < 1 || nprocs < 1 || nprocs > 250 || nthreads < 1 || nthreads > 16) {
		fprintf(stderr, "soak: --seconds >= 1, --procs 1..250, --threads 1..16\n");
		return 2;
	}
	size_t mlen = (size_t)nprocs * nthreads * SLICE;
	models = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shset *s;
	if (shset_create(&s, NULL))
		return 1;
	pid_t *pids = calloc((size_t)nprocs, sizeof(pid_t));
	for (long p = 0; p < nprocs; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			shset *c;
			int fds0 = count_fds();
			if (shset_attach_fd(&c, shset_fd(s)))
				_exit(1);
			pthread_t th[16];
			struct targ a[16];
			for (long t = 0; t < nthreads; t++) {
				a[t] = (struct targ){c, (uint32_t)(p * nthreads + t), 0, 0};
				pthread_create(&th[t], NULL, thread_main, &a[t]);
			}
			int bad = 0;
			for (long t = 0; t < nthreads; t++) {
				pthread_join(th[t], NULL);
				bad |= a[t].bad;
			}
			shset_close(c);
			/* Back to the descriptors it started with. */
			if (count_fds() != fds0)
				_exit(4);
			_exit(bad ? 3 : 0);
		}
	}
	sleep((unsigned)(seconds / 2));
	struct shset_stats mid, end;
	shset_stats(s, &mid);
	sleep((unsigned)(seconds - seconds / 2));
	*stop = 1;
	int failed = 0;
	for (long p = 0; p < nprocs; p++) {
		int st;
		waitpid(pids[p], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "soak: process %ld ended with status %d\n", p, st);
			failed++;
		}
	}
	shset_stats(s, &end);
	int v = shset_verify(s);
	uint8_t *seen = calloc(mlen, 1);
	int walk = shset_foreach(s, visit, seen);
	uint64_t lost = 0;
	for (size_t i = 0; i < mlen; i++)
		lost += seen[i] != models[i];
	/* Steady state: the same keys churn, so memory stays put. */
	int grew = end.mem_bytes > mid.mem_bytes + mid.mem_bytes / 5 + (1 << 20);
	printf("soak: %ld s, %ld processes x %ld threads, %llu transactions, %llu keys at the end; "
	       "lost %llu, verify %s, memory %.1f MB at half time and %.1f MB at the end%s\n",
	       seconds, nprocs, nthreads, (unsigned long long)end.txns,
	       (unsigned long long)end.count, (unsigned long long)lost, v ? "FAILED" : "clean",
	       mid.mem_bytes / 1e6, end.mem_bytes / 1e6, grew ? " (GREW)" : "");
	int ok = !failed && !v && !walk && !lost && !grew;
	printf("%d passed, %d failed\n", ok, !ok);
	shset_close(s);
	return ok ? 0 : 1;
}
