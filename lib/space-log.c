// SPDX-License-Identifier: MIT
/*
 * lib/space-log.c - the dirty log's three levels and its one take (S6 and S11
 * in lib/space-dirty.c govern it; the space's rules: lib/space-impl.h).
 *
 *   s->log     one bit per 4 KiB page
 *   s->log2m   one bit per 2 MiB unit (aligned): every page of it marked
 *   s->log1g   one bit per 1 GiB unit (aligned): likewise
 *
 * Each level is a three-level bitmap (lib/hbitmap.h). A whole huge frame
 * written through its huge entry (a write fault, the get-and-rearm scan, a
 * pin for write) is one unit mark: one bit, not 512 or 262144, and a harvest
 * in units takes and reports it with no work per 4 KiB. The levels are
 * independent: a page may be marked at several of them at once, and a mark
 * at any level is taken by exactly one take, which shows it, takes it with a
 * coarser mark it showed, or puts it back one level finer (never lost).
 *
 * L1 Marks. Every mark is one release RMW on its level (S0 in lib/hbitmap.h),
 *    after the point from which the writes it records can happen (S11).
 * L2 Expansion. A unit mark is put back as finer marks by taking it (an
 *    acquire, seq_cst RMW: A0) and then setting every finer bit of its extent
 *    (release RMWs). The setter's release, the take's acquire and the finer
 *    sets' release chain: a take of a finer bit that reads the expansion's set
 *    happens after the original mark's setter, as if the setter had set the
 *    finer bit itself (S11's proof relies on this). A concurrent harvest that
 *    misses the mark between the take and the sets leaves it for the next:
 *    "shown by it or by the next" (S6). The expansion's take is seq_cst (A0),
 *    so a marker that read the unit bit set (T0) and skipped its own set
 *    (ps__space_log_opened(), record_pinned() in lib/space-huge.c) is
 *    before it in the total order, and before the take that reports the
 *    finer bit, which happens after the expansion: "Logging after the CAS"
 *    in lib/space-fault.c holds through it.
 * L3 Absorption. With units, marks are shown in address order, a coarser one
 *    first at the same address; a mark inside the extent of a unit shown (and
 *    not refused with STOP) is taken and not shown: the unit's report covers
 *    its pages, and the unit's re-arm, which comes after every take of the
 *    harvest, covers the writes it records (S11).
 * L4 Budget. A mark the visitor stops at, and every mark after it, is not
 *    taken: the units collected ahead of the 4 KiB walk are set again (a
 *    release RMW, as a mark) before the take returns.
 *
 * The take walks the range in rounds: up to ROUND 1 GiB marks, then up to
 * ROUND 2 MiB marks before the first 1 GiB mark left over, then the 4 KiB
 * level up to there, merged in address order. Its cost is the marks taken
 * plus each level's summary words, as a harvest of one level. Its takers:
 * the harvest (S6) and the ledger's drain (C1 in lib/space-ledger.c), which
 * takes with units and sets a unit's pages in each consumer's set.
 */
#include "space-impl.h"

#define ORD_2M PS_SPACE_ORDER_2M
#define ORD_1G PS_SPACE_ORDER_1G
#define ROUND 128 /* unit marks collected per level per round */

/* The level that holds marks of unit @order. */
static struct ps__hbm *level(struct ps_space *s, unsigned int order)
{
	return order == ORD_1G	 ? &s->log1g
	       : order == ORD_2M ? &s->log2m
				 : &s->log;
}

void ps__space_log_unit(struct ps_space *s, uint64_t addr, unsigned int order)
{
	/* L1: release (S0), paired with the take's acquire (A0). */
	(void)ps__hbm_set(level(s, order), (addr >> PAGE_SHIFT) >> order);
}

/* --- expansion (L2) ------------------------------------------------------- */

struct expand_ctx {
	struct ps_space *s;
	unsigned int order;
};

