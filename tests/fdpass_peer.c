/* SPDX-License-Identifier: MIT */
/*
 * fdpass_peer - an unrelated program for test_fdpass: connects to the
 * socket in argv[1], receives the set, checks argv[2] is in it, adds
 * argv[3].  Exit 0 on success.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shset.h"

int main(int argc, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	shset *s;

	if (argc != 4 || strlen(argv[1]) >= sizeof(a.sun_path))
		return 2;
	strcpy(a.sun_path, argv[1]);
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 3;
	int err = shset_recv(c, &s);
	if (err) {
		fprintf(stderr, "fdpass_peer: %s\n", strerror(-err));
		return 4;
	}
	if (shset_contains(s, argv[2], strlen(argv[2])) != 1)
		return 5;
	if (shset_add(s, argv[3], strlen(argv[3])) != 1)
		return 6;
	shset_close(s);
	close(c);
	return 0;
}
