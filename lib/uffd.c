// SPDX-License-Identifier: MIT
/*
 * lib/uffd.c - the Linux bridge (pagestate/uffd.h): userfaultfd write
 * protection and PAGEMAP_SCAN mirrored from a space or page table.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-uffd.c as U1..U7)
 * ---------------------------------------------------------------------------
 *
 * U1  Library first, kernel second, under the attachment's mutex. Protect,
 *     unprotect, each fault resolution and each harvest change the library
 *     table, then the host range, holding u->lock across both. So the two agree
 *     on a page whenever no such call is running on it (no interleaving of a
 *     protect with a resolution can leave the library protected and the kernel
 *     not). When the kernel refuses its half, the call fails and the page is
 *     left on the side that loses no write, library not protected: a protect
 *     unprotects the library range again, an unprotect or a fault's resolution
 *     (the writer then stays blocked, and the error is reported) already left
 *     it so. In sync anonymous ranges without UNPOPULATED the kernel protects
 *     only pages that have a PTE, so the kernel's half of a protect first gives
 *     one (the zero page, by a read fault) to each host page under a present
 *     library entry: what the library protects, the kernel does.
 *
 * U2  A sync fault is recorded before its writer is woken: the library
 *     entry is resolved as a write (space: frame dirty and address logged,
 *     under the frame's LOCKED bit, space.c S3) and the address is put in
 *     the log before UFFDIO_WRITEPROTECT mode 0 wakes the writer. A harvest
 *     that runs after the write therefore reports it.
 *
 * U3  Async harvest: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports and
 *     re-protects each page atomically (the kernel holds the page-table
 *     lock per PMD), so a CPU write is reported by this harvest or the
 *     next. Its pages go into the attachment's log before that log is
 *     harvested, and so do a bare table's written entries (its own
 *     get-and-rearm scan); so a budget-limited harvest keeps the rest for the
 *     next call and nothing is lost. A space's pages (its harvest with
 *     PS_HARVEST_REARM, at most the budget) join them only if the budget
 *     returns them: the rest go back to the space's log before the call returns
 *     (collect_space()), so they are never only in the attachment's log. Detach
 *     moves what is left there (the CPU's pages) into the space's log.
 *
 * U4  Sync harvest: the log is harvested first, then the reported pages are
 *     re-protected in both places. A write between the two finds the page
 *     still writable and lands before the harvest returns (in the contents
 *     the caller copies afterwards); a write after it faults again. The
 *     pages a budget leaves over that the collect re-armed in the library
 *     (the space's harvest, a bare table's scan) are protected in the kernel
 *     too before the call returns, and stay recorded (U1: never protected in
 *     the library alone; a write to one after that faults, and its page is
 *     reported by a later harvest).
 *
 * U5  The handler thread and ps_uffd_handle_events() never block in a
 *     read: the userfaultfd is non-blocking, the thread waits in poll() on
 *     it and on an eventfd that ps_uffd_detach() signals.
 *
 * U6  Discard (ps_uffd_discard()). The space drops pages (S10) without
 *     the attachment's mutex, so that its free_frame hook and notifier
 *     callbacks may write to protected memory (the handler resolves that);
 *     each page is noted in u->dropped after the hook released its host
 *     memory. Then, under the mutex (U1), each noted page of the range
 *       (a) gets a PTE in sync anonymous ranges without UNPOPULATED (the
 *           zero page), so that the kernel can protect it at the next
 *           re-arm whatever the library holds there: the library cannot
 *           protect a hole in such a range, and a frame the balloon maps
 *           there after that re-arm would be written without a fault
 *           unless the kernel's page is protected;
 *       (b) is protected in the kernel where the library's entry is (a
 *           UFFD_WP marker of a shared range), whatever the hook did to
 *           the host page, so both agree (a refusal: U1's safe side);
 *       (c) is logged, so the next harvest reports it (its contents are
 *           gone) and, in sync mode, re-arms it on both sides (U4).
 *     A write after the hook released the page lands before (c), in the
 *     contents the harvest after (c) copies, or after it: then the page
 *     is still logged, or the harvest has re-armed it and the write is
 *     seen (sync: it faults; async: the kernel's none PTE or marker is
 *     written state). Overlapping discards may fix each other's pages;
 *     a page is fixed by whichever takes its bit, under the mutex, so a
 *     discard that finds its bits taken waits for the mutex, and returns
 *     only after the pages it dropped were fixed. Hugetlb (U7): the range
 *     is whole huge pages, and (a)..(c) take each huge page with a dropped
 *     page whole (unit_size()): protected in the kernel if any page of it
 *     is protected in the library, logged whole.
 *
 * U7  Huge pages. Hugetlb (PS_UFFD_HUGETLB) is tracked whole, as the kernel
 *     tracks it: every range the bridge protects, un-protects, logs or
 *     harvests is widened to whole 2 MiB pages (round_huge()), and the
 *     public calls refuse a range that covers part of one (-EINVAL, where
 *     the kernel's UFFDIO_WRITEPROTECT says EINVAL and PAGEMAP_SCAN's re-arm
 *     makes no progress). A sync fault un-protects the whole huge page in
 *     the kernel, so its resolution un-protects and logs the whole page in
 *     the library too (U1, U2). THP (PS_UFFD_THP) is 4 KiB memory to the
 *     kernel's write protection (it splits a huge PMD that is protected or
 *     re-armed in part, or written while protected in async mode); the async
 *     scan also asks for PAGE_IS_HUGE, and a block it reports whole is noted
 *     in u->huge, so that a harvest that takes the block whole reports one
 *     2 MiB run; taking any page of it alone forgets the note. The library
 *     range is registered PS_WP_HUGE_WHOLE (hugetlb) or PS_WP_HUGE_SPLIT
 *     (THP), so its huge leaves split where the kernel's huge pages do; a
 *     protect or unprotect splits the leaves at its unaligned ends first, as
 *     the kernel splits a PMD a range covers in part (protect_locked()).
 *
 * Only Linux builds this file (meson option `uffd`).
 */
#include <pagestate/uffd.h>

#include "hbitmap.h"
#include "linux-uapi.h"
#include "space-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define PAGE_SHIFT PS_PGTABLE_PAGE_SHIFT
#define PAGE_SIZE PS_PGTABLE_PAGE_SIZE
#define HUGE_SHIFT PS_UFFD_SHIFT_2M
#define HUGE_SIZE (UINT64_C(1) << HUGE_SHIFT)
#define HUGE_PAGES (HUGE_SIZE >> PAGE_SHIFT) /* 4 KiB pages in a huge page */
#define RUN_BATCH 256 /* a space's pages per ps_uffd_harvest_runs() */
#define SCAN_VEC 512  /* regions per PAGEMAP_SCAN call */
#define MSG_BATCH 16  /* userfaultfd messages per read */

/*
 * Failpoints: in the test build only (-DPS_UFFD_FAILPOINTS), features in
 * ps__uffd_hide_features are treated as missing from the kernel, so the
 * tests can check the error that names each one; and the FP_* bits of
 * ps__uffd_failpoints make the failures the tests cannot cause otherwise
 * (tests/test-uffd.c repeats their values). Compiled out of the library.
 */
enum {
	FP_NO_PROCMAP_QUERY = 0x1, /* attach reads smaps instead */
	FP_NO_HUGETLB_CHECK = 0x2, /* attach accepts hugetlb memory */
	/* The next PAGEMAP_SCAN reporting pages fails after it ran (once): */
	FP_SCAN_EIO = 0x4,
	FP_SCAN_EINTR = 0x8,
	FP_POLL_ENOMEM = 0x10,	    /* the handler thread's next poll() fails */
	FP_MUTEX_INIT = 0x20,	    /* attach's pthread_mutex_init() fails */
	FP_NO_POPULATE_READ = 0x40, /* MADV_POPULATE_READ fails: EINVAL */
	FP_WP_EIO = 0x80,	    /* the next kernel protect fails: EIO */
};
#ifdef PS_UFFD_FAILPOINTS
uint64_t ps__uffd_hide_features;
PS_ATOMIC(unsigned int) ps__uffd_failpoints;
#define HIDDEN_FEATURES ps__uffd_hide_features
/* Relaxed: set by the test before the call it is about (or joined). */
#define FAILPOINT(fp)                                                        \
	((atomic_load_explicit(&ps__uffd_failpoints, memory_order_relaxed) & \
	  (fp)) != 0)
/* Relaxed: as FAILPOINT(); the RMW makes it fire once. */
#define FAILPOINT_ONCE(fp)                                                     \
	((atomic_fetch_and_explicit(&ps__uffd_failpoints, ~(unsigned int)(fp), \
				    memory_order_relaxed) &                    \
	  (fp)) != 0)
#else
#define HIDDEN_FEATURES UINT64_C(0)
#define FAILPOINT(fp) false
#define FAILPOINT_ONCE(fp) false
#endif

