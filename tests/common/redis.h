/* redis.h - a redis-server for the tests: started on a free 127.0.0.1 port with its files
 * in a fresh directory (AOF on, appendfsync always), stopped even when a test fails (the
 * child gets SIGKILL when the test process dies). */
#ifndef SPATE_TESTS_REDIS_H
#define SPATE_TESTS_REDIS_H

#include <stdbool.h>

typedef struct t_redis {
	int pid;
	int port;
	char dir[256];
	char uri[64]; /* redis://127.0.0.1:PORT */
	/* when set, the next (re)start passes --key-load-delay: microseconds per key it
	 * loads, so a restarted server answers LOADING for that long times its keys */
	int key_load_delay_us;
	/* t_redis_start_tls: a TLS port beside the plain one (the tests look at the data
	 * through the plain one), and the PEM files in tls_dir: ca.crt (the CA the server's
	 * certificate, made for IP 127.0.0.1 only, chains to), client.crt and client.key
	 * (signed by it), other-ca.crt (a CA that signed nothing here) */
	int tls_port;
	bool tls_auth_clients;
	char tls_dir[300];
	char tls_uri[64]; /* rediss://127.0.0.1:TLS_PORT */
} t_redis_t;

/* Start redis-server (from PATH) and wait until it answers PING. Aborts the test when it
 * does not come up. */
void t_redis_start(t_redis_t *r);
/* The same with a TLS port too; auth_clients: the server asks for a client certificate
 * (Redis' default, tls-auth-clients yes). Certificates are made with the openssl command. */
void t_redis_start_tls(t_redis_t *r, bool auth_clients);
/* SIGTERM (it writes its AOF and exits) and wait; then, when restart is set, start it
 * again on the same port and directory and wait until it has loaded its AOF (unless
 * key_load_delay_us is set: then until it answers). */
void t_redis_restart(t_redis_t *r, bool restart);
/* Stop it (SIGKILL when SIGTERM is not enough) and remove its directory. */
void t_redis_stop(t_redis_t *r);
/* Run a command (printf-style, hiredis' format) and return the integer or string reply
 * as a malloc'd string ("" for nil), or NULL on error. */
char *t_redis_cmd(const t_redis_t *r, const char *fmt, ...);

#endif
