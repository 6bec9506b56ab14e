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
 *       52     4  key_type: SHSET_KEYS_* (0 bytes, 1 str, 2 int); files
 *                 written before it was recorded hold 0 here.  Above 2 is
 *                 a defect.
 *       56     4  reserved, zero
 *       60     4  hdr_crc: CRC32C of bytes 0..59
 *       64        body: count records of { u32 len; len bytes }
 *
 * Saving: the keys of one consistent state are collected under the lock
 * into a private buffer of { len, bytes } records (set_collect: a walk of
 * the table that copies each key, so the lock is held for about twice a
 * memcpy of the used heap with short keys, more with long ones), then
 * written to a new temporary file beside the target (O_EXCL) with a
 * chain of large io_uring writes linked to an fsync, so the fsync is ordered
 * after every write and a short write cancels the rest (the rest is then
 * retried with pwrite, which reports the real errno).  Then the file is
 * renamed over the target and the directory fsynced.  A crash at any point
 * leaves either the old snapshot or the new one under the final name, never
 * a torn one; an error removes the temporary file.
 *
 * Paths.  A save follows symlinks to their final target (at most 40 hops,
 * else -ELOOP; a dangling link gets its target created) and replaces that
 * file, so the link stays a link; the temporary file goes in the target's
 * directory.  A replaced file keeps its mode and, where permitted (as root,
 * or a group the caller is in), its owner; a new file gets 0644 less the
 * umask, as cp gives.  Only regular files are read or replaced: a directory
 * is -EISDIR, a FIFO, socket or device -ENOTSUP, and a FIFO never blocks
 * the open.  A load reads and checks the 64-byte header before it allocates
 * or reads the body, so a huge file with a bad header costs 64 bytes.
 *
 * Signals.  Any system call a signal interrupts is retried (io_uring waits
 * and submissions, open, read, write, fsync): a save or load never fails
 * because a signal arrived, SA_RESTART or not.  No save or load returns
 * while the kernel may still use its buffers or files: every submitted
 * request is reaped, on error paths too, and requests name the file by its
 * registered index, not by an fd number that could be reused.
 *
 * Loading checks everything (header checksum, version, flags, key type,
 * lengths, body checksum, every key length, count, duplicates) before
 * returning a set, which gets the file's key type (opts->key_type is
 * ignored).
 *
 * Without io_uring (ENOSYS, EPERM from seccomp or kernel.io_uring_disabled,
 * or SHSET_NO_IO_URING=1 / SHSET_SAVE_NO_URING) the same bytes are written
 * with pwrite and fsync.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#ifdef SHSET_HAVE_MEMCHECK
#include <valgrind/memcheck.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "prim.h"
#include "crashpoint.h"
#include "set.h"
#include "shset.h"
#include "snapshot.h"

#define RING_DEPTH 64u
#define MAX_CHUNKS 32u /* transfers in one batch */
#define MIN_CHUNK  (1u << 20)
#define MAX_CHUNK  (1u << 30)	/* below the kernel's cap on one transfer (2 GiB - 4 KiB) */
#define MAX_FILE   (1ull << 40) /* larger files are refused (-EFBIG) */
#define LINK_HOPS  40u		/* symlinks followed at most, as the kernel's limit */

/* A batch is MAX_CHUNKS transfers and its linked fsync: io_uring_get_sqe
 * never comes back empty, and the CQ ring (twice RING_DEPTH) never overflows. */
_Static_assert(RING_DEPTH >= MAX_CHUNKS + 1, "a batch must fit the ring");
_Static_assert(MAX_CHUNK <= 0x7ffff000u && MAX_CHUNK <= INT_MAX, "a chunk fits one transfer");

static uint64_t saves_uring, saves_fallback;

/* --- CRC32C -------------------------------------------------------------------- */

static uint32_t crc_table[256];
static int crc_hw_ok;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Once per process: two threads saving at once must not see a table (or
 * the CPU check) half made. */
