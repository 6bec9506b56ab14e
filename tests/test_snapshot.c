/* SPDX-License-Identifier: MIT */
/* test_snapshot.c - snapshot round trips, corruption, kills mid-save. */
#include "helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "keys.h"
#include "shset.h"
#include "snapshot.h"

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/shset-snap-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[400];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' && (!e->d_name[1] || e->d_name[1] == '.'))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int files_in_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' || (e->d_name[1] && e->d_name[1] != '.');
	closedir(d);
	return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *img;
	int used;
	ck_assert_int_eq(snap_read_file(path, &img, len, 1, &used), 0);
	return img;
}

static void spit(const char *path, const uint8_t *img, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, img, len), (ssize_t)len);
	close(fd);
}

static void round_trip(shset *s, const char *name)
{
	char p1[128], p2[128];
	shset *l;
	snprintf(p1, sizeof(p1), "%s/%s.uring", dir, name);
	snprintf(p2, sizeof(p2), "%s/%s.plain", dir, name);
	ck_assert_int_eq(shset_save_ex(s, p1, SHSET_SAVE_SORTED), 0);
	ck_assert_int_eq(shset_save_ex(s, p2, SHSET_SAVE_SORTED | SHSET_SAVE_NO_URING), 0);
	ck_assert_int_eq(shset_load(&l, p1, NULL), 0);
	ck_assert_int_eq(shset_equal(s, l), 1);
	ck_assert_int_eq(shset_verify(l), 0);
	shset_close(l);
	size_t a, b;
	uint8_t *ia = slurp(p1, &a), *ib = slurp(p2, &b);
	ck_assert_uint_eq(a, b);
	ck_assert(memcmp(ia, ib, a) == 0); /* byte-identical */
	free(ia);
	free(ib);
}

START_TEST(round_trips)
{
	shset *s;
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	round_trip(s, "empty");
	shset_add(s, "one", 3);
	round_trip(s, "one");
	shset_clear(s);
	shset_add(s, "", 0);
	round_trip(s, "emptykey");
	static uint8_t big[SHSET_KEY_MAX];
	memset(big, 0x5a, sizeof(big));
	shset_add(s, big, SHSET_KEY_MAX);
	big[0] = 1;
	shset_add(s, big, SHSET_KEY_MAX);
	round_trip(s, "maxkeys");
	shset_clear(s);
	uint8_t k[16] = {0};
	for (uint32_t i = 0; i < 1000000; i++) {
		memcpy(k, &i, 4);
		shset_add(s, k, 16);
	}
	round_trip(s, "million");
	struct shset_stats st;
	shset_stats(s, &st);
	ck_assert_uint_ge(st.saves_io_uring, 5);
	ck_assert_uint_ge(st.saves_fallback, 5);
	/* The environment switch forces the fallback too. */
	setenv("SHSET_NO_IO_URING", "1", 1);
	char p[128];
	snprintf(p, sizeof(p), "%s/env", dir);
	uint64_t before = st.saves_fallback;
	ck_assert_int_eq(shset_save(s, p), 0);
	shset_stats(s, &st);
	ck_assert_uint_eq(st.saves_fallback, before + 1);
	unsetenv("SHSET_NO_IO_URING");
	unsetenv("SOURCE_DATE_EPOCH");
	shset_close(s);
	/* Only the final files: no temporaries left behind. */
	ck_assert_int_eq(files_in_dir(), 11);
}
END_TEST

/* A set made with @o holding @n keys (i in the first 4 bytes), key i of
 * len(i) bytes (4 to 40), saved to @path. */
static shset *saved_keys(const struct shset_opts *o, uint32_t n, size_t (*len)(uint32_t),
			 const char *path)
{
	shset *s;
	uint8_t k[40] = {0};

	ck_assert_int_eq(shset_create(&s, o), 0);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(k, &i, 4);
		ck_assert_int_eq(shset_add(s, k, len(i)), 1);
	}
	ck_assert_int_eq(shset_save(s, path), 0);
	return s;
}

static size_t len16(uint32_t i)
{
	(void)i;
	return 16;
}

/* Inline keys (16 bytes) and, one in three, arena keys (40 bytes). */
static size_t len_mixed(uint32_t i)
{
	return i % 3 ? 16 : 40;
}

static size_t len40(uint32_t i)
{
	(void)i;
	return 40;
}

/* The same with 16-byte keys. */
static shset *saved_set(const struct shset_opts *o, uint32_t n, const char *path)
{
	return saved_keys(o, n, len16, path);
}

/* A load builds each shard's table at the size a set presized for its keys
 * has (below the 3/4 load limit), not at half load: no bigger, and with
 * room for opts.capacity when that asks for more. */
