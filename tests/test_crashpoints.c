/* SPDX-License-Identifier: MIT */
/*
 * test_crashpoints.c - every mutation killed at every one of its steps.
 *
 * Built only with -DSHSET_CRASHPOINTS=ON.  For each operation a child first
 * runs it counting its crash points (N), then for k = 1..N a fresh child
 * runs it armed to SIGKILL itself at point k.  After each kill the parent
 * takes the lock over (repairing), checks shset_verify, that the content is
 * exactly the state before or after the operation (never in between), and
 * that the next operation works.  Operations with more than
 * SHSET_CRASHPOINTS_MAX steps (default 1500) are sampled evenly plus their
 * first and last 200 steps; SHSET_CRASHPOINTS_MAX=0 means every step.
 */
#include "helpers.h"

#include <glob.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "alloc.h"
#include "crashpoint.h"
#include "keys.h"
#include "region.h"
#include "set.h"
#include "shset.h"
#include "table.h"
#include "tx.h"

/* An order-independent digest of a set's content. */
struct digest {
	uint64_t n, sum, x;
};

static int dig(const void *k, size_t len, void *arg)
{
	struct digest *d = arg;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)k)[i]) * 1099511628211ull;
	h ^= len * 0x9e3779b97f4a7c15ull;
	d->n++;
	d->sum += h;
	d->x ^= h * 0xbf58476d1ce4e5b9ull;
	return 0;
}

static struct digest digest_of(shset *s)
{
	struct digest d = {0};
	ck_assert_int_eq(shset_foreach(s, dig, &d), 0);
	return d;
}

static int same(struct digest a, struct digest b)
{
	return a.n == b.n && a.sum == b.sum && a.x == b.x;
}

/* The starting state: short and long keys, removals (tombstones, free
 * blocks), so every path of the allocator is in play. */
static shset *build_sharded(uint32_t from, uint32_t n, uint32_t shards)
{
	shset *s;
	struct shset_opts o = {
	    .size = sizeof(o), .log_bytes = 64 * 1024, .max_procs = 16, .shards = shards};
	uint8_t key[300];
	static const uint64_t seed[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};
	/* A fixed hash key: the same layout, so the same steps, every time. */
	ck_assert_int_eq(set_create_seeded(&s, &o, seed), 0);
	for (uint32_t i = from; i < from + n; i++) {
		size_t len = key_of(i, key);
		shset_add(s, key, len);
	}
	for (uint32_t i = from; i < from + n; i += 3) {
		size_t len = key_of(i, key);
		shset_remove(s, key, len);
	}
	return s;
}

/* The default layout (8 GiB: 16 shards), so that batches, clear, set
 * algebra and copies span shards and commit through the shared record. */
static shset *build(uint32_t from, uint32_t n)
{
	return build_sharded(from, n, 0);
}

enum {
	OP_ADD_SHORT,
	OP_ADD_LONG,
	OP_REMOVE,
	OP_BATCH,
	OP_BATCH_RESIZE,
	OP_BATCH_FRESH,
	OP_BATCH_REMOVE,
	OP_POP,
	OP_CLEAR,
	OP_UNION,
	OP_INTER,
	OP_DIFF,
	OP_SYMDIFF,
	OP_COPY,
	OP_SAVE,
	OP_ADD_RESIZE,
	OP_ADD_MOVING,
	OP_REMOVE_SHRINK,
	OP_ADD_PUNCH,
	OP_BATCH_SORTED,
	OP_BATCH_BEHIND_PUNCH,
	OP_BATCH_QUEUE,
	OP_ADD_DRAIN,
	OP_BATCH_REMOVE_ALL,
	OP_BATCH_REUSE_TABLE,
	OP_BATCH_REMOVE_SHRINK,
	NOPS
};
static const char *op_name[NOPS] = {"add (inline key)",
				    "add (arena key)",
				    "remove",
				    "batch add 10",
				    "batch add 600 (resize)",
				    "batch add 2500 (fresh table)",
				    "batch remove 10",
				    "pop",
				    "clear",
				    "update (union)",
				    "intersection_update",
				    "difference_update",
				    "symmetric_difference_update",
				    "copy",
				    "save",
				    "add (starts a resize)",
				    "add (moves keys)",
				    "remove (starts a shrink)",
				    "add (punches a table)",
				    "batch add 5000 (sorted records)",
				    "batch add 2500 (frees behind a punch)",
				    "batch remove 3000 (free queue)",
				    "add (drains the free queue)",
				    "batch remove of every key (a clear)",
				    "batch add 2500 (a freed table reused)",
				    "batch remove 5000 (shrinks)"};

