// SPDX-License-Identifier: MIT
/*
 * lib/pgtable-huge.c - the page table's huge leaves (pagestate/pgtable.h,
 * "Huge leaves"): mapping them, splitting them into a complete child, and
 * collapsing a uniform child back into one.
 *
 * A huge leaf is a pte.h entry stored in the slot of a mid node (order 18,
 * 1 GiB) or of a low node (order 9, 2 MiB) instead of a pointer to the level
 * below (lib/pgtable-internal.h, "Slots"). The rest of the table meets them
 * in its walks: readers derive the 4 KiB view, update_range() changes a
 * whole leaf by one CAS or splits it, faults do either (lib/pgtable.c,
 * fault_slow()), scans report and re-arm them (lib/pgtable-scan.c).
 *
 * ---------------------------------------------------------------------------
 * Guarantees (with G1..G9 of lib/pgtable.c; the tests cite them as H1..H4)
 * ---------------------------------------------------------------------------
 *
 * H1  A split is one CAS. The child is built privately from the value v loaded
 *     from the slot, entry i holding ps_pte_huge_subpage(v, i), then published
 *     by a CAS from v (release). A reader acquires either v, and derives the
 *     same views, or the child, complete. A change to the leaf between the load
 *     and the CAS (a fault's A/D/W, a whole-leaf protect) fails the CAS: the
 *     child is freed unseen and rebuilt from the new value, so no bit is lost.
 *     Retries happen only when another thread's CAS succeeded (lock-free).
 * H2  Whole-leaf changes are one CAS of the slot from the value judged, the
 *     same transition as for each page; a partial change splits first and
 *     then changes entries as G2 says. A leaf written from not written
 *     needs no hint bit (G8): every scan reads every huge leaf.
 * H3  A child built from a written leaf has every line of its hint set
 *     before it is published, so G8 holds for its entries from the start.
 * H4  A collapse never loses a change. Under t->lock it reads the child,
 *     checks it is uniform, and freezes the slot (CAS child -> child | 10b).
 *     Readers descend into a frozen level as before. A writer that reaches
 *     it thaws it first (CAS back to the child), and only then changes an
 *     entry; ps_pgtable_lookup_leaf() returns NULL for it, so cursor writers
 *     go through the out-of-line paths, which thaw. The collapse then waits
 *     for a grace period: every walk that reached the child before the
 *     freeze has ended, and no writer can reach it since without thawing.
 *     It reads the child again: if an entry differs from the first read
 *     (a write that walked in before the freeze), it thaws and refuses;
 *     else it CASes the frozen value to the huge leaf, which fails if a
 *     writer thawed meanwhile. Once the CAS succeeds nobody can write the
 *     child: it is freed after another grace period (readers that descended
 *     through the frozen value may still read it).
 *
 * Rationale and the proof sketch: docs/pgtable.md, "Huge leaves".
 */
#include "pgtable-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

int ps__pgtable_huge_enable(struct ps_pgtable *t, uint64_t start, uint64_t end)
{
	const unsigned int shift = PAGE_SHIFT + MID_SHIFT + LEVEL_BITS;
	bool changed = false;

	for (uint64_t r = start >> shift; r <= (end - 1) >> shift; r++) {
		_Atomic(void *) *slot = &t->root.slot[r];
		bool nomem = false;
		uintptr_t v;

		if (!ps__pgtable_level_get(t, slot, 0, false, true, &nomem))
			return -ENOMEM;
		v = slot_load(slot);
		if (v & ROOT_HUGE)
			continue;
		/*
		 * Relaxed: the grace period below orders it. Only the holder
		 * of t->lock changes a root slot that holds a level.
		 */
		atomic_store_explicit(slot, (void *)(v | ROOT_HUGE),
				      memory_order_relaxed);
		changed = true;
	}
	/*
	 * Every read-side section that read a slot without the bit (and so
	 * walks plain) ends before this returns; every later one reads it (a
	 * grace period's guarantee) before any huge slot exists below.
	 */
	if (changed)
		ps__rcu_synchronize();
	return 0;
}

