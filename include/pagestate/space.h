/* SPDX-License-Identifier: MIT */
/*
 * pagestate/space.h - an address space: the piece a VMM or a userspace DMA
 * driver holds. It ties together
 *
 *   - a page table (pagestate/pgtable.h): address -> entry;
 *   - the page words of the frames it maps (pagestate/page.h): one
 *     struct ps_page per frame, 8 bytes, library-allocated (a lazily
 *     zero-filled mapping: frames never touched cost nothing) or the
 *     caller's array;
 *   - a notifier (pagestate/notifier.h) for its invalidations, so secondary
 *     mappings (IOMMU, shadow tables, vhost maps, translation caches) can be
 *     validated and torn down exactly;
 *   - dirty tracking for migration (harvest) and for write-back to a backing
 *     store, with pinned pages handled as seed 001 asks.
 *
 * ---------------------------------------------------------------------------
 * References, pins and frames
 * ---------------------------------------------------------------------------
 *
 * A mapping holds one reference on its frame. Mapping a free frame makes it
 * LIVE with that one reference once the map has succeeded (until then the map
 * holds it frozen: ps_page_get_or_freeze()); mapping a frame that is already
 * LIVE adds one. A pin (ps_space_pin_range()) holds a pin, which is also a
 * reference, so a pinned frame outlives the unmapping of its address, as in
 * Linux. The put that drops a frame's last reference frees it: the frame's
 * page word is free again and the free_frame hook runs.
 *
 * Pins are taken as Linux's GUP-fast does: read the entry, take a speculative
 * pin on its frame, read the entry again (ordered after the pin as by a full
 * fence: both are seq_cst), and back out if it changed (leaving no reference
 * behind). Whoever changes entries (unmap, conversion) changes the entry first,
 * then (after a full fence) looks at the frame's pins: one of the two sees the
 * other. A balloon discard does not change the entry of a frame anything but
 * its mapping holds: it freezes the frame at that one reference first, which a
 * pin taken before makes fail and a pin tried after finds frozen.
 *
 * A pin expects shared memory unless the caller passes PS_PIN_PRIVATE: a
 * frame converted to private (pagestate/prot.h) cannot be pinned by a path
 * that expects shared memory. The check is part of the pin's single atomic
 * decision on the page word (ps_page_try_pin_masked()), so a pin and a
 * conversion of the same frame are linearizable. A private pin keeps a
 * private frame resident and blocks its conversion. It does not make the
 * frame's contents accessible to anyone: CPU access goes through the
 * make-accessible hook of the protection module (seed 000).
 *
 * ---------------------------------------------------------------------------
 * Dirty state (seeds 001 and 003)
 * ---------------------------------------------------------------------------
 *
 * Two notions, as in Linux:
 *   - a frame is DIRTY (page.h's flag, Linux's PG_dirty) when its contents
 *     differ from its backing copy. The first write fault through a writable
 *     mapping (ps_space_fault()), a write through the secondary-map helper,
 *     ps_space_mark_dirty() and ps_space_unpin(..., PS_UNPIN_DIRTY) make it
 *     so. The caller's dirty hook (set_page_dirty) runs exactly once per
 *     clean-to-dirty transition, however many threads race. Write-back
 *     (ps_space_writeback()) cleans frames. It finds them by address, so the
 *     space records the address of every page written, every page pinned (any
 *     pin: it may be unpinned dirty) and every page mapped to a frame that is
 *     pinned or dirty, and write-back keeps a page whose frame is pinned or
 *     dirty (S9 in lib/space-writeback.c). So a frame unpinned dirty is written
 *     by the next write-back of the address it was pinned at, if it is still
 *     mapped there (there is no reverse map: an alias elsewhere is not found
 *     through it).
 *   - an address is in the dirty log (KVM's dirty bitmap) when it was
 *     written since the last harvest (ps_space_harvest()), which migration
 *     consumes. Every marking path above but ps_space_unpin() logs the
 *     address too (an unpin has frames, not addresses). Pins for write are
 *     logged instead: a device may write the frame at any moment, so a
 *     frame pinned for write is reported by every harvest until it is
 *     unpinned, and once more after that. A device write through a pin not
 *     for write reaches write-back (above) but not the dirty log: pin for
 *     write, or ps_space_mark_dirty() the addresses. Writes through entries
 *     of a range registered for asynchronous write protection (pgtable.h)
 *     are tracked in the entries themselves, and a harvest with
 *     PS_HARVEST_REARM collects them too. A path that lets writes through
 *     without a further fault (an entry made writable, a pin for write) logs
 *     its address after it is open, never before (S11 in lib/space-dirty.c), so
 *     a harvest that takes the mark comes after the writes can start, and its
 *     re-arm ends the path: the next write faults and is logged again.
 *
 * Dirty before writable (seed 003). A writable entry implies a dirty frame. The
 * write fault that makes an entry writable holds the frame (a reference, so
 * that it can be neither freed nor handed to another owner meanwhile) and its
 * LOCKED bit, and does this in order: read the entry again (if it maps another
 * frame now, let go and start again with that frame), mark the frame dirty (the
 * dirty hook runs on the clean-to-dirty transition), make exactly that entry
 * writable, then log the address (dirty before writable, logged after). So the
 * dirty hook has run before any thread can write through the entry. Write-back
 * takes the same bit around "write-protect, then clean" (Linux: folio lock,
 * page_mkwrite, clear_page_dirty_for_io). So a write that arrives during
 * write-back faults and dirties the frame again, and is never lost.
 *
 * ---------------------------------------------------------------------------
 * Concurrency and progress
 * ---------------------------------------------------------------------------
 *
 *   lock-free   ps_space_pin_range (without populate), ps_space_unpin,
 *               ps_space_mark_dirty, ps_space_fault but a write to a
 *               present, non-writable entry, ps_space_harvest without REARM
 *   blocking    map, unmap, discard (the space's writer mutex, plus the
 *               notifier's invalidation); ps_space_fault of a write to a
 *               present, non-writable entry and ps_space_writeback (a
 *               frame's LOCKED bit: spin, then yield; INTEGRITY also waits
 *               for another write-back's callback); the secondary-map
 *               helper (the caller's lock, and read_begin may wait for an
 *               overlapping invalidation); harvest with REARM (protects;
 *               invalidates); create, destroy; the hooks are the caller's
 *
 * Ordering: every operation that changes an entry publishes it with the page
 * table's release CAS; the pin path's re-read is ordered after the pin as by a
 * full fence (a seq_cst pin, a seq_cst re-read). Each function's comment says
 * more where it matters.
 *
 * ---------------------------------------------------------------------------
 * Where this differs from Linux
 * ---------------------------------------------------------------------------
 *   - Pins are exact (page.h), so discard, write-back and harvest decide on
 *     "is it pinned", not "maybe pinned".
 *   - Write-back has both of Jan Kara's modes (not merged in Linux, which
 *     instead refuses writable long-term pins of dirty-tracked files):
 *     cleaning write-back skips pinned frames; data-integrity write-back
 *     bounces them, and they stay dirty while pinned for write.
 *   - A balloon discard never discards a pinned frame, nor one anything
 *     else holds (another mapping, a CPU map, a freezer): it skips the
 *     page and reports why. Linux's MADV_DONTNEED drops the mapping and
 *     lets the pin (or the other holder) keep the page.
 *   - There is no reverse map (8 bytes per frame, no more). Write-back
 *     write-protects the address it visits, so a frame mapped writable at
 *     several addresses must be written back through each of them, or have its
 *     aliases write-protected first (Linux's page_mkclean walks the rmap).
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
 * @populate: a pin or the secondary-map helper found no page at @addr (none,
 *	swap entry or UFFD_WP marker). Map one (ps_space_map(), or swap it in)
 *	and return 0, or return a negative errno, which the caller gets. @access
 *	is PS_ACCESS_READ or PS_ACCESS_WRITE. Runs in the calling thread with no
 *	library lock held. Without it, missing pages are -EFAULT.
 * @dirty: frame @frame went from clean to dirty (set_page_dirty). Runs
 *	exactly once per transition, in the thread that made it. From a write
 *	fault (ps_space_fault(), a pin for write) it runs under the frame's
 *	LOCKED bit and before the entry becomes writable: it must not fault,
 *	pin for write, write back or CPU-map (pagestate/prot.h) that frame.
 *	From the secondary-map helper it runs under the caller's lock; from
 *	ps_space_mark_dirty(), ps_space_unpin() and write-back with no
 *	library lock held.
 * @free_frame: the last reference to @frame was dropped; the frame's page word
 *	is free again, its lifetime over (DIRTY and WRITE_PINNED cleared,
 *	pagestate/page.h: its next mapping starts clean). Runs in the thread
 *	that dropped it. When that is ps_space_map() or ps_space_map_range() (a
 *	failed map giving back a reference whose owner dropped its own
 *	meanwhile), ps_space_unmap() or ps_space_discard(), it runs under the
 *	space's writer mutex: it must not map, map_range, unmap or discard in
 *	that space, nor convert or mprotect it (pagestate/prot.h), which take
 *	that mutex. From ps_space_unpin(), a pin backing out, the secondary-map
 *	helper, ps_prot_kunmap(), ps_space_writeback() (which holds a reference
 *	on each frame it writes until its callback has returned), a write fault
 *	(ps_space_fault(), a pin's for write) and ps_space_mark_dirty() (which
 *	hold the frame they mark, and may drop the last reference when it was
 *	unmapped meanwhile) and ps_space_destroy() no library lock is held.
 *	(Only if the space runs out of memory collecting unmapped frames may it
 *	run inside the page table's read-side section: S7 in lib/space.c.)
 * @ctx: handed to every hook.
 *
 * The notifier's callbacks (pagestate/notifier.h) have the same rules as
 * @free_frame for the invalidations of unmap and discard (and of
 * pagestate/prot.h's conversion and mprotect), which run under the writer
 * mutex; write-back's PROTECTION invalidation runs under the LOCKED bits of
 * the frames being written back in its range (write-back invalidates a run of
 * pages at a time): a callback must not fault, pin for write, write back or
 * CPU-map the pages of its range.
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
 *	The dirty log reserves 2 bits of address space per page (not resident
 *	until touched).
 * @nframes: number of frames, 0 .. nframes - 1: at least 1, at most
 *	PS_SPACE_NFRAMES_MAX (2^40, 4 PiB of 4 KiB frames). Entries could name
 *	more (PS_PTE_FRAME_MAX + 1), but the space keeps arrays indexed by
 *	frame, which must fit the address space: a library-allocated
 *	page-word array reserves 8 bytes of address space per frame, and the
 *	first long-term pin 4 more (long-term pin counts); neither is
 *	resident until touched.
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
 * Context: blocking (allocates).
 * Ordering: none: the space is the caller's alone until it publishes *@out.
 * Progress: blocking (allocation, mmap).
 * Return: 0; -EINVAL (@cfg or @out NULL, bad size, nframes 0 or above
 * PS_SPACE_NFRAMES_MAX); -ENOMEM (also if the writer mutex cannot be
 * initialised); -ECHILD in a child of a plain fork() (pagestate/fork.h). On
 * error nothing is left allocated and *@out is not written.
 */
