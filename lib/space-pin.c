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
 *     speculative pin on e1's frame (P: a seq_cst CAS on the page word) and
 *     reads the entry again (e2: a seq_cst load), with no fence between. An
 *     unmap (lib/space.c) changes the entry (C: a seq_cst page-table CAS),
 *     runs a seq_cst fence F, then reads the frame's pins (R). So either the
 *     pin reads the new entry and backs out (dropping its pin, freeing the
 *     frame if that was the last reference), or the changer reads the pin.
 *     Proof, in the single total order S of seq_cst operations (C11 7.17.3):
 *     suppose e2 reads an entry older than C's. Then e2 is coherence-ordered
 *     before C, and both are seq_cst, so e2 precedes C in S; P precedes e2 in
 *     S (sequenced before, both seq_cst), and C precedes F; so P precedes F.
 *     Had R read a word older than P's, R would be coherence-ordered before
 *     P, and F happens before R, so F would precede P in S: a contradiction.
 *     So R reads P's pin or a later word. A fence in the pin as well (as the
 *     old path ran) adds nothing once P and e2 are seq_cst: on x86 the CAS is
 *     a locked instruction and the load a plain one either way; the fence
 *     was an MFENCE per page. A pin that got past its re-check holds a frame
 *     that was mapped at the address at that instant. Discard changes no
 *     entry whose frame a pin could hold: it freezes the frame first (S10,
 *     lib/space-discard.c), and a pin's try fails on a frozen frame.
 *
 *     One walk per leaf: the pins read e1 and e2 through a leaf cursor
 *     (ps_pgtable_lookup_leaf()), taken once per leaf of the range in the
 *     read-side section the call holds, and again only after a slow path
 *     left the section. A cursor on a leaf that trim unlinked meanwhile
 *     reads none there (trim unlinks only empty leaves): e2 then differs
 *     from e1 and the pin backs out, as for any change.
 *
 * A pin for write sets WRITE_PINNED in the pin's own CAS (S4,
 * lib/space-writeback.c) and logs the address (S6, S9) after its re-check found
 * the entry writable: after the point from which the device may write (S11,
 * lib/space-dirty.c); any other pin puts the address in the write-back set
 * after its re-check (S9). Both test the bit first and skip the set when it
 * reads set (ps__space_log_opened(), ps__space_wb_note()): the re-check is a
 * seq_cst load, so it takes the place the fence had in the arguments that make
 * that safe (S11's "Logging after the CAS" in lib/space-fault.c: the re-check
 * reads the entry made writable by a fault's seq_cst CAS or a later one, so
 * that CAS precedes the test in S; "Recording the address" under S9).
 *
 * S14 The long-term pin count (cited by tests/test-prot.c). A conversion
 *     waiting for pins to drain gives up at once on a frame with a
 *     long-term pin (prot.h: it will not drain), so it must know exactly
 *     whether one is held. The page word has no room for it, and the pin
 *     fast path must not pay for it: each frame has a count of long-term
 *     pins in an array of the space's own (4 bytes a frame, a lazily
 *     zero-filled mapping made at the first long-term pin, so a space that
 *     never pins long-term has none). A long-term pin adds one after its pin
 *     passed the re-check (S2), and ps_space_unpin() with PS_UNPIN_LONGTERM
 *     takes one away before it drops the pin: so the count never exceeds the
 *     long-term pins held, and is positive from before pin_range() returns
 *     until the unpin. Both are compare-and-swap loops that keep the count
 *     within 0..PS_PAGE_PINS_MAX (it can never pass the pins themselves), so it
 *     never wraps; a release of more than was counted (a short-term pin
 *     released as long-term) is refused and reported. A pin not for the long
 *     term and its unpin never touch the count. A long-term pin released
 *     without PS_UNPIN_LONGTERM (misuse) leaves its unit behind: a conversion
 *     that freezes the frame (no pin can exist then, nor start) resets it
 *     (ps__space_longterm_forget()). Pins that carry their kind back through
 *     the unpin are what issue 18's owners (per range, with a class) build on:
 *     the count stays the per-frame question a conversion or discard asks.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "hbitmap.h"
#include "space-impl.h"

#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>

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
		sched_yield(); /* a freezer holds it (S8) */
		return 0;
	}
	if ((w & PS_PAGE_LIVE) && (ps_page_word_pins(w) >= PS_PAGE_PINS_MAX ||
				   ps_page_word_refs(w) >= PS_PAGE_REFS_MAX))
		return -EOVERFLOW;
	return 0; /* freed or replaced under us */
}

