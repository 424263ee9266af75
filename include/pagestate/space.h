/* SPDX-License-Identifier: MIT */
/*
 * pagestate/space.h - an address space as a VMM or a userspace DMA driver
 * holds one: pages mapped to numbered frames, with GUP-style pins, CPU faults,
 * a balloon's discard, a secondary-map helper, a dirty log for migration and
 * write-back that knows about pins.
 *
 * The design, the protocol the code follows, where the space differs from
 * Linux and why, and what it costs are in docs/space.md.
 *
 * ---------------------------------------------------------------------------
 * Objects
 * ---------------------------------------------------------------------------
 *
 *   struct ps_space        [0, size) in 4 KiB pages, each mapped to one of
 *                          the frames 0 .. nframes - 1 or not. It holds a
 *                          page table (pagestate/pgtable.h), one page word
 *                          per frame (pagestate/page.h), a notifier
 *                          (pagestate/notifier.h), a dirty log and a
 *                          write-back set. Create it with ps_space_create().
 *   a frame                a number the caller gives a meaning to (a page of
 *                          guest memory, of a DMA buffer); the space keeps
 *                          its page word and never touches its contents.
 *   struct ps_space_hooks  the caller's callbacks: populate a missing page;
 *                          a frame became dirty; a frame was freed.
 *
 * A mapping holds one reference on its frame, and a pin holds a pin, which is
 * also a reference, so a pinned frame outlives the unmapping of its address,
 * as in Linux. The put that drops a frame's last reference ends its lifetime:
 * its page word is free again, without DIRTY or WRITE_PINNED (the next
 * mapping starts clean), and the free_frame hook runs, once per lifetime.
 *
 * Map, map_range, unmap and discard are the only calls that replace the frame
 * at an address; they take the space's writer mutex (map_range one chunk of its
 * range at a time: ps_space_map_range()). Every change that a secondary mapping
 * must follow is an invalidation of the space's notifier: unmap and a failed
 * map's rollback (PS_NOTIFIER_UNMAP), discard (PS_NOTIFIER_CLEAR), write-back's
 * write-protect (PS_NOTIFIER_PROTECTION), a re-arming harvest
 * (PS_NOTIFIER_SOFT_DIRTY), and pagestate/prot.h's conversion and mprotect.
 *
 * ---------------------------------------------------------------------------
 * Hooks and callbacks
 * ---------------------------------------------------------------------------
 *
 * Each hook runs in the thread whose call triggered it, holding:
 *
 *   populate    no lock of the space (a pin, a fault, the helper)
 *   dirty       the frame's LOCKED bit, always: a write fault
 *               (ps_space_fault(), a pin for write), ps_space_mark_dirty(),
 *               ps_space_unpin() with PS_UNPIN_DIRTY, a write-back dirtying
 *               the frame again (a failed write, a bounce of a frame still
 *               pinned for write); the secondary-map helper also holds the
 *               caller's lock (taken after the bit)
 *   free_frame  the writer mutex: ps_space_map() and ps_space_map_range() (a
 *               failed map giving a reference back), ps_space_unmap(),
 *               ps_space_discard(); no lock of the space: everything else
 *               (an unpin, a pin backing out, a write fault, mark_dirty,
 *               write-back, the helper, a CPU map or unmap, destroy). A
 *               whole 2 MiB or 1 GiB frame is freed once, told of by its
 *               first frame; a split one part by part. The dirty hook of a
 *               write fault on a huge entry also runs under the writer
 *               mutex.
 *   notifier    the writer mutex: unmap, discard, a failed map, conversion
 *   callbacks   and mprotect (pagestate/prot.h); the LOCKED bits of the
 *               frames being written back in the callback's range, and of
 *               no other frame: write-back; no lock of the space: a
 *               re-arming harvest
 *
 * So a hook or callback run under the writer mutex must not map, map_range,
 * unmap, discard, convert or mprotect in that space; one run under frames'
 * LOCKED bits must not fault for write, pin for write, mark dirty, unpin dirty,
 * write back or CPU-map (ps_prot_kmap()) those frames, nor wait for a thread
 * that does (for write-back's callback: the pages of its range, and any other
 * address of their frames; every other page is free of it): each would wait
 * for the lock it runs under. No hook runs inside the page table's
 * read-side section, except a free_frame hook when an unmap or destroy runs out
 * of memory while it collects the frames it unmapped. Through the userfaultfd
 * bridge, the hooks of a sync fault's resolution and the callbacks of a bridge
 * harvest also hold the attachment's mutex (pagestate/uffd.h, "Concurrency").
 *
 * ---------------------------------------------------------------------------
 * Progress
 * ---------------------------------------------------------------------------
 *
 *   wait-free   ps_space_pgtable(), ps_space_notifier(), ps_space_page(),
 *               ps_space_redirty()
 *   lock-free   ps_space_pin_range() (but its hooks, making an entry
 *               writable and waiting for a frozen frame), ps_space_unpin()
 *               without PS_UNPIN_DIRTY, ps_space_fault() but a write to a
 *               present entry that is not writable, ps_space_harvest()
 *               without PS_HARVEST_REARM
 *   blocking    map, map_range, unmap, discard (the writer mutex and the
 *               invalidation; map_range holds the mutex one 64 MiB chunk at
 *               a time, and unmap and discard wait for the part of a
 *               map_range in progress that their range meets); a
 *               write fault to a present entry that is not writable,
 *               mark_dirty, an unpin with PS_UNPIN_DIRTY,
 *               write-back (a frame's LOCKED bit: spin, then yield; an
 *               INTEGRITY write-back also waits for another's callback); the
 *               secondary-map helper (the caller's lock, an overlapping
 *               invalidation); a harvest with PS_HARVEST_REARM; create,
 *               destroy
 *
 * A call that finds a frame frozen (by a conversion, a cache-mode change, a
 * discard, or a map that has not finished) waits for it, yielding; any other
 * retry happens only because another thread changed the entry or the frame.
 * The hooks and callbacks are the caller's and may block.
 *
 * ---------------------------------------------------------------------------
 * Dirty state: the DIRTY flag, the dirty log, the write-back set
 * ---------------------------------------------------------------------------
 *
 * A frame is DIRTY (pagestate/page.h, Linux's PG_dirty) when its contents may
 * differ from its backing copy. A write fault that makes an entry writable, a
 * write through the secondary-map helper, ps_space_mark_dirty() and
 * ps_space_unpin() with PS_UNPIN_DIRTY make it so; only write-back and the
 * free that ends a lifetime make it clean. The dirty hook runs once per
 * clean-to-dirty transition, however many threads race, before any write-back
 * cleans that dirtying, and before anyone can write through the entry a write
 * fault makes writable (dirty before writable: every marker sets DIRTY and runs
 * the hook under the frame's LOCKED bit, which a write fault holds too). A
 * write during write-back faults and dirties the frame again: it is never lost.
 *
 * The dirty log (KVM's dirty bitmap) holds the addresses written since a
 * harvest (ps_space_harvest()) last reported them, for migration. Every
 * marking path but ps_space_unpin() logs the address (an unpin knows frames,
 * not addresses); a pin for write logs it when it is taken, and every harvest
 * reports the page until the first one after the unpin. So a device write
 * through a pin not for write reaches write-back but not the log: pin for
 * write, or mark the addresses with ps_space_mark_dirty(). CPU writes through
 * entries of a range registered PS_WP_ASYNC (pagestate/pgtable.h) are recorded
 * in the entries; a harvest with PS_HARVEST_REARM collects them too, and
 * re-arms every page it reports so that the next write is seen.
 *
 * The write-back set holds the addresses ps_space_writeback() visits: every
 * address logged, every address pinned (any pin: the frame may be unpinned
 * dirty) and every address mapped to a frame that was pinned or dirty; a visit
 * keeps an address while its frame is pinned or dirty. There is no reverse
 * map: write-back finds a frame only at the addresses recorded for it. A frame
 * unpinned dirty after its last mapping went has no address left: its free
 * ends its lifetime, DIRTY included. An owner that must keep such writes holds
 * a reference of its own and reads DIRTY before it lets go. docs/space.md,
 * "Dirty tracking" and "Write-back", says why.
 *
 * ---------------------------------------------------------------------------
 * Limits
 * ---------------------------------------------------------------------------
 *
 *   - 4 KiB pages; frames of 4 KiB, or of 2 MiB and 1 GiB where declared
 *     (ps_space_set_frame_order()); at most 2^48 bytes and
 *     PS_SPACE_NFRAMES_MAX (2^40) frames a space.
 *   - A frame has at most PS_PAGE_REFS_MAX references and PS_PAGE_PINS_MAX pins
 *     (pagestate/page.h): a call that would pass either fails (-EOVERFLOW,
 *     PS_SPACE_MARK_OVERFLOW or PS_FAULT_INVALID) and changes nothing.
 *   - Address space reserved, resident only where touched: 2 bits a page
 *     (the dirty log and the write-back set), 8 bytes a frame for a
 *     library-allocated page-word array, 4 more at the first long-term pin.
 *   - One dirty log: a harvest takes what it reports, so two consumers (a
 *     migration and a snapshot) each see only part, unless each registers
 *     with pagestate/ledger.h (then ps_space_harvest() is the default
 *     consumer, and sees every mark as before).
 *
 * ---------------------------------------------------------------------------
 * Where the space differs from Linux
 * ---------------------------------------------------------------------------
 *
 *   - Pins are exact (pagestate/page.h): discard, write-back and harvest
 *     decide on "pinned", not "maybe pinned".
 *   - Writable long-term pins of memory that is written back are allowed
 *     (Linux refuses them): cleaning write-back skips pinned frames,
 *     data-integrity write-back bounces them, and a frame pinned for write
 *     stays dirty. Jan Kara proposed both modes for Linux; they are not merged.
 *   - A balloon's discard never drops a frame that anything but its mapping
 *     holds (a pin, another mapping, a CPU map): it leaves the page and says
 *     why. MADV_DONTNEED drops the mapping and lets the holder keep the page.
 *   - No reverse map: write-back write-protects the address it visits, so a
 *     frame mapped writable at several addresses is written back through each
 *     (Linux's folio_mkclean() walks the rmap).
 *
 * Why: docs/space.md, "Where the space differs from Linux".
 */
