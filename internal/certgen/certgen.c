/*
 * certgen.c: keys and X.509 certificates through OpenSSL 3 (see certgen.h).
 *
 * Each entry point clears the thread's error queue first, frees what it made on every path
 * (the "done:" label), and on failure drains the queue into its cg_err before returning.
 */
#include "certgen.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ---- errors ------------------------------------------------------------------------------ */

static void cg_append(cg_err *e, size_t *off, const char *s)
{
	size_t n = strlen(s);
	if (*off + n + 1 > sizeof e->text)
		n = sizeof e->text - *off - 1;
	memcpy(e->text + *off, s, n);
	*off += n;
	e->text[*off] = '\0';
}

/* Fills e with "where: library: reason (data); ..." from the queue, oldest first, and empties
 * the queue. Returns 0, the failure result, for "return cg_fail(e, ...)". */
static int cg_fail(cg_err *e, const char *where)
{
	const char *file, *func, *data;
	int line, flags;
	unsigned long code;
	size_t off = 0;
	const char *sep = ": ";

	e->text[0] = '\0';
	cg_append(e, &off, where);
	while ((code = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
		char item[512], rbuf[64];
		const char *lib = ERR_lib_error_string(code);
		const char *reason = ERR_reason_error_string(code);
		if (reason == NULL) {
			snprintf(rbuf, sizeof rbuf, "reason %d", ERR_GET_REASON(code));
			reason = rbuf;
		}
		if (lib != NULL && *lib != '\0')
			snprintf(item, sizeof item, "%s%s: %s", sep, lib, reason);
		else
			snprintf(item, sizeof item, "%s%s", sep, reason);
		cg_append(e, &off, item);
		if ((flags & ERR_TXT_STRING) && data != NULL && *data != '\0') {
			cg_append(e, &off, " (");
			cg_append(e, &off, data);
			cg_append(e, &off, ")");
		}
		sep = "; ";
	}
	return 0;
}

void cg_buf_free(cg_buf *b)
{
	OPENSSL_clear_free(b->data, b->len);
	b->data = NULL;
	b->len = 0;
}

/* Initialises OpenSSL as the tlszmq library does (ssl.c): the configuration file (OPENSSL_CONF)
 * is loaded, and no atexit cleanup is registered, which could run while other threads of the
 * Go process are still inside OpenSSL. Only the first initialisation in a process counts. */
static int cg_init(cg_err *e)
{
	if (OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_CONFIG |
	                        OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL))
		return 1;
	return cg_fail(e, "initialising OpenSSL");
}

/* ---- conversions ------------------------------------------------------------------------- */

/* key as PKCS#8 DER ("PrivateKeyInfo"), or as traditional PEM ("type-specific"), into out. */
static int cg_encode_key(const EVP_PKEY *key, const char *type, const char *structure, cg_buf *out)
{
	OSSL_ENCODER_CTX *ctx = OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, type, structure, NULL);
	int ok = ctx != NULL && OSSL_ENCODER_CTX_get_num_encoders(ctx) > 0 &&
	         OSSL_ENCODER_to_data(ctx, &out->data, &out->len);
	OSSL_ENCODER_CTX_free(ctx);
	return ok;
}

static EVP_PKEY *cg_decode_key(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	if (len > LONG_MAX)
		return NULL;
	return d2i_AutoPrivateKey(NULL, &p, (long)len);
}

static X509 *cg_decode_cert(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	if (len > LONG_MAX)
		return NULL;
	return d2i_X509(NULL, &p, (long)len);
}

static int cg_encode_cert(X509 *x, cg_buf *out)
{
	unsigned char *p = NULL;
	int n = i2d_X509(x, &p);
	if (n <= 0)
		return 0;
	out->data = p;
	out->len = (size_t)n;
	return 1;
}

/* ---- keys -------------------------------------------------------------------------------- */

int cg_keygen(const char *curve, int rsa_bits, cg_buf *key, cg_err *e)
{
	EVP_PKEY *pkey;
	int ok;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	if (curve != NULL)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
	if (pkey == NULL)
		return cg_fail(e, "generating the key");
	ok = cg_encode_key(pkey, "DER", "PrivateKeyInfo", key);
	EVP_PKEY_free(pkey);
	return ok ? 1 : cg_fail(e, "encoding the key as PKCS#8");
}

int cg_keygen_provider(const char *alg, char *name, size_t size, cg_err *e)
{
	EVP_KEYMGMT *km;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	km = EVP_KEYMGMT_fetch(NULL, alg, NULL);
	if (km == NULL)
		return cg_fail(e, "fetching the key management");
	snprintf(name, size, "%s", OSSL_PROVIDER_get0_name(EVP_KEYMGMT_get0_provider(km)));
	EVP_KEYMGMT_free(km);
	return 1;
}

