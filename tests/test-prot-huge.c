// SPDX-License-Identifier: MIT
/*
 * tests/test-prot-huge.c - conversion, cache modes and mprotect on huge
 * frames (lib/prot-convert.c, P9): a whole 2 MiB or 1 GiB frame is one
 * transition on its word and one compare-and-swap of its huge entry; part of
 * one splits the entry and the frame's state first and converts exactly that
 * part, whatever the frame's other parts hold.
 */
#include <pagestate/prot.h>
#include <pagestate/space.h>

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define P2M (UINT64_C(1) << PS_SPACE_ORDER_2M)
#define P1G (UINT64_C(1) << PS_SPACE_ORDER_1G)
/* Frames: 1 GiB of 2 MiB frames, then one 1 GiB frame; a 4 GiB space. */
#define NFRAMES (2 * P1G)
#define SPACE_SIZE (UINT64_C(4) << 30)

static struct ps_space *sp;

static void setup(void)
{
	struct ps_space_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P1G,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
}

static void teardown(void)
{
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

/* The entry of @addr, its leaf's order in *@order. */
static ps_pte_t entry(uint64_t addr, unsigned int *order)
{
	ps_pte_t e, leaf;
	unsigned int o;

	ck_assert_int_eq(ps_pgtable_get_level(ps_space_pgtable(sp), addr, &e,
					      &o, &leaf),
			 0);
	if (order)
		*order = o;
	return e;
}

/* Is the state of @frame private (on whichever word holds it)? */
static bool frame_private(uint64_t frame, unsigned int *order)
{
	return ps_page_load(ps_space_frame_word(sp, frame, order)) &
	       PS_PAGE_PRIVATE;
}

static uint64_t frames_split(void)
{
	struct ps_space_stats st;

	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	return st.frames_split;
}

/* --- whole frames: one transition, no split ------------------------------- */

START_TEST(convert_whole_2m_frame)
{
	struct ps_convert_opts o = {0};
	unsigned int lo, fo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert(!(entry(0, &lo) & PS_PTE_ENC));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, P2M);
	/* Every page: the huge entry, with ENC; the frame's word: private. */
	for (uint64_t p = 0; p < P2M; p += 73) {
		ck_assert(entry(p * PG, &lo) & PS_PTE_ENC);
		ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
		ck_assert(frame_private(p, &fo));
		ck_assert_uint_eq(fo, PS_SPACE_ORDER_2M);
	}
	ck_assert(ps_page_load(ps_space_frame_word(sp, 0, NULL)) &
		  PS_PAGE_INACCESSIBLE);
	ck_assert_uint_eq(frames_split(), 0);
	/* Already there: nothing to do. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, 0);
	/* And back. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_SHARED, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, P2M);
	ck_assert(!(entry((P2M - 1) * PG, &lo) & PS_PTE_ENC));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert(!frame_private(P2M - 1, &fo));
	ck_assert_uint_eq(frames_split(), 0);
	/* The frame is unfrozen with its mapping's reference. */
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, 0, NULL)), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * The access check of a page inside a whole frame reads the frame's word
 * (P9), not the free 4 KiB word under it: a whole private frame refuses a
 * shared access and allows a private one, at any of its pages, and the
 * fault names the page. (It read the free word, which says shared: a shared
 * access to a private 2 MiB frame was allowed.)
 */
START_TEST(check_access_inside_whole_frame)
{
	struct ps_memory_fault mf;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_check_access(sp, 7 * PG, 8, PS_ENC_SHARED,
					      &mf),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0,
					 NULL, NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, P1G * PG, P1G * PG, PS_ENC_PRIVATE,
					 0, NULL, NULL),
			 0);
	ck_assert_int_eq(ps_prot_check_access(sp, 7 * PG, 8, PS_ENC_PRIVATE,
					      &mf),
			 0);
	ck_assert_int_eq(ps_prot_check_access(sp, 7 * PG + 16, 8, PS_ENC_SHARED,
					      &mf),
			 -EFAULT);
	ck_assert_uint_eq(mf.addr, 7 * PG + 16);
	ck_assert_uint_eq(mf.flags, 0);
	ck_assert_int_eq(ps_prot_check_access(sp, (P1G + 12345) * PG, PG,
					      PS_ENC_SHARED, &mf),
			 -EFAULT);
	ck_assert_int_eq(ps_prot_check_access(sp, (P1G + 12345) * PG, PG,
					      PS_ENC_PRIVATE, &mf),
			 0);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_SHARED, 0,
					 NULL, NULL),
			 0);
	ck_assert_int_eq(ps_prot_check_access(sp, 7 * PG, 8, PS_ENC_SHARED,
					      &mf),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, P1G * PG, P1G * PG, PS_ENC_SHARED,
					 0, NULL, NULL),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

