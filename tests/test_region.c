/* SPDX-License-Identifier: MIT */
/* test_region.c - memfd creation, validation on attach, growth. */
#include "helpers.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "pager.h"
#include "region.h"
#include "shset.h"
#include "snapshot.h"

/* A memfd of @file_len bytes, the first @n of them @buf's, sealed against
 * shrinking (as an attach requires). */
static int sealed_memfd(const void *buf, size_t n, uint64_t file_len)
{
	int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)file_len), 0);
	ck_assert_int_eq(pwrite(fd, buf, n, 0), (ssize_t)n);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	return fd;
}

/* A sealed memfd holding a copy of a real set's first @len bytes, with
 * @mutate applied to its header. */
static int forged(void (*mutate)(struct region_hdr *), uint64_t file_len)
{
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	static uint8_t buf[64 * 1024];
	memset(buf, 0, sizeof(buf));
	ck_assert_int_ge(pread(shset_fd(s), buf, sizeof(buf), 0), 4096);
	shset_close(s);
	if (mutate)
		mutate((struct region_hdr *)buf);
	return sealed_memfd(buf, file_len < sizeof(buf) ? file_len : sizeof(buf), file_len);
}

static void bad_magic(struct region_hdr *h)
{
	h->magic ^= 1;
}
static void bad_version(struct region_hdr *h)
{
	h->version = REGION_VERSION + 1;
}
static void bad_slots(struct region_hdr *h)
{
	h->nslots = 0;
}
static void bad_heap(struct region_hdr *h)
{
	h->heap_off = h->max_size + 4096;
}
static void bad_log(struct region_hdr *h)
{
	h->log_off = 4096 + 7;
}
static void huge_max(struct region_hdr *h)
{
	h->max_size = 1ull << 62;
}

static void refuse(int fd, int err)
{
	shset *s = (shset *)1;
	ck_assert_int_eq(shset_attach_fd(&s, fd), err);
	ck_assert_ptr_null(s);
}

START_TEST(attach_refuses_bad_fds)
{
	int before = count_fds();
	char tmpl[] = "/tmp/shset-test-XXXXXX";

	refuse(-1, -EBADF);
	refuse(1000, -EBADF);

	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	refuse(p[0], -EMEDIUMTYPE);
	close(p[0]);
	close(p[1]);

	int f = mkstemp(tmpl);
	ck_assert_int_ge(f, 0);
	unlink(tmpl);
	ck_assert_int_eq(ftruncate(f, 65536), 0);
	refuse(f, -EMEDIUMTYPE);
	close(f);

	int m = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(m, 65536), 0);
	refuse(m, -EPERM);
	close(m);
	m = memfd_create("nosealing", MFD_CLOEXEC);
	refuse(m, -EPERM);
	close(m);

	int fd = forged(NULL, 100);
	refuse(fd, -ENODATA);
	close(fd);
	struct {
		void (*fn)(struct region_hdr *);
		int err;
	} cases[] = {{bad_magic, -EPROTO},  {bad_version, -EPROTONOSUPPORT},
		     {bad_slots, -EUCLEAN}, {bad_heap, -EUCLEAN},
		     {bad_log, -EUCLEAN},   {huge_max, -EUCLEAN}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = forged(cases[i].fn, 2 << 20);
		refuse(fd, cases[i].err);
		close(fd);
	}
	/* Truncated below the heap the header promises. */
	fd = forged(NULL, 8192);
	refuse(fd, -EUCLEAN);
	close(fd);

	/* A valid set through a read-only descriptor cannot be attached
	 * for writing. */
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", shset_fd(s));
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ro, 0);
	refuse(ro, -EACCES);
	close(ro);
	shset_close(s);

	ck_assert_int_eq(count_fds(), before);
}
END_TEST

