/* awsapi.c - calls of an AWS JSON API on a local test server (awsapi.h). */
#include "tests/common/awsapi.h"

#include "tests/common/engine.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
	char *p;
	size_t n;
} buf_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
	buf_t *b = userp;
	size_t n = size * nmemb;
	char *q = realloc(b->p, b->n + n + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, ptr, n);
	b->p = q;
	b->n += n;
	b->p[b->n] = 0;
	return n;
}

long t_aws_call(const t_aws_api_t *api, const char *endpoint, const char *op, const char *body, char **out)
{
	CURL *e = curl_easy_init();
	t_require(e);
	char target[128], ctype[128], url[600];
	snprintf(target, sizeof(target), "X-Amz-Target: %s.%s", api->target, op);
	snprintf(ctype, sizeof(ctype), "Content-Type: %s", api->content_type);
	snprintf(url, sizeof(url), "%s/", endpoint);
	struct curl_slist *h = curl_slist_append(NULL, ctype);
	h = curl_slist_append(h, target);
	buf_t b = {0};
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, api->sigv4);
	curl_easy_setopt(e, CURLOPT_USERPWD, api->userpwd);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	long status = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	if (out)
		*out = b.p;
	else
		free(b.p);
	return status;
}

char *t_aws_vok(const t_aws_api_t *api, const char *endpoint, const char *op, const char *fmt, va_list ap)
{
	char *body;
	t_require(vasprintf(&body, fmt, ap) >= 0);
	char *out = NULL;
	long st = t_aws_call(api, endpoint, op, body, &out);
	t_require(st == 200, "%s %s: HTTP %ld: %s", op, body, st, out ? out : "(no body)");
	free(body);
	return out;
}
