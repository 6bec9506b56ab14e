/* SPDX-License-Identifier: MIT */
/* json.h - a strict JSON syntax checker (RFC 8259) for tool output. */
#ifndef SHSET_TEST_JSON_H
#define SHSET_TEST_JSON_H

#include <string.h>

struct jp {
	const char *p, *end;
	int depth;
};

static void jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int jp_value(struct jp *j);

static int jp_lit(struct jp *j, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n))
		return 0;
	j->p += n;
	return 1;
}

static int jp_string(struct jp *j)
{
	if (j->p >= j->end || *j->p != '"')
		return 0;
	j->p++;
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		if (c < 0x20)
			return 0;
		if (c == '\\') {
			j->p++;
			if (j->p >= j->end)
				return 0;
			if (*j->p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (j->p + i >= j->end ||
					    !strchr("0123456789abcdefABCDEF", j->p[i]))
						return 0;
				j->p += 4;
			} else if (!strchr("\"\\/bfnrt", *j->p)) {
				return 0;
			}
		}
		j->p++;
	}
	if (j->p >= j->end)
		return 0;
	j->p++;
	return 1;
}

static int jp_number(struct jp *j)
{
	const char *s = j->p;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return 0;
	if (*j->p == '0')
		j->p++;
	else
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return 0;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return 0;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	return j->p > s;
}

static int jp_container(struct jp *j, char open, char close, int object)
{
	if (++j->depth > 64)
		return 0;
	j->p++; /* open */
	jp_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return 1;
	}
	for (;;) {
		jp_ws(j);
		if (object) {
			if (!jp_string(j))
				return 0;
			jp_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return 0;
			j->p++;
		}
		if (!jp_value(j))
			return 0;
		jp_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			j->depth--;
			return 1;
		}
		return 0;
	}
	(void)open;
}

static int jp_value(struct jp *j)
{
	jp_ws(j);
	if (j->p >= j->end)
		return 0;
	switch (*j->p) {
	case '{':
		return jp_container(j, '{', '}', 1);
	case '[':
		return jp_container(j, '[', ']', 0);
	case '"':
		return jp_string(j);
	case 't':
		return jp_lit(j, "true");
	case 'f':
		return jp_lit(j, "false");
	case 'n':
		return jp_lit(j, "null");
	default:
		return jp_number(j);
	}
}

/* 1 if @s is exactly one valid JSON value (surrounding whitespace allowed). */
static inline int json_valid(const char *s)
{
	struct jp j = {s, s + strlen(s), 0};
	if (!jp_value(&j))
		return 0;
	jp_ws(&j);
	return j.p == j.end;
}

#endif