START_TEST(convert_whole_1g_frame)
{
	struct ps_convert_opts o = {0};
	unsigned int lo, fo;

	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, P1G * PG, P1G * PG, PS_ENC_PRIVATE,
					 0, &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, P1G);
	ck_assert(entry((P1G + 12345) * PG, &lo) & PS_PTE_ENC);
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_1G);
	ck_assert(frame_private(P1G + 999, &fo));
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_1G);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_prot_convert(sp, P1G * PG, P1G * PG, PS_ENC_SHARED,
					 0, NULL, NULL),
			 0);
	ck_assert(!(entry((2 * P1G - 1) * PG, &lo) & PS_PTE_ENC));
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/* A pin of the whole frame: -EAGAIN at its first page, nothing changed. */
START_TEST(convert_whole_frame_pinned_fails)
{
	uint64_t unit, n, off = 99;
	unsigned int lo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, P2M * PG, P2M * PG, 0, &unit, 1,
					    &n),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 2 * P2M * PG, PS_ENC_PRIVATE, 0,
					 NULL, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, P2M * PG);
	/* The first frame, frozen and flipped before, is back as it was. */
	ck_assert(!(entry(0, &lo) & PS_PTE_ENC));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert(!frame_private(0, NULL));
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, 0, NULL)), 1);
	ck_assert(!(entry(P2M * PG, NULL) & PS_PTE_ENC));
	ck_assert_int_eq(ps_space_unpin(sp, &unit, 1, 0), 0);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

/* --- CPU maps of pages inside whole frames (P5, P6 per unit) -------------- */

START_TEST(kmap_inside_whole_frame)
{
	unsigned int o;
	struct ps_page *w;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	w = ps_space_frame_word(sp, 0, &o);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	/* A page of the whole frame: one reference on the frame's word. */
	ck_assert_int_eq(ps_prot_kmap(sp, 7, 0), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 7), 1);
	ck_assert_uint_eq(ps_page_refs(w), 2);
	/* A second map of it joins; another page takes one more. */
	ck_assert_int_eq(ps_prot_kmap(sp, 7, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 300, 0), 0);
	ck_assert_uint_eq(ps_page_refs(w), 3);
	/* Not split: the frame stays one unit. */
	ck_assert_ptr_eq(ps_space_frame_word(sp, 7, &o), w);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 7), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 7), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 7), -EINVAL);
	ck_assert_uint_eq(ps_page_refs(w), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 300), 0);
	ck_assert_uint_eq(ps_page_refs(w), 1);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* A map taken on the whole word, released after the frame split. */
START_TEST(kmap_whole_then_split)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_kmap(sp, P1G + 5, 0), 0);
	/* A 4 KiB pin elsewhere splits the 1 GiB frame down to that page. */
	ck_assert_int_eq(ps_space_pin_range(sp, (P1G + 3 * P2M) * PG, PG, 0,
					    &f),
			 0);
	ck_assert_uint_gt(frames_split(), 0);
	/* The map's reference is on every part now: released from each. */
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, P1G + 5, NULL)),
			  2);
	ck_assert_int_eq(ps_prot_kunmap(sp, P1G + 5), 0);
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, P1G + 5, NULL)),
			  1);
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, P1G + 3 * P2M,
							   NULL)),
			  2); /* the mapping's and the pin's */
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, 2 * P1G - 1,
							   NULL)),
			  1);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/*
 * A conversion of a whole frame sees a CPU map of any page of it, even one
 * whose reference the caller declares (P5): -EAGAIN, nothing changed.
 */
