// SPDX-License-Identifier: MIT
/*
 * tests/test-notifier.c - interval notifiers: Linux's behaviours (retry
 * rules, read_begin during an invalidation, insert and remove during one,
 * non-blocking -EAGAIN, range errors, sequence parity, check_retry), the
 * exact whole-space check, the worked example of docs/notifier.md, and
 * bounded two-thread stress: translation caches that must never use a
 * translation invalidated before their retry check, with zero false
 * retries. Gn refers to the guarantees at the top of lib/notifier.c.
 */
#include <pagestate/notifier.h>
#include <pagestate/page.h>

#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define PG 4096u

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static struct ps_notifier_stats stats(const struct ps_notifier *n)
{
	struct ps_notifier_stats st;

	ps_notifier_get_stats(n, &st);
	return st;
}

/* --- a recording subscription --------------------------------------------- */

struct tsub {
	struct ps_interval sub;
	pthread_mutex_t lock;
	_Atomic(unsigned) calls;
	_Atomic(uint64_t) cur_seq; /* last cur_seq seen */
	_Atomic(uint64_t) inv_start, inv_len;
	_Atomic(int) event;
	_Atomic(unsigned) flags;
	_Atomic(int) refuse;	 /* return false (only honoured non-blocking) */
	_Atomic(int) refuse_any; /* return false even when blockable */
	_Atomic(int) live;	 /* set by the test while inserted (G7) */
	_Atomic(unsigned) dead_calls;
};

static bool tsub_invalidate(struct ps_interval *sub,
			    const struct ps_invalidation *inv, uint64_t cur_seq,
			    void *priv)
{
	struct tsub *t = priv;

	ck_assert_ptr_eq(sub, &t->sub);
	if (atomic_load(&t->refuse_any))
		return false;
	if (!ps_invalidation_blockable(inv)) {
		if (atomic_load(&t->refuse) || pthread_mutex_trylock(&t->lock))
			return false;
	} else {
		pthread_mutex_lock(&t->lock);
	}
	if (!atomic_load(&t->live))
		atomic_fetch_add(&t->dead_calls, 1);
	ps_interval_set_seq(sub, cur_seq);
	atomic_store(&t->cur_seq, cur_seq);
	atomic_store(&t->inv_start, inv->start);
	atomic_store(&t->inv_len, inv->len);
	atomic_store(&t->event, (int)inv->event);
	atomic_store(&t->flags, inv->flags);
	atomic_fetch_add(&t->calls, 1);
	pthread_mutex_unlock(&t->lock);
	return true;
}

static const struct ps_interval_ops tsub_ops = {tsub_invalidate};

static void tsub_init(struct tsub *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

static void tsub_add(struct tsub *t, struct ps_notifier *n, uint64_t start,
		     uint64_t len)
{
	tsub_init(t);
	atomic_store(&t->live, 1);
	ck_assert_int_eq(ps_interval_insert(&t->sub, n, start, len, &tsub_ops,
					    t),
			 0);
}

static void tsub_del(struct tsub *t)
{
	ps_interval_remove(&t->sub);
	atomic_store(&t->live, 0);
}

static unsigned calls(struct tsub *t)
{
	return atomic_load(&t->calls);
}

/* One complete invalidation. */
static void invalidate(struct ps_notifier *n, uint64_t start, uint64_t len)
{
	ck_assert_int_eq(ps_notifier_invalidate_start(n, start, len,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(n, start, len), 0);
}

static struct ps_notifier nt;

static void nt_setup(void)
{
	ck_assert_int_eq(ps_notifier_init(&nt), 0);
}

static void nt_teardown(void)
{
	ck_assert_int_eq(ps_notifier_destroy(&nt), 0);
}

/* A thread that runs one blocking call and reports when it returned. */
struct blocker {
	pthread_t thread;
	void (*fn)(struct blocker *b);
	struct tsub *t;
	uint64_t result;
	_Atomic(int) done;
};

static void *blocker_main(void *arg)
{
	struct blocker *b = arg;

	b->fn(b);
	atomic_store(&b->done, 1);
	return NULL;
}

static void blocker_start(struct blocker *b, void (*fn)(struct blocker *b),
			  struct tsub *t)
{
	b->fn = fn;
	b->t = t;
	atomic_store(&b->done, 0);
	ck_assert_int_eq(pthread_create(&b->thread, NULL, blocker_main, b), 0);
}

static bool blocker_done(struct blocker *b)
{
	return atomic_load(&b->done) != 0;
}

static void do_read_begin(struct blocker *b)
{
	b->result = ps_interval_read_begin(&b->t->sub);
}

static void do_remove(struct blocker *b)
{
	tsub_del(b->t);
}

/* Wait (bounded) until a counter of the stats reaches @want. */
static void wait_stat(const uint64_t *field, struct ps_notifier_stats *st,
		      uint64_t want)
{
	for (int i = 0; i < 2000; i++) {
		ps_notifier_get_stats(&nt, st);
		if (*field >= want)
			return;
		sleep_ms(1);
	}
	ck_abort_msg("waited 2 s for a statistic");
}

/* --- init ----------------------------------------------------------------- */

START_TEST(init_destroy_busy)
{
	struct ps_notifier n;
	struct tsub a;

	ck_assert_int_eq(ps_notifier_init(&n), 0);
	ck_assert_uint_eq(ps_notifier_read_begin(&n), 0);
	tsub_add(&a, &n, 0, PG);
	ck_assert_int_eq(ps_notifier_destroy(&n), -EBUSY); /* a subscription */
	tsub_del(&a);
	ck_assert_int_eq(ps_notifier_invalidate_start(&n, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_int_eq(ps_notifier_destroy(&n), -EBUSY); /* in flight */
	ck_assert_int_eq(ps_notifier_invalidate_end(&n, 0, PG), 0);
	ck_assert_int_eq(ps_notifier_destroy(&n), 0);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || PS_TSAN
#define HEAP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_SANITIZED 1
#endif
#endif
#ifndef HEAP_SANITIZED
#define HEAP_SANITIZED 0
#endif
#if HEAP_SANITIZED
/* The sanitizer allocator's (its header is not installed with GCC). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Heap bytes in use (glibc's main arena, or the sanitizer's allocator). */
static size_t heap_in_use(void)
{
#if HEAP_SANITIZED
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}

/*
 * Regression: destroy left the subscription tree's node pool (its header and
 * first chunk, about 5 KiB) allocated for good. Each notifier that ever had a
 * subscription leaked it. Nodes retired by the last removals keep the pool
 * until their grace period ends, so the heap may take a moment to come back.
 */
START_TEST(destroy_frees_subscription_memory)
{
	enum { ROUNDS = 1000 };
	struct ps_notifier n;
	struct tsub a;
	size_t base = 0, now = 0;

	for (int r = 0; r <= ROUNDS; r++) {
		ck_assert_int_eq(ps_notifier_init(&n), 0);
		tsub_add(&a, &n, (uint64_t)r * PG, PG);
		tsub_del(&a);
		pthread_mutex_destroy(&a.lock);
		ck_assert_int_eq(ps_notifier_destroy(&n), 0);
		if (r == 0)
			base = heap_in_use(); /* after liburcu's first use */
	}
	/* Leaked, the rounds hold about 5 MiB; freed, nothing lasting. */
	for (int i = 0; i < 300; i++) { /* 3 s */
		now = heap_in_use();
		if (now < base + ROUNDS * 256)
			break;
		sleep_ms(10);
	}
	ck_assert_uint_lt(now, base + ROUNDS * 256);
}
END_TEST

/* --- insert / remove ------------------------------------------------------ */

START_TEST(insert_errors)
{
	struct tsub a, b;
	static const struct ps_interval_ops no_cb = {NULL};

	tsub_init(&a);
	/* G10, as Linux: zero length and wrapping ranges are -EOVERFLOW. */
	ck_assert_int_eq(ps_interval_insert(&a.sub, &nt, 0, 0, &tsub_ops, &a),
			 -EOVERFLOW);
	ck_assert_int_eq(ps_interval_insert(&a.sub, &nt, UINT64_MAX, 2,
					    &tsub_ops, &a),
			 -EOVERFLOW);
	ck_assert_int_eq(ps_interval_insert(&a.sub, &nt, 1, UINT64_MAX,
					    &tsub_ops, &a),
			 0); /* [1, 2^64 - 1]: the largest range that fits */
	ck_assert_uint_eq(ps_interval_last(&a.sub), UINT64_MAX);
	ck_assert_int_eq(ps_interval_insert(&a.sub, &nt, 1, UINT64_MAX,
					    &tsub_ops, &a),
			 -EEXIST);
	ps_interval_remove(&a.sub);
	ps_interval_remove(&a.sub); /* not inserted: left alone */

	tsub_init(&b);
	ck_assert_int_eq(ps_interval_insert(&b.sub, &nt, 0, PG, NULL, &b),
			 -EINVAL);
	ck_assert_int_eq(ps_interval_insert(&b.sub, &nt, 0, PG, &no_cb, &b),
			 -EINVAL);
	ck_assert_int_eq(ps_interval_insert(&b.sub, NULL, 0, PG, &tsub_ops, &b),
			 -EINVAL);
	ck_assert_uint_eq(stats(&nt).subscriptions, 0);
}
END_TEST

START_TEST(callbacks_hit_overlaps_only)
{
	struct tsub a, b;
	uint64_t s1, s2;

	tsub_add(&a, &nt, 1 * PG, PG); /* [0x1000, 0x1fff] */
	tsub_add(&b, &nt, 3 * PG, PG); /* [0x3000, 0x3fff] */
	ck_assert_uint_eq(stats(&nt).subscriptions, 2);

	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 2 * PG - 1, 1,
						      PS_NOTIFIER_PROTECTION,
						      0),
			 0); /* a's last byte */
	ck_assert_uint_eq(calls(&a), 1);
	ck_assert_uint_eq(calls(&b), 0);
	ck_assert_uint_eq(atomic_load(&a.inv_start), 2 * PG - 1);
	ck_assert_uint_eq(atomic_load(&a.inv_len), 1);
	ck_assert_int_eq(atomic_load(&a.event), PS_NOTIFIER_PROTECTION);
	ck_assert_uint_eq(atomic_load(&a.flags), 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 2 * PG - 1, 1), 0);

	invalidate(&nt, 2 * PG, PG); /* between them: adjacent to both */
	invalidate(&nt, 0, PG);	     /* ends right before a */
	ck_assert_uint_eq(calls(&a) + calls(&b), 1);

	s1 = atomic_load(&a.cur_seq);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, UINT64_MAX,
						      PS_NOTIFIER_RELEASE, 0),
			 0);
	ck_assert_uint_eq(calls(&a), 2);
	ck_assert_uint_eq(calls(&b), 1);
	ck_assert_int_eq(atomic_load(&b.event), PS_NOTIFIER_RELEASE);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, UINT64_MAX), 0);

	/* Sequence parity: cur_seq is odd and grows (Linux: always odd). */
	s2 = atomic_load(&a.cur_seq);
	ck_assert_uint_eq(s1 & 1, 1);
	ck_assert_uint_eq(s2 & 1, 1);
	ck_assert_uint_gt(s2, s1);
	ck_assert_uint_eq(atomic_load(&b.cur_seq), s2); /* one ticket each */
	ck_assert_uint_eq(stats(&nt).callbacks, 3);
	ck_assert_uint_eq(stats(&nt).invalidations, 4);

	tsub_del(&a);
	invalidate(&nt, 0, UINT64_MAX);
	ck_assert_uint_eq(calls(&a), 2); /* G7: removed, never called again */
	ck_assert_uint_eq(calls(&b), 2);
	tsub_del(&b);
}
END_TEST

