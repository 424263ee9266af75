// SPDX-License-Identifier: MIT
/*
 * tests/test-page.c - the page word: one tcase per behaviour, every limit
 * at limit-1 / limit / limit+1, misuse through the error hook, and bounded
 * two-thread stress with invariants checked while it runs.
 */
#include <pagestate/page.h>

#include "harness.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

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
	/*
	 * The documented bit map: flags 0-12, pins 13-34, refs 35-63 (0.2: the
	 * pins gave their top bit to SPLIT).
	 */
	ck_assert_uint_eq(PS_PAGE_LIVE, 1u << 11);
	ck_assert_uint_eq(PS_PAGE_SPLIT, 1u << 12);
	ck_assert_uint_eq(PS_PAGE_FLAGS_SHIFT, 0);
	ck_assert_uint_eq(PS_PAGE_PINS_SHIFT, 13);
	ck_assert_uint_eq(PS_PAGE_REFS_SHIFT, 35);
	ck_assert_uint_eq(PS_PAGE_DIRTY, 1u << 0);
	ck_assert_uint_eq(PS_PAGE_FROZEN, 1u << 2);
	ck_assert_uint_eq(PS_PAGE_POISONED, 1u << 7);
	ck_assert_uint_eq(PS_PAGE_CACHE_MASK, 7u << 8);
	ck_assert_uint_eq(PS_PAGE_REFS_MAX, (1u << 28) - 1);
	ck_assert_uint_eq(PS_PAGE_PINS_MAX, (1u << 21) - 1);
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
	/* Frees: LIVE goes, and this lifetime's flags with it (#3). */
	ck_assert(ps_page_put(&p));
	ck_assert_uint_eq(ps_page_flags(&p), all & ~PS_PAGE_LIFE_FLAGS);
	ck_assert_uint_eq(ps_page_refs(&p), 0);
}
END_TEST

/* --- pin / unpin ---------------------------------------------------------- */

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

/* --- many ----------------------------------------------------------------- */

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

/* --- is_pinned exactness -------------------------------------------------- */

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

/* --- freeze / unfreeze ---------------------------------------------------- */

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

/* --- flags ---------------------------------------------------------------- */

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
					       (uint64_t)3
						       << PS_PAGE_CACHE_SHIFT),
			  PS_PAGE_LIVE);
	ck_assert_uint_eq(ps_page_word_cache(raw(&p)), 3);
	ck_assert_uint_eq(ps_page_change_flags(&p, PS_PAGE_CACHE_MASK,
					       (uint64_t)5
						       << PS_PAGE_CACHE_SHIFT),
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

/* --- limits --------------------------------------------------------------- */

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

/* --- underflow and misuse ------------------------------------------------- */

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

/* --- freeing and speculative gets ----------------------------------------- */

START_TEST(free_page_absorbs_failed_tries)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, PS_PAGE_DIRTY | PS_PAGE_PRIVATE);
	ck_assert(ps_page_put(&p)); /* freed: LIVE cleared, and DIRTY (#3) */
	ck_assert(!ps_page_is_live(&p));
	/* Many failed tries: units land in the refs field and mean nothing. */
	for (int i = 0; i < 100000; i++)
		ck_assert(!ps_page_try_get(&p));
	assert_visible(&p, 0, 0, PS_PAGE_PRIVATE);
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
	ck_assert_uint_eq(raw(&p),
			  mkword(PS_PAGE_REFS_MAX, 0, PS_PAGE_PRIVATE));
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

/* --- a free ends a lifetime (issue 15 #3) --------------------------------- */

/*
 * Flags of the frame's memory (what prot and its owner set): a free keeps
 * them. Flags of one lifetime: a free clears them (PS_PAGE_LIFE_FLAGS).
 */
#define KEPT_FLAGS                                                   \
	(PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE | PS_PAGE_POISONED | \
	 cache_of(PS_CACHE_WC))

static uint64_t cache_of(enum ps_cache_mode m)
{
	return (uint64_t)m << PS_PAGE_CACHE_SHIFT;
}

/*
 * Regression (issue 15 #3): a page freed while DIRTY (or with a stale
 * WRITE_PINNED) kept the flag in its free word, so its next owner's first
 * write found it dirty and ran no dirty hook. Every transition that frees
 * a page ends its lifetime: the last put, the last unpin, a put_many or
 * unpin_many of the rest, an unfreeze to no reference.
 */
START_TEST(free_clears_lifetime_flags)
{
	const uint64_t life = PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED;
	struct ps_page p;

	ck_assert_uint_eq(PS_PAGE_LIFE_FLAGS, life);
	/* The last put. */
	set_raw(&p, mkword(1, 0, life | KEPT_FLAGS));
	ck_assert(ps_page_put(&p));
	ck_assert_uint_eq(raw(&p), KEPT_FLAGS);
	/* A put that is not the last keeps them. */
	set_raw(&p, mkword(2, 0, life | KEPT_FLAGS));
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, life | KEPT_FLAGS));
	/* The last unpin, and the *_many forms. */
	set_raw(&p, mkword(1, 1, life));
	ck_assert(ps_page_unpin(&p));
	ck_assert_uint_eq(raw(&p), 0);
	set_raw(&p, mkword(3, 0, life));
	ck_assert(ps_page_put_many(&p, 3));
	ck_assert_uint_eq(raw(&p), 0);
	set_raw(&p, mkword(2, 2, life | PS_PAGE_PRIVATE));
	ck_assert(ps_page_unpin_many(&p, 2));
	ck_assert_uint_eq(raw(&p), PS_PAGE_PRIVATE);
	/* An unfreeze to no reference frees too; to some, it keeps them. */
	set_raw(&p, mkword(1, 0, life | KEPT_FLAGS));
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze(&p, 0), 0);
	ck_assert_uint_eq(raw(&p), KEPT_FLAGS);
	set_raw(&p, mkword(1, 0, life));
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, life));
	/* A hand-built LIVE word with no reference, claimed. */
	set_raw(&p, PS_PAGE_LIVE | life | KEPT_FLAGS);
	ck_assert(ps__page_claim(&p));
	ck_assert_uint_eq(raw(&p), KEPT_FLAGS);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A free keeps LOCKED and WRITEBACK: they belong to the thread that set
 * them, which clears them itself (clearing LOCKED here would hand a lock
 * its holder still holds to the next locker). A holder of either keeps a
 * reference, so a correct caller never frees a page with them set.
 */
START_TEST(free_keeps_lock_and_writeback)
{
	struct ps_page p;

	set_raw(&p, mkword(1, 0,
			   PS_PAGE_LOCKED | PS_PAGE_WRITEBACK | PS_PAGE_DIRTY));
	ck_assert(ps_page_put(&p));
	ck_assert_uint_eq(raw(&p), PS_PAGE_LOCKED | PS_PAGE_WRITEBACK);
	ck_assert(!ps_page_trylock(&p)); /* still its holder's */
	ps_page_unlock(&p);
	ps_page_clear_flags(&p, PS_PAGE_WRITEBACK);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A revival starts a lifetime clean, whatever landed on the free word
 * (flags stay writable on a free page): the owner's memory flags stay,
 * counts and lifetime flags are new.
 */
START_TEST(revive_starts_clean)
{
	struct ps_page p = PS_PAGE_INIT(0);
	unsigned int old;

	ps_page_set_flags(&p, PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED |
				      PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE);
	ck_assert(!ps_page_try_get(&p)); /* a meaningless unit too */
	ck_assert_int_eq(ps_page_get_or_revive(&p), 1);
	ck_assert_uint_eq(raw(&p),
			  mkword(1, 0, PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE));
	/* A LIVE page gains a reference and keeps its lifetime flags. */
	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert_int_eq(ps_page_get_or_revive(&p), 0);
	ck_assert_uint_eq(raw(&p), mkword(2, 0,
					  PS_PAGE_DIRTY | PS_PAGE_PRIVATE |
						  PS_PAGE_INACCESSIBLE));
	/* With a cache mode. */
	set_raw(&p,
		PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED | cache_of(PS_CACHE_UC));
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WC, &old), 1);
	ck_assert_uint_eq(old, PS_CACHE_UC);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, cache_of(PS_CACHE_WC)));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* A whole lifetime: written, freed, revived: the new one is clean. */
START_TEST(next_lifetime_starts_clean)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ck_assert_int_eq(ps_page_get_or_revive(&p), 1);
	ck_assert(ps_page_try_pin_and_set_flags(&p, 1, 0,
						PS_PAGE_WRITE_PINNED));
	ck_assert(!ps_page_test_and_set_flag(&p, PS_PAGE_DIRTY));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(ps_page_put(&p)); /* freed dirty */
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_LIFE_FLAGS));
	ck_assert_int_eq(ps_page_get_or_revive(&p), 1);
	/* The first write of the new lifetime is the clean-to-dirty one. */
	ck_assert(!ps_page_test_and_set_flag(&p, PS_PAGE_DIRTY));
	ck_assert(ps_page_put(&p));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- the page lock -------------------------------------------------------- */

START_TEST(lock_trylock_unlock)
{
	struct ps_page p = PS_PAGE_INIT(2);

	ck_assert(ps_page_trylock(&p));
	ck_assert(ps_page_test_flags(&p, PS_PAGE_LOCKED));
	ck_assert(!ps_page_trylock(&p)); /* held: not recursive */
	/* Counts and other flags work as usual under the lock. */
	ck_assert_int_eq(ps_page_pin(&p), 0);
	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(!ps_page_unpin(&p));
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_LOCKED | PS_PAGE_DIRTY));
	ps_page_unlock(&p);
	ck_assert_uint_eq(raw(&p), mkword(2, 0, PS_PAGE_DIRTY));
	ps_page_lock(&p); /* free: taken at once */
	ck_assert(!ps_page_trylock(&p));
	ps_page_unlock(&p);
	ck_assert(ps_page_trylock(&p));
	ps_page_unlock(&p);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(lock_on_free_and_frozen_pages)
{
	struct ps_page p = PS_PAGE_INIT(0);

	/* The lock is a flag: free and frozen pages can be locked too. */
	ps_page_lock(&p);
	ck_assert_uint_eq(raw(&p), PS_PAGE_LOCKED);
	ck_assert(!ps_page_try_get(&p));
	ps_page_unlock(&p);
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_freeze(&p, 1));
	ps_page_lock(&p);
	ck_assert(ps_page_is_frozen(&p));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_LOCKED));
	ps_page_unlock(&p);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

struct lock_waiter {
	struct ps_page *page;
	_Atomic(int) state; /* 0 started, 1 waiting, 2 holds the lock */
};

static void *lock_waiter_fn(void *arg)
{
	struct lock_waiter *w = arg;

	atomic_store(&w->state, 1);
	ps_page_lock(w->page);
	atomic_store(&w->state, 2);
	ps_page_unlock(w->page);
	return NULL;
}

/* ps_page_lock() waits (spinning, then yielding) until the holder unlocks. */
START_TEST(lock_waits_for_the_holder)
{
	struct ps_page p = PS_PAGE_INIT(1);
	struct lock_waiter w = {.page = &p};
	pthread_t t;

	ps_page_lock(&p);
	ck_assert_int_eq(pthread_create(&t, NULL, lock_waiter_fn, &w), 0);
	while (atomic_load(&w.state) == 0)
		sched_yield();
	/* Long past the spinning phase: it must still be waiting. */
	for (int i = 0; i < 2000; i++)
		sched_yield();
	ck_assert_int_eq(atomic_load(&w.state), 1);
	ps_page_unlock(&p);
	pthread_join(t, NULL);
	ck_assert_int_eq(atomic_load(&w.state), 2);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
}
END_TEST

/* --- write-back in flight ------------------------------------------------- */

/* One write-back at a time: start sets WRITEBACK once, end clears it. */
START_TEST(writeback_start_end)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t w;

	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(ps_page_start_writeback(&p));
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_DIRTY | PS_PAGE_WRITEBACK));
	ck_assert(!ps_page_start_writeback(&p)); /* one in flight */
	/* Counts and other flags work as usual meanwhile. */
	ck_assert_int_eq(ps_page_pin(&p), 0);
	ps_page_clear_flags(&p, PS_PAGE_DIRTY);
	w = ps_page_end_writeback(&p);
	ck_assert_uint_eq(w, mkword(3, 1, PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(raw(&p), mkword(3, 1, 0));
	ps_page_wait_writeback(&p); /* none in flight: returns at once */
	ck_assert(ps_page_start_writeback(&p));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(ps_page_end_writeback(&p) & PS_PAGE_WRITEBACK);
	/* An end without a start changes nothing and says so. */
	ck_assert(!(ps_page_end_writeback(&p) & PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* The flag is a flag: free and frozen pages can be under write-back. */
START_TEST(writeback_on_free_and_frozen_pages)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ck_assert(ps_page_start_writeback(&p));
	ck_assert_uint_eq(raw(&p), PS_PAGE_WRITEBACK);
	ck_assert(ps_page_end_writeback(&p) & PS_PAGE_WRITEBACK);
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(ps_page_start_writeback(&p));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_WRITEBACK));
	ck_assert(ps_page_end_writeback(&p) & PS_PAGE_WRITEBACK);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

struct wb_waiter {
	struct ps_page *page;
	uint64_t data; /* written before the end, read after the wait */
	uint64_t seen;
	_Atomic(int) state; /* 0 started, 1 waiting, 2 done */
};

static void *wb_waiter_fn(void *arg)
{
	struct wb_waiter *w = arg;

	atomic_store(&w->state, 1);
	ps_page_wait_writeback(w->page);
	w->seen = w->data; /* plain: the wait's acquire orders it */
	atomic_store(&w->state, 2);
	return NULL;
}

/* ps_page_wait_writeback() waits (spinning, then yielding) until the
 * write-back ends, and then sees what the writer-back did before. */
START_TEST(writeback_wait_for_the_end)
{
	struct ps_page p = PS_PAGE_INIT(1);
	struct wb_waiter w = {.page = &p};
	pthread_t t;

	ck_assert(ps_page_start_writeback(&p));
	ck_assert_int_eq(pthread_create(&t, NULL, wb_waiter_fn, &w), 0);
	while (atomic_load(&w.state) == 0)
		sched_yield();
	/* Long past the spinning phase: it must still be waiting. */
	for (int i = 0; i < 2000; i++)
		sched_yield();
	ck_assert_int_eq(atomic_load(&w.state), 1);
	w.data = 42;
	(void)ps_page_end_writeback(&p);
	pthread_join(t, NULL);
	ck_assert_int_eq(atomic_load(&w.state), 2);
	ck_assert_uint_eq(w.seen, 42);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
}
END_TEST

/* --- a reference and the lock at once ------------------------------------- */

START_TEST(try_get_and_lock_semantics)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(ps_page_try_get_and_lock(&p));
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert(!ps_page_trylock(&p)); /* held */
	ck_assert(!ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_DIRTY));
	/* The holder may be the last: its release frees the page. */
	ck_assert(ps_page_try_get_and_lock(&p));
	ck_assert(!ps_page_put(&p)); /* the owner lets go meanwhile */
	ck_assert(ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(raw(&p), 0); /* free, unlocked, a new lifetime */
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_get_and_lock_refusals)
{
	struct ps_page p = PS_PAGE_INIT(0);

	/* Free: nothing held, nothing changed. */
	ck_assert(!ps_page_try_get_and_lock(&p));
	ck_assert_uint_eq(raw(&p), 0);
	/* Frozen: the same. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(!ps_page_try_get_and_lock(&p));
	ck_assert(ps_page_is_frozen(&p));
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_LOCKED));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	/* At the limit - 1 it takes the last one; at the limit, nothing. */
	set_raw(&p, mkword(PS_PAGE_REFS_MAX - 1, 0, 0));
	ck_assert(ps_page_try_get_and_lock(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, PS_PAGE_LOCKED));
	ck_assert(!ps_page_unlock_and_put(&p));
	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert(!ps_page_try_get_and_lock(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	/* Locked at the limit: the lone try-get is refused too. */
	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, PS_PAGE_LOCKED));
	ck_assert(!ps_page_try_get_and_lock(&p));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, PS_PAGE_LOCKED));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* Misuse of the release: reported, no count written, the lock released. */
