/* SPDX-License-Identifier: MIT */
/*
 * tests/harness.h - what every Check suite of libpagestate shares.
 *
 *   PS_TEST_MAIN(suite_fn)    main(): one suite, CK_ENV verbosity, no core
 *                             dumps, exit status 1 on any failure.
 *   ps_test_env_u64()         stress sizes from the environment (small
 *                             defaults: CI has 2 cores and three builds).
 *   ps_test_tcase()           a tcase with a timeout; stress ones are tagged
 *                             "stress" so meson can run them as their own
 *                             suite (CK_INCLUDE_TAGS / CK_EXCLUDE_TAGS).
 *   ps_test_rng               a small deterministic generator (xorshift64*),
 *                             seeded from PS_TEST_SEED so that a failing
 *                             stress run can be replayed.
 *   ps_test_overlap           makes a stress tcase's threads really overlap,
 *                             and proves that they did (below).
 *
 * Environment: PS_STRESS_ITERS (operations per stress thread),
 * PS_STRESS_SCALE / PS_STRESS_SCALE_DIV (multiply / divide every stress
 * size), PS_STRESS_OVERLAP (overlapped operations each side of a stress
 * tcase must do, default 1000, scaled like the sizes), PS_STRESS_SECONDS
 * (the cap on a stress loop that has not overlapped enough, default 60),
 * PS_STRESS_VERBOSE (print each stress loop's overlap), PS_TEST_SEED.
 */
#ifndef PS_TESTS_HARNESS_H
#define PS_TESTS_HARNESS_H

#include <check.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline uint64_t ps_test_env_u64(const char *name, uint64_t fallback)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return fallback;
	v = strtoull(s, &end, 0);
	if (*end) {
		fprintf(stderr, "ignoring %s=%s: not a number\n", name, s);
		return fallback;
	}
	return (uint64_t)v;
}

/*
 * A stress size: @name if set, else @fallback; then multiplied by
 * PS_STRESS_SCALE and divided by PS_STRESS_SCALE_DIV (meson sets the divisor
 * under sanitizers). Never below 1.
 */
static inline uint64_t ps_test_stress_size(const char *name, uint64_t fallback)
{
	uint64_t div = ps_test_env_u64("PS_STRESS_SCALE_DIV", 1);
	uint64_t v = ps_test_env_u64(name, fallback) *
		     ps_test_env_u64("PS_STRESS_SCALE", 1) / (div ? div : 1);

	return v ? v : 1;
}

struct ps_test_rng {
	uint64_t s;
};

static inline struct ps_test_rng ps_test_rng_new(uint64_t stream)
{
	struct ps_test_rng r;

	r.s = ps_test_env_u64("PS_TEST_SEED", 0x9e3779b97f4a7c15ull) ^
	      (stream * 0xbf58476d1ce4e5b9ull);
	if (!r.s)
		r.s = 1;
	return r;
}

static inline uint64_t ps_test_rand(struct ps_test_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n). */
static inline uint64_t ps_test_below(struct ps_test_rng *r, uint64_t n)
{
	return n ? ps_test_rand(r) % n : 0;
}

/*
 * --- Overlap of a stress tcase's threads ---------------------------------
 *
 * A stress test proves nothing unless its threads' operations interleave, and
 * nothing guarantees that they do: on a loaded machine, or on one CPU under
 * SCHED_FIFO (`chrt -f 1 taskset -c 0`), a thread can run its whole loop before
 * its partner is scheduled at all. So a stress loop neither runs a fixed count
 * that one side can finish alone nor trusts a partner to be running: each side
 * (thread) calls ps_test_overlap_step() after each of its operations, and
 *
 *   - an operation counts as overlapped when a side it watches (by default
 *     every other side) completed an operation since this side's previous
 *     one: the two sides' operations interleaved;
 *   - a side that has seen no watched side progress for
 *     PS_TEST_OVERLAP_PATIENCE_NS yields the CPU if a watched side last ran
 *     on this side's CPU (or has not run yet), so that a partner waiting for
 *     this CPU runs even where nothing preempts this side (SCHED_FIFO, or
 *     one CPU); it never yields for a partner on another CPU, which the
 *     yield would not help (and, on a busy machine, would cost a time
 *     slice);
 *   - every side loops while !ps_test_overlap_done(): until every side did
 *     its minimum number of operations (its share: the test's stress size)
 *     and its number of overlapped operations, or until the time cap
 *     (PS_STRESS_SECONDS) passed; both conditions are global, so all the
 *     sides stop together;
 *   - after the join, ps_test_overlap_check() fails the test unless every
 *     side has its overlapped operations: a stress test whose threads did
 *     not overlap has tested nothing, and says so;
 *   - a race of the test's own that must have happened at least once can
 *     hold the loops too (ps_test_overlap_hold() and _release()).
 *
 * The counters are relaxed atomics: they order nothing, so they hide no
 * race from TSan.
 */