int ps_space_create(const struct ps_space_config *cfg, struct ps_space **out);

/**
 * ps_space_destroy() - unmap everything (dropping the mappings' references;
 * free_frame hooks run) and free the space.
 * @space: the space, or NULL (nothing happens; 0 is returned).
 *
 * Context: blocking; no other thread may use the space, and the notifier
 * must have no subscription left. Pinned frames stay valid in the caller's
 * array, if the array is the caller's; a library-allocated array is freed.
 * Ordering: a seq_cst fence orders the zap before the puts (S2 in
 * lib/space-pin.c), so the free_frame hooks run after the entries are gone.
 * Progress: blocking (destroying the page table waits for liburcu's pending
 * callbacks: not inside a read-side section); the hooks are the caller's.
 * In a child of fork(), a space inherited from the parent is only
 * forgotten, subscriptions or not: no hook runs, nothing waits, 0 is
 * returned (pagestate/fork.h, rule 2).
 * Return: 0; -EBUSY if subscriptions remain (nothing is freed then).
 */
int ps_space_destroy(struct ps_space *space);

/**
 * ps_space_pgtable() - the space's page table (for scans, registration).
 * @space: the space.
 *
 * Context: any thread. Ordering: none (a field fixed at creation).
 * Progress: wait-free.
 * Return: the table, valid until ps_space_destroy().
 */
