/* SPDX-License-Identifier: Apache-2.0 */
#include "envelope.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <time.h>

int envelope_time(char *buf, size_t len, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	/* Years past 9999 do not fit RFC 3339. */
	if (t < -62135596800LL || t > 253402300799LL || !gmtime_r(&tt, &tm))
		return -EINVAL;
	return strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) ? 0 : -EINVAL;
}

int envelope_encode(char **out, size_t *len, const char *protocol, const struct cad_msg *m)
{
	char when[32];
	if (envelope_time(when, sizeof(when), m->time) != 0)
		return -EINVAL;
	/* Insertion order is kept by jansson, so the keys come out as listed. */
	json_t *o = json_object();
	if (!o)
		return -ENOMEM;
	int rc = -EINVAL;
	if (json_object_set_new(o, "protocol", json_string(protocol)) ||
	    json_object_set_new(o, "data", json_stringn(m->body, m->body_len)) ||
	    json_object_set_new(o, "sender", json_stringn(m->sender, m->sender_len)) ||
	    json_object_set_new(o, "time", json_string(when)) ||
	    json_object_set_new(o, "requestid", json_stringn(m->request_id, m->request_id_len)))
		goto out;
	size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT);
	if (need == 0)
		goto out;
	char *buf = malloc(need);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	*len = json_dumpb(o, buf, need, JSON_COMPACT);
	*out = buf;
	rc = 0;
out:
	json_decref(o);
	return rc;
}
