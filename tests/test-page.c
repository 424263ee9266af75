// SPDX-License-Identifier: MIT
/*
 * tests/test-page.c - the page word: one tcase per behaviour, every limit
 * at limit-1 / limit / limit+1, misuse through the error hook, and bounded
 * two-thread stress with invariants checked while it runs.
 */
#include <pagestate/page.h>

#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

/* --- a counting error hook ------------------------------------------------ */

static _Atomic(unsigned) hook_calls;
static _Atomic(int) hook_last_error;
static _Atomic(uint64_t) hook_last_word;

static void counting_hook(const struct ps_page *page, enum ps_page_error error,
			  uint64_t word)
{
	(void)page;
	atomic_store_explicit(&hook_last_error, (int)error,
			      memory_order_relaxed);
	atomic_store_explicit(&hook_last_word, word, memory_order_relaxed);
	atomic_fetch_add_explicit(&hook_calls, 1, memory_order_relaxed);
}

static void hook_setup(void)
{
	atomic_store(&hook_calls, 0);
	atomic_store(&hook_last_error, 0);
	ps_page_set_error_hook(counting_hook);
}

static void hook_teardown(void)
{
	ps_page_set_error_hook(NULL);
}

static unsigned hooks(void)
{
	return atomic_load(&hook_calls);
}

static int last_error(void)
{
	return atomic_load(&hook_last_error);
}

/* Raw word access, to build states the API cannot reach directly. */
static uint64_t raw(const struct ps_page *p)
{
	return atomic_load_explicit(&p->word, memory_order_relaxed);
}

static void set_raw(struct ps_page *p, uint64_t w)
{
	atomic_store_explicit(&p->word, w, memory_order_relaxed);
}

/* A LIVE word (when refs > 0) with these counts and flags. */
static uint64_t mkword(uint64_t refs, uint64_t pins, uint64_t flags)
{
	return refs << PS_PAGE_REFS_SHIFT | pins << PS_PAGE_PINS_SHIFT | flags |
	       (refs ? PS_PAGE_LIVE : 0);
}

/* What the API shows of a page: counts and flags, not meaningless units. */
static void assert_visible(const struct ps_page *p, uint64_t refs,
			   uint64_t pins, uint64_t flags)
{
	ck_assert_uint_eq(ps_page_refs(p), refs);
	ck_assert_uint_eq(ps_page_pins(p), pins);
	ck_assert_uint_eq(ps_page_flags(p), flags);
}

/* --- init ----------------------------------------------------------------- */

START_TEST(init_values)
{
	struct ps_page p;
	struct ps_page s = PS_PAGE_INIT(3);
	struct ps_page zero;

	ck_assert_uint_eq(sizeof(struct ps_page), 8);
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 1);
	ck_assert_uint_eq(ps_page_pins(&p), 0);
	ck_assert_uint_eq(ps_page_flags(&p), PS_PAGE_LIVE);
	ck_assert(!ps_page_is_frozen(&p));
	ck_assert_uint_eq(ps_page_refs(&s), 3);

	ck_assert(ps_page_is_live(&p));

	/* Zero-filled memory is a free page (0 refs, not LIVE). */
	memset(&zero, 0, sizeof(zero));
	ck_assert_uint_eq(ps_page_refs(&zero), 0);
	ck_assert(!ps_page_is_live(&zero));
	ck_assert(!ps_page_try_get(&zero));
	assert_visible(&zero, 0, 0, 0);
	ck_assert_int_eq(ps_page_init(&zero, 0), 0);
	ck_assert_uint_eq(raw(&zero), 0);

	ck_assert_int_eq(ps_page_init(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_uint_eq(ps_page_refs(&p), PS_PAGE_REFS_MAX);
}
END_TEST

START_TEST(init_refuses_over_limit)
{
	struct ps_page p = PS_PAGE_INIT(7);

	ck_assert_int_eq(ps_page_init(&p, PS_PAGE_REFS_MAX + 1), -EOVERFLOW);
	ck_assert_uint_eq(ps_page_refs(&p), 7);
}
END_TEST

START_TEST(layout_is_documented)
{
	/* The documented bit map: flags 0-11, pins 12-34, refs 35-63. */
	ck_assert_uint_eq(PS_PAGE_LIVE, 1u << 11);
	ck_assert_uint_eq(PS_PAGE_FLAGS_SHIFT, 0);
	ck_assert_uint_eq(PS_PAGE_PINS_SHIFT, 12);
	ck_assert_uint_eq(PS_PAGE_REFS_SHIFT, 35);
	ck_assert_uint_eq(PS_PAGE_DIRTY, 1u << 0);
	ck_assert_uint_eq(PS_PAGE_FROZEN, 1u << 2);
	ck_assert_uint_eq(PS_PAGE_POISONED, 1u << 7);
	ck_assert_uint_eq(PS_PAGE_CACHE_MASK, 7u << 8);
	ck_assert_uint_eq(PS_PAGE_REFS_MAX, (1u << 28) - 1);
	ck_assert_uint_eq(PS_PAGE_PINS_MAX, (1u << 22) - 1);
}
END_TEST

/* --- get / put ------------------------------------------------------------ */

START_TEST(get_put_counts)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_int_eq(ps_page_get(&p), 0);
	ck_assert_int_eq(ps_page_get(&p), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 3);
	ck_assert(!ps_page_put(&p));
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(ps_page_refs(&p), 1);
	ck_assert(ps_page_put(&p)); /* the last one: caller frees */
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_get_semantics)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ck_assert(!ps_page_try_get(&p)); /* free page */
	assert_visible(&p, 0, 0, 0);
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_try_get(&p));
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
	ck_assert(!ps_page_put(&p));
	ck_assert(ps_page_put(&p));
	ck_assert(!ps_page_try_get(&p)); /* freed again */
	assert_visible(&p, 0, 0, 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(counts_leave_flags_alone)
{
	uint64_t all = PS_PAGE_USER_FLAGS;
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_uint_eq(ps_page_set_flags(&p, all), PS_PAGE_LIVE);
	ck_assert_int_eq(ps_page_get(&p), 0);
	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(!ps_page_unpin(&p));
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(ps_page_flags(&p), all | PS_PAGE_LIVE);
	ck_assert(ps_page_put(&p)); /* frees: only LIVE changes */
	ck_assert_uint_eq(ps_page_flags(&p), all);
	ck_assert_uint_eq(ps_page_refs(&p), 0);
}
END_TEST

/* --- pin / unpin ------------------------------------------------------------ */

START_TEST(pin_is_a_reference)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 2);
	ck_assert_uint_eq(ps_page_pins(&p), 1);
	ck_assert(ps_page_is_pinned(&p));
	/* Dropping the plain reference leaves the pin holding the page. */
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(ps_page_refs(&p), 1);
	ck_assert(ps_page_is_pinned(&p));
	/* The unpin drops the last reference: the caller frees. */
	ck_assert(ps_page_unpin(&p));
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_pin_semantics)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ck_assert(!ps_page_try_pin(&p));
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_try_pin(&p));
	ck_assert(ps_page_try_pin(&p));
	ck_assert_uint_eq(ps_page_pins(&p), 2);
	ck_assert_uint_eq(ps_page_refs(&p), 3);
	ck_assert(!ps_page_unpin(&p));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(!ps_page_is_pinned(&p));
	ck_assert(ps_page_put(&p));
}
END_TEST

