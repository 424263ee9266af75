// SPDX-License-Identifier: MIT
/*
 * lib/space-writeback.c - write-back (ps_space_writeback()) and the
 * write-back set it visits. The space's rules: lib/space-impl.h; write-back
 * takes the frame's LOCKED bit as a write fault does (S3, lib/space-fault.c)
 * and clears DIRTY inside its invalidation (S5, lib/space-dirty.c).
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S4, S9 and S12)
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
 *     for a frame this thread's @fn is writing gives -EDEADLK instead and keeps
 *     the page. Two callbacks in two threads that each wait for the other's
 *     INTEGRITY write-back are not detected (space.h forbids it).
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
	int first_error;
	uint64_t in_fn; /* the frame @fn is writing, or UINT64_MAX */
	const struct wb_ctx *outer; /* this thread's enclosing write-back */
};

/*
 * This thread's write-backs, innermost first: a callback that starts an
 * INTEGRITY write-back of the frame it is writing would wait for itself
 * (S12). Only this thread reads or writes it.
 */
static _Thread_local const struct wb_ctx *wb_current;

/* Is a write-back of @frame in @s in flight in this very thread (S12)? */
static bool wb_mine(const struct ps_space *s, uint64_t frame)
{
	for (const struct wb_ctx *c = wb_current; c; c = c->outer)
		if (c->s == s && c->in_fn == frame)
			return true;
	return false;
}

