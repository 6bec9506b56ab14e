/* SPDX-License-Identifier: MIT */
/* fuzz_region - libFuzzer: attach a region of arbitrary bytes (seeded with
 * real sets) and run every operation on it: values or errors, no crash. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shset.h"

static int visit(const void *k, size_t len, void *arg)
{
	(void)k;
	(void)len;
	(*(long *)arg)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	shset *s, *c;
	long n = 0;
	uint8_t out[300];
	size_t ol;

	if (fd < 0 || write(fd, data, size) != (ssize_t)size ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		abort();
	if (shset_attach_fd(&s, fd) == 0) {
		shset_contains(s, "k", 1);
		shset_add(s, "fuzz", 4);
		shset_add(s, "a somewhat longer key for the arena", 35);
		shset_remove(s, "k", 1);
		shset_pop(s, out, sizeof(out), &ol);
		shset_size(s);
		shset_foreach(s, visit, &n);
		shset_verify(s);
		if (shset_copy(s, &c) == 0) {
			shset_update(c, s);
			shset_close(c);
		}
		shset_clear(s);
		shset_close(s);
	}
	close(fd);
	return 0;
}
