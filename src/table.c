/* SPDX-License-Identifier: MIT */
/*
 * table.c - the set's hash table, inside the region and addressed by
 * offsets; its memory comes from alloc.c, its changes go through tx.c.
 *
 * Open addressing with linear probing over 32-byte slots, capacity a power
 * of two, at most 3/4 full counting tombstones:
 *
 *   slot: meta u64 | len u32 | 20 bytes: the key inline (len <= 20)
 *                                       or 4 pad + u64 key block offset
 *   meta: 0 EMPTY, 1 TOMBSTONE, else LIVE: the key's hash with low bits 10
 *
 * The probe starts at the hash's top bits.  A hit needs the full meta and
 * length to match before the key bytes are compared, so a probe usually
 * touches one cache line.  Longer keys live in key blocks (alloc.c).
 * clear() empties everything by resetting brk.
 *
 * What needs no logging, and why:
 *   - the body of an EMPTY slot: meta decides, and meta is logged (a
 *     TOMBSTONE's body is logged: this transaction may have made it, and
 *     a rollback then needs the key it held);
 *   - anything in a table allocated by this transaction (tx->fresh): the
 *     logged tdesc still points at the old table after a rollback.  Big
 *     batches therefore start with table_fresh() and log O(1) words.
 *
 * The region is shared with processes that may be hostile, so every word
 * read from it is read once into a local (a slot is copied whole when
 * several of its fields decide something), checked, and used from the
 * local; offsets and lengths of heap objects are checked by view.h against
 * the bytes known to exist, state words by the checks at the top of each
 * entry point; any failure is -EUCLEAN.  Every loop over shared memory is
 * bounded by a number already checked (a table's capacity, the heap's
 * size).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "crashpoint.h"
#include "hash.h"
#include "prim.h"
#include "table.h"
#include "tx.h"
#include "view.h"

#define META_EMPTY 0ull
#define META_TOMB  1ull
#define SLOT_SIZE  32u
#define INLINE_MAX 20u
#define MIN_LOG2   4u
_Static_assert(SLOT_SIZE == 32 && INLINE_MAX + 12 == SLOT_SIZE, "slot layout");
#define READ_TRIES 64

#if defined(__SANITIZE_THREAD__)
#define SEQ_FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)
#else
/* Orders the reader's data loads before its second seq load. */
#define SEQ_FENCE() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

static inline int is_live(uint64_t m)
{
	return (m & 3) == 2;
}

static inline uint64_t meta_of(uint64_t h)
{
	return (h & ~3ull) | 2;
}

static inline uint64_t tdesc_make(uint64_t off, unsigned log2)
{
	return off | ((uint64_t)log2 << 56);
}

static inline uint64_t tdesc_off(uint64_t d)
{
	return d & ((1ull << 56) - 1);
}

static inline unsigned tdesc_log2(uint64_t d)
{
	return (unsigned)(d >> 56);
}

static inline struct tx_state *state(struct region *r)
{
	return tx_state(r);
}

/* --- slots ------------------------------------------------------------------ */
static uint8_t *view_table(const struct view *v, uint64_t tdesc, uint64_t *cap)
{
	unsigned l2 = tdesc_log2(tdesc);

	if (l2 < MIN_LOG2 || l2 > 40)
		return NULL;
	*cap = 1ull << l2;
	return view_heap(v, tdesc_off(tdesc), *cap * SLOT_SIZE);
}

/* The key bytes of a slot whose length the caller has read (once) as
 * @len: checked for that length, so a peer changing the slot's length
 * afterwards cannot widen what the caller reads. */
static const uint8_t *slot_key_len(const struct view *v, const uint8_t *slot, uint32_t len)
{
	if (len > SHSET_KEY_MAX)
		return NULL;
	if (len <= INLINE_MAX)
		return slot + 12;
	uint64_t off = prim_ld64(slot + 16);
	const uint8_t *b = view_heap(v, off, ALLOC_HDR + (uint64_t)len);
	return b ? b + ALLOC_HDR : NULL;
}

/* The key bytes of a live slot, checked; its length read once. */
static const uint8_t *slot_key(const struct view *v, const uint8_t *slot, uint32_t *lenp)
{
	*lenp = prim_ld32(slot + 8);
	return slot_key_len(v, slot, *lenp);
}