struct ps_uffd {
	int fd;		/* the userfaultfd, O_NONBLOCK */
	int pagemap;	/* /proc/self/pagemap (async), or -1 */
	int stop;	/* eventfd that stops the thread, or -1 */
	uintptr_t host; /* start of the caller's mapping */
	uint64_t addr;	/* library address of host */
	uint64_t len;
	unsigned int flags;
	struct ps_space *space; /* NULL for a bare table */
	struct ps_pgtable *pt;
	struct ps__hbm log;	/* pages to report (U3), index from addr */
	struct ps__hbm dropped; /* pages a discard dropped (U6), likewise */
	/*
	 * THP: the 2 MiB blocks the kernel reported whole (U7), one bit per
	 * block from hbase (addr rounded down to 2 MiB); not mapped otherwise.
	 */
	struct ps__hbm huge;
	uint64_t hbase;
	pthread_mutex_t lock; /* U1 */
	pthread_t thread;
	bool thread_running;
	int opened;
	_Atomic(uint64_t) faults, mismatches, harvested, kernel_pages, errors;
	_Atomic(int) last_error;
	uint64_t born; /* fork generation at attach (lib/fork.h) */
};

static void count(_Atomic(uint64_t) *c, uint64_t n)
{
	/* Relaxed: statistics only, nothing else depends on them. */
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* A failure of the fault handling (the thread's, or handle_events'). */
static void note_error(struct ps_uffd *u, int err)
{
	count(&u->errors, 1);
	/* Relaxed: statistics only, as count(). */
	atomic_store_explicit(&u->last_error, err, memory_order_relaxed);
}

static void say(const char **why, const char *what)
{
	if (why)
		*why = what;
}

/* --- opening and features ------------------------------------------------- */

/* A new userfaultfd (see "Opening" in uffd.h), or a negative errno. */
static int uffd_open(int *opened)
{
	int fd, dev, err;

	fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		*opened = PS_UFFD_OPENED_SYSCALL;
		return fd;
	}
	err = errno;
	if (err == ENOSYS)
		return -ENOSYS;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0) {
			*opened = PS_UFFD_OPENED_DEV;
			return fd;
		}
	}
	fd = (int)syscall(__NR_userfaultfd,
			  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd >= 0) {
		*opened = PS_UFFD_OPENED_USER_ONLY;
		return fd;
	}
	return -err;
}

/* The kernel features and the flags that need them; the first is always
 * needed. A missing one is named in this order. */
static const struct {
	uint64_t feature;
	unsigned int when; /* any of these flags needs it */
	const char *name;
} features[] = {
	{UFFD_FEATURE_PAGEFAULT_FLAG_WP, PS_UFFD_ALL, "PAGEFAULT_FLAG_WP"},
	{UFFD_FEATURE_WP_ASYNC, PS_UFFD_ASYNC, "WP_ASYNC"},
	{UFFD_FEATURE_WP_UNPOPULATED, PS_UFFD_ASYNC | PS_UFFD_UNPOPULATED,
	 "WP_UNPOPULATED"},
	{UFFD_FEATURE_WP_HUGETLBFS_SHMEM, PS_UFFD_SHARED | PS_UFFD_HUGETLB,
	 "WP_HUGETLBFS_SHMEM"},
};

static uint64_t features_for(unsigned int flags)
{
	uint64_t f = 0;

	for (size_t i = 1; i < sizeof(features) / sizeof(features[0]); i++)
		if (flags & features[i].when)
			f |= features[i].feature;
	return f;
}

/* Is PAGEMAP_SCAN there? (An empty scan: valid, reports nothing.) */
static bool have_pagemap_scan(int pagemap)
{
	struct pm_scan_arg a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	return ioctl(pagemap, PAGEMAP_SCAN, &a) >= 0;
}

/*
 * Check every feature @flags needs: 0, or -EOPNOTSUPP with @why naming the
 * first missing one, or the open's errno.
 */
static int check_features(unsigned int flags, const char **why)
{
	struct uffdio_api api;
	int opened, fd = uffd_open(&opened);
	uint64_t have;

	if (fd < 0) {
		say(why, "userfaultfd");
		return fd;
	}
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = errno;

		close(fd);
		say(why, "UFFDIO_API");
		return -err;
	}
	close(fd);
	have = api.features & ~HIDDEN_FEATURES;
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		if (i && !(flags & features[i].when))
			continue; /* not needed by these flags */
		if (!(features[i].feature & have)) {
			say(why, features[i].name);
			return -EOPNOTSUPP;
		}
	}
	if (flags & PS_UFFD_ASYNC) {
		int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		bool ok = pm >= 0 && have_pagemap_scan(pm) &&
			  !(HIDDEN_FEATURES & ((uint64_t)1 << 63));

		if (pm >= 0)
			close(pm);
		if (!ok) {
			say(why, "PAGEMAP_SCAN");
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

int ps_uffd_probe(unsigned int flags, const char **why)
{
	say(why, NULL);
	if (flags & ~PS_UFFD_ALL) {
		say(why, "flags");
		return -EINVAL;
	}
	return check_features(flags, why);
}

/* --- the host mapping ----------------------------------------------------- */

/* Widen [*lo, *hi] to take in page size @size. */
static void size_seen(uint64_t size, uint64_t *lo, uint64_t *hi)
{
	if (size < *lo)
		*lo = size;
	if (size > *hi)
		*hi = size;
}

/*
 * The smallest and largest page sizes of the VMAs that [host, end) touches,
 * from /proc/self/smaps (KernelPageSize), the way before PROCMAP_QUERY.
 * Reading smaps walks every VMA's page tables; only kernels older than 6.11
 * take this path.
 */
static int smaps_page_size(uint64_t host, uint64_t end, uint64_t *lo,
			   uint64_t *hi)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char *line = NULL;
	size_t cap = 0;
	bool in = false;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long a, b, kb;
		int used = 0;

		/* A VMA's first line: "start-end perms ...". */
		if (sscanf(line, "%llx-%llx %n", &a, &b, &used) == 2 && used) {
			in = a < end && b > host;
			continue;
		}
		if (in && sscanf(line, "KernelPageSize: %llu kB", &kb) == 1)
			size_seen(kb << 10, lo, hi);
	}
	free(line);
	fclose(f);
	return 0;
}

/*
 * The smallest and largest page sizes of the VMAs that [host, host + len)
 * touches (holes do not count: the registration fails on them), into *@lo
 * and *@hi (UINT64_MAX and 0 if none): PROCMAP_QUERY, one ioctl per VMA, or
 * smaps where the kernel lacks it.
 */
static int host_page_size(uint64_t host, uint64_t len, uint64_t *lo,
			  uint64_t *hi)
{
	const uint64_t end = host + len;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), rc = 0;

	*lo = UINT64_MAX;
	*hi = 0;
	if (fd < 0)
		return -errno;
	for (uint64_t at = host; at < end;) {
		struct procmap_query q;

		memset(&q, 0, sizeof(q));
		q.size = sizeof(q);
		q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA;
		q.query_addr = at;
		if (FAILPOINT(FP_NO_PROCMAP_QUERY)) {
			errno = ENOTTY;
		} else if (!ioctl(fd, PROCMAP_QUERY, &q)) {
			if (q.vma_start >= end)
				break;
			size_seen(q.vma_page_size, lo, hi);
			at = q.vma_end;
			continue;
		}
		if (errno == ENOENT) /* no VMA at or above @at */
			break;
		rc = errno == ENOTTY ? smaps_page_size(host, end, lo, hi)
				     : -errno;
		break;
	}
	close(fd);
	return rc;
}

/*
 * The host range's page size must be what the flags say. Hugetlb memory
 * (hugetlbfs files, MAP_HUGETLB, memfd MFD_HUGETLB) is write-protected only in
 * whole huge pages: UFFDIO_WRITEPROTECT of one 4 KiB page fails with EINVAL,
 * and PAGEMAP_SCAN with WP_MATCHING backs out of a huge page its range covers
 * in part, reporting nothing and not advancing. So it is attached only with
 * PS_UFFD_HUGETLB, which tracks it whole (U7), and only of 2 MiB pages;
 * PS_UFFD_HUGETLB needs every VMA of the range to be that. THP is 4 KiB memory
 * to the VMA: the kernel splits a huge PMD to protect part of it.
 */
static int check_host(const struct ps_uffd_config *cfg, const char **why)
{
	uint64_t lo, hi;
	int rc = host_page_size((uintptr_t)cfg->host, cfg->len, &lo, &hi);

	if (rc) {
		say(why, "/proc/self/maps");
		return rc;
	}
	if (FAILPOINT(FP_NO_HUGETLB_CHECK))
		return 0;
	if (!(cfg->flags & PS_UFFD_HUGETLB)) {
		if (hi <= PAGE_SIZE)
			return 0;
		say(why, "HUGETLB");
		return -EOPNOTSUPP;
	}
	if (lo == HUGE_SIZE && hi == HUGE_SIZE)
		return 0;
	if (hi <= PAGE_SIZE) {
		say(why, "not HUGETLB");
		return -EINVAL;
	}
	say(why, "HUGETLB"); /* 1 GiB pages, or some 4 KiB memory too */
	return -EOPNOTSUPP;
}

