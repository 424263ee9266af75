// SPDX-License-Identifier: MIT
/*
 * lib/itree.c - an RCU copy-on-write B+-tree of intervals (see itree.h).
 *
 * ===========================================================================
 * State
 * ===========================================================================
 *
 *   root          the published version (NULL: empty); written by writers
 *                 only (T1), read by readers (R1)
 *   node          up to TREE_B entries sorted by start; never changed once
 *                 published, except gc_next, which only writers use
 *   count         entries of the published version; writer-only
 *
 * Entry i of a node: key[i] is an entry's start (leaf) or the smallest start
 * in child i (internal); maxl[i] is the entry's last (leaf) or the largest
 * last in child i; before[i] = max(maxl[0..i-1]) (0 for i = 0), the largest
 * last of the entries before it; ptr[i] is the item (leaf) or child i. A
 * node is disjoint when before[i] < key[i] for every i: no entry reaches
 * the next one's start (intervals that do not overlap each other make every
 * node disjoint). An unused entry (i >= n) has key NONE and zeros
 * elsewhere, so a reader needs no count: see Search. A node's height is 0
 * for a leaf and one more than its children's.
 *
 * ===========================================================================
 * Layout (one node: five cache lines, 320 bytes)
 * ===========================================================================
 *
 *   line 0      key[8]: what a search compares, all of it in one line
 *   internal    line 1: child[8], each tagged in its low bit with the
 *               child's disjoint flag (nodes are 64-byte aligned); lines
 *               2-3: {maxl, before}[8], 16 bytes each
 *   leaf        lines 1-2: {item, last}[8], 16 bytes each, what a hit
 *               needs; line 3: before[8]
 *   line 4      n, height, the disjoint flag (readers read the root's),
 *               gc_next, the pool's batch head: the writers'
 *
 * A reader of a disjoint tree touches two lines per level: the keys, then
 * the child pointers (internal) or the entry it chose (leaf). The maxima
 * are read only where intervals overlap. The layout before this one put
 * {ptr, maxl, before} in 32-byte slots over four lines, so each internal
 * node had five hot lines; with 100,000 entries the level above the leaves
 * (1,563 nodes) was about 500 KiB of them, more than an L2, and is 200 KiB
 * now.

 * ===========================================================================
 * Protocol
 * ===========================================================================
 *
 * writer (insert, remove; serialised by the caller):
 *   W1  copy every node on the path to the change (and the neighbour that a
 *       merge or refill changes) into fresh nodes, and change the copies;
 *       nodes that split or are created are fresh too. Nothing published is
 *       written, so readers of the old version see it whole.
 *   T1  root = the new version (release store): the fresh nodes and what the
 *       caller wrote to the item are visible to a reader that loads it.
 *   W2  the replaced nodes go to ps__rcu_call() as one batch (its head is
 *       in the first of them, so W2 cannot fail) and return to the tree's
 *       pool after a grace period (P1/P2 of lib/itree-pool.c).
 * reader (visit, inside the caller's RCU read-side section):
 *   R1  root (acquire; pairs with T1), then plain loads of nodes reached from
 *       it. They stay valid until the section ends (W2), and they never
 *       change (W1), so the visit sees exactly one version.
 *
 * ===========================================================================
 * Search
 * ===========================================================================
 *
 * The entries overlapping [s, l] in a node are those of the prefix with
 * key <= l whose maxl >= s. The prefix's length hi is counted over all
 * eight keys without a branch (an unused key, NONE, counts only when
 * l = UINT64_MAX; then entry hi - 1 is unused, its ptr NULL, and n is read
 * instead). The last of the prefix is the only candidate if no entry before
 * it reaches s: known without the maxima when the node is disjoint and
 * key[hi - 1] <= s (every maxl before it is below key[hi - 1]), and else
 * when before[hi - 1] < s. Then the reader goes down child hi - 1 without
 * reading its maxl (a child that does not reach s has no hit below, and
 * the leaf's last says so), or, in a leaf, tests the entry's last. That is
 * the usual case: intervals that do not overlap each other, or a query
 * inside one of them. Otherwise it tests every entry of the prefix in
 * order. The child's flag comes with the pointer to it (its tag), the
 * root's from its header. While it reads a node's keys, the line it reads
 * next is already on its way (prefetched as soon as the node is known: the
 * child pointers, or a leaf's two entry lines, one of which it uses). For
 * intervals that do not overlap each other a visit is O(log n + hits): two
 * lines per level.
 *
 * ===========================================================================
 * Shape
 * ===========================================================================
 *
 * S1  All leaves are at the same depth (every node's height is its
 *     children's plus one).
 * S2  Every node but the root and the nodes on the right spine (the last
 *     child of the last child ... of the root) holds at least TREE_MIN = 3
 *     entries. The root, if internal, has at least two children.
 *
 * Insert: a full node splits in halves (4 + 5), except a node of the right
 * spine that receives an entry past its end: it keeps its 8 entries and the
 * new entry starts a new right-spine node, so ascending inserts (the usual
 * pattern: address spaces are set up in order) fill nodes completely.
 * Neither breaks S2: the new node of a right-end split is on the spine.
 * Remove: a child left with fewer than TREE_MIN entries is merged with its
 * left neighbour (the right one for the first child) if both fit in
 * TREE_MERGE_MAX = 6 entries, else the two share their entries evenly (>= 3
 * each, as they hold >= 7). The merged node can be below TREE_MIN only if the
 * neighbour was, so only if the neighbour was on the right spine, and then so
 * is the merged node. An emptied child is dropped; a root left with one child
 * gives way to it. So S2 holds after every update. The first child of the root
 * is off the spine, and so is everything below it, so it holds at least
 * 3^(depth - 1) entries: the depth is at most 1 + log_3(n). It follows the
 * current size, not the largest size the set ever had.
 *
 * ===========================================================================
 * Complexity (n entries)
 * ===========================================================================
 *
 *   visit             O(log n + hits) for intervals that do not overlap each
 *                     other (see Search); never more than O(n)
 *   insert, remove    O(log n): a path copy of O(log n) nodes of TREE_B
 *                     entries (plus one neighbour per level for a merge),
 *                     freed a grace period later in one batch; insert also
 *                     looks for a duplicate, another O(log n) unless many
 *                     entries share its start
 *   contains          O(log n + entries with that start)
 *
 * Why a copy-on-write B+-tree: readers search it without any lock while
 * inserts and removes go on. A path copy replaces O(log n) nodes per update
 * (a copy-on-write sorted array would copy all n: 100,000 inserts would copy
 * 5 * 10^9 entries), and nothing is modified in place, so a reader walking
 * an old root sees a consistent, immutable tree until a grace period after
 * it is replaced. Why eight entries a node: a search costs the lines it
 * touches, not the entries it compares. Eight keys fill one line, and the
 * child pointers (or the leaf entry it picks) one more; sixteen keys would
 * take two lines per level for one level in four fewer (log_16 against
 * log_8), and a binary tree (a treap was the first version) costs one line
 * per level, ~23 levels with 100,000 entries, 7.5x slower than with 1,000.
 */
