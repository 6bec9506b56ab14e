/* SPDX-License-Identifier: MIT */
/*
 * inspect.c - what shset-inspect prints, for snapshot files and live sets.
 *
 * Live sets are mapped read-only and read without the lock: the table
 * figures are a racy but bounds-checked look, and keys and --verify use a
 * copy taken between two equal seqcounts.  Nothing is written to the set,
 * and no process slot is taken.  Only the public API (shset.h and
 * shset/inspect.h) is used, as mdb_stat uses only lmdb.h.
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
#include "shset.h"
#include "shset/inspect.h"

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
	shset_snapfile *sf;
	struct shset_snapfile_info si;
	char self[64];

	/* Read the file already checked, not whatever @path names by now. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	int err = shset_snapfile_open(&sf, self);
	if (!err && (err = shset_snapfile_info(sf, &si)))
		shset_snapfile_close(sf);
	if (err) {
		fprintf(stderr, "shset-inspect: %s: %s\n", path, strerror(-err));
		return EXIT_IO;
	}
	/* Past a bad magic the header is someone else's bytes: no fields. */
	int fields = si.have_header && si.magic_ok;
	int sound = si.sound;
	uint64_t hist[NBUCKETS] = {0}, pos = 0;
	const void *k;
	size_t kl;
	if (sound)
		while (shset_snapfile_next(sf, &pos, &k, &kl) == 1)
			hist[bucket(kl)]++;
	if (o->json) {
		fputs("{\"kind\": \"snapshot\", \"path\": ", f);
		json_text(f, path, strlen(path));
		fprintf(f, ", \"file_bytes\": %llu, \"status\": \"%s\", \"defect\": ",
			(unsigned long long)si.file_bytes, sound ? "sound" : "corrupt");
		if (sound)
			fputs("null", f);
		else
			json_text(f, si.defect, strlen(si.defect));
		if (fields) {
			fprintf(f,
				", \"version\": %u, \"key_type\": \"%s\", \"sorted\": %s, "
				"\"count\": %llu, \"key_bytes\": %llu, \"body_bytes\": %llu, "
				"\"created\": ",
				si.version, key_type_name(si.key_type),
				/* The file records SHSET_SAVE_SORTED as given. */
				(si.flags & SHSET_SAVE_SORTED) ? "true" : "false",
				(unsigned long long)si.count, (unsigned long long)si.key_bytes,
				(unsigned long long)si.body_len);
			print_time(f, si.created_ns, 1);
			fprintf(f, ", \"header_checksum\": \"%s\", \"body_checksum\": \"%s\"",
				si.header_crc_ok ? "ok" : "bad",
				si.body_crc_ok == 1 ? "ok"
				: si.body_crc_ok    ? "unread"
						    : "bad");
		}
		if (sound) {
			fputs(", \"key_lengths\": ", f);
			print_hist(f, hist, 1);
		}
		if (o->keys && sound) {
			fputs(", \"keys\": [", f);
			int first = 1;
			pos = 0;
			while (shset_snapfile_next(sf, &pos, &k, &kl) == 1) {
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
			fprintf(f, "  Format version: %u%s\n  Key type: %s\n", si.version,
				(si.flags & SHSET_SAVE_SORTED) ? " (sorted)" : "",
				key_type_name(si.key_type));
			fputs("  Created: ", f);
			print_time(f, si.created_ns, 0);
			fprintf(f, "\n  Keys: %llu\n  Key bytes: %llu\n  Body bytes: %llu\n",
				(unsigned long long)si.count, (unsigned long long)si.key_bytes,
				(unsigned long long)si.body_len);
			fprintf(f, "  Header checksum: %s\n  Body checksum: %s\n",
				si.header_crc_ok ? "ok" : "bad",
				si.body_crc_ok == 1 ? "ok"
				: si.body_crc_ok    ? "not read (the header is not sound)"
						    : "bad");
		}
		fprintf(f, "  File bytes: %llu\n  Status: %s%s%s\n",
			(unsigned long long)si.file_bytes,
			sound	       ? "sound"
			: !si.magic_ok ? "not a shset snapshot"
				       : "corrupt",
			sound ? "" : ": ", sound ? "" : si.defect);
		if (sound)
			print_hist(f, hist, 0);
		if (o->keys && sound) {
			pos = 0;
			while (shset_snapfile_next(sf, &pos, &k, &kl) == 1)
				if (key_write(f, o->fmt, k, kl) == KEYFMT_CANNOT) {
					shset_snapfile_close(sf);
					return cannot(o->fmt);
				}
		}
	}
	shset_snapfile_close(sf);
	return sound ? 0 : (o->verify ? EXIT_NO : EXIT_SET);
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
	shset_view *v;
	struct shset_view_info vi;
	int err = shset_view_open(&v, fd);

	if (!err && (err = shset_view_info(v, &vi)))
		shset_view_close(v);
	if (err) {
		fprintf(stderr, "shset-inspect: %s: not a live set: %s\n", name, strerror(-err));
		return EXIT_SET;
	}
	int snap_err = shset_view_take(v, 2000000000ull), walk = 0;
	uint64_t hist[NBUCKETS] = {0}, pos = 0;
	const void *k;
	size_t kl;
	if (snap_err == 0 || snap_err == -EUCLEAN)
		while ((walk = shset_view_next(v, &pos, &k, &kl)) == 1)
			hist[bucket(kl)]++;
	if (!snap_err && walk < 0)
		snap_err = walk;
	const char *status = snap_err == -EAGAIN ? "busy (no quiet moment to copy)"
			     : snap_err		 ? "corrupt"
						 : "sound";
	double load = vi.capacity ? (double)(vi.count + vi.tombstones) / (double)vi.capacity : 0.0;
	struct shset_view_proc pr;

	if (o->json) {
		fputs("{\"kind\": \"live\", \"path\": ", f);
		json_text(f, name, strlen(name));
		fprintf(f, ", \"version\": %u, \"key_type\": \"%s\", \"uuid\": \"", vi.version,
			key_type_name(vi.key_type));
		print_uuid(f, vi.uuid);
		fputs("\", \"created\": ", f);
		print_time(f, vi.created_ns, 1);
		fprintf(f,
			", \"file_bytes\": %llu, \"max_bytes\": %llu, \"mem_bytes\": %llu, "
			"\"count\": %llu, \"capacity\": %llu, \"tombstones\": %llu, \"load\": "
			"%.4f, \"key_bytes\": %llu, \"arena_bytes\": %llu, \"heap_bytes\": %llu, "
			"\"max_procs\": %u, \"status\": \"%s\", ",
			(unsigned long long)vi.file_bytes, (unsigned long long)vi.max_bytes,
			(unsigned long long)vi.mem_bytes, (unsigned long long)vi.count,
			(unsigned long long)vi.capacity, (unsigned long long)vi.tombstones, load,
			(unsigned long long)vi.key_bytes, (unsigned long long)vi.arena_bytes,
			(unsigned long long)vi.heap_bytes, vi.max_procs, status);
		fprintf(f,
			"\"lock\": {\"locked\": %s, \"owner_slot\": %d, \"waiters\": %s, "
			"\"inconsistent\": %s, \"acquisitions\": %llu, \"contended\": %llu, "
			"\"futex_waits\": %llu, \"owner_died\": %llu}, ",
			vi.lock.locked ? "true" : "false", vi.lock.owner_slot,
			vi.lock.waiters ? "true" : "false", vi.lock.inconsistent ? "true" : "false",
			(unsigned long long)vi.lock.acquisitions,
			(unsigned long long)vi.lock.contended,
			(unsigned long long)vi.lock.futex_waits,
			(unsigned long long)vi.lock.owner_died);
		fprintf(f,
			"\"counters\": {\"txns\": %llu, \"repairs\": %llu, \"resizes\": %llu, "
			"\"aborts\": %llu}, \"processes\": [",
			(unsigned long long)vi.txns, (unsigned long long)vi.repairs,
			(unsigned long long)vi.resizes, (unsigned long long)vi.aborts);
		int first = 1;
		for (uint32_t i = 0; i < vi.max_procs && shset_view_proc(v, i, &pr) >= 0; i++) {
			if (!pr.pid)
				continue;
			fprintf(f, "%s{\"slot\": %u, \"pid\": %u, \"alive\": %s}",
				first ? "" : ", ", i, pr.pid, pr.alive ? "true" : "false");
			first = 0;
		}
		fputs("], \"key_lengths\": ", f);
		print_hist(f, hist, 1);
		if (o->keys && !snap_err) {
			fputs(", \"keys\": [", f);
			pos = 0;
			first = 1;
			while (shset_view_next(v, &pos, &k, &kl) == 1) {
				fputs(first ? "" : ", ", f);
				first = 0;
				json_key(f, k, kl);
			}
			fputs("]", f);
		}
		fputs("}\n", f);
	} else if (!o->verify || !o->quiet) {
		fprintf(f, "Live set %s\n  Format version: %u\n  Key type: %s\n  UUID: ", name,
			vi.version, key_type_name(vi.key_type));
		print_uuid(f, vi.uuid);
		fputs("\n  Created: ", f);
		print_time(f, vi.created_ns, 0);
		fprintf(f,
			"\n  File bytes: %llu (max %llu)\n  Memory bytes: %llu\n"
			"  Keys: %llu\n  Table: %llu slots, load %.3f, %llu tombstones\n"
			"  Key bytes: %llu\n  Arena bytes: %llu\n  Heap bytes: %llu\n",
			(unsigned long long)vi.file_bytes, (unsigned long long)vi.max_bytes,
			(unsigned long long)vi.mem_bytes, (unsigned long long)vi.count,
			(unsigned long long)vi.capacity, load, (unsigned long long)vi.tombstones,
			(unsigned long long)vi.key_bytes, (unsigned long long)vi.arena_bytes,
			(unsigned long long)vi.heap_bytes);
		if (vi.lock.locked)
			fprintf(f, "  Lock: held by slot %d%s%s\n", vi.lock.owner_slot,
				vi.lock.waiters ? ", waiters" : "",
				vi.lock.inconsistent ? ", awaiting repair" : "");
		else
			fprintf(f, "  Lock: free%s\n",
				vi.lock.inconsistent ? ", awaiting repair" : "");
		fprintf(f,
			"  Lock counters: %llu acquisitions, %llu contended, %llu futex waits, "
			"%llu owner deaths\n",
			(unsigned long long)vi.lock.acquisitions,
			(unsigned long long)vi.lock.contended,
			(unsigned long long)vi.lock.futex_waits,
			(unsigned long long)vi.lock.owner_died);
		fprintf(
		    f,
		    "  Transactions: %llu committed, %llu repaired, %llu aborted, %llu resizes\n",
		    (unsigned long long)vi.txns, (unsigned long long)vi.repairs,
		    (unsigned long long)vi.aborts, (unsigned long long)vi.resizes);
		fprintf(f, "  Processes (%u slots):\n", vi.max_procs);
		for (uint32_t i = 0; i < vi.max_procs && shset_view_proc(v, i, &pr) >= 0; i++)
			if (pr.pid)
				fprintf(f, "    slot %u: pid %u, %s\n", i, pr.pid,
					pr.alive ? "alive" : "gone");
		fprintf(f, "  Status: %s\n", status);
		print_hist(f, hist, 0);
		if (o->keys && !snap_err) {
			pos = 0;
			while (shset_view_next(v, &pos, &k, &kl) == 1)
				if (key_write(f, o->fmt, k, kl) == KEYFMT_CANNOT) {
					shset_view_close(v);
					return cannot(o->fmt);
				}
		}
	}
	shset_view_close(v);
	if (snap_err == -EAGAIN)
		return EXIT_SET;
	return snap_err ? (o->verify ? EXIT_NO : EXIT_SET) : 0;
}

