// SPDX-License-Identifier: MIT
/*
 * tests/test-ledger.c - the dirty ledger (pagestate/ledger.h, rules C1..C4 in
 * lib/space-ledger.c): independent consumers of one dirty log, harvests as
 * transactions (commit, abort, removal), initially-set consumers, budgets,
 * huge frames at 4 KiB and unit granularity, the errors at the limits, the
 * default consumer (ps_space_harvest()), and a stress of two writers against
 * two harvesters that commit, abort, join and re-register at random, checked
 * against a shadow model after every harvest.
 */
#include <pagestate/ledger.h>
#include <pagestate/page.h>
#include <pagestate/space.h>

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define P2M (UINT64_C(1) << PS_SPACE_ORDER_2M)
#define NPAGES (4 * P2M) /* 8 MiB */
#define SPACE_SIZE (NPAGES * PG)

static struct ps_space *sp;
static uint64_t got[NPAGES];

static void setup(void)
{
	struct ps_space_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NPAGES;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
}

/* Every page mapped writable, to frame = page. */
static void setup_mapped(void)
{
	setup();
	ck_assert_int_eq(ps_space_map_range(sp, 0, SPACE_SIZE, 0, PS_MAP_WRITE,
					    NULL),
			 0);
}

static void teardown(void)
{
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

static uint64_t add(unsigned int flags)
{
	uint64_t id = 0;

	ck_assert_int_eq(ps_ledger_consumer_add(sp, flags, &id), 0);
	ck_assert_uint_ne(id, 0);
	return id;
}

static void mark(uint64_t page)
{
	enum ps_space_mark m = ps_space_mark_dirty(sp, page * PG);

	ck_assert(m == PS_SPACE_MARK_DIRTIED || m == PS_SPACE_MARK_WAS_DIRTY);
}

/* Harvest the whole space for @id into got[] (at most @max); the count. */
static uint64_t harvest_max(uint64_t id, unsigned int flags, uint64_t max,
			    uint64_t *token)
{
	uint64_t n = ~UINT64_C(0), t = 0;

	ck_assert_int_eq(ps_ledger_harvest(sp, id, 0, SPACE_SIZE, flags, got,
					   max, &n, NULL, &t),
			 0);
	ck_assert_uint_ne(t, 0);
	if (token)
		*token = t;
	return n;
}

static uint64_t harvest(uint64_t id, uint64_t *token)
{
	return harvest_max(id, 0, NPAGES, token);
}

/* Harvest and commit; the count. */
static uint64_t harvest_commit(uint64_t id)
{
	uint64_t t, n = harvest(id, &t);

	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	return n;
}

/* got[0 .. n) is exactly the pages @want (ascending), as addresses. */
static void assert_pages(uint64_t n, const uint64_t *want, uint64_t nwant)
{
	ck_assert_uint_eq(n, nwant);
	for (uint64_t i = 0; i < n; i++)
		ck_assert_uint_eq(got[i], want[i] * PG);
}

/* --- independent consumers (C1) ------------------------------------------ */

START_TEST(consumers_have_their_own_view)
{
	uint64_t a, b, c, n, t;
	const uint64_t w12[] = {1, 2}, w3[] = {3}, w123[] = {1, 2, 3};
	const uint64_t w0123[] = {0, 1, 2, 3};

	mark(0); /* before any consumer: the default consumer's */
	a = add(PS_LEDGER_CLEAN);
	b = add(PS_LEDGER_CLEAN);
	mark(1);
	mark(2);
	n = harvest(a, &t);
	assert_pages(n, w12, 2); /* not page 0: marked before a */
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	mark(3);
	/* b still has 1 and 2: a's harvest took them for a only. */
	assert_pages(harvest(b, &t), w123, 3);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	assert_pages(harvest(a, &t), w3, 1);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	/* A clean consumer added now sees none of the marks so far. */
	c = add(PS_LEDGER_CLEAN);
	ck_assert_uint_eq(harvest_commit(c), 0);
	/* The default consumer saw everything, 0 included, once. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, 0, got, NPAGES, &n,
					  NULL),
			 0);
	assert_pages(n, w0123, 4);
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, 0, got, NPAGES, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(harvest_commit(a), 0);
	ck_assert_uint_eq(harvest_commit(b), 0);
	mark(5);
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(harvest_commit(b), 1);
	ck_assert_uint_eq(harvest_commit(c), 1);
}
END_TEST

/* A harvest of a sub-range drains and takes only that range. */
START_TEST(harvest_of_a_range_leaves_the_rest)
{
	uint64_t a = add(PS_LEDGER_CLEAN), n, r, t;

	mark(10);
	mark(700);
	ck_assert_int_eq(ps_ledger_harvest(sp, a, 512 * PG, 512 * PG, 0, got, 8,
					   &n, &r, &t),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 700 * PG);
	ck_assert_uint_eq(r, 1024 * PG);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(got[0], 10 * PG);
}
END_TEST

/* --- transactions (C2) ---------------------------------------------------- */

START_TEST(commit_makes_a_harvest_final)
{
	uint64_t a = add(PS_LEDGER_CLEAN), t;

	mark(4);
	mark(9);
	ck_assert_uint_eq(harvest(a, &t), 2);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(a), 0);
	/* A page marked again after the commit is reported again. */
	mark(9);
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(got[0], 9 * PG);
}
END_TEST

START_TEST(abort_merges_with_marks_made_meanwhile)
{
	uint64_t a = add(PS_LEDGER_CLEAN), b = add(PS_LEDGER_CLEAN), t;
	const uint64_t w[] = {1, 2, 3}, wb[] = {1, 2};

	mark(1);
	mark(2);
	ck_assert_uint_eq(harvest(a, &t), 2);
	mark(2); /* again, while in flight */
	mark(3);
	ck_assert_int_eq(ps_ledger_abort(sp, t), 0);
	/* Back, merged: each page once. */
	assert_pages(harvest(a, &t), w, 3);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(a), 0);
	/* b's view was never touched by a's abort: 1, 2, 3 once each. */
	ck_assert_uint_eq(harvest(b, &t), 3);
	ck_assert_int_eq(ps_ledger_abort(sp, t), 0);
	ck_assert_uint_eq(harvest_max(b, 0, 2, &t), 2);
	assert_pages(2, wb, 2);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(b), 1);
	ck_assert_uint_eq(got[0], 3 * PG);
}
END_TEST

