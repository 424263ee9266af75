// SPDX-License-Identifier: MIT
/*
 * tests/test-hbitmap.c - the internal three-level bitmap (lib/hbitmap.h):
 * set/test, ordered harvest, ranges, keep/stop/resume, a sparse 1 TiB-sized
 * bitmap, and a stress where every set bit is harvested exactly once while
 * setters race the harvester.
 */
#include "../lib/hbitmap.h"

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct seen {
	uint64_t bits[64];
	unsigned n;
	unsigned stop_at; /* 0: never */
	uint64_t keep_bit;
};

static enum ps__hbm_verdict record(void *ctx, uint64_t bit)
{
	struct seen *s = ctx;

	if (s->n < 64)
		s->bits[s->n] = bit;
	s->n++;
	if (s->stop_at && s->n == s->stop_at)
		return PS__HBM_STOP;
	return bit == s->keep_bit ? PS__HBM_KEEP : PS__HBM_CLEAR;
}

START_TEST(set_and_test)
{
	struct ps__hbm b;

	ck_assert_int_eq(ps__hbm_init(&b, 100000), 0);
	ck_assert(!ps__hbm_test(&b, 777));
	ck_assert(ps__hbm_set(&b, 777));
	ck_assert(!ps__hbm_set(&b, 777)); /* already set: not this call */
	ck_assert(ps__hbm_test(&b, 777));
	ck_assert(!ps__hbm_test(&b, 776));
	ck_assert(ps__hbm_set(&b, 0));
	ck_assert(ps__hbm_set(&b, 99999));
	ps__hbm_destroy(&b);
	ck_assert_int_eq(ps__hbm_init(&b, 0), -EINVAL);
	ck_assert_int_eq(ps__hbm_init(&b, (UINT64_C(1) << 40) + 1), -EINVAL);
}
END_TEST

START_TEST(harvest_in_order_once)
{
	static const uint64_t bits[] = {3,    63,    64,    511,  512,
					4095, 32767, 32768, 99999};
	struct ps__hbm b;
	struct seen s;
	uint64_t resume;

	ck_assert_int_eq(ps__hbm_init(&b, 100000), 0);
	for (int i = 8; i >= 0; i--)
		ck_assert(ps__hbm_set(&b, bits[i]));
	memset(&s, 0, sizeof(s));
	s.keep_bit = UINT64_MAX;
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 100000, record, &s, &resume),
			  9);
	ck_assert_uint_eq(resume, 100000);
	for (int i = 0; i < 9; i++)
		ck_assert_uint_eq(s.bits[i], bits[i]);
	/* Taken: a second harvest sees nothing, and the bits are clear. */
	memset(&s, 0, sizeof(s));
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 100000, record, &s, NULL), 0);
	ck_assert(!ps__hbm_test(&b, 512));
	ck_assert(ps__hbm_set(&b, 512)); /* and can be set again */
	ps__hbm_destroy(&b);
}
END_TEST

START_TEST(harvest_range_only)
{
	struct ps__hbm b;
	struct seen s;

	ck_assert_int_eq(ps__hbm_init(&b, 1u << 20), 0);
	for (uint64_t i = 0; i < (1u << 20); i += 4099)
		ck_assert(ps__hbm_set(&b, i));
	memset(&s, 0, sizeof(s));
	s.keep_bit = UINT64_MAX;
	/* [8198, 8198 + 8197): exactly bits 8198 and 12297. */
	ck_assert_uint_eq(ps__hbm_harvest(&b, 8198, 8197, record, &s, NULL), 2);
	ck_assert_uint_eq(s.bits[0], 8198);
	ck_assert_uint_eq(s.bits[1], 12297);
	ck_assert(ps__hbm_test(&b, 4099));  /* outside: untouched */
	ck_assert(ps__hbm_test(&b, 16396)); /* outside: untouched */
	ck_assert(!ps__hbm_test(&b, 8198));
	/* The rest is still found through the summaries. */
	memset(&s, 0, sizeof(s));
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 1u << 20, record, &s, NULL),
			  (1u << 20) / 4099 + 1 - 2);
	/* Ranges past the end are clamped. */
	ck_assert_uint_eq(ps__hbm_harvest(&b, 1u << 21, 5, record, &s, NULL),
			  0);
	ps__hbm_destroy(&b);
}
END_TEST

