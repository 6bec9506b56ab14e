/* SPDX-License-Identifier: MIT */
/*
 * shset - serve a set on a Unix socket, work on a served set directly
 * through shared memory, bridge it to Redis, and run the demo.
 *
 * One table entry per command with the options it takes (git's
 * cmd_struct): a command rejects every option and argument it does not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef SHSET_TOOLS_VERSION
#define SHSET_TOOLS_VERSION "unknown"
#endif

const char *cmd = "shset";

int fail(int code, const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", cmd, what, strerror(err < 0 ? -err : err));
	return code;
}

/* --- options --------------------------------------------------------------------------- */

enum {
	O_SOCKET = 1 << 0,
	O_SERVER_UID = 1 << 1,
	O_TIMEOUT = 1 << 2,
	O_LOAD = 1 << 3,
	O_SAVE = 1 << 4,
	O_EVERY = 1 << 5,
	O_MODE = 1 << 6,
	O_GROUP = 1 << 7,
	O_WORKERS = 1 << 8,
	O_KEYS = 1 << 9,
	O_KEEP = 1 << 10,
	O_HEX = 1 << 11,
	O_NUL = 1 << 12,
	O_RAW = 1 << 13,
	O_JSON = 1 << 14,
	O_REDIS = 1 << 15,
	O_RESP = 1 << 16,
	O_SORTED = 1 << 17,
	O_REPLACE = 1 << 18,
	O_CLIENT = O_SOCKET | O_SERVER_UID | O_TIMEOUT,
	O_MODES = O_HEX | O_NUL | O_RAW | O_JSON | O_REDIS,
};