static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw_ok = __builtin_cpu_supports("sse4.2");
#endif
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
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
#if defined(__x86_64__)
	if (crc_hw_ok)
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
				  "count or key bytes disagree with the body",
				  "unknown key type"};
	return (unsigned)d < sizeof(s) / sizeof(s[0]) ? s[d] : "unknown defect";
}

int snap_defect_errno(enum snap_defect d)
{
	return d == SNAP_OK ? 0 : d == SNAP_BAD_VERSION ? -EPROTONOSUPPORT : -EBADMSG;
}

enum snap_defect snap_check_header(const uint8_t *img, size_t len, uint64_t file_size,
				   struct snap_hdr *h)
{
	if (len < SNAP_HDR_SIZE || file_size < SNAP_HDR_SIZE)
		return SNAP_SHORT;
	memcpy(h, img, sizeof(*h));
	if (memcmp(h->magic, SNAP_MAGIC, 8) != 0)
		return SNAP_BAD_MAGIC;
	if (h->version != SNAP_VERSION)
		return SNAP_BAD_VERSION;
	if (snap_crc32c(0, img, 60) != h->hdr_crc)
		return SNAP_BAD_HDR_CRC;
	if ((h->flags & ~SNAP_FLAGS_KNOWN) || h->pad)
		return SNAP_BAD_FLAGS;
	if (h->key_type > SHSET_KEYS_INT)
		return SNAP_BAD_KEY_TYPE;
	if (h->body_len != file_size - SNAP_HDR_SIZE)
		return SNAP_BAD_LENGTH;
	return SNAP_OK;
}

enum snap_defect snap_check(const uint8_t *img, size_t len, struct snap_hdr *h)
{
	enum snap_defect d = snap_check_header(img, len, len, h);

	if (d != SNAP_OK)
		return d;
	if (!snap_body_crc_ok(img, h))
		return SNAP_BAD_BODY_CRC;
	return snap_check_records(img + SNAP_HDR_SIZE, h->body_len, h->count, h->key_bytes);
}

int snap_body_crc_ok(const uint8_t *img, const struct snap_hdr *h)
{
	return snap_crc32c(0, img + SNAP_HDR_SIZE, h->body_len) == h->body_crc;
}

enum snap_defect snap_check_records(const uint8_t *recs, size_t len, uint64_t count,
				    uint64_t key_bytes)
{
	uint64_t n = 0, kb = 0;
	size_t pos = 0;
	const uint8_t *k;
	size_t kl;
	int r;
	while ((r = snap_next(recs, len, &pos, &k, &kl)) == 1) {
		n++;
		kb += kl;
	}
	if (r < 0)
		return SNAP_BAD_KEY;
	if (n != count || kb != key_bytes)
		return SNAP_BAD_COUNT;
	return SNAP_OK;
}

/* --- io ------------------------------------------------------------------------------ */

/*
 * Every system call here is retried when a signal interrupts it, and no
 * function returns while the kernel may still use its buffers or its file:
 * each batch of SQEs is reaped in full before anything else happens, on
 * error paths too.  The file is registered with the ring, so requests name
 * it by index, never by an fd number that a close could hand to another file.
 */

static int uring_wanted(int no_uring)
{
	const char *e = getenv("SHSET_NO_IO_URING");
	return !no_uring && !(e && *e && strcmp(e, "0") != 0);
}

static size_t chunk_size(size_t len)
{
	size_t c = (len + MAX_CHUNKS - 1) / MAX_CHUNKS;
	c = (c + 4095) & ~(size_t)4095;
	return c < MIN_CHUNK ? MIN_CHUNK : c > MAX_CHUNK ? MAX_CHUNK : c;
}