/* --- split ---------------------------------------------------------------- */

void *ps__pgtable_split_slot(struct ps_pgtable *t, _Atomic(void *) *slot,
			     uintptr_t *v, unsigned int order, bool *nomem)
{
	const ps_pte_t h = (ps_pte_t)*v;
	void *c;

	if (order == ORDER_LOW) {
		struct leaf *l = ps__pgtable_level_new_raw(t, true);

		if (!l) {
			*nomem = true;
			return NULL;
		}
		/* Relaxed: private until the release CAS below (H1). */
		for (unsigned int i = 0; i < FANOUT; i++)
			atomic_store_explicit(&l->e[i],
					      ps_pte_huge_subpage(h, order, i),
					      memory_order_relaxed);
		/* Relaxed: private until the CAS below (H3). */
		atomic_store_explicit(&l->hint,
				      ps_pte_written(h) ? ~UINT64_C(0) : 0,
				      memory_order_relaxed);
		c = l;
	} else {
		struct node *n = ps__pgtable_level_new_raw(t, false);

		if (!n) {
			*nomem = true;
			return NULL;
		}
		/* Relaxed: private until the release CAS below (H1). */
		for (unsigned int i = 0; i < FANOUT; i++)
			atomic_store_explicit(
				&n->slot[i],
				(void *)(uintptr_t)ps_pte_huge_subpage(
					h, order, (uint64_t)i << LEVEL_BITS),
				memory_order_relaxed);
		n->depth = 1;
		c = n;
	}
	/*
	 * Seq_cst on success: an entry CAS (G2) for the pages it stands for,
	 * and the release that publishes the child (H1). Acquire on failure:
	 * the new value is judged as any load.
	 */
	if (atomic_compare_exchange_strong_explicit(slot, (void **)v, c,
						    memory_order_seq_cst,
						    memory_order_acquire))
		return c;
	ps__pgtable_level_forget(t, order == ORDER_LOW);
	free(c); /* never published */
	return NULL;
}

void ps__pgtable_thaw(_Atomic(void *) *slot, uintptr_t v)
{
	void *expected = (void *)v;

	if (!slot_frozen(v))
		return;
	/*
	 * Seq_cst: H4's writer side, before the writer's entry CAS (seq_cst
	 * too), against the collapse's CAS from the frozen value. Failure: the
	 * collapse finished or another writer thawed; the caller walks again.
	 */
	(void)atomic_compare_exchange_strong_explicit(
		slot, &expected, (void *)(v & ~(uintptr_t)3),
		memory_order_seq_cst, memory_order_relaxed);
}

int ps_pgtable_split(struct ps_pgtable *t, uint64_t start, uint64_t len)
{
	const uint64_t pend = (start + len) >> PAGE_SHIFT;
	const uint64_t Lend = ((pend - 1) >> LEVEL_BITS) + 1;
	uint64_t L;
	int err = 0;

	if (bad_range(start, len))
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	ps__rcu_read_lock();
	L = (start >> PAGE_SHIFT) >> LEVEL_BITS;
	while (L < Lend) {
		struct hit h;
		struct leaf *l = leaf_find(t, &L, Lend, &h);
		uintptr_t cur = h.v;
		bool nomem = false;

		if (h.frozen) { /* H4: a writer thaws */
			ps__pgtable_thaw(h.frozen, slot_load(h.frozen));
			continue;
		}
		if (h.v) {
			/* A 1 GiB leaf becomes 2 MiB ones: found next time. */
			if (!ps__pgtable_split_slot(t, h.slot, &cur, h.order,
						    &nomem) &&
			    nomem) {
				err = -ENOMEM;
				break;
			}
			continue;
		}
		if (!l)
			break;
		L++;
	}
	ps__rcu_read_unlock();
	return err;
}

/* --- whole-tracked leaves ------------------------------------------------- */

