/* SPDX-License-Identifier: MIT */
/* test_lock.c - the robust futex lock across real processes. */
#include "helpers.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "shset/lock.h"

#define NSLOTS 64

struct area {
	struct shset_lease_slot slots[NSLOTS];
	shset_lock lock;
	uint64_t counter; /* plain: protected by the lock only */
	uint32_t ready;
	shset_lock more[SHSET_LOCK_HELD_MAX + 1];
};

static int area_fd = -1;
static struct area *A;

static void setup(void)
{
	area_fd = memfd_create("test_lock", MFD_CLOEXEC);
	ck_assert_int_ge(area_fd, 0);
	ck_assert_int_eq(ftruncate(area_fd, 4096), 0);
	A = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, area_fd, 0);
	ck_assert_ptr_ne(A, MAP_FAILED);
	shset_lock_init(&A->lock);
}

static void teardown(void)
{
	munmap(A, 4096);
	close(area_fd);
}

static shset_lease *lease(void)
{
	shset_lease *l = NULL;

	if (shset_lease_open(&l, area_fd, A->slots, NSLOTS) != 0)
		_exit(90);
	shset_lease_set_check_interval(l, 5 * 1000 * 1000);
	return l;
}

/* --- mutual exclusion ---------------------------------------------------- */

#define ME_PROCS   4
#define ME_THREADS 4
#define ME_ITERS   100000

static void *me_thread(void *arg)
{
	shset_lease *l = arg;

	for (int i = 0; i < ME_ITERS; i++) {
		if (shset_lock_acquire(&A->lock, l) != 0)
			_exit(91);
		A->counter++;
		if (shset_lock_release(&A->lock, l) != 0)
			_exit(92);
	}
	return NULL;
}

START_TEST(mutual_exclusion)
{
	pid_t pids[ME_PROCS];

	for (int p = 0; p < ME_PROCS; p++) {
		pids[p] = fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			shset_lease *l = lease();
			pthread_t th[ME_THREADS];
			for (int t = 0; t < ME_THREADS; t++)
				pthread_create(&th[t], NULL, me_thread, l);
			for (int t = 0; t < ME_THREADS; t++)
				pthread_join(th[t], NULL);
			shset_lease_close(l);
			_exit(0);
		}
	}
	for (int p = 0; p < ME_PROCS; p++)
		ck_assert_int_eq(wait_status(pids[p]), 0);
	ck_assert_uint_eq(A->counter, (uint64_t)ME_PROCS * ME_THREADS * ME_ITERS);
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_uint_eq(st.acquisitions, (uint64_t)ME_PROCS * ME_THREADS * ME_ITERS);
	ck_assert_uint_eq(st.owner_died, 0);
}
END_TEST

/* --- try, timed, ownership ----------------------------------------------- */

/* Forks a process that takes the lock, reports on @fds[1], and then waits
 * to be killed or for a byte on @release. */
static pid_t spawn_holder(int rep[2], int release_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		shset_lease *l = lease();
		int r = shset_lock_acquire(&A->lock, l);
		write_all(rep[1], &r, sizeof(r));
		char c;
		if (release_fd >= 0 && read(release_fd, &c, 1) == 1) {
			r = shset_lock_release(&A->lock, l);
			_exit(r == 0 ? 0 : 93);
		}
		for (;;)
			pause();
	}
	int r = -1;
	ck_assert_int_eq(read_all(rep[0], &r, sizeof(r)), 0);
	ck_assert_int_ge(r, 0);
	return pid;
}

static void *release_from_thread(void *arg)
{
	shset_lease *l = arg;
	return (void *)(intptr_t)shset_lock_release(&A->lock, l);
}