#define PS_TEST_OVERLAP_SIDES 8
#define PS_TEST_OVERLAP_PATIENCE_NS 50000 /* 50 us without partner progress */

struct ps_test_overlap_side {
	_Alignas(64) _Atomic(uint64_t) ops; /* written by the side only */
	_Atomic(uint64_t) overlapped;	    /* likewise */
	_Atomic(int) cpu;		    /* where it last stepped, or -1 */
	_Atomic(uint64_t) yields;	    /* for PS_STRESS_VERBOSE */
	uint64_t min_ops;		    /* its share: set before start */
	uint64_t need;			    /* overlapped operations due */
};

struct ps_test_overlap {
	struct ps_test_overlap_side side[PS_TEST_OVERLAP_SIDES];
	unsigned int nsides;
	uint64_t cap_ns; /* the time cap, from ps_test_overlap_init() */
	uint64_t start_ns;
	_Atomic(int) capped; /* the cap passed before enough overlap */
	_Atomic(int) stop;   /* ps_test_overlap_stop(): an early end */
	_Atomic(int) held;   /* ps_test_overlap_hold() not yet released */
};

/* One side's own view (its thread's stack). */
struct ps_test_side {
	struct ps_test_overlap *o;
	unsigned int id;
	uint32_t watch; /* sides whose progress counts as overlap */
	uint64_t ops, overlapped, seen, stalled, checks, stall_since_ns;
};

static inline uint64_t ps_test_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * @nsides sides, each needing @need overlapped operations (0: the default,
 * PS_STRESS_OVERLAP scaled like every stress size). Each side's share
 * starts at 0: set o->side[i].min_ops (and a side's own need, where its
 * operations are slow) before the threads start.
 */
static inline void ps_test_overlap_init(struct ps_test_overlap *o,
					unsigned int nsides, uint64_t need)
{
	ck_assert_uint_ge(nsides, 2);
	ck_assert_uint_le(nsides, PS_TEST_OVERLAP_SIDES);
	if (!need)
		need = ps_test_stress_size("PS_STRESS_OVERLAP", 1000);
	for (unsigned int i = 0; i < PS_TEST_OVERLAP_SIDES; i++) {
		atomic_init(&o->side[i].ops, 0);
		atomic_init(&o->side[i].overlapped, 0);
		atomic_init(&o->side[i].cpu, -1);
		atomic_init(&o->side[i].yields, 0);
		o->side[i].min_ops = 0;
		o->side[i].need = need;
	}
	o->nsides = nsides;
	o->cap_ns = ps_test_env_u64("PS_STRESS_SECONDS", 60) * 1000000000u;
	atomic_init(&o->capped, 0);
	atomic_init(&o->stop, 0);
	atomic_init(&o->held, 0);
	o->start_ns = ps_test_now_ns();
}

/* Side @id's view, counting the progress of the sides in @watch as overlap
 * (0: every other side). */
static inline struct ps_test_side ps_test_side(struct ps_test_overlap *o,
					       unsigned int id, uint32_t watch)
{
	struct ps_test_side s = {.o = o, .id = id};

	s.watch = (watch ? watch : ~UINT32_C(0)) & ~(UINT32_C(1) << id) &
		  ((UINT32_C(1) << o->nsides) - 1);
	return s;
}

