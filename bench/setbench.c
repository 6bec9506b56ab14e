/* SPDX-License-Identifier: MIT */
/*
 * setbench - shset against what users would pick instead, in one run:
 *
 *   shset            the library: lock-free contains, futex lock for writes
 *   shset+pthread    the same table with every operation under a
 *                    process-shared pthread mutex (isolates the lock)
 *   lmdb             LMDB (MDB_NOSYNC | MDB_WRITEMAP), one txn per op
 *   lmdb batched     LMDB, 100 ops per txn (reads: one read txn)
 *   redis            Redis over a Unix socket, one command per round trip
 *   redis pipe16     Redis, 16 commands per round trip
 *
 * Workloads on 1,000,000 preloaded keys: read-heavy (95% contains, 5% add
 * then remove of a fresh key), mixed (50% contains, 25% add, 25% remove),
 * add-only; 1, 2 and 4 processes; 16- and 64-byte keys.  Then copy and
 * snapshot throughput with the lock-hold time against a memcpy, and memory
 * per key.  The ratio column reads as in lockbench: shset's advantage over
 * the row (its throughput over the row's), above 1x shset is ahead.  The
 * copy section compares lock-hold times with a memcpy instead ("x memcpy").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "set.h"
#include "shset.h"
#include "table.h"

#define PRELOAD	  1000000u
#define MAX_PROCS 4
#define MAX_BATCH 100

static double duration = 1.5;
static char tmpdir[64];
static FILE *csv;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Key @i of @len bytes: 8 bytes of i, then a fixed filler. */
static void make_key(uint64_t i, size_t len, uint8_t *k)
{
	memset(k, 'x', len);
	memcpy(k, &i, 8);
}

enum { OP_CONTAINS, OP_ADD, OP_REMOVE };

struct op {
	int type;
	uint8_t key[64];
	size_t len;
};

/* --- the systems ----------------------------------------------------------------- */

struct sys {
	const char *name;
	void *(*open)(void); /* in each process, after fork */
	/* Runs @n ops; returns how many failed unexpectedly. */
	int (*run)(void *ctx, struct op *ops, int n);
	void (*close)(void *ctx);
	int batch; /* ops handed to run() at once */
};

/* shset */
static shset *the_set;

static void *shset_open(void)
{
	shset *s;
	if (shset_attach_fd(&s, shset_fd(the_set)))
		return NULL;
	return s;
}

static int shset_run(void *ctx, struct op *ops, int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		int r = ops[i].type == OP_CONTAINS ? shset_contains(ctx, ops[i].key, ops[i].len)
			: ops[i].type == OP_ADD	   ? shset_add(ctx, ops[i].key, ops[i].len)
						   : shset_remove(ctx, ops[i].key, ops[i].len);
		bad += r < 0;
	}
	return bad;
}

static void shset_close_ctx(void *ctx)
{
	shset_close(ctx);
}

/* the same table under a pthread mutex */
static struct region *pt_region;
static pthread_mutex_t *pt_mutex;
static void *pt_txmem;

static void *pt_open(void)
{
	pt_txmem = malloc(tx_size());
	return pt_region;
}

static int pt_run(void *ctx, struct op *ops, int n)
{
	struct region *r = ctx;
	int bad = 0, err;
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(pt_mutex);
		if (ops[i].type == OP_CONTAINS) {
			bad += table_contains_locked(r, ops[i].key, ops[i].len) < 0;
		} else {
			struct tx *x = tx_begin(r, pt_txmem, &err);
			int res = ops[i].type == OP_ADD ? table_insert(x, ops[i].key, ops[i].len)
							: table_remove(x, ops[i].key, ops[i].len);
			if (res < 0) {
				tx_abort(x);
				bad++;
			} else {
				tx_commit(x);
			}
		}
		pthread_mutex_unlock(pt_mutex);
	}
	return bad;
}

static void pt_close(void *ctx)
{
	(void)ctx;
	free(pt_txmem);
}

/* LMDB */
struct lmdb_ctx {
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *rtxn;
};