/* A harvest while one is open joins it: one commit or abort covers both. */
START_TEST(harvest_joins_the_open_one)
{
	uint64_t a = add(PS_LEDGER_CLEAN), t1, t2, n, r;

	for (uint64_t p = 0; p < 10; p++)
		mark(p * 3);
	ck_assert_int_eq(ps_ledger_harvest(sp, a, 0, SPACE_SIZE, 0, got, 4, &n,
					   &r, &t1),
			 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(r, 12 * PG); /* the 5th page: the budget stopped */
	ck_assert_int_eq(ps_ledger_harvest(sp, a, r, SPACE_SIZE - r, 0, got, 4,
					   &n, &r, &t2),
			 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(got[0], 12 * PG);
	ck_assert_uint_eq(t1, t2);
	ck_assert_int_eq(ps_ledger_abort(sp, t1), 0);
	/* Both harvests' pages came back. */
	ck_assert_uint_eq(harvest_commit(a), 10);
	ck_assert_int_eq(ps_ledger_commit(sp, t2), -ESTALE);
}
END_TEST

/* The budget stops a harvest midway: the rest stays, the order holds. */
START_TEST(budget_stops_midway)
{
	uint64_t a = add(PS_LEDGER_CLEAN), n, r = 0, t, total = 0;

	for (uint64_t p = 0; p < 100; p++)
		mark(p * 7);
	while (r < SPACE_SIZE) {
		ck_assert_int_eq(ps_ledger_harvest(sp, a, r, SPACE_SIZE - r, 0,
						   got, 7, &n, &r, &t),
				 0);
		for (uint64_t i = 0; i < n; i++)
			ck_assert_uint_eq(got[i], (total + i) * 7 * PG);
		total += n;
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
		if (n < 7)
			break;
	}
	ck_assert_uint_eq(total, 100);
	ck_assert_uint_eq(harvest_commit(a), 0);
}
END_TEST

/* Removing a consumer aborts its open harvest and stales its token. */
START_TEST(remove_without_commit)
{
	uint64_t a = add(PS_LEDGER_CLEAN), b = add(PS_LEDGER_CLEAN), t, a2;

	mark(8);
	ck_assert_uint_eq(harvest(a, &t), 1);
	ck_assert_int_eq(ps_ledger_consumer_remove(sp, a), 0);
	ck_assert_int_eq(ps_ledger_commit(sp, t), -ESTALE);
	ck_assert_int_eq(ps_ledger_abort(sp, t), -ESTALE);
	ck_assert_int_eq(ps_ledger_consumer_remove(sp, a), -ENOENT);
	ck_assert_int_eq(ps_ledger_harvest(sp, a, 0, SPACE_SIZE, 0, got, 1, &t,
					   NULL, &t),
			 -ENOENT);
	/* b is not affected. */
	ck_assert_uint_eq(harvest_commit(b), 1);
	/* A new consumer (perhaps a's slot) starts clean, with a new id. */
	a2 = add(PS_LEDGER_CLEAN);
	ck_assert_uint_ne(a2, a);
	ck_assert_uint_eq(harvest_commit(a2), 0);
	mark(8);
	ck_assert_uint_eq(harvest_commit(a2), 1);
}
END_TEST

/* --- initially set (materialised lazily) ---------------------------------- */

START_TEST(initially_set_reports_everything_once)
{
	uint64_t a, c, n, r, t, total = 0;

	c = add(PS_LEDGER_CLEAN);
	a = add(PS_LEDGER_INITIALLY_SET);
	/* In budgets across chunks: every page, once, ascending. */
	for (r = 0; r < SPACE_SIZE;) {
		ck_assert_int_eq(ps_ledger_harvest(sp, a, r, SPACE_SIZE - r, 0,
						   got, 300, &n, &r, &t),
				 0);
		for (uint64_t i = 0; i < n; i++)
			ck_assert_uint_eq(got[i], (total + i) * PG);
		total += n;
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	}
	ck_assert_uint_eq(total, NPAGES);
	ck_assert_uint_eq(harvest_commit(a), 0);
	ck_assert_int_eq(ps_space_map(sp, 77 * PG, 77, PS_MAP_WRITE), 0);
	mark(77);
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(got[0], 77 * PG);
	/* The clean consumer saw the mark only. */
	ck_assert_uint_eq(harvest_commit(c), 1);
}
END_TEST

/* A sub-range first: the chunks outside it stay initially set. */
START_TEST(initially_set_materialises_lazily)
{
	uint64_t a = add(PS_LEDGER_INITIALLY_SET), n, r, t;

	ck_assert_int_eq(ps_ledger_harvest(sp, a, 1000 * PG, 10 * PG, 0, got,
					   NPAGES, &n, &r, &t),
			 0);
	ck_assert_uint_eq(n, 10);
	ck_assert_uint_eq(got[0], 1000 * PG);
	/* Aborted: back, and still reported with the rest. */
	ck_assert_int_eq(ps_ledger_abort(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(a), NPAGES);
	ck_assert_uint_eq(harvest_commit(a), 0);
}
END_TEST

/* --- pins for write: reported while pinned (C1, S6) ---------------------- */

START_TEST(write_pin_reported_to_every_consumer_while_pinned)
{
	uint64_t a = add(PS_LEDGER_CLEAN), b = add(PS_LEDGER_CLEAN), f;

	ck_assert_int_eq(ps_space_pin_range(sp, 6 * PG, PG, PS_PIN_WRITE, &f),
			 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(harvest_commit(a), 1);
		ck_assert_uint_eq(got[0], 6 * PG);
		ck_assert_uint_eq(harvest_commit(b), 1);
	}
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	/* The first harvest after the unpin still reports it, then none. */
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(harvest_commit(b), 1);
	ck_assert_uint_eq(harvest_commit(a), 0);
	ck_assert_uint_eq(harvest_commit(b), 0);
}
END_TEST

/* --- re-arm (C3) ---------------------------------------------------------- */

START_TEST(rearm_then_the_next_write_reaches_every_consumer)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t a = add(PS_LEDGER_CLEAN), b = add(PS_LEDGER_CLEAN), t;
	ps_pte_t e;

	mark(5);
	ck_assert_uint_eq(harvest_max(a, PS_HARVEST_REARM, NPAGES, &t), 1);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	/* Re-armed (unregistered: WRITE cleared), once for everyone. */
	ck_assert_int_eq(ps_pgtable_get(pt, 5 * PG, &e), 0);
	ck_assert(!ps_pte_is_writable(e));
	ck_assert_uint_eq(harvest_commit(b), 1);
	/* The next write faults and is logged: both see it. */
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(harvest_commit(a), 1);
	ck_assert_uint_eq(got[0], 5 * PG);
	ck_assert_uint_eq(harvest_commit(b), 1);
}
END_TEST

/* --- huge frames ---------------------------------------------------------- */

START_TEST(huge_frame_at_4k_and_in_units)
{
	uint64_t a, b, units[2], n, t;

	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	a = add(PS_LEDGER_CLEAN);
	b = add(PS_LEDGER_CLEAN);
	/* A pin for write of the whole frame logs its 512 pages. */
	ck_assert_int_eq(ps_space_pin_units(sp, 0, P2M * PG, PS_PIN_WRITE,
					    units, 2, &n),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(ps_space_unpin(sp, units, 1, 0), 0);
	ck_assert_uint_eq(harvest(a, &t), P2M);
	ck_assert_uint_eq(got[P2M - 1], (P2M - 1) * PG);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_max(b, PS_HARVEST_UNITS, NPAGES, &t), 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	/* Aborted, then a budget of one entry: the unit (@max in entries). */
	ck_assert_int_eq(ps_ledger_abort(sp, t), 0);
	ck_assert_uint_eq(harvest_max(b, PS_HARVEST_UNITS, 1, &t), 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_ledger_abort(sp, t), 0);
	/* One page of it taken apart: the rest are 4 KiB pages. */
	ck_assert_int_eq(ps_ledger_harvest(sp, b, 0, PG, PS_HARVEST_UNITS, got,
					   1, &n, NULL, &t),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_max(b, PS_HARVEST_UNITS, P2M - 2, &t),
			  P2M - 2);
	ck_assert_uint_eq(got[0], 1 * PG);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_uint_eq(harvest_commit(b), 1);
	ck_assert_uint_eq(got[0], (P2M - 1) * PG);
	ck_assert_uint_eq(harvest_commit(a), 0);
}
END_TEST

/*
 * Regression (the merge with the dirty log's unit marks): a consumer's
 * re-arming harvest at 4 KiB whose budget stopped inside a huge leaf tracked
 * whole resumes (C3: the harvest's widened get-and-rearm scan, S11 in
 * lib/space-dirty.c; the ledger's own scan refused the range with -EINVAL).
 * The frame is reported once page by page, and in units as one entry, the
 * default consumer's budget of one entry included (C4).
 */
START_TEST(rearm_resumes_inside_a_huge_leaf)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t a, n, r = 0, t, total = 0;

	ck_assert_int_eq(ps_space_set_frame_order(sp, 0, P2M,
						  PS_SPACE_ORDER_2M),
			 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, P2M * PG, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, P2M * PG,
					     PS_WP_ASYNC | PS_WP_HUGE_WHOLE),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, P2M * PG), 0);
	a = add(PS_LEDGER_CLEAN);
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	while (r < P2M * PG) {
		ck_assert_int_eq(ps_ledger_harvest(sp, a, r, P2M * PG - r,
						   PS_HARVEST_REARM,
						   got + total, 100, &n, &r,
						   &t),
				 0);
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
		total += n;
	}
	ck_assert_uint_eq(total, P2M);
	for (uint64_t i = 0; i < P2M; i++)
		ck_assert_uint_eq(got[i], i * PG);
	/* Written again: one entry in units, for it and the default. */
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_ledger_harvest(sp, a, 0, P2M * PG,
					   PS_HARVEST_REARM | PS_HARVEST_UNITS,
					   got, 1, &n, &r, &t),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	ck_assert_uint_eq(r, P2M * PG);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, PS_HARVEST_UNITS,
					  got, 1, &n, &r),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0 | PS_SPACE_ORDER_2M);
	/* Put back as a unit: the default consumer has it again. */
	ck_assert_int_eq(ps_space_redirty(sp, got, 1), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, 0, got, NPAGES, &n,
					  &r),
			 0);
	ck_assert_uint_eq(n, P2M);
}
END_TEST

