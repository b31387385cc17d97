/* test_kinesis_parse.c - the Kinesis connector's reply parsers, base64, the header
 * envelope and the KPL de-aggregator (connectors/kinesis/parse.c, kpl.c), on buffers,
 * without a network: good replies give exact fields; cut, altered and wrongly typed
 * replies are reported as corrupt, never a crash (every prefix of each good reply is
 * tried, as a fuzzer would). */
#include "connectors/kinesis/kinesis.h"
#include "tests/connectors/kinesis/kpltest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const list_page1 =
    "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
    "\"EndingHashKey\":\"170141183460469231731687303715884105727\"},\"SequenceNumberRange\":{"
    "\"StartingSequenceNumber\":\"49590338271490256608559692538361571095921575989136588898\","
    "\"EndingSequenceNumber\":\"49590338271490256608559692538361571095921575989136588999\"}},"
    "{\"ShardId\":\"shardId-000000000002\",\"ParentShardId\":\"shardId-000000000000\","
    "\"AdjacentParentShardId\":\"shardId-000000000001\",\"SequenceNumberRange\":{"
    "\"StartingSequenceNumber\":\"49590338271490256608559692538361571095921575989136589000\"}}],"
    "\"NextToken\":\"tok-1\"}";

Test(kinesis_parse, list_shards_fields_and_pages)
{
	kin_shard_list_t l = {0};
	char why[256];
	cr_assert_eq(kin_parse_list_shards(list_page1, strlen(list_page1), &l, why, sizeof(why)), SPATE_OK,
	             "%s", why);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.shards[0].id, "shardId-000000000000");
	cr_assert_null(l.shards[0].parent);
	cr_assert_not_null(l.shards[0].end_seq, "a closed shard has its ending sequence number");
	cr_assert_str_eq(l.shards[1].parent, "shardId-000000000000");
	cr_assert_str_eq(l.shards[1].adj_parent, "shardId-000000000001");
	cr_assert_null(l.shards[1].end_seq);
	cr_assert_str_eq(l.next_token, "tok-1");
	/* the last page: appended, no token */
	const char *p2 = "{\"Shards\":[{\"ShardId\":\"shardId-000000000003\",\"SequenceNumberRange\":{"
	                 "\"StartingSequenceNumber\":\"1\"}}]}";
	cr_assert_eq(kin_parse_list_shards(p2, strlen(p2), &l, why, sizeof(why)), SPATE_OK, "%s", why);
	cr_assert_eq(l.n, 3);
	cr_assert_null(l.next_token);
	kin_shard_list_free(&l);
}

/* Every prefix of a good reply, and the reply with each byte replaced, is either parsed
 * or reported: never a crash (ASan checks the reads). */
static void cuts_and_flips(const char *good, int (*parse)(const char *, size_t))
{
	size_t n = strlen(good);
	char *b = malloc(n + 1);
	for (size_t cut = 0; cut < n; cut++) {
		memcpy(b, good, cut);
		b[cut] = 0;
		cr_assert_neq(parse(b, cut), SPATE_OK, "a reply cut at %zu of %zu bytes parsed", cut, n);
	}
	const char flips[] = {'"', '{', '[', '0', 'x', ',', '\\', '}', ']'};
	for (size_t i = 0; i < n; i += 3)
		for (size_t f = 0; f < sizeof(flips); f++) {
			memcpy(b, good, n + 1);
			b[i] = flips[f];
			(void)parse(b, n);
		}
	free(b);
}

static int p_list(const char *b, size_t n)
{
	kin_shard_list_t l = {0};
	char why[256];
	int rc = kin_parse_list_shards(b, n, &l, why, sizeof(why));
	cr_assert(rc == SPATE_OK || why[0], "an error without a reason");
	kin_shard_list_free(&l);
	return rc;
}

