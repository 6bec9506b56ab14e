/* SPDX-License-Identifier: MIT */
/* filler.h - a helper thread per handle that faults in the tables the
 * handle's resizes fill, so that the adds which fill them do not (private). */
#ifndef SHSET_FILLER_H
#define SHSET_FILLER_H

#include <pthread.h>
#include <stdint.h>

#include "region.h"

struct filler {
	struct region *r;
	pthread_t thread;
	/* FILLER_NONE, _STARTING, _RUNNING or _INLINE in the low bits, and
	 * lease_forkgen when it was set above them: one word, so that a
	 * forked child's reset of its parent's state cannot be mistaken for
	 * the state a thread of the child set meanwhile (__atomic). */
	uint32_t state;
	uint32_t seq;  /* futex word: bumped when there is new work */
	uint32_t idle; /* the seq the thread last found nothing left at */
	uint32_t stop;
	/* The thread's own cursor per shard: the table it is faulting in (a
	 * copy of the shard's pop_want, and pop_gen when it was read) and how
	 * far it has got. */
	struct {
		uint64_t want, gen, done;
	} cur[REGION_SHARDS_MAX];
	/* Per shard, the pop_gen last handed to the thread (__atomic). */
	uint64_t kicked[REGION_SHARDS_MAX];
};

void filler_init(struct filler *f, struct region *r);
/* After this process committed into shard @sh: if that left a resize
 * filling a table, hands the table to the thread (started on first need),
 * or faults in a step of it here when there is no thread. */
void filler_after_commit(struct filler *f, struct region *sh);
/* 1 if this process runs @f's thread. */
int filler_running(struct filler *f);
/* Waits (up to 10 s) until the thread has done all that this process's
 * commits handed it: for the tests and benchmarks that measure the file's
 * memory. */
void filler_settle(struct filler *f);
/* Stops and joins the thread, if this process has one.  Before the
 * region is unmapped. */
void filler_stop(struct filler *f);

#endif
