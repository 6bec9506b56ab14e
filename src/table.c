/* SPDX-License-Identifier: MIT */
/*
 * table.c - the set's hash table, inside the region and addressed by
 * offsets; its memory comes from alloc.c, its changes go through tx.c.
 *
 * Open addressing with linear probing over 32-byte slots, capacity a
 * quarter step of a power of two (table.h: 16, 20, 24, 28, 32, 40, ...),
 * at most 3/4 full counting tombstones:
 *
 *   slot: meta u64 | len u32 | 20 bytes: the key inline (len <= 20)
 *                                       or 4 pad + u64 key block offset
 *   meta: 0 EMPTY, 1 TOMBSTONE, else LIVE: the key's hash with low bits 10
 *
 * The probe starts at the home slot, the hash scaled to the capacity
 * (home(): its top bits for a power of two), and wraps from the last slot
 * to the first.  A hit needs the full meta and length to match before the
 * key bytes are compared, so a probe usually touches one cache line.
 * Longer keys live in key blocks (alloc.c).  A table grows, shrinks and
 * sheds tombstones incrementally, a few slots per operation ("incremental
 * resizing" below); big batches are inserted in home-slot order ("bulk
 * inserts").  clear() empties everything by resetting brk.
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
#include "snapshot.h"
#include "table.h"
#include "tx.h"
#include "view.h"

#define META_EMPTY 0ull
#define META_TOMB  1ull
#define SLOT_SIZE  32u
#define INLINE_MAX 20u
_Static_assert(SLOT_SIZE == 32 && INLINE_MAX + 12 == SLOT_SIZE, "slot layout");
#define READ_TRIES   64		  /* probes a writer may spoil before the lock */
#define READ_WAIT_NS (200 * 1000) /* longest wait for a transaction to end */

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

static inline uint64_t tdesc_make(uint64_t off, unsigned code)
{
	return off | ((uint64_t)code << 56);
}

static inline uint64_t tdesc_off(uint64_t d)
{
	return d & ((1ull << 56) - 1);
}

/* The slots of table @d, or 0 if its code is no table's: the one place a
 * tdesc's size is read (a peer may have written any code). */
static inline uint64_t tdesc_cap(uint64_t d)
{
	return table_code_cap((unsigned)(d >> 56));
}

/* The smallest code whose table holds @keys at most @num/@den full. */
static unsigned code_at_load(uint64_t keys, uint64_t num, uint64_t den)
{
	unsigned code = TABLE_CODE_MIN;

	while (table_code_cap(code) * num < keys * den && code < TABLE_CODE_MAX)
		code++;
	return code;
}

unsigned table_code_for(uint64_t keys)
{
	/* At most half full: room for as many keys again.  Saturated: no
	 * table has room for more than a quarter of UINT64_MAX keys. */
	return code_at_load(keys < UINT64_MAX / 4 ? keys : UINT64_MAX / 4, 1, 2);
}

unsigned table_code_grow(uint64_t keys)
{
	return code_at_load(keys < UINT64_MAX / 32 ? keys : UINT64_MAX / 32, 9, 16);
}

/*
 * The home slot of hash @h in a table of @cap slots: h * cap / 2^64, the
 * hash's top bits for a power of two.  Only the bits a slot's meta keeps
 * count (all but the low two), so that a key moved by its meta alone
 * (empty_slot) lands on the path its lookups take.  It is monotone in
 * @h, so keys in the order of their hashes' top bits (a bulk insert's
 * sort: insert_sorted and set.c's split) reach a table's slots front to
 * back whatever its capacity: a bucket of hashes [b, b + 2^(64-bits))
 * maps to homes [home(b), home(b + 2^(64-bits))], after the previous
 * bucket's.
 */
static inline uint64_t home(uint64_t h, uint64_t cap)
{
	return (uint64_t)(((unsigned __int128)(h & ~3ull) * cap) >> 64);
}

/* The slot after @i on a probe path, wrapping at @cap. */
static inline uint64_t next_slot(uint64_t i, uint64_t cap)
{
	return i + 1 == cap ? 0 : i + 1;
}

static inline struct tx_state *state(struct region *r)
{
	return tx_state(r);
}

