// SPDX-License-Identifier: MIT
/*
 * lib/history.c - the ended invalidations, by address and end number (see
 * history.h).
 *
 * ===========================================================================
 * State
 * ===========================================================================
 *
 *   log[256]   the ring: end e is in log[e % 256] as {e | VALID, start,
 *              last} (lib/rec.h) while e is in (logbase, e + 256)
 *   logbase    ends up to logbase have left the ring: merged into the
 *              levels, or forgotten
 *   ver        the published version of the levels (RCU): upto, the
 *              largest end merged, and the arrays of runs (the levels),
 *              the newest first; each holds a span of consecutive end
 *              numbers, the spans in order
 *   runs       an immutable array of disjoint runs {start, last, stamp},
 *              sorted by address: over [start, last] the latest end merged
 *              into this array is number stamp. Adjacent runs with one
 *              stamp are one run. Per array: its newest stamp, its weight
 *              (the ends merged into it) and its tier: 0 for one ring's
 *              ends, t + 1 for FANIN (32) arrays of tier t merged
 *   lost       ends up to lost may be forgotten (a merge failed to
 *              allocate, or the cap dropped their runs)
 *
 * Numbers are compared modulo mask + 1: "a after b" means 0 < a - b <=
 * mask / 2. Every number in use lies within half the space of the others
 * (2^56 ends for the notifier: centuries at any real rate).
 *
 * ===========================================================================
 * Protocol
 * ===========================================================================
 *
 * add(e) (writer, serialised by the caller):
 *   H0  if the ring is full (e - logbase > 256): merge (H1-H5)
 *   H4  log[e % 256] = {e | VALID, start, last} (ps__rec_write, RW1-RW4)
 * merge:
 *   H1  build the envelope of the 256 ends (logbase, e - 1] (newest stamp
 *       wins where they overlap) as a new level of tier 0, the newest;
 *       then, while the FANIN newest levels are of one tier, merge them into
 *       one level of the next tier in one pass (tiers rise from the newest
 *       level to the oldest, fewer than FANIN of each: a counter in base
 *       FANIN). Every array built is fresh; published arrays are never written.
 *   H5  the cap: if the new version's levels hold more than max_runs runs,
 *       drop the runs of the oldest stamps, whole levels from the oldest
 *       and then part of one (a fresh copy), down to max_runs / 2. Levels
 *       hold consecutive spans of end numbers, the oldest span last, so
 *       every run kept is newer than every run dropped; X, the newest
 *       stamp dropped, becomes lost (release store) before H2 publishes
 *       the version without them.
 *   H2  ver = the new version (release store), then logbase = e - 1
 *       (release store). The replaced version and the arrays only it held
 *       are freed after a grace period (ps__rcu_call).
 *   H3  on a failed allocation: nothing is published but lost = e - 1
 *       (release store), then logbase = e - 1 (release store). The ends
 *       (old logbase, e - 1] are forgotten.
 *   Only after H2 or H3 does H4 overwrite a record of the ring.
 *
 * query(e0, e1) (reader):
 *   Q1  logbase (acquire; pairs with H2/H3's store of it). If e0 is not
 *       before it, every end after e0 up to e1 is in the ring: read
 *       records e1, e1 - 1, ..., e0 + 1 (RR1-RR4). A record whose tag is
 *       not its number was overwritten (H4 of a later end, after an H2 or
 *       H3 for this one): go to Q2. Otherwise the answer is exact.
 *   Q2  under the RCU read lock: logbase (acquire), ver (acquire; pairs
 *       with H2's store of it), lost (acquire; pairs with H3 and H5), in
 *       this order, so the version covers every end up to the logbase read,
 *       except forgotten ones, and lost tells which (a version without the
 *       runs H5 dropped was stored after their lost). If lost is after e0,
 *       answer FORGOTTEN. Else read the ring from max(e0, logbase) to e1
 *       as in Q1 (nothing if logbase is not before e1: the writer merged
 *       past it; a mismatch: a merge happened since Q2 started, so start
 *       Q2 again), then search the levels for a run after e0 that
 *       overlaps [start, last].
 *   Why a record's mismatch means the writer moved on: the reader's RR1
 *   acquires the tag (0 by RW1, or a newer number by RW4), both release
 *   stores made after H2/H3, so the reloads in Q2 see that merge.
 *
 * Why the levels answer "after e0" rather than "in (e0, e1]": a run keeps only
 * the newest end over its addresses, and the version a reader loads may already
 * hold ends after e1. If an end in (e0, e1] covered an address, the newest end
 * over that address is at least as new, so a run after e0 covers it (never a
 * missed end); a run after e0 is an end after e0 (never a wrong one). A
 * question with e0 at or after lost needs no run H5 dropped: a dropped run's
 * stamp is at most lost, so not after e0, and the runs newer than it over its
 * addresses are in newer levels, which H5 never touches.
 *
 * ===========================================================================
 * Complexity (m runs kept)
 * ===========================================================================
 *
 *   add      O(1); every 256th end merges: O(256 log 256) for the
 *            envelope, plus the tiers, amortised O(FANIN log_FANIN m) per
 *            end: a run is copied once per tier it reaches (about
 *            log_32(m / 256) + 1 of them), each copy comparing the FANIN
 *            arrays' current runs. The levels before these doubled in
 *            weight from one to the next, and a run was copied once per
 *            level, about log_2(m / 256): four times as many copies,
 *            half of the cache misses of an invalidation at 100,000
 *            distinct pages (callgrind, tools/cachesim-notifier.sh).
 *            Why 32: with 16, those ends filled a tier-2 level (65,536
 *            runs, the cap) that the cap then read and cut again; with
 *            32 the cap cuts tier-1 levels of 8,192 runs (0.9 fewer L2
 *            misses and 95 fewer instructions per invalidation there).
 *            64 costs more again (a deeper heap in each merge)
 *   query    Q1: the ends since e0, at most 256 records. Q2: plus, per
 *            level whose newest stamp is after e0 (fewer than FANIN, 32,
 *            per tier), a binary search and the runs overlapping [start, last]
 *            (m <= max_runs); the cap's drop selects among the ages of
 *            the level it cuts, O(m) once per max_runs / 2 new runs at
 *            most
 *   memory   the ring (6 KiB), a merge's scratch (26 KiB, kept), the runs
 *            (24 bytes each, at most max_runs after a merge; an address's
 *            runs in several levels of a tier until they merge), and,
 *            between a merge and its grace period, the arrays it replaced
 */
