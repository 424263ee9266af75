// SPDX-License-Identifier: MIT
/*
 * lib/pgtable.c - the page table (pagestate/pgtable.h).
 *
 * ---------------------------------------------------------------------------
 * Structure
 * ---------------------------------------------------------------------------
 *
 * Page number p (36 bits) = leaf number L (27 bits) : index in the leaf (9).
 * L = root slot (9) : mid slot (9) : low slot (9). The root node is part of
 * struct ps_pgtable; mid and low nodes and leaves are allocated on demand
 * and published with a release CAS into a NULL slot (the loser frees its
 * copy, which nobody saw). Registrations are an immutable sorted array,
 * replaced copy-on-write under the writer mutex and published with a release
 * store; the old array is freed through call_rcu.
 *
 * Every entry change goes through entry_cas(): one compare-and-swap from the
 * value a transition function (tr_*) was computed from. Range operations are
 * a walk (update_range()) applying one transition to each entry.
 *
 * The scans (ps_pgtable_scan() and ps_pgtable_harvest()) are in
 * lib/pgtable-scan.c. The structure and the primitives both files use (the
 * walk to a leaf, entry_load(), entry_cas(), the registration lookups,
 * tr_protect(), the hint helpers) are in lib/pgtable-internal.h.
 *
 * ---------------------------------------------------------------------------
 * Concurrency protocol
 * ---------------------------------------------------------------------------
 *
 * Classes of operation:
 *   readers         lookup, get, get_range, registration, report-only
 *                   scan
 *   faults          fault, fault_pte, fault_locked
 *   entry writers   set, cmpxchg, swap_out, swap_in, map, zap, copy, move
 *   range writers   register, unregister, protect, unprotect, WP_MATCHING
 *                   scan, trim, and map/copy/move that set or keep uffd-wp:
 *                   they serialise among themselves on t->lock
 *
 * Guarantees (tests cite them as G1..G9; G7 and the reader's side of G8 are
 * stated in lib/pgtable-scan.c, with the scans):
 *
 * G1  Memory safety. Levels are freed only by trim (and destroy), after being
 *     unlinked, through call_rcu, and so are replaced registration sets.
 *     Readers, faults and entry writers walk (and read the registrations)
 *     inside a urcu-bp read-side section, their own or, for lookup and
 *     fault_locked, the caller's; range writers hold t->lock, which trim and
 *     every registration change hold too. So no walk ever touches freed memory.
 * G2  Entry atomicity. Each entry is at every instant one ps_pte_valid()
 *     value; each change is one CAS from the value its transition read, so
 *     concurrent operations on one entry linearise at their CAS and none is
 *     lost. No transition produces a writable + uffd-wp entry, and set and
 *     cmpxchg refuse invalid entries, so none ever exists.
 * G3  Range operations are not atomic as a whole. They walk up in address
 *     order; a concurrent fault, lookup or scan sees each entry either
 *     before or after the operation's CAS on it.
 * G4  Faults never block and never wait for a range writer: no lock, and a
 *     retry only after the entry changed (lock-free). Readers are wait-free.
 * G5  Range writers see a stable registration and never interleave: a
 *     protect cannot add uffd-wp to a range while it is being unregistered.
 * G6  When ps_pgtable_unregister() returns, no entry of the range carries
 *     uffd-wp (unless someone stored one with set/cmpxchg since). It
 *     publishes the new registration, waits for a grace period, so every
 *     zap that still saw the old one (and might turn a protected entry into
 *     a UFFD_WP marker) has finished, then clears the range.
 * G7  Get-and-rearm loses no write: the scans' own guarantee, stated with
 *     them at the top of lib/pgtable-scan.c.
 * G8  The written hint. leaf->hint has one bit per 8 entries (a cache line).
 *     After every CAS that makes an entry written (not none, no uffd-wp) from
 *     not written, the writer sets its line's bit unless it sees it set.
 *     Protect and WP_MATCHING scans clear the bits of the lines they cover
 *     whole (one RMW per leaf) before they read those entries, and set them
 *     again for lines where an entry stays written (or that a stopped scan did
 *     not reach). Writer (CAS entry, load hint) against clearer (RMW hint, load
 *     entry) is the store-buffering pattern, so all four are seq_cst: in their
 *     total order, either the writer's hint load comes after the clear (it sees
 *     the bit clear and sets it) or the clearer's entry load comes after the
 *     writer's CAS (it sees the write). Hence every written entry lies in a
 *     hinted line, except while a protect or WP scan is processing that line.
 *     The writer's side is entry_cas(), the clearer's hint_begin() and
 *     hint_end() (all in lib/pgtable-internal.h); scans whose query requires
 *     WRITTEN read only hinted lines, which is safe by this invariant (the
 *     reader's side, at the top of lib/pgtable-scan.c). A zap that turns a
 *     written entry into a WRITTEN marker keeps it written, so its line needs
 *     no new bit: the marker is found where the written entry was.
 * G9  Stale protection is inert. uffd-wp in a range that is not registered
 *     (left by a raw set, or a copy/move of the caller's making) never makes
 *     a fault report PS_FAULT_WP: a fault clears a stale marker (one CAS,
 *     then MISSING) and a write clears a stale present bit in the CAS that
 *     resolves it.
 *
 * Pairs that need external exclusion (the caller's lock, as Linux's mmap
 * lock orders these):
 *
 *   trim          vs any store into its range (set, cmpxchg, map, swap_out,
 *                 swap_in, copy or move into it): a store could land in a
 *                 leaf being freed. Zaps and faults are fine: they never
 *                 store into an all-none leaf.
 *   destroy       vs everything.
 *   map           vs set/cmpxchg/map of the same pages: -EEXIST is checked
 *                 up front; a page mapped meanwhile makes the map stop with
 *                 -EEXIST after a prefix.
 *   copy, move    vs stores into the target range (same reason).
 *
 * Everything else may run concurrently with everything else, including
 * faults during protect, zap, scan, register and unregister.
 *
 * What a concurrent fault sees: during protect, each page is protected or
 * not yet (a write may still succeed on a page the walk has not reached);
 * during zap, each page is present or already gone (MISSING); during a
 * WP_MATCHING scan, each page is written or re-armed; during unregister,
 * either the old registration (WP in sync mode) or the new one (stale bit
 * cleared, G9).
 *
 * Progress: lookup, get, registration: wait-free. fault, set, cmpxchg,
 * swap, map, zap, copy, move, report-only scan: lock-free (CAS loops that
 * retry only when another thread changed the entry; level allocation calls
 * malloc). Range writers: blocking on t->lock; unregister and destroy also
 * wait for a grace period or for liburcu's callbacks.
 */
#include "pgtable-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* --- levels --------------------------------------------------------------- */

/*
 * Allocation failure injection, in the test build only
 * (-DPS_PGTABLE_FAILPOINTS, see tests/meson.build): the test sets the hook,
 * which says whether the next allocation of a level fails.
 */
#ifdef PS_PGTABLE_FAILPOINTS
bool (*ps__pgtable_alloc_fails)(void);
#define ALLOC_FAILS() (ps__pgtable_alloc_fails && ps__pgtable_alloc_fails())
/* Called by a fault between its read of an entry and its CAS (H4's race). */
void (*ps__pgtable_fault_window)(void);
#define FAULT_WINDOW()                              \
	do {                                        \
		if (ps__pgtable_fault_window)       \
			ps__pgtable_fault_window(); \
	} while (0)
/* Called by protect and unprotect between chunks, no lock held. */
void (*ps__pgtable_wp_chunk)(uint64_t next);
#define WP_CHUNK_WINDOW(next)                       \
	do {                                        \
		if (ps__pgtable_wp_chunk)           \
			ps__pgtable_wp_chunk(next); \
	} while (0)
