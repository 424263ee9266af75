/* SPDX-License-Identifier: MIT */
/*
 * fuzz/pgtable-model.h - a plain, single-threaded reference model of
 * pagestate/pgtable.h, shared by fuzz-pgtable.c and fuzz-scan.c.
 *
 * Written from the header's text (transition table, fault table, scan
 * semantics, error list), not from lib/pgtable.c: where the two disagree,
 * the fuzzer aborts and a human decides which one is wrong.
 *
 * The model covers NPAGES_M pages: a window of WIN_PAGES pages that straddles
 * the leaf boundary at page 512 (and eight written-hint lines), plus the last
 * page of the address space (EDGE). Every other page is none and unregistered,
 * always: operations whose valid range would change one of them are not
 * generated, the others (zap, protect, unregister, copy, trim, scans over the
 * whole space) are modelled exactly, since their effect on such pages is known.
 *
 * Per page the model holds the entry and the registration (0, or MREG |
 * PS_WP_* with PS_WP_ASYNC already implying PS_WP_UNPOPULATED, as the
 * header says).
 */
#ifndef PS_FUZZ_PGTABLE_MODEL_H
#define PS_FUZZ_PGTABLE_MODEL_H

#include <pagestate/pgtable.h>

#include "fuzz-check.h"
#include "fuzz-input.h"
#include "fuzz-leaks.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PG PS_PGTABLE_PAGE_SIZE
#define SPACE_END PS_PGTABLE_ADDR_END
#define WIN_FIRST 480u /* leaf 0 ends at page 512 */
#define WIN_PAGES 64u
#define EDGE WIN_PAGES /* model index of the last page of the space */
#define NPAGES_M (WIN_PAGES + 1)
#define WIN_START ((uint64_t)WIN_FIRST * PG)
#define WIN_END (WIN_START + (uint64_t)WIN_PAGES * PG)
#define EDGE_ADDR (SPACE_END - PG)
#define MREG 0x80u

/* Where we are, and the abort: fz_at, fz_op, CHECK, CHECK_EQ: fuzz-check.h */

/* --- the input ------------------------------------------------------------ */

/* struct in, u8(), raw64(): fuzz-input.h */

/* --- pages ---------------------------------------------------------------- */

static uint64_t maddr(unsigned int i)
{
	return i < WIN_PAGES ? WIN_START + (uint64_t)i * PG : EDGE_ADDR;
}

/* The model index of the page holding @addr, or -1 if not modelled. */
static int mindex(uint64_t addr)
{
	if (addr >= WIN_START && addr < WIN_END)
		return (int)((addr - WIN_START) / PG);
	if (addr >= EDGE_ADDR && addr < SPACE_END)
		return EDGE;
	return -1;
}

/* Is every page of [start, end) modelled? */
static bool covered(uint64_t start, uint64_t end)
{
	return (start >= WIN_START && end <= WIN_END) ||
	       (start >= EDGE_ADDR && end <= SPACE_END);
}

/* The header's argument rules, as its error list words them. */
static bool m_bad_addr(uint64_t addr)
{
	return (addr % PG) != 0 || addr >= SPACE_END;
}

static bool m_bad_range(uint64_t start, uint64_t len)
{
	return (start % PG) != 0 || (len % PG) != 0 || len == 0 ||
	       start > SPACE_END || len > SPACE_END - start;
}

/* --- the model ------------------------------------------------------------ */

struct mtable {
	ps_pte_t e[NPAGES_M];
	unsigned int reg[NPAGES_M]; /* 0, or MREG | PS_WP_* */
};

#define FOR_PAGES(i, start, end)                    \
	for (unsigned int i = 0; i < NPAGES_M; i++) \
		if (maddr(i) >= (start) && maddr(i) < (end))

static bool all_registered(const struct mtable *m, uint64_t start, uint64_t end,
			   unsigned int need)
{
	if (!covered(start, end))
		return false;
	FOR_PAGES(i, start, end)
	{
		if (!m->reg[i] || (m->reg[i] & need) != need)
			return false;
	}
	return true;
}