#include "history.h"

#include "rcu.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define VALID (UINT64_C(1) << 63) /* a tag: end number | VALID */
#define FANIN PS__HIST_FANIN	  /* arrays of a tier merged into one */

PS_STATIC_ASSERT((PS__HIST_LOG & (PS__HIST_LOG - 1)) == 0,
		 "history: the ring's size is a power of two");

struct run {
	uint64_t start, last, stamp;
};

/* One level: an immutable array of disjoint runs, sorted by address. */
struct runs {
	uint64_t n;
	uint64_t weight;   /* ends merged into it */
	uint64_t newest;   /* its newest stamp */
	unsigned int tier; /* 0: one ring's ends; t + 1: FANIN of tier t */
	struct run r[];
};

struct ps__hist_ver {
	struct ps__rcu_head rcu;
	uint64_t upto; /* the largest end merged */
	unsigned int nlevels;
	/* Writer-only, when replaced: the arrays only this version held. */
	unsigned int ndead;
	struct runs **dead;   /* room for as many as level had at first */
	struct runs *level[]; /* the newest first; then dead's room */
};

/* --- numbers -------------------------------------------------------------- */

/* @to - @from, modulo the number space. */
static uint64_t dist(const struct ps__hist *h, uint64_t from, uint64_t to)
{
	return (to - from) & h->mask;
}

/* Is @a after @b? */
static bool after(const struct ps__hist *h, uint64_t a, uint64_t b)
{
	uint64_t d = dist(h, b, a);

	return d && d <= h->mask / 2;
}

static uint64_t newer(const struct ps__hist *h, uint64_t a, uint64_t b)
{
	return after(h, a, b) ? a : b;
}

/* --- merging runs (H1) ---------------------------------------------------- */

/*
 * The envelope of @o, older, and @w, newer (every stamp of @w is after every
 * stamp of @o: the ends merged are always two consecutive spans of numbers,
 * the older one first). Both are arrays of disjoint runs sorted by address
 * and joined where they touch with one stamp. Over each address the result
 * has @w's stamp if @w covers it, else @o's: @w's runs whole, and the pieces
 * of @o's that they leave. So is the result sorted, disjoint and joined (two
 * pieces of one run of @o have a run of @w between them, and no stamp is in
 * both). One pass; each run of @w adds itself and at most one piece (the
 * left end of a run of @o that goes on past it), so it writes at most
 * no + 2 * nw runs to @out, and returns how many.
 */