START_TEST(unlock_and_put_misuse)
{
	struct ps_page p;

	set_raw(&p, PS_PAGE_LOCKED); /* free, locked: a put after the free */
	ck_assert(!ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(hooks(), 1);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_uint_eq(raw(&p), 0);
	set_raw(&p, mkword(1, 1, PS_PAGE_LOCKED)); /* the pin's reference */
	ck_assert(!ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(hooks(), 2);
	ck_assert_uint_eq(raw(&p), mkword(1, 1, 0));
}
END_TEST

struct get_lock_waiter {
	struct ps_page *page;
	_Atomic(int) state; /* 0 started, 1 trying, 2 holds both */
};

static void *get_lock_waiter_fn(void *arg)
{
	struct get_lock_waiter *w = arg;

	atomic_store(&w->state, 1);
	if (ps_page_try_get_and_lock(w->page)) {
		atomic_store(&w->state, 2);
		(void)ps_page_unlock_and_put(w->page);
	}
	return NULL;
}

/*
 * Locked by another thread: the call holds its reference while it waits,
 * so the owner's put cannot free the page under it.
 */
START_TEST(try_get_and_lock_waits_holding)
{
	struct ps_page p = PS_PAGE_INIT(1);
	struct get_lock_waiter w = {.page = &p};
	pthread_t t;

	ck_assert(ps_page_trylock(&p));
	ck_assert_int_eq(pthread_create(&t, NULL, get_lock_waiter_fn, &w), 0);
	while (ps_page_refs(&p) != 2)
		sched_yield();
	for (int i = 0; i < 2000; i++)
		sched_yield();
	ck_assert_int_eq(atomic_load(&w.state), 1); /* still waiting */
	ck_assert(!ps_page_put(&p)); /* the owner's: not the last */
	ck_assert(ps_page_is_live(&p));
	ps_page_unlock(&p);
	pthread_join(t, NULL);
	ck_assert_int_eq(atomic_load(&w.state), 2);
	ck_assert_uint_eq(raw(&p), 0); /* the waiter's release freed it */
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * ps_page_try_get_lock_and_set(): the reference, LOCKED and the flags in one
 * step; @seen tells which flags were set before (the clean-to-dirty
 * transition); refused on a free, frozen or full page with nothing set.
 */
START_TEST(try_get_lock_and_set_semantics)
{
	struct ps_page p = PS_PAGE_INIT(1);
	uint64_t seen = 0;

	ck_assert(ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert(!(seen & PS_PAGE_DIRTY)); /* this call dirtied it */
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert(!ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_DIRTY));
	/* Dirty already: seen says so, nothing else changes. */
	ck_assert(ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert(seen & PS_PAGE_DIRTY);
	ck_assert(!ps_page_unlock_and_put(&p));
	/* Only user flags: LIVE, FROZEN and counts cannot be set through it. */
	ck_assert(ps_page_try_get_lock_and_set(
		&p, PS_PAGE_FROZEN | PS_PAGE_LIVE | PS_PAGE_PIN_ONE, &seen));
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert(!ps_page_unlock_and_put(&p));
	/* Free, frozen, at the limit: nothing held, nothing set. */
	ck_assert(ps_page_put(&p)); /* freed: DIRTY goes with the lifetime */
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert(!ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(!ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	set_raw(&p, mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert(!ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * Locked by another thread: ps_page_try_get_lock_and_set() refuses at once,
 * taking no reference and setting nothing, and says why (LOCKED in @seen).
 * A holder that cleans under the lock (write-back) never finds DIRTY set by
 * a would-be marker.
 */
START_TEST(try_get_lock_and_set_refuses_locked)
{
	struct ps_page p = PS_PAGE_INIT(1);
	uint64_t seen = 0;

	ck_assert(ps_page_trylock(&p));
	ck_assert(!ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert(seen & PS_PAGE_LOCKED);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_LOCKED));
	ps_page_unlock(&p);
	ck_assert(ps_page_try_get_lock_and_set(&p, PS_PAGE_DIRTY, &seen));
	ck_assert(!ps_page_unlock_and_put(&p));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_DIRTY));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- revive with a cache mode --------------------------------------------- */

static uint64_t cache_bits(enum ps_cache_mode m)
{
	return (uint64_t)m << PS_PAGE_CACHE_SHIFT;
}

START_TEST(revive_cache_free_page)
{
	struct ps_page p = PS_PAGE_INIT(0);
	unsigned int old = 99;

	ps_page_set_flags(&p, PS_PAGE_PRIVATE | cache_bits(PS_CACHE_UC));
	ck_assert(!ps_page_try_get(&p)); /* a meaningless unit, wiped below */
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WC, &old), 1);
	ck_assert_uint_eq(old, PS_CACHE_UC);
	ck_assert_uint_eq(raw(&p),
			  mkword(1, 0,
				 PS_PAGE_PRIVATE | cache_bits(PS_CACHE_WC)));
	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_WC);
	/* LIVE with the same mode: one more reference, the mode as it was. */
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WC, &old), 0);
	ck_assert_uint_eq(old, PS_CACHE_WC);
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WC, NULL), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 3);
	/* The plain revive takes any mode. */
	ck_assert_int_eq(ps_page_get_or_revive(&p), 0);
	ck_assert_uint_eq(ps_page_refs(&p), 4);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(revive_cache_refusals)
{
	struct ps_page p = PS_PAGE_INIT(1);
	uint64_t before;
	unsigned int old = 99;

	ps_page_set_flags(&p, cache_bits(PS_CACHE_WB));
	before = raw(&p);
	/* LIVE with another mode: one frame, one mode. */
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_UC, &old),
			 -EBUSY);
	ck_assert_uint_eq(old, 99); /* untouched on error */
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_NR, &old),
			 -EINVAL);
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, (enum ps_cache_mode)7,
						     &old),
			 -EINVAL);
	ck_assert_uint_eq(raw(&p), before);
	/* Frozen: -EBUSY, whatever the mode. */
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WB, &old),
			 -EBUSY);
	ck_assert_int_eq(ps_page_get_or_revive(&p), -EBUSY);
	/* At the reference limit: -EOVERFLOW. */
	ck_assert_int_eq(ps_page_unfreeze(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WB, &old),
			 -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	/* Free and poisoned: never handed out again, whatever the mode. */
	set_raw(&p, PS_PAGE_POISONED | cache_bits(PS_CACHE_WC));
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WC, &old),
			 -EHWPOISON);
	ck_assert_int_eq(ps_page_get_or_revive_cache(&p, PS_CACHE_WB, &old),
			 -EHWPOISON);
	ck_assert_uint_eq(raw(&p), PS_PAGE_POISONED | cache_bits(PS_CACHE_WC));
	ck_assert_uint_eq(old, 99);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- get or freeze (a new owner that may give the page back) -------------- */

/* A free page is frozen with the mode asked for, out of every try's reach;
 * the owner keeps it (unfreeze with its references) or gives it back free
 * as it was (unfreeze to 0 with the old mode). */
START_TEST(get_or_freeze_free_page)
{
	struct ps_page p = PS_PAGE_INIT(0);
	unsigned int old = 99;

	ps_page_set_flags(&p, PS_PAGE_PRIVATE | cache_bits(PS_CACHE_UC));
	ck_assert(!ps_page_try_get(&p)); /* a meaningless unit, wiped below */
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_WC, &old), 1);
	ck_assert_uint_eq(old, PS_CACHE_UC);
	ck_assert_uint_eq(raw(&p), PS_PAGE_FROZEN | PS_PAGE_PRIVATE |
					   cache_bits(PS_CACHE_WC));
	/* Nobody else takes it, changes its mode or freezes it. */
	ck_assert(!ps_page_try_get(&p));
	ck_assert(!ps_page_try_pin(&p));
	ck_assert_int_eq(ps_page_get_or_revive(&p), -EBUSY);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, NULL), -EBUSY);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WB, -1),
			 -EBUSY);
	ck_assert(!ps_page_freeze(&p, 0));
	ck_assert_uint_eq(ps_page_refs(&p), 0);
	/* Given back: free, the old mode, nothing left of the tries. */
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 0,
						       PS_PAGE_CACHE_MASK,
						       cache_bits(old)),
			 0);
	ck_assert_uint_eq(raw(&p), PS_PAGE_PRIVATE | cache_bits(PS_CACHE_UC));
	/* Kept: LIVE with the owner's reference, the mode it asked for. */
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, &old), 1);
	ck_assert_uint_eq(old, PS_CACHE_UC);
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p),
			  mkword(1, 0,
				 PS_PAGE_PRIVATE | cache_bits(PS_CACHE_UC)));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* A LIVE page gains a reference (with its own mode, or any), as a revive. */
START_TEST(get_or_freeze_live_page)
{
	struct ps_page p = PS_PAGE_INIT(1);
	unsigned int old = 99;

	ps_page_set_flags(&p, cache_bits(PS_CACHE_WT));
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_WT, &old), 0);
	ck_assert_uint_eq(old, PS_CACHE_WT);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, NULL), 0);
	ck_assert_uint_eq(raw(&p), mkword(3, 0, cache_bits(PS_CACHE_WT)));
	ck_assert(!ps_page_put(&p));
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(get_or_freeze_refusals)
{
	struct ps_page p = PS_PAGE_INIT(1);
	unsigned int old = 99;
	uint64_t before = raw(&p);

	/* LIVE with another mode; bad modes. */
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_UC, &old), -EBUSY);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_NR, &old), -EINVAL);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -2, &old), -EINVAL);
	ck_assert_uint_eq(raw(&p), before);
	ck_assert_uint_eq(old, 99);
	/* Frozen by another: -EBUSY, whatever the mode. */
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, &old), -EBUSY);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_WB, &old), -EBUSY);
	/* At the reference limit: -EOVERFLOW. */
	ck_assert_int_eq(ps_page_unfreeze(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, &old), -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	/* Free and poisoned: never handed out again. */
	set_raw(&p, PS_PAGE_POISONED);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, &old), -EHWPOISON);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_WC, &old),
			 -EHWPOISON);
	ck_assert_uint_eq(raw(&p), PS_PAGE_POISONED);
	ck_assert_uint_eq(old, 99);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A claim starts a new lifetime: the life flags (DIRTY, WRITE_PINNED) go
 * with the claim, as with a revival, and the unfreeze that keeps the page
 * (ps_page_unfreeze_claimed()) clears them again, whatever a stale setter
 * put on the frozen word meanwhile; the memory's flags stay. A page frozen
 * LIVE keeps its lifetime: ps_page_unfreeze() keeps DIRTY. A claim given
 * back is a free: no life flags either.
 */
START_TEST(get_or_freeze_starts_clean)
{
	const uint64_t life = PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED;
	struct ps_page p = PS_PAGE_INIT(0);
	unsigned int old = 99;

	ps_page_set_flags(&p, life | PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_page_get_or_freeze(&p, -1, &old), 1);
	ck_assert_uint_eq(raw(&p), PS_PAGE_FROZEN | PS_PAGE_PRIVATE);
	ps_page_set_flags(&p, PS_PAGE_DIRTY); /* a stale setter */
	ck_assert_int_eq(ps_page_unfreeze_claimed(&p, 1), 0);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, PS_PAGE_PRIVATE));
	/* Frozen LIVE and unfrozen: the same lifetime, DIRTY kept. */
	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	ck_assert_uint_eq(raw(&p),
			  mkword(1, 0, PS_PAGE_DIRTY | PS_PAGE_PRIVATE));
	ck_assert(ps_page_put(&p)); /* freed: a new lifetime next */
	ck_assert_uint_eq(raw(&p), PS_PAGE_PRIVATE);
	/* Given back: a free, no life flags, the old mode. */
	ps_page_set_flags(&p, life | cache_bits(PS_CACHE_UC));
	ck_assert_int_eq(ps_page_get_or_freeze(&p, PS_CACHE_WC, &old), 1);
	ck_assert_uint_eq(old, PS_CACHE_UC);
	ps_page_set_flags(&p, life); /* a stale setter */
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 0,
						       PS_PAGE_CACHE_MASK,
						       cache_bits(old)),
			 0);
	ck_assert_uint_eq(raw(&p), PS_PAGE_PRIVATE | cache_bits(PS_CACHE_UC));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- unfreeze with flag changes ------------------------------------------- */

START_TEST(unfreeze_change_flags_is_one_step)
{
	struct ps_page p = PS_PAGE_INIT(3);

	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(ps_page_freeze(&p, 3));
	ck_assert_int_eq(ps_page_unfreeze_change_flags(
				 &p, 2, PS_PAGE_DIRTY,
				 PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE),
			 0);
	ck_assert_uint_eq(raw(&p),
			  mkword(2, 0, PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE));
	/* To zero references: a free page with the new flags. */
	ck_assert(ps_page_freeze(&p, 2));
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 0, PS_PAGE_PRIVATE,
						       0),
			 0);
	ck_assert_uint_eq(raw(&p), PS_PAGE_INACCESSIBLE);
	ck_assert(!ps_page_is_live(&p));
	/* Clear first, then set: a multi-bit field changes in place. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ps_page_set_flags(&p, cache_bits(PS_CACHE_UC));
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 1,
						       PS_PAGE_CACHE_MASK,
						       cache_bits(PS_CACHE_WT)),
			 0);
	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_WT);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(unfreeze_change_flags_refusals)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t frozen;

	/* Not frozen: misuse, reported, nothing changes (flags neither). */
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 2, 0,
						       PS_PAGE_PRIVATE),
			 -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_NOT_FROZEN);
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
	ck_assert(ps_page_freeze(&p, 2));
	frozen = raw(&p);
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, PS_PAGE_REFS_MAX + 1,
						       0, PS_PAGE_PRIVATE),
			 -EOVERFLOW);
	ck_assert_uint_eq(raw(&p), frozen);
	/* Only user flags: FROZEN, LIVE and counts in @set are ignored. */
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, 0, PS_PAGE_LIVE,
						       PS_PAGE_FROZEN |
							       PS_PAGE_LIVE |
							       PS_PAGE_PIN_ONE |
							       PS_PAGE_REF_ONE),
			 0);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_int_eq(ps_page_unfreeze_change_flags(&p, PS_PAGE_REFS_MAX, 0,
						       0),
			 -EINVAL); /* free, not frozen */
	ck_assert_uint_eq(hooks(), 2);
}
END_TEST

/* --- pin and set a flag in one step --------------------------------------- */