START_TEST(masked_try_refuses_flags)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert(!ps_page_try_pin_masked(&p, 1, PS_PAGE_PRIVATE));
	ck_assert(!ps_page_try_get_masked(&p, 1,
					  PS_PAGE_PRIVATE | PS_PAGE_POISONED));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_PRIVATE));
	ck_assert(ps_page_try_pin_masked(&p, 1, PS_PAGE_POISONED));
	ck_assert(ps_page_try_get_masked(&p, 2, PS_PAGE_POISONED));
	ck_assert_uint_eq(raw(&p), mkword(4, 1, PS_PAGE_PRIVATE));
	/* Count bits in the reject mask are ignored, not misread as flags. */
	ck_assert(ps_page_try_get_masked(&p, 1, PS_PAGE_REFS_MASK));
}
END_TEST

/* --- many ------------------------------------------------------------------ */

START_TEST(many_variants)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_int_eq(ps_page_get_many(&p, 511), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 512);
	ck_assert_int_eq(ps_page_pin_many(&p, 512), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 1024);
	ck_assert_uint_eq(ps_page_pins(&p), 512);
	ck_assert(ps_page_try_pin_many(&p, 512));
	ck_assert(ps_page_try_get_many(&p, 3));
	ck_assert_uint_eq(ps_page_refs(&p), 1539);
	ck_assert_uint_eq(ps_page_pins(&p), 1024);
	ck_assert(!ps_page_unpin_many(&p, 1024));
	ck_assert(!ps_page_put_many(&p, 514));
	ck_assert_uint_eq(ps_page_refs(&p), 1);
	ck_assert(ps_page_put_many(&p, 1));

	/* n == 1 takes the fetch-and-add path and means the same thing. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_int_eq(ps_page_get_many(&p, 1), 0);
	ck_assert_int_eq(ps_page_pin_many(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(3, 1, 0));
	ck_assert(ps_page_unpin_many(&p, 1) == false);
	ck_assert(ps_page_put_many(&p, 2));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(many_last_reference)
{
	struct ps_page p = PS_PAGE_INIT(0);

	/* A large page of 512 pages pinned whole, then released whole. */
	ck_assert_int_eq(ps_page_init(&p, 512), 0);
	ck_assert_int_eq(ps_page_pin_many(&p, 512), 0);
	ck_assert(!ps_page_put_many(&p, 512));
	ck_assert(ps_page_unpin_many(&p, 512));
	ck_assert_uint_eq(raw(&p), 0);
}
END_TEST

START_TEST(many_zero_is_refused)
{
	struct ps_page p = PS_PAGE_INIT(5);

	ck_assert_int_eq(ps_page_get_many(&p, 0), -EINVAL);
	ck_assert_int_eq(ps_page_pin_many(&p, 0), -EINVAL);
	ck_assert(!ps_page_try_get_many(&p, 0));
	ck_assert(!ps_page_try_pin_many(&p, 0));
	ck_assert_uint_eq(hooks(), 0);
	ck_assert(!ps_page_put_many(&p, 0));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_BAD_COUNT);
	ck_assert(!ps_page_unpin_many(&p, 0));
	ck_assert_uint_eq(hooks(), 2);
	ck_assert_uint_eq(raw(&p), mkword(5, 0, 0));
}
END_TEST