static uint64_t paint(const struct run *o, uint64_t no, const struct run *w,
		      uint64_t nw, struct run *out)
{
	struct run head = {0, 0, 0}; /* o[i], or what @w left of it */
	uint64_t i = 0, n = 0;

	if (no)
		head = o[0];
	for (uint64_t j = 0; j < nw; j++) {
		const struct run *x = &w[j];

		while (i < no && head.last < x->start) { /* before x */
			out[n++] = head;
			if (++i < no)
				head = o[i];
		}
		if (i < no && head.start < x->start) { /* into x: its left */
			out[n++] = (struct run){head.start, x->start - 1,
						head.stamp};
			head.start = x->start;
		}
		while (i < no && head.last <= x->last) /* covered by x */
			if (++i < no)
				head = o[i];
		if (i < no && head.start <= x->last) /* past x: its right */
			head.start = x->last + 1;    /* x->last < head.last */
		out[n++] = *x;
	}
	while (i < no) {
		out[n++] = head;
		if (++i < no)
			head = o[i];
	}
	return n;
}

/*
 * One array's place in paint_many(): its current run, its end, and the key
 * the heap orders it by, (the run's start, age), kept here to spare the heap
 * a load per comparison.
 */
struct cursor {
	const struct run *r, *end;
	uint64_t start;	  /* r->start */
	unsigned int age; /* 0: the newest array */
};

/* Does @a come first: the smaller start, and of equal ones the newer? */
static bool cursor_first(const struct cursor *a, const struct cursor *b)
{
	return a->start < b->start || (a->start == b->start && a->age < b->age);
}

/* On to @c's next run; false if it has none. */
static bool cursor_next(struct cursor *c)
{
	if (++c->r == c->end)
		return false;
	c->start = c->r->start;
	return true;
}

/* A min-heap of cursors: restore it below @i. */
static void sift_down(struct cursor **heap, unsigned int n, unsigned int i)
{
	for (;;) {
		unsigned int c = 2 * i + 1;
		struct cursor *x;

		if (c >= n)
			return;
		if (c + 1 < n && cursor_first(heap[c + 1], heap[c]))
			c++;
		if (!cursor_first(heap[c], heap[i]))
			return;
		x = heap[c];
		heap[c] = heap[i];
		heap[i] = x;
		i = c;
	}
}

/*
 * Is a run newer than heap[0]'s current one among those starting at or
 * before @last? A walk of the heap that skips every subtree starting after
 * @last (a child never starts before its parent): in the usual merge only
 * heap[0]'s own equal starts, older, are visited.
 */
static bool newer_within(struct cursor *const *heap, unsigned int n,
			 uint64_t last)
{
	unsigned int stack[FANIN], sp = 0;

	if (n > 1)
		stack[sp++] = 1;
	if (n > 2)
		stack[sp++] = 2;
	while (sp) {
		unsigned int i = stack[--sp];

		if (heap[i]->start > last)
			continue;
		if (heap[i]->age < heap[0]->age)
			return true;
		if (2 * i + 1 < n)
			stack[sp++] = 2 * i + 1;
		if (2 * i + 2 < n)
			stack[sp++] = 2 * i + 2;
	}
	return false;
}

/*
 * Where runs overlap: from @pos, drop the runs that end before it, then write
 * the next segment (the newest run covering the first covered address at or
 * after @pos, up to where a newer one starts) to *@seg. O(k). Returns false
 * if every array is spent.
 */
static bool segment(struct cursor *c, unsigned int k, uint64_t pos,
		    struct run *seg)
{
	const struct cursor *w = NULL;
	uint64_t a = UINT64_MAX;
	bool any = false;

	for (unsigned int t = 0; t < k; t++) {
		while (c[t].r < c[t].end && c[t].r->last < pos)
			c[t].r++;
		if (c[t].r == c[t].end)
			continue;
		c[t].start = c[t].r->start;
		any = true;
		if ((c[t].r->start > pos ? c[t].r->start : pos) < a)
			a = c[t].r->start > pos ? c[t].r->start : pos;
	}
	if (!any)
		return false;
	for (unsigned int t = 0; t < k; t++) /* the newest covering a */
		if (c[t].r < c[t].end && c[t].r->start <= a &&
		    (!w || c[t].age < w->age))
			w = &c[t];
	*seg = (struct run){a, w->r->last, w->r->stamp};
	for (unsigned int t = 0; t < k; t++) /* cut where a newer starts */
		if (c[t].r < c[t].end && c[t].age < w->age &&
		    c[t].r->start > a && c[t].r->start - 1 < seg->last)
			seg->last = c[t].r->start - 1;
	return true;
}

