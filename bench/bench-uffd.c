// SPDX-License-Identifier: MIT
/*
 * bench/bench-uffd.c - the Linux bridge (pagestate/uffd.h) against the raw
 * kernel interfaces it wraps.
 *
 * Cases:
 *   harvest   a real 1 GiB anonymous range (262144 pages of 4 KiB,
 *             MADV_NOHUGEPAGE), 1% (random pages) or 100% of it written by
 *             the CPU since the last harvest (the writes are not timed).
 *             raw: a PAGEMAP_SCAN loop with PM_SCAN_WP_MATCHING |
 *             PM_SCAN_CHECK_WPASYNC, category WRITTEN, 512 regions a call
 *             (the floor). table: ps_uffd_harvest() of an async attachment
 *             to a bare page table whose 262144 entries are mapped, into an
 *             address array. space: the same attached to a space (the
 *             kernel's pages go through the space's dirty log and
 *             ps_space_harvest() with PS_HARVEST_REARM).
 *   harvest, 1%-device-written
 *             the space attachment again, the same 1% of pages marked by
 *             ps_space_mark_dirty() (a device's writes, which the kernel
 *             does not see) instead of written by the CPU. These go through
 *             the space's dirty log: a pin check per page and a notifier
 *             invalidation (event SOFT_DIRTY) per run of pages, which CPU
 *             writes do not need. notifier: those invalidations alone
 *             (ps_notifier_invalidate_start/end over the same runs), their
 *             share of the harvest. No target: the raw loop has no such
 *             pages.
 *   fault     sync mode: a thread writes to a protected page and waits for
 *             the handler; per write. raw: a handler thread that polls the
 *             userfaultfd, reads the message and un-protects the page
 *             (UFFDIO_WRITEPROTECT mode 0, which wakes the writer). bridge:
 *             an attachment with PS_UFFD_THREAD (the table is updated too).
 *
 * Needs Linux with userfaultfd WP_ASYNC / WP_UNPOPULATED and PAGEMAP_SCAN,
 * and permission to use userfaultfd; otherwise it says why and exits 0.
 *
 * Target (issue 7): harvest through the bridge at most 1.2x the raw loop,
 * at 1% and 100% written. Implementations run interleaved run by run, and
 * ratios are medians of per-run ratios (the machine is shared).
 */
#include <pagestate/space.h>
#include <pagestate/uffd.h>

#include "harness.h"

#ifdef __linux__
#include "../lib/linux-uapi.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define NPAGES (UINT64_C(1) << 18) /* 1 GiB */
#define SPAN (NPAGES * PG)
#define LBASE (UINT64_C(1) << 32)
#define RAW_VEC 512
#define FAULT_PAGES 16384 /* 64 MiB for the fault case */
#define MAX_RUNS 64

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void keep(uint64_t v)
{
	__asm__ __volatile__("" : : "r"(v) : "memory");
}

static uint8_t *map_populated(uint64_t len)
{
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		die("mmap");
	(void)madvise(m, len, MADV_NOHUGEPAGE);
	for (uint64_t i = 0; i < len / PG; i++)
		m[i * PG] = 1;
	return m;
}

/* --- harvest -------------------------------------------------------------- */

static uint64_t *dirty; /* page indexes written before each harvest */
static uint64_t ndirty;
static uint64_t *addrs; /* the bridge's output */
static int pagemap = -1;

struct harvester {
	const char *name;
	uint8_t *mem;
	int uffd;	   /* raw */
	struct ps_uffd *u; /* bridge */
	struct ps_pgtable *t;
	struct ps_space *s;
};

static void choose(double fraction)
{
	uint64_t x = 0x9e3779b97f4a7c15ull,
		 want = (uint64_t)(NPAGES * fraction);
	uint8_t *bits = calloc(NPAGES / 8, 1);

	if (!bits)
		die("calloc");
	for (ndirty = 0; ndirty < want;) {
		uint64_t i;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		i = want == NPAGES ? ndirty
				   : (x * 0x2545f4914f6cdd1dull) % NPAGES;
		if (bits[i / 8] & (1u << (i % 8)))
			continue;
		bits[i / 8] |= (uint8_t)(1u << (i % 8));
		ndirty++;
	}
	ndirty = 0;
	for (uint64_t i = 0; i < NPAGES; i++)
		if (bits[i / 8] & (1u << (i % 8)))
			dirty[ndirty++] = i;
	free(bits);
}

