/* SPDX-License-Identifier: MIT */
/*
 * pagestate/uffd.h - the Linux bridge: mirror the library's write protection
 * onto real memory with userfaultfd, and collect the writes the CPU makes to
 * it, so that a VMM tracks guest writes (kernel) and device or software
 * writes (library) in one place.
 *
 * Built on Linux only (meson option `uffd`, auto: on for Linux); elsewhere
 * this header still compiles but the functions are not in the library
 * (PS_HAVE_UFFD in pagestate/config.h is 1 or 0, and
 * `pkg-config --variable=uffd pagestate` says yes or no).
 *
 * ---------------------------------------------------------------------------
 * Model
 * ---------------------------------------------------------------------------
 *
 * An attachment ties the caller's mapping [host, host + len) (mmap'd anonymous
 * memory, or a shared mapping of a memfd/shmem file; not hugetlb, see Backing)
 * to the library range [addr, addr + len) of a struct ps_space or of a bare
 * struct ps_pgtable: host + i corresponds to addr + i. The library's table
 * stays the authority; the kernel mirrors it:
 *
 *   - ps_uffd_attach_*() opens a userfaultfd, negotiates the features the
 *     mode needs, registers the library range (ps_pgtable_register()) and
 *     the host range (UFFDIO_REGISTER_MODE_WP), in this order.
 *   - ps_uffd_protect() / ps_uffd_unprotect() are the explicit bridge calls
 *     that change both: the library range first (ps_pgtable_protect()), then
 *     the host range (UFFDIO_WRITEPROTECT). Explicit calls, not hooks in
 *     pgtable: the page table stays free of system calls, and a caller that
 *     protects through ps_pgtable_protect() directly changes the library
 *     only (that is allowed; the kernel then simply sees fewer faults).
 *   - Sync mode: a write to a protected host page blocks its writer and
 *     queues a message. The handler (a thread the library runs with
 *     PS_UFFD_THREAD, or the caller's loop calling ps_uffd_handle_events() when
 *     ps_uffd_fd() is readable) marks the library page written (for a space:
 *     the frame dirty and the address in the dirty log, as ps_space_fault()
 *     with PS_ACCESS_RESOLVE_WP does), un-protects the page in both places and
 *     wakes the writer (UFFDIO_WRITEPROTECT mode 0, which wakes).
 *   - Async mode (UFFD_FEATURE_WP_ASYNC): the kernel resolves writes in
 *     place. ps_uffd_harvest() collects them with PAGEMAP_SCAN
 *     (PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, category WRITTEN: a
 *     get-and-rearm per page) and merges them with the library's own
 *     written state: a space's dirty log and async entries
 *     (ps_space_harvest() with PS_HARVEST_REARM), or a bare table's written
 *     entries (its WP_MATCHING scan). One call returns CPU writes and
 *     device/software writes, and leaves both re-armed.
 *   - ps_uffd_discard() is a space's balloon discard (ps_space_discard())
 *     through the bridge: the space drops the pages and its free_frame
 *     hook releases their memory, then the bridge brings the kernel's side
 *     into agreement and logs the pages for the next harvest (see
 *     "Discarding attached memory").
 *
 * Backing: PS_UFFD_SHARED for memfd/shmem (the library range is registered
 * PS_WP_SHARED, so protection survives zaps as UFFD_WP markers, as the
 * kernel's does); anonymous otherwise. The caller says which; the bridge
 * cannot see it. Transparent huge pages are fine (the kernel splits a huge
 * PMD to protect part of it). Hugetlb memory (hugetlbfs, MAP_HUGETLB,
 * memfd MFD_HUGETLB) is not supported: the kernel write-protects only
 * whole huge pages there (UFFDIO_WRITEPROTECT of one 4 KiB page fails,
 * and PAGEMAP_SCAN cannot re-arm part of a huge page), while the library
 * tracks 4 KiB pages. Attach reads the page size of the host range's
 * mappings (PROCMAP_QUERY, or /proc/self/smaps before Linux 6.11) and
 * refuses hugetlb with -EOPNOTSUPP, @why "HUGETLB". Hugetlb mapped over an
 * attached range afterwards breaks the contract ("stays mapped"); the
 * bridge then fails the calls the kernel refuses (harvest: -EOPNOTSUPP;
 * protect: the ioctl's errno) instead of looping or reporting success.
 *
 * One userfaultfd per attachment, so a mode is per attachment and a VMM with
 * several RAM regions attaches each (and polls several fds in sync mode).
 *
 * Opening: userfaultfd(2) without UFFD_USER_MODE_ONLY first (the kernel's
 * own accesses, e.g. a read(2) into guest memory, are handled too); if that
 * is refused, /dev/userfaultfd; if that is refused too, userfaultfd(2) with
 * UFFD_USER_MODE_ONLY, where a kernel-mode write to a protected page in sync
 * mode fails with EFAULT instead of being handled (async mode is
 * unaffected). ps_uffd_stats() says which was used.
 *
 * Features (UFFDIO_API; a missing one fails with -EOPNOTSUPP and @why names
 * it): WP_ASYNC for PS_UFFD_ASYNC, WP_UNPOPULATED for PS_UFFD_ASYNC and
 * PS_UFFD_UNPOPULATED, WP_HUGETLBFS_SHMEM for PS_UFFD_SHARED; PAGEMAP_SCAN
 * for PS_UFFD_ASYNC (checked at attach).
 *
 * ---------------------------------------------------------------------------
 * Discarding attached memory (a balloon, free page reporting)
 * ---------------------------------------------------------------------------
 *
 * Discard pages of a space attachment with ps_uffd_discard(), never behind
 * the bridge. A VMM that gives attached host pages back itself
 * (MADV_DONTNEED, MADV_FREE, MADV_REMOVE, fallocate(PUNCH_HOLE)), or
 * discards them with ps_space_discard() alone, leaves the kernel and the
 * library in disagreement, and a migration's destination keeps stale pages:
 *   - the discarded contents (zero from then on) are reported only in
 *     async anonymous mode, where the kernel reports the none PTE its zap
 *     left. With memfd backing both sides keep the page protected (a
 *     UFFD_WP marker), so nothing says its contents changed (MADV_DONTNEED
 *     alone is harmless there: the page cache keeps the contents); in sync
 *     anonymous mode nothing reports it either;
 *   - sync anonymous mode also loses later writes: the kernel's zap drops
 *     uffd-wp with the page, so writes there no longer fault, while the
 *     library still holds its entry protected (a discard behind its back)
 *     or holds a hole it cannot protect (ps_space_discard(), then the
 *     frame mapped again): the page is never reported nor protected again.
 * The bridge cannot see such discards: it does not negotiate
 * UFFD_FEATURE_EVENT_REMOVE, whose events would block every madvise() of
 * the range until a handler read them (async mode has none). So a VMM
 * whose balloon or free page reporting releases guest memory calls
 * ps_uffd_discard() for those pages, and lets the space's free_frame hook
 * release the host memory. A bare table's attachment has no discard.
 *
 * ---------------------------------------------------------------------------
 * Where the live kernel differs from its documentation and from the library
 * (measured on Linux 6.18; tests/test-uffd.c compares them page by page)
 * ---------------------------------------------------------------------------
 *
 *   - None entries. PAGEMAP_SCAN reports PAGE_IS_WRITTEN for a none PTE and
 *     for a hole with no page table inside a registered async range
 *     (with WPALLOWED), and for a none PTE inside a populated page table
 *     everywhere else; its documentation says "none PTE -> 0 categories". The
 *     library reports WRITTEN for a WRITTEN marker, which its zap leaves of a
 *     page written since it was last protected in an async range (the kernel's
 *     none PTE there, and reported the same: WRITTEN, not SWAPPED, no uffd-wp),
 *     and no category for a none entry: a page never protected, or protected
 *     when it was zapped (pgtable.h, "Where this differs from Linux"). A
 *     comparison maps the WRITTEN marker <=> the kernel's none PTE, and library
 *     none <=> kernel WRITTEN. A harvest (WP_MATCHING, WRITTEN) reports a page
 *     written and then discarded from both sides, and each re-arms it as a
 *     UFFD_WP marker. The kernel also reports, once, each none PTE the library
 *     leaves none (the documentation's "dirtying by dropping uffd-wp" of a
 *     protected page): ps_uffd_harvest() reports what the kernel reports, and
 *     turns the library's none entry there into a UFFD_WP marker as the kernel
 *     did, so that both stay protected alike (found by the differential test).
 *   - Shmem hole punch. fallocate(PUNCH_HOLE) and MADV_REMOVE of a
 *     protected memfd page leave a UFFD_WP marker: protection is kept, as
 *     for MADV_DONTNEED and MADV_PAGEOUT (which unmaps the page even with
 *     no swap device). The documentation's truncation path drops markers
 *     (ZAP_FLAG_DROP_MARKER); the live kernel does not for a hole punch. The
 *     library's zap without PS_ZAP_UNMAP does the same as the kernel, and
 *     that is what a caller should apply to its table for these.
 *   - Read faults on an anonymous UFFD_WP marker map the zero page, still
 *     protected (PAGE_IS_PFNZERO); the library has no zero page and maps a
 *     frame, protected too. PFNZERO is not compared.
 *   - PAGE_IS_FILE: the kernel knows the backing of every page; the library
 *     knows it only through a registration (PS_WP_SHARED), so after
 *     ps_uffd_detach() a memfd page is FILE to the kernel and not to the
 *     library.
 *   - Anonymous MADV_PAGEOUT without a swap device is a no-op; MADV_REMOVE
 *     on anonymous memory is EINVAL; mprotect() never changes uffd-wp;
 *     un-protecting a UFFD_WP marker removes it (none); UFFDIO_UNREGISTER
 *     clears every uffd-wp bit and marker of the range. All as the library
 *     (ps_pgtable_unregister() clears the same).
 *   - Sync anonymous ranges without WP_UNPOPULATED: UFFDIO_WRITEPROTECT skips a
 *     page with no PTE (never touched, or zapped: MADV_DONTNEED drops uffd-wp
 *     with the page), and a write there maps a new page unprotected, without a
 *     fault; the library protects its present entry whatever the host page
 *     holds. So the bridge gives those host pages a PTE (the zero page) before
 *     it protects them, and a page ps_uffd_discard() drops gets one at once
 *     (the library's hole there cannot be protected either).
 *
 * ---------------------------------------------------------------------------
 * Concurrency
 * ---------------------------------------------------------------------------
 *
 * Protect, unprotect, harvest, the resolution of each fault and the kernel's
 * half of a discard hold the attachment's mutex across "library, then kernel",
 * so the two never disagree on a page for longer than one such call: without
 * it, a fault resolved (un-protected in both) while a protect runs could leave
 * the library protected and the kernel not, and later writes would go unseen. A
 * call whose kernel half fails reports it and leaves the library no more
 * protected than the kernel (ps_uffd_protect(), ps_uffd_handle_events()).
 * Faults on the library side (ps_pgtable_fault(), ps_space_fault(), pins) take
 * no bridge lock, and neither does the space's half of a discard (its
 * free_frame hook and notifier callbacks may write to protected memory: the
 * faults are resolved meanwhile).
 *
 * What a harvest guarantees: every write that completes after the harvest
 * re-armed its page is reported by a later harvest; a write that raced the
 * harvest is in the page's contents by the time the harvest returns (async:
 * PAGEMAP_SCAN's get-and-rearm is atomic per page; sync: the page is reported
 * first, then re-protected, and a write in between finds it still writable).
 * Copy the reported pages after the harvest returns, as with KVM's dirty log.
 *
 * Sync mode: the thread that calls ps_uffd_handle_events() must not itself
 * write to protected attached memory (it would wait for itself). And a
 * fault's resolution holds the attachment's mutex while it takes, for a
 * space, the LOCKED bit of the page's frame (as ps_space_fault() does; the
 * dirty hook runs under both). So a thread that holds a frame's LOCKED
 * bit - in the make_accessible hook (pagestate/prot.h), in a dirty hook
 * run by a write fault, in a notifier callback of write-back's
 * PS_NOTIFIER_PROTECTION invalidation - must not write to sync-protected memory
 * of a space attachment: its write waits for a resolution, which waits for that
 * bit if the page is the frame's, or holds the mutex while another fault waits
 * for it: a deadlock (detach, which joins the handler thread, included). Nor
 * may such a thread, or a dirty hook, call ps_uffd_protect(),
 * ps_uffd_unprotect(), ps_uffd_harvest(), ps_uffd_discard() or
 * ps_uffd_handle_events() of that attachment: the mutex is not recursive.
 *
 * Errors (negative errno): -EINVAL bad arguments, -EOPNOTSUPP a missing
 * kernel feature (@why names it), -ENOSYS no userfaultfd, -EPERM userfaultfd
 * refused, -EBUSY the library range is already registered, -ENOENT a range
 * outside the attachment, -ENOMEM, or the errno of a failed system call.
 */
