// SPDX-License-Identifier: MIT
/*
 * lib/space-dirty.c - dirty marks and the harvest: ps_space_mark_dirty(),
 * ps_space_redirty(), ps_space_harvest() (with REARM: the written entries
 * of async-registered ranges, and the re-arm of every entry reported). The
 * dirty log itself, its levels and its take: lib/space-log.c (L1..L4). The
 * space's rules: lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S5, S6 and S11)
 * ---------------------------------------------------------------------------
 *
 * S5  Exactly-once dirty hook. DIRTY is set only by ps_page_test_and_set
 *     (ps__space_mark_frame_dirty(), lib/space-impl.h), or together with
 *     LOCKED and a reference by the one CAS of ps_page_try_get_lock_and_set()
 *     (a write fault's R1, mark_dirty's common case): the one caller that
 *     sees it clear runs the hook. Every marker sets DIRTY and runs the hook
 *     under the frame's LOCKED bit: a write fault, mark_dirty, an unpin for a
 *     device's write, the secondary-map helper and write-back's re-dirtying.
 *     So a thread that holds the bit and reads DIRTY set knows that the hook of
 *     that dirtying has run, and two things follow:
 *       - the hook of a dirtying runs before any write-back cleans that
 *         dirtying (a dirty-page account never goes below zero): write-back is
 *         the only cleaner, and clears DIRTY under the bit with WRITEBACK
 *         clear (S12); write-back's own re-dirtying also runs its hook before
 *         WRITEBACK ends;
 *       - the hook of a dirtying runs before any CPU write goes through an
 *         entry made writable on it: a write fault that finds the frame dirty
 *         under the bit marks nothing and makes the entry writable at once
 *         (S3). Before, the helper marked under the caller's lock only, and
 *         write-back re-dirtied under WRITEBACK only: a write fault between
 *         their DIRTY and their hook let a CPU write through first.
 *     Every marker holds a reference on the frame it marks (a write fault and
 *     mark_dirty take one and read the entry again, S3; a pin, the helper's
 *     lookup, write-back's visit, an unpin's own pin), so no hook runs for a
 *     freed frame and no DIRTY lands on a free word. The secondary-map helper
 *     (lib/space-secondary.c) marks only after its retry check, under the
 *     frame's LOCKED bit and the caller's lock (taken in that order, the order
 *     in which write-back's PROTECTION invalidation runs its callbacks under
 *     the bit), and only for a write. Write-back (lib/space-writeback.c)
 *     clears DIRTY inside its PROTECTION invalidation, before invalidate_end: a
 *     helper that the end lets through marks after the clear, so a writable
 *     secondary mapping never covers a clean frame.
 *
 * S6  Harvest never loses a mark. The dirty log is three three-level bitmaps
 *     (lib/hbitmap.h): one bit per 4 KiB page, per 2 MiB and per 1 GiB unit
 *     (lib/space-log.c): a mark made concurrently with a harvest is shown by
 *     it or stays for the next. Every mark, at any level, is taken by exactly
 *     one take, which reports it, takes it with a unit it reports (L3), or
 *     puts it back one level finer (L2) or as it was (L4): a page marked at
 *     several levels is reported at least once, and a unit is reported whole
 *     or page by page, never in part and lost in part. A page pinned for
 *     write is kept in the log while its pins last (a unit while any of its
 *     pages is), so every harvest until after the unpin reports it (discard
 *     never unmaps a pinned page, S10 in lib/space-discard.c, so no harvest
 *     finds such a page missing). With REARM, written entries of async ranges
 *     move into the log via the page table's get-and-rearm scan (its G7: a
 *     write racing the scan is reported by it or by the next one; a huge leaf
 *     as one unit mark), and every entry reported is re-armed (S11). The
 *     log's marks are taken only by ps__space_log_take() (lib/space-log.c),
 *     for the harvest and for the ledger's drain (C1 in lib/space-ledger.c),
 *     whose visitors keep a page or unit pinned for write by one look
 *     (harvest_visit(), ps__space_log_verdict()); with consumers
 *     (pagestate/ledger.h), ps_space_harvest() is the default consumer, which
 *     takes from its own set (C4), whole 2 MiB and 1 GiB extents as units.
 *
 * S11 The log is the migration record: no write escapes every harvest.
 *     A write W to page P is covered by a harvest H that reports P if W
 *     happens before H's re-arm of P: the caller reads P's contents after H
 *     returns, and the re-arm (a REARM harvest's own, or the caller's
 *     protect after a plain harvest) ends every path W could have taken
 *     without a further fault. Claim: every W is covered by some harvest,
 *     or P's mark is still in the log (the next harvest covers it).
 *     The rule, for whoever opens a path for writes to P: set P's log bit
 *     (L) after the point O from which writes can go through that path. L
 *     may be the mark of a unit holding P (every page of it): a huge leaf
 *     made writable whole, a whole frame pinned for write.
 *       - A write fault (lib/space-fault.c): O is the CAS that makes the
 *         entry writable (a MAYWRITE upgrade, a uffd-wp resolution); L
 *         comes after it. The frame is marked DIRTY before O (S3): dirty
 *         before writable, logged after.
 *       - A pin for write (lib/space-pin.c): O is the re-check that found
 *         the entry writable (made so by a fault, with its own L); L after
 *         it, and the page stays logged while pinned (S6).
 *       - ps_space_mark_dirty(): the caller's write came before the call;
 *         L after it.
 *       - The secondary-map helper (lib/space-secondary.c): L comes before
 *         the install, both under the caller's lock; see below why that is
 *         enough there.
 *     A REARM harvest takes P's bit (T), re-arms P (R) and invalidates P's
 *     secondary mappings (I, which is also the TLB flush of R), then
 *     returns. R by P's registration: sync, uffd-wp protection
 *     (ps_pgtable_protect(): the next write faults to the handler);
 *     unregistered, WRITE cleared (soft-dirty style: the next write faults on
 *     MAYWRITE && !WRITE, and the fault logs it again); async, nothing after T,
 *     since the get-and-rearm scan before T already moved the entry's written
 *     state into the log and re-protected it, atomically per page (G7). If
 *     protect fails (unregistered meanwhile, no memory for a marker's leaf),
 *     WRITE is cleared instead: enough for the log. Proof for a CPU entry made
 *     writable by the CAS C, logged by L after it. Let T be the first take of
 *     P's bit that reads L's set or a later one; it exists, because a set bit
 *     stays until taken. T reads L's release (an acquire RMW, A0 in
 *     lib/hbitmap.h), so C happens before T, and before T's R, a seq_cst CAS on
 *     P's entry (or protect's), which therefore acts on C's entry or a later
 *     one. After R, no write goes through C's entry: a later entry made
 *     writable by another fault C' has its own L', and is covered the same way.
 *     So a W through C's entry happens before R, and T's harvest covers it. A
 *     take T' between C and L that reports P for an older mark may re-arm P
 *     earlier: a W before that re-arm is covered by T', and none after it goes
 *     through C's entry; a take between C and L that does not report P re-arms
 *     nothing of P. Unit marks (lib/space-log.c): "P's bit" is any mark that
 *     covers P. A take that expands a unit (L2) reports nothing: it reads L's
 *     release and releases the finer marks it sets, so the take T that reports
 *     P from them still reads a release that C happens before, and re-arms
 *     after it. A finer mark absorbed by a unit shown (L3) is taken by the
 *     harvest that reports the unit, whose re-arm of the unit's extent (R of
 *     every page in it) comes after all its takes: the same T and R for every
 *     page of the unit. Nothing here compares entries, so an entry that changes
 *     and comes back (protect, then unprotect: ABA) changes nothing: every CAS
 *     that makes an entry writable is followed by its own L. The plain harvest
 *     is the same argument with the caller's protect, after the harvest, as R.
 *     Why the old order lost writes (the soak's N1): with L before C, a harvest
 *     could take the bit between them; its re-arm found the entry not writable
 *     yet (or changed and restored) and did nothing, and C then opened a path
 *     no mark covered. The safe order for a caller that re-arms itself is
 *     harvest, then protect. Protect-then-harvest loses a write that faults in
 *     between: the protect, then a fault's C and L, then T takes the bit;
 *     nothing re-arms after T, so the entry stays writable and the next write
 *     is never seen. PS_HARVEST_REARM is that order in one call.
 *     The helper: its L and its install happen under the caller's lock,
 *     which the harvest's I takes in the callback (and the helper's retry
 *     check sees an invalidation that began before it took the lock). If L
 *     precedes T, I comes after the install and tears the mapping down:
 *     device writes through it precede the teardown, hence the harvest's
 *     return; if T precedes L, the bit stays for the next harvest, whose I
 *     tears the mapping down. Either way covered.
 *     Budget: a mark the harvest does not report (beyond @max) keeps its
 *     mark and is not re-armed (L4): the next harvest reports and re-arms it.
 *     Re-arming a unit: a sync extent is protected as a range; an
 *     unregistered huge leaf the reported run covers whole loses WRITE by
 *     one CAS on the leaf (it stays huge), any other entry page by page.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "hbitmap.h"
#include "space-impl.h"

#include <sched.h>
#include <string.h>

/* --- marks ---------------------------------------------------------------- */

