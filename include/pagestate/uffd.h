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
 * `pkg-config --variable=uffd pagestate` says yes or no). The design, the
 * protocol and the measurements behind this contract: docs/uffd.md.
 *
 * ---------------------------------------------------------------------------
 * Model
 * ---------------------------------------------------------------------------
 *
 * An attachment (struct ps_uffd) ties the caller's mapping [host, host + len)
 * to the library range [addr, addr + len) of a struct ps_space or of a bare
 * struct ps_pgtable: host + i corresponds to addr + i. The library's table is
 * the authority; the kernel mirrors it:
 *
 *   - ps_uffd_attach_*() opens a userfaultfd, negotiates the features the
 *     flags need, and registers the library range, then the host range.
 *   - ps_uffd_protect() and ps_uffd_unprotect() change both: the library
 *     range, then the host range. Protection changed through
 *     pagestate/pgtable.h alone changes the library only: in sync mode the
 *     CPU's writes there then go unreported.
 *   - Sync mode: a write to a protected host page blocks its writer until
 *     the handler (a thread the library runs with PS_UFFD_THREAD, or the
 *     caller's loop calling ps_uffd_handle_events() when ps_uffd_fd() is
 *     readable) has marked the library page written (for a space, as
 *     ps_space_fault() with PS_ACCESS_RESOLVE_WP does: frame dirty, address
 *     in the dirty log) and un-protected it in both places.
 *   - Async mode (PS_UFFD_ASYNC): the kernel resolves writes in place;
 *     ps_uffd_harvest() finds them with PAGEMAP_SCAN.
 *   - ps_uffd_harvest() returns in one call the pages the CPU wrote and the
 *     pages the library saw written (a space's dirty log and async entries,
 *     or a bare table's written entries), and re-arms them on both sides.
 *   - ps_uffd_discard() is a space's balloon discard through the bridge.
 *
 * Backing, which the caller states: PS_UFFD_SHARED for a shared mapping of a
 * memfd/shmem file (the library range is registered PS_WP_SHARED, so that
 * protection survives zaps as UFFD_WP markers, as in the kernel); anonymous
 * memory otherwise. Huge pages, which the caller states too:
 *   - PS_UFFD_THP: anonymous memory that may be backed by transparent huge
 *     pages (MADV_HUGEPAGE). The kernel splits a huge page when part of it is
 *     protected or harvested, or when it is written while protected in async
 *     mode, and tracks 4 KiB pages from then on; a huge page protected or
 *     re-armed whole stays whole. Harvests report a huge page reported whole as
 *     one 2 MiB run (ps_uffd_harvest_runs()). The library range is registered
 *     PS_WP_HUGE_SPLIT, so that a huge leaf (ps_pgtable_map_huge()) mirroring a
 *     huge page splits where the kernel's does; a protect or unprotect that
 *     covers part of a 2 MiB block splits the library's leaf there, as the
 *     kernel splits its PMD whether or not anything changes. With the flag the
 *     async scan asks the kernel which runs are huge, which costs it its fast
 *     path (a
 *     harvest of split THP memory took about 1.9 times as long; docs/uffd.md).
 *     Without the flag THP memory works all the same, reported at 4 KiB.
 *   - PS_UFFD_HUGETLB: hugetlb memory of 2 MiB pages (MAP_HUGETLB with
 *     MAP_HUGE_2MB, a hugetlbfs file, memfd MFD_HUGETLB), which needs the
 *     kernel's WP_HUGETLBFS_SHMEM. Tracked whole, as the kernel tracks it:
 *     the host range, the library range and every range passed to the calls
 *     must be 2 MiB aligned (-EINVAL otherwise: the kernel cannot protect or
 *     re-arm part of a huge page), a write anywhere in a huge page reports the
 *     whole page, and a page the library reports (a space's dirty page)
 *     counts for its whole huge page. The library range is registered
 *     PS_WP_SHARED | PS_WP_HUGE_WHOLE: the kernel keeps a hugetlb page's
 *     protection across zaps as a marker, as for shmem, and a huge leaf
 *     mirroring a huge page is tracked whole.
 * Hugetlb memory attached without PS_UFFD_HUGETLB, or of another page size, is
 * refused with -EOPNOTSUPP, @why "HUGETLB"; hugetlb mapped over an attached
 * range later makes the calls the kernel refuses fail (harvest: -EOPNOTSUPP;
 * protect: the ioctl's errno) instead of looping or reporting success.
 *
 * One userfaultfd per attachment, so a mode is per attachment: a VMM with
 * several RAM regions attaches each (and polls several descriptors in sync
 * mode). It is opened with userfaultfd(2), else /dev/userfaultfd, else
 * userfaultfd(2) with UFFD_USER_MODE_ONLY, where a write the kernel itself
 * makes to a sync-protected page (a read(2) into it) fails with EFAULT
 * instead of being handled. ps_uffd_stats() says which was used.
 *
 * Features (UFFDIO_API; a missing one fails with -EOPNOTSUPP and @why names
 * it): WP_ASYNC for PS_UFFD_ASYNC, WP_UNPOPULATED for PS_UFFD_ASYNC and
 * PS_UFFD_UNPOPULATED, WP_HUGETLBFS_SHMEM for PS_UFFD_SHARED and
 * PS_UFFD_HUGETLB; PAGEMAP_SCAN for PS_UFFD_ASYNC.
 *
 * ---------------------------------------------------------------------------
 * Discarding attached memory (a balloon, free page reporting)
 * ---------------------------------------------------------------------------
 *
 * Discard pages of a space attachment with ps_uffd_discard() only. Memory
 * given back behind the bridge (MADV_DONTNEED, MADV_FREE, MADV_REMOVE,
 * fallocate(PUNCH_HOLE), or ps_space_discard() alone) leaves the kernel and
 * the library in disagreement: the discarded contents are not reported
 * (except in async anonymous mode), and in sync anonymous mode later writes
 * to those pages are not reported either, so a migration's destination keeps
 * stale pages (docs/uffd.md, "Discarding attached memory"). A bare table's
 * attachment has no discard.
 *
 * ---------------------------------------------------------------------------
 * Where the live kernel differs (Linux 6.18; docs/uffd.md says why)
 * ---------------------------------------------------------------------------
 *
 *   - PAGEMAP_SCAN reports a none PTE (and, in an async range, a hole) as
 *     WRITTEN, and re-arms it as a UFFD_WP marker. The library reports
 *     WRITTEN for its WRITTEN marker (pagestate/pgtable.h) and nothing for a
 *     none entry. ps_uffd_harvest() reports what the kernel reports, and
 *     makes the library's none entries among those pages UFFD_WP markers, as
 *     the kernel did.
 *   - A hole punch or MADV_REMOVE of a protected memfd page keeps its UFFD_WP
 *     marker, as MADV_DONTNEED and MADV_PAGEOUT do: the library's zap without
 *     PS_ZAP_UNMAP is their counterpart.
 *   - A read fault on an anonymous UFFD_WP marker maps the zero page, still
 *     protected (PAGE_IS_PFNZERO); the library maps a frame, protected too.
 *   - PAGE_IS_FILE: the library knows a page's backing only through its
 *     registration, so after ps_uffd_detach() a memfd page is FILE to the
 *     kernel and not to the library.
 *   - Sync anonymous ranges without PS_UFFD_UNPOPULATED: the kernel protects
 *     only host pages that have a page-table entry, and a write to one
 *     without maps a new page, unprotected, without a fault. The bridge gives
 *     the host pages it protects an entry first (see ps_uffd_protect()).
 *
 * ---------------------------------------------------------------------------
 * Concurrency
 * ---------------------------------------------------------------------------
 *
 * Protect, unprotect, harvest, the kernel's half of a discard and each sync
 * fault's resolution hold the attachment's mutex across "library, then kernel",
 * so the two never disagree on a page for longer than one such call. A call
 * whose kernel half fails reports it and leaves the library no more protected
 * than the kernel, the side that loses no write. Faults and pins on the library
 * side take no bridge lock, and neither does the space's half of a discard.
 *
 * What a harvest guarantees: every write that completes after the harvest
 * re-armed its page is reported by a later harvest; a write that raced the
 * harvest is in the page's contents by the time the harvest returns. Copy the
 * reported pages after the harvest returns, as with KVM's dirty log.
 *
 * The space's hooks and callbacks that run under the attachment's mutex, in
 * the thread that holds it:
 *   - a sync fault's resolution (in the handler thread, or in the thread
 *     that calls ps_uffd_handle_events()) takes the LOCKED bit of the page's
 *     frame, as ps_space_fault() does, and runs the dirty hook under both;
 *     when the frame was unmapped or discarded while the fault held it, the
 *     fault's release is the last reference and the free_frame hook runs
 *     there too, under the mutex (not under the LOCKED bit);
 *   - ps_uffd_harvest() runs the notifier callbacks of the space harvest's
 *     invalidation.
 *
 * Deadlocks to avoid in sync mode:
 *   - the thread that calls ps_uffd_handle_events() must not itself write to
 *     protected attached memory: it would wait for itself;
 *   - a thread that holds a frame's LOCKED bit (in the make_accessible hook
 *     of pagestate/prot.h, in a dirty hook run by a write fault, in a
 *     notifier callback of write-back's PS_NOTIFIER_PROTECTION
 *     invalidation) must not write to sync-protected memory of a space
 *     attachment: its write waits for a resolution, which waits for that
 *     bit, directly or behind the mutex (a detach joining the handler thread
 *     would wait too);
 *   - the free_frame hook, the dirty hook and a harvest's notifier callbacks
 *     must not write to sync-protected memory of the attachment either (nor
 *     of any attachment whose faults the same thread handles): run under the
 *     mutex, such a write waits for a resolution, which waits for the mutex
 *     (in the handler thread, for itself). A free_frame hook that gives the
 *     host page back with MADV_DONTNEED or MADV_REMOVE writes nothing;
 *   - nor may such a thread, hook or callback call ps_uffd_protect(),
 *     ps_uffd_unprotect(), ps_uffd_harvest(), ps_uffd_discard(),
 *     ps_uffd_handle_events() or ps_uffd_detach() of that attachment: the
 *     mutex is not recursive.
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
#define PS_UFFD_HUGETLB 0x10u	 /* hugetlb 2 MiB backing, tracked whole */
#define PS_UFFD_THP 0x20u	 /* anonymous, may be transparent huge pages */
#define PS_UFFD_ALL                                             \
	(PS_UFFD_ASYNC | PS_UFFD_SHARED | PS_UFFD_UNPOPULATED | \
	 PS_UFFD_THREAD | PS_UFFD_HUGETLB | PS_UFFD_THP)

/* Granularity of a harvested run (struct ps_uffd_run.shift). */
#define PS_UFFD_SHIFT_4K 12 /* pages tracked 4 KiB at a time */
#define PS_UFFD_SHIFT_2M 21 /* huge pages tracked whole */

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
 * @flags: PS_UFFD_*. With PS_UFFD_HUGETLB, @host, @addr and @len are 2 MiB
 *	aligned; with PS_UFFD_THP, @host and @addr are equal modulo 2 MiB (a
 *	huge page of the host is a 2 MiB block of the library).
 * @why: if not NULL, receives on failure a static string naming what failed:
 *	the missing feature ("WP_ASYNC", "WP_UNPOPULATED", "WP_HUGETLBFS_SHMEM",
 *	"PAGEMAP_SCAN"), "HUGETLB" for hugetlb memory without PS_UFFD_HUGETLB or
 *	not of 2 MiB pages, "not HUGETLB" for PS_UFFD_HUGETLB over other memory,
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
 * Opens a userfaultfd as an attachment would, asks the kernel for its
 * features (UFFDIO_API) and closes it; with PS_UFFD_ASYNC also tries an empty
 * PAGEMAP_SCAN on /proc/self/pagemap. Attaches nothing: the attach itself
 * also checks the page size and the host range's mappings.
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
 * cfg->len) of @space.
 * @space: the space whose page table mirrors the memory.
 * @cfg: what to attach; the range must lie inside the space.
 * @out: receives the attachment.
 *
 * Checks the arguments, the 4 KiB page size, the kernel features the flags
 * need and that no mapping of the host range is hugetlb (with PS_UFFD_HUGETLB:
 * that every one is, of 2 MiB pages), then opens the
 * userfaultfd (and /proc/self/pagemap for PS_UFFD_ASYNC), registers the
 * library range with PS_WP_ASYNC / PS_WP_SHARED / PS_WP_UNPOPULATED as the
 * flags say (so it must not be registered yet), registers the host range for
 * write protection, and with PS_UFFD_THREAD starts the handler thread.
 * Nothing is protected yet: call ps_uffd_protect().
 * Context: any thread, not inside a read-side section (registering takes
 * the table's writer mutex, and undoing a failed attach waits for a grace
 * period). The memory must stay mapped until ps_uffd_detach().
 * Ordering: the library range is registered before the host range, and
 * the handler thread starts after both; *@out is written last.
 * Progress: blocking (system calls, the table's writer mutex).
 * Return: 0; -EINVAL for bad arguments (PS_UFFD_ASYNC with PS_UFFD_THREAD,
 * PS_UFFD_HUGETLB with PS_UFFD_THP or with ranges not 2 MiB aligned,
 * PS_UFFD_THP with @host and @addr not equal modulo 2 MiB included; @why
 * "arguments"; PS_UFFD_HUGETLB over memory that is not hugetlb: @why "not
 * HUGETLB"); -EOPNOTSUPP (pages not 4 KiB, a missing feature, hugetlb memory
 * without PS_UFFD_HUGETLB or not of 2 MiB pages: @why "HUGETLB"); -ENOSYS or
 * -EPERM (no
 * userfaultfd); -EBUSY (the library range is registered already); -ENOMEM;
 * -ECHILD in a child of a plain fork() (@why "fork"; pagestate/fork.h); or
 * the errno of a failed step, which @why names (reading the host range's
 * mappings: "/proc/self/maps"). On failure nothing is left registered or open.
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
 * ps_uffd_detach() - stop the handler thread, unregister the host range and
 * the library range, close the descriptors, free @u.
 * @u: the attachment.
 *
 * Unregistering clears every uffd-wp bit and marker of both ranges
 * (UFFDIO_UNREGISTER, ps_pgtable_unregister()) and wakes the writers blocked
 * on a sync fault. Nothing a harvest collected is lost: for a space, the pages
 * still in the attachment's log (CPU writes a harvest's budget left over)
 * move into the space's dirty log, where ps_space_harvest() reports them.
 * Lost: async CPU writes since the last harvest, which only the kernel's
 * uffd-wp bits held (harvest first). A bare table has no dirty log: the pages
 * left in the attachment's log are dropped, but with its uffd-wp bits cleared
 * the table's scan reports each present entry as written (and each WRITTEN
 * marker, which unregistering keeps). In a child of fork(), an inherited
 * attachment is only forgotten: the child's copies of its descriptors are
 * closed and nothing else happens (rule 2 of the overview of pagestate/fork.h).
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
 * Sync anonymous attachments without PS_UFFD_UNPOPULATED: the host pages
 * under the library's present entries first get a page-table entry, with
 * MADV_POPULATE_READ (a read of each page before Linux 5.14): the zero page
 * where the memory was never touched, which costs page tables (2 MiB per GiB)
 * and a fault per page the first time. PS_UFFD_UNPOPULATED avoids those
 * faults where the kernel has WP_UNPOPULATED. The library's holes are left
 * alone: a frame mapped there later is not protected in either.
 * Context: any thread; not inside a read-side section (the table's writer
 * mutex).
 * Ordering: the attachment's mutex is held across "library, then kernel", so
 * protects, unprotects, fault resolutions and harvests of the attachment never
 * interleave halfway; each entry changes with the table's release CAS.
 * Progress: blocking (the attachment's mutex, the table's writer mutex, an
 * ioctl, retried while the kernel says EAGAIN).
 * Return: 0; -EINVAL (zero, unaligned or overflowing range; with
 * PS_UFFD_HUGETLB, a range that covers part of a huge page); -ENOENT
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
 * Ordering: as ps_uffd_protect().
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
 * ps_uffd_handle_events() - resolve the queued sync faults, without blocking.
 * @u: a sync attachment without PS_UFFD_THREAD.
 * @max: the most faults to resolve (0: until none is queued).
 *
 * Each write-protect fault inside the attachment is resolved as the overview
 * of pagestate/uffd.h says ("Model", sync mode); other messages are read and
 * dropped. A fault whose library side does not return PS_FAULT_OK (no page
 * there, a marker, no write permission) is resolved in the kernel all the
 * same, with the library page unprotected to match, and counted in
 * ps_uffd_stats().mismatches.
 * Context: the caller's thread, which must not itself write to protected
 * attached memory (it would wait for itself); not inside a read-side section,
 * nor holding a frame's LOCKED bit (each resolution takes one). The space's
 * dirty hook, and its free_frame hook when a fault's release frees the frame,
 * run in this thread under the attachment's mutex, with the rules of the
 * overview of pagestate/uffd.h, "Concurrency". Concurrent calls are safe.
 * Ordering: each fault is recorded (library entry resolved as a write,
 * address logged) before its writer is woken, so a harvest that runs after
 * the write reports it; each resolution holds the attachment's mutex, as
 * ps_uffd_protect() does.
 * Progress: blocking (the attachment's mutex, per fault), but it never
 * waits for a message: the userfaultfd is non-blocking.
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
 * library and the kernel.
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
 * The pages are collected, then the first @max are taken in address order:
 *   - async: the CPU's writes, with PAGEMAP_SCAN get-and-rearm over the host
 *     range (a library none entry among them becomes a UFFD_WP marker, as
 *     the kernel's none PTE does);
 *   - bare table: its written entries, with the table's get-and-rearm scan;
 *   - space: what ps_space_harvest() with PS_HARVEST_REARM returns (its dirty
 *     log and its async entries' writes), at most @max, with the secondary
 *     mappings of those pages invalidated; those beyond the budget go back to
 *     the space's log before the call returns. Pages only the CPU wrote are not
 *     invalidated: a writable secondary mapping is always in the space's log.
 * Sync: the pages are taken from the log first, then protected again in both
 * places, as ps_uffd_protect() does. Pages the budget leaves over that the
 * call took from the space or the bare table are protected in both places too
 * before it returns, and stay recorded: a write to one faults, and a later
 * harvest reports the page. The design: docs/uffd.md, "Harvest".
 * Context: any thread; not inside a read-side section (the table's writer
 * mutex); for a space, not from a notifier callback nor holding a lock
 * that one takes (the space's harvest invalidates: its callbacks run in
 * this thread under the attachment's mutex). Concurrent harvests of one
 * attachment take turns.
 * Ordering: a write that lands after its page was re-armed is reported by a
 * later harvest, and one that races the re-arm is reported by this harvest or
 * the next and is in the page's contents when this one returns: copy the
 * pages after it returns. Whatever a marker wrote before
 * ps_space_mark_dirty() happens before the harvest that reports the page (the
 * log's release and acquire).
 * Progress: blocking (the attachment's mutex, the table's writer mutex,
 * ioctls, a space's invalidations).
 * With PS_UFFD_HUGETLB the pages come in whole huge pages: 512 addresses each,
 * never part of one (@max must be at least 512), and the range must not cover
 * part of a huge page (as PAGEMAP_SCAN's re-arm, which cannot either).
 * Return: 0; -EINVAL (range, @addrs or @count NULL, @max 0; with
 * PS_UFFD_HUGETLB, a range covering part of a huge page or @max below 512,
 * checked before anything is collected); -ENOENT (outside the attachment; a
 * bare table's range, or in sync mode any library range, unregistered behind
 * the bridge); -ENOMEM; -EOPNOTSUPP (async: the kernel cannot re-arm part of
 * the range, a huge page it covers in part: hugetlb memory mapped there since
 * the attach); the errno of a failed ioctl. After an error the pages already
 * collected stay recorded for the next call; in sync mode a page the kernel
 * refused to protect again is left unprotected in the library too.
 */
int ps_uffd_harvest(struct ps_uffd *u, uint64_t start, uint64_t len,
		    uint64_t *addrs, uint64_t max, uint64_t *count,
		    uint64_t *resume);

/**
 * struct ps_uffd_run - a run of written pages, as ps_uffd_harvest_runs()
 * reports it.
 * @addr: the first library address (aligned to 1 << @shift).
 * @len: bytes, a non-zero multiple of 1 << @shift.
 * @shift: the granularity the pages were tracked at: PS_UFFD_SHIFT_4K, or
 *	PS_UFFD_SHIFT_2M for huge pages tracked whole (every huge page of a
 *	PS_UFFD_HUGETLB attachment; a transparent huge page of a PS_UFFD_THP
 *	attachment that the kernel reported whole, unsplit). A 2 MiB run says
 *	that the pages were written or unprotected as one: which of its 4 KiB
 *	pages changed is not known.
 */
struct ps_uffd_run {
	uint64_t addr;
	uint64_t len;
	unsigned int shift;
};

/**
 * ps_uffd_harvest_runs() - ps_uffd_harvest(), reporting runs of pages with
 * the granularity each was tracked at.
 * @u: the attachment.
 * @start: the first library page (aligned, inside the attachment).
 * @len: bytes (a non-zero multiple of the page size).
 * @runs: receives runs, ascending and disjoint; two runs of one granularity
 *	are never adjacent.
 * @max: room in @runs (at least 1).
 * @count: receives how many runs were written.
 * @resume: as for ps_uffd_harvest().
 *
 * Collects and re-arms as ps_uffd_harvest() does, with the same budgets'
 * rules: the pages not returned stay recorded. A space's pages are asked for
 * in batches of at most 256 pages, so a call returns at most that many of
 * them (the rest stay in the space's log: *@resume says where). A 2 MiB run
 * is returned whole or not at all; a transparent huge page that a later
 * report split (part of it harvested, or a 4 KiB page of it reported since by
 * the library) is reported at 4 KiB.
 * Context: as ps_uffd_harvest().
 * Ordering: as ps_uffd_harvest().
 * Progress: blocking, as ps_uffd_harvest().
 * Return: as ps_uffd_harvest() (@max at least 1, also with PS_UFFD_HUGETLB).
 */
int ps_uffd_harvest_runs(struct ps_uffd *u, uint64_t start, uint64_t len,
			 struct ps_uffd_run *runs, uint64_t max,
			 uint64_t *count, uint64_t *resume);

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
 * The space discards as ps_space_discard() does; its free_frame hook releases
 * each dropped page's memory (e.g. MADV_DONTNEED or MADV_REMOVE of the host
 * page). Then, for each page it dropped, the host page is write-protected where
 * the library's entry is (a UFFD_WP marker, PS_UFFD_SHARED), whatever the hook
 * did to it, and the page is logged: the next harvest reports it (its contents
 * are gone: a migration sends it again) and, in sync mode, protects it on both
 * sides. In sync anonymous ranges without PS_UFFD_UNPOPULATED the host page
 * also gets a page-table entry at once (the zero page), so that a write after
 * that harvest faults even when the balloon maps a frame there only afterwards.
 * Skipped pages are not touched. Discard attached memory only this way (the
 * overview of pagestate/uffd.h, "Discarding attached memory").
 * PS_UFFD_HUGETLB: whole huge pages only, as the kernel gives hugetlb memory
 * back (@start and @len 2 MiB aligned). Each frame is discarded or skipped as
 * ps_space_discard() does (a 2 MiB frame as one); a huge page with any page
 * dropped is protected on the host where the library is and logged whole.
 * The free_frame hook may give the host huge page back (MADV_REMOVE or
 * fallocate(PUNCH_HOLE) of its 2 MiB) once all of its frames are freed: with
 * 4 KiB frames a skipped (pinned) page keeps its huge page in use.
 * Context: any thread; not inside a read-side section, nor from a notifier
 * callback or a free_frame hook (the space's writer mutex). The space's
 * free_frame hook and its invalidation's callbacks run in this thread under the
 * space's writer mutex, with the rules of ps_space_discard(), and without the
 * attachment's mutex. In sync mode the same free_frame hook may also run under
 * that mutex, from a fault's resolution, so it must not write to protected
 * attached memory (the overview of pagestate/uffd.h, "Concurrency").
 * Ordering: the space drops the pages first, then, under the attachment's
 * mutex, the kernel is protected where the library is and the pages are
 * logged; a write after the discard returns is reported by a later harvest
 * (sync: it faults or its page is logged; async: the kernel sees it).
 * Progress: blocking (the space's writer mutex and invalidation, the
 * attachment's mutex, ioctls).
 * Return: 0; -EINVAL (range, part of a huge page with PS_UFFD_HUGETLB, a
 * bare table's attachment, @skipped NULL with @max_skipped: nothing is
 * touched); -ENOENT (outside the attachment); an error of the space's
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
