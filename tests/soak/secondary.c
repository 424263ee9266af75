// SPDX-License-Identifier: MIT
/*
 * tests/soak/secondary.c - secondary mappings: a simulated IOMMU cache
 * filled by the space's secondary-map helper (ps_space_map_secondary()),
 * and each vCPU thread's TLB, which makes a CPU write atomic with respect
 * to invalidations (seed 003's loop: read_begin, fault, lock, retry check,
 * write the bytes, unlock), as a hardware TLB would. Invariant (e): every
 * IOMMU entry, read under the IOMMU's lock, maps the frame the space maps
 * at its address; a writable one has a dirty frame and a MAYWRITE entry;
 * none maps a private frame. Checked at every install, in every
 * invalidation callback (before the primary mapping changes) and by the
 * checker thread's sweeps.
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

struct ient {
	int64_t frame; /* -1: nothing cached */
	bool write;
};

static struct {
	pthread_mutex_t lock;
	struct ps_interval sub[NREG];
	struct ient *e; /* per page, under lock */
	_Atomic uint64_t writes;
} iommu = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* (e): the cached translation of @addr agrees with the space. Under lock. */
static void check_ient(uint64_t addr, const struct ient *ent, const char *where)
{
	uint64_t frame = (uint64_t)ent->frame, w;
	ps_pte_t e = 0;

	(void)ps_pgtable_get(g.pt, addr, &e);
	if (!ps_pte_is_present(e) || ps_pte_frame(e) != frame)
		violation("(e) secondary mapping stale", 0, addr, frame,
			  "%s: the IOMMU maps %#" PRIx64 " to frame %" PRIu64
			  " but the space's entry there is %#" PRIx64,
			  where, addr, frame, e);
	w = ps_page_load(pw(frame));
	if (ent->write && !(w & PS_PAGE_DIRTY))
		violation("(e) secondary mapping writable on a clean frame", 0,
			  addr, frame,
			  "%s: the IOMMU maps %#" PRIx64 " writable to frame "
			  "%" PRIu64 ", which is not DIRTY (a device write "
			  "now escapes write-back)",
			  where, addr, frame);
	if (ent->write && !ps_pte_may_write(e))
		violation("(e) secondary mapping writable without MAYWRITE", 0,
			  addr, frame,
			  "%s: the IOMMU maps %#" PRIx64 " writable but the "
			  "entry %#" PRIx64 " is read-only (mprotect)",
			  where, addr, e);
	if (w & PS_PAGE_PRIVATE)
		violation("(e) secondary mapping of a private frame", 0, addr,
			  frame,
			  "%s: the IOMMU maps %#" PRIx64 " to private frame "
			  "%" PRIu64,
			  where, addr, frame);
}

static bool iommu_invalidate(struct ps_interval *sub,
			     const struct ps_invalidation *inv,
			     uint64_t cur_seq, void *priv)
{
	uint64_t first = inv->start / PG, last = ps_invalidation_last(inv) / PG;

	(void)priv;
	pthread_mutex_lock(&iommu.lock);
	ps_interval_set_seq(sub, cur_seq);
	if (last >= g.npages)
		last = g.npages - 1;
	for (uint64_t p = first; p <= last; p++) {
		if (iommu.e[p].frame < 0)
			continue;
		/* Before the primary mapping changes: still consistent. */
		check_ient(p * PG, &iommu.e[p], "invalidation callback");
		iommu.e[p].frame = -1;
	}
	pthread_mutex_unlock(&iommu.lock);
	return true;
}

static const struct ps_interval_ops iommu_ops = {
	.invalidate = iommu_invalidate,
};

void iommu_init(void)
{
	iommu.e = calloc(g.npages, sizeof(*iommu.e));
	if (!iommu.e)
		abort();
	for (uint64_t p = 0; p < g.npages; p++)
		iommu.e[p].frame = -1;
	for (int r = 0; r < NREG; r++)
		if (ps_interval_insert(&iommu.sub[r], ps_space_notifier(g.sp),
				       g.reg_start[r] * PG,
				       g.cfg.reg_pages * PG, &iommu_ops, NULL))
			abort();
}

void iommu_fini(void)
{
	for (int r = 0; r < NREG; r++)
		ps_interval_remove(&iommu.sub[r]);
	free(iommu.e);
}