/* --- the kernel side ------------------------------------------------------ */

static uint64_t host_of(const struct ps_uffd *u, uint64_t addr)
{
	return (uint64_t)u->host + (addr - u->addr);
}

/* UFFDIO_WRITEPROTECT over library range [addr, addr + len). */
static int kernel_wp(struct ps_uffd *u, uint64_t addr, uint64_t len,
		     bool protect)
{
	struct uffdio_writeprotect wp;

	memset(&wp, 0, sizeof(wp));
	wp.range.start = host_of(u, addr);
	wp.range.len = len;
	wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	if (protect && FAILPOINT_ONCE(FP_WP_EIO))
		return -EIO;
	/* -EAGAIN: the mm is changing (a fork or remap event); try again. */
	while (ioctl(u->fd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

static bool is_hugetlb(const struct ps_uffd *u)
{
	return u->flags & PS_UFFD_HUGETLB;
}

/*
 * Library address range check: inside the attachment, aligned (to whole huge
 * pages for hugetlb, U7), not empty.
 */
static int range_check(const struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	uint64_t mask = is_hugetlb(u) ? HUGE_SIZE - 1 : PAGE_SIZE - 1;

	if (!len || (addr & mask) || (len & mask) || addr + len < addr)
		return -EINVAL;
	if (addr < u->addr || addr + len > u->addr + u->len)
		return -ENOENT;
	return 0;
}

/* Hugetlb: [*addr, *addr + *len) widened to whole huge pages (U7). */
static void round_huge(const struct ps_uffd *u, uint64_t *addr, uint64_t *len)
{
	uint64_t end = *addr + *len;

	if (!is_hugetlb(u))
		return;
	*addr &= ~(HUGE_SIZE - 1);
	end = (end + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
	*len = end - *addr;
}

/*
 * Record library pages [addr, addr + len) in the attachment's log (U3); for
 * hugetlb, their whole huge pages (U7).
 */
static void log_range(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	round_huge(u, &addr, &len);
	ps__hbm_set_range(&u->log, (addr - u->addr) >> PAGE_SHIFT,
			  len >> PAGE_SHIFT);
}

/* Record sorted page addresses, run by run. */
static void log_addrs(struct ps_uffd *u, const uint64_t *addrs, uint64_t n)
{
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;

		while (j < n && addrs[j] == addrs[j - 1] + PAGE_SIZE)
			j++;
		log_range(u, addrs[i], (j - i) << PAGE_SHIFT);
		i = j;
	}
}

/* --- protect and unprotect (U1) ------------------------------------------- */

/*
 * Can the kernel protect a host page only where it has a PTE? Sync
 * anonymous ranges without PS_UFFD_UNPOPULATED: UFFDIO_WRITEPROTECT skips a
 * page with no PTE (never touched, or dropped by a discard's MADV_DONTNEED),
 * and the first write there later maps a new page unprotected, without a
 * fault. Shared ranges (the kernel keeps UFFD_WP markers) and ranges with
 * WP_UNPOPULATED (async implies it) protect holes with markers.
 */
static bool kernel_needs_pte(const struct ps_uffd *u)
{
	/* Hugetlb VMAs use markers as shmem does. */
	return !(u->flags & (PS_UFFD_ASYNC | PS_UFFD_SHARED |
			     PS_UFFD_UNPOPULATED | PS_UFFD_HUGETLB));
}

/*
 * Give host pages [host_of(addr), + len) a PTE without writing them: a read
 * fault maps the zero page where there is no page (MADV_POPULATE_READ; an
 * existing PTE is left alone). Before Linux 5.14 (EINVAL), each page is
 * read instead, which faults the same way.
 */
static int populate_host(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	uintptr_t h = (uintptr_t)host_of(u, addr);

	for (;;) {
		if (FAILPOINT(FP_NO_POPULATE_READ))
			errno = EINVAL;
		else if (!madvise((void *)h, len, MADV_POPULATE_READ))
			return 0;
		if (errno != EINTR && errno != EAGAIN)
			break;
	}
	if (errno != EINVAL)
		return -errno;
	for (uint64_t off = 0; off < len; off += PAGE_SIZE)
		/* Relaxed: only the read fault matters, not the value. */
		(void)atomic_load_explicit((PS_ATOMIC(char) *)(h + off),
					   memory_order_relaxed);
	return 0;
}

/*
 * Give the host pages under the library's present entries of [addr, addr
 * + len) a PTE (kernel_needs_pte()), so that the kernel protects what the
 * library protects: every present entry of a registered range is protected
 * after ps_pgtable_protect(). Holes of the library are left alone: the
 * kernel protecting more than the library would cost mismatched faults.
 */
static int populate_present(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	struct ps_pgtable_region r[64];
	struct ps_pgtable_scan q;

	memset(&q, 0, sizeof(q));
	q.start = addr;
	q.end = addr + len;
	q.category_mask = PS_CAT_PRESENT;
	q.return_mask = PS_CAT_PRESENT;
	q.vec = r;
	q.vec_len = sizeof(r) / sizeof(r[0]);
	while (q.start < q.end) {
		long n = ps_pgtable_scan(u->pt, &q);

		if (n < 0)
			return (int)n; /* not for these arguments */
		for (long i = 0; i < n; i++) {
			int rc = populate_host(u, r[i].start,
					       r[i].end - r[i].start);

			if (rc)
				return rc;
		}
		q.start = q.walk_end;
	}
	return 0;
}

/*
 * The kernel's half of a protect: UFFDIO_WRITEPROTECT, after giving the
 * library's present pages a PTE where the kernel needs one (U1).
 */
static int kernel_protect(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	int rc = kernel_needs_pte(u) ? populate_present(u, addr, len) : 0;

	return rc ? rc : kernel_wp(u, addr, len, true);
}

/*
 * U1: the library, then the kernel. If the kernel refuses a protect, the
 * library range is unprotected again: the library must never be more
 * protected than the kernel (a write the kernel lets through unreported
 * would be lost), while the reverse only costs spurious reports (async:
 * the library's unprotected entries are written) or faults that resolve
 * as usual (sync). A refused unprotect leaves that safe side as it is.
 * Hugetlb: whole huge pages (U7), the only unit the kernel protects.
 */
static int protect_locked(struct ps_uffd *u, uint64_t addr, uint64_t len,
			  bool protect)
{
	int rc;

	round_huge(u, &addr, &len);
	/*
	 * THP: the kernel splits a huge PMD that the range covers in part,
	 * whether or not its protection changes (change_pmd_range() in
	 * mm/mprotect.c); the library splits such a leaf only where it
	 * changes a page. Split it here too, so that both keep the same
	 * granularity (U7). A failed split (ENOMEM) only costs that.
	 */
	if (!is_hugetlb(u) && (addr & (HUGE_SIZE - 1)))
		(void)ps_pgtable_split(u->pt, addr, PAGE_SIZE);
	if (!is_hugetlb(u) && ((addr + len) & (HUGE_SIZE - 1)))
		(void)ps_pgtable_split(u->pt, addr + len - PAGE_SIZE,
				       PAGE_SIZE);
	rc = protect ? ps_pgtable_protect(u->pt, addr, len)
		     : ps_pgtable_unprotect(u->pt, addr, len);
	if (rc)
		return rc;
	rc = protect ? kernel_protect(u, addr, len)
		     : kernel_wp(u, addr, len, false);
	if (rc && protect)
		(void)ps_pgtable_unprotect(u->pt, addr, len);
	return rc;
}

int ps_uffd_protect(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	int rc = range_check(u, addr, len);

	if (rc)
		return rc;
	PS__FORK_CHECK(u->born, "uffd attachment");
	pthread_mutex_lock(&u->lock);
	rc = protect_locked(u, addr, len, true);
	pthread_mutex_unlock(&u->lock);
	return rc;
}

int ps_uffd_unprotect(struct ps_uffd *u, uint64_t addr, uint64_t len)
{
	int rc = range_check(u, addr, len);

	if (rc)
		return rc;
	PS__FORK_CHECK(u->born, "uffd attachment");
	pthread_mutex_lock(&u->lock);
	rc = protect_locked(u, addr, len, false);
	pthread_mutex_unlock(&u->lock);
	return rc;
}

/* --- sync faults (U2, U5) ------------------------------------------------- */

/*
 * Resolve a write-protect fault at library page @addr (U1, U2): 0, or the
 * errno of the kernel's un-protect, which leaves the writer blocked (and
 * the library side resolved: the safe side, see protect_locked()).
 */
static int resolve(struct ps_uffd *u, uint64_t addr)
{
	const unsigned int access = PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP;
	uint64_t wa = addr, wlen = PAGE_SIZE;
	enum ps_fault fr;
	int rc;

	/* Hugetlb: the kernel un-protects the whole huge page (U7). */
	round_huge(u, &wa, &wlen);

	pthread_mutex_lock(&u->lock);
	if (u->space)
		fr = ps__space_fault_nopopulate(u->space, addr, access);
	else
		fr = ps_pgtable_fault(u->pt, addr, access);
	if (fr != PS_FAULT_OK) {
		/*
		 * The library had no writable page there (none, a marker, a
		 * read-only entry): the write happened in host memory all
		 * the same. Drop the library's protection so both agree.
		 */
		(void)ps_pgtable_unprotect(u->pt, addr, PAGE_SIZE);
		count(&u->mismatches, 1);
	}
	if (u->space)
		ps__space_log_addr(u->space, addr);
	else
		log_range(u, addr, PAGE_SIZE);
	if (wlen != PAGE_SIZE) {
		/*
		 * The rest of the huge page becomes writable in the kernel
		 * with it: unprotected in the library too (U1), and logged,
		 * since a write there will not fault.
		 */
		(void)ps_pgtable_unprotect(u->pt, wa, wlen);
		log_range(u, wa, wlen);
	}
	rc = kernel_wp(u, wa, wlen, false); /* wakes the writer */
	if (rc)
		note_error(u, rc);
	else
		count(&u->faults, 1);
	pthread_mutex_unlock(&u->lock);
	return rc;
}

static int handle(struct ps_uffd *u, unsigned int max)
{
	struct uffd_msg msg[MSG_BATCH];
	int done = 0, err = 0;

	while (!err) {
		size_t want = MSG_BATCH;
		ssize_t n;

		if (max && max - (unsigned int)done < want)
			want = max - (unsigned int)done;
		if (!want)
			break;
		n = read(u->fd, msg, want * sizeof(msg[0]));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			err = -errno;
			note_error(u, err);
			return err;
		}
		/* Every message read is resolved, whatever fails first. */
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			uint64_t a = msg[i].arg.pagefault.address &
				     ~(PAGE_SIZE - 1);
			int rc;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT ||
			    !(msg[i].arg.pagefault.flags &
			      UFFD_PAGEFAULT_FLAG_WP) ||
			    a < (uint64_t)u->host || a - u->host >= u->len)
				continue;
			rc = resolve(u, u->addr + (a - u->host));
			if (rc && !err)
				err = rc;
			done++;
		}
		if ((size_t)n < want * sizeof(msg[0]))
			break;
	}
	return err ? err : done;
}

