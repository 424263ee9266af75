// SPDX-License-Identifier: MIT
/*
 * lib/space-writeback.c - write-back (ps_space_writeback()) and the
 * write-back set it visits. The space's rules: lib/space-impl.h; write-back
 * takes the frame's LOCKED bit as a write fault does (S3, lib/space-fault.c)
 * and clears DIRTY inside its invalidation (S5, lib/space-dirty.c).
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S4, S9 and S12; S19 by
 * tests/test-space-huge.c)
 * ---------------------------------------------------------------------------
 *
 * S4  Write-back vs pins. Write-back clears DIRTY with an RMW on the page word
 *     and decides on the pins that RMW sees: pins and the DIRTY bit live in one
 *     word, so every pin is ordered before or after that clear. INTEGRITY
 *     clears unconditionally (ps_page_fetch_clear_flags) and reads the pins in
 *     the old word: a pin before the clear makes the frame "pinned" for this
 *     write-back (a bounce). CLEAN clears only while unpinned
 *     (ps_page_clear_flag_if_unpinned, one CAS): a pin before it leaves the
 *     frame dirty and untouched (skipped; it is never clean for a moment, so no
 *     mark in between runs a second dirty hook, S5). A pin for write after the
 *     clear re-reads the entry, finds it write-protected (S2 then S3) and
 *     faults, dirtying the frame again. A pin for write sets WRITE_PINNED in
 *     the CAS that takes the pin (lib/space-pin.c), so every word that shows
 *     the pin shows it as one for write: an INTEGRITY bounce, which looks at
 *     the word again after its copy, keeps such a frame dirty even if the pin
 *     has not finished its re-check yet (the flag alone, left by a pin that
 *     backed out, is only a hint: ps__space_write_pinned() also wants pins).
 *
 * S9  No dirty frame escapes write-back. Write-back finds frames by address
 *     (the wb set: one bit per page), and ps_space_unpin(..., PS_UNPIN_DIRTY)
 *     knows only frames. So the address is recorded when it is known: the wb
 *     set holds every page logged as written (faults, the helper's writes,
 *     mark_dirty, pins for write: ps__space_log_written()), every page pinned,
 *     at the pin (ps__space_wb_note() for pins not for write), and every page
 *     mapped to a frame that is pinned or dirty when it is mapped (map_range()
 *     in lib/space.c). And write-back takes a page out of the set only if
 *     nothing is mapped there, or if the frame mapped there, read under its
 *     LOCKED bit (or after a bounce copy), is neither pinned nor dirty: a clean
 *     pinned frame is kept, as is a frame unpinned dirty while INTEGRITY
 *     write-back copied it. (Discard never unmaps a pinned page, not even for a
 *     moment: S10, lib/space-discard.c.) Hence a frame pinned at an address and
 *     unpinned dirty while still mapped there is written by the next write-back
 *     of that address: a visit whose read of the frame's word comes after the
 *     unpin sees DIRTY; one whose read comes before it sees the pin and keeps
 *     the page; a pin taken after the read puts the page back itself (below:
 *     the test it starts with is enough, given the seq_cst fence the visit runs
 *     between taking the bit and reading the entry). The cost is on write-back,
 *     not on the pin: a pinned page is visited by every write-back (a read pin
 *     adds one load of the set per page, and an RMW when a write-back has taken
 *     its bit). Not covered: a frame pinned, unmapped and unpinned dirty with
 *     no mapping left (there is no address to write it at, and the free ends
 *     the frame's lifetime, DIRTY included, page.h: an owner that must not lose
 *     such a write keeps a reference of its own and looks at DIRTY before it
 *     lets go); an alias mapped elsewhere is written through its own address
 *     only if that one is recorded (no reverse map). The dirty log (harvest) is
 *     not the wb set: pins for write stay in it while pinned (S6); a pin not
 *     for write that is unpinned dirty is not logged for migration.
 *
 *     Recording the address. ps__space_wb_note() tests the bit first and
 *     skips the set when it reads set. That is safe because the bit read
 *     set is either still set or was taken by a write-back's harvest whose
 *     visit sees the pin or the entry:
 *       - if the visit found the frame mapped, it takes the frame's LOCKED bit
 *         (an RMW on the page word, acq_rel) after the take. If that RMW
 *         precedes the pin's RMW on the word, the pin's acquire synchronises
 *         with it, so the take happens before the test, which then reads the
 *         take or a later set. If it follows, the visit reads the pin.
 *       - if the visit found no entry (mapped after it looked: map_range), the
 *         visit runs a seq_cst fence Fv between the take (A0, seq_cst) and its
 *         entry load (acquire), which read a value before the entry CAS
 *         (seq_cst). For the mapper (map_range), whose test (T0, seq_cst) is
 *         sequenced after its CAS: the load is coherence-ordered before the
 *         CAS, so Fv precedes the CAS in the total order S, and the CAS
 *         precedes T0; A0 is sequenced before Fv, so T0 reads the take or a
 *         later set (A0, T0 in lib/hbitmap.h). For a pin: its re-read of the
 *         entry (e2, seq_cst, S2 in lib/space-pin.c) read the CAS or a later
 *         entry (its first read did, and e2 comes after it), so the visit's
 *         load is coherence-ordered before e2; Fv happens before that load and
 *         e2 is seq_cst, so Fv precedes e2 in S, and e2 precedes the pin's test
 *         (both seq_cst, sequenced): A0, Fv, e2, T0 in that order in S, and
 *         again T0 reads the take or later. That is why a read pin tests after
 *         its re-read, and why that re-read is seq_cst (an acquire load that
 *         read the CAS would have no place in S).
 *         Without Fv, store buffering would let the visit read the old entry
 *         while the test still reads the bit the take took.
 *
 *     Batches. The set is visited a level-0 word at a time (64 pages, one leaf
 *     of the page table: ps__hbm_harvest_words()), and within the word a run
 *     at a time (writeback_word()), so that what a visit costs is paid per
 *     word or per run, not per page, and no frame of one run is held while
 *     another run is invalidated or written:
 *       B1  one seq_cst fence (Fv above) for the word, after its take; then,
 *           for the lowest run of consecutive pages of the word left, one
 *           read-side section and one walk: each page's entry through a leaf
 *           cursor, its frame held (a reference and LOCKED in one CAS,
 *           ps_page_try_get_lock_and_set(), which never waits: a frame locked
 *           by another thread is left to B5), the entry read again under the
 *           bit through the same cursor (S3; a frame replaced meanwhile is let
 *           go outside the section, which may free it, and left to B5);
 *       B2  each frame looked at under its bit, as one page's visit does
 *           (WRITEBACK, DIRTY, pins: wb_look()); a frame not to write is let
 *           go. If the pages to write do not follow each other (a clean or
 *           skipped page between), the pages after the first gap are let go
 *           unchanged and taken again (B1) as the next run;
 *       B3  the run of pages to write gets one PROTECTION invalidation: its
 *           entries write-protected through one cursor, then each frame's
 *           WRITEBACK set and DIRTY cleared (S4), all under the frames'
 *           LOCKED bits and before the invalidation ends (S5), as for one
 *           page. The invalidation's callbacks run under the LOCKED bits of
 *           the run's frames, and of no other frame of the batch (S7 in
 *           lib/space.c): a callback may touch any page outside its range.
 *           If the invalidation cannot start (-ENOMEM), nothing is cleaned:
 *           the run's frames stay dirty and in the set, @fn is not called
 *           (secondary mappings may still be writable: a write through one
 *           after the copy would be lost), and the error says where;
 *       B4  the pages to write go back into the set with one RMW (S12: before
 *           their bits are dropped), every LOCKED bit of the run is dropped
 *           before its first @fn runs (it runs with no library lock held),
 *           then @fn, the re-dirtying and the end of WRITEBACK per page, as
 *           for one page; then the next run (B1);
 *       B5  the pages B1 or B2 left (a frame locked, frozen or freed, replaced
 *           under the bit, or under another write-back that INTEGRITY waits
 *           for) are visited one at a time, as before (writeback_page()).
 *     Each page still sees, under its frame's LOCKED bit and inside an
 *     invalidation of its address, write-protect then clear, so S3, S4, S5,
 *     S9 and S12 hold page by page as before; only the grouping differs. A
 *     run whose pages are all to write (the common case) costs what the
 *     word-wide batch cost: one section and one CAS per frame to hold it.
 *
 * S12 One write-back of a frame at a time (Linux's PG_writeback). A visit
 *     sets WRITEBACK (ps_page_start_writeback()) under the frame's LOCKED
 *     bit, after it cleared DIRTY, and ends it (ps_page_end_writeback(),
 *     release) after @fn has returned, dirtying the frame again first if
 *     the write failed or a device may have written after a bounce. Every
 *     visit reads WRITEBACK under LOCKED before it does anything, so no
 *     visit clears DIRTY or calls @fn while another's @fn runs for the
 *     frame: the copies land in the order DIRTY was cleared, and the last
 *     is the newest. A visit that finds WRITEBACK set: CLEAN leaves the
 *     page in the set and the frame as it is (dirty: skipped_writeback);
 *     INTEGRITY drops LOCKED, waits for WRITEBACK to clear (acquire: it sees
 *     the other write-back's DIRTY), still holding its reference, and visits
 *     again from the top. The waiter holds no library lock, so the callback it
 *     waits for may fault, pin or take the frame's LOCKED bit. The page goes
 *     back into the set before @fn runs, so a write-back that begins meanwhile
 *     finds it (INTEGRITY waits for it) unless a third visit holds the bit at
 *     that instant; the next visit of a clean frame not under write-back takes
 *     it out again. Waiting for one's own callback would never end: each thread
 *     keeps its write-backs in a list (wb_current), and a visit that would wait
 *     for a frame this thread's @fn is writing, or one of its run under
 *     WRITEBACK whose @fn is still to come (B4), gives -EDEADLK instead and
 *     keeps the page. Two callbacks in two threads that each wait for the
 *     other's INTEGRITY write-back are not detected (space.h forbids it).
 *
 * S19 Whole huge frames (S16, S17 in lib/space-huge.c). The state of a
 *     whole 2 MiB or 1 GiB frame is one word (DIRTY, WRITEBACK, LOCKED,
 *     pins), its 4 KiB words are free and its pages have no leaf of 4 KiB
 *     entries (a cursor finds none: ps_pgtable_lookup_leaf() gives NULL), so
 *     a visit that read 4 KiB words and cursors found nothing mapped and
 *     took the pages out of the set: a dirty whole frame was never written.
 *     A word of the set with no leaf, in a space with huge frames, goes
 *     page by page through the unit's path instead (writeback_huge_word()):
 *     the frame is held (a reference and LOCKED on its word in one CAS,
 *     which never waits, then the huge leaf read again under the bit: S3),
 *     looked at (wb_look()), and if it is to be written, one PROTECTION
 *     invalidation of the leaf's extent covers the write-protect of the leaf
 *     (one CAS, ps_pgtable_cmpxchg_huge(): the leaf is not split) and the clear
 *     of DIRTY with WRITEBACK set on the word (S4, S5, S12 on the unit's word
 *     exactly as on a 4 KiB one). Every page of the unit goes back into the set
 *     before LOCKED is dropped (S12), then @fn is called for each 4 KiB page of
 *     the unit in order, with that page's address and frame: the callback's
 *     contract is one 4 KiB frame, and a caller written for it would write 4
 *     KiB of a 2 MiB frame if told only the first one; DIRTY is one bit for the
 *     whole frame, so the whole frame is written, also when the range covers
 *     part of it (Linux writes back a whole folio). The first error stops the
 *     loop and dirties the frame again, so the next write-back writes all of
 *     it. The re-dirtying rules are wb_write()'s. LOCKED and WRITEBACK keep the
 *     word whole meanwhile: a split waits for both (split_state()); the visit's
 *     reference is released as the unit (ps__space_put_unit(), through the
 *     gate, S18). One visit serves the 64 pages of the word (the unit covers
 *     them); the other words of the unit find it clean and clear their bits,
 *     or, when this write-back kept it (pinned under CLEAN, busy, failed), keep
 *     their bits without a visit (keeping a bit is always safe, S9). Split
 *     state under a huge leaf goes the 4 KiB way (wb_hold(); write-protecting
 *     one page splits the leaf, as ps_pgtable_cmpxchg() does); so does a whole
 *     2 MiB part of a split 1 GiB frame under a 1 GiB leaf: its state is split
 *     to 4 KiB and the leaf with it for that 2 MiB (ps_pgtable_split(): 2 MiB
 *     leaves for the other parts), since write-protecting the part alone would
 *     split the leaf under a whole 2 MiB word (S17), and the huge write fault
 *     refuses state of another order than its leaf.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "hbitmap.h"
#include "space-impl.h"

#include <sched.h>
#include <string.h>

/* --- write-back (S3, S4, S9, S12) ----------------------------------------- */

