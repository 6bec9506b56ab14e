/* SPDX-License-Identifier: MIT */
/*
 * shset/values.h - atomic integers, doubles, byte strings and integer
 * arrays in a memfd, shared by processes like a set.
 *
 * Each value lives in its own memfd (an array holds many 64-bit slots in
 * one), created, attached, sent and received like a set; every process that
 * holds the fd maps the same pages.  One handle type, shset_value, stands for
 * every kind; each operation checks the handle's kind (recorded in the file
 * and validated when the handle was made) and returns -EINVAL for the wrong
 * kind.
 *
 * Integers and doubles: every operation is one atomic instruction on the
 * shared word (sequentially consistent), with no lock and no system call.
 * Integer arithmetic wraps modulo 2^64, signed values included (two's
 * complement, as C's unsigned arithmetic).  Doubles are stored as their bit
 * pattern: compare_exchange compares bit patterns (so -0.0 differs from 0.0
 * and a NaN equals the same NaN), and fetch_add/fetch_sub are a
 * compare-and-swap loop.
 *
 * Byte strings (and strings, which are byte strings recorded as UTF-8 text
 * for bindings and tools; the library does not check the encoding) hold 0
 * to `capacity` bytes.  Readers take no lock and write no shared memory
 * (unless writers publish during 64 copies in a row: then the reader reads
 * between two writers, under their lock); they never see a torn value,
 * however writers of different lengths interleave.  Writers serialise on a
 * robust lock and publish a new value with one atomic store, so a writer
 * killed at any instruction leaves the old value or the new one.  A
 * checksum per value turns a peer's scribble into -EUCLEAN instead of a
 * value nobody stored.
 *
 * Conventions as in shset.h: >= 0 on success, -errno on failure, never an
 * abort on bad input.  Output pointers named @old may be NULL.  Errors
 * shared by every function:
 *   -EINVAL     NULL handle, a handle of another kind, or a bad argument
 *   -EUCLEAN    the shared value is inconsistent (a peer scribbled on it)
 */
#ifndef SHSET_VALUES_H
#define SHSET_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "lock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One process's handle on a value or array; usable by many threads. */
typedef struct shset_value shset_value;

/* Kinds, recorded in the file. */
#define SHSET_VALUE_ANY	      0u /* attach/recv: accept every kind */
#define SHSET_VALUE_INT	      1u /* int64_t */
#define SHSET_VALUE_UINT      2u /* uint64_t */
#define SHSET_VALUE_FLOAT     3u /* double */
#define SHSET_VALUE_BYTES     4u /* byte string with a capacity */
#define SHSET_VALUE_STRING    5u /* the same, holding UTF-8 text */
#define SHSET_VALUE_INTARRAY  6u /* int64_t[length] */
#define SHSET_VALUE_UINTARRAY 7u /* uint64_t[length] */

/* The largest byte-string capacity and array length. */
#define SHSET_BYTES_MAX (1ull << 30)
#define SHSET_ARRAY_MAX (1ull << 32)

/* Process slots of a byte string's writer lock.  A process claims one with
 * its first write (or locked read) through a handle and keeps it until the
 * handle is closed or the process dies; -EUSERS when all are held. */
#define SHSET_VALUE_WRITERS 256u

/* --- creating, attaching, sharing ------------------------------------------
 * Every create returns a new memfd (MFD_CLOEXEC, sealed against shrinking
 * and growing) holding the initial value.  Errors: -EINVAL, -EMSGSIZE (the
 * initial byte string is longer than its capacity), -ENOMEM, memfd/mmap
 * errors. */
int shset_int_create(shset_value **out, int64_t value);
int shset_uint_create(shset_value **out, uint64_t value);
int shset_float_create(shset_value **out, double value);
/* capacity <= SHSET_BYTES_MAX; @init (NULL when @len is 0) is copied. */
int shset_bytes_create(shset_value **out, size_t capacity, const void *init, size_t len);
int shset_string_create(shset_value **out, size_t capacity, const void *init, size_t len);
/* length <= SHSET_ARRAY_MAX slots, all 0. */
int shset_intarray_create(shset_value **out, size_t length);
int shset_uintarray_create(shset_value **out, size_t length);

