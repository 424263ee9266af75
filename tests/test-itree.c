// SPDX-License-Identifier: MIT
/*
 * tests/test-itree.c - the internal RCU interval tree (lib/itree.h): the
 * empty set, insert/remove/contains, overlaps at every boundary, deep trees
 * that split and merge nodes (the shape invariants S1/S2 of lib/itree.c,
 * checked after updates), large counts, random operations against a brute-force
 * array, a visit that keeps its version while the writer changes the set under
 * it, and readers racing a writer: every visit must see exactly one published
 * version (bounded, and a "stress" tcase sized by PS_STRESS_ITERS). The node
 * pool (lib/itree-pool.h): replaced nodes come back after a grace period and
 * are reused, never before; a tree destroyed with batches pending frees its
 * pool when the last one returns.
 */
#include "../lib/itree-pool.h"
#include "../lib/itree.h"
#include "../lib/rcu.h"

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* --- helpers -------------------------------------------------------------- */

/* Items are elements of this array; an item's id is its index. */
#define NITEMS 8192
static int items[NITEMS];

static void *item(unsigned int id)
{
	return &items[id];
}

static unsigned int id_of(const void *p)
{
	return (unsigned int)((const int *)p - items);
}

/* What a visit saw, in order. */
struct seen {
	unsigned int n, cap;
	unsigned int *id;
	uint64_t *start, *last;
	unsigned int stop_after; /* 0: never stop */
};

static bool record(void *ctx, void *it, uint64_t start, uint64_t last)
{
	struct seen *s = ctx;

	if (s->n < s->cap) {
		s->id[s->n] = id_of(it);
		s->start[s->n] = start;
		s->last[s->n] = last;
	}
	s->n++;
	return !s->stop_after || s->n < s->stop_after;
}

static void seen_init(struct seen *s, unsigned int cap)
{
	memset(s, 0, sizeof(*s));
	s->cap = cap;
	s->id = calloc(cap, sizeof(*s->id));
	s->start = calloc(cap, sizeof(*s->start));
	s->last = calloc(cap, sizeof(*s->last));
	ck_assert(s->id && s->start && s->last);
}

static void seen_free(struct seen *s)
{
	free(s->id);
	free(s->start);
	free(s->last);
}

/* Visit [start, last] inside a read-side section; returns visit's result. */
static bool visit(const struct ps__itree *t, uint64_t start, uint64_t last,
		  struct seen *s)
{
	bool all;

	s->n = 0;
	ps__rcu_read_lock();
	all = ps__itree_visit(t, start, last, record, s);
	ps__rcu_read_unlock();
	return all;
}

/* How many entries overlap [start, last] (the order is checked too). */
static unsigned int hits(const struct ps__itree *t, uint64_t start,
			 uint64_t last)
{
	struct seen s;
	unsigned int n;

	seen_init(&s, 64);
	ck_assert(visit(t, start, last, &s));
	for (unsigned int i = 1; i < s.n && i < s.cap; i++)
		ck_assert_uint_le(s.start[i - 1], s.start[i]);
	n = s.n;
	seen_free(&s);
	return n;
}

static struct ps__itree_shape shape(const struct ps__itree *t)
{
	struct ps__itree_shape sh;

	ck_assert_int_eq(ps__itree_check(t, &sh), 0);
	return sh;
}

/* The largest depth S2 allows for n entries: 1 + floor(log_MIN(n)). */
static unsigned int depth_bound(uint64_t n)
{
	unsigned int d = 1;

	for (uint64_t p = 1; p * PS__ITREE_MIN <= n; p *= PS__ITREE_MIN)
		d++;
	return d;
}

/*
 * The shape of n > 0 entries inserted in ascending order: every node but
 * those of the right spine is full, so each level has ceil(below / FANOUT)
 * nodes, up to a single root.
 */
static struct ps__itree_shape full_shape(uint64_t n)
{
	struct ps__itree_shape sh = {1, 0, n};
	uint64_t level = (n + PS__ITREE_FANOUT - 1) / PS__ITREE_FANOUT;

	for (;;) {
		sh.nodes += level;
		if (level == 1)
			return sh;
		sh.depth++;
		level = (level + PS__ITREE_FANOUT - 1) / PS__ITREE_FANOUT;
	}
}

static void insert_ok(struct ps__itree *t, uint64_t start, uint64_t last,
		      unsigned int id)
{
	ck_assert_int_eq(ps__itree_insert(t, start, last, item(id)), 0);
}

static void remove_ok(struct ps__itree *t, uint64_t start, unsigned int id)
{
	ck_assert_int_eq(ps__itree_remove(t, start, item(id)), 0);
}

/* --- the empty set -------------------------------------------------------- */

