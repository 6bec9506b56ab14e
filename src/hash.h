/* SPDX-License-Identifier: MIT */
/* hash.h - keyed hash (private). */
#ifndef SHSET_HASH_H
#define SHSET_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 of @len bytes under the 128-bit key @k. */
uint64_t hash_bytes(const uint64_t k[2], const void *data, size_t len);

#endif
