// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-itree.c - the internal interval tree (lib/itree.h) against a
 * brute-force model: an array of entries.
 *
 * The input is a program. An operation is one byte: its low three bits
 * choose it, the rest are arguments; more follow where it needs them.
 *
 *   insert       (start, last, item): 0, -EEXIST for a duplicate, -EINVAL
 *                for start > last
 *   remove       an entry of the model, or an arbitrary (start, item):
 *                0 or -ENOENT
 *   contains     likewise, true or false
 *   visit        a range: every overlapping entry exactly once, in order of
 *                start, with its start and last, and nothing else
 *   visit, stop  the same, stopped after k calls: a prefix in start order
 *   visit, write the first call inserts and removes entries (as a
 *                notifier's callback may): the visit still sees exactly the
 *                version it started with
 *   bulk insert  up to 64 entries in a pattern (ascending, descending,
 *                equal starts, nested), to grow deep trees
 *   bulk remove  up to 64 entries of the model, to shrink them (merges);
 *                with the op's top bits all set, then wait for every
 *                grace-period callback, so the replaced nodes return to the
 *                tree's pool (lib/itree-pool.h) and later updates reuse
 *                them (under ASan a free pooled node is poisoned: a read of
 *                one before its reuse aborts)
 *
 * Addresses are drawn so that entries overlap, share starts, touch and sit
 * at the ends of the 64-bit space. After every operation the return value
 * against the model's, the count, and ps__itree_check() (order, maxima,
 * fill, depth). Any disagreement aborts. Each input ends with a destroy while
 * batches may be pending: the pool outlives it until they return.
 */
#include "../lib/itree.h"
#include "../lib/rcu.h"

#include "fuzz-check.h"
#include "fuzz-input.h"
#include "fuzz-leaks.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NITEMS 64   /* distinct items; identity is (start, item) */
#define MAXE 2048   /* model capacity */
#define MAXWRITES 8 /* mutations inside one visit */

static int items[NITEMS];

struct ent {
	uint64_t start, last;
	unsigned int id;
};

static struct ps__itree tree;
static struct ent model[MAXE];
static unsigned int nmodel;

/* --- the model ------------------------------------------------------------ */

static int model_find(uint64_t start, unsigned int id)
{
	for (unsigned int i = 0; i < nmodel; i++)
		if (model[i].start == start && model[i].id == id)
			return (int)i;
	return -1;
}

static int cmp_ent(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->last < y->last ? -1 : x->last > y->last;
}

/* The model's entries overlapping [s, l], sorted by (start, id). */
static unsigned int model_overlaps(uint64_t s, uint64_t l, struct ent *out)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < nmodel; i++)
		if (model[i].start <= l && s <= model[i].last)
			out[n++] = model[i];
	qsort(out, n, sizeof(*out), cmp_ent);
	return n;
}

/* --- the operations on both ----------------------------------------------- */

static void do_insert(uint64_t start, uint64_t last, unsigned int id)
{
	int want, rc;

	if (start > last)
		want = -EINVAL;
	else if (model_find(start, id) >= 0)
		want = -EEXIST;
	else if (nmodel == MAXE)
		return; /* the model is full: not generated */
	else
		want = 0;
	rc = ps__itree_insert(&tree, start, last, &items[id]);
	CHECK(rc == want);
	if (rc == 0)
		model[nmodel++] = (struct ent){start, last, id};
}

static void do_remove(uint64_t start, unsigned int id)
{
	int i = model_find(start, id);
	int rc = ps__itree_remove(&tree, start, &items[id]);

	CHECK(rc == (i >= 0 ? 0 : -ENOENT));
	if (rc == 0)
		model[i] = model[--nmodel];
}

/* --- visits --------------------------------------------------------------- */

struct visit {
	struct ent got[MAXE + 1];
	unsigned int n, stop_after;
	/* mutations done by the first call */
	unsigned int nwrites;
	struct {
		bool insert;
		uint64_t start, last;
		unsigned int id;
	} w[MAXWRITES];
};

