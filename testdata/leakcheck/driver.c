/*
 * driver.c: the shim (ssl.c) driven from C alone, for valgrind and LeakSanitizer: thousands of
 * sessions opened, used, failed and closed, with no Go runtime in the process to hide or
 * confuse a leak. `make leakcheck` builds and runs it.
 *
 *   driver CERTDIR CYCLES
 *
 * Each cycle is one of: a session that exchanges messages of several sizes and closes with
 * close_notify, resuming the previous good session; a client that refuses the server's
 * certificate (another CA); a server fed garbage; a handshake abandoned half-way. Exit status
 * 0 when every cycle ended as it should.
 */
#include "../../ssl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOM (4 << 20)

static unsigned char *out, *plain, *app;

struct side {
	tz_conn *c;
	unsigned char *pending; /* what its last pump produced, for the other side */
	size_t pending_len;
	size_t got;             /* plaintext bytes received */
};

/* ALPN lists in the wire format: the connections' own (the ZeroMQ layer's framed protocol),
 * and the contexts' (Config.NextProtos), so that both copies are made and freed. */
static const unsigned char conn_alpn[] = "\x08tlszmq/1";
static const unsigned char ctx_alpn[] = "\x02h2\x01x";

static tz_ctx *ctx(const char *dir, int server, const char *ca)
{
	char cert[512], key[512], cafile[512];
	tz_ctx_cfg cfg;
	tz_err err;
	tz_ctx *t;

	memset(&cfg, 0, sizeof cfg);
	cfg.server = server;
	cfg.security_level = -1;
	cfg.alpn = ctx_alpn;
	cfg.alpn_len = sizeof ctx_alpn - 1;
	if (server) {
		snprintf(cert, sizeof cert, "%s/server-ec.crt", dir);
		snprintf(key, sizeof key, "%s/server-ec.key", dir);
		cfg.cert_file = cert;
		cfg.key_file = key;
	} else {
		snprintf(cafile, sizeof cafile, "%s/%s", dir, ca);
		cfg.ca_file = cafile;
		cfg.verify = 1;
	}
	t = tz_ctx_new(&cfg, &err);
	if (t == NULL) {
		fprintf(stderr, "driver: context: %s: %s\n", err.where, err.text);
		exit(2);
	}
	return t;
}

/* One pump of s with the other side's pending bytes and app; keeps what it produced. */
static int pump(struct side *s, struct side *from, const unsigned char *data, size_t len, int flags)
{
	int state = tz_pump(s->c, from ? from->pending : NULL, from ? from->pending_len : 0, data, len,
	                    out, ROOM, plain, ROOM, flags);
	if (from)
		from->pending_len = 0;
	s->got += s->c->plain_len;
	if (s->c->out_len > 0) {
		s->pending = realloc(s->pending, s->c->out_len);
		memcpy(s->pending, out, s->c->out_len);
		s->pending_len = s->c->out_len;
	}
	return state;
}

static void done(struct side *s)
{
#ifndef INJECT_LEAK /* -DINJECT_LEAK shows that the check catches a connection never freed */
	tz_conn_free(s->c);
#endif
	free(s->pending);
	memset(s, 0, sizeof *s);
}

