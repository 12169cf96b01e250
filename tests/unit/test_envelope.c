/* SPDX-License-Identifier: Apache-2.0 */
/* The published envelope and the subjects it goes to. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "subject.h"

/* The label of `protocol`, prepared as a module does at create time. */
static struct envelope_label labels[2];
static const struct envelope_label *label(const char *protocol)
{
	struct envelope_label *l = &labels[strcmp(protocol, ENVELOPE_PROTOCOL_JETSTREAM) != 0];
	cr_assert_eq(envelope_label_init(l, protocol), 0);
	return l;
}

static struct cad_msg msg(const char *sender, const char *id, int64_t t, const char *body,
			  size_t body_len)
{
	return (struct cad_msg){.sender = sender,
				.sender_len = strlen(sender),
				.request_id = id,
				.request_id_len = strlen(id),
				.time = t,
				.body = body,
				.body_len = body_len};
}

Test(envelope, has_the_design_fields_in_order)
{
	struct cad_msg m = msg("web1.ldn.example.net", "5e8b2f0e1a4c4d8f9b7a6c5d4e3f2a1b",
			       1520088557, "{\"a\":1}", 7);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	const char *want = "{\"protocol\":\"choria:adapters:jetstream:output:1\","
			   "\"data\":\"{\\\"a\\\":1}\",\"sender\":\"web1.ldn.example.net\","
			   "\"time\":\"2018-03-03T14:49:17Z\","
			   "\"requestid\":\"5e8b2f0e1a4c4d8f9b7a6c5d4e3f2a1b\"}";
	cr_assert_eq(len, strlen(want));
	cr_assert_arr_eq(out, want, len);
	free(out);
}

Test(envelope, data_round_trips_byte_for_byte)
{
	/* Quotes, escapes, <>&, a NUL and multi-byte UTF-8 all survive. */
	static const char body[] = "{\"x\":\"<b>&amp;\\u2028\"}\0tail \xe2\x9c\x93";
	size_t blen = sizeof(body) - 1;
	struct cad_msg m = msg("n1", "0123456789abcdef0123456789abcdef", 0, body, blen);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_NATSSTREAM), &m), 0);
	json_error_t e;
	json_t *o = json_loadb(out, len, JSON_ALLOW_NUL, &e);
	cr_assert_not_null(o, "%s", e.text);
	json_t *data = json_object_get(o, "data");
	cr_assert_eq(json_string_length(data), blen);
	cr_assert_arr_eq(json_string_value(data), body, blen);
	cr_assert_str_eq(json_string_value(json_object_get(o, "protocol")),
			 "choria:adapters:natsstream:output:1");
	cr_assert_str_eq(json_string_value(json_object_get(o, "time")), "1970-01-01T00:00:00Z");
	json_decref(o);
	free(out);
}

Test(envelope, refuses_invalid_utf8_and_unrepresentable_time)
{
	char *out;
	size_t len;
	struct cad_msg bad_utf8 = msg("n1", "r", 0, "\xff\xfe", 2);
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &bad_utf8),
		     -EINVAL);
	struct cad_msg far = msg("n1", "r", 400000000000LL, "{}", 2);
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &far),
		     -EINVAL);
}

/* What jansson writes for the same object, as the envelope was made
 * before: NULL when jansson refuses a value. */
static char *jansson_envelope(size_t *len, const char *protocol, const struct cad_msg *m)
{
	/* The time written here, not by envelope_time(), which is under test. */
	char when[80];
	struct tm tm;
	time_t t = (time_t)m->time;
	if (m->time < -62135596800LL || m->time > 253402300799LL || !gmtime_r(&t, &tm))
		return NULL;
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	json_t *o = json_object();
	char *buf = NULL;
	if (json_object_set_new(o, "protocol", json_string(protocol)) ||
	    json_object_set_new(o, "data", json_stringn(m->body, m->body_len)) ||
	    json_object_set_new(o, "sender", json_stringn(m->sender, m->sender_len)) ||
	    json_object_set_new(o, "time", json_string(when)) ||
	    json_object_set_new(o, "requestid", json_stringn(m->request_id, m->request_id_len)))
		goto out;
	size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT);
	buf = malloc(need);
	cr_assert_not_null(buf);
	*len = json_dumpb(o, buf, need, JSON_COMPACT);
out:
	json_decref(o);
	return buf;
}