static bool any_registered(const struct mtable *m, uint64_t start, uint64_t end)
{
	FOR_PAGES(i, start, end)
	{
		if (m->reg[i])
			return true;
	}
	return false;
}

static bool any_registered_at_all(const struct mtable *m)
{
	return any_registered(m, 0, SPACE_END);
}

static const ps_pte_t MU = 0x7;	  /* marker, UFFD_WP alone: 1 << 2 | 3 */
static const ps_pte_t MWR = 0x23; /* marker, WRITTEN (alone): 8 << 2 | 3 */

/* "A page uses markers if its range is shared or has PS_WP_UNPOPULATED." */
static bool m_markers(unsigned int r)
{
	return r && (r & (PS_WP_SHARED | PS_WP_UNPOPULATED));
}

/*
 * protect: present +wp -W; swap +wp; none and W: U if markers (else none);
 * marker unchanged.
 */
static ps_pte_t m_protect(ps_pte_t e, unsigned int r)
{
	if (e == PS_PTE_NONE || e == MWR)
		return m_markers(r) ? MU : PS_PTE_NONE;
	if (ps_pte_is_marker(e))
		return e; /* +U if U held (no change); P/G alone */
	if (ps_pte_is_present(e))
		return (e & ~PS_PTE_WRITE) | PS_PTE_UFFD_WP;
	return e | PS_PTE_UFFD_WP;
}

/* unprotect, unregister: -wp; a marker loses U (none if U only). */
static ps_pte_t m_unprotect(ps_pte_t e)
{
	unsigned int bits = ps_pte_marker_bits(e) & ~PS_PTE_MARKER_UFFD_WP;

	if (ps_pte_is_marker(e))
		return bits ? ps_pte_mk_marker(bits) : PS_PTE_NONE;
	return e & ~PS_PTE_UFFD_WP;
}

/*
 * zap: the rows of the table. Async: a written present or swap entry
 * leaves W; W stays (but for UNMAP).
 */
static ps_pte_t m_zap(ps_pte_t e, unsigned int r, bool unmap)
{
	bool shared = r && (r & PS_WP_SHARED);
	bool async = r && (r & PS_WP_ASYNC);
	unsigned int bits = ps_pte_marker_bits(e), keep = 0;

	if (e == PS_PTE_NONE || unmap)
		return PS_PTE_NONE;
	if (e == MWR)
		return MWR;
	if (!ps_pte_is_marker(e)) {
		if (ps_pte_uffd_wp(e))
			return shared ? MU : PS_PTE_NONE;
		return async ? MWR : PS_PTE_NONE;
	}
	if (shared && (bits & PS_PTE_MARKER_UFFD_WP))
		keep |= PS_PTE_MARKER_UFFD_WP;
	keep |= bits & PS_PTE_MARKER_GUARD;
	return keep ? ps_pte_mk_marker(keep) : PS_PTE_NONE;
}

/* copy, move: what the target gets for source entry @e (W always). */
static ps_pte_t m_copy(ps_pte_t e, bool keep_wp)
{
	unsigned int bits = ps_pte_marker_bits(e);

	if (e == MWR)
		return MWR;
	if (ps_pte_is_marker(e)) {
		bits &= PS_PTE_MARKER_POISONED | PS_PTE_MARKER_GUARD |
			(keep_wp ? PS_PTE_MARKER_UFFD_WP : 0);
		return bits ? ps_pte_mk_marker(bits) : PS_PTE_NONE;
	}
	return keep_wp ? e : e & ~PS_PTE_UFFD_WP;
}

