// SPDX-License-Identifier: MIT
/*
 * bench/bench-page.c - the page word against its floor and its peers.
 *
 * Operations: get+put, pin+unpin, try_get+put, is_pinned.
 * Scenarios:  uncontended (1 thread), shared (2 threads, one word),
 *             private (2 threads, a word each, on separate cache lines).
 * Peers, all measured in the same run:
 *   floor     a bare 64-bit atomic_fetch_add pair (add relaxed, sub release);
 *             for is_pinned, a bare atomic load and one test of a 64-bit
 *             field mask (the least any predicate on a packed word costs:
 *             the mask needs a register, where a compare with zero would
 *             fold into the load): the cost of the atomic itself, below
 *             which no implementation can go;
 *   linux     Linux's small-folio scheme on a 32-bit atomic: a pin adds
 *             GUP_PIN_COUNTING_BIAS (1024) with one fetch-and-add, an unpin
 *             subtracts it and tests for zero (gup_put_folio), try_get is
 *             add-unless-zero (folio_try_get), is_pinned is
 *             refcount >= 1024. The pin is the bare add: the peer the
 *             shared-word target is judged against is the cheapest form of
 *             the scheme, one locked instruction each way;
 *   linux+chk the same pin preceded by try_grab_folio()'s sanity load of
 *             the count (WARN_ON_ONCE(refcount <= 0)). Shown beside the bare
 *             scheme because on a shared word that load costs a second
 *             coherence transaction per pin (the line arrives shared, then
 *             must be owned for the add), which makes the peer slower and
 *             the ratio to it flattering: measured against this form the
 *             ratio read 1.08x where the bare scheme gave 1.17x;
 *   cas       an exact pin done the naive way: refs and pins as two 32-bit
 *             halves of a word, every update a compare-and-swap loop that
 *             checks limits;
 *   mutex     a pthread mutex around two plain counters.
 *
 * Every loop branches on the release's result, as a caller does ("last
 * reference? free"), rather than keeping it in a register.
 *
 * Targets (issue 2): uncontended pagestate / floor <= 1.10 for every
 * operation; shared-word pin+unpin pagestate / linux <= 1.10.
 */
#include <pagestate/page.h>

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each object sits alone on its own pair of cache lines. */
struct slot {
	_Alignas(128) struct ps_page page;
	_Atomic(uint64_t) floor;
	_Atomic(int) linux_ref;
	_Atomic(uint64_t) cas;
	pthread_mutex_t lock;
	uint64_t m_refs, m_pins;
};

static uint64_t sink_total;

/* Keep a value alive without a volatile access. */
static inline void keep(uint64_t v)
{
	__asm__ __volatile__("" : : "r"(v) : "memory");
}

/*
 * Every measured loop has the same shape: take the time, run the body
 * @n times, return the elapsed nanoseconds. The bodies are the point.
 */
#define BENCH_LOOP(fn, body)                       \
	static double fn(void *arg, uint64_t n)    \
	{                                          \
		struct slot *s = arg;              \
		double t0 = bench_now_ns();        \
		for (uint64_t i = 0; i < n; i++) { \
			body;                      \
		}                                  \
		return bench_now_ns() - t0;        \
	}

/*
 * Predicates cost a cycle or two, so a loop of one call per iteration mostly
 * measures loop overhead and alignment. These loops make 8 calls per
 * iteration and sum the answers. Each call is still one atomic load, and the
 * reported time is per call (the driver multiplies n by PREDICATE_UNROLL).
 */
#define PREDICATE_UNROLL 8
/* clang-format off */
#define BENCH_PREDICATE(fn, expr)                                     \
	static double fn(void *arg, uint64_t n)                       \
	{                                                             \
		struct slot *s = arg;                                 \
		uint64_t acc = 0;                                     \
		double t0 = bench_now_ns();                           \
		for (uint64_t i = 0; i < n / PREDICATE_UNROLL; i++) { \
			_Pragma("GCC unroll 8")                       \
			for (int k = 0; k < PREDICATE_UNROLL; k++)    \
				acc += (expr);                        \
			keep(acc);                                    \
		}                                                     \
		return bench_now_ns() - t0;                           \
	}
/* clang-format on */

/* --- floor ------------------------------------------------------------- */

BENCH_LOOP(floor_pair,
	   atomic_fetch_add_explicit(&s->floor, 1, memory_order_relaxed);
	   if (atomic_fetch_sub_explicit(&s->floor, 1, memory_order_release) ==
	       1) abort())

/* Some 64-bit field (bits 12-34), as a packed word's predicate tests. */
#define FLOOR_FIELD_MASK UINT64_C(0x7fffff000)

BENCH_PREDICATE(floor_load,
		(atomic_load_explicit(&s->floor, memory_order_relaxed) &
		 FLOOR_FIELD_MASK) != 0)

/* --- pagestate --------------------------------------------------------- */

BENCH_LOOP(ps_get_put, if (ps_page_get(&s->page)) abort();
	   if (ps_page_put(&s->page)) abort())

