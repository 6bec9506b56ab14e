/* SPDX-License-Identifier: MIT */
/*
 * torture - writers in several processes killed with SIGKILL at random
 * instants; after every round the set must hold exactly what the writers
 * were told, give or take each dead writer's one operation in flight.
 *
 *   torture [--trials N] [--writers W] [--seed S]
 *
 * Each writer owns a slice of the key universe and does random adds,
 * removes and batches on it, writing each acknowledged operation's number
 * to a pipe.  A round runs all writers, kills them one by one at random
 * moments, takes the lock over (repair), verifies the set and replays every
 * writer's acknowledged operations against its slice.  Prints trials,
 * acknowledged operations, lost, corrupt, and recovery times.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"
#include "shset.h"

#define SLICE	  1500
#define MAX_W	  16
#define MAX_BATCH 64

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

enum { OP_ADD, OP_REMOVE, OP_BATCH_ADD, OP_BATCH_REMOVE };

struct op {
	int kind, nb;
	uint32_t keys[MAX_BATCH];
};

/* The n-th operation of writer @w in round @round, from the seed alone. */
static void gen(uint64_t *rng, uint32_t w, struct op *o)
{
	uint64_t r = rng_next(rng) % 100;
	o->kind = r < 45 ? OP_ADD : r < 80 ? OP_REMOVE : r < 92 ? OP_BATCH_ADD : OP_BATCH_REMOVE;
	o->nb = o->kind >= OP_BATCH_ADD ? 1 + (int)(rng_next(rng) % MAX_BATCH) : 1;
	for (int i = 0; i < o->nb; i++)
		o->keys[i] = w * SLICE + (uint32_t)(rng_next(rng) % SLICE);
}

static void apply(uint8_t *m, const struct op *o)
{
	for (int i = 0; i < o->nb; i++)
		m[o->keys[i]] = o->kind == OP_ADD || o->kind == OP_BATCH_ADD;
}

static void writer(int fd, uint32_t w, uint64_t seed, int ack)
{
	shset *s;
	static uint8_t bk[MAX_BATCH][300];
	const void *kp[MAX_BATCH];
	size_t kl[MAX_BATCH];
	uint64_t rng = seed;
	struct op o;

	if (shset_attach_fd(&s, fd))
		_exit(1);
	for (uint32_t n = 0;; n++) {
		gen(&rng, w, &o);
		for (int i = 0; i < o.nb; i++) {
			kl[i] = key_of(o.keys[i], bk[i]);
			kp[i] = bk[i];
		}
		long long r = o.kind == OP_ADD	    ? shset_add(s, kp[0], kl[0])
			      : o.kind == OP_REMOVE ? shset_remove(s, kp[0], kl[0])
			      : o.kind == OP_BATCH_ADD
				  ? shset_add_batch(s, kp, kl, (size_t)o.nb)
				  : shset_remove_batch(s, kp, kl, (size_t)o.nb);
		if (r < 0)
			_exit(2);
		if (write(ack, &n, sizeof(n)) != sizeof(n))
			_exit(3);
	}
}

