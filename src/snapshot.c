/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c - crash-safe snapshots of a set, written through io_uring.
 *
 * File format, version 1 (all integers little-endian):
 *
 *   offset  size  field
 *        0     8  magic "SHSETSNP"
 *        8     4  version (1); a reader refuses any other
 *       12     4  flags: bit 0 = keys sorted (bytewise, shorter first)
 *       16     8  count: number of keys
 *       24     8  body_len: bytes after the header
 *       32     8  created_ns: CLOCK_REALTIME of the save (or
 *                 SOURCE_DATE_EPOCH, for reproducible files)
 *       40     8  key_bytes: sum of key lengths
 *       48     4  body_crc: CRC32C (Castagnoli) of the body
 *       52     8  reserved, zero
 *       60     4  hdr_crc: CRC32C of bytes 0..59
 *       64        body: count records of { u32 len; len bytes }
 *
 * Saving: the keys of one consistent state are copied out under the lock
 * (shset_foreach holds it only for a memcpy of the used heap), serialised,
 * and written to a new temporary file beside the target (O_EXCL) with a
 * chain of large io_uring writes linked to an fsync, so the fsync is ordered
 * after every write and a short write cancels the rest.  Then the file is
 * renamed over the target and the directory fsynced.  A crash at any point
 * leaves either the old snapshot or the new one under the final name, never
 * a torn one; an error removes the temporary file.
 *
 * Loading checks everything (header checksum, version, flags, lengths, body
 * checksum, every key length, count, duplicates) before returning a set.
 *
 * Without io_uring (ENOSYS, EPERM from seccomp or kernel.io_uring_disabled,
 * or SHSET_NO_IO_URING=1 / SHSET_SAVE_NO_URING) the same bytes are written
 * with pwrite and fsync.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#ifdef SHSET_HAVE_MEMCHECK
#include <valgrind/memcheck.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crashpoint.h"
#include "set.h"
#include "shset.h"
#include "snapshot.h"

#define RING_DEPTH 64u
#define MAX_CHUNKS 32u
#define MIN_CHUNK  (1u << 20)

static uint64_t saves_uring, saves_fallback;

/* --- CRC32C -------------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = (crc >> 8) ^ crc_table[(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	crc = (uint32_t)c;
	for (; len; p++, len--)
		crc = __builtin_ia32_crc32qi(crc, *p);
	return crc;
}
#endif

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len)
{
	static int hw = -1;

	if (hw < 0) {
		crc_init();
#if defined(__x86_64__)
		__builtin_cpu_init();
		hw = __builtin_cpu_supports("sse4.2");
#else
		hw = 0;
#endif
	}
	crc = ~crc;
#if defined(__x86_64__)
	if (hw)
		return ~crc_hw(crc, data, len);
#endif
	return ~crc_sw(crc, data, len);
}

/* --- checking an image ------------------------------------------------------------ */

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

const char *snap_defect_str(enum snap_defect d)
{
	static const char *s[] = {"sound",
				  "shorter than a header",
				  "bad magic",
				  "unsupported format version",
				  "header checksum mismatch",
				  "unknown flags",
				  "body length disagrees with file size",
				  "body checksum mismatch",
				  "key runs past the body or the key limit",
				  "count or key bytes disagree with the body"};
	return (unsigned)d < sizeof(s) / sizeof(s[0]) ? s[d] : "unknown defect";
}

int snap_defect_errno(enum snap_defect d)
{
	return d == SNAP_OK ? 0 : d == SNAP_BAD_VERSION ? -EPROTONOSUPPORT : -EBADMSG;
}

