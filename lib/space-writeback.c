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
 *     Batches. The set is visited a level-0 word at a time (64 pages, one leaf
 *     of the page table: ps__hbm_harvest_words()), and the word's pages go
 *     through each step together (writeback_word()), so that what a visit
 *     costs is paid per word or per run, not per page:
 *       B1  one seq_cst fence (Fv above) for the word, after its take, then
 *           one read-side section and one walk: each page's entry through a
 *           leaf cursor, its frame held (a reference and LOCKED in one CAS,
 *           ps_page_try_get_lock_and_set(), which never waits: a frame locked
 *           by another thread is left to B5), the entry read again under the
 *           bit through the same cursor (S3; a frame replaced meanwhile is let
 *           go outside the section, which may free it, and left to B5);
 *       B2  each frame looked at under its bit, as one page's visit does
 *           (WRITEBACK, DIRTY, pins: wb_look());
 *       B3  each run of consecutive pages to write gets one PROTECTION
 *           invalidation: its entries write-protected through one cursor,
 *           then each frame's WRITEBACK set and DIRTY cleared (S4), all under
 *           the frames' LOCKED bits and before the run's invalidation ends
 *           (S5), as for one page. The invalidation's callbacks run under
 *           the LOCKED bits of every frame the batch locked, those of the
 *           word's other runs too (S7 in lib/space.c; space.h forbids a
 *           callback to wait for any page of the block: to do, lock and
 *           release run by run so that a callback holds only its own);
 *       B4  the pages to write go back into the set with one RMW for the
 *           word (S12: before their bits are dropped), every LOCKED bit is
 *           dropped before the first @fn runs (it runs with no library lock
 *           held), then @fn, the re-dirtying and the end of WRITEBACK per
 *           page, as for one page;
 *       B5  the pages B1 or B2 left (a frame locked, frozen or freed, replaced
 *           under the bit, or under another write-back that INTEGRITY waits
 *           for) are visited one at a time, as before (writeback_page()).
 *     Each page still sees, under its frame's LOCKED bit and inside an
 *     invalidation of its address, write-protect then clear, so S3, S4, S5,
 *     S9 and S12 hold page by page as before; only the grouping differs.
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
	bool pinned, inval, busy;
	int v = PS__HBM_KEEP, look = wb_look(c, p, &v);

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
	inval = !ps_notifier_invalidate_start(&s->notifier, addr, PAGE_SIZE,
					      PS_NOTIFIER_PROTECTION, 0);
	if (inval)
		write_protect_entry(s, addr, frame);
	wb_clean(c, p, &pinned, &busy);
	FAILPOINT(FP_WB_CLEARED, addr);
	if (inval)
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

