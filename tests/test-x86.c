// SPDX-License-Identifier: MIT
/*
 * tests/test-x86.c - the x86 encodings of pagestate/x86.h: the PAT/PCD/PWT
 * bits for every cache mode and entry level under Linux's PAT and others,
 * decoding every slot, and the confidential-computing encryption bit for
 * every platform polarity. Pure functions: no stress tcase.
 */
#include <pagestate/x86.h>

#include "harness.h"

#include <stddef.h>

static const enum ps_cache_mode all_modes[] = {
	PS_CACHE_WB, PS_CACHE_WC, PS_CACHE_UC_MINUS,
	PS_CACHE_UC, PS_CACHE_WT, PS_CACHE_WP,
};

/* --- x86 PAT -------------------------------------------------------------- */

START_TEST(x86_linux_pat_bits)
{
	/* Linux's default PAT: WB WC UC- UC WB WP UC- WT. */
	static const struct {
		enum ps_cache_mode mode;
		unsigned int slot;
	} want[] = {
		{PS_CACHE_WB, 0}, {PS_CACHE_WC, 1}, {PS_CACHE_UC_MINUS, 2},
		{PS_CACHE_UC, 3}, {PS_CACHE_WP, 5}, {PS_CACHE_WT, 7},
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned int s = want[i].slot;
		uint64_t small, large;

		ck_assert_int_eq(ps_x86_cache_bits(PS_X86_PAT_LINUX,
						   want[i].mode, PS_X86_4K,
						   &small),
				 0);
		ck_assert_int_eq(ps_x86_cache_bits(PS_X86_PAT_LINUX,
						   want[i].mode, PS_X86_LARGE,
						   &large),
				 0);
		ck_assert_uint_eq(small, (s & 1 ? PS_X86_PTE_PWT : 0) |
						 (s & 2 ? PS_X86_PTE_PCD : 0) |
						 (s & 4 ? PS_X86_PTE_PAT : 0));
		/* The PAT bit moves from 7 to 12; PWT and PCD stay. */
		ck_assert_uint_eq(large, (small & ~PS_X86_PTE_PAT) |
						 (small & PS_X86_PTE_PAT
							  ? PS_X86_PTE_PAT_LARGE
							  : 0));
	}
}
END_TEST

START_TEST(x86_round_trip_every_mode_and_level)
{
	for (int level = PS_X86_4K; level <= PS_X86_LARGE; level++) {
		for (size_t i = 0; i < sizeof(all_modes) / sizeof(all_modes[0]);
		     i++) {
			uint64_t bits;
			enum ps_cache_mode back;
			/* Unrelated bits in the entry must not matter. */
			uint64_t other = UINT64_C(0x8000000123456000) |
					 (level == PS_X86_4K ? (1u << 12)
							     : (1u << 7)) |
					 3;

			ck_assert_int_eq(ps_x86_cache_bits(
						 PS_X86_PAT_LINUX, all_modes[i],
						 (enum ps_x86_level)level,
						 &bits),
					 0);
			ck_assert_uint_eq(
				bits & ~ps_x86_cache_mask((enum ps_x86_level)
								  level),
				0);
			ck_assert_int_eq(ps_x86_cache_mode(
						 PS_X86_PAT_LINUX, other | bits,
						 (enum ps_x86_level)level,
						 &back),
					 0);
			ck_assert_int_eq(back, all_modes[i]);
		}
	}
}
END_TEST

START_TEST(x86_decode_every_slot)
{
	/* Slots 4 and 6 repeat WB and UC- in Linux's PAT. */
	static const enum ps_cache_mode by_slot[8] = {
		PS_CACHE_WB, PS_CACHE_WC, PS_CACHE_UC_MINUS, PS_CACHE_UC,
		PS_CACHE_WB, PS_CACHE_WP, PS_CACHE_UC_MINUS, PS_CACHE_WT,
	};

	for (unsigned int slot = 0; slot < 8; slot++) {
		uint64_t e = (slot & 1 ? PS_X86_PTE_PWT : 0) |
			     (slot & 2 ? PS_X86_PTE_PCD : 0) |
			     (slot & 4 ? PS_X86_PTE_PAT : 0);
		enum ps_cache_mode m;

		ck_assert_int_eq(ps_x86_cache_mode(PS_X86_PAT_LINUX, e,
						   PS_X86_4K, &m),
				 0);
		ck_assert_int_eq(m, by_slot[slot]);
		/* In a large entry bit 7 is PS, not PAT: slot & 3 only. */
		ck_assert_int_eq(ps_x86_cache_mode(PS_X86_PAT_LINUX, e,
						   PS_X86_LARGE, &m),
				 0);
		ck_assert_int_eq(m, by_slot[slot & 3]);
	}
}
END_TEST

