/* SPDX-License-Identifier: MIT */
/* test_inspect.c - the public read-only inspection API (shset/inspect.h):
 * live sets through a read-only view, snapshot files of every kind. */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "shset.h"
#include "shset/inspect.h"

static uint64_t blocks(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	return (uint64_t)st.st_blocks;
}

START_TEST(live_view)
{
	struct shset_opts o = {.key_type = SHSET_KEYS_STR};
	shset *s;
	shset_view *v;
	struct shset_view_info in;
	struct shset_stats st;

	ck_assert_int_eq(shset_create(&s, &o), 0);
	for (uint32_t i = 0; i < 5000; i++)
		ck_assert_int_eq(shset_add(s, &i, sizeof(i)), 1);
	/* A read-only descriptor is enough to look. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", shset_fd(s));
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(ro, 0);
	ck_assert_int_eq(shset_view_open(&v, ro), 0);
	ck_assert_int_eq(shset_stats(s, &st), 0);
	uint64_t acq = st.lock.acquisitions, before = blocks(shset_fd(s));

	ck_assert_int_eq(shset_view_info(v, &in), 0);
	ck_assert_uint_eq(in.count, 5000);
	ck_assert_uint_eq(in.key_type, SHSET_KEYS_STR);
	ck_assert_uint_eq(in.capacity, st.capacity);
	ck_assert_uint_eq(in.max_procs, 256);
	ck_assert_int_eq(in.lock.locked, 0);

	/* Our own slot is listed, alive, with our pid. */
	struct shset_view_proc p;
	int slot = shset_slot(s);
	ck_assert_int_ge(slot, 0);
	ck_assert_int_eq(shset_view_proc(v, (uint32_t)slot, &p), 1);
	ck_assert_uint_eq(p.pid, (uint32_t)getpid());
	ck_assert_int_eq(p.alive, 1);
	ck_assert_int_eq(shset_view_proc(v, 256, &p), -EINVAL);

	/* The keys of one state, exactly. */
	uint8_t *seen = calloc(5000, 1);
	uint64_t pos = 0, n = 0;
	const void *k;
	size_t len;
	ck_assert_int_eq(shset_view_next(v, &pos, &k, &len), -EINVAL); /* no copy yet */
	ck_assert_int_eq(shset_view_take(v, 2000000000ull), 0);
	while (shset_view_next(v, &pos, &k, &len) == 1) {
		uint32_t i;
		ck_assert_uint_eq(len, 4);
		memcpy(&i, k, 4);
		ck_assert_uint_lt(i, 5000);
		ck_assert(!seen[i]);
		seen[i] = 1;
		n++;
	}
	ck_assert_uint_eq(n, 5000);
	free(seen);

	/* Looking changed nothing: no lock taken, no page allocated. */
	ck_assert_int_eq(shset_stats(s, &st), 0);
	ck_assert_uint_eq(st.lock.acquisitions, acq);
	ck_assert_uint_eq(blocks(shset_fd(s)), before);

	/* A scribbled table: the copy says so. */
	uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shset_fd(s), 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	uint64_t *count = (uint64_t *)(m + 512 + 72); /* table_state.count */
	uint64_t c0 = *count;
	*count = c0 + 1;
	ck_assert_int_eq(shset_view_take(v, 2000000000ull), -EUCLEAN);
	*count = c0;
	ck_assert_int_eq(shset_view_take(v, 2000000000ull), 0);
	munmap(m, 4096);

	shset_view_close(v);
	close(ro);
	shset_close(s);
}
END_TEST