/* --- slots ------------------------------------------------------------------ */
static uint8_t *view_table(const struct view *v, uint64_t tdesc, uint64_t *cap)
{
	*cap = tdesc_cap(tdesc);
	if (!*cap)
		return NULL;
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
	return view_heap(v, off, len);
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

/* Writes the body (all but the meta) of a private slot copy @src into the
 * shared slot @dst, word by word: lock-free readers may be reading it (and
 * will retry), so the stores are single atomic ones, as their loads are. */
static inline void slot_body_write(uint8_t *dst, const uint8_t *src)
{
	for (unsigned w = 1; w < SLOT_SIZE / 8; w++)
		prim_st64(dst + w * 8, prim_ld64(src + w * 8));
}

/*
 * Looks @key up in the table @tdesc, whose slots below @gone have been
 * moved to another table (they neither match nor take keys; an EMPTY one
 * still ends the probe: a table being drained gains no keys, so its probe
 * paths are intact).  Returns 1 (*pos: its slot), 0 (*ins: the first
 * reusable slot on its path, or UINT64_MAX; *ins_tomb: whether it was a
 * tombstone when probed), or -EUCLEAN.  At most one pass over the table,
 * whatever a peer writes into it meanwhile.  probe_walk also adds the slots
 * it looked at to *@walked (verification's budget); probe_at is it without.
 */
static inline __attribute__((always_inline)) int
probe_walk(const struct view *v, uint64_t tdesc, uint64_t gone, uint64_t h, const void *key,
	   size_t len, uint64_t *pos, uint64_t *ins, int *ins_tomb, uint64_t *walked)
{
	uint64_t cap, want = meta_of(h), n = 0;
	uint8_t *t;
	int res = 0;

	*ins = UINT64_MAX;
	*ins_tomb = 0;
	if (!tdesc)
		return 0;
	t = view_table(v, tdesc, &cap);
	if (!t || gone > cap)
		return -EUCLEAN;
	uint64_t i = home(h, cap);
	for (; n < cap; n++, i = next_slot(i, cap)) {
		const uint8_t *s = t + i * SLOT_SIZE;
		uint64_t m = prim_ld64(s);

		if (m == META_EMPTY) {
			if (*ins == UINT64_MAX)
				*ins = i;
			break;
		}
		if (i < gone)
			continue;
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
		if (!k) {
			res = -EUCLEAN;
			break;
		}
		if (prim_bytes_eq(k, key, len)) {
			*pos = i;
			res = 1;
			break;
		}
	}
	if (walked)
		*walked += n + 1;
	return res;
}

static int probe_at(const struct view *v, uint64_t tdesc, uint64_t gone, uint64_t h,
		    const void *key, size_t len, uint64_t *pos, uint64_t *ins, int *ins_tomb)
{
	return probe_walk(v, tdesc, gone, h, key, len, pos, ins, ins_tomb, NULL);
}

/* Looks @key up in both tables: 1 with *@pos in the current one (*@in_old
 * 0) or in the old one (1); 0 with *@ins, *@ins_tomb for the current one;
 * -EUCLEAN. */
static int find(const struct view *v, const struct tables *tb, uint64_t h, const void *key,
		size_t len, uint64_t *pos, int *in_old, uint64_t *ins, int *ins_tomb)
{
	uint64_t ins2;
	int tomb2;

	*in_old = 0;
	int res = probe_at(v, tb->cur, 0, h, key, len, pos, ins, ins_tomb);
	if (res || !tb->old)
		return res;
	res = probe_at(v, tb->old, tb->moved, h, key, len, pos, &ins2, &tomb2);
	*in_old = res == 1;
	return res;
}

/* find's answer alone, with the probes inlined: a lock-free lookup is a
 * few hundred instructions around one cache miss, and the call through
 * find and the insert position it does not need were a tenth of them. */
static inline __attribute__((always_inline)) int
lookup(const struct view *v, const struct tables *tb, const void *key, size_t len, uint64_t h)
{
	uint64_t pos, ins;
	int tomb;

	int res = probe_walk(v, tb->cur, 0, h, key, len, &pos, &ins, &tomb, NULL);
	if (res || !tb->old)
		return res;
	return probe_walk(v, tb->old, tb->moved, h, key, len, &pos, &ins, &tomb, NULL);
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

/*
 * Waits while a writer holds the sequence odd (a transaction lasts a few
 * microseconds at most: a resize moves its keys a step at a time), so a
 * reader falls back to the lock only when writers keep changing the set
 * under its probes, or when the sequence stays odd READ_WAIT_NS: a writer
 * died mid-transaction and the lock's owner-died path must repair.
 * Returns 0 with *@s even, or -EAGAIN.
 */
static int seq_wait(struct tx_state *st, uint64_t *s, uint64_t *deadline)
{
	for (unsigned spins = 1;; spins++) {
		*s = seq_begin(st);
		if (!(*s & 1))
			return 0;
		prim_cpu_relax();
		if (spins % 64 == 0) {
			uint64_t now = prim_mono_ns();
			if (!*deadline)
				*deadline = now + READ_WAIT_NS;
			else if (now > *deadline)
				return -EAGAIN;
		}
	}
}

/* The tables as the state names them, each word read once. */
static void tables_read(const struct tx_state *st, struct tables *tb)
{
	tb->cur = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
	tb->old = __atomic_load_n(&st->old_tdesc, __ATOMIC_RELAXED);
	tb->moved = __atomic_load_n(&st->moved, __ATOMIC_RELAXED);
}

int table_contains_optimistic(struct region *r, const void *key, size_t len)
{
	return table_contains_optimistic_h(r, key, len, hash_bytes(r->seed, key, len));
}

int table_contains_optimistic_h(struct region *r, const void *key, size_t len, uint64_t h)
{
	struct tx_state *st = state(r);
	uint64_t deadline = 0, s;

	for (int tries = 0; tries < READ_TRIES; tries++) {
		if (seq_wait(st, &s, &deadline))
			return -EBUSY;
		struct view v;
		struct tables tb;
		view_region(&v, r, __atomic_load_n(&st->brk, __ATOMIC_RELAXED));
		tables_read(st, &tb);
		int res = lookup(&v, &tb, key, len, h);
		if (!seq_retry(st, s))
			return res;
	}
	return -EAGAIN;
}

void table_prefetch(struct region *r, uint64_t h)
{
	uint64_t d = __atomic_load_n(&state(r)->tdesc, __ATOMIC_RELAXED);
	uint64_t cap = tdesc_cap(d);

	/* A hint only: any address inside the mapping will do (a prefetch
	 * never faults, and a hole is simply not fetched). */
	if (!d || !cap)
		return;
	uint64_t at = tdesc_off(d) + home(h, cap) * SLOT_SIZE;
	if (at < r->map_size - SLOT_SIZE)
		__builtin_prefetch(r->base + at, 1);
}

/* The slots of table @tdesc if it lies inside the file, else 0. */
static uint64_t table_slots(struct region *r, uint64_t tdesc)
{
	uint64_t cap = tdesc_cap(tdesc);
	if (!cap)
		return 0;
	if (tdesc_off(tdesc) < r->heap_off || region_check(r, tdesc_off(tdesc), cap * SLOT_SIZE))
		return 0;
	return cap;
}

/*
 * A resize's new table is a hole that inserts and moved keys fill page by
 * page; on a virtual machine each first touch of a page costs about 5 us
 * (a trap, an allocation, zeroing), mostly with the shard's lock held.
 * Faulting the pages in with MADV_POPULATE_WRITE costs under 1 us each.
 * So the handle's filler thread (filler.c) faults in the table being
 * filled, POPULATE_STEP bytes at a time, front to back.  Without that
 * thread the writer faults in the next step after each write, outside the
 * lock: a table of 2^k slots (32 bytes each) is done after 2^k / 2048
 * writes to its shard, by when its inserts have touched at most one page
 * in 16; but each step costs the add that takes it tens of microseconds,
 * a few adds in a thousand (an add p99.99 of 147-180 us on a freshly
 * booted virtual machine).  A hint only: the table is the one this process's last commit
 * left being filled, still named by the state and checked inside the
 * file; if it has been replaced meanwhile, a freed range is faulted in
 * (memory until it is reused, never content).  Other processes map the
 * pages for themselves, with fault-around (16 pages a trap) as they exist.
 */
#define POPULATE_STEP (64u * 1024)

/* Kernels before 5.14 refuse MADV_POPULATE_WRITE: they fault pages in as
 * they are written, as before. */
static int populate_unsupported;

int table_populate_range(struct region *r, uint64_t want, uint64_t *lo, uint64_t *hi)
{
	struct tx_state *st = state(r);

	/* The table is the one this process's last commit filled, not what
	 * the state says now: a peer's state that no transaction accepts must
	 * not make writes fault in the file 64 KiB at a time.  The state only
	 * says whether that resize still runs. */
	if (!want || r->readonly || __atomic_load_n(&populate_unsupported, __ATOMIC_RELAXED) ||
	    !__atomic_load_n(&st->old_tdesc, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED) != want)
		return 0;
	uint64_t cap = table_slots(r, want);
	if (!cap || cap * SLOT_SIZE < 2 * POPULATE_STEP)
		return 0;
	/* Whole pages (madvise's unit): the first and last may be shared
	 * with the blocks next to the table, which is harmless. */
	*lo = tdesc_off(want) & ~(uint64_t)(REGION_PAGE - 1);
	*hi = (tdesc_off(want) + cap * SLOT_SIZE + REGION_PAGE - 1) & ~(uint64_t)(REGION_PAGE - 1);
	return 1;
}

int table_populate_step(struct region *r, uint64_t want, uint64_t *done)
{
	uint64_t lo, hi;

	if (!table_populate_range(r, want, &lo, &hi))
		return 0;
	uint64_t at = __atomic_load_n(done, __ATOMIC_RELAXED);
	if (at >= hi - lo)
		return 0;
	uint64_t len = hi - lo - at < POPULATE_STEP ? hi - lo - at : POPULATE_STEP;
	__atomic_store_n(done, at + len, __ATOMIC_RELAXED);
	/* EINTR or EFAULT leave pages to be faulted in when written. */
	if (madvise(r->base + lo + at, len, MADV_POPULATE_WRITE) < 0 && errno == EINVAL) {
		__atomic_store_n(&populate_unsupported, 1, __ATOMIC_RELAXED);
		return 0;
	}
	return at + len < hi - lo;
}

void table_populate_ahead(struct region *r)
{
	table_populate_step(r, __atomic_load_n(&r->pop_want, __ATOMIC_RELAXED), &r->pop_done);
}

/* A count is believable only if the tables it describes could hold it:
 * no more keys than slots, in tables that lie inside the file.  So no
 * caller is ever told of more keys than the region has room for. */
static long long count_checked(struct region *r, const struct tables *tb, uint64_t count)
{
	if (!tb->cur)
		return count || tb->old ? -EUCLEAN : 0;
	uint64_t cap = table_slots(r, tb->cur), ocap = tb->old ? table_slots(r, tb->old) : 0;
	if (!cap || (tb->old && !ocap) || tb->moved > ocap || count > cap + ocap)
		return -EUCLEAN;
	return (long long)count;
}

long long table_count_optimistic(struct region *r)
{
	struct tx_state *st = state(r);
	uint64_t deadline = 0, s;

	for (int tries = 0; tries < READ_TRIES; tries++) {
		if (seq_wait(st, &s, &deadline))
			return -EBUSY;
		struct tables tb;
		uint64_t c = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
		tables_read(st, &tb);
		if (!seq_retry(st, s))
			return count_checked(r, &tb, c);
	}
	return -EAGAIN;
}

long long table_count_shards_optimistic(struct region *r, struct region **busy)
{
	unsigned n = r->nshards;
	uint64_t s1[REGION_SHARDS_MAX];

	*busy = r;
	if (n == 1)
		return table_count_optimistic(r);
	for (int tries = 0; tries < READ_TRIES; tries++) {
		long long sum = 0;
		int same = 1;
		for (unsigned i = 0; i < n; i++)
			s1[i] = seq_begin(state(r->shard[i]));
		for (unsigned i = 0; i < n; i++) {
			long long c = table_count_optimistic(r->shard[i]);
			if (c < 0) {
				*busy = r->shard[i];
				return c;
			}
			sum += c;
		}
		/* Every shard even and unchanged from before the first count
		 * to after the last: at the moment between the two passes
		 * the counts were all true at once, and no transaction over
		 * several shards was half published (each keeps its shards
		 * odd until all are). */
		SEQ_FENCE();
		for (unsigned i = 0; i < n; i++)
			if ((s1[i] & 1) ||
			    __atomic_load_n(&state(r->shard[i])->seq, __ATOMIC_RELAXED) != s1[i])
				same = 0;
		if (same)
			return sum;
	}
	return -EAGAIN;
}

long long table_count_locked(struct region *r)
{
	struct tables tb;
	uint64_t c = __atomic_load_n(&state(r)->count, __ATOMIC_RELAXED);

	tables_read(state(r), &tb);
	return count_checked(r, &tb, c);
}

int table_contains_locked(struct region *r, const void *key, size_t len)
{
	return table_contains_locked_h(r, key, len, hash_bytes(r->seed, key, len));
}

int table_contains_locked_h(struct region *r, const void *key, size_t len, uint64_t h)
{
	struct view v;
	struct tables tb;

	view_region(&v, r, __atomic_load_n(&state(r)->brk, __ATOMIC_RELAXED));
	tables_read(state(r), &tb);
	return lookup(&v, &tb, key, len, h);
}

/* --- mutations ------------------------------------------------------------- */

int table_begin(struct tx *x)
{
	uint64_t cap = x->tdesc ? tdesc_cap(x->tdesc) : 0;
	uint64_t ocap = x->old_tdesc ? tdesc_cap(x->old_tdesc) : 0;

	/* A table being drained needs a table to drain into; a table needs a
	 * code that is a table's. */
	if ((x->tdesc && !cap) || (x->old_tdesc && !ocap) || x->count + x->tombs > cap + ocap ||
	    x->count + x->tombs < x->count || x->tombs > cap || (x->old_tdesc && !x->tdesc) ||
	    x->moved > ocap)
		return -EUCLEAN;
	return 0;
}

uint64_t table_tx_count(const struct tx *x)
{
	return x->count;
}

static inline int cur_fresh(const struct tx *x)
{
	return x->fresh && x->tdesc == x->fresh_tdesc;
}

static int slot_write_prepare(struct tx *x, uint64_t slot_off)
{
	if (cur_fresh(x))
		return 0;
	return tx_log(x, slot_off);
}

/*
 * Random keys under the keyed hash displace about 4 slots on average at
 * the highest load, and with linear probing the total displacement of a
 * table's keys does not depend on the order they went in.  So slots walked
 * beyond PROBE_BUDGET per slot of a table, by placements or by
 * verification, can only be keys crafted to collide (a peer rewrote the
 * metas they are placed by): reported, not walked, since a cluster of a
 * million would take 10^12 steps with the lock held.
 */
#define PROBE_BUDGET 64u

/* The first EMPTY slot of table @t (@cap slots) on the probe path of
 * meta @m (its home is the hash's: home()).  The table is shared memory
 * a peer can fill meanwhile, so the probe stops after one pass: -EUCLEAN.
 * With @left, also once the slots walked use that up. */
static int empty_slot(const uint8_t *t, uint64_t cap, uint64_t m, uint64_t *at, uint64_t *left)
{
	uint64_t i = home(m, cap);

	for (uint64_t n = 0; prim_ld64(t + i * SLOT_SIZE) != META_EMPTY; n++) {
		if (n + 1 >= cap || (left && !(*left)--))
			return -EUCLEAN;
		i = next_slot(i, cap);
	}
	*at = i;
	return 0;
}

/* Places a private copy of a slot (32 bytes) into an EMPTY slot of table
 * @t (within *@left slots walked): body first, then the meta (release)
 * that makes it visible. */
static int place(uint8_t *t, uint64_t cap, const uint8_t *slot, uint64_t *left)
{
	uint64_t i;
	int err = empty_slot(t, cap, prim_ld64(slot), &i, left);

	if (err)
		return err;
	slot_body_write(t + i * SLOT_SIZE, slot);
	__atomic_store_n((uint64_t *)(t + i * SLOT_SIZE), prim_ld64(slot), __ATOMIC_RELEASE);
	return 0;
}

/* Tables this big are zeroed by punching their range. */
#define PUNCH_ZERO_MIN (64u * 1024)

static inline uint64_t table_bytes(unsigned code)
{
	return table_code_cap(code) * SLOT_SIZE;
}

/* The bytes of a table of @bytes to allocate and map in one go before it
 * is written whole: none for a small one, which new_table zeroed with
 * stores and so already faulted in. */
static inline uint64_t fill_bytes(uint64_t bytes)
{
	return bytes >= PUNCH_ZERO_MIN ? bytes : 0;
}

/* A new, zeroed table of code @code (a valid one: table_code_for's). */
static int new_table(struct tx *x, unsigned code, uint64_t *off)
{
	int err = alloc_get(x, alloc_class(table_bytes(code)), 1, off);

	if (err)
		return err;
	uint8_t *nt = view_heap(&x->v, *off, table_bytes(code));
	if (!nt)
		return -EUCLEAN;
	tx_touch(x);
	/* Zero pages without writing them where that is cheaper; memory past
	 * the committed brk or in a free table is no committed state's (a
	 * popped table's first word, its free-list link, was logged by
	 * alloc_get).  A small one is zeroed word by word with atomic stores:
	 * a reader still probing a table freed under it may read it. */
	if (table_bytes(code) < PUNCH_ZERO_MIN || region_punch(x->r, *off, table_bytes(code)))
		for (uint64_t w = 0; w < table_bytes(code) / 8; w++)
			prim_st64(nt + w * 8, 0);
	CRASH_POINT("resize: new table cleared");
	return 0;
}

/* The keys of table @tdesc from slot @from on, into table @nt, keeping
 * those @keep says 1 to and freeing the blocks of the others; the slots
 * their placements walk count against *@left. */
static int rebuild_from(struct tx *x, uint64_t tdesc, uint64_t from, uint8_t *nt, uint64_t ncap,
			int (*keep)(const void *k, size_t len, void *arg), void *arg,
			uint64_t *kept, uint64_t *kbytes, uint64_t *abytes, uint64_t *left)
{
	uint64_t cap;
	uint8_t *ot = view_table(&x->v, tdesc, &cap);
	int err;

	if (!ot || from > cap)
		return -EUCLEAN;
	for (uint64_t i = from; i < cap; i++) {
		uint8_t s[SLOT_SIZE] __attribute__((aligned(8)));
		slot_read(s, ot + i * SLOT_SIZE);
		if (!is_live(prim_ld64(s)))
			continue;
		uint32_t len;
		const uint8_t *k = slot_key(&x->v, s, &len);
		if (!k || *kept + 1 > ncap / 2 + 1)
			return -EUCLEAN;
		int yes = keep ? keep(k, len, arg) : 1;
		if (yes < 0)
			return yes;
		if (yes) {
			err = place(nt, ncap, s, left);
			if (err)
				return err;
			CRASH_POINT("resize: slot moved");
			++*kept;
			*kbytes += len;
			if (len > INLINE_MAX)
				*abytes += alloc_class_bytes(alloc_key_class(len));
		} else if (len > INLINE_MAX) {
			err = alloc_put(x, prim_ld64(s + 16), alloc_key_class(len), 0);
			if (err)
				return err;
		}
	}
	return alloc_put(x, tdesc_off(tdesc), alloc_class(cap * SLOT_SIZE), 1);
}

/*
 * Moves, in this one transaction, the live keys of both tables for which
 * @keep says 1 into a fresh table sized for max(@keys, kept); frees the
 * blocks of the others and the old tables.  For operations that visit
 * every key anyway (set algebra, big batches); growth is incremental.
 */
static int rebuild(struct tx *x, uint64_t keys, int (*keep)(const void *k, size_t len, void *arg),
		   void *arg)
{
	uint64_t off, kept = 0, kbytes = 0, abytes = 0;
	int err;

	if (x->cleared)
		return -EINVAL;
	/* Its key blocks freed from now on go to the free queue (alloc_put). */
	x->bulk = 1;
	if (keys < x->count)
		keys = x->count;
	unsigned code = table_code_for(keys);
	uint64_t ncap = table_code_cap(code);
	err = new_table(x, code, &off);
	if (err)
		return err;
	uint8_t *nt = view_heap(&x->v, off, table_bytes(code));
	/* Every page of it is about to be written: allocate and map them
	 * with two calls instead of one trap each (tables for a million
	 * keys, 48 MiB, are 12,288 pages).  Best effort.  A load has a
	 * helper thread do it, ahead of its inserts (fill_later). */
	if (fill_bytes(table_bytes(code)) && !x->fill_later)
		region_fill(x->r, off, table_bytes(code));
	/* The new table holds only the keys placed here. */
	uint64_t left = PROBE_BUDGET * ncap;
	if (x->tdesc)
		err = rebuild_from(x, x->tdesc, 0, nt, ncap, keep, arg, &kept, &kbytes, &abytes,
				   &left);
	if (!err && x->old_tdesc)
		err = rebuild_from(x, x->old_tdesc, x->moved, nt, ncap, keep, arg, &kept, &kbytes,
				   &abytes, &left);
	if (err)
		return err;
	x->tdesc = tdesc_make(off, code);
	x->old_tdesc = 0;
	x->moved = 0;
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
	if (cur_fresh(x) && !x->old_tdesc) {
		uint64_t cap = tdesc_cap(x->tdesc);
		if ((x->count + keys) * 4 <= cap * 3)
			return 0;
	}
	return rebuild(x, x->count + keys, NULL, NULL);
}

int table_fill_span(struct tx *x, uint64_t *off, uint64_t *len)
{
	*off = 0;
	*len = 0;
	if (!x->tdesc)
		return -EUCLEAN;
	uint64_t o = tdesc_off(x->tdesc), l = tdesc_cap(x->tdesc) * SLOT_SIZE;
	if (!view_heap(&x->v, o, l))
		return -EUCLEAN;
	*len = fill_bytes(l);
	*off = *len ? o : 0;
	return 0;
}

/* --- incremental resizing -------------------------------------------------- */

/*
 * A table that must grow (or shrink, or shed tombstones) is replaced by a
 * new one, and its keys move over a few at a time: every insert and remove
 * first moves the live keys of the next few slots of the old table
 * (move_step), so no operation holds the lock for more than a bounded
 * piece of a resize whatever the set's size.  Meanwhile a key is in
 * exactly one table: lookups probe the new one, then the old one above
 * `moved`; inserts go to the new one; removes tombstone whichever holds
 * the key.  The old table gains no keys, so its probe paths stay intact
 * and its moved slots need not even be written.  A moved key keeps its
 * block.
 *
 * The new table is zeroed by punching its range (the kernel hands back
 * zero pages as they are touched), not by writing it: a memset of a large
 * table would be the pause this avoids.  Moving a key writes only the
 * EMPTY slot it lands in, whose meta is logged unless the new table is
 * this transaction's own.  A new table of N slots starts at most 9/16
 * full (a grown one, table_code_grow; others half full), so 3/16 of it
 * (3N/16 - 1 operations) must fill before it needs to grow, while the old
 * one of O slots drains MOVE_STEP slots per operation times ceil(O/N) (at
 * most 8: resize_start keeps N >= O/8), so in at most
 * O / (MOVE_STEP * ceil(O/N)) <= N/16 operations: 3 times faster than
 * needed from 1,024 slots up (at least twice for smaller tables, whose
 * steps round up), whatever the ratio of the two capacities (a grown
 * table is 4/3 to 3/2 times the old one).  Should a grow
 * come first anyway (batches skip steps the log cannot hold), the rest of
 * the old table is moved then, in that one transaction.  A small step also
 * bounds the first-touch page faults of the new table that one operation
 * pays (a grown table receives a step's keys on up to twice as many
 * slots).
 */
#define MOVE_STEP 16u
/* Tables this big or bigger shrink (table_shrink). */
#define SHRINK_MIN_LOG2 10u

/* Moves the live keys of up to @budget more slots of the old table, the
 * slots their placements walk counted against *@left (NULL: a table that
 * takes inserts meanwhile, where the old table's keys are not all it
 * holds). */
static int move_some(struct tx *x, uint64_t budget, uint64_t *left)
{
	uint64_t ocap, ncap;
	int err;

	if (!x->old_tdesc)
		return 0;
	uint8_t *ot = view_table(&x->v, x->old_tdesc, &ocap);
	uint8_t *nt = view_table(&x->v, x->tdesc, &ncap);
	if (!ot || !nt || x->moved > ocap)
		return -EUCLEAN;
	uint64_t end = ocap - x->moved < budget ? ocap : x->moved + budget;
	int fresh = cur_fresh(x);
	for (uint64_t i = x->moved; i < end; i++) {
		uint8_t s[SLOT_SIZE] __attribute__((aligned(8)));
		slot_read(s, ot + i * SLOT_SIZE);
		uint64_t m = prim_ld64(s), j;
		if (!is_live(m))
			continue;
		err = empty_slot(nt, ncap, m, &j, left);
		if (!err && !fresh)
			err = tx_log(x, tdesc_off(x->tdesc) + j * SLOT_SIZE);
		if (err)
			return err;
		tx_touch(x);
		slot_body_write(nt + j * SLOT_SIZE, s);
		__atomic_store_n((uint64_t *)(nt + j * SLOT_SIZE), m, __ATOMIC_RELEASE);
		CRASH_POINT("move: key moved");
	}
	x->moved = end;
	if (end < ocap)
		return 0;
	err = alloc_put(x, tdesc_off(x->old_tdesc), alloc_class(ocap * SLOT_SIZE), 1);
	if (err)
		return err;
	x->old_tdesc = 0;
	x->moved = 0;
	return 0;
}

/* One step of a resize in progress, if the log has room for it (a batch
 * may not: the step waits for the next transaction). */
static int move_step(struct tx *x)
{
	if (!x->old_tdesc)
		return 0;
	/* table_begin checked both codes; a 0 here would divide by it. */
	uint64_t ocap = tdesc_cap(x->old_tdesc), ncap = tdesc_cap(x->tdesc);
	if (!ocap || !ncap)
		return -EUCLEAN;
	uint64_t ratio = (ocap + ncap - 1) / ncap;
	uint64_t budget = MOVE_STEP * (ratio < 8 ? ratio : 8);
	if (tx_log_room(x) < 2 * budget)
		return 0;
	return move_some(x, budget, NULL);
}

/* Starts replacing the current table by one of code @code (or bigger,
 * below, unless the caller moves every key @at_once); the rest of a
 * resize in progress is finished first. */
static int resize_start(struct tx *x, unsigned code, int at_once)
{
	uint64_t off;
	int err = move_some(x, UINT64_MAX, NULL);

	if (err)
		return err;
	/* At most 8 times smaller than the table it replaces: the steps that
	 * drain the old table must outpace the inserts that could fill the
	 * new one (3/16 of it).  The capacities hold cap/8 of each
	 * (12 codes below), so this stops at exactly 8 times smaller. */
	uint64_t ocap = x->tdesc ? tdesc_cap(x->tdesc) : 0;
	while (!at_once && table_code_cap(code) * 8 < ocap && code < TABLE_CODE_MAX)
		code++;
	err = new_table(x, code, &off);
	if (err)
		return err;
	x->old_fresh = cur_fresh(x);
	x->old_tdesc = x->tdesc;
	x->moved = 0;
	x->tdesc = tdesc_make(off, code);
	x->tombs = 0;
	x->fresh = 1;
	x->fresh_tdesc = x->tdesc;
	x->st->n_resizes++;
	return 0;
}

static int insert_hashed(struct tx *x, const void *key, size_t len, uint64_t h)
{
	struct tables tb;
	uint64_t pos, ins, cap;
	int err, was_tomb, in_old;

	if (len > SHSET_KEY_MAX || x->cleared)
		return -EINVAL;
	err = move_step(x);
	if (err)
		return err;
	tb = (struct tables){x->tdesc, x->old_tdesc, x->moved};
	err = find(&x->v, &tb, h, key, len, &pos, &in_old, &ins, &was_tomb);
	if (err)
		return err < 0 ? err : 0;
	cap = x->tdesc ? tdesc_cap(x->tdesc) : 0;
	/* Reusing a tombstone does not fill the table any further.  Keys
	 * still in the old table count as if they were here already. */
	uint64_t filled = x->count + x->tombs + (was_tomb ? 0 : 1);
	if (filled * 4 > cap * 3) {
		/* Full of live keys: grow (table_code_grow).  Filled by
		 * tombstones, with keys that would fit it 9/16 full: rebuild
		 * at half load, or churn at a steady size would rebuild twice
		 * as often (3/16 of the table between rebuilds, not 1/4). */
		unsigned code = x->count * 16 > cap * 9 ? table_code_grow(x->count)
							: table_code_for(x->count + 1);
		err = resize_start(x, code, 0);
		/* Out of room for a bigger table: fill this one up to 7/8
		 * before refusing. */
		if (err == -ENOSPC && !x->old_tdesc && filled * 8 <= cap * 7)
			err = 0;
		else if (err)
			return err;
		err = probe_at(&x->v, x->tdesc, 0, h, key, len, &pos, &ins, &was_tomb);
		if (err)
			return err < 0 ? err : -EUCLEAN;
	}
	if (ins == UINT64_MAX)
		return -EUCLEAN; /* a 3/4-full table always has room */
	uint64_t cap2;
	uint8_t *t = view_table(&x->v, x->tdesc, &cap2);
	if (!t || ins >= cap2)
		return -EUCLEAN;
	uint8_t *s = t + ins * SLOT_SIZE;
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
		memcpy(x->r->base + blk, key, len);
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

int table_insert(struct tx *x, const void *key, size_t len)
{
	return insert_hashed(x, key, len, hash_bytes(x->v.seed, key, len));
}

int table_insert_h(struct tx *x, const void *key, size_t len, uint64_t h)
{
	return insert_hashed(x, key, len, h);
}

/* --- bulk inserts ----------------------------------------------------------- */

/* Keys hashed, and their home slots fetched, this far ahead of the insert
 * that needs them: a batch into a big table then waits for memory once per
 * PREFETCH_AHEAD keys' worth of misses instead of once per key. */
#define PREFETCH_AHEAD 8u

/* Batches this big are inserted in the order of their home slots. */
#define SORT_MIN  4096u
#define SORT_BITS 16u

/*
 * A big batch is hashed first and inserted in the order of the keys' home
 * slots (a counting sort on the hash's top bits), so the table is written
 * front to back: the misses, TLB misses and first-touch faults of random
 * slots in a table far bigger than the caches (a load's 48 MiB for 10^6
 * keys) become a sequential sweep.  Any order gives the same set.
 */
/* Where a batch's keys are: arrays of pointers and lengths, or records
 * { u32 len; bytes } one after another (a snapshot's body, checked by its
 * reader).  Read front to back, twice. */
struct key_src {
	const void *const *keys;
	const size_t *lens;
	const uint8_t *recs;
	size_t recs_len, n, i, pos;
};

static int src_next(struct key_src *src, const void **key, size_t *len)
{
	if (src->i >= src->n)
		return 0;
	if (!src->recs) {
		*key = src->keys[src->i] ? src->keys[src->i] : "";
		*len = src->lens[src->i++];
		return 1;
	}
	const uint8_t *k;
	if (snap_next(src->recs, src->recs_len, &src->pos, &k, len) != 1)
		return -EINVAL; /* fewer records than n, or a bad one */
	*key = k;
	src->i++;
	return 1;
}

/* Scratch memory for a big batch, faulted in with one call (a million
 * keys need 40 MB of it: 10,240 page faults one by one). */
static void *scratch_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

_Static_assert(sizeof(((struct table_rec *)0)->k) == INLINE_MAX, "a record holds an inline key");

/*
 * A record with an inline key into the table this transaction made
 * (cur_fresh), with no old one being drained (the caller checks):
 * nothing committed refers to it, so no slot is logged, and while it
 * stays at most 3/4 full no resize is due.  The probe and the write are
 * insert_hashed's without its per-key checks (a third of a load's insert
 * time).  1 added, 0 there already, or 2: insert_hashed's to do (a long
 * key, a table full enough to grow, a tombstone on the path: adds leave
 * none in a fresh table, a peer writing into it may).  @t: the table's
 * @cap slots, checked.
 */
static int insert_fresh(struct tx *x, uint8_t *t, uint64_t cap, const struct table_rec *r)
{
	uint64_t want = meta_of(r->h), i = home(r->h, cap);
	uint32_t len = r->len;

	if (len > INLINE_MAX || (x->count + x->tombs + 1) * 4 > cap * 3)
		return 2;
	for (uint64_t n = 0; n < cap; n++, i = next_slot(i, cap)) {
		uint8_t *s = t + i * SLOT_SIZE;
		uint64_t m = prim_ld64(s);
		if (m == META_EMPTY) {
			tx_touch(x);
			prim_st32(s + 8, len);
			memcpy(s + 12, r->k, len);
			__atomic_store_n((uint64_t *)s, want, __ATOMIC_RELEASE);
			CRASH_POINT("insert: slot published (fresh table)");
			x->count++;
			x->key_bytes += len;
			return 1;
		}
		if (m == META_TOMB)
			return 2;
		if (m == want && prim_ld32(s + 8) == len && memcmp(s + 12, r->k, len) == 0)
			return 0;
	}
	return 2;
}

long long table_insert_recs(struct tx *x, const struct table_rec *rec, size_t n)
{
	uint64_t cap, d = x->tdesc;
	uint8_t *t = view_table(&x->v, d, &cap);
	long long added = 0;

	for (size_t o = 0; o < n; o++) {
		/* An insert_hashed below may have started a resize. */
		if (x->tdesc != d) {
			d = x->tdesc;
			t = view_table(&x->v, d, &cap);
		}
		/* A bucket's slots are new to the caches, and a long key's
		 * bytes are where the caller put them: fetch both ahead. */
		if (o + PREFETCH_AHEAD < n) {
			const struct table_rec *a = &rec[o + PREFETCH_AHEAD];
			if (t)
				__builtin_prefetch(t + home(a->h, cap) * SLOT_SIZE, 1);
			if (a->len > INLINE_MAX)
				__builtin_prefetch(table_rec_key(a));
		}
		int r = 2;
		if (t && cur_fresh(x) && !x->old_tdesc && !x->cleared)
			r = insert_fresh(x, t, cap, &rec[o]);
		if (r == 2)
			r = insert_hashed(x, table_rec_key(&rec[o]), rec[o].len, rec[o].h);
		if (r < 0)
			return r;
		added += r;
	}
	return added;
}

static long long insert_sorted(struct tx *x, struct key_src *src)
{
	struct table_rec *rec = scratch_alloc(src->n * sizeof(*rec));
	uint64_t *hs = scratch_alloc(src->n * sizeof(*hs));
	uint32_t *start = calloc((1u << SORT_BITS) + 1, sizeof(*start));
	size_t n = src->n, len;
	const void *key;
	long long added = 0;

	if (!rec || !hs || !start) {
		added = -ENOMEM;
		goto out;
	}
	/* Buckets of about 1024 slots (32 KiB of table): inside one, the
	 * order does not matter, and fewer buckets scatter faster.  The
	 * buckets follow the homes in any capacity (home() is monotone). */
	uint64_t cap = x->tdesc ? tdesc_cap(x->tdesc) : 0;
	unsigned l2 = cap ? 63 - (unsigned)__builtin_clzll(cap) : 4, bits = SORT_BITS;
	if (l2 < bits + 10)
		bits = l2 > 10 ? l2 - 10 : 1;
	for (size_t i = 0; i < n; i++) {
		if (src_next(src, &key, &len) != 1) {
			added = -EINVAL;
			goto out;
		}
		hs[i] = hash_bytes(x->v.seed, key, len);
		start[(hs[i] >> (64 - bits)) + 1]++;
	}
	for (uint32_t b = 0; b < 1u << bits; b++)
		start[b + 1] += start[b];
	src->i = src->pos = 0;
	for (size_t i = 0; i < n; i++) {
		src_next(src, &key, &len);
		table_rec_fill(&rec[start[hs[i] >> (64 - bits)]++], key, len, hs[i]);
	}
	added = table_insert_recs(x, rec, n);
out:
	if (rec)
		munmap(rec, n * sizeof(*rec));
	if (hs)
		munmap(hs, n * sizeof(*hs));
	free(start);
	return added;
}

long long table_insert_records(struct tx *x, const uint8_t *recs, size_t len, size_t n)
{
	struct key_src src = {.recs = recs, .recs_len = len, .n = n};
	const void *key;
	size_t kl;
	long long added = 0;

	if (n >= SORT_MIN && n <= UINT32_MAX)
		return insert_sorted(x, &src);
	for (int r; (r = src_next(&src, &key, &kl)) != 0; added += r) {
		if (r > 0)
			r = table_insert(x, key, kl);
		if (r < 0)
			return r;
	}
	return added;
}

long long table_insert_many(struct tx *x, const void *const *keys, const size_t *lens, size_t n)
{
	uint64_t hs[PREFETCH_AHEAD];
	long long added = 0;

	if (n >= SORT_MIN && n <= UINT32_MAX) {
		struct key_src src = {.keys = keys, .lens = lens, .n = n};
		return insert_sorted(x, &src);
	}

	for (size_t i = 0; i < n + PREFETCH_AHEAD; i++) {
		/* Key i - PREFETCH_AHEAD first: key i takes its hash's place. */
		if (i >= PREFETCH_AHEAD) {
			size_t j = i - PREFETCH_AHEAD;
			int r = insert_hashed(x, keys[j] ? keys[j] : "", lens[j],
					      hs[j % PREFETCH_AHEAD]);
			if (r < 0)
				return r;
			added += r;
		}
		if (i < n) {
			const void *k = keys[i] ? keys[i] : "";
			uint64_t h = hash_bytes(x->v.seed, k, lens[i]), cap;
			const uint8_t *t = view_table(&x->v, x->tdesc, &cap);
			hs[i % PREFETCH_AHEAD] = h;
			if (t)
				__builtin_prefetch(t + home(h, cap) * SLOT_SIZE, 1);
		}
	}
	return added;
}

/* Turns slot @i of table @tdesc (the current one, or the old one being
 * drained, whose tombstones nobody counts) into a tombstone and frees its
 * key, whose length the caller has read (once) as @len. */
static int remove_at(struct tx *x, uint64_t tdesc, uint64_t i, uint32_t len)
{
	uint64_t cap;
	uint8_t *t = view_table(&x->v, tdesc, &cap);
	int cur = tdesc == x->tdesc, err;

	if (!t || i >= cap || len > SHSET_KEY_MAX)
		return -EUCLEAN;
	uint8_t *s = t + i * SLOT_SIZE;
	uint64_t off = tdesc_off(tdesc) + i * SLOT_SIZE;
	/* An old table this transaction allocated (it started shrinking a
	 * fresh one) needs no log either. */
	err = cur ? slot_write_prepare(x, off) : x->old_fresh ? 0 : tx_log(x, off);
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
	x->key_bytes -= len;
	if (cur)
		x->tombs++;
	return 1;
}

/* After removes: a table at most 3/32 full starts shrinking (like growth,
 * incrementally).  A table grows when 3/4 full, so it holds at least 3/8
 * of its slots' worth of keys at its peak: a set that lost 3/4 of its
 * keys since then shrinks.  The new table is the smallest with the keys
 * at half load, at most 3/16 of this one's slots rounded up to a
 * capacity: a quarter of it at most (cap/4, 8 codes below, is one), so a
 * shrink makes the table 4 to 8 times smaller (resize_start).  Optional:
 * no room, no shrink. */
int table_shrink(struct tx *x, uint64_t removed)
{
	uint64_t cap = x->tdesc ? tdesc_cap(x->tdesc) : 0;

	if (x->old_tdesc || cap < (1ull << SHRINK_MIN_LOG2) || x->count * 32 > cap * 3)
		return 0;
	/* Removes that freed an eighth of the old table's slots pay for
	 * going through all of it: the old table goes back now, before a
	 * next batch needs its memory for a table of its own, and the new
	 * one can be as small as the keys left need. */
	int at_once = removed >= cap / 8;
	int err = resize_start(x, table_code_for(x->count), at_once);
	if (err)
		return err == -ENOSPC ? 0 : err;
	if (!at_once)
		return 0;
	/* The new table holds only the keys moved now. */
	uint64_t left = PROBE_BUDGET * tdesc_cap(x->tdesc);
	return move_some(x, UINT64_MAX, &left);
}

int table_remove(struct tx *x, const void *key, size_t len)
{
	return table_remove_h(x, key, len, hash_bytes(x->v.seed, key, len));
}

int table_remove_h(struct tx *x, const void *key, size_t len, uint64_t h)
{
	int res = table_remove_many_h(x, key, len, h);
	if (res <= 0)
		return res;
	int err = table_shrink(x, 1);
	return err ? err : res;
}

int table_remove_many_h(struct tx *x, const void *key, size_t len, uint64_t h)
{
	struct tables tb;
	uint64_t pos, ins;
	int res, in_old, tomb;

	if (len > SHSET_KEY_MAX)
		return 0;
	res = move_step(x);
	if (res)
		return res;
	tb = (struct tables){x->tdesc, x->old_tdesc, x->moved};
	res = find(&x->v, &tb, h, key, len, &pos, &in_old, &ins, &tomb);
	if (res <= 0)
		return res;
	return remove_at(x, in_old ? x->old_tdesc : x->tdesc, pos, (uint32_t)len);
}

/*
 * Whether a batch removes every key: then it is a clear, which logs
 * nothing and needs no new table (a batch the log cannot hold otherwise
 * runs on a fresh table beside the old one, for which a full set has no
 * room).  The records go into a private index by meta (the hash without
 * its two low bits, as slots keep it); each live slot of both tables must
 * find its key there.  Bounded by the tables' capacities and the index's
 * size, whatever a peer writes.
 */
static int all_in_table(struct tx *x, uint64_t tdesc, uint64_t from, const struct table_rec *rec,
			const uint32_t *idx, uint64_t mask)
{
	uint64_t cap;
	const uint8_t *t = view_table(&x->v, tdesc, &cap);

	if (!t || from > cap)
		return -EUCLEAN;
	for (uint64_t i = from; i < cap; i++) {
		uint8_t sl[SLOT_SIZE] __attribute__((aligned(8)));
		slot_read(sl, t + i * SLOT_SIZE);
		uint64_t m = prim_ld64(sl);
		if (!is_live(m))
			continue;
		uint32_t len;
		const uint8_t *k = slot_key(&x->v, sl, &len);
		if (!k)
			return -EUCLEAN;
		uint64_t j = (m >> 2) & mask;
		for (uint64_t probes = 0;; probes++, j = (j + 1) & mask) {
			if (probes > mask || !idx[j])
				return 0; /* a key the batch does not remove */
			const struct table_rec *r = &rec[idx[j] - 1];
			if (meta_of(r->h) == m && r->len == len &&
			    memcmp(table_rec_key(r), k, len) == 0)
				break;
		}
	}
	return 1;
}

int table_all_in(struct tx *x, const struct table_rec *rec, size_t n)
{
	if (x->cleared || x->count > n || n >= UINT32_MAX)
		return 0;
	uint64_t size = 16;
	while (size < 2 * (uint64_t)n)
		size *= 2;
	uint32_t *idx = calloc(size, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	/* A repeated key is indexed once: n copies of one key would make one
	 * cluster of n entries, walked by each copy (and by each slot whose
	 * meta lands in it), n * n steps with the lock held (160,000 copies:
	 * 3.9 s).  Distinct keys spread by the set's keyed hash. */
	for (size_t i = 0; i < n; i++) {
		const struct table_rec *r = &rec[i];
		uint64_t j = (meta_of(r->h) >> 2) & (size - 1);
		for (; idx[j]; j = (j + 1) & (size - 1)) {
			const struct table_rec *o = &rec[idx[j] - 1];
			if (o->h == r->h && o->len == r->len &&
			    memcmp(table_rec_key(o), table_rec_key(r), r->len) == 0)
				break;
		}
		if (!idx[j])
			idx[j] = (uint32_t)i + 1;
	}
	int res = x->tdesc ? all_in_table(x, x->tdesc, 0, rec, idx, size - 1) : 1;
	if (res == 1 && x->old_tdesc)
		res = all_in_table(x, x->old_tdesc, x->moved, rec, idx, size - 1);
	free(idx);
	return res;
}

/* The first live slot of table @tdesc at or after @start (wrapping), slots
 * below @gone excluded, looking at @span slots at most: 1 with *@at, 0
 * none. */
static int first_live(const struct view *v, uint64_t tdesc, uint64_t gone, uint64_t start,
		      uint64_t span, uint64_t *at)
{
	uint64_t cap;
	uint8_t *t = view_table(v, tdesc, &cap);

	if (!t || gone > cap)
		return -EUCLEAN;
	/* @start may be any number (a hint a peer can write). */
	if (span > cap)
		span = cap;
	for (uint64_t n = 0, i = start % cap; n < span; n++, i = next_slot(i, cap)) {
		if (i >= gone && is_live(prim_ld64(t + i * SLOT_SIZE))) {
			*at = i;
			return 1;
		}
	}
	return 0;
}

/* Slots of a draining old table a pop looks at first: two steps' worth. */
#define POP_NEAR (2 * 8 * MOVE_STEP)

int table_pop(struct tx *x, void *buf, size_t bufcap, size_t *lenp)
{
	uint64_t i = 0, cap, tdesc = x->tdesc;
	int res;

	if (!x->count || !x->tdesc)
		return 0;
	res = move_step(x);
	if (res)
		return res;
	/* First, while an old table drains, the next POP_NEAR of its slots
	 * (their keys are next to move): a shrink's new table holds no key
	 * yet, and a pop would walk all of it.  Only a few: an old table
	 * whose keys were removed, not moved, would have each pop walk the
	 * rest of it until the steps drain it.  Then the first key after a
	 * point spread over the current table pop by pop (the hint counts
	 * pops; a peer may write any number): popping front to back, in the
	 * order of the keys' hashes, would leave only the highest, which the
	 * shrink at 3/32 full homes in the last slots of its smaller table,
	 * one cluster that each move and probe walks (popping 400,000 keys
	 * from one shard: 5.5 s, an op up to 2.5 ms).  Last, the rest of the
	 * old table. */
	uint64_t hint = __atomic_load_n(&x->st->pop_hint, __ATOMIC_RELAXED);
	uint64_t start =
	    (uint64_t)(((unsigned __int128)prim_bitrev64(hint) * tdesc_cap(tdesc)) >> 64);
	res = 0;
	if (x->old_tdesc)
		res = first_live(&x->v, x->old_tdesc, x->moved, x->moved, POP_NEAR, &i);
	if (res == 0)
		res = first_live(&x->v, tdesc, 0, start, UINT64_MAX, &i);
	else
		tdesc = x->old_tdesc;
	if (res == 0 && x->old_tdesc) {
		tdesc = x->old_tdesc;
		uint64_t ocap = tdesc_cap(tdesc);
		res = x->moved < ocap
			  ? first_live(&x->v, tdesc, x->moved, x->moved, ocap - x->moved, &i)
			  : 0;
	}
	if (res <= 0)
		return res < 0 ? res : -EUCLEAN; /* count said there was one */
	uint8_t *t = view_table(&x->v, tdesc, &cap);
	uint32_t len;
	const uint8_t *k = t ? slot_key(&x->v, t + i * SLOT_SIZE, &len) : NULL;
	if (!k)
		return -EUCLEAN;
	*lenp = len;
	if (len > bufcap)
		return -ENOBUFS;
	memcpy(buf, k, len);
	x->st->pop_hint = hint + 1;
	CRASH_POINT("pop: hint moved");
	res = remove_at(x, tdesc, i, len);
	if (res < 0)
		return res;
	int err = table_shrink(x, 1);
	return err ? err : res;
}

int table_clear(struct tx *x)
{
	/* Nothing is overwritten, so the old state stays intact until the
	 * commit publishes the empty one. */
	tx_touch(x);
	x->tdesc = 0;
	x->old_tdesc = 0;
	x->moved = 0;
	x->count = 0;
	x->tombs = 0;
	x->key_bytes = 0;
	x->arena_bytes = 0;
	x->fresh = 0;
	alloc_reset(x);
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
	/* For table_populate_ahead: a table this transaction worked with,
	 * its cursor back to the start when that is a new one (written only
	 * then: every commit passes here).  Only one that checks as a table
	 * of this transaction's heap: one that never touched the table (a pop
	 * of a set whose count says empty, a shard a batch did not reach)
	 * commits the state's word unchecked, and a peer's "table" past brk
	 * must not be faulted in. */
	uint64_t cap, want = x->old_tdesc && view_table(&x->v, x->tdesc, &cap) ? x->tdesc : 0;
	if (__atomic_load_n(&x->r->pop_want, __ATOMIC_RELAXED) != want) {
		__atomic_store_n(&x->r->pop_done, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&x->r->pop_want, want, __ATOMIC_RELAXED);
		__atomic_add_fetch(&x->r->pop_gen, 1, __ATOMIC_RELEASE);
	}
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

/* The next live key of table @tdesc at or after slot *@pos, slots below
 * @gone excluded. */
static int next_one(const struct view *v, uint64_t tdesc, uint64_t gone, uint64_t *pos,
		    const uint8_t **key, size_t *len)
{
	uint64_t cap;

	if (!tdesc)
		return 0;
	uint8_t *t = view_table(v, tdesc, &cap);
	if (!t || gone > cap)
		return -EUCLEAN;
	for (uint64_t i = *pos < gone ? gone : *pos; i < cap; i++) {
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

/* The next live key of the set: the current table's, then the old one's
 * above `moved`.  *@pos counts slots over both (0 to start). */
static int next_in(const struct view *v, const struct tables *tb, uint64_t *pos,
		   const uint8_t **key, size_t *len)
{
	uint64_t cap = 0;

	if (tb->cur) {
		if (!view_table(v, tb->cur, &cap))
			return -EUCLEAN;
		if (*pos < cap) {
			int res = next_one(v, tb->cur, 0, pos, key, len);
			if (res)
				return res;
		}
	}
	if (!tb->old)
		return 0;
	uint64_t at = *pos - cap;
	int res = next_one(v, tb->old, tb->moved, &at, key, len);
	*pos = cap + at;
	return res;
}

void table_iter_start(struct region *r, struct table_iter *it)
{
	it->r = r;
	tables_read(state(r), &it->tb);
	it->brk = __atomic_load_n(&state(r)->brk, __ATOMIC_RELAXED);
	it->pos = 0;
}

int table_iter_next(struct table_iter *it, const uint8_t **key, size_t *len)
{
	struct view v;

	view_region(&v, it->r, it->brk);
	return next_in(&v, &it->tb, &it->pos, key, len);
}

static void view_snap(struct view *v, const struct table_snap *sn)
{
	view_copy(v, sn->buf, sn->heap_off, sn->st.brk, sn->seed, sn->shard_mask, sn->shard);
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
	sn->shard_mask = r->nshards - 1;
	sn->shard = r->shard_idx;
	uint64_t brk = sn->st.brk;
	if (brk < sn->heap_off || brk > r->heap_end ||
	    region_check(r, sn->heap_off, brk - sn->heap_off))
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
	struct tables tb = {sn->st.tdesc, sn->st.old_tdesc, sn->st.moved};

	view_snap(&v, sn);
	return next_in(&v, &tb, pos, key, len);
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
	if (dst->heap_off != src->heap_off || brk > dst->heap_end)
		return -EINVAL;
	err = region_grow(dst, brk);
	if (err)
		return err;
	/* Only the data: holes (tables given back after a resize) stay
	 * holes, and reading them would allocate pages in the source. */
	region_extents(src, src->heap_off, brk, copy_extent, dst);
	d->brk = brk;
	d->tdesc = s->tdesc;
	d->old_tdesc = s->old_tdesc;
	d->moved = s->moved;
	/* Freed tables still giving their pages back: copied with the heap's
	 * data, they must stay on the list to be punched and reused. */
	d->punch_head = s->punch_head;
	d->punch_done = s->punch_done;
	d->free_q = s->free_q;
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
	struct tables tb;
	tables_read(st, &tb);
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
	while ((res = next_in(&v, &tb, &pos, &k, &kl)) == 1) {
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
 * through @v.  Checking that each key is reachable walks its probe path,
 * within PROBE_BUDGET per slot (above).  While a resize runs, each key of
 * the old table is also looked up in the current one: those slots count
 * too, against the budget of both tables' slots.
 */

struct verify_sums {
	uint64_t live, tombs, kbytes, abytes, walked;
};

/* The live keys of table @tdesc from slot @gone on: each reachable from
 * its probe start in that table, and (@other) in no other table. */
static int verify_table(const struct view *v, uint64_t tdesc, uint64_t gone, uint64_t other,
			struct verify_sums *sum)
{
	uint64_t cap, ocap = 0;
	uint8_t *t = view_table(v, tdesc, &cap);

	if (!t || gone > cap || (other && !view_table(v, other, &ocap)))
		return -EUCLEAN;
	uint64_t limit = PROBE_BUDGET * (cap + ocap);
	for (uint64_t i = gone; i < cap; i++) {
		const uint8_t *s = t + i * SLOT_SIZE;
		uint64_t m = prim_ld64(s), pos, ins;
		int tomb;
		if (m == META_TOMB) {
			sum->tombs++;
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
		if (meta_of(h) != m || (h & v->shard_mask) != v->shard)
			return -EUCLEAN;
		/* Reachable from its probe start, and the first copy; the
		 * distance walked from home to i wraps at cap. */
		uint64_t hm = home(h, cap);
		sum->walked += (i >= hm ? i - hm : i + cap - hm) + 1;
		if (sum->walked > limit)
			return -EUCLEAN;
		if (probe_at(v, tdesc, gone, h, k, len, &pos, &ins, &tomb) != 1 || pos != i)
			return -EUCLEAN;
		/* Not in the other table either: that probe's slots count
		 * too (a peer's table of tombstones would otherwise make each
		 * key walk all of it). */
		if (other &&
		    (probe_walk(v, other, 0, h, k, len, &pos, &ins, &tomb, &sum->walked) != 0 ||
		     sum->walked > limit))
			return -EUCLEAN;
		sum->live++;
		sum->kbytes += len;
		if (len > INLINE_MAX)
			sum->abytes += alloc_class_bytes(alloc_key_class(len));
	}
	return 0;
}

static int verify_view(const struct view *v, const struct tx_state *st)
{
	struct verify_sums sum = {0};
	uint64_t cap = 0, ocap = 0;

	if (st->log_n || (st->seq & 1))
		return -EUCLEAN;
	if (st->brk < v->heap_off || st->brk != v->brk)
		return -EUCLEAN;
	if (st->old_tdesc && (!st->tdesc || !view_table(v, st->old_tdesc, &ocap) ||
			      st->moved > ocap || st->old_tdesc == st->tdesc))
		return -EUCLEAN;
	if (!st->old_tdesc && st->moved)
		return -EUCLEAN;
	if (st->tdesc) {
		if (!view_table(v, st->tdesc, &cap))
			return -EUCLEAN;
		int err = verify_table(v, st->tdesc, 0, 0, &sum);
		if (err)
			return err;
	}
	uint64_t tombs = sum.tombs;
	if (st->old_tdesc) {
		/* Its tombstones are nobody's: they go with it. */
		int err = verify_table(v, st->old_tdesc, st->moved, st->tdesc, &sum);
		if (err)
			return err;
	}
	if (sum.live != st->count || tombs != st->tombs || sum.kbytes != st->key_bytes ||
	    sum.abytes != st->arena_bytes)
		return -EUCLEAN;
	if (cap && (st->count + tombs) * 8 > cap * 7)
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
	if (st.brk < r->heap_off || st.brk > r->heap_end || region_check(r, 0, st.brk))
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

uint64_t table_heap_bytes(struct region *r)
{
	uint64_t brk = __atomic_load_n(&state(r)->brk, __ATOMIC_RELAXED);
	return brk > r->heap_off ? brk - r->heap_off : 0;
}

/* table_stats without the file's size (one fstat serves every shard). */
static void stats_words(struct region *r, struct table_stats *o)
{
	struct tx_state *st = state(r);

	memset(o, 0, sizeof(*o));
	o->count = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
	uint64_t d = __atomic_load_n(&st->tdesc, __ATOMIC_RELAXED);
	o->capacity = tdesc_cap(d);
	o->tombstones = __atomic_load_n(&st->tombs, __ATOMIC_RELAXED);
	o->key_bytes = __atomic_load_n(&st->key_bytes, __ATOMIC_RELAXED);
	o->arena_bytes = __atomic_load_n(&st->arena_bytes, __ATOMIC_RELAXED);
	o->heap_bytes = table_heap_bytes(r);
	o->repairs = __atomic_load_n(&st->n_repairs, __ATOMIC_RELAXED);
	o->resizes = __atomic_load_n(&st->n_resizes, __ATOMIC_RELAXED);
	o->aborts = __atomic_load_n(&st->n_aborts, __ATOMIC_RELAXED);
	o->txns = __atomic_load_n(&st->n_txns, __ATOMIC_RELAXED);
	o->log_capacity = r->log_bytes / 16; /* 16-byte entries */
}

/* The file itself, not the header's record of it (a peer can write
 * that). */
static uint64_t file_bytes(struct region *r)
{
	struct stat fst;
	return fstat(r->fd, &fst) == 0 ? (uint64_t)fst.st_size : 0;
}

int table_stats(struct region *r, struct table_stats *o)
{
	stats_words(r, o);
	o->file_bytes = file_bytes(r);
	return 0;
}

/* The sums of every shard's figures. */
void table_stats_shards(struct region *r, struct table_stats *sum)
{
	struct table_stats ts;

	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < r->nshards; i++) {
		stats_words(r->shard[i], &ts);
		sum->count += ts.count;
		sum->capacity += ts.capacity;
		sum->tombstones += ts.tombstones;
		sum->key_bytes += ts.key_bytes;
		sum->arena_bytes += ts.arena_bytes;
		sum->heap_bytes += ts.heap_bytes;
		sum->repairs += ts.repairs;
		sum->resizes += ts.resizes;
		sum->aborts += ts.aborts;
		sum->txns += ts.txns;
		sum->log_capacity += ts.log_capacity;
	}
	sum->file_bytes = file_bytes(r);
}

int table_lock_state_shards(struct region *r, struct shset_lock_state *st)
{
	struct shset_lock_state one;
	int err = 0, held = 0;

	memset(st, 0, sizeof(*st));
	st->owner_slot = -1;
	for (unsigned i = 0; i < r->nshards && !err; i++) {
		err = shset_lock_state(r->shard[i]->lock, &one);
		st->acquisitions += one.acquisitions;
		st->contended += one.contended;
		st->futex_waits += one.futex_waits;
		st->owner_died += one.owner_died;
		st->waiters |= one.waiters;
		st->inconsistent |= one.inconsistent;
		if (one.locked && !held) {
			held = 1;
			st->locked = 1;
			st->owner_slot = one.owner_slot;
			st->owner_gen = one.owner_gen;
		}
	}
	return err;
}