/* Does page @a lie inside (not at the start of) a huge leaf tracked whole? */
static bool cuts_at(const struct ps_pgtable *t, const struct regset *rs,
		    uint64_t a)
{
	const struct reg *r;
	struct hit h;

	if (a >= PS_PGTABLE_ADDR_END)
		return false;
	(void)leaf_lookup(t, (a >> PAGE_SHIFT) >> LEVEL_BITS, &h);
	if (!h.v || h.p0 == a >> PAGE_SHIFT)
		return false;
	r = reg_find_page(rs, a);
	return r && (r->flags & PS_WP_HUGE_WHOLE);
}

bool ps__pgtable_cuts_whole(const struct ps_pgtable *t, const struct regset *rs,
			    uint64_t start, uint64_t end)
{
	return cuts_at(t, rs, start) || cuts_at(t, rs, end);
}

/* --- map ------------------------------------------------------------------ */

/* Does level @c (a leaf if @leaf) hold a UFFD_WP marker anywhere? */
static bool level_has_wp(const void *c, bool leaf)
{
	if (leaf) {
		for (unsigned int i = 0; i < FANOUT; i++)
			if (ps_pte_uffd_wp(entry_load(c, i)))
				return true;
		return false;
	}
	for (unsigned int i = 0; i < FANOUT; i++) {
		uintptr_t v = slot_load(&((const struct node *)c)->slot[i]);

		if (slot_huge(v)
			    ? ps_pte_uffd_wp((ps_pte_t)v)
			    : slot_level(v) && level_has_wp((void *)v, true))
			return true;
	}
	return false;
}

/* The slot of the extent of @order holding page @p; NULL if out of memory. */
static _Atomic(void *) *extent_slot(struct ps_pgtable *t, uint64_t p,
				    unsigned int order)
{
	bool nomem = false;
	struct node *mid, *low;

	mid = ps__pgtable_level_get(
		t, &t->root.slot[p >> (MID_SHIFT + LEVEL_BITS)], 0, false, true,
		&nomem);
	mid = (struct node *)((uintptr_t)mid & ~ROOT_HUGE);
	if (!mid)
		return NULL;
	if (order == ORDER_MID)
		return &mid->slot[(p >> (LOW_SHIFT + LEVEL_BITS)) & LEVEL_MASK];
	low = ps__pgtable_level_get(
		t, &mid->slot[(p >> (LOW_SHIFT + LEVEL_BITS)) & LEVEL_MASK],
		ORDER_MID, false, true, &nomem);
	if (!low)
		return NULL;
	return &low->slot[(p >> LEVEL_BITS) & LEVEL_MASK];
}

