// SPDX-License-Identifier: MIT
/*
 * lib/prot-convert.c - the encryption and cache-mode state of a space's frames
 * (pagestate/prot.h): conversion (ps_prot_convert()), the access check,
 * cache-mode changes and mprotect. (The x86 encodings of that state are
 * lib/x86.c's; CPU maps and prot's per-space state are lib/prot-kmap.c's.)
 *
 * ---------------------------------------------------------------------------
 * Protocol and guarantees (cited by tests/test-prot.c as P1..P4, P7, P8, and by
 * tests/test-prot-huge.c as P9; P5 and P6 are in lib/prot-kmap.c; the space's
 * S1..S14, stated in the space's files, hold too: lib/space-impl.h)
 * ---------------------------------------------------------------------------
 *
 * P1  Serialisation. Conversion and mprotect take the space's writer mutex
 *     (S1), so no frame is replaced at an address while they run: under it
 *     an entry's frame is stable, and each phase looks it up again instead
 *     of keeping a frame array. Conversion brackets itself with a
 *     PS_NOTIFIER_CONVERSION invalidation, mprotect's revocation with
 *     PS_NOTIFIER_PROTECTION.
 *
 * P2  One decision per page. A frame's PRIVATE flag changes only while a
 *     conversion holds it frozen, and the freeze is one compare-and-swap that
 *     requires exactly the expected references and no pins. Every other
 *     reference is taken with one compare-and-swap on the same word that fails
 *     on a frozen frame and (unless asked) on a PRIVATE one: pins
 *     (ps_page_try_pin_masked), the CPU maps' one reference and secondary maps
 *     (ps_page_try_get_masked). Two RMWs on one word are totally ordered, so
 *     each reference is taken before the freeze (which then fails) or after the
 *     unfreeze (and sees the new state). No fence is needed, and the entry's
 *     ENC bit, changed while frozen, is only a copy. A CPU map that joins the
 *     maps already holding the frame takes no reference: P5 (lib/prot-kmap.c)
 *     says why it never joins a frame whose state changes.
 *
 * P3  All or nothing. Phase 1 freezes every page to convert before any hook
 *     runs or any bit changes, so a failure there is undone by unfreezing with
 *     the same references. Phase 2 (prepare, flip, finish, page by page) is
 *     undone by converting the pages already flipped back, in reverse order,
 *     with the reverse hooks and each page's original INACCESSIBLE bit. Phase 3
 *     unfreezes (release: P2's partners acquire). Without prepare/finish hooks
 *     nothing can fail after phase 1, which is then the commit point, and the
 *     work of phase 2 moves into the passes that touch each page anyway: phase
 *     1 flips each entry's ENC bit right after the page's freeze, through the
 *     cursor its lookup used (one walk per leaf, one inline CAS:
 *     ps_pgtable_cmpxchg_leaf()), and phase 3 flips the page word in its
 *     unfreezing CAS. The entry's bit, changed while the frame is frozen, is
 *     only a copy (P2): a reader that finds it new finds the frame frozen and
 *     waits. If phase 1 fails after it flipped entries, phase 3 flips them back
 *     before it unfreezes with the same references. Either way a reader sees
 *     each page old (or frozen) until its unfreeze, new after it, as with three
 *     phases; a failed call changes nothing visible. Per page that is the
 *     three read-modify-writes a conversion needs (freeze, entry, unfreeze) and
 *     one load of the entry and one of the page word.
 *
 *     Runs. Phase 1 of the commit path walks one leaf per read-side section
 *     (one walk each, the section left at the leaf's end for grace periods,
 *     and around a wait, after which it walks again) and records the 4 KiB
 *     frames it froze as runs: pages [page, page + n) whose frames are
 *     [frame, frame + n). Under the writer mutex (P1) no frame is replaced at
 *     an address, so the runs still say, in phase 3, which frame each page
 *     maps: a commit then unfreezes frame after frame with no walk, no entry
 *     read and no section, touching only the page words. Room for the runs is
 *     fixed when the call starts (one per leaf of the range, and 16 more); a
 *     range whose frames are too scattered to fit moves its runs into the
 *     bitmap of frozen pages and goes on in it, and phase 3 then finds each
 *     frame through its entry, as the hooks' path does. An undo reads each
 *     entry to flip it back either way. Huge units (P9) are never in the
 *     runs: they stay in the bitmap, which phase 3 walks after the runs.
 *
 * P4  Quarantine. A page whose finish hook (or reverse hook) failed is
 *     marked POISONED while frozen, its entry becomes a POISONED marker
 *     (under the writer mutex and the invalidation), and it is unfrozen with
 *     the same references: the mapping's reference is leaked, so the frame
 *     is never freed. Every path that takes a reference refuses POISONED
 *     (map, the masked tries of P2, conversion, set_cache).
 *
 * P7  Cache mode. A LIVE frame's CACHE field changes only while frozen
 *     (set_cache with expected references) and not CPU-mapped (HELD, read
 *     after the freeze, as the conversion reads it: P5); a free frame's only by
 *     one CAS that requires it free (set_cache) or by the claim that gives it
 *     the mapper's mode and freezes it (a map's get_or_freeze, S13 in
 *     lib/space.c; a failed map restores the old mode in its unfreeze). So
 *     every holder of a reference sees one mode for as long as it holds it.
 *
 * P8  Hooks never run inside an RCU read-side section: the phase loops
 *     leave the page table's section around every hook call and every wait.
 *     prepare/finish run with the writer mutex held and the frame frozen;
 *     make_accessible under the frame's LOCKED bit with the kmap's
 *     reference held.
 *
 * P9  Huge frames. A conversion works on units: a 4 KiB page with its own word,
 *     or a huge unit: the pages of one huge leaf, or of one whole huge frame
 *     mapped by smaller entries, whichever is larger. It first splits what
 *     straddles an edge of the range (split_edge(): the huge leaf, by
 *     ps_pgtable_split(); the frame's state, by ps__space_split_frame(), S17
 *     and S18 in lib/space-huge.c), so that each unit lies inside the range or
 *     outside it. A huge unit is then P2's one decision on each word that holds
 *     its state (one word for a whole frame; each part's where the state is
 *     split, as after a pin of part of it), frozen at its exact count, and one
 *     compare-and-swap of the huge leaf's ENC bit (ps_pgtable_cmpxchg_huge())
 *     once every part is frozen; phase 3 unfreezes each word once. So a whole 2
 *     MiB or 1 GiB frame costs what a 4 KiB page costs, and a conversion of
 *     part of a frame freezes exactly that part's words: a pin of another part
 *     is on another word (a pin of part of a whole frame splits its state
 *     first, S17), never seen, so it never makes the call fail or wait. With
 *     prepare or finish hooks, which are per 4 KiB page, everything in the
 *     range is split first (split_all()) and converted page by page.
 *
 *     A 4 KiB page inside a whole frame is converted on a word of its own:
 *     split_edge() splits the frame's state, and PRIVATE and INACCESSIBLE
 *     of that page are its word's from then on, which every later reference
 *     decides on (P2: a pin of it is refused, a pin of its neighbour is not;
 *     the access check and kmap read it). Kept whole, the frame's one word
 *     would say one state for all its pages, and the split that a later pin
 *     of part of it makes (S17) would copy that state onto every part:
 *     undoing the conversion, or making the private page pinnable. The split
 *     costs ps_page_split()'s stores of the parts and, the first time a
 *     frame splits, the fault that maps the page of its 4 KiB words (mapped
 *     on first touch: docs/prot.md, "Huge frames").
 *
 * Progress: see the table in pagestate/prot.h. The conversion's waits are
 * bounded (PS_CONVERT_TRANSIENT_NS, or the PS_CONVERT_WAIT budget), so a
 * pinner that waits on a frozen page while holding another pin the
 * conversion waits for only delays it.
 */