/* --- the default consumer (C4) -------------------------------------------- */

START_TEST(default_consumer_behaves_as_before)
{
	uint64_t a = add(PS_LEDGER_CLEAN), n, r = 0, total = 0;

	for (uint64_t p = 0; p < 10; p++)
		mark(p);
	/* Budget and resume, as ps_space_harvest() always did. */
	while (r < SPACE_SIZE) {
		ck_assert_int_eq(ps_space_harvest(sp, r, SPACE_SIZE - r, 0, got,
						  3, &n, &r),
				 0);
		total += n;
		if (!n)
			break;
	}
	ck_assert_uint_eq(total, 10);
	/* A redirty puts pages back for the default consumer only. */
	got[0] = 3 * PG;
	ck_assert_int_eq(ps_space_redirty(sp, got, 1), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, SPACE_SIZE, 0, got, NPAGES, &n,
					  NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 3 * PG);
	ck_assert_uint_eq(harvest_commit(a), 10);
	ck_assert_uint_eq(harvest_commit(a), 0);
	got[0] = 1;
	ck_assert_int_eq(ps_space_redirty(sp, got, 1), -EINVAL);
}
END_TEST

/* --- errors at the limits ------------------------------------------------- */

START_TEST(errors_at_the_limits)
{
	uint64_t ids[PS_LEDGER_CONSUMERS_MAX], id, t, n;

	/* No ledger yet. */
	ck_assert_int_eq(ps_ledger_commit(sp, 1 << 4), -EINVAL);
	ck_assert_int_eq(ps_ledger_consumer_remove(sp, 1 << 4), -ENOENT);
	ck_assert_int_eq(ps_ledger_consumer_add(sp, 2, &id), -EINVAL);
	ck_assert_int_eq(ps_ledger_consumer_add(sp, 0, NULL), -EINVAL);
	ck_assert_int_eq(ps_ledger_consumer_add(NULL, 0, &id), -EINVAL);
	for (int i = 0; i < PS_LEDGER_CONSUMERS_MAX; i++)
		ids[i] = add(i & 1 ? PS_LEDGER_INITIALLY_SET : PS_LEDGER_CLEAN);
	ck_assert_int_eq(ps_ledger_consumer_add(sp, 0, &id), -ENOSPC);
	ck_assert_int_eq(ps_ledger_consumer_remove(sp, ids[3]), 0);
	id = add(PS_LEDGER_CLEAN); /* room again */
	ck_assert_int_eq(ps_ledger_consumer_add(sp, 0, &t), -ENOSPC);
	/* Harvest arguments. */
	ck_assert_int_eq(ps_ledger_harvest(sp, id, 1, PG, 0, got, 1, &n, NULL,
					   &t),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_harvest(sp, id, 0, SPACE_SIZE + PG, 0, got,
					   1, &n, NULL, &t),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_harvest(sp, id, 0, PG, 4, got, 1, &n, NULL,
					   &t),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_harvest(sp, id, 0, PG, 0, got, 0, &n, NULL,
					   &t),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_harvest(sp, id, 0, PG, 0, got, 1, &n, NULL,
					   NULL),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_harvest(sp, ids[3], 0, PG, 0, got, 1, &n,
					   NULL, &t),
			 -ENOENT);
	ck_assert_int_eq(ps_ledger_harvest(sp, 15, 0, PG, 0, got, 1, &n, NULL,
					   &t),
			 -ENOENT);
	/* Tokens: bad, double commit, abort after commit. */
	mark(1);
	ck_assert_uint_eq(harvest(id, &t), 1);
	ck_assert_int_eq(ps_ledger_commit(sp, 0), -EINVAL);
	ck_assert_int_eq(ps_ledger_commit(sp, t | 15), -EINVAL); /* slot 15 */
	ck_assert_int_eq(ps_ledger_commit(sp, t + (UINT64_C(1) << 40)),
			 -EINVAL); /* never given */
	ck_assert_int_eq(ps_ledger_commit(NULL, t), -EINVAL);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	ck_assert_int_eq(ps_ledger_commit(sp, t), -ESTALE);
	ck_assert_int_eq(ps_ledger_abort(sp, t), -ESTALE);
	/* A consumer's id is not a token. */
	ck_assert_int_eq(ps_ledger_commit(sp, id), -ESTALE);
	ck_assert_int_eq(ps_ledger_consumer_remove(NULL, id), -EINVAL);
}
END_TEST

/* --- sources: KVM's bitmap and ring, a device's bitmap -------------------- */

START_TEST(kvm_bitmap_marks_through_the_normal_path)
{
	uint64_t a = add(PS_LEDGER_CLEAN), bm[2] = {0, 0};
	struct ps_ledger_ingest res;
	const uint64_t want[] = {256, 256 + 64, 256 + 99};

	bm[0] = 1 | (1 << 3);
	bm[1] = (UINT64_C(1) << 0) | (UINT64_C(1) << 35) |
		(UINT64_C(1) << 36); /* 100 is beyond npages */
	ck_assert_int_eq(ps_space_unmap(sp, (256 + 3) * PG, PG, 0), 0);
	mark(256 + 64); /* also by software: reported once */
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 256 * PG, bm, 100, &res),
			 0);
	ck_assert_uint_eq(res.marked, 3);
	ck_assert_uint_eq(res.unmapped, 1);
	ck_assert_uint_eq(res.first_unmapped, (256 + 3) * PG);
	ck_assert_uint_eq(res.stopped, UINT64_MAX);
	assert_pages(harvest_commit(a), want, 3);
	/* The frames are dirty: the normal path's DIRTY and hook. */
	ck_assert(ps_page_test_flags(ps_space_page(sp, 256 + 99),
				     PS_PAGE_DIRTY));
	/* Errors: unaligned base, beyond the space, NULL. */
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 1, bm, 1, &res), -EINVAL);
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, SPACE_SIZE - PG, bm, 2,
						 &res),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, SPACE_SIZE - PG, bm, 1,
						 &res),
			 0);
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 0, NULL, 1, &res),
			 -EINVAL);
}
END_TEST

static void ring_set(struct ps_ledger_dirty_gfn *e, uint32_t slot,
		     uint64_t offset)
{
	e->slot = slot;
	e->offset = offset;
	atomic_store_explicit(&e->flags, PS_LEDGER_GFN_DIRTY,
			      memory_order_release);
}

