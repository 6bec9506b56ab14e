/* SPDX-License-Identifier: MIT */
/*
 * values.c - atomic integers, doubles, byte strings and integer arrays, each
 * in a memfd of its own.
 *
 * Layout of the file (its size is fixed at creation and sealed):
 *   [0, 4096)            struct values_hdr; the writer lock at 256
 *   [4096, data_off)     byte strings: lease slots for the writer lock
 *   [data_off, size)     integers, doubles, arrays: `length` 64-bit words;
 *                        byte strings: struct values_pub, then two buffers
 *                        of `stride` bytes
 *
 * Integers are plain atomic words: one instruction per operation, no lock.
 *
 * Byte strings are a seqlock over two buffers.  The published word holds
 * (sequence, index of the live buffer, length).  A writer takes the lock,
 * fills the other buffer and its checksum, and publishes it with one atomic
 * store; so a writer killed anywhere before that store leaves the old value
 * published and the lock's owner-died path has nothing to repair.  A reader
 * loads the published word, copies the live buffer, and re-reads the word:
 * unchanged means no writer touched that buffer during the copy (a writer
 * only fills the buffer that is not published).  The checksum catches a
 * peer that scribbled on the published buffer, which the sequence cannot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdpass.h"
#include "hash.h"
#include "lease.h"
#include "prim.h"
#include "region.h"
#include "shset/values.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define VALUES_MAGIC	  0x3145554c41564853ull /* "SHVALUE1" little endian */
#define VALUES_VERSION	  2u
#define VALUES_PAGE	  4096u
#define VALUES_LOCK_OFF	  256u
#define VALUES_SLOTS_OFF  VALUES_PAGE
#define VALUES_KIND_MAX	  SHSET_VALUE_UINTARRAY
#define VALUES_READ_TRIES 64	    /* optimistic reads before taking the lock */
#define VALUES_CAS_TRIES  (1 << 22) /* float fetch_add attempts before -EAGAIN */

static const char values_tag[6] = {'S', 'H', 'S', 'E', 'T', 'V'};
/* Integrity, not secrecy: any holder of the fd may store a value. */
static const uint64_t values_sum_key[2] = {0x736873657476616cull, 0x7565732d73756d31ull};

/*
 * Written once by the creator before the fd is shared; attachers validate a
 * private copy and use only that, so later scribbles change nothing.
 */
struct values_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t kind;	   /* SHSET_VALUE_* */
	uint64_t length;   /* array slots, byte-string capacity, or 1 */
	uint64_t data_off; /* as values_layout() computes from kind and length */
	uint64_t size;	   /* file size, the same */
	uint32_t nslots;   /* lease slots: byte strings only */
	uint32_t pad;
	uint64_t created_ns;
};
_Static_assert(sizeof(struct values_hdr) <= VALUES_LOCK_OFF, "header overlaps lock");

/*
 * A byte string's control line.  `word` is (seq << 32 | index << 31 |
 * length), stored only by the lock holder, with release; sum[i] is the
 * checksum of buffer i's content, written by the lock holder before it
 * publishes buffer i.  Readers only load.
 */
struct values_pub {
	uint64_t word;
	uint64_t sum[2];
	uint64_t pad[5];
};
_Static_assert(sizeof(struct values_pub) == 64, "control line");
_Static_assert(SHSET_BYTES_MAX < (1ull << 31), "length field of the published word");

#define PUB_LEN(w) ((w)&0x7fffffffu)
#define PUB_IDX(w) ((unsigned)((w) >> 31) & 1u)
#define PUB_SEQ(w) ((uint32_t)((w) >> 32))

struct shset_value {
	/* Trusted private copies, read by every operation. */
	uint64_t *words; /* integer slots (NULL for byte strings) */
	unsigned kind;
	uint64_t length;
	/* Byte strings. */
	struct values_pub *pub;
	uint64_t *buf[2];
	shset_lock *lock;
	struct shset_lease_slot *slots;
	uint32_t nslots;
	shset_lease *lease; /* claimed by the first write; under lease_mu */
	pthread_mutex_t lease_mu;
	/* The mapping. */
	int fd;
	uint8_t *base;
	uint64_t size;
};