#include "prot-impl.h"

#include "failpoint.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Lookups per page-table read-side section in the long loops. */
#define SECTION_PAGES 512

/* --- small helpers -------------------------------------------------------- */

/* [@start, @start + @len): non-empty, page-aligned, inside the space. */
static bool range_ok(const struct ps_space *s, uint64_t start, uint64_t len)
{
	const uint64_t size = ps__space_size(s);

	return len && !(start & (PAGE_SIZE - 1)) && !(len & (PAGE_SIZE - 1)) &&
	       start < size && len <= size - start;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool bit_test(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *map, uint64_t i)
{
	map[i / 64] |= UINT64_C(1) << (i % 64);
}

static void bit_clear(uint64_t *map, uint64_t i)
{
	map[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

/* The present entry at @addr and its frame, inside a read-side section. */
static bool frame_at(struct ps_pgtable *pt, uint64_t nframes, uint64_t addr,
		     uint64_t *frame, ps_pte_t *pte)
{
	ps_pte_t e = ps_pgtable_lookup(pt, addr);

	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= nframes)
		return false;
	*frame = ps_pte_frame(e);
	*pte = e;
	return true;
}

/*
 * Replace, in the entry at @addr if it still maps @frame, the bits @clear
 * by @set (a page-table CAS loop from the guess @e: faults may change
 * A/D/WRITE meanwhile). With @to_marker, the entry becomes @set instead.
 */
static void entry_update(struct ps_pgtable *pt, uint64_t addr, ps_pte_t e,
			 uint64_t frame, ps_pte_t clear, ps_pte_t set,
			 bool to_marker)
{
	while (ps_pte_is_present(e) && ps_pte_frame(e) == frame) {
		ps_pte_t want = to_marker ? set : (e & ~clear) | set;

		if (want == e ||
		    ps_pgtable_cmpxchg(pt, addr, &e, want) != -EAGAIN)
			break; /* done (or refused: never for a valid entry) */
	}
}

/*
 * entry_update() of the ENC bit through @slot, a cursor on the entry at @addr
 * (the walk already made): the ENC bit leaves the entry as written as it was,
 * so each try is one inline CAS (ps_pgtable_cmpxchg_leaf()).
 */
static inline __attribute__((always_inline)) void
entry_set_enc(struct ps_pgtable *pt, PS_ATOMIC(ps_pte_t) *slot, uint64_t addr,
	      ps_pte_t e, uint64_t frame, ps_pte_t enc)
{
	while (ps_pte_is_present(e) && ps_pte_frame(e) == frame) {
		ps_pte_t want = (e & ~PS_PTE_ENC) | enc;

		if (want == e || ps_pgtable_cmpxchg_leaf(pt, slot, addr, &e,
							 want) != -EAGAIN)
			break; /* done (or refused: never for a valid entry) */
	}
}

/*
 * A leaf cursor that follows a walk through a range (ps_pgtable_lookup_leaf()):
 * one walk per leaf, again after the read-side section was left (valid false).
 */
struct cursor {
	PS_ATOMIC(ps_pte_t) *leaf; /* entry 0 of leaf number @n, or NULL */
	uint64_t n;
	bool valid;
};

/* The entry of page @addr through @k, in the current section (or NULL). */
static inline __attribute__((always_inline)) PS_ATOMIC(ps_pte_t) *
cursor_at(struct ps_pgtable *pt, struct cursor *k, uint64_t addr)
{
	const uint64_t p = addr >> PAGE_SHIFT;

	if (!k->valid || k->n != p / PS_PGTABLE_LEAF_PAGES) {
		PS_ATOMIC(ps_pte_t) *e = ps_pgtable_lookup_leaf(pt, addr);

		k->n = p / PS_PGTABLE_LEAF_PAGES;
		k->leaf = e ? e - p % PS_PGTABLE_LEAF_PAGES : NULL;
		k->valid = true;
	}
	return k->leaf ? k->leaf + p % PS_PGTABLE_LEAF_PAGES : NULL;
}

/* The entry at @slot (a cursor's), PS_PTE_NONE where there is no leaf. */
static ps_pte_t cursor_load(PS_ATOMIC(ps_pte_t) *slot)
{
	/* Acquire: as ps_pgtable_lookup() (pairs with the entry's CAS). */
	return slot ? atomic_load_explicit(slot, memory_order_acquire)
		    : PS_PTE_NONE;
}

/* --- conversion (P1..P4) -------------------------------------------------- */

/* Pages [page, page + n) of the range, frozen, map [frame, frame + n). */
struct run {
	uint64_t page, frame, n;
};

struct conv {
	struct ps_space *s;
	/*
	 * Prot's state in the space when the call began, or NULL: a map the
	 * caller holds (the only one a freeze can miss, P5) created it before.
	 */
	struct ps__prot_space *prot;
	/*
	 * Long-term pin counts existed when the call began: else no unit was
	 * left to forget (S14). One a misused release leaves meanwhile is the
	 * next conversion's to forget.
	 */
	bool longterm;
	/*
	 * A freeze may hide the CPU maps' reference (P5): prot's state exists
	 * and the caller declared references of its own (extra_refs), among
	 * which its own map's could be. With none declared, the freeze's
	 * exact count (the mapping's one reference) proves the maps hold none.
	 */
	bool cpu_checks;
	bool held_checks;      /* cpu_checks || longterm: freeze_held() works */
	bool units;	       /* freeze_unit() froze a word (in @frozen) */
	struct ps_pgtable *pt; /* the space's */
	struct ps_page *frames; /* the space's page words */
	uint64_t nframes;
	const struct ps_prot_hooks *hooks;
	uint64_t start, npages;
	enum ps_enc_state to;
	unsigned int flags;
	uint64_t expected;   /* references of a frozen frame: 1 + extra_refs */
	uint64_t fwd_clear;  /* page-word flags the forward flip clears */
	uint64_t fwd_set;    /* ... and sets */
	uint64_t *frozen;    /* bit i: page i is frozen by this call */
	uint64_t *was_inacc; /* bit i: page i was INACCESSIBLE before */
	/*
	 * The commit path's record of the 4 KiB frames it froze (P3, "Runs"):
	 * runs of pages whose frames follow each other, while they fit in
	 * @runs_cap; past that (nruns > runs_cap) the bitmap @frozen holds it
	 * all. NULL on the hooks' path.
	 */
	struct run *runs;
	uint64_t nruns, runs_cap;
	uint64_t wait_ns; /* the PS_CONVERT_WAIT budget */
	uint64_t t0;	  /* first wait (0: none yet) */
	unsigned int waits;
	uint64_t quarantined;
	int hook_error;
};

static uint64_t page_addr(const struct conv *c, uint64_t i)
{
	return c->start + (i << PAGE_SHIFT);
}

/*
 * Leave the read-side section every SECTION_PAGES pages (grace periods);
 * a cursor found in it is invalid after.
 */
static void section_cycle(uint64_t i, struct cursor *k)
{
	if (i && i % SECTION_PAGES == 0) {
		ps_pgtable_read_unlock();
		ps_pgtable_read_lock();
		if (k)
			k->valid = false;
	}
}

/*
 * Why a frame cannot be frozen, as the errno to fail with, or 0 to wait and
 * try again (see "Waiting" in prot.h).
 */
static int freeze_obstacle(struct conv *c, struct ps_page *p, uint64_t frame)
{
	uint64_t w = ps_page_load(p), now;
	bool pinned = ps_page_word_pins(w) != 0;
	bool cpu = ps__prot_cpu_maps(c->s, frame) !=
		   0; /* a hint: the freeze decides */

	if (pinned && ps__space_longterm_pinned(c->s, frame))
		return -EBUSY; /* a long-term pin: will not drain */
	now = now_ns();
	if (!c->t0)
		c->t0 = now;
	if ((c->flags & PS_CONVERT_WAIT) && now - c->t0 < c->wait_ns)
		return 0;
	if (!pinned && !cpu && now - c->t0 < PS_CONVERT_TRANSIENT_NS)
		return 0; /* a lookup's or a backing-out pin's reference */
	return -EAGAIN;
}

static void backoff(struct conv *c)
{
	if (c->waits++ < 64) {
		sched_yield();
	} else {
		struct timespec ts = {0, 20000};

		nanosleep(&ts, NULL);
	}
}

static inline int freeze_held(struct conv *c, struct ps_page *p,
			      uint64_t frame);

/*
 * freeze_one() off its straight path: the freeze of @p (the word holding
 * @frame's state; @frame is the first frame of its unit) failed; wait as
 * allowed (outside the section, after which *@left is true: cursors found in
 * it are invalid) and try again, or fail.
 */
static PS_COLD int freeze_wait(struct conv *c, struct ps_page *p,
			       uint64_t frame, bool *left)
{
	for (;;) {
		int rc = freeze_obstacle(c, p, frame);

		if (rc)
			return rc;
		ps_pgtable_read_unlock(); /* P8: never wait inside it */
		backoff(c);
		ps_pgtable_read_lock();
		*left = true;
		if (ps_page_freeze(p, c->expected))
			return freeze_held(c, p, frame);
	}
}

/*
 * Is the frozen word @p, which holds @frame's state, CPU-mapped (P5)? A 4 KiB
 * word's maps count at its frame; a whole huge frame's at each 4 KiB frame a
 * map names (P10 in lib/prot-kmap.c), all of which the freeze covers: every
 * count of the unit is read (a 1 GiB frame: 256 KiB pages' counts, 1 MiB).
 */
static bool frozen_cpu_mapped(struct conv *c, struct ps_page *p, uint64_t frame)
{
	unsigned int o = 0;

	if (PS_LIKELY(p == &c->frames[frame]) ||
	    ps_space_frame_word(c->s, frame, &o) != p)
		o = 0;
	return ps__prot_cpu_mapped(c->prot, frame & ~((UINT64_C(1) << o) - 1),
				   UINT64_C(1) << o);
}

/* Just frozen: the checks a freeze cannot make (P5, S14); 0 or -EAGAIN. */
static inline int freeze_held(struct conv *c, struct ps_page *p, uint64_t frame)
{
	/*
	 * P5: the CPU maps' one reference can hide among the declared ones
	 * (the caller's own kmap in extra_refs: the freeze cannot tell it from
	 * another reference), and a CPU-mapped frame must never become
	 * INACCESSIBLE: the next kmap would join the count and never call
	 * make_accessible. A map held across the call set HELD (or joined it)
	 * before the call began, and HELD cannot be set while frozen (a first
	 * map needs a try-get), so HELD read here (an acquire load, as
	 * ps__prot_cpu_maps()) is final until the unfreeze. Prot's
	 * state is the one the call began with: a map that could hide here is
	 * the caller's own, made before the call.
	 */
	if (PS_UNLIKELY(c->cpu_checks && frozen_cpu_mapped(c, p, frame))) {
		(void)ps_page_unfreeze(p, c->expected);
		return -EAGAIN;
	}
	/*
	 * No pin now and none until the unfreeze: a long-term count left now
	 * is a unit leaked by a long-term pin released without
	 * PS_UNPIN_LONGTERM (S14 in lib/space-pin.c): reset it.
	 */
	if (PS_UNLIKELY(c->longterm))
		ps__space_longterm_forget(c->s, frame);
	return 0;
}

/*
 * Freeze @frame with the expected references, waiting as allowed (outside
 * the section: *@left is then true).
 */
static inline int freeze_one(struct conv *c, uint64_t frame, bool *left)
{
	struct ps_page *p = &c->frames[frame];

	if (PS_LIKELY(ps_page_freeze(p, c->expected)))
		return PS_LIKELY(!c->held_checks) ? 0
						  : freeze_held(c, p, frame);
	return freeze_wait(c, p, frame, left);
}

/* --- huge frames (P9) ----------------------------------------------------- */

/* What phase 3 does besides unfreezing (P3). */
enum thaw {
	THAW_PLAIN,  /* nothing: the hooks' phase 2 flipped, or nothing did */
	THAW_COMMIT, /* the page word's flip, in the unfreezing CAS */
	THAW_UNDO,   /* phase 1 failed after flipping entries: flip them back */
};

/* Freeze the word @p holding the state of the unit at frame @frame. */
static PS_COLD int freeze_wait_unit(struct conv *c, struct ps_page *p,
				    uint64_t frame, bool *left)
{
	if (ps_page_freeze(p, c->expected))
		return freeze_held(c, p, frame);
	return freeze_wait(c, p, frame, left);
}

/* Pages in a unit or leaf of @order. */
static inline uint64_t order_pages(unsigned int order)
{
	return UINT64_C(1) << order;
}

/*
 * Give every entry that maps pages [@i, @i + @n) the ENC bit @enc: a huge
 * leaf by one compare-and-swap of the whole leaf (never split here: P9), a
 * 4 KiB entry by entry_update(). Setting a value, not flipping one, so a leaf
 * met again (the parts of a leaf whose state is split) is left as it is.
 */
static PS_COLD void set_enc_span(struct conv *c, uint64_t i, uint64_t n,
				 ps_pte_t enc)
{
	for (uint64_t q = i; q < i + n;) {
		const uint64_t addr = page_addr(c, q);
		ps_pte_t e, leaf;
		unsigned int lo = 0;

		if (ps_pgtable_get_level(c->pt, addr, &e, &lo, &leaf))
			return; /* past the table: cannot be (range_ok) */
		if (!lo) {
			entry_update(c->pt, addr, e, ps_pte_frame(e),
				     PS_PTE_ENC, enc, false);
			q++;
			continue;
		}
		while (ps_pte_is_present(leaf) && (leaf & PS_PTE_ENC) != enc &&
		       ps_pgtable_cmpxchg_huge(
			       c->pt, addr & ~((PAGE_SIZE << lo) - 1), lo,
			       &leaf, (leaf & ~PS_PTE_ENC) | enc) == -EAGAIN)
			; /* a fault changed A/D/W: again, from the new leaf */
		q = (q | (order_pages(lo) - 1)) + 1; /* the leaf's end */
	}
}

/*
 * Phase 1 for a huge unit at page @i (P9): the pages mapped by one huge leaf,
 * or the pages of one whole huge frame mapped by smaller entries, whichever is
 * larger; split_edges() made the range start and end at their boundaries.
 * Freezes each word holding the state of part of it (one word for a whole
 * frame, the parts' words where its state is split), then, with @flip, gives
 * each entry of it its new ENC bit (one CAS for a huge leaf). *@n receives the
 * unit's pages, 0 if the page is not in a huge unit after all (a 4 KiB frame:
 * the caller's path); *@fail the page that failed. 0 or the errno.
 */
static PS_COLD int freeze_unit(struct conv *c, uint64_t i, bool *left,
			       bool flip, uint64_t *n, uint64_t *fail)
{
	const bool to_private = c->to == PS_ENC_PRIVATE;
	const uint64_t addr = page_addr(c, i);
	unsigned int lo = 0, o;
	bool any = false;
	ps_pte_t e, leaf;
	uint64_t f;
	int rc = 0;

	*n = 0;
	*fail = i;
	if (ps_pgtable_get_level(c->pt, addr, &e, &lo, &leaf))
		return -EINVAL; /* cannot be: range_ok() */
	if (lo && !ps_pte_is_present(leaf)) {
		/* A huge marker: the extent as one missing page would be. */
		if (ps_pte_marker_bits(leaf) & PS_PTE_MARKER_POISONED)
			return -EHWPOISON;
		if (!(c->flags & PS_CONVERT_SKIP_MISSING))
			return -ENOENT;
		*n = order_pages(lo) - (i & (order_pages(lo) - 1));
		return 0;
	}
	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= c->nframes)
		return 0; /* none: the caller's path says what */
	f = ps_pte_frame(e);
	(void)ps_space_frame_word(c->s, f, &o);
	if (!lo && !o)
		return 0; /* a 4 KiB entry of a 4 KiB word */
	if (o < lo)
		o = lo; /* the leaf is the unit; its parts are frozen below */
	if ((f & (order_pages(o) - 1)) || order_pages(o) > c->npages - i)
		return -EBUSY; /* not at an edge split_edge() made: S17 */
	*n = order_pages(o);
	for (uint64_t q = 0; q < *n; q += order_pages(o)) {
		struct ps_page *p = ps_space_frame_word(c->s, f + q, &o);
		const uint64_t w = ps_page_load(p);

		*fail = i + q;
		if (w & PS_PAGE_POISONED) {
			rc = -EHWPOISON;
			break;
		}
		if (!(w & PS_PAGE_PRIVATE) == !to_private)
			continue; /* already there */
		rc = freeze_wait_unit(c, p, f + q, left);
		if (rc)
			break;
		bit_set(c->frozen, i + q);
		c->units = true;
		if (!flip && ps_page_test_flags(p, PS_PAGE_INACCESSIBLE))
			bit_set(c->was_inacc, i + q);
		any = true;
	}
	if (!rc && any && flip)
		set_enc_span(c, i, *n, to_private ? PS_PTE_ENC : 0);
	return rc;
}

/*
 * Phase 3 for the frozen word holding the state of frame @frame (mapped at
 * page @i, the first of its unit): unfreeze it as unfreeze_all() says for
 * @how. Returns the unit's pages, 0 if the word was not frozen (cannot be).
 */
static PS_COLD uint64_t thaw_unit(struct conv *c, uint64_t i, uint64_t frame,
				  enum thaw how)
{
	unsigned int o;
	struct ps_page *p = ps_space_frame_word(c->s, frame, &o);

	if (!(ps_page_load(p) & PS_PAGE_FROZEN))
		return 0;
	if (how == THAW_COMMIT) {
		(void)ps_page_unfreeze_change_flags(p, c->expected,
						    c->fwd_clear, c->fwd_set);
		return order_pages(o);
	}
	if (how == THAW_UNDO)
		set_enc_span(c, i, order_pages(o),
			     c->to == PS_ENC_PRIVATE ? 0 : PS_PTE_ENC);
	(void)ps_page_unfreeze(p, c->expected);
	return order_pages(o);
}

/*
 * Split what straddles the edge @b of the range (a page number of the space):
 * a huge leaf with pages on both sides (ps_pgtable_split()), and the state of
 * a whole huge frame with pages on both sides (ps__space_split_frame()), so
 * that each huge unit inside the range is converted whole and nothing outside
 * it changes (P9). 0, -ENOMEM, or -EBUSY (a frame's state cannot be split).
 */
static int split_edge(struct conv *c, uint64_t b)
{
	const uint64_t end = ps__space_size(c->s) >> PAGE_SHIFT;
	int rc = 0;

	while (b < end) {
		ps_pte_t e, leaf;
		unsigned int lo = 0;

		if (ps_pgtable_get_level(c->pt, b << PAGE_SHIFT, &e, &lo,
					 &leaf) ||
		    !lo || !(b & (order_pages(lo) - 1)))
			break;
		rc = ps_pgtable_split(c->pt, b << PAGE_SHIFT, PAGE_SIZE);
		if (rc)
			return rc;
	}
	/* The frames at the pages on each side of the edge. */
	for (uint64_t q = b ? b - 1 : b; !rc && q <= b && q < end; q++) {
		ps_pte_t e;
		uint64_t f, edge;
		unsigned int o;

		if (ps_pgtable_get(c->pt, q << PAGE_SHIFT, &e) ||
		    !ps_pte_is_present(e) || ps_pte_frame(e) >= c->nframes)
			continue;
		f = ps_pte_frame(e);
		edge = q < b ? f + 1 : f; /* where a unit must end or begin */
		for (;;) {
			(void)ps_space_frame_word(c->s, f, &o);
			if (!o || !(edge & (order_pages(o) - 1)))
				break;
			rc = ps__space_split_frame(c->s, f,
						   o == PS_SPACE_ORDER_1G
							   ? PS_SPACE_ORDER_2M
							   : PS_SPACE_ORDER_4K);
			if (rc)
				break;
		}
	}
	return rc;
}

/*
 * With prepare or finish hooks every page is converted alone (the hooks, the
 * quarantine and the rollback are per 4 KiB page): split every huge leaf and
 * every huge frame's state in the range first. *@fail: the page that failed.
 */
static int split_all(struct conv *c, uint64_t *fail)
{
	int rc = ps_pgtable_split(c->pt, c->start, c->npages << PAGE_SHIFT);

	*fail = 0;
	for (uint64_t i = 0; !rc && i < c->npages; i++) {
		ps_pte_t e;
		unsigned int o;

		if (ps_pgtable_get(c->pt, page_addr(c, i), &e) ||
		    !ps_pte_is_present(e) || ps_pte_frame(e) >= c->nframes)
			continue;
		(void)ps_space_frame_word(c->s, ps_pte_frame(e), &o);
		if (o)
			rc = ps__space_split_frame(c->s, ps_pte_frame(e),
						   PS_SPACE_ORDER_4K);
		*fail = i;
	}
	return rc;
}

static void record_close(struct conv *c, struct run r);

/*
 * The commit path's record (P3, "Runs"): @r, the run being built, takes
 * frozen page @i (4 KiB frame @frame) if it follows on; else @r is closed
 * into c->runs and starts again at @i. While a run is built, its page and
 * frame say where it would go on.
 */
static inline void record_run(struct conv *c, struct run *r, uint64_t i,
			      uint64_t frame)
{
	if (PS_LIKELY(r->page == i && r->frame == frame)) {
		r->page++;
		r->frame++;
		r->n++;
		return;
	}
	record_close(c, *r);
	*r = (struct run){i + 1, frame + 1, 1};
}

/*
 * Close the run @r (as record_run() builds it) into c->runs. Once the runs
 * no longer fit, they move into the bitmap, which records the rest.
 */
static void record_close(struct conv *c, struct run r)
{
	const uint64_t page = r.page - r.n;

	if (!r.n)
		return;
	if (c->nruns < c->runs_cap) {
		c->runs[c->nruns++] = (struct run){page, r.frame - r.n, r.n};
		return;
	}
	if (c->nruns == c->runs_cap) {
		/* Too scattered: the bitmap from here on. */
		for (uint64_t k = 0; k < c->nruns; k++)
			for (uint64_t j = 0; j < c->runs[k].n; j++)
				bit_set(c->frozen, c->runs[k].page + j);
		c->nruns++;
	}
	for (uint64_t j = 0; j < r.n; j++)
		bit_set(c->frozen, page + j);
}

/* Do the runs hold the record of the 4 KiB frames (else the bitmap does)? */
static bool runs_hold(const struct conv *c)
{
	return c->nruns <= c->runs_cap;
}

/* freeze_page()'s answer for a page whose state is a huge unit's (P9). */
#define FREEZE_UNIT 2

/*
 * Freeze page @i, whose entry is @e: 1 with its frame in *@frame when it is
 * frozen, 0 when it needs nothing, FREEZE_UNIT (only with @unit_check) when the
 * frame's word is not its own 4 KiB word (freeze_unit()'s), else the errno that
 * stops phase 1. *@left: the freeze left the section (cursors are stale).
 */
static inline int freeze_page(struct conv *c, uint64_t i, ps_pte_t e,
			      uint64_t page_private, bool unit_check,
			      uint64_t *frame, bool *left)
{
	uint64_t w;
	int rc;

	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= c->nframes) {
		if (ps_pte_marker_bits(e) & PS_PTE_MARKER_POISONED)
			return -EHWPOISON; /* a quarantined page */
		return c->flags & PS_CONVERT_SKIP_MISSING ? 0 : -ENOENT;
	}
	*frame = ps_pte_frame(e);
	w = ps_page_load(&c->frames[*frame]);
	/* A mapped 4 KiB word is LIVE: else a huge frame's (P9). */
	if (PS_UNLIKELY(unit_check && !(w & (PS_PAGE_LIVE | PS_PAGE_FROZEN))))
		return FREEZE_UNIT;
	if (w & PS_PAGE_POISONED)
		return -EHWPOISON;
	if ((w & PS_PAGE_PRIVATE) == page_private)
		return 0; /* already there: nothing to do */
	rc = freeze_one(c, *frame, left);
	if (rc)
		return rc;
	if (!c->runs) {
		/* The hooks' path: a bitmap. */
		bit_set(c->frozen, i);
		/*
		 * Frozen: only this call changes INACCESSIBLE now (P5). Only a
		 * rollback of the hooks' phase 2 needs the old bit.
		 */
		if (ps_page_test_flags(&c->frames[*frame],
				       PS_PAGE_INACCESSIBLE))
			bit_set(c->was_inacc, i);
	}
	return 1;
}

