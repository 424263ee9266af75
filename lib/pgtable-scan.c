// SPDX-License-Identifier: MIT
/*
 * lib/pgtable-scan.c - the page table's scans (pagestate/pgtable.h):
 * ps_pgtable_scan(), Linux's PAGEMAP_SCAN, and ps_pgtable_harvest(), the
 * get-and-rearm scan for written pages run to the end of its range.
 *
 * The table's structure, its entry update and its registrations are those
 * of lib/pgtable.c, shared through lib/pgtable-internal.h, and so are its
 * rules G1..G9; the two that concern scans are stated here.
 *
 * ---------------------------------------------------------------------------
 * How a scan walks
 * ---------------------------------------------------------------------------
 *
 * The arguments are checked, then fixed up as Linux fixes them up
 * (scan_fixup(): the end rounded up to a page; without a vector, no budget
 * and, for WP_MATCHING, no masks), and the walk runs on that copy.
 *
 * A report-only scan is a reader: it walks inside its own read-side section,
 * like a lookup. A WP_MATCHING scan re-protects what it reports, so it is a
 * range writer (G5): it takes t->lock, then enters the section (always in this
 * order: unregister holds t->lock while it waits for readers), and checks first
 * that its whole range is registered (-ENOENT otherwise, nothing changed).
 * ps_pgtable_harvest() runs WP_MATCHING scans of WRITTEN batch after batch and
 * hands each batch's runs to its callback between two scans, outside both.
 *
 * The range is cut into segments of equal registration. An entry's
 * categories depend only on its low five bits and its registration, so
 * each segment tabulates, per key (those five bits), the categories
 * reported and whether the key matches (scan_prepare()); the walk then
 * costs one table lookup per entry. Leaves are visited in address order,
 * the next few found ahead of time (a ring, for memory-level parallelism);
 * a range without leaves is a run of none pages, taken whole if none
 * matches (scan_hole()). Within a leaf, a query that only written pages can
 * match reads only hinted lines (scan_lines()), unless every line is
 * hinted; otherwise the leaf is read straight through (scan_entries()).
 *
 * Guarantees, with G1..G6 and G9 of lib/pgtable.c:
 *
 * G7  Get-and-rearm loses no write. A fault's write clears uffd-wp with one
 *     CAS; a WP_MATCHING scan reports entry e only after its CAS e ->
 *     protect(e) succeeded. A write between the scanner's read and its CAS
 *     fails that CAS (re-read, report the new value); a write after it
 *     finds the entry protected and makes it written again, for the next
 *     scan. With the hint (G8) the next scan finds it too. A zap of a
 *     written page in an async range is such a change too: the WRITTEN
 *     marker it leaves fails the scanner's CAS on the written entry, which
 *     re-reads, reports the marker and re-arms it; a zap after the CAS finds
 *     the entry protected and leaves none (or a UFFD_WP marker), nothing to
 *     report. A scan that stops early (vec full, budget spent, a leaf it could
 *     not allocate) stops before the first page it did not take, so every page
 *     it re-armed lies before walk_end and, if it records regions, in them.
 * G8  (lib/pgtable.c: every written entry lies in a hinted line, except
 *     while a protect or WP scan processes that line.) The reader's side:
 *     scans whose query requires WRITTEN read only hinted lines. Both scan
 *     paths (a leaf read straight through, or only its hinted lines, each line
 *     once and then its written entries) make every entry load through
 *     entry_load(), after hint_begin(); an entry the line's load saw unwritten
 *     and a racing write made written is the writer's to hint, by the argument
 *     of G8. The stress tcase with one written page per line is the one in
 *     which a hint bit lost this way stays lost (tests/test-pgtable.c).
 */
#include "pgtable-internal.h"

#include <errno.h>
#include <pthread.h>

/*
 * Internal category, never in PS_CAT_ALL (so never asked for by a caller):
 * a page under a 1 GiB leaf, which ps_pgtable_harvest_order() asks for to
 * tell the orders of its runs apart.
 */
#define CAT_HUGE_1G (UINT64_C(1) << 40)

/* As uint64_t: complemented, it must reject the upper half of the flags too. */
#define SCAN_FLAGS ((uint64_t)(PS_SCAN_WP_MATCHING | PS_SCAN_CHECK_WPASYNC))
/*
 * An entry's categories depend only on its bits 0-4 (form, uffd-wp, the
 * combinable marker bits) and its registration, so a scan tabulates them
 * per segment: KEY(e) indexes the table. The WRITTEN marker, whose bit is
 * bit 5, has the key of an empty marker (3), which no other valid entry
 * has (pte.h): key_entry() maps a key back to an entry that has it.
 */
