/* test_filter.c - tests engine/filter.c and engine/filter_match.c: Lambda's FilterCriteria.
 *
 * The first tables are AWS's own examples, each an event, a pattern and the answer the
 * page gives (or plainly implies): EventBridge's content-filtering, null/empty and array
 * pages and its table of comparison operators, and Lambda's event-filtering, Kinesis and
 * Kafka pages. EventBridge's events are whole JSON documents, so they are matched as a
 * Kafka record's value with the pattern under "value"; Lambda's are matched as records
 * of the source the page is about. Then each operator alone and combined, arrays, $or,
 * the per-source field names and value rules, malformed patterns with the error and
 * byte each must give, the limits, and the promise that matching does not allocate.
 * The file is long because the examples are data: a table per page, kept together.
 */
#include "engine/filter.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static spate_partition_t kafka = {
    .source = "kafka", .topic = "mytopic", .partition = 0, .name = "kafka/mytopic/0"};
static spate_partition_t kinesis = {.source = "kinesis",
                                    .topic = "stream",
                                    .partition = -1,
                                    .shard = "shardId-000000000000",
                                    .name = "kinesis/s/-1"};

static spate_record_t rec(const spate_partition_t *p, const char *key, const char *value)
{
	spate_record_t r = {.version = SPATE_RECORD_VERSION, .partition = p};
	if (key) {
		r.key = key;
		r.key_len = strlen(key);
	}
	if (value) {
		r.value = value;
		r.value_len = strlen(value);
	}
	r.timestamp_ms = 1545084650987;
	r.position.w[2] = 15;
	return r;
}

static sp_filter_t *compile(const char *const *pats, size_t n)
{
	char err[600] = "";
	sp_filter_t *f = sp_filter_compile(pats, n, err, sizeof(err));
	cr_assert(f, "compile %s: %s", pats[0], err);
	return f;
}

static int match_rec(const char *const *pats, size_t n, const spate_record_t *r)
{
	sp_filter_t *f = compile(pats, n);
	sp_filter_scratch_t *s = sp_filter_scratch_new();
	cr_assert(s);
	int rc = sp_filter_match(f, r, s);
	sp_filter_scratch_free(s);
	sp_filter_free(f);
	return rc;
}

static int match1(const spate_partition_t *p, const char *pattern, const char *key, const char *value)
{
	spate_record_t r = rec(p, key, value);
	return match_rec(&pattern, 1, &r);
}

/* An EventBridge pattern and event: the pattern goes under "value", the event is the value. */
static int eb(const char *pattern, const char *event)
{
	char wrapped[2048];
	snprintf(wrapped, sizeof(wrapped), "{\"value\": %s}", pattern);
	return match1(&kafka, wrapped, "k", event);
}

typedef struct ex {
	const char *page, *pattern, *event;
	int want;
} ex_t;

/* The EC2 event of EventBridge's pages, with the detail fields the patterns look at. */
#define EC2                                                                                                  \
	"\"version\":\"0\",\"id\":\"ddddd4-aaaa-7777-4444-345dd43cc333\",\"source\":\"aws.ec2\","            \
	"\"detail-type\":\"EC2 Instance State-change Notification\",\"account\":\"012345679012\","           \
	"\"time\":\"2017-10-02T16:24:49Z\",\"region\":\"us-east-1\","                                        \
	"\"resources\":[\"arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000\"]"

/* EventBridge user guide: content filtering (two revisions), null and empty values,
 * arrays, and the comparison operators table. */
