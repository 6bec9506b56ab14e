/* SPDX-License-Identifier: MIT */
/* fuzz_snapshot - libFuzzer: snapshot files of any content.  Loading must
 * return a set or an error, never crash, leak or create a set it refused.
 * A mutation rarely keeps both checksums right, and a file whose checksums
 * fail is refused before its counts and records are read: the custom
 * mutator below makes most mutants' checksums (and often body_len) agree,
 * so the header's fields and the records behind them are fuzzed too. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shset.h"
#include "snapshot.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed)
{
	struct snap_hdr h;

	size = LLVMFuzzerMutate(data, size, max);
	/* One mutant in four is left as it is: files with wrong sums. */
	if (size < SNAP_HDR_SIZE || seed % 4 == 0)
		return size;
	memcpy(&h, data, sizeof(h));
	if (seed % 4 == 1)
		h.body_len = size - SNAP_HDR_SIZE;
	if (h.body_len == size - SNAP_HDR_SIZE)
		h.body_crc = snap_crc32c(0, data + SNAP_HDR_SIZE, h.body_len);
	memcpy(data, &h, sizeof(h));
	h.hdr_crc = snap_crc32c(0, data, 60);
	memcpy(data, &h, sizeof(h));
	return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_hdr h;
	enum snap_defect d = snap_check(data, size, &h);
	int fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
	char path[64];
	shset *s;

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int r = shset_load(&s, path, NULL);
	/* The loader and the checker agree, except on duplicate keys, which
	 * only loading finds. */
	if ((r == 0) != (d == SNAP_OK) && !(d == SNAP_OK && r == -EBADMSG))
		abort();
	if (r == 0) {
		if (shset_size(s) != (long long)h.count || shset_verify(s) != 0)
			abort();
		shset_close(s);
	} else if (s) {
		abort();
	}
	close(fd);
	return 0;
}