/* A private copy of a slot (32 bytes): decisions about a slot are made
 * on one reading of it, never on two that a peer could tell apart. */
static inline void slot_read(uint8_t *dst, const uint8_t *slot)
{
	for (unsigned w = 0; w < SLOT_SIZE / 8; w++)
		prim_st64(dst + w * 8, prim_ld64(slot + w * 8));
}

/*
 * Looks @key up in the table @tdesc.  Returns 1 (*pos: its slot), 0 (*ins:
 * the first reusable slot on its path, or UINT64_MAX; *ins_tomb: whether
 * it was a tombstone when probed), or -EUCLEAN.  At most one pass over the
 * table, whatever a peer writes into it meanwhile.
 */
static int probe_at(const struct view *v, uint64_t tdesc, uint64_t h, const void *key, size_t len,
		    uint64_t *pos, uint64_t *ins, int *ins_tomb)
{
	uint64_t cap, want = meta_of(h);
	uint8_t *t;

	*ins = UINT64_MAX;
	*ins_tomb = 0;
	if (!tdesc)
		return 0;
	t = view_table(v, tdesc, &cap);
	if (!t)
		return -EUCLEAN;
	uint64_t mask = cap - 1, i = h >> (64 - tdesc_log2(tdesc));
	for (uint64_t n = 0; n < cap; n++, i = (i + 1) & mask) {
		const uint8_t *s = t + i * SLOT_SIZE;
		uint64_t m = prim_ld64(s);

		if (m == META_EMPTY) {
			if (*ins == UINT64_MAX)
				*ins = i;
			return 0;
		}
		if (m == META_TOMB) {
			if (*ins == UINT64_MAX) {
				*ins = i;
				*ins_tomb = 1;
			}
			continue;
		}
		if (m != want || prim_ld32(s + 8) != len)
			continue;
		/* The length just compared is the one checked and compared:
		 * slot_key_len does not read it again. */
		const uint8_t *k = slot_key_len(v, s, (uint32_t)len);
		if (!k)
			return -EUCLEAN;
		if (memcmp(k, key, len) == 0) {
			*pos = i;
			return 1;
		}
	}
	return 0;
}

static int probe(const struct view *v, uint64_t tdesc, uint64_t h, const void *key, size_t len,
		 uint64_t *pos, uint64_t *ins)
{
	int tomb;

	return probe_at(v, tdesc, h, key, len, pos, ins, &tomb);
}

/* --- lock-free readers ---------------------------------------------------- */

static inline uint64_t seq_begin(struct tx_state *st)
{
	return __atomic_load_n(&st->seq, __ATOMIC_ACQUIRE);
}

static inline int seq_retry(struct tx_state *st, uint64_t s)
{
	SEQ_FENCE();
	return __atomic_load_n(&st->seq, __ATOMIC_RELAXED) != s;
}

int table_contains_optimistic(struct region *r, const void *key, size_t len)
{
	struct tx_state *st = state(r);
	uint64_t h = hash_bytes(r->seed, key, len);

	for (int tries = 0; tries < READ_TRIES; tries++) {
		uint64_t s = seq_begin(st);
		if (s & 1) {
			prim_cpu_relax();
			continue;
		}
		struct view v;
		uint64_t pos, ins;
		view_region(&v, r, __atomic_load_n(&st->brk, __ATOMIC_RELAXED));
		int res = probe(&v, __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED), h, key, len,
				&pos, &ins);
		if (!seq_retry(st, s))
			return res;
	}
	return -EAGAIN;
}

/* A count is believable only if the table it describes could hold it:
 * no more keys than slots, in a table that lies inside the file.  So no
 * caller is ever told of more keys than the region has room for. */
static long long count_checked(struct region *r, uint64_t tdesc, uint64_t count)
{
	if (!tdesc)
		return count ? -EUCLEAN : 0;
	unsigned l2 = tdesc_log2(tdesc);
	if (l2 < MIN_LOG2 || l2 > 40)
		return -EUCLEAN;
	uint64_t cap = 1ull << l2;
	if (count > cap || tdesc_off(tdesc) < r->heap_off ||
	    region_check(r, tdesc_off(tdesc), cap * SLOT_SIZE))
		return -EUCLEAN;
	return (long long)count;
}

