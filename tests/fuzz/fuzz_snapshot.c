/* SPDX-License-Identifier: MIT */
/* fuzz_snapshot - libFuzzer: snapshot files of any content.  Loading must
 * return a set or an error, never crash, leak or create a set it refused. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shset.h"
#include "snapshot.h"

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
