/* SPDX-License-Identifier: MIT */
/*
 * growbench - how shset behaves while it grows, with more than one writer,
 * when loaded in bulk, when emptied, and what one add costs:
 *
 *   1. growth      one writer process adds distinct 16-byte keys to a set
 *                  created empty while one reader process loops
 *                  shset_contains (half keys already added, half absent);
 *                  latency percentiles and max of both; then the
 *                  machine's floors: ops that only compute, and ops of one
 *                  random access into memory the table's size
 *   2. scaling     1, 2 and 4 writer processes adding their own keys into a
 *                  presized set and into one growing from empty; then as
 *                  many processes that only chase through memory (floor)
 *   3. bulk load   shset_load of a snapshot against shset_copy of the set
 *   4. memory      the memfd's allocated blocks after removing every key one
 *                  by one and after shset_clear; bytes per key
 *   5. add cost    one add into a half-full presized table against one
 *                  dependent random access into private memory of the
 *                  table's size
 *
 * Every goal is an absolute latency or a ratio against a baseline measured
 * in the same run; each is printed with its value and "met" or "missed".
 * Processes are forked and use the parent's handle, as include/shset.h
 * allows (each takes its own process slot on its first operation).
 *
 * Preemption.  On a small machine a process is often switched out in the
 * middle of an operation, which then lasts a scheduler time slice: that is
 * the scheduler's latency, not the library's.  Each timed process reads
 * getrusage(RUSAGE_THREAD) and its thread CPU clock after every operation,
 * outside the timed interval (about 1 us together: it slows the loops, not
 * the operations).  An operation across which ru_nivcsw (involuntary
 * context switches) rose counts as preempted.  The window between two
 * readings is the operation plus a few hundred nanoseconds of loop, so a
 * switch in that margin is blamed on the operation too.  Leaving preempted
 * operations out would hide exactly the long ones (the longer an operation,
 * the likelier it is preempted), so each latency is given three ways: all
 * operations; preempted ones left out; and every operation with a
 * preempted one timed by the CPU time its thread spent across it (the time
 * switched out removed, the loop's margin added).  The goals use the last,
 * which is never below the second.  An operation that was preempted and
 * also slept (ru_nvcsw rose: it may have waited for the lock) keeps its
 * full time.  Time the hypervisor takes from the virtual CPU (steal) is
 * not seen by ru_nivcsw; the run prints how much there was.
 *
 * The writer's preemption.  A lookup also waits while the writer is off
 * its CPU inside a transaction: up to 200 us for the sequence to turn
 * even, then for the lock the writer holds.  Its own counters cannot see
 * that, so the writer records, in a bounded shared array and outside its
 * timed interval, the [start, end] and thread CPU time of each add
 * across which it was preempted, or whose wall time exceeds its CPU time
 * by over 20 us with no context switch (steal, which the task clock
 * leaves out under paravirt steal accounting); the reader records its
 * ops over 50 us in a private one.  After the run the reader times each
 * of those as its wall time less, for every recorded add it overlaps,
 * the part of the overlap beyond that add's CPU time: the least time the
 * writer was surely switched out (classify()).  The lookup goal uses the
 * smaller of that and the reader's own figure, which also leaves out its
 * time stolen (told as the writer's) and waiting on the run queue (read
 * from /proc/thread-self/schedstat after every op).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "set.h"
#include "shset.h"
#include "spread.h"

#define KEY_LEN	    16
#define MAX_WRITERS 4
#define MAX_RUNS    5
#define SLOW_NS	    100000 /* an operation over 100 us is "slow" */
#define OFF_NS	    20000  /* CPU time this far short of the wall time */
#define ABSENT_WHO  0xffffffffu
#define GIB	    (1ull << 30)

static int quick;
static FILE *csv;
static char tmpdir[64];

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "growbench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* Key @i of writer @who: 8 bytes of i, 4 of who, then a fixed filler.
 * Writers never share a key; ABSENT_WHO's keys are never added. */