static const ex_t eventbridge[] = {
    /* prefix */
    {"content", "{\"time\": [{\"prefix\": \"2017-10-02\"}]}", "{\"time\": \"2017-10-02T18:43:48Z\"}", 1},
    {"content", "{\"time\": [{\"prefix\": \"2017-10-02\"}]}", "{\"time\": \"2017-10-03T18:43:48Z\"}", 0},
    {"content", "{\"source\": [\"aws.autoscaling\"], \"region\": [{\"prefix\": \"eu-\"}]}",
     "{\"source\": \"aws.autoscaling\", \"region\": \"eu-west-1\"}", 1},
    {"content", "{\"source\": [\"aws.autoscaling\"], \"region\": [{\"prefix\": \"eu-\"}]}",
     "{\"source\": \"aws.autoscaling\", \"region\": \"us-east-1\"}", 0},
    /* anything-but: a string, a number, lists of each, a prefix */
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": \"initializing\"}]}}",
     "{" EC2 ",\"detail\":{\"state\":\"running\"}}", 1},
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": \"initializing\"}]}}",
     "{" EC2 ",\"detail\":{\"state\":\"initializing\"}}", 0},
    {"content", "{\"detail\": {\"x-limit\": [{\"anything-but\": 123}]}}", "{\"detail\":{\"x-limit\":301.8}}",
     1},
    {"content", "{\"detail\": {\"x-limit\": [{\"anything-but\": 123}]}}", "{\"detail\":{\"x-limit\":123}}",
     0},
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": [\"stopped\", \"overloaded\"]}]}}",
     "{\"detail\":{\"state\":\"running\"}}", 1},
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": [\"stopped\", \"overloaded\"]}]}}",
     "{\"detail\":{\"state\":\"overloaded\"}}", 0},
    {"content", "{\"detail\": {\"x-limit\": [{\"anything-but\": [100, 200, 300]}]}}",
     "{\"detail\":{\"x-limit\":150}}", 1},
    {"content", "{\"detail\": {\"x-limit\": [{\"anything-but\": [100, 200, 300]}]}}",
     "{\"detail\":{\"x-limit\":300}}", 0},
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": {\"prefix\": \"init\"}}]}}",
     "{\"detail\":{\"state\":\"running\"}}", 1},
    {"content", "{\"detail\": {\"state\": [{\"anything-but\": {\"prefix\": \"init\"}}]}}",
     "{\"detail\":{\"state\":\"initializing\"}}", 0},
    {"content", "{\"detail-type\": [{\"anything-but\": \"AWS API Call via CloudTrail\"}]}", "{" EC2 "}", 1},
    {"content", "{\"detail-type\": [{\"anything-but\": \"AWS API Call via CloudTrail\"}]}",
     "{\"detail-type\": \"AWS API Call via CloudTrail\"}", 0},
    {"content", "{\"source\": [{\"anything-but\": [\"aws.ec2\", \"aws.s3\"]}]}",
     "{\"source\": \"com.example\"}", 1},
    {"content", "{\"source\": [{\"anything-but\": [\"aws.ec2\", \"aws.s3\"]}]}", "{" EC2 "}", 0},
    {"content", "{\"source\": [{\"anything-but\": {\"prefix\": \"aws.\"}}]}", "{\"source\": \"com.example\"}",
     1},
    {"content", "{\"source\": [{\"anything-but\": {\"prefix\": \"aws.\"}}]}", "{" EC2 "}", 0},
    /* numeric: every field must hold */
    {"content",
     "{\"detail\": {\"c-count\": [{\"numeric\": [\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", "
     "10]}], "
     "\"x-limit\": [{\"numeric\": [\"=\", 3.018e2]}]}}",
     "{\"detail\":{\"c-count\":5,\"d-count\":3,\"x-limit\":301.8}}", 1},
    {"content",
     "{\"detail\": {\"c-count\": [{\"numeric\": [\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", "
     "10]}], "
     "\"x-limit\": [{\"numeric\": [\"=\", 3.018e2]}]}}",
     "{\"detail\":{\"c-count\":0,\"d-count\":3,\"x-limit\":301.8}}", 0},
    /* exists false matches both of the page's events (its second lacks a comma after
     * "state"'s list; it is added here), the second because c-count is no leaf */
    {"content", "{\"detail\": {\"c-count\": [{\"exists\": false}]}}",
     "{\"detail-type\": [\"EC2 Instance State-change Notification\"], \"resources\": "
     "[\"arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341\"], \"detail\": {\"state\": "
     "[\"initializing\", \"running\"]}}",
     1},
    {"content", "{\"detail\": {\"c-count\": [{\"exists\": false}]}}",
     "{\"detail-type\": [\"EC2 Instance State-change Notification\"], \"resources\": "
     "[\"arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341\"], \"detail\": {\"state\": "
     "[\"initializing\", \"running\"], \"c-count\": {\"c1\": 100}}}",
     1},
    {"content", "{\"detail\": {\"description\": [{\"exists\": true}]}}",
     "{\"detail\":{\"description\":\"x\"}}", 1},
    {"content", "{\"detail\": {\"description\": [{\"exists\": true}]}}",
     "{\"detail\":{\"state\":\"running\"}}", 0},
    /* the complex example */
    {"content",
     "{\"time\": [{\"prefix\": \"2017-10-02\"}], \"detail\": {\"state\": [{\"anything-but\": "
     "\"initializing\"}], "
     "\"c-count\": [{\"numeric\": [\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", 10]}], "
     "\"x-limit\": [{\"anything-but\": [100, 200, 300]}]}}",
     "{" EC2 ",\"detail\":{\"c-count\":5,\"d-count\":3,\"x-limit\":301.8,\"state\":\"running\"}}", 1},
    {"content",
     "{\"time\": [{\"prefix\": \"2017-10-02\"}], \"detail\": {\"state\": [{\"anything-but\": "
     "\"initializing\"}], "
     "\"c-count\": [{\"numeric\": [\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", 10]}], "
     "\"x-limit\": [{\"anything-but\": [100, 200, 300]}]}}",
     "{" EC2 ",\"detail\":{\"c-count\":5,\"d-count\":3,\"x-limit\":200,\"state\":\"running\"}}", 0},
    /* null and empty values are not interchangeable */
    {"null", "{\"detail\": {\"eventVersion\": [\"\"]}}",
     "{\"version\":\"0\",\"source\":\"aws.autoscaling\",\"resources\":[],\"detail\":{\"eventVersion\":\"\","
     "\"responseElements\":null}}",
     1},
    {"null", "{\"detail\": {\"responseElements\": [null]}}",
     "{\"version\":\"0\",\"source\":\"aws.autoscaling\",\"resources\":[],\"detail\":{\"eventVersion\":\"\","
     "\"responseElements\":null}}",
     1},
    {"null", "{\"detail\": {\"eventVersion\": [null]}}",
     "{\"detail\":{\"eventVersion\":\"\",\"responseElements\":null}}", 0},
    {"null", "{\"detail\": {\"responseElements\": [\"\"]}}",
     "{\"detail\":{\"eventVersion\":\"\",\"responseElements\":null}}", 0},
    /* arrays: a match when the pattern's list and the event's array intersect */
    {"arrays",
     "{\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f\", "
     "\"arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f\", "
     "\"arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f\"]}",
     "{\"resources\": [\"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-"
     "d5978ed4a025:autoScalingGroupName/ASGTerminate\", "
     "\"arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f\"]}",
     1},
    {"arrays", "{\"resources\": [\"arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f\"]}",
     "{\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f\"]}", 0},
    /* the comparison operators table */
    {"operators", "{\"Location\": [\"New York\"], \"Day\": [\"Monday\"]}",
     "{\"Location\":\"New York\",\"Day\":\"Monday\"}", 1},
    {"operators", "{\"Location\": [\"New York\"], \"Day\": [\"Monday\"]}",
     "{\"Location\":\"New York\",\"Day\":\"Sunday\"}", 0},
    {"operators", "{\"Region\": [{\"anything-but\": {\"prefix\": \"us-\"}}]}", "{\"Region\":\"eu-west-1\"}",
     1},
    {"operators", "{\"Region\": [{\"anything-but\": {\"prefix\": \"us-\"}}]}", "{\"Region\":\"us-east-1\"}",
     0},
    {"operators", "{\"FileName\": [{\"anything-but\": {\"suffix\": \".png\"}}]}", "{\"FileName\":\"a.jpg\"}",
     1},
    {"operators", "{\"FileName\": [{\"anything-but\": {\"suffix\": \".png\"}}]}", "{\"FileName\":\"a.png\"}",
     0},
    {"operators", "{\"state\": [{\"anything-but\": {\"equals-ignore-case\": \"initializing\"}}]}",
     "{\"state\":\"running\"}", 1},
    {"operators", "{\"state\": [{\"anything-but\": {\"equals-ignore-case\": \"initializing\"}}]}",
     "{\"state\":\"INITIALIZING\"}", 0},
    {"operators", "{\"FilePath\": [{\"anything-but\": {\"wildcard\": \"*/lib/*\"}}]}",
     "{\"FilePath\":\"/usr/bin/x\"}", 1},
    {"operators", "{\"FilePath\": [{\"anything-but\": {\"wildcard\": \"*/lib/*\"}}]}",
     "{\"FilePath\":\"/usr/lib/x\"}", 0},
    {"operators", "{\"Region\": [{\"prefix\": \"us-\"}]}", "{\"Region\":\"us-east-1\"}", 1},
    {"operators", "{\"Region\": [{\"prefix\": \"us-\"}]}", "{\"Region\":\"eu-west-1\"}", 0},
    {"operators", "{\"service\": [{\"prefix\": {\"equals-ignore-case\": \"eventb\"}}]}",
     "{\"service\":\"EventBridge\"}", 1},
    {"operators", "{\"service\": [{\"prefix\": {\"equals-ignore-case\": \"eventb\"}}]}",
     "{\"service\":\"Events\"}", 0},
    {"operators", "{\"LastName\": [\"\"]}", "{\"LastName\":\"\"}", 1},
    {"operators", "{\"LastName\": [\"\"]}", "{\"LastName\":\"Doe\"}", 0},
    {"operators", "{\"Name\": [\"Alice\"]}", "{\"Name\":\"Alice\"}", 1},
    {"operators", "{\"Name\": [\"Alice\"]}", "{\"Name\":\"alice\"}", 0},
    {"operators", "{\"Name\": [{\"equals-ignore-case\": \"alice\"}]}", "{\"Name\":\"ALICE\"}", 1},
    {"operators", "{\"Name\": [{\"equals-ignore-case\": \"alice\"}]}", "{\"Name\":\"Alicia\"}", 0},
    {"operators", "{\"FileName\": [{\"suffix\": \".png\"}]}", "{\"FileName\":\"image.png\"}", 1},
    {"operators", "{\"FileName\": [{\"suffix\": \".png\"}]}", "{\"FileName\":\"image.PNG\"}", 0},
    {"operators", "{\"service\": [{\"suffix\": {\"equals-ignore-case\": \"tbridge\"}}]}",
     "{\"service\":\"EVENTBRIDGE\"}", 1},
    {"operators", "{\"service\": [{\"suffix\": {\"equals-ignore-case\": \"tbridge\"}}]}",
     "{\"service\":\"EventBus\"}", 0},
};