/*
 * The treap against brute force: random, overlapping subscriptions, random
 * inserts and removes, and random invalidations whose callback sets must be
 * exactly the overlapping live subscriptions.
 */
#define TREE_N 600

START_TEST(tree_matches_brute_force)
{
	static struct tsub t[TREE_N];
	uint64_t start[TREE_N], len[TREE_N];
	bool in[TREE_N] = {false};
	struct ps_test_rng rng = ps_test_rng_new(42);
	unsigned ninserted = 0;

	for (int i = 0; i < TREE_N; i++) {
		start[i] = ps_test_below(&rng, 1 << 16);
		/* Mostly small, some large (nested and overlapping). */
		len[i] = 1 + ps_test_below(&rng, i % 10 ? 64 : 1 << 14);
		if (i % 50 == 0)
			start[i] = start[0]; /* equal starts */
	}
	for (int round = 0; round < 4000; round++) {
		int i = (int)ps_test_below(&rng, TREE_N);
		uint64_t qs = ps_test_below(&rng, 1 << 16);
		uint64_t ql = 1 + ps_test_below(&rng, round % 7 ? 32 : 4096);
		unsigned before[TREE_N];

		if (in[i]) {
			tsub_del(&t[i]);
			ninserted--;
		} else {
			tsub_add(&t[i], &nt, start[i], len[i]);
			ninserted++;
		}
		in[i] = !in[i];
		if (round % 3)
			continue;
		for (int k = 0; k < TREE_N; k++)
			before[k] = in[k] ? calls(&t[k]) : 0;
		invalidate(&nt, qs, ql);
		for (int k = 0; k < TREE_N; k++) {
			bool hit = in[k] && start[k] <= qs + ql - 1 &&
				   qs <= start[k] + len[k] - 1;

			if (in[k])
				ck_assert_uint_eq(calls(&t[k]) - before[k],
						  hit);
		}
	}
	ck_assert_uint_eq(stats(&nt).subscriptions, ninserted);
	for (int i = 0; i < TREE_N; i++) {
		if (in[i])
			tsub_del(&t[i]);
		ck_assert_uint_eq(atomic_load(&t[i].dead_calls), 0);
	}
}
END_TEST

/*
 * Many subscriptions with one start span several leaves: each can still be
 * found (double insert), removed in any order, and hit exactly.
 */
START_TEST(tree_equal_starts)
{
	static struct tsub t[100];
	struct ps_test_rng rng = ps_test_rng_new(43);
	unsigned want[100] = {0};
	int order[100];

	for (int i = 0; i < 100; i++) {
		tsub_add(&t[i], &nt, 7 * PG, (uint64_t)(1 + i) * PG);
		order[i] = i;
	}
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(ps_interval_insert(&t[i].sub, &nt, 7 * PG, PG,
						    &tsub_ops, &t[i]),
				 -EEXIST);
	for (int i = 99; i > 0; i--) { /* a random removal order */
		int j = (int)ps_test_below(&rng, (uint64_t)i + 1), x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	for (int k = 0; k < 100; k++) {
		invalidate(&nt, (uint64_t)(7 + 50) * PG, 1); /* i >= 50 hit */
		for (int i = 0; i < 100; i++) {
			want[i] += atomic_load(&t[i].live) && i >= 50;
			ck_assert_uint_eq(calls(&t[i]), want[i]);
		}
		tsub_del(&t[order[k]]);
	}
	ck_assert_uint_eq(stats(&nt).subscriptions, 0);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(atomic_load(&t[i].dead_calls), 0);
}
END_TEST

/* --- per-subscription retry ----------------------------------------------- */

START_TEST(read_retry_rules)
{
	struct tsub a;
	uint64_t seq;

	tsub_add(&a, &nt, 16 * PG, 4 * PG);
	/* Begin with no invalidation: retry false. */
	seq = ps_interval_read_begin(&a.sub);
	ck_assert_uint_eq(seq & 1, 1); /* parity: always odd */
	pthread_mutex_lock(&a.lock);
	ck_assert(!ps_interval_read_retry(&a.sub, seq));
	pthread_mutex_unlock(&a.lock);
	ck_assert(!ps_interval_check_retry(&a.sub, seq));

	/* A non-overlapping invalidation: still false (G3). */
	invalidate(&nt, 0, 16 * PG);
	invalidate(&nt, 20 * PG, 100 * PG);
	pthread_mutex_lock(&a.lock);
	ck_assert(!ps_interval_read_retry(&a.sub, seq));
	pthread_mutex_unlock(&a.lock);
	ck_assert(!ps_interval_check_retry(&a.sub, seq));

	/* An overlapping one between begin and retry: true, from its start. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 19 * PG, 2 * PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert(ps_interval_check_retry(&a.sub, seq)); /* G4: reliable */
	pthread_mutex_lock(&a.lock);
	ck_assert(ps_interval_read_retry(&a.sub, seq));
	pthread_mutex_unlock(&a.lock);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 19 * PG, 2 * PG), 0);
	pthread_mutex_lock(&a.lock);
	ck_assert(ps_interval_read_retry(&a.sub, seq)); /* stays true */
	pthread_mutex_unlock(&a.lock);

	/* A fresh begin after the end succeeds. */
	seq = ps_interval_read_begin(&a.sub);
	ck_assert_uint_eq(seq, atomic_load(&a.cur_seq));
	pthread_mutex_lock(&a.lock);
	ck_assert(!ps_interval_read_retry(&a.sub, seq));
	pthread_mutex_unlock(&a.lock);
	tsub_del(&a);
}
END_TEST

