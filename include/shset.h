/* SPDX-License-Identifier: MIT */
/*
 * shset.h - a set of byte strings in a memfd, shared by processes.
 *
 * A set lives in one memfd.  Every process that holds the fd (passed over a
 * Unix socket, inherited, or opened through /proc/PID/fd) attaches to it and
 * works on the same pages; there is no server in the data path.  Every
 * operation is atomic across all threads of all attached processes, and a
 * process killed in the middle of one leaves a set that the next operation
 * repairs.
 *
 * Conventions: functions return >= 0 on success and -errno on failure; they
 * never abort on bad input and never leave errno as the only signal.  Keys
 * are byte strings of 0 to SHSET_KEY_MAX bytes; the empty key is an element
 * like any other.  A handle (shset *) may be used by many threads at once.
 *
 * Errors shared by every function that takes a handle:
 *   -EINVAL     NULL handle or bad argument
 *   -EUCLEAN    the shared region is inconsistent (a peer scribbled on it)
 *   -EUSERS     every process slot of the set is taken (see max_procs)
 *   -ENOLCK     the calling thread holds too many shset locks at once
 *               (SHSET_LOCK_HELD_MAX, include/shset/lock.h)
 * Functions that change the set may also return -ENOSPC (max_bytes
 * reached: the heap of the key's shard, its share of max_bytes, is full;
 * the set is unchanged) and -E2BIG (one transaction needs more
 * undo log than log_bytes gives it even on a fresh table; unchanged).
 *
 * Processes.  Each handle holds one process slot of its set (max_procs of
 * them) from shset_create/shset_attach_fd to shset_close, and maps the
 * set's whole max_bytes of address space.  Every descriptor the library
 * opens is close-on-exec: a program started with exec() does not inherit
 * the set (pass it with shset_send, or dup it without FD_CLOEXEC).  After
 * fork() the child may use the parent's handles: on its first operation it
 * takes a slot of its own, so its death is told apart from the parent's.
 *
 * ABI.  struct shset_opts, which callers fill, starts with a size field:
 * 0 (what a zero-initialised struct holds) means the layout of 0.1, the
 * first with the field (up to name); a program that uses a field added
 * since (shards) sets size = sizeof(struct shset_opts), and the library
 * reads only that many bytes.  struct shset_stats,
 * which the library fills, keeps its layout for a symbol version: when it
 * grows, shset_stats gets a new version node (SHSET_0.2, ...) and programs
 * linked against the old node keep getting the old layout.  Only shset_
 * names are exported; until 1.0 the soname is libshset.so.0.
 */
#ifndef SHSET_H
#define SHSET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shset/lock.h"
#include "shset/version.h"
#include "shset/values.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shset shset;

/* Zero-initialised fields take their defaults. */
struct shset_opts {
	uint32_t size;	    /* 0, or sizeof(struct shset_opts): see ABI above */
	uint32_t key_type;  /* SHSET_KEYS_* recorded in the set (default bytes) */
	uint64_t max_bytes; /* growth limit of the memfd (default 8 GiB);
			       each process reserves this much address space */
	uint32_t max_procs; /* process slots, at most 4095 (default 256) */
	uint32_t flags;	    /* reserved, 0 */
	uint64_t capacity;  /* keys to size the first table for (default 0) */
	uint64_t log_bytes; /* undo log area (default 1 MiB); bounds the
			       in-place part of one atomic batch */
	const char *name;   /* memfd name shown in /proc (default "shset") */
	/* Since 0.2 (set size = sizeof(struct shset_opts) to use them): */
	uint32_t shards; /* writer shards, a power of two up to 16; 0: one per
			    512 MiB of max_bytes, up to 16 */
	uint32_t pad;	 /* reserved, 0 */
};

/*
 * The key type a set records for bindings and tools, fixed at creation and
 * kept by copies and snapshots.  The library itself stores bytes either way:
 * it is how a binding presents keys (Python's shset.Set gives str, bytes or
 * int) and what shset-inspect shows.
 */
