/* SPDX-License-Identifier: MIT */
/*
 * lib/itree.h - an interval set searched without locks under RCU (internal,
 * not installed).
 *
 * A set of entries (start, last, item): the closed interval [start, last]
 * and an opaque pointer. Equal starts, equal intervals and overlapping
 * intervals are all allowed; the pair (start, item) is the entry's identity,
 * so one item may be in the set once per start. The tree never reads the
 * items: it stores them and hands them back.
 *
 *   writers   ps__itree_insert(), _remove(), _contains(), _count(),
 *             _destroy(): serialised by the caller (the notifier's mutex).
 *             Each insert or remove builds a new version beside the
 *             published one and publishes it with one release store, so
 *             everything the caller wrote to the item before the call is
 *             visible to a reader that finds the item (T1 in lib/itree.c).
 *   readers   ps__itree_visit(): inside an RCU read-side section of
 *             lib/rcu.h (ps__rcu_read_lock), concurrently with a writer.
 *             It walks one version, fixed when it starts: every entry of
 *             that version overlapping the query, and nothing else, even
 *             while writers publish newer ones. Memory a version uses is
 *             freed only after every section that may see it has ended.
 *
 * Progress: visit is wait-free (bounded by the version's size; it never
 * retries); insert and remove are blocking only through malloc when the
 * tree's node pool needs a new chunk (lib/itree-pool.h), and never wait for
 * a grace period: replaced nodes return to the pool through call_rcu.
 *
 * The node layout, the search and the proof notes are private to
 * lib/itree.c; nothing here depends on them.
 */
#ifndef PS_LIB_ITREE_H
#define PS_LIB_ITREE_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stdint.h>

struct ps__itree_node;
struct ps__itree_pool;

/*
 * Entries per node, and the fewest a node off the tree's right spine holds:
 * the depth is at most 1 + log_3(n) for n entries (Shape in lib/itree.c).
 * Tests state their bounds with these.
 */
#define PS__ITREE_FANOUT 8
#define PS__ITREE_MIN 3

/* An interval set. Embed it; ps__itree_init() before use. */
struct ps__itree {
	PS_ATOMIC(struct ps__itree_node *) root; /* NULL: empty */
	uint64_t count;				 /* writer-only */
	struct ps__itree_pool *pool; /* the nodes' memory; writer-only */
};

/*
 * Called by ps__itree_visit() for each overlapping entry, in ascending order
 * of start (entries with equal starts in an unspecified order). Return true
 * to go on, false to stop the visit.
 */
typedef bool (*ps__itree_visit_fn)(void *ctx, void *item, uint64_t start,
				   uint64_t last);

/* An empty set. Before the set is shared. */
void ps__itree_init(struct ps__itree *t);

/*
 * Free every node now (without a grace period). No reader may be inside a
 * visit of @t, nor start one, and no writer may run. Nodes replaced by
 * earlier updates and still waiting for their grace period keep the node
 * pool allocated; the last of them to return frees it. The
 * items are the caller's. Afterwards @t is empty (init again to reuse).
 */
void ps__itree_destroy(struct ps__itree *t);

/*
 * Add (start, last, item). Writer. O(log n): a path copy.
 * Return: 0; -EINVAL if start > last or @item is NULL; -EEXIST if @item is
 * already in the set at @start; -ENOMEM. On error the set is unchanged
 * and nothing was published.
 */
int ps__itree_insert(struct ps__itree *t, uint64_t start, uint64_t last,
		     void *item);

/*
 * Remove the entry of @item at @start. Writer. O(log n): a path copy,
 * merging or refilling nodes that fall below a quarter full. A reader that
 * started before the call may still see @item until its section ends.
 * Return: 0; -ENOENT if there is no such entry; -ENOMEM (the set is then
 * unchanged; a later call may succeed once memory is freed).
 */
int ps__itree_remove(struct ps__itree *t, uint64_t start, const void *item);

/* Is @item in the set at @start? Writer (or a quiescent set). O(log n). */
bool ps__itree_contains(const struct ps__itree *t, uint64_t start,
			const void *item);

/* The number of entries. Writer (or a quiescent set). */
static inline uint64_t ps__itree_count(const struct ps__itree *t)
{
	return t->count;
}

/*
 * Call @fn for every entry of the current version that overlaps
 * [start, last] (start <= last), in ascending order of start, until it
 * returns false. Reader: call it inside ps__rcu_read_lock()/_unlock();
 * @fn runs inside that section (it may block, delaying grace periods, and
 * may call the writers' functions if it holds their serialisation).
 * Complexity: O(log n + hits) when the intervals do not overlap each
 * other; with overlapping ones a node is also entered when its starts reach
 * the query and its largest last does, without a hit below.
 * Return: false if @fn stopped the visit, else true.
 */
bool ps__itree_visit(const struct ps__itree *t, uint64_t start, uint64_t last,
		     ps__itree_visit_fn fn, void *ctx);

/*
 * The shape of the current version: @depth is 0 when empty and 1 for a
 * single leaf; @nodes and @entries are counted by a walk.
 */
struct ps__itree_shape {
	unsigned int depth;
	uint64_t nodes;
	uint64_t entries;
};

/*
 * Check every invariant of lib/itree.c (order, the maxima kept per node,
 * fill, equal leaf depth, the count) and describe the shape, for tests and
 * fuzzers. Writer (or a quiescent set). O(n).
 * Return: 0 with *@shape filled in, or -EUCLEAN if an invariant is broken.
 */
int ps__itree_check(const struct ps__itree *t, struct ps__itree_shape *shape);

#endif /* PS_LIB_ITREE_H */
