/* SPDX-License-Identifier: MIT */
/* keyfmt.c - the key encodings of the tools (see keyfmt.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keyfmt.h"

const char *keyfmt_option(enum key_mode m)
{
	static const char *const name[] = {"text", "--hex", "-0", "--raw", "--json", "--redis"};
	return name[m];
}

int utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	/* Second-byte ranges exclude overlong forms, surrogates and code
	 * points past U+10FFFF (RFC 3629, table 3-7 of Unicode). */
	uint8_t lo = 0x80, hi = 0xbf;
	int len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < (size_t)len || p[1] < lo || p[1] > hi)
		return 0;
	for (int i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

int utf8_valid(const void *s, size_t len)
{
	const uint8_t *p = s;

	for (size_t i = 0; i < len;) {
		int l = utf8_seq(p + i, len - i);
		if (!l)
			return 0;
		i += (size_t)l;
	}
	return 1;
}

/* The letter of a control character's short escape in both the text and
 * the JSON modes (\n \t \r), or 0. */
static char short_escape(uint8_t c)
{
	return c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : 0;
}

/* The body of a JSON string for valid UTF-8 (@fffd: replace invalid bytes). */
static void json_chars(FILE *f, const uint8_t *k, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint8_t c = k[i];
		int l = utf8_seq(k + i, len - i);
		if (!l) {
			fputs("\\ufffd", f);
			i++;
			continue;
		}
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (short_escape(c))
			fprintf(f, "\\%c", short_escape(c));
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fwrite(k + i, 1, (size_t)l, f);
		i += (size_t)l;
	}
}

void json_text(FILE *f, const void *s, size_t len)
{
	fputc('"', f);
	json_chars(f, s, len);
	fputc('"', f);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void json_key(FILE *f, const void *key, size_t len)
{
	const uint8_t *k = key;

	if (utf8_valid(k, len)) {
		json_text(f, k, len);
		return;
	}
	fputs("{\"base64\": \"", f);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)k[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;
		if (n > 1)
			v |= (uint32_t)k[i + 1] << 8;
		if (n > 2)
			v |= k[i + 2];
		fputc(b64[v >> 18], f);
		fputc(b64[(v >> 12) & 63], f);
		fputc(n > 1 ? b64[(v >> 6) & 63] : '=', f);
		fputc(n > 2 ? b64[v & 63] : '=', f);
	}
	fputs("\"}", f);
}

static void text_write(FILE *f, const uint8_t *k, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint8_t c = k[i];
		int l = c >= 0x80 ? utf8_seq(k + i, len - i) : 1;
		/* C1 controls (U+0080..U+009F) are escaped like C0 ones: a
		 * terminal would act on them. */
		if (l == 2 && c == 0xc2 && k[i + 1] < 0xa0)
			l = 0;
		if (c == '\\')
			fputs("\\\\", f);
		else if (short_escape(c))
			fprintf(f, "\\%c", short_escape(c));
		else if (c < 0x20 || c == 0x7f || l == 0) {
			fprintf(f, "\\x%02x", c);
			l = 1;
		} else
			fwrite(k + i, 1, (size_t)l, f);
		i += (size_t)(l ? l : 1);
	}
	fputc('\n', f);
}

int key_write(FILE *f, enum key_mode m, const void *key, size_t len)
{
	const uint8_t *k = key;

	switch (m) {
	case KM_HEX:
		for (size_t i = 0; i < len; i++)
			fprintf(f, "%02x", k[i]);
		fputc('\n', f);
		return 0;
	case KM_NUL:
	case KM_RAW: {
		int sep = m == KM_NUL ? 0 : '\n';
		/* len 0: k may be NULL. */
		if (len && memchr(k, sep, len))
			return KEYFMT_CANNOT;
		if (len)
			fwrite(k, 1, len, f);
		fputc(sep, f);
		return 0;
	}
	case KM_JSON:
		json_key(f, k, len);
		return 0;
	case KM_TEXT:
	case KM_REDIS:
		break;
	}
	text_write(f, k, len);
	return 0;
}

