/* SPDX-License-Identifier: MIT */
/*
 * lib/linux-uapi.h - the Linux UAPI bits libpagestate's Linux code needs:
 * userfaultfd write protection (features, ioctls), PAGEMAP_SCAN (struct
 * pm_scan_arg, categories, flags) and PROCMAP_QUERY. Internal, not installed;
 * for the benchmarks and the Linux bridge (pagestate/uffd.h, lib/uffd.c).
 *
 * Debian 12's headers (Linux 6.1) predate WP_UNPOPULATED (6.4), WP_ASYNC
 * (6.7), PAGEMAP_SCAN (6.7), PROCMAP_QUERY (6.11) and PAGE_IS_GUARD (6.15).
 * Every value below is the upstream one (include/uapi/linux/userfaultfd.h,
 * include/uapi/linux/fs.h), each guarded by #ifndef so that newer system
 * headers win. The structs are defined only when the system headers lack
 * their ioctl (PAGEMAP_SCAN, PROCMAP_QUERY).
 *
 * The scan categories of pagestate/pgtable.h keep the kernel's values; when
 * that header is included first, the static asserts at the end check it, so
 * a bridge may pass categories and masks through unchanged.
 */
#ifndef PS_LIB_LINUX_UAPI_H
#define PS_LIB_LINUX_UAPI_H

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/syscall.h>

/* --- userfaultfd ---------------------------------------------------------- */

#ifndef __NR_userfaultfd
#if defined(__x86_64__)
#define __NR_userfaultfd 323
#elif defined(__aarch64__)
#define __NR_userfaultfd 282
#endif
#endif

/* /dev/userfaultfd (Linux 6.1): an ioctl on it returns a new userfaultfd. */
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#ifndef UFFD_FEATURE_PAGEFAULT_FLAG_WP
#define UFFD_FEATURE_PAGEFAULT_FLAG_WP (1 << 0)
#endif
#ifndef UFFD_FEATURE_EVENT_FORK
#define UFFD_FEATURE_EVENT_FORK (1 << 1)
#endif
#ifndef UFFD_FEATURE_EVENT_REMAP
#define UFFD_FEATURE_EVENT_REMAP (1 << 2)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef UFFDIO_REGISTER_MODE_MISSING
#define UFFDIO_REGISTER_MODE_MISSING ((__u64)1 << 0)
#endif
#ifndef UFFDIO_REGISTER_MODE_WP
#define UFFDIO_REGISTER_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_WP
#define UFFDIO_WRITEPROTECT_MODE_WP ((__u64)1 << 0)
#endif
#ifndef UFFDIO_WRITEPROTECT_MODE_DONTWAKE
#define UFFDIO_WRITEPROTECT_MODE_DONTWAKE ((__u64)1 << 1)
#endif
#ifndef UFFD_PAGEFAULT_FLAG_WRITE
#define UFFD_PAGEFAULT_FLAG_WRITE (1 << 0)
#endif
#ifndef UFFD_PAGEFAULT_FLAG_WP
#define UFFD_PAGEFAULT_FLAG_WP (1 << 1)
#endif

/* --- PAGEMAP_SCAN (Linux 6.7) --------------------------------------------- */

#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE (1 << 2)
#endif
#ifndef PAGE_IS_PRESENT
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef PAGE_IS_SWAPPED
#define PAGE_IS_SWAPPED (1 << 4)
#endif
#ifndef PAGE_IS_PFNZERO
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PAGE_IS_HUGE
#define PAGE_IS_HUGE (1 << 6)
#endif
#ifndef PAGE_IS_SOFT_DIRTY
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#endif
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8) /* Linux 6.15 */
#endif

#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#ifndef PAGEMAP_SCAN
/* struct page_region - a run of pages with equal categories. */
struct page_region {
	__u64 start;
	__u64 end; /* exclusive */
	__u64 categories;
};

/* struct pm_scan_arg - the argument of the PAGEMAP_SCAN ioctl. */
struct pm_scan_arg {
	__u64 size; /* sizeof(struct pm_scan_arg) */
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* --- PROCMAP_QUERY (Linux 6.11): one VMA of /proc/self/maps by address ---- */

#ifndef PROCMAP_QUERY
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10

/* struct procmap_query - the argument of the PROCMAP_QUERY ioctl. */
struct procmap_query {
	__u64 size; /* sizeof(struct procmap_query) */
	__u64 query_flags;
	__u64 query_addr;
	__u64 vma_start;     /* out */
	__u64 vma_end;	     /* out */
	__u64 vma_flags;     /* out */
	__u64 vma_page_size; /* out: 4 KiB, or the huge page size of hugetlb */
	__u64 vma_offset;    /* out */
	__u64 inode;	     /* out */
	__u32 dev_major;     /* out */
	__u32 dev_minor;     /* out */
	__u32 vma_name_size;
	__u32 build_id_size;
	__u64 vma_name_addr;
	__u64 build_id_addr;
};

#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#endif

/* --- pagestate/pgtable.h keeps these values (checked when it is included) - */

#ifdef PAGESTATE_PGTABLE_H
PS_STATIC_ASSERT(PS_CAT_WPALLOWED == PAGE_IS_WPALLOWED &&
			 PS_CAT_WRITTEN == PAGE_IS_WRITTEN &&
			 PS_CAT_FILE == PAGE_IS_FILE &&
			 PS_CAT_PRESENT == PAGE_IS_PRESENT &&
			 PS_CAT_SWAPPED == PAGE_IS_SWAPPED &&
			 PS_CAT_PFNZERO == PAGE_IS_PFNZERO &&
			 PS_CAT_HUGE == PAGE_IS_HUGE &&
			 PS_CAT_SOFT_DIRTY == PAGE_IS_SOFT_DIRTY &&
			 PS_CAT_GUARD == PAGE_IS_GUARD,
		 "pgtable scan categories are the kernel's PAGE_IS_* values");
PS_STATIC_ASSERT(PS_SCAN_WP_MATCHING == PM_SCAN_WP_MATCHING &&
			 PS_SCAN_CHECK_WPASYNC == PM_SCAN_CHECK_WPASYNC,
		 "pgtable scan flags are the kernel's PM_SCAN_* values");
PS_STATIC_ASSERT(sizeof(struct ps_pgtable_region) == sizeof(struct page_region),
		 "ps_pgtable_region is laid out as page_region");
#endif

#endif /* PS_LIB_LINUX_UAPI_H */