static const struct option_def {
	const char *name;
	unsigned bit;
	const char *arg, *help;
} options[] = {
    {"--socket", O_SOCKET, "PATH", "the server's socket (@name: abstract); default $SHSET_SOCKET"},
    {"--server-uid", O_SERVER_UID, "UID",
     "trust a server run by UID (besides your own user and root)"},
    {"--timeout", O_TIMEOUT, "SECONDS",
     "give up on a server that does not answer (default 5; 0 waits for ever)"},
    {"--load", O_LOAD, "FILE", "start from this snapshot; a missing file starts empty"},
    {"--save", O_SAVE, "FILE",
     "save on exit (and with --every) when the set changed; checked writable at start"},
    {"--every", O_EVERY, "SECONDS", "also save every SECONDS (a whole number > 0)"},
    {"--mode", O_MODE, "OCTAL",
     "permissions of the socket file (e.g. 0660); who may connect follows them"},
    {"--group", O_GROUP, "GROUP", "group of the socket file (default mode 0660)"},
    {"--workers", O_WORKERS, "N", "worker processes, 2..200 (default: 2 per CPU)"},
    {"--keys", O_KEYS, "N", "keys per worker, 1000..100000000 (default 200000)"},
    {"--keep", O_KEEP, NULL, "keep the demo's directory and snapshot"},
    {"--hex", O_HEX, NULL, "keys in hex, one a line"},
    {"-0", O_NUL, NULL, "keys as they are, each ended by a NUL (refuses keys with a NUL)"},
    {"--raw", O_RAW, NULL,
     "keys as they are, one a line (refuses keys with a newline; reads redis-cli --raw)"},
    {"--json", O_JSON, NULL, "JSON: strings for UTF-8 keys, {\"base64\": ...} for others"},
    {"--redis", O_REDIS, NULL, "read redis-cli --no-raw replies: 1) \"caf\\xc3\\xa9\""},
    {"--resp", O_RESP, "KEY", "write Redis protocol adding every key to the Redis set KEY"},
    {"--sorted", O_SORTED, NULL, "in byte order (as LC_ALL=C sort)"},
    {"--replace", O_REPLACE, NULL,
     "with --resp: replace the Redis set (MULTI, DEL, SADD..., EXEC)"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const char key_modes_help[] =
    "Keys on stdin and in the output, one mode at a time (list in a mode, add in\n"
    "the same mode gives back the same keys):\n"
    "  text (default)  one key a line; printable ASCII and UTF-8 as they are,\n"
    "                  \\\\ for a backslash, \\n \\t \\r, \\xHH for any other byte;\n"
    "                  reading decodes exactly these escapes, others are errors\n"
    "  --hex           one key a line, two hex digits a byte\n"
    "  -0              raw bytes, each key ended by a NUL\n"
    "  --raw           raw bytes, one key a line\n"
    "  --json          a JSON array: a UTF-8 key is a string, any other key is\n"
    "                  {\"base64\": \"...\"}; reading also takes the items one after\n"
    "                  another (JSON Lines)\n"
    "  --redis         (reading) redis-cli --no-raw output: 1) \"caf\\xc3\\xa9\"\n"
    "In the line modes a blank line is the empty key; an input that ends with a\n"
    "newline has no empty key after it.  A key that a mode cannot carry (a NUL\n"
    "for -0, a newline for --raw) is an error naming the modes that can.\n"
    "Keys given as arguments are taken as they are (with --hex: as hex).\n";

/* --- commands -------------------------------------------------------------------------- */

static int cmd_batch(struct opts *o);
static int cmd_contains(struct opts *o);
static int cmd_size(struct opts *o);
static int cmd_list(struct opts *o);
static int cmd_export(struct opts *o);
static int cmd_clear(struct opts *o);
static int cmd_save(struct opts *o);
static int cmd_stats(struct opts *o);

static const struct command {
	const char *name;
	int (*fn)(struct opts *);
	unsigned opts;
	int min_args, max_args; /* -1: any number */
	const char *args, *help;
	int key_help;
} commands[] = {
    {"serve", cmd_serve, O_SOCKET | O_LOAD | O_SAVE | O_EVERY | O_MODE | O_GROUP, 0, 0,
     "--socket PATH [--load FILE] [--save FILE [--every SECONDS]] [--mode OCTAL] [--group G]",
     "Create (or load) a set and hand its fd to local clients until SIGINT, SIGTERM\n"
     "or SIGHUP.  Clients of the server's own user and root are admitted; with\n"
     "--mode/--group, whoever the socket file's permissions let connect.  An\n"
     "existing file at PATH is replaced only if it is a socket nobody serves.\n"
     "Under systemd the socket may come from socket activation (LISTEN_FDS), and\n"
     "readiness is reported (NOTIFY_SOCKET).  A restart makes a new set: processes\n"
     "that hold the old fd keep working on the old set, and see the new one only\n"
     "when they ask the server again.",
     0},
    {"add", cmd_batch, O_CLIENT | O_MODES, 0, -1, "[--socket PATH] [MODE] [KEY...]",
     "Add the keys (the arguments, or stdin) in one atomic batch; print how many\n"
     "were new: \"added N of M\", or with --json {\"added\": N, \"given\": M}.",
     1},
    {"remove", cmd_batch, O_CLIENT | O_MODES, 0, -1, "[--socket PATH] [MODE] [KEY...]",
     "Remove the keys in one atomic batch: \"removed N of M\", or with --json\n"
     "{\"removed\": N, \"given\": M}.",
     1},
    {"contains", cmd_contains, O_CLIENT | O_MODES, 0, -1, "[--socket PATH] [MODE] [KEY...]",
     "Exit 0 if every key is present, 1 if one is not.  --json prints\n"
     "[{\"key\": KEY, \"present\": true|false}, ...].",
     1},
    {"size", cmd_size, O_CLIENT | O_JSON, 0, 0, "[--socket PATH] [--json]",
     "Print the number of keys (--json: {\"count\": N}).", 0},
    {"list", cmd_list, O_CLIENT | O_HEX | O_NUL | O_RAW | O_JSON | O_SORTED, 0, 0,
     "[--socket PATH] [--hex|-0|--raw|--json] [--sorted]",
     "Print every key of one consistent state of the set.", 1},
    {"export", cmd_export, O_CLIENT | O_RESP | O_SORTED | O_REPLACE, 0, 0,
     "[--socket PATH] --resp KEY [--replace] [--sorted]",
     "Write the set as Redis protocol (binary-safe SADD commands) for\n"
     "`redis-cli --pipe`.  Redis reads it back with `redis-cli --no-raw SMEMBERS\n"
     "KEY | shset add --redis`.",
     0},
    {"clear", cmd_clear, O_CLIENT | O_JSON, 0, 0, "[--socket PATH] [--json]",
     "Remove every key (--json: {\"cleared\": true}).", 0},
    {"save", cmd_save, O_CLIENT | O_SORTED | O_JSON, 1, 1, "[--socket PATH] [--sorted] FILE",
     "Write a crash-safe snapshot of the set (--json: {\"saved\": true, \"path\": FILE,\n"
     "\"sorted\": BOOL}).  --sorted orders the file's keys as the library does (by\n"
     "length, then bytes), so equal sets give equal files.",
     0},
    {"stats", cmd_stats, O_CLIENT | O_JSON, 0, 0, "[--socket PATH] [--json]",
     "Print counts, memory and lock counters (JSON field names as shset-inspect's).", 0},
    {"demo", cmd_demo, O_WORKERS | O_KEYS | O_KEEP, 0, 0, "[--workers N] [--keys N] [--keep]",
     "Run a server, worker processes sharing its set (one killed mid-write),\n"
     "an atomic copy, a snapshot and an inspection, and print a summary.",
     0},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int usage(FILE *f, int code)
{
	fprintf(f, "usage: %s COMMAND [OPTIONS]\n\n", cmd);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].args);
	fprintf(f,
		"\nClients find the server with --socket PATH or $SHSET_SOCKET, trust a server\n"
		"run by their own user or root (--server-uid UID trusts one more), and wait\n"
		"at most --timeout SECONDS (default 5) for it.\n"
		"\nExit codes: 0 ok, 1 no (contains), 2 usage, 3 server unreachable, not\n"
		"trusted or refusing, 4 refused by the library, 5 input or file error.\n"
		"'%s COMMAND --help' describes one command; '%s --version'.\n",
		cmd, cmd);
	return code;
}

static int cmd_usage(const struct command *c, FILE *f, int code)
{
	fprintf(f, "usage: %s %s %s\n\n%s\n", cmd, c->name, c->args, c->help);
	if (c->key_help)
		fprintf(f, "\n%s", key_modes_help);
	fputs("\nOptions:\n", f);
	for (size_t i = 0; i < NOPTIONS; i++)
		if (c->opts & options[i].bit) {
			char left[40];
			snprintf(left, sizeof(left), "%s%s%s", options[i].name,
				 options[i].arg ? " " : "", options[i].arg ? options[i].arg : "");
			fprintf(f, "  %-20s %s\n", left, options[i].help);
		}
	return code;
}

/* A whole number in [@lo, @hi]; -EINVAL otherwise. */
static int long_parse(const char *arg, long lo, long hi, int base, long *v)
{
	char *end;

	if (!((arg[0] >= '0' && arg[0] <= '9') || (arg[0] == '-' && lo < 0)))
		return -EINVAL;
	errno = 0;
	*v = strtol(arg, &end, base);
	return errno || *end || *v < lo || *v > hi ? -EINVAL : 0;
}

static int bad_value(const struct command *c, const char *opt, const char *arg, const char *want)
{
	fprintf(stderr, "%s %s: %s needs %s, not '%s'\n", cmd, c->name, opt, want, arg);
	return EXIT_USAGE;
}

/* Returns -1 when the command line is fine, else the exit code. */
static int parse(const struct command *c, int argc, char **argv, struct opts *o)
{
	unsigned seen = 0;

	memset(o, 0, sizeof(*o));
	o->client.trust.uid = -1;
	o->client.timeout_ms = CLIENT_TIMEOUT_MS;
	o->mode = -1;
	o->args = calloc((size_t)argc + 1, sizeof(char *));
	if (!o->args)
		return fail(EXIT_IO, "parse", ENOMEM);
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return cmd_usage(c, stdout, 0);
		if (!strcmp(a, "--")) {
			while (++i < argc)
				o->args[o->nargs++] = argv[i];
			break;
		}
		if (a[0] != '-' || !a[1]) {
			o->args[o->nargs++] = argv[i];
			continue;
		}
		size_t nl = strcspn(a, "=");
		const struct option_def *d = NULL;
		for (size_t k = 0; k < NOPTIONS && !d; k++)
			if (strlen(options[k].name) == nl && !strncmp(options[k].name, a, nl))
				d = &options[k];
		if (!d) {
			fprintf(stderr, "%s %s: unknown option '%s'\n", cmd, c->name, a);
			return cmd_usage(c, stderr, EXIT_USAGE);
		}
		if (!(c->opts & d->bit)) {
			fprintf(stderr, "%s %s: %s is not an option of %s%s ('%s %s --help')\n",
				cmd, c->name, d->name, c->name,
				(d->bit & O_CLIENT) ? ": it is an option of the clients" : "", cmd,
				c->name);
			return EXIT_USAGE;
		}
		if (seen & d->bit) {
			fprintf(stderr, "%s %s: %s given twice\n", cmd, c->name, d->name);
			return EXIT_USAGE;
		}
		if ((d->bit & O_MODES) && (seen & O_MODES)) {
			for (size_t k = 0; k < NOPTIONS; k++)
				if (options[k].bit & seen & O_MODES)
					fprintf(stderr, "%s %s: %s and %s exclude each other\n",
						cmd, c->name, options[k].name, d->name);
			return EXIT_USAGE;
		}
		seen |= d->bit;
		if (d->arg) {
			if (a[nl] == '=')
				val = a + nl + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else {
				fprintf(stderr, "%s %s: %s needs a value (%s)\n", cmd, c->name,
					d->name, d->arg);
				return EXIT_USAGE;
			}
		} else if (a[nl] == '=') {
			fprintf(stderr, "%s %s: %s takes no value\n", cmd, c->name, d->name);
			return EXIT_USAGE;
		}
		long v;
		switch (d->bit) {
		case O_SOCKET:
			o->client.path = val;
			break;
		case O_SERVER_UID:
			if (server_trust_parse(&o->client.trust, val) < 0)
				return bad_value(c, d->name, val, "a numeric uid");
			break;
		case O_TIMEOUT:
			if (timeout_parse(val, &o->client.timeout_ms) < 0)
				return bad_value(c, d->name, val, "seconds (a number >= 0)");
			break;
		case O_LOAD:
			o->load = val;
			break;
		case O_SAVE:
			o->save = val;
			break;
		case O_EVERY:
			if (long_parse(val, 1, 1L << 30, 10, &o->every))
				return bad_value(c, d->name, val, "a whole number of seconds > 0");
			break;
		case O_MODE:
			if (long_parse(val, 0, 0777, 8, &o->mode))
				return bad_value(c, d->name, val, "an octal mode such as 0660");
			break;
		case O_GROUP:
			o->group = val;
			break;
		case O_WORKERS:
			if (long_parse(val, 2, 200, 10, &o->workers))
				return bad_value(c, d->name, val, "a number from 2 to 200");
			break;
		case O_KEYS:
			if (long_parse(val, 1000, 100000000, 10, &v))
				return bad_value(c, d->name, val,
						 "a number from 1000 to 100000000");
			o->keys = v;
			break;
		case O_KEEP:
			o->keep = 1;
			break;
		case O_HEX:
			o->km = KM_HEX;
			break;
		case O_NUL:
			o->km = KM_NUL;
			break;
		case O_RAW:
			o->km = KM_RAW;
			break;
		case O_JSON:
			o->json = 1;
			if (c->opts & O_HEX)
				o->km = KM_JSON;
			break;
		case O_REDIS:
			o->km = KM_REDIS;
			break;
		case O_RESP:
			o->resp_key = val;
			break;
		case O_SORTED:
			o->sorted = 1;
			break;
		case O_REPLACE:
			o->replace = 1;
			break;
		}
	}
	if (c->min_args > o->nargs || (c->max_args >= 0 && o->nargs > c->max_args)) {
		if (c->max_args == 0)
			fprintf(stderr, "%s %s: takes no arguments ('%s')\n", cmd, c->name,
				o->args[0]);
		else
			fprintf(stderr, "%s %s: needs %d argument%s\n", cmd, c->name, c->min_args,
				c->min_args == 1 ? "" : "s");
		return cmd_usage(c, stderr, EXIT_USAGE);
	}
	/* Arguments are keys as they are (or hex): the stream modes describe
	 * stdin only. */
	if (o->nargs && c->key_help && (seen & (O_NUL | O_RAW | O_REDIS))) {
		fprintf(stderr,
			"%s %s: %s describes keys on stdin; keys given as arguments are "
			"taken as they are (or use --hex)\n",
			cmd, c->name, keyfmt_option(o->km));
		return EXIT_USAGE;
	}
	if ((seen & O_EVERY) && !o->save) {
		fprintf(stderr, "%s %s: --every needs --save FILE\n", cmd, c->name);
		return EXIT_USAGE;
	}
	if ((seen & O_REPLACE) && !o->resp_key) {
		fprintf(stderr, "%s %s: --replace goes with --resp KEY\n", cmd, c->name);
		return EXIT_USAGE;
	}
	if ((c->opts & O_RESP) && !o->resp_key) {
		fprintf(stderr, "%s %s: --resp KEY is required (the Redis set to fill)\n", cmd,
			c->name);
		return EXIT_USAGE;
	}
	if ((seen & O_GROUP) && o->mode < 0)
		o->mode = 0660;
	if ((c->opts & O_SOCKET) && !o->client.path)
		o->client.path = getenv("SHSET_SOCKET");
	return -1;
}