START_TEST(try_pin_and_set_flags_semantics)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert(ps_page_try_pin_and_set_flags(&p, 1, 0,
						PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(2, 1, PS_PAGE_WRITE_PINNED));
	ck_assert(ps_page_word_pinned_for_write(raw(&p)));
	ck_assert(ps_page_try_pin_and_set_flags(&p, 3, PS_PAGE_PRIVATE, 0));
	ck_assert_uint_eq(raw(&p), mkword(5, 4, PS_PAGE_WRITE_PINNED));
	/* A rejected flag: nothing taken, nothing set. */
	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 1, PS_PAGE_PRIVATE,
						 PS_PAGE_DIRTY));
	ck_assert_uint_eq(raw(&p),
			  mkword(5, 4, PS_PAGE_WRITE_PINNED | PS_PAGE_PRIVATE));
	/* Only user flags are set: no count, FROZEN or LIVE sneaks in. */
	ck_assert(ps_page_try_pin_and_set_flags(
		&p, 1, 0, PS_PAGE_FROZEN | PS_PAGE_REF_ONE | PS_PAGE_DIRTY));
	ck_assert_uint_eq(raw(&p),
			  mkword(6, 5,
				 PS_PAGE_WRITE_PINNED | PS_PAGE_PRIVATE |
					 PS_PAGE_DIRTY));
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 0, 0, PS_PAGE_WRITEBACK));
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_WRITEBACK));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(try_pin_and_set_flags_boundaries)
{
	struct ps_page p = PS_PAGE_INIT(0);

	/* Free: fails and sets nothing. */
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 1, 0,
						 PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), 0);
	/* Frozen: likewise. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 1, 0,
						 PS_PAGE_WRITE_PINNED));
	ck_assert(!ps_page_test_flags(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_int_eq(ps_page_unfreeze(&p, 1), 0);
	/* At the pin limit: limit-1 -> limit works, then refused. */
	ck_assert_int_eq(ps_page_pin_many(&p, PS_PAGE_PINS_MAX - 1), 0);
	ck_assert(ps_page_try_pin_and_set_flags(&p, 1, 0, 0));
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 1, 0,
						 PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p),
			  mkword(PS_PAGE_PINS_MAX + 1, PS_PAGE_PINS_MAX, 0));
	/* At the reference limit. */
	ck_assert_int_eq(ps_page_init(&p, PS_PAGE_REFS_MAX), 0);
	ck_assert(!ps_page_try_pin_and_set_flags(&p, 1, 0,
						 PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(PS_PAGE_REFS_MAX, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- clear a flag only while unpinned ------------------------------------- */

START_TEST(clear_flag_if_unpinned_semantics)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert(ps_page_try_pin_and_set_flags(&p, 1, 0,
						PS_PAGE_WRITE_PINNED));
	/* Pinned: the flag stays. */
	ck_assert(!ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(2, 1, PS_PAGE_WRITE_PINNED));
	ck_assert(!ps_page_unpin(&p));
	/* Unpinned: the stale hint goes; the decoder never trusted it. */
	ck_assert(!ps_page_word_pinned_for_write(raw(&p)));
	ck_assert(ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	/* Already clear: false, nothing written. */
	ck_assert(!ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	/* Other user flags work alike; LIVE and FROZEN are not user flags. */
	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert(ps_page_clear_flag_if_unpinned(&p, PS_PAGE_DIRTY));
	ck_assert(!ps_page_clear_flag_if_unpinned(&p, PS_PAGE_LIVE));
	ck_assert(ps_page_is_live(&p));
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(!ps_page_clear_flag_if_unpinned(&p, PS_PAGE_FROZEN));
	ck_assert(ps_page_is_frozen(&p));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(clear_flag_if_unpinned_free_and_frozen)
{
	struct ps_page p = PS_PAGE_INIT(1);

	/* A frozen page has no pins: the flag clears. */
	ps_page_set_flags(&p, PS_PAGE_WRITE_PINNED);
	ck_assert(ps_page_freeze(&p, 1));
	ck_assert(ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_int_eq(ps_page_unfreeze(&p, 0), 0);
	/* A free page neither. */
	ps_page_set_flags(&p, PS_PAGE_WRITE_PINNED);
	ck_assert(ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), 0);
	/* The last pin of 2^22 - 1 keeps it. */
	ck_assert_int_eq(ps_page_init(&p, 1), 0);
	ck_assert(ps_page_try_pin_and_set_flags(&p, PS_PAGE_PINS_MAX, 0,
						PS_PAGE_WRITE_PINNED));
	ck_assert(!ps_page_unpin_many(&p, PS_PAGE_PINS_MAX - 1));
	ck_assert(!ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert(!ps_page_unpin(&p));
	ck_assert(ps_page_clear_flag_if_unpinned(&p, PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- set flags unless frozen ---------------------------------------------- */

START_TEST(set_flags_unless_frozen_semantics)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t frozen;

	ck_assert(ps_page_set_flags_unless_frozen(&p, PS_PAGE_INACCESSIBLE));
	ck_assert(ps_page_set_flags_unless_frozen(&p, PS_PAGE_INACCESSIBLE));
	ck_assert_uint_eq(raw(&p), mkword(2, 0, PS_PAGE_INACCESSIBLE));
	/* Frozen: refused, nothing set. */
	ck_assert(ps_page_freeze(&p, 2));
	frozen = raw(&p);
	ck_assert(!ps_page_set_flags_unless_frozen(&p, PS_PAGE_DIRTY));
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert_int_eq(ps_page_unfreeze(&p, 0), 0);
	/* Free: allowed (flags stay writable on a free page). */
	ck_assert(ps_page_set_flags_unless_frozen(&p, PS_PAGE_DIRTY));
	ck_assert_uint_eq(raw(&p), PS_PAGE_INACCESSIBLE | PS_PAGE_DIRTY);
	/* Only user flags: it cannot set FROZEN, LIVE or a count. */
	ck_assert(ps_page_set_flags_unless_frozen(&p, PS_PAGE_FROZEN |
							      PS_PAGE_LIVE |
							      PS_PAGE_REF_ONE));
	ck_assert_uint_eq(raw(&p), PS_PAGE_INACCESSIBLE | PS_PAGE_DIRTY);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- cache mode of a free page -------------------------------------------- */

START_TEST(set_cache_if_free_semantics)
{
	struct ps_page p = PS_PAGE_INIT(0);

	ps_page_set_flags(&p, PS_PAGE_DIRTY);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WC, -1), 0);
	ck_assert_uint_eq(raw(&p), PS_PAGE_DIRTY | cache_bits(PS_CACHE_WC));
	/* With @expect: only from that mode. */
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_UC,
						   PS_CACHE_WB),
			 -ESTALE);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_UC,
						   PS_CACHE_WC),
			 0);
	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_UC);
	/* The next plain revival keeps the mode. */
	ck_assert_int_eq(ps_page_get_or_revive(&p), 1);
	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_UC);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

START_TEST(set_cache_if_free_refusals)
{
	struct ps_page p = PS_PAGE_INIT(1);
	uint64_t w;

	/* LIVE: one mode while it has owners. */
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WC, -1),
			 -EBUSY);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WC,
						   PS_CACHE_WB),
			 -EBUSY);
	ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
	/* Frozen. */
	ck_assert(ps_page_freeze(&p, 1));
	w = raw(&p);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WC, -1),
			 -EBUSY);
	ck_assert_uint_eq(raw(&p), w);
	ck_assert_int_eq(ps_page_unfreeze(&p, 0), 0);
	/* Bad arguments. */
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_NR, -1),
			 -EINVAL);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WB,
						   PS_CACHE_NR),
			 -EINVAL);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WB, -2),
			 -EINVAL);
	/* Poisoned and free: quarantined, never changed. */
	ps_page_set_flags(&p, PS_PAGE_POISONED);
	ck_assert_int_eq(ps_page_set_cache_if_free(&p, PS_CACHE_WC, -1),
			 -EHWPOISON);
	ck_assert_uint_eq(raw(&p), PS_PAGE_POISONED);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* --- what the flags encode ------------------------------------------------ */

START_TEST(mode_and_state_accessors)
{
	struct ps_page p = PS_PAGE_INIT(1);
	static const char *const names[PS_CACHE_NR] = {"WB", "WC", "UC-",
						       "UC", "WT", "WP"};

	for (int m = 0; m < PS_CACHE_NR; m++) {
		ps_page_change_flags(&p, PS_PAGE_CACHE_MASK,
				     cache_bits((enum ps_cache_mode)m));
		ck_assert_int_eq(ps_page_cache_mode(&p), m);
		ck_assert_str_eq(ps_page_cache_mode_name((enum ps_cache_mode)m),
				 names[m]);
	}
	ck_assert_str_eq(ps_page_cache_mode_name(PS_CACHE_NR), "?");
	ck_assert_str_eq(ps_page_cache_mode_name((enum ps_cache_mode)(-1)),
			 "?");
	ck_assert_int_eq(ps_page_enc_state(&p), PS_ENC_SHARED);
	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_page_enc_state(&p), PS_ENC_PRIVATE);
	/* Pinned for write: the flag and a pin, on a LIVE word. */
	ck_assert(!ps_page_word_pinned_for_write(mkword(1, 0,
							PS_PAGE_WRITE_PINNED)));
	ck_assert(!ps_page_word_pinned_for_write(mkword(2, 1, 0)));
	ck_assert(ps_page_word_pinned_for_write(mkword(2, 1,
						       PS_PAGE_WRITE_PINNED)));
	ck_assert(!ps_page_word_pinned_for_write(PS_PAGE_FROZEN |
						 PS_PAGE_PIN_ONE |
						 PS_PAGE_WRITE_PINNED));
}
END_TEST

/* --- regressions ---------------------------------------------------------- */

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
	ck_assert_uint_eq(raw(&p),
			  mkword(PS_PAGE_REFS_MAX + 1, 0, PS_PAGE_DIRTY));
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

/* --- misuse never disturbs correct callers (issue 15, item 5) ------------- */

/*
 * regress_misuse_on_frozen_leaves_nothing: a get or pin on a frozen page
 * (misuse: the freezer owns every reference) left its unit in the word until
 * unfreeze, so the freezer read the page as pinned (ps_page_is_pinned())
 * although nobody could hold a pin; a put or unpin left its borrow there.
 * Each misuse must leave the word exactly as it was, at once.
 */
START_TEST(regress_misuse_on_frozen_leaves_nothing)
{
	struct ps_page p = PS_PAGE_INIT(2);
	uint64_t frozen;

	ck_assert(ps_page_freeze(&p, 2));
	frozen = raw(&p);
	ck_assert_int_eq(ps_page_pin(&p), -EINVAL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_FROZEN);
	ck_assert(!ps_page_is_pinned(&p));
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert_int_eq(ps_page_get(&p), -EINVAL);
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert(!ps_page_unpin(&p));
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert(!ps_page_put(&p));
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert(!ps_page_unpin_many(&p, 3));
	ck_assert_uint_eq(raw(&p), frozen);
	ck_assert_uint_eq(hooks(), 5);
	ck_assert_int_eq(ps_page_unfreeze(&p, 2), 0);
	ck_assert_uint_eq(raw(&p), mkword(2, 0, 0));
}
END_TEST

/*
 * The error hook as a failpoint: it parks the misusing thread inside its
 * report until a partner thread has done its (correct) operation on the same
 * page, so the partner runs exactly in the misuser's window, between the
 * misuse reaching the word and the misuse returning.
 */
struct window {
	struct ps_page *page;
	_Atomic(int) phase; /* 0 idle, 1 misuser parked, 2 partner done */
	_Atomic(int) partner_rc;
	_Atomic(unsigned) partner_reports;
	_Atomic(int) partner_op; /* 0 revive, 1 put, 2 unpin */
};

static struct window *the_window;
static _Thread_local bool in_partner;

static void window_hook(const struct ps_page *page, enum ps_page_error error,
			uint64_t word)
{
	struct window *w = the_window;

	counting_hook(page, error, word);
	if (in_partner) {
		atomic_fetch_add(&w->partner_reports, 1);
		return;
	}
	atomic_store(&w->phase, 1);
	while (atomic_load(&w->phase) != 2)
		sched_yield();
}

static void *window_partner(void *arg)
{
	struct window *w = arg;
	int rc;

	in_partner = true;
	while (atomic_load(&w->phase) != 1)
		sched_yield();
	if (atomic_load(&w->partner_op) == 0)
		rc = ps_page_get_or_revive(w->page);
	else if (atomic_load(&w->partner_op) == 1)
		rc = ps_page_put(w->page);
	else
		rc = ps_page_unpin(w->page);
	atomic_store(&w->partner_rc, rc);
	atomic_store(&w->phase, 2);
	return NULL;
}

static void window_start(struct window *w, struct ps_page *p, int op,
			 pthread_t *t)
{
	memset(w, 0, sizeof(*w));
	w->page = p;
	atomic_store(&w->partner_op, op);
	the_window = w;
	ps_page_set_error_hook(window_hook);
	ck_assert_int_eq(pthread_create(t, NULL, window_partner, w), 0);
}

/*
 * A get on a free page (use after free) while the page's owner maps it again
 * (get_or_revive) in the misuser's window: the revived page keeps exactly the
 * reviver's one reference. Taking the misuser's unit back after the revival
 * would leave a LIVE page with no reference, whose owner's put would then be
 * refused and blamed.
 */
START_TEST(misuse_window_get_vs_revive)
{
	struct ps_page p = PS_PAGE_INIT(0);
	struct window w;
	pthread_t t;

	for (int pin = 0; pin < 2; pin++) {
		ck_assert_int_eq(ps_page_init(&p, 0), 0);
		window_start(&w, &p, 0, &t);
		ck_assert_int_eq(pin ? ps_page_pin(&p) : ps_page_get(&p),
				 -EINVAL);
		pthread_join(t, NULL);
		ck_assert_int_eq(last_error(), PS_PAGE_ERR_GET_ZERO);
		ck_assert_int_eq(atomic_load(&w.partner_rc), 1); /* revived */
		ck_assert_uint_eq(raw(&p), mkword(1, 0, 0));
		ck_assert(!ps_page_is_pinned(&p));
		ck_assert(ps_page_put(&p)); /* the owner frees: not blamed */
		ck_assert_uint_eq(atomic_load(&w.partner_reports), 0);
	}
	ck_assert_uint_eq(hooks(), 2);
}
END_TEST

/*
 * A put of more than is held, reported while the only holder drops its
 * reference: the holder's put is the last one and frees the page, unblamed;
 * the misuse changed nothing.
 */
START_TEST(misuse_window_overput_vs_put)
{
	struct ps_page p = PS_PAGE_INIT(1);
	struct window w;
	pthread_t t;

	window_start(&w, &p, 1, &t);
	ck_assert(!ps_page_put_many(&p, 2));
	pthread_join(t, NULL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_int_eq(atomic_load(&w.partner_rc), 1); /* freed it */
	ck_assert_uint_eq(atomic_load(&w.partner_reports), 0);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 1);
}
END_TEST

/* --- single releases: one fetch-and-sub, misuse repaired after the fact --- */

/* The refs and pins fields of a word, whatever LIVE says. */
static uint64_t refs_field(uint64_t w)
{
	return w >> PS_PAGE_REFS_SHIFT;
}

static uint64_t pins_field(uint64_t w)
{
	return (w & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT;
}

/* A LIVE word whose counts are @refs and @pins as the fields hold them. */
static uint64_t live_word(uint64_t refs, uint64_t pins, uint64_t flags)
{
	return ((refs << PS_PAGE_REFS_SHIFT) + (pins << PS_PAGE_PINS_SHIFT)) |
	       flags | PS_PAGE_LIVE;
}

/*
 * Each misuse a single put or unpin can only see after its fetch-and-sub:
 * a put of a pin's reference, a put or unpin on the word of a last put in
 * flight (LIVE, no counts), an unpin with no pin. The misuser repairs with
 * the inverse add before its report: the hook already sees the old word, and
 * the word ends exactly as it was, flags included.
 */
START_TEST(release_misuse_repaired)
{
	static const struct {
		uint64_t refs, pins;
		bool pin;
		int error;
	} cases[] = {
		{1, 1, false,
		 PS_PAGE_ERR_REF_UNDERFLOW}, /* the pin's reference */
		{3, 3, false, PS_PAGE_ERR_REF_UNDERFLOW}, /* all are pins' */
		{0, 0, false,
		 PS_PAGE_ERR_REF_UNDERFLOW}, /* last put in flight */
		{0, 0, true, PS_PAGE_ERR_PIN_UNDERFLOW},
		{2, 0, true, PS_PAGE_ERR_PIN_UNDERFLOW}, /* no pin */
		{PS_PAGE_REFS_MAX, 0, true, PS_PAGE_ERR_PIN_UNDERFLOW},
		{PS_PAGE_PINS_MAX, PS_PAGE_PINS_MAX, false,
		 PS_PAGE_ERR_REF_UNDERFLOW},
	};
	struct ps_page p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t w = live_word(cases[i].refs, cases[i].pins,
				       PS_PAGE_DIRTY | PS_PAGE_LOCKED);
		unsigned before = hooks();

		set_raw(&p, w);
		ck_assert(!(cases[i].pin ? ps_page_unpin(&p)
					 : ps_page_put(&p)));
		ck_assert_uint_eq(hooks(), before + 1);
		ck_assert_int_eq(last_error(), cases[i].error);
		ck_assert_uint_eq(atomic_load(&hook_last_word), w);
		ck_assert_uint_eq(raw(&p), w);
	}
}
END_TEST