void ps__space_log_addr(struct ps_space *s, uint64_t addr)
{
	ps__space_log_written(s, addr);
}

/* The frame mapped at @addr, or UINT64_MAX (none, or not the space's). */
static uint64_t frame_at(struct ps_space *s, uint64_t addr)
{
	ps_pte_t e;

	if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
	    ps_pte_frame(e) >= s->nframes)
		return UINT64_MAX;
	return ps_pte_frame(e);
}

/*
 * Hold the frame mapped at @addr for a mark when the common CAS could not
 * (another thread holds LOCKED, or the frame is free, frozen or full): a
 * reference, then LOCKED, waiting for it (ps_page_try_get_and_lock()). Returns
 * 0 with the frame held and locked, 1 to look at the entry again (freed,
 * frozen: yielded), or PS_SPACE_MARK_OVERFLOW + 2.
 */
static int mark_hold_slow(struct ps_page *p)
{
	uint64_t w;

	if (ps_page_try_get_and_lock(p))
		return 0;
	w = ps_page_load(p);
	if ((w & PS_PAGE_LIVE) && ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
		return PS_SPACE_MARK_OVERFLOW + 2;
	if (w & PS_PAGE_FROZEN)
		sched_yield(); /* a freezer holds it (S8) */
	return 1;	       /* freed or frozen: look again */
}

/*
 * ps_space_mark_dirty() in a space with huge frames: the word that holds the
 * frame's state is found by S16 and released through its unit (S17, S18,
 * lib/space-huge.c), which may be a whole huge frame's word behind its gate,
 * so the two-RMW path below, which releases on the 4 KiB word itself, is not
 * used. Held by a reference first, then LOCKED around the mark (S5).
 */
static enum ps_space_mark mark_dirty_huge(struct ps_space *s, uint64_t addr)
{
	for (;;) {
		uint64_t frame = frame_at(s, addr), w, unit;
		struct ps_page *p;
		bool made;

		if (frame == UINT64_MAX)
			return PS_SPACE_MARK_UNMAPPED; /* nothing to mark */
		FAILPOINT(FP_MARK_LOOKED_UP, addr);
		p = ps__space_word(s, frame, &unit); /* S16, lib/space-huge.c */
		if (!ps_page_try_get(p)) {
			w = ps_page_load(p);
			if ((w & PS_PAGE_LIVE) &&
			    ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
				return PS_SPACE_MARK_OVERFLOW;
			if (w & PS_PAGE_FROZEN)
				sched_yield(); /* a freezer holds it (S8) */
			continue;	       /* freed or frozen: look again */
		}
		if (frame_at(s, addr) != frame) {
			ps__space_frame_put(s, unit); /* may free it (S7) */
			continue;
		}
		/*
		 * S5: under the frame's LOCKED bit, which every write-back
		 * visit takes before it clears DIRTY: no write-back cleans
		 * the frame between this DIRTY and its hook.
		 */
		made = ps__space_lock_and_mark_dirty(s, frame);
		ps__space_log_written(s, addr);
		ps__space_frame_put(s, unit);
		return made ? PS_SPACE_MARK_DIRTIED : PS_SPACE_MARK_WAS_DIRTY;
	}
}

/*
 * Mark the frame mapped at @addr holding it (S5): a reference, so that it can
 * be neither freed nor handed to another owner while it is marked (the dirty
 * hook never runs for a freed frame), and its LOCKED bit, which every
 * write-back visit takes before it clears DIRTY, so that no write-back cleans
 * the frame between this DIRTY and its hook. In the common case two RMWs on
 * the page word: the reference, LOCKED and DIRTY in one CAS
 * (ps_page_try_get_lock_and_set(), as a write fault's R1), and the release
 * (ps_page_unlock_and_put(), whose last put runs the free hook). Between the
 * two the entry is read again: between the lookup and the CAS the frame may
 * have been unmapped, freed and mapped elsewhere, and the CAS then held and
 * marked that other lifetime. If the entry no longer maps the frame, the
 * mark is taken back before anything acts on it (DIRTY is set, cleared and
 * acted on only under LOCKED, which this call holds, as for the fault:
 * lib/space-fault.c), the frame let go and the page looked at again. No fence
 * is needed: if the put that unmapped the frame comes before the CAS on the
 * word, the CAS's acquire reads its release sequence and the re-read sees the
 * unmap; if after, the mark is ordered before the unmap, on the same lifetime
 * (the reference keeps that put from being the last). A frame another thread
 * holds LOCKED is waited for (mark_hold_slow()), then marked by a
 * test-and-set under the bit.
 */
enum ps_space_mark ps_space_mark_dirty(struct ps_space *s, uint64_t addr)
{
	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size)
		return PS_SPACE_MARK_INVALID;
	if (PS_UNLIKELY(ps__space_huge(s)))
		return mark_dirty_huge(s, addr);
	for (;;) {
		uint64_t frame = frame_at(s, addr), seen;
		struct ps_page *p;
		bool fast, made = false;
		int rc;

		if (frame == UINT64_MAX)
			return PS_SPACE_MARK_UNMAPPED; /* nothing to mark */
		FAILPOINT(FP_MARK_LOOKED_UP, addr);
		p = &s->frames[frame];
		fast = ps_page_try_get_lock_and_set(p, PS_PAGE_DIRTY, &seen);
		if (PS_LIKELY(fast)) {
			made = !(seen & PS_PAGE_DIRTY);
		} else {
			rc = mark_hold_slow(p);
			if (rc > 1)
				return (enum ps_space_mark)(rc - 2);
			if (rc)
				continue;
		}
		if (PS_UNLIKELY(frame_at(s, addr) != frame)) {
			/* Not this lifetime's: take the mark back (S5). */
			if (made)
				(void)ps_page_clear_flags(p, PS_PAGE_DIRTY);
			if (ps_page_unlock_and_put(p)) /* may free it (S7) */
				ps__space_frame_freed(s, frame);
			continue;
		}
		if (!fast) /* held slowly: marked now, under the bit */
			made = ps__space_mark_frame_dirty(s, frame);
		else if (made) /* the CAS made the transition: its hook */
			ps__space_frame_dirtied(s, frame);
		ps__space_log_written(s, addr);
		if (ps_page_unlock_and_put(p)) /* unmapped meanwhile (S7) */
			ps__space_frame_freed(s, frame);
		return made ? PS_SPACE_MARK_DIRTIED : PS_SPACE_MARK_WAS_DIRTY;
	}
}

int ps_space_redirty(struct ps_space *s, const uint64_t *addrs, uint64_t n)
{
	int rc = 0;

	/* C4 (lib/space-ledger.c): the log, or the default consumer's set. */
	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t a = addrs[i] & ~(PAGE_SIZE - 1);
		const unsigned int o = (unsigned int)(addrs[i] &
						      (PAGE_SIZE - 1));

		/* A page, or a unit as PS_HARVEST_UNITS reports it. */
		if ((o && o != PS_SPACE_ORDER_2M && o != PS_SPACE_ORDER_1G) ||
		    (a & ((PAGE_SIZE << o) - 1)) || a >= s->size ||
		    (PAGE_SIZE << o) > s->size - a) {
			rc = -EINVAL;
			break;
		}
		if (PS_UNLIKELY(ps__space_ledger(s)))
			ps__space_ledger_redirty(s, a, o);
		else
			ps__space_log_unit(s, a, o); /* release (L1) */
	}
	ps_pgtable_read_unlock();
	return rc;
}