struct ps_pgtable *ps_space_pgtable(struct ps_space *space);

/**
 * ps_space_notifier() - the space's notifier (for subscriptions).
 * @space: the space.
 *
 * Context: any thread. Ordering: none (no load: the notifier is embedded).
 * Progress: wait-free.
 * Return: the notifier, valid until ps_space_destroy().
 */
struct ps_notifier *ps_space_notifier(struct ps_space *space);

/**
 * ps_space_page() - the page word of @frame, or NULL if out of range.
 * @space: the space.
 * @frame: a frame number.
 *
 * Context: any thread. Ordering: none (the page word itself is not read).
 * Progress: wait-free.
 * Return: &frames[@frame], or NULL if @frame >= nframes.
 */
struct ps_page *ps_space_page(struct ps_space *space, uint64_t frame);

/* --- mapping -------------------------------------------------------------- */

/* Mapping flags. */
#define PS_MAP_WRITE 0x1u /* writes permitted (first write marks dirty) */
/*
 * PS_MAP_CACHE(mode): map with cache mode @mode (enum ps_cache_mode,
 * pagestate/prot.h) and insist on it: a free frame takes that mode, a frame
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
 * @flags: 0 (read-only) or PS_MAP_WRITE, optionally PS_MAP_CACHE(mode).
 *
 * The mapping takes a reference on the frame (a free frame becomes LIVE).
 * The entry carries the frame's cache mode and encryption state from its
 * page word. Writes need MAYWRITE; the entry becomes writable at the first
 * write fault, which marks the frame dirty (write-notify).
 *
 * One frame has one cache mode (pagestate/prot.h, "Cache modes"). With
 * PS_MAP_CACHE(mode), a free frame is revived with @mode in the same atomic
 * step that takes the reference, and a frame in use (LIVE: mapped, pinned,
 * CPU-mapped or referenced by its owner) with another mode is refused with
 * -EBUSY; the same mode is fine. A failed map gives a free frame back free,
 * with its previous mode (see ps_space_map_range()).
 * Context: blocking (the writer mutex). Not from a notifier callback of
 * unmap, discard or a failed map's rollback, nor from a free_frame hook run
 * by map, unmap or discard: they hold that mutex.
 * Ordering: release (the page-table CAS): a reader that finds the entry
 * sees the frame's word as mapped.
 * Progress: blocking (the writer mutex, S1; allocation).
 * Return: 0; -EINVAL (unaligned or out of range, unknown flags or mode);
 * -EEXIST (a page is mapped there); -EBUSY (the frame is frozen, or in use
 * with another cache mode than PS_MAP_CACHE asks for); -EHWPOISON (the
 * frame is poisoned); -EOVERFLOW (reference limit); -ENOMEM.
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
 * @flags: 0 or PS_MAP_WRITE, optionally PS_MAP_CACHE(mode), for every page.
 *
 * Every page is checked and every page-table level allocated for the whole
 * range before the first entry is installed (ps_pgtable_map_prepare()), so
 * once an entry is visible the call cannot fail: a concurrent pin or fault
 * finds each page either not mapped yet or mapped for good.
 *
 * A frame that is free when the map takes it is claimed: frozen, with no
 * reference, until the map can no longer fail, and only then LIVE with the
 * mapping's reference. Its new lifetime starts clean: no DIRTY, no
 * WRITE_PINNED (page.h's PS_PAGE_LIFE_FLAGS), whatever its last one left.
 * While claimed, no one else can take it: a pin, a write fault,
 * ps_space_mark_dirty(), the secondary-map helper or write-back that finds a
 * new entry (or a stale one of an older mapping of the frame), a kmap or a
 * reference by frame number waits for it (or fails, for a try by frame
 * number), as for a frame a conversion holds (pagestate/prot.h); none marks
 * it dirty or runs a hook for it before the map has made it LIVE.
 *
 * Who owns each frame after a failed map is certain, whatever raced with
 * the map (S13 in lib/space.c): a frame that was free when the map took it
 * is free again when the map returns, with the cache mode it had; no one
 * held it meanwhile and no free_frame hook runs for it, now or later, so
 * its owner may reuse it at once. A frame that was in use (LIVE) loses only
 * the map's reference; if its other holders all let go meanwhile, that put
 * is its last and the free_frame hook runs for it before the map returns
 * (under the writer mutex), exactly once, as for any last put.
 * Context: as ps_space_map(). Ordering: as ps_space_map(), for each entry.
 * Progress: blocking (the writer mutex, S1; allocation).
 * Return: as ps_space_map(). On error no entry was ever installed (unless
 * another thread stored into the range against pgtable.h's exclusion
 * rules: then the entries installed are taken back inside an UNMAP
 * invalidation, a UFFD_WP marker's page getting its marker back, and a page of
 * an async range a WRITTEN marker), and the references taken are given back.
 */