int cg_key_traditional_pem(const unsigned char *key, size_t key_len, cg_buf *pem, cg_err *e)
{
	EVP_PKEY *pkey;
	int ok;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	if ((pkey = cg_decode_key(key, key_len)) == NULL)
		return cg_fail(e, "decoding the key");
	ok = cg_encode_key(pkey, "PEM", "type-specific", pem);
	EVP_PKEY_free(pkey);
	return ok ? 1 : cg_fail(e, "encoding the key");
}

/* ---- certificates ------------------------------------------------------------------------ */

static int cg_set_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int ok = bn != NULL && BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
	         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

static int cg_set_subject(X509 *x, const char *org, const char *cn)
{
	X509_NAME *name = X509_get_subject_name(x);
	return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0) &&
	       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
}

/* cg_decode_issuer decodes an issuer's certificate and key and checks that they match; on
 * failure e says which step failed, and whatever was decoded is for the caller to free. */
static int cg_decode_issuer(cg_err *e, const unsigned char *cert, size_t cert_len,
                            const unsigned char *key, size_t key_len, X509 **issuer, EVP_PKEY **ikey)
{
	if ((*issuer = cg_decode_cert(cert, cert_len)) == NULL)
		return cg_fail(e, "decoding the issuer's certificate");
	if ((*ikey = cg_decode_key(key, key_len)) == NULL)
		return cg_fail(e, "decoding the issuer's key");
	if (!X509_check_private_key(*issuer, *ikey))
		return cg_fail(e, "the issuer's key does not match its certificate");
	return 1;
}

int cg_issue(const unsigned char *key, size_t key_len,
             const unsigned char *issuer_cert, size_t issuer_cert_len,
             const unsigned char *issuer_key, size_t issuer_key_len,
             const char *org, const char *cn, long not_before, long not_after,
             const char *const *ext, int n_ext, cg_buf *cert, cg_err *e)
{
	EVP_PKEY *pkey = NULL, *ikey = NULL;
	X509 *x = NULL, *issuer = NULL;
	X509V3_CTX v3;
	int i, ok = 0;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	if ((pkey = cg_decode_key(key, key_len)) == NULL) {
		cg_fail(e, "decoding the key");
		goto done;
	}
	if (issuer_cert != NULL &&
	    !cg_decode_issuer(e, issuer_cert, issuer_cert_len, issuer_key, issuer_key_len, &issuer, &ikey))
		goto done;
	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3) || !cg_set_serial(x)) {
		cg_fail(e, "making the certificate");
		goto done;
	}
	if (!cg_set_subject(x, org, cn)) {
		cg_fail(e, "setting the subject name");
		goto done;
	}
	if (!X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : X509_get_subject_name(x)) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), not_before) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), not_after) == NULL ||
	    !X509_set_pubkey(x, pkey)) {
		cg_fail(e, "setting the issuer, validity and public key");
		goto done;
	}
	/* The issuer first, then the subject: the subject key identifier hashes x's public key,
	 * the authority key identifier copies the issuer's subject key identifier (x's own when
	 * self-signed, which is why that one must be added first). */
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if (!X509V3_set_issuer_pkey(&v3, issuer != NULL ? ikey : pkey)) {
		cg_fail(e, "setting the issuer's key");
		goto done;
	}
	for (i = 0; i + 1 < 2 * n_ext; i += 2) {
		X509_EXTENSION *ex = X509V3_EXT_nconf(NULL, &v3, ext[i], ext[i + 1]);
		int added = ex != NULL && X509_add_ext(x, ex, -1);
		X509_EXTENSION_free(ex);
		if (!added) {
			char where[256];
			snprintf(where, sizeof where, "extension %s = %s", ext[i], ext[i + 1]);
			cg_fail(e, where);
			goto done;
		}
	}
	if (X509_sign(x, issuer != NULL ? ikey : pkey, EVP_sha256()) <= 0) {
		cg_fail(e, "signing the certificate");
		goto done;
	}
	if (!cg_encode_cert(x, cert)) {
		cg_fail(e, "encoding the certificate");
		goto done;
	}
	ok = 1;
done:
	X509_free(x);
	X509_free(issuer);
	EVP_PKEY_free(pkey);
	EVP_PKEY_free(ikey);
	return ok;
}

/* ---- CRLs -------------------------------------------------------------------------------- */