START_TEST(load_sized_like_a_presized_set)
{
	static const uint32_t sizes[] = {1, 1000, 100000};
	static const uint32_t shards[] = {1, 16};
	char p[128];
	snprintf(p, sizeof(p), "%s/sized", dir);
	for (unsigned a = 0; a < 3; a++) {
		for (unsigned b = 0; b < 2; b++) {
			uint32_t n = sizes[a];
			struct shset_opts o = {
			    .size = sizeof(o), .capacity = n, .shards = shards[b]};
			shset *l, *s = saved_set(&o, n, p);
			struct shset_opts lo = {.size = sizeof(lo), .shards = shards[b]};
			ck_assert_int_eq(shset_load(&l, p, &lo), 0);
			struct shset_stats ss, ls;
			ck_assert_int_eq(shset_stats(s, &ss), 0);
			ck_assert_int_eq(shset_stats(l, &ls), 0);
			ck_assert_uint_eq(ls.count, n);
			/* Above half load (a batch's sizing would be at or
			 * below), within a quarter step of the presized set's
			 * (each shard is sized for the keys it got, not an equal
			 * share; a shard without keys has no table yet). */
			if (n >= 1000) {
				ck_assert_uint_gt(ls.count * 2, ls.capacity);
				ck_assert_uint_le(ls.capacity * 4, ss.capacity * 5);
			} else {
				ck_assert_uint_le(ls.capacity, ss.capacity);
			}
			ck_assert_uint_le(ls.count * 4, ls.capacity * 3);
			ck_assert_int_eq(shset_equal(s, l), 1);
			shset_close(l);
			/* Asked for more room than the file needs: it gets it. */
			lo.capacity = 4ull * n;
			ck_assert_int_eq(shset_load(&l, p, &lo), 0);
			ck_assert_int_eq(shset_stats(l, &ls), 0);
			ck_assert_uint_ge(ls.capacity * 3, lo.capacity * 4 * 9 / 10);
			ck_assert_int_eq(shset_verify(l), 0);
			shset_close(l);
			shset_close(s);
		}
	}
}
END_TEST

/* Loads @path @rounds times: 0 if every load holds exactly the keys
 * saved_keys made (0 to @n - 1, key i of len(i) bytes) and passes verify;
 * else what failed first: 1 the load, 2 the size, 3 verify, 4 a key. */
static int loads_check(const char *path, uint32_t n, size_t (*len)(uint32_t), int rounds)
{
	uint8_t k[40] = {0};

	for (int r = 0; r < rounds; r++) {
		shset *l;
		if (shset_load(&l, path, NULL))
			return 1;
		int bad = shset_size(l) != n ? 2 : shset_verify(l) ? 3 : 0;
		for (uint32_t i = 0; !bad && i < n; i++) {
			memcpy(k, &i, 4);
			bad = shset_contains(l, k, len(i)) == 1 ? 0 : 4;
		}
		shset_close(l);
		if (bad)
			return bad;
	}
	return 0;
}

/* A load big enough for its pager thread, which maps the tables and then
 * inserts into the shards this thread has not got to: keys short enough
 * for a slot and long ones (arena blocks, through insert_hashed), over
 * 16 shards, loaded again and again.  Each load holds exactly the saved
 * keys and passes verify; no thread is left behind.  (The suite runs
 * under ThreadSanitizer too.) */
START_TEST(big_loads_share_inserts)
{
	const uint32_t n = 60000;
	char p[128];
	struct shset_opts o = {.size = sizeof(o), .shards = 16};

	snprintf(p, sizeof(p), "%s/shared", dir);
	shset *s = saved_keys(&o, n, len_mixed, p);
	int threads = count_threads();
	ck_assert_int_eq(loads_check(p, n, len_mixed, 6), 0);
	ck_assert_int_eq(threads_now(threads), threads);
	shset_close(s);
}
END_TEST

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* glibc before 2.35 lacks it (Linux 5.14) */
#endif

/* Makes madvise(MADV_POPULATE_READ / _WRITE) fail with EINVAL in this
 * process, as on kernels before 5.14.  Returns 0; -1 where seccomp is not
 * available; 1 if the filter is in place but the kernel still takes
 * either advice (the filter is wrong). */
static int refuse_populate(void)
{
	/* The advice is the low word of the third argument. */
	const uint32_t advice = offsetof(struct seccomp_data, args[2]) +
				(__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 4 : 0);
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 4),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, advice),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_POPULATE_READ, 1, 0),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_POPULATE_WRITE, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -1;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int refused = p != MAP_FAILED && madvise(p, pg, MADV_POPULATE_READ) < 0 &&
		      errno == EINVAL && madvise(p, pg, MADV_POPULATE_WRITE) < 0 && errno == EINVAL;
	if (p != MAP_FAILED)
		munmap(p, pg);
	return refused ? 0 : 1;
}

/* Where the kernel refuses MADV_POPULATE_WRITE (before 5.14), the pager
 * touches each page itself while the load writes the same memory (the
 * split's hash array is filled as its job runs): every load holds
 * exactly the saved keys, and a set growing there holds every key.  Not
 * under ThreadSanitizer, which refuses new threads in the child of a
 * process that has had threads (its own included). */
