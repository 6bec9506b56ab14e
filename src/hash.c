/* SPDX-License-Identifier: MIT */
/*
 * hash.c - SipHash-1-3 (Aumasson and Bernstein), keyed per set.
 *
 * Keys come from any process that can reach the set, so the table must not
 * be open to chosen collisions (HashDoS); a per-set random 128-bit key with a
 * keyed PRF gives that.  One compression and three finalisation rounds are
 * what Rust's and Python's hash tables settled on for speed.
 */
#include <string.h>

#include "hash.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	} while (0)

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v; /* little-endian hosts; the hash never leaves the machine */
}

uint64_t hash_bytes(const uint64_t k[2], const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v0 = 0x736f6d6570736575ull ^ k[0];
	uint64_t v1 = 0x646f72616e646f6dull ^ k[1];
	uint64_t v2 = 0x6c7967656e657261ull ^ k[0];
	uint64_t v3 = 0x7465646279746573ull ^ k[1];
	uint64_t b = (uint64_t)len << 56;
	size_t i, n = len & ~(size_t)7;

	for (i = 0; i < n; i += 8) {
		uint64_t m = load64(p + i);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	switch (len & 7) {
	case 7:
		b |= (uint64_t)p[i + 6] << 48; /* fall through */
	case 6:
		b |= (uint64_t)p[i + 5] << 40; /* fall through */
	case 5:
		b |= (uint64_t)p[i + 4] << 32; /* fall through */
	case 4:
		b |= (uint64_t)p[i + 3] << 24; /* fall through */
	case 3:
		b |= (uint64_t)p[i + 2] << 16; /* fall through */
	case 2:
		b |= (uint64_t)p[i + 1] << 8; /* fall through */
	case 1:
		b |= (uint64_t)p[i];
		break;
	case 0:
		break;
	}
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