#define NKEYS 32u
#define KEY(e) ((unsigned int)(e) & (NKEYS - 1))
#define KEY_WRITTEN_MARKER ((unsigned int)PS_PTE_TYPE_MARKER)

PS_STATIC_ASSERT(PS_PTE_MARKER_SHIFT + PS_PTE_MARKER_WIDTH == 6 &&
			 PS_PTE_UFFD_WP_SHIFT < 5 &&
			 (PS_PTE_MARKER_ALL << PS_PTE_MARKER_SHIFT) < NKEYS &&
			 (PS_PTE_MARKER_WRITTEN << PS_PTE_MARKER_SHIFT) ==
				 NKEYS,
		 "categories are a function of the entry's low 5 bits");

static ps_pte_t key_entry(unsigned int k)
{
	if (!(k & PS_PTE_TYPE_MASK))
		return PS_PTE_NONE;
	if (k == KEY_WRITTEN_MARKER)
		return ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN);
	return k;
}

struct scan {
	struct ps_pgtable_scan *a;
	struct op op;	      /* op.rf: registration of the current segment */
	uint64_t max;	      /* page budget (UINT64_MAX: none) */
	uint64_t pages;	      /* matching pages taken */
	uint64_t nr;	      /* regions in a->vec; the last one is open */
	uint64_t cur_end;     /* end of the open region */
	uint64_t cur_cat;     /* its categories */
	uint32_t match;	      /* bit k: entries with key k match */
	bool record;	      /* regions are reported (vec_len, return_mask) */
	bool wp;	      /* PS_SCAN_WP_MATCHING */
	bool stopped;	      /* a->walk_end is set */
	unsigned int cur_key; /* a key reported as the open region is */
	uint64_t rcat[NKEYS]; /* reported categories of key k */
	uint32_t same[NKEYS + 1]; /* matching keys reported as key k is;
				   * same[NKEYS] = 0: nothing extends */
};

/*
 * The kernel's pagemap_page_category(), plus the extensions. A WRITTEN
 * marker is reported as the kernel reports the none PTE it stands for:
 * written, not swapped (and a marker, an extension).
 */
static uint64_t page_categories(ps_pte_t e, unsigned int rf)
{
	uint64_t c = (rf & PS_WP_ASYNC) ? PS_CAT_WPALLOWED : 0;
	unsigned int m = ps_pte_marker_bits(e);

	if (e == PS_PTE_NONE)
		return c;
	if (m == PS_PTE_MARKER_WRITTEN)
		return c | PS_CAT_WRITTEN | PS_CAT_MARKER;
	if (ps_pte_is_present(e))
		c |= PS_CAT_PRESENT | ((rf & PS_WP_SHARED) ? PS_CAT_FILE : 0);
	else
		c |= PS_CAT_SWAPPED;
	if (ps_pte_is_marker(e))
		c |= PS_CAT_MARKER |
		     ((m & PS_PTE_MARKER_GUARD) ? PS_CAT_GUARD : 0) |
		     ((m & PS_PTE_MARKER_POISONED) ? PS_CAT_POISONED : 0);
	return c | (ps_pte_uffd_wp(e) ? PS_CAT_WP : PS_CAT_WRITTEN);
}

static bool scan_matches(const struct ps_pgtable_scan *a, uint64_t c)
{
	c ^= a->category_inverted;
	return (c & a->category_mask) == a->category_mask &&
	       (!a->category_anyof_mask || (c & a->category_anyof_mask));
}

/* Can only written pages match? Then hinted lines are enough (G8). */
static bool scan_needs_written(const struct ps_pgtable_scan *a)
{
	if (a->category_inverted & PS_CAT_WRITTEN)
		return false;
	return (a->category_mask & PS_CAT_WRITTEN) ||
	       a->category_anyof_mask == PS_CAT_WRITTEN;
}

/* Tabulate categories and matches for the segment's registration. */
static void scan_prepare(struct scan *s)
{
	s->match = 0;
	for (unsigned int k = 0; k < NKEYS; k++) {
		uint64_t c = page_categories(key_entry(k), s->op.rf);

		s->rcat[k] = c & s->a->return_mask;
		if (scan_matches(s->a, c))
			s->match |= UINT32_C(1) << k;
	}
	for (unsigned int k = 0; k < NKEYS; k++) {
		s->same[k] = 0;
		for (unsigned int j = 0; j < NKEYS; j++)
			if (s->rcat[j] == s->rcat[k])
				s->same[k] |= UINT32_C(1) << j;
		s->same[k] &= s->match;
	}
	/* An open region from the previous segment extends by category. */
	s->same[NKEYS] = 0;
	s->cur_key = NKEYS;
	if (s->nr)
		for (unsigned int k = 0; k < NKEYS; k++)
			if (((s->match >> k) & 1) && s->rcat[k] == s->cur_cat)
				s->cur_key = k;
}