/*
 * The instant between a last put's fetch-and-sub and its free: a get by a
 * holder is ordered before that put (as a try-get is), so it succeeds, the
 * free fails, and the getter's put frees the page.
 */
START_TEST(get_during_last_put_wins)
{
	struct ps_page p;

	for (int pin = 0; pin < 2; pin++) {
		set_raw(&p, PS_PAGE_LIVE);
		ck_assert_int_eq(pin ? ps_page_pin(&p) : ps_page_get(&p), 0);
		ck_assert(!ps__page_claim(&p));
		ck_assert_uint_eq(ps_page_refs(&p), 1);
		ck_assert(pin ? ps_page_unpin(&p) : ps_page_put(&p));
		ck_assert_uint_eq(raw(&p), 0);
	}
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A thread whose own update meets a misused release's borrow still in flight
 * (here built by hand: the misuser has not repaired yet) cannot know the
 * exact count, so it saturates the word: reported once, never freed again,
 * read as pinned, every increment refused, every release a no-op, and it
 * stays saturated however many updates follow.
 */
START_TEST(borrow_in_flight_saturates)
{
	struct ps_page p;
	/* refs 0 < pins 1: a put took the only pin's reference. */
	const uint64_t borrowed = live_word(0, 1, PS_PAGE_PRIVATE);
	int which;

	for (which = 0; which < 5; which++) {
		unsigned before = hooks();
		uint64_t w;

		set_raw(&p, borrowed);
		switch (which) {
		case 0:
			ck_assert(!ps_page_unpin(&p));
			break;
		case 1:
			ck_assert(!ps_page_put(&p));
			break;
		case 2:
			ck_assert_int_eq(ps_page_get(&p), -EOVERFLOW);
			break;
		case 3:
			ck_assert_int_eq(ps_page_pin(&p), -EOVERFLOW);
			break;
		default:
			ck_assert(!ps_page_try_get(&p));
			break;
		}
		ck_assert_uint_eq(hooks(), before + 1);
		ck_assert_int_eq(last_error(), PS_PAGE_ERR_SATURATED);
		w = raw(&p);
		ck_assert_uint_eq(refs_field(w), PS_PAGE_REFS_SAT);
		ck_assert_uint_eq(pins_field(w), PS_PAGE_PINS_MAX);
		ck_assert_uint_eq(ps_page_flags(&p),
				  PS_PAGE_PRIVATE | PS_PAGE_LIVE);
		ck_assert(ps_page_is_pinned(&p));
	}
	/* Saturated: nothing frees it, nothing is reported again. */
	for (int i = 0; i < 100000; i++) {
		ck_assert(!ps_page_put(&p));
		ck_assert(!ps_page_unpin(&p));
		ck_assert_int_eq(ps_page_get(&p), -EOVERFLOW);
		ck_assert(!ps_page_try_get(&p));
	}
	ck_assert(!ps_page_put_many(&p, PS_PAGE_REFS_MAX));
	ck_assert(!ps_page_unpin_many(&p, PS_PAGE_PINS_MAX));
	ck_assert(!ps_page_freeze(&p, PS_PAGE_REFS_SAT));
	ck_assert(!ps_page_try_pin(&p));
	ck_assert_uint_eq(hooks(), 5);
	ck_assert(ps_page_is_pinned(&p));
	ck_assert_uint_ge(refs_field(raw(&p)), PS_PAGE_REFS_MAX + 1);
	ck_assert_uint_ge(pins_field(raw(&p)), 1);
}
END_TEST

struct repairer {
	struct ps_page *page;
	uint64_t delta;
};

static void *repair_later(void *arg)
{
	struct repairer *r = arg;

	for (int i = 0; i < 50; i++)
		sched_yield();
	atomic_fetch_add(&r->page->word, r->delta);
	return NULL;
}

/*
 * The last put's free meets a misused put on the dying word, not yet
 * repaired (refs -1): it waits for the repair and then frees, exactly once.
 * Before the wait, it gave up, and the page stayed LIVE with no reference.
 */
START_TEST(last_put_waits_for_repair)
{
	struct ps_page p;
	struct repairer r = {&p, PS_PAGE_REF_ONE};
	pthread_t t;

	/* What the last put left (LIVE, no counts) minus a misused put. */
	set_raw(&p, (PS_PAGE_LIVE | PS_PAGE_DIRTY) - PS_PAGE_REF_ONE);
	ck_assert_int_eq(pthread_create(&t, NULL, repair_later, &r), 0);
	/* As ps_page_put() calls it after its fetch-and-sub saw refs 1. */
	ck_assert(ps_page_release_slow(&p, live_word(1, 0, PS_PAGE_DIRTY),
				       false));
	pthread_join(t, NULL);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A pin holder's unpin_many (a compare-and-swap release, M3) meets another
 * thread's put of a pin's reference not yet repaired (refs 1 < pins 2, built
 * by hand; a thread repairs it shortly). No guard bit is set there, but the
 * word is not exact: the release must wait for the repair, as it does for a
 * guard bit, and then release. Before the fix it was refused as underflow:
 * the correct caller was blamed and its pin stayed counted for good.
 */
START_TEST(cas_release_waits_for_pin_ref_repair)
{
	struct ps_page p;
	struct repairer r = {&p, PS_PAGE_REF_ONE};
	pthread_t t;

	set_raw(&p, live_word(1, 2, PS_PAGE_DIRTY));
	ck_assert_int_eq(pthread_create(&t, NULL, repair_later, &r), 0);
	ck_assert(!ps_page_unpin_many(&p, 1));
	pthread_join(t, NULL);
	ck_assert_uint_eq(hooks(), 0);
	ck_assert_uint_eq(raw(&p), live_word(1, 1, PS_PAGE_DIRTY));
}
END_TEST

/*
 * The word of a last put in flight (LIVE, no counts) is not a page with zero
 * references to freeze: ps_page_freeze(0) must fail there, so that the last
 * put's free happens and returns true. Before the fix the freeze took it:
 * the put's free failed, no release returned true, and the frame was frozen
 * with nobody knowing it had to free it.
 */
START_TEST(freeze_zero_spares_the_dying_word)
{
	struct ps_page p;

	set_raw(&p, PS_PAGE_LIVE | PS_PAGE_DIRTY);
	ck_assert(!ps_page_freeze(&p, 0));
	ck_assert_uint_eq(raw(&p), PS_PAGE_LIVE | PS_PAGE_DIRTY);
	ck_assert(ps__page_claim(&p)); /* the last put's free */
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A put of the only pin's reference, reported while the pin's holder unpins:
 * the misuse was repaired before the report, so the unpin is the last
 * release and frees the page, unblamed.
 */
START_TEST(misuse_window_pin_ref_put_vs_unpin)
{
	struct ps_page p = PS_PAGE_INIT(1);
	struct window w;
	pthread_t t;

	ck_assert_int_eq(ps_page_pin(&p), 0);
	ck_assert(!ps_page_put(&p)); /* the mapping's reference goes */
	window_start(&w, &p, 2, &t);
	ck_assert(!ps_page_put(&p)); /* misuse: the pin's reference */
	pthread_join(t, NULL);
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_REF_UNDERFLOW);
	ck_assert_int_eq(atomic_load(&w.partner_rc), 1); /* freed it */
	ck_assert_uint_eq(atomic_load(&w.partner_reports), 0);
	ck_assert_uint_eq(raw(&p), 0);
	ck_assert_uint_eq(hooks(), 1);
}
END_TEST

/*
 * The compare-and-swap increments on a word whose put took a pin's reference
 * and is not repaired yet (refs 1 < pins 2, built by hand: two pins held,
 * true count refs 2). Such an increment must not count as done (M5): its
 * references would make the word look exact while it counts one too few, and
 * the holders' releases would then free the page while the taker holds it.
 * Each op here takes k references if it succeeds; the two pin holders unpin,
 * the taker puts all but one: no release may free the page.
 */
static int cas_inc_try_get_many(struct ps_page *p)
{
	return ps_page_try_get_many(p, 1) ? 1 : 0;
}

static int cas_inc_try_get_masked(struct ps_page *p)
{
	return ps_page_try_get_masked(p, 2, PS_PAGE_POISONED) ? 2 : 0;
}

static int cas_inc_get_or_revive(struct ps_page *p)
{
	return ps_page_get_or_revive(p) == 0 ? 1 : 0;
}

static int cas_inc_get_or_revive_cache(struct ps_page *p)
{
	return ps_page_get_or_revive_cache(p, PS_CACHE_WB, NULL) == 0 ? 1 : 0;
}

static int cas_inc_get_or_freeze(struct ps_page *p)
{
	return ps_page_get_or_freeze(p, -1, NULL) == 0 ? 1 : 0;
}

static int cas_inc_get_many(struct ps_page *p)
{
	return ps_page_get_many(p, 2) == 0 ? 2 : 0; /* by a pin's holder */
}

static int cas_inc_try_get_and_lock(struct ps_page *p)
{
	if (!ps_page_try_get_and_lock(p))
		return 0;
	ps_page_unlock(p);
	return 1;
}

static int cas_inc_try_get_lock_and_set(struct ps_page *p)
{
	uint64_t seen;

	if (!ps_page_try_get_lock_and_set(p, PS_PAGE_DIRTY, &seen))
		return 0;
	ps_page_unlock(p);
	return 1;
}

START_TEST(cas_increment_on_borrow_not_counted)
{
	static int (*const ops[])(struct ps_page *) = {
		cas_inc_try_get_many,	  cas_inc_try_get_masked,
		cas_inc_get_or_revive,	  cas_inc_get_or_revive_cache,
		cas_inc_get_or_freeze,	  cas_inc_get_many,
		cas_inc_try_get_and_lock, cas_inc_try_get_lock_and_set,
	};
	struct ps_page p;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		int k;
		bool freed = false;

		set_raw(&p, live_word(1, 2, 0));
		k = ops[i](&p);
		freed |= ps_page_unpin(&p); /* the pins' holders */
		freed |= ps_page_unpin(&p);
		for (int j = 1; j < k; j++)
			freed |= ps_page_put(&p); /* the taker keeps one */
		/* (The misuser's repair has not landed yet.) */
		ck_assert_msg(!freed, "op %zu: freed while held (took %d)", i,
			      k);
		atomic_fetch_add(&p.word, PS_PAGE_REF_ONE); /* the repair */
		ck_assert(ps_page_is_live(&p));
		ck_assert_uint_ge(ps_page_refs(&p), k ? 1 : 0);
	}
}
END_TEST

/* --- huge frames: split and merge ---------------------------------------- */

#define NSUB 8

static uint64_t cache_field(enum ps_cache_mode m)
{
	return (uint64_t)m << PS_PAGE_CACHE_SHIFT;
}

/*
 * The split's transition table: each whole word, LIVE or free, with every
 * flag a part inherits, and what every part and the huge word hold after.
 */
START_TEST(split_transitions)
{
	static const struct {
		uint64_t refs, pins, flags;
	} cases[] = {
		{0, 0, 0},
		{0, 0, PS_PAGE_POISONED | PS_PAGE_PRIVATE},
		{1, 0, 0},
		{1, 1, PS_PAGE_WRITE_PINNED},
		{3, 2,
		 PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED | PS_PAGE_PRIVATE |
			 PS_PAGE_INACCESSIBLE},
		{PS_PAGE_REFS_MAX, PS_PAGE_PINS_MAX, PS_PAGE_DIRTY},
	};
	struct ps_page huge, sub[NSUB];

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const uint64_t flags = cases[c].flags |
				       cache_field(PS_CACHE_WC);
		const uint64_t w = cases[c].refs ? mkword(cases[c].refs,
							  cases[c].pins, flags)
						 : flags | PS_PAGE_DIRTY;
		size_t where = 99;

		memset(sub, 0, sizeof(sub));
		set_raw(&huge, w);
		ck_assert_int_eq(ps_page_huge_state(&huge), PS_PAGE_HUGE_WHOLE);
		ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, &where), 0);
		ck_assert_uint_eq(where, NSUB);
		ck_assert_int_eq(ps_page_huge_state(&huge), PS_PAGE_HUGE_SPLIT);
		/* The huge word: SPLIT, not LIVE, memory flags kept. */
		ck_assert_uint_eq(raw(&huge),
				  PS_PAGE_SPLIT |
					  (flags & ~PS_PAGE_LIFE_FLAGS));
		for (int i = 0; i < NSUB; i++) {
			/* A free frame's DIRTY ended with its last life. */
			ck_assert_uint_eq(raw(&sub[i]),
					  cases[c].refs ? w : flags);
			ck_assert_uint_eq(ps_page_refs(&sub[i]), cases[c].refs);
			ck_assert_uint_eq(ps_page_pins(&sub[i]), cases[c].pins);
		}
		ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL),
				 -EALREADY);
	}
	ck_assert_int_eq(ps_page_split(&huge, sub, 0, NULL), -EINVAL);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * After SPLIT the huge word counts nothing: gets and pins fail at once with
 * -ESTALE (the fetch-and-add finds SPLIT after the fact and takes its unit
 * back), tries fail, a revival or freeze fails; none of these is reported.
 * A release on it is misuse (its references are on the parts now):
 * reported as PS_PAGE_ERR_SPLIT and undone.
 */
START_TEST(split_word_refuses_counts)
{
	struct ps_page huge = PS_PAGE_INIT(2), sub[NSUB];
	uint64_t w;

	memset(sub, 0, sizeof(sub));
	ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL), 0);
	w = raw(&huge);
	ck_assert_int_eq(ps_page_get(&huge), -ESTALE);
	ck_assert_int_eq(ps_page_pin(&huge), -ESTALE);
	ck_assert_int_eq(ps_page_get_many(&huge, 3), -ESTALE);
	ck_assert_int_eq(ps_page_pin_many(&huge, 3), -ESTALE);
	ck_assert_uint_eq(raw(&huge), w);
	ck_assert(!ps_page_try_pin(&huge));
	ck_assert(!ps_page_try_get_many(&huge, 2));
	ck_assert(!ps_page_freeze(&huge, 0));
	ck_assert_int_eq(ps_page_get_or_revive(&huge), -ESTALE);
	ck_assert_int_eq(ps_page_get_or_freeze(&huge, -1, NULL), -ESTALE);
	ck_assert_int_eq(ps_page_set_cache_if_free(&huge, PS_CACHE_UC, -1),
			 -EBUSY);
	ck_assert_uint_eq(raw(&huge), w);
	ck_assert(!ps_page_try_get(&huge)); /* its unit means nothing */
	ck_assert_uint_eq(ps_page_refs(&huge), 0);
	ck_assert(!ps_page_is_pinned(&huge));
	ck_assert_uint_eq(hooks(), 0);
	set_raw(&huge, w);
	ck_assert(!ps_page_put(&huge));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_SPLIT);
	ck_assert(!ps_page_unpin(&huge));
	ck_assert(!ps_page_put_many(&huge, 2));
	ck_assert_int_eq(last_error(), PS_PAGE_ERR_SPLIT);
	ck_assert_uint_eq(raw(&huge), w);
	ck_assert_int_eq(ps_page_unfreeze(&huge, 1), -EINVAL);
	ck_assert_uint_eq(raw(&huge), w);
	ck_assert_uint_eq(hooks(), 4);
	/* The parts hold the references, and their holders release there. */
	for (int i = 0; i < NSUB; i++) {
		ck_assert(!ps_page_put(&sub[i]));
		ck_assert(ps_page_put(&sub[i]));
	}
}
END_TEST