START_TEST(x86_other_pats)
{
	/* Errata CPUs: 4 slots WB WC UC- UC, repeated. No WT, no WP. */
	const uint64_t errata = UINT64_C(0x0007010600070106);
	/* Power-on default: WB WT UC- UC, repeated. */
	const uint64_t poweron = UINT64_C(0x0007040600070406);
	uint64_t bits = 0xdead;
	enum ps_cache_mode m;

	ck_assert_int_eq(ps_x86_cache_bits(errata, PS_CACHE_WT, PS_X86_4K,
					   &bits),
			 -EOPNOTSUPP);
	ck_assert_int_eq(ps_x86_cache_bits(errata, PS_CACHE_WP, PS_X86_4K,
					   &bits),
			 -EOPNOTSUPP);
	ck_assert_uint_eq(bits, 0xdead); /* untouched on error */
	ck_assert_int_eq(ps_x86_cache_bits(errata, PS_CACHE_WC, PS_X86_4K,
					   &bits),
			 0);
	ck_assert_uint_eq(bits, PS_X86_PTE_PWT);
	/* The lowest slot with the type wins. */
	ck_assert_int_eq(ps_x86_cache_bits(poweron, PS_CACHE_WT, PS_X86_4K,
					   &bits),
			 0);
	ck_assert_uint_eq(bits, PS_X86_PTE_PWT);
	ck_assert_int_eq(ps_x86_cache_bits(poweron, PS_CACHE_WC, PS_X86_4K,
					   &bits),
			 -EOPNOTSUPP);
	/* A reserved memory type (2) in the selected slot. */
	ck_assert_int_eq(ps_x86_cache_mode(UINT64_C(0x02), 0, PS_X86_4K, &m),
			 -EINVAL);
}
END_TEST

START_TEST(x86_bad_arguments)
{
	uint64_t bits = 7;
	enum ps_cache_mode m = PS_CACHE_UC;

	ck_assert_int_eq(ps_x86_cache_bits(PS_X86_PAT_LINUX,
					   (enum ps_cache_mode)PS_CACHE_NR,
					   PS_X86_4K, &bits),
			 -EINVAL);
	ck_assert_int_eq(ps_x86_cache_bits(PS_X86_PAT_LINUX, PS_CACHE_WB,
					   (enum ps_x86_level)2, &bits),
			 -EINVAL);
	ck_assert_int_eq(ps_x86_cache_mode(PS_X86_PAT_LINUX, 0,
					   (enum ps_x86_level)2, &m),
			 -EINVAL);
	ck_assert_uint_eq(bits, 7);
	ck_assert_int_eq(m, PS_CACHE_UC);
}
END_TEST

/* --- encryption bit ------------------------------------------------------- */

START_TEST(cc_amd_polarity)
{
	struct ps_cc_platform p;
	const uint64_t e = UINT64_C(0x000000012345f067); /* pfn + flags */
	uint64_t out;

	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_AMD_SEV, 51), 0);
	ck_assert_uint_eq(p.mask, UINT64_C(1) << 51);
	ck_assert(!ps_cc_pte_is_private(&p, e));
	ck_assert_int_eq(ps_cc_pte_set_state(&p, e, PS_ENC_PRIVATE, &out), 0);
	ck_assert_uint_eq(out, e | (UINT64_C(1) << 51)); /* set = encrypted */
	ck_assert(ps_cc_pte_is_private(&p, out));
	ck_assert_int_eq(ps_cc_pte_set_state(&p, out, PS_ENC_SHARED, &out), 0);
	ck_assert_uint_eq(out, e);
	ck_assert_uint_eq(ps_cc_phys_mask(&p), ~(UINT64_C(1) << 51));
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_AMD_SEV, 47), 0);
	ck_assert_uint_eq(p.mask, UINT64_C(1) << 47);
}
END_TEST

