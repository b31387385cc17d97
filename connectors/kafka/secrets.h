/* secrets.h - the secret values of kafka.* keys, kept to redact every text that comes
 * from librdkafka (config errors, delivery reports, error and log callbacks), shared by
 * the Kafka source and sink. */
#ifndef SPATE_CONNECTORS_KAFKA_SECRETS_H
#define SPATE_CONNECTORS_KAFKA_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

/* Secret kafka.* keys one client may have. */
#define SP_KAFKA_MAX_SECRETS 32

typedef struct sp_kafka_secrets {
	char *v[SP_KAFKA_MAX_SECRETS];
	size_t n;
} sp_kafka_secrets_t;

/** True for librdkafka keys (without the kafka. prefix) whose values are never shown. */
bool sp_kafka_secret_key(const char *rk_key);
/** Remember val when key (kafka.NAME) is secret. SPATE_OK, or an error naming the key
 *  (too many secrets, out of memory): a secret that could not be kept must stop the client
 *  rather than risk showing it. */
int sp_kafka_secrets_add(sp_kafka_secrets_t *s, const char *key, const char *val, char *errstr, size_t size);
/** Copy in to out (size bytes, NUL-terminated) with every secret value replaced by "***".
 *  A text that ends in the first SP_KAFKA_PARTIAL_SECRET or more bytes of a secret (cut
 *  to fit a buffer) has that tail replaced too; a match is replaced whole before `out` is
 *  cut, so cutting never shows a secret's bytes. */
void sp_kafka_redact(const sp_kafka_secrets_t *s, const char *in, char *out, size_t size);
/** Wipe and free the values. */
void sp_kafka_secrets_free(sp_kafka_secrets_t *s);

#endif
