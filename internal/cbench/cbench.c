/*
 * cbench.c: the same loops as the engine's benchmarks, in plain C against OpenSSL, so that
 * the Go/cgo overhead shows as a ratio. Two SSL objects over memory BIOs in one thread; every
 * transfer moves whatever one side's write BIO holds into the other side's read BIO, as one
 * ZeroMQ frame would.
 */
#include "cbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct cb_pair {
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	unsigned char *frame;
	size_t frame_cap;
	long long server_ns; /* time spent in the server's SSL calls, by cb_handshakes */
};

static long long cb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static SSL *cb_ssl(SSL_CTX *ctx, int server)
{
	SSL *ssl = SSL_new(ctx);
	BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(r, -1);
	BIO_set_mem_eof_return(w, -1);
	SSL_set_bio(ssl, r, w);
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	return ssl;
}

/* Moves everything from's write BIO holds into to's read BIO; returns the byte count. */
static size_t cb_move(cb_pair *p, SSL *from, SSL *to)
{
	BIO *w = SSL_get_wbio(from);
	size_t n = BIO_ctrl_pending(w), got = 0;
	if (n == 0)
		return 0;
	if (n > p->frame_cap) {
		free(p->frame);
		p->frame_cap = n;
		p->frame = malloc(n);
	}
	BIO_read_ex(w, p->frame, n, &got);
	BIO_write(SSL_get_rbio(to), p->frame, (int)got);
	return got;
}

/* Writing into a memory BIO clears its retry flags, so each side's outcome is read right
 * after its own call, before any bytes move. */
static int cb_step(SSL *ssl)
{
	int r = SSL_do_handshake(ssl);
	if (r == 1)
		return 1;
	if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ)
		return 0;
	ERR_print_errors_fp(stderr);
	return -1;
}

static int cb_handshake(cb_pair *p)
{
	int i;
	for (i = 0; i < 20; i++) {
		int rc = cb_step(p->c), rs;
		long long t;
		cb_move(p, p->c, p->s);
		t = cb_now();
		rs = cb_step(p->s);
		p->server_ns += cb_now() - t;
		cb_move(p, p->s, p->c);
		if (rc < 0 || rs < 0)
			return 0;
		if (rc == 1 && rs == 1)
			return 1;
	}
	return 0;
}

cb_pair *cb_pair_new(const char *cert, const char *key, const char *suite, int tls12)
{
	cb_pair *p = calloc(1, sizeof *p);
	p->cctx = SSL_CTX_new(TLS_client_method());
	p->sctx = SSL_CTX_new(TLS_server_method());
	if (!p->cctx || !p->sctx ||
	    !SSL_CTX_use_certificate_chain_file(p->sctx, cert) ||
	    !SSL_CTX_use_PrivateKey_file(p->sctx, key, SSL_FILETYPE_PEM))
		goto fail;
	SSL_CTX_set_mode(p->cctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_mode(p->sctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (tls12) {
		SSL_CTX_set_max_proto_version(p->cctx, TLS1_2_VERSION);
		if (suite && !SSL_CTX_set_cipher_list(p->cctx, suite))
			goto fail;
	} else if (suite && !SSL_CTX_set_ciphersuites(p->cctx, suite)) {
		goto fail;
	}
	return p;
fail:
	cb_pair_free(p);
	return NULL;
}

void cb_pair_free(cb_pair *p)
{
	if (p == NULL)
		return;
	SSL_free(p->c);
	SSL_free(p->s);
	SSL_CTX_free(p->cctx);
	SSL_CTX_free(p->sctx);
	free(p->frame);
	free(p);
}

int cb_handshakes(cb_pair *p, int n)
{
	int i;
	p->server_ns = 0;
	for (i = 0; i < n; i++) {
		SSL *c = cb_ssl(p->cctx, 0), *s;
		long long t = cb_now();
		s = cb_ssl(p->sctx, 1);
		p->server_ns += cb_now() - t;
		p->c = c;
		p->s = s;
		if (!cb_handshake(p))
			return 0;
		SSL_free(c);
		t = cb_now();
		SSL_free(s);
		p->server_ns += cb_now() - t;
		p->c = p->s = NULL;
	}
	return 1;
}

int cb_bulk(cb_pair *p, size_t size, int n)
{
	unsigned char *msg = calloc(1, size), *plain = malloc(size + 1);
	int i, ok = 1;
	if (p->c == NULL) {
		p->c = cb_ssl(p->cctx, 0);
		p->s = cb_ssl(p->sctx, 1);
		if (!cb_handshake(p))
			ok = 0;
	}
	for (i = 0; ok && i < n; i++) {
		size_t w = 0, got = 0, r;
		if (!SSL_write_ex(p->c, msg, size, &w) || w != size) {
			ok = 0;
			break;
		}
		cb_move(p, p->c, p->s);
		while (got < size && SSL_read_ex(p->s, plain + got, size - got, &r))
			got += r;
		if (got != size)
			ok = 0;
	}
	free(msg);
	free(plain);
	return ok;
}

long long cb_server_ns(const cb_pair *p)
{
	return p->server_ns;
}
