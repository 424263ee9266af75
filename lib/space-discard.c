// SPDX-License-Identifier: MIT
/*
 * lib/space-discard.c - the balloon's discard (ps_space_discard()): drop
 * the pages of a range, except those it cannot drop now. The space's
 * rules: lib/space-impl.h. Discard replaces frames at addresses, so it
 * holds the writer mutex (S1, lib/space.c); against pins it is S2's
 * changer (lib/space-pin.c); what it gives back is recorded again for
 * write-back and harvest (S9, lib/space-writeback.c; S6,
 * lib/space-dirty.c).
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "space-impl.h"

#include <stdlib.h>

/* --- discard (S2) ------------------------------------------------------------------ */

struct discard_one {
	ps_pte_t old, new_pte;
	bool changed;
};

static void note_change(void *ctx, uint64_t addr, ps_pte_t old,
			ps_pte_t new_pte)
{
	struct discard_one *d = ctx;

	(void)addr;
	d->old = old;
	d->new_pte = new_pte;
	d->changed = true;
}

/*
 * Give the entry @old that discard zapped back to @addr; the zap left
 * @left there. Lock-free: one CAS per change of the entry (it retries only
 * when someone else changed it).
 *
 * @left is none or a lone UFFD_WP marker, and under the writer mutex nobody
 * maps here (S1), but the entry may still move between those two: a
 * protect or unprotect, uffd's mirror of a protected none page, a read
 * fault clearing a stale marker. Protection comes back as follows:
 *   - in a range that uses markers (shared, or PS_WP_UNPOPULATED, which
 *     async implies) a protect of the page while it is away makes it a
 *     marker, and @old comes back write-protected (folded in as pgtable.c's
 *     tr_map does); a marker the zap left and someone removed meanwhile
 *     (an unprotect) brings it back unprotected. A protect after the CAS
 *     finds the entry itself. So an async range's record of writes is never
 *     hidden behind a protection nobody asked for. (A protected page the
 *     zap left none, an anonymous one, comes back protected even if an
 *     unprotect ran, which found nothing to do: a spurious fault.)
 *   - in any other registered range (sync, anonymous) a protect skips a
 *     none page without a trace, so the page comes back write-protected
 *     whatever it was: a protect that ran while it was away is never lost,
 *     at the price of a spurious write-protect fault when none did (the
 *     handler resolves it as any other). The registration is read before
 *     the CAS: a range registered and protected within that instant is
 *     missed, and one unregistered within it keeps a stale bit, which is
 *     inert (G9 in lib/pgtable.c).
 * @old never comes back writable (S3): a write-back that visited meanwhile
 * found nothing to write-protect and may have cleaned the frame, so the
 * next write must fault and dirty it again. False only if the page holds
 * anything else (someone stored there against the exclusion rules).
 */
static bool give_back(struct ps_space *s, uint64_t addr, ps_pte_t old,
		      ps_pte_t left)
{
	const ps_pte_t marker = ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);
	unsigned int flags;
	ps_pte_t e;

	old &= ~PS_PTE_WRITE;
	if (!ps_pgtable_registration(s->pt, addr, &flags) &&
	    !(flags & (PS_WP_SHARED | PS_WP_UNPOPULATED)))
		old = ps_pte_mkuffd_wp(old);
	else if (left == marker)
		old = ps_pte_clear_uffd_wp(old); /* if still none: unprotected */
	if (ps_pgtable_get(s->pt, addr, &e))
		return false;
	for (;;) {
		ps_pte_t want;
		int rc;

		if (e == PS_PTE_NONE)
			want = old;
		else if (e == marker)
			want = ps_pte_mkuffd_wp(old);
		else
			return false;
		/*
		 * Seq_cst CAS (pgtable.h): before ps__space_wb_note()'s test
		 * (S9).
		 */
		rc = ps_pgtable_cmpxchg(s->pt, addr, &e, want);
		if (!rc)
			break;
		if (rc != -EAGAIN)
			return false;
	}
	FAILPOINT(FP_DISCARD_GAVE_BACK, addr);
	return true;
}