START_TEST(empty_set)
{
	struct ps__itree t;
	struct ps__itree_shape sh;
	struct seen s;

	ps__itree_init(&t);
	seen_init(&s, 4);
	ck_assert(visit(&t, 0, UINT64_MAX, &s));
	ck_assert_uint_eq(s.n, 0);
	ck_assert_int_eq(ps__itree_remove(&t, 0, item(0)), -ENOENT);
	ck_assert(!ps__itree_contains(&t, 0, item(0)));
	ck_assert_uint_eq(ps__itree_count(&t), 0);
	sh = shape(&t);
	ck_assert_uint_eq(sh.depth, 0);
	ck_assert_uint_eq(sh.nodes, 0);
	/* Bad entries are refused and leave it empty. */
	ck_assert_int_eq(ps__itree_insert(&t, 2, 1, item(0)), -EINVAL);
	ck_assert_int_eq(ps__itree_insert(&t, 0, 0, NULL), -EINVAL);
	ck_assert_uint_eq(ps__itree_count(&t), 0);
	/* One entry, then none again: back to an empty root. */
	insert_ok(&t, 5, 5, 0);
	ck_assert_uint_eq(shape(&t).depth, 1);
	remove_ok(&t, 5, 0);
	ck_assert_uint_eq(shape(&t).depth, 0);
	ck_assert(visit(&t, 0, UINT64_MAX, &s));
	ck_assert_uint_eq(s.n, 0);
	ps__itree_destroy(&t);
	ps__itree_destroy(&t); /* an empty set: nothing to free */
	seen_free(&s);
}
END_TEST

/* --- insert, remove, contains --------------------------------------------- */

START_TEST(insert_remove_contains)
{
	struct ps__itree t;
	struct seen s;

	ps__itree_init(&t);
	seen_init(&s, 8);
	insert_ok(&t, 100, 199, 1);
	insert_ok(&t, 300, 399, 2);
	insert_ok(&t, 100, 149, 3); /* the same start, another item */
	/* The identity is (start, item): the same item at another start. */
	insert_ok(&t, 500, 599, 1);
	ck_assert_int_eq(ps__itree_insert(&t, 100, 199, item(1)), -EEXIST);
	ck_assert_int_eq(ps__itree_insert(&t, 100, 5000, item(1)), -EEXIST);
	ck_assert_uint_eq(ps__itree_count(&t), 4);
	ck_assert(ps__itree_contains(&t, 100, item(1)));
	ck_assert(ps__itree_contains(&t, 500, item(1)));
	ck_assert(ps__itree_contains(&t, 100, item(3)));
	ck_assert(!ps__itree_contains(&t, 300, item(1)));
	ck_assert(!ps__itree_contains(&t, 101, item(3)));

	/* A visit reports the entries as inserted, in order of start. */
	ck_assert(visit(&t, 0, UINT64_MAX, &s));
	ck_assert_uint_eq(s.n, 4);
	ck_assert_uint_eq(s.start[0], 100);
	ck_assert_uint_eq(s.start[1], 100);
	ck_assert_uint_eq(s.last[0] + s.last[1], 199 + 149);
	ck_assert_uint_eq(s.id[2], 2);
	ck_assert_uint_eq(s.last[2], 399);
	ck_assert_uint_eq(s.id[3], 1);
	ck_assert_uint_eq(s.start[3], 500);

	/* Remove finds the entry by (start, item), once. */
	ck_assert_int_eq(ps__itree_remove(&t, 300, item(1)), -ENOENT);
	ck_assert_int_eq(ps__itree_remove(&t, 101, item(3)), -ENOENT);
	remove_ok(&t, 100, 1);
	ck_assert_int_eq(ps__itree_remove(&t, 100, item(1)), -ENOENT);
	ck_assert(ps__itree_contains(&t, 500, item(1)));
	ck_assert(ps__itree_contains(&t, 100, item(3)));
	ck_assert_uint_eq(ps__itree_count(&t), 3);
	ck_assert_uint_eq(hits(&t, 150, 150), 0); /* only [100, 149] is left */
	ck_assert_uint_eq(hits(&t, 149, 149), 1);
	/* After removal the same pair can come back. */
	insert_ok(&t, 100, 199, 1);
	ck_assert_uint_eq(hits(&t, 150, 150), 1);
	ck_assert_uint_eq(shape(&t).entries, 4);
	ps__itree_destroy(&t);
	seen_free(&s);
}
END_TEST

/* --- overlaps at the boundaries ------------------------------------------- */

START_TEST(overlap_boundaries)
{
	struct ps__itree t;
	struct seen s;

	ps__itree_init(&t);
	seen_init(&s, 8);
	insert_ok(&t, 10, 20, 0);
	/* Closed intervals: touching counts, one short does not. */
	ck_assert_uint_eq(hits(&t, 0, 9), 0);
	ck_assert_uint_eq(hits(&t, 0, 10), 1);
	ck_assert_uint_eq(hits(&t, 20, 30), 1);
	ck_assert_uint_eq(hits(&t, 21, 30), 0);
	ck_assert_uint_eq(hits(&t, 15, 15), 1);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), 1);
	ck_assert_uint_eq(hits(&t, 11, 19), 1); /* inside */

	/* The ends of the 64-bit space. */
	insert_ok(&t, 0, 0, 1);
	insert_ok(&t, UINT64_MAX, UINT64_MAX, 2);
	insert_ok(&t, 0, UINT64_MAX, 3);
	ck_assert_uint_eq(hits(&t, 0, 0), 2);
	ck_assert_uint_eq(hits(&t, UINT64_MAX, UINT64_MAX), 2);
	ck_assert_uint_eq(hits(&t, 1, 9), 1);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), 4);
	ck_assert_uint_eq(hits(&t, UINT64_MAX - 1, UINT64_MAX - 1), 1);

	/* A long interval starting early is found past later short ones. */
	for (unsigned int i = 0; i < 200; i++)
		insert_ok(&t, 1000 + 10 * i, 1000 + 10 * i + 4, 10 + i);
	insert_ok(&t, 999, 5000, 300);
	ck_assert_uint_eq(hits(&t, 2994, 2994), 3); /* [2990, 2994] too */
	ck_assert_uint_eq(hits(&t, 2995, 2999), 2); /* [999, 5000], [0, max] */
	ck_assert_uint_eq(hits(&t, 5000, 5001), 2);
	ck_assert_uint_eq(hits(&t, 5001, 5001), 1); /* only [0, max] */

	/* The visit stops when asked, and says so. */
	s.stop_after = 2;
	ck_assert(!visit(&t, 0, UINT64_MAX, &s));
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.start[0], 0);
	ck_assert_uint_eq(s.start[1], 0);
	s.stop_after = 0;
	ps__itree_destroy(&t);
	seen_free(&s);
}
END_TEST

