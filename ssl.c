/*
 * ssl.c: the C shim between Go and OpenSSL 3 (see ssl.h).
 *
 * Two memory BIOs per SSL object: bytes that arrive from ZeroMQ go into the read BIO, bytes
 * that OpenSSL writes leave through the write BIO. OpenSSL never owns a socket. Both BIOs
 * answer "retry" when empty (BIO_set_mem_eof_return -1); the end of the transport is explicit
 * (TZ_IN_EOF), so an empty BIO is never mistaken for the end of the stream.
 */
#include "ssl.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#include <openssl/ui.h>
#endif

struct tz_ctx {
	SSL_CTX *ssl_ctx;
	OSSL_LIB_CTX *libctx;     /* NULL: the default library context; else a shared FIPS one */
	int server;
	int fips_on;
	int max_key_updates;      /* copied into every connection (see tz_conn) */
	long long max_records;
	unsigned char *alpn;      /* the ALPN protocols (tz_ctx_cfg.alpn), owned; NULL: none */
	size_t alpn_len;
};

/* The session id context of a server whose caller gave none (the C test drivers); tlszmq's
 * servers are given one derived from their verification policy (see context.go). */
static const unsigned char tz_session_id_context[] = "tlszmq";

/* ---- error capture ---------------------------------------------------------------------- */

/* The text of a system error number, in buf or static storage. glibc has two strerror_r: the
 * GNU one (with _GNU_SOURCE) returns the text, which may not be in buf; the XSI one returns 0
 * and fills buf. strerror itself is not thread-safe. */
static const char *tz_strerror(int errnum, char *buf, size_t len)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	const char *s = strerror_r(errnum, buf, len);
	return s != NULL ? s : "unknown system error";
#else
	if (strerror_r(errnum, buf, len) != 0)
		snprintf(buf, len, "system error %d", errnum);
	return buf;
#endif
}

static void tz_append(tz_err *e, size_t *off, const char *s)
{
	size_t n = strlen(s);
	if (*off + n + 1 >= sizeof e->text)
		n = sizeof e->text - *off - 1;
	memcpy(e->text + *off, s, n);
	*off += n;
	e->text[*off] = '\0';
}

/* Drains OpenSSL's error queue into e, oldest first, one reason a line:
 * "library: reason (data)". Called inside the failing call, on the failing thread. */
static void tz_capture(tz_err *e, const char *where)
{
	const char *file, *func, *data;
	int line, flags, first = 1;
	unsigned long code;
	size_t off = 0;

	snprintf(e->where, sizeof e->where, "%s", where);
	e->text[0] = '\0';
	e->reason = 0;
	e->lib = 0;
	e->cause = 0;
	while ((code = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
		char item[512], rbuf[128];
		const char *lib, *reason;
		if (ERR_SYSTEM_ERROR(code)) {
			lib = "system library";
			reason = tz_strerror(ERR_GET_REASON(code), rbuf, sizeof rbuf);
		} else {
			lib = ERR_lib_error_string(code);
			reason = ERR_reason_error_string(code);
			if (reason == NULL) {
				snprintf(rbuf, sizeof rbuf, "reason %d", ERR_GET_REASON(code));
				reason = rbuf;
			}
		}
		if (first) {
			e->reason = ERR_GET_REASON(code);
			e->lib = ERR_GET_LIB(code);
			first = 0;
		}
		if (lib != NULL && *lib)
			snprintf(item, sizeof item, "%s: %s", lib, reason);
		else
			snprintf(item, sizeof item, "%s", reason);
		if (off > 0)
			tz_append(e, &off, "\n");
		tz_append(e, &off, item);
		if ((flags & ERR_TXT_STRING) && data != NULL && *data) {
			tz_append(e, &off, " (");
			tz_append(e, &off, data);
			tz_append(e, &off, ")");
		}
	}
}

/* tz_capture for a step that reads a file: where names it ("loading the CRL file /etc/x.crl"). */
static void tz_capture_file(tz_err *e, const char *step, const char *path)
{
	char where[sizeof e->where];

	snprintf(where, sizeof where, "%s %.400s", step, path);
	tz_capture(e, where);
}

static void tz_fail_text(tz_err *e, const char *where, const char *text)
{
	tz_capture(e, where);
	if (e->text[0] == '\0')
		snprintf(e->text, sizeof e->text, "%s", text);
}

/* ---- contexts --------------------------------------------------------------------------- */

long long tz_c_heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();
	return (long long)(m.uordblks + m.hblkhd);
#else
	return -1;
#endif
}

int tz_init(void)
{
	/* No atexit cleanup: in a Go process other threads may still be inside OpenSSL (a
	 * finalizer freeing an SSL object, say) when exit runs, and OPENSSL_cleanup must not run
	 * while other threads use OpenSSL. The operating system reclaims the memory. */
	return OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_SSL_STRINGS |
	                        OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}

/* FIPS library contexts are set up once per (configuration, module folder) and kept for the
 * life of the process: the provider's self tests are costly, and OpenSSL 3.0 keeps per-thread
 * state that points into a library context after it is freed (OPENSSL_thread_stop then reads
 * freed memory). */
typedef struct tz_fips_env {
	struct tz_fips_env *next;
	char *config, *modules;
	OSSL_LIB_CTX *libctx;
} tz_fips_env;

static tz_fips_env *tz_fips_envs;
static CRYPTO_RWLOCK *tz_fips_lock;
static CRYPTO_ONCE tz_fips_once = CRYPTO_ONCE_STATIC_INIT;

static void tz_fips_lock_init(void)
{
	tz_fips_lock = CRYPTO_THREAD_lock_new();
}

static int tz_streq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Sets up a library context with the fips provider (and base, for key decoders) and fips=yes
 * as its default property. On failure err says why and NULL is returned. */
static OSSL_LIB_CTX *tz_fips_new(const tz_ctx_cfg *cfg, tz_err *err)
{
	OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
	OSSL_PROVIDER *fips = NULL;
	EVP_MD *md;
	const char *prov;
	char *conf = NULL;
	int ok;

	if (libctx == NULL) {
		tz_fail_text(err, "creating the FIPS library context", "out of memory");
		return NULL;
	}
	if (cfg->fips_modules != NULL && *cfg->fips_modules &&
	    !OSSL_PROVIDER_set_default_search_path(libctx, cfg->fips_modules)) {
		tz_fail_text(err, "setting the FIPS module directory", "rejected");
		goto fail;
	}
	/* The configuration carries the module's installation data (fipsmodule.cnf). Without one
	 * named, the system's configuration file is used, as OpenSSL itself would. */
	if (cfg->fips_config != NULL && *cfg->fips_config)
		ok = OSSL_LIB_CTX_load_config(libctx, cfg->fips_config);
	else {
		conf = CONF_get1_default_config_file();
		ok = conf == NULL || OSSL_LIB_CTX_load_config(libctx, conf);
	}
	if (!ok) {
		char where[128];
		snprintf(where, sizeof where, "loading the FIPS configuration %s",
		         cfg->fips_config && *cfg->fips_config ? cfg->fips_config : (conf ? conf : ""));
		OPENSSL_free(conf);
		tz_fail_text(err, where, "the configuration could not be loaded");
		goto fail;
	}
	OPENSSL_free(conf);
	ERR_clear_error();
	/* A configuration that names a missing module still loads "successfully": check for the
	 * provider explicitly, and that it passed its self tests. */
	fips = OSSL_PROVIDER_load(libctx, "fips");
	if (fips == NULL) {
		tz_fail_text(err, "loading the fips provider", "the fips provider is not available");
		goto fail;
	}
	if (!OSSL_PROVIDER_self_test(fips)) {
		tz_fail_text(err, "running the fips provider's self tests", "self tests failed");
		return NULL;  /* the provider ran: its library context cannot be freed safely */
	}
	if (OSSL_PROVIDER_load(libctx, "base") == NULL) {
		tz_fail_text(err, "loading the base provider", "the base provider is not available");
		return NULL;
	}
	if (!EVP_default_properties_enable_fips(libctx, 1)) {
		tz_fail_text(err, "setting fips=yes as the default property", "rejected");
		return NULL;
	}
	md = EVP_MD_fetch(libctx, "SHA2-256", NULL);
	prov = md ? OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md)) : NULL;
	ok = prov != NULL && strcmp(prov, "fips") == 0;
	EVP_MD_free(md);
	if (!ok) {
		tz_fail_text(err, "checking the fips provider", "SHA2-256 is not served by the fips provider");
		return NULL;
	}
	return libctx;  /* the providers stay loaded as long as the library context lives */
fail:
	OSSL_LIB_CTX_free(libctx);
	return NULL;
}