/* Can the page at @addr, reported as @rc, be taken (budget, vec room)? */
static inline bool scan_room(const struct scan *s, uint64_t addr, uint64_t rc)
{
	return s->pages < s->max && (!s->record || s->nr < s->a->vec_len ||
				     (s->cur_end == addr && s->cur_cat == rc));
}

/*
 * Count @n pages at @addr reported as @rc, extending the open region or
 * opening a new one (scan_room() said yes). Returns true if it opened one:
 * the caller then says which key it has.
 */
static inline bool scan_record(struct scan *s, uint64_t addr, uint64_t n,
			       uint64_t rc)
{
	struct ps_pgtable_region *v = s->a->vec;

	s->pages += n;
	if (!s->record)
		return false;
	if (s->nr && s->cur_end == addr && s->cur_cat == rc) {
		s->cur_end += n << PAGE_SHIFT;
		return false;
	}
	if (s->nr)
		v[s->nr - 1].end = s->cur_end;
	v[s->nr++] = (struct ps_pgtable_region){addr, 0, rc};
	s->cur_end = addr + (n << PAGE_SHIFT);
	s->cur_cat = rc;
	return true;
}

/* Take @n pages at @addr with key @k (scan_room() said yes). */
static inline void scan_take(struct scan *s, uint64_t addr, uint64_t n,
			     unsigned int k)
{
	if (scan_record(s, addr, n, s->rcat[k]))
		s->cur_key = k;
}

static void scan_stop(struct scan *s, uint64_t addr)
{
	s->stopped = true;
	s->a->walk_end = addr;
}

/*
 * Take @n pages at @addr under a huge leaf, reported as @rc (scan_room()
 * said yes): scan_take() with categories no key has (PS_CAT_HUGE). The
 * open region's key becomes one reported alike, if any, so that 4 KiB
 * pages reported the same extend it.
 */
static void scan_take_huge(struct scan *s, uint64_t addr, uint64_t n,
			   uint64_t rc)
{
	if (!scan_record(s, addr, n, rc))
		return;
	s->cur_key = NKEYS;
	for (unsigned int k = 0; k < NKEYS; k++)
		if (((s->match >> k) & 1) && s->rcat[k] == rc)
			s->cur_key = k;
}

enum huge_step { HUGE_DONE, HUGE_STOP, HUGE_AGAIN };

/*
 * scan_huge() - pages [lo, hi) under the huge leaf of @h (H2). Every page
 * of it has the leaf's categories and PS_CAT_HUGE. A report-only scan
 * takes what its budget and vector allow. A WP_MATCHING scan re-arms the
 * leaf whole, by one CAS from the value reported (G7), when it covers the
 * leaf and can take all of it; otherwise, in a range tracked whole
 * (PS_WP_HUGE_WHOLE) it stops before the leaf, as Linux backs out of a
 * hugetlb page it cannot protect whole, and elsewhere it splits the leaf
 * and walks again (HUGE_AGAIN, also after a lost CAS).
 */
static enum huge_step scan_huge(struct ps_pgtable *t, struct scan *s,
				struct hit *h, uint64_t lo, uint64_t hi)
{
	const uint64_t xend = h->p0 + (UINT64_C(1) << h->order);
	const ps_pte_t v = (ps_pte_t)h->v;
	uint64_t c = page_categories(v, s->op.rf) | PS_CAT_HUGE |
		     (h->order == PS_PTE_ORDER_1G ? CAT_HUGE_1G : 0);
	const uint64_t rc = c & s->a->return_mask;
	uint64_t n = hi - lo;
	uintptr_t cur = h->v;
	bool nomem = false;
	ps_pte_t nv;

