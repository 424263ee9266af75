// SPDX-License-Identifier: MIT
/*
 * lib/space-fault.c - CPU faults through the space's mapping
 * (ps_space_fault()), and the faulting-in that pins and the secondary-map
 * helper use (ps__space_fault_in()). The space's rules: lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S3; the fault's log order is
 * S11's, lib/space-dirty.c)
 * ---------------------------------------------------------------------------
 *
 * S3  Dirty before writable. An entry becomes writable only through
 *     ps_space_fault() (a write on MAYWRITE && !WRITE, or a uffd-wp
 *     resolution), and only while the fault holds its frame: a reference and
 *     the frame's LOCKED bit. The reference is what keeps the frame from being
 *     freed, and so from being handed to another owner, while the fault marks
 *     it: LOCKED alone excludes only other lockers, and neither unmap nor
 *     discard takes it (an unmap then drops only the mapping's reference, and
 *     discard finds the fault's and leaves the page busy, S10). So the dirty
 *     hook never runs for a freed frame, no DIRTY or LOCKED is ever left on a
 *     free word, and a fault whose CAS lands on an identical entry installed
 *     meanwhile (the frame unmapped and mapped again) makes writable the very
 *     lifetime it marked dirty. The fault marks the frame DIRTY (the dirty hook
 *     on the clean-to-dirty transition, S5; a frame found DIRTY has had its
 *     hook, since every marker marks under the same bit), and only then makes
 *     exactly the entry it classified writable, by one CAS from that entry; it
 *     logs the address after that CAS, never before (S11: the log records that
 *     writes may now go through the entry; logged before the CAS, a harvest
 *     could take the mark before the entry became writable, and the writes
 *     through it would be reported by no harvest). Dirty before writable,
 *     logged after. No write fault lets the page table resolve a write on its
 *     own: the entry may have changed since it was looked at (mapped meanwhile,
 *     write-protected by write-back). Write-back (lib/space-writeback.c) takes
 *     the same bit around "write-protect the entry, then clear DIRTY", and
 *     reads the entry again under it: a frame unmapped and mapped elsewhere
 *     since write-back looked is let go (its write fault at the new address may
 *     already have made that entry writable). Hence a writable entry implies a
 *     dirty frame, whatever the interleaving; the dirty hook has run before any
 *     thread can write through the entry (seed 003); and a write during
 *     write-back faults and re-dirties the frame (never lost). A write refused
 *     after the mark (a protect or mprotect raced in, the entry replaced)
 *     leaves the frame dirty: an over-report, never a loss.
 *
 *     The common fault, in three read-modify-writes and one walk
 *     (fast_write()), plus one for each bitmap bit a harvest or a write-back
 *     took since the last fault on the page (R4). A present entry without
 *     uffd-wp, with MAYWRITE and not WRITE, of a frame of the space, is one
 *     whose write the page table's fault table lets through and resolves to
 *     ps_pte_resolve_write() of it (pgtable.h): the fault classifies it itself,
 *     from one acquire load through a leaf cursor (ps_pgtable_lookup_leaf()),
 *     in a read-side section it holds until the entry's CAS. Then:
 *       R1  hold and mark, one CAS on the page word
 *           (ps_page_try_get_lock_and_set()): a reference, LOCKED and DIRTY,
 *           only if the frame is LIVE and not locked (else nothing changes and
 *           the general path below waits, outside the section); then the
 *           entry read again through the cursor (a load): if it no longer
 *           maps the frame, R1 found the frame after it had been freed and
 *           handed on (the reference closes that window only from R1 on),
 *           and R1's DIRTY is taken back (below) and the frame let go;
 *       R2  the entry's CAS, through the same cursor
 *           (ps_pgtable_cmpxchg_leaf(): the entry stays written, so no hint
 *           is needed), from exactly the entry classified;
 *       R3  release, one CAS (ps_page_unlock_and_put());
 *       R4  the log (S11) and the write-back set (S9), each a load that
 *           finds the bit set when nothing took it since the last fault,
 *           else one RMW (two more, once per 2 MiB, for the bitmap's
 *           summary bits, lib/hbitmap.h).
 *     Why folding the mark into the lock keeps every rule:
 *       - S3: DIRTY is set by R1, before R2 in this thread, and R2 is the only
 *         change this fault makes writable. A writable entry therefore has a
 *         dirty frame unless DIRTY was cleared after R1; DIRTY is cleared only
 *         by write-back under LOCKED (S5, S12) or by the free that ends the
 *         lifetime. LOCKED is held from R1 to R3, so a write-back clears it
 *         after R3, and it write-protects the entry (its seq_cst CAS) before
 *         it clears (its RMW on the word, which reads R3's release or later,
 *         so R2 happens before the clear and the write-protect acts on R2's
 *         entry or a later one). And the frame cannot be freed before R3: R1
 *         took a reference.
 *       - S5: the transition is R1's alone (the one CAS that found DIRTY
 *         clear, in @seen), so exactly one hook runs for it, by this fault,
 *         under LOCKED (held until R3) and holding the reference: no
 *         write-back can clean that dirtying before the hook has run. The hook
 *         is user code, so it runs outside the read-side section (S7): the
 *         fault leaves the section around it and walks again after it (the
 *         only case with a second walk).
 *       - Taking the mark back. Between the classifying load and R1 the frame
 *         may have been unmapped, freed and revived by another owner: R1
 *         then marks that owner's lifetime. The re-read after R1 sees that
 *         the entry no longer maps the frame, and if R1 made the transition
 *         (@seen) it clears DIRTY again before anything runs. That is safe
 *         because DIRTY is set, cleared and acted on only under the frame's
 *         LOCKED bit (S5: every marker, write-back's clean and its look, a
 *         write fault's test), which this fault holds from R1: no one saw the
 *         mark. (Readers without the bit, a map deciding whether to note the
 *         page for write-back, only over-include.) So no hook runs for a
 *         lifetime the fault did not find mapped, as on the general path,
 *         which reads the entry again under the bit before it marks.
 *       - The entry may change after that re-read and before R2 (unmapped,
 *         replaced, protected): R2 then fails, and the fault looks again,
 *         still holding the frame (write_fault_locked()); if the entry no
 *         longer maps the frame it lets go. The frame, mapped at the address
 *         at the re-read, stays dirty, its hook run once: an over-report,
 *         never a loss, and never a mark of a freed frame (R1 held it), as
 *         when the general path's entry changes right after its re-read.
 *       - A frame LOCKED by another thread is never waited for inside the
 *         section (its holder may run a hook that waits for a grace period):
 *         R1 fails and the general path takes it, outside.
 *     Logging after the CAS (R4). The log bit L must be set after R2 (S11), and
 *     reading it set may replace setting it: R2 is seq_cst, and so are the
 *     test (T0) and a harvest's take (A0, lib/hbitmap.h). If T0 reads the bit
 *     set, the take T that removes that value comes after T0 in the single
 *     total order (T0 reads a value before T's in the word's modification
 *     order), so R2 < T0 < T, and T's re-arm (a seq_cst CAS sequenced after T)
 *     acts on R2's entry or a later one: the writes through R2's entry are
 *     reported by T's harvest, as if this fault had set L. The write-back bit:
 *     if a write-back took it, its visit takes LOCKED (an RMW on the word). If
 *     that comes after R3 it reads DIRTY (R1) and writes the frame back; if it
 *     comes before R1, R1 reads its unlock or later, so the take happens before
 *     the test, which then reads the take or a later set (the set of a visit
 *     that will come and see the frame). Either way the dirty frame is found.
 *     Writes that came before the call would not be covered by a bit merely
 *     read set (no release from this thread): that is why only paths that
 *     open a way for later writes log this way (ps__space_log_opened()).
 *
 *     Every other case takes the general path: the page table classifies
 *     (PS_ACCESS_CHECK, in its own section), the frame is held with
 *     ps_page_try_get_and_lock() (which waits for a LOCKED holder), the entry
 *     is read again under LOCKED and the frame marked with a test-and-set,
 *     then the same CAS, release and log.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "space-impl.h"

#include <sched.h>

/* --- one fault (S3) ------------------------------------------------------- */