#define SHSET_KEYS_BYTES 0u /* any bytes */
#define SHSET_KEYS_STR	 1u /* UTF-8 text */
#define SHSET_KEYS_INT	 2u /* integers as canonical decimal ASCII: -?[1-9][0-9]* or 0 */

/*
 * Creates a new empty set in a new memfd.  @opts may be NULL.
 * Errors: -EINVAL (unknown flags or key type, a size smaller than the 0.1
 * struct, max_procs over 4095, shards not a power of two up to 16 or more
 * than max_bytes leaves each a page, a log and 1 MiB of heap), -ENOSPC
 * (max_bytes too small for the header, log and first table), -ENOMEM,
 * memfd_create/mmap errors.
 */
int shset_create(shset **out, const struct shset_opts *opts);

/*
 * Attaches to the set in @fd (reopened, not dup'ed: the caller keeps its fd).
 * The fd is validated before anything is mapped:
 *   -EBADF            not an open fd
 *   -EMEDIUMTYPE      not a memfd, or one of huge pages (MFD_HUGETLB)
 *   -EPERM            not sealed against shrinking (a peer could SIGBUS us)
 *   -EACCES           not open for reading and writing
 *   -ENODATA          too small to hold a set
 *   -EPROTO           not a shset region (bad magic)
 *   -EPROTONOSUPPORT  a format version this library does not know
 *   -EUCLEAN          inconsistent header fields
 */
int shset_attach_fd(shset **out, int fd);

/* The set's memfd, to send or inspect; owned by the handle. */
int shset_fd(const shset *s);

/* The process slot this handle holds in the set (as shset-inspect and
 * shset_stats' lock owner show it), or -errno. */
int shset_slot(shset *s);

/* The set's SHSET_KEYS_* (read when the handle was made), or -EINVAL. */
int shset_key_type(const shset *s);

/* Detaches: releases the handle's process slot and mapping, closes its
 * fd.  The set lives on while any process holds its fd.  Must not be
 * called while another thread uses the handle. */
void shset_close(shset *s);

/* The longest key, in bytes.  Longer keys are refused with -EINVAL. */
#define SHSET_KEY_MAX 65535u

/* 1 added, 0 already present.  -ENOSPC: the set reached max_bytes and is
 * unchanged. */
int shset_add(shset *s, const void *key, size_t len);
/* 1 removed, 0 absent. */
int shset_remove(shset *s, const void *key, size_t len);
/* 1 present, 0 absent.  Takes no lock and writes no shared memory unless
 * writers keep interfering or one died mid-operation. */
int shset_contains(shset *s, const void *key, size_t len);
/* The number of keys, or -errno. */
long long shset_size(shset *s);
/* Removes every key; the memory is reused by later additions. */
int shset_clear(shset *s);

/*
 * An atomic copy into a NEW set in a new memfd (*out, to close with
 * shset_close), with the same options and key type.  No process ever sees
 * the copy hold a state the original never had.  The lock is held only
 * while the used bytes are copied (their pages are faulted in before).
 * Errors: those of shset_create, -ENOSPC, -EUCLEAN.
 */
int shset_copy(shset *s, shset **out);

/*
 * Calls @fn for every key of one consistent state of the set (taken
 * atomically; @fn runs without the lock and may use the set).  @fn returns
 * 0 to go on; any other value stops the walk and is returned.  Returns 0
 * after a complete walk.  @key is valid only during the call.
 * Cost: the keys are first collected into one private buffer of
 * 4 + length bytes per key (the whole set's keys, whatever @fn does), with
 * the lock held for the walk of the table that collects them; the buffer
 * is bounded by the memory the set's file holds.  The order is
 * unspecified, spread over the table so that removing keys in it keeps a
 * shrinking table free of long probe chains.  Errors: -ENOMEM, -EUCLEAN.
 */
