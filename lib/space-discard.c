// SPDX-License-Identifier: MIT
/*
 * lib/space-discard.c - the balloon's discard (ps_space_discard()): drop the
 * pages of a range whose frames only their mapping holds, and report every
 * other page with the reason it stays. The space's rules: lib/space-impl.h.
 * Discard replaces frames at addresses, so it holds the writer mutex (S1,
 * lib/space.c), a 64 MiB chunk at a time (S20). docs/space.md, "Balloon
 * discard", says why it freezes or skips instead of zapping and giving back.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S10)
 * ---------------------------------------------------------------------------
 *
 * S10 Freeze or skip. Discard drops a page only after it has frozen the
 *     page's frame at exactly its mapping's reference: ps_page_freeze(p, 1),
 *     one compare-and-swap that requires the frame LIVE with one reference
 *     and no pin. Then, and only then, it zaps the entry and unfreezes the
 *     frame with no reference (free: the free_frame hook runs, under the
 *     writer mutex, S7). A frame with any other holder is not touched and
 *     the page is reported with its reason:
 *       - PINNED  the frame has pins (they count as references too);
 *       - BUSY    it has another reference: another mapping of the frame
 *                 (an alias, inside the range or not), a CPU map, its
 *                 owner's reference, a lookup, a pin backing out or a
 *                 write-back in flight;
 *       - FROZEN  another thread holds it frozen (a cache-mode change, the
 *                 owner's migration; not a conversion, which holds the
 *                 writer mutex). Discard does not wait: the freezer may be
 *                 waiting for the writer mutex.
 *     Against a pin (S2, lib/space-pin.c), the freeze and the pin are RMWs on
 *     one word, so one comes first. A pin first: the freeze fails, and the page
 *     is reported PINNED. The freeze first: the pin's try fails on the frozen
 *     frame and waits (yields), then either finds the frame free (its acquire
 *     load of the word reads the release unfreeze, which comes after the zap,
 *     so its next read of the entry sees the zap) or the entry gone: it faults,
 *     and a pin never holds a frame discard freed. So no fence is needed, no
 *     entry of a pinned page is ever changed, not even for a moment, and
 *     nothing has to be given back: the write-protect bit, dirty log and
 *     write-back set of a skipped page are as they were. A freezer that is not
 *     discard is excluded the same way (two freezes: one fails). Write faults,
 *     mark_dirty, write-back and the helper hold the frame they act on with a
 *     reference taken by a try that fails on a frozen frame (S3): discard finds
 *     that reference and leaves the page busy, and none keeps a frame that
 *     discard freed. A discarded frame's DIRTY goes with its lifetime, as every
 *     free clears it (page.h): the balloon gave its contents up.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "space-impl.h"

/* --- discard (S10) -------------------------------------------------------- */

/*
 * Discard the @npages pages at @addr, mapped to @frame onwards (below
 * nframes, under the writer mutex), whose state is the word @p: one page, or
 * a whole huge frame mapped by one huge entry (lib/space-huge.c, S17). 0 if
 * they were discarded, else why they stay, or -ENOMEM if they are part of a
 * huge entry that the zap could not split (nothing changed: the frame keeps
 * its mapping's reference and is not freed). Lock-free: the loop runs again
 * only when the word changed between the load and the freeze. @dropped, if
 * not NULL, is told of each page after the frame was freed (S10's last step:
 * the free_frame hook ran).
 */
static int discard_one(struct ps_space *s, uint64_t addr, uint64_t frame,
		       struct ps_page *p, uint64_t npages,
		       ps__space_dropped_fn dropped, void *ctx)
{
	for (;;) {
		uint64_t w = ps_page_load(p);

		if (w & PS_PAGE_FROZEN)
			return PS_DISCARD_FROZEN; /* its freezer's */
		if (!(w & PS_PAGE_LIVE))
			return PS_DISCARD_BUSY; /* its mapping's reference put
						 * by someone else: leave it */
		if (ps_page_word_pins(w))
			return PS_DISCARD_PINNED;
		if (ps_page_word_refs(w) != 1)
			return PS_DISCARD_BUSY;
		FAILPOINT(FP_DISCARD_AFTER_CHECK, addr);
		if (ps_page_freeze(p, 1))
			break;
		/* A pin, a reference, a freezer or a flag came: look again. */
	}
	FAILPOINT(FP_DISCARD_FROZEN, addr);
	if (ps_pgtable_zap(s->pt, addr, npages << PAGE_SHIFT, 0, NULL, NULL)) {
		/*
		 * -ENOMEM: part of a huge entry, which could not be split, so
		 * nothing was zapped. The frame stays mapped: give it back
		 * its mapping's reference (release, as any unfreeze).
		 */
		(void)ps_page_unfreeze(p, 1);
		return -ENOMEM;
	}
	/*
	 * Release (the unfreeze): the zap comes before any try that finds
	 * the frame free. The mapping's reference was the only one: free.
	 */
	(void)ps_page_unfreeze(p, 0);
	ps__space_frame_freed(s, frame);
	for (uint64_t k = 0; dropped && k < npages; k++)
		dropped(ctx, addr + (k << PAGE_SHIFT));
	return 0;
}

