// SPDX-License-Identifier: MIT
/*
 * bench/bench-space.c - the address space against its floors.
 *
 *   pin_range + unpin   1 GiB (262144 pages) pinned and unpinned through
 *                       ps_space_pin_range()/ps_space_unpin(), per page,
 *                       against the floor: for each page a page-table
 *                       lookup (in one read-side section) and a bare
 *                       ps_page_try_pin()/ps_page_unpin() of its frame, with
 *                       no re-check, no all-or-nothing bookkeeping;
 *   secondary map       ps_space_map_secondary() (read mapping; trivial lock
 *                       and install callbacks) per page, against a raw
 *                       checked lookup (ps_pgtable_get());
 *   write fault         ps_space_fault(PS_ACCESS_WRITE) per page of 64 MiB,
 *                       against the page table's own ps_pgtable_fault():
 *                       on entries already writable (the lock-free path),
 *                       and on clean, write-protected entries that the fault
 *                       makes writable (under the frame's LOCKED bit, dirty
 *                       first; the floor is the bare resolving CAS). The
 *                       pages are protected again between rounds, outside
 *                       the time (write-back for the space, which cleans
 *                       them too; mprotect for the floor);
 *   harvest             a 1 TiB space, sparse: 1,000 random pages mapped
 *                       and marked dirty, harvested with ps_space_harvest()
 *                       against a scan-and-clear of a flat 1-bit-per-page
 *                       bitmap of the same space (32 MiB); then the same
 *                       harvest for spaces of 1 GiB .. 1 TiB (harvest time
 *                       against space size).
 *
 * Targets (issue 5): harvest of 1 TiB with 1,000 dirty pages under 0.1 ms,
 * and at least 10x faster than the flat bitmap scan.
 */
#include <pagestate/prot.h>
#include <pagestate/space.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define GIB (UINT64_C(1) << 30)

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench-space: %s: %d\n", what, rc);
	exit(1);
}

static struct ps_space *make_space(uint64_t size, uint64_t nframes)
{
	struct ps_space_config cfg;
	struct ps_space *s;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = size;
	cfg.nframes = nframes;
	rc = ps_space_create(&cfg, &s);
	if (rc)
		die("ps_space_create", rc);
	return s;
}

/* --- pin_range / unpin ---------------------------------------------------- */

struct pin_arg {
	struct ps_space *s;
	uint64_t npages;
	uint64_t *frames;
};

static double pin_space(void *arg, uint64_t iters)
{
	struct pin_arg *a = arg;
	double t0 = bench_now_ns();

	for (uint64_t r = 0; r < iters; r++) {
		int rc = ps_space_pin_range(a->s, 0, a->npages * PG, 0,
					    a->frames);

		if (rc)
			die("pin_range", rc);
		ps_space_unpin(a->s, a->frames, a->npages, 0);
	}
	return (bench_now_ns() - t0) / (double)a->npages;
}

static double pin_floor(void *arg, uint64_t iters)
{
	struct pin_arg *a = arg;
	struct ps_pgtable *pt = ps_space_pgtable(a->s);
	double t0 = bench_now_ns();

	for (uint64_t r = 0; r < iters; r++) {
		ps_pgtable_read_lock();
		for (uint64_t i = 0; i < a->npages; i++) {
			ps_pte_t e = ps_pgtable_lookup(pt, i * PG);

			a->frames[i] = ps_pte_frame(e);
			if (!ps_page_try_pin(ps_space_page(a->s, a->frames[i])))
				die("try_pin", -1);
		}
		ps_pgtable_read_unlock();
		for (uint64_t i = 0; i < a->npages; i++)
			(void)ps_page_unpin(ps_space_page(a->s, a->frames[i]));
	}
	return (bench_now_ns() - t0) / (double)a->npages;
}

/* --- the secondary-map helper --------------------------------------------- */

static void nop_lock(void *ctx)
{
	(void)ctx;
}

static int nop_install(void *ctx, uint64_t addr, uint64_t frame, bool write)
{
	uint64_t *sink = ctx;

	(void)write;
	*sink += addr ^ frame;
	return 0;
}

static const struct ps_secondary_ops nop_ops = {nop_lock, nop_lock,
						nop_install};

static bool never_called(struct ps_interval *sub,
			 const struct ps_invalidation *inv, uint64_t cur_seq,
			 void *priv)
{
	(void)inv;
	(void)priv;
	ps_interval_set_seq(sub, cur_seq);
	return true;
}

