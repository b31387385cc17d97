/* test_dispatch.c - tests engine/dispatch.c: lane routing is stable per key and uniform. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static uint64_t rng_state = 0x1234567887654321ULL;
static uint64_t rnd(void)
{
	/* splitmix64: fixed seed, so the test is reproducible */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

Test(dispatch, same_key_same_lane)
{
	spate_partition_t part = {.name = "t/t/0"};
	for (int i = 0; i < 1000; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "key-%llu", (unsigned long long)rnd());
		spate_record_t a = {.key = k, .key_len = (size_t)n, .partition = &part, .position = sp_pos((uint64_t)i)};
		spate_record_t b = a;
		b.position = sp_pos((uint64_t)i + 1000);
		char k2[32];
		memcpy(k2, k, sizeof(k));
		b.key = k2; /* equal bytes at another address */
		for (uint32_t f = 1; f <= 64; f *= 2) {
			uint32_t la = sp_lane_of(&a, f);
			cr_assert_lt(la, f);
			cr_assert_eq(la, sp_lane_of(&b, f));
		}
	}
}

Test(dispatch, factor_one_is_lane_zero_and_keyless_spread_by_position)
{
	spate_partition_t part = {.name = "t/t/0"};
	spate_record_t r = {.key = NULL, .partition = &part};
	for (uint64_t p = 0; p < 100; p++) {
		r.position = sp_pos(p);
		cr_assert_eq(sp_lane_of(&r, 1), 0);
		cr_assert_eq(sp_lane_of(&r, 8), p % 8);
	}
}

Test(dispatch, lanes_pass_chi_square_uniformity)
{
	/* factor 16, 100,000 random keys: chi-square with 15 degrees of freedom must be
	 * below 37.697, the critical value at p = 0.001. */
	enum { F = 16, N = 100000 };
	uint64_t counts[F] = {0};
	spate_partition_t part = {.name = "t/t/0"};
	for (int i = 0; i < N; i++) {
		char k[40];
		int n = snprintf(k, sizeof(k), "card-%016llx", (unsigned long long)rnd());
		spate_record_t r = {.key = k, .key_len = (size_t)n, .partition = &part};
		counts[sp_lane_of(&r, F)]++;
	}
	double expect = (double)N / F, chi2 = 0;
	for (int l = 0; l < F; l++)
		chi2 += ((double)counts[l] - expect) * ((double)counts[l] - expect) / expect;
	cr_assert_lt(chi2, 37.697, "chi-square %.3f >= 37.697 (p = 0.001, df = 15)", chi2);
	/* and a skewed assignment would fail it: all keys of lane 0 counted twice */
	uint64_t skew[F];
	memcpy(skew, counts, sizeof(skew));
	skew[0] += 1000;
	skew[1] -= 1000;
	double chi2s = 0;
	for (int l = 0; l < F; l++)
		chi2s += ((double)skew[l] - expect) * ((double)skew[l] - expect) / expect;
	cr_assert_gt(chi2s, 37.697, "the check cannot tell a skew: %.3f", chi2s);
}
