// SPDX-License-Identifier: MIT
/*
 * dma-driver.c - a userspace DMA driver's memory map, built on libpagestate.
 *
 * A userspace NVMe or RDMA driver (SPDK, DPDK, a vfio-user device) keeps its
 * own map from the virtual addresses of the buffers its users register to the
 * addresses its device uses. This program is such a driver, with a simulated
 * device, and shows the five things it has to get right:
 *
 *   1. buffer registration: a registration covers a range of the address
 *      space and subscribes to its invalidations (Linux's ODP drivers use an
 *      mmu_interval_notifier the same way);
 *   2. a vtophys cache: the translations of a registration, read without a
 *      lock, validated with sequence numbers (the cache's own seqcount, and
 *      the space's invalidation sequence, exact per range);
 *   3. I/O threads that pin the pages of each request for the DMA and unpin
 *      them (marking them dirty: the device wrote them) when it completes;
 *   4. unregister, which refuses new requests, waits a bounded time for the
 *      pins of requests in flight (exact: a page word counts pins apart from
 *      references), and only then invalidates the translations;
 *   5. memory hot-remove: the memory under part of a registration goes away
 *      while requests are in flight, and new memory appears at the same
 *      addresses. No request may ever DMA through a stale translation.
 *
 * The "memory" is real: an mmap'd arena of 4 KiB frames. Frame f stands for
 * device address PHYS_BASE + f * 4096, and the simulated device writes
 * through the arena.
 *
 * It prints each step and exits non-zero if any outcome is not the expected
 * one, so the test suite runs it (meson test --suite examples). Environment:
 * PS_EXAMPLE_REQUESTS sets the requests each I/O thread makes per phase
 * (default 2000).
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

#define PAGE 4096ull
#define PHYS_BASE 0x80000000ull	 /* where the device sees frame 0 */
#define NFRAMES 1024ull		 /* a 4 MiB arena */
#define SPACE_SIZE (64ull << 20) /* the driver's virtual address space */
#define MAX_REQ_PAGES 8		 /* pages per request, at most */
#define NTHREADS 2

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
	case -ENOENT:
		return "ENOENT";
	case -EFAULT:
		return "EFAULT";
	case -ETIMEDOUT:
		return "ETIMEDOUT";
	default:
		return strerror(-err);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The driver                                                               */
/* ------------------------------------------------------------------------ */

enum reg_state { REG_UNUSED, REG_LIVE, REG_DYING, REG_DEAD };

/*
 * A registered buffer. Its vtophys table holds one device address per page
 * (0: not mapped) and the notifier sequence from before the table was
 * filled. Readers take no lock: a seqcount (xlate_seq) gives them a
 * consistent copy of table and sequence, and the space's whole-space check
 * (ps_notifier_read_retry_range) tells them whether any invalidation of
 * their pages ran since. Refills and the invalidation callback serialise on
 * fill_lock, a slow-path lock.
 */
struct dma_reg {
	struct driver *drv;
	uint64_t va;
	uint64_t npages;
	_Atomic int state;		/* enum reg_state */
	struct ps_interval sub;		/* invalidations of [va, va + len) */
	pthread_mutex_t fill_lock;	/* refill vs. invalidate (slow path) */
	struct ps_seq xlate_seq;	/* guards nseq and phys[] */
	_Atomic uint64_t nseq;		/* ps_notifier_read_begin() at fill */
	_Atomic uint64_t *phys;		/* per page: device address, 0 = none */
	_Atomic uint64_t refills;	/* slow-path fills */
	_Atomic uint64_t invalidations; /* callbacks that cleared entries */
};

struct driver {
	struct ps_space *space;
	struct ps_notifier *notifier;
	unsigned char *arena;		/* the memory behind the frames */
	_Atomic uint64_t frees;		/* free_frame hook calls */
	_Atomic uint8_t freed[NFRAMES]; /* 1 once a frame was freed */
};

static uint64_t frame_phys(uint64_t frame)
{
	return PHYS_BASE + frame * PAGE;
}