	if (!scan_matches(s->a, c & PS_CAT_ALL))
		return HUGE_DONE;
	if (n > s->max - s->pages)
		n = s->max - s->pages;
	if (n && !scan_room(s, lo << PAGE_SHIFT, rc))
		n = 0;
	if (!s->wp) {
		if (n)
			scan_take_huge(s, lo << PAGE_SHIFT, n, rc);
		if (n == hi - lo)
			return HUGE_DONE;
		scan_stop(s, (lo + n) << PAGE_SHIFT);
		return HUGE_STOP;
	}
	if (lo == h->p0 && hi == xend && n == hi - lo) {
		nv = tr_protect(v, &s->op, lo << PAGE_SHIFT);
		/*
		 * Seq_cst: the re-arm CAS of G7 on the slot; acquire on
		 * failure (walk again and judge the new value).
		 */
		if (nv != v &&
		    !atomic_compare_exchange_strong_explicit(
			    h->slot, (void **)&cur, (void *)(uintptr_t)nv,
			    memory_order_seq_cst, memory_order_acquire))
			return HUGE_AGAIN;
		scan_take_huge(s, lo << PAGE_SHIFT, n, rc);
		return HUGE_DONE;
	}
	if (s->op.rf & PS_WP_HUGE_WHOLE) {
		scan_stop(s, lo << PAGE_SHIFT);
		return HUGE_STOP;
	}
	if (!ps__pgtable_split_slot(t, h->slot, &cur, h->order, &nomem) &&
	    nomem) {
		scan_stop(s, lo << PAGE_SHIFT); /* G7: taken pages precede */
		return HUGE_STOP;
	}
	return HUGE_AGAIN;
}

/*
 * Entries [lo, hi) of leaf @l (first page @p0). A page is reported only
 * after it was re-armed from exactly the value reported (G7). Lines left
 * with a written entry are added to *still. Returns where it stopped: @hi,
 * or the first page it could not take.
 *
 * The common step, a page that extends the open region, runs on local
 * copies of the scan's counters: the atomic loads would otherwise make the
 * compiler keep them in memory, one store-to-load round trip per page.
 */
static PS_ALWAYS_INLINE unsigned int
scan_entries(struct scan *s, struct leaf *l, uint64_t p0, unsigned int lo,
	     unsigned int hi, uint64_t *still)
{
	const uint64_t max = s->max;
	const uint32_t match = s->match;
	const bool wp = s->wp, any = !s->record;
	uint64_t written = 0;
	unsigned int i = lo;

	while (i < hi) { /* once per region started in here */
		uint64_t pages = s->pages, cur_end = s->cur_end;
		/* Keys extending the open region (all matching, unrecorded). */
		const uint32_t ext = any     ? match
				     : s->nr ? s->same[s->cur_key]
					     : 0;
		bool restart = false;

		for (; i < hi && !restart; i++) {
			ps_pte_t e, n;

			if (any || cur_end == (p0 + i) << PAGE_SHIFT) {
				/*
				 * The dense case: a run extending the open
				 * region needs one test per entry (and its
				 * re-arm CAS), the budget only once. Anything
				 * else goes to the general path below.
				 */
				unsigned int j = i, lim = hi;

				if (max - pages < hi - i)
					lim = i + (unsigned int)(max - pages);
				for (; j < lim; j++) {
					e = entry_load(l, j);
					if (!((ext >> KEY(e)) & 1))
						break;
					if (!wp)
						continue;
					n = tr_protect(e, &s->op,
						       (p0 + j) << PAGE_SHIFT);
					if (n != e && !entry_cas(l, j, &e, n))
						break;
					if (ps_pte_written(n))
						written |= UINT64_C(1)
							   << (j /
							       LINE_ENTRIES);
				}
				pages += j - i;
				cur_end += (uint64_t)(j - i) << PAGE_SHIFT;
				i = j;
				if (i == hi)
					break;
			}
			e = entry_load(l, i);
			for (;;) {
				unsigned int k = KEY(e);
				uint64_t addr = (p0 + i) << PAGE_SHIFT;
				bool extend = ((ext >> k) & 1) && pages < max &&
					      (any || cur_end == addr);

				if (!extend) {
					if (!((match >> k) & 1))
						break;
					s->pages = pages;
					s->cur_end = cur_end;
					if (!scan_room(s, addr, s->rcat[k])) {
						scan_stop(s, addr);
						*still |= written;
						return i;
					}
				}
				if (wp) {
					n = tr_protect(e, &s->op, addr);
					if (n != e && !entry_cas(l, i, &e, n))
						continue; /* changed: again */
					e = n;
				}
				if (extend) {
					pages++;
					cur_end += PAGE_SIZE;
				} else {
					scan_take(s, addr, 1, k);
					restart = true; /* reload counters */
				}
				break;
			}
			if (wp && ps_pte_written(e))
				written |= UINT64_C(1) << (i / LINE_ENTRIES);
		}
		if (!restart) {
			s->pages = pages;
			s->cur_end = cur_end;
		}
	}
	*still |= written;
	return hi;
}

