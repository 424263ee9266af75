// SPDX-License-Identifier: MIT
/*
 * lib/prot-kmap.c - CPU maps of a space's frames (pagestate/prot.h):
 * ps_prot_kmap(), ps_prot_kunmap(), ps_prot_kmap_count() and
 * ps_prot_set_inaccessible(), with the make-accessible hook that the first CPU
 * map of an INACCESSIBLE frame runs; and prot's per-space state that holds the
 * CPU-map counts and the hooks (lib/prot-impl.h), with ps_prot_set_hooks().
 * Conversion, cache modes and mprotect are lib/prot-convert.c's.
 *
 * ---------------------------------------------------------------------------
 * Protocol and guarantees (cited by tests/test-prot.c as P5, P6, and by
 * tests/test-prot-huge.c as P10; P1..P4, P7..P9 are in lib/prot-convert.c; the
 * space's S1..S14, stated in the space's files, hold too: lib/space-impl.h)
 * ---------------------------------------------------------------------------
 *
 * P5  CPU-map count and its reference. The CPU maps of a frame hold one
 *     reference on it between them: count(f) > 0 implies that reference is
 *     held. Only the 0 -> 1 transition takes it (a try-get that fails on a
 *     frozen frame and, unless allowed, a private one, before the count is
 *     raised, under LOCKED: P6), and only the 1 -> 0 transition drops it
 *     (after the count is lowered). Every other kmap and kunmap is one CAS
 *     on the count, which never leaves 0 or reaches it: a kmap + kunmap of
 *     a frame already CPU-mapped touches no page word. Consequences:
 *       - A freeze counts references, not maps, and the maps' one reference
 *         may be among those the caller declares (its own map). So whoever
 *         changes a frame's state under a freeze (the conversion, set_cache)
 *         reads the count after the freeze and gives up if it is positive
 *         (freeze_one() and ps_prot_set_cache() in lib/prot-convert.c).
 *         That read is final until the unfreeze: a positive count stays
 *         positive (the caller's own map holds it), and a zero count cannot
 *         rise, because the 0 -> 1 transition needs a try-get, which fails
 *         on the frozen frame. A freeze that succeeds with the maps'
 *         reference among the expected ones needs the caller to hold a map
 *         (extra_refs are the caller's own), counted before the call.
 *       - A kmap that joins (a CAS from a positive count) reads no word
 *         first, so it cannot refuse a private frame by the try-get. It
 *         reads the frame's state after the join instead: the count may
 *         have gone to 0 and back since it read it (the map it joined
 *         ended, a conversion ran, a new map began), but the join acquired
 *         the count from the add of the map that made it positive, which
 *         follows that map's try-get, which follows the conversion's
 *         unfreeze: the state read is the new one, and the kmap undoes its
 *         join and refuses. While it is counted no conversion can begin.
 *       - Hence INACCESSIBLE, which is set only while frozen with the count at
 *         0 (conversion) or under LOCKED with the count at 0 and the frame not
 *         frozen (set_inaccessible), is never set while the count is positive.
 *     The count is capped at PS_PAGE_REFS_MAX maps (-EOVERFLOW).
 *
 * P6  Exactly-once make-accessible. The count's 0 -> 1 transition happens
 *     only under the frame's LOCKED bit; other increments are a CAS that
 *     refuses 0. Under LOCKED, the thread that finds the frame INACCESSIBLE
 *     calls the hook, clears INACCESSIBLE, then counts with release. A
 *     racing first kmapper waits for LOCKED and finds the flag clear; a
 *     fast-path kmapper found the count positive, so (P5) the flag was
 *     already clear, and it acquires the count, so it sees what the hook
 *     did. The flag is set again only by a conversion to private or
 *     set_inaccessible, neither of which can happen while a map is held.
 *
 * P10 CPU maps of pages of whole huge frames (S16, S17 in lib/space-huge.c).
 *     A page of a whole 2 MiB or 1 GiB frame has a free 4 KiB word: the frame's
 *     state, its references included, is the whole frame's word. The maps of
 *     such a page still count at its 4 KiB frame (kmaps[frame], so a kunmap
 *     needs no lookup), but their one reference is taken on the word that
 *     holds the frame's state at the 0 -> 1 transition, as a unit of that
 *     word's order (a reference on a whole word is one on each part, S17: the
 *     frame is not split for a CPU map). The count word records that order
 *     (PS__PROT_KMAP_UNIT_SHIFT), and the 1 -> 0 transition releases the same
 *     unit (ps__space_frame_put(): on the whole word, or one on each part if
 *     the frame was split meanwhile), so nothing is lost or left over when a
 *     split comes between. On a whole word the reference and LOCKED are taken
 *     in one CAS (ps_page_try_get_lock_and_set()), which never waits: the
 *     word cannot be split while LOCKED is held (split_state() waits for it),
 *     and a lock taken after a separate get could meet a word split between.
 *     P6 holds per unit: INACCESSIBLE is the unit's flag, and the first map of
 *     any of its pages that finds it set runs make_accessible for each 4 KiB
 *     frame of the unit (the hook's contract is one 4 KiB frame), then clears
 *     it. A freeze of a whole word counts the maps' references of all its
 *     pages, and the count a freeze cannot see (P5: a map declared in
 *     extra_refs) is read for every 4 KiB frame of the unit
 *     (frozen_cpu_mapped() in lib/prot-convert.c): reading the first frame's
 *     alone would let a whole frame with a CPU-mapped page be converted.
 *
 * make_accessible runs under the frame's LOCKED bit with the first map's
 * reference held, never inside a read-side section (P8, lib/prot-convert.c).
 *
 * Progress: see the table in pagestate/prot.h.
 */
