/* redis_conn.c - one connection to a Redis server, plain or TLS (redis_conn.h).
 *
 * Plain connections are hiredis' own (redisConnectWithTimeout, redisCommandArgv). TLS
 * connections are a non-blocking socket, an OpenSSL client session over two memory BIOs,
 * and hiredis' protocol writer (redisFormatCommandArgv) and reader (redisReader): the
 * session's bytes are moved to and from the socket here, with send(MSG_NOSIGNAL) (a
 * server that went away must never raise SIGPIPE in the process that embeds us) and
 * poll() bounded by the command's deadline. The server's certificate must chain to the
 * CA certificates (redis.tls.ca, else the system's) and name the host (its DNS name, or
 * its IP address when the URI names one); TLS 1.2 at least.
 * @locality one thread at a time (the store's) */
#include "redis_conn.h"

#include "sp_spi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rconn {
	redisContext *plain; /* a plain connection; the rest is TLS's */
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rbio, *wbio; /* the bytes from and for the socket (owned by ssl once bios_set) */
	bool bios_set;
	redisReader *reader;
	int64_t timeout_ms;
	bool answered; /* a plain connection: the server answered a command */
	char host[304];
	char err[320];
	char why[200];
};

static void set_err(rconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(rconn_t *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

/* The oldest error of OpenSSL's queue (this thread's), or what else went wrong. */
static const char *ssl_why(rconn_t *c, const char *otherwise)
{
	unsigned long e = ERR_get_error();
	if (!e)
		return otherwise;
	ERR_error_string_n(e, c->why, sizeof(c->why));
	ERR_clear_error();
	return c->why;
}

/* ---- the socket, with deadlines -------------------------------------------------------- */

static int wait_fd(rconn_t *c, short ev, int64_t until)
{
	for (;;) {
		int64_t left = until - sp_now_ms();
		if (left <= 0) {
			set_err(c, "timed out after %" PRId64 " ms (redis.timeout.ms)", c->timeout_ms);
			return -1;
		}
		struct pollfd p = {.fd = c->fd, .events = ev};
		int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			set_err(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static int send_all(rconn_t *c, const char *p, size_t n, int64_t until)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(c, POLLOUT, until))
				return -1;
		} else if (w < 0 && errno != EINTR) {
			set_err(c, "send: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Send what the TLS session wrote. */
static int flush_out(rconn_t *c, int64_t until)
{
	char buf[16384];
	while (BIO_ctrl_pending(c->wbio) > 0) {
		int n = BIO_read(c->wbio, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (send_all(c, buf, (size_t)n, until))
			return -1;
	}
	return 0;
}

/* Hand the TLS session what the socket holds (waiting for something). */
static int fill_in(rconn_t *c, int64_t until)
{
	char buf[16384];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (BIO_write(c->rbio, buf, (int)n) != (int)n) {
				set_err(c, "out of memory");
				return -1;
			}
			return 0;
		}
		if (n == 0) {
			set_err(c, "the server closed the connection");
			return -1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (wait_fd(c, POLLIN, until))
				return -1;
		} else if (errno != EINTR) {
			set_err(c, "recv: %s", strerror(errno));
			return -1;
		}
	}
}

/* After an SSL call that answered r: move the bytes; 1 done (r > 0), 0 call it again,
 * -1 failed (c->err says why). */
static int tls_step(rconn_t *c, int r, const char *what, int64_t until)
{
	if (flush_out(c, until))
		return -1;
	if (r > 0)
		return 1;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return fill_in(c, until) ? -1 : 0;
	if (e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		set_err(c, "TLS %s: the server closed the connection", what);
		return -1;
	}
	long v = SSL_get_verify_result(c->ssl);
	if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		set_err(c, "TLS %s: the server's certificate does not name %s (%s): connect by a name or address "
		           "its certificate holds",
		        what, c->host, X509_verify_cert_error_string(v));
		return -1;
	}
	if (v != X509_V_OK) {
		set_err(c, "TLS %s: the server's certificate is not trusted: %s (redis.tls.ca names the CA "
		           "certificates to trust)",
		        what, X509_verify_cert_error_string(v));
		return -1;
	}
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
		set_err(c, "TLS %s: the server asks for a client certificate: set redis.tls.cert and "
		           "redis.tls.key (%s)",
		        what, ssl_why(c, "certificate required"));
		return -1;
	}
	set_err(c, "TLS %s: %s", what, ssl_why(c, "failed"));
	return -1;
}

/* ---- connecting ------------------------------------------------------------------------ */

static int tcp_connect(rconn_t *c, const rconn_opts_t *o, int64_t until)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", o->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int g = getaddrinfo(o->host, port, &hints, &res);
	if (g) {
		set_err(c, "cannot resolve %s: %s", o->host, gai_strerror(g));
		return -1;
	}
	set_err(c, "cannot connect to %s:%d", o->host, o->port);
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		c->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (c->fd < 0)
			continue;
		int rc = connect(c->fd, a->ai_addr, a->ai_addrlen);
		if (rc < 0 && errno == EINPROGRESS && !wait_fd(c, POLLOUT, until)) {
			int soerr = 0;
			socklen_t l = sizeof(soerr);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
			rc = soerr ? -1 : 0;
			errno = soerr;
		}
		if (rc == 0) {
			int one = 1;
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(res);
			return 0;
		}
		if (errno)
			set_err(c, "cannot connect to %s:%d: %s", o->host, o->port, strerror(errno));
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	return -1;
}

static int tls_setup(rconn_t *c, const rconn_opts_t *o)
{
	ERR_clear_error();
	if (!(c->ctx = SSL_CTX_new(TLS_client_method()))) {
		set_err(c, "TLS: %s", ssl_why(c, "cannot create a context"));
		return -1;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca && *o->ca) {
		if (SSL_CTX_load_verify_locations(c->ctx, o->ca, NULL) != 1) {
			set_err(c, "redis.tls.ca %s: cannot read CA certificates: %s", o->ca, ssl_why(c, "failed"));
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
		set_err(c, "TLS: cannot read the system's CA certificates: %s", ssl_why(c, "failed"));
		return -1;
	}
	bool has_cert = o->cert && *o->cert, has_key = o->key && *o->key;
	if (has_cert != has_key) {
		set_err(c, "redis.tls.cert and redis.tls.key go together: %s is set, %s is not",
		        has_cert ? "redis.tls.cert" : "redis.tls.key", has_cert ? "redis.tls.key" : "redis.tls.cert");
		return -1;
	}
	if (has_cert) {
		if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert) != 1) {
			set_err(c, "redis.tls.cert %s: cannot read the certificate: %s", o->cert, ssl_why(c, "failed"));
			return -1;
		}
		if (SSL_CTX_use_PrivateKey_file(c->ctx, o->key, SSL_FILETYPE_PEM) != 1 &&
		    ERR_GET_REASON(ERR_peek_error()) != X509_R_KEY_VALUES_MISMATCH) {
			set_err(c, "redis.tls.key %s: cannot read the key: %s", o->key, ssl_why(c, "failed"));
			return -1;
		}
		ERR_clear_error();
		if (SSL_CTX_check_private_key(c->ctx) != 1) {
			set_err(c, "redis.tls.key %s does not match the certificate of redis.tls.cert %s", o->key,
			        o->cert);
			return -1;
		}
	}
	if (!(c->rbio = BIO_new(BIO_s_mem())) || !(c->wbio = BIO_new(BIO_s_mem())) || !(c->ssl = SSL_new(c->ctx))) {
		set_err(c, "TLS: %s", ssl_why(c, "out of memory"));
		return -1;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	c->bios_set = true;
	/* the name the certificate must carry: an IP address when the URI names one */
	unsigned char ip[16];
	if (inet_pton(AF_INET, o->host, ip) == 1 || inet_pton(AF_INET6, o->host, ip) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host) != 1) {
			set_err(c, "TLS: cannot check the certificate for %s", o->host);
			return -1;
		}
	} else if (SSL_set1_host(c->ssl, o->host) != 1 || SSL_set_tlsext_host_name(c->ssl, o->host) != 1) {
		set_err(c, "TLS: cannot check the certificate for %s", o->host);
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	return 0;
}