START_TEST(read_begin_waits_for_overlapping_only)
{
	struct tsub a;
	struct blocker b;
	struct ps_notifier_stats st;
	uint64_t seq;

	tsub_add(&a, &nt, 8 * PG, PG);

	/* G2: a non-overlapping invalidation in flight: no wait. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 8 * PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	seq = ps_interval_read_begin(&a.sub);
	ck_assert_uint_eq(stats(&nt).read_begin_waits, 0);

	/* An overlapping one in flight (its callback ran): read_begin waits. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 8 * PG, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	blocker_start(&b, do_read_begin, &a);
	wait_stat(&st.read_begin_waits, &st, 1);
	sleep_ms(20);
	ck_assert(!blocker_done(&b));
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 8 * PG, PG), 0);
	pthread_join(b.thread, NULL);
	ck_assert(blocker_done(&b));
	/* It returns the post-invalidation sequence: the next check passes. */
	ck_assert_uint_eq(b.result, atomic_load(&a.cur_seq));
	pthread_mutex_lock(&a.lock);
	ck_assert(!ps_interval_read_retry(&a.sub, b.result));
	ck_assert(ps_interval_read_retry(&a.sub, seq)); /* the older begin */
	pthread_mutex_unlock(&a.lock);

	/* The other, unrelated invalidation is still in flight: no wait. */
	(void)ps_interval_read_begin(&a.sub);
	ck_assert_uint_eq(stats(&nt).read_begin_waits, 1);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, 8 * PG), 0);
	tsub_del(&a);
}
END_TEST

START_TEST(insert_during_invalidation)
{
	struct tsub a, late;
	struct blocker b;
	struct ps_notifier_stats st;
	uint64_t seq;

	tsub_add(&a, &nt, 0, PG);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 16 * PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	/* G8: inserted mid-invalidation; that invalidation does not call it. */
	tsub_add(&late, &nt, 4 * PG, PG);
	ck_assert_uint_eq(calls(&late), 0);
	/* ... but must assume it is included: read_begin waits for its end. */
	blocker_start(&b, do_read_begin, &late);
	wait_stat(&st.read_begin_waits, &st, 1);
	sleep_ms(20);
	ck_assert(!blocker_done(&b));
	/* A new invalidation started after the insert does call it. */
	invalidate(&nt, 4 * PG, 1);
	ck_assert_uint_eq(calls(&late), 1);
	ck_assert(!blocker_done(&b)); /* still waiting for the first one */
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, 16 * PG), 0);
	pthread_join(b.thread, NULL);
	pthread_mutex_lock(&late.lock);
	ck_assert(!ps_interval_read_retry(&late.sub, b.result));
	pthread_mutex_unlock(&late.lock);

	/* Inserted while only other ranges are in flight: no wait. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	tsub_del(&late);
	tsub_add(&late, &nt, 4 * PG, PG);
	seq = ps_interval_read_begin(&late.sub);
	ck_assert_uint_eq(stats(&nt).read_begin_waits, 1);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), 0);
	pthread_mutex_lock(&late.lock);
	ck_assert(!ps_interval_read_retry(&late.sub, seq));
	pthread_mutex_unlock(&late.lock);
	tsub_del(&late);
	tsub_del(&a);
}
END_TEST

START_TEST(remove_during_invalidation)
{
	struct tsub a, other;
	struct blocker b;
	struct ps_notifier_stats st;

	tsub_add(&a, &nt, 0, PG);
	tsub_add(&other, &nt, 8 * PG, PG);

	/* Removing while an unrelated invalidation runs: no wait (G7). */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 9 * PG, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	tsub_del(&other);
	ck_assert_uint_eq(stats(&nt).remove_waits, 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 9 * PG, PG), 0);

	/* An overlapping invalidation in flight: remove waits for its end. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 4 * PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_uint_eq(calls(&a), 1);
	blocker_start(&b, do_remove, &a);
	wait_stat(&st.remove_waits, &st, 1);
	sleep_ms(20);
	ck_assert(!blocker_done(&b));
	/* Already out of the set: a new invalidation does not call it. */
	invalidate(&nt, 0, 4 * PG);
	ck_assert_uint_eq(calls(&a), 1);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, 4 * PG), 0);
	pthread_join(b.thread, NULL);
	ck_assert(blocker_done(&b));
	ck_assert_uint_eq(stats(&nt).subscriptions, 0);
	ck_assert_uint_eq(atomic_load(&a.dead_calls), 0);
}
END_TEST

/* --- non-blocking and errors ---------------------------------------------- */

START_TEST(nonblock_eagain)
{
	struct tsub a, b;
	uint64_t state;

	tsub_add(&a, &nt, 0, PG);
	tsub_add(&b, &nt, PG, PG);
	state = ps_notifier_read_begin(&nt);

	/* a (first in address order) refuses: -EAGAIN, b never called. */
	atomic_store(&a.refuse, 1);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 2 * PG,
						      PS_NOTIFIER_UNMAP,
						      PS_NOTIFIER_NONBLOCK),
			 -EAGAIN);
	ck_assert_uint_eq(calls(&b), 0);
	/* G9: over already; an end finds nothing. */
	ck_assert_uint_eq(stats(&nt).inflight, 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, 2 * PG), -ENOENT);
	ck_assert_uint_eq(stats(&nt).nonblock_failures, 1);
	/* The attempt was in flight: the whole-space check reports it. */
	ck_assert(ps_notifier_read_retry(&nt, state, PG));

	/* The user lock held elsewhere: the trylock fails, -EAGAIN too. */
	atomic_store(&a.refuse, 0);
	pthread_mutex_lock(&b.lock);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 2 * PG,
						      PS_NOTIFIER_UNMAP,
						      PS_NOTIFIER_NONBLOCK),
			 -EAGAIN);
	pthread_mutex_unlock(&b.lock);
	ck_assert_uint_eq(calls(&a), 1);

	/* Non-blocking and every callback proceeds: 0, end as usual. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, 2 * PG,
						      PS_NOTIFIER_UNMAP,
						      PS_NOTIFIER_NONBLOCK),
			 0);
	ck_assert_uint_eq(atomic_load(&b.flags), PS_NOTIFIER_NONBLOCK);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, 2 * PG), 0);

	/* A blockable invalidation ignores a refusal (Linux warns). */
	atomic_store(&a.refuse_any, 1);
	invalidate(&nt, 0, 2 * PG);
	ck_assert_uint_eq(calls(&b), 2);
	tsub_del(&a);
	tsub_del(&b);
}
END_TEST

START_TEST(range_errors)
{
	struct tsub a;
	uint64_t state;

	tsub_add(&a, &nt, 0, UINT64_MAX);
	state = ps_notifier_read_begin(&nt);
	/* G10: nothing called, nothing published. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, PG, 0,
						      PS_NOTIFIER_UNMAP, 0),
			 -EOVERFLOW);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, UINT64_MAX - 1, 3,
						      PS_NOTIFIER_UNMAP, 0),
			 -EOVERFLOW);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, PG,
						      PS_NOTIFIER_UNMAP,
						      1u << 7),
			 -EINVAL);
	ck_assert_uint_eq(calls(&a), 0);
	ck_assert_uint_eq(ps_notifier_read_begin(&nt), state);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, PG, 0), -EOVERFLOW);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), -ENOENT);
	/* The last byte of the space can be invalidated alone. */
	invalidate(&nt, UINT64_MAX, 1);
	ck_assert_uint_eq(calls(&a), 0); /* a is [0, 2^64 - 2] */
	invalidate(&nt, UINT64_MAX - 1, 2);
	ck_assert_uint_eq(calls(&a), 1);
	tsub_del(&a);
}
END_TEST

START_TEST(identical_ranges_in_flight)
{
	struct tsub a;
	uint64_t seq;

	tsub_add(&a, &nt, 0, PG);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_uint_eq(calls(&a), 2);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), 0);
	ck_assert_uint_eq(stats(&nt).inflight, 1);
	seq = ps_notifier_read_begin(&nt);
	ck_assert(ps_notifier_read_retry(&nt, seq, 0)); /* one still runs */
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), -ENOENT);
	tsub_del(&a);
}
END_TEST

/* --- whole-space retry ---------------------------------------------------- */

START_TEST(whole_space_exact)
{
	uint64_t seq;

	/* Nothing happened: false, also for a range (one load, G6). */
	seq = ps_notifier_read_begin(&nt);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 0));
	ck_assert(!ps_notifier_read_retry_range(&nt, seq, 0, UINT64_MAX));
	ck_assert(ps_notifier_read_retry_range(&nt, seq, 0, 0)); /* misuse */

	/* Started and ended since read_begin: true inside, false outside. */
	invalidate(&nt, 10 * PG, 2 * PG);
	ck_assert(ps_notifier_read_retry(&nt, seq, 10 * PG));
	ck_assert(ps_notifier_read_retry(&nt, seq, 12 * PG - 1));
	ck_assert(!ps_notifier_read_retry(&nt, seq, 12 * PG));
	ck_assert(!ps_notifier_read_retry(&nt, seq, 10 * PG - 1));
	ck_assert(ps_notifier_read_retry_range(&nt, seq, 0, 10 * PG + 1));
	ck_assert(!ps_notifier_read_retry_range(&nt, seq, 0, 10 * PG));

	/* Ended before read_begin: false. */
	seq = ps_notifier_read_begin(&nt);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 10 * PG));

	/* In flight at read_begin: true while in flight and after its end. */
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 20 * PG, PG,
						      PS_NOTIFIER_CONVERSION,
						      0),
			 0);
	seq = ps_notifier_read_begin(&nt);
	ck_assert(ps_notifier_read_retry(&nt, seq, 20 * PG));
	ck_assert(!ps_notifier_read_retry(&nt, seq, 21 * PG));
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 20 * PG, PG), 0);
	ck_assert(ps_notifier_read_retry(&nt, seq, 20 * PG));
	ck_assert(!ps_notifier_read_retry(&nt, seq, 21 * PG));

	/* Not merged: two ranges in flight, the gap between them is clean. */
	seq = ps_notifier_read_begin(&nt);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 100 * PG, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 50 * PG));
	ck_assert(ps_notifier_read_retry(&nt, seq, 100 * PG));
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 0, PG), 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 100 * PG, PG), 0);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 50 * PG));
	ck_assert_uint_eq(stats(&nt).conservative_retries, 0);
}
END_TEST