/*
 * Attaches to the value in @fd (reopened, not dup'ed: the caller keeps its fd).
 * @kind is the SHSET_VALUE_* wanted, or SHSET_VALUE_ANY.  The fd is
 * validated before anything is mapped, with shset_attach_fd's errors:
 *   -EBADF            not an open fd
 *   -EMEDIUMTYPE      not a memfd, or one of huge pages (MFD_HUGETLB)
 *   -ENODATA          too small to hold a value
 *   -EPROTO           not a shset value (bad magic; a set's fd gives this)
 *   -EPROTONOSUPPORT  a format version this library does not know
 *   -EPERM            not sealed against shrinking and growing
 *   -EUCLEAN          inconsistent header fields (kind, sizes, file size)
 *   -EPROTOTYPE       a valid value of another kind than @kind
 *   -EACCES           not open for reading and writing
 */
int shset_value_attach_fd(shset_value **out, int fd, unsigned kind);

/* The value's memfd, to send or inspect; owned by the handle. */
int shset_value_fd(const shset_value *v);
/* The kind (SHSET_VALUE_*), or -EINVAL. */
int shset_value_kind(const shset_value *v);
/* Array length, byte-string capacity, or 1 for a scalar. */
size_t shset_value_length(const shset_value *v);
/* Detaches.  The value lives on while any process holds its fd. */
void shset_value_close(shset_value *v);
/* As shset_recover for a set: takes a byte string's writer lock and
 * releases it, so that a lock word a peer forged to name this handle's
 * process slot is taken over and freed (other writers wait for it until
 * then).  A process that holds a writer slot (it wrote through this
 * handle) and may stay idle calls it now and then.  0 at once for
 * integers, doubles and arrays, which take no lock; the lock's errors
 * otherwise. */
int shset_value_recover(shset_value *v);

/*
 * Over a Unix socket, as shset_send/shset_recv (one message, one fd, a
 * protocol tag of its own: a set's message is refused with -EBADMSG and a
 * value's by shset_recv).  shset_value_recv closes every fd it got unless
 * it attaches, and returns shset_recv's errors or shset_value_attach_fd's
 * for the fd it carried (-EPROTOTYPE if not of @kind).
 */
int shset_value_send(int sock, const shset_value *v);
int shset_value_recv(int sock, shset_value **out, unsigned kind);

/* For inspection: a racy summary of a live value.  The library fills it,
 * so its layout stays fixed for a symbol version, as shset_stats'. */
struct shset_value_info {
	unsigned kind;
	uint64_t length;     /* as shset_value_length */
	uint64_t file_bytes; /* size of the memfd */
	/* byte strings only (0 otherwise): */
	uint64_t stores;	      /* values published since creation, mod 2^32 */
	uint64_t value_len;	      /* length of the published value */
	struct shset_lock_state lock; /* the writer lock */
};
/* -EUCLEAN (with @info filled as read) if the published state is not one a
 * writer can leave. */
int shset_value_info(shset_value *v, struct shset_value_info *info);

/* --- signed and unsigned 64-bit integers -----------------------------------
 * compare_exchange: 1 if *@expected matched and @desired was stored; 0 if
 * not, with the current value in *@expected.  fetch_* return the old value
 * in *@old, *_fetch the new one. */
int shset_int_load(shset_value *v, int64_t *out);
int shset_int_store(shset_value *v, int64_t value);
int shset_int_exchange(shset_value *v, int64_t value, int64_t *old);
int shset_int_compare_exchange(shset_value *v, int64_t *expected, int64_t desired);
int shset_int_fetch_add(shset_value *v, int64_t n, int64_t *old);
int shset_int_fetch_sub(shset_value *v, int64_t n, int64_t *old);
int shset_int_fetch_and(shset_value *v, int64_t n, int64_t *old);
int shset_int_fetch_or(shset_value *v, int64_t n, int64_t *old);
int shset_int_fetch_xor(shset_value *v, int64_t n, int64_t *old);
int shset_int_add_fetch(shset_value *v, int64_t n, int64_t *out);
int shset_int_sub_fetch(shset_value *v, int64_t n, int64_t *out);

int shset_uint_load(shset_value *v, uint64_t *out);
int shset_uint_store(shset_value *v, uint64_t value);
int shset_uint_exchange(shset_value *v, uint64_t value, uint64_t *old);
int shset_uint_compare_exchange(shset_value *v, uint64_t *expected, uint64_t desired);
int shset_uint_fetch_add(shset_value *v, uint64_t n, uint64_t *old);
int shset_uint_fetch_sub(shset_value *v, uint64_t n, uint64_t *old);
int shset_uint_fetch_and(shset_value *v, uint64_t n, uint64_t *old);
int shset_uint_fetch_or(shset_value *v, uint64_t n, uint64_t *old);
int shset_uint_fetch_xor(shset_value *v, uint64_t n, uint64_t *old);
int shset_uint_add_fetch(shset_value *v, uint64_t n, uint64_t *out);
int shset_uint_sub_fetch(shset_value *v, uint64_t n, uint64_t *out);

