/* SPDX-License-Identifier: MIT */
/*
 * inspect.c - read-only inspection of live sets and snapshot files: the
 * public face (shset/inspect.h) of what region, table, lease and snapshot
 * offer for reading without the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdpass.h"
#include "prim.h"
#include "region.h"
#include "shset.h"
#include "shset/inspect.h"
#include "snapshot.h"
#include "table.h"

struct shset_view {
	struct region *r;
	/* The last copy taken, one per shard; taken 0: none. */
	struct table_snap sn[REGION_SHARDS_MAX];
	int taken;
};

/* shset_view_next's position: the shard in the top byte, the place in
 * its copy below. */
#define POS_SHARD_SHIFT 56
#define POS_IN_MASK	((1ull << POS_SHARD_SHIFT) - 1)

static void snaps_free(struct shset_view *v)
{
	for (unsigned i = 0; i < REGION_SHARDS_MAX; i++)
		table_snap_free(&v->sn[i]);
	v->taken = 0;
}

int shset_view_open(shset_view **out, int fd)
{
	struct shset_view *v;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	err = region_attach(&v->r, fd, 1);
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	return 0;
}

void shset_view_close(shset_view *v)
{
	if (!v)
		return;
	snaps_free(v);
	region_close(v->r);
	free(v);
}

