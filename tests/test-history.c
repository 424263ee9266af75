// SPDX-License-Identifier: MIT
/*
 * tests/test-history.c - the ended invalidations by address and end number
 * (lib/history.h), the record behind the notifier's exact whole-space
 * check: answers from the ring alone, across merges into the levels, the
 * envelope (a later end replacing earlier ones), numbers that wrap, ends
 * forgotten after a failed allocation, and readers racing the writer
 * (bounded, and a "stress" tcase sized by PS_STRESS_ITERS). Every answer is
 * compared with a brute-force scan of all the ends.
 */
#include "../lib/history.h"
#include "../lib/rcu.h"

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 57 /* the notifier's */
#define MASK ((UINT64_C(1) << WIDTH) - 1)

/* Every end added, by number (index = number - first). */
struct model {
	uint64_t first; /* number of the first end */
	uint64_t n;
	uint64_t *start, *last;
};

static void model_init(struct model *m, uint64_t first, uint64_t cap)
{
	m->first = first;
	m->n = 0;
	m->start = calloc(cap, sizeof(uint64_t));
	m->last = calloc(cap, sizeof(uint64_t));
	ck_assert(m->start && m->last);
}

static void model_free(struct model *m)
{
	free(m->start);
	free(m->last);
}

/* The number of the end at index @i. */
static uint64_t num(const struct model *m, uint64_t i)
{
	return (m->first + i) & MASK;
}

static void add(struct ps__hist *h, struct model *m, uint64_t s, uint64_t l)
{
	m->start[m->n] = s;
	m->last[m->n] = l;
	ps__hist_add(h, num(m, m->n), s, l);
	m->n++;
}

/* Did an end with index in [from, to) overlap [s, l]? */
static bool want(const struct model *m, uint64_t from, uint64_t to, uint64_t s,
		 uint64_t l)
{
	for (uint64_t i = from; i < to; i++)
		if (m->start[i] <= l && s <= m->last[i])
			return true;
	return false;
}

/*
 * Ask about ends after index @i0 (e0 = the number before it), up to now
 * (a quiescent history: the answer must be exact).
 */
static enum ps__hist_answer ask(const struct ps__hist *h, const struct model *m,
				uint64_t i0, uint64_t s, uint64_t l)
{
	uint64_t e0 = (m->first + i0 - 1) & MASK;
	uint64_t e1 = (m->first + m->n - 1) & MASK;

	return ps__hist_query(h, e0, e1, s, l);
}

static void check_exact(const struct ps__hist *h, const struct model *m,
			uint64_t i0, uint64_t s, uint64_t l)
{
	enum ps__hist_answer a = ask(h, m, i0, s, l);

	ck_assert_msg(a == (want(m, i0, m->n, s, l) ? PS__HIST_YES
						    : PS__HIST_NO),
		      "ends after #%llu of %llu over [%#llx, %#llx]: got %d",
		      (unsigned long long)i0, (unsigned long long)m->n,
		      (unsigned long long)s, (unsigned long long)l, (int)a);
}

/* The levels after @merges merges: the digits of @merges in base FANIN. */
static unsigned int digit_sum(uint64_t merges)
{
	unsigned int sum = 0;

	for (; merges; merges /= PS__HIST_FANIN)
		sum += (unsigned int)(merges % PS__HIST_FANIN);
	return sum;
}

static struct ps__hist_shape shape(const struct ps__hist *h)
{
	struct ps__hist_shape sh;

	ck_assert_int_eq(ps__hist_check(h, &sh), 0);
	return sh;
}

/* Random ranges in a 16 MiB window: mostly a page, sometimes much more. */
static void rand_range(struct ps_test_rng *r, uint64_t *s, uint64_t *l)
{
	*s = ps_test_below(r, 1 << 24);
	*l = *s + (ps_test_below(r, 8) ? ps_test_below(r, 4096)
				       : ps_test_below(r, 1 << 22));
}

/* --- the ring alone ------------------------------------------------------- */