const char *keyfmt_cannot(enum key_mode m)
{
	if (m == KM_NUL)
		return "a key contains a NUL byte, which -0 cannot carry: use --hex, --json or "
		       "the default text mode";
	return "a key contains a newline, which --raw cannot carry: use --hex, --json, -0 or "
	       "the default text mode";
}

/* --- reading ------------------------------------------------------------------------- */

void key_reader_init(struct key_reader *r, FILE *f, enum key_mode m)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	r->mode = m;
	r->line = m == KM_JSON; /* JSON counts newlines as it goes */
}

void key_reader_free(struct key_reader *r)
{
	free(r->buf);
	free(r->key);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long hex_decode_n(char *s, size_t n)
{
	if (n % 2)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		s[i / 2] = (char)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

static int key_reserve(struct key_reader *r, size_t n)
{
	if (n <= r->key_cap)
		return 0;
	size_t cap = r->key_cap * 2 > n ? r->key_cap * 2 : n + 64;
	uint8_t *k = realloc(r->key, cap);
	if (!k)
		return -ENOMEM;
	r->key = k;
	r->key_cap = cap;
	return 0;
}

static int bad(struct key_reader *r, const char *fmt, const char *detail)
{
	int n = snprintf(r->err, sizeof(r->err), "line %lu: ", r->line);
	snprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, detail);
	return -EINVAL;
}

/* Decodes a text-mode line (escapes of text_write) or, with @redis, the
 * inside of one of redis-cli's quoted strings (sdscatrepr's escapes). */
static int unescape(struct key_reader *r, const char *s, size_t n, int redis, size_t *len)
{
	size_t o = 0;
	int err = key_reserve(r, n + 1);

	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c != '\\') {
			r->key[o++] = (uint8_t)c;
			continue;
		}
		if (++i == n)
			return bad(r, "a backslash ends the line%s (write it as \\\\)", "");
		switch (s[i]) {
		case '\\':
			r->key[o++] = '\\';
			break;
		case 'n':
			r->key[o++] = '\n';
			break;
		case 't':
			r->key[o++] = '\t';
			break;
		case 'r':
			r->key[o++] = '\r';
			break;
		case 'x': {
			int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return bad(r, "\\x needs two hex digits%s", "");
			r->key[o++] = (uint8_t)(hi << 4 | lo);
			i += 2;
			break;
		}
		case '"':
		case 'a':
		case 'b':
			if (redis) {
				r->key[o++] = s[i] == '"' ? '"' : s[i] == 'a' ? '\a' : '\b';
				break;
			}
			/* fall through */
		default: {
			char esc[3] = {'\\', s[i], 0};
			return bad(r,
				   redis
				       ? "unknown escape '%s' in a quoted reply"
				       : "unknown escape '%s' (text mode decodes \\\\ \\n \\t \\r "
					 "\\xHH; use --raw for keys as they are)",
				   esc);
		}
		}
	}
	*len = o;
	return 0;
}

/* One line of redis-cli's non-raw output: [N) ]"..." or (empty array). */
static int redis_line(struct key_reader *r, char *s, size_t n, size_t *len)
{
	size_t i = 0;

	while (i < n && s[i] == ' ')
		i++;
	size_t d = i;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i > d) {
		if (i + 1 >= n || s[i] != ')' || s[i + 1] != ' ')
			return bad(r, "not a redis-cli reply line%s", "");
		i += 2;
	}
	if (!strncmp(s + i, "(empty", 6) && i == d)
		return 0; /* (empty array), (empty list or set) */
	if (i >= n || s[i] != '"' || n - i < 2 || s[n - 1] != '"')
		return bad(r,
			   "not a quoted redis-cli reply%s (use redis-cli --no-raw; its --raw "
			   "output is read with --raw)",
			   "");
	int err = unescape(r, s + i + 1, n - i - 2, 1, len);
	return err ? err : 1;
}

