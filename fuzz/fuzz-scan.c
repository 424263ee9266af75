// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-scan.c - ps_pgtable_scan() argument validation and results against
 * a brute-force computation over the reference model (fuzz/pgtable-model.h).
 *
 * The input is a program over one table: a few operations build a state
 * (registrations with every flag combination, entries of every form, maps,
 * async and sync write faults that make pages written, protect, unprotect and
 * zaps, which leave WRITTEN markers of written async pages), and scans take
 * arbitrary struct ps_pgtable_scan arguments: aligned or not, inverted ranges,
 * ranges past the space, unknown flags and category bits, any masks (inverted,
 * all-of, any-of, return), vec NULL or not with any vec_len, any max_pages. A
 * resume operation repeats a scan from walk_end until the walk completes, as a
 * caller with a small vec or budget does.
 *
 * Every scan is checked against the model: the error the header's rules
 * give (or success), the regions (categories, merging of adjacent equal
 * regions, the budget, a full vec), walk_end, nothing written past the regions
 * (nor anything on error), and the entries afterwards, so a PS_SCAN_WP_MATCHING
 * scan must re-protect exactly the pages it took and nothing else. As in Linux,
 * an unaligned end is rounded up, and a scan without a vector counts nothing
 * (no budget) and, with WP_MATCHING, protects every page of its range whatever
 * the masks. Queries that require WRITTEN read only the leaves' hinted lines,
 * so every path that makes a page written is checked to hint it.
 */
#include "pgtable-model.h"

static struct ps_pgtable *tab;
static struct mtable model;

/* --- building the state --------------------------------------------------- */

static void op_register(struct in *in)
{
	struct range r = gen_range(in, false);
	unsigned int flags = u8(in) & PS_WP_ALL;
	int rc = ps_pgtable_register(tab, r.start, r.len, flags);

	if (m_bad_range(r.start, r.len) ||
	    (flags & (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE)) ==
		    (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE)) {
		CHECK_EQ(rc, -EINVAL); /* at most one huge granularity */
		return;
	}
	if (any_registered(&model, r.start, r.start + r.len)) {
		CHECK_EQ(rc, -EBUSY);
		return;
	}
	CHECK_EQ(rc, 0);
	if (flags & PS_WP_ASYNC)
		flags |= PS_WP_UNPOPULATED;
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		model.reg[i] = MREG | flags;
	}
}

static void op_set(struct in *in)
{
	unsigned int i = u8(in) % NPAGES_M;
	ps_pte_t e = gen_entry(in);

	if (!ps_pte_valid(e))
		e = PS_PTE_NONE;
	CHECK_EQ(ps_pgtable_set(tab, maddr(i), e, NULL), 0);
	model.e[i] = e;
}

static void op_fault(struct in *in)
{
	unsigned int i = u8(in) % NPAGES_M;
	unsigned int access = 1 + u8(in) % 7; /* READ and/or WRITE, RESOLVE */
	ps_pte_t after;
	enum ps_fault want;

	if (!(access & (PS_ACCESS_READ | PS_ACCESS_WRITE)))
		access |= PS_ACCESS_WRITE;
	want = m_fault(model.e[i], model.reg[i], access, &after);
	CHECK_EQ(ps_pgtable_fault(tab, maddr(i), access), want);
	model.e[i] = after;
}

/*
 * Protect, unprotect, or (how & 6 == 6) zap, with PS_ZAP_UNMAP for how & 8:
 * a zap leaves a written async page as a WRITTEN marker, which scans of
 * hinted lines must find where the page was.
 */
