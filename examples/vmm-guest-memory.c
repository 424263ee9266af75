// SPDX-License-Identifier: MIT
/*
 * vmm-guest-memory.c - a VMM's guest memory, managed through a space.
 *
 * The guest's RAM is real memory: one anonymous mmap, whose page f is frame
 * f of a struct ps_space mapped at guest-physical address f * 4096. The
 * program walks through what a VMM does with it, and checks each outcome:
 *
 *   1. a vfio-style device assignment pins part of the RAM long-term;
 *   2. the balloon driver gives pages back: the discard leaves the pinned
 *      ones in place and reports them (a device may still DMA into them);
 *   3. live migration: write-protect, vCPU threads and a device keep
 *      writing, two pre-copy rounds harvest and re-arm, a final round with
 *      the guest paused: the destination must equal the source byte for
 *      byte (no write lost). Pages the device holds pinned for write are in
 *      every round. The vCPUs' writes are tracked by the kernel through the
 *      uffd bridge when it is available (PAGEMAP_SCAN), else by software
 *      dirty logging;
 *   4. a confidential-VM conversion of a range to private fails at the exact
 *      offset of a page pinned for DMA, converts nothing, and succeeds once
 *      the DMA completes; then the access check reports a shared access to
 *      a private page as KVM's memory-fault exit would, and a CPU map (not a
 *      pin) makes a private page accessible, once;
 *   5. a device-emulation thread (a virtio device) caches translations of
 *      guest pages, validated by the space's notifier, while the main
 *      thread unmaps half of its window: it never touches an unmapped page
 *      through a stale translation;
 *   6. a second guest backed by huge pages: transparent huge pages (THP),
 *      then hugetlbfs 2 MiB pages where the system has some reserved
 *      (skipped otherwise). Its frames are 2 MiB frames of the space, mapped
 *      by 2 MiB entries; a device pins one whole frame with one unit; then a
 *      live migration, as in 3, but at 4 KiB granularity inside the huge
 *      memory (THP): a write to a protected 2 MiB entry splits it and only
 *      the 4 KiB page written is sent. Hugetlb memory is tracked whole, as
 *      the kernel tracks it (2 MiB per write). The destination must equal
 *      the source byte for byte. Then one 4 KiB page inside a 2 MiB frame
 *      is converted to private while another page of that frame is pinned.
 *
 * It prints each step and exits non-zero if an outcome is not the expected
 * one; the test suite runs it (meson test --suite examples), once as is
 * and once with PS_EXAMPLE_NO_UFFD=1 (software dirty logging only; in 6,
 * the library's write protection of the huge entries instead of the
 * kernel's). Hugetlb pages: echo 64 > /proc/sys/vm/nr_hugepages.
 */
/*
 * MAP_ANONYMOUS, madvise() and clock_gettime() are outside strict C11 and
 * POSIX: ask for them, so that the README's consumer line (cc -std=c11)
 * builds this file as it is.
 */
#define _DEFAULT_SOURCE

#include <pagestate/pagestate.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* clang-format off */
#define PAGE 4096ull
#define WORDS (PAGE / 8)
#define GUEST_SIZE (64ull << 20)           /* 64 MiB of guest RAM */
#define NFRAMES (GUEST_SIZE / PAGE)
#define VCPU_WINDOW (32ull << 20)          /* vCPUs write [0, 32 MiB) */
#define NVCPUS 2
#define VFIO_GPA (36ull << 20)             /* the assigned device's buffers */
#define VFIO_PAGES 16ull
#define BALLOON_GPA (VFIO_GPA - 8 * PAGE)  /* overlaps the pinned pages */
#define BALLOON_PAGES 32ull
#define DEV_GPA (40ull << 20)              /* the virtio device's window */
#define DEV_PAGES 256ull
#define CONV_GPA (48ull << 20)             /* the range made private */
#define CONV_PAGES 64ull
#define CONV_PINNED 37ull                  /* its page under DMA */
/* clang-format on */

static int failures;

#define EXPECT(cond, ...)                                                 \
	do {                                                              \
		if (!(cond)) {                                            \
			printf("  FAILED (%s:%d): ", __FILE__, __LINE__); \
			printf(__VA_ARGS__);                              \
			printf("\n");                                     \
			failures++;                                       \
		}                                                         \
	} while (0)

static const char *errname(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case -EAGAIN:
		return "EAGAIN";
	case -EBUSY:
		return "EBUSY";
	case -EFAULT:
		return "EFAULT";
	case -EPERM:
		return "EPERM";
	default:
		return strerror(-err);
	}
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

/* Relaxed: statistics and flags read as hints, or after a join. */
static uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* The VMM                                                                  */
/* ------------------------------------------------------------------------ */

struct vmm {
	struct ps_space *space;
	/*
	 * Guest RAM, seen as 64-bit words: vCPUs, devices and the migration
	 * copy touch it concurrently, as in a real VMM; atomic accesses make
	 * that defined behaviour in C (and visible to TSan).
	 */
	_Atomic uint64_t *ram;
	void *host; /* the same memory, for system calls */
	_Atomic uint64_t frees, dirtied, prepares, finishes, accessible;
	bool software_dirty_log; /* no uffd: vCPUs log their own writes */
};

static _Atomic uint64_t *frame_mem(struct vmm *vm, uint64_t frame)
{
	return vm->ram + frame * WORDS;
}

/* A frame's last reference went (balloon, unmap): give the memory back. */
static void vmm_free_frame(void *ctx, struct ps_space *space, uint64_t frame)
{
	struct vmm *vm = ctx;

	(void)space;
	madvise((char *)vm->host + frame * PAGE, PAGE, MADV_DONTNEED);
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&vm->frees, 1, memory_order_relaxed);
}

static void vmm_dirty(void *ctx, struct ps_space *space, uint64_t frame)
{
	struct vmm *vm = ctx;

	(void)space;
	(void)frame;
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&vm->dirtied, 1, memory_order_relaxed);
}

/* The platform's conversion hooks (TDX: MapGPA + TDG.MEM.PAGE.ACCEPT). */
static int vmm_prepare(void *ctx, struct ps_space *space, uint64_t addr,
		       uint64_t frame, enum ps_enc_state to)
{
	struct vmm *vm = ctx;

	(void)space, (void)addr, (void)frame, (void)to;
	atomic_fetch_add_explicit(&vm->prepares, 1, memory_order_relaxed);
	return 0;
}