static int tz_fips_setup(tz_ctx *t, const tz_ctx_cfg *cfg, tz_err *err)
{
	tz_fips_env *env;

	if (!CRYPTO_THREAD_run_once(&tz_fips_once, tz_fips_lock_init) || tz_fips_lock == NULL ||
	    !CRYPTO_THREAD_write_lock(tz_fips_lock)) {
		tz_fail_text(err, "locking the FIPS library contexts", "lock failed");
		return 0;
	}
	for (env = tz_fips_envs; env != NULL; env = env->next)
		if (tz_streq(env->config, cfg->fips_config) && tz_streq(env->modules, cfg->fips_modules))
			break;
	if (env == NULL) {
		OSSL_LIB_CTX *libctx = tz_fips_new(cfg, err);
		if (libctx != NULL && (env = calloc(1, sizeof *env)) != NULL) {
			env->config = cfg->fips_config ? strdup(cfg->fips_config) : NULL;
			env->modules = cfg->fips_modules ? strdup(cfg->fips_modules) : NULL;
			env->libctx = libctx;
			env->next = tz_fips_envs;
			tz_fips_envs = env;
		}
	}
	CRYPTO_THREAD_unlock(tz_fips_lock);
	if (env == NULL)
		return 0;
	t->libctx = env->libctx;
	t->fips_on = 1;
	return 1;
}

/* BIO_new_mem_buf takes an int: longer input is refused, never cut short or wrapped. */
static BIO *tz_mem_buf(const unsigned char *p, size_t len, const char *what)
{
	if (len > INT_MAX) {
		ERR_raise_data(ERR_LIB_SSL, ERR_R_PASSED_INVALID_ARGUMENT,
		               "%s is %zu bytes long, more than INT_MAX (%d)", what, len, INT_MAX);
		return NULL;
	}
	return BIO_new_mem_buf(p, (int)len);
}

static int tz_use_cert_pem(tz_ctx *t, const unsigned char *pem, size_t len)
{
	BIO *b = tz_mem_buf(pem, len, "the certificate PEM");
	X509 *x = NULL;
	int ok = 0;

	if (b == NULL)
		return 0;
	x = X509_new_ex(t->libctx, NULL);
	if (x == NULL || PEM_read_bio_X509_AUX(b, &x, NULL, NULL) == NULL)
		goto done;
	if (!SSL_CTX_use_certificate(t->ssl_ctx, x))
		goto done;
	if (!SSL_CTX_clear_chain_certs(t->ssl_ctx))
		goto done;
	for (;;) {
		X509 *ca = X509_new_ex(t->libctx, NULL);
		if (ca == NULL)
			goto done;
		if (PEM_read_bio_X509(b, &ca, NULL, NULL) == NULL) {
			X509_free(ca);
			unsigned long e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
				ERR_clear_error();  /* the end of the chain */
			else
				goto done;
			break;
		}
		if (!SSL_CTX_add0_chain_cert(t->ssl_ctx, ca)) {
			X509_free(ca);
			goto done;
		}
	}
	ok = 1;
done:
	X509_free(x);
	BIO_free(b);
	return ok;
}

/* tz_passwd_cb gives OpenSSL the password of an encrypted private key, the string u points
 * to; without one it fails, so that OpenSSL never asks on the terminal. */
static int tz_passwd_cb(char *buf, int size, int rwflag, void *u)
{
	size_t n;

	(void)rwflag;
	if (u == NULL)
		return 0;
	n = strlen((const char *)u);
	if (n > (size_t)size)
		return 0;
	memcpy(buf, u, n);
	return (int)n;
}

static int tz_use_key_pem(tz_ctx *t, const unsigned char *pem, size_t len, const char *password)
{
	BIO *b = tz_mem_buf(pem, len, "the private key PEM");
	EVP_PKEY *k;
	int ok;

	if (b == NULL)
		return 0;
	k = PEM_read_bio_PrivateKey_ex(b, NULL, tz_passwd_cb, (void *)password, t->libctx, NULL);
	ok = k != NULL && SSL_CTX_use_PrivateKey(t->ssl_ctx, k);
	EVP_PKEY_free(k);
	BIO_free(b);
	return ok;
}