/*
 * The envelope of @k (<= FANIN) arrays of runs, in[0] the newest (each sorted,
 * disjoint and joined, every stamp of a newer one after every stamp of an older
 * one, as for paint()): over each address the stamp of the newest array that
 * covers it. One pass, a heap of the arrays by their current run's start: a run
 * that no newer one starts within goes out whole (from where the output got to,
 * if it began before), and the older ones it covers are skipped as they come
 * up, O(log k) each (ends of pages, even of one page many times: all of them);
 * where a newer run starts inside an older one, segment() takes over, O(k) per
 * segment. Writes at most twice the runs of all @k to @out (a segment starts at
 * a run's start or just after a run's last), and returns how many.
 */
static uint64_t paint_many(struct runs *const *in, unsigned int k,
			   struct run *out)
{
	struct cursor c[FANIN], *heap[FANIN];
	unsigned int nh = 0;
	uint64_t pos = 0, n = 0;

	for (unsigned int t = 0; t < k; t++) {
		c[t] = (struct cursor){in[t]->r, in[t]->r + in[t]->n,
				       in[t]->n ? in[t]->r[0].start : 0, t};
		if (in[t]->n)
			heap[nh++] = &c[t];
	}
	for (unsigned int i = nh / 2; i-- > 0;)
		sift_down(heap, nh, i);
	while (nh) {
		struct cursor *top = heap[0];
		struct run seg;

		if (top->r->last < pos) { /* covered by newer ones already */
			if (!cursor_next(top))
				heap[0] = heap[--nh];
			sift_down(heap, nh, 0);
			continue;
		}
		if (!newer_within(heap, nh, top->r->last)) {
			/* The newest from its start (or pos) to its last. */
			seg = *top->r;
			if (seg.start < pos)
				seg.start = pos;
			if (!cursor_next(top))
				heap[0] = heap[--nh];
			sift_down(heap, nh, 0);
		} else {
			if (!segment(c, k, pos, &seg))
				break;
			nh = 0; /* segment() moved cursors: a new heap */
			for (unsigned int t = 0; t < k; t++)
				if (c[t].r < c[t].end)
					heap[nh++] = &c[t];
			for (unsigned int i = nh / 2; i-- > 0;)
				sift_down(heap, nh, i);
		}
		out[n++] = seg;
		if (seg.last == UINT64_MAX)
			break;
		pos = seg.last + 1;
	}
	return n;
}

static struct runs *runs_new(const struct ps__hist *h, uint64_t n)
{
	struct runs *r = h->alloc(sizeof(*r) + n * sizeof(struct run));

	if (r)
		r->n = n;
	return r;
}

/*
 * @r, allocated for more runs than it got, down to r->n of them: in place
 * (glibc shrinks a block where it is), or as it is if realloc() fails.
 */
static struct runs *runs_shrink(struct runs *r)
{
	struct runs *s = realloc(r, sizeof(*r) + r->n * sizeof(struct run));

	return s ? s : r;
}

/*
 * The envelope of the ends (h->logbase, e - 1] of the ring, in a fresh
 * array of weight e - 1 - logbase; NULL if out of memory. Pairwise merges
 * of groups of runs, in two scratch buffers: k intervals have an envelope
 * of at most 2k - 1 runs, so 2 * count runs hold any round.
 */
static struct runs *envelope(struct ps__hist *h, uint64_t base, uint64_t e)
{
	uint64_t count = dist(h, base, e) - 1, ngroups = count;
	const uint64_t cap = 2 * PS__HIST_LOG;
	struct run *buf, *from, *to;
	uint64_t *off;
	struct runs *res;