#ifndef PAGESTATE_SPACE_H
#define PAGESTATE_SPACE_H

#include <pagestate/compiler.h>
#include <pagestate/notifier.h>
#include <pagestate/page.h>
#include <pagestate/pgtable.h>
#include <pagestate/pte.h>

#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

struct ps_space;

/**
 * struct ps_space_hooks - the caller's callbacks (each may be NULL).
 * @populate: a pin, a fault or the secondary-map helper found no page at
 *	@addr (none, a swap entry, or a UFFD_WP or WRITTEN marker). Map one
 *	(ps_space_map(), or swap it in) and return 0, or return a negative
 *	errno, which the pin or the helper returns (a fault returns
 *	PS_FAULT_MISSING). @access is PS_ACCESS_READ or PS_ACCESS_WRITE, as the
 *	pin or fault asks, or as the helper maps (PS_ACCESS_WRITE for a
 *	writable secondary mapping, which still leaves the primary entry as
 *	the hook mapped it). Without the hook a missing page is -EFAULT
 *	(PS_FAULT_MISSING).
 * @dirty: @frame went from clean to dirty (Linux's set_page_dirty()). Runs
 *	exactly once per transition, in the thread that made it, under the
 *	frame's LOCKED bit, before any write-back cleans that dirtying and
 *	before any write through an entry the dirtying let through (a write
 *	fault that finds the frame dirty already waits for that bit).
 * @free_frame: the last reference to @frame was dropped: its lifetime is
 *	over, its page word free again (DIRTY and WRITE_PINNED cleared, so its
 *	next mapping starts clean), and the frame its owner's to reuse. Runs
 *	exactly once per lifetime, in the thread that dropped the reference.
 *	The word is free from that drop on, before the hook runs: a map of
 *	the frame in between (by a caller holding no reference of it) starts
 *	its next lifetime, and the hook may find it mapped again.
 * @ctx: handed to every hook.
 *
 * The lock each hook runs under, and what it must not do there, is in the
 * overview of pagestate/space.h, "Hooks and callbacks"; the notifier's
 * callbacks (pagestate/notifier.h) are listed there too.
 */
struct ps_space_hooks {
	int (*populate)(void *ctx, struct ps_space *space, uint64_t addr,
			unsigned int access);
	void (*dirty)(void *ctx, struct ps_space *space, uint64_t frame);
	void (*free_frame)(void *ctx, struct ps_space *space, uint64_t frame);
	void *ctx;
};

/* The most frames a space has (struct ps_space_config's @nframes). */
#define PS_SPACE_NFRAMES_MAX (UINT64_C(1) << 40)

/**
 * struct ps_space_config - what ps_space_create() builds.
 * @size: bytes of address space, [0, size): page-aligned, at most 2^48.
 *	The dirty log and the write-back set reserve 2 bits of address space
 *	per page (not resident until touched).
 * @nframes: number of frames, 0 .. nframes - 1: at least 1, at most
 *	PS_SPACE_NFRAMES_MAX (2^40, 4 PiB of 4 KiB frames). The space keeps
 *	arrays indexed by frame: a library-allocated page-word array reserves
 *	8 bytes of address space per frame, and the first long-term pin 4 more
 *	(the long-term pin counts); neither is resident until touched.
 * @frames: the caller's array of @nframes page words (zeroed, or already
 *	initialised by the caller), or NULL for a library-allocated one.
 * @hooks: the callbacks.
 */
struct ps_space_config {
	uint64_t size;
	uint64_t nframes;
	struct ps_page *frames;
	struct ps_space_hooks hooks;
};

/* --- lifetime ------------------------------------------------------------- */

/**
 * ps_space_create() - build a space.
 * @cfg: the configuration (copied; @cfg->frames, if given, must outlive the
 *	space).
 * @out: receives the space on success.
 *
 * The space starts empty: no page mapped, nothing logged, no subscription.
 * Context: any thread.
 * Ordering: none: the space is the caller's alone until it publishes *@out.
 * Progress: blocking (allocation, mmap).
 * Return: 0; -EINVAL (@cfg or @out NULL, @cfg->size 0, unaligned or above
 * 2^48, @cfg->nframes 0 or above PS_SPACE_NFRAMES_MAX); -ENOMEM (also if the
 * writer mutex cannot be initialised); -ECHILD in a child of a plain fork()
 * (pagestate/fork.h). On error nothing is left allocated and *@out is not
 * written.
 */
int ps_space_create(const struct ps_space_config *cfg, struct ps_space **out);

/**
 * ps_space_destroy() - unmap everything, dropping the mappings' references
 * (free_frame hooks run), and free the space.
 * @space: the space, or NULL (nothing happens; 0 is returned).
 *
 * Pins still held are not released: a pinned frame is not freed, and keeps its
 * pins in its page word if the array is the caller's (a library-allocated array
 * is freed with the space). In a child of fork(), a space inherited from the
 * parent is only forgotten, subscriptions or not: no hook runs, nothing waits,
 * 0 is returned (rule 2 of the overview of pagestate/fork.h).
 * Context: no other thread may use the space, and its notifier must have no
 * subscription left; not inside a read-side section. The free_frame hooks run
 * in this thread with no lock of the space held.
 * Ordering: a seq_cst fence orders the removal of the entries before the
 * puts, so each free_frame hook runs after the frame's entries are gone.
 * Progress: blocking (destroying the page table waits for liburcu's pending
 * callbacks); the hooks are the caller's.
 * Return: 0; -EBUSY if subscriptions remain (nothing is freed then).
 */
int ps_space_destroy(struct ps_space *space);

/**
 * ps_space_pgtable() - the space's page table: for registration, write
 * protection and scans (pagestate/pgtable.h).
 * @space: the space.
 *
 * Context: any thread.
 * Ordering: none (a field fixed at creation).
 * Progress: wait-free.
 * Return: the table, valid until ps_space_destroy().
 */
struct ps_pgtable *ps_space_pgtable(struct ps_space *space);

/**
 * ps_space_notifier() - the space's notifier: for the subscriptions of
 * secondary mappings (pagestate/notifier.h).
 * @space: the space.
 *
 * Context: any thread.
 * Ordering: none (no load: the notifier is embedded).
 * Progress: wait-free.
 * Return: the notifier, valid until ps_space_destroy().
 */