/*
 * Discard one resident page unless its frame is pinned or frozen by another
 * thread. Returns true if it was left in place.
 *
 * A frame frozen by someone else (prot.h's cache-mode change, the owner's
 * own freeze for a migration; a conversion holds the writer mutex, so not
 * that) belongs to its freezer until the unfreeze, which gives it the
 * references the freezer counted: discard must neither zap nor free it.
 * It leaves the page in place and reports it like a pinned one rather than
 * wait: it holds the writer mutex, which the freezer may be waiting for.
 *
 * The common case is exact and atomic: a frame held only by this mapping
 * (one reference, no pin) is frozen by this call with exactly that
 * reference, and only this call's own successful freeze leads to the free.
 * The freeze fails if a pin or any other holder appears, and while it
 * holds, new pins and speculative gets fail (they wait for the frozen frame
 * and then find the page gone). So a pinned page is never unmapped, not
 * even for a moment. A frame with other holders (an alias mapping, a kmap,
 * a lookup in flight) cannot be frozen: then this call takes a reference
 * of its own first (a try-get, which fails on a frozen frame), so no
 * freezer that does not count it can freeze the frame until the mapping's
 * reference is dropped; the zap comes first and the pins are checked after
 * a full fence (S2), and a pin that raced in gets the entry back. Only in
 * that case can a concurrent fault see the page missing for a moment.
 */
static bool discard_one(struct ps_space *s, uint64_t addr, uint64_t frame)
{
	struct ps_page *p = &s->frames[frame];
	struct discard_one d = {0, 0, false};
	bool frozen, pinned;
	uint64_t w;

	for (;;) {
		w = ps_page_load(p);
		if (!(w & PS_PAGE_LIVE))
			return true; /* frozen by another thread: its own */
		if (ps_page_word_pins(w))
			return true;
		FAILPOINT(FP_DISCARD_AFTER_CHECK, addr);
		if (ps_page_word_refs(w) == 1) {
			frozen = ps_page_freeze(p, 1); /* this call's own */
			if (frozen)
				break;
		} else if (ps_page_try_get(p)) {
			frozen = false; /* our reference holds freezers off */
			break;
		}
		/* A pin, another holder, a freeze, or a flag moved: again. */
	}
	if (frozen) {
		(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change,
				     &d);
		/* The mapping's reference was the only one: the frame is free. */
		(void)ps_page_unfreeze(p, 0);
		ps__space_frame_freed(s, frame);
		return false;
	}
	(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change, &d);
	/* S2 - seq_cst fence: the zap before the pin check. */
	atomic_thread_fence(memory_order_seq_cst);
	FAILPOINT(FP_DISCARD_AFTER_ZAP, addr);
	w = ps_page_load(p);
	pinned = ps_page_word_pins(w) != 0;
	if (pinned && d.changed) {
		/* A pin raced in: give the entry back. */
		if (give_back(s, addr, d.old, d.new_pte)) {
			/*
			 * A write-back or harvest that looked while the page
			 * was zapped found nothing mapped and dropped the
			 * address: record it again (S9; S6 for a pin for
			 * write, which the harvest must keep reporting).
			 */
			if (ps__space_write_pinned(w))
				ps__space_log_written(s, addr);
			else
				ps__space_wb_note(s, addr);
		} else {
			pinned = false; /* cannot (replaced): dropped */
		}
	}
	if (!pinned && d.changed && ps_pte_is_present(d.old))
		ps__space_frame_put(s, ps_pte_frame(d.old));
	ps__space_frame_put(s, frame); /* ours; the last one frees it */
	return pinned;
}

int ps_space_discard(struct ps_space *s, uint64_t start, uint64_t len,
		     uint64_t *skipped, uint64_t max_skipped,
		     uint64_t *nskipped)
{
	uint64_t nskip = 0;
	int rc;

	if (!ps__space_range_ok(s, start, len) || (max_skipped && !skipped))
		return -EINVAL;
	pthread_mutex_lock(&s->writer);
	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_CLEAR, 0);
	if (rc)
		goto out;
	for (uint64_t addr = start; addr < start + len; addr += PAGE_SIZE) {
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
		    ps_pte_frame(e) >= s->nframes)
			continue; /* only resident frames are discarded */
		if (discard_one(s, addr, ps_pte_frame(e))) {
			if (nskip < max_skipped)
				skipped[nskip] = addr;
			nskip++;
		}
	}
	rc = ps_notifier_invalidate_end(&s->notifier, start, len);
out:
	pthread_mutex_unlock(&s->writer);
	if (nskipped)
		*nskipped = nskip;
	return rc;
}