/*
 * A tree of intervals that do not overlap each other is searched without the
 * maxima (lib/itree.c, Search): one candidate per level while the query starts
 * at or after that entry's start. Queries that start before it (across a gap
 * and a start, at every node boundary too), in a gap, and one entry that
 * overlaps its neighbour or a long one over many leaves, which make nodes
 * not disjoint, then their removal: every answer as the intervals say.
 */
START_TEST(disjoint_shortcut)
{
	enum { N = 1000 };
	struct ps__itree t;

	ps__itree_init(&t);
	for (unsigned int i = 0; i < N; i++)
		insert_ok(&t, 10 * i, 10 * i + 4, i);
	ck_assert_uint_eq(shape(&t).depth, 4);
	for (uint64_t i = 0; i < N; i++) {
		ck_assert_uint_eq(hits(&t, 10 * i + 2, 10 * i + 2), 1);
		ck_assert_uint_eq(hits(&t, 10 * i + 5, 10 * i + 9), 0);
		ck_assert_uint_eq(hits(&t, 10 * i + 5, 10 * i + 10), i + 1 < N);
		ck_assert_uint_eq(hits(&t, 10 * i + 4, 10 * i + 10),
				  1 + (i + 1 < N));
		ck_assert_uint_eq(hits(&t, 10 * i, 10 * i + 25),
				  i + 2 < N ? 3 : N - i);
	}
	/* One entry over its neighbour's start: its node is not disjoint. */
	insert_ok(&t, 10 * 77 + 1, 10 * 78 + 1, N);
	ck_assert_uint_eq(hits(&t, 10 * 78 + 1, 10 * 78 + 1), 2);
	ck_assert_uint_eq(hits(&t, 10 * 78 + 2, 10 * 78 + 2), 1);
	ck_assert_uint_eq(hits(&t, 10 * 77 + 5, 10 * 77 + 9), 1);
	ck_assert_uint_eq(hits(&t, 10 * 500 + 2, 10 * 500 + 2), 1);
	remove_ok(&t, 10 * 77 + 1, N);
	ck_assert_uint_eq(hits(&t, 10 * 78 + 1, 10 * 78 + 1), 1);
	/* One over many leaves: every node on its path reaches far. */
	insert_ok(&t, 3, 10 * 600, N + 1);
	for (uint64_t i = 0; i < N; i++) {
		unsigned int over = 10 * i + 2 >= 3 && 10 * i + 2 <= 10 * 600;

		ck_assert_uint_eq(hits(&t, 10 * i + 2, 10 * i + 2), 1 + over);
		ck_assert_uint_eq(hits(&t, 10 * i + 6, 10 * i + 6),
				  10 * i + 6 <= 10 * 600);
	}
	ps__itree_destroy(&t);
}
END_TEST

/* --- deep trees: splits, merges and the depth bound ----------------------- */

START_TEST(split_and_merge)
{
	enum { N = 5000 };
	struct ps__itree t;
	struct ps_test_rng rng = ps_test_rng_new(1);
	static unsigned int order[N];
	struct ps__itree_shape sh, full = full_shape(N);
	unsigned int full_depth;

	ps__itree_init(&t);
	/* Ascending: right-end splits fill the nodes (n / FANOUT leaves). */
	for (unsigned int i = 0; i < N; i++) {
		insert_ok(&t, 16 * (uint64_t)i, 16 * (uint64_t)i + 7, i);
		if (i % 97 == 0)
			(void)shape(&t);
	}
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, full.nodes); /* 625 + 79 + 10 + 2 + 1 */
	ck_assert_uint_eq(sh.depth, full.depth); /* 5 */
	full_depth = sh.depth;

	/* Remove in random order down to 10: merges keep S2 and shrink it. */
	for (unsigned int i = 0; i < N; i++)
		order[i] = i;
	for (unsigned int i = N - 1; i > 0; i--) {
		unsigned int j = (unsigned int)ps_test_below(&rng, i + 1);
		unsigned int x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	for (unsigned int k = 0; k < N - 10; k++) {
		remove_ok(&t, 16 * (uint64_t)order[k], order[k]);
		if (k % 53 == 0 || N - k < 300) {
			sh = shape(&t); /* S1, S2 at every size */
			ck_assert_uint_le(sh.depth,
					  depth_bound(ps__itree_count(&t)));
		}
	}
	sh = shape(&t);
	ck_assert_uint_eq(sh.entries, 10);
	ck_assert_uint_le(sh.depth, 2); /* no chain of near-empty nodes */
	ck_assert_uint_lt(sh.depth, full_depth);
	for (unsigned int k = N - 10; k < N; k++)
		ck_assert_uint_eq(hits(&t, 16 * (uint64_t)order[k],
				       16 * (uint64_t)order[k]),
				  1);

	/* Descending and random inserts split in halves; grow it again. */
	for (unsigned int i = N - 10; i-- > 0;) {
		unsigned int id = order[i];

		insert_ok(&t, 16 * (uint64_t)id, 16 * (uint64_t)id + 7, id);
	}
	sh = shape(&t);
	ck_assert_uint_eq(sh.entries, N);
	ck_assert_uint_le(sh.depth, depth_bound(N));
	for (unsigned int i = 0; i < N; i++)
		remove_ok(&t, 16 * (uint64_t)i, i);
	sh = shape(&t);
	ck_assert_uint_eq(sh.depth, 0);
	ps__itree_destroy(&t);
}
END_TEST

