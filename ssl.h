/*
 * ssl.h: the C shim between Go and OpenSSL 3.
 *
 * Every symbol carries the tz_ prefix; the Go side sees only opaque handles (tz_ctx, tz_conn)
 * and plain result fields. Each entry point does a whole step in one call and captures
 * OpenSSL's error queue into a tz_err before it returns, so that no second cgo crossing (on a
 * possibly different OS thread) is needed to learn why something failed. C never keeps a
 * pointer to Go memory past the call it was passed to.
 */
#ifndef TLSZMQ_SSL_H
#define TLSZMQ_SSL_H

#include <openssl/opensslv.h>
#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "tlszmq needs OpenSSL 3.0 or newer (Debian: libssl-dev from bookworm or later)"
#endif

#include <stddef.h>
#include <stdint.h>

#define TZ_ERR_TEXT 2048

/* What went wrong, filled by the failing call itself. */
typedef struct tz_err {
	int reason;               /* ERR_GET_REASON() of the first queued error, 0 if none */
	int lib;                  /* ERR_GET_LIB() of the first queued error */
	long verify_result;       /* X509_V_OK or the certificate verification failure */
	const char *verify_text;  /* X509_verify_cert_error_string(verify_result), static */
	char where[512];          /* the step that failed, e.g. "loading the certificate file",
	                             with the file it names where that helps */
	char text[TZ_ERR_TEXT];   /* OpenSSL's reasons, oldest first, one a line */
	int cause;                /* TZ_CAUSE_* when the shim itself failed the connection, else 0 */
} tz_err;

/* Why the shim failed a connection that OpenSSL had no complaint about (tz_err.cause). */
#define TZ_CAUSE_KEY_UPDATES 1  /* more KeyUpdate messages than max_key_updates allows */
#define TZ_CAUSE_RECORDS     2  /* more records in one pump than max_records allows */

/* The plaintext a full record carries: the records-per-pump budget grows by one for each
 * TZ_FULL_RECORD bytes of a pump's input, so that frames of full records never reach it. */
#define TZ_FULL_RECORD 16384

typedef struct tz_ctx tz_ctx;

/* Everything a context is made of, in one call. Strings may be NULL; PEM blocks have lengths. */
typedef struct tz_ctx_cfg {
	int server;               /* 1: TLS_server_method, 0: TLS_client_method */
	int min_version;          /* TLS1_2_VERSION, TLS1_3_VERSION, 0 for OpenSSL's default */
	int max_version;
	int verify;               /* client: 0 none, 1 verify the server; server: 0 none,
	                             1 request a certificate, 2 require one */
	int security_level;       /* -1 keeps OpenSSL's configured level */
	int max_key_updates;      /* KeyUpdate messages one pump may process, and the session
	                             beyond what its data earns; 0 or less: no bound */
	long long max_records;    /* records one pump may process beyond one per TZ_FULL_RECORD
	                             bytes of its input, 0 or less: no bound */
	const unsigned char *sid_ctx; size_t sid_ctx_len; /* servers: the session id context (at
	                             most 32 bytes), derived from the verification policy; NULL:
	                             a fixed one */
	int no_tickets;           /* 1 disables session tickets */
	const char *cipher_list;  /* TLS 1.2 and below, OpenSSL cipher-list syntax */
	const char *ciphersuites; /* TLS 1.3 */
	const char *groups;       /* key exchange groups, e.g. "X25519:P-256" */
	const char *cert_file;    /* PEM, leaf first then its chain */
	const char *key_file;
	const char *key_password; /* of an encrypted private key, or the PIN of key_uri's token;
	                             NULL: none, and no prompt ever */
	/* A private key in a hardware module: a PKCS#11 URI ("pkcs11:token=...;object=...;
	 * type=private"), loaded through OpenSSL's pkcs11 ENGINE (libp11, Debian's
	 * libengine-pkcs11-openssl) instead of key_file or key_pem, and checked against the
	 * certificate. The engine is set up once per process and kept (see tz_use_key_uri): it
	 * loads one PKCS#11 module, the first key_module given (NULL: libp11's default, the
	 * PKCS11_MODULE_PATH environment variable or p11-kit-proxy), and a later context that
	 * names another module is refused. */
	const char *key_uri;      /* NULL: none. Without module-path (the caller strips it) */
	const char *key_uri_name; /* key_uri as errors show it, its pin-value hidden */
	const char *key_module;   /* the PKCS#11 module's path, NULL: libp11's default */
	const char *ca_file;
	const char *ca_dir;
	const unsigned char *cert_pem; size_t cert_pem_len;
	const unsigned char *key_pem;  size_t key_pem_len;
	const unsigned char *ca_pem;   size_t ca_pem_len;
	const unsigned char *ticket_key; size_t ticket_key_len; /* 80 bytes, servers; NULL: random */
	int fips;                 /* 1: a library context of its own with the fips provider */
	const char *fips_config;  /* OpenSSL configuration file that sets the fips provider up */
	const char *fips_modules; /* directory holding fips.so, NULL for OpenSSL's default */
	const unsigned char *alpn; size_t alpn_len; /* the ALPN protocols (Config.NextProtos) in
	                             the wire format, each name after its length byte; NULL:
	                             none. A client offers them in this order; a server selects
	                             the first of them that the client offers, and fails a
	                             handshake whose client offers ALPN but none of them (see
	                             tz_conn_new for the protocols of a connection's own).
	                             Copied: the context owns its copy. */
	int keylog;               /* 1: gather each connection's secrets in NSS key-log format
	                             (tz_conn.keylog), for Config.KeyLogWriter */
	/* Revocation: CRLs are read when the context is made, and with one or more of them the
	 * peer's whole chain is checked (X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL):
	 * every CA in it, the root included, needs its CRL. A CRL that has expired (its
	 * nextUpdate is past) or is not valid yet is refused here, naming its file. */
	const char *crl_file;     /* PEM, one or more CRLs; NULL: none */
	const char *crl_dir;      /* an OpenSSL hashed directory: its files named <hash>.rN (as
	                             `openssl rehash` names CRLs) are read now, not on demand as
	                             ca_dir's certificates are; NULL: none */
	/* A server context whose cfg has no ticket_key takes the session ticket keys of this one
	 * (a reload keeps them, so that sessions resume across it); NULL: OpenSSL's random keys. */
	const tz_ctx *ticket_keys_from;
} tz_ctx_cfg;

