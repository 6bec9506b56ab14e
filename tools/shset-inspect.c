/* SPDX-License-Identifier: MIT */
/* shset-inspect - dump snapshot files and live sets, in the way of mdb_stat. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fdpass.h"
#include "inspect.h"

static int usage(FILE *f, int code)
{
	fputs("usage: shset-inspect [--keys] [--hex|-0] [--json] [--verify [-q]] FILE\n"
	      "       shset-inspect [options] /proc/PID/fd/N\n"
	      "       shset-inspect [options] [--server-uid UID] --socket PATH\n"
	      "\n"
	      "FILE is a snapshot written by shset_save; a memfd path or a served socket\n"
	      "is a live set, read without stopping or writing to it.\n"
	      "  --keys      print the keys (text, escaped: \\n \\\\ \\xHH)\n"
	      "  --hex       keys in hex;  -0  keys raw, NUL-terminated\n"
	      "  --json      one JSON object\n"
	      "  --verify    exit 0 if sound, 1 if corrupt (2: usage, 3-5: other errors)\n"
	      "  -q          with --verify: print nothing\n"
	      "  --server-uid UID  trust a server run by UID (besides your own user\n"
	      "              and root)\n",
	      f);
	return code;
}

int main(int argc, char **argv)
{
	struct inspect_opts o = {.fmt = KEY_TEXT};
	const char *sock = NULL, *path = NULL;
	struct server_trust trust = {.uid = -1};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout, 0);
		else if (!strcmp(a, "--keys"))
			o.keys = 1;
		else if (!strcmp(a, "--hex"))
			o.fmt = KEY_HEX;
		else if (!strcmp(a, "-0"))
			o.fmt = KEY_NUL;
		else if (!strcmp(a, "--json"))
			o.json = 1;
		else if (!strcmp(a, "--verify"))
			o.verify = 1;
		else if (!strcmp(a, "-q"))
			o.quiet = 1;
		else if (!strcmp(a, "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(a, "--server-uid") && i + 1 < argc) {
			if (server_trust_parse(&trust, argv[++i]) < 0) {
				fprintf(
				    stderr,
				    "shset-inspect: --server-uid needs a numeric uid, not '%s'\n",
				    argv[i]);
				return EXIT_USAGE;
			}
		} else if (a[0] == '-' && a[1])
			return usage(stderr, EXIT_USAGE);
		else if (!path)
			path = a;
		else
			return usage(stderr, EXIT_USAGE);
	}
	if (!!sock == !!path)
		return usage(stderr, EXIT_USAGE);
	if (path)
		return inspect_path(path, &o, stdout);
	uid_t server_uid;
	int c = server_connect(sock, &trust, &server_uid), fd;
	if (c < 0)
		return server_perror("shset-inspect", sock, c, &trust, server_uid);
	int err = fdpass_recv_fd(c, &fd);
	close(c);
	if (err) {
		fprintf(stderr, "shset-inspect: %s: %s\n", sock, strerror(-err));
		return EXIT_CONNECT;
	}
	int code = inspect_live(fd, sock, &o, stdout);
	close(fd);
	return code;
}
