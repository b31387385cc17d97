/* secrets.c - redaction of kafka.* secret values (see secrets.h). */
#include "secrets.h"

#include "sp_spi.h"

#include <stdlib.h>
#include <string.h>

/* The least number of a secret's leading bytes at the end of a text that count as a cut
 * secret (fewer say too little to be worth garbling text). */
#define SP_KAFKA_PARTIAL_SECRET 6
#define SP_KAFKA_REDACTED "***"
#define SP_KAFKA_PREFIX "kafka."

bool sp_kafka_secret_key(const char *k)
{
	return strstr(k, "password") || strstr(k, "secret") || strstr(k, "key") || strstr(k, "oauthbearer");
}

int sp_kafka_secrets_add(sp_kafka_secrets_t *s, const char *key, const char *val, char *errstr, size_t size)
{
	size_t plen = strlen(SP_KAFKA_PREFIX);
	const char *rk = strncmp(key, SP_KAFKA_PREFIX, plen) ? key : key + plen;
	if (!sp_kafka_secret_key(rk) || !*val)
		return SPATE_OK;
	if (s->n == SP_KAFKA_MAX_SECRETS)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: more than %d secret kafka.* keys", key,
		              SP_KAFKA_MAX_SECRETS);
	if (!(s->v[s->n] = strdup(val)))
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", key);
	s->n++;
	return SPATE_OK;
}

void sp_kafka_redact(const sp_kafka_secrets_t *s, const char *in, char *out, size_t size)
{
	size_t o = 0, left = strlen(in);
	if (!size)
		return;
	while (left && o + 1 < size) {
		size_t hit = 0;
		for (size_t i = 0; i < s->n && !hit; i++) {
			size_t n = strlen(s->v[i]);
			if (n && n <= left && !memcmp(in, s->v[i], n))
				hit = n;
			else if (n > left && left >= SP_KAFKA_PARTIAL_SECRET && !memcmp(in, s->v[i], left))
				hit = left;
		}
		if (hit) {
			for (const char *r = SP_KAFKA_REDACTED; *r && o + 1 < size; r++)
				out[o++] = *r;
			in += hit;
			left -= hit;
		} else {
			out[o++] = *in++;
			left--;
		}
	}
	out[o] = 0;
}

void sp_kafka_secrets_free(sp_kafka_secrets_t *s)
{
	for (size_t i = 0; i < s->n; i++) {
		explicit_bzero(s->v[i], strlen(s->v[i]));
		free(s->v[i]);
	}
	s->n = 0;
}