#ifndef PAGESTATE_UFFD_H
#define PAGESTATE_UFFD_H

#include <pagestate/compiler.h>
#include <pagestate/config.h>
#include <pagestate/pgtable.h>
#include <pagestate/space.h>

#include <stdint.h>

PS_BEGIN_DECLS

/* Attachment flags (struct ps_uffd_config). */
#define PS_UFFD_ASYNC 0x1u	 /* WP_ASYNC: resolve in place (else sync) */
#define PS_UFFD_SHARED 0x2u	 /* memfd/shmem backing (else anonymous) */
#define PS_UFFD_UNPOPULATED 0x4u /* sync anonymous: protect none PTEs too */
#define PS_UFFD_THREAD 0x8u	 /* sync: the library runs the handler thread */
#define PS_UFFD_ALL \
	(PS_UFFD_ASYNC | PS_UFFD_SHARED | PS_UFFD_UNPOPULATED | PS_UFFD_THREAD)

/* How the userfaultfd was opened (struct ps_uffd_stats.opened). */
#define PS_UFFD_OPENED_SYSCALL 1   /* userfaultfd(2), kernel faults too */
#define PS_UFFD_OPENED_DEV 2	   /* /dev/userfaultfd */
#define PS_UFFD_OPENED_USER_ONLY 3 /* userfaultfd(2), UFFD_USER_MODE_ONLY */