START_TEST(empty_and_ring)
{
	struct ps__hist h;
	struct model m;

	ps__hist_init(&h, WIDTH, 0);
	model_init(&m, 1, 300);
	/* Nothing ended: no, for any range; e0 == e1 asks about nothing. */
	ck_assert_int_eq(ps__hist_query(&h, 0, 0, 0, UINT64_MAX), PS__HIST_NO);
	add(&h, &m, 100, 199);
	add(&h, &m, 0, 0);
	add(&h, &m, UINT64_MAX, UINT64_MAX);
	ck_assert_int_eq(ps__hist_query(&h, 0, 3, 200, 1000), PS__HIST_NO);
	ck_assert_int_eq(ps__hist_query(&h, 0, 3, 199, 199), PS__HIST_YES);
	ck_assert_int_eq(ps__hist_query(&h, 1, 3, 150, 150), PS__HIST_NO);
	ck_assert_int_eq(ps__hist_query(&h, 0, 1, 150, 150), PS__HIST_YES);
	ck_assert_int_eq(ps__hist_query(&h, 2, 3, UINT64_MAX, UINT64_MAX),
			 PS__HIST_YES);
	ck_assert_int_eq(ps__hist_query(&h, 3, 3, 0, UINT64_MAX), PS__HIST_NO);
	/* Misuse, e0 after e1: yes, at once (never a wait for the ring). */
	ck_assert_int_eq(ps__hist_query(&h, 1000, 3, 5000, 5000), PS__HIST_YES);
	/* Up to a full ring: still the ring alone, still exact. */
	while (m.n < PS__HIST_LOG)
		add(&h, &m, 1000 * m.n, 1000 * m.n + 10);
	ck_assert_uint_eq(shape(&h).levels, 0);
	for (uint64_t i0 = 0; i0 <= m.n; i0 += 7) {
		check_exact(&h, &m, i0, 150, 150);
		check_exact(&h, &m, i0, 1000 * 200 + 11, 1000 * 201 - 1);
		check_exact(&h, &m, i0, 1000 * 200 + 10, 1000 * 200 + 10);
	}
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/* --- merged into levels --------------------------------------------------- */

START_TEST(exact_across_merges)
{
	enum { N = 20000 };
	struct ps__hist h;
	struct model m;
	struct ps_test_rng rng = ps_test_rng_new(21);
	struct ps__hist_shape sh;

	ps__hist_init(&h, WIDTH, 0);
	model_init(&m, 1, N);
	for (uint64_t i = 0; i < N; i++) {
		uint64_t s, l;

		rand_range(&rng, &s, &l);
		add(&h, &m, s, l);
		if (i % 997 == 0) { /* asked along the way, too */
			uint64_t i0 = ps_test_below(&rng, m.n + 1);

			rand_range(&rng, &s, &l);
			check_exact(&h, &m, i0, s, s);
			check_exact(&h, &m, i0, s, l);
		}
	}
	sh = shape(&h);
	ck_assert_uint_ge(sh.levels, 2);
	/* Everything before the ring is merged. */
	ck_assert_uint_ge(sh.merged, N - PS__HIST_LOG);
	/* One level per merge, FANIN of a tier become one: a counter. */
	ck_assert_uint_eq(sh.levels, digit_sum(sh.merged / PS__HIST_LOG));
	for (int q = 0; q < 3000; q++) {
		/* Any age of e0: in the ring, one level back, or all. */
		uint64_t i0 = q % 3 ? m.n - ps_test_below(&rng, 2000)
				    : ps_test_below(&rng, m.n + 1);
		uint64_t s, l;

		rand_range(&rng, &s, &l);
		check_exact(&h, &m, i0, s, q % 2 ? s : l);
	}
	/* Outside everything: never. */
	check_exact(&h, &m, 0, UINT64_MAX - 4096, UINT64_MAX);
	ck_assert_uint_eq(ps__hist_forgotten(&h), 0);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/*
 * A later end over a range replaces the runs it covers, once merged: a
 * history of page-sized ends shrinks to a few runs after one end covers
 * them all and a merge brings them together (the page ends are in two
 * arrays of tier 1 and the covering end in a later one: FANIN of those
 * merge into tier 2 after FANIN * FANIN ring merges).
 */
START_TEST(envelope_replaces_covered)
{
	enum {
		PAGES = 8192,
		ENDS = PS__HIST_FANIN * PS__HIST_FANIN * PS__HIST_LOG +
		       PS__HIST_LOG + 1
	};
	struct ps__hist h;
	struct model m;
	struct ps__hist_shape sh;

	ps__hist_init(&h, WIDTH, 0);
	model_init(&m, 1, ENDS);
	for (uint64_t p = 0; p < PAGES; p++) /* every page, scattered */
		add(&h, &m, ((p * 4099) % PAGES) << 12,
		    (((p * 4099) % PAGES) << 12) + 4095);
	sh = shape(&h);
	ck_assert_uint_ge(sh.runs, PAGES - 2 * PS__HIST_LOG);
	add(&h, &m, 0, (uint64_t)PAGES << 12); /* all of them, and one more */
	for (uint64_t k = 0; m.n < ENDS; k++)  /* one page, many times */
		add(&h, &m, 5 << 12, (5 << 12) + 4095);
	sh = shape(&h);
	ck_assert_uint_le(sh.runs, 8 * sh.levels); /* not one per page */
	/* And the answers did not change. */
	check_exact(&h, &m, 0, 7 << 12, 7 << 12);
	check_exact(&h, &m, PAGES, 7 << 12, 7 << 12);
	check_exact(&h, &m, PAGES + 1, 7 << 12, 7 << 12);
	check_exact(&h, &m, PAGES + 1, 5 << 12, 5 << 12);
	check_exact(&h, &m, PAGES + 1, (uint64_t)PAGES << 12,
		    (uint64_t)PAGES << 12);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/*
 * Every way a newer run meets older ones when levels merge (two at a time for
 * a ring's ends, FANIN at a time into a tier): inside one (splits it), over
 * several, over one end or the other, touching it, equal to it, at address 0
 * and at UINT64_MAX. Small ranges in two tiny windows make them all
 * happen many times; every address of both windows is asked about from
 * read_begins of every age, and the levels are checked after every merge.
 */
START_TEST(merge_edges)
{
	/* Two merges of FANIN levels into tier 1, and all the ring ones. */
	enum { N = 2 * PS__HIST_FANIN * PS__HIST_LOG + 500, W = 48 };
	struct ps__hist h;
	struct model m;
	struct ps_test_rng rng = ps_test_rng_new(23);

	ps__hist_init(&h, WIDTH, 0);
	model_init(&m, 1, N);
	for (uint64_t i = 0; i < N; i++) {
		uint64_t s = ps_test_below(&rng, W),
			 len = ps_test_below(&rng, 6);
		uint64_t l = s + (i % 41 ? len : ps_test_below(&rng, W));

		if (i % 2) { /* the top window, mirrored: ends at UINT64_MAX */
			uint64_t x = UINT64_MAX - l;

			l = UINT64_MAX - s;
			s = x;
		}
		add(&h, &m, s, l);
		if (i % PS__HIST_LOG == 0)
			(void)shape(&h);
	}
	ck_assert_uint_ge(shape(&h).levels, 2);
	for (uint64_t i0 = 0; i0 <= m.n; i0 += 1 + ps_test_below(&rng, 97)) {
		for (uint64_t a = 0; a < W + 8; a++) {
			check_exact(&h, &m, i0, a, a);
			check_exact(&h, &m, i0, UINT64_MAX - a, UINT64_MAX - a);
		}
		check_exact(&h, &m, i0, W + 8, UINT64_MAX - W - 8);
	}
	ck_assert_uint_eq(ps__hist_forgotten(&h), 0);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/* Numbers that wrap past 2^57 - 1 to 0 (the notifier's ends field). */
START_TEST(numbers_wrap)
{
	enum { N = 3000 };
	struct ps__hist h;
	struct model m;
	struct ps_test_rng rng = ps_test_rng_new(22);

	ps__hist_init(&h, WIDTH, MASK - 1000); /* the next end: MASK - 999 */
	model_init(&m, MASK - 999, N);
	for (uint64_t i = 0; i < N; i++) {
		uint64_t s, l;

		rand_range(&rng, &s, &l);
		add(&h, &m, s, l);
	}
	ck_assert_uint_lt(num(&m, m.n - 1), N); /* it wrapped */
	(void)shape(&h);
	for (int q = 0; q < 2000; q++) {
		uint64_t i0 = ps_test_below(&rng, m.n + 1), s, l;

		rand_range(&rng, &s, &l);
		check_exact(&h, &m, i0, s, q % 2 ? s : l);
	}
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/* --- a failed allocation forgets, and says so ----------------------------- */

static _Atomic(int) fail_allocs;

static void *failing_alloc(size_t size)
{
	return atomic_load(&fail_allocs) ? NULL : malloc(size);
}

START_TEST(forgotten_after_failed_alloc)
{
	struct ps__hist h;
	struct model m;
	uint64_t lost_from, lost_to;

	ps__hist_init(&h, WIDTH, 0);
	h.alloc = failing_alloc;
	model_init(&m, 1, 10 * PS__HIST_LOG);
	for (uint64_t i = 0; i < 2 * PS__HIST_LOG; i++) /* merged once */
		add(&h, &m, i << 12, (i << 12) + 4095);
	ck_assert_uint_eq(shape(&h).levels, 1);
	/*
	 * The next end merges the ring's 256 (indexes 256..511) and fails:
	 * they are forgotten.
	 */
	lost_from = m.n - PS__HIST_LOG;
	lost_to = m.n - 1;
	atomic_store(&fail_allocs, 1);
	add(&h, &m, m.n << 12, (m.n << 12) + 4095);
	atomic_store(&fail_allocs, 0);
	ck_assert_uint_eq(ps__hist_forgotten(&h), PS__HIST_LOG);
	while (m.n < 3 * PS__HIST_LOG) /* the ring fills, no merge yet */
		add(&h, &m, m.n << 12, (m.n << 12) + 4095);
	/* Reaching back into them: forgotten, even about other ranges. */
	ck_assert_int_eq(ask(&h, &m, lost_from, 0, 0), PS__HIST_FORGOTTEN);
	ck_assert_int_eq(ask(&h, &m, 0, 1 << 30, 1 << 30), PS__HIST_FORGOTTEN);
	/* Not reaching back: exact, from the ring. */
	check_exact(&h, &m, lost_to + 1, m.n << 12, m.n << 12);
	check_exact(&h, &m, lost_to + 1, (m.n - 1) << 12, (m.n - 1) << 12);
	/* Merges work again; questions after the loss stay exact. */
	while (m.n < 8 * PS__HIST_LOG)
		add(&h, &m, (m.n % 300) << 12, ((m.n % 300) << 12) + 1);
	(void)shape(&h);
	for (uint64_t i0 = lost_to + 1; i0 <= m.n; i0 += 13) {
		check_exact(&h, &m, i0, 299 << 12, 299 << 12);
		check_exact(&h, &m, i0, 300 << 12, 300 << 12);
		check_exact(&h, &m, i0, 17 << 12, 17 << 12);
	}
	ck_assert_int_eq(ask(&h, &m, lost_to, 0, 0), PS__HIST_FORGOTTEN);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/* --- the cap on memory forgets the oldest, and says so ------------------- */

/* Is @a the exact answer, or FORGOTTEN (never a wrong yes or no)? */
static bool exact_or_forgotten(const struct ps__hist *h, const struct model *m,
			       uint64_t i0, uint64_t s, uint64_t l,
			       enum ps__hist_answer *a)
{
	bool w = want(m, i0, m->n, s, l);

	*a = ask(h, m, i0, s, l);
	return *a == PS__HIST_FORGOTTEN ||
	       *a == (w ? PS__HIST_YES : PS__HIST_NO);
}

/*
 * Ends of distinct pages, far more than the cap: the runs never pass it (they
 * grew by one per page before it), answers reaching back past what was kept
 * are FORGOTTEN (never wrong), and a reader within the latest max_runs / 2
 * ends stays exact. Along the way, merges that only part of a level survives,
 * and old stretches that later ends cover again.
 */
START_TEST(capped_memory)
{
	enum { CAP = 4 * PS__HIST_LOG, N = 20 * CAP };
	struct ps__hist h;
	struct model m;
	struct ps_test_rng rng = ps_test_rng_new(24);
	struct ps__hist_shape sh;
	enum ps__hist_answer a;
	unsigned int forgotten = 0;

	ps__hist_init(&h, WIDTH, 0);
	h.max_runs = CAP;
	model_init(&m, 1, N);
	for (uint64_t i = 0; i < N; i++) {
		uint64_t p = (i * 4099) % (N - N / 8); /* some pages twice */

		add(&h, &m, p << 12, (p << 12) + 4095);
		if (i % PS__HIST_LOG == 1) {
			sh = shape(&h);
			ck_assert_uint_le(sh.runs, CAP);
		}
	}
	ck_assert_uint_gt(ps__hist_forgotten(&h), 0);
	for (uint64_t i0 = 0; i0 <= m.n; i0 += 1 + ps_test_below(&rng, 61)) {
		uint64_t p = ps_test_below(&rng, N), q = m.n - 1 - i0 % CAP;

		/*
		 * Never wrong; exact for a reader of the latest CAP / 2. The
		 * page of the first end after e0 is always a yes (or
		 * forgotten), however long ago its run was dropped.
		 */
		for (int k = 0; k < 4; k++) {
			uint64_t s = k == 0   ? p << 12
				     : k == 1 ? m.start[q] + 5
				     : k == 2 ? (uint64_t)N << 13 /* never */
					      : m.start[i0 < m.n ? i0 : q];

			ck_assert(exact_or_forgotten(&h, &m, i0, s, s, &a));
			forgotten += a == PS__HIST_FORGOTTEN;
			if (m.n - i0 <= CAP / 2)
				ck_assert_int_ne(a, PS__HIST_FORGOTTEN);
		}
	}
	ck_assert_uint_gt(forgotten, 0);
	ck_assert_int_eq(ask(&h, &m, 0, 0, UINT64_MAX), PS__HIST_FORGOTTEN);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/*
 * The default cap, against the growth it replaced: a sweep over half again
 * as many distinct pages as PS__HIST_MAX_RUNS, each invalidated once (a guest
 * being torn down page by page), ends with at most PS__HIST_MAX_RUNS runs.
 */
START_TEST(per_page_sweep_is_bounded)
{
	enum { N = PS__HIST_MAX_RUNS + PS__HIST_MAX_RUNS / 2 };
	struct ps__hist h;
	struct model m;
	struct ps__hist_shape sh;

	ps__hist_init(&h, WIDTH, 0);
	ck_assert_uint_eq(h.max_runs, PS__HIST_MAX_RUNS);
	model_init(&m, 1, N);
	for (uint64_t p = 0; p < N; p++)
		add(&h, &m, p << 12, (p << 12) + 4095);
	sh = shape(&h);
	ck_assert_uint_le(sh.runs, PS__HIST_MAX_RUNS);
	ck_assert_uint_gt(ps__hist_forgotten(&h), 0);
	/* The latest pages: exact; the first: forgotten, not "no". */
	check_exact(&h, &m, m.n - 1000, (N - 1) << 12, (N - 1) << 12);
	check_exact(&h, &m, m.n - 1000, (N - 2000) << 12, (N - 2000) << 12);
	ck_assert_int_eq(ask(&h, &m, 0, 5 << 12, 5 << 12), PS__HIST_FORGOTTEN);
	ps__hist_destroy(&h);
	model_free(&m);
}
END_TEST

/* --- readers racing the writer -------------------------------------------- */

/*
 * The writer adds random ends and publishes how many (after each add, as the
 * notifier publishes an end in its state word). A reader takes e1 from that
 * count and a random e0 before it, asks about a random range, and checks: an
 * end in (e0, e1] overlapping means YES; NO means none did; YES without one in
 * (e0, e1] needs one between e1 and the count after the question; FORGOTTEN
 * never (no allocation fails), unless the race lowers the cap on runs so that
 * merges drop old ones while readers ask (then it is counted, and must happen).
 * The writer runs until it did its share and every side overlapped in enough
 * operations (harness.h): each reader's questions while the writer progressed,
 * the writer's ends while a reader asked. Past its share the writer waits (1 ms
 * at most) for a reader's question before each end, so that the model's room,
 * set from the share, the overlap needed and the time cap, is enough.
 */
struct race {
	struct ps__hist h;
	struct model m;
	uint64_t ends, room;
	_Atomic(uint64_t) count;
	struct ps_test_overlap ov; /* side 0 the writer, then the readers */
	_Atomic(unsigned) readers; /* readers started (their sides) */
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) asked, far, forgotten;
	bool capped; /* max_runs lowered: FORGOTTEN allowed */
};

static void *race_writer(void *arg)
{
	struct race *r = arg;
	struct ps_test_rng rng = ps_test_rng_new(23);
	struct ps_test_side me = ps_test_side(&r->ov, 0, 0);

	for (uint64_t i = 0; i < r->room && !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		uint64_t s, l;

		if (i >= r->ends)
			ps_test_overlap_wait(&me, 1000000);

		rand_range(&rng, &s, &l);
		add(&r->h, &r->m, s, l);
		/* Release: the end and its model entry first. */
		atomic_store_explicit(&r->count, i + 1, memory_order_release);
	}
	/* Done, or out of room: the readers' loops end too. */
	ps_test_overlap_stop(&r->ov);
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	unsigned int side = 1 + atomic_fetch_add(&r->readers, 1);
	struct ps_test_rng rng = ps_test_rng_new(200 + side);
	struct ps_test_side me = ps_test_side(&r->ov, side, 1u << 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		/* Acquire: the ends counted, and their model entries. */
		uint64_t n1 = atomic_load_explicit(&r->count,
						   memory_order_acquire),
			 n2;
		/* Mostly recent, some across levels, a few from the start. */
		uint64_t back = ps_test_below(&rng, 8)
					? ps_test_below(&rng, 600)
				: ps_test_below(&rng, 8)
					? ps_test_below(&rng, 20000)
					: ps_test_below(&rng, n1 + 1);
		uint64_t i0 = back > n1 ? 0 : n1 - back, s, l;
		enum ps__hist_answer a;

		if (n1 == 0)
			continue;
		rand_range(&rng, &s, &l);
		if (ps_test_below(&rng, 2))
			l = s;
		a = ps__hist_query(&r->h, num(&r->m, i0) - 1,
				   num(&r->m, n1 - 1), s, l);
		/* Acquire: as above. */
		n2 = atomic_load_explicit(&r->count, memory_order_acquire);
		if (a == PS__HIST_FORGOTTEN && r->capped)
			atomic_fetch_add(&r->forgotten, 1);
		else if (a == PS__HIST_FORGOTTEN ||
			 (a == PS__HIST_NO && want(&r->m, i0, n1, s, l)) ||
			 (a == PS__HIST_YES && !want(&r->m, i0, n2, s, l))) {
			fprintf(stderr,
				"history race: ends after #%llu up to #%llu "
				"(#%llu now), [%#llx, %#llx]: got %d\n",
				(unsigned long long)i0, (unsigned long long)n1,
				(unsigned long long)n2, (unsigned long long)s,
				(unsigned long long)l, (int)a);
			atomic_fetch_add(&r->violations, 1);
		}
		atomic_fetch_add(&r->asked, 1);
		if (n1 - i0 > PS__HIST_LOG)
			atomic_fetch_add(&r->far, 1);
	}
	return NULL;
}

/*
 * @need: overlapped operations per side (0: the default). @cap: the history's
 * max_runs (0: the default).
 */
static void run_race(uint64_t ends, unsigned int readers, uint64_t need,
		     uint64_t cap)
{
	static struct race r;
	pthread_t w, rd[PS_TEST_OVERLAP_SIDES - 1];

	ck_assert_uint_le(readers, PS_TEST_OVERLAP_SIDES - 1);
	memset(&r, 0, sizeof(r));
	ps__hist_init(&r.h, WIDTH, 0);
	if (cap) {
		r.h.max_runs = cap;
		r.capped = true;
	}
	r.ends = ends;
	ps_test_overlap_init(&r.ov, 1 + readers, need);
	r.ov.side[0].min_ops = ends;
	/* Past the share: one end a millisecond at least, or an overlap. */
	r.room = 2 * ends + 4 * r.ov.side[0].need + r.ov.cap_ns / 1000000 +
		 1024;
	model_init(&r.m, 1, r.room);
	for (unsigned int i = 0; i < readers; i++)
		ck_assert_int_eq(pthread_create(&rd[i], NULL, race_reader, &r),
				 0);
	ck_assert_int_eq(pthread_create(&w, NULL, race_writer, &r), 0);
	pthread_join(w, NULL);
	for (unsigned int i = 0; i < readers; i++)
		pthread_join(rd[i], NULL);
	fprintf(stderr,
		"history race: %llu ends, %u readers, %llu questions (%llu "
		"reaching past the ring, %llu forgotten)\n",
		(unsigned long long)atomic_load(&r.count), readers,
		(unsigned long long)atomic_load(&r.asked),
		(unsigned long long)atomic_load(&r.far),
		(unsigned long long)atomic_load(&r.forgotten));
	ck_assert_uint_eq(atomic_load(&r.violations), 0);
	if (cap)
		ck_assert_uint_gt(atomic_load(&r.forgotten), 0);
	ck_assert_uint_gt(atomic_load(&r.asked), ends / 256);
	ck_assert_uint_gt(atomic_load(&r.far), 0);
	ps_test_overlap_check(&r.ov, "history writer vs readers");
	(void)shape(&r.h);
	ps__hist_destroy(&r.h);
	model_free(&r.m);
}

START_TEST(readers_race_merges)
{
	run_race(30000, 1, 100, 0);
}
END_TEST

START_TEST(readers_race_capped_merges)
{
	run_race(30000, 1, 100, 4 * PS__HIST_LOG);
}
END_TEST

START_TEST(stress_readers_race_merges)
{
	run_race(ps_test_stress_size("PS_STRESS_ITERS", 200000), 3, 0, 0);
}
END_TEST

static Suite *history_suite(void)
{
	Suite *s = suite_create("history");
	TCase *tc;

	tc = ps_test_tcase(s, "ring", 10);
	tcase_add_test(tc, empty_and_ring);

	tc = ps_test_tcase(s, "levels", 60);
	tcase_add_test(tc, exact_across_merges);
	tcase_add_test(tc, envelope_replaces_covered);
	tcase_add_test(tc, merge_edges);
	tcase_add_test(tc, numbers_wrap);

	tc = ps_test_tcase(s, "forgotten", 10);
	tcase_add_test(tc, forgotten_after_failed_alloc);
	tcase_add_test(tc, capped_memory);
	tcase_add_test(tc, per_page_sweep_is_bounded);

	tc = ps_test_tcase(s, "race", 60);
	tcase_add_test(tc, readers_race_merges);
	tcase_add_test(tc, readers_race_capped_merges);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_test(tc, stress_readers_race_merges);
	return s;
}

PS_TEST_MAIN(history_suite)