static const char *value_kind_name(int kind)
{
	static const char *names[] = {"any",   "int",	 "uint",     "float",
				      "bytes", "string", "intarray", "uintarray"};
	return kind >= 0 && kind < (int)(sizeof(names) / sizeof(names[0])) ? names[kind]
									   : "unknown";
}

/* Prints element @i of an array (or the single value, i == 0) in decimal. */
static int value_print_number(FILE *f, shset_value *v, int kind, size_t i)
{
	int64_t si;
	uint64_t ui;
	double d;
	int err = 0;

	switch (kind) {
	case SHSET_VALUE_INT:
		if (!(err = shset_int_load(v, &si)))
			fprintf(f, "%lld", (long long)si);
		break;
	case SHSET_VALUE_UINT:
		if (!(err = shset_uint_load(v, &ui)))
			fprintf(f, "%llu", (unsigned long long)ui);
		break;
	case SHSET_VALUE_FLOAT:
		if (!(err = shset_float_load(v, &d)))
			fprintf(f, "%.17g", d);
		break;
	case SHSET_VALUE_INTARRAY:
		if (!(err = shset_intarray_load(v, i, &si)))
			fprintf(f, "%lld", (long long)si);
		break;
	case SHSET_VALUE_UINTARRAY:
		if (!(err = shset_uintarray_load(v, i, &ui)))
			fprintf(f, "%llu", (unsigned long long)ui);
		break;
	}
	return err;
}

