/* rdperf_shim.h - the few internal helpers librdkafka's example rdkafka_performance.c
 * takes from librdkafka's source tree (rd.h, rdtime.h), which Debian's librdkafka-dev
 * does not install. Written for the Kafka benchmark (benchmarks/kafka_consume.sh); the
 * example itself is compiled from /usr/share/doc/librdkafka-dev/examples at run time. */
#ifndef SPATE_RDPERF_SHIM_H
#define SPATE_RDPERF_SHIM_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
typedef int64_t rd_ts_t;
#define RD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define rd_snprintf snprintf
static inline rd_ts_t rd_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (rd_ts_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
#endif