/*
 * Phase 1 (P3): freeze every page to convert; *@fail: the page that failed.
 * With @flip (the commit: no prepare/finish hook can fail later), each
 * page's entry gets its new ENC bit right after its freeze, through the
 * cursor its lookup used (P2: changed while frozen, the bit is only a copy),
 * and the 4 KiB frames frozen are recorded as runs; phase 3 flips the entries
 * back if phase 1 fails later (unfreeze_all()). One walk and one read-side
 * section per leaf of the range: the section is left at each leaf's end (grace
 * periods), and a wait leaves it too, after which the leaf is walked again. A
 * page without a leaf (none, or a huge leaf) or whose frame's state is a huge
 * frame's goes to freeze_unit() (P9), and the walk starts again after its unit.
 */
static int freeze_all(struct conv *c, uint64_t *fail, bool flip)
{
	const ps_pte_t enc = c->to == PS_ENC_PRIVATE ? PS_PTE_ENC : 0;
	const uint64_t page_private = c->to == PS_ENC_PRIVATE ? PS_PAGE_PRIVATE
							      : 0;
	const uint64_t start = c->start, npages = c->npages;
	struct run r = {0, 0, 0};
	bool unit_failed = false;
	uint64_t i = 0;
	int rc = 0;

	if (!flip)
		c->runs = NULL;
	while (!rc && i < npages) {
		const uint64_t first = (start >> PAGE_SHIFT) + i;
		const uint64_t in_leaf = PS_PGTABLE_LEAF_PAGES -
					 first % PS_PGTABLE_LEAF_PAGES;
		const uint64_t end = npages - i < in_leaf ? npages
							  : i + in_leaf;
		/* The entry of page i is slot[i - base], in this leaf. */
		uint64_t base = i;
		PS_ATOMIC(ps_pte_t) *slot;

		ps_pgtable_read_lock();
		slot = ps_pgtable_lookup_leaf(c->pt, start + (i << PAGE_SHIFT));
		for (; i < end; i++) {
			const uint64_t addr = start + (i << PAGE_SHIFT);
			bool left = false;
			uint64_t frame, n;
			ps_pte_t e = PS_PTE_NONE;

			if (PS_LIKELY(slot)) {
				/* Acquire: as ps_pgtable_lookup() (the CAS). */
				e = atomic_load_explicit(&slot[i - base],
							 memory_order_acquire);
				rc = freeze_page(c, i, e, page_private, true,
						 &frame, &left);
			} else {
				rc = FREEZE_UNIT; /* none, or a huge leaf */
			}
			if (PS_UNLIKELY(rc == FREEZE_UNIT)) {
				rc = freeze_unit(c, i, &left, flip, &n, fail);
				if (rc) {
					unit_failed = true; /* *fail: set */
					break;
				}
				if (n) {
					i += n; /* walk again from there */
					break;
				}
				/* Not a huge unit after all: a 4 KiB page. */
				rc = freeze_page(c, i, e, page_private, false,
						 &frame, &left);
			}
			if (rc <= 0) {
				if (rc)
					break;
				continue;
			}
			rc = 0;
			if (PS_UNLIKELY(left)) {
				/* The freeze waited outside the section. */
				slot = ps_pgtable_lookup_leaf(c->pt, addr);
				base = i;
				if (PS_UNLIKELY(!slot)) {
					/* None now (cannot be under P1). */
					if (flip)
						record_run(c, &r, i, frame);
					continue;
				}
				e = cursor_load(slot);
			}
			if (!flip)
				continue;
			record_run(c, &r, i, frame);
			/*
			 * From the entry read before the freeze (present, of
			 * @frame): one CAS, and the loop only if it changed.
			 */
			if ((e & PS_PTE_ENC) != enc &&
			    ps_pgtable_cmpxchg_leaf(c->pt, &slot[i - base],
						    addr, &e,
						    (e & ~PS_PTE_ENC) | enc) ==
				    -EAGAIN)
				entry_set_enc(c->pt, &slot[i - base], addr, e,
					      frame, enc);
		}
		ps_pgtable_read_unlock();
	}
	if (flip)
		record_close(c, r);
	if (!unit_failed)
		*fail = i;
	return rc;
}

