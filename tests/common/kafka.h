/* kafka.h - Criterion helpers for Kafka tests: run mock-kafka as a child process.
 *
 * t_kafka_start() runs tests/tools/mock-kafka (the path in SPATE_MOCK_KAFKA, set by
 * tests/meson.build) with its stdin and stdout on pipes, waits for its bootstrap file
 * as the readiness signal, and returns a handle; t_kafka_cmd() sends one fault command
 * and returns its answer; t_kafka_stop() stops it (SIGTERM, then SIGKILL after a bound).
 * The child runs with --stdin, so if the test process dies without stopping it, the
 * pipe closes and the cluster exits by itself. Register t_kafka_fini as the suite's
 * .fini so a failing test (cr_assert jumps out) still stops every cluster it started.
 *
 * Never skips: a missing or broken mock-kafka fails the test.
 */
#ifndef SPATE_TESTS_KAFKA_H
#define SPATE_TESTS_KAFKA_H

#include <stddef.h>
#include <sys/types.h>

typedef struct t_kafka t_kafka_t;

/* Start a mock cluster of `brokers` brokers with the topics in `topics` (a
 * NULL-terminated list of "NAME:PARTITIONS[:REPLICATION]", may be NULL). Fails the test
 * if the tool is missing, exits early, or is not ready within T_KAFKA_READY_MS. */
t_kafka_t *t_kafka_start(int brokers, const char *const *topics);
/* The bootstrap list ("127.0.0.1:PORT,..."), valid until t_kafka_stop. */
const char *t_kafka_bootstrap(const t_kafka_t *k);
/* Send one command (printf-style, no newline) and wait for its answer line. Returns 0
 * for "ok", -1 for "error: ..." (the answer, without a newline, into answer when not
 * NULL). Fails the test when no answer comes within T_KAFKA_ANSWER_MS. */
int t_kafka_cmd(t_kafka_t *k, char *answer, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* t_kafka_cmd that must answer "ok" (fails the test otherwise). */
void t_kafka_ok(t_kafka_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stop it: SIGTERM, wait up to T_KAFKA_STOP_MS, then SIGKILL. Returns the exit status
 * (128+signal when killed by a signal). Frees k. */
int t_kafka_stop(t_kafka_t *k);
/* Stop every cluster still running in this process (Criterion .fini). */
void t_kafka_fini(void);
/* The mock-kafka path the helper runs (SPATE_MOCK_KAFKA, else the build tree's). */
const char *t_kafka_tool(void);

#endif