START_TEST(create_and_attach)
{
	int before = count_fds();
	shset *a, *b;
	struct shset_opts o = {.max_bytes = 64 << 20, .max_procs = 8, .name = "named"};

	ck_assert_int_eq(shset_create(&a, &o), 0);
	int fd = shset_fd(a);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_SEAL);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	/* A peer cannot add seals that would break growth or writes. */
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), -1);
	ck_assert_int_eq(errno, EPERM);

	ck_assert_int_eq(shset_attach_fd(&b, fd), 0);
	ck_assert_int_ne(shset_fd(b), fd); /* dup'ed */
	struct region_hdr h;
	uint64_t size;
	ck_assert_int_eq(region_probe_fd(fd, &h, &size), 0);
	ck_assert_uint_eq(h.nslots, 8);
	ck_assert_uint_eq(h.max_size, 64 << 20);
	ck_assert_uint_ge(size, h.heap_off);
	shset_close(b);
	shset_close(a);
	ck_assert_int_eq(count_fds(), before);

	/* More processes than slots: the ninth attach is refused. */
	shset *many[9];
	ck_assert_int_eq(shset_create(&many[0], &o), 0);
	for (int i = 1; i < 8; i++)
		ck_assert_int_eq(shset_attach_fd(&many[i], shset_fd(many[0])), 0);
	ck_assert_int_eq(shset_attach_fd(&many[8], shset_fd(many[0])), -EUSERS);
	for (int i = 0; i < 8; i++)
		shset_close(many[i]);
	ck_assert_int_eq(count_fds(), before);
}
END_TEST

START_TEST(growth_seen_by_other_process)
{
	struct region *r;
	struct region_opts o = {.max_size = 256 << 20, .log_bytes = 4096};
	int go[2], done[2];

	ck_assert_int_eq(region_create(&r, &o), 0);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	uint64_t old = r->avail;

	pid_t pid = fork();
	if (pid == 0) {
		struct region *c;
		if (region_attach(&c, r->fd, 0))
			_exit(1);
		uint64_t at_start = c->avail;
		/* Beyond the end: refused without touching it. */
		if (region_check(c, old, 4096) != -EUCLEAN)
			_exit(2);
		write_all(done[1], "r", 1);
		char b;
		if (read_all(go[0], &b, 1))
			_exit(3);
		/* Now the file is larger: the same check succeeds and the
		 * bytes the parent wrote are there. */
		for (uint64_t off = old; off < old + (32 << 20); off += 4096) {
			if (region_check(c, off, 8))
				_exit(4);
			if (*(uint64_t *)region_ptr(c, off) != off)
				_exit(5);
		}
		if (c->avail <= at_start)
			_exit(6);
		region_close(c);
		_exit(0);
	}
	char b;
	ck_assert_int_eq(read_all(done[0], &b, 1), 0);
	ck_assert_int_eq(shset_lock_acquire(r->lock, r->lease), 0);
	ck_assert_int_eq(region_grow(r, old + (32 << 20)), 0);
	for (uint64_t off = old; off < old + (32 << 20); off += 4096)
		*(uint64_t *)region_ptr(r, off) = off;
	ck_assert_int_eq(shset_lock_release(r->lock, r->lease), 0);
	write_all(go[1], "g", 1);
	ck_assert_int_eq(wait_status(pid), 0);

	/* Past the reservation: ENOSPC, nothing changed. */
	ck_assert_int_eq(region_grow(r, (256 << 20) + 1), -ENOSPC);
	ck_assert_int_eq(region_check(r, (256 << 20) - 8, 16), -EUCLEAN);
	ck_assert_int_eq(region_check(r, UINT64_MAX - 4, 16), -EUCLEAN);
	region_close(r);
}
END_TEST

/* A region, locked, with a hole of @len bytes (and 1 MiB either side):
 * returns where. */
static uint64_t hole(struct region *r, uint64_t len)
{
	ck_assert_int_eq(shset_lock_acquire(r->lock, r->lease), 0);
	uint64_t at = (r->heap_off + (1 << 20)) & ~(uint64_t)(REGION_PAGE - 1);
	ck_assert_int_eq(region_grow(r, at + len + (1 << 20)), 0);
	ck_assert_int_eq(region_punch(r, at - (1 << 20), len + (2 << 20)), 0);
	return at;
}

static blkcnt_t blocks_of(int fd)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	return st.st_blocks;
}

/* Pages of [p, p+len) mapped in this process. */
static size_t resident(const void *p, size_t len)
{
	unsigned char v[256];
	size_t n = 0, pages = len / REGION_PAGE;
	ck_assert_uint_le(pages, sizeof(v));
	ck_assert_int_eq(mincore((void *)p, len, v), 0);
	for (size_t i = 0; i < pages; i++)
		n += v[i] & 1;
	return n;
}

/* The pager's jobs are done, by its thread or by the caller, before
 * pager_need returns: the file's range is allocated (its data kept) and
 * anonymous memory mapped; with and without a thread. */