/* Prefetch the entry lines of @l whose bits are set in @lines. */
static inline void prefetch_lines(const struct leaf *l, uint64_t lines)
{
	for (; lines; lines &= lines - 1)
		__builtin_prefetch(
			&l->e[__builtin_ctzll(lines) * LINE_ENTRIES]);
}

/* The hint of @l, as a guess for prefetching only. */
static inline uint64_t hint_peek(const struct leaf *l)
{
	/* Relaxed: a prefetch hint; scan_leaf() reads it again properly. */
	return atomic_load_explicit(&l->hint, memory_order_relaxed);
}

/*
 * scan_hit() - the candidate page @i of leaf @l (first page @p0), whose
 * entry was @e when the line filter read it, for a sparse scan. A page that
 * matches is taken (and with WP_MATCHING re-armed from exactly the value
 * reported, G7: a CAS that fails re-judges the fresh value). Returns false
 * when the walk stopped at this page.
 */
static PS_ALWAYS_INLINE bool scan_hit(struct scan *s, struct leaf *l,
				      uint64_t p0, unsigned int i, ps_pte_t e,
				      uint64_t *still)
{
	const uint64_t addr = (p0 + i) << PAGE_SHIFT;

	for (;;) {
		const unsigned int k = KEY(e);
		ps_pte_t n;

		if (!((s->match >> k) & 1))
			break; /* changed since the filter read it */
		if (!scan_room(s, addr, s->rcat[k])) {
			scan_stop(s, addr);
			return false;
		}
		if (s->wp) {
			n = tr_protect(e, &s->op, addr);
			if (n != e && !entry_cas(l, i, &e, n))
				continue; /* changed: judge the new value */
			e = n;
		}
		scan_take(s, addr, 1, k);
		break;
	}
	if (s->wp && ps_pte_written(e))
		*still |= UINT64_C(1) << (i / LINE_ENTRIES);
	return true;
}

/*
 * Bit j of the result: is entry j of a line written? @e holds the low
 * three bits of the line's entries, one per byte (entry j in byte j).
 * Written is "type not none and no uffd-wp" (ps_pte_written()), computed
 * for the eight bytes at once; the multiply gathers the bytes' low bits.
 */
static inline uint32_t line_written(uint64_t e)
{
	const uint64_t lsb = UINT64_C(0x0101010101010101);

	e = (e | e >> (PS_PTE_TYPE_SHIFT + 1)) & ~(e >> PS_PTE_UFFD_WP_SHIFT) &
	    lsb;
	return (uint32_t)((e * UINT64_C(0x0102040810204080)) >> 56);
}

PS_STATIC_ASSERT(PS_PTE_TYPE_SHIFT == 0 && PS_PTE_TYPE_WIDTH == 2 &&
			 PS_PTE_UFFD_WP_SHIFT == 2 && LINE_ENTRIES == 8,
		 "line_written() reads type and uffd-wp from bits 0-2");

/*
 * scan_lines() - entries [lo, hi) of leaf @l, only those in the lines set in
 * @lines, for a query that only written pages can match (hinted lines, G8).
 * Each line is read once and its written entries found without a branch per
 * entry (mostly one, at a random place a branch would mispredict); only those
 * are judged, from the value read. Lines left with a written entry are added to
 * *still. Returns @hi, or the page where the walk stopped.
 */
static unsigned int scan_lines(struct scan *s, struct leaf *l, uint64_t p0,
			       unsigned int lo, unsigned int hi, uint64_t lines,
			       uint64_t *still)
{
	for (; lines; lines &= lines - 1) {
		const unsigned int line = (unsigned int)__builtin_ctzll(lines);
		const unsigned int a0 = line * LINE_ENTRIES;
		uint32_t in = 0xff, wr;
		uint64_t low = 0;

		/* Only the first and the last line may be partial. */
		if (a0 < lo)
			in &= 0xffu << (lo - a0);
		if (a0 + LINE_ENTRIES > hi)
			in &= 0xffu >> (a0 + LINE_ENTRIES - hi);
#pragma GCC unroll 8
		for (unsigned int j = 0; j < LINE_ENTRIES; j++)
			low |= (entry_load(l, a0 + j) & 7) << (8 * j);
		for (wr = line_written(low) & in; wr; wr &= wr - 1) {
			const unsigned int i = a0 +
					       (unsigned int)__builtin_ctz(wr);

			/* Unmatched but written: scan_hit() keeps it hinted. */
			if (!scan_hit(s, l, p0, i, entry_load(l, i), still))
				return i;
		}
	}
	return hi;
}