/* Runs the handshake; 1 when both sides finished, 0 when one failed. */
static int handshake(struct side *c, struct side *s)
{
	int i;
	pump(c, NULL, NULL, 0, 0);
	for (i = 0; i < 20; i++) {
		int ss = pump(s, c, NULL, 0, 0);
		int cs = pump(c, s, NULL, 0, 0);
		if ((cs | ss) & TZ_FATAL)
			return 0;
		if ((cs & ss & TZ_HANDSHAKE_DONE) && c->pending_len == 0 && s->pending_len == 0)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	tz_ctx *server, *client, *stranger;
	unsigned char *session = NULL;
	int session_len = 0, cycles, i, failures = 0, resumed = 0;

	if (argc != 3 || (cycles = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: driver CERTDIR CYCLES\n");
		return 2;
	}
	if (!tz_init())
		return 2;
	out = malloc(ROOM);
	plain = malloc(ROOM);
	app = calloc(1, 1 << 20);
	server = ctx(argv[1], 1, NULL);
	client = ctx(argv[1], 0, "ca.crt");
	stranger = ctx(argv[1], 0, "other-ca.crt");

	for (i = 0; i < cycles; i++) {
		struct side c = {0}, s = {0};
		tz_err err;
		int kind = i % 4, ok = 0;

		c.c = tz_conn_new(kind == 1 ? stranger : client, "localhost", 1, conn_alpn, sizeof conn_alpn - 1, &err);
		s.c = tz_conn_new(server, NULL, 0, i % 8 < 4 ? conn_alpn : NULL, sizeof conn_alpn - 1, &err);
		if (c.c == NULL || s.c == NULL) {
			fprintf(stderr, "driver: connection: %s\n", err.text);
			return 2;
		}
		switch (kind) {
		case 0: { /* a good session: resume, exchange, close */
			static const size_t sizes[] = {1, 100, 16384, 70000, 1 << 20};
			size_t k, n = i % 40 == 0 ? 5 : 4, want = 0; /* 1 MiB now and then */
			if (session != NULL && !tz_session_set(c.c, session, session_len, &err))
				break;
			if (!handshake(&c, &s))
				break;
			resumed += (c.c->state & TZ_RESUMED) != 0;
			/* The server's own protocol first, else the context's first that the client offers. */
			if (i % 8 < 4 ? c.c->alpn_len != 8 || memcmp(c.c->alpn, "tlszmq/1", 8) != 0
			              : c.c->alpn_len != 2 || memcmp(c.c->alpn, "h2", 2) != 0)
				break;
			for (k = 0; k < n; k++) {
				pump(&c, NULL, app, sizes[k], 0);
				pump(&s, &c, NULL, 0, 0);
				pump(&s, NULL, app, sizes[k], 0);
				pump(&c, &s, NULL, 0, 0);
				want += sizes[k];
			}
			pump(&c, NULL, NULL, 0, TZ_SHUTDOWN);
			pump(&s, &c, NULL, 0, 0);
			free(session);
			session_len = tz_session_der(c.c, NULL, 0);
			session = malloc(session_len > 0 ? session_len : 1);
			if (session_len > 0)
				tz_session_der(c.c, session, session_len);
			ok = c.got == want && s.got == want && (s.c->state & TZ_PEER_CLOSED);
			break;
		}
		case 1: /* the client refuses the server's certificate */
			ok = !handshake(&c, &s) && (c.c->state & TZ_FATAL) && c.c->err != NULL && c.c->err->verify_result != 0;
			break;
		case 2: { /* garbage to the server */
			static unsigned char junk[] = "GET / HTTP/1.0\r\n\r\n\x16\x03\x01\xff\xff";
			c.pending = malloc(sizeof junk);
			memcpy(c.pending, junk, sizeof junk);
			c.pending_len = sizeof junk;
			ok = (pump(&s, &c, NULL, 0, 0) & TZ_FATAL) != 0;
			break;
		}
		case 3: /* abandoned after the ServerHello */
			pump(&c, NULL, NULL, 0, 0);
			pump(&s, &c, NULL, 0, 0);
			ok = !(c.c->state & TZ_HANDSHAKE_DONE);
			break;
		}
		if (!ok) {
			failures++;
			fprintf(stderr, "driver: cycle %d (kind %d) did not end as it should\n", i, kind);
		}
		done(&c);
		done(&s);
	}
	free(session);
	tz_ctx_free(stranger);
	tz_ctx_free(client);
	tz_ctx_free(server);
	free(out);
	free(plain);
	free(app);
	printf("driver: %d cycles, %d resumed, %d failures\n", cycles, resumed, failures);
	return failures ? 1 : 0;
}