typedef int (*shset_visit_fn)(const void *key, size_t len, void *arg);
int shset_foreach(shset *s, shset_visit_fn fn, void *arg);

/*
 * Batches: applied atomically, so no process sees part of a batch, and a
 * crash applies all of it or none.  Return how many keys were added or
 * removed.  A NULL @lens means every key is a NUL-terminated string.
 * Errors: -EINVAL (a NULL key with a nonzero length, a key over
 * SHSET_KEY_MAX: nothing applied), -ENOSPC, -E2BIG, -EUCLEAN; on any
 * error the set is unchanged.  A batch that changes more slots of a shard
 * than its undo log holds (about 64,000 with the default log_bytes) is
 * applied on a new table built beside the old one, so it needs room for
 * that table below max_bytes even when it removes keys: in a full set a
 * big remove batch fails with -ENOSPC, unless it removes every key of
 * each shard it changes (that is done as a clear, which needs no room);
 * smaller batches, single removes or shset_clear still work.
 */
long long shset_add_batch(shset *s, const void *const *keys, const size_t *lens, size_t n);
long long shset_remove_batch(shset *s, const void *const *keys, const size_t *lens, size_t n);

/* Removes an arbitrary key and copies it into @buf (@cap bytes); *@len
 * gets its length.  1 popped, 0 empty, -ENOBUFS if @cap is too small (the
 * set is unchanged and *@len says what is needed). */
int shset_pop(shset *s, void *buf, size_t cap, size_t *len);

/*
 * Set algebra between two sets (which may be the same set, through one
 * handle or two: a set is its memfd, so two handles name one set exactly
 * when their files are the same inode).  Both are locked in a global order
 * (by device and inode), so concurrent calls on (a, b) and (b, a) cannot
 * deadlock; each call is one atomic step on @s.  Errors: -ENOSPC, -E2BIG,
 * -EUCLEAN (either set), -ENOLCK.
 */
long long shset_update(shset *s, shset *other);			     /* s |= other: added */
long long shset_intersection_update(shset *s, shset *other);	     /* s &= other: removed */
long long shset_difference_update(shset *s, shset *other);	     /* s -= other: removed */
long long shset_symmetric_difference_update(shset *s, shset *other); /* s ^= other: changed */
int shset_isdisjoint(shset *a, shset *b); /* 1 no common key, 0 otherwise */
int shset_issubset(shset *a, shset *b);	  /* 1 if every key of a is in b */
int shset_equal(shset *a, shset *b);	  /* 1 same keys */

/*
 * Takes the set's lock and releases it: repairs the set after a dead
 * owner, and clears a lock word that a peer forged to name this process.
 * Other processes wait on such a word until the named process next takes
 * the lock, so a process that holds a set but may sit idle (a server)
 * calls this now and then.  0 or -errno.
 */
int shset_recover(shset *s);

/* Checks every invariant of the region and the table: 0 or -EUCLEAN. */
int shset_verify(shset *s);

struct shset_stats {
	uint64_t count;		      /* keys */
	uint64_t capacity;	      /* table slots */
	uint64_t tombstones;	      /* removed slots awaiting reuse */
	double load;		      /* (count + tombstones) / capacity */
	uint64_t key_bytes;	      /* sum of key lengths */
	uint64_t heap_bytes;	      /* table + arena bytes in use or free-listed */
	uint64_t file_bytes;	      /* size of the memfd */
	uint64_t mem_bytes;	      /* memory its pages take (freed tables give theirs back) */
	double bytes_per_key;	      /* mem_bytes / count */
	uint64_t repairs;	      /* transactions of dead processes undone */
	uint64_t resizes;	      /* table rebuilds */
	uint64_t txns;		      /* committed mutating operations */
	uint32_t max_procs, attached; /* process slots, and those held now */
	uint64_t saves_io_uring;      /* snapshots this process wrote via io_uring */
	uint64_t saves_fallback;      /* ... and with plain writes */
	struct shset_lock_state lock; /* the shards' locks as one: counters
					 summed, held if any is (its owner) */
};
/* Fills @st; -EUCLEAN (with @st filled as read) when the figures are more
 * than the region could hold: a peer wrote them.  Takes no lock. */