static uint64_t raw_harvest(struct harvester *h)
{
	static struct page_region vec[RAW_VEC];
	struct pm_scan_arg a;
	uint64_t pages = 0;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	a.start = (uintptr_t)h->mem;
	a.end = (uintptr_t)h->mem + SPAN;
	a.vec = (uintptr_t)vec;
	a.vec_len = RAW_VEC;
	a.category_mask = PAGE_IS_WRITTEN;
	a.return_mask = PAGE_IS_WRITTEN;
	while (a.start < a.end) {
		long n = ioctl(pagemap, PAGEMAP_SCAN, &a);

		if (n < 0)
			die("PAGEMAP_SCAN");
		for (long i = 0; i < n; i++)
			pages += (vec[i].end - vec[i].start) / PG;
		a.start = a.walk_end;
	}
	return pages;
}

static uint64_t bridge_harvest(struct harvester *h)
{
	uint64_t n;

	if (ps_uffd_harvest(h->u, LBASE, SPAN, addrs, NPAGES, &n, NULL))
		die("ps_uffd_harvest");
	return n;
}

/* Write the chosen pages (untimed), then time one harvest. */
static double harvest_once(struct harvester *h)
{
	uint64_t got;
	double t0;

	for (uint64_t i = 0; i < ndirty; i++)
		h->mem[dirty[i] * PG] ^= 1;
	t0 = bench_now_ns();
	got = h->u ? bridge_harvest(h) : raw_harvest(h);
	t0 = bench_now_ns() - t0;
	if (got != ndirty) {
		fprintf(stderr, "%s harvested %llu pages, %llu written\n",
			h->name, (unsigned long long)got,
			(unsigned long long)ndirty);
		exit(1);
	}
	return t0;
}

static void harvester_raw(struct harvester *h)
{
	struct uffdio_api api;
	struct uffdio_register reg;
	struct uffdio_writeprotect wp;

	memset(h, 0, sizeof(*h));
	h->name = "raw";
	h->mem = map_populated(SPAN);
	h->uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (h->uffd < 0)
		die("userfaultfd");
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)h->mem;
	reg.range.len = SPAN;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	memset(&wp, 0, sizeof(wp));
	wp.range = reg.range;
	wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
	if (ioctl(h->uffd, UFFDIO_API, &api) ||
	    ioctl(h->uffd, UFFDIO_REGISTER, &reg) ||
	    ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp))
		die("raw userfaultfd set-up");
}

static void harvester_bridge(struct harvester *h, bool space)
{
	struct ps_uffd_config c;
	const char *why = NULL;
	int rc;

	memset(h, 0, sizeof(*h));
	h->name = space ? "space" : "table";
	h->mem = map_populated(SPAN);
	if (space) {
		struct ps_space_config sc;

		memset(&sc, 0, sizeof(sc));
		sc.size = LBASE + SPAN;
		sc.nframes = NPAGES;
		if (ps_space_create(&sc, &h->s) ||
		    ps_space_map_range(h->s, LBASE, SPAN, 0, PS_MAP_WRITE,
				       NULL))
			die("space set-up");
		h->t = ps_space_pgtable(h->s);
	} else {
		h->t = ps_pgtable_create();
		if (!h->t ||
		    ps_pgtable_map(h->t, LBASE, SPAN, 0, PS_PTE_MAYWRITE))
			die("table set-up");
	}
	memset(&c, 0, sizeof(c));
	c.host = h->mem;
	c.addr = LBASE;
	c.len = SPAN;
	c.flags = PS_UFFD_ASYNC;
	c.why = &why;
	rc = space ? ps_uffd_attach_space(h->s, &c, &h->u)
		   : ps_uffd_attach_pgtable(h->t, &c, &h->u);
	if (rc || ps_uffd_protect(h->u, LBASE, SPAN)) {
		fprintf(stderr, "attach: %s\n", why ? why : "protect");
		exit(1);
	}
}