#else
#define ALLOC_FAILS() false
#define FAULT_WINDOW() \
	do {           \
	} while (0)
#define WP_CHUNK_WINDOW(next) \
	do {                  \
	} while (0)
#endif

static void count(_Atomic(uint64_t) *c, int64_t delta)
{
	/* Relaxed: statistics only, no other data depends on them. */
	atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
}

static void *level_alloc(struct ps_pgtable *t, bool leaf)
{
	size_t size = leaf ? sizeof(struct leaf) : sizeof(struct node);
	void *p;

	if (ALLOC_FAILS())
		return NULL;
	p = aligned_alloc(64, (size + 63) & ~(size_t)63);
	if (!p)
		return NULL;
	count(&t->bytes, (int64_t)size);
	count(leaf ? &t->leaves : &t->nodes, 1);
	return p;
}

static void *level_new(struct ps_pgtable *t, bool leaf)
{
	void *p = level_alloc(t, leaf);

	if (p) /* none entries and NULL slots, before publishing */
		memset(p, 0, leaf ? sizeof(struct leaf) : sizeof(struct node));
	return p;
}

static void level_forget(struct ps_pgtable *t, bool leaf)
{
	count(&t->bytes,
	      -(int64_t)(leaf ? sizeof(struct leaf) : sizeof(struct node)));
	count(leaf ? &t->leaves : &t->nodes, -1);
}

void *ps__pgtable_level_new_raw(struct ps_pgtable *t, bool leaf)
{
	return level_alloc(t, leaf);
}

void ps__pgtable_level_forget(struct ps_pgtable *t, bool leaf)
{
	level_forget(t, leaf);
}

static void leaf_free_rcu(struct ps__rcu_head *h)
{
	free((char *)h - offsetof(struct leaf, rcu));
}

static void node_free_rcu(struct ps__rcu_head *h)
{
	free((char *)h - offsetof(struct node, rcu));
}

/*
 * Free level @c and the levels below it after a grace period (each through
 * its own call_rcu): it was unlinked, so only walks begun before can hold
 * it (G1). Huge leaves in its slots are values, not levels.
 */
void ps__pgtable_level_free_rcu(struct ps_pgtable *t, void *c, bool leaf)
{
	level_forget(t, leaf);
	if (leaf) {
		ps__rcu_call(&((struct leaf *)c)->rcu, leaf_free_rcu);
		return;
	}
	for (unsigned int i = 0; i < FANOUT; i++) {
		uintptr_t v = slot_load(&((struct node *)c)->slot[i]);

		/* A node's children are leaves iff it is a low node. */
		if (slot_level(v))
			ps__pgtable_level_free_rcu(t, (void *)v,
						   ((struct node *)c)->depth ==
							   1);
	}
	ps__rcu_call(&((struct node *)c)->rcu, node_free_rcu);
}

/*
 * The child in @slot, allocated and published if absent. Returns NULL only
 * when out of memory.
 */

void *ps__pgtable_level_get(struct ps_pgtable *t, _Atomic(void *) *slot,
			    unsigned int order, bool leaf, bool alloc,
			    bool *nomem)
{
	uintptr_t v = slot_load(slot);
	void *fresh;

	for (;;) {
		if (!order && v)
			return (void *)v; /* a root slot: ROOT_HUGE kept */
		if (PS_LIKELY(slot_level(v)))
			return (void *)v;
		if (slot_frozen(v)) {
			ps__pgtable_thaw(slot, v); /* H4: a writer */
			v = slot_load(slot);
			continue;
		}
		if (slot_huge(v)) {
			fresh = ps__pgtable_split_slot(t, slot, &v, order,
						       nomem);
			if (fresh || *nomem)
				return fresh;
			continue; /* changed: v is the new value */
		}
		if (!alloc)
			return NULL;
		if (!(fresh = level_new(t, leaf))) {
			*nomem = true;
			return NULL;
		}
		if (!leaf)
			((struct node *)fresh)->depth = order ? 1 : 2;
		/*
		 * Release: the zeroed level is visible to every walker that
		 * loads the slot with acquire. Acquire on failure: we use the
		 * winner's value.
		 */
		if (atomic_compare_exchange_strong_explicit(
			    slot, (void **)&v, fresh, memory_order_acq_rel,
			    memory_order_acquire))
			return fresh;
		level_forget(t, leaf);
		free(fresh); /* never published */
	}
}

static void *child_alloc(struct ps_pgtable *t, _Atomic(void *) *slot,
			 unsigned int order, bool leaf)
{
	bool nomem = false;

	return ps__pgtable_level_get(t, slot, order, leaf, true, &nomem);
}

static struct leaf *leaf_alloc(struct ps_pgtable *t, uint64_t L)
{
	struct node *mid, *low;

	mid = child_alloc(t, &t->root.slot[L >> MID_SHIFT], 0, false);
	mid = (struct node *)((uintptr_t)mid & ~ROOT_HUGE);
	if (!mid)
		return NULL;
	low = child_alloc(t, &mid->slot[(L >> LOW_SHIFT) & LEVEL_MASK],
			  ORDER_MID, false);
	if (!low)
		return NULL;
	return child_alloc(t, &low->slot[L & LEVEL_MASK], ORDER_LOW, true);
}

struct leaf *ps__pgtable_leaf_alloc(struct ps_pgtable *t, uint64_t L)
{
	return leaf_alloc(t, L);
}

static void regset_free_rcu(struct ps__rcu_head *h)
{
	free(h);
}

static struct regset *regset_new(size_t n)
{
	struct regset *rs = malloc(sizeof(*rs) + n * sizeof(rs->r[0]));

	if (rs)
		rs->n = 0;
	return rs;
}

/* Replace the registrations (t->lock held); the old set goes after readers. */
static void regs_publish(struct ps_pgtable *t, struct regset *rs)
{
	/* Relaxed: only the holder of t->lock stores t->regs. */
	struct regset *old = atomic_load_explicit(&t->regs,
						  memory_order_relaxed);

	/* Release: pairs with regs_load(): the array is complete. */
	atomic_store_explicit(&t->regs, rs, memory_order_release);
	if (old)
		ps__rcu_call(&old->rcu, regset_free_rcu);
}

/* --- transitions (pure: old entry -> new entry) --------------------------- */

static ps_pte_t tr_unprotect(ps_pte_t e, const struct op *op, uint64_t addr)
{
	(void)op;
	(void)addr;
	return ps_pte_clear_uffd_wp(e);
}

/*
 * Zap. A written page (present or swap, no uffd-wp) of an async range
 * leaves a WRITTEN marker, so that the next scan for written pages reports
 * it (Linux: a none PTE, which its scan counts as written there); a
 * WRITTEN marker stays until PS_ZAP_UNMAP, as GUARD does.
 */
static ps_pte_t tr_zap(ps_pte_t e, const struct op *op, uint64_t addr)
{
	bool unmap = op->flags & PS_ZAP_UNMAP;
	bool reg = !unmap && (op->rf & REG_ON);
	bool keep_wp = reg && (op->rf & PS_WP_SHARED);
	unsigned int keep;

	(void)addr;
	if (e == PS_PTE_NONE)
		return e;
	if (!ps_pte_is_marker(e)) {
		if (ps_pte_uffd_wp(e))
			return keep_wp ? marker_uffd_wp() : PS_PTE_NONE;
		return reg && (op->rf & PS_WP_ASYNC) ? marker_written()
						     : PS_PTE_NONE;
	}
	keep = (keep_wp ? PS_PTE_MARKER_UFFD_WP : 0) |
	       (unmap ? 0 : PS_PTE_MARKER_GUARD | PS_PTE_MARKER_WRITTEN);
	return ps_pte_mk_marker(ps_pte_marker_bits(e) & keep);
}