static unsigned char *phys_mem(struct driver *drv, uint64_t phys)
{
	return drv->arena + (phys - PHYS_BASE);
}

/* The space calls this when a frame's last reference (or pin) goes. */
static void drv_free_frame(void *ctx, struct ps_space *space, uint64_t frame)
{
	struct driver *drv = ctx;

	(void)space;
	/* Relaxed: a flag read after the waiter's own acquire below. */
	atomic_store_explicit(&drv->freed[frame], 1, memory_order_release);
	atomic_fetch_add_explicit(&drv->frees, 1, memory_order_relaxed);
}

/*
 * The registration's invalidation callback: the primary mapping of part of
 * the buffer is about to change (unmap, hot-remove, discard, conversion).
 * Clear the cached translations of the overlapping pages, so that no
 * request finds them again. The whole-space check would catch them anyway;
 * clearing them is what a real driver does to its device's IOTLB.
 */
static bool reg_invalidate(struct ps_interval *sub,
			   const struct ps_invalidation *inv, uint64_t cur_seq,
			   void *priv)
{
	struct dma_reg *reg = priv;
	uint64_t first, last;

	if (ps_invalidation_blockable(inv))
		pthread_mutex_lock(&reg->fill_lock);
	else if (pthread_mutex_trylock(&reg->fill_lock))
		return false; /* the invalidator gets -EAGAIN and retries */
	first = inv->start > reg->va ? (inv->start - reg->va) / PAGE : 0;
	last = (ps_invalidation_last(inv) - reg->va) / PAGE;
	if (last >= reg->npages)
		last = reg->npages - 1;
	ps_seq_write_begin(&reg->xlate_seq);
	for (uint64_t i = first; i <= last; i++)
		/* Relaxed: inside the write section (xlate_seq orders it). */
		atomic_store_explicit(&reg->phys[i], 0, memory_order_relaxed);
	ps_seq_write_end(&reg->xlate_seq);
	ps_interval_set_seq(sub, cur_seq);
	atomic_fetch_add_explicit(&reg->invalidations, 1, memory_order_relaxed);
	pthread_mutex_unlock(&reg->fill_lock);
	return true;
}

static const struct ps_interval_ops reg_ops = {
	.invalidate = reg_invalidate,
};

/*
 * Refill the whole table from the page table, then publish it with the
 * notifier sequence read before the walk. If an invalidation of the buffer
 * was in flight meanwhile, walk again: the table must be exactly the
 * mapping at some instant after the sequence was read.
 */
static void reg_refill(struct dma_reg *reg)
{
	struct driver *drv = reg->drv;
	struct ps_pgtable *pt = ps_space_pgtable(drv->space);

	for (;;) {
		uint64_t seq;
		bool raced;

		/*
		 * The lock is dropped between attempts: the invalidation that
		 * made the walk stale runs its callback, which takes it.
		 */
		pthread_mutex_lock(&reg->fill_lock);
		seq = ps_notifier_read_begin(drv->notifier);

		ps_seq_write_begin(&reg->xlate_seq);
		ps_pgtable_read_lock();
		for (uint64_t i = 0; i < reg->npages; i++) {
			ps_pte_t e = ps_pgtable_lookup(pt, reg->va + i * PAGE);
			uint64_t phys = ps_pte_is_present(e)
						? frame_phys(ps_pte_frame(e))
						: 0;

			/* Relaxed: inside the write section. */
			atomic_store_explicit(&reg->phys[i], phys,
					      memory_order_relaxed);
		}
		ps_pgtable_read_unlock();
		/* Relaxed: inside the write section. */
		atomic_store_explicit(&reg->nseq, seq, memory_order_relaxed);
		ps_seq_write_end(&reg->xlate_seq);
		raced = ps_notifier_read_retry_range(drv->notifier, seq,
						     reg->va,
						     reg->npages * PAGE);
		pthread_mutex_unlock(&reg->fill_lock);
		if (!raced)
			break;
		sched_yield();
	}
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&reg->refills, 1, memory_order_relaxed);
}

