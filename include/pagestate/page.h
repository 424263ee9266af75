/* SPDX-License-Identifier: MIT */
/*
 * pagestate/page.h - one 64-bit atomic word per page: exact references,
 * exact DMA pins and the page's flags.
 *
 * A struct ps_page holds the state of one page (a frame of guest memory, a
 * page of a DMA buffer): the references its holders took, the pins devices
 * hold on it, and its flags. Every operation is one atomic instruction or a
 * compare-and-swap loop on that word, and no other code touches it. Why the
 * word is built as it is, the proofs behind its limits and orderings, and how
 * it compares with Linux's struct page are in docs/page.md.
 *
 * ---------------------------------------------------------------------------
 * Word layout (bit 63 on the left; ABI)
 * ---------------------------------------------------------------------------
 *
 *   63                          35 34                    13 12           0
 *   +-----------------------------+------------------------+-------------+
 *   |         refs (29)           |       pins (22)        | flags (13)  |
 *   +-----------------------------+------------------------+-------------+
 *
 *   flags, bit 0 upwards:
 *     0 D  DIRTY         contents differ from the backing copy
 *     1 W  WRITEBACK     a write-back of the page is in flight
 *     2 F  FROZEN        exclusively owned by a freezer (ps_page_freeze())
 *     3 L  LOCKED        the page's bit lock for slow paths (ps_page_lock())
 *     4 P  WRITE_PINNED  a pin for write was taken (see "Pinned")
 *     5 E  PRIVATE       encryption state: private/encrypted; clear = shared
 *     6 I  INACCESSIBLE  CPU access needs the make-accessible hook first
 *     7 X  POISONED      quarantined: never handed out or converted again
 *     8-10 C CACHE       cache mode, 3 bits (enum ps_cache_mode); 0 is
 *                        write-back
 *     11 V LIVE          the page has owners (see "States")
 *     12 S SPLIT         a huge frame's word whose state lives in its
 *                        sub-words (see "Huge frames")
 *
 *   refs  Every reference, pins included: refs >= pins always.
 *   pins  References taken for DMA (ps_page_pin()): a pin adds one to both
 *         fields in one step.
 *   Both counts are meaningful only while LIVE; on a free or frozen page the
 *   accessors read 0 whatever the fields hold.
 *
 * An all-zero word is a free page: not LIVE, no references, no pins, cache
 * mode write-back, shared. Arrays of pages can therefore come from calloc()
 * or a lazily zero-filled mmap() without being initialised page by page.
 *
 * ---------------------------------------------------------------------------
 * States
 * ---------------------------------------------------------------------------
 *
 *   free    neither LIVE nor FROZEN: no owner. A revival
 *           (ps_page_get_or_revive(), ps_page_get_or_revive_cache()) makes it
 *           live with one reference; a claim (ps_page_get_or_freeze()) makes
 *           it frozen. Try-gets and try-pins fail on it.
 *   live    LIVE, with refs >= 1. The put or unpin that drops the last
 *           reference frees the page in the same atomic step and returns
 *           true: its caller frees whatever the page stands for. Exactly one
 *           put or unpin per lifetime returns true.
 *   frozen  FROZEN: owned exclusively by its freezer, which froze a live page
 *           holding exactly the references it accounts for and no pins
 *           (ps_page_freeze()), or claimed a free one. Every try-get and
 *           try-pin fails, and every get, pin, put or unpin is misuse, until
 *           the freezer's unfreeze leaves it live with the references it
 *           chooses, or free.
 *
 * Flags stay writable in every state: a flag operation needs no reference.
 * A free ends a lifetime: the step that frees a page, and the revival or claim
 * that gives it a new owner, clear PS_PAGE_LIFE_FLAGS (DIRTY, WRITE_PINNED),
 * so the next owner starts clean: an owner that must write a dirty page back
 * looks at DIRTY while it still holds a reference. PRIVATE, INACCESSIBLE,
 * POISONED and the cache mode describe the memory and are kept; LOCKED and
 * WRITEBACK are left to the thread that set them, which holds a reference
 * until it clears them. A free POISONED page is never revived.
 *
 * ---------------------------------------------------------------------------
 * Pinned
 * ---------------------------------------------------------------------------
 *
 * A pin is a reference taken for DMA, released only by an unpin (a put of a
 * pin's reference is misuse). "Pinned" is exact: ps_page_is_pinned() is true
 * if and only if the page is live with at least one pin at the instant of its
 * load. (Linux's folio_maybe_dma_pinned() may answer true for a small folio
 * with 1024 ordinary references.) WRITE_PINNED is set in the step that takes
 * a pin for write (ps_page_try_pin_and_set_flags()) and cleared only by a step
 * that sees no pin (ps_page_clear_flag_if_unpinned()): it may over-report,
 * and never under-reports while a pin for write is held
 * (ps_page_word_pinned_for_write()).
 *
 * ---------------------------------------------------------------------------
 * Limits and misuse
 * ---------------------------------------------------------------------------
 *
 *   refs  at most PS_PAGE_REFS_MAX = 2^28 - 1 (Linux: 2^31)
 *   pins  at most PS_PAGE_PINS_MAX = 2^21 - 1 (Linux's bias scheme: ~2^21)
 *
 * An increment at a limit fails (-EOVERFLOW, or false) and leaves the word as
 * it was: no count ever wraps. A get, pin or try_get of one unit is a
 * fetch-and-add that takes its unit back when refused, so a concurrent reader
 * may briefly see a count above its limit, never a wrapped one; the forms for
 * several units use a compare-and-swap, so their n may be up to the limit.
 *
 * Misuse the word can detect is reported to the error hook
 * (ps_page_set_error_hook(), enum ps_page_error) and leaves the word as it
 * was: a put or unpin of more than is held or of a pin's reference, a get or
 * pin on a free page (the caller's reference was gone), any count operation
 * on a frozen page. The *_many() releases check before they write. A single
 * put or unpin is one fetch-and-sub and finds out afterwards, from the word
 * it returned: the misuser then adds its unit back before it reports, so the
 * word is as it was by the time the hook runs. In the few instructions in
 * between the word is inexact (a guard bit set, or pins > refs), and a
 * correct call whose own atomic step lands there never frees the page, never
 * reads a held pin as gone and never counts its increment on the inexact word:
 * it saturates the word instead (PS_PAGE_ERR_SATURATED), as Linux's refcount_t
 * saturates: the page is leaked, reads as pinned, is never freed again, and
 * refuses every increment. The default hook prints and, in a debug build of the
 * library (without NDEBUG), aborts; in a release build a refused put leaks the
 * page. A put by a thread that holds nothing, on a page others hold, cannot be
 * told from a holder's put (the word holds counts, not owners), as in Linux.
 *
 * ---------------------------------------------------------------------------
 * Huge frames
 * ---------------------------------------------------------------------------
 *
 * The word of a 2 MiB or 1 GiB frame is its folio's while the frame is
 * whole: references, pins and flags of the whole frame count there, and a
 * pin of the frame is one pin (the limit is per frame). ps_page_split()
 * moves that state into one word per part (a whole-frame reference or pin
 * counts as one on each part) and sets SPLIT; ps_page_merge() moves uniform
 * parts back. A SPLIT word is not LIVE and counts nothing: gets and pins on
 * it fail with -ESTALE (not misuse: the caller goes to the parts, as
 * ps_page_huge_state() says), tries fail, and a release on it is misuse
 * (PS_PAGE_ERR_SPLIT): the references it held are on the parts.
 *
 * ---------------------------------------------------------------------------
 * Operations: progress and ordering
 * ---------------------------------------------------------------------------
 *
 *   operation                          progress    ordering
 *   ---------------------------------  ----------  -------------------------
 *   get, pin                           wait-free   relaxed
 *   get_many, pin_many                 lock-free   relaxed
 *   try_get                            wait-free   acquire on success
 *   try_get_many, try_get_masked       lock-free   acquire on success
 *   try_pin, try_pin_many,             lock-free   seq_cst on success
 *   try_pin_masked, try_pin_and_set_flags
 *   put, unpin                         wait-free*  release; acquire too when
 *                                                  it frees the page
 *   put_many, unpin_many,              lock-free   release; acquire too when
 *   unlock_and_put                                 it frees the page
 *   get_or_revive, get_or_freeze,      lock-free   acquire
 *   get_or_revive_cache
 *   freeze                             lock-free   acquire on success
 *   unfreeze and its forms             lock-free   release
 *   flag set, clear, test-and-set,     wait-free   acquire and release
 *   test-and-clear, fetch forms
 *   change_flags, set_cache_if_free,   lock-free   acquire and release on
 *   clear_flag_if_unpinned,                        success
 *   set_flags_unless_frozen
 *   trylock                            wait-free   acquire when it takes it
 *   lock                               blocking    acquire
 *   unlock                             wait-free   release
 *   try_get_and_lock                   blocking    acquire
 *   try_get_lock_and_set               lock-free   acquire and release on
 *                                                  success
 *   start_writeback, end_writeback     wait-free   acquire and release
 *   wait_writeback                     blocking    acquire
 *   loads and accessors                wait-free   acquire
 *
 * (*) One fetch-and-sub; the one that drops the last reference adds a
 * compare-and-swap loop (lock-free) to free the page, and waits while a
 * misused release on the same word is being repaired (blocking, for a few
 * instructions unless the misuser is preempted).
 *
 * Lock-free operations are compare-and-swap loops that retry only after
 * another thread changed the word; a try_get at the limit, and a misused get
 * or pin, add one such loop. Blocking ones spin, then yield (there is no wait
 * queue). Each function's comment names what its ordering pairs with.
 *
 * Like Linux's GUP-fast, a caller that must order a pin against a later load
 * of another location (pin, then re-read the page-table entry that led to the
 * page) needs the store-buffering order between the two: a full fence, or,
 * since a successful try-pin is seq_cst, a seq_cst load for the re-read. The
 * re-read is the caller's, because only the caller knows the partner
 * (docs/page.md, "Pin, then re-check").
 *
 * Where this differs from Linux (docs/page.md, "Where the word differs from
 * Linux", says why): pins are exact, in a field of their own; limits refuse
 * instead of wrapping or saturating (only misuse saturates); a misused
 * release is repaired, not only detected;
 * a speculative get is one fetch-and-add; a free clears the lifetime's flags
 * in the freeing step; a free page can be claimed frozen; the lock has no
 * wait queue.
 */
#ifndef PAGESTATE_PAGE_H
#define PAGESTATE_PAGE_H

#include <pagestate/compiler.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

PS_BEGIN_DECLS

/* --- layout ------------------------------------------------------------- */

#define PS_PAGE_FLAGS_SHIFT 0
#define PS_PAGE_FLAGS_WIDTH 13
#define PS_PAGE_FLAGS_MASK \
	(((UINT64_C(1) << PS_PAGE_FLAGS_WIDTH) - 1) << PS_PAGE_FLAGS_SHIFT)

#define PS_PAGE_PINS_SHIFT (PS_PAGE_FLAGS_SHIFT + PS_PAGE_FLAGS_WIDTH)
#define PS_PAGE_PINS_WIDTH 22
#define PS_PAGE_PINS_MASK \
	(((UINT64_C(1) << PS_PAGE_PINS_WIDTH) - 1) << PS_PAGE_PINS_SHIFT)

#define PS_PAGE_REFS_SHIFT (PS_PAGE_PINS_SHIFT + PS_PAGE_PINS_WIDTH)
#define PS_PAGE_REFS_WIDTH 29
#define PS_PAGE_REFS_MASK \
	(((UINT64_C(1) << PS_PAGE_REFS_WIDTH) - 1) << PS_PAGE_REFS_SHIFT)

PS_STATIC_ASSERT(PS_PAGE_REFS_SHIFT + PS_PAGE_REFS_WIDTH == 64,
		 "page word: fields must fill exactly 64 bits");
PS_STATIC_ASSERT((PS_PAGE_FLAGS_MASK & PS_PAGE_PINS_MASK) == 0 &&
			 (PS_PAGE_PINS_MASK & PS_PAGE_REFS_MASK) == 0 &&
			 (PS_PAGE_FLAGS_MASK | PS_PAGE_PINS_MASK |
			  PS_PAGE_REFS_MASK) == UINT64_MAX,
		 "page word: fields overlap or leave holes");

/* One unit of each counter, as added to the word. */
#define PS_PAGE_REF_ONE (UINT64_C(1) << PS_PAGE_REFS_SHIFT)
#define PS_PAGE_PIN_ONE (UINT64_C(1) << PS_PAGE_PINS_SHIFT)

/* Limits: half of each field; the other half is overflow headroom. */
#define PS_PAGE_REFS_MAX ((UINT64_C(1) << (PS_PAGE_REFS_WIDTH - 1)) - 1)
#define PS_PAGE_PINS_MAX ((UINT64_C(1) << (PS_PAGE_PINS_WIDTH - 1)) - 1)

PS_STATIC_ASSERT(PS_PAGE_REFS_MAX >= (UINT64_C(1) << 24),
		 "page word: at least 2^24 references");
PS_STATIC_ASSERT(PS_PAGE_PINS_MAX >= (UINT64_C(1) << 20),
		 "page word: at least 2^20 pins");
PS_STATIC_ASSERT(PS_PAGE_PINS_MAX < PS_PAGE_REFS_MAX,
		 "page word: every pin must fit as a reference");
/*
 * The top bit of each count field (its "guard"): clear on every count a
 * correct caller can see. It is set only above a limit (an increment refused
 * at the limit, not yet taken back; a saturated word) or below zero (a
 * misused release, not yet repaired), so one mask test tells a fast path that
 * the word needs a closer look (docs/page.md, "Releases: one fetch-and-sub").
 */
#define PS_PAGE_REFS_GUARD \
	(UINT64_C(1) << (PS_PAGE_REFS_SHIFT + PS_PAGE_REFS_WIDTH - 1))
#define PS_PAGE_PINS_GUARD \
	(UINT64_C(1) << (PS_PAGE_PINS_SHIFT + PS_PAGE_PINS_WIDTH - 1))
#define PS_PAGE_GUARDS (PS_PAGE_REFS_GUARD | PS_PAGE_PINS_GUARD)

