/* SPDX-License-Identifier: MIT */
/* pager.h - a helper thread for bulk work (private): it has the kernel
 * allocate and map pages ahead of the caller, and can share a load's
 * inserts with it. */
#ifndef SHSET_PAGER_H
#define SHSET_PAGER_H

#include <pthread.h>
#include <stdint.h>

#define PAGER_JOBS 20u

struct region;

enum { PAGER_QUEUED, PAGER_TAKEN, PAGER_DONE };

struct pager_job {
	struct region *r; /* the set's file, or NULL: anonymous memory at off */
	uint64_t off, len;
	unsigned state;	       /* PAGER_QUEUED, _TAKEN, _DONE */
	void (*fn)(void *arg); /* a work job (pager_add_work) instead */
	void *arg;
};

struct pager {
	pthread_t thread;
	int running; /* the thread exists: else the caller does every job */
	int stopping;
	int cancel_state; /* the caller's, restored by pager_stop */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pager_job job[PAGER_JOBS];
	unsigned n, next; /* jobs queued; the first the thread has not looked at */
};

/* Starts the thread if @thread; without one (not asked for, or
 * pthread_create failed), jobs are done by pager_need.  Either way
 * pager_stop must follow; until then the caller cannot be cancelled. */
void pager_start(struct pager *p, int thread);
/* Queues allocating and mapping the pages of [off, off+len) of @r's file
 * (region_fill), or with @r NULL those of the anonymous memory at address
 * @off.  Returns the job's number for pager_need, or -1 if the queue is
 * full (the caller then needs nothing from it). */
int pager_add(struct pager *p, struct region *r, uint64_t off, uint64_t len);
/* Queues a call of @fn(@arg), done by the thread when it gets to it, or
 * by pager_need.  @fn must be safe to run in either thread, and in the
 * thread with every signal blocked.  The job's number, or -1 (queue full:
 * nothing will call @fn). */
int pager_add_work(struct pager *p, void (*fn)(void *arg), void *arg);
/* The caller is about to write job @id's pages (or needs its work done):
 * does the job if the thread has not taken it, else waits for the thread
 * to finish it.  Best effort: pages not mapped are faulted in when
 * written. */
void pager_need(struct pager *p, int id);
/* Job @id's memory is about to be unmapped: drops it if the thread has
 * not taken it, else waits for the thread to finish it. */
void pager_drop(struct pager *p, int id);
/* Drops every job the thread has not taken and waits for the one it has:
 * the queue is empty again (an operation that runs twice). */
void pager_reset(struct pager *p);
/* Stops the thread (jobs it has not taken are dropped) and joins it. */
void pager_stop(struct pager *p);

#endif