int ps_space_map_range(struct ps_space *space, uint64_t start, uint64_t len,
		       uint64_t first_frame, unsigned int flags);

/* Unmap flags. */
#define PS_UNMAP_ZAP 0x1u /* MADV_DONTNEED: keep markers where the table does */

/**
 * ps_space_unmap() - unmap [@start, @start + @len): invalidation start
 * (event UNMAP), zap with the page table's marker semantics, drop the
 * mappings' references, invalidation end.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: 0 for munmap/truncate (every marker goes), or PS_UNMAP_ZAP
 *	(MADV_DONTNEED: protection survives as markers where pgtable.h says).
 *
 * Pinned frames stay alive through their pins.
 * Context: blocking; as ps_space_map() (the notifier callbacks and the
 * free_frame hooks run under the writer mutex).
 * Ordering: the invalidation brackets the zap (see notifier.h); a seq_cst
 * fence orders the zap before the references are dropped (S2).
 * Progress: blocking (the writer mutex, S1; the invalidation's callbacks).
 * Return: 0; -EINVAL; -EAGAIN never (the invalidation is blockable).
 */
int ps_space_unmap(struct ps_space *space, uint64_t start, uint64_t len,
		   unsigned int flags);

/* --- pins ----------------------------------------------------------------- */

/* Pin flags. */
#define PS_PIN_WRITE 0x1u    /* the device writes (FOLL_WRITE) */
#define PS_PIN_LONGTERM 0x2u /* may be held indefinitely (FOLL_LONGTERM) */
#define PS_PIN_PRIVATE 0x4u  /* allow private (encrypted) frames */

/**
 * ps_space_pin_range() - pin the frames mapped at [@start, @start + @len),
 * GUP-style, all or nothing.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: PS_PIN_*.
 * @frames_out: receives one frame number per page (len / 4096 entries);
 *	on an error that concerns a page (all but -EINVAL), @frames_out[0]
 *	receives instead the byte offset from @start of the page that
 *	stopped the call (the pins are released, so the array holds no
 *	frames then): the page to resolve or populate.
 *
 * For each page: read the entry; a missing page goes to the populate hook
 * (or fails with -EFAULT); a write pin on a write-protected page resolves it
 * first as a write would (async: the page counts as written; sync: the pin
 * fails with -EAGAIN and the caller resolves the fault); a read-only entry
 * with MAYWRITE is made writable, marking the frame dirty; then take a
 * speculative pin and re-check the entry. A pin for write logs the address (see
 * Dirty state) and marks the frame WRITE_PINNED, in the same atomic step as the
 * pin (so no write-back sees the pin without the flag; a pin that backs out
 * leaves the flag as a hint, cleared once the frame has no pins); any other pin
 * puts the address in the write-back set (it may be unpinned dirty). A
 * PS_PIN_LONGTERM pin is counted against the frame until it is released with
 * ps_space_unpin(..., PS_UNPIN_LONGTERM): a conversion waiting for pins to
 * drain gives up at once (-EBUSY) on a frame while, and only while, a long-term
 * pin of it is held (pagestate/prot.h). The first long-term pin in a space
 * reserves the counts (4 bytes of address space per frame, not resident until
 * touched). A pin not for the long term costs nothing more.
 * Linux refuses FOLL_LONGTERM | FOLL_WRITE on dirty-tracked file mappings
 * because it cannot write back a page a device may write at any time; here
 * integrity write-back bounces it, so the pin is allowed.
 *
 * On any failure every pin taken so far is released.
 * Context: may block only in the populate hook, in a conversion (or a map) that
 * holds a frame frozen (waits for it), and in making an entry writable.
 * Ordering: S2: each pin is an acquire RMW on the page word, then a seq_cst
 * fence, then the entry is read again; pairs with the fence that unmap
 * runs between changing an entry and reading the frame's pins, and with
 * discard's freeze (one RMW on the same word).
 * Progress: lock-free otherwise (the first long-term pin in a space also
 * makes one mmap() call).
 * Return: 0; -EINVAL (alignment, range, flags, len 0, @frames_out NULL:
 * @frames_out is not written); -EFAULT (missing without a hook, guard or bad
 * access); -EAGAIN (sync write-protect fault: the first page whose entry is
 * write-protected, at @frames_out[0]; resolve it, e.g. ps_space_fault() with
 * PS_ACCESS_RESOLVE_WP, and retry); -EHWPOISON (poisoned); -EPERM (a private
 * frame without PS_PIN_PRIVATE); -EOVERFLOW (pin or reference limit); a
 * populate hook's error. For each of those, @frames_out[0] is the offset of the
 * page concerned. -ENOMEM: the first long-term pin could not reserve the
 * counts (@frames_out is not written). Dirty marks and logged addresses made
 * on the way stay.
 */