/*
 * A step of a write fault: it decided (the answer is in *@fr), or the entry
 * moved under it. Internal: never mixed into enum ps_fault, which is what
 * ps_space_fault() returns.
 */
enum fault_step {
	FAULT_DONE = 0, /* *@fr is the answer */
	FAULT_AGAIN,	/* the entry no longer maps the frame locked */
	FAULT_CHANGED,	/* the entry changed since it was classified */
	FAULT_GENERAL,	/* not the common case: take the general path */
};

/*
 * Make the entry @e at @addr, just classified with the write allowed, what
 * the write makes of it (ps_pte_resolve_write()), by one CAS from exactly
 * @e. FAULT_DONE with *@fr PS_FAULT_OK (also when nothing changes) or
 * PS_FAULT_INVALID (the table refused), or FAULT_CHANGED (someone changed
 * the entry: classify again). The callers decide whether the frame must be
 * marked dirty first (S3).
 */
static enum fault_step resolve_write(struct ps_space *s, uint64_t addr,
				     ps_pte_t e, enum ps_fault *fr)
{
	ps_pte_t n = ps_pte_resolve_write(e);
	int rc;

	*fr = PS_FAULT_OK;
	if (n == e)
		return FAULT_DONE;
	rc = ps_pgtable_cmpxchg(s->pt, addr, &e, n);
	if (rc == -EAGAIN)
		return FAULT_CHANGED;
	if (rc)
		*fr = PS_FAULT_INVALID;
	return FAULT_DONE;
}