/* --- is_pinned exactness ----------------------------------------------------- */

/* Linux's small-folio answer, for contrast (folio_maybe_dma_pinned()). */
static bool linux_bias_maybe_pinned(uint32_t refcount)
{
	return refcount >= 1024;
}

START_TEST(is_pinned_exact)
{
	struct ps_page p = PS_PAGE_INIT(1024);

	ck_assert(linux_bias_maybe_pinned(1024)); /* Linux: false positive */
	ck_assert(!ps_page_is_pinned(&p));
	ck_assert(!ps_page_maybe_dma_pinned(&p));

	ck_assert_int_eq(ps_page_init(&p, 1u << 20), 0);
	ck_assert(!ps_page_is_pinned(&p));
	ck_assert_int_eq(ps_page_get_many(&p, (1u << 24) - (1u << 20)), 0);
	ck_assert(!ps_page_is_pinned(&p));

	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(ps_page_is_pinned(&p));
	ck_assert(ps_page_maybe_dma_pinned(&p));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(!ps_page_is_pinned(&p));

	/* A page with 2^20 pins is pinned, and stays so down to one. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_int_eq(ps_page_pin_many(&p, 1u << 20), 0);
	ck_assert(ps_page_is_pinned(&p));
	ck_assert(!ps_page_unpin_many(&p, (1u << 20) - 1));
	ck_assert(ps_page_is_pinned(&p));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(!ps_page_is_pinned(&p));
}
END_TEST

/* --- freeze / unfreeze ---------------------------------------------------------- */

START_TEST(freeze_needs_exact_count)
{
	struct ps_page p = PS_PAGE_INIT(3);

	ck_assert(!ps_page_freeze(&p, 2));
	ck_assert(!ps_page_freeze(&p, 4));
	ck_assert(!ps_page_freeze(&p, PS_PAGE_REFS_MAX + 1));
	ck_assert_uint_eq(raw(&p), mkword(3, 0, 0));
	ck_assert(ps_page_freeze(&p, 3));
	ck_assert(ps_page_is_frozen(&p));
	ck_assert(!ps_page_is_live(&p));
	ck_assert_uint_eq(ps_page_refs(&p), 0); /* frozen reads 0, as Linux */
	ck_assert(!ps_page_freeze(&p, 3));	/* already frozen */
	ck_assert(!ps_page_freeze(&p, 0));
	ck_assert_int_eq(ps_page_unfreeze(&p, 3), 0);
	ck_assert_uint_eq(raw(&p), mkword(3, 0, 0));
}
END_TEST

START_TEST(freeze_refuses_pins)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(!ps_page_freeze(&p, 2));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
}
END_TEST

START_TEST(frozen_refuses_speculation)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t frozen;

	ck_assert(ps_page_freeze(&p, 2));
	frozen = raw(&p);
	ck_assert(!ps_page_try_get_many(&p, 4));
	ck_assert(!ps_page_try_pin_many(&p, 4));
	ck_assert(!ps_page_try_pin(&p));
	ck_assert_uint_eq(raw(&p), frozen); /* CAS paths write nothing */
	for (int i = 0; i < 1000; i++)
		ck_assert(!ps_page_try_get(&p));
	/* The fetch-and-add try leaves units that mean nothing while frozen. */
	ck_assert(ps_page_is_frozen(&p));
	assert_visible(&p, 0, 0, PS_PAGE_FROZEN);
	/* Flags stay writable while frozen (a conversion flips them). */
	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert(ps_page_test_flags(&p, PS_PAGE_PRIVATE));
	/* Unfreeze may set a different count (e.g. one reference dropped). */
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_PRIVATE));
	ck_assert(ps_page_try_get(&p));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(frozen_counts_are_misuse)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t frozen;

	ck_assert(ps_page_freeze(&p, 2));
	frozen = raw(&p);
	ck_assert_int_eq(ps_page_get(&p), -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_FROZEN);
	ck_assert_int_eq(ps_page_pin(&p), -EINVAL);
	ck_assert_int_eq(ps_page_get_many(&p, 3), -EINVAL);
	ck_assert(!ps_page_put(&p));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_FROZEN);
	ck_assert(!ps_page_unpin(&p));
	ck_assert_uint_eq(hooks(), 5);
	ck_assert_uint_eq(raw(&p), frozen);
}
END_TEST