static void *lmdb_open(void)
{
	struct lmdb_ctx *c = calloc(1, sizeof(*c));
	char path[128];
	MDB_txn *t;

	snprintf(path, sizeof(path), "%s/lmdb", tmpdir);
	if (mdb_env_create(&c->env) || mdb_env_set_mapsize(c->env, 8ull << 30) ||
	    mdb_env_set_maxreaders(c->env, 64) ||
	    mdb_env_open(c->env, path, MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC, 0600))
		return NULL;
	if (mdb_txn_begin(c->env, NULL, 0, &t) || mdb_dbi_open(t, NULL, 0, &c->dbi) ||
	    mdb_txn_commit(t))
		return NULL;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->rtxn))
		return NULL;
	mdb_txn_reset(c->rtxn);
	return c;
}

static int lmdb_one(struct lmdb_ctx *c, MDB_txn *t, struct op *o)
{
	MDB_val k = {o->len, o->key}, v = {0, (void *)""};
	int r;
	if (o->type == OP_CONTAINS)
		r = mdb_get(t, c->dbi, &k, &v);
	else if (o->type == OP_ADD)
		r = mdb_put(t, c->dbi, &k, &v, MDB_NOOVERWRITE);
	else
		r = mdb_del(t, c->dbi, &k, NULL);
	return r != 0 && r != MDB_NOTFOUND && r != MDB_KEYEXIST;
}

/* One txn per op: a renewed read txn for contains, a write txn otherwise. */
static int lmdb_run(void *ctx, struct op *ops, int n)
{
	struct lmdb_ctx *c = ctx;
	int bad = 0;
	for (int i = 0; i < n; i++) {
		if (ops[i].type == OP_CONTAINS) {
			mdb_txn_renew(c->rtxn);
			bad += lmdb_one(c, c->rtxn, &ops[i]);
			mdb_txn_reset(c->rtxn);
		} else {
			MDB_txn *t;
			if (mdb_txn_begin(c->env, NULL, 0, &t))
				return n;
			bad += lmdb_one(c, t, &ops[i]);
			bad += mdb_txn_commit(t) != 0;
		}
	}
	return bad;
}

/* Batched: the whole batch in one txn (a read txn if it only reads). */
static int lmdb_run_batch(void *ctx, struct op *ops, int n)
{
	struct lmdb_ctx *c = ctx;
	int writes = 0, bad = 0;
	for (int i = 0; i < n; i++)
		writes += ops[i].type != OP_CONTAINS;
	MDB_txn *t = c->rtxn;
	if (writes) {
		if (mdb_txn_begin(c->env, NULL, 0, &t))
			return n;
	} else {
		mdb_txn_renew(c->rtxn);
	}
	for (int i = 0; i < n; i++)
		bad += lmdb_one(c, t, &ops[i]);
	if (writes)
		bad += mdb_txn_commit(t) != 0;
	else
		mdb_txn_reset(c->rtxn);
	return bad;
}

static void lmdb_close(void *ctx)
{
	struct lmdb_ctx *c = ctx;
	mdb_txn_abort(c->rtxn);
	mdb_env_close(c->env);
	free(c);
}

/* Redis */
static char redis_sock[96];

static void *redis_open(void)
{
	redisContext *c = redisConnectUnix(redis_sock);
	if (!c || c->err)
		return NULL;
	return c;
}

static const char *redis_cmd(int type)
{
	return type == OP_CONTAINS ? "SISMEMBER s %b" : type == OP_ADD ? "SADD s %b" : "SREM s %b";
}

static int redis_run(void *ctx, struct op *ops, int n)
{
	redisContext *c = ctx;
	int bad = 0;
	for (int i = 0; i < n; i++) {
		redisReply *r = redisCommand(c, redis_cmd(ops[i].type), ops[i].key, ops[i].len);
		bad += !r || r->type != REDIS_REPLY_INTEGER;
		if (r)
			freeReplyObject(r);
	}
	return bad;
}

static int redis_run_pipe(void *ctx, struct op *ops, int n)
{
	redisContext *c = ctx;
	int bad = 0;
	for (int i = 0; i < n; i++)
		redisAppendCommand(c, redis_cmd(ops[i].type), ops[i].key, ops[i].len);
	for (int i = 0; i < n; i++) {
		redisReply *r;
		if (redisGetReply(c, (void **)&r) != REDIS_OK)
			return n;
		bad += r->type != REDIS_REPLY_INTEGER;
		freeReplyObject(r);
	}
	return bad;
}

static void redis_close(void *ctx)
{
	redisFree(ctx);
}