/*
 * Copy and move: what the target gets for source entry @e. A WRITTEN
 * marker is written state, not protection: like a present entry's
 * written-ness it is always carried over.
 */
static ps_pte_t tr_copy(ps_pte_t e, const struct op *op, uint64_t addr)
{
	bool keep_wp = op->flags & PS_KEEP_WP;

	(void)addr;
	if (ps_pte_is_written_marker(e))
		return e;
	if (ps_pte_is_marker(e))
		return ps_pte_mk_marker(
			ps_pte_marker_bits(e) &
			(PS_PTE_MARKER_POISONED | PS_PTE_MARKER_GUARD |
			 (keep_wp ? PS_PTE_MARKER_UFFD_WP : 0)));
	return keep_wp ? e : ps_pte_clear_uffd_wp(e);
}

static ps_pte_t tr_map(ps_pte_t e, const struct op *op, uint64_t addr)
{
	uint64_t frame = op->frame + ((addr - op->start) >> PAGE_SHIFT);

	/* Over a WRITTEN marker the page stays written (unless mapped wp). */
	if (e == PS_PTE_NONE || ps_pte_is_written_marker(e))
		return ps_pte_mk_present(frame, op->pflags);
	if (e == marker_uffd_wp())
		return ps_pte_mk_present(frame, op->pflags | PS_PTE_UFFD_WP);
	return REFUSE;
}

/* --- the range walk ------------------------------------------------------- */

/*
 * Apply @fn to entries [lo, hi) of leaf @l (first page @p0). Returns 0, or
 * -EEXIST when @fn refused an entry (the walk stops there). With @clear_hint
 * (protect: nothing stays written), the hint bits of the lines covered whole
 * are cleared first and set again where an entry stays written (G8).
 */
static PS_ALWAYS_INLINE int update_leaf(struct leaf *l, uint64_t p0,
					unsigned int lo, unsigned int hi,
					tr_fn fn, const struct op *op,
					bool clear_hint)
{
	uint64_t covered = clear_hint ? lines_mask((lo + LINE_ENTRIES - 1) /
							   LINE_ENTRIES,
						   hi / LINE_ENTRIES)
				      : 0;
	uint64_t still = 0;
	int err = 0;

	if (covered)
		(void)hint_begin(l, covered);
	for (unsigned int i = lo; i < hi && !err; i++) {
		uint64_t addr = (p0 + i) << PAGE_SHIFT;
		ps_pte_t e = entry_load(l, i), n;

		for (;;) {
			n = fn(e, op, addr);
			if (n == e)
				break;
			if (n == REFUSE) {
				err = -EEXIST;
				still = covered;
				break;
			}
			if (entry_cas(l, i, &e, n)) {
				if (op->visit)
					op->visit(op->ctx, addr, e, n);
				e = n;
				break;
			}
		}
		if (ps_pte_written(e))
			still |= UINT64_C(1) << (i / LINE_ENTRIES);
	}
	if (covered)
		hint_end(l, covered & still);
	return err;
}

/*
 * update_huge() - apply @fn to pages [*p, send) of the huge leaf of @h
 * (they start inside it). An operation on the whole extent changes the
 * leaf with one CAS (@visit is told of each page); one on part of it, or
 * one whose result is no huge leaf (a swap entry), splits it first (H1).
 * Transitions are functions of the entry's bits, uniform over the extent
 * (tr_map, the one that reads the address, refuses present leaves), so the
 * first page's change stands for all. Returns 0 with *p past the pages
 * done (or unchanged: the caller walks again after a split or a race),
 * -EEXIST (refused), -ENOMEM (a split could not allocate).
 */
static int update_huge(struct ps_pgtable *t, struct hit *h, uint64_t *p,
		       uint64_t send, tr_fn fn, const struct op *op)
{
	const uint64_t xend = h->p0 + (UINT64_C(1) << h->order);
	const uint64_t hi = send < xend ? send : xend;
	ps_pte_t v = (ps_pte_t)h->v, view, n;
	uintptr_t cur = h->v;
	bool nomem = false;

	view = hit_view(h, *p);
	n = fn(view, op, *p << PAGE_SHIFT);
	if (n == REFUSE)
		return -EEXIST;
	if (n == view) {
		*p = hi;
		return 0;
	}
	if (*p == h->p0 && hi == xend) {
		n = fn(v, op, h->p0 << PAGE_SHIFT);
		if (n == PS_PTE_NONE || ps_pte_huge_valid(n, h->order)) {
			/*
			 * Seq_cst: the slot's CAS is an entry CAS (G2, G8's
			 * writer side needs no hint: huge leaves are read
			 * whole by every scan); release to acquiring readers.
			 */
			if (!atomic_compare_exchange_strong_explicit(
				    h->slot, (void **)&cur,
				    (void *)(uintptr_t)n, memory_order_seq_cst,
				    memory_order_acquire))
				return 0;	    /* changed: walk again */
			if (op->visit && op->units) /* PS_ZAP_UNITS */
				op->visit(op->ctx,
					  (h->p0 << PAGE_SHIFT) | h->order,
					  hit_view(h, h->p0),
					  ps_pte_huge_subpage(n, h->order, 0));
			else if (op->visit)
				for (uint64_t q = h->p0; q < xend; q++)
					op->visit(
						op->ctx, q << PAGE_SHIFT,
						hit_view(h, q),
						ps_pte_huge_subpage(n, h->order,
								    q - h->p0));
			*p = xend;
			return 0;
		}
	}
	if (!ps__pgtable_split_slot(t, h->slot, &cur, h->order, &nomem) &&
	    nomem)
		return -ENOMEM;
	return 0; /* split (by us or another): walk again */
}

/*
 * update_range() - apply @fn to every entry of [start, end), segment by
 * segment of equal registration (@rs), allocating leaves only where @fn
 * turns a none entry into something else. Huge leaves met on the way go
 * to update_huge(); frozen levels are thawed (H4). @clear_hint: see
 * update_leaf(). Returns 0, -ENOMEM or -EEXIST.
 */
static PS_ALWAYS_INLINE int update_range(struct ps_pgtable *t,
					 const struct regset *rs,
					 uint64_t start, uint64_t end, tr_fn fn,
					 struct op *op, bool clear_hint)
{
	uint64_t p = start >> PAGE_SHIFT;

	while (p < end >> PAGE_SHIFT) {
		uint64_t seg_end;
		const struct reg *r = reg_segment(rs, p << PAGE_SHIFT, end,
						  &seg_end);
		uint64_t send = seg_end >> PAGE_SHIFT;
		bool alloc;

		op->rf = reg_flags(r);
		alloc = fn(PS_PTE_NONE, op, p << PAGE_SHIFT) != PS_PTE_NONE;
		while (p < send) {
			uint64_t L = p >> LEVEL_BITS, lend;
			struct leaf *l;
			struct hit h;
			int err;

			if (alloc) {
				l = leaf_lookup(t, L, &h);
			} else {
				l = leaf_find(t, &L,
					      ((send - 1) >> LEVEL_BITS) + 1,
					      &h);
				if (L << LEVEL_BITS > p)
					p = L << LEVEL_BITS;
			}
			if (h.frozen) { /* H4: a writer thaws */
				ps__pgtable_thaw(h.frozen, slot_load(h.frozen));
				continue;
			}
			if (h.v) {
				err = update_huge(t, &h, &p, send, fn, op);
				if (err)
					return err;
				continue;
			}
			if (!l) {
				if (!alloc)
					break;
				l = leaf_alloc(t, L);
				if (!l)
					return -ENOMEM;
			}
			lend = (L + 1) << LEVEL_BITS;
			if (lend > send)
				lend = send;
			err = update_leaf(l, L << LEVEL_BITS,
					  (unsigned int)(p & LEVEL_MASK),
					  (unsigned int)(lend -
							 (L << LEVEL_BITS)),
					  fn, op, clear_hint);
			if (err)
				return err;
			p = lend;
		}
		p = send;
	}
	return 0;
}

