/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envelope, written directly: one pass over each value that checks its
 * UTF-8 and escapes it. The bytes are the ones jansson's compact dump wrote
 * before (keys in design order; '"', '\\' and control characters escaped,
 * the common ones as \b \f \n \r \t and the others as \u00XX in upper case;
 * '/', DEL and all non-ASCII characters as they are), which test_envelope
 * checks against jansson itself.
 */
#include "envelope.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Worst case per input byte: a control character becomes \u00XX. */
#define ENVELOPE_ESCAPE_MAX 6
/* Keys, quotes, punctuation and the time: far less than this. */
#define ENVELOPE_FIXED_MAX 96

int envelope_time(char *buf, size_t len, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	/* RFC 3339 has years 0001 to 9999, always four digits. */
	if (t < -62135596800LL || t > 253402300799LL || !gmtime_r(&tt, &tm))
		return -EINVAL;
	int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return n > 0 && (size_t)n < len ? 0 : -EINVAL;
}

int envelope_time_ns(char *buf, size_t len, int64_t t, uint32_t nsec)
{
	char frac[11];
	int digits = 9;

	if (nsec > 999999999u || len < 2)
		return -EINVAL;
	if (envelope_time(buf, len, t) != 0)
		return -EINVAL;
	if (nsec == 0)
		return 0;
	/* As Go's RFC3339Nano: up to nine digits, trailing zeros dropped. */
	while (nsec % 10 == 0) {
		nsec /= 10;
		digits--;
	}
	snprintf(frac, sizeof(frac), ".%0*u", digits, nsec);
	size_t at = strlen(buf) - 1; /* the 'Z' */
	size_t flen = strlen(frac);
	if (at + flen + 2 > len)
		return -EINVAL;
	memcpy(buf + at, frac, flen);
	buf[at + flen] = 'Z';
	buf[at + flen + 1] = '\0';
	return 0;
}

/* Bytes in a UTF-8 sequence starting with `c`, or 0 for a byte that cannot
 * start one (continuation bytes, overlong C0/C1, F5 and above). */
static size_t envelope_utf8_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		return 2;
	if (c < 0xf0)
		return 3;
	if (c < 0xf5)
		return 4;
	return 0;
}

/* A complete sequence of `n` bytes at s: continuation bytes, no overlong
 * form, no UTF-16 surrogate, nothing past U+10FFFF. */
static bool envelope_utf8_valid(const unsigned char *s, size_t n)
{
	uint32_t cp = s[0] & (0x7fu >> n);

	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return false;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	return !((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000));
}

/* ASCII that goes out as it is: all but control characters, '"' and '\\'. */
static const bool envelope_plain[256] = {
	[0x20 ... 0x21] = true, /* '"' is 0x22 */
	[0x23 ... 0x5b] = true, /* '\\' is 0x5c */
	[0x5d ... 0x7f] = true,
};

#define ENVELOPE_ONES 0x0101010101010101ull
#define ENVELOPE_HIGHS 0x8080808080808080ull

/* Whether the word has a byte of 0 (exact: the borrow that can mark a
 * byte after a zero one needs a zero one first). */
static bool envelope_has_zero(uint64_t w)
{
	return ((w - ENVELOPE_ONES) & ~w & ENVELOPE_HIGHS) != 0;
}

/* Whether all eight bytes at p are plain ASCII: none at 0x80 or above,
 * none below 0x20, no '"' and no '\\'. */
static bool envelope_plain8(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof(w));
	if (w & ENVELOPE_HIGHS)
		return false;
	/* With every byte below 0x80, b - 0x20 borrows exactly when b < 0x20. */
	if ((w - 0x20 * ENVELOPE_ONES) & ENVELOPE_HIGHS)
		return false;
	return !envelope_has_zero(w ^ ('"' * ENVELOPE_ONES)) &&
	       !envelope_has_zero(w ^ ('\\' * ENVELOPE_ONES));
}

/*
 * Write `n` bytes of `s` as a quoted JSON string at `out`, which has room
 * for n * ENVELOPE_ESCAPE_MAX + 2 bytes. Returns the bytes written, or 0
 * when s is not UTF-8.
 */