BENCH_LOOP(ps_pin_unpin, if (ps_page_pin(&s->page)) abort();
	   if (ps_page_unpin(&s->page)) abort())

BENCH_LOOP(ps_tryget_put, if (!ps_page_try_get(&s->page)) abort();
	   if (ps_page_put(&s->page)) abort())

BENCH_PREDICATE(ps_is_pinned, ps_page_is_pinned(&s->page))

/* --- Linux's 32-bit bias scheme ------------------------------------------ */

#define LINUX_BIAS 1024

static inline void linux_get(_Atomic(int) *r)
{
	atomic_fetch_add_explicit(r, 1, memory_order_relaxed);
}

static inline bool linux_put_refs(_Atomic(int) *r, int refs)
{
	if (atomic_fetch_sub_explicit(r, refs, memory_order_release) == refs) {
		atomic_thread_fence(memory_order_acquire);
		return true;
	}
	return false;
}

static inline bool linux_pin(_Atomic(int) *r)
{
	/* folio_ref_add(folio, GUP_PIN_COUNTING_BIAS): the bare add. */
	atomic_fetch_add_explicit(r, LINUX_BIAS, memory_order_relaxed);
	return true;
}

static inline bool linux_pin_checked(_Atomic(int) *r)
{
	/* try_grab_folio(): WARN_ON_ONCE(refcount <= 0), then add the bias. */
	if (atomic_load_explicit(r, memory_order_relaxed) <= 0)
		return false;
	atomic_fetch_add_explicit(r, LINUX_BIAS, memory_order_relaxed);
	return true;
}

static inline bool linux_try_get(_Atomic(int) *r)
{
	int old = atomic_load_explicit(r, memory_order_relaxed);

	do {
		if (old == 0)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(r, &old, old + 1,
							memory_order_acquire,
							memory_order_relaxed));
	return true;
}

BENCH_LOOP(linux_get_put, linux_get(&s->linux_ref);
	   if (linux_put_refs(&s->linux_ref, 1)) abort())

BENCH_LOOP(linux_pin_unpin, if (!linux_pin(&s->linux_ref)) abort();
	   if (linux_put_refs(&s->linux_ref, LINUX_BIAS)) abort())

BENCH_LOOP(linux_chk_pin_unpin, if (!linux_pin_checked(&s->linux_ref)) abort();
	   if (linux_put_refs(&s->linux_ref, LINUX_BIAS)) abort())

BENCH_LOOP(linux_tryget_put, if (!linux_try_get(&s->linux_ref)) abort();
	   if (linux_put_refs(&s->linux_ref, 1)) abort())

BENCH_PREDICATE(linux_is_pinned,
		atomic_load_explicit(&s->linux_ref, memory_order_relaxed) >=
			LINUX_BIAS)

/* --- exact pins with a CAS loop ------------------------------------------ */

#define CAS_REFS(w) (0xffffffffu & (w))
#define CAS_PINS(w) ((w) >> 32)
#define CAS_LIMIT 0x7fffffffu

static inline bool cas_add(_Atomic(uint64_t) *w, int64_t refs, int64_t pins,
			   bool need_ref)
{
	uint64_t old = atomic_load_explicit(w, memory_order_relaxed), nw;

	do {
		int64_t r = (int64_t)CAS_REFS(old) + refs;
		int64_t p = (int64_t)CAS_PINS(old) + pins;

		if ((need_ref && CAS_REFS(old) == 0) || r < 0 || p < 0 ||
		    r > CAS_LIMIT || p > CAS_LIMIT)
			return false;
		nw = (uint64_t)p << 32 | (uint64_t)r;
	} while (!atomic_compare_exchange_weak_explicit(w, &old, nw,
							memory_order_acq_rel,
							memory_order_relaxed));
	return true;
}

BENCH_LOOP(cas_get_put, if (!cas_add(&s->cas, 1, 0, true)) abort();
	   if (!cas_add(&s->cas, -1, 0, false)) abort())

BENCH_LOOP(cas_pin_unpin, if (!cas_add(&s->cas, 1, 1, true)) abort();
	   if (!cas_add(&s->cas, -1, -1, false)) abort())

BENCH_PREDICATE(cas_is_pinned,
		CAS_PINS(atomic_load_explicit(&s->cas, memory_order_acquire)) !=
			0)

/* --- mutex --------------------------------------------------------------- */

BENCH_LOOP(mutex_get_put, pthread_mutex_lock(&s->lock); s->m_refs++;
	   pthread_mutex_unlock(&s->lock); pthread_mutex_lock(&s->lock);
	   s->m_refs--; pthread_mutex_unlock(&s->lock))

BENCH_LOOP(mutex_pin_unpin, pthread_mutex_lock(&s->lock); s->m_refs++;
	   s->m_pins++; pthread_mutex_unlock(&s->lock);
	   pthread_mutex_lock(&s->lock); s->m_refs--; s->m_pins--;
	   pthread_mutex_unlock(&s->lock))

