/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pgtable.h - a lock-free radix page table of ps_pte_t entries
 * (pagestate/pte.h) over a 48-bit address space of 4 KiB pages, with
 * userfaultfd-style write protection: registration, protect, faults, zaps
 * that keep protection where Linux does, and PAGEMAP_SCAN-style scans that
 * can harvest written pages and re-arm them atomically.
 *
 * ---------------------------------------------------------------------------
 * Shape and cost
 * ---------------------------------------------------------------------------
 *
 * Four levels of 512 (9 + 9 + 9 bits of leaf number, 9 bits of page in the
 * leaf). The root is part of the table; the other levels are allocated on
 * first use with a compare-and-swap, so empty ranges cost nothing and a
 * sparse 1 TiB space costs only its mapped leaves. A leaf is 512 entries
 * plus a 64-bit "written" hint (one bit per 8 entries, see Scans) and an
 * RCU head: 4160 bytes. A dense 1 GiB mapping costs 8.17 bytes per page,
 * the table itself included (ps_pgtable_stats()). Interior levels are freed only by ps_pgtable_trim(),
 * through liburcu's call_rcu, so a reader never touches freed memory.
 *
 * Every slot is read with an atomic load and every entry is changed only by
 * compare-and-swap. The protocol (who may run concurrently with whom, what a
 * concurrent fault sees) is at the top of lib/pgtable.c, with numbered
 * guarantees G1..G9 that the tests cite.
 *
 * ---------------------------------------------------------------------------
 * Readers and RCU
 * ---------------------------------------------------------------------------
 *
 * Every function here enters its own read-side section of liburcu's
 * "bulletproof" flavour (urcu-bp), which needs no thread registration: a
 * caller need not know about RCU at all. A read-side section costs a
 * function call into liburcu-bp each way (12 ns per lock+unlock pair on the
 * benchmark machine, more than the lookup itself), so the lookup fast path
 * leaves it to the caller:
 *
 *	ps_pgtable_read_lock();
 *	for (...)
 *		pte = ps_pgtable_lookup(t, addr);   // no section of its own
 *	ps_pgtable_read_unlock();
 *
 * ps_pgtable_read_lock() is urcu-bp's read lock, so a caller that already
 * uses urcu-bp may call ps_pgtable_lookup() from its own section instead.
 * Sections nest. Inside one, call only the functions that never block
 * (lookup, get, set, cmpxchg, swap_out, swap_in, zap, fault, map without
 * PS_PTE_UFFD_WP, copy and move without PS_KEEP_WP, report-only scans):
 * the others take the table's writer mutex, and ps_pgtable_unregister()
 * waits for readers while holding it. ps_pgtable_get() is the
 * self-contained, argument-checking lookup.
 *
 * ---------------------------------------------------------------------------
 * Write protection (Linux userfaultfd semantics; differences marked "Linux:")
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
 * P = POISONED, G = GUARD.
 *
 *   op              present         swap         none           marker
 *   --------------  --------------  -----------  -------------  -------------
 *   protect         +wp, -WRITE     +wp          U if markers   +U if U held;
 *                                                               P/G alone
 *   unprotect,      -wp (stays      -wp          -              -U (none if
 *   unregister      read-only)                                  U only)
 *   zap, shared     none, or U if   none, or U   -              U kept; G
 *                   wp                                          kept; P gone
 *   zap, anon or    none            none         -              G kept; U, P
 *   unregistered                                                gone
 *   zap UNMAP flag  none            none         -              none
 *   swap out        swap, wp kept   -            -              -
 *   swap in         -               present, wp  -              -
 *                                   kept
 *   copy, move      same; wp only   same; wp     -              P, G always;
 *                   with KEEP_WP    only with                   U only with
 *                                   KEEP_WP                     KEEP_WP
 *   map             -EEXIST         -EEXIST      present        present with
 *                                                               wp if U only,
 *                                                               else -EEXIST
 *
 * Faults (ps_pgtable_fault()), in priority order: POISONED, then GUARD, then
 * UFFD_WP (as Linux's handle_pte_marker()):
 *
 *   entry            read                       write
 *   ---------------  -------------------------  ----------------------------
 *   none, swap       MISSING                    MISSING
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
 * A UFFD_WP bit in a range that is no longer registered is stale: a fault
 * clears a stale marker lazily and proceeds as missing, and a write clears a
 * stale present bit in the same CAS that resolves it. Linux: the syzbot
 * "writable + uffd-wp" reports came from exactly such stale bits; here no
 * path can produce that entry (ps_pte_valid() refuses it everywhere).
 *
 * Where this differs from Linux, and why:
 *   - Anonymous zaps in async mode. Linux: the entry becomes none and
 *     PAGEMAP_SCAN reports no category for it; its documentation calls this
 *     "dirtying by dropping uffd-wp". Same here: the entry is none, reported
 *     with no category (the kernel's answer, so a bridge can compare page by
 *     page), and "counts as written" means exactly that its protection is
 *     gone: the next population is unprotected, hence PS_CAT_WRITTEN. A
 *     tracker that must treat the discarded contents as a change gets every
 *     removed entry, wp bit included, from the zap's visit callback.
 *   - Unprotect never makes an entry writable (Linux does when it can prove
 *     the page exclusive); the next write fault does, if MAYWRITE.
 *   - Protect, unprotect and WP_MATCHING scans on a range that is not fully
 *     registered fail with -ENOENT and change nothing. Linux: UFFDIO_WRITEPROTECT
 *     fails with -ENOENT too, PAGEMAP_SCAN silently skips such VMAs.
 *   - copy (fork) does not write-protect the parent for copy-on-write: the
 *     caller owns frames and their sharing.
 *   - No huge entries, no soft-dirty, no zero page: PS_CAT_HUGE,
 *     PS_CAT_SOFT_DIRTY and PS_CAT_PFNZERO are accepted in masks and never
 *     reported.
 *
 * ---------------------------------------------------------------------------
 * Scans (ps_pgtable_scan(), Linux's PAGEMAP_SCAN)
 * ---------------------------------------------------------------------------
 *
 * Categories keep the kernel's values and meanings (PAGE_IS_*), so a bridge
 * maps them one to one: a none entry has no category (only WPALLOWED from
 * its range); WRITTEN is "not none and not uffd-wp", so a UFFD_WP marker is
 * not written while a GUARD or POISONED marker is; SWAPPED is every
 * non-present, non-none entry (markers included, as in the kernel). Three
 * extensions, above the kernel's bits, tell the non-present forms apart.
 * Matching, merging, budget and resume are the kernel's: c = categories ^
 * inverted; all of category_mask and, if set, any of category_anyof_mask
 * must be in c; adjacent pages with equal c & return_mask merge into one
 * region; the walk stops when vec is full or max_pages pages were reported,
 * and walk_end says where to resume.
 *
 * PS_SCAN_WP_MATCHING re-protects every page it reports (get-and-rearm).
 * Guarantee (G7 in lib/pgtable.c): a write racing the scan is never lost; it
 * is reported by this scan or by the next one. Why: a write clears wp with
 * one CAS (and then makes sure its line's hint bit is set); the scanner
 * reports entry e only after its CAS from e to protect(e) succeeded, so a
 * write that landed after the scanner read e makes that CAS fail and the
 * scanner re-reads, and a write after the CAS finds the entry protected
 * again and leaves it written for the next scan.
 *
 * Leaves keep a "written" hint: one bit per 8 entries, set after any CAS
 * that makes an entry written, cleared by protect and WP_MATCHING scans for
 * the lines they cover (and set again where an entry stays written). A scan
 * whose query requires WRITTEN reads only hinted lines, so clean memory
 * costs one word per leaf.
 *
 * ---------------------------------------------------------------------------
 * Errors (negative errno; nothing is changed unless said otherwise)
 * ---------------------------------------------------------------------------
 *
 *   -EINVAL  unaligned address or length, zero length, a range past 2^48 or
 *            overflowing, unknown flags, an entry that is not ps_pte_valid()
 *   -ENOENT  protect/unprotect/WP scan/KEEP_WP on a range not fully
 *            registered; unregister of a range with no registration
 *   -EBUSY   register over an existing registration
 *   -EEXIST  map over a page that is not none or a UFFD_WP marker; copy or
 *            move into a range that is not all none
 *   -ENXIO   swap out of a non-present entry, swap in of a non-swap entry
 *   -EPERM   PS_SCAN_CHECK_WPASYNC and a page not registered async
 *   -EAGAIN  ps_pgtable_cmpxchg() found another value (returned in *expected)
 *   -ENOMEM  a level could not be allocated: range operations may have
 *            done a prefix of the range (its address is reported nowhere;
 *            repeat the call, every transition is idempotent)
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
#define PS_WP_ASYNC 0x1u	 /* writes resolve in place (else sync) */
#define PS_WP_SHARED 0x2u	 /* file/shmem-like backing (else anonymous) */
#define PS_WP_UNPOPULATED 0x4u /* protect none entries of anonymous ranges */
#define PS_WP_ALL (PS_WP_ASYNC | PS_WP_SHARED | PS_WP_UNPOPULATED)

/* Zap flags (ps_pgtable_zap()). */
#define PS_ZAP_UNMAP 0x1u /* unmap/truncate: drop every marker, GUARD too */

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
 * @PS_FAULT_MISSING: no page: none, swap, or a UFFD_WP marker. The caller
 *	maps (ps_pgtable_map(), which keeps a marker's protection) or swaps in,
 *	then retries.
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
#define PS_CAT_SWAPPED (UINT64_C(1) << 4) /* swap entry or marker */
#define PS_CAT_PFNZERO (UINT64_C(1) << 5) /* never reported */
#define PS_CAT_HUGE (UINT64_C(1) << 6)	  /* never reported */
#define PS_CAT_SOFT_DIRTY (UINT64_C(1) << 7) /* never reported */
#define PS_CAT_GUARD (UINT64_C(1) << 8)	     /* GUARD marker */
#define PS_CAT_WP (UINT64_C(1) << 16)	     /* uffd-wp, any form */
#define PS_CAT_MARKER (UINT64_C(1) << 17)    /* a marker */
#define PS_CAT_POISONED (UINT64_C(1) << 18)  /* POISONED marker */
#define PS_CAT_ALL                                                      \
	(PS_CAT_WPALLOWED | PS_CAT_WRITTEN | PS_CAT_FILE | PS_CAT_PRESENT | \
	 PS_CAT_SWAPPED | PS_CAT_PFNZERO | PS_CAT_HUGE |                    \
	 PS_CAT_SOFT_DIRTY | PS_CAT_GUARD | PS_CAT_WP | PS_CAT_MARKER |     \
	 PS_CAT_POISONED)

/* Scan flags: the kernel's PM_SCAN_* values. */
#define PS_SCAN_WP_MATCHING 0x1u   /* re-protect what is reported */
#define PS_SCAN_CHECK_WPASYNC 0x2u /* -EPERM unless all registered async */

/** struct ps_pgtable_region - pages [start, end) with equal categories. */
struct ps_pgtable_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

/**
 * struct ps_pgtable_scan - the arguments of ps_pgtable_scan(), field for
 * field Linux's struct pm_scan_arg (without its size).
 * @start: first page to scan (aligned).
 * @end: end of the scan, exclusive (aligned, >= @start).
 * @walk_end: out: where the walk stopped; @end when it completed. Resume
 *	with @start = @walk_end.
 * @flags: PS_SCAN_*.
 * @category_inverted: categories to invert before matching.
 * @category_mask: all of these must be set (after inversion).
 * @category_anyof_mask: if non-zero, at least one of these must be set.
 * @return_mask: the categories reported in each region. Zero: no regions.
 * @max_pages: stop after this many matching pages (0: no limit).
 * @vec: the regions found. May be NULL if @vec_len is 0.
 * @vec_len: room in @vec.
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

/** struct ps_pgtable_stats - memory the table holds now. */
struct ps_pgtable_stats {
	uint64_t bytes;	 /* table, levels and leaves */
	uint64_t leaves; /* leaves (512 entries each) */
	uint64_t nodes;	 /* interior levels, the root excluded */
};

/**
 * typedef ps_pgtable_visit_fn - told of each entry an operation changed.
 * @ctx: the caller's context.
 * @addr: the page whose entry changed (in the target table for a copy).
 * @old: the entry before (for a copy: the source entry).
 * @new: the entry after (none, a marker, or the copied entry).
 *
 * Context: runs inside the operation's read-side section, in the calling
 * thread, so it may call only the functions that never block (see
 * "Readers and RCU"), on this table or another.
 */
typedef void (*ps_pgtable_visit_fn)(void *ctx, uint64_t addr, ps_pte_t old,
				    ps_pte_t new_pte);

struct ps_pgtable;

/* --- lifetime ------------------------------------------------------------- */

/**
 * ps_pgtable_create() - a new, empty table.
 * Return: the table, or NULL if out of memory.
 */
struct ps_pgtable *ps_pgtable_create(void);

/**
 * ps_pgtable_destroy() - free the table, every level and every pending
 * deferred free. Entries are dropped without visiting them (zap first to
 * learn the frames).
 *
 * Context: no other thread may use the table; not inside a read-side
 * section (it waits for liburcu's callbacks). Progress: blocking.
 */
void ps_pgtable_destroy(struct ps_pgtable *t);

/** ps_pgtable_stats() - bytes, leaves and interior levels now held. */
void ps_pgtable_stats(const struct ps_pgtable *t, struct ps_pgtable_stats *st);

/* --- lookups -------------------------------------------------------------- */

/** ps_pgtable_read_lock() - enter a read-side section (urcu-bp; nests). */
void ps_pgtable_read_lock(void);

/** ps_pgtable_read_unlock() - leave it. */
void ps_pgtable_read_unlock(void);

/**
 * ps_pgtable_lookup() - the entry of the page holding @addr, fast path.
 *
 * Context: inside a read-side section (ps_pgtable_read_lock() or the
 * caller's own urcu-bp section). Ordering: acquire; pairs with the release
 * of the compare-and-swap that installed the entry, so a caller that reads a
 * frame also sees what the mapper wrote before mapping it. Progress:
 * wait-free (four loads).
 * Return: the entry; PS_PTE_NONE for an address past the space.
 */
ps_pte_t ps_pgtable_lookup(const struct ps_pgtable *t, uint64_t addr);

/**
 * ps_pgtable_get() - the entry of page @addr, in its own read-side section.
 *
 * The pin path of a caller is: get, pin the frame, get again and compare
 * (with a full fence between the pin and the second get, see page.h).
 * Ordering: acquire. Progress: wait-free.
 * Return: 0, or -EINVAL for an unaligned or out-of-space @addr.
 */
int ps_pgtable_get(const struct ps_pgtable *t, uint64_t addr, ps_pte_t *pte);

/* --- single entries --------------------------------------------------------- */

/**
 * ps_pgtable_set() - store @pte at page @addr, whatever was there.
 * @old: if not NULL, receives the previous entry.
 *
 * A raw store: no registration check. Storing a uffd-wp entry outside a
 * registered range leaves a stale bit that faults clear lazily.
 * Ordering: acquire and release. Progress: lock-free (CAS loop).
 * Return: 0; -EINVAL (bad address, !ps_pte_valid(@pte)); -ENOMEM.
 */
int ps_pgtable_set(struct ps_pgtable *t, uint64_t addr, ps_pte_t pte,
		   ps_pte_t *old);

/**
 * ps_pgtable_cmpxchg() - replace *@expected by @desired at page @addr.
 *
 * Ordering: acquire and release on success, acquire on failure.
 * Progress: wait-free (one CAS, plus level allocation).
 * Return: 0 if replaced; -EAGAIN if the entry was another value, now in
 * *@expected; -EINVAL; -ENOMEM.
 */
int ps_pgtable_cmpxchg(struct ps_pgtable *t, uint64_t addr,
		       ps_pte_t *expected, ps_pte_t desired);

/**
 * ps_pgtable_swap_out() - replace the present entry at @addr by a swap
 * entry (@type, @offset), keeping its uffd-wp bit.
 * @flags: 0 or PS_PTE_SWP_EXCLUSIVE.
 * @old: if not NULL, receives the present entry (its frame is now free).
 *
 * Progress: lock-free. Return: 0; -ENXIO if the entry is not present;
 * -EINVAL.
 */
int ps_pgtable_swap_out(struct ps_pgtable *t, uint64_t addr, unsigned int type,
			uint64_t offset, uint64_t flags, ps_pte_t *old);

/**
 * ps_pgtable_swap_in() - replace the swap entry at @addr by a present entry
 * for @frame with @flags (PS_PTE_PRESENT_FLAGS without UFFD_WP), keeping the
 * swap entry's uffd-wp bit (then WRITE is dropped).
 * @old: if not NULL, receives the swap entry (its slot is now free).
 *
 * Progress: lock-free. Return: 0; -ENXIO if the entry is not a swap entry;
 * -EINVAL.
 */
int ps_pgtable_swap_in(struct ps_pgtable *t, uint64_t addr, uint64_t frame,
		       uint64_t flags, ps_pte_t *old);

/* --- ranges ----------------------------------------------------------------------- */

/**
 * ps_pgtable_map() - map frames @frame, @frame + 1, ... at [@start, @start +
 * @len) with @flags (PS_PTE_PRESENT_FLAGS).
 *
 * Every page must be none or a marker holding only UFFD_WP; the marker's
 * protection is kept (Linux installs the new PTE with uffd-wp). With
 * PS_PTE_UFFD_WP in @flags the range must be registered (Linux's
 * UFFDIO_COPY_MODE_WP). Pages are checked first, so -EEXIST changes nothing
 * unless another thread maps the same pages meanwhile (see lib/pgtable.c,
 * the exclusion table).
 * Progress: lock-free (blocking with PS_PTE_UFFD_WP: writer mutex).
 * Return: 0; -EINVAL; -EEXIST; -ENOENT; -ENOMEM.
 */
int ps_pgtable_map(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   uint64_t frame, uint64_t flags);

/**
 * ps_pgtable_register() - register [@start, @start + @len) for write
 * protection with @flags (PS_WP_*). Entries are not touched.
 *
 * Progress: blocking (writer mutex; readers and faults never wait).
 * Return: 0; -EINVAL; -EBUSY if any page is registered already; -ENOMEM.
 */
int ps_pgtable_register(struct ps_pgtable *t, uint64_t start, uint64_t len,
			unsigned int flags);

/**
 * ps_pgtable_unregister() - end the registrations inside [@start, @start +
 * @len) (splitting those that straddle it) and clear every write-protect
 * state in the range: uffd-wp bits and UFFD_WP markers.
 *
 * Context: not inside a read-side section (it waits for a grace period, so
 * no operation that saw the old registration is still running when it
 * clears the range). Progress: blocking.
 * Return: 0; -EINVAL; -ENOENT if no page of the range was registered;
 * -ENOMEM.
 */
int ps_pgtable_unregister(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_protect() - write-protect [@start, @start + @len)
 * (UFFDIO_WRITEPROTECT with MODE_WP): see the transition table.
 *
 * Progress: blocking (writer mutex); each entry is one CAS, so faults run
 * concurrently and see each entry before or after.
 * Return: 0; -EINVAL; -ENOENT unless every page is registered; -ENOMEM
 * (markers need levels).
 */
int ps_pgtable_protect(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_unprotect() - remove write protection from [@start, @start +
 * @len) (UFFDIO_WRITEPROTECT mode 0): see the transition table.
 * Return: 0; -EINVAL; -ENOENT unless every page is registered.
 */
int ps_pgtable_unprotect(struct ps_pgtable *t, uint64_t start, uint64_t len);

/**
 * ps_pgtable_zap() - clear [@start, @start + @len) (see the transition
 * table for what survives as a marker).
 * @flags: 0 or PS_ZAP_UNMAP.
 * @visit: if not NULL, called for every entry changed, with the old entry:
 *	the caller drops its references to the frames and swap slots.
 *
 * Progress: lock-free; never allocates.
 * Return: 0; -EINVAL.
 */
int ps_pgtable_zap(struct ps_pgtable *t, uint64_t start, uint64_t len,
		   unsigned int flags, ps_pgtable_visit_fn visit, void *ctx);

/**
 * ps_pgtable_copy() - copy [@start, @start + @len) of @src into the same
 * addresses of @dst (fork). uffd-wp state is copied only with PS_KEEP_WP
 * (then @dst's range must be registered); POISONED and GUARD markers always.
 * @visit: if not NULL, called for every entry written into @dst (old = the
 *	source entry): the caller takes its references for the copy.
 *
 * @dst's range must be all none (checked first, -EEXIST). @src may change
 * meanwhile; each entry is copied as one atomic snapshot.
 * Return: 0; -EINVAL (also @dst == @src); -EEXIST; -ENOENT; -ENOMEM.
 */
int ps_pgtable_copy(struct ps_pgtable *dst, const struct ps_pgtable *src,
		    uint64_t start, uint64_t len, unsigned int flags,
		    ps_pgtable_visit_fn visit, void *ctx);

/**
 * ps_pgtable_move() - move the entries of [@from, @from + @len) to [@to,
 * @to + @len) (mremap). uffd-wp state is dropped unless PS_KEEP_WP (then the
 * target must be registered), as Linux does without UFFD_EVENT_REMAP.
 *
 * The target must be all none (-EEXIST). Each entry is installed at the
 * target before it is cleared at the source, so a reader may see a page in
 * both places for a moment, never in neither; a fault racing the move on
 * the source is carried over.
 * Return: 0; -EINVAL (also overlapping ranges); -EEXIST; -ENOENT; -ENOMEM.
 */
int ps_pgtable_move(struct ps_pgtable *t, uint64_t from, uint64_t to,
		    uint64_t len, unsigned int flags);

/**
 * ps_pgtable_trim() - free the levels of [@start, @start + @len) that hold
 * only none entries (leaves wholly inside the range, then interior levels
 * left empty). Freed through call_rcu: readers never touch freed memory.
 *
 * Context: no thread may store into the range meanwhile (set, cmpxchg, map,
 * swap, copy or move into it): see the exclusion table in lib/pgtable.c.
 * Progress: blocking (writer mutex).
 * Return: 0; -EINVAL.
 */
int ps_pgtable_trim(struct ps_pgtable *t, uint64_t start, uint64_t len);

/* --- faults and scans ------------------------------------------------------------- */

/**
 * ps_pgtable_fault_pte() - classify an access to page @addr and resolve it
 * where the semantics say so (see the fault table above).
 * @access: PS_ACCESS_READ or PS_ACCESS_WRITE, optionally
 *	PS_ACCESS_RESOLVE_WP and PS_ACCESS_CHECK (classify, change nothing).
 * @pte: if not NULL, receives the entry as the fault left it (with
 *	PS_ACCESS_CHECK, as it was read).
 *
 * Ordering: acquire and release (the resolving CAS; an acquire load only
 * with PS_ACCESS_CHECK). Progress: lock-free (wait-free with
 * PS_ACCESS_CHECK); never blocks, even during protect, zap, scan or
 * (un)registration.
 */
enum ps_fault ps_pgtable_fault_pte(struct ps_pgtable *t, uint64_t addr,
				   unsigned int access, ps_pte_t *pte);

/** ps_pgtable_fault() - ps_pgtable_fault_pte() without the entry. */
enum ps_fault ps_pgtable_fault(struct ps_pgtable *t, uint64_t addr,
			       unsigned int access);

/**
 * ps_pgtable_scan() - report pages of [arg->start, arg->end) by category,
 * and with PS_SCAN_WP_MATCHING re-protect them (see Scans above).
 *
 * Progress: report-only scans are lock-free and never block; a
 * WP_MATCHING scan takes the writer mutex (it protects).
 * Return: the number of regions written to arg->vec; -EINVAL (alignment,
 * range, unknown flags or categories, vec NULL with vec_len); -ENOENT
 * (WP_MATCHING on a range not fully registered); -EPERM
 * (PS_SCAN_CHECK_WPASYNC); -ENOMEM. arg->walk_end is set on success.
 */
long ps_pgtable_scan(struct ps_pgtable *t, struct ps_pgtable_scan *arg);

PS_END_DECLS

#endif /* PAGESTATE_PGTABLE_H */
