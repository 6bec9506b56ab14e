/* SPDX-License-Identifier: MIT */
/*
 * lock.c - a futex mutex in shared memory, robust against owner death.
 *
 * Word layout (32 bits, the futex word):
 *   bits  0..11  owner slot + 1 (0: free)
 *   bits 12..28  owner's slot generation
 *   bit  29      PENDING: a thread of the named process is confirming it
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
 *
 * A word naming our own process proves nothing: any peer can write it.  Each
 * thread therefore records, in private memory, the locks it holds or is
 * taking (struct lock_thread, one per thread, in a process-wide list).  The
 * entry is stored before the CAS that may take the lock and cleared after the
 * exchange that releases it, so a thread that reads our owner value from the
 * word with acquire and then finds no other thread recording the lock knows
 * the value was not written by us (self_check).  EDEADLK and the release
 * owner check read the calling thread's own record, never shared fields.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "prim.h"
#include "lease.h"
#include "lockwait.h"
#include "shset/lock.h"

#define LOCK_PENDING	  0x20000000u /* a thread of the owner's process checks the word */
#define LOCK_INCONSISTENT 0x40000000u
#define LOCK_WAITERS	  0x80000000u
#define SPIN_NS_MIN	  1000u	 /* the least a contended acquire spins, ns */
#define SPIN_NS_MAX	  20000u /* about a futex sleep and wake on a VM */
#define BACKOFF_NS	  1000u	 /* a sleeper's pause after a futile wake (+ timer slack) */

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