/**
 * struct ps_uffd_config - what to attach.
 * @host: the caller's mapping, page-aligned. It must stay mapped until
 *	ps_uffd_detach().
 * @addr: the library address that @host corresponds to (page-aligned).
 * @len: bytes (page-aligned, not 0).
 * @flags: PS_UFFD_*.
 * @why: if not NULL, receives on failure a static string naming what
 *	failed: the missing feature ("WP_ASYNC", "WP_UNPOPULATED",
 *	"WP_HUGETLBFS_SHMEM", "PAGEMAP_SCAN"), "HUGETLB" for hugetlb memory,
 *	or the step ("userfaultfd", "UFFDIO_API", "/proc/self/maps",
 *	"UFFDIO_REGISTER", "library range", ...); NULL on success.
 */
struct ps_uffd_config {
	void *host;
	uint64_t addr;
	uint64_t len;
	unsigned int flags;
	const char **why;
};

/**
 * struct ps_uffd_stats - counters of one attachment (monotonic).
 *
 * @errors counts the failures of sync fault handling, the handler thread's
 * included, which has no caller to return them to: a failed read(2) of the
 * userfaultfd, a fault whose UFFDIO_WRITEPROTECT failed (its writer stays
 * blocked, see ps_uffd_handle_events()), a failed poll(2) or an error
 * condition on the userfaultfd in the handler thread (which then pauses
 * 10 ms and goes on: writers blocked on a fault have no one else to wake
 * them). A caller of PS_UFFD_THREAD should watch it.
 */
