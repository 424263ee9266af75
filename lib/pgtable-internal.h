/* SPDX-License-Identifier: MIT */
/*
 * lib/pgtable-internal.h - the page table's structure and the primitives its
 * two files share: lib/pgtable.c (levels, entries, registrations, range
 * operations, faults) and lib/pgtable-scan.c (ps_pgtable_scan() and the
 * harvest built on it). Not installed; not API.
 *
 * The rules are those at the top of lib/pgtable.c (G1..G9; G7, the scans'
 * own, at the top of lib/pgtable-scan.c): every entry changes only through
 * entry_cas(), every entry load of a walk that may be racing a writer goes
 * through entry_load(), and a writer that clears hint bits uses
 * hint_begin()/hint_end() (G8). Everything the scans call per entry or per
 * leaf is static inline here, so both files compile it into their loops as
 * before the split.
 */
#ifndef PS_LIB_PGTABLE_INTERNAL_H
#define PS_LIB_PGTABLE_INTERNAL_H

#include <pagestate/pgtable.h>

#include "fork.h"
#include "rcu.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PS_ALWAYS_INLINE inline __attribute__((always_inline))

#define PAGE_SHIFT PS_PGTABLE_PAGE_SHIFT
#define PAGE_SIZE PS_PGTABLE_PAGE_SIZE
#define LEVEL_BITS 9
#define FANOUT (1u << LEVEL_BITS)
#define LEVEL_MASK (FANOUT - 1)
#define LINE_ENTRIES 8 /* entries per hint bit: one 64-byte line */
#define NPAGES (PS_PGTABLE_ADDR_END >> PAGE_SHIFT)
#define MID_SHIFT (2 * LEVEL_BITS) /* leaf number -> root slot */
#define LOW_SHIFT LEVEL_BITS	   /* leaf number -> mid slot */

PS_STATIC_ASSERT(FANOUT / LINE_ENTRIES == 64, "one hint bit per line");
PS_STATIC_ASSERT(PS_PGTABLE_ADDR_BITS == PAGE_SHIFT + 4 * LEVEL_BITS,
		 "four levels of 512 cover the space");

struct leaf {
	_Alignas(64) _Atomic(ps_pte_t) e[FANOUT];
	_Atomic(uint64_t) hint; /* G8: bit k set => line k may hold written */
	struct ps__rcu_head rcu;
};

struct node {
	_Atomic(void *) slot[FANOUT];
	unsigned int depth; /* 1: its levels are leaves; 2: low nodes */
	struct ps__rcu_head rcu;
};

/* A registration: pages [start, end) with PS_WP_* flags. */
struct reg {
	uint64_t start, end;
	unsigned int flags;
};

struct regset {
	struct ps__rcu_head rcu;
	size_t n;
	struct reg r[]; /* sorted, disjoint */
};

struct ps_pgtable {
	struct node root;
	_Atomic(struct regset *) regs;
	pthread_mutex_t lock; /* range writers (see G5) */
	_Atomic(uint64_t) bytes, leaves, nodes;
	uint64_t born; /* fork generation at creation (lib/fork.h) */
};

/*
 * ps_pgtable_lookup() walks these structures inline in its callers through
 * the layout pagestate/pgtable.h declares (struct ps__pgtable_level and
 * struct ps__pgtable_leaf): that layout is ABI, and these must match it.
 */
PS_STATIC_ASSERT(PS__PGTABLE_LEVEL_BITS == LEVEL_BITS, "levels");
PS_STATIC_ASSERT(offsetof(struct ps_pgtable, root) == 0, "root first");
PS_STATIC_ASSERT(offsetof(struct node, slot) == 0 &&
			 sizeof(((struct node *)0)->slot) ==
				 sizeof(struct ps__pgtable_level),
		 "a node starts with the public level");
PS_STATIC_ASSERT(offsetof(struct leaf, e) == 0 &&
			 sizeof(((struct leaf *)0)->e) ==
				 sizeof(struct ps__pgtable_leaf),
		 "a leaf starts with the public entries");

/* Transitions return this to refuse an entry (never a valid entry). */
#define REFUSE UINT64_MAX
/* Added to a registration's flags in struct op: the page is registered. */
#define REG_ON 0x100u

static inline ps_pte_t marker_uffd_wp(void)
{
	return ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);
}