/* Pump flags in (tz_pump's flags argument). */
#define TZ_IN_EOF    0x01  /* the transport has ended: no more bytes will come */
#define TZ_SHUTDOWN  0x02  /* send close_notify */

/* Pump state out (tz_conn.state). */
#define TZ_HANDSHAKE_DONE 0x01
#define TZ_PEER_CLOSED    0x02  /* close_notify received */
#define TZ_SENT_CLOSE     0x04  /* close_notify sent */
#define TZ_FATAL          0x08  /* a fatal error happened; err holds it (sticky) */
#define TZ_PLAIN_MORE     0x10  /* the plaintext buffer was filled: call again with more room */
#define TZ_OUT_MORE       0x20  /* the output buffer was filled: call again with more room */
#define TZ_RESUMED        0x40  /* the handshake resumed a session */
#define TZ_IN_PENDING     0x80  /* bytes wait in the read BIO or in OpenSSL for the next pump */

/* One TLS endpoint: an SSL object and its two memory BIOs. The Go side reads the result fields
 * after each tz_pump; they live in C memory. */
typedef struct tz_conn {
	void *ssl;                /* SSL *, owns rbio and wbio */
	void *rbio;               /* network bytes in (BIO_write), read by SSL */
	void *wbio;               /* network bytes out, written by SSL */
	int state;                /* TZ_* flags above */
	int in_eof;               /* the transport has ended: rbio answers end of stream */
	int verify_peer;          /* 1 when the peer's certificate is verified */
	int version;              /* SSL_version() once the handshake is done */
	const char *cipher;       /* negotiated cipher name, static in OpenSSL */
	const char *version_name; /* "TLSv1.3", static in OpenSSL */
	int alert_sent;           /* last alert description sent, -1 if none */
	int alert_sent_fatal;
	int alert_recv;           /* last alert description received, -1 if none */
	int alert_recv_fatal;
	/* results of the last pump */
	size_t app_written;       /* bytes of application data SSL_write took */
	size_t out_len;           /* bytes drained from the write BIO into out */
	size_t plain_len;         /* plaintext bytes SSL_read put into plain */
	long verify_result;       /* SSL_get_verify_result() once known */
	const char *verify_text;
	const unsigned char *alpn;/* the negotiated ALPN protocol, alpn_len bytes with no NUL; NULL
	                             for none. OpenSSL's memory, set once the handshake is done and
	                             unchanged until the connection is freed (no renegotiation). */
	unsigned int alpn_len;
	tz_err *err;              /* the fatal error once there is one (TZ_FATAL), else NULL */
	/* What the peer's input costs, counted by a message callback in C as OpenSSL reads it
	 * (tz_msg_cb) and checked after each SSL_read against the bounds (tz_over_limits). */
	int max_key_updates;      /* the bounds, from the context */
	long long max_records;
	/* The current pump's counts: reset by a pump that brings new input (see tz_pump). */
	int pump_key_updates;     /* KeyUpdate messages read */
	long long pump_records;   /* record headers read */
	long long pump_in_bytes;  /* input bytes the pump was given */
	/* The session's counts, never reset. */
	unsigned long read_events;/* records and handshake messages read: a change is progress */
	long long key_updates;    /* KeyUpdate messages read */
	long long app_in;         /* application data bytes read */
	int started;              /* SSL_do_handshake has run at least once */
	/* A server's ALPN protocols, in the wire format, in order of preference: the connection's
	 * own (tz_conn_new) then the context's; NULL: none, and no ALPN is negotiated. Owned by
	 * the connection, read by the ALPN select callback. */
	unsigned char *alpn_accept;
	size_t alpn_accept_len;
	int alpn_strict;          /* the context has protocols of its own: a client that offers
	                             ALPN but none of alpn_accept fails (no_application_protocol) */
	/* The key log (tz_ctx_cfg.keylog): the NSS key-log lines OpenSSL's keylog callback gave
	 * during the last pump, each ending in '\n'; keylog_len is 0 when none. OpenSSL calls a
	 * C callback (tz_keylog_cb) that appends here; nothing calls into Go. The Go side copies
	 * the lines out after each tz_pump; the next pump starts an empty buffer. At most
	 * TZ_KEYLOG_MAX bytes: lines past it are dropped and counted. Owned by the connection
	 * (tz_trim and tz_conn_free free it), wiped before it is let go. */
	char *keylog;
	size_t keylog_len;
	size_t keylog_cap;
	unsigned long keylog_dropped; /* lines dropped over the connection's life, never reset */
} tz_conn;