struct ps_notifier *ps_space_notifier(struct ps_space *space);

/**
 * ps_space_page() - the page word of @frame, or NULL if out of range.
 * @space: the space.
 * @frame: a frame number.
 *
 * Read it with the accessors of pagestate/page.h.
 * Context: any thread.
 * Ordering: none (the page word itself is not read).
 * Progress: wait-free.
 * Return: &frames[@frame], or NULL if @frame >= nframes.
 */
struct ps_page *ps_space_page(struct ps_space *space, uint64_t frame);

/* --- frames of three sizes ----------------------------------------------- */

/*
 * Frame orders: a frame of order o is 2^o 4 KiB frames, numbered by its first
 * 4 KiB frame, which is a multiple of 2^o.
 */
#define PS_SPACE_ORDER_4K 0u
#define PS_SPACE_ORDER_2M 9u
#define PS_SPACE_ORDER_1G 18u

/**
 * ps_space_set_frame_order() - say that the frames [@first_frame,
 * @first_frame + @nframes) are backed by 4 KiB, 2 MiB or 1 GiB frames.
 * @space: the space.
 * @first_frame: the first 4 KiB frame: a multiple of 512 (2 MiB), and of
 *	262144 for @order PS_SPACE_ORDER_1G.
 * @nframes: how many 4 KiB frames: a non-zero multiple of 512 (262144 for
 *	PS_SPACE_ORDER_1G); the range must lie below nframes.
 * @order: PS_SPACE_ORDER_4K, PS_SPACE_ORDER_2M or PS_SPACE_ORDER_1G.
 *
 * Every frame of a space starts as a 4 KiB frame with its own page word. A
 * 2 MiB or 1 GiB frame has one page word while it is whole (Linux's folio):
 * its references, pins, DIRTY, LOCKED, WRITEBACK, cache mode and encryption
 * state count there, one unit standing for the whole frame, and the 4 KiB page
 * words of its pages are not touched (their array stays unresident there).
 * ps_space_frame_word() finds the word that holds a frame's state. A pin of a
 * whole huge frame (ps_space_pin_units()) is one read-modify-write on that
 * word, and means exactly a pin of each of its 4 KiB pages. The first call
 * reserves the arrays of huge page words (8 bytes per 2 MiB and per 1 GiB of
 * frames, not resident until touched).
 * Context: any thread not holding the writer mutex (not from a hook or
 * callback that runs under it). No frame of the range may be in use (mapped,
 * pinned, referenced, frozen); every 4 KiB page word of the range that is
 * resident is checked, the others are free by construction. The call waits
 * for a ps_space_map_range() of several chunks in progress in the space.
 * Ordering: release: a thread that finds one of the frames through an entry
 * (acquire) sees the new order.
 * Progress: blocking (the writer mutex; the first call maps the arrays).
 * Return: 0; -EINVAL (alignment, an empty range or one beyond nframes, an
 * unknown @order); -EBUSY (a frame of the range is in use, or a huge frame of
 * it has split state: nothing changed); -ENOMEM.
 */
int ps_space_set_frame_order(struct ps_space *space, uint64_t first_frame,
			     uint64_t nframes, unsigned int order);

/**
 * ps_space_frame_order() - the order of the frame that backs @frame.
 * @space: the space.
 * @frame: a 4 KiB frame number.
 *
 * Context: any thread.
 * Ordering: acquire (pairs with ps_space_set_frame_order()'s release).
 * Progress: wait-free (a load or two).
 * Return: PS_SPACE_ORDER_4K, PS_SPACE_ORDER_2M or PS_SPACE_ORDER_1G, as the
 * last ps_space_set_frame_order() of @frame said; PS_SPACE_ORDER_4K for a
 * frame at or above nframes.
 */
unsigned int ps_space_frame_order(struct ps_space *space, uint64_t frame);

/**
 * ps_space_frame_word() - the page word that holds @frame's state now.
 * @space: the space.
 * @frame: a 4 KiB frame number (below nframes).
 * @order: receives the order of the unit that word counts for (may be NULL):
 *	PS_SPACE_ORDER_1G or PS_SPACE_ORDER_2M for a whole huge frame (or a
 *	whole 2 MiB part of a 1 GiB frame whose state was split), else
 *	PS_SPACE_ORDER_4K (@frame's own word, ps_space_page()).
 *
 * Read it with the accessors of pagestate/page.h: a 4 KiB page inside a whole
 * huge frame is pinned, dirty or referenced exactly when that frame is. The
 * answer can change when a huge frame's state is split (a pin, map or discard
 * of part of it), after which the 4 KiB words count.
 * Context: any thread.
 * Ordering: acquire loads of the order and of the huge word.
 * Progress: wait-free (at most three loads).
 * Return: the word, or NULL if @frame >= nframes.
 */
struct ps_page *ps_space_frame_word(struct ps_space *space, uint64_t frame,
				    unsigned int *order);

/**
 * struct ps_space_stats - the memory a space holds for its metadata now.
 * @metadata_bytes: the sum of the fields below but @frames_split: resident
 *	bytes of everything the space keeps per page or per frame.
 * @words_bytes: resident bytes of the page-word arrays, by order: [0] the
 *	4 KiB words (the caller's array included), [1] the 2 MiB words, [2]
 *	the 1 GiB words.
 * @pgtable_bytes: the page table (ps_pgtable_stats()).
 * @bitmap_bytes: resident bytes of the dirty log and the write-back set.
 * @longterm_bytes: resident bytes of the long-term pin counts.
 * @frames_split: huge frames whose state was split into 4 KiB (or 2 MiB)
 *	words since creation (a count, never wraps in practice: 64 bits).
 */
struct ps_space_stats {
	uint64_t metadata_bytes;
	uint64_t words_bytes[3];
	uint64_t pgtable_bytes;
	uint64_t bitmap_bytes;
	uint64_t longterm_bytes;
	uint64_t frames_split;
};

/**
 * ps_space_stats() - measure the space's metadata.
 * @space: the space.
 * @st: receives the figures.
 *
 * Resident bytes are counted by page (mincore(2)) over the space's own
 * arrays, so the call costs one bit of work per 4 KiB page of each array: for
 * a 1 TiB space, about 2 ms.
 * Context: any thread.
 * Ordering: none: the figures are a snapshot that concurrent operations may
 * change while it is taken.
 * Progress: blocking (system calls).
 * Return: 0; -EINVAL (@st NULL); -ENOMEM (mincore's vector).
 */
int ps_space_stats(struct ps_space *space, struct ps_space_stats *st);

/*
 * A pin unit (ps_space_pin_units(), ps_space_unpin()): a frame number with the
 * order of the unit in its top byte. A 4 KiB unit is the plain frame number.
 */
#define PS_SPACE_UNIT_ORDER_SHIFT 56
#define PS_SPACE_UNIT(frame, order) \
	((uint64_t)(frame) | ((uint64_t)(order) << PS_SPACE_UNIT_ORDER_SHIFT))
#define PS_SPACE_UNIT_FRAME(unit) \
	((unit) & ((UINT64_C(1) << PS_SPACE_UNIT_ORDER_SHIFT) - 1))
#define PS_SPACE_UNIT_ORDER(unit) \
	((unsigned int)((unit) >> PS_SPACE_UNIT_ORDER_SHIFT))

/* --- mapping -------------------------------------------------------------- */

/* Mapping flags. */
#define PS_MAP_WRITE 0x1u /* writes permitted (first write marks dirty) */
/*
 * PS_MAP_CACHE(mode): map with cache mode @mode (enum ps_cache_mode,
 * pagestate/page.h) and insist on it: a free frame takes that mode, a frame
 * in use must already have it (else -EBUSY, Linux's memtype conflict).
 * Without it the mapping takes whatever mode the frame has.
 */
#define PS_MAP_CACHE_SET 0x2u
#define PS_MAP_CACHE_SHIFT 4
#define PS_MAP_CACHE_MASK (0x7u << PS_MAP_CACHE_SHIFT)
#define PS_MAP_CACHE(mode)  \
	(PS_MAP_CACHE_SET | \
	 (((unsigned int)(mode) << PS_MAP_CACHE_SHIFT) & PS_MAP_CACHE_MASK))

