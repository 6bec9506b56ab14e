/* SPDX-License-Identifier: MIT */
/*
 * filler.c - a helper thread per handle that faults in the tables its
 * resizes fill.
 *
 * A resize's new table is a hole; the adds that fill it would each fault
 * in pages (table.c, table_populate_ahead).  Done by the writer, that page
 * work is a large part of an add's tail while the set grows (the largest
 * on a freshly booted virtual machine): tens of microseconds for a few
 * adds in a thousand.  None of it depends on the add, so a second thread
 * of the process does it (the page tables are the process's, whichever
 * thread faults a page in).  MADV_POPULATE_WRITE maps pages without
 * writing them, so it is content-neutral: safe whoever gets to a page
 * first, and whatever the table holds by then.
 *
 * The thread is started by the first commit that leaves a resize filling
 * a table of 128 KiB or more, and lives until shset_close; small sets never
 * start one.  After each of its commits (single keys, batches, set
 * algebra) the process hands over the shard's table only if it is new to
 * the thread (a load per commit during a resize, a swap and a futex wake
 * per new table), so the adds pay nothing else.  The thread blocks every signal.
 * In a forked child the thread does not exist: the child's first commit
 * that needs one starts its own.  Without a thread (SHSET_FILLER=0 in the
 * environment, or pthread_create failed) each single-key write faults in
 * a step after it, outside the lock.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "filler.h"
#include "lease.h"
#include "table.h"

enum { FILLER_NONE, FILLER_STARTING, FILLER_RUNNING, FILLER_INLINE };
#define STATE_BITS 2u
#define STATE_MASK ((1u << STATE_BITS) - 1)

/* madvise and the table's checks only: a small stack will do. */
#define FILLER_STACK (256u << 10)

/* This process's fork generation, in a state word's upper bits. */
static uint32_t forkgen_now(void)
{
	return (uint32_t)__atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED) << STATE_BITS;
}

/* Read when a thread would start: once per handle. */
static int filler_off(void)
{
	const char *e = getenv("SHSET_FILLER");
	return e && !strcmp(e, "0");
}

static void *filler_main(void *arg)
{
	struct filler *f = arg;
	struct region *r = f->r;

	for (;;) {
		uint32_t seen = __atomic_load_n(&f->seq, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
			break;
		int more = 0;
		/* One step of each shard's table in turn: bounded by the
		 * tables' sizes, and a shard's new table is taken up at once.
		 * A table is new when pop_gen changed (it is bumped after
		 * pop_want is set): the same range can be a new table. */
		for (unsigned i = 0; i < r->nshards; i++) {
			struct region *sh = r->shard[i];
			uint64_t gen = __atomic_load_n(&sh->pop_gen, __ATOMIC_ACQUIRE);
			if (gen != f->cur[i].gen) {
				f->cur[i].want = __atomic_load_n(&sh->pop_want, __ATOMIC_RELAXED);
				f->cur[i].gen = gen;
				f->cur[i].done = 0;
			}
			more |= table_populate_step(sh, f->cur[i].want, &f->cur[i].done);
		}
		if (!more) {
			__atomic_store_n(&f->idle, seen, __ATOMIC_RELEASE);
			syscall(SYS_futex, &f->seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
		}
	}
	return NULL;
}

void filler_init(struct filler *f, struct region *r)
{
	memset(f, 0, sizeof(*f));
	f->r = r;
	f->state = forkgen_now() | FILLER_NONE;
}

/* Starts the thread (the caller set FILLER_STARTING of generation @gen);
 * FILLER_RUNNING, or FILLER_INLINE if it cannot be. */
static unsigned filler_start(struct filler *f, uint32_t gen)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int ok = 0;

	memset(f->cur, 0, sizeof(f->cur));
	memset(f->kicked, 0, sizeof(f->kicked));
	__atomic_store_n(&f->stop, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&f->idle, __atomic_load_n(&f->seq, __ATOMIC_RELAXED) - 1,
			 __ATOMIC_RELAXED);
	if (!filler_off() && pthread_attr_init(&attr) == 0) {
		pthread_attr_setstacksize(
		    &attr, FILLER_STACK > PTHREAD_STACK_MIN ? FILLER_STACK : PTHREAD_STACK_MIN);
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		ok = pthread_create(&f->thread, &attr, filler_main, f) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	unsigned st = ok ? FILLER_RUNNING : FILLER_INLINE;
	__atomic_store_n(&f->state, gen | st, __ATOMIC_RELEASE);
	return st;
}

void filler_after_commit(struct filler *f, struct region *sh)
{
	uint64_t want = __atomic_load_n(&sh->pop_want, __ATOMIC_RELAXED);

	if (!want)
		return;
	uint32_t gen = forkgen_now(), w = __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
	if ((w & ~STATE_MASK) != gen) {
		/* A forked child: the parent's thread is not here.  Whichever
		 * thread of the child gets here first resets the state; the
		 * generation in the word keeps a stale view from resetting it
		 * again once a child's thread has set it. */
		__atomic_compare_exchange_n(&f->state, &w, gen | FILLER_NONE, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE);
		w = __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
		if ((w & ~STATE_MASK) != gen) {
			table_populate_ahead(sh);
			return;
		}
	}
	unsigned st = w & STATE_MASK;
	if (st == FILLER_NONE) {
		/* Small tables are faulted in by their first writes soon
		 * enough: no thread for them.  One thread of the process
		 * starts it; others meanwhile take a step themselves. */
		uint64_t lo, hi;
		if (!table_populate_range(sh, want, &lo, &hi))
			return;
		st = __atomic_compare_exchange_n(&f->state, &w, gen | FILLER_STARTING, 0,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
			 ? filler_start(f, gen)
			 : FILLER_STARTING;
	}
	if (st != FILLER_RUNNING) {
		table_populate_ahead(sh);
		return;
	}
	/* Woken once per new table: the thread works on until it is done.
	 * Every add of a resize gets here: a plain load first, the swap
	 * (a locked instruction) only for a new table. */
	uint64_t pg = __atomic_load_n(&sh->pop_gen, __ATOMIC_ACQUIRE);
	uint64_t *k = &f->kicked[sh->shard_idx];
	if (__atomic_load_n(k, __ATOMIC_RELAXED) == pg ||
	    __atomic_exchange_n(k, pg, __ATOMIC_RELAXED) == pg)
		return;
	__atomic_add_fetch(&f->seq, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &f->seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int filler_running(struct filler *f)
{
	return __atomic_load_n(&f->state, __ATOMIC_ACQUIRE) == (forkgen_now() | FILLER_RUNNING);
}

void filler_settle(struct filler *f)
{
	for (int i = 0; i < 10000 && filler_running(f); i++) {
		if (__atomic_load_n(&f->idle, __ATOMIC_ACQUIRE) ==
		    __atomic_load_n(&f->seq, __ATOMIC_ACQUIRE))
			return;
		usleep(1000);
	}
}

void filler_stop(struct filler *f)
{
	if (!filler_running(f))
		return;
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&f->seq, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &f->seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(f->thread, NULL);
	__atomic_store_n(&f->state, forkgen_now() | FILLER_NONE, __ATOMIC_RELEASE);
}