static int vmm_finish(void *ctx, struct ps_space *space, uint64_t addr,
		      uint64_t frame, enum ps_enc_state to)
{
	struct vmm *vm = ctx;

	(void)space, (void)addr, (void)frame, (void)to;
	atomic_fetch_add_explicit(&vm->finishes, 1, memory_order_relaxed);
	return 0;
}

/* The first CPU map of an inaccessible page (s390's export, pKVM's share). */
static int vmm_make_accessible(void *ctx, struct ps_space *space,
			       uint64_t frame)
{
	struct vmm *vm = ctx;

	(void)space, (void)frame;
	atomic_fetch_add_explicit(&vm->accessible, 1, memory_order_relaxed);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Writers: vCPUs, the assigned device, the virtio device                   */
/* ------------------------------------------------------------------------ */

/*
 * Writers run while !paused. pause_writers() waits until every writer has
 * acknowledged, so that the guest is really stopped (the final round).
 */
static _Atomic bool paused, stopping;
static _Atomic unsigned int parked;

static void writer_checkpoint(void)
{
	/* Acquire: pairs with the release in pause/resume. */
	if (!atomic_load_explicit(&paused, memory_order_acquire))
		return;
	/* Release: our writes before the ack; pairs with pause_writers. */
	atomic_fetch_add_explicit(&parked, 1, memory_order_release);
	/*
	 * Acquire on stopping too: a writer let go by it (not by the resume)
	 * writes once more, after the main thread's last read of the guest,
	 * which the release of stopping orders before.
	 */
	while (atomic_load_explicit(&paused, memory_order_acquire) &&
	       !atomic_load_explicit(&stopping, memory_order_acquire))
		sched_yield();
	/* Relaxed: only a count; resume_writers orders the rest. */
	atomic_fetch_sub_explicit(&parked, 1, memory_order_relaxed);
}

static void pause_writers(unsigned int n)
{
	/* Release: pairs with the acquire in writer_checkpoint. */
	atomic_store_explicit(&paused, true, memory_order_release);
	/* Acquire: pairs with the writers' release: their writes are done. */
	while (atomic_load_explicit(&parked, memory_order_acquire) < n)
		sched_yield();
}

static void resume_writers(void)
{
	/* Release: pairs with the acquire in writer_checkpoint. */
	atomic_store_explicit(&paused, false, memory_order_release);
}

struct vcpu {
	pthread_t tid;
	struct vmm *vm;
	unsigned int id;
	uint64_t rng;
	_Atomic uint64_t writes;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *vcpu_main(void *arg)
{
	struct vcpu *c = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		uint64_t page = xorshift(&c->rng) % (VCPU_WINDOW / PAGE);
		uint64_t word = xorshift(&c->rng) % WORDS;

		writer_checkpoint();
		/* Relaxed: guest memory; the harvest orders the copy. */
		atomic_store_explicit(&frame_mem(c->vm, page)[word],
				      ((uint64_t)c->id << 56) | ++n,
				      memory_order_relaxed);
		/*
		 * Without the kernel's tracking, log the write after making
		 * it (vhost's dirty log): a harvest in between copies the
		 * page already written, and the mark makes the next round
		 * copy it again. Nothing is lost either way.
		 */
		if (c->vm->software_dirty_log)
			(void)ps_space_mark_dirty(c->vm->space, page * PAGE);
		atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
	}
	return NULL;
}

/* The assigned (vfio) device: DMA into the pages pinned for it. */
struct dma_dev {
	pthread_t tid;
	struct vmm *vm;
	uint64_t frames[VFIO_PAGES];
	_Atomic uint64_t writes;
};

static void *dma_main(void *arg)
{
	struct dma_dev *d = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		writer_checkpoint();
		/* Relaxed: DMA into pinned memory. */
		atomic_store_explicit(
			&frame_mem(d->vm, d->frames[n % VFIO_PAGES])[n % WORDS],
			0xd3a0000000000000ull | n, memory_order_relaxed);
		n++;
		atomic_fetch_add_explicit(&d->writes, 1, memory_order_relaxed);
		if (n % 64 == 0)
			sched_yield();
	}
	return NULL;
}

/*
 * The virtio device, emulated in a VMM thread. It writes guest pages
 * through a cache of translations (page -> host memory), the secondary
 * mapping of seed 003: filled by ps_space_map_secondary(), torn down by
 * the subscription's callback under the device's lock.
 */
struct virtio_dev {
	pthread_t tid;
	struct vmm *vm;
	struct ps_interval sub;
	pthread_mutex_t lock;
	_Atomic uint64_t *cache[DEV_PAGES]; /* under lock: NULL = not mapped */
	uint64_t rng;
	_Atomic bool unmapped; /* the upper half is gone (set by main) */
	_Atomic uint64_t writes, faults, invalidations, stale_hits;
	_Atomic bool fault_seen; /* a page of the upper half faulted */
};

static bool virtio_invalidate(struct ps_interval *sub,
			      const struct ps_invalidation *inv,
			      uint64_t cur_seq, void *priv)
{
	struct virtio_dev *d = priv;
	uint64_t first, last;

	if (ps_invalidation_blockable(inv))
		pthread_mutex_lock(&d->lock);
	else if (pthread_mutex_trylock(&d->lock))
		return false;
	/*
	 * Every event tears the mappings down, SOFT_DIRTY included: they are
	 * writable, and the next write must go through the helper again to
	 * be logged for migration. (A read-only cache could ignore
	 * SOFT_DIRTY and PROTECTION events.)
	 */
	first = inv->start > DEV_GPA ? (inv->start - DEV_GPA) / PAGE : 0;
	last = (ps_invalidation_last(inv) - DEV_GPA) / PAGE;
	if (last >= DEV_PAGES)
		last = DEV_PAGES - 1;
	for (uint64_t i = first; i <= last; i++)
		d->cache[i] = NULL;
	ps_interval_set_seq(sub, cur_seq);
	pthread_mutex_unlock(&d->lock);
	atomic_fetch_add_explicit(&d->invalidations, 1, memory_order_relaxed);
	return true;
}

static const struct ps_interval_ops virtio_ops = {
	.invalidate = virtio_invalidate,
};

static void virtio_lock(void *ctx)
{
	pthread_mutex_lock(&((struct virtio_dev *)ctx)->lock);
}

static void virtio_unlock(void *ctx)
{
	pthread_mutex_unlock(&((struct virtio_dev *)ctx)->lock);
}