/*
 * The node boundaries of PS__ITREE_FANOUT entries: a full leaf, the entry
 * past it (a right-end split keeps the full node), an entry inside a full
 * leaf (split in halves), a second level that fills and grows a third, and
 * the refill and merge when a node drops below PS__ITREE_MIN. Every visit
 * across a boundary finds the entries on both sides.
 */
START_TEST(fanout_boundaries)
{
	enum { B = PS__ITREE_FANOUT };
	struct ps__itree t;
	struct ps__itree_shape sh;

	ck_assert_uint_eq(B, 8);
	ck_assert_uint_eq(PS__ITREE_MIN, 3);
	ps__itree_init(&t);
	for (unsigned int i = 0; i < B; i++)
		insert_ok(&t, 10 * (uint64_t)i, 10 * (uint64_t)i + 4, i);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, 1);
	ck_assert_uint_eq(sh.depth, 1);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), B); /* a full node */
	insert_ok(&t, 10 * B, 10 * B + 4, B);	       /* past the end */
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, 3);
	ck_assert_uint_eq(sh.depth, 2);
	ck_assert_uint_eq(hits(&t, 10 * (B - 1), 10 * B), 2); /* both leaves */
	ck_assert_uint_eq(hits(&t, 10 * B - 5, 10 * B - 1), 0);
	ck_assert_uint_eq(hits(&t, 10 * B + 4, UINT64_MAX), 1);
	/* Ascending to B * B entries fills B leaves; one more: a new level. */
	for (unsigned int i = B + 1; i < B * B; i++)
		insert_ok(&t, 10 * (uint64_t)i, 10 * (uint64_t)i + 4, i);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, full_shape(B * B).nodes);
	ck_assert_uint_eq(sh.depth, 2);
	insert_ok(&t, 10 * B * B, 10 * B * B + 4, B * B);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, full_shape(B * B + 1).nodes);
	ck_assert_uint_eq(sh.depth, 3);
	for (unsigned int i = 0; i <= B * B; i++) {
		ck_assert_uint_eq(hits(&t, 10 * (uint64_t)i + 4,
				       10 * (uint64_t)i + 10),
				  i < B * B ? 2 : 1);
		remove_ok(&t, 10 * (uint64_t)i, i);
	}
	ck_assert_uint_eq(shape(&t).nodes, 0);

	/* A full leaf split inside: 4 + 5, and S2 holds. */
	for (unsigned int i = 0; i < B; i++)
		insert_ok(&t, 10 * (uint64_t)i, 10 * (uint64_t)i, i);
	insert_ok(&t, 31, 31, 100);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, 3);
	ck_assert_uint_eq(hits(&t, 31, 40), 2); /* 31 | 40: the split */
	insert_ok(&t, 80, 80, 8);		/* right leaf: 5 */
	/* Left [0 10 20 30 31]: down to 2, refilled from the right (7 > 6). */
	remove_ok(&t, 0, 0);
	remove_ok(&t, 10, 1);
	remove_ok(&t, 20, 2);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, 3);
	ck_assert_uint_eq(sh.entries, 7);
	ck_assert_uint_eq(hits(&t, 0, 40), 3); /* [30 31 40] | [50 ... 80] */
	ck_assert_uint_eq(hits(&t, 40, 50), 2);
	/* Down to 2 again: 2 + 4 fit in one node; the root gives way. */
	remove_ok(&t, 30, 3);
	sh = shape(&t);
	ck_assert_uint_eq(sh.nodes, 1);
	ck_assert_uint_eq(sh.depth, 1);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), 6);
	ps__itree_destroy(&t);

	/*
	 * One leaf: a long entry first, short ones after it. A query inside
	 * the long one only must still find it behind the later starts, and
	 * a query ending at UINT64_MAX (which counts the unused keys too)
	 * must stop at the entries in use, in a full node and in one that is
	 * not; an entry may start at UINT64_MAX itself.
	 */
	ps__itree_init(&t);
	insert_ok(&t, 0, 100, 0);
	insert_ok(&t, 10, 11, 1);
	insert_ok(&t, 20, 21, 2);
	ck_assert_uint_eq(hits(&t, 50, 50), 1);
	ck_assert_uint_eq(hits(&t, 20, 20), 2);
	ck_assert_uint_eq(hits(&t, 12, UINT64_MAX), 2);
	ck_assert_uint_eq(hits(&t, 101, UINT64_MAX), 0);
	for (unsigned int i = 3; i < B - 1; i++)
		insert_ok(&t, 10 * (uint64_t)i, 10 * (uint64_t)i, i);
	insert_ok(&t, UINT64_MAX, UINT64_MAX, B - 1); /* full: key[7] = MAX */
	ck_assert_uint_eq(shape(&t).nodes, 1);
	ck_assert_uint_eq(hits(&t, UINT64_MAX, UINT64_MAX), 1);
	ck_assert_uint_eq(hits(&t, UINT64_MAX - 1, UINT64_MAX - 1), 0);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX - 1), B - 1);
	ck_assert_uint_eq(hits(&t, 61, UINT64_MAX), 2); /* [0, 100] too */
	ck_assert_uint_eq(hits(&t, 101, UINT64_MAX), 1);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), B);
	ps__itree_destroy(&t);
}
END_TEST