enum step { STEP_OK = 0, STEP_PREPARE_FAILED, STEP_FINISH_FAILED };

typedef int (*conv_hook_fn)(void *ctx, struct ps_space *space, uint64_t addr,
			    uint64_t frame, enum ps_enc_state to);

/* Run a prepare or finish hook (if set) outside the read-side section (P8);
 * the first failure's errno is kept for opts->hook_error. */
static int run_hook(struct conv *c, conv_hook_fn fn, uint64_t addr,
		    uint64_t frame, enum ps_enc_state to)
{
	int rc;

	if (!fn)
		return 0;
	ps_pgtable_read_unlock();
	rc = fn(c->hooks->ctx, c->s, addr, frame, to);
	ps_pgtable_read_lock();
	if (rc && !c->hook_error)
		c->hook_error = rc < 0 ? rc : -EIO;
	return rc;
}

/*
 * Convert page @i (frame @frame, entry @e, frozen) to @to: prepare, flip
 * (page-word flags @clear -> @set, the entry's ENC bit), finish. Runs inside
 * the read-side section and leaves it around each hook (P8). Only called
 * when c->hooks has prepare or finish.
 */
static enum step convert_page(struct conv *c, uint64_t i, uint64_t frame,
			      ps_pte_t e, enum ps_enc_state to, uint64_t clear,
			      uint64_t set)
{
	const uint64_t addr = page_addr(c, i);

	if (run_hook(c, c->hooks->prepare, addr, frame, to))
		return STEP_PREPARE_FAILED;
	(void)ps_page_change_flags(&c->frames[frame], clear, set);
	entry_update(c->pt, addr, e, frame, PS_PTE_ENC,
		     to == PS_ENC_PRIVATE ? PS_PTE_ENC : 0, false);
	if (run_hook(c, c->hooks->finish, addr, frame, to))
		return STEP_FINISH_FAILED;
	return STEP_OK;
}