/* --- harvest (S6) --------------------------------------------------------- */

/* Bytes of a reported entry: a page, or with PS_HARVEST_UNITS addr | order. */
static uint64_t entry_bytes(uint64_t a)
{
	return PAGE_SIZE << (a & (PAGE_SIZE - 1));
}

/*
 * ps_pgtable_harvest_order()'s callback: a run of written entries, into the
 * log (S11's L for the async path): a run of huge leaves one unit mark per
 * leaf (lib/space-log.c), a run of 4 KiB entries page by page.
 */
static void rearm_log_run(void *ctx, uint64_t start, uint64_t end,
			  unsigned int order)
{
	struct ps_space *s = ctx;

	if (order != PS_SPACE_ORDER_2M && order != PS_SPACE_ORDER_1G) {
		ps__hbm_set_range(&s->log, ps__space_page_index(start),
				  ps__space_page_index(end - start));
		return;
	}
	for (uint64_t a = start; a < end; a += PAGE_SIZE << order)
		ps__space_log_unit(s, a, order);
}

/* Written entries of [start, end), re-armed as reported, into the log. */
static int rearm_region(struct ps_space *s, uint64_t start, uint64_t end,
			unsigned int check)
{
	return ps_pgtable_harvest_order(s->pt, start, end - start, check,
					rearm_log_run, s);
}