#include "prot-impl.h"

#include "failpoint.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

/* --- prot's state in a space ---------------------------------------------- */

/* The extension's key: its address is prot's, in every space. */
const char ps__prot_key;

static void prot_fini(struct ps__space_ext *ext)
{
	struct ps__prot_space *ps = (struct ps__prot_space *)ext;
	/* Relaxed: no other thread uses the space any more. */
	struct ps__prot_hooks_node *n =
		atomic_load_explicit(&ps->hooks, memory_order_relaxed);

	while (n) {
		struct ps__prot_hooks_node *prev = n->prev;

		free(n);
		n = prev;
	}
	if (ps->kmaps_map)
		munmap(ps->kmaps_map, ps->kmaps_bytes);
	free(ps);
}

/* Create prot's state in @s (or find the one another thread created). */
int ps__prot_create(struct ps_space *s, struct ps__prot_space **out)
{
	struct ps__prot_space *ps = calloc(1, sizeof(*ps));
	struct ps__space_ext *won;
	void *m;

	if (!ps)
		return -ENOMEM;
	ps->ext.key = &ps__prot_key;
	ps->ext.fini = prot_fini;
	ps->frames = ps__space_frames(s, &ps->nframes);
	atomic_init(&ps->hooks, NULL); /* none yet */
	if (ps->nframes > SIZE_MAX / sizeof(*ps->kmaps)) {
		free(ps);
		return -ENOMEM;
	}
	ps->kmaps_bytes = (size_t)ps->nframes * sizeof(*ps->kmaps);
	/* Zero-filled on first touch: frames never CPU-mapped cost nothing. */
	m = mmap(NULL, ps->kmaps_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		free(ps);
		return -ENOMEM;
	}
	ps->kmaps_map = m;
	ps->kmaps = m;
	won = ps__space_ext_add(s, &ps->ext);
	if (won != &ps->ext)
		prot_fini(&ps->ext); /* another thread's came first */
	*out = (struct ps__prot_space *)won;
	return 0;
}

