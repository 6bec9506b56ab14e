/* SPDX-License-Identifier: MIT */
/* region.h - the memfd, its header and its mapping (private). */
#ifndef SHSET_REGION_H
#define SHSET_REGION_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include "shset/lock.h"

#define REGION_MAGIC	    0x31544553484853ull /* "SHHSET1" little endian */
#define REGION_VERSION	    6u
#define REGION_PAGE	    4096u
#define REGION_LOCK_OFF	    256u
#define REGION_STATE_OFF    512u  /* owner-defined state area: table.c */
#define REGION_STATE_BYTES  3584u /* up to the end of the header page */
#define REGION_SLOTS_OFF    REGION_PAGE
#define REGION_MAX_BYTES    (1ull << 44)
#define REGION_DEFAULT_MAX  (8ull << 30)
#define REGION_DEFAULT_PROC 256u
#define REGION_KEYS_MAX	    2u /* highest SHSET_KEYS_* value */
#define REGION_SHARDS_MAX   16u
/* Default shard count: one shard per this much of max_size, up to 16 (a
 * power of two); smaller sets are one shard, as before shards existed. */
#define REGION_SHARD_UNIT (512ull << 20)

/*
 * The first page of every set.  The fields above `size` are written once by
 * the creator before the fd is shared and never again; attachers copy them
 * into struct region after validating, and use only those copies, so a peer
 * scribbling on them later cannot steer a reader out of bounds.
 */
struct region_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nslots;   /* lease slot table entries */
	uint8_t uuid[16];  /* identity; also the lock order between sets */
	uint64_t seed[2];  /* per-set hash key */
	uint64_t max_size; /* growth limit = each process's reservation */
	uint64_t log_off;  /* undo log area (owned by table.c) */
	uint64_t log_bytes;
	uint64_t heap_off; /* first byte of the heap (owned by table.c) */
	uint64_t created_ns;
	uint64_t size;	/* file size; grows under the lock (atomic) */
	uint64_t grows; /* number of growths; under the lock */
	/* Written once by the creator like the fields above size; placed last
	 * so that sets made before it existed read 0 (bytes). */
	uint32_t key_type;    /* SHSET_KEYS_*: how bindings present keys */
	uint32_t nshards;     /* 1..REGION_SHARDS_MAX, a power of two */
	uint64_t shard_bytes; /* shard i owns [i * shard_bytes, (i+1) * ...) */
};

_Static_assert(sizeof(struct region_hdr) <= REGION_LOCK_OFF, "header overlaps lock");

struct region_opts {
	uint64_t max_size;  /* 0: REGION_DEFAULT_MAX */
	uint32_t nslots;    /* 0: REGION_DEFAULT_PROC */
	uint64_t log_bytes; /* size of the undo log area */
	const char *name;
	const uint64_t *seed; /* hash key to reuse (copies); NULL: random */
	uint32_t key_type;    /* SHSET_KEYS_* */
	uint32_t nshards;     /* 0: by max_size (REGION_SHARD_UNIT) */
};

struct region {
	int fd;
	int readonly;
	uint8_t *base;
	struct region_hdr *hdr;
	shset_lock *lock;
	void *state; /* REGION_STATE_BYTES at REGION_STATE_OFF */
	struct shset_lease *lease;
	/* Trusted copies of the immutable header fields. */
	uint64_t map_size;
	uint64_t log_off, log_bytes, heap_off;
	uint32_t nslots;
	uint8_t uuid[16];
	uint64_t seed[2];
	uint32_t key_type;
	/* Bytes known to exist in the file (it can only grow): reads below
	 * this never fault. */
	uint64_t avail;
	/*
	 * Shards.  A set's keys are split by hash over nshards shards, each
	 * with its own lock, state, undo log and heap in its own stretch of
	 * the file, so writers of different shards never meet.  Each shard
	 * is described by a struct region of its own (shard[i]; shard[0] is
	 * the region itself) whose lock, state, log and heap fields are the
	 * shard's: the table and transaction code works on one shard as it
	 * did on a whole set.  Clones share base, fd and lease with shard[0].
	 */
	uint64_t heap_end; /* this shard's heap may not pass it */
	/* The table this process's last commit left a resize filling (0:
	 * none), checked by that transaction, unlike the state's words now,
	 * and how far this process has faulted it in (table_populate_ahead;
	 * __atomic, a hint); pop_gen counts the changes of pop_want, so that
	 * the filler tells a new table from an old one at the same place. */
	uint64_t pop_want, pop_done, pop_gen;
	uint32_t nshards, shard_idx;
	uint64_t shard_bytes;
	struct region *owner;			 /* shard[0] */
	struct region *shard[REGION_SHARDS_MAX]; /* in shard[0] only */
};

