// SPDX-License-Identifier: MIT
/*
 * tests/test-rcu.c - the internal RCU wrapper (lib/rcu.h): deferred frees
 * run after readers, barrier waits for them, and readers racing a writer
 * that replaces and frees a published object never touch freed memory
 * (ASan) nor race with the free (TSan, through the annotations).
 */
#include "../lib/rcu.h"

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct obj {
	struct ps__rcu_head rcu;
	uint64_t a, b; /* invariant: b == a * 3 */
};

static _Atomic(unsigned) freed;

static void free_obj(struct ps__rcu_head *h)
{
	struct obj *o = (struct obj *)h;

	/* Poison before freeing: a reader that sees this read a dead object. */
	o->a = 1;
	o->b = 0;
	free(o);
	atomic_fetch_add(&freed, 1);
}

static struct obj *new_obj(uint64_t a)
{
	struct obj *o = malloc(sizeof(*o));

	ck_assert_ptr_nonnull(o);
	o->a = a;
	o->b = a * 3;
	return o;
}

START_TEST(call_runs_after_barrier)
{
	atomic_store(&freed, 0);
	for (int i = 0; i < 10; i++)
		ps__rcu_call(&new_obj((uint64_t)i)->rcu, free_obj);
	ps__rcu_barrier();
	ck_assert_uint_eq(atomic_load(&freed), 10);
}
END_TEST

START_TEST(read_sections_nest)
{
	ps__rcu_read_lock();
	ps__rcu_read_lock();
	ps__rcu_read_unlock();
	ps__rcu_read_unlock();
	ps__rcu_synchronize();
}
END_TEST

/*
 * A writer replaces and frees the published object while a reader reads it,
 * until the writer did its share and each side overlapped the other in
 * enough operations (harness.h).
 */
static _Atomic(struct obj *) current;
static _Atomic(unsigned) broken;
static struct ps_test_overlap ov; /* side 0 the writer, 1 the reader */

static void *reader(void *arg)
{
	struct ps_test_side me = ps_test_side(&ov, 1, 0);
	uint64_t reads = 0;

	(void)arg;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		struct obj *o;

		ps__rcu_read_lock();
		/* Acquire: pairs with the writer's release store below. */
		o = atomic_load_explicit(&current, memory_order_acquire);
		if (o->b != o->a * 3)
			atomic_fetch_add(&broken, 1);
		ps__rcu_read_unlock();
		reads++;
	}
	return (void *)(uintptr_t)reads;
}

START_TEST(stress_replace_and_free)
{
	uint64_t iters = ps_test_stress_size("PS_STRESS_ITERS", 200000) / 10;
	uint64_t i;
	struct ps_test_side me;
	pthread_t t;
	void *reads;

	atomic_store(&freed, 0);
	atomic_store(&current, new_obj(0));
	ps_test_overlap_init(&ov, 2, 0);
	ov.side[0].min_ops = iters;
	me = ps_test_side(&ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, reader, NULL), 0);
	for (i = 0; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		/* Release: publishes the initialised object to readers. */
		struct obj *old = atomic_exchange_explicit(
			&current, new_obj(++i), memory_order_acq_rel);

		ps__rcu_call(&old->rcu, free_obj);
	}
	pthread_join(t, &reads);
	ps__rcu_barrier();
	ck_assert_uint_eq(atomic_load(&broken), 0);
	ck_assert_uint_eq(atomic_load(&freed), i);
	ck_assert_uint_gt((uintptr_t)reads, 0);
	ps_test_overlap_check(&ov, "replace vs read");
	free(atomic_load(&current));
}
END_TEST

static Suite *rcu_suite(void)
{
	Suite *s = suite_create("rcu");
	TCase *tc;

	tc = ps_test_tcase(s, "deferred free", 30);
	tcase_add_test(tc, call_runs_after_barrier);
	tcase_add_test(tc, read_sections_nest);
	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_test(tc, stress_replace_and_free);
	return s;
}

PS_TEST_MAIN(rcu_suite)