/*
 * A saturated word (Linux's REFCOUNT_SATURATED): refs at 5/8 of the refs
 * field (inside its guarded half, 2^25 above the limit's neighbourhood and
 * 2^26 below a borrow's), pins at PS_PAGE_PINS_MAX. A word that a misuse
 * left without an exact count saturates: it is never freed again and reads
 * as pinned, and no bounded number of racing updates brings it back.
 */
#define PS_PAGE_REFS_SAT (UINT64_C(5) << (PS_PAGE_REFS_WIDTH - 3))

PS_STATIC_ASSERT(PS_PAGE_REFS_GUARD == (PS_PAGE_REFS_MAX + 1)
					       << PS_PAGE_REFS_SHIFT &&
			 PS_PAGE_PINS_GUARD == (PS_PAGE_PINS_MAX + 1)
						       << PS_PAGE_PINS_SHIFT,
		 "page word: a field's guard bit is its limit plus one");

/*
 * Headroom above each limit holds one transient unit per thread inside a
 * window of the word (docs/page.md: at most 2^20 threads at once for pins).
 */
PS_STATIC_ASSERT((UINT64_C(1) << PS_PAGE_PINS_WIDTH) - 1 - PS_PAGE_PINS_MAX >=
			 (UINT64_C(1) << 21),
		 "page word: pin headroom for 2^21 racing increments");

/* Flags: one bit each, chained from bit 0, with the 3-bit cache field. */
#define PS_PAGE_DIRTY_SHIFT PS_PAGE_FLAGS_SHIFT
#define PS_PAGE_WRITEBACK_SHIFT (PS_PAGE_DIRTY_SHIFT + 1)
#define PS_PAGE_FROZEN_SHIFT (PS_PAGE_WRITEBACK_SHIFT + 1)
#define PS_PAGE_LOCKED_SHIFT (PS_PAGE_FROZEN_SHIFT + 1)
#define PS_PAGE_WRITE_PINNED_SHIFT (PS_PAGE_LOCKED_SHIFT + 1)
#define PS_PAGE_PRIVATE_SHIFT (PS_PAGE_WRITE_PINNED_SHIFT + 1)
#define PS_PAGE_INACCESSIBLE_SHIFT (PS_PAGE_PRIVATE_SHIFT + 1)
#define PS_PAGE_POISONED_SHIFT (PS_PAGE_INACCESSIBLE_SHIFT + 1)
#define PS_PAGE_CACHE_SHIFT (PS_PAGE_POISONED_SHIFT + 1)
#define PS_PAGE_CACHE_WIDTH 3
#define PS_PAGE_LIVE_SHIFT (PS_PAGE_CACHE_SHIFT + PS_PAGE_CACHE_WIDTH)
#define PS_PAGE_SPLIT_SHIFT (PS_PAGE_LIVE_SHIFT + 1)

PS_STATIC_ASSERT(PS_PAGE_SPLIT_SHIFT + 1 ==
			 PS_PAGE_FLAGS_SHIFT + PS_PAGE_FLAGS_WIDTH,
		 "page word: flags must fill the flags field exactly");

#define PS_PAGE_DIRTY (UINT64_C(1) << PS_PAGE_DIRTY_SHIFT)
#define PS_PAGE_WRITEBACK (UINT64_C(1) << PS_PAGE_WRITEBACK_SHIFT)
#define PS_PAGE_FROZEN (UINT64_C(1) << PS_PAGE_FROZEN_SHIFT)
#define PS_PAGE_LOCKED (UINT64_C(1) << PS_PAGE_LOCKED_SHIFT)
#define PS_PAGE_WRITE_PINNED (UINT64_C(1) << PS_PAGE_WRITE_PINNED_SHIFT)
#define PS_PAGE_PRIVATE (UINT64_C(1) << PS_PAGE_PRIVATE_SHIFT)
#define PS_PAGE_INACCESSIBLE (UINT64_C(1) << PS_PAGE_INACCESSIBLE_SHIFT)
#define PS_PAGE_POISONED (UINT64_C(1) << PS_PAGE_POISONED_SHIFT)
#define PS_PAGE_CACHE_MASK \
	(((UINT64_C(1) << PS_PAGE_CACHE_WIDTH) - 1) << PS_PAGE_CACHE_SHIFT)
#define PS_PAGE_LIVE (UINT64_C(1) << PS_PAGE_LIVE_SHIFT)
#define PS_PAGE_SPLIT (UINT64_C(1) << PS_PAGE_SPLIT_SHIFT)

/*
 * Flags the flag operations may change. FROZEN and LIVE belong to the count
 * operations (freeze/unfreeze, init, the freeing put), SPLIT to the split and
 * merge of a huge frame's word.
 */
#define PS_PAGE_USER_FLAGS \
	(PS_PAGE_FLAGS_MASK & ~(PS_PAGE_FROZEN | PS_PAGE_LIVE | PS_PAGE_SPLIT))

/*
 * Flags of one lifetime of the page: the transition that frees it clears
 * them, and so do a revival and a claim (see "States" in the overview).
 */
#define PS_PAGE_LIFE_FLAGS (PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED)

/* --- what the flags encode ------------------------------------------------ */

/**
 * enum ps_cache_mode - memory type of a page, as held in its CACHE field.
 * @PS_CACHE_WB: write-back, normal memory (0: a zeroed word is write-back).
 * @PS_CACHE_WC: write-combining (frame buffers, doorbells).
 * @PS_CACHE_UC_MINUS: uncached, but an MTRR may make it WC.
 * @PS_CACHE_UC: strongly uncached (MMIO registers).
 * @PS_CACHE_WT: write-through.
 * @PS_CACHE_WP: write-protected (reads cached, writes go to memory).
 *
 * The values are Linux's enum page_cache_mode. What a mode means for
 * mappings and how it is changed is prot.h's business; the word only stores
 * it (ps_page_cache_mode(), ps_page_get_or_revive_cache(),
 * ps_page_set_cache_if_free()).
 */
enum ps_cache_mode {
	PS_CACHE_WB = 0,
	PS_CACHE_WC = 1,
	PS_CACHE_UC_MINUS = 2,
	PS_CACHE_UC = 3,
	PS_CACHE_WT = 4,
	PS_CACHE_WP = 5,
};

/* Number of cache modes; valid modes are 0 .. PS_CACHE_NR - 1. */
#define PS_CACHE_NR 6

PS_STATIC_ASSERT(PS_CACHE_NR <= (1 << PS_PAGE_CACHE_WIDTH),
		 "cache modes must fit the page word's CACHE field");

/**
 * enum ps_enc_state - encryption state of a page, as held in its PRIVATE flag.
 * @PS_ENC_SHARED: decrypted: host- and device-visible (PRIVATE clear).
 * @PS_ENC_PRIVATE: encrypted: guest-owned (PRIVATE set).
 */
enum ps_enc_state {
	PS_ENC_SHARED = 0,
	PS_ENC_PRIVATE = 1,
};

/**
 * struct ps_page - the state word of one page (8 bytes, no more).
 * @word: the word, laid out as the overview of pagestate/page.h shows.
 *
 * Read and change it only through the ps_page_*() functions: they are its
 * one owner. Zero-filled memory is a valid free page; PS_PAGE_INIT() is the
 * static initialiser, ps_page_init() the run-time one.
 */
struct ps_page {
	PS_ATOMIC(uint64_t) word;
};

PS_STATIC_ASSERT(sizeof(struct ps_page) == 8, "struct ps_page is 8 bytes");

/* Word of a page with @refs references (0: a free page), no pins, no flags. */
#define PS_PAGE_WORD_INIT(refs)                       \
	((((uint64_t)(refs)) << PS_PAGE_REFS_SHIFT) | \
	 ((refs) ? PS_PAGE_LIVE : 0))

/* Static initialiser: @refs references (0: a free page), no pins. */
/* clang-format off */
#define PS_PAGE_INIT(refs) {PS_ATOMIC_INIT(PS_PAGE_WORD_INIT(refs))}
/* clang-format on */

/* --- decoding a snapshot (pure) ------------------------------------------ */

/**
 * ps_page_word_refs() - reference count of word @w (0 unless LIVE).
 * @w: a word from ps_page_load() or a ps_page_fetch_*_flags() return.
 *
 * Context: any thread; pure (reads only @w).
 * Return: the refs field of @w, pins included, if @w is LIVE; else 0.
 */
static inline uint64_t ps_page_word_refs(uint64_t w)
{
	return (w & PS_PAGE_LIVE) ? w >> PS_PAGE_REFS_SHIFT : 0;
}

/**
 * ps_page_word_pins() - pin count of word @w (0 unless LIVE).
 * @w: a word from ps_page_load() or a ps_page_fetch_*_flags() return.
 *
 * Context: any thread; pure (reads only @w).
 * Return: the pins field of @w if @w is LIVE; else 0.
 */