struct wb_ctx {
	struct ps_space *s;
	enum ps_writeback_mode mode;
	ps_writeback_fn fn;
	void *ctx;
	struct ps_writeback_stats st;
	uint64_t start; /* of the range: errors say where from it */
	int first_error;
	uint64_t in_fn; /* the frame @fn is writing, or UINT64_MAX */
	/* The run being written (B4): frames under WRITEBACK, @fn to come. */
	const uint64_t *run_frames;
	uint64_t run_pending;
	const struct wb_ctx *outer; /* this thread's enclosing write-back */
	/*
	 * The addresses of the last whole huge frame whose visit kept it in
	 * the set (S19): its other words keep their bits without a visit.
	 */
	uint64_t kept_start, kept_end;
};

/*
 * This thread's write-backs, innermost first: a callback that starts an
 * INTEGRITY write-back of the frame it is writing would wait for itself
 * (S12). Only this thread reads or writes it.
 */
static _Thread_local const struct wb_ctx *wb_current;

/*
 * Is a write-back of @frame in @s in flight in this very thread (S12): the
 * frame @fn is writing, or one of its run that WRITEBACK already covers and
 * whose @fn is still to come?
 */
static bool wb_mine(const struct ps_space *s, uint64_t frame)
{
	for (const struct wb_ctx *c = wb_current; c; c = c->outer) {
		if (c->s != s)
			continue;
		if (c->in_fn == frame)
			return true;
		for (uint64_t m = c->run_pending; m; m &= m - 1)
			if (c->run_frames[__builtin_ctzll(m)] == frame)
				return true;
	}
	return false;
}

