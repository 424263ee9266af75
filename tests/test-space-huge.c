// SPDX-License-Identifier: MIT
/*
 * tests/test-space-huge.c - frames of three sizes in a space
 * (lib/space-huge.c, rules S15..S18): the declaration of which frames are 2
 * MiB and 1 GiB frames, where a frame's state lives, and the metadata the
 * space holds (ps_space_stats()).
 */
#include <pagestate/ledger.h>
#include <pagestate/space.h>

#include "../lib/failpoint.h"
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
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
	ps_test_ledger_if_asked(sp);
}

static void teardown(void)
{
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

/* --- declaration (S15) ---------------------------------------------------- */

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
	/* A 1 GiB declaration touches one page of orders, no words. */
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	ck_assert_uint_eq(st.words_bytes[0], st2.words_bytes[0]);
	ck_assert_uint_eq(st.words_bytes[1], 0);
	ck_assert_uint_eq(st.words_bytes[2], (uint64_t)sysconf(_SC_PAGESIZE));
	ck_assert_uint_eq(st.frames_split, 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
}
END_TEST

/* --- map and unmap of whole frames (S17) ---------------------------------- */

/* The word of the unit that holds @frame, and its order. */
static struct ps_page *word(uint64_t frame, unsigned int *o)
{
	return ps_space_frame_word(sp, frame, o);
}

/* Declare the first 8 MiB of frames 2 MiB frames, the second GiB 1 GiB. */
static void declare(void)
{
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 4 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
}

static void setup_declared(void)
{
	setup();
	declare();
}

/* The leaf order of the page at @addr (asserting it is present). */
static unsigned int leaf_order(uint64_t addr, uint64_t *frame)
{
	ps_pte_t e, leaf;
	unsigned int o;

	ck_assert_int_eq(ps_pgtable_get_level(ps_space_pgtable(sp), addr, &e,
					      &o, &leaf),
			 0);
	ck_assert(ps_pte_is_present(e));
	if (frame)
		*frame = ps_pte_frame(e);
	return o;
}

START_TEST(map_whole_frames_as_huge_entries)
{
	struct ps_space_stats st;
	uint64_t f;
	unsigned int o;

	/* Two 2 MiB frames at a 2 MiB-aligned address: two huge leaves. */
	ck_assert_int_eq(ps_space_map_range(sp, 2 * P2M * PG, 2 * P2M * PG, P2M,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_uint_eq(leaf_order(2 * P2M * PG, &f), 9);
	ck_assert_uint_eq(f, P2M);
	ck_assert_uint_eq(leaf_order(4 * P2M * PG - PG, &f), 9);
	ck_assert_uint_eq(f, 3 * P2M - 1);
	/* One reference on each frame's word; its 4 KiB pages answer so. */
	ck_assert_uint_eq(ps_page_refs(word(P2M, &o)), 1);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(ps_page_refs(word(2 * P2M - 1, NULL)), 1);
	ck_assert_uint_eq(ps_page_refs(word(2 * P2M, NULL)), 1);
	ck_assert_ptr_ne(word(P2M, NULL), word(2 * P2M, NULL));
	/* A 1 GiB frame at a 1 GiB-aligned address: one leaf. */
	ck_assert_int_eq(ps_space_map_range(sp, 2 * P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_uint_eq(leaf_order(2 * P1G * PG + 12345 * PG, &f), 18);
	ck_assert_uint_eq(f, P1G + 12345);
	ck_assert_uint_eq(ps_page_refs(word(P1G + 7, &o)), 1);
	ck_assert_uint_eq(o, PS_SPACE_ORDER_1G);
	/* Not one 4 KiB page word was touched. */
	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	ck_assert_uint_eq(st.words_bytes[0], 0);
	/* Unmap: each frame is freed once, reported by its first frame. */
	ck_assert_int_eq(ps_space_unmap(sp, 0, SPACE_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 3);
	ck_assert(!ps_page_is_live(word(P2M, NULL)));
	ck_assert(!ps_page_is_live(word(P1G, NULL)));
}
END_TEST

/* --- maps in chunks (S20 of lib/space.c) ---------------------------------- */

/*
 * A map works in chunks of PS__FP_MAP_CHUNK_PAGES pages of address space (64
 * MiB), letting the writer mutex go between them; a unit never straddles
 * two (a 1 GiB unit is one chunk of its own). The first 256 MiB of frames
 * are 2 MiB frames here, the second GiB one 1 GiB frame.
 */
#define HC_CHUNK (PS__FP_MAP_CHUNK_PAGES * PG)
#define HC_LEN (2 * HC_CHUNK + P2M * PG) /* three chunks */

static void hc_declare(void)
{
	setup();
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 128 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G, P1G,
						  PS_SPACE_ORDER_1G),
			 0);
}

static void hc_teardown(void)
{
	ps__failpoint = NULL;
	ps__inject = NULL;
	teardown();
}

static _Atomic(unsigned) hc_chunks;
static void (*hc_action)(uint64_t addr);

static void hc_failpoint(int point, uint64_t addr)
{
	if (point == FP_MAP_CHUNK && !atomic_fetch_add(&hc_chunks, 1) &&
	    hc_action)
		hc_action(addr);
}

/* Nothing of [0, HC_LEN) mapped, no frame of it held. */
static void hc_assert_untouched(uint64_t skip)
{
	for (uint64_t a = 0; a < HC_LEN; a += P2M * PG) {
		ps_pte_t e;
		struct ps_page *w = word(a / PG, NULL);

		ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), a, &e),
				 0);
		if (a == skip)
			continue;
		ck_assert_msg(ps_pte_is_none(e), "%#llx left mapped",
			      (unsigned long long)a);
		ck_assert_msg(!ps_page_is_live(w) && !ps_page_is_frozen(w),
			      "frame %#llx left held",
			      (unsigned long long)(a / PG));
	}
}

static int hc_inject(int point, uint64_t addr, uint64_t *len)
{
	(void)len;
	return point == FP_MAP_RUN && addr == HC_CHUNK ? -ENOMEM : 0;
}

/* -ENOMEM in the middle chunk: the first goes again, the third never comes. */
START_TEST(map_chunks_huge_fail_in_the_middle)
{
	atomic_store(&hc_chunks, 0);
	hc_action = NULL;
	ps__failpoint = hc_failpoint;
	ps__inject = hc_inject;
	ck_assert_int_eq(ps_space_map_range(sp, 0, HC_LEN, 0, PS_MAP_WRITE,
					    NULL),
			 -ENOMEM);
	ps__inject = NULL;
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&hc_chunks), 1);
	hc_assert_untouched(UINT64_MAX);
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, HC_LEN, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_uint_eq(leaf_order(HC_CHUNK, NULL), 9);
}
END_TEST

/*
 * Over UFFD_WP markers of an anonymous range (PS_WP_UNPOPULATED, protected):
 * the huge map keeps each marker's protection as its leaf's wp bit, and when
 * a later chunk fails, the rollback of the chunks it installed puts the
 * markers back, as the 4 KiB map's does (lib/space.c, unmap_installed()).
 * Loop: sync, async. (Regression: the rollback zapped the leaves, which in an
 * anonymous range drops protection: the pages came back none, no longer
 * protected, and a write there went unreported.)
 */
START_TEST(map_chunks_huge_fail_keeps_wp_markers)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	const uint64_t len = HC_CHUNK + P2M * PG; /* a chunk and a unit */

	ck_assert_int_eq(ps_pgtable_register(pt, 0, len,
					     PS_WP_UNPOPULATED |
						     (_i ? PS_WP_ASYNC : 0)),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, len), 0);
	atomic_store(&hc_chunks, 0);
	hc_action = NULL;
	ps__failpoint = hc_failpoint;
	ps__inject = hc_inject;
	ck_assert_int_eq(ps_space_map_range(sp, 0, len, 0, PS_MAP_WRITE, NULL),
			 -ENOMEM);
	ps__inject = NULL;
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&hc_chunks), 1);
	for (uint64_t a = 0; a < len; a += 61 * PG) {
		ps_pte_t e;

		ck_assert_int_eq(ps_pgtable_get(pt, a, &e), 0);
		ck_assert_msg(ps_pte_is_marker(e) && ps_pte_uffd_wp(e),
			      "page %#llx lost its write protection (entry "
			      "%#llx)",
			      (unsigned long long)a, (unsigned long long)e);
	}
	for (uint64_t f = 0; f < len / PG; f += P2M)
		ck_assert(!ps_page_is_live(word(f, NULL)));
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, len), 0);
}
END_TEST

static _Atomic(unsigned) hc_discard_chunks;

static void hc_count_discard_chunk(int point, uint64_t addr)
{
	(void)addr;
	if (point == FP_DISCARD_CHUNK)
		atomic_fetch_add(&hc_discard_chunks, 1);
}

/*
 * S20: a discard of whole 2 MiB frames over three chunks goes a chunk at a
 * time (the mutex let go twice), each frame dropped as one unit, freed once;
 * a pinned frame in the last chunk is reported page by page.
 */
START_TEST(discard_chunks_huge)
{
	struct ps_discard_skip skip[P2M];
	uint64_t unit, n = 0, cnt;

	ck_assert_int_eq(ps_space_map_range(sp, 0, HC_LEN, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 2 * HC_CHUNK, P2M * PG, 0,
					    &unit, 1, &cnt),
			 0);
	atomic_store(&hc_discard_chunks, 0);
	ps__failpoint = hc_count_discard_chunk;
	ck_assert_int_eq(ps_space_discard(sp, 0, HC_LEN, skip, P2M, &n), 0);
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&hc_discard_chunks), 2);
	ck_assert_uint_eq(n, P2M);
	ck_assert_uint_eq(skip[0].addr, 2 * HC_CHUNK);
	ck_assert_uint_eq(skip[P2M - 1].addr, 2 * HC_CHUNK + (P2M - 1) * PG);
	ck_assert_int_eq(skip[0].reason, PS_DISCARD_PINNED);
	ck_assert_uint_eq(atomic_load(&freed_total), 2 * HC_CHUNK / PG / P2M);
	ck_assert_uint_eq(leaf_order(2 * HC_CHUNK, NULL), 9);
	ck_assert_int_eq(ps_space_unpin(sp, &unit, 1, 0), 0);
}
END_TEST

/* At the first boundary, another map takes the second unit of chunk 2. */
static void hc_race(uint64_t addr)
{
	ck_assert_uint_eq(addr, HC_CHUNK);
	ck_assert_int_eq(ps_space_map_range(sp, HC_CHUNK + P2M * PG, P2M * PG,
					    100 * P2M, 0, NULL),
			 0);
}

START_TEST(map_chunks_huge_race_into_a_later_chunk)
{
	uint64_t where = 0, f;

	atomic_store(&hc_chunks, 0);
	hc_action = hc_race;
	ps__failpoint = hc_failpoint;
	ck_assert_int_eq(ps_space_map_range(sp, 0, HC_LEN, 0, 0, &where),
			 -EEXIST);
	ps__failpoint = NULL;
	ck_assert_uint_eq(where, HC_CHUNK + P2M * PG);
	hc_assert_untouched(HC_CHUNK + P2M * PG);
	ck_assert_uint_eq(leaf_order(HC_CHUNK + P2M * PG, &f), 9);
	ck_assert_uint_eq(f, 100 * P2M);
	ck_assert_uint_eq(ps_page_refs(word(100 * P2M, NULL)), 1);
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
}
END_TEST

/*
 * A declaration waits for a map of several chunks (S20): the map chose its
 * units by the orders it found. Started at the first boundary, it has not
 * returned when the map does its next chunk, and succeeds after.
 */
static pthread_t hc_declarer;
static _Atomic(int) hc_declare_rc = 1;

static void *hc_declare_far(void *arg)
{
	(void)arg;
	atomic_store(&hc_declare_rc,
		     ps_space_set_frame_order(sp, 200 * P2M, P2M,
					      PS_SPACE_ORDER_4K));
	return NULL;
}

static void hc_start_declare(uint64_t addr)
{
	(void)addr;
	ck_assert_int_eq(pthread_create(&hc_declarer, NULL, hc_declare_far,
					NULL),
			 0);
	for (int i = 0; i < 100; i++)
		sched_yield();
	ck_assert_msg(atomic_load(&hc_declare_rc) == 1,
		      "a declaration did not wait for a map in progress");
}

START_TEST(map_chunks_huge_declaration_waits)
{
	atomic_store(&hc_chunks, 0);
	atomic_store(&hc_declare_rc, 1);
	hc_action = hc_start_declare;
	ps__failpoint = hc_failpoint;
	ck_assert_int_eq(ps_space_map_range(sp, 0, HC_LEN, 0, 0, NULL), 0);
	pthread_join(hc_declarer, NULL);
	ps__failpoint = NULL;
	ck_assert_int_eq(atomic_load(&hc_declare_rc), 0);
	ck_assert_uint_eq(leaf_order(HC_CHUNK, NULL), 9);
}
END_TEST

/*
 * Boundaries: a 1 GiB unit is one chunk (no boundary inside it); a 2 MiB
 * unit before it ends the first chunk at the GiB.
 */