/* The shard holding keys of hash @h: its low bits.  A table's home slot
 * scales the whole hash to its capacity (table.c, home()), so they move a
 * key's slot by one at most, and the keys of a shard spread over all of
 * its table. */
static inline struct region *region_shard(const struct region *r, uint64_t h)
{
	return r->shard[h & (r->nshards - 1)];
}

int region_create(struct region **out, const struct region_opts *o);
/* Validates @fd (not consumed; region_reopen'ed) and maps it.  @readonly attaches
 * without a lease, for inspection. */
int region_attach(struct region **out, int fd, int readonly);
void region_close(struct region *r);
/* Calls @fn on each extent of [from, to) that holds data, skipping holes
 * (tables given back after a resize): touching a hole allocates memory. */
typedef void (*region_extent_fn)(struct region *r, uint64_t off, uint64_t len, void *arg);
void region_extents(struct region *r, uint64_t from, uint64_t to, region_extent_fn fn, void *arg);

/* Maps in the pages that hold data (attach does it). */
void region_populate(struct region *r);
/* Reads one byte of every data page in [from, to): faults them in. */
void region_prefetch(struct region *r, uint64_t from, uint64_t to);

/* The checks every shared file passes first: an open fd (-EBADF), a
 * memfd (-EMEDIUMTYPE), its seals and then its stat filled in (the size
 * read after the seals, so that sealed sizes hold). */
struct stat;
int region_memfd_check(int fd, struct stat *st, int *seals);

/* A new open file description of @fd's file, close-on-exec, at fd 3 or
 * above (@readonly: for reading only), checked to be the same file; or
 * -errno.  Attach keeps this, not a dup of @fd: a dup shares the sender's
 * description, and with it any OFD lock the sender took on it, which would
 * keep a dead sender's lease slot looking alive while this process holds
 * the copy.  Without /proc mounted (ENOENT) it falls back to a dup. */
int region_reopen(int fd, int readonly);

/* Reads the header of @fd without mapping it; same errors as attach. */
int region_probe_fd(int fd, struct region_hdr *hdr, uint64_t *file_size);

/* Slow path of region_check: refreshes avail from the file size. */
int region_refresh(struct region *r, uint64_t end);

/* 0 if [off, off+len) lies inside the file, else -EUCLEAN.  Every offset
 * and length read from shared memory goes through here before use. */
static inline int region_check(struct region *r, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;

	if (__builtin_expect(end >= off && end <= __atomic_load_n(&r->avail, __ATOMIC_RELAXED), 1))
		return 0;
	if (end < off)
		return -EUCLEAN;
	return region_refresh(r, end);
}

static inline void *region_ptr(const struct region *r, uint64_t off)
{
	return r->base + off;
}

/* Gives the pages of [@off, @off+@len) back to the kernel (the range then
 * reads as zeros; partial pages are zeroed).  Retried when a signal
 * interrupts it: 0 or -errno. */
int region_punch(struct region *r, uint64_t off, uint64_t len);

/* Allocates the pages of [@off, @off+@len) that are holes, and maps them
 * all into this process: for memory about to be written whole.  One
 * fallocate for them all costs less than a fault for each (measured on a
 * 2-core virtual machine: 25 against 40 ms for 48 MB); populating then
 * maps them.  Whole pages: a page shared with a neighbour is allocated
 * too (memory, never content).  Best effort (0 or the first -errno): what
 * is left is faulted in when written. */
int region_fill(struct region *r, uint64_t off, uint64_t len);

/* Makes the file at least @end bytes long (with headroom).  Lock held.
 * -ENOSPC past max_size. */
int region_grow(struct region *r, uint64_t end);

/* Lease slot table in the region. */
static inline struct shset_lease_slot *region_slots(const struct region *r)
{
	return (struct shset_lease_slot *)(r->base + REGION_SLOTS_OFF);
}

#endif