int ps_prot_set_hooks(struct ps_space *s, const struct ps_prot_hooks *hooks)
{
	struct ps__prot_space *ps;
	struct ps__prot_hooks_node *n;
	int rc = ps__prot_get(s, &ps);

	if (rc)
		return rc;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	if (hooks)
		n->h = *hooks;
	PS__SPACE_FORK_CHECK(s);
	ps__space_writer_lock(s);
	/* Relaxed: the writer lock orders the setters. */
	n->prev = atomic_load_explicit(&ps->hooks, memory_order_relaxed);
	/* Release: the copy is complete before a ps__prot_hooks() finds it. */
	atomic_store_explicit(&ps->hooks, n, memory_order_release);
	ps__space_writer_unlock(s);
	return 0;
}

/* --- CPU maps (P5, P6) ---------------------------------------------------- */

/*
 * Why the kmap's reference could not be taken, as an errno, or 0 to try
 * again (the word changed, or a conversion holds the frame: wait).
 */
static int kmap_refused(struct ps_space *s, const struct ps_page *p,
			uint64_t frame, uint64_t reject)
{
	uint64_t w = ps_page_load(p);

	if (w & PS_PAGE_POISONED)
		return -EHWPOISON;
	if (w & PS_PAGE_FROZEN) {
		sched_yield(); /* being converted or migrated: wait */
		return 0;
	}
	if (!(w & PS_PAGE_LIVE))
		/* P10: split or merged meanwhile? Then look again. */
		return ps_space_frame_word(s, frame, NULL) != p ? 0 : -ENOENT;
	if (w & reject & PS_PAGE_PRIVATE)
		return -EPERM;
	if (ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
		return -EOVERFLOW;
	return 0;
}

/*
 * Most CPU maps a frame may have at once: as many as it may have references
 * (the count is not bounded by references any more: the maps share one).
 */
#define KMAP_MAX ((uint32_t)PS_PAGE_REFS_MAX)
PS_STATIC_ASSERT(PS_PAGE_REFS_MAX <= PS__PROT_KMAP_COUNT,
		 "the CPU-map count's field holds KMAP_MAX");

/* The unit code of the count word (P10) for a unit of @order, and back. */
static inline uint32_t kmap_unit_code(unsigned int order)
{
	return (order == PS_SPACE_ORDER_1G ? 2u
		: order			   ? 1u
					   : 0u)
	       << PS__PROT_KMAP_UNIT_SHIFT;
}

static inline unsigned int kmap_unit_order(uint32_t c)
{
	const uint32_t k = c >> PS__PROT_KMAP_UNIT_SHIFT;

	return k == 2 ? PS_SPACE_ORDER_1G : k ? PS_SPACE_ORDER_2M : 0;
}

/* The unit of @order that holds @frame, as ps__space_frame_put() takes it. */
static inline uint64_t kmap_unit(uint64_t frame, unsigned int order)
{
	return PS_SPACE_UNIT(frame & ~((UINT64_C(1) << order) - 1), order);
}

/*
 * The word that holds @frame's state (P10): its 4 KiB word while that is
 * LIVE (S16 in lib/space-huge.c: the words below a whole frame are free), else
 * the space's answer, a whole huge frame's word if there is one.
 */
static inline struct ps_page *kmap_word(struct ps_space *s,
					struct ps__prot_space *ps,
					uint64_t frame, unsigned int *order)
{
	struct ps_page *p = &ps->frames[frame];

	*order = 0;
	if (PS_LIKELY(ps_page_load(p) & PS_PAGE_LIVE))
		return p;
	return ps_space_frame_word(s, frame, order);
}

/*
 * A CPU map that must take the maps' reference, or wait (P5, P6): the count
 * read 0, the frame is being converted, or the fast path's check refused.
 * Takes a reference of its own (a try-get that fails on a frozen frame and,
 * unless allowed, a private one), then the frame's LOCKED bit, under which the
 * count's 0 -> 1 transition alone happens: the thread that finds the frame
 * INACCESSIBLE there runs the make-accessible hook. If the count is positive by
 * then, another map holds the maps' reference already: this call's own goes.
 */
static int kmap_slow(struct ps_space *s, struct ps__prot_space *ps,
		     uint64_t frame, uint64_t reject)
{
	PS_ATOMIC(uint32_t) *cnt = &ps->kmaps[frame];
	struct ps_page *p;
	unsigned int o;
	uint64_t unit, seen;
	uint32_t old;
	int rc = 0;

	for (;;) {
		p = kmap_word(s, ps, frame, &o);
		unit = kmap_unit(frame, o);
		if (!o) {
			/* P5: the reference first, so a freeze sees it. */
			if (ps_page_try_get_masked(p, 1, reject)) {
				ps_page_lock(p);
				break;
			}
		} else if (ps_page_try_get_lock_and_set(p, 0, &seen)) {
			/*
			 * P10: a whole frame's word, the reference and LOCKED
			 * in one CAS (a split waits for LOCKED, so the word
			 * stays the frame's while held); the mask after it.
			 */
			if (!(seen & reject))
				break;
			ps_page_unlock(p);
			ps__space_frame_put(s, unit);
			return seen & PS_PAGE_POISONED ? -EHWPOISON : -EPERM;
		} else {
			sched_yield(); /* locked, say: the CAS never waits */
		}
		rc = kmap_refused(s, p, frame, reject);
		if (rc)
			return rc;
	}
	/*
	 * Under LOCKED the flag alone decides: a racing first map that held
	 * LOCKED before us cleared it, and a positive count (a fast-path map,
	 * outside the lock) means it is clear anyway (P5). A whole frame's
	 * flag is its unit's: the hook is told each of its 4 KiB frames (P10).
	 */
	if (ps_page_test_flags(p, PS_PAGE_INACCESSIBLE)) {
		const struct ps_prot_hooks *h = ps__prot_hooks(s);
		const uint64_t first = PS_SPACE_UNIT_FRAME(unit);

		for (uint64_t k = 0;
		     h && h->make_accessible && !rc && k < (UINT64_C(1) << o);
		     k++)
			rc = h->make_accessible(h->ctx, s, first + k);
		if (rc) {
			ps_page_unlock(p);
			ps__space_frame_put(s, unit);
			return rc < 0 ? rc : -EIO;
		}
		ps_page_clear_flags(p, PS_PAGE_INACCESSIBLE);
	}
	/* Relaxed: under LOCKED only kunmaps lower it; the CAS decides. */
	old = atomic_load_explicit(cnt, memory_order_relaxed);
	do {
		if ((old & PS__PROT_KMAP_COUNT) >= KMAP_MAX) {
			ps_page_unlock(p);
			ps__space_frame_put(s, unit);
			return -EOVERFLOW;
		}
		/*
		 * P6 - Release: the hook's work before a kmap that acquires
		 * >= 1. Acquire: a kunmap's 1 -> 0 that this follows released
		 * the CPU's accesses of the map that ended (as the fast path's
		 * CAS). P10: the 0 -> 1 records the unit of the reference.
		 */
	} while (!atomic_compare_exchange_weak_explicit(
		cnt, &old,
		(old & PS__PROT_KMAP_COUNT) ? old + 1 : 1u | kmap_unit_code(o),
		memory_order_acq_rel, memory_order_relaxed));
	ps_page_unlock(p);
	/* P5: the maps hold one reference; a second is not theirs. */
	if (old & PS__PROT_KMAP_COUNT)
		ps__space_frame_put(s, unit); /* never the last: theirs holds */
	return 0;
}

/*
 * The state word of a frame just joined, off the straight path: its 4 KiB
 * word was not LIVE (a whole huge frame's page, or a frozen frame): read the
 * word that holds its state (P10) for the flags the map refuses.
 */
static PS_COLD uint64_t kmap_state(struct ps_space *s, uint64_t frame)
{
	return ps_page_load(ps_space_frame_word(s, frame, NULL));
}

/* A join that found the frame in a state it refuses: undo it (P5). */
static PS_COLD int kmap_undo(struct ps_space *s, uint64_t frame)
{
	const uint64_t w = kmap_state(s, frame);

	(void)ps_prot_kunmap(s, frame);
	return w & PS_PAGE_POISONED ? -EHWPOISON : -EPERM;
}

/*
 * ps_prot_kmap() off its straight path: create prot's state, check the
 * frame, and take the maps' reference (kmap_slow()) or join them (P5).
 */
static PS_COLD int kmap_general(struct ps_space *s, uint64_t frame,
				uint64_t reject)
{
	struct ps__prot_space *ps;
	PS_ATOMIC(uint32_t) *cnt;
	uint32_t c;
	int rc = ps__prot_get(s, &ps);

	if (rc)
		return rc;
	if (frame >= ps->nframes)
		return -EINVAL;
	cnt = &ps->kmaps[frame];
	/* Relaxed: only a guess for the CAS. */
	c = atomic_load_explicit(cnt, memory_order_relaxed);
	if (c & PS__PROT_KMAP_COUNT)
		FAILPOINT(FP_KMAP_JOIN, frame);
	while (c & PS__PROT_KMAP_COUNT) {
		if ((c & PS__PROT_KMAP_COUNT) >= KMAP_MAX)
			return -EOVERFLOW;
		/* As ps_prot_kmap()'s join. */
		if (atomic_compare_exchange_weak_explicit(
			    cnt, &c, c + 1, memory_order_acquire,
			    memory_order_relaxed)) {
			if (!(kmap_state(s, frame) & reject))
				return 0;
			return kmap_undo(s, frame);
		}
	}
	return kmap_slow(s, ps, frame, reject);
}

int ps_prot_kmap(struct ps_space *s, uint64_t frame, unsigned int flags)
{
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_KMAP_PRIVATE ? 0 : PS_PAGE_PRIVATE);
	struct ps__prot_space *ps = ps__prot_peek(s);
	PS_ATOMIC(uint32_t) *cnt;
	uint64_t w;
	uint32_t c;

	if (PS_UNLIKELY(flags & ~PS_KMAP_PRIVATE))
		return -EINVAL;
	if (PS_UNLIKELY(!ps || frame >= ps->nframes))
		return kmap_general(s, frame, reject);
	cnt = &ps->kmaps[frame];
	/* Relaxed: only a guess for the CAS. */
	c = atomic_load_explicit(cnt, memory_order_relaxed);
	if (c & PS__PROT_KMAP_COUNT)
		FAILPOINT(FP_KMAP_JOIN, frame);
	/*
	 * P5, P6 - join the maps that hold the frame: a CAS that never makes
	 * the 0 -> 1 transition. Acquire: pairs with the release of
	 * kmap_slow()'s add (the hook's work) and of the kunmaps. One try here;
	 * a count at 0 or the limit, or a CAS that lost, goes the general way.
	 */
	if (PS_UNLIKELY(!(c & PS__PROT_KMAP_COUNT) ||
			(c & PS__PROT_KMAP_COUNT) >= KMAP_MAX ||
			!atomic_compare_exchange_strong_explicit(
				cnt, &c, c + 1, memory_order_acquire,
				memory_order_relaxed)))
		return kmap_general(s, frame, reject);
	/*
	 * The count may have gone to 0 and back since it was read, over a
	 * conversion (an ABA): the frame's state is read after the join,
	 * which acquired the add of the map that made it positive again, so
	 * a conversion before it is seen. While this map is counted, none can
	 * begin (P5).
	 */
	w = ps_page_load(&ps->frames[frame]);
	if (PS_LIKELY((w & PS_PAGE_LIVE) && !(w & reject)))
		return 0;
	if (!(w & PS_PAGE_LIVE) && !(kmap_state(s, frame) & reject))
		return 0; /* P10: a whole huge frame's page */
	return kmap_undo(s, frame);
}

