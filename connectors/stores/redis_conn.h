/* redis_conn.h - one connection to a Redis server for the redis store: plain TCP through
 * hiredis' own context, or TLS (rediss://) through OpenSSL with hiredis' protocol reader
 * and writer (Debian 12's hiredis 0.14 has no TLS of its own).
 * @locality one thread at a time (the store's) */
#ifndef SPATE_STORES_REDIS_CONN_H
#define SPATE_STORES_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rconn rconn_t;

typedef struct rconn_opts {
	const char *host;
	int port;
	int64_t timeout_ms; /* the connect (TCP and TLS handshake), and each command */
	bool tls;
	/* TLS only, each may be NULL or "": the CA certificates (PEM) the server's
	 * certificate must chain to (NULL: the system's), and the client's certificate
	 * chain and key (PEM) for a server that asks for one (Redis' tls-auth-clients,
	 * on by default) */
	const char *ca;
	const char *cert;
	const char *key;
} rconn_opts_t;

/* Connect (and, for TLS, complete the handshake and verify the server's certificate
 * against the host name or IP address). NULL with errstr set (without the store's name:
 * the caller prefixes it). */
rconn_t *rconn_open(const rconn_opts_t *o, char *errstr, size_t size);
/* One command and its reply (freeReplyObject()), or NULL when the connection failed:
 * rconn_errstr() says why, and the connection is unusable (close it). */
redisReply *rconn_cmd(rconn_t *c, int argc, const char **argv, const size_t *lens);
const char *rconn_errstr(const rconn_t *c);
void rconn_close(rconn_t *c);

#endif
