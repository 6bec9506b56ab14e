/* SPDX-License-Identifier: MIT */
/*
 * shset/lock.h - a robust cross-process futex mutex for any shared memory.
 *
 * The lock itself (struct shset_lock) is 64 bytes placed anywhere in memory
 * mapped MAP_SHARED by every user, zero-initialised or set up with
 * shset_lock_init().  Each process takes part through a lease: a slot in a
 * slot table (also in shared memory) plus an OFD lock on byte <slot> of a
 * file that every user can open (usually the same memfd), and on a byte of
 * its own for the claim's generation (offsets from 2^40 on).  The kernel drops
 * the OFD locks when the process dies, which is how a waiter learns that the
 * owner is gone; this works across PID namespaces and leaves the kernel's
 * robust list to glibc.
 *
 * All functions return >= 0 on success and -errno on failure.
 */
#ifndef SHSET_LOCK_H
#define SHSET_LOCK_H

#include <stdint.h>

/* Declared here so that the header compiles in strict C99, where <time.h>
 * need not define it; callers include <time.h> to fill one. */
struct timespec;

#ifdef __cplusplus
extern "C" {
#endif

/* Returned (>= 0: the lock IS held) when the previous owner died holding it,
 * or a previous recoverer released it without shset_lock_consistent(). */
#define SHSET_LOCK_OWNER_DIED 1

/* The largest slot table a lease can use (the lock word keeps 12 bits). */
#define SHSET_LEASE_SLOTS_MAX 4095u

/* How many shset locks one thread may hold at once: each thread records the
 * locks it holds in a private table of this size, which is what lets a lock
 * word naming this process be checked against the truth.  Acquiring one more
 * fails with -ENOLCK (nothing is taken) rather than holding a lock that the
 * table cannot vouch for, which a sibling would take over. */
#define SHSET_LOCK_HELD_MAX 40 /* a set operation over two sets takes up to 32 */

/* Lives in shared memory.  Fields are read by shset-inspect; only this
 * library writes them. */
typedef struct shset_lock {
	uint32_t word;	    /* futex word: owner slot+1, slot gen, flags */
	uint32_t owner_tid; /* owner's thread id, informational; under the lock */
	uint32_t spin;	    /* adaptive spin estimate; written by owners and by
			       waiters whose spin failed (relaxed, racy) */
	uint32_t pad;
	uint64_t acquisitions; /* counters, relaxed: written by the owner... */
	uint64_t contended;
	uint64_t futex_waits; /* ...except this one, bumped by each sleeper
				 (racy: a statistic, may miss counts) */
	uint64_t owner_died;
	uint64_t reserved[2];
} __attribute__((aligned(64))) shset_lock;

/* One per potential process, in shared memory; zero-initialised. */
struct shset_lease_slot {
	uint32_t gen;	   /* bumped by each process that claims the slot */
	uint32_t pid;	   /* claimer's pid in its own namespace (informational) */
	uint64_t since_ns; /* CLOCK_REALTIME of the claim (informational) */
};

/* A process's identity towards locks sharing one slot table. */
typedef struct shset_lease shset_lease;

/*
 * Claims a free slot of @slots (@nslots entries, at most
 * SHSET_LEASE_SLOTS_MAX) by taking an OFD write lock on byte <slot> of a
 * private reopen of @fd (through /proc/self/fd).  @fd is not kept open by the
 * lease, but it must stay open while the lease is used after a fork (the
 * child reclaims a slot through it).
 *
 * Errors: -EINVAL bad arguments, -EUSERS every slot is held by a live
 * process, or the error of open(2)/fcntl(2).
 */
int shset_lease_open(shset_lease **out, int fd, struct shset_lease_slot *slots, uint32_t nslots);
void shset_lease_close(shset_lease *l);
/* The slot this process holds (it changes in a forked child), or -errno. */
int shset_lease_slot(shset_lease *l);
/* 1 if a live process holds @slot, 0 if not, -errno on error.  Read only. */
int shset_lease_slot_alive(shset_lease *l, uint32_t slot);
/* How long a waiter sleeps between liveness checks of the owner (default
 * 10 ms; takeover of a dead owner happens within about this time). */
int shset_lease_set_check_interval(shset_lease *l, uint64_t ns);

/* The same test without a lease: is byte @slot of @fd OFD-locked by anyone
 * else?  For inspection tools. 1 alive, 0 not, -errno. */
int shset_lease_probe(int fd, uint32_t slot);

void shset_lock_init(shset_lock *lk);
/*
 * 0, or SHSET_LOCK_OWNER_DIED: the lock is held either way.  The owner died
 * when its process died, when a thread exited holding it, or when the word
 * named this process while none of its threads held it (a peer wrote it).
 * Errors: -EDEADLK the calling thread holds it already, -ENOLCK it holds
 * SHSET_LOCK_HELD_MAX locks, -ENOMEM its first lock could not record it,
 * -EUSERS a forked child found no free slot, -ECANCELED the thread's wait
 * hook gave the wait up (shset_set_wait_hook).
 *
 * Within one process, a lock is used at one address (the record names it).
 */
int shset_lock_acquire(shset_lock *lk, shset_lease *l);
/* As acquire, or -EBUSY without waiting. */
int shset_lock_tryacquire(shset_lock *lk, shset_lease *l);

/*
 * A hook that the calling thread's lock waits call at each check interval
 * (shset_lease_set_check_interval; 10 ms by default) while they still wait:
 * shset_lock_acquire and _timedacquire, and every set and value operation,
 * which wait through them.  A nonzero return gives the wait up: the lock is
 * not taken and the call fails with -ECANCELED.  A set or value operation
 * then returns -ECANCELED having changed nothing (the locks it took first
 * are released; no wait after its change is made consults the hook).
 * Signals alone never end a wait; this is for bindings that must answer an
 * interrupt (Python's Ctrl-C) while a live peer holds a lock for long.  Per
 * thread; @fn NULL removes it.  The hook must not call shset functions.
 * A hook that forks gives the wait up in the child (-ECANCELED there).
 */
typedef int (*shset_wait_fn)(void *arg);
void shset_set_wait_hook(shset_wait_fn fn, void *arg);
/* As acquire, or -ETIMEDOUT once CLOCK_MONOTONIC passes @deadline. */
int shset_lock_timedacquire(shset_lock *lk, shset_lease *l, const struct timespec *deadline);
/* -EPERM if the calling thread of this process is not the owner (decided
 * by the thread's own record and the lock word, not by owner_tid).  A peer
 * that rewrote the word of a held lock makes it -EPERM too, and the thread
 * is then free to acquire it again. */
int shset_lock_release(shset_lock *lk, shset_lease *l);
/* After SHSET_LOCK_OWNER_DIED and repairing the protected data: marks it
 * consistent, so later acquirers get 0 again.  -EPERM if not the owner; a
 * peer that rewrote the word since the acquire makes it -EPERM too, and,
 * as with release, the thread no longer holds the lock and may acquire it
 * again. */
int shset_lock_consistent(shset_lock *lk, shset_lease *l);

struct shset_lock_state {
	int locked;	    /* 1 held, 0 free */
	int owner_slot;	    /* the owner's slot, or -1 */
	uint32_t owner_gen; /* the owner's slot generation */
	int waiters;	    /* 1 if some process may sleep on it */
	int inconsistent;   /* 1 if the data awaits repair */
	uint64_t acquisitions, contended, futex_waits, owner_died;
};
/* A racy snapshot of the lock, for inspection and benchmarks. */
int shset_lock_state(const shset_lock *lk, struct shset_lock_state *st);

#ifdef __cplusplus
}
#endif
#endif