/* A unit mark taken: its extent, set one level finer (L2). */
static enum ps__hbm_verdict expand_visit(void *ctx, uint64_t bit)
{
	struct expand_ctx *x = ctx;
	const unsigned int finer = x->order == ORD_1G ? ORD_2M : 0;
	struct ps__hbm *b = level(x->s, finer);
	const uint64_t n = UINT64_C(1) << (x->order - finer);
	uint64_t first = bit << (x->order - finer);

	/* Release RMWs (S0): after the take's acquire (L2). */
	ps__hbm_set_range(b, first,
			  n < b->nbits - first ? n : b->nbits - first);
	return PS__HBM_CLEAR;
}

/* Put the unit marks of @order with bits [@first, @last] back finer (L2). */
static void expand(struct ps_space *s, unsigned int order, uint64_t first,
		   uint64_t last)
{
	struct expand_ctx x = {s, order};

	(void)ps__hbm_harvest(level(s, order), first, last - first + 1,
			      expand_visit, &x, NULL);
}

/* --- the take ------------------------------------------------------------- */

/* Unit marks collected ahead of the 4 KiB walk: page indexes, ascending. */
struct units {
	uint64_t pg[ROUND];
	unsigned int n, next;
	unsigned int order;
};

struct take_ctx {
	struct ps_space *s;
	ps__space_log_fn fn;
	void *ctx;
	struct units u1, u2; /* this round's 1 GiB and 2 MiB marks */
	uint64_t covered;    /* page index: the end of the last unit shown */
	uint64_t stop;	     /* page index a STOP came at, or UINT64_MAX */
	uint64_t shown;
};

static enum ps__hbm_verdict collect_visit(void *ctx, uint64_t bit)
{
	struct units *u = ctx;

	if (u->n == ROUND)
		return PS__HBM_STOP; /* kept; the next round starts here */
	u->pg[u->n++] = bit << u->order;
	return PS__HBM_CLEAR;
}

/*
 * Collect the marks of level @u->order with bits [@first, @end) (a bound
 * of ROUND); returns the page index where collection stopped (@stop_pg if it
 * did not).
 */
static uint64_t collect(struct ps_space *s, struct units *u, uint64_t first,
			uint64_t end, uint64_t stop_pg)
{
	uint64_t resume;

	u->n = u->next = 0;
	if (first >= end)
		return stop_pg;
	(void)ps__hbm_harvest(level(s, u->order), first, end - first,
			      collect_visit, u, &resume);
	return resume < end ? resume << u->order : stop_pg;
}

/* Show one mark (L3: absorbed inside the last unit shown). */
static enum ps__hbm_verdict show(struct take_ctx *t, uint64_t pg,
				 unsigned int order)
{
	enum ps__hbm_verdict v;

	if (pg < t->covered)
		return PS__HBM_CLEAR; /* L3: taken with the unit shown */
	v = t->fn(t->ctx, pg << PAGE_SHIFT, order);
	if (v == PS__HBM_STOP) {
		t->stop = pg;
		return v;
	}
	t->shown++;
	if (order)
		t->covered = pg + (UINT64_C(1) << order);
	return v;
}

/* The next collected unit, coarser first at one address; NULL if none. */
static struct units *next_unit(struct take_ctx *t)
{
	struct units *a = &t->u1, *b = &t->u2;

	if (a->next == a->n)
		return b->next == b->n ? NULL : b;
	if (b->next == b->n)
		return a;
	return a->pg[a->next] <= b->pg[b->next] ? a : b;
}

/*
 * Show the collected units below page index @below, in order; false on a
 * STOP (that unit and the rest stay collected, to be put back).
 */
static bool show_units(struct take_ctx *t, uint64_t below)
{
	struct units *u;

	while ((u = next_unit(t)) && u->pg[u->next] < below) {
		const uint64_t pg = u->pg[u->next];
		enum ps__hbm_verdict v = show(t, pg, u->order);

		if (v == PS__HBM_STOP)
			return false;
		u->next++;
		if (v == PS__HBM_KEEP) /* shown, and set again */
			ps__space_log_unit(t->s, pg << PAGE_SHIFT, u->order);
	}
	return true;
}

