/* aws.c - what the AWS JSON-protocol clients share (aws.h): the region, the endpoint (the
 * region's unless a key says otherwise), the SigV4 scope and the credentials from the
 * standard AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN); JSON strings; error replies. Signing is libcurl's
 * (CURLOPT_AWS_SIGV4).
 *
 * Secrets: the key id, the secret key and the session token are checked for shape here
 * (a colon or a space in a key id would change what libcurl sends) and never written to
 * a message: errors name the variable only.
 */
#include "aws.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Access key ids are upper-case letters and digits (AKIA..., ASIA...), 16 to 128 long
 * (IAM's AccessKeyId pattern). */
#define KIN_KEYID_MIN 16
#define KIN_KEYID_MAX 128
/* A secret key or session token: printable ASCII without spaces. */
#define KIN_SECRET_MAX 256
#define KIN_TOKEN_MAX  4096

static bool printable_no_space(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

static int credentials(kin_aws_t *a, const char *what, char *errstr, size_t size)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID");
	const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *token = getenv("AWS_SESSION_TOKEN");
	if (!id || !*id || !secret || !*secret)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
		              "AWS_SESSION_TOKEN for temporary credentials) in the environment%s",
		              what,
		              (!id || !*id) ? " (AWS_ACCESS_KEY_ID is not set)"
		                            : " (AWS_SECRET_ACCESS_KEY is not set)");
	size_t n = strlen(id);
	bool ok = n >= KIN_KEYID_MIN && n <= KIN_KEYID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = isupper((unsigned char)id[i]) || isdigit((unsigned char)id[i]);
	if (!ok)
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "%s: credentials: AWS_ACCESS_KEY_ID is malformed (%d to %d upper-case letters and "
		    "digits; the value is not shown)",
		    what, KIN_KEYID_MIN, KIN_KEYID_MAX);
	if (!printable_no_space(secret, KIN_SECRET_MAX))
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "%s: credentials: AWS_SECRET_ACCESS_KEY is malformed (printable characters without "
		    "spaces, at most %d; the value is not shown)",
		    what, KIN_SECRET_MAX);
	if (token && *token && !printable_no_space(token, KIN_TOKEN_MAX))
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: credentials: AWS_SESSION_TOKEN is malformed (printable characters without "
		              "spaces, at most %d; the value is not shown)",
		              what, KIN_TOKEN_MAX);
	snprintf(a->userpwd, sizeof(a->userpwd), "%s:%s", id, secret);
	if (token && *token)
		snprintf(a->token_hdr, sizeof(a->token_hdr), "X-Amz-Security-Token: %s", token);
	return SPATE_OK;
}

const char *kin_aws_env_region(void)
{
	const char *r = getenv("AWS_REGION");
	if (!r || !*r)
		r = getenv("AWS_DEFAULT_REGION");
	return r ? r : "";
}

int kin_aws_setup(kin_aws_t *a, const char *service, const char *region_key, const char *region,
                  const char *endpoint_key, const char *ep, const char *what, char *errstr, size_t size)
{
	if (!*region)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: must be set (or AWS_REGION)", region_key);
	for (const char *q = region; *q; q++)
		if (!isalnum((unsigned char)*q) && *q != '-')
			return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: \"%s\" is not a region name",
			              region_key, region);
	if (strlen(region) >= sizeof(a->region))
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: \"%s\" is too long", region_key, region);
	snprintf(a->region, sizeof(a->region), "%s", region);
	snprintf(a->sigv4, sizeof(a->sigv4), "aws:amz:%s:%s", a->region, service);
	if (*ep) {
		if (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8))
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "%s: \"%s\" is not an http:// or https:// URL", endpoint_key, ep);
		if (strlen(ep) >= sizeof(a->endpoint))
			return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: the URL is too long",
			              endpoint_key);
		snprintf(a->endpoint, sizeof(a->endpoint), "%s", ep);
		size_t n = strlen(a->endpoint);
		while (n > 8 && a->endpoint[n - 1] == '/')
			a->endpoint[--n] = 0;
	} else {
		/* the regional endpoint; the China regions are under amazonaws.com.cn */
		snprintf(a->endpoint, sizeof(a->endpoint), "https://%s.%s.amazonaws.com%s", service,
		         a->region, !strncmp(a->region, "cn-", 3) ? ".cn" : "");
	}
	return credentials(a, what, errstr, size);
}

void kin_aws_clear(kin_aws_t *a)
{
	/* volatile: the compiler may not drop the wipe of memory about to be freed */
	volatile char *p = a->userpwd;
	for (size_t i = 0; i < sizeof(a->userpwd); i++)
		p[i] = 0;
	p = a->token_hdr;
	for (size_t i = 0; i < sizeof(a->token_hdr); i++)
		p[i] = 0;
}

bool kin_json_str(char *buf, size_t size, size_t *len, const char *s, size_t n)
{
	size_t l = *len;
	if (l + 2 > size)
		return false;
	buf[l++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (l + 7 > size)
			return false;
		if (ch == '"' || ch == '\\') {
			buf[l++] = '\\';
			buf[l++] = (char)ch;
		} else if (ch < 0x20) {
			l += (size_t)snprintf(buf + l, size - l, "\\u%04x", ch);
		} else {
			buf[l++] = (char)ch;
		}
	}
	if (l + 2 > size)
		return false;
	buf[l++] = '"';
	buf[l] = 0;
	*len = l;
	return true;
}

/* ---- errors --------------------------------------------------------------------------- */

void kin_parse_error(const char *body, size_t len, kin_error_t *e)
{
	e->type[0] = e->message[0] = 0;
	json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	if (!j)
		return;
	const char *t = json_string_value(json_object_get(j, "__type"));
	if (t) {
		const char *hash = strrchr(t, '#'); /* "com.amazonaws...#ResourceNotFoundException" */
		snprintf(e->type, sizeof(e->type), "%s", hash ? hash + 1 : t);
	}
	const char *m = json_string_value(json_object_get(j, "message"));
	if (!m)
		m = json_string_value(json_object_get(j, "Message"));
	if (m)
		snprintf(e->message, sizeof(e->message), "%s", m);
	json_decref(j);
}

bool kin_error_retryable(long status, const char *type)
{
	if (status >= 500 || status == 429)
		return true;
	return !strcmp(type, "ProvisionedThroughputExceededException") ||
	       !strcmp(type, "LimitExceededException") || !strcmp(type, "ThrottlingException") ||
	       !strcmp(type, "InternalFailure") || !strcmp(type, "ServiceUnavailable") ||
	       !strcmp(type, "KMSThrottlingException");
}
