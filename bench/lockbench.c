/* SPDX-License-Identifier: MIT */
/*
 * lockbench - the shset futex lock against the locks a C programmer would
 * otherwise put in shared memory, measured side by side in one run.
 *
 * Each figure is the median of several runs, given with its minimum and
 * maximum: the runs are interleaved across the locks, so a noisy moment of
 * the machine falls on all of them.  The ratio is shset's advantage over the
 * row (above 1x shset is ahead), as in setbench.  Processes are forked; the
 * locks live in one MAP_SHARED memfd.
 *
 * --only LOCK (repeatable), --procs N, --duration S and --contended-only narrow a run,
 * for profiling one configuration (perf stat, strace -c -f);
 * LOCKBENCH_COUNTERS=1 prints the shset lock's counters after each run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shset/lock.h"

enum { L_SHSET, L_PTHREAD, L_ROBUST, L_SPIN, L_SEM, L_OFD, NLOCKS };
static const char *lock_name[NLOCKS] = {"shset futex",	    "pthread mutex",   "pthread robust",
					"pthread spinlock", "posix semaphore", "ofd fcntl lock"};

#define MAX_PROCS 8
#define MAX_RUNS  15
#define HIST_NS	  (1 << 20) /* latency histogram: 1 ns buckets up to ~1 ms */

struct shared {
	struct shset_lease_slot slots[64];
	shset_lock slock;
	pthread_mutex_t mutex, robust;
	pthread_spinlock_t spin;
	sem_t sem;
	volatile uint64_t counter;
	volatile int go, stop;
	volatile int turn, waiting;
	volatile uint64_t t_release;
	uint64_t ops[MAX_PROCS];
};

static struct shared *S;
static int area_fd, ofd_file;
static shset_lease *lease;
static double duration = 1.0;
static uint64_t uncontended_iters = 5000000;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ofd_lock(int fd, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0 && errno == EINTR)
		;
}

/* The per-process OFD descriptor: the lock is per open file description. */
static int my_ofd = -1;

static inline void lock(int which)
{
	switch (which) {
	case L_SHSET:
		if (shset_lock_acquire(&S->slock, lease) == SHSET_LOCK_OWNER_DIED)
			shset_lock_consistent(&S->slock, lease);
		break;
	case L_PTHREAD:
		pthread_mutex_lock(&S->mutex);
		break;
	case L_ROBUST:
		if (pthread_mutex_lock(&S->robust) == EOWNERDEAD)
			pthread_mutex_consistent(&S->robust);
		break;
	case L_SPIN:
		pthread_spin_lock(&S->spin);
		break;
	case L_SEM:
		while (sem_wait(&S->sem) < 0 && errno == EINTR)
			;
		break;
	case L_OFD:
		ofd_lock(my_ofd, F_WRLCK);
		break;
	}
}

static inline void unlock(int which)
{
	switch (which) {
	case L_SHSET:
		shset_lock_release(&S->slock, lease);
		break;
	case L_PTHREAD:
		pthread_mutex_unlock(&S->mutex);
		break;
	case L_ROBUST:
		pthread_mutex_unlock(&S->robust);
		break;
	case L_SPIN:
		pthread_spin_unlock(&S->spin);
		break;
	case L_SEM:
		sem_post(&S->sem);
		break;
	case L_OFD:
		ofd_lock(my_ofd, F_UNLCK);
		break;
	}
}

static void init_locks(void)
{
	pthread_mutexattr_t a;

	memset(S, 0, sizeof(*S));
	shset_lock_init(&S->slock);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&S->mutex, &a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&S->robust, &a);
	pthread_mutexattr_destroy(&a);
	pthread_spin_init(&S->spin, PTHREAD_PROCESS_SHARED);
	sem_init(&S->sem, 1, 1);
}

/* Per-process setup after fork: a lease and an OFD description of its own. */
static void attach_process(void)
{
	char path[64];
	if (lease)
		shset_lease_close(lease);
	if (shset_lease_open(&lease, area_fd, S->slots, 64))
		_exit(90);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", ofd_file);
	if (my_ofd >= 0)
		close(my_ofd);
	my_ofd = open(path, O_RDWR | O_CLOEXEC);
}

