// SPDX-License-Identifier: MIT
/*
 * lib/page.c - the cold half of the page word: refusals, undo and the error
 * hook. The fast paths are inline in include/pagestate/page.h.
 *
 * Every function here runs after an inline operation saw a value it must
 * refuse. For a fetch-and-add path the refused delta is already in the word,
 * so it is taken back first (with the inverse fetch-and-add: wait-free, and
 * it cannot fail). The misuse is reported afterwards, so the hook sees a
 * word that is already back to what it was.
 */
#include <pagestate/page.h>

#include <stdio.h>
#include <stdlib.h>

/* Acquire/release pair: set_error_hook() publishes, report() reads. */
static PS_ATOMIC(ps_page_error_hook_t) error_hook = ps_page_default_error_hook;

const char *ps_page_error_name(enum ps_page_error error)
{
	switch (error) {
	case PS_PAGE_ERR_REF_UNDERFLOW:
		return "reference underflow";
	case PS_PAGE_ERR_PIN_UNDERFLOW:
		return "pin underflow";
	case PS_PAGE_ERR_GET_ZERO:
		return "get on a page with no reference (use after free)";
	case PS_PAGE_ERR_FROZEN:
		return "count operation on a frozen page";
	case PS_PAGE_ERR_NOT_FROZEN:
		return "unfreeze of a page that is not frozen";
	case PS_PAGE_ERR_BAD_COUNT:
		return "bad count for a *_many() operation";
	}
	return "unknown page error";
}

void ps_page_default_error_hook(const struct ps_page *page,
				enum ps_page_error error, uint64_t word)
{
	fprintf(stderr,
		"libpagestate: page %p: %s (word 0x%016llx: refs %llu pins %llu "
		"flags 0x%03llx)\n",
		(const void *)page, ps_page_error_name(error),
		(unsigned long long)word,
		(unsigned long long)ps_page_word_refs(word),
		(unsigned long long)ps_page_word_pins(word),
		(unsigned long long)ps_page_word_flags(word));
#ifndef NDEBUG
	abort();
#endif
}

ps_page_error_hook_t ps_page_set_error_hook(ps_page_error_hook_t hook)
{
	if (!hook)
		hook = ps_page_default_error_hook;
	/* Acq_rel: release publishes @hook to report(); acquire for the old. */
	return atomic_exchange_explicit(&error_hook, hook, memory_order_acq_rel);
}

static PS_COLD void report(const struct ps_page *page, enum ps_page_error error,
			   uint64_t word)
{
	/* Acquire: pairs with the release in ps_page_set_error_hook(). */
	ps_page_error_hook_t hook =
		atomic_load_explicit(&error_hook, memory_order_acquire);

	hook(page, error, word);
}

/*
 * A refused fetch-and-add put its delta in the word. It is taken back with the
 * inverse fetch-and-add (wait-free, cannot fail) unless the page is frozen:
 * a freezer may rewrite the counts at any moment (unfreeze), and an undo
 * landing after that would corrupt them. There the unit stays, meaningless
 * like a failed try-get's, until unfreeze wipes it. A free page has no such
 * writer (init must not race with holders), so the undo is exact there.
 */
static void undo_add(struct ps_page *page, uint64_t seen, uint64_t undo)
{
	if (!undo || (seen & PS_PAGE_FROZEN))
		return;
	/*
	 * Relaxed: this only takes back our own refused delta. The value was
	 * never a valid count, so nothing is published.
	 */
	atomic_fetch_sub_explicit(&page->word, undo, memory_order_relaxed);
}

int ps_page_get_refused_slow(struct ps_page *page, uint64_t seen,
			     uint64_t undo)
{
	undo_add(page, seen, undo);
	if (seen & PS_PAGE_FROZEN) {
		report(page, PS_PAGE_ERR_FROZEN, seen);
		return -EINVAL;
	}
	if (!(seen & PS_PAGE_LIVE) || seen < PS_PAGE_REF_ONE) {
		report(page, PS_PAGE_ERR_GET_ZERO, seen);
		return -EINVAL;
	}
	return -EOVERFLOW;
}

bool ps_page_put_refused_slow(struct ps_page *page, uint64_t seen,
			      uint64_t undo, uint64_t n, uint64_t npins)
{
	enum ps_page_error error;

	/*
	 * Refs sit at the top of the word and pins above the flags, so adding
	 * the delta back (subtracting its negation) restores both exactly,
	 * whatever borrow happened.
	 */
	undo_add(page, seen, -undo);
	if (n == 0 || n > PS_PAGE_REFS_MAX || npins > PS_PAGE_PINS_MAX)
		error = PS_PAGE_ERR_BAD_COUNT;
	else if (seen & PS_PAGE_FROZEN)
		error = PS_PAGE_ERR_FROZEN;
	else if ((seen & PS_PAGE_LIVE) && ps_page_word_pins(seen) < npins)
		error = PS_PAGE_ERR_PIN_UNDERFLOW;
	else
		error = PS_PAGE_ERR_REF_UNDERFLOW;
	report(page, error, seen);
	return false;
}

/*
 * ps_page_try_get() added a unit to a LIVE page whose refs were already at
 * the limit. A plain undo could be the decrement that takes the page to zero
 * (other holders may put meanwhile), and a try-get must never end up owning
 * a free. So decide on the current value, including our unit: if it fits
 * now, keep it (the try-get succeeded, and its fetch-and-add already
 * acquired); if not, take it back with a compare-and-swap, which only
 * succeeds while refs exceed the limit and so never reaches zero. This is not
 * ps__page_cas(): its condition is a count *above* a bound, which no mask
 * test expresses.
 */
bool ps_page_try_get_over_slow(struct ps_page *page)
{
	/* Relaxed: the CAS below re-validates against the value it replaces. */
	uint64_t cur = atomic_load_explicit(&page->word, memory_order_relaxed);

	for (;;) {
		if (!(cur & PS_PAGE_LIVE))
			return false; /* frozen meanwhile: the count was reset */
		if (cur < ((PS_PAGE_REFS_MAX + 1) << PS_PAGE_REFS_SHIFT))
			return true;
		/* Relaxed: removes only our own unit; publishes nothing. */
		if (atomic_compare_exchange_weak_explicit(
			    &page->word, &cur, cur - PS_PAGE_REF_ONE,
			    memory_order_relaxed, memory_order_relaxed))
			return false;
	}
}

int ps_page_unfreeze_refused_slow(struct ps_page *page, uint64_t seen)
{
	report(page, PS_PAGE_ERR_NOT_FROZEN, seen);
	return -EINVAL;
}
