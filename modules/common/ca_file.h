/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a file of trusted CA certificates (PEM), the same way for the
 * certificates that sign Choria requests and for the TLS connections to
 * NATS: a file that cannot be read, holds no certificate, or holds a block
 * that is not one, is refused with a message naming the file and the
 * certificate.
 */
#ifndef CAD_CA_FILE_H
#define CAD_CA_FILE_H

#include <stddef.h>

#include <openssl/x509.h>

/* Takes one certificate into a trust store (borrowing it: X509_STORE_add_cert
 * takes its own reference); 0, or a negative errno with OpenSSL's reason
 * on its error queue. */
typedef int (*ca_file_add_fn)(void *arg, X509 *cert);

/*
 * Read every certificate of the PEM file at path, in order, handing each
 * to add (NULL: only check them). Returns how many (at least 1), or a
 * negative errno with a one-line message in why: the errno of a file that
 * cannot be opened, -ENOMEM, or -EINVAL when the file holds no PEM
 * certificate, a block after the last certificate cannot be read, or add
 * refused one (the trust store would not take it). Leaves OpenSSL's error queue empty.
 */
int ca_file_read(const char *path, ca_file_add_fn add, void *arg, char *why, size_t why_len);

#endif