/* What a zap leaves of a written page in an async range (pte.h). */
static inline ps_pte_t marker_written(void)
{
	return ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN);
}

/*
 * Slots. A slot of a node holds 0 (an absent subtree), a level (a pointer:
 * bits 1-0 are 00), a huge leaf (bit 0 set: a pte.h entry, in the mid
 * nodes' slots of order 18, in the low nodes' of order 9; never in the
 * root's) or a level being collapsed (the pointer with bits 1-0 = 10,
 * "frozen": lib/pgtable-huge.c). Readers descend into a frozen level;
 * writers thaw it first (thaw()), which fails the collapse (H4).
 */
#define SLOT_FROZEN ((uintptr_t)2)
#define ORDER_MID PS_PTE_ORDER_1G /* huge leaves in a mid node's slots */
#define ORDER_LOW PS_PTE_ORDER_2M /* ... in a low node's */

static inline uintptr_t slot_load(const _Atomic(void *) *slot)
{
	/* Acquire: pairs with the release CAS that published the slot. */
	return (uintptr_t)atomic_load_explicit(slot, memory_order_acquire);
}

static inline bool slot_level(uintptr_t v)
{
	return !ps__pgtable_not_level(v);
}

static inline bool slot_huge(uintptr_t v)
{
	return v & 1;
}

static inline bool slot_frozen(uintptr_t v)
{
	return (v & 3) == SLOT_FROZEN;
}

/*
 * Root slots: a mid node's address, with ROOT_HUGE set once huge leaves or
 * frozen levels may exist below it (pagestate/pgtable.h; set by
 * ps__pgtable_huge_enable()). Never a huge leaf.
 */
#define ROOT_HUGE PS__PGTABLE_ROOT_HUGE

static inline struct node *root_child(const struct ps_pgtable *t, uint64_t i)
{
	return (struct node *)(slot_load(&t->root.slot[i]) & ~ROOT_HUGE);
}

/*
 * The level a slot leads a reader to (a frozen one included), or NULL for
 * none and a huge leaf (G1: inside a read-side section or under t->lock).
 * Not for root slots (root_child()).
 */
static inline void *child(const struct node *n, uint64_t i)
{
	uintptr_t v = slot_load(&n->slot[i]);

	if (slot_frozen(v))
		v &= ~(uintptr_t)3;
	return slot_level(v) ? (void *)v : NULL;
}

/*
 * What a walk found above a page that has no leaf: a huge leaf (@v, of
 * @order, over pages [@p0, @p0 + 2^@order), in @slot) or nothing (@v 0).
 * @frozen: a frozen slot the walk descended through (writers thaw it).
 */
struct hit {
	uintptr_t v;
	unsigned int order;
	uint64_t p0;
	_Atomic(void *) *slot;
	_Atomic(void *) *frozen;
};

static inline void hit_clear(struct hit *h)
{
	*h = (struct hit){0};
}

/* The view of page @p under the huge leaf of @h. */
static inline ps_pte_t hit_view(const struct hit *h, uint64_t p)
{
	return ps_pte_huge_subpage((ps_pte_t)h->v, h->order, p - h->p0);
}

/*
 * One step of a reader's walk: the level in @slot (@order: of a huge leaf
 * there; @first: the first page the slot covers), or NULL with @h telling
 * whether a huge leaf stands there.
 */
static inline void *walk_slot(_Atomic(void *) *slot, unsigned int order,
			      uint64_t first, struct hit *h)
{
	uintptr_t v = slot_load(slot);

	if (PS_LIKELY(slot_level(v)))
		return (void *)v;
	if (slot_frozen(v)) {
		h->frozen = slot;
		return (void *)(v & ~(uintptr_t)3);
	}
	if (slot_huge(v)) {
		h->v = v;
		h->order = order;
		h->p0 = first;
		h->slot = slot;
	}
	return NULL;
}

/* The leaf numbered @L, or NULL (then @h says if a huge leaf is there). */
static inline struct leaf *leaf_lookup(const struct ps_pgtable *t, uint64_t L,
				       struct hit *h)
{
	struct node *n;

