/* SPDX-License-Identifier: MIT */
/* consumer.c - a program outside the project, built against an installed
 * shset: it must compile as strict C99 and link with the public names. */
#include <shset.h>
#include <shset/inspect.h>
#include <stdio.h>
#include <string.h>

/* Names the library uses internally: a static link must not clash. */
int tx_begin(void)
{
	return 7;
}
unsigned long hash_bytes(void)
{
	return 9;
}
int region_attach(void)
{
	return 11;
}

int main(void)
{
	shset *s;
	int r = shset_create(&s, NULL);

	if (r < 0) {
		fprintf(stderr, "shset_create: %d\n", r);
		return 1;
	}
	if (shset_add(s, "pear", 4) != 1 || shset_contains(s, "pear", 4) != 1 ||
	    shset_size(s) != 1 || tx_begin() + (int)hash_bytes() + region_attach() != 27) {
		shset_close(s);
		return 1;
	}
	shset_close(s);
	printf("consumer ok (shset %s)\n", SHSET_VERSION_STRING);
	return 0;
}