enum snap_defect snap_check(const uint8_t *img, size_t len, struct snap_hdr *h)
{
	if (len < SNAP_HDR_SIZE)
		return SNAP_SHORT;
	memcpy(h, img, sizeof(*h));
	if (memcmp(h->magic, SNAP_MAGIC, 8) != 0)
		return SNAP_BAD_MAGIC;
	if (h->version != SNAP_VERSION)
		return SNAP_BAD_VERSION;
	if (snap_crc32c(0, img, 60) != h->hdr_crc)
		return SNAP_BAD_HDR_CRC;
	if ((h->flags & ~SNAP_FLAGS_KNOWN) || h->reserved || h->pad)
		return SNAP_BAD_FLAGS;
	if (h->body_len != len - SNAP_HDR_SIZE)
		return SNAP_BAD_LENGTH;
	if (snap_crc32c(0, img + SNAP_HDR_SIZE, h->body_len) != h->body_crc)
		return SNAP_BAD_BODY_CRC;
	uint64_t n = 0, kb = 0;
	size_t pos = SNAP_HDR_SIZE;
	const uint8_t *k;
	size_t kl;
	int r;
	while ((r = snap_next(img, len, &pos, &k, &kl)) == 1) {
		n++;
		kb += kl;
	}
	if (r < 0)
		return SNAP_BAD_KEY;
	if (n != h->count || kb != h->key_bytes)
		return SNAP_BAD_COUNT;
	return SNAP_OK;
}

int snap_next(const uint8_t *img, size_t len, size_t *pos, const uint8_t **key, size_t *klen)
{
	if (*pos == len)
		return 0;
	if (len - *pos < 4)
		return -EBADMSG;
	uint32_t l = get32(img + *pos);
	if (l > SHSET_KEY_MAX || l > len - *pos - 4)
		return -EBADMSG;
	*key = img + *pos + 4;
	*klen = l;
	*pos += 4 + (size_t)l;
	return 1;
}

/* --- io ------------------------------------------------------------------------------ */

static int uring_wanted(int no_uring)
{
	const char *e = getenv("SHSET_NO_IO_URING");
	return !no_uring && !(e && *e && strcmp(e, "0") != 0);
}

static size_t chunk_size(size_t len)
{
	size_t c = (len + MAX_CHUNKS - 1) / MAX_CHUNKS;
	c = (c + 4095) & ~(size_t)4095;
	return c < MIN_CHUNK ? MIN_CHUNK : c;
}

/* Waits for @n completions; the first error wins.  @want[i] is the length
 * completion i (user_data) must report. */
static int reap(struct io_uring *ring, unsigned n, const size_t *want)
{
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(ring, &cqe);
		if (r < 0)
			return r; /* the ring is unusable; caller tears it down */
		unsigned id = (unsigned)cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (!err && res < 0 && res != -ECANCELED)
			err = res;
		else if (!err && res >= 0 && (size_t)res != want[id])
			err = -EIO; /* short write: the linked rest was cancelled */
		else if (!err && res == -ECANCELED)
			err = -EIO;
	}
	return err;
}

