/* SPDX-License-Identifier: MIT */
/* demo.c - `shset demo`: the whole story on one machine, with a summary. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "inspect.h"

struct wres {
	uint64_t ops, ns, errors, batches;
};

#define DEMO_BATCH 5000

/* An ordinary worker: add, check, remove; leaves every even key. */
static struct wres demo_worker(shset *s, int w, long keys)
{
	struct wres r = {0};
	char k[32];
	uint64_t t0 = mono_ns();

	for (long i = 0; i < keys; i++) {
		int n = snprintf(k, sizeof(k), "w%d-%ld", w, i);
		r.errors += shset_add(s, k, (size_t)n) != 1;
		r.errors += shset_contains(s, k, (size_t)n) != 1;
		r.ops += 2;
		if (i % 2) {
			r.errors += shset_remove(s, k, (size_t)n) != 1;
			r.ops++;
		}
	}
	r.ns = mono_ns() - t0;
	return r;
}

/* The victim: big atomic batches, acknowledged one by one, until killed.
 * It first tells its process slot, so the demo can kill it exactly while
 * it holds the lock. */
static void demo_victim(shset *s, int ack)
{
	static char keys[DEMO_BATCH][24];
	const void *kp[DEMO_BATCH];
	size_t kl[DEMO_BATCH];
	uint64_t slot = (uint64_t)shset_slot(s);

	if (write(ack, &slot, sizeof(slot)) != sizeof(slot))
		_exit(4);
	for (uint64_t b = 0;; b++) {
		for (int j = 0; j < DEMO_BATCH; j++) {
			kl[j] = (size_t)snprintf(keys[j], sizeof(keys[j]), "v%llu-%d",
						 (unsigned long long)b, j);
			kp[j] = keys[j];
		}
		if (shset_add_batch(s, kp, kl, DEMO_BATCH) != DEMO_BATCH)
			_exit(3);
		if (write(ack, &b, sizeof(b)) != sizeof(b))
			_exit(4);
	}
}

