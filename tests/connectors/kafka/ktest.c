/* ktest.c - plain librdkafka clients for the Kafka tests (read a topic back, produce,
 * read a group's commits) and the child processes they run.
 *
 * The reader is a consumer without a group: it assigns every partition at the
 * beginning and copies what it gets, so a test checks what the broker holds, not what
 * some group committed.
 */
#include "engine/engine.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	/* how long reading a topic back may take (ASan on a loaded machine) */
	KT_CONSUME_MS = 120000,
	/* metadata and watermark queries */
	KT_QUERY_MS = 10000,
	/* consumer poll timeout */
	KT_POLL_MS = 100,
	/* a synchronous produce waits for its report this long past message.timeout.ms */
	KT_REPORT_GRACE_MS = 10000,
	KT_DEFAULT_MESSAGE_TIMEOUT_MS = 300000,
	/* kt_wait_exit looks this often */
	KT_WAIT_STEP_MS = 20,
	/* kt_print_tail logs at most this much of the file's end */
	KT_TAIL_BYTES = 3000,
};

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
	char err[512];
	cr_assert(rd_kafka_conf_set(c, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s=%s: %s", k, v, err);
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *c, const char *bootstrap)
{
	char err[512];
	set(c, "bootstrap.servers", bootstrap);
	rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
	cr_assert(rk, "rd_kafka_new: %s", err);
	return rk;
}

int kt_partitions(const char *bootstrap, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), bootstrap);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, KT_QUERY_MS);
	cr_assert(!e, "metadata of %s: %s", topic, rd_kafka_err2str(e));
	cr_assert_eq(md->topic_cnt, 1);
	cr_assert(!md->topics[0].err, "topic %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
	int n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return n;
}

/* The watermarks of partitions 0..np-1 (low may be NULL). */
static void watermarks(const char *bootstrap, const char *topic, int np, int64_t *low, int64_t *high)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	set(c, "enable.auto.commit", "false");
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, c, bootstrap);
	for (int p = 0; p < np; p++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, KT_QUERY_MS);
		cr_assert(!e, "watermarks of %s/%d: %s", topic, p, rd_kafka_err2str(e));
		if (low)
			low[p] = lo;
		high[p] = hi;
	}
	rd_kafka_destroy(rk);
}

int64_t kt_count(const char *bootstrap, const char *topic)
{
	int parts = kt_partitions(bootstrap, topic);
	int64_t *lo = calloc((size_t)parts, sizeof(*lo)), *hi = calloc((size_t)parts, sizeof(*hi));
	cr_assert(lo && hi);
	watermarks(bootstrap, topic, parts, lo, hi);
	int64_t total = 0;
	for (int p = 0; p < parts; p++)
		total += hi[p] - lo[p];
	free(lo);
	free(hi);
	return total;
}

void kt_ends(const char *bootstrap, const char *topic, int np, int64_t *high)
{
	watermarks(bootstrap, topic, np, NULL, high);
}

static void *dup_bytes(const void *p, size_t n)
{
	if (!p)
		return NULL;
	void *d = malloc(n + 1);
	cr_assert(d);
	memcpy(d, p, n);
	((char *)d)[n] = 0; /* handy for string compares */
	return d;
}

static void copy_msg(kt_msg_t *o, const rd_kafka_message_t *m)
{
	o->partition = m->partition;
	o->offset = m->offset;
	o->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
	o->key = dup_bytes(m->key, m->key_len);
	o->key_len = m->key_len;
	o->value = dup_bytes(m->payload, m->len);
	o->value_len = m->len;
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
		return;
	o->hdr_cnt = rd_kafka_header_cnt(h);
	o->hdrs = calloc(o->hdr_cnt, sizeof(*o->hdrs));
	cr_assert(o->hdrs);
	for (size_t i = 0; i < o->hdr_cnt; i++) {
		const char *name;
		const void *val;
		size_t len;
		cr_assert(!rd_kafka_header_get_all(h, i, &name, &val, &len));
		o->hdrs[i].key = strdup(name);
		o->hdrs[i].value = dup_bytes(val, len);
		o->hdrs[i].value_len = len;
	}
}

