/* aws.h - the AWS JSON-protocol client shared by the Kinesis connector (connectors/kinesis)
 * and the DynamoDB checkpoint store (connectors/stores/dynamodb.c):
 *  - aws.c: the region, the endpoint (the region's unless a key says otherwise), the
 *    SigV4 scope of a service and the credentials from the standard AWS environment
 *    variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); JSON
 *    strings; error replies (their __type) and which of them are retried;
 *  - http.c: one I/O thread per connection that drives libcurl's multi-socket interface
 *    from an io_uring loop; requests go in from any thread and come back through a
 *    callback on that thread (or kin_http_call waits for one).
 * Every request is a POST of a JSON body with "X-Amz-Target: TARGET.Op" and the
 * service's JSON content type, signed by libcurl (CURLOPT_AWS_SIGV4).
 *
 * Secrets: the key id, the secret key and the session token are checked for shape (a
 * colon or a space in a key id would change what libcurl sends) and never written to a
 * message: errors name the variable only.
 */
#ifndef SPATE_CONNECTORS_AWS_H
#define SPATE_CONNECTORS_AWS_H

#include "sp_spi.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	KIN_REQUEST_TIMEOUT_MS = 30000, /* one HTTP request, connection included (default) */
	KIN_CONNECT_TIMEOUT_MS = 10000,
	KIN_MAX_CONNS = 32, /* connections to the endpoint at once */
};

/* ---- aws.c: settings ------------------------------------------------------------------ */

typedef struct kin_aws {
	char stream[256]; /* Kinesis: the name (from an ARN: the part after "stream/") */
	char arn[512];    /* Kinesis: the ARN when one was given, else "" */
	char region[64];
	char endpoint[512]; /* scheme://host[:port], no trailing '/' */
	char sigv4[128];    /* CURLOPT_AWS_SIGV4: "aws:amz:REGION:SERVICE" */
	/* the X-Amz-Target prefix ("Kinesis_20131202") and the Content-Type
	 * ("application/x-amz-json-1.1") of every request */
	char target[64];
	char ctype[64];
	/* secrets: never in a message */
	char userpwd[512];    /* "ACCESS_KEY_ID:SECRET" for CURLOPT_USERPWD */
	char token_hdr[4200]; /* "X-Amz-Security-Token: ..." or "" */
} kin_aws_t;

/** The settings of service ("kinesis", "dynamodb") in region, at endpoint (an http:// or
 *  https:// URL; "" for the region's), with the credentials of the environment. The
 *  region must be set and valid (region_key names it in errors), endpoint_key names the
 *  endpoint, what names the user ("kinesis", "dynamodb store") in the credentials'
 *  errors. a->target and a->ctype are the caller's to set. */
int kin_aws_setup(kin_aws_t *a, const char *service, const char *region_key, const char *region,
                  const char *endpoint_key, const char *endpoint, const char *what, char *errstr,
                  size_t size);
/** The region named by the environment (AWS_REGION, else AWS_DEFAULT_REGION), or "". */
const char *kin_aws_env_region(void);
/** Wipe the secrets. */
void kin_aws_clear(kin_aws_t *a);
/** A JSON string of s (quotes included) appended into buf at *len; false when full. */
bool kin_json_str(char *buf, size_t size, size_t *len, const char *s, size_t n);

/** What an error reply says: AWS's error type ("ExpiredIteratorException", without a
 *  "prefix#") and message. */
typedef struct kin_error {
	char type[128];
	char message[512];
} kin_error_t;

/** Parse an error body. Always fills e (type "" when the body names none). */
void kin_parse_error(const char *body, size_t len, kin_error_t *e);
/** The error types that are retried with backoff (throttling, limits, internal). */
bool kin_error_retryable(long status, const char *type);

/* ---- http.c: the I/O thread ------------------------------------------------------------ */

typedef struct kin_http kin_http_t;
typedef struct kin_req kin_req_t;

/** Called on the I/O thread when r finished (status, body or curl_err set). */
typedef void (*kin_done_fn)(kin_req_t *r);

struct kin_req {
	/* in: the operation (the X-Amz-Target suffix) and the JSON body (owned: freed with
	 * the request) */
	const char *op;
	char *body;
	size_t body_len;
	kin_done_fn done;
	void *arg;
	int64_t timeout_ms; /* the whole request; 0: KIN_REQUEST_TIMEOUT_MS */
	/* out */
	long status; /* HTTP status, 0 when no reply came */
	int curl_rc; /* CURLE_OK, or the transport error */
	char curl_err[256];
	char *resp; /* the reply body (NUL-terminated), owned by the request */
	size_t resp_len, resp_cap;
	int64_t sent_ms, done_ms;
	/* private to http.c */
	void *easy;
	void *hdrs;
	kin_req_t *next, *prev;
	/* for synchronous calls */
	bool finished;
	/* the caller's */
	int kind;
	void *shard;
	uint64_t gen;
};

/** Start the I/O thread for a (its settings are read, not copied: they must outlive it). */
kin_http_t *kin_http_new(const kin_aws_t *a, char *errstr, size_t size);
/** Hand r to the I/O thread. @locality any thread */
void kin_http_submit(kin_http_t *h, kin_req_t *r);
/** Submit r and wait until it finished. @locality any thread but the I/O thread */
void kin_http_call(kin_http_t *h, kin_req_t *r);
/** Stop the thread; requests still running are ended with curl_rc set. */
void kin_http_free(kin_http_t *h);
/** Free r and what it owns. */
void kin_req_free(kin_req_t *r);
/** A new request of op with body (taken over). NULL when out of memory. */
kin_req_t *kin_req_new(const char *op, char *body, size_t len);

#endif
