/* SPDX-License-Identifier: Apache-2.0 */
#include "ca_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/* The last OpenSSL error as text. */
static const char *ca_file_ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	if (!e)
		return "no detail from OpenSSL";
	ERR_error_string_n(e, buf, len);
	return buf;
}

int ca_file_read(const char *path, ca_file_add_fn add, void *arg, char *why, size_t why_len)
{
	char ssl[256];
	unsigned n = 0;
	int rc = 0;
	X509 *x;

	FILE *f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		snprintf(why, why_len, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	BIO *bio = BIO_new_fp(f, BIO_CLOSE);
	if (!bio) {
		fclose(f);
		snprintf(why, why_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	while (rc == 0 && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		rc = add ? add(arg, x) : 0;
		X509_free(x);
		if (rc)
			snprintf(why, why_len,
				 "%s: cannot add certificate %u to the trust store: %s", path,
				 n + 1, ca_file_ssl_error(ssl, sizeof(ssl)));
		else
			n++;
	}
	/* The loop ends at the end of the file (no start line) or at a block
	 * that is not a certificate. */
	if (rc == 0 && n == 0) {
		snprintf(why, why_len, "%s holds no PEM certificate", path);
		rc = -EINVAL;
	} else if (rc == 0 && ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		snprintf(why, why_len, "%s: certificate %u cannot be read: %s", path, n + 1,
			 ca_file_ssl_error(ssl, sizeof(ssl)));
		rc = -EINVAL;
	}
	BIO_free(bio);
	ERR_clear_error();
	return rc ? rc : (int)n;
}