START_TEST(harvest_keep_stop_resume)
{
	struct ps__hbm b;
	struct seen s;
	uint64_t resume;

	ck_assert_int_eq(ps__hbm_init(&b, 1u << 16), 0);
	for (uint64_t i = 0; i < 40; i++)
		ck_assert(ps__hbm_set(&b, i * 1000));
	/* Keep one, stop at the 10th: 10 shown, resume at the 10th bit. */
	memset(&s, 0, sizeof(s));
	s.keep_bit = 3000;
	s.stop_at = 10;
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 1u << 16, record, &s, &resume),
			  10);
	ck_assert_uint_eq(resume, 9000);
	ck_assert(ps__hbm_test(&b, 3000)); /* kept */
	ck_assert(ps__hbm_test(&b, 9000)); /* the stop bit is kept */
	ck_assert(!ps__hbm_test(&b, 8000));
	/* Resume: 9000 .. 39000 = 31 bits. */
	memset(&s, 0, sizeof(s));
	s.keep_bit = UINT64_MAX;
	ck_assert_uint_eq(ps__hbm_harvest(&b, resume, (1u << 16) - resume,
					  record, &s, NULL),
			  31);
	/* Only the kept one is left. */
	memset(&s, 0, sizeof(s));
	s.keep_bit = UINT64_MAX;
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 1u << 16, record, &s, NULL),
			  1);
	ck_assert_uint_eq(s.bits[0], 3000);
	ps__hbm_destroy(&b);
}
END_TEST

/* What a word visitor was shown; it keeps the bits of keep_mask. */
struct seen_words {
	uint64_t first[16], bits[16];
	unsigned n;
	uint64_t keep_mask;
};

static uint64_t record_word(void *ctx, uint64_t first, uint64_t bits)
{
	struct seen_words *s = ctx;

	if (s->n < 16) {
		s->first[s->n] = first;
		s->bits[s->n] = bits;
	}
	s->n++;
	return bits & s->keep_mask;
}

/*
 * The word visitor sees each level-0 word's taken bits at once, in order,
 * only within the range; the bits it keeps stay (and are found by the next
 * harvest through their summaries), the others are gone. ps__hbm_set_mask()
 * sets several bits of one word, summaries included.
 */
START_TEST(harvest_words_and_set_mask)
{
	struct ps__hbm b;
	struct seen_words s;
	struct seen one;

	ck_assert_int_eq(ps__hbm_init(&b, 100000), 0);
	ps__hbm_set_mask(&b, 64, UINT64_C(0x8000000000000005));
	ps__hbm_set_mask(&b, 4096, 0); /* nothing */
	ck_assert(ps__hbm_set(&b, 70000));
	ck_assert(ps__hbm_set(&b, 3));
	memset(&s, 0, sizeof(s));
	s.keep_mask = UINT64_C(4); /* bit 66 */
	/* The range leaves out bit 3 and cuts word 64..127 at 127. */
	ck_assert_uint_eq(ps__hbm_harvest_words(&b, 4, 69997, record_word, &s),
			  4);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.first[0], 64);
	ck_assert_uint_eq(s.bits[0], UINT64_C(0x8000000000000005));
	ck_assert_uint_eq(s.first[1], 69952);
	ck_assert_uint_eq(s.bits[1], UINT64_C(1) << (70000 - 69952));
	ck_assert(ps__hbm_test(&b, 3));	 /* outside the range */
	ck_assert(ps__hbm_test(&b, 66)); /* kept */
	ck_assert(!ps__hbm_test(&b, 64));
	ck_assert(!ps__hbm_test(&b, 127));
	ck_assert(!ps__hbm_test(&b, 70000));
	/* What was kept is found again, through its summaries. */
	memset(&one, 0, sizeof(one));
	one.keep_bit = UINT64_MAX;
	ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 100000, record, &one, NULL),
			  2);
	ck_assert_uint_eq(one.bits[0], 3);
	ck_assert_uint_eq(one.bits[1], 66);
	ps__hbm_destroy(&b);
}
END_TEST