/*
 * Many entries with one start span several leaves: each can still be found,
 * refused twice and removed in any order, and the rest stay exact.
 */
START_TEST(equal_starts_span_leaves)
{
	enum { N = 300 };
	struct ps__itree t;
	struct ps_test_rng rng = ps_test_rng_new(2);
	static bool in[N];

	ps__itree_init(&t);
	insert_ok(&t, 6, 6, N); /* neighbours on both sides */
	insert_ok(&t, 8, 8, N + 1);
	for (unsigned int i = 0; i < N; i++) {
		insert_ok(&t, 7, 7 + i, i);
		in[i] = true;
	}
	for (unsigned int i = 0; i < N; i++)
		ck_assert_int_eq(ps__itree_insert(&t, 7, 7, item(i)), -EEXIST);
	ck_assert_uint_ge(shape(&t).depth, 2);
	for (unsigned int k = 0; k < N; k++) {
		unsigned int i = (unsigned int)ps_test_below(&rng, N);
		unsigned int want = 0;

		while (!in[i])
			i = (i + 1) % N;
		remove_ok(&t, 7, i);
		in[i] = false;
		ck_assert(!ps__itree_contains(&t, 7, item(i)));
		for (unsigned int j = 150; j < N; j++)
			want += in[j];
		ck_assert_uint_eq(hits(&t, 7 + 150, 7 + 150), want);
		if (k % 16 == 0)
			(void)shape(&t);
	}
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), 2);
	ps__itree_destroy(&t);
}
END_TEST

/* --- large counts --------------------------------------------------------- */

START_TEST(large_counts)
{
	enum { N = 100000 };
	static int big[N];
	struct ps__itree t;
	struct ps__itree_shape sh;
	struct ps_test_rng rng = ps_test_rng_new(3);

	ps__itree_init(&t);
	/* Page-like, non-overlapping: [4096 i, 4096 i + 4095], random order. */
	for (uint64_t i = 0; i < N; i++) {
		uint64_t k = (i * 7919) % N; /* a permutation: 7919 is prime */

		ck_assert_int_eq(ps__itree_insert(&t, k << 12, (k << 12) + 4095,
						  &big[k]),
				 0);
	}
	sh = shape(&t);
	ck_assert_uint_eq(sh.entries, N);
	ck_assert_uint_le(sh.depth, depth_bound(N));
	for (int q = 0; q < 2000; q++) {
		uint64_t a = ps_test_below(&rng, (uint64_t)N << 12);
		uint64_t len = 1 + ps_test_below(&rng, 5 * 4096);
		uint64_t b = a + len - 1;
		uint64_t want = ((b >> 12) < N ? (b >> 12) : N - 1) -
				(a >> 12) + 1;

		ck_assert_uint_eq(hits(&t, a, b), want);
	}
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), N);
	ck_assert_uint_eq(hits(&t, (uint64_t)N << 12, UINT64_MAX), 0);
	/* Remove every other one: the rest stay exact. */
	for (uint64_t k = 0; k < N; k += 2)
		ck_assert_int_eq(ps__itree_remove(&t, k << 12, &big[k]), 0);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), N / 2);
	ck_assert_uint_eq(hits(&t, 0, 4095), 0);
	ck_assert_uint_eq(hits(&t, 4096, 4096), 1);
	sh = shape(&t);
	ck_assert_uint_le(sh.depth, depth_bound(N / 2));
	ps__itree_destroy(&t); /* frees the rest now (ASan: no leak) */
	ck_assert_uint_eq(ps__itree_count(&t), 0);
}
END_TEST

/* --- the node pool -------------------------------------------------------- */

static struct ps__itree_pool_stats pool_stats(const struct ps__itree *t)
{
	struct ps__itree_pool_stats st;

	ps__itree_pool_stats(t->pool, &st);
	return st;
}

/*
 * Churn after a grace period reuses the replaced nodes: the pool stops
 * growing. Before the grace period nothing is reused (a reader in a section
 * could still be reading them).
 */