enum { S_SHSET, S_PTHREAD, S_LMDB, S_LMDB_BATCH, S_REDIS, S_REDIS_PIPE, NSYS };
static struct sys systems[NSYS] = {
    {"shset", shset_open, shset_run, shset_close_ctx, 1},
    {"shset+pthread", pt_open, pt_run, pt_close, 1},
    {"lmdb", lmdb_open, lmdb_run, lmdb_close, 1},
    {"lmdb batched", lmdb_open, lmdb_run_batch, lmdb_close, MAX_BATCH},
    {"redis", redis_open, redis_run, redis_close, 1},
    {"redis pipe16", redis_open, redis_run_pipe, redis_close, 16},
};
static int have_redis, have_lmdb = 1;

/* --- setup -------------------------------------------------------------------------- */

static pid_t redis_pid;

static int start_redis(void)
{
	snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", tmpdir);
	redis_pid = fork();
	if (redis_pid == 0) {
		int dn = open("/dev/null", O_WRONLY);
		dup2(dn, 1);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", redis_sock,
		       "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir",
		       tmpdir, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		redisContext *c = redisConnectUnix(redis_sock);
		if (c && !c->err) {
			redisFree(c);
			return 1;
		}
		if (c)
			redisFree(c);
		usleep(10000);
	}
	return 0;
}

static uint64_t redis_used_memory(void)
{
	redisContext *c = redisConnectUnix(redis_sock);
	uint64_t v = 0;
	redisReply *r = c ? redisCommand(c, "INFO memory") : NULL;
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *p = strstr(r->str, "used_memory:");
		if (p)
			v = strtoull(p + 12, NULL, 10);
	}
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return v;
}

/* Loads PRELOAD keys of @klen bytes into every system. */
static void preload(size_t klen, uint64_t *redis_mem)
{
	uint8_t k[64];
	const void **kp = malloc(PRELOAD * sizeof(void *));
	size_t *kl = malloc(PRELOAD * sizeof(size_t));
	uint8_t *keys = malloc((size_t)PRELOAD * klen);

	for (uint32_t i = 0; i < PRELOAD; i++) {
		make_key(i, klen, keys + (size_t)i * klen);
		kp[i] = keys + (size_t)i * klen;
		kl[i] = klen;
	}
	shset_clear(the_set);
	shset_add_batch(the_set, kp, kl, PRELOAD);

	int err;
	pthread_mutex_lock(pt_mutex);
	struct tx *x = tx_begin(pt_region, pt_txmem, &err);
	table_clear(x);
	tx_commit(x);
	x = tx_begin(pt_region, pt_txmem, &err);
	table_fresh(x, PRELOAD);
	for (uint32_t i = 0; i < PRELOAD; i++)
		table_insert(x, kp[i], klen);
	tx_commit(x);
	pthread_mutex_unlock(pt_mutex);

	if (have_lmdb) {
		char cmd[160];
		snprintf(cmd, sizeof(cmd), "rm -rf %s/lmdb && mkdir -p %s/lmdb", tmpdir, tmpdir);
		if (system(cmd) != 0)
			have_lmdb = 0;
		struct lmdb_ctx *c = lmdb_open();
		MDB_txn *t;
		if (!c || mdb_txn_begin(c->env, NULL, 0, &t)) {
			have_lmdb = 0;
		} else {
			for (uint32_t i = 0; i < PRELOAD; i++) {
				MDB_val kv = {klen, (void *)kp[i]}, v = {0, (void *)""};
				mdb_put(t, c->dbi, &kv, &v, 0);
			}
			mdb_txn_commit(t);
			lmdb_close(c);
		}
	}
	if (have_redis) {
		redisContext *c = redisConnectUnix(redis_sock);
		redisReply *r = redisCommand(c, "DEL s");
		freeReplyObject(r);
		uint64_t before = redis_used_memory();
		for (uint32_t i = 0; i < PRELOAD; i += 1000) {
			for (uint32_t j = i; j < i + 1000; j++)
				redisAppendCommand(c, "SADD s %b", kp[j], klen);
			for (uint32_t j = i; j < i + 1000; j++) {
				redisGetReply(c, (void **)&r);
				freeReplyObject(r);
			}
		}
		redisFree(c);
		*redis_mem = redis_used_memory() - before;
	}
	(void)k;
	free(kp);
	free(kl);
	free(keys);
}

/* --- workloads ------------------------------------------------------------------------ */