static int line_read(struct key_reader *r, size_t *len)
{
	for (;;) {
		int sep = r->mode == KM_NUL ? 0 : '\n';
		errno = 0;
		ssize_t n = getdelim(&r->buf, &r->cap, sep, r->f);
		if (n < 0)
			return ferror(r->f) ? -(errno ? errno : EIO) : 0;
		r->line++;
		if (n > 0 && r->buf[n - 1] == (char)sep)
			n--;
		size_t l = (size_t)n;
		int err;
		switch (r->mode) {
		case KM_HEX: {
			long h = hex_decode_n(r->buf, l);
			if (h < 0) {
				r->buf[l] = 0;
				return bad(r,
					   l % 2 ? "an odd number of hex digits%s"
						 : "not hex%s (--hex reads two hex digits a byte)",
					   "");
			}
			l = (size_t)h;
			break;
		}
		case KM_TEXT:
			if ((err = unescape(r, r->buf, l, 0, len)))
				return err;
			return 1;
		case KM_REDIS:
			err = redis_line(r, r->buf, l, len);
			if (err == 0)
				continue;
			return err;
		default:
			break;
		}
		if ((err = key_reserve(r, l + 1)))
			return err;
		memcpy(r->key, r->buf, l);
		*len = l;
		return 1;
	}
}

/* --- JSON ----------------------------------------------------------------------------- */

static int jgetc(struct key_reader *r)
{
	int c = getc(r->f);
	if (c == '\n')
		r->line++;
	return c;
}

static int jws(struct key_reader *r)
{
	int c;
	do
		c = jgetc(r);
	while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
	return c;
}

static int jexpect(struct key_reader *r, const char *what)
{
	if (ferror(r->f))
		return -(errno ? errno : EIO);
	return bad(r, "malformed JSON: expected %s", what);
}