/* Entries [lo, hi) of leaf @l; false when the walk stopped. */
static bool scan_leaf(struct scan *s, struct leaf *l, uint64_t p0,
		      unsigned int lo, unsigned int hi, bool hinted)
{
	const unsigned int line_lo = lo / LINE_ENTRIES;
	const unsigned int line_hi = (hi + LINE_ENTRIES - 1) / LINE_ENTRIES;
	uint64_t covered = s->wp ? lines_mask((lo + LINE_ENTRIES - 1) /
						      LINE_ENTRIES,
					      hi / LINE_ENTRIES)
				 : 0;
	uint64_t lines = lines_mask(line_lo, line_hi), still = 0, h;
	unsigned int stop;

	if (covered)
		h = hint_begin(l, covered);
	else
		/* Seq_cst: the scanner's hint load (G8). */
		h = hinted ? atomic_load_explicit(&l->hint,
						  memory_order_seq_cst)
			   : lines;
	/*
	 * A leaf with every line hinted is read straight through: the dense
	 * loop takes long runs of written pages at a compare per page, while
	 * scan_lines() pays per written page, and wins wherever runs are
	 * short (report-only, 1 GiB, warm: at 10% random pages written 0.21
	 * ms against 0.72 read straight through, at 30% 0.69 against 1.35,
	 * at 100% 1.0 against 0.15). All lines are hinted from about 50%.
	 * (">=" means "=="; GCC 12 lays out the dense loop 40% slower for
	 * the other spellings tried.)
	 */
	if (!hinted ||
	    __builtin_popcountll(lines & h) >= __builtin_popcountll(lines))
		stop = scan_entries(s, l, p0, lo, hi, &still);
	else
		stop = scan_lines(s, l, p0, lo, hi, lines & h, &still);
	if (covered)
		hint_end(l, covered & (still |
				       lines_mask(stop / LINE_ENTRIES, 64)));
	return stop == hi;
}

/* None pages [p, pend) in no leaf: taken as one run if none matches. */
static void scan_hole(struct scan *s, uint64_t p, uint64_t pend)
{
	uint64_t n = pend - p;

	if (p >= pend || !(s->match & 1))
		return;
	if (n > s->max - s->pages)
		n = s->max - s->pages;
	if (n && !scan_room(s, p << PAGE_SHIFT, s->rcat[0]))
		n = 0;
	if (n)
		scan_take(s, p << PAGE_SHIFT, n, 0);
	if (n < pend - p)
		scan_stop(s, (p + n) << PAGE_SHIFT);
}