START_TEST(unfreeze_errors)
{
	struct ps_page p = PS_PAGE_INIT(2);

	ck_assert_int_eq(ps_page_unfreeze(&p, 2), -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_NOT_FROZEN);
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
	ck_assert(ps_page_freeze(&p, 2));
	ck_assert_int_eq(ps_page_unfreeze(&p, PS_PAGE_REFS_MAX + 1),
			 -EOVERFLOW);
	ck_assert(ps_page_is_frozen(&p));
	ck_assert_int_eq(ps_page_unfreeze(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_uint_eq(ps_page_refs(&p), PS_PAGE_REFS_MAX);
	ck_assert_uint_eq(hooks(), 1);
}
END_TEST

/* --- flags ------------------------------------------------------------------ */

START_TEST(flag_operations)
{
	struct ps_page p = PS_PAGE_INIT(1);

	const uint64_t V = PS_PAGE_LIVE;

	ck_assert(!ps_page_test_and_set_flag(&p, PS_PAGE_DIRTY));
	ck_assert(ps_page_test_and_set_flag(&p, PS_PAGE_DIRTY));
	ck_assert(ps_page_test_flags(&p, PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(ps_page_set_flags(&p, PS_PAGE_WRITEBACK),
			  PS_PAGE_DIRTY | V);
	ck_assert_uint_eq(ps_page_flags(&p),
			  PS_PAGE_DIRTY | PS_PAGE_WRITEBACK | V);
	ck_assert(ps_page_test_and_clear_flag(&p, PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_and_clear_flag(&p, PS_PAGE_DIRTY));
	ck_assert_uint_eq(ps_page_clear_flags(&p, PS_PAGE_WRITEBACK),
			  PS_PAGE_WRITEBACK | V);
	ck_assert_uint_eq(ps_page_flags(&p), V);
	ck_assert_uint_eq(ps_page_refs(&p), 1);
}
END_TEST

START_TEST(flag_change_multibit)
{
	struct ps_page p = PS_PAGE_INIT(4);

	ck_assert_uint_eq(ps_page_change_flags(&p, PS_PAGE_CACHE_MASK,
					       (uint64_t)3 << PS_PAGE_CACHE_SHIFT),
			  PS_PAGE_LIVE);
	ck_assert_uint_eq(ps_page_word_cache(raw(&p)), 3);
	ck_assert_uint_eq(ps_page_change_flags(&p, PS_PAGE_CACHE_MASK,
					       (uint64_t)5 << PS_PAGE_CACHE_SHIFT),
			  (uint64_t)3 << PS_PAGE_CACHE_SHIFT | PS_PAGE_LIVE);
	ck_assert_uint_eq(ps_page_word_cache(raw(&p)), 5);
	ck_assert_uint_eq(ps_page_refs(&p), 4);
}
END_TEST

START_TEST(flags_cannot_touch_counts_or_frozen)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, ~(uint64_t)0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_USER_FLAGS));
	ck_assert(!ps_page_is_frozen(&p));
	ps_page_clear_flags(&p, ~(uint64_t)0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ps_page_change_flags(&p, 0, PS_PAGE_FROZEN | PS_PAGE_REF_ONE);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ps_page_clear_flags(&p, PS_PAGE_LIVE);
	ps_page_change_flags(&p, PS_PAGE_LIVE, 0);
	ck_assert(ps_page_is_live(&p));
	ck_assert(ps_page_freeze(&p, 1));
	ps_page_clear_flags(&p, PS_PAGE_FROZEN);
	ps_page_set_flags(&p, PS_PAGE_LIVE);
	ck_assert(ps_page_is_frozen(&p));
	ck_assert(!ps_page_is_live(&p));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
}
END_TEST

/* --- limits ------------------------------------------------------------------ */

START_TEST(ref_limit)
{
	struct ps_page p = PS_PAGE_INIT(PS_PAGE_REFS_MAX - 1);

	ck_assert_int_eq(ps_page_get(&p), 0); /* limit-1 -> limit */
	ck_assert_uint_eq(ps_page_refs(&p), PS_PAGE_REFS_MAX);
	ck_assert_int_eq(ps_page_get(&p), -EOVERFLOW); /* at the limit */
	ck_assert_int_eq(ps_page_get_many(&p, 2), -EOVERFLOW);
	ck_assert(!ps_page_try_get(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert_uint_eq(hooks(), 0); /* overflow is an error, not misuse */

	/* get_many: exactly to the limit is fine, limit+1 is refused. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_int_eq(ps_page_get_many(&p, PS_PAGE_REFS_MAX), -EOVERFLOW);
	ck_assert(!ps_page_try_get_many(&p, PS_PAGE_REFS_MAX));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_int_eq(ps_page_get_many(&p, PS_PAGE_REFS_MAX - 1), 0);
	ck_assert_uint_eq(ps_page_refs(&p), PS_PAGE_REFS_MAX);
	ck_assert_int_eq(ps_page_get_many(&p, UINT64_MAX), -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
}
END_TEST

START_TEST(pin_limit)
{
	struct ps_page p = PS_PAGE_INIT(1);
	uint64_t at_limit;

	ck_assert_int_eq(ps_page_pin_many(&p, PS_PAGE_PINS_MAX - 1), 0);
	ck_assert_int_eq(ps_page_pin(&p), 0); /* limit-1 -> limit */
	ck_assert_uint_eq(ps_page_pins(&p), PS_PAGE_PINS_MAX);
	at_limit = raw(&p);
	ck_assert_int_eq(ps_page_pin(&p), -EOVERFLOW);
	ck_assert_int_eq(ps_page_pin_many(&p, 2), -EOVERFLOW);
	ck_assert(!ps_page_try_pin(&p));
	ck_assert(!ps_page_try_pin_many(&p, 3));
	ck_assert_uint_eq(raw(&p), at_limit);
	/* Plain references are still available at the pin limit. */
	ck_assert_int_eq(ps_page_get(&p), 0);
	ck_assert(!ps_page_put(&p));

	/* pin_many: to the limit is fine, limit+1 refused. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_int_eq(ps_page_pin_many(&p, PS_PAGE_PINS_MAX + 1),
			 -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_int_eq(ps_page_pin_many(&p, PS_PAGE_PINS_MAX), 0);

	/* A pin is refused when the reference field is full, too. */
	ck_assert_int_eq(ps_page_init(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_int_eq(ps_page_pin(&p), -EOVERFLOW);
	ck_assert(!ps_page_try_pin(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- underflow and misuse --------------------------------------------------------- */

START_TEST(put_underflow)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(hooks(), 1);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(0, 0, PS_PAGE_DIRTY));

	ck_assert_int_eq(ps_page_init(&p, 3), 0);
	ck_assert(!ps_page_put_many(&p, 4));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(3, 0, 0));
	ck_assert(!ps_page_put_many(&p, PS_PAGE_REFS_MAX + 1));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_BAD_COUNT);
	ck_assert_uint_eq(raw(&p), mkword(3, 0, 0));
}
END_TEST

START_TEST(put_of_a_pins_reference)
{
	struct ps_page p = PS_PAGE_INIT(1);

	/* refs 1, pins 1: the only reference is the pin's. */
	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(raw(&p), mkword(1, 1, 0));
	ck_assert_uint_eq(hooks(), 0);
	ck_assert(!ps_page_put(&p));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(1, 1, 0));
	ck_assert(ps_page_unpin(&p));
}
END_TEST

START_TEST(unpin_underflow)
{
	struct ps_page p = PS_PAGE_INIT(2);

	ck_assert(!ps_page_unpin(&p));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_PIN_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(!ps_page_unpin_many(&p, 2));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_PIN_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(3, 1, 0));
	ck_assert_uint_eq(hooks(), 2);
}
END_TEST

START_TEST(get_on_zero_is_use_after_free)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ck_assert_int_eq(ps_page_get(&p), -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_GET_ZERO);
	ck_assert_int_eq(ps_page_pin(&p), -EINVAL);
	ck_assert_int_eq(ps_page_get_many(&p, 2), -EINVAL);
	ck_assert_int_eq(ps_page_pin_many(&p, 2), -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_GET_ZERO);
	ck_assert_uint_eq(hooks(), 4);
	ck_assert_uint_eq(raw(&p), 0);
}
END_TEST

START_TEST(hook_replacement)
{
	struct ps_page p = PS_PAGE_INIT(0);

	/* The fixture installed counting_hook; NULL restores the default. */
	ck_assert(ps_page_set_error_hook(NULL) == counting_hook);
	ck_assert(ps_page_set_error_hook(counting_hook) ==
		  ps_page_default_error_hook);
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(atomic_load(&hook_last_word), 0);
	ck_assert_str_eq(ps_page_error_name(PS_PAGE_ERR_GET_ZERO),
			 "get on a page with no reference (use after free)");
}
END_TEST

/* With the default hook, a debug build aborts on misuse. */
START_TEST(default_hook_policy)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ps_page_set_error_hook(NULL);
	(void)ps_page_put(&p);
	/* Release builds get here: the word is unchanged (leak, no wrap). */
	ck_assert_uint_eq(raw(&p), 0);
}
END_TEST

/* --- freeing and speculative gets ------------------------------------------ */

START_TEST(free_page_absorbs_failed_tries)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, PS_PAGE_DIRTY | PS_PAGE_PRIVATE);
	ck_assert(ps_page_put(&p)); /* freed: LIVE cleared */
	ck_assert(!ps_page_is_live(&p));
	/* Many failed tries: units land in the refs field and mean nothing. */
	for (int i = 0; i < 100000; i++)
		ck_assert(!ps_page_try_get(&p));
	assert_visible(&p, 0, 0, PS_PAGE_DIRTY | PS_PAGE_PRIVATE);
	ck_assert(!ps_page_is_pinned(&p));
	ck_assert(!ps_page_try_pin(&p));
	ck_assert(!ps_page_freeze(&p, 0));
	/* Wrapping the whole refs field out of the word is harmless too. */
	set_raw(&p, PS_PAGE_REFS_MASK | PS_PAGE_DIRTY);
	ck_assert(!ps_page_try_get(&p));
	ck_assert_uint_eq(raw(&p), PS_PAGE_DIRTY);
	/* Re-initialising makes a clean LIVE page. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_get_revives_before_claim)
{
	struct ps_page p;

	/* The instant between a last put's fetch-and-sub and its claim. */
	set_raw(&p, PS_PAGE_LIVE);
	ck_assert(ps_page_try_get(&p)); /* revives the page */
	ck_assert_uint_eq(ps_page_refs(&p), 1);
	ck_assert(!ps__page_claim(&p)); /* so the first put's claim fails */
	ck_assert(ps_page_is_live(&p));
	ck_assert(ps_page_put(&p)); /* and the reviver's put frees it */
	ck_assert(!ps_page_is_live(&p));
	ck_assert(!ps__page_claim(&p)); /* exactly once */
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_get_limit_keeps_or_undoes)
{
	struct ps_page p;

	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert(!ps_page_try_get(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	/*
	 * The slow path after a refused add: if a holder put meanwhile, our
	 * unit fits and is kept instead of being taken back (taking it back
	 * could be the decrement that frees the page).
	 */
	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, 0) + PS_PAGE_REF_ONE);
	atomic_fetch_sub(&p.word, PS_PAGE_REF_ONE); /* another holder's put */
	ck_assert(ps_page_try_get_over_slow(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	/* Still over: taken back. */
	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, 0) + PS_PAGE_REF_ONE);
	ck_assert(!ps_page_try_get_over_slow(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
}
END_TEST

START_TEST(unfreeze_to_zero_frees)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze(&p, 0), 0);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert(!ps_page_try_get(&p));
}
END_TEST