/* Count an error at page @addr; the first says where (stats). */
static void wb_error(struct wb_ctx *c, int rc, uint64_t addr)
{
	c->st.errors++;
	if (!c->first_error) {
		c->first_error = rc;
		c->st.error_offset = addr - c->start;
	}
}

/* Clear WRITE on the entry at @addr (stable pages), if it is @frame's. */
static void write_protect_entry(struct ps_space *s, uint64_t addr,
				uint64_t frame)
{
	ps_pte_t e;

	if (ps_pgtable_get(s->pt, addr, &e))
		return;
	while (ps_pte_is_present(e) && ps_pte_frame(e) == frame &&
	       ps_pte_is_writable(e)) {
		if (!ps_pgtable_cmpxchg(s->pt, addr, &e, e & ~PS_PTE_WRITE))
			break; /* else e was refreshed: look again */
	}
}

/* wb_hold(): the 4 KiB word is free in a space with huge frames. */
#define WB_AGAIN 2

/*
 * Hold the frame mapped at @addr for a visit (S3, S9): a reference of the
 * visit's own first, so that the frame can be neither freed nor handed to
 * another owner while the visit looks at it and @fn copies it (an unmap
 * meanwhile drops only the mapping's reference, and the visit's put frees
 * it, after @fn; a discard finds the visit's reference and leaves the
 * page, S10); then its LOCKED bit; then the entry read again
 * under the bit, as a write fault does (S3). The frame may have been
 * unmapped, freed and mapped elsewhere since the entry was first read: if
 * the entry no longer maps it, let go and look again, like the fault's
 * FAULT_AGAIN. Returns 0 with *@frame_out held and locked, 1 if nothing is
 * mapped at @addr, -EOVERFLOW (the frame is at the reference limit), or
 * WB_AGAIN: the 4 KiB word is free and the space has huge frames, so the page
 * may be part of a whole frame now (S19): the caller looks again from the top.
 */
static int wb_hold(struct ps_space *s, uint64_t addr, uint64_t *frame_out)
{
	for (;;) {
		struct ps_page *p;
		uint64_t frame, w;
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
		    ps_pte_frame(e) >= s->nframes)
			return 1; /* nothing mapped: nothing to write */
		frame = ps_pte_frame(e);
		p = &s->frames[frame];
		FAILPOINT(FP_WB_LOOKED_UP, addr);
		if (!ps_page_try_get(p)) {
			w = ps_page_load(p);
			if ((w & PS_PAGE_LIVE) &&
			    ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
				return -EOVERFLOW;
			if (w & PS_PAGE_FROZEN) {
				sched_yield(); /* a freezer holds it (S8) */
			} else if (ps__space_huge(s)) {
				uint64_t unit;

				/*
				 * In a whole frame mapped by 4 KiB entries (its
				 * huge entry split, by ps_pgtable_split() say):
				 * S19 takes no unit there, so this page goes
				 * alone, on its own word (S17: split the
				 * frame's state first). Else freed: again.
				 */
				(void)ps__space_word(s, frame, &unit);
				if (PS_SPACE_UNIT_ORDER(unit) &&
				    ps__space_split_frame(s, frame,
							  PS_SPACE_ORDER_4K))
					return -EBUSY; /* S16 broken */
				return WB_AGAIN; /* in a whole frame? S19 */
			}
			continue; /* freed or frozen: look again */
		}
		ps_page_lock(p);
		if (!ps_pgtable_get(s->pt, addr, &e) && ps_pte_is_present(e) &&
		    ps_pte_frame(e) == frame) {
			*frame_out = frame;
			return 0;
		}
		/* Replaced under us: let go (the put may free it), again. */
		ps_page_unlock(p);
		ps__space_frame_put(s, frame);
	}
}

/* writeback_frame(): another write-back of the frame is in flight (S12). */
#define WB_BUSY (-1)

/*
 * What a visit does with a frame it holds (a reference and LOCKED), decided
 * before it changes anything (S12, S4, S9): WB_WRITE, still LOCKED; or WB_DONE,
 * unlocked, with the verdict in *@v (PS__HBM_KEEP or PS__HBM_CLEAR); or
 * WB_BUSY, unlocked: an INTEGRITY write-back found the frame under another
 * write-back and waits for it before it looks again.
 */
#define WB_WRITE 100
#define WB_DONE 101

static int wb_look(struct wb_ctx *c, struct ps_page *p, int *v)
{
	uint64_t w = ps_page_load(p);

	if (w & PS_PAGE_WRITEBACK) {
		/*
		 * S12: another write-back's @fn is writing the frame (it set
		 * WRITEBACK under this bit, and keeps the page in the set
		 * until it ends). CLEAN leaves it (dirty or not) to that one
		 * and to the next visit; INTEGRITY waits for it, unlocked.
		 */
		ps_page_unlock(p);
		if (c->mode == PS_WB_INTEGRITY)
			return WB_BUSY;
		if (w & PS_PAGE_DIRTY)
			c->st.skipped_writeback++;
		*v = PS__HBM_KEEP;
		return WB_DONE;
	}
	if (!(w & PS_PAGE_DIRTY)) {
		ps_page_unlock(p);
		/* S9: a pinned frame may be unpinned dirty: keep watching. */
		*v = ps_page_word_pins(w) ? PS__HBM_KEEP : PS__HBM_CLEAR;
		return WB_DONE;
	}
	if (ps_page_word_pins(w) && c->mode == PS_WB_CLEAN) {
		ps_page_unlock(p);
		c->st.skipped_pinned++;
		*v = PS__HBM_KEEP; /* stays dirty */
		return WB_DONE;
	}
	return WB_WRITE;
}

/*
 * Under the frame's LOCKED bit, inside the PROTECTION invalidation and after
 * its entry was write-protected: set WRITEBACK and clear DIRTY (S4, S5, S12).
 * *@pinned: the clear's old word showed a pin (for CLEAN: it refused, the
 * frame stays dirty, WRITEBACK ended again); *@busy: WRITEBACK was set by
 * hand (never by a write-back: this visit read it clear under LOCKED).
 */