static int tz_add_ca_pem(tz_ctx *t, const unsigned char *pem, size_t len)
{
	BIO *b = tz_mem_buf(pem, len, "the CA PEM");
	STACK_OF(X509_INFO) *infos;
	X509_STORE *store = SSL_CTX_get_cert_store(t->ssl_ctx);
	int i, n = 0, ok = 1;

	if (b == NULL)
		return 0;
	infos = PEM_X509_INFO_read_bio_ex(b, NULL, NULL, NULL, t->libctx, NULL);
	BIO_free(b);
	if (infos == NULL)
		return 0;
	for (i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *info = sk_X509_INFO_value(infos, i);
		if (info->x509 != NULL) {
			if (!X509_STORE_add_cert(store, info->x509))
				ok = 0;
			n++;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (n == 0) {
		ERR_raise_data(ERR_LIB_PEM, PEM_R_NO_START_LINE, "no certificate in the CA PEM");
		return 0;
	}
	return ok;
}

/* ---- private keys in a hardware module (PKCS#11) ---------------------------------------- */

/* Keys named by a PKCS#11 URI load through OpenSSL's pkcs11 ENGINE (libp11's pkcs11.so, in
 * OpenSSL's engines directory: Debian's libengine-pkcs11-openssl). Bookworm has no
 * pkcs11-provider, so the ENGINE API it is, deprecated in OpenSSL 3: its calls are confined to
 * this section, with the deprecation warnings silenced here only.
 *
 * The engine is set up once per process and kept, as the FIPS library contexts are:
 * ENGINE_by_id returns one ENGINE for the whole process (libp11 keeps one PKCS#11 context per
 * ENGINE), and PKCS#11 itself initialises a module once per process (C_Initialize), its
 * logins included. If the engine were finished when the last context using it went, libp11
 * would unload the module with C_Finalize, ending the sessions of every key of the process:
 * those of the context a Reload made while the old one was still in use. So one functional
 * reference (tz_engine) is held for the life of the process, and every load takes and drops
 * one of its own (ENGINE_by_id/ENGINE_init, ENGINE_finish/ENGINE_free, once each). The keys
 * themselves need no reference: the module they live in stays loaded.
 *
 * One module per process: libp11 loads the module once and then ignores MODULE_PATH. The
 * module is fixed (tz_engine_module_fixed) by the first load that reached it; until then each
 * load sets the path it was given, so that a wrong path can be corrected by a Reload. The
 * lock serialises the loads: the PIN is the engine's state, not the call's. */
#ifndef OPENSSL_NO_ENGINE
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

static CRYPTO_RWLOCK *tz_engine_lock;
static CRYPTO_ONCE tz_engine_once = CRYPTO_ONCE_STATIC_INIT;
static ENGINE *tz_engine;              /* the functional reference kept for the process */
static char *tz_engine_module;         /* the module path last set, NULL: libp11's default */
static int tz_engine_module_fixed;     /* the module has been loaded: the path cannot change */

static void tz_engine_lock_init(void)
{
	tz_engine_lock = CRYPTO_THREAD_lock_new();
}

/* tz_capture, then hint on a line of its own: the cause in words, after OpenSSL's reasons. */
static void tz_capture_hint(tz_err *e, const char *where, const char *hint)
{
	size_t off;

	tz_capture(e, where);
	off = strlen(e->text);
	if (off > 0)
		tz_append(e, &off, "\n");
	tz_append(e, &off, hint);
}

/* Takes the engine for one load (a functional reference of its own), setting it up the first
 * time, with module as the PKCS#11 module unless the module is fixed already. */
static ENGINE *tz_engine_get(const char *module, tz_err *err)
{
	ENGINE *e;

	if (tz_engine_module_fixed && !tz_streq(tz_engine_module, module)) {
		char text[TZ_ERR_TEXT];
		snprintf(text, sizeof text,
		         "this process's pkcs11 engine has loaded the PKCS#11 module %.400s, and libp11 loads "
		         "one module per process: %.400s cannot be used besides it",
		         tz_engine_module ? tz_engine_module : "(libp11's default)", module ? module : "(libp11's default)");
		tz_fail_text(err, "choosing the PKCS#11 module", text);
		return NULL;
	}
	ERR_set_mark();
	e = ENGINE_by_id("pkcs11");
	if (e == NULL) {
		tz_capture_hint(err, "loading OpenSSL's pkcs11 engine",
		                "the pkcs11 engine is not installed (Debian: apt-get install libengine-pkcs11-openssl; "
		                "`make deps` installs it)");
		return NULL;
	}
	ERR_pop_to_mark();  /* what ENGINE_by_id pushed on its way to success */
	if (module == NULL && tz_engine_module != NULL) {
		/* A module set by an earlier load that failed: libp11 cannot be told to go back to
		 * its default, so the caller names the module. */
		char text[TZ_ERR_TEXT];
		snprintf(text, sizeof text,
		         "an earlier key of this process named the PKCS#11 module %.400s: name this key's module "
		         "with module-path (or PKCS11_MODULE_PATH)", tz_engine_module);
		tz_fail_text(err, "choosing the PKCS#11 module", text);
		ENGINE_free(e);
		return NULL;
	}
	if (module != NULL && !tz_streq(tz_engine_module, module)) {
		char *copy = strdup(module);
		if (copy == NULL || !ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0)) {
			free(copy);
			tz_fail_text(err, "setting the PKCS#11 module of the pkcs11 engine", "MODULE_PATH was refused");
			ENGINE_free(e);
			return NULL;
		}
		free(tz_engine_module);
		tz_engine_module = copy;
	}
	if (!ENGINE_init(e)) {
		tz_capture_hint(err, "initialising OpenSSL's pkcs11 engine", "ENGINE_init failed");
		ENGINE_free(e);
		return NULL;
	}
	if (tz_engine == NULL) {
		/* The process's reference: never finished (see above). */
		if (!ENGINE_init(e)) {
			tz_capture_hint(err, "initialising OpenSSL's pkcs11 engine", "ENGINE_init failed");
			ENGINE_finish(e);
			ENGINE_free(e);
			return NULL;
		}
		tz_engine = e;
	}
	return e;
}

static void tz_engine_put(ENGINE *e)
{
	ENGINE_finish(e);
	ENGINE_free(e);
}

/* Loads the private key cfg->key_uri names from its token into t's SSL_CTX; the caller
 * checks it against the certificate. The PIN is cfg->key_password when set (a pin-value in
 * the URI overrides it); it is wiped from the engine once the key has loaded. No prompt,
 * ever: without a PIN, libp11 logs in with an empty one, which the token refuses. */
static int tz_use_key_uri(tz_ctx *t, const tz_ctx_cfg *cfg, tz_err *err)
{
	char where[sizeof err->where];
	ENGINE *e;
	EVP_PKEY *k;
	int ok = 0;

	snprintf(where, sizeof where, "loading the private key %.400s through the pkcs11 engine",
	         cfg->key_uri_name ? cfg->key_uri_name : "(PKCS#11 URI)");
	if (!CRYPTO_THREAD_run_once(&tz_engine_once, tz_engine_lock_init) || tz_engine_lock == NULL ||
	    !CRYPTO_THREAD_write_lock(tz_engine_lock)) {
		tz_fail_text(err, "locking the pkcs11 engine", "lock failed");
		return 0;
	}
	e = tz_engine_get(cfg->key_module, err);
	if (e == NULL)
		goto done;
	if (!ENGINE_ctrl_cmd_string(e, "PIN", cfg->key_password ? cfg->key_password : "", 0)) {
		tz_capture_hint(err, where, "the engine refused the PIN");
		tz_engine_put(e);
		goto done;
	}
	k = ENGINE_load_private_key(e, cfg->key_uri, (UI_METHOD *)UI_null(), NULL);
	if (k == NULL) {
		tz_capture_hint(err, where, "the token or the key was not found, or the PIN was refused (see above)");
		/* A module that could not be loaded leaves the path open to a correction. */
		if (strstr(err->text, "Unable to load") == NULL)
			tz_engine_module_fixed = 1;
	} else {
		tz_engine_module_fixed = 1;
		ok = SSL_CTX_use_PrivateKey(t->ssl_ctx, k);
		if (!ok)
			tz_capture(err, where);
		EVP_PKEY_free(k);
	}
	(void)ENGINE_ctrl_cmd_string(e, "PIN", "", 0);  /* wipes the engine's copy */
	ERR_clear_error();  /* the wipe's, if any: err holds the load's */
	tz_engine_put(e);
done:
	CRYPTO_THREAD_unlock(tz_engine_lock);
	return ok;
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else  /* OPENSSL_NO_ENGINE */
static int tz_use_key_uri(tz_ctx *t, const tz_ctx_cfg *cfg, tz_err *err)
{
	(void)t;
	(void)cfg;
	tz_fail_text(err, "loading the private key through the pkcs11 engine",
	             "this OpenSSL was built without ENGINE support (OPENSSL_NO_ENGINE)");
	return 0;
}
#endif

static void tz_info_cb(const SSL *ssl, int where, int ret)
{
	tz_conn *c;
	if (!(where & SSL_CB_ALERT))
		return;
	c = SSL_get_app_data(ssl);
	if (c == NULL)
		return;
	if (where & SSL_CB_READ) {
		c->alert_recv = ret & 0xff;
		c->alert_recv_fatal = (ret >> 8) == SSL3_AL_FATAL;
	} else {
		c->alert_sent = ret & 0xff;
		c->alert_sent_fatal = (ret >> 8) == SSL3_AL_FATAL;
	}
}

/* Counts what the peer's input costs a pump, as OpenSSL reads it: every record header and every
 * KeyUpdate message. It only counts (a message callback cannot stop OpenSSL); tz_pump looks at
 * the counts after each SSL_read. It stores into the connection's C memory and calls nothing. */
static void tz_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                      SSL *ssl, void *arg)
{
	tz_conn *c;
	(void)version;
	(void)arg;
	if (write_p || (c = SSL_get_app_data(ssl)) == NULL)
		return;
	if (content_type == SSL3_RT_HEADER) {
		c->pump_records++;
		c->read_events++;
	} else if (content_type == SSL3_RT_HANDSHAKE) {
		c->read_events++;
		if (len > 0 && ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE) {
			c->pump_key_updates++;
			c->key_updates++;
		}
	}
}

/* 1 when p is a well-formed ALPN list in the wire format: names of 1 to 255 bytes, each after
 * its length byte, at least one, at most 65,535 bytes in all (the extension's length field). */
static int tz_alpn_ok(const unsigned char *p, size_t len)
{
	size_t off = 0;

	if (p == NULL || len < 2 || len > 0xffff)
		return 0;
	while (off < len) {
		if (p[off] == 0)
			return 0;
		off += 1 + (size_t)p[off];
	}
	return off == len;
}

/* A server's ALPN choice, by the server's preference as crypto/tls makes it: the first of the
 * connection's protocols (tz_conn.alpn_accept) that the client offers. The callback only runs
 * when the client offers ALPN: a client that offers none (the C++ peers) gets none. Without a
 * common protocol the handshake fails with no_application_protocol when the context has
 * protocols of its own (Config.NextProtos, as crypto/tls since Go 1.17), and goes on without
 * ALPN otherwise: a ZeroMQ server's engines only add the framed protocol, which a client may
 * do without (it then speaks the raw C++ format). It reads the connection's C memory only:
 * nothing in it reaches Go. */
static int tz_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
	tz_conn *c = SSL_get_app_data(ssl);
	unsigned char *sel = NULL;

	(void)arg;
	if (c == NULL || c->alpn_accept == NULL || inlen == 0)
		return SSL_TLSEXT_ERR_NOACK;
	/* SSL_select_next_proto walks its first list and takes the first name the second holds:
	 * the server's list first is the server's preference. */
	if (SSL_select_next_proto(&sel, outlen, c->alpn_accept, (unsigned int)c->alpn_accept_len,
	                          in, inlen) == OPENSSL_NPN_NEGOTIATED) {
		*out = sel;
		return SSL_TLSEXT_ERR_OK;
	}
	return c->alpn_strict ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

/* OpenSSL's keylog callback (tz_ctx_cfg.keylog): appends line, one NSS key-log line without
 * its newline, to the connection's buffer, for the Go side to copy out after the pump. It
 * stores into the connection's C memory and calls nothing else: no Go. A line that would take
 * the buffer past TZ_KEYLOG_MAX, or that finds no memory, is dropped and counted. */
static void tz_keylog_cb(const SSL *ssl, const char *line)
{
	tz_conn *c = SSL_get_app_data(ssl);
	size_t n, need;

	if (c == NULL || line == NULL)
		return;
	n = strlen(line);
	need = c->keylog_len + n + 1;
	if (need > TZ_KEYLOG_MAX) {
		c->keylog_dropped++;
		return;
	}
	if (need > c->keylog_cap) {
		/* Grown into fresh memory, the old wiped: no copy of a secret is left behind. */
		size_t cap = c->keylog_cap ? c->keylog_cap : 512;
		char *b;
		while (cap < need)
			cap *= 2;
		if (cap > TZ_KEYLOG_MAX)
			cap = TZ_KEYLOG_MAX;
		if ((b = malloc(cap)) == NULL) {
			c->keylog_dropped++;
			return;
		}
		if (c->keylog != NULL) {
			memcpy(b, c->keylog, c->keylog_len);
			OPENSSL_cleanse(c->keylog, c->keylog_cap);
			free(c->keylog);
		}
		c->keylog = b;
		c->keylog_cap = cap;
	}
	memcpy(c->keylog + c->keylog_len, line, n);
	c->keylog[c->keylog_len + n] = '\n';
	c->keylog_len = need;
}

/* Empties the key-log buffer (the lines of the last pump, copied out by then), wiping them. */
static void tz_keylog_reset(tz_conn *c)
{
	if (c->keylog_len > 0) {
		OPENSSL_cleanse(c->keylog, c->keylog_len);
		c->keylog_len = 0;
	}
}

/* Frees the key-log buffer, wiped; the connection keeps none. */
static void tz_keylog_free(tz_conn *c)
{
	if (c->keylog != NULL) {
		OPENSSL_cleanse(c->keylog, c->keylog_cap);
		free(c->keylog);
	}
	c->keylog = NULL;
	c->keylog_len = c->keylog_cap = 0;
}

/* Sets a connection's ALPN protocols up: its own (alpn) before the context's. A client offers
 * them (SSL_set_alpn_protos copies them); a server keeps them for tz_alpn_select. 1 on
 * success, 0 with err filled. */
static int tz_conn_alpn(tz_conn *c, tz_ctx *t, const unsigned char *alpn, size_t alpn_len, tz_err *err)
{
	size_t n;
	unsigned char *list;

	if (alpn == NULL || alpn_len == 0) {
		alpn = NULL;
		alpn_len = 0;
	} else if (!tz_alpn_ok(alpn, alpn_len)) {
		tz_fail_text(err, "setting the ALPN protocols", "malformed ALPN protocol list");
		return 0;
	}
	if (!t->server && alpn == NULL)
		return 1; /* the context's protocols, if any, are the SSL object's already */
	n = alpn_len + t->alpn_len;
	if (n == 0)
		return 1;
	if (n > 0xffff) {
		tz_fail_text(err, "setting the ALPN protocols", "the ALPN protocol list is longer than 65,535 bytes");
		return 0;
	}
	if ((list = malloc(n)) == NULL) {
		tz_fail_text(err, "setting the ALPN protocols", "out of memory");
		return 0;
	}
	if (alpn_len > 0)
		memcpy(list, alpn, alpn_len);
	if (t->alpn_len > 0)
		memcpy(list + alpn_len, t->alpn, t->alpn_len);
	if (t->server) {
		c->alpn_accept = list; /* freed by tz_conn_free */
		c->alpn_accept_len = n;
		c->alpn_strict = t->alpn != NULL;
		return 1;
	}
	/* SSL_set_alpn_protos returns 0 on success, and keeps a copy of its own */
	if (SSL_set_alpn_protos(c->ssl, list, (unsigned int)n) != 0) {
		free(list);
		tz_fail_text(err, "setting the ALPN protocols", "rejected");
		return 0;
	}
	free(list);
	return 1;
}

/* ---- revocation ------------------------------------------------------------------------- */

/* Writes t as "2026-05-01 12:00:00 UTC" into buf. */
static void tz_time_text(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "(unreadable time)");
}