/* --- long-term pin counts (S14) ------------------------------------------- */

typedef PS_ATOMIC(uint32_t) lt_count_t;

/* The counts, or NULL before the first long-term pin. */
static lt_count_t *lt_counts(struct ps_space *s)
{
	/* Acquire: pairs with the release CAS in lt_counts_make(). */
	return atomic_load_explicit(&s->longterm, memory_order_acquire);
}

/* The counts, mapped (zero-filled) at the first long-term pin. */
static int lt_counts_make(struct ps_space *s, lt_count_t **out)
{
	lt_count_t *c = lt_counts(s), *seen = NULL;
	size_t bytes;
	void *m;

	if (c) {
		*out = c;
		return 0;
	}
	if (s->nframes > SIZE_MAX / sizeof(*c))
		return -ENOMEM;
	bytes = (size_t)s->nframes * sizeof(*c);
	m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	/*
	 * Release: the mapping is complete before a reader finds it (pairs
	 * with the acquire in lt_counts()); acquire on failure, as that load.
	 */
	if (!atomic_compare_exchange_strong_explicit(&s->longterm, &seen,
						     (lt_count_t *)m,
						     memory_order_release,
						     memory_order_acquire)) {
		munmap(m, bytes); /* another pin made them first */
		m = seen;
	}
	*out = m;
	return 0;
}

void ps__space_pins_fini(struct ps_space *s)
{
	/* Relaxed: no other thread uses the space any more. */
	lt_count_t *c = atomic_load_explicit(&s->longterm,
					     memory_order_relaxed);

	if (c)
		munmap((void *)(uintptr_t)c, (size_t)s->nframes * sizeof(*c));
}

/* One long-term pin more on the frame of @c; false at the limit. */
static bool lt_count_add(lt_count_t *c)
{
	/* Relaxed: only a guess for the CAS. */
	uint32_t v = atomic_load_explicit(c, memory_order_relaxed);

	do {
		/* More than pins can be: leaked units. */
		if (v >= PS_PAGE_PINS_MAX)
			return false;
		/*
		 * Release: the pin it counts comes first (a reader that
		 * acquires the count sees the pin); pairs with the acquire
		 * in ps__space_longterm_pinned().
		 */
	} while (!atomic_compare_exchange_weak_explicit(c, &v, v + 1,
							memory_order_release,
							memory_order_relaxed));
	return true;
}

/* One long-term pin less; false if none was counted (misuse). */
static bool lt_count_sub(lt_count_t *c)
{
	/* Relaxed: only a guess for the CAS. */
	uint32_t v = atomic_load_explicit(c, memory_order_relaxed);

	do {
		if (!v)
			return false;
		/* Release: before the unpin (pairs as lt_count_add()). */
	} while (!atomic_compare_exchange_weak_explicit(c, &v, v - 1,
							memory_order_release,
							memory_order_relaxed));
	return true;
}

bool ps__space_longterm_pinned(struct ps_space *s, uint64_t frame)
{
	lt_count_t *c = lt_counts(s);

	/* Acquire: pairs with the release of lt_count_add(). */
	return c && atomic_load_explicit(&c[frame], memory_order_acquire);
}

bool ps__space_longterm_any(struct ps_space *s)
{
	return lt_counts(s) != NULL;
}

void ps__space_longterm_forget(struct ps_space *s, uint64_t frame)
{
	lt_count_t *c = lt_counts(s);

	/*
	 * Relaxed load: the caller froze the frame, whose acquire follows
	 * every unpin's release, and each unpin's count release precedes
	 * it: a positive count here is a leaked unit (S14). Release store:
	 * pairs with the acquire in ps__space_longterm_pinned().
	 */
	if (c && atomic_load_explicit(&c[frame], memory_order_relaxed))
		atomic_store_explicit(&c[frame], 0, memory_order_release);
}

/*
 * S14 for the units of lib/space-huge.c: a long-term pin of a whole huge frame
 * is counted at its first frame (and at each part's first frame once its
 * state is split). Add: 0, -ENOMEM (the counts could not be made) or
 * -EOVERFLOW; sub: false if none was counted.
 */
int ps__space_longterm_add(struct ps_space *s, uint64_t frame)
{
	lt_count_t *lt;
	int rc = lt_counts_make(s, &lt);

	if (rc)
		return rc;
	return lt_count_add(&lt[frame]) ? 0 : -EOVERFLOW;
}

