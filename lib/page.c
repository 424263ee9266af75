// SPDX-License-Identifier: MIT
/*
 * lib/page.c - the cold half of the page word: refusals, the error hook,
 * the waiting half of the page lock and the cache-mode names. The fast paths
 * are inline in include/pagestate/page.h.
 *
 * Every refusal here runs after an inline operation saw a value it must
 * refuse. The compare-and-swap paths wrote nothing; a refused fetch-and-add
 * (get, pin) left its unit in the word, and it is taken back here (M4 below); a
 * misused single put or unpin (a fetch-and-sub) is repaired by its own inverse
 * add (M5), and the free that follows a last release is here too (M6).
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
 * M2  The guarantee, for detectable misuse: it never frees a page that is
 *     held, never makes a held pin read as gone, never wraps a count and
 *     never runs a free twice. A misuse that no other thread meets in its
 *     window (the rule) changes nothing the API shows and disturbs no
 *     correct call. A correct call that meets a single release's misuse in
 *     its few-instruction window saturates the word instead (M5): the page
 *     is leaked and reported, never freed while held.
 *
 * M3  Releases: why the *_many() forms and ps_page_unlock_and_put() check
 *     before they write. A fetch-and-sub writes first and checks after; one
 *     that releases more than is held leaves its borrow in the word until it
 *     is repaired, and a thread that uses the word in that window sees
 *     counts that are too small. For a release of n units, n unbounded, that
 *     window can hold any count, so those forms stay one compare-and-swap
 *     (ps__page_cas(), PS__PAGE_SUB) that writes only a valid word; the
 *     release that drops the last reference clears LIVE in the same CAS.
 *     The single put and unpin, the hot paths, are one fetch-and-sub (M5).
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
 *
 * M5  Single releases: one fetch-and-sub, misuse repaired after the fact.
 *     ps_page_put() and ps_page_unpin() subtract their unit first and decide
 *     from the word the fetch-and-sub returned (old). Call a LIVE word exact
 *     when no guard bit is set (each field's top bit: set only above a
 *     limit or below zero) and pins <= refs. A correct release from an
 *     exact word leaves an exact word or the dying word of M6. A release
 *     that takes an exact word to an inexact one (a put with pins >= refs:
 *     a pin's reference, or nothing at all; an unpin with no pin) is the
 *     misuse, and its thread knows it from old alone: it adds its unit back
 *     (wait-free) before it reports, so the hook sees, and every thread that
 *     comes after the repair meets, the word as it was. In the window before
 *     the repair the word is inexact, and every count operation checks old:
 *     a release from an inexact word never frees and never repairs, an
 *     increment onto one never counts as done (a get's unit could make the
 *     word look exact again while counting one reference too few). Either
 *     thread saturates the word instead (refs to PS_PAGE_REFS_SAT, pins to
 *     PS_PAGE_PINS_MAX, flags kept, PS_PAGE_ERR_SATURATED reported): no release
 *     frees it again, it reads as pinned, and every increment is refused at the
 *     limit. The misuser's repair then adds to a saturated word and changes
 *     nothing that matters. So a misuse never frees a held page, never makes a
 *     held pin read as gone, and never wraps a count: the word is exact again
 *     or saturated (leaked, as Linux's refcount_t). Why an exact-looking word
 *     never counts less than is held: an inexact word becomes exact again only
 *     by the repair or by an increment whose old was inexact, and such an
 *     increment is never counted as done, so a word exact again holds at least
 *     every held unit. Bounds: a borrow lands in the top quarter of its field,
 *     a refused increment just above the limit, a saturated refs field 2^25
 *     above that; the zones stay apart while fewer than 2^(width - 2) threads
 *     (2^20 for pins) are inside a window of one word at once.
 *
 * M6  The last release. A release whose old is exact with exactly its unit
 *     left (refs 1) leaves the dying word: LIVE with no counts. It then frees
 *     with a compare-and-swap (ps__page_claim(), acquire) that requires the
 *     dying word and clears LIVE and the lifetime's flags. A try-get, or a
 *     get, that reaches the dying word first is ordered before the release,
 *     as if it had come just before it: it succeeds, the claim fails, and
 *     that holder's release frees the page later (Linux's rcuref does the
 *     same between its put and its dead-marking CAS). A misused release on
 *     the dying word borrows below zero; the claim waits for the misuser's
 *     repair (a few instructions; it yields if the misuser is preempted) and
 *     tries again. So exactly one release per lifetime returns true, and only
 *     once the word holds no reference and no pin. The claim retries after a
 *     change of the flags (flag operations need no reference): if, between two
 *     of its tries, the page was freed by a holder that revived it, revived and
 *     dropped to the dying word again, the claim may free that later lifetime
 *     instead of its holder's release; each lifetime is still freed once, and
 *     only when no one holds it.
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
	case PS_PAGE_ERR_SATURATED:
		return "count saturated after a misuse (page leaked)";
	case PS_PAGE_ERR_SPLIT:
		return "release on a split huge word (release on its parts)";
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
 * What the guard bits of a LIVE word say (M5). A count field whose guard bit
 * is set holds, from the bottom of its guarded half up: units of increments
 * refused at the limit and not yet taken back (OVER), then, for refs, a
 * saturated count (SAT), then, in the top quarter of the field, a count that a
 * misused release took below zero (BORROW). pins > refs with neither guard
 * set is a borrow too: a put took a reference that belongs to a pin.
 */
