// SPDX-License-Identifier: MIT
/*
 * tests/test-pte.c - the entry encoding: the documented bit map, round trips
 * of every form and field at its limits, the invariants the constructors
 * enforce, and the pure transitions.
 */
#include <pagestate/pte.h>

#include "harness.h"

START_TEST(layout_is_documented)
{
	ck_assert_uint_eq(PS_PTE_TYPE_MASK, 0x3);
	ck_assert_uint_eq(PS_PTE_UFFD_WP, 1u << 2);
	ck_assert_uint_eq(PS_PTE_WRITE, 1u << 3);
	ck_assert_uint_eq(PS_PTE_MAYWRITE, 1u << 4);
	ck_assert_uint_eq(PS_PTE_DIRTY, 1u << 5);
	ck_assert_uint_eq(PS_PTE_ACCESSED, 1u << 6);
	ck_assert_uint_eq(PS_PTE_CACHE_MASK, 7u << 7);
	ck_assert_uint_eq(PS_PTE_ENC, 1u << 10);
	ck_assert_uint_eq(PS_PTE_FRAME_SHIFT, 12);
	ck_assert_uint_eq(PS_PTE_SWP_EXCLUSIVE, 1u << 3);
	ck_assert_uint_eq(PS_PTE_SWP_TYPE_MASK, 0x1fu << 4);
	ck_assert_uint_eq(PS_PTE_SWP_OFFSET_SHIFT, 12);
	ck_assert_uint_eq(PS_PTE_MARKER_MASK, 0xfu << 2);
	ck_assert_uint_eq(ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN), 0x23);
	/* The same bit says uffd-wp in every form. */
	ck_assert_uint_eq(ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP) &
				  PS_PTE_UFFD_WP,
			  PS_PTE_UFFD_WP);
	ck_assert_uint_eq(PS_PTE_NONE, 0);
}
END_TEST

START_TEST(present_round_trip)
{
	static const uint64_t frames[] = {0,
					  1,
					  0x123456789ull,
					  (UINT64_C(1) << 40) - 1,
					  PS_PTE_FRAME_MAX - 1,
					  PS_PTE_FRAME_MAX};

	for (size_t f = 0; f < sizeof(frames) / sizeof(frames[0]); f++) {
		for (unsigned int mode = 0; mode < 8; mode++) {
			uint64_t flags = PS_PTE_MAYWRITE | PS_PTE_DIRTY |
					 PS_PTE_CACHE(mode) | PS_PTE_ENC;
			ps_pte_t e = ps_pte_mk_present(frames[f], flags);

			ck_assert(ps_pte_is_present(e));
			ck_assert(ps_pte_valid(e));
			ck_assert_uint_eq(ps_pte_frame(e), frames[f]);
			ck_assert_uint_eq(ps_pte_cache(e), mode);
			ck_assert(ps_pte_is_encrypted(e));
			ck_assert(ps_pte_is_dirty(e));
			ck_assert(!ps_pte_is_accessed(e));
			ck_assert(ps_pte_may_write(e));
			ck_assert(!ps_pte_is_writable(e));
			ck_assert(!ps_pte_uffd_wp(e));
			ck_assert_uint_eq(ps_pte_flags(e), flags);
			ck_assert(!ps_pte_is_swap(e) && !ps_pte_is_marker(e) &&
				  !ps_pte_is_none(e));
		}
	}
	/* Frame 0 with no flags is present, not none. */
	ck_assert(ps_pte_is_present(ps_pte_mk_present(0, 0)));
}
END_TEST

START_TEST(present_limits)
{
	ck_assert_uint_eq(ps_pte_mk_present(PS_PTE_FRAME_MAX + 1, 0),
			  PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_present(1, PS_PTE_SWP_EXCLUSIVE << 20),
			  PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_present(1, PS_PTE_RSVD_MASK), PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_present(1, PS_PTE_TYPE_MASK), PS_PTE_NONE);
	ck_assert_uint_eq(PS_PTE_CACHE(8), 0); /* out of range: masked away */
}
END_TEST