static struct visit vis;
static struct ent want[MAXE];

static bool visit_fn(void *ctx, void *it, uint64_t start, uint64_t last)
{
	struct visit *v = ctx;
	ptrdiff_t id = (int *)it - items;

	CHECK(id >= 0 && id < NITEMS);
	CHECK(v->n <= MAXE);
	if (v->n == 0)
		for (unsigned int k = 0; k < v->nwrites; k++) {
			if (v->w[k].insert)
				do_insert(v->w[k].start, v->w[k].last,
					  v->w[k].id);
			else
				do_remove(v->w[k].start, v->w[k].id);
		}
	v->got[v->n++] = (struct ent){start, last, (unsigned int)id};
	return !v->stop_after || v->n < v->stop_after;
}

static void do_visit(uint64_t s, uint64_t l, unsigned int stop_after)
{
	unsigned int nwant, n;
	bool all;

	if (s > l) {
		uint64_t x = s;

		s = l;
		l = x;
	}
	nwant = model_overlaps(s, l, want); /* before any write below */
	vis.n = 0;
	vis.stop_after = stop_after;
	ps__rcu_read_lock();
	all = ps__itree_visit(&tree, s, l, visit_fn, &vis);
	ps__rcu_read_unlock();
	n = vis.n;
	for (unsigned int k = 0; k < n; k++) {
		CHECK(vis.got[k].start <= l && s <= vis.got[k].last);
		CHECK(!k || vis.got[k - 1].start <= vis.got[k].start);
	}
	if (stop_after && nwant >= stop_after) {
		/*
		 * Stopped: the first k in start order (equal starts in any
		 * order), and it said so. An entry not seen that sorts before
		 * one seen must share the largest start seen.
		 */
		CHECK(!all && n == stop_after);
		qsort(vis.got, n, sizeof(vis.got[0]), cmp_ent);
		for (unsigned int k = 0, j = 0; k < n; k++, j++) {
			while (j < nwant && cmp_ent(&want[j], &vis.got[k]))
				CHECK(want[j++].start == vis.got[n - 1].start);
			CHECK(j < nwant); /* every one seen is wanted */
		}
		return;
	}
	CHECK(all);
	CHECK(n == nwant);
	qsort(vis.got, n, sizeof(vis.got[0]), cmp_ent);
	for (unsigned int k = 0; k < n; k++)
		CHECK(!cmp_ent(&vis.got[k], &want[k]));
}

/* --- input decoding ------------------------------------------------------- */

static const uint64_t interesting[16] = {
	0,
	1,
	2,
	7,
	4095,
	4096,
	4097,
	1u << 20,
	UINT64_MAX / 2,
	UINT64_MAX / 2 + 1,
	UINT64_MAX - 4096,
	UINT64_MAX - 2,
	UINT64_MAX - 1,
	UINT64_MAX,
	64,
	65,
};

static uint64_t addr(struct in *in)
{
	uint8_t k = u8(in);

	switch (k >> 6) {
	case 0: /* small: overlaps and equal starts are likely */
		return k & 63;
	case 1:
		return interesting[k & 15];
	case 2: /* at or next to an entry's start or last */
		if (nmodel) {
			const struct ent *e = &model[u8(in) % nmodel];
			uint64_t a = k & 1 ? e->last : e->start;
			int d = (int)((k >> 1) % 3) - 1;

			return d < 0 && a == 0		  ? a
			       : d > 0 && a == UINT64_MAX ? a
							  : a + (uint64_t)d;
		}
		return k & 63;
	default:
		return raw64(in);
	}
}

/* A last for @start: mostly >= start, sometimes not (-EINVAL). */
static uint64_t last_for(struct in *in, uint64_t start)
{
	uint8_t k = u8(in);
	uint64_t len;

	switch (k >> 6) {
	case 0:
		len = k & 63;
		break;
	case 1:
		len = interesting[k & 15];
		break;
	case 2:
		return addr(in); /* anything, even below start */
	default:
		len = raw64(in);
		break;
	}
	return start + len < start ? UINT64_MAX : start + len;
}

