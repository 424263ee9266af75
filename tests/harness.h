/* SPDX-License-Identifier: MIT */
/*
 * tests/harness.h - what every Check suite of libpagestate shares.
 *
 *   PS_TEST_MAIN(suite_fn)    main(): one suite, CK_ENV verbosity, no core
 *                             dumps, exit status 1 on any failure.
 *   ps_test_env_u64()         stress sizes from the environment (small
 *                             defaults: CI has 2 cores and three builds).
 *   ps_test_tcase()           a tcase with a timeout; stress ones are tagged
 *                             "stress" so meson can run them as their own
 *                             suite (CK_INCLUDE_TAGS / CK_EXCLUDE_TAGS).
 *   ps_test_rng               a small deterministic generator (xorshift64*),
 *                             seeded from PS_TEST_SEED so that a failing
 *                             stress run can be replayed.
 *
 * Environment: PS_STRESS_ITERS (operations per stress thread), PS_STRESS_SCALE
 * / PS_STRESS_SCALE_DIV (multiply / divide every stress size), PS_TEST_SEED.
 */
#ifndef PS_TESTS_HARNESS_H
#define PS_TESTS_HARNESS_H

#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static inline uint64_t ps_test_env_u64(const char *name, uint64_t fallback)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return fallback;
	v = strtoull(s, &end, 0);
	if (*end) {
		fprintf(stderr, "ignoring %s=%s: not a number\n", name, s);
		return fallback;
	}
	return (uint64_t)v;
}

/*
 * A stress size: @name if set, else @fallback; then multiplied by
 * PS_STRESS_SCALE and divided by PS_STRESS_SCALE_DIV (meson sets the divisor
 * under sanitizers). Never below 1.
 */
static inline uint64_t ps_test_stress_size(const char *name, uint64_t fallback)
{
	uint64_t div = ps_test_env_u64("PS_STRESS_SCALE_DIV", 1);
	uint64_t v = ps_test_env_u64(name, fallback) *
		     ps_test_env_u64("PS_STRESS_SCALE", 1) / (div ? div : 1);

	return v ? v : 1;
}

struct ps_test_rng {
	uint64_t s;
};

static inline struct ps_test_rng ps_test_rng_new(uint64_t stream)
{
	struct ps_test_rng r;

	r.s = ps_test_env_u64("PS_TEST_SEED", 0x9e3779b97f4a7c15ull) ^
	      (stream * 0xbf58476d1ce4e5b9ull);
	if (!r.s)
		r.s = 1;
	return r;
}

static inline uint64_t ps_test_rand(struct ps_test_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n). */
static inline uint64_t ps_test_below(struct ps_test_rng *r, uint64_t n)
{
	return n ? ps_test_rand(r) % n : 0;
}

static inline TCase *ps_test_tcase(Suite *s, const char *name, double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static inline TCase *ps_test_stress_tcase(Suite *s, const char *name,
					  double timeout)
{
	TCase *tc = ps_test_tcase(s, name, timeout);

	tcase_set_tags(tc, "stress");
	return tc;
}

static inline int ps_test_run(Suite *s)
{
	struct rlimit no_core = {0, 0};
	SRunner *sr = srunner_create(s);
	int failed;

	setrlimit(RLIMIT_CORE, &no_core);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define PS_TEST_MAIN(suite_fn)                  \
	int main(void)                          \
	{                                       \
		return ps_test_run(suite_fn()); \
	}

#endif /* PS_TESTS_HARNESS_H */
