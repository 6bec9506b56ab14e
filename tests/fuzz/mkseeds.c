/* SPDX-License-Identifier: MIT */
/* mkseeds - writes the seed corpora of the fuzzers (run by hand, as
 * `mkseeds tests/fuzz/seeds`, after a change of either format; the seeds
 * are committed, and test_region's fuzz_seeds_current fails on stale
 * ones): small real regions and snapshots. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shset.h"

static void dump_fd(int fd, const char *path)
{
	struct stat st;
	fstat(fd, &st);
	char *buf = malloc((size_t)st.st_size);
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		exit(1);
	FILE *f = fopen(path, "wb");
	fwrite(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	free(buf);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char p[512];
	struct shset_opts o = {.max_bytes = 4 << 20, .max_procs = 4, .log_bytes = 64 * 1024};
	int sizes[] = {0, 1, 12, 40};

	for (int i = 0; i < 4; i++) {
		shset *s;
		if (shset_create(&s, &o))
			return 1;
		for (int k = 0; k < sizes[i]; k++) {
			char key[64];
			int n = snprintf(key, sizeof(key),
					 k % 3 ? "key-%d" : "a longer key, number %d", k);
			shset_add(s, key, (size_t)n);
		}
		if (sizes[i] > 10)
			shset_remove(s, "key-1", 5);
		snprintf(p, sizeof(p), "%s/region/set-%d", dir, sizes[i]);
		dump_fd(shset_fd(s), p);
		snprintf(p, sizeof(p), "%s/snapshot/snap-%d", dir, sizes[i]);
		if (shset_save(s, p))
			return 1;
		shset_close(s);
	}
	return 0;
}
