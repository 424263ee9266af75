// SPDX-License-Identifier: MIT
/*
 * lib/page.c - the cold half of the page word: refusals, the error hook,
 * the waiting half of the page lock and the cache-mode names. The fast paths
 * are inline in include/pagestate/page.h.
 *
 * Every refusal here runs after an inline operation saw a value it must
 * refuse. Puts, unpins and the compare-and-swap paths wrote nothing; a
 * refused fetch-and-add (get, pin) left its unit in the word, and it is taken
 * back here (M4 below).
 *
 * ---------------------------------------------------------------------------
 * Misuse and concurrency: numbered notes the tests cite
 * ---------------------------------------------------------------------------
 *
 * M1  What can be detected. The word holds counts, not owners. A call is
 *     misuse the word can detect when, at the instant it takes effect, the
 *     word cannot hold what the call assumes: a put or unpin of more
 *     references or pins than the page has, a put of a reference that
 *     belongs to a pin, any count operation on a frozen page, a get or pin
 *     on a free page. These are exactly what the error hook reports. A put
 *     by a thread that holds nothing, on a page that others hold, is not
 *     detectable: it looks exactly like a holder's put (as in Linux). It
 *     takes another holder's reference, and no word of counts can stop it.
 *
 * M2  The guarantee, for detectable misuse: it never makes a correct
 *     concurrent caller fail or be reported, never leaves a LIVE page
 *     without a reference, and never loses or adds a reference. Every
 *     correct call has the effect it would have had without the misuse;
 *     the misuse has none on what the API shows.
 *
 * M3  Releases check before they write. A fetch-and-sub writes first and
 *     checks after. One that releases more than is held leaves its borrow in
 *     the word until it is undone, and a thread that uses the word in that
 *     window sees counts that are too small: its correct put is refused and
 *     blamed on it (a debug build aborts the innocent thread), a last put sees
 *     a holder that is not there, an undo that lands after a revival leaves a
 *     LIVE page with no reference. The victim cannot tell: what it reads is the
 *     same whether it misused the page or another thread did, so no check on
 *     its side can help. Hence put and unpin (and their *_many forms) are one
 *     compare-and-swap (ps__page_cas(), PS__PAGE_SUB) that checks the counts
 *     and writes only a valid word; a refused release writes nothing at all.
 *     The release that drops the last reference clears LIVE in the same CAS, so
 *     a LIVE page always holds a reference, and there is no window between a
 *     last put and a separate claim for a misused get to fall into. What it
 *     costs: uncontended, a load and a CAS instead of one fetch-and-sub (both
 *     one locked instruction on x86), and one CAS instead of two
 *     read-modify-writes for the put that frees. Contended, a CAS fails when
 *     another thread changed the word since the load and retries, so put and
 *     unpin are lock-free instead of wait-free. Keeping the fetch-and-sub for
 *     puts that "cannot underflow" does not work: whether one can is decided by
 *     the counts at the instant of the subtraction, which no earlier look at
 *     the word bounds (every other holder may put in between), and the misusing
 *     caller is exactly the one that does not know it holds too little.
 *
 * M4  Increments keep their fetch-and-add. A correct get or pin holds a
 *     reference, so it finds the page LIVE (M3: with a reference), and only
 *     the limit can refuse it (page.h's headroom argument; that unit is
 *     taken back with a fetch-and-sub, which cannot take the count to zero
 *     because the caller holds a reference). A get or pin that finds the
 *     page free or frozen is misuse, and its unit landed in counts that mean
 *     nothing (not LIVE: refs and pins read 0, and is_pinned checks LIVE),
 *     like a failed try-get's. It is reported first, then taken back by a
 *     compare-and-swap that requires the page still not LIVE and the fields
 *     still to hold the unit. If a revival (get_or_revive) or an unfreeze
 *     rewrote the counts meanwhile, the unit went with them and nothing is
 *     taken back, so the new owner's count stays exact; a fetch-and-sub here
 *     would take the new owner's reference. If the page was revived and
 *     freed again, the CAS may take a failed try-get's unit instead: also a
 *     unit that meant nothing. Reporting before the take-back lets the hook
 *     see the page as the misuse left it (the tests park a misuser in its
 *     hook to run a revival in exactly that window).
 */
#include <pagestate/page.h>

#include <sched.h>
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
		"libpagestate: page %p: %s (word 0x%016llx: refs %llu "
		"pins %llu flags 0x%03llx)\n",
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
	return atomic_exchange_explicit(&error_hook, hook,
					memory_order_acq_rel);
}

static PS_COLD void report(const struct ps_page *page, enum ps_page_error error,
			   uint64_t word)
{
	/* Acquire: pairs with the release in ps_page_set_error_hook(). */
	ps_page_error_hook_t hook = atomic_load_explicit(&error_hook,
							 memory_order_acquire);

	hook(page, error, word);
}

/*
 * A get or pin refused at the limit of a LIVE page put its unit in the word:
 * take it back with the inverse fetch-and-add (wait-free, cannot fail). The
 * caller holds a reference, so this never takes the count to zero (M4).
 */
static void undo_add(struct ps_page *page, uint64_t undo)
{
	if (!undo)
		return;
	/*
	 * Relaxed: this only takes back our own refused delta. The value was
	 * never a valid count, so nothing is published.
	 */
	atomic_fetch_sub_explicit(&page->word, undo, memory_order_relaxed);
}