int ps_uffd_handle_events(struct ps_uffd *u, unsigned int max)
{
	PS__FORK_CHECK(u->born, "uffd attachment");
	if (u->flags & (PS_UFFD_ASYNC | PS_UFFD_THREAD))
		return -EINVAL;
	return handle(u, max);
}

/*
 * The handler thread: until detach signals u->stop, resolve the faults
 * (handle() counts its own failures). It never gives up while attached:
 * writers blocked on a fault have no one else to wake them. A failed
 * poll() (ENOMEM) or an error on the userfaultfd (not expected: it is
 * initialised and open until after the join) is counted in the stats and
 * retried after a pause, so it costs no busy loop.
 */
static void *handler_thread(void *arg)
{
	struct ps_uffd *u = arg;
	struct pollfd p[2] = {{.fd = u->fd, .events = POLLIN},
			      {.fd = u->stop, .events = POLLIN}};

	for (;;) {
		int rc, err = 0;

		if (FAILPOINT_ONCE(FP_POLL_ENOMEM)) {
			rc = -1;
			errno = ENOMEM;
		} else {
			rc = poll(p, 2, -1);
		}
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			err = -errno;
		else if (p[1].revents)
			break; /* detach */
		else if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			err = -EIO;
		else if (p[0].revents & POLLIN)
			(void)handle(u, 0);
		if (err) {
			struct timespec pause = {0, 10 * 1000 * 1000};

			note_error(u, err);
			nanosleep(&pause, NULL);
		}
	}
	return NULL;
}

/* --- harvest (U3, U4) ----------------------------------------------------- */

/*
 * Mirror the kernel's re-arm in the table. PAGEMAP_SCAN reports every none
 * PTE as written (a page never protected, or dropped with its protection)
 * and re-arms it as a UFFD_WP marker, and every other page it reports it
 * re-protects; so each reported page is protected in the kernel after the scan,
 * and a none entry of the library there becomes a UFFD_WP marker (U1: both
 * protected). Only none entries change, each by one CAS: an entry mapped
 * meanwhile is the library's own business, and a written library entry (a
 * WRITTEN marker too: a page zapped while written, the library's counterpart of
 * that none PTE) is left for the library's own harvest to report and re-arm.
 *
 * The kernel is asked for WRITTEN alone (its fast path, see
 * collect_kernel()), so it does not say which reported pages were none: the
 * library's entries do. A short run is looked up page by page (one
 * read-side section for the whole batch); a long one is read by a report
 * scan, in runs of equal presence, which costs less per page than lookups
 * once past its fixed cost (tabulating the segment's categories).
 */
#define MIRROR_SCAN_PAGES 256 /* runs at least this long: a report scan */

static void mirror_none(struct ps_uffd *u, uint64_t a, uint64_t end)
{
	const ps_pte_t marker = ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);

	for (; a < end; a += PAGE_SIZE) {
		ps_pte_t e = PS_PTE_NONE;

		if (ps_pgtable_lookup(u->pt, a) == PS_PTE_NONE)
			(void)ps_pgtable_cmpxchg(u->pt, a, &e, marker);
	}
}

static void mirror_rearm(struct ps_uffd *u, const struct page_region *vec,
			 long n)
{
	ps_pgtable_read_lock();
	for (long i = 0; i < n; i++) {
		uint64_t lib = u->addr + (vec[i].start - u->host);
		uint64_t end = lib + (vec[i].end - vec[i].start);
		struct ps_pgtable_region r[64];
		struct ps_pgtable_scan q;

		if (end - lib < MIRROR_SCAN_PAGES * PAGE_SIZE) {
			mirror_none(u, lib, end);
			continue;
		}
		/*
		 * Every page, in runs of equal form: a run with none of
		 * PRESENT, SWAPPED and MARKER (markers count as swapped, but
		 * for a WRITTEN marker) is none.
		 * (Asking for none pages alone would be slower: the scan
		 * takes long runs of matching pages at a compare per page,
		 * and judges a page that does not match on its own.)
		 */
		memset(&q, 0, sizeof(q));
		q.start = lib;
		q.end = end;
		q.return_mask = PS_CAT_PRESENT | PS_CAT_SWAPPED | PS_CAT_MARKER;
		q.vec = r;
		q.vec_len = sizeof(r) / sizeof(r[0]);
		while (q.start < end) {
			long m = ps_pgtable_scan(u->pt, &q);

			if (m < 0) { /* cannot fail for these arguments */
				mirror_none(u, q.start, end);
				break;
			}
			for (long j = 0; j < m; j++)
				if (!r[j].categories)
					mirror_none(u, r[j].start, r[j].end);
			q.start = q.walk_end;
		}
	}
	ps_pgtable_read_unlock();
}

/* Set or test the bit of the 2 MiB block of library address @a (THP, U7). */
static uint64_t huge_bit(const struct ps_uffd *u, uint64_t a)
{
	return (a - u->hbase) >> HUGE_SHIFT;
}

/*
 * THP: the kernel reported [a, a + len) as written huge pages (PMD-mapped,
 * so whole aligned blocks: the scan's range may cut one only at the
 * attachment's ends, and the kernel splits a huge page it reports in part).
 * Each whole block is noted, to be reported at 2 MiB if it is taken whole.
 */
static void note_huge(struct ps_uffd *u, uint64_t a, uint64_t len)
{
	uint64_t b = (a + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);

	for (; b + HUGE_SIZE <= a + len; b += HUGE_SIZE)
		(void)ps__hbm_set(&u->huge, huge_bit(u, b));
}

static enum ps__hbm_verdict clear_visit(void *ctx, uint64_t bit)
{
	(void)ctx;
	(void)bit;
	return PS__HBM_CLEAR;
}

/* THP: a page of @a's block is taken, so the block is no longer whole. */
static void forget_huge(struct ps_uffd *u, uint64_t a)
{
	uint64_t bit;

	if (!(u->flags & PS_UFFD_THP))
		return;
	bit = huge_bit(u, a);
	if (ps__hbm_test(&u->huge, bit))
		(void)ps__hbm_harvest(&u->huge, bit, 1, clear_visit, NULL,
				      NULL);
}

/*
 * Async: the CPU's writes, from PAGEMAP_SCAN get-and-rearm, into the log.
 * The query is exactly the kernel's fast path (category and return mask
 * WRITTEN, nothing else). Any other return category makes the kernel
 * compute every PTE's categories: on Linux 6.18 that adds 0.36 ms per GiB,
 * so at 1% written the scan took 1.75x as long.
 */
