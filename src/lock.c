/* SPDX-License-Identifier: MIT */
/*
 * lock.c - a futex mutex in shared memory, robust against owner death.
 *
 * Word layout (32 bits, the futex word):
 *   bits  0..11  owner slot + 1 (0: free)
 *   bits 12..28  owner's slot generation
 *   bit  30      INCONSISTENT: an owner died; data awaits repair
 *   bit  31      WAITERS: some process may sleep in FUTEX_WAIT
 *
 * Drepper's "Futexes Are Tricky" mutex 3 with the owner in the word: a CAS
 * takes a free lock; release clears owner and WAITERS with one atomic and
 * calls FUTEX_WAKE only if WAITERS was set, so an uncontended pair makes no
 * system call.  A thread that has slept cannot know whether others still
 * sleep, so it takes the lock with WAITERS set (one spare wake at worst).
 *
 * Owner death: a sleeper wakes at least every check interval, and if the
 * owner's lease is gone (lease_owner_alive) it CASes the word from that exact
 * value to itself with INCONSISTENT set.  Only one waiter's CAS can succeed.
 * INCONSISTENT stays in the word across releases until
 * shset_lock_consistent(), so if the recoverer dies too, the next owner is
 * told again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lease.h"
#include "shset/lock.h"

#define LOCK_INCONSISTENT 0x40000000u
#define LOCK_WAITERS	  0x80000000u
#define SPIN_NS_MIN	  1000u	 /* the least a contended acquire spins, ns */
#define SPIN_NS_MAX	  20000u /* about a futex sleep and wake on a VM */

#if defined(__SANITIZE_THREAD__)
#define SHSET_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHSET_TSAN 1
#endif
#endif

#ifdef SHSET_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_pre_lock(m, f)  __tsan_mutex_pre_lock(m, f)
#define tsan_post_lock(m, f) __tsan_mutex_post_lock(m, f, 0)
#define tsan_pre_unlock(m)   __tsan_mutex_pre_unlock(m, 0)
#define tsan_post_unlock(m)  __tsan_mutex_post_unlock(m, 0)
#define TSAN_TRY	     __tsan_mutex_try_lock
#define TSAN_TRY_FAILED	     __tsan_mutex_try_lock_failed
#else
#define tsan_pre_lock(m, f)  ((void)0)
#define tsan_post_lock(m, f) ((void)0)
#define tsan_pre_unlock(m)   ((void)0)
#define tsan_post_unlock(m)  ((void)0)
#define TSAN_TRY	     0
#define TSAN_TRY_FAILED	     0
#endif

#ifdef SHSET_HELGRIND
#include <valgrind/helgrind.h>
#define hg_pre_lock(m, t) VALGRIND_HG_MUTEX_LOCK_PRE(m, t)
#define hg_post_lock(m)	  VALGRIND_HG_MUTEX_LOCK_POST(m)
#define hg_pre_unlock(m)  VALGRIND_HG_MUTEX_UNLOCK_PRE(m)
#define hg_post_unlock(m) VALGRIND_HG_MUTEX_UNLOCK_POST(m)
#else
#define hg_pre_lock(m, t) ((void)0)
#define hg_post_lock(m)	  ((void)0)
#define hg_pre_unlock(m)  ((void)0)
#define hg_post_unlock(m) ((void)0)
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Counters are written only by the owner; relaxed atomics keep TSan and
 * concurrent readers (inspect) well defined without a locked instruction. */
static inline void bump(uint64_t *c)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static int futex_wait_abs(uint32_t *word, uint32_t val, const struct timespec *abs)
{
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.  No
	 * FUTEX_PRIVATE_FLAG: waiters and wakers live in different processes. */
	long r =
	    syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, abs, NULL, FUTEX_BITSET_MATCH_ANY);
	return r < 0 ? -errno : 0;
}

static int futex_wait_rel(uint32_t *word, uint32_t val, const struct timespec *rel)
{
	long r = syscall(SYS_futex, word, FUTEX_WAIT, val, rel, NULL, 0);
	return r < 0 ? -errno : 0;
}

