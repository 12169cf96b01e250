/* SPDX-License-Identifier: Apache-2.0 */
#include "bench_certs.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *rsa_key(void)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
	EVP_PKEY *k = NULL;
	if (c && EVP_PKEY_keygen_init(c) > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) > 0)
		EVP_PKEY_keygen(c, &k);
	EVP_PKEY_CTX_free(c);
	return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (e) {
		X509_add_ext(cert, e, -1);
		X509_EXTENSION_free(e);
	}
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
		       long serial, int is_ca)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 7L * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	if (is_ca) {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		char san[300];
		snprintf(san, sizeof(san), "DNS:%s", cn);
		add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, issuer, NID_ext_key_usage, "clientAuth,serverAuth");
		add_ext(x, issuer, NID_subject_alt_name, san);
	}
	X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
	return x;
}

static char *pem_of(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *out = malloc((size_t)n + 1);
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	BIO_free(b);
	return out;
}

int bench_pki_make(struct bench_pki *p, size_t n, const char *dir)
{
	memset(p, 0, sizeof(*p));
	EVP_PKEY *ca_key = rsa_key();
	p->node_key = rsa_key();
	if (!ca_key || !p->node_key)
		return -1;
	X509 *ca = make_cert("Choria Bench CA", ca_key, NULL, NULL, 1, 1);
	snprintf(p->ca_path, sizeof(p->ca_path), "%s/ca.pem", dir);
	FILE *f = fopen(p->ca_path, "w");
	if (!f)
		return -1;
	PEM_write_X509(f, ca);
	fclose(f);
	p->node_pem = calloc(n, sizeof(char *));
	p->n_nodes = n;
	for (size_t i = 0; i < n; i++) {
		char cn[64];
		snprintf(cn, sizeof(cn), "node-%zu.example.net", i);
		X509 *x = make_cert(cn, p->node_key, ca, ca_key, (long)i + 2, 0);
		p->node_pem[i] = pem_of(x);
		X509_free(x);
	}
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return 0;
}

void bench_pki_free(struct bench_pki *p)
{
	for (size_t i = 0; i < p->n_nodes; i++)
		free(p->node_pem[i]);
	free(p->node_pem);
	EVP_PKEY_free(p->node_key);
}

char *bench_sign(EVP_PKEY *key, const char *data, size_t len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t siglen = sizeof(sig);
	int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) > 0 &&
		 EVP_DigestSign(md, sig, &siglen, (const unsigned char *)data, len) > 0;
	EVP_MD_CTX_free(md);
	if (!ok)
		return NULL;
	char *out = malloc(4 * ((siglen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, sig, (int)siglen);
	return out;
}