/* Writes @buf at offset 0 and fsyncs, as one linked chain. */
static int write_uring(struct io_uring *ring, int fd, const uint8_t *buf, size_t len)
{
	size_t chunk = chunk_size(len), want[MAX_CHUNKS + 2];
	unsigned n = 0;

	for (size_t off = 0; off < len; off += chunk, n++) {
		size_t sz = len - off < chunk ? len - off : chunk;
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		io_uring_prep_write(sqe, fd, buf + off, (unsigned)sz, off);
		/* Linked: the fsync below runs only after every write. */
		sqe->flags |= IOSQE_IO_LINK;
		sqe->user_data = n;
		want[n] = sz;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	io_uring_prep_fsync(sqe, fd, 0);
	sqe->user_data = n;
	want[n] = 0;
	int r = io_uring_submit(ring);
	if (r < 0)
		return r;
	return reap(ring, n + 1, want);
}

static int write_plain(int fd, const uint8_t *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = pwrite(fd, buf + off, len - off, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (size_t)w;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

static int fsync_dir(struct io_uring *ring, const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (dfd < 0)
		return -errno;
	if (ring) {
		size_t want = 0;
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		io_uring_prep_fsync(sqe, dfd, 0);
		sqe->user_data = 0;
		err = io_uring_submit(ring);
		if (err >= 0)
			err = reap(ring, 1, &want);
	} else if (fsync(dfd) < 0) {
		err = -errno;
	}
	close(dfd);
	return err;
}

static int save_image(const char *path, const uint8_t *img, size_t len, int no_uring,
		      int *used_uring)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char *dir, *tmp = NULL;
	struct io_uring ring;
	int ring_ok = 0, fd = -1, err;

	if (!*base)
		return -EISDIR;
	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	/* Beside the target: rename() is atomic only within a filesystem. */
	if (asprintf(&tmp, "%s/.%s.tmp.XXXXXX", dir, base) < 0) {
		free(dir);
		return -ENOMEM;
	}
	if (uring_wanted(no_uring) && io_uring_queue_init(RING_DEPTH, &ring, 0) == 0)
		ring_ok = 1;
	*used_uring = ring_ok;
	fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT | O_EXCL */
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	CRASH_POINT("save: temporary file created");
	err = ring_ok ? write_uring(&ring, fd, img, len) : write_plain(fd, img, len);
	if (!err && close(fd) < 0)
		err = -errno;
	else if (err)
		close(fd);
	fd = -1;
	CRASH_POINT("save: written and synced");
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	CRASH_POINT("save: renamed");
	if (err) {
		unlink(tmp);
		goto out;
	}
	err = fsync_dir(ring_ok ? &ring : NULL, dir);
out:
	if (ring_ok)
		io_uring_queue_exit(&ring);
	free(tmp);
	free(dir);
	return err;
}

static int read_uring(struct io_uring *ring, int fd, uint8_t *buf, size_t len)
{
	size_t chunk = chunk_size(len), want[MAX_CHUNKS + 1];
	unsigned n = 0;

	for (size_t off = 0; off < len; off += chunk, n++) {
		size_t sz = len - off < chunk ? len - off : chunk;
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		/* Independent reads: they may run in parallel. */
		io_uring_prep_read(sqe, fd, buf + off, (unsigned)sz, off);
		sqe->user_data = n;
		want[n] = sz;
	}
	if (!n)
		return 0;
	int r = io_uring_submit(ring);
	if (r < 0)
		return r;
	return reap(ring, n, want);
}

static int read_plain(int fd, uint8_t *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t r = pread(fd, buf + off, len - off, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shrank under us */
		off += (size_t)r;
	}
	return 0;
}

int snap_read_file(const char *path, uint8_t **img, size_t *len, int no_uring, int *used_uring)
{
	struct stat st;
	struct io_uring ring;
	int fd, err, ring_ok = 0;

	*img = NULL;
	*len = 0;
	*used_uring = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > (1ull << 40)) {
		err = -EFBIG;
		goto out;
	}
	*len = (size_t)st.st_size;
	*img = malloc(*len ? *len : 1);
	if (!*img) {
		err = -ENOMEM;
		goto out;
	}
	if (uring_wanted(no_uring) && io_uring_queue_init(RING_DEPTH, &ring, 0) == 0)
		ring_ok = 1;
	*used_uring = ring_ok;
	err = ring_ok ? read_uring(&ring, fd, *img, *len) : read_plain(fd, *img, *len);
	if (ring_ok)
		io_uring_queue_exit(&ring);
#ifdef SHSET_HAVE_MEMCHECK
	/* Memcheck cannot see the kernel fill the buffer through io_uring. */
	if (!err && ring_ok)
		VALGRIND_MAKE_MEM_DEFINED(*img, *len);
#endif
out:
	close(fd);
	if (err) {
		free(*img);
		*img = NULL;
		*len = 0;
	}
	return err;
}

/* --- public ------------------------------------------------------------------------------ */

struct ser {
	uint8_t *buf;
	size_t len;
	uint64_t count, key_bytes;
};

static int cmp_rec(const void *a, const void *b, void *img)
{
	const uint8_t *x = (const uint8_t *)img + *(const size_t *)a;
	const uint8_t *y = (const uint8_t *)img + *(const size_t *)b;
	uint32_t lx = get32(x), ly = get32(y);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x + 4, y + 4, lx);
}

/* Reorders the records of @s by key (shorter first, then bytewise). */
static int sort_body(struct ser *s)
{
	size_t *idx = malloc((s->count ? s->count : 1) * sizeof(size_t));
	uint8_t *out = malloc(s->len ? s->len : 1);

	if (!idx || !out) {
		free(idx);
		free(out);
		return -ENOMEM;
	}
	size_t pos = SNAP_HDR_SIZE, n = 0;
	while (pos < s->len) {
		idx[n++] = pos;
		pos += 4 + get32(s->buf + pos);
	}
	qsort_r(idx, n, sizeof(size_t), cmp_rec, s->buf);
	memcpy(out, s->buf, SNAP_HDR_SIZE);
	pos = SNAP_HDR_SIZE;
	for (size_t i = 0; i < n; i++) {
		size_t rl = 4 + get32(s->buf + idx[i]);
		memcpy(out + pos, s->buf + idx[i], rl);
		pos += rl;
	}
	free(s->buf);
	free(idx);
	s->buf = out;
	return 0;
}