long long table_count_optimistic(struct region *r)
{
	struct tx_state *st = state(r);

	for (int tries = 0; tries < READ_TRIES; tries++) {
		uint64_t s = seq_begin(st);
		if (s & 1) {
			prim_cpu_relax();
			continue;
		}
		uint64_t c = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
		uint64_t d = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
		if (!seq_retry(st, s))
			return count_checked(r, d, c);
	}
	return -EAGAIN;
}

long long table_count_locked(struct region *r)
{
	uint64_t c = __atomic_load_n(&state(r)->count, __ATOMIC_RELAXED);
	uint64_t d = __atomic_load_n(&state(r)->tdesc, __ATOMIC_RELAXED);

	return count_checked(r, d, c);
}

static void view_locked(struct view *v, struct region *r)
{
	view_region(v, r, __atomic_load_n(&state(r)->brk, __ATOMIC_RELAXED));
}

int table_contains_locked(struct region *r, const void *key, size_t len)
{
	struct view v;
	uint64_t pos, ins;

	view_locked(&v, r);
	return probe(&v, __atomic_load_n(&state(r)->tdesc, __ATOMIC_RELAXED),
		     hash_bytes(r->seed, key, len), key, len, &pos, &ins);
}

/* --- mutations ------------------------------------------------------------- */

int table_begin(struct tx *x)
{
	uint64_t cap = x->tdesc ? 1ull << (tdesc_log2(x->tdesc) & 63) : 0;

	if (x->count + x->tombs > cap || x->count + x->tombs < x->count)
		return -EUCLEAN;
	return 0;
}

uint64_t table_tx_count(const struct tx *x)
{
	return x->count;
}
static int slot_write_prepare(struct tx *x, uint64_t slot_off)
{
	if (x->fresh && x->tdesc == x->fresh_tdesc)
		return 0;
	return tx_log(x, slot_off);
}

/* Places a private copy of a slot (32 bytes) into table @t by probing for
 * an empty slot: used when rebuilding into a fresh table.  The new table
 * is shared memory a peer can fill meanwhile, so the probe stops after one
 * pass: -EUCLEAN. */
static int place(uint8_t *t, unsigned l2, const uint8_t *slot)
{
	uint64_t mask = (1ull << l2) - 1, m = prim_ld64(slot);
	uint64_t i = m >> (64 - l2);

	for (uint64_t n = 0; prim_ld64(t + i * SLOT_SIZE) != META_EMPTY; n++) {
		if (n > mask)
			return -EUCLEAN;
		i = (i + 1) & mask;
	}
	memcpy(t + i * SLOT_SIZE + 8, slot + 8, SLOT_SIZE - 8);
	prim_st64(t + i * SLOT_SIZE, m);
	return 0;
}

static unsigned log2_for(uint64_t keys)
{
	unsigned l2 = MIN_LOG2;

	/* At most half full right after a resize. */
	while ((1ull << l2) / 2 < keys && l2 < 40)
		l2++;
	return l2;
}

/*
 * Moves the live keys for which @keep says 1 into a fresh table sized for
 * max(@keys, kept); frees the blocks of the others and the old table.
 */
static int rebuild(struct tx *x, uint64_t keys, int (*keep)(const void *k, size_t len, void *arg),
		   void *arg)
{
	uint64_t cap = 0, off, old = x->tdesc;
	uint8_t *ot = NULL;
	int err;

	if (old) {
		ot = view_table(&x->v, old, &cap);
		if (!ot)
			return -EUCLEAN;
	}
	if (x->cleared)
		return -EINVAL;
	if (keys < x->count)
		keys = x->count;
	unsigned l2 = log2_for(keys);
	err = alloc_get(x, alloc_class((1ull << l2) * SLOT_SIZE), 1, &off);
	if (err)
		return err;
	uint8_t *nt = view_heap(&x->v, off, (1ull << l2) * SLOT_SIZE);
	if (!nt)
		return -EUCLEAN;
	tx_touch(x);
	memset(nt, 0, (1ull << l2) * SLOT_SIZE);
	CRASH_POINT("resize: new table cleared");
	uint64_t kept = 0, kbytes = 0, abytes = 0;
	for (uint64_t i = 0; i < cap; i++) {
		uint8_t s[SLOT_SIZE] __attribute__((aligned(8)));
		slot_read(s, ot + i * SLOT_SIZE);
		if (!is_live(prim_ld64(s)))
			continue;
		uint32_t len;
		const uint8_t *k = slot_key(&x->v, s, &len);
		if (!k || ++kept > (1ull << l2) / 2 + 1)
			return -EUCLEAN;
		int yes = keep ? keep(k, len, arg) : 1;
		if (yes < 0)
			return yes;
		if (yes) {
			err = place(nt, l2, s);
			if (err)
				return err;
			CRASH_POINT("resize: slot moved");
			kbytes += len;
			if (len > INLINE_MAX)
				abytes += alloc_class_bytes(alloc_key_class(len));
		} else {
			kept--;
			if (len > INLINE_MAX) {
				err = alloc_put(x, prim_ld64(s + 16), alloc_key_class(len), 0);
				if (err)
					return err;
			}
		}
	}
	if (old) {
		err = alloc_put(x, tdesc_off(old), alloc_class(cap * SLOT_SIZE), 1);
		if (err)
			return err;
	}
	x->tdesc = tdesc_make(off, l2);
	x->fresh = 1;
	x->fresh_tdesc = x->tdesc;
	x->count = kept;
	x->tombs = 0;
	x->key_bytes = kbytes;
	x->arena_bytes = abytes;
	x->st->n_resizes++;
	return 0;
}