/* Set the collected units not shown again (L4). */
static void put_back(struct take_ctx *t, struct units *u)
{
	for (; u->next < u->n; u->next++)
		ps__space_log_unit(t->s, u->pg[u->next] << PAGE_SHIFT,
				   u->order);
}

/* The 4 KiB walk's visitor: the units before the page first. */
static enum ps__hbm_verdict page_visit(void *ctx, uint64_t bit)
{
	struct take_ctx *t = ctx;
	enum ps__hbm_verdict v;

	/* Units collected and not shown yet: those before the page first. */
	if ((t->u1.next < t->u1.n || t->u2.next < t->u2.n) &&
	    !show_units(t, bit + 1))
		return PS__HBM_STOP; /* the page stays, with the rest */
	if (bit < t->covered)
		return PS__HBM_CLEAR; /* L3: taken with the unit shown */
	v = t->fn(t->ctx, bit << PAGE_SHIFT, 0);
	if (v == PS__HBM_STOP)
		t->stop = bit;
	else
		t->shown++;
	return v;
}

/* The 4 KiB walk's visitor without units: nothing collected, nothing shown. */
static enum ps__hbm_verdict page_only_visit(void *ctx, uint64_t bit)
{
	struct take_ctx *t = ctx;
	enum ps__hbm_verdict v = t->fn(t->ctx, bit << PAGE_SHIFT, 0);

	if (v == PS__HBM_STOP)
		t->stop = bit;
	return v;
}

/* First bit of level @order whose unit lies inside from page @pg on. */
static uint64_t unit_ceil(uint64_t pg, unsigned int order)
{
	return (pg + (UINT64_C(1) << order) - 1) >> order;
}

uint64_t ps__space_log_take(struct ps_space *s, uint64_t start, uint64_t len,
			    bool units, ps__space_log_fn fn, void *ctx,
			    uint64_t *resume)
{
	struct take_ctx t = {.s = s, .fn = fn, .ctx = ctx, .stop = UINT64_MAX};
	const uint64_t lo = start >> PAGE_SHIFT,
		       hi = (start + len) >> PAGE_SHIFT;
	uint64_t cur = lo;

	t.covered = lo;
	t.u1.order = ORD_1G;
	t.u2.order = ORD_2M;
	if (!units) {
		/* L2: every unit touching the range, down to pages. */
		expand(s, ORD_1G, lo >> ORD_1G, (hi - 1) >> ORD_1G);
		expand(s, ORD_2M, lo >> ORD_2M, (hi - 1) >> ORD_2M);
		t.shown = ps__hbm_harvest(&s->log, lo, hi - lo, page_only_visit,
					  &t, NULL);
		t.shown -= t.stop != UINT64_MAX; /* the one it stopped at */
	} else {
		/* L2: the units the range covers in part, one level down. */
		for (unsigned int o = ORD_1G; o >= ORD_2M; o -= ORD_2M) {
			const uint64_t m = (UINT64_C(1) << o) - 1;

			if (lo & m)
				expand(s, o, lo >> o, lo >> o);
			if (hi & m)
				expand(s, o, (hi - 1) >> o, (hi - 1) >> o);
		}
	}
	while (units && cur < hi && t.stop == UINT64_MAX) {
		uint64_t e1, e2;

		e1 = collect(s, &t.u1, unit_ceil(cur, ORD_1G), hi >> ORD_1G,
			     hi);
		e2 = collect(s, &t.u2, unit_ceil(cur, ORD_2M), e1 >> ORD_2M,
			     e1);
		(void)ps__hbm_harvest(&s->log, cur, e2 - cur, page_visit, &t,
				      NULL);
		if (t.stop == UINT64_MAX)
			(void)show_units(&t, e2);
		put_back(&t, &t.u1); /* L4, and 1 GiB marks past e2 */
		put_back(&t, &t.u2);
		cur = e2;
	}
	*resume = (t.stop == UINT64_MAX ? hi : t.stop) << PAGE_SHIFT;
	return t.shown;
}
