/* SPDX-License-Identifier: MIT */
/*
 * keyfmt.h - how the tools write keys and read them back.
 *
 * Every mode is lossless: what a tool writes in one mode, `shset add` in the
 * same mode reads back to the same bytes.  A mode that cannot carry a key
 * refuses it (KEYFMT_CANNOT) instead of writing an ambiguous stream.
 *
 *   text   one key a line.  Printable ASCII and valid UTF-8 (C1 controls
 *          excepted) as they are; a backslash as \\, newline \n, tab \t,
 *          carriage return \r; every other byte \xHH.  Reading decodes
 *          exactly these escapes; any other backslash is an error.
 *   hex    one key a line, two lowercase hex digits a byte (either case read).
 *   nul    (-0) the bytes, each key followed by a NUL; a key with a NUL is
 *          refused.
 *   raw    the bytes, each key followed by a newline; a key with a newline is
 *          refused.  Reads `redis-cli --raw SMEMBERS` output.
 *   json   a JSON array; a key that is valid UTF-8 is a JSON string, any other
 *          key is an object {"base64": "..."} (RFC 4648 base64 of its bytes).
 *          Reading takes such an array, or the same items one after another
 *          (JSON Lines, as `jq -c '.[]'` prints them).
 *   redis  (read only) redis-cli's quoted replies, as `redis-cli --no-raw
 *          SMEMBERS KEY` prints them: `1) "caf\xc3\xa9"`, one a line.
 *
 * In the line modes every line is a key, so a blank line is the empty key;
 * a last line without its newline is a key too, and an input that ends with
 * a newline has no empty key after it.
 */
#ifndef SHSET_TOOLS_KEYFMT_H
#define SHSET_TOOLS_KEYFMT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum key_mode { KM_TEXT, KM_HEX, KM_NUL, KM_RAW, KM_JSON, KM_REDIS };

/* The option that selects @m ("text" for the default). */
const char *keyfmt_option(enum key_mode m);

/* 1..4: a valid UTF-8 sequence starts at @p; 0: it does not. */
int utf8_seq(const uint8_t *p, size_t n);
int utf8_valid(const void *s, size_t len);

/* A JSON string for text that is not a key (a path, a message): invalid
 * UTF-8 becomes U+FFFD; it is for reading, not for round trips. */
void json_text(FILE *f, const void *s, size_t len);
/* A key as the json mode writes it: a string, or {"base64": "..."}. */
void json_key(FILE *f, const void *key, size_t len);

#define KEYFMT_CANNOT (-1000) /* the mode cannot carry this key */

/* Writes one key (with its separator; JSON items without one).  0, or
 * KEYFMT_CANNOT for a NUL under nul or a newline under raw. */
int key_write(FILE *f, enum key_mode m, const void *key, size_t len);
/* What to say when key_write refuses: "a key contains a NUL byte, which -0
 * cannot carry: use --hex, --json or the default text mode". */
const char *keyfmt_cannot(enum key_mode m);

/* Reads keys from a stream in one mode. */
struct key_reader {
	FILE *f;
	enum key_mode mode;
	unsigned long line; /* of the last key read (1-based) */
	char *buf;	    /* the raw line */
	size_t cap;
	uint8_t *key; /* the decoded key */
	size_t key_cap;
	int json_state; /* 0 start, 1 in an array, 2 a stream of items, 3 done */
	char err[160];	/* why the last read failed */
};
void key_reader_init(struct key_reader *r, FILE *f, enum key_mode m);
/* 1 with the key in r->key (*@len bytes, valid until the next call), 0 at
 * the end, -EINVAL for malformed input (r->err says where and why),
 * -ENOMEM, or -EIO for a read error (errno). */
int key_read(struct key_reader *r, size_t *len);
void key_reader_free(struct key_reader *r);

/* Decodes hex in place (@n digits); the length, or -1. */
long hex_decode_n(char *s, size_t n);

#endif