static void make_key(uint32_t who, uint64_t i, size_t len, uint8_t *k)
{
	memset(k, 'x', len);
	memcpy(k, &i, 8);
	memcpy(k + 8, &who, 4);
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static shset *new_set(uint64_t capacity)
{
	struct shset_opts o = {.capacity = capacity, .max_bytes = 4 * GIB};
	shset *s;
	int err = shset_create(&s, &o);
	if (err)
		die("shset_create", err);
	return s;
}

/* Adds keys [from, to) of writer @who; exits on any failure. */
static void fill(shset *s, uint32_t who, uint64_t from, uint64_t to, size_t len)
{
	uint8_t k[64];
	for (uint64_t i = from; i < to; i++) {
		make_key(who, i, len, k);
		int r = shset_add(s, k, len);
		if (r != 1)
			die("shset_add", r < 0 ? r : EEXIST);
	}
}

/* Bytes the memfd's pages take (what the kernel allocated for it), once
 * the filler thread has faulted in what the last writes handed it: the
 * same figure whenever it is read. */
static uint64_t file_blocks_bytes(shset *s)
{
	struct stat st;
	set_filler_settle(s);
	if (fstat(shset_fd(s), &st) < 0)
		die("fstat", errno);
	return (uint64_t)st.st_blocks * 512;
}

static void csv_row(const char *section, const char *name, const char *unit, double value,
		    const struct spread *sp, const char *goal)
{
	if (!csv)
		return;
	/* Quoted: metric names may hold commas (none holds a quote). */
	fprintf(csv, "%s,\"%s\",%s,%.4f,", section, name, unit, value);
	if (sp)
		fprintf(csv, "%.4f,%.4f", sp->min, sp->max);
	else
		fprintf(csv, ",");
	fprintf(csv, ",%s\n", goal ? goal : "");
}

/* --- goals ---------------------------------------------------------------------- */

#define MAX_GOALS 16
static struct {
	char line[160];
	int met;
} goals[MAX_GOALS];
static int ngoals;

/* Prints and records one goal: @value against @limit, "<=" when @at_most,
 * else ">=" (or "<" for a strict bound when @strict). */
static void goal(const char *section, const char *what, double value, const char *unit,
		 double limit, int at_most, int strict)
{
	int met = at_most ? (strict ? value < limit : value <= limit)
			  : (strict ? value > limit : value >= limit);
	const char *op = at_most ? (strict ? "<" : "<=") : (strict ? ">" : ">=");
	char line[160];
	snprintf(line, sizeof(line), "%-48s %10.3g %-5s (goal %s %g): %s", what, value, unit, op,
		 limit, met ? "met" : "missed");
	printf("  goal: %s\n", line);
	if (ngoals < MAX_GOALS) {
		snprintf(goals[ngoals].line, sizeof(goals[ngoals].line), "%s", line);
		goals[ngoals++].met = met;
	}
	csv_row(section, what, unit, value, NULL, met ? "met" : "missed");
}

/* --- latency histogram -------------------------------------------------------------- */

/*
 * Log-linear: exact below 64 ns, then 64 buckets per power of two, so a
 * percentile is within 1/64 (1.6%) of the truth; it is reported as its
 * bucket's upper end (never below the truth) and capped by the exact max.
 */
#define HIST_SUB_BITS 6
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

struct hist {
	uint64_t n, max;
	uint64_t b[HIST_BUCKETS];
};

static inline unsigned hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	return (e - HIST_SUB_BITS + 1) * HIST_SUB +
	       (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

static uint64_t hist_upper(unsigned idx)
{
	if (idx < HIST_SUB)
		return idx;
	unsigned e = idx / HIST_SUB + HIST_SUB_BITS - 1, sub = idx % HIST_SUB;
	uint64_t lo = (uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS);
	return lo + (1ull << (e - HIST_SUB_BITS)) - 1;
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->n++;
	h->b[hist_index(v)]++;
	if (v > h->max)
		h->max = v;
}

/* How many recorded values certainly exceed @ns: those in buckets whose
 * lowest value does (within 1.6% of @ns). */
static uint64_t hist_over(const struct hist *h, uint64_t ns)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if ((i ? hist_upper(i - 1) + 1 : 0) > ns)
			n += h->b[i];
	return n;
}

/* The smallest recorded value v with at least @q of all values <= v. */
static uint64_t hist_pct(const struct hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t u = hist_upper(i);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* One process's record of its timed operations. */
struct lat {
	struct hist all;	       /* every operation, wall time */
	struct hist calm;	       /* those during which the process was not preempted */
	struct hist adj;	       /* every operation, a preempted one by its CPU time */
	uint64_t preempted;	       /* operations during which ru_nivcsw rose */
	uint64_t slept;		       /* ... during which ru_nvcsw rose (blocked in the kernel) */
	uint64_t preempted_slept;      /* both: kept at their wall time in adj */
	uint64_t slow, slow_preempted; /* over SLOW_NS, and of those preempted */
};

/* The calling thread's counters, read after each operation (outside its
 * timed interval); two readings bracket one operation. */
struct sample {
	long inv, vol;	 /* ru_nivcsw, ru_nvcsw */
	uint64_t cpu_ns; /* CLOCK_THREAD_CPUTIME_ID */
};

static inline struct sample sample_now(void)
{
	struct timespec ts;
	struct rusage ru;
	/* getrusage's own CPU times are only as fresh as the last tick;
	 * the thread CPU clock is exact. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	getrusage(RUSAGE_THREAD, &ru);
	return (struct sample){ru.ru_nivcsw, ru.ru_nvcsw,
			       (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec};
}

/*
 * The reader's run-queue wait: the second field of
 * /proc/thread-self/schedstat (ns the thread was runnable but not
 * running: after a preemption, and after a wake-up until it got a CPU),
 * with the wall clock read before and after, so that the window between
 * two readings is bounded.  About 1.5 us, outside the timed interval.
 */
static int rq_fd = -1;

struct rq_sample {
	uint64_t wait_ns, before, after;
};

static inline struct rq_sample rq_now(void)
{
	struct rq_sample q = {0, now_ns(), 0};
	char b[128];
	ssize_t n = rq_fd >= 0 ? pread(rq_fd, b, sizeof(b) - 1, 0) : -1;
	if (n > 0) {
		const char *p = b, *end = b + n;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		while (p < end && *p == ' ')
			p++;
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			q.wait_ns = q.wait_ns * 10 + (uint64_t)(*p - '0');
	}
	q.after = now_ns();
	return q;
}

/*
 * Records an operation of @ns wall time bracketed by @prev and @cur and
 * returns the time it is given in adj.  A
 * preempted one is timed in adj by the CPU time its thread spent between
 * the readings (never more than its wall time): the time switched out is
 * removed and the few hundred ns of loop around the operation are added,
 * so a long operation that also got preempted is not hidden, as excluding
 * it would.  One stolen by the hypervisor (no switch, yet its CPU time
 * falls short of its wall time by more than OFF_NS: with paravirt steal
 * accounting the thread CPU clock leaves stolen time out) is timed the
 * same way.  One that also slept keeps its wall time: its sleep may be a
 * real wait (for the lock) that CPU time would drop.
 */
static inline uint64_t lat_add(struct lat *l, uint64_t ns, const struct sample *prev,
			       const struct sample *cur)
{
	int preempted = cur->inv != prev->inv, slept = cur->vol != prev->vol;
	uint64_t cpu = cur->cpu_ns - prev->cpu_ns;
	int stolen = !preempted && !slept && ns > cpu + OFF_NS;
	uint64_t adj = (preempted || stolen) && !slept && cpu < ns ? cpu : ns;

	hist_add(&l->all, ns);
	if (!preempted)
		hist_add(&l->calm, ns);
	hist_add(&l->adj, adj);
	l->preempted += (uint64_t)preempted;
	l->slept += (uint64_t)slept;
	l->preempted_slept += (uint64_t)(preempted && slept);
	if (ns > SLOW_NS) {
		l->slow++;
		l->slow_preempted += (uint64_t)preempted;
	}
	return adj;
}

/* Steal time of all CPUs so far, in ms (/proc/stat, USER_HZ ticks). */
static double steal_ms(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = {0};
	if (!f)
		return 0;
	int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			 &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	return got == 8 ? (double)v[7] * 1000.0 / (double)sysconf(_SC_CLK_TCK) : 0;
}

/* --- shared state of the forked processes ------------------------------------------------ */

/* The reader's slow ops, classified after the run by whose preemption
 * they overlap (see classify()). */
struct rclass {
	struct hist wadj;    /* every op, waits on an off-CPU writer taken away */
	struct hist both;    /* every op, the smaller of that and its own figure */
	uint64_t slow, lost; /* ops over REC_SLOW_NS; of those, not recorded */
	/* Recorded slow ops by cause: off its CPU itself only, waited on an
	 * off-CPU writer only, both, neither. */
	uint64_t own, writer, own_writer, neither;
	uint64_t own_stolen, own_queued; /* of all: stolen; waited on the run queue */
	uint64_t overlap_kept;		 /* of neither: overlapped a recorded add */
	uint64_t neither_max;		 /* the longest of neither */
	uint64_t worst, worst_dur; /* the longest op left in both, its wall (0: not recorded) */
	int worst_own, worst_writer, worst_slept; /* ... and what it was told */
	int rq_seen;				  /* the reader could read its run-queue wait */
	uint64_t w_preempted, w_stolen, w_slept, w_lost; /* the writer's record */
};

struct shared {
	int ready, go, stop;		   /* __atomic */
	uint64_t progress;		   /* keys the writer has added (__atomic) */
	uint64_t t_go, t_end[MAX_WRITERS]; /* CLOCK_MONOTONIC ns */
	uint64_t wrong[2], ops[2];	   /* writer, reader */
	struct lat lat[2];		   /* writer, reader */
	struct lat hold;		   /* the writer's lock holds */
	struct rclass rc;		   /* the reader's, after the run */
};

static struct shared *S;
static struct lat my_lat;  /* private: the timed loop never allocates */
static struct lat my_hold; /* the growth writer's lock holds, likewise */

/*
 * The writer's adds during which it was off its CPU, in time order:
 * written by the writer only, read by the reader once the writer has
 * exited.  Its own mapping, populated up front, so that recording never
 * faults a page in.
 */
#define REC_MAX	    (1u << 16) /* intervals each process records */
#define REC_SLOW_NS 50000      /* the reader records its ops over 50 us */

enum { WOFF_PREEMPTED = 1, WOFF_STOLEN = 2 };

struct woff {
	uint64_t t0, t1; /* CLOCK_MONOTONIC ns around the add */
	uint64_t cpu;	 /* thread CPU time between the readings bracketing it */
	uint64_t kind;	 /* WOFF_* */
};

struct woff_count {
	uint64_t n;		    /* adds recorded, or that would have been (n > REC_MAX) */
	uint64_t preempted, stolen; /* of n, by kind */
	uint64_t slept;		    /* off-CPU adds not recorded because they also slept */
};

struct woff_log {
	struct woff_count c; /* written once the writer is done */
	struct woff r[REC_MAX];
};

static struct woff_log *W;
static struct woff_count my_woff; /* the writer's counts; entries go to W->r */

/*
 * Called by the writer after each add, outside its timed interval: an add
 * across which ru_nivcsw rose (preempted), or whose wall time exceeds the
 * thread's CPU time between the readings by over OFF_NS with no context
 * switch at all (stolen: with paravirt steal accounting, as on KVM, the
 * kernel's task clock leaves out time the hypervisor ran something else
 * on the vCPU; without it no add is told this way), is recorded with that
 * CPU time.  One that also slept (ru_nvcsw rose) is only counted: its
 * sleep may be a wait the library caused, so nothing is removed for it.
 */
static inline void woff_note(uint64_t t0, uint64_t t1, const struct sample *prev,
			     const struct sample *cur)
{
	uint64_t cpu = cur->cpu_ns - prev->cpu_ns;
	int preempted = cur->inv != prev->inv, slept = cur->vol != prev->vol;
	int off = t1 - t0 > cpu + OFF_NS;

	if (!preempted && !off)
		return;
	if (slept) {
		my_woff.slept++;
		return;
	}
	if (my_woff.n < REC_MAX)
		W->r[my_woff.n] =
		    (struct woff){t0, t1, cpu, preempted ? WOFF_PREEMPTED : WOFF_STOLEN};
	my_woff.n++;
	my_woff.preempted += (uint64_t)preempted;
	my_woff.stolen += (uint64_t)!preempted;
}

/* The reader's ops over REC_SLOW_NS, in time order (private). */
struct slow_op {
	uint64_t t0, t1; /* CLOCK_MONOTONIC ns around the op */
	uint64_t own;	 /* its time with its own preemption removed (adj) */
	uint64_t self;	 /* least of own, CPU time if stolen, wall less run-queue wait */
	int preempted, slept, stolen, queued;
};

static struct slow_op slow_ops[REC_MAX];
static uint64_t nslow, unrec_max_all, unrec_max_own; /* max of the ops not recorded */

static inline void slow_note(uint64_t t0, uint64_t t1, uint64_t own, const struct sample *prev,
			     const struct sample *cur, const struct rq_sample *qprev,
			     const struct rq_sample *qcur)
{
	uint64_t ns = t1 - t0, cpu = cur->cpu_ns - prev->cpu_ns;
	if (ns > REC_SLOW_NS && nslow < REC_MAX) {
		int preempted = cur->inv != prev->inv, slept = cur->vol != prev->vol;
		/* No switch, yet CPU time well short of the wall time: stolen,
		 * told as the writer's adds are (woff_note()). */
		int stolen = !preempted && !slept && ns > cpu + OFF_NS;
		/* Run-queue wait between the readings, less all of the window
		 * outside the op, in case the wait fell there. */
		uint64_t rq = qcur->wait_ns - qprev->wait_ns,
			 margin = qcur->after - qprev->before - ns;
		uint64_t rq_in = rq > margin ? rq - margin : 0, self = own;
		if (stolen && cpu < self)
			self = cpu;
		if (rq_in > 0 && ns - (rq_in < ns ? rq_in : ns) < self)
			self = ns - (rq_in < ns ? rq_in : ns);
		slow_ops[nslow++] =
		    (struct slow_op){t0, t1, own, self, preempted, slept, stolen, rq_in > 0};
		return;
	}
	if (ns > REC_SLOW_NS)
		nslow++; /* lost: counted, kept at its own figures */
	if (ns > unrec_max_all)
		unrec_max_all = ns;
	if (own > unrec_max_own)
		unrec_max_own = own;
}

/* Moves one value of @h from @from to @to (max left to the caller). */
static void hist_move(struct hist *h, uint64_t from, uint64_t to)
{
	h->b[hist_index(from)]--;
	h->b[hist_index(to)]++;
}

/*
 * Run by the reader after the writer has exited.  A slow op overlapping
 * recorded writer adds is timed as its wall time less, for each such add,
 * the part of the overlap beyond the writer's CPU time across that add:
 * the writer cannot have been running for longer than its CPU time, so
 * at least that much of the overlap it was off its CPU, holding the lock
 * or the sequence odd if it was inside its transaction.  Only that lower
 * bound is removed, never time the writer might have spent running (a
 * long transaction stays the library's).  An op also off its CPU itself
 * (preempted, timed as in adj; stolen, timed by its CPU time; waiting on
 * the run queue, timed without that wait) is given the smaller of that
 * and its own figure, not both removals added, since the two processes
 * may have been off their CPUs at the same time.
 * Ops at or under REC_SLOW_NS, and any beyond REC_MAX, keep their figures.
 */
static void classify(const struct lat *l, struct rclass *c)
{
	uint64_t wn = W->c.n, nw = wn < REC_MAX ? wn : REC_MAX; /* read once, bounded */
	uint64_t nr = nslow < REC_MAX ? nslow : REC_MAX, j = 0;
	uint64_t max_w = unrec_max_all, max_b = unrec_max_own;

	c->wadj = l->all;
	c->both = l->adj;
	c->slow = nslow;
	c->lost = nslow - nr;
	c->worst = max_b;
	for (uint64_t i = 0; i < nr; i++) {
		const struct slow_op *o = &slow_ops[i];
		uint64_t dur = o->t1 - o->t0, rem = 0;
		int overlap = 0;
		while (j < nw && W->r[j].t1 <= o->t0)
			j++;
		for (uint64_t k = j; k < nw; k++) {
			struct woff w = W->r[k];
			if (w.t0 >= o->t1)
				break;
			uint64_t lo = w.t0 > o->t0 ? w.t0 : o->t0, hi = w.t1 < o->t1 ? w.t1 : o->t1;
			if (hi <= lo)
				continue;
			overlap = 1;
			if (hi - lo > w.cpu)
				rem += hi - lo - w.cpu;
		}
		if (rem > dur)
			rem = dur;
		uint64_t wv = dur - rem, bv = o->self < wv ? o->self : wv;
		int off = o->preempted || o->stolen || o->queued;
		hist_move(&c->wadj, dur, wv);
		hist_move(&c->both, o->own, bv);
		if (wv > max_w)
			max_w = wv;
		if (bv > max_b)
			max_b = bv;
		if (bv > c->worst || (bv == c->worst && !c->worst_dur)) {
			c->worst = bv;
			c->worst_dur = dur;
			c->worst_own = off;
			c->worst_writer = rem > 0;
			c->worst_slept = o->slept;
		}
		c->own += (uint64_t)(off && !rem);
		c->own_stolen += (uint64_t)o->stolen;
		c->own_queued += (uint64_t)o->queued;
		c->writer += (uint64_t)(!off && rem);
		c->own_writer += (uint64_t)(off && rem);
		c->neither += (uint64_t)(!off && !rem);
		c->overlap_kept += (uint64_t)(overlap && !off && !rem);
		if (!off && !rem && dur > c->neither_max)
			c->neither_max = dur;
	}
	c->wadj.max = max_w;
	c->both.max = max_b;
	c->w_preempted = W->c.preempted;
	c->w_stolen = W->c.stolen;
	c->w_slept = W->c.slept;
	c->w_lost = wn - nw;
}

static pid_t spawn(void (*fn)(shset *, int), shset *s, int arg)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		fn(s, arg);
		shset_close(s);
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid, const char *what)
{
	int st;
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "growbench: %s process failed\n", what);
		exit(1);
	}
}

