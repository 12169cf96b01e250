/* SPDX-License-Identifier: Apache-2.0 */
/* JetStream's answer to a publish (see puback.h). */
#include "puback.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void puback_refused(struct puback *out, json_t *error)
{
	out->kind = PUBACK_REFUSED;
	json_t *code = json_object_get(error, "err_code");
	if (!json_is_integer(code))
		code = json_object_get(error, "code");
	out->err_code = json_is_integer(code) ? (long)json_integer_value(code) : 0;
	const char *text = json_string_value(json_object_get(error, "description"));
	snprintf(out->text, sizeof(out->text), "%s",
		 text ? text : "an error without a description");
}

void puback_parse(struct puback *out, const char *data, size_t len)
{
	memset(out, 0, sizeof(*out));
	json_error_t jerr;
	json_t *root = data && len ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!root) {
		out->kind = PUBACK_UNREADABLE;
		snprintf(out->text, sizeof(out->text), "an unreadable acknowledgement (%.100s)",
			 len ? jerr.text : "empty");
		return;
	}
	json_t *error = json_object_get(root, "error");
	json_t *stream = json_object_get(root, "stream");
	json_t *seq = json_object_get(root, "seq");
	if (json_is_object(error)) {
		puback_refused(out, error);
	} else if (json_is_string(stream) && json_is_integer(seq) && json_integer_value(seq) > 0) {
		out->kind = PUBACK_STORED;
		snprintf(out->stream, sizeof(out->stream), "%s", json_string_value(stream));
		out->seq = (uint64_t)json_integer_value(seq);
		out->duplicate = json_is_true(json_object_get(root, "duplicate"));
	} else {
		out->kind = PUBACK_UNREADABLE;
		snprintf(out->text, sizeof(out->text),
			 "an acknowledgement with neither an error nor a stream and sequence");
	}
	json_decref(root);
}