/* --- the worked example of docs/notifier.md (keep the two identical) ----- */

#define EX_PAGES 8
static struct ps_page ex_frames[2 * EX_PAGES]; /* backing frames */
static _Atomic(int) ex_table[EX_PAGES];	       /* guest page -> frame */

/* Look up and reference the frame behind @addr (the primary mapping). */
static struct ps_page *guest_lookup_get(uint64_t addr)
{
	uint64_t gpn = addr / PG;
	int f;

	if (gpn >= EX_PAGES)
		return NULL;
	f = atomic_load_explicit(&ex_table[gpn], memory_order_acquire);
	return ps_page_try_get(&ex_frames[f]) ? &ex_frames[f] : NULL;
}

struct vcache {			/* one cached translation */
	struct ps_interval sub; /* covers the guest region */
	pthread_mutex_t lock;	/* the user lock */
	struct ps_page *page;	/* NULL when not mapped */
	bool writable;
};

static bool vcache_invalidate(struct ps_interval *sub,
			      const struct ps_invalidation *inv,
			      uint64_t cur_seq, void *priv)
{
	struct vcache *vc = priv;

	if (ps_invalidation_blockable(inv))
		pthread_mutex_lock(&vc->lock);
	else if (pthread_mutex_trylock(&vc->lock))
		return false; /* the caller gets -EAGAIN */
	ps_interval_set_seq(sub, cur_seq);
	vc->page = NULL; /* tear down the secondary map */
	pthread_mutex_unlock(&vc->lock);
	return true;
}

static int vcache_map(struct vcache *vc, uint64_t addr, bool write)
{
	for (;;) {
		uint64_t seq = ps_interval_read_begin(&vc->sub);
		struct ps_page *page = guest_lookup_get(addr);

		if (!page) /* look up, take a reference */
			return -EFAULT;
		pthread_mutex_lock(&vc->lock);
		if (ps_interval_read_retry(&vc->sub, seq)) {
			pthread_mutex_unlock(&vc->lock);
			(void)ps_page_put(page);
			continue; /* an invalidation raced: again */
		}
		if (write) /* dirty before mapping writable */
			ps_page_set_flags(page, PS_PAGE_DIRTY);
		vc->page = page; /* install the secondary mapping */
		vc->writable = write;
		pthread_mutex_unlock(&vc->lock);
		/* The mapping keeps no reference: the notifier tears it
		 * down before the page can change. */
		(void)ps_page_put(page);
		return 0;
	}
}

static const struct ps_interval_ops vcache_ops = {vcache_invalidate};

START_TEST(seed003_example)
{
	struct vcache vc = {.page = NULL};
	struct ps_page *old;

	for (int i = 0; i < 2 * EX_PAGES; i++)
		ck_assert_int_eq(ps_page_init(&ex_frames[i], 1), 0);
	for (int i = 0; i < EX_PAGES; i++)
		atomic_store(&ex_table[i], i);
	pthread_mutex_init(&vc.lock, NULL);
	ck_assert_int_eq(ps_interval_insert(&vc.sub, &nt, 0, EX_PAGES * PG,
					    &vcache_ops, &vc),
			 0);

	/* A read mapping leaves the page clean; a write one dirties it. */
	ck_assert_int_eq(vcache_map(&vc, 3 * PG, false), 0);
	ck_assert_ptr_eq(vc.page, &ex_frames[3]);
	ck_assert(!(ps_page_flags(&ex_frames[3]) & PS_PAGE_DIRTY));
	ck_assert_int_eq(vcache_map(&vc, 3 * PG, true), 0);
	ck_assert(vc.writable);
	ck_assert(ps_page_flags(&ex_frames[3]) & PS_PAGE_DIRTY);
	ck_assert_uint_eq(ps_page_refs(&ex_frames[3]), 1); /* no ref kept */

	/* Migrate guest page 3 to frame 11: the cache is torn down first. */
	old = vc.page;
	ck_assert_int_eq(ps_notifier_invalidate_start(&nt, 3 * PG, PG,
						      PS_NOTIFIER_MIGRATE, 0),
			 0);
	ck_assert_ptr_null(vc.page);
	atomic_store(&ex_table[3], 11);
	ck_assert_int_eq(ps_notifier_invalidate_end(&nt, 3 * PG, PG), 0);
	ck_assert_int_eq(vcache_map(&vc, 3 * PG, false), 0);
	ck_assert_ptr_eq(vc.page, &ex_frames[11]);
	ck_assert_ptr_ne(vc.page, old);
	ck_assert_int_eq(vcache_map(&vc, 100 * PG, false), -EFAULT);
	ps_interval_remove(&vc.sub);
	pthread_mutex_destroy(&vc.lock);
}
END_TEST

/* --- regressions ---------------------------------------------------------- */

/*
 * Issue 15, item 6: any number of invalidations may be in flight, as the
 * header says (Linux has no limit). A 65th non-blocking start used to fail
 * with -EAGAIN with no subscription at all, and a thread holding 64 blocked
 * forever in its own 65th blocking start.
 */
#define MANY 1000

struct holder {
	pthread_t thread;
	uint64_t base, n;
	unsigned int flags;
	_Atomic(uint64_t) started;
	_Atomic(int) rc;
};

static void *hold_many(void *arg)
{
	struct holder *h = arg;

	for (uint64_t i = 0; i < h->n; i++) {
		int rc = ps_notifier_invalidate_start(&nt, (h->base + i) * PG,
						      PG, PS_NOTIFIER_UNMAP,
						      h->flags);

		if (rc) {
			atomic_store(&h->rc, rc);
			break;
		}
		atomic_fetch_add(&h->started, 1);
	}
	return NULL;
}

/* Start h->n invalidations in another thread; true if all did in time. */
static bool hold(struct holder *h, uint64_t base, uint64_t n, unsigned flags)
{
	h->base = base;
	h->n = n;
	h->flags = flags;
	atomic_store(&h->started, 0);
	atomic_store(&h->rc, 0);
	ck_assert_int_eq(pthread_create(&h->thread, NULL, hold_many, h), 0);
	for (int i = 0;
	     i < 3000 && atomic_load(&h->started) < n && !atomic_load(&h->rc);
	     i++)
		sleep_ms(1);
	if (atomic_load(&h->started) < n)
		return false; /* blocked or failed: leave it; the test fails */
	pthread_join(h->thread, NULL);
	return true;
}

START_TEST(inflight_unlimited)
{
	struct holder h;
	struct tsub a;
	uint64_t seq, i;

	/* Non-blocking, no subscription: all succeed. */
	ck_assert(hold(&h, 0, 200, PS_NOTIFIER_NONBLOCK));
	ck_assert_int_eq(atomic_load(&h.rc), 0);
	ck_assert_uint_eq(stats(&nt).inflight, 200);
	/* Blocking, one thread holding them all: it never waits on itself. */
	ck_assert(hold(&h, 200, MANY - 200, 0));
	ck_assert_int_eq(atomic_load(&h.rc), 0);
	ck_assert_uint_eq(stats(&nt).inflight, MANY);

	/* Every one of them is in flight for the checks, and only they are. */
	seq = ps_notifier_read_begin(&nt);
	for (i = 0; i < MANY; i += 37)
		ck_assert(ps_notifier_read_retry(&nt, seq, i * PG + 5));
	ck_assert(ps_notifier_read_retry(&nt, seq, (MANY - 1) * PG));
	ck_assert(!ps_notifier_read_retry(&nt, seq, MANY * PG));
	tsub_add(&a, &nt, (MANY + 10) * PG, PG); /* clear of all of them */
	(void)ps_interval_read_begin(&a.sub);	 /* does not wait */
	ck_assert_uint_eq(stats(&nt).read_begin_waits, 0);
	tsub_del(&a);

	/* Ended in another order than started; then nothing is in flight. */
	for (i = MANY; i-- > 0;)
		if (i % 2)
			ck_assert_int_eq(ps_notifier_invalidate_end(&nt, i * PG,
								    PG),
					 0);
	ck_assert_uint_eq(stats(&nt).inflight, MANY / 2);
	seq = ps_notifier_read_begin(&nt);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 1 * PG)); /* ended */
	ck_assert(ps_notifier_read_retry(&nt, seq, 2 * PG));  /* in flight */
	for (i = 0; i < MANY; i += 2)
		ck_assert_int_eq(ps_notifier_invalidate_end(&nt, i * PG, PG),
				 0);
	ck_assert_uint_eq(stats(&nt).inflight, 0);
	/* The readers' fast paths are back: nothing in flight. */
	ck_assert_uint_eq(ps_notifier_read_begin(&nt) &
				  PS_NOTIFIER_INFLIGHT_MASK,
			  0);
	/* And again: what the first round grew is reused. */
	ck_assert(hold(&h, 0, MANY, 0));
	for (i = 0; i < MANY; i++)
		ck_assert_int_eq(ps_notifier_invalidate_end(&nt, i * PG, PG),
				 0);
	ck_assert_uint_eq(stats(&nt).inflight, 0);
}
END_TEST