/* Marks this process ready (after a first operation took its process
 * slot, so that is not timed) and waits for go. */
static void ready_and_wait(void)
{
	__atomic_add_fetch(&S->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&S->go, __ATOMIC_ACQUIRE))
		;
}

static void go_when_ready(int procs)
{
	while (__atomic_load_n(&S->ready, __ATOMIC_ACQUIRE) < procs)
		usleep(100);
	S->t_go = now_ns();
	__atomic_store_n(&S->go, 1, __ATOMIC_RELEASE);
}

static void reset_shared(void)
{
	memset(S, 0, sizeof(*S));
}

/* --- 1. growth with a concurrent reader ------------------------------------------------- */

static uint64_t growth_keys;

static void growth_writer(shset *s, int unused)
{
	uint8_t k[KEY_LEN];
	(void)unused;
	memset(&my_lat, 0, sizeof(my_lat));
	memset(&my_woff, 0, sizeof(my_woff));
	make_key(ABSENT_WHO, 0, KEY_LEN, k);
	if (shset_contains(s, k, KEY_LEN) < 0) /* takes this process's slot */
		_exit(1);
	memset(&my_hold, 0, sizeof(my_hold));
	set_time_holds(1);
	ready_and_wait();
	struct sample prev = sample_now();
	for (uint64_t i = 0; i < growth_keys; i++) {
		make_key(0, i, KEY_LEN, k);
		uint64_t t0 = now_ns();
		int r = shset_add(s, k, KEY_LEN);
		uint64_t t1 = now_ns();
		struct set_hold h;
		set_last_tx_hold(&h);
		struct sample cur = sample_now();
		lat_add(&my_lat, t1 - t0, &prev, &cur);
		/* The hold lies inside the add and is timed the same way.  A
		 * long one is classed by the counters the library read right
		 * after the release, so that a sleep or a preemption after it
		 * (faulting in the table, outside the lock) is not its own. */
		struct sample at_end =
		    h.long_hold ? (struct sample){h.nivcsw, h.nvcsw, h.cpu_ns} : cur;
		lat_add(&my_hold, h.ns, &prev, &at_end);
		woff_note(t0, t1, &prev, &cur);
		prev = cur;
		if (r != 1)
			S->wrong[0]++;
		if ((i & 255) == 255)
			__atomic_store_n(&S->progress, i + 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&S->progress, growth_keys, __ATOMIC_RELEASE);
	S->t_end[0] = now_ns();
	S->ops[0] = growth_keys;
	S->lat[0] = my_lat;
	S->hold = my_hold;
	W->c = my_woff;
}

static void growth_reader(shset *s, int unused)
{
	uint8_t k[KEY_LEN];
	uint64_t rng = 0x9e3779b97f4a7c15ull, ops = 0, wrong = 0;
	(void)unused;
	memset(&my_lat, 0, sizeof(my_lat));
	memset(slow_ops, 0, sizeof(slow_ops)); /* faults its pages in before the loop */
	nslow = unrec_max_all = unrec_max_own = 0;
	make_key(ABSENT_WHO, 0, KEY_LEN, k);
	if (shset_contains(s, k, KEY_LEN) < 0)
		_exit(1);
	rq_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	S->rc.rq_seen = rq_fd >= 0;
	ready_and_wait();
	struct sample prev = sample_now();
	struct rq_sample qprev = rq_now();
	while (!__atomic_load_n(&S->stop, __ATOMIC_ACQUIRE)) {
		uint64_t done = __atomic_load_n(&S->progress, __ATOMIC_ACQUIRE);
		for (int j = 0; j < 256; j++) {
			uint64_t x = xorshift(&rng);
			int present = (x & 1) && done;
			if (present)
				make_key(0, (x >> 1) % done, KEY_LEN, k);
			else
				make_key(ABSENT_WHO, x >> 1, KEY_LEN, k);
			uint64_t t0 = now_ns();
			int r = shset_contains(s, k, KEY_LEN);
			uint64_t t1 = now_ns();
			struct sample cur = sample_now();
			struct rq_sample qcur = rq_now();
			uint64_t own = lat_add(&my_lat, t1 - t0, &prev, &cur);
			slow_note(t0, t1, own, &prev, &cur, &qprev, &qcur);
			prev = cur;
			qprev = qcur;
			wrong += r != present;
		}
		ops += 256;
	}
	S->ops[1] = ops;
	S->wrong[1] = wrong;
	S->lat[1] = my_lat;
	classify(&my_lat, &S->rc); /* the writer has exited: its record is complete */
	if (rq_fd >= 0)
		close(rq_fd);
}

/*
 * The machine's floors: what timing alone gives an op that does nothing
 * but compute for as long as an add's median, and an op that is one
 * random read-modify-write of a word in a memfd the final table's size
 * (populated first, in 4 KiB pages as the set's), each in a process timed
 * exactly as the writer (growth_keys ops, so the same rank is p99.99),
 * while a second process spins on the other CPU as the reader did.
 * Interrupts, timer ticks and hypervisor exits that the preemption
 * counters do not see land in them as they land in an add, and the
 * second adds what the machine's memory does to one access (an add
 * writes at least one random slot).  References, not bounds: the floors
 * run in their own minutes, the second over the final table's size
 * throughout, beside a spinner that touches no memory.
 */
static uint64_t floor_spin_ns, floor_mem_bytes;

static uint8_t *floor_memory(void)
{
	int fd = memfd_create("growbench-floor", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)floor_mem_bytes) < 0)
		die("floor memfd", errno);
	uint8_t *m = mmap(NULL, floor_mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("floor mmap", errno);
	close(fd);
	for (uint64_t o = 0; o < floor_mem_bytes; o += 4096)
		m[o] = 1;
	return m;
}