int shset_stats(shset *s, struct shset_stats *st);

/*
 * Snapshots.  shset_save writes one point-in-time state of the set to
 * @path, crash-safely: a temporary file in the same directory, io_uring
 * writes linked to an fsync, rename, directory fsync.  After a crash @path
 * holds the old snapshot or the new one, never a mix.  The set's lock is
 * held only while the keys of one state are collected into private memory
 * (a walk of the table); writing happens without it.  Without io_uring (or with
 * SHSET_SAVE_NO_URING, or SHSET_NO_IO_URING=1 in the environment) it
 * writes with pwrite and fsync; shset_stats counts which path ran.
 * The format is documented at the top of src/snapshot.c.
 *
 * Only regular files are read or replaced: -EISDIR for a directory,
 * -ENOTSUP for a FIFO, socket or device (a FIFO never blocks).  A save
 * follows symlinks to the final target (-ELOOP past 40 links) and replaces
 * that file, keeping its mode and, where permitted, its owner; a new file
 * gets 0644 less the umask.  Signals never make a save or load fail, and a
 * save never returns while the kernel may still write for it.  A failed
 * save reports the real errno (-ENOSPC, -EFBIG, ...).
 */
#define SHSET_SAVE_SORTED   1u /* keys in order, for diffable files */
#define SHSET_SAVE_NO_URING 2u /* plain writes */
int shset_save(shset *s, const char *path);
int shset_save_ex(shset *s, const char *path, unsigned flags);

/*
 * Creates a new set from a snapshot.  Everything is checked before the set
 * is returned; on any defect nothing is created and the result is
 * -EBADMSG (corrupt: checksums, lengths, duplicate keys, unknown key
 * type), -EPROTONOSUPPORT (a newer format version), the path errors above,
 * or the error of open/read.  The header is checked against the file's
 * size before the body is read.  The set gets the file's key type;
 * @opts->key_type is ignored.
 */
int shset_load(shset **out, const char *path, const struct shset_opts *opts);

/*
 * Sharing over a Unix socket (stream or seqpacket).  shset_send sends the
 * set's memfd with a protocol tag: 0, or -EINVAL, or the error of
 * sendmsg (-EPIPE, -ECONNRESET, -EAGAIN on a non-blocking socket whose
 * buffer is full, ...).  shset_recv takes one message, closes every fd it
 * carried unless it attaches, and returns:
 *   -ECONNRESET       the peer closed without sending
 *   -EBADMSG          not a shset message
 *   -EPROTONOSUPPORT  a protocol or format version this library lacks
 *   -ENOMSG           no fd came with it
 *   -ETOOMANYREFS     more than one fd came with it
 *   -EMSGSIZE         ancillary data was truncated (MSG_CTRUNC)
 *   or any error of shset_attach_fd for the fd it carried.
 */
int shset_send(int sock, const shset *s);
/* Both block as the socket does: on a blocking socket shset_recv waits
 * until a message or EOF arrives (use poll(), SO_RCVTIMEO or a
 * non-blocking socket, which gives -EAGAIN, to bound the wait).  Signals
 * do not interrupt them (EINTR is retried). */
int shset_recv(int sock, shset **out);
/* shset_recv that waits at most @timeout_ms (< 0: forever) for a message:
 * -ETIMEDOUT if nothing came, else shset_recv's result (a message that
 * arrives short is refused at once, never waited for).  Signals neither
 * shorten nor end the wait. */
int shset_recv_timeout(int sock, shset **out, int timeout_ms);

/* Who is on the other end of a connected Unix socket (SO_PEERCRED), so a
 * server can refuse other users. */
struct shset_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};
int shset_peer_cred(int sock, struct shset_peer *peer);

#ifdef __cplusplus
}
#endif
#endif