int table_fresh(struct tx *x, uint64_t keys)
{
	if (x->fresh && x->tdesc == x->fresh_tdesc) {
		uint64_t cap = 1ull << tdesc_log2(x->tdesc);
		if ((x->count + keys) * 4 <= cap * 3)
			return 0;
	}
	return rebuild(x, x->count + keys, NULL, NULL);
}

int table_insert(struct tx *x, const void *key, size_t len)
{
	uint64_t h, pos, ins, cap;
	int err, was_tomb;

	if (len > SHSET_KEY_MAX || x->cleared)
		return -EINVAL;
	h = hash_bytes(x->v.seed, key, len);
	err = probe_at(&x->v, x->tdesc, h, key, len, &pos, &ins, &was_tomb);
	if (err)
		return err < 0 ? err : 0;
	cap = x->tdesc ? 1ull << tdesc_log2(x->tdesc) : 0;
	/* Reusing a tombstone does not fill the table any further. */
	uint64_t filled = x->count + x->tombs + (was_tomb ? 0 : 1);
	if (filled * 4 > cap * 3) {
		err = rebuild(x, x->count + 1, NULL, NULL);
		/* Out of room for a bigger table: fill this one up to 7/8
		 * before refusing. */
		if (err == -ENOSPC && ins != UINT64_MAX && filled * 8 <= cap * 7)
			err = 0;
		else if (err)
			return err;
		err = probe_at(&x->v, x->tdesc, h, key, len, &pos, &ins, &was_tomb);
		if (err)
			return err < 0 ? err : -EUCLEAN;
	}
	if (ins == UINT64_MAX)
		return -EUCLEAN; /* a 3/4-full table always has room */
	uint64_t cap2;
	uint8_t *t = view_table(&x->v, x->tdesc, &cap2);
	if (!t)
		return -EUCLEAN;
	uint8_t *s = t + ins * SLOT_SIZE;
	if (ins >= cap2)
		return -EUCLEAN;
	uint64_t slot_off = tdesc_off(x->tdesc) + ins * SLOT_SIZE;
	uint64_t blk = 0;
	unsigned cls = 0;
	if (len > INLINE_MAX) {
		cls = alloc_key_class(len);
		err = alloc_get(x, cls, 0, &blk);
		if (err)
			return err;
	}
	err = slot_write_prepare(x, slot_off);
	/* A tombstone may have been made by this very transaction: its body
	 * then still belongs to a key the committed state holds, and must
	 * come back with its meta on a rollback. */
	for (unsigned w = 1; !err && was_tomb && w < SLOT_SIZE / 8; w++)
		err = slot_write_prepare(x, slot_off + w * 8);
	if (err)
		return err;
	tx_touch(x);
	prim_st32(s + 8, (uint32_t)len);
	CRASH_POINT("insert: length written");
	if (blk) {
		memcpy(x->r->base + blk + ALLOC_HDR, key, len);
		CRASH_POINT("insert: key in arena");
		prim_st64(s + 16, blk);
		CRASH_POINT("insert: block linked");
		x->arena_bytes += alloc_class_bytes(cls);
	} else {
		memcpy(s + 12, key, len);
	}
	/* Release: a reader that sees the meta sees the key bytes too. */
	__atomic_store_n((uint64_t *)s, meta_of(h), __ATOMIC_RELEASE);
	CRASH_POINT("insert: slot published");
	x->count++;
	x->key_bytes += len;
	if (was_tomb)
		x->tombs--;
	return 1;
}