/* Lambda developer guide: the comparison operators table of event filtering. */
static const ex_t lambda_ops[] = {
    {"lambda", "{\"UserID\": [null]}", "{\"UserID\": null}", 1},
    {"lambda", "{\"UserID\": [null]}", "{\"UserID\": \"u-1\"}", 0},
    {"lambda", "{\"LastName\": [\"\"]}", "{\"LastName\": \"\"}", 1},
    {"lambda", "{\"Name\": [\"Alice\"]}", "{\"Name\": \"Alice\"}", 1},
    {"lambda", "{\"Location\": [\"New York\"], \"Day\": [\"Monday\"]}",
     "{\"Location\": \"New York\", \"Day\": \"Monday\"}", 1},
    {"lambda", "{\"PaymentType\": [\"Credit\", \"Debit\"]}", "{\"PaymentType\": \"Debit\"}", 1},
    {"lambda", "{\"PaymentType\": [\"Credit\", \"Debit\"]}", "{\"PaymentType\": \"Cash\"}", 0},
    {"lambda", "{\"Weather\": [{\"anything-but\": [\"Raining\"]}]}", "{\"Weather\": \"Sunny\"}", 1},
    {"lambda", "{\"Weather\": [{\"anything-but\": [\"Raining\"]}]}", "{\"Weather\": \"Raining\"}", 0},
    {"lambda", "{\"Price\": [{\"numeric\": [\"=\", 100]}]}", "{\"Price\": 100}", 1},
    {"lambda", "{\"Price\": [{\"numeric\": [\"=\", 100]}]}", "{\"Price\": 100.0}", 1},
    {"lambda", "{\"Price\": [{\"numeric\": [\"=\", 100]}]}", "{\"Price\": 101}", 0},
    {"lambda", "{\"Price\": [{\"numeric\": [\">\", 10, \"<=\", 20]}]}", "{\"Price\": 20}", 1},
    {"lambda", "{\"Price\": [{\"numeric\": [\">\", 10, \"<=\", 20]}]}", "{\"Price\": 10}", 0},
    {"lambda", "{\"ProductName\": [{\"exists\": true}]}", "{\"ProductName\": \"Widget\"}", 1},
    {"lambda", "{\"ProductName\": [{\"exists\": true}]}", "{\"Name\": \"Widget\"}", 0},
    {"lambda", "{\"ProductName\": [{\"exists\": false}]}", "{\"Name\": \"Widget\"}", 1},
    {"lambda", "{\"ProductName\": [{\"exists\": false}]}", "{\"ProductName\": \"Widget\"}", 0},
    {"lambda", "{\"Region\": [{\"prefix\": \"us-\"}]}", "{\"Region\": \"us-west-2\"}", 1},
    /* numbers compare as written: 300, 300.0 and 3.0e2 are not equal */
    {"lambda", "{\"n\": [300]}", "{\"n\": 300}", 1},
    {"lambda", "{\"n\": [300]}", "{\"n\": 300.0}", 0},
    {"lambda", "{\"n\": [300]}", "{\"n\": 3.0e2}", 0},
    /* the console example { "a" : [ 1, 2 ] } */
    {"lambda", "{\"a\": [1, 2]}", "{\"a\": 2}", 1},
    {"lambda", "{\"a\": [1, 2]}", "{\"a\": 3}", 0},
    /* multi-level filtering of a DynamoDB record (here: its dynamodb object as the value) */
    {"lambda", "{\"dynamodb\": {\"Keys\": {\"Id\": {\"N\": [\"101\"]}}}}",
     "{\"dynamodb\": {\"Keys\": {\"Id\": {\"N\": \"101\"}}, \"NewImage\": {\"Message\": {\"S\": \"New "
     "item!\"}, "
     "\"Id\": {\"N\": \"101\"}}, \"SequenceNumber\": \"111\", \"SizeBytes\": 26, \"StreamViewType\": "
     "\"NEW_AND_OLD_IMAGES\"}}",
     1},
    {"lambda", "{\"dynamodb\": {\"Keys\": {\"Id\": {\"N\": [\"101\"]}}}}",
     "{\"dynamodb\": {\"Keys\": {\"Id\": {\"N\": \"102\"}}}}", 0},
};

static int run_table(const ex_t *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(eb(t[i].pattern, t[i].event), t[i].want, "%s example %zu: %s on %s", t[i].page,
		             i, t[i].pattern, t[i].event);
	return (int)n;
}

Test(filter_aws, eventbridge_examples)
{
	int n = run_table(eventbridge, sizeof(eventbridge) / sizeof(eventbridge[0]));
	cr_log_info("%d EventBridge example cases", n);
}

Test(filter_aws, lambda_operator_examples)
{
	int n = run_table(lambda_ops, sizeof(lambda_ops) / sizeof(lambda_ops[0]));
	cr_log_info("%d Lambda example cases", n);
}

/* The page's own pattern has a trailing comma, which is not JSON: it is refused there. */
Test(filter_aws, eventbridge_prefix_example_as_printed_is_not_json)
{
	const char *p = "{\n  \"time\": [ { \"prefix\": \"2017-10-02\" } ],\n}";
	char err[300];
	cr_assert_null(sp_filter_compile(&p, 1, err, sizeof(err)));
	cr_assert(strstr(err, "pattern 1 of 1, byte 44: not valid JSON"), "%s", err);
}

/* Lambda: the Kinesis examples, with the fields of the Kinesis event. */
Test(filter_aws, lambda_kinesis_examples)
{
	const char *both = "{\"partitionKey\": [\"1\"], \"data\": {\"Location\": [\"Los Angeles\"]}}";
	const char *temp = "{\"data\": {\"Temperature\": [{\"numeric\": [\">\", 50, \"<=\", 60]}]}}";
	cr_assert_eq(match1(&kinesis, both, "1", "{\"Location\": \"Los Angeles\"}"), 1);
	cr_assert_eq(match1(&kinesis, both, "2", "{\"Location\": \"Los Angeles\"}"), 0);
	cr_assert_eq(match1(&kinesis, both, "1", "{\"Location\": \"Seattle\"}"), 0);
	cr_assert_eq(match1(&kinesis, temp, "1", "{\"Temperature\": 55}"), 1);
	cr_assert_eq(match1(&kinesis, temp, "1", "{\"Temperature\": 61}"), 0);
	/* the page's sample record has "Temperature": "46", a string: numeric never matches it */
	cr_assert_eq(match1(&kinesis, temp, "1",
	                    "{\"City\": \"Seattle\", \"State\": \"WA\", \"Temperature\": \"46\", \"Month\": "
	                    "\"December\"}"),
	             0);
	cr_assert_eq(match1(&kinesis, temp, "1", "{\"City\": \"Seattle\", \"Temperature\": \"55\"}"), 0);
}

/* Lambda's table for Kinesis: data (JSON or not) x the data pattern (JSON, none, not JSON). */
Test(filter_aws, lambda_kinesis_json_table)
{
	const char *json_pat = "{\"partitionKey\": [\"1\"], \"data\": {\"a\": [{\"exists\": false}]}}";
	const char *meta_pat = "{\"partitionKey\": [\"1\"]}";
	const char *text_pat = "{\"partitionKey\": [\"1\"], \"data\": [{\"prefix\": \"\"}]}";
	/* valid JSON, valid JSON: filtered on the criteria */
	cr_assert_eq(match1(&kinesis, json_pat, "1", "{\"b\": 1}"), 1);
	cr_assert_eq(match1(&kinesis, json_pat, "1", "{\"a\": 1}"), 0);
	/* valid JSON, no data pattern: metadata only */
	cr_assert_eq(match1(&kinesis, meta_pat, "1", "{\"a\": 1}"), 1);
	cr_assert_eq(match1(&kinesis, meta_pat, "2", "{\"a\": 1}"), 0);
	/* not JSON, JSON pattern: dropped (even by exists: false) */
	cr_assert_eq(match1(&kinesis, json_pat, "1", "{\"b\": 1"), 0);
	cr_assert_eq(match1(&kinesis, json_pat, "1", "plain text"), 0);
	/* not JSON, no data pattern: metadata only */
	cr_assert_eq(match1(&kinesis, meta_pat, "1", "plain text"), 1);
	/* a pattern on data that is not an object: Lambda refuses it; here it matches nothing */
	cr_assert_eq(match1(&kinesis, text_pat, "1", "plain text"), 0);
	cr_assert_eq(match1(&kinesis, text_pat, "1", "{\"a\": 1}"), 0);
}