/* P4: quarantine frozen page @i. */
static void quarantine(struct conv *c, uint64_t i, uint64_t frame)
{
	struct ps_page *p = &c->frames[frame];
	const uint64_t addr = page_addr(c, i);

	ps_page_set_flags(p, PS_PAGE_POISONED);
	entry_update(c->pt, addr, ps_pgtable_lookup(c->pt, addr), frame, 0,
		     ps_pte_mk_marker(PS_PTE_MARKER_POISONED), true);
	/* The mapping's reference stays counted and nobody owns it: leaked. */
	(void)ps_page_unfreeze(p, c->expected);
	bit_clear(c->frozen, i);
	c->quarantined++;
}

/* Undo the forward conversion of the frozen pages before @upto (P3). */
static void roll_back(struct conv *c, uint64_t upto)
{
	const enum ps_enc_state back = c->to == PS_ENC_PRIVATE ? PS_ENC_SHARED
							       : PS_ENC_PRIVATE;

	for (uint64_t i = upto; i-- > 0;) {
		uint64_t frame, set;
		ps_pte_t e;

		if (!bit_test(c->frozen, i) ||
		    !frame_at(c->pt, c->nframes, page_addr(c, i), &frame, &e))
			continue;
		set = (back == PS_ENC_PRIVATE ? PS_PAGE_PRIVATE : 0) |
		      (bit_test(c->was_inacc, i) ? PS_PAGE_INACCESSIBLE : 0);
		if (convert_page(c, i, frame, e, back,
				 PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE,
				 set) != STEP_OK)
			quarantine(c, i, frame); /* stuck in the new state */
	}
}