START_TEST(pool_reuses_after_grace_period)
{
	enum { N = 2000, ROUNDS = 4 };
	struct ps__itree t;
	struct ps__itree_pool_stats st, first = {0, 0, 0};

	ps__itree_init(&t);
	ck_assert_ptr_null(t.pool); /* init allocates nothing */
	for (int r = 0; r < ROUNDS; r++) {
		ps__rcu_read_lock(); /* holds this round's grace periods */
		for (unsigned int i = 0; i < N; i++)
			ck_assert_int_eq(ps__itree_insert(&t, 2 * i, 2 * i,
							  item(i)),
					 0);
		for (unsigned int i = 0; i < N; i += 2)
			ck_assert_int_eq(ps__itree_remove(&t, 2 * i, item(i)),
					 0);
		ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), N / 2);
		for (unsigned int i = 1; i < N; i += 2)
			ck_assert_int_eq(ps__itree_remove(&t, 2 * i, item(i)),
					 0);
		/*
		 * This round's replaced nodes are all pending; every node it
		 * took came from the rounds before (first.objects: 0 in the
		 * first round, then the nodes one round takes).
		 */
		ck_assert_uint_eq(pool_stats(&t).reused,
				  (uint64_t)r * first.objects);
		ps__rcu_read_unlock();
		ck_assert_uint_eq(shape(&t).entries, 0);
		ps__rcu_barrier(); /* every batch is back in the pool */
		if (!r) {
			first = pool_stats(&t);
			continue;
		}
		st = pool_stats(&t);
		/* Round r took every node from round r - 1's returns. */
		ck_assert_uint_eq(st.objects, first.objects);
		ck_assert_uint_eq(st.chunks, first.chunks);
		ck_assert_uint_eq(st.reused, (uint64_t)r * first.objects);
	}
	ps__itree_destroy(&t);
	ck_assert_ptr_null(t.pool);
}
END_TEST

/*
 * Destroy with batches still pending (a reader holds their grace period):
 * the pool lives on until the last batch returns (ASan: no use after free,
 * no leak), and the tree can be used again at once.
 */
START_TEST(pool_outlives_destroy)
{
	struct ps__itree t;

	ps__itree_init(&t);
	ps__rcu_read_lock();
	for (unsigned int i = 0; i < 500; i++)
		ck_assert_int_eq(ps__itree_insert(&t, i, i + 10, item(i)), 0);
	for (unsigned int i = 0; i < 500; i += 3)
		ck_assert_int_eq(ps__itree_remove(&t, i, item(i)), 0);
	ps__itree_destroy(&t);
	ck_assert_uint_eq(ps__itree_count(&t), 0);
	ck_assert_int_eq(ps__itree_insert(&t, 7, 9, item(7)), 0);
	ck_assert_uint_eq(hits(&t, 0, UINT64_MAX), 1);
	ps__rcu_read_unlock();
	ps__rcu_barrier(); /* the old pool's batches return; it is freed */
	ck_assert_int_eq(ps__itree_remove(&t, 7, item(7)), 0);
	ps__itree_destroy(&t);
	ps__rcu_barrier();
}
END_TEST

/* --- against a brute-force model ------------------------------------------ */

#define MODEL_N 700

START_TEST(matches_brute_force)
{
	struct ps__itree t;
	struct ps_test_rng rng = ps_test_rng_new(4);
	static uint64_t start[MODEL_N], last[MODEL_N];
	static bool in[MODEL_N];
	static unsigned int mark[MODEL_N];
	struct seen s;

	ps__itree_init(&t);
	seen_init(&s, MODEL_N + 1);
	memset(in, 0, sizeof(in));
	for (unsigned int i = 0; i < MODEL_N; i++) {
		start[i] = ps_test_below(&rng, 1 << 16);
		/* Mostly short, some long (nested and overlapping). */
		last[i] = start[i] + ps_test_below(&rng, i % 10 ? 64 : 1 << 14);
		if (i % 40 == 0)
			start[i] = start[0]; /* equal starts */
		if (last[i] < start[i])
			last[i] = start[i];
	}
	for (unsigned int round = 0; round < 20000; round++) {
		unsigned int i = (unsigned int)ps_test_below(&rng, MODEL_N);
		uint64_t qs = ps_test_below(&rng, 1 << 16);
		uint64_t ql = qs + ps_test_below(&rng, round % 7 ? 32 : 4096);
		unsigned int want = 0;

		if (in[i]) {
			ck_assert_int_eq(ps__itree_insert(&t, start[i], last[i],
							  item(i)),
					 -EEXIST);
			remove_ok(&t, start[i], i);
		} else {
			ck_assert_int_eq(ps__itree_remove(&t, start[i],
							  item(i)),
					 -ENOENT);
			insert_ok(&t, start[i], last[i], i);
		}
		in[i] = !in[i];
		ck_assert(visit(&t, qs, ql, &s));
		ck_assert_uint_le(s.n, MODEL_N);
		for (unsigned int k = 0; k < s.n; k++) {
			unsigned int id = s.id[k];

			ck_assert(in[id]);
			ck_assert_uint_eq(s.start[k], start[id]);
			ck_assert_uint_eq(s.last[k], last[id]);
			ck_assert(start[id] <= ql && qs <= last[id]);
			ck_assert(!k || s.start[k - 1] <= s.start[k]);
			ck_assert_uint_ne(mark[id], round + 1); /* once */
			mark[id] = round + 1;
		}
		for (unsigned int k = 0; k < MODEL_N; k++)
			want += in[k] && start[k] <= ql && qs <= last[k];
		ck_assert_uint_eq(s.n, want);
		if (round % 500 == 0)
			(void)shape(&t);
	}
	ps__itree_destroy(&t);
	seen_free(&s);
}
END_TEST

/* --- a visit keeps its version -------------------------------------------- */

/*
 * The callback of the first entry removes every entry and inserts new ones
 * (as a notifier callback may insert): the visit goes on over the version
 * it started with, whole, and the freed nodes wait for its section.
 */
struct rewrite {
	struct ps__itree *t;
	struct seen seen;
	bool done;
};

