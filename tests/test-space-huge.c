// SPDX-License-Identifier: MIT
/*
 * tests/test-space-huge.c - frames of three sizes in a space
 * (lib/space-huge.c, rules H1..H4): the declaration of which frames are 2
 * MiB and 1 GiB frames, where a frame's state lives, and the metadata the
 * space holds (ps_space_stats()).
 */
#include <pagestate/space.h>

#include "../lib/failpoint.h"
#include "harness.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define P2M (UINT64_C(1) << PS_SPACE_ORDER_2M)
#define P1G (UINT64_C(1) << PS_SPACE_ORDER_1G)
/* Two 1 GiB frames of frames, and a space of 4 GiB. */
#define NFRAMES (2 * P1G)
#define SPACE_SIZE (UINT64_C(4) << 30)

static struct ps_space *sp;
static _Atomic(unsigned) freed_total, dirty_total;

static void on_free(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	(void)frame;
	atomic_fetch_add(&freed_total, 1);
}

static void on_dirty(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	(void)frame;
	atomic_fetch_add(&dirty_total, 1);
}

static void setup(void)
{
	struct ps_space_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	atomic_store(&freed_total, 0);
	atomic_store(&dirty_total, 0);
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.free_frame = on_free;
	cfg.hooks.dirty = on_dirty;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

/* --- declaration (H1) ----------------------------------------------------- */

START_TEST(set_order_rejects_bad_ranges)
{
	/* Unknown order, empty, unaligned, beyond nframes. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P2M, 1), -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 0, PS_SPACE_ORDER_2M),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 1, P2M,
						  PS_SPACE_ORDER_2M),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P2M + 1,
						  PS_SPACE_ORDER_2M),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P2M, P1G,
						  PS_SPACE_ORDER_1G),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P2M,
						  PS_SPACE_ORDER_1G),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, NFRAMES - P2M, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 -EINVAL);
	ck_assert_int_eq(ps_space_set_frame_order(sp, NFRAMES, P2M,
						  PS_SPACE_ORDER_2M),
			 -EINVAL);
	/* The last 2 MiB and the last 1 GiB are fine. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, NFRAMES - P2M, P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, NFRAMES - P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
}
END_TEST

START_TEST(set_order_and_lookup)
{
	unsigned int o = 99;

	ck_assert_uint_eq(ps_space_frame_order(sp, 0), PS_SPACE_ORDER_4K);
	ck_assert_ptr_eq(ps_space_frame_word(sp, 5, &o), ps_space_page(sp, 5));
	ck_assert_uint_eq(o, PS_SPACE_ORDER_4K);
	ck_assert_ptr_null(ps_space_frame_word(sp, NFRAMES, &o));
	ck_assert_uint_eq(ps_space_frame_order(sp, NFRAMES), 0);

	ck_assert_int_eq(ps_space_set_frame_order(sp, 2 * P2M, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
	/* Boundaries: the frame before, first, last, the frame after. */
	ck_assert_uint_eq(ps_space_frame_order(sp, 2 * P2M - 1), 0);
	ck_assert_uint_eq(ps_space_frame_order(sp, 2 * P2M), 9);
	ck_assert_uint_eq(ps_space_frame_order(sp, 4 * P2M - 1), 9);
	ck_assert_uint_eq(ps_space_frame_order(sp, 4 * P2M), 0);
	ck_assert_uint_eq(ps_space_frame_order(sp, P1G - 1), 0);
	ck_assert_uint_eq(ps_space_frame_order(sp, P1G), 18);
	ck_assert_uint_eq(ps_space_frame_order(sp, NFRAMES - 1), 18);

	/* A 4 KiB page inside a whole frame answers from the frame's word. */
	{
		struct ps_page *a = ps_space_frame_word(sp, 2 * P2M + 7, &o);

		ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
		ck_assert_ptr_ne(a, ps_space_page(sp, 2 * P2M + 7));
		ck_assert_ptr_eq(ps_space_frame_word(sp, 2 * P2M, NULL), a);
		ck_assert_ptr_eq(ps_space_frame_word(sp, 3 * P2M - 1, NULL), a);
		ck_assert_ptr_ne(ps_space_frame_word(sp, 3 * P2M, NULL), a);
	}
	{
		struct ps_page *g = ps_space_frame_word(sp, P1G + 12345, &o);

		ck_assert_uint_eq(o, PS_SPACE_ORDER_1G);
		ck_assert_ptr_eq(ps_space_frame_word(sp, NFRAMES - 1, NULL), g);
	}
	/* Back to 4 KiB frames. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, 2 * P2M, P2M,
						  PS_SPACE_ORDER_4K),
			 0);
	ck_assert_uint_eq(ps_space_frame_order(sp, 2 * P2M), 0);
	ck_assert_uint_eq(ps_space_frame_order(sp, 3 * P2M), 9);
}
END_TEST

START_TEST(set_order_refuses_frames_in_use)
{
	struct ps_page *g;

	/* A 4 KiB frame mapped in the range: busy, nothing changes. */
	ck_assert_int_eq(ps_space_map(sp, 0, P2M + 3, 0), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 -EBUSY);
	ck_assert_uint_eq(ps_space_frame_order(sp, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	/* A huge word held: the frame is in use. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
	g = ps_space_frame_word(sp, P1G, NULL);
	ck_assert_int_eq(ps_page_init(g, 1), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_2M),
			 -EBUSY);
	ck_assert_uint_eq(ps_space_frame_order(sp, P1G), 18);
	ck_assert(ps_page_put(g));
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_2M),
			 0);
}
END_TEST

/* --- stats ---------------------------------------------------------------- */

START_TEST(stats_count_what_is_resident)
{
	struct ps_space_stats st, st2;

	ck_assert_int_eq(ps_space_stats(sp, NULL), -EINVAL);
	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	ck_assert_uint_eq(st.words_bytes[0], 0);
	ck_assert_uint_eq(st.words_bytes[1], 0);
	ck_assert_uint_eq(st.words_bytes[2], 0);
	ck_assert_uint_gt(st.pgtable_bytes, 0);
	ck_assert_uint_eq(st.metadata_bytes,
			  st.pgtable_bytes + st.bitmap_bytes);
	/* One 4 KiB frame mapped: one page of words, and some table. */
	ck_assert_int_eq(ps_space_map(sp, 0, 7, 0), 0);
	ck_assert_int_eq(ps_space_stats(sp, &st2), 0);
	ck_assert_uint_eq(st2.words_bytes[0], (uint64_t)sysconf(_SC_PAGESIZE));
	ck_assert_uint_gt(st2.pgtable_bytes, st.pgtable_bytes);
	/* A declaration touches one page of orders, no words. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	ck_assert_uint_eq(st.words_bytes[0], st2.words_bytes[0]);
	ck_assert_uint_eq(st.words_bytes[1], (uint64_t)sysconf(_SC_PAGESIZE));
	ck_assert_uint_eq(st.words_bytes[2], 0);
	ck_assert_uint_eq(st.frames_split, 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
}
END_TEST

static Suite *space_huge_suite(void)
{
	Suite *s = suite_create("space-huge");
	TCase *tc;

	tc = ps_test_tcase(s, "declaration", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, set_order_rejects_bad_ranges);
	tcase_add_test(tc, set_order_and_lookup);
	tcase_add_test(tc, set_order_refuses_frames_in_use);

	tc = ps_test_tcase(s, "stats", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stats_count_what_is_resident);
	return s;
}

PS_TEST_MAIN(space_huge_suite)