/*
 * [*@start, *@end) widened to the huge leaves it covers in part, so that the
 * get-and-rearm scan takes a leaf tracked whole (PS_WP_HUGE_WHOLE) whole
 * instead of refusing it (a harvest resumed inside one): the leaf's written
 * state moves into the log as one unit mark, and the part outside the range
 * stays there for a later harvest (lib/space-log.c, L2). Returns whether it
 * widened.
 */
static bool widen_to_leaves(struct ps_space *s, uint64_t *start, uint64_t *end)
{
	unsigned int o;
	ps_pte_t e;
	bool w = false;

	if (!ps_pgtable_get_level(s->pt, *start, &e, &o, NULL) && o &&
	    (*start & ((PAGE_SIZE << o) - 1))) {
		*start &= ~((PAGE_SIZE << o) - 1);
		w = true;
	}
	if (!ps_pgtable_get_level(s->pt, *end - PAGE_SIZE, &e, &o, NULL) && o &&
	    (*end & ((PAGE_SIZE << o) - 1))) {
		*end = (*end | ((PAGE_SIZE << o) - 1)) + 1;
		w = true;
	}
	return w;
}

/* rearm_into_log() on a range its leaves do not cross. */
static int rearm_general(struct ps_space *s, uint64_t start, uint64_t end)
{
	struct ps_pgtable_region reg[64];
	struct ps_pgtable_scan q;
	unsigned int flags;

	if (!ps_pgtable_registration(s->pt, start, &flags) &&
	    (flags & PS_WP_ASYNC)) {
		int rc = rearm_region(s, start, end, PS_SCAN_CHECK_WPASYNC);

		if (rc != -EPERM && rc != -ENOENT)
			return rc;
	}
	/* Pass 1: the registered async regions (report only). */
	for (uint64_t at = start; at < end;) {
		long n;

		memset(&q, 0, sizeof(q));
		q.start = at;
		q.end = end;
		q.category_mask = PS_CAT_WPALLOWED;
		q.return_mask = PS_CAT_WPALLOWED;
		q.vec = reg;
		q.vec_len = 64;
		n = ps_pgtable_scan(s->pt, &q);
		if (n < 0)
			return (int)n;
		for (long i = 0; i < n; i++) {
			/* Pass 2: written pages there, re-armed as reported. */
			int rc = rearm_region(s, reg[i].start, reg[i].end, 0);

			if (rc)
				return rc;
		}
		at = q.walk_end;
	}
	return 0;
}