#include "itree.h"

#include "itree-pool.h"
#include "rcu.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TREE_B PS__ITREE_FANOUT
#define TREE_MIN PS__ITREE_MIN	/* S2 */
#define TREE_MERGE_MAX 6	/* merge when both fit in this */
#define NONE UINT64_MAX		/* the key of an unused entry */
#define DISJOINT ((uintptr_t)1) /* a child pointer's tag: see Layout */

PS_STATIC_ASSERT(TREE_B == 8, "one line of keys: eight 64-bit starts");
PS_STATIC_ASSERT(TREE_MERGE_MAX + 1 >= 2 * TREE_MIN &&
			 TREE_MERGE_MAX <= TREE_B && TREE_MIN >= 2,
		 "itree: a refill leaves both nodes at least TREE_MIN full");

/* A leaf's entry: what a hit needs, 16 bytes, four to a line. */
struct leaf_ent {
	void *item; /* NULL: unused */
	uint64_t last;
};

/* An internal entry's maxima, read only where intervals overlap. */
struct reach {
	uint64_t maxl;	 /* the child's largest last */
	uint64_t before; /* the largest maxl of the entries before this one */
};

struct ps__itree_node {
	_Alignas(64) uint64_t key[TREE_B]; /* line 0; NONE: unused */
	union {
		struct {			    /* height > 0 */
			uintptr_t child[TREE_B];    /* line 1: node | tag */
			struct reach reach[TREE_B]; /* lines 2-3 */
		} in;
		struct {			     /* height 0 */
			struct leaf_ent ent[TREE_B]; /* lines 1-2 */
			uint64_t before[TREE_B];     /* line 3 */
		} lf;
	} u;
	uint32_t n;	   /* line 4: entries in use */
	uint32_t height;   /* 0: a leaf */
	uint32_t disjoint; /* see Layout; the root's is read here */
	struct ps__itree_node *gc_next; /* writer-only: fresh or retired */
	/* The pool's: a retired batch's head (lib/itree-pool.h). */
	_Alignas(8) unsigned char batch[PS__ITREE_POOL_HEAD];
};