START_TEST(cc_tdx_polarity)
{
	struct ps_cc_platform p;
	const uint64_t e = UINT64_C(0x000000012345f067);
	uint64_t out;

	/* A 52-bit GPA width puts the shared bit at 51; 48 puts it at 47. */
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_INTEL_TDX, 52), 0);
	ck_assert_uint_eq(p.mask, UINT64_C(1) << 51);
	ck_assert(ps_cc_pte_is_private(&p, e)); /* clear = private */
	ck_assert_int_eq(ps_cc_pte_set_state(&p, e, PS_ENC_SHARED, &out), 0);
	ck_assert_uint_eq(out, e | (UINT64_C(1) << 51)); /* set = shared */
	ck_assert(!ps_cc_pte_is_private(&p, out));
	ck_assert_int_eq(ps_cc_pte_set_state(&p, out, PS_ENC_PRIVATE, &out), 0);
	ck_assert_uint_eq(out, e);
	ck_assert_uint_eq(ps_cc_phys_mask(&p), (UINT64_C(1) << 51) - 1);
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_INTEL_TDX, 48), 0);
	ck_assert_uint_eq(p.mask, UINT64_C(1) << 47);
}
END_TEST

START_TEST(cc_polarities_are_opposite)
{
	struct ps_cc_platform amd, tdx;
	uint64_t a, t;

	ck_assert_int_eq(ps_cc_platform_init(&amd, PS_CC_AMD_SEV, 51), 0);
	ck_assert_int_eq(ps_cc_platform_init(&tdx, PS_CC_INTEL_TDX, 52), 0);
	for (int s = PS_ENC_SHARED; s <= PS_ENC_PRIVATE; s++) {
		ck_assert_int_eq(ps_cc_pte_set_state(&amd, 0,
						     (enum ps_enc_state)s, &a),
				 0);
		ck_assert_int_eq(ps_cc_pte_set_state(&tdx, 0,
						     (enum ps_enc_state)s, &t),
				 0);
		ck_assert_uint_eq(a ^ t, UINT64_C(1) << 51);
		ck_assert_int_eq(ps_cc_pte_is_private(&amd, a),
				 s == PS_ENC_PRIVATE);
		ck_assert_int_eq(ps_cc_pte_is_private(&tdx, t),
				 s == PS_ENC_PRIVATE);
	}
}
END_TEST

START_TEST(cc_none_and_bad_input)
{
	struct ps_cc_platform p;
	uint64_t out = 99;

	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_NONE, 0), 0);
	ck_assert(!ps_cc_pte_is_private(&p, ~(uint64_t)0));
	ck_assert_int_eq(ps_cc_pte_set_state(&p, 5, PS_ENC_SHARED, &out), 0);
	ck_assert_uint_eq(out, 5);
	ck_assert_int_eq(ps_cc_pte_set_state(&p, 5, PS_ENC_PRIVATE, &out),
			 -EOPNOTSUPP);
	ck_assert_uint_eq(ps_cc_phys_mask(&p), ~(uint64_t)0);
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_AMD_SEV, 31), -EINVAL);
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_AMD_SEV, 64), -EINVAL);
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_INTEL_TDX, 31), -EINVAL);
	ck_assert_int_eq(ps_cc_platform_init(&p, PS_CC_INTEL_TDX, 65), -EINVAL);
	ck_assert_int_eq(ps_cc_platform_init(&p, (enum ps_cc_vendor)7, 48),
			 -EINVAL);
	ck_assert_int_eq(ps_cc_pte_set_state(&p, 0, (enum ps_enc_state)2, &out),
			 -EINVAL);
}
END_TEST

static Suite *x86_suite(void)
{
	Suite *s = suite_create("x86");
	TCase *tc;

	tc = ps_test_tcase(s, "x86 cache encoding", 10);
	tcase_add_test(tc, x86_linux_pat_bits);
	tcase_add_test(tc, x86_round_trip_every_mode_and_level);
	tcase_add_test(tc, x86_decode_every_slot);
	tcase_add_test(tc, x86_other_pats);
	tcase_add_test(tc, x86_bad_arguments);

	tc = ps_test_tcase(s, "encryption bit", 10);
	tcase_add_test(tc, cc_amd_polarity);
	tcase_add_test(tc, cc_tdx_polarity);
	tcase_add_test(tc, cc_polarities_are_opposite);
	tcase_add_test(tc, cc_none_and_bad_input);
	return s;
}

PS_TEST_MAIN(x86_suite)
