/* SPDX-License-Identifier: MIT */
/*
 * shset/inspect.h - read-only inspection of live sets and snapshot files.
 *
 * For tools such as shset-inspect, which use only this header and shset.h
 * (as mdb_stat uses only lmdb.h).  Nothing here takes the set's lock or a
 * process slot, or writes to the set: a live set is mapped read-only and
 * its keys are copied between two equal seqcounts; reading it allocates
 * none of its holes.  A set inspected this way may be corrupt or hostile:
 * every figure is reported as read, and the verdict says whether the copy
 * holds together.
 *
 * All functions return >= 0 on success and -errno on failure.
 */
#ifndef SHSET_INSPECT_H
#define SHSET_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "shset/lock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shset_view shset_view;

/*
 * Maps the set in @fd (reopened for reading) read-only; @fd may be open
 * read-only.  The same checks and errors as shset_attach_fd, except
 * -EACCES.
 */
int shset_view_open(shset_view **out, int fd);
void shset_view_close(shset_view *v);

struct shset_view_info {
	uint32_t version;  /* region format version */
	uint32_t key_type; /* SHSET_KEYS_* */
	uint8_t uuid[16];
	uint64_t created_ns;			   /* CLOCK_REALTIME at creation */
	uint64_t file_bytes, max_bytes, mem_bytes; /* the memfd: size, limit, memory */
	uint64_t count, capacity, tombstones, key_bytes, arena_bytes, heap_bytes;
	uint64_t repairs, resizes, aborts, txns; /* transactions */
	uint32_t max_procs;			 /* process slots */
	struct shset_lock_state lock;
};
/* The header, table and lock figures as read now, without the lock (a
 * writer may be halfway through: see shset_view_take for a consistent
 * state). */
int shset_view_info(shset_view *v, struct shset_view_info *info);

struct shset_view_proc {
	uint32_t pid;	   /* the claimer's pid in its own namespace */
	uint32_t gen;	   /* slot generation */
	uint64_t since_ns; /* CLOCK_REALTIME of the claim */
	int alive;	   /* 1 a live process holds the slot, 0 not */
};
/* Process slot @slot (0 .. max_procs - 1): 1 with *@p filled if a process
 * ever claimed it, 0 if never used, -EINVAL past the table. */
int shset_view_proc(shset_view *v, uint32_t slot, struct shset_view_proc *p);

/*
 * Copies one consistent state of the set into private memory, waiting up
 * to @timeout_ns for writers to leave a quiet moment.  Returns 0 (a sound
 * copy), -EUCLEAN (the copy does not hold together: the set is corrupt),
 * -EAGAIN (writers never left a quiet moment), -ENOMEM.  After 0 or
 * -EUCLEAN, shset_view_next walks the copy's keys.
 */
int shset_view_take(shset_view *v, uint64_t timeout_ns);
/* *@pos starts at 0: 1 with *@key (valid until the next take or close) and
 * *@len set, 0 at the end, -EUCLEAN where the copy is broken, -EINVAL with
 * no copy taken. */
int shset_view_next(shset_view *v, uint64_t *pos, const void **key, size_t *len);

/* Receives a set's fd from @sock (one shset_send message: same checks and
 * errors as shset_recv) without attaching to it: for inspection. */
int shset_recv_fd(int sock, int *fd);

/* --- snapshot files ------------------------------------------------------ */

typedef struct shset_snapfile shset_snapfile;

/*
 * Reads a snapshot file for inspection: only regular files (-EISDIR,
 * -ENOTSUP as shset_load), the header first, the body only when the header
 * is sound and agrees with the file's size.  A damaged file is not an
 * error here: its defect is in the info.
 */
int shset_snapfile_open(shset_snapfile **out, const char *path);
void shset_snapfile_close(shset_snapfile *f);

struct shset_snapfile_info {
	uint64_t file_bytes;
	int have_header; /* 1 if the file is at least a header long */
	uint32_t version, flags, key_type;
	uint64_t count, body_len, created_ns, key_bytes;
	int header_crc_ok;  /* 1 the header checksum matches */
	int body_crc_ok;    /* 1 matches, 0 not, -1 body not read */
	int sound;	    /* 1 the file would load */
	int error;	    /* what shset_load would return: 0 or -errno */
	const char *defect; /* "sound", or what is wrong ("bad magic", ...) */
	int magic_ok;	    /* 0: not a shset snapshot at all */
};
int shset_snapfile_info(shset_snapfile *f, struct shset_snapfile_info *info);
/* Walks the keys of a file whose body was read: *@pos starts at 0; 1 with
 * *@key and *@len set, 0 at the end or where the body stops making sense. */
int shset_snapfile_next(shset_snapfile *f, uint64_t *pos, const void **key, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