static inline uint64_t ps_test_side_watched(const struct ps_test_side *s)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < s->o->nsides; i++)
		if (s->watch & (UINT32_C(1) << i))
			/* Relaxed: progress only. */
			sum += atomic_load_explicit(&s->o->side[i].ops,
						    memory_order_relaxed);
	return sum;
}

/* Does a watched side wait for this CPU (as far as one can tell)? */
static inline bool ps_test_side_shares_cpu(const struct ps_test_side *s,
					   int cpu)
{
	for (unsigned int i = 0; i < s->o->nsides; i++) {
		/* Relaxed: a hint only. */
		int c = atomic_load_explicit(&s->o->side[i].cpu,
					     memory_order_relaxed);

		if ((s->watch & (UINT32_C(1) << i)) && (c < 0 || c == cpu))
			return true;
	}
	return false;
}

/* Publish where this side runs (a hint: every 64 operations and stall). */
static inline int ps_test_side_cpu(struct ps_test_side *s)
{
	int cpu = sched_getcpu();

	/* Relaxed: a hint. */
	atomic_store_explicit(&s->o->side[s->id].cpu, cpu < 0 ? 0 : cpu,
			      memory_order_relaxed);
	return cpu;
}

/* After each operation of the side. */
static inline void ps_test_overlap_step(struct ps_test_side *s)
{
	uint64_t w = ps_test_side_watched(s);

	if (!(s->ops++ & 63))
		(void)ps_test_side_cpu(s);
	if (w != s->seen) {
		s->seen = w;
		s->overlapped++;
		s->stalled = 0;
	} else if (s->stalled++ == 0) {
		s->stall_since_ns = ps_test_now_ns();
	} else if (((s->stalled & (s->stalled - 1)) == 0 ||
		    s->stalled % 64 == 0) && /* the clock costs: now and then */
		   ps_test_now_ns() - s->stall_since_ns >=
			   PS_TEST_OVERLAP_PATIENCE_NS) {
		if (ps_test_side_shares_cpu(s, ps_test_side_cpu(s))) {
			sched_yield(); /* let a partner waiting for it run */
			/* Relaxed: a statistic. */
			atomic_fetch_add_explicit(&s->o->side[s->id].yields, 1,
						  memory_order_relaxed);
		}
		s->stalled = 0;
	}
	/* Relaxed: progress only; the join orders the test's memory. */
	atomic_store_explicit(&s->o->side[s->id].ops, s->ops,
			      memory_order_relaxed);
	atomic_store_explicit(&s->o->side[s->id].overlapped, s->overlapped,
			      memory_order_relaxed);
}

/*
 * A condition of the test's own that the loops must also wait for (a race
 * that must have been seen at least once): hold before the threads start,
 * release (once) when it is met. The time cap still ends the loops.
 */
static inline void ps_test_overlap_hold(struct ps_test_overlap *o)
{
	/* Relaxed: a count; the loops only poll it. */
	atomic_fetch_add_explicit(&o->held, 1, memory_order_relaxed);
}

static inline void ps_test_overlap_release(struct ps_test_overlap *o)
{
	/* Relaxed: as above. */
	atomic_fetch_sub_explicit(&o->held, 1, memory_order_relaxed);
}

/* Did every side do its share and overlap enough? */
static inline bool ps_test_overlap_enough(const struct ps_test_overlap *o)
{
	/* Relaxed: progress only. */
	if (atomic_load_explicit(&o->held, memory_order_relaxed))
		return false;
	for (unsigned int i = 0; i < o->nsides; i++)
		/* Relaxed: progress only. */
		if (atomic_load_explicit(&o->side[i].ops,
					 memory_order_relaxed) <
			    o->side[i].min_ops ||
		    atomic_load_explicit(&o->side[i].overlapped,
					 memory_order_relaxed) <
			    o->side[i].need)
			return false;
	return true;
}

/* Ends every side's loop early (a test that failed, or a side that ended). */
static inline void ps_test_overlap_stop(struct ps_test_overlap *o)
{
	/* Relaxed: a flag; the join orders the test's memory. */
	atomic_store_explicit(&o->stop, 1, memory_order_relaxed);
}