/*
 * A write the page table allows, to the entry of @frame at @addr, holding
 * that frame (a reference and its LOCKED bit, S3). The entry is read again
 * here, with the page table's classification (PS_ACCESS_CHECK: nothing
 * changes). If it no longer maps @frame, FAULT_AGAIN: the caller lets go
 * and takes the new frame. Otherwise, for an entry that is not writable
 * yet, the frame is marked dirty first (the dirty hook runs on the
 * clean-to-dirty transition), and only then does exactly that entry become
 * ps_pte_resolve_write() of itself, by one CAS. So the hook has run before
 * any thread can write through the entry (seed 003), and the frame marked
 * is the frame made writable. A failed CAS (a fault moved accessed bits,
 * protect set wp, mprotect took MAYWRITE, the frame was replaced) looks again;
 * if the write is refused then (WP, BAD_ACCESS), the frame stays dirty: an
 * over-report, never a lost write. FAULT_DONE: *@fr is the answer, and *@opened
 * says whether this call's CAS made the entry writable: the caller then logs
 * the address, after that CAS (S11 in lib/space-dirty.c), never before.
 */
static enum fault_step write_fault_locked(struct ps_space *s, uint64_t addr,
					  unsigned int access, uint64_t frame,
					  enum ps_fault *fr, bool *opened)
{
	uint64_t unit;
	struct ps_page *p = ps__space_word(s, frame, &unit); /* S16 */

	for (;;) {
		ps_pte_t e;

		*fr = ps_pgtable_fault_pte(s->pt, addr,
					   access | PS_ACCESS_CHECK, &e);
		if (!ps_pte_is_present(e) || ps_pte_frame(e) != frame)
			return FAULT_AGAIN;
		if (*fr != PS_FAULT_OK)
			return FAULT_DONE; /* WP, BAD_ACCESS: no change */
		FAILPOINT(FP_FAULT_RECHECKED, addr);
		/*
		 * Writable already: made so under this lock, dirty (S3). A
		 * frame read DIRTY stays so while the fault holds it (only
		 * write-back clears DIRTY, under LOCKED; a free, which the
		 * reference excludes): the test spares the RMW. And the hook
		 * of that dirtying has run: every marker sets DIRTY and runs
		 * the hook under this bit (S5).
		 */
		if (!ps_pte_is_writable(e) &&
		    !ps_page_test_flags(p, PS_PAGE_DIRTY))
			ps__space_mark_frame_dirty(s, frame);
		FAILPOINT(FP_FAULT_MARKED, addr);
		*opened = !ps_pte_is_writable(e);
		if (resolve_write(s, addr, e, fr) == FAULT_DONE)
			return FAULT_DONE;
	}
}