START_TEST(try_timed_owner)
{
	int rep[2], rel[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(rel), 0);
	pid_t h = spawn_holder(rep, rel[0]);
	shset_lease *l = lease();

	ck_assert_int_eq(shset_lock_tryacquire(&A->lock, l), -EBUSY);
	/* Not the owner: release and consistent are refused. */
	ck_assert_int_eq(shset_lock_release(&A->lock, l), -EPERM);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), -EPERM);

	struct timespec d;
	clock_gettime(CLOCK_MONOTONIC, &d);
	d.tv_nsec += 50 * 1000 * 1000;
	if (d.tv_nsec >= 1000000000) {
		d.tv_sec++;
		d.tv_nsec -= 1000000000;
	}
	uint64_t t0 = now_ns();
	ck_assert_int_eq(shset_lock_timedacquire(&A->lock, l, &d), -ETIMEDOUT);
	ck_assert_uint_ge(now_ns() - t0, 45 * 1000 * 1000);
	struct timespec bad = {.tv_sec = 0, .tv_nsec = 2000000000};
	ck_assert_int_eq(shset_lock_timedacquire(&A->lock, l, &bad), -EINVAL);

	/* The holder lets go; a timed acquire with a far deadline succeeds. */
	write_all(rel[1], "x", 1);
	d.tv_sec += 10;
	ck_assert_int_eq(shset_lock_timedacquire(&A->lock, l, &d), 0);
	ck_assert_int_eq(wait_status(h), 0);
	/* Same thread again: refused instead of deadlocking. */
	ck_assert_int_eq(shset_lock_tryacquire(&A->lock, l), -EDEADLK);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), -EDEADLK);
	/* Another thread of the owning process is not the owner either. */
	pthread_t th;
	void *ret;
	pthread_create(&th, NULL, release_from_thread, l);
	pthread_join(th, &ret);
	ck_assert_int_eq((int)(intptr_t)ret, -EPERM);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), -EPERM);
	ck_assert_int_eq(shset_lock_tryacquire(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	shset_lease_close(l);
}
END_TEST

/* --- owner death ---------------------------------------------------------- */

/* A waiter: acquires, reports the result and the time it got the lock,
 * marks consistent if told so and @fix, releases. */
struct wres {
	int r;
	uint64_t at;
};

static pid_t spawn_waiter(int rep[2], int fix)
{
	pid_t pid = fork();

	if (pid == 0) {
		shset_lease *l = lease();
		__atomic_add_fetch(&A->ready, 1, __ATOMIC_SEQ_CST);
		struct wres w = {.r = shset_lock_acquire(&A->lock, l)};
		w.at = now_ns();
		if (w.r == SHSET_LOCK_OWNER_DIED && fix)
			shset_lock_consistent(&A->lock, l);
		if (w.r >= 0)
			shset_lock_release(&A->lock, l);
		write_all(rep[1], &w, sizeof(w));
		_exit(0);
	}
	return pid;
}

static void wait_sleepers(int n)
{
	/* Until the waiters have announced themselves and one sleeps. */
	struct shset_lock_state st;
	for (int i = 0; i < 4000; i++) {
		shset_lock_state(&A->lock, &st);
		if (__atomic_load_n(&A->ready, __ATOMIC_SEQ_CST) >= (uint32_t)n && st.waiters)
			break;
		usleep(500);
	}
	usleep(2000);
}

static void one_death(void)
{
	int rep[2], wrep[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(wrep), 0);
	A->ready = 0;
	pid_t h = spawn_holder(rep, -1);
	pid_t w1 = spawn_waiter(wrep, 1), w2 = spawn_waiter(wrep, 1);
	wait_sleepers(2);
	uint64_t t0 = now_ns();
	kill(h, SIGKILL);
	ck_assert_int_eq(wait_status(h), 128 + SIGKILL);
	struct wres a, b;
	ck_assert_int_eq(read_all(wrep[0], &a, sizeof(a)), 0);
	ck_assert_int_eq(read_all(wrep[0], &b, sizeof(b)), 0);
	ck_assert_int_eq(wait_status(w1), 0);
	ck_assert_int_eq(wait_status(w2), 0);
	/* Exactly one waiter was told, the first to get the lock (reports
	 * may arrive in either order). */
	if (b.r == SHSET_LOCK_OWNER_DIED) {
		struct wres t = a;
		a = b;
		b = t;
	}
	ck_assert_int_eq(a.r, SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(b.r, 0);
	ck_assert_uint_le(a.at, b.at);
	ck_assert_uint_lt(a.at - t0, 1000ull * 1000 * 1000);
	close(rep[0]);
	close(rep[1]);
	close(wrep[0]);
	close(wrep[1]);
}

START_TEST(owner_death_100)
{
	for (int i = 0; i < 100; i++)
		one_death();
	struct shset_lock_state st;
	shset_lock_state(&A->lock, &st);
	ck_assert_uint_eq(st.owner_died, 100);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_int_eq(st.inconsistent, 0);
}
END_TEST

START_TEST(recovery_of_recovery)
{
	int rep[2], wrep[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(wrep), 0);
	pid_t h = spawn_holder(rep, -1);
	kill(h, SIGKILL);
	wait_status(h);

	/* The recoverer dies before marking consistent: told again. */
	pid_t r1 = spawn_holder(rep, -1);
	struct shset_lock_state st;
	shset_lock_state(&A->lock, &st);
	ck_assert_int_eq(st.inconsistent, 1);
	kill(r1, SIGKILL);
	wait_status(r1);

	/* The next one releases without marking consistent: told again. */
	pid_t w = spawn_waiter(wrep, 0);
	struct wres a;
	ck_assert_int_eq(read_all(wrep[0], &a, sizeof(a)), 0);
	ck_assert_int_eq(a.r, SHSET_LOCK_OWNER_DIED);
	wait_status(w);

	w = spawn_waiter(wrep, 1);
	ck_assert_int_eq(read_all(wrep[0], &a, sizeof(a)), 0);
	ck_assert_int_eq(a.r, SHSET_LOCK_OWNER_DIED);
	wait_status(w);

	/* Consistent now: plain 0. */
	w = spawn_waiter(wrep, 1);
	ck_assert_int_eq(read_all(wrep[0], &a, sizeof(a)), 0);
	ck_assert_int_eq(a.r, 0);
	wait_status(w);
	shset_lock_state(&A->lock, &st);
	ck_assert_uint_eq(st.owner_died, 2);
}
END_TEST

static void close_pipes(int a[2], int b[2])
{
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

/*
 * A peer bumps the live holder's generation in the slot table.  The holder
 * must still count as alive: a waiter that took over would be inside with
 * it, and (remembering it as dead) again on its next acquisition.
 */
START_TEST(generation_bump_keeps_holder_alive)
{
	int rep[2], rel[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(rel), 0);
	pid_t h = spawn_holder(rep, rel[0]);
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_int_eq(st.locked, 1);
	__atomic_add_fetch(&A->slots[st.owner_slot].gen, 1, __ATOMIC_RELAXED);

	shset_lease *l = lease(); /* checks every 5 ms */
	struct timespec d;
	clock_gettime(CLOCK_MONOTONIC, &d);
	d.tv_nsec += 200 * 1000 * 1000;
	if (d.tv_nsec >= 1000000000) {
		d.tv_sec++;
		d.tv_nsec -= 1000000000;
	}
	ck_assert_int_eq(shset_lock_timedacquire(&A->lock, l, &d), -ETIMEDOUT);
	/* Released by its holder, it is free and consistent. */
	ck_assert_int_eq(write(rel[1], "r", 1), 1);
	ck_assert_int_eq(wait_status(h), 0);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_uint_eq(st.owner_died, 0);
	shset_lease_close(l);
	close_pipes(rep, rel);
}
END_TEST

/* A wait hook that gives up on its third call. */
static int hook_calls;
static int give_up_third(void *arg)
{
	(void)arg;
	return ++hook_calls >= 3;
}

START_TEST(wait_hook_gives_up)
{
	int rep[2], rel[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(rel), 0);
	pid_t h = spawn_holder(rep, rel[0]);
	shset_lease *l = lease(); /* checks every 5 ms */

	hook_calls = 0;
	shset_set_wait_hook(give_up_third, NULL);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), -ECANCELED);
	ck_assert_int_eq(hook_calls, 3);
	/* Nothing taken: the holder still holds it and releases it. */
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_int_eq(st.locked, 1);
	ck_assert_int_eq(write(rel[1], "r", 1), 1);
	ck_assert_int_eq(wait_status(h), 0);
	/* An uncontended acquire never calls it. */
	hook_calls = 0;
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	ck_assert_int_eq(hook_calls, 0);
	shset_set_wait_hook(NULL, NULL);
	shset_lease_close(l);
	close_pipes(rep, rel);
}
END_TEST

/* A hook that forks on its first call (a Python handler calling os.fork):
 * the child's wait must give up, not take the lock with its parent's
 * owner value while the parent holds it. */
static pid_t hook_child = -1;
static int fork_once(void *arg)
{
	(void)arg;
	if (hook_child < 0)
		hook_child = fork();
	return 0;
}

START_TEST(wait_hook_that_forks)
{
	int rep[2], rel[2];
	ck_assert_int_eq(pipe(rep), 0);
	ck_assert_int_eq(pipe(rel), 0);
	pid_t h = spawn_holder(rep, rel[0]);
	shset_lease *l = lease();

	hook_child = -1;
	shset_set_wait_hook(fork_once, NULL);
	/* Released once the hook has forked: both then compete for it. */
	pid_t releaser = fork();
	if (releaser == 0) {
		usleep(100000);
		_exit(write(rel[1], "r", 1) == 1 ? 0 : 1);
	}
	int r = shset_lock_acquire(&A->lock, l);
	if (hook_child == 0)
		_exit(r == -ECANCELED ? 0 : 1);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(wait_status(hook_child), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	shset_set_wait_hook(NULL, NULL);
	ck_assert_int_eq(wait_status(releaser), 0);
	ck_assert_int_eq(wait_status(h), 0);
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_uint_eq(st.owner_died, 0);
	shset_lease_close(l);
	close_pipes(rep, rel);
}
END_TEST

/* --- fork ----------------------------------------------------------------- */

START_TEST(fork_child_identity)
{
	int p2c[2], c2p[2]; /* grandchild's results, child's pid */
	ck_assert_int_eq(pipe(p2c), 0);
	ck_assert_int_eq(pipe(c2p), 0);

	/* P holds the lock and forks C; C must neither own P's lock nor keep
	 * P's slot alive after P dies. */
	pid_t p = fork();
	if (p == 0) {
		shset_lease *l = lease();
		int my = shset_lease_slot(l);
		if (shset_lock_acquire(&A->lock, l) != 0)
			_exit(1);
		pid_t c = fork();
		if (c == 0) {
			int res[4];
			res[0] = shset_lease_slot(l);
			res[1] = my;
			res[2] = shset_lock_release(&A->lock, l);
			res[3] = shset_lock_tryacquire(&A->lock, l);
			write_all(p2c[1], res, sizeof(res));
			for (;;)
				pause(); /* stays alive holding inherited fds */
		}
		write_all(c2p[1], &c, sizeof(c));
		for (;;)
			pause();
	}
	pid_t c;
	int res[4];
	ck_assert_int_eq(read_all(c2p[0], &c, sizeof(c)), 0);
	ck_assert_int_eq(read_all(p2c[0], res, sizeof(res)), 0);
	ck_assert_int_ge(res[0], 0);
	ck_assert_int_ne(res[0], res[1]); /* the child has a slot of its own */
	ck_assert_int_eq(res[2], -EPERM);
	ck_assert_int_eq(res[3], -EBUSY);

	kill(p, SIGKILL);
	wait_status(p);
	shset_lease *l = lease();
	uint64_t t0 = now_ns();
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_uint_lt(now_ns() - t0, 1000ull * 1000 * 1000);
	ck_assert_int_eq(shset_lease_slot_alive(l, (uint32_t)res[1]), 0);
	ck_assert_int_eq(shset_lease_slot_alive(l, (uint32_t)res[0]), 1);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	/* c is an orphan now (not our child): wait until its slot drops. */
	kill(c, SIGKILL);
	int alive = 1;
	for (int i = 0; i < 2000 && alive; i++) {
		alive = shset_lease_slot_alive(l, (uint32_t)res[0]);
		if (alive)
			usleep(1000);
	}
	ck_assert_int_eq(alive, 0);
	shset_lease_close(l);
}
END_TEST

/* --- a peer writes our own owner value ------------------------------------ */

#define WORD_WAITERS 0x80000000u /* lock.c's layout, which a peer can read too */

/* The owner value this process writes into a free word: read while holding. */
static uint32_t own_value(shset_lease *l)
{
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
	uint32_t v = __atomic_load_n(&A->lock.word, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	return v;
}

/* A hostile peer: holds only the memory, writes the lock word (and
 * owner_tid if @tid) and exits. */
static void forge(uint32_t word, uint32_t tid)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (tid)
			__atomic_store_n(&A->lock.owner_tid, tid, __ATOMIC_SEQ_CST);
		__atomic_store_n(&A->lock.word, word, __ATOMIC_SEQ_CST);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(pid), 0);
}

START_TEST(forged_own_word)
{
	int wrep[2];
	ck_assert_int_eq(pipe(wrep), 0);
	shset_lease *l = lease();
	uint32_t me = own_value(l);

	/* A process waiting on the forged word waits for us, the named owner. */
	forge(me, 0);
	A->ready = 0;
	pid_t w = spawn_waiter(wrep, 1);
	wait_sleepers(1);
	/* We hold no lock, so the word is not ours: taken over as a dead
	 * owner's (before: slept for ever, taking the word for a sibling's). */
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	struct wres a;
	ck_assert_int_eq(read_all(wrep[0], &a, sizeof(a)), 0);
	ck_assert_int_eq(a.r, 0);
	ck_assert_int_eq(wait_status(w), 0);

	/* The lock works afterwards; tryacquire sees through a forgery too. */
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	forge(me, 0);
	ck_assert_int_eq(shset_lock_tryacquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	struct shset_lock_state st;
	shset_lock_state(&A->lock, &st);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_uint_eq(st.owner_died, 2);
	shset_lease_close(l);
}
END_TEST

struct tid_arg {
	shset_lease *l;
	int go[2], done[2];
};

/* Reports its tid, waits for a byte, then tries to release the lock it does
 * not hold and reports the result (pipes: no shared variables). */
static void *tid_thread(void *arg)
{
	struct tid_arg *a = arg;
	uint32_t tid = (uint32_t)syscall(SYS_gettid);
	int res = 1;
	char c;

	write_all(a->done[1], &tid, sizeof(tid));
	if (read_all(a->go[0], &c, 1) == 0)
		res = shset_lock_release(&A->lock, a->l);
	write_all(a->done[1], &res, sizeof(res));
	return NULL;
}

START_TEST(forged_owner_tid)
{
	shset_lease *l = lease();
	uint32_t me = own_value(l), mytid = (uint32_t)syscall(SYS_gettid);

	/* Our value and our tid: not a relock (before: -EDEADLK for ever). */
	forge(me, mytid);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	forge(me, mytid);
	ck_assert_int_eq(shset_lock_tryacquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);

	/* We hold it; a peer names another of our threads in owner_tid.  That
	 * thread still cannot release it, and we still can. */
	struct tid_arg a = {.l = l};
	ck_assert_int_eq(pipe(a.go), 0);
	ck_assert_int_eq(pipe(a.done), 0);
	pthread_t th;
	uint32_t tid;
	int res;
	ck_assert_int_eq(pthread_create(&th, NULL, tid_thread, &a), 0);
	ck_assert_int_eq(read_all(a.done[0], &tid, sizeof(tid)), 0);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	forge(__atomic_load_n(&A->lock.word, __ATOMIC_SEQ_CST), tid);
	write_all(a.go[1], "g", 1);
	ck_assert_int_eq(read_all(a.done[0], &res, sizeof(res)), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(res, -EPERM);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), -EDEADLK);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), -EPERM);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	shset_lease_close(l);
}
END_TEST