/* Reads the CRLs of the PEM file path into store: at least one, each within its validity (a
 * CRL whose nextUpdate is past would fail every handshake it applies to with "CRL has
 * expired"; one whose lastUpdate is to come, with "CRL is not yet valid"). Blocks of other
 * kinds (certificates) are skipped. 1 on success; 0 with the reason queued. */
static int tz_add_crl_file(tz_ctx *t, X509_STORE *store, const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	int n = 0, ok = 0;

	if (b == NULL)
		return 0;  /* the system's reason is queued, with the path */
	for (;;) {
		X509_CRL *crl = X509_CRL_new_ex(t->libctx, NULL);
		const ASN1_TIME *next, *last;
		char issuer[256], when[64];

		if (crl == NULL)
			goto done;
		if (PEM_read_bio_X509_CRL(b, &crl, NULL, NULL) == NULL) {
			unsigned long e = ERR_peek_last_error();
			X509_CRL_free(crl);
			if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				ERR_clear_error();  /* the end of the file */
				if (n == 0)
					ERR_raise_data(ERR_LIB_PEM, PEM_R_NO_START_LINE,
					               "no CRL (-----BEGIN X509 CRL-----) in %s", path);
				else
					ok = 1;
			}
			goto done;
		}
		X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof issuer);
		next = X509_CRL_get0_nextUpdate(crl);
		last = X509_CRL_get0_lastUpdate(crl);
		if (next != NULL && X509_cmp_current_time(next) < 0) {
			tz_time_text(next, when, sizeof when);
			ERR_raise_data(ERR_LIB_X509, X509_R_CRL_VERIFY_FAILURE,
			               "the CRL of %s in %s has expired: its next update was due %s", issuer, path, when);
			X509_CRL_free(crl);
			goto done;
		}
		if (last == NULL || X509_cmp_current_time(last) > 0) {
			tz_time_text(last, when, sizeof when);
			ERR_raise_data(ERR_LIB_X509, X509_R_CRL_VERIFY_FAILURE,
			               "the CRL of %s in %s is not valid yet: it was issued for %s", issuer, path, when);
			X509_CRL_free(crl);
			goto done;
		}
		if (!X509_STORE_add_crl(store, crl)) {
			X509_CRL_free(crl);
			goto done;
		}
		X509_CRL_free(crl);  /* the store holds a reference of its own */
		n++;
	}
done:
	BIO_free(b);
	return ok;
}

/* 1 when name is a hashed CRL's: eight hex digits, ".r", then digits ("1a2b3c4d.r0"). */
static int tz_is_crl_name(const char *name)
{
	int i;

	for (i = 0; i < 8; i++)
		if (!isxdigit((unsigned char)name[i]))
			return 0;
	if (name[8] != '.' || name[9] != 'r' || name[10] == '\0')
		return 0;
	for (i = 10; name[i] != '\0'; i++)
		if (!isdigit((unsigned char)name[i]))
			return 0;
	return 1;
}

/* Reads every hashed CRL file of dir (see tz_is_crl_name) into store, at least one. Other
 * files are left alone: a certificate there is never taken for a CA. 1 on success; 0 with
 * err filled, naming the file at fault. */
static int tz_add_crl_dir(tz_ctx *t, X509_STORE *store, const char *dir, tz_err *err)
{
	DIR *d;
	struct dirent *ent;
	char path[4096], where[sizeof err->where];
	int n = 0;

	if ((d = opendir(dir)) == NULL) {
		ERR_raise_data(ERR_LIB_SYS, errno, "opendir(%s)", dir);
		tz_capture_file(err, "loading the CRL directory", dir);
		return 0;
	}
	while ((ent = readdir(d)) != NULL) {
		if (!tz_is_crl_name(ent->d_name))
			continue;
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, ent->d_name) >= sizeof path) {
			closedir(d);
			snprintf(where, sizeof where, "loading the CRL directory %.400s", dir);
			tz_fail_text(err, where, "a file's path is longer than 4095 bytes");
			return 0;
		}
		if (!tz_add_crl_file(t, store, path)) {
			closedir(d);
			tz_capture_file(err, "loading the CRL file", path);
			return 0;
		}
		n++;
	}
	closedir(d);
	if (n == 0) {
		snprintf(where, sizeof where, "loading the CRL directory %.400s", dir);
		tz_fail_text(err, where, "no CRL in the directory: CRLs there are named <hash>.r0, <hash>.r1, ... "
		             "(openssl rehash makes these names)");
		return 0;
	}
	return 1;
}

/* Loads the context's CRLs and turns revocation checking on, for the whole chain. 1 on
 * success; 0 with err filled. */
static int tz_load_crls(tz_ctx *t, const tz_ctx_cfg *cfg, tz_err *err)
{
	X509_STORE *store = SSL_CTX_get_cert_store(t->ssl_ctx);

	if (cfg->crl_file != NULL && !tz_add_crl_file(t, store, cfg->crl_file)) {
		tz_capture_file(err, "loading the CRL file", cfg->crl_file);
		return 0;
	}
	if (cfg->crl_dir != NULL && !tz_add_crl_dir(t, store, cfg->crl_dir, err))
		return 0;
	/* CRL_CHECK_ALL: an intermediate CA that was revoked is refused too, not only the
	 * peer's own certificate (nginx's ssl_crl does the same). */
	if (!X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL)) {
		tz_capture(err, "turning CRL checking on");
		return 0;
	}
	return 1;
}