START_TEST(loads_without_populate)
{
	const uint32_t n = 300000;
	char p[128];
	struct shset_opts o = {.size = sizeof(o), .shards = 16};

	if (!CHILD_THREADS) {
		fprintf(stderr, "loads_without_populate: not under ThreadSanitizer, skipped\n");
		return;
	}
	snprintf(p, sizeof(p), "%s/old-kernel", dir);
	shset_close(saved_keys(&o, n, len_mixed, p));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int err = refuse_populate();
		if (err)
			_exit(err < 0 ? 77 : 1);
		err = loads_check(p, n, len_mixed, 4);
		if (err)
			_exit(10 + err);
		shset *g;
		uint8_t k[16] = {0};
		if (shset_create(&g, &o))
			_exit(20);
		for (uint32_t i = 0; i < n; i++) {
			memcpy(k, &i, 4);
			if (shset_add(g, k, sizeof(k)) != 1)
				_exit(21);
		}
		for (uint32_t i = 0; i < n; i++) {
			memcpy(k, &i, 4);
			if (shset_contains(g, k, sizeof(k)) != 1)
				_exit(22);
		}
		_exit(shset_verify(g) ? 23 : 0);
	}
	/* 77: no seccomp here; 1: the filter is wrong; 11-14: a load
	 * (loads_check); 20-23: the growing set. */
	int st = wait_status(pid);
	if (st == 77) {
		fprintf(stderr, "loads_without_populate: no seccomp here, skipped\n");
		return;
	}
	ck_assert_int_eq(st, 0);
}
END_TEST

/* @s saved at @path: a load with @tight fails whole (-ENOSPC: no set, no
 * thread or descriptor left behind); the same file then loads with
 * @roomy, every key there, and no thread is left either. */
static void no_room_then_room(shset *s, const char *p, const struct shset_opts *tight,
			      const struct shset_opts *roomy)
{
	shset *l = (shset *)1;
	int threads = count_threads(), fds = count_fds();

	ck_assert_int_eq(shset_load(&l, p, tight), -ENOSPC);
	ck_assert_ptr_null(l);
	ck_assert_int_eq(threads_now(threads), threads);
	ck_assert_int_eq(count_fds(), fds);
	ck_assert_int_eq(shset_load(&l, p, roomy), 0);
	ck_assert_int_eq(shset_verify(l), 0);
	ck_assert_int_eq(shset_equal(s, l), 1);
	shset_close(l);
	ck_assert_int_eq(threads_now(threads), threads);
}

/* A load whose tables fit but whose long keys' blocks do not (300,000
 * 40-byte keys over 16 shards in 38 MiB: the tables take about half of
 * it) fails in its inserts, in both threads. */
START_TEST(load_failing_in_its_inserts_leaves_nothing)
{
	char p[128];
	struct shset_opts o = {.size = sizeof(o), .shards = 16};
	struct shset_opts tight = {.size = sizeof(tight), .shards = 16, .max_bytes = 38 << 20};
	struct shset_opts roomy = {.size = sizeof(roomy), .shards = 16, .max_bytes = 48 << 20};

	snprintf(p, sizeof(p), "%s/long", dir);
	shset *s = saved_keys(&o, 300000, len40, p);
	no_room_then_room(s, p, &tight, &roomy);
	shset_close(s);
}
END_TEST

/* A load big enough to start its pager thread, into a set too small for
 * the tables it asks for, fails before any insert; the same file then
 * loads into a set with room, with its pager. */
START_TEST(big_load_without_room_leaves_nothing)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/big", dir);
	struct shset_opts o = {.size = sizeof(o), .shards = 16};
	shset *s = saved_set(&o, 40000, p);
	/* 4 MiB a shard; a table for 250,000 keys is 10 MiB. */
	struct shset_opts small = {
	    .size = sizeof(small), .shards = 16, .max_bytes = 64 << 20, .capacity = 4000000};
	struct shset_opts room = small;
	room.capacity = 0;
	no_room_then_room(s, p, &small, &room);
	shset_close(s);
}
END_TEST

static void refused(const char *path, int err)
{
	int before = count_fds();
	shset *l = (shset *)1;
	ck_assert_int_eq(shset_load(&l, path, NULL), err);
	ck_assert_ptr_null(l);
	ck_assert_int_eq(count_fds(), before); /* nothing created, nothing leaked */
}

/* Rewrites the header checksum so that a field change is seen as such. */
static void reseal(uint8_t *img)
{
	uint32_t c = snap_crc32c(0, img, 60);
	memcpy(img + 60, &c, 4);
}

/* A set of 5000 keys (enough that a load takes the sorted bulk path)
 * saved at @p ("good"), and @q named for the damaged copies ("bad"). */
static shset *saved_good_bad(char p[128], char q[128])
{
	shset *s;
	uint8_t key[300];
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < 5000; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	snprintf(p, 128, "%s/good", dir);
	snprintf(q, 128, "%s/bad", dir);
	ck_assert_int_eq(shset_save(s, p), 0);
	return s;
}