/*
 * A split refused changes nothing: a busy huge word (frozen, locked, under
 * write-back, a last put in flight), or a part that is not free (the parts
 * written before it are free again, the huge word is as it was).
 */
START_TEST(split_refusals)
{
	static const uint64_t busy[] = {
		PS_PAGE_FROZEN,
		PS_PAGE_LOCKED,
		PS_PAGE_WRITEBACK,
	};
	struct ps_page huge, sub[NSUB];
	uint64_t w;
	size_t where;

	memset(sub, 0, sizeof(sub));
	for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++) {
		w = busy[i] == PS_PAGE_FROZEN ? PS_PAGE_FROZEN
					      : mkword(2, 1, busy[i]);
		set_raw(&huge, w);
		ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, &where),
				 -EBUSY);
		ck_assert_uint_eq(where, NSUB);
		ck_assert_uint_eq(raw(&huge), w);
	}
	set_raw(&huge, PS_PAGE_LIVE); /* the dying word of a last put */
	ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL), -EBUSY);
	for (int bad = 0; bad < NSUB; bad += NSUB - 1) {
		w = mkword(3, 1, PS_PAGE_DIRTY | cache_field(PS_CACHE_UC));
		set_raw(&huge, w);
		memset(sub, 0, sizeof(sub));
		set_raw(&sub[bad], mkword(1, 0, 0));
		ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, &where),
				 -EBUSY);
		ck_assert_uint_eq(where, (size_t)bad);
		ck_assert_uint_eq(raw(&huge), w);
		for (int i = 0; i < NSUB; i++)
			if (i != bad)
				ck_assert(!ps_page_is_live(&sub[i]));
		ck_assert_uint_eq(raw(&sub[bad]), mkword(1, 0, 0));
	}
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A failed try-get on a free part leaves its unit there, where it means
 * nothing (the try never takes it back): the split's store replaces it, and
 * each part holds exactly the frame's counts (H2).
 */
START_TEST(split_replaces_a_failed_try_get_unit)
{
	struct ps_page huge = PS_PAGE_INIT(2), sub[NSUB];

	memset(sub, 0, sizeof(sub));
	ck_assert(!ps_page_try_get(&sub[3])); /* free: fails, unit left */
	ck_assert(!ps_page_try_get(&sub[NSUB - 1]));
	ck_assert_uint_ne(raw(&sub[3]), 0);
	ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL), 0);
	for (int i = 0; i < NSUB; i++) {
		ck_assert_uint_eq(raw(&sub[i]), mkword(2, 0, 0));
		ck_assert_uint_eq(ps_page_refs(&sub[i]), 2);
	}
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/* A sanitizer's shadow memory faults too: the count then says nothing. */
#if defined(__SANITIZE_ADDRESS__) || PS_TSAN
#define FAULTS_COUNTED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULTS_COUNTED 0
#endif
#endif
#ifndef FAULTS_COUNTED
#define FAULTS_COUNTED 1
#endif

/* Minor page faults of the calling thread so far. */
static long minor_faults(void)
{
	struct rusage u;

	ck_assert_int_eq(getrusage(RUSAGE_THREAD, &u), 0);
	return u.ru_minflt;
}

/*
 * Parts in memory mapped on first touch (as the space's frame arrays are):
 * a split takes one page fault per 4 KiB of parts, not two (a first read
 * would map the zero page, and the first store would fault again to copy
 * it), and writes the parts as from zeroed memory.
 */
START_TEST(split_faults_parts_in_once)
{
	enum { SPLITS = 64, PARTS = 512 };
	const size_t bytes = (size_t)SPLITS * PARTS * sizeof(struct ps_page);
	struct ps_page *parts = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ps_page huge[SPLITS];
	long before, faults;

	ck_assert_ptr_ne(parts, MAP_FAILED);
	/* Small pages, so that each 4 KiB of parts is its own fault. */
	(void)madvise(parts, bytes, MADV_NOHUGEPAGE);
	for (int k = 0; k < SPLITS; k++)
		ck_assert_int_eq(ps_page_init(&huge[k], 1), 0);
	before = minor_faults();
	for (int k = 0; k < SPLITS; k++)
		ck_assert_int_eq(ps_page_split(&huge[k], &parts[k * PARTS],
					       PARTS, NULL),
				 0);
	faults = minor_faults() - before;
	/* Two per split before; a little room for the checks' own pages. */
	if (FAULTS_COUNTED)
		ck_assert_int_le(faults, SPLITS + SPLITS / 4);
	for (int k = 0; k < SPLITS; k++)
		for (int i = 0; i < PARTS; i++)
			ck_assert_uint_eq(ps_page_refs(&parts[k * PARTS + i]),
					  1);
	ck_assert_int_eq(munmap(parts, bytes), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * Merge is the inverse: uniform parts (same counts, mode and encryption)
 * make the word whole again with their counts and the union of DIRTY and
 * WRITE_PINNED, and the parts free. Each way the parts can differ is refused
 * with its reason and index, and changes nothing.
 */
START_TEST(merge_transitions)
{
	struct ps_page huge, sub[NSUB], before[NSUB];
	struct ps_page_merge_refusal why;
	uint64_t hw;
	static const struct {
		int index;
		uint64_t word;
		enum ps_page_merge_reason reason;
	} differs[] = {
		{3, 0, PS_PAGE_MERGE_REFS},	   /* free among LIVE parts */
		{NSUB - 1, 0, PS_PAGE_MERGE_REFS}, /* 3 refs, not 2 */
		{1, 0, PS_PAGE_MERGE_PINS},
		{5, 0, PS_PAGE_MERGE_MODE},
		{2, 0, PS_PAGE_MERGE_BUSY},
		{0, 0, PS_PAGE_MERGE_BUSY}, /* part 0 itself */
	};

	memset(sub, 0, sizeof(sub));
	ck_assert_int_eq(ps_page_init(&huge, 2), 0);
	ck_assert_int_eq(ps_page_pin(&huge), 0);
	ps_page_set_flags(&huge, PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_page_merge(&huge, sub, NSUB, &why), -EINVAL);
	ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL), 0);
	hw = raw(&huge);
	for (size_t d = 0; d < sizeof(differs) / sizeof(differs[0]); d++) {
		const int k = differs[d].index;
		const uint64_t w = raw(&sub[k]);
		uint64_t bad;

		switch (d) {
		case 0:
			bad = PS_PAGE_PRIVATE;
			break;
		case 1:
			bad = w + PS_PAGE_REF_ONE;
			break;
		case 2:
			bad = w + PS_PAGE_PIN_ONE; /* pins 2 of refs 3 */
			break;
		case 3:
			bad = w | cache_field(PS_CACHE_WT);
			break;
		default:
			bad = w | PS_PAGE_LOCKED;
			break;
		}
		set_raw(&sub[k], bad);
		memcpy(before, sub, sizeof(sub));
		ck_assert_int_eq(ps_page_merge(&huge, sub, NSUB, &why), -EBUSY);
		ck_assert_uint_eq(why.index, (size_t)k);
		ck_assert_int_eq(why.reason, differs[d].reason);
		ck_assert_uint_eq(why.word, bad);
		ck_assert_uint_eq(raw(&huge), hw);
		for (int i = 0; i < NSUB; i++)
			ck_assert_uint_eq(raw(&sub[i]), raw(&before[i]));
		set_raw(&sub[k], w);
	}
	/* DIRTY on one part, WRITE_PINNED on another: the frame gets both. */
	ps_page_set_flags(&sub[2], PS_PAGE_DIRTY);
	ps_page_set_flags(&sub[6], PS_PAGE_WRITE_PINNED);
	ck_assert_int_eq(ps_page_merge(&huge, sub, NSUB, &why), 0);
	ck_assert_int_eq(why.reason, PS_PAGE_MERGE_OK);
	ck_assert_int_eq(ps_page_huge_state(&huge), PS_PAGE_HUGE_WHOLE);
	ck_assert_uint_eq(raw(&huge), mkword(3, 1,
					     PS_PAGE_PRIVATE | PS_PAGE_DIRTY |
						     PS_PAGE_WRITE_PINNED));
	for (int i = 0; i < NSUB; i++)
		ck_assert_uint_eq(raw(&sub[i]), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_page_merge(&huge, sub, NSUB, &why), -EINVAL);
	/* Free parts merge into a free frame. */
	ck_assert(!ps_page_unpin(&huge));
	ck_assert(!ps_page_put(&huge));
	ck_assert(ps_page_put(&huge));
	ck_assert_int_eq(ps_page_split(&huge, sub, NSUB, NULL), 0);
	ck_assert_int_eq(ps_page_merge(&huge, sub, NSUB, NULL), 0);
	ck_assert_uint_eq(raw(&huge), PS_PAGE_PRIVATE);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * The new pin limit (2^21 - 1, 22 bits) through a split: a frame at the
 * limit splits into parts at the limit, which refuse one more pin, and one
 * below it takes one.
 */
START_TEST(split_at_the_pin_limit)
{
	struct ps_page huge, sub[2];

	for (uint64_t pins = PS_PAGE_PINS_MAX - 1; pins <= PS_PAGE_PINS_MAX;
	     pins++) {
		memset(sub, 0, sizeof(sub));
		set_raw(&huge, mkword(pins + 1, pins, 0));
		ck_assert_int_eq(ps_page_split(&huge, sub, 2, NULL), 0);
		for (int i = 0; i < 2; i++) {
			ck_assert_uint_eq(ps_page_pins(&sub[i]), pins);
			ck_assert_int_eq(ps_page_pin(&sub[i]),
					 pins < PS_PAGE_PINS_MAX ? 0
								 : -EOVERFLOW);
			ck_assert(!ps_page_try_pin(&sub[i]));
			ck_assert_uint_eq(ps_page_pins(&sub[i]),
					  PS_PAGE_PINS_MAX);
		}
	}
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * Split against pins and gets on the huge word, in a bounded 2-thread
 * stress: a holder of the frame's reference pins, gets and try-pins the
 * huge word until it finds it split, then checks the parts. Every increment
 * that succeeded is on every part, and none that failed is: the sum over
 * the parts is the pins taken times the parts (no pin lost, none invented),
 * and the refs likewise. Rounds repeat until the split landed among the
 * holder's increments often enough.
 */
#define SPLIT_PARTS 64

struct split_race {
	struct ps_page huge, sub[SPLIT_PARTS];
	_Atomic(uint64_t) round, done;
	_Atomic(int) go;
	uint64_t pins, refs; /* the holder's successes, this round */
	_Atomic(unsigned) violations;
};

static void *split_holder(void *arg)
{
	struct split_race *sh = arg;

	for (uint64_t r = 1;; r++) {
		uint64_t pins = 0, refs = 0;

		while (atomic_load(&sh->round) != r)
			if (atomic_load(&sh->round) == UINT64_MAX)
				return NULL;
		atomic_store(&sh->go, 1);
		for (uint64_t i = 0;; i++) {
			int rc;

			switch (i % 3) {
			case 0:
				rc = ps_page_pin(&sh->huge);
				pins += rc == 0;
				refs += rc == 0;
				break;
			case 1:
				rc = ps_page_get(&sh->huge);
				refs += rc == 0;
				break;
			default:
				rc = ps_page_try_pin(&sh->huge) ? 0 : -ESTALE;
				pins += rc == 0;
				refs += rc == 0;
				break;
			}
			if (rc == -ESTALE)
				break;
			if (rc != 0)
				atomic_fetch_add(&sh->violations, 1);
		}
		sh->pins = pins;
		sh->refs = refs;
		atomic_store(&sh->done, r);
	}
}

START_TEST(stress_split_against_pins)
{
	struct split_race *sh = calloc(1, sizeof(*sh));
	uint64_t rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			  1000;
	uint64_t mid = 0; /* rounds where the split came between increments */
	pthread_t t;

	ck_assert_ptr_nonnull(sh);
	if (rounds < 50)
		rounds = 50;
	ck_assert_int_eq(pthread_create(&t, NULL, split_holder, sh), 0);
	for (uint64_t r = 1; r <= rounds; r++) {
		int rc;

		memset(sh->sub, 0, sizeof(sh->sub));
		ck_assert_int_eq(ps_page_init(&sh->huge, 1), 0);
		atomic_store(&sh->go, 0);
		atomic_store(&sh->round, r);
		while (!atomic_load(&sh->go))
			sched_yield();
		for (uint64_t spin = (r * 7919) % 2000; spin; spin--)
			__asm__ __volatile__("" ::: "memory");
		do
			rc = ps_page_split(&sh->huge, sh->sub, SPLIT_PARTS,
					   NULL);
		while (rc == -EBUSY); /* a refused increment's unit in flight */
		ck_assert_int_eq(rc, 0);
		while (atomic_load(&sh->done) != r)
			sched_yield();
		mid += sh->pins != 0;
		for (int i = 0; i < SPLIT_PARTS; i++) {
			ck_assert_uint_eq(ps_page_pins(&sh->sub[i]), sh->pins);
			ck_assert_uint_eq(ps_page_refs(&sh->sub[i]),
					  1 + sh->refs);
		}
		ck_assert_uint_eq(ps_page_refs(&sh->huge), 0);
		ck_assert(!ps_page_is_pinned(&sh->huge));
	}
	atomic_store(&sh->round, UINT64_MAX);
	pthread_join(t, NULL);
	ck_assert_uint_eq(atomic_load(&sh->violations), 0);
	ck_assert_uint_eq(hooks(), 0);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"split race: %" PRIu64 " rounds, %" PRIu64
			" with increments before the split\n",
			rounds, mid);
	ck_assert_uint_gt(mid, 0);
	free(sh);
}
END_TEST

/*
 * A split must not take a part's LOCKED bit from its holder. LOCKED needs no
 * reference (ps_prot_set_inaccessible() locks a frame's word that "may be
 * free", a part of a whole frame merged meanwhile), and a split refuses a part
 * that has it ("a part is not free"). Splits and merges of a whole frame loop
 * here while another thread locks a part, checks that it still holds LOCKED,
 * and unlocks. Before the fix the split's plain store of each part, after its
 * look, wiped a LOCKED set between the two: the holder lost its lock without
 * knowing (two holders at once, its unlock then clearing another's).
 */
#define LOCK_PARTS 512

struct split_lock_race {
	struct ps_page huge, sub[LOCK_PARTS];
	_Atomic(bool) stop;
	_Atomic(uint64_t) lost, held;
};

static void *split_part_locker(void *arg)
{
	struct split_lock_race *sh = arg;

	for (uint64_t i = 0; !atomic_load(&sh->stop); i++) {
		/* The parts stored last: the longest window after the look. */
		struct ps_page *part = &sh->sub[LOCK_PARTS - 1 - i % 64];

		ps_page_lock(part);
		atomic_fetch_add(&sh->held, 1);
		for (int spin = 0; spin < 200; spin++)
			__asm__ __volatile__("" ::: "memory");
		if (!ps_page_test_flags(part, PS_PAGE_LOCKED)) {
			atomic_fetch_add(&sh->lost, 1);
			continue; /* not ours any more: no unlock */
		}
		ps_page_unlock(part);
		/* Unlocked as long as locked: some splits must succeed. */
		for (int spin = 0; spin < 100; spin++)
			__asm__ __volatile__("" ::: "memory");
		if (!(i % 32))
			sched_yield();
	}
	return NULL;
}

START_TEST(split_keeps_a_part_locked)
{
	struct split_lock_race *sh = calloc(1, sizeof(*sh));
	uint64_t rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 8;
	uint64_t splits = 0, lost;
	pthread_t t;

	ck_assert_ptr_nonnull(sh);
	ck_assert_int_eq(ps_page_init(&sh->huge, 1), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, split_part_locker, sh), 0);
	for (uint64_t r = 0; r < rounds && !atomic_load(&sh->lost); r++) {
		if (ps_page_split(&sh->huge, sh->sub, LOCK_PARTS, NULL))
			continue; /* a part locked: refused, nothing changed */
		splits++;
		/* Merge back; refused while a part is locked: try again. */
		while (ps_page_merge(&sh->huge, sh->sub, LOCK_PARTS, NULL) &&
		       !atomic_load(&sh->lost))
			sched_yield();
	}
	atomic_store(&sh->stop, true);
	pthread_join(t, NULL);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"split vs part lock: %" PRIu64 " splits, %" PRIu64
			" locks\n",
			splits, atomic_load(&sh->held));
	lost = atomic_load(&sh->lost);
	ck_assert_uint_eq(lost, 0);
	ck_assert_uint_gt(splits, 0);
	free(sh);
}
END_TEST