static int read_presence(const void *k, size_t len, void *arg)
{
	uint8_t *m = arg;
	int i = key_index(k, len);
	if (i < 0 || i >= MAX_W * SLICE || m[i])
		return -100;
	m[i] = 1;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long trials = 300, nw = 3;
	uint64_t seed0 = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trials") && i + 1 < argc)
			trials = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--writers") && i + 1 < argc)
			nw = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed0 = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: torture [--trials N] [--writers W] [--seed S]\n");
			return 2;
		}
	}
	if (trials < 1 || nw < 1 || nw > MAX_W) {
		fprintf(stderr, "torture: --trials >= 1, --writers 1..%d\n", MAX_W);
		return 2;
	}
	shset *s;
	struct shset_opts o = {.log_bytes = 64 * 1024};
	if (shset_create(&s, &o))
		return 1;
	static uint8_t model[MAX_W * SLICE], after[MAX_W * SLICE], actual[MAX_W * SLICE];
	uint64_t *rec = calloc((size_t)trials, sizeof(uint64_t)), krng = seed0 * 31 + 7;
	uint64_t acked = 0, in_flight_applied = 0, lost = 0, corrupt = 0, repairs0 = 0;
	long failed_trials = 0;
	struct shset_stats st;
	shset_stats(s, &st);
	repairs0 = st.repairs;

	for (long t = 0; t < trials; t++) {
		uint64_t bad_before = lost + corrupt;
		pid_t pid[MAX_W];
		int ack[MAX_W][2];
		uint64_t seeds[MAX_W];
		for (long w = 0; w < nw; w++) {
			seeds[w] = seed0 * 1000003 + (uint64_t)t * 131 + (uint64_t)w;
			if (pipe(ack[w]))
				return 1;
			pid[w] = fork();
			if (pid[w] == 0) {
				close(ack[w][0]);
				writer(shset_fd(s), (uint32_t)w, seeds[w], ack[w][1]);
			}
			close(ack[w][1]);
		}
		/* Kill them one by one, each at a random instant (0-15 ms). */
		for (long w = 0; w < nw; w++) {
			uint64_t d = rng_next(&krng) % 15000;
			if (d > 500)
				usleep((useconds_t)d);
			kill(pid[w], SIGKILL);
		}
		for (long w = 0; w < nw; w++)
			waitpid(pid[w], NULL, 0);
		uint64_t t0 = now_ns();
		int v = shset_verify(s); /* takes over and repairs */
		rec[t] = now_ns() - t0;
		if (v) {
			fprintf(stderr, "torture: trial %ld: verify: %s\n", t, strerror(-v));
			corrupt++;
		}
		memset(actual, 0, sizeof(actual));
		if (shset_foreach(s, read_presence, actual)) {
			fprintf(stderr, "torture: trial %ld: garbage or duplicate key\n", t);
			corrupt++;
		}
		for (long w = 0; w < nw; w++) {
			uint64_t rng = seeds[w];
			struct op op;
			uint32_t n, count = 0;
			while (read(ack[w][0], &n, sizeof(n)) == sizeof(n)) {
				if (n != count)
					corrupt++;
				gen(&rng, (uint32_t)w, &op);
				apply(model, &op);
				count++;
			}
			close(ack[w][0]);
			acked += count;
			gen(&rng, (uint32_t)w, &op); /* maybe in flight */
			uint8_t *m = model + w * SLICE, *a = actual + w * SLICE;
			if (memcmp(m, a, SLICE) == 0)
				continue;
			memcpy(after, model, sizeof(model));
			apply(after, &op);
			if (memcmp(after + w * SLICE, a, SLICE) == 0) {
				in_flight_applied++;
				memcpy(m, a, SLICE);
				continue;
			}
			/* Count what an acknowledged operation lost. */
			for (int k = 0; k < SLICE; k++)
				lost += m[k] != a[k];
			fprintf(stderr, "torture: trial %ld writer %ld: content differs\n", t, w);
			memcpy(m, a, SLICE);
		}
		failed_trials += lost + corrupt != bad_before;
	}
	shset_stats(s, &st);
	qsort(rec, (size_t)trials, sizeof(uint64_t), cmp_u64);
	printf("torture: %ld trials x %ld writers, %llu acknowledged ops, lost %llu, corrupt %llu; "
	       "in-flight op applied %llu times; %llu kills inside the lock repaired; recovery "
	       "median %.2f ms, max %.2f ms\n",
	       trials, nw, (unsigned long long)acked, (unsigned long long)lost,
	       (unsigned long long)corrupt, (unsigned long long)in_flight_applied,
	       (unsigned long long)(st.repairs - repairs0), rec[trials / 2] / 1e6,
	       rec[trials - 1] / 1e6);
	printf("%ld passed, %ld failed\n", trials - failed_trials, failed_trials);
	free(rec);
	shset_close(s);
	return lost || corrupt ? 1 : 0;
}
