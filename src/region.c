/* SPDX-License-Identifier: MIT */
/*
 * region.c - memfd creation and attachment, sealing, growth, validation.
 *
 * Layout of the file:
 *   [0, 4096)              struct region_hdr, the lock at 256, the owner's
 *                          state area at 512
 *   [4096, log_off)        lease slots (struct shset_lease_slot[nslots])
 *   [log_off, heap_off)    undo log area
 *   [heap_off, size)       heap
 *
 * Every process maps max_size bytes once (MAP_NORESERVE) and never remaps;
 * growth is ftruncate under the lock, visible to every mapping at once.
 * F_SEAL_SHRINK means no peer can take pages away from under a mapping, so a
 * byte once seen inside the file stays readable.  F_SEAL_SEAL stops a peer
 * from adding F_SEAL_GROW or F_SEAL_WRITE later.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "prim.h"
#include "crashpoint.h"
#include "lease.h"
#include "region.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int map_region(struct region *r)
{
	int prot = r->readonly ? PROT_READ : PROT_READ | PROT_WRITE;
	void *p = mmap(NULL, r->map_size, prot, MAP_SHARED | MAP_NORESERVE, r->fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	r->base = p;
	r->hdr = p;
	r->lock = (shset_lock *)(r->base + REGION_LOCK_OFF);
	r->state = r->base + REGION_STATE_OFF;
	return 0;
}

/* Shard i > 0 starts a page of its own (lock and state as in the header
 * page), then its log, then its heap, up to the next shard. */
static uint64_t shard_start(const struct region *r, uint32_t i)
{
	return (uint64_t)i * r->shard_bytes;
}

static void free_shards(struct region *r)
{
	for (uint32_t i = 1; i < REGION_SHARDS_MAX; i++) {
		free(r->shard[i]);
		r->shard[i] = NULL;
	}
}

/* The struct region of every shard, from the trusted copies in @r. */
static int make_shards(struct region *r)
{
	r->owner = r;
	r->shard_idx = 0;
	r->heap_end = r->shard_bytes;
	r->shard[0] = r;
	for (uint32_t i = 1; i < r->nshards; i++) {
		struct region *c = malloc(sizeof(*c));
		if (!c) {
			free_shards(r);
			return -ENOMEM;
		}
		*c = *r;
		uint64_t at = shard_start(r, i);
		c->shard_idx = i;
		c->lock = (shset_lock *)(r->base + at + REGION_LOCK_OFF);
		c->state = r->base + at + REGION_STATE_OFF;
		c->log_off = at + REGION_PAGE;
		c->heap_off = c->log_off + r->log_bytes;
		c->heap_end = at + r->shard_bytes;
		r->shard[i] = c;
	}
	/* The clones copied the array while it filled: give them all of it. */
	for (uint32_t i = 1; i < r->nshards; i++)
		memcpy(r->shard[i]->shard, r->shard, sizeof(r->shard));
	return 0;
}

static void adopt(struct region *r, const struct region_hdr *h, uint64_t file_size)
{
	r->map_size = h->max_size;
	r->log_off = h->log_off;
	r->log_bytes = h->log_bytes;
	r->heap_off = h->heap_off;
	r->nslots = h->nslots;
	memcpy(r->uuid, h->uuid, sizeof(r->uuid));
	memcpy(r->seed, h->seed, sizeof(r->seed));
	r->key_type = h->key_type;
	r->nshards = h->nshards;
	r->shard_bytes = h->shard_bytes;
	r->avail = file_size < r->map_size ? file_size : r->map_size;
}

/* What the file must hold from the start: every shard's page and log. */
static uint64_t shards_floor(const struct region_hdr *h)
{
	if (h->nshards <= 1)
		return h->heap_off;
	return (uint64_t)(h->nshards - 1) * h->shard_bytes + REGION_PAGE + h->log_bytes;
}

/*
 * The process's lease for every shard, watching the shards' locks: a peer
 * can write our owner value into one we do not hold, and a thread of ours
 * that waits on another shard frees it (lock.c, unforge), else a process
 * that holds that other shard and waits on the forged one would wait for
 * us while we wait for it.
 */