/* Lambda: the Kafka examples (JSON messages and plain strings), and its table of
 * message format x pattern format. */
Test(filter_aws, lambda_kafka_examples_and_table)
{
	const char *dev = "{\"value\": {\"device_ID\": [{\"prefix\": \"AB\"}]}}";
	const char *not_error = "{\"value\": [{\"anything-but\": [\"error\"]}]}";
	const char *msg = "{\"device_ID\": \"AB1234\", \"session\": {\"start_time\": "
	                  "\"yyyy-mm-ddThh:mm:ss\", \"duration\": 162}}";
	cr_assert_eq(match1(&kafka, dev, NULL, msg), 1);
	cr_assert_eq(match1(&kafka, dev, NULL, "{\"device_ID\": \"CD1234\"}"), 0);
	cr_assert_eq(match1(&kafka, not_error, NULL, "Hello, this is a test."), 1);
	cr_assert_eq(match1(&kafka, not_error, NULL, "error"), 0);
	/* plain string x plain string: filtered (done above); plain x JSON pattern, JSON x plain
	 * pattern and bytes that are not UTF-8: the value part is skipped, the rest decides */
	cr_assert_eq(match1(&kafka, dev, NULL, "error"), 1);
	cr_assert_eq(match1(&kafka, not_error, NULL, "{\"device_ID\": \"CD1234\"}"), 1);
	cr_assert_eq(match1(&kafka, not_error, NULL, "\"error\""), 1); /* JSON (a string), not plain */
	cr_assert_eq(match1(&kafka, dev, NULL, "\xff\xfe binary"), 1);
	cr_assert_eq(match1(&kafka,
	                    "{\"value\": {\"device_ID\": [{\"prefix\": \"AB\"}]}, \"topic\": [\"other\"]}",
	                    NULL, "error"),
	             0);
	/* no value pattern: metadata only, whatever the value is */
	cr_assert_eq(match1(&kafka, "{\"topic\": [\"mytopic\"]}", NULL, "\xff"), 1);
}

/* ---- each operator alone, then combined ------------------------------------------------------ */

static const ex_t operators[] = {
    {"exact", "{\"s\": [\"a\\u00e9\"]}", "{\"s\": \"a\xc3\xa9\"}", 1},
    {"exact", "{\"s\": [\"a\"]}", "{\"s\": \"\\u0061\"}", 1},
    {"exact", "{\"s\": [\"1\"]}", "{\"s\": 1}", 0},
    {"exact", "{\"s\": [1]}", "{\"s\": \"1\"}", 0},
    {"exact", "{\"b\": [true]}", "{\"b\": true}", 1},
    {"exact", "{\"b\": [true]}", "{\"b\": \"true\"}", 0},
    {"exact", "{\"b\": [false]}", "{\"b\": false}", 1},
    {"exact", "{\"n\": [-0.5]}", "{\"n\": -0.5}", 1},
    {"prefix", "{\"s\": [{\"prefix\": \"\"}]}", "{\"s\": \"\"}", 1},
    {"prefix", "{\"s\": [{\"prefix\": \"\"}]}", "{\"s\": 5}", 0},
    {"prefix", "{\"s\": [{\"prefix\": \"ab\"}]}", "{\"s\": \"a\"}", 0},
    {"prefix-ci", "{\"s\": [{\"prefix\": {\"equals-ignore-case\": \"\xc3\xa9t\xc3\xa9\"}}]}",
     "{\"s\": \"\xc3\x89T\xc3\x89 2024\"}", 1},
    {"suffix", "{\"s\": [{\"suffix\": \"\\u20ac\"}]}", "{\"s\": \"10 \xe2\x82\xac\"}", 1},
    {"suffix-ci", "{\"s\": [{\"suffix\": {\"equals-ignore-case\": \"\xcf\x83\"}}]}",
     "{\"s\": \"\xce\xbb\xcf\x8c\xce\xb3\xce\xbf\xcf\x82\"}", 1},
    {"ci", "{\"s\": [{\"equals-ignore-case\": \"\xd0\xbc\xd0\xb8\xd1\x80\"}]}",
     "{\"s\": \"\xd0\x9c\xd0\x98\xd0\xa0\"}", 1},
    {"ci", "{\"s\": [{\"equals-ignore-case\": \"stra\xc3\x9f\x65\"}]}", "{\"s\": \"STRASSE\"}", 0},
    {"ci", "{\"s\": [{\"equals-ignore-case\": \"a\"}]}", "{\"s\": [\"B\", \"A\"]}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"*\"}]}", "{\"s\": \"\"}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"*\"}]}", "{\"s\": 1}", 0},
    {"wildcard", "{\"s\": [{\"wildcard\": \"a*b*c\"}]}", "{\"s\": \"aXbYbZc\"}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"a*b*c\"}]}", "{\"s\": \"abcab\"}", 0},
    {"wildcard", "{\"s\": [{\"wildcard\": \"a*ba\"}]}", "{\"s\": \"aba\"}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"ab*ba\"}]}", "{\"s\": \"aba\"}", 0},
    {"wildcard", "{\"s\": [{\"wildcard\": \"2\\\\*3=*\"}]}", "{\"s\": \"2*3=6\"}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"2\\\\*3=*\"}]}", "{\"s\": \"2x3=6\"}", 0},
    {"wildcard", "{\"s\": [{\"wildcard\": \"C:\\\\\\\\*\"}]}", "{\"s\": \"C:\\\\tmp\"}", 1},
    {"wildcard", "{\"s\": [{\"wildcard\": \"Simple*Service\"}]}", "{\"s\": \"Simple Notification Service\"}",
     1},
    {"anything-but", "{\"s\": [{\"anything-but\": \"a\"}]}", "{\"s\": 1}", 1},
    {"anything-but", "{\"s\": [{\"anything-but\": \"a\"}]}", "{\"s\": null}", 0},
    {"anything-but", "{\"s\": [{\"anything-but\": \"a\"}]}", "{\"t\": \"b\"}", 0},
    {"anything-but", "{\"s\": [{\"anything-but\": \"a\"}]}", "{\"s\": [\"a\", \"b\"]}", 1},
    {"anything-but", "{\"s\": [{\"anything-but\": \"a\"}]}", "{\"s\": [\"a\"]}", 0},
    {"anything-but", "{\"n\": [{\"anything-but\": [1, 2]}]}", "{\"n\": 1.0}", 0},
    {"anything-but", "{\"n\": [{\"anything-but\": [1, 2]}]}", "{\"n\": \"1\"}", 1},
    {"anything-but", "{\"s\": [{\"anything-but\": {\"suffix\": [\".png\", \".jpg\"]}}]}",
     "{\"s\": \"a.jpg\"}", 0},
    {"anything-but", "{\"s\": [{\"anything-but\": {\"wildcard\": [\"*/bin/*.jar\", \"*/bin/*.class\"]}}]}",
     "{\"s\": \"/opt/bin/A.class\"}", 0},
    {"anything-but", "{\"s\": [{\"anything-but\": {\"wildcard\": [\"*/bin/*.jar\", \"*/bin/*.class\"]}}]}",
     "{\"s\": \"/opt/lib/A.class\"}", 1},
    {"anything-but", "{\"s\": [{\"anything-but\": {\"equals-ignore-case\": [\"Stopped\", \"OverLoaded\"]}}]}",
     "{\"s\": \"overloaded\"}", 0},
    {"numeric", "{\"n\": [{\"numeric\": [\">=\", 5]}]}", "{\"n\": 5}", 1},
    {"numeric", "{\"n\": [{\"numeric\": [\">\", 5]}]}", "{\"n\": 5}", 0},
    {"numeric", "{\"n\": [{\"numeric\": [\"<\", 5]}]}", "{\"n\": 4.999}", 1},
    {"numeric", "{\"n\": [{\"numeric\": [\"<=\", -1e3]}]}", "{\"n\": -1000}", 1},
    {"numeric", "{\"n\": [{\"numeric\": [\">=\", 0, \"<\", 1]}]}", "{\"n\": 1}", 0},
    {"numeric", "{\"n\": [{\"numeric\": [\">=\", 0]}]}", "{\"n\": \"5\"}", 0},
    {"numeric", "{\"n\": [{\"numeric\": [\"=\", 0]}]}", "{\"n\": -0}", 1},
    {"numeric", "{\"n\": [{\"numeric\": [\">\", 9e18]}]}", "{\"n\": 9223372036854775807}", 1},
    {"exists", "{\"n\": [{\"exists\": true}]}", "{\"n\": null}", 1},
    {"exists", "{\"n\": [{\"exists\": true}]}", "{\"n\": {\"m\": 1}}", 0},
    {"exists", "{\"n\": [{\"exists\": true}]}", "{\"n\": []}", 0},
    {"exists", "{\"n\": [{\"exists\": false}]}", "{\"n\": [[], {}]}", 1},
    {"exists", "{\"n\": [{\"exists\": false}]}", "{\"n\": [[1]]}", 0},
    {"exists", "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"c\": 1}", 1},
    {"exists", "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"a\": 7}", 1},
    {"exists", "{\"n\": [{\"exists\": false}, 5]}", "{\"n\": 5}", 1},
    {"exists", "{\"n\": [{\"exists\": false}, 5]}", "{\"n\": 6}", 0},
    {"combined", "{\"s\": [{\"prefix\": \"a\"}, {\"suffix\": \"z\"}, {\"numeric\": [\">\", 3]}]}",
     "{\"s\": 4}", 1},
    {"combined", "{\"s\": [{\"prefix\": \"a\"}, {\"suffix\": \"z\"}, {\"numeric\": [\">\", 3]}]}",
     "{\"s\": \"bz\"}", 1},
    {"combined", "{\"s\": [{\"prefix\": \"a\"}, {\"suffix\": \"z\"}, {\"numeric\": [\">\", 3]}]}",
     "{\"s\": \"b\"}", 0},
    {"combined", "{\"s\": [{\"anything-but\": [\"x\"]}], \"n\": [{\"numeric\": [\"<\", 0]}], \"b\": [true]}",
     "{\"s\": \"y\", \"n\": -1, \"b\": true}", 1},
    {"combined", "{\"s\": [{\"anything-but\": [\"x\"]}], \"n\": [{\"numeric\": [\"<\", 0]}], \"b\": [true]}",
     "{\"s\": \"y\", \"n\": -1, \"b\": false}", 0},
    /* the same key twice: objects merge, rule lists replace (as event-ruler) */
    {"merge", "{\"a\": {\"b\": [1]}, \"a\": {\"c\": [2]}}", "{\"a\": {\"b\": 1, \"c\": 2}}", 1},
    {"merge", "{\"a\": {\"b\": [1]}, \"a\": {\"c\": [2]}}", "{\"a\": {\"b\": 1, \"c\": 3}}", 0},
    {"merge", "{\"a\": [1], \"a\": [2]}", "{\"a\": 1}", 0},
    {"merge", "{\"a\": [1], \"a\": [2]}", "{\"a\": 2}", 1},
    /* an event key given twice: the last one counts, as jansson reads it */
    {"duplicate", "{\"a\": [1]}", "{\"a\": 1, \"a\": 2}", 0},
    {"duplicate", "{\"a\": [2]}", "{\"a\": 1, \"a\": 2}", 1},
    /* keys with dots are not paths */
    {"dots", "{\"a.b\": [1]}", "{\"a\": {\"b\": 1}}", 0},
    {"dots", "{\"a.b\": [1]}", "{\"a.b\": 1}", 1},
};

