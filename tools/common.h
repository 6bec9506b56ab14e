/* SPDX-License-Identifier: MIT */
/* common.h - helpers shared by the command-line tools. */
#ifndef SHSET_TOOLS_COMMON_H
#define SHSET_TOOLS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes shared by the tools. */
enum {
	EXIT_NO = 1,	  /* contains: absent; inspect --verify: corrupt */
	EXIT_USAGE = 2,	  /* bad command line */
	EXIT_CONNECT = 3, /* could not reach or receive from the server */
	EXIT_SET = 4,	  /* the library refused an operation */
	EXIT_IO = 5,	  /* reading input or a file failed */
};

enum key_format { KEY_TEXT, KEY_HEX, KEY_NUL, KEY_JSON };

/* Prints a key: text escapes anything but printable ASCII (\n, \\, \xHH),
 * hex prints two digits a byte, NUL prints raw bytes, JSON a string with
 * \u00XX for every byte outside printable ASCII. */
void key_print(FILE *f, const void *key, size_t len, enum key_format fmt);
void json_string(FILE *f, const void *s, size_t len);
/* Decodes hex in place; returns the length or -1. */
long hex_decode(char *s);

/* Connects to a filesystem socket or, with a leading '@', an abstract one. */
int sock_connect(const char *path);
/* Fills a sockaddr_un; returns its length or -1 if the path is too long. */
int sock_addr(const char *path, void *sun);

/* Reads the next key from @f: lines, or NUL-separated with @nul.
 * Returns 1 with *@key (malloc'd buffer reused) and *@len, 0 at EOF. */
int read_key(FILE *f, int nul, char **key, size_t *cap, size_t *len);

uint64_t mono_ns(void);

#endif