static int open_lease(struct region *r)
{
	shset_lock *locks[REGION_SHARDS_MAX];
	int err = shset_lease_open(&r->lease, r->fd, region_slots(r), r->nslots);

	if (err)
		return err;
	for (uint32_t i = 0; i < r->nshards; i++) {
		r->shard[i]->lease = r->lease;
		locks[i] = r->shard[i]->lock;
	}
	err = lease_watch(r->lease, locks, r->nshards);
	if (err) {
		shset_lease_close(r->lease);
		r->lease = NULL;
		for (uint32_t i = 0; i < r->nshards; i++)
			r->shard[i]->lease = NULL;
	}
	return err;
}

int region_create(struct region **out, const struct region_opts *o)
{
	struct region_opts d = {0};
	struct region_hdr h = {0};
	struct region *r;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (o)
		d = *o;
	if (!d.max_size)
		d.max_size = REGION_DEFAULT_MAX;
	if (!d.nslots)
		d.nslots = REGION_DEFAULT_PROC;
	if (d.nslots > SHSET_LEASE_SLOTS_MAX || d.max_size > REGION_MAX_BYTES ||
	    d.key_type > REGION_KEYS_MAX)
		return -EINVAL;

	h.magic = REGION_MAGIC;
	h.version = REGION_VERSION;
	h.nslots = d.nslots;
	h.key_type = d.key_type;
	h.max_size = round_up(d.max_size, REGION_PAGE);
	h.log_off = round_up(
	    REGION_SLOTS_OFF + (uint64_t)d.nslots * sizeof(struct shset_lease_slot), REGION_PAGE);
	h.log_bytes = round_up(d.log_bytes ? d.log_bytes : REGION_PAGE, REGION_PAGE);
	h.heap_off = h.log_off + h.log_bytes;
	h.nshards = d.nshards;
	if (!h.nshards) {
		h.nshards = 1;
		while (h.nshards < REGION_SHARDS_MAX &&
		       (uint64_t)h.nshards * 2 * REGION_SHARD_UNIT <= h.max_size)
			h.nshards *= 2;
	}
	if (h.nshards > REGION_SHARDS_MAX || (h.nshards & (h.nshards - 1)))
		return -EINVAL;
	h.shard_bytes = h.max_size / h.nshards / REGION_PAGE * REGION_PAGE;
	/* Each shard's heap must hold at least a few big keys and a table. */
	if (h.nshards > 1 && h.shard_bytes < h.heap_off + (1u << 20))
		return -EINVAL;
	h.size = shards_floor(&h);
	if (h.heap_off > h.max_size)
		return -ENOSPC;
	h.created_ns = prim_real_ns();
	err = fill_random(h.uuid, sizeof(h.uuid));
	if (!err && d.seed)
		memcpy(h.seed, d.seed, sizeof(h.seed));
	else if (!err)
		err = fill_random(h.seed, sizeof(h.seed));
	if (err)
		return err;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = memfd_create(d.name ? d.name : "shset",
			     MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (r->fd < 0 && errno == EINVAL) /* kernels before 6.3 */
		r->fd = memfd_create(d.name ? d.name : "shset", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (r->fd < 0) {
		err = -errno;
		goto fail_free;
	}
	if (ftruncate(r->fd, (off_t)h.size) < 0 ||
	    fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto fail_close;
	}
	adopt(r, &h, h.size);
	err = map_region(r);
	if (err)
		goto fail_close;
	/* The memfd reads as zeros: lock, slots, log and state start empty. */
	memcpy(r->hdr, &h, sizeof(h));
	err = make_shards(r);
	if (err)
		goto fail_unmap;
	err = open_lease(r);
	if (err)
		goto fail_shards;
	*out = r;
	return 0;
fail_shards:
	free_shards(r);
fail_unmap:
	munmap(r->base, r->map_size);
fail_close:
	close(r->fd);
fail_free:
	free(r);
	return err;
}

static int is_memfd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = 0;
	return strncmp(link, "/memfd:", 7) == 0;
}

int region_memfd_check(int fd, struct stat *st, int *seals)
{
	int m;

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	m = is_memfd(fd);
	if (m < 0)
		return m;
	/* The seals first, the size after them: a seal is never removed, so
	 * once SHRINK is seen the size read next can only grow (and with GROW
	 * as well, never change).  Read the other way round, the sender could
	 * shrink the file and seal it between the two, and the size we go by
	 * would be bytes that no longer exist (SIGBUS on the first touch). */
	*seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, st) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode) || !m)
		return -EMEDIUMTYPE;
	/* A memfd made with MFD_HUGETLB has the same name but lives on
	 * hugetlbfs: a write into one of its holes when the huge page pool is
	 * empty is SIGBUS, not an error.  Only tmpfs memory will do. */
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0)
		return -errno;
	if (fs.f_type != TMPFS_MAGIC)
		return -EMEDIUMTYPE;
	return *seals < 0 ? -EMEDIUMTYPE : 0;
}