Test(filter, each_operator_and_combined)
{
	run_table(operators, sizeof(operators) / sizeof(operators[0]));
}

/* Arrays anywhere on the path, nested objects, and array consistency: the fields of one
 * object pattern come from one element. */
static const ex_t arrays[] = {
    {"array", "{\"employees\": {\"firstName\": [\"Anna\"]}}",
     "{\"employees\": [{\"firstName\": \"John\", \"lastName\": \"Doe\"}, {\"firstName\": \"Anna\", "
     "\"lastName\": "
     "\"Smith\"}]}",
     1},
    {"array", "{\"employees\": {\"firstName\": [\"Anna\"], \"lastName\": [\"Smith\"]}}",
     "{\"employees\": [[{\"firstName\": \"John\", \"lastName\": \"Doe\"}, {\"firstName\": \"Anna\", "
     "\"lastName\": "
     "\"Smith\"}], [{\"firstName\": \"Peter\", \"lastName\": \"Jones\"}]]}",
     1},
    {"array", "{\"employees\": {\"firstName\": [\"Anna\"], \"lastName\": [\"Jones\"]}}",
     "{\"employees\": [[{\"firstName\": \"John\", \"lastName\": \"Doe\"}, {\"firstName\": \"Anna\", "
     "\"lastName\": "
     "\"Smith\"}], [{\"firstName\": \"Peter\", \"lastName\": \"Jones\"}]]}",
     0},
    {"array", "{\"a\": [3]}", "{\"a\": [[1, [2, [3]]]]}", 1},
    {"array", "{\"a\": {\"b\": [1]}}", "{\"a\": [1, 2, {\"b\": [0, 1]}]}", 1},
    {"array", "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"a\": []}", 1},
    {"array", "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"a\": [{\"b\": 1}, 5]}", 1},
    {"array", "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"a\": [{\"b\": 1}]}", 0},
    {"array", "{\"a\": {\"b\": {\"c\": [\"x\"]}}}", "[{\"a\": {\"b\": [{\"c\": \"y\"}, {\"c\": \"x\"}]}}]",
     1},
    {"nested", "{\"a\": {\"b\": {\"c\": {\"d\": [1]}}}, \"e\": [2]}",
     "{\"e\": 2, \"a\": {\"x\": 0, \"b\": {\"c\": {\"d\": 1}}}}", 1},
    {"nested", "{\"a\": {\"b\": {\"c\": {\"d\": [1]}}}, \"e\": [2]}",
     "{\"e\": 2, \"a\": {\"b\": {\"c\": 1}}}", 0},
    /* $or: plain, parallel, with an and inside, nested */
    {"or",
     "{\"source\": [\"aws.cloudwatch\"], \"$or\": [{\"metricName\": [\"CPUUtilization\"]}, {\"namespace\": "
     "[\"AWS/EC2\"]}]}",
     "{\"source\": \"aws.cloudwatch\", \"namespace\": \"AWS/EC2\"}", 1},
    {"or",
     "{\"source\": [\"aws.cloudwatch\"], \"$or\": [{\"metricName\": [\"CPUUtilization\"]}, {\"namespace\": "
     "[\"AWS/EC2\"]}]}",
     "{\"source\": \"aws.other\", \"namespace\": \"AWS/EC2\"}", 0},
    {"or",
     "{\"$or\": [{\"m\": [1]}, {\"n\": [1]}], \"detail\": {\"$or\": [{\"source\": [\"s\"]}, "
     "{\"detail-type\": [\"t\"]}]}}",
     "{\"n\": 1, \"detail\": {\"detail-type\": \"t\"}}", 1},
    {"or",
     "{\"$or\": [{\"m\": [1]}, {\"n\": [1]}], \"detail\": {\"$or\": [{\"source\": [\"s\"]}, "
     "{\"detail-type\": [\"t\"]}]}}",
     "{\"n\": 1, \"detail\": {\"detail-type\": \"u\"}}", 0},
    {"or",
     "{\"source\": [\"aws.cloudwatch\"], \"$or\": [{\"metricName\": [\"CPUUtilization\"]}, {\"metricType\": "
     "[\"MetricType\"], "
     "\"namespace\": [\"AWS/EC2\"], \"$or\": [{\"metricId\": [1234]}, {\"spaceId\": [1000]}]}, {\"scope\": "
     "[\"Service\"]}]}",
     "{\"source\": \"aws.cloudwatch\", \"metricType\": \"MetricType\", \"namespace\": \"AWS/EC2\", "
     "\"spaceId\": 1000}",
     1},
    {"or",
     "{\"source\": [\"aws.cloudwatch\"], \"$or\": [{\"metricName\": [\"CPUUtilization\"]}, {\"metricType\": "
     "[\"MetricType\"], "
     "\"namespace\": [\"AWS/EC2\"], \"$or\": [{\"metricId\": [1234]}, {\"spaceId\": [1000]}]}, {\"scope\": "
     "[\"Service\"]}]}",
     "{\"source\": \"aws.cloudwatch\", \"metricType\": \"MetricType\", \"namespace\": \"AWS/EC2\", "
     "\"spaceId\": 1001}",
     0},
    {"or", "{\"a\": {\"$or\": [{\"b\": [1]}, {\"c\": [1]}]}}", "{\"a\": [{\"b\": 0}, {\"c\": 1}]}", 1},
};

