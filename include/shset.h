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
 * Errors shared by every function:
 *   -EINVAL     NULL handle or bad argument
 *   -EUCLEAN    the shared region is inconsistent (a peer scribbled on it)
 *   -EUSERS     every process slot of the set is taken (see max_procs)
 */
#ifndef SHSET_H
#define SHSET_H

#include <stddef.h>
#include <stdint.h>

#include "shset/lock.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHSET_VERSION_MAJOR 0
#define SHSET_VERSION_MINOR 1

typedef struct shset shset;

/* Zero-initialised fields take their defaults. */
struct shset_opts {
	uint64_t max_bytes; /* growth limit of the memfd (default 8 GiB);
			       each process reserves this much address space */
	uint32_t max_procs; /* process slots, at most 4095 (default 256) */
	uint32_t flags;	    /* reserved, 0 */
	uint64_t capacity;  /* keys to size the first table for (default 0) */
	uint64_t log_bytes; /* undo log area (default 1 MiB); bounds the
			       in-place part of one atomic batch */
	const char *name;   /* memfd name shown in /proc (default "shset") */
};

/*
 * Creates a new empty set in a new memfd.  @opts may be NULL.
 * Errors: -EINVAL, -ENOSPC (opts too small), -ENOMEM, memfd/mmap errors.
 */
int shset_create(shset **out, const struct shset_opts *opts);

/*
 * Attaches to the set in @fd (which is dup'ed; the caller keeps its fd).
 * The fd is validated before anything is mapped:
 *   -EBADF            not an open fd
 *   -EMEDIUMTYPE      not a memfd
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

/* Detaches.  The set lives on while any process holds its fd. */
void shset_close(shset *s);

#ifdef __cplusplus
}
#endif
#endif
