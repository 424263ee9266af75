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
 *     reference on it between them, recorded as HELD in the frame's count
 *     word (lib/prot-impl.h): HELD implies that reference is held. Only a
 *     first map sets HELD (a compare-and-swap under LOCKED, P6, after a
 *     try-get that fails on a frozen frame and, unless allowed, a private
 *     one), and only the change that leaves the count at 0 with HELD clears
 *     it (a compare-and-swap from exactly that word, kmap_drop_held()), then
 *     drops the reference. Every kmap first counts itself with one
 *     fetch-and-add: if the word it found had HELD, it joined the maps that
 *     hold the frame; if not, it takes the first map's path, counted (a count
 *     without HELD is kmaps on their way, not maps, and a kunmap refuses it).
 *     A kunmap is one fetch-and-subtract: a kmap + kunmap of a frame already
 *     CPU-mapped is one add and one subtract and touches no page word. The
 *     count lies above HELD, so adds and subtracts, including those undone (a
 *     kmap that gives up, a misused kunmap that found nothing to end), commute
 *     and never change HELD; whichever of them leaves the word at a zero
 *     count with HELD clears it, and exactly one clear succeeds per HELD set.
 *     Consequences:
 *       - A freeze counts references, not maps, and the maps' one reference
 *         may be among those the caller declares (its own map). So whoever
 *         changes a frame's state under a freeze (the conversion, set_cache)
 *         reads HELD after the freeze and gives up if it is set (freeze_one()
 *         and ps_prot_set_cache() in lib/prot-convert.c; a conversion whose
 *         caller declared no references of its own skips the read: its freeze
 *         at the mapping's one reference proves the maps hold none). That read
 *         is final until the unfreeze: HELD set stays set (the caller's own map
 *         holds it), and HELD clear cannot be set, because a first map needs a
 *         try-get, which fails on the frozen frame. A freeze that succeeds with
 *         the maps' reference among the expected ones needs the caller to hold
 *         a map (extra_refs are the caller's own), counted before the call.
 *       - A kmap that joins (its add found HELD) reads no word first, so it
 *         cannot refuse a private frame by the try-get. It reads the frame's
 *         state after the join instead: the maps it joined may not be those
 *         its caller saw (they ended, a conversion ran, a new map began), but
 *         the join acquired the count from the compare-and-swap that set
 *         HELD, which follows that first map's try-get, which follows the
 *         conversion's unfreeze: the state read is the new one, and the kmap
 *         undoes its join and refuses. While it is counted with HELD no
 *         conversion can begin.
 *       - Hence INACCESSIBLE, which is set only while frozen with HELD clear
 *         (conversion) or under LOCKED with HELD clear and the frame not frozen
 *         (set_inaccessible), is never set while the frame is CPU-mapped.
 *     The count is capped at PS_PAGE_REFS_MAX maps (-EOVERFLOW).
 *
 * P6  Exactly-once make-accessible. HELD is set only under the frame's LOCKED
 *     bit. Under LOCKED, the thread that finds the frame INACCESSIBLE calls
 *     the hook, clears INACCESSIBLE, then sets HELD with release. A racing
 *     first kmapper waits for LOCKED and finds the flag clear; a kmapper
 *     whose add found HELD knows (P5) the flag was already clear, and its
 *     add acquires the word, in the release sequence of the compare-and-swap
 *     that set HELD, so it sees what the hook did. The flag is set again
 *     only by a conversion to private or set_inaccessible, neither of which
 *     can happen while HELD is set.
 *
 * P10 CPU maps of pages of whole huge frames (S16, S17 in lib/space-huge.c).
 *     A page of a whole 2 MiB or 1 GiB frame has a free 4 KiB word: the frame's
 *     state, its references included, is the whole frame's word. The maps of
 *     such a page still count at its 4 KiB frame (kmaps[frame], so a kunmap
 *     needs no lookup), but their one reference is taken on the word that
 *     holds the frame's state when HELD is set, as a unit of that word's
 *     order (a reference on a whole word is one on each part, S17: the frame
 *     is not split for a CPU map). HELD records that order (lib/prot-impl.h),
 *     and the clear of HELD releases the same unit (ps__space_frame_put(): on
 *     the whole word, or one on each part if the frame was split meanwhile), so
 *     nothing is lost or left over when a split comes between. On a whole word
 *     the reference and LOCKED are taken in one CAS
 *     (ps_page_try_get_lock_and_set()), which never waits: the word cannot be
 *     split while LOCKED is held (split_state() waits for it), and a lock taken
 *     after a separate get could meet a word split between.
 *     P6 holds per unit: INACCESSIBLE is the unit's flag, and the first map of
 *     any of its pages that finds it set runs make_accessible for each 4 KiB
 *     frame of the unit (the hook's contract is one 4 KiB frame), then clears
 *     it. A freeze of a whole word counts the maps' references of all its
 *     pages, and HELD, which a freeze cannot see (P5: a map declared in
 *     extra_refs), is read for every 4 KiB frame of the unit
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
 * Most CPU maps a frame may have at once: as many as it may have references
 * (the count is not bounded by references any more: the maps share one).
 */
#define KMAP_MAX ((uint32_t)PS_PAGE_REFS_MAX)
PS_STATIC_ASSERT(PS_PAGE_REFS_MAX < (UINT32_MAX >> PS__PROT_KMAP_SHIFT) / 2,
		 "the CPU-map count's field holds KMAP_MAX and the adds above");

/* HELD (P5) for a reference on a unit of @order (P10), and back. */
static inline uint32_t kmap_unit_code(unsigned int order)
{
	return order == PS_SPACE_ORDER_1G ? 3u : order ? 2u : 1u;
}

static inline unsigned int kmap_unit_order(uint32_t c)
{
	const uint32_t k = c & PS__PROT_KMAP_HELD;

	return k == 3 ? PS_SPACE_ORDER_1G : k == 2 ? PS_SPACE_ORDER_2M : 0;
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
 * The CPU-map word of a frame was left with no count and HELD by @c's change
 * (P5): the maps' reference goes, once. One CAS that clears HELD, unless a
 * kmap joined (or a misused kunmap took one) since: then the word is no longer
 * @c, and whichever change leaves it with no count and HELD again clears it.
 * Release: as the kunmap's, for the next first map's acquire.
 */
static PS_COLD void kmap_drop_held(struct ps_space *s, PS_ATOMIC(uint32_t) *cnt,
				   uint64_t frame, uint32_t c)
{
	if (atomic_compare_exchange_strong_explicit(cnt, &c, 0,
						    memory_order_release,
						    memory_order_relaxed))
		ps__space_frame_put(s, kmap_unit(frame, kmap_unit_order(c)));
}

/*
 * Take one off @frame's count (P5), for a kmap that counted itself (its
 * fetch-and-add) and gives up. The last map of a count with HELD drops the
 * maps' reference (kmap_drop_held()).
 */
static inline __attribute__((always_inline)) void
kmap_leave(struct ps_space *s, struct ps__prot_space *ps, uint64_t frame)
{
	PS_ATOMIC(uint32_t) *cnt = &ps->kmaps[frame];
	/*
	 * Release: nothing to publish, but a kunmap's release sequence goes
	 * on through it (an RMW).
	 */
	const uint32_t c = atomic_fetch_sub_explicit(cnt, PS__PROT_KMAP_ONE,
						     memory_order_release) -
			   PS__PROT_KMAP_ONE;

	if (PS_UNLIKELY(c == (c & PS__PROT_KMAP_HELD) && c))
		kmap_drop_held(s, cnt, frame, c);
}

/* kmap_leave() of a kmap that counted itself and gives up: @rc. */
static PS_COLD int kmap_give_up(struct ps_space *s, struct ps__prot_space *ps,
				uint64_t frame, int rc)
{
	kmap_leave(s, ps, frame);
	return rc;
}

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
 * A CPU map counted in @frame's count without HELD (P5, P6): the maps hold no
 * reference (the count was 0, or only other joins on their way), so this one
 * must take it, or wait: the frame is being converted, say. Takes a reference
 * of its own (a try-get that fails on a frozen frame and, unless allowed, a
 * private one), then the frame's LOCKED bit, under which alone HELD is set:
 * the thread that finds the frame INACCESSIBLE there runs the make-accessible
 * hook. If HELD is set by then, another map holds the maps' reference
 * already, and this one, counted, is a map as well: its own reference goes.
 * On failure its count goes too (kmap_leave()).
 */
static PS_COLD int kmap_slow(struct ps_space *s, struct ps__prot_space *ps,
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
			rc = seen & PS_PAGE_POISONED ? -EHWPOISON : -EPERM;
			goto leave;
		} else {
			sched_yield(); /* locked, say: the CAS never waits */
		}
		rc = kmap_refused(s, p, frame, reject);
		if (rc)
			goto leave;
	}
	/*
	 * Under LOCKED the flag alone decides: a racing first map that held
	 * LOCKED before us cleared it, and HELD set (by a first map, under
	 * LOCKED) means it is clear anyway (P5). A whole frame's flag is its
	 * unit's: the hook is told each of its 4 KiB frames (P10).
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
			rc = rc < 0 ? rc : -EIO;
			goto leave;
		}
		ps_page_clear_flags(p, PS_PAGE_INACCESSIBLE);
	}
	/*
	 * Acquire: HELD found set was set by another first map's release CAS
	 * below (its hook's work; the adds and subtracts since continue its
	 * release sequence), and a last kunmap's clear of HELD that this
	 * follows released the CPU's accesses of the map that ended.
	 */
	old = atomic_load_explicit(cnt, memory_order_acquire);
	while (!(old & PS__PROT_KMAP_HELD)) {
		/*
		 * P6 - Release: the hook's work before a kmap that acquires
		 * HELD. Acquire: as the load above. This map is counted
		 * already (its fetch-and-add); P10: HELD records the unit of
		 * the reference.
		 */
		if (atomic_compare_exchange_weak_explicit(
			    cnt, &old, old | kmap_unit_code(o),
			    memory_order_acq_rel, memory_order_acquire)) {
			ps_page_unlock(p);
			return 0;
		}
	}
	ps_page_unlock(p);
	/* P5: the maps hold one reference; a second is not theirs. */
	ps__space_frame_put(s, unit); /* never the last: theirs holds */
	if (ps__prot_kmap_n(old) > KMAP_MAX) {
		rc = -EOVERFLOW;
		goto leave;
	}
	return 0;
leave:
	return kmap_give_up(s, ps, frame, rc);
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
static PS_COLD int kmap_undo(struct ps_space *s, struct ps__prot_space *ps,
			     uint64_t frame)
{
	const uint64_t w = kmap_state(s, frame);

	return kmap_give_up(s, ps, frame,
			    w & PS_PAGE_POISONED ? -EHWPOISON : -EPERM);
}

/*
 * Count one CPU map of @frame (below ps->nframes) and join the maps that hold
 * it, or take their reference (P5, P6).
 */
static inline int kmap_count(struct ps_space *s, struct ps__prot_space *ps,
			     uint64_t frame, uint64_t reject)
{
	PS_ATOMIC(uint32_t) *cnt = &ps->kmaps[frame];
	uint64_t w;
	uint32_t c;

	FAILPOINT(FP_KMAP_JOIN, frame);
	/*
	 * P5, P6 - one fetch-and-add counts this map. With HELD in the count it
	 * found, it joined the maps that hold the frame; without, the first
	 * map's path takes their reference. Acquire: pairs with the release of
	 * kmap_slow()'s CAS that set HELD (the hook's work; every add and
	 * kunmap since continues its release sequence) and of the kunmaps.
	 */
	c = atomic_fetch_add_explicit(cnt, PS__PROT_KMAP_ONE,
				      memory_order_acquire);
	if (PS_UNLIKELY(!(c & PS__PROT_KMAP_HELD)))
		return kmap_slow(s, ps, frame, reject);
	if (PS_UNLIKELY(ps__prot_kmap_n(c) >= KMAP_MAX))
		return kmap_give_up(s, ps, frame, -EOVERFLOW);
	/*
	 * The frame's state is read after the join, which acquired the
	 * count from the CAS that set HELD, which follows that first map's
	 * try-get, which follows any conversion's unfreeze: a conversion
	 * before it is seen (the maps it joined may not be those that held
	 * the frame when a caller last looked, an ABA). While this map is
	 * counted with HELD, none can begin (P5).
	 */
	w = ps_page_load(&ps->frames[frame]);
	if (PS_LIKELY((w & PS_PAGE_LIVE) && !(w & reject)))
		return 0;
	if (!(w & PS_PAGE_LIVE) && !(kmap_state(s, frame) & reject))
		return 0; /* P10: a whole huge frame's page */
	return kmap_undo(s, ps, frame);
}

/*
 * ps_prot_kmap() off its straight path: create prot's state, check the
 * frame, then count the map.
 */
static PS_COLD int kmap_general(struct ps_space *s, uint64_t frame,
				uint64_t reject)
{
	struct ps__prot_space *ps;
	int rc = ps__prot_get(s, &ps);

	if (rc)
		return rc;
	if (frame >= ps->nframes)
		return -EINVAL;
	return kmap_count(s, ps, frame, reject);
}

int ps_prot_kmap(struct ps_space *s, uint64_t frame, unsigned int flags)
{
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_KMAP_PRIVATE ? 0 : PS_PAGE_PRIVATE);
	struct ps__prot_space *ps = ps__prot_peek(s);

	if (PS_UNLIKELY(flags & ~PS_KMAP_PRIVATE))
		return -EINVAL;
	if (PS_UNLIKELY(!ps || frame >= ps->nframes))
		return kmap_general(s, frame, reject);
	return kmap_count(s, ps, frame, reject);
}

/*
 * ps_prot_kunmap() whose subtract found no map to end, or ended the last: @c
 * is the word it found. Without HELD, or with no count (a last kunmap between
 * its subtract and its kmap_drop_held()), nothing is CPU-mapped: the
 * subtract is undone (P5: adds and subtracts commute, and the count is above
 * HELD, so HELD never changed), and if the word is left with no count and
 * HELD, its reference goes as the last kunmap's would have gone.
 */
static PS_COLD int kunmap_last(struct ps_space *s, struct ps__prot_space *ps,
			       uint64_t frame, uint32_t c)
{
	PS_ATOMIC(uint32_t) *cnt = &ps->kmaps[frame];

	if (!(c & PS__PROT_KMAP_HELD) || !ps__prot_kmap_n(c)) {
		/* Relaxed: a misuse changes nothing; it publishes nothing. */
		c = atomic_fetch_add_explicit(cnt, PS__PROT_KMAP_ONE,
					      memory_order_relaxed) +
		    PS__PROT_KMAP_ONE;
		if (c == (c & PS__PROT_KMAP_HELD) && c)
			kmap_drop_held(s, cnt, frame, c);
		return -EINVAL; /* not CPU-mapped: nothing changes */
	}
	/* The last map ends: its reference goes, unless a kmap joined. */
	kmap_drop_held(s, cnt, frame, c - PS__PROT_KMAP_ONE);
	return 0;
}

int ps_prot_kunmap(struct ps_space *s, uint64_t frame)
{
	struct ps__prot_space *ps = ps__prot_peek(s);
	uint32_t c;

	if (!ps || frame >= ps->nframes)
		return -EINVAL; /* out of range, or never CPU-mapped */
	/*
	 * P5 - one subtract ends the map. Release: the CPU's accesses come
	 * before the count drops; pairs with set_inaccessible's and the
	 * conversion's acquire loads and with the next map's acquire.
	 */
	c = atomic_fetch_sub_explicit(&ps->kmaps[frame], PS__PROT_KMAP_ONE,
				      memory_order_release);
	if (PS_LIKELY((c & PS__PROT_KMAP_HELD) && ps__prot_kmap_n(c) > 1))
		return 0;
	return kunmap_last(s, ps, frame, c);
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
	 * maps are over. HELD set under LOCKED (kmap_slow()) after the state
	 * was created is seen: the state's publication comes before it.
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