int ps_prot_kunmap(struct ps_space *s, uint64_t frame)
{
	struct ps__prot_space *ps = ps__prot_peek(s);
	PS_ATOMIC(uint32_t) *cnt;
	uint32_t c;

	if (!ps || frame >= ps->nframes)
		return -EINVAL; /* out of range, or never CPU-mapped */
	cnt = &ps->kmaps[frame];
	/* Relaxed: only a guess for the CAS. */
	c = atomic_load_explicit(cnt, memory_order_relaxed);
	do {
		if (!(c & PS__PROT_KMAP_COUNT))
			return -EINVAL; /* not CPU-mapped: nothing changes */
					/*
		 * Release: the CPU's accesses come before the count drops;
		 * pairs with set_inaccessible's acquire load and the next
		 * map's acquire.
		 */
	} while (!atomic_compare_exchange_weak_explicit(cnt, &c, c - 1,
							memory_order_release,
							memory_order_relaxed));
	/*
	 * P5: the last map ends: uncounted, then the maps' reference goes, as
	 * the unit it was taken on (P10).
	 */
	if ((c & PS__PROT_KMAP_COUNT) == 1)
		ps__space_frame_put(s, kmap_unit(frame, kmap_unit_order(c)));
	return 0;
}

uint32_t ps_prot_kmap_count(struct ps_space *s, uint64_t frame)
{
	struct ps__prot_space *ps = ps__prot_peek(s);

	if (!ps || frame >= ps->nframes)
		return 0;
	return ps__prot_cpu_maps(s, frame); /* an acquire load */
}