/*
 * vtophys for the pages of [va, va + n pages) of a registration: device
 * addresses into phys[], and the notifier sequence they are valid from.
 * Lock-free unless the table is stale. Return: 0; -ENOENT (not registered);
 * -EFAULT (a page is not mapped).
 */
static int reg_vtophys(struct dma_reg *reg, uint64_t va, uint64_t n,
		       uint64_t *phys, uint64_t *seq_out)
{
	uint64_t first = (va - reg->va) / PAGE;

	for (int attempt = 0;; attempt++) {
		uint64_t c, nseq;
		bool missing = false;

		/* Acquire: pairs with the seq_cst store in unregister. */
		if (atomic_load_explicit(&reg->state, memory_order_acquire) !=
		    REG_LIVE)
			return -ENOENT;
		do {
			c = ps_seq_read_begin(&reg->xlate_seq);
			/* Relaxed: the seqcount validates the copy. */
			nseq = atomic_load_explicit(&reg->nseq,
						    memory_order_relaxed);
			for (uint64_t i = 0; i < n; i++)
				phys[i] = atomic_load_explicit(
					&reg->phys[first + i],
					memory_order_relaxed);
		} while (ps_seq_read_retry(&reg->xlate_seq, c));
		for (uint64_t i = 0; i < n; i++)
			missing |= phys[i] == 0;
		if (!ps_notifier_read_retry_range(reg->drv->notifier, nseq, va,
						  n * PAGE)) {
			*seq_out = nseq;
			if (!missing)
				return 0;
			/*
			 * A hole is not cached: mapping a page raises no
			 * invalidation (as in Linux, secondary MMUs cache
			 * only present entries), so look again once.
			 */
			if (attempt > 0)
				return -EFAULT;
		}
		reg_refill(reg);
	}
}

static int reg_register(struct driver *drv, struct dma_reg *reg, uint64_t va,
			uint64_t npages)
{
	int err;

	memset(reg, 0, sizeof(*reg));
	reg->drv = drv;
	reg->va = va;
	reg->npages = npages;
	pthread_mutex_init(&reg->fill_lock, NULL);
	ps_seq_init(&reg->xlate_seq);
	reg->phys = calloc(npages, sizeof(*reg->phys));
	if (!reg->phys)
		return -ENOMEM;
	err = ps_interval_insert(&reg->sub, drv->notifier, va, npages * PAGE,
				 &reg_ops, reg);
	if (err) {
		free(reg->phys);
		return err;
	}
	reg_refill(reg);
	/* Release: the table is filled before anyone sees the buffer live. */
	atomic_store_explicit(&reg->state, REG_LIVE, memory_order_release);
	return 0;
}

/* Is any page of the buffer pinned? Exact: a pin is never a reference. */
static uint64_t reg_pinned_pages(struct dma_reg *reg)
{
	struct ps_pgtable *pt = ps_space_pgtable(reg->drv->space);
	uint64_t pinned = 0;

	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < reg->npages; i++) {
		ps_pte_t e = ps_pgtable_lookup(pt, reg->va + i * PAGE);

		if (ps_pte_is_present(e) &&
		    ps_page_is_pinned(ps_space_page(reg->drv->space,
						    ps_pte_frame(e))))
			pinned++;
	}
	ps_pgtable_read_unlock();
	return pinned;
}

/*
 * Unregister: refuse new requests, wait up to timeout_ms for the pins of
 * the requests in flight, then invalidate every cached translation and
 * unsubscribe. On timeout the buffer stays registered (-ETIMEDOUT).
 *
 * The refusal and the wait form a Dekker pair with the request path: a
 * request pins, fences, then checks the state; unregister sets the state,
 * fences, then checks the pins. Either the request sees DYING and backs
 * out, or unregister sees its pin and waits for it.
 */