/*
 * The frame a write fault looked up could not be held (S3): 0 to look at
 * the entry again (the frame was freed, or is frozen: then it yields
 * first, S8), or -EOVERFLOW (its references are at the limit).
 */
static int hold_failed(struct ps_page *p)
{
	uint64_t w = ps_page_load(p);

	if ((w & PS_PAGE_LIVE) && ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
		return -EOVERFLOW;
	if (w & PS_PAGE_FROZEN)
		sched_yield(); /* a freezer holds it: wait (S8) */
	return 0;
}

/*
 * The common write fault (S3, "The common fault"): one walk, R1..R4.
 * FAULT_DONE with the answer in *@fr; FAULT_AGAIN to look again (the entry
 * moved); FAULT_GENERAL for everything else (not present, uffd-wp, no MAYWRITE,
 * a frame outside the space's array, a frame that R1 could not hold: locked,
 * frozen, freed or full), which the general path classifies and handles.
 */
static enum fault_step fast_write(struct ps_space *s, uint64_t addr,
				  unsigned int access, enum ps_fault *fr)
{
	PS_ATOMIC(ps_pte_t) *slot;
	enum fault_step step = FAULT_DONE;
	bool opened = false;
	struct ps_page *p;
	uint64_t frame, seen;
	ps_pte_t e, e2, n;
	int rc;

	ps__space_read_lock();
	slot = ps_pgtable_lookup_leaf(s->pt, addr);
	/* Acquire: pairs with the entry's CAS (a frame's page is set up). */
	e = slot ? atomic_load_explicit(slot, memory_order_acquire)
		 : PS_PTE_NONE;
	if (!ps_pte_is_present(e) || ps_pte_uffd_wp(e) ||
	    !ps_pte_may_write(e) || ps_pte_frame(e) >= s->nframes) {
		ps__space_read_unlock();
		return FAULT_GENERAL;
	}
	FAILPOINT(FP_FAULT_CHECKED, addr);
	n = ps_pte_resolve_write(e);
	if (ps_pte_is_writable(e)) {
		/* Its frame is dirty (S3): only A/D may need setting. */
		rc = n == e ? 0
			    : ps_pgtable_cmpxchg_leaf(s->pt, slot, addr, &e, n);
		ps__space_read_unlock();
		*fr = rc ? PS_FAULT_INVALID : PS_FAULT_OK;
		return rc == -EAGAIN ? FAULT_AGAIN : FAULT_DONE;
	}
	frame = ps_pte_frame(e);
	p = &s->frames[frame];
	/* R1: a reference, LOCKED and DIRTY in one CAS, or nothing. */
	if (!ps_page_try_get_lock_and_set(p, PS_PAGE_DIRTY, &seen)) {
		ps__space_read_unlock();
		return FAULT_GENERAL; /* locked, freed, frozen or full */
	}
	FAILPOINT(FP_FAULT_LOCKED, addr);
	/*
	 * The entry again, under the bit, through the cursor (one load): R1
	 * may have found the frame freed and handed to another owner since
	 * the classifying read (the window the reference closes only from R1
	 * on). If the entry no longer maps the frame, R1's mark is taken back
	 * before anyone can act on it: DIRTY is set, cleared and acted on only
	 * under LOCKED (S5), which this fault holds, so a DIRTY that R1 set
	 * and this call clears again was seen by no marker and no cleaner.
	 * Then let go (the put may free it) and look again.
	 * Acquire: as the first read.
	 */
	e2 = atomic_load_explicit(slot, memory_order_acquire);
	if (PS_UNLIKELY(!ps_pte_is_present(e2) || ps_pte_frame(e2) != frame)) {
		if (!(seen & PS_PAGE_DIRTY))
			(void)ps_page_clear_flags(p, PS_PAGE_DIRTY);
		ps__space_read_unlock();
		if (ps_page_unlock_and_put(p))
			ps__space_frame_freed(s, frame);
		return FAULT_AGAIN;
	}
	FAILPOINT(FP_FAULT_RECHECKED, addr);
	if (!(seen & PS_PAGE_DIRTY)) {
		/* S5: R1 made the transition; its hook runs once, here. */
		if (s->hooks.dirty) {
			/* S7: never inside the section; walk again after. */
			ps__space_read_unlock();
			ps__space_frame_dirtied(s, frame);
			ps__space_read_lock();
			slot = ps_pgtable_lookup_leaf(s->pt, addr);
		} else {
			FAILPOINT(FP_DIRTY_SET, frame);
		}
	}
	FAILPOINT(FP_FAULT_MARKED, addr);
	/* R2: exactly the entry classified becomes writable. */
	rc = slot ? ps_pgtable_cmpxchg_leaf(s->pt, slot, addr, &e, n)
		  : -EAGAIN; /* its leaf went: the entry is none */
	ps__space_read_unlock();
	if (!rc) {
		*fr = PS_FAULT_OK;
		opened = true;
	} else if (rc != -EAGAIN) {
		*fr = PS_FAULT_INVALID;
	} else {
		/* Changed since classified: look again, holding the frame. */
		step = write_fault_locked(s, addr, access, frame, fr, &opened);
	}
	/* R3: release; an unmap meanwhile may make this the last put. */
	if (ps_page_unlock_and_put(p))
		ps__space_frame_freed(s, frame);
	if (step != FAULT_DONE)
		return FAULT_AGAIN;
	/* R4: logged after the CAS that made it writable (S11). */
	if (*fr == PS_FAULT_OK && opened)
		ps__space_log_opened(s, addr);
	return FAULT_DONE;
}

/*
 * A write fault, the general path (a read is the page table's fault: it never
 * makes an entry writable). The write is classified first (PS_ACCESS_CHECK),
 * and no write path ever lets the page table make an entry writable on its own,
 * because the entry may have changed since it was looked at (mapped meanwhile,
 * or write-protected by write-back) and S3 would be lost. Instead:
 *   - a missing page (none, swap, marker) gets a read fault, which finds
 *     what the write would (pgtable.h's fault table), clears a stale
 *     marker as the write would (G9 there), and makes nothing writable;
 *     if it finds a page after all, one was mapped meanwhile: again;
 *   - a refused write (WP, BAD_ACCESS) changes nothing;
 *   - a writable entry (its frame is dirty, S3), or one whose frame is
 *     outside the space's array (nothing to mark), gets the table's
 *     transition by a CAS from exactly the entry classified;
 *   - anything else becomes writable holding its frame (a reference, then
 *     LOCKED, one RMW: ps_page_try_get_and_lock(), which waits for a holder),
 *     dirty first (write_fault_locked()), so the frame can be neither freed nor
 *     handed to another owner while the fault marks it and makes its entry
 *     writable (S3). Releasing it may free it (an unmap came meanwhile): the
 *     free_frame hook then runs here, with no library lock held.
 * A frame at the reference limit cannot be held: PS_FAULT_INVALID, and
 * *@err (if not NULL) receives -EOVERFLOW.
 */
static enum ps_fault fault_general(struct ps_space *s, uint64_t addr,
				   unsigned int access, int *err)
{
	for (;;) {
		enum fault_step step;
		bool opened = false;
		enum ps_fault fr;
		struct ps_page *p;
		uint64_t unit;
		ps_pte_t e;

		fr = ps_pgtable_fault_pte(s->pt, addr, access | PS_ACCESS_CHECK,
					  &e);
		if (fr == PS_FAULT_INVALID)
			return fr;
		FAILPOINT(FP_FAULT_CHECKED, addr);
		if (!ps_pte_is_present(e)) {
			fr = ps_pgtable_fault(s->pt, addr, PS_ACCESS_READ);
			if (fr != PS_FAULT_OK)
				return fr;
			continue; /* mapped meanwhile */
		}
		if (fr != PS_FAULT_OK)
			return fr;
		/* Under a huge entry: the whole frame (lib/space-huge.c). */
		if (PS_UNLIKELY(ps__space_huge(s)) &&
		    ps__space_huge_write_fault(s, addr, access, &fr, err))
			return fr;
		if (ps_pte_is_writable(e) || ps_pte_frame(e) >= s->nframes) {
			if (resolve_write(s, addr, e, &fr) == FAULT_DONE)
				return fr;
			continue; /* changed: classify again */
		}
		p = ps__space_word(s, ps_pte_frame(e), &unit); /* S16 */
		if (!ps_page_try_get_and_lock(p)) {
			int rc = hold_failed(p); /* may yield */

			if (!rc)
				continue; /* freed or frozen: look again */
			if (err)
				*err = rc;
			return PS_FAULT_INVALID;
		}
		FAILPOINT(FP_FAULT_LOCKED, addr);
		step = write_fault_locked(s, addr, access, ps_pte_frame(e), &fr,
					  &opened);
		if (ps_page_unlock_and_put(p)) /* unmapped meanwhile */
			ps__space_frame_freed(s, PS_SPACE_UNIT_FRAME(unit));
		if (step != FAULT_DONE)
			continue;
		/* Logged after the CAS that made it writable (S11). */
		if (fr == PS_FAULT_OK && opened)
			ps__space_log_opened(s, addr);
		return fr;
	}
}

/*
 * One fault, no populate: a read is the page table's; a write takes the common
 * path (fast_write()) when it can, else the general one (fault_general()),
 * which also takes every write the common path saw change under it.
 */
static inline enum ps_fault fault_once(struct ps_space *s, uint64_t addr,
				       unsigned int access, int *err)
{
	enum ps_fault fr;

	if (!(access & PS_ACCESS_WRITE))
		return ps_pgtable_fault(s->pt, addr, access);
	if (fast_write(s, addr, access, &fr) == FAULT_DONE)
		return fr;
	return fault_general(s, addr, access, err);
}

/* The populate hook for a missing page: 0, or its error (-EFAULT without). */
static int populate(struct ps_space *s, uint64_t addr, unsigned int access)
{
	if (!s->hooks.populate)
		return -EFAULT;
	return s->hooks.populate(s->hooks.ctx, s, addr,
				 access & PS_ACCESS_WRITE ? PS_ACCESS_WRITE
							  : PS_ACCESS_READ);
}

enum ps_fault ps__space_fault_nopopulate(struct ps_space *s, uint64_t addr,
					 unsigned int access)
{
	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size)
		return PS_FAULT_INVALID;
	return fault_once(s, addr, access, NULL);
}