static void futex_wake_one(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void shset_lock_init(shset_lock *lk)
{
	if (!lk)
		return;
	*lk = (shset_lock){0};
	__atomic_store_n(&lk->word, 0, __ATOMIC_RELEASE);
}

static inline int acquired(shset_lock *lk, uint32_t word_after)
{
	__atomic_store_n(&lk->owner_tid, lease_tid(), __ATOMIC_RELAXED);
	bump(&lk->acquisitions);
	return (word_after & LOCK_INCONSISTENT) ? SHSET_LOCK_OWNER_DIED : 0;
}

/*
 * The contended path.  @deadline_ns is CLOCK_MONOTONIC, 0 for none.
 * Returns 0/OWNER_DIED with the lock held, or -ETIMEDOUT.
 */
static int lock_slow(shset_lock *lk, struct shset_lease *l, uint32_t me, uint64_t deadline_ns)
{
	uint32_t v, est = __atomic_load_n(&lk->spin, __ATOMIC_RELAXED);
	uint64_t budget = (uint64_t)est * 2 + SPIN_NS_MIN, t0 = mono_ns();

	if (budget > SPIN_NS_MAX)
		budget = SPIN_NS_MAX;
	/* Phase 1: spin while the owner is likely running its short section.
	 * The budget is time, not iterations (a pause costs 5 to 150 cycles
	 * depending on the CPU), and adapts to how long spinning took when it
	 * worked; a failed spin moves it towards the maximum, since the sleep
	 * that follows costs more than the spin did. */
	for (uint32_t i = 1;; i++) {
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		if (!(v & LEASE_OWNER_MASK)) {
			uint32_t nv = me | (v & (LOCK_WAITERS | LOCK_INCONSISTENT));

			if (__atomic_compare_exchange_n(&lk->word, &v, nv, 0, __ATOMIC_ACQUIRE,
							__ATOMIC_RELAXED)) {
				int64_t took = (int64_t)(mono_ns() - t0);
				__atomic_store_n(
				    &lk->spin, (uint32_t)((int64_t)est + (took - (int64_t)est) / 8),
				    __ATOMIC_RELAXED);
				bump(&lk->contended);
				return acquired(lk, nv);
			}
		}
		if (!(i & 31)) {
			uint64_t spent = mono_ns() - t0;
			if (spent > budget)
				break;
			/* Past a short spin the owner may be preempted (more
			 * processes than CPUs): give it the CPU rather than burn
			 * the time it needs. */
			if (spent > SPIN_NS_MIN) {
				sched_yield();
				continue;
			}
		}
		cpu_relax();
	}
	__atomic_store_n(&lk->spin, est + (SPIN_NS_MAX - est) / 8, __ATOMIC_RELAXED);

	/* Phase 2: sleep, waking at least every check interval to see whether
	 * the owner still lives. */
	uint64_t check = lease_check_ns(l);
	for (;;) {
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		if (!(v & LEASE_OWNER_MASK)) {
			uint32_t nv = me | LOCK_WAITERS | (v & LOCK_INCONSISTENT);

			if (__atomic_compare_exchange_n(&lk->word, &v, nv, 0, __ATOMIC_ACQUIRE,
							__ATOMIC_RELAXED)) {
				bump(&lk->contended);
				return acquired(lk, nv);
			}
			continue;
		}
		if (!(v & LOCK_WAITERS)) {
			if (!__atomic_compare_exchange_n(&lk->word, &v, v | LOCK_WAITERS, 0,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
				continue;
			v |= LOCK_WAITERS;
		}
		int r;
		bump(&lk->futex_waits);
		if (deadline_ns) {
			uint64_t now = mono_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			uint64_t until = now + check < deadline_ns ? now + check : deadline_ns;
			struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
					      .tv_nsec = (long)(until % 1000000000u)};
			r = futex_wait_abs(&lk->word, v, &ts);
		} else {
			/* No clock read on the common path: a relative wait. */
			struct timespec ts = {.tv_sec = (time_t)(check / 1000000000u),
					      .tv_nsec = (long)(check % 1000000000u)};
			r = futex_wait_rel(&lk->word, v, &ts);
		}
		if (r != -ETIMEDOUT)
			continue;
		/* Nobody released it for a whole interval: is the owner alive? */
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		uint32_t owner = v & LEASE_OWNER_MASK;
		if (!owner || lease_owner_alive(l, owner))
			continue;
		uint32_t nv = me | LOCK_INCONSISTENT | (v & LOCK_WAITERS);
		if (__atomic_compare_exchange_n(&lk->word, &v, nv, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED)) {
			bump(&lk->owner_died);
			bump(&lk->contended);
			return acquired(lk, nv);
		}
	}
}

static int lock_common(shset_lock *lk, struct shset_lease *l, int try, uint64_t deadline_ns)
{
	uint32_t me, v = 0;
	int r;

	if (!lk || !l)
		return -EINVAL;
	me = lease_me(l);
	if (!me)
		return -EUSERS;
	tsan_pre_lock(lk, try ? TSAN_TRY : 0);
	hg_pre_lock(lk, try);
	if (__builtin_expect(__atomic_compare_exchange_n(&lk->word, &v, me, 0, __ATOMIC_ACQUIRE,
							 __ATOMIC_RELAXED),
			     1)) {
		r = acquired(lk, me);
	} else if ((v & LEASE_OWNER_MASK) == me) {
		/* Same process, same thread: a relock would deadlock. */
		r = __atomic_load_n(&lk->owner_tid, __ATOMIC_RELAXED) == lease_tid() ? -EDEADLK
		    : try							     ? -EBUSY
			  : lock_slow(lk, l, me, deadline_ns);
	} else if (try) {
		r = -EBUSY;
		if (!(v & LEASE_OWNER_MASK)) {
			/* Free but INCONSISTENT or WAITERS set: take it as is. */
			uint32_t nv = me | v;
			if (__atomic_compare_exchange_n(&lk->word, &v, nv, 0, __ATOMIC_ACQUIRE,
							__ATOMIC_RELAXED))
				r = acquired(lk, nv);
		}
	} else {
		r = lock_slow(lk, l, me, deadline_ns);
	}
	if (r >= 0) {
		tsan_post_lock(lk, try ? TSAN_TRY : 0);
		hg_post_lock(lk);
	} else {
		tsan_post_lock(lk, (try ? TSAN_TRY : 0) | TSAN_TRY_FAILED);
	}
	return r;
}

int shset_lock_acquire(shset_lock *lk, shset_lease *l)
{
	return lock_common(lk, l, 0, 0);
}

int shset_lock_tryacquire(shset_lock *lk, shset_lease *l)
{
	return lock_common(lk, l, 1, 0);
}

int shset_lock_timedacquire(shset_lock *lk, shset_lease *l, const struct timespec *deadline)
{
	if (!deadline || deadline->tv_sec < 0 || deadline->tv_nsec < 0 ||
	    deadline->tv_nsec >= 1000000000)
		return -EINVAL;
	uint64_t d = (uint64_t)deadline->tv_sec * 1000000000u + (uint64_t)deadline->tv_nsec;
	return lock_common(lk, l, 0, d ? d : 1);
}

static int check_owner(shset_lock *lk, struct shset_lease *l, uint32_t *vp)
{
	uint32_t me, v;

	if (!lk || !l)
		return -EINVAL;
	me = lease_me(l);
	v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
	if (!me || (v & LEASE_OWNER_MASK) != me ||
	    __atomic_load_n(&lk->owner_tid, __ATOMIC_RELAXED) != lease_tid())
		return -EPERM;
	*vp = v;
	return 0;
}

int shset_lock_release(shset_lock *lk, shset_lease *l)
{
	uint32_t v;
	int err = check_owner(lk, l, &v);

	if (err)
		return err;
	tsan_pre_unlock(lk);
	hg_pre_unlock(lk);
	__atomic_store_n(&lk->owner_tid, 0, __ATOMIC_RELAXED);
	/* Release pairs with the acquiring CAS of the next owner.  Only the
	 * owner changes INCONSISTENT, so one exchange keeps it and clears the
	 * rest; waiters may have set WAITERS meanwhile, which the old value
	 * reports. */
	uint32_t old = __atomic_exchange_n(&lk->word, v & LOCK_INCONSISTENT, __ATOMIC_RELEASE);
	if (old & LOCK_WAITERS)
		futex_wake_one(&lk->word);
	tsan_post_unlock(lk);
	hg_post_unlock(lk);
	return 0;
}

int shset_lock_consistent(shset_lock *lk, shset_lease *l)
{
	uint32_t v;
	int err = check_owner(lk, l, &v);

	if (err)
		return err;
	__atomic_fetch_and(&lk->word, ~LOCK_INCONSISTENT, __ATOMIC_RELAXED);
	return 0;
}

int shset_lock_state(const shset_lock *lk, struct shset_lock_state *st)
{
	if (!lk || !st)
		return -EINVAL;
	uint32_t v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
	uint32_t owner = v & LEASE_SLOT_MASK;

	st->locked = owner != 0;
	st->owner_slot = owner ? (int)owner - 1 : -1;
	st->owner_gen = (v >> LEASE_GEN_SHIFT) & LEASE_GEN_MASK;
	st->waiters = !!(v & LOCK_WAITERS);
	st->inconsistent = !!(v & LOCK_INCONSISTENT);
	st->acquisitions = __atomic_load_n(&lk->acquisitions, __ATOMIC_RELAXED);
	st->contended = __atomic_load_n(&lk->contended, __ATOMIC_RELAXED);
	st->futex_waits = __atomic_load_n(&lk->futex_waits, __ATOMIC_RELAXED);
	st->owner_died = __atomic_load_n(&lk->owner_died, __ATOMIC_RELAXED);
	return 0;
}