START_TEST(convert_whole_frame_cpu_mapped_inside)
{
	struct ps_convert_opts o = {0};
	uint64_t off = 99;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 100, 0), 0);
	o.extra_refs = 1; /* the caller's own map */
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 0);
	ck_assert(!frame_private(100, NULL));
	ck_assert_int_eq(ps_prot_kunmap(sp, 100), 0);
	o.extra_refs = 0;
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	/* Private now: a map must ask; the first makes it accessible. */
	ck_assert_int_eq(ps_prot_kmap(sp, 100, 0), -EPERM);
	ck_assert_int_eq(ps_prot_kmap(sp, 100, PS_KMAP_PRIVATE), 0);
	ck_assert(!(ps_page_load(ps_space_frame_word(sp, 0, NULL)) &
		    PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_prot_kunmap(sp, 100), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* --- mprotect of huge frames: whole is one CAS, part splits first --------- */

START_TEST(mprotect_whole_frame_keeps_the_leaf)
{
	unsigned int lo;
	ps_pte_t e;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(5 * PG, &lo)));
	/* Read-only over the whole first frame: its leaf, not split. */
	ck_assert_int_eq(ps_prot_mprotect(sp, 0, P2M * PG, PS_PROT_READ), 0);
	e = entry((P2M - 1) * PG, &lo);
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert(!ps_pte_may_write(e));
	ck_assert(!ps_pte_is_writable(e));
	ck_assert(ps_pte_may_write(entry(P2M * PG, &lo)));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert_int_ne(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	/* And back: writable again on a write fault. */
	ck_assert_int_eq(ps_prot_mprotect(sp, 0, P2M * PG,
					  PS_PROT_READ | PS_PROT_WRITE),
			 0);
	ck_assert(ps_pte_may_write(entry(7 * PG, &lo)));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

START_TEST(mprotect_part_splits_first)
{
	unsigned int lo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_mprotect(sp, 3 * PG, 2 * PG, PS_PROT_READ), 0);
	/* Exactly that part: the leaf and the frame's state split. */
	ck_assert(!ps_pte_may_write(entry(3 * PG, &lo)));
	ck_assert_uint_eq(lo, 0);
	ck_assert(!ps_pte_may_write(entry(4 * PG, NULL)));
	ck_assert(ps_pte_may_write(entry(2 * PG, NULL)));
	ck_assert(ps_pte_may_write(entry(5 * PG, NULL)));
	ck_assert(ps_pte_may_write(entry((P2M - 1) * PG, NULL)));
	ck_assert_uint_gt(frames_split(), 0);
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_ne(ps_space_fault(sp, 4 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

START_TEST(mprotect_whole_1g_frame)
{
	unsigned int lo;

	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_prot_mprotect(sp, P1G * PG, P1G * PG, PS_PROT_READ),
			 0);
	ck_assert(!ps_pte_may_write(entry((P1G + 777) * PG, &lo)));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_1G);
	ck_assert_uint_eq(frames_split(), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/* --- cache modes of huge frames: a unit is one transition ----------------- */

START_TEST(set_cache_whole_and_part)
{
	unsigned int o;

	/* A free whole frame, named as its unit: one word, no split. */
	ck_assert_int_eq(
		ps_prot_set_cache(sp, PS_SPACE_UNIT(P2M, PS_SPACE_ORDER_2M),
				  PS_CACHE_WC, 0),
		0);
	ck_assert_uint_eq(ps_page_word_cache(ps_page_load(
				  ps_space_frame_word(sp, P2M + 9, &o))),
			  PS_CACHE_WC);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(frames_split(), 0);
	/* Not a whole frame of that order: refused. */
	ck_assert_int_eq(
		ps_prot_set_cache(sp, PS_SPACE_UNIT(P2M + 1, PS_SPACE_ORDER_2M),
				  PS_CACHE_WC, 0),
		-EINVAL);
	ck_assert_int_eq(
		ps_prot_set_cache(sp, PS_SPACE_UNIT(P2M, PS_SPACE_ORDER_1G),
				  PS_CACHE_WC, 0),
		-EINVAL);
	/* A 4 KiB frame of it: the frame's state splits, that page changes. */
	ck_assert_int_eq(ps_prot_set_cache(sp, P2M + 9, PS_CACHE_UC, 0), 0);
	ck_assert_uint_eq(frames_split(), 1);
	ck_assert_uint_eq(ps_page_word_cache(ps_page_load(
				  ps_space_frame_word(sp, P2M + 9, &o))),
			  PS_CACHE_UC);
	ck_assert_uint_eq(o, 0);
	ck_assert_uint_eq(ps_page_word_cache(ps_page_load(
				  ps_space_frame_word(sp, P2M + 10, NULL))),
			  PS_CACHE_WC);
	/* A mapped whole frame is in use. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_set_cache(sp,
					   PS_SPACE_UNIT(0, PS_SPACE_ORDER_2M),
					   PS_CACHE_WC, 0),
			 -EBUSY);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

START_TEST(set_inaccessible_whole_and_part)
{
	unsigned int o;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	/* A whole frame as its unit: its word, no split. */
	ck_assert_int_eq(ps_prot_set_inaccessible(
				 sp, PS_SPACE_UNIT(P2M, PS_SPACE_ORDER_2M)),
			 0);
	ck_assert(ps_page_load(ps_space_frame_word(sp, P2M + 3, &o)) &
		  PS_PAGE_INACCESSIBLE);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(frames_split(), 0);
	/* CPU-mapped anywhere in it: -EBUSY. */
	ck_assert_int_eq(ps_prot_kmap(sp, P2M + 3, 0), 0);
	ck_assert_int_eq(ps_prot_set_inaccessible(
				 sp, PS_SPACE_UNIT(P2M, PS_SPACE_ORDER_2M)),
			 -EBUSY);
	ck_assert_int_eq(ps_prot_kunmap(sp, P2M + 3), 0);
	/* A 4 KiB frame of a whole frame: split first, that page alone. */
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, 7), 0);
	ck_assert_uint_eq(frames_split(), 1);
	ck_assert(ps_page_load(ps_space_frame_word(sp, 7, &o)) &
		  PS_PAGE_INACCESSIBLE);
	ck_assert_uint_eq(o, 0);
	ck_assert(!(ps_page_load(ps_space_frame_word(sp, 8, NULL)) &
		    PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

/* --- part of a frame: split first, exactly that part ---------------------- */

START_TEST(convert_4k_inside_2m_frame)
{
	struct ps_convert_opts o = {0};
	unsigned int lo, fo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 5 * PG, PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, 1);
	ck_assert(entry(5 * PG, &lo) & PS_PTE_ENC);
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_4K);
	ck_assert(frame_private(5, &fo));
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_4K);
	/* Its neighbours and the rest: split, unchanged. */
	for (uint64_t p = 0; p < P2M; p++) {
		if (p == 5)
			continue;
		ck_assert(!(entry(p * PG, &lo) & PS_PTE_ENC));
		ck_assert_uint_eq(lo, PS_SPACE_ORDER_4K);
		ck_assert(!frame_private(p, &fo));
		ck_assert_uint_eq(fo, PS_SPACE_ORDER_4K);
		ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, p,
								   NULL)),
				  1);
	}
	ck_assert_uint_eq(frames_split(), 1);
	ck_assert_int_eq(ps_prot_convert(sp, 5 * PG, PG, PS_ENC_SHARED, 0, &o,
					 NULL),
			 0);
	ck_assert(!frame_private(5, NULL));
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* The 2 MiB part of a 1 GiB frame: split to 2 MiB only, then whole. */
START_TEST(convert_2m_inside_1g_frame)
{
	struct ps_convert_opts o = {0};
	const uint64_t a = (P1G + 3 * P2M) * PG;
	unsigned int lo, fo;

	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, a, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, P2M);
	/*
	 * The table's split of the 1 GiB leaf goes down to 4 KiB entries for
	 * the extent at the edge (ps_pgtable_split()); the state stays one 2
	 * MiB word, frozen once.
	 */
	ck_assert(entry(a + 7 * PG, &lo) & PS_PTE_ENC);
	ck_assert_uint_le(lo, PS_SPACE_ORDER_2M);
	ck_assert(frame_private(P1G + 3 * P2M + 7, &fo));
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_2M);
	ck_assert(!(entry(a - PG, &lo) & PS_PTE_ENC));
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	ck_assert(!frame_private(P1G + 3 * P2M - 1, &fo));
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_2M);
	ck_assert(!(entry(a + P2M * PG, NULL) & PS_PTE_ENC));
	ck_assert_int_eq(ps_prot_convert(sp, a, P2M * PG, PS_ENC_SHARED, 0,
					 NULL, NULL),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/*
 * The case: another 4 KiB of the same frame is pinned; converting
 * this one succeeds at once, and that one is refused (its own pin).
 */
START_TEST(convert_4k_with_other_subpage_pinned)
{
	uint64_t f, off = 99;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 7 * PG, PG, 0, &f), 0);
	ck_assert_uint_eq(f, 7);
	ck_assert_int_eq(ps_prot_convert(sp, 5 * PG, PG, PS_ENC_PRIVATE, 0,
					 NULL, NULL),
			 0);
	ck_assert(frame_private(5, NULL));
	ck_assert_int_eq(ps_prot_convert(sp, 7 * PG, PG, PS_ENC_PRIVATE, 0,
					 NULL, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 0);
	ck_assert(!frame_private(7, NULL));
	ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, 7, NULL)), 1);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 7 * PG, PG, PS_ENC_PRIVATE, 0,
					 NULL, NULL),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * Why a 4 KiB conversion inside a whole frame splits the frame's state (P9):
 * the page's encryption is its own from then on, and every reference taken
 * later decides on it alone (P2). A pin of that page, or of the range that
 * holds it, is refused; a pin of its neighbour is not; the access check
 * reads the page as private and its neighbour as shared. Kept whole, the
 * frame's one word would say one thing for all 512 pages.
 */
