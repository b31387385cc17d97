/* ktest.h - plain librdkafka clients for the Kafka tests (read a topic back, produce,
 * read a group's commits) and the child processes they run. */
#ifndef SPATE_TESTS_KTEST_H
#define SPATE_TESTS_KTEST_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One header of a consumed message (copies). */
typedef struct kt_hdr {
	char *key;
	void *value; /* NULL for a null value */
	size_t value_len;
} kt_hdr_t;

/* A consumed message (copies of its bytes). */
typedef struct kt_msg {
	int32_t partition;
	int64_t offset;
	int64_t timestamp_ms;
	void *key; /* NULL for no key */
	size_t key_len;
	void *value; /* NULL for a null value */
	size_t value_len;
	kt_hdr_t *hdrs;
	size_t hdr_cnt;
} kt_msg_t;

/* Partitions of topic (fails the test if the metadata does not come). */
int kt_partitions(const char *bootstrap, const char *topic);
/* Messages the topic holds: sum over partitions of high - low watermark. */
int64_t kt_count(const char *bootstrap, const char *topic);
/* The high watermarks of partitions 0..np-1 of topic into high. */
void kt_ends(const char *bootstrap, const char *topic, int np, int64_t *high);
/* Read every partition of topic from the beginning until `want` messages arrived; fails
 * the test if they do not within KT_CONSUME_MS. Returns a malloc'd array of want. */
kt_msg_t *kt_consume(const char *bootstrap, const char *topic, size_t want);
void kt_free(kt_msg_t *m, size_t n);
/* The value of the first header named key, or NULL (len into *len). */
const kt_hdr_t *kt_header(const kt_msg_t *m, const char *key);

/* A plain producer (not the sink). conf_kv: NULL-terminated key, value pairs applied
 * after bootstrap.servers. */
rd_kafka_t *kt_producer(const char *bootstrap, const char *const *conf_kv);
/* Produce one message and wait for its delivery report (bounded by the producer's
 * message.timeout.ms plus a grace). Returns the report's error. */
rd_kafka_resp_err_t kt_produce_sync(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                                    const char *value);
/* The group's committed offsets of partitions 0..np-1 of topic into committed (-1: none);
 * fails the test when they cannot be read. */
void kt_committed(const char *bootstrap, const char *topic, const char *group, int np, int64_t *committed);

/* Append a transaction control marker (commit, or abort when !commit) to partition of
 * topic at the leader at host:port, as a transaction coordinator does: one record batch
 * with the control and transactional attributes, written with a raw Produce request
 * (librdkafka 2.0.2's mock cluster takes a transactional producer but writes no markers
 * of its own). The marker takes one offset that no consumer hands out. Fails the test
 * when it is not acknowledged without error. */
void kt_append_control(const char *hostport, const char *topic, int32_t partition, int commit);
/* Wait up to bound_ms for the child pid to exit: its exit status (128+signal when a
 * signal ended it), or -1 when it did not exit in time (it is SIGKILLed and reaped). */
int kt_wait_exit(pid_t pid, int bound_ms);
/* Log the last part of the file DIR/FILE (a child's output) with cr_log_info. */
void kt_print_tail(const char *dir, const char *file);

#endif