static inline uint64_t ps_page_word_pins(uint64_t w)
{
	return (w & PS_PAGE_LIVE)
		       ? (w & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT
		       : 0;
}

/**
 * ps_page_word_flags() - flag bits of word @w (PS_PAGE_DIRTY, ...).
 * @w: a word from ps_page_load() or a ps_page_fetch_*_flags() return.
 *
 * Context: any thread; pure (reads only @w).
 * Return: the PS_PAGE_FLAGS_MASK bits of @w (LIVE and FROZEN included).
 */
static inline uint64_t ps_page_word_flags(uint64_t w)
{
	return w & PS_PAGE_FLAGS_MASK;
}

/**
 * ps_page_word_cache() - raw 3-bit cache-mode field of word @w.
 * @w: a word from ps_page_load() or a ps_page_fetch_*_flags() return.
 *
 * Context: any thread; pure (reads only @w).
 * Return: 0 to 7, shifted down; 0 is write-back (enum ps_cache_mode names
 * the values).
 */
static inline unsigned int ps_page_word_cache(uint64_t w)
{
	return (unsigned int)((w & PS_PAGE_CACHE_MASK) >> PS_PAGE_CACHE_SHIFT);
}

/**
 * ps_page_word_pinned_for_write() - was word @w pinned for write?
 * @w: a word from ps_page_load() or a ps_page_fetch_*_flags() return.
 *
 * WRITE_PINNED is set by the compare-and-swap that takes a pin for write
 * (ps_page_try_pin_and_set_flags()) and cleared lazily once the page has no
 * pins (ps_page_clear_flag_if_unpinned()), so the flag alone may be stale.
 * With the pin count it is exact in one direction: every word that shows a
 * pin taken for write answers true.
 * Context: any thread; pure (reads only @w).
 * Return: true if @w has WRITE_PINNED and, being LIVE, at least one pin.
 */
static inline bool ps_page_word_pinned_for_write(uint64_t w)
{
	return (w & PS_PAGE_WRITE_PINNED) && ps_page_word_pins(w) != 0;
}

/**
 * ps_page_cache_mode_name() - a short constant name for a cache mode.
 * @mode: the mode (any value).
 *
 * Context: any thread; pure.
 * Return: "WB", "WC", "UC-", "UC", "WT", "WP", or "?" for an unknown @mode.
 */
const char *ps_page_cache_mode_name(enum ps_cache_mode mode);

/* --- errors ------------------------------------------------------------- */

/**
 * enum ps_page_error - misuse reported to the error hook.
 * @PS_PAGE_ERR_REF_UNDERFLOW: a put dropped more references than were held,
 *	or a reference that belongs to a pin (use ps_page_unpin() for those),
 *	or hit a page that is not LIVE (a put after the page was freed).
 * @PS_PAGE_ERR_PIN_UNDERFLOW: an unpin dropped more pins than were held.
 * @PS_PAGE_ERR_GET_ZERO: a get or pin on a page that is free or holds no
 *	reference: the caller's reference was already gone (use-after-free).
 * @PS_PAGE_ERR_FROZEN: a get, pin, put or unpin on a frozen page. The
 *	freezer owns every counted reference until it unfreezes.
 * @PS_PAGE_ERR_NOT_FROZEN: ps_page_unfreeze() on a page that is not frozen.
 * @PS_PAGE_ERR_BAD_COUNT: a *_many() release with n == 0 or n beyond the
 *	limit of a field it releases from.
 * @PS_PAGE_ERR_SATURATED: the word was saturated: a thread's own update met
 *	the borrow of a misused release still in flight (another thread's
 *	misuse, or its own second one), so no exact count was left to repair.
 *	The page is leaked: never freed again, read as pinned, every increment
 *	refused. Reported once, by the thread that saturated it; the misuser
 *	reports its own error too.
 * @PS_PAGE_ERR_SPLIT: a put or unpin on a huge frame's word that is split
 *	(or being split or merged): the references it held are on the
 *	sub-words now (ps_page_split()), and must be released there.
 *
 * In every case but the last the word is left as it was before the call,
 * before the hook runs. A single put or unpin (one fetch-and-sub) that took
 * what was not there is repaired by the misuser with the inverse
 * fetch-and-add; the *_many() releases write nothing; the unit a get or pin
 * added to a free or frozen page is taken back, unless a revival or unfreeze
 * rewrote the counts meanwhile (then the unit went with them). A correct call
 * that meets a misused release in its window never frees, never reads a pin
 * as gone and never wraps a count: it saturates the word instead
 * (PS_PAGE_ERR_SATURATED; docs/page.md, "Misuse and concurrency").
 */
enum ps_page_error {
	PS_PAGE_ERR_REF_UNDERFLOW = 1,
	PS_PAGE_ERR_PIN_UNDERFLOW,
	PS_PAGE_ERR_GET_ZERO,
	PS_PAGE_ERR_FROZEN,
	PS_PAGE_ERR_NOT_FROZEN,
	PS_PAGE_ERR_BAD_COUNT,
	PS_PAGE_ERR_SATURATED,
	PS_PAGE_ERR_SPLIT,
};

/**
 * typedef ps_page_error_hook_t - receives misuse of a page word.
 * @page: the page.
 * @error: what happened.
 * @word: the word as the failed operation saw it (before the undo).
 *
 * Context: runs in the thread that misused the page, possibly concurrently in
 * several threads. It must not call back into the same page's count
 * operations. It may abort, log or count.
 */
typedef void (*ps_page_error_hook_t)(const struct ps_page *page,
				     enum ps_page_error error, uint64_t word);

/**
 * ps_page_set_error_hook() - replace the hook that receives misuse.
 * @hook: the new hook, or NULL for ps_page_default_error_hook().
 *
 * Context: any thread. A report already under way may still call the old hook.
 * Ordering: acquire and release (one exchange); the hook is read with
 * acquire when an error is reported, which pairs with this release.
 * Progress: wait-free (one atomic exchange).
 * Return: the previous hook (never NULL).
 */
ps_page_error_hook_t ps_page_set_error_hook(ps_page_error_hook_t hook);

/**
 * ps_page_default_error_hook() - the hook in place at start-up.
 * @page: the page (only its address is printed).
 * @error: what happened.
 * @word: the word seen.
 *
 * Prints one line to stderr. In a debug build of the library (no NDEBUG) it
 * then calls abort(). In a release build it returns, and the refused put
 * leaks the page.
 * Context: the thread that misused the page, or a hook chaining to this one.
 * Ordering: none; it never reads the page word, only decodes @word.
 * Progress: blocking: fprintf() takes the stderr stream lock.
 */
void ps_page_default_error_hook(const struct ps_page *page,
				enum ps_page_error error, uint64_t word);

/**
 * ps_page_error_name() - a short constant name for @error.
 * @error: an error passed to the hook.
 *
 * Context: any thread; pure (a constant string per value).
 * Return: a static string, never NULL ("unknown page error" for a value
 * outside enum ps_page_error).
 */
const char *ps_page_error_name(enum ps_page_error error);

/*
 * Out-of-line slow paths of the inline operations below: exported for those
 * inline functions only (they are part of the ABI), not for direct calls.
 */
PS_COLD int ps_page_get_refused_slow(struct ps_page *page, uint64_t seen,
				     uint64_t undo);
PS_COLD bool ps_page_put_refused_slow(struct ps_page *page, uint64_t seen,
				      uint64_t undo, uint64_t n,
				      uint64_t npins);
PS_COLD bool ps_page_release_slow(struct ps_page *page, uint64_t old, bool pin);
PS_COLD bool ps_page_try_get_over_slow(struct ps_page *page);
PS_COLD bool ps_page_try_get_slow(struct ps_page *page, uint64_t old);
PS_COLD int ps_page_unfreeze_refused_slow(struct ps_page *page, uint64_t seen);

/**
 * ps_page_lock_slow() - the waiting half of ps_page_lock() (not API: call
 * ps_page_lock()).
 * @page: a page whose LOCKED bit a try found set.
 *
 * Context: as ps_page_lock().
 * Ordering: acquire when it takes LOCKED (its ps_page_trylock()).
 * Progress: blocking: spins on a plain load for a while, then yields
 * between attempts, until it takes LOCKED.
 */
PS_COLD void ps_page_lock_slow(struct ps_page *page);

/**
 * ps_page_wait_writeback_slow() - the waiting half of
 * ps_page_wait_writeback() (not API: call ps_page_wait_writeback()).
 * @page: a page whose WRITEBACK flag a load found set.
 *
 * Context: as ps_page_wait_writeback().
 * Ordering: acquire: its last load reads WRITEBACK clear.
 * Progress: blocking: spins on a plain load for a while, then yields
 * between loads, until WRITEBACK reads clear.
 */
PS_COLD void ps_page_wait_writeback_slow(struct ps_page *page);

/* --- the update cores --------------------------------------------------- */

/*
 * Why a compare-and-swap refused (internal; a public operation turns it
 * into bool or -errno).
 */
enum ps__page_verdict {
	PS__PAGE_MISMATCH = 1, /* (old & must_mask) != must_value */
	PS__PAGE_NOREF,	       /* PS__PAGE_ADD_HELD: no reference on the page */
	PS__PAGE_LIMIT,	       /* the new count would exceed its limit */
	PS__PAGE_SHORT,	       /* PS__PAGE_SUB of more than the counts hold */
	PS__PAGE_GUARDED,      /* PS__PAGE_SUB on a word with a guard bit set */
};

/* What ps__page_cas() does with its counts (internal). */
enum ps__page_count {
	PS__PAGE_ADD,	   /* add them, within the limits */
	PS__PAGE_ADD_HELD, /* add them; the page must hold a reference */
	PS__PAGE_SUB,	   /* remove them; the page must hold them */
};

/*
 * ps__page_cas() - the one compare-and-swap transition of the word.
 *
 * new = ((old & ~clear) | set) +/- refs references and pins pins, written
 * only if (old & must_mask) == must_value and the counts allow it:
 *   PS__PAGE_ADD       both new counts stay within their limits (a
 *                      transition that adds nothing is never refused for a
 *                      count another thread pushed transiently over its
 *                      limit);
 *   PS__PAGE_ADD_HELD  the same, and refs(old) != 0;
 *   PS__PAGE_SUB       no guard bit set on a LIVE word
 *                      (PS__PAGE_GUARDED: a refused increment, a misused
 *                      release in flight or a saturated word; the
 *                      caller's slow path decides),
 *                      refs(old) >= refs, pins(old) >= pins, and the plain
 *                      references (refs - pins) cover refs - pins: a put
 *                      never takes a reference that belongs to a pin. The
 *                      transition that leaves a LIVE page no reference also
 *                      clears LIVE and PS_PAGE_LIFE_FLAGS, in the same CAS:
 *                      that is how a put frees a page.
 * @clear and @set never touch a count the same call adds to or checks
 * (unfreeze, which rewrites refs, adds nothing). Every conditional transition
 * (put and unpin, the tries, the *_many increments, revive, freeze, unfreeze,
 * the conditional flag changes) is a thin wrapper around this loop. The
 * failed CAS refreshes @old, so the loop never reloads. It retries only when
 * another thread changed the word (lock-free).
 *
 * Because refs sit at the top of the word, "lo <= refs <= MAX - refs" is two
 * compares of the whole word, with no shift or mask.
 *
 * @success is the order of the successful CAS (the wrapper names its
 * partner). The initial load and a failed CAS are relaxed: the CAS re-validates
 * every condition against the value it replaces. @seen receives the last value
 * observed. Returns true on success; on refusal, false with the reason in
 * @why (a separate out-parameter keeps the success branch on the CAS's own
 * flag). Callers pass constants for @how, so each wrapper compiles to the
 * checks it needs and no others.
 */
static inline bool ps__page_cas(struct ps_page *page, uint64_t must_mask,
				uint64_t must_value, uint64_t clear,
				uint64_t set, uint64_t refs, uint64_t pins,
				enum ps__page_count how, memory_order success,
				uint64_t *seen, enum ps__page_verdict *why)
{
	const bool sub = how == PS__PAGE_SUB;
	const uint64_t held = how == PS__PAGE_ADD_HELD;
	/* Relaxed: only a guess for the CAS, which re-checks everything. */
	uint64_t old = atomic_load_explicit(&page->word, memory_order_relaxed);
	uint64_t lo, hi, next;

	if (refs > PS_PAGE_REFS_MAX - held || pins > PS_PAGE_PINS_MAX) {
		/* No count could take it (an empty range for lo..hi). */
		*why = sub ? PS__PAGE_SHORT : PS__PAGE_LIMIT;
		*seen = old;
		return false;
	}
	/* Lowest and highest words whose refs are acceptable. */
	lo = sub ? refs << PS_PAGE_REFS_SHIFT : held << PS_PAGE_REFS_SHIFT;
	hi = ((PS_PAGE_REFS_MAX - refs + 1) << PS_PAGE_REFS_SHIFT) - 1;
	for (;;) {
		if ((old & must_mask) != must_value) {
			*why = PS__PAGE_MISMATCH;
			break;
		}
		if (old < lo) {
			*why = sub ? PS__PAGE_SHORT : PS__PAGE_NOREF;
			break;
		}
		if (sub && (old & PS_PAGE_GUARDS) && (old & PS_PAGE_LIVE)) {
			/* A count beyond its limits: nothing to take. */
			*why = PS__PAGE_GUARDED;
			break;
		}
		if (sub) {
			const uint64_t p = (old & PS_PAGE_PINS_MASK) >>
					   PS_PAGE_PINS_SHIFT;

			/* pins(old) >= pins, refs(old) - refs >= p - pins */
			if (p < pins ||
			    (old >> PS_PAGE_REFS_SHIFT) + pins < p + refs) {
				*why = PS__PAGE_SHORT;
				break;
			}
			next = ((old & ~clear) | set) - refs * PS_PAGE_REF_ONE -
			       pins * PS_PAGE_PIN_ONE;
			/* The last reference of a LIVE page: it is freed. */
			if (next < PS_PAGE_REF_ONE && (old & PS_PAGE_LIVE))
				next &= ~(PS_PAGE_LIVE | PS_PAGE_LIFE_FLAGS);
		} else {
			if (refs && old > hi) {
				*why = PS__PAGE_LIMIT;
				break;
			}
			if (pins && (old & PS_PAGE_PINS_MASK) >
					    ((PS_PAGE_PINS_MAX - pins)
					     << PS_PAGE_PINS_SHIFT)) {
				*why = PS__PAGE_LIMIT;
				break;
			}
			/*
			 * pins > refs on a LIVE word: a put took a pin's
			 * reference and is not repaired yet (docs/page.md,
			 * "Releases: one fetch-and-sub"). More references than
			 * pins could make the word look exact while it counts
			 * one too few, and a holder's last release would free a
			 * held page. Refused as at a limit, never counted;
			 * constant false when refs == pins (the pins).
			 */
			if (refs > pins && (old & PS_PAGE_LIVE) &&
			    (old & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT >
				    old >> PS_PAGE_REFS_SHIFT) {
				*why = PS__PAGE_LIMIT;
				break;
			}
			next = ((old & ~clear) | set) + refs * PS_PAGE_REF_ONE +
			       pins * PS_PAGE_PIN_ONE;
		}
		/* No PS_LIKELY here: it makes GCC materialise the flag. */
		/* Ordering: see @success above; failure is relaxed. */
		if (atomic_compare_exchange_weak_explicit(
			    &page->word, &old, next, success,
			    memory_order_relaxed)) {
			*seen = old;
			return true;
		}
	}
	*seen = old;
	return false;
}

/*
 * ps__page_word_exact() - true if word @w is LIVE with no guard bit set and
 * pins(w) <= refs(w): a word whose counts a correct caller can act on (the
 * test every single-unit fast path makes on the word its RMW returned).
 */
static inline bool ps__page_word_exact(uint64_t w)
{
	return (w & (PS_PAGE_LIVE | PS_PAGE_GUARDS)) == PS_PAGE_LIVE &&
	       ((w & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT) <=
		       (w >> PS_PAGE_REFS_SHIFT);
}

/*
 * ps__page_add() - the fetch-and-add increment: one reference, plus one pin
 * if @pin. The caller holds a reference. Refused values are subtracted again
 * out of line (docs/page.md, "Why a refused fetch-and-add cannot be
 * observed", says why nothing can observe them). A word whose last reference
 * is being dropped (LIVE, no counts) is taken like any LIVE one: the get is
 * ordered before that put, whose free then fails (docs/page.md).
 */
static inline int ps__page_add(struct ps_page *page, bool pin)
{
	const uint64_t delta = PS_PAGE_REF_ONE + (pin ? PS_PAGE_PIN_ONE : 0);
	/*
	 * Relaxed: the caller's own reference keeps the page stable, and a new
	 * reference publishes nothing (refcount.h's "increments are relaxed").
	 */
	uint64_t old = atomic_fetch_add_explicit(&page->word, delta,
						 memory_order_relaxed);

	/* Exact, refs <= MAX - 1 and, for a pin, pins <= MAX - 1. */
	if (PS_LIKELY(ps__page_word_exact(old) &&
		      old < (PS_PAGE_REFS_MAX << PS_PAGE_REFS_SHIFT) &&
		      (!pin ||
		       (old & PS_PAGE_PINS_MASK) <
			       (PS_PAGE_PINS_MAX << PS_PAGE_PINS_SHIFT))))
		return 0;
	return ps_page_get_refused_slow(page, old, delta);
}

/*
 * ps__page_release() - the fetch-and-sub release of one reference, and of
 * one pin if @pin: put and unpin. The common case is one locked instruction
 * and a test of the word it returned: the page stays LIVE with at least one
 * reference, the released unit was there (a plain reference for a put, a pin
 * for an unpin) and no guard bit is set. Everything else is decided after
 * the fact by ps_page_release_slow() from that same word: the release that
 * dropped the last reference frees the page with a compare-and-swap (the
 * word is LIVE with no counts in between, and a try-get there wins instead);
 * a misused release is repaired by its own inverse add (docs/page.md,
 * "Releases: one fetch-and-sub").
 */
static inline bool ps__page_release(struct ps_page *page, bool pin)
{
	const uint64_t delta = PS_PAGE_REF_ONE + (pin ? PS_PAGE_PIN_ONE : 0);
	/*
	 * Release: the caller's accesses to the page happen before its
	 * reference is gone. Pairs with the acquire CAS of whichever release
	 * frees the page, and with the acquire of a later freeze.
	 */
	uint64_t old = atomic_fetch_sub_explicit(&page->word, delta,
						 memory_order_release);
	const uint64_t pins = (old & PS_PAGE_PINS_MASK) >> PS_PAGE_PINS_SHIFT;

	/*
	 * LIVE, no guard, refs >= 2, and the unit was there: pins < refs for a
	 * put (a plain reference), 1 <= pins <= refs for an unpin.
	 */
	if (PS_LIKELY((old & (PS_PAGE_LIVE | PS_PAGE_GUARDS)) == PS_PAGE_LIVE &&
		      old >= (UINT64_C(2) << PS_PAGE_REFS_SHIFT) &&
		      (pin ? pins - 1 : pins) < (old >> PS_PAGE_REFS_SHIFT)))
		return false;
	return ps_page_release_slow(page, old, pin);
}

/*
 * ps__page_claim() - free a page that is LIVE with no reference and no pin:
 * clear LIVE and PS_PAGE_LIFE_FLAGS. Puts never leave such a page (the put that
 * drops the last reference frees it in its own CAS), so this only meets a word
 * built by hand, as the page tests build one; it fails on any other page.
 */
static inline bool ps__page_claim(struct ps_page *page)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/* Acquire: pairs with the release of every earlier put. */
	return ps__page_cas(page,
			    PS_PAGE_LIVE | PS_PAGE_REFS_MASK |
				    PS_PAGE_PINS_MASK,
			    PS_PAGE_LIVE, PS_PAGE_LIVE | PS_PAGE_LIFE_FLAGS, 0,
			    0, 0, PS__PAGE_ADD, memory_order_acquire, &seen,
			    &why);
}

/*
 * ps__page_sub() - release @n references, @npins of them pins (0 or n), by
 * one compare-and-swap that checks first: a release of more than the word
 * holds writes nothing (docs/page.md, "Misuse and concurrency"). Returns
 * true when it dropped the last reference, and so cleared LIVE (and
 * PS_PAGE_LIFE_FLAGS): the caller frees.
 */
static inline bool ps__page_sub(struct ps_page *page, uint64_t n,
				uint64_t npins)
{
	enum ps__page_verdict why;
	uint64_t seen;

	if (PS_UNLIKELY(n == 0 || n > PS_PAGE_REFS_MAX ||
			npins > PS_PAGE_PINS_MAX))
		return ps_page_put_refused_slow(page, 0, 0, n, npins);
	/*
	 * Release: the caller's accesses to the page happen before its
	 * reference is gone. Pairs with the acquire below in whichever put
	 * frees the page, and with the acquire of a later freeze.
	 */
	if (PS_UNLIKELY(!ps__page_cas(page, PS_PAGE_LIVE, PS_PAGE_LIVE, 0, 0, n,
				      npins, PS__PAGE_SUB, memory_order_release,
				      &seen, &why)))
		return ps_page_put_refused_slow(page, seen, 0, n, npins);
	if (PS_LIKELY(seen >= (n + 1) << PS_PAGE_REFS_SHIFT))
		return false; /* references remain */
	/*
	 * Acquire: this put freed the page. Its CAS and every later change of
	 * the word are read-modify-writes, so they all continue the release
	 * sequence of each earlier put: the load reads one of them and pairs
	 * with all those releases, and the caller frees after every other
	 * holder's accesses. (A load rather than an acquire fence: TSan
	 * models loads, not fences.)
	 */
	(void)atomic_load_explicit(&page->word, memory_order_acquire);
	return true;
}

/*
 * ps__page_add_many() - compare-and-swap increment of @n references, @npins
 * of them pins, by a holder. Used for n > 1, where a refused fetch-and-add of
 * n could exceed the headroom.
 */
static inline int ps__page_add_many(struct ps_page *page, uint64_t n,
				    uint64_t npins)
{
	enum ps__page_verdict why;
	uint64_t seen;

	if (PS_UNLIKELY(n == 0))
		return -EINVAL;
	/* Relaxed on success, like ps__page_add(): nothing is published. */
	if (ps__page_cas(page, PS_PAGE_LIVE, PS_PAGE_LIVE, 0, 0, n, npins,
			 PS__PAGE_ADD_HELD, memory_order_relaxed, &seen, &why))
		return 0;
	return ps_page_get_refused_slow(page, seen, 0);
}

/*
 * ps__page_try() - speculative compare-and-swap increment: fails on a page
 * that is not LIVE, on any flag in @reject, or at a limit; on success it
 * also sets the flags in @set (PS_PAGE_USER_FLAGS only) in the same CAS.
 */
static inline bool ps__page_try(struct ps_page *page, uint64_t n,
				uint64_t npins, uint64_t reject, uint64_t set)
{
	enum ps__page_verdict why;
	uint64_t seen;

	if (PS_UNLIKELY(n == 0))
		return false;
	/*
	 * Acquire on success: pairs with the release of the put or unfreeze
	 * that came before, so the new holder sees the page as it was left.
	 * A pin is seq_cst: a pinner that re-reads what maps the page with a
	 * seq_cst load needs no fence between the two (the overview).
	 */
	return ps__page_cas(page, PS_PAGE_LIVE | (reject & PS_PAGE_USER_FLAGS),
			    PS_PAGE_LIVE, 0, set & PS_PAGE_USER_FLAGS, n, npins,
			    PS__PAGE_ADD,
			    npins ? memory_order_seq_cst : memory_order_acquire,
			    &seen, &why);
}

/*
 * ps__page_revive() - the one revive loop behind ps_page_get_or_revive(),
 * ps_page_get_or_revive_cache() and ps_page_get_or_freeze(). A LIVE page
 * whose CACHE field, under @cache_mask (0: any mode), equals @cache gains a
 * reference; a free page that is not POISONED becomes @claim (LIVE with one
 * reference, or FROZEN with none), its counts reset, PS_PAGE_LIFE_FLAGS cleared
 * and its CACHE field, under @cache_mask, set to @cache. *@seen receives the
 * word the successful CAS replaced (the old mode of a revived page).
 */
static inline int ps__page_revive(struct ps_page *page, uint64_t cache_mask,
				  uint64_t cache, uint64_t claim,
				  uint64_t *seen)
{
	enum ps__page_verdict why;

	for (;;) {
		/*
		 * Acquire: pairs with the release of the put or unfreeze that
		 * came before, as in ps_page_try_get().
		 */
		if (ps__page_cas(page, PS_PAGE_LIVE | cache_mask,
				 PS_PAGE_LIVE | cache, 0, 0, 1, 0, PS__PAGE_ADD,
				 memory_order_acquire, seen, &why))
			return 0;
		if (why == PS__PAGE_LIMIT)
			return -EOVERFLOW;
		if (*seen & PS_PAGE_SPLIT)
			return -ESTALE; /* split huge word: use its parts */
		/* LIVE here means another mode: only with a cache_mask. */
		if (*seen & (PS_PAGE_FROZEN | PS_PAGE_LIVE))
			return -EBUSY;
		if (*seen & PS_PAGE_POISONED)
			return -EHWPOISON; /* free and quarantined */
		/* Acquire: pairs with the release of the freeing put. */
		if (ps__page_cas(page,
				 PS_PAGE_LIVE | PS_PAGE_FROZEN |
					 PS_PAGE_POISONED | PS_PAGE_SPLIT,
				 0,
				 PS_PAGE_REFS_MASK | PS_PAGE_PINS_MASK |
					 PS_PAGE_LIFE_FLAGS | cache_mask,
				 claim | cache, 0, 0, PS__PAGE_ADD,
				 memory_order_acquire, seen, &why))
			return 1;
		/* Revived, frozen or given a flag by another thread: again. */
	}
}

/* --- initialisation and snapshots ---------------------------------------- */

/**
 * ps_page_init() - set a page to @refs references, no pins, no flags.
 * @page: the page.
 * @refs: initial references (0 makes a free page).
 *
 * Context: no other thread may hold or take references to the page
 * meanwhile (speculative try-gets of a free page are fine).
 * Ordering: relaxed store; publish the page by the usual means (a release
 * store, a lock).
 * Progress: wait-free (one store).
 * Return: 0, or -EOVERFLOW if @refs > PS_PAGE_REFS_MAX (nothing written).
 */
static inline int ps_page_init(struct ps_page *page, uint64_t refs)
{
	if (refs > PS_PAGE_REFS_MAX)
		return -EOVERFLOW;
	/* Relaxed: no other thread may access the page yet (see Context). */
	atomic_store_explicit(&page->word, PS_PAGE_WORD_INIT(refs),
			      memory_order_relaxed);
	return 0;
}

/**
 * ps_page_load() - a snapshot of the whole word, for the ps_page_word_*()
 * decoders.
 * @page: the page; no reference needed, but its memory must stay valid.
 *
 * Context: any thread; the snapshot may be stale as soon as it is taken.
 * Ordering: acquire; pairs with the release of the last put/unpin/unfreeze
 * (and of the flag read-modify-writes).
 * Progress: wait-free.
 * Return: the word as loaded (laid out as the overview of pagestate/page.h
 * shows).
 */
static inline uint64_t ps_page_load(const struct ps_page *page)
{
	/* Acquire: pairs with the release of ps__page_sub()/unfreeze. */
	return atomic_load_explicit(&page->word, memory_order_acquire);
}

/**
 * ps_page_refs() - references now held (pins included; 0 unless LIVE).
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: the count; 0 on a free or frozen page. It may read above
 * PS_PAGE_REFS_MAX while a get at the limit is being refused (see "Limits
 * and misuse" in the overview of pagestate/page.h).
 */
static inline uint64_t ps_page_refs(const struct ps_page *page)
{
	return ps_page_word_refs(ps_page_load(page));
}

/**
 * ps_page_pins() - DMA pins now held (0 unless LIVE).
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: the pin count; 0 on a free or frozen page.
 */
static inline uint64_t ps_page_pins(const struct ps_page *page)
{
	return ps_page_word_pins(ps_page_load(page));
}

/**
 * ps_page_is_live() - does the page have owners (not free, not frozen)?
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: true if LIVE was set at the load.
 */
static inline bool ps_page_is_live(const struct ps_page *page)
{
	return (ps_page_load(page) & PS_PAGE_LIVE) != 0;
}

/**
 * ps_page_is_pinned() - is the page pinned for DMA right now?
 * @page: the page; no reference needed.
 *
 * Exact: true if and only if at least one pin is held at the instant of the
 * load. There are no false positives from ordinary references (unlike Linux's
 * bias scheme). A holder of a pin always reads true. A free or frozen page
 * reads false, also while a misused pin's unit is briefly in its counts.
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire (see ps_page_load()).
 * Progress: wait-free.
 * Return: true if the page was LIVE with a non-zero pins field at the load.
 */
static inline bool ps_page_is_pinned(const struct ps_page *page)
{
	return ps_page_word_pins(ps_page_load(page)) != 0;
}

/**
 * ps_page_maybe_dma_pinned() - Linux's name for ps_page_is_pinned().
 * @page: the page; no reference needed.
 *
 * Linux's folio_maybe_dma_pinned() may return a false positive. This one is
 * exact in both directions.
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: true if the page was LIVE with a non-zero pins field at the load.
 */
static inline bool ps_page_maybe_dma_pinned(const struct ps_page *page)
{
	return ps_page_is_pinned(page);
}

/* --- references ---------------------------------------------------------- */

/**
 * ps_page_get() - take one more reference.
 * @page: a page the caller already holds a reference to.
 *
 * Context: any thread holding a reference.
 * Ordering: relaxed: the held reference keeps the page stable, and a new
 * reference publishes nothing.
 * Progress: wait-free (one fetch-and-add; a refusal at the limit adds one
 * fetch-and-sub); misuse adds one CAS loop (lock-free).
 * Return: 0; -EOVERFLOW at PS_PAGE_REFS_MAX (word unchanged); -EINVAL if the
 * page is free or frozen (reported to the error hook; the word ends
 * unchanged, and concurrent correct callers are not disturbed).
 */
static inline PS_MUST_CHECK int ps_page_get(struct ps_page *page)
{
	return ps__page_add(page, false);
}

/**
 * ps_page_get_many() - take @n more references at once (a large page of n
 * small pages, Linux's folio_ref_add()).
 * @page: a page the caller already holds a reference to.
 * @n: the references to add, at least 1.
 *
 * Context: any thread holding a reference.
 * Ordering: relaxed, like a single get: nothing is published.
 * Progress: lock-free (CAS loop); @n == 1 is one fetch-and-add (wait-free).
 * Return: 0; -EINVAL if @n == 0, or the page is free, holds no reference or
 * is frozen (the last three also reach the error hook); -EOVERFLOW if the
 * count would pass PS_PAGE_REFS_MAX. On error the word ends unchanged.
 */
static inline PS_MUST_CHECK int ps_page_get_many(struct ps_page *page,
						 uint64_t n)
{
	if (n == 1)
		return ps__page_add(page, false);
	return ps__page_add_many(page, n, 0);
}

/**
 * ps_page_try_get() - take a reference speculatively.
 * @page: a page that may be free, frozen or at its limit. The memory must
 *	stay valid, e.g. an element of a frame array.
 *
 * One fetch-and-add. A failure on a free or frozen page leaves its unit in
 * the refs field, where it means nothing: the counts of a page that is not
 * LIVE read 0, and the revival or unfreeze that makes it LIVE rewrites them.
 * Context: any thread, no reference needed.
 * Ordering: acquire on success (pairs with the release of the put or
 * unfreeze that came before); nothing to rely on after a failure.
 * Progress: wait-free, except at the limit (lock-free: a CAS loop decides
 * whether to keep the unit or take it back).
 * Return: true with a reference taken; false if the page is free or frozen,
 * or at PS_PAGE_REFS_MAX (then the word is unchanged).
 */
static inline PS_MUST_CHECK bool ps_page_try_get(struct ps_page *page)
{
	/*
	 * Acquire: pairs with the release of the put or unfreeze that came
	 * before, so the new holder sees the page as it was left.
	 */
	uint64_t old = atomic_fetch_add_explicit(&page->word, PS_PAGE_REF_ONE,
						 memory_order_acquire);

	/*
	 * Exact and refs <= MAX - 1. LIVE with no reference is the instant
	 * between a last put's fetch-and-sub and its free: the try-get wins,
	 * and that put's free fails (docs/page.md).
	 */
	if (PS_LIKELY(ps__page_word_exact(old) &&
		      old < (PS_PAGE_REFS_MAX << PS_PAGE_REFS_SHIFT)))
		return true;
	if (!(old & PS_PAGE_LIVE))
		return false; /* free or frozen: the unit stays, meaningless */
	return ps_page_try_get_slow(page, old);
}

/**
 * ps_page_try_get_many() - ps_page_try_get() for @n references at once.
 * @page: a page that may be free, frozen or near its limit; its memory must
 *	stay valid.
 * @n: the references to take.
 *
 * A compare-and-swap: it never leaves anything in the word when it fails.
 * Context: any thread, no reference needed.
 * Ordering: acquire on success (pairs with the release of the put or
 * unfreeze that came before); nothing to rely on after a failure.
 * Progress: lock-free (CAS loop).
 * Return: true with @n references taken; false if @n == 0, the page is free
 * or frozen, or the count would pass PS_PAGE_REFS_MAX (word unchanged).
 */
static inline PS_MUST_CHECK bool ps_page_try_get_many(struct ps_page *page,
						      uint64_t n)
{
	return ps__page_try(page, n, 0, 0, 0);
}

/**
 * ps_page_try_get_masked() - ps_page_try_get_many() that also fails when any
 * flag in @reject is set, in the same atomic decision.
 * @page: a page that may be free, frozen or near its limit; its memory must
 *	stay valid.
 * @n: the references to take.
 * @reject: flags that make it fail; bits outside PS_PAGE_USER_FLAGS are
 *	ignored.
 *
 * Example: @reject = PS_PAGE_POISONED | PS_PAGE_PRIVATE for a path that
 * must only ever see shared, healthy pages.
 * Context: any thread, no reference needed.
 * Ordering: acquire on success (pairs with the release of the put or
 * unfreeze that came before); nothing to rely on after a failure.
 * Progress: lock-free (CAS loop).
 * Return: true with @n references taken; false if @n == 0, a flag in
 * @reject is set, the page is free or frozen, or the count would pass
 * PS_PAGE_REFS_MAX (word unchanged).
 */
static inline PS_MUST_CHECK bool
ps_page_try_get_masked(struct ps_page *page, uint64_t n, uint64_t reject)
{
	return ps__page_try(page, n, 0, reject, 0);
}

/**
 * ps_page_put() - drop one reference.
 * @page: a page the caller holds a reference to (not one owned by a pin).
 *
 * One fetch-and-sub, checked afterwards on the word it returned. The put
 * that drops the last reference leaves the page LIVE with no counts for an
 * instant and frees it with a compare-and-swap; a try-get or get that comes
 * in between wins (it is ordered before this put, which then does not free).
 * A misused put (of a pin's reference, or of nothing) is repaired by this
 * call, with the inverse add, before it reports; a put that meets another
 * thread's misuse in flight saturates the word (see "Limits and misuse").
 * Context: a holder of the reference.
 * Ordering: release; acquire too when returning true (the freeing
 * compare-and-swap reads the last of every earlier release, so the caller
 * frees after all holders).
 * Progress: wait-free (one fetch-and-sub), except the put that frees: a CAS
 * loop (lock-free) that waits while a misused release on the dying word is
 * repaired (blocking for a few instructions).
 * Return: true if this freed the page: it dropped the last reference and
 * cleared LIVE and PS_PAGE_LIFE_FLAGS in the same step (a free ends a
 * lifetime), so the caller frees it. False otherwise, and also on misuse
 * (underflow, a reference owned by a pin, a frozen or free page), which goes
 * to the error hook once the word is as it was.
 */
static inline bool ps_page_put(struct ps_page *page)
{
	return ps__page_release(page, false);
}

/**
 * ps_page_put_many() - drop @n references at once.
 * @page: a page the caller holds @n references to (none owned by a pin).
 * @n: the references to drop, 1 to PS_PAGE_REFS_MAX.
 *
 * Context: a holder of the @n references.
 * Ordering: release; acquire too when returning true (as ps_page_put()).
 * Progress: lock-free (CAS loop).
 * Return: true if this freed the page (the caller frees it; the free
 * clears PS_PAGE_LIFE_FLAGS, as ps_page_put()); false otherwise.
 * Also false on misuse, reported to the error hook with nothing written:
 * @n == 0 or @n > PS_PAGE_REFS_MAX (PS_PAGE_ERR_BAD_COUNT), underflow, a
 * reference owned by a pin, a frozen or free page.
 */
static inline bool ps_page_put_many(struct ps_page *page, uint64_t n)
{
	return ps__page_sub(page, n, 0);
}

/* --- DMA pins ------------------------------------------------------------ */

/**
 * ps_page_pin() - take a DMA pin (which is also a reference).
 * @page: a page the caller already holds a reference to.
 *
 * Context: any thread holding a reference.
 * Ordering: relaxed. A caller that re-reads, after the pin, what led it to
 * the page needs a full fence in between (the overview of pagestate/page.h,
 * "Operations: progress and ordering").
 * Progress: wait-free (one fetch-and-add; a refusal at a limit adds one
 * fetch-and-sub); misuse adds one CAS loop (lock-free).
 * Return: 0; -EOVERFLOW at PS_PAGE_PINS_MAX or PS_PAGE_REFS_MAX (word
 * unchanged); -EINVAL if the page is free or frozen (error hook; the word
 * ends unchanged, and concurrent correct callers are not disturbed).
 */
static inline PS_MUST_CHECK int ps_page_pin(struct ps_page *page)
{
	return ps__page_add(page, true);
}

/**
 * ps_page_pin_many() - take @n pins at once (one per small page of a large
 * page, as Linux counts a folio's pins).
 * @page: a page the caller already holds a reference to.
 * @n: the pins to take (each also a reference), at least 1.
 *
 * Context: any thread holding a reference.
 * Ordering: relaxed, like ps_page_pin().
 * Progress: lock-free (CAS loop); @n == 1 is one fetch-and-add (wait-free).
 * Return: 0; -EINVAL if @n == 0, or the page is free, holds no reference or
 * is frozen (the last three also reach the error hook); -EOVERFLOW if pins
 * or refs would pass PS_PAGE_PINS_MAX or PS_PAGE_REFS_MAX. On error the word
 * ends unchanged.
 */
static inline PS_MUST_CHECK int ps_page_pin_many(struct ps_page *page,
						 uint64_t n)
{
	if (n == 1)
		return ps__page_add(page, true);
	return ps__page_add_many(page, n, n);
}

/**
 * ps_page_try_pin() - take a pin speculatively (GUP-fast's try-grab).
 * @page: a page that may be free, frozen or at a limit; its memory must stay
 *	valid.
 *
 * A compare-and-swap (pins never hold meaningless units, so is_pinned stays
 * one load).
 * Context: any thread, no reference needed.
 * Ordering: seq_cst on success: acquire (pairs with the release of the put
 * or unfreeze that came before), and a re-read by a seq_cst load needs no
 * fence (see the overview); nothing to rely on after a failure.
 * Progress: lock-free.
 * Return: true with a pin (and its reference) taken; false if the page is
 * free or frozen, or a limit would be passed (nothing changed).
 */
static inline PS_MUST_CHECK bool ps_page_try_pin(struct ps_page *page)
{
	return ps__page_try(page, 1, 1, 0, 0);
}

/**
 * ps_page_try_pin_many() - ps_page_try_pin() for @n pins at once.
 * @page: a page that may be free, frozen or near a limit; its memory must
 *	stay valid.
 * @n: the pins to take (each also a reference).
 *
 * Context: any thread, no reference needed.
 * Ordering: seq_cst on success: acquire (pairs with the release of the put
 * or unfreeze that came before), and a re-read by a seq_cst load needs no
 * fence (see the overview); nothing to rely on after a failure.
 * Progress: lock-free (CAS loop).
 * Return: true with @n pins (and their references) taken; false if @n == 0,
 * the page is free or frozen, or a limit would be passed (nothing changed).
 */
static inline PS_MUST_CHECK bool ps_page_try_pin_many(struct ps_page *page,
						      uint64_t n)
{
	return ps__page_try(page, n, n, 0, 0);
}

/**
 * ps_page_try_pin_masked() - ps_page_try_pin_many() that also fails when any
 * flag in @reject is set, in the same atomic decision.
 * @page: a page that may be free, frozen or near a limit; its memory must
 *	stay valid.
 * @n: the pins to take (each also a reference).
 * @reject: flags that make it fail; bits outside PS_PAGE_USER_FLAGS are
 *	ignored.
 *
 * This is how a conversion (freeze, flip PRIVATE, unfreeze) and a pin that
 * expects shared memory are made linearizable. Either the pin wins and the
 * freeze fails, or the freeze wins and the pin fails: on the missing LIVE
 * while frozen, on PRIVATE afterwards.
 * Context: any thread, no reference needed.
 * Ordering: seq_cst on success: acquire (pairs with the release of the put
 * or unfreeze that came before), and a re-read by a seq_cst load needs no
 * fence (see the overview); nothing to rely on after a failure.
 * Progress: lock-free (CAS loop).
 * Return: true with @n pins (and their references) taken; false if @n == 0,
 * a flag in @reject is set, the page is free or frozen, or a limit would be
 * passed (nothing changed).
 */
static inline PS_MUST_CHECK bool
ps_page_try_pin_masked(struct ps_page *page, uint64_t n, uint64_t reject)
{
	return ps__page_try(page, n, n, reject, 0);
}

/**
 * ps_page_try_pin_and_set_flags() - ps_page_try_pin_masked() that also sets
 * the flags in @set, in the same atomic step as the pins.
 * @page: a page that may be free, frozen or near a limit; its memory must
 *	stay valid.
 * @n: the pins to take (each also a reference).
 * @reject: flags that make it fail; bits outside PS_PAGE_USER_FLAGS are
 *	ignored.
 * @set: flags to set with the pins; bits outside PS_PAGE_USER_FLAGS are
 *	ignored. Nothing is set when the call fails.
 *
 * A pin for write sets WRITE_PINNED this way: every word that shows the pin
 * shows the flag too, so a writer-back that reads the word (one RMW, e.g.
 * ps_page_fetch_clear_flags()) can never see the pin but not that it is
 * for write (ps_page_word_pinned_for_write()).
 * Context: any thread, no reference needed.
 * Ordering: seq_cst on success: acquire (pairs with the release of the put
 * or unfreeze that came before), and a re-read by a seq_cst load needs no
 * fence (see the overview); nothing to rely on after a failure.
 * Progress: lock-free (CAS loop).
 * Return: true with @n pins (and their references) taken and @set set; false
 * if @n == 0, a flag in @reject is set, the page is free or frozen, or a
 * limit would be passed (nothing changed).
 */
static inline PS_MUST_CHECK bool
ps_page_try_pin_and_set_flags(struct ps_page *page, uint64_t n, uint64_t reject,
			      uint64_t set)
{
	return ps__page_try(page, n, n, reject, set);
}

/**
 * ps_page_unpin() - drop one pin and its reference.
 * @page: a page the caller holds a pin on.
 *
 * One fetch-and-sub, checked afterwards, as ps_page_put(): an unpin of a pin
 * nobody holds is repaired by this call before it reports.
 * Context: the holder of the pin.
 * Ordering: release; acquire too when returning true (as ps_page_put()).
 * Progress: as ps_page_put().
 * Return: true if this freed the page (the caller frees; the free clears
 * PS_PAGE_LIFE_FLAGS, as ps_page_put()); false otherwise and on misuse (no
 * pin held, a frozen or free page), which goes to the error hook once the
 * word is as it was.
 */
static inline bool ps_page_unpin(struct ps_page *page)
{
	return ps__page_release(page, true);
}

/**
 * ps_page_unpin_many() - drop @n pins and their references at once.
 * @page: a page the caller holds @n pins on.
 * @n: the pins to drop, 1 to PS_PAGE_PINS_MAX.
 *
 * Context: the holder of the @n pins.
 * Ordering: release; acquire too when returning true (as ps_page_put()).
 * Progress: lock-free (CAS loop).
 * Return: true if this freed the page (the caller frees; the free clears
 * PS_PAGE_LIFE_FLAGS, as ps_page_put()); false otherwise.
 * Also false on misuse, reported to the error hook with nothing written:
 * @n == 0 or @n > PS_PAGE_PINS_MAX (PS_PAGE_ERR_BAD_COUNT), fewer than @n
 * pins held, a frozen or free page.
 */
static inline bool ps_page_unpin_many(struct ps_page *page, uint64_t n)
{
	return ps__page_sub(page, n, n);
}

/**
 * ps_page_get_or_revive() - take a reference for a new owner, reviving the
 * page if it is free.
 * @page: the page.
 *
 * A LIVE page gains a reference. A free page becomes LIVE with this one
 * reference: its counts are reset and PS_PAGE_LIFE_FLAGS cleared (a new
 * lifetime starts clean); its other flags are kept. This is how a mapping
 * takes its frame, whether or not the frame was in use. Two racing callers
 * on a free page both succeed, with two references.
 * Context: any thread, no reference needed; the memory must stay valid.
 * Ordering: acquire (pairs with the release of the put that freed the page,
 * or of the put or unfreeze before a LIVE page's last change).
 * Progress: lock-free.
 * Return: 0 if the page was LIVE; 1 if this call revived a free page (an
 * owner undoing the call then knows the page was free before it); -EBUSY if
 * the page is frozen; -EHWPOISON if it is free and POISONED (quarantined
 * pages are never handed out again); -EOVERFLOW at PS_PAGE_REFS_MAX.
 */
static inline PS_MUST_CHECK int ps_page_get_or_revive(struct ps_page *page)
{
	uint64_t seen;

	return ps__page_revive(page, 0, 0, PS_PAGE_LIVE | PS_PAGE_REF_ONE,
			       &seen);
}

/**
 * ps_page_get_or_revive_cache() - ps_page_get_or_revive() for a new owner
 * that needs cache mode @mode.
 * @page: the page.
 * @mode: the mode the owner needs.
 * @old_mode: if not NULL, receives the mode the page had before the call (an
 *	owner undoing a revival restores it with ps_page_set_cache_if_free()).
 *
 * A LIVE page with @mode gains a reference. A free page becomes LIVE with
 * this one reference and @mode, without PS_PAGE_LIFE_FLAGS, in one atomic
 * step, so no other owner can see it with another mode in between.
 * Context: any thread, no reference needed; the memory must stay valid.
 * Ordering: acquire (as ps_page_get_or_revive(): pairs with the release of
 * the put that dropped the last reference).
 * Progress: lock-free.
 * Return: 0 (was LIVE), 1 (revived); -EBUSY if the page is frozen or LIVE
 * with another mode; -EHWPOISON if it is free and POISONED; -EOVERFLOW at
 * PS_PAGE_REFS_MAX; -EINVAL for an unknown @mode. On error nothing changes.
 */
static inline PS_MUST_CHECK int
ps_page_get_or_revive_cache(struct ps_page *page, enum ps_cache_mode mode,
			    unsigned int *old_mode)
{
	uint64_t seen;
	int rc;

	if ((unsigned int)mode >= PS_CACHE_NR)
		return -EINVAL;
	rc = ps__page_revive(page, PS_PAGE_CACHE_MASK,
			     (uint64_t)mode << PS_PAGE_CACHE_SHIFT,
			     PS_PAGE_LIVE | PS_PAGE_REF_ONE, &seen);
	if (rc >= 0 && old_mode)
		*old_mode = ps_page_word_cache(seen);
	return rc;
}

/**
 * ps_page_get_or_freeze() - take a page for a new owner that may still give
 * it back: a reference on a LIVE page, or a claim of a free one.
 * @page: the page.
 * @mode: the cache mode the owner needs, or -1 for any (as
 *	ps_page_get_or_revive_cache() and ps_page_get_or_revive()).
 * @old_mode: if not NULL, receives the mode the page had before the call.
 *
 * A LIVE page with @mode gains a reference. A free page is claimed: frozen
 * with no reference and with @mode, its PS_PAGE_LIFE_FLAGS cleared (a new
 * lifetime starts), so that every try-get and try-pin fails on it and no one
 * else can change its mode or freeze it. The claimer ends the freeze
 * exactly once: ps_page_unfreeze_claimed(@page, n) keeps the page, LIVE with
 * n references; ps_page_unfreeze_change_flags(@page, 0, PS_PAGE_CACHE_MASK,
 * old mode << PS_PAGE_CACHE_SHIFT) gives it back free, as it was. Unlike a
 * revival, no stale speculative get can take the page meanwhile, so giving
 * it back is unambiguous (docs/page.md, "Claiming a free page").
 * Context: any thread, no reference needed; the memory must stay valid.
 * Ordering: acquire (as ps_page_get_or_revive(): pairs with the release of
 * the put that freed the page, or of the put or unfreeze before a LIVE
 * page's last change).
 * Progress: lock-free.
 * Return: 0 if the page was LIVE (one more reference); 1 if it was free and
 * this call froze it; -EBUSY if it is frozen, or LIVE with another mode than
 * @mode; -EHWPOISON if it is free and POISONED; -EOVERFLOW at
 * PS_PAGE_REFS_MAX; -EINVAL for an unknown @mode. On error nothing changes.
 */
static inline PS_MUST_CHECK int
ps_page_get_or_freeze(struct ps_page *page, int mode, unsigned int *old_mode)
{
	const uint64_t mask = mode >= 0 ? PS_PAGE_CACHE_MASK : 0;
	uint64_t seen;
	int rc;

	if (mode >= PS_CACHE_NR || mode < -1)
		return -EINVAL;
	rc = ps__page_revive(page, mask,
			     mode >= 0 ? (uint64_t)mode << PS_PAGE_CACHE_SHIFT
				       : 0,
			     PS_PAGE_FROZEN, &seen);
	if (rc >= 0 && old_mode)
		*old_mode = ps_page_word_cache(seen);
	return rc;
}

/* --- freezing ------------------------------------------------------------- */

/**
 * ps_page_freeze() - take the page exclusively, if its count is exact.
 * @page: the page.
 * @expected_refs: the references the freezer accounts for.
 *
 * Succeeds only if the page is LIVE with exactly @expected_refs references
 * and no pins. It then clears LIVE and sets FROZEN: the count reads 0, every
 * try-get and try-pin fails, and every get/put/pin/unpin is misuse, until
 * ps_page_unfreeze(). The flags stay writable. This is Linux's
 * page_ref_freeze(), the "expected references" check of migration and
 * conversion.
 *
 * Context: any thread that can account for all @expected_refs references
 * (its own included, if it holds one).
 * Ordering: acquire on success (pairs with the release of every earlier put
 * or unpin).
 * Progress: lock-free.
 * Return: true if frozen; false otherwise, and always for @expected_refs 0
 * (nothing changed).
 */
static inline PS_MUST_CHECK bool ps_page_freeze(struct ps_page *page,
						uint64_t expected_refs)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/*
	 * A LIVE page holds a reference, except for the instant of a last
	 * put (LIVE, no counts): that word is the put's to free, not a page
	 * with zero references to freeze.
	 */
	if (expected_refs == 0 || expected_refs > PS_PAGE_REFS_MAX)
		return false;
	/* Acquire: see above. */
	return ps__page_cas(
		page, PS_PAGE_REFS_MASK | PS_PAGE_PINS_MASK | PS_PAGE_LIVE,
		(expected_refs << PS_PAGE_REFS_SHIFT) | PS_PAGE_LIVE,
		PS_PAGE_REFS_MASK | PS_PAGE_LIVE, PS_PAGE_FROZEN, 0, 0,
		PS__PAGE_ADD, memory_order_acquire, &seen, &why);
}

/**
 * ps_page_unfreeze_change_flags() - end a freeze, leaving @refs references,
 * and change flags in the same atomic step.
 * @page: a page this thread froze.
 * @refs: the references the page holds from now on (no pins). 0 leaves a
 *	free page, and clears PS_PAGE_LIFE_FLAGS as every free does.
 * @clear: flags to clear; bits outside PS_PAGE_USER_FLAGS are ignored.
 * @set: flags to set once @clear is cleared; likewise.
 *
 * A conversion flips a frame's encryption flags this way: the first try
 * that succeeds after the unfreeze sees the new flags, never the old ones
 * with the new count.
 * Context: the freezer, once per successful ps_page_freeze().
 * Ordering: release. It publishes the freezer's changes to the next
 * acquiring try-get (pairs with the acquire in ps_page_try_get()).
 * Progress: lock-free.
 * Return: 0; -EOVERFLOW if @refs > PS_PAGE_REFS_MAX; -EINVAL if the page was
 * not frozen (also reported to the error hook). On error nothing changes.
 */
static inline int ps_page_unfreeze_change_flags(struct ps_page *page,
						uint64_t refs, uint64_t clear,
						uint64_t set)
{
	enum ps__page_verdict why;
	uint64_t seen;

	if (refs > PS_PAGE_REFS_MAX)
		return -EOVERFLOW;
	if (!refs) /* a free ends a lifetime */
		clear |= PS_PAGE_LIFE_FLAGS;
	/* Release: see above. */
	if (ps__page_cas(page, PS_PAGE_FROZEN | PS_PAGE_SPLIT, PS_PAGE_FROZEN,
			 PS_PAGE_FROZEN | PS_PAGE_REFS_MASK |
				 PS_PAGE_PINS_MASK |
				 (clear & PS_PAGE_USER_FLAGS),
			 PS_PAGE_WORD_INIT(refs) | (set & PS_PAGE_USER_FLAGS),
			 0, 0, PS__PAGE_ADD, memory_order_release, &seen, &why))
		return 0;
	return ps_page_unfreeze_refused_slow(page, seen);
}

/**
 * ps_page_unfreeze() - end a freeze, leaving @refs references.
 * @page: a page this thread froze.
 * @refs: the references the page holds from now on (no pins). 0 leaves a
 *	free page (PS_PAGE_LIFE_FLAGS cleared, as every free does).
 *
 * Context: the freezer, once per successful ps_page_freeze().
 * Ordering: release. It publishes the freezer's changes to the next
 * acquiring try-get (pairs with the acquire in ps_page_try_get()).
 * Progress: lock-free.
 * Return: 0; -EOVERFLOW if @refs > PS_PAGE_REFS_MAX; -EINVAL if the page was
 * not frozen (also reported to the error hook). On error nothing changes.
 */
static inline int ps_page_unfreeze(struct ps_page *page, uint64_t refs)
{
	return ps_page_unfreeze_change_flags(page, refs, 0, 0);
}

/**
 * ps_page_unfreeze_claimed() - end the freeze of a page that
 * ps_page_get_or_freeze() claimed (it was free), keeping it: LIVE with
 * @refs references, PS_PAGE_LIFE_FLAGS cleared in the same step.
 * @page: a page this thread claimed (ps_page_get_or_freeze() returned 1).
 * @refs: the references the page holds from now on (no pins); 0 gives it
 *	back free, as ps_page_unfreeze() does.
 *
 * Flags stay writable on a frozen page, so a thread that marks the page
 * without holding it (misuse, e.g. a stale setter from its previous lifetime)
 * may have set DIRTY since the claim. Clearing PS_PAGE_LIFE_FLAGS again in
 * the step that makes the page LIVE means the new owner's first mark is a
 * clean-to-dirty transition however the two interleave. For a page frozen by
 * ps_page_freeze(), whose lifetime goes on, use ps_page_unfreeze().
 * Context: the claimer, once per claim.
 * Ordering: release (as ps_page_unfreeze(): pairs with the acquire of the
 * next try-get or try-pin that takes the page).
 * Progress: lock-free.
 * Return: 0; -EOVERFLOW if @refs > PS_PAGE_REFS_MAX; -EINVAL if the page was
 * not frozen (also reported to the error hook). On error nothing changes.
 */
static inline int ps_page_unfreeze_claimed(struct ps_page *page, uint64_t refs)
{
	return ps_page_unfreeze_change_flags(page, refs, PS_PAGE_LIFE_FLAGS, 0);
}

/**
 * ps_page_is_frozen() - is the page frozen right now?
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: true if FROZEN was set at the load.
 */
static inline bool ps_page_is_frozen(const struct ps_page *page)
{
	return (ps_page_load(page) & PS_PAGE_FROZEN) != 0;
}

/* --- flags --------------------------------------------------------------- */

/**
 * ps_page_flags() - the flag bits now set.
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: the PS_PAGE_FLAGS_MASK bits of the word (LIVE, FROZEN and the
 * cache field included).
 */
static inline uint64_t ps_page_flags(const struct ps_page *page)
{
	return ps_page_word_flags(ps_page_load(page));
}

/**
 * ps_page_test_flags() - is any flag of @mask set?
 * @page: the page; no reference needed.
 * @mask: the flags to test; bits outside PS_PAGE_FLAGS_MASK are ignored.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: true if any flag of @mask was set at the load.
 */
static inline bool ps_page_test_flags(const struct ps_page *page, uint64_t mask)
{
	return (ps_page_load(page) & mask & PS_PAGE_FLAGS_MASK) != 0;
}

/**
 * ps_page_fetch_set_flags() - set the flags in @mask (one fetch-or) and
 * return the whole word as it was.
 * @page: the page.
 * @mask: the flags to set.
 *
 * Only PS_PAGE_USER_FLAGS can be set. Other bits of @mask are ignored, so a
 * count, FROZEN or LIVE can never change through this call. The old word
 * also tells the counts at the instant of the change, in the same single
 * order as every count operation on the page (write-back uses this to learn
 * whether a pin came before its clearing of DIRTY).
 * Context: any thread; no reference needed (flags stay writable on a free or
 * frozen page).
 * Ordering: acquire and release (LOCKED is a lock, DIRTY hands data over);
 * pairs with the other flag operations and with ps_page_load().
 * Progress: wait-free.
 * Return: the word before the change (decode it with ps_page_word_*()).
 */
static inline uint64_t ps_page_fetch_set_flags(struct ps_page *page,
					       uint64_t mask)
{
	/* Acq_rel: LOCKED is a lock and DIRTY hands over data (see header). */
	return atomic_fetch_or_explicit(&page->word, mask & PS_PAGE_USER_FLAGS,
					memory_order_acq_rel);
}

/**
 * ps_page_fetch_clear_flags() - clear the flags in @mask (one fetch-and)
 * and return the whole word as it was (see ps_page_fetch_set_flags()).
 * @page: the page.
 * @mask: the flags to clear; bits outside PS_PAGE_USER_FLAGS are ignored.
 *
 * Context: any thread; no reference needed (flags stay writable on a free or
 * frozen page).
 * Ordering: acquire and release: clearing LOCKED releases the lock, clearing
 * DIRTY takes the data over; pairs with ps_page_fetch_set_flags().
 * Progress: wait-free.
 * Return: the word before the change (decode it with ps_page_word_*()).
 */
static inline uint64_t ps_page_fetch_clear_flags(struct ps_page *page,
						 uint64_t mask)
{
	/* Acq_rel: pairs with ps_page_fetch_set_flags() (lock, data). */
	return atomic_fetch_and_explicit(&page->word,
					 ~(mask & PS_PAGE_USER_FLAGS),
					 memory_order_acq_rel);
}

/**
 * ps_page_set_flags() - set the flags in @mask (one fetch-or).
 * @page: the page.
 * @mask: the flags to set.
 *
 * Only PS_PAGE_USER_FLAGS can be set (see ps_page_fetch_set_flags()).
 * Context: any thread; no reference needed.
 * Ordering: acquire and release.
 * Progress: wait-free.
 * Return: the flags as they were before.
 */
static inline uint64_t ps_page_set_flags(struct ps_page *page, uint64_t mask)
{
	return ps_page_word_flags(ps_page_fetch_set_flags(page, mask));
}

/**
 * ps_page_clear_flags() - clear the flags in @mask (one fetch-and).
 * @page: the page.
 * @mask: the flags to clear.
 *
 * Only PS_PAGE_USER_FLAGS are affected.
 * Context: any thread; no reference needed.
 * Ordering: acquire and release.
 * Progress: wait-free.
 * Return: the flags as they were before.
 */
static inline uint64_t ps_page_clear_flags(struct ps_page *page, uint64_t mask)
{
	return ps_page_word_flags(ps_page_fetch_clear_flags(page, mask));
}

/**
 * ps_page_test_and_set_flag() - set @flag and say whether it was already set.
 * @page: the page.
 * @flag: one flag of PS_PAGE_USER_FLAGS, e.g. PS_PAGE_LOCKED.
 *
 * A false return means this call made the clear-to-set transition: exactly
 * one of any number of racing callers sees false.
 * Context: any thread; no reference needed.
 * Ordering: acquire and release (one fetch-or): taking LOCKED (a false
 * return) acquires what the last clear of LOCKED released.
 * Progress: wait-free.
 * Return: true if @flag was already set; false if this call set it.
 */
static inline bool ps_page_test_and_set_flag(struct ps_page *page,
					     uint64_t flag)
{
	return (ps_page_set_flags(page, flag) & flag) != 0;
}

/**
 * ps_page_test_and_clear_flag() - clear @flag and say whether it was set.
 * @page: the page.
 * @flag: one flag of PS_PAGE_USER_FLAGS, e.g. PS_PAGE_LOCKED.
 *
 * A true return means this call made the set-to-clear transition.
 * Context: any thread; no reference needed.
 * Ordering: acquire and release (one fetch-and): clearing LOCKED releases
 * the holder's writes to the next taker of LOCKED.
 * Progress: wait-free.
 * Return: true if @flag was set (this call cleared it); false if it was
 * already clear.
 */
static inline bool ps_page_test_and_clear_flag(struct ps_page *page,
					       uint64_t flag)
{
	return (ps_page_clear_flags(page, flag) & flag) != 0;
}

/**
 * ps_page_change_flags() - clear @clear then set @set, in one atomic step.
 * @page: the page.
 * @clear: the flags to clear.
 * @set: the flags to set once @clear is cleared.
 *
 * For multi-bit fields such as the cache mode. Only PS_PAGE_USER_FLAGS are
 * affected.
 * Context: any thread; no reference needed.
 * Ordering: acquire and release, like the single-bit flag operations.
 * Progress: lock-free (a CAS loop that never refuses; it retries only when
 * another thread changed the word).
 * Return: the flags as they were before.
 */
static inline uint64_t ps_page_change_flags(struct ps_page *page,
					    uint64_t clear, uint64_t set)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/* Acq_rel: as the single-bit flag operations. Cannot fail. */
	(void)ps__page_cas(page, 0, 0, clear & PS_PAGE_USER_FLAGS,
			   set & PS_PAGE_USER_FLAGS, 0, 0, PS__PAGE_ADD,
			   memory_order_acq_rel, &seen, &why);
	return ps_page_word_flags(seen);
}

