/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pgtable.h - a lock-free radix page table of ps_pte_t entries
 * (pagestate/pte.h) over a 48-bit address space of 4 KiB pages, with
 * userfaultfd-style write protection: registration, protect, faults, zaps
 * that keep protection where Linux does, and PAGEMAP_SCAN-style scans that
 * can harvest written pages and re-arm them atomically.
 *
 * The design, the concurrency protocol, the costs and the reasons for each
 * difference from Linux are in docs/pgtable.md.
 *
 * ---------------------------------------------------------------------------
 * The table
 * ---------------------------------------------------------------------------
 *
 * A struct ps_pgtable maps each page of [0, PS_PGTABLE_ADDR_END) to an
 * entry, none until something is stored. Levels are allocated on the first
 * store that needs them, so empty ranges cost nothing, and freed only by
 * ps_pgtable_trim() and ps_pgtable_destroy() (ps_pgtable_stats() says what
 * is held). Every entry changes by one compare-and-swap, so operations on
 * one page are linearised and none is lost; an operation on a range is not
 * atomic: it changes the pages one by one, in address order.
 *
 * ---------------------------------------------------------------------------
 * Readers and RCU
 * ---------------------------------------------------------------------------
 *
 * Every function protects its own walk, with a read-side section of
 * liburcu's urcu-bp flavour (which needs no thread registration) or the
 * table's writer mutex, except the two fast paths, ps_pgtable_lookup() and
 * ps_pgtable_fault_locked(), which run in the caller's section and so save
 * a section per call in a batch:
 *
 *	ps_pgtable_read_lock();
 *	for (...)
 *		pte = ps_pgtable_lookup(t, addr);
 *	ps_pgtable_read_unlock();
 *
 * Sections nest, and a caller's own urcu-bp section serves as well. Inside one,
 * call only the functions that never block: lookup, get, get_range,
 * registration, stats, set, cmpxchg, swap_out, swap_in, zap, the faults, map
 * without PS_PTE_UFFD_WP, map_prepare, copy and move without PS_KEEP_WP, and
 * report-only scans. The others take the table's writer mutex, which
 * ps_pgtable_unregister() holds while it waits for readers: one of them called
 * inside a section can deadlock.
 *
 * ---------------------------------------------------------------------------
 * Concurrency
 * ---------------------------------------------------------------------------
 *
 * Any function may run concurrently with any other, faults during protect,
 * zap, scan, register and unregister included, except these pairs, which
 * the caller must keep apart (as Linux's mmap lock orders them):
 *   - ps_pgtable_trim() and any store into its range (set, cmpxchg, map,
 *     swap_out, swap_in, or a copy or move into it); zaps and faults are
 *     fine;
 *   - ps_pgtable_map() and a set, cmpxchg or map of the same pages;
 *   - ps_pgtable_copy() or ps_pgtable_move() and a store into its target;
 *   - ps_pgtable_destroy() and everything.
 * A concurrent fault sees, during a protect, each page protected or not yet;
 * during a zap, present or already gone; during a WP_MATCHING scan, written
 * or re-armed; during an unregister, the old registration or the new one.
 *
 * ---------------------------------------------------------------------------
 * Write protection (Linux userfaultfd semantics)
 * ---------------------------------------------------------------------------
 *
 * ps_pgtable_register() marks a range for write protection with
 *   - a mode: sync (a write to a protected page returns PS_FAULT_WP; the
 *     caller resolves it, e.g. with PS_ACCESS_RESOLVE_WP or unprotect) or
 *     PS_WP_ASYNC (the write clears the bit in place with one CAS and the page
 *     counts as written: PS_CAT_WRITTEN in the next scan);
 *   - a backing: anonymous (contents die with the mapping) or PS_WP_SHARED
 *     (file/shmem-like: contents survive a zap, so protection must too);
 *   - PS_WP_UNPOPULATED: protect none entries of anonymous ranges as well.
 *     PS_WP_ASYNC implies it, as UFFD_FEATURE_WP_ASYNC implies
 *     WP_UNPOPULATED in Linux.
 * A page "uses markers" if its range is shared or has PS_WP_UNPOPULATED.
 *
 * Transition table (rows: operation; columns: the entry's form). "wp" is
 * bit 2 of the entry, the same bit in every form. Markers: U = UFFD_WP,
 * P = POISONED, G = GUARD; W = WRITTEN, the library's own: a none page that
 * counts as written, which stands alone (pagestate/pte.h). "Written" is a
 * present or swap entry without wp.
 *
 *   op              present         swap         none / W       marker U/P/G
 *   --------------  --------------  -----------  -------------  -------------
 *   protect         +wp, -WRITE     +wp          U if markers,  +U if U held;
 *                                                else none      P/G alone
 *   unprotect,      -wp (stays      -wp          -              -U (none if
 *   unregister      read-only)                                  U only)
 *   zap, async      written: W;     written: W;  -              as below for
 *                   else as below   else below                  its backing
 *   zap, shared     none, or U if   none, or U   -              U kept; G
 *                   wp                                          kept; P gone
 *   zap, anon or    none            none         -              G kept; U, P
 *   unregistered                                                gone
 *   zap UNMAP flag  none            none         none           none
 *   swap out        swap, wp kept   -            -              -
 *   swap in         -               present, wp  -              -
 *                                   kept
 *   copy, move      same; wp only   same; wp     same           P, G always;
 *                   with KEEP_WP    only with                   U only with
 *                                   KEEP_WP                     KEEP_WP
 *   map             -EEXIST         -EEXIST      present        present with
 *                                                               wp if U only,
 *                                                               else -EEXIST
 *
 * So a page written since it was last protected and then zapped in an async
 * range (a discard, MADV_DONTNEED) is reported by the next scan for written
 * pages, once: a protect or a WP_MATCHING scan re-arms the W as a U. A page
 * protected when it is zapped is not reported. W is written state, not
 * protection: only a map (which replaces it) and an UNMAP zap remove it.
 *
 * Faults (ps_pgtable_fault()), in priority order: POISONED, then GUARD, then
 * UFFD_WP (as Linux's handle_pte_marker()):
 *
 *   entry            read                       write
 *   ---------------  -------------------------  ----------------------------
 *   none, swap, W    MISSING                    MISSING
 *   marker P / G     POISONED / GUARD           POISONED / GUARD
 *   marker U         MISSING, stays protected   MISSING, stays protected
 *                    (map keeps wp)             (map keeps wp, then the
 *                                               retried write faults on it)
 *   present          OK (+ACCESSED)             !MAYWRITE: BAD_ACCESS;
 *                                               wp + sync: WP (no change);
 *                                               wp + async: OK, one CAS
 *                                               clears wp, sets W, D, A;
 *                                               no wp: OK (+W, D, A)
 *
 * A UFFD_WP bit in a range that is no longer registered is stale and never
 * makes a fault return PS_FAULT_WP: a fault clears a stale marker and
 * proceeds as missing, and a write clears a stale present bit in the same
 * CAS that resolves it.
 *
 * Where this differs from Linux (docs/pgtable.md, "Where the table differs
 * from Linux", says why):
 *   - In an async range a zap of a written page leaves a W marker, which
 *     scans report as WRITTEN, and a none entry has no category; the live
 *     kernel (6.18) reports every none PTE of an async range as written, a
 *     page never protected or protected when it was zapped included.
 *   - Unprotect never makes an entry writable; the next write fault does,
 *     if MAYWRITE.
 *   - Protect, unprotect and WP_MATCHING scans on a range that is not fully
 *     registered fail with -ENOENT and change nothing, and WP_MATCHING
 *     re-protects sync ranges (a WP_MATCHING PAGEMAP_SCAN skips both).
 *   - Copy (fork) does not write-protect the source for copy-on-write.
 *   - A read fault on a UFFD_WP marker is MISSING, as a write fault is:
 *     there is no zero page to map (Linux maps it, still protected).
 *   - No soft-dirty or zero page: PS_CAT_SOFT_DIRTY and PS_CAT_PFNZERO are
 *     accepted in masks and never reported.
 *
 * ---------------------------------------------------------------------------
 * Huge leaves (Linux's THP and hugetlb mappings)
 * ---------------------------------------------------------------------------
 *
 * A slot of the level whose slots span 2 MiB, or of the one whose slots
 * span 1 GiB, may hold a huge leaf instead of a lower level: a pte.h entry
 * in the present or marker form, canonical for its order
 * (ps_pte_huge_valid()), standing for every page of its extent. It is made
 * by ps_pgtable_map_huge() (or ps_pgtable_collapse()); every reader returns
 * the 4 KiB view of a page inside it (ps_pte_huge_subpage(): the frame plus
 * the page's index, the same bits), and ps_pgtable_get_level() also says
 * the order of the leaf it came from.
 *
 * An operation on a whole extent changes the huge leaf by one CAS (protect,
 * unprotect, zap, a fault's ACCESSED, DIRTY and WRITE, a WP_MATCHING scan).
 * An operation that would change part of an extent splits it first: a
 * child level holding the huge leaf's bits at every offset (a 1 GiB leaf
 * becomes 512 2 MiB leaves, which split again on demand) is built and
 * published by one CAS from the huge leaf it copied, so a reader sees the
 * huge leaf or the complete child, never a mixture, and a bit that changed
 * meanwhile fails the CAS and is copied by the next try. Partial
 * operations that split: protect and unprotect (-EINVAL instead in a range
 * registered PS_WP_HUGE_WHOLE), zap, swap_out, set and cmpxchg of a page,
 * copy and move of part, an async write fault in a range registered
 * PS_WP_HUGE_SPLIT (or with neither flag), a WP_MATCHING scan of part in such a
 * range; ps_pgtable_split() splits on request. Transitions per form are those
 * of the table above, applied to the huge leaf as to each page it stands for.
 *
 * Faults on a huge leaf: a read sets ACCESSED on the whole leaf; a
 * permitted write sets WRITE, DIRTY and ACCESSED on the whole leaf, except
 * a write that resolves uffd-wp (async, or PS_ACCESS_RESOLVE_WP) in a range
 * registered PS_WP_HUGE_SPLIT or with neither flag, which splits and
 * resolves the 4 KiB page only (Linux's async uffd-wp on THP); with
 * PS_WP_HUGE_WHOLE it resolves the whole leaf (Linux's hugetlb). Scans
 * report PS_CAT_HUGE for every page of a huge leaf.
 *
 * ps_pgtable_lookup_leaf() returns NULL for a page under a huge leaf, as
 * for a page without a leaf: its caller then uses the out-of-line
 * functions (ps_pgtable_get(), ps_pgtable_cmpxchg(), the faults), which
 * know the huge leaf. A collapse (ps_pgtable_collapse()) never discards a
 * change made through a cursor: it freezes the child, waits for every
 * read-side section that may hold a cursor into it, and only then
 * validates it (docs/pgtable.md, "Huge leaves").
 *
 * ---------------------------------------------------------------------------
 * Scans (ps_pgtable_scan(), Linux's PAGEMAP_SCAN)
 * ---------------------------------------------------------------------------
 *
 * The arguments, their checks and fix-ups, matching, merging, the budget
 * and walk_end are the kernel's (struct ps_pgtable_scan gives each field's
 * meaning): a page matches if c = categories ^ category_inverted holds all
 * of category_mask and, if it is set, any of category_anyof_mask; adjacent
 * matching pages with equal c & return_mask make one region.
 *
 * Categories keep the kernel's values and meanings (PAGE_IS_*), none
 * entries aside: a none entry has no category (only WPALLOWED from its
 * range); WRITTEN is ps_pte_written(), so a UFFD_WP marker is not written
 * while a GUARD or POISONED marker is; SWAPPED is every non-present,
 * non-none entry (markers included, as in the kernel) but the W marker,
 * which is reported as the kernel's none PTE it stands for: WRITTEN only.
 * PS_CAT_WP, PS_CAT_MARKER (W included) and PS_CAT_POISONED, above the
 * kernel's bits, tell the non-present forms apart.
 *
 * PS_SCAN_WP_MATCHING re-protects every page it reports (get-and-rearm),
 * and a write racing the scan is never lost: it is reported by this scan or
 * by the next one. ps_pgtable_harvest() is that scan for PS_CAT_WRITTEN run
 * to the end of a range, each run of written pages handed to a callback.
 *
 * ---------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------
 *
 * Each function lists its own: a negative errno, and nothing changed unless
 * it says otherwise. -EINVAL is always a bad argument (an unaligned address
 * or length, a zero length, a range past 2^48 or overflowing, unknown flags,
 * an entry that is not ps_pte_valid()); -ENOENT a page or range without the
 * registration the call needs. -ENOMEM from a range operation means a level
 * could not be allocated, and a prefix of the range may be done (its end is
 * reported nowhere): repeat the call, every transition is idempotent.
 * ps_pgtable_map() is the exception: it allocates every level before it
 * installs anything, so its -ENOMEM installs nothing.
 */
#ifndef PAGESTATE_PGTABLE_H
#define PAGESTATE_PGTABLE_H

#include <pagestate/compiler.h>
#include <pagestate/pte.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

PS_BEGIN_DECLS

#define PS_PGTABLE_PAGE_SHIFT 12
#define PS_PGTABLE_PAGE_SIZE (UINT64_C(1) << PS_PGTABLE_PAGE_SHIFT)
#define PS_PGTABLE_ADDR_BITS 48
/* First address past the space: valid pages are [0, PS_PGTABLE_ADDR_END). */
#define PS_PGTABLE_ADDR_END (UINT64_C(1) << PS_PGTABLE_ADDR_BITS)

/* Registration flags (ps_pgtable_register()). */
#define PS_WP_ASYNC 0x1u       /* writes resolve in place (else sync) */
#define PS_WP_SHARED 0x2u      /* file/shmem-like backing (else anonymous) */
#define PS_WP_UNPOPULATED 0x4u /* protect none entries of anonymous ranges */
/*
 * Granularity of write protection on huge leaves (at most one; neither
 * behaves as PS_WP_HUGE_SPLIT): SPLIT tracks 4 KiB pages (THP-like: an
 * async write to a protected huge leaf splits it and resolves its page),
 * WHOLE tracks the huge leaf whole (hugetlb-like: a protect, unprotect or
 * WP_MATCHING scan that covers part of one is -EINVAL).
 */
#define PS_WP_HUGE_SPLIT 0x8u
#define PS_WP_HUGE_WHOLE 0x10u
#define PS_WP_ALL                                                            \
	(PS_WP_ASYNC | PS_WP_SHARED | PS_WP_UNPOPULATED | PS_WP_HUGE_SPLIT | \
	 PS_WP_HUGE_WHOLE)

/*
 * Orders of the leaves a page may sit under (ps_pgtable_get_level(),
 * ps_pgtable_map_huge()): 0 for a 4 KiB entry, else pte.h's
 * PS_PTE_ORDER_2M or PS_PTE_ORDER_1G; the extent is 2^order pages.
 */
#define PS_PGTABLE_ORDER_4K 0u
#define PS_PGTABLE_ORDER_2M PS_PTE_ORDER_2M
#define PS_PGTABLE_ORDER_1G PS_PTE_ORDER_1G

/* Zap flags (ps_pgtable_zap()). */
#define PS_ZAP_UNMAP 0x1u /* unmap/truncate: drop every marker, GUARD too */
#define PS_ZAP_UNITS 0x2u /* @visit: a huge leaf removed whole, once */

/* Copy/move flags (ps_pgtable_copy(), ps_pgtable_move()). */
#define PS_KEEP_WP 0x1u /* keep uffd-wp state (needs a registered target) */

/* Access bits of a fault (ps_pgtable_fault()). */
#define PS_ACCESS_READ 0x1u
#define PS_ACCESS_WRITE 0x2u
/*
 * With PS_ACCESS_WRITE: resolve a write-protect fault as async mode would,
 * whatever the mode (the handler of a sync fault lets one write through).
 */
#define PS_ACCESS_RESOLVE_WP 0x4u
/*
 * Classify only: the fault returns what it would return for the access,
 * and *pte the entry it read, but changes nothing (no accessed, dirty or
 * writable bit, no stale wp bit or marker cleared). For a caller that must
 * do something before an entry becomes writable (pagestate/space.h marks
 * the frame dirty first), then make exactly that entry writable with
 * ps_pgtable_cmpxchg() and ps_pte_resolve_write().
 */
#define PS_ACCESS_CHECK 0x8u

/**
 * enum ps_fault - what a fault found, and did.
 * @PS_FAULT_OK: the access may proceed (the entry was updated if needed:
 *	ACCESSED, or WRITE/DIRTY/ACCESSED and uffd-wp cleared for a write).
 * @PS_FAULT_MISSING: no page: none, swap, a UFFD_WP marker or a WRITTEN
 *	marker. The caller maps (ps_pgtable_map(), which keeps a UFFD_WP
 *	marker's protection) or swaps in, then retries.
 * @PS_FAULT_WP: a write to a protected page in a sync range. Nothing
 *	changed; the caller resolves it and retries.
 * @PS_FAULT_POISONED: a POISONED marker (Linux: VM_FAULT_HWPOISON).
 * @PS_FAULT_GUARD: a GUARD marker (Linux: SIGSEGV).
 * @PS_FAULT_BAD_ACCESS: a write to a page without MAYWRITE.
 * @PS_FAULT_INVALID: bad arguments (unaligned or out-of-space address,
 *	unknown access bits, no READ or WRITE). Nothing changed.
 */
enum ps_fault {
	PS_FAULT_OK = 0,
	PS_FAULT_MISSING,
	PS_FAULT_WP,
	PS_FAULT_POISONED,
	PS_FAULT_GUARD,
	PS_FAULT_BAD_ACCESS,
	PS_FAULT_INVALID,
};

/*
 * Scan categories. The first nine have the kernel's PAGE_IS_* values and
 * meanings (include/uapi/linux/fs.h); the last three are extensions.
 */
#define PS_CAT_WPALLOWED (UINT64_C(1) << 0) /* registered async */
#define PS_CAT_WRITTEN (UINT64_C(1) << 1)   /* not none, not uffd-wp */
#define PS_CAT_FILE (UINT64_C(1) << 2)	    /* present, shared backing */
#define PS_CAT_PRESENT (UINT64_C(1) << 3)
#define PS_CAT_SWAPPED (UINT64_C(1) << 4)    /* swap entry or marker, not W */
#define PS_CAT_PFNZERO (UINT64_C(1) << 5)    /* never reported */
#define PS_CAT_HUGE (UINT64_C(1) << 6)	     /* under a huge leaf */
#define PS_CAT_SOFT_DIRTY (UINT64_C(1) << 7) /* never reported */
#define PS_CAT_GUARD (UINT64_C(1) << 8)	     /* GUARD marker */
#define PS_CAT_WP (UINT64_C(1) << 16)	     /* uffd-wp, any form */
#define PS_CAT_MARKER (UINT64_C(1) << 17)    /* a marker, W included */
#define PS_CAT_POISONED (UINT64_C(1) << 18)  /* POISONED marker */
#define PS_CAT_ALL                                                           \
	(PS_CAT_WPALLOWED | PS_CAT_WRITTEN | PS_CAT_FILE | PS_CAT_PRESENT |  \
	 PS_CAT_SWAPPED | PS_CAT_PFNZERO | PS_CAT_HUGE | PS_CAT_SOFT_DIRTY | \
	 PS_CAT_GUARD | PS_CAT_WP | PS_CAT_MARKER | PS_CAT_POISONED)

/* Scan flags: the kernel's PM_SCAN_* values. */
#define PS_SCAN_WP_MATCHING 0x1u   /* re-protect what is reported */
#define PS_SCAN_CHECK_WPASYNC 0x2u /* -EPERM unless all registered async */

/**
 * struct ps_pgtable_region - a run of pages reported with equal categories.
 * @start: the first page of the run.
 * @end: the end of the run (exclusive).
 * @categories: the run's categories, masked with the scan's return_mask.
 */
struct ps_pgtable_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

/**
 * struct ps_pgtable_scan - the arguments of ps_pgtable_scan(), field for
 * field Linux's struct pm_scan_arg (without its size).
 * @start: first page to scan (aligned).
 * @end: end of the scan, exclusive (>= @start); if not page-aligned, it is
 *	rounded up to the next page, as Linux does.
 * @walk_end: out: where the walk stopped; @end rounded up when it
 *	completed. Resume with @start = @walk_end.
 * @flags: PS_SCAN_*.
 * @category_inverted: categories to invert before matching.
 * @category_mask: all of these must be set (after inversion).
 * @category_anyof_mask: if non-zero, at least one of these must be set.
 * @return_mask: the categories reported in each region. Zero: no regions.
 * @max_pages: stop after this many matching pages (0: no limit; without a
 *	vector, none).
 * @vec: the regions found. May be NULL if @vec_len is 0.
 * @vec_len: room in @vec. 0: no vector: nothing is recorded or counted and
 *	the walk completes; with PS_SCAN_WP_MATCHING every page of the range
 *	is write-protected, whatever the masks (as in Linux).
 */
struct ps_pgtable_scan {
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t flags;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
	uint64_t max_pages;
	struct ps_pgtable_region *vec;
	uint64_t vec_len;
};

/**
 * struct ps_pgtable_stats - memory the table holds now.
 * @bytes: bytes held: the table itself, its interior levels and its leaves.
 * @leaves: leaves (512 entries each).
 * @nodes: interior levels, the root excluded.
 */
struct ps_pgtable_stats {
	uint64_t bytes;
	uint64_t leaves;
	uint64_t nodes;
};

/**
 * typedef ps_pgtable_visit_fn - told of each entry an operation changed.
 * @ctx: the caller's context.
 * @addr: the page whose entry changed (in the target table for a copy).
 * @old: the entry before (for a copy: the source entry).
 * @new_pte: the entry after (none, a marker, or the copied entry).
 *
 * Context: runs inside the operation's read-side section, in the calling
 * thread, so it may call only the functions that never block (see
 * "Readers and RCU" in the overview), on this table or another.
 */
typedef void (*ps_pgtable_visit_fn)(void *ctx, uint64_t addr, ps_pte_t old,
				    ps_pte_t new_pte);

/**
 * typedef ps_pgtable_harvest_fn - told of one run of pages that
 * ps_pgtable_harvest() found written and re-protected.
 * @ctx: the caller's context.
 * @start: the first page of the run.
 * @end: the end of the run (exclusive; @start < @end).
 *
 * Context: runs in the thread that called ps_pgtable_harvest(), between two of
 * its batches: outside the table's writer mutex and outside any read-side
 * section of the harvest's own, so it may call any function of this table or
 * another (unless the caller of the harvest is itself inside a read-side
 * section, see "Readers and RCU" in the overview). It cannot refuse a run: the
 * pages are already re-protected, and a run it drops is a write lost.
 */
typedef void (*ps_pgtable_harvest_fn)(void *ctx, uint64_t start, uint64_t end);

/**
 * typedef ps_pgtable_harvest_order_fn - ps_pgtable_harvest_fn with the
 * granularity of the run (ps_pgtable_harvest_order()).
 * @ctx: the caller's context.
 * @start: the first page of the run.
 * @end: the end of the run (exclusive; @start < @end).
 * @order: 0 if the run's pages are tracked 4 KiB at a time; else the order
 *	of the huge leaves the run is made of (PS_PGTABLE_ORDER_2M or _1G):
 *	each was re-protected whole, and the run covers whole leaves.
 *
 * Context: as ps_pgtable_harvest_fn.
 */
typedef void (*ps_pgtable_harvest_order_fn)(void *ctx, uint64_t start,
					    uint64_t end, unsigned int order);

/**
 * enum ps_pgtable_collapse_reason - why ps_pgtable_collapse() refused an
 * extent.
 * @PS_PGTABLE_COLLAPSE_OK: nothing refused.
 * @PS_PGTABLE_COLLAPSE_FORM: a page is of another form than the first page of
 *	its extent (none, swap, another marker set), or at 1 GiB a part is not a
 *	2 MiB huge leaf.
 * @PS_PGTABLE_COLLAPSE_FRAME: the frames are not consecutive from a frame
 *	aligned to the extent.
 * @PS_PGTABLE_COLLAPSE_WP: the page's uffd-wp differs (one part written,
 *	another protected: merging them would lose a write or a protection).
 * @PS_PGTABLE_COLLAPSE_DIRTY: the page's DIRTY differs (per-page dirty state).
 * @PS_PGTABLE_COLLAPSE_BITS: the page's MAYWRITE, cache mode or ENC differs.
 * @PS_PGTABLE_COLLAPSE_RACED: the page changed while the collapse ran (a fault
 *	or another writer won); the extent is left as it was.
 */
enum ps_pgtable_collapse_reason {
	PS_PGTABLE_COLLAPSE_OK = 0,
	PS_PGTABLE_COLLAPSE_FORM,
	PS_PGTABLE_COLLAPSE_FRAME,
	PS_PGTABLE_COLLAPSE_WP,
	PS_PGTABLE_COLLAPSE_DIRTY,
	PS_PGTABLE_COLLAPSE_BITS,
	PS_PGTABLE_COLLAPSE_RACED,
};

/**
 * struct ps_pgtable_collapse_err - where and why a collapse was refused.
 * @addr: the page that differs from the first page of its extent.
 * @reason: what differs.
 */
struct ps_pgtable_collapse_err {
	uint64_t addr;
	enum ps_pgtable_collapse_reason reason;
};

struct ps_pgtable;

/* --- lifetime ------------------------------------------------------------- */

/**
 * ps_pgtable_create() - a new, empty table.
 *
 * Context: any thread.
 * Ordering: none of its own: hand the table to other threads with a
 * release/acquire pair or stronger (a mutex, pthread_create()).
 * Progress: blocking only as aligned_alloc() and pthread_mutex_init() are;
 * it takes no lock of its own.
 * Return: the table, or NULL if out of memory (or if pthread_mutex_init()
 * fails), or NULL with errno ECHILD in a child of a plain fork()
 * (pagestate/fork.h).
 */
struct ps_pgtable *ps_pgtable_create(void);

/**
 * ps_pgtable_destroy() - free the table and everything it holds.
 * @t: the table, or NULL (then nothing happens).
 *
 * Runs every pending deferred free, then frees every level and the table.
 * Entries are dropped without visiting them (zap first to learn the frames).
 * Context: no other thread may use the table; not inside a read-side
 * section (it waits for liburcu's callbacks).
 * Ordering: the caller orders every other thread's last use of @t before
 * the call (joins it, or hands over under a lock); the deferred frees
 * queued before the call (trimmed levels, replaced registration sets) run
 * before it frees the rest.
 * Progress: blocking (urcu-bp's rcu_barrier(): it waits for liburcu's
 * callbacks to run). In a child of fork(), a table inherited from the
 * parent is only forgotten: nothing waits (pagestate/fork.h, rule 2).
 */
void ps_pgtable_destroy(struct ps_pgtable *t);

/**
 * ps_pgtable_stats() - bytes, leaves and interior levels now held.
 * @t: the table.
 * @st: receives the counts.
 *
 * Context: any thread, also inside a read-side section.
 * Ordering: none: relaxed loads of three independent counters, so while levels
 * are being allocated or trimmed they may come from different instants.
 * Progress: wait-free (three loads).
 */
void ps_pgtable_stats(const struct ps_pgtable *t, struct ps_pgtable_stats *st);

/* --- lookups -------------------------------------------------------------- */

/**
 * ps_pgtable_read_lock() - enter a read-side section (urcu-bp; nests).
 *
 * Context: any thread; leave it with ps_pgtable_read_unlock() in the same
 * thread. Inside, call only the functions that never block (see the overview of
 * pagestate/pgtable.h, "Readers and RCU").
 * Ordering: none on the caller's data. Levels and registration sets loaded
 * inside the section stay allocated until it ends: trim and registration
 * changes free them through call_rcu, after a grace period that waits for
 * every section begun before it.
 * Progress: wait-free (a thread-local counter store, no fence with
 * sys_membarrier), except a thread's first section: urcu-bp registers the
 * thread then, under liburcu's registry mutex, and so does the first call of
 * any function of the table that enters a section of its own.
 * Async-signal-safe, with ps_pgtable_read_unlock(), ps_pgtable_lookup(),
 * ps_pgtable_get(), ps_pgtable_get_range() and ps_pgtable_registration(), in a
 * thread already registered (one section before the handler can run) and from a
 * handler on the thread's own stack (docs/fork-signals-threads.md). A thread
 * that exits inside a section does not block grace periods.
 */
void ps_pgtable_read_lock(void);

/**
 * ps_pgtable_read_unlock() - leave the section ps_pgtable_read_lock() entered.
 *
 * Context: the thread that entered the section.
 * Ordering: the section's accesses happen before the free of any level or
 * registration set that a grace period defers past them; nothing else.
 * Progress: wait-free (a thread-local counter store).
 */
void ps_pgtable_read_unlock(void);

/*
 * The table's levels as ps_pgtable_lookup() walks them, compiled into the
 * caller: not API, but their layout is ABI (docs/abi.md). A table starts with
 * its root level; page number p = addr >> PS_PGTABLE_PAGE_SHIFT selects root
 * slot p >> 27, then slot (p >> 18) & 511 of that level, slot (p >> 9) & 511 of
 * the next, which points to the leaf holding entry p & 511. A NULL slot is an
 * absent subtree (every entry none). A slot of the second or third level with
 * bit 0 set holds a huge leaf (a pte.h entry of order 18 or 9, the rest of its
 * bits as in pte.h); one whose bits 1-0 are 10 holds a level being collapsed,
 * at the address with those bits cleared (readers descend into it). A level's
 * address is a multiple of 64. Such slots exist only below a root slot with bit
 * 63 set (the level's address is the value with it cleared). Each slot and
 * entry is written once per change with a release store or compare-and-swap.
 */
#define PS__PGTABLE_LEVEL_BITS 9
#define PS__PGTABLE_FANOUT (1u << PS__PGTABLE_LEVEL_BITS)

struct ps__pgtable_level {
	PS_ATOMIC(void *) slot[PS__PGTABLE_FANOUT];
};

struct ps__pgtable_leaf {
	PS_ATOMIC(ps_pte_t) e[PS__PGTABLE_FANOUT];
};

PS_STATIC_ASSERT(sizeof(void *) == sizeof(ps_pte_t),
		 "a level's slot holds a pointer or a huge leaf");

/* The slot of @n at @slot: acquire, pairs with the release that made it. */
static inline uintptr_t ps__pgtable_child(const struct ps__pgtable_level *n,
					  uint64_t slot)
{
	return (uintptr_t)
		atomic_load_explicit(&n->slot[slot & (PS__PGTABLE_FANOUT - 1)],
				     memory_order_acquire);
}

/*
 * Is slot value @v anything but a level (none, a huge leaf, a level being
 * collapsed)? One test: its lowest set bit is below bit 2, or it is 0.
 */
static inline bool ps__pgtable_not_level(uintptr_t v)
{
	return (v & (0 - v)) < 4;
}

/*
 * A root slot with bit 63 set leads to a level (the address with the bit
 * cleared) under which huge leaves or frozen levels may exist. The bit is
 * set once (it goes only with the level) and a grace period before the
 * first such slot under it is published, so a walk in a read-side section
 * that read the root slot without it meets none: walks take the plain path
 * (the sign test replaces the NULL test: no instruction added) or the one
 * that knows huge leaves.
 */
#define PS__PGTABLE_ROOT_HUGE ((uintptr_t)1 << 63)
/*
 * The rare slots on ps_pgtable_lookup()'s walk: none, a huge leaf of
 * @order (the view of page @p), or a level being collapsed (descend: *@v
 * becomes its address and the result is ~0, never a valid entry).
 */
static inline ps_pte_t ps__pgtable_slot_view(uintptr_t *v, uint64_t p,
					     unsigned int order)
{
	if (*v & 1)
		return ps_pte_huge_subpage((ps_pte_t)*v, order, p);
	if (!*v)
		return PS_PTE_NONE;
	*v &= ~(uintptr_t)3;
	return ~(ps_pte_t)0;
}

/*
 * ps_pgtable_lookup() below root slot value @root, which has
 * PS__PGTABLE_ROOT_HUGE: huge leaves and frozen levels may be met.
 */
static inline ps_pte_t ps__pgtable_lookup_huge(uintptr_t root, uint64_t addr)
{
	const uint64_t p = addr >> PS_PGTABLE_PAGE_SHIFT;
	const unsigned int b = PS__PGTABLE_LEVEL_BITS;
	const struct ps__pgtable_level *n =
		(const struct ps__pgtable_level *)(root &
						   ~PS__PGTABLE_ROOT_HUGE);
	const struct ps__pgtable_leaf *l;
	uintptr_t v;
	ps_pte_t view;

	v = ps__pgtable_child(n, p >> 2 * b);
	if (ps__pgtable_not_level(v)) {
		view = ps__pgtable_slot_view(&v, p, PS_PTE_ORDER_1G);
		if (view != ~(ps_pte_t)0)
			return view;
	}
	n = (const struct ps__pgtable_level *)v;
	v = ps__pgtable_child(n, p >> b);
	if (ps__pgtable_not_level(v)) {
		view = ps__pgtable_slot_view(&v, p, PS_PTE_ORDER_2M);
		if (view != ~(ps_pte_t)0)
			return view;
	}
	l = (const struct ps__pgtable_leaf *)v;
	/* Acquire: pairs with the release of the entry's compare-and-swap. */
	return atomic_load_explicit(&l->e[p & (PS__PGTABLE_FANOUT - 1)],
				    memory_order_acquire);
}

/**
 * ps_pgtable_lookup() - the entry of the page holding @addr, fast path.
 * @t: the table.
 * @addr: any address; the entry is that of the page holding it.
 *
 * Inline: four dependent loads compiled into the caller, the cost of a bare
 * walk of the levels (which makes the layout above ABI). Under a root slot
 * that may hold huge leaves (PS__PGTABLE_ROOT_HUGE), a page under one gets
 * its 4 KiB view (ps_pte_huge_subpage()).
 * Context: inside a read-side section (ps_pgtable_read_lock() or the
 * caller's own urcu-bp section).
 * Ordering: acquire; pairs with the release of the compare-and-swap that
 * installed the entry, so a caller that reads a frame also sees what the
 * mapper wrote before mapping it.
 * Progress: wait-free (four loads).
 * Return: the entry; PS_PTE_NONE for an address past the space.
 */
static inline ps_pte_t ps_pgtable_lookup(const struct ps_pgtable *t,
					 uint64_t addr)
{
	const uint64_t p = addr >> PS_PGTABLE_PAGE_SHIFT;
	const unsigned int b = PS__PGTABLE_LEVEL_BITS;
	const struct ps__pgtable_level *n =
		(const struct ps__pgtable_level *)(const void *)t;
	const struct ps__pgtable_leaf *l;

	uintptr_t v;

	if (PS_UNLIKELY(addr >= PS_PGTABLE_ADDR_END))
		return PS_PTE_NONE;
	v = ps__pgtable_child(n, p >> 3 * b);
	if (PS_UNLIKELY((intptr_t)v <= 0)) /* none, or huge leaves below */
		return v ? ps__pgtable_lookup_huge(v, addr) : PS_PTE_NONE;
	n = (const struct ps__pgtable_level *)v;
	n = (const struct ps__pgtable_level *)ps__pgtable_child(n, p >> 2 * b);
	if (!n)
		return PS_PTE_NONE;
	l = (const struct ps__pgtable_leaf *)ps__pgtable_child(n, p >> b);
	if (!l)
		return PS_PTE_NONE;
	/* Acquire: pairs with the release of the entry's compare-and-swap. */
	return atomic_load_explicit(&l->e[p & (PS__PGTABLE_FANOUT - 1)],
				    memory_order_acquire);
}

/* Pages per leaf: the reach of a ps_pgtable_lookup_leaf() cursor. */
#define PS_PGTABLE_LEAF_PAGES PS__PGTABLE_FANOUT

/**
 * ps_pgtable_lookup_leaf() - a cursor on the entries of the leaf holding
 * @addr, found by one walk.
 * @t: the table.
 * @addr: any address; the cursor starts at the entry of the page holding it.
 *
 * For a caller that visits a run of pages, or reads an entry, acts and reads
 * or changes it again, with one walk: entry i of the result is that of the
 * page i pages after @addr's, up to the end of the leaf (i below
 * PS_PGTABLE_LEAF_PAGES minus @addr's page number modulo
 * PS_PGTABLE_LEAF_PAGES). Read an entry with an atomic load of the order the
 * caller's protocol needs (acquire, as ps_pgtable_lookup(); seq_cst where a
 * store-buffering pattern needs it); change one only with
 * ps_pgtable_cmpxchg_leaf() or the other entry writers, never by a store.
 * Inline: the three dependent loads of ps_pgtable_lookup() before its entry
 * load.
 * Context: inside a read-side section (ps_pgtable_read_lock() or the
 * caller's own urcu-bp section); the cursor is valid until the section ends.
 * A leaf that trim unlinks meanwhile stays readable until then, with every
 * entry none (trim unlinks only empty leaves, and no store may race it): a
 * caller that reads an entry again through the cursor sees that it changed.
 * Ordering: acquire, for each level pointer (the levels a cursor reaches
 * were initialised before they were published).
 * Progress: wait-free (three loads).
 * Return: the entry of @addr's page in its leaf; NULL where that leaf does
 * not exist (every entry it would hold is none, or a huge leaf stands for
 * them, or it is being collapsed: see the overview, "Huge leaves"; then
 * ps_pgtable_lookup() and ps_pgtable_get() return the entry) or @addr is
 * past the space.
 */
static inline PS_ATOMIC(ps_pte_t) *ps_pgtable_lookup_leaf(struct ps_pgtable *t,
							  uint64_t addr)
{
	const uint64_t p = addr >> PS_PGTABLE_PAGE_SHIFT;
	const unsigned int b = PS__PGTABLE_LEVEL_BITS;
	const struct ps__pgtable_level *n =
		(const struct ps__pgtable_level *)(const void *)t;
	struct ps__pgtable_leaf *l;

	uintptr_t v;
	bool huge = false;

	if (PS_UNLIKELY(addr >= PS_PGTABLE_ADDR_END))
		return NULL;
	v = ps__pgtable_child(n, p >> 3 * b);
	if (PS_UNLIKELY((intptr_t)v <= 0)) { /* none, or huge leaves below */
		if (!v)
			return NULL;
		huge = true;
		v &= ~PS__PGTABLE_ROOT_HUGE;
	}
	n = (const struct ps__pgtable_level *)v;
	v = ps__pgtable_child(n, p >> 2 * b);
	if (!v || (PS_UNLIKELY(huge) && ps__pgtable_not_level(v)))
		return NULL;
	n = (const struct ps__pgtable_level *)v;
	/* Acquire: pairs with the release that published the leaf. */
	v = (uintptr_t)atomic_load_explicit(
		&n->slot[(p >> b) & (PS__PGTABLE_FANOUT - 1)],
		memory_order_acquire);
	if (!v || (PS_UNLIKELY(huge) && ps__pgtable_not_level(v)))
		return NULL;
	l = (struct ps__pgtable_leaf *)v;
	return &l->e[p & (PS__PGTABLE_FANOUT - 1)];
}

/**
 * ps_pgtable_get() - the entry of page @addr, in its own read-side section.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @pte: receives the entry; untouched on error.
 *
 * The pin path of a caller is: get, pin the frame, get again and compare (with
 * a full fence between the pin and the second get, see pagestate/page.h).
 * Context: any thread, also inside a read-side section (its own nests).
 * Ordering: acquire, as ps_pgtable_lookup().
 * Progress: wait-free (after the thread's first read-side section, see
 * ps_pgtable_read_lock()).
 * Return: 0, or -EINVAL for an unaligned or out-of-space @addr.
 */
int ps_pgtable_get(const struct ps_pgtable *t, uint64_t addr, ps_pte_t *pte);

/**
 * ps_pgtable_get_range() - the entries of @npages pages from @start, in one
 * read-side section.
 * @t: the table.
 * @start: the first page (aligned, below PS_PGTABLE_ADDR_END).
 * @npages: how many pages, at least 1; the run must end at or below
 *	PS_PGTABLE_ADDR_END.
 * @out: receives @npages entries: out[i] is the entry of page @start + i *
 *	PS_PGTABLE_PAGE_SIZE, PS_PTE_NONE where nothing is stored. Untouched on
 *	error.
 *
 * For a caller that works on a run of pages (a 2 MiB region, the pages
 * behind a scatter list): one section for the run and one walk per leaf of
 * 512 pages, where ps_pgtable_get() per page pays a section and a walk each.
 * Each entry is read atomically, but the run is not a snapshot: an entry
 * changed during the call is reported as it was before or after the change,
 * independently of its neighbours.
 * Context: any thread, also inside a read-side section (its own nests). The
 * section lasts for the whole run, so a grace period that begins meanwhile
 * (which ps_pgtable_unregister() waits for) cannot end before the call
 * returns: split very long runs where that matters.
 * Ordering: acquire for each entry, as ps_pgtable_lookup().
 * Progress: wait-free, O(@npages) (after the thread's first read-side
 * section, see ps_pgtable_read_lock()).
 * Return: 0; -EINVAL if @start is unaligned or not below PS_PGTABLE_ADDR_END,
 * @npages is 0 or takes the run past PS_PGTABLE_ADDR_END, or @out is NULL.
 */
int ps_pgtable_get_range(const struct ps_pgtable *t, uint64_t start,
			 uint64_t npages, ps_pte_t *out);

/**
 * ps_pgtable_get_level() - ps_pgtable_get(), and the order of the leaf the
 * entry comes from.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @pte: receives the page's entry (the 4 KiB view under a huge leaf);
 *	untouched on error.
 * @order: if not NULL, receives PS_PGTABLE_ORDER_4K for a 4 KiB entry (none
 *	included), PS_PGTABLE_ORDER_2M or PS_PGTABLE_ORDER_1G for a page under
 *	a huge leaf of that order; untouched on error.
 * @leaf: if not NULL, receives the huge leaf itself (the entry of the
 *	extent's first page), or *@pte for a 4 KiB entry; untouched on error.
 *
 * The entry, the order and the leaf come from one load: they agree.
 * Context: any thread, also inside a read-side section (its own nests).
 * Ordering: acquire, as ps_pgtable_lookup().
 * Progress: wait-free (after the thread's first read-side section).
 * Return: 0, or -EINVAL for an unaligned or out-of-space @addr.
 */
int ps_pgtable_get_level(const struct ps_pgtable *t, uint64_t addr,
			 ps_pte_t *pte, unsigned int *order, ps_pte_t *leaf);

/* --- single entries ------------------------------------------------------- */

/**
 * ps_pgtable_set() - store @pte at page @addr, whatever was there.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @pte: the new entry; must be ps_pte_valid().
 * @old: if not NULL, receives the previous entry.
 *
 * A raw store: no registration check. Storing a uffd-wp entry outside a
 * registered range leaves a stale bit that faults clear lazily.
 * Context: any thread, also inside a read-side section. Not concurrently with a
 * trim of the page, or a map, copy or move into it (see the overview of
 * pagestate/pgtable.h, "Concurrency").
 * Ordering: acquire and release: one seq_cst CAS, which releases @pte to
 * the acquire loads of lookups, faults and scans and acquires the entry it
 * replaced.
 * Progress: lock-free (CAS loop, retried only when another thread changed
 * the entry; a missing leaf is allocated with aligned_alloc()).
 * Return: 0; -EINVAL (bad address, !ps_pte_valid(@pte)); -ENOMEM.
 */
int ps_pgtable_set(struct ps_pgtable *t, uint64_t addr, ps_pte_t pte,
		   ps_pte_t *old);

/**
 * ps_pgtable_cmpxchg() - replace *@expected by @desired at page @addr.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @expected: the entry expected; on -EAGAIN, receives the entry found.
 * @desired: the new entry; must be ps_pte_valid().
 *
 * A page under a huge leaf: *@expected is compared with its 4 KiB view, and
 * a change splits the leaf first (see the overview, "Huge leaves"), as set,
 * swap_out and swap_in do.
 * Context: any thread, also inside a read-side section; the exclusions of
 * ps_pgtable_set().
 * Ordering: acquire and release on success (one seq_cst CAS, as
 * ps_pgtable_set()), acquire on failure.
 * Progress: wait-free where the leaf exists (one CAS, never retried); a
 * missing leaf is allocated with aligned_alloc().
 * Return: 0 if replaced; -EAGAIN if the entry was another value, now in
 * *@expected; -EINVAL (bad address, !ps_pte_valid(@desired)); -ENOMEM.
 */
int ps_pgtable_cmpxchg(struct ps_pgtable *t, uint64_t addr, ps_pte_t *expected,
		       ps_pte_t desired);

/**
 * ps_pgtable_cmpxchg_leaf() - ps_pgtable_cmpxchg() of an entry a cursor
 * reaches, with no second walk.
 * @t: the table.
 * @slot: the entry of page @addr, from ps_pgtable_lookup_leaf() in the
 *	caller's current read-side section.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @expected: the entry expected; on -EAGAIN, receives the entry found.
 * @desired: the new entry; must be ps_pte_valid().
 *
 * One compare-and-swap, inline, when the change leaves the entry as written
 * as it was (ps_pte_written()) and @expected is not none: a present entry
 * made writable, its encryption or cache bits changed, write taken away. A
 * change that makes an entry written must also mark the table's written
 * hint, and a store into a none entry may need a leaf the cursor does not
 * have: those are ps_pgtable_cmpxchg(), out of line.
 * Context: inside the read-side section @slot was found in; the exclusions
 * of ps_pgtable_set().
 * Ordering: as ps_pgtable_cmpxchg(): one seq_cst CAS on success (it releases
 * @desired to acquiring readers), acquire on failure.
 * Progress: wait-free (one CAS; out of line, as ps_pgtable_cmpxchg()).
 * Return: 0 if replaced; -EAGAIN if the entry was another value, now in
 * *@expected; -EINVAL (!ps_pte_valid(@desired)); out of line also -ENOMEM.
 */
static inline int ps_pgtable_cmpxchg_leaf(struct ps_pgtable *t,
					  PS_ATOMIC(ps_pte_t) *slot,
					  uint64_t addr, ps_pte_t *expected,
					  ps_pte_t desired)
{
	if (PS_UNLIKELY(!ps_pte_valid(desired)))
		return -EINVAL;
	if (PS_UNLIKELY(*expected == PS_PTE_NONE ||
			(ps_pte_written(desired) &&
			 !ps_pte_written(*expected))))
		return ps_pgtable_cmpxchg(t, addr, expected, desired);
	/*
	 * Seq_cst on success, acquire on failure: the ordering of the table's
	 * own entry CAS (ps_pgtable_cmpxchg()).
	 */
	if (atomic_compare_exchange_strong_explicit(slot, expected, desired,
						    memory_order_seq_cst,
						    memory_order_acquire))
		return 0;
	return -EAGAIN;
}

/**
 * ps_pgtable_swap_out() - replace a present entry by a swap entry.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @type: the swap type, at most PS_PTE_SWP_TYPE_MAX.
 * @offset: the slot in that swap area, at most PS_PTE_SWP_OFFSET_MAX.
 * @flags: 0 or PS_PTE_SWP_EXCLUSIVE.
 * @old: if not NULL, receives the present entry (its frame is now free);
 *	on -ENXIO, the entry found.
 *
 * The swap entry (@type, @offset) keeps the present entry's uffd-wp bit.
 * Context: any thread, also inside a read-side section; the exclusions of
 * ps_pgtable_set().
 * Ordering: one seq_cst CAS, as ps_pgtable_set(). A write fault that
 * resolved first is in *@old (DIRTY); one after it finds MISSING.
 * Progress: lock-free (CAS loop, retried only when another thread changed
 * the entry).
 * Return: 0; -ENXIO if the entry is not present; -EINVAL (bad address, type,
 * offset or flags). A page without a leaf is refused without allocating one.
 */
int ps_pgtable_swap_out(struct ps_pgtable *t, uint64_t addr, unsigned int type,
			uint64_t offset, uint64_t flags, ps_pte_t *old);

/**
 * ps_pgtable_swap_in() - replace a swap entry by a present entry.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @frame: the frame that now holds the page, at most PS_PTE_FRAME_MAX.
 * @flags: the present entry's flags: PS_PTE_PRESENT_FLAGS without
 *	PS_PTE_UFFD_WP.
 * @old: if not NULL, receives the swap entry (its slot is now free); on
 *	-ENXIO, the entry found.
 *
 * The present entry keeps the swap entry's uffd-wp bit (and then has no WRITE).
 * Context: any thread, also inside a read-side section; the exclusions of
 * ps_pgtable_set().
 * Ordering: one seq_cst CAS, as ps_pgtable_set(): what the caller wrote
 * into @frame before the call is seen by whoever acquires the new entry.
 * Progress: lock-free (CAS loop, retried only when another thread changed
 * the entry).
 * Return: 0; -ENXIO if the entry is not a swap entry; -EINVAL (bad address,
 * frame or flags). A page without a leaf is refused without allocating one.
 */
int ps_pgtable_swap_in(struct ps_pgtable *t, uint64_t addr, uint64_t frame,
		       uint64_t flags, ps_pte_t *old);

/* --- ranges --------------------------------------------------------------- */

/**
 * ps_pgtable_map() - map consecutive frames at a range of pages.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @frame: the frame of the first page; the last one is at most
 *	PS_PTE_FRAME_MAX.
 * @flags: the present entries' flags, PS_PTE_UFFD_WP included.
 *
 * Maps @frame at @start, @frame + 1 at the next page, and so on, each with
 * @flags. Every page must be none or a marker holding only UFFD_WP or only
 * WRITTEN; a UFFD_WP marker's protection is kept (Linux installs the new
 * PTE with uffd-wp), and over a WRITTEN marker the page stays written
 * unless @flags protect it. With PS_PTE_UFFD_WP in @flags the range must be
 * registered (Linux's UFFDIO_COPY_MODE_WP). Pages are checked first, so
 * -EEXIST changes nothing unless another thread maps the same pages
 * meanwhile, which the caller must exclude.
 * Context: any thread; inside a read-side section only without
 * PS_PTE_UFFD_WP (with it, the writer mutex). Not concurrently with set,
 * cmpxchg or map of the same pages, or a trim of the range (see the overview of
 * pagestate/pgtable.h, "Concurrency").
 * Ordering: each entry is installed by one seq_cst CAS, in address order
 * (the range is not atomic): what the caller wrote into a frame before the
 * call is seen by whoever acquires its entry (lookup, get, a fault). With
 * PS_PTE_UFFD_WP the registration check and the installs hold the writer
 * mutex, so no unregister interleaves.
 * Progress: lock-free (blocking with PS_PTE_UFFD_WP: writer mutex).
 * Return: 0; -EINVAL (range, flags, frames past PS_PTE_FRAME_MAX); -EEXIST
 * (a page is neither none nor a lone UFFD_WP or WRITTEN marker); -ENOENT
 * (PS_PTE_UFFD_WP and a page not registered); -ENOMEM (nothing installed:
 * every level is allocated before the first install).
 */
int ps_pgtable_map(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   uint64_t frame, uint64_t flags);

/**
 * ps_pgtable_map_prepare() - make later maps into a range unable to fail.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * Checks that every page of [@start, @start + @len) is vacant and allocates
 * every level the range needs. For a caller that maps one range in several
 * ps_pgtable_map() calls (runs of different flags) and wants all or nothing
 * before any entry is seen: after this returns 0, a ps_pgtable_map() of any
 * part of the range without PS_PTE_UFFD_WP fails neither with -EEXIST nor
 * with -ENOMEM, as long as nobody else stores into the range or trims it
 * meanwhile (changes among none, UFFD_WP and WRITTEN markers, by protect,
 * zap, a scan or a fault, are fine). Nothing is installed; the levels it
 * allocates stay, empty, until a trim.
 * Context: any thread, inside a read-side section or not. Not concurrently
 * with a trim of the range.
 * Ordering: none beyond the table's own (levels are published with release
 * and read with acquire); it reads entries as ps_pgtable_get() does.
 * Progress: lock-free (level allocation calls malloc).
 * Return: 0; -EINVAL (range); -EEXIST (a page is neither none nor a lone
 * UFFD_WP or WRITTEN marker); -ENOMEM (some levels may have been allocated,
 * nothing else changed).
 */
int ps_pgtable_map_prepare(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_map_huge() - map consecutive frames at a range with huge leaves.
 * @t: the table.
 * @start: the first page, a multiple of the extent (2 MiB or 1 GiB).
 * @len: the length in bytes, a non-zero multiple of the extent.
 * @frame: the frame of the first page, a multiple of 2^@order; the last one
 *	is at most PS_PTE_FRAME_MAX.
 * @flags: the leaves' flags, as for ps_pgtable_map(), PS_PTE_UFFD_WP included.
 * @order: PS_PGTABLE_ORDER_2M or PS_PGTABLE_ORDER_1G.
 * @where: if not NULL, receives on error the address at fault: @start for
 *	a bad @start, @len, @order or @flags, the page of the first
 *	misaligned or out-of-range frame for a bad @frame, the first page that
 *	is not vacant for -EEXIST, the first page not registered for -ENOENT,
 *	@start for -ENOMEM; untouched on success.
 *
 * ps_pgtable_map() with one huge leaf per extent: the leaf for the extent
 * at @start + k * extent maps frames @frame + k * 2^@order onwards. Every
 * page must be vacant as for ps_pgtable_map(): none, or a lone UFFD_WP or
 * WRITTEN marker; a leaf is protected if @flags say so or if any page of
 * its extent holds a UFFD_WP marker (protection is never dropped), and the
 * levels below it (empty ones, or holding only such markers) are replaced
 * by it and freed after a grace period.
 * Context: any thread, not inside a read-side section (writer mutex: it
 * replaces levels). Not concurrently with set, cmpxchg or map of the same
 * pages (see the overview of pagestate/pgtable.h, "Concurrency").
 * Ordering: each leaf is installed by one seq_cst CAS, in address order
 * (the range is not atomic): what the caller wrote into the frames before
 * the call is seen by whoever acquires the leaf.
 * Progress: blocking (writer mutex); faults run concurrently.
 * Return: 0; -EINVAL (alignment of @start, @len or @frame, @order, flags,
 * frames past PS_PTE_FRAME_MAX); -EEXIST (a page is not vacant); -ENOENT
 * (PS_PTE_UFFD_WP and a page not registered); -ENOMEM (nothing
 * installed: every level is allocated before the first install).
 */
int ps_pgtable_map_huge(struct ps_pgtable *t, uint64_t start, uint64_t len,
			uint64_t frame, uint64_t flags, unsigned int order,
			uint64_t *where);

/**
 * ps_pgtable_register() - register a range for write protection.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @flags: PS_WP_* (0: sync and anonymous).
 *
 * Registers [@start, @start + @len) with the mode and backing @flags say (see
 * the overview of pagestate/pgtable.h, "Write protection"). Entries are not
 * touched.
 * Context: any thread, not inside a read-side section (writer mutex).
 * Ordering: the new registration set is published with a release store under
 * the writer mutex; it pairs with the acquire load of every operation that
 * reads registrations (faults, zaps, maps, scans, range writers,
 * ps_pgtable_registration()): each sees the old set or the new one whole.
 * Progress: blocking (writer mutex; readers and faults never wait). With
 * PS_WP_HUGE_WHOLE, huge leaves in the range are tracked whole (see the
 * overview, "Huge leaves"); with PS_WP_HUGE_SPLIT or neither, 4 KiB at a time.
 * Return: 0; -EINVAL (range, unknown flags, both PS_WP_HUGE_SPLIT and
 * PS_WP_HUGE_WHOLE); -EBUSY if any page is registered already; -ENOMEM.
 */
int ps_pgtable_register(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int flags);

/**
 * ps_pgtable_unregister() - end write protection of a range.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * Ends the registrations inside [@start, @start + @len), splitting those
 * that straddle it, and clears every write-protect state in the range:
 * uffd-wp bits and UFFD_WP markers. Written state stays: written entries
 * and WRITTEN markers (a page zapped while written, not yet reported) are
 * reported by a later scan for written pages.
 * Context: any thread, not inside a read-side section (it waits for a
 * grace period, so no operation that saw the old registration is still
 * running when it clears the range).
 * Ordering: the new set is published with a release store (as
 * ps_pgtable_register()); after the grace period each entry is cleared by
 * one seq_cst CAS. When it returns, no entry of the range carries uffd-wp
 * unless a set or cmpxchg stored one since.
 * Progress: blocking (writer mutex, then a grace period).
 * Return: 0; -EINVAL; -ENOENT if no page of the range was registered;
 * -ENOMEM (nothing changed).
 */
int ps_pgtable_unregister(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_registration() - the registration covering page @addr.
 * @t: the table.
 * @addr: the page (aligned, below PS_PGTABLE_ADDR_END).
 * @flags: receives its PS_WP_* flags on success (as registered, with the
 *	PS_WP_UNPOPULATED that PS_WP_ASYNC implies); untouched otherwise.
 *
 * For a fault handler or a bridge that must know the page's mode (async or
 * sync, shared or anonymous) without a scan.
 * Context: any thread, also inside a read-side section (its own nests).
 * Ordering: acquire, pairing with the release that publishes a registration
 * set: the answer is the set at one instant (one load), so a register() or
 * unregister() that returned before the call is seen, and one that runs
 * concurrently is seen wholly or not at all.
 * Progress: wait-free (a binary search of the registrations).
 * Return: 0; -ENOENT if no registration covers @addr; -EINVAL for an
 * unaligned or out-of-space @addr.
 */
int ps_pgtable_registration(const struct ps_pgtable *t, uint64_t addr,
			    unsigned int *flags);

/**
 * ps_pgtable_protect() - write-protect a range (UFFDIO_WRITEPROTECT).
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * Each entry of [@start, @start + @len) changes as the row "protect" of the
 * transition table says (the overview of pagestate/pgtable.h): present and swap
 * entries gain uffd-wp, none pages that use markers become UFFD_WP markers.
 * Context: any thread, not inside a read-side section (writer mutex).
 * Ordering: each entry changes by one seq_cst CAS, in address order (the range
 * is not atomic). A write racing the protect lands either before the page's CAS
 * (the page ends protected) or after it (the page ends written, and the next
 * scan for written pages finds it: docs/pgtable.md, "The written hint").
 * Progress: blocking (writer mutex); each entry is one CAS, so faults run
 * concurrently and see each entry before or after. The range is changed
 * 1 GiB (aligned) at a time, and the writer mutex and the read-side section
 * are let go between chunks: a register, unregister or write-protected map
 * elsewhere, and a grace period, never wait for more than one chunk.
 * A huge leaf the range covers whole stays whole (one CAS); one it covers in
 * part is split first, or refused where it is tracked whole.
 * Return: 0; -EINVAL (also: the range begins or ends inside a huge leaf of
 * a PS_WP_HUGE_WHOLE registration; nothing changed); -ENOENT unless every
 * page is registered (nothing changed); -ENOMEM (markers or a split need
 * levels: a prefix of the range may be protected, see the errors in the
 * overview of pagestate/pgtable.h). The registrations are checked for the
 * whole range before anything changes, and for the rest of it after each
 * chunk: a concurrent unregister (or register) that changes them meanwhile
 * makes the call return -ENOENT or -EINVAL with the chunks before protected.
 */
int ps_pgtable_protect(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_unprotect() - remove write protection from a range.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * UFFDIO_WRITEPROTECT without MODE_WP: each entry of [@start, @start +
 * @len) loses uffd-wp, and a marker that held only UFFD_WP becomes none (the
 * row "unprotect" of the transition table in the overview of
 * pagestate/pgtable.h). A present entry stays read-only: the next write fault
 * makes it writable, if MAYWRITE.
 * Context: any thread, not inside a read-side section (writer mutex).
 * Ordering: each entry changes by one seq_cst CAS, in address order (the
 * range is not atomic); an entry it leaves written is found by the next scan
 * for written pages.
 * Progress: blocking (writer mutex, let go between chunks of 1 GiB, as
 * ps_pgtable_protect()); it never allocates.
 * Return: 0; -EINVAL (also: the range begins or ends inside a huge leaf of
 * a PS_WP_HUGE_WHOLE registration; nothing changed); -ENOENT unless every
 * page is registered (nothing changed); -ENOMEM (a huge leaf covered in
 * part could not be split; a prefix may be done).
 */
int ps_pgtable_unprotect(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_zap() - clear the entries of a range (MADV_DONTNEED, munmap).
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @flags: 0, or PS_ZAP_UNMAP, PS_ZAP_UNITS or both.
 * @visit: if not NULL, called for every entry changed, with the old entry:
 *	the caller drops its references to the frames and swap slots. With
 *	PS_ZAP_UNITS, a huge leaf that the zap removes whole is told of once,
 *	not once per 4 KiB page: @addr is its first page ORed with its order
 *	(PS_PGTABLE_ORDER_2M or PS_PGTABLE_ORDER_1G; a page address has those
 *	bits clear), @old its first page's entry (ps_pte_frame() gives the
 *	extent's first frame, the others follow it) and @new_pte what that
 *	page holds now, which every page of the extent holds. A huge leaf the
 *	range covers in part is split first and told of page by page.
 * @ctx: passed to @visit.
 *
 * What survives of each entry of [@start, @start + @len) as a marker is in
 * the transition table (the overview of pagestate/pgtable.h): protection
 * where the range is shared, GUARD until a zap with PS_ZAP_UNMAP, and in a
 * range registered async a WRITTEN marker for a page written since it was
 * last protected, which the next scan for written pages reports.
 * Context: any thread, also inside a read-side section; @visit runs inside
 * the zap's own section.
 * Ordering: each entry changes by one seq_cst CAS, in address order (the
 * range is not atomic), and @visit gets the exact entry replaced: a write
 * fault that resolved first is in it (DIRTY), one after it finds MISSING.
 * The registrations are read with acquire; ps_pgtable_unregister() waits
 * for a zap that still saw the old ones.
 * Progress: lock-free; it allocates only to split a huge leaf that the range
 * covers in part.
 * Return: 0; -EINVAL (range, unknown flags); -ENOMEM (a huge leaf could not be
 * split: the pages before it are zapped, it and the pages after it are
 * untouched; repeat the call).
 */
int ps_pgtable_zap(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   unsigned int flags, ps_pgtable_visit_fn visit, void *ctx);

/**
 * ps_pgtable_copy() - copy a range of one table into another (fork).
 * @dst: the table copied into; not @src.
 * @src: the table copied from.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @flags: 0 or PS_KEEP_WP.
 * @visit: if not NULL, called for every entry written into @dst (old = the
 *	source entry): the caller takes its references for the copy.
 * @ctx: passed to @visit.
 *
 * Copies the entries of [@start, @start + @len) of @src to the same
 * addresses of @dst. uffd-wp state is copied only with PS_KEEP_WP (then
 * @dst's range must be registered); POISONED, GUARD and WRITTEN markers
 * always. @dst's range must be all none (checked first, -EEXIST). @src may
 * change meanwhile; each entry is copied as one atomic snapshot.
 * Context: any thread; inside a read-side section only without PS_KEEP_WP
 * (with it, @dst's writer mutex). No other thread may store into @dst's
 * range meanwhile (see the overview of pagestate/pgtable.h, "Concurrency").
 * Ordering: each source entry is read with an acquire load and installed
 * in @dst by one seq_cst CAS, in address order; the copy as a whole is not
 * a snapshot of @src. @visit runs after each install.
 * Progress: lock-free, never retried (blocking with PS_KEEP_WP: @dst's
 * writer mutex).
 * Return: 0; -EINVAL (range, unknown flags, @dst == @src); -EEXIST (also
 * after a prefix if a store races into @dst); -ENOENT (PS_KEEP_WP and a
 * page of @dst not registered); -ENOMEM (after a prefix).
 */
int ps_pgtable_copy(struct ps_pgtable *dst, const struct ps_pgtable *src,
		    uint64_t start, uint64_t len, unsigned int flags,
		    ps_pgtable_visit_fn visit, void *ctx);

/**
 * ps_pgtable_move() - move the entries of a range to another (mremap).
 * @t: the table.
 * @from: the first page of the source (aligned).
 * @to: the first page of the target (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0); the two
 *	ranges must not overlap.
 * @flags: 0 or PS_KEEP_WP.
 *
 * Moves the entries of [@from, @from + @len) to [@to, @to + @len).
 * uffd-wp state is dropped unless PS_KEEP_WP (then the target must be
 * registered), as Linux does without UFFD_EVENT_REMAP; written state
 * (WRITTEN markers included) moves along. The target must be all none
 * (-EEXIST). Each entry is installed at the target before it is cleared at
 * the source, so a reader may see a page in both places for a moment,
 * never in neither; a fault racing the move on the source is carried over.
 * Context: any thread; inside a read-side section only without PS_KEEP_WP
 * (with it, the writer mutex). No other thread may store into the target
 * range meanwhile (see the overview of pagestate/pgtable.h, "Concurrency").
 * Ordering: per entry, one seq_cst CAS at the target, then one at the
 * source; in address order (the range is not atomic).
 * Progress: lock-free, retried only when another thread changed the
 * source entry (blocking with PS_KEEP_WP: writer mutex).
 * Return: 0; -EINVAL (ranges, also overlapping ones, unknown flags);
 * -EEXIST (also after a prefix if a store races into the target); -ENOENT
 * (PS_KEEP_WP and a target page not registered); -ENOMEM (after a prefix).
 */
int ps_pgtable_move(struct ps_pgtable *t, uint64_t from, uint64_t to,
		    uint64_t len, unsigned int flags);

/**
 * ps_pgtable_trim() - free the levels of a range that hold only none entries.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * Frees the leaves wholly inside [@start, @start + @len) whose entries are
 * all none, then the interior levels that this leaves empty. They are freed
 * through call_rcu: readers never touch freed memory.
 * Context: any thread, not inside a read-side section (writer mutex). No
 * thread may store into the range meanwhile (set, cmpxchg, map, swap, copy
 * or move into it; see the overview of pagestate/pgtable.h, "Concurrency").
 * Ordering: a level is unlinked under the writer mutex and freed after a grace
 * period, so every walk that loaded it ends first; it orders nothing else.
 * Progress: blocking (writer mutex); the frees are deferred, not waited for.
 * Return: 0; -EINVAL.
 */
int ps_pgtable_trim(struct ps_pgtable *t, uint64_t start, uint64_t len);

/* --- huge leaves ---------------------------------------------------------- */

/**
 * ps_pgtable_split() - split every huge leaf that meets a range.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 *
 * The VMM's eager split (before dirty tracking starts, off the vCPU path):
 * each huge leaf with a page in [@start, @start + @len) is replaced by 512
 * 4 KiB entries (a 1 GiB leaf by 512 2 MiB leaves, each then split in
 * turn) holding its bits at every offset: wp, DIRTY, ACCESSED, WRITE,
 * cache mode, ENC, the marker set. A reader sees the huge leaf or the
 * complete child, never a mixture; a fault that changes the huge leaf
 * meanwhile makes the publishing CAS fail, and the split copies the new
 * value. Nothing else changes: the pages' entries read the same before and
 * after (ps_pgtable_get()); only their order does.
 * Context: any thread, also inside a read-side section.
 * Ordering: each child is initialised, then published by one seq_cst CAS
 * from the exact huge leaf it copied (release: a reader that acquires the
 * slot sees the whole child).
 * Progress: lock-free (a retry only after a fault changed the huge leaf);
 * it allocates one level per split.
 * Return: 0; -EINVAL (range); -ENOMEM (a prefix of the range may be split;
 * repeat the call).
 */
int ps_pgtable_split(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_collapse() - replace uniform extents by huge leaves
 * (MADV_COLLAPSE).
 * @t: the table.
 * @start: the first page, a multiple of the extent.
 * @len: the length in bytes, a non-zero multiple of the extent.
 * @order: PS_PGTABLE_ORDER_2M (512 4 KiB entries become one leaf) or
 *	PS_PGTABLE_ORDER_1G (512 2 MiB leaves become one).
 * @err: if not NULL, receives the first page refused and why
 *	(PS_PGTABLE_COLLAPSE_OK and @start + @len when nothing was refused).
 *
 * Each extent of the range whose parts are uniform becomes one huge leaf:
 * the same form, consecutive frames from an aligned one, the same bits but
 * ACCESSED (any makes the leaf accessed) and WRITE (the leaf is writable
 * only if every part is; a write fault restores it). Parts that differ in
 * uffd-wp, DIRTY, MAYWRITE, cache mode or ENC are refused, as is a change
 * that races the collapse: the extent is left exactly as it was. An extent
 * with no lower level (already a huge leaf, or all none) is left alone.
 * The replaced level is freed after a grace period.
 * Context: any thread, not inside a read-side section (writer mutex, and
 * it waits for a grace period per extent).
 * Ordering: the level is first frozen by one seq_cst CAS (readers still
 * descend into it; an entry writer that finds it frozen thaws it, failing
 * the collapse); after a grace period no cursor into it is left, and it is
 * validated and replaced by one seq_cst CAS from the frozen value.
 * Progress: blocking (writer mutex, grace periods); faults and readers
 * never wait for it.
 * Return: 0 (every extent collapsed or left alone); -EINVAL (alignment,
 * @order); -EBUSY (an extent refused, @err says where and why; the extents
 * before it are collapsed, the rest untouched); -ENOMEM is never returned.
 */
int ps_pgtable_collapse(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int order,
			struct ps_pgtable_collapse_err *err);

/**
 * ps_pgtable_cmpxchg_huge() - replace a whole huge leaf by another, in one
 * compare-and-swap.
 * @t: the table.
 * @addr: the first page of the leaf's extent (aligned to it).
 * @order: the leaf's order: PS_PGTABLE_ORDER_2M or PS_PGTABLE_ORDER_1G.
 * @expected: the leaf expected; on -EAGAIN receives the leaf found, on
 *	-ENOENT PS_PTE_NONE.
 * @desired: the new leaf; must be a canonical huge leaf of @order
 *	(ps_pte_huge_valid()).
 *
 * For a caller that changes a bit every page of an extent shares (its
 * encryption or cache bits, write taken away) without splitting it, as
 * ps_pgtable_cmpxchg() changes one 4 KiB entry: ps_pgtable_cmpxchg() of a page
 * under a huge leaf splits the leaf first. The leaf is found by a walk that
 * allocates nothing.
 * Context: any thread, also inside a read-side section; the exclusions of
 * ps_pgtable_set().
 * Ordering: as ps_pgtable_cmpxchg(): one seq_cst CAS on success (it releases
 * @desired to acquiring readers), acquire on failure.
 * Progress: wait-free (one walk, one CAS, never retried).
 * Return: 0 if replaced; -EAGAIN if the leaf was another value, now in
 * *@expected; -ENOENT if no huge leaf of @order starts at @addr (a lower
 * level, none, or a leaf of the other order: nothing changed); -EINVAL (bad
 * address, order or alignment, @expected NULL, @desired not a leaf of @order).
 */
int ps_pgtable_cmpxchg_huge(struct ps_pgtable *t, uint64_t addr,
			    unsigned int order, ps_pte_t *expected,
			    ps_pte_t desired);

/* --- faults and scans ----------------------------------------------------- */

/**
 * ps_pgtable_fault_pte() - classify an access to a page, and resolve it.
 * @t: the table.
 * @addr: the page accessed (aligned, below PS_PGTABLE_ADDR_END).
 * @access: PS_ACCESS_READ or PS_ACCESS_WRITE, optionally
 *	PS_ACCESS_RESOLVE_WP, or PS_ACCESS_CHECK (classify, change nothing).
 * @pte: if not NULL, receives the entry as the fault left it (with
 *	PS_ACCESS_CHECK, as it was read); untouched for PS_FAULT_INVALID.
 *
 * Returns what the fault table (the overview of pagestate/pgtable.h) says for
 * the entry and the access, and resolves the access where it says so: a read
 * sets ACCESSED, a permitted write sets WRITE, DIRTY and ACCESSED and clears
 * uffd-wp (async mode, PS_ACCESS_RESOLVE_WP, or a stale bit), all in one CAS.
 * Context: any thread, also inside a read-side section (its own nests).
 * Ordering: acquire and release (the resolving CAS; an acquire load only with
 * PS_ACCESS_CHECK). The entry is read with an acquire load, so a present frame
 * shows what the mapper wrote; a change is one seq_cst CAS, and a write that
 * races a WP_MATCHING scan or a harvest is reported by it or by the next one.
 * Progress: lock-free (wait-free with PS_ACCESS_CHECK); never blocks, even
 * during protect, zap, scan or (un)registration (a thread's first
 * read-side section aside, see ps_pgtable_read_lock()).
 * Return: PS_FAULT_OK, the access may proceed; PS_FAULT_MISSING, no page
 * (none, swap, a UFFD_WP or WRITTEN marker: map or swap in, then retry);
 * PS_FAULT_WP, a write to a protected page of a sync range (nothing
 * changed); PS_FAULT_POISONED or PS_FAULT_GUARD, such a marker (judged in
 * that order, before UFFD_WP); PS_FAULT_BAD_ACCESS, a write without
 * MAYWRITE; PS_FAULT_INVALID, bad arguments (nothing changed). With
 * PS_ACCESS_CHECK, what the fault would return. Never a negative errno.
 */
enum ps_fault ps_pgtable_fault_pte(struct ps_pgtable *t, uint64_t addr,
				   unsigned int access, ps_pte_t *pte);

/**
 * ps_pgtable_fault() - ps_pgtable_fault_pte() without the entry.
 * @t: the table.
 * @addr: the page accessed.
 * @access: as for ps_pgtable_fault_pte().
 *
 * Context: any thread, also inside a read-side section (its own nests).
 * Ordering: as ps_pgtable_fault_pte().
 * Progress: lock-free, as ps_pgtable_fault_pte().
 * Return: what ps_pgtable_fault_pte() returns.
 */
enum ps_fault ps_pgtable_fault(struct ps_pgtable *t, uint64_t addr,
			       unsigned int access);

/**
 * ps_pgtable_fault_locked() - ps_pgtable_fault_pte() in the caller's section.
 * @t: the table.
 * @addr: the page accessed.
 * @access: as for ps_pgtable_fault_pte().
 * @pte: if not NULL, receives the entry as the fault left it.
 *
 * For a handler that resolves faults in batches (a vCPU loop, a bridge
 * draining several userfaultfd messages): it saves the pair of calls into
 * liburcu-bp that ps_pgtable_fault_pte() makes, as ps_pgtable_lookup() does for
 * lookups (see the overview of pagestate/pgtable.h, "Readers and RCU"). Same
 * semantics and checks; it never blocks, so it may run in any section.
 * Context: inside ps_pgtable_read_lock() or the caller's own urcu-bp section.
 * Ordering: acquire and release (the resolving CAS), as ps_pgtable_fault_pte().
 * Progress: lock-free; never blocks.
 * Return: what ps_pgtable_fault_pte() returns.
 */
enum ps_fault ps_pgtable_fault_locked(struct ps_pgtable *t, uint64_t addr,
				      unsigned int access, ps_pte_t *pte);

/**
 * ps_pgtable_scan() - report the pages of a range by category (PAGEMAP_SCAN).
 * @t: the table.
 * @arg: the query (struct ps_pgtable_scan); receives the regions in
 *	arg->vec and where the walk stopped in arg->walk_end.
 *
 * Reports the pages of [arg->start, arg->end) that match the query as regions,
 * as Linux's PAGEMAP_SCAN does, and with PS_SCAN_WP_MATCHING re-protects each
 * page it reports (see the overview of pagestate/pgtable.h, "Scans").
 * Context: any thread; report-only scans also inside a read-side section,
 * WP_MATCHING scans not (writer mutex).
 * Ordering: the registrations are read once, with acquire, and each entry
 * with an acquire (seq_cst) load: not a snapshot, each page is reported as
 * it was at some instant of the walk. With PS_SCAN_WP_MATCHING a page is
 * reported only after its seq_cst CAS from the value reported to the
 * re-armed one succeeded, so a write racing the scan is reported by it or
 * by the next scan (docs/pgtable.md, "Get-and-rearm").
 * Progress: report-only scans are lock-free and never block; a
 * WP_MATCHING scan takes the writer mutex (it protects).
 * Pages under a huge leaf are reported with PS_CAT_HUGE. With
 * PS_SCAN_WP_MATCHING a leaf the scan covers whole, with room for all its
 * pages, is re-armed whole by one CAS; otherwise it is split first, or, in a
 * PS_WP_HUGE_WHOLE registration, the scan stops before it (as Linux backs out
 * of a hugetlb page), or a split that finds no memory stops it there.
 * Return: the number of regions written to arg->vec (0 without a vector);
 * -EINVAL (unaligned start, an end before the start or past the space, unknown
 * flags or categories, vec NULL with vec_len; a WP_MATCHING scan that begins
 * or ends inside a huge leaf of a PS_WP_HUGE_WHOLE registration, nothing
 * changed); -ENOENT (WP_MATCHING on a range
 * not fully registered, the page holding an unaligned end included); -EPERM
 * (PS_SCAN_CHECK_WPASYNC); -ENOMEM (WP_MATCHING re-arming none pages as UFFD_WP
 * markers needed a leaf, and nothing was re-armed yet). If pages were re-armed
 * before the allocation failed, the scan returns the regions taken (none
 * without a vector) and stops there, with arg->walk_end at the page that needed
 * the leaf, so no re-armed page goes unreported. arg->walk_end is set on
 * success; arg->end and the other arguments are never changed.
 */
long ps_pgtable_scan(struct ps_pgtable *t, struct ps_pgtable_scan *arg);

/**
 * ps_pgtable_harvest() - report and re-protect the written pages of a range.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @flags: 0 or PS_SCAN_CHECK_WPASYNC (-EPERM unless every page is
 *	registered async).
 * @fn: called with each run of written pages, in address order; not NULL.
 * @ctx: passed to @fn.
 *
 * The get-and-rearm scan (PS_SCAN_WP_MATCHING of PS_CAT_WRITTEN) over
 * [@start, @start + @len), resumed from walk_end until the whole range is
 * done: what a dirty-page tracker runs each round. After it returns, every
 * write made to the range before the call has been reported, by this
 * harvest or an earlier one, and its page is protected again. "Written" is
 * PS_CAT_WRITTEN: present or swap entries without uffd-wp, WRITTEN markers
 * (re-armed as UFFD_WP markers), and GUARD and POISONED markers, which
 * protection leaves alone and so every harvest reports again. The range is
 * scanned in batches of up to 512 runs (12 KiB of the caller's stack); @fn
 * is called for the runs of a batch after the batch's scan returned, so a
 * page it is told of is already protected. Runs are disjoint and in
 * address order, and adjacent written pages come as one run unless a write
 * lands meanwhile. It never allocates: no none page becomes a marker.
 * Context: any thread, not inside a read-side section (each batch takes the
 * writer mutex, as a WP_MATCHING scan does). @fn runs in the calling thread
 * between two batches, outside the writer mutex and the harvest's section,
 * so it may call any function; it cannot refuse a run (the pages are
 * already re-protected: a run it drops is a write lost).
 * Ordering: each batch is one ps_pgtable_scan(), so a write racing the
 * harvest is reported by it or by the next harvest (docs/pgtable.md,
 * "Get-and-rearm"). The registrations are read with acquire, once per batch.
 * Progress: blocking (the writer mutex, per batch); faults on the range run
 * concurrently and see each entry written or re-armed.
 * Return: 0; -EINVAL (range, unknown flags, @fn NULL); -ENOENT (a page of
 * the range not registered); -EPERM (PS_SCAN_CHECK_WPASYNC and a page not
 * registered async). Both are checked for the whole range before anything
 * changes; only a register or unregister by another thread between two
 * batches makes a later batch fail after @fn was told of earlier ones,
 * whose pages stay reported and re-armed. Never -ENOMEM.
 */
int ps_pgtable_harvest(struct ps_pgtable *t, uint64_t start, uint64_t len,
		       unsigned int flags, ps_pgtable_harvest_fn fn, void *ctx);

/**
 * ps_pgtable_harvest_order() - ps_pgtable_harvest(), with the granularity of
 * each run.
 * @t: the table.
 * @start: the first page (aligned).
 * @len: the length in bytes (a multiple of the page size, not 0).
 * @flags: as for ps_pgtable_harvest().
 * @fn: called with each run and its order (see ps_pgtable_harvest_order_fn);
 *	not NULL.
 * @ctx: passed to @fn.
 *
 * The same scan as ps_pgtable_harvest(), except that runs never mix pages
 * under huge leaves with 4 KiB entries, nor leaves of two orders: a run of
 * order 0 was written and re-armed 4 KiB at a time, a run of a huge order whole
 * leaf by whole leaf (in a PS_WP_HUGE_WHOLE range, or where the harvest covered
 * the leaf whole).
 * Context: as ps_pgtable_harvest(): not inside a read-side section; @fn
 * runs between two batches, outside the writer mutex.
 * Ordering: as ps_pgtable_harvest(); a huge leaf is re-armed by one seq_cst
 * CAS from the value reported, so a write racing it is reported by this
 * harvest or the next.
 * Progress: blocking (the writer mutex, per batch), as ps_pgtable_harvest().
 * Return: as ps_pgtable_harvest(); also -ENOMEM if a huge leaf that must be
 * split to be re-armed in part could not be (the runs before it were reported).
 */
int ps_pgtable_harvest_order(struct ps_pgtable *t, uint64_t start, uint64_t len,
			     unsigned int flags, ps_pgtable_harvest_order_fn fn,
			     void *ctx);

PS_END_DECLS

#endif /* PAGESTATE_PGTABLE_H */