START_TEST(kvm_ring_collects_published_entries)
{
	uint64_t a = add(PS_LEDGER_CLEAN), fetch = 6;
	struct ps_ledger_dirty_gfn ring[8];
	const struct ps_ledger_slot slots[2] = {{0, 512}, {1024 * PG, 512}};
	struct ps_ledger_ingest res;
	const uint64_t want[] = {5, 1031};

	memset(ring, 0, sizeof(ring));
	ring_set(&ring[6], 0, 5);
	ring_set(&ring[7], 1, 7);
	ring_set(&ring[0], 2, 0); /* no slot 2: counted, collected */
	ring_set(&ring[1], 0, 5); /* the same page again */
	ring_set(&ring[3], 0, 9); /* after a gap: not yet */
	ck_assert_int_eq(ps_ledger_ingest_ring(sp, ring, 8, &fetch, slots, 2,
					       &res),
			 4);
	ck_assert_uint_eq(fetch, 10); /* free-running, past the wrap */
	ck_assert_uint_eq(res.marked, 3);
	ck_assert_uint_eq(res.unmapped, 1);
	ck_assert_uint_eq(res.first_unmapped, 8);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(atomic_load(&ring[i].flags),
				  i == 2 || i == 4 || i == 5 ? 0
				  : i == 3 ? PS_LEDGER_GFN_DIRTY
					   : PS_LEDGER_GFN_RESET);
	assert_pages(harvest_commit(a), want, 2);
	/* Nothing published at 10: nothing collected. */
	ck_assert_int_eq(ps_ledger_ingest_ring(sp, ring, 8, &fetch, slots, 2,
					       &res),
			 0);
	ck_assert_uint_eq(fetch, 10);
	ck_assert_int_eq(ps_ledger_ingest_ring(sp, ring, 6, &fetch, slots, 2,
					       &res),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_ingest_ring(sp, ring, 8, &fetch, NULL, 2,
					       &res),
			 -EINVAL);
}
END_TEST

#define IOVA0 (UINT64_C(1) << 32)

/* IOVA0 + x maps to the space address 2 MiB + x, for x < 4 MiB. */
static int iova_to_addr(void *ctx, uint64_t iova, uint64_t *addr)
{
	(void)ctx;
	if (iova < IOVA0 || iova >= IOVA0 + 2 * P2M * PG)
		return -ENOENT;
	*addr = P2M * PG + (iova - IOVA0);
	return 0;
}

static int iova_unaligned(void *ctx, uint64_t iova, uint64_t *addr)
{
	(void)ctx;
	*addr = iova - IOVA0 + 1;
	return 0;
}

START_TEST(device_bitmap_through_a_translation)
{
	uint64_t a = add(PS_LEDGER_CLEAN), bm = 1 | (1 << 2), n, t;
	struct ps_ledger_ingest res;
	const uint64_t want[] = {P2M + 1, P2M + 2};

	/* 2 MiB pages: the first is mapped, the third is not. */
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0, 3 * P2M * PG,
						 P2M * PG, &bm, iova_to_addr,
						 NULL, &res),
			 0);
	ck_assert_uint_eq(res.marked, P2M);
	ck_assert_uint_eq(res.unmapped, P2M);
	ck_assert_uint_eq(res.first_unmapped, IOVA0 + 2 * P2M * PG);
	n = harvest_max(a, PS_HARVEST_UNITS, NPAGES, &t);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], P2M * PG | PS_SPACE_ORDER_2M);
	ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	/* 4 KiB pages. */
	bm = 6;
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0, 64 * PG, PG, &bm,
						 iova_to_addr, NULL, &res),
			 0);
	ck_assert_uint_eq(res.marked, 2);
	assert_pages(harvest_commit(a), want, 2);
	/* A translation to an unaligned address stops, and says where. */
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0, 64 * PG, PG, &bm,
						 iova_unaligned, NULL, &res),
			 -EINVAL);
	ck_assert_uint_eq(res.stopped, IOVA0 + PG);
	ck_assert_uint_eq(res.marked, 0);
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0 + PG, P2M * PG,
						 P2M * PG, &bm, iova_to_addr,
						 NULL, &res),
			 -EINVAL);
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0, 64 * PG, 3 * PG,
						 &bm, iova_to_addr, NULL, &res),
			 -EINVAL);
}
END_TEST

/* --- batched ingest: the same marks as ps_space_mark_dirty() page by page - */

static unsigned int hook_runs[NPAGES];

static void count_dirty(void *ctx, struct ps_space *space, uint64_t frame)
{
	(void)ctx;
	(void)space;
	ck_assert_uint_lt(frame, NPAGES);
	hook_runs[frame]++;
}

/* A mapped space like setup_mapped()'s, with the counting dirty hook. */
static struct ps_space *space_counted(void)
{
	struct ps_space_config cfg;
	struct ps_space *s;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NPAGES;
	cfg.hooks.dirty = count_dirty;
	ck_assert_int_eq(ps_space_create(&cfg, &s), 0);
	ck_assert_int_eq(ps_space_map_range(s, 0, SPACE_SIZE, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	return s;
}

/* Every page of @s whose frame is DIRTY, as a bitmap. */
static void dirty_frames(struct ps_space *s, uint64_t *out)
{
	memset(out, 0, NPAGES / 8);
	for (uint64_t f = 0; f < NPAGES; f++)
		if (ps_page_test_flags(ps_space_page(s, f), PS_PAGE_DIRTY))
			out[f / 64] |= UINT64_C(1) << (f % 64);
}

/*
 * B1..B4 (lib/space-ingest.c): on random bitmaps over a space with holes
 * (single pages, a whole 2 MiB leaf), the batched ingest reports, logs and
 * dirties exactly what ps_space_mark_dirty() page by page does, and the dirty
 * hook runs once per clean-to-dirty transition (S5), also when the same
 * bitmap is ingested again.
 */
START_TEST(batched_ingest_equals_per_page)
{
	static uint64_t bm[NPAGES / 64], d1[NPAGES / 64], d2[NPAGES / 64];
	static uint64_t got2[NPAGES];
	struct ps_test_rng rng = ps_test_rng_new(17);
	struct ps_space *ref = space_counted();
	struct ps_ledger_ingest res;
	uint64_t a, n, n2, t, marked, unmapped, first;

	teardown();
	sp = space_counted();
	a = add(PS_LEDGER_CLEAN);
	for (int round = 0; round < 8; round++) {
		uint64_t density = UINT64_C(1) << (round % 4); /* 1/2 .. 1/16 */

		memset(hook_runs, 0, sizeof(hook_runs));
		for (uint64_t w = 0; w < NPAGES / 64; w++) {
			bm[w] = ps_test_rand(&rng);
			for (uint64_t k = 1; k < density; k <<= 1)
				bm[w] &= ps_test_rand(&rng);
		}
		if (round == 2) { /* a hole: one whole leaf, and single pages */
			for (struct ps_space *s = sp; s;
			     s = s == sp ? ref : 0) {
				ck_assert_int_eq(ps_space_unmap(s, P2M * PG,
								P2M * PG, 0),
						 0);
				ck_assert_int_eq(ps_space_unmap(s, 3 * PG, PG,
								0),
						 0);
				ck_assert_int_eq(ps_space_unmap(s,
								SPACE_SIZE - PG,
								PG, 0),
						 0);
			}
		}
		ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 0, bm, NPAGES,
							 &res),
				 0);
		marked = unmapped = 0;
		first = UINT64_MAX;
		for (uint64_t i = 0; i < NPAGES; i++) {
			enum ps_space_mark m;

			if (!(bm[i / 64] >> (i % 64) & 1))
				continue;
			m = ps_space_mark_dirty(ref, i * PG);
			if (m == PS_SPACE_MARK_UNMAPPED) {
				if (!unmapped++)
					first = i * PG;
			} else {
				ck_assert(m == PS_SPACE_MARK_DIRTIED ||
					  m == PS_SPACE_MARK_WAS_DIRTY);
				marked++;
			}
		}
		ck_assert_uint_eq(res.marked, marked);
		ck_assert_uint_eq(res.unmapped, unmapped);
		ck_assert_uint_eq(res.first_unmapped, first);
		ck_assert_uint_eq(res.stopped, UINT64_MAX);
		/* The log: the consumer's harvest, and the reference's. */
		n = harvest(a, &t);
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
		ck_assert_int_eq(ps_space_harvest(ref, 0, SPACE_SIZE, 0, got2,
						  NPAGES, &n2, NULL),
				 0);
		ck_assert_uint_eq(n, n2);
		ck_assert_uint_eq(n, marked);
		ck_assert_int_eq(memcmp(got, got2, n * sizeof(got[0])), 0);
		/* DIRTY, and one hook per transition (both spaces count). */
		dirty_frames(sp, d1);
		dirty_frames(ref, d2);
		ck_assert_int_eq(memcmp(d1, d2, sizeof(d1)), 0);
		for (uint64_t f = 0; f < NPAGES; f++)
			ck_assert(hook_runs[f] == 0 || hook_runs[f] == 2);
		/* Again: every frame dirty already, no hook, all logged. */
		memset(hook_runs, 0, sizeof(hook_runs));
		ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 0, bm, NPAGES,
							 &res),
				 0);
		ck_assert_uint_eq(res.marked, marked);
		for (uint64_t f = 0; f < NPAGES; f++)
			ck_assert_uint_eq(hook_runs[f], 0);
		ck_assert_uint_eq(harvest_commit(a), marked);
	}
	ck_assert_int_eq(ps_space_destroy(ref), 0);
}
END_TEST