/* Gives a new server context the session ticket keys of an old one (name, HMAC and AES keys:
 * 80 bytes), so that tickets issued before a reload still open after it. */
static int tz_copy_ticket_keys(SSL_CTX *to, const tz_ctx *from)
{
	unsigned char keys[80];
	int ok = SSL_CTX_get_tlsext_ticket_keys(from->ssl_ctx, keys, sizeof keys) &&
	         SSL_CTX_set_tlsext_ticket_keys(to, keys, sizeof keys);
	OPENSSL_cleanse(keys, sizeof keys);
	return ok;
}

#define TZ_CHECK(cond, where) do { if (!(cond)) { tz_capture(err, (where)); goto fail; } } while (0)

tz_ctx *tz_ctx_new(const tz_ctx_cfg *cfg, tz_err *err)
{
	tz_ctx *t;
	SSL_CTX *ctx;
	/* Compression is off in OpenSSL 3 builds without zlib; the option says so whatever the
	 * build (CRIME). */
	uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;

	memset(err, 0, sizeof *err);
	ERR_clear_error();
	t = calloc(1, sizeof *t);
	if (t == NULL) {
		tz_fail_text(err, "allocating the context", "out of memory");
		return NULL;
	}
	t->server = cfg->server;
	t->max_key_updates = cfg->max_key_updates;
	t->max_records = cfg->max_records;
	if (cfg->alpn != NULL && cfg->alpn_len > 0) {
		if (!tz_alpn_ok(cfg->alpn, cfg->alpn_len)) {
			tz_fail_text(err, "setting the ALPN protocols", "malformed ALPN protocol list");
			goto fail;
		}
		if ((t->alpn = malloc(cfg->alpn_len)) == NULL) {
			tz_fail_text(err, "setting the ALPN protocols", "out of memory");
			goto fail;
		}
		memcpy(t->alpn, cfg->alpn, cfg->alpn_len);
		t->alpn_len = cfg->alpn_len;
	}
	if (cfg->fips && !tz_fips_setup(t, cfg, err))
		goto fail;
	t->ssl_ctx = SSL_CTX_new_ex(t->libctx, NULL, cfg->server ? TLS_server_method() : TLS_client_method());
	TZ_CHECK(t->ssl_ctx != NULL, "creating the SSL context");
	ctx = t->ssl_ctx;

	/* The security level first: it decides which certificates and keys load below. */
	if (cfg->security_level >= 0)
		SSL_CTX_set_security_level(ctx, cfg->security_level);
	TZ_CHECK(SSL_CTX_set_min_proto_version(ctx, cfg->min_version), "setting the minimum TLS version");
	TZ_CHECK(SSL_CTX_set_max_proto_version(ctx, cfg->max_version), "setting the maximum TLS version");
	if (cfg->server)
		opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
	if (cfg->no_tickets)
		opts |= SSL_OP_NO_TICKET;
	SSL_CTX_set_options(ctx, opts);
	if (cfg->no_tickets && cfg->server)
		SSL_CTX_set_num_tickets(ctx, 0);
	/* With tickets, resumption needs no server-side cache, and OpenSSL's would keep every
	 * session's state (about 4 KiB) after the session is gone, up to 20,480 of them: the soak
	 * saw 11 MB held that way. Without tickets the cache is what resumes TLS 1.2 sessions. */
	if (cfg->server && !cfg->no_tickets)
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (cfg->server && cfg->ticket_key != NULL)
		TZ_CHECK(cfg->ticket_key_len == 80 &&
		         SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)cfg->ticket_key, (long)cfg->ticket_key_len),
		         "setting the session ticket key (80 bytes)");
	else if (cfg->server && cfg->ticket_keys_from != NULL && cfg->ticket_keys_from->server)
		TZ_CHECK(tz_copy_ticket_keys(ctx, cfg->ticket_keys_from), "keeping the session ticket keys");
	/* NO_AUTO_CHAIN: a server sends its certificate and the chain of its certificate file,
	 * never certificates OpenSSL would pick from the CAs it verifies clients against. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
	/* Without AUTO_RETRY, SSL_read returns after each post-handshake message (a KeyUpdate, a
	 * NewSessionTicket) instead of going on to the next record by itself, so that tz_pump sees
	 * the counts of tz_msg_cb after each one: OpenSSL 3.0 has no bound of its own, and reads
	 * 100,000 KeyUpdates in one SSL_read (about 1 s of CPU). */
	SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
	SSL_CTX_set_info_callback(ctx, tz_info_cb);
	SSL_CTX_set_msg_callback(ctx, tz_msg_cb);
	/* The key log: each connection gathers its secrets' lines in C (tz_keylog_cb). */
	if (cfg->keylog)
		SSL_CTX_set_keylog_callback(ctx, tz_keylog_cb);
	/* Finite-field DHE for the DHE-RSA suites of the default list, with parameters matched to
	 * the certificate's strength, as `openssl s_server` does. */
	if (cfg->server)
		TZ_CHECK(SSL_CTX_set_dh_auto(ctx, 1), "enabling finite-field Diffie-Hellman");

	if (cfg->cipher_list != NULL)
		TZ_CHECK(SSL_CTX_set_cipher_list(ctx, cfg->cipher_list), "setting the TLS 1.2 cipher list");
	if (cfg->ciphersuites != NULL)
		TZ_CHECK(SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites), "setting the TLS 1.3 cipher suites");
	if (cfg->groups != NULL)
		TZ_CHECK(SSL_CTX_set1_groups_list(ctx, cfg->groups), "setting the key exchange groups");

	/* The steps that read files name them: OpenSSL's reasons do only when a file cannot be
	 * opened, not when it holds the wrong thing. */
	if (cfg->cert_file != NULL) {
		if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file)) {
			tz_capture_file(err, "loading the certificate file", cfg->cert_file);
			goto fail;
		}
	} else if (cfg->cert_pem != NULL)
		TZ_CHECK(tz_use_cert_pem(t, cfg->cert_pem, cfg->cert_pem_len), "loading the certificate PEM");
	/* The password callback stays (no prompt ever); its pointer to the password does not. */
	SSL_CTX_set_default_passwd_cb(ctx, tz_passwd_cb);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)cfg->key_password);
	if (cfg->key_file != NULL) {
		if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM)) {
			/* "key values mismatch" comes from here: the key is checked against the
			 * certificate as it loads. */
			char step[sizeof err->where];
			snprintf(step, sizeof step, "loading the private key file %.200s (for the certificate %.200s)",
			         cfg->key_file, cfg->cert_file ? cfg->cert_file : "PEM");
			tz_capture(err, step);
			SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
			goto fail;
		}
	} else if (cfg->key_pem != NULL)
		TZ_CHECK(tz_use_key_pem(t, cfg->key_pem, cfg->key_pem_len, cfg->key_password), "loading the private key PEM");
	else if (cfg->key_uri != NULL && !tz_use_key_uri(t, cfg, err)) {
		SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	/* A token's key too: the engine gives its public half, which is compared with the
	 * certificate's public key. */
	if ((cfg->cert_file || cfg->cert_pem) && (cfg->key_file || cfg->key_pem || cfg->key_uri) &&
	    !SSL_CTX_check_private_key(ctx)) {
		char where[sizeof err->where];
		snprintf(where, sizeof where, "matching the private key %.200s to the certificate %.200s",
		         cfg->key_file ? cfg->key_file : cfg->key_uri ? (cfg->key_uri_name ? cfg->key_uri_name : "(PKCS#11 URI)") : "(PEM)",
		         cfg->cert_file ? cfg->cert_file : "(PEM)");
		tz_capture(err, where);
		goto fail;
	}

	if ((cfg->ca_file != NULL || cfg->ca_dir != NULL) && !SSL_CTX_load_verify_locations(ctx, cfg->ca_file, cfg->ca_dir)) {
		tz_capture_file(err, "loading the CA certificates", cfg->ca_file ? cfg->ca_file : cfg->ca_dir);
		goto fail;
	}
	if (cfg->ca_pem != NULL)
		TZ_CHECK(tz_add_ca_pem(t, cfg->ca_pem, cfg->ca_pem_len), "loading the CA PEM");
	if ((cfg->crl_file != NULL || cfg->crl_dir != NULL) && !tz_load_crls(t, cfg, err))
		goto fail;
	if (cfg->server) {
		int mode = SSL_VERIFY_NONE;
		if (cfg->verify >= 1)
			mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
		if (cfg->verify >= 2)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
		/* Sessions (tickets included) resume only under the same context: a server that
		 * verifies clients differently never resumes another's sessions. */
		if (cfg->sid_ctx != NULL)
			TZ_CHECK(cfg->sid_ctx_len <= SSL_MAX_SID_CTX_LENGTH &&
			         SSL_CTX_set_session_id_context(ctx, cfg->sid_ctx, (unsigned int)cfg->sid_ctx_len),
			         "setting the session id context (at most 32 bytes)");
		else
			TZ_CHECK(SSL_CTX_set_session_id_context(ctx, tz_session_id_context, sizeof tz_session_id_context - 1),
			         "setting the session id context");
		/* Each connection holds the protocols it selects from (tz_conn_alpn). */
		SSL_CTX_set_alpn_select_cb(ctx, tz_alpn_select, NULL);
	} else if (cfg->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (cfg->ca_file == NULL && cfg->ca_dir == NULL && cfg->ca_pem == NULL)
			TZ_CHECK(SSL_CTX_set_default_verify_paths(ctx), "loading the system's CA certificates");
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	/* A client's SSL objects offer the context's protocols unless given a list of their own;
	 * SSL_CTX_set_alpn_protos copies them, and returns 0 on success. */
	if (!cfg->server && t->alpn != NULL &&
	    SSL_CTX_set_alpn_protos(ctx, t->alpn, (unsigned int)t->alpn_len) != 0) {
		tz_fail_text(err, "setting the ALPN protocols", "rejected");
		goto fail;
	}
	return t;
fail:
	tz_ctx_free(t);
	return NULL;
}

void tz_ctx_free(tz_ctx *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ssl_ctx);  /* the FIPS library context is shared and stays */
	free(t->alpn);
	free(t);
}