START_TEST(map_chunks_huge_boundaries)
{
	atomic_store(&hc_chunks, 0);
	hc_action = NULL;
	ps__failpoint = hc_failpoint;
	ck_assert_int_eq(ps_space_map_range(sp, 2 * P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_uint_eq(atomic_load(&hc_chunks), 0);
	ck_assert_uint_eq(leaf_order(2 * P1G * PG, NULL), 18);
	ck_assert_int_eq(ps_space_unmap(sp, 2 * P1G * PG, P1G * PG, 0), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, P1G - P2M, P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG - P2M * PG,
					    P1G * PG + P2M * PG, P1G - P2M, 0,
					    NULL),
			 0);
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&hc_chunks), 1);
	ck_assert_uint_eq(leaf_order(P1G * PG - PG, NULL), 9);
	ck_assert_uint_eq(leaf_order(P1G * PG, NULL), 18);
	ck_assert_uint_eq(ps_page_refs(word(P1G, NULL)), 1);
}
END_TEST

/* The order of the word that holds @frame's state now. */
static unsigned int state_order(uint64_t frame)
{
	unsigned int o;

	ck_assert_ptr_nonnull(word(frame, &o));
	return o;
}

static uint64_t splits(void)
{
	struct ps_space_stats st;

	ck_assert_int_eq(ps_space_stats(sp, &st), 0);
	return st.frames_split;
}

START_TEST(map_part_of_a_frame_splits_it)
{
	/* 4 KiB of a whole 2 MiB frame: its state splits, the part maps. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, PG, P2M, 0, NULL), 0);
	ck_assert_uint_eq(splits(), 1);
	ck_assert_uint_eq(state_order(P2M), PS_SPACE_ORDER_4K);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, P2M)), 1);
	ck_assert(!ps_page_is_live(ps_space_page(sp, P2M + 1)));
	ck_assert_uint_eq(leaf_order(0, NULL), 0);
	/* The rest, at an address not aligned to it: page by page. */
	ck_assert_int_eq(ps_space_map_range(sp, 5 * P2M * PG + PG,
					    (P2M - 1) * PG, P2M + 1, 0, NULL),
			 0);
	ck_assert_uint_eq(splits(), 1);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, 2 * P2M - 1)), 1);
	/* 2 MiB of a whole 1 GiB frame: the 1 GiB splits into 2 MiB frames,
	 * and the part maps with a 2 MiB entry. */
	ck_assert_int_eq(ps_space_map_range(sp, 2 * P2M * PG, P2M * PG,
					    P1G + P2M, 0, NULL),
			 0);
	ck_assert_uint_eq(splits(), 2);
	ck_assert_uint_eq(state_order(P1G + P2M + 5), PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(ps_page_refs(word(P1G + P2M, NULL)), 1);
	ck_assert(!ps_page_is_live(word(P1G, NULL)));
	ck_assert_uint_eq(leaf_order(2 * P2M * PG + 7 * PG, NULL), 9);
	/* Unmapped: each part freed on its own. */
	ck_assert_int_eq(ps_space_unmap(sp, 0, SPACE_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M + 1);
	/* Free parts mapped whole again: the frame is whole again. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, P2M, 0, NULL), 0);
	ck_assert_uint_eq(state_order(P2M), PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_uint_eq(state_order(P1G), PS_SPACE_ORDER_1G);
	ck_assert_uint_eq(ps_page_refs(word(P1G, NULL)), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, SPACE_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M + 3);
}
END_TEST

START_TEST(map_all_or_nothing)
{
	struct ps_page *third = word(2 * P2M, NULL);
	ps_pte_t e;

	/* The third frame is frozen by another: the map takes nothing. */
	ck_assert_int_eq(ps_page_init(third, 1), 0);
	ck_assert(ps_page_freeze(third, 1));
	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * P2M * PG, 0, 0, NULL),
			 -EBUSY);
	ck_assert(!ps_page_is_live(word(0, NULL)));
	ck_assert(!ps_page_is_frozen(word(0, NULL)));
	ck_assert(!ps_page_is_live(word(P2M, NULL)));
	ck_assert(!ps_page_is_frozen(word(P2M, NULL)));
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), 0, &e), 0);
	ck_assert(!ps_pte_is_present(e));
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
	ck_assert_int_eq(ps_page_unfreeze(third, 0), 0);
	/* A frame already in use gains a reference; a cache conflict fails. */
	ck_assert_int_eq(ps_page_init(word(P2M, NULL), 1), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_CACHE(PS_CACHE_UC), NULL),
			 -EBUSY);
	ck_assert(!ps_page_is_live(word(0, NULL)));
	ck_assert_uint_eq(ps_page_refs(word(P2M, NULL)), 1);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_uint_eq(ps_page_refs(word(P2M, NULL)), 2);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
	ck_assert(ps_page_put(word(P2M, NULL)));
	/* A free frame claimed takes the mode asked for. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0,
					    PS_MAP_CACHE(PS_CACHE_WC), NULL),
			 0);
	ck_assert_uint_eq(ps_page_cache_mode(word(0, NULL)), PS_CACHE_WC);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * Regression: a map that finds a page occupied fails with -EEXIST and leaves
 * the occupant exactly as it was. With huge frames declared, the failed run's
 * pages were counted as installed and zapped on the way out: the occupant's
 * entry was cleared without its reference being dropped (and a map over the
 * page then succeeded). Found by the soak's huge region (tests/soak/huge.c).
 */
START_TEST(map_eexist_keeps_the_occupant)
{
	const uint64_t a = 64 * P2M * PG; /* a 4 KiB frame's page */
	ps_pte_t e;

	ck_assert_int_eq(ps_space_map_range(sp, a + PG, PG, 3000, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map_range(sp, a, 3 * PG, 3100, 0, NULL),
			 -EEXIST);
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), a + PG, &e), 0);
	ck_assert(ps_pte_is_present(e) && ps_pte_frame(e) == 3000);
	ck_assert_uint_eq(ps_page_refs(word(3000, NULL)), 1);
	for (uint64_t f = 3100; f < 3103; f++)
		ck_assert(!ps_page_is_live(word(f, NULL)));
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), a, &e), 0);
	ck_assert_uint_eq(e, PS_PTE_NONE);
	/* A whole 2 MiB frame over another one. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, P2M, 0, NULL),
			 -EEXIST);
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), 5 * PG, &e), 0);
	ck_assert(ps_pte_is_present(e) && ps_pte_frame(e) == 5);
	ck_assert_uint_eq(ps_page_refs(word(0, NULL)), 1);
	ck_assert(!ps_page_is_live(word(P2M, NULL)));
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, a, 3 * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 2);
}
END_TEST

START_TEST(unmap_part_of_a_frame_splits_it)
{
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_unmap(sp, PG, PG, 0), 0);
	/* The entry and the state split; page 1's frame alone is freed. */
	ck_assert_uint_eq(leaf_order(0, NULL), 0);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
	ck_assert(!ps_page_is_live(ps_space_page(sp, 1)));
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, 0)), 1);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, 2)), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, PS_UNMAP_ZAP), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M);
}
END_TEST

/* --- the secondary-map helper on whole frames ---------------------------- */

struct hsec {
	struct ps_interval sub;
	pthread_mutex_t lock;
	uint64_t frame, installs;
	bool writable;
};

static bool hsec_invalidate(struct ps_interval *sub,
			    const struct ps_invalidation *inv, uint64_t cur_seq,
			    void *priv)
{
	struct hsec *m = priv;

	(void)inv;
	pthread_mutex_lock(&m->lock);
	ps_interval_set_seq(sub, cur_seq);
	m->frame = UINT64_MAX;
	m->writable = false;
	pthread_mutex_unlock(&m->lock);
	return true;
}

static const struct ps_interval_ops hsec_ops = {.invalidate = hsec_invalidate};

static void hsec_lock(void *ctx)
{
	pthread_mutex_lock(&((struct hsec *)ctx)->lock);
}

static void hsec_unlock(void *ctx)
{
	pthread_mutex_unlock(&((struct hsec *)ctx)->lock);
}

static int hsec_install(void *ctx, uint64_t addr, uint64_t frame, bool write)
{
	struct hsec *m = ctx;

	(void)addr;
	m->frame = frame;
	m->writable = write;
	m->installs++;
	return 0;
}

static const struct ps_secondary_ops hsec_secops = {hsec_lock, hsec_unlock,
						    hsec_install};

/*
 * The helper maps a page inside a whole 2 MiB or 1 GiB frame (it refused with
 * -EOPNOTSUPP): the lookup reference is on the whole frame's word and goes
 * back as a unit, the frame stays whole, a write marks the whole frame dirty
 * (one dirty hook, for the frame) and logs that page alone. Also after the
 * frame's state was split meanwhile (then on the page's own word).
 */
START_TEST(secondary_map_inside_whole_frames)
{
	struct hsec m;
	uint64_t addrs[8], n, part, np;

	memset(&m, 0, sizeof(m));
	pthread_mutex_init(&m.lock, NULL);
	ck_assert_int_eq(ps_interval_insert(&m.sub, ps_space_notifier(sp), 0,
					    2 * P1G * PG, &hsec_ops, &m),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 7 * PG, false,
						&hsec_secops, &m),
			 0);
	ck_assert_uint_eq(m.frame, 7);
	ck_assert(!m.writable);
	ck_assert_uint_eq(state_order(7), PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(ps_page_refs(word(7, NULL)), 1); /* none kept */
	ck_assert_uint_eq(atomic_load(&dirty_total), 0);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 9 * PG, true,
						&hsec_secops, &m),
			 0);
	ck_assert_uint_eq(m.frame, 9);
	ck_assert(m.writable);
	ck_assert_uint_eq(state_order(9), PS_SPACE_ORDER_2M);
	ck_assert(ps_page_test_flags(word(100, NULL), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(word(100, NULL), PS_PAGE_LOCKED));
	ck_assert_uint_eq(atomic_load(&dirty_total), 1);
	ck_assert_uint_eq(ps_page_refs(word(9, NULL)), 1);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, 0, addrs, 8, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(addrs[0], 9 * PG);
	/* A 1 GiB frame, for write. */
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, (P1G + 12345) * PG,
						true, &hsec_secops, &m),
			 0);
	ck_assert_uint_eq(m.frame, P1G + 12345);
	ck_assert_uint_eq(state_order(P1G + 12345), PS_SPACE_ORDER_1G);
	ck_assert_uint_eq(ps_page_refs(word(P1G, NULL)), 1);
	ck_assert_uint_eq(atomic_load(&dirty_total), 2);
	/* Split state: the page's own word. */
	ck_assert_int_eq(ps_space_pin_units(sp, 3 * PG, PG, 0, &part, 1, &np),
			 0);
	ck_assert_uint_eq(state_order(11), PS_SPACE_ORDER_4K);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 11 * PG, true,
						&hsec_secops, &m),
			 0);
	ck_assert_uint_eq(ps_page_refs(word(11, NULL)), 1);
	ck_assert_int_eq(ps_space_unpin(sp, &part, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
	ck_assert_uint_eq(m.frame, UINT64_MAX); /* torn down by the unmap */
	ps_interval_remove(&m.sub);
	pthread_mutex_destroy(&m.lock);
}
END_TEST

/* --- pins (S2 per unit, S17) ---------------------------------------------- */

START_TEST(pin_units_one_rmw_per_frame)
{
	uint64_t units[8], n = 0, frames[2 * P2M + 1];
	unsigned int o;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	/* Whole frames: one unit each, one pin on each word. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, 2 * P2M * PG, 0, units, 8,
					    &n),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(units[0], PS_SPACE_UNIT(0, PS_SPACE_ORDER_2M));
	ck_assert_uint_eq(units[1], PS_SPACE_UNIT(P2M, PS_SPACE_ORDER_2M));
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 1);
	ck_assert_uint_eq(ps_page_refs(word(0, NULL)), 2);
	/* A 4 KiB page inside answers from the frame's word. */
	ck_assert(ps_page_is_pinned(word(P2M + 300, &o)));
	ck_assert_uint_eq(o, PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_space_unpin(sp, units, n, 0), 0);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 0);
	/* 1 GiB. */
	ck_assert_int_eq(ps_space_pin_units(sp, P1G * PG, P1G * PG, 0, units, 1,
					    &n),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(units[0], PS_SPACE_UNIT(P1G, PS_SPACE_ORDER_1G));
	ck_assert_uint_eq(ps_page_pins(word(2 * P1G - 1, NULL)), 1);
	ck_assert_int_eq(ps_space_unpin(sp, units, n, 0), 0);
	ck_assert_uint_eq(ps_page_pins(word(P1G, NULL)), 0);
	/* Long-term: counted once per unit, released with the flag. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, 2 * P2M * PG,
					    PS_PIN_LONGTERM, units, 8, &n),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ps_space_unpin(sp, units, 2, PS_UNPIN_LONGTERM), 0);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 0);
	/* A long-term release of a pin not counted: -ENOENT, released. */
	ck_assert_int_eq(ps_space_pin_units(sp, P2M * PG, P2M * PG, 0, units, 8,
					    &n),
			 0);
	ck_assert_int_eq(ps_space_unpin(sp, units, 1, PS_UNPIN_LONGTERM),
			 -ENOENT);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 0);
	/* pin_range: a frame per page, one pin per frame; the unpin groups. */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 2 * P2M * PG, PS_PIN_WRITE,
					    frames),
			 0);
	for (uint64_t i = 0; i < 2 * P2M; i++)
		ck_assert_uint_eq(frames[i], i);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 1);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 1);
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_WRITE_PINNED));
	ck_assert_int_eq(ps_space_unpin(sp, frames, 2 * P2M, PS_UNPIN_DIRTY),
			 0);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 0);
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_uint_eq(ps_page_refs(word(0, NULL)), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 3);
}
END_TEST