static const struct ps_interval_ops sub_ops = {.invalidate = never_called};

struct sec_arg {
	struct ps_space *s;
	struct ps_interval sub;
	uint64_t npages, sink;
};

static double secondary_map(void *arg, uint64_t iters)
{
	struct sec_arg *a = arg;
	double t0 = bench_now_ns();

	for (uint64_t r = 0; r < iters; r++)
		for (uint64_t i = 0; i < a->npages; i++)
			if (ps_space_map_secondary(a->s, &a->sub, i * PG, false,
						   &nop_ops, &a->sink))
				die("map_secondary", -1);
	return (bench_now_ns() - t0) / (double)a->npages;
}

static double raw_lookup(void *arg, uint64_t iters)
{
	struct sec_arg *a = arg;
	struct ps_pgtable *pt = ps_space_pgtable(a->s);
	double t0 = bench_now_ns();

	for (uint64_t r = 0; r < iters; r++)
		for (uint64_t i = 0; i < a->npages; i++) {
			ps_pte_t e;

			if (ps_pgtable_get(pt, i * PG, &e))
				die("get", -1);
			a->sink += e;
		}
	return (bench_now_ns() - t0) / (double)a->npages;
}

/* --- write faults --------------------------------------------------------- */

struct fault_arg {
	struct ps_space *s;
	uint64_t npages;
	bool floor; /* the page table's own fault instead of the space's */
};

static enum ps_fault write_fault(struct fault_arg *a, uint64_t addr)
{
	if (a->floor)
		return ps_pgtable_fault(ps_space_pgtable(a->s), addr,
					PS_ACCESS_WRITE);
	return ps_space_fault(a->s, addr, PS_ACCESS_WRITE);
}

static double fault_writable(void *arg, uint64_t iters)
{
	struct fault_arg *a = arg;
	double t0 = bench_now_ns();

	for (uint64_t r = 0; r < iters; r++)
		for (uint64_t i = 0; i < a->npages; i++)
			if (write_fault(a, i * PG) != PS_FAULT_OK)
				die("write fault", -1);
	return (bench_now_ns() - t0) / (double)a->npages;
}

static int wb_discard(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	(void)ctx;
	(void)addr;
	(void)frame;
	(void)pinned;
	return 0;
}

/*
 * Write-protect every page again (MAYWRITE stays), and clean the frames
 * the space's faults dirtied, so that each of its faults is a real
 * clean-to-dirty transition.
 */
static void reprotect(struct fault_arg *a)
{
	struct ps_writeback_stats st;
	int rc;

	rc = ps_prot_mprotect(a->s, 0, a->npages * PG, PS_PROT_READ);
	if (!rc)
		rc = ps_prot_mprotect(a->s, 0, a->npages * PG,
				      PS_PROT_READ | PS_PROT_WRITE);
	if (!rc && !a->floor)
		rc = ps_space_writeback(a->s, 0, a->npages * PG, PS_WB_CLEAN,
					wb_discard, NULL, &st);
	if (rc)
		die("reprotect", rc);
}

/* Times the faults only; the pages are protected again outside the time. */
static double fault_resolve(void *arg, uint64_t iters)
{
	struct fault_arg *a = arg;
	double total = 0;

	for (uint64_t r = 0; r < iters; r++) {
		double t0;

		reprotect(a);
		t0 = bench_now_ns();
		for (uint64_t i = 0; i < a->npages; i++)
			if (write_fault(a, i * PG) != PS_FAULT_OK)
				die("write fault", -1);
		total += bench_now_ns() - t0;
		if (!a->floor &&
		    !ps_page_test_flags(ps_space_page(a->s, a->npages - 1),
					PS_PAGE_DIRTY))
			die("fault did not dirty", -1);
	}
	return total / (double)a->npages;
}

/* --- harvest -------------------------------------------------------------- */

struct harvest_arg {
	struct ps_space *s;
	uint64_t size, ndirty;
	uint64_t *pages; /* the dirty pages (random, mapped) */
	uint64_t *out;
	uint64_t *flat; /* 1 bit per page of the space */
};

static void mark_all(struct harvest_arg *a)
{
	for (uint64_t i = 0; i < a->ndirty; i++)
		(void)ps_space_mark_dirty(a->s, a->pages[i] * PG);
}

