/* test_log_interop.c - compressed batches between spate and implementations not its own.
 *
 * - kafka-python (Debian's python3-kafka, its own RecordBatch v2 code with all four
 *   codecs) writes segments with each codec; spate's reader and verify read every field
 *   (tests/connectors/log/kafka_python.py write);
 * - spate's writer writes each codec; kafka-python reads every batch back, checks its CRC
 *   and codec and every field (kafka_python.py read);
 * - librdkafka, the producer most users' segments come from, produces with each
 *   compression.codec to mock-kafka; the Fetch response's batch bytes are kept (a Fetch
 *   v4 request written here by hand: no client library between the broker's bytes and
 *   the test) and become a segment spate reads, every field checked. librdkafka's snappy
 *   is raw (no xerial framing) and its lz4 are LZ4 frames: what these check.
 *
 * The records are logtest.c's lt_make_text (keys and values null at times, headers with
 * null values, timestamps out of order). Never skips: no python3-kafka or mock-kafka is a
 * failure.
 */
#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Debian's interpreter: python3-kafka is installed for it (a python3 earlier on PATH,
 * pyenv's say, may not have it). */
#define PYTHON "/usr/bin/python3"
/* Records per codec and per batch. */
enum { N = 1000, PER = 100, RK_N = 400 };

static const char *const codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};

static const char *script(void)
{
	static char path[4096];
	const char *src = getenv("SPATE_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/tests/connectors/log/kafka_python.py", src ? src : ".");
	return path;
}

/* Publish what lies in the partition folder (a writer opens it once). */
static void publish(const char *dir)
{
	char err[1024];
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_truncated(w), 0, "the writer keeps every batch");
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
}

/* Read partition 0 of dir and check records 0..n-1 field by field; verify counts
 * `batches` batches of the codec and `records` records in them. */
static void read_all(const char *dir, int codec, uint64_t n, uint64_t batches, uint64_t records)
{
	char err[1024];
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s: %s", codecs[codec],
	             err);
	cr_assert_eq(recs.n, n, "%s: %zu records", codecs[codec], recs.n);
	for (uint64_t i = 0; i < n; i++)
		lt_check_text(&recs.v[i], i, i);
	lt_recs_free(&recs);
	sp_log_verify_stats_t st = {0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.records, n);
	cr_assert_eq(st.codec_records[codec], records, "%s: %llu records", codecs[codec],
	             (unsigned long long)st.codec_records[codec]);
	cr_assert_eq(st.codec_batches[codec], batches);
}

Test(log_interop, kafka_python_writes_spate_reads)
{
	for (int c = 0; c <= 4; c++) {
		char *dir = lt_mkdtemp(), err[1024], seg[4096], n[16], per[16];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		lt_seg(seg, sizeof(seg), dir, 0, 0);
		snprintf(n, sizeof(n), "%d", N);
		snprintf(per, sizeof(per), "%d", PER);
		char *argv[] = {PYTHON, (char *)script(), "write", seg, (char *)codecs[c], n, per, NULL};
		char *out = NULL, *e = NULL;
		int st = t_run(argv, &out, &e);
		cr_assert_eq(st, 0, "kafka_python.py write %s: %s%s", codecs[c], out, e);
		free(out);
		free(e);
		publish(dir);
		read_all(dir, c, N, N / PER, N);
		lt_rmrf(dir);
		free(dir);
	}
}