Test(filter, arrays_nesting_and_or)
{
	run_table(arrays, sizeof(arrays) / sizeof(arrays[0]));
}

Test(filter, patterns_are_ored)
{
	const char *p[] = {"{\"value\": {\"a\": [1]}}", "{\"value\": {\"b\": [2]}}", "{\"topic\": [\"t2\"]}"};
	spate_record_t r = rec(&kafka, "k", "{\"b\": 2}");
	cr_assert_eq(match_rec(p, 3, &r), 1);
	r = rec(&kafka, "k", "{\"b\": 3}");
	cr_assert_eq(match_rec(p, 3, &r), 0);
	cr_assert_eq(match_rec(p, 2, &r), 0);
}

/* ---- sources: field names and what a value that is not JSON does ------------------------------- */

Test(filter, kafka_names_for_kafka_log_gen_push)
{
	static const char *const sources[] = {"kafka", "log", "gen", "push"};
	spate_header_t hd[] = {{"trace", 5, "abc-1", 5},
	                       {"bin", 3, "\xff\x00", 2},
	                       {"none", 4, NULL, 0},
	                       {"trace", 5, "xyz-2", 5}};
	for (size_t i = 0; i < 4; i++) {
		spate_partition_t p = {.source = sources[i], .topic = "orders", .partition = 3, .name = "x"};
		spate_record_t r = rec(&p, "card-1", "{\"amount\": 12}");
		r.headers = hd;
		r.header_cnt = 4;
		r.position.w[2] = 42;
		r.timestamp_ms = 1700000000000;
		const char *yes[] = {
		    "{\"key\": [\"card-1\"], \"topic\": [\"orders\"], \"partition\": [3], \"offset\": [42]}",
		    "{\"offset\": [{\"numeric\": [\">=\", 42]}], \"timestamp\": [{\"numeric\": [\">\", "
		    "1.6e12]}]}",
		    "{\"timestamp\": [1700000000000], \"key\": [{\"prefix\": \"card-\"}]}",
		    "{\"headers\": {\"trace\": [\"xyz-2\"]}}",
		    "{\"headers\": {\"none\": [null], \"bin\": [{\"exists\": true}], \"missing\": "
		    "[{\"exists\": false}]}}",
		    "{\"value\": {\"amount\": [12]}, \"partitionKey\": [{\"exists\": false}], \"data\": "
		    "[{\"exists\": false}]}",
		    "{\"$or\": [{\"topic\": [\"x\"]}, {\"value\": {\"amount\": [{\"numeric\": [\"<\", "
		    "100]}]}}]}",
		};
		const char *no[] = {
		    "{\"key\": [\"card-2\"]}",
		    "{\"partition\": [\"3\"]}",
		    "{\"headers\": {\"trace\": [\"abc\"]}}",
		    "{\"headers\": {\"bin\": [{\"prefix\": \"\"}]}}",
		    "{\"headers\": [{\"exists\": true}]}",
		    "{\"partitionKey\": [\"card-1\"]}",
		    "{\"data\": {\"amount\": [12]}}",
		    "{\"offset\": [41]}",
		};
		for (size_t k = 0; k < sizeof(yes) / sizeof(yes[0]); k++)
			cr_expect_eq(match_rec(&yes[k], 1, &r), 1, "%s: %s", sources[i], yes[k]);
		for (size_t k = 0; k < sizeof(no) / sizeof(no[0]); k++)
			cr_expect_eq(match_rec(&no[k], 1, &r), 0, "%s: %s", sources[i], no[k]);
	}
}

Test(filter, kinesis_names)
{
	spate_record_t r = rec(&kinesis, "1", "{\"Location\": \"Los Angeles\"}");
	/* a sequence number wider than 64 bits (a wide position: the number down to w[1], the
	 * sub-sequence number in w[2], which is not part of it), in decimal */
	r.position = (spate_position_t){.x = {SPATE_POSITION_WIDE}, .w = {1, 5, 7}}; /* 2^64 + 5 */
	const char *yes[] = {
	    "{\"sequenceNumber\": [\"18446744073709551621\"]}",
	    "{\"approximateArrivalTimestamp\": [1545084650.987]}",
	    "{\"approximateArrivalTimestamp\": [{\"numeric\": [\">\", 1545084650, \"<\", 1545084651]}]}",
	    "{\"partitionKey\": [\"1\"], \"key\": [{\"exists\": false}], \"value\": [{\"exists\": false}]}",
	};
	const char *no[] = {
	    "{\"key\": [\"1\"]}",
	    "{\"value\": {\"Location\": [\"Los Angeles\"]}}",
	    "{\"topic\": [\"stream\"]}",
	    "{\"sequenceNumber\": [{\"prefix\": \"2\"}]}",
	};
	for (size_t k = 0; k < sizeof(yes) / sizeof(yes[0]); k++)
		cr_expect_eq(match_rec(&yes[k], 1, &r), 1, "%s", yes[k]);
	for (size_t k = 0; k < sizeof(no) / sizeof(no[0]); k++)
		cr_expect_eq(match_rec(&no[k], 1, &r), 0, "%s", no[k]);
}