/* The long keys of the free-queue operations: 40 bytes, in key blocks. */
enum { QKEYS = 3000, QLEN = 40 };
static size_t qkey_of(uint32_t i, uint8_t *key)
{
	memset(key, 'Q', QLEN);
	memcpy(key, &i, sizeof(i));
	return QLEN;
}

static char snap_path[64];

static int run_op(shset *s, shset *other, int op)
{
	static uint8_t bk[5000][300];
	static const void *kp[5000];
	static size_t kl[5000];
	uint8_t key[300];
	size_t len;
	int n = op == OP_BATCH_RESIZE ? 600
		: op == OP_BATCH_FRESH || op == OP_BATCH_BEHIND_PUNCH || op == OP_BATCH_REUSE_TABLE
		    ? 2500
		: op == OP_BATCH_SORTED || op == OP_BATCH_REMOVE_SHRINK ? 5000
		: op == OP_BATCH_QUEUE					? QKEYS
									: 10;

	switch (op) {
	case OP_ADD_SHORT:
		return shset_add(s, "brand-new", 9);
	case OP_ADD_LONG:
		len = key_of(100001, key);
		memset(key + 4, 'L', 200);
		return shset_add(s, key, 204);
	case OP_REMOVE:
		for (uint32_t i = 2;; i++) {
			len = key_of(i, key);
			if (len > 20 && i % 3)
				return shset_remove(s, key, len);
		}
	case OP_BATCH:
	case OP_BATCH_RESIZE:
	case OP_BATCH_FRESH:
	case OP_BATCH_REUSE_TABLE:
	case OP_BATCH_SORTED:
	case OP_BATCH_BEHIND_PUNCH:
	case OP_BATCH_REMOVE:
	case OP_BATCH_REMOVE_SHRINK:
		for (int i = 0; i < n; i++) {
			uint32_t k = (uint32_t)i;
			if (op == OP_BATCH_REMOVE)
				k = k * 3 + 1;
			else if (op == OP_BATCH_REMOVE_SHRINK)
				k = k < 390 ? k + 10 : 60000 + k - 390;
			else
				k += 50000;
			kl[i] = key_of(k, bk[i]);
			kp[i] = bk[i];
		}
		return (int)(op == OP_BATCH_REMOVE || op == OP_BATCH_REMOVE_SHRINK
				 ? shset_remove_batch(s, kp, kl, (size_t)n)
				 : shset_add_batch(s, kp, kl, (size_t)n));
	case OP_BATCH_REMOVE_ALL:
		/* Every key the set was built with, present or not. */
		for (int i = 0; i < 400; i++) {
			kl[i] = key_of((uint32_t)i, bk[i]);
			kp[i] = bk[i];
		}
		return (int)shset_remove_batch(s, kp, kl, 400);
	case OP_BATCH_QUEUE:
		for (int i = 0; i < n; i++) {
			kl[i] = qkey_of((uint32_t)i, bk[i]);
			kp[i] = bk[i];
		}
		return (int)shset_remove_batch(s, kp, kl, (size_t)n);
	case OP_ADD_DRAIN:
		len = qkey_of(QKEYS + 1, key);
		return shset_add(s, key, len);
	case OP_POP:
		return shset_pop(s, key, sizeof(key), &len);
	case OP_CLEAR:
		return shset_clear(s);
	case OP_UNION:
		return (int)shset_update(s, other);
	case OP_INTER:
		return (int)shset_intersection_update(s, other);
	case OP_DIFF:
		return (int)shset_difference_update(s, other);
	case OP_SYMDIFF:
		return (int)shset_symmetric_difference_update(s, other);
	case OP_COPY: {
		shset *c;
		int r = shset_copy(s, &c);
		if (!r)
			shset_close(c);
		return r;
	}
	case OP_SAVE:
		return shset_save(s, snap_path);
	case OP_ADD_RESIZE:
	case OP_ADD_MOVING:
	case OP_ADD_PUNCH:
		len = key_of(99999, key);
		return shset_add(s, key, len);
	case OP_REMOVE_SHRINK:
		for (uint32_t i = 0;; i++) {
			len = key_of(i, key);
			if (shset_contains(s, key, len) == 1)
				return shset_remove(s, key, len);
		}
	}
	return -EINVAL;
}