enum { W_READ, W_MIXED, W_ADD, NWORK };
static const char *work_name[NWORK] = {"read-heavy 95/5", "mixed 50/50", "add-only"};

struct shm {
	volatile int go, stop;
	uint64_t ops[MAX_PROCS], bad[MAX_PROCS];
	uint64_t fresh_base;
};
static struct shm *SH;

/* The next @n operations of process @p.  Writes add fresh keys and, except
 * in add-only, remove the oldest key this process added: the set keeps its
 * size, so a run measures operations and not table growth. */
static void gen_ops(int work, int p, uint64_t *rng, uint64_t *fresh, size_t klen, struct op *ops,
		    int n)
{
	static uint64_t oldest; /* per process: each worker is a fork */
	uint64_t base = SH->fresh_base + (uint64_t)(p + 1) * 1000000000ull;

	for (int i = 0; i < n; i++) {
		uint64_t x = *rng;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*rng = x;
		int pct = (int)(x % 100);
		struct op *o = &ops[i];
		int write = work == W_ADD || (work == W_READ && pct >= 95) ||
			    (work == W_MIXED && pct >= 50);
		int add = work == W_ADD || (work == W_READ && oldest == *fresh) ||
			  (work == W_MIXED && pct < 75);
		o->len = klen;
		if (write && add) {
			o->type = OP_ADD;
			make_key(base + (*fresh)++, klen, o->key);
		} else if (write) {
			o->type = OP_REMOVE;
			make_key(base + oldest, klen, o->key);
			if (oldest < *fresh)
				oldest++;
		} else {
			o->type = OP_CONTAINS;
			make_key((x >> 20) % PRELOAD, klen, o->key);
		}
	}
}

