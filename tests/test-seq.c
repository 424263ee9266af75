// SPDX-License-Identifier: MIT
/*
 * tests/test-seq.c - the sequence counter: parity and retry rules, a reader
 * waiting out an open write section, and a bounded writer/reader stress in
 * which every accepted read section must satisfy the writer's invariants.
 */
#include <pagestate/seq.h>

#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

START_TEST(init_and_parity)
{
	struct ps_seq s = PS_SEQ_INIT;
	struct ps_seq z;
	uint64_t v;

	ck_assert_uint_eq(sizeof(struct ps_seq), 8);
	memset(&z, 0, sizeof(z)); /* zero-filled memory is a counter */
	ck_assert_uint_eq(ps_seq_read_begin(&z), 0);
	ck_assert(!ps_seq_is_writing(&s));
	v = ps_seq_read_begin(&s);
	ck_assert_uint_eq(v & 1, 0);
	ps_seq_write_begin(&s);
	ck_assert(ps_seq_is_writing(&s)); /* odd inside a write section */
	ps_seq_write_end(&s);
	ck_assert(!ps_seq_is_writing(&s));
	ck_assert_uint_eq(ps_seq_read_begin(&s), v + 2); /* +2 per section */
	ps_seq_init(&s);
	ck_assert_uint_eq(ps_seq_read_begin(&s), 0);
}
END_TEST

START_TEST(retry_rules)
{
	struct ps_seq s = PS_SEQ_INIT;
	uint64_t v = ps_seq_read_begin(&s);

	/* No writer: no retry, repeatedly (the check has no side effect). */
	ck_assert(!ps_seq_read_retry(&s, v));
	ck_assert(!ps_seq_read_retry(&s, v));
	/* A write section that began after read_begin: retry, even open. */
	ps_seq_write_begin(&s);
	ck_assert(ps_seq_read_retry(&s, v));
	ps_seq_write_end(&s);
	ck_assert(ps_seq_read_retry(&s, v));
	/* A new section starts clean. */
	v = ps_seq_read_begin(&s);
	ck_assert(!ps_seq_read_retry(&s, v));
}
END_TEST

struct waiter {
	struct ps_seq *s;
	_Atomic(int) done;
	uint64_t got;
};

static void *begin_thread(void *arg)
{
	struct waiter *w = arg;

	w->got = ps_seq_read_begin(w->s);
	atomic_store(&w->done, 1);
	return NULL;
}

/*
 * The test sleeps inside a write section, which seq.h forbids, to show that
 * read_begin waits: the spinning reader runs under the normal policy, so
 * that where the test itself runs under a real-time one (chrt -f) on one
 * CPU its wakeup still preempts the spinner, which would otherwise keep
 * the CPU for good.
 */
START_TEST(read_begin_waits_for_writer)
{
	struct ps_seq s = PS_SEQ_INIT;
	struct waiter w = {&s, 0, 1};
	struct sched_param normal = {0};
	pthread_attr_t attr;
	pthread_t t;

	ck_assert_int_eq(pthread_attr_init(&attr), 0);
	ck_assert_int_eq(pthread_attr_setinheritsched(&attr,
						      PTHREAD_EXPLICIT_SCHED),
			 0);
	ck_assert_int_eq(pthread_attr_setschedpolicy(&attr, SCHED_OTHER), 0);
	ck_assert_int_eq(pthread_attr_setschedparam(&attr, &normal), 0);
	ps_seq_write_begin(&s);
	ck_assert_int_eq(pthread_create(&t, &attr, begin_thread, &w), 0);
	pthread_attr_destroy(&attr);
	sleep_ms(50);
	ck_assert_int_eq(atomic_load(&w.done), 0); /* still spinning */
	ps_seq_write_end(&s);
	pthread_join(t, NULL);
	ck_assert_int_eq(atomic_load(&w.done), 1);
	ck_assert_uint_eq(w.got, 2); /* the value after the section */
}
END_TEST

/* --- stress --------------------------------------------------------------- */

