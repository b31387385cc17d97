/* aws.c - the Kinesis connection settings: the stream (a name, or an ARN whose region and
 * name are read from it), the region, the endpoint (the region's unless kinesis.endpoint
 * says otherwise) and the credentials from the standard AWS environment variables
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Signing is libcurl's
 * (CURLOPT_AWS_SIGV4, service "kinesis").
 *
 * Secrets: the key id, the secret key and the session token are checked for shape here
 * (a colon or a space in a key id would change what libcurl sends) and never written to
 * a message: errors name the variable only.
 */
#include "kinesis.h"

#include <ctype.h>
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

static int credentials(kin_aws_t *a, char *errstr, size_t size)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID");
	const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *token = getenv("AWS_SESSION_TOKEN");
	if (!id || !*id || !secret || !*secret)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis: credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
		              "AWS_SESSION_TOKEN for temporary credentials) in the environment%s",
		              (!id || !*id) ? " (AWS_ACCESS_KEY_ID is not set)"
		                            : " (AWS_SECRET_ACCESS_KEY is not set)");
	size_t n = strlen(id);
	bool ok = n >= KIN_KEYID_MIN && n <= KIN_KEYID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = isupper((unsigned char)id[i]) || isdigit((unsigned char)id[i]);
	if (!ok)
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "kinesis: credentials: AWS_ACCESS_KEY_ID is malformed (%d to %d upper-case letters and "
		    "digits; the value is not shown)",
		    KIN_KEYID_MIN, KIN_KEYID_MAX);
	if (!printable_no_space(secret, KIN_SECRET_MAX))
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "kinesis: credentials: AWS_SECRET_ACCESS_KEY is malformed (printable characters without "
		    "spaces, at most %d; the value is not shown)",
		    KIN_SECRET_MAX);
	if (token && *token && !printable_no_space(token, KIN_TOKEN_MAX))
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "kinesis: credentials: AWS_SESSION_TOKEN is malformed (printable characters without "
		    "spaces, at most %d; the value is not shown)",
		    KIN_TOKEN_MAX);
	snprintf(a->userpwd, sizeof(a->userpwd), "%s:%s", id, secret);
	if (token && *token)
		snprintf(a->token_hdr, sizeof(a->token_hdr), "X-Amz-Security-Token: %s", token);
	return SPATE_OK;
}

/* arn:aws:kinesis:REGION:ACCOUNT:stream/NAME */
static int parse_arn(kin_aws_t *a, const char *arn, char *region, size_t rsize, char *errstr, size_t size)
{
	const char *f[6];
	const char *p = arn;
	for (int i = 0; i < 5; i++) {
		f[i] = p;
		p = strchr(p, ':');
		if (!p)
			goto bad;
		p++;
	}
	f[5] = p;
	if (strncmp(f[2], "kinesis:", 8) || strncmp(f[5], "stream/", 7) || !f[5][7])
		goto bad;
	size_t rn = (size_t)(f[4] - f[3]) - 1;
	if (!rn || rn >= rsize)
		goto bad;
	memcpy(region, f[3], rn);
	region[rn] = 0;
	if (strlen(f[5] + 7) >= sizeof(a->stream))
		goto bad;
	snprintf(a->stream, sizeof(a->stream), "%s", f[5] + 7);
	snprintf(a->arn, sizeof(a->arn), "%s", arn);
	return SPATE_OK;
bad:
	return sp_err(
	    errstr, size, SPATE_ERR_INVALID,
	    "kinesis.stream: \"%s\" is not a stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)", arn);
}

static bool stream_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

int kin_aws_init(kin_aws_t *a, const spate_conf_t *c, const char *stream_arg, char *errstr, size_t size)
{
	memset(a, 0, sizeof(*a));
	const char *stream = stream_arg && *stream_arg ? stream_arg : sp_conf_str(c, "kinesis.stream");
	if (!*stream)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis.stream: must be set (a stream name or ARN)");
	char arn_region[64] = "";
	if (!strncmp(stream, "arn:", 4)) {
		int rc = parse_arn(a, stream, arn_region, sizeof(arn_region), errstr, size);
		if (rc)
			return rc;
	} else {
		if (!stream_name_ok(stream))
			return sp_err(
			    errstr, size, SPATE_ERR_INVALID,
			    "kinesis.stream: \"%s\" is not a stream name (1 to 128 of A-Z a-z 0-9 _ . -)",
			    stream);
		snprintf(a->stream, sizeof(a->stream), "%s", stream);
	}
	const char *region = sp_conf_str(c, "kinesis.region");
	if (!*region)
		region = arn_region;
	if (!*region)
		region = getenv("AWS_REGION") ? getenv("AWS_REGION") : "";
	if (!*region)
		region = getenv("AWS_DEFAULT_REGION") ? getenv("AWS_DEFAULT_REGION") : "";
	if (!*region)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis.region: must be set (or AWS_REGION, or a stream ARN) for stream %s",
		              a->stream);
	for (const char *q = region; *q; q++)
		if (!isalnum((unsigned char)*q) && *q != '-')
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "kinesis.region: \"%s\" is not a region name", region);
	snprintf(a->region, sizeof(a->region), "%s", region);
	snprintf(a->sigv4, sizeof(a->sigv4), "aws:amz:%s:kinesis", a->region);
	const char *ep = sp_conf_str(c, "kinesis.endpoint");
	if (*ep) {
		if (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8))
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "kinesis.endpoint: \"%s\" is not an http:// or https:// URL", ep);
		snprintf(a->endpoint, sizeof(a->endpoint), "%s", ep);
		size_t n = strlen(a->endpoint);
		while (n > 8 && a->endpoint[n - 1] == '/')
			a->endpoint[--n] = 0;
	} else {
		/* the regional endpoint; the China regions are under amazonaws.com.cn */
		snprintf(a->endpoint, sizeof(a->endpoint), "https://kinesis.%s.amazonaws.com%s", a->region,
		         !strncmp(a->region, "cn-", 3) ? ".cn" : "");
	}
	return credentials(a, errstr, size);
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

void kin_aws_stream_member(const kin_aws_t *a, char *buf, size_t size)
{
	if (a->arn[0])
		snprintf(buf, size, "\"StreamARN\":\"%s\"", a->arn);
	else
		snprintf(buf, size, "\"StreamName\":\"%s\"", a->stream);
}