static int hex4(struct key_reader *r)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(jgetc(r));
		if (h < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

static int put_utf8(struct key_reader *r, size_t *o, uint32_t cp)
{
	int err = key_reserve(r, *o + 4);
	uint8_t *p;

	if (err)
		return err;
	p = r->key + *o;
	if (cp < 0x80) {
		p[0] = (uint8_t)cp;
		*o += 1;
	} else if (cp < 0x800) {
		p[0] = (uint8_t)(0xc0 | cp >> 6);
		p[1] = (uint8_t)(0x80 | (cp & 63));
		*o += 2;
	} else if (cp < 0x10000) {
		p[0] = (uint8_t)(0xe0 | cp >> 12);
		p[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
		p[2] = (uint8_t)(0x80 | (cp & 63));
		*o += 3;
	} else {
		p[0] = (uint8_t)(0xf0 | cp >> 18);
		p[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
		p[2] = (uint8_t)(0x80 | ((cp >> 6) & 63));
		p[3] = (uint8_t)(0x80 | (cp & 63));
		*o += 4;
	}
	return 0;
}

/* A JSON string (the opening quote read) into r->key; its bytes are
 * checked to be UTF-8, as RFC 8259 requires. */
static int jstring(struct key_reader *r, size_t *len)
{
	size_t o = 0;
	int err;

	for (;;) {
		int c = jgetc(r);
		if (c == EOF)
			return jexpect(r, "the end of a string");
		if (c == '"')
			break;
		if (c < 0x20)
			return bad(r, "malformed JSON: a control character in a string%s", "");
		if (c != '\\') {
			if ((err = key_reserve(r, o + 1)))
				return err;
			r->key[o++] = (uint8_t)c;
			continue;
		}
		c = jgetc(r);
		const char *simple = strchr("\"\\/bfnrt", c == EOF ? 'X' : c);
		if (c != EOF && c && simple) {
			static const char out[] = "\"\\/\b\f\n\r\t";
			if ((err = key_reserve(r, o + 1)))
				return err;
			r->key[o++] = (uint8_t)out[simple - "\"\\/bfnrt"];
			continue;
		}
		if (c != 'u')
			return bad(r, "malformed JSON: a bad escape in a string%s", "");
		int u = hex4(r);
		if (u < 0)
			return bad(r, "malformed JSON: \\u needs four hex digits%s", "");
		uint32_t cp = (uint32_t)u;
		if (u >= 0xdc00 && u <= 0xdfff)
			return bad(r, "malformed JSON: a lone low surrogate%s", "");
		if (u >= 0xd800 && u <= 0xdbff) {
			int lo = -1;
			if (jgetc(r) == '\\' && jgetc(r) == 'u')
				lo = hex4(r);
			if (lo < 0xdc00 || lo > 0xdfff)
				return bad(
				    r,
				    "malformed JSON: a high surrogate without its low "
				    "one%s (bytes that are not UTF-8 go in {\"base64\": ...})",
				    "");
			cp = 0x10000 + (((uint32_t)u - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
		}
		if ((err = put_utf8(r, &o, cp)))
			return err;
	}
	if (!utf8_valid(r->key, o))
		return bad(r,
			   "a JSON string that is not UTF-8%s (bytes that are not UTF-8 go in "
			   "{\"base64\": ...})",
			   "");
	*len = o;
	return 0;
}

static int b64val(int c)
{
	const char *p = c > 0 ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* {"base64": "..."} (the brace read): decodes into r->key. */
static int jobject(struct key_reader *r, size_t *len)
{
	size_t n;
	int err;

	if (jws(r) != '"')
		return jexpect(r, "\"base64\"");
	if ((err = jstring(r, &n)))
		return err;
	if (n != 6 || memcmp(r->key, "base64", 6))
		return bad(r, "a JSON object key must be \"base64\"%s", "");
	if (jws(r) != ':')
		return jexpect(r, "':'");
	if (jws(r) != '"')
		return jexpect(r, "a base64 string");
	if ((err = jstring(r, &n)))
		return err;
	if (jws(r) != '}')
		return jexpect(r, "'}' (the object has one member, \"base64\")");
	/* Decode in place: the output never overtakes the input. */
	size_t o = 0, q = 0;
	uint32_t acc = 0;
	int pad = 0;
	for (size_t i = 0; i < n; i++) {
		int v = r->key[i] == '=' ? -2 : b64val(r->key[i]);
		if (v == -1 || (pad && v != -2))
			return bad(r, "not base64%s", "");
		if (v == -2) {
			pad++;
			continue;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++q == 4) {
			r->key[o++] = (uint8_t)(acc >> 16);
			r->key[o++] = (uint8_t)(acc >> 8);
			r->key[o++] = (uint8_t)acc;
			q = 0;
			acc = 0;
		}
	}
	if (q == 1 || pad > 2 || (pad && (q + (size_t)pad) % 4))
		return bad(r, "not base64%s (a bad length or padding)", "");
	if (q == 2)
		r->key[o++] = (uint8_t)(acc >> 4);
	else if (q == 3) {
		r->key[o++] = (uint8_t)(acc >> 10);
		r->key[o++] = (uint8_t)(acc >> 2);
	}
	*len = o;
	return 0;
}

static int json_item(struct key_reader *r, int c, size_t *len)
{
	int err;

	if (c == '"')
		err = jstring(r, len);
	else if (c == '{')
		err = jobject(r, len);
	else
		return jexpect(r, "a string or {\"base64\": ...}");
	return err ? err : 1;
}

static int json_read(struct key_reader *r, size_t *len)
{
	int c = jws(r);

	switch (r->json_state) {
	case 0:
		if (c == '[') {
			c = jws(r);
			if (c == ']') {
				r->json_state = 3;
				return json_read(r, len);
			}
			r->json_state = 4;
			return json_item(r, c, len);
		}
		if (c == EOF)
			return 0;
		r->json_state = 2;
		return json_item(r, c, len);
	case 2:
		return c == EOF ? 0 : json_item(r, c, len);
	case 4:
		if (c == ']') {
			r->json_state = 3;
			return json_read(r, len);
		}
		if (c != ',')
			return jexpect(r, "',' or ']'");
		return json_item(r, jws(r), len);
	default:
		return c == EOF ? 0 : jexpect(r, "nothing after the array");
	}
}

int key_read(struct key_reader *r, size_t *len)
{
	/* r->key is never NULL after a key, even the empty one. */
	int err = key_reserve(r, 1);

	if (err)
		return err;
	r->err[0] = 0;
	return r->mode == KM_JSON ? json_read(r, len) : line_read(r, len);
}
