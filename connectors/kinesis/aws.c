/* aws.c - the Kinesis connection settings: the stream (a name, or an ARN whose region and
 * name are read from it), then the region, the endpoint (the region's unless
 * kinesis.endpoint says otherwise) and the credentials as ../aws/aws.c reads them
 * (service "kinesis").
 */
#include "kinesis.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		region = kin_aws_env_region();
	if (!*region)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis.region: must be set (or AWS_REGION, or a stream ARN) for stream %s",
		              a->stream);
	snprintf(a->target, sizeof(a->target), "Kinesis_20131202");
	snprintf(a->ctype, sizeof(a->ctype), "application/x-amz-json-1.1");
	return kin_aws_setup(a, "kinesis", "kinesis.region", region, "kinesis.endpoint",
	                     sp_conf_str(c, "kinesis.endpoint"), "kinesis", errstr, size);
}

void kin_aws_stream_member(const kin_aws_t *a, char *buf, size_t size)
{
	if (a->arn[0])
		snprintf(buf, size, "\"StreamARN\":\"%s\"", a->arn);
	else
		snprintf(buf, size, "\"StreamName\":\"%s\"", a->stream);
}