	/* The scratch, kept from merge to merge: warm, and no malloc. */
	if (!h->scratch)
		h->scratch = h->alloc(2 * cap * sizeof(struct run) +
				      (PS__HIST_LOG + 1) * sizeof(uint64_t));
	if (!h->scratch)
		return NULL;
	buf = h->scratch;
	off = (uint64_t *)(buf + 2 * cap);
	from = buf;
	to = buf + cap;
	for (uint64_t k = 0; k < count; k++) {
		uint64_t x = (base + 1 + k) & h->mask;
		const struct ps__rec *r = &h->log[x & (PS__HIST_LOG - 1)];

		/* Relaxed: the writer reads its own records. */
		from[k].start = atomic_load_explicit(&r->start,
						     memory_order_relaxed);
		from[k].last = atomic_load_explicit(&r->last,
						    memory_order_relaxed);
		from[k].stamp = x;
		off[k] = k;
	}
	off[count] = count;
	while (ngroups > 1) {
		uint64_t g, n = 0;

		for (g = 0; g + 1 < ngroups; g += 2) {
			uint64_t a = off[g], b = off[g + 1], c = off[g + 2];

			off[g / 2] = n;
			n += paint(from + a, b - a, from + b, c - b, to + n);
		}
		if (g < ngroups) { /* the odd one out, as it is */
			off[g / 2] = n;
			memcpy(to + n, from + off[g],
			       (off[g + 1] - off[g]) * sizeof(struct run));
			n += off[g + 1] - off[g];
		}
		ngroups = (ngroups + 1) / 2;
		off[ngroups] = n;
		from = from == buf ? buf + cap : buf;
		to = to == buf ? buf + cap : buf;
	}
	res = runs_new(h, off[1]);
	if (res) {
		memcpy(res->r, from, off[1] * sizeof(struct run));
		res->weight = count;
		res->newest = (e - 1) & h->mask;
		res->tier = 0;
	}
	return res;
}

static void free_ver(struct ps__rcu_head *head)
{
	struct ps__hist_ver *v =
		(struct ps__hist_ver *)((char *)head -
					offsetof(struct ps__hist_ver, rcu));

	for (unsigned int k = 0; k < v->ndead; k++)
		free(v->dead[k]);
	free(v);
}

/*
 * The value that would be at index @k (0-based) of a[0..n) sorted in
 * ascending order; reorders @a. Quickselect (Hoare's partition around a
 * median of three): O(n) expected.
 */
static uint64_t select_kth(uint64_t *a, uint64_t n, uint64_t k)
{
	uint64_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
		uint64_t p = x < y ? (y < z   ? y
				      : x < z ? z
					      : x)
				   : (x < z   ? x
				      : y < z ? z
					      : y);
		uint64_t i = lo, j = hi;

		while (i <= j) {
			uint64_t t;

			while (a[i] < p)
				i++;
			while (a[j] > p)
				j--;
			if (i > j)
				break;
			t = a[i];
			a[i] = a[j];
			a[j] = t;
			i++;
			if (j-- == 0)
				break;
		}
		/* a[lo..j] <= p <= a[i..hi], and a[j+1..i-1] == p */
		if (k <= j && j != UINT64_MAX)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return p;
	}
	return a[k];
}

/*
 * The level @l without its @excess oldest runs or more (every run of the
 * oldest stamps left out), fresh; NULL if out of memory. *@x receives the
 * newest stamp dropped. A level's stamps lie within half the number space
 * below its newest, so their ages (newest - stamp) sort them. @excess is less
 * than l->n, and the newest stamp is one run (no end of the level is newer to
 * cut it), so the level keeps at least that run.
 */
static struct runs *trim_level(const struct ps__hist *h, const struct runs *l,
			       uint64_t excess, uint64_t *x)
{
	uint64_t *age = h->alloc(l->n * sizeof(uint64_t)), cut, n = 0;
	struct runs *r = NULL;

	if (!age)
		return NULL;
	for (uint64_t i = 0; i < l->n; i++)
		age[i] = dist(h, l->r[i].stamp, l->newest);
	/* The excess-th oldest: drop the runs at least this old. */
	cut = select_kth(age, l->n, l->n - excess);
	for (uint64_t i = 0; i < l->n; i++)
		n += dist(h, l->r[i].stamp, l->newest) < cut;
	r = runs_new(h, n);
	if (r) {
		n = 0;
		for (uint64_t i = 0; i < l->n; i++)
			if (dist(h, l->r[i].stamp, l->newest) < cut)
				r->r[n++] = l->r[i];
		r->weight = l->weight;
		r->newest = l->newest;
		r->tier = l->tier;
		*x = (l->newest - cut) & h->mask;
	}
	free(age);
	return r;
}