int shset_view_info(shset_view *v, struct shset_view_info *info)
{
	struct table_stats ts;
	struct stat st;

	if (!v || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	struct region *r = v->r;
	table_stats_shards(r, &ts);
	info->version = REGION_VERSION; /* attach refuses any other */
	info->key_type = r->key_type;
	memcpy(info->uuid, r->uuid, sizeof(info->uuid));
	info->created_ns = __atomic_load_n(&r->hdr->created_ns, __ATOMIC_RELAXED);
	info->file_bytes = ts.file_bytes;
	info->max_bytes = r->map_size;
	if (fstat(r->fd, &st) == 0)
		info->mem_bytes = (uint64_t)st.st_blocks * 512;
	info->count = ts.count;
	info->capacity = ts.capacity;
	info->tombstones = ts.tombstones;
	info->key_bytes = ts.key_bytes;
	info->arena_bytes = ts.arena_bytes;
	info->heap_bytes = ts.heap_bytes;
	info->repairs = ts.repairs;
	info->resizes = ts.resizes;
	info->aborts = ts.aborts;
	info->txns = ts.txns;
	info->max_procs = r->nslots;
	return table_lock_state_shards(r, &info->lock);
}

int shset_view_proc(shset_view *v, uint32_t slot, struct shset_view_proc *p)
{
	if (!v || !p || slot >= v->r->nslots)
		return -EINVAL;
	const struct shset_lease_slot *sl = region_slots(v->r) + slot;
	p->pid = __atomic_load_n(&sl->pid, __ATOMIC_RELAXED);
	p->gen = __atomic_load_n(&sl->gen, __ATOMIC_RELAXED);
	p->since_ns = __atomic_load_n(&sl->since_ns, __ATOMIC_RELAXED);
	if (!p->pid && !p->gen)
		return 0;
	p->alive = shset_lease_probe(v->r->fd, slot) == 1;
	return 1;
}

int shset_view_take(shset_view *v, uint64_t timeout_ns)
{
	if (!v)
		return -EINVAL;
	struct region *r = v->r;
	uint64_t start = prim_mono_ns();
	int err;
	for (;;) {
		snaps_free(v);
		/* Each shard copied between two equal even seqcounts, then
		 * all of them checked unchanged: the copies are of one
		 * moment (a transaction over several shards keeps them all
		 * odd until it is whole). */
		uint64_t spent = prim_mono_ns() - start;
		err = spent > timeout_ns ? -EAGAIN : 0;
		for (unsigned i = 0; i < r->nshards && !err; i++)
			err = table_snap_optimistic(r->shard[i], &v->sn[i], timeout_ns - spent);
		int same = !err;
		for (unsigned i = 0; i < r->nshards && same; i++)
			same = __atomic_load_n(&tx_state(r->shard[i])->seq, __ATOMIC_ACQUIRE) ==
			       v->sn[i].st.seq;
		if (same || err)
			break;
	}
	for (unsigned i = 0; i < r->nshards && !err; i++)
		err = table_snap_verify(&v->sn[i]);
	if (err) {
		/* A copy that could not be made is no copy to walk. */
		snaps_free(v);
		return err;
	}
	v->taken = 1;
	return 0;
}

int shset_view_next(shset_view *v, uint64_t *pos, const void **key, size_t *len)
{
	const uint8_t *k;

	if (!v || !pos || !key || !len || !v->taken)
		return -EINVAL;
	for (uint64_t i = *pos >> POS_SHARD_SHIFT; i < v->r->nshards; i++) {
		uint64_t in = i == *pos >> POS_SHARD_SHIFT ? *pos & POS_IN_MASK : 0;
		int res = table_snap_next(&v->sn[i], &in, &k, len);
		if (res < 0)
			return res;
		if (res == 1) {
			if (in > POS_IN_MASK)
				return -EUCLEAN;
			*pos = i << POS_SHARD_SHIFT | in;
			*key = k;
			return 1;
		}
	}
	*pos = (uint64_t)v->r->nshards << POS_SHARD_SHIFT;
	return 0;
}

int shset_recv_fd(int sock, int *fd)
{
	if (!fd)
		return -EINVAL;
	return fdpass_recv_fd(sock, fd);
}

/* --- snapshot files ------------------------------------------------------------ */

struct shset_snapfile {
	uint8_t *img;
	size_t len;    /* bytes read: the whole file, or its header */
	uint64_t size; /* the file's size */
	enum snap_defect defect;
};

int shset_snapfile_open(shset_snapfile **out, const char *path)
{
	struct shset_snapfile *f;
	int used;

	if (!out || !path)
		return -EINVAL;
	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	int err = snap_read_checked(path, &f->img, &f->len, &f->size, &f->defect, 0, 0, &used);
	if (err) {
		free(f);
		return err;
	}
	*out = f;
	return 0;
}

void shset_snapfile_close(shset_snapfile *f)
{
	if (!f)
		return;
	free(f->img);
	free(f);
}

static int body_read(const struct shset_snapfile *f)
{
	return f->len >= SNAP_HDR_SIZE && f->len == f->size;
}

int shset_snapfile_info(shset_snapfile *f, struct shset_snapfile_info *info)
{
	struct snap_hdr h;

	if (!f || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->file_bytes = f->size;
	info->body_crc_ok = -1;
	info->sound = f->defect == SNAP_OK;
	info->error = f->defect == SNAP_OK ? 0 : snap_defect_errno(f->defect);
	info->defect = snap_defect_str(f->defect);
	if (f->len < SNAP_HDR_SIZE)
		return 0;
	memcpy(&h, f->img, sizeof(h));
	info->have_header = 1;
	info->magic_ok = memcmp(h.magic, SNAP_MAGIC, sizeof(h.magic)) == 0;
	info->version = h.version;
	info->flags = h.flags;
	info->key_type = h.key_type;
	info->count = h.count;
	info->body_len = h.body_len;
	info->created_ns = h.created_ns;
	info->key_bytes = h.key_bytes;
	info->header_crc_ok = snap_crc32c(0, f->img, SNAP_HDR_SIZE - 4) == h.hdr_crc;
	if (body_read(f))
		info->body_crc_ok =
		    snap_crc32c(0, f->img + SNAP_HDR_SIZE, f->len - SNAP_HDR_SIZE) == h.body_crc;
	return 0;
}

int shset_snapfile_next(shset_snapfile *f, uint64_t *pos, const void **key, size_t *len)
{
	const uint8_t *k;

	if (!f || !pos || !key || !len)
		return -EINVAL;
	if (!body_read(f))
		return 0;
	size_t p = *pos ? (size_t)*pos : SNAP_HDR_SIZE;
	if (p < SNAP_HDR_SIZE || p > f->len)
		return -EINVAL;
	int res = snap_next(f->img, f->len, &p, &k, len);
	if (res != 1)
		return 0;
	*key = k;
	*pos = p;
	return 1;
}
