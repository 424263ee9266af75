// SPDX-License-Identifier: MIT
/*
 * lib/space-pin.c - GUP-style pins of the frames mapped in a space
 * (ps_space_pin_range(), ps_space_unpin()). The space's rules:
 * lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c and tests/test-prot.c as S2)
 * ---------------------------------------------------------------------------
 *
 * S2  Pin vs. entry change (Dekker). A pin reads entry e1, takes a
 *     speculative pin on e1's frame (an RMW on the page word), runs a
 *     seq_cst fence and reads the entry again (e2). An unmap (lib/space.c)
 *     changes the entry (a page-table CAS), runs a seq_cst fence, then reads
 *     the frame's pins. So either the pin reads the new entry and backs out
 *     (dropping its pin, freeing the frame if that was the last reference), or
 *     the changer reads the pin. A pin that got past its re-check holds a frame
 *     that was mapped at the address at that instant. Discard changes no entry
 *     whose frame a pin could hold: it freezes the frame first (S10,
 *     lib/space-discard.c), and a pin's try fails on a frozen frame.
 *
 * A pin for write sets WRITE_PINNED in the pin's own CAS (S4,
 * lib/space-writeback.c) and logs the address (S6, S9) after its re-check
 * found the entry writable: after the point from which the device may
 * write (S11, lib/space-dirty.c); any other pin puts the address in the
 * write-back set after its fence (S9).
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "hbitmap.h"
#include "space-impl.h"

#include <sched.h>

/*
 * Why a speculative grab of a frame failed, as an errno, or 0 to retry (the
 * frame went away or is being converted: look at the entry again).
 */
int ps__space_grab_failed(struct ps_page *p, uint64_t reject)
{
	uint64_t w = ps_page_load(p);

	if (w & PS_PAGE_POISONED)
		return -EHWPOISON;
	if ((w & PS_PAGE_LIVE) && (w & reject & PS_PAGE_PRIVATE))
		return -EPERM;
	if (w & PS_PAGE_FROZEN) {
		sched_yield(); /* a conversion holds it: wait (S8) */
		return 0;
	}
	if ((w & PS_PAGE_LIVE) && (ps_page_word_pins(w) >= PS_PAGE_PINS_MAX ||
				   ps_page_word_refs(w) >= PS_PAGE_REFS_MAX))
		return -EOVERFLOW;
	return 0; /* freed or replaced under us */
}

/* --- pins (S2) ------------------------------------------------------------ */

/*
 * The speculative pin: ps_page_try_pin_masked() for one pin, which for a
 * pin for write also sets WRITE_PINNED in the same CAS. So every write-back
 * whose RMW on the word comes after the pin sees the pin as a pin for write
 * (S4): none can find the pin but not the flag and clean a frame a device
 * is about to write. A pin that backs out leaves the flag: a hint, as
 * ps__space_write_pinned() also wants pins, cleared lazily once there are none.
 */
static inline bool try_pin(struct ps_page *p, uint64_t reject, bool write)
{
	/*
	 * It acquires (pairs with the release of the put or unfreeze that
	 * came before), so the pinner sees the frame as it was left; S2's
	 * fence follows.
	 */
	return ps_page_try_pin_and_set_flags(p, 1, reject,
					     write ? PS_PAGE_WRITE_PINNED : 0);
}

/* Entries compare equal for the pin re-check unless A/D bits moved. */
static bool same_mapping(ps_pte_t a, ps_pte_t b)
{
	const ps_pte_t ignore = PS_PTE_ACCESSED | PS_PTE_DIRTY;

	return (a & ~ignore) == (b & ~ignore);
}

/*
 * Pin the frame at @addr. Called inside the page table's read-side section,
 * which pin_range holds across all its pages (one section instead of one per
 * page: a urcu-bp section costs about 12 ns). The slow paths leave it: faulting
 * in (the populate and dirty hooks), waiting for a frozen frame, and dropping a
 * backed-out pin (the free hook), so no hook ever runs inside it (S7).
 */
static int pin_one(struct ps_space *s, uint64_t addr, unsigned int flags,
		   uint64_t *frame_out)
{
	const bool write = flags & PS_PIN_WRITE;
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_PIN_PRIVATE ? 0 : PS_PAGE_PRIVATE);

	for (;;) {
		struct ps_page *p;
		ps_pte_t e1, e2;
		uint64_t frame;
		int rc;

		e1 = ps_pgtable_lookup(s->pt, addr);
		if (!ps_pte_is_present(e1) ||
		    (write && !ps_pte_is_writable(e1))) {
			/* Missing, or a write needs resolving: fault it in. */
			ps_pgtable_read_unlock();
			rc = ps__space_fault_in(s, addr,
						write ? PS_ACCESS_WRITE
						      : PS_ACCESS_READ);
			ps_pgtable_read_lock();
			if (rc)
				return rc;
			continue;
		}
		frame = ps_pte_frame(e1);
		if (frame >= s->nframes)
			return -EFAULT;
		p = &s->frames[frame];
		FAILPOINT(FP_PIN_AFTER_LOOKUP, addr);
		if (!try_pin(p, reject, write)) {
			ps_pgtable_read_unlock();
			rc = ps__space_grab_failed(p, reject); /* may yield */
			ps_pgtable_read_lock();
			if (rc)
				return rc;
			continue;
		}
		/* S2 - seq_cst fence: the pin before the re-read. */
		atomic_thread_fence(memory_order_seq_cst);
		/*
		 * S9: a read pin's frame may be unpinned dirty. After the
		 * fence ("Recording the address" under S9 says why); a pin
		 * that backs out leaves the bit to the next write-back, which
		 * finds it clean.
		 */
		if (!write)
			ps__space_wb_note(s, addr);
		FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
		e2 = ps_pgtable_lookup(s->pt, addr);
		if (!same_mapping(e1, e2)) {
			/* Changed under us: back out (outside), again. */
			ps_pgtable_read_unlock();
			ps__space_frame_unpin(s, frame);
			ps_pgtable_read_lock();
			continue;
		}
		FAILPOINT(FP_PIN_RECHECKED, addr);
		if (write)
			ps__space_log_written(s, addr); /* S6, S9 */
		if (flags & PS_PIN_LONGTERM)
			(void)ps__hbm_set(&s->longterm, frame);
		*frame_out = frame;
		return 0;
	}
}

int ps_space_pin_range(struct ps_space *s, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *frames_out)
{
	uint64_t npages;
	int rc = 0;

	if (!ps__space_range_ok(s, start, len) || !frames_out ||
	    (flags & ~(PS_PIN_WRITE | PS_PIN_LONGTERM | PS_PIN_PRIVATE)))
		return -EINVAL;
	npages = len >> PAGE_SHIFT;
	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < npages; i++) {
		rc = pin_one(s, start + (i << PAGE_SHIFT), flags,
			     &frames_out[i]);
		if (rc) {
			ps_pgtable_read_unlock();
			/* All or nothing: release every pin taken. */
			ps_space_unpin(s, frames_out, i, false);
			/* Errors say where: the page that stopped the call. */
			frames_out[0] = i << PAGE_SHIFT;
			return rc;
		}
	}
	ps_pgtable_read_unlock();
	return 0;
}

void ps_space_unpin(struct ps_space *s, const uint64_t *frames, uint64_t n,
		    bool dirty)
{
	for (uint64_t i = 0; i < n; i++) {
		if (frames[i] >= s->nframes)
			continue;
		if (dirty)
			ps__space_mark_frame_dirty(s, frames[i]);
		ps__space_frame_unpin(s, frames[i]);
	}
}