/*
 * Allocate every level of [start, end), so that no store into the range
 * fails with -ENOMEM until a trim of it. -ENOMEM, with a prefix of the
 * levels allocated (they stay, empty: a trim frees them).
 */
static int levels_alloc(struct ps_pgtable *t, uint64_t start, uint64_t end)
{
	const uint64_t Lend = (((end - 1) >> PAGE_SHIFT) >> LEVEL_BITS) + 1;

	for (uint64_t L = (start >> PAGE_SHIFT) >> LEVEL_BITS; L < Lend; L++)
		if (!leaf_alloc(t, L))
			return -ENOMEM;
	return 0;
}

/*
 * The first page of [start, end) that is not none, nor, with @markers_ok,
 * a lone UFFD_WP or WRITTEN marker (what a map may replace); @end if none.
 */
uint64_t ps__pgtable_occupied(const struct ps_pgtable *t, uint64_t start,
			      uint64_t end, bool markers_ok)
{
	uint64_t p = start >> PAGE_SHIFT, pend = end >> PAGE_SHIFT;
	struct leaf *l;
	struct hit h;

	for (; (l = leaf_next(t, &p, pend, &h)) || h.v; p++) {
		ps_pte_t e = l ? entry_load(l, p & LEVEL_MASK)
			       : hit_view(&h, p);

		if (e != PS_PTE_NONE &&
		    !(markers_ok &&
		      (e == marker_uffd_wp() || ps_pte_is_written_marker(e))))
			return p << PAGE_SHIFT;
		if (!l) { /* every page of a huge leaf reads the same here */
			uint64_t xend = h.p0 + (UINT64_C(1) << h.order);

			p = (xend < pend ? xend : pend) - 1;
		}
	}
	return end;
}

/* Is every entry of [start, end) vacant (see ps__pgtable_occupied())? */
static bool range_vacant(const struct ps_pgtable *t, uint64_t start,
			 uint64_t end, bool markers_ok)
{
	return ps__pgtable_occupied(t, start, end, markers_ok) == end;
}

/* --- lifetime and lookups ------------------------------------------------- */

struct ps_pgtable *ps_pgtable_create(void)
{
	struct ps_pgtable *t;
	uint64_t born;
	int rc = ps__fork_born(&born);

	if (rc) {
		errno = -rc; /* ECHILD: a child of a plain fork() */
		return NULL;
	}
	t = aligned_alloc(64, (sizeof(*t) + 63) & ~(size_t)63);
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->root.depth = 3;
	t->born = born;
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		return NULL;
	}
	count(&t->bytes, (int64_t)sizeof(*t));
	return t;
}

static void free_subtree(struct node *n, int depth)
{
	for (unsigned int i = 0; i < FANOUT; i++) {
		/* NULL for a huge leaf: a value */
		void *c = depth == 3
				  ? (void *)root_child((struct ps_pgtable *)n,
						       i)
				  : child(n, i);

		if (!c)
			continue;
		if (depth > 1)
			free_subtree(c, depth - 1);
		free(c);
	}
}