	hit_clear(h);
	n = root_child(t, L >> MID_SHIFT);
	if (!n)
		return NULL;
	n = walk_slot(&n->slot[(L >> LOW_SHIFT) & LEVEL_MASK], ORDER_MID,
		      (L >> LOW_SHIFT) << (LOW_SHIFT + LEVEL_BITS), h);
	if (!n)
		return NULL;
	return walk_slot(&n->slot[L & LEVEL_MASK], ORDER_LOW, L << LEVEL_BITS,
			 h);
}

/*
 * The first existing leaf numbered in [*pL, Lend), skipping absent subtrees
 * whole; *pL receives its number. NULL if there is none, or if a huge leaf
 * comes first: then @h says so and *pL is the first leaf number it covers
 * at or after the one asked for.
 */
static inline struct leaf *leaf_find(const struct ps_pgtable *t, uint64_t *pL,
				     uint64_t Lend, struct hit *h)
{
	uint64_t L = *pL;

	hit_clear(h);
	while (L < Lend) {
		struct node *mid = root_child(t, L >> MID_SHIFT);
		struct node *low;
		struct leaf *l;

		if (!mid) {
			L = ((L >> MID_SHIFT) + 1) << MID_SHIFT;
			continue;
		}
		low = walk_slot(&mid->slot[(L >> LOW_SHIFT) & LEVEL_MASK],
				ORDER_MID,
				(L >> LOW_SHIFT) << (LOW_SHIFT + LEVEL_BITS),
				h);
		if (!low) {
			if (h->v)
				break;
			L = ((L >> LOW_SHIFT) + 1) << LOW_SHIFT;
			continue;
		}
		l = walk_slot(&low->slot[L & LEVEL_MASK], ORDER_LOW,
			      L << LEVEL_BITS, h);
		if (l || h->v) {
			*pL = L;
			return l;
		}
		L++;
	}
	if (h->v)
		*pL = L;
	return NULL;
}

/*
 * The leaf of the first page in [*p, pend) that has one; *p advances to that
 * page. NULL when no page left has a leaf, or when a huge leaf comes first
 * (@h says so; *p advances to its first page in the range).
 */
static inline struct leaf *leaf_next(const struct ps_pgtable *t, uint64_t *p,
				     uint64_t pend, struct hit *h)
{
	uint64_t L = *p >> LEVEL_BITS;
	struct leaf *l;

	hit_clear(h);
	if (*p >= pend)
		return NULL;
	l = leaf_find(t, &L, ((pend - 1) >> LEVEL_BITS) + 1, h);
	if ((l || h->v) && L << LEVEL_BITS > *p)
		*p = L << LEVEL_BITS;
	return l;
}

/*
 * ps__pgtable_leaf_alloc() - the leaf numbered @L, allocated (with the
 * levels above it) and published if absent (lib/pgtable.c), for a writer:
 * a huge leaf above it is split, a frozen level thawed. NULL only when out
 * of memory. Lock-free: each level is published with a release CAS into
 * the slot value it replaces (G1).
 */
struct leaf *ps__pgtable_leaf_alloc(struct ps_pgtable *t, uint64_t L);

/*
 * ps__pgtable_level_get() - the level in @slot for a writer (lib/pgtable.c):
 * a frozen one is thawed, a huge leaf (of @order) split, an absent one
 * allocated if @alloc (a leaf if @leaf). NULL if absent and !@alloc, or
 * out of memory (then *@nomem is set).
 */
void *ps__pgtable_level_get(struct ps_pgtable *t, _Atomic(void *) *slot,
			    unsigned int order, bool leaf, bool alloc,
			    bool *nomem);

/*
 * ps__pgtable_split_slot() - split the huge leaf *@v of @order in @slot
 * (lib/pgtable-huge.c): build the child and CAS it in from *@v. Returns the
 * child published; NULL if the CAS failed (*@v receives the slot's value)
 * or if out of memory (*@nomem set).
 */
void *ps__pgtable_split_slot(struct ps_pgtable *t, _Atomic(void *) *slot,
			     uintptr_t *v, unsigned int order, bool *nomem);

/*
 * ps__pgtable_thaw() - undo a collapse in progress at @slot, which held the
 * frozen value @v (lib/pgtable-huge.c). After it the slot holds the level,
 * or whatever the collapse put there meanwhile (the caller walks again).
 */
void ps__pgtable_thaw(_Atomic(void *) *slot, uintptr_t v);