/* The fault table, with the stale-protection rule. */
static enum ps_fault m_fault(ps_pte_t e, unsigned int r, unsigned int access,
			     ps_pte_t *after)
{
	unsigned int bits = ps_pte_marker_bits(e);
	bool write = access & PS_ACCESS_WRITE;

	*after = e;
	if (e == PS_PTE_NONE || ps_pte_is_swap(e) || e == MWR)
		return PS_FAULT_MISSING; /* W: a none page */
	if (bits & PS_PTE_MARKER_POISONED)
		return PS_FAULT_POISONED;
	if (bits & PS_PTE_MARKER_GUARD)
		return PS_FAULT_GUARD;
	if (bits) { /* UFFD_WP alone */
		if (!r)
			*after = PS_PTE_NONE; /* stale: cleared lazily */
		return PS_FAULT_MISSING;
	}
	if (!write) {
		*after = e | PS_PTE_ACCESSED;
		return PS_FAULT_OK;
	}
	if (!(e & PS_PTE_MAYWRITE))
		return PS_FAULT_BAD_ACCESS;
	if ((e & PS_PTE_UFFD_WP) && r && !(r & PS_WP_ASYNC) &&
	    !(access & PS_ACCESS_RESOLVE_WP))
		return PS_FAULT_WP;
	*after = (e & ~PS_PTE_UFFD_WP) | PS_PTE_WRITE | PS_PTE_DIRTY |
		 PS_PTE_ACCESSED;
	return PS_FAULT_OK;
}

/*
 * Scan categories, from the header's definitions: W is reported as the
 * kernel's none PTE (WRITTEN, not SWAPPED), a marker all the same.
 */
static uint64_t m_categories(ps_pte_t e, unsigned int r)
{
	unsigned int bits = ps_pte_marker_bits(e);
	uint64_t c = r && (r & PS_WP_ASYNC) ? PS_CAT_WPALLOWED : 0;

	if (e == PS_PTE_NONE)
		return c;
	if (e == MWR)
		return c | PS_CAT_WRITTEN | PS_CAT_MARKER;
	if (ps_pte_is_present(e))
		c |= PS_CAT_PRESENT |
		     (r && (r & PS_WP_SHARED) ? PS_CAT_FILE : 0);
	else
		c |= PS_CAT_SWAPPED;
	if (ps_pte_is_marker(e)) {
		c |= PS_CAT_MARKER;
		if (bits & PS_PTE_MARKER_GUARD)
			c |= PS_CAT_GUARD;
		if (bits & PS_PTE_MARKER_POISONED)
			c |= PS_CAT_POISONED;
	}
	return c | (ps_pte_uffd_wp(e) ? PS_CAT_WP : PS_CAT_WRITTEN);
}

/* --- comparing the table with the model ----------------------------------- */

static void compare_table(const struct ps_pgtable *t, const struct mtable *m)
{
	unsigned int flags = 0x5a5a;

	ps_pgtable_read_lock();
	for (unsigned int i = 0; i < NPAGES_M; i++) {
		ps_pte_t got;

		CHECK_EQ(ps_pgtable_get(t, maddr(i), &got), 0);
		if (got != m->e[i])
			fprintf(stderr, "page %u (%#llx)\n", i,
				(unsigned long long)maddr(i));
		CHECK_EQ(got, m->e[i]);
		CHECK(ps_pte_valid(got));
		/* The lookup of any byte of the page. */
		CHECK_EQ(ps_pgtable_lookup(t, maddr(i) + (i * 97) % PG), got);
		/* The registration, as registered (ASYNC with UNPOPULATED). */
		flags = 0x5a5a;
		if (m->reg[i]) {
			CHECK_EQ(ps_pgtable_registration(t, maddr(i), &flags),
				 0);
			CHECK_EQ(flags, m->reg[i] & ~MREG);
		} else {
			CHECK_EQ(ps_pgtable_registration(t, maddr(i), &flags),
				 -ENOENT);
			CHECK_EQ(flags, 0x5a5a); /* untouched */
		}
	}
	/* Pages not modelled are not registered; bad addresses refused. */
	flags = 0x5a5a;
	CHECK_EQ(ps_pgtable_registration(t, WIN_START - PG, &flags), -ENOENT);
	CHECK_EQ(ps_pgtable_registration(t, WIN_END, &flags), -ENOENT);
	CHECK_EQ(ps_pgtable_registration(t, WIN_START + 8, &flags), -EINVAL);
	CHECK_EQ(ps_pgtable_registration(t, SPACE_END, &flags), -EINVAL);
	CHECK_EQ(flags, 0x5a5a);
	/* Neighbours of the model stay none. */
	CHECK_EQ(ps_pgtable_lookup(t, WIN_START - PG), 0);
	CHECK_EQ(ps_pgtable_lookup(t, WIN_END), 0);
	CHECK_EQ(ps_pgtable_lookup(t, EDGE_ADDR - PG), 0);
	CHECK_EQ(ps_pgtable_lookup(t, SPACE_END), 0);
	CHECK_EQ(ps_pgtable_lookup(t, UINT64_MAX), 0);
	ps_pgtable_read_unlock();
}