/*
 * Issue 15, item 7: the whole-space check is exact however many
 * invalidations ended since read_begin. It used to answer true for every
 * address once more than 256 had ended.
 */
START_TEST(whole_space_exact_after_many_ends)
{
	uint64_t seq = ps_notifier_read_begin(&nt), old;

	invalidate(&nt, 7 * PG, PG); /* ended before the second read_begin */
	old = ps_notifier_read_begin(&nt);
	for (int i = 0; i < 3000; i++) /* unrelated to page 0 */
		invalidate(&nt, (uint64_t)(1000 + i) * PG, PG);
	ck_assert(!ps_notifier_read_retry(&nt, seq, 0));
	ck_assert(!ps_notifier_read_retry(&nt, seq, 999 * PG + PG - 1));
	ck_assert(ps_notifier_read_retry(&nt, seq, 7 * PG));
	ck_assert(!ps_notifier_read_retry(&nt, old, 7 * PG));
	ck_assert(ps_notifier_read_retry(&nt, seq, 1000 * PG));
	ck_assert(ps_notifier_read_retry(&nt, old, 3999 * PG + PG - 1));
	ck_assert(!ps_notifier_read_retry(&nt, old, 4000 * PG));
	ck_assert(!ps_notifier_read_retry_range(&nt, old, 0, 1000 * PG));
	ck_assert(ps_notifier_read_retry_range(&nt, old, 0, 1000 * PG + 1));
	/* A sequence read_begin never returned (from the future): true. */
	ck_assert(ps_notifier_read_retry(&nt,
					 ps_notifier_read_begin(&nt) +
						 1000 * PS_NOTIFIER_END_ONE,
					 0));
	/* Now page 0 changes: true, for both. */
	invalidate(&nt, 0, PG);
	ck_assert(ps_notifier_read_retry(&nt, seq, 0));
	ck_assert(ps_notifier_read_retry(&nt, old, PG - 1));
	ck_assert(!ps_notifier_read_retry(&nt, old, PG));
	ck_assert_uint_eq(stats(&nt).conservative_retries, 0);
}
END_TEST

/*
 * The same, against a model: thousands of overlapping invalidations, and
 * checks from read_begins taken all along, each true exactly when an
 * invalidation after its read_begin overlaps the range checked.
 */
#define HIST_N 6000
#define HIST_SNAPS 60

START_TEST(whole_space_exact_model)
{
	static uint64_t start[HIST_N], last[HIST_N];
	uint64_t seq[HIST_SNAPS];
	unsigned int first[HIST_SNAPS]; /* invalidations after each seq */
	struct ps_test_rng rng = ps_test_rng_new(15);
	unsigned int ns = 0;

	for (unsigned int i = 0; i < HIST_N; i++) {
		if (i % (HIST_N / HIST_SNAPS) == 0 && ns < HIST_SNAPS) {
			first[ns] = i;
			seq[ns++] = ps_notifier_read_begin(&nt);
		}
		start[i] = ps_test_below(&rng, 1 << 22);
		last[i] = start[i] + (i % 50 ? ps_test_below(&rng, 3 * PG)
					     : ps_test_below(&rng, 1 << 20));
		if (i == HIST_N / 3) { /* once: everything but the last byte */
			start[i] = 0;
			last[i] = UINT64_MAX - 1;
		}
		invalidate(&nt, start[i], last[i] - start[i] + 1);
	}
	for (unsigned int k = 0; k < ns; k++) {
		for (int q = 0; q < 40; q++) {
			uint64_t qs = ps_test_below(&rng, 5 << 20);
			uint64_t ql = qs +
				      (q % 4 ? 0 : ps_test_below(&rng, PG));
			bool want = false;

			for (unsigned int i = first[k]; i < HIST_N && !want;
			     i++)
				want = start[i] <= ql && qs <= last[i];
			ck_assert_msg(ps_notifier_read_retry_range(
					      &nt, seq[k], qs, ql - qs + 1) ==
					      want,
				      "read_begin %u, [%#llx, %#llx]: want %d",
				      k, (unsigned long long)qs,
				      (unsigned long long)ql, want);
		}
		/* The last byte was never invalidated. */
		ck_assert(!ps_notifier_read_retry(&nt, seq[k], UINT64_MAX));
	}
	ck_assert_uint_eq(stats(&nt).conservative_retries, 0);
}
END_TEST

/*
 * The history's memory is capped (notifier.h: 65,536 stretches of addresses;
 * it grew by a run per page before). Ends of 100,000 distinct pages: a
 * read_begin among the latest 32,768 stays exact both ways; one from before
 * them answers true even for a page never invalidated, counted as
 * conservative, and never false for a page invalidated since.
 */
START_TEST(whole_space_history_capped)
{
	enum { N = 100000, RECENT = 30000 };
	uint64_t ancient = ps_notifier_read_begin(&nt), recent = 0, cons;

	for (uint64_t p = 0; p < N; p++) {
		if (p == N - RECENT)
			recent = ps_notifier_read_begin(&nt);
		invalidate(&nt, 2 * p * PG, PG); /* even pages only */
	}
	ck_assert(ps_notifier_read_retry(&nt, recent, 2 * (N - RECENT) * PG));
	ck_assert(ps_notifier_read_retry(&nt, recent, 2 * (N - 1) * PG));
	ck_assert(!ps_notifier_read_retry(&nt, recent,
					  2 * (N - RECENT - 1) * PG));
	ck_assert(!ps_notifier_read_retry(&nt, recent, 2 * (N - 10) * PG + PG));
	ck_assert(!ps_notifier_read_retry(&nt, recent, 0));
	ck_assert_uint_eq(stats(&nt).conservative_retries, 0);
	ck_assert(ps_notifier_read_retry(&nt, ancient, 0));
	ck_assert(ps_notifier_read_retry(&nt, ancient, 2 * (N - 1) * PG));
	cons = stats(&nt).conservative_retries;
	ck_assert(ps_notifier_read_retry(&nt, ancient, PG)); /* never: true */
	ck_assert_uint_eq(stats(&nt).conservative_retries, cons + 1);
}
END_TEST

/* --- stress --------------------------------------------------------------- */

/*
 * A translation table T[page] changed only under invalidate_start/_end, and
 * a reader that caches translations of the pages of one region A. The
 * invalidator changes random pages of A and of B (never overlapping A), and
 * sometimes invalidates non-blocking (then, on -EAGAIN, it changes nothing).
 *
 * Checked while running:
 *   - a translation accepted by the retry check (under the user lock) is
 *     still current at that moment (G1): the invalidator changes T only
 *     after the callback, which needs that lock;
 *   - every cached translation is current whenever the lock is held: the
 *     callback dropped it before T changed;
 *   - false retries are zero (G3/G6), however many invalidations ended in
 *     between: a retry is false when no invalidation overlapping the
 *     reader's range was in flight at any instant between read_begin and
 *     the check. The invalidator counts begun[] before
 *     invalidate_start and done[] after invalidate_end; a retry with
 *     begun(at the check) == done(before read_begin) had none in flight.
 *   - the reader really raced: the two run until the invalidator did its
 *     share and each side overlapped the other in enough operations
 *     (harness.h), and some retries happened (one section in 16 waits,
 *     bounded, for an invalidation it is about to end: on one CPU too).
 *
 * mode 0 validates with the subscription's read_begin/read_retry; mode 1
 * with the whole-space read_begin/read_retry(addr) of the notifier, per page.
 */
#define ST_PAGES 16 /* region A = pages [0, 16), B = [16, 32) */

struct tstress {
	struct ps_notifier n;
	struct ps_interval sub_a, sub_b;
	pthread_mutex_t lock; /* the user lock (one for both regions) */
	_Atomic(uint64_t) table[2 * ST_PAGES];
	_Atomic(uint64_t) begun[2 * ST_PAGES], done[2 * ST_PAGES];
	uint64_t cache[ST_PAGES];  /* under lock; 0 = not cached */
	struct ps_test_overlap ov; /* side 0 the invalidator, 1 the reader */
	int mode;
	uint64_t iters;
	/* results */
	uint64_t accepted, retries, false_retries, conservative, eagain;
	_Atomic(unsigned) violations;
};