/* One segment of equal registration: pages [p, send). */
static int scan_segment(struct ps_pgtable *t, struct scan *s, uint64_t p,
			uint64_t send)
{
	const uint64_t Lend = ((send - 1) >> LEVEL_BITS) + 1;
	bool hinted = scan_needs_written(s->a);
	/* Re-arming matching none pages installs markers: they need leaves. */
	bool alloc = s->wp && (s->match & 1) &&
		     tr_protect(PS_PTE_NONE, &s->op, 0) != PS_PTE_NONE;
	/*
	 * The next AHEAD leaves (or huge leaves), as a ring: memory-level
	 * parallelism for sparse written pages. The hint of the last one is
	 * prefetched as it joins, the hinted lines of one halfway there.
	 */
	enum { AHEAD = 8 };
	struct leaf *ring[AHEAD];
	struct hit ringH[AHEAD];
	uint64_t ringL[AHEAD], findL, L;
	unsigned int head;

again:
	findL = p >> LEVEL_BITS;
	head = 0;
	for (unsigned int k = 0; k < AHEAD; k++) {
		hit_clear(&ringH[k]);
		ring[k] = alloc || (k && !ring[k - 1] && !ringH[k - 1].v)
				  ? NULL
				  : leaf_find(t, &findL, Lend, &ringH[k]);
		ringL[k] = findL;
		if (ringH[k].v) /* the next search starts past it */
			findL = (ringH[k].p0 +
				 (UINT64_C(1) << ringH[k].order)) >>
				LEVEL_BITS;
		else
			findL++;
		if (ring[k])
			__builtin_prefetch(&ring[k]->hint);
	}
	while (p < send && !s->stopped) {
		uint64_t lend;
		struct leaf *l;
		struct hit h;

		if (alloc) {
			L = p >> LEVEL_BITS;
			l = leaf_lookup(t, L, &h);
			if (!h.v)
				l = ps__pgtable_leaf_alloc(t, L);
			/*
			 * Pages, not regions: a scan that records nothing
			 * (vec_len or return_mask 0) re-arms all the same.
			 */
			if (!l && !h.v && !s->pages)
				return -ENOMEM; /* none reported or re-armed */
			if (!l && !h.v) {
				/*
				 * Pages reported so far were re-armed: they
				 * must reach the caller (G7). Stop here; the
				 * caller resumes at walk_end.
				 */
				scan_stop(s, p << PAGE_SHIFT);
				break;
			}
		} else {
			unsigned int mid = (head + AHEAD / 2) % AHEAD;
			unsigned int last = (head + AHEAD - 1) % AHEAD;

			l = ring[head];
			h = ringH[head];
			L = ringL[head];
			if (!l && !h.v) {
				scan_hole(s, p, send);
				break;
			}
			if (L << LEVEL_BITS > p) {
				scan_hole(s, p, L << LEVEL_BITS);
				if (s->stopped)
					break;
				p = L << LEVEL_BITS;
			}
			/* Refill the slot; the ring ends at the first NULL. */
			hit_clear(&ringH[head]);
			ring[head] = ring[last] || ringH[last].v
					     ? leaf_find(t, &findL, Lend,
							 &ringH[head])
					     : NULL;
			ringL[head] = findL;
			if (ringH[head].v)
				findL = (ringH[head].p0 +
					 (UINT64_C(1) << ringH[head].order)) >>
					LEVEL_BITS;
			else
				findL++;
			if (ring[head])
				__builtin_prefetch(&ring[head]->hint);
			if (hinted && ring[mid])
				prefetch_lines(ring[mid], hint_peek(ring[mid]));
			head = (head + 1) % AHEAD;
		}
		if (PS_UNLIKELY(h.v)) {
			uint64_t xend = h.p0 + (UINT64_C(1) << h.order);
			uint64_t hi = xend < send ? xend : send;

			if (h.p0 > p) /* the ring's L is its first leaf */
				p = h.p0;
			switch (scan_huge(t, s, &h, p, hi)) {
			case HUGE_DONE:
				p = hi;
				continue;
			case HUGE_STOP:
				return 0;
			case HUGE_AGAIN:
				goto again; /* split or changed: walk again */
			}
		}
		lend = (L + 1) << LEVEL_BITS;
		if (lend > send)
			lend = send;
		if (!scan_leaf(s, l, L << LEVEL_BITS,
			       (unsigned int)(p & LEVEL_MASK),
			       (unsigned int)(lend - (L << LEVEL_BITS)),
			       hinted))
			break;
		p = lend;
	}
	return 0;
}

/*
 * The query as the walk runs it: @arg with Linux's fix-ups
 * (pagemap_scan_get_args(), the no-vector path of pagemap_scan_pmd_entry()).
 * The end is rounded up to a page. Without a vector nothing is recorded and
 * nothing is counted: the budget does not apply, and a WP_MATCHING scan
 * matches every page (the kernel's "exclusive write-protect": every page
 * not yet protected is protected, whatever the masks).
 */