START_TEST(corruption_refused)
{
	char p[128], q[128];
	shset *s = saved_good_bad(p, q);
	size_t len;
	uint8_t *img = slurp(p, &len), *bad = malloc(len);

	/* Every bit of the header. */
	for (size_t i = 0; i < SNAP_HDR_SIZE * 8; i++) {
		memcpy(bad, img, len);
		bad[i / 8] ^= (uint8_t)(1u << (i % 8));
		spit(q, bad, len);
		shset *l;
		int r = shset_load(&l, q, NULL);
		ck_assert(r == -EBADMSG || r == -EPROTONOSUPPORT);
	}
	/* A newer version, checksummed correctly, is refused as such. */
	memcpy(bad, img, len);
	bad[8] = SNAP_VERSION + 1;
	reseal(bad);
	spit(q, bad, len);
	refused(q, -EPROTONOSUPPORT);
	/* Random body bytes. */
	uint64_t rng = 5;
	for (int i = 0; i < 300; i++) {
		memcpy(bad, img, len);
		size_t at = SNAP_HDR_SIZE + rng_next(&rng) % (len - SNAP_HDR_SIZE);
		bad[at] ^= (uint8_t)(1 + rng_next(&rng) % 255);
		spit(q, bad, len);
		refused(q, -EBADMSG);
	}
	/* Truncation at every header length and at random body lengths. */
	for (size_t l = 0; l < SNAP_HDR_SIZE; l++) {
		spit(q, img, l);
		refused(q, -EBADMSG);
	}
	for (int i = 0; i < 100; i++) {
		spit(q, img, SNAP_HDR_SIZE + rng_next(&rng) % (len - SNAP_HDR_SIZE));
		refused(q, -EBADMSG);
	}
	/* A body with a duplicate key and correct checksums: not a set. */
	memcpy(bad, img, len);
	struct snap_hdr h;
	memcpy(&h, bad, sizeof(h));
	size_t pos = SNAP_HDR_SIZE;
	const uint8_t *k1, *k2;
	size_t l1, l2;
	ck_assert_int_eq(snap_next(bad, len, &pos, &k1, &l1), 1);
	size_t second = pos;
	ck_assert_int_eq(snap_next(bad, len, &pos, &k2, &l2), 1);
	/* Replace the second record by a copy of the first, fixing sizes. */
	size_t nl = len - (4 + l2) + (4 + l1);
	uint8_t *dup = malloc(nl);
	memcpy(dup, bad, second);
	memcpy(dup + second, bad + SNAP_HDR_SIZE, 4 + l1);
	memcpy(dup + second + 4 + l1, bad + pos, len - pos);
	h.body_len = nl - SNAP_HDR_SIZE;
	h.key_bytes = h.key_bytes - l2 + l1;
	h.body_crc = snap_crc32c(0, dup + SNAP_HDR_SIZE, h.body_len);
	memcpy(dup, &h, SNAP_HDR_SIZE);
	reseal(dup);
	ck_assert_int_eq(snap_check(dup, nl, &h), SNAP_OK);
	spit(q, dup, nl);
	refused(q, -EBADMSG);
	refused("/nonexistent/snapshot", -ENOENT);
	refused(dir, -EISDIR);
	free(dup);
	free(bad);
	free(img);
	shset_close(s);
}
END_TEST

static int refused_small(const char *path, int err);

/* Writes @img (@len bytes, its header's count and key_bytes as the caller
 * set them) with both checksums and body_len made to agree with it, then
 * expects every kind of load to refuse it: one shard (records checked
 * before anything is built) and sixteen (checked by the first pass over
 * them, the body's checksum beside it). */
static void refused_resealed(const char *path, uint8_t *img, size_t len)
{
	struct snap_hdr h;
	memcpy(&h, img, sizeof(h));
	h.body_len = len - SNAP_HDR_SIZE;
	h.body_crc = snap_crc32c(0, img + SNAP_HDR_SIZE, h.body_len);
	memcpy(img, &h, sizeof(h));
	reseal(img);
	ck_assert_int_ne(snap_check(img, len, &h), SNAP_OK);
	spit(path, img, len);
	refused(path, -EBADMSG);
	for (uint32_t shards = 1; shards <= 16; shards *= 16) {
		struct shset_opts o = {.size = sizeof(o), .shards = shards};
		shset *l = (shset *)1;
		ck_assert_int_eq(shset_load(&l, path, &o), -EBADMSG);
		ck_assert_ptr_null(l);
	}
}

/* Bodies whose checksums are right but whose records are not what the
 * header says: the load walks them unchecked, so each must still fail. */
