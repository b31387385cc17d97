/* test_position.c - positions (engine/util.c): 512-bit comparison, the wide
 * (sequence number, sub-sequence) form of Kinesis at up to 129 digits, SHARD_END, and
 * text that round-trips through sp_position_parse, including the forms older versions
 * wrote (decimal offsets, three hex words), so existing checkpoint files stay readable. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <string.h>

/* A decimal string of n digits: the digit d repeated, or, with d < 0, "1" then zeros. */
static void digits(char *buf, int n, int d)
{
	for (int i = 0; i < n; i++)
		buf[i] = (char)(d < 0 ? (i ? '0' : '1') : '0' + d);
	buf[n] = 0;
}

static spate_position_t wide(const char *seq, uint64_t sub)
{
	spate_position_t p;
	cr_assert_eq(sp_position_wide(seq, strlen(seq), sub, &p), 0, "sequence number %s", seq);
	return p;
}

static void round_trip(const spate_position_t *p, const char *want)
{
	char buf[SPATE_POSITION_MAX];
	spate_position_fmt(p, buf, sizeof(buf));
	if (want)
		cr_assert_str_eq(buf, want);
	spate_position_t q;
	cr_assert_eq(sp_position_parse(buf, &q), 0, "parse %s", buf);
	cr_assert_eq(spate_position_cmp(p, &q), 0, "%s changed in a round trip", buf);
	cr_assert_eq(memcmp(p, &q, sizeof(q)), 0);
}

Test(position, wide_129_digits_round_trip_and_order)
{
	char a[200], b[200];
	digits(a, 129, 9);  /* the largest sequence number the API allows */
	digits(b, 129, -1); /* 10^128 */
	spate_position_t pa = wide(a, 0), pb = wide(b, 0), pa1 = wide(a, 1);
	char want[260];
	snprintf(want, sizeof(want), "%s.0", a);
	round_trip(&pa, want);
	snprintf(want, sizeof(want), "%s.1", a);
	round_trip(&pa1, want);
	round_trip(&pb, NULL);
	cr_assert_lt(spate_position_cmp(&pb, &pa), 0, "10^128 < 10^129-1");
	cr_assert_gt(spate_position_cmp(&pa, &pb), 0);
	cr_assert_lt(spate_position_cmp(&pa, &pa1), 0,
	             "the sub-sequence number orders within a sequence number");
	/* neighbours at 129 digits: ...998 < ...999, differing in the last digit only */
	char c[200];
	digits(c, 129, 9);
	c[128] = '8';
	spate_position_t pc = wide(c, 7);
	cr_assert_lt(spate_position_cmp(&pc, &pa), 0);
	cr_assert_gt(spate_position_cmp(&pc, &pb), 0);
	/* ... and in the first digit only */
	digits(c, 129, 9);
	c[0] = '8';
	pc = wide(c, UINT64_MAX);
	cr_assert_lt(spate_position_cmp(&pc, &pa), 0);
	/* the sequence number comes back as written */
	char seq[SPATE_POSITION_MAX];
	cr_assert_eq(sp_position_seq_fmt(&pa, seq, sizeof(seq)), 129);
	cr_assert_str_eq(seq, a);
	cr_assert_eq(sp_position_seq_fmt(&pb, seq, sizeof(seq)), 129);
	cr_assert_str_eq(seq, b);
	cr_assert_eq(sp_position_seq_fmt(&pa, seq, 129), -1, "a buffer too small is refused");
}

Test(position, shorter_is_smaller_and_digits_are_numbers)
{
	/* big-number order, not text order: "9" < "10", a 56-digit number < a 57-digit one */
	spate_position_t n9 = wide("9", 0), n10 = wide("10", 0), z = wide("0", 0);
	cr_assert_lt(spate_position_cmp(&n9, &n10), 0);
	cr_assert_lt(spate_position_cmp(&z, &n9), 0);
	round_trip(&z, "0.0");
	const char *real = "49590338271490256608559692538361571095921575989136588898"; /* 56 digits */
	spate_position_t r = wide(real, 3);
	char s57[80];
	digits(s57, 57, -1);
	spate_position_t big = wide(s57, 0);
	cr_assert_lt(spate_position_cmp(&r, &big), 0);
	char want[100];
	snprintf(want, sizeof(want), "%s.3", real);
	round_trip(&r, want);
	/* every 19-digit boundary of the conversion (10^19 per part) */
	for (int n = 1; n <= 129; n++) {
		char x[200], y[200];
		digits(x, n, 9);
		digits(y, n, -1);
		spate_position_t px = wide(x, 0), py = wide(y, 0);
		round_trip(&px, NULL);
		round_trip(&py, NULL);
		char seq[SPATE_POSITION_MAX];
		sp_position_seq_fmt(&px, seq, sizeof(seq));
		cr_assert_str_eq(seq, x, "%d digits", n);
		if (n > 1) {
			char prev[200];
			digits(prev, n - 1, 9);
			spate_position_t pp = wide(prev, UINT64_MAX);
			cr_assert_lt(spate_position_cmp(&pp, &py), 0, "10^%d - 1 < 10^%d", n - 1, n - 1);
		}
	}
}