static bool mutex_pinned(struct slot *s)
{
	bool pinned;

	pthread_mutex_lock(&s->lock);
	pinned = s->m_pins != 0;
	pthread_mutex_unlock(&s->lock);
	return pinned;
}

BENCH_PREDICATE(mutex_is_pinned, mutex_pinned(s))

/* --- driver --------------------------------------------------------------- */

struct impl {
	const char *name;
	bench_loop_fn fn;
};

#define IMPLS 6

struct op {
	const char *name;
	unsigned n;		  /* how many of impls[] */
	struct impl impls[IMPLS]; /* [0] is the floor, [1] linux */
};

static const struct op ops[] = {
	{"get+put",
	 5,
	 {{"floor", floor_pair},
	  {"linux", linux_get_put},
	  {"pagestate", ps_get_put},
	  {"cas", cas_get_put},
	  {"mutex", mutex_get_put}}},
	{"pin+unpin",
	 6,
	 {{"floor", floor_pair},
	  {"linux", linux_pin_unpin},
	  {"pagestate", ps_pin_unpin},
	  {"cas", cas_pin_unpin},
	  {"mutex", mutex_pin_unpin},
	  {"linux+chk", linux_chk_pin_unpin}}},
	{"try_get+put",
	 5,
	 {{"floor", floor_pair},
	  {"linux", linux_tryget_put},
	  {"pagestate", ps_tryget_put},
	  {"cas", cas_get_put},
	  {"mutex", mutex_get_put}}},
	{"is_pinned",
	 5,
	 {{"floor", floor_load},
	  {"linux", linux_is_pinned},
	  {"pagestate", ps_is_pinned},
	  {"cas", cas_is_pinned},
	  {"mutex", mutex_is_pinned}}},
};

struct scenario {
	const char *name;
	unsigned threads;
	bool shared;
	double iter_scale; /* contended cases are slower per op */
};

static const struct scenario scenarios[] = {
	{"uncontended", 1, true, 1.0},
	{"shared", 2, true, 0.25},
	{"private", 2, false, 1.0},
};

static void slot_init(struct slot *s)
{
	memset(s, 0, sizeof(*s));
	/* One reference held by the benchmark, as a mapping would hold it. */
	(void)ps_page_init(&s->page, 1);
	atomic_store_explicit(&s->floor, 1, memory_order_relaxed);
	atomic_store_explicit(&s->linux_ref, 1, memory_order_relaxed);
	atomic_store_explicit(&s->cas, 1, memory_order_relaxed);
	pthread_mutex_init(&s->lock, NULL);
	s->m_refs = 1;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct slot *slots;
	struct bench_stats un_ratio = {0}, shared_pin_vs_linux = {0};
	bool any = false;

	bench_init(&o, argc, argv, "page", NULL, NULL, NULL);
	if (posix_memalign((void **)&slots, 128, 2 * sizeof(*slots)))
		return 1;

	for (size_t si = 0; si < sizeof(scenarios) / sizeof(scenarios[0]);
	     si++) {
		const struct scenario *sc = &scenarios[si];
		void *args[2] = {&slots[0], sc->shared ? &slots[0] : &slots[1]};
		uint64_t iters = bench_iters(&o, (uint64_t)(2000000 *
							    sc->iter_scale));

		for (size_t oi = 0; oi < sizeof(ops) / sizeof(ops[0]); oi++) {
			const struct op *op = &ops[oi];
			struct bench_impl im[IMPLS];
			static struct bench_cmp c;
			struct bench_stats r;

			if (!bench_selected(&o, sc->name, op->name))
				continue;
			slot_init(&slots[0]);
			slot_init(&slots[1]);
			for (unsigned k = 0; k < op->n; k++)
				im[k] = (struct bench_impl){op->impls[k].name,
							    op->impls[k].fn,
							    NULL};
			/*
			 * Interleaved, round by round: every implementation
			 * of the operation sees the same stretch of a noisy
			 * machine. Each uses its own fields of the slots, so
			 * the rounds leave one another's state alone.
			 */
			bench_interleave(&o, sc->threads, args, im, op->n,
					 iters, 1.0, &c);
			bench_emit_cmp(&o, sc->name, op->name, "ns/op", &c, 1);
			r = bench_cmp_ratio(&c, 2, 0);
			if (si == 0 && r.median > un_ratio.median)
				un_ratio = r;
			if (!strcmp(sc->name, "shared") && oi == 1)
				shared_pin_vs_linux = bench_cmp_ratio(&c, 2, 1);
			any = true;
		}
	}
	if (any && !o.filter) {
		bench_target_ratio(&o, "uncontended pagestate/floor (worst op)",
				   un_ratio, "<=", 1.10);
		bench_target_ratio(&o, "shared-word pin+unpin pagestate/linux",
				   shared_pin_vs_linux, "<=", 1.10);
	}
	keep(sink_total);
	free(slots);
	return 0;
}