START_TEST(sparse_terabyte)
{
	/* 1 TiB of 4 KiB pages: 2^28 bits, mapped but untouched. */
	const uint64_t n = UINT64_C(1) << 28;
	struct ps__hbm b;
	struct seen s;
	struct ps_test_rng rng = ps_test_rng_new(5);

	ck_assert_int_eq(ps__hbm_init(&b, n), 0);
	for (int i = 0; i < 50; i++)
		(void)ps__hbm_set(&b, ps_test_below(&rng, n));
	ck_assert(ps__hbm_set(&b, n - 1));
	memset(&s, 0, sizeof(s));
	s.keep_bit = UINT64_MAX;
	/* 50 random bits (a collision is possible) and the very last one. */
	ck_assert_uint_ge(ps__hbm_harvest(&b, 0, n, record, &s, NULL), 50);
	ck_assert_uint_le(s.n, 51);
	ck_assert_uint_eq(s.bits[s.n - 1], n - 1);
	ps__hbm_destroy(&b);
}
END_TEST

/*
 * Setters set random bits (counting the sets that made a bit go 0 -> 1)
 * while a harvester repeatedly harvests random sub-ranges. Each bit's
 * harvested count must equal its successful sets: nothing lost, nothing
 * shown twice. The two run until the setter did its share and each side
 * overlapped the other in enough operations (harness.h).
 */
#define STRESS_BITS (1u << 18)

struct hbm_stress {
	struct ps__hbm b;
	_Atomic(uint32_t) sets[STRESS_BITS];
	_Atomic(uint32_t) shown[STRESS_BITS];
	struct ps_test_overlap ov; /* side 0 the setter, 1 the harvester */
	uint64_t iters;
};

static enum ps__hbm_verdict count_shown(void *ctx, uint64_t bit)
{
	struct hbm_stress *st = ctx;

	atomic_fetch_add_explicit(&st->shown[bit], 1, memory_order_relaxed);
	return PS__HBM_CLEAR;
}

static void *hbm_setter(void *arg)
{
	struct hbm_stress *st = arg;
	struct ps_test_rng rng = ps_test_rng_new(11);
	struct ps_test_side me = ps_test_side(&st->ov, 0, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		/* Clustered bits: many share words and chunks. */
		uint64_t bit = (ps_test_below(&rng, 64) << 12) +
			       ps_test_below(&rng, 700);

		if (ps__hbm_set(&st->b, bit))
			atomic_fetch_add_explicit(&st->sets[bit], 1,
						  memory_order_relaxed);
	}
	return NULL;
}

START_TEST(stress_every_set_harvested_once)
{
	struct hbm_stress *st = calloc(1, sizeof(*st));
	struct ps_test_rng rng = ps_test_rng_new(12);
	struct ps_test_side me;
	pthread_t t;
	uint64_t total_sets = 0, total_shown = 0;

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(ps__hbm_init(&st->b, STRESS_BITS), 0);
	st->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000);
	ps_test_overlap_init(&st->ov, 2, 0);
	st->ov.side[0].min_ops = st->iters;
	me = ps_test_side(&st->ov, 1, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, hbm_setter, st), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t first = ps_test_below(&rng, STRESS_BITS);

		ps__hbm_harvest(&st->b, first,
				ps_test_below(&rng, STRESS_BITS - first) + 1,
				count_shown, st, NULL);
	}
	pthread_join(t, NULL);
	ps__hbm_harvest(&st->b, 0, STRESS_BITS, count_shown, st, NULL);
	for (uint64_t i = 0; i < STRESS_BITS; i++) {
		uint32_t a = atomic_load(&st->sets[i]);
		uint32_t h = atomic_load(&st->shown[i]);

		if (a != h)
			ck_abort_msg("bit %llu set %u times, harvested %u",
				     (unsigned long long)i, a, h);
		total_sets += a;
		total_shown += h;
	}
	ck_assert_uint_eq(total_sets, total_shown);
	ck_assert_uint_gt(total_sets, 1000);
	ps_test_overlap_check(&st->ov, "setter vs harvester");
	ps__hbm_destroy(&st->b);
	free(st);
}
END_TEST