/* Turns slot @i of the current table into a tombstone and frees its key,
 * whose length the caller has read (once) as @len. */
static int remove_at(struct tx *x, uint8_t *t, uint64_t i, uint32_t len)
{
	uint8_t *s = t + i * SLOT_SIZE;
	int err;

	if (len > SHSET_KEY_MAX)
		return -EUCLEAN;
	err = slot_write_prepare(x, tdesc_off(x->tdesc) + i * SLOT_SIZE);
	if (err)
		return err;
	if (len > INLINE_MAX) {
		unsigned cls = alloc_key_class(len);
		err = alloc_put(x, prim_ld64(s + 16), cls, 0);
		if (err)
			return err;
		x->arena_bytes -= alloc_class_bytes(cls);
	}
	tx_touch(x);
	__atomic_store_n((uint64_t *)s, META_TOMB, __ATOMIC_RELEASE);
	CRASH_POINT("remove: tombstone");
	x->count--;
	x->tombs++;
	x->key_bytes -= len;
	return 1;
}

int table_remove(struct tx *x, const void *key, size_t len)
{
	uint64_t pos, ins, cap;
	int res;

	if (len > SHSET_KEY_MAX)
		return 0;
	res = probe(&x->v, x->tdesc, hash_bytes(x->v.seed, key, len), key, len, &pos, &ins);
	if (res <= 0)
		return res;
	uint8_t *t = view_table(&x->v, x->tdesc, &cap);
	if (!t || pos >= cap)
		return -EUCLEAN;
	return remove_at(x, t, pos, (uint32_t)len);
}

int table_pop(struct tx *x, void *buf, size_t bufcap, size_t *lenp)
{
	uint64_t cap;

	if (!x->count || !x->tdesc)
		return 0;
	uint8_t *t = view_table(&x->v, x->tdesc, &cap);
	if (!t)
		return -EUCLEAN;
	uint64_t start = __atomic_load_n(&x->st->pop_hint, __ATOMIC_RELAXED) & (cap - 1);
	for (uint64_t n = 0; n < cap; n++) {
		uint64_t i = (start + n) & (cap - 1);
		const uint8_t *s = t + i * SLOT_SIZE;
		if (!is_live(prim_ld64(s)))
			continue;
		uint32_t len;
		const uint8_t *k = slot_key(&x->v, s, &len);
		if (!k)
			return -EUCLEAN;
		*lenp = len;
		if (len > bufcap)
			return -ENOBUFS;
		memcpy(buf, k, len);
		x->st->pop_hint = i + 1;
		CRASH_POINT("pop: hint moved");
		return remove_at(x, t, i, len);
	}
	return -EUCLEAN; /* count said there was one */
}

int table_clear(struct tx *x)
{
	/* Nothing is overwritten, so the old state stays intact until the
	 * commit publishes the empty one. */
	tx_touch(x);
	x->tdesc = 0;
	x->count = 0;
	x->tombs = 0;
	x->brk = x->r->heap_off;
	x->v.brk = x->brk;
	x->key_bytes = 0;
	x->arena_bytes = 0;
	memset(x->head, 0, sizeof(x->head));
	x->head_mask = (1ull << ALLOC_CLASSES) - 1;
	x->pend_mask = 0;
	x->npunch = 0;
	x->fresh = 0;
	/* Later allocations would reuse the committed heap that a rollback
	 * must find intact. */
	x->cleared = 1;
	return 0;
}

int table_filter(struct tx *x, int (*keep)(const void *k, size_t len, void *arg), void *arg)
{
	uint64_t before = x->count;
	int err = rebuild(x, 0, keep, arg);

	return err ? err : (int)(before - x->count > INT32_MAX ? INT32_MAX : before - x->count);
}

void table_commit(struct tx *x)
{
	struct tx_state *st = x->st;

	tx_publish(x, &st->tdesc, x->tdesc);
	tx_publish(x, &st->count, x->count);
	tx_publish(x, &st->tombs, x->tombs);
	tx_publish(x, &st->key_bytes, x->key_bytes);
	tx_publish(x, &st->arena_bytes, x->arena_bytes);
	tx_publish(x, &st->old_tdesc, x->old_tdesc);
	tx_publish(x, &st->moved, x->moved);
}