/* One page on its own: hold it, write it back, wait and again if busy. */
static enum ps__hbm_verdict writeback_page(struct wb_ctx *c, uint64_t bit)
{
	uint64_t addr = bit << PAGE_SHIFT, frame;
	int rc, v;

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

/*
 * The pages of one word of the write-back set together ("Batches" under S9):
 * @bits, the word's taken bits, bit i for page @first + i (@first a multiple of
 * 64, so all 64 share one leaf of the page table). Returns the bits to keep.
 */
static uint64_t writeback_word(void *ctx, uint64_t first, uint64_t bits)
{
	struct wb_ctx *c = ctx;
	struct ps_space *s = c->s;
	uint64_t frames[64];
	uint64_t held = 0, write = 0, slow = 0, letgo = 0, keep = 0;
	uint64_t pinned_m = 0, skip_m = 0;
	PS_ATOMIC(ps_pte_t) *leaf;

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

	/* 1. Hold each page's frame: one section, one walk (B1). */
	ps__space_read_lock();
	leaf = ps_pgtable_lookup_leaf(s->pt, first << PAGE_SHIFT);
	for (uint64_t m = bits; m; m &= m - 1) {
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
			slow |= UINT64_C(1) << i; /* locked, freed, frozen */
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
	slow |= letgo;

	/* 2. Look at each frame under its bit (B2). */
	for (uint64_t m = held; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);
		int v = PS__HBM_KEEP;

		switch (wb_look(c, &s->frames[frames[i]], &v)) {
		case WB_WRITE:
			write |= UINT64_C(1) << i;
			continue;
		case WB_BUSY:
			slow |= UINT64_C(1) << i; /* it waits, on its own */
			break;
		default:
			if (v == PS__HBM_KEEP)
				keep |= UINT64_C(1) << i;
			break;
		}
		ps__space_frame_put(s, frames[i]);
	}

	/* 3. Each run of pages to write: one invalidation around it (B3). */
	for (uint64_t m = write; m;) {
		const unsigned int r0 = (unsigned int)__builtin_ctzll(m);
		const uint64_t rest = ~(m >> r0);
		const unsigned int n =
			rest ? (unsigned int)__builtin_ctzll(rest) : 64 - r0;
		const uint64_t run = (n == 64 ? ~UINT64_C(0)
					      : ((UINT64_C(1) << n) - 1))
				     << r0;
		const uint64_t start = (first + r0) << PAGE_SHIFT;
		const bool inval = !ps_notifier_invalidate_start(
			&s->notifier, start, (uint64_t)n << PAGE_SHIFT,
			PS_NOTIFIER_PROTECTION, 0);

		if (inval) {
			/* Stable pages (S3), through one cursor again. */
			ps__space_read_lock();
			leaf = ps_pgtable_lookup_leaf(s->pt, start);
			for (unsigned int k = 0; k < n; k++) {
				ps_pte_t e;

				if (!leaf)
					break;
				/* Acquire: as a lookup (a CAS guess). */
				e = atomic_load_explicit(&leaf[k],
							 memory_order_acquire);
				while (ps_pte_is_present(e) &&
				       ps_pte_frame(e) == frames[r0 + k] &&
				       ps_pte_is_writable(e) &&
				       ps_pgtable_cmpxchg_leaf(
					       s->pt, &leaf[k],
					       start + ((uint64_t)k
							<< PAGE_SHIFT),
					       &e,
					       e & ~PS_PTE_WRITE) == -EAGAIN)
					;
			}
			ps__space_read_unlock();
		}
		for (unsigned int k = 0; k < n; k++) {
			const unsigned int i = r0 + k;
			bool pinned, busy;

			wb_clean(c, &s->frames[frames[i]], &pinned, &busy);
			if (pinned)
				pinned_m |= UINT64_C(1) << i;
			if (wb_after_clean(c, &s->frames[frames[i]], pinned,
					   busy) != WB_WRITE)
				skip_m |= UINT64_C(1) << i;
			FAILPOINT(FP_WB_CLEARED, (first + i) << PAGE_SHIFT);
		}
		if (inval)
			(void)ps_notifier_invalidate_end(&s->notifier, start,
							 (uint64_t)n
								 << PAGE_SHIFT);
		/* Keep right after the end: tests check DIRTY is clear here. */
		for (unsigned int k = 0; k < n; k++)
			FAILPOINT(FP_WB_INVALIDATED, (first + r0 + k)
							     << PAGE_SHIFT);
		m &= ~run;
	}

	/*
	 * 4. S12: the pages to write go back into the set before their bits are
	 * dropped (one RMW for the word), then every LOCKED bit goes before the
	 * first @fn runs (it runs with no library lock held), then the writes.
	 */
	write &= ~skip_m;
	ps__hbm_set_mask(&s->wb, first, write);
	for (uint64_t m = write; m; m &= m - 1)
		ps_page_unlock(&s->frames[frames[__builtin_ctzll(m)]]);
	for (uint64_t m = skip_m; m; m &= m - 1) {
		/* Let go by wb_after_clean(), with its verdict: KEEP. */
		keep |= m & -m;
		ps__space_frame_put(s, frames[__builtin_ctzll(m)]);
	}
	for (uint64_t m = write; m; m &= m - 1) {
		const unsigned int i = (unsigned int)__builtin_ctzll(m);

		if (wb_write(c, (first + i) << PAGE_SHIFT, frames[i],
			     pinned_m >> i & 1) == PS__HBM_KEEP)
			keep |= UINT64_C(1) << i;
		ps__space_frame_put(s, frames[i]); /* the visit's (S7) */
	}

	/* 5. The exceptions, one page at a time, as before. */
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
	/*
	 * Write-back of huge frames is not built yet (design step 3): it would
	 * look for a whole frame's state in its 4 KiB words and skip the dirty
	 * frame. Refused rather than dropping a dirty frame silently.
	 */
	if (PS_UNLIKELY(ps__space_huge(s)))
		return -EOPNOTSUPP;
	PS__FORK_CHECK(s->born, "space");
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.mode = mode;
	c.fn = fn;
	c.ctx = ctx;
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
