/* SPDX-License-Identifier: MIT */
/* lease.h - per-process slots and liveness (private). */
#ifndef SHSET_LEASE_H
#define SHSET_LEASE_H

#include <stdint.h>
#include "shset/lock.h"

/* The lock word keeps the owner as (slot + 1) | gen << LEASE_GEN_SHIFT. */
#define LEASE_SLOT_BITS	 12u
#define LEASE_SLOT_MASK	 ((1u << LEASE_SLOT_BITS) - 1)
#define LEASE_GEN_SHIFT	 LEASE_SLOT_BITS
#define LEASE_GEN_BITS	 17u
#define LEASE_GEN_MASK	 ((1u << LEASE_GEN_BITS) - 1)
#define LEASE_OWNER_MASK ((1u << (LEASE_SLOT_BITS + LEASE_GEN_BITS)) - 1)

struct shset_lease {
	struct shset_lease *next; /* registry of live leases, for fork */
	int src_fd;		  /* caller's fd, reopened after fork */
	int ofd;		  /* our open file description; -1 after fork */
	uint32_t slot;
	uint32_t gen;
	uint32_t me;	   /* owner value for lock words */
	unsigned forkgen;  /* lease_forkgen when claimed */
	uint64_t check_ns; /* liveness check interval */
	struct shset_lease_slot *slots;
	uint32_t nslots;
	shset_lock **watch; /* locks lease_each_watched reports; registry */
	uint32_t nwatch;
};

extern unsigned lease_forkgen;
int lease_reclaim(struct shset_lease *l);

/* The owner value of this process, reclaiming a slot first in a forked
 * child.  Returns 0 on failure (never a valid owner). */
static inline uint32_t lease_me(struct shset_lease *l)
{
	if (__builtin_expect(l->forkgen != __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED), 0)) {
		if (lease_reclaim(l) < 0)
			return 0;
	}
	return l->me;
}

/* 1 if the process recorded as @owner (a lock word's owner bits) is alive,
 * 0 if not, LEASE_OWNER_SELF if @owner is this process's own value: a peer
 * can write that too, so only the caller's thread records can tell. */
#define LEASE_OWNER_SELF 2
int lease_owner_alive(struct shset_lease *l, uint32_t owner);

/* 1 if @lk is held by a process that is alive and is not this one: a
 * reader waiting for that holder's transaction to end need not queue for
 * the lock (the holder may just be switched out).  0 otherwise. */
int lease_holder_alive(struct shset_lease *l, const shset_lock *lk);
static inline uint64_t lease_check_ns(const struct shset_lease *l)
{
	return l->check_ns;
}

/* Records @locks (copied) as the locks whose words may name @l's owner
 * value: a set's shard locks.  Returns 0 or -ENOMEM. */
int lease_watch(struct shset_lease *l, shset_lock *const *locks, uint32_t n);

/* Calls @fn with each watched lock of each live lease of this process and
 * that lease's owner value (forked children's stale leases are skipped).
 * The leases stay open meanwhile.  Returns 0, or -EBUSY without calling @fn
 * when the registry is busy (a lease opening or closing, a fork): the
 * caller holds its own mutex, which a fork also takes, so this never waits
 * for the registry. */
int lease_each_watched(void (*fn)(shset_lock *lk, uint32_t me, void *arg), void *arg);

/* This thread's id, cached (reset in a forked child).  initial-exec: the
 * lock's fast path must not call __tls_get_addr. */
extern __thread uint32_t lease_tid_cache __attribute__((tls_model("initial-exec")));
uint32_t lease_tid_slow(void);

static inline uint32_t lease_tid(void)
{
	uint32_t t = lease_tid_cache;
	return __builtin_expect(t != 0, 1) ? t : lease_tid_slow();
}

#endif