int open_served(struct opts *o, shset **s)
{
	if (!o->client.path || !o->client.path[0]) {
		fprintf(stderr, "%s: --socket PATH (or SHSET_SOCKET) is required\n", cmd);
		return EXIT_USAGE;
	}
	int c = server_connect(&o->client);
	if (c < 0)
		return client_perror(cmd, &o->client, c);
	int err = shset_recv(c, s);
	close(c);
	if (err)
		return client_perror(cmd, &o->client, err);
	return 0;
}

/* --- keys in ---------------------------------------------------------------------------- */

struct keys {
	char **k;
	size_t *len;
	size_t n, cap;
};

static int keys_push(struct keys *ks, const void *k, size_t len)
{
	if (ks->n == ks->cap) {
		size_t cap = ks->cap * 2 + 64;
		char **nk = realloc(ks->k, cap * sizeof(char *));
		if (!nk)
			return -ENOMEM;
		ks->k = nk;
		size_t *nl = realloc(ks->len, cap * sizeof(size_t));
		if (!nl)
			return -ENOMEM;
		ks->len = nl;
		ks->cap = cap;
	}
	ks->k[ks->n] = malloc(len + 1);
	if (!ks->k[ks->n])
		return -ENOMEM;
	if (len) /* the empty key may come with no buffer at all */
		memcpy(ks->k[ks->n], k, len);
	ks->len[ks->n++] = len;
	return 0;
}