static void scan_fixup(struct ps_pgtable_scan *a,
		       const struct ps_pgtable_scan *arg)
{
	*a = *arg;
	a->end = (arg->end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	if (a->vec_len)
		return;
	a->max_pages = 0;
	if (a->flags & PS_SCAN_WP_MATCHING) {
		a->category_inverted = 0;
		a->category_mask = 0;
		a->category_anyof_mask = 0;
	}
}

/* ps_pgtable_scan(), and the internal categories @extra in return_mask. */
static long scan_run(struct ps_pgtable *t, struct ps_pgtable_scan *arg,
		     uint64_t extra)
{
	struct ps_pgtable_scan a;
	struct scan s = {
		.a = &a,
		.wp = arg->flags & PS_SCAN_WP_MATCHING,
		.record = arg->vec_len && arg->return_mask,
	};
	const struct regset *rs;
	uint64_t p, pend;
	int err = 0;

	/* The end is checked before it is rounded: it cannot wrap. */
	if ((arg->start & (PAGE_SIZE - 1)) || arg->start > arg->end ||
	    arg->end > PS_PGTABLE_ADDR_END || (arg->flags & ~SCAN_FLAGS) ||
	    ((arg->category_inverted | arg->category_mask |
	      arg->category_anyof_mask) &
	     ~PS_CAT_ALL) ||
	    (arg->return_mask & ~(PS_CAT_ALL | extra)) ||
	    (!arg->vec && arg->vec_len))
		return -EINVAL;
	scan_fixup(&a, arg);
	s.max = a.max_pages ? a.max_pages : UINT64_MAX;
	if (a.start == a.end) {
		arg->walk_end = a.end;
		return 0;
	}
	if (s.wp) {
		/* Rule 3 of pagestate/fork.h: reading scans are allowed. */
		PS__FORK_CHECK(t->born, "page table");
		pthread_mutex_lock(&t->lock);
	}
	ps__rcu_read_lock();
	rs = regs_load(t);
	if (s.wp && !reg_covers(rs, a.start, a.end, 0))
		err = -ENOENT;
	else if (s.wp && ps__pgtable_cuts_whole(t, rs, a.start, a.end))
		err = -EINVAL; /* part of a leaf tracked whole (hugetlb) */
	else if ((a.flags & PS_SCAN_CHECK_WPASYNC) &&
		 !reg_covers(rs, a.start, a.end, PS_WP_ASYNC))
		err = -EPERM;
	for (p = a.start >> PAGE_SHIFT, pend = a.end >> PAGE_SHIFT;
	     !err && !s.stopped && p < pend;) {
		uint64_t seg_end;

		s.op.rf = reg_flags(reg_segment(rs, p << PAGE_SHIFT, a.end,
						&seg_end));
		scan_prepare(&s);
		err = scan_segment(t, &s, p, seg_end >> PAGE_SHIFT);
		p = seg_end >> PAGE_SHIFT;
	}
	ps__rcu_read_unlock();
	if (s.wp)
		pthread_mutex_unlock(&t->lock);
	if (s.nr)
		a.vec[s.nr - 1].end = s.cur_end;
	if (err)
		return err;
	arg->walk_end = s.stopped ? a.walk_end : a.end;
	return (long)s.nr;
}

long ps_pgtable_scan(struct ps_pgtable *t, struct ps_pgtable_scan *arg)
{
	return scan_run(t, arg, 0);
}

/* --- harvest ------------------------------------------------------------ */

/* Runs per batch of ps_pgtable_harvest(): 12 KiB of the caller's stack. */
#define HARVEST_BATCH 512

/*
 * The harvest of ps_pgtable_harvest() (@fn) and ps_pgtable_harvest_order()
 * (@ofn: runs split by order, asked for with PS_CAT_HUGE and the internal
 * CAT_HUGE_1G).
 */
static int harvest(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   unsigned int flags, ps_pgtable_harvest_fn fn,
		   ps_pgtable_harvest_order_fn ofn, void *ctx)
{
	struct ps_pgtable_region vec[HARVEST_BATCH];
	const uint64_t extra = ofn ? PS_CAT_HUGE | CAT_HUGE_1G : 0;
	struct ps_pgtable_scan q = {
		.start = start,
		.end = start + len,
		.flags = PS_SCAN_WP_MATCHING | flags,
		.category_mask = PS_CAT_WRITTEN,
		.return_mask = PS_CAT_WRITTEN | extra,
		.vec = vec,
		.vec_len = HARVEST_BATCH,
	};

	if (bad_range(start, len) || (flags & ~PS_SCAN_CHECK_WPASYNC) ||
	    (!fn && !ofn))
		return -EINVAL;
	/*
	 * Only WRITTEN matches, so no none page is re-armed and the scan
	 * never allocates (scan_segment()'s alloc is false): no -ENOMEM
	 * (a huge leaf it must split aside: then it stops before it, G7).
	 * Every batch makes progress: it stops only when vec is full, after
	 * at least one run, at the first page it did not take (G7).
	 */
	while (q.start < q.end) {
		long n = scan_run(t, &q, extra);

		if (n < 0)
			return (int)n;
		for (long i = 0; i < n; i++) {
			const uint64_t c = vec[i].categories;

			if (ofn)
				ofn(ctx, vec[i].start, vec[i].end,
				    !(c & PS_CAT_HUGE)	? 0
				    : (c & CAT_HUGE_1G) ? PS_PGTABLE_ORDER_1G
							: PS_PGTABLE_ORDER_2M);
			else
				fn(ctx, vec[i].start, vec[i].end);
		}
		if (!n && q.walk_end == q.start)
			return -ENOMEM; /* no progress: a split failed */
		q.start = q.walk_end;
	}
	return 0;
}

int ps_pgtable_harvest(struct ps_pgtable *t, uint64_t start, uint64_t len,
		       unsigned int flags, ps_pgtable_harvest_fn fn, void *ctx)
{
	if (!fn)
		return -EINVAL;
	return harvest(t, start, len, flags, fn, NULL, ctx);
}

int ps_pgtable_harvest_order(struct ps_pgtable *t, uint64_t start, uint64_t len,
			     unsigned int flags, ps_pgtable_harvest_order_fn fn,
			     void *ctx)
{
	if (!fn)
		return -EINVAL;
	return harvest(t, start, len, flags, NULL, fn, ctx);
}
