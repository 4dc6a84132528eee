#ifndef TLSZMQ_CBENCH_H
#define TLSZMQ_CBENCH_H
#include <stddef.h>

typedef struct cb_pair cb_pair;

/* A client and a server context; suite is a TLS 1.3 suite, or with tls12 a TLS 1.2 cipher. */
cb_pair *cb_pair_new(const char *cert, const char *key, const char *suite, int tls12);
void cb_pair_free(cb_pair *p);
/* n full handshakes, each with new SSL objects; 1 on success. */
int cb_handshakes(cb_pair *p, int n);
/* The time the last cb_handshakes spent in the server's SSL_new, handshake steps and SSL_free. */
long long cb_server_ns(const cb_pair *p);
/* n messages of size bytes, client to server, each SSL_write, moved, SSL_read; 1 on success. */
int cb_bulk(cb_pair *p, size_t size, int n);
#endif