/* Phase 2 (P3): hooks and flips, in address order. */
static int flip_all(struct conv *c, uint64_t *fail)
{
	int rc = 0;

	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < c->npages; i++) {
		uint64_t frame;
		enum step st;
		ps_pte_t e;

		section_cycle(i, NULL);
		if (!bit_test(c->frozen, i) ||
		    !frame_at(c->pt, c->nframes, page_addr(c, i), &frame, &e))
			continue;
		st = convert_page(c, i, frame, e, c->to, c->fwd_clear,
				  c->fwd_set);
		if (st == STEP_OK)
			continue;
		if (st == STEP_FINISH_FAILED)
			quarantine(c, i, frame);
		roll_back(c, i);
		*fail = i;
		rc = -EIO;
		break;
	}
	ps_pgtable_read_unlock();
	return rc;
}

/*
 * unfreeze_all() of the commit path's 4 KiB frames from their runs: the frames
 * are known, so a commit touches only their page words, with no walk and no
 * read-side section (P1: under the writer mutex no frame is replaced at an
 * address, so the runs still say what each page maps). An undo walks the
 * entries to flip them back, one walk per leaf.
 */
static uint64_t unfreeze_runs(struct conv *c, enum thaw how)
{
	const ps_pte_t old_enc = c->to == PS_ENC_PRIVATE ? 0 : PS_PTE_ENC;
	struct cursor k = {NULL, 0, false};
	uint64_t n = 0;

	if (how == THAW_COMMIT) {
		const uint64_t expected = c->expected, clear = c->fwd_clear,
			       set = c->fwd_set;

		/*
		 * Backwards: phase 1 ended at the range's end, so the words
		 * it touched last are the likeliest still in the cache. Any
		 * order keeps P3: each page is old (or frozen) until its own
		 * unfreeze.
		 */
		for (uint64_t r = c->nruns; r-- > 0;) {
			struct ps_page *p = &c->frames[c->runs[r].frame];
			const uint64_t len = c->runs[r].n;

			/* Release: publishes the flip (P2's tries acquire). */
			for (uint64_t j = len; j-- > 0;)
				(void)ps_page_unfreeze_change_flags(&p[j],
								    expected,
								    clear, set);
			n += len;
		}
		return n;
	}
	ps_pgtable_read_lock();
	for (uint64_t r = 0; r < c->nruns; r++) {
		for (uint64_t j = 0; j < c->runs[r].n; j++, n++) {
			const uint64_t addr = page_addr(c, c->runs[r].page + j);
			const uint64_t frame = c->runs[r].frame + j;
			PS_ATOMIC(ps_pte_t) *slot;

			section_cycle(n, &k);
			slot = cursor_at(c->pt, &k, addr);
			if (slot)
				entry_set_enc(c->pt, slot, addr,
					      cursor_load(slot), frame,
					      old_enc);
			/* Release: publishes the entry (P2's tries acquire). */
			(void)ps_page_unfreeze(&c->frames[frame], c->expected);
		}
	}
	ps_pgtable_read_unlock();
	return n;
}

/*
 * Phase 3 (P3): unfreeze what is still frozen; returns how many. With
 * THAW_COMMIT (no prepare/finish hooks, so nothing could fail after phase 1,
 * which flipped the entries), each page word's flags change in its unfreezing
 * compare-and-swap; with THAW_UNDO each entry's ENC bit goes back first. The
 * commit path's 4 KiB frames come from their runs while these hold them
 * (unfreeze_runs()); the bitmap then holds only huge units (P9).
 */
static uint64_t unfreeze_all(struct conv *c, enum thaw how)
{
	const ps_pte_t old_enc = c->to == PS_ENC_PRIVATE ? 0 : PS_PTE_ENC;
	struct cursor k = {NULL, 0, false};
	uint64_t n = 0, steps = 0;

	if (how != THAW_PLAIN && runs_hold(c)) {
		n = unfreeze_runs(c, how);
		if (!c->units)
			return n; /* the bitmap is empty */
	}
	ps_pgtable_read_lock();
	for (uint64_t wi = 0; wi < (c->npages + 63) / 64; wi++) {
		uint64_t bits = c->frozen[wi];

		while (bits) {
			const uint64_t i = wi * 64 +
					   (uint64_t)__builtin_ctzll(bits);
			const uint64_t addr = page_addr(c, i);
			PS_ATOMIC(ps_pte_t) *slot;
			uint64_t frame;
			ps_pte_t e;

			bits &= bits - 1;
			section_cycle(++steps, &k);
			slot = cursor_at(c->pt, &k, addr);
			e = cursor_load(slot);
			if (PS_UNLIKELY(!slot))
				(void)ps_pgtable_get(c->pt, addr, &e);
			if (!ps_pte_is_present(e) ||
			    ps_pte_frame(e) >= c->nframes)
				continue;
			frame = ps_pte_frame(e);
			if (PS_UNLIKELY(!slot ||
					!(ps_page_load(&c->frames[frame]) &
					  PS_PAGE_FROZEN))) {
				/* Not its own 4 KiB word: a huge unit's. */
				n += thaw_unit(c, i, frame, how);
				continue;
			}
			/*
			 * The unfreeze releases: it publishes the flip and the
			 * entry (P2's tries acquire).
			 */
			if (how == THAW_COMMIT) {
				(void)ps_page_unfreeze_change_flags(
					&c->frames[frame], c->expected,
					c->fwd_clear, c->fwd_set);
			} else {
				if (how == THAW_UNDO)
					entry_set_enc(c->pt, slot, addr, e,
						      frame, old_enc);
				(void)ps_page_unfreeze(&c->frames[frame],
						       c->expected);
			}
			n++;
		}
	}
	ps_pgtable_read_unlock();
	return n;
}