int ps_space_pin_range(struct ps_space *space, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *frames_out);

/* Unpin flags (not pin_range's: PS_PIN_WRITE would read as DIRTY). */
#define PS_UNPIN_DIRTY 0x1u    /* the device wrote: mark dirty first */
#define PS_UNPIN_LONGTERM 0x2u /* the pins were taken PS_PIN_LONGTERM */

/**
 * ps_space_unpin() - release pins taken by ps_space_pin_range().
 * @space: the space the pins were taken in.
 * @frames: the frames (as pin_range returned them).
 * @n: how many.
 * @flags: PS_UNPIN_DIRTY: mark each frame dirty first (Linux's
 *	unpin_user_pages_dirty_lock()); the dirty hook runs on each
 *	clean-to-dirty transition. PS_UNPIN_LONGTERM: the pins were taken
 *	with PS_PIN_LONGTERM (required for those, and only for those: the
 *	space counts long-term pins per frame, and a conversion refuses a
 *	frame while its count is positive). Pins taken with different flags
 *	are released by separate calls.
 *
 * A frame whose last reference this drops is freed (free_frame hook).
 * Frames at or above nframes are skipped. A frame unpinned dirty is
 * written by the next ps_space_writeback() of the address it was pinned
 * at, if it is still mapped there: the pin recorded that address, and
 * write-back keeps it while the frame is pinned (S9 in lib/space-writeback.c).
 * The dirty log (migration) has the address only for a pin for write (see Dirty
 * state); for another pin, call ps_space_mark_dirty().
 * Context: any thread holding the pins, not holding a frame's LOCKED bit
 * (not from a dirty hook). The hooks run in it: the dirty hook with the
 * frame's LOCKED bit held (as Linux's unpin_user_pages_dirty_lock() holds
 * the folio lock, so that no write-back cleans the frame before the hook
 * has run), the free_frame hook with no library lock held.
 * Ordering: each unpin is a release RMW (acquire too when it frees the
 * frame, page.h); with PS_UNPIN_DIRTY, DIRTY is set (acq_rel) before the
 * unpin; with PS_UNPIN_LONGTERM, the frame's long-term count drops
 * (release) before the unpin.
 * Progress: lock-free without PS_UNPIN_DIRTY (one RMW per frame; a
 * long-term pin adds a compare-and-swap loop on its count); blocking with
 * it (the frame's LOCKED bit, which faults and write-backs hold briefly).
 * Misuse (unpinning what was not pinned) goes to the page word's error hook.
 * Return: 0; -EINVAL if @flags has unknown bits (nothing is released);
 * -ENOENT if PS_UNPIN_LONGTERM was passed for a frame with no long-term
 * pin counted (misuse: its pin is released all the same, the count stays
 * at zero; the other frames are released as asked).
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
 * Brackets itself with an invalidation (event CLEAR). For each page with a
 * present entry: if the frame's only holder is this mapping (one
 * reference, no pin), discard freezes the frame with exactly that
 * reference (ps_page_freeze()), zaps the entry (as ps_space_unmap() with
 * PS_UNMAP_ZAP: write-protect markers stay where pgtable.h says) and frees the
 * frame (the free_frame hook runs; its contents are given up, and the free
 * clears DIRTY as every free does, pagestate/page.h). Any other page is left
 * exactly as it was, entry and all, and reported: pinned, busy (another holder:
 * an alias mapping, a CPU map, a reference) or frozen (another freezer), see
 * enum ps_discard_reason. Discard never waits for a holder. Pages with no
 * present entry are neither discarded nor reported. A pin racing with discard
 * either comes first (the freeze fails and the page is reported pinned) or
 * finds the frame frozen, waits, and then finds the page gone (it faults, as
 * for any missing page): a pinned page is never unmapped, not even for a
 * moment, and a pin never holds a frame discard freed. A range attached to the
 * userfaultfd bridge is discarded with ps_uffd_discard() (pagestate/uffd.h),
 * which also brings the kernel's write protection of the host pages into
 * agreement and reports them.
 * Context: blocking; as ps_space_map() (the notifier callbacks and the
 * free_frame hooks run under the writer mutex).
 * Ordering: the invalidation brackets the zaps (see notifier.h); per page,
 * the freeze is an acquire RMW on the page word, ordered against every pin
 * and reference taken on it, and the unfreeze that frees the frame is a
 * release after the zap (S10 in lib/space-discard.c).
 * Progress: blocking (the writer mutex, S1; the invalidation's callbacks).
 * Per page lock-free: it looks again only when the frame's word changed.
 * Return: 0; -EINVAL (range, or @skipped NULL with @max_skipped);
 * *@nskipped is not written on error.
 */