static struct tx_state state_of(shset *s)
{
	struct tx_state st;
	ck_assert_int_eq(pread(shset_fd(s), &st, sizeof(st), REGION_STATE_OFF),
			 (ssize_t)sizeof(st));
	return st;
}

static uint64_t cap_of(uint64_t tdesc)
{
	return tdesc ? table_code_cap((unsigned)(tdesc >> 56)) : 0;
}

/* The starting state of @op: for the resizing steps, the set is brought to
 * the point where the operation takes that step. */
static shset *build_for(int op, uint32_t from)
{
	/* The resizing steps are a table's: one shard, whose table every key
	 * goes to, brought to the point below. */
	int one = op == OP_ADD_RESIZE || op == OP_ADD_MOVING || op == OP_ADD_PUNCH ||
		  op == OP_REMOVE_SHRINK || op == OP_BATCH_BEHIND_PUNCH || op == OP_BATCH_QUEUE ||
		  op == OP_ADD_DRAIN || op == OP_BATCH_REUSE_TABLE || op == OP_BATCH_REMOVE_SHRINK;
	shset *s = build_sharded(from, 400, one ? 1 : 0);
	uint8_t key[300];
	uint32_t k = 60000 + from;
	struct tx_state st = state_of(s);

	switch (op) {
	case OP_ADD_RESIZE:
		/* No resize in progress, and the next insert needs one. */
		while (st.old_tdesc || (st.count + st.tombs + 1) * 4 <= cap_of(st.tdesc) * 3) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		break;
	case OP_ADD_MOVING:
		/* A resize in progress, with keys left to move. */
		while (!st.old_tdesc || st.moved + 64 >= cap_of(st.old_tdesc)) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		break;
	case OP_ADD_PUNCH:
		/* A freed table waiting to give its pages back. */
		while (!st.punch_head) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		break;
	case OP_BATCH_BEHIND_PUNCH: {
		/* A freed table of more than one punch step at the head of
		 * the punch list, nothing of it punched yet: the batch's first
		 * step leaves it half done, then its fresh table frees the old
		 * one, which goes behind it.  A table grown past two steps,
		 * then shrunk (at 3/32 full) and drained, is freed so; the
		 * removes punch what was freed before it. */
		while (cap_of(st.tdesc) * 32 < 2 * ALLOC_PUNCH_STEP || st.old_tdesc) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		for (uint32_t i = 0;; i++) {
			uint64_t w = 0;
			if (st.punch_head && !st.punch_done && !st.old_tdesc)
				ck_assert_int_eq(
				    pread(shset_fd(s), &w, sizeof(w), (off_t)st.punch_head),
				    (ssize_t)sizeof(w));
			if (w && alloc_class_bytes((unsigned)(w >> 56)) >= 2 * ALLOC_PUNCH_STEP)
				break;
			size_t len = key_of(i < 400 ? from + i : 60000 + from + i - 400, key);
			ck_assert_int_ge(shset_remove(s, key, len), 0);
			st = state_of(s);
			ck_assert_uint_lt(i, 100000);
		}
		ck_assert_uint_le(st.count, 2500); /* the batch takes a fresh table */
		break;
	}
	case OP_BATCH_REUSE_TABLE: {
		/* The batch's keys added and removed by batches: each built a
		 * fresh table, and the one the removal freed waits on the punch
		 * list, of the class the batch needs again (the removal takes
		 * no punch steps after it: set.c, give_back). */
		static uint8_t rk[2500][300];
		static const void *rp[2500];
		static size_t rl[2500];
		for (uint32_t i = 0; i < 2500; i++) {
			rl[i] = key_of(50000 + i, rk[i]);
			rp[i] = rk[i];
		}
		shset *b;
		setenv("SHSET_GIVE_BACK", "0", 1); /* read by the handle */
		ck_assert_int_eq(shset_attach_fd(&b, shset_fd(s)), 0);
		unsetenv("SHSET_GIVE_BACK");
		ck_assert_int_eq(shset_add_batch(b, rp, rl, 2500), 2500);
		ck_assert_int_eq(shset_remove_batch(b, rp, rl, 2500), 2500);
		shset_close(b);
		ck_assert_uint_ne(state_of(s).punch_head, 0);
		break;
	}
	case OP_BATCH_QUEUE:
	case OP_ADD_DRAIN: {
		/* Long keys, more than the log can free: the batch lists most
		 * in the free queue; for the add, that batch has run and the
		 * add's transaction moves queued blocks to the free lists. */
		static uint8_t qk[QKEYS][QLEN];
		static const void *qp[QKEYS];
		static size_t ql[QKEYS];
		for (uint32_t i = 0; i < QKEYS; i++) {
			ql[i] = qkey_of(i, qk[i]);
			qp[i] = qk[i];
		}
		ck_assert_int_eq(shset_add_batch(s, qp, ql, QKEYS), QKEYS);
		if (op == OP_ADD_DRAIN) {
			ck_assert_int_eq(shset_remove_batch(s, qp, ql, QKEYS), QKEYS);
			ck_assert_uint_ne(state_of(s).free_q, 0);
		}
		break;
	}
	case OP_BATCH_REMOVE_SHRINK:
		/* A table of 2048 slots or more, of which the batch removes
		 * every key but the first few (below 10): few enough that it
		 * shrinks, by enough removes that the batch finishes the
		 * shrink itself. */
		while (cap_of(st.tdesc) < 2048 || st.old_tdesc) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		ck_assert_uint_le(k, 60000 + 5000 - 390);
		break;
	case OP_REMOVE_SHRINK:
		/* A table of 2048 slots or more whose next remove leaves it
		 * 3/32 full. */
		while (cap_of(st.tdesc) < 2048 || st.old_tdesc) {
			ck_assert_int_eq(shset_add(s, key, key_of(k++, key)), 1);
			st = state_of(s);
		}
		for (uint32_t i = 0; (st.count - 1) * 32 > cap_of(st.tdesc) * 3 || st.old_tdesc;
		     i++) {
			size_t len = key_of(i < 400 ? from + i : 60000 + from + i - 400, key);
			shset_remove(s, key, len);
			st = state_of(s);
			ck_assert_uint_lt(i, 100000);
		}
		break;
	}
	return s;
}