/* An existing (start, id) from the model, or an arbitrary one. */
static void pick(struct in *in, uint8_t op, uint64_t *start, unsigned int *id)
{
	if (nmodel && !(op & 0x80)) {
		const struct ent *e = &model[u8(in) % nmodel];

		*start = e->start;
		*id = e->id;
		return;
	}
	*start = addr(in);
	*id = u8(in) % NITEMS;
}

static void bulk_insert(struct in *in, uint8_t op)
{
	unsigned int count = 1 + u8(in) % 64, id0 = u8(in);
	uint64_t base = addr(in), step = 1 + (u8(in) % 32);
	unsigned int pattern = (op >> 3) & 3;

	for (unsigned int i = 0; i < count; i++) {
		uint64_t s, l;
		unsigned int id = (id0 + i) % NITEMS;

		switch (pattern) {
		case 0: /* ascending: right-end splits */
			s = base + i * step;
			l = s + step - 1;
			break;
		case 1: /* descending */
			s = base - i * step;
			l = s + step / 2;
			break;
		case 2: /* one start: equal keys across leaves */
			s = base;
			l = base + i;
			break;
		default: /* nested around base */
			s = base - i;
			l = base + i;
			break;
		}
		if (l < s)
			l = UINT64_MAX; /* wrapped: still a valid interval */
		do_insert(s, l, id);
	}
}

static void bulk_remove(struct in *in)
{
	unsigned int count = 1 + u8(in) % 64, stride = 1 + u8(in) % 7;
	unsigned int at = u8(in);

	for (unsigned int i = 0; i < count && nmodel; i++) {
		const struct ent *e = &model[(at + i * stride) % nmodel];

		do_remove(e->start, e->id);
	}
}

static void check_tree(void)
{
	struct ps__itree_shape sh;

	CHECK(ps__itree_check(&tree, &sh) == 0);
	CHECK(sh.entries == nmodel && ps__itree_count(&tree) == nmodel);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};

	ps__itree_init(&tree);
	nmodel = 0;
	while (in.at < in.n) {
		uint8_t op;
		uint64_t s, l;
		unsigned int id;

		fz_at = in.at;
		op = u8(&in);
		fz_op = op & 7;
		vis.nwrites = 0;
		switch (op & 7) {
		case 0:
			s = addr(&in);
			l = last_for(&in, s);
			do_insert(s, l, u8(&in) % NITEMS);
			break;
		case 1:
			pick(&in, op, &s, &id);
			do_remove(s, id);
			break;
		case 2:
			pick(&in, op, &s, &id);
			CHECK(ps__itree_contains(&tree, s, &items[id]) ==
			      (model_find(s, id) >= 0));
			break;
		case 3:
			s = addr(&in);
			do_visit(s, last_for(&in, s), 0);
			break;
		case 4:
			s = addr(&in);
			l = last_for(&in, s);
			do_visit(s, l, 1 + u8(&in) % 8);
			break;
		case 5:
			vis.nwrites = 1 + (op >> 3) % MAXWRITES;
			for (unsigned int k = 0; k < vis.nwrites; k++) {
				uint8_t b = u8(&in);

				vis.w[k].insert = b & 1;
				if (b & 1) {
					vis.w[k].start = addr(&in);
					vis.w[k].last =
						last_for(&in, vis.w[k].start);
					vis.w[k].id = u8(&in) % NITEMS;
				} else {
					pick(&in, b, &vis.w[k].start,
					     &vis.w[k].id);
				}
			}
			s = addr(&in);
			do_visit(s, last_for(&in, s), 0);
			break;
		case 6:
			bulk_insert(&in, op);
			break;
		default:
			bulk_remove(&in);
			if ((op >> 3) == 31)
				ps__rcu_barrier(); /* the pool gets them back */
			break;
		}
		check_tree();
	}
	ps__itree_destroy(&tree);
	return 0;
}