void iommu_sweep(void)
{
	pthread_mutex_lock(&iommu.lock);
	for (uint64_t p = 0; p < g.npages; p++)
		if (iommu.e[p].frame >= 0)
			check_ient(p * PG, &iommu.e[p], "sweep");
	pthread_mutex_unlock(&iommu.lock);
}

static void iommu_lock(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&iommu.lock);
}

static void iommu_unlock(void *ctx)
{
	(void)ctx;
	pthread_mutex_unlock(&iommu.lock);
}

static int iommu_install(void *ctx, uint64_t addr, uint64_t frame, bool write)
{
	struct ient *ent = &iommu.e[page_of(addr)];

	(void)ctx;
	ent->frame = (int64_t)frame;
	ent->write = write;
	check_ient(addr, ent, "install");
	return 0;
}

static const struct ps_secondary_ops iommu_sops = {
	.lock = iommu_lock,
	.unlock = iommu_unlock,
	.install = iommu_install,
};

int iommu_map(struct thr *t, uint64_t addr, bool write)
{
	int rc = ps_space_map_secondary(g.sp, &iommu.sub[region_of(addr)], addr,
					write, &iommu_sops, NULL);

	if (rc == -EAGAIN && write) {
		/* Sync write-protected: the VMM resolves it, then retries. */
		op_phase(t, "resolve wp for the IOMMU");
		(void)soak_resolve_wp_write(addr);
		rc = ps_space_map_secondary(g.sp, &iommu.sub[region_of(addr)],
					    addr, write, &iommu_sops, NULL);
	}
	return rc;
}

/* A device write through the IOMMU's cached translation of @addr. */
bool iommu_device_write(struct thr *t, uint64_t addr)
{
	struct ient *ent = &iommu.e[page_of(addr)];
	bool done = false;

	pthread_mutex_lock(&iommu.lock);
	if (ent->frame >= 0 && ent->write) {
		check_ient(addr, ent, "device write");
		device_write((uint64_t)ent->frame, rnd(t));
		record_write(addr, WK_IOMMU);
		done = true;
	}
	pthread_mutex_unlock(&iommu.lock);
	if (done)
		atomic_fetch_add(&iommu.writes, 1);
	return done;
}

/* --- vCPU TLBs ----------------------------------------------------------- */

static bool vtlb_invalidate(struct ps_interval *sub,
			    const struct ps_invalidation *inv, uint64_t cur_seq,
			    void *priv)
{
	struct thr *t = priv;

	(void)inv;
	pthread_mutex_lock(&t->vtlb_lock);
	ps_interval_set_seq(sub, cur_seq);
	pthread_mutex_unlock(&t->vtlb_lock);
	return true;
}

static const struct ps_interval_ops vtlb_ops = {
	.invalidate = vtlb_invalidate,
};

void vtlb_init(struct thr *t)
{
	pthread_mutex_init(&t->vtlb_lock, NULL);
	for (int r = 0; r < NREG; r++)
		if (ps_interval_insert(&t->vtlb_sub[r], ps_space_notifier(g.sp),
				       g.reg_start[r] * PG,
				       g.cfg.reg_pages * PG, &vtlb_ops, t))
			abort();
}

void vtlb_fini(struct thr *t)
{
	for (int r = 0; r < NREG; r++)
		ps_interval_remove(&t->vtlb_sub[r]);
	pthread_mutex_destroy(&t->vtlb_lock);
}

/* The soak's own invalidations (protect, scans): a VMM's TLB flush. */
void inval_start(uint64_t start, uint64_t len, enum ps_notifier_event ev)
{
	int rc = ps_notifier_invalidate_start(ps_space_notifier(g.sp), start,
					      len, ev, 0);

	if (rc)
		violation("(g) a blockable invalidation failed", 0, start,
			  UINT64_MAX,
			  "ps_notifier_invalidate_start(%#" PRIx64 ", %#" PRIx64
			  ") = %d",
			  start, len, rc);
}

void inval_end(uint64_t start, uint64_t len)
{
	int rc = ps_notifier_invalidate_end(ps_space_notifier(g.sp), start,
					    len);

	if (rc)
		violation("(g) invalidate_end failed", 0, start, UINT64_MAX,
			  "ps_notifier_invalidate_end(%#" PRIx64 ", %#" PRIx64
			  ") = %d",
			  start, len, rc);
}