static void wb_clean(struct wb_ctx *c, struct ps_page *p, bool *pinned,
		     bool *busy)
{
	*pinned = false;
	/*
	 * S12: WRITEBACK is set only under LOCKED, which this visit holds,
	 * and it read clear above: the start cannot fail (a flag set by hand
	 * is treated as another write-back's).
	 */
	*busy = !ps_page_start_writeback(p);
	if (*busy)
		return;
	if (c->mode == PS_WB_CLEAN) {
		/*
		 * S4: one CAS clears DIRTY only while unpinned. A pin that
		 * raced in since the look above (a pin for read needs no
		 * LOCKED) keeps the frame dirty, never clean for a moment:
		 * a mark in between would find it clean and run the dirty
		 * hook for a transition no write-back made.
		 */
		*pinned = !ps_page_clear_flag_if_unpinned(p, PS_PAGE_DIRTY);
		if (*pinned)
			(void)ps_page_end_writeback(p);
	} else {
		/* S4: the clear's old word orders every pin before or after. */
		*pinned = ps_page_word_pins(ps_page_fetch_clear_flags(
				  p, PS_PAGE_DIRTY)) != 0;
	}
}

/*
 * After the invalidation ended, still LOCKED: a frame that will not be
 * written (WRITEBACK set by hand, or pinned under CLEAN) is let go with its
 * verdict, returned; WB_WRITE: the caller writes it (wb_write()) once it
 * has put the page back into the set (S12) and dropped LOCKED.
 */
static int wb_after_clean(struct wb_ctx *c, struct ps_page *p, bool pinned,
			  bool busy)
{
	if (!busy && !(pinned && c->mode == PS_WB_CLEAN))
		return WB_WRITE;
	ps_page_unlock(p);
	if (busy)
		return c->mode == PS_WB_INTEGRITY ? WB_BUSY : PS__HBM_KEEP;
	c->st.skipped_pinned++;
	return PS__HBM_KEEP; /* stays dirty */
}

/*
 * Write @frame, mapped at @addr: held (a reference), WRITEBACK set, DIRTY
 * cleared, the page back in the set, LOCKED dropped. Calls @fn, dirties the
 * frame again if the write failed or a device may have written after a bounce,
 * ends WRITEBACK; returns the verdict. The caller drops the reference.
 */
static int wb_write(struct wb_ctx *c, uint64_t addr, uint64_t frame,
		    bool pinned)
{
	struct ps_space *s = c->s;
	struct ps_page *p = &s->frames[frame];
	bool redirty;
	uint64_t w;
	int rc;

	c->in_fn = frame;
	rc = c->fn(c->ctx, addr, frame, pinned);
	redirty = rc != 0;
	if (!rc && pinned) {
		c->st.bounced++;
		FAILPOINT(FP_WB_BOUNCED, addr);
		/* A device may have written after the copy: stays dirty. */
		redirty = ps__space_write_pinned(ps_page_load(p));
		if (redirty)
			c->st.kept_dirty++;
	}
	/*
	 * Dirty again, and the hook run, before the write-back ends: a waiter
	 * (S12) finds the frame dirty, and no other write-back can clean it
	 * before the hook for this dirtying has run (S5: every clean comes
	 * after the hook of the dirtying it writes). Under the frame's LOCKED
	 * bit, as every marker (S5): a write fault that finds the frame dirty
	 * under that bit makes its entry writable at once, trusting that the
	 * hook has run (S3). No LOCKED bit of the batch is held here (B4).
	 */
	if (redirty) {
		ps_page_lock(p);
		(void)ps__space_mark_frame_dirty(s, frame);
		ps_page_unlock(p);
	}
	c->in_fn = UINT64_MAX;
	w = ps_page_end_writeback(p);
	FAILPOINT(FP_WB_ENDED, addr);
	if (rc) {
		wb_error(c, rc, addr);
		return PS__HBM_KEEP;
	}
	if (!pinned) {
		c->st.written++;
		return PS__HBM_CLEAR;
	}
	if (redirty)
		return PS__HBM_KEEP;
	ps__space_clear_write_pinned(p);
	/*
	 * S9: still pinned (for read), or unpinned dirty after the copy (a
	 * device that finished meanwhile): the next write-back looks again.
	 * The end's old word is later than the copy.
	 */
	if (ps_page_word_pins(w) || (w & PS_PAGE_DIRTY))
		return PS__HBM_KEEP;
	return PS__HBM_CLEAR;
}

/*
 * Write back @frame, mapped at @addr, held and LOCKED by wb_hold(): one page
 * on its own (the batch's exceptions). Drops LOCKED (before @fn runs); the
 * caller drops the reference. Returns the visit's verdict, or WB_BUSY: an
 * INTEGRITY write-back found the frame under another write-back, and waits
 * for it before it looks again (S12).
 */
static int writeback_frame(struct wb_ctx *c, uint64_t addr, uint64_t frame)
{
	struct ps_space *s = c->s;
	struct ps_page *p = &s->frames[frame];
	bool pinned, busy;
	int v = PS__HBM_KEEP, look = wb_look(c, p, &v), rc;

	if (look == WB_BUSY)
		return WB_BUSY;
	if (look == WB_DONE)
		return v;
	/*
	 * Stable pages: no writable mapping, primary or secondary, so a CPU
	 * write from now on faults and dirties the frame again (S3). A pinned
	 * frame too: the CPU may write it after the bounce copy. DIRTY is
	 * cleared inside the invalidation, before it ends (S5): a secondary
	 * mapping for write that the end lets through (the helper retries
	 * until no invalidation is in progress) marks the frame dirty after
	 * this clear, so it never maps a clean frame writable.
	 */
	rc = ps_notifier_invalidate_start(&s->notifier, addr, PAGE_SIZE,
					  PS_NOTIFIER_PROTECTION, 0);
	if (rc) {
		/*
		 * -ENOMEM: a secondary mapping may still be writable, so the
		 * frame is not cleaned (a write through it would be lost):
		 * it stays dirty, the page stays in the set, @fn is not
		 * called, and the error says where.
		 */
		ps_page_unlock(p);
		wb_error(c, rc, addr);
		return PS__HBM_KEEP;
	}
	write_protect_entry(s, addr, frame);
	wb_clean(c, p, &pinned, &busy);
	FAILPOINT(FP_WB_CLEARED, addr);
	(void)ps_notifier_invalidate_end(&s->notifier, addr, PAGE_SIZE);
	/* Keep right after the end: tests check DIRTY is clear here (S5). */
	FAILPOINT(FP_WB_INVALIDATED, addr);
	v = wb_after_clean(c, p, pinned, busy);
	if (v != WB_WRITE)
		return v;
	/*
	 * S12: the page goes back into the set before the bit is dropped,
	 * so that a write-back that begins while @fn runs visits it, and
	 * waits for @fn (INTEGRITY).
	 */
	(void)ps__hbm_set(&s->wb, ps__space_page_index(addr));
	ps_page_unlock(p);
	return wb_write(c, addr, frame, pinned);
}

/* --- whole huge frames: one unit (S19; S17 in lib/space-huge.c) --- */