int ps_prot_convert(struct ps_space *s, uint64_t start, uint64_t len,
		    enum ps_enc_state to, unsigned int flags,
		    struct ps_convert_opts *opts, uint64_t *error_offset)
{
	const uint64_t extra = opts ? opts->extra_refs : 0;
	struct conv c;
	uint64_t fail = 0, words, n = 0;
	enum thaw how = THAW_PLAIN;
	bool commit;
	int rc;

	if (!range_ok(s, start, len) ||
	    (to != PS_ENC_PRIVATE && to != PS_ENC_SHARED) ||
	    (flags & ~PS_CONVERT_FLAGS_ALL) || extra >= PS_PAGE_REFS_MAX)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.pt = ps_space_pgtable(s);
	c.frames = ps__space_frames(s, &c.nframes);
	c.start = start;
	c.npages = len >> PAGE_SHIFT;
	c.to = to;
	c.flags = flags;
	c.expected = 1 + extra;
	c.wait_ns = opts && opts->wait_ns ? opts->wait_ns
					  : PS_CONVERT_WAIT_DEFAULT_NS;
	if (to == PS_ENC_PRIVATE) {
		c.fwd_set = PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE;
	} else {
		c.fwd_clear = PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE;
		if (flags & PS_CONVERT_INACCESSIBLE)
			c.fwd_set = PS_PAGE_INACCESSIBLE;
	}
	if (opts) {
		opts->converted = 0;
		opts->quarantined = 0;
		opts->hook_error = 0;
	}
	words = (c.npages + 63) / 64;
	/* Room for a run per leaf of the range, and a few more. */
	c.runs_cap = c.npages / PS_PGTABLE_LEAF_PAGES + 16;
	c.frozen = calloc(2 * words + 3 * c.runs_cap, sizeof(*c.frozen));
	if (!c.frozen)
		return -ENOMEM;
	c.was_inacc = c.frozen + words;
	c.runs = (struct run *)(void *)(c.frozen + 2 * words);

	PS__SPACE_FORK_CHECK(s);
	ps__space_writer_lock(s); /* P1 */
	c.hooks = ps__prot_hooks(s);
	c.prot = ps__prot_peek(s);
	c.longterm = ps__space_longterm_any(s);
	c.cpu_checks = c.prot && c.expected > 1;
	c.held_checks = c.cpu_checks || c.longterm;
	rc = ps_notifier_invalidate_start(ps_space_notifier(s), start, len,
					  PS_NOTIFIER_CONVERSION, 0);
	if (rc)
		goto out; /* cannot happen: a blockable start of a good range */
	/* No hook can fail: flip each entry in phase 1's walk. */
	commit = !(c.hooks && (c.hooks->prepare || c.hooks->finish));
	/* P9: huge units inside the range whole, or everything per page. */
	if (commit) {
		fail = 0;
		rc = split_edge(&c, start >> PAGE_SHIFT);
		if (!rc) {
			fail = c.npages - 1;
			rc = split_edge(&c, (start + len) >> PAGE_SHIFT);
		}
	} else {
		rc = split_all(&c, &fail);
	}
	if (rc) {
		(void)ps_notifier_invalidate_end(ps_space_notifier(s), start,
						 len);
		goto out;
	}
	rc = freeze_all(&c, &fail, commit);
	if (!rc)
		FAILPOINT(FP_CONVERT_FROZEN, start);
	if (rc && commit)
		how = THAW_UNDO;
	else if (!rc && !commit)
		rc = flip_all(&c, &fail);
	else if (!rc)
		how = THAW_COMMIT; /* the page words, while unfreezing */
	n = unfreeze_all(&c, how);
	(void)ps_notifier_invalidate_end(ps_space_notifier(s), start, len);
out:
	ps__space_writer_unlock(s);
	if (opts) {
		opts->converted = rc ? 0 : n;
		opts->quarantined = c.quarantined;
		opts->hook_error = c.hook_error;
	}
	if (rc && rc != -ENOMEM && error_offset)
		*error_offset = fail << PAGE_SHIFT;
	free(c.frozen);
	return rc;
}

/* --- the access check ----------------------------------------------------- */

int ps_prot_check_access(struct ps_space *s, uint64_t addr, uint64_t size,
			 enum ps_enc_state kind, struct ps_memory_fault *fault)
{
	const bool private_access = kind == PS_ENC_PRIVATE;
	const uint64_t space_size = ps__space_size(s);
	struct ps_pgtable *pt = ps_space_pgtable(s);
	uint64_t end, next, nframes;
	struct ps_page *frames = ps__space_frames(s, &nframes);
	int rc = 0;

	if (!fault || !size || addr >= space_size || size > space_size - addr ||
	    (kind != PS_ENC_PRIVATE && kind != PS_ENC_SHARED))
		return -EINVAL;
	end = addr + size;
	ps_pgtable_read_lock();
	for (uint64_t a = addr; a < end; a = next) {
		const uint64_t page = a & ~(PAGE_SIZE - 1);
		ps_pte_t e = ps_pgtable_lookup(pt, page);

		next = end - page > PAGE_SIZE ? page + PAGE_SIZE : end;
		if (ps_pte_is_present(e) && ps_pte_frame(e) < nframes) {
			uint64_t w = ps_page_load(&frames[ps_pte_frame(e)]);

			/* A mapped 4 KiB word is LIVE: else a huge frame's. */
			if (PS_UNLIKELY(!(w & (PS_PAGE_LIVE | PS_PAGE_FROZEN))))
				w = ps_page_load(ps_space_frame_word(
					s, ps_pte_frame(e), NULL));

			if (w & PS_PAGE_POISONED)
				rc = -EHWPOISON;
			else if (!(w & PS_PAGE_PRIVATE) != !private_access)
				rc = -EFAULT;
		} else if (ps_pte_marker_bits(e) & PS_PTE_MARKER_POISONED) {
			rc = -EHWPOISON;
		} else {
			rc = -ENOENT;
		}
		if (rc) {
			fault->flags = private_access ? PS_MEMORY_FAULT_PRIVATE
						      : 0;
			fault->addr = a;
			fault->size = next - a;
			break;
		}
	}
	ps_pgtable_read_unlock();
	return rc;
}

/* --- cache modes and protection changes (P7) ------------------------------ */

/*
 * ps_prot_set_cache() on the word @p that holds the state of the unit of
 * @order at @frame (P7; P9 for a huge unit): one CAS on a free word, else a
 * freeze with @expected_refs, the CPU maps of every 4 KiB frame of the unit
 * read after it (P5, P10), the change, the unfreeze.
 */