START_TEST(convert_4k_inside_whole_frame_is_its_own)
{
	uint64_t f[P2M], off = 99;
	struct ps_memory_fault mf;
	unsigned int fo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 5 * PG, PG, PS_ENC_PRIVATE, 0,
					 NULL, &off),
			 0);
	ck_assert(frame_private(5, &fo));
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_4K);
	ck_assert_int_eq(ps_space_pin_range(sp, 5 * PG, PG, 0, f), -EPERM);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, P2M * PG, 0, f), -EPERM);
	ck_assert_int_eq(ps_space_pin_range(sp, 6 * PG, PG, 0, f), 0);
	ck_assert_uint_eq(f[0], 6);
	ck_assert_int_eq(ps_prot_check_access(sp, 5 * PG, PG, PS_ENC_SHARED,
					      &mf),
			 -EFAULT);
	ck_assert_int_eq(ps_prot_check_access(sp, 6 * PG, PG, PS_ENC_SHARED,
					      &mf),
			 0);
	ck_assert_int_eq(ps_space_unpin(sp, f, 1, 0), 0);
	/* Nothing pinned was left behind by the refused pins. */
	for (uint64_t p = 0; p < P2M; p++)
		ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, p,
								   NULL)),
				  0);
	ck_assert_int_eq(ps_prot_convert(sp, 5 * PG, PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * A pin of a whole frame is a pin of each of its pages (S17): a conversion
 * of a range that ends inside it fails with -EAGAIN at the first of its
 * pages in the range (the offset names it), and changes nothing, in this
 * frame or in the one before.
 */
START_TEST(convert_4k_inside_whole_pinned_frame_fails)
{
	uint64_t unit, n, off = 99;
	unsigned int lo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, P2M * PG, P2M * PG, 0, &unit, 1,
					    &n),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(ps_prot_convert(sp, (P2M - 1) * PG, 3 * PG,
					 PS_ENC_PRIVATE, 0, NULL, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, PG);
	for (uint64_t p = P2M - 1; p < P2M + 2; p++) {
		ck_assert(!(entry(p * PG, &lo) & PS_PTE_ENC));
		ck_assert(!frame_private(p, NULL));
	}
	/* The pin is on every part now, and released from every part. */
	ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, P2M + 1, NULL)),
			  1);
	ck_assert_int_eq(ps_space_unpin(sp, &unit, 1, 0), 0);
	for (uint64_t p = P2M; p < 2 * P2M; p++)
		ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, p,
								   NULL)),
				  0);
	ck_assert_int_eq(ps_prot_convert(sp, (P2M - 1) * PG, 3 * PG,
					 PS_ENC_PRIVATE, 0, NULL, NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, (P2M - 1) * PG, 3 * PG,
					 PS_ENC_SHARED, 0, NULL, NULL),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

/*
 * A huge entry over split state (a part was pinned and unpinned): the whole
 * extent converts as one leaf, each part's word frozen and flipped.
 */
START_TEST(convert_whole_leaf_over_split_state)
{
	struct ps_convert_opts o = {0};
	unsigned int lo, fo;
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 7 * PG, PG, 0, &f), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	(void)entry(0, &lo);
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	(void)frame_private(0, &fo);
	ck_assert_uint_eq(fo, PS_SPACE_ORDER_4K);
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, P2M);
	ck_assert(entry(100 * PG, &lo) & PS_PTE_ENC);
	ck_assert_uint_eq(lo, PS_SPACE_ORDER_2M);
	for (uint64_t p = 0; p < P2M; p++)
		ck_assert(frame_private(p, NULL));
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* A range across two frames' edge: the two parts, nothing else. */
START_TEST(convert_across_two_frames_edge)
{
	struct ps_convert_opts o = {0};
	unsigned int lo;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, (P2M - 1) * PG, 2 * PG,
					 PS_ENC_PRIVATE, 0, &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, 2);
	ck_assert(frame_private(P2M - 1, NULL));
	ck_assert(frame_private(P2M, NULL));
	ck_assert(!frame_private(P2M - 2, NULL));
	ck_assert(!frame_private(P2M + 1, NULL));
	ck_assert(entry(P2M * PG, &lo) & PS_PTE_ENC);
	ck_assert_uint_eq(lo, 0);
	ck_assert(!(entry((P2M + 1) * PG, NULL) & PS_PTE_ENC));
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