void ps_pgtable_destroy(struct ps_pgtable *t)
{
	if (!t || ps__fork_inherited(t->born))
		return; /* in a child, an inherited table is only forgotten */
	ps__rcu_barrier(); /* trimmed levels and old registrations first */
	free_subtree(&t->root, 3);
	/* Relaxed: sole user. */
	free(atomic_load_explicit(&t->regs, memory_order_relaxed));
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void ps_pgtable_stats(const struct ps_pgtable *t, struct ps_pgtable_stats *st)
{
	/* Relaxed: statistics, a snapshot of independent counters. */
	st->bytes = atomic_load_explicit(&t->bytes, memory_order_relaxed);
	st->leaves = atomic_load_explicit(&t->leaves, memory_order_relaxed);
	st->nodes = atomic_load_explicit(&t->nodes, memory_order_relaxed);
}

void ps_pgtable_read_lock(void)
{
	ps__rcu_read_lock();
}

void ps_pgtable_read_unlock(void)
{
	ps__rcu_read_unlock();
}

/* ps_pgtable_get() in a thread's first section: out of the fast path. */
static PS_COLD int get_first(const struct ps_pgtable *t, uint64_t addr,
			     ps_pte_t *pte)
{
	ps__rcu_read_lock();
	*pte = ps_pgtable_lookup(t, addr);
	ps__rcu_read_unlock();
	return 0;
}

int ps_pgtable_get(const struct ps_pgtable *t, uint64_t addr, ps_pte_t *pte)
{
	if (bad_addr(addr))
		return -EINVAL;
	if (!ps__rcu_thread_registered())
		return get_first(t, addr, pte); /* no call on the fast path */
	ps__rcu_read_lock();
	*pte = ps_pgtable_lookup(t, addr);
	ps__rcu_read_unlock();
	return 0;
}

int ps_pgtable_get_level(const struct ps_pgtable *t, uint64_t addr,
			 ps_pte_t *pte, unsigned int *order, ps_pte_t *leaf)
{
	uint64_t p = addr >> PAGE_SHIFT;
	const struct leaf *l;
	struct hit h;
	ps_pte_t e = PS_PTE_NONE;

	if (bad_addr(addr))
		return -EINVAL;
	ps__rcu_read_lock();
	l = leaf_lookup(t, p >> LEVEL_BITS, &h);
	if (l)
		/* Acquire: pairs with entry_cas()'s release. */
		e = atomic_load_explicit(&l->e[p & LEVEL_MASK],
					 memory_order_acquire);
	ps__rcu_read_unlock();
	if (h.v)
		e = hit_view(&h, p);
	*pte = e;
	if (order)
		*order = h.v ? h.order : PS_PGTABLE_ORDER_4K;
	if (leaf)
		*leaf = h.v ? (ps_pte_t)h.v : e;
	return 0;
}

PS_STATIC_ASSERT(PS_PTE_NONE == 0, "get_range fills holes with memset");

/*
 * Copy @n entries of one leaf from @e to @out, four loads then four stores a
 * round: a loop of one load and one store per page runs at its own overhead
 * (increments, compare, branch: five instructions a page) rather than at the
 * rate of loads and stores. Relaxed loads, ordered by ps_pgtable_get_range()'s
 * acquire fence after the run.
 */
static inline void leaf_copy(ps_pte_t *restrict out,
			     const _Atomic(ps_pte_t) *restrict e, size_t n)
{
	size_t k = 0;

#if PS_TSAN
	/*
	 * Acquire: pairs with entry_cas()'s release. ThreadSanitizer does not
	 * model fences, so under it each load acquires for itself.
	 */
	for (; k < n; k++)
		out[k] = atomic_load_explicit(&e[k], memory_order_acquire);
	return;
#endif
	for (; k + 4 <= n; k += 4) {
		/* Relaxed: the fence in ps_pgtable_get_range() acquires. */
		ps_pte_t a = atomic_load_explicit(&e[k], memory_order_relaxed);
		/* Relaxed: as above. */
		ps_pte_t b = atomic_load_explicit(&e[k + 1],
						  memory_order_relaxed);
		/* Relaxed: as above. */
		ps_pte_t c = atomic_load_explicit(&e[k + 2],
						  memory_order_relaxed);
		/* Relaxed: as above. */
		ps_pte_t d = atomic_load_explicit(&e[k + 3],
						  memory_order_relaxed);

		out[k] = a;
		out[k + 1] = b;
		out[k + 2] = c;
		out[k + 3] = d;
	}
	for (; k < n; k++)
		/* Relaxed: as above. */
		out[k] = atomic_load_explicit(&e[k], memory_order_relaxed);
}

int ps_pgtable_get_range(const struct ps_pgtable *t, uint64_t start,
			 uint64_t npages, ps_pte_t *out)
{
	uint64_t p, pend;

	if (bad_addr(start) || !npages ||
	    npages > (PS_PGTABLE_ADDR_END - start) >> PAGE_SHIFT || !out)
		return -EINVAL;
	p = start >> PAGE_SHIFT;
	pend = p + npages;
	/* G1: one section for the run; each leaf is walked to once. */
	ps__rcu_read_lock();
	while (p < pend) {
		uint64_t leaf_end = ((p >> LEVEL_BITS) + 1) << LEVEL_BITS;
		size_t n = (size_t)((leaf_end < pend ? leaf_end : pend) - p);
		struct hit h;
		const struct leaf *l = leaf_lookup(t, p >> LEVEL_BITS, &h);

		if (PS_UNLIKELY(h.v)) {
			for (size_t k = 0; k < n; k++)
				out[k] = hit_view(&h, p + k);
		} else if (!l) {
			memset(out, 0, n * sizeof(*out)); /* PS_PTE_NONE */
		} else {
			leaf_copy(out, &l->e[p & LEVEL_MASK], n);
		}
		out += n;
		p += n;
	}
	/*
	 * Acquire: pairs with entry_cas()'s release, for every relaxed entry
	 * load of leaf_copy() at once; the caller's accesses after the call are
	 * ordered after each load as by an acquire load of each (a fence after
	 * a load that read a released value synchronises with the release).
	 */
	atomic_thread_fence(memory_order_acquire);
	ps__rcu_read_unlock();
	return 0;
}

/* --- single entries ------------------------------------------------------- */

/* Transition of ps_pgtable_set(): whatever was there becomes op->pflags. */
static ps_pte_t tr_set(ps_pte_t e, const struct op *op, uint64_t addr)
{
	(void)e;
	(void)addr;
	return op->pflags;
}

static ps_pte_t tr_swap_out(ps_pte_t e, const struct op *op, uint64_t addr)
{
	(void)addr;
	if (!ps_pte_is_present(e))
		return REFUSE;
	return ps_pte_mk_swap((unsigned int)op->frame, op->start,
			      op->pflags | (e & PS_PTE_UFFD_WP));
}

static ps_pte_t tr_swap_in(ps_pte_t e, const struct op *op, uint64_t addr)
{
	(void)addr;
	if (!ps_pte_is_swap(e))
		return REFUSE;
	return ps_pte_mk_present(op->frame, op->pflags | (e & PS_PTE_UFFD_WP));
}

/*
 * update_one() - apply @fn to the entry of page @addr (in a read-side section),
 * allocating its leaf when @fn makes a none entry non-none. *old receives the
 * entry before. Returns 0, -ENOMEM, or @refused when @fn refused the entry.
 */
static int update_one(struct ps_pgtable *t, uint64_t addr, tr_fn fn,
		      struct op *op, ps_pte_t *old, int refused)
{
	uint64_t p = addr >> PAGE_SHIFT;
	struct leaf *l;
	int err = 0;
	ps_pte_t e, n;

	struct hit h;

	ps__rcu_read_lock();
	l = leaf_lookup(t, p >> LEVEL_BITS, &h);
	if (!l || h.frozen) {
		/* Under a huge leaf: the view (H1 splits to change it). */
		e = l	  ? entry_load(l, p & LEVEL_MASK)
		    : h.v ? hit_view(&h, p)
			  : PS_PTE_NONE;
		n = fn(e, op, addr);
		if (n == e || n == REFUSE) {
			/* Nothing to do or refused: nothing allocated. */
			err = n == REFUSE ? refused : 0;
			goto out;
		}
		l = leaf_alloc(t, p >> LEVEL_BITS); /* splits, thaws */
	}
	if (!l) {
		err = -ENOMEM;
		e = PS_PTE_NONE;
		goto out;
	}
	e = entry_load(l, p & LEVEL_MASK);
	for (;;) {
		n = fn(e, op, addr);
		if (n == REFUSE) {
			err = refused;
			break;
		}
		if (n == e || entry_cas(l, p & LEVEL_MASK, &e, n))
			break;
	}
out:
	ps__rcu_read_unlock();
	if (old)
		*old = e;
	return err;
}

int ps_pgtable_set(struct ps_pgtable *t, uint64_t addr, ps_pte_t pte,
		   ps_pte_t *old)
{
	struct op op = {.pflags = pte};

	if (bad_addr(addr) || !ps_pte_valid(pte))
		return -EINVAL;
	return update_one(t, addr, tr_set, &op, old, 0);
}

int ps_pgtable_cmpxchg(struct ps_pgtable *t, uint64_t addr, ps_pte_t *expected,
		       ps_pte_t desired)
{
	uint64_t p = addr >> PAGE_SHIFT;
	struct leaf *l;
	int err = 0;

	if (bad_addr(addr) || !ps_pte_valid(desired))
		return -EINVAL;
	struct hit h;

	ps__rcu_read_lock();
	l = leaf_lookup(t, p >> LEVEL_BITS, &h);
	if (!l || h.frozen) {
		ps_pte_t e = l	   ? entry_load(l, p & LEVEL_MASK)
			     : h.v ? hit_view(&h, p)
				   : PS_PTE_NONE;

		if (*expected != e || desired == e) {
			err = *expected == e ? 0 : -EAGAIN;
			*expected = e;
			goto out;
		}
		l = leaf_alloc(t, p >> LEVEL_BITS); /* splits, thaws */
	}
	if (!l)
		err = -ENOMEM;
	else if (!entry_cas(l, p & LEVEL_MASK, expected, desired))
		err = -EAGAIN;
out:
	ps__rcu_read_unlock();
	return err;
}

int ps_pgtable_swap_out(struct ps_pgtable *t, uint64_t addr, unsigned int type,
			uint64_t offset, uint64_t flags, ps_pte_t *old)
{
	struct op op = {.frame = type, .start = offset, .pflags = flags};

	if (bad_addr(addr) || type > PS_PTE_SWP_TYPE_MAX ||
	    offset > PS_PTE_SWP_OFFSET_MAX || (flags & ~PS_PTE_SWP_EXCLUSIVE))
		return -EINVAL;
	return update_one(t, addr, tr_swap_out, &op, old, -ENXIO);
}

int ps_pgtable_swap_in(struct ps_pgtable *t, uint64_t addr, uint64_t frame,
		       uint64_t flags, ps_pte_t *old)
{
	struct op op = {.frame = frame, .pflags = flags};

	if (bad_addr(addr) || frame > PS_PTE_FRAME_MAX ||
	    (flags & ~(PS_PTE_PRESENT_FLAGS & ~PS_PTE_UFFD_WP)))
		return -EINVAL;
	return update_one(t, addr, tr_swap_in, &op, old, -ENXIO);
}

/* --- ranges --------------------------------------------------------------- */

int ps_pgtable_map(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   uint64_t frame, uint64_t flags)
{
	struct op op = {.start = start, .frame = frame, .pflags = flags};
	bool wp = flags & PS_PTE_UFFD_WP;
	int err;

	if (bad_range(start, len) || (flags & ~PS_PTE_PRESENT_FLAGS) ||
	    frame > PS_PTE_FRAME_MAX ||
	    (len >> PAGE_SHIFT) - 1 > PS_PTE_FRAME_MAX - frame)
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	if (wp)
		pthread_mutex_lock(&t->lock);
	ps__rcu_read_lock();
	if (wp && !reg_covers(regs_load(t), start, start + len, 0))
		err = -ENOENT;
	else if (!range_vacant(t, start, start + len, true))
		err = -EEXIST;
	else
		err = levels_alloc(t, start, start + len);
	/*
	 * Levels first: once they are all there the installs cannot fail
	 * with -ENOMEM, so a map that runs out of memory installs nothing.
	 */
	if (!err)
		err = update_range(t, regs_load(t), start, start + len, tr_map,
				   &op, false);
	ps__rcu_read_unlock();
	if (wp)
		pthread_mutex_unlock(&t->lock);
	return err;
}

int ps_pgtable_map_prepare(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	int err;

	if (bad_range(start, len))
		return -EINVAL;
	ps__rcu_read_lock();
	if (!range_vacant(t, start, start + len, true))
		err = -EEXIST;
	else
		err = levels_alloc(t, start, start + len);
	ps__rcu_read_unlock();
	return err;
}

int ps_pgtable_register(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int flags)
{
	const struct regset *rs;
	struct regset *nrs;
	uint64_t end = start + len, seg_end;
	size_t i, j = 0;
	int err = 0;

	if (bad_range(start, len) || (flags & ~PS_WP_ALL) ||
	    (flags & (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE)) ==
		    (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE))
		return -EINVAL;
	if (flags & PS_WP_ASYNC)
		flags |= PS_WP_UNPOPULATED; /* WP_ASYNC implies it in Linux */
	PS__FORK_CHECK(t->born, "page table");
	pthread_mutex_lock(&t->lock);
	rs = regs_load(t);
	if (reg_segment(rs, start, end, &seg_end) || seg_end != end) {
		err = -EBUSY;
		goto out;
	}
	nrs = regset_new((rs ? rs->n : 0) + 1);
	if (!nrs) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; rs && i < rs->n && rs->r[i].start < start; i++)
		nrs->r[j++] = rs->r[i];
	nrs->r[j++] = (struct reg){start, end, flags};
	for (; rs && i < rs->n; i++)
		nrs->r[j++] = rs->r[i];
	nrs->n = j;
	regs_publish(t, nrs);
out:
	pthread_mutex_unlock(&t->lock);
	return err;
}

