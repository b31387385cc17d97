/* fuzz_kafka_redact.c - the redaction of kafka.* secrets (connectors/kafka/secrets.c),
 * which every text from librdkafka goes through before spate shows it.
 *
 * Input: a secret count n (1..4) u8, an output size u8, then n secrets (len u8 + bytes),
 * then the text. The secrets are added the way the Kafka client adds them
 * (sp_kafka_secrets_add with kafka.sasl.password and its like); the text is redacted into
 * a buffer of the given size. The oracle: the output is a NUL-terminated string that fits;
 * it holds no secret of SP_KAFKA_PARTIAL_SECRET bytes or more (a secret holding '*' is left
 * out: "***" itself may spell it), nor the tail of a text that ends in the first
 * SP_KAFKA_PARTIAL_SECRET or more bytes of one (a secret cut to fit); a text with neither
 * comes out unchanged (cut to the size).
 */
#include "connectors/kafka/secrets.h"
#include "fuzz.h"

#include <spate/spate.h>
#include <stdbool.h>

/* What the redaction counts as a cut secret (secrets.c). */
#define PARTIAL 6

static const char *const keys[] = {"kafka.sasl.password", "kafka.ssl.key.password",
                                   "kafka.sasl.oauthbearer.client.secret", "kafka.ssl.keystore.password"};

/* Occurrences of the n bytes at needle in text. */
static size_t count(const char *text, const char *needle, size_t n)
{
	size_t k = 0;
	for (const char *q = text; (q = memmem(q, strlen(q), needle, n)); q++)
		k++;
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t n = data[0] % 4 + 1, out_size = data[1];
	const uint8_t *p = data + 2, *end = data + size;
	sp_kafka_secrets_t s = {0};
	char err[256];
	for (size_t i = 0; i < n && p < end; i++) {
		size_t len = *p++;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		char *v = strndup((const char *)p, len);
		FUZZ_CHECK(v);
		p += len;
		FUZZ_CHECK(sp_kafka_secrets_add(&s, keys[i], v, err, sizeof(err)) == SPATE_OK);
		free(v);
	}
	char *in = strndup((const char *)p, (size_t)(end - p));
	char *out = malloc(out_size ? out_size : 1);
	FUZZ_CHECK(in && out);
	sp_kafka_redact(&s, in, out, out_size);
	if (out_size) {
		size_t ol = strnlen(out, out_size), il = strlen(in);
		FUZZ_CHECK(ol < out_size);
		bool any = false;
		for (size_t i = 0; i < s.n; i++) {
			size_t sl = strlen(s.v[i]);
			any |= strstr(in, s.v[i]) != NULL;
			/* the text ends in the secret's first PARTIAL or more bytes */
			for (size_t k = PARTIAL; k < sl && k <= il; k++)
				if (!memcmp(in + il - k, s.v[i], k)) {
					any = true;
					if (!strchr(s.v[i], '*') && count(in, in + il - k, k) == 1)
						FUZZ_CHECK(!memmem(out, ol, in + il - k, k));
				}
			if (sl >= PARTIAL && !strchr(s.v[i], '*'))
				FUZZ_CHECK(!strstr(out, s.v[i]));
		}
		if (!any)
			FUZZ_CHECK(!strncmp(out, in, ol) && (ol == il || ol == out_size - 1));
	}
	free(in);
	free(out);
	sp_kafka_secrets_free(&s);
	return 0;
}