bool ps__space_longterm_sub(struct ps_space *s, uint64_t frame)
{
	lt_count_t *lt = lt_counts(s);

	return lt && lt_count_sub(&lt[frame]);
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
	 * Seq_cst on success: it acquires (pairs with the release of the put
	 * or unfreeze that came before), so the pinner sees the frame as it
	 * was left, and it is S2's P, ordered before the seq_cst re-read.
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

/* A leaf cursor on @addr's entry, read in the caller's section (S2). */
typedef PS_ATOMIC(ps_pte_t) *cursor_t;

/*
 * Pin the frame at @addr. Called inside the page table's read-side section,
 * which pin_range holds across all its pages (one section instead of one per
 * page), with *@cur a cursor on @addr's entry or NULL (pin_one() then walks,
 * and leaves the new cursor there). The slow paths leave the section:
 * faulting in (the populate and dirty hooks), waiting for a frozen frame, and
 * dropping a backed-out pin (the free hook), so no hook ever runs inside it
 * (S7); the cursor is then dropped (*@cur = NULL), since the leaf it points
 * into is safe only inside the section it was found in. @lt: the long-term
 * pin counts, for a PS_PIN_LONGTERM pin.
 */
static inline __attribute__((always_inline)) int
pin_one(struct ps_space *s, uint64_t addr, unsigned int flags, lt_count_t *lt,
	cursor_t *cur, uint64_t *frame_out)
{
	const bool write = flags & PS_PIN_WRITE;
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_PIN_PRIVATE ? 0 : PS_PAGE_PRIVATE);

	for (;;) {
		struct ps_page *p;
		ps_pte_t e1, e2;
		uint64_t frame;
		int rc;

		if (!*cur)
			*cur = ps_pgtable_lookup_leaf(s->pt, addr);
		/* Acquire: pairs with the entry's CAS (the page is set up). */
		e1 = *cur ? atomic_load_explicit(*cur, memory_order_acquire)
			  : PS_PTE_NONE;
		if (!ps_pte_is_present(e1) ||
		    (write && !ps_pte_is_writable(e1))) {
			/* Missing, or a write needs resolving: fault it in. */
			ps__space_read_unlock();
			rc = ps__space_fault_in(s, addr,
						write ? PS_ACCESS_WRITE
						      : PS_ACCESS_READ);
			ps__space_read_lock();
			*cur = NULL;
			if (rc)
				return rc;
			continue;
		}
		frame = ps_pte_frame(e1);
		if (frame >= s->nframes)
			return -EFAULT;
		p = &s->frames[frame];
		FAILPOINT(FP_PIN_AFTER_LOOKUP, addr);
		/* S2's P (seq_cst). */
		if (!try_pin(p, reject, write)) {
			ps__space_read_unlock();
			rc = ps__space_grab_failed(p, reject); /* may yield */
			ps__space_read_lock();
			*cur = NULL;
			if (rc)
				return rc;
			continue;
		}
		FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
		/*
		 * S2's e2 - seq_cst: ordered after P in the total order, with
		 * no fence between. The cursor is still valid: nothing left the
		 * section since e1.
		 */
		e2 = atomic_load_explicit(*cur, memory_order_seq_cst);
		if (!same_mapping(e1, e2)) {
			/* Changed under us: back out (outside), again. */
			ps__space_read_unlock();
			ps__space_frame_unpin(s, frame);
			ps__space_read_lock();
			*cur = NULL;
			continue;
		}
		/*
		 * S9: a read pin's frame may be unpinned dirty. After the
		 * seq_cst re-read ("Recording the address" under S9 says why);
		 * a pin that backs out leaves the bit to the next write-back,
		 * which finds it clean.
		 */
		if (!write)
			ps__space_wb_note(s, addr);
		FAILPOINT(FP_PIN_RECHECKED, addr);
		if (lt && !lt_count_add(&lt[frame])) {
			/* S14: more than pins can be: let go (outside). */
			ps__space_read_unlock();
			ps__space_frame_unpin(s, frame);
			ps__space_read_lock();
			*cur = NULL;
			return -EOVERFLOW;
		}
		if (write)
			ps__space_log_opened(s, addr); /* S6, S9, S11 */
		*frame_out = frame;
		return 0;
	}
}

/*
 * pin_page() off its straight path: pin_one()'s loop, in a section of its
 * own. Errors say where: the one page, at offset 0.
 */