START_TEST(pin_units_all_or_nothing)
{
	uint64_t units[4], n = 9;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	/* No room for the second unit: nothing stays pinned. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, 2 * P2M * PG, 0, units, 1,
					    &n),
			 -ENOBUFS);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(units[0], P2M * PG);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	/* A missing page after the frames: -EFAULT at its offset. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, 2 * P2M * PG + PG, 0, units,
					    4, &n),
			 -EFAULT);
	ck_assert_uint_eq(units[0], 2 * P2M * PG);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	ck_assert_uint_eq(ps_page_pins(word(P2M, NULL)), 0);
	/* A write pin of a read-only mapping: -EFAULT, nothing pinned. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, PS_PIN_WRITE,
					    units, 4, &n),
			 -EFAULT);
	ck_assert_uint_eq(ps_page_pins(word(0, NULL)), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

START_TEST(pin_part_of_a_frame_splits_it)
{
	uint64_t whole, part, units[P2M], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, &whole, 1, &n),
			 0);
	ck_assert_uint_eq(ps_page_pins(word(7, NULL)), 1);
	/* 4 KiB of it: the state splits, the whole pin is on every part. */
	ck_assert_int_eq(ps_space_pin_units(sp, PG, PG, 0, &part, 1, &n), 0);
	ck_assert_uint_eq(part, 1);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 1)), 2);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 2)), 1);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, 2)), 2);
	ck_assert_uint_eq(leaf_order(0, NULL), 9); /* the entry stays huge */
	/* The whole pin goes from every part; page 1 keeps its own. */
	ck_assert_int_eq(ps_space_unpin(sp, &whole, 1, 0), 0);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 1)), 1);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 2)), 0);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, 2)), 1);
	/* A whole-frame pin of split state: a unit per part. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, units, P2M, &n),
			 0);
	ck_assert_uint_eq(n, P2M);
	ck_assert_uint_eq(units[511], 511);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 1)), 2);
	ck_assert_int_eq(ps_space_unpin(sp, units, n, 0), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &part, 1, PS_UNPIN_DIRTY), 0);
	ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, 1)), 0);
	ck_assert(ps_page_test_flags(ps_space_page(sp, 1), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(ps_space_page(sp, 2), PS_PAGE_DIRTY));
	/* 2 MiB of a whole 1 GiB frame: a 2 MiB unit of its split state. */
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, (P1G + P2M) * PG, P2M * PG, 0,
					    &part, 1, &n),
			 0);
	ck_assert_uint_eq(part, PS_SPACE_UNIT(P1G + P2M, PS_SPACE_ORDER_2M));
	ck_assert_uint_eq(state_order(P1G), PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(ps_page_pins(word(P1G + P2M, NULL)), 1);
	ck_assert_uint_eq(ps_page_pins(word(P1G, NULL)), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &part, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, SPACE_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M + P2M);
}
END_TEST

START_TEST(write_fault_on_split_state_splits_the_entry)
{
	uint64_t part, n;
	ps_pte_t e;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, PG, PG, 0, &part, 1, &n), 0);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	/* The entry splits; only the page written is dirty and writable. */
	ck_assert_int_eq(ps_space_fault(sp, 9 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(leaf_order(0, NULL), 0);
	ck_assert(ps_page_test_flags(ps_space_page(sp, 9), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(ps_space_page(sp, 10), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&dirty_total), 1);
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), 9 * PG, &e), 0);
	ck_assert(ps_pte_is_writable(e));
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), 10 * PG, &e), 0);
	ck_assert(!ps_pte_is_writable(e));
	ck_assert_int_eq(ps_space_unpin(sp, &part, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M);
}
END_TEST

START_TEST(pin_for_write_faults_the_whole_frame_dirty)
{
	uint64_t units[2], n;
	uint64_t got[512];

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, PS_PIN_WRITE,
					    units, 2, &n),
			 0);
	ck_assert_uint_eq(n, 1);
	/* The write fault marked the frame dirty once, hook included. */
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&dirty_total), 1);
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	/* Every page of the unit is in the dirty log. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, 0, got, 512, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 512);
	ck_assert_uint_eq(got[0], 0);
	ck_assert_uint_eq(got[511], 511 * PG);
	/* In units: the extent is one entry, its order in the low bits. */
	ck_assert_int_eq(ps_space_mark_dirty(sp, 3 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_redirty(sp, got, 512), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	/*
	 * Pinned for write, the frame stays in the log (S6): after the unpin,
	 * the first harvest still reports it, the next only what is marked.
	 */
	ck_assert_int_eq(ps_space_unpin(sp, units, 1, 0), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	/* A page short of the extent: pages, at 4 KiB. */
	ck_assert_int_eq(ps_space_mark_dirty(sp, 3 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 4 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], 3 * PG);
	ck_assert_uint_eq(got[1], 4 * PG);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * A write to a write-protected 2 MiB entry of a range registered async and
 * PS_WP_HUGE_SPLIT: the table splits the entry and makes only the written
 * page writable, so the dirty log holds that page alone (4 KiB tracking), not
 * the extent. The frame is dirty as a whole (one word). Without the split (an
 * unregistered range, a read-only entry made writable whole) every page of
 * the extent is logged: they can all be written from then on.
 */
START_TEST(async_write_in_a_split_registration_logs_its_page)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t got[512], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, P2M * PG,
					     PS_WP_ASYNC | PS_WP_HUGE_SPLIT),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, P2M * PG), 0);
	ck_assert_uint_eq(leaf_order(3 * PG, NULL), 9);
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(leaf_order(3 * PG, NULL), 0); /* split */
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&dirty_total), 1);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 3 * PG);
	/* Unregistered, read-only: writable whole, every page logged. */
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, P2M * PG), 0);
	ck_assert_int_eq(ps_space_harvest(sp, P2M * PG, P2M * PG,
					  PS_HARVEST_REARM, got, 512, &n, NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, P2M * PG + 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(leaf_order(P2M * PG, NULL), 9);
	ck_assert_int_eq(ps_space_harvest(sp, P2M * PG, P2M * PG,
					  PS_HARVEST_UNITS, got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], P2M * PG | PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);

	/* A 1 GiB frame: the leaf the fault leaves writable, no more. */
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, P1G * PG, P1G * PG,
					     PS_WP_ASYNC | PS_WP_HUGE_SPLIT),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, P1G * PG, P1G * PG), 0);
	ck_assert_uint_eq(leaf_order(P1G * PG + 7 * PG, NULL), 18);
	ck_assert_int_eq(ps_space_fault(sp, P1G * PG + 7 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(leaf_order(P1G * PG + 7 * PG, NULL), 0);
	ck_assert_int_eq(ps_space_harvest(sp, P1G * PG, P1G * PG,
					  PS_HARVEST_UNITS, got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], P1G * PG + 7 * PG);
	ck_assert_int_eq(ps_pgtable_unregister(pt, P1G * PG, P1G * PG), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/*
 * A whole frame pinned for write stays in the dirty log while the pin lasts
 * (S6): the device may write it at any time, so every harvest reports it,
 * until the first one after the unpin.
 */
START_TEST(write_pinned_frame_is_in_every_harvest)
{
	uint64_t units[1], got[512], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, PS_PIN_WRITE,
					    units, 1, &n),
			 0);
	for (int round = 0; round < 3; round++) {
		ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG,
						  PS_HARVEST_REARM |
							  PS_HARVEST_UNITS,
						  got, 512, &n, NULL),
				 0);
		ck_assert_uint_eq(n, 1);
		ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	}
	ck_assert_int_eq(ps_space_unpin(sp, units, 1, 0), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1); /* the first harvest after the unpin */
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, 512, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* --- harvest in units (S6, S11; lib/space-log.c L1..L4) ------------------- */

/*
 * Map @npages from @addr over the frames from @frame, writable, and register
 * them PS_WP_ASYNC | PS_WP_HUGE_WHOLE, protected (a migration's first round).
 */
static void map_tracked(uint64_t addr, uint64_t npages, uint64_t frame)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);

	ck_assert_int_eq(ps_space_map_range(sp, addr, npages * PG, frame,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, addr, npages * PG,
					     PS_WP_ASYNC | PS_WP_HUGE_WHOLE),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, addr, npages * PG), 0);
}

/* Harvest [@start, +@len) to completion, @max a call; returns the entries. */
static uint64_t harvest_all(uint64_t start, uint64_t len, unsigned int flags,
			    uint64_t *out, uint64_t room, uint64_t max)
{
	uint64_t at = start, total = 0;

	while (at < start + len) {
		uint64_t n = 0, next = 0;

		ck_assert_uint_gt(room, total);
		ck_assert_int_eq(ps_space_harvest(sp, at, start + len - at,
						  flags, out + total,
						  max < room - total
							  ? max
							  : room - total,
						  &n, &next),
				 0);
		ck_assert_uint_gt(next, at); /* progress */
		total += n;
		at = next;
	}
	return total;
}

/* Is the leaf at @addr write-protected (uffd-wp) and not writable? */
static bool armed_at(uint64_t addr)
{
	ps_pte_t e;

	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), addr, &e), 0);
	return !ps_pte_is_writable(e);
}

/*
 * A whole-tracked frame written through its huge entry is one unit mark: a
 * harvest in units reports it as one entry and re-arms its leaf whole (it
 * stays huge), and nothing is left for the next harvest.
 */