/* Times one harvest per iteration; the marks are re-made outside the time. */
static double harvest_space(void *arg, uint64_t iters)
{
	struct harvest_arg *a = arg;
	double total = 0;

	for (uint64_t r = 0; r < iters; r++) {
		uint64_t n, resume;
		double t0;
		int rc;

		mark_all(a);
		t0 = bench_now_ns();
		rc = ps_space_harvest(a->s, 0, a->size, 0, a->out, a->ndirty,
				      &n, &resume);
		total += bench_now_ns() - t0;
		if (rc || n != a->ndirty)
			die("harvest", rc ? rc : (int)n);
	}
	return total; /* bench_measure() divides by iters */
}

static double harvest_flat(void *arg, uint64_t iters)
{
	struct harvest_arg *a = arg;
	uint64_t words = a->size / PG / 64;
	double total = 0;

	for (uint64_t r = 0; r < iters; r++) {
		uint64_t n = 0;
		double t0;

		for (uint64_t i = 0; i < a->ndirty; i++)
			a->flat[a->pages[i] / 64] |= UINT64_C(1)
						     << (a->pages[i] % 64);
		t0 = bench_now_ns();
		for (uint64_t w = 0; w < words; w++) {
			uint64_t x = a->flat[w];

			if (!x)
				continue;
			a->flat[w] = 0;
			while (x) {
				a->out[n++ % a->ndirty] =
					(w * 64 +
					 (uint64_t)__builtin_ctzll(x)) *
					PG;
				x &= x - 1;
			}
		}
		total += bench_now_ns() - t0;
		if (n != a->ndirty)
			die("flat harvest", (int)n);
	}
	return total; /* bench_measure() divides by iters */
}

/* A space of @size with @ndirty random pages mapped (distinct frames). */
static void harvest_setup(struct harvest_arg *a, uint64_t size, uint64_t ndirty,
			  unsigned seed)
{
	uint64_t npages = size / PG;

	memset(a, 0, sizeof(*a));
	a->size = size;
	a->ndirty = ndirty;
	a->s = make_space(size, ndirty);
	a->pages = calloc(ndirty, sizeof(*a->pages));
	a->out = calloc(ndirty, sizeof(*a->out));
	if (!a->pages || !a->out)
		die("calloc", -1);
	srand(seed);
	for (uint64_t i = 0; i < ndirty;) {
		uint64_t p = (((uint64_t)rand() << 31) ^ (uint64_t)rand()) %
			     npages;

		if (ps_space_map(a->s, p * PG, i, PS_MAP_WRITE))
			continue; /* taken already: draw again */
		a->pages[i++] = p;
	}
}