Test(log_interop, spate_writes_kafka_python_reads)
{
	for (int c = 0; c <= 4; c++) {
		char *dir = lt_mkdtemp(), err[1024], pdir[4096], n[16];
		sp_log_wopts_t o;
		lt_wopts(&o, 64 << 10, 16 << 10); /* several batches and segments */
		o.codec = c;
		sp_log_producer_t *p;
		cr_assert_eq(sp_log_producer_open(dir, 1, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
		for (uint64_t i = 0; i < 2 * N; i++) {
			spate_push_record_t r;
			lt_make_text(i, 0, &r);
			cr_assert_eq(sp_log_producer_send(p, &r, 1, 0, err, sizeof(err)), SPATE_OK, "%s",
			             err);
		}
		cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
		snprintf(pdir, sizeof(pdir), "%s/0", dir);
		snprintf(n, sizeof(n), "%d", 2 * N);
		char *argv[] = {PYTHON, (char *)script(), "read", pdir, (char *)codecs[c], n, NULL};
		char *out = NULL, *e = NULL;
		int st = t_run(argv, &out, &e);
		cr_assert_eq(st, 0, "kafka_python.py read %s: %s%s", codecs[c], out, e);
		cr_assert(strstr(out, "ok 2000 records in "), "%s", out);
		free(out);
		free(e);
		lt_rmrf(dir);
		free(dir);
	}
}

/* ---- librdkafka, through mock-kafka ---------------------------------------------------- */

static void put16(uint8_t **p, uint16_t v)
{
	uint16_t b = htons(v);
	memcpy(*p, &b, 2);
	*p += 2;
}

static void put32(uint8_t **p, uint32_t v)
{
	uint32_t b = htonl(v);
	memcpy(*p, &b, 4);
	*p += 4;
}

static void put64(uint8_t **p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p, (uint32_t)v);
}

static void putstr(uint8_t **p, const char *s)
{
	put16(p, (uint16_t)strlen(s));
	memcpy(*p, s, strlen(s));
	*p += strlen(s);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

static void read_full(int fd, uint8_t *b, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(fd, b + got, n - got);
		cr_assert_gt(r, 0, "the broker closed the connection");
		got += (size_t)r;
	}
}

/* One Fetch v4 of topic/0 from offset `from` on the broker at hostport: the records bytes
 * (batches as the broker keeps them) appended to seg. */
static void fetch(const char *hostport, const char *topic, uint64_t from, uint8_t **seg, size_t *len)
{
	char host[256];
	snprintf(host, sizeof(host), "%s", hostport);
	char *colon = strrchr(host, ':');
	cr_assert(colon);
	*colon = 0;
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	cr_assert_eq(getaddrinfo(host, colon + 1, &hints, &ai), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(fd, ai->ai_addr, ai->ai_addrlen), 0);
	freeaddrinfo(ai);
	uint8_t req[512], *p = req + 4;
	put16(&p, 1);             /* api key: Fetch */
	put16(&p, 4);             /* version 4: RecordBatch v2, isolation level */
	put32(&p, 7);             /* correlation id */
	putstr(&p, "spate-test"); /* client id */
	put32(&p, (uint32_t)-1);  /* replica id */
	put32(&p, 100);           /* max wait ms */
	put32(&p, 1);             /* min bytes */
	put32(&p, 64 << 20);      /* max bytes */
	*p++ = 0;                 /* isolation level: read uncommitted */
	put32(&p, 1);             /* topics */
	putstr(&p, topic);
	put32(&p, 1); /* partitions */
	put32(&p, 0); /* partition */
	put64(&p, from);
	put32(&p, 16 << 20); /* partition max bytes */
	uint8_t *q = req;
	put32(&q, (uint32_t)(p - req - 4));
	cr_assert_eq(write(fd, req, (size_t)(p - req)), p - req);
	uint8_t hdr[4];
	read_full(fd, hdr, 4);
	size_t rlen = get32(hdr);
	uint8_t *r = malloc(rlen);
	read_full(fd, r, rlen);
	close(fd);
	/* correlation id, throttle ms, 1 topic (name), 1 partition: id, error, high watermark,
	 * last stable offset, aborted transactions (null or empty), records */
	const uint8_t *x = r;
	cr_assert_eq(get32(x), 7);
	x += 8;
	cr_assert_eq(get32(x), 1);
	x += 4;
	x += 2 + ((x[0] << 8) | x[1]);
	cr_assert_eq(get32(x), 1);
	x += 4 + 4;
	cr_assert_eq((x[0] << 8) | x[1], 0, "fetch error %d", (x[0] << 8) | x[1]);
	x += 2 + 8 + 8;
	int32_t aborted = (int32_t)get32(x);
	x += 4 + (aborted > 0 ? (size_t)aborted * 16 : 0);
	int32_t n = (int32_t)get32(x);
	x += 4;
	cr_assert_geq(n, 0);
	cr_assert_leq((size_t)(x - r) + (size_t)n, rlen);
	*seg = realloc(*seg, *len + (size_t)n);
	memcpy(*seg + *len, x, (size_t)n);
	*len += (size_t)n;
	free(r);
}

static void dr_count(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	if (!m->err)
		(*(int *)opaque)++;
}

/* librdkafka produces RK_N records with compression.codec; the broker's batches. */
static void produce_with(const char *bootstrap, const char *topic, const char *codec, uint8_t **seg,
                         size_t *len)
{
	char err[512];
	static int delivered;
	delivered = 0;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *kv[][2] = {{"bootstrap.servers", bootstrap},
	                       {"compression.codec", codec},
	                       {"linger.ms", "50"},
	                       {"batch.num.messages", "100"},
	                       {"enable.idempotence", "false"}};
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		cr_assert_eq(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)), RD_KAFKA_CONF_OK,
		             "%s", err);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_count);
	rd_kafka_conf_set_opaque(conf, &delivered);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	cr_assert(rk, "%s", err);
	for (uint64_t i = 0; i < RK_N; i++) {
		spate_push_record_t r;
		lt_make_text(i, 0, &r);
		rd_kafka_headers_t *hs = rd_kafka_headers_new(r.header_cnt);
		for (size_t k = 0; k < r.header_cnt; k++)
			rd_kafka_header_add(hs, r.headers[k].key, (ssize_t)r.headers[k].key_len,
			                    r.headers[k].value,
			                    r.headers[k].value ? (ssize_t)r.headers[k].value_len : 0);
		rd_kafka_resp_err_t e = rd_kafka_producev(
		    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(r.key, r.key ? r.key_len : 0),
		    RD_KAFKA_V_VALUE((void *)r.value, r.value_len), RD_KAFKA_V_TIMESTAMP(r.timestamp_ms),
		    RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_END);
		cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(e));
	}
	cr_assert_eq(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	cr_assert_eq(delivered, RK_N);
	rd_kafka_destroy(rk);
	/* the single broker leads the partition: fetch from it until every record is here */
	uint64_t next = 0;
	for (int tries = 0; next < RK_N && tries < 50; tries++) {
		size_t before = *len;
		fetch(bootstrap, topic, next, seg, len);
		for (size_t off = before; off + SP_LOG_BATCH_HEADER <= *len;) {
			sp_log_batch_hdr_t h;
			size_t total;
			cr_assert_eq(sp_log_batch_header(*seg + off, *len - off, &h, &total, NULL),
			             SP_LOG_HDR_OK);
			if (total > *len - off) { /* a partial batch at the end: fetched again */
				*len = off;
				break;
			}
			next = (uint64_t)sp_log_batch_last(&h) + 1;
			off += total;
		}
	}
	cr_assert_eq(next, RK_N);
}

