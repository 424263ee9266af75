// SPDX-License-Identifier: MIT
/*
 * lib/space-secondary.c - the secondary-map helper
 * (ps_space_map_secondary()): seed 003's loop that maps one page into a
 * caller's secondary mapping (IOMMU, shadow table) without ever mapping a clean
 * frame writable. The space's rules: lib/space-impl.h; this file is bound by S5
 * (lib/space-dirty.c): it marks only after its retry check, under the frame's
 * LOCKED bit and the caller's lock (taken in that order), and only for a write;
 * and by S11 there: it logs before it installs, which is safe only because both
 * happen under the caller's lock, which a harvest's invalidation after its take
 * also takes.
 */
#include <pagestate/space.h>

#include "space-impl.h"

/* Is @addr registered for async write protection? (wait-free) */
static bool wp_async(struct ps_space *s, uint64_t addr)
{
	unsigned int flags;

	return !ps_pgtable_registration(s->pt, addr, &flags) &&
	       (flags & PS_WP_ASYNC);
}

/*
 * Fault @addr in for the helper: a read fault (the helper never makes the
 * primary entry writable); a missing page goes to the populate hook with the
 * access the secondary mapping is for (PS_ACCESS_WRITE for a writable one:
 * the owner may populate differently, e.g. not with a shared zero page),
 * then is read-faulted again. 0 when the page may be looked up, else an
 * errno, the populate hook's own included.
 */
static int fault_in(struct ps_space *s, uint64_t addr, bool write)
{
	enum ps_fault fr = ps__space_fault_nopopulate(s, addr, PS_ACCESS_READ);
	int rc;

	if (fr == PS_FAULT_MISSING) {
		if (!s->hooks.populate)
			return -EFAULT;
		rc = s->hooks.populate(s->hooks.ctx, s, addr,
				       write ? PS_ACCESS_WRITE
					     : PS_ACCESS_READ);
		if (rc)
			return rc;
		fr = ps__space_fault_nopopulate(s, addr, PS_ACCESS_READ);
	}
	switch (fr) {
	case PS_FAULT_OK:
		return 0;
	case PS_FAULT_POISONED:
		return -EHWPOISON;
	case PS_FAULT_INVALID:
		return -EINVAL;
	default:
		return -EFAULT; /* still missing, a guard page */
	}
}

/*
 * Drop the lookup reference taken on @p, the word of @unit (a 4 KiB frame, or
 * a whole huge frame: S17), and the LOCKED bit a write took (S5). A whole
 * frame's reference goes back as a unit (through its gate, S18: the frame
 * may have been split since, then one goes from each part).
 */
static void release(struct ps_space *s, struct ps_page *p, uint64_t unit,
		    bool locked)
{
	if (PS_SPACE_UNIT_ORDER(unit)) {
		if (locked)
			ps_page_unlock(p);
		ps__space_put_unit(s, unit);
		return;
	}
	if (locked ? ps_page_unlock_and_put(p) : ps_page_put(p))
		ps__space_frame_freed(s, unit); /* unmapped meanwhile (S7) */
}

int ps_space_map_secondary(struct ps_space *s, struct ps_interval *sub,
			   uint64_t addr, bool write,
			   const struct ps_secondary_ops *ops, void *ctx)
{
	const uint64_t reject = PS_PAGE_POISONED | PS_PAGE_PRIVATE;

	if (!sub || !ops || !ops->lock || !ops->unlock || !ops->install ||
	    sub->notifier != &s->notifier || (addr & (PAGE_SIZE - 1)) ||
	    addr >= s->size || addr < ps_interval_start(sub) ||
	    addr > ps_interval_last(sub))
		return -EINVAL;
	for (;;) {
		uint64_t seq = ps_interval_read_begin(sub);
		struct ps_page *p;
		uint64_t frame, unit;
		ps_pte_t e;
		int rc;

		if (ps_pgtable_get(s->pt, addr, &e))
			return -EINVAL;
		if (!ps_pte_is_present(e)) {
			rc = fault_in(s, addr, write);
			if (rc)
				return rc;
			continue;
		}
		if (write && !ps_pte_may_write(e))
			return -EFAULT;
		/*
		 * A device write to a page protected in a sync range must be
		 * seen before it happens: the caller resolves the fault. In an
		 * async range it is recorded in the dirty log below and the
		 * entry stays protected for the CPU.
		 */
		if (write && ps_pte_uffd_wp(e) && !wp_async(s, addr))
			return -EAGAIN;
		frame = ps_pte_frame(e);
		if (frame >= s->nframes)
			return -EFAULT;
		/*
		 * The word that holds the frame's state: its own, or a whole
		 * huge frame's (S16), whose unit the reference is then on (a
		 * split meanwhile freezes it: the try fails, and the next look
		 * finds the part; a LOCKED word is not split).
		 */
		p = ps__space_word(s, frame, &unit);
		/*
		 * The lookup reference. No re-check of the entry: every change
		 * of frame at @addr is bracketed by an invalidation, which the
		 * retry check below sees.
		 */
		if (!ps_page_try_get_masked(p, 1, reject)) {
			rc = ps__space_grab_failed(p, reject);
			if (rc)
				return rc;
			continue;
		}
		/*
		 * S5: a write marks under the frame's LOCKED bit, as every
		 * marker does. A write fault reads DIRTY under that bit and
		 * trusts that the hook of the dirtying it finds has run (S3):
		 * marked outside it, the fault could make the CPU's entry
		 * writable, and the CPU write through it, between this DIRTY
		 * and its hook. Taken before the caller's lock: write-back
		 * holds LOCKED while its PROTECTION invalidation's callbacks
		 * take that lock, so this is the order both keep.
		 */
		if (write)
			ps_page_lock(p);
		ops->lock(ctx);
		if (ps_interval_read_retry(sub, seq)) {
			ops->unlock(ctx);
			release(s, p, unit, write);
			continue; /* an invalidation raced: again */
		}
		if (write) { /* dirty before the writable mapping (S5) */
			ps__space_mark_frame_dirty(s, frame);
			ps__space_log_written(s, addr);
		}
		rc = ops->install(ctx, addr, frame, write);
		ops->unlock(ctx);
		release(s, p, unit, write);
		return rc;
	}
}