static void st_violation(struct tstress *st, const char *what)
{
	fprintf(stderr, "notifier stress invariant broken: %s\n", what);
	atomic_fetch_add(&st->violations, 1);
}

static bool st_invalidate(struct ps_interval *sub,
			  const struct ps_invalidation *inv, uint64_t cur_seq,
			  void *priv)
{
	struct tstress *st = priv;

	if (!ps_invalidation_blockable(inv)) {
		if (pthread_mutex_trylock(&st->lock))
			return false;
	} else {
		pthread_mutex_lock(&st->lock);
	}
	ps_interval_set_seq(sub, cur_seq);
	for (uint64_t p = inv->start / PG;
	     p <= ps_invalidation_last(inv) / PG && p < ST_PAGES; p++)
		st->cache[p] = 0;
	pthread_mutex_unlock(&st->lock);
	return true;
}

static const struct ps_interval_ops st_ops = {st_invalidate};

static void *st_invalidator(void *arg)
{
	struct tstress *st = arg;
	struct ps_test_rng rng = ps_test_rng_new(7);
	struct ps_test_side me = ps_test_side(&st->ov, 0, 0);

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		uint64_t p = ps_test_below(&rng, 2 * ST_PAGES);
		unsigned flags = i % 8 == 0 ? PS_NOTIFIER_NONBLOCK : 0;
		int rc;

		atomic_fetch_add(&st->begun[p], 1);
		rc = ps_notifier_invalidate_start(&st->n, p * PG, PG,
						  PS_NOTIFIER_UNMAP, flags);
		if (rc == 0) {
			atomic_fetch_add_explicit(&st->table[p], 1,
						  memory_order_release);
			/* Recorded; the main thread asserts after the join. */
			if (ps_notifier_invalidate_end(&st->n, p * PG, PG))
				st_violation(st, "invalidate_end failed");
		} else if (rc == -EAGAIN) {
			st->eagain++;
		} else {
			st_violation(st, "invalidate_start failed");
		}
		atomic_fetch_add(&st->done[p], 1);
	}
	return NULL;
}

/*
 * What the reader's retry is about: page @p (whole space), or all of region
 * A (one subscription). Counters only grow and begun >= done, so a sum read
 * after the check equal to one read before read_begin means no invalidation
 * of it was in flight in between.
 */
static uint64_t st_count(struct tstress *st, _Atomic(uint64_t) *c, uint64_t p)
{
	uint64_t sum = 0;

	if (st->mode)
		return atomic_load(&c[p]);
	for (int q = 0; q < ST_PAGES; q++)
		sum += atomic_load(&c[q]);
	return sum;
}

static void *st_reader(void *arg)
{
	struct tstress *st = arg;
	struct ps_test_rng rng = ps_test_rng_new(8);
	/*
	 * A reader that re-takes the user lock at once could starve the
	 * invalidator's callback (a pthread mutex is not fair): its sections
	 * stop counting as overlapped then, and it yields (harness.h).
	 */
	struct ps_test_side me = ps_test_side(&st->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t p = ps_test_below(&rng, ST_PAGES);
		uint64_t done0 = st_count(st, st->done, p);
		uint64_t seq = st->mode ? ps_notifier_read_begin(&st->n)
					: ps_interval_read_begin(&st->sub_a);
		uint64_t v = atomic_load_explicit(&st->table[p],
						  memory_order_acquire);
		uint64_t cons0;
		bool retry;

		for (int spin = (int)ps_test_below(&rng, 64); spin > 0; spin--)
			atomic_signal_fence(memory_order_seq_cst);
		if (ps_test_below(&rng, 16) == 0) {
			/* Until an invalidation the check is about ends. */
			uint64_t t0 = ps_test_now_ns();

			while (st_count(st, st->done, p) == done0 &&
			       ps_test_now_ns() - t0 < 2000000 &&
			       !ps_test_overlap_done(&me))
				sched_yield();
		}
		pthread_mutex_lock(&st->lock);
		cons0 = stats(&st->n).conservative_retries;
		retry = st->mode ? ps_notifier_read_retry(&st->n, seq, p * PG)
				 : ps_interval_read_retry(&st->sub_a, seq);
		if (retry) {
			st->retries++;
			if (st_count(st, st->begun, p) != done0)
				; /* justified */
			else if (stats(&st->n).conservative_retries != cons0)
				st->conservative++; /* forgotten (G6) */
			else
				st->false_retries++;
		} else {
			if (atomic_load_explicit(&st->table[p],
						 memory_order_relaxed) != v)
				st_violation(st,
					     "accepted a stale translation");
			st->cache[p] = v + 1;
			st->accepted++;
		}
		for (int q = 0; q < ST_PAGES; q++)
			if (st->cache[q] &&
			    st->cache[q] != atomic_load(&st->table[q]) + 1)
				st_violation(st,
					     "a cached translation went stale");
		pthread_mutex_unlock(&st->lock);
	}
	return NULL;
}

static void run_translation_stress(int mode)
{
	static struct tstress st;
	struct ps_notifier_stats ns;
	pthread_t t[2];

	memset(&st, 0, sizeof(st));
	st.mode = mode;
	st.iters = ps_test_stress_size("PS_STRESS_ITERS", 200000);
	ps_test_overlap_init(&st.ov, 2, 0);
	st.ov.side[0].min_ops = st.iters;
	pthread_mutex_init(&st.lock, NULL);
	ck_assert_int_eq(ps_notifier_init(&st.n), 0);
	if (mode == 0) {
		ck_assert_int_eq(ps_interval_insert(&st.sub_a, &st.n, 0,
						    ST_PAGES * PG, &st_ops,
						    &st),
				 0);
		ck_assert_int_eq(ps_interval_insert(&st.sub_b, &st.n,
						    ST_PAGES * PG,
						    ST_PAGES * PG, &st_ops,
						    &st),
				 0);
	} else {
		/* KVM-like: one subscription over everything, one lock. */
		ck_assert_int_eq(ps_interval_insert(&st.sub_a, &st.n, 0,
						    UINT64_MAX, &st_ops, &st),
				 0);
	}
	ck_assert_int_eq(pthread_create(&t[0], NULL, st_reader, &st), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, st_invalidator, &st), 0);
	pthread_join(t[1], NULL);
	pthread_join(t[0], NULL);
	ps_notifier_get_stats(&st.n, &ns);
	fprintf(stderr,
		"notifier stress (%s): %llu accepted, %llu retries: %llu "
		"false, %llu unjustified but conservative (forgotten); "
		"%llu -EAGAIN, %llu read_begin waits\n",
		mode ? "whole space" : "interval",
		(unsigned long long)st.accepted, (unsigned long long)st.retries,
		(unsigned long long)st.false_retries,
		(unsigned long long)st.conservative,
		(unsigned long long)st.eagain,
		(unsigned long long)ns.read_begin_waits);
	ck_assert_uint_eq(atomic_load(&st.violations), 0);
	ck_assert_uint_eq(st.false_retries, 0);
	/*
	 * The invalidator runs flat out, so a reader preempted between
	 * read_begin and the check sees thousands of ends: still exact (G6;
	 * nothing is forgotten unless an allocation fails).
	 */
	ck_assert_uint_eq(st.conservative, 0);
	ck_assert_uint_eq(ns.conservative_retries, 0);
	ck_assert_uint_gt(st.accepted, 0);
	ck_assert_uint_gt(st.retries, 0);
	ps_test_overlap_check(&st.ov, "invalidator vs reader");
	ps_interval_remove(&st.sub_a);
	if (mode == 0)
		ps_interval_remove(&st.sub_b);
	ck_assert_int_eq(ps_notifier_destroy(&st.n), 0);
	pthread_mutex_destroy(&st.lock);
}

START_TEST(stress_interval_translations)
{
	run_translation_stress(0);
}
END_TEST

START_TEST(stress_whole_space_translations)
{
	run_translation_stress(1);
}
END_TEST

/*
 * Subscription churn against invalidations: one thread inserts and removes
 * subscriptions (the treap's path copies and RCU frees, checked by ASan and
 * TSan), the other invalidates random ranges. A callback on a subscription
 * that is not live (removed, G7) or that does not overlap the invalidated
 * range is a violation. The two run until the updater did its share and
 * each side overlapped the other in enough operations (harness.h).
 */
#define CHURN_SUBS 64

struct churn {
	struct ps_notifier n;
	struct tsub t[CHURN_SUBS];
	struct ps_test_overlap ov; /* side 0 the updater, 1 the invalidator */
	uint64_t iters;
	_Atomic(unsigned) violations;
};

static struct churn churn_st;