/*
 * Runs (P3) and a huge unit (P9) in one range: three 4 KiB pages split off the
 * frame before, a whole 2 MiB frame, three split off the frame after. A commit
 * unfreezes the 4 KiB frames from its runs and the whole frame from the bitmap;
 * an undo (the last page holds an undeclared reference) puts both back.
 */
static void check_mixed(uint64_t first, uint64_t n, bool priv)
{
	for (uint64_t f = first; f < first + n; f++) {
		unsigned int lo, fo;
		struct ps_page *w = ps_space_frame_word(sp, f, &fo);
		const bool whole = f >= P2M && f < 2 * P2M;

		ck_assert_int_eq(!!(entry(f * PG, &lo) & PS_PTE_ENC), priv);
		ck_assert_uint_eq(lo, whole ? PS_SPACE_ORDER_2M : 0);
		ck_assert_uint_eq(fo, whole ? PS_SPACE_ORDER_2M : 0);
		ck_assert_int_eq(!!(ps_page_load(w) & PS_PAGE_PRIVATE), priv);
		ck_assert(!ps_page_is_frozen(w));
		if (!whole || f == P2M)
			ck_assert_uint_eq(ps_page_refs(w), 1);
	}
}

START_TEST(convert_runs_beside_a_whole_frame)
{
	const uint64_t first = P2M - 3, n = P2M + 6;
	struct ps_convert_opts o = {0};
	uint64_t off = 0;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, first * PG, n * PG, PS_ENC_PRIVATE,
					 0, &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, n);
	check_mixed(first, n, true);
	ck_assert(!frame_private(first - 1, NULL));
	ck_assert(!frame_private(first + n, NULL));
	/* The last page's frame holds a reference nobody declared. */
	ck_assert_int_eq(ps_page_get(ps_space_frame_word(sp, first + n - 1,
							 NULL)),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, first * PG, n * PG, PS_ENC_SHARED,
					 0, &o, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, (n - 1) * PG);
	(void)ps_page_put(ps_space_frame_word(sp, first + n - 1, NULL));
	check_mixed(first, n, true);
	ck_assert_int_eq(ps_prot_convert(sp, first * PG, n * PG, PS_ENC_SHARED,
					 0, &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, n);
	check_mixed(first, n, false);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 3 * P2M * PG, 0), 0);
}
END_TEST