int shset_save_ex(shset *set, const char *path, unsigned flags)
{
	struct ser s = {0};
	int err, used;

	if (!set || !path || !*path || (flags & ~(SHSET_SAVE_SORTED | SHSET_SAVE_NO_URING)))
		return -EINVAL;
	/* The records come out in the body format already, after room for
	 * the header. */
	err = set_collect(set, SNAP_HDR_SIZE, &s.buf, &s.len, &s.count, &s.key_bytes);
	if (err)
		return err;
	s.len += SNAP_HDR_SIZE;
	if (flags & SHSET_SAVE_SORTED) {
		err = sort_body(&s);
		if (err) {
			free(s.buf);
			return err;
		}
	}
	struct snap_hdr h = {0};
	struct timespec ts;
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.version = SNAP_VERSION;
	h.flags = (flags & SHSET_SAVE_SORTED) ? SNAP_FLAG_SORTED : 0;
	h.count = s.count;
	h.body_len = s.len - SNAP_HDR_SIZE;
	/* SOURCE_DATE_EPOCH makes files reproducible, byte for byte. */
	const char *epoch = getenv("SOURCE_DATE_EPOCH");
	if (epoch && *epoch) {
		h.created_ns = strtoull(epoch, NULL, 10) * 1000000000ull;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		h.created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	h.key_bytes = s.key_bytes;
	h.body_crc = snap_crc32c(0, s.buf + SNAP_HDR_SIZE, h.body_len);
	memcpy(s.buf, &h, SNAP_HDR_SIZE);
	h.hdr_crc = snap_crc32c(0, s.buf, 60);
	memcpy(s.buf, &h, SNAP_HDR_SIZE);
	err = save_image(path, s.buf, s.len, !!(flags & SHSET_SAVE_NO_URING), &used);
	free(s.buf);
	if (!err)
		__atomic_add_fetch(used ? &saves_uring : &saves_fallback, 1, __ATOMIC_RELAXED);
	return err;
}

int shset_save(shset *s, const char *path)
{
	return shset_save_ex(s, path, 0);
}

int shset_load(shset **out, const char *path, const struct shset_opts *opts)
{
	uint8_t *img;
	size_t len;
	struct snap_hdr h;
	int err, used;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path || (opts && opts->flags))
		return -EINVAL;
	err = snap_read_file(path, &img, &len, 0, &used);
	if (err)
		return err;
	enum snap_defect d = snap_check(img, len, &h);
	if (d != SNAP_OK) {
		free(img);
		return snap_defect_errno(d);
	}
	const void **keys = malloc((h.count ? h.count : 1) * sizeof(void *));
	size_t *lens = malloc((h.count ? h.count : 1) * sizeof(size_t));
	struct shset_opts o = opts ? *opts : (struct shset_opts){0};
	shset *s = NULL;
	if (!keys || !lens) {
		err = -ENOMEM;
		goto out;
	}
	size_t pos = SNAP_HDR_SIZE, i = 0;
	const uint8_t *k;
	size_t kl;
	while (snap_next(img, len, &pos, &k, &kl) == 1) {
		keys[i] = k;
		lens[i++] = kl;
	}
	if (o.capacity < h.count)
		o.capacity = h.count;
	err = shset_create(&s, &o);
	if (err)
		goto out;
	long long added = shset_add_batch(s, keys, lens, h.count);
	if (added < 0) {
		err = (int)added;
	} else if ((uint64_t)added != h.count) {
		err = -EBADMSG; /* duplicate keys: not a set */
	}
out:
	if (err) {
		shset_close(s);
		s = NULL;
	}
	*out = s;
	free(keys);
	free(lens);
	free(img);
	return err;
}

void snapshot_counters(uint64_t *uring, uint64_t *fallback)
{
	*uring = __atomic_load_n(&saves_uring, __ATOMIC_RELAXED);
	*fallback = __atomic_load_n(&saves_fallback, __ATOMIC_RELAXED);
}
