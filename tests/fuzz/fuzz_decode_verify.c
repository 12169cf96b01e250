/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_decode_verify - libFuzzer target over what the choria ingest does
 * with every message under `security = verify`: decode (protocol.c,
 * protocol_v2.c), then check the reply hash, a v1 request's certificate,
 * caller and signature (verify.c, certcache.c), or a v2 request's tokens,
 * caller and signature (verify_v2.c, token.c, jwt.c, tokencache.c),
 * against a fixed CA and a fixed v2 issuer at a fixed time.
 *
 * Input: one flag byte, then the message.
 *   bit 0  0: a request, 1: a reply
 *   bit 1  0: the bytes are the transport JSON, as on the wire
 *          1: the bytes are the secure layer's JSON; the target wraps
 *             them in a transport, so mutations reach the inner layers
 *             without having to keep the base64 intact
 *   bit 2  with bit 1: the transport is a v2 one (else v1)
 * Each request is verified twice: a cache miss (with a scratch), then a
 * hit (without), which must agree. Any crash, sanitizer report or broken promise (a failure without
 * a reason, a detail that is not printable ASCII) is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fixed_pki.h"
#include "protocol.h"
#include "verify.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct choria_verifier *fuzz_verifier;
static struct choria_verify_scratch *fuzz_scratch;
static int fuzz_verbose; /* CAD_FUZZ_VERBOSE: say what each input came to */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const privileged[] = {CHORIA_PRIVILEGED_DEFAULTS};
	static const char *const issuers[] = {FUZZ_V2_ISSUER};
	const char *tmp = getenv("TMPDIR");
	char path[512];
	int fd;
	FILE *f;

	(void)argc;
	(void)argv;
	fuzz_verbose = getenv("CAD_FUZZ_VERBOSE") != NULL;
	snprintf(path, sizeof(path), "%s/fuzz-ca-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		perror("fuzz_decode_verify: CA file");
		abort();
	}
	fputs(FUZZ_CA_PEM, f);
	fclose(f);
	struct choria_verify_opts o = {.ca_file = path,
				       .privileged = privileged,
				       .n_privileged = 2,
				       .cache_size = 64,
				       .issuers = issuers,
				       .n_issuers = 1,
				       .token_cache_size = 64};
	if (choria_verifier_new(&fuzz_verifier, &o, NULL, NULL, NULL) != 0 ||
	    choria_verify_scratch_new(&fuzz_scratch) != 0) {
		fprintf(stderr, "fuzz_decode_verify: cannot load the fixed CA\n");
		abort();
	}
	unlink(path);
	return 0;
}

/* {"protocol":"<v1 or v2 transport>","data":"<base64>","headers":{}} */
static char *fuzz_wrap(const uint8_t *data, size_t size, int v2, size_t *len)
{
	const char *head = v2 ? "{\"protocol\":\"io.choria.protocol.v2.transport\",\"data\":\""
			      : "{\"protocol\":\"choria:transport:1\",\"data\":\"";
	static const char tail[] = "\",\"headers\":{}}";
	size_t head_len = strlen(head);
	size_t b64 = 4 * ((size + 2) / 3);
	char *out = malloc(head_len + b64 + sizeof(tail));
	int n;

	if (!out)
		return NULL;
	memcpy(out, head, head_len);
	n = EVP_EncodeBlock((unsigned char *)out + head_len, data, (int)size);
	memcpy(out + head_len + n, tail, sizeof(tail));
	*len = head_len + (size_t)n + sizeof(tail) - 1;
	return out;
}

static void fuzz_check_detail(int rc, const char *reason, const char *detail)
{
	if (rc == 0)
		return;
	if (!reason || !*reason)
		abort(); /* every rejection has a label */
	for (const char *p = detail; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			abort(); /* details go to logs as they are */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum choria_kind kind;
	struct choria_decoded d;
	const char *wire, *reason = NULL, *again = NULL;
	char detail[320], detail2[320], *wrapped = NULL;
	size_t len;
	int rc;

	if (size < 1 || size > 65536)
		return 0;
	kind = data[0] & 1 ? CHORIA_REPLY : CHORIA_REQUEST;
	if (data[0] & 2) {
		wrapped = fuzz_wrap(data + 1, size - 1, data[0] & 4, &len);
		if (!wrapped)
			return 0;
		wire = wrapped;
	} else {
		wire = (const char *)data + 1;
		len = size - 1;
	}

	rc = choria_decode(&d, kind, wire, len, &reason, detail, sizeof(detail));
	fuzz_check_detail(rc, reason, detail);
	if (rc == 0 && kind == CHORIA_REPLY) {
		rc = choria_verify_reply(&d, &reason, detail, sizeof(detail));
		fuzz_check_detail(rc, reason, detail);
	} else if (rc == 0) {
		rc = choria_verify_request(fuzz_verifier, fuzz_scratch, &d, FUZZ_NOW, &reason,
					   detail, sizeof(detail));
		fuzz_check_detail(rc, reason, detail);
		int rc2 = choria_verify_request(fuzz_verifier, NULL, &d, FUZZ_NOW, &again, detail2,
						sizeof(detail2));
		if (rc2 != rc || (rc && strcmp(reason, again) != 0))
			abort(); /* the cached verdict must be the same */
	}
	if (fuzz_verbose)
		fprintf(stderr, "%s%s: %s %s\n", choria_kind_name(kind),
			!(data[0] & 2) ? ""
			: data[0] & 4  ? " (wrapped, v2)"
				       : " (wrapped)",
			rc ? reason : "accepted", rc ? detail : "");
	choria_decoded_clear(&d);
	free(wrapped);
	return 0;
}
