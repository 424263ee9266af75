// SPDX-License-Identifier: MIT
/*
 * tests/test-version.c - pagestate/version.h: the macros are the project's
 * version (meson passes it as PS_TEST_PROJECT_VERSION, so a release that
 * bumps meson.build without the header fails here), the run-time functions
 * agree with them, and both comparisons are right at every boundary.
 */
#include <pagestate/pagestate.h>

#include "harness.h"

#include <string.h>

#ifndef PS_TEST_PROJECT_VERSION
#error "meson passes -DPS_TEST_PROJECT_VERSION=\"x.y.z\""
#endif

/* pagestate.h includes version.h, and the macros work in #if. */
#if !PS_CHECK_VERSION(0, 0, 0) || PS_CHECK_VERSION(999, 0, 0)
#error "PS_CHECK_VERSION() is wrong in #if"
#endif

START_TEST(macros_are_the_project_version)
{
	char v[64];

	snprintf(v, sizeof(v), "%d.%d.%d", PS_VERSION_MAJOR, PS_VERSION_MINOR,
		 PS_VERSION_PATCH);
	ck_assert_str_eq(v, PS_TEST_PROJECT_VERSION);
	ck_assert_str_eq(PS_VERSION_STRING, PS_TEST_PROJECT_VERSION);
}
END_TEST

START_TEST(runtime_matches_macros)
{
	ck_assert_str_eq(ps_version(), PS_VERSION_STRING);
	ck_assert_int_eq(ps_version_major(), PS_VERSION_MAJOR);
	ck_assert_int_eq(ps_version_minor(), PS_VERSION_MINOR);
	ck_assert_int_eq(ps_version_patch(), PS_VERSION_PATCH);
	ck_assert_ptr_eq(ps_version(), ps_version()); /* static, not built */
}
END_TEST

/*
 * Both comparisons, against versions one below and one above the current
 * one in each position (with the lower positions at 0 and at a large value,
 * so that a position is never decided by a lower one).
 */
START_TEST(check_version_boundaries)
{
	const int M = PS_VERSION_MAJOR, m = PS_VERSION_MINOR,
		  p = PS_VERSION_PATCH;

	ck_assert(PS_CHECK_VERSION(M, m, p));
	ck_assert(ps_version_check(M, m, p));
	ck_assert(!PS_CHECK_VERSION(M, m, p + 1));
	ck_assert(!ps_version_check(M, m, p + 1));
	ck_assert(!PS_CHECK_VERSION(M, m + 1, 0));
	ck_assert(!ps_version_check(M, m + 1, 0));
	ck_assert(!PS_CHECK_VERSION(M + 1, 0, 0));
	ck_assert(!ps_version_check(M + 1, 0, 0));
	if (p > 0) {
		ck_assert(PS_CHECK_VERSION(M, m, p - 1));
		ck_assert(ps_version_check(M, m, p - 1));
	}
	if (m > 0) {
		ck_assert(PS_CHECK_VERSION(M, m - 1, 1000000));
		ck_assert(ps_version_check(M, m - 1, 1000000));
	}
	if (M > 0) {
		ck_assert(PS_CHECK_VERSION(M - 1, 1000000, 1000000));
		ck_assert(ps_version_check(M - 1, 1000000, 1000000));
	}
	ck_assert(ps_version_check(0, 0, 0));
}
END_TEST

START_TEST(check_version_rejects_negative)
{
	ck_assert(!ps_version_check(-1, 0, 0));
	ck_assert(!ps_version_check(0, -1, 0));
	ck_assert(!ps_version_check(0, 0, -1));
}
END_TEST

static Suite *version_suite(void)
{
	Suite *s = suite_create("version");
	TCase *tc;

	tc = ps_test_tcase(s, "macros", 10);
	tcase_add_test(tc, macros_are_the_project_version);
	tc = ps_test_tcase(s, "runtime", 10);
	tcase_add_test(tc, runtime_matches_macros);
	tc = ps_test_tcase(s, "check", 10);
	tcase_add_test(tc, check_version_boundaries);
	tcase_add_test(tc, check_version_rejects_negative);
	return s;
}

PS_TEST_MAIN(version_suite)