struct ps_uffd_stats {
	uint64_t faults;       /* sync write-protect faults resolved */
	uint64_t mismatches;   /* faults on pages the library did not protect */
	uint64_t harvested;    /* pages reported by harvests */
	uint64_t kernel_pages; /* of which PAGEMAP_SCAN reported (async) */
	uint64_t errors;       /* failures of sync fault handling */
	int last_error;	       /* the latest one's negative errno, 0 if none */
	int opened;	       /* PS_UFFD_OPENED_* */
};

struct ps_uffd;

/**
 * ps_uffd_probe() - can this process attach with @flags?
 * @flags: PS_UFFD_*.
 * @why: if not NULL, receives what is missing (as ps_uffd_config.why), or
 *	NULL when nothing is.
 *
 * Opens a userfaultfd as an attachment would (see "Opening"), asks the
 * kernel for its features (UFFDIO_API) and closes it; with PS_UFFD_ASYNC
 * also tries an empty PAGEMAP_SCAN on /proc/self/pagemap. Attaches
 * nothing; the attach itself checks the page size too.
 * Context: any thread; touches no library state.
 * Ordering: none (no shared state).
 * Progress: blocking (system calls).
 * Return: 0; -EINVAL for unknown flags (@why "flags"); -EOPNOTSUPP with @why
 * naming the missing feature; the errno of opening a userfaultfd (-ENOSYS,
 * -EPERM, ...; @why "userfaultfd") or of UFFDIO_API (@why "UFFDIO_API").
 */