/*
 * A get or pin on a free or frozen page put its unit in counts that mean
 * nothing. Take it back only while the page is still not LIVE and its fields
 * still hold it (M4): a revival or unfreeze in between rewrote the counts,
 * and the unit is gone with them.
 */
static void take_back(struct ps_page *page, uint64_t undo)
{
	enum ps__page_verdict why;
	uint64_t seen;

	if (!undo)
		return;
	/* Relaxed: removes only a unit that never meant anything. */
	(void)ps__page_cas(page, PS_PAGE_LIVE, 0, 0, 0,
			   undo >> PS_PAGE_REFS_SHIFT,
			   (undo & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT,
			   PS__PAGE_SUB, memory_order_relaxed, &seen, &why);
}

int ps_page_get_refused_slow(struct ps_page *page, uint64_t seen, uint64_t undo)
{
	if (!(seen & PS_PAGE_LIVE)) {
		report(page,
		       seen & PS_PAGE_FROZEN ? PS_PAGE_ERR_FROZEN
					     : PS_PAGE_ERR_GET_ZERO,
		       seen);
		take_back(page, undo);
		return -EINVAL;
	}
	undo_add(page, undo);
	if (seen < PS_PAGE_REF_ONE) {
		/* Only a word built by hand is LIVE with no reference (M3). */
		report(page, PS_PAGE_ERR_GET_ZERO, seen);
		return -EINVAL;
	}
	return -EOVERFLOW;
}

/* A release refused by its compare-and-swap: nothing was written (M3). */
bool ps_page_put_refused_slow(struct ps_page *page, uint64_t seen,
			      uint64_t undo, uint64_t n, uint64_t npins)
{
	enum ps_page_error error;

	(void)undo; /* always 0: releases never write a refused value */
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
 * (other holders may put meanwhile), and a try-get must never end up owning a
 * free. So decide on the current value, including our unit: if it fits now,
 * keep it (the try-get succeeded, and its fetch-and-add already acquired); if
 * not, take it back with a compare-and-swap, which only succeeds while refs
 * exceed the limit and so never reaches zero. This is not ps__page_cas(): its
 * condition is a count *above* a bound, which no mask test expresses.
 */
bool ps_page_try_get_over_slow(struct ps_page *page)
{
	/* Relaxed: the CAS below re-validates against the value it replaces. */
	uint64_t cur = atomic_load_explicit(&page->word, memory_order_relaxed);

	for (;;) {
		if (!(cur & PS_PAGE_LIVE))
			return false; /* frozen meanwhile: count was reset */
		if (cur < ((PS_PAGE_REFS_MAX + 1) << PS_PAGE_REFS_SHIFT))
			return true;
		/* Relaxed: removes only our own unit; publishes nothing. */
		if (atomic_compare_exchange_weak_explicit(&page->word, &cur,
							  cur - PS_PAGE_REF_ONE,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return false;
	}
}

int ps_page_unfreeze_refused_slow(struct ps_page *page, uint64_t seen)
{
	report(page, PS_PAGE_ERR_NOT_FROZEN, seen);
	return -EINVAL;
}

const char *ps_page_cache_mode_name(enum ps_cache_mode mode)
{
	static const char *const names[PS_CACHE_NR] = {
		[PS_CACHE_WB] = "WB",	     [PS_CACHE_WC] = "WC",
		[PS_CACHE_UC_MINUS] = "UC-", [PS_CACHE_UC] = "UC",
		[PS_CACHE_WT] = "WT",	     [PS_CACHE_WP] = "WP",
	};

	if ((unsigned int)mode >= PS_CACHE_NR)
		return "?";
	return names[mode];
}

/* Attempts that only spin before ps_page_lock_slow() starts yielding. */
#define LOCK_SPINS 64

/*
 * Test and test-and-set: wait on a plain load, so waiters do not keep
 * stealing the cache line from the holder, and try the fetch-or only when
 * LOCKED reads clear. After LOCK_SPINS attempts each wait yields the
 * processor: the holder may be a preempted thread on the same CPU.
 */
void ps_page_lock_slow(struct ps_page *page)
{
	for (unsigned int spins = 0;; spins++) {
		/* Relaxed: only a hint; the trylock acquires when it takes. */
		if (!(atomic_load_explicit(&page->word, memory_order_relaxed) &
		      PS_PAGE_LOCKED) &&
		    ps_page_trylock(page))
			return;
		if (spins >= LOCK_SPINS)
			sched_yield();
	}
}

/*
 * Wait on a plain load, as ps_page_lock_slow() does, yielding after
 * LOCK_SPINS looks: the writer-back may be a preempted thread on this CPU,
 * or its I/O may take long. The load that reads WRITEBACK clear acquires.
 */
void ps_page_wait_writeback_slow(struct ps_page *page)
{
	for (unsigned int spins = 0;; spins++) {
		/* Acquire: pairs with ps_page_end_writeback()'s release. */
		if (!(atomic_load_explicit(&page->word, memory_order_acquire) &
		      PS_PAGE_WRITEBACK))
			return;
		if (spins >= LOCK_SPINS)
			sched_yield();
	}
}