START_TEST(view_refusals)
{
	shset_view *v;
	int p[2];

	ck_assert_int_eq(shset_view_open(&v, -1), -EBADF);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(shset_view_open(&v, p[0]), -EMEDIUMTYPE);
	close(p[0]);
	close(p[1]);
	int m = memfd_create("plain", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(m, 65536), 0);
	ck_assert_int_eq(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	ck_assert_int_eq(shset_view_open(&v, m), -EPROTO);
	close(m);
	ck_assert_int_eq(shset_view_open(NULL, 0), -EINVAL);
	ck_assert_int_eq(shset_view_info(NULL, NULL), -EINVAL);
	ck_assert_int_eq(shset_recv_fd(-1, &m), -EINVAL);
}
END_TEST

START_TEST(snapshot_files)
{
	char dir[] = "/tmp/shset-inspect-XXXXXX", path[128], bad[128];
	shset *s;
	shset_snapfile *f;
	struct shset_snapfile_info in;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/good.shs", dir);
	snprintf(bad, sizeof(bad), "%s/bad.shs", dir);
	struct shset_opts o = {.key_type = SHSET_KEYS_INT};
	ck_assert_int_eq(shset_create(&s, &o), 0);
	ck_assert_int_eq(shset_add(s, "12", 2), 1);
	ck_assert_int_eq(shset_add(s, "-7", 2), 1);
	ck_assert_int_eq(shset_save(s, path), 0);
	shset_close(s);

	ck_assert_int_eq(shset_snapfile_open(&f, path), 0);
	ck_assert_int_eq(shset_snapfile_info(f, &in), 0);
	ck_assert_int_eq(in.sound, 1);
	ck_assert_int_eq(in.error, 0);
	ck_assert_str_eq(in.defect, "sound");
	ck_assert_uint_eq(in.count, 2);
	ck_assert_uint_eq(in.key_type, SHSET_KEYS_INT);
	ck_assert_int_eq(in.header_crc_ok, 1);
	ck_assert_int_eq(in.body_crc_ok, 1);
	uint64_t pos = 0;
	const void *k;
	size_t len;
	int n = 0;
	while (shset_snapfile_next(f, &pos, &k, &len) == 1)
		n++;
	ck_assert_int_eq(n, 2);
	shset_snapfile_close(f);

	/* A flipped body byte: described, not refused. */
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "cp %s %s", path, bad);
	ck_assert_int_eq(system(cmd), 0);
	int fd = open(bad, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "Z", 1, 64 + 4), 1);
	close(fd);
	ck_assert_int_eq(shset_snapfile_open(&f, bad), 0);
	ck_assert_int_eq(shset_snapfile_info(f, &in), 0);
	ck_assert_int_eq(in.sound, 0);
	ck_assert_int_eq(in.body_crc_ok, 0);
	ck_assert_int_eq(in.error, -EBADMSG);
	ck_assert_str_eq(in.defect, "body checksum mismatch");
	shset_snapfile_close(f);

	/* Not a snapshot at all: a bad magic, and no body read. */
	fd = open(bad, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(
	    write(fd, "hello, this is a text file and not a snapshot, sorry!!!!!!!!!!!!\n", 66),
	    66);
	close(fd);
	ck_assert_int_eq(shset_snapfile_open(&f, bad), 0);
	ck_assert_int_eq(shset_snapfile_info(f, &in), 0);
	ck_assert_int_eq(in.magic_ok, 0);
	ck_assert_int_eq(in.body_crc_ok, -1);
	ck_assert_str_eq(in.defect, "bad magic");
	pos = 0;
	ck_assert_int_eq(shset_snapfile_next(f, &pos, &k, &len), 0);
	shset_snapfile_close(f);

	/* Paths that are not files. */
	ck_assert_int_eq(shset_snapfile_open(&f, dir), -EISDIR);
	snprintf(bad, sizeof(bad), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(bad, 0600), 0);
	ck_assert_int_eq(shset_snapfile_open(&f, bad), -ENOTSUP);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("inspect");
	TCase *tc = tcase_create("inspect");
	tcase_set_timeout(tc, 60 * test_scale());
	tcase_add_test(tc, live_view);
	tcase_add_test(tc, view_refusals);
	tcase_add_test(tc, snapshot_files);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