int ps_pgtable_unregister(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	const struct regset *rs;
	struct regset *nrs;
	uint64_t end = start + len;
	struct op op = {0};
	size_t hits = 0;
	int err = 0;

	if (bad_range(start, len))
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	pthread_mutex_lock(&t->lock);
	rs = regs_load(t);
	nrs = regset_new((rs ? rs->n : 0) + 1); /* one may split in two */
	if (!nrs) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; rs && i < rs->n; i++) {
		struct reg r = rs->r[i];

		if (r.end <= start || r.start >= end) {
			nrs->r[nrs->n++] = r;
			continue;
		}
		hits++;
		if (r.start < start)
			nrs->r[nrs->n++] = (struct reg){r.start, start,
							r.flags};
		if (r.end > end)
			nrs->r[nrs->n++] = (struct reg){end, r.end, r.flags};
	}
	if (!hits) {
		free(nrs);
		err = -ENOENT;
		goto out;
	}
	regs_publish(t, nrs);
	ps__rcu_synchronize(); /* G6: zaps that saw the old set are done */
	err = update_range(t, nrs, start, end, tr_unprotect, &op, false);
out:
	pthread_mutex_unlock(&t->lock);
	return err;
}

int ps_pgtable_registration(const struct ps_pgtable *t, uint64_t addr,
			    unsigned int *flags)
{
	const struct reg *r;
	int err = -ENOENT;

	if (bad_addr(addr))
		return -EINVAL;
	/* G1: the set is freed through call_rcu when it is replaced. */
	ps__rcu_read_lock();
	r = reg_find_page(regs_load(t), addr);
	if (r) {
		*flags = r->flags;
		err = 0;
	}
	ps__rcu_read_unlock();
	return err;
}

/*
 * protect and unprotect: the range must be registered (G5: under t->lock).
 * Bounded work: a range is changed 1 GiB at a time (aligned, so no leaf
 * crosses a boundary), and t->lock and the read-side section are let go
 * between chunks, so that neither registrations, wp maps nor a grace period
 * wait for terabytes. The registrations are checked for the whole range
 * first (an error then changes nothing), and again for the rest after each
 * gap: if a concurrent unregister (or re-register) changed them, the call
 * stops with the prefix done.
 */
#define WP_CHUNK (UINT64_C(1) << 30)

static int wp_range(struct ps_pgtable *t, uint64_t start, uint64_t len,
		    bool protect)
{
	const uint64_t end = start + len;
	struct op op = {0};
	int err = 0;

	if (bad_range(start, len))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	ps__rcu_read_lock();
	for (uint64_t a = start, b; !err && a < end; a = b) {
		b = (a | (WP_CHUNK - 1)) + 1;
		if (b > end)
			b = end;
		if (a != start) {
			ps__rcu_read_unlock();
			pthread_mutex_unlock(&t->lock);
			WP_CHUNK_WINDOW(a);
			pthread_mutex_lock(&t->lock);
			ps__rcu_read_lock();
		}
		if (!reg_covers(regs_load(t), a, end, 0))
			err = -ENOENT;
		else if (ps__pgtable_cuts_whole(t, regs_load(t), a, end))
			err = -EINVAL; /* part of a leaf tracked whole */
		else if (protect)
			err = update_range(t, regs_load(t), a, b, tr_protect,
					   &op, true);
		else
			err = update_range(t, regs_load(t), a, b, tr_unprotect,
					   &op, false);
	}
	ps__rcu_read_unlock();
	pthread_mutex_unlock(&t->lock);
	return err;
}

int ps_pgtable_protect(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	PS__FORK_CHECK(t->born, "page table");
	return wp_range(t, start, len, true);
}

int ps_pgtable_unprotect(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	PS__FORK_CHECK(t->born, "page table");
	return wp_range(t, start, len, false);
}

int ps_pgtable_zap(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   unsigned int flags, ps_pgtable_visit_fn visit, void *ctx)
{
	struct op op = {.flags = flags & PS_ZAP_UNMAP,
			.visit = visit,
			.ctx = ctx,
			.units = flags & PS_ZAP_UNITS};
	int err;

	if (bad_range(start, len) || (flags & ~(PS_ZAP_UNMAP | PS_ZAP_UNITS)))
		return -EINVAL;
	ps__rcu_read_lock();
	err = update_range(t, regs_load(t), start, start + len, tr_zap, &op,
			   false);
	ps__rcu_read_unlock();
	return err;
}

/*
 * Install @n at page @addr of @t, which must hold *cur (none at first):
 * the target half of copy and move. -EEXIST if someone else stored there.
 */
static int install(struct ps_pgtable *t, uint64_t addr, ps_pte_t *cur,
		   ps_pte_t n)
{
	uint64_t p = addr >> PAGE_SHIFT;
	struct leaf *l;
	ps_pte_t seen = *cur;

	if (n == seen)
		return 0;
	l = leaf_alloc(t, p >> LEVEL_BITS);
	if (!l)
		return -ENOMEM;
	if (!entry_cas(l, p & LEVEL_MASK, &seen, n))
		return -EEXIST;
	*cur = n;
	return 0;
}