static int virtio_install(void *ctx, uint64_t addr, uint64_t frame, bool write)
{
	struct virtio_dev *d = ctx;

	(void)write;
	d->cache[(addr - DEV_GPA) / PAGE] = frame_mem(d->vm, frame);
	return 0;
}

static const struct ps_secondary_ops virtio_secondary = {
	.lock = virtio_lock,
	.unlock = virtio_unlock,
	.install = virtio_install,
};

static void *virtio_main(void *arg)
{
	struct virtio_dev *d = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		uint64_t page = xorshift(&d->rng) % DEV_PAGES;
		bool hit;

		writer_checkpoint();
		pthread_mutex_lock(&d->lock);
		hit = d->cache[page] != NULL;
		if (hit) {
			/*
			 * Acquire: pairs with main's release after the unmap
			 * returned. Its callback cleared the upper half under
			 * this lock before that, so a hit there is a bug.
			 */
			if (page >= DEV_PAGES / 2 &&
			    atomic_load_explicit(&d->unmapped,
						 memory_order_acquire))
				atomic_fetch_add_explicit(&d->stale_hits, 1,
							  memory_order_relaxed);
			n++;
			/* Relaxed: guest memory (the harvest orders it). */
			atomic_store_explicit(&d->cache[page][n % WORDS],
					      0x71e0000000000000ull | n,
					      memory_order_relaxed);
		}
		pthread_mutex_unlock(&d->lock);
		if (hit) {
			atomic_fetch_add_explicit(&d->writes, 1,
						  memory_order_relaxed);
			continue;
		}
		/* A miss: the seed-003 loop fills the cache (or fails). */
		if (ps_space_map_secondary(d->vm->space, &d->sub,
					   DEV_GPA + page * PAGE, true,
					   &virtio_secondary, d) == -EFAULT) {
			atomic_fetch_add_explicit(&d->faults, 1,
						  memory_order_relaxed);
			if (page >= DEV_PAGES / 2)
				atomic_store_explicit(&d->fault_seen, true,
						      memory_order_relaxed);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Migration                                                                */
/* ------------------------------------------------------------------------ */

struct migration {
	struct vmm *vm;
	struct ps_uffd *uffd;	/* NULL: software dirty log */
	_Atomic uint64_t *dest; /* the destination's RAM */
	void *dest_host;
	uint64_t addrs[4096];
};

/*
 * The uffd bridge, where it is built (meson option uffd; Linux). The
 * attachment ties the guest RAM's host mapping to the whole space: the
 * kernel tracks the vCPUs' writes (async uffd-wp), the library the
 * devices' writes and pins, and one harvest returns both.
 */
#if PS_HAVE_UFFD
static int uffd_attach(struct vmm *vm, struct migration *m, const char **why)
{
	struct ps_uffd_config c = {
		.host = vm->host,
		.addr = 0,
		.len = GUEST_SIZE,
		.flags = PS_UFFD_ASYNC,
		.why = why,
	};

	return ps_uffd_attach_space(vm->space, &c, &m->uffd);
}

static int uffd_protect(struct migration *m)
{
	return ps_uffd_protect(m->uffd, 0, GUEST_SIZE);
}

static int uffd_harvest(struct migration *m, uint64_t *at, uint64_t *n)
{
	return ps_uffd_harvest(m->uffd, *at, GUEST_SIZE - *at, m->addrs, 4096,
			       n, at);
}

static int uffd_detach(struct migration *m)
{
	return ps_uffd_detach(m->uffd);
}
#else
static int uffd_attach(struct vmm *vm, struct migration *m, const char **why)
{
	(void)vm, (void)m, (void)why;
	return -EOPNOTSUPP;
}

static int uffd_protect(struct migration *m)
{
	(void)m;
	return -EOPNOTSUPP;
}

static int uffd_harvest(struct migration *m, uint64_t *at, uint64_t *n)
{
	(void)m, (void)at, (void)n;
	return -EOPNOTSUPP;
}

static int uffd_detach(struct migration *m)
{
	(void)m;
	return -EOPNOTSUPP;
}
#endif

static void copy_page(struct migration *m, uint64_t gpa)
{
	_Atomic uint64_t *src = m->vm->ram + gpa / 8, *dst = m->dest + gpa / 8;

	for (uint64_t w = 0; w < WORDS; w++)
		/* Relaxed: racing writers are re-sent in the next round. */
		atomic_store_explicit(
			&dst[w],
			atomic_load_explicit(&src[w], memory_order_relaxed),
			memory_order_relaxed);
}

/*
 * One round: harvest (and re-arm) the whole RAM, then copy what was
 * reported. Returns the pages sent; *pinned_seen counts reported pages
 * that the assigned device holds pinned.
 */
static int64_t migration_round(struct migration *m, uint64_t *pinned_seen)
{
	uint64_t at = 0, sent = 0;

	*pinned_seen = 0;
	while (at < GUEST_SIZE) {
		uint64_t n = 0;
		int err = m->uffd ? uffd_harvest(m, &at, &n)
				  : ps_space_harvest(m->vm->space, at,
						     GUEST_SIZE - at,
						     PS_HARVEST_REARM, m->addrs,
						     4096, &n, &at);

		if (err)
			return err;
		for (uint64_t i = 0; i < n; i++) {
			copy_page(m, m->addrs[i]);
			if (m->addrs[i] >= VFIO_GPA &&
			    m->addrs[i] < VFIO_GPA + VFIO_PAGES * PAGE)
				(*pinned_seen)++;
		}
		sent += n;
	}
	return (int64_t)sent;
}

/* ------------------------------------------------------------------------ */
/* A guest on huge pages (step 6)                                           */
/* ------------------------------------------------------------------------ */

/* clang-format off */
#define HUGE (2ull << 20)
#define HGUEST_SIZE (32ull << 20)       /* 16 huge pages */
#define HNFRAMES (HGUEST_SIZE / PAGE)
#define HDMA_GPA (8ull << 20)           /* the frame a device pins whole */
#define HOT_PAGES 192ull                /* 4 KiB pages the vCPUs write */
/* clang-format on */

enum backing { BACK_THP, BACK_HUGETLB };

struct hguest {
	enum backing backing;
	struct ps_space *space;
	void *host, *dest;	      /* 2 MiB aligned */
	void *host_map, *dest_map;    /* what mmap() returned */
	size_t host_len, dest_len;    /* and their lengths */
	_Atomic uint64_t *ram, *dram; /* host and dest, as words */
	struct ps_uffd *uffd;	      /* NULL: the library's protection */
	uint64_t unit[1];	      /* the device's pin: one whole frame */
	_Atomic uint64_t writes, fault_errors, dma_writes;
	uint64_t sent4k, sent2m;	   /* of the latest round */
	bool pinned_seen[HUGE / PAGE];	   /* its pages reported this round */
	bool huge_hit[HGUEST_SIZE / HUGE]; /* huge pages with a 4 KiB sent */
	struct ps_uffd_run runs[256];
	uint64_t addrs[4096];
};

struct hvcpu {
	pthread_t tid;
	struct hguest *g;
	unsigned int id;
	uint64_t rng;
};

/*
 * A vCPU of the huge guest: 4 KiB writes to a working set of HOT_PAGES pages
 * spread over its whole RAM (a guest's page cache, say). With the kernel's
 * tracking (uffd) that is all; with the library's, the write is then reported
 * as the VMM's software MMU would (a write fault after the write, as a vhost
 * log marks after writing: a harvest in between copies the page already
 * written, and the fault makes the next round send it again). On a protected 2
 * MiB entry the fault splits it and records the 4 KiB page alone.
 */
static void *hvcpu_main(void *arg)
{
	struct hvcpu *c = arg;
	struct hguest *g = c->g;
	uint64_t n = 0;

	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		uint64_t page = xorshift(&c->rng) % HOT_PAGES * 2654435761u %
				HNFRAMES;
		uint64_t word = xorshift(&c->rng) % WORDS;

		writer_checkpoint();
		/* Relaxed: guest memory; the harvest orders the copy. */
		atomic_store_explicit(&g->ram[page * WORDS + word],
				      ((uint64_t)c->id << 56) | ++n,
				      memory_order_relaxed);
		if (!g->uffd && ps_space_fault(g->space, page * PAGE,
					       PS_ACCESS_WRITE) != PS_FAULT_OK)
			/* Relaxed: a count, read after the join. */
			atomic_fetch_add_explicit(&g->fault_errors, 1,
						  memory_order_relaxed);
		atomic_fetch_add_explicit(&g->writes, 1, memory_order_relaxed);
		if (n % 256 == 0)
			sched_yield(); /* two cores: let the others run */
	}
	return NULL;
}

/* The device: DMA into the whole 2 MiB frame it pinned. */
static void *hdma_main(void *arg)
{
	struct hguest *g = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		writer_checkpoint();
		/* Relaxed: DMA into pinned memory. */
		atomic_store_explicit(&g->ram[HDMA_GPA / 8 + n % (HUGE / 8)],
				      0xd3a0000000000000ull | n,
				      memory_order_relaxed);
		n += 4099; /* strides over the frame's pages */
		atomic_fetch_add_explicit(&g->dma_writes, 1,
					  memory_order_relaxed);
		if (n % 64 == 0)
			sched_yield();
	}
	return NULL;
}