static void futex_wake_one(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* --- which locks this process's threads hold ---------------------------------- */

/*
 * One per thread that has used a lock, linked in `threads`.  held[] is
 * written only by its thread (atomics: checkers read it under threads_mu);
 * 0 is a free entry.  An entry naming lk means "holds lk, or is
 * in a CAS that may take it".  Its thread reads it plainly.
 */
struct lock_thread {
	struct lock_thread *next; /* threads_mu */
	uintptr_t held[SHSET_LOCK_HELD_MAX];
};

/* initial-exec: the fast path must not call __tls_get_addr. */
static __thread struct lock_thread *lock_self __attribute__((tls_model("initial-exec")));
/* shset_set_wait_hook's, for this thread (lockwait.h). */
__thread struct lock_wait_hook lock_wait_hook;
/* The owner value of the last dead owner this thread took a lock from
 * (0: none; owner values are never 0). */
static __thread uint32_t lock_dead_hint;
static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lock_thread *threads; /* threads_mu */
static pthread_key_t threads_key;   /* created under threads_mu */
static int threads_key_state;	    /* threads_mu: 0 not yet, 1 created, -1 failed */

/* Thread exit: the record goes, so a lock the thread still held is found
 * unrecorded by the next sibling and taken over like a dead owner's. */
static void thread_exit(void *arg)
{
	struct lock_thread *t = arg;

	/* For the race detectors, its ownership ends here (they would report
	 * the sibling's takeover as a double lock).  Annotations only. */
	for (int i = 0; i < SHSET_LOCK_HELD_MAX; i++) {
		void *lk = (void *)t->held[i];
		if (lk) {
			tsan_pre_unlock(lk);
			hg_pre_unlock(lk);
			tsan_post_unlock(lk);
			hg_post_unlock(lk);
		}
	}
	pthread_mutex_lock(&threads_mu);
	for (struct lock_thread **p = &threads; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&threads_mu);
	lock_self = NULL;
	free(t);
}

static void threads_fork_prepare(void)
{
	pthread_mutex_lock(&threads_mu);
}

static void threads_fork_parent(void)
{
	pthread_mutex_unlock(&threads_mu);
}

/* The child has one thread, holding no lock: its lease names a new slot, and
 * the parent's locks are not its own (release says -EPERM).  The other
 * threads' records are left behind. */
static void threads_fork_child(void)
{
	struct lock_thread *t = lock_self;

	threads = t;
	if (t) {
		t->next = NULL;
		for (int i = 0; i < SHSET_LOCK_HELD_MAX; i++)
			t->held[i] = 0;
	}
	pthread_mutex_unlock(&threads_mu);
}

/* Under threads_mu rather than pthread_once, which Helgrind does not
 * model. */
static struct lock_thread *thread_register(void)
{
	struct lock_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_lock(&threads_mu);
	if (!threads_key_state) {
		threads_key_state = -1;
		if (pthread_key_create(&threads_key, thread_exit) == 0 &&
		    pthread_atfork(threads_fork_prepare, threads_fork_parent, threads_fork_child) ==
			0)
			threads_key_state = 1;
	}
	if (threads_key_state < 0 || pthread_setspecific(threads_key, t) != 0) {
		pthread_mutex_unlock(&threads_mu);
		free(t);
		return NULL;
	}
	t->next = threads;
	threads = t;
	pthread_mutex_unlock(&threads_mu);
	lock_self = t;
	return t;
}

static inline struct lock_thread *thread_self(void)
{
	struct lock_thread *t = lock_self;
	return __builtin_expect(t != NULL, 1) ? t : thread_register();
}

static __attribute__((noinline)) int held_find_rest(const struct lock_thread *t,
						    const shset_lock *lk)
{
	for (int i = 1; i < SHSET_LOCK_HELD_MAX; i++)
		if (t->held[i] == (uintptr_t)lk)
			return i;
	return -1;
}

/* Entry 0 first, inline: a thread holding one lock (the common case) has
 * it there, and the release path must not pay for a search of them all. */
static inline int held_find(const struct lock_thread *t, const shset_lock *lk)
{
	if (__builtin_expect(t->held[0] == (uintptr_t)lk, 1))
		return 0;
	return held_find_rest(t, lk);
}

/* 1 if a thread of this process other than @self records @lk.  threads_mu. */
static int threads_hold(const shset_lock *lk, const struct lock_thread *self)
{
	for (const struct lock_thread *t = threads; t; t = t->next) {
		if (t == self)
			continue;
		for (int i = 0; i < SHSET_LOCK_HELD_MAX; i++)
			if (__atomic_load_n(&t->held[i], __ATOMIC_ACQUIRE) == (uintptr_t)lk)
				return 1;
	}
	return 0;
}

/*
 * Every CAS that may make the calling thread the owner goes through here.
 * The entry is stored first and the CAS releases it: a thread that later
 * reads a value of the word from this CAS or its release sequence with
 * acquire (self_check) sees the entry, even if we are preempted right after
 * the CAS.  On failure the entry is cleared again, so a thread that merely
 * waits is never recorded.
 */
static inline int take(shset_lock *lk, uint32_t *v, uint32_t nv, uintptr_t *entry)
{
	__atomic_store_n(entry, (uintptr_t)lk, __ATOMIC_RELAXED);
	if (__builtin_expect(__atomic_compare_exchange_n(&lk->word, v, nv, 0, __ATOMIC_ACQ_REL,
							 __ATOMIC_RELAXED),
			     1))
		return 1;
	__atomic_store_n(entry, 0, __ATOMIC_RELAXED);
	return 0;
}

/* Drops a PENDING mark from a word still naming @me.  Bounded: a peer
 * rewriting the word in a loop must not hold us here, and a mark left behind
 * is ignored by the next check (checks are serialised by threads_mu). */
static void unmark(shset_lock *lk, uint32_t me)
{
	uint32_t w = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);

	for (int n = 0; n < 16 && (w & LOCK_PENDING) && (w & LEASE_OWNER_MASK) == me; n++)
		if (__atomic_compare_exchange_n(&lk->word, &w, w & ~LOCK_PENDING, 0,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED))
			break;
}

enum { SELF_CHANGED, SELF_GENUINE, SELF_TAKEN };

/*
 * The word names this process (owner bits == @me) and the calling thread
 * @t does not hold @lk.  SELF_GENUINE: another thread of ours holds it or may
 * just have taken it (wait for it); SELF_CHANGED: the word moved (look
 * again); SELF_TAKEN: nobody of ours holds it, so a peer wrote our value (or
 * a thread exited holding it), and we took it over into *@nvp with
 * INCONSISTENT set, entry @i recording it.
 *
 * Why a takeover is safe: checks run one at a time under threads_mu, and
 * PENDING is written only by them (and by peers, who can break anything).
 * CAS1 marks the word; it is acquire and reads the latest value, so it
 * synchronises with the take() that wrote our owner bits (the word changes
 * only by RMWs while held, which continue that release sequence), and the
 * scan after it sees that thread's entry.  A genuine owner could drop its
 * entry only after its releasing exchange, which clears PENDING and makes
 * CAS2 fail; and nobody can take the lock while the owner bits stay set.  So
 * if CAS2 finds the word still marked and the scan found no entry, no thread
 * of ours held it at CAS1, nor does now.
 */