/*
 * H5, the cap: if @v's levels hold more than h->max_runs runs, drop the oldest
 * runs down to half of it, whole levels from the oldest and then part of one,
 * and return the newest stamp dropped (@lost if nothing was). Levels 1 and up
 * are @old's too: they go to its dead list (freed after a grace period); level
 * 0 of @v, this merge's own and never published, is freed now. If an allocation
 * fails it stops where it is (the cap is met again at a later merge).
 */
static uint64_t cap_levels(struct ps__hist *h, struct ps__hist_ver *v,
			   struct ps__hist_ver *old, uint64_t lost)
{
	uint64_t total = 0, excess;

	for (unsigned int k = 0; k < v->nlevels; k++)
		total += v->level[k]->n;
	if (total <= h->max_runs)
		return lost;
	excess = total - h->max_runs / 2;
	while (excess) {
		unsigned int j = v->nlevels - 1;
		struct runs *l = v->level[j], *t;
		uint64_t x;

		if (j && l->n <= excess) { /* the whole oldest level */
			lost = newer(h, lost, l->newest);
			excess -= l->n;
			old->dead[old->ndead++] = l; /* not level 0: old's */
			v->nlevels--;
			continue;
		}
		/* Part of it: fewer than it has (total - excess >= 1). */
		t = trim_level(h, l, excess, &x);
		if (!t)
			break;
		lost = newer(h, lost, x);
		if (j)
			old->dead[old->ndead++] = l;
		else
			free(l); /* this merge's own, never published */
		v->level[j] = t;
		break;
	}
	return lost;
}

/*
 * The FANIN newest levels of @v, all of one tier, merged into one of the next
 * tier, fresh; NULL if out of memory.
 */
static struct runs *merge_tier(const struct ps__hist *h,
			       const struct ps__hist_ver *v)
{
	uint64_t bound = 0, weight = 0;
	struct runs *m;

	for (unsigned int t = 0; t < FANIN; t++) {
		bound += 2 * v->level[t]->n;
		weight += v->level[t]->weight;
	}
	m = runs_new(h, bound);
	if (!m)
		return NULL;
	m->n = paint_many(v->level, FANIN, m->r);
	m = runs_shrink(m);
	m->weight = weight;
	m->newest = v->level[0]->newest;
	m->tier = v->level[0]->tier + 1;
	return m;
}

/*
 * Merge the ring's ends (logbase, e - 1] into the levels (H1, H5, H2), or
 * forget them (H3).
 */
static void flush(struct ps__hist *h, uint64_t e)
{
	/* Relaxed: the writer reads what only it writes. */
	struct ps__hist_ver *old = atomic_load_explicit(&h->ver,
							memory_order_relaxed);
	uint64_t base = atomic_load_explicit(&h->logbase, memory_order_relaxed);
	uint64_t upto = (e - 1) & h->mask;
	/* Relaxed: as above. */
	uint64_t prev_lost = atomic_load_explicit(&h->lost,
						  memory_order_relaxed);
	unsigned int room = (old ? old->nlevels : 0) + 1;
	struct ps__hist_ver *v = h->alloc(sizeof(*v) +
					  2 * room * sizeof(struct runs *));
	struct runs *cur = envelope(h, base, e);
	uint64_t lost;

	if (!cur || !v)
		goto fail;
	v->upto = upto;
	v->ndead = 0;
	v->dead = v->level + room;
	v->level[0] = cur; /* this merge's own; the others are old's */
	v->nlevels = room;
	if (old) {
		memcpy(v->level + 1, old->level,
		       old->nlevels * sizeof(old->level[0]));
		old->ndead = 0; /* writer-only field; readers never read it */
	}
	/* H1: FANIN levels of one tier (the newest) become one. */
	for (;;) {
		unsigned int t = 1;
		struct runs *m;

		while (t < v->nlevels && v->level[t]->tier == cur->tier)
			t++;
		if (t < FANIN)
			break;
		m = merge_tier(h, v);
		if (!m) {
			old->ndead = 0;
			goto fail;
		}
		free(cur);
		memcpy(old->dead + old->ndead, v->level + 1,
		       (FANIN - 1) * sizeof(v->level[0]));
		old->ndead += FANIN - 1;
		memmove(v->level + 1, v->level + FANIN,
			(v->nlevels - FANIN) * sizeof(v->level[0]));
		v->nlevels -= FANIN - 1;
		v->level[0] = cur = m;
	}
	lost = cap_levels(h, v, old, prev_lost); /* H5 */
	if (lost != prev_lost) {
		h->forgotten += dist(h, prev_lost, lost);
		/* H5 - Release: before the version without them; pairs with
		 * Q2's acquire of lost after its acquire of ver. */
		atomic_store_explicit(&h->lost, lost, memory_order_release);
	}
	/* H2 - Release: the new arrays and version first; pairs with Q2. */
	atomic_store_explicit(&h->ver, v, memory_order_release);
	/* H2 - Release: after the version; pairs with Q1/Q2's acquire. */
	atomic_store_explicit(&h->logbase, upto, memory_order_release);
	if (old)
		ps__rcu_call(&old->rcu, free_ver);
	return;
fail:
	free(cur);
	free(v);
	h->forgotten += dist(h, base, upto);
	/* H3 - Release: before the ring is overwritten; pairs with Q2. */
	atomic_store_explicit(&h->lost, upto, memory_order_release);
	/* H3 - Release: after lost; pairs with Q1/Q2's acquire. */
	atomic_store_explicit(&h->logbase, upto, memory_order_release);
}