static int wait_for_server(const char *sock, pid_t server)
{
	for (int i = 0; i < 500; i++) {
		int c = sock_connect(sock);
		if (c >= 0) {
			close(c);
			return 0;
		}
		if (waitpid(server, NULL, WNOHANG) == server)
			return -ECHILD;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

int cmd_demo(struct opts *o)
{
	long nw = o->workers ? o->workers : 2 * sysconf(_SC_NPROCESSORS_ONLN);
	long keys = o->keys ? o->keys : 200000;
	char dir[] = "/tmp/shset-demo-XXXXXX", sock[64], snap[64];

	if (nw < 2 || nw > 200 || keys < 1000 || keys > 100000000) {
		fprintf(stderr, "%s demo: --workers must be 2..200 and --keys 1000..1e8\n", cmd);
		return EXIT_USAGE;
	}
	if (!mkdtemp(dir))
		return fail(EXIT_IO, "mkdtemp", errno);
	snprintf(sock, sizeof(sock), "%s/sock", dir);
	snprintf(snap, sizeof(snap), "%s/demo.shs", dir);
	printf("shset demo in %s: %ld processes share one set through %s\n\n", dir, nw, sock);
	fflush(stdout);

	/* 1. The server. */
	pid_t server = fork();
	if (server == 0) {
		struct opts so = {.client.path = sock, .mode = -1, .quiet = 1};
		_exit(cmd_serve(&so));
	}
	/* From here every early exit goes through `abort_demo`, which stops
	 * the server and the workers and removes the directory. */
	pid_t *pids = NULL;
	shset *s = NULL, *c = NULL;
	int code = 0, res[2] = {-1, -1}, ack[2] = {-1, -1};
	if (server < 0) {
		code = fail(EXIT_IO, "fork", errno);
		goto abort_demo;
	}
	if (wait_for_server(sock, server)) {
		code = fail(EXIT_CONNECT, "server did not start", ETIMEDOUT);
		goto abort_demo;
	}

	/* 2. Workers, each receiving the set's fd from the server. */
	if (pipe(res) || pipe(ack)) {
		code = fail(EXIT_IO, "pipe", errno);
		goto abort_demo;
	}
	pids = calloc((size_t)nw, sizeof(pid_t));
	if (!pids) {
		code = fail(EXIT_IO, "workers", ENOMEM);
		goto abort_demo;
	}
	uint64_t t0 = mono_ns();
	for (long w = 0; w < nw; w++) {
		pids[w] = fork();
		if (pids[w] < 0) {
			code = fail(EXIT_IO, "fork", errno);
			goto abort_demo;
		}
		if (pids[w] == 0) {
			struct opts co = {
			    .client = {.path = sock, .trust = {-1}, .timeout_ms = -1}};
			shset *s;
			/* Only the victim may hold the ack pipe open. */
			close(ack[0]);
			close(res[0]);
			if (w != 0)
				close(ack[1]);
			if (open_served(&co, &s))
				_exit(1);
			if (w == 0)
				demo_victim(s, ack[1]);
			struct wres r = demo_worker(s, (int)w, keys);
			if (write(res[1], &r, sizeof(r)) != sizeof(r))
				_exit(2);
			_exit(0);
		}
	}
	close(ack[1]);
	close(res[1]);
	ack[1] = res[1] = -1;

	/* 3. Kill the victim while it holds the lock, mid-batch. */
	struct opts co = {.client = {.path = sock, .trust = {-1}, .timeout_ms = -1}};
	if (open_served(&co, &s)) {
		code = EXIT_CONNECT;
		goto abort_demo;
	}
	uint64_t b, acked = 0, vslot = UINT64_MAX;
	if (read(ack[0], &vslot, sizeof(vslot)) != sizeof(vslot)) {
		code = fail(EXIT_SET, "worker 0", EIO);
		goto abort_demo;
	}
	while (acked < 5 && read(ack[0], &b, sizeof(b)) == sizeof(b))
		acked++;
	struct shset_stats st;
	uint64_t t_kill = 0;
	for (int i = 0; i < 2000000; i++) {
		shset_stats(s, &st);
		if (st.lock.locked && st.lock.owner_slot == (int)vslot) {
			kill(pids[0], SIGKILL);
			t_kill = mono_ns();
			break;
		}
	}
	if (!t_kill) { /* never caught it holding the lock: kill it anyway */
		kill(pids[0], SIGKILL);
		t_kill = mono_ns();
	}
	waitpid(pids[0], NULL, 0);
	while (read(ack[0], &b, sizeof(b)) == sizeof(b))
		acked++;
	/* Recovered when some process has taken the dead owner's lock over
	 * and rolled its batch back. */
	uint64_t t_rec = 0;
	for (int i = 0; i < 1000000 && !t_rec; i++) {
		shset_stats(s, &st);
		if (st.lock.owner_died > 0 || !st.lock.locked || st.lock.owner_slot != (int)vslot)
			t_rec = mono_ns();
	}
	int verr = shset_verify(s);

	/* 4. The others finish. */
	struct wres tot = {0};
	printf("  %-10s %12s %10s %12s\n", "process", "operations", "seconds", "ops/s");
	for (long w = 1; w < nw; w++) {
		struct wres r;
		if (read(res[0], &r, sizeof(r)) != sizeof(r))
			r = (struct wres){0, 1, 1, 0};
		printf("  worker %-3ld %12llu %10.2f %12.0f\n", w, (unsigned long long)r.ops,
		       r.ns / 1e9, r.ops / (r.ns / 1e9));
		tot.ops += r.ops;
		tot.errors += r.errors;
		if (r.ns > tot.ns)
			tot.ns = r.ns;
	}
	for (long w = 1; w < nw; w++)
		waitpid(pids[w], NULL, 0);
	uint64_t t_end = mono_ns();
	printf("  %-10s %12llu %10.2f %12.0f\n\n", "all", (unsigned long long)tot.ops,
	       (t_end - t0) / 1e9, tot.ops / ((t_end - t0) / 1e9));

	/* 5. Every acknowledged batch is whole; the one in flight is all or
	 *    nothing. */
	long long size = shset_size(s);
	long long others = (long long)(nw - 1) * (keys - keys / 2);
	long long victim = size - others;
	int whole = victim == (long long)acked * DEMO_BATCH ||
		    victim == (long long)(acked + 1) * DEMO_BATCH;
	shset_stats(s, &st);
	printf("  worker 0 killed with SIGKILL after %llu acknowledged batches of %d keys\n",
	       (unsigned long long)acked, DEMO_BATCH);
	/* One takeover per shard whose lock the killed worker held: a batch
	 * over several shards holds them all. */
	printf("  shard locks taken over from the dead: %llu; shards repaired: %llu\n",
	       (unsigned long long)st.lock.owner_died, (unsigned long long)st.repairs);
	printf("  lock recovered %.1f ms after the kill; verify: %s\n",
	       ((t_rec ? t_rec : t_kill) - t_kill) / 1e6, verr ? strerror(-verr) : "clean");
	printf("  worker 0 left %lld keys: %s\n", victim,
	       whole ? "every acknowledged batch, the one in flight all or nothing" : "MISMATCH");

	/* 6. An atomic copy and a snapshot. */
	uint64_t tc = mono_ns();
	int cerr = shset_copy(s, &c);
	uint64_t tc1 = mono_ns();
	if (cerr) {
		code = fail(EXIT_SET, "copy", cerr);
		goto abort_demo;
	}
	int serr = shset_save(s, snap);
	uint64_t tc2 = mono_ns();
	struct stat sst = {0};
	stat(snap, &sst);
	printf("  atomic copy: %lld keys in %.1f ms, equal to the set: %s\n", shset_size(c),
	       (tc1 - tc) / 1e6, shset_equal(s, c) == 1 ? "yes" : "NO");
	printf("  snapshot: %s, %lld bytes in %.1f ms (%s)\n\n", serr ? strerror(-serr) : snap,
	       (long long)sst.st_size, (tc2 - tc1) / 1e6,
	       st.saves_io_uring || !serr ? "io_uring" : "fallback");
	fflush(stdout);

	/* 7. Inspect the snapshot. */
	struct inspect_opts io = {.fmt = KM_TEXT};
	int icode = inspect_snapshot(snap, &io, stdout);

	/* 8. Stop the server: it removes its socket. */
	kill(server, SIGTERM);
	int sst2;
	waitpid(server, &sst2, 0);
	int sock_gone = access(sock, F_OK) != 0;
	printf("\n  final size %lld keys, %.1f bytes per key in memory; server stopped (%s)\n",
	       size, st.bytes_per_key, sock_gone ? "socket removed" : "SOCKET LEFT");
	shset_close(c);
	shset_close(s);
	if (!o->keep) {
		unlink(snap);
		rmdir(dir);
	}
	free(pids);
	close(ack[0]);
	close(res[0]);
	int ok = !verr && whole && !tot.errors && !serr && !icode && sock_gone && WIFEXITED(sst2) &&
		 WEXITSTATUS(sst2) == 0;
	printf("  %s\n", ok ? "demo OK" : "demo FAILED");
	return ok ? 0 : EXIT_SET;

abort_demo:
	for (long w = 0; pids && w < nw; w++)
		if (pids[w] > 0) {
			kill(pids[w], SIGKILL);
			waitpid(pids[w], NULL, 0);
		}
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	for (int i = 0; i < 2; i++) {
		if (res[i] >= 0)
			close(res[i]);
		if (ack[i] >= 0)
			close(ack[i]);
	}
	shset_close(c);
	shset_close(s);
	free(pids);
	unlink(snap);
	unlink(sock);
	rmdir(dir);
	printf("  demo FAILED\n");
	return code;
}
