/* awsapi.h - calls of an AWS JSON API (Kinesis, DynamoDB) on a local test server
 * (kinesalite.c, dynalite.c): a signed POST of a JSON body, the HTTP status and the
 * reply. Failures are t_require (engine.h): the helpers also run on a during thread. */
#ifndef SPATE_TESTS_AWSAPI_H
#define SPATE_TESTS_AWSAPI_H

#include <stdarg.h>

typedef struct t_aws_api {
	const char *target;       /* the X-Amz-Target prefix: "Kinesis_20131202" */
	const char *content_type; /* "application/x-amz-json-1.1" */
	const char *sigv4;        /* curl's CURLOPT_AWS_SIGV4: "aws:amz:REGION:SERVICE" */
	const char *userpwd;      /* KEY_ID:SECRET */
} t_aws_api_t;

/* POST body to endpoint as api's operation op. Returns the HTTP status (0: no answer);
 * the reply into *out (malloc'd, may be NULL) unless out is NULL. */
long t_aws_call(const t_aws_api_t *api, const char *endpoint, const char *op, const char *body, char **out);
/* t_aws_call with the body from fmt and ap; requires HTTP 200; returns the reply. */
char *t_aws_vok(const t_aws_api_t *api, const char *endpoint, const char *op, const char *fmt, va_list ap);

#endif