/**
 * ps_space_map() - map @frame at page @addr.
 * @space: the space.
 * @addr: the page (aligned, inside the space).
 * @frame: the frame (below nframes).
 * @flags: 0 (read-only) or PS_MAP_WRITE, optionally with PS_MAP_CACHE(mode).
 *
 * The mapping takes a reference on the frame; a free frame starts a new
 * lifetime, clean. The entry carries the frame's cache mode and encryption
 * state from its page word. PS_MAP_WRITE permits writes: the entry becomes
 * writable at the first write fault, which marks the frame dirty. Mapped over
 * a UFFD_WP marker, the entry keeps its write protection (pagestate/pgtable.h).
 * One frame has one cache mode (pagestate/prot.h, "Cache modes"): with
 * PS_MAP_CACHE(mode), a free frame takes @mode in the same atomic step that
 * takes the reference, and a frame in use (mapped, pinned, CPU-mapped or
 * referenced by its owner) with another mode is refused. A failed map leaves
 * every frame as it was (see ps_space_map_range()).
 * Context: any thread not holding the space's writer mutex: not from a hook or
 * notifier callback that runs under it (the overview of pagestate/space.h,
 * "Hooks and callbacks").
 * Ordering: release (the page table's CAS): a thread that finds the entry
 * sees the frame's page word as mapped.
 * Progress: blocking (the writer mutex; allocation).
 * Return: 0; -EINVAL (@addr unaligned or outside the space, @frame out of
 * range, unknown flags or mode); -EEXIST (@addr holds a page, a swap entry, or
 * a marker other than a lone UFFD_WP or WRITTEN marker); -EBUSY (the frame is
 * frozen, or in use with another cache mode than PS_MAP_CACHE asks for);
 * -EHWPOISON (the frame is poisoned); -EOVERFLOW (the frame is at the
 * reference limit); -ENOMEM.
 */
int ps_space_map(struct ps_space *space, uint64_t addr, uint64_t frame,
		 unsigned int flags);

/**
 * ps_space_map_range() - map @first_frame, @first_frame + 1, ... at
 * [@start, @start + @len): ps_space_map() for a range, all or nothing.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @first_frame: the frame for @start; every frame must be below nframes.
 * @flags: as for ps_space_map(), for every page.
 * @error_offset: NULL, or receives the byte offset from @start of the page
 *	that stopped the call (every error but -EINVAL and -ENOMEM).
 *
 * The call works in chunks of 64 MiB of address space (aligned; a 1 GiB frame
 * mapped whole is one chunk), and lets the writer mutex go between chunks:
 * however large the range, the mutex is held for one chunk's work at a time,
 * and nothing is allocated in proportion to the range. In each chunk every
 * frame is taken, every page checked and every page-table level allocated
 * before the first entry is installed. A frame that is free is claimed:
 * frozen, with no reference, until the whole call can no longer fail (every
 * chunk installed). Whoever finds its entry meanwhile (a pin, a fault,
 * ps_space_mark_dirty(), write-back, the helper, a CPU map) waits for it, and
 * nothing marks it dirty or runs a hook for it before it is mapped.
 *
 * What another thread may see while a call of several chunks is in progress:
 * the entries of the chunks installed so far (a lookup or a scan finds them;
 * a frame that was free is frozen behind them, as above; a frame that was
 * already in use can be pinned or faulted through its new entry as through
 * any other). An unmap or discard of a range that meets the part installed so
 * far, and pagestate/prot.h's conversion, mprotect, cache-mode change and CPU
 * map of any range of the space, wait until the call returns; a map of a page
 * installed so far fails -EEXIST. Other parts of the space are free: maps,
 * unmaps and faults there proceed, and a map by another thread of a page of a
 * chunk not begun yet may win, in which case this call fails -EEXIST at that
 * page. A call of one chunk (64 MiB or less, aligned) is seen whole or not at
 * all by every writer, as before.
 *
 * Who owns each frame after a failure is certain, whatever raced: a frame
 * that was free is free again, with the cache mode it had, and no free_frame
 * hook runs for it, now or later: its owner may reuse it at once. A frame that
 * was in use loses only the map's reference; if its other holders all let go
 * meanwhile, that put is its last, and its free_frame hook runs before the map
 * returns, exactly once.
 * Context: as ps_space_map(); the free_frame hooks and the notifier callbacks
 * of a rollback run in this thread under the writer mutex.
 * Ordering: as ps_space_map(), for each entry.
 * Progress: blocking (the writer mutex, one chunk at a time; allocation).
 * Return: as ps_space_map(); for -EEXIST, -EBUSY, -EHWPOISON and -EOVERFLOW
 * with the page's offset in *@error_offset (for -EEXIST the first page of the
 * range that holds an entry a map may not replace). All or nothing: on error
 * the state is as before the call. The entries of the chunks installed before
 * the failing one (and, if another thread stored into the range against the
 * exclusion rules of pagestate/pgtable.h, of the failing chunk) were visible
 * and are taken back inside an UNMAP invalidation before the call returns (a
 * page that held a UFFD_WP marker gets it back, a page of an async range a
 * WRITTEN marker); their frames are given back as said above.
 */
int ps_space_map_range(struct ps_space *space, uint64_t start, uint64_t len,
		       uint64_t first_frame, unsigned int flags,
		       uint64_t *error_offset);

/* Unmap flags. */
#define PS_UNMAP_ZAP 0x1u /* MADV_DONTNEED: keep markers where the table does */

/**
 * ps_space_unmap() - unmap [@start, @start + @len) and drop the mappings'
 * references.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: 0 for munmap or truncate (every marker goes), or PS_UNMAP_ZAP for
 *	MADV_DONTNEED (write protection survives as markers where
 *	pagestate/pgtable.h's zap keeps it).
 *
 * An invalidation (PS_NOTIFIER_UNMAP) brackets the zap, so secondary mappings
 * are torn down before a frame can be freed or mapped elsewhere. A frame whose
 * last reference was its mapping's is freed (free_frame hook); a pinned frame
 * stays alive through its pins. Pages with nothing mapped cost nothing.
 * Context: as ps_space_map(); the notifier callbacks and the free_frame hooks
 * run in this thread under the writer mutex.
 * Ordering: the invalidation brackets the zap (pagestate/notifier.h); a seq_cst
 * fence orders the zap before the references are dropped, paired with a pin's
 * seq_cst pin and re-read: a pin racing the unmap either backs out or is seen.
 * Progress: blocking (the writer mutex; the invalidation's callbacks).
 * Return: 0; -EINVAL (unaligned, empty or outside range; unknown flags);
 * -ENOMEM (a huge entry the range covers in part could not be split: the pages
 * before it are unmapped, it and the pages after it are left mapped with their
 * references; repeat the call). The invalidation is blockable: never -EAGAIN.
 */
int ps_space_unmap(struct ps_space *space, uint64_t start, uint64_t len,
		   unsigned int flags);

/* --- pins ----------------------------------------------------------------- */

/* Pin flags. */
#define PS_PIN_WRITE 0x1u    /* the device writes (FOLL_WRITE) */
#define PS_PIN_LONGTERM 0x2u /* may be held indefinitely (FOLL_LONGTERM) */
#define PS_PIN_PRIVATE 0x4u  /* allow private (encrypted) frames */