/* --- doubles ---------------------------------------------------------------
 * fetch_add/fetch_sub: -EAGAIN if the value changed under every one of
 * about four million attempts (only a peer storing without pause does that);
 * nothing was added then. */
int shset_float_load(shset_value *v, double *out);
int shset_float_store(shset_value *v, double value);
int shset_float_exchange(shset_value *v, double value, double *old);
int shset_float_compare_exchange(shset_value *v, double *expected, double desired);
int shset_float_fetch_add(shset_value *v, double n, double *old);
int shset_float_fetch_sub(shset_value *v, double n, double *old);

/* --- byte strings (SHSET_VALUE_BYTES and SHSET_VALUE_STRING) ---------------
 * load copies the value into @buf (@cap bytes) and its length into *@len;
 * -ENOBUFS if it does not fit (*@len says how much is needed; a buffer of
 * shset_value_length() bytes always fits).  A value longer than the
 * capacity is refused with -EMSGSIZE and nothing is stored.  Writers may
 * also return -EUSERS (SHSET_VALUE_WRITERS processes already write) or the
 * lock's errors.  exchange stores @value and copies the old one out like
 * load; with -ENOBUFS nothing is stored.  compare_exchange stores @desired
 * if the value equals @expected: 1 stored, 0 not. */
int shset_bytes_load(shset_value *v, void *buf, size_t cap, size_t *len);
int shset_bytes_store(shset_value *v, const void *value, size_t len);
int shset_bytes_exchange(shset_value *v, const void *value, size_t len, void *old, size_t cap,
			 size_t *oldlen);
int shset_bytes_compare_exchange(shset_value *v, const void *expected, size_t elen,
				 const void *desired, size_t dlen);

/* --- arrays (SHSET_VALUE_INTARRAY and SHSET_VALUE_UINTARRAY) ---------------
 * The integer operations on slot @i; -ERANGE if @i >= the length. */
int shset_intarray_load(shset_value *v, size_t i, int64_t *out);
int shset_intarray_store(shset_value *v, size_t i, int64_t value);
int shset_intarray_exchange(shset_value *v, size_t i, int64_t value, int64_t *old);
int shset_intarray_compare_exchange(shset_value *v, size_t i, int64_t *expected, int64_t desired);
int shset_intarray_fetch_add(shset_value *v, size_t i, int64_t n, int64_t *old);
int shset_intarray_fetch_sub(shset_value *v, size_t i, int64_t n, int64_t *old);
int shset_intarray_fetch_and(shset_value *v, size_t i, int64_t n, int64_t *old);
int shset_intarray_fetch_or(shset_value *v, size_t i, int64_t n, int64_t *old);
int shset_intarray_fetch_xor(shset_value *v, size_t i, int64_t n, int64_t *old);
int shset_intarray_add_fetch(shset_value *v, size_t i, int64_t n, int64_t *out);
int shset_intarray_sub_fetch(shset_value *v, size_t i, int64_t n, int64_t *out);

int shset_uintarray_load(shset_value *v, size_t i, uint64_t *out);
int shset_uintarray_store(shset_value *v, size_t i, uint64_t value);
int shset_uintarray_exchange(shset_value *v, size_t i, uint64_t value, uint64_t *old);
int shset_uintarray_compare_exchange(shset_value *v, size_t i, uint64_t *expected,
				     uint64_t desired);
int shset_uintarray_fetch_add(shset_value *v, size_t i, uint64_t n, uint64_t *old);
int shset_uintarray_fetch_sub(shset_value *v, size_t i, uint64_t n, uint64_t *old);
int shset_uintarray_fetch_and(shset_value *v, size_t i, uint64_t n, uint64_t *old);
int shset_uintarray_fetch_or(shset_value *v, size_t i, uint64_t n, uint64_t *old);
int shset_uintarray_fetch_xor(shset_value *v, size_t i, uint64_t n, uint64_t *old);
int shset_uintarray_add_fetch(shset_value *v, size_t i, uint64_t n, uint64_t *out);
int shset_uintarray_sub_fetch(shset_value *v, size_t i, uint64_t n, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