START_TEST(get_or_revive)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert(!ps_page_try_get(&p)); /* leaves a meaningless unit */
	ck_assert_int_eq(ps_page_get_or_revive(&p), 1); /* revives: refs 1 */
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_PRIVATE));
	ck_assert_int_eq(ps_page_get_or_revive(&p), 0); /* live: +1 */
	ck_assert_uint_eq(raw(&p), mkword(2, 0, PS_PAGE_PRIVATE));
	ck_assert(ps_page_freeze(&p, 2));
	ck_assert_int_eq(ps_page_get_or_revive(&p), -EBUSY);
	ck_assert_int_eq(ps_page_unfreeze(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_int_eq(ps_page_get_or_revive(&p), -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, PS_PAGE_PRIVATE));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* Regression: a free poisoned page was revived (handed out again). */
START_TEST(get_or_revive_refuses_poisoned)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, PS_PAGE_POISONED);
	ck_assert_int_eq(ps_page_get_or_revive(&p), 0); /* LIVE: holders stay */
	ck_assert(!ps_page_put(&p));
	ck_assert(ps_page_put(&p)); /* freed */
	ck_assert_int_eq(ps_page_get_or_revive(&p), -EHWPOISON);
	ck_assert_uint_eq(raw(&p), mkword(0, 0, PS_PAGE_POISONED));
	ck_assert(!ps_page_is_live(&p));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(fetch_flag_ops_return_word)
{
	struct ps_page p = PS_PAGE_INIT(3);

	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert_uint_eq(ps_page_fetch_set_flags(&p, PS_PAGE_DIRTY),
			  mkword(4, 1, 0));
	ck_assert_uint_eq(ps_page_fetch_clear_flags(&p, PS_PAGE_DIRTY |
							       PS_PAGE_LIVE),
			  mkword(4, 1, PS_PAGE_DIRTY));
	ck_assert_uint_eq(raw(&p), mkword(4, 1, 0)); /* LIVE untouched */
}
END_TEST