/* 8 threads of one process and 2 of another contend; most of the time the
 * word names the first process while another of its threads asks whether
 * that is genuine.  A sibling that has just won its CAS (or holds the lock)
 * must never be taken for a forgery. */
#define FT_THREADS 8
#define FT_ITERS   40000

static void *ft_thread(void *arg)
{
	shset_lease *l = arg;

	for (int i = 0; i < FT_ITERS; i++) {
		if (shset_lock_acquire(&A->lock, l) != 0)
			_exit(91);
		A->counter++;
		if ((i & 1023) == 0)
			sched_yield(); /* preempted while holding, now and then */
		if (shset_lock_release(&A->lock, l) != 0)
			_exit(92);
	}
	return NULL;
}

static pid_t spawn_contender(int nthreads)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		shset_lease *l = lease();
		/* Short interval: the liveness check, and with it the check of
		 * our own value, runs often. */
		shset_lease_set_check_interval(l, 100 * 1000);
		pthread_t th[FT_THREADS];
		for (int t = 0; t < nthreads; t++)
			pthread_create(&th[t], NULL, ft_thread, l);
		for (int t = 0; t < nthreads; t++)
			pthread_join(th[t], NULL);
		shset_lease_close(l);
		_exit(0);
	}
	return pid;
}

START_TEST(no_false_takeover)
{
	pid_t a = spawn_contender(FT_THREADS), b = spawn_contender(2);

	ck_assert_int_eq(wait_status(a), 0);
	ck_assert_int_eq(wait_status(b), 0);
	ck_assert_uint_eq(A->counter, (uint64_t)(FT_THREADS + 2) * FT_ITERS);
	struct shset_lock_state st;
	ck_assert_int_eq(shset_lock_state(&A->lock, &st), 0);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_int_eq(st.inconsistent, 0);
	ck_assert_uint_eq(st.owner_died, 0);
}
END_TEST

