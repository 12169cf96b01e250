/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_verify - CPU time of choria_verify_request() per message on cache
 * hits and misses, next to one RSA-2048 PKCS#1 v1.5 SHA-256 verification
 * of the same message done directly with OpenSSL (bare, and as a full
 * EVP_DigestVerify), with OpenSSL's allocations per message and the memory
 * of the cache. A benchmark, not a test: it prints numbers and exits 0
 * unless something fails to work.
 *
 *   tests/bench/bench-verify [iterations] [signers]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "certs.h"
#include "choria_msg.h"
#include "protocol.h"
#include "tmpdir.h"
#include "verify.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* OpenSSL's allocations, counted through its memory hooks. */
static unsigned long ssl_allocs;

static void *count_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	ssl_allocs++;
	return malloc(n);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	ssl_allocs++;
	return realloc(p, n);
}

static void count_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

/* Resident memory in KiB, from /proc. */
static long rss_kib(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * 4;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-verify: %s\n", what);
	exit(1);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	int signers = argc > 2 ? atoi(argv[2]) : 100;
	char dir[512], ca_path[700];
	const char *const privileged[] = {CHORIA_PRIVILEGED_DEFAULTS};

	if (iterations < 1 || signers < 1)
		die("usage: bench-verify [iterations] [signers]");
	if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
		die("cannot count OpenSSL's allocations");
	if (tmpdir_make(dir, sizeof(dir)))
		die("no temporary folder");
	EVP_PKEY *ca_key = test_key_new(2048), *key = test_key_new(2048);
	struct test_cert_spec cas = {.cn = "Bench CA", .from = -3600, .to = 86400, .ca = true};
	X509 *ca = test_cert_make(&cas, ca_key, NULL, NULL);
	char *ca_pem = ca ? test_cert_pem(ca) : NULL;
	if (!ca_pem || tmpdir_write(dir, "ca.pem", ca_pem, ca_path, sizeof(ca_path)))
		die("cannot make the CA");

	/* One message per signer, each with its own certificate (one key). */
	struct choria_decoded *msgs = calloc((size_t)signers, sizeof(*msgs));
	char **wires = calloc((size_t)signers, sizeof(*wires));
	size_t body = 0;
	for (int i = 0; i < signers; i++) {
		char cn[64], caller[80];
		snprintf(cn, sizeof(cn), "node-%d.example.net", i);
		snprintf(caller, sizeof(caller), "choria=%s", cn);
		struct test_cert_spec s = {.cn = cn,
					   .from = -3600,
					   .to = 86400,
					   .eku = "clientAuth,serverAuth"};
		X509 *x = test_cert_make(&s, key, ca, ca_key);
		char *pem = x ? test_cert_pem(x) : NULL;
		struct test_signer signer = {.key = key, .pem = pem};
		struct choria_msg_spec m = choria_msg_defaults(CHORIA_MSG_REQUEST);
		m.sender = cn;
		m.callerid = caller;
		m.sign = test_sign;
		m.sign_arg = &signer;
		size_t len;
		wires[i] = choria_msg_build(&m, &len);
		if (!wires[i] ||
		    choria_decode(&msgs[i], CHORIA_REQUEST, wires[i], len, NULL, NULL, 0))
			die("cannot build a message");
		body = msgs[i].secure_message_len;
		free(pem);
		X509_free(x);
	}

	struct choria_verify_opts o = {.ca_file = ca_path,
				       .privileged = privileged,
				       .n_privileged = 2,
				       .cache_size = (size_t)signers};
	struct choria_verifier *v = NULL;
	struct choria_verify_scratch *scratch = NULL;
	if (choria_verifier_new(&v, &o, NULL, NULL, NULL) || choria_verify_scratch_new(&scratch))
		die("cannot make the verifier");
	int64_t now = (int64_t)time(NULL);
	long rss_before = rss_kib();
	for (int i = 0; i < signers; i++) /* warm the cache */
		if (choria_verify_request(v, scratch, &msgs[i], now, NULL, NULL, 0))
			die("a message does not verify");
	long cache_kib = rss_kib() - rss_before;

	/* What the message's signature is compared with. */
	unsigned char sig[512];
	const struct choria_decoded *d = &msgs[0];
	int sig_len =
		EVP_DecodeBlock(sig, (const unsigned char *)d->signature, (int)d->signature_len);
	sig_len -= (d->signature[d->signature_len - 1] == '=') +
		   (d->signature[d->signature_len - 2] == '=');
	EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	unsigned char digest[32];
	unsigned int digest_len = 0;
	EVP_Digest(d->secure_message, d->secure_message_len, digest, &digest_len, sha256, NULL);
	EVP_PKEY_CTX *bare = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	if (!bare || EVP_PKEY_verify_init(bare) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(bare, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(bare, sha256) <= 0)
		die("cannot set up OpenSSL");

	/*
	 * Three loops, in interleaved rounds, the best round of each kept (the
	 * machine is shared): the verify path on cache hits; a full
	 * EVP_DigestVerify of the message with a fresh context; and the bare
	 * RSA-2048 public key operation on a precomputed digest with one
	 * context set up once, as `openssl speed rsa2048` measures it.
	 */
	enum {
		ROUNDS = 5
	};
	long per_round = iterations / ROUNDS > 0 ? iterations / ROUNDS : 1;
	double verify_us = 1e9, full_us = 1e9, bare_us = 1e9;
	unsigned long verify_allocs = 0, full_allocs = 0, bare_allocs = 0;
	for (int r = 0; r < ROUNDS; r++) {
		unsigned long a0 = ssl_allocs;
		double t0 = cpu_now(), us;
		for (long n = 0; n < per_round; n++)
			if (choria_verify_request(v, scratch, &msgs[n % signers], now, NULL, NULL,
						  0))
				die("a message does not verify");
		us = (cpu_now() - t0) / (double)per_round * 1e6;
		verify_us = us < verify_us ? us : verify_us;
		verify_allocs += ssl_allocs - a0;

		a0 = ssl_allocs;
		t0 = cpu_now();
		for (long n = 0; n < per_round; n++) {
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			EVP_PKEY_CTX *pctx = NULL;
			int ok = EVP_DigestVerifyInit(md, &pctx, sha256, NULL, key) == 1 &&
				 EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0 &&
				 EVP_DigestVerify(md, sig, (size_t)sig_len,
						  (const unsigned char *)d->secure_message,
						  d->secure_message_len) == 1;
			EVP_MD_CTX_free(md);
			if (!ok)
				die("OpenSSL does not verify the signature");
		}
		us = (cpu_now() - t0) / (double)per_round * 1e6;
		full_us = us < full_us ? us : full_us;
		full_allocs += ssl_allocs - a0;

		a0 = ssl_allocs;
		t0 = cpu_now();
		for (long n = 0; n < per_round; n++)
			if (EVP_PKEY_verify(bare, sig, (size_t)sig_len, digest, digest_len) != 1)
				die("OpenSSL does not verify the signature");
		us = (cpu_now() - t0) / (double)per_round * 1e6;
		bare_us = us < bare_us ? us : bare_us;
		bare_allocs += ssl_allocs - a0;
	}
	double runs = (double)per_round * ROUNDS;
	EVP_PKEY_CTX_free(bare);
	EVP_MD_free(sha256);

	/* Cache misses: every message pays the chain check. */
	struct choria_verifier *cold = NULL;
	o.cache_size = 1;
	if (choria_verifier_new(&cold, &o, NULL, NULL, NULL))
		die("cannot make the verifier");
	long miss_iters = iterations / 10 > 0 ? iterations / 10 : 1;
	int miss_signers = signers > 1 ? signers : 2;
	double t0 = cpu_now();
	for (long n = 0; n < miss_iters; n++)
		choria_verify_request(cold, scratch, &msgs[n % miss_signers % signers], now, NULL,
				      NULL, 0);
	double miss_us = (cpu_now() - t0) / (double)miss_iters * 1e6;

	printf("signed message: %zu bytes, pubcert %zu bytes, %d signers, %ld iterations\n", body,
	       msgs[0].pubcert_len, signers, iterations);
	printf("bare RSA-2048 verify (as openssl speed):  %8.2f us/msg, %.1f OpenSSL allocations\n",
	       bare_us, (double)bare_allocs / runs);
	printf("EVP_DigestVerify of the message:         %8.2f us/msg, %.1f OpenSSL allocations\n",
	       full_us, (double)full_allocs / runs);
	printf("choria_verify_request, cache hit:        %8.2f us/msg, %.1f OpenSSL allocations: "
	       "%.2fx the bare verify, %.2fx DigestVerify\n",
	       verify_us, (double)verify_allocs / runs, verify_us / bare_us, verify_us / full_us);
	printf("choria_verify_request, cache miss:       %8.2f us/msg (%.1fx the bare verify)%s\n",
	       miss_us, miss_us / bare_us, signers > 1 ? "" : " (one signer: hits)");
	printf("memory of %d cached verdicts: about %ld KiB (%.1f KiB each)\n", signers, cache_kib,
	       (double)cache_kib / signers);

	choria_verifier_free(v);
	choria_verifier_free(cold);
	choria_verify_scratch_free(scratch);
	for (int i = 0; i < signers; i++) {
		choria_decoded_clear(&msgs[i]);
		free(wires[i]);
	}
	free(msgs);
	free(wires);
	free(ca_pem);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	tmpdir_remove(dir);
	return 0;
}