static void keys_free(struct keys *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		free(ks->k[i]);
	free(ks->k);
	free(ks->len);
}

static int too_long(const char *where, size_t len)
{
	fprintf(stderr,
		"%s: %s: a key of %zu bytes is longer than the limit of %u bytes "
		"(SHSET_KEY_MAX)\n",
		cmd, where, len, SHSET_KEY_MAX);
	return EXIT_IO;
}

/* Keys from the arguments, or stdin when there are none. */
static int gather(const struct opts *o, struct keys *ks)
{
	struct key_reader r;
	size_t len;
	int n, code = 0;

	memset(ks, 0, sizeof(*ks));
	for (int i = 0; i < o->nargs; i++) {
		char *k = strdup(o->args[i]);
		if (!k)
			return fail(EXIT_IO, "arguments", ENOMEM);
		long l = o->km == KM_HEX ? hex_decode_n(k, strlen(k)) : (long)strlen(k);
		if (l < 0) {
			fprintf(stderr, "%s: '%s' is not hex (two hex digits a byte)\n", cmd,
				o->args[i]);
			free(k);
			return EXIT_USAGE;
		}
		if ((size_t)l > SHSET_KEY_MAX) {
			free(k);
			too_long("argument", (size_t)l);
			return EXIT_USAGE;
		}
		int err = keys_push(ks, k, (size_t)l);
		free(k);
		if (err)
			return fail(EXIT_IO, "arguments", err);
	}
	if (o->nargs)
		return 0;
	key_reader_init(&r, stdin, o->km);
	while ((n = key_read(&r, &len)) == 1) {
		if (len > SHSET_KEY_MAX) {
			char where[64];
			snprintf(where, sizeof(where), "stdin line %lu", r.line);
			code = too_long(where, len);
			break;
		}
		if ((n = keys_push(ks, r.key, len)) < 0)
			break;
	}
	if (n == -EINVAL) {
		fprintf(stderr, "%s: stdin (%s): %s\n", cmd,
			o->km == KM_TEXT ? "text mode" : keyfmt_option(o->km), r.err);
		code = EXIT_IO;
	} else if (n < 0)
		code = fail(EXIT_IO, "stdin", n);
	key_reader_free(&r);
	return code;
}