uint64_t tz_ctx_options(const tz_ctx *t)
{
	return SSL_CTX_get_options(t->ssl_ctx);
}

int tz_ctx_fips(const tz_ctx *t)
{
	return t->fips_on;
}

int tz_ctx_cert_der(const tz_ctx *t, unsigned char *buf, int cap)
{
	X509 *x = SSL_CTX_get0_certificate(t->ssl_ctx);
	int n;
	if (x == NULL)
		return 0;
	n = i2d_X509(x, NULL);
	if (n <= 0)
		return 0;
	if (n <= cap) {
		unsigned char *p = buf;
		i2d_X509(x, &p);
	}
	return n;
}

int tz_default_fips(void)
{
	return EVP_default_properties_is_fips_enabled(NULL) && OSSL_PROVIDER_available(NULL, "fips");
}

/* ---- connections ------------------------------------------------------------------------ */

tz_conn *tz_conn_new(tz_ctx *t, const char *server_name, int verify_name,
                     const unsigned char *alpn, size_t alpn_len, tz_err *err)
{
	tz_conn *c;
	SSL *ssl;
	BIO *rbio, *wbio;

	memset(err, 0, sizeof *err);
	ERR_clear_error();
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		tz_fail_text(err, "allocating the connection", "out of memory");
		return NULL;
	}
	c->alert_sent = c->alert_recv = -1;
	c->max_key_updates = t->max_key_updates;
	c->max_records = t->max_records;
	ssl = SSL_new(t->ssl_ctx);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	if (ssl == NULL || rbio == NULL || wbio == NULL) {
		tz_capture(err, "creating the SSL object");
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		free(c);
		return NULL;
	}
	/* Empty means "retry", never end of stream. */
	BIO_set_mem_eof_return(rbio, -1);
	BIO_set_mem_eof_return(wbio, -1);
	SSL_set_bio(ssl, rbio, wbio);  /* ssl owns both BIOs from here on */
	c->ssl = ssl;
	c->rbio = rbio;
	c->wbio = wbio;
	SSL_set_app_data(ssl, c);
	c->verify_peer = (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0;
	if (t->server) {
		SSL_set_accept_state(ssl);
	} else {
		SSL_set_connect_state(ssl);
		if (server_name != NULL && *server_name) {
			X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
			ASN1_OCTET_STRING *ip = a2i_IPADDRESS(server_name);
			int ok = 1;
			if (ip != NULL) {
				/* An IP address: no SNI (RFC 6066), the address is checked instead. */
				ASN1_OCTET_STRING_free(ip);
				if (verify_name)
					ok = X509_VERIFY_PARAM_set1_ip_asc(param, server_name);
			} else {
				ERR_clear_error();
				ok = SSL_set_tlsext_host_name(ssl, server_name);
				if (ok && verify_name) {
					/* "f*.example.com" matches nothing: a wildcard is a whole label. */
					SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
					ok = SSL_set1_host(ssl, server_name);
				}
			}
			if (!ok) {
				tz_capture(err, "setting the server name");
				tz_conn_free(c);
				return NULL;
			}
		}
	}
	if (!tz_conn_alpn(c, t, alpn, alpn_len, err)) {
		tz_conn_free(c);
		return NULL;
	}
	return c;
}

/* The error of a connection that could not even allocate the room for its error. */
static tz_err tz_err_nomem = {0, 0, 0, NULL, "recording an error", "out of memory", 0};

void tz_conn_free(tz_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	if (c->err != &tz_err_nomem)
		free(c->err);
	free(c->alpn_accept);
	tz_keylog_free(c);
	free(c);
}

static void tz_fail(tz_conn *c, const char *where, int ssl_error)
{
	SSL *ssl = c->ssl;
	tz_err *err;

	c->state |= TZ_FATAL;
	/* The room for an error is made when one happens: a healthy connection carries none. */
	if (c->err == NULL && (c->err = calloc(1, sizeof *c->err)) == NULL)
		c->err = &tz_err_nomem;
	if ((err = c->err) == &tz_err_nomem)
		return;
	tz_capture(err, where);
	err->verify_result = SSL_get_verify_result(ssl);
	err->verify_text = X509_verify_cert_error_string(err->verify_result);
	if (err->text[0] == '\0') {
		if (ssl_error == SSL_ERROR_ZERO_RETURN)
			snprintf(err->text, sizeof err->text, "the peer closed the connection");
		else if (ssl_error == SSL_ERROR_SYSCALL)
			snprintf(err->text, sizeof err->text, "unexpected end of the transport");
		else
			snprintf(err->text, sizeof err->text, "SSL error %d", ssl_error);
	}
}

/* Looks at a failed SSL call: 1 if it only needs more input (or room), 0 if it was fatal. */
static int tz_retryable(tz_conn *c, int r, const char *where)
{
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 1;
	tz_fail(c, where, e);
	return 0;
}

static void tz_handshake_done(tz_conn *c)
{
	SSL *ssl = c->ssl;
	c->state |= TZ_HANDSHAKE_DONE;
	c->version = SSL_version(ssl);
	c->version_name = SSL_get_version(ssl);
	c->cipher = SSL_get_cipher_name(ssl);
	c->verify_result = SSL_get_verify_result(ssl);
	c->verify_text = X509_verify_cert_error_string(c->verify_result);
	if (SSL_session_reused(ssl))
		c->state |= TZ_RESUMED;
	SSL_get0_alpn_selected(ssl, &c->alpn, &c->alpn_len);
	if (c->alpn == NULL || c->alpn_len == 0) {
		c->alpn = NULL;
		c->alpn_len = 0;
	}
}

/* How many bytes the pump moves through a memory BIO at a time once the handshake is done:
 * network bytes are fed to the read BIO, and application data written through the write BIO,
 * a chunk at a time, so that neither BIO's storage grows past about a chunk and a record,
 * whatever the size of a message. Before the handshake is done input is fed whole: flights
 * are small, and an oversized one fails the handshake. */
#define TZ_CHUNK (64 * 1024)

/* A memory BIO keeps the storage of the largest flight or chunk it ever held; tz_trim swaps a
 * drained BIO with more than TZ_BIO_KEEP bytes of storage for a fresh one. */
#define TZ_BIO_KEEP 512

/* Feeds up to limit more input bytes to the read BIO, and the end of the transport once all
 * of it is in. 0 on failure (c is then fatal). */
static int tz_feed(tz_conn *c, const unsigned char **in, size_t *in_len, size_t limit, int flags)
{
	while (*in_len > 0 && limit > 0) {
		size_t n = *in_len < limit ? *in_len : limit;
		int chunk = n > INT_MAX ? INT_MAX : (int)n;
		if (BIO_write(c->rbio, *in, chunk) != chunk) {
			tz_fail(c, "buffering network bytes", 0);
			return 0;
		}
		*in += chunk;
		*in_len -= (size_t)chunk;
		limit -= (size_t)chunk;
	}
	if (*in_len == 0 && (flags & TZ_IN_EOF) && !c->in_eof) {
		BIO_set_mem_eof_return(c->rbio, 0);
		c->in_eof = 1;
	}
	return 1;
}