static int collect_kernel(struct ps_uffd *u, uint64_t start, uint64_t end)
{
	struct page_region vec[SCAN_VEC];
	struct pm_scan_arg a;
	uint64_t hend = host_of(u, end), pages;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	a.start = host_of(u, start);
	a.end = hend;
	a.vec = (uint64_t)(uintptr_t)vec;
	a.vec_len = SCAN_VEC;
	a.category_mask = PAGE_IS_WRITTEN;
	/*
	 * THP: which runs are huge pages re-armed whole (U7). This leaves the
	 * fast path, the price of knowing.
	 */
	a.return_mask = PAGE_IS_WRITTEN |
			(u->flags & PS_UFFD_THP ? PAGE_IS_HUGE : 0);
	memset(vec, 0, sizeof(vec)); /* see below: zero where not written */
	while (a.start < hend) {
		long n = ioctl(u->pagemap, PAGEMAP_SCAN, &a);
		int err = n < 0 ? errno : 0;

		if (n > 0 && FAILPOINT_ONCE(FP_SCAN_EIO))
			err = EIO;
		else if (n > 0 && FAILPOINT_ONCE(FP_SCAN_EINTR))
			err = EINTR;
		if (err || n < 0) {
			/*
			 * U3: a failed call may have re-armed pages already.
			 * The kernel re-arms a page as it adds it to its
			 * buffer, and copies the buffer into vec, batch after
			 * batch, before it returns any error (a copy into vec
			 * cannot fault: it is ours); so those pages are the
			 * regions written, a prefix of vec, which is zero
			 * past what the kernel wrote. Log them, then fail
			 * (or ask again: they will not be reported twice).
			 */
			n = 0;
			while (n < SCAN_VEC && vec[n].end > vec[n].start)
				n++;
		}
		pages = 0;
		for (long i = 0; i < n; i++) {
			uint64_t len = vec[i].end - vec[i].start;

			log_range(u, u->addr + (vec[i].start - u->host), len);
			if (vec[i].categories & PAGE_IS_HUGE)
				note_huge(u, u->addr + (vec[i].start - u->host),
					  len);
			pages += len >> PAGE_SHIFT;
		}
		count(&u->kernel_pages, pages);
		mirror_rearm(u, vec, n);
		memset(vec, 0, (size_t)n * sizeof(vec[0]));
		if (err == EINTR || err == EAGAIN)
			continue;
		if (err)
			return -err;
		/*
		 * No progress: the kernel backed out of a huge page the range
		 * covers in part (hugetlb, which attach refuses, mapped over
		 * the attachment since). Asking again would get the same.
		 */
		if (a.walk_end <= a.start)
			return -EOPNOTSUPP;
		a.start = a.walk_end;
	}
	return 0;
}

/*
 * What a harvest returns, taken from the log: page addresses
 * (ps_uffd_harvest()) or runs (ps_uffd_harvest_runs()), at most @max.
 */
struct log_out {
	struct ps_uffd *u;
	uint64_t *addrs;	  /* pages, or NULL */
	struct ps_uffd_run *runs; /* runs, or NULL */
	uint64_t max, n;
	uint64_t lo, hi;   /* the harvest's library range */
	uint64_t skip_end; /* runs: the end of a huge page taken whole */
};

/* Pages: hugetlb takes whole huge pages only (U7). */
static enum ps__hbm_verdict log_visit(void *ctx, uint64_t bit)
{
	struct log_out *o = ctx;
	uint64_t a = o->u->addr + (bit << PAGE_SHIFT);

	if (o->n == o->max || (is_hugetlb(o->u) && !(a & (HUGE_SIZE - 1)) &&
			       o->max - o->n < HUGE_PAGES))
		return PS__HBM_STOP;
	o->addrs[o->n++] = a;
	forget_huge(o->u, a);
	return PS__HBM_CLEAR;
}

/*
 * THP, before the log is taken: a noted block with a page missing from the log
 * is no longer whole (a page of it was taken alone since, or the block lies
 * partly outside the attachment), so its note goes. (A harvest of the log takes
 * a word of bits at a time, so this cannot be asked during one.)
 */
static enum ps__hbm_verdict prune_visit(void *ctx, uint64_t bit)
{
	struct ps_uffd *u = ctx;
	uint64_t a = u->hbase + (bit << HUGE_SHIFT), first;

	if (a < u->addr || a + HUGE_SIZE > u->addr + u->len)
		return PS__HBM_CLEAR;
	first = (a - u->addr) >> PAGE_SHIFT;
	for (uint64_t i = 0; i < HUGE_PAGES; i++)
		if (!ps__hbm_test(&u->log, first + i))
			return PS__HBM_CLEAR;
	return PS__HBM_KEEP;
}

static void prune_huge(struct ps_uffd *u, uint64_t start, uint64_t end)
{
	uint64_t first = huge_bit(u, start);

	if (u->flags & PS_UFFD_THP)
		(void)ps__hbm_harvest(&u->huge, first,
				      huge_bit(u, end - 1) + 1 - first,
				      prune_visit, u, NULL);
}

/*
 * Is the 2 MiB block at @a a huge page tracked whole (U7)? Hugetlb: every
 * block (the log holds whole ones). THP: a block the kernel reported whole,
 * inside the harvest's range, with every page still in the log
 * (prune_huge() saw to that).
 */
static bool whole_huge(const struct log_out *o, uint64_t a)
{
	const struct ps_uffd *u = o->u;

	if (a & (HUGE_SIZE - 1))
		return false;
	if (is_hugetlb(u))
		return true;
	return (u->flags & PS_UFFD_THP) && a + HUGE_SIZE <= o->hi &&
	       ps__hbm_test(&u->huge, huge_bit(u, a));
}

/* Runs: a page extends the last run, or starts one, with its granularity. */
static enum ps__hbm_verdict runs_visit(void *ctx, uint64_t bit)
{
	struct log_out *o = ctx;
	uint64_t a = o->u->addr + (bit << PAGE_SHIFT);
	unsigned int shift = PAGE_SHIFT;
	struct ps_uffd_run *r = o->n ? &o->runs[o->n - 1] : NULL;

	if (a < o->skip_end)
		return PS__HBM_CLEAR; /* inside a huge page taken whole */
	if (whole_huge(o, a)) {
		shift = HUGE_SHIFT;
		o->skip_end = a + HUGE_SIZE;
	}
	if (!r || r->shift != shift || r->addr + r->len != a) {
		if (o->n == o->max)
			return PS__HBM_STOP;
		r = &o->runs[o->n++];
		r->addr = a;
		r->len = 0;
		r->shift = shift;
	}
	r->len += UINT64_C(1) << shift;
	forget_huge(o->u, a);
	return PS__HBM_CLEAR;
}

/*
 * How many of the space's pages sp[0..ns) are among the first @max pages
 * of their union with the attachment's log, in address order: a walk of
 * the log that keeps every bit and stops once that is decided.
 */
struct merge {
	const uint64_t *sp;
	uint64_t ns, j;	 /* j: the space's pages counted so far */
	uint64_t t, max; /* t: pages of the union counted so far */
	uint64_t base;
};

static enum ps__hbm_verdict merge_visit(void *ctx, uint64_t bit)
{
	struct merge *m = ctx;
	uint64_t a = m->base + (bit << PAGE_SHIFT);

	for (; m->j < m->ns && m->sp[m->j] < a && m->t < m->max; m->j++)
		m->t++;
	if (m->j == m->ns || m->t == m->max)
		return PS__HBM_STOP; /* decided; the bits stay */
	if (m->sp[m->j] == a)
		m->j++; /* in both: one page */
	m->t++;
	return PS__HBM_KEEP;
}

/*
 * Of the pages @pages[0..@n) a collect took (ascending, at most @max), how
 * many the budget returns: those among the first @max pages of their union
 * with the attachment's log over [@start, @start + @len).
 */
static uint64_t within_budget(struct ps_uffd *u, uint64_t start, uint64_t len,
			      const uint64_t *pages, uint64_t n, uint64_t max)
{
	struct merge m = {pages, n, 0, 0, max, u->addr};

	(void)ps__hbm_harvest(&u->log, (start - u->addr) >> PAGE_SHIFT,
			      len >> PAGE_SHIFT, merge_visit, &m, NULL);
	for (; m.j < m.ns && m.t < max; m.j++)
		m.t++;
	return m.j;
}

/* Sync: re-protect pages, run by run, in both places (U1, U4). */
static int rearm_reported(struct ps_uffd *u, const uint64_t *addrs, uint64_t n)
{
	int rc = 0;

	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;
		int r;

		while (j < n && addrs[j] == addrs[j - 1] + PAGE_SIZE)
			j++;
		r = protect_locked(u, addrs[i], (j - i) << PAGE_SHIFT, true);
		if (r && !rc)
			rc = r;
		i = j;
	}
	return rc;
}

/*
 * A bare table's collect: the runs its get-and-rearm scan reports. Async, or
 * with no room left in @pages, a run goes straight into the log; in sync mode
 * the first @max pages go into @pages (for within_budget()), and a page past
 * them, which the budget cannot return, is logged and protected in the kernel
 * at once (U1: the scan re-armed it in the library).
 */