static bool rewrite_visit(void *ctx, void *it, uint64_t start, uint64_t last)
{
	struct rewrite *r = ctx;

	if (!r->done) {
		r->done = true;
		for (unsigned int i = 0; i < 500; i++)
			remove_ok(r->t, 10 * (uint64_t)i, i);
		for (unsigned int i = 0; i < 500; i++)
			insert_ok(r->t, 10 * (uint64_t)i + 5,
				  10 * (uint64_t)i + 5, 1000 + i);
	}
	return record(&r->seen, it, start, last);
}

START_TEST(visit_keeps_its_version)
{
	struct ps__itree t;
	struct rewrite r = {&t, {0}, false};

	ps__itree_init(&t);
	seen_init(&r.seen, 1000);
	for (unsigned int i = 0; i < 500; i++)
		insert_ok(&t, 10 * (uint64_t)i, 10 * (uint64_t)i, i);
	ps__rcu_read_lock();
	ck_assert(ps__itree_visit(&t, 0, UINT64_MAX, rewrite_visit, &r));
	ps__rcu_read_unlock();
	/* The old version, whole: ids 0..499 in order, none of the new. */
	ck_assert_uint_eq(r.seen.n, 500);
	for (unsigned int i = 0; i < 500; i++) {
		ck_assert_uint_eq(r.seen.id[i], i);
		ck_assert_uint_eq(r.seen.start[i], 10 * (uint64_t)i);
	}
	/* A new visit sees the new version. */
	ck_assert_uint_eq(hits(&t, 0, 9), 1);
	ck_assert_uint_eq(hits(&t, 10, 10), 0);
	ck_assert_uint_eq(ps__itree_count(&t), 500);
	(void)shape(&t);
	ps__itree_destroy(&t);
	seen_free(&r.seen);
}
END_TEST

/* --- readers racing a writer ---------------------------------------------- */

/*
 * The writer runs a known sequence of versions: a window of W consecutive
 * positions of an endless sequence of items slides along it (insert position
 * p, then remove position p - W), and a counter says how many operations
 * were published. A reader visits a random range and must see exactly the
 * entries of one version between the counter before its section and the
 * counter after it, plus one (the root of the next operation may be
 * published before its counter). The writer runs until it did its share and
 * every side overlapped in enough operations (harness.h): each reader's visits
 * while the writer progressed, the writer's operations while a reader did.
 */
#define RACE_W 300
#define RACE_M (RACE_W + 17) /* distinct items per window: M > W + 1 */

struct race {
	struct ps__itree t;
	uint64_t start[RACE_M], last[RACE_M];
	uint64_t ops;		   /* writer operations to run, at least */
	_Atomic(uint64_t) done;	   /* operations published */
	struct ps_test_overlap ov; /* side 0 the writer, then the readers */
	_Atomic(unsigned) readers; /* readers started (their sides) */
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) checked, skipped;
};

/* Positions live after operation @t: [*lo, *hi] (empty when lo > hi). */
static void race_live(uint64_t t, uint64_t *lo, uint64_t *hi)
{
	uint64_t u, q;

	if (t <= RACE_W) {
		*lo = 0;
		*hi = t ? t - 1 : 0;
		if (!t)
			*lo = 1; /* empty */
		return;
	}
	u = t - RACE_W;
	q = (u - 1) / 2;
	*lo = u % 2 ? q : q + 1;
	*hi = RACE_W + q;
}

static void *race_writer(void *arg)
{
	struct race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 0, 0);
	uint64_t t = 0;

	for (uint64_t p = 0; !ps_test_overlap_done(&me);
	     p++, ps_test_overlap_step(&me)) {
		unsigned int id = (unsigned int)(p % RACE_M);

		if (ps__itree_insert(&r->t, r->start[id], r->last[id],
				     item(id)))
			atomic_fetch_add(&r->violations, 1);
		/* Release: the version first; pairs with the readers. */
		atomic_store_explicit(&r->done, ++t, memory_order_release);
		if (p < RACE_W)
			continue;
		id = (unsigned int)((p - RACE_W) % RACE_M);
		if (ps__itree_remove(&r->t, r->start[id], item(id)))
			atomic_fetch_add(&r->violations, 1);
		/* Release: as above. */
		atomic_store_explicit(&r->done, ++t, memory_order_release);
	}
	return NULL;
}

static void race_violation(struct race *r, const char *what)
{
	fprintf(stderr, "itree race: %s\n", what);
	atomic_fetch_add(&r->violations, 1);
}