/* Map @len bytes aligned to 2 MiB: THP (madvised) or hugetlb 2 MiB pages. */
static void *map_huge(enum backing b, size_t len, void **map, size_t *maplen)
{
	char *p;

	if (b == BACK_HUGETLB) {
#ifdef MAP_HUGETLB
		int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;

#ifdef MAP_HUGE_SHIFT
		flags |= 21 << MAP_HUGE_SHIFT; /* 2 MiB pages */
#endif
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		*map = p;
		*maplen = len;
		return p;
#else
		return NULL;
#endif
	}
	p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*map = p;
	*maplen = len + HUGE;
	p += (HUGE - (uintptr_t)p % HUGE) % HUGE;
#ifdef MADV_HUGEPAGE
	(void)madvise(p, len, MADV_HUGEPAGE); /* best effort */
#endif
	return p;
}

/* KiB of @addr's mapping backed by transparent huge pages (smaps). */
static unsigned long anon_huge_kib(const void *addr)
{
	char line[256];
	unsigned long lo, hi, kib = 0;
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

static void hcopy(struct hguest *g, uint64_t gpa, uint64_t len)
{
	for (uint64_t w = gpa / 8; w < (gpa + len) / 8; w++)
		/* Relaxed: racing writers are re-sent in the next round. */
		atomic_store_explicit(
			&g->dram[w],
			atomic_load_explicit(&g->ram[w], memory_order_relaxed),
			memory_order_relaxed);
}

/* Account for and copy one reported extent of @len bytes at @gpa. */
static void hsend(struct hguest *g, uint64_t gpa, uint64_t len, bool huge)
{
	hcopy(g, gpa, len);
	for (uint64_t a = gpa; a < gpa + len; a += PAGE) {
		if (a >= HDMA_GPA && a < HDMA_GPA + HUGE) {
			g->pinned_seen[(a - HDMA_GPA) / PAGE] = true;
		} else if (!huge) {
			g->sent4k++;
			g->huge_hit[a / HUGE] = true;
		} else if (a % HUGE == 0) {
			g->sent2m++;
		}
	}
}

/* Did the round report every page of the pinned frame? */
static bool pinned_all_seen(const struct hguest *g)
{
	for (uint64_t i = 0; i < HUGE / PAGE; i++)
		if (!g->pinned_seen[i])
			return false;
	return true;
}

/* The first byte where the destination differs, or -1. */
static long long first_diff(const struct hguest *g)
{
	const unsigned char *a = g->host, *b = g->dest;

	for (uint64_t i = 0; i < HGUEST_SIZE; i++)
		if (a[i] != b[i])
			return (long long)i;
	return -1;
}

/*
 * One round: harvest and re-arm the whole RAM, copy what was reported, each
 * extent at the granularity it was tracked at.
 */
static int hround(struct hguest *g)
{
	uint64_t at = 0;

	g->sent4k = g->sent2m = 0;
	memset(g->pinned_seen, 0, sizeof(g->pinned_seen));
	memset(g->huge_hit, 0, sizeof(g->huge_hit));
	while (at < HGUEST_SIZE) {
		uint64_t n = 0;
		int err;

#if PS_HAVE_UFFD
		/*
		 * Runs, each with the granularity the kernel tracked it at:
		 * 4 KiB inside THP once split, 2 MiB for a THP reported whole
		 * and for every hugetlb page (tracked whole).
		 */
		if (g->uffd) {
			err = ps_uffd_harvest_runs(g->uffd, at,
						   HGUEST_SIZE - at, g->runs,
						   256, &n, &at);
			for (uint64_t i = 0; !err && i < n; i++)
				hsend(g, g->runs[i].addr, g->runs[i].len,
				      g->runs[i].shift == PS_UFFD_SHIFT_2M);
			if (err)
				return err;
			continue;
		}
#endif
		/* Units: a whole 2 MiB extent is one entry, addr | order. */
		err = ps_space_harvest(g->space, at, HGUEST_SIZE - at,
				       PS_HARVEST_REARM | PS_HARVEST_UNITS,
				       g->addrs, 4096, &n, &at);
		if (err)
			return err;
		for (uint64_t i = 0; i < n; i++) {
			const unsigned int order = g->addrs[i] & (PAGE - 1);

			hsend(g, g->addrs[i] & ~(PAGE - 1), PAGE << order,
			      order != 0);
		}
	}
	return 0;
}

/* Write-protect the whole RAM: the kernel's (uffd) or the library's. */
static int hprotect(struct hguest *g, bool try_uffd, const char **why)
{
	struct ps_pgtable *pt = ps_space_pgtable(g->space);
	int err;

#if PS_HAVE_UFFD
	if (try_uffd) {
		struct ps_uffd_config c = {
			.host = g->host,
			.addr = 0,
			.len = HGUEST_SIZE,
			.flags = PS_UFFD_ASYNC |
				 (g->backing == BACK_THP ? PS_UFFD_THP
							 : PS_UFFD_HUGETLB),
			.why = why,
		};

		err = ps_uffd_attach_space(g->space, &c, &g->uffd);
		if (!err)
			return ps_uffd_protect(g->uffd, 0, HGUEST_SIZE);
		g->uffd = NULL;
	}
#else
	(void)try_uffd, (void)why;
#endif
	/*
	 * The library alone: async, and tracked as the kernel would track
	 * the backing, 4 KiB inside THP, whole for hugetlb.
	 */
	err = ps_pgtable_register(pt, 0, HGUEST_SIZE,
				  PS_WP_ASYNC | (g->backing == BACK_THP
							 ? PS_WP_HUGE_SPLIT
							 : PS_WP_HUGE_WHOLE));
	return err ? err : ps_pgtable_protect(pt, 0, HGUEST_SIZE);
}

/*
 * A confidential guest converts one 4 KiB page inside a 2 MiB frame to
 * private while a device holds another 4 KiB page of the same frame pinned:
 * the conversion splits the frame (its entry and its state) and converts
 * exactly that page, without a false EAGAIN from the other page's pin; the
 * pinned page itself still refuses, at its offset.
 */
static void hconvert(struct hguest *g)
{
	const uint64_t frame_gpa = 5 * HUGE, conv = frame_gpa + 5 * PAGE;
	const uint64_t pinned = frame_gpa + 300 * PAGE;
	struct ps_convert_opts opts;
	uint64_t pin[1], off = UINT64_MAX;
	unsigned int order = 0;
	int err;

	err = ps_space_pin_range(g->space, pinned, PAGE, PS_PIN_WRITE, pin);
	EXPECT(!err, "pin of one 4 KiB page: %s", errname(err));
	memset(&opts, 0, sizeof(opts));
	err = ps_prot_convert(g->space, conv, PAGE, PS_ENC_PRIVATE, 0, &opts,
			      &off);
	EXPECT(!err && opts.converted == 1, "convert 4 KiB in a frame: %s",
	       errname(err));
	EXPECT(ps_page_enc_state(ps_space_frame_word(g->space, conv / PAGE,
						     &order)) ==
			       PS_ENC_PRIVATE &&
		       order == PS_SPACE_ORDER_4K,
	       "the page converted is private, with its own word");
	EXPECT(ps_page_enc_state(ps_space_frame_word(g->space, conv / PAGE + 1,
						     NULL)) == PS_ENC_SHARED,
	       "its neighbour is still shared");
	printf("    convert the 4 KiB page at 0x%llx to private while the one "
	       "at 0x%llx (same 2 MiB frame) is pinned: %s, %llu page "
	       "converted, the frame split\n",
	       (unsigned long long)conv, (unsigned long long)pinned,
	       errname(err), (unsigned long long)opts.converted);
	memset(&opts, 0, sizeof(opts));
	err = ps_prot_convert(g->space, pinned, PAGE, PS_ENC_PRIVATE, 0, &opts,
			      &off);
	EXPECT(err == -EAGAIN && off == 0 && opts.converted == 0,
	       "convert the pinned page: %s", errname(err));
	printf("    convert the pinned page itself: %s, nothing converted\n",
	       errname(err));
	ps_space_unpin(g->space, pin, 1, PS_UNPIN_DIRTY);
}

static void huge_guest(enum backing backing, bool try_uffd)
{
	static struct hguest g;
	struct hvcpu vcpus[NVCPUS];
	pthread_t dma;
	const char *name = backing == BACK_THP ? "THP" : "hugetlbfs 2 MiB";
	const char *why = "not built";
	struct ps_space_config cfg = {.size = HGUEST_SIZE, .nframes = HNFRAMES};
	ps_pte_t e, leaf;
	unsigned int order = 0;
	uint64_t n = 0;
	long long diff;
	int err;

	memset(&g, 0, sizeof(g));
	g.backing = backing;
	g.host = map_huge(backing, HGUEST_SIZE, &g.host_map, &g.host_len);
	if (!g.host) {
		printf("[6] %s guest: skipped (%s)\n", name,
		       backing == BACK_HUGETLB
			       ? "no 2 MiB hugetlb page could be mapped: none "
				 "reserved in /proc/sys/vm/nr_hugepages"
			       : strerror(errno));
		return;
	}
	g.dest = map_huge(BACK_THP, HGUEST_SIZE, &g.dest_map, &g.dest_len);
	EXPECT(g.dest, "mmap of the destination");
	if (!g.dest)
		return;
	g.ram = g.host;
	g.dram = g.dest;
	for (uint64_t w = 0; w < HGUEST_SIZE / 8; w += WORDS)
		g.ram[w] = w; /* fault the memory in, huge where it can */
	printf("[6] %s guest: %llu MiB at %p, %lu KiB of it in transparent "
	       "huge pages\n",
	       name, HGUEST_SIZE >> 20, g.host,
	       backing == BACK_THP ? anon_huge_kib(g.host) : 0ul);

	/* Its frames are 2 MiB frames, mapped by 2 MiB entries. */
	err = ps_space_create(&cfg, &g.space);
	if (!err)
		err = ps_space_set_frame_order(g.space, 0, HNFRAMES,
					       PS_SPACE_ORDER_2M);
	if (!err)
		err = ps_space_map_range(g.space, 0, HGUEST_SIZE, 0,
					 PS_MAP_WRITE, NULL);
	if (!err)
		err = ps_pgtable_get_level(ps_space_pgtable(g.space), 0x1000,
					   &e, &order, &leaf);
	EXPECT(!err && order == PS_SPACE_ORDER_2M,
	       "mapping 2 MiB frames: %s, entry order %u", errname(err), order);
	if (err)
		return;

	/* A device pins one whole frame for write: one unit, one RMW. */
	err = ps_space_pin_units(g.space, HDMA_GPA, HUGE, PS_PIN_WRITE, g.unit,
				 1, &n);
	EXPECT(!err && n == 1 &&
		       PS_SPACE_UNIT_ORDER(g.unit[0]) == PS_SPACE_ORDER_2M,
	       "pin of a whole frame: %s, %llu units", errname(err),
	       (unsigned long long)n);
	printf("    %llu entries of 2 MiB map it; a device pinned the frame at "
	       "0x%llx for write as %llu unit of order %u\n",
	       HGUEST_SIZE / HUGE, HDMA_GPA, (unsigned long long)n,
	       PS_SPACE_UNIT_ORDER(g.unit[0]));

	/* Migration: write-protect, the guest runs, rounds, paused, final. */
	err = hprotect(&g, try_uffd, &why);
	EXPECT(!err, "write-protect: %s", errname(err));
	printf("    migration: writes tracked by %s, %s\n",
	       g.uffd ? "the kernel (uffd-wp async, PAGEMAP_SCAN)"
		      : "the library (its 2 MiB entries write-protected)",
	       backing == BACK_THP ? "4 KiB inside huge pages (a write "
				     "splits a protected 2 MiB entry)"
				   : "2 MiB pages whole (as the kernel)");
	if (!g.uffd && try_uffd)
		printf("    (the uffd bridge is unavailable: %s)\n", why);
	atomic_store_explicit(&stopping, false, memory_order_relaxed);
	for (unsigned int i = 0; i < NVCPUS; i++) {
		vcpus[i] = (struct hvcpu){.g = &g,
					  .id = i + 1,
					  .rng = 0x2545f4914f6cdd1dull *
						 (i + 1)};
		pthread_create(&vcpus[i].tid, NULL, hvcpu_main, &vcpus[i]);
	}
	pthread_create(&dma, NULL, hdma_main, &g);
	hcopy(&g, 0, HGUEST_SIZE); /* the bulk pass */
	for (int round = 1; round <= 3; round++) {
		uint64_t hit = 0;

		if (round == 3)
			pause_writers(NVCPUS + 1);
		else
			sleep_ms(20);
		err = hround(&g);
		for (uint64_t i = 0; i < HGUEST_SIZE / HUGE; i++)
			hit += g.huge_hit[i];
		EXPECT(!err, "round %d: %s", round, errname(err));
		EXPECT(pinned_all_seen(&g),
		       "round %d: a page of the pinned frame not reported",
		       round);
		EXPECT(backing != BACK_THP || g.sent4k > 0 || round == 3,
		       "round %d: nothing tracked at 4 KiB", round);
		EXPECT(backing != BACK_HUGETLB || g.sent4k == 0,
		       "round %d: hugetlb memory reported at 4 KiB", round);
		printf("    round %d (%s): the pinned frame whole, %llu sends "
		       "of a whole 2 MiB page, %llu of a 4 KiB page in %llu "
		       "huge pages (%.1f MiB; %llu MiB at 2 MiB "
		       "granularity)\n",
		       round, round == 3 ? "guest paused" : "guest running",
		       (unsigned long long)g.sent2m,
		       (unsigned long long)g.sent4k, (unsigned long long)hit,
		       (double)(g.sent4k * PAGE) / (1 << 20),
		       (unsigned long long)(hit * 2));
	}
	diff = first_diff(&g);
	EXPECT(diff < 0, "the destination differs from the source at 0x%llx",
	       diff);
	EXPECT(ld(&g.fault_errors) == 0, "%llu write faults failed",
	       (unsigned long long)ld(&g.fault_errors));
	printf("    the destination equals the source: %s (vCPUs wrote %llu "
	       "times, the device %llu)\n",
	       diff < 0 ? "yes, no write lost" : "NO",
	       (unsigned long long)ld(&g.writes),
	       (unsigned long long)ld(&g.dma_writes));

	/* The guest stops; migration is over. */
	/* Release: pairs with the acquire in writer_checkpoint. */
	atomic_store_explicit(&stopping, true, memory_order_release);
	resume_writers();
	for (unsigned int i = 0; i < NVCPUS; i++)
		pthread_join(vcpus[i].tid, NULL);
	pthread_join(dma, NULL);
#if PS_HAVE_UFFD
	if (g.uffd)
		EXPECT(!ps_uffd_detach(g.uffd), "detach");
#endif
	hconvert(&g);

	/* Teardown. */
	EXPECT(!ps_space_unpin(g.space, g.unit, 1, PS_UNPIN_DIRTY), "unpin");
	err = ps_space_destroy(g.space);
	EXPECT(!err, "destroy: %s", errname(err));
	munmap(g.host_map, g.host_len);
	munmap(g.dest_map, g.dest_len);
}

/* ------------------------------------------------------------------------ */
/* The scenario                                                             */
/* ------------------------------------------------------------------------ */

int main(void)
{
	static struct vmm vm;
	static struct virtio_dev virtio;
	static struct dma_dev dma;
	static struct migration mig;
	struct vcpu vcpus[NVCPUS];
	struct ps_space_config cfg = {
		.size = GUEST_SIZE,
		.nframes = NFRAMES,
		.hooks = {.free_frame = vmm_free_frame,
			  .dirty = vmm_dirty,
			  .ctx = &vm},
	};
	struct ps_prot_hooks prot_hooks = {
		.prepare = vmm_prepare,
		.finish = vmm_finish,
		.make_accessible = vmm_make_accessible,
		.ctx = &vm,
	};
	struct ps_discard_skip skipped[BALLOON_PAGES];
	uint64_t nskipped = 0, pinned_seen, off;
	uint64_t frames[1];
	const char *why = "not built";
	struct ps_convert_opts opts;
	struct ps_memory_fault mf;
	int64_t sent;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	vm.host = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mig.dest_host = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm.host == MAP_FAILED || mig.dest_host == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	vm.ram = vm.host;
	mig.dest = mig.dest_host;
	mig.vm = &vm;
	err = ps_space_create(&cfg, &vm.space);
	if (!err)
		err = ps_space_map_range(vm.space, 0, GUEST_SIZE, 0,
					 PS_MAP_WRITE, NULL);
	if (!err)
		err = ps_prot_set_hooks(vm.space, &prot_hooks);
	if (err) {
		printf("setting up the space: %s\n", errname(err));
		return 1;
	}
	printf("[setup] %llu MiB of guest RAM at %p: frame f is guest page f\n",
	       GUEST_SIZE >> 20, vm.host);

	/* 1. Device assignment: vfio pins the device's buffers long-term. */
	err = ps_space_pin_range(vm.space, VFIO_GPA, VFIO_PAGES * PAGE,
				 PS_PIN_WRITE | PS_PIN_LONGTERM, dma.frames);
	EXPECT(!err, "vfio pin: %s", errname(err));
	EXPECT(ps_page_is_pinned(ps_space_page(vm.space, dma.frames[0])),
	       "the pinned frame reads pinned (exactly)");
	printf("[1] vfio pinned %llu pages at 0x%llx long-term for write\n",
	       VFIO_PAGES, VFIO_GPA);

	/* 2. The balloon inflates over a range that includes pinned pages. */
	err = ps_space_discard(vm.space, BALLOON_GPA, BALLOON_PAGES * PAGE,
			       skipped, BALLOON_PAGES, &nskipped);
	EXPECT(!err && nskipped == VFIO_PAGES && skipped[0].addr == VFIO_GPA,
	       "discard: %s, %llu skipped", errname(err),
	       (unsigned long long)nskipped);
	for (uint64_t i = 0; i < nskipped; i++)
		EXPECT(skipped[i].reason == PS_DISCARD_PINNED &&
			       skipped[i].frame == dma.frames[i],
		       "page 0x%llx skipped for reason %d, not as pinned",
		       (unsigned long long)skipped[i].addr,
		       (int)skipped[i].reason);
	EXPECT(ld(&vm.frees) == BALLOON_PAGES - VFIO_PAGES,
	       "%llu frames given back", (unsigned long long)ld(&vm.frees));
	printf("[2] balloon discard of %llu pages: %llu given back, the %llu "
	       "pinned ones skipped and reported pinned (first at 0x%llx)\n",
	       BALLOON_PAGES, (unsigned long long)ld(&vm.frees),
	       (unsigned long long)nskipped,
	       (unsigned long long)skipped[0].addr);

	/* The guest runs: vCPUs, the assigned device, the virtio device. */
	if (getenv("PS_EXAMPLE_NO_UFFD")) {
		why = "PS_EXAMPLE_NO_UFFD is set";
		mig.uffd = NULL;
		vm.software_dirty_log = true;
	} else if (uffd_attach(&vm, &mig, &why)) {
		mig.uffd = NULL;
		vm.software_dirty_log = true;
	}
	pthread_mutex_init(&virtio.lock, NULL);
	virtio.vm = &vm;
	virtio.rng = 0x5eed;
	err = ps_interval_insert(&virtio.sub, ps_space_notifier(vm.space),
				 DEV_GPA, DEV_PAGES * PAGE, &virtio_ops,
				 &virtio);
	EXPECT(!err, "virtio subscription: %s", errname(err));
	dma.vm = &vm;
	for (unsigned int i = 0; i < NVCPUS; i++) {
		vcpus[i].vm = &vm;
		vcpus[i].id = i + 1;
		vcpus[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		atomic_init(&vcpus[i].writes, 0);
		pthread_create(&vcpus[i].tid, NULL, vcpu_main, &vcpus[i]);
	}
	pthread_create(&dma.tid, NULL, dma_main, &dma);
	pthread_create(&virtio.tid, NULL, virtio_main, &virtio);

	/* 3. Live migration. */
	printf("[3] migration: dirty tracking by %s\n",
	       mig.uffd ? "the kernel (uffd-wp async + PAGEMAP_SCAN) and the "
			  "library (device writes, pins)"
			: "software dirty logging");
	if (!mig.uffd)
		printf("    (the uffd bridge is unavailable: %s)\n", why);
	if (mig.uffd) {
		err = uffd_protect(&mig);
		EXPECT(!err, "write-protect: %s", errname(err));
	} else {
		/* Start tracking: forget older marks (one harvest). */
		sent = migration_round(&mig, &pinned_seen);
		EXPECT(sent >= 0, "first harvest");
	}
	for (uint64_t gpa = 0; gpa < GUEST_SIZE; gpa += PAGE)
		copy_page(&mig, gpa); /* the bulk pass */
	for (int round = 1; round <= 2; round++) {
		sleep_ms(20);
		sent = migration_round(&mig, &pinned_seen);
		EXPECT(sent > 0, "round %d: %s", round, errname((int)sent));
		EXPECT(pinned_seen == VFIO_PAGES,
		       "round %d: %llu of the pinned pages reported", round,
		       (unsigned long long)pinned_seen);
		printf("    round %d (guest running): %lld pages sent, all "
		       "%llu device-pinned pages among them\n",
		       round, (long long)sent, (unsigned long long)pinned_seen);
	}
	pause_writers(NVCPUS + 2);
	sent = migration_round(&mig, &pinned_seen);
	EXPECT(sent > 0 && pinned_seen == VFIO_PAGES, "final round");
	EXPECT(!memcmp(mig.dest_host, vm.host, GUEST_SIZE),
	       "the destination equals the source");
	printf("    final round (guest paused): %lld pages sent; the "
	       "destination equals the source: %s\n",
	       (long long)sent,
	       memcmp(mig.dest_host, vm.host, GUEST_SIZE)
		       ? "NO"
		       : "yes, no write lost");
	printf("    (vCPUs wrote %llu times, the vfio device %llu, the virtio "
	       "device %llu)\n",
	       (unsigned long long)(ld(&vcpus[0].writes) +
				    ld(&vcpus[1].writes)),
	       (unsigned long long)ld(&dma.writes),
	       (unsigned long long)ld(&virtio.writes));
	if (mig.uffd) {
		err = uffd_detach(&mig);
		EXPECT(!err, "detach: %s", errname(err));
	}
	resume_writers();

	/* 4. Confidential VM: the guest converts a range to private. */
	err = ps_space_pin_range(vm.space, CONV_GPA + CONV_PINNED * PAGE, PAGE,
				 PS_PIN_WRITE, frames);
	EXPECT(!err, "pin under DMA: %s", errname(err));
	memset(&opts, 0, sizeof(opts));
	off = UINT64_MAX;
	err = ps_prot_convert(vm.space, CONV_GPA, CONV_PAGES * PAGE,
			      PS_ENC_PRIVATE, 0, &opts, &off);
	EXPECT(err == -EAGAIN && off == CONV_PINNED * PAGE &&
		       opts.converted == 0,
	       "convert with a pinned page: %s at offset 0x%llx", errname(err),
	       (unsigned long long)off);
	EXPECT(ps_page_enc_state(ps_space_page(vm.space, CONV_GPA / PAGE)) ==
		       PS_ENC_SHARED,
	       "nothing converted");
	printf("[4] convert %llu pages at 0x%llx to private while page %llu is "
	       "under DMA: %s at offset 0x%llx, nothing converted\n",
	       CONV_PAGES, CONV_GPA, CONV_PINNED, errname(err),
	       (unsigned long long)off);
	ps_space_unpin(vm.space, frames, 1, PS_UNPIN_DIRTY);
	err = ps_prot_convert(vm.space, CONV_GPA, CONV_PAGES * PAGE,
			      PS_ENC_PRIVATE, 0, &opts, &off);
	EXPECT(!err && opts.converted == CONV_PAGES &&
		       ld(&vm.prepares) == CONV_PAGES,
	       "convert after the DMA: %s, %llu converted", errname(err),
	       (unsigned long long)opts.converted);
	printf("    after the DMA completes: %s, %llu pages private (prepare "
	       "and finish ran %llu and %llu times)\n",
	       errname(err), (unsigned long long)opts.converted,
	       (unsigned long long)ld(&vm.prepares),
	       (unsigned long long)ld(&vm.finishes));
	err = ps_prot_check_access(vm.space, CONV_GPA + 100, 8, PS_ENC_SHARED,
				   &mf);
	EXPECT(err == -EFAULT && mf.addr == CONV_GPA + 100 && mf.size == 8 &&
		       !(mf.flags & PS_MEMORY_FAULT_PRIVATE),
	       "access check: %s", errname(err));
	printf("    a shared access of 8 bytes at 0x%llx: %s, memory fault "
	       "{addr 0x%llx, size %llu, %s}\n",
	       CONV_GPA + 100, errname(err), (unsigned long long)mf.addr,
	       (unsigned long long)mf.size,
	       mf.flags & PS_MEMORY_FAULT_PRIVATE ? "private" : "shared");
	err = ps_space_pin_range(vm.space, CONV_GPA, PAGE, 0, frames);
	EXPECT(err == -EPERM, "a shared pin of a private page: %s",
	       errname(err));
	err = ps_space_pin_range(vm.space, CONV_GPA, PAGE, PS_PIN_PRIVATE,
				 frames);
	EXPECT(!err && ld(&vm.accessible) == 0,
	       "a private pin: %s, make-accessible %llu", errname(err),
	       (unsigned long long)ld(&vm.accessible));
	if (!err)
		ps_space_unpin(vm.space, frames, 1, 0);
	err = ps_prot_kmap(vm.space, CONV_GPA / PAGE, PS_KMAP_PRIVATE);
	EXPECT(!err && ld(&vm.accessible) == 1, "kmap: %s", errname(err));
	if (!err)
		err = ps_prot_kmap(vm.space, CONV_GPA / PAGE, PS_KMAP_PRIVATE);
	EXPECT(!err && ld(&vm.accessible) == 1, "second kmap: %s",
	       errname(err));
	for (int i = 0; i < 2; i++)
		EXPECT(!ps_prot_kunmap(vm.space, CONV_GPA / PAGE), "kunmap");
	printf("    a shared pin of a private page: EPERM; a private pin does "
	       "not call make-accessible; the first CPU map does, once "
	       "(%llu)\n",
	       (unsigned long long)ld(&vm.accessible));

	/* 5. Unmap half of the virtio device's window under its feet. */
	sleep_ms(10);
	err = ps_space_unmap(vm.space, DEV_GPA + DEV_PAGES / 2 * PAGE,
			     DEV_PAGES / 2 * PAGE, 0);
	EXPECT(!err, "unmap: %s", errname(err));
	/* Release: pairs with the device's acquire (see virtio_main). */
	atomic_store_explicit(&virtio.unmapped, true, memory_order_release);
	{
		uint64_t before = ld(&virtio.writes);

		while (!atomic_load_explicit(&virtio.fault_seen,
					     memory_order_relaxed) ||
		       ld(&virtio.writes) < before + 10000)
			sched_yield();
	}
	EXPECT(ld(&virtio.stale_hits) == 0,
	       "%llu writes through a stale translation",
	       (unsigned long long)ld(&virtio.stale_hits));
	printf("[5] unmapped 0x%llx..0x%llx while the virtio device wrote to "
	       "it: %llu invalidation callbacks, %llu faults since, %llu "
	       "writes through a stale translation\n",
	       DEV_GPA + DEV_PAGES / 2 * PAGE, DEV_GPA + DEV_PAGES * PAGE - 1,
	       (unsigned long long)ld(&virtio.invalidations),
	       (unsigned long long)ld(&virtio.faults),
	       (unsigned long long)ld(&virtio.stale_hits));

	/* Teardown. */
	/* Release: pairs with the acquire in writer_checkpoint. */
	atomic_store_explicit(&stopping, true, memory_order_release);
	for (unsigned int i = 0; i < NVCPUS; i++)
		pthread_join(vcpus[i].tid, NULL);
	pthread_join(dma.tid, NULL);
	pthread_join(virtio.tid, NULL);
	ps_interval_remove(&virtio.sub);
	ps_space_unpin(vm.space, dma.frames, VFIO_PAGES,
		       PS_UNPIN_DIRTY | PS_UNPIN_LONGTERM);
	err = ps_space_destroy(vm.space);
	EXPECT(!err, "destroy: %s", errname(err));
	pthread_mutex_destroy(&virtio.lock);
	munmap(vm.host, GUEST_SIZE);
	munmap(mig.dest_host, GUEST_SIZE);

	/* 6. A guest on huge pages: THP, then hugetlbfs where reserved. */
	huge_guest(BACK_THP, !getenv("PS_EXAMPLE_NO_UFFD"));
	huge_guest(BACK_HUGETLB, !getenv("PS_EXAMPLE_NO_UFFD"));
	printf("[7] done: %s\n",
	       failures ? "FAILED" : "all outcomes as expected");
	return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