/**
 * ps_page_clear_flag_if_unpinned() - clear @flag, but only while the page
 * has no pins, in one atomic decision.
 * @page: the page; no reference needed.
 * @flag: one flag of PS_PAGE_USER_FLAGS, e.g. PS_PAGE_WRITE_PINNED.
 *
 * This is how a hint set by pins (WRITE_PINNED) is cleared lazily: a pin
 * taken at any moment before the clear keeps the flag, because the clear
 * requires zero pins in the same compare-and-swap.
 * Context: any thread.
 * Ordering: acquire and release on success, like the other flag
 * read-modify-writes; nothing on failure.
 * Progress: lock-free (CAS loop).
 * Return: true if this call cleared @flag; false if it was clear, the page
 * had pins, or @flag is not a user flag (nothing changed).
 */
static inline bool ps_page_clear_flag_if_unpinned(struct ps_page *page,
						  uint64_t flag)
{
	const uint64_t f = flag & PS_PAGE_USER_FLAGS;
	enum ps__page_verdict why;
	uint64_t seen;

	if (!f)
		return false;
	/* Acq_rel: as the single-bit flag operations. */
	return ps__page_cas(page, PS_PAGE_PINS_MASK | f, f, f, 0, 0, 0,
			    PS__PAGE_ADD, memory_order_acq_rel, &seen, &why);
}

