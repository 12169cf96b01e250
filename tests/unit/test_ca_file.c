/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a CA file (modules/common/ca_file.c), as the choria verifier and
 * the NATS connections both do. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "ca_file.h"
#include "certs.h"
#include "tmpdir.h"

static char dir[512];

static void ca_setup(void)
{
	cr_assert_eq(tmpdir_make(dir, sizeof(dir)), 0);
}

static void ca_teardown(void)
{
	tmpdir_remove(dir);
}

TestSuite(ca_file, .init = ca_setup, .fini = ca_teardown);

static const char *write_file(const char *name, const char *text)
{
	static char path[700];
	cr_assert_eq(tmpdir_write(dir, name, text, path, sizeof(path)), 0);
	return path;
}

struct seen {
	char names[4][128];
	int n;
	int refuse_at; /* 1-based; 0: take every one */
};

static int remember(void *arg, X509 *cert)
{
	struct seen *s = arg;
	s->n++;
	if (s->n == s->refuse_at)
		return -EINVAL;
	if (s->n <= 4)
		X509_NAME_oneline(X509_get_subject_name(cert), s->names[s->n - 1], 128);
	return 0;
}

Test(ca_file, every_certificate_is_handed_over_in_order)
{
	char *text = NULL, why[512] = "";
	cr_assert(asprintf(&text, "%s%s", test_pki()->ca, test_pki()->ca2) > 0);
	const char *path = write_file("two.pem", text);
	free(text);
	struct seen s = {0};
	cr_assert_eq(ca_file_read(path, remember, &s, why, sizeof(why)), 2, "%s", why);
	cr_assert_eq(s.n, 2);
	cr_assert_str_neq(s.names[0], s.names[1]);
	cr_assert_eq(ca_file_read(path, NULL, NULL, why, sizeof(why)), 2, "NULL only checks");
}

Test(ca_file, a_file_that_cannot_be_read)
{
	char why[512] = "";
	cr_assert_eq(ca_file_read("/nonexistent/ca.pem", NULL, NULL, why, sizeof(why)), -ENOENT);
	cr_assert_str_eq(why, "cannot read /nonexistent/ca.pem: No such file or directory");
	cr_assert_lt(ca_file_read(dir, NULL, NULL, why, sizeof(why)), 0, "a folder: %s", why);
}

Test(ca_file, a_file_without_certificates)
{
	char why[512] = "";
	const char *path = write_file("text.pem", "just text\n");
	cr_assert_eq(ca_file_read(path, NULL, NULL, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "text.pem holds no PEM certificate"), "%s", why);
	path = write_file("empty.pem", "");
	cr_assert_eq(ca_file_read(path, NULL, NULL, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "holds no PEM certificate"), "%s", why);
	/* A private key is PEM, but no certificate. */
	cr_assert_eq(ca_file_read(test_pki_path("leaf.key"), NULL, NULL, why, sizeof(why)),
		     -EINVAL);
	cr_assert(strstr(why, "holds no PEM certificate"), "%s", why);
}

Test(ca_file, a_broken_certificate_after_a_good_one)
{
	char *text = NULL, why[512] = "";
	cr_assert(asprintf(&text,
			   "%s-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
			   test_pki()->ca) > 0);
	const char *path = write_file("broken.pem", text);
	free(text);
	struct seen s = {0};
	cr_assert_eq(ca_file_read(path, remember, &s, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "broken.pem: certificate 2 cannot be read: "), "%s", why);
	cr_assert_eq(s.n, 1, "the good one came first");
}

Test(ca_file, a_certificate_the_store_refuses)
{
	char *text = NULL, why[512] = "";
	cr_assert(asprintf(&text, "%s%s", test_pki()->ca, test_pki()->ca2) > 0);
	const char *path = write_file("two.pem", text);
	free(text);
	struct seen s = {.refuse_at = 2};
	cr_assert_eq(ca_file_read(path, remember, &s, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "two.pem: cannot add certificate 2 to the trust store"), "%s", why);
	cr_assert_eq(s.n, 2, "nothing read after the refusal");
}

int main(int argc, char **argv)
{
	return test_pki_main(argc, argv);
}