/**
 * ps_space_pin_range() - pin the frames mapped at [@start, @start + @len) for
 * a device, as Linux's pin_user_pages(), all or nothing.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: PS_PIN_WRITE (the device writes), PS_PIN_LONGTERM (may be held
 *	indefinitely), PS_PIN_PRIVATE (private frames allowed).
 * @frames_out: receives one frame number per page (@len / 4096 of them). On an
 *	error that concerns a page (all but -EINVAL and -ENOMEM), no pin is
 *	held and @frames_out[0] receives instead the byte offset from @start of
 *	the page that stopped the call: the page to resolve or populate.
 *
 * Per page, as GUP-fast: read the entry, pin its frame speculatively, read the
 * entry again, and back out if it changed. A missing page goes to the populate
 * hook. A pin for write needs a writable entry and makes one as a write fault
 * does: a read-only entry with MAYWRITE becomes writable, marking the frame
 * dirty; a write-protected page of an async range counts as written; one of a
 * sync range fails the call with -EAGAIN. A pin for write marks the frame
 * WRITE_PINNED in the atomic step that takes the pin, then logs its address;
 * any other pin puts the address in the write-back set (the overview of
 * pagestate/space.h, "Dirty state"). Without PS_PIN_PRIVATE a private frame
 * is refused, in the same atomic step (pagestate/prot.h, "Pins and
 * conversions"). A PS_PIN_LONGTERM pin is counted per frame until
 * ps_space_unpin() with PS_UNPIN_LONGTERM: a conversion gives up at once on a
 * frame while one is held; the first in a space reserves the counts.
 * Context: any thread. For a pin for write, not holding the LOCKED bit of a
 * frame in the range (not from its dirty hook). The populate and dirty hooks
 * run in this thread.
 * Ordering: each pin is a seq_cst RMW on the page word followed by a seq_cst
 * re-read of the entry (no fence between: both are in the single total
 * order); it pairs with the fence an unmap runs between changing an entry and
 * dropping references, and with discard's freeze (an RMW on the same word): a
 * pin that succeeds holds the frame mapped at its address at that instant.
 * Progress: lock-free, but for the hooks, making an entry writable (the
 * frame's LOCKED bit) and a frame frozen by a conversion or an unfinished map
 * (waited for); the first long-term pin in a space makes one mmap() call.
 * Return: 0; -EINVAL (alignment, range, flags, @frames_out NULL: @frames_out is
 * not written); -ENOMEM (the first long-term pin could not reserve the counts:
 * @frames_out is not written). With the page's offset in @frames_out[0]:
 * -EFAULT (missing without a hook, a guard page, no write permission); -EAGAIN
 * (write-protected in a sync range: resolve it, e.g. with ps_space_fault() and
 * PS_ACCESS_RESOLVE_WP, and retry); -EHWPOISON (poisoned); -EPERM (a private
 * frame without PS_PIN_PRIVATE); -EOVERFLOW (pin or reference limit); a
 * populate hook's error. Dirty marks and logged addresses made on the way stay.
 */
int ps_space_pin_range(struct ps_space *space, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *frames_out);

/**
 * ps_space_pin_units() - ps_space_pin_range() that returns one unit per frame
 * pinned: a whole 2 MiB or 1 GiB frame is one unit, pinned by one
 * read-modify-write on its page word.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: as for ps_space_pin_range(). A PS_PIN_LONGTERM pin of a whole
 *	huge frame is counted once, at its first frame.
 * @units: receives the units, in address order: PS_SPACE_UNIT(frame, order)
 *	for a whole huge frame that a huge entry maps and the range covers
 *	(frame is its first 4 KiB frame), a plain frame number for a 4 KiB
 *	page (of a 4 KiB frame, or of a huge frame whose state is split). On an
 *	error that concerns a page, @units[0] receives the byte offset from
 *	@start of the page that stopped the call, as for ps_space_pin_range().
 * @max: room in @units (at least 1). A range of 2 MiB frames needs @len /
 *	2 MiB, at most @len / 4096.
 * @count: receives how many units were written (0 on error).
 *
 * All or nothing, as ps_space_pin_range(): on an error the units pinned are
 * released (from @units: no memory of the range's size is used). A unit of a
 * huge frame stands for a pin of each of its 4 KiB pages; ps_space_unpin()
 * releases it (and accepts, for the same frame, its 4 KiB frames in order).
 * Each unit is pinned as ps_space_pin_range() pins a page: the huge entry,
 * the pin, a seq_cst fence, the entry again. A pin for write logs every page
 * of the unit.
 * Context: as ps_space_pin_range().
 * Ordering: as ps_space_pin_range(), per unit (a seq_cst RMW, a seq_cst fence,
 * then the re-read).
 * Progress: as ps_space_pin_range(); the call holds no lock and no read-side
 * section across units, so pinning terabytes never blocks a grace period.
 * Return: as ps_space_pin_range(); -ENOBUFS if @max was too small (nothing
 * pinned; @units[0] receives the offset of the first page without room).
 */
int ps_space_pin_units(struct ps_space *space, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *units, uint64_t max,
		       uint64_t *count);

/* Unpin flags (not pin_range's: PS_PIN_WRITE would read as DIRTY). */
#define PS_UNPIN_DIRTY 0x1u    /* the device wrote: mark dirty first */
#define PS_UNPIN_LONGTERM 0x2u /* the pins were taken PS_PIN_LONGTERM */

/**
 * ps_space_unpin() - release pins taken by ps_space_pin_range().
 * @space: the space the pins were taken in.
 * @frames: the frames, as ps_space_pin_range() returned them.
 * @n: how many.
 * @flags: PS_UNPIN_DIRTY: the device wrote; mark each frame dirty first
 *	(Linux's unpin_user_pages_dirty_lock()). PS_UNPIN_LONGTERM: the pins
 *	were taken with PS_PIN_LONGTERM (required for those, and only for
 *	those). Pins taken with different flags are released by separate calls.
 *
 * A frame whose last reference this drops is freed (free_frame hook). Frames
 * at or above nframes are skipped. A frame unpinned dirty is written by the
 * next ps_space_writeback() of the address it was pinned at, if it is still
 * mapped there. The dirty log has the address only if the pin was for write:
 * after another pin, mark the addresses with ps_space_mark_dirty(). @frames may
 * hold the units of ps_space_pin_units(); the 4 KiB frames of a whole huge
 * frame, all of them in order, release its one pin. Unpinning what was not
 * pinned is misuse, reported to the page word's error hook (pagestate/page.h).
 * Context: any thread holding the pins; with PS_UNPIN_DIRTY, not holding a
 * frame's LOCKED bit (not from a dirty hook). The dirty hook runs in this
 * thread under the frame's LOCKED bit (so no write-back cleans the frame
 * before the hook has run), the free_frame hook with no lock of the space.
 * Ordering: each unpin is a release RMW on the page word (acquire too when it
 * frees the frame); with PS_UNPIN_DIRTY, DIRTY is set (acq_rel) before the
 * unpin; with PS_UNPIN_LONGTERM, the frame's long-term count drops (release)
 * before the unpin.
 * Progress: lock-free without PS_UNPIN_DIRTY (one RMW per frame, and a
 * compare-and-swap loop on a long-term count); blocking with it (the frame's
 * LOCKED bit, which faults and write-backs hold briefly).
 * Return: 0; -EINVAL if @flags has unknown bits (nothing is released);
 * -ENOENT if PS_UNPIN_LONGTERM was passed for a frame with no long-term pin
 * counted (misuse, not said which: its pin is released all the same, and the
 * other frames as asked).
 */
int ps_space_unpin(struct ps_space *space, const uint64_t *frames, uint64_t n,
		   unsigned int flags);

/**
 * enum ps_discard_reason - why ps_space_discard() left a page in place.
 * @PS_DISCARD_PINNED: the frame is pinned (ps_space_pin_range()): a device
 *	may be doing DMA to it. It stays until its pins are released; a
 *	balloon retries after the unpin, or gives the host other pages.
 * @PS_DISCARD_BUSY: the frame has a holder other than this mapping and
 *	its pins: another mapping of the same frame (at another address, in
 *	the range or not), a CPU map (pagestate/prot.h), its owner's own
 *	reference, or a transient one (a lookup, a pin backing out, a
 *	ps_space_writeback() copying it). Transient holders go soon: retry.
 *	An alias goes when it is unmapped.
 * @PS_DISCARD_FROZEN: another thread holds the frame frozen (ps_page_freeze():
 *	a cache-mode change, the owner's migration). Retry after it unfreezes.
 */
enum ps_discard_reason {
	PS_DISCARD_PINNED = 1,
	PS_DISCARD_BUSY = 2,
	PS_DISCARD_FROZEN = 3,
};

/**
 * struct ps_discard_skip - a page ps_space_discard() left in place.
 * @addr: the page.
 * @frame: the frame mapped there (at the instant discard looked).
 * @reason: why it stays.
 */
struct ps_discard_skip {
	uint64_t addr;
	uint64_t frame;
	enum ps_discard_reason reason;
};