/**
 * ps_page_set_flags_unless_frozen() - set the flags in @mask unless the page
 * is frozen, in one atomic decision.
 * @page: the page; no reference needed.
 * @mask: the flags to set; bits outside PS_PAGE_USER_FLAGS are ignored.
 *
 * For a flag that a freezer decides while it holds the page (a conversion
 * sets INACCESSIBLE with PRIVATE): set from outside, it must lose to the
 * freeze, not land in the middle of it.
 * Context: any thread.
 * Ordering: acquire and release on success, like the other flag
 * read-modify-writes; nothing on failure.
 * Progress: lock-free (CAS loop).
 * Return: true if the flags are set (also if they were already); false if
 * the page was frozen (nothing changed).
 */
static inline bool ps_page_set_flags_unless_frozen(struct ps_page *page,
						   uint64_t mask)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/* Acq_rel: as the single-bit flag operations. */
	return ps__page_cas(page, PS_PAGE_FROZEN, 0, 0,
			    mask & PS_PAGE_USER_FLAGS, 0, 0, PS__PAGE_ADD,
			    memory_order_acq_rel, &seen, &why);
}

/* --- the page's bit lock ------------------------------------------------- */

/**
 * ps_page_trylock() - take the page's bit lock (LOCKED) if nobody holds it.
 * @page: the page; no reference needed, but its memory must stay valid.
 *
 * LOCKED is a sleeping bit lock for slow paths, as Linux's folio lock. It
 * excludes only other lockers: counts and the other flags change as usual
 * while it is held.
 * Context: any thread. Not recursive: a holder that tries again fails.
 * Ordering: acquire when it takes the lock: pairs with the release of
 * ps_page_unlock(), so the new holder sees what the last holder wrote.
 * Progress: wait-free (one fetch-or).
 * Return: true if this call took the lock; false if it was held.
 */