/*
 * A merge refused at its last part gives the parts it froze back to their
 * holders with the counts they had. Meanwhile a try-get that met a frozen
 * part failed and left its unit in the counts, meaningless while the part is
 * not LIVE (as on any frozen word); the thaw must not make it count. Here no
 * try-get can succeed (every part is at PS_PAGE_REFS_MAX, a LIVE part refuses
 * and takes its unit back), so every part must end with exactly its count.
 * Before the fix the thaw kept the units: the parts ended above their count,
 * with references nobody held (never freed; a pin's unit would read pinned).
 */
#define MERGE_PARTS 512

struct merge_race {
	struct ps_page huge, sub[MERGE_PARTS];
	struct ps_test_overlap ov; /* side 0 merges, side 1 try-gets */
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) frozen; /* the try-getter's count, at its end */
};

/* Try-gets that met a frozen part the loops wait for (the race happened). */
#define MERGE_FROZEN 20

static void *merge_try_getter(void *arg)
{
	struct merge_race *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov, 1, 0);

	uint64_t frozen = 0; /* failed try-gets that then saw the part frozen */

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		struct ps_page *part = &sh->sub[i % (MERGE_PARTS - 1)];

		if (ps_page_try_get(part))
			atomic_fetch_add(&sh->violations, 1); /* at the limit */
		else if (ps_page_is_frozen(part) && ++frozen == MERGE_FROZEN)
			ps_test_overlap_release(&sh->ov);
	}
	atomic_store(&sh->frozen, frozen);
	return NULL;
}

START_TEST(stress_refused_merge_keeps_counts)
{
	struct merge_race *sh = calloc(1, sizeof(*sh));
	uint64_t iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 100;
	uint64_t other = 0; /* refusals other than the last part's mode */
	struct ps_test_side me;
	pthread_t t;

	ck_assert_ptr_nonnull(sh);
	ck_assert_int_eq(ps_page_init(&sh->huge, PS_PAGE_REFS_MAX), 0);
	ck_assert_int_eq(ps_page_split(&sh->huge, sh->sub, MERGE_PARTS, NULL),
			 0);
	ps_page_change_flags(&sh->sub[MERGE_PARTS - 1], PS_PAGE_CACHE_MASK,
			     cache_field(PS_CACHE_UC));
	ps_test_overlap_init(&sh->ov, 2, 0);
	sh->ov.side[0].min_ops = sh->ov.side[1].min_ops = iters ? iters : 1;
	ps_test_overlap_hold(&sh->ov);
	me = ps_test_side(&sh->ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, merge_try_getter, sh), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		struct ps_page_merge_refusal why;

		if (ps_page_merge(&sh->huge, sh->sub, MERGE_PARTS, &why) !=
		    -EBUSY)
			atomic_fetch_add(&sh->violations, 1);
		else if (why.index != MERGE_PARTS - 1 ||
			 why.reason != PS_PAGE_MERGE_MODE)
			other++; /* a refused try-get's unit in flight */
	}
	pthread_join(t, NULL);
	ps_test_overlap_check(&sh->ov, "refused merge vs try-gets");
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"refused merges: %" PRIu64 " busy, %" PRIu64
			" try-gets met a frozen part\n",
			other, atomic_load(&sh->frozen));
	ck_assert_uint_ge(atomic_load(&sh->frozen), MERGE_FROZEN);
	ck_assert_uint_eq(atomic_load(&sh->violations), 0);
	for (int i = 0; i < MERGE_PARTS; i++)
		ck_assert_uint_eq(raw(&sh->sub[i]),
				  live_word(PS_PAGE_REFS_MAX, 0,
					    i == MERGE_PARTS - 1
						    ? cache_field(PS_CACHE_UC)
						    : 0));
	ck_assert_uint_eq(ps_page_huge_state(&sh->huge), PS_PAGE_HUGE_SPLIT);
	ck_assert_uint_eq(hooks(), 0);
	free(sh);
}
END_TEST

/* --- stress --------------------------------------------------------------- */

/*
 * Two workers share one page that the test itself holds one reference to
 * (BASE). Each worker randomly gets, pins, try-gets, try-pins, puts and
 * unpins within a small budget of holdings, and sometimes tries to freeze
 * the page with expected = BASE + its own holdings. That succeeds only when
 * the other worker holds nothing. While it holds the freeze it publishes
 * frozen_by[self] and checks the frozen invariants. The named transitions
 * run in the same mix: get_or_revive, pins for write that set WRITE_PINNED
 * in the pin's CAS, the lazy clear of WRITE_PINNED, the page lock, a flag
 * set unless frozen, and unfreezes that change the cache field in the same
 * step. Checked while running:
 *   - a worker holding a pin never reads is_pinned() == false;
 *   - counts never fall below what the reader itself holds;
 *   - no try-get/try-pin succeeds while the other worker holds a freeze;
 *   - a frozen page reports no pins and exactly the expected references;
 *   - get_or_revive never revives (the page is never free) and fails only
 *     with -EBUSY (frozen);
 *   - a worker that took a pin for write and still holds a pin reads the
 *     word as pinned for write; the clear of WRITE_PINNED never succeeds
 *     while the clearing worker itself holds a pin;
 *   - the lock excludes: one holder at a time, and a plain counter updated
 *     under it adds up;
 *   - a flag set unless frozen never appears during a freeze that began
 *     without it.
 * At the end the word equals the initial one (the cache field aside). The
 * workers run until each did its share and overlapped the other in enough
 * operations (harness.h). Now and then a worker drops all it holds (else
 * both soon hold some for good, and no freeze can succeed after the start),
 * and a freezer sometimes yields while frozen: some freezes must have seen
 * the other worker operate meanwhile, on one CPU too.
 */
#define STRESS_BASE 1

struct stress_shared {
	struct ps_page page;
	_Atomic(int) frozen_by[2];
	_Atomic(unsigned) violations;
	uint64_t iters;
	_Atomic(int) lock_owner;   /* -1, or the worker holding the page lock */
	uint64_t under_lock;	   /* plain: written only under the page lock */
	struct ps_test_overlap ov; /* side i worker i */
	_Atomic(int) contested;	   /* a freeze saw the other operate */
};

struct stress_worker {
	struct stress_shared *sh;
	int self;
	uint64_t freezes;
	uint64_t contested_freezes; /* the other did an operation meanwhile */
	uint64_t locks;		    /* critical sections this worker ran */
};

static void violation(struct stress_shared *sh, const char *what)
{
	fprintf(stderr, "stress invariant broken: %s\n", what);
	atomic_fetch_add(&sh->violations, 1);
}

/* Drop every reference a worker holds, its pins' included. */
static void stress_release(struct ps_page *p, uint64_t *refs, uint64_t *pins)
{
	for (; *pins; --*pins, --*refs)
		(void)ps_page_unpin(p);
	for (; *refs; --*refs)
		(void)ps_page_put(p);
}

static void *stress_worker(void *arg)
{
	struct stress_worker *w = arg;
	struct stress_shared *sh = w->sh;
	struct ps_page *p = &sh->page;
	struct ps_test_rng rng = ps_test_rng_new((uint64_t)w->self + 1);
	uint64_t refs = 0, pins = 0; /* what this worker holds (pins incl.) */
	bool wp = false; /* took a pin for write, held a pin ever since */
	int other = 1 - w->self;
	struct ps_test_side me = ps_test_side(&sh->ov, (unsigned)w->self, 0);

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		unsigned op = (unsigned)ps_test_below(&rng, 13);
		uint64_t other_ops;
		bool ok, inacc;
		int rc;

		if (ps_test_below(&rng, 256) == 0) {
			/*
			 * Now and then hold nothing, so that the other can
			 * freeze while this one runs, and yield so that it
			 * can on one CPU too.
			 */
			stress_release(p, &refs, &pins);
			wp = false;
			sched_yield();
			continue;
		}

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
				wp = wp && pins;
			}
			break;
		case 6: /* freeze: only possible when the other holds nothing */
			if (pins || !ps_page_freeze(p, STRESS_BASE + refs))
				break;
			atomic_store(&sh->frozen_by[w->self], 1);
			w->freezes++;
			inacc = ps_page_test_flags(p, PS_PAGE_INACCESSIBLE);
			other_ops = atomic_load(&sh->ov.side[other].ops);
			if (ps_test_below(&rng, 4) == 0)
				sched_yield(); /* the other runs against it */
			if (atomic_load(&sh->ov.side[other].ops) != other_ops &&
			    !w->contested_freezes++ &&
			    /* Relaxed: once; orders nothing. */
			    !atomic_exchange_explicit(&sh->contested, 1,
						      memory_order_relaxed))
				ps_test_overlap_release(&sh->ov);
			if (ps_page_pins(p) != 0 || ps_page_refs(p) != 0 ||
			    !ps_page_is_frozen(p) || ps_page_is_live(p))
				violation(sh, "frozen page with wrong state");
			if (ps_page_try_get(p) || ps_page_try_pin(p))
				violation(sh, "own try succeeded while frozen");
			if (!inacc &&
			    ps_page_test_flags(p, PS_PAGE_INACCESSIBLE))
				violation(sh, "flag set unless frozen, frozen");
			atomic_store(&sh->frozen_by[w->self], 0);
			if (i & 1) {
				ps_page_change_flags(
					p, PS_PAGE_CACHE_MASK,
					(uint64_t)(i & 7)
						<< PS_PAGE_CACHE_SHIFT);
				rc = ps_page_unfreeze(p, STRESS_BASE + refs);
			} else {
				rc = ps_page_unfreeze_change_flags(
					p, STRESS_BASE + refs,
					PS_PAGE_CACHE_MASK,
					(uint64_t)(i & 7)
						<< PS_PAGE_CACHE_SHIFT);
			}
			if (rc != 0)
				violation(sh, "unfreeze failed");
			break;
		case 7: /* get_or_revive: LIVE or frozen, never free */
			if (refs == 0 || refs >= 8)
				break;
			rc = ps_page_get_or_revive(p);
			if (rc == 0)
				refs++;
			else if (rc != -EBUSY)
				violation(sh,
					  "get_or_revive: revived or failed");
			break;
		case 8: /* a pin for write: WRITE_PINNED in the pin's CAS */
			if (refs >= 8 || !ps_page_try_pin_and_set_flags(
						 p, 1, 0, PS_PAGE_WRITE_PINNED))
				break;
			if (atomic_load(&sh->frozen_by[other]))
				violation(sh, "pin for write on a frozen page");
			refs++;
			pins++;
			wp = true;
			break;
		case 9: /* the lazy clear of the hint */
			if (ps_page_clear_flag_if_unpinned(
				    p, PS_PAGE_WRITE_PINNED) &&
			    pins)
				violation(sh,
					  "WRITE_PINNED cleared while pinned");
			break;
		case 10: /* the page lock excludes */
			ps_page_lock(p);
			if (atomic_load_explicit(&sh->lock_owner,
						 memory_order_relaxed) != -1)
				violation(sh, "two holders of the page lock");
			atomic_store_explicit(&sh->lock_owner, w->self,
					      memory_order_relaxed);
			sh->under_lock++;
			w->locks++;
			atomic_store_explicit(&sh->lock_owner, -1,
					      memory_order_relaxed);
			ps_page_unlock(p);
			break;
		case 11: /* a flag a freezer decides: set unless frozen */
			if (ps_page_set_flags_unless_frozen(
				    p, PS_PAGE_INACCESSIBLE))
				ps_page_clear_flags(p, PS_PAGE_INACCESSIBLE);
			break;
		default: /* observe */
			if (pins && !ps_page_is_pinned(p))
				violation(sh, "pin holder saw is_pinned false");
			if (wp &&
			    !ps_page_word_pinned_for_write(ps_page_load(p)))
				violation(sh, "write pin not seen as one");
			/* With references in hand no freeze can succeed. */
			if (refs && (ps_page_refs(p) < STRESS_BASE + refs ||
				     ps_page_pins(p) < pins))
				violation(sh, "count below own holdings");
			break;
		}
	}
	stress_release(p, &refs, &pins);
	return NULL;
}

START_TEST(stress_counts_against_freeze)
{
	struct stress_shared sh;
	struct stress_worker w[2];
	pthread_t t[2];
	uint64_t initial;

	memset(&sh, 0, sizeof(sh));
	atomic_store(&sh.lock_owner, -1);
	ck_assert_int_eq(ps_page_init(&sh.page, STRESS_BASE), 0);
	initial = raw(&sh.page);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000);
	ps_test_overlap_init(&sh.ov, 2, 0);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = sh.iters;
	ps_test_overlap_hold(&sh.ov); /* until a freeze was contested */
	for (int i = 0; i < 2; i++) {
		w[i].sh = &sh;
		w[i].self = i;
		w[i].freezes = 0;
		w[i].contested_freezes = 0;
		w[i].locks = 0;
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_worker,
						&w[i]),
				 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(hooks(), 0);
	ps_test_overlap_check(&sh.ov, "page workers");
	/* No pins are left, so the hint may go; nothing else may remain. */
	(void)ps_page_clear_flag_if_unpinned(&sh.page, PS_PAGE_WRITE_PINNED);
	/* The cache field was scribbled on while frozen; counts must match. */
	ck_assert_uint_eq(raw(&sh.page) & ~PS_PAGE_CACHE_MASK, initial);
	/* The freeze path was really exercised, against the other's work. */
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"page workers: %" PRIu64 " freezes, %" PRIu64
			" while the other worked\n",
			w[0].freezes + w[1].freezes,
			w[0].contested_freezes + w[1].contested_freezes);
	ck_assert_uint_gt(w[0].freezes + w[1].freezes, 0);
	ck_assert_uint_gt(w[0].contested_freezes + w[1].contested_freezes, 0);
	ck_assert_uint_eq(sh.under_lock, w[0].locks + w[1].locks);
}
END_TEST

/*
 * Two threads push against the limits at once: every get or pin at the limit
 * is refused, and a third party (the other thread between attempts) never
 * sees a wrapped, small count or a missing pin. They run until each did its
 * share and overlapped the other in enough operations (harness.h).
 */