static _Atomic(unsigned) prepares;

static int count_prepare(void *ctx, struct ps_space *s, uint64_t addr,
			 uint64_t frame, enum ps_enc_state to)
{
	(void)ctx;
	(void)s;
	(void)to;
	if (frame != addr / PG) /* identity-mapped in these tests */
		return -EINVAL;
	atomic_fetch_add(&prepares, 1);
	return 0;
}

/* With hooks every page is converted alone: the frame is split first. */
START_TEST(convert_with_hooks_splits_the_frame)
{
	struct ps_prot_hooks h = {count_prepare, NULL, NULL, NULL};
	struct ps_convert_opts o = {0};

	atomic_store(&prepares, 0);
	ck_assert_int_eq(ps_prot_set_hooks(sp, &h), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, P2M * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, P2M);
	ck_assert_uint_eq(atomic_load(&prepares), P2M);
	for (uint64_t p = 0; p < P2M; p += 31)
		ck_assert(frame_private(p, NULL) &&
			  (entry(p * PG, NULL) & PS_PTE_ENC));
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* --- stress: no false -EAGAIN while other parts are pinned ---------------- */

static _Atomic(unsigned) violations;

static void violation(const char *what, uint64_t a, uint64_t b)
{
	/* Recorded, asserted after the join (no ck_assert off this thread). */
	if (!atomic_fetch_add(&violations, 1))
		fprintf(stderr, "violation: %s (%#llx, %#llx)\n", what,
			(unsigned long long)a, (unsigned long long)b);
}

#define CONV_PAGE 5 /* the page converted; the pinner never pins it */

struct conv_race {
	_Atomic(uint64_t) pins;
	struct ps_test_overlap ov; /* side 0 the converter, 1 the pinner */
};

static void *conv_race_pinner(void *arg)
{
	struct conv_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	struct ps_test_rng g = ps_test_rng_new(1);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t k = ps_test_below(&g, P2M - 1), f;
		int rc;

		if (k >= CONV_PAGE)
			k++; /* any page but the converted one */
		rc = ps_space_pin_range(sp, k * PG, PG, 0, &f);
		if (rc == -EFAULT)
			continue; /* unmapped at that instant (a remap) */
		if (rc || f != k) {
			violation("pin of another part failed", (uint64_t)rc,
				  k);
			continue;
		}
		if (ps_space_unpin(sp, &f, 1, 0))
			violation("unpin failed", f, 0);
		atomic_fetch_add(&r->pins, 1);
	}
	return NULL;
}

START_TEST(stress_convert_4k_while_other_parts_pinned)
{
	static struct conv_race r;
	struct ps_test_side me;
	pthread_t t;
	uint64_t i;

	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       500;
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, conv_race_pinner, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		const enum ps_enc_state to = i & 1 ? PS_ENC_SHARED
						   : PS_ENC_PRIVATE;
		uint64_t off = 0;
		int rc;

		/*
		 * Every 16 rounds back to one huge entry (the map merges the
		 * free parts), so that the splits and the merges race the pins
		 * too. A pin's split let in while a merge was freeing the parts
		 * failed with -EBUSY (S18: the merge passes the split gate;
		 * fp_split_against_merge in tests/test-space-huge.c).
		 */
		if (i % 16 == 0 && i) {
			if (ps_space_unmap(sp, 0, P2M * PG, 0) ||
			    ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL))
				violation("remap failed", i, 0);
		}
		rc = ps_prot_convert(sp, CONV_PAGE * PG, PG, to, 0, NULL, &off);
		if (rc)
			violation("conversion failed", (uint64_t)-rc, i);
		if (!frame_private(CONV_PAGE, NULL) != (to == PS_ENC_SHARED))
			violation("page not converted", i, 0);
	}
	pthread_join(t, NULL);
	/* Shared again before the unmap, so that the frame can merge. */
	if (frame_private(CONV_PAGE, NULL))
		ck_assert_int_eq(ps_prot_convert(sp, CONV_PAGE * PG, PG,
						 PS_ENC_SHARED, 0, NULL, NULL),
				 0);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "4 KiB conversion vs pins of other parts");
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
	for (uint64_t p = 0; p < P2M; p++) {
		ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, p,
								   NULL)),
				  0);
		ck_assert(!frame_private(p, NULL));
	}
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * 4 KiB conversions back and forth against partial pins anywhere in the same
 * frames (P9, S17): the converter converts single pages among the first
 * HOT_PAGES of a frame, each to the state it is not in, and moves on to the
 * next whole frame every FRAME_OPS conversions, so that its first conversion
 * there (which splits the frame's state) races the pinner's pins, which split
 * it too. The pinner pins and unpins single pages among the same HOT_PAGES of
 * the converter's frame. Page k's epoch is odd from before the pinner's try
 * on it until after its unpin (or refusal): a conversion of page k that
 * fails with -EAGAIN while the epoch stayed even and unchanged was failed by
 * something that was no pin of that page (a false -EAGAIN: none allowed). A
 * page the pinner holds is shared when pinned and still shared before the
 * unpin (no conversion of a pinned page); a private page's pin is refused.
 */
#define HOT_PAGES 8
#define FRAME_OPS 32

struct conv_pin_race {
	_Atomic(uint64_t) frame; /* the 2 MiB frame both work in */
	_Atomic(uint64_t) epoch[HOT_PAGES];
	_Atomic(uint64_t) pins, refused, eagain;
	struct ps_test_overlap ov; /* side 0 the converter, 1 the pinner */
};

static void *conv_pin_pinner(void *arg)
{
	struct conv_pin_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	struct ps_test_rng g = ps_test_rng_new(2);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		const uint64_t k = ps_test_below(&g, HOT_PAGES);
		const uint64_t page = atomic_load(&r->frame) * P2M + k;
		uint64_t f;
		int rc;

		atomic_fetch_add(&r->epoch[k], 1); /* odd: tried or held */
		rc = ps_space_pin_range(sp, page * PG, PG, 0, &f);
		if (rc == 0) {
			if (f != page)
				violation("pinned another frame", f, page);
			if (frame_private(page, NULL))
				violation("a private page pinned", page, 0);
			for (int spin = 0; spin < (k & 1 ? 512 : 16); spin++)
				if (frame_private(page, NULL))
					violation("a pinned page converted",
						  page, (uint64_t)spin);
			if (ps_space_unpin(sp, &f, 1, 0))
				violation("unpin failed", f, 0);
			atomic_fetch_add(&r->pins, 1);
		} else if (rc == -EPERM) {
			atomic_fetch_add(&r->refused, 1); /* private now */
		} else {
			violation("pin failed", (uint64_t)-rc, page);
		}
		atomic_fetch_add(&r->epoch[k], 1); /* even: released */
	}
	return NULL;
}

