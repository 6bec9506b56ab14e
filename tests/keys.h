/* SPDX-License-Identifier: MIT */
/* keys.h - a deterministic universe of binary keys for the tests. */
#ifndef SHSET_TEST_KEYS_H
#define SHSET_TEST_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* --- a deterministic key universe -------------------------------------------- */

static inline uint64_t rng_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Key number @i: its length varies from 0 to 299 bytes, binary content,
 * and no two numbers give the same key. */
static inline size_t key_of(uint32_t i, uint8_t *buf)
{
	uint64_t s = i * 7919ull + 13;
	size_t len = i == 0 ? 0 : 4 + rng_next(&s) % 296;
	if (i % 5 == 1)
		len = 4 + i % 17; /* plenty of short, inline keys */
	if (len == 0)
		return 0;
	memcpy(buf, &i, 4);
	for (size_t j = 4; j < len; j++)
		buf[j] = (uint8_t)rng_next(&s);
	return len;
}

static inline int key_index(const void *k, size_t len)
{
	uint32_t i;
	uint8_t buf[300];

	if (len == 0)
		return 0;
	if (len < 4)
		return -1;
	memcpy(&i, k, 4);
	if (key_of(i, buf) != len || memcmp(buf, k, len))
		return -1;
	return (int)i;
}

#endif