START_TEST(pager_maps_what_it_is_given)
{
	struct region *r;
	struct region_opts o = {.max_size = 64 << 20, .log_bytes = 4096};
	const uint64_t len = 1 << 20;

	for (int thread = 0; thread < 2; thread++) {
		ck_assert_int_eq(region_create(&r, &o), 0);
		uint64_t at = hole(r, 4 * len);
		memset(region_ptr(r, at + 2 * len), 0xa5, REGION_PAGE);
		blkcnt_t before = blocks_of(r->fd);
		uint8_t *anon =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(anon, MAP_FAILED);
		ck_assert_uint_eq(resident(anon, len), 0);
		struct pager pg;
		pager_start(&pg, thread);
		ck_assert_int_eq(pg.running, thread);
		int a = pager_add(&pg, NULL, (uintptr_t)anon, len);
		int f[4];
		for (int i = 0; i < 4; i++)
			f[i] = pager_add(&pg, r, at + i * len, len);
		/* The caller needs the last first: the others stay in order. */
		pager_need(&pg, f[3]);
		ck_assert_int_eq((blocks_of(r->fd) - before) * 512 >= (blkcnt_t)len, 1);
		pager_need(&pg, a);
		ck_assert_uint_eq(resident(anon, len), len / REGION_PAGE);
		for (int i = 0; i < 3; i++)
			pager_need(&pg, f[i]);
		pager_stop(&pg);
		ck_assert_int_eq((blocks_of(r->fd) - before) * 512,
				 (blkcnt_t)(4 * len - REGION_PAGE));
		ck_assert_uint_eq(resident(region_ptr(r, at), len), len / REGION_PAGE);
		const uint8_t *d = region_ptr(r, at + 2 * len);
		for (unsigned i = 0; i < REGION_PAGE; i++)
			ck_assert_uint_eq(d[i], 0xa5);
		munmap(anon, len);
		ck_assert_int_eq(shset_lock_release(r->lock, r->lease), 0);
		region_close(r);
	}
}
END_TEST

/* A dropped job the thread has not taken is not done; the queue holds
 * PAGER_JOBS jobs and refuses more (the caller then faults pages itself);
 * needing job -1 does nothing. */
START_TEST(pager_drops_and_refuses)
{
	struct region *r;
	struct region_opts o = {.max_size = 64 << 20, .log_bytes = 4096};

	ck_assert_int_eq(region_create(&r, &o), 0);
	uint64_t at = hole(r, 1 << 20);
	blkcnt_t before = blocks_of(r->fd);
	struct pager pg;
	pager_start(&pg, 0);
	int id = pager_add(&pg, r, at, 1 << 20);
	ck_assert_int_eq(id, 0);
	pager_drop(&pg, id);
	pager_need(&pg, id);
	for (unsigned i = 1; i < PAGER_JOBS; i++)
		ck_assert_int_eq(pager_add(&pg, r, at, REGION_PAGE), (int)i);
	ck_assert_int_eq(pager_add(&pg, r, at, REGION_PAGE), -1);
	pager_need(&pg, -1);
	pager_stop(&pg);
	ck_assert_int_eq(blocks_of(r->fd), before);
	ck_assert_int_eq(shset_lock_release(r->lock, r->lease), 0);
	region_close(r);
}
END_TEST

/* The signal mask of thread @tid once it sleeps (glibc starts a thread
 * with every signal blocked, then sets the mask it was created with). */
static uint64_t thread_sigblk(int tid)
{
	char path[64], line[256];
	uint64_t mask = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	for (int tries = 0;; tries++) {
		char state = 0;
		FILE *f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f)) {
			sscanf(line, "State: %c", &state);
			sscanf(line, "SigBlk: %" SCNx64, &mask);
		}
		fclose(f);
		if (state == 'S')
			return mask;
		ck_assert_int_lt(tries, 10000);
		usleep(1000);
	}
}

/* The thread exists from pager_start to pager_stop only, and blocks
 * every signal it can (glibc keeps two of its own, 32 and 33, and the
 * kernel SIGKILL and SIGSTOP): the caller's handlers never run on it. */