/*
 * Boundaries of the batches and of the IOVA range: the last bit of a range
 * that is not a multiple of 64, a range that runs past the translation's end
 * (the pages after it unmapped, the first one named), batches of 64 pages
 * split across words and leaves, and the last page of the space.
 */
START_TEST(batched_ingest_boundaries)
{
	uint64_t a = add(PS_LEDGER_CLEAN), bm[4], want[130];
	struct ps_ledger_ingest res;
	const uint64_t end = IOVA0 + 2 * P2M * PG; /* the translation's end */

	/* 130 pages ending 2 past a leaf, every bit set: 3 batches. */
	memset(bm, 0xff, sizeof(bm));
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0 + (P2M - 128) * PG,
						 130 * PG, PG, bm, iova_to_addr,
						 NULL, &res),
			 0);
	ck_assert_uint_eq(res.marked, 130);
	ck_assert_uint_eq(res.unmapped, 0);
	for (uint64_t i = 0; i < 130; i++)
		want[i] = P2M + P2M - 128 + i;
	assert_pages(harvest_commit(a), want, 130);
	ck_assert(!ps_page_test_flags(ps_space_page(sp, 2 * P2M + 2),
				      PS_PAGE_DIRTY));
	/* Across the translation's end: 64 marked, 100 unmapped. */
	ck_assert_int_eq(ps_ledger_ingest_device(sp, end - 64 * PG, 164 * PG,
						 PG, bm, iova_to_addr, NULL,
						 &res),
			 0);
	ck_assert_uint_eq(res.marked, 64);
	ck_assert_uint_eq(res.unmapped, 100);
	ck_assert_uint_eq(res.first_unmapped, end);
	for (uint64_t i = 0; i < 64; i++)
		want[i] = 3 * P2M - 64 + i;
	assert_pages(harvest_commit(a), want, 64);
	/* A stop midway marks the pages before it (B4). */
	ck_assert_int_eq(ps_ledger_ingest_device(sp, IOVA0, 64 * PG, PG, bm,
						 iova_unaligned, NULL, &res),
			 -EINVAL);
	ck_assert_uint_eq(res.stopped, IOVA0);
	/* The last page of the space, alone in its word. */
	bm[0] = 1;
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, SPACE_SIZE - PG, bm, 1,
						 &res),
			 0);
	ck_assert_uint_eq(res.marked, 1);
	want[0] = NPAGES - 1;
	assert_pages(harvest_commit(a), want, 1);
}
END_TEST

/*
 * B1, B2 under concurrency: one thread ingests a bitmap of every page of two
 * leaves while another unmaps pages and maps them again (each time a new
 * lifetime of the same frame). The dirty hook runs only for a held frame
 * (never a freed one, S5), and after both stop, one more ingest leaves every
 * page dirty and logged.
 */
#define IS_PAGES (2 * P2M)

static atomic_bool is_stop;
static atomic_uint_fast64_t is_bad_hooks;

static void live_dirty(void *ctx, struct ps_space *space, uint64_t frame)
{
	(void)ctx;
	if (!ps_page_word_refs(ps_page_load(ps_space_page(space, frame))))
		atomic_fetch_add(&is_bad_hooks, 1);
}

static void *is_remapper(void *arg)
{
	struct ps_test_rng rng = ps_test_rng_new(71);
	uint64_t rounds = *(uint64_t *)arg;

	for (uint64_t r = 0; r < rounds; r++) {
		uint64_t page = ps_test_below(&rng, IS_PAGES);

		ck_assert_int_eq(ps_space_unmap(sp, page * PG, PG, 0), 0);
		ck_assert_int_eq(ps_space_map_range(sp, page * PG, PG, page,
						    PS_MAP_WRITE, NULL),
				 0);
	}
	atomic_store(&is_stop, true);
	return NULL;
}

START_TEST(stress_batched_ingest_against_remaps)
{
	static uint64_t bm[IS_PAGES / 64];
	struct ps_space_config cfg;
	struct ps_ledger_ingest res;
	uint64_t rounds = ps_test_stress_size("PS_LEDGER_INGEST_ROUNDS", 20000);
	uint64_t a, ingests = 0;
	pthread_t th;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NPAGES;
	cfg.hooks.dirty = live_dirty;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, SPACE_SIZE, 0, PS_MAP_WRITE,
					    NULL),
			 0);
	a = add(PS_LEDGER_CLEAN);
	memset(bm, 0xff, sizeof(bm));
	atomic_store(&is_stop, false);
	atomic_store(&is_bad_hooks, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, is_remapper, &rounds), 0);
	while (!atomic_load(&is_stop)) {
		ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 0, bm, IS_PAGES,
							 &res),
				 0);
		ck_assert_uint_eq(res.marked + res.unmapped, IS_PAGES);
		ingests++;
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_uint_gt(ingests, 0);
	ck_assert_uint_eq(atomic_load(&is_bad_hooks), 0);
	ck_assert_int_eq(ps_ledger_ingest_bitmap(sp, 0, bm, IS_PAGES, &res), 0);
	ck_assert_uint_eq(res.marked, IS_PAGES);
	for (uint64_t f = 0; f < IS_PAGES; f++)
		ck_assert(ps_page_test_flags(ps_space_page(sp, f),
					     PS_PAGE_DIRTY));
	ck_assert_uint_eq(harvest_commit(a), IS_PAGES);
}
END_TEST

/* --- stress: two writers, two harvesters, a shadow model (C1, C2) -------- */

/*
 * Two writers mark pages of their own parity (so that the marks of a page are
 * sequential): started[p] counts the marks of p begun, done[p] those that
 * returned. Two harvesters own three consumers each and, at random, harvest a
 * random range with a random budget, then commit, abort, harvest again (joining
 * the open harvest), or remove the consumer (uncommitted) and add it again.
 * Each keeps, per consumer and page, what its committed harvests covered, and
 * checks after every harvest:
 *   - nothing lost (C1, C2): a page with a mark that was done before the
 *     harvest began, and that began after every harvest that reported the
 *     page (committed, or in the open transaction) had returned, is
 *     reported, unless it is at or beyond the budget's resume point;
 *   - nothing spurious: a page reported has a mark begun (before the harvest
 *     returned) that was not done before every earlier harvest covering it
 *     began (no write pins, no initially-set consumer here).
 * A mark in flight across a harvest may go either way; the model credits it
 * to neither side, so the checks never fail on a correct ledger.
 */
#define SP_PAGES 512
#define SP_CONS 3

struct model {
	uint64_t id;
	uint64_t must[SP_PAGES]; /* marks begun up to this were covered */
	uint64_t may[SP_PAGES];	 /* marks done up to this were covered */
	uint64_t omust[SP_PAGES], omay[SP_PAGES]; /* the open transaction */
	uint64_t token;
};