static int open_retry(const char *path, int flags, mode_t mode)
{
	int fd;

	do
		fd = open(path, flags, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int fsync_retry(int fd)
{
	while (fsync(fd) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

struct ring {
	struct io_uring u;
	/* Requests whose completion was never seen (only after a wait failed
	 * other than by a signal, which no kernel is known to do): read
	 * buffers and unregistered fds are then leaked, not reused.  A stuck
	 * write can only copy its buffer into the unlinked temporary file. */
	unsigned stuck;
};

/* A ring with @fd registered at index 0.  0, or -errno (use plain I/O). */
static int ring_open(struct ring *r, int fd)
{
	int err = io_uring_queue_init(RING_DEPTH, &r->u, 0);

	if (err)
		return err;
	err = io_uring_register_files(&r->u, &fd, 1);
	if (err) {
		io_uring_queue_exit(&r->u);
		return err;
	}
	r->stuck = 0;
	return 0;
}

static struct io_uring_sqe *get_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->u);

	/* A batch fits the ring (static assert above) and is reaped whole
	 * before the next one is prepared. */
	assert(sqe);
	return sqe;
}

/* One completion.  A signal ends the wait (-EINTR), not the I/O: wait
 * again.  Nothing else is expected (the CQ ring is twice the largest batch,
 * so it cannot overflow); should a wait fail anyway, poll for a minute
 * rather than leave I/O in flight. */
static int wait_cqe(struct io_uring *u, struct io_uring_cqe **cqe)
{
	for (unsigned polls = 0;;) {
		int r = io_uring_wait_cqe(u, cqe);
		if (r == 0)
			return 0;
		if (r == -EINTR)
			continue;
		if (io_uring_peek_cqe(u, cqe) == 0)
			return 0;
		if (++polls > 60000)
			return r;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
}

/* Submits the @n prepared SQEs (user_data 0..n-1) and reaps the completion
 * of every one the kernel took, into @res.  Returns 0, or the submission or
 * wait error; after an error the ring may hold unsubmitted SQEs and must be
 * closed, not reused. */
static int ring_run(struct ring *r, unsigned n, int *res)
{
	unsigned sent = 0, got = 0, retries = 0;
	int err = 0;

	while (sent < n) {
		int s = io_uring_submit(&r->u);
		if (s > 0) {
			sent += (unsigned)s;
			continue;
		}
		/* Interrupted, or short of memory for requests: retry a bit. */
		if ((s == -EINTR || s == -EAGAIN) && ++retries < 1000) {
			if (s == -EAGAIN)
				nanosleep(&(struct timespec){0, 100000}, NULL);
			continue;
		}
		err = s < 0 ? s : -EIO;
		break;
	}
	while (got < sent) {
		struct io_uring_cqe *cqe;
		int w = wait_cqe(&r->u, &cqe);
		if (w < 0) {
			r->stuck = sent - got;
			return w;
		}
		if (cqe->user_data < n)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(&r->u, cqe);
		got++;
	}
	return err;
}

/*
 * Moves bytes [@from, @len) of @buf to (@write) or from the registered file
 * at the same offsets, in batches of at most MAX_CHUNKS transfers.  Writes
 * are linked and the last batch ends in a linked fsync, so the fsync runs
 * only after every write and a short write cancels the rest.  *@done is the
 * offset up to which everything completed in full; when it stops short of
 * @len (a short or cancelled transfer) with 0 returned, the caller finishes
 * with plain calls, which also report the real errno (ENOSPC, EFBIG, ...).
 */
static int ring_rw(struct ring *r, int write, uint8_t *buf, size_t from, size_t len, size_t *done)
{
	size_t chunk = chunk_size(len - from);

	*done = from;
	for (size_t off = from;;) {
		size_t at[MAX_CHUNKS], want[MAX_CHUNKS];
		int res[MAX_CHUNKS + 1];
		struct io_uring_sqe *sqe = NULL;
		unsigned n = 0;

		for (; off < len && n < MAX_CHUNKS; n++) {
			size_t sz = len - off < chunk ? len - off : chunk;
			sqe = get_sqe(r);
			if (write) {
				io_uring_prep_write(sqe, 0, buf + off, (unsigned)sz, off);
				sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
			} else {
				/* Independent reads: they may run in parallel. */
				io_uring_prep_read(sqe, 0, buf + off, (unsigned)sz, off);
				sqe->flags |= IOSQE_FIXED_FILE;
			}
			sqe->user_data = n;
			at[n] = off;
			want[n] = sz;
			off += sz;
		}
		int last = off == len;
		if (write && last) {
			sqe = get_sqe(r);
			io_uring_prep_fsync(sqe, 0, 0);
			sqe->flags |= IOSQE_FIXED_FILE;
			sqe->user_data = n;
		} else if (sqe) {
			sqe->flags &= (uint8_t)~IOSQE_IO_LINK; /* the next batch waits for this */
		}
		unsigned total = n + (write && last);
		if (!total)
			return 0;
		int err = ring_run(r, total, res);
		if (err)
			return err;
		for (unsigned i = 0; i < n; i++) {
			if (res[i] >= 0 && (size_t)res[i] == want[i]) {
				*done = at[i] + want[i];
				continue;
			}
			if (res[i] > 0)
				*done = at[i] + (size_t)res[i];
			return res[i] >= 0 || res[i] == -ECANCELED ? 0 : res[i];
		}
		if (write && last && res[n] < 0)
			return res[n];
		if (last)
			return 0;
	}
}

/* Writes bytes [@from, @len) of @buf at the same offsets, then fsyncs. */
static int write_plain(int fd, const uint8_t *buf, size_t from, size_t len)
{
	for (size_t off = from; off < len;) {
		ssize_t w = pwrite(fd, buf + off, len - off, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (size_t)w;
	}
	return fsync_retry(fd);
}

/* Reads bytes [@from, @len) of the file into the same offsets of @buf. */
static int read_plain(int fd, uint8_t *buf, size_t from, size_t len)
{
	for (size_t off = from; off < len;) {
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

static int fsync_dir(struct ring *ring, const char *dir)
{
	int dfd = open_retry(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	int err, res = 0;

	if (dfd < 0)
		return dfd;
	if (ring) {
		struct io_uring_sqe *sqe = get_sqe(ring);
		io_uring_prep_fsync(sqe, dfd, 0);
		sqe->user_data = 0;
		err = ring_run(ring, 1, &res);
		if (!err)
			err = res;
		if (ring->stuck)
			return err; /* the kernel may still hold dfd by number: keep it */
	} else {
		err = fsync_retry(dfd);
	}
	close(dfd);
	return err;
}

/* Refuses what is not a regular file: -EISDIR, or -ENOTSUP for a FIFO,
 * socket or device (a snapshot is a regular file; a FIFO would block). */
static int regular_only(mode_t mode)
{
	return S_ISREG(mode) ? 0 : S_ISDIR(mode) ? -EISDIR : -ENOTSUP;
}

/* The target of the symlink @link, as a path usable from here. */
static int link_target(const char *link, char **out)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(link, buf, sizeof(buf));

	if (n < 0)
		return -errno;
	if ((size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	buf[n] = 0;
	const char *slash = strrchr(link, '/');
	if (buf[0] == '/' || !slash)
		*out = strdup(buf);
	else if (asprintf(out, "%.*s/%s", (int)(slash - link), link, buf) < 0)
		*out = NULL;
	return *out ? 0 : -ENOMEM;
}

/*
 * The file a save replaces: @path with symlinks followed to their end (at
 * most LINK_HOPS, as the kernel allows), so that a link stays a link and the
 * temporary file goes beside the real target, where rename is atomic.
 * *@exists tells whether the target exists; then *@st describes it.
 */
static int resolve_target(const char *path, char **out, struct stat *st, int *exists)
{
	char *cur = strdup(path);
	int err = -ENOMEM;

	for (unsigned hops = 0; cur; hops++) {
		if (lstat(cur, st) < 0) {
			err = -errno;
			if (err != -ENOENT)
				break;
			*exists = 0;
			*out = cur;
			return 0;
		}
		if (!S_ISLNK(st->st_mode)) {
			err = regular_only(st->st_mode);
			if (err)
				break;
			*exists = 1;
			*out = cur;
			return 0;
		}
		char *next;
		err = hops < LINK_HOPS ? link_target(cur, &next) : -ELOOP;
		if (err)
			break;
		free(cur);
		cur = next;
		err = -ENOMEM;
	}
	free(cur);
	return err;
}

/* Creates "@dir/.@base.tmp.XXXXXX" (O_EXCL, so never through a planted
 * link) with @mode, to which the kernel applies the umask as for any new
 * file. */
static int create_tmp(const char *dir, const char *base, mode_t mode, char **tmp)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static uint64_t seq;
	struct timespec ts;

	for (int tries = 0; tries < 100; tries++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x =
		    (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^
		    (__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull);
		char name[7];
		x ^= x >> 31;
		x *= 0xbf58476d1ce4e5b9ull;
		x ^= x >> 29;
		for (int i = 0; i < 6; i++, x /= 62)
			name[i] = abc[x % 62];
		name[6] = 0;
		if (asprintf(tmp, "%s/.%s.tmp.%s", dir, base, name) < 0) {
			*tmp = NULL;
			return -ENOMEM;
		}
		int fd = open_retry(*tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (fd >= 0 || fd != -EEXIST)
			return fd;
		free(*tmp);
	}
	*tmp = NULL;
	return -EEXIST;
}

/* Gives the new file the owner (where allowed: as root, or a group we are
 * in) and the exact mode of the file it replaces. */
static int keep_attrs(int fd, const struct stat *old)
{
	struct stat cur;

	if (fstat(fd, &cur) < 0)
		return -errno;
	if ((cur.st_uid != old->st_uid || cur.st_gid != old->st_gid) &&
	    fchown(fd, old->st_uid, old->st_gid) < 0 && cur.st_gid != old->st_gid)
		(void)!fchown(fd, (uid_t)-1, old->st_gid);
	/* After fchown, which clears set-id bits. */
	return fchmod(fd, old->st_mode & 07777) < 0 ? -errno : 0;
}

static int save_image(const char *path, const uint8_t *img, size_t len, int no_uring,
		      int *used_uring)
{
	char *target = NULL, *dir = NULL, *tmp = NULL;
	struct stat st;
	struct ring ring;
	int ring_ok = 0, fd = -1, exists = 0, err;

	*used_uring = 0;
	err = resolve_target(path, &target, &st, &exists);
	if (err)
		return err;
	const char *slash = strrchr(target, '/');
	const char *base = slash ? slash + 1 : target;
	if (!*base) {
		err = -EISDIR;
		goto out;
	}
	if (!slash)
		dir = strdup(".");
	else if (slash == target)
		dir = strdup("/");
	else
		dir = strndup(target, (size_t)(slash - target));
	if (!dir) {
		err = -ENOMEM;
		goto out;
	}
	/* A new file gets 0644 less the umask, as cp gives; a replaced one
	 * keeps its mode and owner.  The temporary file is never readable by
	 * more than the final one. */
	fd = create_tmp(dir, base, exists ? st.st_mode & 0666 : 0644, &tmp);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	CRASH_POINT("save: temporary file created");
	err = exists ? keep_attrs(fd, &st) : 0;
	if (!err && uring_wanted(no_uring) && ring_open(&ring, fd) == 0)
		ring_ok = 1;
	*used_uring = ring_ok;
	size_t done = 0;
	if (!err && ring_ok)
		err = ring_rw(&ring, 1, (uint8_t *)img, 0, len, &done);
	if (!err && (!ring_ok || done < len))
		err = write_plain(fd, img, done, len);
	/* Every request has completed, and the ring names the file by its
	 * registered index: the fd number is free to go. */
	if (close(fd) < 0 && !err && errno != EINTR)
		err = -errno;
	fd = -1;
	CRASH_POINT("save: written and synced");
	if (!err && rename(tmp, target) < 0)
		err = -errno;
	CRASH_POINT("save: renamed");
	if (err) {
		unlink(tmp);
		goto out;
	}
	err = fsync_dir(ring_ok ? &ring : NULL, dir);
out:
	if (ring_ok)
		io_uring_queue_exit(&ring.u);
	free(tmp);
	free(dir);
	free(target);
	return err;
}

/* Opens @path for reading, refusing anything but a regular file.  It is
 * looked at before the open (opening a device may act) and the open does not
 * block (a FIFO's would, until a writer came); fstat has the last word. */
static int open_regular(const char *path, struct stat *st)
{
	int fd, err;

	if (stat(path, st) < 0)
		return -errno;
	err = regular_only(st->st_mode);
	if (err)
		return err;
	fd = open_retry(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0)
		err = -errno;
	else
		err = regular_only(st->st_mode);
	if (!err && fcntl(fd, F_SETFL, 0) < 0) /* reads block as usual again */
		err = -errno;
	if (!err && (uint64_t)st->st_size > MAX_FILE)
		err = -EFBIG;
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Reads bytes [@from, @len) of @fd into @buf.  A positive return: the
 * kernel may still write into @buf, which must be leaked. */
static int read_body(int fd, uint8_t *buf, size_t from, size_t len, int no_uring, int *used_uring)
{
	struct ring ring;
	size_t done = from;
	int err = 0, stuck = 0;

	*used_uring = from < len && uring_wanted(no_uring) && ring_open(&ring, fd) == 0;
	if (*used_uring) {
		err = ring_rw(&ring, 0, buf, from, len, &done);
		stuck = ring.stuck != 0;
		io_uring_queue_exit(&ring.u);
#ifdef SHSET_HAVE_MEMCHECK
		/* Memcheck cannot see the kernel fill the buffer. */
		VALGRIND_MAKE_MEM_DEFINED(buf + from, done - from);
#endif
	}
	if (!err && done < len)
		err = read_plain(fd, buf, done, len);
	return stuck ? 1 : err;
}

/* A new buffer of @want bytes holding the @have bytes at @head and the rest
 * of the file read after them.  A stuck read (read_body > 0) leaves its
 * buffer to the kernel: never freed, -EIO. */
static int read_alloc(int fd, const uint8_t *head, size_t have, size_t want, int no_uring,
		      int *used_uring, uint8_t **out)
{
	uint8_t *buf = malloc(want ? want : 1);

	if (!buf)
		return -ENOMEM;
	/* Faulted in by one call, not page by page as the read fills it
	 * (a best effort: kernels before 5.14 refuse it). */
	if (want >= (1u << 20)) {
		uintptr_t lo = ((uintptr_t)buf + 4095) & ~(uintptr_t)4095,
			  hi = ((uintptr_t)buf + want) & ~(uintptr_t)4095;
		if (hi > lo)
			madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
	}
	if (have)
		memcpy(buf, head, have);
	int err = read_body(fd, buf, have, want, no_uring, used_uring);
	if (err) {
		if (err < 0)
			free(buf);
		return err < 0 ? err : -EIO;
	}
	*out = buf;
	return 0;
}

int snap_read_file(const char *path, uint8_t **img, size_t *len, int no_uring, int *used_uring)
{
	struct stat st;
	int fd, err;

	*img = NULL;
	*len = 0;
	*used_uring = 0;
	fd = open_regular(path, &st);
	if (fd < 0)
		return fd;
	err = read_alloc(fd, NULL, 0, (size_t)st.st_size, no_uring, used_uring, img);
	close(fd);
	if (!err)
		*len = (size_t)st.st_size;
	return err;
}

int snap_read_checked(const char *path, uint8_t **img, size_t *len, uint64_t *file_size,
		      enum snap_defect *defect, int no_uring, int header_only, int *used_uring)
{
	uint8_t hdr[SNAP_HDR_SIZE];
	struct snap_hdr h;
	struct stat st;
	int fd, err;

	*img = NULL;
	*len = 0;
	*file_size = 0;
	*defect = SNAP_SHORT;
	*used_uring = 0;
	fd = open_regular(path, &st);
	if (fd < 0)
		return fd;
	size_t size = (size_t)st.st_size;
	size_t hl = size < SNAP_HDR_SIZE ? size : SNAP_HDR_SIZE;
	/* The header first: it alone says whether the rest is worth reading,
	 * and how much to allocate. */
	err = read_plain(fd, hdr, 0, hl);
	if (err)
		goto out;
	*defect = snap_check_header(hdr, hl, size, &h);
	size_t want = *defect == SNAP_OK ? size : hl;
	uint8_t *buf;
	err = read_alloc(fd, hdr, hl, want, no_uring, used_uring, &buf);
	if (err)
		goto out;
	if (*defect == SNAP_OK && !header_only)
		*defect = snap_check(buf, want, &h);
	*img = buf;
	*len = want;
	*file_size = size;
out:
	close(fd);
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
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.version = SNAP_VERSION;
	h.flags = (flags & SHSET_SAVE_SORTED) ? SNAP_FLAG_SORTED : 0;
	h.count = s.count;
	h.body_len = s.len - SNAP_HDR_SIZE;
	/* SOURCE_DATE_EPOCH makes files reproducible, byte for byte. */
	const char *epoch = getenv("SOURCE_DATE_EPOCH");
	if (epoch && *epoch) {
		h.created_ns = strtoull(epoch, NULL, 10) * PRIM_NS_PER_S;
	} else {
		h.created_ns = prim_real_ns();
	}
	h.key_bytes = s.key_bytes;
	h.key_type = (uint32_t)shset_key_type(set);
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

struct body_check {
	const uint8_t *img;
	const struct snap_hdr *h;
};

static int body_crc_check(void *arg)
{
	const struct body_check *bc = arg;
	return snap_body_crc_ok(bc->img, bc->h) ? 0 : snap_defect_errno(SNAP_BAD_BODY_CRC);
}

int shset_load(shset **out, const char *path, const struct shset_opts *opts)
{
	uint8_t *img;
	size_t len;
	uint64_t file_size;
	struct snap_hdr h;
	enum snap_defect d;
	int err, used;

	if (!out)
		return -EINVAL;
	*out = NULL;
	struct shset_opts o;
	if (!path || set_opts_read(opts, &o))
		return -EINVAL;
	/* The body is checked by the load itself: its records as it walks
	 * them first, its checksum beside that walk, on another CPU. */
	err = snap_read_checked(path, &img, &len, &file_size, &d, 0, 1, &used);
	if (err)
		return err;
	if (d != SNAP_OK) {
		free(img);
		return snap_defect_errno(d);
	}
	memcpy(&h, img, sizeof(h)); /* checked in full */
	shset *s = NULL;
	/* The table is built once, by one batch, at its final size, from the
	 * records where they lie in the image. */
	uint64_t capacity = o.capacity;
	o.capacity = 0;
	o.key_type = h.key_type; /* the file decides, whatever opts say */
	err = shset_create(&s, &o);
	if (err)
		goto out;
	struct body_check bc = {img, &h};
	long long added = set_load_records(s, img + SNAP_HDR_SIZE, len - SNAP_HDR_SIZE, h.count,
					   h.key_bytes, capacity, body_crc_check, &bc);
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
	free(img);
	return err;
}

void snapshot_counters(uint64_t *uring, uint64_t *fallback)
{
	*uring = __atomic_load_n(&saves_uring, __ATOMIC_RELAXED);
	*fallback = __atomic_load_n(&saves_fallback, __ATOMIC_RELAXED);
}
