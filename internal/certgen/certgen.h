/*
 * certgen.h: the C shim of internal/certgen over OpenSSL 3 (libcrypto only).
 *
 * Every symbol carries the cg_ prefix. The Go side keeps keys and certificates as DER bytes;
 * each call below turns its inputs into OpenSSL objects, does one whole step, and frees every
 * object it made before it returns. Nothing is kept between calls, C never keeps a pointer to
 * Go memory past the call it was passed to, and C never calls Go.
 *
 * Everything runs in the default library context with the default property query, so a FIPS
 * provider that OPENSSL_CONF configures (with default_properties = fips=yes) does the work.
 *
 * A call returns 1 on success. On failure it returns 0 and fills its cg_err with the step
 * that failed and OpenSSL's error queue, captured inside the call (on the failing thread).
 */
#ifndef TLSZMQ_CERTGEN_H
#define TLSZMQ_CERTGEN_H

#include <openssl/opensslv.h>
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "internal/certgen needs OpenSSL 3.0 or newer"
#endif

#include <stddef.h>

/* What went wrong: "step: library: reason (detail); library: reason". */
typedef struct cg_err {
	int input;                /* cg_read_pem: 1 if the certificate was at fault, 2 the key */
	char text[2048];
} cg_err;

/* Bytes that a call allocated with OPENSSL_malloc; release with cg_buf_free. */
typedef struct cg_buf {
	unsigned char *data;
	size_t len;
} cg_buf;

/* Clears (the bytes may be a private key) and frees b->data; b may be empty. */
void cg_buf_free(cg_buf *b);

/* Generates an EC key on curve (an OpenSSL group name, e.g. "P-256"), or, when curve is
 * NULL, an RSA key of rsa_bits. key receives it as unencrypted PKCS#8 DER. */
int cg_keygen(const char *curve, int rsa_bits, cg_buf *key, cg_err *e);

/* Writes into name (size bytes) the name of the provider that generates keys of algorithm
 * alg ("RSA", "EC") in the default library context: "default", or "fips" under a FIPS
 * configuration. */
int cg_keygen_provider(const char *alg, char *name, size_t size, cg_err *e);

/* Makes and signs (SHA-256) an X.509 v3 certificate for the key key (PKCS#8 or traditional
 * DER), with a random 128-bit serial, subject O=org, CN=cn, valid from not_before to not_after
 * seconds from now. issuer_cert and issuer_key (DER) sign it; both NULL make it self-signed.
 * ext holds n_ext extensions as name, value pairs in OpenSSL's configuration syntax
 * ("basicConstraints", "critical,CA:FALSE"), added in that order: subjectKeyIdentifier
 * before authorityKeyIdentifier, which a self-signed certificate takes from it. cert
 * receives the certificate as DER. */
int cg_issue(const unsigned char *key, size_t key_len,
             const unsigned char *issuer_cert, size_t issuer_cert_len,
             const unsigned char *issuer_key, size_t issuer_key_len,
             const char *org, const char *cn, long not_before, long not_after,
             const char *const *ext, int n_ext, cg_buf *cert, cg_err *e);

/* Makes and signs (SHA-256) a version 2 CRL of the CA issuer_cert with its key issuer_key
 * (DER), listing the n certificates whose DER encodings follow each other in revoked, their
 * lengths in revoked_len, each revoked at last_update: the serial numbers are theirs. The CRL
 * is issued last_update and next updated next_update seconds from now, carries the number
 * crl_number and the authority key identifier of the issuer. crl receives it as DER. */
int cg_crl(const unsigned char *issuer_cert, size_t issuer_cert_len,
           const unsigned char *issuer_key, size_t issuer_key_len,
           const unsigned char *revoked, const size_t *revoked_len, int n,
           long last_update, long next_update, long crl_number, cg_buf *crl, cg_err *e);

/* Reads the first certificate of cert_pem and the private key of key_pem (PKCS#8 or
 * traditional, unencrypted: an encrypted key is an error, never a prompt), checks that they
 * belong together, and gives them back as DER: the certificate, and the key as PKCS#8. */
int cg_read_pem(const unsigned char *cert_pem, size_t cert_pem_len,
                const unsigned char *key_pem, size_t key_pem_len,
                cg_buf *cert, cg_buf *key, cg_err *e);

/* Gives the key key (DER) back as PEM in the traditional format of its type: PKCS#1 for
 * RSA ("RSA PRIVATE KEY"), SEC 1 for EC ("EC PRIVATE KEY"). */
int cg_key_traditional_pem(const unsigned char *key, size_t key_len, cg_buf *pem, cg_err *e);

#endif