START_TEST(stress_convert_4k_back_and_forth_vs_partial_pins)
{
	static struct conv_pin_race r;
	const uint64_t nframes = P1G / P2M; /* the 2 MiB frames mapped */
	struct ps_test_rng g = ps_test_rng_new(3);
	struct ps_test_side me;
	uint64_t i, last = 0;
	pthread_t t;

	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(ps_space_map_range(sp, 0, P1G * PG, 0, 0, NULL), 0);
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       500;
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, conv_pin_pinner, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		const uint64_t fr = i / FRAME_OPS % nframes;
		const uint64_t k = ps_test_below(&g, HOT_PAGES);
		const uint64_t page = fr * P2M + k;
		const enum ps_enc_state to = frame_private(page, NULL)
						     ? PS_ENC_SHARED
						     : PS_ENC_PRIVATE;
		uint64_t e0, e1, off = 99;
		int rc;

		if (i % FRAME_OPS == 0)
			atomic_store(&r.frame, fr); /* the next, still whole */
		last = fr > last ? fr : last;
		e0 = atomic_load(&r.epoch[k]);
		rc = ps_prot_convert(sp, page * PG, PG, to, 0, NULL, &off);
		e1 = atomic_load(&r.epoch[k]);
		if (rc == -EAGAIN) {
			atomic_fetch_add(&r.eagain, 1);
			if (e0 == e1 && !(e0 & 1))
				violation("false -EAGAIN", page, e0);
			if (off != 0)
				violation("-EAGAIN at another page", page, off);
		} else if (rc) {
			violation("conversion failed", (uint64_t)-rc, page);
		} else if (!frame_private(page, NULL) !=
			   (to == PS_ENC_SHARED)) {
			violation("page not converted", page, 0);
		}
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "4 KiB conversions vs partial pins");
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"conversions %llu in %llu frames, pins %llu, refused "
			"%llu, -EAGAIN %llu\n",
			(unsigned long long)i, (unsigned long long)last + 1,
			(unsigned long long)atomic_load(&r.pins),
			(unsigned long long)atomic_load(&r.refused),
			(unsigned long long)atomic_load(&r.eagain));
	/* No pin left; every page shared again. */
	for (uint64_t fr = 0; fr <= last; fr++)
		for (uint64_t k = 0; k < HOT_PAGES; k++) {
			const uint64_t page = fr * P2M + k;

			ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(
						  sp, page, NULL)),
					  0);
			if (frame_private(page, NULL))
				ck_assert_int_eq(ps_prot_convert(sp, page * PG,
								 PG,
								 PS_ENC_SHARED,
								 0, NULL, NULL),
						 0);
		}
	ck_assert_int_eq(ps_space_unmap(sp, 0, P1G * PG, 0), 0);
}
END_TEST

/*
 * CPU maps of a whole frame's page against the split of that frame (P10): each
 * round maps a 2 MiB frame whole; one thread kmaps and kunmaps a page of it
 * (the maps' reference on the whole word, or on the 4 KiB word once split),
 * while the other splits the frame's state with a 4 KiB pin of another page
 * and unpins. After each round every part holds exactly the mapping's
 * reference: no map's reference is lost or left behind across the split.
 */