/* A whole huge frame a visit holds (a reference and LOCKED on its word). */
struct wb_unit {
	uint64_t addr;	    /* the unit's first page */
	uint64_t head;	    /* its first frame */
	unsigned int order; /* PS_SPACE_ORDER_2M or _1G */
	uint64_t la;	    /* the first page of the leaf that maps it */
	unsigned int lo;    /* that leaf's order (>= order) */
	uint64_t lframe;    /* that leaf's frame */
	struct ps_page *p;  /* the unit's word */
};

/* wb_hold_unit(): the page is not under a whole frame's word. */
#define WBU_PAGE 1
/* wb_hold_unit(): nothing is mapped at the page. */
#define WBU_NONE 2
/* wb_hold_unit(): it split the unit's state to 4 KiB: as WBU_PAGE. */
#define WBU_SPLIT 4

/*
 * Hold the whole huge frame whose page @addr is, if a huge leaf maps it and its
 * state is whole (S19): a reference of the visit's own and LOCKED in one CAS on
 * the unit's word, which never waits (a word locked by another thread, frozen,
 * or split meanwhile: yield and look again, S8), then the leaf read again under
 * the bit (S3). LOCKED also keeps the word whole: a split waits for it
 * (split_state() in lib/space-huge.c). Returns 0 with *@u filled, WBU_PAGE (a 4
 * KiB entry, or state split to 4 KiB words under the leaf: the caller visits
 * the page on its own), WBU_SPLIT (the same, after this call split the state of
 * a 2 MiB part of a 1 GiB frame: every page of the part is dirty if it was),
 * WBU_NONE, -EOVERFLOW, or -EBUSY (a split refused: a part in use, S16 broken).
 */
static int wb_hold_unit(struct ps_space *s, uint64_t addr, struct wb_unit *u)
{
	for (;;) {
		ps_pte_t e, leaf, e2, leaf2;
		unsigned int lo, lo2, o;
		uint64_t f, unit, unit2, seen;
		struct ps_page *p;

		if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf) ||
		    !ps_pte_is_present(e) || ps_pte_frame(e) >= s->nframes)
			return WBU_NONE;
		if (!lo)
			return WBU_PAGE;
		f = ps_pte_frame(e);
		p = ps__space_word(s, f, &unit);
		o = PS_SPACE_UNIT_ORDER(unit);
		if (!o || o > lo)
			return WBU_PAGE; /* split to 4 KiB (or not declared) */
		if (o < lo) {
			/*
			 * A whole 2 MiB part of a split 1 GiB frame under a 1
			 * GiB leaf: write-protecting it alone splits the leaf
			 * (to 4 KiB entries there), so its state goes to 4 KiB
			 * words first (S17), and the page the 4 KiB way.
			 */
			const uint64_t a2m =
				addr & ~((PAGE_SIZE << PS_SPACE_ORDER_2M) - 1);
			int rc = ps__space_split_frame(s, f, PS_SPACE_ORDER_4K);

			if (rc)
				return rc;
			/*
			 * The entry too, for that 2 MiB only (its other parts
			 * get 2 MiB leaves over their whole words), so that
			 * write faults find entries of their state's order.
			 * On -ENOMEM the 1 GiB leaf stays: the 4 KiB path
			 * still writes the part back.
			 */
			(void)ps_pgtable_split(s->pt, a2m,
					       PAGE_SIZE << PS_SPACE_ORDER_2M);
			/*
			 * Every page has the part's DIRTY now: all of them in
			 * the set (S9), not only those logged.
			 */
			ps__hbm_set_range(&s->wb, ps__space_page_index(a2m),
					  PS__SPACE_2M_PAGES);
			return WBU_SPLIT;
		}
		FAILPOINT(FP_WB_LOOKED_UP, addr);
		if (!ps_page_try_get_lock_and_set(p, 0, &seen)) {
			if ((seen & PS_PAGE_LIVE) &&
			    ps_page_word_refs(seen) >= PS_PAGE_REFS_MAX)
				return -EOVERFLOW;
			sched_yield(); /* locked, frozen, split: again (S8) */
			continue;
		}
		/* Under the bit (S3): the same leaf, the word still whole. */
		if (!ps_pgtable_get_level(s->pt, addr, &e2, &lo2, &leaf2) &&
		    lo2 == lo && ps_pte_is_present(leaf2) &&
		    ps_pte_frame(leaf2) == ps_pte_frame(leaf) &&
		    ps__space_word(s, f, &unit2) == p && unit2 == unit) {
			u->order = o;
			u->head = PS_SPACE_UNIT_FRAME(unit);
			u->addr = addr & ~((PAGE_SIZE << o) - 1);
			u->lo = lo;
			u->la = addr & ~((PAGE_SIZE << lo) - 1);
			u->lframe = ps_pte_frame(leaf);
			u->p = p;
			return 0;
		}
		/* Replaced under us: let go (the put may free it), again. */
		ps_page_unlock(p);
		ps__space_put_unit(s, unit);
	}
}

/*
 * Clear WRITE on the huge leaf that maps the unit, in one CAS (stable pages,
 * S3), if it still maps the same frames: the leaf is not split.
 */
static void write_protect_leaf(struct ps_space *s, const struct wb_unit *u)
{
	ps_pte_t e, leaf;
	unsigned int lo;

	if (ps_pgtable_get_level(s->pt, u->la, &e, &lo, &leaf))
		return;
	while (lo == u->lo && ps_pte_is_present(leaf) &&
	       ps_pte_frame(leaf) == u->lframe && ps_pte_is_writable(leaf) &&
	       ps_pgtable_cmpxchg_huge(s->pt, u->la, u->lo, &leaf,
				       leaf & ~PS_PTE_WRITE) == -EAGAIN)
		; /* leaf was refreshed (a fault set A/D): again */
}

/*
 * wb_write() for a unit: @fn for each 4 KiB page of it, in order, with the
 * page's address and frame (the callback's contract is one 4 KiB frame), and
 * the pinned flag the unit's clear decided; the first error stops the loop
 * (the unit is dirty again: all of it is written next time). Then as
 * wb_write(): dirty again if the write failed or a device may have written
 * after a bounce, end WRITEBACK on the unit's word, the verdict.
 */