START_TEST(harvest_written_frame_is_one_unit)
{
	uint64_t got[8], n;

	map_tracked(0, 2 * P2M, 0);
	map_tracked(P1G * PG, P1G, P1G);
	ck_assert_int_eq(ps_space_fault(sp, P2M * PG + 9 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, P1G * PG + 77 * PG,
					PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(!armed_at(P2M * PG));
	ck_assert_int_eq(ps_space_harvest(sp, 0, 2 * P1G * PG,
					  PS_HARVEST_REARM | PS_HARVEST_UNITS,
					  got, 8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], P2M * PG | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(got[1], P1G * PG | PS_SPACE_ORDER_1G);
	ck_assert_uint_eq(leaf_order(P2M * PG, NULL), 9);
	ck_assert_uint_eq(leaf_order(P1G * PG, NULL), 18);
	ck_assert(armed_at(P2M * PG));
	ck_assert(armed_at(P1G * PG));
	ck_assert_int_eq(ps_space_harvest(sp, 0, 2 * P1G * PG,
					  PS_HARVEST_REARM | PS_HARVEST_UNITS,
					  got, 8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

/*
 * A harvest at 4 KiB expands a unit mark: every page of it, once, ascending;
 * and it leaves nothing behind.
 */
START_TEST(harvest_at_4k_expands_a_unit)
{
	static uint64_t got[P1G + P2M];
	uint64_t n;

	map_tracked(0, P2M, 0);
	map_tracked(P1G * PG, P1G, P1G);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, P1G * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	n = harvest_all(0, 2 * P1G * PG, PS_HARVEST_REARM, got, P1G + P2M, P1G);
	ck_assert_uint_eq(n, P2M + P1G);
	for (uint64_t i = 0; i < P2M; i++)
		ck_assert_uint_eq(got[i], i * PG);
	for (uint64_t i = 0; i < P1G; i++)
		ck_assert_uint_eq(got[P2M + i], (P1G + i) * PG);
	/* Re-armed whole, without a split. */
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	ck_assert_uint_eq(leaf_order(P1G * PG, NULL), 18);
	ck_assert(armed_at(0) && armed_at(P1G * PG));
	ck_assert_int_eq(ps_space_harvest(sp, 0, 2 * P1G * PG, 0, got, P1G, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

/*
 * A range that covers part of a unit, in units or not: the pages inside are
 * reported at 4 KiB, the rest stays marked (L2), and a later harvest of the
 * whole extent reports exactly those, none twice.
 */
START_TEST(harvest_part_of_a_unit)
{
	uint64_t got[P2M], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	for (int units = 0; units < 2; units++) {
		const unsigned int f = units ? PS_HARVEST_UNITS : 0;

		ck_assert_int_eq(
			ps_space_redirty(sp,
					 (uint64_t[]){0 | PS_SPACE_ORDER_2M},
					 1),
			0);
		ck_assert_int_eq(ps_space_harvest(sp, 3 * PG, 10 * PG, f, got,
						  P2M, &n, NULL),
				 0);
		ck_assert_uint_eq(n, 10);
		for (uint64_t i = 0; i < 10; i++)
			ck_assert_uint_eq(got[i], (3 + i) * PG);
		ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, f, got, P2M,
						  &n, NULL),
				 0);
		ck_assert_uint_eq(n, P2M - 10);
		ck_assert_uint_eq(got[2], 2 * PG);
		ck_assert_uint_eq(got[3], 13 * PG);
		ck_assert_uint_eq(got[n - 1], (P2M - 1) * PG);
	}
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/*
 * Units at both ends of a range, and a 1 GiB unit a range covers in part: the
 * 2 MiB units inside are reported as units, the pages of the partial 2 MiB
 * units at 4 KiB.
 */
START_TEST(harvest_units_at_the_ends)
{
	static uint64_t got[2 * P2M];
	uint64_t n;
	const uint64_t g = P1G * PG;

	ck_assert_int_eq(
		ps_space_redirty(sp,
				 (uint64_t[]){0 | PS_SPACE_ORDER_2M,
					      2 * P2M * PG | PS_SPACE_ORDER_2M,
					      g | PS_SPACE_ORDER_1G},
				 3),
		0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, P2M * PG + 5 * PG),
			 PS_SPACE_MARK_UNMAPPED); /* nothing mapped: no mark */
	ck_assert_int_eq(ps_space_redirty(sp, (uint64_t[]){P2M * PG + 5 * PG},
					  1),
			 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 3 * P2M * PG, PS_HARVEST_UNITS,
					  got, 8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(got[1], P2M * PG + 5 * PG);
	ck_assert_uint_eq(got[2], 2 * P2M * PG | PS_SPACE_ORDER_2M);
	/* [g + 1 MiB, g + 5 MiB): a 4 KiB half, a 2 MiB unit, a half. */
	ck_assert_int_eq(ps_space_harvest(sp, g + P2M / 2 * PG, 2 * P2M * PG,
					  PS_HARVEST_UNITS, got, 2 * P2M, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, P2M / 2 + 1 + P2M / 2);
	ck_assert_uint_eq(got[0], g + P2M / 2 * PG);
	ck_assert_uint_eq(got[P2M / 2], (g + P2M * PG) | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(got[P2M / 2 + 1], g + 2 * P2M * PG);
	ck_assert_uint_eq(got[n - 1], g + (5 * P2M / 2 - 1) * PG);
	/* The rest of the GiB: its first 1 MiB and 2 MiB units after. */
	ck_assert_int_eq(ps_space_harvest(sp, g, g, PS_HARVEST_UNITS, got,
					  2 * P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, P2M / 2 + P2M / 2 + (P1G / P2M - 3));
	ck_assert_uint_eq(got[0], g);
	ck_assert_uint_eq(got[P2M / 2], g + 5 * P2M / 2 * PG);
	ck_assert_uint_eq(got[P2M], (g + 3 * P2M * PG) | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(got[n - 1], (2 * g - P2M * PG) | PS_SPACE_ORDER_2M);
}
END_TEST

/*
 * A unit mark and 4 KiB marks of the same frame: in units, one entry (the
 * pages are taken with it, L3); at 4 KiB, every page once. Neither loses the
 * other: a page marked after a unit harvest is reported by the next.
 */
START_TEST(harvest_unit_and_page_marks_of_one_frame)
{
	uint64_t got[P2M], n;

	map_tracked(0, P2M, 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 7 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, 0, got, P2M, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 0);
	/* Both again, at 4 KiB: 512 pages, page 7 once. */
	ck_assert_int_eq(ps_space_redirty(sp,
					  (uint64_t[]){7 * PG,
						       0 | PS_SPACE_ORDER_2M},
					  2),
			 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, 0, got, P2M, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, P2M);
	for (uint64_t i = 0; i < P2M; i++)
		ck_assert_uint_eq(got[i], i * PG);
	/* A page after the unit was taken: the next harvest has it. */
	ck_assert_int_eq(ps_space_mark_dirty(sp, 9 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, PS_HARVEST_UNITS,
					  got, P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 9 * PG);
}
END_TEST

/*
 * @max counts entries: a budget that ends between units stops there, resumes
 * at the next unit, and the marks not reported stay (L4).
 */
START_TEST(harvest_budget_stops_between_units)
{
	uint64_t got[8], n, next;
	const uint64_t u = P2M * PG;

	ck_assert_int_eq(
		ps_space_redirty(sp,
				 (uint64_t[]){0 | PS_SPACE_ORDER_2M, u + 3 * PG,
					      2 * u | PS_SPACE_ORDER_2M,
					      3 * u | PS_SPACE_ORDER_2M},
				 4),
		0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 4 * u, PS_HARVEST_UNITS, got,
					  1, &n, &next),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(next, u + 3 * PG);
	ck_assert_int_eq(ps_space_harvest(sp, next, 4 * u - next,
					  PS_HARVEST_UNITS, got, 2, &n, &next),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], u + 3 * PG);
	ck_assert_uint_eq(got[1], 2 * u | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(next, 3 * u);
	/* The whole range again: only the unit not reported. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 4 * u, PS_HARVEST_UNITS, got,
					  8, &n, &next),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 3 * u | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(next, 4 * u);
}
END_TEST

/*
 * Regression: a re-arming harvest at 4 KiB whose budget stopped inside a 1 GiB
 * leaf tracked whole was refused (-EINVAL) on resume, the get-and-rearm scan
 * refusing a range that begins inside such a leaf. It resumes, and the GiB is
 * reported whole, each page once, the leaf re-armed whole.
 */
START_TEST(harvest_resumes_inside_a_1g_entry)
{
	static uint64_t got[P1G + 1000];
	const uint64_t g = P1G * PG;
	uint64_t n;

	map_tracked(g, P1G, P1G);
	ck_assert_int_eq(ps_space_fault(sp, g + 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	n = harvest_all(g, g, PS_HARVEST_REARM, got, P1G + 1000, 1000);
	ck_assert_uint_eq(n, P1G);
	for (uint64_t i = 0; i < P1G; i++)
		ck_assert_uint_eq(got[i], g + i * PG);
	ck_assert_uint_eq(leaf_order(g, NULL), 18);
	ck_assert(armed_at(g));
	/* A range from inside the leaf, written again: the same. */
	ck_assert_int_eq(ps_space_fault(sp, g + 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	n = harvest_all(g + P2M * PG, g - P2M * PG, PS_HARVEST_REARM, got,
			P1G + 1000, 1000);
	ck_assert_uint_eq(n, P1G - P2M);
	ck_assert_uint_eq(leaf_order(g, NULL), 18);
	n = harvest_all(g, g, PS_HARVEST_REARM | PS_HARVEST_UNITS, got,
			P1G + 1000, 1000);
	ck_assert_uint_eq(n, 1); /* the first 2 MiB, as a unit */
	ck_assert_uint_eq(got[0], g | PS_SPACE_ORDER_2M);
}
END_TEST

/*
 * Regression: a re-arming harvest of an unregistered range cleared WRITE page
 * by page, which split the huge entries it reported whole. It clears WRITE of
 * the leaf whole (it stays huge); the next write faults and logs the frame
 * again. A range that reports part of a leaf still splits it (only its pages
 * lose WRITE).
 */
START_TEST(harvest_rearm_unregistered_keeps_leaves_huge)
{
	uint64_t got[P2M], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G,
					    PS_MAP_WRITE, NULL),
			 0);
	for (int units = 0; units < 2; units++) {
		const unsigned int f = PS_HARVEST_REARM |
				       (units ? PS_HARVEST_UNITS : 0);

		ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
		ck_assert(!armed_at(0));
		ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG, f, got, P2M,
						  &n, NULL),
				 0);
		ck_assert_uint_eq(n, units ? 1 : P2M);
		ck_assert_uint_eq(leaf_order(0, NULL), 9);
		ck_assert(armed_at(0));
	}
	/* The next write faults, and logs the frame again. */
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(!armed_at(0));
	ck_assert_int_eq(ps_space_harvest(sp, 0, P2M * PG,
					  PS_HARVEST_REARM | PS_HARVEST_UNITS,
					  got, P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	/* 1 GiB, in units. */
	ck_assert_int_eq(ps_space_fault(sp, P1G * PG + 9 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_harvest(sp, P1G * PG, P1G * PG,
					  PS_HARVEST_REARM | PS_HARVEST_UNITS,
					  got, P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(leaf_order(P1G * PG, NULL), 18);
	ck_assert(armed_at(P1G * PG));
	/* Part of a leaf: its pages only (the rest stays marked). */
	ck_assert_int_eq(ps_space_fault(sp, P2M * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(!armed_at(P2M * PG + 5 * PG));
	ck_assert_int_eq(ps_space_harvest(sp, P2M * PG + 4 * PG, PG,
					  PS_HARVEST_REARM, got, P2M, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(leaf_order(P2M * PG + 4 * PG, NULL), 0);
	ck_assert(armed_at(P2M * PG + 4 * PG));
	ck_assert(!armed_at(P2M * PG + 5 * PG));
	ck_assert_int_eq(ps_space_harvest(sp, P2M * PG, P2M * PG, 0, got, P2M,
					  &n, NULL),
			 0);
	ck_assert_uint_eq(n, P2M - 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, P1G * PG, P1G * PG, 0), 0);
}
END_TEST

/* ps_space_redirty() takes units back as PS_HARVEST_UNITS reports them. */
START_TEST(redirty_takes_units)
{
	uint64_t got[4], n;

	ck_assert_int_eq(ps_space_redirty(sp,
					  (uint64_t[]){PG | PS_SPACE_ORDER_2M},
					  1),
			 -EINVAL); /* not aligned to its unit */
	ck_assert_int_eq(ps_space_redirty(sp, (uint64_t[]){PG | 3}, 1),
			 -EINVAL); /* no such order */
	ck_assert_int_eq(ps_space_redirty(sp,
					  (uint64_t[]){(SPACE_SIZE - P2M * PG) |
						       PS_SPACE_ORDER_1G},
					  1),
			 -EINVAL); /* beyond the space */
	ck_assert_int_eq(
		ps_space_redirty(sp, (uint64_t[]){P1G * PG | PS_SPACE_ORDER_1G},
				 1),
		0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, PS_HARVEST_UNITS,
					  got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], P1G * PG | PS_SPACE_ORDER_1G);
}
END_TEST

/* --- write-back of huge frames (S4, S9, S12 per unit) --------------------- */

/* What the write-back callback saw. */
struct wb_seen {
	uint64_t calls, pinned, first_addr, last_addr, bad;
	int fail; /* returned by every call */
};

static int wb_fn(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct wb_seen *w = ctx;
	unsigned int o;
	struct ps_page *p = word(frame, &o);

	if (!w->calls)
		w->first_addr = addr;
	w->last_addr = addr;
	w->calls++;
	w->pinned += pinned;
	/* Called under WRITEBACK on the unit's word, with no LOCKED held. */
	if (!ps_page_test_flags(p, PS_PAGE_WRITEBACK) ||
	    ps_page_test_flags(p, PS_PAGE_LOCKED))
		w->bad++;
	return w->fail;
}

/* Is the entry at @addr writable? */
static bool writable_at(uint64_t addr)
{
	ps_pte_t e;

	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), addr, &e), 0);
	return ps_pte_is_writable(e);
}

START_TEST(writeback_whole_2m_frame)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	/* A write fault dirties the whole frame. */
	ck_assert_int_eq(ps_space_fault(sp, 7 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert(writable_at(7 * PG));
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	/* Every 4 KiB of the unit, in order, with the frame's word. */
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert_uint_eq(w.first_addr, 0);
	ck_assert_uint_eq(w.last_addr, (P2M - 1) * PG);
	ck_assert_uint_eq(w.bad, 0);
	ck_assert_uint_eq(w.pinned, 0);
	ck_assert_uint_eq(st.written, P2M);
	ck_assert(!ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY |
							     PS_PAGE_WRITEBACK |
							     PS_PAGE_LOCKED));
	/* Write-protected in one CAS: still one huge leaf. */
	ck_assert(!writable_at(7 * PG));
	ck_assert(!writable_at((P2M - 1) * PG));
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_2M);
	/* Clean: the next write-back writes nothing. */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, 0);
	/* A write after it faults and dirties it again (hook once more). */
	ck_assert_uint_eq(atomic_load(&dirty_total), 1);
	ck_assert_int_eq(ps_space_fault(sp, 9 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&dirty_total), 2);
	/* Part of the range: the unit is written whole (one DIRTY bit). */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 64 * PG, PG, PS_WB_INTEGRITY,
					    wb_fn, &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert(!ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
}
END_TEST

/*
 * Regression: a dirty whole 2 MiB frame whose huge entry was split (the VMM's
 * eager split, ps_pgtable_split(): 4 KiB entries, the frame's state still
 * whole) is written back page by page. Write-back took no unit there (no huge
 * leaf) and tried each page's own 4 KiB word, which is free under a whole
 * frame: it looked again forever (found by the soak's huge region).
 */
START_TEST(writeback_whole_frame_under_split_entries)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, 7 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_pgtable_split(ps_space_pgtable(sp), 0, P2M * PG),
			 0);
	ck_assert_uint_eq(leaf_order(0, NULL), 0);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_2M);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	/* Every page of the dirty frame, each on its own word now. */
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert_uint_eq(w.bad, 0);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	for (uint64_t j = 0; j < P2M; j += 37)
		ck_assert(!ps_page_test_flags(word(j, NULL), PS_PAGE_DIRTY));
	ck_assert(!writable_at(7 * PG));
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M);
}
END_TEST

START_TEST(writeback_whole_1g_frame_mark_dirty)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	const uint64_t base = 2 * P1G * PG;

	ck_assert_int_eq(ps_space_map_range(sp, base, P1G * PG, P1G, 0, NULL),
			 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, base + 12345 * PG),
			 PS_SPACE_MARK_DIRTIED);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, base, P1G * PG, PS_WB_CLEAN,
					    wb_fn, &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, P1G);
	ck_assert_uint_eq(w.first_addr, base);
	ck_assert_uint_eq(w.last_addr, base + (P1G - 1) * PG);
	ck_assert_uint_eq(w.bad, 0);
	ck_assert(!ps_page_test_flags(word(P1G, NULL),
				      PS_PAGE_DIRTY | PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(leaf_order(base, NULL), 18);
	ck_assert_int_eq(ps_space_unmap(sp, base, P1G * PG, 0), 0);
}
END_TEST

START_TEST(writeback_whole_frame_pinned_and_failing)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t unit, n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, &unit, 1, &n),
			 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_DIRTIED);
	/* CLEAN skips a pinned unit, once, and leaves it dirty. */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, 0);
	ck_assert_uint_eq(st.skipped_pinned, 1);
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	/* INTEGRITY bounces it: every call says pinned. */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_INTEGRITY,
					    wb_fn, &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert_uint_eq(w.pinned, P2M);
	ck_assert_uint_eq(st.bounced, P2M);
	ck_assert(!ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unpin(sp, &unit, 1, 0), 0);
	/* A failing write leaves the unit dirty, the hook run once more. */
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_DIRTIED);
	ck_assert_uint_eq(atomic_load(&dirty_total), 2);
	memset(&w, 0, sizeof(w));
	w.fail = -EIO;
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 -EIO);
	ck_assert_uint_eq(w.calls, 1); /* it stops at the first error */
	ck_assert_uint_eq(st.errors, 1);
	ck_assert(ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(word(0, NULL), PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(atomic_load(&dirty_total), 3);
	/* ... and in the set: the next write-back writes it. */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

START_TEST(writeback_2m_part_of_split_1g_frame)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	const uint64_t base = 2 * P1G * PG;
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, base, P1G * PG, P1G,
					    PS_MAP_WRITE, NULL),
			 0);
	/* A pin of one page: the 1 GiB frame splits to 2 MiB parts. */
	ck_assert_int_eq(ps_space_pin_range(sp, base, PG, 0, &f), 0);
	ck_assert_uint_eq(state_order(P1G + P2M), PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(leaf_order(base + P2M * PG, NULL), 18);
	ck_assert_int_eq(ps_space_mark_dirty(sp, base + (P2M + 5) * PG),
			 PS_SPACE_MARK_DIRTIED);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, base, P1G * PG, PS_WB_CLEAN,
					    wb_fn, &w, &st),
			 0);
	/* The part went to 4 KiB: every page of it written, now clean. */
	ck_assert_uint_eq(w.calls, P2M);
	ck_assert_uint_eq(w.first_addr, base + (P2M + 5) * PG); /* logged */
	ck_assert_uint_eq(w.bad, 0);
	for (uint64_t k = 0; k < P2M; k++)
		ck_assert(!ps_page_test_flags(word(P1G + P2M + k, NULL),
					      PS_PAGE_DIRTY));
	ck_assert(!writable_at(base + (P2M + 5) * PG));
	/* Its entries split with it; the other parts keep 2 MiB leaves. */
	ck_assert_uint_eq(leaf_order(base + (P2M + 5) * PG, NULL), 0);
	ck_assert_uint_eq(leaf_order(base + 2 * P2M * PG, NULL), 9);
	/* Another 2 MiB part is still a unit under its own leaf. */
	ck_assert_uint_eq(state_order(P1G + 2 * P2M), PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_space_fault(sp, base + (P2M + 5) * PG,
					PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, base, P1G * PG, 0), 0);
}
END_TEST

START_TEST(writeback_split_frame_per_page)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	/* A pin of one page splits the frame's state. */
	ck_assert_int_eq(ps_space_pin_range(sp, 3 * PG, PG, 0, &f), 0);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 5 * PG),
			 PS_SPACE_MARK_DIRTIED);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 300 * PG),
			 PS_SPACE_MARK_DIRTIED);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(ps_space_writeback(sp, 0, P2M * PG, PS_WB_CLEAN, wb_fn,
					    &w, &st),
			 0);
	ck_assert_uint_eq(w.calls, 2);
	ck_assert_uint_eq(w.first_addr, 5 * PG);
	ck_assert_uint_eq(w.last_addr, 300 * PG);
	ck_assert(!ps_page_test_flags(word(5, NULL), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(word(300, NULL), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* --- discard (S10 per unit) ----------------------------------------------- */

START_TEST(discard_whole_frames)
{
	struct ps_discard_skip skip[4];
	uint64_t units[2], n, nskip = 99;
	ps_pte_t e;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0, 0, NULL),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, P1G * PG, P1G * PG, P1G, 0,
					    NULL),
			 0);
	/* The second 2 MiB frame pinned: its 512 pages stay, said pinned. */
	ck_assert_int_eq(ps_space_pin_units(sp, P2M * PG, P2M * PG, 0, units, 2,
					    &n),
			 0);
	ck_assert_int_eq(ps_space_discard(sp, 0, 2 * P2M * PG, skip, 4, &nskip),
			 0);
	ck_assert_uint_eq(nskip, P2M);
	ck_assert_uint_eq(skip[0].addr, P2M * PG);
	ck_assert_uint_eq(skip[0].frame, P2M);
	ck_assert_uint_eq(skip[3].frame, P2M + 3);
	ck_assert_int_eq(skip[0].reason, PS_DISCARD_PINNED);
	/* The first was dropped whole: one free, no entry left. */
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
	ck_assert(!ps_page_is_live(word(0, NULL)));
	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), 5 * PG, &e), 0);
	ck_assert(!ps_pte_is_present(e));
	ck_assert_uint_eq(leaf_order(P2M * PG, NULL), 9);
	ck_assert_int_eq(ps_space_unpin(sp, units, n, 0), 0);
	/* Part of a whole frame: its state splits, the part goes alone. */
	ck_assert_int_eq(ps_space_discard(sp, P2M * PG + PG, 2 * PG, skip, 4,
					  &nskip),
			 0);
	ck_assert_uint_eq(nskip, 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 3);
	ck_assert(!ps_page_is_live(ps_space_page(sp, P2M + 2)));
	ck_assert_uint_eq(ps_page_refs(ps_space_page(sp, P2M + 3)), 1);
	ck_assert_uint_eq(leaf_order(P2M * PG, NULL), 0);
	/* 1 GiB whole, and the 510 parts left: 511 frees more. */
	ck_assert_int_eq(ps_space_discard(sp, 0, SPACE_SIZE, NULL, 0, &nskip),
			 0);
	ck_assert_uint_eq(nskip, 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 3 + 511);
	ck_assert(!ps_page_is_live(word(P1G, NULL)));
}
END_TEST