int ps_pgtable_map_huge(struct ps_pgtable *t, uint64_t start, uint64_t len,
			uint64_t frame, uint64_t flags, unsigned int order,
			uint64_t *where)
{
	const uint64_t npages = UINT64_C(1) << order;
	const uint64_t ext = npages << PAGE_SHIFT;
	uint64_t bad = start;
	int err = 0;

	if ((order != PS_PGTABLE_ORDER_2M && order != PS_PGTABLE_ORDER_1G) ||
	    bad_range(start, len) || ((start | len) & (ext - 1)) ||
	    (flags & ~PS_PTE_PRESENT_FLAGS))
		goto inval;
	if ((frame & (npages - 1)) || frame > PS_PTE_FRAME_MAX ||
	    (len >> PAGE_SHIFT) - 1 > PS_PTE_FRAME_MAX - frame)
		goto inval;
	PS__FORK_CHECK(t->born, "page table");
	pthread_mutex_lock(&t->lock);
	if (ps__pgtable_huge_enable(t, start, start + len)) {
		pthread_mutex_unlock(&t->lock);
		if (where)
			*where = start;
		return -ENOMEM;
	}
	ps__rcu_read_lock();
	if (flags & PS_PTE_UFFD_WP) {
		const struct regset *rs = regs_load(t);

		for (uint64_t a = start; a < start + len;) {
			uint64_t seg_end;

			if (!reg_segment(rs, a, start + len, &seg_end)) {
				bad = a;
				err = -ENOENT;
				break;
			}
			a = seg_end;
		}
	}
	if (!err) {
		bad = ps__pgtable_occupied(t, start, start + len, true);
		if (bad != start + len)
			err = -EEXIST;
	}
	/* Levels first: then no install can fail (nothing installed). */
	for (uint64_t a = start; !err && a < start + len; a += ext)
		if (!extent_slot(t, a >> PAGE_SHIFT, order)) {
			bad = start;
			err = -ENOMEM;
		}
	for (uint64_t a = start; !err && a < start + len; a += ext) {
		_Atomic(void *) *slot = extent_slot(t, a >> PAGE_SHIFT, order);
		uintptr_t v = slot_load(slot);
		const uint64_t f = frame + ((a - start) >> PAGE_SHIFT);

		for (;;) {
			uint64_t wp = 0;
			ps_pte_t n;

			/* Protection is never dropped (a UFFD_WP marker). */
			if (slot_huge(v)
				    ? ps_pte_uffd_wp((ps_pte_t)v)
				    : slot_level(v) &&
					      level_has_wp((void *)v,
							   order == ORDER_LOW))
				wp = PS_PTE_UFFD_WP;
			n = ps_pte_mk_huge(f, flags | wp, order);
			/*
			 * Seq_cst: the leaf's install is an entry CAS (G2),
			 * releasing the frames' contents to acquiring
			 * readers. Acquire on failure: judged again (a fault
			 * cleared a stale marker, a zap removed one).
			 */
			if (atomic_compare_exchange_strong_explicit(
				    slot, (void **)&v, (void *)(uintptr_t)n,
				    memory_order_seq_cst, memory_order_acquire))
				break;
		}
		if (slot_level(v)) /* vacant levels: freed after readers */
			ps__pgtable_level_free_rcu(t, (void *)v,
						   order == ORDER_LOW);
	}
	ps__rcu_read_unlock();
	pthread_mutex_unlock(&t->lock);
	if (err && where)
		*where = bad;
	return err;
inval:
	if (where)
		*where = (frame & (npages - 1)) ? start : bad;
	return -EINVAL;
}

/* --- collapse ------------------------------------------------------------- */

/*
 * Judge the 512 parts @part of an extent of @order (the 4 KiB entries of a
 * leaf, or the 2 MiB leaves of a node): the huge leaf they make, or 0 with
 * *reason and *at (the part's index) set. All none gives PS_PTE_NONE with
 * PS_PGTABLE_COLLAPSE_OK: nothing to collapse.
 */
static ps_pte_t judge(const ps_pte_t *part, unsigned int order,
		      enum ps_pgtable_collapse_reason *reason, unsigned int *at)
{
	const unsigned int sub = order - LEVEL_BITS; /* a part's order */
	const uint64_t loose = PS_PTE_ACCESSED | PS_PTE_WRITE;
	ps_pte_t first = part[0], acc = 0, wr = PS_PTE_WRITE, h;

