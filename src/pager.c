/* SPDX-License-Identifier: MIT */
/*
 * pager.c - a helper thread for the page work of bulk operations.
 *
 * A load of 1,000,000 keys spends a third of its time in the kernel
 * allocating, zeroing and mapping pages: its sort buffer and every shard's
 * table.  None of that depends on what the caller computes meanwhile
 * (hashing, sorting, inserting), so a second thread does it, one job at a
 * time in the order queued.  The work on the set's file is content-neutral
 * (fallocate keeps data, MADV_POPULATE_WRITE maps without writing), so it
 * is safe whoever gets to a page first; a job the thread has not taken
 * when the caller needs it is done by the caller itself.
 *
 * A load also hands it a work job (pager_add_work) once the tables are
 * queued: inserting into the shards the caller has not got to, each
 * shard's transaction used by one thread at a time (set.c, load_back).
 *
 * The thread blocks every signal (they are the caller's), and is joined
 * by pager_stop.  From pager_start to pager_stop the caller cannot be
 * cancelled (pthread_cancel): it would leave the thread running on a
 * struct in a stack that no longer exists; a request takes effect at the
 * caller's first cancellation point after pager_stop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include "pager.h"
#include "prim.h"
#include "region.h"

/* The thread calls fallocate and madvise, and inserts (no recursion, no
 * big arrays on the stack): a small stack will do. */
#define PAGER_STACK (256u << 10)

static void pager_do(struct pager_job *j)
{
	if (j->fn) {
		j->fn(j->arg);
		return;
	}
	if (j->r) {
		region_fill(j->r, j->off, j->len);
		return;
	}
	uintptr_t lo = (uintptr_t)j->off & ~(uintptr_t)(REGION_PAGE - 1);
	uintptr_t hi = (uintptr_t)j->off + j->len;
	if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0 || errno != EINVAL)
		return;
	/* Kernels before 5.14: touch each page with a write that keeps its
	 * content (the caller may be writing it already: a split's hash
	 * array is filled while its job runs). */
	for (uintptr_t a = lo; a < hi; a += REGION_PAGE)
		__atomic_fetch_or((uint8_t *)(a < (uintptr_t)j->off ? (uintptr_t)j->off : a), 0,
				  __ATOMIC_RELAXED);
}

static void pager_finish(struct pager *p, struct pager_job *j)
{
	pthread_mutex_lock(&p->mu);
	j->state = PAGER_DONE;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void *pager_main(void *arg)
{
	struct pager *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stopping && p->next < p->n && p->job[p->next].state != PAGER_QUEUED)
			p->next++;
		if (p->stopping)
			break;
		if (p->next == p->n) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		struct pager_job *j = &p->job[p->next++];
		j->state = PAGER_TAKEN;
		pthread_mutex_unlock(&p->mu);
		pager_do(j);
		pager_finish(p, j);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

void pager_start(struct pager *p, int thread)
{
	sigset_t all, old;
	pthread_attr_t attr;

	p->running = 0;
	p->stopping = 0;
	p->n = p->next = 0;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &p->cancel_state);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (!thread || pthread_attr_init(&attr))
		return;
	pthread_attr_setstacksize(&attr, PAGER_STACK > PTHREAD_STACK_MIN ? PAGER_STACK
									 : PTHREAD_STACK_MIN);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	p->running = pthread_create(&p->thread, &attr, pager_main, p) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

static int queue(struct pager *p, const struct pager_job *j)
{
	int id = -1;

	pthread_mutex_lock(&p->mu);
	if (p->n < PAGER_JOBS) {
		id = (int)p->n++;
		p->job[id] = *j;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return id;
}

int pager_add(struct pager *p, struct region *r, uint64_t off, uint64_t len)
{
	return queue(p, &(struct pager_job){.r = r, .off = off, .len = len, .state = PAGER_QUEUED});
}

int pager_add_work(struct pager *p, void (*fn)(void *arg), void *arg)
{
	return queue(p, &(struct pager_job){.fn = fn, .arg = arg, .state = PAGER_QUEUED});
}

static void pager_wait(struct pager *p, int id, int need)
{
	pthread_mutex_lock(&p->mu);
	if (id < 0 || (unsigned)id >= p->n) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	struct pager_job *j = &p->job[id];
	if (j->state == PAGER_QUEUED) {
		j->state = need ? PAGER_TAKEN : PAGER_DONE;
		pthread_mutex_unlock(&p->mu);
		if (need) {
			pager_do(j);
			pager_finish(p, j);
		}
		return;
	}
	while (j->state != PAGER_DONE)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void pager_need(struct pager *p, int id)
{
	pager_wait(p, id, 1);
}

void pager_drop(struct pager *p, int id)
{
	pager_wait(p, id, 0);
}

void pager_reset(struct pager *p)
{
	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < p->n; i++) {
		if (p->job[i].state == PAGER_QUEUED)
			p->job[i].state = PAGER_DONE;
		while (p->job[i].state != PAGER_DONE)
			pthread_cond_wait(&p->cv, &p->mu);
	}
	p->n = p->next = 0;
	pthread_mutex_unlock(&p->mu);
}

void pager_stop(struct pager *p)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (p->running)
		pthread_join(p->thread, NULL);
	p->running = 0;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	pthread_setcancelstate(p->cancel_state, NULL);
}