static size_t envelope_string(char *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	char *o = out;

	*o++ = '"';
	while (p < end) {
		/* The common case: a run that needs neither escape nor check,
		 * looked over eight bytes at a time first. */
		const unsigned char *run = p;
		while (end - p >= 8 && envelope_plain8(p))
			p += 8;
		while (p < end && envelope_plain[*p])
			p++;
		memcpy(o, run, (size_t)(p - run));
		o += p - run;
		if (p == end)
			break;
		unsigned char c = *p;
		if (c >= 0x80) {
			size_t len = envelope_utf8_len(c);
			if (len == 0 || len > (size_t)(end - p) || !envelope_utf8_valid(p, len))
				return 0;
			memcpy(o, p, len);
			o += len;
			p += len;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
		case '\\':
			*o++ = (char)c;
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 0xf];
			o += 5;
			break;
		}
		p++;
	}
	*o++ = '"';
	return (size_t)(o - out);
}

static char *envelope_lit(char *o, const char *lit, size_t n)
{
	memcpy(o, lit, n);
	return o + n;
}

#define ENVELOPE_LIT(o, s) envelope_lit((o), (s), sizeof(s) - 1)

int envelope_label_init(struct envelope_label *l, const char *protocol)
{
	static const char head_open[] = "{\"protocol\":", head_close[] = ",\"data\":";
	size_t n = strlen(protocol);

	/* The worst case fits, whatever the label's bytes. */
	_Static_assert(sizeof(head_open) + sizeof(head_close) +
				       ENVELOPE_LABEL_MAX * ENVELOPE_ESCAPE_MAX + 2 <=
			       ENVELOPE_HEAD_MAX,
		       "room for the longest label");
	if (n == 0 || n > ENVELOPE_LABEL_MAX)
		return -EINVAL;
	char *o = ENVELOPE_LIT(l->head, head_open);
	size_t q = envelope_string(o, protocol, n);
	if (!q)
		return -EINVAL;
	o = ENVELOPE_LIT(o + q, head_close);
	l->head_len = (size_t)(o - l->head);
	return 0;
}

int envelope_label_read(struct envelope_label *l, const struct cad_host *host,
			const struct cad_config *cfg)
{
	const char *protocol = host->cfg_str(cfg, "output_protocol");
	if (protocol && envelope_label_init(l, protocol) == 0)
		return 0;
	host->cfg_error(cfg, "output_protocol", "must be UTF-8 text of 1 to %d bytes",
			ENVELOPE_LABEL_MAX);
	return -EINVAL;
}

size_t envelope_max_len(const struct envelope_label *l, const struct cad_msg *m)
{
	return ENVELOPE_FIXED_MAX + l->head_len +
	       ENVELOPE_ESCAPE_MAX * (m->body_len + m->sender_len + m->request_id_len);
}

int envelope_write(char *buf, size_t cap, size_t *len, const struct envelope_label *l,
		   const struct cad_msg *m)
{
	size_t n;
	char *o = buf;

	if (cap < envelope_max_len(l, m))
		return -ENOSPC;
	/* Messages come in time order, many in the same second: each
	 * thread keeps the last time it wrote. */
	static _Thread_local bool have_time;
	static _Thread_local int64_t last_time;
	static _Thread_local uint32_t last_nsec;
	static _Thread_local char last_when[32];
	if (!have_time || m->time != last_time || m->time_nsec != last_nsec) {
		have_time = false;
		if (envelope_time_ns(last_when, sizeof(last_when), m->time, m->time_nsec) != 0)
			return -EINVAL;
		last_time = m->time;
		last_nsec = m->time_nsec;
		have_time = true;
	}

	memcpy(o, l->head, l->head_len);
	o += l->head_len;
	if (!(n = envelope_string(o, m->body, m->body_len)))
		return -EINVAL;
	o += n;
	o = ENVELOPE_LIT(o, ",\"sender\":");
	if (!(n = envelope_string(o, m->sender, m->sender_len)))
		return -EINVAL;
	o += n;
	o = ENVELOPE_LIT(o, ",\"time\":");
	o += envelope_string(o, last_when, strlen(last_when));
	o = ENVELOPE_LIT(o, ",\"requestid\":");
	if (!(n = envelope_string(o, m->request_id, m->request_id_len)))
		return -EINVAL;
	o += n;
	*o++ = '}';
	*len = (size_t)(o - buf);
	return 0;
}

int envelope_encode(char **out, size_t *len, const struct envelope_label *l,
		    const struct cad_msg *m)
{
	size_t cap = envelope_max_len(l, m);
	char *buf = malloc(cap);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = envelope_write(buf, cap, len, l, m);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}