static inline PS_MUST_CHECK bool ps_page_trylock(struct ps_page *page)
{
	/* Acquire: pairs with the release in ps_page_unlock(). */
	return !(atomic_fetch_or_explicit(&page->word, PS_PAGE_LOCKED,
					  memory_order_acquire) &
		 PS_PAGE_LOCKED);
}

/**
 * ps_page_lock() - take the page's bit lock, waiting for it if held.
 * @page: the page; no reference needed, but its memory must stay valid
 *	(hold a reference if the page could otherwise be freed and reused).
 *
 * One fetch-or when the lock is free. Otherwise ps_page_lock_slow() spins
 * for a while, then yields the processor between attempts (there is no
 * wait queue: a holder must not sleep for long).
 * Context: a thread that may block, not holding this page's lock (not
 * recursive) and not taking two page locks in an order another thread reverses.
 * Ordering: acquire: pairs with the release of the last ps_page_unlock().
 * Progress: blocking.
 */
static inline void ps_page_lock(struct ps_page *page)
{
	if (PS_UNLIKELY(!ps_page_trylock(page)))
		ps_page_lock_slow(page);
}

/**
 * ps_page_unlock() - release the page's bit lock.
 * @page: a page this thread locked.
 *
 * Context: the holder (ps_page_lock() or a true ps_page_trylock()).
 * Ordering: release: the holder's accesses come before the next taker's
 * (pairs with the acquire in ps_page_trylock()).
 * Progress: wait-free (one fetch-and).
 */
