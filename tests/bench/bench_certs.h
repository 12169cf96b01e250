/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's small PKI: a CA, one RSA-2048 key shared by the node
 * certificates (generating a key per node would take minutes; the cost of
 * verifying is the same), and one certificate per sender.
 */
#ifndef CAD_BENCH_CERTS_H
#define CAD_BENCH_CERTS_H

#include <openssl/evp.h>
#include <stddef.h>

struct bench_pki {
	EVP_PKEY *node_key;
	char **node_pem; /* certificate of sender i, PEM */
	size_t n_nodes;
	char ca_path[600]; /* the CA certificate, written for the daemon */
};

/* Names: sender i is "node-<i>.example.net", its callerid "choria=<same>". */
int bench_pki_make(struct bench_pki *p, size_t n_nodes, const char *dir);
void bench_pki_free(struct bench_pki *p);

/* base64 RSA PKCS#1 v1.5 SHA-256 signature of data, malloc'd. */
char *bench_sign(EVP_PKEY *key, const char *data, size_t len);

#endif