struct limit_shared {
	struct ps_page page;
	uint64_t iters;
	struct ps_test_overlap ov;
	_Atomic(unsigned) started; /* sides handed out */
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) granted;
};

static void *limit_worker(void *arg)
{
	struct limit_shared *sh = arg;
	struct ps_page *p = &sh->page;
	struct ps_test_side me = ps_test_side(&sh->ov,
					      atomic_fetch_add(&sh->started, 1),
					      0);

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
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
	ps_test_overlap_init(&sh.ov, 2, 0);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = sh.iters;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, limit_worker, &sh),
				 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ps_test_overlap_check(&sh.ov, "limit workers");
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
 *
 * The race must really happen, on one CPU too: the dropper drops only once the
 * speculator has started its round, and the speculator yields now and then,
 * sometimes while it holds its speculative reference (so that the dropper's put
 * is not the last). Checked: most rounds were contested (the speculator took a
 * reference before the page was freed), and each thread made the freeing put in
 * some rounds (the rounds go on until both did, PS_STRESS_SECONDS at most).
 */
struct free_shared {
	struct ps_page page;
	_Atomic(uint64_t) round;   /* the round the page was prepared for */
	_Atomic(uint64_t) started; /* the speculator's round */
	_Atomic(uint64_t) done[2]; /* last round each thread finished */
	_Atomic(uint64_t) frees;
	_Atomic(int) stop; /* no round after the last one finished */
	uint64_t contested, freed_by[2]; /* each written by one thread */
};

static void *free_dropper(void *arg)
{
	struct free_shared *sh = arg;
	struct ps_test_rng rng = ps_test_rng_new(77);

	for (uint64_t r = 1;; r++) {
		uint64_t spin = ps_test_below(&rng, 256);

		while ((atomic_load(&sh->round) != r ||
			atomic_load(&sh->started) != r) &&
		       !atomic_load(&sh->stop))
			sched_yield();
		if (atomic_load(&sh->round) != r)
			break;
		while (spin--)
			atomic_signal_fence(memory_order_seq_cst);
		if (ps_page_put(&sh->page)) {
			atomic_fetch_add(&sh->frees, 1);
			sh->freed_by[0]++;
		}
		atomic_store(&sh->done[0], r);
	}
	return NULL;
}

static void *free_speculator(void *arg)
{
	struct free_shared *sh = arg;
	struct ps_test_rng rng = ps_test_rng_new(78);

	for (uint64_t r = 1;; r++) {
		while (atomic_load(&sh->round) != r && !atomic_load(&sh->stop))
			sched_yield();
		if (atomic_load(&sh->round) != r)
			break;
		atomic_store(&sh->started, r);
		for (uint64_t n = 0;; n++) {
			/* Every 64 tries a yield, half of them holding one. */
			bool yield = n % 64 == 63;
			bool holding = yield && ps_test_below(&rng, 2);

			if (yield && !holding)
				sched_yield();
			if (!ps_page_try_get(&sh->page))
				break; /* freed by the dropper */
			sh->contested += n == 0;
			if (holding)
				sched_yield();
			if (ps_page_put(&sh->page)) {
				atomic_fetch_add(&sh->frees, 1);
				sh->freed_by[1]++;
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
	uint64_t rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 50;
	uint64_t cap = ps_test_env_u64("PS_STRESS_SECONDS", 60) * 1000000000u;
	uint64_t t0 = ps_test_now_ns(), r;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	ck_assert_int_eq(pthread_create(&t[0], NULL, free_dropper, &sh), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, free_speculator, &sh), 0);
	/* Its rounds, then on until each thread made a freeing put. */
	for (r = 1; r <= rounds || ((!sh.freed_by[0] || !sh.freed_by[1]) &&
				    ps_test_now_ns() - t0 < cap);
	     r++) {
		ck_assert_int_eq(ps_page_init(&sh.page, 1), 0);
		atomic_store(&sh.round, r);
		while (atomic_load(&sh.done[0]) != r ||
		       atomic_load(&sh.done[1]) != r)
			sched_yield();
		ck_assert_uint_eq(atomic_load(&sh.frees), r);
		ck_assert(!ps_page_is_live(&sh.page));
		ck_assert_uint_eq(ps_page_refs(&sh.page), 0);
	}
	atomic_store(&sh.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	r--; /* rounds run */
	ck_assert_uint_eq(hooks(), 0);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"free race: %" PRIu64 " rounds, %" PRIu64
			" contested, freed by the dropper %" PRIu64
			", by the speculator %" PRIu64 "\n",
			r, sh.contested, sh.freed_by[0], sh.freed_by[1]);
	ck_assert_uint_ge(sh.contested, r / 2);
	ck_assert_uint_gt(sh.freed_by[0], 0);
	ck_assert_uint_gt(sh.freed_by[1], 0);
}
END_TEST

/*
 * The page lock under contention, through its waiting half: two threads take
 * it in turn and update a plain counter inside. The count adds up, and no
 * thread ever finds another inside (under TSan, the plain counter also
 * checks that unlock releases to the next lock's acquire). The waiting half
 * must really run, on one CPU too: a holder yields inside now and then, and the
 * workers run until each did its share and overlapped the other in enough
 * operations (harness.h); some lock calls must have found the lock held.
 */
struct lock_shared {
	struct ps_page page;
	uint64_t iters;
	uint64_t counter; /* plain: only under the page lock */
	_Atomic(int) inside;
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) contended; /* lock calls that found it held */
	struct ps_test_overlap ov;
	_Atomic(unsigned) started; /* sides handed out */
};

static void *lock_worker(void *arg)
{
	struct lock_shared *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov,
					      atomic_fetch_add(&sh->started, 1),
					      0);
	uint64_t contended = 0;

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		/*
		 * Relaxed, here and on inside below: they must not order the
		 * plain counter for TSan; only the page lock may.
		 */
		contended += atomic_load_explicit(&sh->inside,
						  memory_order_relaxed) != 0;
		ps_page_lock(&sh->page);
		if (atomic_fetch_add_explicit(&sh->inside, 1,
					      memory_order_relaxed) != 0)
			atomic_fetch_add(&sh->violations, 1);
		sh->counter++;
		if (i % 64 == 63)
			sched_yield(); /* the other may come and wait */
		atomic_fetch_sub_explicit(&sh->inside, 1, memory_order_relaxed);
		ps_page_unlock(&sh->page);
		/* A count operation never disturbs the lock, nor it them. */
		if (ps_page_get(&sh->page) != 0 || ps_page_put(&sh->page))
			atomic_fetch_add(&sh->violations, 1);
	}
	atomic_fetch_add(&sh->contended, contended);
	return NULL;
}

START_TEST(stress_lock_excludes)
{
	struct lock_shared sh;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	ck_assert_int_eq(ps_page_init(&sh.page, 1), 0);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 4;
	ps_test_overlap_init(&sh.ov, 2, 0);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = sh.iters;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, lock_worker, &sh),
				 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(sh.counter, atomic_load(&sh.ov.side[0].ops) +
					      atomic_load(&sh.ov.side[1].ops));
	ck_assert_uint_eq(raw(&sh.page), mkword(1, 0, 0));
	ps_test_overlap_check(&sh.ov, "lock workers");
	ck_assert_uint_gt(atomic_load(&sh.contended), 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * One write-back at a time, through the waiting half: two writer-backs
 * start a write-back of one page in turn, update a plain counter while it
 * is in flight, and end it; one that finds it in flight waits for the end
 * and tries again (as data-integrity write-back does). The count adds up,
 * and no thread ever finds another inside (under TSan, the plain counter
 * also checks that end releases to the next start's and wait's acquire).
 * Counts change meanwhile, undisturbed.
 */
static void *wb_worker(void *arg)
{
	struct lock_shared *sh = arg;

	for (uint64_t i = 0; i < sh->iters; i++) {
		while (!ps_page_start_writeback(&sh->page))
			ps_page_wait_writeback(&sh->page);
		if (atomic_fetch_add(&sh->inside, 1) != 0)
			atomic_fetch_add(&sh->violations, 1);
		sh->counter++;
		atomic_fetch_sub(&sh->inside, 1);
		if (!(ps_page_end_writeback(&sh->page) & PS_PAGE_WRITEBACK))
			atomic_fetch_add(&sh->violations, 1);
		if (ps_page_pin(&sh->page) != 0 || ps_page_unpin(&sh->page))
			atomic_fetch_add(&sh->violations, 1);
	}
	return NULL;
}

START_TEST(stress_writeback_excludes)
{
	struct lock_shared sh;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	ck_assert_int_eq(ps_page_init(&sh.page, 1), 0);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 4;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, wb_worker, &sh),
				 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(sh.counter, 2 * sh.iters);
	ck_assert_uint_eq(raw(&sh.page), mkword(1, 0, 0));
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * A reference and the lock at once, against frees and revivals: an owner
 * revives the page, dirties it and drops its reference, over and over,
 * while two threads look it up without holding it and take it with
 * ps_page_try_get_and_lock(). Checked: a holder always finds the page LIVE
 * with its reference and alone under LOCKED (a plain counter), even when
 * the owner's put came meanwhile; whoever drops the last reference frees
 * (exactly one free per revival), and the free ends the lifetime (no
 * DIRTY, no LOCKED left); the page ends free.
 */
struct get_lock_shared {
	struct ps_page page;
	uint64_t iters;
	uint64_t counter; /* plain: only under the page lock */
	_Atomic(uint64_t) revived, freed, held;
	_Atomic(int) stop;
	_Atomic(unsigned) violations;
};

static void get_lock_freed(struct get_lock_shared *sh)
{
	uint64_t w = ps_page_load(&sh->page);

	atomic_fetch_add(&sh->freed, 1);
	/*
	 * Unless revived meanwhile, nothing of its lifetime is left: DIRTY
	 * and LOCKED are set only by holders of a reference.
	 */
	if (!(w & PS_PAGE_LIVE) && (w & (PS_PAGE_LOCKED | PS_PAGE_LIFE_FLAGS)))
		atomic_fetch_add(&sh->violations, 1);
}

static void *get_lock_worker(void *arg)
{
	struct get_lock_shared *sh = arg;

	while (!atomic_load(&sh->stop)) {
		uint64_t w;

		if (!ps_page_try_get_and_lock(&sh->page))
			continue;
		w = ps_page_load(&sh->page);
		if (!(w & PS_PAGE_LIVE) || ps_page_word_refs(w) < 1 ||
		    !(w & PS_PAGE_LOCKED))
			atomic_fetch_add(&sh->violations, 1);
		sh->counter++;
		atomic_fetch_add(&sh->held, 1);
		ps_page_set_flags(&sh->page, PS_PAGE_DIRTY);
		if (ps_page_unlock_and_put(&sh->page))
			get_lock_freed(sh);
	}
	return NULL;
}

START_TEST(stress_get_lock_holds_page)
{
	struct get_lock_shared *sh = calloc(1, sizeof(*sh));
	pthread_t t[2];
	uint64_t counted = 0;

	ck_assert_ptr_nonnull(sh);
	sh->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 10;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, get_lock_worker,
						sh),
				 0);
	for (uint64_t i = 0; i < sh->iters; i++) {
		int rc = ps_page_get_or_revive(&sh->page);

		if (rc < 0) {
			atomic_fetch_add(&sh->violations, 1);
			continue;
		}
		if (rc == 1)
			atomic_fetch_add(&sh->revived, 1);
		ps_page_lock(&sh->page);
		sh->counter++;
		counted++;
		ps_page_unlock(&sh->page);
		if (ps_page_put(&sh->page))
			get_lock_freed(sh);
	}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh->violations), 0);
	ck_assert_uint_eq(atomic_load(&sh->freed), atomic_load(&sh->revived));
	ck_assert_uint_eq(sh->counter, counted + atomic_load(&sh->held));
	ck_assert(!ps_page_is_live(&sh->page));
	ck_assert_uint_eq(ps_page_flags(&sh->page), 0);
	ck_assert_uint_eq(hooks(), 0);
	free(sh);
}
END_TEST

/*
 * One frame, one mode while it has owners (prot.h's P7, held by the word
 * alone). Two threads race to own a page that starts free: each takes it
 * with a mode of its choice (get_or_revive_cache), or with whatever mode it
 * has (get_or_revive), checks that the mode does not change while it holds
 * the reference, and puts. The thread whose put frees the page sometimes
 * changes the free page's mode (set_cache_if_free), racing the other's revival.
 * Sometimes a thread claims the page instead (get_or_freeze, a map that may
 * fail): a free page is frozen with its mode, nobody can take it or change the
 * mode, and it is kept (unfrozen with one reference) or given back free with
 * its old mode. Checked: a holder always reads the mode it was given; a revival
 * reports the mode the page had; -EBUSY only for another mode (or a claim in
 * flight); the frees balance the revivals (a kept claim counts as one); the
 * page ends free with no counts. The two run until each did its share and
 * overlapped the other in enough operations (harness.h).
 */
struct mode_shared {
	struct ps_page page;
	uint64_t iters;
	struct ps_test_overlap ov;
	_Atomic(uint64_t) revived, freed;
	_Atomic(uint64_t) claims_begun, claims_done; /* get_or_freeze */
	_Atomic(unsigned) violations;
};

struct mode_arg {
	struct mode_shared *sh;
	int self;
};

static void *mode_worker(void *arg)
{
	struct mode_arg *a = arg;
	struct mode_shared *sh = a->sh;
	struct ps_test_rng rng = ps_test_rng_new(11 + (uint64_t)a->self);
	struct ps_test_side me = ps_test_side(&sh->ov, (unsigned)a->self, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		enum ps_cache_mode want =
			(enum ps_cache_mode)ps_test_below(&rng, 3);
		unsigned int old = 99;
		enum ps_cache_mode have;
		bool any = ps_test_below(&rng, 4) == 0;
		uint64_t done_before = atomic_load(&sh->claims_done);
		int rc;

		if (ps_test_below(&rng, 4) == 0) {
			/*
			 * A map that may fail: a free page is frozen with
			 * @want, then kept or given back as it was; no other
			 * owner can take it or change its mode meanwhile.
			 */
			atomic_fetch_add(&sh->claims_begun, 1);
			rc = ps_page_get_or_freeze(&sh->page,
						   any ? -1 : (int)want, &old);
			if (rc != 1)
				atomic_fetch_add(&sh->claims_done, 1);
			if (rc == 1) {
				uint64_t w = raw(&sh->page);

				if (!any &&
				    ps_page_word_cache(w) != (unsigned)want)
					atomic_fetch_add(&sh->violations, 1);
				if (ps_page_try_get(&sh->page) ||
				    raw(&sh->page) < w ||
				    ps_page_word_cache(raw(&sh->page)) !=
					    ps_page_word_cache(w))
					atomic_fetch_add(&sh->violations, 1);
				if (ps_test_below(&rng, 2)) {
					rc = ps_page_unfreeze_change_flags(
						&sh->page, 0,
						PS_PAGE_CACHE_MASK,
						cache_bits(old));
					if (rc)
						atomic_fetch_add(
							&sh->violations, 1);
					atomic_fetch_add(&sh->claims_done, 1);
					continue; /* given back */
				}
				if (ps_page_unfreeze(&sh->page, 1))
					atomic_fetch_add(&sh->violations, 1);
				atomic_fetch_add(&sh->claims_done, 1);
				/* Kept: a revival, with its reference. */
			}
		} else {
			rc = any ? ps_page_get_or_revive(&sh->page)
				 : ps_page_get_or_revive_cache(&sh->page, want,
							       &old);
		}
		if (rc == -EBUSY) {
			/* Any mode is fine unless a claim held it frozen. */
			if (any &&
			    atomic_load(&sh->claims_begun) == done_before)
				atomic_fetch_add(&sh->violations, 1);
			continue;
		}
		if (rc < 0) {
			atomic_fetch_add(&sh->violations, 1);
			continue;
		}
		if (rc == 1)
			atomic_fetch_add(&sh->revived, 1);
		have = ps_page_cache_mode(&sh->page);
		if ((!any && have != want) || (!any && rc == 0 && old != want))
			atomic_fetch_add(&sh->violations, 1);
		for (int k = 0; k < 8; k++)
			if (ps_page_cache_mode(&sh->page) != have)
				atomic_fetch_add(&sh->violations, 1);
		if (!ps_page_put(&sh->page))
			continue;
		atomic_fetch_add(&sh->freed, 1);
		if (ps_test_below(&rng, 2)) {
			rc = ps_page_set_cache_if_free(
				&sh->page,
				(enum ps_cache_mode)ps_test_below(&rng, 3), -1);
			if (rc != 0 && rc != -EBUSY)
				atomic_fetch_add(&sh->violations, 1);
		}
	}
	return NULL;
}