static void harvester_free(struct harvester *h)
{
	if (h->u)
		(void)ps_uffd_detach(h->u);
	if (h->s)
		(void)ps_space_destroy(h->s);
	else if (h->t)
		ps_pgtable_destroy(h->t);
	if (h->uffd > 0)
		close(h->uffd);
	munmap(h->mem, SPAN);
}

/* Mark the chosen pages as a device's writes (untimed), time one harvest. */
static double device_harvest_once(struct harvester *h)
{
	uint64_t got;
	double t0;

	for (uint64_t i = 0; i < ndirty; i++) /* false once dirty */
		(void)ps_space_mark_dirty(h->s, LBASE + dirty[i] * PG);
	t0 = bench_now_ns();
	got = bridge_harvest(h);
	t0 = bench_now_ns() - t0;
	if (got != ndirty) {
		fprintf(stderr, "device harvest: %llu pages, %llu marked\n",
			(unsigned long long)got, (unsigned long long)ndirty);
		exit(1);
	}
	return t0;
}

/* The notifier invalidations of the chosen pages' runs, alone. */
static double invalidations_once(struct harvester *h)
{
	struct ps_notifier *n = ps_space_notifier(h->s);
	double t0 = bench_now_ns();

	for (uint64_t i = 0; i < ndirty;) {
		uint64_t j = i + 1;

		while (j < ndirty && dirty[j] == dirty[j - 1] + 1)
			j++;
		if (!ps_notifier_invalidate_start(n, LBASE + dirty[i] * PG,
						  (j - i) * PG,
						  PS_NOTIFIER_SOFT_DIRTY, 0))
			(void)ps_notifier_invalidate_end(n,
							 LBASE + dirty[i] * PG,
							 (j - i) * PG);
		i = j;
	}
	return bench_now_ns() - t0;
}

/* --- sync fault round trip ------------------------------------------------ */

struct faulter {
	const char *name;
	uint8_t *mem;
	int uffd;	   /* raw */
	struct ps_uffd *u; /* bridge */
	struct ps_pgtable *t;
	pthread_t handler;  /* raw */
	_Atomic(bool) stop; /* raw */
};

static void *raw_handler(void *arg)
{
	struct faulter *f = arg;
	struct pollfd p = {.fd = f->uffd, .events = POLLIN};

	while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
		struct uffd_msg msg;
		struct uffdio_writeprotect wp;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (read(f->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		memset(&wp, 0, sizeof(wp));
		wp.range.start = msg.arg.pagefault.address & ~(PG - 1);
		wp.range.len = PG;
		if (ioctl(f->uffd, UFFDIO_WRITEPROTECT, &wp))
			die("UFFDIO_WRITEPROTECT");
	}
	return NULL;
}

static void faulter_protect(struct faulter *f)
{
	if (f->u) {
		if (ps_uffd_protect(f->u, LBASE, FAULT_PAGES * PG))
			die("ps_uffd_protect");
	} else {
		struct uffdio_writeprotect wp;

		memset(&wp, 0, sizeof(wp));
		wp.range.start = (uintptr_t)f->mem;
		wp.range.len = FAULT_PAGES * PG;
		wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
		if (ioctl(f->uffd, UFFDIO_WRITEPROTECT, &wp))
			die("UFFDIO_WRITEPROTECT");
	}
}

/* Protect (untimed), then time @n writes, each a sync fault round trip. */
static double fault_once(struct faulter *f, uint64_t n)
{
	double t0;

	faulter_protect(f);
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++)
		f->mem[i * PG] ^= 1;
	return bench_now_ns() - t0;
}