START_TEST(sound_checksums_unsound_records)
{
	char p[128], q[128];
	shset *s = saved_good_bad(p, q);
	size_t len;
	uint8_t *img = slurp(p, &len), *bad = malloc(len + 8);
	struct snap_hdr h;
	memcpy(&h, img, sizeof(h));
	/* The offset of the last record. */
	size_t pos = SNAP_HDR_SIZE, last = 0;
	const uint8_t *k;
	size_t kl;
	while (snap_next(img, len, &pos, &k, &kl) == 1)
		last = (size_t)(k - img) - 4;

	/* The count one more, and one less, than the records. */
	for (int d = -1; d <= 1; d += 2) {
		memcpy(bad, img, len);
		struct snap_hdr b = h;
		b.count = h.count + (uint64_t)d;
		memcpy(bad, &b, sizeof(b));
		refused_resealed(q, bad, len);
	}
	/* The key bytes one off. */
	memcpy(bad, img, len);
	struct snap_hdr b = h;
	b.key_bytes = h.key_bytes + 1;
	memcpy(bad, &b, sizeof(b));
	refused_resealed(q, bad, len);
	/* Bytes after the last record: a part of a record, and a whole empty
	 * one (which the count does not include). */
	for (size_t extra = 3; extra <= 4; extra++) {
		memcpy(bad, img, len);
		memset(bad + len, 0, extra);
		refused_resealed(q, bad, len + extra);
	}
	/* The last record's length running past the body, or past the
	 * longest key. */
	uint32_t lens[] = {(uint32_t)(len - last - 4 + 1), SHSET_KEY_MAX + 1};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memcpy(bad, img, len);
		memcpy(bad + last, &lens[i], 4);
		refused_resealed(q, bad, len);
	}
	/* A count no body of this length can hold, checksums right: refused
	 * before anything is sized from it (the child's peak RSS stays far
	 * below what 2^26 keys' arrays would take). */
	memcpy(bad, img, len);
	b = h;
	b.count = 1ull << 26;
	memcpy(bad, &b, sizeof(b));
	refused_resealed(q, bad, len);
	ck_assert_int_eq(refused_small(q, -EBADMSG), 0);
	/* The last record cut short: its length kept, the body shorter. */
	memcpy(bad, img, len);
	refused_resealed(q, bad, len - 1);
	/* The good one still loads every way. */
	for (uint32_t shards = 1; shards <= 16; shards *= 16) {
		struct shset_opts o = {.size = sizeof(o), .shards = shards};
		shset *l;
		ck_assert_int_eq(shset_load(&l, p, &o), 0);
		ck_assert_int_eq(shset_equal(s, l), 1);
		shset_close(l);
	}
	free(bad);
	free(img);
	shset_close(s);
}
END_TEST

/* Content A: keys 0..n-1; content B: keys n..2n-1.  Each big enough that a
 * save takes a while. */
static void fill(shset *s, uint32_t from, uint32_t n)
{
	uint8_t k[40] = {0};
	shset_clear(s);
	for (uint32_t i = from; i < from + n; i++) {
		memcpy(k, &i, 4);
		shset_add(s, k, sizeof(k));
	}
}

START_TEST(kill_during_save)
{
	const uint32_t n = 100000;
	shset *a, *b;
	char p[128];
	snprintf(p, sizeof(p), "%s/snap", dir);
	ck_assert_int_eq(shset_create(&a, NULL), 0);
	ck_assert_int_eq(shset_create(&b, NULL), 0);
	fill(a, 0, n);
	fill(b, n, n);
	ck_assert_int_eq(shset_save(a, p), 0);
	uint64_t rng = 11;
	int kills = 40;
	for (int t = 0; t < kills; t++) {
		pid_t pid = fork();
		if (pid == 0) {
			for (int i = 0;; i++)
				shset_save_ex(i % 2 ? a : b, p, t % 2 ? SHSET_SAVE_NO_URING : 0);
		}
		usleep((useconds_t)(1000 + rng_next(&rng) % 30000));
		kill(pid, SIGKILL);
		wait_status(pid);
		shset *l;
		ck_assert_int_eq(shset_load(&l, p, NULL), 0);
		ck_assert(shset_equal(l, a) == 1 || shset_equal(l, b) == 1);
		shset_close(l);
	}
	shset_close(a);
	shset_close(b);
}
END_TEST

START_TEST(failed_write_keeps_old_snapshot)
{
	shset *s;
	char p[128];
	snprintf(p, sizeof(p), "%s/snap", dir);
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	shset_add(s, "old", 3);
	ck_assert_int_eq(shset_save(s, p), 0);
	fill(s, 0, 50000); /* about 2 MB */
	for (int mode = 0; mode < 2; mode++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* The file size limit makes the write come up short. */
			struct rlimit rl = {.rlim_cur = 256 * 1024, .rlim_max = 256 * 1024};
			signal(SIGXFSZ, SIG_IGN);
			setrlimit(RLIMIT_FSIZE, &rl);
			int r = shset_save_ex(s, p, mode ? SHSET_SAVE_NO_URING : 0);
			_exit(r < 0 ? 0 : 1);
		}
		ck_assert_int_eq(wait_status(pid), 0);
		shset *l;
		ck_assert_int_eq(shset_load(&l, p, NULL), 0);
		ck_assert_int_eq(shset_size(l), 1);
		ck_assert_int_eq(shset_contains(l, "old", 3), 1);
		shset_close(l);
		ck_assert_int_eq(files_in_dir(), 1); /* the temporary file is gone */
	}
	ck_assert_int_eq(shset_save_ex(s, "", 0), -EINVAL);
	ck_assert_int_eq(shset_save_ex(s, p, 0x100), -EINVAL);
	ck_assert_int_eq(shset_save(NULL, p), -EINVAL);
	ck_assert_int_eq(shset_save(s, "/nonexistent/dir/snap"), -ENOENT);
	shset_close(s);
}
END_TEST

/* --- signals ---------------------------------------------------------------------- */

static volatile sig_atomic_t ticks;

static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}