/*
 * One writer keeps b == 3a + 1 and c == a + b over three separately stored
 * words; one reader copies them in read sections. Every section that
 * read_retry accepts must satisfy both relations, and a must never go
 * backwards. Torn sections must exist (else the race was not exercised),
 * and every one of them must have been refused: one reader section in 64
 * waits (bounded) between its first and second load for a write to end, so
 * that torn sections happen on one CPU too. The two run until the writer
 * did its share and each overlapped the other in enough sections
 * (harness.h): a writer that ran alone would test nothing.
 */
struct seq_shared {
	struct ps_seq seq;
	_Atomic(uint64_t) a, b, c;
	struct ps_test_overlap ov; /* side 0 the writer, 1 the reader */
	uint64_t iters;
	uint64_t accepted, refused, torn_refused;
	unsigned violations;
};

static void *seq_writer(void *arg)
{
	struct seq_shared *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov, 0, 0);

	for (uint64_t i = 1; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		ps_seq_write_begin(&sh->seq);
		atomic_store_explicit(&sh->a, i, memory_order_relaxed);
		atomic_store_explicit(&sh->b, 3 * i + 1, memory_order_relaxed);
		atomic_store_explicit(&sh->c, 4 * i + 1, memory_order_relaxed);
		ps_seq_write_end(&sh->seq);
	}
	return NULL;
}

static void *seq_reader(void *arg)
{
	struct seq_shared *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov, 1, 0);
	uint64_t prev = 0;

	for (uint64_t n = 0; !ps_test_overlap_done(&me);
	     n++, ps_test_overlap_step(&me)) {
		uint64_t v = ps_seq_read_begin(&sh->seq);
		uint64_t a = atomic_load_explicit(&sh->a, memory_order_relaxed);
		uint64_t b, c;
		bool consistent;

		if (n % 64 == 63) { /* until a write ends (1 ms at most) */
			/* Relaxed: progress only, as the harness's. */
			uint64_t w = atomic_load_explicit(&sh->ov.side[0].ops,
							  memory_order_relaxed);
			uint64_t t0 = ps_test_now_ns();

			while (atomic_load_explicit(&sh->ov.side[0].ops,
						    memory_order_relaxed) ==
				       w &&
			       ps_test_now_ns() - t0 < 1000000)
				sched_yield();
		}
		b = atomic_load_explicit(&sh->b, memory_order_relaxed);
		c = atomic_load_explicit(&sh->c, memory_order_relaxed);
		consistent = b == 3 * a + 1 && c == a + b;

		if (ps_seq_read_retry(&sh->seq, v)) {
			sh->refused++;
			sh->torn_refused += !consistent;
			continue;
		}
		sh->accepted++;
		if (!consistent || a < prev)
			sh->violations++;
		prev = a;
	}
	return NULL;
}

START_TEST(stress_writer_reader)
{
	struct seq_shared sh;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	atomic_store(&sh.b, 1);
	atomic_store(&sh.c, 1);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 10000000);
	ps_test_overlap_init(&sh.ov, 2, 0);
	sh.ov.side[0].min_ops = sh.iters;
	ck_assert_int_eq(pthread_create(&t[0], NULL, seq_reader, &sh), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, seq_writer, &sh), 0);
	pthread_join(t[1], NULL);
	pthread_join(t[0], NULL);
	fprintf(stderr,
		"seq stress: %llu accepted, %llu refused (%llu of them torn)\n",
		(unsigned long long)sh.accepted, (unsigned long long)sh.refused,
		(unsigned long long)sh.torn_refused);
	ck_assert_uint_eq(sh.violations, 0);
	ck_assert_uint_gt(sh.accepted, 0);
	ps_test_overlap_check(&sh.ov, "seq writer vs reader");
	ck_assert_uint_gt(sh.torn_refused, 0);
}
END_TEST

static Suite *seq_suite(void)
{
	Suite *s = suite_create("seq");
	TCase *tc;

	tc = ps_test_tcase(s, "parity", 10);
	tcase_add_test(tc, init_and_parity);
	tc = ps_test_tcase(s, "retry", 10);
	tcase_add_test(tc, retry_rules);
	tcase_add_test(tc, read_begin_waits_for_writer);

	tc = ps_test_stress_tcase(s, "stress", 120);
	tcase_add_test(tc, stress_writer_reader);
	return s;
}

PS_TEST_MAIN(seq_suite)