struct table_collect {
	struct ps_uffd *u;
	uint64_t *pages;
	uint64_t max, n; /* max 0: log every run (async) */
	int rc;		 /* the first refusal of the kernel's half */
};

/*
 * Async hugetlb (U7): the library's own re-arm turns a WRITTEN marker (a page
 * written, then zapped) into a UFFD_WP marker. The kernel's counterpart, a
 * none huge entry, is not WRITTEN to PAGEMAP_SCAN, so the kernel's scan left
 * it unprotected; and protecting it in the kernel now could re-protect a page
 * the CPU wrote since the scan. So those library pages of [a, end) go back to
 * none, with one CAS each (U1: never protected in the library alone). A write
 * there later maps a page the kernel reports as written.
 */
static void unmark_hugetlb(struct ps_uffd *u, uint64_t a, uint64_t end)
{
	const ps_pte_t marker = ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);

	if (!is_hugetlb(u) || !(u->flags & PS_UFFD_ASYNC))
		return;
	ps_pgtable_read_lock();
	for (; a < end; a += PAGE_SIZE) {
		ps_pte_t e = marker;

		(void)ps_pgtable_cmpxchg(u->pt, a, &e, PS_PTE_NONE);
	}
	ps_pgtable_read_unlock();
}

static void table_collect_run(void *ctx, uint64_t start, uint64_t end,
			      unsigned int order)
{
	struct table_collect *c = ctx;
	uint64_t a = start;
	int rc;

	/*
	 * A THP leaf the library re-armed whole, still a huge page (present,
	 * so the kernel's is PMD-mapped too): report it whole (U7). A huge
	 * marker leaf (a huge page zapped) is a hole to the kernel, which
	 * re-arms it 4 KiB at a time.
	 */
	if (order == PS_PGTABLE_ORDER_2M && (c->u->flags & PS_UFFD_THP))
		for (uint64_t b = start; b < end; b += HUGE_SIZE) {
			ps_pte_t e;

			if (!ps_pgtable_get(c->u->pt, b, &e) &&
			    ps_pte_is_present(e))
				note_huge(c->u, b, HUGE_SIZE);
		}
	unmark_hugetlb(c->u, start, end);
	for (; a < end && c->n < c->max; a += PAGE_SIZE)
		c->pages[c->n++] = a;
	if (a == end)
		return;
	log_range(c->u, a, end - a);
	if (!c->max)
		return;
	rc = protect_locked(c->u, a, end - a, true);
	if (rc && !c->rc)
		c->rc = rc;
}

/*
 * Bare table: its written entries, re-armed in the library as reported, into
 * the log. Sync: the pages the budget will not return are protected in the
 * kernel too before the call returns (U1; those it returns are, after it,
 * by rearm_reported()); the kernel's refusal goes to *@late, the library
 * then unprotected there (protect_locked()), the pages still logged.
 */
static int collect_table(struct ps_uffd *u, uint64_t start, uint64_t len,
			 uint64_t *addrs, uint64_t max, int *late)
{
	bool sync = !(u->flags & PS_UFFD_ASYNC);
	struct table_collect c = {u, addrs, sync ? max : 0, 0, 0};
	int rc = ps_pgtable_harvest_order(u->pt, start, len, 0,
					  table_collect_run, &c);
	/* A failed harvest returns nothing: all of them are left over. */
	uint64_t j = c.n && !rc ? within_budget(u, start, len, addrs, c.n, max)
				: 0;

	/* After a failed harvest too: what it re-armed is recorded. */
	log_addrs(u, addrs, c.n);
	if (j < c.n) {
		int r = rearm_reported(u, addrs + j, c.n - j);

		if (r && !c.rc)
			c.rc = r;
	}
	*late = c.rc;
	return rc;
}

/*
 * Hugetlb: the space's harvest stops after a number of pages, so its
 * *@resume may fall inside a huge page, and the next call, covering part of
 * one, would be refused. If the huge page was logged whole by this call
 * (the last of the @n_taken pages @taken is in it), its pages still in the
 * space's log are taken now: the huge page is reported whole, they add nothing.
 * Otherwise none of its pages was taken, none lies before *@resume in the
 * space's log, and the next call starts at the huge page. @end: the range's.
 */
static void resume_between_huge(struct ps_uffd *u, uint64_t end,
				const uint64_t *taken, uint64_t n_taken,
				uint64_t *resume)
{
	const uint64_t h = *resume & ~(HUGE_SIZE - 1);
	uint64_t rest[HUGE_PAGES], n = 0;

	if (*resume >= end || *resume == h)
		return;
	if (!n_taken || taken[n_taken - 1] < h) {
		*resume = h;
		return;
	}
	/*
	 * The whole huge page, as the kernel and a PS_WP_HUGE_WHOLE scan want
	 * it: pages taken already are not in the log (but those pinned for
	 * write, which are reported again, to no effect).
	 */
	if (ps_space_harvest(u->space, h, HUGE_SIZE, PS_HARVEST_REARM, rest,
			     HUGE_PAGES, &n, resume)) {
		*resume = h; /* left in the space's log: reported again */
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		unmark_hugetlb(u, rest[i], rest[i] + PAGE_SIZE);
	log_addrs(u, rest, n);
}

/*
 * Space: its harvest with PS_HARVEST_REARM (the library's written entries of
 * async ranges, re-armed; the dirty log's marks, resolved sync faults and pages
 * pinned for write, sync ones re-armed too; the secondary mappings of all of
 * them invalidated), at most @max pages into @addrs. Only the pages the
 * caller's budget returns move into the attachment's log: the budget applies to
 * their union with the pages already there (the kernel's, a discard's), and
 * the space's pages beyond it go back to the space's log (ps_space_redirty(),
 * before the harvest returns; their invalidation was merely early). So the
 * space's log keeps every page a harvest does not return: for the next
 * harvest, for ps_space_harvest() and after detach. In sync mode those pages
 * stay re-armed, as ps_space_redirty() leaves them, and are protected in the
 * kernel too (U1); a refusal there goes to *@late (the library then
 * unprotected there, protect_locked()). *@resume: the first of the space's
 * pages still recorded, or the end.
 *
 * The kernel's pages go straight into the attachment's log, not through
 * the space's, so they cost no notifier invalidation and no pin check: a
 * writable secondary mapping is always in the space's log (the helper logs its
 * page before installing it, and the harvest that takes the page invalidates
 * it), and a page pinned for write stays in that log while pinned. So a page
 * that only the CPU wrote has no writable secondary mapping to tear down.
 */
static int collect_space(struct ps_uffd *u, uint64_t start, uint64_t len,
			 uint64_t *addrs, uint64_t max, uint64_t *resume,
			 int *late)
{
	uint64_t ns, j;
	int rc = ps_space_harvest(u->space, start, len, PS_HARVEST_REARM, addrs,
				  max, &ns, resume);

	if (rc || !ns)
		return rc;
	for (uint64_t i = 0; i < ns; i++)
		unmark_hugetlb(u, addrs[i], addrs[i] + PAGE_SIZE);
	j = within_budget(u, start, len, addrs, ns, max);
	if (j < ns) { /* beyond the budget: back where they were */
		(void)ps_space_redirty(u->space, addrs + j, ns - j);
		*resume = addrs[j];
		if (!(u->flags & PS_UFFD_ASYNC))
			*late = rearm_reported(u, addrs + j, ns - j);
	}
	log_addrs(u, addrs, j);
	if (is_hugetlb(u))
		resume_between_huge(u, start + len, addrs, j, resume);
	return 0;
}

/* Sync: re-protect the runs a harvest returns, in both places (U1, U4). */
static int rearm_runs(struct ps_uffd *u, const struct ps_uffd_run *runs,
		      uint64_t n)
{
	int rc = 0;

	for (uint64_t i = 0; i < n; i++) {
		int r = protect_locked(u, runs[i].addr, runs[i].len, true);

		if (r && !rc)
			rc = r;
	}
	return rc;
}

/*
 * Sync, after a refused re-arm: the runs a harvest would have returned go
 * back where they are reported again, a space's into the space's log, page
 * by page through @buf.
 */
static void unreport_runs(struct ps_uffd *u, const struct ps_uffd_run *runs,
			  uint64_t n, uint64_t *buf, uint64_t bufmax)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = runs[i].addr, end = a + runs[i].len;

		if (!u->space) {
			log_range(u, a, runs[i].len);
			continue;
		}
		while (a < end) {
			uint64_t k = 0;

			for (; k < bufmax && a < end; a += PAGE_SIZE)
				buf[k++] = a;
			(void)ps_space_redirty(u->space, buf, k);
		}
	}
}

/*
 * The harvest of both calls: collect into the log (@buf, room @bufmax, is
 * the collect's scratch), then take what @o has room for, then (sync)
 * re-arm it. Returns the pages taken in *@pages.
 */