static void faulter_init(struct faulter *f, bool bridge)
{
	memset(f, 0, sizeof(*f));
	f->name = bridge ? "bridge" : "raw";
	f->mem = map_populated(FAULT_PAGES * PG);
	if (bridge) {
		struct ps_uffd_config c;

		f->t = ps_pgtable_create();
		if (!f->t || ps_pgtable_map(f->t, LBASE, FAULT_PAGES * PG, 0,
					    PS_PTE_MAYWRITE))
			die("table set-up");
		memset(&c, 0, sizeof(c));
		c.host = f->mem;
		c.addr = LBASE;
		c.len = FAULT_PAGES * PG;
		c.flags = PS_UFFD_THREAD;
		if (ps_uffd_attach_pgtable(f->t, &c, &f->u))
			die("attach");
	} else {
		struct uffdio_api api;
		struct uffdio_register reg;

		f->uffd = (int)syscall(__NR_userfaultfd,
				       O_CLOEXEC | O_NONBLOCK);
		memset(&api, 0, sizeof(api));
		api.api = UFFD_API;
		memset(&reg, 0, sizeof(reg));
		reg.range.start = (uintptr_t)f->mem;
		reg.range.len = FAULT_PAGES * PG;
		reg.mode = UFFDIO_REGISTER_MODE_WP;
		if (f->uffd < 0 || ioctl(f->uffd, UFFDIO_API, &api) ||
		    ioctl(f->uffd, UFFDIO_REGISTER, &reg))
			die("raw userfaultfd set-up");
		if (pthread_create(&f->handler, NULL, raw_handler, f))
			die("pthread_create");
	}
}

static void faulter_free(struct faulter *f)
{
	if (f->u) {
		(void)ps_uffd_detach(f->u);
		ps_pgtable_destroy(f->t);
	} else {
		atomic_store_explicit(&f->stop, true, memory_order_relaxed);
		pthread_join(f->handler, NULL);
		close(f->uffd);
	}
	munmap(f->mem, FAULT_PAGES * PG);
}

/* --- driver --------------------------------------------------------------- */

/*
 * Print each implementation's times and its per-run ratio to the first
 * (runs interleaved: median [min..max] of the ratios); ratio[k] receives
 * implementation k's ratio statistics (NULL: not wanted).
 */