Test(kinesis_parse, list_shards_malformed)
{
	cuts_and_flips(list_page1, p_list);
	const char *bad[] = {
	    "[]",
	    "{}",
	    "{\"Shards\":{}}",
	    "{\"Shards\":[1]}",
	    "{\"Shards\":[{\"ShardId\":5}]}",
	    "{\"Shards\":[{\"ShardId\":\"s\",\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"x1\"}}]}",
	    "{\"Shards\":[],\"NextToken\":7}",
	    "null",
	    ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(p_list(bad[i], strlen(bad[i])), SPATE_ERR_CORRUPT, "%s parsed", bad[i]);
}

static int p_iter(const char *b, size_t n)
{
	char *it = NULL, why[256];
	int rc = kin_parse_iterator(b, n, &it, why, sizeof(why));
	free(it);
	return rc;
}

Test(kinesis_parse, iterator)
{
	const char *good = "{\"ShardIterator\":\"AAAAAAAAAAH9xz==\"}";
	char *it = NULL, why[256];
	cr_assert_eq(kin_parse_iterator(good, strlen(good), &it, why, sizeof(why)), SPATE_OK);
	cr_assert_str_eq(it, "AAAAAAAAAAH9xz==");
	free(it);
	cuts_and_flips(good, p_iter);
	cr_assert_eq(p_iter("{\"ShardIterator\":null}", 22), SPATE_ERR_CORRUPT);
	cr_assert_eq(p_iter("{\"ShardIterator\":\"\"}", 20), SPATE_ERR_CORRUPT);
}

/* "k1" / "hello", "k2" / "" (empty data), closed (no NextShardIterator), children. */
static const char *const records_closed =
    "{\"Records\":[{\"SequenceNumber\":\"49590338271490256608559692538361571095921575989136588898\","
    "\"ApproximateArrivalTimestamp\":1700000000.123,\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k1\"},"
    "{\"SequenceNumber\":\"49590338271490256608559692538361571095921575989136588899\","
    "\"ApproximateArrivalTimestamp\":1700000001,\"Data\":\"\",\"PartitionKey\":\"k2\"}],"
    "\"MillisBehindLatest\":0,\"ChildShards\":[{\"ShardId\":\"shardId-000000000004\",\"ParentShards\":"
    "[\"shardId-000000000000\"],\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}}]}";

static int p_recs(const char *b, size_t n)
{
	kin_records_t r;
	char why[256];
	int rc = kin_parse_records(b, n, &r, why, sizeof(why));
	kin_records_free(&r);
	return rc;
}

Test(kinesis_parse, get_records_fields)
{
	kin_records_t r;
	char why[256];
	cr_assert_eq(kin_parse_records(records_closed, strlen(records_closed), &r, why, sizeof(why)),
	             SPATE_OK, "%s", why);
	cr_assert_eq(r.n, 2);
	cr_assert_eq(r.recs[0].key_len, 2);
	cr_assert_eq(memcmp(r.recs[0].key, "k1", 2), 0);
	cr_assert_eq(r.recs[0].data_len, 5);
	cr_assert_eq(memcmp(r.recs[0].data, "hello", 5), 0);
	cr_assert_eq(r.recs[0].ts_ms, 1700000000123);
	cr_assert_eq(r.recs[1].data_len, 0);
	cr_assert_eq(r.recs[1].ts_ms, 1700000001000);
	char seq[SPATE_POSITION_MAX];
	sp_position_seq_fmt(&r.recs[1].pos, seq, sizeof(seq));
	cr_assert_str_eq(seq, "49590338271490256608559692538361571095921575989136588899");
	cr_assert_eq(r.recs[1].pos.w[2], 0, "a plain record has sub-sequence number 0");
	cr_assert_lt(spate_position_cmp(&r.recs[0].pos, &r.recs[1].pos), 0);
	cr_assert_null(r.next_iter, "no NextShardIterator: the shard is read to its end");
	cr_assert_eq(r.behind_ms, 0);
	cr_assert_eq(r.n_children, 1);
	cr_assert_str_eq(r.children[0], "shardId-000000000004");
	cr_assert_str_eq(r.last_seq, "49590338271490256608559692538361571095921575989136588899");
	cr_assert_eq(r.data_bytes, 5);
	kin_records_free(&r);
	/* open shard, no records, behind */
	const char *open = "{\"Records\":[],\"NextShardIterator\":\"it2\",\"MillisBehindLatest\":5000}";
	cr_assert_eq(kin_parse_records(open, strlen(open), &r, why, sizeof(why)), SPATE_OK);
	cr_assert_eq(r.n, 0);
	cr_assert_str_eq(r.next_iter, "it2");
	cr_assert_eq(r.behind_ms, 5000);
	cr_assert_null(r.last_seq);
	kin_records_free(&r);
}

Test(kinesis_parse, get_records_malformed)
{
	cuts_and_flips(records_closed, p_recs);
	const char *bad[] = {
	    "{}",
	    "{\"Records\":{}}",
	    "{\"Records\":[],\"MillisBehindLatest\":\"x\"}",
	    "{\"Records\":[],\"NextShardIterator\":1}",
	    "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"a$==\",\"PartitionKey\":\"k\"}]}",
	    "{\"Records\":[{\"SequenceNumber\":\"01\",\"Data\":\"\",\"PartitionKey\":\"k\"}]}",
	    "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\"}]}",
	    "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"k\","
	    "\"ApproximateArrivalTimestamp\":\"x\"}]}",
	    "{\"Records\":[],\"ChildShards\":{}}",
	    "{\"Records\":[],\"ChildShards\":[{}]}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(p_recs(bad[i], strlen(bad[i])), SPATE_ERR_CORRUPT, "%s parsed", bad[i]);
}

static int p_put(const char *b, size_t n)
{
	bool f[4];
	char first[128], why[256];
	return kin_parse_put_records(b, n, 2, f, first, sizeof(first), why, sizeof(why)) < 0
	           ? SPATE_ERR_CORRUPT
	           : SPATE_OK;
}

Test(kinesis_parse, put_records)
{
	const char *r =
	    "{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"12\",\"ShardId\":\"shardId-0\"},"
	    "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"slow down\"}]}";
	bool f[2];
	char first[128], why[256];
	cr_assert_eq(kin_parse_put_records(r, strlen(r), 2, f, first, sizeof(first), why, sizeof(why)), 1);
	cr_assert(!f[0] && f[1]);
	cr_assert_str_eq(first, "ProvisionedThroughputExceededException: slow down");
	cr_assert_eq(kin_parse_put_records(r, strlen(r), 3, f, first, sizeof(first), why, sizeof(why)), -1,
	             "entries must match the records sent");
	const char *lie =
	    "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\"},{\"ErrorCode\":\"X\"}]}";
	cr_assert_eq(kin_parse_put_records(lie, strlen(lie), 2, f, first, sizeof(first), why, sizeof(why)),
	             -1);
	/* an empty ErrorCode fails its entry, and the error says so (fuzz_kinesis_reply) */
	const char *empty = "{\"Records\":[{\"SequenceNumber\":\"99\"},{\"ErrorCode\":\"\"}]}";
	cr_assert_eq(kin_parse_put_records(empty, strlen(empty), 2, f, first, sizeof(first), why, sizeof(why)),
	             1);
	cr_assert(!f[0] && f[1]);
	cr_assert_str_eq(first, "an empty ErrorCode");
	cuts_and_flips(r, p_put);
}

Test(kinesis_parse, errors)
{
	kin_error_t e;
	const char *a =
	    "{\"__type\":\"com.amazonaws.kinesis.v20131202#ResourceNotFoundException\",\"message\":\"no s\"}";
	kin_parse_error(a, strlen(a), &e);
	cr_assert_str_eq(e.type, "ResourceNotFoundException");
	cr_assert_str_eq(e.message, "no s");
	const char *b = "{\"__type\":\"ExpiredIteratorException\",\"Message\":\"old\"}";
	kin_parse_error(b, strlen(b), &e);
	cr_assert_str_eq(e.type, "ExpiredIteratorException");
	cr_assert_str_eq(e.message, "old");
	kin_parse_error("<html>", 6, &e);
	cr_assert_str_eq(e.type, "");
	kin_parse_error(NULL, 0, &e);
	cr_assert_str_eq(e.type, "");
	cr_assert(kin_error_retryable(400, "ProvisionedThroughputExceededException"));
	cr_assert(kin_error_retryable(400, "LimitExceededException"));
	cr_assert(kin_error_retryable(503, ""));
	cr_assert(!kin_error_retryable(400, "ResourceNotFoundException"));
	cr_assert(!kin_error_retryable(400, "ExpiredIteratorException"));
}

Test(kinesis_parse, base64)
{
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	for (size_t n = 0; n <= 256; n++) {
		char enc[400];
		uint8_t dec[300];
		size_t e = kin_b64_encode(all, n, enc);
		cr_assert_eq(e, (n + 2) / 3 * 4);
		cr_assert_eq(kin_b64_decode(enc, e, dec), (ssize_t)n);
		cr_assert_eq(memcmp(dec, all, n), 0);
	}
	uint8_t d[8];
	cr_assert_eq(kin_b64_decode("aGVsbG8", 7, d), 5, "padding is optional");
	cr_assert_eq(kin_b64_decode("a", 1, d), -1);
	cr_assert_eq(kin_b64_decode("ab!d", 4, d), -1);
}

Test(kinesis_parse, envelope_round_trip_and_corruption)
{
	spate_header_t h[3] = {{"a", 1, "1", 1}, {"spate.id", 8, "x/y/1.0", 7}, {"nul", 3, NULL, 0}};
	size_t n = kin_env_size(h, 3);
	uint8_t *b = malloc(n + 5);
	cr_assert_eq(kin_env_write(h, 3, b), n);
	memcpy(b + n, "value", 5);
	spate_header_t out[3];
	size_t at = 0, need = 0;
	cr_assert_eq(kin_env_read(b, n + 5, out, 3, &at, &need), 3);
	cr_assert_eq(at, n);
	cr_assert_eq(out[1].key_len, 8);
	cr_assert_eq(memcmp(out[1].value, "x/y/1.0", 7), 0);
	cr_assert_null(out[2].value, "a null header value stays null");
	cr_assert_eq(kin_env_read(b, n + 5, out, 2, &at, &need), -1);
	cr_assert_eq(need, 3);
	/* any changed byte of the envelope makes it a plain value */
	for (size_t i = 0; i < n; i++) {
		b[i] ^= 0x20;
		cr_assert_eq(kin_env_read(b, n + 5, out, 3, &at, &need), 0, "byte %zu changed", i);
		cr_assert_eq(at, 0);
		b[i] ^= 0x20;
	}
	for (size_t cut = 0; cut < n; cut++)
		cr_assert_eq(kin_env_read(b, cut, out, 3, &at, &need), 0);
	free(b);
	cr_assert_eq(kin_env_size(NULL, 0), 0);
}

Test(kinesis_parse, kpl_deaggregates_and_checks_md5)
{
	const char *keys[] = {"alpha", "beta"};
	size_t idx[] = {0, 1, 0};
	const char *datas[] = {"one", "two", "three"};
	uint8_t agg[1024];
	size_t n = t_kpl_build(keys, 2, idx, datas, 3, agg, sizeof(agg));
	cr_assert_eq(kin_kpl_count(agg, n), 3);
	/* through the GetRecords parser: three records, sub-sequence numbers 1..3 */
	char b64[2048];
	size_t e = kin_b64_encode(agg, n, b64);
	b64[e] = 0;
	char reply[4096];
	snprintf(reply, sizeof(reply),
	         "{\"Records\":[{\"SequenceNumber\":\"777\",\"Data\":\"%s\",\"PartitionKey\":\"outer\"}],"
	         "\"NextShardIterator\":\"i\",\"MillisBehindLatest\":0}",
	         b64);
	kin_records_t r;
	char why[256];
	cr_assert_eq(kin_parse_records(reply, strlen(reply), &r, why, sizeof(why)), SPATE_OK, "%s", why);
	cr_assert_eq(r.n, 3);
	cr_assert_eq(r.aggregated, 1);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(r.recs[i].key_len, strlen(keys[idx[i]]));
		cr_assert_eq(memcmp(r.recs[i].key, keys[idx[i]], r.recs[i].key_len), 0,
		             "sub-record %zu keeps its own key", i);
		cr_assert_eq(r.recs[i].data_len, strlen(datas[i]));
		cr_assert_eq(memcmp(r.recs[i].data, datas[i], r.recs[i].data_len), 0);
		cr_assert_eq(r.recs[i].pos.w[2], i + 1);
		char seq[SPATE_POSITION_MAX];
		sp_position_seq_fmt(&r.recs[i].pos, seq, sizeof(seq));
		cr_assert_str_eq(seq, "777");
	}
	cr_assert_str_eq(r.last_seq, "777");
	kin_records_free(&r);
	/* a bad MD5: one plain record, the bytes as they are */
	agg[n - 1] ^= 1;
	cr_assert_eq(kin_kpl_count(agg, n), -1);
	e = kin_b64_encode(agg, n, b64);
	b64[e] = 0;
	snprintf(reply, sizeof(reply),
	         "{\"Records\":[{\"SequenceNumber\":\"777\",\"Data\":\"%s\",\"PartitionKey\":\"outer\"}],"
	         "\"NextShardIterator\":\"i\"}",
	         b64);
	cr_assert_eq(kin_parse_records(reply, strlen(reply), &r, why, sizeof(why)), SPATE_OK, "%s", why);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.bad_aggregates, 1);
	cr_assert_eq(r.recs[0].data_len, n);
	cr_assert_eq(memcmp(r.recs[0].data, agg, n), 0);
	cr_assert_eq(memcmp(r.recs[0].key, "outer", 5), 0);
	cr_assert_eq(r.recs[0].pos.w[2], 0);
	kin_records_free(&r);
	agg[n - 1] ^= 1;
	/* cut or altered aggregates are never read past their end (MD5 fails, or the
	 * protobuf walk stops) */
	for (size_t cut = 0; cut < n; cut++)
		cr_assert_eq(kin_kpl_count(agg, cut), -1);
	cr_assert_eq(kin_kpl_count((const uint8_t *)"\xF3\x89\x9A\xC2", 4), -1);
}