int ps_uffd_probe(unsigned int flags, const char **why);

/**
 * ps_uffd_attach_space() - attach host memory to [cfg->addr, cfg->addr +
 * cfg->len) of @space (see Model).
 * @space: the space whose page table mirrors the memory.
 * @cfg: what to attach; the range must lie inside the space.
 * @out: receives the attachment.
 *
 * Checks the arguments, the 4 KiB page size, the kernel features the flags need
 * and that no mapping of the host range is hugetlb (see Backing), then opens
 * the userfaultfd (and /proc/self/pagemap for PS_UFFD_ASYNC), registers the
 * library range with PS_WP_ASYNC / PS_WP_SHARED / PS_WP_UNPOPULATED as the
 * flags say (so it must not be registered yet: -EBUSY), registers the host
 * range for write protection, and with PS_UFFD_THREAD starts the handler
 * thread. Nothing is protected yet: call ps_uffd_protect().
 * Context: any thread, not inside a read-side section (registering takes
 * the table's writer mutex, and undoing a failed attach waits for a grace
 * period). The memory must stay mapped until ps_uffd_detach().
 * Ordering: the library range is registered before the host range, and
 * the handler thread starts after both; *@out is written last.
 * Progress: blocking (system calls, the table's writer mutex).
 * Return: 0; -EINVAL for bad arguments (PS_UFFD_ASYNC with PS_UFFD_THREAD
 * included; @why "arguments"); -EOPNOTSUPP (pages not 4 KiB, a missing
 * feature, hugetlb memory: @why "HUGETLB"); -ENOSYS or -EPERM (no
 * userfaultfd); -EBUSY; -ENOMEM; -ECHILD in a child of a plain fork() (@why
 * "fork"; pagestate/fork.h); or the errno of a failed step, which @why
 * names (reading the host range's mappings: "/proc/self/maps"). On
 * failure nothing is left registered or open.
 */
int ps_uffd_attach_space(struct ps_space *space,
			 const struct ps_uffd_config *cfg,
			 struct ps_uffd **out);

/**
 * ps_uffd_attach_pgtable() - the same for a bare page table: the pages a
 * harvest returns are the kernel's and the table's written entries.
 * @t: the table.
 * @cfg: what to attach.
 * @out: receives the attachment.
 *
 * As ps_uffd_attach_space(), without a space: sync faults resolve with
 * ps_pgtable_fault() (no frame, no dirty log), and written entries are
 * found by the table's get-and-rearm scan.
 * Context: as ps_uffd_attach_space().
 * Ordering: as ps_uffd_attach_space().
 * Progress: blocking.
 * Return: as ps_uffd_attach_space().
 */
int ps_uffd_attach_pgtable(struct ps_pgtable *t,
			   const struct ps_uffd_config *cfg,
			   struct ps_uffd **out);

/**
 * ps_uffd_detach() - stop the handler thread, unregister the host range
 * (the kernel clears its protection and markers) and the library range
 * (ps_pgtable_unregister(): the same), close the descriptors, free @u.
 * @u: the attachment.
 *
 * Writers blocked on a sync fault are woken by the unregistration of the host
 * range. Nothing a harvest collected is lost: for a space, the pages still in
 * the attachment's log (CPU writes an async harvest's budget left for the next
 * call) move into the space's dirty log, where ps_space_harvest() reports them,
 * and the space's own pages never leave its log unless a harvest returned
 * them. Not collected: async CPU writes since the last harvest, which only the
 * kernel's page tables hold and UFFDIO_UNREGISTER clears (harvest first to have
 * them). A bare table has no dirty log: pages left in the attachment's log are
 * dropped, but unregistering the library range clears every uffd-wp bit, so its
 * scan reports each present entry of the range as written (and each page
 * discarded while written, a WRITTEN marker that unregistering keeps).
 * In a child of fork(), an attachment inherited from the parent is only
 * forgotten: the child's copies of its descriptors are closed, and
 * nothing else happens (its userfaultfd would act on the parent's memory,
 * its eventfd would stop the parent's thread; pagestate/fork.h, rule 2).
 * Context: no other call on @u may run concurrently or follow (stop the
 * caller's ps_uffd_handle_events() loop first); not inside a read-side
 * section (ps_pgtable_unregister() waits for a grace period).
 * Ordering: the handler thread is joined first, so its last resolution happens
 * before the return; the host range is unregistered before the library range.
 * Progress: blocking (the join, system calls, a grace period).
 * Return: 0, or the first error (every step is still done): the errno of
 * stopping the thread or of UFFDIO_UNREGISTER, or ps_pgtable_unregister()'s
 * (-ENOENT if the library range was unregistered behind the bridge).
 */