static void wb_error(struct wb_ctx *c, int rc)
{
	c->st.errors++;
	if (!c->first_error)
		c->first_error = rc;
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
 * mapped at @addr, or -EOVERFLOW (the frame is at the reference limit).
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
			if (w & PS_PAGE_FROZEN)
				sched_yield(); /* a freezer holds it (S8) */
			continue;	       /* freed or frozen: look again */
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
 * Write back @frame, mapped at @addr, held and LOCKED by wb_hold(). Drops
 * LOCKED (before @fn runs); the caller drops the reference. Returns the
 * visit's verdict, or WB_BUSY: an INTEGRITY write-back found the frame
 * under another write-back, and waits for it before it looks again (S12).
 */
static int writeback_frame(struct wb_ctx *c, uint64_t addr, uint64_t frame)
{
	struct ps_space *s = c->s;
	struct ps_page *p = &s->frames[frame];
	bool pinned, inval, redirty, made_dirty, busy = false;
	uint64_t w;
	int rc;

	w = ps_page_load(p);
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
		return PS__HBM_KEEP;
	}
	if (!(w & PS_PAGE_DIRTY)) {
		ps_page_unlock(p);
		/* S9: a pinned frame may be unpinned dirty: keep watching. */
		return ps_page_word_pins(w) ? PS__HBM_KEEP : PS__HBM_CLEAR;
	}
	pinned = ps_page_word_pins(w) != 0;
	if (pinned && c->mode == PS_WB_CLEAN) {
		ps_page_unlock(p);
		c->st.skipped_pinned++;
		return PS__HBM_KEEP; /* stays dirty */
	}
	/*
	 * Stable pages: no writable mapping, primary or secondary, so a CPU
	 * write from now on faults and dirties the frame again (S3). A pinned
	 * frame too: the CPU may write it after the bounce copy. DIRTY is
	 * cleared inside the invalidation, before it ends (S5): a secondary
	 * mapping for write that the end lets through (the helper retries
	 * until no invalidation is in progress) marks the frame dirty after
	 * this clear, so it never maps a clean frame writable.
	 */
	inval = !ps_notifier_invalidate_start(&s->notifier, addr, PAGE_SIZE,
					      PS_NOTIFIER_PROTECTION, 0);
	if (inval)
		write_protect_entry(s, addr, frame);
	/*
	 * S12: WRITEBACK is set only under LOCKED, which this visit holds,
	 * and it read clear above: the start cannot fail (a flag set by hand
	 * is treated as another write-back's).
	 */
	if (!ps_page_start_writeback(p)) {
		busy = true;
	} else if (c->mode == PS_WB_CLEAN) {
		/*
		 * S4: one CAS clears DIRTY only while unpinned. A pin that
		 * raced in since the look above (a pin for read needs no
		 * LOCKED) keeps the frame dirty, never clean for a moment:
		 * a mark in between would find it clean and run the dirty
		 * hook for a transition no write-back made.
		 */
		pinned = !ps_page_clear_flag_if_unpinned(p, PS_PAGE_DIRTY);
		if (pinned)
			(void)ps_page_end_writeback(p);
	} else {
		/* S4: the clear's old word orders every pin before or after. */
		w = ps_page_fetch_clear_flags(p, PS_PAGE_DIRTY);
		pinned = ps_page_word_pins(w) != 0;
	}
	FAILPOINT(FP_WB_CLEARED, addr);
	if (inval)
		(void)ps_notifier_invalidate_end(&s->notifier, addr, PAGE_SIZE);
	/* Keep right after the end: tests check DIRTY is clear here (S5). */
	FAILPOINT(FP_WB_INVALIDATED, addr);
	if (busy || (pinned && c->mode == PS_WB_CLEAN)) {
		ps_page_unlock(p);
		if (busy)
			return c->mode == PS_WB_INTEGRITY ? WB_BUSY
							  : PS__HBM_KEEP;
		c->st.skipped_pinned++;
		return PS__HBM_KEEP; /* stays dirty */
	}
	/*
	 * S12: the page goes back into the set before the bit is dropped,
	 * so that a write-back that begins while @fn runs visits it, and
	 * waits for @fn (INTEGRITY).
	 */
	(void)ps__hbm_set(&s->wb, ps__space_page_index(addr));
	ps_page_unlock(p);
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
	 * after the hook of the dirtying it writes). A hook that would wait
	 * for this write-back gets -EDEADLK (in_fn is still this frame).
	 */
	made_dirty = redirty && !ps_page_test_and_set_flag(p, PS_PAGE_DIRTY);
	if (made_dirty)
		ps__space_dirty_hook(s, frame); /* S5: this call's */
	c->in_fn = UINT64_MAX;
	w = ps_page_end_writeback(p);
	FAILPOINT(FP_WB_ENDED, addr);
	if (rc) {
		wb_error(c, rc);
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

static enum ps__hbm_verdict writeback_visit(void *ctx, uint64_t bit)
{
	struct wb_ctx *c = ctx;
	uint64_t addr = bit << PAGE_SHIFT, frame;
	int rc, v;

	/*
	 * S9 - seq_cst fence: the harvest's take of this bit (A0, seq_cst)
	 * before the entry loads (acquire, in ps_pgtable_get()). Pairs with the
	 * seq_cst entry CAS of a map (map_range), followed by
	 * ps__space_wb_note()'s test, and with a read pin's seq_cst re-read
	 * (S2), which it runs before that test: without it, store buffering
	 * lets this visit read the old entry while the other side's test still
	 * reads the bit set (see "Recording the address" under S9 above).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	for (;;) {
		rc = wb_hold(c->s, addr, &frame);
		if (rc > 0)
			return PS__HBM_CLEAR; /* nothing mapped */
		if (rc < 0) {
			wb_error(c, rc);
			return PS__HBM_KEEP; /* the next one looks */
		}
		v = writeback_frame(c, addr, frame);
		if (v == WB_BUSY && wb_mine(c->s, frame)) {
			/* S12: this thread's own @fn is writing it. */
			wb_error(c, -EDEADLK);
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
	c.in_fn = UINT64_MAX;
	c.outer = wb_current;
	wb_current = &c;
	(void)ps__hbm_harvest(&s->wb, ps__space_page_index(start),
			      ps__space_page_index(len), writeback_visit, &c,
			      NULL);
	wb_current = c.outer;
	if (stats)
		*stats = c.st;
	return c.first_error;
}