	*reason = PS_PGTABLE_COLLAPSE_OK;
	*at = 0;
	if (first == PS_PTE_NONE) {
		for (unsigned int i = 1; i < FANOUT; i++)
			if (part[i] != PS_PTE_NONE) {
				*reason = PS_PGTABLE_COLLAPSE_FORM;
				*at = i;
				return 0;
			}
		return PS_PTE_NONE;
	}
	if (!ps_pte_huge_valid(first, order)) {
		*reason = ps_pte_is_present(first) ? PS_PGTABLE_COLLAPSE_FRAME
						   : PS_PGTABLE_COLLAPSE_FORM;
		return 0;
	}
	for (unsigned int i = 0; i < FANOUT; i++) {
		ps_pte_t e = part[i];
		ps_pte_t want = ps_pte_huge_subpage(first, order,
						    (uint64_t)i << sub);
		ps_pte_t diff = e ^ want;

		*at = i;
		if (sub && !(ps_pte_huge_valid(e, sub)))
			*reason = PS_PGTABLE_COLLAPSE_FORM;
		else if (diff & PS_PTE_TYPE_MASK)
			*reason = PS_PGTABLE_COLLAPSE_FORM;
		else if (ps_pte_is_marker(e) && diff)
			*reason = PS_PGTABLE_COLLAPSE_FORM;
		else if (!(diff &= ~loose))
			; /* the same but A and W */
		else if (diff & PS_PTE_FRAME_MASK)
			*reason = PS_PGTABLE_COLLAPSE_FRAME;
		else if (diff & PS_PTE_UFFD_WP)
			*reason = PS_PGTABLE_COLLAPSE_WP;
		else if (diff & PS_PTE_DIRTY)
			*reason = PS_PGTABLE_COLLAPSE_DIRTY;
		else if (diff)
			*reason = PS_PGTABLE_COLLAPSE_BITS;
		if (*reason)
			return 0;
		if (ps_pte_is_present(e)) {
			acc |= e & PS_PTE_ACCESSED;
			wr &= e & PS_PTE_WRITE;
		}
	}
	h = ps_pte_is_present(first) ? (first & ~loose) | acc | wr : first;
	*at = 0;
	return h;
}

/* The parts of level @c (a leaf if @leaf) into @part. */
static void read_parts(const void *c, bool leaf, ps_pte_t *part)
{
	for (unsigned int i = 0; i < FANOUT; i++)
		part[i] = leaf ? entry_load(c, i)
			       : (ps_pte_t)slot_load(
					 &((const struct node *)c)->slot[i]);
}

/*
 * Collapse the level in @slot (extent of @order from page @p0), under
 * t->lock (H4). Returns 0, or -EBUSY with @err filled.
 */
static int collapse_one(struct ps_pgtable *t, _Atomic(void *) *slot,
			uint64_t p0, unsigned int order,
			struct ps_pgtable_collapse_err *err)
{
	const bool leaf = order == ORDER_LOW;
	const unsigned int sub = order - LEVEL_BITS;
	ps_pte_t part[FANOUT], again[FANOUT], h;
	enum ps_pgtable_collapse_reason why;
	uintptr_t v = slot_load(slot), frozen;
	void *expected;
	unsigned int at;

	if (!slot_level(v))
		return 0; /* already a huge leaf, or nothing */
	read_parts((void *)v, leaf, part);
	h = judge(part, order, &why, &at);
	if (why) {
		err->addr = (p0 + ((uint64_t)at << sub)) << PAGE_SHIFT;
		err->reason = why;
		return -EBUSY;
	}
	if (h == PS_PTE_NONE)
		return 0; /* all none: trim's business */
	frozen = v | SLOT_FROZEN;
	expected = (void *)v;
	/*
	 * Seq_cst: H4's freeze, against a writer's thaw; nobody else stores
	 * a level's slot while t->lock is held, so it succeeds.
	 */
	if (!atomic_compare_exchange_strong_explicit(slot, &expected,
						     (void *)frozen,
						     memory_order_seq_cst,
						     memory_order_relaxed)) {
		err->addr = p0 << PAGE_SHIFT;
		err->reason = PS_PGTABLE_COLLAPSE_RACED;
		return -EBUSY;
	}
	ps__rcu_synchronize(); /* H4: every walk from before the freeze */
	read_parts((void *)v, leaf, again);
	for (at = 0; at < FANOUT; at++)
		if (again[at] != part[at])
			break;
	expected = (void *)frozen;
	if (at == FANOUT &&
	    /*
	     * Seq_cst: H4, from the frozen value (a writer's thaw fails it);
	     * releases the leaf to acquiring readers.
	     */
	    atomic_compare_exchange_strong_explicit(slot, &expected,
						    (void *)(uintptr_t)h,
						    memory_order_seq_cst,
						    memory_order_relaxed)) {
		ps__pgtable_level_free_rcu(t, (void *)v, leaf);
		return 0;
	}
	ps__pgtable_thaw(slot, frozen); /* no-op if a writer did */
	err->addr = (p0 + ((uint64_t)(at == FANOUT ? 0 : at) << sub))
		    << PAGE_SHIFT;
	err->reason = PS_PGTABLE_COLLAPSE_RACED;
	return -EBUSY;
}