/*
 * ps__pgtable_huge_enable() - set ROOT_HUGE in the root slots of [start, end)
 * (lib/pgtable-huge.c), allocating their mid nodes, before a huge leaf or
 * frozen level is published there: the first time, it waits for a grace period,
 * so every walk that read a slot without it has ended (pagestate/pgtable.h).
 * Under t->lock, outside a read-side section. Returns 0 or -ENOMEM.
 */
int ps__pgtable_huge_enable(struct ps_pgtable *t, uint64_t start, uint64_t end);

/*
 * ps__pgtable_occupied() - the first page of [start, end) a map may not
 * replace (lib/pgtable.c); @end if there is none. In a read-side section.
 */
uint64_t ps__pgtable_occupied(const struct ps_pgtable *t, uint64_t start,
			      uint64_t end, bool markers_ok);

/*
 * ps__pgtable_cuts_whole() - does [start, end) begin or end inside a huge
 * leaf of a page registered PS_WP_HUGE_WHOLE (lib/pgtable-huge.c)? Such a
 * leaf cannot be protected, unprotected or re-armed in part. In a
 * read-side section or under t->lock.
 */
bool ps__pgtable_cuts_whole(const struct ps_pgtable *t, const struct regset *rs,
			    uint64_t start, uint64_t end);

/*
 * Level accounting (lib/pgtable.c): a level allocated, uninitialised (the
 * caller fills every entry or slot and the rest before publishing it), or
 * given up (never published: the caller frees it).
 */
void *ps__pgtable_level_new_raw(struct ps_pgtable *t, bool leaf);
void ps__pgtable_level_forget(struct ps_pgtable *t, bool leaf);
/* Free the subtree of level @c (a leaf if @leaf) after a grace period. */
void ps__pgtable_level_free_rcu(struct ps_pgtable *t, void *c, bool leaf);

/* --- argument checks ------------------------------------------------ */

static inline bool bad_addr(uint64_t addr)
{
	return (addr & (PAGE_SIZE - 1)) || addr >= PS_PGTABLE_ADDR_END;
}

/* [start, start + len): aligned, not empty, inside the space. */
static inline bool bad_range(uint64_t start, uint64_t len)
{
	return ((start | len) & (PAGE_SIZE - 1)) || len == 0 ||
	       len > PS_PGTABLE_ADDR_END || start > PS_PGTABLE_ADDR_END - len;
}

/* --- the one entry update ------------------------------------------- */

static inline ps_pte_t entry_load(const struct leaf *l, unsigned int i)
{
	/*
	 * Seq_cst: the scanner's entry load in the hint protocol (G8); on the
	 * other paths it is an acquire load (pairs with entry_cas()'s
	 * release), which costs the same on x86 and Arm.
	 */
	return atomic_load_explicit(&l->e[i], memory_order_seq_cst);
}

/* G8, writer side: make sure the line of entry @i is hinted. */
static inline void hint_mark(struct leaf *l, unsigned int i)
{
	uint64_t bit = UINT64_C(1) << (i / LINE_ENTRIES);

	/* Seq_cst: the writer's hint load, after its entry CAS (G8). */
	if (!(atomic_load_explicit(&l->hint, memory_order_seq_cst) & bit))
		/* Seq_cst: G8; any order works once the load saw it clear. */
		atomic_fetch_or_explicit(&l->hint, bit, memory_order_seq_cst);
}

/*
 * entry_cas() - the only way an entry changes: *old -> @n in one CAS. On
 * failure *old receives the current value, for the caller to recompute its
 * transition from. A change that makes the entry written hints its line.
 */
static inline bool entry_cas(struct leaf *l, unsigned int i, ps_pte_t *old,
			     ps_pte_t n)
{
	/*
	 * Seq_cst on success: the writer's CAS in the hint protocol (G8); it
	 * also releases the entry to acquiring readers (a frame's page is
	 * initialised before it is mapped). Acquire on failure: the fresh
	 * value is read like any lookup.
	 */
	if (!atomic_compare_exchange_strong_explicit(&l->e[i], old, n,
						     memory_order_seq_cst,
						     memory_order_acquire))
		return false;
	if (ps_pte_written(n) && !ps_pte_written(*old))
		hint_mark(l, i);
	return true;
}

/* --- registrations -------------------------------------------------- */