rconn_t *rconn_open(const rconn_opts_t *o, char *errstr, size_t size)
{
	rconn_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(errstr, size, "out of memory");
		return NULL;
	}
	c->fd = -1;
	c->timeout_ms = o->timeout_ms;
	snprintf(c->host, sizeof(c->host), "%s", o->host);
	struct timeval tv = {o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000};
	if (!o->tls) {
		c->plain = redisConnectWithTimeout(o->host, o->port, tv);
		if (!c->plain || c->plain->err) {
			snprintf(errstr, size, "cannot connect: %s", c->plain ? c->plain->errstr : "out of memory");
			rconn_close(c);
			return NULL;
		}
		redisSetTimeout(c->plain, tv);
		return c;
	}
	int64_t until = sp_now_ms() + o->timeout_ms;
	if (tls_setup(c, o) || tcp_connect(c, o, until))
		goto fail;
	for (;;) {
		ERR_clear_error();
		int s = tls_step(c, SSL_connect(c->ssl), "handshake", until);
		if (s < 0) {
			if (strncmp(c->err, "TLS", 3)) { /* the socket's: the server never answered in TLS */
				char why[sizeof(c->err)];
				memcpy(why, c->err, sizeof(why));
				set_err(c, "TLS handshake: %s (is %d a TLS port? rediss:// needs Redis' tls-port)", why,
				        o->port);
			}
			goto fail;
		}
		if (s > 0)
			break;
	}
	if (!(c->reader = redisReaderCreate())) {
		set_err(c, "out of memory");
		goto fail;
	}
	return c;