Test(position, bad_sequence_numbers_are_refused)
{
	spate_position_t p;
	char big[200];
	digits(big, 130, 1);
	cr_assert_eq(sp_position_wide(big, 130, 0, &p), -1, "130 digits");
	cr_assert_eq(sp_position_wide("", 0, 0, &p), -1);
	cr_assert_eq(sp_position_wide("012", 3, 0, &p), -1, "a leading zero");
	cr_assert_eq(sp_position_wide("12a", 3, 0, &p), -1);
	cr_assert_eq(sp_position_wide("-1", 2, 0, &p), -1);
	cr_assert_eq(sp_position_parse("12.", &p), -1);
	cr_assert_eq(sp_position_parse(".1", &p), -1);
	cr_assert_eq(sp_position_parse("1.2.3", &p), -1);
	cr_assert_eq(sp_position_parse("1.-2", &p), -1);
	cr_assert_eq(sp_position_parse("1:2:3:4", &p), -1, "neither three nor eight words");
}

Test(position, shard_end_is_after_everything)
{
	spate_position_t end = sp_pos_closed();
	char a[200];
	digits(a, 129, 9);
	spate_position_t pa = wide(a, UINT64_MAX), off = sp_pos(UINT64_MAX);
	cr_assert_gt(spate_position_cmp(&end, &pa), 0);
	cr_assert_gt(spate_position_cmp(&end, &off), 0);
	cr_assert(sp_pos_is_closed(&end));
	cr_assert(!sp_pos_is_wide(&end));
	cr_assert(sp_pos_is_wide(&pa));
	round_trip(&end, "SHARD_END");
	sp_ckpt_t ck = {.after = end}, y;
	char buf[SPATE_POSITION_MAX];
	cr_assert_eq(sp_ckpt_parse(sp_ckpt_fmt(&ck, buf, sizeof(buf)), &y), 0);
	cr_assert(!y.beginning && sp_pos_is_closed(&y.after));
}

Test(position, offsets_and_old_forms_unchanged)
{
	spate_position_t o = sp_pos(483);
	round_trip(&o, "483");
	cr_assert(sp_pos_is_offset(&o));
	spate_position_t w3 = {.w = {1, 2, 3}};
	round_trip(&w3, "1:0000000000000002:0000000000000003");
	cr_assert(!sp_pos_is_offset(&w3));
	cr_assert(!sp_pos_is_wide(&w3));
	spate_position_t x8 = {.x = {5, 0, 0, 0, 1}, .w = {0, 0, 9}};
	round_trip(&x8, NULL);
	/* an old checkpoint file's three-word position reads as it did */
	spate_position_t q;
	cr_assert_eq(sp_position_parse("1:2:3", &q), 0);
	cr_assert_eq(spate_position_cmp(&q, &w3), 0);
	/* a wide position sorts after every offset and three-word position */
	spate_position_t z = wide("0", 0);
	cr_assert_gt(spate_position_cmp(&z, &w3), 0);
	cr_assert_gt(spate_position_cmp(&z, &o), 0);
	/* record ids carry the whole position */
	char a[200];
	digits(a, 129, 9);
	spate_partition_t part = {.source = "kinesis",
	                          .topic = "s",
	                          .partition = -1,
	                          .shard = "shardId-000000000001",
	                          .name = "kinesis/s/shardId-000000000001"};
	spate_record_t r = {.version = SPATE_RECORD_VERSION, .partition = &part, .position = wide(a, 2)};
	char id[400], want[400];
	spate_record_id(&r, id, sizeof(id));
	snprintf(want, sizeof(want), "kinesis/s/shardId-000000000001/%s.2", a);
	cr_assert_str_eq(id, want);
}