START_TEST(stress_cache_mode_owners)
{
	struct mode_shared sh;
	struct mode_arg a[2];
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 4;
	ps_test_overlap_init(&sh.ov, 2, 0);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = sh.iters;
	for (int i = 0; i < 2; i++) {
		a[i].sh = &sh;
		a[i].self = i;
		ck_assert_int_eq(pthread_create(&t[i], NULL, mode_worker,
						&a[i]),
				 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(atomic_load(&sh.revived), atomic_load(&sh.freed));
	ck_assert_uint_gt(atomic_load(&sh.revived), 1);
	ps_test_overlap_check(&sh.ov, "mode owners");
	ck_assert(!ps_page_is_live(&sh.page));
	ck_assert_uint_eq(raw(&sh.page) & ~PS_PAGE_CACHE_MASK, 0);
	ck_assert_uint_eq(hooks(), 0);
}
END_TEST

/*
 * Misuse against correct callers. A correct thread pins and unpins, gets and
 * puts a page it holds a reference to (page A, one base reference held by
 * the test), and maps and frees a second page (B: get_or_revive, then put).
 * A misusing thread meanwhile makes only misuse that is always detectable:
 * unpins and puts of more than the page could hold, gets and pins of B when it
 * is free, puts on B. Checked: the correct thread is never refused and never
 * reported (the hook knows which thread calls it); the misuser is reported; B's
 * revivals and frees balance; at the end A holds its base reference alone and B
 * is free, both words exact. The windows a misuse could open are a few
 * instructions wide, so the test runs until each thread did its share and the
 * two really overlapped (each made progress between two operations of the
 * other) often enough, however busy the machine, within a bound (harness.h).
 */
struct misuse_shared {
	struct ps_page a, b;
	uint64_t iters;
	struct ps_test_overlap ov; /* side 0 the correct one, 1 the misuser */
	_Atomic(unsigned) violations;
	_Atomic(uint64_t) revived, freed;
};

static _Atomic(unsigned) misuse_correct_reports, misuse_misuser_reports;
static _Thread_local bool misuse_is_misuser;

static void misuse_hook(const struct ps_page *page, enum ps_page_error error,
			uint64_t word)
{
	(void)page;
	(void)error;
	(void)word;
	if (misuse_is_misuser)
		atomic_fetch_add(&misuse_misuser_reports, 1);
	else
		atomic_fetch_add(&misuse_correct_reports, 1);
}

static void *misuse_correct(void *arg)
{
	struct misuse_shared *sh = arg;
	struct ps_page *a = &sh->a, *b = &sh->b;
	struct ps_test_side me = ps_test_side(&sh->ov, 0, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		int rc;

		if (ps_page_pin(a) != 0 || ps_page_get(a) != 0)
			atomic_fetch_add(&sh->violations, 1);
		if (ps_page_pins(a) < 1 || ps_page_refs(a) < 3)
			atomic_fetch_add(&sh->violations, 1);
		if (ps_page_unpin(a) || ps_page_put(a))
			atomic_fetch_add(&sh->violations, 1);
		rc = ps_page_get_or_revive(b);
		if (rc < 0) {
			atomic_fetch_add(&sh->violations, 1);
			continue;
		}
		if (rc == 1)
			atomic_fetch_add(&sh->revived, 1);
		if (ps_page_refs(b) < 1)
			atomic_fetch_add(&sh->violations, 1);
		if (ps_page_put(b))
			atomic_fetch_add(&sh->freed, 1);
	}
	return NULL;
}

static void *misuse_misuser(void *arg)
{
	struct misuse_shared *sh = arg;
	struct ps_page *a = &sh->a, *b = &sh->b;
	struct ps_test_side me = ps_test_side(&sh->ov, 1, 0);
	uint64_t i = 0;

	misuse_is_misuser = true;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		switch (i++ % 6) {
		case 0: /* more pins than A can have (at most 1) */
			(void)ps_page_unpin_many(a, 2);
			break;
		case 1: /* more references than A can have (at most 3) */
			(void)ps_page_put_many(a, 4);
			break;
		case 2: /* more references than B can have (at most 2) */
			(void)ps_page_put_many(b, 3);
			break;
		case 3: /* a pin B cannot have */
			(void)ps_page_unpin_many(b, 2);
			break;
		default: /* get or pin B: on a LIVE B it holds, then puts */
			if ((i & 1 ? ps_page_get(b) : ps_page_pin(b)) == 0) {
				bool freed = i & 1 ? ps_page_put(b)
						   : ps_page_unpin(b);

				if (freed)
					atomic_fetch_add(&sh->freed, 1);
			}
			break;
		}
	}
	return NULL;
}

START_TEST(stress_misuse_spares_correct_callers)
{
	struct misuse_shared sh;
	pthread_t t[2];

	memset(&sh, 0, sizeof(sh));
	atomic_store(&misuse_correct_reports, 0);
	atomic_store(&misuse_misuser_reports, 0);
	ps_page_set_error_hook(misuse_hook);
	ck_assert_int_eq(ps_page_init(&sh.a, 1), 0);
	sh.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 4;
	ps_test_overlap_init(&sh.ov, 2, sh.iters / 8 ? sh.iters / 8 : 1);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = sh.iters;
	ck_assert_int_eq(pthread_create(&t[0], NULL, misuse_correct, &sh), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, misuse_misuser, &sh), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(atomic_load(&misuse_correct_reports), 0);
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_gt(atomic_load(&misuse_misuser_reports), 0);
	ps_test_overlap_check(&sh.ov, "correct vs misusing thread");
	ck_assert_uint_eq(atomic_load(&sh.revived), atomic_load(&sh.freed));
	ck_assert_uint_eq(raw(&sh.a), mkword(1, 0, 0));
	ck_assert_uint_eq(raw(&sh.b) & (PS_PAGE_LIVE | PS_PAGE_PINS_MASK), 0);
	ck_assert_uint_eq(ps_page_refs(&sh.b), 0);
}
END_TEST

/*
 * Single releases that misuse, against a correct thread, on one page whose
 * pins are always 0 (so every misused unpin is detectable: it borrows). The
 * correct thread holds BASE + 0..2 references by get/put and try_get; the
 * misuser unpins pins nobody has. Each misuse is repaired by its misuser;
 * a correct update that lands in a misuse's window saturates the word
 * instead. Checked: no release ever frees the page (the test holds a
 * reference), is_pinned() never reads true while the word is exact, the
 * correct thread is never reported except for a saturation, and at the end
 * the word is exact (only reference: the test's) or saturated, and
 * saturated only if a saturation was reported.
 */
struct single_misuse {
	struct ps_page page;
	struct ps_test_overlap ov;
	_Atomic(unsigned) violations, correct_reports, saturations;
	_Atomic(uint64_t) misuses, misuse_reports;
};

static struct single_misuse *the_single;

static void single_misuse_hook(const struct ps_page *page,
			       enum ps_page_error error, uint64_t word)
{
	struct single_misuse *sh = the_single;

	(void)page;
	(void)word;
	if (error == PS_PAGE_ERR_SATURATED)
		atomic_fetch_add(&sh->saturations, 1);
	else if (misuse_is_misuser)
		atomic_fetch_add(&sh->misuse_reports, 1);
	else
		atomic_fetch_add(&sh->correct_reports, 1);
}

static void *single_correct(void *arg)
{
	struct single_misuse *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov, 0, 0);

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		bool got = i & 1 ? ps_page_try_get(&sh->page)
				 : ps_page_get(&sh->page) == 0;
		uint64_t w = ps_page_load(&sh->page);

		if (ps__page_word_exact(w) && ps_page_word_pins(w) != 0)
			atomic_fetch_add(&sh->violations, 1);
		if (got && ps_page_put(&sh->page))
			atomic_fetch_add(&sh->violations, 1);
	}
	return NULL;
}

static void *single_misuser(void *arg)
{
	struct single_misuse *sh = arg;
	struct ps_test_side me = ps_test_side(&sh->ov, 1, 0);

	misuse_is_misuser = true;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		if (ps_page_unpin(&sh->page))
			atomic_fetch_add(&sh->violations, 1);
		atomic_fetch_add(&sh->misuses, 1);
	}
	return NULL;
}

START_TEST(stress_single_release_misuse)
{
	struct single_misuse sh;
	uint64_t iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 4;
	pthread_t t[2];
	uint64_t w;

	memset(&sh, 0, sizeof(sh));
	the_single = &sh;
	ps_page_set_error_hook(single_misuse_hook);
	ck_assert_int_eq(ps_page_init(&sh.page, 1), 0);
	ps_test_overlap_init(&sh.ov, 2, iters / 8 ? iters / 8 : 1);
	sh.ov.side[0].min_ops = sh.ov.side[1].min_ops = iters;
	ck_assert_int_eq(pthread_create(&t[0], NULL, single_correct, &sh), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, single_misuser, &sh), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ps_test_overlap_check(&sh.ov, "correct vs single-release misuser");
	ck_assert_uint_eq(atomic_load(&sh.violations), 0);
	ck_assert_uint_eq(atomic_load(&sh.correct_reports), 0);
	w = raw(&sh.page);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"single misuse: %" PRIu64 " misuses, %" PRIu64
			" reported, %u saturations, word 0x%016" PRIx64 "\n",
			atomic_load(&sh.misuses),
			atomic_load(&sh.misuse_reports),
			atomic_load(&sh.saturations), w);
	if (atomic_load(&sh.saturations) == 0) {
		ck_assert_uint_eq(w, mkword(1, 0, 0));
		ck_assert_uint_eq(atomic_load(&sh.misuse_reports),
				  atomic_load(&sh.misuses));
		ck_assert(ps_page_put(&sh.page));
	} else {
		ck_assert_uint_eq(refs_field(w) >> (PS_PAGE_REFS_WIDTH - 1), 1);
		ck_assert(ps_page_is_pinned(&sh.page));
		ck_assert(!ps_page_put(&sh.page));
	}
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

	tc = ps_test_tcase(s, "a free ends a lifetime", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, free_clears_lifetime_flags);
	tcase_add_test(tc, free_keeps_lock_and_writeback);
	tcase_add_test(tc, revive_starts_clean);
	tcase_add_test(tc, next_lifetime_starts_clean);

	tc = ps_test_tcase(s, "lock", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, lock_trylock_unlock);
	tcase_add_test(tc, lock_on_free_and_frozen_pages);
	tcase_add_test(tc, lock_waits_for_the_holder);

	tc = ps_test_tcase(s, "write-back in flight", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, writeback_start_end);
	tcase_add_test(tc, writeback_on_free_and_frozen_pages);
	tcase_add_test(tc, writeback_wait_for_the_end);
	tc = ps_test_tcase(s, "a reference and the lock at once", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, try_get_and_lock_semantics);
	tcase_add_test(tc, try_get_and_lock_refusals);
	tcase_add_test(tc, unlock_and_put_misuse);
	tcase_add_test(tc, try_get_and_lock_waits_holding);
	tcase_add_test(tc, try_get_lock_and_set_semantics);
	tcase_add_test(tc, try_get_lock_and_set_refuses_locked);

	tc = ps_test_tcase(s, "revive with a cache mode", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, revive_cache_free_page);
	tcase_add_test(tc, revive_cache_refusals);

	tc = ps_test_tcase(s, "get or freeze", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, get_or_freeze_free_page);
	tcase_add_test(tc, get_or_freeze_live_page);
	tcase_add_test(tc, get_or_freeze_refusals);
	tcase_add_test(tc, get_or_freeze_starts_clean);

	tc = ps_test_tcase(s, "unfreeze with flag changes", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, unfreeze_change_flags_is_one_step);
	tcase_add_test(tc, unfreeze_change_flags_refusals);

	tc = ps_test_tcase(s, "pin and set flags", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, try_pin_and_set_flags_semantics);
	tcase_add_test(tc, try_pin_and_set_flags_boundaries);

	tc = ps_test_tcase(s, "clear flag if unpinned", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, clear_flag_if_unpinned_semantics);
	tcase_add_test(tc, clear_flag_if_unpinned_free_and_frozen);

	tc = ps_test_tcase(s, "set flags unless frozen", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, set_flags_unless_frozen_semantics);

	tc = ps_test_tcase(s, "cache mode of a free page", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, set_cache_if_free_semantics);
	tcase_add_test(tc, set_cache_if_free_refusals);

	tc = ps_test_tcase(s, "mode and state accessors", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, mode_and_state_accessors);

	tc = ps_test_tcase(s, "regressions", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, regress_change_flags_during_overflow);
	tcase_add_test(tc, regress_unpin_many_beyond_pin_limit);

	tc = ps_test_tcase(s, "misuse spares correct callers", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, regress_misuse_on_frozen_leaves_nothing);
	tcase_add_test(tc, misuse_window_get_vs_revive);
	tcase_add_test(tc, misuse_window_overput_vs_put);
	tcase_add_test(tc, misuse_window_pin_ref_put_vs_unpin);

	tc = ps_test_tcase(s, "single releases repair misuse after the fact",
			   10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, release_misuse_repaired);
	tcase_add_test(tc, get_during_last_put_wins);
	tcase_add_test(tc, borrow_in_flight_saturates);
	tcase_add_test(tc, last_put_waits_for_repair);
	tcase_add_test(tc, cas_increment_on_borrow_not_counted);
	tcase_add_test(tc, cas_release_waits_for_pin_ref_repair);
	tcase_add_test(tc, freeze_zero_spares_the_dying_word);

	tc = ps_test_tcase(s, "huge frames: split and merge", 10);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, split_transitions);
	tcase_add_test(tc, split_word_refuses_counts);
	tcase_add_test(tc, split_refusals);
	tcase_add_test(tc, split_replaces_a_failed_try_get_unit);
	tcase_add_test(tc, split_faults_parts_in_once);
	tcase_add_test(tc, merge_transitions);
	tcase_add_test(tc, split_at_the_pin_limit);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_checked_fixture(tc, hook_setup, hook_teardown);
	tcase_add_test(tc, stress_counts_against_freeze);
	tcase_add_test(tc, stress_limits_concurrent);
	tcase_add_test(tc, stress_exactly_one_free);
	tcase_add_test(tc, stress_lock_excludes);
	tcase_add_test(tc, stress_writeback_excludes);
	tcase_add_test(tc, stress_get_lock_holds_page);
	tcase_add_test(tc, stress_cache_mode_owners);
	tcase_add_test(tc, stress_misuse_spares_correct_callers);
	tcase_add_test(tc, stress_single_release_misuse);
	tcase_add_test(tc, stress_split_against_pins);
	tcase_add_test(tc, split_keeps_a_part_locked);
	tcase_add_test(tc, stress_refused_merge_keeps_counts);
	return s;
}

PS_TEST_MAIN(page_suite)