static int harvest(struct ps_uffd *u, uint64_t start, uint64_t len,
		   uint64_t *buf, uint64_t bufmax, struct log_out *o,
		   uint64_t *pages, uint64_t *resume)
{
	bool async = u->flags & PS_UFFD_ASYNC;
	uint64_t res = start + len, sres = start + len, bit = 0;
	int rc = 0, late = 0;

	*pages = 0;
	pthread_mutex_lock(&u->lock);
	if (async)
		rc = collect_kernel(u, start, start + len);
	if (!rc)
		rc = u->space
			     ? collect_space(u, start, len, buf, bufmax, &sres,
					     &late)
			     : collect_table(u, start, len, buf, bufmax, &late);
	if (!rc) {
		if (o->runs)
			prune_huge(u, start, start + len);
		(void)ps__hbm_harvest(&u->log, (start - u->addr) >> PAGE_SHIFT,
				      len >> PAGE_SHIFT,
				      o->runs ? runs_visit : log_visit, o,
				      &bit);
		res = u->addr + (bit << PAGE_SHIFT);
		if (sres < res) /* the space still holds an earlier page */
			res = sres;
	}
	if (!rc && !async) {
		rc = o->runs ? rearm_runs(u, o->runs, o->n)
			     : rearm_reported(u, o->addrs, o->n);
		if (!rc)
			rc = late; /* a page left over was refused */
		/* Not all re-protected: report them again next time. */
		if (rc && o->runs)
			unreport_runs(u, o->runs, o->n, buf, bufmax);
		else if (rc && u->space)
			(void)ps_space_redirty(u->space, o->addrs, o->n);
		else if (rc)
			log_addrs(u, o->addrs, o->n);
	}
	pthread_mutex_unlock(&u->lock);
	if (rc)
		return rc;
	if (o->runs)
		for (uint64_t i = 0; i < o->n; i++)
			*pages += o->runs[i].len >> PAGE_SHIFT;
	else
		*pages = o->n;
	if (resume)
		*resume = res;
	return 0;
}

int ps_uffd_harvest(struct ps_uffd *u, uint64_t start, uint64_t len,
		    uint64_t *addrs, uint64_t max, uint64_t *count_out,
		    uint64_t *resume)
{
	struct log_out o = {u, addrs, NULL, max, 0, start, start + len, 0};
	uint64_t pages;
	int rc = range_check(u, start, len);

	if (rc)
		return rc;
	if (!addrs || !max || !count_out || (is_hugetlb(u) && max < HUGE_PAGES))
		return -EINVAL;
	PS__FORK_CHECK(u->born, "uffd attachment");
	rc = harvest(u, start, len, addrs, max, &o, &pages, resume);
	if (rc)
		return rc;
	count(&u->harvested, pages);
	*count_out = o.n;
	return 0;
}

int ps_uffd_harvest_runs(struct ps_uffd *u, uint64_t start, uint64_t len,
			 struct ps_uffd_run *runs, uint64_t max,
			 uint64_t *count_out, uint64_t *resume)
{
	struct log_out o = {u, NULL, runs, max, 0, start, start + len, 0};
	uint64_t buf[RUN_BATCH], pages;
	int rc = range_check(u, start, len);

	if (rc)
		return rc;
	if (!runs || !max || !count_out)
		return -EINVAL;
	PS__FORK_CHECK(u->born, "uffd attachment");
	rc = harvest(u, start, len, buf, RUN_BATCH, &o, &pages, resume);
	if (rc)
		return rc;
	count(&u->harvested, pages);
	*count_out = o.n;
	return 0;
}

/* --- discard (U6) --------------------------------------------------------- */

/* ps__space_discard()'s callback: @addr was dropped, its memory released. */
static void note_dropped(void *ctx, uint64_t addr)
{
	struct ps_uffd *u = ctx;

	(void)ps__hbm_set(&u->dropped, (addr - u->addr) >> PAGE_SHIFT);
}

/* What the kernel protects and logs as one: a huge page for hugetlb (U7). */
static uint64_t unit_size(const struct ps_uffd *u)
{
	return is_hugetlb(u) ? HUGE_SIZE : PAGE_SIZE;
}

/*
 * Is the library's unit at @addr (unit_size()) protected anywhere? The
 * kernel must then protect all of it (U1: never less than the library).
 */
static bool unit_wp(struct ps_uffd *u, uint64_t addr)
{
	for (uint64_t a = addr; a < addr + unit_size(u); a += PAGE_SIZE) {
		ps_pte_t e;

		if (!ps_pgtable_get(u->pt, a, &e) && ps_pte_uffd_wp(e))
			return true;
	}
	return false;
}

/* The dropped pages being fixed up: [start, end), a run of them. */
struct fixup {
	struct ps_uffd *u;
	uint64_t start, end;
	int rc;
};

static void fixup_error(struct fixup *f, int rc)
{
	if (rc && !f->rc)
		f->rc = rc;
}

/*
 * The kernel's side of a run of dropped pages, under the attachment's
 * mutex (U6): a PTE for each host page where the kernel needs one to
 * protect it (the zero page), the host pages protected where the library's
 * entries are (a refusal leaves those unprotected in the library too: U1's
 * safe side), then the run logged for the next harvest.
 */
static void fixup_flush(struct fixup *f)
{
	struct ps_uffd *u = f->u;

	if (f->end == f->start)
		return;
	if (kernel_needs_pte(u))
		fixup_error(f, populate_host(u, f->start, f->end - f->start));
	for (uint64_t a = f->start; a < f->end;) {
		uint64_t b = a;
		int rc;

		while (b < f->end && unit_wp(u, b))
			b += unit_size(u);
		if (b == a) {
			a += unit_size(u);
			continue;
		}
		rc = kernel_protect(u, a, b - a);
		if (rc)
			(void)ps_pgtable_unprotect(u->pt, a, b - a);
		fixup_error(f, rc);
		a = b;
	}
	log_range(u, f->start, f->end - f->start);
	f->start = f->end;
}

/*
 * One dropped page: it extends the run, or flushes it and starts one. For
 * hugetlb the run is of whole huge pages (U7): a page extends it while it is
 * in the run's last huge page or the next one.
 */
static enum ps__hbm_verdict fixup_visit(void *ctx, uint64_t bit)
{
	struct fixup *f = ctx;
	const uint64_t unit = unit_size(f->u);
	uint64_t a = (f->u->addr + (bit << PAGE_SHIFT)) & ~(unit - 1);

	if (a > f->end || f->end == f->start) {
		fixup_flush(f);
		f->start = a;
	}
	if (a + unit > f->end)
		f->end = a + unit;
	return PS__HBM_CLEAR;
}

int ps_uffd_discard(struct ps_uffd *u, uint64_t start, uint64_t len,
		    struct ps_discard_skip *skipped, uint64_t max_skipped,
		    uint64_t *nskipped)
{
	struct fixup f = {u, 0, 0, 0};
	int rc = range_check(u, start, len);

	if (rc)
		return rc;
	if (!u->space || (max_skipped && !skipped))
		return -EINVAL;
	PS__FORK_CHECK(u->born, "uffd attachment");
	PS__SPACE_FORK_CHECK(u->space);
	/* Without the mutex: its hooks may write to protected memory. */
	rc = ps__space_discard(u->space, start, len, skipped, max_skipped,
			       nskipped, note_dropped, u);
	/* After an error too: pages dropped before it are fixed up. */
	pthread_mutex_lock(&u->lock);
	(void)ps__hbm_harvest(&u->dropped, (start - u->addr) >> PAGE_SHIFT,
			      len >> PAGE_SHIFT, fixup_visit, &f, NULL);
	fixup_flush(&f);
	pthread_mutex_unlock(&u->lock);
	return rc ? rc : f.rc;
}

/* --- attach and detach ---------------------------------------------------- */