int region_reopen(int fd, int readonly)
{
	char path[48];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int n = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (n < 0 && errno == ENOENT) { /* no /proc (or no such fd: EBADF below) */
		n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		return n < 0 ? -errno : n;
	}
	if (n < 0)
		return -errno;
	if (fstat(fd, &a) < 0 || fstat(n, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(n);
		return -EBADF;
	}
	if (n < 3) {
		int m = fcntl(n, F_DUPFD_CLOEXEC, 3), e = errno;
		close(n);
		if (m < 0)
			return -e;
		n = m;
	}
	return n;
}

int region_probe_fd(int fd, struct region_hdr *hdr, uint64_t *file_size)
{
	struct stat st;
	int seals, err = region_memfd_check(fd, &st, &seals);

	if (err)
		return err;
	if (!(seals & F_SEAL_SHRINK))
		return -EPERM;
	if ((uint64_t)st.st_size < REGION_PAGE)
		return -ENODATA;
	ssize_t n = pread(fd, hdr, sizeof(*hdr), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(*hdr))
		return -ENODATA;
	if (hdr->magic != REGION_MAGIC)
		return -EPROTO;
	if (hdr->version != REGION_VERSION)
		return -EPROTONOSUPPORT;
	uint64_t slots_end =
	    REGION_SLOTS_OFF + (uint64_t)hdr->nslots * sizeof(struct shset_lease_slot);
	if (hdr->nslots == 0 || hdr->nslots > SHSET_LEASE_SLOTS_MAX ||
	    hdr->max_size > REGION_MAX_BYTES || hdr->max_size % REGION_PAGE ||
	    hdr->log_off % REGION_PAGE || hdr->log_off < slots_end || hdr->log_bytes == 0 ||
	    hdr->log_bytes % REGION_PAGE || hdr->log_bytes > hdr->max_size ||
	    hdr->heap_off != hdr->log_off + hdr->log_bytes || hdr->heap_off > hdr->max_size ||
	    (uint64_t)st.st_size < hdr->heap_off || hdr->key_type > REGION_KEYS_MAX)
		return -EUCLEAN;
	/* Shards: a power of two of page-aligned stretches inside max_size,
	 * each with room for its page, log and some heap. */
	if (hdr->nshards == 0 || hdr->nshards > REGION_SHARDS_MAX ||
	    (hdr->nshards & (hdr->nshards - 1)) || hdr->shard_bytes % REGION_PAGE ||
	    hdr->shard_bytes > hdr->max_size / hdr->nshards ||
	    (hdr->nshards == 1 ? hdr->shard_bytes != hdr->max_size
			       : hdr->shard_bytes <= hdr->heap_off) ||
	    (uint64_t)st.st_size < shards_floor(hdr))
		return -EUCLEAN;
	if (file_size)
		*file_size = (uint64_t)st.st_size;
	return 0;
}

int region_attach(struct region **out, int fd, int readonly)
{
	struct region_hdr h;
	struct region *r;
	uint64_t fsize;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = region_probe_fd(fd, &h, &fsize);
	if (err)
		return err;
	if (!readonly && (fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		return -EACCES;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->readonly = readonly;
	r->fd = region_reopen(fd, readonly);
	if (r->fd < 0) {
		err = r->fd;
		goto fail_free;
	}
	adopt(r, &h, fsize);
	err = map_region(r);
	if (err)
		goto fail_close;
	err = make_shards(r);
	if (err)
		goto fail_unmap;
	if (!readonly) {
		err = open_lease(r);
		if (err)
			goto fail_shards;
		region_populate(r);
	}
	*out = r;
	return 0;
fail_shards:
	free_shards(r);
fail_unmap:
	munmap(r->base, r->map_size);
fail_close:
	close(r->fd);
fail_free:
	free(r);
	return err;
}

void region_extents(struct region *r, uint64_t from, uint64_t to, region_extent_fn fn, void *arg)
{
	for (uint64_t off = from; off < to;) {
		off_t data = lseek(r->fd, (off_t)off, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= to)
			break;
		off_t hole = lseek(r->fd, data, SEEK_HOLE);
		uint64_t end = hole < 0 || (uint64_t)hole > to ? to : (uint64_t)hole;
		fn(r, (uint64_t)data, end - (uint64_t)data, arg);
		off = end;
	}
}

static void populate_extent(struct region *r, uint64_t off, uint64_t len, void *arg)
{
	(void)arg;
	madvise(r->base + off, len, MADV_POPULATE_WRITE);
}

static void read_extent(struct region *r, uint64_t off, uint64_t len, void *arg)
{
	(void)arg;
	for (uint64_t i = 0; i < len; i += REGION_PAGE)
		(void)__atomic_load_n(r->base + off + i, __ATOMIC_RELAXED);
}

void region_populate(struct region *r)
{
	/* Map the pages that hold data now, in one call per extent, instead of
	 * one fault per page later. */
	region_extents(r, 0, __atomic_load_n(&r->avail, __ATOMIC_RELAXED), populate_extent, NULL);
}

void region_prefetch(struct region *r, uint64_t from, uint64_t to)
{
	uint64_t avail = __atomic_load_n(&r->avail, __ATOMIC_RELAXED);

	/* Some virtual machines charge microseconds for a process's first
	 * touch of each page even when it is mapped; a reader of the whole
	 * heap pays that before it takes the lock. */
	region_extents(r, from, to < avail ? to : avail, read_extent, NULL);
}

void region_close(struct region *r)
{
	if (!r)
		return;
	free_shards(r);
	shset_lease_close(r->lease);
	munmap(r->base, r->map_size);
	close(r->fd);
	free(r);
}

int region_refresh(struct region *r, uint64_t end)
{
	struct stat st;

	if (end > r->map_size)
		return -EUCLEAN;
	if (fstat(r->fd, &st) < 0)
		return -EUCLEAN;
	uint64_t fsize = (uint64_t)st.st_size;
	uint64_t avail = fsize < r->map_size ? fsize : r->map_size;
	/* Other threads may refresh at once; avail only grows. */
	uint64_t cur = __atomic_load_n(&r->avail, __ATOMIC_RELAXED);
	while (avail > cur && !__atomic_compare_exchange_n(&r->avail, &cur, avail, 1,
							   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return end <= avail ? 0 : -EUCLEAN;
}

int region_punch(struct region *r, uint64_t off, uint64_t len)
{
	while (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			 (off_t)len) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int region_fill(struct region *r, uint64_t off, uint64_t len)
{
	uint64_t lo = off & ~(uint64_t)(REGION_PAGE - 1);
	uint64_t hi = (off + len + REGION_PAGE - 1) & ~(uint64_t)(REGION_PAGE - 1);
	int err = 0;

	if (!len)
		return 0;
	/* Best effort: a signal or an old kernel leaves the rest to be
	 * faulted in when written. */
	if (fallocate(r->fd, FALLOC_FL_KEEP_SIZE, (off_t)lo, (off_t)(hi - lo)) < 0)
		err = -errno;
	if (madvise(r->base + lo, hi - lo, MADV_POPULATE_WRITE) < 0 && !err)
		err = -errno;
	return err;
}

int region_grow(struct region *r, uint64_t end)
{
	if (r->readonly)
		return -EROFS;
	if (end > r->heap_end)
		return -ENOSPC;
	if (region_check(r, 0, end) == 0)
		return 0;
	uint64_t cur = __atomic_load_n(&r->avail, __ATOMIC_RELAXED);
	/* Half again as large, so growth costs amortised O(1) syscalls. */
	uint64_t want = cur + cur / 2;
	if (want < end)
		want = end;
	want = round_up(want, 64 * 1024);
	if (want > r->map_size)
		want = r->map_size;
	if (ftruncate(r->fd, (off_t)want) < 0) {
		/* Another shard's writer may have grown the file past want
		 * meanwhile: the shrink seal refuses to shrink it (EPERM). */
		if (errno == EPERM && region_refresh(r, end) == 0)
			return 0;
		return errno == EFBIG || errno == EPERM ? -ENOSPC : -errno;
	}
	CRASH_POINT("grow: file extended");
	__atomic_store_n(&r->avail, want, __ATOMIC_RELAXED);
	/* Writers of other shards grow it too: size only rises. */
	uint64_t cur_size = __atomic_load_n(&r->hdr->size, __ATOMIC_RELAXED);
	while (cur_size < want && !__atomic_compare_exchange_n(&r->hdr->size, &cur_size, want, 1,
							       __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
	CRASH_POINT("grow: size published");
	__atomic_fetch_add(&r->hdr->grows, 1, __ATOMIC_RELAXED);
	return 0;
}