/* Returns million ops per second over all processes. */
static double run_work(int sysi, int work, int procs, size_t klen)
{
	struct sys *sy = &systems[sysi];
	pid_t pid[MAX_PROCS];

	SH->go = 0;
	SH->stop = 0;
	for (int p = 0; p < procs; p++) {
		pid[p] = fork();
		if (pid[p] == 0) {
			void *ctx = sy->open();
			uint64_t rng = 88172645463325252ull + (uint64_t)p * 7919, fresh = 0,
				 ops = 0, bad = 0;
			struct op batch[MAX_BATCH];
			if (!ctx)
				_exit(1);
			/* Warm up first: a new process faults in every page it
			 * touches, which on some virtual machines costs microseconds
			 * a page and would dominate a short run. */
			uint64_t warm = now_ns() + 300000000ull;
			while (now_ns() < warm && !SH->go) {
				gen_ops(work == W_ADD ? W_READ : work, p, &rng, &fresh, klen, batch,
					sy->batch);
				sy->run(ctx, batch, sy->batch);
			}
			while (!SH->go)
				;
			while (!SH->stop) {
				gen_ops(work, p, &rng, &fresh, klen, batch, sy->batch);
				bad += (uint64_t)sy->run(ctx, batch, sy->batch);
				ops += (uint64_t)sy->batch;
			}
			SH->ops[p] = ops;
			SH->bad[p] = bad;
			sy->close(ctx);
			_exit(0);
		}
	}
	usleep(350000); /* the warm-up */
	uint64_t t0 = now_ns();
	SH->go = 1;
	usleep((useconds_t)(duration * 1e6));
	SH->stop = 1;
	uint64_t total = 0, bad = 0;
	int failed = 0;
	for (int p = 0; p < procs; p++) {
		int st;
		waitpid(pid[p], &st, 0);
		failed |= !WIFEXITED(st) || WEXITSTATUS(st);
		total += SH->ops[p];
		bad += SH->bad[p];
	}
	uint64_t t1 = now_ns();
	SH->fresh_base += 100000000ull; /* fresh keys never repeat across runs */
	if (failed || bad) {
		fprintf(stderr, "setbench: %s %s: %s (%llu failed ops)\n", sy->name,
			work_name[work], failed ? "worker failed" : "errors",
			(unsigned long long)bad);
		return -1;
	}
	/* The stop flag is seen within one batch: count the wall time. */
	return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* --- copy, snapshot, memory ------------------------------------------------------------- */

static void bench_copy_snapshot(size_t klen)
{
	struct shset_stats st;
	shset_stats(the_set, &st);
	double mb = (double)st.heap_bytes / 1e6;
	char path[128];

	/* A plain memcpy of the same bytes into faulted-in memory. */
	uint8_t *src = malloc(st.heap_bytes), *dst = malloc(st.heap_bytes);
	memset(src, 1, st.heap_bytes);
	memset(dst, 2, st.heap_bytes);
	uint64_t t0 = now_ns();
	memcpy(dst, src, st.heap_bytes);
	__asm__ volatile("" : : "r"(dst) : "memory"); /* the copy must happen */
	uint64_t memcpy_ns = now_ns() - t0;
	free(src);
	free(dst);

	shset *c;
	t0 = now_ns();
	shset_copy(the_set, &c);
	uint64_t copy_ns = now_ns() - t0, copy_hold = set_last_hold_ns();
	shset_close(c);

	snprintf(path, sizeof(path), "%s/bench.shs", tmpdir);
	t0 = now_ns();
	shset_save(the_set, path);
	uint64_t save_ns = now_ns() - t0, save_hold = set_last_hold_ns();
	struct stat fs;
	stat(path, &fs);
	double fmb = (double)fs.st_size / 1e6;
	t0 = now_ns();
	shset_save_ex(the_set, path, SHSET_SAVE_NO_URING);
	uint64_t save_plain_ns = now_ns() - t0;
	shset *l;
	t0 = now_ns();
	setenv("SHSET_NO_IO_URING", "0", 1);
	shset_load(&l, path, NULL);
	uint64_t load_ns = now_ns() - t0;
	shset_close(l);

	printf("\n  copy and snapshot, %zu-byte keys (%.1f MB used heap, %.1f MB snapshot file)\n",
	       klen, mb, fmb);
	printf("  %-34s %12s %12s %9s\n", "operation", "MB/s", "lock ms", "x memcpy");
	printf("  %-34s %12.0f %12.2f %8.2fx\n", "memcpy of the used bytes (baseline)",
	       mb / (memcpy_ns / 1e9), memcpy_ns / 1e6, 1.0);
	printf("  %-34s %12.0f %12.2f %8.2fx\n", "shset_copy (lock held)", mb / (copy_ns / 1e9),
	       copy_hold / 1e6, (double)copy_hold / (double)memcpy_ns);
	printf("  %-34s %12.0f %12.2f %8.2fx\n", "shset_save io_uring (lock held)",
	       fmb / (save_ns / 1e9), save_hold / 1e6, (double)save_hold / (double)memcpy_ns);
	printf("  %-34s %12.0f %12s %9s\n", "shset_save fallback", fmb / (save_plain_ns / 1e9), "",
	       "");
	printf("  %-34s %12.0f %12s %9s\n", "shset_load io_uring", fmb / (load_ns / 1e9), "", "");
	if (csv) {
		fprintf(csv, "copy,%zu,memcpy,MB/s,%.1f,1\n", klen, mb / (memcpy_ns / 1e9));
		fprintf(csv, "copy,%zu,shset_copy lock hold,ms,%.3f,%.3f\n", klen, copy_hold / 1e6,
			(double)copy_hold / (double)memcpy_ns);
		fprintf(csv, "copy,%zu,shset_save lock hold,ms,%.3f,%.3f\n", klen, save_hold / 1e6,
			(double)save_hold / (double)memcpy_ns);
		fprintf(csv, "copy,%zu,shset_save io_uring,MB/s,%.1f,\n", klen,
			fmb / (save_ns / 1e9));
		fprintf(csv, "copy,%zu,shset_save fallback,MB/s,%.1f,\n", klen,
			fmb / (save_plain_ns / 1e9));
		fprintf(csv, "copy,%zu,shset_load,MB/s,%.1f,\n", klen, fmb / (load_ns / 1e9));
	}
}

static void bench_memory(size_t klen, uint64_t redis_mem)
{
	struct shset_stats st;
	char path[160];
	struct stat fs;

	shset_stats(the_set, &st);
	snprintf(path, sizeof(path), "%s/lmdb/data.mdb", tmpdir);
	printf("\n  memory per key, %u %zu-byte keys\n", PRELOAD, klen);
	printf("  %-34s %12s\n", "system", "bytes/key");
	printf("  %-34s %12.1f\n", "shset (memfd pages)", (double)st.mem_bytes / st.count);
	if (have_redis)
		printf("  %-34s %12.1f\n", "redis (INFO used_memory)", (double)redis_mem / PRELOAD);
	if (have_lmdb && stat(path, &fs) == 0)
		printf("  %-34s %12.1f\n", "lmdb (data.mdb blocks)",
		       (double)fs.st_blocks * 512 / PRELOAD);
	if (csv) {
		fprintf(csv, "memory,%zu,shset,bytes/key,%.1f,\n", klen,
			(double)st.mem_bytes / st.count);
		if (have_redis)
			fprintf(csv, "memory,%zu,redis,bytes/key,%.1f,\n", klen,
				(double)redis_mem / PRELOAD);
		if (have_lmdb && stat(path, &fs) == 0)
			fprintf(csv, "memory,%zu,lmdb,bytes/key,%.1f,\n", klen,
				(double)fs.st_blocks * 512 / PRELOAD);
	}
}

int main(int argc, char **argv)
{
	int quick = 0;
	const char *csv_path = NULL, *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv_path = argv[++i];
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: setbench [--quick] [--csv FILE] [--only SYSTEM]\n");
			return 2;
		}
	}
	if (quick)
		duration = 0.3;
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/setbench-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	if (csv_path) {
		csv = fopen(csv_path, "w");
		if (!csv)
			return 1;
		fprintf(csv, "workload,key_bytes,system,procs_or_metric,value,ratio\n");
	}
	SH = mmap(NULL, sizeof(*SH), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pt_mutex = mmap(NULL, sizeof(*pt_mutex), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(pt_mutex, &a);
	struct shset_opts so = {.capacity = PRELOAD};
	/* One shard: the table proper, as big as the set may grow (by default
	 * the region would be 16 shards, and this one table would have only
	 * the first shard's 512 MiB: the add-only runs filled it). */
	struct region_opts ro = {.log_bytes = 1 << 20, .nshards = 1};
	if (shset_create(&the_set, &so) || region_create(&pt_region, &ro) ||
	    table_init(pt_region, PRELOAD))
		return 1;
	pt_txmem = malloc(tx_size());
	have_redis = start_redis();
	if (!have_redis)
		fprintf(stderr, "setbench: redis-server not available; its rows are skipped\n");

	printf("setbench (%s): %ld cpus, %u keys preloaded, %.1f s per run; ratio = shset's "
	       "advantage over the row: shset's throughput / the row's (above 1x shset is "
	       "ahead)\n",
	       quick ? "quick" : "full", sysconf(_SC_NPROCESSORS_ONLN), PRELOAD, duration);
	size_t klens[] = {16, 64};
	int nk = quick ? 1 : 2;
	int procs[] = {1, 2, 4};
	for (int ki = 0; ki < nk; ki++) {
		uint64_t redis_mem = 0;
		preload(klens[ki], &redis_mem);
		for (int w = 0; w < NWORK; w++) {
			printf("\n  %s, %zu-byte keys\n", work_name[w], klens[ki]);
			printf("  %-16s", "system");
			for (int pi = 0; pi < 3; pi++)
				printf(" %9dp Mops/s %7s", procs[pi], "ratio");
			puts("");
			double base[3];
			for (int s = 0; s < NSYS; s++) {
				if ((s == S_REDIS || s == S_REDIS_PIPE) && !have_redis)
					continue;
				if ((s == S_LMDB || s == S_LMDB_BATCH) && !have_lmdb)
					continue;
				if (only && strcmp(only, systems[s].name) && s != S_SHSET)
					continue;
				printf("  %-16s", systems[s].name);
				for (int pi = 0; pi < 3; pi++) {
					double m = run_work(s, w, procs[pi], klens[ki]);
					if (s == S_SHSET)
						base[pi] = m;
					printf(" %16.3f %6.1fx", m, m > 0 ? base[pi] / m : 0);
					fflush(stdout);
					if (csv)
						fprintf(csv, "%s,%zu,%s,%d,%.4f,%.3f\n",
							work_name[w], klens[ki], systems[s].name,
							procs[pi], m, m > 0 ? base[pi] / m : 0);
				}
				puts("");
			}
		}
		bench_memory(klens[ki], redis_mem);
		bench_copy_snapshot(klens[ki]);
	}
	if (redis_pid > 0) {
		kill(redis_pid, SIGTERM);
		waitpid(redis_pid, NULL, 0);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "setbench: could not remove %s\n", tmpdir);
	if (csv)
		fclose(csv);
	return 0;
}