/* --- creation, iteration, copies ------------------------------------------ */

int table_init(struct region *r, uint64_t capacity)
{
	struct tx_state *st = state(r);
	int err = 0;

	st->brk = r->heap_off;
	if (!capacity)
		return 0;
	if (capacity > (1ull << 38))
		return -ENOSPC;
	struct tx tx;
	struct tx *x = tx_begin(r, &tx, &err);
	if (!x)
		return err;
	/* Sized so that @capacity keys fit below the 3/4 load limit. */
	err = rebuild(x, (capacity * 2 + 2) / 3, NULL, NULL);
	if (err) {
		tx_abort(x);
		return err;
	}
	tx_commit(x);
	return 0;
}

static int next_in(const struct view *v, uint64_t tdesc, uint64_t *pos, const uint8_t **key,
		   size_t *len)
{
	uint64_t cap;

	if (!tdesc)
		return 0;
	uint8_t *t = view_table(v, tdesc, &cap);
	if (!t)
		return -EUCLEAN;
	for (uint64_t i = *pos; i < cap; i++) {
		const uint8_t *s = t + i * SLOT_SIZE;
		if (!is_live(prim_ld64(s)))
			continue;
		uint32_t kl;
		const uint8_t *k = slot_key(v, s, &kl);
		if (!k)
			return -EUCLEAN;
		*key = k;
		*len = kl;
		*pos = i + 1;
		return 1;
	}
	*pos = cap;
	return 0;
}

void table_iter_start(struct region *r, struct table_iter *it)
{
	it->r = r;
	it->tdesc = __atomic_load_n(&state(r)->tdesc, __ATOMIC_RELAXED);
	it->brk = __atomic_load_n(&state(r)->brk, __ATOMIC_RELAXED);
	it->pos = 0;
}

int table_iter_next(struct table_iter *it, const uint8_t **key, size_t *len)
{
	struct view v;

	view_region(&v, it->r, it->brk);
	return next_in(&v, it->tdesc, &it->pos, key, len);
}

static void view_snap(struct view *v, const struct table_snap *sn)
{
	view_copy(v, sn->buf, sn->heap_off, sn->st.brk, sn->seed);
}

struct snap_read {
	struct table_snap *sn;
	int err;
};

/* Reads one data extent with pread, which never allocates pages in the
 * memfd (a load through the mapping would, even a read-only one). */