int cg_crl(const unsigned char *issuer_cert, size_t issuer_cert_len,
           const unsigned char *issuer_key, size_t issuer_key_len,
           const unsigned char *revoked, const size_t *revoked_len, int n,
           long last_update, long next_update, long crl_number, cg_buf *crl, cg_err *e)
{
	EVP_PKEY *ikey = NULL;
	X509 *issuer = NULL;
	X509_CRL *c = NULL;
	ASN1_TIME *last = NULL, *next = NULL;
	ASN1_INTEGER *num = NULL;
	X509_EXTENSION *akid = NULL;
	X509V3_CTX v3;
	unsigned char *der = NULL;
	size_t off = 0;
	int i, len, ok = 0;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	if (!cg_decode_issuer(e, issuer_cert, issuer_cert_len, issuer_key, issuer_key_len, &issuer, &ikey))
		goto done;
	if ((c = X509_CRL_new()) == NULL || !X509_CRL_set_version(c, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer)) ||
	    (last = X509_gmtime_adj(NULL, last_update)) == NULL ||
	    (next = X509_gmtime_adj(NULL, next_update)) == NULL ||
	    !X509_CRL_set1_lastUpdate(c, last) || !X509_CRL_set1_nextUpdate(c, next)) {
		cg_fail(e, "making the CRL");
		goto done;
	}
	for (i = 0; i < n; i++) {
		X509 *x = cg_decode_cert(revoked + off, revoked_len[i]);
		X509_REVOKED *r = x != NULL ? X509_REVOKED_new() : NULL;
		int added = r != NULL && X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(x)) &&
		            X509_REVOKED_set_revocationDate(r, last) && X509_CRL_add0_revoked(c, r);
		if (!added)
			X509_REVOKED_free(r);
		X509_free(x);
		if (!added) {
			cg_fail(e, "adding a revoked certificate");
			goto done;
		}
		off += revoked_len[i];
	}
	X509V3_set_ctx(&v3, issuer, NULL, NULL, c, 0);
	if ((num = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set(num, crl_number) ||
	    !X509_CRL_add1_ext_i2d(c, NID_crl_number, num, 0, 0) ||
	    (akid = X509V3_EXT_nconf(NULL, &v3, "authorityKeyIdentifier", "keyid:always")) == NULL ||
	    !X509_CRL_add_ext(c, akid, -1)) {
		cg_fail(e, "adding the CRL number and authority key identifier");
		goto done;
	}
	if (!X509_CRL_sort(c) || X509_CRL_sign(c, ikey, EVP_sha256()) <= 0) {
		cg_fail(e, "signing the CRL");
		goto done;
	}
	if ((len = i2d_X509_CRL(c, &der)) <= 0) {
		cg_fail(e, "encoding the CRL");
		goto done;
	}
	crl->data = der;
	crl->len = (size_t)len;
	ok = 1;
done:
	X509_EXTENSION_free(akid);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	X509_CRL_free(c);
	X509_free(issuer);
	EVP_PKEY_free(ikey);
	return ok;
}

/* ---- PEM --------------------------------------------------------------------------------- */

/* Refuses every passphrase request: an encrypted key fails instead of prompting. */
static int cg_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

int cg_read_pem(const unsigned char *cert_pem, size_t cert_pem_len,
                const unsigned char *key_pem, size_t key_pem_len,
                cg_buf *cert, cg_buf *key, cg_err *e)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	EVP_PKEY *pkey = NULL;
	int ok = 0;

	ERR_clear_error();
	if (!cg_init(e))
		return 0;
	if (cert_pem_len > INT_MAX || key_pem_len > INT_MAX) {
		snprintf(e->text, sizeof e->text, "PEM input too large");
		return 0;
	}
	if ((bio = BIO_new_mem_buf(cert_pem, (int)cert_pem_len)) == NULL ||
	    (x = PEM_read_bio_X509(bio, NULL, cg_no_passphrase, NULL)) == NULL) {
		cg_fail(e, "reading the certificate");
		e->input = 1;
		goto done;
	}
	BIO_free(bio);
	if ((bio = BIO_new_mem_buf(key_pem, (int)key_pem_len)) == NULL ||
	    (pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, cg_no_passphrase, NULL, NULL, NULL)) == NULL) {
		cg_fail(e, "reading the private key");
		e->input = 2;
		goto done;
	}
	if (!X509_check_private_key(x, pkey)) {
		cg_fail(e, "the private key does not match the certificate");
		e->input = 2;
		goto done;
	}
	if (!cg_encode_cert(x, cert)) {
		cg_fail(e, "encoding the certificate");
		goto done;
	}
	if (!cg_encode_key(pkey, "DER", "PrivateKeyInfo", key)) {
		cg_buf_free(cert);
		cg_fail(e, "encoding the key as PKCS#8");
		goto done;
	}
	ok = 1;
done:
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ok;
}
