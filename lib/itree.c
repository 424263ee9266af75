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
 * Entry i of a node: start[i] is an entry's start (leaf) or the smallest
 * start in child i (internal); maxl[i] is the entry's last (leaf) or the
 * largest last in child i; pmax[i] = max(maxl[0..i]), a prefix maximum, so
 * it never decreases; ptr[i] is the item (leaf) or child i.
 *
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
 *   W2  the replaced nodes go to ps__rcu_call() as one batch (allocated
 *       before W1, so W2 cannot fail), freed after a grace period.
 * reader (visit, inside the caller's RCU read-side section):
 *   R1  root (acquire; pairs with T1), then plain loads of nodes reached from
 *       it. They stay valid until the section ends (W2), and they never
 *       change (W1), so the visit sees exactly one version.
 *
 * ===========================================================================
 * Search
 * ===========================================================================
 *
 * The entries overlapping [s, l] in a node: the ones with start <= l are a
 * prefix (binary search on start); the ones before the first pmax >= s all
 * end before s (binary search on pmax); each in between is tested (maxl >= s)
 * and, in an internal node, entered. For intervals that do not overlap each
 * other that is O(log B) per level and O(log n + hits) overall.
 *
 * ===========================================================================
 * Shape
 * ===========================================================================
 *
 * S1  All leaves are at the same depth.
 * S2  Every node but the root and the nodes on the right spine (the last
 *     child of the last child ... of the root) holds at least TREE_MIN =
 *     TREE_B / 4 entries. The root, if internal, has at least two children.
 *
 * Insert: a full node splits in halves (8 + 9), except a node of the right
 * spine that receives an entry past its end: it keeps its 16 entries and the
 * new entry starts a new right-spine node, so ascending inserts (the usual
 * pattern: address spaces are set up in order) fill nodes completely.
 * Neither breaks S2: the new node of a right-end split is on the spine.
 * Remove: a child left with fewer than TREE_MIN entries is merged with its
 * left neighbour (the right one for the first child) if both fit in
 * 3 * TREE_B / 4 entries, else the two share their entries evenly (>= 6
 * each). The merged node can be below TREE_MIN only if the neighbour was, so
 * only if the neighbour was on the right spine, and then so is the merged
 * node. An emptied child is dropped; a root left with one child gives way to
 * it. So S2 holds after every update. The first child of the root is off
 * the spine, and so is everything below it, so it holds at least
 * 4^(depth - 1) entries: the depth is at most 1 + log_4(n). It follows the
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
 * it is replaced. Nodes of 16 entries keep the search to a few cache lines
 * per level: with 100,000 entries a binary tree (a treap was the first
 * version) costs one cache miss per level, ~23 levels, and its searches were
 * 7.5x slower than with 1,000; this tree is 5 levels.
 */
#include "itree.h"

#include "rcu.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TREE_B 16
#define TREE_MIN (TREE_B / 4)		/* S2 */
#define TREE_MERGE_MAX (3 * TREE_B / 4) /* merge when both fit in this */

struct ps__itree_node {
	_Alignas(64) uint32_t n; /* entries in use; nodes start a cache line */
	bool leaf;
	struct ps__itree_node *gc_next; /* writer-only: fresh or retired list */
	uint64_t start[TREE_B];
	uint64_t pmax[TREE_B];
	uint64_t maxl[TREE_B];
	void *ptr[TREE_B]; /* item (leaf) or child node */
};

/* aligned_alloc() wants a size that is a multiple of the alignment. */
PS_STATIC_ASSERT(sizeof(struct ps__itree_node) % 64 == 0,
		 "tree nodes fill cache lines");

/* Nodes replaced by one update, freed together after a grace period. */
struct retired {
	struct ps__rcu_head rcu;
	struct ps__itree_node *list;
};

/* One update in progress: what it allocated and what it replaced. */
struct upd {
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

/* The subtree's largest last (its entry's maxl in the parent). */
static uint64_t node_max(const struct ps__itree_node *t)
{
	return t->pmax[t->n - 1];
}

/* --- changing fresh nodes (W1) -------------------------------------------- */

static void fix(struct ps__itree_node *t)
{
	uint64_t m = 0;

	for (uint32_t i = 0; i < t->n; i++) {
		if (t->maxl[i] > m)
			m = t->maxl[i];
		t->pmax[i] = m;
	}
}

static struct ps__itree_node *node_new(struct upd *u, bool leaf)
{
	struct ps__itree_node *n = aligned_alloc(64, sizeof(*n));

	if (!n) {
		u->failed = true;
		return NULL;
	}
	n->n = 0;
	n->leaf = leaf;
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
	struct ps__itree_node *n = node_new(u, old->leaf);

	if (!n)
		return NULL;
	n->n = old->n;
	memcpy(n->start, old->start, sizeof(n->start));
	memcpy(n->pmax, old->pmax, sizeof(n->pmax));
	memcpy(n->maxl, old->maxl, sizeof(n->maxl));
	memcpy(n->ptr, old->ptr, sizeof(n->ptr));
	retire(u, old);
	return n;
}

static void entry_set(struct ps__itree_node *t, uint32_t i, uint64_t start,
		      uint64_t maxl, void *ptr)
{
	t->start[i] = start;
	t->maxl[i] = maxl;
	t->ptr[i] = ptr;
}

/* Entry @i of @t describes the node @child (after @child changed). */
static void entry_child(struct ps__itree_node *t, uint32_t i,
			struct ps__itree_node *child)
{
	entry_set(t, i, child->start[0], node_max(child), child);
}

static void entry_move(struct ps__itree_node *to, uint32_t ti,
		       const struct ps__itree_node *from, uint32_t fi,
		       uint32_t count)
{
	memmove(&to->start[ti], &from->start[fi], count * sizeof(uint64_t));
	memmove(&to->maxl[ti], &from->maxl[fi], count * sizeof(uint64_t));
	memmove(&to->ptr[ti], &from->ptr[fi], count * sizeof(void *));
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
	r = node_new(u, t->leaf);
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
	pos = upper_bound(t->start, t->n, start);
	if (t->leaf) {
		*right = entry_insert(u, n, pos, start, last, item, spine);
		return u->failed ? t : n;
	}
	pos = pos ? pos - 1 : 0; /* the child whose range takes start */
	child = tr_insert(u, t->ptr[pos], start, last, item,
			  spine && pos == t->n - 1, &split);
	if (u->failed)
		return t;
	entry_child(n, pos, child);
	fix(n);
	if (split)
		*right = entry_insert(u, n, pos + 1, split->start[0],
				      node_max(split), split, spine);
	return u->failed ? t : n;
}

/* The root split in two: a new root above both halves. */
static struct ps__itree_node *grow_root(struct upd *u,
					struct ps__itree_node *left,
					struct ps__itree_node *right)
{
	struct ps__itree_node *r = node_new(u, false);

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
	struct ps__itree_node *c = p->ptr[i], *nb = p->ptr[j], *l, *r;
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
	uint32_t lo = lower_bound(t->start, t->n, start);
	uint32_t hi = upper_bound(t->start, t->n, start);
	struct ps__itree_node *n, *child = NULL;
	uint32_t i;

	if (t->leaf) {
		for (i = lo; i < hi && t->ptr[i] != item; i++)
			;
		if (i == hi)
			return t;
		u->found = true;
	} else {
		/* Equal starts may span children: from the one before lo. */
		for (i = lo ? lo - 1 : 0; i < hi; i++) {
			child = tr_remove(u, t->ptr[i], start, item);
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
	lo = lower_bound(t->start, t->n, start);
	hi = upper_bound(t->start, t->n, start);
	if (t->leaf) {
		for (uint32_t i = lo; i < hi; i++)
			if (t->ptr[i] == item)
				return true;
		return false;
	}
	for (uint32_t i = lo ? lo - 1 : 0; i < hi; i++)
		if (tr_contains(t->ptr[i], start, item))
			return true;
	return false;
}

static void free_list(struct ps__itree_node *n)
{
	while (n) {
		struct ps__itree_node *next = n->gc_next;

		free(n);
		n = next;
	}
}

static void free_retired(struct ps__rcu_head *h)
{
	struct retired *r = (struct retired *)((char *)h -
					       offsetof(struct retired, rcu));

	free_list(r->list);
	free(r);
}

/*
 * W2: hand the nodes an update replaced to liburcu. @batch was allocated
 * before the update, so this cannot fail (and never waits for a grace
 * period, so it is safe inside a read-side section).
 */
static void commit(struct upd *u, struct retired *batch)
{
	if (!u->retired) {
		free(batch);
		return;
	}
	batch->list = u->retired;
	ps__rcu_call(&batch->rcu, free_retired);
}

static void free_tree(struct ps__itree_node *t)
{
	if (!t->leaf)
		for (uint32_t i = 0; i < t->n; i++)
			free_tree(t->ptr[i]);
	free(t);
}

/* S1, S2, order and maxima below @t; -EUCLEAN at the first break. */
static int check_node(const struct ps__itree_node *t, unsigned int depth,
		      bool root, bool spine, struct ps__itree_shape *sh)
{
	uint64_t m = 0;

	if (t->n < 1 || t->n > TREE_B || (!root && !spine && t->n < TREE_MIN) ||
	    (root && !t->leaf && t->n < 2))
		return -EUCLEAN;
	sh->nodes++;
	for (uint32_t i = 0; i < t->n; i++) {
		if (i && t->start[i] < t->start[i - 1])
			return -EUCLEAN;
		m = t->maxl[i] > m ? t->maxl[i] : m;
		if (t->pmax[i] != m || !t->ptr[i])
			return -EUCLEAN;
	}
	if (t->leaf) {
		if (sh->depth && sh->depth != depth)
			return -EUCLEAN; /* S1 */
		sh->depth = depth;
		sh->entries += t->n;
		for (uint32_t i = 0; i < t->n; i++)
			if (t->maxl[i] < t->start[i])
				return -EUCLEAN;
		return 0;
	}
	for (uint32_t i = 0; i < t->n; i++) {
		const struct ps__itree_node *c = t->ptr[i];
		int rc;

		if (c->n < 1 || c->start[0] != t->start[i] ||
		    node_max(c) != t->maxl[i] ||
		    (i + 1 < t->n && c->start[c->n - 1] > t->start[i + 1]))
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
}

void ps__itree_destroy(struct ps__itree *t)
{
	/* Relaxed: no reader or writer runs (the caller's promise). */
	struct ps__itree_node *root =
		atomic_load_explicit(&t->root, memory_order_relaxed);

	if (root)
		free_tree(root);
	ps__itree_init(t);
}

int ps__itree_insert(struct ps__itree *t, uint64_t start, uint64_t last,
		     void *item)
{
	struct upd u = {NULL, NULL, false, false};
	struct ps__itree_node *root, *split = NULL;
	struct retired *batch;

	if (start > last || !item)
		return -EINVAL;
	/* Relaxed: writers are serialised; only they store root. */
	root = atomic_load_explicit(&t->root, memory_order_relaxed);
	if (tr_contains(root, start, item))
		return -EEXIST;
	batch = malloc(sizeof(*batch));
	if (!batch)
		return -ENOMEM;
	if (!root) {
		root = node_new(&u, true);
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
		free_list(u.fresh);
		free(batch);
		return -ENOMEM;
	}
	t->count++;
	/* T1 - Release: the fresh nodes and the item first; pairs with R1. */
	atomic_store_explicit(&t->root, root, memory_order_release);
	commit(&u, batch);
	return 0;
}

int ps__itree_remove(struct ps__itree *t, uint64_t start, const void *item)
{
	struct upd u = {NULL, NULL, false, false};
	struct ps__itree_node *root;
	struct retired *batch;

	/* Relaxed: writers are serialised; only they store root. */
	root = atomic_load_explicit(&t->root, memory_order_relaxed);
	if (!root)
		return -ENOENT;
	batch = malloc(sizeof(*batch));
	if (!batch)
		return -ENOMEM;
	root = tr_remove(&u, root, start, item);
	if (u.failed || !u.found) {
		free_list(u.fresh);
		free(batch);
		return u.failed ? -ENOMEM : -ENOENT;
	}
	/* A root left with one child gives way to it (S2). */
	while (root && !root->leaf && root->n == 1) {
		struct ps__itree_node *child = root->ptr[0];

		retire(&u, root); /* fresh or not: freed after W2 */
		root = child;
	}
	t->count--;
	/* T1 - Release: the fresh nodes first; pairs with R1. */
	atomic_store_explicit(&t->root, root, memory_order_release);
	commit(&u, batch);
	return 0;
}

bool ps__itree_contains(const struct ps__itree *t, uint64_t start,
			const void *item)
{
	/* Relaxed: the writer's own view (writers are serialised). */
	return tr_contains(atomic_load_explicit(&t->root, memory_order_relaxed),
			   start, item);
}

static bool walk(const struct ps__itree_node *t, uint64_t start, uint64_t last,
		 ps__itree_visit_fn fn, void *ctx)
{
	uint32_t hi = upper_bound(t->start, t->n, last);

	for (uint32_t i = lower_bound(t->pmax, hi, start); i < hi; i++) {
		if (t->maxl[i] < start)
			continue;
		if (!t->leaf) {
			if (!walk(t->ptr[i], start, last, fn, ctx))
				return false;
		} else if (!fn(ctx, t->ptr[i], t->start[i], t->maxl[i])) {
			return false;
		}
	}
	return true;
}

bool ps__itree_visit(const struct ps__itree *t, uint64_t start, uint64_t last,
		     ps__itree_visit_fn fn, void *ctx)
{
	/* R1 - Acquire: pairs with T1; the version's nodes are visible. */
	const struct ps__itree_node *root =
		atomic_load_explicit(&t->root, memory_order_acquire);

	return !root || walk(root, start, last, fn, ctx);
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