static inline void ps_page_unlock(struct ps_page *page)
{
	/* Release: pairs with the acquire in ps_page_trylock(). */
	atomic_fetch_and_explicit(&page->word, ~PS_PAGE_LOCKED,
				  memory_order_release);
}

/* --- write-back in flight ------------------------------------------------ */

/**
 * ps_page_start_writeback() - mark the page under write-back (WRITEBACK),
 * unless a write-back of it is already in flight.
 * @page: the page; no reference needed, but its memory must stay valid.
 *
 * Linux's folio_start_writeback() together with the test of PG_writeback its
 * callers make first: one write-back of a page is in flight at a time, so the
 * last copy to reach the backing store is the newest. On false another
 * write-back holds the page: a cleaning write-back skips it, a data-integrity
 * one waits (ps_page_wait_writeback()) and looks again. WRITEBACK excludes
 * only other write-backs: counts and the other flags change as usual while it
 * is set.
 * Context: any thread. The page's writer-back calls it once per write of
 * the page; a true return must be paired with ps_page_end_writeback().
 * Ordering: acquire and release (one fetch-or): a true return acquires
 * what the previous ps_page_end_writeback() released (that write-back's
 * I/O is complete before this one's begins).
 * Progress: wait-free.
 * Return: true if this call set WRITEBACK; false if it was already set
 * (nothing changed).
 */
static inline PS_MUST_CHECK bool ps_page_start_writeback(struct ps_page *page)
{
	return !ps_page_test_and_set_flag(page, PS_PAGE_WRITEBACK);
}

/**
 * ps_page_end_writeback() - end the write-back this caller started.
 * @page: a page whose WRITEBACK this caller set (ps_page_start_writeback()
 *	returned true).
 *
 * Linux's folio_end_writeback(): the write is complete (or failed and the
 * caller dirtied the page again first), and the next write-back may start;
 * waiters in ps_page_wait_writeback() return.
 * Context: the thread, or the I/O completion, that owns the write-back.
 * Ordering: acquire and release (one fetch-and): the writer-back's accesses
 * (its completed I/O, a DIRTY it set again) happen before whatever a waiter
 * that sees WRITEBACK clear does next (pairs with the acquire of
 * ps_page_wait_writeback() and of the next ps_page_start_writeback()).
 * Progress: wait-free.
 * Return: the word before the change (decode it with ps_page_word_*()); its
 * WRITEBACK bit is set unless the caller did not own the write-back.
 */
static inline uint64_t ps_page_end_writeback(struct ps_page *page)
{
	return ps_page_fetch_clear_flags(page, PS_PAGE_WRITEBACK);
}

/**
 * ps_page_wait_writeback() - wait until no write-back of the page is in
 * flight (Linux's folio_wait_writeback()).
 * @page: the page; its memory must stay valid (hold a reference if it
 *	could otherwise be freed and reused).
 *
 * One load when WRITEBACK is clear. Otherwise ps_page_wait_writeback_slow()
 * spins for a while, then yields between loads (there is no wait queue).
 * A write-back may start again as soon as this returns: a caller that must
 * exclude it serialises with the other writer-backs itself (the space
 * starts write-backs only under the page's LOCKED bit).
 * Context: a thread that may block, and that does not own a write-back of
 * the page itself (it would wait for itself forever).
 * Ordering: acquire: the load that reads WRITEBACK clear pairs with the
 * release of ps_page_end_writeback().
 * Progress: blocking, for as long as the write-back in flight lasts.
 */
static inline void ps_page_wait_writeback(struct ps_page *page)
{
	/* Acquire (ps_page_load()): pairs with ps_page_end_writeback(). */
	if (PS_UNLIKELY(ps_page_test_flags(page, PS_PAGE_WRITEBACK)))
		ps_page_wait_writeback_slow(page);
}

/* --- a reference and the lock at once ------------------------------------- */

/**
 * ps_page_try_get_and_lock() - take a reference speculatively, then the
 * page's bit lock.
 * @page: a page that may be free, frozen or at its limit; its memory must
 *	stay valid.
 *
 * How a slow path that found a page without holding it (an entry read;
 * Linux's folio_try_get() then folio_lock()) holds it before it looks at it
 * under LOCKED. When the page is LIVE and not locked, one compare-and-swap
 * takes both. When another thread holds LOCKED, the reference is taken alone
 * (as ps_page_try_get()) and the call waits for the lock as ps_page_lock()
 * does: the reference keeps the page from being freed, and so from being handed
 * to another owner, while it waits and while it holds the lock.
 * Context: a thread that may block, not holding this page's lock, and not
 * taking two page locks in an order another thread reverses.
 * Ordering: acquire: pairs with the release of the put or unfreeze that
 * came before (as a try-get) and of the last unlock (as a lock).
 * Progress: blocking while another thread holds LOCKED (spin, then
 * yield); otherwise lock-free (a CAS loop that retries only after another
 * thread changed the word).
 * Return: true with a reference and LOCKED held: release both with
 * ps_page_unlock_and_put(); false if the page is free or frozen, or its
 * references are at PS_PAGE_REFS_MAX: nothing is held (a failed try on a
 * free or frozen page may leave a meaningless unit, as ps_page_try_get()).
 */
static inline PS_MUST_CHECK bool ps_page_try_get_and_lock(struct ps_page *page)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/*
	 * Acquire: pairs with the release of the put or unfreeze that came
	 * before, and of the last unlock (a clear LOCKED was released).
	 */
	if (PS_LIKELY(ps__page_cas(page, PS_PAGE_LIVE | PS_PAGE_LOCKED,
				   PS_PAGE_LIVE, 0, PS_PAGE_LOCKED, 1, 0,
				   PS__PAGE_ADD, memory_order_acquire, &seen,
				   &why)))
		return true;
	if (why != PS__PAGE_MISMATCH || !(seen & PS_PAGE_LIVE))
		return false; /* free, frozen, or at the limit */
	/* Locked by another thread: hold the page, then wait for the lock. */
	if (!ps_page_try_get(page))
		return false;
	ps_page_lock(page);
	return true;
}

/**
 * ps_page_try_get_lock_and_set() - take a reference speculatively, the page's
 * bit lock and the flags in @set, all in one compare-and-swap, or nothing:
 * how a write fault holds the frame it marks dirty (a reference, LOCKED and
 * DIRTY at once) without ever waiting.
 * @page: a page that may be free, frozen, locked or at its limit; its memory
 *	must stay valid.
 * @set: flags to set with the lock; bits outside PS_PAGE_USER_FLAGS are
 *	ignored (LOCKED is the call's own).
 * @seen: receives the word the call last saw: on success the word before the
 *	change, whose @set bits say which of them were set already (DIRTY clear
 *	there means this call made the clean-to-dirty transition); on failure
 *	the word that refused it (LOCKED set: another thread holds the lock).
 *
 * Unlike ps_page_try_get_and_lock(), it never waits: it fails while another
 * thread holds LOCKED, and the caller that must wait does so with
 * ps_page_try_get_and_lock() (outside whatever it must not block in). The
 * flags are set only together with LOCKED, so a thread that clears one of
 * them only under LOCKED (the space's write-back clears DIRTY so) cannot
 * clear them before the caller unlocks.
 * Context: any thread; not one that holds this page's lock.
 * Ordering: acquire and release on success: acquire as
 * ps_page_try_get_and_lock(), release for what the flags hand over, as the
 * flag read-modify-writes do; nothing on failure.
 * Progress: lock-free (a CAS loop that retries only after another thread
 * changed the word).
 * Return: true with a reference and LOCKED held and @set set: release the
 * first two with ps_page_unlock_and_put(); false if the page is free, frozen
 * or locked, or its references are at PS_PAGE_REFS_MAX: nothing changed.
 */