static void floor_timed(shset *s, int unused)
{
	volatile uint64_t sink = 0;
	uint8_t *m = floor_mem_bytes ? floor_memory() : NULL;
	uint64_t rng = 0x2545f4914f6cdd1dull, words = floor_mem_bytes / 8;
	(void)s;
	(void)unused;
	memset(&my_lat, 0, sizeof(my_lat));
	ready_and_wait();
	struct sample prev = sample_now();
	for (uint64_t i = 0; i < growth_keys; i++) {
		uint64_t t0, t1;
		if (m) {
			uint64_t *w = (uint64_t *)m + xorshift(&rng) % words;
			t0 = now_ns();
			*(volatile uint64_t *)w += 1;
			t1 = now_ns();
		} else {
			t0 = now_ns();
			do {
				sink += i;
				t1 = now_ns();
			} while (t1 - t0 < floor_spin_ns);
		}
		struct sample cur = sample_now();
		lat_add(&my_lat, t1 - t0, &prev, &cur);
		prev = cur;
	}
	S->lat[0] = my_lat;
	if (m)
		munmap(m, floor_mem_bytes);
}

static void floor_spinner(shset *s, int unused)
{
	(void)s;
	(void)unused;
	ready_and_wait();
	while (!__atomic_load_n(&S->stop, __ATOMIC_ACQUIRE))
		;
}

/* A floor's histograms: ops of @spin_ns, or with @mem_bytes one random
 * access into that much memory. */
static struct lat measure_floor(uint64_t spin_ns, uint64_t mem_bytes)
{
	floor_spin_ns = spin_ns;
	floor_mem_bytes = mem_bytes;
	reset_shared();
	pid_t w = spawn(floor_timed, NULL, 0), r = spawn(floor_spinner, NULL, 0);
	go_when_ready(2);
	reap(w, "floor");
	__atomic_store_n(&S->stop, 1, __ATOMIC_RELEASE);
	reap(r, "spinner");
	return S->lat[0];
}

/* One row per way of timing: the writer's three, the reader's five (@c). */
static void print_lat(const char *name, const struct lat *l, const struct rclass *c)
{
	static const double qs[] = {0.50, 0.99, 0.999, 0.9999};
	static const char *qn[] = {"p50", "p99", "p99.9", "p99.99"};
	const struct hist *h[5] = {&l->all, &l->calm, &l->adj, c ? &c->wadj : NULL,
				   c ? &c->both : NULL};
	static const char *hn[5] = {"", " not preempted", " preemption removed",
				    " writer's preemption removed",
				    " own and writer's preemption removed"};
	static const char *rn[5] = {"", "not preempted", "preemption removed",
				    "writer's preemption removed", "both removed"};

	for (int j = 0; j < (c ? 5 : 3); j++) {
		char row[64];
		snprintf(row, sizeof(row), "%s%s", j ? "  " : name, rn[j]);
		printf("  %-29s", row);
		for (int i = 0; i < 4; i++)
			printf(" %9.2f", (double)hist_pct(h[j], qs[i]) / 1e3);
		printf(" %9.2f\n", (double)h[j]->max / 1e3);
		for (int i = 0; i < 5; i++) {
			char m[96];
			snprintf(m, sizeof(m), "%s %s%s", name, i < 4 ? qn[i] : "max", hn[j]);
			csv_row("growth", m, "us",
				(double)(i < 4 ? hist_pct(h[j], qs[i]) : h[j]->max) / 1e3, NULL,
				NULL);
		}
	}
	char m[96];
	snprintf(m, sizeof(m), "%s preempted ops", name);
	csv_row("growth", m, "ops", (double)l->preempted, NULL, NULL);
}

static const char *yes_no(int v)
{
	return v ? "yes" : "no";
}