enum ps_fault ps_space_fault(struct ps_space *s, uint64_t addr,
			     unsigned int access)
{
	enum ps_fault fr;

	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size)
		return PS_FAULT_INVALID;
	fr = fault_once(s, addr, access, NULL);
	if (fr == PS_FAULT_MISSING && !populate(s, addr, access))
		fr = fault_once(s, addr, access, NULL);
	return fr;
}

/* --- faulting in, for pins and the secondary-map helper ------------------- */

/* Errno for a fault that did not let an access through. */
static int fault_errno(enum ps_fault fr)
{
	switch (fr) {
	case PS_FAULT_OK:
		return 0;
	case PS_FAULT_WP:
		return -EAGAIN;
	case PS_FAULT_POISONED:
		return -EHWPOISON;
	case PS_FAULT_INVALID:
		return -EINVAL;
	case PS_FAULT_MISSING:
	case PS_FAULT_GUARD:
	case PS_FAULT_BAD_ACCESS:
		break;
	}
	return -EFAULT;
}

/*
 * Fault @addr in for an internal user (pin, secondary map): 0 when the
 * access may proceed, else an errno, a populate hook's own included.
 */
int ps__space_fault_in(struct ps_space *s, uint64_t addr, unsigned int access)
{
	int rc = 0;
	enum ps_fault fr = fault_once(s, addr, access, &rc);

	if (fr == PS_FAULT_MISSING) {
		rc = populate(s, addr, access);
		if (rc)
			return rc;
		fr = fault_once(s, addr, access, &rc);
	}
	return rc ? rc : fault_errno(fr);
}