static int cmd_batch(struct opts *o)
{
	int add = !strcmp(o->name, "add");
	struct keys ks;
	shset *s;
	int code = gather(o, &ks);

	if (!code)
		code = open_served(o, &s);
	if (code) {
		keys_free(&ks);
		return code;
	}
	long long n = add ? shset_add_batch(s, (const void *const *)ks.k, ks.len, ks.n)
			  : shset_remove_batch(s, (const void *const *)ks.k, ks.len, ks.n);
	if (n < 0)
		code = fail(EXIT_SET, add ? "add" : "remove", (int)n);
	else if (o->json)
		printf("{\"%s\": %lld, \"given\": %zu}\n", add ? "added" : "removed", n, ks.n);
	else
		printf("%s %lld of %zu\n", add ? "added" : "removed", n, ks.n);
	shset_close(s);
	keys_free(&ks);
	return code;
}

static int cmd_contains(struct opts *o)
{
	struct keys ks;
	shset *s;
	int code = gather(o, &ks), all = 1;

	if (!code && !ks.n) {
		fprintf(stderr, "%s contains: no key given\n", cmd);
		code = EXIT_USAGE;
	}
	if (!code)
		code = open_served(o, &s);
	if (code) {
		keys_free(&ks);
		return code;
	}
	if (o->json)
		fputs("[", stdout);
	for (size_t i = 0; i < ks.n; i++) {
		int r = shset_contains(s, ks.k[i], ks.len[i]);
		if (r < 0) {
			code = fail(EXIT_SET, "contains", r);
			break;
		}
		all &= r;
		if (o->json) {
			fputs(i ? ", {\"key\": " : "{\"key\": ", stdout);
			json_key(stdout, ks.k[i], ks.len[i]);
			printf(", \"present\": %s}", r ? "true" : "false");
		}
	}
	if (o->json)
		fputs("]\n", stdout);
	shset_close(s);
	keys_free(&ks);
	return code ? code : all ? 0 : EXIT_NO;
}