/* The most key-log bytes one pump gathers: a handshake gives at most five lines of under 200
 * bytes (TLS 1.3), one (TLS 1.2). */
#define TZ_KEYLOG_MAX 4096

/* Bytes the C heap has in use (glibc's mallinfo2: arenas and mmapped blocks), -1 where the C
 * library cannot tell. For the leak tests. */
long long tz_c_heap_in_use(void);

/* Initialises OpenSSL once, without an atexit cleanup. 1 on success. */
int tz_init(void);

/* Contexts. */
tz_ctx *tz_ctx_new(const tz_ctx_cfg *cfg, tz_err *err);
void tz_ctx_free(tz_ctx *ctx);
int tz_ctx_fips(const tz_ctx *ctx);  /* 1 when the context runs with fips=yes on the fips provider */
int tz_default_fips(void);           /* 1 when the process's default library context is in FIPS mode */
/* The DER of the context's own (leaf) certificate, into buf when it fits in cap bytes. Returns
 * its length (more than cap: call again with a larger buf), 0 when the context has none. */
int tz_ctx_cert_der(const tz_ctx *ctx, unsigned char *buf, int cap);

/* Connections. server_name may be NULL: no SNI and no host name check. alpn (alpn_len bytes,
 * the wire format, NULL for none) lists ALPN protocols of the connection's own, preferred
 * before the context's: a client offers them first, a server selects them first. A client
 * that offers none of a server's own protocols still gets through: only the context's
 * protocols (Config.NextProtos) make a handshake without a common protocol fail. The list is
 * copied, never kept. */
tz_conn *tz_conn_new(tz_ctx *ctx, const char *server_name, int verify_name,
                     const unsigned char *alpn, size_t alpn_len, tz_err *err);
void tz_conn_free(tz_conn *c);

/* The pump: feed in_len network bytes, SSL_write app_len bytes of application data (once the
 * handshake is done), run the handshake and the SSL_read loop into plain, and drain the write
 * BIO into out. One call, whatever happened; results land in c's fields. Returns c->state. */
int tz_pump(tz_conn *c, const unsigned char *in, size_t in_len, const unsigned char *app,
            size_t app_len, unsigned char *out, size_t out_cap, unsigned char *plain,
            size_t plain_cap, int flags);

/* Lets an idle connection's memory BIOs go when they hold more storage than a small message
 * needs (a memory BIO keeps the storage of the largest chunk it held); fresh, empty ones take
 * their place. Nothing is lost: only drained BIOs are swapped. The key-log buffer goes too
 * (the Go side copies its lines out after every pump). */
void tz_trim(tz_conn *c);
/* The storage both memory BIOs hold, in bytes (for the tests). */
size_t tz_bio_storage(tz_conn *c);

/* Peer certificates: count, then each one's DER (returns its length; call with buf NULL to
 * learn it). index 0 is the peer's own certificate. */
int tz_peer_chain_len(tz_conn *c);
int tz_peer_cert_der(tz_conn *c, int index, unsigned char *buf, int cap);

/* Sessions for resumption: DER of the current session (length, or 0 if none; buf NULL asks
 * the length) and setting one before the handshake (1 on success, 0 with err filled). */
int tz_session_der(tz_conn *c, unsigned char *buf, int cap);
int tz_session_set(tz_conn *c, const unsigned char *der, size_t len, tz_err *err);

/* The options of a context's SSL_CTX (SSL_CTX_get_options), for the tests. */
uint64_t tz_ctx_options(const tz_ctx *ctx);

/* For the tests only: makes an established connection send n times a KeyUpdate (when
 * key_update is 1: update_not_requested, 2: update_requested) followed by app_len bytes of
 * application data in a record of their own (none when app_len is 0), the way a hostile peer
 * floods; the records go into out (c->out_len bytes). 1 on success, 0 with c->err set. */
int tz_test_flood(tz_conn *c, int n, int key_update, size_t app_len, unsigned char *out,
                  size_t out_cap);

#endif