Test(filter, values_that_are_not_json)
{
	const char *exists = "{\"value\": {\"a\": [{\"exists\": false}]}}";
	const char *absent = "{\"value\": [{\"exists\": false}]}";
	const char *text = "{\"value\": [{\"prefix\": \"ERR\"}]}";
	spate_record_t r = rec(&kafka, "k", NULL);
	/* a tombstone (no value) is a missing value */
	cr_assert_eq(match_rec(&exists, 1, &r), 1);
	cr_assert_eq(match_rec(&absent, 1, &r), 1);
	cr_assert_eq(match_rec(&text, 1, &r), 0);
	/* an empty value is the empty text */
	r = rec(&kafka, "k", "");
	cr_assert_eq(match_rec(&absent, 1, &r), 0);
	const char *empty = "{\"value\": [\"\"]}";
	cr_assert_eq(match_rec(&empty, 1, &r), 1);
	/* text: plain-string patterns apply, JSON ones are skipped */
	cr_assert_eq(match1(&kafka, text, "k", "ERROR: disk full"), 1);
	cr_assert_eq(match1(&kafka, text, "k", "WARN: disk full"), 0);
	cr_assert_eq(
	    match1(&kafka, "{\"value\": [{\"wildcard\": \"*disk*\"}], \"key\": [\"k\"]}", "k", "WARN: disk"),
	    1);
	/* a value that is almost JSON is text */
	cr_assert_eq(match1(&kafka, "{\"value\": [\"{\\\"a\\\": 1\"]}", "k", "{\"a\": 1"), 1);
	/* numbers jansson refuses make the value text, not JSON */
	cr_assert_eq(match1(&kafka, "{\"value\": [\"[1e999]\"]}", "k", "[1e999]"), 1);
}

/* ---- malformed patterns: each error and the byte it names ------------------------------------- */

static const struct bad {
	const char *pattern;
	unsigned pos;
	const char *msg;
} bad[] = {
    {"{\"a\": [1,]}", 9, "not valid JSON"},
    {"[1]", 0, "a pattern is a JSON object, not an array"},
    {"{}", 0, "an empty object matches nothing"},
    {"{\"a\": {}}", 6, "an empty object matches nothing"},
    {"{\"a\": 1}", 6, "\"a\" must be an object or an array of rules, not a number"},
    {"{\"a\": []}", 6, "\"a\" has an empty list of rules, which matches nothing"},
    {"{\"a\": [[1]]}", 7,
     "a rule is a string, a number, true, false, null or an operator object, not an array"},
    {"{\"a\": [{}]}", 7, "an operator object needs one operator"},
    {"{\"a\": [{\"prefix\": \"x\", \"suffix\": \"y\"}]}", 23,
     "an operator object holds one operator; \"suffix\" is a second"},
    {"{\"a\": [{\"prefx\": \"x\"}]}", 8, "unknown operator \"prefx\""},
    {"{\"ip\": [{\"cidr\": \"10.0.0.0/24\"}]}", 9,
     "\"cidr\" (IP address ranges) is not supported by Lambda's filters or spate's"},
    {"{\"a\": [{\"prefix\": 1}]}", 18, "\"prefix\" needs a string or {\"equals-ignore-case\": \"...\"}"},
    {"{\"a\": [{\"prefix\": [\"x\"]}]}", 18,
     "\"prefix\" needs a string or {\"equals-ignore-case\": \"...\"}"},
    {"{\"a\": [{\"prefix\": {\"ignore-case\": \"x\"}}]}", 19,
     "\"prefix\" needs a string or {\"equals-ignore-case\": \"...\"}"},
    {"{\"a\": [{\"equals-ignore-case\": 5}]}", 30, "\"equals-ignore-case\" needs a string, got a number"},
    {"{\"a\": [{\"wildcard\": \"a**b\"}]}", 20,
     "\"wildcard\": two '*' in a row at character 1 of the wildcard"},
    {"{\"a\": [{\"wildcard\": \"a\\\\b\"}]}", 20,
     "\"wildcard\": a backslash escapes only '*' or '\\' at character 1 of the wildcard"},
    {"{\"a\": [{\"anything-but\": [\"x\", 1]}]}", 30,
     "\"anything-but\" lists a string and a number together; a list holds one kind"},
    {"{\"a\": [{\"anything-but\": []}]}", 24, "\"anything-but\" has an empty list"},
    {"{\"a\": [{\"anything-but\": null}]}", 24,
     "\"anything-but\" needs strings or numbers (or an operator object), got null"},
    {"{\"a\": [{\"anything-but\": {\"prefix\": \"\"}}]}", 35, "\"anything-but\"/\"prefix\" cannot be empty"},
    {"{\"a\": [{\"anything-but\": {\"numeric\": [\">\", 1]}}]}", 25,
     "\"anything-but\" takes \"prefix\", \"suffix\", \"equals-ignore-case\" or \"wildcard\" inside, not "
     "\"numeric\""},
    {"{\"a\": [{\"numeric\": 5}]}", 19,
     "\"numeric\" needs an array such as [\">\", 0, \"<=\", 5], got a number"},
    {"{\"a\": [{\"numeric\": [\"!=\", 5]}]}", 20, "\"numeric\": unknown operator \"!=\""},
    {"{\"a\": [{\"numeric\": [\">\", \"5\"]}]}", 25, "\"numeric\": \">\" needs a number after it"},
    {"{\"a\": [{\"numeric\": [\">\", 10, \"<\", 5]}]}", 34,
     "\"numeric\": the range's low end 10 is not below its high end 5"},
    {"{\"a\": [{\"numeric\": [\">\", 1, \">\", 5]}]}", 28,
     "\"numeric\": a range's second operator is < or <=, not \">\""},
    {"{\"a\": [{\"numeric\": [\">\", 1, \"<\", 5, 6]}]}", 36,
     "\"numeric\" has too many elements (at most 4)"},
    {"{\"a\": [{\"numeric\": [\"=\", 1, \"<\", 5]}]}", 28, "\"numeric\": only > or >= starts a range"},
    {"{\"a\": [{\"exists\": \"yes\"}]}", 18, "\"exists\" needs true or false, got a string"},
    {"{\"$or\": {\"a\": [1]}}", 8, "\"$or\" needs an array of at least two objects"},
    {"{\"$or\": [{\"a\": [1]}]}", 8, "\"$or\" needs an array of at least two objects"},
    {"{\"$or\": [{\"a\": [1]}, 2]}", 21, "\"$or\" holds only objects, not a number"},
    {"{\"$or\": [{\"prefix\": [1]}, {\"b\": [2]}]}", 10,
     "\"prefix\" is an operator, not a field name, inside \"$or\""},
    {"{\"a\": [\"\\u0000\"]}", 8, "not valid JSON"},
    {"{\"a\": [\"x\"] \"b\": [1]}", 12, "not valid JSON"},
};

Test(filter, malformed_patterns_name_the_byte)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[600], want[600];
		const char *p = bad[i].pattern;
		cr_expect_null(sp_filter_compile(&p, 1, err, sizeof(err)), "%s compiled", p);
		snprintf(want, sizeof(want), "pattern 1 of 1, byte %u: %s: %s", bad[i].pos, bad[i].msg, p);
		cr_expect_str_eq(err, want, "case %zu", i);
	}
}