/* Is what @s saw of [qs, ql] exactly version @t's overlapping entries? */
static bool race_match(const struct race *r, uint64_t t, const bool *saw,
		       unsigned int nsaw, uint64_t qs, uint64_t ql)
{
	uint64_t lo, hi;
	unsigned int n = 0;

	race_live(t, &lo, &hi);
	for (uint64_t p = lo; p <= hi && lo <= hi; p++) {
		unsigned int id = (unsigned int)(p % RACE_M);

		if (r->start[id] <= ql && qs <= r->last[id]) {
			if (!saw[id])
				return false;
			n++;
		}
	}
	return n == nsaw;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	unsigned int side = 1 + atomic_fetch_add(&r->readers, 1);
	struct ps_test_rng rng = ps_test_rng_new(100 + side);
	struct ps_test_side me = ps_test_side(&r->ov, side, 1u << 0);
	struct seen s;
	bool saw[RACE_M];

	seen_init(&s, RACE_M + 1);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		/* Acquire: pairs with the writer's counter store. */
		uint64_t t0 = atomic_load_explicit(&r->done,
						   memory_order_acquire),
			 t1;
		uint64_t qs = ps_test_below(&rng, 1 << 20);
		uint64_t ql = qs +
			      ps_test_below(&rng, qs % 2 ? 1 << 8 : 1 << 18);
		bool ok = false;

		(void)visit(&r->t, qs, ql, &s);
		/* Acquire: a version visited is at most t1 + 1. */
		t1 = atomic_load_explicit(&r->done, memory_order_acquire);
		memset(saw, 0, sizeof(saw));
		for (unsigned int k = 0; k < s.n && k < s.cap; k++) {
			unsigned int id = s.id[k];

			if (id >= RACE_M || saw[id] ||
			    s.start[k] != r->start[id] ||
			    s.last[k] != r->last[id] || s.start[k] > ql ||
			    s.last[k] < qs ||
			    (k && s.start[k - 1] > s.start[k]))
				race_violation(r, "a wrong entry, or twice");
			else
				saw[id] = true;
		}
		if (t1 - t0 > 64) {
			/* Preempted: too many versions to try. */
			atomic_fetch_add(&r->skipped, 1);
		} else {
			for (uint64_t t = t0; t <= t1 + 1 && !ok; t++)
				ok = race_match(r, t, saw, s.n, qs, ql);
			if (!ok)
				race_violation(r, "a visit saw no one version");
			atomic_fetch_add(&r->checked, 1);
		}
	}
	seen_free(&s);
	return NULL;
}

/* @need: overlapped operations per side (0: the default). */
static void run_race(uint64_t ops, unsigned int readers, uint64_t need)
{
	static struct race r;
	pthread_t w, rd[PS_TEST_OVERLAP_SIDES - 1];
	uint64_t lo, hi;
	struct ps_test_rng rng = ps_test_rng_new(5);

	ck_assert_uint_le(readers, PS_TEST_OVERLAP_SIDES - 1);
	memset(&r, 0, sizeof(r));
	ps__itree_init(&r.t);
	r.ops = ops;
	ps_test_overlap_init(&r.ov, 1 + readers, need);
	r.ov.side[0].min_ops = (ops + RACE_W) / 2; /* about @ops versions */
	for (unsigned int i = 0; i < RACE_M; i++) {
		r.start[i] = i % 29 ? ps_test_below(&rng, 1 << 20) : r.start[0];
		r.last[i] = r.start[i] +
			    ps_test_below(&rng, i % 8 ? 1 << 12 : 1 << 17);
	}
	for (unsigned int i = 0; i < readers; i++)
		ck_assert_int_eq(pthread_create(&rd[i], NULL, race_reader, &r),
				 0);
	ck_assert_int_eq(pthread_create(&w, NULL, race_writer, &r), 0);
	pthread_join(w, NULL);
	for (unsigned int i = 0; i < readers; i++)
		pthread_join(rd[i], NULL);
	fprintf(stderr,
		"itree race: %llu writer ops, %u readers, %llu visits checked, "
		"%llu too wide to check\n",
		(unsigned long long)atomic_load(&r.done), readers,
		(unsigned long long)atomic_load(&r.checked),
		(unsigned long long)atomic_load(&r.skipped));
	ck_assert_uint_eq(atomic_load(&r.violations), 0);
	ck_assert_uint_gt(atomic_load(&r.checked), 0);
	ps_test_overlap_check(&r.ov, "itree writer vs readers");
	/* Quiescent: exactly the last version, and a well-formed tree. */
	race_live(atomic_load(&r.done), &lo, &hi);
	ck_assert_uint_eq(shape(&r.t).entries, hi - lo + 1);
	ps__itree_destroy(&r.t);
}

START_TEST(readers_see_one_version)
{
	run_race(20000, 1, 100);
}
END_TEST

START_TEST(stress_readers_and_writer)
{
	run_race(ps_test_stress_size("PS_STRESS_ITERS", 200000), 3, 0);
}
END_TEST

static Suite *itree_suite(void)
{
	Suite *s = suite_create("itree");
	TCase *tc;

	tc = ps_test_tcase(s, "empty", 10);
	tcase_add_test(tc, empty_set);

	tc = ps_test_tcase(s, "insert/remove/contains", 10);
	tcase_add_test(tc, insert_remove_contains);

	tc = ps_test_tcase(s, "overlap boundaries", 10);
	tcase_add_test(tc, overlap_boundaries);
	tcase_add_test(tc, disjoint_shortcut);

	tc = ps_test_tcase(s, "split and merge", 30);
	tcase_add_test(tc, split_and_merge);
	tcase_add_test(tc, fanout_boundaries);
	tcase_add_test(tc, equal_starts_span_leaves);

	tc = ps_test_tcase(s, "large counts", 60);
	tcase_add_test(tc, large_counts);

	tc = ps_test_tcase(s, "node pool", 30);
	tcase_add_test(tc, pool_reuses_after_grace_period);
	tcase_add_test(tc, pool_outlives_destroy);

	tc = ps_test_tcase(s, "brute force", 60);
	tcase_add_test(tc, matches_brute_force);

	tc = ps_test_tcase(s, "version", 30);
	tcase_add_test(tc, visit_keeps_its_version);
	tcase_add_test(tc, readers_see_one_version);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_test(tc, stress_readers_and_writer);
	return s;
}

PS_TEST_MAIN(itree_suite)