/* Runs @op in a child armed at @k (0: count).  Returns the child's count
 * (k == 0) or 0, and whether it was killed. */
static unsigned long child_run(shset *s, shset *o, int op, unsigned long k, int *killed, int p[2])
{
	pid_t pid = fork();
	if (pid == 0) {
		shset *c, *oc;
		/* That batch's own transaction is the case: the punch steps
		 * it would take after it (set.c, give_back) are other ops'. */
		if (op == OP_BATCH_BEHIND_PUNCH)
			setenv("SHSET_GIVE_BACK", "0", 1);
		if (shset_attach_fd(&c, shset_fd(s)) || shset_attach_fd(&oc, shset_fd(o)))
			_exit(1);
		crashpoint_arm(k);
		int r = run_op(c, oc, op);
		unsigned long n = crashpoint_count();
		write_all(p[1], &n, sizeof(n));
		/* Sites for the coverage table. */
		const char *names[64];
		unsigned long hits[64];
		int ns = crashpoint_sites(names, hits, 64);
		write_all(p[1], &ns, sizeof(ns));
		for (int i = 0; i < ns; i++) {
			char nm[48] = {0};
			strncpy(nm, names[i], sizeof(nm) - 1);
			write_all(p[1], nm, sizeof(nm));
			write_all(p[1], &hits[i], sizeof(hits[i]));
		}
		_exit(r < 0 ? 2 : 0);
	}
	int st = wait_status(pid);
	*killed = st == 128 + SIGKILL;
	ck_assert_msg(*killed || st == 0, "op %s k=%lu exited %d", op_name[op], k, st);
	return 0;
}