/* A profiler-like interval timer whose handler interrupts system calls
 * (no SA_RESTART). */
static void start_timer(int which, long usec)
{
	struct sigaction sa = {.sa_handler = on_tick};
	struct itimerval it = {.it_interval = {0, usec}, .it_value = {0, usec}};
	sigemptyset(&sa.sa_mask);
	sigaction(which == ITIMER_REAL ? SIGALRM : SIGPROF, &sa, NULL);
	setitimer(which, &it, NULL);
}

static void stop_timer(int which)
{
	struct itimerval it = {{0, 0}, {0, 0}};
	setitimer(which, &it, NULL);
}

/* Saves and loads under a 1-10 ms interval timer: every one succeeds and
 * round-trips.  Exits with the number of failures (capped). */
static void save_load_under_signals(int which, int iters)
{
	shset *s, *l;
	char p[128];
	int bad = 0;
	snprintf(p, sizeof(p), "%s/sig", dir);
	if (shset_create(&s, NULL) != 0)
		_exit(100);
	fill(s, 0, 50000); /* about 2 MB */
	for (int i = 0; i < iters; i++) {
		start_timer(which, 1000 + (i % 10) * 1000);
		unsigned fl =
		    (i % 3 == 1 ? SHSET_SAVE_NO_URING : 0) | (i % 4 == 3 ? SHSET_SAVE_SORTED : 0);
		int r = shset_save_ex(s, p, fl);
		if (r != 0) {
			fprintf(stderr, "save %d: %s\n", i, strerror(-r));
			bad++;
			continue;
		}
		r = shset_load(&l, p, NULL);
		if (r != 0) {
			fprintf(stderr, "load %d: %s\n", i, strerror(-r));
			bad++;
			continue;
		}
		bad += shset_equal(s, l) != 1;
		shset_close(l);
	}
	stop_timer(which);
	shset_close(s);
	_exit(bad > 99 ? 99 : bad);
}

START_TEST(signals_do_not_fail_saves)
{
	int iters = 60;
	for (int which = 0; which < 2; which++) {
		pid_t pid = fork();
		if (pid == 0)
			save_load_under_signals(which ? ITIMER_PROF : ITIMER_REAL, iters);
		ck_assert_int_eq(wait_status(pid), 0);
	}
}
END_TEST

/* No write of a save lands anywhere after it returns, failed or not: the
 * descriptors it closed are reused at once by fresh files, which must stay
 * empty.  Saves run under signals, half of them past RLIMIT_FSIZE. */
static void no_stray_writes(int iters)
{
	shset *s;
	char p[128], f[128];
	int bad = 0;
	snprintf(p, sizeof(p), "%s/stray", dir);
	if (shset_create(&s, NULL) != 0)
		_exit(100);
	fill(s, 0, 50000);
	signal(SIGXFSZ, SIG_IGN);
	for (int i = 0; i < iters; i++) {
		int limited = i % 2;
		struct rlimit rl = {.rlim_cur = limited ? 256 * 1024 : RLIM_INFINITY,
				    .rlim_max = RLIM_INFINITY};
		setrlimit(RLIMIT_FSIZE, &rl);
		start_timer(ITIMER_REAL, 1000 + (i % 5) * 1000);
		int r = shset_save_ex(s, p, i % 4 == 3 ? SHSET_SAVE_NO_URING : 0);
		int fds[4];
		for (int k = 0; k < 4; k++) {
			snprintf(f, sizeof(f), "%s/fresh%d", dir, k);
			fds[k] = open(f, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		}
		stop_timer(ITIMER_REAL);
		/* The short write's real cause is reported, not a bare EIO. */
		if (limited ? r != -EFBIG : r != 0) {
			fprintf(stderr, "save %d (limited %d): %d\n", i, limited, r);
			bad++;
		}
		usleep(20000);
		for (int k = 0; k < 4; k++) {
			struct stat st;
			if (fds[k] < 0 || fstat(fds[k], &st) != 0 || st.st_size != 0) {
				fprintf(stderr, "save %d: %lld stray bytes\n", i,
					fds[k] < 0 ? -1ll : (long long)st.st_size);
				bad++;
			}
			close(fds[k]);
		}
	}
	shset_close(s);
	_exit(bad > 99 ? 99 : bad);
}

START_TEST(no_writes_after_return)
{
	pid_t pid = fork();
	if (pid == 0)
		no_stray_writes(60);
	ck_assert_int_eq(wait_status(pid), 0);
	ck_assert_int_eq(files_in_dir(), 5); /* stray + fresh0..3: no temporaries */
}
END_TEST

/* --- paths ------------------------------------------------------------------------- */

/* Loads @path in a child that a hang would fail (alarm), returns the
 * child's verdict: 0 when the load returned @err. */
static int load_in_child(const char *path, int err)
{
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGALRM, SIG_DFL); /* the runner's handler kills the group */
		alarm(20);
		shset *l = (shset *)1;
		int r = shset_load(&l, path, NULL);
		if (r != err || l)
			_exit(1);
		uint8_t *img = (uint8_t *)1;
		size_t len = 1;
		int used;
		r = snap_read_file(path, &img, &len, 0, &used);
		_exit(r == err && !img && !len ? 0 : 2);
	}
	return wait_status(pid);
}