/* --- -ENOMEM from the splits of huge entries (PS_PGTABLE_FAILPOINTS) ----- */

extern bool (*ps__pgtable_alloc_fails)(void);

static bool alloc_always_fails(void)
{
	return true;
}

/* Pages [0, P2M) read as @want (entries), with refs and pins as before. */
struct frame_snap {
	ps_pte_t e[P2M];
	uint64_t refs[P2M], pins[P2M];
};

static void snap(struct frame_snap *f)
{
	ck_assert_int_eq(ps_pgtable_get_range(ps_space_pgtable(sp), 0, P2M,
					      f->e),
			 0);
	for (uint64_t j = 0; j < P2M; j++) {
		f->refs[j] = ps_page_refs(word(j, NULL));
		f->pins[j] = ps_page_pins(word(j, NULL));
	}
}

static void same_snap(const struct frame_snap *a, const struct frame_snap *b,
		      const char *what)
{
	uint64_t j = 0;

	while (j < P2M && a->e[j] == b->e[j] && a->refs[j] == b->refs[j] &&
	       a->pins[j] == b->pins[j])
		j++;
	ck_assert_msg(j == P2M, "%s: page %llu changed", what,
		      (unsigned long long)j);
}

/*
 * Operations on part of a whole 2 MiB frame split its entry (in the table's
 * zap): when the split cannot allocate the level, the call fails with -ENOMEM
 * and nothing is lost or changed: every page reads the same entry, holds the
 * same references and pins, no frame is freed, and the call succeeds when
 * repeated with memory. Regression: both calls ignored the zap's -ENOMEM, so
 * ps_space_unmap() returned 0 with the page still mapped, and
 * ps_space_discard() freed the frame (free_frame hook) while its entry still
 * mapped it.
 */
START_TEST(split_enomem_changes_nothing)
{
	static struct frame_snap before, after;
	struct ps_discard_skip sk[4];
	uint64_t part, n, nsk = 99;
	int rc;

	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, &part, 1, &n),
			 0);
	snap(&before);
	ck_assert_uint_eq(leaf_order(0, NULL), 9);

	/* Unmap of one page of a pinned whole frame. */
	ps__pgtable_alloc_fails = alloc_always_fails;
	rc = ps_space_unmap(sp, PG, PG, 0);
	ps__pgtable_alloc_fails = NULL;
	ck_assert_int_eq(rc, -ENOMEM);
	snap(&after);
	same_snap(&before, &after, "unmap of part");
	ck_assert_uint_eq(leaf_order(0, NULL), 9);
	ck_assert_uint_eq(atomic_load(&freed_total), 0);

	/* Discard of one page (its frame only the mapping holds). */
	ck_assert_int_eq(ps_space_unpin(sp, &part, 1, 0), 0);
	snap(&before);
	ps__pgtable_alloc_fails = alloc_always_fails;
	rc = ps_space_discard(sp, 2 * PG, PG, sk, 4, &nsk);
	ps__pgtable_alloc_fails = NULL;
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_uint_eq(nsk, 0);
	snap(&after);
	same_snap(&before, &after, "discard of part");
	ck_assert_uint_eq(atomic_load(&freed_total), 0);

	/* With memory: both go through, exactly for their page. */
	ck_assert_int_eq(ps_space_discard(sp, 2 * PG, PG, sk, 4, &nsk), 0);
	ck_assert_uint_eq(nsk, 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
	ck_assert_int_eq(ps_space_unmap(sp, PG, PG, 0), 0);
	ck_assert_uint_eq(leaf_order(0, NULL), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 2);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M);
}
END_TEST

/* --- races (failpoints) --------------------------------------------------- */

static _Atomic(unsigned) violations;
static void violation(const char *what, uint64_t a, uint64_t b);

static _Atomic(int) fp_once;

/* At FP_HUGE_RELEASE_RESOLVED, once: split the frame (pin 4 KiB of it). */
static void split_at_release(int point, uint64_t frame)
{
	uint64_t unit, n;

	if (point != FP_HUGE_RELEASE_RESOLVED || atomic_exchange(&fp_once, 1))
		return;
	if (ps_space_pin_units(sp, (frame + 3) * PG, PG, 0, &unit, 1, &n))
		violation("the racing 4 KiB pin failed", frame, 0);
}

/*
 * A release of a whole-frame pin that found the frame whole, and the split
 * that comes before it passes the gate (S18): the release must land on the
 * parts, one on each, not on the split word (PS_PAGE_ERR_SPLIT, lost).
 */
START_TEST(fp_release_after_the_split)
{
	uint64_t whole, n;

	atomic_store(&violations, 0);
	atomic_store(&fp_once, 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, &whole, 1, &n),
			 0);
	ps__failpoint = split_at_release;
	ck_assert_int_eq(ps_space_unpin(sp, &whole, 1, 0), 0);
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ck_assert_int_eq(atomic_load(&fp_once), 1);
	ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
	/* The racing 4 KiB pin alone is left, on page 3. */
	for (uint64_t j = 0; j < P2M; j++)
		ck_assert_uint_eq(ps_page_pins(ps_space_page(sp, j)), j == 3);
	ck_assert_int_eq(ps_space_unpin(sp, (uint64_t[]){3}, 1, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), P2M);
}
END_TEST

/*
 * The split of a frame against the merge of its parts (S18): a merge makes the
 * huge word whole before it frees the parts it froze. At FP_PIN_LOOKED_UP (a
 * pin of a 4 KiB page read the entry of a split frame, has not looked at the
 * frame's state yet), once per round: let the main thread unmap and map the
 * frame again (the map merges its free parts), and wait until the word is
 * whole, so that the pin's split comes while the merge may still be freeing
 * the parts. The pin must never fail: before the merge passed the split gate,
 * the split found a part the merge still held and the pin failed with -EBUSY.
 * (It may fail with -EFAULT: the word is whole before the entries are.)
 */
static _Atomic(int) merge_go, merge_seen_whole;

static void remerge_at_lookup(int point, uint64_t addr)
{
	(void)addr;
	if (point != FP_PIN_LOOKED_UP || atomic_exchange(&fp_once, 1))
		return;
	atomic_store(&merge_go, 1);
	/* Bounded: a map that never makes it whole ends the wait. */
	for (long spin = 0; spin < 100000000L; spin++) {
		unsigned int o;

		(void)word(9, &o);
		if (o == PS_SPACE_ORDER_2M) {
			atomic_fetch_add(&merge_seen_whole, 1);
			return;
		}
		if (!atomic_load(&merge_go))
			return; /* the main thread is done with the round */
	}
}

static void *remerge_pinner(void *arg)
{
	uint64_t f;
	int rc = ps_space_pin_range(sp, 9 * PG, PG, 0, &f);

	(void)arg;
	/*
	 * -EFAULT is an answer, not the bug: the failpoint lets the pin go
	 * once the word is whole, which may be before the map's entries are
	 * in, so its retry may find the page not mapped. -EBUSY is the bug.
	 */
	if (rc == -EFAULT)
		return NULL;
	if (rc)
		violation("the pin of page 9 failed", (uint64_t)-rc, 9);
	else if (ps_space_unpin(sp, &f, 1, 0))
		violation("the unpin of page 9 failed", f, 0);
	return NULL;
}

START_TEST(fp_split_against_merge)
{
	const unsigned rounds = 200;

	atomic_store(&violations, 0);
	atomic_store(&merge_seen_whole, 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0, NULL), 0);
	ps__failpoint = remerge_at_lookup;
	for (unsigned i = 0; i < rounds; i++) {
		uint64_t f;
		pthread_t t;

		/* Split the frame's state: a 4 KiB pin of page 7. */
		ck_assert_int_eq(ps_space_pin_range(sp, 7 * PG, PG, 0, &f), 0);
		ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
		ck_assert_uint_eq(state_order(9), PS_SPACE_ORDER_4K);
		atomic_store(&merge_go, 0);
		atomic_store(&fp_once, 0);
		ck_assert_int_eq(pthread_create(&t, NULL, remerge_pinner, NULL),
				 0);
		while (!atomic_load(&merge_go))
			sched_yield();
		ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
		ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0,
						    NULL),
				 0);
		atomic_store(&merge_go, 0);
		pthread_join(t, NULL);
	}
	ps__failpoint = NULL;
	ck_assert_uint_eq(atomic_load(&violations), 0);
	/* The map merged in the rounds (the race was there to be had). */
	ck_assert_uint_gt(atomic_load(&merge_seen_whole), 0);
	for (uint64_t j = 0; j < P2M; j++)
		ck_assert_uint_eq(ps_page_pins(word(j, NULL)), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
}
END_TEST