/*
 * ps_prot_set_inaccessible() on the word @p that holds the state of the unit
 * of @order at @frame: under its LOCKED bit, no CPU map of any of the unit's
 * 4 KiB frames (P10), then the flag in one CAS that refuses a frozen frame.
 */
static int set_inaccessible_word(struct ps_space *s, struct ps_page *p,
				 uint64_t frame, unsigned int order)
{
	struct ps__prot_space *ps = ps__prot_peek(s);
	int rc = 0;

	ps_page_lock(p);
	/*
	 * ps__prot_cpu_mapped()'s acquire pairs with kunmap's release: the CPU
	 * maps are over. A count made positive under LOCKED (kmap_slow())
	 * after the state was created is seen: the state's publication comes
	 * before it.
	 */
	if (ps && ps__prot_cpu_mapped(ps, frame, UINT64_C(1) << order))
		rc = -EBUSY;
	/* One CAS that also refuses a frozen frame (P5). */
	else if (!ps_page_set_flags_unless_frozen(p, PS_PAGE_INACCESSIBLE))
		rc = -EBUSY; /* being converted: it decides */
	ps_page_unlock(p);
	return rc;
}

int ps_prot_set_inaccessible(struct ps_space *s, uint64_t frame)
{
	const unsigned int order = PS_SPACE_UNIT_ORDER(frame);
	struct ps_page *p;
	unsigned int o;
	int rc;

	frame = PS_SPACE_UNIT_FRAME(frame);
	if ((order != PS_SPACE_ORDER_4K && order != PS_SPACE_ORDER_2M &&
	     order != PS_SPACE_ORDER_1G) ||
	    (frame & ((UINT64_C(1) << order) - 1)))
		return -EINVAL;
	p = ps_space_frame_word(s, frame, &o);
	if (!p || !ps_space_page(s, frame + (UINT64_C(1) << order) - 1))
		return -EINVAL;
	if (PS_LIKELY(!order && !o))
		return set_inaccessible_word(s, p, frame, 0);
	if (order)
		/* P10: a whole frame, named as its unit: its word. */
		return o == order ? set_inaccessible_word(s, p, frame, order)
				  : -EINVAL;
	/*
	 * A 4 KiB frame of a whole frame: the frame's state is split first
	 * (S17), under the writer mutex so that no map merges the free parts
	 * back before the flag is set (a merge is a map's, S1). The writer
	 * mutex before a page's LOCKED bit, as a huge write fault takes them.
	 */
	ps__space_writer_lock(s);
	rc = ps__space_split_frame(s, frame, PS_SPACE_ORDER_4K);
	p = ps_space_frame_word(s, frame, &o);
	if (!rc && o)
		rc = -EBUSY; /* could not be split down to the page */
	if (!rc)
		rc = set_inaccessible_word(s, p, frame, 0);
	ps__space_writer_unlock(s);
	return rc;
}