static int attach(struct ps_space *space, struct ps_pgtable *t,
		  const struct ps_uffd_config *cfg, struct ps_uffd **out)
{
	const char **why = cfg ? cfg->why : NULL;
	struct uffdio_api api;
	struct uffdio_register reg;
	unsigned int pgflags = 0;
	struct ps_uffd *u;
	uint64_t born;
	int rc;

	say(why, NULL);
	if (!cfg || !out || !cfg->host || !cfg->len ||
	    ((uintptr_t)cfg->host & (PAGE_SIZE - 1)) ||
	    (cfg->addr & (PAGE_SIZE - 1)) || (cfg->len & (PAGE_SIZE - 1)) ||
	    (cfg->flags & ~PS_UFFD_ALL) ||
	    ((cfg->flags & PS_UFFD_ASYNC) && (cfg->flags & PS_UFFD_THREAD)) ||
	    ((cfg->flags & PS_UFFD_HUGETLB) &&
	     ((cfg->flags & PS_UFFD_THP) ||
	      (((uintptr_t)cfg->host | cfg->addr | cfg->len) &
	       (HUGE_SIZE - 1)))) ||
	    ((cfg->flags & PS_UFFD_THP) &&
	     (((uintptr_t)cfg->host - cfg->addr) & (HUGE_SIZE - 1))) ||
	    cfg->addr + cfg->len < cfg->addr ||
	    cfg->addr + cfg->len > PS_PGTABLE_ADDR_END ||
	    (uintptr_t)cfg->host + cfg->len < (uintptr_t)cfg->host ||
	    (space && cfg->addr + cfg->len > ps__space_size(space))) {
		say(why, "arguments");
		return -EINVAL;
	}
	if (sysconf(_SC_PAGESIZE) != (long)PAGE_SIZE) {
		say(why, "4 KiB pages");
		return -EOPNOTSUPP;
	}
	rc = check_features(cfg->flags, why);
	if (!rc)
		rc = check_host(cfg, why);
	if (rc)
		return rc;
	rc = ps__fork_born(&born);
	if (rc) {
		say(why, "fork"); /* -ECHILD: a child of a plain fork() */
		return rc;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		say(why, "memory");
		return -ENOMEM;
	}
	u->born = born;
	u->fd = u->pagemap = u->stop = -1;
	u->host = (uintptr_t)cfg->host;
	u->addr = cfg->addr;
	u->len = cfg->len;
	u->flags = cfg->flags;
	u->space = space;
	u->pt = t;
	/* EAGAIN, ENOMEM (EPERM, EBUSY, EINVAL: not with no attributes). */
	rc = FAILPOINT(FP_MUTEX_INIT) ? ENOMEM
				      : pthread_mutex_init(&u->lock, NULL);
	if (rc) {
		say(why, "memory");
		free(u);
		return -ENOMEM;
	}

	rc = uffd_open(&u->opened);
	if (rc < 0) {
		say(why, "userfaultfd");
		goto fail;
	}
	u->fd = rc;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = features_for(cfg->flags);
	if (ioctl(u->fd, UFFDIO_API, &api)) {
		rc = -errno;
		say(why, "UFFDIO_API");
		goto fail;
	}
	if (cfg->flags & PS_UFFD_ASYNC) {
		u->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (u->pagemap < 0) {
			rc = -errno;
			say(why, "/proc/self/pagemap");
			goto fail;
		}
	}
	u->hbase = cfg->addr & ~(HUGE_SIZE - 1);
	rc = ps__hbm_init(&u->log, cfg->len >> PAGE_SHIFT);
	if (!rc && space)
		rc = ps__hbm_init(&u->dropped, cfg->len >> PAGE_SHIFT);
	if (!rc && (cfg->flags & PS_UFFD_THP))
		rc = ps__hbm_init(&u->huge,
				  (cfg->addr + cfg->len - u->hbase + HUGE_SIZE -
				   1) >> HUGE_SHIFT);
	if (rc) {
		say(why, "log");
		goto fail;
	}
	if (cfg->flags & PS_UFFD_ASYNC)
		pgflags |= PS_WP_ASYNC;
	/*
	 * Hugetlb VMAs keep protection in markers, as shmem does, and are
	 * tracked whole; THP splits to 4 KiB (U7). The library's huge leaves
	 * follow the same granularity.
	 */
	if (cfg->flags & (PS_UFFD_SHARED | PS_UFFD_HUGETLB))
		pgflags |= PS_WP_SHARED;
	if (cfg->flags & PS_UFFD_HUGETLB)
		pgflags |= PS_WP_HUGE_WHOLE;
	if (cfg->flags & PS_UFFD_THP)
		pgflags |= PS_WP_HUGE_SPLIT;
	if (cfg->flags & PS_UFFD_UNPOPULATED)
		pgflags |= PS_WP_UNPOPULATED;
	rc = ps_pgtable_register(t, cfg->addr, cfg->len, pgflags);
	if (rc) {
		say(why, "library range");
		goto fail;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = u->host;
	reg.range.len = cfg->len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(u->fd, UFFDIO_REGISTER, &reg)) {
		rc = -errno;
		say(why, "UFFDIO_REGISTER");
		goto fail_unregister;
	}
	if (!(reg.ioctls & ((__u64)1 << _UFFDIO_WRITEPROTECT))) {
		rc = -EOPNOTSUPP;
		say(why, "UFFDIO_REGISTER");
		goto fail_uffd_unregister;
	}
	if (cfg->flags & PS_UFFD_THREAD) {
		u->stop = eventfd(0, EFD_CLOEXEC);
		if (u->stop < 0) {
			rc = -errno;
			say(why, "eventfd");
			goto fail_uffd_unregister;
		}
		rc = -pthread_create(&u->thread, NULL, handler_thread, u);
		if (rc) {
			say(why, "handler thread");
			goto fail_uffd_unregister;
		}
		u->thread_running = true;
	}
	*out = u;
	return 0;

fail_uffd_unregister:
	(void)ioctl(u->fd, UFFDIO_UNREGISTER, &reg.range);
fail_unregister:
	(void)ps_pgtable_unregister(t, cfg->addr, cfg->len);
fail:
	if (u->stop >= 0)
		close(u->stop);
	if (u->pagemap >= 0)
		close(u->pagemap);
	if (u->fd >= 0)
		close(u->fd);
	ps__hbm_destroy(&u->log);
	ps__hbm_destroy(&u->dropped);
	ps__hbm_destroy(&u->huge);
	pthread_mutex_destroy(&u->lock);
	free(u);
	return rc;
}

int ps_uffd_attach_space(struct ps_space *space,
			 const struct ps_uffd_config *cfg, struct ps_uffd **out)
{
	if (!space) {
		if (cfg)
			say(cfg->why, "arguments");
		return -EINVAL;
	}
	return attach(space, ps_space_pgtable(space), cfg, out);
}

int ps_uffd_attach_pgtable(struct ps_pgtable *t,
			   const struct ps_uffd_config *cfg,
			   struct ps_uffd **out)
{
	if (!t) {
		if (cfg)
			say(cfg->why, "arguments");
		return -EINVAL;
	}
	return attach(NULL, t, cfg, out);
}

/* Detach: a page of the attachment's log back into the space's log. */
static enum ps__hbm_verdict relog_visit(void *ctx, uint64_t bit)
{
	struct ps_uffd *u = ctx;
	uint64_t addr = u->addr + (bit << PAGE_SHIFT);

	(void)ps_space_redirty(u->space, &addr, 1);
	return PS__HBM_CLEAR;
}

/*
 * Detach in a child of fork() (pagestate/fork.h, rule 2): close the child's
 * copies of the descriptors and nothing else. The userfaultfd and the pagemap
 * descriptor act on the parent's address space, the eventfd would stop the
 * parent's handler thread, and the child has no thread to join.
 */
static int forget(struct ps_uffd *u)
{
	if (u->stop >= 0)
		close(u->stop);
	if (u->pagemap >= 0)
		close(u->pagemap);
	close(u->fd);
	return 0;
}

int ps_uffd_detach(struct ps_uffd *u)
{
	struct uffdio_range r = {.start = u->host, .len = u->len};
	int rc = 0;

	if (ps__fork_inherited(u->born))
		return forget(u);
	if (u->thread_running) {
		uint64_t one = 1;

		if (write(u->stop, &one, sizeof(one)) != sizeof(one))
			rc = -errno;
		pthread_join(u->thread, NULL);
	}
	/* The kernel wakes writers blocked on the range and clears its wp. */
	if (ioctl(u->fd, UFFDIO_UNREGISTER, &r) && !rc)
		rc = -errno;
	{
		int r2 = ps_pgtable_unregister(u->pt, u->addr, u->len);

		if (r2 && !rc)
			rc = r2;
	}
	/*
	 * The CPU's pages a budget left in the attachment's log (the space's
	 * own never stay there) go to the space's log, so that nothing a
	 * harvest collected is lost: ps_space_harvest() reports them.
	 */
	if (u->space)
		(void)ps__hbm_harvest(&u->log, 0, u->len >> PAGE_SHIFT,
				      relog_visit, u, NULL);
	if (u->stop >= 0)
		close(u->stop);
	if (u->pagemap >= 0)
		close(u->pagemap);
	close(u->fd);
	ps__hbm_destroy(&u->log);
	ps__hbm_destroy(&u->dropped);
	ps__hbm_destroy(&u->huge);
	pthread_mutex_destroy(&u->lock);
	free(u);
	return rc;
}

int ps_uffd_fd(const struct ps_uffd *u)
{
	return u->fd;
}

void ps_uffd_stats(const struct ps_uffd *u, struct ps_uffd_stats *st)
{
	/* Relaxed: counters, a snapshot that may be mid-update. */
	st->faults = atomic_load_explicit(&u->faults, memory_order_relaxed);
	st->mismatches = atomic_load_explicit(&u->mismatches,
					      memory_order_relaxed);
	st->harvested = atomic_load_explicit(&u->harvested,
					     memory_order_relaxed);
	st->kernel_pages = atomic_load_explicit(&u->kernel_pages,
						memory_order_relaxed);
	st->errors = atomic_load_explicit(&u->errors, memory_order_relaxed);
	st->last_error = atomic_load_explicit(&u->last_error,
					      memory_order_relaxed);
	st->opened = u->opened;
}