/* --- uncontended ------------------------------------------------------------------ */

static double bench_uncontended(int which)
{
	double best = 1e9;
	for (int rep = 0; rep < 3; rep++) {
		uint64_t n = which == L_OFD ? uncontended_iters / 20 : uncontended_iters;
		uint64_t t0 = now_ns();
		for (uint64_t i = 0; i < n; i++) {
			lock(which);
			S->counter++;
			unlock(which);
		}
		double ns = (double)(now_ns() - t0) / (double)n;
		if (ns < best)
			best = ns;
	}
	return best;
}

/* --- contended ------------------------------------------------------------------- */

struct lat {
	uint64_t n, hist[64]; /* log2 buckets of 1/4 octave */
};

static int lat_bucket(uint64_t ns)
{
	int b = 0;
	while (b < 63 && ns >= (1ull << (b / 4)) + ((1ull << (b / 4)) * (uint64_t)(b % 4)) / 4)
		b++;
	return b;
}

static uint64_t bucket_ns(int b)
{
	return (1ull << (b / 4)) + ((1ull << (b / 4)) * (uint64_t)(b % 4)) / 4;
}

static uint64_t lat_pct(const uint64_t *h, uint64_t n, double p)
{
	uint64_t want = (uint64_t)(p * (double)n), acc = 0;
	for (int b = 0; b < 64; b++) {
		acc += h[b];
		if (acc > want)
			return bucket_ns(b);
	}
	return bucket_ns(63);
}

struct contended {
	double mops;		 /* million acquisitions per second, all processes */
	uint64_t p50, p99, p999; /* acquisition latency, ns */
};

static struct contended bench_contended(int which, int procs)
{
	int pp[2];
	pid_t pid[MAX_PROCS];
	struct contended r = {0};
	uint64_t hist[64] = {0}, n = 0;

	if (pipe(pp))
		exit(1);
	S->go = 0;
	S->stop = 0;
	S->counter = 0;
	for (int p = 0; p < procs; p++) {
		pid[p] = fork();
		if (pid[p] == 0) {
			struct lat L = {0};
			uint64_t ops = 0;
			attach_process();
			while (!S->go)
				;
			while (!S->stop) {
				int sample = (ops & 15) == 0;
				uint64_t t0 = sample ? now_ns() : 0;
				lock(which);
				if (sample) {
					L.hist[lat_bucket(now_ns() - t0)]++;
					L.n++;
				}
				/* A short critical section. */
				S->counter++;
				S->counter++;
				unlock(which);
				ops++;
			}
			S->ops[p] = ops;
			if (write(pp[1], &L, sizeof(L)) != sizeof(L))
				_exit(1);
			_exit(0);
		}
	}
	usleep(20000);
	uint64_t t0 = now_ns();
	S->go = 1;
	usleep((useconds_t)(duration * 1e6));
	S->stop = 1;
	uint64_t total = 0;
	for (int p = 0; p < procs; p++) {
		struct lat L;
		if (read(pp[0], &L, sizeof(L)) != sizeof(L))
			exit(1);
		for (int b = 0; b < 64; b++)
			hist[b] += L.hist[b];
		n += L.n;
	}
	uint64_t t1 = now_ns();
	for (int p = 0; p < procs; p++) {
		waitpid(pid[p], NULL, 0);
		total += S->ops[p];
	}
	close(pp[0]);
	close(pp[1]);
	r.mops = (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
	if (which == L_SHSET && getenv("LOCKBENCH_COUNTERS")) {
		struct shset_lock_state st;
		static struct shset_lock_state last;
		shset_lock_state(&S->slock, &st);
		fprintf(stderr,
			"shset %d procs: %.1f Mops/s, %llu acquisitions, %llu contended, "
			"%llu futex waits\n",
			procs, r.mops, (unsigned long long)(st.acquisitions - last.acquisitions),
			(unsigned long long)(st.contended - last.contended),
			(unsigned long long)(st.futex_waits - last.futex_waits));
		last = st;
	}
	r.p50 = lat_pct(hist, n, 0.50);
	r.p99 = lat_pct(hist, n, 0.99);
	r.p999 = lat_pct(hist, n, 0.999);
	return r;
}

/* --- handoff ------------------------------------------------------------------------ */

/* Two processes take turns: the holder waits until the other is inside
 * lock(), stamps the time and releases; the other stamps on acquiring.
 * The difference is the handoff latency. */
static struct contended bench_handoff(int which, int rounds)
{
	pid_t pid[2];
	int pp[2];
	uint64_t hist[64] = {0}, n = 0;

