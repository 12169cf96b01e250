/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json_dom.h - a read-only JSON document model for the C decoder, backed by
 * simdjson (json_dom.cpp). Parsing is as strict as jansson with
 * JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, which the
 * decoder used before: RFC 8259 grammar, valid UTF-8, escapes (surrogate
 * pairs included) decoded, \u0000 allowed in strings but not in keys,
 * duplicate keys, integers beyond int64 and nesting deeper than 2048
 * rejected.
 *
 * Memory: a jdom_scratch holds the parsers and a buffer for one message's
 * documents. jdom_scratch_take() hands out the calling thread's cached one
 * (or a new one) and jdom_scratch_give() puts it back, so the steady state
 * allocates nothing per message. Values point into the scratch's parsers
 * and stay valid until that parser parses again or the scratch is given
 * back.
 */
#ifndef CHORIA_JSON_DOM_H
#define CHORIA_JSON_DOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes that must be readable after a document parsed in place. */
#define JDOM_PADDING 64
/* Parsers per scratch. */
#define JDOM_PARSERS 3

enum jdom_type {
	JDOM_OBJECT,
	JDOM_ARRAY,
	JDOM_STRING,
	JDOM_INTEGER, /* fits int64_t */
	JDOM_REAL,    /* written with a fraction or an exponent */
	JDOM_BOOL,
	JDOM_NULL,
};

/* A value inside a parsed document; copy it freely. */
struct jdom_value {
	uint64_t opaque[2];
};

/* A position in an array. */
struct jdom_iter {
	uint64_t opaque[4];
};

struct jdom_scratch;
struct jdom_parser;

/* This thread's cached scratch, or a new one; NULL when out of memory. */
struct jdom_scratch *jdom_scratch_take(void);

/* Return a scratch (NULL is fine): it becomes this thread's cached one,
 * unless the thread has one already or it grew past what is worth keeping
 * (a rare huge message), in which case it is freed. */
void jdom_scratch_give(struct jdom_scratch *s);

/* Parser `i` (< JDOM_PARSERS) of the scratch. */
struct jdom_parser *jdom_scratch_parser(struct jdom_scratch *s, unsigned i);

/* The scratch's byte buffer, at least `len` + JDOM_PADDING bytes; its
 * contents are not kept across calls. NULL when out of memory. */
unsigned char *jdom_scratch_buffer(struct jdom_scratch *s, size_t len);

/*
 * Parse `len` bytes at `data` into `p`, replacing its previous document.
 * `padded`: JDOM_PADDING readable bytes follow the data, so it is parsed
 * where it is; otherwise it is copied first. Returns 0 and sets *root, or
 * -EBADMSG with *why a static English text, or -ERANGE (with *why) for
 * JSON that holds an integer between INT64_MAX and UINT64_MAX, or -ENOMEM.
 */
int jdom_parse(struct jdom_parser *p, const char *data, size_t len, bool padded,
	       struct jdom_value *root, const char **why);

enum jdom_type jdom_type(const struct jdom_value *v);

/* obj[key]: true and *out set when obj is an object that has the key. */
bool jdom_member(const struct jdom_value *obj, const char *key, struct jdom_value *out);

/* A string's bytes, NUL-terminated after `*n` bytes (which may hold NUL). */
void jdom_string(const struct jdom_value *v, const char **s, size_t *n);

int64_t jdom_integer(const struct jdom_value *v);

/* Whether n bytes at s are UTF-8 text (NUL bytes allowed). */
bool jdom_utf8_valid(const char *s, size_t n);

/* A JDOM_BOOL's value (false for any other type). */
bool jdom_bool(const struct jdom_value *v);

/* A JDOM_INTEGER or JDOM_REAL as a double (0 for any other type). */
double jdom_number(const struct jdom_value *v);

/* Array iteration: first, then next, until either returns false. */
bool jdom_array_first(const struct jdom_value *arr, struct jdom_iter *it, struct jdom_value *out);
bool jdom_array_next(struct jdom_iter *it, struct jdom_value *out);

#ifdef __cplusplus
}
#endif

#endif