struct stress {
	_Atomic(uint64_t) started[SP_PAGES], done[SP_PAGES];
	_Atomic(unsigned) lost, spurious, errors;
	_Atomic(uint64_t) aborts, commits, removes;
	uint64_t iters;
	struct ps_test_overlap ov; /* 0, 1 harvesters; 2, 3 writers */
};

static struct stress *st;

struct harvester {
	unsigned int side;
	struct model m[SP_CONS];
	uint64_t snap[SP_PAGES];
	uint64_t addrs[SP_PAGES];
};

static void model_reset(struct model *m, uint64_t id, const uint64_t *done0)
{
	m->id = id;
	m->token = 0;
	for (int p = 0; p < SP_PAGES; p++) {
		/* Marks begun after the add returned must be reported. */
		m->must[p] = atomic_load(&st->started[p]);
		/* Marks done before the add began must not be. */
		m->may[p] = done0[p];
		m->omust[p] = m->omay[p] = 0;
	}
}

static void model_add(struct harvester *h, struct model *m)
{
	uint64_t id;

	for (int p = 0; p < SP_PAGES; p++)
		h->snap[p] = atomic_load(&st->done[p]);
	if (ps_ledger_consumer_add(sp, PS_LEDGER_CLEAN, &id)) {
		atomic_fetch_add(&st->errors, 1);
		return;
	}
	model_reset(m, id, h->snap);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static void model_end(struct model *m, bool commit)
{
	for (int p = 0; p < SP_PAGES; p++) {
		if (commit) {
			m->must[p] = max_u64(m->must[p], m->omust[p]);
			m->may[p] = max_u64(m->may[p], m->omay[p]);
		}
		m->omust[p] = m->omay[p] = 0;
	}
	m->token = 0;
	atomic_fetch_add(commit ? &st->commits : &st->aborts, 1);
}

/* One harvest of consumer @m over a random range; checks it. */
static void model_harvest(struct harvester *h, struct model *m,
			  struct ps_test_rng *rng)
{
	uint64_t first = ps_test_below(rng, SP_PAGES);
	uint64_t count = 1 + ps_test_below(rng, SP_PAGES - first);
	uint64_t max = 1 + ps_test_below(rng, SP_PAGES), n, r, t, i = 0;

	for (uint64_t p = first; p < first + count; p++)
		h->snap[p] = atomic_load(&st->done[p]);
	if (ps_ledger_harvest(sp, m->id, first * PG, count * PG, 0, h->addrs,
			      max, &n, &r, &t)) {
		atomic_fetch_add(&st->errors, 1);
		return;
	}
	if (m->token && m->token != t)
		atomic_fetch_add(&st->errors, 1); /* it must join */
	m->token = t;
	r /= PG;
	for (uint64_t p = first; p < first + count; p++) {
		bool reported = i < n && h->addrs[i] == p * PG;
		uint64_t must = max_u64(m->must[p], m->omust[p]);
		uint64_t may = max_u64(m->may[p], m->omay[p]);

		if (reported) {
			i++;
			if (atomic_load(&st->started[p]) <= may) {
				fprintf(stderr, "page %llu reported, no mark\n",
					(unsigned long long)p);
				atomic_fetch_add(&st->spurious, 1);
			}
			m->omust[p] = atomic_load(&st->started[p]);
			m->omay[p] = h->snap[p];
		} else if (p < r && h->snap[p] > must) {
			fprintf(stderr,
				"page %llu lost: done %llu, covered "
				"%llu\n",
				(unsigned long long)p,
				(unsigned long long)h->snap[p],
				(unsigned long long)must);
			atomic_fetch_add(&st->lost, 1);
		}
	}
	if (i != n)
		atomic_fetch_add(&st->errors, 1); /* outside, or unordered */
}

static void harvester_round(struct harvester *h, struct ps_test_rng *rng)
{
	struct model *m = &h->m[ps_test_below(rng, SP_CONS)];
	uint64_t dice = ps_test_below(rng, 100);

	model_harvest(h, m, rng);
	if (dice < 55) {
		if (ps_ledger_commit(sp, m->token))
			atomic_fetch_add(&st->errors, 1);
		model_end(m, true);
	} else if (dice < 85) {
		if (ps_ledger_abort(sp, m->token))
			atomic_fetch_add(&st->errors, 1);
		model_end(m, false);
	} else if (dice < 95) {
		/* Left open: the next harvest of m joins it. */
	} else {
		/* Destroyed uncommitted, and registered again. */
		if (ps_ledger_consumer_remove(sp, m->id) ||
		    ps_ledger_commit(sp, m->token) != -ESTALE)
			atomic_fetch_add(&st->errors, 1);
		atomic_fetch_add(&st->removes, 1);
		model_add(h, m);
	}
}

static void *harvester_main(void *arg)
{
	struct harvester *h = arg;
	struct ps_test_rng rng = ps_test_rng_new(h->side + 1);
	struct ps_test_side me = ps_test_side(&st->ov, h->side, 0xc);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me))
		harvester_round(h, &rng);
	return NULL;
}

static void *writer_main(void *arg)
{
	unsigned int w = (unsigned int)(uintptr_t)arg;
	struct ps_test_rng rng = ps_test_rng_new(w + 11);
	struct ps_test_side me = ps_test_side(&st->ov, w + 2, 0x3);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t p = ps_test_below(&rng, SP_PAGES / 2) * 2 + w;
		enum ps_space_mark k;

		atomic_fetch_add(&st->started[p], 1);
		k = ps_space_mark_dirty(sp, p * PG);
		if (k != PS_SPACE_MARK_DIRTIED && k != PS_SPACE_MARK_WAS_DIRTY)
			atomic_fetch_add(&st->errors, 1);
		atomic_fetch_add(&st->done[p], 1);
	}
	return NULL;
}

/* Writers stopped: close, harvest everything, and check nothing is left. */
static void harvester_final(struct harvester *h)
{
	for (int k = 0; k < SP_CONS; k++) {
		struct model *m = &h->m[k];
		uint64_t n, t;

		if (m->token) {
			ck_assert_int_eq(ps_ledger_abort(sp, m->token), 0);
			model_end(m, false);
		}
		for (int p = 0; p < SP_PAGES; p++)
			h->snap[p] = atomic_load(&st->done[p]);
		ck_assert_int_eq(ps_ledger_harvest(sp, m->id, 0, SP_PAGES * PG,
						   0, h->addrs, SP_PAGES, &n,
						   NULL, &t),
				 0);
		m->token = t;
		for (uint64_t i = 0, p = 0; p < SP_PAGES; p++) {
			bool rep = i < n && h->addrs[i] == p * PG;

			if (rep) {
				i++;
				m->omust[p] = h->snap[p];
				m->omay[p] = h->snap[p];
			}
		}
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
		model_end(m, true);
		for (int p = 0; p < SP_PAGES; p++)
			ck_assert_msg(
				m->must[p] >= h->snap[p] ||
					m->may[p] >= h->snap[p],
				"consumer %d page %d: %llu marks, covered "
				"%llu",
				k, p, (unsigned long long)h->snap[p],
				(unsigned long long)m->must[p]);
		/* Nothing more. */
		ck_assert_int_eq(ps_ledger_harvest(sp, m->id, 0, SP_PAGES * PG,
						   0, h->addrs, SP_PAGES, &n,
						   NULL, &t),
				 0);
		ck_assert_uint_eq(n, 0);
		ck_assert_int_eq(ps_ledger_commit(sp, t), 0);
	}
}