int ps_space_discard(struct ps_space *space, uint64_t start, uint64_t len,
		     struct ps_discard_skip *skipped, uint64_t max_skipped,
		     uint64_t *nskipped);

/* --- CPU access ----------------------------------------------------------- */

/**
 * ps_space_fault() - a CPU access to @addr through the space's mapping.
 * @space: the space.
 * @addr: the page (aligned, inside the space).
 * @access: PS_ACCESS_READ or PS_ACCESS_WRITE (pgtable.h), optionally
 *	PS_ACCESS_RESOLVE_WP.
 *
 * pgtable.h's fault, plus: a missing page goes to the populate hook and is
 * retried once; a write that makes an entry writable first marks its frame
 * dirty (the dirty hook runs on a clean-to-dirty transition), then makes
 * the entry writable, both holding the frame (a reference and its LOCKED
 * bit) and for the frame the entry maps under it (S3), and then logs the
 * address (S11: after the entry is writable, so that no harvest takes the
 * mark before). A write the page table refuses (PS_FAULT_WP,
 * PS_FAULT_BAD_ACCESS) marks nothing.
 * Context: any thread; the populate hook runs in it with no library lock
 * held, the dirty hook under the frame's LOCKED bit (S7), and the
 * free_frame hook with no library lock held if the frame was unmapped
 * while the fault held it (its release was the last reference).
 * Ordering: the page table's CAS (acquire and release); DIRTY (an acq_rel
 * RMW) is set before the CAS that makes the entry writable (S3), and the
 * log's bit (a release RMW) after it (S11).
 * Progress: lock-free for reads and for writes to a writable or non-present
 * entry; a write to a present, non-writable entry takes the frame's LOCKED
 * bit (spin, then yield: blocking), and waits (yields) while the frame is
 * frozen (a conversion, or a map that claimed it and has not finished: no mark
 * and no hook before the frame is LIVE). The populate hook is the caller's.
 * Return: as ps_pgtable_fault(): PS_FAULT_OK, PS_FAULT_MISSING (no hook, or
 * the hook failed or left it missing), PS_FAULT_WP, ...; PS_FAULT_INVALID
 * also for an unaligned or out-of-space @addr, and for a write whose frame
 * is at the reference limit (PS_PAGE_REFS_MAX: the fault cannot hold it;
 * nothing changed).
 */
enum ps_fault ps_space_fault(struct ps_space *space, uint64_t addr,
			     unsigned int access);

/* --- the secondary-map helper (seed 003) ---------------------------------- */

/**
 * struct ps_secondary_ops - the caller's secondary mapping.
 * @lock: take the lock that the subscription's invalidate callback takes.
 * @unlock: drop it.
 * @install: install the mapping of @addr to @frame (writable if @write),
 *	called under the lock. Return 0, or a negative errno the helper
 *	returns (the mapping is not considered installed).
 */
struct ps_secondary_ops {
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx);
	int (*install)(void *ctx, uint64_t addr, uint64_t frame, bool write);
};

/**
 * ps_space_map_secondary() - run the seed-003 loop for one page.
 * @space: the space.
 * @sub: the caller's subscription covering @addr (inserted in
 *	ps_space_notifier()).
 * @addr: the page.
 * @write: the secondary mapping will be writable.
 * @ops: the caller's lock, unlock and install (all three required).
 * @ctx: handed to @ops' callbacks.
 *
 * Loop: read_begin on @sub; look up and reference the frame (populate hook
 * if missing); take the caller's lock; if an invalidation raced, unlock,
 * drop the reference and start again; for a write, mark the frame dirty
 * (dirty hook on a clean-to-dirty transition, address logged) before
 * installing; install; unlock; drop the lookup reference. The secondary mapping
 * keeps no reference: the notifier tears it down before the frame can change.
 *
 * The dirty hook runs once per clean-to-dirty transition however many
 * mappers and invalidations race, never for a read mapping or a retried
 * attempt. A write to a page write-protected in a sync range fails with -EAGAIN
 * (resolve it first); in an async range the write is recorded in the dirty log
 * and the entry stays protected, so CPU writes are still seen.
 * Context: blocking (the caller's lock; read_begin may wait for an
 * overlapping invalidation). Do not hold @ops' lock when calling.
 * Ordering: the per-subscription check of notifier.h (read_begin's acquire;
 * read_retry under @ops' lock, which orders it against the callback's
 * ps_interval_set_seq()); for a write, DIRTY and the log entry are set
 * before install (S5).
 * Progress: blocking (as above); it loops again only after populating the
 * page, or when an invalidation or a change of the frame raced with it (S8).
 * Return: 0; -EINVAL; -EFAULT; -EAGAIN; -EHWPOISON; -EPERM (private frame);
 * -EOVERFLOW (reference limit); a populate hook's or install's error.
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
 * ps_space_mark_dirty() - the frame at @addr was written (by software or a
 * device the space cannot see): mark it dirty and log @addr.
 * @space: the space.
 * @addr: the page (aligned, inside the space).
 *
 * The frame mapped at @addr is held while it is marked (a reference, then
 * the entry read again: a frame unmapped meanwhile is let go and the page
 * looked at again), so the dirty hook never runs for a frame already freed
 * or handed to another address (S5 in lib/space-dirty.c). The address is
 * logged after the mark.
 * Context: any thread not holding the frame's LOCKED bit (not from a dirty hook
 * of that frame). The dirty hook runs in it with the frame's LOCKED bit held,
 * as a write fault's does (so no write-back cleans the frame before the hook
 * has run); the free_frame hook may run in it with no lock held (if the frame
 * was unmapped while this call held it, its release is the last reference).
 * Progress: blocking (the frame's LOCKED bit, which faults and write-backs
 * hold briefly); it looks again only when the entry or the frame changed,
 * and waits (yields) while the frame is frozen (a conversion, a cache-mode
 * change, a discard, a map that claimed it and has not finished).
 * Ordering: release (the caller's write happens before the harvest or
 * write-back that reports it).
 * Return: one of enum ps_space_mark.
 */