int ps_pgtable_collapse(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int order, struct ps_pgtable_collapse_err *err)
{
	const uint64_t ext = (UINT64_C(1) << order) << PAGE_SHIFT;
	struct ps_pgtable_collapse_err mine;
	int rc = 0;

	if (!err)
		err = &mine;
	if ((order != PS_PGTABLE_ORDER_2M && order != PS_PGTABLE_ORDER_1G) ||
	    bad_range(start, len) || ((start | len) & (ext - 1)))
		return -EINVAL;
	PS__FORK_CHECK(t->born, "page table");
	err->addr = start + len;
	err->reason = PS_PGTABLE_COLLAPSE_OK;
	pthread_mutex_lock(&t->lock);
	for (uint64_t a = start; !rc && a < start + len; a += ext) {
		const uint64_t p = a >> PAGE_SHIFT;
		struct node *mid = root_child(t, p >> (MID_SHIFT + LEVEL_BITS));
		struct node *low;

		if (!mid)
			continue;
		/* Its mid node exists: this allocates nothing, cannot fail. */
		(void)ps__pgtable_huge_enable(t, a, a + ext);
		if (order == ORDER_MID) {
			rc = collapse_one(
				t,
				&mid->slot[(p >> (LOW_SHIFT + LEVEL_BITS)) &
					   LEVEL_MASK],
				p, order, err);
			continue;
		}
		low = child(mid, (p >> (LOW_SHIFT + LEVEL_BITS)) & LEVEL_MASK);
		if (low)
			rc = collapse_one(
				t, &low->slot[(p >> LEVEL_BITS) & LEVEL_MASK],
				p, order, err);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* --- whole-leaf compare-and-swap (H2) ------------------------------------- */

int ps_pgtable_cmpxchg_huge(struct ps_pgtable *t, uint64_t addr,
			    unsigned int order, ps_pte_t *expected,
			    ps_pte_t desired)
{
	const uint64_t p = addr >> PAGE_SHIFT;
	uintptr_t cur;
	struct hit h;
	int err = 0;

	if (bad_addr(addr) || (order != ORDER_LOW && order != ORDER_MID) ||
	    (p & ((UINT64_C(1) << order) - 1)) || !expected ||
	    !ps_pte_huge_valid(desired, order))
		return -EINVAL;
	ps__rcu_read_lock();
	(void)leaf_lookup(t, p >> LEVEL_BITS, &h);
	if (!h.v || h.order != order || h.p0 != p) {
		err = -ENOENT; /* a level, none, or a leaf of another order */
	} else if ((ps_pte_t)h.v != *expected) {
		*expected = (ps_pte_t)h.v;
		err = -EAGAIN;
	} else {
		cur = h.v;
		/*
		 * Seq_cst on success: an entry CAS (G2; H2: huge leaves need
		 * no hint bit), releasing @desired to acquiring readers;
		 * acquire on failure, as ps_pgtable_cmpxchg().
		 */
		if (!atomic_compare_exchange_strong_explicit(
			    h.slot, (void **)&cur, (void *)(uintptr_t)desired,
			    memory_order_seq_cst, memory_order_acquire)) {
			*expected = slot_huge(cur) ? (ps_pte_t)cur
						   : PS_PTE_NONE;
			err = slot_huge(cur) ? -EAGAIN : -ENOENT;
		}
	}
	ps__rcu_read_unlock();
	return err;
}