/* --- keys out --------------------------------------------------------------------------- */

static int collect_one(const void *k, size_t len, void *arg)
{
	return keys_push(arg, k, len);
}

static struct keys *sort_keys;

static int key_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	size_t li = sort_keys->len[i], lj = sort_keys->len[j];
	int c = memcmp(sort_keys->k[i], sort_keys->k[j], li < lj ? li : lj);
	return c ? c : (li > lj) - (li < lj);
}

/* Every key of one consistent state, in memory; *@order their order (byte
 * order with @sorted). */
static int collect(shset *s, struct keys *ks, size_t **order, int sorted)
{
	int err;

	memset(ks, 0, sizeof(*ks));
	if ((err = shset_foreach(s, collect_one, ks)))
		return err;
	*order = malloc((ks->n + 1) * sizeof(size_t));
	if (!*order)
		return -ENOMEM;
	for (size_t i = 0; i < ks->n; i++)
		(*order)[i] = i;
	if (sorted) {
		sort_keys = ks;
		qsort(*order, ks->n, sizeof(size_t), key_cmp);
	}
	return 0;
}

struct list_ctx {
	enum key_mode km;
	int first;
};

static int list_one(const void *k, size_t len, void *arg)
{
	struct list_ctx *c = arg;
	if (c->km == KM_JSON) {
		fputs(c->first ? "" : ", ", stdout);
		c->first = 0;
	}
	return key_write(stdout, c->km, k, len);
}