	if (pipe(pp))
		exit(1);
	S->turn = 0;
	S->waiting = 0;
	S->go = 0;
	for (int me = 0; me < 2; me++) {
		pid[me] = fork();
		if (pid[me] == 0) {
			struct lat L = {0};
			attach_process();
			while (!S->go)
				;
			for (int r = 0; r < rounds; r++) {
				if (S->turn == me) {
					lock(which);
					/* Let the other enter lock() and start waiting. */
					while (S->waiting != r + 1)
						;
					uint64_t t = now_ns() + 2000;
					while (now_ns() < t)
						;
					S->turn = !me;
					S->t_release = now_ns();
					unlock(which);
				} else {
					while (S->turn == me)
						;
					/* The other holds it now (or is about to). */
					S->waiting = r + 1;
					lock(which);
					uint64_t d = now_ns() - S->t_release;
					L.hist[lat_bucket(d)]++;
					L.n++;
					unlock(which);
					while (S->turn != me)
						;
				}
			}
			if (write(pp[1], &L, sizeof(L)) != sizeof(L))
				_exit(1);
			_exit(0);
		}
	}
	S->go = 1;
	for (int me = 0; me < 2; me++) {
		struct lat L;
		if (read(pp[0], &L, sizeof(L)) != sizeof(L))
			exit(1);
		for (int b = 0; b < 64; b++)
			hist[b] += L.hist[b];
		n += L.n;
	}
	waitpid(pid[0], NULL, 0);
	waitpid(pid[1], NULL, 0);
	close(pp[0]);
	close(pp[1]);
	struct contended r = {0};
	r.p50 = lat_pct(hist, n, 0.50);
	r.p99 = lat_pct(hist, n, 0.99);
	r.p999 = lat_pct(hist, n, 0.999);
	return r;
}

/* --- output -------------------------------------------------------------------------- */

/*
 * Ratios read the same way here and in setbench: shset's advantage over the
 * row, its throughput over the row's or the row's time over its own, so
 * above 1x shset is ahead.  Three significant digits: a ratio far below one
 * never prints as 0.00x.
 */
static void fmt_ratio(char *buf, size_t n, double r)
{
	if (r <= 0)
		snprintf(buf, n, "-");
	else if (r >= 100)
		snprintf(buf, n, "%.0fx", r);
	else if (r >= 10)
		snprintf(buf, n, "%.1fx", r);
	else if (r >= 0.1)
		snprintf(buf, n, "%.2fx", r);
	else
		snprintf(buf, n, "%.3gx", r);
}

static FILE *csv;
static int use_shset = 1; /* without it (--only), no ratios */

/* The spread of one figure over the runs. */
struct spread {
	double med, min, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static struct spread spread_of(const double *v, int n)
{
	double s[MAX_RUNS];

	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	/* The median of an even count is the lower middle: a sample, not a
	 * mean of two. */
	return (struct spread){s[(n - 1) / 2], s[0], s[n - 1]};
}

/* @shset is the same figure for the shset lock; @higher_better says which
 * way the figure reads (throughput) or not (times). */
static double row(const char *test, int which, const char *metric, struct spread v,
		  struct spread shset, int higher_better, int runs)
{
	char range[48], rs[16];
	double ratio = 0;