/* Moves what the write BIO holds into out, after what is there; returns the bytes left. */
static size_t tz_drain(tz_conn *c, unsigned char *out, size_t out_cap)
{
	size_t pending = BIO_ctrl_pending(c->wbio);
	if (pending > 0 && c->out_len < out_cap) {
		size_t n = out_cap - c->out_len, got = 0;
		if (n > pending)
			n = pending;
		if (BIO_read_ex(c->wbio, out + c->out_len, n, &got))
			c->out_len += got;
		pending -= got;
	}
	return pending;
}

/* A server's handshake starts once the first record is whole. OpenSSL sets up about 64 KiB of
 * buffers when it starts (the record buffers, the handshake message buffer, the buffering BIO
 * of the handshake's output), so a peer that sent the first bytes of a ClientHello and stopped
 * would hold that much of the server's memory; waiting, it holds the SSL object and a few
 * bytes. Whatever is plainly not the start of a handshake record goes to OpenSSL at once, which
 * refuses it with its own error and alert. 1 when OpenSSL should run. */
static int tz_first_record_whole(tz_conn *c)
{
	char *p = NULL;
	long n;
	size_t len;

	if (c->in_eof)
		return 1;
	n = BIO_get_mem_data(c->rbio, &p);
	if (n <= 0 || p == NULL)
		return 0;
	if ((unsigned char)p[0] != SSL3_RT_HANDSHAKE)
		return 1;
	if (n < SSL3_RT_HEADER_LENGTH)
		return 0;
	len = ((size_t)(unsigned char)p[3] << 8) | (unsigned char)p[4];
	if (len > SSL3_RT_MAX_PLAIN_LENGTH)
		return 1;
	return (size_t)n >= SSL3_RT_HEADER_LENGTH + len;
}

/* Fails c for a reason of the shim's own, which OpenSSL did not report: text replaces whatever
 * OpenSSL had queued. Returns c's error, or NULL when there was no room for one. */
static tz_err *tz_fail_own(tz_conn *c, const char *where, const char *text)
{
	tz_err *err;

	ERR_clear_error();
	tz_fail(c, where, 0);
	if ((err = c->err) == &tz_err_nomem)
		return NULL;
	snprintf(err->text, sizeof err->text, "%s", text);
	err->reason = err->lib = 0;
	return err;
}

/* Fails the connection for a limit the peer went past (TZ_CAUSE_*), with text saying which.
 * OpenSSL has no call that sends an arbitrary alert; over TLS 1.3 the shim makes OpenSSL send
 * unexpected_message itself: the rest of the peer's input is dropped and a plaintext
 * change_cipher_spec record put in its place, which RFC 8446 (section 5) forbids after the
 * handshake and OpenSSL answers with that alert, encrypted under the current keys. That only
 * works at a record boundary (nothing of the peer's left inside OpenSSL). Over TLS 1.2 such a
 * record would be taken as encrypted and answered with bad_record_mac, which would be a lie:
 * there, and inside a record, the session fails without an alert. */
static void tz_fail_limit(tz_conn *c, int cause, const char *text)
{
	SSL *ssl = c->ssl;
	tz_err *err;

	(void)BIO_reset(c->rbio);
	if (SSL_version(ssl) == TLS1_3_VERSION && !SSL_has_pending(ssl)) {
		static const unsigned char ccs[] = {SSL3_RT_CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01};
		unsigned char b;
		size_t got = 0;
		if (BIO_write(c->rbio, ccs, (int)sizeof ccs) == (int)sizeof ccs)
			(void)SSL_read_ex(ssl, &b, 1, &got); /* fails, and queues the alert */
		(void)BIO_reset(c->rbio);
	}
	if ((err = tz_fail_own(c, "reading application data", text)) != NULL)
		err->cause = cause;
}

/* The application data a session must receive to earn one more KeyUpdate beyond
 * max_key_updates. */
#define TZ_KEY_UPDATE_EARNED (64 * 1024)

/* Fails c and returns 1 when the current pump has gone past one of its bounds. */
static int tz_over_limits(tz_conn *c)
{
	char text[256];
	long long budget;

	if (c->max_key_updates > 0) {
		if (c->pump_key_updates > c->max_key_updates) {
			snprintf(text, sizeof text, "%d KeyUpdate messages in one frame, more than the %d "
			         "allowed (Config.MaxKeyUpdates)", c->pump_key_updates, c->max_key_updates);
			tz_fail_limit(c, TZ_CAUSE_KEY_UPDATES, text);
			return 1;
		}
		/* Over the session, the same number, and one more per TZ_KEY_UPDATE_EARNED bytes of
		 * application data received: a peer that rekeys now and then never meets the bound,
		 * one that sends a few KeyUpdates in every frame does. */
		budget = c->max_key_updates + c->app_in / TZ_KEY_UPDATE_EARNED;
		if (c->key_updates > budget) {
			snprintf(text, sizeof text, "%lld KeyUpdate messages in the session, more than the "
			         "%lld allowed (Config.MaxKeyUpdates, plus one per %d bytes of application "
			         "data received)", c->key_updates, budget, TZ_KEY_UPDATE_EARNED);
			tz_fail_limit(c, TZ_CAUSE_KEY_UPDATES, text);
			return 1;
		}
	}
	budget = c->max_records + c->pump_in_bytes / TZ_FULL_RECORD;
	if (c->max_records > 0 && c->pump_records > budget) {
		snprintf(text, sizeof text, "%lld records in one frame of %lld bytes, more than the %lld "
		         "allowed (Config.MaxRecordsPerPump, plus one per %d bytes of the frame)",
		         c->pump_records, c->pump_in_bytes, budget, TZ_FULL_RECORD);
		tz_fail_limit(c, TZ_CAUSE_RECORDS, text);
		return 1;
	}
	return 0;
}

/* in and plain may be the same memory (a frame decrypted where it lies): input is fed before
 * the plaintext it yields is written, and plaintext is never longer than the records it came
 * from, so the plaintext written never reaches input not yet fed. */