static inline PS_MUST_CHECK bool
ps_page_try_get_lock_and_set(struct ps_page *page, uint64_t set, uint64_t *seen)
{
	enum ps__page_verdict why;

	/*
	 * Acq_rel: acquire pairs with the release of the put or unfreeze that
	 * came before and of the last unlock; release publishes what the
	 * flags hand over, as the flag read-modify-writes do.
	 */
	return ps__page_cas(page, PS_PAGE_LIVE | PS_PAGE_LOCKED, PS_PAGE_LIVE,
			    0, PS_PAGE_LOCKED | (set & PS_PAGE_USER_FLAGS), 1,
			    0, PS__PAGE_ADD, memory_order_acq_rel, seen, &why);
}

/**
 * ps_page_unlock_and_put() - release the page's bit lock and drop one
 * reference, in one atomic step: the release of ps_page_try_get_and_lock().
 * @page: a page this thread locked and holds a reference to (not one owned
 *	by a pin).
 *
 * One compare-and-swap that checks the counts before it writes, as
 * ps_page_put(): the put that drops the last reference frees the page
 * (LIVE and PS_PAGE_LIFE_FLAGS cleared). A refused put (misuse: underflow,
 * a reference owned by a pin, a frozen or free page) goes to the error hook
 * with no count written; LOCKED is released all the same, so that a
 * misused put never leaves the lock held.
 * Context: the holder of the lock and of the reference.
 * Ordering: release: the holder's accesses come before the next taker's
 * lock and before the free (pairs with the acquire of the next lock and
 * of the put that frees); acquire too when returning true, as ps_page_put().
 * Progress: lock-free (CAS loop).
 * Return: true if this freed the page (the caller frees it); false
 * otherwise, and on misuse.
 */
static inline bool ps_page_unlock_and_put(struct ps_page *page)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/*
	 * Release: the holder's accesses under the lock and with its
	 * reference happen before the next locker's acquire and before the
	 * free (the acquire below, in whichever put frees the page).
	 */
	if (PS_UNLIKELY(!ps__page_cas(page, PS_PAGE_LIVE, PS_PAGE_LIVE,
				      PS_PAGE_LOCKED, 0, 1, 0, PS__PAGE_SUB,
				      memory_order_release, &seen, &why))) {
		ps_page_unlock(page);
		return ps_page_put_refused_slow(page, seen, 0, 1, 0);
	}
	if (PS_LIKELY(seen >= (UINT64_C(2) << PS_PAGE_REFS_SHIFT)))
		return false; /* references remain */
	/* Acquire: this freed the page (see ps__page_sub()). */
	(void)atomic_load_explicit(&page->word, memory_order_acquire);
	return true;
}

/* --- huge frames: split and merge ----------------------------------------- */

/**
 * enum ps_page_huge_state - what a huge frame's word says about its state.
 * @PS_PAGE_HUGE_WHOLE: the word holds the frame's state (not SPLIT).
 * @PS_PAGE_HUGE_BUSY: a split or a merge is under way (SPLIT and FROZEN):
 *	gets and pins fail with -ESTALE; look again shortly.
 * @PS_PAGE_HUGE_SPLIT: the state lives in the sub-words (SPLIT): take
 *	references and pins there.
 */
enum ps_page_huge_state {
	PS_PAGE_HUGE_WHOLE = 0,
	PS_PAGE_HUGE_BUSY,
	PS_PAGE_HUGE_SPLIT,
};

/**
 * ps_page_huge_state() - is a huge frame's word whole, split, or busy?
 * @page: the word of a 2 MiB or 1 GiB frame; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()): a caller that reads
 * PS_PAGE_HUGE_SPLIT sees the sub-words as the split wrote them (pairs with
 * the release that ends ps_page_split()).
 * Progress: wait-free.
 * Return: the state at the load.
 */
static inline enum ps_page_huge_state
ps_page_huge_state(const struct ps_page *page)
{
	uint64_t w = ps_page_load(page);

	if (!(w & PS_PAGE_SPLIT))
		return PS_PAGE_HUGE_WHOLE;
	return (w & PS_PAGE_FROZEN) ? PS_PAGE_HUGE_BUSY : PS_PAGE_HUGE_SPLIT;
}

/**
 * ps_page_split() - move a huge frame's state from its word into one word
 * per part (Linux's __split_huge_page() for struct pages).
 * @huge: the word of the whole frame (2 MiB, or 1 GiB).
 * @sub: the words of its parts, in order (512 4 KiB words of a 2 MiB frame, or
 *	512 2 MiB words of a 1 GiB frame). They must be free (zeroed memory is),
 *	and nobody may take references on them until the split returns: they are
 *	reached only through @huge, which fails every get and pin meanwhile.
 * @nsub: how many, at least 1.
 * @where: if not NULL, receives on -EBUSY the index of the part that was
 *	not free (or @nsub when @huge itself was busy).
 *
 * The parts are looked at first, and the split is refused, with nothing
 * changed, if one is not free. Then four steps. (1) One compare-and-swap
 * freezes @huge at its exact count: it clears LIVE and sets FROZEN and SPLIT,
 * so from here on every get and pin of @huge fails with -ESTALE (no report:
 * the caller goes to the sub-words) and every try fails. (2) Each part gets
 * the whole frame's counts and flags, by one compare-and-swap that refuses a
 * part locked since the look (what a failed try-get left in a free part means
 * nothing, and is replaced; a refusal here frees the parts written and thaws
 * @huge, nothing changed): a reference or pin of the whole frame
 * counts as one on each part; DIRTY, WRITE_PINNED, the cache mode, PRIVATE,
 * INACCESSIBLE and POISONED are copied; LOCKED and WRITEBACK are not (a split
 * refuses a frame that has them). (3) DIRTY or WRITE_PINNED set on @huge
 * meanwhile (flags need no reference) is copied too, so none is lost. (4)
 * FROZEN is cleared, SPLIT stays: @huge is a split word, not LIVE, counting
 * nothing. A free frame splits into free parts with its memory flags.
 *
 * Holders of references or pins of the whole frame hold them on every part
 * afterwards and release them there (a put or unpin on the split @huge is
 * reported as PS_PAGE_ERR_SPLIT and undone); a caller must not release on
 * @huge while a split of it may be under way (ps_page_huge_state()).
 * Context: one splitter or merger of @huge at a time (the others get
 * -EBUSY); any thread; does not block.
 * Ordering: acquire when it freezes @huge (pairs with the release of every
 * earlier put and unpin); release on every part and when it ends (pairs with
 * the acquire of ps_page_huge_state() and of the first try-get on a part).
 * Progress: lock-free: two CAS loops on @huge (each retries only after another
 * thread changed the word), @nsub loads and @nsub CAS loops (each retries only
 * after another thread changed the part), and one read-modify-write that
 * changes nothing per 4 KiB of parts, so that memory mapped on first touch (a
 * frame array) takes one write fault, not a read fault and a copy.
 * Return: 0; -EALREADY if @huge is split already; -EBUSY if @huge is frozen,
 * locked, under write-back, being split or merged, its last reference is being
 * dropped, or a part is not free (then nothing changed); -EINVAL if @nsub is 0.
 */
int ps_page_split(struct ps_page *huge, struct ps_page *sub, size_t nsub,
		  size_t *where);

/**
 * enum ps_page_merge_reason - why ps_page_merge() refused.
 * @PS_PAGE_MERGE_OK: not refused.
 * @PS_PAGE_MERGE_REFS: a part holds another number of references than
 *	the first part, or is free while the first is LIVE (or the reverse).
 * @PS_PAGE_MERGE_PINS: a part holds another number of pins.
 * @PS_PAGE_MERGE_MODE: a part has another cache mode, or differs in
 *	PRIVATE, INACCESSIBLE or POISONED.
 * @PS_PAGE_MERGE_BUSY: a part is frozen, locked, under write-back, or its
 *	last reference is being dropped.
 */
enum ps_page_merge_reason {
	PS_PAGE_MERGE_OK = 0,
	PS_PAGE_MERGE_REFS,
	PS_PAGE_MERGE_PINS,
	PS_PAGE_MERGE_MODE,
	PS_PAGE_MERGE_BUSY,
};

/**
 * struct ps_page_merge_refusal - where and why ps_page_merge() refused.
 * @index: the first part found to differ from part 0 (or busy).
 * @reason: what differs.
 * @word: that part's word as the merge saw it (decode with ps_page_word_*()).
 */
struct ps_page_merge_refusal {
	size_t index;
	enum ps_page_merge_reason reason;
	uint64_t word;
};

/**
 * ps_page_merge() - the inverse of ps_page_split(): move uniform parts' state
 * back into the huge frame's word.
 * @huge: a split word (ps_page_huge_state() is PS_PAGE_HUGE_SPLIT).
 * @sub: the words of its parts, as given to ps_page_split().
 * @nsub: how many, at least 1.
 * @why: if not NULL, receives the refusal (index, reason, word) on -EBUSY;
 *	its reason is PS_PAGE_MERGE_OK otherwise.
 *
 * The parts are uniform when every one holds the same references and pins
 * as part 0 (all LIVE, or all free) with the same cache mode, PRIVATE,
 * INACCESSIBLE and POISONED, and none is frozen, locked, under write-back or
 * dying. DIRTY and WRITE_PINNED may differ: the whole frame gets their union,
 * so none is lost. Each part is frozen in turn at its exact count (FROZEN
 * and SPLIT: its gets and pins fail with -ESTALE, as on a split word); the
 * first part that differs undoes the freezes done and refuses. Then @huge
 * becomes whole with part 0's counts and flags (LIVE, or free if the parts
 * were), and the parts become free; a DIRTY set on a part meanwhile is
 * carried over to @huge.
 * Context: one splitter or merger of @huge at a time; any thread; does not
 * block. Holders of the parts' references hold them on @huge afterwards.
 * Ordering: acquire when it freezes each part (pairs with the releases
 * before), release when @huge becomes whole (pairs with the acquire of the
 * next try-get on @huge) and when each part becomes free.
 * Progress: lock-free (CAS loops that retry only after another thread
 * changed the word).
 * Return: 0; -EINVAL if @huge is not split or @nsub is 0; -EBUSY if a split
 * or merge of @huge is under way, or the parts are not uniform (@why says
 * where and why; nothing changed).
 */
int ps_page_merge(struct ps_page *huge, struct ps_page *sub, size_t nsub,
		  struct ps_page_merge_refusal *why);

/* --- cache mode and encryption state -------------------------------------- */

/**
 * ps_page_cache_mode() - the cache mode held in the page's CACHE field.
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: the mode (a free page keeps the mode of its last life).
 */
static inline enum ps_cache_mode ps_page_cache_mode(const struct ps_page *page)
{
	return (enum ps_cache_mode)ps_page_word_cache(ps_page_load(page));
}

/**
 * ps_page_enc_state() - the encryption state held in the page's PRIVATE flag.
 * @page: the page; no reference needed.
 *
 * Context: any thread; the answer is a snapshot.
 * Ordering: acquire load (see ps_page_load()).
 * Progress: wait-free.
 * Return: PS_ENC_PRIVATE if PRIVATE is set, else PS_ENC_SHARED.
 */
static inline enum ps_enc_state ps_page_enc_state(const struct ps_page *page)
{
	return ps_page_test_flags(page, PS_PAGE_PRIVATE) ? PS_ENC_PRIVATE
							 : PS_ENC_SHARED;
}

/**
 * ps_page_set_cache_if_free() - give a free page cache mode @mode.
 * @page: the page; no reference needed.
 * @mode: the new mode.
 * @expect: the mode the page must have now, or -1 for any.
 *
 * A LIVE page keeps its mode (one page, one mode while it has owners; to
 * change it, freeze the page, ps_page_change_flags() its CACHE field and
 * unfreeze). A free page changes in one compare-and-swap that also requires
 * it free, so a racing revival either comes first (and the change fails) or
 * revives the page with @mode. With @expect, an owner that undoes its own
 * revival (ps_page_get_or_revive_cache()) restores the old mode only if
 * nobody changed it since.
 * Context: any thread.
 * Ordering: acquire and release on success, like the flag read-modify-writes
 * (a later revival acquires the new mode); nothing on failure.
 * Progress: lock-free (CAS loop).
 * Return: 0 if the page is free and now has @mode; -EBUSY if it is LIVE,
 * frozen or a split huge word; -EHWPOISON if it is POISONED (quarantined
 * pages are not changed);
 * -ESTALE if its mode is not @expect; -EINVAL for an unknown @mode or
 * @expect. On error nothing changes.
 */
static inline int ps_page_set_cache_if_free(struct ps_page *page,
					    enum ps_cache_mode mode, int expect)
{
	const uint64_t must = PS_PAGE_LIVE | PS_PAGE_FROZEN | PS_PAGE_POISONED |
			      PS_PAGE_SPLIT |
			      (expect >= 0 ? PS_PAGE_CACHE_MASK : 0);
	enum ps__page_verdict why;
	uint64_t seen;

	if ((unsigned int)mode >= PS_CACHE_NR || expect >= PS_CACHE_NR ||
	    expect < -1)
		return -EINVAL;
	/* Acq_rel: as the flag operations; a later revival acquires it. */
	if (ps__page_cas(page, must,
			 expect >= 0 ? (uint64_t)expect << PS_PAGE_CACHE_SHIFT
				     : 0,
			 PS_PAGE_CACHE_MASK,
			 (uint64_t)mode << PS_PAGE_CACHE_SHIFT, 0, 0,
			 PS__PAGE_ADD, memory_order_acq_rel, &seen, &why))
		return 0;
	if (seen & (PS_PAGE_LIVE | PS_PAGE_FROZEN | PS_PAGE_SPLIT))
		return -EBUSY;
	if (seen & PS_PAGE_POISONED)
		return -EHWPOISON;
	return -ESTALE;
}

PS_END_DECLS

#endif /* PAGESTATE_PAGE_H */