/* --- the interface -------------------------------------------------------- */

void ps__hist_init(struct ps__hist *h, unsigned int width, uint64_t base)
{
	h->mask = width >= 64 ? UINT64_MAX : (UINT64_C(1) << width) - 1;
	base &= h->mask;
	memset(h->log, 0, sizeof(h->log));
	/* Relaxed: the history is not shared yet. */
	atomic_store_explicit(&h->ver, NULL, memory_order_relaxed);
	atomic_store_explicit(&h->logbase, base, memory_order_relaxed);
	/* Relaxed: as above. Nothing after @base is lost. */
	atomic_store_explicit(&h->lost, base, memory_order_relaxed);
	h->last_end = base;
	h->forgotten = 0;
	h->max_runs = PS__HIST_MAX_RUNS;
	h->alloc = malloc;
	h->scratch = NULL;
}

void ps__hist_destroy(struct ps__hist *h)
{
	/* Relaxed: no reader or writer runs (the caller's promise). */
	struct ps__hist_ver *v = atomic_load_explicit(&h->ver,
						      memory_order_relaxed);

	free(h->scratch);
	h->scratch = NULL;
	if (!v)
		return;
	for (unsigned int k = 0; k < v->nlevels; k++)
		free(v->level[k]);
	free(v);
	/* Relaxed: as above. */
	atomic_store_explicit(&h->ver, NULL, memory_order_relaxed);
}

void ps__hist_add(struct ps__hist *h, uint64_t e, uint64_t start, uint64_t last)
{
	/* Relaxed: the writer reads what only it writes. */
	uint64_t base = atomic_load_explicit(&h->logbase, memory_order_relaxed);

	e &= h->mask;
	if (dist(h, base, e) > PS__HIST_LOG) /* H0 */
		flush(h, e);
	/* H4: RW1-RW4; RW1 orders it after H2/H3. */
	ps__rec_write(&h->log[e & (PS__HIST_LOG - 1)], e | VALID, start, last);
	h->last_end = e;
}

enum scan { SCAN_NO, SCAN_YES, SCAN_STALE };

/* The ring's ends in (@from, @e1]: one overlapping [s, l]? */
static enum scan scan_ring(const struct ps__hist *h, uint64_t from, uint64_t e1,
			   uint64_t s, uint64_t l)
{
	uint64_t n = dist(h, from, e1);

	if (n > PS__HIST_LOG)
		return SCAN_STALE; /* the ring moved past @from */
	for (uint64_t k = 0; k < n; k++) {
		uint64_t x = (e1 - k) & h->mask, rs, rl;

		if (ps__rec_read(&h->log[x & (PS__HIST_LOG - 1)], &rs, &rl) !=
		    (x | VALID))
			return SCAN_STALE; /* overwritten: see Q1 */
		if (rs <= l && s <= rl)
			return SCAN_YES;
	}
	return SCAN_NO;
}