START_TEST(present_invariants)
{
	ps_pte_t e = ps_pte_mk_present(5, PS_PTE_WRITE | PS_PTE_UFFD_WP);

	/* Never writable and write-protected: protection wins. */
	ck_assert(ps_pte_uffd_wp(e));
	ck_assert(!ps_pte_is_writable(e));
	ck_assert(ps_pte_valid(e));
	/* WRITE implies MAYWRITE. */
	e = ps_pte_mk_present(5, PS_PTE_WRITE);
	ck_assert(ps_pte_may_write(e) && ps_pte_is_writable(e));
	/* Hand-made violations are not valid. */
	ck_assert(!ps_pte_valid(e | PS_PTE_UFFD_WP));
	ck_assert(!ps_pte_valid(e & ~PS_PTE_MAYWRITE));
	ck_assert(!ps_pte_valid(e | PS_PTE_RSVD_MASK));
	ck_assert(!ps_pte_valid(UINT64_C(1) << 20)); /* type none, bits set */
}
END_TEST

START_TEST(swap_round_trip)
{
	static const uint64_t offsets[] = {0, 1, 0xabcdef,
					   PS_PTE_SWP_OFFSET_MAX};

	for (unsigned int type = 0; type <= PS_PTE_SWP_TYPE_MAX; type++) {
		for (size_t o = 0; o < 4; o++) {
			for (uint64_t fl = 0; fl < 4; fl++) {
				uint64_t flags =
					((fl & 1) ? PS_PTE_UFFD_WP : 0) |
					((fl & 2) ? PS_PTE_SWP_EXCLUSIVE : 0);
				ps_pte_t e = ps_pte_mk_swap(type, offsets[o],
							    flags);

				ck_assert(ps_pte_is_swap(e));
				ck_assert(ps_pte_valid(e));
				ck_assert_uint_eq(ps_pte_swap_type(e), type);
				ck_assert_uint_eq(ps_pte_swap_offset(e),
						  offsets[o]);
				ck_assert_int_eq(ps_pte_uffd_wp(e), fl & 1);
				ck_assert_int_eq(ps_pte_swap_exclusive(e),
						 (fl & 2) != 0);
				ck_assert_uint_eq(ps_pte_frame(e), 0);
			}
		}
	}
	ck_assert_uint_eq(ps_pte_mk_swap(PS_PTE_SWP_TYPE_MAX + 1, 0, 0),
			  PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_swap(0, PS_PTE_SWP_OFFSET_MAX + 1, 0),
			  PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_swap(0, 0, PS_PTE_DIRTY), PS_PTE_NONE);
	ck_assert(!ps_pte_valid(ps_pte_mk_swap(1, 1, 0) |
				PS_PTE_SWP_RSVD_MASK));
}
END_TEST

START_TEST(marker_round_trip)
{
	for (unsigned int bits = 1; bits <= PS_PTE_MARKER_ALL; bits++) {
		ps_pte_t e = ps_pte_mk_marker(bits);

		ck_assert(ps_pte_is_marker(e));
		ck_assert(ps_pte_valid(e));
		ck_assert_uint_eq(ps_pte_marker_bits(e), bits);
		ck_assert_int_eq(ps_pte_uffd_wp(e),
				 (bits & PS_PTE_MARKER_UFFD_WP) != 0);
		ck_assert_uint_eq(ps_pte_frame(e), 0);
	}
	ck_assert_uint_eq(ps_pte_mk_marker(0), PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_marker(0x10), PS_PTE_NONE);
	/* An empty marker or one with payload bits is not valid. */
	ck_assert(!ps_pte_valid(PS_PTE_TYPE_MARKER));
	ck_assert(!ps_pte_valid(ps_pte_mk_marker(1) | (UINT64_C(1) << 12)));
	ck_assert(!ps_pte_valid(ps_pte_mk_marker(1) | (UINT64_C(1) << 6)));
}
END_TEST

/*
 * The WRITTEN marker stands alone: with any other marker bit the
 * constructor refuses the set and ps_pte_valid() the entry (written and
 * write-protected at once, like W and WP on a present entry). It is the
 * only valid entry whose low five bits are an empty marker's.
 */