static void same_as_jansson(const struct cad_msg *m)
{
	char *want, *got = NULL;
	size_t want_len = 0, got_len = 0;
	want = jansson_envelope(&want_len, ENVELOPE_PROTOCOL_JETSTREAM, m);
	int rc = envelope_encode(&got, &got_len, label(ENVELOPE_PROTOCOL_JETSTREAM), m);
	if (!want) {
		cr_assert_eq(rc, -EINVAL, "jansson refuses, the envelope accepts: %.*s",
			     (int)got_len, got);
		return;
	}
	cr_assert_eq(rc, 0, "jansson accepts, the envelope refuses: %s", want);
	cr_assert_eq(got_len, want_len, "got %.*s\nwant %.*s", (int)got_len, got, (int)want_len,
		     want);
	cr_assert_arr_eq(got, want, want_len, "got %.*s\nwant %.*s", (int)got_len, got,
			 (int)want_len, want);
	free(want);
	free(got);
}

static uint64_t rng = 0x853c49e6748fea9bull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* Text with every kind of byte jansson treats specially: ASCII, escapes,
 * control characters, valid multi-byte UTF-8, and now and then a broken
 * sequence. */
static size_t random_text(char *buf, size_t cap, bool allow_invalid)
{
	static const char *const parts[] = {
		"a",
		"Z",
		"0",
		" ",
		"/",
		"\"",
		"\\",
		"\b",
		"\f",
		"\n",
		"\r",
		"\t",
		"\x01",
		"\x1b",
		"\x1f",
		"\x7f",
		"<",
		">",
		"&",
		"\xc2\x80",
		"\xc3\xa9",
		"\xdf\xbf",
		"\xe0\xa0\x80",
		"\xe2\x80\xa8",
		"\xed\x9f\xbf",
		"\xee\x80\x80",
		"\xef\xbf\xbf",
		"\xf0\x90\x80\x80",
		"\xf4\x8f\xbf\xbf",
	};
	static const char *const broken[] = {
		"\x80",
		"\xbf",
		"\xc0\x80",
		"\xc1\xbf",
		"\xc3",
		"\xe0\x80\x80",
		"\xed\xa0\x80",
		"\xed\xbf\xbf",
		"\xf0\x80\x80\x80",
		"\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80",
		"\xff",
		"\xe2\x28\xa1",
		"\xc3\x28",
	};
	size_t n = 0, parts_n = rnd() % 40;
	for (size_t i = 0; i < parts_n; i++) {
		const char *p = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
		size_t pl = strlen(p);
		if (rnd() % 7 == 0) { /* a NUL byte */
			p = "";
			pl = 1;
		} else if (allow_invalid && rnd() % 60 == 0) {
			p = broken[rnd() % (sizeof(broken) / sizeof(broken[0]))];
			pl = strlen(p);
		}
		if (n + pl > cap)
			break;
		memcpy(buf + n, p, pl);
		n += pl;
	}
	return n;
}

Test(envelope, same_bytes_as_jansson)
{
	char body[512], sender[128], id[128];
	unsigned refused = 0;
	for (int i = 0; i < 20000; i++) {
		bool bad = i % 2;
		struct cad_msg m = {0};
		m.body_len = random_text(body, sizeof(body), bad);
		m.sender_len = random_text(sender, sizeof(sender), bad && rnd() % 4 == 0);
		m.request_id_len = random_text(id, sizeof(id), bad && rnd() % 4 == 0);
		m.body = body;
		m.sender = sender;
		m.request_id = id;
		m.time = ((int64_t)rnd() << 6) - 62135596800LL; /* year 1 to a little past 9999 */
		size_t l;
		char *j = jansson_envelope(&l, ENVELOPE_PROTOCOL_JETSTREAM, &m);
		refused += j == NULL;
		free(j);
		same_as_jansson(&m);
	}
	/* Both outcomes were exercised. */
	cr_assert_gt(refused, 500);
	cr_assert_lt(refused, 15000);
}

/* Plain text is looked over eight bytes at a time: a byte that needs an
 * escape or a check is seen at every place within and across those words,
 * in bodies of every length around them. */
Test(envelope, a_special_byte_anywhere_in_plain_text_is_seen)
{
	static const char *const special[] = {"\"",       "\\",   "\x1f", "\x01", "\x20", "\x7f",
					      "\xc3\xa9", "\xc3", "\x80", "\xff", ""};
	char body[64];
	for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++) {
		size_t sl = k == sizeof(special) / sizeof(special[0]) - 1 ? 1 : strlen(special[k]);
		for (size_t len = 0; len + sl <= 40; len++) {
			for (size_t at = 0; at <= len; at++) {
				memset(body, 'b', len);
				memmove(body + at + sl, body + at, len - at);
				memcpy(body + at, special[k], sl);
				struct cad_msg m = msg("n1", "r", 1520088557, body, len + sl);
				same_as_jansson(&m);
			}
		}
	}
}