/* --- the scan, by brute force --------------------------------------------- */

#define VEC_MAX 80u

struct mscan {
	const struct ps_pgtable_scan *a;
	uint64_t max, taken, walk_end;
	unsigned int nr;
	bool record, stopped;
	bool all; /* every page matches (WP_MATCHING without a vector) */
	struct ps_pgtable_region v[VEC_MAX];
};

static bool m_scan_matches(const struct ps_pgtable_scan *a, uint64_t c)
{
	c ^= a->category_inverted;
	return (c & a->category_mask) == a->category_mask &&
	       (!a->category_anyof_mask || (c & a->category_anyof_mask));
}

/*
 * Offer @n pages at @addr, all of categories @c, to the scan. Returns how
 * many it took; fewer than @n of matching pages stops the walk there.
 */
static uint64_t ms_offer(struct mscan *s, uint64_t addr, uint64_t n, uint64_t c)
{
	const struct ps_pgtable_scan *a = s->a;
	uint64_t k = n, rc = c & a->return_mask;

	if (!s->all && !m_scan_matches(a, c))
		return n;
	if (k > s->max - s->taken)
		k = s->max - s->taken;
	if (k && s->record) {
		struct ps_pgtable_region *last = s->nr ? &s->v[s->nr - 1]
						       : NULL;

		if (last && last->end == addr && last->categories == rc)
			last->end += k * PG;
		else if (s->nr == a->vec_len)
			k = 0;
		else
			s->v[s->nr++] = (struct ps_pgtable_region){
				addr, addr + k * PG, rc};
	}
	s->taken += k;
	if (k < n) {
		s->stopped = true;
		s->walk_end = addr + k * PG;
	}
	return k;
}

/*
 * The scan of @a on model @m: its return value, and on success the regions
 * in s->v, walk_end, and @m re-protected where a WP_MATCHING scan took
 * pages. Error precedence between -ENOENT and -EPERM is not documented:
 * *alt receives the other acceptable code (or the same).
 *
 * Linux's rules (pgtable.h, "Scans"): an unaligned end is rounded up to a page;
 * without a vector (vec_len 0) nothing is counted, so there is no budget, and a
 * WP_MATCHING scan takes (re-protects) every page whatever the masks.
 */
static long m_scan(struct mtable *m, const struct ps_pgtable_scan *a,
		   struct mscan *s, long *alt)
{
	bool wp = a->flags & PS_SCAN_WP_MATCHING;
	bool enoent, eperm;
	uint64_t p, end;

	memset(s, 0, sizeof(*s));
	s->a = a;
	*alt = 0;
	if ((a->start % PG) || a->start > a->end || a->end > SPACE_END ||
	    (a->flags &
	     ~(uint64_t)(PS_SCAN_WP_MATCHING | PS_SCAN_CHECK_WPASYNC)) ||
	    ((a->category_inverted | a->category_mask | a->category_anyof_mask |
	      a->return_mask) &
	     ~PS_CAT_ALL) ||
	    (!a->vec && a->vec_len))
		return *alt = -EINVAL;
	end = (a->end + PG - 1) / PG * PG;
	if (a->start == end) {
		s->walk_end = end;
		return 0;
	}
	enoent = wp && !all_registered(m, a->start, end, 0);
	eperm = (a->flags & PS_SCAN_CHECK_WPASYNC) &&
		!all_registered(m, a->start, end, PS_WP_ASYNC);
	if (enoent || eperm) {
		*alt = eperm ? -EPERM : -ENOENT;
		return enoent ? -ENOENT : -EPERM;
	}
	s->max = a->max_pages && a->vec_len ? a->max_pages : UINT64_MAX;
	s->record = a->vec_len && a->return_mask;
	s->all = wp && !a->vec_len;
	CHECK(a->vec_len <= VEC_MAX || !s->record);
	for (p = a->start; p < end && !s->stopped;) {
		int i = mindex(p);

		if (i >= 0) {
			if (ms_offer(s, p, 1,
				     m_categories(m->e[i], m->reg[i])) &&
			    wp &&
			    (s->all ||
			     m_scan_matches(a,
					    m_categories(m->e[i], m->reg[i]))))
				m->e[i] = m_protect(m->e[i], m->reg[i]);
			p += PG;
		} else {
			/* Pages not modelled: none, unregistered, up to the
			 * next modelled page. */
			uint64_t run_end = p < WIN_START ? WIN_START
							 : EDGE_ADDR;

			if (run_end > end)
				run_end = end;
			CHECK(!wp);
			(void)ms_offer(s, p, (run_end - p) / PG, 0);
			p = run_end;
		}
	}
	if (!s->stopped)
		s->walk_end = end;
	*alt = s->record ? (long)s->nr : 0;
	return *alt;
}