static int cmd_list(struct opts *o)
{
	struct list_ctx c = {o->km, 1};
	shset *s;
	int code = open_served(o, &s), err = 0;

	if (code)
		return code;
	if (!o->sorted && o->km != KM_NUL && o->km != KM_RAW) {
		/* Every key can be written: stream. */
		if (o->km == KM_JSON)
			fputs("[", stdout);
		err = shset_foreach(s, list_one, &c);
		if (o->km == KM_JSON)
			fputs("]\n", stdout);
	} else {
		/* Check every key before the first is written, so that a key
		 * the mode cannot carry leaves no partial list behind. */
		struct keys ks;
		size_t *order = NULL;
		err = collect(s, &ks, &order, o->sorted);
		for (size_t i = 0; !err && (o->km == KM_NUL || o->km == KM_RAW) && i < ks.n; i++)
			if (memchr(ks.k[i], o->km == KM_NUL ? 0 : '\n', ks.len[i]))
				err = KEYFMT_CANNOT;
		if (!err && o->km == KM_JSON)
			fputs("[", stdout);
		for (size_t i = 0; !err && i < ks.n; i++)
			err = list_one(ks.k[order[i]], ks.len[order[i]], &c);
		if (!err && o->km == KM_JSON)
			fputs("]\n", stdout);
		free(order);
		keys_free(&ks);
	}
	shset_close(s);
	if (err == KEYFMT_CANNOT) {
		fflush(stdout);
		fprintf(stderr, "%s list: %s\n", cmd, keyfmt_cannot(o->km));
		return EXIT_IO;
	}
	if (!err && fflush(stdout))
		return fail(EXIT_IO, "stdout", errno);
	return err ? fail(EXIT_SET, "list", err) : 0;
}

/* One RESP bulk string. */
static void resp_bulk(const void *p, size_t len)
{
	printf("$%zu\r\n", len);
	fwrite(p, 1, len, stdout);
	fputs("\r\n", stdout);
}

#define RESP_BATCH                                                                                 \
	1000 /* members per SADD: big enough to be fast, small enough                              \
		not to hold Redis long */

static int cmd_export(struct opts *o)
{
	struct keys ks;
	size_t *order = NULL;
	shset *s;
	int code = open_served(o, &s), err;

	if (code)
		return code;
	err = collect(s, &ks, &order, o->sorted);
	shset_close(s);
	if (!err) {
		size_t kl = strlen(o->resp_key);
		/* MULTI/EXEC: no Redis client sees the set half replaced. */
		if (o->replace) {
			fputs("*1\r\n", stdout);
			resp_bulk("MULTI", 5);
			fputs("*2\r\n", stdout);
			resp_bulk("DEL", 3);
			resp_bulk(o->resp_key, kl);
		}
		for (size_t i = 0; i < ks.n; i += RESP_BATCH) {
			size_t n = ks.n - i < RESP_BATCH ? ks.n - i : RESP_BATCH;
			printf("*%zu\r\n", n + 2);
			resp_bulk("SADD", 4);
			resp_bulk(o->resp_key, kl);
			for (size_t j = i; j < i + n; j++)
				resp_bulk(ks.k[order[j]], ks.len[order[j]]);
		}
		if (o->replace) {
			fputs("*1\r\n", stdout);
			resp_bulk("EXEC", 4);
		}
	}
	free(order);
	keys_free(&ks);
	if (!err && fflush(stdout))
		return fail(EXIT_IO, "stdout", errno);
	return err ? fail(EXIT_SET, "export", err) : 0;
}

/* --- the rest --------------------------------------------------------------------------- */

static int cmd_size(struct opts *o)
{
	shset *s;
	int code = open_served(o, &s);

	if (code)
		return code;
	long long n = shset_size(s);
	shset_close(s);
	if (n < 0)
		return fail(EXIT_SET, "size", (int)n);
	printf(o->json ? "{\"count\": %lld}\n" : "%lld\n", n);
	return 0;
}

static int cmd_clear(struct opts *o)
{
	shset *s;
	int code = open_served(o, &s);

	if (code)
		return code;
	int err = shset_clear(s);
	shset_close(s);
	if (err)
		return fail(EXIT_SET, "clear", err);
	if (o->json)
		puts("{\"cleared\": true}");
	return 0;
}