static inline const struct regset *regs_load(const struct ps_pgtable *t)
{
	/* Acquire: pairs with the release store of regs_publish(). */
	return atomic_load_explicit(&t->regs, memory_order_acquire);
}

/*
 * The registration in force at @addr, or NULL; *seg_end receives where that
 * answer stops holding, at most @end.
 */
static inline const struct reg *reg_segment(const struct regset *rs,
					    uint64_t addr, uint64_t end,
					    uint64_t *seg_end)
{
	size_t lo = 0, hi = rs ? rs->n : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	*seg_end = end;
	if (!rs || lo == rs->n)
		return NULL;
	if (rs->r[lo].start > addr) {
		if (rs->r[lo].start < end)
			*seg_end = rs->r[lo].start;
		return NULL;
	}
	if (rs->r[lo].end < end)
		*seg_end = rs->r[lo].end;
	return &rs->r[lo];
}

/* Is every page of [start, end) registered with all of @need? */
static inline bool reg_covers(const struct regset *rs, uint64_t start,
			      uint64_t end, unsigned int need)
{
	while (start < end) {
		uint64_t seg_end;
		const struct reg *r = reg_segment(rs, start, end, &seg_end);

		if (!r || (r->flags & need) != need)
			return false;
		start = seg_end;
	}
	return true;
}

static inline const struct reg *reg_find_page(const struct regset *rs,
					      uint64_t addr)
{
	uint64_t seg_end;

	return reg_segment(rs, addr, addr + PAGE_SIZE, &seg_end);
}

static inline unsigned int reg_flags(const struct reg *r)
{
	return r ? r->flags | REG_ON : 0;
}

static inline bool uses_markers(unsigned int rf)
{
	return (rf & REG_ON) && (rf & (PS_WP_SHARED | PS_WP_UNPOPULATED));
}

/* --- transitions (pure: old entry -> new entry) --------------------- */

/*
 * What a transition knows: the registration of the page (rf: PS_WP_* |
 * REG_ON, or 0), the operation's flags, and its own arguments.
 */
struct op {
	unsigned int rf;
	unsigned int flags;
	uint64_t start;	 /* map: first page */
	uint64_t frame;	 /* map: first frame */
	uint64_t pflags; /* map: present flags */
	ps_pgtable_visit_fn visit;
	void *ctx;
	bool units; /* zap: PS_ZAP_UNITS, a whole huge leaf told of once */
};

typedef ps_pte_t (*tr_fn)(ps_pte_t e, const struct op *op, uint64_t addr);

static inline ps_pte_t tr_protect(ps_pte_t e, const struct op *op,
				  uint64_t addr)
{
	(void)addr;
	/* A WRITTEN marker is a none page: re-armed as one. */
	if (e == PS_PTE_NONE || ps_pte_is_written_marker(e))
		return uses_markers(op->rf) ? marker_uffd_wp() : PS_PTE_NONE;
	if (ps_pte_is_marker(e))
		return e; /* U stays; POISONED and GUARD are left alone */
	return ps_pte_mkuffd_wp(e);
}

/* --- the written hint (G8) ------------------------------------------ */

/* Hint bits of lines [from, to) (line numbers, to <= 64). */
static inline uint64_t lines_mask(unsigned int from, unsigned int to)
{
	if (from >= to)
		return 0;
	return (~UINT64_C(0) >> (64 - (to - from))) << from;
}

/*
 * hint_begin() - a writer that makes every entry of [lo, hi) not written
 * (protect, a WP_MATCHING scan) first clears the hint bits of the lines it
 * covers whole (G8). Returns the hint word as it was.
 */
static inline uint64_t hint_begin(struct leaf *l, uint64_t covered)
{
	/* Seq_cst: the scanner's hint RMW of G8, before its entry loads. */
	return atomic_fetch_and_explicit(&l->hint, ~covered,
					 memory_order_seq_cst);
}

/* hint_end() - ... and sets them again where an entry stays written. */
static inline void hint_end(struct leaf *l, uint64_t back)
{
	if (back)
		/* Seq_cst: G8, a written entry stays in these lines. */
		atomic_fetch_or_explicit(&l->hint, back, memory_order_seq_cst);
}

#endif /* PS_LIB_PGTABLE_INTERNAL_H */