enum ps_space_mark ps_space_mark_dirty(struct ps_space *space, uint64_t addr);

/* Harvest flags. */
#define PS_HARVEST_REARM 0x1u /* re-arm what is reported (see below) */

/**
 * ps_space_harvest() - return the dirty pages of [@start, @start + @len)
 * and clear them, atomically per page: a page dirtied concurrently is either
 * in this harvest or stays dirty for the next, never lost.
 * @space: the space.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: 0 or PS_HARVEST_REARM.
 * @addrs: receives page addresses, ascending.
 * @max: room in @addrs (at least 1).
 * @count: receives how many were written.
 * @resume: receives where to continue (@start + @len when complete).
 *
 * Reported: every address in the dirty log (write faults, software marks,
 * the helper's writes, write pins), and a page pinned for write always,
 * even when its mark is old (it stays logged until it is unpinned).
 *
 * PS_HARVEST_REARM: the next write to every page reported is seen. First
 * the written entries of ranges registered for async write protection are
 * collected with the page table's get-and-rearm scan (re-protected in the same
 * step, per page). Then, after their marks are taken, the other pages reported
 * are re-armed: in a range registered sync, write-protected (uffd-wp, as
 * ps_pgtable_protect(): the next write faults with PS_FAULT_WP to the caller's
 * handler); in an unregistered range, made read-only (WRITE cleared, MAYWRITE
 * kept, soft-dirty style: the next write faults and is logged again). Last, the
 * secondary mappings of every page reported are invalidated (event SOFT_DIRTY;
 * it is also the TLB flush of the entries re-armed), so the next write through
 * them is marked again. Pages beyond @max are neither reported nor re-armed:
 * they stay logged for the next harvest. A page put back with
 * ps_space_redirty() stays re-armed, and is reported again by the next harvest.
 *
 * REARM is the safe order, in one call: take the marks, then re-arm.
 * Without it, a caller that re-arms itself must harvest first, then
 * protect (or mprotect) what was reported; protect-then-harvest loses a
 * write: a write fault between the two resolves the fresh protection
 * (PS_ACCESS_RESOLVE_WP, or the entry is simply writable again), the harvest
 * then takes its mark and reports the page, and nothing re-arms it after that,
 * so the entry stays writable and the next write is never seen.
 * Harvest-then-protect loses nothing: a write whose fault logs after the take
 * is reported by the next harvest, one whose fault logged before it is in this
 * one, and the protect after it ends the path (S11 in lib/space-dirty.c). Copy
 * the reported pages after the harvest (and the caller's re-arm) returns.
 *
 * Cost: the number of dirty pages plus a small term per 128 MiB of range (the
 * log is a three-level bitmap), plus, with REARM, the page table's scan of
 * registered ranges, a registration lookup per page reported, and a protect per
 * run of sync pages or a compare-and-swap per unregistered writable page.
 * Context: any thread. With REARM it invalidates and takes the page table's
 * writer mutex: not from a notifier callback, nor holding a lock that a
 * callback takes, nor inside a read-side section.
 * Ordering: the dirty log's acquire (S6): what a marker wrote before its mark
 * happens before the harvest that reports it; with REARM, the page table's
 * get-and-rearm guarantee (G7 in lib/pgtable-scan.c), and each re-arm is a
 * seq_cst change of the entry after the take of its mark (S11).
 * Progress: lock-free without REARM; blocking with it.
 * Return: 0; -EINVAL (range, flags, @addrs or @count NULL, @max 0); with
 * REARM, the page-table scan's error (-ENOMEM; -ENOENT if the range is
 * unregistered meanwhile): nothing is harvested, and pages already
 * re-armed wait in the log for the next harvest.
 */