START_TEST(stress_no_consumer_loses_a_mark)
{
	struct harvester *h = calloc(2, sizeof(*h));
	pthread_t th[3];
	uint64_t n, r;

	st = calloc(1, sizeof(*st));
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_nonnull(st);
	st->iters = ps_test_stress_size("PS_STRESS_ITERS", 200000) / 10;
	ps_test_overlap_init(&st->ov, 4, 0);
	st->ov.side[0].min_ops = st->iters / 20;
	st->ov.side[1].min_ops = st->iters / 20;
	st->ov.side[2].min_ops = st->iters;
	st->ov.side[3].min_ops = st->iters;
	for (unsigned int k = 0; k < 2; k++) {
		h[k].side = k;
		for (int c = 0; c < SP_CONS; c++)
			model_add(&h[k], &h[k].m[c]);
	}
	ck_assert_uint_eq(atomic_load(&st->errors), 0);
	ck_assert_int_eq(pthread_create(&th[0], NULL, harvester_main, &h[1]),
			 0);
	ck_assert_int_eq(pthread_create(&th[1], NULL, writer_main,
					(void *)(uintptr_t)0),
			 0);
	ck_assert_int_eq(pthread_create(&th[2], NULL, writer_main,
					(void *)(uintptr_t)1),
			 0);
	harvester_main(&h[0]);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ps_test_overlap_check(&st->ov, "harvesters vs writers");
	ck_assert_uint_eq(atomic_load(&st->lost), 0);
	ck_assert_uint_eq(atomic_load(&st->spurious), 0);
	ck_assert_uint_eq(atomic_load(&st->errors), 0);
	harvester_final(&h[0]);
	harvester_final(&h[1]);
	/* The default consumer (never harvested) has every page marked. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, SP_PAGES * PG, 0, got,
					  SP_PAGES, &n, &r),
			 0);
	for (uint64_t p = 0, i = 0; p < SP_PAGES; p++) {
		while (i < n && got[i] < p * PG)
			i++;
		if (atomic_load(&st->done[p]))
			ck_assert_msg(i < n && got[i] == p * PG,
				      "page %llu: the default consumer lost it",
				      (unsigned long long)p);
	}
	ck_assert_uint_gt(atomic_load(&st->aborts), 0);
	ck_assert_uint_gt(atomic_load(&st->removes), 0);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"ledger stress: %llu commits, %llu aborts, "
			"%llu removals\n",
			(unsigned long long)atomic_load(&st->commits),
			(unsigned long long)atomic_load(&st->aborts),
			(unsigned long long)atomic_load(&st->removes));
	free(h);
	free(st);
	st = NULL;
}
END_TEST

/*
 * Re-arm with consumers (C3, S11): no write escapes a consumer. Two writers
 * write pages of their own half, bumping each page's version: even pages by
 * software (the write, then ps_space_mark_dirty()), odd pages by the CPU (a
 * write fault, then the write, which faults again if a re-arm came in
 * between, as test-space's stress_harvest_never_loses). Two harvesters, one
 * consumer each, harvest with PS_HARVEST_REARM in budgets, "copy" every page
 * reported (read its version) after the harvest returns, and commit, or abort
 * at random (the copies of an aborted harvest are dropped). After the writers
 * stop and a final harvest, each consumer's copy of every page is its last
 * version. The range is registered PS_WP_ASYNC (the get-and-rearm scan, once
 * for both consumers) or not at all (each harvest clears WRITE).
 */
#define RA_PAGES 256

struct rearm_race {
	_Atomic(uint64_t) version[RA_PAGES];
	uint64_t copied[2][RA_PAGES];
	uint64_t id[2];
	_Atomic(unsigned) errors;
	uint64_t iters;
	struct ps_test_overlap ov; /* 0, 1 harvesters; 2, 3 writers */
};

static struct rearm_race *ra;

static void *rearm_writer(void *arg)
{
	unsigned int w = (unsigned int)(uintptr_t)arg;
	struct ps_test_rng rng = ps_test_rng_new(w + 21);
	struct ps_test_side me = ps_test_side(&ra->ov, w + 2, 0x3);
	struct ps_pgtable *pt = ps_space_pgtable(sp);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t page = w * (RA_PAGES / 2) +
				ps_test_below(&rng, RA_PAGES / 2);
		ps_pte_t e;

		if (!(page & 1)) {
			atomic_fetch_add(&ra->version[page], 1);
			(void)ps_space_mark_dirty(sp, page * PG);
			continue;
		}
		do {
			if (ps_space_fault(sp, page * PG, PS_ACCESS_WRITE) !=
			    PS_FAULT_OK) {
				atomic_fetch_add(&ra->errors, 1);
				break;
			}
			atomic_fetch_add(&ra->version[page], 1);
			/* Still writable: the write went through it. */
			e = 0;
			(void)ps_pgtable_get(pt, page * PG, &e);
		} while (!ps_pte_is_writable(e));
	}
	return NULL;
}

/* One pass over the range for consumer @k; @abort drops its copies. */
static void rearm_round(unsigned int k, bool abort, uint64_t budget)
{
	uint64_t out[RA_PAGES], ver[RA_PAGES], seen[RA_PAGES], ns = 0;
	uint64_t n, resume = 0, t = 0;

	while (resume < RA_PAGES * PG) {
		if (ps_ledger_harvest(sp, ra->id[k], resume,
				      RA_PAGES * PG - resume, PS_HARVEST_REARM,
				      out, budget, &n, &resume, &t)) {
			atomic_fetch_add(&ra->errors, 1);
			return;
		}
		for (uint64_t i = 0; i < n; i++) { /* copy after the harvest */
			seen[ns] = out[i] / PG;
			ver[ns++] = atomic_load(&ra->version[out[i] / PG]);
		}
	}
	if (abort) {
		if (ps_ledger_abort(sp, t))
			atomic_fetch_add(&ra->errors, 1);
		return;
	}
	if (ps_ledger_commit(sp, t))
		atomic_fetch_add(&ra->errors, 1);
	for (uint64_t i = 0; i < ns; i++)
		ra->copied[k][seen[i]] = ver[i];
}

static void *rearm_harvester(void *arg)
{
	unsigned int k = (unsigned int)(uintptr_t)arg;
	struct ps_test_rng rng = ps_test_rng_new(k + 41);
	struct ps_test_side me = ps_test_side(&ra->ov, k, 0xc);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		rearm_round(k, ps_test_below(&rng, 5) == 0,
			    1 + ps_test_below(&rng, 64));
		ps_test_overlap_wait(&me, 1000000); /* let the writers write */
	}
	return NULL;
}

static void stress_rearm(bool async)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	pthread_t th[3];

	ra = calloc(1, sizeof(*ra));
	ck_assert_ptr_nonnull(ra);
	ra->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 20;
	ps_test_overlap_init(&ra->ov, 4, 0);
	ra->ov.side[2].min_ops = ra->iters;
	ra->ov.side[3].min_ops = ra->iters;
	if (async) {
		ck_assert_int_eq(ps_pgtable_register(pt, 0, RA_PAGES * PG,
						     PS_WP_ASYNC),
				 0);
		ck_assert_int_eq(ps_pgtable_protect(pt, 0, RA_PAGES * PG), 0);
	}
	ra->id[0] = add(PS_LEDGER_CLEAN);
	ra->id[1] = add(PS_LEDGER_CLEAN);
	ck_assert_int_eq(pthread_create(&th[0], NULL, rearm_harvester,
					(void *)(uintptr_t)1),
			 0);
	for (unsigned int w = 0; w < 2; w++)
		ck_assert_int_eq(pthread_create(&th[w + 1], NULL, rearm_writer,
						(void *)(uintptr_t)w),
				 0);
	rearm_harvester((void *)(uintptr_t)0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ps_test_overlap_check(&ra->ov, "re-arming consumers vs writers");
	ck_assert_uint_eq(atomic_load(&ra->errors), 0);
	for (unsigned int k = 0; k < 2; k++) {
		rearm_round(k, false, RA_PAGES); /* the final one */
		for (int p = 0; p < RA_PAGES; p++)
			ck_assert_msg(ra->copied[k][p] ==
					      atomic_load(&ra->version[p]),
				      "consumer %u page %d: version %llu "
				      "written, %llu copied: a write was lost",
				      k, p,
				      (unsigned long long)
					      atomic_load(&ra->version[p]),
				      (unsigned long long)ra->copied[k][p]);
	}
	ck_assert_uint_eq(atomic_load(&ra->errors), 0);
	if (async)
		ck_assert_int_eq(ps_pgtable_unregister(pt, 0, RA_PAGES * PG),
				 0);
	free(ra);
	ra = NULL;
}