static int self_check(shset_lock *lk, struct lock_thread *t, int i, uint32_t me, uint32_t *nvp)
{
	int res = SELF_GENUINE;
	uint32_t v;

	pthread_mutex_lock(&threads_mu);
	/* A cheap look first: an entry seen now means wait, without touching
	 * the word (acquire pairs with take()'s release CAS). */
	v = __atomic_load_n(&lk->word, __ATOMIC_ACQUIRE);
	if ((v & LEASE_OWNER_MASK) != me) {
		res = SELF_CHANGED;
		goto out;
	}
	if (threads_hold(lk, t))
		goto out;
	uint32_t marked = v | LOCK_PENDING;
	if (!__atomic_compare_exchange_n(&lk->word, &v, marked, 0, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED)) {
		res = SELF_CHANGED;
		goto out;
	}
	if (!threads_hold(lk, t)) {
		uint32_t nv = me | LOCK_INCONSISTENT | (v & LOCK_WAITERS);
		if (take(lk, &marked, nv, &t->held[i])) {
			*nvp = nv;
			res = SELF_TAKEN;
			goto out;
		}
		res = SELF_CHANGED;
	}
	unmark(lk, me);
out:
	pthread_mutex_unlock(&threads_mu);
	return res;
}

/*
 * Frees @lk if its word names this process (@me) and no thread of ours
 * holds it or is taking it: a peer wrote our value there.  Left as it is,
 * a process that holds another lock of ours and waits on this one waits for
 * us, while we wait for it on that other lock.  The word is freed
 * INCONSISTENT, as a dead owner's: the next owner repairs whatever the peer
 * wrote.  The same two-step check as self_check (CAS1 marks, the scan, CAS2
 * acts on a word still marked), with threads_mu held by the caller; no
 * thread of ours is excepted, the caller included.
 */