enum zone { EXACT, OVER, SAT, BORROW };

#define REFS_FIELD(w) ((w) >> PS_PAGE_REFS_SHIFT)
#define PINS_FIELD(w) (((w)&PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT)
/* Lowest borrowed value of a field of @width bits: its top quarter. */
#define BORROW_FROM(width) (UINT64_C(3) << ((width)-2))

static enum zone zone_of(uint64_t w)
{
	const uint64_t refs = REFS_FIELD(w), pins = PINS_FIELD(w);

	if (refs >= BORROW_FROM(PS_PAGE_REFS_WIDTH) ||
	    pins >= BORROW_FROM(PS_PAGE_PINS_WIDTH))
		return BORROW;
	/* SAT's neighbourhood: from 2^(w-1) + 2^(w-4) up to BORROW. */
	if (refs >= (UINT64_C(1) << (PS_PAGE_REFS_WIDTH - 1)) +
			    (UINT64_C(1) << (PS_PAGE_REFS_WIDTH - 4)))
		return SAT;
	if (w & PS_PAGE_GUARDS)
		return OVER;
	return pins > refs ? BORROW : EXACT;
}

/*
 * Saturate a LIVE word (M5): refs to PS_PAGE_REFS_SAT, pins to
 * PS_PAGE_PINS_MAX, flags kept. Nothing frees it again, it reads as pinned,
 * and every increment is refused at the limit. A page no longer LIVE is left
 * alone (a free or frozen page's counts mean nothing). Returns true if this
 * call wrote the word.
 */
static bool saturate(struct ps_page *page)
{
	/* Relaxed: a guess; the CAS re-validates. */
	uint64_t cur = atomic_load_explicit(&page->word, memory_order_relaxed);
	const uint64_t sat = (PS_PAGE_REFS_SAT << PS_PAGE_REFS_SHIFT) |
			     (PS_PAGE_PINS_MAX << PS_PAGE_PINS_SHIFT);

	while (cur & PS_PAGE_LIVE) {
		/*
		 * Relaxed: a saturated word publishes nothing (no release of it
		 * frees, no freeze succeeds), so nothing pairs with this store.
		 */
		if (atomic_compare_exchange_weak_explicit(
			    &page->word, &cur, (cur & PS_PAGE_FLAGS_MASK) | sat,
			    memory_order_relaxed, memory_order_relaxed))
			return true;
	}
	return false;
}

/* Attempts that only spin before a waiter starts yielding (see below). */
#define WAIT_SPINS 64