struct two_arg {
	shset_lease *l;
	int r;
};

static void *two_thread(void *arg)
{
	struct two_arg *a = arg;

	__atomic_add_fetch(&A->ready, 1, __ATOMIC_SEQ_CST);
	a->r = shset_lock_acquire(&A->lock, a->l);
	if (a->r == SHSET_LOCK_OWNER_DIED)
		shset_lock_consistent(&A->lock, a->l);
	if (a->r >= 0)
		shset_lock_release(&A->lock, a->l);
	return NULL;
}

/* Two of our threads wait on a word that names us; one takes it over, the
 * other waits for that one.  @asleep: they sleep on a live holder's lock
 * before the peer rewrites it (the periodic check finds it), else the word
 * is forged first (the first look finds it). */
static void two_waiters(int asleep)
{
	int rep[2];
	ck_assert_int_eq(pipe(rep), 0);
	shset_lease *l = lease();
	uint32_t me = own_value(l);
	pid_t h = -1;

	A->ready = 0;
	if (asleep)
		h = spawn_holder(rep, -1);
	else
		forge(me, 0);
	struct two_arg a[2] = {{.l = l}, {.l = l}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, two_thread, &a[i]), 0);
	if (asleep) {
		wait_sleepers(2);
		forge(me | WORD_WAITERS, 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(a[0].r + a[1].r, SHSET_LOCK_OWNER_DIED);
	ck_assert(a[0].r == 0 || a[1].r == 0);
	struct shset_lock_state st;
	shset_lock_state(&A->lock, &st);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_uint_eq(st.owner_died, 1);
	if (h > 0) {
		kill(h, SIGKILL);
		wait_status(h);
	}
	shset_lease_close(l);
}

START_TEST(forged_two_waiters)
{
	two_waiters(0);
}
END_TEST

START_TEST(forged_two_sleepers)
{
	two_waiters(1);
}
END_TEST

static void *exit_holding(void *arg)
{
	return (void *)(intptr_t)shset_lock_acquire(&A->lock, arg);
}

/* A thread that exits holding the lock is a dead owner to its siblings. */
START_TEST(thread_exit_holding)
{
	shset_lease *l = lease();
	pthread_t th;
	void *r;

	ck_assert_int_eq(pthread_create(&th, NULL, exit_holding, l), 0);
	pthread_join(th, &r);
	ck_assert_int_eq((int)(intptr_t)r, 0);
	ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
	ck_assert_int_eq(shset_lock_consistent(&A->lock, l), 0);
	ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	shset_lease_close(l);
}
END_TEST

/* One thread holds at most SHSET_LOCK_HELD_MAX locks; one more is refused
 * without being taken. */
/* A peer rewrites the word between an acquire that reported a dead owner
 * and the consistent call: consistent says -EPERM and the thread no longer
 * holds the lock; it can take it again, and SHSET_LOCK_HELD_MAX such
 * rounds leave it able to take others (before: -EDEADLK on this lock for
 * ever, then -ENOLCK on every lock). */
START_TEST(consistent_after_rewrite_forgets)
{
	shset_lease *l = lease();
	uint32_t me = own_value(l);

	shset_lock_init(&A->more[0]);
	for (int round = 0; round <= SHSET_LOCK_HELD_MAX; round++) {
		forge(me, 0); /* our value, no thread of ours holding: taken over */
		ck_assert_int_eq(shset_lock_acquire(&A->lock, l), SHSET_LOCK_OWNER_DIED);
		forge((me & 0xfffu) % NSLOTS + 1, 0); /* another slot's */
		ck_assert_int_eq(shset_lock_consistent(&A->lock, l), -EPERM);
		forge(0, 0);
		ck_assert_int_eq(shset_lock_acquire(&A->lock, l), 0);
		ck_assert_int_eq(shset_lock_release(&A->lock, l), 0);
	}
	ck_assert_int_eq(shset_lock_acquire(&A->more[0], l), 0);
	ck_assert_int_eq(shset_lock_release(&A->more[0], l), 0);
	shset_lease_close(l);
}
END_TEST

START_TEST(held_max)
{
	shset_lease *l = lease();

	for (int i = 0; i <= SHSET_LOCK_HELD_MAX; i++)
		shset_lock_init(&A->more[i]);
	for (int i = 0; i < SHSET_LOCK_HELD_MAX; i++)
		ck_assert_int_eq(shset_lock_acquire(&A->more[i], l), 0);
	ck_assert_int_eq(shset_lock_acquire(&A->more[0], l), -EDEADLK);
	ck_assert_int_eq(shset_lock_acquire(&A->more[SHSET_LOCK_HELD_MAX], l), -ENOLCK);
	ck_assert_int_eq(shset_lock_tryacquire(&A->more[SHSET_LOCK_HELD_MAX], l), -ENOLCK);
	struct shset_lock_state st;
	shset_lock_state(&A->more[SHSET_LOCK_HELD_MAX], &st);
	ck_assert_int_eq(st.locked, 0);
	ck_assert_int_eq(shset_lock_release(&A->more[3], l), 0);
	ck_assert_int_eq(shset_lock_acquire(&A->more[SHSET_LOCK_HELD_MAX], l), 0);
	for (int i = 0; i <= SHSET_LOCK_HELD_MAX; i++)
		ck_assert_int_eq(shset_lock_release(&A->more[i], l), i == 3 ? -EPERM : 0);
	shset_lease_close(l);
}
END_TEST

/* --- leases ---------------------------------------------------------------- */

START_TEST(lease_slots_and_args)
{
	shset_lease *ls[NSLOTS], *extra = (shset_lease *)1;
	int before = count_fds();

	/* One process may hold many leases; each takes its own slot. */
	for (int i = 0; i < NSLOTS; i++)
		ck_assert_int_eq(shset_lease_open(&ls[i], area_fd, A->slots, NSLOTS), 0);
	ck_assert_int_eq(shset_lease_open(&extra, area_fd, A->slots, NSLOTS), -EUSERS);
	ck_assert_ptr_null(extra);
	for (int i = 0; i < NSLOTS; i++)
		shset_lease_close(ls[i]);
	ck_assert_int_eq(count_fds(), before);

	ck_assert_int_eq(shset_lease_open(NULL, area_fd, A->slots, NSLOTS), -EINVAL);
	ck_assert_int_eq(shset_lease_open(&extra, -1, A->slots, NSLOTS), -EINVAL);
	ck_assert_int_eq(shset_lease_open(&extra, area_fd, NULL, NSLOTS), -EINVAL);
	ck_assert_int_eq(shset_lease_open(&extra, area_fd, A->slots, 0), -EINVAL);
	ck_assert_int_eq(shset_lease_open(&extra, area_fd, A->slots, 5000), -EINVAL);
	ck_assert_int_eq(shset_lease_open(&extra, 12345, A->slots, NSLOTS), -ENOENT);
	ck_assert_int_eq(shset_lock_acquire(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_lock_release(&A->lock, NULL), -EINVAL);
	ck_assert_int_eq(shset_lock_state(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_lease_slot(NULL), -EINVAL);
	ck_assert_int_eq(shset_lease_probe(-1, 0), -EINVAL);
	shset_lease_close(NULL);
	shset_lock_init(NULL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("lock");
	TCase *tc = tcase_create("lock");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300 * test_scale());
	tcase_add_test(tc, mutual_exclusion);
	tcase_add_test(tc, try_timed_owner);
	tcase_add_test(tc, owner_death_100);
	tcase_add_test(tc, recovery_of_recovery);
	tcase_add_test(tc, fork_child_identity);
	tcase_add_test(tc, lease_slots_and_args);
	tcase_add_test(tc, no_false_takeover);
	tcase_add_test(tc, held_max);
	tcase_add_test(tc, consistent_after_rewrite_forgets);
	tcase_add_test(tc, wait_hook_gives_up);
	tcase_add_test(tc, wait_hook_that_forks);
	suite_add_tcase(s, tc);

	/* Each takes milliseconds when right and hangs when wrong: a short
	 * timeout makes a hang a failed test rather than a stuck run. */
	tc = tcase_create("forged");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30 * test_scale());
	tcase_add_test(tc, forged_own_word);
	tcase_add_test(tc, forged_owner_tid);
	tcase_add_test(tc, forged_two_waiters);
	tcase_add_test(tc, forged_two_sleepers);
	tcase_add_test(tc, thread_exit_holding);
	tcase_add_test(tc, generation_bump_keeps_holder_alive);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