int ps_uffd_detach(struct ps_uffd *u);

/**
 * ps_uffd_protect() - write-protect library range [@addr, @addr + @len) of the
 * attachment: ps_pgtable_protect(), then UFFDIO_WRITEPROTECT on the host pages.
 * @u: the attachment.
 * @addr: the first library page (aligned).
 * @len: bytes (a non-zero multiple of the page size).
 *
 * Sync anonymous attachments without PS_UFFD_UNPOPULATED: the kernel can
 * protect only a host page that has a page-table entry, and a write to a page
 * without one maps a new page unprotected, without a fault. So the host pages
 * under the library's present entries get one first, with MADV_POPULATE_READ
 * (read-faulting each page before Linux 5.14): the zero page where the memory
 * was never touched, which costs page tables (2 MiB per GiB), no memory, and a
 * fault per page the first time. PS_UFFD_UNPOPULATED (the kernel protects holes
 * with markers) avoids those faults where the kernel has it. The library's
 * holes are left alone: a frame mapped there later is not protected in either.
 * Context: any thread; not inside a read-side section (the table's writer
 * mutex).
 * Ordering: U1 (lib/uffd.c): the attachment's mutex is held across
 * "library, then kernel", so protects, unprotects, fault resolutions and
 * harvests of the attachment never interleave halfway; each entry changes
 * with the table's release CAS.
 * Progress: blocking (the attachment's mutex, the table's writer mutex, an
 * ioctl, retried while the kernel says EAGAIN).
 * Return: 0; -EINVAL (zero, unaligned or overflowing range); -ENOENT
 * (outside the attachment, or the library range no longer registered);
 * -ENOMEM (markers need table levels); after these the kernel is not touched.
 * Or the errno of the ioctl (-EINVAL for hugetlb memory mapped there since the
 * attach) or of populating the host pages: then the library range is
 * unprotected again and the host range may be partly protected, the side that
 * loses no write (sync: a write there faults and is resolved; async: the next
 * harvest reports each page of the range). Retry, or detach.
 */
int ps_uffd_protect(struct ps_uffd *u, uint64_t addr, uint64_t len);

/**
 * ps_uffd_unprotect() - the reverse: ps_pgtable_unprotect(), then
 * UFFDIO_WRITEPROTECT mode 0, which also wakes writers blocked on these pages.
 * @u: the attachment.
 * @addr: the first library page (aligned).
 * @len: bytes (a non-zero multiple of the page size).
 *
 * What harvests make of these pages: async, the next one reports each as
 * written and re-arms it (the kernel's WRITTEN means "not protected");
 * sync, a write to them no longer faults, and only a bare table's harvest
 * still reports them (its unprotected entries count as written).
 * Context: as ps_uffd_protect().
 * Ordering: as ps_uffd_protect() (U1).
 * Progress: blocking, as ps_uffd_protect().
 * Return: as ps_uffd_protect() (no -ENOMEM: unprotect allocates nothing);
 * after an ioctl error the library range is unprotected and the host range
 * may still be protected.
 */
int ps_uffd_unprotect(struct ps_uffd *u, uint64_t addr, uint64_t len);

/**
 * ps_uffd_fd() - the userfaultfd, non-blocking, for the caller's poll or
 * epoll loop (readable when sync faults are queued).
 * @u: the attachment.
 *
 * Do not read it or close it; call ps_uffd_handle_events().
 * Context: any thread, from attach to detach.
 * Ordering: none: the descriptor does not change while attached.
 * Progress: wait-free.
 * Return: the descriptor.
 */