START_TEST(special_files_refused)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(p, 0600), 0);
	/* Nobody writes: a blocking open would never return. */
	ck_assert_int_eq(load_in_child(p, -ENOTSUP), 0);
	ck_assert_int_eq(load_in_child(dir, -EISDIR), 0);
	ck_assert_int_eq(load_in_child("/dev/null", -ENOTSUP), 0);
	/* Saving onto them neither hangs nor replaces them. */
	shset *s;
	struct stat st;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	ck_assert_int_eq(shset_save(s, p), -ENOTSUP);
	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert(S_ISFIFO(st.st_mode));
	ck_assert_int_eq(shset_save(s, dir), -EISDIR);
	shset_close(s);
	ck_assert_int_eq(files_in_dir(), 1);
}
END_TEST

/* A header claiming a 2 GiB file is refused from its 64 bytes: the child's
 * peak RSS stays far below the file size. */
static int refused_small(const char *path, int err)
{
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGALRM, SIG_DFL);
		alarm(60);
		/* What the child has from its parent (much more under ASan,
		 * whose quarantine keeps freed memory): only growth counts. */
		long pages = 0, rss = 0;
		FILE *f = fopen("/proc/self/statm", "r");
		if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
			_exit(3);
		fclose(f);
		long start_kib = rss * (sysconf(_SC_PAGESIZE) / 1024);
		shset *l;
		if (shset_load(&l, path, NULL) != err)
			_exit(1);
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		_exit(ru.ru_maxrss - start_kib < 100 * 1024 ? 0 : 2); /* KiB */
	}
	return wait_status(pid);
}

START_TEST(header_checked_before_body)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/sparse", dir);
	uint8_t hdr[SNAP_HDR_SIZE];
	memset(hdr, 0xa7, sizeof(hdr));
	spit(p, hdr, sizeof(hdr));
	ck_assert_int_eq(truncate(p, 2ll << 30), 0);
	ck_assert_int_eq(refused_small(p, -EBADMSG), 0);
	/* A sound header whose body_len disagrees with the file's size. */
	struct snap_hdr h = {0};
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.version = SNAP_VERSION;
	h.count = 1;
	h.body_len = 5;
	h.key_bytes = 1;
	memcpy(hdr, &h, sizeof(h));
	reseal(hdr);
	spit(p, hdr, sizeof(hdr));
	ck_assert_int_eq(truncate(p, 2ll << 30), 0);
	ck_assert_int_eq(refused_small(p, -EBADMSG), 0);
	/* The same header on a file of the right size is read in full. */
	uint8_t img[SNAP_HDR_SIZE + 5] = {0};
	memcpy(img, hdr, SNAP_HDR_SIZE);
	img[SNAP_HDR_SIZE] = 1;
	img[SNAP_HDR_SIZE + 4] = 'k';
	h.body_crc = snap_crc32c(0, img + SNAP_HDR_SIZE, 5);
	memcpy(img, &h, sizeof(h));
	reseal(img);
	spit(p, img, sizeof(img));
	shset *l;
	ck_assert_int_eq(shset_load(&l, p, NULL), 0);
	ck_assert_int_eq(shset_contains(l, "k", 1), 1);
	shset_close(l);
}
END_TEST

static void load_equal(shset *s, const char *path)
{
	shset *l;
	ck_assert_int_eq(shset_load(&l, path, NULL), 0);
	ck_assert_int_eq(shset_equal(s, l), 1);
	shset_close(l);
}

START_TEST(save_through_symlinks)
{
	shset *s;
	char sub[100], target[128], link1[128], link2[128], p[128];
	struct stat st;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(target, sizeof(target), "%s/target", sub);
	snprintf(link1, sizeof(link1), "%s/link1", dir);
	snprintf(link2, sizeof(link2), "%s/link2", dir);
	shset_add(s, "a", 1);
	ck_assert_int_eq(shset_save(s, target), 0);
	/* link2 -> link1 -> sub/target, both relative. */
	ck_assert_int_eq(symlink("sub/target", link1), 0);
	ck_assert_int_eq(symlink("link1", link2), 0);
	for (int mode = 0; mode < 2; mode++) {
		shset_add(s, mode ? "c" : "b", 1);
		ck_assert_int_eq(shset_save_ex(s, link2, mode ? SHSET_SAVE_NO_URING : 0), 0);
		ck_assert_int_eq(lstat(link1, &st), 0);
		ck_assert(S_ISLNK(st.st_mode));
		ck_assert_int_eq(lstat(link2, &st), 0);
		ck_assert(S_ISLNK(st.st_mode));
		load_equal(s, target);
	}
	/* A dangling link gets its target created, as a shell redirection does. */
	snprintf(p, sizeof(p), "%s/dangling", dir);
	ck_assert_int_eq(symlink("sub/new", p), 0);
	ck_assert_int_eq(shset_save(s, p), 0);
	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	snprintf(p, sizeof(p), "%s/new", sub);
	load_equal(s, p);
	/* A loop is refused. */
	snprintf(p, sizeof(p), "%s/loop", dir);
	ck_assert_int_eq(symlink("loop", p), 0);
	ck_assert_int_eq(shset_save(s, p), -ELOOP);
	unlink(p);
	unlink(target);
	snprintf(p, sizeof(p), "%s/new", sub);
	unlink(p);
	ck_assert_int_eq(rmdir(sub), 0); /* no temporaries left in it */
	shset_close(s);
}
END_TEST