START_TEST(written_marker_stands_alone)
{
	const ps_pte_t w = ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN);

	ck_assert(ps_pte_is_marker(w) && ps_pte_valid(w));
	ck_assert(ps_pte_is_written_marker(w));
	ck_assert_uint_eq(ps_pte_marker_bits(w), PS_PTE_MARKER_WRITTEN);
	ck_assert(!ps_pte_uffd_wp(w));
	ck_assert(ps_pte_written(w));
	ck_assert(!ps_pte_is_present(w) && !ps_pte_is_swap(w));
	ck_assert_uint_eq(ps_pte_frame(w), 0);
	ck_assert_uint_eq(w & 0x1f, PS_PTE_TYPE_MARKER);
	for (unsigned int bits = 1; bits <= PS_PTE_MARKER_ALL; bits++) {
		ck_assert_uint_eq(ps_pte_mk_marker(bits |
						   PS_PTE_MARKER_WRITTEN),
				  PS_PTE_NONE);
		ck_assert(!ps_pte_valid(ps_pte_mk_marker(bits) | w));
		ck_assert(!ps_pte_is_written_marker(ps_pte_mk_marker(bits)));
	}
	ck_assert(!ps_pte_is_written_marker(PS_PTE_NONE));
	ck_assert(!ps_pte_is_written_marker(ps_pte_mk_present(8, 0)));
	ck_assert(!ps_pte_is_written_marker(ps_pte_mk_swap(0, 0, 0) | 0x20));
	/* Protect re-arms it as a UFFD_WP marker; clearing changes nothing. */
	ck_assert_uint_eq(ps_pte_mkuffd_wp(w),
			  ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP));
	ck_assert_uint_eq(ps_pte_clear_uffd_wp(w), w);
	/* Not present: the present-only transitions leave it alone. */
	ck_assert_uint_eq(ps_pte_resolve_write(w), w);
	ck_assert_uint_eq(ps_pte_set_maywrite(w, true), w);
	ck_assert_uint_eq(ps_pte_set_cache(w, 2), w);
	ck_assert_uint_eq(ps_pte_set_encrypted(w, true), w);
}
END_TEST

START_TEST(written_follows_the_kernel)
{
	ck_assert(!ps_pte_written(PS_PTE_NONE));
	ck_assert(ps_pte_written(ps_pte_mk_present(1, 0)));
	ck_assert(!ps_pte_written(ps_pte_mk_present(1, PS_PTE_UFFD_WP)));
	ck_assert(ps_pte_written(ps_pte_mk_swap(1, 1, 0)));
	ck_assert(!ps_pte_written(ps_pte_mk_swap(1, 1, PS_PTE_UFFD_WP)));
	ck_assert(!ps_pte_written(ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP)));
	/* The kernel reports GUARD and POISONED markers as written. */
	ck_assert(ps_pte_written(ps_pte_mk_marker(PS_PTE_MARKER_GUARD)));
	ck_assert(ps_pte_written(ps_pte_mk_marker(PS_PTE_MARKER_POISONED)));
	/* And the none PTE a zap leaves in an async range (WRITTEN marker). */
	ck_assert(ps_pte_written(ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN)));
}
END_TEST

START_TEST(pure_transitions)
{
	ps_pte_t w = ps_pte_mk_present(9, PS_PTE_WRITE | PS_PTE_CACHE(3) |
						  PS_PTE_ENC);
	ps_pte_t p = ps_pte_mkuffd_wp(w);

	ck_assert(ps_pte_uffd_wp(p) && !ps_pte_is_writable(p));
	ck_assert(ps_pte_valid(p));
	/* Clearing does not make writable; resolving a write does. */
	ck_assert(!ps_pte_is_writable(ps_pte_clear_uffd_wp(p)));
	ck_assert_uint_eq(ps_pte_resolve_write(p),
			  w | PS_PTE_DIRTY | PS_PTE_ACCESSED);
	/* Without MAYWRITE a write resolves nothing. */
	ck_assert_uint_eq(ps_pte_resolve_write(ps_pte_set_maywrite(p, false)),
			  ps_pte_set_maywrite(p, false));
	ck_assert_uint_eq(ps_pte_mkuffd_wp(PS_PTE_NONE), PS_PTE_NONE);
	ck_assert_uint_eq(
		ps_pte_clear_uffd_wp(ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP)),
		PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_clear_uffd_wp(ps_pte_mk_marker(
				  PS_PTE_MARKER_UFFD_WP | PS_PTE_MARKER_GUARD)),
			  ps_pte_mk_marker(PS_PTE_MARKER_GUARD));
	ck_assert_uint_eq(ps_pte_mkuffd_wp(ps_pte_mk_swap(2, 3, 0)),
			  ps_pte_mk_swap(2, 3, PS_PTE_UFFD_WP));
}
END_TEST