static void report(const struct bench_opts *o, const char *group,
		   const char *op, const char *unit, double scale,
		   const char *const *names, int n, double t[][MAX_RUNS],
		   unsigned int runs, struct bench_stats *ratio)
{
	static const struct bench_stats none = {0, 0, 0, 0};

	for (int k = 0; k < n; k++) {
		double r[MAX_RUNS], v[MAX_RUNS];
		struct bench_stats st, rs = none;

		for (unsigned int i = 0; i < runs; i++) {
			v[i] = t[k][i] * scale;
			r[i] = t[k][i] / t[0][i];
		}
		if (k)
			rs = bench_stats_of(r, runs);
		st = bench_stats_of(v, runs);
		bench_emit_ratio(o, group, op, names[k], unit, st, rs, none,
				 NULL);
		if (ratio)
			ratio[k] = rs;
	}
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	const char *why = NULL;
	struct bench_stats worst_table = {0, 0, 0, 0},
			   worst_space = worst_table;
	double fault_ratio = 0;
	double inval_share = 0;
	unsigned int runs;
	int rc;

	bench_init(&o, argc, argv, "uffd", NULL, NULL, NULL);
	runs = o.runs < MAX_RUNS ? o.runs : MAX_RUNS;
	rc = ps_uffd_probe(PS_UFFD_ASYNC, &why);
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (rc || pagemap < 0) {
		bench_note(&o,
			   "skipped: the kernel or this process cannot use "
			   "the userfaultfd bridge (%s: %s)",
			   why ? why : "/proc/self/pagemap",
			   strerror(rc ? -rc : errno));
		return 0;
	}
	dirty = malloc(NPAGES * sizeof(*dirty));
	addrs = malloc(NPAGES * sizeof(*addrs));
	if (!dirty || !addrs)
		die("malloc");

	if (bench_selected(&o, "harvest", "1GiB")) {
		struct harvester h[3];
		const char *const names[] = {"raw", "table", "space"};

		harvester_raw(&h[0]);
		harvester_bridge(&h[1], false);
		harvester_bridge(&h[2], true);
		for (int pct = 0; pct < 2; pct++) {
			double t[3][MAX_RUNS];
			struct bench_stats ratio[3];
			char op[32];

			choose(pct ? 1.0 : 0.01);
			for (int k = 0; k < 3; k++)
				(void)harvest_once(&h[k]); /* warm-up */
			for (unsigned int r = 0; r < runs; r++)
				for (int k = 0; k < 3; k++)
					t[k][r] = harvest_once(&h[k]);
			snprintf(op, sizeof(op), "%s-written",
				 pct ? "100%" : "1%");
			report(&o, "harvest", op, "us", 1e-3, names, 3, t, runs,
			       ratio);
			if (ratio[1].median > worst_table.median)
				worst_table = ratio[1];
			if (ratio[2].median > worst_space.median)
				worst_space = ratio[2];
		}
		{
			double d[MAX_RUNS], v[MAX_RUNS], r[MAX_RUNS];
			struct bench_stats sd, sv;

			choose(0.01);
			(void)device_harvest_once(&h[2]);
			(void)invalidations_once(&h[2]);
			for (unsigned int k = 0; k < runs; k++) {
				d[k] = device_harvest_once(&h[2]) * 1e-3;
				v[k] = invalidations_once(&h[2]) * 1e-3;
				r[k] = v[k] / d[k];
			}
			inval_share = bench_stats_of(r, runs).median;
			sd = bench_stats_of(d, runs);
			sv = bench_stats_of(v, runs);
			bench_emit(&o, "harvest", "1%-device-written", "space",
				   "us", sd, 0, 0, NULL);
			bench_emit(&o, "harvest", "1%-device-written",
				   "notifier", "us", sv, 0, inval_share,
				   "space");
		}
		for (int k = 0; k < 3; k++)
			harvester_free(&h[k]);
	}

	if (bench_selected(&o, "fault", "sync-round-trip")) {
		struct faulter f[2];
		const char *const names[] = {"raw", "bridge"};
		uint64_t n = bench_iters(&o, FAULT_PAGES);
		double t[2][MAX_RUNS];
		struct bench_stats ratio[2];

		if (n > FAULT_PAGES)
			n = FAULT_PAGES;
		faulter_init(&f[0], false);
		faulter_init(&f[1], true);
		for (int k = 0; k < 2; k++)
			(void)fault_once(&f[k], n);
		for (unsigned int r = 0; r < runs; r++)
			for (int k = 0; k < 2; k++)
				t[k][r] = fault_once(&f[k], n) / (double)n;
		report(&o, "fault", "sync-round-trip", "ns/op", 1, names, 2, t,
		       runs, ratio);
		fault_ratio = ratio[1].median;
		for (int k = 0; k < 2; k++)
			faulter_free(&f[k]);
	}

	if (worst_table.runs) {
		bench_target_ratio(&o,
				   "harvest bridge(table)/raw PAGEMAP_SCAN "
				   "(worst of 1%, 100%)",
				   worst_table, "<=", 1.2);
		bench_target_ratio(&o,
				   "harvest bridge(space)/raw PAGEMAP_SCAN "
				   "(worst of 1%, 100%)",
				   worst_space, "<=", 1.2);
	}
	if (inval_share > 0)
		bench_note(&o,
			   "space, 1%% device-written: the notifier "
			   "invalidations are %.0f%% of the harvest (CPU "
			   "writes need none; no target)",
			   inval_share * 100);
	if (fault_ratio > 0)
		bench_note(&o,
			   "sync fault round trip bridge/raw: %.2fx (no "
			   "target; the bridge also updates the table)",
			   fault_ratio);
	keep(ndirty);
	close(pagemap);
	free(dirty);
	free(addrs);
	return 0;
}

#else /* !__linux__ */

int main(int argc, char **argv)
{
	struct bench_opts o;

	bench_init(&o, argc, argv, "uffd", NULL, NULL, NULL);
	bench_note(&o, "skipped: the userfaultfd bridge needs Linux");
	return 0;
}

#endif