/* --- stress: whole-frame pins against replacement (S2 per unit) ----------- */

static void violation(const char *what, uint64_t a, uint64_t b)
{
	/* Recorded, asserted after the join (no ck_assert off the main
	 * thread). */
	if (!atomic_fetch_add(&violations, 1))
		fprintf(stderr, "violation: %s (%#llx, %#llx)\n", what,
			(unsigned long long)a, (unsigned long long)b);
}

/*
 * The free hook's check. A frame's word is free once its last reference is
 * dropped, before the hook runs (which only tells the owner: pagestate/space.h,
 * free_frame), and the stress's mapper maps A and B again without waiting for
 * their hooks (it owns no reference: a pin may hold the frame across the
 * remap). So a map that begins between a pinner's last release and that
 * release's hook starts the frame's next lifetime, and the hook finds the word
 * live: the frame was not freed while held. The check allows exactly that: a
 * hook run by the pinner (the thread that releases with the mapper running)
 * may find the word live only if a map began since the map count the pinner
 * read before its call (maps_done_seen: a map in flight then, or begun
 * after); one run by the mapper (an unmap's put) must find it free, as must
 * one with no map in that window. Seq_cst: a map's count comes before its
 * word's CAS, which the hook's acquire load of the word reads.
 */
static _Atomic(uint64_t) maps_begun, maps_done;
static _Thread_local bool releases_racing_maps;
static _Thread_local uint64_t maps_done_seen;

static void on_free_checked(void *ctx, struct ps_space *s, uint64_t frame)
{
	unsigned int o;

	(void)ctx;
	atomic_fetch_add(&freed_total, 1);
	if (!ps_page_is_live(ps_space_frame_word(s, frame, &o)))
		return;
	if (releases_racing_maps && atomic_load(&maps_begun) != maps_done_seen)
		return; /* the next lifetime, mapped after the release */
	violation("a frame was freed while held", frame, o);
}

/* The releasing thread's map count, before a call that may free (above). */
static void note_maps_done(void)
{
	maps_done_seen = atomic_load(&maps_done);
}

/*
 * A mapper maps 2 MiB at address 0 with the 2 MiB frames A (0) and B (512) in
 * turn, and unmaps it again (each an operation); a pinner pins the 2 MiB whole,
 * by ps_space_pin_units() and by ps_space_pin_range() in turn, checks that it
 * holds a pin on the frame it was given (A or B, one unit, or its 512 frames in
 * order) and unpins. No pin is lost or left behind, no frame is freed while
 * pinned, and each lifetime is freed once. The loops run until a pin succeeded.
 * The mapper reuses A and B without waiting for their hooks, so a hook may find
 * its frame in its next lifetime (on_free_checked() allows exactly that).
 */
struct unit_race {
	_Atomic(uint64_t) pins;
	_Atomic(int) pinned;
	uint64_t frames[P2M];
	struct ps_test_overlap ov; /* side 0 the mapper, 1 the pinner */
};

static void *unit_race_pinner(void *arg)
{
	struct unit_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	uint64_t i = 0;

	releases_racing_maps = true;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me), i++) {
		uint64_t unit = 0, n = 0, f;
		int rc;

		note_maps_done(); /* a pin's back-out may free the frame */
		if (i & 1) {
			rc = ps_space_pin_range(sp, 0, P2M * PG, 0, r->frames);
			n = P2M;
			f = r->frames[0];
			for (uint64_t k = 1; !rc && k < P2M; k++)
				if (r->frames[k] != f + k)
					violation("pin_range: frames out of "
						  "order",
						  f, r->frames[k]);
		} else {
			rc = ps_space_pin_units(sp, 0, P2M * PG, 0, &unit, 1,
						&n);
			f = PS_SPACE_UNIT_FRAME(unit);
			if (!rc && (n != 1 || PS_SPACE_UNIT_ORDER(unit) !=
						      PS_SPACE_ORDER_2M))
				violation("pin_units: not one 2 MiB unit", unit,
					  n);
		}
		if (rc == -EFAULT)
			continue; /* unmapped at that instant */
		if (rc || (f != 0 && f != P2M) ||
		    !ps_page_is_pinned(ps_space_frame_word(sp, f, NULL))) {
			violation("a pin failed, or holds no pin", (uint64_t)rc,
				  f);
			continue;
		}
		note_maps_done();
		if (i & 1)
			rc = ps_space_unpin(sp, r->frames, P2M, 0);
		else
			rc = ps_space_unpin(sp, &unit, 1, 0);
		if (rc)
			violation("unpin failed", (uint64_t)rc, f);
		atomic_fetch_add(&r->pins, 1);
		if (!atomic_exchange(&r->pinned, 1))
			ps_test_overlap_release(&r->ov);
	}
	return NULL;
}

START_TEST(stress_unit_pins_against_remap)
{
	struct ps_space_config cfg;
	static struct unit_race r;
	struct ps_test_side me;
	uint64_t maps = 0, i;
	pthread_t t;

	/* A space of its own: its free hook checks the frame is not held. */
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.free_frame = on_free_checked;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	atomic_store(&violations, 0);
	atomic_store(&maps_begun, 0);
	atomic_store(&maps_done, 0);
	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops =
		2 * (ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 500);
	ps_test_overlap_hold(&r.ov); /* until a pin succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, unit_race_pinner, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		if (i & 1) {
			ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
			continue;
		}
		atomic_fetch_add(&maps_begun, 1);
		ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG,
						    (maps & 1) * P2M, 0, NULL),
				 0);
		atomic_fetch_add(&maps_done, 1);
		maps++;
	}
	pthread_join(t, NULL);
	if (i & 1) /* the last operation was a map */
		ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "mapper vs whole-frame pinner");
	for (uint64_t f = 0; f < 2 * P2M; f += P2M) {
		ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, f,
								   NULL)),
				  0);
		ck_assert(!ps_page_is_live(ps_space_frame_word(sp, f, NULL)));
	}
	/* Each lifetime freed once (a pin across a remap merges two). */
	ck_assert_uint_le(atomic_load(&freed_total), maps);
	ck_assert_uint_gt(atomic_load(&freed_total), 0);
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
}
END_TEST

/*
 * A map in the window between a frame's last release and its free_frame hook,
 * forced: a thread unpins the last reference of the whole frame B (its
 * mapping gone), and in its hook, before the stress's check runs, the main
 * thread maps B again. The word was free at the release, so the map starts
 * B's next lifetime (its reference alone, no pin); the old lifetime's hook
 * runs once, and the check (on_free_checked()) must not take the new mapping
 * for a holder of the old lifetime. Before the check allowed a map begun in
 * that window it did, and stress_unit_pins_against_remap failed so under load
 * (about 2 runs in 8 at PS_STRESS_SCALE=10).
 */
static _Atomic(int) window_stage; /* 1: a hook waits, 2: mapped again */

static void free_after_the_map(void *ctx, struct ps_space *s, uint64_t frame)
{
	if (!atomic_exchange(&window_stage, 1))
		while (atomic_load(&window_stage) != 2)
			sched_yield();
	on_free_checked(ctx, s, frame);
}

static void *window_unpinner(void *arg)
{
	uint64_t *unit = arg;

	releases_racing_maps = true;
	note_maps_done();
	if (ps_space_unpin(sp, unit, 1, 0))
		violation("unpin failed", *unit, 0);
	return NULL;
}

START_TEST(free_hook_check_allows_a_map_before_the_hook)
{
	struct ps_space_config cfg;
	uint64_t unit = 0, n = 0;
	pthread_t t;

	ck_assert_int_eq(ps_space_destroy(sp), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.free_frame = free_after_the_map;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, 2 * P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	atomic_store(&violations, 0);
	atomic_store(&maps_begun, 0);
	atomic_store(&maps_done, 0);
	atomic_store(&window_stage, 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, P2M, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0, &unit, 1, &n),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(PS_SPACE_UNIT_FRAME(unit), P2M);
	/* The pin holds B across the unmap. */
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, window_unpinner, &unit), 0);
	while (atomic_load(&window_stage) != 1)
		sched_yield();
	/* Released, its hook not run yet: the word is free already. */
	ck_assert(!ps_page_is_live(ps_space_frame_word(sp, P2M, NULL)));
	atomic_fetch_add(&maps_begun, 1);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, P2M, 0, NULL), 0);
	atomic_fetch_add(&maps_done, 1);
	atomic_store(&window_stage, 2);
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 1);
	/* The next lifetime: the new mapping's reference alone. */
	ck_assert_uint_eq(ps_page_refs(ps_space_frame_word(sp, P2M, NULL)), 1);
	ck_assert_uint_eq(ps_page_pins(ps_space_frame_word(sp, P2M, NULL)), 0);
	/* Its own hook, run by the unmap, finds the word free. */
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&freed_total), 2);
	ck_assert_uint_eq(atomic_load(&violations), 0);
}
END_TEST

/*
 * The secondary-map helper on pages of a whole frame against its split and
 * merge: one thread maps random pages of a 2 MiB frame for read or write (the
 * lookup reference on the whole word, or on the part's once split); the
 * other splits the frame's state (a 4 KiB pin and unpin) and remaps the frame
 * whole (unmap, map: the map merges the free parts; the unmap's invalidation
 * tears the secondary mapping down). The helper fails only with -EFAULT
 * (unmapped at that instant, no populate hook); after the join every page
 * holds exactly the mapping's reference: no lookup reference lost on a part
 * or left on the whole word across a split.
 */
struct sec_race {
	struct hsec m;
	struct ps_test_overlap ov; /* side 0 split/remap, 1 the helper */
	_Atomic(uint64_t) maps;
};

static void *sec_race_mapper(void *arg)
{
	struct sec_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	struct ps_test_rng g = ps_test_rng_new(19);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		const uint64_t k = ps_test_below(&g, P2M);
		int rc = ps_space_map_secondary(sp, &r->m.sub, k * PG,
						ps_test_below(&g, 2),
						&hsec_secops, &r->m);

		if (rc == -EFAULT)
			continue;
		if (rc)
			violation("secondary map failed", (uint64_t)-rc, k);
		else
			atomic_fetch_add(&r->maps, 1);
	}
	return NULL;
}

START_TEST(stress_secondary_against_split_and_merge)
{
	static struct sec_race r;
	struct ps_test_rng rng = ps_test_rng_new(20);
	struct ps_test_side me;
	pthread_t t;
	uint64_t bad = 0;

	declare();
	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.m.lock, NULL);
	ck_assert_int_eq(ps_interval_insert(&r.m.sub, ps_space_notifier(sp), 0,
					    P2M * PG, &hsec_ops, &r.m),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       500;
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, sec_race_mapper, &r), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t f;

		if (ps_test_below(&rng, 2)) {
			if (ps_space_pin_range(sp,
					       ps_test_below(&rng, P2M) * PG,
					       PG, 0, &f) ||
			    ps_space_unpin(sp, &f, 1, 0))
				violation("4 KiB pin or unpin failed", 0, 0);
		} else if (ps_space_unmap(sp, 0, P2M * PG, 0) ||
			   ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					      NULL)) {
			violation("remap failed", 0, 0);
		}
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "secondary maps vs split and merge");
	ck_assert_uint_gt(atomic_load(&r.maps), 0);
	for (uint64_t p = 0; p < P2M; p++)
		if (ps_page_refs(word(p, NULL)) != 1 ||
		    ps_page_pins(word(p, NULL)) ||
		    ps_page_test_flags(word(p, NULL), PS_PAGE_LOCKED))
			bad++;
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
	ps_interval_remove(&r.m.sub);
	pthread_mutex_destroy(&r.m.lock);
}
END_TEST

/*
 * A 4 KiB pin racing a whole-frame pin and the split it causes (S17, S18): each
 * round starts with the 2 MiB frame whole and mapped by a huge entry; one
 * thread pins one 4 KiB page of it (which splits the frame's state), the
 * other pins the whole 2 MiB (before, during or after that split, as the
 * race goes). With both pins held, every part holds exactly the whole pin,
 * and the 4 KiB page one more: no pin lost, none counted twice. Then both
 * unpin, every part holds none, and the unmap frees each part once. Rounds
 * run until the two threads overlapped (barriers start them together).
 */
struct split_race {
	pthread_barrier_t start, held, done;
	_Atomic(int) stop;
	_Atomic(uint64_t) page;	 /* the 4 KiB page of the round */
	_Atomic(int) unpin_race; /* the whole pin is taken before, released */
	uint64_t whole[P2M], nwhole;
	struct ps_test_overlap ov; /* side 0 the 4 KiB pinner, 1 the whole */
};