/**
 * ps_space_discard() - a balloon's MADV_DONTNEED: drop the pages of
 * [@start, @start + @len) whose frames only their mapping holds, and report
 * every other page with the reason it stays.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @skipped: receives the pages left in place, in address order, with their
 *	frame and reason (up to @max_skipped of them; may be NULL if
 *	@max_skipped is 0).
 * @max_skipped: room in @skipped.
 * @nskipped: receives how many pages were left in place (all of them,
 *	even beyond @max_skipped); may be NULL.
 *
 * An invalidation (PS_NOTIFIER_CLEAR) brackets the call. A page with a present
 * entry whose frame only this mapping holds (one reference, no pin) is
 * dropped: the frame is frozen at exactly that reference, the entry zapped as
 * ps_space_unmap() with PS_UNMAP_ZAP does (write-protect markers stay), and the
 * frame freed (the free_frame hook runs; its contents and its DIRTY are given
 * up). Any other page is left exactly as it was, entry, write protection, dirty
 * log and write-back set included, and reported with its reason (enum
 * ps_discard_reason); discard never waits for a holder. Pages without a present
 * entry are neither dropped nor reported. A pinned page is never unmapped, not
 * even for a moment: a pin racing with discard comes first (the page is
 * reported pinned) or waits and then finds the page gone. Discard a range
 * attached to the userfaultfd bridge with ps_uffd_discard() (pagestate/uffd.h).
 * The range is handled 64 MiB at a time (a 1 GiB leaf whole), the writer mutex
 * let go between chunks, as ps_space_unmap() does: a map elsewhere proceeds
 * meanwhile, and a page mapped into a part of the range not reached yet is
 * handled with it. The design: docs/space.md, "Balloon discard".
 * Context: as ps_space_map(); the notifier callbacks and the free_frame hooks
 * run in this thread under the writer mutex.
 * Ordering: the invalidation brackets the zaps (pagestate/notifier.h); per
 * page, the freeze is an acquire RMW on the page word, ordered against every
 * pin and reference taken on it, and the unfreeze that frees the frame is a
 * release after the zap.
 * Progress: blocking (the writer mutex, held for one chunk at a time; the
 * invalidation's callbacks). Per page lock-free: it looks again only when the
 * frame's word changed.
 * Return: 0; -EINVAL (unaligned, empty or outside range, or @skipped NULL with
 * @max_skipped not 0): *@nskipped is not written then; -ENOMEM (a page that is
 * part of a huge entry could not be dropped because the entry could not be
 * split: the pages before it are handled as above and counted in *@nskipped,
 * it and the pages after it are left exactly as they were; repeat the call).
 */
int ps_space_discard(struct ps_space *space, uint64_t start, uint64_t len,
		     struct ps_discard_skip *skipped, uint64_t max_skipped,
		     uint64_t *nskipped);

/* --- CPU access ----------------------------------------------------------- */

/**
 * ps_space_fault() - a CPU access to @addr through the space's mapping.
 * @space: the space.
 * @addr: the page (aligned, inside the space).
 * @access: PS_ACCESS_READ or PS_ACCESS_WRITE (pagestate/pgtable.h),
 *	optionally with PS_ACCESS_RESOLVE_WP.
 *
 * ps_pgtable_fault() on the space's table, plus: a missing page goes to the
 * populate hook, and the fault is tried once more; a write that makes an entry
 * writable (read-only with MAYWRITE, or write-protected and resolved) holds
 * the frame (a reference and its LOCKED bit), marks it dirty (the dirty hook
 * runs on a clean-to-dirty transition), then makes the entry writable, then
 * logs the address. A write the page table refuses (PS_FAULT_WP,
 * PS_FAULT_BAD_ACCESS) marks nothing.
 * Context: any thread; for a write, not holding the LOCKED bit of the frame at
 * @addr (not from its dirty hook). The populate hook runs in this thread with
 * no lock of the space held, the dirty hook under the frame's LOCKED bit, and
 * the free_frame hook with no lock of the space if the frame was unmapped
 * while the fault held it (the fault's release was its last reference).
 * Ordering: the page table's CAS (acquire and release); DIRTY (an acq_rel RMW)
 * is set before the CAS that makes the entry writable, and the log's bit (a
 * release RMW) after it.
 * Progress: lock-free for reads, and for writes to a writable or missing
 * entry; a write to a present entry that is not writable takes the frame's
 * LOCKED bit (spin, then yield: blocking), and waits, yielding, while the frame
 * is frozen (a conversion, or a map that claimed it and has not finished). The
 * populate hook is the caller's.
 * Return: as ps_pgtable_fault(): PS_FAULT_OK, PS_FAULT_MISSING (no hook, or
 * the hook failed or left the page missing), PS_FAULT_WP, PS_FAULT_POISONED,
 * PS_FAULT_GUARD, PS_FAULT_BAD_ACCESS; PS_FAULT_INVALID also for an unaligned
 * or outside @addr, and for a write whose frame is at the reference limit
 * (PS_PAGE_REFS_MAX: the fault cannot hold it; nothing changed).
 */
enum ps_fault ps_space_fault(struct ps_space *space, uint64_t addr,
			     unsigned int access);

/* --- the secondary-map helper --------------------------------------------- */

/**
 * struct ps_secondary_ops - the caller's secondary mapping.
 * @lock: take the lock that the subscription's invalidate callback takes.
 * @unlock: drop it.
 * @install: install the mapping of @addr to @frame (writable if @write),
 *	called under the lock (and, if @write, under the frame's LOCKED bit).
 *	Return 0, or a negative errno the helper returns (the mapping is not
 *	considered installed).
 */
struct ps_secondary_ops {
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx);
	int (*install)(void *ctx, uint64_t addr, uint64_t frame, bool write);
};

/**
 * ps_space_map_secondary() - map one page into the caller's secondary mapping
 * (an IOMMU, a shadow page table, a vhost map), retrying while invalidations
 * race, and never map a clean frame writable.
 * @space: the space.
 * @sub: the caller's subscription covering @addr (inserted in
 *	ps_space_notifier()).
 * @addr: the page (aligned, inside @sub).
 * @write: the secondary mapping will be writable.
 * @ops: the caller's lock, unlock and install (all three required).
 * @ctx: handed to @ops' callbacks.
 *
 * The secondary-MMU loop of Andrea Arcangeli's reply in the thread "Reference
 * count on pages held in secondary MMUs" (kvmarm list, June 2019):
 * ps_interval_read_begin() on @sub; look up the frame and hold it (populate
 * hook if missing, asked for the access the mapping is for); for a write, take
 * the frame's LOCKED bit; take the caller's lock; if an invalidation raced,
 * unlock both, let go and start again; for a write, mark the frame dirty and
 * log @addr; install; unlock both; let go. The bit comes before the caller's
 * lock, the order in which write-back holds them (its invalidation callbacks
 * take the caller's lock under the bit), and makes the mark as every mark is
 * made, so that a write fault that finds the frame dirty knows its dirty hook
 * has run. The secondary mapping keeps no reference: @sub's invalidate callback
 * tears it down before the frame at @addr can change.
 *
 * The dirty hook runs once per clean-to-dirty transition however many mappers
 * and invalidations race, never for a read mapping or a retried attempt. The
 * primary entry is not made writable. A write to a page write-protected in a
 * sync range fails with -EAGAIN (resolve it first); in an async range it is
 * logged and the entry stays protected, so CPU writes are still seen. Private
 * frames are refused. A page inside a whole 2 MiB or 1 GiB frame is held on the
 * frame's word, whose state stays whole: a write marks the whole frame dirty
 * (its DIRTY is the frame's) and logs @addr alone; @ops->install gets the 4 KiB
 * frame of @addr.
 * Context: any thread holding neither @ops' lock nor the frame's LOCKED bit
 * (not from a dirty hook of that frame); the populate hook runs in it with no
 * lock of the space held, the dirty hook and @ops->install under @ops' lock
 * (and, for a write, the frame's LOCKED bit). Under @ops' lock, @install
 * included, nothing may wait for a frame's LOCKED bit (a write fault, a pin
 * for write, ps_space_mark_dirty(), a dirty unpin, write-back, a CPU map of
 * pagestate/prot.h): a writing helper holds that bit while it waits for the
 * lock.
 * Ordering: the per-subscription check of pagestate/notifier.h (read_begin's
 * acquire; read_retry under @ops' lock, which orders it against the callback's
 * ps_interval_set_seq()); for a write, DIRTY and the log's bit are set before
 * @ops->install runs.
 * Progress: blocking (@ops' lock, for a write the frame's LOCKED bit;
 * read_begin waits for an overlapping
 * invalidation in flight); it loops again only after populating the page, or
 * when an invalidation or a change of the frame raced with it.
 * Return: 0; -EINVAL (@sub not a subscription of the space's notifier or not
 * covering @addr, @addr unaligned or outside, @ops or one of its callbacks
 * NULL); -EFAULT (missing without a populate hook, a guard page, a write
 * without MAYWRITE); -EAGAIN (write-protected in a sync range); -EHWPOISON;
 * -EPERM (a private frame); -EOVERFLOW (reference limit); a populate hook's or
 * @ops->install's error.
 */