/* A run after @e0 overlapping [s, l] in one of @v's levels? */
static bool levels_hit(const struct ps__hist *h, const struct ps__hist_ver *v,
		       uint64_t e0, uint64_t s, uint64_t l)
{
	for (unsigned int k = 0; k < v->nlevels; k++) {
		const struct runs *r = v->level[k];
		uint64_t lo = 0, n = r->n;

		if (!after(h, r->newest, e0))
			continue; /* nothing in it is after e0 */
		while (n) {	  /* the first run with last >= s */
			uint64_t half = n / 2;

			if (r->r[lo + half].last < s) {
				lo += half + 1;
				n -= half + 1;
			} else {
				n = half;
			}
		}
		for (uint64_t i = lo; i < r->n && r->r[i].start <= l; i++)
			if (after(h, r->r[i].stamp, e0))
				return true;
	}
	return false;
}

enum ps__hist_answer ps__hist_query(const struct ps__hist *h, uint64_t e0,
				    uint64_t e1, uint64_t start, uint64_t last)
{
	enum ps__hist_answer ans = PS__HIST_NO;
	uint64_t base;

	e0 &= h->mask;
	e1 &= h->mask;
	if (e0 == e1)
		return PS__HIST_NO;
	if (after(h, e0, e1))
		return PS__HIST_YES; /* misuse: e0 is not in the past */
	/* Q1 - Acquire: pairs with H2/H3's release store of logbase. */
	base = atomic_load_explicit(&h->logbase, memory_order_acquire);
	if (!after(h, base, e0)) {
		enum scan r = scan_ring(h, e0, e1, start, last);

		if (r != SCAN_STALE)
			return r == SCAN_YES ? PS__HIST_YES : PS__HIST_NO;
	}
	ps__rcu_read_lock();
	for (;;) { /* Q2 */
		const struct ps__hist_ver *v;
		enum scan r;

		/* Acquire: pairs with H2/H3's release store of logbase. */
		base = atomic_load_explicit(&h->logbase, memory_order_acquire);
		/* Acquire: pairs with H2's release store of ver. */
		v = atomic_load_explicit(&h->ver, memory_order_acquire);
		/* Acquire: pairs with H3's release store of lost. */
		if (after(h,
			  atomic_load_explicit(&h->lost, memory_order_acquire),
			  e0)) {
			ans = PS__HIST_FORGOTTEN;
			break;
		}
		/* The ring from max(e0, logbase): none if logbase >= e1. */
		r = !after(h, base, e0)	 ? scan_ring(h, e0, e1, start, last)
		    : after(h, e1, base) ? scan_ring(h, base, e1, start, last)
					 : SCAN_NO;
		if (r == SCAN_STALE)
			continue; /* a merge since Q2 began: look again */
		if (r == SCAN_YES || (v && after(h, base, e0) &&
				      levels_hit(h, v, e0, start, last)))
			ans = PS__HIST_YES;
		break;
	}
	ps__rcu_read_unlock();
	return ans;
}

int ps__hist_check(const struct ps__hist *h, struct ps__hist_shape *shape)
{
	/* Relaxed: the writer's own view. */
	const struct ps__hist_ver *v =
		atomic_load_explicit(&h->ver, memory_order_relaxed);
	uint64_t prev_oldest = 0;

	*shape = (struct ps__hist_shape){0, 0, 0};
	if (!v)
		return 0;
	if (!v->nlevels)
		return -EUCLEAN;
	for (unsigned int k = 0, same = 0; k < v->nlevels; k++) {
		const struct runs *r = v->level[k];
		const struct runs *p = k ? v->level[k - 1] : NULL;
		uint64_t newest, oldest;

		/* Tiers from the newest up, fewer than FANIN of each. */
		same = p && p->tier == r->tier ? same + 1 : 0;
		if (!r->n || (p && p->tier > r->tier) || same >= FANIN - 1)
			return -EUCLEAN;
		newest = oldest = r->r[0].stamp;
		for (uint64_t i = 0; i < r->n; i++) {
			const struct run *x = &r->r[i], *q = i ? x - 1 : NULL;

			if (x->start > x->last || after(h, x->stamp, v->upto) ||
			    (q && q->last >= x->start) ||
			    (q && q->last + 1 == x->start &&
			     q->stamp == x->stamp))
				return -EUCLEAN;
			newest = newer(h, newest, x->stamp);
			if (after(h, oldest, x->stamp))
				oldest = x->stamp;
		}
		/* Consecutive spans: all of it before the level before it. */
		if (newest != r->newest ||
		    (p && !after(h, prev_oldest, newest)))
			return -EUCLEAN;
		prev_oldest = oldest;
		shape->runs += r->n;
		shape->merged += r->weight;
	}
	shape->levels = v->nlevels;
	return 0;
}
