/* SPDX-License-Identifier: MIT */
/*
 * tx.h - a shard's shared state words, its undo log and transactions
 * (private).  Each shard of a set (region.h) has its own; a transaction
 * over several shards is one per shard, committed together
 * (tx_commit_shards).
 *
 * Every mutation runs inside a transaction, the shard's lock held:
 *
 *   IDLE --first write--> DIRTY (seq odd) --commit--> IDLE (seq even)
 *                              \--crash/abort: roll back--> IDLE
 *
 * Before a word that a committed state depends on is overwritten, its
 * offset and old value are appended to the undo log and log_n is bumped;
 * then the word is written.  The state words (tdesc, count, heads, ...) are
 * kept in the process's struct tx and written, logged, only at commit; the
 * commit point is the store log_n = 0.  A crash before it leaves log_n > 0,
 * and the next lock holder (told by SHSET_LOCK_OWNER_DIED) restores the
 * logged words newest first: the set is exactly as before the dead
 * transaction, which never returned to its caller.  Readers never see a
 * half-done transaction: seq is odd from the first write to the commit.
 * What needs no logging, and why, is said where it is skipped (alloc.c,
 * table.c).
 */
#ifndef SHSET_TX_H
#define SHSET_TX_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "region.h"
#include "view.h"

#define TX_MIN_LOG     (64u * 1024)
#define TX_LOG_RESERVE 512u /* entries kept for commit */
/* State words of the table's that a commit may log (table_commit: 7). */
#define TX_TABLE_WORDS 10u

/*
 * The set's shared state, in the region's state area.  `seq` is the
 * seqcount readers check; every other field is written only under the lock,
 * inside a transaction (logged), except the statistics.
 *
 * Cache lines: the words every transaction writes share seq's line, so
 * that the exchange that makes seq odd brings them all to the writer at
 * once.  With two writer processes on a shard in turn, each further line
 * written before the unlock was one more transfer from the other CPU, paid
 * in series (growbench, 2 presized writers on a 2-vCPU Intel VM: 1.35x one
 * writer with seq alone and count beside tdesc, 1.54x so).  What lookups
 * read besides seq is in the next line, which only resizes (and adds of
 * keys stored outside their slot: brk) write, so a lookup, and the
 * prefetch before a writer takes the lock, find it still in their cache.
 */
struct tx_state {
	/* Line 0: what every transaction writes. */
	uint64_t seq;	/* odd while a writer mutates */
	uint64_t log_n; /* undo log entries; 0: nothing in flight */
	/* The multi-shard transaction the log belongs to (0: none): see
	 * tx_commit_shards. */
	uint64_t mtx;
	uint64_t count;	      /* live keys */
	uint64_t tombs;	      /* tombstones in the table */
	uint64_t key_bytes;   /* sum of live key lengths */
	uint64_t arena_bytes; /* bytes of live arena blocks */
	uint64_t n_txns;      /* a statistic: not logged (a crash may lose one) */
	/* Line 1: what lookups read. */
	uint64_t tdesc; /* table: offset | capacity code << 56 (table.h); 0: none */
	/* A table being drained into tdesc (0: none), and how many of its
	 * slots have been moved: see table.c. */
	uint64_t old_tdesc, moved;
	uint64_t brk;	  /* heap bump pointer (absolute offset) */
	uint64_t pad1[4]; /* the line's rest: transactions that free write what follows */
	/* Freed blocks whose pages are being given back, and how many bytes
	 * of the first have been; freed blocks waiting for the free lists:
	 * see alloc.c.  Read by every transaction, written by those that
	 * free. */
	uint64_t punch_head, punch_done, free_q;
	/* Statistics: under the lock, not logged (a crash may lose one). */
	uint64_t pop_hint; /* pops so far: where the next looks (a hint) */
	uint64_t n_aborts; /* transactions undone by their own writer */
	uint64_t n_repairs, n_resizes;
	/* In shard 0 only: the last multi-shard transaction that reached its
	 * commit point. */
	uint64_t mtx_done;
	uint64_t head[ALLOC_CLASSES]; /* free block lists by size class */
};

/* The state area is 64-byte aligned in the region. */
_Static_assert(sizeof(struct tx_state) <= REGION_STATE_BYTES, "state too large");
_Static_assert(offsetof(struct tx_state, n_txns) < 64, "a transaction's words share seq's line");
_Static_assert(offsetof(struct tx_state, tdesc) == 64 && offsetof(struct tx_state, brk) < 128,
	       "a lookup's words share one line, apart from the writers'");
/* The first word a log may restore: the ones before it are the log's own
 * (tx.c, target_ok). */
#define TX_STATE_LOGGED offsetof(struct tx_state, count)
/* A commit logs at most the allocator's words (ALLOC_COMMIT_WORDS: a splice
 * and a head per size class, and a few more) and the table's: the reserve
 * always holds them, and leaves 7/8 of the smallest log (16-byte entries)
 * to the transaction itself. */
_Static_assert(ALLOC_COMMIT_WORDS + TX_TABLE_WORDS <= TX_LOG_RESERVE,
	       "commit must fit the log reserve");