/* --- regressions ------------------------------------------------------------------ */

/*
 * regress_change_flags_during_overflow: a flag change was refused while
 * another thread held a refused get in the word (refs > limit), because the
 * CAS core applied its limit check even when adding nothing. Fixed before the
 * first commit; the core now checks limits only when it adds.
 */
START_TEST(regress_change_flags_during_overflow)
{
	struct ps_page p;

	set_raw(&p, mkword(PS_PAGE_REFS_MAX + 1, 0, 0));
	ps_page_change_flags(&p, 0, PS_PAGE_DIRTY);
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX + 1, 0,
					  PS_PAGE_DIRTY));
}
END_TEST

/*
 * regress_unpin_many_beyond_pin_limit: unpin_many(n) with n above the pin
 * limit built a delta whose pin part carried into the reference field.
 * Fixed before the first commit: such n is PS_PAGE_ERR_BAD_COUNT.
 */
START_TEST(regress_unpin_many_beyond_pin_limit)
{
	struct ps_page p = PS_PAGE_INIT(5);

	ck_assert(!ps_page_unpin_many(&p, PS_PAGE_PINS_MAX + 1));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_BAD_COUNT);
	ck_assert_uint_eq(raw(&p), mkword(5, 0, 0));
}
END_TEST

/* --- stress --------------------------------------------------------------------- */

/*
 * Two workers share one page that the test itself holds one reference to
 * (BASE). Each worker randomly gets, pins, try-gets, try-pins, puts and
 * unpins within a small budget of holdings, and sometimes tries to freeze
 * the page with expected = BASE + its own holdings. That succeeds only when
 * the other worker holds nothing. While it holds the freeze it publishes
 * frozen_by[self] and checks the frozen invariants. Checked while running:
 *   - a worker holding a pin never reads is_pinned() == false;
 *   - counts never fall below what the reader itself holds;
 *   - no try-get/try-pin succeeds while the other worker holds a freeze;
 *   - a frozen page reports no pins and exactly the expected references.
 * At the end the word equals the initial one.
 */
#define STRESS_BASE 1

struct stress_shared {
	struct ps_page page;
	_Atomic(int) frozen_by[2];
	_Atomic(unsigned) violations;
	uint64_t iters;
};

struct stress_worker {
	struct stress_shared *sh;
	int self;
	uint64_t freezes;
};

static void violation(struct stress_shared *sh, const char *what)
{
	fprintf(stderr, "stress invariant broken: %s\n", what);
	atomic_fetch_add(&sh->violations, 1);
}