fail:
	snprintf(errstr, size, "%s", c->err);
	rconn_close(c);
	return NULL;
}

/* A write failed: when the server said why before it closed the connection (a TLS alert:
 * with TLS 1.3 a server that wants a client certificate refuses after the client's
 * handshake is done), say that instead. */
static void explain_reset(rconn_t *c)
{
	char buf[4096];
	ssize_t n;
	while ((n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		BIO_write(c->rbio, buf, (int)n);
	if (BIO_ctrl_pending(c->rbio) == 0)
		return;
	ERR_clear_error();
	int r = SSL_read(c->ssl, buf, sizeof(buf));
	if (r <= 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_SSL &&
	    ERR_GET_REASON(ERR_peek_error()) == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)
		set_err(c, "TLS: the server asks for a client certificate: set redis.tls.cert and redis.tls.key (%s)",
		        ssl_why(c, "certificate required"));
	ERR_clear_error();
}

redisReply *rconn_cmd(rconn_t *c, int argc, const char **argv, const size_t *lens)
{
	if (c->plain) {
		redisReply *rep = redisCommandArgv(c->plain, argc, argv, lens);
		if (!rep)
			set_err(c, "%s%s", c->plain->errstr[0] ? c->plain->errstr : "connection lost",
			        c->answered ? "" : " (at the first command: is it a TLS port? then name it rediss://)");
		c->answered = c->answered || rep;
		return rep;
	}
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (n < 0) {
		set_err(c, "out of memory");
		return NULL;
	}
	int64_t until = sp_now_ms() + c->timeout_ms;
	for (int off = 0; off < n;) {
		ERR_clear_error();
		int r = SSL_write(c->ssl, cmd + off, n - off);
		int s = tls_step(c, r, "write", until);
		if (s < 0) {
			redisFreeCommand(cmd);
			explain_reset(c);
			return NULL;
		}
		if (s > 0)
			off += r;
	}
	redisFreeCommand(cmd);
	for (;;) {
		void *reply = NULL;
		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
			set_err(c, "protocol error: %s", c->reader->errstr);
			return NULL;
		}
		if (reply)
			return reply;
		char buf[16384];
		ERR_clear_error();
		int r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0) {
			if (redisReaderFeed(c->reader, buf, (size_t)r) != REDIS_OK) {
				set_err(c, "protocol error: %s", c->reader->errstr);
				return NULL;
			}
		} else if (tls_step(c, r, "read", until) < 0) {
			return NULL;
		}
	}
}

const char *rconn_errstr(const rconn_t *c)
{
	return c->err[0] ? c->err : "connection lost";
}

void rconn_close(rconn_t *c)
{
	if (!c)
		return;
	if (c->plain)
		redisFree(c->plain);
	if (c->reader)
		redisReaderFree(c->reader);
	SSL_free(c->ssl); /* and its BIOs, once they are its */
	if (!c->bios_set) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
