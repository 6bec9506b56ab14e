/* SPDX-License-Identifier: MIT */
/* snapshot.h - the snapshot file format (private; tools use it too). */
#ifndef SHSET_SNAPSHOT_H
#define SHSET_SNAPSHOT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shset.h"

#define SNAP_MAGIC	 "SHSETSNP"
#define SNAP_VERSION	 1u
#define SNAP_HDR_SIZE	 64u
#define SNAP_FLAG_SORTED 1u
#define SNAP_FLAGS_KNOWN SNAP_FLAG_SORTED

/* On disk, little-endian, 64 bytes. */
struct snap_hdr {
	char magic[8];	     /* "SHSETSNP" */
	uint32_t version;    /* SNAP_VERSION */
	uint32_t flags;	     /* SNAP_FLAG_* */
	uint64_t count;	     /* keys in the body */
	uint64_t body_len;   /* bytes after the header */
	uint64_t created_ns; /* CLOCK_REALTIME at save */
	uint64_t key_bytes;  /* sum of key lengths */
	uint32_t body_crc;   /* CRC32C of the body */
	uint32_t key_type;   /* SHSET_KEYS_*; 0 (bytes) in older files */
	uint32_t pad;	     /* 0 */
	uint32_t hdr_crc;    /* CRC32C of the 60 bytes before it */
};
_Static_assert(sizeof(struct snap_hdr) == SNAP_HDR_SIZE, "snapshot header size");

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len);

/* What a check of a snapshot image found; codes in order of checking,
 * except the last, appended to keep the values stable. */
enum snap_defect {
	SNAP_OK = 0,
	SNAP_SHORT, /* shorter than a header */
	SNAP_BAD_MAGIC,
	SNAP_BAD_VERSION, /* newer (or unknown) format version */
	SNAP_BAD_HDR_CRC,
	SNAP_BAD_FLAGS,
	SNAP_BAD_LENGTH, /* body_len disagrees with the file size */
	SNAP_BAD_BODY_CRC,
	SNAP_BAD_KEY,	   /* a key length runs past the body or the limit */
	SNAP_BAD_COUNT,	   /* count or key_bytes disagree with the body */
	SNAP_BAD_KEY_TYPE, /* key type above SHSET_KEYS_INT (checked after flags) */
};
const char *snap_defect_str(enum snap_defect d);
/* The -errno a defect maps to: -EPROTONOSUPPORT for a version, else
 * -EBADMSG. */
int snap_defect_errno(enum snap_defect d);

/* Checks an image in memory: header, checksums, every key length. */
enum snap_defect snap_check(const uint8_t *img, size_t len, struct snap_hdr *hdr);

/* The body's checksum, of an image whose header was checked: 1 if it
 * matches. */
int snap_body_crc_ok(const uint8_t *img, const struct snap_hdr *hdr);
/* Checks the records of a body (@len bytes at @recs): every key length,
 * then @count and @key_bytes against what they hold.  SNAP_OK, SNAP_BAD_KEY
 * or SNAP_BAD_COUNT. */
enum snap_defect snap_check_records(const uint8_t *recs, size_t len, uint64_t count,
				    uint64_t key_bytes);

/* Checks only the header: the first @len bytes of a file of @file_size
 * bytes (magic, version, header checksum, flags, key type, body_len against
 * the size).  SNAP_OK says the body is worth reading, not that it is sound. */
enum snap_defect snap_check_header(const uint8_t *img, size_t len, uint64_t file_size,
				   struct snap_hdr *hdr);

/* Walks the keys of a checked image: *@pos starts at SNAP_HDR_SIZE.  1
 * with the next key, 0 at the end, -EBADMSG.  Inline: a load walks its
 * records three times (the check, then two passes to sort them). */
static inline int snap_next(const uint8_t *img, size_t len, size_t *pos, const uint8_t **key,
			    size_t *klen)
{
	uint32_t l;

	if (*pos == len)
		return 0;
	if (len - *pos < 4)
		return -EBADMSG;
	memcpy(&l, img + *pos, 4);
	if (l > SHSET_KEY_MAX || l > len - *pos - 4)
		return -EBADMSG;
	*key = img + *pos + 4;
	*klen = l;
	*pos += 4 + (size_t)l;
	return 1;
}

/*
 * Both readers accept only a regular file (-EISDIR for a directory,
 * -ENOTSUP for a FIFO, socket or device; -EFBIG past 1 TiB), never block in
 * open, retry calls a signal interrupts, and read through io_uring unless
 * @no_uring or it is unavailable (*@used_uring tells which path ran).
 */

/* Reads a whole file, whatever its header says: for tools that describe
 * damaged files.  Loaders use snap_read_checked. */
int snap_read_file(const char *path, uint8_t **img, size_t *len, int no_uring, int *used_uring);

/* Reads the header first and the body only if the header is sound and
 * agrees with the file's size, then checks the whole image (with
 * @header_only, the header alone: the caller checks the body, with
 * snap_body_crc_ok and snap_check_records, before it trusts a byte of it).
 * Returns 0 with *@defect set: for SNAP_OK and body defects *@img holds the
 * whole file; for header defects only its first min(size, 64) bytes
 * (*@len).  *@file_size is the file's size.  -errno when the file cannot
 * be read. */
int snap_read_checked(const char *path, uint8_t **img, size_t *len, uint64_t *file_size,
		      enum snap_defect *defect, int no_uring, int header_only, int *used_uring);

/* Saves by this process through io_uring and through the fallback. */
void snapshot_counters(uint64_t *uring, uint64_t *fallback);

#endif