/*
 * Common checks of copy and move: a registered target for PS_KEEP_WP, a
 * vacant target. Called inside a read-side section, with @t's writer mutex
 * held for PS_KEEP_WP (copy_move_begin()).
 */
static int target_ready(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int flags)
{
	if ((flags & PS_KEEP_WP) &&
	    !reg_covers(regs_load(t), start, start + len, 0))
		return -ENOENT;
	return range_vacant(t, start, start + len, false) ? 0 : -EEXIST;
}

/*
 * Enter copy or move: the writer mutex (PS_KEEP_WP: the target's
 * registrations must not change meanwhile), then the read-side section.
 * Always in this order, as map and scan do: unregister holds the mutex
 * while it waits for readers, so a reader must never wait for the mutex.
 */
static void copy_move_begin(struct ps_pgtable *t, unsigned int flags)
{
	if (flags & PS_KEEP_WP)
		pthread_mutex_lock(&t->lock);
	ps__rcu_read_lock();
}

static void copy_move_end(struct ps_pgtable *t, unsigned int flags)
{
	ps__rcu_read_unlock();
	if (flags & PS_KEEP_WP)
		pthread_mutex_unlock(&t->lock);
}

int ps_pgtable_copy(struct ps_pgtable *dst, const struct ps_pgtable *src,
		    uint64_t start, uint64_t len, unsigned int flags,
		    ps_pgtable_visit_fn visit, void *ctx)
{
	struct op op = {.flags = flags};
	uint64_t p, pend = (start + len) >> PAGE_SHIFT;
	struct leaf *l;
	struct hit h;
	int err;

	if (bad_range(start, len) || dst == src || (flags & ~PS_KEEP_WP))
		return -EINVAL;
	PS__FORK_CHECK(dst->born, "page table");
	copy_move_begin(dst, flags);
	err = target_ready(dst, start, len, flags);
	for (p = start >> PAGE_SHIFT;
	     !err && ((l = leaf_next(src, &p, pend, &h)) || h.v); p++) {
		/* A huge source leaf is copied as its 4 KiB views (H1). */
		ps_pte_t e = l ? entry_load(l, p & LEVEL_MASK)
			       : hit_view(&h, p),
			 n, cur = PS_PTE_NONE;

		n = tr_copy(e, &op, p << PAGE_SHIFT);
		if (n == PS_PTE_NONE)
			continue;
		err = install(dst, p << PAGE_SHIFT, &cur, n);
		if (!err && visit)
			visit(ctx, p << PAGE_SHIFT, e, n);
	}
	copy_move_end(dst, flags);
	return err;
}

int ps_pgtable_move(struct ps_pgtable *t, uint64_t from, uint64_t to,
		    uint64_t len, unsigned int flags)
{
	struct op op = {.flags = flags};
	uint64_t p, pend = (from + len) >> PAGE_SHIFT;
	struct leaf *l;
	struct hit h;
	int err;

	if (bad_range(from, len) || bad_range(to, len) ||
	    (from < to + len && to < from + len) || (flags & ~PS_KEEP_WP))
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	copy_move_begin(t, flags);
	err = target_ready(t, to, len, flags);
	for (p = from >> PAGE_SHIFT;
	     !err && ((l = leaf_next(t, &p, pend, &h)) || h.v); p++) {
		uint64_t dst = (p << PAGE_SHIFT) - from + to;

		if (!l || h.frozen) {
			/* The source changes: split it, thaw it (H1, H4). */
			l = leaf_alloc(t, p >> LEVEL_BITS);
			if (!l) {
				err = -ENOMEM;
				break;
			}
		}
		ps_pte_t e = entry_load(l, p & LEVEL_MASK), cur = PS_PTE_NONE;

		/*
		 * Target first, then the source; a fault that changes the
		 * source meanwhile fails our CAS and is carried over.
		 */
		while (!err && e != PS_PTE_NONE) {
			err = install(t, dst, &cur,
				      tr_copy(e, &op, p << PAGE_SHIFT));
			if (!err &&
			    entry_cas(l, p & LEVEL_MASK, &e, PS_PTE_NONE))
				break;
		}
		if (!err && e == PS_PTE_NONE)
			err = install(t, dst, &cur, PS_PTE_NONE); /* zapped */
	}
	copy_move_end(t, flags);
	return err;
}

static bool leaf_empty(const struct leaf *l)
{
	for (unsigned int i = 0; i < FANOUT; i++)
		if (entry_load(l, i) != PS_PTE_NONE)
			return false;
	return true;
}

static bool node_empty(const struct node *n)
{
	for (unsigned int i = 0; i < FANOUT; i++)
		if (slot_load(&n->slot[i])) /* a level or a huge leaf */
			return false;
	return true;
}

/* Unlink the child in @slot (t->lock held) and free it after readers. */
static void unlink_child(struct ps_pgtable *t, _Atomic(void *) *slot, bool leaf)
{
	/* Relaxed: only the holder of t->lock unlinks. */
	void *c = (void *)((uintptr_t)atomic_load_explicit(
				   slot, memory_order_relaxed) &
			   ~ROOT_HUGE); /* a root slot's bit (pgtable.h) */

	/* Relaxed: publishes nothing; readers holding c keep it (G1). */
	atomic_store_explicit(slot, NULL, memory_order_relaxed);
	level_forget(t, leaf);
	if (leaf)
		ps__rcu_call(&((struct leaf *)c)->rcu, leaf_free_rcu);
	else
		ps__rcu_call(&((struct node *)c)->rcu, node_free_rcu);
}