/* How the writer's preemption shows in the reader's slow ops (classify()). */
static void print_writer_waits(const struct rclass *c)
{
	/* The writer's longest stolen add, to show what steal alone does. */
	uint64_t wn = W->c.n, nw = wn < REC_MAX ? wn : REC_MAX, st_wall = 0, st_cpu = 0;
	for (uint64_t k = 0; k < nw; k++) {
		struct woff w = W->r[k];
		if (w.kind == WOFF_STOLEN && w.t1 - w.t0 > st_wall) {
			st_wall = w.t1 - w.t0;
			st_cpu = w.cpu;
		}
	}
	printf("   The writer's preemption.  A contains also waits while the writer is off its "
	       "CPU inside a\n   transaction: up to 200 us for the sequence to turn even, then "
	       "for the lock it holds.\n   The writer records (in shared memory, outside its "
	       "timed interval) [start, end] and its\n   thread CPU time of each add across which "
	       "it was preempted (ru_nivcsw rose: %llu) or off\n   its CPU with no context "
	       "switch (wall time over its CPU time by more than %d us: %llu;\n   that is steal: "
	       "with paravirt steal accounting the task clock leaves it out);\n   %llu such adds "
	       "also slept and are not recorded (their sleep may be the library's wait);\n   "
	       "%llu past the %u recorded.  The reader records its ops over %d us (%llu; %llu past "
	       "the\n   %u recorded keep their figures).  After the run, an op overlapping "
	       "recorded adds is\n   timed as its wall time less, for each such add, the part of "
	       "the overlap beyond that\n   add's CPU time: time the writer was certainly "
	       "switched out.  \"writer's preemption\n   removed\" removes only that.  \"both "
	       "removed\" takes the smaller of that and the reader's\n   own figure: the "
	       "least of \"preemption removed\", its CPU time if its op was stolen as\n   above, "
	       "and its wall time less its run-queue wait (runnable but not running, after a\n   "
	       "preemption or a wake-up: /proc/thread-self/schedstat read after every op, %s;\n   "
	       "the part of the window between two readings outside the op is not removed).  "
	       "Both\n   processes may be off their CPUs at once, so the two removals are not "
	       "added.\n",
	       (unsigned long long)c->w_preempted, OFF_NS / 1000, (unsigned long long)c->w_stolen,
	       (unsigned long long)c->w_slept, (unsigned long long)c->w_lost, REC_MAX,
	       REC_SLOW_NS / 1000, (unsigned long long)c->slow, (unsigned long long)c->lost,
	       REC_MAX, c->rq_seen ? "about 1.5 us more" : "unreadable here: not used");
	if (st_wall)
		printf("   The writer's longest stolen add: %.1f us wall, %.1f us CPU.\n",
		       (double)st_wall / 1e3, (double)st_cpu / 1e3);
	printf("   Reader ops over %d us: %llu off their CPU themselves only (of all, %llu stolen, "
	       "%llu waited\n   on the run queue), %llu waited on an off-CPU writer only, %llu "
	       "both, %llu neither\n   (the longest %.1f us; %llu of them overlapped a recorded "
	       "add whose CPU time covers\n   the overlap: the writer may have run "
	       "throughout).\n",
	       REC_SLOW_NS / 1000, (unsigned long long)c->own, (unsigned long long)c->own_stolen,
	       (unsigned long long)c->own_queued, (unsigned long long)c->writer,
	       (unsigned long long)c->own_writer, (unsigned long long)c->neither,
	       (double)c->neither_max / 1e3, (unsigned long long)c->overlap_kept);
	if (c->worst_dur)
		printf("   Longest op left with both removed: %.1f us (wall %.1f us; off its CPU "
		       "itself %s,\n   slept %s, waited on an off-CPU writer %s).%s\n",
		       (double)c->worst / 1e3, (double)c->worst_dur / 1e3, yes_no(c->worst_own),
		       yes_no(c->worst_slept), yes_no(c->worst_writer),
		       c->worst_slept ? "  It slept: a sleep may\n   be a wait for the lock while "
					"the writer ran, so only what is told above is removed."
				      : "");
	csv_row("growth", "writer adds recorded preempted", "ops", (double)c->w_preempted, NULL,
		NULL);
	csv_row("growth", "writer adds recorded stolen", "ops", (double)c->w_stolen, NULL, NULL);
	csv_row("growth", "writer adds off CPU and slept (not recorded)", "ops", (double)c->w_slept,
		NULL, NULL);
	csv_row("growth", "writer adds not recorded (overflow)", "ops", (double)c->w_lost, NULL,
		NULL);
	csv_row("growth", "writer longest stolen add", "us", (double)st_wall / 1e3, NULL, NULL);
	csv_row("growth", "reader slow ops", "ops", (double)c->slow, NULL, NULL);
	csv_row("growth", "reader slow ops not recorded (overflow)", "ops", (double)c->lost, NULL,
		NULL);
	csv_row("growth", "reader slow ops off CPU themselves only", "ops", (double)c->own, NULL,
		NULL);
	csv_row("growth", "reader slow ops stolen themselves", "ops", (double)c->own_stolen, NULL,
		NULL);
	csv_row("growth", "reader slow ops waited on the run queue", "ops", (double)c->own_queued,
		NULL, NULL);
	csv_row("growth", "reader slow ops waited on an off-CPU writer only", "ops",
		(double)c->writer, NULL, NULL);
	csv_row("growth", "reader slow ops both", "ops", (double)c->own_writer, NULL, NULL);
	csv_row("growth", "reader slow ops neither", "ops", (double)c->neither, NULL, NULL);
	csv_row("growth", "reader slow ops neither, longest", "us", (double)c->neither_max / 1e3,
		NULL, NULL);
}

