/* SPDX-License-Identifier: MIT */
/* shset-inspect - dump snapshot files and live sets, in the way of mdb_stat. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "inspect.h"
#include "shset/inspect.h"

#ifndef SHSET_TOOLS_VERSION
#define SHSET_TOOLS_VERSION "unknown"
#endif

static int usage(FILE *f, int code)
{
	fputs("usage: shset-inspect [--keys [--hex|-0|--raw]] [--json] [--verify [-q]] FILE\n"
	      "       shset-inspect [options] /proc/PID/fd/N\n"
	      "       shset-inspect [options] [--server-uid UID] [--timeout S] --socket PATH\n"
	      "\n"
	      "FILE is a snapshot written by shset_save; a memfd path or a served socket\n"
	      "is a live set, read without stopping or writing to it; a memfd holding a\n"
	      "shared value or array (shset/values.h) shows its type and value.\n"
	      "  --keys      print the keys, as `shset list` does: text (UTF-8 as it is,\n"
	      "              \\\\ \\n \\t \\r, \\xHH for other bytes), or\n"
	      "  --hex       two hex digits a byte;  -0  raw, NUL-ended;  --raw  raw lines\n"
	      "  --json      one JSON object (keys: strings, or {\"base64\": ...} if not UTF-8)\n"
	      "  --verify    exit 0 if sound, 1 if corrupt (2: usage, 3-5: other errors)\n"
	      "  -q          with --verify: print nothing\n"
	      "  --server-uid UID  trust a server run by UID (besides your own user\n"
	      "              and root)\n"
	      "  --timeout SECONDS  wait at most this long for the server (default 5)\n"
	      "  --version   print the version\n",
	      f);
	return code;
}

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "shset-inspect: ");
	fprintf(stderr, msg, arg);
	fputs(" ('shset-inspect --help')\n", stderr);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	struct inspect_opts o = {.fmt = KM_TEXT};
	const char *path = NULL, *mode = NULL;
	struct client cl = {.trust = {-1}, .timeout_ms = CLIENT_TIMEOUT_MS};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int more = i + 1 < argc;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout, 0);
		else if (!strcmp(a, "--version")) {
			printf("shset-inspect %s\n", SHSET_TOOLS_VERSION);
			return 0;
		} else if (!strcmp(a, "--keys"))
			o.keys = 1;
		else if (!strcmp(a, "--hex") || !strcmp(a, "-0") || !strcmp(a, "--raw")) {
			if (mode)
				return usage_error("%s and another key mode exclude each other", a);
			mode = a;
			o.fmt = a[1] == '0' ? KM_NUL : a[2] == 'h' ? KM_HEX : KM_RAW;
		} else if (!strcmp(a, "--json"))
			o.json = 1;
		else if (!strcmp(a, "--verify"))
			o.verify = 1;
		else if (!strcmp(a, "-q"))
			o.quiet = 1;
		else if (!strcmp(a, "--socket") && more)
			cl.path = argv[++i];
		else if (!strcmp(a, "--server-uid") && more) {
			if (server_trust_parse(&cl.trust, argv[++i]) < 0)
				return usage_error("--server-uid needs a numeric uid, not '%s'",
						   argv[i]);
		} else if (!strcmp(a, "--timeout") && more) {
			if (timeout_parse(argv[++i], &cl.timeout_ms) < 0)
				return usage_error("--timeout needs seconds, not '%s'", argv[i]);
		} else if (a[0] == '-' && a[1])
			return usage_error("unknown or incomplete option '%s'", a);
		else if (!path)
			path = a;
		else
			return usage_error("one FILE only, not also '%s'", a);
	}
	if (!!cl.path == !!path)
		return usage_error("give a FILE or --socket PATH%s", "");
	if (mode && !o.keys)
		return usage_error("%s describes keys: it goes with --keys", mode);
	if (mode && o.json)
		return usage_error("%s and --json exclude each other", mode);
	if (o.quiet && !o.verify)
		return usage_error("-q goes with --verify%s", "");
	if (path)
		return inspect_path(path, &o, stdout);
	int c = server_connect(&cl), fd;
	if (c < 0)
		return client_perror("shset-inspect", &cl, c);
	int err = shset_recv_fd(c, &fd);
	close(c);
	if (err)
		return client_perror("shset-inspect", &cl, err);
	int code = inspect_live(fd, cl.path, &o, stdout);
	close(fd);
	return code;
}