struct values_layout {
	uint32_t nslots;
	uint64_t data_off, size, stride;
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int is_bytes(unsigned kind)
{
	return kind == SHSET_VALUE_BYTES || kind == SHSET_VALUE_STRING;
}

/* Where everything lies for a value of @kind and @length; -EINVAL if there
 * is no such value.  Creation and validation both use this. */
static int values_layout(unsigned kind, uint64_t length, struct values_layout *lo)
{
	memset(lo, 0, sizeof(*lo));
	lo->data_off = VALUES_PAGE;
	switch (kind) {
	case SHSET_VALUE_INT:
	case SHSET_VALUE_UINT:
	case SHSET_VALUE_FLOAT:
		if (length != 1)
			return -EINVAL;
		lo->size = 2 * VALUES_PAGE;
		return 0;
	case SHSET_VALUE_INTARRAY:
	case SHSET_VALUE_UINTARRAY:
		if (length > SHSET_ARRAY_MAX)
			return -EINVAL;
		lo->size = VALUES_PAGE + round_up(length * 8, VALUES_PAGE);
		return 0;
	case SHSET_VALUE_BYTES:
	case SHSET_VALUE_STRING:
		if (length > SHSET_BYTES_MAX)
			return -EINVAL;
		lo->nslots = SHSET_VALUE_WRITERS;
		lo->data_off = round_up(
		    VALUES_SLOTS_OFF + lo->nslots * sizeof(struct shset_lease_slot), VALUES_PAGE);
		lo->stride = round_up(length, 64);
		lo->size = lo->data_off +
			   round_up(sizeof(struct values_pub) + 2 * lo->stride, VALUES_PAGE);
		return 0;
	}
	return -EINVAL;
}

/* --- the file -------------------------------------------------------------- */

static int map_value(shset_value *v, const struct values_hdr *h)
{
	struct values_layout lo;
	void *p;

	values_layout(h->kind, h->length, &lo); /* validated by the caller */
	p = mmap(NULL, lo.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, v->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->base = p;
	v->size = lo.size;
	v->kind = h->kind;
	v->length = h->length;
	if (is_bytes(v->kind)) {
		v->pub = (struct values_pub *)(v->base + lo.data_off);
		v->buf[0] = (uint64_t *)(v->base + lo.data_off + sizeof(struct values_pub));
		v->buf[1] = v->buf[0] + lo.stride / 8;
		v->lock = (shset_lock *)(v->base + VALUES_LOCK_OFF);
		v->slots = (struct shset_lease_slot *)(v->base + VALUES_SLOTS_OFF);
		v->nslots = lo.nslots;
	} else {
		v->words = (uint64_t *)(v->base + lo.data_off);
	}
	return 0;
}

static shset_value *value_alloc(int fd)
{
	shset_value *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->fd = fd;
	pthread_mutex_init(&v->lease_mu, NULL);
	return v;
}

static void value_free(shset_value *v)
{
	pthread_mutex_destroy(&v->lease_mu);
	free(v);
}

static int value_create(shset_value **out, unsigned kind, uint64_t length)
{
	struct values_hdr h = {0};
	struct values_layout lo;
	shset_value *v;
	int fd, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = values_layout(kind, length, &lo);
	if (err)
		return err;
	fd = memfd_create("shset-value", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (fd < 0 && errno == EINVAL) /* kernels before 6.3 */
		fd = memfd_create("shset-value", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* The size never changes: no peer can make a mapping fault, and none
	 * needs to grow it. */
	if (ftruncate(fd, (off_t)lo.size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	v = value_alloc(fd);
	if (!v) {
		close(fd);
		return -ENOMEM;
	}
	h.magic = VALUES_MAGIC;
	h.version = VALUES_VERSION;
	h.kind = kind;
	h.length = length;
	h.data_off = lo.data_off;
	h.size = lo.size;
	h.nslots = lo.nslots;
	h.created_ns = prim_real_ns();
	err = map_value(v, &h);
	if (err) {
		close(fd);
		value_free(v);
		return err;
	}
	/* The memfd reads as zeros: lock, slots and values start at 0. */
	memcpy(v->base, &h, sizeof(h));
	*out = v;
	return 0;
}

/* Reads and checks the header of @fd without mapping it, with the errors
 * of region_probe_fd. */
static int values_probe_fd(int fd, struct values_hdr *h)
{
	struct values_layout lo;
	struct stat st;
	int seals, err = region_memfd_check(fd, &st, &seals);

	if (err)
		return err;
	/* pread cannot fault: the magic is read before the seals are judged,
	 * so that a set's fd is named for what it is. */
	if ((uint64_t)st.st_size < VALUES_PAGE)
		return -ENODATA;
	ssize_t n = pread(fd, h, sizeof(*h), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(*h))
		return -ENODATA;
	if (h->magic != VALUES_MAGIC)
		return -EPROTO;
	if (h->version != VALUES_VERSION)
		return -EPROTONOSUPPORT;
	if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return -EPERM;
	if (values_layout(h->kind, h->length, &lo) < 0 || h->data_off != lo.data_off ||
	    h->size != lo.size || h->nslots != lo.nslots || (uint64_t)st.st_size != lo.size)
		return -EUCLEAN;
	return 0;
}

int shset_value_attach_fd(shset_value **out, int fd, unsigned kind)
{
	struct values_hdr h;
	shset_value *v;
	int err, dup;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (kind > VALUES_KIND_MAX)
		return -EINVAL;
	err = values_probe_fd(fd, &h);
	if (err)
		return err;
	if (kind != SHSET_VALUE_ANY && h.kind != kind)
		return -EPROTOTYPE;
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		return -EACCES;
	dup = region_reopen(fd, 0); /* not a dup: region.h */
	if (dup < 0)
		return dup;
	v = value_alloc(dup);
	if (!v) {
		close(dup);
		return -ENOMEM;
	}
	err = map_value(v, &h);
	if (err) {
		close(dup);
		value_free(v);
		return err;
	}
	*out = v;
	return 0;
}

int shset_value_fd(const shset_value *v)
{
	return v ? v->fd : -EINVAL;
}

int shset_value_kind(const shset_value *v)
{
	return v ? (int)v->kind : -EINVAL;
}

size_t shset_value_length(const shset_value *v)
{
	return v ? v->length : 0;
}

void shset_value_close(shset_value *v)
{
	if (!v)
		return;
	shset_lease_close(v->lease);
	munmap(v->base, v->size);
	close(v->fd);
	value_free(v);
}

int shset_value_send(int sock, const shset_value *v)
{
	if (!v)
		return -EINVAL;
	return fdpass_send(sock, v->fd, values_tag, VALUES_VERSION);
}

int shset_value_recv(int sock, shset_value **out, unsigned kind)
{
	int fd, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (kind > VALUES_KIND_MAX)
		return -EINVAL; /* before the message is taken */
	err = fdpass_recv(sock, &fd, values_tag, VALUES_VERSION);
	if (err)
		return err;
	err = shset_value_attach_fd(out, fd, kind); /* validates first; keeps its own description */
	if (err)
		fdpass_close(fd); /* refused: maybe a lingering socket */
	else
		close(fd); /* a memfd */
	return err;
}

/* --- integers -------------------------------------------------------------- */

enum rmw { RMW_ADD, RMW_SUB, RMW_AND, RMW_OR, RMW_XOR };

/* The shared word of slot @i of a value of @kind. */
static inline int word_at(shset_value *v, unsigned kind, uint64_t i, uint64_t **w)
{
	if (__builtin_expect(!v || v->kind != kind, 0))
		return -EINVAL;
	if (__builtin_expect(i >= v->length, 0))
		return -ERANGE;
	*w = v->words + i;
	return 0;
}

static inline int op_load(shset_value *v, unsigned kind, uint64_t i, uint64_t *out)
{
	uint64_t *w;
	int err = word_at(v, kind, i, &w);

	if (!err && out)
		*out = __atomic_load_n(w, __ATOMIC_SEQ_CST);
	return err;
}

static inline int op_store(shset_value *v, unsigned kind, uint64_t i, uint64_t x)
{
	uint64_t *w;
	int err = word_at(v, kind, i, &w);

	if (!err)
		__atomic_store_n(w, x, __ATOMIC_SEQ_CST);
	return err;
}

static inline int op_exchange(shset_value *v, unsigned kind, uint64_t i, uint64_t x, uint64_t *old)
{
	uint64_t *w;
	int err = word_at(v, kind, i, &w);

	if (err)
		return err;
	x = __atomic_exchange_n(w, x, __ATOMIC_SEQ_CST);
	if (old)
		*old = x;
	return 0;
}

static inline int op_cas(shset_value *v, unsigned kind, uint64_t i, uint64_t *expected,
			 uint64_t desired)
{
	uint64_t *w;
	int err = word_at(v, kind, i, &w);

	if (err)
		return err;
	if (!expected)
		return -EINVAL;
	return __atomic_compare_exchange_n(w, expected, desired, 0, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

/* One atomic read-modify-write; *@res gets the old value, or the new one
 * with @newval.  Unsigned arithmetic: signed values wrap as two's
 * complement. */
static inline int op_rmw(shset_value *v, unsigned kind, uint64_t i, enum rmw op, int newval,
			 uint64_t n, uint64_t *res)
{
	uint64_t *w, r = 0;
	int err = word_at(v, kind, i, &w);

	if (err)
		return err;
	switch (op) {
	case RMW_ADD:
		r = newval ? __atomic_add_fetch(w, n, __ATOMIC_SEQ_CST)
			   : __atomic_fetch_add(w, n, __ATOMIC_SEQ_CST);
		break;
	case RMW_SUB:
		r = newval ? __atomic_sub_fetch(w, n, __ATOMIC_SEQ_CST)
			   : __atomic_fetch_sub(w, n, __ATOMIC_SEQ_CST);
		break;
	case RMW_AND:
		r = __atomic_fetch_and(w, n, __ATOMIC_SEQ_CST);
		break;
	case RMW_OR:
		r = __atomic_fetch_or(w, n, __ATOMIC_SEQ_CST);
		break;
	case RMW_XOR:
		r = __atomic_fetch_xor(w, n, __ATOMIC_SEQ_CST);
		break;
	}
	if (res)
		*res = r;
	return 0;
}

/*
 * The public integer functions, for scalars (slot 0; IDX_PARAM "()") and
 * arrays (slot i; IDX_PARAM "(, size_t i)"), signed and unsigned.  Signed values convert to and
 * from uint64_t modulo 2^64 (GCC's documented conversion).
 */
#define VALUES_UNPAREN(...) __VA_ARGS__
#define VALUES_INT_OPS(NAME, T, KIND, IDX_PARAM, IDX)                                              \
	int shset_##NAME##_load(shset_value *v VALUES_UNPAREN IDX_PARAM, T *out)                   \
	{                                                                                          \
		uint64_t x;                                                                        \
		int err = op_load(v, KIND, IDX, &x);                                               \
		if (!err && out)                                                                   \
			*out = (T)x;                                                               \
		return err;                                                                        \
	}                                                                                          \
	int shset_##NAME##_store(shset_value *v VALUES_UNPAREN IDX_PARAM, T value)                 \
	{                                                                                          \
		return op_store(v, KIND, IDX, (uint64_t)value);                                    \
	}                                                                                          \
	int shset_##NAME##_exchange(shset_value *v VALUES_UNPAREN IDX_PARAM, T value, T *old)      \
	{                                                                                          \
		uint64_t x;                                                                        \
		int err = op_exchange(v, KIND, IDX, (uint64_t)value, &x);                          \
		if (!err && old)                                                                   \
			*old = (T)x;                                                               \
		return err;                                                                        \
	}                                                                                          \
	int shset_##NAME##_compare_exchange(shset_value *v VALUES_UNPAREN IDX_PARAM, T *expected,  \
					    T desired)                                             \
	{                                                                                          \
		uint64_t x;                                                                        \
		int r;                                                                             \
		if (!expected)                                                                     \
			return -EINVAL;                                                            \
		x = (uint64_t)*expected;                                                           \
		r = op_cas(v, KIND, IDX, &x, (uint64_t)desired);                                   \
		if (r == 0)                                                                        \
			*expected = (T)x;                                                          \
		return r;                                                                          \
	}                                                                                          \
	VALUES_INT_RMW(NAME##_fetch_add, T, KIND, IDX_PARAM, IDX, RMW_ADD, 0)                      \
	VALUES_INT_RMW(NAME##_fetch_sub, T, KIND, IDX_PARAM, IDX, RMW_SUB, 0)                      \
	VALUES_INT_RMW(NAME##_fetch_and, T, KIND, IDX_PARAM, IDX, RMW_AND, 0)                      \
	VALUES_INT_RMW(NAME##_fetch_or, T, KIND, IDX_PARAM, IDX, RMW_OR, 0)                        \
	VALUES_INT_RMW(NAME##_fetch_xor, T, KIND, IDX_PARAM, IDX, RMW_XOR, 0)                      \
	VALUES_INT_RMW(NAME##_add_fetch, T, KIND, IDX_PARAM, IDX, RMW_ADD, 1)                      \
	VALUES_INT_RMW(NAME##_sub_fetch, T, KIND, IDX_PARAM, IDX, RMW_SUB, 1)

#define VALUES_INT_RMW(FN, T, KIND, IDX_PARAM, IDX, OP, NEWVAL)                                    \
	int shset_##FN(shset_value *v VALUES_UNPAREN IDX_PARAM, T n, T *res)                       \
	{                                                                                          \
		uint64_t x;                                                                        \
		int err = op_rmw(v, KIND, IDX, OP, NEWVAL, (uint64_t)n, &x);                       \
		if (!err && res)                                                                   \
			*res = (T)x;                                                               \
		return err;                                                                        \
	}

VALUES_INT_OPS(int, int64_t, SHSET_VALUE_INT, (), 0)
VALUES_INT_OPS(uint, uint64_t, SHSET_VALUE_UINT, (), 0)
VALUES_INT_OPS(intarray, int64_t, SHSET_VALUE_INTARRAY, (, size_t i), i)
VALUES_INT_OPS(uintarray, uint64_t, SHSET_VALUE_UINTARRAY, (, size_t i), i)

int shset_int_create(shset_value **out, int64_t value)
{
	int err = value_create(out, SHSET_VALUE_INT, 1);

	if (!err)
		(*out)->words[0] = (uint64_t)value;
	return err;
}

int shset_uint_create(shset_value **out, uint64_t value)
{
	int err = value_create(out, SHSET_VALUE_UINT, 1);

	if (!err)
		(*out)->words[0] = value;
	return err;
}

int shset_intarray_create(shset_value **out, size_t length)
{
	return value_create(out, SHSET_VALUE_INTARRAY, length);
}

int shset_uintarray_create(shset_value **out, size_t length)
{
	return value_create(out, SHSET_VALUE_UINTARRAY, length);
}

/* --- doubles --------------------------------------------------------------- */

static inline uint64_t dbits(double d)
{
	uint64_t x;

	memcpy(&x, &d, sizeof(x));
	return x;
}

static inline double bitsd(uint64_t x)
{
	double d;

	memcpy(&d, &x, sizeof(d));
	return d;
}

int shset_float_create(shset_value **out, double value)
{
	int err = value_create(out, SHSET_VALUE_FLOAT, 1);

	if (!err)
		(*out)->words[0] = dbits(value);
	return err;
}

int shset_float_load(shset_value *v, double *out)
{
	uint64_t x;
	int err = op_load(v, SHSET_VALUE_FLOAT, 0, &x);

	if (!err && out)
		*out = bitsd(x);
	return err;
}

int shset_float_store(shset_value *v, double value)
{
	return op_store(v, SHSET_VALUE_FLOAT, 0, dbits(value));
}

int shset_float_exchange(shset_value *v, double value, double *old)
{
	uint64_t x;
	int err = op_exchange(v, SHSET_VALUE_FLOAT, 0, dbits(value), &x);

	if (!err && old)
		*old = bitsd(x);
	return err;
}

int shset_float_compare_exchange(shset_value *v, double *expected, double desired)
{
	uint64_t x;
	int r;

	if (!expected)
		return -EINVAL;
	x = dbits(*expected);
	r = op_cas(v, SHSET_VALUE_FLOAT, 0, &x, dbits(desired));
	if (r == 0)
		*expected = bitsd(x);
	return r;
}

static int float_add(shset_value *v, double n, double *old)
{
	uint64_t *w, cur;
	int err = word_at(v, SHSET_VALUE_FLOAT, 0, &w);

	if (err)
		return err;
	cur = __atomic_load_n(w, __ATOMIC_RELAXED);
	/* Each failure means another store succeeded; the bound only stops a
	 * peer that stores without pause from holding us forever. */
	for (long k = 0; k < VALUES_CAS_TRIES; k++) {
		if (__atomic_compare_exchange_n(w, &cur, dbits(bitsd(cur) + n), 1, __ATOMIC_SEQ_CST,
						__ATOMIC_RELAXED)) {
			if (old)
				*old = bitsd(cur);
			return 0;
		}
	}
	return -EAGAIN;
}

int shset_float_fetch_add(shset_value *v, double n, double *old)
{
	return float_add(v, n, old);
}

int shset_float_fetch_sub(shset_value *v, double n, double *old)
{
	return float_add(v, -n, old);
}

/* --- byte strings ---------------------------------------------------------- */

static inline uint64_t pub_word(uint32_t seq, unsigned idx, uint64_t len)
{
	return (uint64_t)seq << 32 | (uint64_t)idx << 31 | len;
}

static inline uint64_t checksum(const void *p, size_t len)
{
	return hash_bytes(values_sum_key, len ? p : "", len);
}

/*
 * Shared buffers are read and written a 64-bit atomic word at a time, so
 * that a reader racing a writer is a defined (if discarded) read.  The
 * buffers are 64-byte aligned; the last word of a value is zero-padded.
 *
 * Writers store each word with release and readers load with acquire (both
 * plain moves on x86): a reader that sees any word of a writer refilling a
 * buffer therefore also sees what preceded that writer's lock acquisition,
 * the publish that took the buffer out of use, and so fails its re-check.
 * (Fences would do the same on weaker CPUs with fewer barriers, but
 * ThreadSanitizer does not model them.)
 */
static void copy_out(void *dst, const uint64_t *src, size_t len)
{
	uint8_t *d = dst;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t x = __atomic_load_n(&src[i / 8], __ATOMIC_ACQUIRE);
		memcpy(d + i, &x, 8);
	}
	if (i < len) {
		uint64_t x = __atomic_load_n(&src[i / 8], __ATOMIC_ACQUIRE);
		memcpy(d + i, &x, len - i);
	}
}

static void copy_in(uint64_t *dst, const void *src, size_t len)
{
	const uint8_t *s = src;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t x;
		memcpy(&x, s + i, 8);
		__atomic_store_n(&dst[i / 8], x, __ATOMIC_RELEASE);
	}
	if (i < len) {
		uint64_t x = 0;
		memcpy(&x, s + i, len - i);
		__atomic_store_n(&dst[i / 8], x, __ATOMIC_RELEASE);
	}
}

/* 1 if the shared @src holds the @len bytes at @p. */
static int equal_shared(const uint64_t *src, const void *p, size_t len)
{
	const uint8_t *q = p;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t x = __atomic_load_n(&src[i / 8], __ATOMIC_RELAXED);
		if (memcmp(q + i, &x, 8))
			return 0;
	}
	if (i < len) {
		uint64_t x = __atomic_load_n(&src[i / 8], __ATOMIC_RELAXED);
		return memcmp(q + i, &x, len - i) == 0;
	}
	return 1;
}

static int check_bytes(shset_value *v)
{
	return v && is_bytes(v->kind) ? 0 : -EINVAL;
}

/* Takes the writer lock (claiming a lease slot on first use). */
static int bytes_lock(shset_value *v)
{
	shset_lease *l = __atomic_load_n(&v->lease, __ATOMIC_ACQUIRE);
	int err = 0;

	if (!l) {
		pthread_mutex_lock(&v->lease_mu);
		l = v->lease;
		if (!l) {
			err = shset_lease_open(&l, v->fd, v->slots, v->nslots);
			/* Watched, so that a thread of this process that waits on
			 * a lock a live process holds frees a word a peer forged
			 * to name this lease (lock.c, unforge), as a set's. */
			if (!err && (err = lease_watch(l, &v->lock, 1)) != 0)
				shset_lease_close(l);
			if (!err)
				__atomic_store_n(&v->lease, l, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&v->lease_mu);
		if (err)
			return err;
	}
	err = shset_lock_acquire(v->lock, l);
	if (err == SHSET_LOCK_OWNER_DIED) {
		/* A writer died holding the lock.  It published nothing it had
		 * not finished (the single store comes last): nothing to repair. */
		err = shset_lock_consistent(v->lock, l);
	}
	return err < 0 ? err : 0;
}

static void bytes_unlock(shset_value *v)
{
	shset_lock_release(v->lock, v->lease);
}

int shset_value_recover(shset_value *v)
{
	if (!v)
		return -EINVAL;
	if (!is_bytes(v->kind))
		return 0; /* numbers and arrays take no lock */
	int err = bytes_lock(v);
	if (err)
		return err;
	bytes_unlock(v);
	return 0;
}

/*
 * One read of the published value into @buf.  0, -ENOBUFS (*@len is the
 * length needed), -EAGAIN if a writer published during the copy, -EUCLEAN
 * if the shared state is one no writer leaves.  With @locked (writers
 * excluded) a change during the copy is a peer's scribble: -EUCLEAN.
 */
static int bytes_read(shset_value *v, void *buf, size_t cap, size_t *len, int locked)
{
	/* Pairs with the release store that published w: the buffer and sum
	 * written before it are visible below. */
	uint64_t w = __atomic_load_n(&v->pub->word, __ATOMIC_ACQUIRE);
	uint64_t n = PUB_LEN(w);
	unsigned idx = PUB_IDX(w);

	if (n > v->length)
		return -EUCLEAN;
	*len = n;
	if (n > cap)
		return -ENOBUFS;
	copy_out(buf, v->buf[idx], n);
	uint64_t sum = __atomic_load_n(&v->pub->sum[idx], __ATOMIC_ACQUIRE);
	/* The acquire loads above keep this load after them.  If they saw any
	 * store of a writer refilling buffer idx (release stores), this sees
	 * the publish that freed idx, so w is stale. */
	if (__atomic_load_n(&v->pub->word, __ATOMIC_RELAXED) != w)
		return locked ? -EUCLEAN : -EAGAIN;
	if (sum != checksum(buf, n))
		return -EUCLEAN;
	return 0;
}

/* Publishes @value (lock held).  @w is the published word read under the
 * lock; its index says which buffer readers may be copying. */
static void bytes_publish(shset_value *v, uint64_t w, const void *value, size_t len)
{
	unsigned next = !PUB_IDX(w);

	/* Release stores, paired with the reader's acquire loads: a reader that
	 * sees one also sees the publish that made buffer `next` inactive (it
	 * happened before our lock acquisition) and retries. */
	copy_in(v->buf[next], value, len);
	__atomic_store_n(&v->pub->sum[next], checksum(value, len), __ATOMIC_RELEASE);
	/* The single store that switches readers to the new value; pairs with
	 * the acquire load at the start of bytes_read. */
	__atomic_store_n(&v->pub->word, pub_word(PUB_SEQ(w) + 1, next, len), __ATOMIC_RELEASE);
}

static int bytes_create(shset_value **out, unsigned kind, size_t capacity, const void *init,
			size_t len)
{
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (len > capacity)
		return capacity <= SHSET_BYTES_MAX ? -EMSGSIZE : -EINVAL;
	if (len && !init)
		return -EINVAL;
	err = value_create(out, kind, capacity);
	if (err)
		return err;
	/* Not shared yet: buffer 0 and the word that publishes it. */
	if (len)
		copy_in((*out)->buf[0], init, len);
	(*out)->pub->sum[0] = checksum(init, len);
	(*out)->pub->word = pub_word(0, 0, len);
	return 0;
}

int shset_bytes_create(shset_value **out, size_t capacity, const void *init, size_t len)
{
	return bytes_create(out, SHSET_VALUE_BYTES, capacity, init, len);
}

int shset_string_create(shset_value **out, size_t capacity, const void *init, size_t len)
{
	return bytes_create(out, SHSET_VALUE_STRING, capacity, init, len);
}

int shset_bytes_load(shset_value *v, void *buf, size_t cap, size_t *len)
{
	size_t dummy;
	int err = check_bytes(v);

	if (err)
		return err;
	if (!buf && cap)
		return -EINVAL;
	if (!len)
		len = &dummy;
	for (int i = 0; i < VALUES_READ_TRIES; i++) {
		err = bytes_read(v, buf, cap, len, 0);
		if (err != -EAGAIN)
			return err;
		if (i >= 8)
			sched_yield();
	}
	/* Writers kept publishing during every copy: read between them. */
	err = bytes_lock(v);
	if (err)
		return err;
	err = bytes_read(v, buf, cap, len, 1);
	bytes_unlock(v);
	return err;
}

int shset_bytes_store(shset_value *v, const void *value, size_t len)
{
	int err = check_bytes(v);

	if (err)
		return err;
	if (len > v->length)
		return -EMSGSIZE;
	if (len && !value)
		return -EINVAL;
	err = bytes_lock(v);
	if (err)
		return err;
	/* The old value is not read: a store also replaces a scribbled one. */
	bytes_publish(v, __atomic_load_n(&v->pub->word, __ATOMIC_RELAXED), value, len);
	bytes_unlock(v);
	return 0;
}

int shset_bytes_exchange(shset_value *v, const void *value, size_t len, void *old, size_t cap,
			 size_t *oldlen)
{
	size_t n;
	int err = check_bytes(v);

	if (err)
		return err;
	if (len > v->length)
		return -EMSGSIZE;
	if ((len && !value) || (!old && cap))
		return -EINVAL;
	err = bytes_lock(v);
	if (err)
		return err;
	uint64_t w = __atomic_load_n(&v->pub->word, __ATOMIC_RELAXED);
	if (old) {
		err = bytes_read(v, old, cap, &n, 1);
		if (oldlen && (err == 0 || err == -ENOBUFS))
			*oldlen = n;
	}
	if (!err)
		bytes_publish(v, w, value, len);
	bytes_unlock(v);
	return err;
}

int shset_bytes_compare_exchange(shset_value *v, const void *expected, size_t elen,
				 const void *desired, size_t dlen)
{
	int err = check_bytes(v);

	if (err)
		return err;
	if (dlen > v->length)
		return -EMSGSIZE;
	if ((elen && !expected) || (dlen && !desired))
		return -EINVAL;
	err = bytes_lock(v);
	if (err)
		return err;
	/* Writers are excluded: the published buffer holds still. */
	uint64_t w = __atomic_load_n(&v->pub->word, __ATOMIC_ACQUIRE);
	uint64_t n = PUB_LEN(w);
	unsigned idx = PUB_IDX(w);
	int eq = 0;
	if (n > v->length)
		err = -EUCLEAN;
	else if (n == elen && equal_shared(v->buf[idx], expected, elen)) {
		/* Equal bytes must carry the sum of those bytes, or a peer
		 * scribbled on them. */
		if (__atomic_load_n(&v->pub->sum[idx], __ATOMIC_RELAXED) !=
		    checksum(expected, elen))
			err = -EUCLEAN;
		else
			eq = 1;
	}
	if (eq)
		bytes_publish(v, w, desired, dlen);
	bytes_unlock(v);
	return err ? err : eq;
}

int shset_value_info(shset_value *v, struct shset_value_info *info)
{
	if (!v || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->kind = v->kind;
	info->length = v->length;
	info->file_bytes = v->size;
	if (!is_bytes(v->kind))
		return 0;
	uint64_t w = __atomic_load_n(&v->pub->word, __ATOMIC_ACQUIRE);
	info->stores = PUB_SEQ(w);
	info->value_len = PUB_LEN(w);
	shset_lock_state(v->lock, &info->lock);
	return PUB_LEN(w) > v->length ? -EUCLEAN : 0;
}
