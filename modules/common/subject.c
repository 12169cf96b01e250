/* SPDX-License-Identifier: Apache-2.0 */
#include "subject.h"

#include <errno.h>
#include <string.h>

static bool subject_token_char_ok(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '*' && c != '>';
}

/* Dot-separated, non-empty tokens of allowed characters. */
static bool subject_tokens_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!subject_token_char_ok((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

bool subject_sender_valid(const char *sender, size_t len)
{
	return memchr(sender, '\0', len) == NULL && subject_tokens_valid(sender, len);
}

bool subject_topic_valid(const char *topic, const char **why)
{
	const char *pct = strchr(topic, '%');
	if (pct) {
		if (pct[1] != 's') {
			*why = "only %s may follow a '%'";
			return false;
		}
		if (strchr(pct + 2, '%')) {
			*why = "%s may appear only once";
			return false;
		}
		if ((pct != topic && pct[-1] != '.') || (pct[2] != '\0' && pct[2] != '.')) {
			*why = "%s must be a whole subject token, as in choria.node_metadata.%s";
			return false;
		}
	}
	/* Check the literal parts with a stand-in sender. */
	char probe[1024];
	if (subject_build(probe, sizeof(probe), topic, "x", 1) < 0) {
		*why = "not a valid NATS subject (empty tokens, white space, or the wildcards * and >)";
		return false;
	}
	return true;
}

int subject_build(char *buf, size_t len, const char *topic, const char *sender, size_t sender_len)
{
	const char *pct = strstr(topic, "%s");
	size_t n;
	if (!pct) {
		n = strlen(topic);
		if (n + 1 > len)
			return -ENOSPC;
		memcpy(buf, topic, n + 1);
	} else {
		if (!subject_sender_valid(sender, sender_len))
			return -EINVAL;
		size_t head = (size_t)(pct - topic), tail = strlen(pct + 2);
		n = head + sender_len + tail;
		if (n + 1 > len)
			return -ENOSPC;
		memcpy(buf, topic, head);
		memcpy(buf + head, sender, sender_len);
		memcpy(buf + head + sender_len, pct + 2, tail + 1);
	}
	return subject_tokens_valid(buf, n) ? (int)n : -EINVAL;
}