static int wb_write_unit(struct wb_ctx *c, const struct wb_unit *u, bool pinned)
{
	struct ps_space *s = c->s;
	const uint64_t n = UINT64_C(1) << u->order;
	bool redirty;
	uint64_t w, k;
	int rc = 0;

	c->in_fn = u->head;
	for (k = 0; k < n && !rc; k++)
		rc = c->fn(c->ctx, u->addr + (k << PAGE_SHIFT), u->head + k,
			   pinned);
	redirty = rc != 0;
	if (!rc && pinned) {
		c->st.bounced += n;
		FAILPOINT(FP_WB_BOUNCED, u->addr);
		/* A device may have written after the copy: stays dirty. */
		redirty = ps__space_write_pinned(ps_page_load(u->p));
		if (redirty)
			c->st.kept_dirty++;
	}
	/* As wb_write(): the mark and its hook under LOCKED (S5, S12). */
	if (redirty) {
		ps_page_lock(u->p);
		if (!ps_page_test_and_set_flag(u->p, PS_PAGE_DIRTY))
			ps__space_frame_dirtied(s, u->head);
		ps_page_unlock(u->p);
	}
	c->in_fn = UINT64_MAX;
	w = ps_page_end_writeback(u->p);
	FAILPOINT(FP_WB_ENDED, u->addr);
	if (rc) {
		wb_error(c, rc, u->addr);
		return PS__HBM_KEEP;
	}
	if (!pinned) {
		c->st.written += n;
		return PS__HBM_CLEAR;
	}
	if (redirty)
		return PS__HBM_KEEP;
	ps__space_clear_write_pinned(u->p);
	if (ps_page_word_pins(w) || (w & PS_PAGE_DIRTY))
		return PS__HBM_KEEP; /* S9, as wb_write() */
	return PS__HBM_CLEAR;
}

/*
 * writeback_frame() for a unit held by wb_hold_unit(): one look, one
 * PROTECTION invalidation of the leaf's extent, the leaf write-protected in
 * one CAS, WRITEBACK set and DIRTY cleared on the unit's word (S4, S5, S12),
 * every page of the unit back in the set before LOCKED is dropped, then the
 * write. Returns the verdict or WB_BUSY, as writeback_frame().
 */
static int writeback_unit(struct wb_ctx *c, const struct wb_unit *u)
{
	struct ps_space *s = c->s;
	const uint64_t len = PAGE_SIZE << u->lo;
	bool pinned, busy;
	int rc, v = PS__HBM_KEEP, look = wb_look(c, u->p, &v);

	if (look == WB_BUSY)
		return WB_BUSY;
	if (look == WB_DONE)
		return v;
	rc = ps_notifier_invalidate_start(&s->notifier, u->la, len,
					  PS_NOTIFIER_PROTECTION, 0);
	if (rc) {
		/* -ENOMEM: not cleaned, as writeback_frame() does. */
		ps_page_unlock(u->p);
		wb_error(c, rc, u->addr);
		return PS__HBM_KEEP;
	}
	write_protect_leaf(s, u);
	wb_clean(c, u->p, &pinned, &busy);
	FAILPOINT(FP_WB_CLEARED, u->addr);
	(void)ps_notifier_invalidate_end(&s->notifier, u->la, len);
	FAILPOINT(FP_WB_INVALIDATED, u->addr);
	v = wb_after_clean(c, u->p, pinned, busy);
	if (v != WB_WRITE)
		return v;
	/* S12: back in the set, every page of the unit, before the bit. */
	ps__hbm_set_range(&s->wb, ps__space_page_index(u->addr),
			  UINT64_C(1) << u->order);
	ps_page_unlock(u->p);
	return wb_write_unit(c, u, pinned);
}

/* writeback_huge_page(): the verdict is the unit's (it covers the word). */
#define WBU_UNIT 3

/*
 * The page @bit as part of a whole huge frame: hold the unit, write it back,
 * wait and again if busy (as writeback_page()). Returns WBU_UNIT with the
 * unit's verdict in *@v, WBU_NONE (nothing mapped: *@v CLEAR), 0 (an error
 * counted: *@v KEEP), or WBU_PAGE or WBU_SPLIT: the page is the caller's,
 * per 4 KiB.
 */
static int writeback_huge_page(struct wb_ctx *c, uint64_t bit, int *v)
{
	const uint64_t addr = bit << PAGE_SHIFT;
	struct wb_unit u;
	int rc;

	memset(&u, 0, sizeof(u));
	for (;;) {
		rc = wb_hold_unit(c->s, addr, &u);
		if (rc == WBU_PAGE || rc == WBU_SPLIT)
			return rc;
		if (rc == WBU_NONE) {
			*v = PS__HBM_CLEAR;
			return WBU_NONE;
		}
		if (rc < 0) {
			wb_error(c, rc, addr);
			*v = PS__HBM_KEEP;
			return 0;
		}
		*v = writeback_unit(c, &u);
		if (*v == WB_BUSY && wb_mine(c->s, u.head)) {
			wb_error(c, -EDEADLK,
				 addr); /* S12: this thread's own @fn */
			*v = PS__HBM_KEEP;
		}
		if (*v != WB_BUSY) {
			ps__space_put_unit(c->s,
					   PS_SPACE_UNIT(u.head, u.order));
			if (*v == PS__HBM_KEEP) {
				c->kept_start = u.addr;
				c->kept_end = u.addr + (PAGE_SIZE << u.order);
			}
			return WBU_UNIT;
		}
		FAILPOINT(FP_WB_WAIT, addr);
		ps_page_wait_writeback(u.p);
		ps__space_put_unit(c->s, PS_SPACE_UNIT(u.head, u.order));
	}
}

/* One page on its own: hold it, write it back, wait and again if busy. */
static enum ps__hbm_verdict writeback_page(struct wb_ctx *c, uint64_t bit)
{
	uint64_t addr = bit << PAGE_SHIFT, frame;
	int rc, v;

	for (;;) {
		if (PS_UNLIKELY(ps__space_huge(c->s))) {
			rc = writeback_huge_page(c, bit, &v);
			if (rc != WBU_PAGE && rc != WBU_SPLIT)
				return (enum ps__hbm_verdict)v; /* S19 */
		}
		rc = wb_hold(c->s, addr, &frame);
		if (rc == WB_AGAIN) {
			sched_yield();
			continue;
		}
		if (rc > 0)
			return PS__HBM_CLEAR; /* nothing mapped */
		if (rc < 0) {
			wb_error(c, rc, addr);
			return PS__HBM_KEEP; /* the next one looks */
		}
		v = writeback_frame(c, addr, frame);
		if (v == WB_BUSY && wb_mine(c->s, frame)) {
			/* S12: this thread's own @fn is writing it. */
			wb_error(c, -EDEADLK, addr);
			v = PS__HBM_KEEP;
		}
		if (v != WB_BUSY) {
			ps__space_frame_put(c->s, frame); /* the visit's (S7) */
			return (enum ps__hbm_verdict)v;
		}
		/* S12: wait, holding the frame; then look again. */
		FAILPOINT(FP_WB_WAIT, addr);
		ps_page_wait_writeback(&c->s->frames[frame]);
		ps__space_frame_put(c->s, frame);
	}
}

/* The lowest run of consecutive set bits of @m (not 0). */
static uint64_t lowest_run(uint64_t m)
{
	const unsigned int r0 = (unsigned int)__builtin_ctzll(m);
	const uint64_t rest = ~(m >> r0);
	const unsigned int n = rest ? (unsigned int)__builtin_ctzll(rest)
				    : 64 - r0;

	return (n == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << n) - 1)) << r0;
}