/*
 * Move the written entries of the async-registered parts of a range into
 * the log, re-protecting them (the page table's get-and-rearm scan).
 *
 * The common case, a range inside one async registration (a bridge's
 * attachment, a guest RAM region), needs no search for registrations: the
 * registration of the first page says async, and the get-and-rearm scan
 * with PS_SCAN_CHECK_WPASYNC checks the rest before it changes anything
 * (-EPERM or -ENOENT: then the general path). The general path finds the
 * async regions with a report scan, which reads every entry of the range
 * (0.13 ms a GiB), where the scan of written pages reads only hinted lines.
 * The range is first widened to the huge leaves its ends fall in; a leaf
 * that appears at an end meanwhile (-EINVAL from a scan that would cover
 * part of a leaf tracked whole) widens it again.
 */
static int rearm_into_log(struct ps_space *s, uint64_t start, uint64_t end)
{
	int rc;

	for (int tries = 0;; tries++) {
		(void)widen_to_leaves(s, &start, &end);
		rc = rearm_general(s, start, end);
		if (rc != -EINVAL || tries == 3 ||
		    !widen_to_leaves(s, &start, &end))
			return rc;
	}
}

/* The ledger's harvests' first step (C3 in lib/space-ledger.c). */
int ps__space_rearm_into_log(struct ps_space *s, uint64_t start, uint64_t end)
{
	return rearm_into_log(s, start, end);
}