static int reg_unregister(struct dma_reg *reg, unsigned int timeout_ms)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	int expected = REG_LIVE;

	/* Seq_cst: pairs with the fence in do_request (Dekker, above). */
	if (!atomic_compare_exchange_strong_explicit(&reg->state, &expected,
						     REG_DYING,
						     memory_order_seq_cst,
						     memory_order_relaxed))
		return -ENOENT;
	/* Seq_cst fence: the state store before the pin loads. */
	atomic_thread_fence(memory_order_seq_cst);
	while (reg_pinned_pages(reg)) {
		if (now_ns() > deadline) {
			/* Release: pairs with the acquire in reg_vtophys. */
			atomic_store_explicit(&reg->state, REG_LIVE,
					      memory_order_release);
			return -ETIMEDOUT;
		}
		sched_yield();
	}
	/* No DMA in flight: drop every translation (the device's IOTLB). */
	pthread_mutex_lock(&reg->fill_lock);
	ps_seq_write_begin(&reg->xlate_seq);
	for (uint64_t i = 0; i < reg->npages; i++)
		/* Relaxed: inside the write section. */
		atomic_store_explicit(&reg->phys[i], 0, memory_order_relaxed);
	ps_seq_write_end(&reg->xlate_seq);
	pthread_mutex_unlock(&reg->fill_lock);
	/* Release: pairs with the acquire in reg_vtophys. */
	atomic_store_explicit(&reg->state, REG_DEAD, memory_order_release);
	ps_interval_remove(&reg->sub); /* waits for callbacks in flight */
	return 0;
}

static void reg_free(struct dma_reg *reg)
{
	pthread_mutex_destroy(&reg->fill_lock);
	free(reg->phys);
}

/*
 * One request: the device writes @pattern to n pages at va; @frames receives
 * the frames it wrote. Translate through the cache, pin (so the frames cannot
 * go away under the DMA), re-check that no invalidation of these pages ran
 * since the translations were taken, DMA, and unpin marking the pages dirty.
 *
 * Return: 0; -ENOENT (not registered, or unregistering); -EFAULT (a page is
 * not mapped, e.g. hot-removed); -EIO if a translation disagreed with the
 * pinned frame (the bug this design excludes; counted by the caller).
 */
static int do_request(struct dma_reg *reg, uint64_t va, uint64_t n,
		      uint64_t pattern, uint64_t *frames, uint64_t *stale)
{
	struct driver *drv = reg->drv;
	uint64_t phys[MAX_REQ_PAGES], seq;
	int err;

	for (;;) {
		err = reg_vtophys(reg, va, n, phys, &seq);
		if (err)
			return err;
		err = ps_space_pin_range(drv->space, va, n * PAGE, PS_PIN_WRITE,
					 frames);
		if (err)
			return err; /* unmapped since: -EFAULT */
		/* Seq_cst fence: the pin before the state load (Dekker). */
		atomic_thread_fence(memory_order_seq_cst);
		/* Relaxed: ordered by the fence. */
		if (atomic_load_explicit(&reg->state, memory_order_relaxed) !=
		    REG_LIVE) {
			ps_space_unpin(drv->space, frames, n, 0);
			return -ENOENT;
		}
		/*
		 * The translations were valid from seq until the check in
		 * reg_vtophys. If no invalidation of these pages has run
		 * since seq either, the mapping did not change between the
		 * translation and the pin: they name the same frames.
		 */
		if (!ps_notifier_read_retry_range(drv->notifier, seq, va,
						  n * PAGE))
			break;
		ps_space_unpin(drv->space, frames, n, 0);
		(*stale)++;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (phys[i] != frame_phys(frames[i])) {
			ps_space_unpin(drv->space, frames, n, 0);
			return -EIO;
		}
	}
	/* The "device": DMA into the pinned frames, through the arena. */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t *p = (uint64_t *)(void *)phys_mem(drv, phys[i]);

		for (size_t w = 0; w < PAGE / sizeof(*p); w++)
			p[w] = pattern;
	}
	/* The device wrote. */
	ps_space_unpin(drv->space, frames, n, PS_UNPIN_DIRTY);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* I/O threads                                                              */
/* ------------------------------------------------------------------------ */