int ps_uffd_fd(const struct ps_uffd *u);

/**
 * ps_uffd_handle_events() - resolve the queued sync faults (see Model),
 * without blocking.
 * @u: a sync attachment without PS_UFFD_THREAD.
 * @max: the most faults to resolve (0: until none is queued).
 *
 * Messages that are not write-protect faults inside the attachment are
 * read and dropped. A fault whose library side does not return
 * PS_FAULT_OK (no page there, a marker, no write permission) is resolved
 * in the kernel all the same, with the library page unprotected to match,
 * and counted in ps_uffd_stats().mismatches.
 * Context: the caller's thread, which must not itself write to protected
 * attached memory (it would wait for itself); not inside a read-side
 * section, nor holding a frame's LOCKED bit (see Concurrency: each
 * resolution takes one). Concurrent calls are safe.
 * Ordering: U2 (lib/uffd.c): each fault is recorded (library entry
 * resolved as a write, address logged) before its writer is woken, so a
 * harvest that runs after the write reports it; U1 orders each resolution
 * against protects, unprotects and harvests.
 * Progress: blocking (the attachment's mutex, per fault), but it never
 * waits for a message (U5).
 * Return: the number of faults resolved (0 if none was queued); -EINVAL
 * for an async attachment or one with PS_UFFD_THREAD; the errno of a
 * failed read(2), or of a fault's failed UFFDIO_WRITEPROTECT (its library
 * page is resolved, its writer stays blocked until ps_uffd_unprotect() of
 * the page or detach wakes it); the other faults of the batch read are
 * still resolved, and every failure is counted in ps_uffd_stats().
 */
int ps_uffd_handle_events(struct ps_uffd *u, unsigned int max);

/**
 * ps_uffd_harvest() - return the pages of library range [@start, @start +
 * @len) written since they were last reported, and re-arm them in the
 * library and the kernel (see Model and Concurrency).
 * @u: the attachment.
 * @start: the first library page (aligned, inside the attachment).
 * @len: bytes (a non-zero multiple of the page size).
 * @addrs: receives library page addresses, ascending.
 * @max: room in @addrs (at least 1).
 * @count: receives how many were written.
 * @resume: if not NULL, receives where to continue: the first page still
 *	recorded, or @start + @len when the harvest is complete. Pages not
 *	returned stay recorded for the next call: a space's in the space's
 *	dirty log, the others in the attachment's.
 *
 * The pages are collected, then taken in address order, at most @max:
 *   - async: PAGEMAP_SCAN get-and-rearm over the host range (category and
 *     return mask WRITTEN, the kernel's fast path); a none entry of the
 *     library among the pages it reports becomes a UFFD_WP marker, as the
 *     kernel's none PTE does (a WRITTEN marker is the library's own to
 *     report and re-arm, below);
 *   - bare table: its written entries, with the table's get-and-rearm scan;
 *   - space: what ps_space_harvest() with PS_HARVEST_REARM returns (its
 *     dirty log: marks, the secondary-map helper's writes, resolved sync
 *     faults, pages pinned for write; its async entries' writes, re-armed),
 *     at most @max, with the secondary mappings of those pages
 *     invalidated; those of them beyond the budget (merged with the pages
 *     above) go back to the space's log before the call returns, so
 *     ps_space_harvest() still sees them (a concurrent one may miss them until
 *     then, and finds them at its next call). Pages only the CPU wrote are not
 *     invalidated: a writable secondary mapping is always in the space's log.
 * Sync: the pages are taken from the log first, then re-protected in both
 * places (U4), as ps_uffd_protect() does (host page-table entries included).
 * Context: any thread; not inside a read-side section (the table's writer
 * mutex); for a space, not from a notifier callback nor holding a lock
 * that one takes (the space's harvest invalidates). Concurrent harvests
 * of one attachment take turns.
 * Ordering: U3 and U4 (lib/uffd.c): a write that lands after its page was
 * re-armed is reported by a later harvest, and one that races the re-arm
 * is reported by this harvest or the next and is in the page's contents
 * when it returns, so copy the pages after it returns. Whatever a marker
 * wrote before ps_space_mark_dirty() happens before the harvest that
 * reports the page (the log's release and acquire).
 * Progress: blocking (the attachment's mutex, the table's writer mutex,
 * ioctls, a space's invalidations).
 * Return: 0; -EINVAL (range, @addrs or @count NULL, @max 0); -ENOENT (outside
 * the attachment; a bare table's range, or in sync mode any library range,
 * unregistered behind the bridge); -ENOMEM; -EOPNOTSUPP (async: the kernel
 * cannot re-arm part of the range, a huge page it covers in part: hugetlb
 * memory mapped there since the attach); the errno of a failed ioctl. After an
 * error the pages already collected stay recorded for the next call.
 */