static PS_COLD int pin_page_slow(struct ps_space *s, uint64_t addr,
				 unsigned int flags, uint64_t *frame_out)
{
	cursor_t cur = NULL;
	int rc;

	/*
	 * Frames of three sizes (lib/space-huge.c). pin_page()'s straight path
	 * needs no test: a huge entry has no leaf cursor, and the 4 KiB word of
	 * a page inside a whole huge frame is free (S16), so both come here.
	 */
	if (PS_UNLIKELY(ps__space_huge(s)))
		return ps__space_pin_range_huge(s, addr, PAGE_SIZE, flags,
						frame_out);
	ps__space_read_lock();
	rc = pin_one(s, addr, flags, NULL, &cur, frame_out);
	ps__space_read_unlock();
	if (rc)
		frame_out[0] = 0;
	return rc;
}

/* pin_page()'s entry changed under its pin: back out (S2), then the loop. */
static PS_COLD int pin_page_backout(struct ps_space *s, uint64_t addr,
				    unsigned int flags, uint64_t frame,
				    uint64_t *frame_out)
{
	ps__space_frame_unpin(s, frame);
	return pin_page_slow(s, addr, flags, frame_out);
}

/*
 * pin_page()'s record of a page it pinned, when there is one to make: a read
 * pin's page not in the write-back set (S9), a write pin's log (S6, S9,
 * S11). After the re-read, as pin_one() records. Returns 0.
 */
static __attribute__((noinline)) int pin_page_record(struct ps_space *s,
						     uint64_t addr, bool write)
{
	if (!write)
		ps__space_wb_note(s, addr);
	FAILPOINT(FP_PIN_RECHECKED, addr);
	if (write)
		ps__space_log_opened(s, addr);
	return 0;
}

/*
 * One page, not for the long term: what most pinners ask per I/O. The
 * protocol of pin_one() (S2) with its success path straight through: one
 * section, one walk, the pin, the seq_cst re-read, the record. Whatever
 * else happens (a fault to resolve, a frame that cannot be pinned now, a
 * change under the pin) leaves the section and is pin_one()'s, which loops.
 */
static __attribute__((noinline)) int pin_page(struct ps_space *s, uint64_t addr,
					      unsigned int flags,
					      uint64_t *frame_out)
{
	const bool write = flags & PS_PIN_WRITE;
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_PIN_PRIVATE ? 0 : PS_PAGE_PRIVATE);
	uint64_t frame;
	cursor_t cur;
	ps_pte_t e1;

	/* A thread's first section registers it: not on the straight path. */
	if (PS_UNLIKELY(!ps__rcu_thread_registered()))
		return pin_page_slow(s, addr, flags, frame_out);
	ps__space_read_lock();
	cur = ps_pgtable_lookup_leaf(s->pt, addr);
	if (PS_UNLIKELY(!cur))
		goto slow;
	/* Acquire: pairs with the entry's CAS (the page is set up). */
	e1 = atomic_load_explicit(cur, memory_order_acquire);
	frame = ps_pte_frame(e1);
	if (PS_UNLIKELY(!ps_pte_is_present(e1) ||
			(write && !ps_pte_is_writable(e1)) ||
			frame >= s->nframes))
		goto slow;
	FAILPOINT(FP_PIN_AFTER_LOOKUP, addr);
	/* S2's P (seq_cst), then e2 (seq_cst), with no fence between. */
	if (PS_UNLIKELY(!try_pin(&s->frames[frame], reject, write)))
		goto slow;
	FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
	if (PS_UNLIKELY(!same_mapping(
		    e1, atomic_load_explicit(cur, memory_order_seq_cst)))) {
		ps__space_read_unlock(); /* back out outside (S7) */
		return pin_page_backout(s, addr, flags, frame, frame_out);
	}
	ps__space_read_unlock();
	*frame_out = frame;
	/* The record, after e2 (outside the section: no order with it). */
	if (PS_LIKELY(!write && ps__hbm_test(&s->wb, addr >> PAGE_SHIFT))) {
		FAILPOINT(FP_PIN_RECHECKED, addr);
		return 0; /* S9: in the set already ("Recording the address") */
	}
	return pin_page_record(s, addr, write);
slow:
	ps__space_read_unlock();
	return pin_page_slow(s, addr, flags, frame_out);
}