/*
 * B1: hold the frames of the pages in @run (consecutive bits of the word that
 * starts at page @first): one read-side section, one walk, a reference and
 * LOCKED in one CAS that never waits, the entry read again under the bit.
 * Returns the pages held (their frames in @frames); the pages whose frame
 * was locked, freed, frozen or replaced go into *@slow (B5).
 */
static uint64_t wb_hold_run(struct wb_ctx *c, uint64_t first, uint64_t run,
			    uint64_t *frames, uint64_t *slow)
{
	struct ps_space *s = c->s;
	uint64_t held = 0, letgo = 0;
	PS_ATOMIC(ps_pte_t) *leaf;

	ps__space_read_lock();
	leaf = ps_pgtable_lookup_leaf(s->pt, first << PAGE_SHIFT);
	if (PS_UNLIKELY(!leaf) && ps__space_huge(s)) {
		/*
		 * Perhaps a huge leaf, which has no cursor (S19): not "nothing
		 * mapped". B5's page path knows huge frames.
		 */
		ps__space_read_unlock();
		*slow |= run;
		return 0;
	}
	for (uint64_t m = run; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);
		uint64_t seen;
		ps_pte_t e;

		/* Acquire: pairs with the entry's CAS (as a lookup). */
		e = leaf ? atomic_load_explicit(&leaf[i], memory_order_acquire)
			 : PS_PTE_NONE;
		if (!ps_pte_is_present(e) || ps_pte_frame(e) >= s->nframes)
			continue; /* nothing mapped: nothing to write */
		frames[i] = ps_pte_frame(e);
		FAILPOINT(FP_WB_LOOKED_UP, (first + i) << PAGE_SHIFT);
		if (!ps_page_try_get_lock_and_set(&s->frames[frames[i]], 0,
						  &seen)) {
			*slow |= UINT64_C(1) << i; /* locked, freed, frozen */
			continue;
		}
		/*
		 * The entry again, under the bit (S3), through the cursor.
		 * Acquire: as the first read.
		 */
		e = atomic_load_explicit(&leaf[i], memory_order_acquire);
		if (!ps_pte_is_present(e) || ps_pte_frame(e) != frames[i])
			letgo |= UINT64_C(1) << i; /* replaced meanwhile */
		else
			held |= UINT64_C(1) << i;
	}
	ps__space_read_unlock();
	for (uint64_t m = letgo; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);

		/* Outside the section: the put may free it (S7). */
		if (ps_page_unlock_and_put(&s->frames[frames[i]]))
			ps__space_frame_freed(s, frames[i]);
	}
	*slow |= letgo;
	return held;
}

/*
 * B2: look at each frame of @held under its bit. Returns the pages to write,
 * still held and LOCKED; the others are let go, with their verdict in *@keep
 * or, for an INTEGRITY write-back that waits, in *@slow (B5).
 */
static uint64_t wb_look_run(struct wb_ctx *c, const uint64_t *frames,
			    uint64_t held, uint64_t *keep, uint64_t *slow)
{
	uint64_t write = 0;

	for (uint64_t m = held; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);
		int v = PS__HBM_KEEP;

		switch (wb_look(c, &c->s->frames[frames[i]], &v)) {
		case WB_WRITE:
			write |= UINT64_C(1) << i;
			continue;
		case WB_BUSY:
			*slow |= UINT64_C(1) << i; /* it waits, on its own */
			break;
		default:
			if (v == PS__HBM_KEEP)
				*keep |= UINT64_C(1) << i;
			break;
		}
		ps__space_frame_put(c->s, frames[i]);
	}
	return write;
}

/* Stable pages (S3): clear WRITE on the run's entries, through one cursor. */
static void write_protect_run(struct ps_space *s, uint64_t start,
			      const uint64_t *frames, unsigned int n)
{
	PS_ATOMIC(ps_pte_t) *leaf;

	ps__space_read_lock();
	leaf = ps_pgtable_lookup_leaf(s->pt, start);
	for (unsigned int k = 0; leaf && k < n; k++) {
		/* Acquire: as a lookup (a CAS guess). */
		ps_pte_t e = atomic_load_explicit(&leaf[k],
						  memory_order_acquire);

		while (ps_pte_is_present(e) && ps_pte_frame(e) == frames[k] &&
		       ps_pte_is_writable(e) &&
		       ps_pgtable_cmpxchg_leaf(s->pt, &leaf[k],
					       start + ((uint64_t)k
							<< PAGE_SHIFT),
					       &e,
					       e & ~PS_PTE_WRITE) == -EAGAIN)
			;
	}
	ps__space_read_unlock();
}

/*
 * B3 and B4 for @run, consecutive pages of the word at page @first whose
 * frames (in @frames) are held and LOCKED, and to be written: one PROTECTION
 * invalidation around the write-protect and the DIRTY clears, then the pages
 * back into the set, every LOCKED bit of the run dropped, then @fn for each.
 * Returns the pages to keep. If the invalidation cannot start (-ENOMEM), its
 * secondary mappings may still be writable: nothing is cleaned, every frame
 * stays dirty, every page in the set, and @fn is not called (a write through
 * such a mapping after a clean would be lost).
 */
static uint64_t wb_write_run(struct wb_ctx *c, uint64_t first, uint64_t run,
			     const uint64_t *frames)
{
	struct ps_space *s = c->s;
	const unsigned int r0 = (unsigned int)__builtin_ctzll(run);
	const unsigned int n = (unsigned int)__builtin_popcountll(run);
	const uint64_t start = (first + r0) << PAGE_SHIFT;
	const uint64_t len = (uint64_t)n << PAGE_SHIFT;
	uint64_t keep = 0, pinned_m = 0, skip_m = 0, write;
	int rc;

	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_PROTECTION, 0);
	if (rc) {
		for (uint64_t m = run; m; m &= m - 1) {
			const unsigned int i = (unsigned int)__builtin_ctzll(m);

			if (ps_page_unlock_and_put(&s->frames[frames[i]]))
				ps__space_frame_freed(s, frames[i]);
			wb_error(c, rc, (first + i) << PAGE_SHIFT);
		}
		return run;
	}
	write_protect_run(s, start, frames + r0, n);
	for (unsigned int i = r0; i < r0 + n; i++) {
		bool pinned, busy;

		wb_clean(c, &s->frames[frames[i]], &pinned, &busy);
		if (pinned)
			pinned_m |= UINT64_C(1) << i;
		if (wb_after_clean(c, &s->frames[frames[i]], pinned, busy) !=
		    WB_WRITE)
			skip_m |= UINT64_C(1) << i;
		FAILPOINT(FP_WB_CLEARED, (first + i) << PAGE_SHIFT);
	}
	(void)ps_notifier_invalidate_end(&s->notifier, start, len);
	/* Keep right after the end: tests check DIRTY is clear here. */
	for (unsigned int i = r0; i < r0 + n; i++)
		FAILPOINT(FP_WB_INVALIDATED, (first + i) << PAGE_SHIFT);

	/*
	 * B4, S12: the pages to write go back into the set before their bits
	 * are dropped (one RMW), then every LOCKED bit of the run goes before
	 * its first @fn runs (it runs with no library lock held).
	 */
	write = run & ~skip_m;
	ps__hbm_set_mask(&s->wb, first, write);
	for (uint64_t m = write; m; m &= m - 1)
		ps_page_unlock(&s->frames[frames[__builtin_ctzll(m)]]);
	for (uint64_t m = skip_m; m; m &= m - 1) {
		/* Let go by wb_after_clean(), with its verdict: KEEP. */
		keep |= m & -m;
		ps__space_frame_put(s, frames[__builtin_ctzll(m)]);
	}
	/* S12: the run's frames this thread has under WRITEBACK (wb_mine). */
	c->run_frames = frames;
	c->run_pending = write;
	for (uint64_t m = write; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);

		if (wb_write(c, (first + i) << PAGE_SHIFT, frames[i],
			     pinned_m >> i & 1) == PS__HBM_KEEP)
			keep |= UINT64_C(1) << i;
		c->run_pending &= ~(UINT64_C(1) << i);
		ps__space_frame_put(s, frames[i]); /* the visit's (S7) */
	}
	c->run_frames = NULL;
	return keep;
}