START_TEST(mprotect_keeps_cache_enc_wp)
{
	ps_pte_t e = ps_pte_mk_present(77, PS_PTE_UFFD_WP | PS_PTE_MAYWRITE |
						   PS_PTE_CACHE(5) |
						   PS_PTE_ENC | PS_PTE_DIRTY);
	ps_pte_t ro = ps_pte_set_maywrite(e, false);
	ps_pte_t rw = ps_pte_set_maywrite(ro, true);
	ps_pte_t keep = PS_PTE_FRAME_MASK | PS_PTE_CACHE_MASK | PS_PTE_ENC |
			PS_PTE_UFFD_WP | PS_PTE_DIRTY;

	ck_assert_uint_eq(ro & keep, e & keep);
	ck_assert_uint_eq(rw & keep, e & keep);
	ck_assert(!ps_pte_may_write(ro) && ps_pte_may_write(rw));
	ck_assert(!ps_pte_is_writable(rw)); /* granting does not set WRITE */
	ck_assert(!ps_pte_is_writable(ps_pte_set_maywrite(
		ps_pte_mk_present(1, PS_PTE_WRITE), false)));
	/* Cache and encryption setters touch nothing else. */
	ck_assert_uint_eq(ps_pte_set_cache(e, 2) & ~PS_PTE_CACHE_MASK,
			  e & ~PS_PTE_CACHE_MASK);
	ck_assert_uint_eq(ps_pte_cache(ps_pte_set_cache(e, 2)), 2);
	ck_assert_uint_eq(ps_pte_set_cache(e, 8), e);
	ck_assert(!ps_pte_is_encrypted(ps_pte_set_encrypted(e, false)));
	ck_assert_uint_eq(ps_pte_set_encrypted(e, false) | PS_PTE_ENC, e);
	/* Other forms pass through unchanged. */
	ck_assert_uint_eq(ps_pte_set_maywrite(ps_pte_mk_swap(1, 1, 0), true),
			  ps_pte_mk_swap(1, 1, 0));
	ck_assert_uint_eq(ps_pte_set_cache(PS_PTE_NONE, 1), PS_PTE_NONE);
}
END_TEST

/* --- huge leaves ---------------------------------------------------------- */