/* Any range: checked, then pinned page by page in one section. */
static __attribute__((noinline)) int pin_range(struct ps_space *s,
					       uint64_t start, uint64_t len,
					       unsigned int flags,
					       uint64_t *frames_out)
{
	lt_count_t *lt = NULL;
	cursor_t cur = NULL;
	uint64_t npages;
	int rc = 0;

	if (!ps__space_range_ok(s, start, len) || !frames_out ||
	    (flags & ~(PS_PIN_WRITE | PS_PIN_LONGTERM | PS_PIN_PRIVATE)))
		return -EINVAL;
	if (PS_UNLIKELY(ps__space_huge(s))) /* lib/space-huge.c */
		return ps__space_pin_range_huge(s, start, len, flags,
						frames_out);
	if (flags & PS_PIN_LONGTERM) {
		rc = lt_counts_make(s, &lt); /* S14: outside the section */
		if (rc)
			return rc;
	}
	npages = len >> PAGE_SHIFT;
	ps__space_read_lock();
	for (uint64_t i = 0; i < npages; i++) {
		const uint64_t addr = start + (i << PAGE_SHIFT);

		/* One walk per leaf: the cursor moves on within it. */
		if (cur && (addr >> PAGE_SHIFT) % PS_PGTABLE_LEAF_PAGES)
			cur++;
		else
			cur = NULL;
		rc = pin_one(s, addr, flags, lt, &cur, &frames_out[i]);
		if (rc) {
			ps__space_read_unlock();
			/* All or nothing: release every pin taken. */
			(void)ps_space_unpin(s, frames_out, i,
					     lt ? PS_UNPIN_LONGTERM : 0);
			/* Errors say where: the page that stopped the call. */
			frames_out[0] = i << PAGE_SHIFT;
			return rc;
		}
	}
	ps__space_read_unlock();
	return 0;
}

int ps_space_pin_range(struct ps_space *s, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *frames_out)
{
	/* One page, not long-term: checked here, pinned in a tail call. */
	if (PS_LIKELY(len == PAGE_SIZE && frames_out &&
		      !(flags & ~(PS_PIN_WRITE | PS_PIN_PRIVATE)) &&
		      !(start & (PAGE_SIZE - 1)) && start < s->size))
		return pin_page(s, start, flags, frames_out);
	return pin_range(s, start, len, flags, frames_out);
}

/*
 * S5: an unpin for a device's write marks the frame under its LOCKED bit, as
 * Linux's unpin_user_pages_dirty_lock() holds the folio lock. An INTEGRITY
 * write-back clears DIRTY of a pinned frame too (S4), under that bit: without
 * it, a write-back could clear the DIRTY this call set and write the frame
 * back before this call's dirty hook ran, a clean with no dirtying before it.
 * The unpin's own pin keeps the frame LIVE while it waits.
 */
static void unpin_mark_dirty(struct ps_space *s, uint64_t frame)
{
	(void)ps__space_lock_and_mark_dirty(s, frame);
}

/* The last reference went with an unpin: the free hook (S7). */
static PS_COLD void unpin_freed(struct ps_space *s, uint64_t frame)
{
	ps__space_frame_freed(s, frame);
}

/* ps_space_unpin() of more than one page, or with flags. */
static __attribute__((noinline)) int unpin(struct ps_space *s,
					   const uint64_t *frames, uint64_t n,
					   unsigned int flags)
{
	lt_count_t *lt = NULL;
	int rc = 0;

	if (PS_LIKELY(!flags)) {
		/* The common unpin: nothing to mark, nothing to uncount. */
		for (uint64_t i = 0; i < n; i++)
			if (frames[i] < s->nframes)
				ps__space_frame_unpin(s, frames[i]);
		return 0;
	}
	if (flags & ~(PS_UNPIN_DIRTY | PS_UNPIN_LONGTERM))
		return -EINVAL;
	if (flags & PS_UNPIN_LONGTERM)
		lt = lt_counts(s);
	for (uint64_t i = 0; i < n; i++) {
		if (frames[i] >= s->nframes)
			continue;
		if (flags & PS_UNPIN_DIRTY)
			unpin_mark_dirty(s, frames[i]);
		/* S14: uncount before the unpin; refuse below zero. */
		if ((flags & PS_UNPIN_LONGTERM) &&
		    (!lt || !lt_count_sub(&lt[frames[i]])))
			rc = -ENOENT;
		ps__space_frame_unpin(s, frames[i]);
	}
	return rc;
}

int ps_space_unpin(struct ps_space *s, const uint64_t *frames, uint64_t n,
		   unsigned int flags)
{
	/* Frames of three sizes, units: lib/space-huge.c. */
	if (PS_UNLIKELY(ps__space_huge(s)))
		return ps__space_unpin_huge(s, frames, n, flags);
	/* One plain pin, the common case: one CAS on the page word. */
	if (PS_LIKELY(n == 1 && !flags)) {
		if (frames[0] < s->nframes &&
		    PS_UNLIKELY(ps_page_unpin(&s->frames[frames[0]])))
			unpin_freed(s, frames[0]);
		return 0;
	}
	return unpin(s, frames, n, flags);
}