static bool churn_invalidate(struct ps_interval *sub,
			     const struct ps_invalidation *inv,
			     uint64_t cur_seq, void *priv)
{
	struct tsub *t = priv;

	if (!atomic_load(&t->live) ||
	    ps_interval_start(sub) > ps_invalidation_last(inv) ||
	    inv->start > ps_interval_last(sub))
		atomic_fetch_add(&churn_st.violations, 1);
	ps_interval_set_seq(sub, cur_seq);
	atomic_fetch_add(&t->calls, 1);
	return true;
}

static const struct ps_interval_ops churn_ops = {churn_invalidate};

static void *churn_updater(void *arg)
{
	struct churn *c = arg;
	struct ps_test_rng rng = ps_test_rng_new(11);
	struct ps_test_side me = ps_test_side(&c->ov, 0, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		struct tsub *t = &c->t[ps_test_below(&rng, CHURN_SUBS)];

		if (atomic_load(&t->live)) {
			ps_interval_remove(&t->sub);
			atomic_store(&t->live, 0);
		} else {
			uint64_t s = ps_test_below(&rng, 256) * PG;

			atomic_store(&t->live, 1);
			if (ps_interval_insert(&t->sub, &c->n, s,
					       (1 + ps_test_below(&rng, 8)) *
						       PG,
					       &churn_ops, t))
				atomic_fetch_add(&c->violations, 1);
		}
	}
	return NULL;
}

static void *churn_invalidator(void *arg)
{
	struct churn *c = arg;
	struct ps_test_rng rng = ps_test_rng_new(12);
	struct ps_test_side me = ps_test_side(&c->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t s = ps_test_below(&rng, 256) * PG;
		uint64_t len = (1 + ps_test_below(&rng, 16)) * PG;

		if (ps_notifier_invalidate_start(&c->n, s, len,
						 PS_NOTIFIER_UNMAP, 0) ||
		    ps_notifier_invalidate_end(&c->n, s, len))
			atomic_fetch_add(&c->violations, 1);
	}
	return NULL;
}

START_TEST(stress_churn)
{
	struct churn *c = &churn_st;
	pthread_t t[2];
	uint64_t total = 0;

	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(ps_notifier_init(&c->n), 0);
	c->iters = ps_test_stress_size("PS_STRESS_ITERS", 200000) / 4;
	ps_test_overlap_init(&c->ov, 2, 0);
	c->ov.side[0].min_ops = c->iters;
	ck_assert_int_eq(pthread_create(&t[0], NULL, churn_invalidator, c), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, churn_updater, c), 0);
	pthread_join(t[1], NULL);
	pthread_join(t[0], NULL);
	for (int i = 0; i < CHURN_SUBS; i++) {
		if (atomic_load(&c->t[i].live))
			ps_interval_remove(&c->t[i].sub);
		total += atomic_load(&c->t[i].calls);
	}
	ck_assert_uint_eq(atomic_load(&c->violations), 0);
	ck_assert_uint_gt(total, 0);
	ps_test_overlap_check(&c->ov, "churn vs invalidations");
	ck_assert_int_eq(ps_notifier_destroy(&c->n), 0);
}
END_TEST

/*
 * Issue 15, item 6 under load: threads each hold several invalidations at
 * once (together far more than 64), some non-blocking, ended in random
 * order, while a subscription over all of them is called and a reader's
 * read_begin waits for the overlapping ones. No start may fail or wait for
 * another invalidation; each holder's own ranges are in flight for the
 * whole-space check while it holds them; nothing is left in flight. Each holder
 * yields while it holds its invalidations, so that on one CPU too the others
 * start theirs meanwhile; all run until each holder did its rounds and every
 * thread overlapped the others in enough operations (harness.h).
 */
#define HOLDERS 4
#define HOLD_MAX 48 /* invalidations one holder keeps at once */

struct holders {
	struct ps_notifier n;
	struct ps_interval all; /* overlaps everything; never refuses */
	uint64_t rounds;
	struct ps_test_overlap ov; /* sides 0..HOLDERS-1 holders, then reader */
	_Atomic(uint64_t) peak, held;
	_Atomic(unsigned) violations;
};

static void hold_violation(struct holders *hs, const char *what)
{
	fprintf(stderr, "notifier holders: %s\n", what);
	atomic_fetch_add(&hs->violations, 1);
}

static bool nop_cb(struct ps_interval *sub, const struct ps_invalidation *inv,
		   uint64_t cur_seq, void *priv)
{
	(void)inv;
	(void)priv;
	ps_interval_set_seq(sub, cur_seq); /* no user lock: nothing to tear */
	return true;
}

static const struct ps_interval_ops nop_ops = {nop_cb};

struct holder_arg {
	struct holders *hs;
	unsigned int id;
};

static void *holder_main(void *arg)
{
	struct holder_arg *a = arg;
	struct holders *hs = a->hs;
	struct ps_test_rng rng = ps_test_rng_new(300 + a->id);
	struct ps_test_side me = ps_test_side(&hs->ov, a->id, 0);
	/* Holder id owns pages [id * 1000, id * 1000 + HOLD_MAX). */
	uint64_t base = (uint64_t)a->id * 1000;

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		unsigned int k = 1 +
				 (unsigned int)ps_test_below(&rng, HOLD_MAX);
		unsigned int order[HOLD_MAX];
		uint64_t seq, now;

		for (unsigned int i = 0; i < k; i++) {
			unsigned flags = i % 3 ? 0 : PS_NOTIFIER_NONBLOCK;

			if (ps_notifier_invalidate_start(&hs->n,
							 (base + i) * PG, PG,
							 PS_NOTIFIER_UNMAP,
							 flags))
				hold_violation(hs, "a start failed");
			order[i] = i;
		}
		now = atomic_fetch_add(&hs->held, k) + k;
		for (uint64_t p = atomic_load(&hs->peak);
		     now > p &&
		     !atomic_compare_exchange_weak(&hs->peak, &p, now);)
			;
		sched_yield(); /* the others may start theirs meanwhile */
		/* Everything held is in flight for the whole-space check. */
		seq = ps_notifier_read_begin(&hs->n);
		for (unsigned int i = 0; i < k; i++)
			if (!ps_notifier_read_retry(&hs->n, seq,
						    (base + i) * PG + 1))
				hold_violation(hs, "a held range not seen");
		for (unsigned int i = k - 1; i > 0; i--) {
			unsigned int j = (unsigned int)ps_test_below(&rng,
								     i + 1);
			unsigned int x = order[i];

			order[i] = order[j];
			order[j] = x;
		}
		atomic_fetch_sub(&hs->held, k);
		for (unsigned int i = 0; i < k; i++)
			if (ps_notifier_invalidate_end(&hs->n,
						       (base + order[i]) * PG,
						       PG))
				hold_violation(hs, "an end failed");
	}
	return NULL;
}

/* Read_begin on subscriptions overlapping the holders' ranges: it waits. */
static void *holder_reader(void *arg)
{
	struct holders *hs = arg;
	struct ps_test_rng rng = ps_test_rng_new(399);
	struct ps_test_side me = ps_test_side(&hs->ov, HOLDERS, 0);
	struct ps_interval s;

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t p = ps_test_below(&rng, HOLDERS) * 1000 +
			     ps_test_below(&rng, HOLD_MAX);

		if (ps_interval_insert(&s, &hs->n, p * PG, PG, &nop_ops, NULL))
			hold_violation(hs, "an insert failed");
		for (int i = 0; i < 16; i++)
			(void)ps_interval_read_begin(&s);
		ps_interval_remove(&s);
	}
	return NULL;
}

START_TEST(stress_many_held)
{
	static struct holders hs;
	struct holder_arg args[HOLDERS];
	pthread_t t[HOLDERS], rd;
	struct ps_notifier_stats ns;

	memset(&hs, 0, sizeof(hs));
	hs.rounds = ps_test_stress_size("PS_STRESS_ITERS", 200000) / 200;
	ps_test_overlap_init(&hs.ov, HOLDERS + 1, 0);
	for (unsigned int i = 0; i < HOLDERS; i++)
		hs.ov.side[i].min_ops = hs.rounds;
	ck_assert_int_eq(ps_notifier_init(&hs.n), 0);
	ck_assert_int_eq(ps_interval_insert(&hs.all, &hs.n, 0, UINT64_MAX,
					    &nop_ops, NULL),
			 0);
	ck_assert_int_eq(pthread_create(&rd, NULL, holder_reader, &hs), 0);
	for (unsigned int i = 0; i < HOLDERS; i++) {
		args[i] = (struct holder_arg){&hs, i};
		ck_assert_int_eq(pthread_create(&t[i], NULL, holder_main,
						&args[i]),
				 0);
	}
	for (unsigned int i = 0; i < HOLDERS; i++)
		pthread_join(t[i], NULL);
	pthread_join(rd, NULL);
	ps_notifier_get_stats(&hs.n, &ns);
	fprintf(stderr,
		"notifier holders: %llu rounds x %d threads, peak %llu in "
		"flight, %llu callbacks, %llu read_begin waits\n",
		(unsigned long long)hs.rounds, HOLDERS,
		(unsigned long long)atomic_load(&hs.peak),
		(unsigned long long)ns.callbacks,
		(unsigned long long)ns.read_begin_waits);
	ck_assert_uint_eq(atomic_load(&hs.violations), 0);
	ps_test_overlap_check(&hs.ov, "holders vs reader");
	ck_assert_uint_gt(atomic_load(&hs.peak), 64); /* past the old limit */
	ck_assert_uint_eq(ns.inflight, 0);
	ck_assert_uint_eq(ps_notifier_read_begin(&hs.n) &
				  PS_NOTIFIER_INFLIGHT_MASK,
			  0);
	ck_assert_uint_eq(ns.nonblock_failures, 0);
	ps_interval_remove(&hs.all);
	ck_assert_int_eq(ps_notifier_destroy(&hs.n), 0);
}
END_TEST