int tz_pump(tz_conn *c, const unsigned char *in, size_t in_len, const unsigned char *app,
            size_t app_len, unsigned char *out, size_t out_cap, unsigned char *plain,
            size_t plain_cap, int flags)
{
	SSL *ssl = c->ssl;

	c->app_written = c->out_len = c->plain_len = 0;
	c->state &= ~(TZ_PLAIN_MORE | TZ_OUT_MORE | TZ_IN_PENDING);
	tz_keylog_reset(c); /* the last pump's lines were copied out after it */
	/* A pump with new input (a frame) starts new counts; one without (the caller coming back
	 * for more room, a write) goes on with those of the input it is still working through. */
	if (in_len > 0) {
		c->pump_key_updates = 0;
		c->pump_records = 0;
		c->pump_in_bytes = in_len > (size_t)LLONG_MAX ? LLONG_MAX : (long long)in_len;
	}
	if (!(c->state & TZ_FATAL)) {
		ERR_clear_error();
		tz_feed(c, &in, &in_len, (c->state & TZ_HANDSHAKE_DONE) ? TZ_CHUNK : (size_t)-1, flags);
	}
	if (!(c->state & (TZ_FATAL | TZ_HANDSHAKE_DONE)) &&
	    (c->started || !SSL_is_server(ssl) || tz_first_record_whole(c))) {
		int r;
		c->started = 1;
		r = SSL_do_handshake(ssl);
		if (r == 1)
			tz_handshake_done(c);
		else
			tz_retryable(c, r, "handshake");
	}
	if ((c->state & (TZ_FATAL | TZ_HANDSHAKE_DONE)) == TZ_HANDSHAKE_DONE) {
		while (c->app_written < app_len) {
			size_t n = app_len - c->app_written, w = 0;
			if (n > TZ_CHUNK)
				n = TZ_CHUNK;
			if (!SSL_write_ex(ssl, app + c->app_written, n, &w)) {
				tz_retryable(c, 0, "writing application data");
				break;
			}
			c->app_written += w;
			if (tz_drain(c, out, out_cap) > 0)
				break; /* out is full: the caller comes back with more room */
		}
	}
	/* SSL_read only when there is something to read: bytes that came in with this pump or
	 * before it and are still waiting in the read BIO or in OpenSSL. A failing SSL_read is not
	 * free, and on the send path there is never anything to read. */
	if ((c->state & (TZ_FATAL | TZ_HANDSHAKE_DONE | TZ_PEER_CLOSED)) == TZ_HANDSHAKE_DONE &&
	    (SSL_has_pending(ssl) || BIO_ctrl_pending(c->rbio) > 0 || in_len > 0 || (flags & TZ_IN_EOF))) {
		while (c->plain_len < plain_cap) {
			size_t got = 0;
			unsigned long events;
			int e = 0, ok;
			if (in_len > 0 && BIO_ctrl_pending(c->rbio) < TZ_CHUNK / 2 &&
			    !tz_feed(c, &in, &in_len, TZ_CHUNK, flags))
				break;
			events = c->read_events;
			ok = SSL_read_ex(ssl, plain + c->plain_len, plain_cap - c->plain_len, &got);
			if (ok) {
				c->plain_len += got;
				c->app_in += (long long)got;
			} else
				e = SSL_get_error(ssl, 0);
			/* After a read that OpenSSL took (or waits to finish), the peer's costs so far;
			 * a read OpenSSL failed keeps OpenSSL's error. */
			if ((ok || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && tz_over_limits(c)) {
				in_len = 0; /* the rest of the frame is dropped unread */
				break;
			}
			if (ok) {
				if (!SSL_has_pending(ssl) && BIO_ctrl_pending(c->rbio) == 0 && in_len == 0 &&
				    !(flags & TZ_IN_EOF))
					break;
				continue;
			}
			if (e == SSL_ERROR_WANT_READ && in_len > 0)
				continue; /* the next chunk goes in at the top */
			/* A post-handshake message was read (SSL_read returns after each one: no
			 * AUTO_RETRY) and more input waits: go on. Without progress, what waits is an
			 * incomplete record, for the next pump. */
			if (e == SSL_ERROR_WANT_READ && c->read_events != events &&
			    (SSL_has_pending(ssl) || BIO_ctrl_pending(c->rbio) > 0))
				continue;
			if (e == SSL_ERROR_ZERO_RETURN)
				c->state |= TZ_PEER_CLOSED;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				tz_fail(c, "reading application data", e);
			break;
		}
		if (c->plain_len == plain_cap &&
		    (SSL_has_pending(ssl) || BIO_ctrl_pending(c->rbio) > 0 || in_len > 0))
			c->state |= TZ_PLAIN_MORE;
	}
	/* Input the read loop did not take (the plaintext room ran out) waits in the read BIO for
	 * the next pump; after a failure or the peer's close_notify it is dropped. */
	if (in_len > 0 && !(c->state & (TZ_FATAL | TZ_PEER_CLOSED)))
		tz_feed(c, &in, &in_len, (size_t)-1, flags);
	if ((flags & TZ_SHUTDOWN) && !(c->state & (TZ_FATAL | TZ_SENT_CLOSE)) &&
	    (c->state & TZ_HANDSHAKE_DONE)) {
		ERR_clear_error();
		if (SSL_shutdown(ssl) >= 0)
			c->state |= TZ_SENT_CLOSE;
		else
			tz_retryable(c, -1, "sending close_notify");
	}
	/* Drain whatever the write BIO holds, after an error too: a queued alert still goes out. */
	if (tz_drain(c, out, out_cap) > 0)
		c->state |= TZ_OUT_MORE;
	if (SSL_has_pending(ssl) || BIO_ctrl_pending(c->rbio) > 0)
		c->state |= TZ_IN_PENDING;
	return c->state;
}

static BIO *tz_fresh_bio(BIO *b)
{
	BUF_MEM *bm = NULL;
	BIO *nb;

	if (BIO_ctrl_pending(b) > 0 || BIO_get_mem_ptr(b, &bm) <= 0 || bm == NULL || bm->max <= TZ_BIO_KEEP)
		return NULL;
	nb = BIO_new(BIO_s_mem());
	if (nb != NULL)
		BIO_set_mem_eof_return(nb, -1);
	return nb; /* NULL when out of memory: the old BIO stays, which is only larger */
}

size_t tz_bio_storage(tz_conn *c)
{
	BUF_MEM *r = NULL, *w = NULL;
	BIO_get_mem_ptr(c->rbio, &r);
	BIO_get_mem_ptr(c->wbio, &w);
	return (r ? r->max : 0) + (w ? w->max : 0);
}

void tz_trim(tz_conn *c)
{
	BIO *nb;

	tz_keylog_free(c); /* its lines were copied out after the pump that gathered them */

	if (!c->in_eof && (nb = tz_fresh_bio(c->rbio)) != NULL) {
		SSL_set0_rbio(c->ssl, nb); /* frees the old one */
		c->rbio = nb;
	}
	if ((nb = tz_fresh_bio(c->wbio)) != NULL) {
		SSL_set0_wbio(c->ssl, nb);
		c->wbio = nb;
	}
}

/* ---- peer certificates and sessions ----------------------------------------------------- */

static X509 *tz_peer_cert(tz_conn *c, int index)
{
	SSL *ssl = c->ssl;
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	int i, k = 0;

	if (leaf == NULL) {
		/* A chain that failed verification is kept without its leaf being set: a client's
		 * starts with the leaf, so the chain received is all there is to report. */
		if (chain == NULL || SSL_is_server(ssl) || index >= sk_X509_num(chain))
			return NULL;
		return sk_X509_value(chain, index);
	}
	if (index == 0)
		return leaf;
	/* A client's chain starts with the leaf, a server's does not: skip it either way. */
	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);
		if (X509_cmp(x, leaf) == 0)
			continue;
		if (++k == index)
			return x;
	}
	return NULL;
}

int tz_peer_chain_len(tz_conn *c)
{
	int n = 0;
	while (tz_peer_cert(c, n) != NULL)
		n++;
	return n;
}

int tz_peer_cert_der(tz_conn *c, int index, unsigned char *buf, int cap)
{
	X509 *x = tz_peer_cert(c, index);
	int n;
	if (x == NULL)
		return 0;
	n = i2d_X509(x, NULL);
	if (buf != NULL && n > 0 && n <= cap) {
		unsigned char *p = buf;
		n = i2d_X509(x, &p);
	}
	return n < 0 ? 0 : n;
}

int tz_session_der(tz_conn *c, unsigned char *buf, int cap)
{
	SSL_SESSION *s = SSL_get_session(c->ssl);
	int n;
	if (s == NULL || !SSL_SESSION_is_resumable(s))
		return 0;
	n = i2d_SSL_SESSION(s, NULL);
	if (buf != NULL && n > 0 && n <= cap) {
		unsigned char *p = buf;
		n = i2d_SSL_SESSION(s, &p);
	}
	return n < 0 ? 0 : n;
}

int tz_session_set(tz_conn *c, const unsigned char *der, size_t len, tz_err *err)
{
	const unsigned char *p = der;
	SSL_SESSION *s;
	int ok;

	memset(err, 0, sizeof *err);
	ERR_clear_error();
	if (len > INT_MAX) {
		snprintf(err->where, sizeof err->where, "setting the session");
		snprintf(err->text, sizeof err->text, "the session is %zu bytes long, more than INT_MAX (%d)", len, INT_MAX);
		return 0;
	}
	s = d2i_SSL_SESSION(NULL, &p, (long)len);
	ok = s != NULL && SSL_set_session(c->ssl, s);
	if (!ok)
		tz_capture(err, "setting the session");
	SSL_SESSION_free(s);
	return ok;
}

/* ---- test hooks ------------------------------------------------------------------------- */

int tz_test_flood(tz_conn *c, int n, int key_update, size_t app_len, unsigned char *out,
                  size_t out_cap)
{
	static const unsigned char data[64] = {0};
	SSL *ssl = c->ssl;
	int i;

	c->out_len = 0;
	if (c->state & TZ_FATAL)
		return 0; /* c->err says why */
	if (app_len > sizeof data || !(c->state & TZ_HANDSHAKE_DONE)) {
		tz_fail_own(c, "flooding (test)", "app_len is over 64, or the handshake has not finished");
		return 0;
	}
	ERR_clear_error();
	for (i = 0; i < n; i++) {
		size_t w;
		if (key_update) {
			int type = key_update == 2 ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
			if (!SSL_key_update(ssl, type) || SSL_do_handshake(ssl) != 1) {
				tz_fail(c, "sending a KeyUpdate (test)", 0);
				return 0;
			}
		}
		if (app_len > 0 && !SSL_write_ex(ssl, data, app_len, &w)) {
			tz_fail(c, "writing application data (test)", 0);
			return 0;
		}
		if (tz_drain(c, out, out_cap) > 0) {
			tz_fail_own(c, "flooding (test)", "out of room");
			return 0;
		}
	}
	return 1;
}