/* A protobuf that passes its MD5 but is not a valid aggregate (a key index past the
 * table, a wrong wire type) is not one: -1. */
Test(kinesis_parse, kpl_bad_protobuf_with_good_md5)
{
	const char *keys[] = {"k"};
	size_t idx[] = {1}; /* past the table */
	const char *datas[] = {"x"};
	uint8_t agg[256];
	size_t n = t_kpl_build(keys, 1, idx, datas, 1, agg, sizeof(agg));
	cr_assert_eq(kin_kpl_count(agg, n), -1);
	uint8_t bad[64] = "\xF3\x89\x9A\xC2";
	bad[4] = 0x0b; /* field 1, wire type 3 (a group) */
	bad[5] = 0x00;
	kin_md5(bad + 4, 2, bad + 6);
	cr_assert_eq(kin_kpl_count(bad, 22), -1);
}

/* An ApproximateArrivalTimestamp that is no time (found by fuzz_kinesis_reply: 1.7e40 s
 * overflowed the conversion to ms, undefined behaviour) counts as absent (0: the engine
 * stamps the arrival), and the record is read. */
Test(kinesis_parse, an_arrival_timestamp_out_of_range_is_absent)
{
	const char *const stamps[] = {"1.70003e+40", "-5", "253402300800", "1e308"};
	for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
		char body[512];
		int n = snprintf(body, sizeof(body),
		                 "{\"Records\":[{\"SequenceNumber\":\"49590338271490256608559692538361571095921575989136588898\","
		                 "\"ApproximateArrivalTimestamp\":%s,\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k1\"}],"
		                 "\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":0}",
		                 stamps[i]);
		kin_records_t r;
		char why[256];
		cr_assert_eq(kin_parse_records(body, (size_t)n, &r, why, sizeof(why)), SPATE_OK, "%s: %s",
		             stamps[i], why);
		cr_assert_eq(r.n, 1);
		cr_assert_eq(r.recs[0].ts_ms, 0, "%s", stamps[i]);
		kin_records_free(&r);
	}
}