static void *split_race_worker(struct split_race *r, unsigned int side)
{
	struct ps_test_side me = ps_test_side(&r->ov, side, 0);

	for (;;) {
		uint64_t unit, n, pg;
		int rc;

		pthread_barrier_wait(&r->start);
		if (atomic_load(&r->stop))
			break;
		pg = atomic_load(&r->page);
		if (side == 0)
			rc = ps_space_pin_units(sp, pg * PG, PG, 0, &unit, 1,
						&n);
		else if (atomic_load(&r->unpin_race))
			rc = ps_space_unpin(sp, r->whole, r->nwhole, 0);
		else
			rc = ps_space_pin_units(sp, 0, P2M * PG, 0, r->whole,
						P2M, &r->nwhole);
		if (rc)
			violation("a pin or unpin failed", (uint64_t)rc, side);
		if (side == 0 && !rc && (n != 1 || unit != pg))
			violation("a 4 KiB pin got another unit", unit, pg);
		ps_test_overlap_step(&me);
		pthread_barrier_wait(&r->held);
		pthread_barrier_wait(&r->done); /* the main thread checked */
		if (side == 0)
			rc = rc ? 0 : ps_space_unpin(sp, &unit, 1, 0);
		else if (!atomic_load(&r->unpin_race))
			rc = rc ? 0
				: ps_space_unpin(sp, r->whole, r->nwhole, 0);
		if (rc)
			violation("an unpin failed", (uint64_t)rc, side);
		pthread_barrier_wait(&r->held);
	}
	return NULL;
}

static void *split_race_page(void *arg)
{
	return split_race_worker(arg, 0);
}

static void *split_race_whole(void *arg)
{
	return split_race_worker(arg, 1);
}

START_TEST(stress_split_against_pins)
{
	static struct split_race r;
	struct ps_test_rng rng = ps_test_rng_new(16);
	uint64_t rounds = 0, max_rounds;
	pthread_t t[2];

	declare();
	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	max_rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 100;
	pthread_barrier_init(&r.start, NULL, 3);
	pthread_barrier_init(&r.held, NULL, 3);
	pthread_barrier_init(&r.done, NULL, 3);
	ck_assert_int_eq(pthread_create(&t[0], NULL, split_race_page, &r), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, split_race_whole, &r), 0);
	for (;;) {
		uint64_t pg = ps_test_below(&rng, P2M), bad = 0;

		if (ps_test_overlap_enough(&r.ov) || rounds >= max_rounds) {
			atomic_store(&r.stop, 1);
			pthread_barrier_wait(&r.start);
			break;
		}
		/* Whole again (the free parts merge), under a huge entry. */
		ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, 0,
						    NULL),
				 0);
		ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_2M);
		atomic_store(&r.page, pg);
		/*
		 * Odd rounds: the whole pin is taken here, and released by
		 * its thread while the other's 4 KiB pin splits the frame (a
		 * release racing a split: the gate, S18).
		 */
		atomic_store(&r.unpin_race, (int)(rounds & 1));
		if (rounds & 1)
			ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, 0,
							    r.whole, P2M,
							    &r.nwhole),
					 0);
		pthread_barrier_wait(&r.start);
		pthread_barrier_wait(&r.held);
		/* Split, exact on every part: the whole pin, and 4 KiB's. */
		ck_assert_uint_eq(state_order(0), PS_SPACE_ORDER_4K);
		for (uint64_t j = 0; j < P2M; j++)
			if (ps_page_pins(ps_space_page(sp, j)) !=
			    (uint64_t) !(rounds & 1) + (j == pg))
				bad++;
		ck_assert_uint_eq(bad, 0);
		pthread_barrier_wait(&r.done);
		pthread_barrier_wait(&r.held);
		for (uint64_t j = 0; j < P2M; j++)
			if (ps_page_pins(ps_space_page(sp, j)) ||
			    ps_page_refs(ps_space_page(sp, j)) != 1)
				bad++;
		ck_assert_uint_eq(bad, 0);
		ck_assert_int_eq(ps_space_unmap(sp, 0, P2M * PG, 0), 0);
		rounds++;
		ck_assert_uint_eq(atomic_load(&freed_total), rounds * P2M);
	}
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "4 KiB pin vs whole pin and the split");
	ck_assert_uint_gt(rounds, 0);
}
END_TEST

/*
 * Write-back of whole frames against writes (S19 with S3, S4, S12): one
 * thread writes generations into a model of two 2 MiB frames' memory and
 * makes each write known the two ways a caller does: the first frame through
 * a write fault (before the write, then re-checking that the entry stayed
 * writable, as a CPU's store would fault again), the second through
 * ps_space_mark_dirty() (after the write), with now and then a 4 KiB pin of
 * it that splits its state, so that its pages go the 4 KiB way. The other
 * thread writes back (CLEAN and INTEGRITY in turn), copying the model into a
 * backing store. After the join, one INTEGRITY write-back must leave the
 * backing store equal to the memory: no write lost.
 */
struct wb_race {
	_Atomic(uint64_t) mem[2 * P2M];
	uint64_t backing[2 * P2M]; /* written by write-back only */
	struct ps_test_overlap ov; /* side 0 write-back, 1 the writer */
};

static int wb_race_fn(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct wb_race *r = ctx;
	struct ps_page *p = word(frame, NULL);

	(void)pinned;
	if (frame != addr / PG || frame >= 2 * P2M)
		violation("write-back: frame not the page's", addr, frame);
	else if (!ps_page_test_flags(p, PS_PAGE_WRITEBACK))
		violation("write-back: @fn without WRITEBACK", addr, frame);
	else
		r->backing[frame] = atomic_load(&r->mem[frame]);
	return 0;
}

static void *wb_race_writer(void *arg)
{
	struct wb_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	struct ps_test_rng rng = ps_test_rng_new(17);
	uint64_t gen = 0;

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		const uint64_t pg = ps_test_below(&rng, 2 * P2M);
		ps_pte_t e;
		int rc;

		gen++;
		if (pg < P2M) {
			/* A CPU store: writable at the store, or fault. */
			do {
				if (ps_space_fault(sp, pg * PG,
						   PS_ACCESS_WRITE) !=
				    PS_FAULT_OK) {
					violation("write fault refused", pg, 0);
					return NULL;
				}
				atomic_store(&r->mem[pg], gen);
				(void)ps_pgtable_get(ps_space_pgtable(sp),
						     pg * PG, &e);
			} while (!ps_pte_is_writable(e));
			continue;
		}
		atomic_store(&r->mem[pg], gen);
		rc = ps_space_mark_dirty(sp, pg * PG);
		if (rc != PS_SPACE_MARK_DIRTIED &&
		    rc != PS_SPACE_MARK_WAS_DIRTY)
			violation("mark_dirty failed", pg, (uint64_t)rc);
		if (!(gen & 255)) {
			uint64_t f;

			/* A 4 KiB pin: the second frame's state splits. */
			if (ps_space_pin_range(sp, pg * PG, PG, 0, &f) ||
			    ps_space_unpin(sp, &f, 1, 0))
				violation("4 KiB pin or unpin failed", pg, 0);
		}
	}
	return NULL;
}

START_TEST(stress_writeback_against_writes)
{
	static struct wb_race r;
	struct ps_test_side me;
	struct ps_writeback_stats st;
	uint64_t i, bad = 0;
	pthread_t t;
	int rc;

	declare();
	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * P2M * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ps_test_overlap_init(&r.ov, 2, 0);
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, wb_race_writer, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		rc = ps_space_writeback(sp, 0, 2 * P2M * PG,
					(i & 1) ? PS_WB_INTEGRITY : PS_WB_CLEAN,
					wb_race_fn, &r, NULL);
		if (rc)
			violation("write-back failed", (uint64_t)rc, i);
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ps_test_overlap_check(&r.ov, "write-back vs writes to whole frames");
	ck_assert_int_eq(ps_space_writeback(sp, 0, 2 * P2M * PG,
					    PS_WB_INTEGRITY, wb_race_fn, &r,
					    &st),
			 0);
	for (uint64_t p = 0; p < 2 * P2M; p++)
		if (r.backing[p] != atomic_load(&r.mem[p]))
			bad++;
	ck_assert_uint_eq(bad, 0);
	ck_assert(!ps_page_test_flags(word(0, NULL), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unmap(sp, 0, 2 * P2M * PG, 0), 0);
}
END_TEST

/* --- stress: marks against harvests in units (S6, S11, L1..L4) ----------- */

/*
 * Four 2 MiB frames: the first two unregistered (a write fault makes a leaf
 * writable whole; a re-arming harvest clears WRITE of the leaf), the other two
 * registered async and tracked whole (the get-and-rearm scan). A marker marks
 * whole and partial frames (write faults, pins for write of a frame or of a
 * few pages, mark_dirty) while a harvester runs rounds, each covering the four
 * frames in one to four pieces cut at random pages (so units are covered in
 * part), re-arming in units or at 4 KiB, with a random budget. The
 * shadow: the marker reads the round count before (k0) and after (k1) each
 * mark, by RMWs that pair with the harvester's; the harvester records, per
 * page, the last round that reported it. A mark that is in the log when its
 * call returns (mark_dirty, a pin) must be reported by a round in [k0, k1 + 1]:
 * rounds before k0 ended before it, round k1 + 1 began after it; it is checked
 * when round k1 + 1 ends. A write fault may find the leaf writable and log
 * nothing (its opener logged): it is checked after the last round, a plain
 * drain, against k0 alone.
 */
#define HR_PAGES (4 * P2M)
#define HR_QUEUE 4096u

struct hr_check {
	uint64_t page, k0, k1;
};

struct hr_race {
	struct ps_test_overlap ov;
	_Atomic(uint64_t) round;     /* rounds begun */
	uint64_t last[HR_PAGES];     /* the harvester's: last round reporting */
	uint64_t loose[HR_PAGES];    /* the marker's: latest k0 of a fault */
	struct hr_check q[HR_QUEUE]; /* marker -> harvester */
	_Atomic(uint64_t) head, tail;
	_Atomic(bool) stop; /* the harvester left its loop */
	uint64_t checked;
};

/* The marker: one mark, then its check, queued (or waited for). */
static void hr_mark(struct hr_race *r, struct ps_test_rng *rng)
{
	const uint64_t pg = ps_test_below(rng, HR_PAGES);
	const uint64_t f0 = pg & ~(P2M - 1);
	unsigned int op = (unsigned int)ps_test_below(rng, 8);
	uint64_t k0, k1, units[P2M], n, t;
	bool strict = true;

	/* Acq_rel RMW: pairs with the harvester's round RMW. */
	k0 = atomic_fetch_add_explicit(&r->round, 0, memory_order_acq_rel);
	if (op < 3) {
		/* A CPU write: through the entry, or a fault (S11). */
		strict = false;
		if (ps_space_fault(sp, pg * PG, PS_ACCESS_WRITE) != PS_FAULT_OK)
			violation("write fault refused", pg, 0);
	} else if (op < 5) {
		enum ps_space_mark m = ps_space_mark_dirty(sp, pg * PG);

		if (m != PS_SPACE_MARK_DIRTIED && m != PS_SPACE_MARK_WAS_DIRTY)
			violation("mark_dirty failed", pg, (uint64_t)m);
	} else if (op < 7) {
		/* The whole frame, pinned for write: one unit mark. */
		if (ps_space_pin_units(sp, f0 * PG, P2M * PG, PS_PIN_WRITE,
				       units, P2M, &n) ||
		    ps_space_unpin(sp, units, n, 0))
			violation("unit pin failed", f0, 0);
	} else if (!ps_test_below(rng, 16)) {
		/* A few pages of a frame (its state splits, rarely). */
		uint64_t fr[3];

		if (ps_space_pin_range(sp, (pg & ~UINT64_C(3)) * PG, 3 * PG,
				       PS_PIN_WRITE, fr) ||
		    ps_space_unpin(sp, fr, 3, 0))
			violation("4 KiB pin failed", pg, 0);
	} else {
		return;
	}
	/* Acq_rel RMW: the mark happens before round k1 + 1's take. */
	k1 = atomic_fetch_add_explicit(&r->round, 0, memory_order_acq_rel);
	if (!strict) {
		r->loose[pg] = k0;
		return;
	}
	/* Pins: every page of what was pinned; mark_dirty: the page. */
	for (uint64_t p = op >= 7   ? pg & ~UINT64_C(3)
			  : op >= 5 ? f0
				    : pg,
		      end = op >= 7   ? p + 3
			    : op >= 5 ? f0 + P2M
				      : pg + 1;
	     p < end; p++) {
		/* Acquire: the harvester's release of the slot. */
		while ((t = atomic_load_explicit(&r->tail,
						 memory_order_relaxed)) -
			       atomic_load_explicit(&r->head,
						    memory_order_acquire) ==
		       HR_QUEUE) {
			/* Relaxed: a stop flag; nothing is read after it. */
			if (atomic_load_explicit(&r->stop,
						 memory_order_relaxed))
				return; /* the harvester is gone */
			sched_yield();
		}
		r->q[t % HR_QUEUE] = (struct hr_check){p, k0, k1};
		/* Release: the slot, to the harvester's acquire. */
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	}
}

static void *hr_marker(void *arg)
{
	struct hr_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	struct ps_test_rng rng = ps_test_rng_new(23);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me))
		hr_mark(r, &rng);
	return NULL;
}

/* One harvest call's entries: ascending, disjoint, inside; into the shadow. */
static void hr_record(struct hr_race *r, uint64_t h, uint64_t lo, uint64_t hi,
		      const uint64_t *got, uint64_t n, uint64_t *prev_end)
{
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t a = got[i] & ~(PG - 1), o = got[i] & (PG - 1);
		const uint64_t p0 = a / PG, p1 = p0 + (UINT64_C(1) << o);

		if ((o && o != PS_SPACE_ORDER_2M) || p0 < *prev_end ||
		    p0 < lo || p1 > hi)
			violation("harvest entry out of order or range", got[i],
				  *prev_end);
		for (uint64_t p = p0; p < p1 && p < HR_PAGES; p++)
			r->last[p] = h;
		*prev_end = p1;
	}
}