static void harvest_teardown(struct harvest_arg *a)
{
	(void)ps_space_destroy(a->s);
	free(a->pages);
	free(a->out);
	free(a->flat);
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	const uint64_t npages = GIB / PG;
	struct bench_stats st[2];
	void *args[1];

	bench_init(&o, argc, argv, "space", NULL, NULL, NULL);

	if (bench_selected(&o, "pin", "pin_range+unpin")) {
		struct pin_arg a = {make_space(GIB, npages), npages, NULL};
		int rc = ps_space_map_range(a.s, 0, GIB, 0, PS_MAP_WRITE);

		if (rc)
			die("map_range", rc);
		a.frames = calloc(npages, sizeof(*a.frames));
		args[0] = &a;
		st[0] = bench_measure(&o, 1, pin_floor, args,
				      bench_iters(&o, 3));
		st[1] = bench_measure(&o, 1, pin_space, args,
				      bench_iters(&o, 3));
		bench_emit(&o, "pin 1 GiB", "pin_range+unpin", "floor",
			   "ns/page", st[0], 0, 0, NULL);
		bench_emit(&o, "pin 1 GiB", "pin_range+unpin", "pagestate",
			   "ns/page", st[1], st[1].median / st[0].median, 0,
			   NULL);
		free(a.frames);
		(void)ps_space_destroy(a.s);
	}

	if (bench_selected(&o, "secondary", "map_secondary")) {
		struct sec_arg a;
		int rc;

		memset(&a, 0, sizeof(a));
		a.npages = 4096;
		a.s = make_space(GIB, a.npages);
		rc = ps_space_map_range(a.s, 0, a.npages * PG, 0, 0);
		if (!rc)
			rc = ps_interval_insert(&a.sub, ps_space_notifier(a.s),
						0, a.npages * PG, &sub_ops,
						NULL);
		if (rc)
			die("secondary setup", rc);
		args[0] = &a;
		st[0] = bench_measure(&o, 1, raw_lookup, args,
				      bench_iters(&o, 100));
		st[1] = bench_measure(&o, 1, secondary_map, args,
				      bench_iters(&o, 100));
		bench_emit(&o, "secondary", "map_secondary", "raw lookup",
			   "ns/page", st[0], 0, 0, NULL);
		bench_emit(&o, "secondary", "map_secondary", "pagestate",
			   "ns/page", st[1], st[1].median / st[0].median, 0,
			   NULL);
		ps_interval_remove(&a.sub);
		(void)ps_space_destroy(a.s);
	}

	if (bench_selected(&o, "write fault", NULL)) {
		static const struct {
			const char *op;
			bench_loop_fn fn;
		} cases[] = {
			{"writable entry", fault_writable},
			{"makes writable", fault_resolve},
		};
		struct fault_arg a = {NULL, 16384, false};
		int rc;

		a.s = make_space(a.npages * PG, a.npages);
		rc = ps_space_map_range(a.s, 0, a.npages * PG, 0, PS_MAP_WRITE);
		if (rc)
			die("map_range", rc);
		args[0] = &a;
		for (size_t i = 0; i < 2; i++) {
			if (!bench_selected(&o, "write fault", cases[i].op))
				continue;
			a.floor = true;
			(void)fault_writable(&a, 1); /* every entry writable */
			st[0] = bench_measure(&o, 1, cases[i].fn, args,
					      bench_iters(&o, 20));
			a.floor = false;
			st[1] = bench_measure(&o, 1, cases[i].fn, args,
					      bench_iters(&o, 20));
			bench_emit(&o, "write fault", cases[i].op, "page table",
				   "ns/page", st[0], 0, 0, NULL);
			bench_emit(&o, "write fault", cases[i].op, "pagestate",
				   "ns/page", st[1],
				   st[1].median / st[0].median, 0, NULL);
		}
		(void)ps_space_destroy(a.s);
	}

	if (bench_selected(&o, "harvest", "1 TiB, 1000 dirty")) {
		struct harvest_arg a;

		harvest_setup(&a, 1024 * GIB, 1000, 1);
		a.flat = calloc(a.size / PG / 64, sizeof(uint64_t));
		if (!a.flat)
			die("calloc", -1);
		args[0] = &a;
		st[0] = bench_measure(&o, 1, harvest_flat, args,
				      bench_iters(&o, 20));
		st[1] = bench_measure(&o, 1, harvest_space, args,
				      bench_iters(&o, 20));
		bench_emit(&o, "harvest", "1 TiB, 1000 dirty", "flat bitmap",
			   "us",
			   (struct bench_stats){st[0].median / 1e3,
						st[0].min / 1e3,
						st[0].max / 1e3, st[0].runs},
			   0, 0, NULL);
		bench_emit(&o, "harvest", "1 TiB, 1000 dirty", "pagestate",
			   "us",
			   (struct bench_stats){st[1].median / 1e3,
						st[1].min / 1e3,
						st[1].max / 1e3, st[1].runs},
			   0, st[1].median / st[0].median, "flat bitmap");
		if (!o.filter) {
			bench_target(&o, "harvest 1 TiB / 1000 dirty (us)",
				     st[1].median / 1e3, "<=", 100);
			bench_target(&o, "flat bitmap scan / harvest (x)",
				     st[0].median / st[1].median, ">=", 10);
		}
		harvest_teardown(&a);
	}

	if (bench_selected(&o, "harvest by size", NULL)) {
		static const uint64_t sizes_gib[] = {1, 16, 256, 1024};

		bench_note(&o, "harvest time against space size, 1000 dirty "
			       "pages each");
		for (size_t i = 0; i < sizeof(sizes_gib) / sizeof(*sizes_gib);
		     i++) {
			struct harvest_arg a;
			char label[32];

			harvest_setup(&a, sizes_gib[i] * GIB, 1000, 7);
			args[0] = &a;
			st[1] = bench_measure(&o, 1, harvest_space, args,
					      bench_iters(&o, 20));
			snprintf(label, sizeof(label), "%llu GiB",
				 (unsigned long long)sizes_gib[i]);
			bench_emit(&o, "harvest by size", label, "pagestate",
				   "us",
				   (struct bench_stats){st[1].median / 1e3,
							st[1].min / 1e3,
							st[1].max / 1e3,
							st[1].runs},
				   0, 0, NULL);
			harvest_teardown(&a);
		}
	}
	return 0;
}