/* Each thread keeps the last time it wrote: no value may pass for one a
 * thread has not written yet. */
Test(envelope, a_first_time_of_int64_min_is_refused)
{
	struct cad_msg m = msg("n1", "r", INT64_MIN, "{}", 2);
	char *out = NULL;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), -EINVAL,
		     "wrote %.*s", (int)len, out);
	m.time = 1520088557;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	cr_assert_not_null(strstr(out, "\"time\":\"2018-03-03T14:49:17Z\""), "%.*s", (int)len, out);
	free(out);
	m.time = INT64_MIN;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), -EINVAL);
}

Test(envelope, times_as_before)
{
	static const int64_t times[] =
		{-62135596800LL, -50000000000LL, -30000000000LL, -1, 0, 951782400,
		 1520088557,     4102444800LL,   253402300799LL};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		struct cad_msg m = msg("n1", "r", times[i], "{}", 2);
		same_as_jansson(&m);
	}
}

Test(envelope, times_are_rfc3339_in_utc_from_year_1_to_9999)
{
	static const struct {
		int64_t t;
		const char *want;
	} cases[] = {
		{-62135596800LL, "0001-01-01T00:00:00Z"},
		{-1, "1969-12-31T23:59:59Z"},
		{0, "1970-01-01T00:00:00Z"},
		{951782400, "2000-02-29T00:00:00Z"},
		{1520088557, "2018-03-03T14:49:17Z"},
		{4102444800LL, "2100-01-01T00:00:00Z"},
		{253402300799LL, "9999-12-31T23:59:59Z"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char when[32];
		cr_assert_eq(envelope_time(when, sizeof(when), cases[i].t), 0, "%" PRId64,
			     cases[i].t);
		cr_assert_str_eq(when, cases[i].want, "%" PRId64, cases[i].t);
	}
	char when[32];
	cr_assert_eq(envelope_time(when, sizeof(when), -62135596801LL), -EINVAL, "year 0");
	cr_assert_eq(envelope_time(when, sizeof(when), 253402300800LL), -EINVAL, "year 10000");
}

Test(envelope, fractions_of_a_second_as_go_writes_them)
{
	static const struct {
		int64_t t;
		uint32_t nsec;
		const char *want;
	} cases[] = {
		{1767225605, 0, "2026-01-01T00:00:05Z"},
		{1767225605, 123456789, "2026-01-01T00:00:05.123456789Z"},
		{1767225605, 120000000, "2026-01-01T00:00:05.12Z"},
		{1767225605, 1, "2026-01-01T00:00:05.000000001Z"},
		{1767225605, 999999999, "2026-01-01T00:00:05.999999999Z"},
		{253402300799LL, 500000000, "9999-12-31T23:59:59.5Z"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char when[32];
		cr_assert_eq(envelope_time_ns(when, sizeof(when), cases[i].t, cases[i].nsec), 0,
			     "%zu", i);
		cr_assert_str_eq(when, cases[i].want, "%zu", i);
	}
	char when[32];
	cr_assert_eq(envelope_time_ns(when, sizeof(when), 0, 1000000000u), -EINVAL);
	cr_assert_eq(envelope_time_ns(when, 21, 0, 5), -EINVAL, "no room for the fraction");

	/* Two messages in the same second, the second one finer: the time
	 * each thread remembers is not reused across fractions. */
	struct cad_msg m = msg("web1", "37dGbTEphp4tYMi1g0qMrZjnjNr", 1767225605, "{}", 2);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	const char *whole = "\"time\":\"2026-01-01T00:00:05Z\"";
	cr_assert(memmem(out, len, whole, strlen(whole)));
	free(out);
	m.time_nsec = 123456789;
	cr_assert_eq(envelope_encode(&out, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	const char *finer = "\"time\":\"2026-01-01T00:00:05.123456789Z\"";
	cr_assert(memmem(out, len, finer, strlen(finer)));
	free(out);
}

Test(envelope, write_reuses_a_buffer)
{
	struct cad_msg m =
		msg("web1", "5e8b2f0e1a4c4d8f9b7a6c5d4e3f2a1b", 1520088557, "{\"a\":\"\x01\"}", 10);
	size_t cap = envelope_max_len(label(ENVELOPE_PROTOCOL_JETSTREAM), &m), len = 0;
	char *buf = malloc(cap), *ref;
	size_t ref_len;
	cr_assert_not_null(buf);
	cr_assert_eq(envelope_write(buf, cap - 1, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m),
		     -ENOSPC);
	cr_assert_eq(envelope_write(buf, cap, &len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	cr_assert_lt(len, cap);
	cr_assert_eq(envelope_encode(&ref, &ref_len, label(ENVELOPE_PROTOCOL_JETSTREAM), &m), 0);
	cr_assert_eq(len, ref_len);
	cr_assert_arr_eq(buf, ref, len);
	free(ref);
	free(buf);
}

Test(subject, replaces_the_sender)
{
	char buf[128];
	int n = subject_build(buf, sizeof(buf), "choria.node_metadata.%s", "web1.ldn.example.net",
			      20);
	cr_assert_eq(n, (int)strlen("choria.node_metadata.web1.ldn.example.net"));
	cr_assert_str_eq(buf, "choria.node_metadata.web1.ldn.example.net");
	cr_assert_gt(subject_build(buf, sizeof(buf), "%s.metadata", "n1", 2), 0);
	cr_assert_str_eq(buf, "n1.metadata");
	cr_assert_gt(subject_build(buf, sizeof(buf), "fixed.subject", "any thing", 9), 0);
	cr_assert_str_eq(buf, "fixed.subject");
}

Test(subject, rejects_senders_that_would_be_wildcards_or_invalid)
{
	char buf[128];
	const char *bad[] = {"", "*", ">", "a.*", "a.>", "a b", "a..b", ".a", "a.", "a\tb", "a\nb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_eq(subject_build(buf, sizeof(buf), "choria.%s", bad[i], strlen(bad[i])),
			     -EINVAL, "sender '%s' must be refused", bad[i]);
	cr_assert_eq(subject_build(buf, sizeof(buf), "choria.%s", "a\0b", 3), -EINVAL);
	cr_assert_eq(subject_build(buf, 8, "choria.%s", "longname", 8), -ENOSPC);
}

Test(subject, checks_topics)
{
	const char *why;
	cr_assert(subject_topic_valid("choria.node_metadata.%s", &why));
	cr_assert(subject_topic_valid("%s", &why));
	cr_assert(subject_topic_valid("node_data", &why));
	const char *bad[] = {"choria.%d", "a.%s.%s", "a.x%s", "a.*", "a.>.%s", "a..b", "", "a b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_not(subject_topic_valid(bad[i], &why), "topic '%s' must be refused",
			      bad[i]);
}

Test(envelope, carries_the_label_it_was_given)
{
	struct envelope_label l;
	cr_assert_eq(envelope_label_init(&l, ENVELOPE_PROTOCOL_CHORIA_STREAMS), 0);
	struct cad_msg m = msg("n1", "r1", 0, "{}", 2);
	char *out;
	size_t len;
	cr_assert_eq(envelope_encode(&out, &len, &l, &m), 0);
	const char *want = "{\"protocol\":\"choria:adapters:choria_streams:output:1\","
			   "\"data\":\"{}\",\"sender\":\"n1\",\"time\":\"1970-01-01T00:00:00Z\","
			   "\"requestid\":\"r1\"}";
	cr_assert_eq(len, strlen(want));
	cr_assert_arr_eq(out, want, len);
	free(out);

	/* A label that needs escaping is escaped as jansson escapes it. */
	cr_assert_eq(envelope_label_init(&l, "a\"b\\c\x01"), 0);
	char *want_j = jansson_envelope(&len, "a\"b\\c\x01", &m);
	size_t got_len;
	cr_assert_eq(envelope_encode(&out, &got_len, &l, &m), 0);
	cr_assert_eq(got_len, len);
	cr_assert_arr_eq(out, want_j, len);
	free(out);
	free(want_j);
}

Test(envelope, refuses_labels_it_cannot_write)
{
	struct envelope_label l;
	char longest[ENVELOPE_LABEL_MAX + 2];
	cr_assert_eq(envelope_label_init(&l, ""), -EINVAL);
	cr_assert_eq(envelope_label_init(&l, "\xff"), -EINVAL);
	memset(longest, '\x01', ENVELOPE_LABEL_MAX);
	longest[ENVELOPE_LABEL_MAX] = '\0';
	cr_assert_eq(envelope_label_init(&l, longest), 0, "the longest, all escaped");
	longest[ENVELOPE_LABEL_MAX] = 'x';
	longest[ENVELOPE_LABEL_MAX + 1] = '\0';
	cr_assert_eq(envelope_label_init(&l, longest), -EINVAL);
}