static void bench_growth(void)
{
	growth_keys = quick ? 1000000 : 4000000;
	printf("\n1. growth: one writer adds %llu distinct %d-byte keys to a set created empty "
	       "(max_bytes 4 GiB)\n   while one reader loops shset_contains (half present, half "
	       "absent keys)\n",
	       (unsigned long long)growth_keys, KEY_LEN);
	shset *s = new_set(0);
	struct shset_stats st0, st1;
	shset_stats(s, &st0);
	reset_shared();
	memset(&W->c, 0, sizeof(W->c));
	double steal0 = steal_ms();
	pid_t w = spawn(growth_writer, s, 0), r = spawn(growth_reader, s, 0);
	go_when_ready(2);
	reap(w, "writer");
	__atomic_store_n(&S->stop, 1, __ATOMIC_RELEASE);
	reap(r, "reader");
	double steal = steal_ms() - steal0;
	shset_stats(s, &st1);
	double secs = (double)(S->t_end[0] - S->t_go) / 1e9;
	long long size = shset_size(s);
	const struct lat *wl = &S->lat[0], *rl = &S->lat[1];
	const struct rclass *rc = &S->rc;

	printf("   writer %.2f s (%.2f Mops/s; resizes %llu, final capacity %llu, file %.0f MB), "
	       "reader %.2f Mops/s\n",
	       secs, (double)growth_keys / secs / 1e6,
	       (unsigned long long)(st1.resizes - st0.resizes), (unsigned long long)st1.capacity,
	       (double)st1.file_bytes / 1e6, (double)S->ops[1] / secs / 1e6);
	if (S->wrong[0] || S->wrong[1] || size != (long long)growth_keys) {
		fprintf(stderr,
			"growbench: wrong results: %llu adds not 1, %llu wrong contains, size "
			"%lld\n",
			(unsigned long long)S->wrong[0], (unsigned long long)S->wrong[1], size);
		exit(1);
	}
	printf("   Latency in us: percentiles from a log-linear histogram (rounded up, within "
	       "1.6%%), max exact.\n"
	       "   After every op each process reads getrusage(RUSAGE_THREAD) and its thread CPU "
	       "clock (about\n   1 us together, outside the timed interval: it slows the loops, "
	       "not the ops).  An op is\n   preempted when ru_nivcsw rose across it; "
	       "\"not preempted\" leaves those ops out; \"preemption\n   removed\" keeps every op "
	       "but times a preempted one by its thread's CPU time (the time\n   switched out "
	       "taken away), and so one stolen by the hypervisor (no switch, CPU time over\n   "
	       "20 us short of the wall time), unless it also slept (ru_nvcsw rose: it may have\n"
	       "   waited for the lock), when it keeps its full time.\n");
	printf("  %-29s %9s %9s %9s %9s %9s\n", "op", "p50", "p99", "p99.9", "p99.99", "max");
	print_lat("shset_add (writer)", wl, NULL);
	print_lat("lock hold (writer)", &S->hold, NULL);
	print_lat("shset_contains (reader)", rl, rc);
	for (int i = 0; i < 2; i++) {
		const struct lat *l = &S->lat[i];
		printf("   %s: %llu of %llu ops preempted (%llu of them over 100 us, %llu also "
		       "slept);\n   %llu ops over 100 us in all; %llu ops slept\n",
		       i ? "shset_contains" : "shset_add", (unsigned long long)l->preempted,
		       (unsigned long long)l->all.n, (unsigned long long)l->slow_preempted,
		       (unsigned long long)l->preempted_slept, (unsigned long long)l->slow,
		       (unsigned long long)l->slept);
	}
	print_writer_waits(rc);
	printf("   Hypervisor steal over both CPUs during the run: %.0f ms (ru_nivcsw does not "
	       "see it; of it,\n   what fell inside a writer's add with no context switch is "
	       "told as \"stolen\" above).\n",
	       steal);
	csv_row("growth", "steal", "ms", steal, NULL, NULL);

	/*
	 * Each add takes the lock once: acquisitions beyond that are the
	 * reader's, whose shset_contains falls back to the lock when writers
	 * keep moving the sequence.  Such a fallback holds the lock for one
	 * locked lookup, but its time here includes waiting for the lock, so
	 * only the writer's holds are timed: each lies within one add.
	 */
	uint64_t acq = st1.lock.acquisitions - st0.lock.acquisitions,
		 cont = st1.lock.contended - st0.lock.contended;
	uint64_t extra = acq > growth_keys ? acq - growth_keys : 0;
	printf("   Lock: %llu acquisitions for %llu adds, %llu of them contended.\n",
	       (unsigned long long)acq, (unsigned long long)growth_keys, (unsigned long long)cont);
	if (extra)
		printf(
		    "   Besides the writer's one per add, the reader took the lock %llu times "
		    "(shset_contains falls\n   back to it when writers keep moving the sequence). "
		    "A fallback holds it for one lookup,\n   but its time here includes the wait "
		    "for the lock: only the writer's holds are timed.\n",
		    (unsigned long long)extra);
	printf("   \"lock hold\": each add's hold of the shard's lock, timed inside the library "
	       "from the lock\n   taken to the lock released (set_time_holds) and classed the "
	       "same way, by the thread's\n   counters from before the add to the release (read "
	       "there by the library for holds\n   over 100 us, else after the add).  An add also "
	       "works outside the lock (hashing, faulting\n   in the table a resize fills, kept "
	       "out of the lock on purpose), so its time is the\n   hold's upper bound, not the "
	       "hold.\n");
	printf("   Longest lock hold by the writer: %.1f us with preemption removed, %.1f us "
	       "leaving\n   preempted ops out, %.1f us counting all (a holder switched out keeps "
	       "the lock through\n   the time slice it waits); its longest add %.1f us "
	       "(preemption removed).  The writer's\n   goals use \"preemption removed\", which "
	       "is never below \"not preempted\"; the lookup goal\n   uses \"both removed\": "
	       "the reader's own time off its CPU (preempted, stolen, on the run\n   queue) and "
	       "its waits on an off-CPU writer, told as above.\n",
	       (double)S->hold.adj.max / 1e3, (double)S->hold.calm.max / 1e3,
	       (double)S->hold.all.max / 1e3, (double)wl->adj.max / 1e3);
	csv_row("growth", "reader lock acquisitions", "ops", (double)extra, NULL, NULL);
	goal("growth", "longest lock hold (writer), preemption removed",
	     (double)S->hold.adj.max / 1e6, "ms", 1, 1, 0);
	goal("growth", "add p99.99, preemption removed", (double)hist_pct(&wl->adj, 0.9999) / 1e3,
	     "us", 20, 1, 0);
	goal("growth", "lookup max, own and writer's preemption removed",
	     (double)rc->both.max / 1e6, "ms", 1, 1, 0);
	uint64_t add_p50 = hist_pct(&wl->adj, 0.5);
	uint64_t add_p9999 = hist_pct(&wl->adj, 0.9999);
	shset_close(s);

	/* p99.99 is the 1 in 10,000th: how many ops lie beyond 20 and 40 us
	 * tells what moves it.  Counted before the floor reuses S. */
	uint64_t over[4] = {hist_over(&wl->adj, 20000), hist_over(&wl->adj, 40000),
			    hist_over(&S->hold.adj, 20000), hist_over(&S->hold.adj, 40000)};
	struct lat fl = measure_floor(add_p50, 0), fm = measure_floor(0, st1.capacity * 32);
	uint64_t floor_p9999 = hist_pct(&fl.adj, 0.9999), mem_p9999 = hist_pct(&fm.adj, 0.9999);
	printf("   The machine's floors: %llu ops that only compute for the add's median "
	       "(%.2f us), then\n   %llu ops of one random read-modify-write of a word in "
	       "%.0f MB (the final table's size)\n   of a memfd, each timed the same way in one "
	       "process while another spins on the other\n   CPU (what interrupts, ticks, "
	       "hypervisor exits and the machine's memory, that no\n   counter shows, add to "
	       "any op):\n",
	       (unsigned long long)growth_keys, (double)add_p50 / 1e3,
	       (unsigned long long)growth_keys, (double)st1.capacity * 32 / 1e6);
	printf("  %-29s %9s %9s %9s %9s %9s\n", "op", "p50", "p99", "p99.9", "p99.99", "max");
	print_lat("floor (spin)", &fl, NULL);
	print_lat("floor (one access)", &fm, NULL);
	printf("   add p99.99 %.2f us against the floor's %.2f us: %.2f us of it is the "
	       "library's beyond the floor.\n",
	       (double)add_p9999 / 1e3, (double)floor_p9999 / 1e3,
	       add_p9999 > floor_p9999 ? (double)(add_p9999 - floor_p9999) / 1e3 : 0.0);
	printf("   add p99.99 against one random access's %.2f us: %.2fx.\n",
	       (double)mem_p9999 / 1e3, mem_p9999 ? (double)add_p9999 / (double)mem_p9999 : 0.0);
	printf("   ops over 20 / 40 us, preemption removed: adds %llu / %llu, lock holds "
	       "%llu / %llu,\n   floor (spin) %llu / %llu, floor (one access) %llu / %llu "
	       "(p99.99 is the %llu-th slowest)\n",
	       (unsigned long long)over[0], (unsigned long long)over[1],
	       (unsigned long long)over[2], (unsigned long long)over[3],
	       (unsigned long long)hist_over(&fl.adj, 20000),
	       (unsigned long long)hist_over(&fl.adj, 40000),
	       (unsigned long long)hist_over(&fm.adj, 20000),
	       (unsigned long long)hist_over(&fm.adj, 40000),
	       (unsigned long long)(growth_keys / 10000));
	csv_row("growth", "floor p99.99, preemption removed", "us", (double)floor_p9999 / 1e3, NULL,
		NULL);
	csv_row("growth", "one random access p99.99, preemption removed", "us",
		(double)mem_p9999 / 1e3, NULL, NULL);
}

/* --- dependent random access (the machine's floor for scaling and one add) ----------- */

/* A dependent chase through @bytes of private memory in 4 KiB pages (as
 * the memfd's, whose shmem huge pages are off): cache-line nodes linked in
 * one random cycle, so every step is a cache miss and, past the TLB's
 * reach, a TLB miss, as a probe of a large table is. */
struct chase {
	uint64_t *mem;
	uint64_t n; /* nodes */
};