/*
 * Issue 15, item 7 under load: a checker's read_begin and retry for page A
 * span thousands of invalidations of other pages by two threads, while a
 * third invalidates A now and then. The checker asserts both directions:
 * no false retry (no invalidation of A was in flight in between: counted
 * begun/done as in the translation stress), and no missed one (one began
 * after read_begin and ended before the check). All run until the checker
 * did its share and every thread overlapped the checker in enough
 * operations (harness.h; the checker's checks overlap the others by
 * construction, the third's invalidations of A are slow, it needs fewer).
 */
#define SPAN_A 7 /* page A; the others use pages >= 100 */

struct span {
	struct ps_notifier n;
	_Atomic(uint64_t) begun, done; /* of page A */
	struct ps_test_overlap ov; /* 0 the checker, 1 and 2 others, 3 A's */
	_Atomic(unsigned) others;  /* span_other threads started */
	uint64_t iters;
	/* results */
	uint64_t checks, long_checks, beyond, retries, false_retries, missed;
	_Atomic(unsigned) failed; /* calls that failed in the workers */
};

/* A worker's failed call: counted, asserted after the join (no Check here). */
static void span_failed(struct span *sp, const char *what)
{
	fprintf(stderr, "notifier span: %s failed\n", what);
	atomic_fetch_add(&sp->failed, 1);
}

static void *span_other(void *arg)
{
	struct span *sp = arg;
	unsigned int side = 1 + atomic_fetch_add(&sp->others, 1);
	struct ps_test_rng rng = ps_test_rng_new(499 + side);
	struct ps_test_side me = ps_test_side(&sp->ov, side, 1u << 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t p = 100 + ps_test_below(&rng, 100000);
		uint64_t len = (1 + ps_test_below(&rng, 4)) * PG;

		if (ps_notifier_invalidate_start(&sp->n, p * PG, len,
						 PS_NOTIFIER_UNMAP, 0) ||
		    ps_notifier_invalidate_end(&sp->n, p * PG, len))
			span_failed(sp, "an unrelated invalidation");
	}
	return NULL;
}

static void *span_own(void *arg)
{
	struct span *sp = arg;
	struct ps_test_rng rng = ps_test_rng_new(510);
	struct ps_test_side me = ps_test_side(&sp->ov, 3, 1u << 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		sleep_ms((long)ps_test_below(&rng, 3));
		atomic_fetch_add(&sp->begun, 1);
		if (ps_notifier_invalidate_start(&sp->n, SPAN_A * PG, PG,
						 PS_NOTIFIER_UNMAP, 0) ||
		    ps_notifier_invalidate_end(&sp->n, SPAN_A * PG, PG))
			span_failed(sp, "an invalidation of A");
		atomic_fetch_add(&sp->done, 1);
	}
	return NULL;
}

static void *span_checker(void *arg)
{
	struct span *sp = arg;
	struct ps_test_rng rng = ps_test_rng_new(520);
	struct ps_test_side me = ps_test_side(&sp->ov, 0, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t done0 = atomic_load(&sp->done);
		uint64_t seq = ps_notifier_read_begin(&sp->n);
		uint64_t begun0 = atomic_load(&sp->begun), done1, begun1, ends;
		uint64_t wait = ps_test_below(&rng, 4) ? 300 : 3000;
		bool retry;

		/* Let unrelated invalidations end meanwhile (bounded). */
		for (int spin = 0; spin < 20000; spin++) {
			ends = (ps_notifier_read_begin(&sp->n) - seq) >>
			       PS_NOTIFIER_ENDS_SHIFT;
			if (ends >= wait)
				break;
			sched_yield();
		}
		done1 = atomic_load(&sp->done);
		retry = ps_notifier_read_retry(&sp->n, seq, SPAN_A * PG + 9);
		begun1 = atomic_load(&sp->begun);
		ends = (ps_notifier_read_begin(&sp->n) - seq) >>
		       PS_NOTIFIER_ENDS_SHIFT;
		sp->checks++;
		sp->long_checks += ends > 256;
		sp->retries += retry;
		/*
		 * Exact only within the latest 32,768 ends of distinct pages
		 * (pagestate/notifier.h): a check descheduled for longer (a
		 * loaded machine, a sanitizer) may be answered true on purpose.
		 */
		sp->beyond += ends > 32768;
		if (retry && begun1 == done0 && ends <= 32768)
			sp->false_retries++; /* none of A in flight between */
		if (!retry && done1 > begun0)
			sp->missed++; /* one of A began after, ended before */
	}
	return NULL;
}

START_TEST(stress_no_false_retries)
{
	static struct span sp;
	pthread_t t[4];

	memset(&sp, 0, sizeof(sp));
	sp.iters = ps_test_stress_size("PS_STRESS_ITERS", 200000) / 400;
	ps_test_overlap_init(&sp.ov, 4, sp.iters);
	sp.ov.side[0].min_ops = sp.iters;
	sp.ov.side[3].need = sp.iters / 20 ? sp.iters / 20 : 1;
	ck_assert_int_eq(ps_notifier_init(&sp.n), 0);
	ck_assert_int_eq(pthread_create(&t[0], NULL, span_other, &sp), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, span_other, &sp), 0);
	ck_assert_int_eq(pthread_create(&t[2], NULL, span_own, &sp), 0);
	ck_assert_int_eq(pthread_create(&t[3], NULL, span_checker, &sp), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr,
		"notifier span: %llu checks (%llu across more than 256 ends), "
		"%llu retries: %llu false, %llu missed\n",
		(unsigned long long)sp.checks,
		(unsigned long long)sp.long_checks,
		(unsigned long long)sp.retries,
		(unsigned long long)sp.false_retries,
		(unsigned long long)sp.missed);
	ck_assert_uint_eq(atomic_load(&sp.failed), 0);
	ck_assert_uint_eq(sp.false_retries, 0);
	ck_assert_uint_eq(sp.missed, 0);
	ck_assert_uint_gt(sp.long_checks, 0);
	ps_test_overlap_check(&sp.ov, "span checker vs invalidators");
	/* Conservative answers only for checks past the exact window. */
	ck_assert_uint_le(stats(&sp.n).conservative_retries, sp.beyond);
	ck_assert_int_eq(ps_notifier_destroy(&sp.n), 0);
}
END_TEST

static Suite *notifier_suite(void)
{
	Suite *s = suite_create("notifier");
	TCase *tc;

	tc = ps_test_tcase(s, "init", 10);
	tcase_add_test(tc, init_destroy_busy);
	tcase_add_test(tc, destroy_frees_subscription_memory);

	tc = ps_test_tcase(s, "insert/remove", 20);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, insert_errors);
	tcase_add_test(tc, callbacks_hit_overlaps_only);
	tcase_add_test(tc, tree_matches_brute_force);
	tcase_add_test(tc, tree_equal_starts);

	tc = ps_test_tcase(s, "read_begin/retry", 10);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, read_retry_rules);
	tcase_add_test(tc, read_begin_waits_for_overlapping_only);

	tc = ps_test_tcase(s, "during invalidation", 10);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, insert_during_invalidation);
	tcase_add_test(tc, remove_during_invalidation);

	tc = ps_test_tcase(s, "non-blocking and errors", 10);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, nonblock_eagain);
	tcase_add_test(tc, range_errors);
	tcase_add_test(tc, identical_ranges_in_flight);

	tc = ps_test_tcase(s, "whole space", 10);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, whole_space_exact);

	tc = ps_test_tcase(s, "example", 10);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, seed003_example);

	tc = ps_test_tcase(s, "regressions", 30);
	tcase_add_checked_fixture(tc, nt_setup, nt_teardown);
	tcase_add_test(tc, inflight_unlimited);
	tcase_add_test(tc, whole_space_exact_after_many_ends);
	tcase_add_test(tc, whole_space_exact_model);
	tcase_add_test(tc, whole_space_history_capped);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_test(tc, stress_interval_translations);
	tcase_add_test(tc, stress_whole_space_translations);
	tcase_add_test(tc, stress_churn);
	tcase_add_test(tc, stress_many_held);
	tcase_add_test(tc, stress_no_false_retries);
	return s;
}

PS_TEST_MAIN(notifier_suite)