_Static_assert(TX_LOG_RESERVE * 8 <= TX_MIN_LOG / 16, "the reserve is a small part of the log");

static inline struct tx_state *tx_state(struct region *r)
{
	return r->state;
}

/* A transaction in progress: private copies of the state words, which the
 * commit publishes.  The caller keeps its storage (tx_size bytes, one per
 * handle: the lock serialises its use). */
struct tx {
	struct region *r;
	struct tx_state *st;
	struct view v; /* heap up to this transaction's brk */
	uint64_t seq0;
	int dirty;
	/* The allocator's words (alloc.c).  Bitmaps by class of the free-list
	 * heads this transaction has read (head_map) and of the classes it
	 * freed blocks of (pend_map): only those are touched at commit. */
	int alloc_used; /* something below may have changed */
	uint64_t brk;
	uint64_t brk0; /* brk as committed: carving below it would overwrite
			  the heap a rollback must find intact (after a clear) */
	uint64_t head_map[ALLOC_MAP_WORDS], pend_map[ALLOC_MAP_WORDS];
	uint64_t punch_to;		 /* alloc_reset: [heap_off, punch_to) goes back */
	uint64_t punch_head, punch_done; /* the shared list of blocks to punch */
	uint64_t ppend_head, ppend_tail; /* big blocks this transaction freed */
	uint64_t free_q;		 /* the shared free queue */
	uint64_t q_new, q_tail;		 /* this transaction's queue blocks */
	uint64_t q_next;		 /* q_new's link (to the one before) */
	unsigned q_n;			 /* entries in q_new */
	uint64_t q_logged;		 /* the queue block whose word this one logged, */
	uint64_t q_w;			 /* and that word as this one last wrote it */
	/* The table's words (table.c). */
	uint64_t tdesc, count, tombs, key_bytes, arena_bytes, old_tdesc, moved;
	int cleared; /* clear() ran: nothing else may follow in this one */
	int fresh;   /* the current table was allocated by this transaction */
	uint64_t fresh_tdesc;
	int old_fresh;	/* ... and so was the old one, being drained */
	int bulk;	/* a table was rebuilt: a batch's, or set algebra's */
	int retry;	/* run again, the log having run out: start fresh */
	int fill_later; /* a new table's pages are the caller's to fill (a load
			   has them filled ahead: pager.c) */
	/* Last, the allocator's arrays by size class (3.8 KB), of which a
	 * transaction touches only the classes its maps name: the words
	 * above, which every transaction touches, are the struct's first 352
	 * bytes, not lines 4 KB apart on two pages (a set keeps one struct
	 * tx per shard, so each such line and page is another to keep in
	 * cache and TLB). */
	uint64_t head[ALLOC_CLASSES];
	uint64_t pend_head[ALLOC_CLASSES], pend_tail[ALLOC_CLASSES];
};

size_t tx_size(void);
/* Starts a transaction in @mem; NULL with *@err set when the region is
 * read-only or its state cannot be trusted.  A log left behind by a dead
 * owner is rolled back first. */
struct tx *tx_begin(struct region *r, void *mem, int *err);
/* Marks the set as being changed (seq odd) before the first write. */
void tx_touch(struct tx *x);
/* Logs the word at @off before it changes: -E2BIG when the log is full
 * (the caller aborts and retries on a fresh table). */
int tx_log(struct tx *x, uint64_t off);
/* Undo log entries a transaction may still write. */
uint64_t tx_log_room(const struct tx *x);
/* Commit: writes @val into the state word @field, logged (from the
 * reserve, so it cannot fail). */
void tx_publish_changed(struct tx *x, uint64_t *field, uint64_t val);
static inline void tx_publish(struct tx *x, uint64_t *field, uint64_t val)
{
	/* Inline: a commit looks at a dozen words and changes two or three. */
	if (__atomic_load_n(field, __ATOMIC_RELAXED) != val)
		tx_publish_changed(x, field, val);
}
/* Publishes the transaction; it cannot fail once called with no error
 * pending. */
void tx_commit(struct tx *x);

/*
 * Transactions over several shards of one set, all their locks held (the
 * caller took every shard's, so no other such transaction runs).  Each
 * shard's transaction is tagged with @tag (tx_join, right after tx_begin),
 * and commits in two halves: every shard publishes its words (logged), then
 * shard 0's mtx_done = tag is the one commit point of them all, then each
 * empties its log.  A crash before that point rolls every shard back; after
 * it, a shard whose log still holds the tagged transaction is rolled
 * forward (its log dropped): the repair of each shard decides alone, by
 * its tag and mtx_done.  @tag is new: not mtx_done, never 0.
 */
uint64_t tx_new_tag(struct region *r);
void tx_join(struct tx *x, uint64_t tag);
void tx_commit_shards(struct tx **xs, unsigned n, uint64_t tag);
/* Undoes everything the transaction wrote. */
void tx_abort(struct tx *x);
/* After taking over a dead owner's lock: undo its transaction. */
int tx_repair(struct region *r);

#endif