/* The pool hands out whole lines. */
PS_STATIC_ASSERT(sizeof(struct ps__itree_node) == 5 * 64,
		 "tree nodes: keys, three lines of entries, a header line");
PS_STATIC_ASSERT(offsetof(struct ps__itree_node, u) == 64 &&
			 sizeof(struct leaf_ent) == 16 &&
			 sizeof(struct reach) == 16,
		 "tree nodes: the keys fill line 0, no entry straddles a line");

/* One update in progress: what it allocated and what it replaced. */
struct upd {
	struct ps__itree_pool *pool;	/* the tree's node memory */
	struct ps__itree_node *fresh;	/* allocated (freed on failure) */
	struct ps__itree_node *retired; /* replaced (freed after W2) */
	bool failed;			/* an allocation failed: discard */
	bool found;			/* remove: the entry was there */
};

/* --- searching a node ----------------------------------------------------- */

/* First index in a[0..n) with a[i] > x. */
static uint32_t upper_bound(const uint64_t *a, uint32_t n, uint64_t x)
{
	uint32_t lo = 0;

	while (n) {
		uint32_t half = n / 2;

		if (a[lo + half] <= x) {
			lo += half + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	return lo;
}

/* First index in a[0..n) with a[i] >= x. */
static uint32_t lower_bound(const uint64_t *a, uint32_t n, uint64_t x)
{
	return x ? upper_bound(a, n, x - 1) : 0;
}

/* Child @i of the internal node @t, without its tag. */
static struct ps__itree_node *child_at(const struct ps__itree_node *t,
				       uint32_t i)
{
	return (struct ps__itree_node *)(t->u.in.child[i] & ~DISJOINT);
}

/* Entry @i's item (leaf) or child (internal). */
static void *ptr_at(const struct ps__itree_node *t, uint32_t i)
{
	return t->height ? (void *)child_at(t, i) : t->u.lf.ent[i].item;
}

/* Entry @i's last (leaf) or its child's largest last (internal). */
static uint64_t maxl_at(const struct ps__itree_node *t, uint32_t i)
{
	return t->height ? t->u.in.reach[i].maxl : t->u.lf.ent[i].last;
}

/* The largest maxl of the entries before @i. */
static uint64_t before_at(const struct ps__itree_node *t, uint32_t i)
{
	return t->height ? t->u.in.reach[i].before : t->u.lf.before[i];
}

/* The subtree's largest last (its entry's maxl in the parent). */
static uint64_t node_max(const struct ps__itree_node *t)
{
	uint64_t m = maxl_at(t, t->n - 1), b = before_at(t, t->n - 1);

	return m > b ? m : b;
}

/* --- changing fresh nodes (W1) -------------------------------------------- */

/*
 * Recompute the befores and the disjoint flag, and blank the unused entries
 * (see State).
 */
static void fix(struct ps__itree_node *t)
{
	uint64_t m = 0;
	uint32_t i;

	t->disjoint = 1;
	for (i = 0; i < t->n; i++) {
		if (i && m >= t->key[i])
			t->disjoint = 0;
		if (t->height)
			t->u.in.reach[i].before = m;
		else
			t->u.lf.before[i] = m;
		if (maxl_at(t, i) > m)
			m = maxl_at(t, i);
	}
	for (; i < TREE_B; i++) {
		t->key[i] = NONE;
		if (t->height) {
			t->u.in.child[i] = 0;
			t->u.in.reach[i] = (struct reach){0, 0};
		} else {
			t->u.lf.ent[i] = (struct leaf_ent){NULL, 0};
			t->u.lf.before[i] = 0;
		}
	}
}

static struct ps__itree_node *node_new(struct upd *u, uint32_t height)
{
	struct ps__itree_node *n = ps__itree_pool_get(u->pool);

	if (!n) {
		u->failed = true;
		return NULL;
	}
	n->n = 0;
	n->height = height;
	fix(n);
	n->gc_next = u->fresh;
	u->fresh = n;
	return n;
}

/* @old, published, leaves the tree with this update. */
static void retire(struct upd *u, struct ps__itree_node *old)
{
	old->gc_next = u->retired;
	u->retired = old;
}

/* A fresh copy of the published @old, which this update replaces. */
static struct ps__itree_node *node_copy(struct upd *u,
					struct ps__itree_node *old)
{
	struct ps__itree_node *n = node_new(u, old->height);

	if (!n)
		return NULL;
	n->n = old->n;
	n->disjoint = old->disjoint;
	memcpy(n->key, old->key, sizeof(n->key));
	memcpy(&n->u, &old->u, sizeof(n->u));
	retire(u, old);
	return n;
}

/*
 * Entry @i of @t: @ptr is an item (leaf) or a finished child node, whose
 * disjoint flag goes into the tag (internal).
 */
static void entry_set(struct ps__itree_node *t, uint32_t i, uint64_t start,
		      uint64_t maxl, void *ptr)
{
	t->key[i] = start;
	if (t->height) {
		const struct ps__itree_node *c = ptr;

		t->u.in.child[i] = (uintptr_t)ptr |
				   (c->disjoint ? DISJOINT : 0);
		t->u.in.reach[i].maxl = maxl;
	} else {
		t->u.lf.ent[i] = (struct leaf_ent){ptr, maxl};
	}
}

/* Entry @i of @t describes the node @child (after @child changed). */
static void entry_child(struct ps__itree_node *t, uint32_t i,
			struct ps__itree_node *child)
{
	entry_set(t, i, child->key[0], node_max(child), child);
}

/*
 * Move @count entries between nodes of one height; fix() recomputes the
 * befores afterwards.
 */
static void entry_move(struct ps__itree_node *to, uint32_t ti,
		       const struct ps__itree_node *from, uint32_t fi,
		       uint32_t count)
{
	memmove(&to->key[ti], &from->key[fi], count * sizeof(uint64_t));
	if (from->height) {
		memmove(&to->u.in.child[ti], &from->u.in.child[fi],
			count * sizeof(uintptr_t));
		memmove(&to->u.in.reach[ti], &from->u.in.reach[fi],
			count * sizeof(struct reach));
	} else {
		memmove(&to->u.lf.ent[ti], &from->u.lf.ent[fi],
			count * sizeof(struct leaf_ent));
	}
}

static void entry_delete(struct ps__itree_node *t, uint32_t i)
{
	entry_move(t, i, t, i + 1, t->n - i - 1);
	t->n--;
}

/*
 * Put an entry at @pos of the fresh node @t. If @t is full, split it and
 * return the new right sibling (also fresh); see Shape for where it splits.
 */
static struct ps__itree_node *entry_insert(struct upd *u,
					   struct ps__itree_node *t,
					   uint32_t pos, uint64_t start,
					   uint64_t maxl, void *ptr, bool spine)
{
	struct ps__itree_node *r, *dst;
	uint32_t keep;

	if (t->n < TREE_B) {
		entry_move(t, pos + 1, t, pos, t->n - pos);
		entry_set(t, pos, start, maxl, ptr);
		t->n++;
		fix(t);
		return NULL;
	}
	r = node_new(u, t->height);
	if (!r)
		return NULL;
	keep = pos == TREE_B && spine ? TREE_B : TREE_B / 2;
	r->n = TREE_B - keep;
	entry_move(r, 0, t, keep, r->n);
	t->n = keep;
	dst = pos < keep || (pos == keep && keep != TREE_B) ? t : r;
	if (dst == r)
		pos -= keep;
	entry_move(dst, pos + 1, dst, pos, dst->n - pos);
	entry_set(dst, pos, start, maxl, ptr);
	dst->n++;
	fix(t);
	fix(r);
	return r;
}

/* --- insert --------------------------------------------------------------- */

/*
 * Insert (@start, @last, @item) below the published @t; @spine: @t is on the
 * right spine. Returns @t's fresh replacement and, if it split, the new
 * right sibling in *@right. On failure (u->failed) returns @t.
 */
static struct ps__itree_node *tr_insert(struct upd *u, struct ps__itree_node *t,
					uint64_t start, uint64_t last,
					void *item, bool spine,
					struct ps__itree_node **right)
{
	struct ps__itree_node *n = node_copy(u, t), *child, *split;
	uint32_t pos;

	*right = NULL;
	if (!n)
		return t;
	pos = upper_bound(t->key, t->n, start);
	if (!t->height) {
		*right = entry_insert(u, n, pos, start, last, item, spine);
		return u->failed ? t : n;
	}
	pos = pos ? pos - 1 : 0; /* the child whose range takes start */
	child = tr_insert(u, child_at(t, pos), start, last, item,
			  spine && pos == t->n - 1, &split);
	if (u->failed)
		return t;
	entry_child(n, pos, child);
	fix(n);
	if (split)
		*right = entry_insert(u, n, pos + 1, split->key[0],
				      node_max(split), split, spine);
	return u->failed ? t : n;
}

/* The root split in two: a new root above both halves. */
static struct ps__itree_node *grow_root(struct upd *u,
					struct ps__itree_node *left,
					struct ps__itree_node *right)
{
	struct ps__itree_node *r = node_new(u, left->height + 1);

	if (!r)
		return left;
	entry_child(r, 0, left);
	entry_child(r, 1, right);
	r->n = 2;
	fix(r);
	return r;
}

/* --- remove --------------------------------------------------------------- */

/*
 * Child @i of the fresh node @p is fresh and below TREE_MIN entries, and @p
 * has another child: merge the two or share their entries (see Shape).
 */
static void rebalance(struct upd *u, struct ps__itree_node *p, uint32_t i)
{
	uint32_t j = i ? i - 1 : i + 1, a = i < j ? i : j;
	struct ps__itree_node *c = child_at(p, i), *nb = child_at(p, j), *l, *r;
	uint32_t total = c->n + nb->n, want = total / 2;

	if (total <= TREE_MERGE_MAX) { /* into @c, in order */
		if (j < i) {
			entry_move(c, nb->n, c, 0, c->n);
			entry_move(c, 0, nb, 0, nb->n);
		} else {
			entry_move(c, c->n, nb, 0, nb->n);
		}
		c->n = total;
		fix(c);
		retire(u, nb);
		entry_child(p, a, c);
		entry_delete(p, a + 1);
		return;
	}
	nb = node_copy(u, nb);
	if (!nb)
		return;
	l = j < i ? nb : c;
	r = j < i ? c : nb;
	if (l->n > want) { /* l's tail to the front of r */
		uint32_t k = l->n - want;

		entry_move(r, k, r, 0, r->n);
		entry_move(r, 0, l, want, k);
		r->n += k;
	} else if (l->n < want) { /* r's front to the tail of l */
		uint32_t k = want - l->n;

		entry_move(l, l->n, r, 0, k);
		entry_move(r, 0, r, k, r->n - k);
		r->n -= k;
	}
	l->n = want;
	fix(l);
	fix(r);
	entry_child(p, a, l);
	entry_child(p, a + 1, r);
}

/*
 * Remove @item (at @start) below the published @t. Returns @t's fresh
 * replacement, NULL if it became empty, or @t itself if @item is not there
 * (u->found stays false) or an allocation failed (u->failed).
 */
static struct ps__itree_node *tr_remove(struct upd *u, struct ps__itree_node *t,
					uint64_t start, const void *item)
{
	uint32_t lo = lower_bound(t->key, t->n, start);
	uint32_t hi = upper_bound(t->key, t->n, start);
	struct ps__itree_node *n, *child = NULL;
	uint32_t i;

	if (!t->height) {
		for (i = lo; i < hi && t->u.lf.ent[i].item != item; i++)
			;
		if (i == hi)
			return t;
		u->found = true;
	} else {
		/* Equal starts may span children: from the one before lo. */
		for (i = lo ? lo - 1 : 0; i < hi; i++) {
			child = tr_remove(u, child_at(t, i), start, item);
			if (u->failed || u->found)
				break;
		}
		if (u->failed || !u->found)
			return t;
	}
	if (!child && t->n == 1) {
		retire(u, t);
		return NULL;
	}
	n = node_copy(u, t);
	if (!n)
		return t;
	if (!child) {
		entry_delete(n, i);
	} else {
		entry_child(n, i, child);
		if (child->n < TREE_MIN && n->n > 1)
			rebalance(u, n, i);
		if (u->failed)
			return t;
	}
	fix(n);
	return n;
}

/* --- contains, free, check ------------------------------------------------ */

static bool tr_contains(const struct ps__itree_node *t, uint64_t start,
			const void *item)
{
	uint32_t lo, hi;

	if (!t)
		return false;
	lo = lower_bound(t->key, t->n, start);
	hi = upper_bound(t->key, t->n, start);
	if (!t->height) {
		for (uint32_t i = lo; i < hi; i++)
			if (t->u.lf.ent[i].item == item)
				return true;
		return false;
	}
	for (uint32_t i = lo ? lo - 1 : 0; i < hi; i++)
		if (tr_contains(child_at(t, i), start, item))
			return true;
	return false;
}

/* A failed update: its fresh nodes, never published, go straight back. */
static void discard(struct upd *u)
{
	struct ps__itree_node *n = u->fresh;

	while (n) {
		struct ps__itree_node *next = n->gc_next;

		ps__itree_pool_put(u->pool, n);
		n = next;
	}
}

/*
 * W2: the nodes an update replaced go back to the pool after a grace period,
 * as one batch headed by the first of them. This cannot fail (and never
 * waits for a grace period, so it is safe inside a read-side section).
 */
static void commit(struct upd *u)
{
	if (u->retired)
		ps__itree_pool_retire(u->pool, u->retired);
}

/* The tree's pool, made at its first insert; NULL if out of memory. */
static struct ps__itree_pool *pool_of(struct ps__itree *t)
{
	if (!t->pool)
		t->pool = ps__itree_pool_new(sizeof(struct ps__itree_node),
					     offsetof(struct ps__itree_node,
						      gc_next),
					     offsetof(struct ps__itree_node,
						      batch));
	return t->pool;
}

/* The entries of @t: sorted, befores and flag right, unused ones blank. */
static bool node_ok(const struct ps__itree_node *t)
{
	uint64_t m = 0;
	bool disjoint = true;

	for (uint32_t i = 0; i < TREE_B; i++) {
		bool used = t->height ? t->u.in.child[i] != 0
				      : t->u.lf.ent[i].item != NULL;

		if (i >= t->n) {
			if (t->key[i] != NONE || used || maxl_at(t, i) ||
			    before_at(t, i))
				return false;
			continue;
		}
		if ((i && t->key[i] < t->key[i - 1]) || before_at(t, i) != m ||
		    !used)
			return false;
		if (i && m >= t->key[i])
			disjoint = false;
		m = maxl_at(t, i) > m ? maxl_at(t, i) : m;
	}
	return t->disjoint == disjoint;
}

/* S1, S2, order, maxima and tags below @t; -EUCLEAN at the first break. */
static int check_node(const struct ps__itree_node *t, unsigned int depth,
		      bool root, bool spine, struct ps__itree_shape *sh)
{
	if (t->n < 1 || t->n > TREE_B || (!root && !spine && t->n < TREE_MIN) ||
	    (root && t->height && t->n < 2) || !node_ok(t))
		return -EUCLEAN;
	sh->nodes++;
	if (!t->height) {
		if (sh->depth && sh->depth != depth)
			return -EUCLEAN; /* S1 */
		sh->depth = depth;
		sh->entries += t->n;
		for (uint32_t i = 0; i < t->n; i++)
			if (t->u.lf.ent[i].last < t->key[i])
				return -EUCLEAN;
		return 0;
	}
	for (uint32_t i = 0; i < t->n; i++) {
		const struct ps__itree_node *c = child_at(t, i);
		bool tag = t->u.in.child[i] & DISJOINT;
		int rc;

		if (c->n < 1 || c->n > TREE_B || c->height + 1 != t->height ||
		    c->key[0] != t->key[i] || node_max(c) != maxl_at(t, i) ||
		    tag != (bool)c->disjoint ||
		    (i + 1 < t->n && c->key[c->n - 1] > t->key[i + 1]))
			return -EUCLEAN;
		rc = check_node(c, depth + 1, false, spine && i + 1 == t->n,
				sh);
		if (rc)
			return rc;
	}
	return 0;
}

/* --- the interface -------------------------------------------------------- */

void ps__itree_init(struct ps__itree *t)
{
	/* Relaxed: the set is not shared yet. */
	atomic_store_explicit(&t->root, NULL, memory_order_relaxed);
	t->count = 0;
	t->pool = NULL;
}

void ps__itree_destroy(struct ps__itree *t)
{
	/* Every node is the pool's; those still pending keep it alive. */
	ps__itree_pool_release(t->pool);
	ps__itree_init(t);
}

int ps__itree_insert(struct ps__itree *t, uint64_t start, uint64_t last,
		     void *item)
{
	struct upd u = {pool_of(t), NULL, NULL, false, false};
	struct ps__itree_node *root, *split = NULL;

	if (start > last || !item)
		return -EINVAL;
	/* Relaxed: writers are serialised; only they store root. */
	root = atomic_load_explicit(&t->root, memory_order_relaxed);
	if (tr_contains(root, start, item))
		return -EEXIST;
	if (!u.pool)
		return -ENOMEM;
	if (!root) {
		root = node_new(&u, 0);
		if (root) {
			entry_set(root, 0, start, last, item);
			root->n = 1;
			fix(root);
		}
	} else {
		root = tr_insert(&u, root, start, last, item, true, &split);
		if (split && !u.failed)
			root = grow_root(&u, root, split);
	}
	if (u.failed) {
		discard(&u);
		return -ENOMEM;
	}
	t->count++;
	/* T1 - Release: the fresh nodes and the item first; pairs with R1. */
	atomic_store_explicit(&t->root, root, memory_order_release);
	commit(&u);
	return 0;
}

int ps__itree_remove(struct ps__itree *t, uint64_t start, const void *item)
{
	struct upd u = {t->pool, NULL, NULL, false, false};
	struct ps__itree_node *root;

	/* Relaxed: writers are serialised; only they store root. */
	root = atomic_load_explicit(&t->root, memory_order_relaxed);
	if (!root)
		return -ENOENT;
	root = tr_remove(&u, root, start, item);
	if (u.failed || !u.found) {
		discard(&u);
		return u.failed ? -ENOMEM : -ENOENT;
	}
	/* A root left with one child gives way to it (S2). */
	while (root && root->height && root->n == 1) {
		struct ps__itree_node *child = child_at(root, 0);

		retire(&u, root); /* fresh or not: freed after W2 */
		root = child;
	}
	t->count--;
	/* T1 - Release: the fresh nodes first; pairs with R1. */
	atomic_store_explicit(&t->root, root, memory_order_release);
	commit(&u);
	return 0;
}

bool ps__itree_contains(const struct ps__itree *t, uint64_t start,
			const void *item)
{
	/* Relaxed: the writer's own view (writers are serialised). */
	return tr_contains(atomic_load_explicit(&t->root, memory_order_relaxed),
			   start, item);
}

/* How many keys of @t are <= @l: compared all at once, no branch. */
static uint32_t count_le(const struct ps__itree_node *t, uint64_t l)
{
	uint32_t hi = 0;

	for (uint32_t i = 0; i < TREE_B; i++)
		hi += t->key[i] <= l;
	return hi;
}

/*
 * What a search of @t reads after its keys, on its way while it reads them:
 * the child pointers (internal), or the entries (a leaf: its two lines, one
 * of which the search will use).
 */
static void prefetch_entries(const struct ps__itree_node *t, uint32_t height)
{
	if (height) {
		__builtin_prefetch(&t->u.in.child[0]);
	} else {
		__builtin_prefetch(&t->u.lf.ent[0]);
		__builtin_prefetch(&t->u.lf.ent[TREE_B / 2]);
	}
}

static bool walk(const struct ps__itree_node *t, uint32_t height, bool disjoint,
		 uint64_t start, uint64_t last, ps__itree_visit_fn fn,
		 void *ctx);

/* Every entry of the prefix [0, hi) of @t that reaches @start, in order. */
static bool walk_all(const struct ps__itree_node *t, uint32_t height,
		     uint32_t hi, uint64_t start, uint64_t last,
		     ps__itree_visit_fn fn, void *ctx)
{
	for (uint32_t i = 0; i < hi; i++) {
		if (height) {
			uintptr_t c = t->u.in.child[i];

			if (t->u.in.reach[i].maxl < start)
				continue;
			if (!walk((const struct ps__itree_node *)(c &
								  ~DISJOINT),
				  height - 1, c & DISJOINT, start, last, fn,
				  ctx))
				return false;
		} else {
			const struct leaf_ent *e = &t->u.lf.ent[i];

			if (e->last >= start &&
			    !fn(ctx, e->item, t->key[i], e->last))
				return false;
		}
	}
	return true;
}

/* See Search: down the one candidate while there is one. */
static bool walk(const struct ps__itree_node *t, uint32_t height, bool disjoint,
		 uint64_t start, uint64_t last, ps__itree_visit_fn fn,
		 void *ctx)
{
	for (;;) {
		uint32_t hi = count_le(t, last), i;
		uintptr_t c;

		if (!hi)
			return true;
		i = hi - 1;
		if (!height) { /* a leaf: the entry, then the hit */
			const struct leaf_ent *e = &t->u.lf.ent[i];

			if (!e->item) { /* last = UINT64_MAX counted unused */
				i = t->n - 1;
				e = &t->u.lf.ent[i];
			}
			if ((!disjoint || t->key[i] > start) &&
			    t->u.lf.before[i] >= start)
				return walk_all(t, 0, i + 1, start, last, fn,
						ctx);
			return e->last < start ||
			       fn(ctx, e->item, t->key[i], e->last);
		}
		c = t->u.in.child[i];
		if (!c) { /* as above */
			i = t->n - 1;
			c = t->u.in.child[i];
		}
		if (!disjoint || t->key[i] > start) { /* the maxima decide */
			const struct reach *r = &t->u.in.reach[i];

			if (r->before >= start)
				return walk_all(t, height, i + 1, start, last,
						fn, ctx);
			if (r->maxl < start)
				return true;
		}
		t = (const struct ps__itree_node *)(c & ~DISJOINT);
		disjoint = c & DISJOINT;
		height--;
		prefetch_entries(t, height);
	}
}

bool ps__itree_visit(const struct ps__itree *t, uint64_t start, uint64_t last,
		     ps__itree_visit_fn fn, void *ctx)
{
	/* R1 - Acquire: pairs with T1; the version's nodes are visible. */
	const struct ps__itree_node *root =
		atomic_load_explicit(&t->root, memory_order_acquire);

	return !root ||
	       walk(root, root->height, root->disjoint, start, last, fn, ctx);
}

int ps__itree_check(const struct ps__itree *t, struct ps__itree_shape *shape)
{
	/* Relaxed: the writer's own view (writers are serialised). */
	const struct ps__itree_node *root =
		atomic_load_explicit(&t->root, memory_order_relaxed);
	int rc;

	*shape = (struct ps__itree_shape){0, 0, 0};
	if (!root)
		return t->count ? -EUCLEAN : 0;
	rc = check_node(root, 1, true, true, shape);
	if (!rc && shape->entries != t->count)
		rc = -EUCLEAN;
	return rc;
}