kt_msg_t *kt_consume(const char *bootstrap, const char *topic, size_t want)
{
	int parts = kt_partitions(bootstrap, topic);
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	set(c, "group.id", "spate-test-reader"); /* librdkafka wants one even for assign(); nothing commits */
	set(c, "enable.auto.commit", "false");
	set(c, "enable.partition.eof", "false");
	set(c, "fetch.wait.max.ms", "10");
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, c, bootstrap);
	rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++)
		rd_kafka_topic_partition_list_add(tl, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_resp_err_t e = rd_kafka_assign(rk, tl);
	cr_assert(!e, "assign %s: %s", topic, rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(tl);

	kt_msg_t *out = calloc(want ? want : 1, sizeof(*out));
	cr_assert(out);
	size_t got = 0;
	int64_t deadline = sp_now_ms() + KT_CONSUME_MS;
	while (got < want && sp_now_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, KT_POLL_MS);
		if (!m)
			continue;
		cr_assert(!m->err, "consume %s: %s", topic, rd_kafka_message_errstr(m));
		copy_msg(&out[got++], m);
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	cr_assert_eq(got, want, "read %zu of %zu messages of %s within %d ms", got, want, topic,
	             KT_CONSUME_MS);
	return out;
}

void kt_free(kt_msg_t *m, size_t n)
{
	for (size_t i = 0; m && i < n; i++) {
		free(m[i].key);
		free(m[i].value);
		for (size_t j = 0; j < m[i].hdr_cnt; j++) {
			free(m[i].hdrs[j].key);
			free(m[i].hdrs[j].value);
		}
		free(m[i].hdrs);
	}
	free(m);
}

const kt_hdr_t *kt_header(const kt_msg_t *m, const char *key)
{
	for (size_t i = 0; i < m->hdr_cnt; i++)
		if (!strcmp(m->hdrs[i].key, key))
			return &m->hdrs[i];
	return NULL;
}

typedef struct report {
	bool done;
	rd_kafka_resp_err_t err;
} report_t;

static void on_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	report_t *r = m->_private;
	if (!r) /* produced without kt_produce_sync: the caller checks by other means */
		return;
	r->done = true;
	r->err = m->err;
}

rd_kafka_t *kt_producer(const char *bootstrap, const char *const *conf_kv)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	for (size_t i = 0; conf_kv && conf_kv[i]; i += 2)
		set(c, conf_kv[i], conf_kv[i + 1]);
	rd_kafka_conf_set_dr_msg_cb(c, on_report);
	return client(RD_KAFKA_PRODUCER, c, bootstrap);
}

rd_kafka_resp_err_t kt_produce_sync(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                                    const char *value)
{
	report_t r = {0};
	rd_kafka_resp_err_t e = rd_kafka_producev(
	    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
	    RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0), RD_KAFKA_V_OPAQUE(&r),
	    RD_KAFKA_V_END);
	if (e)
		return e;
	char buf[32];
	size_t n = sizeof(buf);
	int64_t tmo = KT_DEFAULT_MESSAGE_TIMEOUT_MS;
	if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.timeout.ms", buf, &n) == RD_KAFKA_CONF_OK)
		tmo = atoll(buf);
	int64_t deadline = sp_now_ms() + tmo + KT_REPORT_GRACE_MS;
	while (!r.done && sp_now_ms() < deadline)
		rd_kafka_poll(rk, KT_POLL_MS);
	cr_assert(r.done, "no delivery report within %lld ms", (long long)(tmo + KT_REPORT_GRACE_MS));
	return r.err;
}

void kt_committed(const char *bootstrap, const char *topic, const char *group, int np, int64_t *committed)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	set(c, "group.id", group); /* OffsetFetch only: this client never joins the group */
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, c, bootstrap);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(l, topic, i);
	rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, KT_QUERY_MS);
	cr_assert(!e, "committed offsets of %s in group %s: %s", topic, group, rd_kafka_err2str(e));
	for (int i = 0; i < np; i++)
		committed[i] = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
}

int kt_wait_exit(pid_t pid, int bound_ms)
{
	int st = 0;
	int64_t deadline = sp_now_ms() + bound_ms;
	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (sp_now_ms() >= deadline)
			break;
		t_sleep_ms(KT_WAIT_STEP_MS);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

void kt_print_tail(const char *dir, const char *file)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *s = t_read_file(path, NULL);
	size_t n = s ? strlen(s) : 0;
	/* on stderr, not cr_log_info: meson and CI show a failed test's stderr */
	fprintf(stderr, "---- %s (last part):\n%s\n---- end of %s\n", file,
	        s ? s + (n > KT_TAIL_BYTES ? n - KT_TAIL_BYTES : 0) : "(none)", file);
	free(s);
}

/* ---- transaction control markers through a raw Produce request ----------------------- */

typedef struct kt_wbuf {
	uint8_t b[512];
	size_t n;
} kt_wbuf_t;