struct kmap_race {
	pthread_barrier_t start, done;
	_Atomic(int) stop;
	_Atomic(uint64_t) maps;
	struct ps_test_overlap ov;
};

static void *kmap_race_mapper(void *arg)
{
	struct kmap_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (;;) {
		pthread_barrier_wait(&r->start);
		if (atomic_load(&r->stop))
			return NULL;
		for (int k = 0; k < 64; k++, ps_test_overlap_step(&me)) {
			const uint64_t f = 5 + (uint64_t)(k & 3) * 100;
			int rc = ps_prot_kmap(sp, f, 0);

			if (rc) {
				violation("kmap failed", f, (uint64_t)-rc);
				continue;
			}
			if (!ps_prot_kmap_count(sp, f))
				violation("kmap not counted", f, 0);
			if (ps_prot_kunmap(sp, f))
				violation("kunmap failed", f, 0);
			atomic_fetch_add(&r->maps, 1);
		}
		pthread_barrier_wait(&r->done);
	}
}

START_TEST(stress_kmap_against_split)
{
	static struct kmap_race r;
	struct ps_test_side me;
	struct ps_test_rng rng = ps_test_rng_new(18);
	uint64_t rounds = 0, max_rounds, bad;
	pthread_t t;

	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	max_rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 200;
	me = ps_test_side(&r.ov, 0, 0);
	pthread_barrier_init(&r.start, NULL, 2);
	pthread_barrier_init(&r.done, NULL, 2);
	ck_assert_int_eq(pthread_create(&t, NULL, kmap_race_mapper, &r), 0);
	for (;;) {
		uint64_t f;

		if (ps_test_overlap_enough(&r.ov) || rounds >= max_rounds) {
			atomic_store(&r.stop, 1);
			pthread_barrier_wait(&r.start);
			break;
		}
		/* Whole again: the free parts merge under a huge entry. */
		ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0,
						    NULL),
				 0);
		pthread_barrier_wait(&r.start);
		for (uint64_t k = ps_test_below(&rng, 64); k; k--)
			ps_test_overlap_step(&me);
		if (ps_space_pin_range(sp, 300 * PG, PG, 0, &f) ||
		    ps_space_unpin(sp, &f, 1, 0))
			violation("4 KiB pin or unpin failed", rounds, 0);
		ps_test_overlap_step(&me);
		pthread_barrier_wait(&r.done);
		bad = 0;
		for (uint64_t p = 0; p < P2M; p++)
			if (ps_page_refs(ps_space_frame_word(sp, p, NULL)) !=
				    1 ||
			    ps_prot_kmap_count(sp, p))
				bad++;
		ck_assert_uint_eq(bad, 0);
		ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
		rounds++;
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "kmap of a page vs the frame's split");
	ck_assert_uint_gt(atomic_load(&r.maps), 0);
}
END_TEST

static Suite *prot_huge_suite(void)
{
	Suite *s = suite_create("prot-huge");
	TCase *tc;

	tc = ps_test_tcase(s, "whole", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, convert_whole_2m_frame);
	tcase_add_test(tc, convert_whole_1g_frame);
	tcase_add_test(tc, convert_whole_frame_pinned_fails);
	tcase_add_test(tc, check_access_inside_whole_frame);

	tc = ps_test_tcase(s, "kmap", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, kmap_inside_whole_frame);
	tcase_add_test(tc, kmap_whole_then_split);
	tcase_add_test(tc, convert_whole_frame_cpu_mapped_inside);
	tcase_add_test(tc, set_inaccessible_whole_and_part);

	tc = ps_test_tcase(s, "mprotect", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mprotect_whole_frame_keeps_the_leaf);
	tcase_add_test(tc, mprotect_part_splits_first);
	tcase_add_test(tc, mprotect_whole_1g_frame);
	tcase_add_test(tc, set_cache_whole_and_part);

	tc = ps_test_tcase(s, "part", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, convert_4k_inside_2m_frame);
	tcase_add_test(tc, convert_2m_inside_1g_frame);
	tcase_add_test(tc, convert_4k_with_other_subpage_pinned);
	tcase_add_test(tc, convert_4k_inside_whole_frame_is_its_own);
	tcase_add_test(tc, convert_4k_inside_whole_pinned_frame_fails);
	tcase_add_test(tc, convert_whole_leaf_over_split_state);
	tcase_add_test(tc, convert_across_two_frames_edge);
	tcase_add_test(tc, convert_runs_beside_a_whole_frame);
	tcase_add_test(tc, convert_with_hooks_splits_the_frame);

	tc = ps_test_stress_tcase(s, "stress", 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stress_convert_4k_while_other_parts_pinned);
	tcase_add_test(tc, stress_convert_4k_back_and_forth_vs_partial_pins);
	tcase_add_test(tc, stress_kmap_against_split);
	return s;
}

PS_TEST_MAIN(prot_huge_suite)