int ps_space_map_secondary(struct ps_space *space, struct ps_interval *sub,
			   uint64_t addr, bool write,
			   const struct ps_secondary_ops *ops, void *ctx);

/* --- dirty tracking ------------------------------------------------------- */

/**
 * enum ps_space_mark - what ps_space_mark_dirty() did.
 * @PS_SPACE_MARK_DIRTIED: the frame was clean: this call made it dirty
 *	(the dirty hook ran) and logged the address.
 * @PS_SPACE_MARK_WAS_DIRTY: the frame was dirty already (its clean-to-dirty
 *	transition was another call's, and so was the hook): the address was
 *	logged.
 * @PS_SPACE_MARK_UNMAPPED: no frame of the space is mapped at the address
 *	(none, a marker, a swap entry, or a frame at or above nframes):
 *	nothing was marked or logged.
 * @PS_SPACE_MARK_OVERFLOW: the frame mapped there is at the reference
 *	limit (PS_PAGE_REFS_MAX): the call cannot hold it while it marks, and
 *	did nothing. Retry once references are dropped.
 * @PS_SPACE_MARK_INVALID: the address is unaligned or outside the space:
 *	nothing was done.
 *
 * The first two mean the write is recorded (for write-back and the dirty
 * log); the others that it is not.
 */
enum ps_space_mark {
	PS_SPACE_MARK_DIRTIED = 0,
	PS_SPACE_MARK_WAS_DIRTY = 1,
	PS_SPACE_MARK_UNMAPPED = 2,
	PS_SPACE_MARK_OVERFLOW = 3,
	PS_SPACE_MARK_INVALID = 4,
};

/**
 * ps_space_mark_dirty() - the frame at @addr was written (by software, or a
 * device the space cannot see): mark it dirty and log @addr.
 * @space: the space.
 * @addr: the page (aligned, inside the space).
 *
 * The frame mapped at @addr is held while it is marked (a reference, then the
 * entry read again: a frame unmapped meanwhile is let go and the page looked
 * at again), so the dirty hook never runs for a frame already freed or mapped
 * elsewhere. The address is logged after the mark. In the common case the
 * page word sees two atomic read-modify-writes: one that takes a reference and
 * LOCKED and sets DIRTY, one that drops both.
 * Context: any thread not holding the frame's LOCKED bit (not from its dirty
 * hook). The dirty hook runs in this thread under the frame's LOCKED bit, as a
 * write fault's does, so no write-back cleans the frame before the hook has
 * run; the free_frame hook runs here with no lock of the space if the frame
 * was unmapped while this call held it.
 * Ordering: release: what the caller wrote before the call happens before
 * the harvest that reports @addr and the write-back that writes the frame.
 * Progress: blocking (the frame's LOCKED bit, which faults and write-backs
 * hold briefly); it looks again only when the entry or the frame changed, and
 * waits, yielding, while the frame is frozen (a conversion, a cache-mode
 * change, a discard, a map that claimed it and has not finished).
 * Return: one of enum ps_space_mark.
 */
enum ps_space_mark ps_space_mark_dirty(struct ps_space *space, uint64_t addr);

/* Harvest flags. */
#define PS_HARVEST_REARM 0x1u /* re-arm what is reported (ps_space_harvest) */
/*
 * Report every page of an aligned 2 MiB or 1 GiB extent (a whole huge frame
 * written through its huge entry, say) as one entry, with the extent's order
 * (PS_SPACE_ORDER_2M, _1G) in its low bits: addr | order. Other pages are
 * reported as before (their low bits are 0).
 */
#define PS_HARVEST_UNITS 0x2u

/**
 * ps_space_harvest() - take the dirty pages of [@start, @start + @len) out of
 * the dirty log and return them, atomically per page: a page dirtied
 * concurrently is in this harvest or stays for the next, never lost.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: 0, PS_HARVEST_REARM, PS_HARVEST_UNITS, or both.
 * @addrs: receives page addresses (with PS_HARVEST_UNITS, entries: addr |
 *	order), ascending.
 * @max: room in @addrs, in entries (at least 1).
 * @count: receives how many were written.
 * @resume: receives where to continue (@start + @len when complete); may be
 *	NULL.
 *
 * With PS_HARVEST_UNITS the pages taken are reported in units: an aligned 2
 * MiB or 1 GiB extent whose every page is taken is one entry, the extent's
 * address with its order in the low bits. A whole huge frame written through
 * its huge entry (a write fault, the get-and-rearm scan) or pinned for write
 * whole is logged as one such unit, and reported and re-armed as one, with
 * no work per 4 KiB page; a run of pages that covers an extent is one entry
 * too if @max leaves room for all of them. Without PS_HARVEST_UNITS every
 * page of a unit is reported. A range that covers part of a unit reports the
 * pages inside (at 4 KiB) and leaves the others in the log.
 * @max counts entries. Reported: every address in the dirty log (write faults,
 * ps_space_mark_dirty(), the helper's writes, pins for write), and a page
 * pinned for write by every harvest until the first one after its unpin.
 * Entries beyond @max are neither reported nor re-armed: they stay in the log
 * for the next harvest, which may resume inside a huge entry.
 *
 * PS_HARVEST_REARM: the next write to every page reported is seen. First the
 * written entries of ranges registered PS_WP_ASYNC are moved into the log by
 * the page table's get-and-rearm scan (re-protected in the same step, per
 * page). Then, after their marks are taken, the other pages reported are
 * re-armed: in a sync range write-protected as ps_pgtable_protect() does (the
 * next write faults with PS_FAULT_WP), in an unregistered range made read-only
 * (the next write faults and is logged again; a huge entry the pages reported
 * cover whole stays huge, read-only as a whole). Last, their secondary mappings
 * are invalidated (PS_NOTIFIER_SOFT_DIRTY), which is also the TLB flush of the
 * entries re-armed. A page put back with ps_space_redirty() stays re-armed.
 *
 * A caller that re-arms by itself must harvest first, then protect what was
 * reported: protect-then-harvest loses the write of a fault in between
 * (docs/space.md, "Harvest and re-arm"). Copy the reported pages after the
 * harvest (and the caller's re-arm) returns.
 * Context: any thread. With PS_HARVEST_REARM it takes the page table's writer
 * mutex and invalidates: not from a notifier callback, nor holding a lock a
 * callback takes, nor inside a read-side section.
 * Ordering: what a marker wrote before its mark happens before the harvest
 * that reports it (the log's release and acquire). With PS_HARVEST_REARM, each
 * re-arm is a seq_cst change of the entry after the take of its mark, so a
 * write to a reported page happens before the re-arm (and is in the copy taken
 * after the harvest returns) or faults and is logged again.
 * Progress: lock-free without PS_HARVEST_REARM; blocking with it. Once the
 * space has a ledger (pagestate/ledger.h), blocking: it hands the log's
 * marks to every consumer under the ledger's mutex, then takes its own (with
 * PS_HARVEST_UNITS an aligned extent all of whose pages it has is one entry,
 * as without a ledger; its cost is then per page of the extent).
 * Return: 0; -EINVAL (range, flags, @addrs or @count NULL, @max 0); with
 * PS_HARVEST_REARM, the page-table scan's error (-ENOMEM; -ENOENT if a range
 * is unregistered meanwhile): nothing is harvested, and the pages the scan
 * already moved into the log wait there for the next harvest.
 */
int ps_space_harvest(struct ps_space *space, uint64_t start, uint64_t len,
		     unsigned int flags, uint64_t *addrs, uint64_t max,
		     uint64_t *count, uint64_t *resume);