START_TEST(huge_canonical_forms)
{
	const uint64_t fl = PS_PTE_MAYWRITE | PS_PTE_DIRTY | PS_PTE_CACHE(3) |
			    PS_PTE_ENC | PS_PTE_ACCESSED;
	static const unsigned int orders[] = {PS_PTE_ORDER_2M, PS_PTE_ORDER_1G};

	for (unsigned int o = 0; o < 2; o++) {
		const unsigned int order = orders[o];
		const uint64_t n = UINT64_C(1) << order;
		ps_pte_t h = ps_pte_mk_huge(3 * n, fl, order);

		ck_assert(ps_pte_huge_valid(h, order));
		ck_assert_uint_eq(h, ps_pte_mk_present(3 * n, fl));
		/* Frames must be aligned to the extent. */
		ck_assert_uint_eq(ps_pte_mk_huge(3 * n + 1, fl, order),
				  PS_PTE_NONE);
		ck_assert(!ps_pte_huge_valid(ps_pte_mk_present(3 * n + 1, fl),
					     order));
		/* The last extent that fits, and the one that does not. */
		ck_assert(ps_pte_mk_huge(PS_PTE_FRAME_MAX + 1 - n, 0, order));
		ck_assert_uint_eq(ps_pte_mk_huge(PS_PTE_FRAME_MAX + 1, 0,
						 order),
				  PS_PTE_NONE);
		/* Same invariants: never writable and protected. */
		h = ps_pte_mk_huge(n, PS_PTE_WRITE | PS_PTE_UFFD_WP, order);
		ck_assert(!ps_pte_is_writable(h) && ps_pte_uffd_wp(h));
		ck_assert(ps_pte_may_write(ps_pte_mk_huge(n, PS_PTE_WRITE,
							  order)));
		/* Markers are canonical at any order; swap and none never. */
		ck_assert(ps_pte_huge_valid(
			ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP), order));
		ck_assert(ps_pte_huge_valid(
			ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN), order));
		ck_assert(!ps_pte_huge_valid(ps_pte_mk_swap(1, n, 0), order));
		ck_assert(!ps_pte_huge_valid(PS_PTE_NONE, order));
		ck_assert(!ps_pte_huge_valid(ps_pte_mk_present(1, 1 << 11),
					     order)); /* reserved bit */
	}
	ck_assert(!ps_pte_huge_valid(ps_pte_mk_present(0, 0), 0));
	ck_assert(!ps_pte_huge_valid(ps_pte_mk_present(0, 0), 10));
	ck_assert_uint_eq(ps_pte_mk_huge(0, 0, 10), PS_PTE_NONE);
	ck_assert_uint_eq(ps_pte_mk_huge(0, UINT64_C(1) << 11, PS_PTE_ORDER_2M),
			  PS_PTE_NONE); /* flags out of range */
}
END_TEST

START_TEST(huge_subpage_views)
{
	const uint64_t fl = PS_PTE_MAYWRITE | PS_PTE_WRITE | PS_PTE_DIRTY |
			    PS_PTE_CACHE(6) | PS_PTE_ENC;
	ps_pte_t h = ps_pte_mk_huge(UINT64_C(5) << 18, fl, PS_PTE_ORDER_1G);
	ps_pte_t m = ps_pte_mk_marker(PS_PTE_MARKER_GUARD |
				      PS_PTE_MARKER_UFFD_WP);

	for (uint64_t i = 0; i < (UINT64_C(1) << 18); i += 4099) {
		ps_pte_t v = ps_pte_huge_subpage(h, PS_PTE_ORDER_1G, i);

		ck_assert(ps_pte_valid(v));
		ck_assert_uint_eq(ps_pte_frame(v), (UINT64_C(5) << 18) + i);
		ck_assert_uint_eq(ps_pte_flags(v), ps_pte_flags(h));
		ck_assert_uint_eq(ps_pte_huge_subpage(m, PS_PTE_ORDER_1G, i),
				  m);
	}
	/* The last page; the index wraps within the extent. */
	ck_assert_uint_eq(ps_pte_frame(ps_pte_huge_subpage(h, PS_PTE_ORDER_2M,
							   511 + 512)),
			  (UINT64_C(5) << 18) + 511);
	ck_assert_uint_eq(ps_pte_huge_subpage(h, PS_PTE_ORDER_2M, 0), h);
}
END_TEST

static Suite *pte_suite(void)
{
	Suite *s = suite_create("pte");
	TCase *tc;

	tc = ps_test_tcase(s, "layout", 10);
	tcase_add_test(tc, layout_is_documented);
	tc = ps_test_tcase(s, "present", 10);
	tcase_add_test(tc, present_round_trip);
	tcase_add_test(tc, present_limits);
	tcase_add_test(tc, present_invariants);
	tc = ps_test_tcase(s, "swap", 10);
	tcase_add_test(tc, swap_round_trip);
	tc = ps_test_tcase(s, "marker", 10);
	tcase_add_test(tc, marker_round_trip);
	tcase_add_test(tc, written_marker_stands_alone);
	tc = ps_test_tcase(s, "transitions", 10);
	tcase_add_test(tc, written_follows_the_kernel);
	tcase_add_test(tc, pure_transitions);
	tcase_add_test(tc, mprotect_keeps_cache_enc_wp);
	tc = ps_test_tcase(s, "huge", 10);
	tcase_add_test(tc, huge_canonical_forms);
	tcase_add_test(tc, huge_subpage_views);
	return s;
}

PS_TEST_MAIN(pte_suite)