START_TEST(pager_thread_blocks_signals_and_is_joined)
{
	int before = count_threads(), old[64], now[64], tid = 0;
	struct pager pg;

	ck_assert_int_le(before, 63);
	ck_assert_int_eq(list_threads(old, 64), before);
	pager_start(&pg, 1);
	ck_assert_int_eq(pg.running, 1);
	ck_assert_int_eq(list_threads(now, 64), before + 1);
	for (int i = 0; i <= before; i++) {
		int seen = 0;
		for (int j = 0; j < before; j++)
			seen |= now[i] == old[j];
		if (!seen)
			tid = now[i];
	}
	ck_assert_int_ne(tid, 0);
	uint64_t blk = thread_sigblk(tid);
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33)
			continue;
		ck_assert_msg(blk >> (sig - 1) & 1, "signal %d not blocked", sig);
	}
	pager_stop(&pg);
	ck_assert_int_eq(threads_now(before), before);
}
END_TEST

/* Dropping a job the thread has taken waits for it: the range is then
 * either untouched (dropped before it was taken) or allocated whole. */
START_TEST(pager_drop_waits_for_the_thread)
{
	struct region *r;
	struct region_opts o = {.max_size = 256 << 20, .log_bytes = 4096};
	const uint64_t len = 64 << 20;
	int whole = 0;

	for (int round = 0; round < 4; round++) {
		ck_assert_int_eq(region_create(&r, &o), 0);
		uint64_t at = hole(r, len);
		blkcnt_t before = blocks_of(r->fd);
		struct pager pg;
		pager_start(&pg, 1);
		int id = pager_add(&pg, r, at, len);
		usleep(round * 1000); /* the thread takes it meanwhile, or not */
		/* The last round waits until it has: on a busy machine the
		 * thread may not run for milliseconds. */
		for (int ms = 0; round == 3; ms++) {
			pthread_mutex_lock(&pg.mu);
			unsigned st = pg.job[id].state;
			pthread_mutex_unlock(&pg.mu);
			if (st != PAGER_QUEUED)
				break;
			ck_assert_int_lt(ms, 60000);
			usleep(1000);
		}
		pager_drop(&pg, id);
		blkcnt_t got = (blocks_of(r->fd) - before) * 512;
		ck_assert_msg(got == 0 || got == (blkcnt_t)len, "%lld bytes after the drop",
			      (long long)got);
		whole += got != 0;
		pager_stop(&pg);
		ck_assert_int_eq(shset_lock_release(r->lock, r->lease), 0);
		region_close(r);
	}
	/* The last round's job was taken before the drop. */
	ck_assert_int_ge(whole, 1);
}
END_TEST

static volatile int cancel_reached_stop;
static sem_t cancel_started;

/* Not instrumented: AddressSanitizer does not unpoison the frames a
 * cancellation unwinds, and reports the thread's exit as an overflow. */
__attribute__((no_sanitize_address)) static void *cancelled_pager_user(void *arg)
{
	(void)arg;
	struct pager pg;
	pager_start(&pg, 1);
	sem_post(&cancel_started);
	for (int i = 0; i < 50; i++)
		usleep(1000); /* a cancellation point, 50 times */
	cancel_reached_stop = 1;
	pager_stop(&pg);
	for (;;)
		pause(); /* cancelled here at the latest */
	return NULL;
}

/* A caller cancelled while it has a pager is cancelled only after
 * pager_stop: the pager's thread, which uses the caller's stack, is
 * joined first and no thread is left behind. */
START_TEST(pager_defers_cancellation)
{
	int before = count_threads();
	pthread_t t;
	void *res;

	ck_assert_int_eq(sem_init(&cancel_started, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, cancelled_pager_user, NULL), 0);
	while (sem_wait(&cancel_started) < 0)
		;
	ck_assert_int_eq(pthread_cancel(t), 0);
	ck_assert_int_eq(pthread_join(t, &res), 0);
	ck_assert_ptr_eq(res, PTHREAD_CANCELED);
	ck_assert_int_eq(cancel_reached_stop, 1);
	ck_assert_int_eq(threads_now(before), before);
}
END_TEST

/* region_fill allocates the holes of a range and keeps what is there:
 * data, the file's size, and pages outside the range. */