/**
 * ps_space_redirty() - put harvested pages back into the dirty log (a
 * transfer failed).
 * @space: the space.
 * @addrs: entries as ps_space_harvest() returned them: page addresses, or
 *	with PS_HARVEST_UNITS addr | order (a 2 MiB or 1 GiB unit, put back as
 *	one mark).
 * @n: how many.
 *
 * It only adds: marks made meanwhile stay. A page a harvest re-armed stays
 * re-armed, and the next harvest reports it again. Once the space has a
 * ledger (pagestate/ledger.h), the pages (a unit's every page) go back to
 * ps_space_harvest() only, not to the ledger's consumers (which use
 * ps_ledger_abort()).
 * Context: any thread.
 * Ordering: release (the log's set), paired with the acquire of the harvest
 * that takes it.
 * Progress: wait-free (one bitmap set per entry; with a ledger, one per 64
 * pages of it).
 * Return: 0; -EINVAL (an address unaligned to its unit, an order that is not
 * 0, PS_SPACE_ORDER_2M or PS_SPACE_ORDER_1G, or an extent outside the space:
 * the entries before it were put back, it and those after it were not).
 */
int ps_space_redirty(struct ps_space *space, const uint64_t *addrs, uint64_t n);

/* --- write-back ----------------------------------------------------------- */

/**
 * enum ps_writeback_mode - Linux's WB_SYNC_NONE and WB_SYNC_ALL.
 * @PS_WB_CLEAN: memory-cleaning write-back: pinned frames are skipped and
 *	stay dirty.
 * @PS_WB_INTEGRITY: data integrity (fsync): every dirty frame is written;
 *	pinned ones through a bounce copy.
 */
enum ps_writeback_mode {
	PS_WB_CLEAN = 0,
	PS_WB_INTEGRITY = 1,
};

/**
 * typedef ps_writeback_fn - write one frame to its backing store.
 * @ctx: as passed to ps_space_writeback().
 * @addr: the page being written back.
 * @frame: its frame.
 * @pinned: the frame is pinned: a device may be writing it right now. Take a
 *	copy at one instant (a bounce buffer) and write the copy.
 *
 * Runs in the thread of ps_space_writeback() with no lock of the space held,
 * the frame under write-back (its WRITEBACK flag set, pagestate/page.h) and
 * held by a reference of write-back's own. The frame is handed over as it is:
 * to read one that may be private or inaccessible, bracket the read with
 * ps_prot_kmap() and ps_prot_kunmap(). Returning means the write is complete:
 * the next write-back of the frame may start, and its copy must land after
 * this one. It must not start a PS_WB_INTEGRITY write-back of its own frame,
 * nor of a frame of its run still to be written: in its own thread that
 * write-back fails with -EDEADLK for the page; in another thread that it
 * waits for, the two wait for each other for ever. Any other page it may
 * fault, pin, mark or write back.
 * Return: 0, or a negative errno: the frame is dirtied again (the dirty hook
 * runs if it was clean) and ps_space_writeback() reports the first error.
 */
typedef int (*ps_writeback_fn)(void *ctx, uint64_t addr, uint64_t frame,
			       bool pinned);

/** struct ps_writeback_stats - what one ps_space_writeback() did. */
struct ps_writeback_stats {
	uint64_t written;	 /* unpinned frames written */
	uint64_t bounced;	 /* pinned frames written from a bounce copy */
	uint64_t skipped_pinned; /* pinned frames skipped (CLEAN) */
	uint64_t kept_dirty;	 /* still pinned for write after a bounce */
	uint64_t errors;	 /* callbacks that failed (re-dirtied), and
				  * -EOVERFLOW / -EDEADLK / -ENOMEM pages */
	uint64_t skipped_writeback; /* dirty frames skipped (CLEAN): another
				     * write-back of them was in flight */
	uint64_t error_offset;	    /* where the error returned is: the
				     * byte offset from @start of its page
				     * (0 if none) */
};

/**
 * ps_space_writeback() - write back the dirty frames mapped in [@start,
 * @start + @len).
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @mode: PS_WB_CLEAN or PS_WB_INTEGRITY.
 * @fn: writes one frame.
 * @ctx: its context.
 * @stats: receives what was done; may be NULL.
 *
 * Visits the pages of the range in the write-back set (the overview of
 * pagestate/space.h, "Dirty state"), each holding the frame mapped there (a
 * reference of its own, then its LOCKED bit, then the entry read again). A
 * dirty, unpinned frame: under its LOCKED bit, invalidate the page's secondary
 * mappings (PS_NOTIFIER_PROTECTION), write-protect its entry, clear DIRTY, end
 * the invalidation, set WRITEBACK; then call @fn; then clear WRITEBACK. A write
 * meanwhile faults and dirties the frame again: it is never lost. A pinned
 * frame: PS_WB_CLEAN skips it (it stays dirty); PS_WB_INTEGRITY writes it the
 * same way with @pinned true, and leaves it dirty if it is still pinned for
 * write. The frame's reference is dropped after @fn returns: an unmap during
 * @fn does not free the frame under it (the free_frame hook then runs in this
 * thread, after @fn), and a discard leaves the page (busy). Consecutive pages
 * to write are taken together, a run at a time (up to 64 pages, within one
 * 64-page aligned block): one invalidation covers the run, under the LOCKED
 * bits of its frames and of no other, and every LOCKED bit of the run is
 * dropped before its first @fn is called; the next run's frames are held
 * only after the run's last @fn has returned. If an invalidation cannot
 * start (-ENOMEM), its pages stay dirty and in the set, and @fn is not
 * called for them.
 *
 * A whole 2 MiB or 1 GiB frame (ps_space_set_frame_order()) mapped by a huge
 * entry is one unit: its one DIRTY flag says whether all of it is written. It
 * is visited once, with one invalidation of the huge entry's extent, the entry
 * write-protected whole (it is not split), DIRTY cleared and WRITEBACK set on
 * the frame's word, and then @fn is called for each 4 KiB page of the frame in
 * address order, with that page's address and frame, as for 4 KiB frames: the
 * whole frame is written when @start and @len cover only part of it. The
 * first error stops the calls for that frame and leaves it dirty (all of it is
 * written by the next write-back); @stats count 4 KiB pages written or
 * bounced, and one skip, error or kept-dirty per frame. A huge frame whose
 * state was split (a pin or map of part of it) is written page by page.
 *
 * One write-back of a frame at a time (Linux's PG_writeback): @fn never runs
 * for a frame while another write-back's @fn runs for it, so the copies land
 * in the order they were taken. PS_WB_CLEAN skips a frame under another
 * write-back (it stays dirty; stats: skipped_writeback); PS_WB_INTEGRITY waits
 * for it (Linux's folio_wait_writeback()), then looks at it again.
 * Context: any thread. It invalidates: not from a notifier callback, nor
 * holding a lock a callback takes. PS_WB_INTEGRITY waits for other
 * write-backs' callbacks: not from a callback whose frame it would visit (see
 * ps_writeback_fn), nor from a thread such a callback waits for.
 * Ordering: under the frame's LOCKED bit the entry is write-protected, then
 * DIRTY cleared by an acq_rel RMW on the page word, which orders every pin
 * before it (the frame counts as pinned) or after it (a pin for write then
 * faults and dirties the frame again). WRITEBACK is cleared with release after
 * @fn: a write-back that waited for it sees what that write-back did.
 * Progress: blocking (LOCKED bits: spin, then yield; the invalidations);
 * PS_WB_INTEGRITY also waits for other write-backs' callbacks of the frames it
 * visits, for as long as each takes.
 * Return: 0; -EINVAL (range, @mode, @fn NULL); or the first error, every page
 * still visited: a callback's error (the frame is dirty again); -EOVERFLOW (a
 * frame at the reference limit: left dirty for the next write-back); -EDEADLK
 * (a frame under write-back by a callback of this very thread, the one it
 * writes or one of its run still to be written: left as it was); -ENOMEM (an
 * invalidation could not start: its pages left dirty, not written); -EBUSY (a
 * 2 MiB part of a split 1 GiB frame whose state could not be split to 4 KiB:
 * left dirty). @stats counts each page's error, and its error_offset says
 * where the error returned is: the byte offset from @start of its page.
 */
int ps_space_writeback(struct ps_space *space, uint64_t start, uint64_t len,
		       enum ps_writeback_mode mode, ps_writeback_fn fn,
		       void *ctx, struct ps_writeback_stats *stats);

PS_END_DECLS

#endif /* PAGESTATE_SPACE_H */