/*
 * The word's pages where no leaf of 4 KiB entries covers them, in a space
 * with huge frames (S19): under a huge leaf, a whole frame is visited once
 * for all its pages (its unit covers the word: 64 pages, aligned), split
 * state page by page as 4 KiB frames are. Returns the bits to keep.
 */
static uint64_t writeback_huge_word(struct wb_ctx *c, uint64_t first,
				    uint64_t bits)
{
	uint64_t keep = 0;

	/*
	 * A unit this write-back kept (skipped pinned, under another
	 * write-back, failed): its other words are kept as they are, without
	 * a visit each. Keeping a bit is always safe (S9); clearing one is
	 * not, so a unit written is looked at again by each word (its pages
	 * are back in the set, S12, and found clean).
	 */
	if ((first << PAGE_SHIFT) >= c->kept_start &&
	    (first << PAGE_SHIFT) < c->kept_end)
		return bits;
	for (uint64_t todo = bits, done = 0; todo;) {
		const unsigned int i = (unsigned int)__builtin_ctzll(todo);
		int v = PS__HBM_KEEP;

		todo &= todo - 1;
		done |= UINT64_C(1) << i;
		switch (writeback_huge_page(c, first + i, &v)) {
		case WBU_UNIT:
			/* The unit covers the word: its verdict. */
			return v == PS__HBM_KEEP
				       ? keep | todo | (UINT64_C(1) << i)
				       : keep;
		case WBU_SPLIT:
			/*
			 * The part is dirty on every page now if it was, and
			 * all of them back in the set: the next words are
			 * visited by this pass, this word's pages here.
			 */
			todo = ~done;
			/* fall through */
		case WBU_PAGE:
			v = writeback_page(c, first + i);
			break;
		default:
			break;
		}
		if (v == PS__HBM_KEEP)
			keep |= UINT64_C(1) << i;
	}
	return keep;
}

/* Has the word that starts at page @first a leaf of 4 KiB entries? */
static bool wb_has_leaf(struct ps_space *s, uint64_t first)
{
	bool has;

	ps__space_read_lock();
	has = ps_pgtable_lookup_leaf(s->pt, first << PAGE_SHIFT) != NULL;
	ps__space_read_unlock();
	return has;
}

/*
 * The pages of one word of the write-back set ("Batches" under S9): @bits,
 * the word's taken bits, bit i for page @first + i (@first a multiple of 64,
 * so all 64 share one leaf of the page table). Run by run: the lowest run of
 * consecutive pages left is held (B1) and looked at (B2); its lowest run of
 * pages to write is invalidated, cleaned and written (B3, B4) while no other
 * frame of the word is held; pages to write above a gap are let go and taken
 * again as the next run. Returns the bits to keep.
 */
static uint64_t writeback_word(void *ctx, uint64_t first, uint64_t bits)
{
	struct wb_ctx *c = ctx;
	uint64_t frames[64];
	uint64_t todo = bits, keep = 0, slow = 0;

	/*
	 * S9 - seq_cst fence: the harvest's take of this word (A0, seq_cst)
	 * before the entry loads (acquire). Pairs with the seq_cst entry CAS
	 * of a map (map_range), followed by ps__space_wb_note()'s test, and
	 * with a read pin's seq_cst re-read (S2), which it runs before that
	 * test: without it, store buffering lets this visit read the old entry
	 * while the other side's test still reads the bit set (see "Recording
	 * the address" under S9 above). One fence for the word's pages.
	 */
	atomic_thread_fence(memory_order_seq_cst);

	/* S19: no leaf of 4 KiB entries, in a space with huge frames. */
	if (PS_UNLIKELY(ps__space_huge(c->s)) && !wb_has_leaf(c->s, first))
		return writeback_huge_word(c, first, bits);
	while (todo) {
		const uint64_t cand = lowest_run(todo);
		uint64_t held, write, run, later;

		held = wb_hold_run(c, first, cand, frames, &slow);
		write = wb_look_run(c, frames, held, &keep, &slow);
		run = write ? lowest_run(write) : 0;
		/*
		 * Pages to write beyond a gap: let go, unchanged (nothing was
		 * done to them under the bit), and held again as the next
		 * run, so that no frame of another run is LOCKED while this
		 * run's callbacks and @fn run. The put may free one (S7).
		 */
		later = write & ~run;
		for (uint64_t m = later; m; m &= m - 1) {
			const unsigned int i = (unsigned int)__builtin_ctzll(m);

			if (ps_page_unlock_and_put(&c->s->frames[frames[i]]))
				ps__space_frame_freed(c->s, frames[i]);
		}
		todo = (todo & ~cand) | later;
		if (run)
			keep |= wb_write_run(c, first, run, frames);
	}

	/* B5: the exceptions, one page at a time, holding nothing else. */
	for (uint64_t m = slow; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);

		if (writeback_page(c, first + i) == PS__HBM_KEEP)
			keep |= UINT64_C(1) << i;
	}
	return keep;
}

int ps_space_writeback(struct ps_space *s, uint64_t start, uint64_t len,
		       enum ps_writeback_mode mode, ps_writeback_fn fn,
		       void *ctx, struct ps_writeback_stats *stats)
{
	struct wb_ctx c;

	if (!ps__space_range_ok(s, start, len) || !fn ||
	    (mode != PS_WB_CLEAN && mode != PS_WB_INTEGRITY))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.mode = mode;
	c.fn = fn;
	c.ctx = ctx;
	c.start = start;
	c.in_fn = UINT64_MAX;
	c.outer = wb_current;
	wb_current = &c;
	(void)ps__hbm_harvest_words(&s->wb, ps__space_page_index(start),
				    ps__space_page_index(len), writeback_word,
				    &c);
	wb_current = c.outer;
	if (stats)
		*stats = c.st;
	return c.first_error;
}