static void *stress_worker(void *arg)
{
	struct stress_worker *w = arg;
	struct stress_shared *sh = w->sh;
	struct ps_page *p = &sh->page;
	struct ps_test_rng rng = ps_test_rng_new((uint64_t)w->self + 1);
	uint64_t refs = 0, pins = 0; /* what this worker holds (pins incl.) */
	int other = 1 - w->self;

	for (uint64_t i = 0; i < sh->iters; i++) {
		unsigned op = (unsigned)ps_test_below(&rng, 8);
		bool ok;

		switch (op) {
		case 0: /* get, only with a reference in hand */
		case 1: /* pin, likewise */
			if (refs == 0 || refs >= 8)
				break;
			if ((op == 0 ? ps_page_get(p) : ps_page_pin(p)) != 0) {
				violation(sh, "get/pin refused below limit");
				break;
			}
			refs++;
			pins += op;
			break;
		case 2: /* try-get */
		case 3: /* try-pin */
			if (refs >= 8)
				break;
			ok = op == 2 ? ps_page_try_get(p) : ps_page_try_pin(p);
			if (!ok)
				break;
			if (atomic_load(&sh->frozen_by[other]))
				violation(sh, "try succeeded on a frozen page");
			refs++;
			pins += op - 2;
			break;
		case 4: /* put a plain reference */
			if (refs > pins) {
				(void)ps_page_put(p);
				refs--;
			}
			break;
		case 5: /* unpin */
			if (pins) {
				(void)ps_page_unpin(p);
				pins--;
				refs--;
			}
			break;
		case 6: /* freeze: only possible when the other holds nothing */
			if (pins || !ps_page_freeze(p, STRESS_BASE + refs))
				break;
			atomic_store(&sh->frozen_by[w->self], 1);
			w->freezes++;
			if (ps_page_pins(p) != 0 || ps_page_refs(p) != 0 ||
			    !ps_page_is_frozen(p) || ps_page_is_live(p))
				violation(sh, "frozen page with wrong state");
			if (ps_page_try_get(p) || ps_page_try_pin(p))
				violation(sh, "own try succeeded while frozen");
			ps_page_change_flags(p, PS_PAGE_CACHE_MASK,
					     (uint64_t)(i & 7)
						     << PS_PAGE_CACHE_SHIFT);
			atomic_store(&sh->frozen_by[w->self], 0);
			if (ps_page_unfreeze(p, STRESS_BASE + refs) != 0)
				violation(sh, "unfreeze failed");
			break;
		default: /* observe */
			if (pins && !ps_page_is_pinned(p))
				violation(sh, "pin holder saw is_pinned false");
			/* With references in hand no freeze can succeed. */
			if (refs && (ps_page_refs(p) < STRESS_BASE + refs ||
				     ps_page_pins(p) < pins))
				violation(sh, "count below own holdings");
			break;
		}
	}
	while (pins--) {
		(void)ps_page_unpin(p);
		refs--;
	}
	while (refs--)
		(void)ps_page_put(p);
	return NULL;
}

START_TEST(stress_counts_against_freeze)
{
	struct stress_shared sh;
	struct stress_worker w[2];
	pthread_t t[2];
	uint64_t initial;

	memset(&sh, 0, sizeof(sh));
	ck_assert_int_eq(ps_page_init(&sh.page, STRESS_BASE), 0);
	initial = raw(&sh.page);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000);
	for (int i = 0; i < 2; i++) {
		w[i].sh = &sh;
		w[i].self = i;
		w[i].freezes = 0;
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_worker,
						&w[i]),
				 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(hooks(), 0);
	/* The cache field was scribbled on while frozen; counts must match. */
	ck_assert_uint_eq(raw(&sh.page) & ~PS_PAGE_CACHE_MASK, initial);
	/* The freeze path was really exercised. */
	ck_assert_uint_gt(w[0].freezes + w[1].freezes, 0);
}
END_TEST

/*
 * Two threads push against the limits at once: every get or pin at the limit
 * is refused, and a third party (the other thread between attempts) never
 * sees a wrapped, small count or a missing pin.
 */
struct limit_shared {
	struct ps_page page;
	uint64_t iters;
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) granted;
};

static void *limit_worker(void *arg)
{
	struct limit_shared *sh = arg;
	struct ps_page *p = &sh->page;

	for (uint64_t i = 0; i < sh->iters; i++) {
		bool pin = (i & 1) && i % 3 != 0;
		int rc;

		if (i % 3 == 0)
			rc = ps_page_try_get(p) ? 0 : -EOVERFLOW;
		else
			rc = pin ? ps_page_pin(p) : ps_page_get(p);
		uint64_t w = ps_page_load(p);

		if (rc == 0) {
			atomic_fetch_add(&sh->granted, 1);
			if (pin)
				(void)ps_page_unpin(p);
			else
				(void)ps_page_put(p);
		} else if (rc != -EOVERFLOW) {
			atomic_fetch_add(&sh->violations, 1);
		}
		if (ps_page_word_refs(w) < PS_PAGE_REFS_MAX - 2 ||
		    ps_page_word_pins(w) < PS_PAGE_PINS_MAX - 2 ||
		    ps_page_word_flags(w) != (PS_PAGE_DIRTY | PS_PAGE_LIVE))
			atomic_fetch_add(&sh->violations, 1);
	}
	return NULL;
}