struct io_thread {
	pthread_t tid;
	unsigned int id;
	struct dma_reg *reg;	     /* the buffer it mostly uses */
	struct dma_reg *other;	     /* a second buffer it uses now and then */
	uint64_t first_page, npages; /* its slice of reg */
	uint64_t other_first, other_npages; /* its slice of other */
	uint64_t rng;
	_Atomic uint64_t ok, faulted, refused, mismatched, other_ok;
	uint64_t stale;
	/* Per page of reg: the frame and pattern of its last DMA. */
	uint64_t last_frame[256], last_pattern[256];
	_Atomic bool stop;
};

/* Relaxed: statistics, read as progress hints or after the join. */
static uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static uint64_t rnd(struct io_thread *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static void *io_main(void *arg)
{
	struct io_thread *t = arg;
	uint64_t seqno = 0;

	/* Relaxed: a stop request, no data depends on it. */
	while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
		bool other = t->other && rnd(t) % 8 == 0;
		struct dma_reg *reg = other ? t->other : t->reg;
		uint64_t span = other ? t->other_npages : t->npages;
		uint64_t base = other ? t->other_first : t->first_page;
		uint64_t n = 1 + rnd(t) % MAX_REQ_PAGES;
		uint64_t page = base + rnd(t) % (span - n + 1);
		uint64_t pattern = ((uint64_t)t->id << 56) | ++seqno;
		uint64_t frames[MAX_REQ_PAGES];
		int err = do_request(reg, reg->va + page * PAGE, n, pattern,
				     frames, &t->stale);

		if (!err && !other) {
			for (uint64_t i = 0; i < n; i++) {
				t->last_frame[page + i] = frames[i];
				t->last_pattern[page + i] = pattern;
			}
		}
		/* Relaxed: statistics, read after join or as progress hints. */
		if (!err)
			atomic_fetch_add_explicit(other ? &t->other_ok : &t->ok,
						  1, memory_order_relaxed);
		else if (err == -EFAULT)
			atomic_fetch_add_explicit(&t->faulted, 1,
						  memory_order_relaxed);
		else if (err == -ENOENT)
			atomic_fetch_add_explicit(&t->refused, 1,
						  memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&t->mismatched, 1,
						  memory_order_relaxed);
	}
	return NULL;
}

/* Wait until each thread has completed @more successful requests. */
static void wait_progress(struct io_thread *t, unsigned int nt, uint64_t more)
{
	uint64_t target[NTHREADS];

	for (unsigned int i = 0; i < nt; i++)
		/* Relaxed: a progress hint. */
		target[i] = ld(&t[i].ok) + more;
	for (unsigned int i = 0; i < nt; i++)
		while (ld(&t[i].ok) < target[i])
			sched_yield();
}

/* ------------------------------------------------------------------------ */
/* The scenario                                                             */
/* ------------------------------------------------------------------------ */