/* Round @h: the frames in pieces, each harvested to its end. */
static void hr_round(struct hr_race *r, uint64_t h, struct ps_test_rng *rng,
		     unsigned int flags)
{
	static uint64_t got[HR_PAGES];
	uint64_t cut[5] = {0, HR_PAGES, HR_PAGES, HR_PAGES, HR_PAGES};
	const unsigned int pieces = 1 + (unsigned int)ps_test_below(rng, 4);

	for (unsigned int i = 1; i < pieces; i++)
		cut[i] = ps_test_below(rng, HR_PAGES);
	for (unsigned int i = 1; i < pieces; i++) /* sort the cuts */
		for (unsigned int j = i; j > 0 && cut[j] < cut[j - 1]; j--) {
			uint64_t x = cut[j];

			cut[j] = cut[j - 1];
			cut[j - 1] = x;
		}
	for (unsigned int i = 0; i < pieces; i++) {
		uint64_t at = cut[i] * PG, end = cut[i + 1] * PG, prev = 0;

		while (at < end) {
			const uint64_t max = ps_test_below(rng, 2)
						     ? HR_PAGES
						     : 1 + ps_test_below(rng,
									 5);
			uint64_t n = 0, next = 0;
			int rc = ps_space_harvest(sp, at, end - at, flags, got,
						  max, &n, &next);

			if (rc || next <= at || next > end || n > max) {
				violation("harvest failed", at, (uint64_t)rc);
				return;
			}
			hr_record(r, h, at / PG, next / PG, got, n, &prev);
			at = next;
		}
	}
}

/* The checks due once round @h has ended. */
static void hr_check(struct hr_race *r, uint64_t h)
{
	/* Acquire: the marker's release of the slots. */
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint64_t hd = atomic_load_explicit(&r->head, memory_order_relaxed);

	for (; hd < t; hd++) {
		const struct hr_check *c = &r->q[hd % HR_QUEUE];

		if (c->k1 + 1 > h)
			break; /* its round has not ended yet */
		if (r->last[c->page] < c->k0)
			violation("a mark no harvest reported", c->page, c->k0);
		r->checked++;
	}
	/* Release: the slots are free again. */
	atomic_store_explicit(&r->head, hd, memory_order_release);
}

START_TEST(stress_harvest_units_against_marks)
{
	static struct hr_race r;
	/*
	 * Every round re-arms: a plain harvest leaves the entries writable
	 * (its caller re-arms, S11), and a write through one is then reported
	 * by no harvest, which the check of faults would take for a loss.
	 */
	static const unsigned int flags[] = {PS_HARVEST_REARM |
						     PS_HARVEST_UNITS,
					     PS_HARVEST_REARM};
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct ps_test_rng rng = ps_test_rng_new(29);
	struct ps_test_side me;
	uint64_t h = 0, bad = 0;
	pthread_t t;

	declare();
	atomic_store(&violations, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(ps_space_map_range(sp, 0, HR_PAGES * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 2 * P2M * PG, 2 * P2M * PG,
					     PS_WP_ASYNC | PS_WP_HUGE_WHOLE),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * P2M * PG, 2 * P2M * PG), 0);
	ps_test_overlap_init(&r.ov, 2, 0);
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, hr_marker, &r), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		/* Acq_rel RMW: pairs with the marker's reads (k0, k1). */
		h = atomic_fetch_add_explicit(&r.round, 1,
					      memory_order_acq_rel) +
		    1;
		hr_round(&r, h, &rng, flags[ps_test_below(&rng, 2)]);
		hr_check(&r, h);
	}
	/* Relaxed: the marker's wait only (its checks are then dropped). */
	atomic_store_explicit(&r.stop, true, memory_order_relaxed);
	pthread_join(t, NULL);
	/* The drain: every mark left, at 4 KiB, and the last checks. */
	h = atomic_fetch_add(&r.round, 1) + 1;
	hr_round(&r, h, &rng, 0);
	hr_check(&r, UINT64_MAX - 1);
	for (uint64_t p = 0; p < HR_PAGES; p++)
		if (r.loose[p] && r.last[p] < r.loose[p])
			bad++;
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_gt(r.checked, 0);
	ps_test_overlap_check(&r.ov, "harvests in units vs marks");
	ck_assert_int_eq(ps_pgtable_unregister(pt, 2 * P2M * PG, 2 * P2M * PG),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, HR_PAGES * PG, 0), 0);
}
END_TEST

/* --- concurrent harvests of redirtied units (S6, L2..L4, H1) ------------- */

/* A GiB unit and two 2 MiB ones past it: every level is marked. */
#define HH_PAGES (P1G + 4 * P2M)
#define HH_MAXGOT 4096

struct hh_race {
	_Atomic(uint8_t) pend[HH_PAGES]; /* marked since last reported */
	_Atomic(bool) stop;
};

static struct hh_race hh;

/* Mark at random: the GiB unit, a 2 MiB unit or a page; pend before (L1). */
static void *hh_marker(void *arg)
{
	const uint64_t n = *(const uint64_t *)arg;
	struct ps_test_rng rng = ps_test_rng_new(71);

	for (uint64_t i = 0; i < n; i++) {
		const uint64_t k = ps_test_below(&rng, 64);
		uint64_t pg, o, e;

		if (!k) {
			pg = 0;
			o = PS_SPACE_ORDER_1G;
		} else if (k < 16) {
			pg = ps_test_below(&rng, HH_PAGES / P2M) * P2M;
			o = PS_SPACE_ORDER_2M;
		} else {
			pg = ps_test_below(&rng, HH_PAGES);
			o = 0;
		}
		/* Relaxed: the redirty's release orders it (L1). */
		for (uint64_t p = pg; p < pg + (UINT64_C(1) << o); p++)
			atomic_store_explicit(&hh.pend[p], 1,
					      memory_order_relaxed);
		e = pg * PG | o;
		if (ps_space_redirty(sp, &e, 1))
			violation("redirty failed", e, 0);
	}
	atomic_store(&hh.stop, true);
	return NULL;
}

/* Harvest [@lo, @hi) pages to its end with @flags and budgets from @rng. */
static void hh_harvest(uint64_t lo, uint64_t hi, unsigned int flags,
		       struct ps_test_rng *rng, uint64_t *got)
{
	uint64_t at = lo * PG;

	while (at < hi * PG) {
		/* A small budget for the first call only (L4). */
		const uint64_t max = at == lo * PG && rng &&
						     ps_test_below(rng, 2)
					     ? 1 + ps_test_below(rng, 5)
					     : HH_MAXGOT;
		uint64_t n = 0, next = 0;
		int rc = ps_space_harvest(sp, at, hi * PG - at, flags, got, max,
					  &n, &next);

		if (rc || next <= at || next > hi * PG || n > max) {
			violation("harvest failed", at, (uint64_t)rc);
			return;
		}
		for (uint64_t i = 0; i < n; i++) {
			const uint64_t a = got[i] & ~(PG - 1),
				       o = got[i] & (PG - 1);

			if (a < at || a + (PG << o) > next)
				violation("entry outside the range", got[i],
					  at);
			/* Relaxed: after the take's acquire. */
			for (uint64_t p = a / PG;
			     p < a / PG + (UINT64_C(1) << o) && p < HH_PAGES;
			     p++)
				atomic_store_explicit(&hh.pend[p], 0,
						      memory_order_relaxed);
		}
		at = next;
	}
}

static void *hh_harvester(void *arg)
{
	struct ps_test_rng rng = ps_test_rng_new((uint64_t)(uintptr_t)arg);
	uint64_t *got = malloc(HH_MAXGOT * sizeof(*got));

	ck_assert_ptr_nonnull(got);
	while (!atomic_load(&hh.stop)) {
		/* Ends at pages, at 2 MiB and at 1 GiB, overlapping. */
		uint64_t a = ps_test_below(&rng, HH_PAGES),
			 b = ps_test_below(&rng, HH_PAGES);
		const uint64_t al = ps_test_below(&rng, 3);

		if (al == 1) {
			a &= ~(P2M - 1);
			b &= ~(P2M - 1);
		} else if (al == 2) {
			a = 0;
		}
		if (a > b) {
			const uint64_t x = a;

			a = b;
			b = x;
		}
		if (a == b)
			continue;
		hh_harvest(a, b, ps_test_below(&rng, 2) ? PS_HARVEST_UNITS : 0,
			   &rng, got);
	}
	free(got);
	return NULL;
}

START_TEST(stress_concurrent_harvests_of_units)
{
	uint64_t n = ps_test_stress_size("PS_STRESS_ITERS", 20000) / 4, bad = 0;
	uint64_t *got = malloc(HH_MAXGOT * sizeof(*got));
	pthread_t m, h1, h2;

	ck_assert_ptr_nonnull(got);
	atomic_store(&violations, 0);
	memset(&hh, 0, sizeof(hh));
	ck_assert_int_eq(pthread_create(&h1, NULL, hh_harvester, (void *)11),
			 0);
	ck_assert_int_eq(pthread_create(&h2, NULL, hh_harvester, (void *)12),
			 0);
	ck_assert_int_eq(pthread_create(&m, NULL, hh_marker, &n), 0);
	pthread_join(m, NULL);
	pthread_join(h1, NULL);
	pthread_join(h2, NULL);
	/* The drain: every mark left is reported now. */
	hh_harvest(0, HH_PAGES, 0, NULL, got);
	for (uint64_t p = 0; p < HH_PAGES; p++)
		if (atomic_load(&hh.pend[p]))
			bad++;
	free(got);
	ck_assert_uint_eq(atomic_load(&violations), 0);
	ck_assert_uint_eq(bad, 0);
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

	tc = ps_test_tcase(s, "map/unmap", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, map_whole_frames_as_huge_entries);
	tcase_add_test(tc, map_part_of_a_frame_splits_it);
	tcase_add_test(tc, map_all_or_nothing);
	tcase_add_test(tc, unmap_part_of_a_frame_splits_it);
	tcase_add_test(tc, map_eexist_keeps_the_occupant);

	tc = ps_test_tcase(s, "map in chunks", 30);
	tcase_add_checked_fixture(tc, hc_declare, hc_teardown);
	tcase_add_test(tc, map_chunks_huge_fail_in_the_middle);
	tcase_add_loop_test(tc, map_chunks_huge_fail_keeps_wp_markers, 0, 2);
	tcase_add_test(tc, discard_chunks_huge);
	tcase_add_test(tc, map_chunks_huge_race_into_a_later_chunk);
	tcase_add_test(tc, map_chunks_huge_boundaries);
	tcase_add_test(tc, map_chunks_huge_declaration_waits);

	tc = ps_test_tcase(s, "pins", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, pin_units_one_rmw_per_frame);
	tcase_add_test(tc, pin_units_all_or_nothing);
	tcase_add_test(tc, pin_part_of_a_frame_splits_it);
	tcase_add_test(tc, pin_for_write_faults_the_whole_frame_dirty);
	tcase_add_test(tc, async_write_in_a_split_registration_logs_its_page);
	tcase_add_test(tc, write_pinned_frame_is_in_every_harvest);
	tcase_add_test(tc, write_fault_on_split_state_splits_the_entry);

	tc = ps_test_tcase(s, "harvest in units", 60);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, harvest_written_frame_is_one_unit);
	tcase_add_test(tc, harvest_at_4k_expands_a_unit);
	tcase_add_test(tc, harvest_part_of_a_unit);
	tcase_add_test(tc, harvest_units_at_the_ends);
	tcase_add_test(tc, harvest_unit_and_page_marks_of_one_frame);
	tcase_add_test(tc, harvest_budget_stops_between_units);
	tcase_add_test(tc, harvest_resumes_inside_a_1g_entry);
	tcase_add_test(tc, harvest_rearm_unregistered_keeps_leaves_huge);
	tcase_add_test(tc, redirty_takes_units);

	tc = ps_test_tcase(s, "write-back", 30);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, writeback_whole_2m_frame);
	tcase_add_test(tc, writeback_whole_frame_under_split_entries);
	tcase_add_test(tc, writeback_whole_1g_frame_mark_dirty);
	tcase_add_test(tc, writeback_whole_frame_pinned_and_failing);
	tcase_add_test(tc, writeback_split_frame_per_page);
	tcase_add_test(tc, writeback_2m_part_of_split_1g_frame);

	tc = ps_test_tcase(s, "secondary", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, secondary_map_inside_whole_frames);

	tc = ps_test_tcase(s, "discard", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, discard_whole_frames);

	tc = ps_test_tcase(s, "races (failpoints)", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, fp_release_after_the_split);
	tcase_add_test(tc, fp_split_against_merge);

	tc = ps_test_tcase(s, "free hook window", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, free_hook_check_allows_a_map_before_the_hook);

	tc = ps_test_tcase(s, "-ENOMEM", 10);
	tcase_add_checked_fixture(tc, setup_declared, teardown);
	tcase_add_test(tc, split_enomem_changes_nothing);

	tc = ps_test_stress_tcase(s, "stress", 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stress_unit_pins_against_remap);
	tcase_add_test(tc, stress_split_against_pins);
	tcase_add_test(tc, stress_secondary_against_split_and_merge);
	tcase_add_test(tc, stress_writeback_against_writes);

	tc = ps_test_stress_tcase(s, "harvest stress", 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stress_harvest_units_against_marks);
	tcase_add_test(tc, stress_concurrent_harvests_of_units);

	tc = ps_test_tcase(s, "stats", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stats_count_what_is_resident);
	return s;
}

PS_TEST_MAIN(space_huge_suite)