int ps_space_harvest(struct ps_space *space, uint64_t start, uint64_t len,
		     unsigned int flags, uint64_t *addrs, uint64_t max,
		     uint64_t *count, uint64_t *resume);

/**
 * ps_space_redirty() - put harvested pages back (a transfer failed). Marks
 * made meanwhile are kept (it only adds).
 * @space: the space.
 * @addrs: page addresses, as ps_space_harvest() returned them.
 * @n: how many.
 *
 * Context: any thread. Ordering: release (the dirty log's set, S6).
 * Progress: wait-free (one bitmap set per address).
 * Return: 0; -EINVAL (an address out of range or unaligned: the addresses
 * before it were put back).
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
 * @addr: the page being written back.
 * @frame: its frame.
 * @pinned: the frame is pinned: a device may be writing it right now. Take a
 *	copy at one instant (a bounce buffer) and write the copy.
 *
 * Runs with no library lock held, the frame under write-back (its
 * WRITEBACK flag set, page.h) and held by a reference of write-back's own.
 * Returning means the write is complete: the next write-back of the frame
 * may start, and its copy must land after this one. It must not start an
 * INTEGRITY write-back of its own frame (in its own thread that write-back
 * fails with -EDEADLK for the page; in another thread that it waits for,
 * the two wait for each other for ever).
 * Return: 0, or a negative errno: the frame is dirtied again and
 * ps_space_writeback() reports the first error.
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
				  * -EOVERFLOW / -EDEADLK pages */
	uint64_t skipped_writeback; /* dirty frames skipped (CLEAN): another
				     * write-back of them was in flight */
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
 * Visits the pages of the range in the write-back set (written, pinned, or
 * mapped to a pinned or dirty frame: S9 in lib/space-writeback.c). The frame
 * mapped at a page is held with a reference of write-back's own, then LOCKED,
 * then the entry is read again (a frame unmapped meanwhile is let go and the
 * page looked at again); the reference is dropped after @fn returns, so an
 * unmap during @fn does not free the frame under it (the free_frame hook may
 * then run in this thread, after @fn), and a discard during @fn leaves the page
 * (busy). An unpinned frame: under its LOCKED bit, invalidate the page's
 * secondary mappings (event PROTECTION), write-protect its entry (stable
 * pages), clear DIRTY, end the invalidation (so a secondary mapping for write
 * made after it dirties the frame again), set WRITEBACK; then call @fn; then
 * end WRITEBACK. Consecutive pages of the set are taken together (up to 64):
 * one invalidation covers a run of them, under their frames' LOCKED bits, and
 * every LOCKED bit is dropped before the first @fn of the run is called. A
 * write arriving meanwhile faults, dirties the frame again and is never lost. A
 * pinned frame: CLEAN skips it (it stays dirty); INTEGRITY clears DIRTY, calls
 * @fn with @pinned true (bounce), and dirties it again if it is still pinned
 * for write. A pinned page stays in the set while its pins last, dirty or not,
 * and so does a page whose frame was unpinned dirty during its bounce: a later
 * write-back writes what the unpin dirtied.
 *
 * One write-back of a frame at a time (Linux's PG_writeback): @fn never runs
 * for a frame while another write-back's @fn runs for it, so the copies land
 * in the order they were taken and a clean frame's backing copy is its newest.
 * A frame found under another write-back is skipped by CLEAN (it stays dirty
 * and in the set; stats: skipped_writeback) and waited for by INTEGRITY
 * (folio_wait_writeback()), which then looks at it again: dirty, it writes it;
 * clean, the write it waited for was the newest. A page stays in the set while
 * its frame is under write-back, so an INTEGRITY write-back that begins while
 * another's @fn runs visits it and waits (unless a third write-back has the
 * page in hand at that instant: that one then waits for it, or skips it).
 * Context: blocking (LOCKED bits; the callback may block, and runs with no
 * library lock held). It invalidates: not from a notifier callback, nor holding
 * a lock that a notifier callback takes. INTEGRITY waits for other write-backs'
 * callbacks: not from a callback whose frame it would visit (see
 * ps_writeback_fn), nor from a thread such a callback waits for.
 * Ordering: S3 and S4: under the frame's LOCKED bit the entry is
 * write-protected, then DIRTY is cleared by an acq_rel RMW whose old word
 * orders every pin before or after it. WRITEBACK is set under that bit and
 * cleared with release after @fn: an INTEGRITY write-back that waited for it
 * sees what the other write-back did (S12 in lib/space-writeback.c).
 * Progress: blocking (LOCKED bits: spin, then yield; the invalidations);
 * INTEGRITY also blocks on other write-backs' callbacks of the frames it
 * visits, for as long as each takes.
 * Return: 0; -EINVAL (range, @mode, @fn NULL); or the first callback error
 * (every frame is still visited); -EOVERFLOW if a frame was at the
 * reference limit (it is left dirty, for the next write-back); -EDEADLK if
 * a frame it visited is under write-back by a callback of this very thread
 * (it is left as it is, for the next write-back).
 */
int ps_space_writeback(struct ps_space *space, uint64_t start, uint64_t len,
		       enum ps_writeback_mode mode, ps_writeback_fn fn,
		       void *ctx, struct ps_writeback_stats *stats);

PS_END_DECLS

#endif /* PAGESTATE_SPACE_H */