/* The loop condition of every side: true once the loop should end. */
static inline bool ps_test_overlap_done(struct ps_test_side *s)
{
	struct ps_test_overlap *o = s->o;

	/* Relaxed: flags; the join orders the test's memory. */
	if (atomic_load_explicit(&o->stop, memory_order_relaxed) ||
	    atomic_load_explicit(&o->capped, memory_order_relaxed))
		return true;
	if (ps_test_overlap_enough(o))
		return true;
	if (s->checks++ % 64 == 0 &&
	    ps_test_now_ns() - o->start_ns >= o->cap_ns) {
		/* Relaxed: as above. */
		atomic_store_explicit(&o->capped, 1, memory_order_relaxed);
		return true;
	}
	return false;
}

/*
 * Yield until a watched side progresses (after this side's last step), for
 * at most @max_ns, or until the loop is done. For a side whose operations
 * undo the others' progress (a harvest or a protect that write-protects
 * again the page a faulting writer was about to write): on one CPU, where
 * the writer runs only when everyone else yields, such a side could
 * otherwise always come between the writer's fault and its retry.
 */
static inline void ps_test_overlap_wait(struct ps_test_side *s, uint64_t max_ns)
{
	uint64_t t0 = ps_test_now_ns();

	while (ps_test_side_watched(s) == s->seen &&
	       ps_test_now_ns() - t0 < max_ns && !ps_test_overlap_done(s))
		sched_yield();
}

/*
 * After the join: every side overlapped enough (and, unless stopped early,
 * did its share). @what names the loop in the failure message; with
 * PS_STRESS_VERBOSE set each side's counts are printed.
 */
static inline void ps_test_overlap_check(struct ps_test_overlap *o,
					 const char *what)
{
	bool verbose = getenv("PS_STRESS_VERBOSE") != NULL;

	for (unsigned int i = 0; i < o->nsides; i++) {
		uint64_t ops = atomic_load(&o->side[i].ops);
		uint64_t ov = atomic_load(&o->side[i].overlapped);

		if (verbose)
			fprintf(stderr,
				"%s: side %u: %" PRIu64 " operations, %" PRIu64
				" overlapped, %" PRIu64 " yields\n",
				what, i, ops, ov,
				atomic_load(&o->side[i].yields));
		ck_assert_msg(ov >= o->side[i].need,
			      "%s: side %u overlapped the others in %" PRIu64
			      " of %" PRIu64 " operations, needs %" PRIu64
			      "%s: the threads did not run together, nothing "
			      "was tested",
			      what, i, ov, ops, o->side[i].need,
			      atomic_load(&o->capped) ? " (time cap reached)"
						      : "");
		ck_assert_msg(ops >= o->side[i].min_ops ||
				      atomic_load(&o->stop),
			      "%s: side %u did %" PRIu64 " of its %" PRIu64
			      " operations",
			      what, i, ops, o->side[i].min_ops);
	}
}

static inline TCase *ps_test_tcase(Suite *s, const char *name, double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static inline TCase *ps_test_stress_tcase(Suite *s, const char *name,
					  double timeout)
{
	TCase *tc = ps_test_tcase(s, name, timeout);

	tcase_set_tags(tc, "stress");
	return tc;
}

static inline int ps_test_run(Suite *s)
{
	struct rlimit no_core = {0, 0};
	SRunner *sr = srunner_create(s);
	int failed;

	setrlimit(RLIMIT_CORE, &no_core);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define PS_TEST_MAIN(suite_fn)                  \
	int main(void)                          \
	{                                       \
		return ps_test_run(suite_fn()); \
	}

#ifdef PAGESTATE_LEDGER_H
/*
 * With PS_TEST_LEDGER set (the *-ledger tests of tests/meson.build), a suite
 * that calls this on each space it creates runs with a ledger consumer
 * registered: ps_space_harvest() and ps_space_redirty() are then the
 * ledger's default consumer (C4 in lib/space-ledger.c), and every test of the
 * suite checks that they behave as before.
 */
static inline void ps_test_ledger_if_asked(struct ps_space *s)
{
	uint64_t id;

	if (getenv("PS_TEST_LEDGER"))
		ck_assert_int_eq(ps_ledger_consumer_add(s, PS_LEDGER_CLEAN,
							&id),
				 0);
}
#endif

#endif /* PS_TESTS_HARNESS_H */