/*
 * Regression: a harvest reports every bit set before it began, even while
 * another harvest of a disjoint range that shares its summary words is under
 * way. A harvest took a summary bit (the level-2 bit of a level-1 word, the
 * level-1 bit of a chunk) even where its range covered only part of what the
 * bit summarises, and set it again afterwards if anything was left below: a
 * harvest of the other part in between found it clear and returned without
 * the bit (the soak's huge region found it: a space harvest of one region
 * made a concurrent harvest of another miss a write). Here the second harvest
 * runs inside the first one's visitor, that is, exactly in that window.
 */
struct nested {
	struct ps__hbm *b;
	uint64_t first, count, seen;
};

static enum ps__hbm_verdict count_one(void *ctx, uint64_t bit)
{
	(void)bit;
	(*(uint64_t *)ctx)++;
	return PS__HBM_CLEAR;
}

static enum ps__hbm_verdict count_shown_none(void *ctx, uint64_t bit)
{
	(void)ctx;
	(void)bit;
	return PS__HBM_CLEAR;
}

static enum ps__hbm_verdict harvest_inside(void *ctx, uint64_t bit)
{
	struct nested *n = ctx;

	(void)bit;
	(void)ps__hbm_harvest(n->b, n->first, n->count, count_one, &n->seen,
			      NULL);
	return PS__HBM_CLEAR;
}

START_TEST(harvest_during_a_disjoint_harvest)
{
	struct ps__hbm b;
	/* Another chunk under one level-2 bit; the same chunk. */
	static const uint64_t other[][3] = {{600, 512, 512},
					    {400, 300, 212},
					    {70000, 69632, 512}};

	ck_assert_int_eq(ps__hbm_init(&b, 1 << 20), 0);
	for (unsigned int k = 0; k < 3; k++) {
		struct nested n = {&b, other[k][1], other[k][2], 0};

		ck_assert(ps__hbm_set(&b, 5));
		ck_assert(ps__hbm_set(&b, other[k][0]));
		ck_assert_uint_eq(ps__hbm_harvest(&b, 0, 300, harvest_inside,
						  &n, NULL),
				  1);
		ck_assert_msg(n.seen == 1, "case %u: bit %llu not harvested", k,
			      (unsigned long long)other[k][0]);
		ck_assert(!ps__hbm_test(&b, other[k][0]));
	}
	/* A range covering its chunks whole still clears their summaries. */
	ck_assert(ps__hbm_set(&b, 1000));
	ck_assert_uint_eq(ps__hbm_harvest(&b, 512, 512, count_shown_none, NULL,
					  NULL),
			  1);
	ps__hbm_destroy(&b);
}
END_TEST

static Suite *hbitmap_suite(void)
{
	Suite *s = suite_create("hbitmap");
	TCase *tc;

	tc = ps_test_tcase(s, "set/test", 10);
	tcase_add_test(tc, set_and_test);
	tc = ps_test_tcase(s, "harvest", 30);
	tcase_add_test(tc, harvest_in_order_once);
	tcase_add_test(tc, harvest_range_only);
	tcase_add_test(tc, harvest_keep_stop_resume);
	tcase_add_test(tc, harvest_words_and_set_mask);
	tcase_add_test(tc, harvest_during_a_disjoint_harvest);
	tcase_add_test(tc, sparse_terabyte);
	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_test(tc, stress_every_set_harvested_once);
	return s;
}

PS_TEST_MAIN(hbitmap_suite)