/*
 * Run @a on @t and on @m and compare: return value, regions, walk_end,
 * nothing written past the regions, the entries afterwards.
 */
static void check_scan(struct ps_pgtable *t, struct mtable *m,
		       struct ps_pgtable_scan *a)
{
	static struct ps_pgtable_region vec[VEC_MAX + 1];
	static struct mscan s;
	const struct ps_pgtable_region poison = {0x5a5a5a5a5a5a5a5aull,
						 0xa5a5a5a5a5a5a5a5ull,
						 0x1234567812345678ull};
	struct ps_pgtable_scan before = *a;
	long rc, want, alt;

	for (unsigned int i = 0; i <= VEC_MAX; i++)
		vec[i] = poison;
	if (a->vec)
		a->vec = vec;
	before.vec = a->vec;
	a->walk_end = 0x77777777; /* set on success, whatever it was */
	want = m_scan(m, &before, &s, &alt);
	rc = ps_pgtable_scan(t, a);
	if (rc != want && rc != alt)
		fprintf(stderr,
			"scan [%#llx, %#llx) flags %#llx inv %#llx "
			"mask %#llx any %#llx ret %#llx max %llu "
			"vec_len %llu: %ld, want %ld\n",
			(unsigned long long)before.start,
			(unsigned long long)before.end,
			(unsigned long long)before.flags,
			(unsigned long long)before.category_inverted,
			(unsigned long long)before.category_mask,
			(unsigned long long)before.category_anyof_mask,
			(unsigned long long)before.return_mask,
			(unsigned long long)before.max_pages,
			(unsigned long long)before.vec_len, rc, want);
	CHECK(rc == want || rc == alt);
	/* The arguments are read, not changed (walk_end aside). */
	CHECK(a->start == before.start && a->end == before.end &&
	      a->flags == before.flags && a->max_pages == before.max_pages &&
	      a->category_mask == before.category_mask &&
	      a->category_inverted == before.category_inverted &&
	      a->category_anyof_mask == before.category_anyof_mask &&
	      a->return_mask == before.return_mask && a->vec == before.vec &&
	      a->vec_len == before.vec_len);
	if (rc < 0) {
		for (unsigned int i = 0; i <= VEC_MAX; i++)
			CHECK(!memcmp(&vec[i], &poison, sizeof(poison)));
		return;
	}
	CHECK_EQ(a->walk_end, s.walk_end);
	for (unsigned int i = 0; i < (unsigned int)rc; i++) {
		if (vec[i].start != s.v[i].start || vec[i].end != s.v[i].end ||
		    vec[i].categories != s.v[i].categories)
			fprintf(stderr,
				"region %u: got [%#llx, %#llx) %#llx, want "
				"[%#llx, %#llx) %#llx\n",
				i, (unsigned long long)vec[i].start,
				(unsigned long long)vec[i].end,
				(unsigned long long)vec[i].categories,
				(unsigned long long)s.v[i].start,
				(unsigned long long)s.v[i].end,
				(unsigned long long)s.v[i].categories);
		CHECK(vec[i].start == s.v[i].start);
		CHECK(vec[i].end == s.v[i].end);
		CHECK(vec[i].categories == s.v[i].categories);
	}
	for (unsigned int i = (unsigned int)rc; i <= VEC_MAX; i++)
		CHECK(!memcmp(&vec[i], &poison, sizeof(poison)));
}