START_TEST(stress_rearm_async_no_write_escapes)
{
	stress_rearm(true);
}
END_TEST

START_TEST(stress_rearm_unregistered_no_write_escapes)
{
	stress_rearm(false);
}
END_TEST

/*
 * The ledger's birth (C4): the first ps_ledger_consumer_add() while the
 * default consumer harvests and a writer marks. A harvest that read "no
 * ledger" takes straight from the log; the add waits for it (a grace period)
 * before the consumer can be handed a mark, so every mark begun after the add
 * returned reaches the consumer. Each iteration uses a fresh space, a
 * harvester and a writer thread; the tcase asserts that harvests did run
 * while an add was in progress.
 */
#define BI_PAGES 64

struct birth {
	struct ps_space *s;
	_Atomic(uint64_t) started[BI_PAGES];
	_Atomic(int) stop, adding;
	_Atomic(uint64_t) during; /* harvests while an add was running */
	_Atomic(unsigned) errors;
};

static void *birth_harvester(void *arg)
{
	struct birth *b = arg;
	uint64_t out[BI_PAGES], n;

	while (!atomic_load(&b->stop)) {
		int adding = atomic_load(&b->adding);

		if (ps_space_harvest(b->s, 0, BI_PAGES * PG, 0, out, BI_PAGES,
				     &n, NULL))
			atomic_fetch_add(&b->errors, 1);
		if (adding && atomic_load(&b->adding))
			atomic_fetch_add(&b->during, 1);
	}
	return NULL;
}

static void *birth_writer(void *arg)
{
	struct birth *b = arg;
	struct ps_test_rng rng = ps_test_rng_new(51);

	while (!atomic_load(&b->stop)) {
		uint64_t p = ps_test_below(&rng, BI_PAGES);

		atomic_fetch_add(&b->started[p], 1);
		if (ps_space_mark_dirty(b->s, p * PG) > PS_SPACE_MARK_WAS_DIRTY)
			atomic_fetch_add(&b->errors, 1);
	}
	return NULL;
}

START_TEST(stress_birth_loses_nothing)
{
	uint64_t rounds = ps_test_stress_size("PS_STRESS_ITERS", 400) / 10;
	uint64_t during = 0;

	for (uint64_t r = 0; r < rounds; r++) {
		struct ps_space_config cfg;
		struct birth *b = calloc(1, sizeof(*b));
		uint64_t snap[BI_PAGES], out[BI_PAGES], id, n, t;
		pthread_t th[2];

		ck_assert_ptr_nonnull(b);
		memset(&cfg, 0, sizeof(cfg));
		cfg.size = BI_PAGES * PG;
		cfg.nframes = BI_PAGES;
		ck_assert_int_eq(ps_space_create(&cfg, &b->s), 0);
		ck_assert_int_eq(ps_space_map_range(b->s, 0, BI_PAGES * PG, 0,
						    PS_MAP_WRITE, NULL),
				 0);
		ck_assert_int_eq(pthread_create(&th[0], NULL, birth_harvester,
						b),
				 0);
		ck_assert_int_eq(pthread_create(&th[1], NULL, birth_writer, b),
				 0);
		sched_yield();
		atomic_store(&b->adding, 1);
		ck_assert_int_eq(ps_ledger_consumer_add(b->s, PS_LEDGER_CLEAN,
							&id),
				 0);
		atomic_store(&b->adding, 0);
		for (int p = 0; p < BI_PAGES; p++)
			snap[p] = atomic_load(&b->started[p]);
		/* 100 more marks (a 100 ms cap); the harvester runs. */
		for (uint64_t t0 = ps_test_now_ns(), more = 0;
		     more < 100 && ps_test_now_ns() - t0 < 100000000;) {
			sched_yield();
			more = 0;
			for (int p = 0; p < BI_PAGES; p++)
				more += atomic_load(&b->started[p]) - snap[p];
		}
		atomic_store(&b->stop, 1);
		pthread_join(th[0], NULL);
		pthread_join(th[1], NULL);
		ck_assert_uint_eq(atomic_load(&b->errors), 0);
		ck_assert_int_eq(ps_ledger_harvest(b->s, id, 0, BI_PAGES * PG,
						   0, out, BI_PAGES, &n, NULL,
						   &t),
				 0);
		for (uint64_t p = 0, i = 0; p < BI_PAGES; p++) {
			bool rep = i < n && out[i] == p * PG;

			if (rep)
				i++;
			ck_assert_msg(rep || atomic_load(&b->started[p]) ==
						      snap[p],
				      "round %llu page %llu: marked after the "
				      "add, not reported",
				      (unsigned long long)r,
				      (unsigned long long)p);
		}
		during += atomic_load(&b->during);
		ck_assert_int_eq(ps_space_destroy(b->s), 0);
		free(b);
	}
	ck_assert_uint_gt(during, 0); /* the race was run */
}
END_TEST

static Suite *ledger_suite(void)
{
	Suite *s = suite_create("ledger");
	TCase *tc;

	tc = ps_test_tcase(s, "independent consumers (C1)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, consumers_have_their_own_view);
	tcase_add_test(tc, harvest_of_a_range_leaves_the_rest);

	tc = ps_test_tcase(s, "commit (C2)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, commit_makes_a_harvest_final);

	tc = ps_test_tcase(s, "abort merges with marks made meanwhile (C2)",
			   10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, abort_merges_with_marks_made_meanwhile);
	tcase_add_test(tc, harvest_joins_the_open_one);

	tc = ps_test_tcase(s, "remove without commit (C2)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, remove_without_commit);

	tc = ps_test_tcase(s, "initially set", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, initially_set_reports_everything_once);
	tcase_add_test(tc, initially_set_materialises_lazily);

	tc = ps_test_tcase(s, "budget stops midway", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, budget_stops_midway);

	tc = ps_test_tcase(s, "write pins while pinned (C1, S6)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, write_pin_reported_to_every_consumer_while_pinned);

	tc = ps_test_tcase(s, "re-arm (C3)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, rearm_then_the_next_write_reaches_every_consumer);

	tc = ps_test_tcase(s, "huge frames at 4 KiB and in units", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, huge_frame_at_4k_and_in_units);
	tcase_add_test(tc, rearm_resumes_inside_a_huge_leaf);

	tc = ps_test_tcase(s, "the default consumer (C4)", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, default_consumer_behaves_as_before);

	tc = ps_test_tcase(s, "sources: KVM and devices", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, kvm_bitmap_marks_through_the_normal_path);
	tcase_add_test(tc, kvm_ring_collects_published_entries);
	tcase_add_test(tc, device_bitmap_through_a_translation);

	tc = ps_test_tcase(s, "sources: batched ingest", 30);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, batched_ingest_equals_per_page);
	tcase_add_test(tc, batched_ingest_boundaries);

	tc = ps_test_tcase(s, "errors at the limits", 10);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, errors_at_the_limits);

	tc = ps_test_stress_tcase(s, "stress", 300);
	tcase_add_checked_fixture(tc, setup_mapped, teardown);
	tcase_add_test(tc, stress_no_consumer_loses_a_mark);
	tcase_add_test(tc, stress_rearm_async_no_write_escapes);
	tcase_add_test(tc, stress_rearm_unregistered_no_write_escapes);

	tc = ps_test_stress_tcase(s, "stress: batched ingest", 300);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, stress_batched_ingest_against_remaps);

	tc = ps_test_stress_tcase(s, "stress: the ledger's birth (C4)", 300);
	tcase_add_test(tc, stress_birth_loses_nothing);
	return s;
}

PS_TEST_MAIN(ledger_suite)