static void unforge(shset_lock *lk, uint32_t me, void *arg)
{
	uint32_t v = __atomic_load_n(&lk->word, __ATOMIC_ACQUIRE);

	(void)arg;
	if ((v & LEASE_OWNER_MASK) != me || threads_hold(lk, NULL))
		return;
	uint32_t marked = v | LOCK_PENDING;
	if (!__atomic_compare_exchange_n(&lk->word, &v, marked, 0, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED))
		return;
	if (!threads_hold(lk, NULL)) {
		uint32_t w = marked;
		if (__atomic_compare_exchange_n(&lk->word, &w, LOCK_INCONSISTENT, 0,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
			bump(&lk->owner_died);
			if (marked & LOCK_WAITERS)
				futex_wake_one(&lk->word);
			return;
		}
	}
	unmark(lk, me);
}

/* A waiter's look, at each check interval, at the other locks of every
 * handle of this process (lease_each_watched): see unforge. */
static void unforge_all(void)
{
	pthread_mutex_lock(&threads_mu);
	lease_each_watched(unforge, NULL);
	pthread_mutex_unlock(&threads_mu);
}

/* --- the lock ------------------------------------------------------------------------ */

void shset_lock_init(shset_lock *lk)
{
	if (!lk)
		return;
	*lk = (shset_lock){0};
	__atomic_store_n(&lk->word, 0, __ATOMIC_RELEASE);
}

static inline int acquired(shset_lock *lk, uint32_t word_after)
{
	/* Informational (inspection): decisions never read it back. */
	__atomic_store_n(&lk->owner_tid, lease_tid(), __ATOMIC_RELAXED);
	bump(&lk->acquisitions);
	return (word_after & LOCK_INCONSISTENT) ? SHSET_LOCK_OWNER_DIED : 0;
}

static int took_over(shset_lock *lk, uint32_t nv)
{
	bump(&lk->owner_died);
	bump(&lk->contended);
	return acquired(lk, nv);
}

/*
 * Spins while the owner is likely running a short section: 1 with the lock
 * taken (word *@nvp), 0 to go to sleep.
 *
 * The budget is time, not iterations (a pause costs 5 to 150 cycles
 * depending on the CPU), and adapts to how long spinning took when it
 * worked; a spin that ran out moves it towards the maximum.
 *
 * A spin also ends as soon as anyone else acquires the lock: the owner is
 * then cycling (releasing and taking it again at once, or handing it to a
 * barger), and a spinner cannot win against a holder whose cache already has
 * the line; its polling only steals that line from the holder on every
 * round, halving the holder's rate, and a spinner that does win moves the
 * line over and starts the same fight from the other side.  acquisitions
 * sits in the word's cache line, so watching it costs nothing extra; a peer
 * writing it can only make us sleep sooner.
 */
static int spin_phase(shset_lock *lk, uintptr_t *entry, uint32_t me, uint32_t *nvp)
{
	uint32_t v, est = __atomic_load_n(&lk->spin, __ATOMIC_RELAXED);
	uint64_t budget = (uint64_t)est * 2 + SPIN_NS_MIN, t0 = prim_mono_ns();
	uint64_t acq0 = __atomic_load_n(&lk->acquisitions, __ATOMIC_RELAXED);

	if (budget > SPIN_NS_MAX)
		budget = SPIN_NS_MAX;
	for (uint32_t n = 1;; n++) {
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		if (!(v & LEASE_OWNER_MASK)) {
			uint32_t nv = me | (v & (LOCK_WAITERS | LOCK_INCONSISTENT));

			if (take(lk, &v, nv, entry)) {
				int64_t took = (int64_t)(prim_mono_ns() - t0);
				__atomic_store_n(
				    &lk->spin, (uint32_t)((int64_t)est + (took - (int64_t)est) / 8),
				    __ATOMIC_RELAXED);
				*nvp = nv;
				return 1;
			}
		}
		if (__atomic_load_n(&lk->acquisitions, __ATOMIC_RELAXED) != acq0)
			return 0;
		if (!(n & 31)) {
			uint64_t spent = prim_mono_ns() - t0;
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
		prim_cpu_relax();
	}
	__atomic_store_n(&lk->spin, est + (SPIN_NS_MAX - est) / 8, __ATOMIC_RELAXED);
	return 0;
}

/*
 * A sleeper woke (or its wait found the word changed) and the lock is held
 * again: the owner is cycling faster than a wake-up travels.  Asking for
 * another wake at once would cost the owner a FUTEX_WAKE on its next release
 * and us a wait that finds the word changed again, round after round (on 2
 * vCPUs half a million futex calls a second, most of them futile).  Instead
 * sleep once without asking (the kernel's timer slack makes this about 50
 * us), then compete again; the owner meanwhile runs with its cache line to
 * itself.  Within @deadline_ns (0: none).
 */
static void back_off(uint64_t deadline_ns)
{
	uint64_t ns = BACKOFF_NS;

	if (deadline_ns) {
		uint64_t now = prim_mono_ns();
		if (now >= deadline_ns)
			return;
		if (deadline_ns - now < ns)
			ns = deadline_ns - now;
	}
	struct timespec ts = prim_ns_timespec(ns);
	nanosleep(&ts, NULL);
}

/*
 * The contended path.  @deadline_ns is CLOCK_MONOTONIC, 0 for none.
 * Returns 0/OWNER_DIED with the lock held, or -ETIMEDOUT.
 */
static int lock_slow(shset_lock *lk, struct shset_lease *l, struct lock_thread *t, int i,
		     uint32_t me, uint64_t deadline_ns)
{
	uint32_t v, nv;
	uintptr_t *entry = &t->held[i];

	/* Phase 1: spin. */
	if (spin_phase(lk, entry, me, &nv)) {
		bump(&lk->contended);
		return acquired(lk, nv);
	}

	/* Phase 2: sleep, waking at least every check interval to see whether
	 * the owner still lives. */
	uint64_t check = lease_check_ns(l);
	/* Absolute: a wait that a signal ends early (EINTR, with SA_RESTART
	 * too) must not start a new full interval, or a process receiving
	 * signals more often than the interval never checks the owner. */
	uint64_t next_check = prim_mono_ns() + check;
	/* An owner this thread found dead before (it held several locks, a
	 * set's shards) is checked at once, not after an interval per lock. */
	if ((__atomic_load_n(&lk->word, __ATOMIC_RELAXED) & LEASE_OWNER_MASK) == lock_dead_hint)
		next_check = 0;
	for (;;) {
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		if (!(v & LEASE_OWNER_MASK)) {
			nv = me | LOCK_WAITERS | (v & LOCK_INCONSISTENT);

			if (take(lk, &v, nv, entry)) {
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
		uint64_t now = prim_mono_ns();
		if (deadline_ns && now >= deadline_ns)
			return -ETIMEDOUT;
		if (now < next_check) {
			uint64_t until =
			    deadline_ns && deadline_ns < next_check ? deadline_ns : next_check;
			struct timespec ts = prim_ns_timespec(until);
			r = futex_wait_abs(&lk->word, v, &ts);
			if (r != -ETIMEDOUT) {
				if ((r == 0 || r == -EAGAIN) &&
				    (__atomic_load_n(&lk->word, __ATOMIC_RELAXED) &
				     LEASE_OWNER_MASK))
					back_off(deadline_ns);
				if (prim_mono_ns() < next_check)
					continue;
			}
		}
		next_check = prim_mono_ns() + check;
		/* The caller's hook may give up (a binding's interrupt); the
		 * lock is not ours, so nothing is undone.  A hook that forked
		 * (a Python handler calling os.fork) gives up in the child: it
		 * would wait with its parent's owner value and take the lock
		 * while the parent holds it, and the locks the operation took
		 * first are its parent's, not its own. */
		if (lock_wait_hook.fn) {
			unsigned fg = __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED);
			if (lock_wait_hook.fn(lock_wait_hook.arg) ||
			    fg != __atomic_load_n(&lease_forkgen, __ATOMIC_RELAXED))
				return -ECANCELED;
		}
		/* Nobody released it for a whole interval: is the owner alive? */
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
		uint32_t owner = v & LEASE_OWNER_MASK;
		if (!owner)
			continue;
		int alive = lease_owner_alive(l, owner);
		if (alive == LEASE_OWNER_SELF) {
			/* Ours by the word: only our threads' records can say. */
			if (self_check(lk, t, i, me, &nv) == SELF_TAKEN)
				return took_over(lk, nv);
			continue;
		}
		if (alive) {
			/* The owner may be waiting for a lock we hold, on a
			 * word that names us falsely. */
			unforge_all();
			continue;
		}
		nv = me | LOCK_INCONSISTENT | (v & LOCK_WAITERS);
		if (take(lk, &v, nv, entry)) {
			lock_dead_hint = owner;
			return took_over(lk, nv);
		}
	}
}

/* The first CAS failed with @v.  As lock_slow, or -EBUSY for @try. */
static int lock_contended(shset_lock *lk, struct shset_lease *l, struct lock_thread *t, int i,
			  uint32_t me, uint32_t v, int try, uint64_t deadline_ns)
{
	uint32_t nv;

	/* Bounded: past a few changes of the word, try reports busy and
	 * acquire goes on to wait. */
	for (int n = 0; n < 4; n++) {
		uint32_t owner = v & LEASE_OWNER_MASK;

		if (!owner) {
			if (!try)
				break;
			/* Free but INCONSISTENT or WAITERS set: take it as is. */
			nv = me | (v & (LOCK_WAITERS | LOCK_INCONSISTENT));
			if (take(lk, &v, nv, &t->held[i]))
				return acquired(lk, nv);
			continue;
		}
		if (owner != me)
			break;
		switch (self_check(lk, t, i, me, &nv)) {
		case SELF_TAKEN:
			return took_over(lk, nv);
		case SELF_GENUINE:
			return try ? -EBUSY : lock_slow(lk, l, t, i, me, deadline_ns);
		}
		v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
	}
	return try ? -EBUSY : lock_slow(lk, l, t, i, me, deadline_ns);
}

/* A free entry in the calling thread's record (lock_self, registered if
 * need be), or -errno.  Out of line: the fast path has a record whose first
 * entry is free. */
static __attribute__((noinline)) int thread_entry(const shset_lock *lk)
{
	struct lock_thread *t = thread_self();
	int i;

	if (!t)
		return -ENOMEM;
	for (i = 0; i < SHSET_LOCK_HELD_MAX && t->held[i]; i++)
		if (t->held[i] == (uintptr_t)lk)
			return -EDEADLK;
	/* None free: this thread holds SHSET_LOCK_HELD_MAX locks. */
	return i < SHSET_LOCK_HELD_MAX ? i : -ENOLCK;
}

/* The first CAS failed with @v. */
static __attribute__((noinline)) int lock_miss(shset_lock *lk, struct shset_lease *l,
					       struct lock_thread *t, int i, uint32_t me,
					       uint32_t v, int try, uint64_t deadline_ns)
{
	/* This thread holds it already: a relock would deadlock. */
	if (held_find(t, lk) >= 0)
		return -EDEADLK;
	return lock_contended(lk, l, t, i, me, v, try, deadline_ns);
}

static inline __attribute__((always_inline)) int lock_common(shset_lock *lk, struct shset_lease *l,
							     int try, uint64_t deadline_ns)
{
	struct lock_thread *t = lock_self;
	uint32_t me, v = 0;
	int i = 0, r;

	if (!lk || !l)
		return -EINVAL;
	me = lease_me(l);
	if (!me)
		return -EUSERS;
	if (__builtin_expect(!t || t->held[0], 0)) {
		i = thread_entry(lk);
		if (i < 0)
			return i;
		t = lock_self;
	}
	tsan_pre_lock(lk, try ? TSAN_TRY : 0);
	hg_pre_lock(lk, try);
	if (__builtin_expect(take(lk, &v, me, &t->held[i]), 1))
		r = acquired(lk, me);
	else
		r = lock_miss(lk, l, t, i, me, v, try, deadline_ns);
	if (r >= 0) {
		tsan_post_lock(lk, try ? TSAN_TRY : 0);
		hg_post_lock(lk);
	} else {
		tsan_post_lock(lk, (try ? TSAN_TRY : 0) | TSAN_TRY_FAILED);
	}
	return r;
}

void shset_set_wait_hook(shset_wait_fn fn, void *arg)
{
	lock_wait_hook.fn = fn;
	lock_wait_hook.arg = fn ? arg : NULL;
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
	uint64_t d = prim_timespec_ns(deadline);
	return lock_common(lk, l, 0, d ? d : 1);
}

/*
 * The calling thread owns @lk if its own record says so and the word still
 * names this process; the shared owner_tid is never consulted.  Returns the
 * record entry, or -EPERM (*@ip the entry if the record holds @lk but the
 * word names someone else: a peer rewrote it).
 */
static int check_owner(shset_lock *lk, struct shset_lease *l, uint32_t *vp, int *ip)
{
	struct lock_thread *t = lock_self;
	uint32_t me, v;
	int i;

	*ip = -1;
	if (!lk || !l)
		return -EINVAL;
	if (!t || (i = held_find(t, lk)) < 0)
		return -EPERM;
	*ip = i;
	me = lease_me(l);
	v = __atomic_load_n(&lk->word, __ATOMIC_RELAXED);
	if (!me || (v & LEASE_OWNER_MASK) != me)
		return -EPERM;
	*vp = v;
	return i;
}

/* check_owner's -EPERM for a lock the thread records but whose word a
 * peer rewrote: the record is forgotten, or this thread would get -EDEADLK
 * from the lock for ever (and -ENOLCK from every lock once
 * SHSET_LOCK_HELD_MAX such records piled up). */
static int not_owner(int err, int i)
{
	if (i >= 0)
		__atomic_store_n(&lock_self->held[i], 0, __ATOMIC_RELAXED);
	return err;
}

int shset_lock_release(shset_lock *lk, shset_lease *l)
{
	uint32_t v;
	int i, err = check_owner(lk, l, &v, &i);

	if (err < 0)
		return not_owner(err, i);
	tsan_pre_unlock(lk);
	hg_pre_unlock(lk);
	__atomic_store_n(&lk->owner_tid, 0, __ATOMIC_RELAXED);
	/* Release pairs with the acquiring CAS of the next owner.  Only the
	 * owner changes INCONSISTENT, so one exchange keeps it and clears the
	 * rest (a sibling's PENDING mark too); waiters may have set WAITERS
	 * meanwhile, which the old value reports. */
	uint32_t old = __atomic_exchange_n(&lk->word, v & LOCK_INCONSISTENT, __ATOMIC_RELEASE);
	/* Only now: until the exchange, a sibling that reads our owner value
	 * must find the entry.  Release pairs with threads_hold()'s acquire:
	 * a checker that sees the entry gone also sees the exchange, so its
	 * CAS2 cannot be ordered before it (self_check). */
	__atomic_store_n(&lock_self->held[i], 0, __ATOMIC_RELEASE);
	if (old & LOCK_WAITERS)
		futex_wake_one(&lk->word);
	tsan_post_unlock(lk);
	hg_post_unlock(lk);
	return 0;
}

int shset_lock_consistent(shset_lock *lk, shset_lease *l)
{
	uint32_t v;
	int i, err = check_owner(lk, l, &v, &i);

	if (err < 0)
		return not_owner(err, i);
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