static void backoff(unsigned int spins)
{
	if (spins >= WAIT_SPINS)
		sched_yield();
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

/*
 * A release on a free or frozen page took @delta from counts that mean
 * nothing. Give it back while the page is still not LIVE, so that the word
 * ends as it was; a revival or unfreeze in between rewrote the counts, and
 * the borrow went with them (as M4's take-back). This is not ps__page_cas():
 * the fields may hold anything here, and no limit applies to them.
 */
static void give_back(struct ps_page *page, uint64_t delta)
{
	/* Relaxed: a guess; the CAS re-validates. */
	uint64_t cur = atomic_load_explicit(&page->word, memory_order_relaxed);

	/*
	 * Relaxed: gives back only a borrow from counts that meant nothing;
	 * it publishes nothing and pairs with nothing.
	 */
	while (!(cur & PS_PAGE_LIVE) &&
	       !atomic_compare_exchange_weak_explicit(&page->word, &cur,
						      cur + delta,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

int ps_page_get_refused_slow(struct ps_page *page, uint64_t seen, uint64_t undo)
{
	if (!(seen & PS_PAGE_LIVE) && (seen & PS_PAGE_SPLIT)) {
		/*
		 * A huge word split, being split or merged: not misuse, the
		 * caller goes to the sub-words (or, merging, back to the huge
		 * word). The unit means nothing; take it back (M4).
		 */
		take_back(page, undo);
		return -ESTALE;
	}
	if (!(seen & PS_PAGE_LIVE)) {
		report(page,
		       seen & PS_PAGE_FROZEN ? PS_PAGE_ERR_FROZEN
					     : PS_PAGE_ERR_GET_ZERO,
		       seen);
		take_back(page, undo);
		return -EINVAL;
	}
	if (zone_of(seen) == BORROW) {
		/*
		 * A misused release is in flight and our unit may hide its
		 * borrow from the next reader: saturate, keeping the unit (M5).
		 */
		if (saturate(page))
			report(page, PS_PAGE_ERR_SATURATED, seen);
		return -EOVERFLOW;
	}
	undo_add(page,
		 undo); /* at a limit, or saturated: we hold a reference */
	return -EOVERFLOW;
}

/*
 * The free that follows the fetch-and-sub of a last reference (M6): the word
 * is LIVE with no counts, and the compare-and-swap of ps__page_claim() clears
 * LIVE and the lifetime's flags. It fails when a try-get took the page in
 * between (that holder's put frees it), when another release freed it, or
 * when the word saturated. A misused release on the dying word borrows below
 * zero and is repaired at once by its misuser, before it reports: wait for
 * that, then try again.
 */
static bool free_dying(struct ps_page *page)
{
	for (unsigned int spins = 0;; spins++) {
		uint64_t cur;

		if (ps__page_claim(page)) /* acquire: see ps__page_claim() */
			return true;
		/* Relaxed: the claim above re-validates what it acts on. */
		cur = atomic_load_explicit(&page->word, memory_order_relaxed);
		if (!(cur & PS_PAGE_LIVE) || zone_of(cur) != BORROW)
			return false;
		backoff(spins);
	}
}

/*
 * What ps__page_release() could not decide from @old, the word its
 * fetch-and-sub returned (M5, M6).
 */
bool ps_page_release_slow(struct ps_page *page, uint64_t old, bool pin)
{
	const uint64_t delta = PS_PAGE_REF_ONE + (pin ? PS_PAGE_PIN_ONE : 0);
	const uint64_t refs = REFS_FIELD(old), pins = PINS_FIELD(old);

	if (!(old & PS_PAGE_LIVE)) {
		/* Free or frozen: the borrow is in counts that mean nothing. */
		report(page,
		       old & PS_PAGE_SPLIT    ? PS_PAGE_ERR_SPLIT
		       : old & PS_PAGE_FROZEN ? PS_PAGE_ERR_FROZEN
					      : PS_PAGE_ERR_REF_UNDERFLOW,
		       old);
		give_back(page, delta);
		return false;
	}
	switch (zone_of(old)) {
	case BORROW:
		/* Another misuse is in flight: no exact count is left (M5). */
		if (saturate(page))
			report(page, PS_PAGE_ERR_SATURATED, old);
		return false;
	case SAT:
		(void)saturate(page); /* keep it centred; reported already */
		return false;
	case OVER:
	case EXACT:
		break;
	}
	if (pin ? pins == 0 : pins >= refs) {
		/*
		 * This release made an exact word inexact: it is the misuse.
		 * Repair first (the inverse add, wait-free), then report, so
		 * that the hook sees, and every other thread meets, the word
		 * as it was (M5).
		 *
		 * Relaxed: restores our own borrow; publishes nothing.
		 */
		atomic_fetch_add_explicit(&page->word, delta,
					  memory_order_relaxed);
		report(page,
		       pin ? PS_PAGE_ERR_PIN_UNDERFLOW
			   : PS_PAGE_ERR_REF_UNDERFLOW,
		       old);
		return false;
	}
	if (refs == 1)
		return free_dying(page); /* the last reference (M6) */
	return false; /* refs above the limit: refused gets in flight */
}

/*
 * A release refused by its compare-and-swap: nothing was written (M3). A
 * guard bit made it refuse (PS__PAGE_GUARDED), or pins > refs did (a put of a
 * pin's reference, which sets no guard bit): a refused increment or a misused
 * single release is in flight, and both are taken back within a few
 * instructions; wait for that and try again. A saturated word is left as it is.
 */
bool ps_page_put_refused_slow(struct ps_page *page, uint64_t seen,
			      uint64_t undo, uint64_t n, uint64_t npins)
{
	enum ps_page_error error;

	(void)undo; /* always 0: releases never write a refused value */
	for (unsigned int spins = 0;
	     n != 0 && n <= PS_PAGE_REFS_MAX && npins <= PS_PAGE_PINS_MAX &&
	     (seen & PS_PAGE_LIVE) &&
	     ((seen & PS_PAGE_GUARDS) || PINS_FIELD(seen) > REFS_FIELD(seen));
	     spins++) {
		enum ps__page_verdict why;

		if (zone_of(seen) == SAT)
			return false;
		backoff(spins);
		/* Release, as ps__page_sub(): this is its retry. */
		if (ps__page_cas(page, PS_PAGE_LIVE, PS_PAGE_LIVE, 0, 0, n,
				 npins, PS__PAGE_SUB, memory_order_release,
				 &seen, &why)) {
			if (seen >= (n + 1) << PS_PAGE_REFS_SHIFT)
				return false;
			/* Acquire: it freed the page (ps__page_sub()). */
			(void)atomic_load_explicit(&page->word,
						   memory_order_acquire);
			return true;
		}
	}
	if (n == 0 || n > PS_PAGE_REFS_MAX || npins > PS_PAGE_PINS_MAX)
		error = PS_PAGE_ERR_BAD_COUNT;
	else if (seen & PS_PAGE_SPLIT)
		error = PS_PAGE_ERR_SPLIT;
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

/*
 * ps_page_try_get() found @old, the word its fetch-and-add returned, LIVE but
 * not exact or at the limit. If a misused release was in flight (a borrow),
 * our unit may hide it from the next reader, so the word saturates and the
 * unit stays in it (M5); else the limit decides (above).
 */
bool ps_page_try_get_slow(struct ps_page *page, uint64_t old)
{
	if (zone_of(old) == BORROW) {
		if (saturate(page))
			report(page, PS_PAGE_ERR_SATURATED, old);
		return false;
	}
	return ps_page_try_get_over_slow(page);
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

/*
 * ---------------------------------------------------------------------------
 * Huge frames: split and merge (docs/page.md, "Huge frames")
 * ---------------------------------------------------------------------------
 *
 * H1  A huge word is split in place of being frozen: the first CAS clears
 *     LIVE and sets FROZEN | SPLIT together, so its holders' gets and pins
 *     fail with -ESTALE (SPLIT; not misuse) rather than being reported as
 *     count operations on a frozen page, and tries fail (not LIVE).
 * H2  The counts it captured in that CAS are exact: every release before it
 *     is in the word, and none after it counts (a release on a SPLIT word is
 *     reported and undone). Each part gets them whole: a reference or pin
 *     of the frame is one on each part.
 * H3  Nothing is lost: DIRTY and WRITE_PINNED set on the huge word after the
 *     freeze (flags need no reference) are copied onto every part before the
 *     split ends, and the merge carries a DIRTY set on a frozen part onto
 *     the huge word after it became whole.
 */

/* Flags a part inherits from its frame (and the frame from its parts). */
#define HUGE_COPIED                                                  \
	(PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED | PS_PAGE_CACHE_MASK | \
	 PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE | PS_PAGE_POISONED)
/* Of those, what must be equal on every part for a merge. */
#define HUGE_UNIFORM                                                   \
	(PS_PAGE_CACHE_MASK | PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE | \
	 PS_PAGE_POISONED)
/* What makes a word busy for a split or a merge. */
#define HUGE_BUSY \
	(PS_PAGE_FROZEN | PS_PAGE_SPLIT | PS_PAGE_LOCKED | PS_PAGE_WRITEBACK)
#define COUNTS_MASK (PS_PAGE_REFS_MASK | PS_PAGE_PINS_MASK)
/* The parts' memory is touched for writing once per this many bytes. */
#define PARTS_TOUCH_BYTES 4096u

/*
 * Set @page's word to what @next() makes of it, in a CAS loop that gives up
 * when @stop() holds for the current word. One loop for every step of split
 * and merge (each passes its own pair of rules).
 */
struct step {
	uint64_t stop_mask, stop_value; /* give up when (w & mask) != value */
	uint64_t clear, set;		/* next = (w & ~clear) | set */
};

static bool step(struct ps_page *page, const struct step *s, uint64_t *seen,
		 memory_order order)
{
	/* Relaxed: a guess; the CAS re-validates. */
	uint64_t cur = atomic_load_explicit(&page->word, memory_order_relaxed);

	for (;;) {
		if ((cur & s->stop_mask) != s->stop_value) {
			*seen = cur;
			return false;
		}
		/* @order: each caller names the pair it belongs to. */
		if (atomic_compare_exchange_weak_explicit(
			    &page->word, &cur, (cur & ~s->clear) | s->set,
			    order, memory_order_relaxed)) {
			*seen = cur;
			return true;
		}
	}
}

/*
 * Free again the parts [0, n) a refused split wrote (they were free; LOCKED
 * taken on one since is its holder's, kept).
 */
static void split_undo_parts(struct ps_page *sub, size_t n)
{
	const struct step free_part = {
		0, 0, PS_PAGE_LIVE | COUNTS_MASK | PS_PAGE_LIFE_FLAGS, 0};
	uint64_t seen;

	/* Release: as the split's own writes of the parts. */
	for (size_t i = 0; i < n; i++)
		(void)step(&sub[i], &free_part, &seen, memory_order_release);
}

/* The first part after @sub[@i] that begins a block of PARTS_TOUCH_BYTES. */
static size_t next_block(const struct ps_page *sub, size_t i)
{
	const uintptr_t off = (uintptr_t)&sub[i] & (PARTS_TOUCH_BYTES - 1);
	const size_t n = (PARTS_TOUCH_BYTES - off) / sizeof(*sub);

	return i + (n ? n : 1);
}

int ps_page_split(struct ps_page *huge, struct ps_page *sub, size_t nsub,
		  size_t *where)
{
	uint64_t old, seen, part, copied, any = 0;
	bool live;

	if (!nsub)
		return -EINVAL;
	if (where)
		*where = nsub;
	/*
	 * The parts must be free; look before freezing, so that a refusal
	 * changes nothing. Step (2) looks again, in its CAS: a part may be
	 * locked meanwhile (LOCKED needs no reference).
	 */
	old = ps_page_load(huge);
	if ((old & PS_PAGE_SPLIT) && !(old & PS_PAGE_FROZEN))
		return -EALREADY;
	if (old & HUGE_BUSY)
		return -EBUSY;
	/*
	 * The first part of each 4 KiB of them is read by an RMW that writes
	 * what it reads (invisible to everyone), so that a lazily mapped array
	 * (a frame array) takes one write fault here, not a read fault that
	 * maps the zero page and a second fault that copies it at the first
	 * store. Then every part is read (without a branch per part); only a
	 * refusal looks for the first part in use. Relaxed: a look; the
	 * contract keeps the parts free, and (1) orders the rest.
	 */
	for (size_t i = 0; i < nsub; i = next_block(sub, i))
		any |= atomic_fetch_add_explicit(&sub[i].word, 0,
						 memory_order_relaxed);
#pragma GCC unroll 8
	for (size_t i = 0; i < nsub; i++)
		/* Relaxed: as above. */
		any |= atomic_load_explicit(&sub[i].word, memory_order_relaxed);
	if (any & (PS_PAGE_LIVE | HUGE_BUSY)) {
		for (size_t i = 0; where && i < nsub; i++)
			if (ps_page_load(&sub[i]) &
			    (PS_PAGE_LIVE | HUGE_BUSY)) {
				*where = i;
				break;
			}
		return -EBUSY;
	}
	/* (1) Acquire: pairs with the release of every earlier put/unpin. */
	/* Relaxed: a guess; the CAS below re-validates. */
	old = atomic_load_explicit(&huge->word, memory_order_relaxed);
	for (;;) {
		if ((old & PS_PAGE_SPLIT) && !(old & PS_PAGE_FROZEN))
			return -EALREADY;
		if ((old & HUGE_BUSY) ||
		    ((old & PS_PAGE_LIVE) &&
		     (!ps__page_word_exact(old) || old < PS_PAGE_REF_ONE)))
			return -EBUSY;
		/* Acquire: see (1) above. */
		if (atomic_compare_exchange_weak_explicit(
			    &huge->word, &old,
			    (old & ~PS_PAGE_LIVE) | PS_PAGE_FROZEN |
				    PS_PAGE_SPLIT,
			    memory_order_acquire, memory_order_relaxed))
			break;
	}
	live = old & PS_PAGE_LIVE;
	copied = old & HUGE_COPIED &
		 (live ? ~UINT64_C(0) : ~PS_PAGE_LIFE_FLAGS);
	part = copied | (live ? (old & COUNTS_MASK) | PS_PAGE_LIVE : 0);
	/*
	 * (2) Each part, which must be free: one CAS each. Not a plain store:
	 * LOCKED needs no reference, and a holder may set it on a free part
	 * between the look above and here (ps_prot_set_inaccessible() locks a
	 * frame that may be free, through a lookup made before a merge): a
	 * store would wipe its lock. What else may land on a free word (a
	 * failed try-get's unit, a misused get's) means nothing and is taken
	 * back only while the word is not LIVE (M4): the CAS replaces it.
	 * Release: pairs with the acquire of the first try-get on a part.
	 */
	for (size_t i = 0; i < nsub; i++) {
		const struct step write = {PS_PAGE_LIVE | HUGE_BUSY, 0,
					   ~UINT64_C(0), part};

		if (PS_UNLIKELY(!step(&sub[i], &write, &seen,
				      memory_order_release))) {
			const struct step back = {
				PS_PAGE_FROZEN | PS_PAGE_SPLIT,
				PS_PAGE_FROZEN | PS_PAGE_SPLIT,
				PS_PAGE_FROZEN | PS_PAGE_SPLIT | COUNTS_MASK,
				old & (PS_PAGE_LIVE | COUNTS_MASK)};

			split_undo_parts(sub, i);
			/* Release: gives the frame back to its holders. */
			(void)step(huge, &back, &seen, memory_order_release);
			if (where)
				*where = i;
			return -EBUSY;
		}
	}
	/*
	 * (3) and (4): end the split, from exactly the word whose DIRTY and
	 * WRITE_PINNED are on every part: copy any set on the huge word since
	 * (1) first (H3), and try again if the flags change meanwhile.
	 */
	/* Relaxed: a guess; the CAS re-validates. */
	old = atomic_load_explicit(&huge->word, memory_order_relaxed);
	for (;;) {
		/* A free frame's DIRTY belongs to its last life: not copied. */
		const uint64_t late = live ? old &
						      (PS_PAGE_DIRTY |
						       PS_PAGE_WRITE_PINNED) &
						      ~copied
					   : 0;

		for (size_t i = 0; late && i < nsub; i++)
			(void)ps_page_fetch_set_flags(&sub[i], late);
		copied |= late;
		/* Release: pairs with ps_page_huge_state()'s acquire. */
		if (atomic_compare_exchange_weak_explicit(
			    &huge->word, &old,
			    old & ~(PS_PAGE_FROZEN | COUNTS_MASK |
				    PS_PAGE_LIFE_FLAGS),
			    memory_order_release, memory_order_relaxed))
			return 0;
	}
}

/*
 * Give the parts [0, n) a refused merge froze back to their holders, with the
 * counts they were frozen with (@counts: LIVE and part 0's counts, which every
 * frozen part had, or 0 for free parts). The counts are rewritten, not kept: a
 * failed try-get, or a get or pin refused with -ESTALE, may have left its
 * meaningless unit in a frozen part, and keeping it would make it count.
 */
static void merge_undo_parts(struct ps_page *sub, size_t n, uint64_t counts)
{
	const struct step thaw = {0, 0,
				  PS_PAGE_FROZEN | PS_PAGE_SPLIT | COUNTS_MASK,
				  counts};
	uint64_t seen;

	/* Release: as an unfreeze (pairs with the next try-get's acquire). */
	for (size_t i = 0; i < n; i++)
		(void)step(&sub[i], &thaw, &seen, memory_order_release);
}

/* Why part word @w cannot merge with part 0's word @w0 (OK if it can). */
static enum ps_page_merge_reason merge_differs(uint64_t w, uint64_t w0)
{
	if (w & HUGE_BUSY)
		return PS_PAGE_MERGE_BUSY;
	if ((w ^ w0) & PS_PAGE_LIVE)
		return PS_PAGE_MERGE_REFS;
	if ((w & PS_PAGE_LIVE) &&
	    (!ps__page_word_exact(w) || w < PS_PAGE_REF_ONE))
		return PS_PAGE_MERGE_BUSY;
	if ((w & PS_PAGE_LIVE) && ((w ^ w0) & PS_PAGE_REFS_MASK))
		return PS_PAGE_MERGE_REFS;
	if ((w & PS_PAGE_LIVE) && ((w ^ w0) & PS_PAGE_PINS_MASK))
		return PS_PAGE_MERGE_PINS;
	if ((w ^ w0) & HUGE_UNIFORM)
		return PS_PAGE_MERGE_MODE;
	return PS_PAGE_MERGE_OK;
}

int ps_page_merge(struct ps_page *huge, struct ps_page *sub, size_t nsub,
		  struct ps_page_merge_refusal *why)
{
	const struct step claim = {PS_PAGE_SPLIT | PS_PAGE_FROZEN,
				   PS_PAGE_SPLIT, 0, PS_PAGE_FROZEN};
	uint64_t seen, w0 = 0, dirty = 0;
	struct step whole;

	if (why)
		*why = (struct ps_page_merge_refusal){0, PS_PAGE_MERGE_OK, 0};
	if (!nsub)
		return -EINVAL;
	/* Acquire: pairs with the release that ended the split. */
	if (!step(huge, &claim, &seen, memory_order_acquire))
		return (seen & PS_PAGE_SPLIT) ? -EBUSY : -EINVAL;
	for (size_t i = 0; i < nsub; i++) {
		/* Relaxed: a guess; the CAS re-validates. */
		uint64_t cur = atomic_load_explicit(&sub[i].word,
						    memory_order_relaxed);
		enum ps_page_merge_reason r;

		if (i == 0)
			w0 = cur;
		for (;;) {
			r = merge_differs(cur, w0);
			if (r != PS_PAGE_MERGE_OK)
				break;
			/* Acquire: pairs with the releases before (H2). */
			if (atomic_compare_exchange_weak_explicit(
				    &sub[i].word, &cur,
				    (cur & ~PS_PAGE_LIVE) | PS_PAGE_FROZEN |
					    PS_PAGE_SPLIT,
				    memory_order_acquire, memory_order_relaxed))
				break;
			if (i == 0)
				w0 = cur;
		}
		if (r != PS_PAGE_MERGE_OK) {
			const struct step unclaim = {0, 0, PS_PAGE_FROZEN, 0};

			merge_undo_parts(sub, i,
					 w0 & PS_PAGE_LIVE
						 ? w0 & (PS_PAGE_LIVE |
							 COUNTS_MASK)
						 : 0);
			/* Release: the split word as it was. */
			(void)step(huge, &unclaim, &seen, memory_order_release);
			if (why)
				*why = (struct ps_page_merge_refusal){i, r,
								      cur};
			return -EBUSY;
		}
		dirty |= cur;
	}
	/* The frame becomes whole with part 0's counts and flags (H3). */
	dirty &= PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED;
	whole = (struct step){PS_PAGE_FROZEN | PS_PAGE_SPLIT,
			      PS_PAGE_FROZEN | PS_PAGE_SPLIT,
			      PS_PAGE_FROZEN | PS_PAGE_SPLIT | COUNTS_MASK |
				      HUGE_COPIED,
			      (w0 & (PS_PAGE_LIVE | HUGE_COPIED |
				     (w0 & PS_PAGE_LIVE ? COUNTS_MASK : 0))) |
				      ((w0 & PS_PAGE_LIVE) ? dirty : 0)};
	/* Release: pairs with the acquire of the next try-get on @huge. */
	(void)step(huge, &whole, &seen, memory_order_release);
	for (size_t i = 0; i < nsub; i++) {
		const struct step release_part = {0, 0,
						  PS_PAGE_FROZEN |
							  PS_PAGE_SPLIT |
							  PS_PAGE_LIVE |
							  COUNTS_MASK |
							  PS_PAGE_LIFE_FLAGS,
						  0};

		/* Release: the part is free (pairs with a later revival). */
		(void)step(&sub[i], &release_part, &seen, memory_order_release);
		if ((w0 & PS_PAGE_LIVE) &&
		    (seen & ~dirty & (PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED)))
			(void)ps_page_fetch_set_flags(
				huge,
				seen & (PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED));
	}
	return 0;
}