START_TEST(fill_allocates_holes_only)
{
	struct region *r;
	struct region_opts o = {.max_size = 64 << 20, .log_bytes = 4096};
	struct stat st;

	ck_assert_int_eq(region_create(&r, &o), 0);
	uint64_t len = 4 << 20, at = hole(r, len);
	/* One page of data in the middle, one just past the range. */
	memset(region_ptr(r, at + (1 << 20)), 0xa5, REGION_PAGE);
	memset(region_ptr(r, at + len), 0x5a, REGION_PAGE);
	ck_assert_int_eq(fstat(r->fd, &st), 0);
	off_t size = st.st_size;
	blkcnt_t before = st.st_blocks;
	/* Not page-aligned: whole pages around it. */
	ck_assert_int_eq(region_fill(r, at + 100, len - 200), 0);
	ck_assert_int_eq(fstat(r->fd, &st), 0);
	ck_assert_int_eq(st.st_size, size);
	/* The range's holes, all but the data page, are now allocated. */
	ck_assert_int_eq((st.st_blocks - before) * 512, (blkcnt_t)len - REGION_PAGE);
	const uint8_t *d = region_ptr(r, at + (1 << 20)), *past = region_ptr(r, at + len);
	for (unsigned i = 0; i < REGION_PAGE; i++) {
		ck_assert_uint_eq(d[i], 0xa5);
		ck_assert_uint_eq(past[i], 0x5a);
	}
	const uint8_t *z = region_ptr(r, at);
	for (uint64_t i = 0; i < (1 << 20); i++)
		ck_assert_uint_eq(z[i], 0);
	ck_assert_int_eq(region_fill(r, at, 0), 0);
	ck_assert_int_eq(shset_lock_release(r->lock, r->lease), 0);
	region_close(r);
}
END_TEST

START_TEST(null_and_bad_arguments)
{
	shset *s = NULL;
	struct shset_opts bad = {.flags = 1};
	struct shset_opts tiny = {.max_bytes = 4096};
	struct shset_opts procs = {.max_procs = 5000};

	ck_assert_int_eq(shset_create(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_create(&s, &bad), -EINVAL);
	ck_assert_int_eq(shset_create(&s, &tiny), -ENOSPC);
	ck_assert_int_eq(shset_create(&s, &procs), -EINVAL);
	ck_assert_int_eq(shset_attach_fd(NULL, 0), -EINVAL);
	ck_assert_int_eq(shset_fd(NULL), -EINVAL);
	shset_close(NULL);
}
END_TEST

/* The fuzzers' seeds are sets and snapshots of the current formats (a
 * format change without new seeds, tests/fuzz/mkseeds.c, left fuzz_region
 * fuzzing only the version check): each region seed attaches and passes
 * verify, each snapshot seed loads, with the keys mkseeds put in. */
START_TEST(fuzz_seeds_current)
{
	static const int sizes[] = {0, 1, 12, 40};
	char p[512];

	for (int i = 0; i < 4; i++) {
		/* mkseeds removes one key from the sets of more than 10. */
		long long want = sizes[i] > 10 ? sizes[i] - 1 : sizes[i];
		shset *s;
		snprintf(p, sizeof(p), "%s/region/set-%d", FUZZ_SEEDS, sizes[i]);
		uint8_t *img;
		size_t len;
		int uring;
		ck_assert_int_eq(snap_read_file(p, &img, &len, 1, &uring), 0);
		int fd = sealed_memfd(img, len, len);
		free(img);
		ck_assert_int_eq(shset_attach_fd(&s, fd), 0);
		ck_assert_int_eq(shset_verify(s), 0);
		ck_assert_int_eq(shset_size(s), want);
		shset_close(s);
		close(fd);
		snprintf(p, sizeof(p), "%s/snapshot/snap-%d", FUZZ_SEEDS, sizes[i]);
		ck_assert_int_eq(shset_load(&s, p, NULL), 0);
		ck_assert_int_eq(shset_size(s), want);
		shset_close(s);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("region");
	TCase *tc = tcase_create("region");
	tcase_set_timeout(tc, 120 * test_scale());
	tcase_add_test(tc, attach_refuses_bad_fds);
	tcase_add_test(tc, create_and_attach);
	tcase_add_test(tc, growth_seen_by_other_process);
	tcase_add_test(tc, null_and_bad_arguments);
	tcase_add_test(tc, fuzz_seeds_current);
	tcase_add_test(tc, fill_allocates_holes_only);
	tcase_add_test(tc, pager_maps_what_it_is_given);
	tcase_add_test(tc, pager_drops_and_refuses);
	tcase_add_test(tc, pager_thread_blocks_signals_and_is_joined);
	tcase_add_test(tc, pager_drop_waits_for_the_thread);
	tcase_add_test(tc, pager_defers_cancellation);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