struct harvest_ctx {
	struct ps_space *s;
	uint64_t *addrs;
	uint64_t max, n;
	bool units;
};

/*
 * Is the word holding the state of the frame mapped at @addr pinned for write?
 * Its WRITE_PINNED is cleared on the way once it has no pins (S4). *@pages
 * receives how many pages from @addr that word's frame covers (1 when nothing
 * is mapped, or for a page mark, @unit_mark false): the caller's next look.
 */
static bool write_pinned_at(struct ps_space *s, uint64_t addr, uint64_t *pages)
{
	unsigned int lo = 0;
	ps_pte_t e, leaf;
	uint64_t unit, f, w;
	struct ps_page *p;

	*pages = 1;
	if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf) ||
	    !ps_pte_is_present(e) || ps_pte_frame(e) >= s->nframes)
		return false;
	f = ps_pte_frame(e);
	p = ps__space_word(s, f, &unit);
	/* The extent both the leaf and the word cover, from @addr on. */
	if (PS_SPACE_UNIT_ORDER(unit) && lo) {
		unsigned int o = PS_SPACE_UNIT_ORDER(unit) < lo
					 ? PS_SPACE_UNIT_ORDER(unit)
					 : lo;
		uint64_t pg = addr >> PAGE_SHIFT;

		*pages = (UINT64_C(1) << o) - (pg & ((UINT64_C(1) << o) - 1));
	}
	w = ps_page_load(p);
	if (ps__space_write_pinned(w))
		return true;
	if (w & PS_PAGE_WRITE_PINNED)
		ps__space_clear_write_pinned(p);
	return false;
}

/* A unit mark: kept if any page of it is pinned for write (S6). */
static PS_COLD enum ps__hbm_verdict unit_kept(struct ps_space *s, uint64_t addr,
					      unsigned int order)
{
	const uint64_t end = addr + (PAGE_SIZE << order);
	bool keep = false;

	for (uint64_t a = addr, k; a < end; a += k << PAGE_SHIFT)
		keep |= write_pinned_at(s, a, &k);
	return keep ? PS__HBM_KEEP : PS__HBM_CLEAR;
}

/*
 * ps__space_log_take()'s visitor: a mark, a page or a unit, into the output. A
 * page pinned for write stays in the log while its pins last (S6): a unit is
 * kept if any of its pages is. The harvest holds the page table's read-side
 * section across the visits (no hook runs here), so these are bare lookups, one
 * per word that holds a frame's state (S16): one for a whole huge frame.
 */