struct site {
	char name[48];
	unsigned long hits;
	unsigned long kills;
};
static struct site sites[128];
static int nsites;

static void read_sites(int fd, int count_run, unsigned long *n)
{
	int ns;
	ck_assert_int_eq(read_all(fd, n, sizeof(*n)), 0);
	ck_assert_int_eq(read_all(fd, &ns, sizeof(ns)), 0);
	for (int i = 0; i < ns; i++) {
		char nm[48];
		unsigned long h;
		ck_assert_int_eq(read_all(fd, nm, sizeof(nm)), 0);
		ck_assert_int_eq(read_all(fd, &h, sizeof(h)), 0);
		if (!count_run)
			continue;
		int j;
		for (j = 0; j < nsites && strcmp(sites[j].name, nm); j++)
			;
		if (j == nsites && nsites < 128)
			memcpy(sites[nsites++].name, nm, sizeof(nm));
		sites[j].hits += h;
	}
}

START_TEST(every_step_of_every_mutation)
{
	const char *e = getenv("SHSET_CRASHPOINTS_MAX");
	unsigned long cap = e ? strtoul(e, NULL, 10) : 1500, total_kills = 0;
	snprintf(snap_path, sizeof(snap_path), "/tmp/shset-cp-%d.shs", getpid());
	printf("\n  %-30s %8s %8s %s\n", "operation", "steps", "killed", "result");
	const char *only = getenv("CP_ONLY");
	for (int op = 0; op < NOPS; op++) {
		if (only && atoi(only) != op)
			continue;
		int p[2], killed;
		unsigned long n;
		ck_assert_int_eq(pipe(p), 0);
		shset *s = build_for(op, 0), *o = build(200, 400);
		if (op == OP_SAVE)
			ck_assert_int_eq(shset_save(s, snap_path), 0);
		struct digest before = digest_of(s);
		struct tx_state st0 = state_of(s);
		child_run(s, o, op, 0, &killed, p);
		read_sites(p[0], 1, &n);
		ck_assert(!killed);
		struct digest after = digest_of(s);
		if (op == OP_BATCH_BEHIND_PUNCH) {
			/* What the steps below are meant to cut: the head half
			 * punched by the batch, the table it freed behind. */
			struct tx_state st1 = state_of(s);
			uint64_t w = 0;
			ck_assert_uint_eq(st1.punch_head, st0.punch_head);
			ck_assert_uint_gt(st1.punch_done, 0);
			ck_assert_int_eq(pread(shset_fd(s), &w, sizeof(w), (off_t)st1.punch_head),
					 (ssize_t)sizeof(w));
			ck_assert_uint_lt(st1.punch_done, alloc_class_bytes((unsigned)(w >> 56)));
			ck_assert_uint_ne(w & ((1ull << 56) - 1), 0);
		}
		if (op == OP_BATCH_REMOVE_SHRINK) {
			/* Shrunk, the old table drained and freed. */
			struct tx_state st1 = state_of(s);
			ck_assert_uint_le(cap_of(st1.tdesc) * 4, cap_of(st0.tdesc));
			ck_assert_uint_eq(st1.old_tdesc, 0);
		}
		shset_close(s);
		shset_close(o);
		ck_assert_uint_gt(n, 0);
		unsigned long done = 0;
		const char *kk = getenv("CP_K");
		for (unsigned long k = kk ? strtoul(kk, NULL, 10) : 1; k <= n; k++) {
			if (cap && n > cap && k > 200 && k + 200 <= n && k % (n / cap + 1))
				continue;
			s = build_for(op, 0);
			o = build(200, 400);
			if (op == OP_SAVE)
				ck_assert_int_eq(shset_save(s, snap_path), 0);
			child_run(s, o, op, k, &killed, p);
			ck_assert_msg(killed, "%s: step %lu of %lu not reached", op_name[op], k, n);
			/* Take over, repair, check. */
			int v = shset_verify(s);
			ck_assert_msg(v == 0, "%s killed at step %lu/%lu: verify %d", op_name[op],
				      k, n, v);
			struct digest d = digest_of(s);
			ck_assert_msg(same(d, before) || same(d, after),
				      "%s killed at step %lu/%lu: neither before nor after",
				      op_name[op], k, n);
			if (op == OP_COPY || op == OP_SAVE)
				ck_assert(same(d, before));
			if (op == OP_SAVE) {
				shset *l;
				ck_assert_int_eq(shset_load(&l, snap_path, NULL), 0);
				ck_assert(same(digest_of(l), before));
				shset_close(l);
			}
			/* The next operation goes through. */
			ck_assert_int_eq(shset_add(s, "next", 4), 1);
			ck_assert_int_eq(shset_remove(s, "next", 4), 1);
			ck_assert_int_eq(shset_verify(s), 0);
			shset_close(s);
			shset_close(o);
			done++;
		}
		total_kills += done;
		printf("  %-30s %8lu %8lu %s\n", op_name[op], n, done,
		       "verify clean; before or after, never between");
		close(p[0]);
		close(p[1]);
	}

	/* The repairer killed too: a batch interrupted halfway, then the
	 * process that repairs it killed at each step of the rollback. */
	{
		int p[2], killed;
		unsigned long n, rn;
		ck_assert_int_eq(pipe(p), 0);
		shset *s = build(0, 400), *o = build(200, 400);
		struct digest before = digest_of(s);
		child_run(s, o, OP_BATCH, 0, &killed, p);
		read_sites(p[0], 0, &n);
		shset_close(s);
		shset_close(o);
		for (unsigned long j = 1;; j++) {
			s = build(0, 400);
			o = build(200, 400);
			child_run(s, o, OP_BATCH, n / 2, &killed, p);
			ck_assert(killed);
			pid_t pid = fork();
			if (pid == 0) {
				shset *c;
				if (shset_attach_fd(&c, shset_fd(s)))
					_exit(1);
				crashpoint_arm(j);
				shset_verify(c); /* takes over and rolls back */
				_exit(0);
			}
			int st = wait_status(pid);
			rn = j;
			ck_assert_int_eq(shset_verify(s), 0);
			ck_assert(same(digest_of(s), before));
			shset_close(s);
			shset_close(o);
			if (st != 128 + SIGKILL)
				break;
			total_kills++;
		}
		printf("  %-30s %8lu %8lu %s\n", "repair (rollback) itself", rn - 1, rn - 1,
		       "the next owner repairs again");
		close(p[0]);
		close(p[1]);
	}
	unlink(snap_path);
	/* A save killed between creating its temporary file and the rename
	 * leaves that file beside the target (what a killed shset_save
	 * leaves): this test's own go. */
	char pat[80];
	glob_t g;
	snprintf(pat, sizeof(pat), "/tmp/.shset-cp-%d.shs.tmp.*", getpid());
	if (glob(pat, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			unlink(g.gl_pathv[i]);
		globfree(&g);
	}
	printf("\n  crash-point sites (%d) and how often each is passed:\n", nsites);
	for (int i = 0; i < nsites; i++)
		printf("    %-34s %8lu\n", sites[i].name, sites[i].hits);
	printf("  %lu kills, 0 lost, 0 corrupt\n", total_kills);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("crashpoints");
	TCase *tc = tcase_create("crashpoints");
	tcase_set_timeout(tc, 3000 * test_scale());
	tcase_add_test(tc, every_step_of_every_mutation);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