int ps_pgtable_trim(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	/* Leaf numbers wholly inside the range: [L0, L1). */
	uint64_t p0 = start >> PAGE_SHIFT, p1 = (start + len) >> PAGE_SHIFT;
	uint64_t L0 = (p0 + LEVEL_MASK) >> LEVEL_BITS, L1 = p1 >> LEVEL_BITS;

	if (bad_range(start, len))
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	pthread_mutex_lock(&t->lock);
	for (uint64_t L = L0; L < L1;) {
		uint64_t m = L >> MID_SHIFT, mid_end = (m + 1) << MID_SHIFT;
		struct node *mid = root_child(t, m);

		if (!mid) {
			L = mid_end;
			continue;
		}
		while (L < L1 && L < mid_end) {
			uint64_t lo = (L >> LOW_SHIFT) & LEVEL_MASK;
			uint64_t low_first = L & ~(uint64_t)LEVEL_MASK;
			uint64_t low_end = low_first + FANOUT;
			struct node *low = child(mid, lo);

			for (; low && L < L1 && L < low_end; L++) {
				struct leaf *l = child(low, L & LEVEL_MASK);

				if (l && leaf_empty(l))
					unlink_child(t,
						     &low->slot[L & LEVEL_MASK],
						     true);
			}
			if (low && low_first >= L0 && low_end <= L1 &&
			    node_empty(low))
				unlink_child(t, &mid->slot[lo], false);
			L = low_end < L1 ? low_end : L1;
		}
		if ((m << MID_SHIFT) >= L0 && mid_end <= L1 && node_empty(mid))
			unlink_child(t, &t->root.slot[m], false);
		L = mid_end;
	}
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* --- faults --------------------------------------------------------------- */

/*
 * fault_judge() - what a fault with @access finds in entry @e of page @addr
 * (the fault table of pagestate/pgtable.h), and *@n, the entry it leaves
 * (@e where nothing changes). *@reg receives the page's registration when
 * @e is write-protected (NULL: unregistered, or @e not protected).
 */
static PS_ALWAYS_INLINE enum ps_fault
fault_judge(const struct ps_pgtable *t, uint64_t addr, unsigned int access,
	    ps_pte_t e, ps_pte_t *n, const struct reg **reg)
{
	unsigned int m = ps_pte_marker_bits(e);
	enum ps_fault r = PS_FAULT_OK;

	*reg = NULL;
	if (ps_pte_uffd_wp(e))
		*reg = reg_find_page(regs_load(t), addr);
	*n = e;
	if (e == PS_PTE_NONE || ps_pte_is_swap(e) ||
	    m == PS_PTE_MARKER_WRITTEN) {
		r = PS_FAULT_MISSING; /* WRITTEN: a none page */
	} else if (m & PS_PTE_MARKER_POISONED) {
		r = PS_FAULT_POISONED;
	} else if (m & PS_PTE_MARKER_GUARD) {
		r = PS_FAULT_GUARD;
	} else if (m) {
		r = PS_FAULT_MISSING; /* UFFD_WP: stays, unless stale */
		if (!*reg)
			*n = ps_pte_clear_uffd_wp(e); /* G9 */
	} else if (!(access & PS_ACCESS_WRITE)) {
		*n = e | PS_PTE_ACCESSED;
	} else if (!(e & PS_PTE_MAYWRITE)) {
		r = PS_FAULT_BAD_ACCESS;
	} else if (*reg && !((*reg)->flags & PS_WP_ASYNC) &&
		   !(access & PS_ACCESS_RESOLVE_WP)) {
		r = PS_FAULT_WP;
	} else {
		*n = ps_pte_resolve_write(e); /* one CAS: -wp, +W D A */
	}
	return r;
}

/*
 * May a fault clear the protection of the whole huge leaf of @h, for a
 * page registered @reg (NULL: not registered, the bit is stale)? Only if
 * the leaf is tracked whole: one registration with PS_WP_HUGE_WHOLE covers
 * it, or no registration meets it (stale everywhere, G9).
 */
static bool wp_whole(const struct ps_pgtable *t, const struct reg *reg,
		     const struct hit *h)
{
	const uint64_t a0 = h->p0 << PAGE_SHIFT;
	const uint64_t a1 = (h->p0 + (UINT64_C(1) << h->order)) << PAGE_SHIFT;
	uint64_t seg_end;

	if (reg)
		return (reg->flags & PS_WP_HUGE_WHOLE) && reg->start <= a0 &&
		       reg->end >= a1;
	return !reg_segment(regs_load(t), a0, a1, &seg_end) && seg_end == a1;
}

/*
 * The fault of a page under a huge leaf or a frozen level (H2, H4): in the
 * caller's section, walking again after every change it loses to. A write
 * that resolves the protection of a leaf in a range tracked 4 KiB at a
 * time (PS_WP_HUGE_SPLIT, or neither flag) splits it and resolves the page
 * only; every other change is made to the whole leaf, by one CAS of its
 * slot from the value judged.
 */
static PS_COLD enum ps_fault fault_slow(struct ps_pgtable *t, uint64_t addr,
					unsigned int access, ps_pte_t *pte)
{
	const uint64_t p = addr >> PAGE_SHIFT;
	enum ps_fault r;
	ps_pte_t e, n;

	for (;;) {
		const struct reg *reg;
		struct hit h;
		struct leaf *l = leaf_lookup(t, p >> LEVEL_BITS, &h);
		uintptr_t cur = h.v;
		bool nomem = false;

		e = l	  ? entry_load(l, p & LEVEL_MASK)
		    : h.v ? hit_view(&h, p)
			  : PS_PTE_NONE;
		r = fault_judge(t, addr, access, e, &n, &reg);
		if (access & PS_ACCESS_CHECK) {
			n = e; /* classified: nothing changes */
			break;
		}
		if (n == e)
			break;
		if (h.frozen) {
			ps__pgtable_thaw(h.frozen, slot_load(h.frozen));
			continue;
		}
		if (l) {
			if (entry_cas(l, p & LEVEL_MASK, &e, n))
				break;
			continue;
		}
		if (ps_pte_uffd_wp(e) && !ps_pte_uffd_wp(n) &&
		    !wp_whole(t, reg, &h)) {
			/* THP-like: split, then resolve the page alone. */
			if (ps__pgtable_split_slot(t, h.slot, &cur, h.order,
						   &nomem) ||
			    !nomem)
				continue;
			/* No memory to split: resolve it whole, lose none. */
		}
		(void)fault_judge(t, h.p0 << PAGE_SHIFT, access, (ps_pte_t)h.v,
				  &n, &reg);
		/*
		 * Seq_cst: an entry CAS (G2) on the slot, from the leaf
		 * judged; release to acquiring readers. Huge leaves need no
		 * written hint (every scan reads them whole).
		 */
		if (atomic_compare_exchange_strong_explicit(
			    h.slot, (void **)&cur, (void *)(uintptr_t)n,
			    memory_order_seq_cst, memory_order_acquire)) {
			h.v = (uintptr_t)n;
			n = n ? hit_view(&h, p) : PS_PTE_NONE;
			break;
		}
	}
	if (pte)
		*pte = n;
	return r;
}

/*
 * The fault, in its own read-side section (@own) or in the caller's
 * (ps_pgtable_fault_locked()): the one body of every fault entry point.
 */
static PS_ALWAYS_INLINE enum ps_fault fault(struct ps_pgtable *t, uint64_t addr,
					    unsigned int access, ps_pte_t *pte,
					    bool own)
{
	const unsigned int known = PS_ACCESS_READ | PS_ACCESS_WRITE |
				   PS_ACCESS_RESOLVE_WP | PS_ACCESS_CHECK;
	uint64_t p = addr >> PAGE_SHIFT;
	enum ps_fault r;
	struct leaf *l;
	struct hit h;
	ps_pte_t e = PS_PTE_NONE, n;

	if (bad_addr(addr) || (access & ~known) ||
	    !(access & (PS_ACCESS_READ | PS_ACCESS_WRITE)))
		return PS_FAULT_INVALID;
	if (own)
		ps__rcu_read_lock();
	l = leaf_lookup(t, p >> LEVEL_BITS, &h);
	if (PS_UNLIKELY(h.v || h.frozen)) {
		r = fault_slow(t, addr, access, pte);
		if (own)
			ps__rcu_read_unlock();
		return r;
	}
	if (l)
		e = entry_load(l, p & LEVEL_MASK);
	FAULT_WINDOW();
	for (;;) {
		const struct reg *reg;

		r = fault_judge(t, addr, access, e, &n, &reg);
		if (access & PS_ACCESS_CHECK) {
			n = e; /* classified: nothing changes */
			break;
		}
		if (n == e || entry_cas(l, p & LEVEL_MASK, &e, n))
			break;
	}
	if (own)
		ps__rcu_read_unlock();
	if (pte)
		*pte = n;
	return r;
}

enum ps_fault ps_pgtable_fault_pte(struct ps_pgtable *t, uint64_t addr,
				   unsigned int access, ps_pte_t *pte)
{
	return fault(t, addr, access, pte, true);
}

enum ps_fault ps_pgtable_fault_locked(struct ps_pgtable *t, uint64_t addr,
				      unsigned int access, ps_pte_t *pte)
{
	return fault(t, addr, access, pte, false);
}

enum ps_fault ps_pgtable_fault(struct ps_pgtable *t, uint64_t addr,
			       unsigned int access)
{
	return fault(t, addr, access, NULL, true);
}