static enum ps__hbm_verdict harvest_visit(void *ctx, uint64_t addr,
					  unsigned int order)
{
	struct harvest_ctx *h = ctx;
	uint64_t unit, w;
	struct ps_page *p;
	ps_pte_t e;
	bool keep;

	if (h->n == h->max)
		return PS__HBM_STOP; /* kept, shown again on resume */
	h->addrs[h->n++] = addr | order;
	if (PS_UNLIKELY(order))
		return unit_kept(h->s, addr, order);
	/* A page: one look, the bare lookup. */
	e = ps_pgtable_lookup(h->s->pt, addr);
	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= h->s->nframes)
		return PS__HBM_CLEAR;
	p = ps__space_word(h->s, ps_pte_frame(e), &unit);
	w = ps_page_load(p);
	keep = ps__space_write_pinned(w);
	if ((w & PS_PAGE_WRITE_PINNED) && !keep)
		ps__space_clear_write_pinned(p);
	return keep ? PS__HBM_KEEP : PS__HBM_CLEAR;
}

/* The ledger's drain's look (C1): the harvest's, without the output. */
enum ps__hbm_verdict ps__space_log_verdict(struct ps_space *s, uint64_t addr,
					   unsigned int order)
{
	return unit_kept(s, addr, order); /* one look per word (S16) */
}

/* How a reported page is re-armed (S11): by its registration. */
enum rearm_kind {
	REARM_ASYNC, /* its entry: the get-and-rearm scan did it */
	REARM_SYNC,  /* uffd-wp: the next write faults to the handler */
	REARM_WRITE, /* not registered: WRITE cleared (soft-dirty style) */
};

static enum rearm_kind rearm_kind(struct ps_space *s, uint64_t addr)
{
	unsigned int flags;

	if (ps_pgtable_registration(s->pt, addr, &flags))
		return REARM_WRITE;
	return flags & PS_WP_ASYNC ? REARM_ASYNC : REARM_SYNC;
}

/*
 * The kind of a reported entry: its first page's, if its last page's agrees
 * (a unit inside one registration), else -1 (re-armed page by page).
 */
static int entry_kind(struct ps_space *s, uint64_t a)
{
	const uint64_t addr = a & ~(PAGE_SIZE - 1);
	enum rearm_kind k = rearm_kind(s, addr);

	if (PS_UNLIKELY(a != addr) && /* a unit */
	    rearm_kind(s, addr + entry_bytes(a) - PAGE_SIZE) != k)
		return -1;
	return (int)k;
}

/*
 * Clear WRITE of the entries of [@start, @end), whatever frames they map:
 * their next write faults on MAYWRITE && !WRITE, and the fault logs it again
 * (S3, S11). Only present entries are touched, so no leaf is ever allocated. A
 * huge leaf the run covers whole loses WRITE whole (one CAS on the leaf, which
 * stays huge); a 4 KiB entry, or a page of a leaf the run covers in part, one
 * page at a time (ps_pgtable_cmpxchg() splits the leaf).
 */
static void clear_write(struct ps_space *s, uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a < end;) {
		unsigned int o;
		ps_pte_t e, leaf;

		if (ps_pgtable_get_level(s->pt, a, &e, &o, &leaf))
			return;
		if (o && !(a & ((PAGE_SIZE << o) - 1)) &&
		    end - a >= (PAGE_SIZE << o)) {
			int rc = 0;

			while (ps_pte_is_present(leaf) &&
			       ps_pte_is_writable(leaf) &&
			       (rc = ps_pgtable_cmpxchg_huge(
					s->pt, a, o, &leaf,
					leaf & ~PS_PTE_WRITE)) == -EAGAIN)
				; /* leaf was refreshed: look again */
			if (rc == -ENOENT)
				continue; /* no longer that leaf: again */
			a += PAGE_SIZE << o;
			continue;
		}
		while (ps_pte_is_present(e) && ps_pte_is_writable(e) &&
		       ps_pgtable_cmpxchg(s->pt, a, &e, e & ~PS_PTE_WRITE) ==
			       -EAGAIN)
			; /* e was refreshed: look again */
		a += PAGE_SIZE;
	}
}

/* Re-arm [@start, @end) of kind @k (S11); see rearm_reported(). */
static void rearm_run(struct ps_space *s, uint64_t start, uint64_t end, int k)
{
	if (k < 0) {
		for (uint64_t a = start; a < end; a += PAGE_SIZE)
			rearm_run(s, a, a + PAGE_SIZE, (int)rearm_kind(s, a));
		return;
	}
	if (k == REARM_SYNC && ps_pgtable_protect(s->pt, start, end - start))
		k = REARM_WRITE;
	if (k == REARM_WRITE)
		clear_write(s, start, end);
}

