/* SPDX-License-Identifier: MIT */
/*
 * inspect.c - what shset-inspect prints, for snapshot files and live sets.
 *
 * Live sets are mapped read-only and read without the lock: the table
 * figures are a racy but bounds-checked look, and keys and --verify use a
 * copy taken between two equal seqcounts.  Nothing is written to the set,
 * and no process slot is taken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "inspect.h"
#include "region.h"
#include "shset.h"
#include "snapshot.h"
#include "table.h"

#define NBUCKETS 8
static const char *bucket_name[NBUCKETS] = {"0",     "1-8",    "9-16",	   "17-20",
					    "21-64", "65-256", "257-4096", "4097-65535"};

static int bucket(size_t len)
{
	static const size_t top[NBUCKETS] = {0, 8, 16, 20, 64, 256, 4096, 65535};
	int b = 0;
	while (b < NBUCKETS - 1 && len > top[b])
		b++;
	return b;
}

static void print_time(FILE *f, uint64_t ns, int json)
{
	char buf[64];
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, json ? "\"%s\"" : "%s", buf);
}

static void print_hist(FILE *f, const uint64_t *h, int json)
{
	if (json) {
		fputs("{", f);
		for (int b = 0; b < NBUCKETS; b++)
			fprintf(f, "%s\"%s\": %llu", b ? ", " : "", bucket_name[b],
				(unsigned long long)h[b]);
		fputs("}", f);
		return;
	}
	fputs("  Key lengths:\n", f);
	for (int b = 0; b < NBUCKETS; b++)
		if (h[b])
			fprintf(f, "    %-11s %llu\n", bucket_name[b], (unsigned long long)h[b]);
}

static const char *key_type_name(uint32_t t)
{
	switch (t) {
	case SHSET_KEYS_BYTES:
		return "bytes";
	case SHSET_KEYS_STR:
		return "str";
	case SHSET_KEYS_INT:
		return "int";
	}
	return "unknown";
}

static int cannot(enum key_mode m)
{
	fflush(stdout);
	fprintf(stderr, "shset-inspect: %s\n", keyfmt_cannot(m));
	return EXIT_IO;
}

/* Opens @path as open_regular does, saying why it will not. */
static int open_checked(const char *path)
{
	const char *what;
	int fd = open_regular(path, &what);

	if (fd >= 0)
		return fd;
	if (what)
		fprintf(stderr, "shset-inspect: %s: is %s, not a snapshot file or a set\n", path,
			what);
	else
		fprintf(stderr, "shset-inspect: %s: %s\n", path, strerror(-fd));
	return fd;
}

/* --- snapshot files --------------------------------------------------------------- */