#define VALUE_SHOWN 16 /* array elements and bytes a summary shows */

/*
 * A live shared value or array (shset/values.h): its kind, its value, or
 * its length and first elements.  Attaching reads only: a value's writer
 * slot is claimed on its first store, which inspection never makes.
 */
static int inspect_value(int fd, const char *name, const struct inspect_opts *o, FILE *f)
{
	char self[64];
	shset_value *v;
	struct shset_value_info vi;

	/* Values are attached read-write (their bytes are read through the
	 * writers' seqlock); the path may have been opened read-only. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	int rw = open(self, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	int err = rw < 0 ? -errno : shset_value_attach_fd(&v, rw, SHSET_VALUE_ANY);
	if (rw >= 0)
		close(rw);
	if (err)
		return err;
	int verr = shset_value_info(v, &vi), kind = (int)vi.kind;
	size_t n = vi.length;
	int arr = kind == SHSET_VALUE_INTARRAY || kind == SHSET_VALUE_UINTARRAY;
	int text = kind == SHSET_VALUE_BYTES || kind == SHSET_VALUE_STRING;
	uint8_t *buf = text ? malloc(n ? n : 1) : NULL;
	size_t blen = 0;
	if (text && !buf) {
		shset_value_close(v);
		return -ENOMEM;
	}
	if (text && !verr)
		verr = shset_bytes_load(v, buf, n, &blen);
	if (o->json) {
		fprintf(f, "{\"kind\": \"live value\", \"path\": ");
		json_text(f, name, strlen(name));
		fprintf(f, ", \"type\": \"%s\", \"file_bytes\": %llu", value_kind_name(kind),
			(unsigned long long)vi.file_bytes);
		if (arr)
			fprintf(f, ", \"length\": %zu, \"first\": [", n);
		else if (text)
			fprintf(f, ", \"capacity\": %zu, \"stores\": %llu, \"value\": ", n,
				(unsigned long long)vi.stores);
		else
			fprintf(f, ", \"value\": ");
		if (text && !verr)
			json_key(f, buf, blen);
		else if (text)
			fprintf(f, "null");
		for (size_t i = 0; !text && i < (arr ? (n < VALUE_SHOWN ? n : VALUE_SHOWN) : 1);
		     i++) {
			fprintf(f, "%s", i ? ", " : "");
			if (value_print_number(f, v, kind, i))
				fprintf(f, "null");
		}
		fprintf(f, "%s, \"status\": \"%s\"}\n", arr ? "]" : "", verr ? "corrupt" : "sound");
	} else {
		fprintf(f, "Live value %s\n  Type: %s\n  File bytes: %llu\n", name,
			value_kind_name(kind), (unsigned long long)vi.file_bytes);
		if (arr) {
			fprintf(f, "  Length: %zu\n  First elements:", n);
			for (size_t i = 0; i < n && i < VALUE_SHOWN; i++) {
				fputc(' ', f);
				value_print_number(f, v, kind, i);
			}
			fprintf(f, "%s\n", n > VALUE_SHOWN ? " ..." : "");
		} else if (text) {
			fprintf(
			    f, "  Capacity: %zu bytes\n  Stores: %llu\n  Length: %zu\n  Value: ", n,
			    (unsigned long long)vi.stores, blen);
			if (!verr)
				key_write(f, KM_TEXT, buf, blen < 256 ? blen : 256);
			else
				fputc('\n', f);
		} else {
			fprintf(f, "  Value: ");
			value_print_number(f, v, kind, 0);
			fputc('\n', f);
		}
		fprintf(f, "  Status: %s\n", verr ? strerror(-verr) : "sound");
	}
	free(buf);
	shset_value_close(v);
	return verr ? (o->verify ? EXIT_NO : EXIT_SET) : 0;
}

int inspect_path(const char *path, const struct inspect_opts *o, FILE *f)
{
	int fd = open_checked(path);

	if (fd < 0)
		return EXIT_IO;
	/* A memfd is a live set; any other regular file is read as a
	 * snapshot file. */
	shset_view *v = NULL;
	int probe = shset_view_open(&v, fd), code;
	shset_view_close(v);
	if (probe == -EMEDIUMTYPE) {
		code = inspect_snapshot_fd(fd, path, o, f);
	} else if (probe == -EPROTO) {
		/* A memfd that is not a set may be a shared value. */
		code = inspect_value(fd, path, o, f);
		if (code < 0) {
			fprintf(stderr, "shset-inspect: %s: neither a live set nor a value\n",
				path);
			code = EXIT_SET;
		}
	} else {
		code = inspect_live(fd, path, o, f);
	}
	close(fd);
	return code;
}