/*
 * Re-arm the reported entries outside async ranges, run by run (S11): after
 * their marks were taken, before the invalidation that ends the harvest
 * (the TLB flush of the entries changed here). A sync run is protected as
 * ps_pgtable_protect() does; if that fails (the range was unregistered
 * meanwhile, or a marker needed a leaf there was no memory for), its
 * writable entries lose WRITE instead, which is enough for the next write
 * to be seen, and never fails. An unregistered run loses WRITE, a huge leaf
 * it covers whole without a split.
 */
static void rearm_reported(struct ps_space *s, const uint64_t *addrs,
			   uint64_t n)
{
	for (uint64_t i = 0; i < n;) {
		const int k = entry_kind(s, addrs[i]);
		const uint64_t start = addrs[i] & ~(PAGE_SIZE - 1);
		uint64_t end = start + entry_bytes(addrs[i]), j = i + 1;

		while (k >= 0 && j < n &&
		       (addrs[j] & ~(PAGE_SIZE - 1)) == end &&
		       entry_kind(s, addrs[j]) == k)
			end += entry_bytes(addrs[j++]);
		if (k != REARM_ASYNC)
			rearm_run(s, start, end, k);
		i = j;
	}
}

/* Tear down secondary mappings of the harvested entries, run by run. */
static void invalidate_harvested(struct ps_space *s, const uint64_t *addrs,
				 uint64_t n)
{
	for (uint64_t i = 0; i < n;) {
		const uint64_t start = addrs[i] & ~(PAGE_SIZE - 1);
		uint64_t end = start + entry_bytes(addrs[i]), j = i + 1;

		while (j < n && (addrs[j] & ~(PAGE_SIZE - 1)) == end)
			end += entry_bytes(addrs[j++]);
		if (!ps_notifier_invalidate_start(&s->notifier, start,
						  end - start,
						  PS_NOTIFIER_SOFT_DIRTY, 0))
			(void)ps_notifier_invalidate_end(&s->notifier, start,
							 end - start);
		i = j;
	}
}

/* The ledger's harvests' last step (C3): re-arm, then invalidate. */
void ps__space_rearm_reported(struct ps_space *s, const uint64_t *addrs,
			      uint64_t n)
{
	rearm_reported(s, addrs, n);
	invalidate_harvested(s, addrs, n);
}

int ps_space_harvest(struct ps_space *s, uint64_t start, uint64_t len,
		     unsigned int flags, uint64_t *addrs, uint64_t max,
		     uint64_t *count, uint64_t *resume)
{
	struct harvest_ctx h = {s, addrs, max, 0, flags & PS_HARVEST_UNITS};
	uint64_t next;

	if (!ps__space_range_ok(s, start, len) || !addrs || !max || !count ||
	    (flags & ~(PS_HARVEST_REARM | PS_HARVEST_UNITS)))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	if (flags & PS_HARVEST_REARM) {
		int rc = rearm_into_log(s, start, start + len);

		if (rc)
			return rc;
	}
	ps_pgtable_read_lock();
	if (PS_LIKELY(!ps__space_ledger(s))) { /* C4, lib/space-ledger.c */
		(void)ps__space_log_take(s, start, len, h.units, harvest_visit,
					 &h, &next);
		ps_pgtable_read_unlock();
	} else {
		ps_pgtable_read_unlock(); /* the default consumer's take */
		h.n = ps__space_ledger_take_default(s,
						    ps__space_page_index(start),
						    ps__space_page_index(len),
						    h.units, addrs, max, &next);
		next <<= PAGE_SHIFT;
	}
	if (flags & PS_HARVEST_REARM) {
		rearm_reported(s, addrs, h.n);
		invalidate_harvested(s, addrs, h.n);
	}
	if (h.units) /* finer entries of a whole extent: one (space-huge.c) */
		h.n = ps__space_harvest_units(addrs, h.n);
	*count = h.n;
	if (resume)
		*resume = next;
	return 0;
}