int ps_uffd_harvest(struct ps_uffd *u, uint64_t start, uint64_t len,
		    uint64_t *addrs, uint64_t max, uint64_t *count,
		    uint64_t *resume);

/**
 * ps_uffd_discard() - ps_space_discard() for an attached range: the
 * balloon's discard, with the kernel's side kept in agreement and every
 * page it drops reported by the next harvest.
 * @u: a space attachment.
 * @start: the first library page (aligned, inside the attachment).
 * @len: bytes (a non-zero multiple of the page size).
 * @skipped: as for ps_space_discard(): the pages left in place, with
 *	their frame and reason.
 * @max_skipped: room in @skipped.
 * @nskipped: as for ps_space_discard().
 *
 * The space discards as ps_space_discard() does (freeze or skip; the
 * space's free_frame hook releases each dropped page's memory, e.g.
 * MADV_DONTNEED or MADV_REMOVE of the host page). Then, for each page it
 * dropped: the host page is write-protected if the library's entry is (a
 * UFFD_WP marker, PS_UFFD_SHARED), so both agree whatever the hook did to the
 * host page, and the page is logged: the next harvest reports it (its contents
 * are gone: a migration sends it again) and, in sync mode, re-protects it on
 * both sides. In sync anonymous ranges without PS_UFFD_UNPOPULATED the host
 * page also gets a page-table entry at once (the zero page, as
 * ps_uffd_protect() gives them): the library cannot protect the hole the
 * discard leaves there, so it is the kernel's page that the next harvest's
 * re-arm protects, and a write after that re-arm faults even when the balloon
 * maps a frame there only afterwards. Skipped pages are not touched. Discard
 * attached memory only this way (see "Discarding attached memory" above).
 * Context: any thread; not inside a read-side section, nor from a
 * notifier callback or a free_frame hook (the space's writer mutex).
 * The space's free_frame hook and its invalidation's callbacks run in
 * this thread without the attachment's mutex (so they may write to
 * protected memory: its faults are resolved), but under the space's
 * writer mutex, with the rules of ps_space_discard().
 * Ordering: U6 (lib/uffd.c): the space drops the pages (S10), then, under
 * the attachment's mutex (U1), the kernel is protected where the library
 * is and the pages are logged; a write after the discard returns is
 * reported by a later harvest (sync: it faults or its page is logged;
 * async: the kernel sees it).
 * Progress: blocking (the space's writer mutex and invalidation, the
 * attachment's mutex, ioctls).
 * Return: 0; -EINVAL (range, a bare table's attachment, @skipped NULL with
 * @max_skipped); -ENOENT (outside the attachment); an error of the space's
 * discard (as ps_space_discard(); any page it dropped before is fixed up and
 * logged all the same); or the errno of protecting or populating the host
 * pages: the pages were discarded and are logged all the same, @skipped and
 * @nskipped are written, and those the kernel refused to protect are left
 * unprotected in the library too, the side that loses no write.
 */
int ps_uffd_discard(struct ps_uffd *u, uint64_t start, uint64_t len,
		    struct ps_discard_skip *skipped, uint64_t max_skipped,
		    uint64_t *nskipped);

/**
 * ps_uffd_stats() - the attachment's counters.
 * @u: the attachment.
 * @st: receives them.
 *
 * Context: any thread, concurrently with any call on @u but detach.
 * Ordering: relaxed loads: each counter holds a value it had during the call,
 * in no particular order with the other counters or with the events they count.
 * Progress: wait-free.
 */
void ps_uffd_stats(const struct ps_uffd *u, struct ps_uffd_stats *st);

PS_END_DECLS

#endif /* PAGESTATE_UFFD_H */