static int cmd_save(struct opts *o)
{
	shset *s;
	int code = open_served(o, &s);

	if (code)
		return code;
	int err = shset_save_ex(s, o->args[0], o->sorted ? SHSET_SAVE_SORTED : 0);
	shset_close(s);
	if (err)
		return fail(EXIT_IO, o->args[0], err);
	if (o->json) {
		fputs("{\"saved\": true, \"path\": ", stdout);
		json_text(stdout, o->args[0], strlen(o->args[0]));
		printf(", \"sorted\": %s}\n", o->sorted ? "true" : "false");
	}
	return 0;
}

static int cmd_stats(struct opts *o)
{
	struct shset_stats st;
	shset *s;
	int code = open_served(o, &s);

	if (code)
		return code;
	int err = shset_stats(s, &st);
	shset_close(s);
	if (err)
		return fail(EXIT_SET, "stats", err);
	if (o->json)
		printf("{\"count\": %llu, \"capacity\": %llu, \"tombstones\": %llu, "
		       "\"load\": %.4f, \"key_bytes\": %llu, \"heap_bytes\": %llu, "
		       "\"file_bytes\": %llu, \"mem_bytes\": %llu, \"bytes_per_key\": %.2f, "
		       "\"max_procs\": %u, \"attached\": %u, \"counters\": {\"txns\": %llu, "
		       "\"repairs\": %llu, \"resizes\": %llu}, \"lock\": {\"locked\": %s, "
		       "\"acquisitions\": %llu, \"contended\": %llu, \"futex_waits\": %llu, "
		       "\"owner_died\": %llu}}\n",
		       (unsigned long long)st.count, (unsigned long long)st.capacity,
		       (unsigned long long)st.tombstones, st.load, (unsigned long long)st.key_bytes,
		       (unsigned long long)st.heap_bytes, (unsigned long long)st.file_bytes,
		       (unsigned long long)st.mem_bytes, st.bytes_per_key, st.max_procs,
		       st.attached, (unsigned long long)st.txns, (unsigned long long)st.repairs,
		       (unsigned long long)st.resizes, st.lock.locked ? "true" : "false",
		       (unsigned long long)st.lock.acquisitions,
		       (unsigned long long)st.lock.contended,
		       (unsigned long long)st.lock.futex_waits,
		       (unsigned long long)st.lock.owner_died);
	else
		printf(
		    "keys %llu\ncapacity %llu\nload %.3f\ntombstones %llu\n"
		    "key bytes %llu\nmemory bytes %llu\nbytes per key %.1f\n"
		    "transactions %llu\nrepairs %llu\nresizes %llu\n"
		    "processes %u of %u\nlock acquisitions %llu (%llu contended, "
		    "%llu futex waits, %llu owner deaths)\n",
		    (unsigned long long)st.count, (unsigned long long)st.capacity, st.load,
		    (unsigned long long)st.tombstones, (unsigned long long)st.key_bytes,
		    (unsigned long long)st.mem_bytes, st.bytes_per_key, (unsigned long long)st.txns,
		    (unsigned long long)st.repairs, (unsigned long long)st.resizes, st.attached,
		    st.max_procs, (unsigned long long)st.lock.acquisitions,
		    (unsigned long long)st.lock.contended, (unsigned long long)st.lock.futex_waits,
		    (unsigned long long)st.lock.owner_died);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;

	if (argc < 2)
		return usage(stderr, EXIT_USAGE);
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help"))
		return usage(stdout, 0);
	if (!strcmp(name, "--version")) {
		printf("shset %s (library %d.%d)\n", SHSET_TOOLS_VERSION, SHSET_VERSION_MAJOR,
		       SHSET_VERSION_MINOR);
		return 0;
	}
	const struct command *c = NULL;
	for (size_t i = 0; i < NCOMMANDS && !c; i++)
		if (!strcmp(commands[i].name, name))
			c = &commands[i];
	if (!c) {
		fprintf(stderr, "%s: unknown command '%s'\n", cmd, name);
		return usage(stderr, EXIT_USAGE);
	}
	int code = parse(c, argc - 2, argv + 2, &o);
	if (code < 0) {
		o.name = c->name;
		code = c->fn(&o);
	}
	free(o.args);
	return code;
}