int main(void)
{
	static struct driver drv;
	struct dma_reg buf_a, buf_b;
	struct io_thread io[NTHREADS];
	const uint64_t va_a = 1ull << 20, pages_a = 256; /* frames 0..255 */
	const uint64_t va_b = 4ull << 20, pages_b = 64;	 /* frames 256..319 */
	const uint64_t spare = 512;			 /* hot-added frames */
	const uint64_t va_gone = va_a + 128 * PAGE, pages_gone = 128;
	uint64_t requests = 2000, phys[1], seq, frames[1], old[128];
	const char *env = getenv("PS_EXAMPLE_REQUESTS");
	struct ps_space_config cfg = {
		.size = SPACE_SIZE,
		.nframes = NFRAMES,
		.hooks = {.free_frame = drv_free_frame, .ctx = &drv},
	};
	uint64_t t0;
	int err;

	if (env && atoll(env) > 0)
		requests = (uint64_t)atoll(env);
	setvbuf(stdout, NULL, _IOLBF, 0);

	printf("[setup] a %llu KiB arena of %llu frames; the device sees frame "
	       "f at 0x%llx + f * 4096\n",
	       NFRAMES * PAGE / 1024, NFRAMES, PHYS_BASE);
	drv.arena = mmap(NULL, NFRAMES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (drv.arena == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	err = ps_space_create(&cfg, &drv.space);
	if (err) {
		printf("ps_space_create: %s\n", strerror(-err));
		return 1;
	}
	drv.notifier = ps_space_notifier(drv.space);
	err = ps_space_map_range(drv.space, va_a, pages_a * PAGE, 0,
				 PS_MAP_WRITE, NULL);
	EXPECT(!err, "map buffer A: %d", err);
	err = ps_space_map_range(drv.space, va_b, pages_b * PAGE, 256,
				 PS_MAP_WRITE, NULL);
	EXPECT(!err, "map buffer B: %d", err);

	/* 1. Registration. */
	err = reg_register(&drv, &buf_a, va_a, pages_a);
	EXPECT(!err, "register A: %d", err);
	err = reg_register(&drv, &buf_b, va_b, pages_b);
	EXPECT(!err, "register B: %d", err);
	printf("[1] registered buffer A: %llu pages at 0x%llx, buffer B: "
	       "%llu pages at 0x%llx\n",
	       (unsigned long long)pages_a, (unsigned long long)va_a,
	       (unsigned long long)pages_b, (unsigned long long)va_b);

	/* 2. The vtophys cache. */
	err = reg_vtophys(&buf_a, va_a + 5 * PAGE, 1, phys, &seq);
	EXPECT(!err && phys[0] == frame_phys(5),
	       "vtophys(A + 5 pages) = %d, 0x%llx", err,
	       (unsigned long long)phys[0]);
	printf("[2] vtophys(0x%llx) = 0x%llx, lock-free, valid from notifier "
	       "sequence %llu\n",
	       (unsigned long long)(va_a + 5 * PAGE),
	       (unsigned long long)phys[0], (unsigned long long)seq);

	/* 3. I/O threads: each owns half of A and sometimes uses B. */
	memset(io, 0, sizeof(io));
	for (unsigned int i = 0; i < NTHREADS; i++) {
		io[i].id = i;
		io[i].reg = &buf_a;
		io[i].other = &buf_b;
		io[i].first_page = i * (pages_a / NTHREADS);
		io[i].npages = pages_a / NTHREADS;
		io[i].other_first = i * (pages_b / NTHREADS);
		io[i].other_npages = pages_b / NTHREADS;
		io[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		if (pthread_create(&io[i].tid, NULL, io_main, &io[i])) {
			printf("pthread_create failed\n");
			return 1;
		}
	}
	wait_progress(io, NTHREADS, requests);
	printf("[3] %u I/O threads: %llu + %llu requests done, each pinned "
	       "its pages, DMA'd, unpinned them dirty\n",
	       NTHREADS, (unsigned long long)ld(&io[0].ok),
	       (unsigned long long)ld(&io[1].ok));

	/* 4. Unregister B while a request on it is stuck in the device. */
	err = ps_space_pin_range(drv.space, va_b + 3 * PAGE, PAGE, PS_PIN_WRITE,
				 frames);
	EXPECT(!err, "pin a page of B: %d", err);
	t0 = now_ns();
	err = reg_unregister(&buf_b, 50);
	EXPECT(err == -ETIMEDOUT, "unregister B with a stuck pin: %d", err);
	EXPECT(atomic_load_explicit(&buf_b.state, memory_order_relaxed) ==
		       REG_LIVE,
	       "B is still registered after the timeout");
	printf("[4] unregister B with one page pinned by a stuck request: "
	       "%s after %.0f ms; B stays registered\n",
	       errname(err), (double)(now_ns() - t0) / 1e6);
	ps_space_unpin(drv.space, frames, 1, PS_UNPIN_DIRTY);
	err = reg_unregister(&buf_b, 2000);
	EXPECT(!err, "unregister B: %d", err);
	err = reg_vtophys(&buf_b, va_b, 1, phys, &seq);
	EXPECT(err == -ENOENT, "vtophys on unregistered B: %d", err);
	printf("    the stuck request completes; unregister B waits for the "
	       "pins in flight, then invalidates: ok; vtophys(B) -> %s\n",
	       errname(-ENOENT));
	{
		uint64_t before = ld(&io[0].other_ok) + ld(&io[1].other_ok);

		wait_progress(io, NTHREADS, requests / 4);
		EXPECT(ld(&io[0].other_ok) + ld(&io[1].other_ok) == before,
		       "no request on B succeeds after unregister");
		printf("    requests on B since: %llu refused, 0 done\n",
		       (unsigned long long)(ld(&io[0].refused) +
					    ld(&io[1].refused)));
	}

	/*
	 * 5. Hot-remove the memory under the upper half of A (thread 1's
	 * slice) while requests are in flight. One request is held in the
	 * device on purpose, so the removal has to wait for it.
	 */
	err = ps_space_pin_range(drv.space, va_gone, PAGE, PS_PIN_WRITE,
				 frames);
	EXPECT(!err, "pin a page to be removed: %d", err);
	for (uint64_t i = 0; i < pages_gone; i++) {
		ps_pte_t e;

		err = ps_pgtable_get(ps_space_pgtable(drv.space),
				     va_gone + i * PAGE, &e);
		EXPECT(!err && ps_pte_is_present(e), "page %llu mapped",
		       (unsigned long long)i);
		old[i] = ps_pte_frame(e);
	}
	err = ps_space_unmap(drv.space, va_gone, pages_gone * PAGE, 0);
	EXPECT(!err, "unmap the removed range: %d", err);
	EXPECT(!atomic_load_explicit(&drv.freed[old[0]],
				     memory_order_acquire) &&
		       ps_page_is_pinned(ps_space_page(drv.space, old[0])),
	       "a frame under DMA outlives its mapping");
	printf("[5] hot-remove 0x%llx..0x%llx: unmapped (A's callback ran "
	       "%llu times); frame %llu stays until its DMA completes\n",
	       (unsigned long long)va_gone,
	       (unsigned long long)(va_gone + pages_gone * PAGE - 1),
	       (unsigned long long)ld(&buf_a.invalidations),
	       (unsigned long long)old[0]);
	ps_space_unpin(drv.space, frames, 1, PS_UNPIN_DIRTY);
	t0 = now_ns();
	for (uint64_t i = 0; i < pages_gone; i++) {
		/* Acquire: pairs with the release in drv_free_frame. */
		while (!atomic_load_explicit(&drv.freed[old[i]],
					     memory_order_acquire)) {
			if (now_ns() - t0 > 2000000000ull)
				break;
			sched_yield();
		}
		EXPECT(atomic_load_explicit(&drv.freed[old[i]],
					    memory_order_relaxed),
		       "frame %llu freed within 2 s",
		       (unsigned long long)old[i]);
	}
	/* The memory really goes: give it back to the kernel. */
	EXPECT(!madvise(drv.arena + old[0] * PAGE, pages_gone * PAGE,
			MADV_DONTNEED),
	       "madvise");
	printf("    every removed frame freed once its last pin went "
	       "(%.1f ms); the arena pages are returned\n",
	       (double)(now_ns() - t0) / 1e6);
	err = reg_vtophys(&buf_a, va_gone, 1, phys, &seq);
	EXPECT(err == -EFAULT, "vtophys of a removed page: %d", err);
	{
		uint64_t f = ld(&io[1].faulted);

		wait_progress(io, 1, requests / 4);
		/* Thread 1 owns only removed pages: it must fault now. */
		while (ld(&io[1].faulted) == f)
			sched_yield();
		printf("    requests on the removed range fail with EFAULT "
		       "(%llu so far); thread 0 carries on\n",
		       (unsigned long long)ld(&io[1].faulted));
	}

	/* Hot-add: new frames at the same addresses. */
	err = ps_space_map_range(drv.space, va_gone, pages_gone * PAGE, spare,
				 PS_MAP_WRITE, NULL);
	EXPECT(!err, "hot-add: %d", err);
	wait_progress(io, NTHREADS, requests);
	err = reg_vtophys(&buf_a, va_gone, 1, phys, &seq);
	EXPECT(!err && phys[0] == frame_phys(spare),
	       "vtophys after hot-add = %d, 0x%llx", err,
	       (unsigned long long)phys[0]);
	printf("    hot-add frames %llu..%llu at the same addresses: vtophys "
	       "-> 0x%llx; %llu more requests done\n",
	       (unsigned long long)spare,
	       (unsigned long long)(spare + pages_gone - 1),
	       (unsigned long long)phys[0], (unsigned long long)requests);

	for (unsigned int i = 0; i < NTHREADS; i++) {
		/* Relaxed: the join orders everything after it. */
		atomic_store_explicit(&io[i].stop, true, memory_order_relaxed);
		pthread_join(io[i].tid, NULL);
	}

	/* The outcomes. */
	{
		uint64_t ok = 0, mism = 0, stale = 0;
		uint64_t dirty[512], n = 0, resume;

		for (unsigned int i = 0; i < NTHREADS; i++) {
			ok += ld(&io[i].ok) + ld(&io[i].other_ok);
			mism += ld(&io[i].mismatched);
			stale += io[i].stale;
		}
		EXPECT(mism == 0, "%llu requests used a stale translation",
		       (unsigned long long)mism);
		printf("[6] %llu requests done, %llu retried after a "
		       "concurrent invalidation, %llu used a stale "
		       "translation; A's table refilled %llu times\n",
		       (unsigned long long)ok, (unsigned long long)stale,
		       (unsigned long long)mism,
		       (unsigned long long)ld(&buf_a.refills));
		/* The device's writes are in the dirty log (migration). */
		err = ps_space_harvest(drv.space, va_a, pages_a * PAGE, 0,
				       dirty, 512, &n, &resume);
		EXPECT(!err && n > pages_a / 2,
		       "harvest of A: %d, %llu dirty pages", err,
		       (unsigned long long)n);
		printf("    the dirty log reports %llu of A's %llu pages "
		       "written by the device\n",
		       (unsigned long long)n, (unsigned long long)pages_a);
		/*
		 * The last DMA to each page of A is in the frame mapped there
		 * now (for pages last written before the hot-remove, that
		 * frame is gone): no DMA went through a stale translation.
		 */
		n = 0;
		for (unsigned int i = 0; i < NTHREADS; i++) {
			for (uint64_t p = io[i].first_page;
			     p < io[i].first_page + io[i].npages; p++) {
				const uint64_t *w;
				ps_pte_t e;

				if (!io[i].last_pattern[p] ||
				    ps_pgtable_get(ps_space_pgtable(drv.space),
						   va_a + p * PAGE, &e) ||
				    ps_pte_frame(e) != io[i].last_frame[p])
					continue;
				w = (const uint64_t *)(const void *)phys_mem(
					&drv, frame_phys(io[i].last_frame[p]));
				EXPECT(w[0] == io[i].last_pattern[p] &&
					       w[PAGE / 8 - 1] ==
						       io[i].last_pattern[p],
				       "page %llu holds its last DMA",
				       (unsigned long long)p);
				n++;
			}
		}
		EXPECT(n > pages_a / 2, "%llu pages checked",
		       (unsigned long long)n);
		printf("    %llu pages hold exactly the data of their last "
		       "DMA\n",
		       (unsigned long long)n);
	}

	/* Teardown. */
	err = reg_unregister(&buf_a, 2000);
	EXPECT(!err, "unregister A: %d", err);
	reg_free(&buf_a);
	reg_free(&buf_b);
	err = ps_space_destroy(drv.space);
	EXPECT(!err, "destroy: %d", err);
	munmap(drv.arena, NFRAMES * PAGE);
	printf("[7] unregistered A, destroyed the space: %s\n",
	       failures ? "FAILED" : "all outcomes as expected");
	return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