static void snap_read_extent(struct region *r, uint64_t off, uint64_t len, void *arg)
{
	struct snap_read *sr = arg;
	uint8_t *dst = sr->sn->buf + (off - sr->sn->heap_off);

	while (len && !sr->err) {
		ssize_t n = pread(r->fd, dst, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			sr->err = n < 0 ? -errno : -EUCLEAN;
			break;
		}
		dst += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
}

/*
 * Copies the state and the used heap; the caller makes it consistent.
 * Inspection must not change the set, so nothing is read through the
 * mapping past the header page: holes stay holes, and the private buffer
 * is touched only where the file has data (the rest stays untouched zero
 * pages), so a scribbled brk over a sparse file costs
 * address space, not memory.
 */
static int snap_copy(struct region *r, struct table_snap *sn)
{
	struct tx_state *st = state(r);

	memcpy(&sn->st, st, sizeof(sn->st));
	sn->heap_off = r->heap_off;
	sn->seed[0] = r->seed[0];
	sn->seed[1] = r->seed[1];
	uint64_t brk = sn->st.brk;
	if (brk < sn->heap_off || region_check(r, sn->heap_off, brk - sn->heap_off))
		return -EUCLEAN;
	table_snap_free(sn);
	/* Anonymous memory reads as zeros and takes no memory until written
	 * (a sanitizer's malloc would also shadow all of it). */
	void *m = mmap(NULL, brk - sn->heap_off + 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	sn->buf = m;
	sn->cap = brk - sn->heap_off;
	struct snap_read sr = {sn, 0};
	region_extents(r, sn->heap_off, brk, snap_read_extent, &sr);
	return sr.err;
}

int table_snap_optimistic(struct region *r, struct table_snap *sn, uint64_t timeout_ns)
{
	struct tx_state *st = state(r);
	uint64_t start = prim_mono_ns();

	memset(sn, 0, sizeof(*sn));
	for (;;) {
		uint64_t s = seq_begin(st);
		if (!(s & 1)) {
			int err = snap_copy(r, sn);
			if (!seq_retry(st, s))
				return err;
		}
		if (prim_mono_ns() - start > timeout_ns)
			return -EAGAIN;
		prim_cpu_relax();
	}
}

void table_snap_free(struct table_snap *sn)
{
	if (sn->buf)
		munmap(sn->buf, sn->cap + 1);
	sn->buf = NULL;
	sn->cap = 0;
}

int table_snap_next(const struct table_snap *sn, uint64_t *pos, const uint8_t **key, size_t *len)
{
	struct view v;

	view_snap(&v, sn);
	return next_in(&v, sn->st.tdesc, pos, key, len);
}

static void copy_extent(struct region *src, uint64_t off, uint64_t len, void *dst)
{
	memcpy(((struct region *)dst)->base + off, src->base + off, len);
	CRASH_POINT("copy: extent copied");
}

int table_copy_into(struct region *src, struct region *dst)
{
	struct tx_state s0, *s = &s0, *d = state(dst);
	int err;

	/* One reading of the source's state; the copy is built from it. */
	memcpy(&s0, state(src), sizeof(s0));
	uint64_t brk = s->brk;
	if (s->log_n)
		return -EUCLEAN;
	if (brk < src->heap_off || region_check(src, src->heap_off, brk - src->heap_off))
		return -EUCLEAN;
	if (dst->heap_off != src->heap_off || brk > dst->map_size)
		return -EINVAL;
	err = region_grow(dst, brk);
	if (err)
		return err;
	/* Only the data: holes (tables given back after a resize) stay
	 * holes, and reading them would allocate pages in the source. */
	region_extents(src, src->heap_off, brk, copy_extent, dst);
	d->brk = brk;
	d->tdesc = s->tdesc;
	d->count = s->count;
	d->tombs = s->tombs;
	d->key_bytes = s->key_bytes;
	d->arena_bytes = s->arena_bytes;
	memcpy(d->head, s->head, sizeof(d->head));
	return 0;
}

int table_collect(struct region *r, uint8_t *buf, size_t cap, size_t *len, uint64_t *count,
		  uint64_t *key_bytes)
{
	struct tx_state *st = state(r);
	struct view v;
	uint64_t pos = 0, n = 0, kb = 0;
	size_t at = 0;
	const uint8_t *k;
	size_t kl;
	int res;

	/* One reading of the state.  Records are never larger than twice the
	 * heap (a slot or a block holds each key); beyond that the numbers
	 * are scribbled. */
	uint64_t brk = __atomic_load_n(&st->brk, __ATOMIC_RELAXED);
	uint64_t cnt = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
	uint64_t kbytes = __atomic_load_n(&st->key_bytes, __ATOMIC_RELAXED);
	uint64_t tdesc = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
	uint64_t heap = brk - r->heap_off;
	if (brk < r->heap_off || region_check(r, 0, brk) || cnt > heap || kbytes > heap)
		return -EUCLEAN;
	uint64_t need = cnt * 4 + kbytes;
	if (need > 2 * heap + 4096)
		return -EUCLEAN;
	*len = (size_t)need;
	if (cap < *len)
		return -ENOBUFS;
	view_region(&v, r, brk);
	while ((res = next_in(&v, tdesc, &pos, &k, &kl)) == 1) {
		if (cap - at < 4 + kl)
			return -EUCLEAN; /* more keys than count and key_bytes say */
		uint32_t l = (uint32_t)kl;
		memcpy(buf + at, &l, 4);
		memcpy(buf + at + 4, k, kl);
		CRASH_POINT("collect: key copied");
		at += 4 + kl;
		n++;
		kb += kl;
	}
	if (res < 0)
		return res;
	if (n != cnt || kb != kbytes)
		return -EUCLEAN;
	*len = at;
	*count = n;
	*key_bytes = kb;
	return 0;
}

/* --- verification and statistics ------------------------------------------- */

/*
 * Every invariant of the table described by @st (a private copy), read
 * through @v.  Checking that each key is reachable walks its probe path;
 * random keys under the keyed hash displace about 4 slots on average at the
 * highest load, so a total beyond VERIFY_PROBE_BUDGET per slot can only be
 * keys crafted to collide, and is reported instead of walked (a cluster of
 * a million would otherwise take 10^12 steps with the lock held).
 */
#define VERIFY_PROBE_BUDGET 64u

static int verify_view(const struct view *v, const struct tx_state *st)
{
	uint64_t cap = 0, live = 0, tombs = 0, kbytes = 0, abytes = 0, walked = 0;

	if (st->log_n || (st->seq & 1))
		return -EUCLEAN;
	if (st->brk < v->heap_off || st->brk != v->brk)
		return -EUCLEAN;
	if (st->tdesc) {
		uint8_t *t = view_table(v, st->tdesc, &cap);
		if (!t)
			return -EUCLEAN;
		for (uint64_t i = 0; i < cap; i++) {
			const uint8_t *s = t + i * SLOT_SIZE;
			uint64_t m = prim_ld64(s), pos, ins;
			if (m == META_TOMB) {
				tombs++;
				continue;
			}
			if (m == META_EMPTY)
				continue;
			if (!is_live(m))
				return -EUCLEAN;
			uint32_t len;
			const uint8_t *k = slot_key(v, s, &len);
			if (!k)
				return -EUCLEAN;
			uint64_t h = hash_bytes(v->seed, k, len);
			if (meta_of(h) != m)
				return -EUCLEAN;
			/* Reachable from its probe start, and the first copy. */
			walked += ((i - (h >> (64 - tdesc_log2(st->tdesc)))) & (cap - 1)) + 1;
			if (walked > VERIFY_PROBE_BUDGET * cap)
				return -EUCLEAN;
			if (probe(v, st->tdesc, h, k, len, &pos, &ins) != 1 || pos != i)
				return -EUCLEAN;
			live++;
			kbytes += len;
			if (len > INLINE_MAX)
				abytes += alloc_class_bytes(alloc_key_class(len));
		}
	}
	if (live != st->count || tombs != st->tombs || kbytes != st->key_bytes ||
	    abytes != st->arena_bytes)
		return -EUCLEAN;
	if (cap && (live + tombs) * 8 > cap * 7)
		return -EUCLEAN;
	return alloc_verify(v, st);
}

int table_verify(struct region *r)
{
	struct tx_state st;
	struct view v;

	/* One reading of the state: the checks and the walks it bounds (the
	 * free lists are bounded by brk) use the same numbers. */
	memcpy(&st, state(r), sizeof(st));
	if (st.brk < r->heap_off || st.brk > r->map_size || region_check(r, 0, st.brk))
		return -EUCLEAN;
	view_region(&v, r, st.brk);
	return verify_view(&v, &st);
}

int table_snap_verify(const struct table_snap *sn)
{
	struct view v;

	view_snap(&v, sn);
	return verify_view(&v, &sn->st);
}

int table_stats(struct region *r, struct table_stats *o)
{
	struct tx_state *st = state(r);

	memset(o, 0, sizeof(*o));
	o->count = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
	uint64_t d = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
	o->capacity = d ? 1ull << (tdesc_log2(d) & 63) : 0;
	o->tombstones = __atomic_load_n(&st->tombs, __ATOMIC_RELAXED);
	o->key_bytes = __atomic_load_n(&st->key_bytes, __ATOMIC_RELAXED);
	o->arena_bytes = __atomic_load_n(&st->arena_bytes, __ATOMIC_RELAXED);
	uint64_t brk = __atomic_load_n(&st->brk, __ATOMIC_RELAXED);
	o->heap_bytes = brk > r->heap_off ? brk - r->heap_off : 0;
	/* The file itself, not the header's record of it (a peer can write
	 * that). */
	struct stat fst;
	o->file_bytes = fstat(r->fd, &fst) == 0 ? (uint64_t)fst.st_size : 0;
	o->repairs = __atomic_load_n(&st->n_repairs, __ATOMIC_RELAXED);
	o->resizes = __atomic_load_n(&st->n_resizes, __ATOMIC_RELAXED);
	o->aborts = __atomic_load_n(&st->n_aborts, __ATOMIC_RELAXED);
	o->txns = __atomic_load_n(&st->n_txns, __ATOMIC_RELAXED);
	o->log_capacity = r->log_bytes / 16; /* 16-byte entries */
	return 0;
}