static void kw8(kt_wbuf_t *w, uint8_t v)
{
	cr_assert_lt(w->n, sizeof(w->b));
	w->b[w->n++] = v;
}
static void kw16(kt_wbuf_t *w, uint16_t v)
{
	kw8(w, (uint8_t)(v >> 8));
	kw8(w, (uint8_t)v);
}
static void kw32(kt_wbuf_t *w, uint32_t v)
{
	kw16(w, (uint16_t)(v >> 16));
	kw16(w, (uint16_t)v);
}
static void kw64(kt_wbuf_t *w, uint64_t v)
{
	kw32(w, (uint32_t)(v >> 32));
	kw32(w, (uint32_t)v);
}
static void kwbytes(kt_wbuf_t *w, const void *p, size_t n)
{
	cr_assert_leq(w->n + n, sizeof(w->b));
	memcpy(w->b + w->n, p, n);
	w->n += n;
}
/* A zigzag varint, as records use. */
static void kwvar(kt_wbuf_t *w, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	for (; z >= 0x80; z >>= 7)
		kw8(w, (uint8_t)(z | 0x80));
	kw8(w, (uint8_t)z);
}
static void kwput32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A record batch (magic 2) of one control record: key {version 0, type 1 commit / 0
 * abort}, value {version 0, coordinator epoch 0}; producer id -1 (none). */
static void control_batch(kt_wbuf_t *w, int commit)
{
	size_t start = w->n;
	kw64(w, 0); /* baseOffset: the broker assigns it */
	kw32(w, 0); /* batchLength, set below */
	kw32(w, 0); /* partitionLeaderEpoch */
	kw8(w, 2);  /* magic */
	kw32(w, 0); /* crc, set below */
	size_t crc_from = w->n;
	kw16(w, 0x30); /* attributes: transactional (0x10), control (0x20) */
	kw32(w, 0);    /* lastOffsetDelta */
	kw64(w, 1700000000000ULL);
	kw64(w, 1700000000000ULL);
	kw64(w, UINT64_MAX); /* producerId -1 */
	kw16(w, 0);          /* producerEpoch */
	kw32(w, UINT32_MAX); /* baseSequence -1 */
	kw32(w, 1);          /* one record */
	kt_wbuf_t r = {0};
	kw8(&r, 0);   /* attributes */
	kwvar(&r, 0); /* timestampDelta */
	kwvar(&r, 0); /* offsetDelta */
	kwvar(&r, 4);
	kw16(&r, 0);
	kw16(&r, commit ? 1 : 0);
	kwvar(&r, 6);
	kw16(&r, 0);
	kw32(&r, 0);
	kwvar(&r, 0); /* no headers */
	kwvar(w, (int64_t)r.n);
	kwbytes(w, r.b, r.n);
	kwput32(w->b + start + 8, (uint32_t)(w->n - start - 12));
	kwput32(w->b + start + 17, sp_crc32c(w->b + crc_from, w->n - crc_from));
}

void kt_append_control(const char *hostport, const char *topic, int32_t partition, int commit)
{
	const char *colon = strrchr(hostport, ':');
	cr_assert(colon, "no port in %s", hostport);
	char host[64];
	snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
	kt_wbuf_t w = {0}, batch = {0};
	control_batch(&batch, commit);
	/* Produce v3: size, api key 0, version 3, correlation id, client id; transactional
	 * id null, acks 1, timeout, one topic with one partition and its records */
	kw32(&w, 0);
	kw16(&w, 0);
	kw16(&w, 3);
	kw32(&w, 1);
	kw16(&w, 2);
	kwbytes(&w, "kt", 2);
	kw16(&w, UINT16_MAX);
	kw16(&w, 1);
	kw32(&w, 10000);
	kw32(&w, 1);
	kw16(&w, (uint16_t)strlen(topic));
	kwbytes(&w, topic, strlen(topic));
	kw32(&w, 1);
	kw32(&w, (uint32_t)partition);
	kw32(&w, (uint32_t)batch.n);
	kwbytes(&w, batch.b, batch.n);
	kwput32(w.b, (uint32_t)(w.n - 4));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
	cr_assert_eq(inet_pton(AF_INET, host, &a.sin_addr), 1, "%s", host);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect %s: %s", hostport,
	             strerror(errno));
	cr_assert_eq(write(fd, w.b, w.n), (ssize_t)w.n);
	/* the answer: size, correlation id, one topic (name), one partition: id, error code */
	uint8_t resp[512];
	size_t got = 0, need = 4;
	while (got < need) {
		ssize_t k = read(fd, resp + got, sizeof(resp) - got);
		cr_assert_gt(k, 0, "no Produce answer from %s", hostport);
		got += (size_t)k;
		if (got >= 4)
			need = 4 + ((size_t)resp[0] << 24 | (size_t)resp[1] << 16 | (size_t)resp[2] << 8 |
			            resp[3]);
		cr_assert_leq(need, sizeof(resp));
	}
	close(fd);
	size_t o = 4 + 4 + 4 + 2 + strlen(topic) + 4 + 4;
	cr_assert_leq(o + 2, got);
	int16_t err = (int16_t)(resp[o] << 8 | resp[o + 1]);
	cr_assert_eq(err, 0, "the control marker for %s [%d] was refused: error %d", topic, (int)partition,
	             err);
}