/* @fd is a regular file (open_regular); @path names it in the output. */
static int inspect_snapshot_fd(int fd, const char *path, const struct inspect_opts *o, FILE *f)
{
	uint8_t *img;
	size_t len;
	int used;
	char self[64];

	/* Read the file already checked, not whatever @path names by now. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	int err = snap_read_file(self, &img, &len, 0, &used);
	if (err) {
		fprintf(stderr, "shset-inspect: %s: %s\n", path, strerror(-err));
		return EXIT_IO;
	}
	struct snap_hdr h = {0};
	enum snap_defect d = snap_check(img, len, &h);
	/* Past a bad magic the header is someone else's bytes: no fields. */
	int fields = len >= SNAP_HDR_SIZE && d != SNAP_BAD_MAGIC;
	int hdr_ok = len >= SNAP_HDR_SIZE && snap_crc32c(0, img, 60) == h.hdr_crc;
	int body_ok = hdr_ok && h.body_len == len - SNAP_HDR_SIZE &&
		      snap_crc32c(0, img + SNAP_HDR_SIZE, h.body_len) == h.body_crc;
	uint64_t hist[NBUCKETS] = {0};
	if (d == SNAP_OK) {
		size_t pos = SNAP_HDR_SIZE, kl;
		const uint8_t *k;
		while (snap_next(img, len, &pos, &k, &kl) == 1)
			hist[bucket(kl)]++;
	}
	if (o->json) {
		fputs("{\"kind\": \"snapshot\", \"path\": ", f);
		json_text(f, path, strlen(path));
		fprintf(f, ", \"file_bytes\": %zu, \"status\": \"%s\", \"defect\": ", len,
			d == SNAP_OK ? "sound" : "corrupt");
		if (d == SNAP_OK)
			fputs("null", f);
		else
			json_text(f, snap_defect_str(d), strlen(snap_defect_str(d)));
		if (fields) {
			fprintf(f,
				", \"version\": %u, \"sorted\": %s, \"count\": %llu, "
				"\"key_bytes\": %llu, \"body_bytes\": %llu, \"created\": ",
				h.version, (h.flags & SNAP_FLAG_SORTED) ? "true" : "false",
				(unsigned long long)h.count, (unsigned long long)h.key_bytes,
				(unsigned long long)h.body_len);
			print_time(f, h.created_ns, 1);
			fprintf(f, ", \"header_checksum\": \"%s\", \"body_checksum\": \"%s\"",
				hdr_ok ? "ok" : "bad", body_ok ? "ok" : "bad");
		}
		if (d == SNAP_OK) {
			fputs(", \"key_lengths\": ", f);
			print_hist(f, hist, 1);
		}
		if (o->keys && d == SNAP_OK) {
			fputs(", \"keys\": [", f);
			size_t pos = SNAP_HDR_SIZE, kl;
			const uint8_t *k;
			int first = 1;
			while (snap_next(img, len, &pos, &k, &kl) == 1) {
				fputs(first ? "" : ", ", f);
				first = 0;
				json_key(f, k, kl);
			}
			fputs("]", f);
		}
		fputs("}\n", f);
	} else if (!o->verify || !o->quiet) {
		fprintf(f, "Snapshot %s\n", path);
		if (fields) {
			fprintf(f, "  Format version: %u%s\n", h.version,
				(h.flags & SNAP_FLAG_SORTED) ? " (sorted)" : "");
			fputs("  Created: ", f);
			print_time(f, h.created_ns, 0);
			fprintf(f, "\n  Keys: %llu\n  Key bytes: %llu\n  Body bytes: %llu\n",
				(unsigned long long)h.count, (unsigned long long)h.key_bytes,
				(unsigned long long)h.body_len);
			fprintf(f, "  Header checksum: %s\n  Body checksum: %s\n",
				hdr_ok ? "ok" : "bad", body_ok ? "ok" : "bad");
		}
		fprintf(f, "  File bytes: %zu\n  Status: %s%s%s\n", len,
			d == SNAP_OK				   ? "sound"
			: (d == SNAP_BAD_MAGIC || d == SNAP_SHORT) ? "not a shset snapshot"
								   : "corrupt",
			d == SNAP_OK ? "" : ": ", d == SNAP_OK ? "" : snap_defect_str(d));
		if (d == SNAP_OK)
			print_hist(f, hist, 0);
		if (o->keys && d == SNAP_OK) {
			size_t pos = SNAP_HDR_SIZE, kl;
			const uint8_t *k;
			while (snap_next(img, len, &pos, &k, &kl) == 1)
				if (key_write(f, o->fmt, k, kl) == KEYFMT_CANNOT) {
					free(img);
					return cannot(o->fmt);
				}
		}
	}
	free(img);
	return d == SNAP_OK ? 0 : (o->verify ? EXIT_NO : EXIT_SET);
}

int inspect_snapshot(const char *path, const struct inspect_opts *o, FILE *f)
{
	int fd = open_checked(path);

	if (fd < 0)
		return EXIT_IO;
	int code = inspect_snapshot_fd(fd, path, o, f);
	close(fd);
	return code;
}

/* --- live sets --------------------------------------------------------------------- */