	if (v.med > 0 && shset.med > 0 && use_shset)
		ratio = higher_better ? shset.med / v.med : v.med / shset.med;
	fmt_ratio(rs, sizeof(rs), ratio);
	if (runs > 1)
		snprintf(range, sizeof(range), "%.1f-%.1f", v.min, v.max);
	else
		snprintf(range, sizeof(range), "-");
	printf("  %-19s %-17s %-9s %10.1f  %-19s %8s\n", test, lock_name[which], metric, v.med,
	       range, rs);
	if (csv)
		fprintf(csv, "%s,%s,%s,%.3f,%.3f,%.3f,%.4f\n", test, lock_name[which], metric,
			v.med, v.min, v.max, ratio);
	return ratio;
}

static int parse_lock(const char *name)
{
	for (int l = 0; l < NLOCKS; l++)
		if (strstr(lock_name[l], name))
			return l;
	return -1;
}

/* Goals checked in every run (README "Goals"); the process counts tested. */
#define NPROCS 3
static int procs_list[NPROCS] = {2, 4, 8};

int main(int argc, char **argv)
{
	int quick = 0, runs = 5, only = 0, only_procs = 0, skip_uncontended = 0;
	const char *csv_path = NULL;
	double dur = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv_path = argv[++i];
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			dur = atof(argv[++i]);
		else if (!strcmp(argv[i], "--procs") && i + 1 < argc)
			only_procs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--contended-only"))
			skip_uncontended = 1;
		else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			int l = parse_lock(argv[++i]);
			if (l < 0) {
				fprintf(stderr, "lockbench: no lock named like %s\n", argv[i]);
				return 2;
			}
			only |= 1 << l;
		} else {
			fprintf(stderr, "usage: lockbench [--quick] [--csv FILE] [--runs N] "
					"[--duration S] [--procs N] [--only LOCK] "
					"[--contended-only]\n");
			return 2;
		}
	}
	if (runs < 1 || runs > MAX_RUNS || only_procs < 0 || only_procs > MAX_PROCS) {
		fprintf(stderr, "lockbench: --runs 1..%d, --procs 1..%d\n", MAX_RUNS, MAX_PROCS);
		return 2;
	}
	if (quick) {
		duration = 0.2;
		uncontended_iters = 2000000;
	}
	if (dur > 0)
		duration = dur;
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv) {
			perror(csv_path);
			return 1;
		}
		fprintf(csv, "test,lock,metric,median,min,max,shset_advantage\n");
	}
	area_fd = memfd_create("lockbench", MFD_CLOEXEC);
	ofd_file = memfd_create("lockbench-ofd", MFD_CLOEXEC);
	if (area_fd < 0 || ftruncate(area_fd, sizeof(struct shared)) < 0 ||
	    ftruncate(ofd_file, 4096) < 0)
		return 1;
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED, area_fd, 0);
	if (S == MAP_FAILED)
		return 1;
	init_locks();
	attach_process();

	printf("lockbench (%s): %ld cpus; each figure the median of %d runs (interleaved across "
	       "locks) with min-max;\nratio = shset's advantage over the row: shset's throughput / "
	       "the row's, or the row's time / shset's (above 1x shset is ahead)\n\n",
	       quick ? "quick" : "full", sysconf(_SC_NPROCESSORS_ONLN), runs);
	printf("  %-19s %-17s %-9s %10s  %-19s %8s\n", "test", "lock", "metric", "median",
	       "min-max", "ratio");

	int use[NLOCKS];
	for (int l = 0; l < NLOCKS; l++)
		use[l] = !only || (only & (1 << l));
	use_shset = use[L_SHSET];
	double v[NLOCKS][4][MAX_RUNS];
	struct spread sp[NLOCKS][4] = {0};
	double goal_tp[NPROCS] = {0}, goal_p99[NPROCS] = {0}, goal_unc = 0, goal_unc_rob = 0,
	       goal_hand = 0;

	if (!skip_uncontended) {
		for (int r = 0; r < runs; r++)
			for (int l = 0; l < NLOCKS; l++)
				if (use[l])
					v[l][0][r] = bench_uncontended(l);
		for (int l = 0; l < NLOCKS; l++)
			if (use[l])
				sp[l][0] = spread_of(v[l][0], runs);
		for (int l = 0; l < NLOCKS; l++) {
			if (!use[l])
				continue;
			double ra =
			    row("uncontended", l, "ns/op", sp[l][0], sp[L_SHSET][0], 0, runs);
			if (l == L_PTHREAD)
				goal_unc = ra;
			if (l == L_ROBUST)
				goal_unc_rob = ra;
		}
		puts("");
	}
	for (int pi = 0; pi < NPROCS; pi++) {
		int np = procs_list[pi];
		char test[32];

		if (only_procs && pi > 0)
			break;
		if (only_procs)
			np = only_procs;
		snprintf(test, sizeof(test), "contended %d procs", np);
		for (int r = 0; r < runs; r++) {
			for (int l = 0; l < NLOCKS; l++) {
				if (!use[l] || (l == L_OFD && np > 2 && quick))
					continue;
				struct contended c = bench_contended(l, np);
				v[l][0][r] = c.mops;
				v[l][1][r] = (double)c.p50;
				v[l][2][r] = (double)c.p99;
				v[l][3][r] = (double)c.p999;
			}
		}
		for (int l = 0; l < NLOCKS; l++) {
			if (!use[l] || (l == L_OFD && np > 2 && quick))
				continue;
			for (int m = 0; m < 4; m++)
				sp[l][m] = spread_of(v[l][m], runs);
		}
		for (int l = 0; l < NLOCKS; l++) {
			if (!use[l] || (l == L_OFD && np > 2 && quick))
				continue;
			double tp = row(test, l, "Mops/s", sp[l][0], sp[L_SHSET][0], 1, runs);
			row(test, l, "p50 ns", sp[l][1], sp[L_SHSET][1], 0, runs);
			double p99 = row(test, l, "p99 ns", sp[l][2], sp[L_SHSET][2], 0, runs);
			row(test, l, "p99.9 ns", sp[l][3], sp[L_SHSET][3], 0, runs);
			if (l == L_PTHREAD) {
				goal_tp[pi] = tp;
				goal_p99[pi] = p99;
			}
		}
		puts("");
	}
	if (!skip_uncontended && (!only_procs || only_procs == 2)) {
		int rounds = quick ? 2000 : 10000;
		for (int r = 0; r < runs; r++) {
			for (int l = 0; l < NLOCKS; l++) {
				if (!use[l])
					continue;
				struct contended h = bench_handoff(l, rounds);
				v[l][1][r] = (double)h.p50;
				v[l][2][r] = (double)h.p99;
			}
		}
		for (int l = 0; l < NLOCKS; l++) {
			if (!use[l])
				continue;
			sp[l][1] = spread_of(v[l][1], runs);
			sp[l][2] = spread_of(v[l][2], runs);
		}
		for (int l = 0; l < NLOCKS; l++) {
			if (!use[l])
				continue;
			row("handoff 2 procs", l, "p50 ns", sp[l][1], sp[L_SHSET][1], 0, runs);
			row("handoff 2 procs", l, "p99 ns", sp[l][2], sp[L_SHSET][2], 0, runs);
		}
		goal_hand = sp[L_SHSET][1].med;
	}
	if (use[L_PTHREAD] && use[L_ROBUST] && !skip_uncontended && !only_procs) {
		char a[16], b[16];
		/* The goals as the README states them: shset over pthread. */
		printf("\n  goals (shset against the pthread mutex, medians):\n");
		for (int pi = 0; pi < NPROCS; pi++) {
			fmt_ratio(a, sizeof(a), goal_tp[pi]);
			fmt_ratio(b, sizeof(b), goal_p99[pi]);
			printf("    %d procs: throughput %s (>= 1.2x: %s), p99 %s as fast "
			       "(>= 1x: %s)\n",
			       procs_list[pi], a, goal_tp[pi] >= 1.2 ? "met" : "MISSED", b,
			       goal_p99[pi] >= 1.0 ? "met" : "MISSED");
		}
		fmt_ratio(a, sizeof(a), goal_unc > 0 ? 1 / goal_unc : 0);
		fmt_ratio(b, sizeof(b), goal_unc_rob > 0 ? 1 / goal_unc_rob : 0);
		printf("    uncontended: %s the pthread mutex's time (<= 1.0x: %s), %s the robust "
		       "one's (<= 0.8x: %s)\n",
		       a, goal_unc >= 1.0 ? "met" : "MISSED", b,
		       goal_unc_rob >= 1.25 ? "met" : "MISSED");
		printf("    handoff p50: %.0f ns (<= 300 ns: %s)\n", goal_hand,
		       goal_hand <= 300 ? "met" : "MISSED");
	}
	if (csv)
		fclose(csv);
	return 0;
}