START_TEST(stress_limits_concurrent)
{
	struct limit_shared sh;
	pthread_t t[2];
	uint64_t start;

	memset(&sh, 0, sizeof(sh));
	/* Both counts one below their limits: one of the two may succeed. */
	set_raw(&sh.page, mkword(PS_PAGE_REFS_MAX - 1, PS_PAGE_PINS_MAX - 1,
				 PS_PAGE_DIRTY));
	start = raw(&sh.page);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, limit_worker, &sh),
				 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(raw(&sh.page), start);
	ck_assert_uint_gt(atomic_load(&sh.granted), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * The freeing race: each round the test hands a page with one reference to
 * two threads. The speculator keeps taking and dropping a speculative
 * reference until it finds the page freed. The dropper waits a random short
 * while, then drops the page's reference (usually the last put, landing
 * in the middle of the speculator's loop). Whatever the interleaving,
 * revival between a put and its claim included, exactly one put per round
 * returns true, no put is refused, and the page ends free.
 */
struct free_shared {
	struct ps_page page;
	_Atomic(uint64_t) round;   /* the round the page was prepared for */
	_Atomic(uint64_t) done[2]; /* last round each thread finished */
	_Atomic(uint64_t) frees;
	uint64_t rounds;
};

static void *free_dropper(void *arg)
{
	struct free_shared *sh = arg;
	struct ps_test_rng rng = ps_test_rng_new(77);

	for (uint64_t r = 1; r <= sh->rounds; r++) {
		uint64_t spin = ps_test_below(&rng, 256);

		while (atomic_load(&sh->round) != r)
			sched_yield();
		while (spin--)
			atomic_signal_fence(memory_order_seq_cst);
		if (ps_page_put(&sh->page))
			atomic_fetch_add(&sh->frees, 1);
		atomic_store(&sh->done[0], r);
	}
	return NULL;
}

static void *free_speculator(void *arg)
{
	struct free_shared *sh = arg;

	for (uint64_t r = 1; r <= sh->rounds; r++) {
		while (atomic_load(&sh->round) != r)
			sched_yield();
		while (ps_page_try_get(&sh->page)) {
			if (ps_page_put(&sh->page)) {
				atomic_fetch_add(&sh->frees, 1);
				break;
			}
		}
		atomic_store(&sh->done[1], r);
	}
	return NULL;
}

START_TEST(stress_exactly_one_free)
{
	struct free_shared sh;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	sh.rounds = ps_test_stress_size("PS_STRESS_ROUNDS", 20000);
	ck_assert_int_eq(pthread_create(&t[0], NULL, free_dropper, &sh), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, free_speculator, &sh), 0);
	for (uint64_t r = 1; r <= sh.rounds; r++) {
		ck_assert_int_eq(ps_page_init(&sh.page, 1), 0);
		atomic_store(&sh.round, r);
		while (atomic_load(&sh.done[0]) != r ||
		       atomic_load(&sh.done[1]) != r)
			sched_yield();
		ck_assert_uint_eq(atomic_load(&sh.frees), r);
		ck_assert(!ps_page_is_live(&sh.page));
		ck_assert_uint_eq(ps_page_refs(&sh.page), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

static Suite *page_suite(void)
{
	Suite *s = suite_create("page");
	TCase *tc;

	tc = ps_test_tcase(s, "init", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, init_values);
	tcase_add_test(tc, init_refuses_over_limit);
	tcase_add_test(tc, layout_is_documented);

	tc = ps_test_tcase(s, "get/put", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, get_put_counts);
	tcase_add_test(tc, try_get_semantics);
	tcase_add_test(tc, counts_leave_flags_alone);

	tc = ps_test_tcase(s, "pin/unpin", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, pin_is_a_reference);
	tcase_add_test(tc, try_pin_semantics);
	tcase_add_test(tc, masked_try_refuses_flags);

	tc = ps_test_tcase(s, "many", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, many_variants);
	tcase_add_test(tc, many_last_reference);
	tcase_add_test(tc, many_zero_is_refused);

	tc = ps_test_tcase(s, "is_pinned exactness", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, is_pinned_exact);

	tc = ps_test_tcase(s, "freeze/unfreeze", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, freeze_needs_exact_count);
	tcase_add_test(tc, freeze_refuses_pins);
	tcase_add_test(tc, frozen_refuses_speculation);
	tcase_add_test(tc, frozen_counts_are_misuse);
	tcase_add_test(tc, unfreeze_errors);

	tc = ps_test_tcase(s, "flags", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, flag_operations);
	tcase_add_test(tc, flag_change_multibit);
	tcase_add_test(tc, flags_cannot_touch_counts_or_frozen);

	tc = ps_test_tcase(s, "limits", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, ref_limit);
	tcase_add_test(tc, pin_limit);

	tc = ps_test_tcase(s, "underflow", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, put_underflow);
	tcase_add_test(tc, put_of_a_pins_reference);
	tcase_add_test(tc, unpin_underflow);
	tcase_add_test(tc, get_on_zero_is_use_after_free);
	tcase_add_test(tc, hook_replacement);
#ifdef NDEBUG
	tcase_add_test(tc, default_hook_policy);
#else
	tcase_add_test_raise_signal(tc, default_hook_policy, SIGABRT);
#endif

	tc = ps_test_tcase(s, "free/revive", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, free_page_absorbs_failed_tries);
	tcase_add_test(tc, try_get_revives_before_claim);
	tcase_add_test(tc, try_get_limit_keeps_or_undoes);
	tcase_add_test(tc, unfreeze_to_zero_frees);
	tcase_add_test(tc, get_or_revive);
	tcase_add_test(tc, get_or_revive_refuses_poisoned);
	tcase_add_test(tc, fetch_flag_ops_return_word);

	tc = ps_test_tcase(s, "regressions", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, regress_change_flags_during_overflow);
	tcase_add_test(tc, regress_unpin_many_beyond_pin_limit);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, stress_counts_against_freeze);
	tcase_add_test(tc, stress_limits_concurrent);
	tcase_add_test(tc, stress_exactly_one_free);
	return s;
}

PS_TEST_MAIN(page_suite)
