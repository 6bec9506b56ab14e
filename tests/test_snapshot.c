/* SPDX-License-Identifier: MIT */
/* test_snapshot.c - snapshot round trips, corruption, kills mid-save. */
#include "helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

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

START_TEST(corruption_refused)
{
	shset *s;
	char p[128], q[128];
	uint8_t key[300];
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	for (uint32_t i = 0; i < 500; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	snprintf(p, sizeof(p), "%s/good", dir);
	snprintf(q, sizeof(q), "%s/bad", dir);
	ck_assert_int_eq(shset_save(s, p), 0);
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
	snap_next(bad, len, &pos, &k1, &l1);
	size_t second = pos;
	snap_next(bad, len, &pos, &k2, &l2);
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
	refused(dir, -EINVAL);
	free(dup);
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

static Suite *suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("snapshot");
	tcase_add_checked_fixture(tc, mkdir_tmp, rm_tmp);
	tcase_set_timeout(tc, 300 * test_scale());
	tcase_add_test(tc, round_trips);
	tcase_add_test(tc, corruption_refused);
	tcase_add_test(tc, kill_during_save);
	tcase_add_test(tc, failed_write_keeps_old_snapshot);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