static void op_wp(struct in *in)
{
	uint8_t how = u8(in);
	struct range r = gen_range(in, true);
	bool zap = (how & 6) == 6;
	int rc;

	if (zap)
		rc = ps_pgtable_zap(tab, r.start, r.len,
				    how & 8 ? PS_ZAP_UNMAP : 0, NULL, NULL);
	else if (how & 1)
		rc = ps_pgtable_unprotect(tab, r.start, r.len);
	else
		rc = ps_pgtable_protect(tab, r.start, r.len);

	if (m_bad_range(r.start, r.len)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (zap) {
		CHECK_EQ(rc, 0);
		FOR_PAGES(i, r.start, r.start + r.len)
		{
			model.e[i] = m_zap(model.e[i], model.reg[i], how & 8);
		}
		return;
	}
	if (!all_registered(&model, r.start, r.start + r.len, 0)) {
		CHECK_EQ(rc, -ENOENT);
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		model.e[i] = how & 1 ? m_unprotect(model.e[i])
				     : m_protect(model.e[i], model.reg[i]);
	}
}

/* Map the window's none pages (writable; some protected where allowed). */
static void op_fill(struct in *in)
{
	uint8_t how = u8(in);

	for (unsigned int i = 0; i < NPAGES_M; i++) {
		uint64_t flags = PS_PTE_WRITE | (how & 2 ? PS_PTE_DIRTY : 0);

		if (model.e[i] != PS_PTE_NONE || ((i ^ how) & 4))
			continue;
		if ((how & 1) && model.reg[i])
			flags |= PS_PTE_UFFD_WP;
		CHECK_EQ(ps_pgtable_map(tab, maddr(i), PG, 100 + i, flags), 0);
		model.e[i] = ps_pte_mk_present(100 + i, flags);
	}
}

/* --- scan arguments ------------------------------------------------------- */

static uint64_t gen_scan_addr(struct in *in)
{
	uint8_t sel = u8(in);

	switch (sel >> 5) {
	case 0:
	case 1:
	case 2: /* a page of the window, or its end */
		return WIN_START + (uint64_t)(sel % (WIN_PAGES + 1)) * PG;
	case 3:
		return (const uint64_t[]){0,
					  EDGE_ADDR,
					  SPACE_END,
					  WIN_START - PG,
					  WIN_END + PG,
					  SPACE_END + PG,
					  512 * PG,
					  UINT64_MAX & ~(PG - 1)}[sel & 7];
	case 4: /* unaligned */
		return WIN_START + (uint64_t)(sel & 31) * PG + 1 +
		       (sel & 7) * 511;
	case 5:
		return raw64(in);
	default:
		return WIN_START + (uint64_t)(sel & 31) * 2 * PG;
	}
}

static const uint64_t cats[] = {
	PS_CAT_WPALLOWED, PS_CAT_WRITTEN, PS_CAT_FILE,	 PS_CAT_PRESENT,
	PS_CAT_SWAPPED,	  PS_CAT_PFNZERO, PS_CAT_HUGE,	 PS_CAT_SOFT_DIRTY,
	PS_CAT_GUARD,	  PS_CAT_WP,	  PS_CAT_MARKER, PS_CAT_POISONED,
};
#define NCATS (sizeof(cats) / sizeof(cats[0]))

static uint64_t gen_mask(struct in *in)
{
	uint8_t sel = u8(in);

	switch (sel & 7) {
	case 0:
	case 1:
		return 0;
	case 2:
	case 3:
		return cats[(sel >> 3) % NCATS];
	case 4:
		return cats[(sel >> 3) % NCATS] | cats[u8(in) % NCATS];
	case 5:
		return ((uint64_t)u8(in) | (uint64_t)u8(in) << 8 |
			(uint64_t)u8(in) << 16) &
		       PS_CAT_ALL;
	case 6:
		return PS_CAT_ALL;
	default: /* unknown bits, most likely */
		return sel & 0x80 ? raw64(in) : UINT64_C(1) << (sel >> 3);
	}
}

/* Inverted, all-of, any-of, return: the queries callers make. The ones
 * that require WRITTEN read only hinted lines. */
static const uint64_t queries[][4] = {
	{0, PS_CAT_WRITTEN, 0, PS_CAT_WRITTEN}, /* harvest */
	{0, 0, PS_CAT_WRITTEN, PS_CAT_ALL},
	{0, PS_CAT_WRITTEN | PS_CAT_PRESENT, 0, PS_CAT_ALL},
	{0, PS_CAT_WRITTEN, PS_CAT_PRESENT | PS_CAT_SWAPPED,
	 PS_CAT_WRITTEN | PS_CAT_FILE},
	{PS_CAT_WP, PS_CAT_WP, 0, PS_CAT_ALL}, /* not protected */
	{0, PS_CAT_WPALLOWED, 0, PS_CAT_WPALLOWED | PS_CAT_WRITTEN},
	{0, 0, PS_CAT_MARKER | PS_CAT_SWAPPED, PS_CAT_ALL},
	{PS_CAT_WRITTEN, PS_CAT_WRITTEN, 0, PS_CAT_WP | PS_CAT_MARKER},
	{0, 0, 0, PS_CAT_ALL}, /* everything */
	{0, 0, 0, PS_CAT_PRESENT},
};
#define NQUERIES (sizeof(queries) / sizeof(queries[0]))

static void gen_scan(struct in *in, struct ps_pgtable_scan *a)
{
	static struct ps_pgtable_region vec_token;
	uint8_t sel = u8(in);

	memset(a, 0, sizeof(*a));
	a->start = gen_scan_addr(in);
	a->end = gen_scan_addr(in);
	if ((sel & 1) && a->start > a->end) {
		uint64_t x = a->start;

		a->start = a->end;
		a->end = x;
	}
	a->flags = (sel >> 1) & 3;
	if ((sel & 0x18) == 0x18)
		a->flags |= UINT64_C(1) << (u8(in) % 64);
	if ((sel & 0x18) == 0x10) { /* a query callers make */
		const uint64_t *q = queries[u8(in) % NQUERIES];

		a->category_inverted = q[0];
		a->category_mask = q[1];
		a->category_anyof_mask = q[2];
		a->return_mask = q[3];
	} else {
		a->category_inverted = gen_mask(in);
		a->category_mask = gen_mask(in);
		a->category_anyof_mask = gen_mask(in);
		a->return_mask = gen_mask(in);
	}
	switch ((sel >> 5) & 3) {
	case 0:
		a->max_pages = 0;
		break;
	case 1:
		a->max_pages = 1 + u8(in) % 8;
		break;
	case 2:
		a->max_pages = u8(in);
		break;
	default:
		a->max_pages = u8(in) & 1 ? UINT64_MAX : raw64(in);
		break;
	}
	/* vec: a buffer (check_scan() substitutes its own) or NULL. */
	sel = u8(in);
	if (sel & 0x80) {
		a->vec = NULL;
		a->vec_len = sel & 0x40 ? raw64(in) : (sel & 1);
	} else {
		a->vec = &vec_token;
		a->vec_len = sel & 0x40 ? VEC_MAX : sel % 9;
	}
}

static void op_scan(struct in *in)
{
	struct ps_pgtable_scan a;

	gen_scan(in, &a);
	check_scan(tab, &model, &a);
}

/* A scan resumed from walk_end until it completes. */
static void op_resume(struct in *in)
{
	struct ps_pgtable_scan a;
	uint64_t end;

	gen_scan(in, &a);
	end = a.end;
	for (int round = 0; round < 2 * (int)NPAGES_M + 4; round++) {
		check_scan(tab, &model, &a);
		if (a.walk_end >= end || a.walk_end == 0x77777777 ||
		    a.walk_end <= a.start)
			break; /* done (an unaligned end rounds up), failed,
				* or no progress possible */
		a.start = a.walk_end;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};

	if (!tab)
		tab = ps_pgtable_create();
	CHECK(tab);
	memset(&model, 0, sizeof(model));
	while (in.at < in.n) {
		fz_at = in.at;
		fz_op = u8(&in) % 10;
		switch (fz_op) {
		case 0:
			op_register(&in);
			break;
		case 1:
			op_set(&in);
			break;
		case 2:
			op_fault(&in);
			break;
		case 3:
			op_wp(&in);
			break;
		case 4:
			op_fill(&in);
			break;
		case 5:
			op_resume(&in);
			break;
		default:
			op_scan(&in);
			break;
		}
		compare_table(tab, &model);
	}
	/* Leave the table empty, unregistered and trimmed for the next input:
	 * as good as new (fresh leaves, fresh hints), without destroy's wait
	 * for deferred frees, which costs milliseconds per input. */
	fz_op = 10;
	CHECK_EQ(ps_pgtable_unregister(tab, 0, SPACE_END),
		 any_registered_at_all(&model) ? 0 : -ENOENT);
	CHECK_EQ(ps_pgtable_zap(tab, 0, SPACE_END, PS_ZAP_UNMAP, NULL, NULL),
		 0);
	CHECK_EQ(ps_pgtable_trim(tab, 0, SPACE_END), 0);
	return 0;
}