static mode_t mode_of(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* The mode of a new snapshot under @mask, from a child (umask is per
 * process). */
static mode_t new_file_mode(shset *s, mode_t mask, unsigned flags)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/new%o", dir, (unsigned)mask);
	unlink(p);
	pid_t pid = fork();
	if (pid == 0) {
		umask(mask);
		_exit(shset_save_ex(s, p, flags) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(wait_status(pid), 0);
	return mode_of(p);
}

START_TEST(save_keeps_mode_and_owner)
{
	shset *s;
	char p[128];
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	shset_add(s, "a", 1);
	snprintf(p, sizeof(p), "%s/snap", dir);
	ck_assert_int_eq(shset_save(s, p), 0);
	const mode_t modes[] = {0644, 0640, 0600, 0444};
	for (unsigned i = 0; i < 8; i++) {
		ck_assert_int_eq(chmod(p, modes[i % 4]), 0);
		ck_assert_int_eq(shset_save_ex(s, p, i >= 4 ? SHSET_SAVE_NO_URING : 0), 0);
		ck_assert_uint_eq(mode_of(p), modes[i % 4]);
	}
	ck_assert_uint_eq(new_file_mode(s, 022, 0), 0644);
	ck_assert_uint_eq(new_file_mode(s, 077, 0), 0600);
	ck_assert_uint_eq(new_file_mode(s, 027, SHSET_SAVE_NO_URING), 0640);
	if (geteuid() == 0) {
		struct stat st;
		ck_assert_int_eq(chown(p, 4321, 4322), 0);
		ck_assert_int_eq(shset_save(s, p), 0);
		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_uint_eq(st.st_uid, 4321);
		ck_assert_uint_eq(st.st_gid, 4322);
	}
	shset_close(s);
}
END_TEST

/* --- key types ------------------------------------------------------------------------ */

START_TEST(key_type_kept)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/typed", dir);
	for (uint32_t t = 0; t <= SHSET_KEYS_INT; t++) {
		shset *s, *l;
		struct shset_opts o = {.key_type = t};
		ck_assert_int_eq(shset_create(&s, &o), 0);
		shset_add(s, "12", 2);
		ck_assert_int_eq(shset_save_ex(s, p, t == 1 ? SHSET_SAVE_NO_URING : 0), 0);
		/* The file decides; the caller's key_type is ignored. */
		struct shset_opts lo = {.key_type = (t + 1) % 3};
		ck_assert_int_eq(shset_load(&l, p, t ? &lo : NULL), 0);
		ck_assert_int_eq(shset_key_type(l), (int)t);
		ck_assert_int_eq(shset_equal(s, l), 1);
		size_t len;
		uint8_t *img = slurp(p, &len);
		struct snap_hdr h;
		ck_assert_int_eq(snap_check(img, len, &h), SNAP_OK);
		ck_assert_uint_eq(h.key_type, t);
		free(img);
		shset_close(l);
		shset_close(s);
	}
	/* An unknown key type, checksummed correctly, is a defect. */
	size_t len;
	uint8_t *img = slurp(p, &len);
	uint32_t seven = 7;
	memcpy(img + 52, &seven, 4);
	reseal(img);
	struct snap_hdr h;
	ck_assert_int_eq(snap_check(img, len, &h), SNAP_BAD_KEY_TYPE);
	ck_assert_str_ne(snap_defect_str(SNAP_BAD_KEY_TYPE), "unknown defect");
	spit(p, img, len);
	refused(p, -EBADMSG);
	free(img);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("snapshot");
	tcase_add_checked_fixture(tc, mkdir_tmp, rm_tmp);
	tcase_set_timeout(tc, 300 * test_scale());
	tcase_add_test(tc, round_trips);
	tcase_add_test(tc, load_sized_like_a_presized_set);
	tcase_add_test(tc, big_load_without_room_leaves_nothing);
	tcase_add_test(tc, big_loads_share_inserts);
	tcase_add_test(tc, loads_without_populate);
	tcase_add_test(tc, load_failing_in_its_inserts_leaves_nothing);
	tcase_add_test(tc, corruption_refused);
	tcase_add_test(tc, sound_checksums_unsound_records);
	tcase_add_test(tc, kill_during_save);
	tcase_add_test(tc, failed_write_keeps_old_snapshot);
	tcase_add_test(tc, signals_do_not_fail_saves);
	tcase_add_test(tc, no_writes_after_return);
	tcase_add_test(tc, special_files_refused);
	tcase_add_test(tc, header_checked_before_body);
	tcase_add_test(tc, save_through_symlinks);
	tcase_add_test(tc, save_keeps_mode_and_owner);
	tcase_add_test(tc, key_type_kept);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