/*
 * One chunk [@a, @b) of a discard whose range ends at @end, under the writer
 * mutex: each page dropped or reported in @skipped (*@nskip counts them, also
 * past @max_skipped). 0, or -ENOMEM: the pages from that one on untouched.
 */
static int discard_chunk(struct ps_space *s, uint64_t a, uint64_t b,
			 uint64_t end, struct ps_discard_skip *skipped,
			 uint64_t max_skipped, uint64_t *nskip,
			 ps__space_dropped_fn dropped, void *ctx)
{
	for (uint64_t addr = a, n = 1; addr < b; addr += n << PAGE_SHIFT) {
		struct ps_page *p;
		uint64_t frame;
		ps_pte_t e;
		int why;

		n = 1;
		if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
		    ps_pte_frame(e) >= s->nframes)
			continue; /* only resident frames are discarded */
		frame = ps_pte_frame(e);
		p = &s->frames[frame];
		/* Frames of three sizes: the unit there (lib/space-huge.c). */
		if (ps__space_huge(s))
			why = ps__space_discard_unit(s, addr, end, &frame, &p,
						     &n);
		else
			why = 0;
		if (!why)
			why = discard_one(s, addr, frame, p, n, dropped, ctx);
		if (why < 0)
			return why; /* the pages from @addr on: untouched */
		for (uint64_t k = 0; why && k < n; k++, (*nskip)++)
			if (*nskip < max_skipped) {
				skipped[*nskip].addr = addr + (k << PAGE_SHIFT);
				skipped[*nskip].frame = frame + k;
				skipped[*nskip].reason =
					(enum ps_discard_reason)why;
			}
	}
	return 0;
}

int ps__space_discard(struct ps_space *s, uint64_t start, uint64_t len,
		      struct ps_discard_skip *skipped, uint64_t max_skipped,
		      uint64_t *nskipped, ps__space_dropped_fn dropped,
		      void *ctx)
{
	uint64_t nskip = 0;
	int rc, nomem = 0;

	if (!ps__space_range_ok(s, start, len) || (max_skipped && !skipped))
		return -EINVAL;
	/*
	 * S20: one invalidation brackets the whole discard, which goes a
	 * chunk at a time under the writer mutex (waiting for the part of a
	 * chunked map in progress a chunk meets), letting it go between
	 * chunks, as unmap does (lib/space.c).
	 */
	ps__space_writer_take(s);
	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_CLEAR, 0);
	pthread_mutex_unlock(&s->writer);
	if (rc)
		goto out;
	for (uint64_t a = start, b = start; a < start + len && !nomem; a = b) {
		/* Under the mutex, no leaf appears between check and drop. */
		for (uint64_t c = ps__space_chunk_next(s, a, start + len);
		     c != b;) {
			if (b != a)
				pthread_mutex_unlock(&s->writer);
			b = c;
			ps__space_writer_lock_range(s, a, b - a);
			c = ps__space_chunk_next(s, a, start + len);
		}
		nomem = discard_chunk(s, a, b, start + len, skipped,
				      max_skipped, &nskip, dropped, ctx);
		pthread_mutex_unlock(&s->writer);
		if (!nomem && b < start + len) {
			FAILPOINT(FP_DISCARD_CHUNK, b);
			ps__space_writer_hand_off(s);
		}
	}
	ps__space_writer_take(s);
	rc = ps_notifier_invalidate_end(&s->notifier, start, len);
	pthread_mutex_unlock(&s->writer);
	if (!rc)
		rc = nomem;
out:
	if (nskipped)
		*nskipped = nskip;
	return rc;
}

int ps_space_discard(struct ps_space *s, uint64_t start, uint64_t len,
		     struct ps_discard_skip *skipped, uint64_t max_skipped,
		     uint64_t *nskipped)
{
	/* The callers' own name in the message (ps_uffd_discard() too). */
	PS__FORK_CHECK(s->born, "space");
	return ps__space_discard(s, start, len, skipped, max_skipped, nskipped,
				 NULL, NULL);
}