static void print_uuid(FILE *f, const uint8_t *u)
{
	for (int i = 0; i < 16; i++)
		fprintf(f, "%02x%s", u[i], (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

int inspect_live(int fd, const char *name, const struct inspect_opts *o, FILE *f)
{
	struct region *r;
	int err = region_attach(&r, fd, 1);

	if (err) {
		fprintf(stderr, "shset-inspect: %s: not a live set: %s\n", name, strerror(-err));
		return EXIT_SET;
	}
	struct table_stats ts;
	struct shset_lock_state ls;
	struct stat fs;
	table_stats(r, &ts);
	shset_lock_state(r->lock, &ls);
	fstat(r->fd, &fs);
	struct table_snap sn = {0};
	int snap_err = 0, verdict = 0;
	uint64_t hist[NBUCKETS] = {0};
	{
		snap_err = table_snap_optimistic(r, &sn, 2000000000ull);
		if (!snap_err) {
			verdict = table_snap_verify(&sn);
			uint64_t pos = 0;
			const uint8_t *k;
			size_t kl;
			int rr;
			while ((rr = table_snap_next(&sn, &pos, &k, &kl)) == 1)
				hist[bucket(kl)]++;
			if (rr < 0)
				verdict = rr;
		}
	}
	const char *status = snap_err == -EAGAIN ? "busy (no quiet moment to copy)"
			     : snap_err		 ? "corrupt"
			     : verdict		 ? "corrupt"
						 : "sound";
	struct shset_lease_slot *slots = region_slots(r);

	if (o->json) {
		fputs("{\"kind\": \"live\", \"path\": ", f);
		json_text(f, name, strlen(name));
		fprintf(f, ", \"version\": %u, \"key_type\": \"%s\", \"uuid\": \"", r->hdr->version,
			key_type_name(r->key_type));
		print_uuid(f, r->uuid);
		fputs("\", \"created\": ", f);
		print_time(f, r->hdr->created_ns, 1);
		fprintf(
		    f,
		    ", \"file_bytes\": %llu, \"max_bytes\": %llu, \"mem_bytes\": %llu, "
		    "\"count\": %llu, \"capacity\": %llu, \"tombstones\": %llu, \"load\": %.4f, "
		    "\"key_bytes\": %llu, \"arena_bytes\": %llu, \"heap_bytes\": %llu, "
		    "\"log_capacity\": %llu, \"status\": \"%s\", ",
		    (unsigned long long)ts.file_bytes, (unsigned long long)r->map_size,
		    (unsigned long long)fs.st_blocks * 512, (unsigned long long)ts.count,
		    (unsigned long long)ts.capacity, (unsigned long long)ts.tombstones,
		    ts.capacity ? (double)(ts.count + ts.tombstones) / (double)ts.capacity : 0.0,
		    (unsigned long long)ts.key_bytes, (unsigned long long)ts.arena_bytes,
		    (unsigned long long)ts.heap_bytes, (unsigned long long)ts.log_capacity, status);
		fprintf(f,
			"\"lock\": {\"locked\": %s, \"owner_slot\": %d, \"waiters\": %s, "
			"\"inconsistent\": %s, \"acquisitions\": %llu, \"contended\": %llu, "
			"\"futex_waits\": %llu, \"owner_died\": %llu}, ",
			ls.locked ? "true" : "false", ls.owner_slot, ls.waiters ? "true" : "false",
			ls.inconsistent ? "true" : "false", (unsigned long long)ls.acquisitions,
			(unsigned long long)ls.contended, (unsigned long long)ls.futex_waits,
			(unsigned long long)ls.owner_died);
		fprintf(f,
			"\"counters\": {\"txns\": %llu, \"repairs\": %llu, \"resizes\": %llu, "
			"\"aborts\": %llu}, \"processes\": [",
			(unsigned long long)ts.txns, (unsigned long long)ts.repairs,
			(unsigned long long)ts.resizes, (unsigned long long)ts.aborts);
		int first = 1;
		for (uint32_t i = 0; i < r->nslots; i++) {
			uint32_t pid = __atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED);
			if (!pid)
				continue;
			fprintf(f, "%s{\"slot\": %u, \"pid\": %u, \"alive\": %s}",
				first ? "" : ", ", i, pid,
				shset_lease_probe(r->fd, i) == 1 ? "true" : "false");
			first = 0;
		}
		fputs("], \"key_lengths\": ", f);
		print_hist(f, hist, 1);
		if (o->keys && !snap_err) {
			fputs(", \"keys\": [", f);
			uint64_t pos = 0;
			const uint8_t *k;
			size_t kl;
			first = 1;
			while (table_snap_next(&sn, &pos, &k, &kl) == 1) {
				fputs(first ? "" : ", ", f);
				first = 0;
				json_key(f, k, kl);
			}
			fputs("]", f);
		}
		fputs("}\n", f);
	} else if (!o->verify || !o->quiet) {
		fprintf(f, "Live set %s\n  Format version: %u\n  Key type: %s\n  UUID: ", name,
			r->hdr->version, key_type_name(r->key_type));
		print_uuid(f, r->uuid);
		fputs("\n  Created: ", f);
		print_time(f, r->hdr->created_ns, 0);
		fprintf(f,
			"\n  File bytes: %llu (max %llu)\n  Memory bytes: %llu\n"
			"  Keys: %llu\n  Table: %llu slots, load %.3f, %llu tombstones\n"
			"  Key bytes: %llu\n  Arena bytes: %llu\n  Heap bytes: %llu\n",
			(unsigned long long)ts.file_bytes, (unsigned long long)r->map_size,
			(unsigned long long)fs.st_blocks * 512, (unsigned long long)ts.count,
			(unsigned long long)ts.capacity,
			ts.capacity ? (double)(ts.count + ts.tombstones) / (double)ts.capacity
				    : 0.0,
			(unsigned long long)ts.tombstones, (unsigned long long)ts.key_bytes,
			(unsigned long long)ts.arena_bytes, (unsigned long long)ts.heap_bytes);
		if (ls.locked)
			fprintf(f, "  Lock: held by slot %d%s%s\n", ls.owner_slot,
				ls.waiters ? ", waiters" : "",
				ls.inconsistent ? ", awaiting repair" : "");
		else
			fprintf(f, "  Lock: free%s\n", ls.inconsistent ? ", awaiting repair" : "");
		fprintf(f,
			"  Lock counters: %llu acquisitions, %llu contended, %llu futex waits, "
			"%llu owner deaths\n",
			(unsigned long long)ls.acquisitions, (unsigned long long)ls.contended,
			(unsigned long long)ls.futex_waits, (unsigned long long)ls.owner_died);
		fprintf(
		    f,
		    "  Transactions: %llu committed, %llu repaired, %llu aborted, %llu resizes\n",
		    (unsigned long long)ts.txns, (unsigned long long)ts.repairs,
		    (unsigned long long)ts.aborts, (unsigned long long)ts.resizes);
		fprintf(f, "  Processes (%u slots):\n", r->nslots);
		for (uint32_t i = 0; i < r->nslots; i++) {
			uint32_t pid = __atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED);
			if (pid)
				fprintf(f, "    slot %u: pid %u, %s\n", i, pid,
					shset_lease_probe(r->fd, i) == 1 ? "alive" : "gone");
		}
		fprintf(f, "  Status: %s\n", status);
		print_hist(f, hist, 0);
		if (o->keys && !snap_err) {
			uint64_t pos = 0;
			const uint8_t *k;
			size_t kl;
			while (table_snap_next(&sn, &pos, &k, &kl) == 1)
				if (key_write(f, o->fmt, k, kl) == KEYFMT_CANNOT) {
					table_snap_free(&sn);
					region_close(r);
					return cannot(o->fmt);
				}
		}
	}
	table_snap_free(&sn);
	region_close(r);
	if (snap_err == -EAGAIN)
		return EXIT_SET;
	return (snap_err || verdict) ? (o->verify ? EXIT_NO : EXIT_SET) : 0;
}

int inspect_path(const char *path, const struct inspect_opts *o, FILE *f)
{
	int fd = open_checked(path);

	if (fd < 0)
		return EXIT_IO;
	struct region_hdr h;
	int probe = region_probe_fd(fd, &h, NULL);
	int code;
	/* A memfd is a live set; any other regular file is read as a
	 * snapshot file. */
	if (probe == -EMEDIUMTYPE)
		code = inspect_snapshot_fd(fd, path, o, f);
	else
		code = inspect_live(fd, path, o, f);
	close(fd);
	return code;
}