Test(log_interop, librdkafka_batches_from_mock_kafka, .fini = t_kafka_fini)
{
	const char *topics[] = {"c-none:1:1", "c-gzip:1:1", "c-snappy:1:1", "c-lz4:1:1", "c-zstd:1:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	for (int c = 0; c <= 4; c++) {
		char topic[32];
		snprintf(topic, sizeof(topic), "c-%s", codecs[c]);
		uint8_t *seg = NULL;
		size_t len = 0;
		produce_with(t_kafka_bootstrap(k), topic, codecs[c], &seg, &len);
		/* the batches as librdkafka wrote them: compressed with the codec, but for one it
		 * sends plain when compression would not make it smaller (a first batch of a few
		 * records, with lz4's frame overhead) */
		uint64_t batches = 0, recs = 0;
		for (size_t off = 0; off < len;) {
			sp_log_batch_hdr_t h;
			size_t total;
			cr_assert_eq(sp_log_batch_header(seg + off, len - off, &h, &total, NULL),
			             SP_LOG_HDR_OK);
			cr_assert(sp_log_batch_crc_ok(seg + off, total, NULL));
			int bc = sp_log_batch_codec(&h);
			cr_assert(bc == c || (bc == 0 && h.count < 10),
			          "%s: a batch of %d records has codec %d", codecs[c], h.count, bc);
			if (bc == c) {
				batches++;
				recs += (uint64_t)h.count;
			}
			if (bc == 2) /* librdkafka's snappy: one raw block, no xerial header */
				cr_assert_neq(seg[off + SP_LOG_BATCH_HEADER], 0x82);
			if (bc == 3) /* an LZ4 frame */
				cr_assert_eq(memcmp(seg + off + SP_LOG_BATCH_HEADER, "\x04\x22\x4d\x18", 4),
				             0);
			off += total;
		}
		cr_assert_gt(batches, 1, "%s: several batches", codecs[c]);
		cr_assert_geq(recs, RK_N * 9 / 10, "%s: %llu records compressed", codecs[c],
		              (unsigned long long)recs);
		char *dir = lt_mkdtemp(), err[1024], path[4096];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		lt_seg(path, sizeof(path), dir, 0, 0);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		cr_assert_eq(write(fd, seg, len), (ssize_t)len);
		close(fd);
		publish(dir);
		read_all(dir, c, RK_N, batches, recs);
		free(seg);
		lt_rmrf(dir);
		free(dir);
	}
	cr_assert_eq(t_kafka_stop(k), 0);
}