static int set_cache_word(struct ps_space *s, struct ps_page *p, uint64_t frame,
			  unsigned int order, enum ps_cache_mode mode,
			  uint64_t expected_refs)
{
	const uint64_t bits = (uint64_t)mode << PS_PAGE_CACHE_SHIFT;

	for (;;) {
		uint64_t w = ps_page_load(p);

		if (w & PS_PAGE_POISONED)
			return -EHWPOISON;
		if (w & PS_PAGE_SPLIT)
			return -EBUSY; /* split since the caller looked (S17) */
		if (ps_page_word_cache(w) == (unsigned int)mode)
			return 0; /* the same mode is always fine */
		if (!(w & (PS_PAGE_LIVE | PS_PAGE_FROZEN))) {
			/* One CAS that requires the frame free. */
			if (!ps_page_set_cache_if_free(p, mode, -1))
				return 0;
			continue; /* revived or changed meanwhile: look again */
		}
		if (!expected_refs || (w & PS_PAGE_FROZEN))
			return -EBUSY; /* in use (P7) */
		if (ps_page_freeze(p, expected_refs)) {
			struct ps__prot_space *ps = ps__prot_peek(s);

			FAILPOINT(FP_SET_CACHE_FROZEN, frame);

			/*
			 * P7: no CPU map either. The maps share one reference
			 * (P5), which a caller holding a map could declare;
			 * HELD, read after the freeze, cannot be set until the
			 * unfreeze unless it is set already. A huge unit's
			 * maps count at each of its frames (P10).
			 */
			if (ps && ps__prot_cpu_mapped(ps, frame,
						      order_pages(order))) {
				(void)ps_page_unfreeze(p, expected_refs);
				return -EBUSY;
			}
			(void)ps_page_change_flags(p, PS_PAGE_CACHE_MASK, bits);
			(void)ps_page_unfreeze(p, expected_refs);
			return 0;
		}
		if (ps_page_is_live(p))
			return -EBUSY; /* other references than declared */
		/* Freed (or frozen by another) meanwhile: look again. */
	}
}

/*
 * set_cache_word() for a caller that does not hold the writer mutex. A freeze
 * of a LIVE frame (@expected_refs) takes it: a map tells the frames it claimed
 * by their FROZEN bit under the mutex, and between its chunks it lets the
 * mutex go with frames taken (S20 in lib/space.c): a freeze without the
 * mutex was taken for the map's claim by its commit (the frame left with one
 * reference) or its rollback (the frame left free while mapped). The lock
 * waits for a map in progress. The word is looked up again under it.
 */
static int set_cache_unlocked(struct ps_space *s, struct ps_page *p,
			      uint64_t frame, unsigned int order,
			      enum ps_cache_mode mode, uint64_t expected_refs)
{
	unsigned int o;
	int rc;

	if (!expected_refs)
		return set_cache_word(s, p, frame, order, mode, 0);
	ps__space_writer_lock(s);
	p = ps_space_frame_word(s, frame, &o);
	rc = o == order
		     ? set_cache_word(s, p, frame, order, mode, expected_refs)
		     : -EBUSY; /* split or merged meanwhile (S17) */
	ps__space_writer_unlock(s);
	return rc;
}

int ps_prot_set_cache(struct ps_space *s, uint64_t frame,
		      enum ps_cache_mode mode, uint64_t expected_refs)
{
	const unsigned int order = PS_SPACE_UNIT_ORDER(frame);
	struct ps_page *p;
	unsigned int o;
	int rc;

	frame = PS_SPACE_UNIT_FRAME(frame);
	if ((order != PS_SPACE_ORDER_4K && order != PS_SPACE_ORDER_2M &&
	     order != PS_SPACE_ORDER_1G) ||
	    (frame & (order_pages(order) - 1)) ||
	    (unsigned int)mode >= PS_CACHE_NR ||
	    expected_refs > PS_PAGE_REFS_MAX)
		return -EINVAL;
	p = ps_space_frame_word(s, frame, &o);
	if (!p || (order && !ps_space_page(s, frame + order_pages(order) - 1)))
		return -EINVAL;
	if (PS_LIKELY(!order && !o))
		return set_cache_unlocked(s, p, frame, 0, mode, expected_refs);
	if (order) {
		/* P9: a whole frame, named as its unit: its word, once. */
		if (o != order)
			return -EINVAL; /* not a whole frame of that order */
		return set_cache_unlocked(s, p, frame, order, mode,
					  expected_refs);
	}
	/*
	 * P9: a 4 KiB frame of a whole huge frame: the frame's state is split
	 * first (S17), then that page's word changes. Under the writer mutex,
	 * so that no map merges the free parts back between (a merge is a
	 * map's, S1).
	 */
	if (ps_page_word_cache(ps_page_load(p)) == (unsigned int)mode)
		return 0; /* the same mode is always fine */
	ps__space_writer_lock(s);
	rc = ps__space_split_frame(s, frame, PS_SPACE_ORDER_4K);
	p = ps_space_frame_word(s, frame, &o);
	if (!rc && o)
		rc = -EBUSY; /* could not be split down to the page */
	if (!rc)
		rc = set_cache_word(s, p, frame, 0, mode, expected_refs);
	ps__space_writer_unlock(s);
	return rc;
}

/*
 * mprotect's change of one huge leaf that lies inside the range, at page @addr
 * (its first), of @order: one compare-and-swap of the whole leaf (P9: a whole
 * frame is one transition, never split); a racing fault refreshes it.
 */
static void mprotect_leaf(struct ps_pgtable *pt, uint64_t addr,
			  unsigned int order, ps_pte_t leaf, bool write)
{
	while (ps_pte_is_present(leaf) && ps_pte_may_write(leaf) != write &&
	       ps_pgtable_cmpxchg_huge(pt, addr, order, &leaf,
				       ps_pte_set_maywrite(leaf, write)) ==
		       -EAGAIN)
		;
}

int ps_prot_mprotect(struct ps_space *s, uint64_t start, uint64_t len,
		     unsigned int prot)
{
	const bool write = prot & PS_PROT_WRITE;
	struct ps_pgtable *pt = ps_space_pgtable(s);
	const uint64_t n = len >> PAGE_SHIFT;
	struct conv c;
	int rc = 0;

	if (!range_ok(s, start, len) ||
	    (prot & ~(PS_PROT_READ | PS_PROT_WRITE)))
		return -EINVAL;
	if (!prot)
		return -EOPNOTSUPP;
	PS__SPACE_FORK_CHECK(s);
	ps__space_writer_lock(s); /* P1 */
	/*
	 * P9: what straddles an edge is split first, the huge leaf and the
	 * frame's state (as a conversion does), so every huge leaf met below
	 * lies inside the range and changes whole. The splits change no page's
	 * entry or state, only their grouping: on -ENOMEM nothing else is done.
	 */
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.pt = pt;
	c.frames = ps__space_frames(s, &c.nframes);
	rc = split_edge(&c, start >> PAGE_SHIFT);
	if (!rc)
		rc = split_edge(&c, (start + len) >> PAGE_SHIFT);
	if (rc)
		goto out;
	if (!write) {
		rc = ps_notifier_invalidate_start(ps_space_notifier(s), start,
						  len, PS_NOTIFIER_PROTECTION,
						  0);
		if (rc)
			goto out;
	}
	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t addr = start + (i << PAGE_SHIFT);
		ps_pte_t e, leaf;
		unsigned int lo = 0;

		section_cycle(i, NULL);
		if (ps_pgtable_get_level(pt, addr, &e, &lo, &leaf))
			continue;
		if (lo && !(i & (order_pages(lo) - 1)) &&
		    order_pages(lo) <= n - i) {
			mprotect_leaf(pt, addr, lo, leaf, write);
			i += order_pages(lo) - 1;
			continue;
		}
		/* Only MAYWRITE/WRITE change; a racing fault refreshes e. */
		while (ps_pte_is_present(e) && ps_pte_may_write(e) != write &&
		       ps_pgtable_cmpxchg(pt, addr, &e,
					  ps_pte_set_maywrite(e, write)) ==
			       -EAGAIN)
			;
	}
	ps_pgtable_read_unlock();
	if (!write)
		rc = ps_notifier_invalidate_end(ps_space_notifier(s), start,
						len);
out:
	ps__space_writer_unlock(s);
	return rc;
}