Test(filter, errors_name_the_pattern_and_the_limits)
{
	char err[600], big[SP_FILTER_MAX_PATTERN_BYTES + 2];
	const char *two[] = {"{\"a\": [1]}", "{\"b\": [{\"numeric\": [\"<\"]}]}"};
	cr_assert_null(sp_filter_compile(two, 2, err, sizeof(err)));
	cr_assert_str_eq(err, "pattern 2 of 2, byte 20: \"numeric\": \"<\" needs a number after it: "
	                      "{\"b\": [{\"numeric\": [\"<\"]}]}");
	const char *eleven[11];
	for (int i = 0; i < 11; i++)
		eleven[i] = "{\"a\": [1]}";
	cr_assert_null(sp_filter_compile(eleven, 11, err, sizeof(err)));
	cr_assert_str_eq(err, "11 patterns: a filter has 1 to 10");
	cr_assert_null(sp_filter_compile(eleven, 0, err, sizeof(err)));
	cr_assert_str_eq(err, "0 patterns: a filter has 1 to 10");
	sp_filter_t *f = sp_filter_compile(eleven, 10, err, sizeof(err));
	cr_assert(f, "%s", err);
	sp_filter_free(f);
	const char *withnull[] = {"{\"a\": [1]}", NULL};
	cr_assert_null(sp_filter_compile(withnull, 2, err, sizeof(err)));
	cr_assert_str_eq(err, "pattern 2 of 2 is NULL");
	/* 4096 bytes is allowed, 4097 is not */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"a\": [1]}", 10);
	big[SP_FILTER_MAX_PATTERN_BYTES] = 0;
	const char *bp = big;
	f = sp_filter_compile(&bp, 1, err, sizeof(err));
	cr_assert(f, "%s", err);
	sp_filter_free(f);
	big[SP_FILTER_MAX_PATTERN_BYTES] = ' ';
	big[SP_FILTER_MAX_PATTERN_BYTES + 1] = 0;
	cr_assert_null(sp_filter_compile(&bp, 1, err, sizeof(err)));
	const char *head =
	    "pattern 1 of 1, byte 4096: the pattern has 4097 bytes; the most is 4096: {\"a\": [1]} ";
	cr_assert(!strncmp(err, head, strlen(head)), "%s", err);
	cr_assert(strstr(err, "...") != NULL);
	/* errstr may be NULL */
	cr_assert_null(sp_filter_compile(two, 2, NULL, 0));
}

/* ---- the scratch: no allocation per record, one per thread --------------------------------------- */

/* malloc, calloc and realloc are wrapped (tests/engine/meson.build) to count the calls
 * this thread makes while `counting` is set. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
static _Thread_local bool counting;
static _Thread_local long allocs;
void *__wrap_malloc(size_t n)
{
	allocs += counting;
	return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m)
{
	allocs += counting;
	return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
	allocs += counting;
	return __real_realloc(p, n);
}

Test(filter, matching_allocates_nothing_once_the_scratch_has_grown)
{
	const char *p[] = {"{\"value\": {\"amount\": [{\"numeric\": [\">\", 5000]}], \"tags\": [\"x\"]}}",
	                   "{\"key\": [{\"prefix\": \"4000-66\"}], \"value\": {\"m\": {\"id\": "
	                   "[{\"wildcard\": \"m-*6\"}]}}}"};
	sp_filter_t *f = compile(p, 2);
	sp_filter_scratch_t *s = sp_filter_scratch_new();
	char v[256];
	int hits = 0, want = 0;
	for (int round = 0; round < 2; round++) {
		counting = round == 1;
		for (int i = 0; i < 1000; i++) {
			snprintf(v, sizeof(v),
			         "{\"tx\": \"t-%d\", \"amount\": %d.5, \"m\": {\"id\": \"m-%04d\"}, "
			         "\"tags\": [\"a\", \"x\"]}",
			         i, i * 10, i);
			spate_record_t r = rec(&kafka, i % 3 ? "4100-00" : "4000-66", v);
			hits += sp_filter_match(f, &r, s);
		}
		counting = false;
	}
	cr_assert_eq(allocs, 0, "%ld allocations in 1000 matches", allocs);
	/* amount > 5000 (i >= 500), or a 4000-66 key with an id ending in 6 */
	for (int i = 0; i < 1000; i++)
		want += i >= 500 || (i % 3 == 0 && i % 10 == 6);
	cr_assert_eq(hits, 2 * want);
	sp_filter_scratch_free(s);
	sp_filter_free(f);
}

typedef struct worker {
	const sp_filter_t *f;
	int hits;
} worker_t;

static void *work(void *arg)
{
	worker_t *w = arg;
	sp_filter_scratch_t *s = sp_filter_scratch_new();
	char v[128];
	for (int i = 0; i < 20000; i++) {
		snprintf(v, sizeof(v), "{\"n\": %d, \"s\": \"%s\"}", i, i % 2 ? "odd" : "even");
		spate_record_t r = rec(&kafka, "k", v);
		w->hits += sp_filter_match(w->f, &r, s);
	}
	sp_filter_scratch_free(s);
	return NULL;
}

Test(filter, one_filter_many_threads)
{
	const char *p = "{\"value\": {\"s\": [\"odd\"], \"n\": [{\"numeric\": [\"<\", 10000]}]}}";
	sp_filter_t *f = compile(&p, 1);
	pthread_t t[4];
	worker_t w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (worker_t){.f = f};
		cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].hits, 5000);
	}
	sp_filter_free(f);
}

Test(filter, a_large_value_grows_the_scratch_then_small_ones_reuse_it)
{
	const char *p = "{\"value\": {\"a\": [7]}}";
	sp_filter_t *f = compile(&p, 1);
	sp_filter_scratch_t *s = sp_filter_scratch_new();
	size_t n = 200000;
	char *big = malloc(n + 64);
	size_t k = (size_t)sprintf(big, "{\"a\": [");
	while (k < n)
		k += (size_t)sprintf(big + k, "1,");
	sprintf(big + k, "7], \"b\": \"\\u00e9\"}");
	spate_record_t r = rec(&kafka, "k", big);
	cr_assert_eq(sp_filter_match(f, &r, s), 1);
	r = rec(&kafka, "k", "{\"a\": 8}");
	cr_assert_eq(sp_filter_match(f, &r, s), 0);
	r = rec(&kafka, "k", "{\"a\": [8, 7]}");
	cr_assert_eq(sp_filter_match(f, &r, s), 1);
	free(big);
	sp_filter_scratch_free(s);
	sp_filter_free(f);
}

/* sp_filter_uses_headers: the engine decodes Kafka headers only when something reads
 * them; a filter reads them when a pattern names "headers" at its top level (or in a
 * top-level $or), not when a field below the value is called so. */
static bool uses_headers(const char *p)
{
	char err[512];
	sp_filter_t *f = sp_filter_compile(&p, 1, err, sizeof(err));
	cr_assert_not_null(f, "%s: %s", p, err);
	bool u = sp_filter_uses_headers(f);
	sp_filter_free(f);
	return u;
}

Test(filter, which_patterns_read_headers)
{
	cr_assert(uses_headers("{\"headers\": {\"tier\": [\"gold\"]}}"));
	cr_assert(uses_headers("{\"$or\": [{\"key\": [\"a\"]}, {\"headers\": {\"t\": [{\"exists\": true}]}}]}"));
	cr_assert(!uses_headers("{\"value\": {\"headers\": [\"x\"]}}"), "a field of the value");
	cr_assert(!uses_headers("{\"key\": [\"headers\"]}"), "a string");
	cr_assert(!uses_headers("{\"value\": [{\"prefix\": \"ok\"}]}"));
	cr_assert(!sp_filter_uses_headers(NULL), "no filter");
}
