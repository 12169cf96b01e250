/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cad_text.h - untrusted text (a sender's name, a request id, a parser's
 * complaint quoting raw input) made safe for one log line, the same way in
 * the daemon and in every module.
 *
 * Header only, rather than a host service in struct cad_host: these are
 * pure functions of their arguments, needed where no host is at hand (the
 * ingest decoder and its unit tests), and a header costs no ABI slot.
 */
#ifndef CAD_TEXT_H
#define CAD_TEXT_H

#include <stddef.h>
#include <string.h>

/* One byte as it appears in a log line: printable ASCII but for '"' and
 * '\\' (which would confuse quoting) as is, anything else as \xNN. Writes
 * 1 or 4 characters to out (no NUL) and returns how many. */
static inline size_t cad_text_escape_byte(unsigned char c, char out[4])
{
	static const char hex[] = "0123456789abcdef";
	if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
		out[0] = (char)c;
		return 1;
	}
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[c >> 4];
	out[3] = hex[c & 0xf];
	return 4;
}

/*
 * `s` (`n` bytes, NUL bytes included) into buf for a log line, each byte as
 * cad_text_escape_byte() writes it. A value that does not fit is cut after
 * a whole byte's text and ends with "...". Always NUL-terminates a
 * non-empty buffer. Returns buf.
 */
static inline char *cad_text_printable(char *buf, size_t len, const char *s, size_t n)
{
	char one[4];
	size_t need = 0, o = 0, cap;

	if (!buf || len == 0)
		return buf;
	cap = len - 1;
	for (size_t i = 0; i < n; i++)
		need += cad_text_escape_byte((unsigned char)s[i], one);
	if (need > cap && cap >= 3)
		cap -= 3; /* room for "..." */
	for (size_t i = 0; i < n; i++) {
		size_t k = cad_text_escape_byte((unsigned char)s[i], one);
		if (o + k > cap)
			break;
		memcpy(buf + o, one, k);
		o += k;
	}
	if (need > len - 1 && len - 1 - o >= 3) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* Text already formatted (it may quote raw input) made printable ASCII in
 * place: every byte outside it becomes '?'. Accepts NULL. Returns s. */
static inline char *cad_text_scrub(char *s)
{
	for (char *p = s; p && *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return s;
}

#endif /* CAD_TEXT_H */