/* --- generators ----------------------------------------------------------- */

/* An entry: mostly valid, of every form; sometimes any 64 bits. */
static ps_pte_t gen_entry(struct in *in)
{
	uint8_t sel = u8(in);
	uint64_t x;

	switch (sel % 8) {
	case 0:
		return PS_PTE_NONE;
	case 1:
	case 2: /* present, any flags (the constructor keeps it valid) */
		x = u8(in);
		x |= (uint64_t)u8(in) << 8;
		return ps_pte_mk_present(1 + (sel >> 3),
					 x & PS_PTE_PRESENT_FLAGS);
	case 3:
		x = u8(in);
		return ps_pte_mk_swap((unsigned int)(x % 32), sel >> 3,
				      (x & 0x20 ? PS_PTE_UFFD_WP : 0) |
					      (x & 0x40 ? PS_PTE_SWP_EXCLUSIVE
							: 0));
	case 4: /* every set of U, P, G, and WRITTEN */
		return ps_pte_mk_marker(1 + (sel >> 3) % 8);
	case 5:
		return MU;
	case 6:
		return raw64(in);
	default: /* the frame at the limit */
		return ps_pte_mk_present(PS_PTE_FRAME_MAX,
					 (uint64_t)(sel >> 3) << 2 &
						 PS_PTE_PRESENT_FLAGS);
	}
}

/* One page address: a modelled page, or an invalid address. */
static uint64_t gen_addr(struct in *in)
{
	static const uint64_t bad[] = {
		WIN_START + 1,	   WIN_START + PG - 1, SPACE_END,
		SPACE_END + PG,	   UINT64_MAX,	       UINT64_MAX & ~(PG - 1),
		UINT64_C(1) << 63, EDGE_ADDR + 8,
	};
	uint8_t sel = u8(in);

	if (sel < 0xe0)
		return maddr(sel % NPAGES_M);
	return bad[sel % (sizeof(bad) / sizeof(bad[0]))];
}

struct range {
	uint64_t start, len;
};

/*
 * A range: inside the window (most), the edge page, a valid range that
 * also covers pages not modelled (only for operations that cannot change
 * them), or an invalid one.
 */
static struct range gen_range(struct in *in, bool wide_ok)
{
	static const struct range wide[] = {
		{0, SPACE_END},
		{0, WIN_END},
		{WIN_START, SPACE_END - WIN_START},
		{WIN_START - PG, 2 * PG},
		{WIN_END - PG, 2 * PG},
		{WIN_START, 512 * PG},
		{EDGE_ADDR - PG, 2 * PG},
	};
	static const struct range bad[] = {
		{WIN_START, 0},
		{WIN_START + 1, PG},
		{WIN_START, PG + 1},
		{WIN_START, 1},
		{SPACE_END, PG},
		{EDGE_ADDR, 2 * PG},
		{UINT64_MAX & ~(PG - 1), PG},
		{WIN_START, UINT64_MAX & ~(PG - 1)},
		{WIN_START, SPACE_END},
		{0, SPACE_END + PG},
		{SPACE_END + PG, 0 - (SPACE_END + PG) + PG},
	};
	uint8_t sel = u8(in);
	unsigned int first, n;

	if (sel < 0xd0) {
		first = sel % WIN_PAGES;
		n = 1 + u8(in) % (WIN_PAGES - first);
		return (struct range){maddr(first), (uint64_t)n * PG};
	}
	if (sel < 0xd8)
		return (struct range){EDGE_ADDR, PG};
	if (sel < 0xe8 && wide_ok)
		return wide[sel % (sizeof(wide) / sizeof(wide[0]))];
	return bad[sel % (sizeof(bad) / sizeof(bad[0]))];
}

#endif /* PS_FUZZ_PGTABLE_MODEL_H */