static struct chase chase_build(uint64_t bytes, uint64_t *rng)
{
	struct chase c = {.n = bytes / 64 < 2 ? 2 : bytes / 64};
	c.mem = mmap(NULL, c.n * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *perm = malloc(c.n * sizeof(*perm));
	if (c.mem == MAP_FAILED || !perm)
		die("chase buffer", ENOMEM);
	madvise(c.mem, c.n * 64, MADV_NOHUGEPAGE);
	/* Sattolo's algorithm: a uniformly random single cycle. */
	for (uint64_t i = 0; i < c.n; i++)
		perm[i] = (uint32_t)i;
	for (uint64_t i = c.n - 1; i > 0; i--) {
		uint64_t j = xorshift(rng) % i;
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (uint64_t i = 0; i < c.n; i++)
		c.mem[i * 8] = (uint64_t)perm[i] * 8;
	free(perm);
	return c;
}

/* @steps steps from node @from. */
static void chase_run(const struct chase *c, uint64_t from, uint64_t steps)
{
	uint64_t at = (from % c->n) * 8;
	for (uint64_t i = 0; i < steps; i++)
		at = c->mem[at];
	__asm__ volatile("" : : "r"(at)); /* the chase must happen */
}

static void chase_free(struct chase *c)
{
	munmap(c->mem, c->n * 64);
}

/* --- 2. writer scaling ----------------------------------------------------------------- */

static uint64_t scale_per_writer;

static void scale_writer(shset *s, int who)
{
	uint8_t k[KEY_LEN];
	make_key(ABSENT_WHO, 0, KEY_LEN, k);
	if (shset_contains(s, k, KEY_LEN) < 0)
		_exit(1);
	ready_and_wait();
	for (uint64_t i = 0; i < scale_per_writer; i++) {
		make_key((uint32_t)who, i, KEY_LEN, k);
		if (shset_add(s, k, KEY_LEN) != 1)
			_exit(1);
	}
	S->t_end[who] = now_ns();
}

/* Runs @procs processes of @fn (on @s), scale_per_writer ops each, from
 * one go: millions of ops a second over all, to the last one's end. */
static double run_procs(void (*fn)(shset *, int), shset *s, int procs, const char *what)
{
	pid_t pid[MAX_WRITERS];
	reset_shared();
	for (int p = 0; p < procs; p++)
		pid[p] = spawn(fn, s, p);
	go_when_ready(procs);
	uint64_t t1 = 0;
	for (int p = 0; p < procs; p++) {
		reap(pid[p], what);
		if (S->t_end[p] > t1)
			t1 = S->t_end[p];
	}
	return (double)(scale_per_writer * (uint64_t)procs) / ((double)(t1 - S->t_go) / 1e9) / 1e6;
}

/* Mops/s of @procs writers adding scale_per_writer keys each. */
static double scale_run(int procs, uint64_t total, int presized)
{
	shset *s = new_set(presized ? total : 0);
	double mops = run_procs(scale_writer, s, procs, "writer");
	if (shset_size(s) != (long long)(scale_per_writer * (uint64_t)procs)) {
		fprintf(stderr, "growbench: scaling: wrong size\n");
		exit(1);
	}
	shset_close(s);
	return mops;
}

/* The machine's floor for scaling: the same processes, each a dependent
 * chase through one private copy (shared pages, read only) of a random
 * cycle at least the table's size, writing nothing any other process
 * reads.  Of 2 or 4, each starts a half or a quarter of the cycle from
 * the next and takes at most that many steps, so no two read the same
 * nodes.  What 2 and 4 of
 * them do against 1 is what the machine gives work with a cache miss a
 * step, scheduling and the hypervisor included: a reference for the
 * writers' ratios, not a bound (the writers' runs differ in more than
 * their sharing). */
static struct chase scale_chase;
static uint64_t scale_start[MAX_WRITERS]; /* nodes a quarter of the cycle apart */
static int scale_procs;

static void scale_floor(shset *unused, int who)
{
	(void)unused;
	ready_and_wait();
	chase_run(&scale_chase, scale_start[who * (MAX_WRITERS / scale_procs)], scale_per_writer);
	S->t_end[who] = now_ns();
}

/* Msteps/s of @procs chasers, scale_per_writer steps each. */
static double floor_run(int procs)
{
	scale_procs = procs;
	return run_procs(scale_floor, NULL, procs, "floor");
}

static void bench_scaling(void)
{
	static const int procs[] = {1, 2, 4};
	static const char *mode[] = {"presized", "growing", "floor"};
	uint64_t total = quick ? 500000 : 2000000;
	int runs = quick ? 3 : 5;
	double mops[3][3][MAX_RUNS], r21[3][MAX_RUNS], r42[3][MAX_RUNS];
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	scale_per_writer = total / 4;
	total = scale_per_writer * 4;
	/* The floor chases through as many bytes as the presized table has,
	 * and at least a node a step. */
	shset *s = new_set(total);
	struct shset_stats st;
	int err = shset_stats(s, &st);
	if (err)
		die("shset_stats", err);
	shset_close(s);
	uint64_t chase_bytes = st.capacity * 32 > total * 64 ? st.capacity * 32 : total * 64;
	scale_chase = chase_build(chase_bytes, &rng);
	/* Starts a quarter of the cycle apart: walked once. */
	for (uint64_t w = 0, at = 0; w < MAX_WRITERS; w++) {
		scale_start[w] = at / 8;
		for (uint64_t i = 0; i < scale_chase.n / MAX_WRITERS; i++)
			at = scale_chase.mem[at];
	}
	printf("\n2. writer scaling: %llu distinct %d-byte keys split evenly over 1, 2, 4 writer "
	       "processes,\n   into a set presized for them and into one growing from empty; "
	       "Mops/s over all writers,\n   median (min-max) of %d interleaved runs, "
	       "%ld cpus.  floor: as many processes taking\n   %llu steps between them of a "
	       "dependent random chase through %.0f MB (the presized\n   table's size or more), "
	       "Msteps/s: what the machine gives a cache miss a step\n",
	       (unsigned long long)total, KEY_LEN, runs, sysconf(_SC_NPROCESSORS_ONLN),
	       (unsigned long long)total, (double)chase_bytes / 1e6);
	for (int r = 0; r < runs; r++)
		for (int m = 0; m < 3; m++) {
			for (int pi = 0; pi < 3; pi++) {
				scale_per_writer = total / (uint64_t)procs[pi];
				mops[m][pi][r] = m == 2 ? floor_run(procs[pi])
							: scale_run(procs[pi], total, m == 0);
			}
			r21[m][r] = mops[m][1][r] / mops[m][0][r];
			r42[m][r] = mops[m][2][r] / mops[m][1][r];
		}
	chase_free(&scale_chase);
	printf("  %-10s", "set");
	for (int pi = 0; pi < 3; pi++) {
		char h[32];
		snprintf(h, sizeof(h), "%d writer%s Mops/s", procs[pi], procs[pi] > 1 ? "s" : "");
		printf("   %-20s", h);
	}
	printf("\n");
	for (int m = 0; m < 3; m++) {
		printf("  %-10s", mode[m]);
		for (int pi = 0; pi < 3; pi++) {
			struct spread sp = spread_of(mops[m][pi], runs);
			printf("   %6.2f (%5.2f-%5.2f)", sp.median, sp.min, sp.max);
			char name[48];
			snprintf(name, sizeof(name), "%s %d %s", mode[m], procs[pi],
				 m == 2 ? "processes" : "writers");
			csv_row("scaling", name, m == 2 ? "Msteps/s" : "Mops/s", sp.median, &sp,
				NULL);
		}
		printf("\n");
	}
	for (int m = 0; m < 3; m++) {
		struct spread a = spread_of(r21[m], runs), b = spread_of(r42[m], runs);
		char what[64];
		printf("   %s: 2 %s / 1 = %.2fx (%.2f-%.2f), 4 / 2 = %.2fx (%.2f-%.2f), medians of "
		       "per-run ratios\n",
		       mode[m], m == 2 ? "processes" : "writers", a.median, a.min, a.max, b.median,
		       b.min, b.max);
		if (m == 2) {
			csv_row("scaling", "floor: 2 processes / 1", "x", a.median, &a, NULL);
			csv_row("scaling", "floor: 4 processes / 2", "x", b.median, &b, NULL);
			continue;
		}
		snprintf(what, sizeof(what), "%s: 2 writers / 1 writer", mode[m]);
		goal("scaling", what, a.median, "x", 1.6, 0, 0);
		snprintf(what, sizeof(what), "%s: 4 writers / 2 writers", mode[m]);
		goal("scaling", what, b.median, "x", 1.0, 0, 0);
	}
}

/* --- 3. bulk load ---------------------------------------------------------------------- */

static void bench_bulk_load(void)
{
	const uint64_t n = 1000000;
	int runs = quick ? 3 : 5;
	double copy_ms[MAX_RUNS], load_ms[MAX_RUNS], ratio[MAX_RUNS];
	char path[128];
	struct stat fst;

	snprintf(path, sizeof(path), "%s/bulk.shs", tmpdir);
	shset *s = new_set(n);
	fill(s, 0, 0, n, KEY_LEN);
	int err = shset_save(s, path);
	if (err)
		die("shset_save", err);
	if (stat(path, &fst) < 0)
		die(path, errno);
	for (int r = 0; r < runs; r++) {
		shset *c, *l;
		uint64_t t0 = now_ns();
		err = shset_copy(s, &c);
		uint64_t t1 = now_ns();
		if (err)
			die("shset_copy", err);
		shset_close(c);
		err = shset_save(s, path);
		if (err)
			die("shset_save", err);
		uint64_t t2 = now_ns();
		err = shset_load(&l, path, NULL);
		uint64_t t3 = now_ns();
		if (err)
			die("shset_load", err);
		if (shset_size(l) != (long long)n)
			die("shset_load: wrong size", EBADMSG);
		shset_close(l);
		copy_ms[r] = (double)(t1 - t0) / 1e6;
		load_ms[r] = (double)(t3 - t2) / 1e6;
		ratio[r] = load_ms[r] / copy_ms[r];
	}
	struct spread c = spread_of(copy_ms, runs), l = spread_of(load_ms, runs),
		      q = spread_of(ratio, runs);
	printf("\n3. bulk load: a set of %llu %d-byte keys (snapshot file %.1f MB, page-cached); "
	       "whole calls,\n   median (min-max) of %d runs\n",
	       (unsigned long long)n, KEY_LEN, (double)fst.st_size / 1e6, runs);
	printf("   shset_copy %8.1f ms (%.1f-%.1f)\n", c.median, c.min, c.max);
	printf("   shset_load %8.1f ms (%.1f-%.1f) of the file shset_save wrote\n", l.median, l.min,
	       l.max);
	csv_row("bulk", "shset_copy", "ms", c.median, &c, NULL);
	csv_row("bulk", "shset_load", "ms", l.median, &l, NULL);
	goal("bulk", "load / copy (median of per-run ratios)", q.median, "x", 2, 1, 0);
	unlink(path);
	shset_close(s);
}

/* --- 4. memory given back -------------------------------------------------------------- */

static void bench_memory(void)
{
	const uint64_t n = 1000000;
	uint8_t k[KEY_LEN];

	printf("\n4. memory given back: the memfd's allocated blocks (fstat st_blocks * 512) of a "
	       "set created empty\n   (max_bytes 4 GiB: 8 shards)\n");
	shset *s = new_set(0);
	fill(s, 0, 0, n, KEY_LEN);
	uint64_t full16 = file_blocks_bytes(s);
	for (uint64_t i = 0; i < n; i++) {
		make_key(0, i, KEY_LEN, k);
		int r = shset_remove(s, k, KEY_LEN);
		if (r != 1)
			die("shset_remove", r < 0 ? r : ENOENT);
	}
	uint64_t removed = file_blocks_bytes(s);
	shset_close(s);

	s = new_set(0);
	fill(s, 0, 0, n, KEY_LEN);
	int err = shset_clear(s);
	if (err)
		die("shset_clear", err);
	uint64_t cleared = file_blocks_bytes(s);
	shset_close(s);

	s = new_set(0);
	fill(s, 0, 0, n, 64);
	uint64_t full64 = file_blocks_bytes(s);
	shset_close(s);

	/* The same with the default max_bytes (8 GiB: 16 shards, each with
	 * half the keys of the 8 above): a table's load depends on where its
	 * shard's key count falls between two capacities. */
	uint64_t dflt[2];
	for (int i = 0; i < 2; i++) {
		int err = shset_create(&s, NULL);
		if (err)
			die("shset_create", err);
		fill(s, 0, 0, n, i ? 64 : KEY_LEN);
		dflt[i] = file_blocks_bytes(s);
		shset_close(s);
	}

	printf("   %llu 16-byte keys added: %.1f MB, %.1f bytes/key (16 shards: %.1f)\n",
	       (unsigned long long)n, (double)full16 / 1e6, (double)full16 / (double)n,
	       (double)dflt[0] / (double)n);
	printf("   %llu 64-byte keys added: %.1f MB, %.1f bytes/key (16 shards: %.1f)\n",
	       (unsigned long long)n, (double)full64 / 1e6, (double)full64 / (double)n,
	       (double)dflt[1] / (double)n);
	csv_row("memory", "16-byte keys", "bytes/key", (double)full16 / (double)n, NULL, NULL);
	csv_row("memory", "64-byte keys", "bytes/key", (double)full64 / (double)n, NULL, NULL);
	csv_row("memory", "16-byte keys, 16 shards", "bytes/key", (double)dflt[0] / (double)n, NULL,
		NULL);
	csv_row("memory", "64-byte keys, 16 shards", "bytes/key", (double)dflt[1] / (double)n, NULL,
		NULL);
	goal("memory", "after removing all 1M one by one", (double)removed / 1e6, "MB", 10, 1, 1);
	goal("memory", "after shset_clear of 1M", (double)cleared / 1e6, "MB", 10, 1, 1);
}

/* --- 5. single add cost ---------------------------------------------------------------- */

static void bench_add_cost(void)
{
	const uint64_t cap = 2000000, held = 1000000, adds = 200000;
	int runs = quick ? 3 : 5;
	double add[MAX_RUNS], access[MAX_RUNS], ratio[MAX_RUNS];
	uint64_t rng = 0x2545f4914f6cdd1dull, table = 0;

	for (int r = 0; r < runs; r++) {
		shset *s = new_set(cap);
		struct shset_stats st;
		fill(s, 0, 0, held, KEY_LEN);
		uint64_t t0 = now_ns();
		fill(s, 0, held, held + adds, KEY_LEN);
		uint64_t t1 = now_ns();
		shset_stats(s, &st);
		shset_close(s);
		table = st.capacity * 32;
		add[r] = (double)(t1 - t0) / (double)adds;
		struct chase c = chase_build(table, &rng);
		uint64_t steps = quick ? 1000000 : 2000000, c0 = now_ns();
		chase_run(&c, 0, steps);
		access[r] = (double)(now_ns() - c0) / (double)steps;
		chase_free(&c);
		ratio[r] = add[r] / access[r];
	}
	struct spread a = spread_of(add, runs), m = spread_of(access, runs),
		      q = spread_of(ratio, runs);
	printf("\n5. single add cost: %llu adds of new %d-byte keys into a set presized for %llu "
	       "holding %llu,\n   against one dependent random access into %.0f MB of private "
	       "memory in 4 KiB pages\n   (the table's size: capacity * 32 bytes); median "
	       "(min-max) of %d runs\n",
	       (unsigned long long)adds, KEY_LEN, (unsigned long long)cap, (unsigned long long)held,
	       (double)table / 1e6, runs);
	printf("   shset_add        %7.1f ns (%.1f-%.1f)\n", a.median, a.min, a.max);
	printf("   memory access    %7.1f ns (%.1f-%.1f)\n", m.median, m.min, m.max);
	csv_row("add cost", "shset_add", "ns", a.median, &a, NULL);
	csv_row("add cost", "random access", "ns", m.median, &m, NULL);
	goal("add cost", "add / one memory access (median of ratios)", q.median, "x", 1.5, 1, 0);
}

int main(int argc, char **argv)
{
	const char *csv_path = NULL, *only = NULL;
	static const char *const parts[] = {"growth", "scaling", "load", "memory", "add"};
	static void (*const run[])(void) = {bench_growth, bench_scaling, bench_bulk_load,
					    bench_memory, bench_add_cost};

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv_path = argv[++i];
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: growbench [--quick] [--csv FILE] "
					"[--only growth|scaling|load|memory|add]\n");
			return 2;
		}
	}
	int nrun = 0;
	for (unsigned i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		nrun += !only || !strcmp(only, parts[i]);
	if (!nrun) {
		fprintf(stderr, "growbench: no part named %s\n", only);
		return 2;
	}
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv)
			die(csv_path, errno);
		fprintf(csv, "section,metric,unit,value,min,max,goal\n");
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/growbench-XXXXXX");
	if (!mkdtemp(tmpdir))
		die("mkdtemp", errno);
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	W = mmap(NULL, sizeof(*W), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (S == MAP_FAILED || W == MAP_FAILED)
		die("mmap", errno);

	printf("growbench (%s%s): %ld cpus; growth, writer scaling, bulk load, memory given "
	       "back, add cost\n",
	       quick ? "quick" : "full",
	       quick ? ": growth 1,000,000 keys, scaling 500,000, 3 runs" : "",
	       sysconf(_SC_NPROCESSORS_ONLN));
	fflush(stdout);
	for (unsigned i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (only && strcmp(only, parts[i]))
			continue;
		run[i]();
		fflush(stdout);
	}

	int met = 0;
	for (int i = 0; i < ngoals; i++)
		met += goals[i].met;
	printf("\n  goals: %d of %d met\n", met, ngoals);
	for (int i = 0; i < ngoals; i++)
		printf("    %s\n", goals[i].line);
	rmdir(tmpdir);
	if (csv)
		fclose(csv);
	return 0;
}
