// SPDX-License-Identifier: MIT
/*
 * tests/soak/ops.c - the operations a worker thread runs, as a VMM would use
 * the library: CPU writes and reads through faults, pins with device writes,
 * protect/unprotect, harvests (re-arming and plain, with the user's re-arm step
 * where the protocol needs one), uffd-style scans, write-back in both modes,
 * balloon discard, unmap and map (a frame allocator with a free hook),
 * conversion, kmap, the secondary-map helper, cache-mode changes, mark_dirty,
 * mprotect. Each operation logs itself (log.c) and checks what it can check at
 * once; the rest is checked at the quiescent checkpoints (check.c).
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

static uint64_t frame_at(uint64_t addr, ps_pte_t *pte)
{
	ps_pte_t e = 0;

	(void)ps_pgtable_get(g.pt, addr, &e);
	if (pte)
		*pte = e;
	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= g.cfg.nframes)
		return UINT64_MAX;
	return ps_pte_frame(e);
}

/* For the dirty hook: the frame (and lifetime) this operation looks at. */
static void probe(struct thr *t, uint64_t addr)
{
	uint64_t f = frame_at(addr, NULL);

	t->probing = f != UINT64_MAX;
	if (t->probing) {
		t->probe_addr = addr;
		t->probe_frame = f;
		t->probe_gen = atomic_load(&g.fm[f].gen);
	}
}

/* --- CPU access ---------------------------------------------------------- */

/*
 * The handler of a sync write-protect fault lets the write through
 * (PS_ACCESS_RESOLVE_WP: resolved in the fault's own CAS).
 */
static enum ps_fault resolve_wp_write(uint64_t addr)
{
	return ps_space_fault(g.sp, addr,
			      PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP);
}

/*
 * (f) and S3: the dirty hook of the dirtying a CPU write goes through has run
 * (space.h: "the dirty hook has run before any thread can write through the
 * entry"). Called under the vCPU's TLB lock with no invalidation since the
 * fault: the entry is writable and the frame DIRTY, and no write-back has
 * cleared that DIRTY since (its invalidation comes first and waits for this
 * lock). Each write-back callback (a clean) came after the hook of the dirtying
 * it cleaned (S5), so the hooks of this lifetime are ahead of its cleans by the
 * dirtying still in force. Cleans are read first: both only grow, so a clean
 * counted between the loads cannot make a false report. Equal counts mean the
 * write went through between a marker's DIRTY and its hook (a write fault found
 * the frame dirty under its LOCKED bit and trusted that the hook had run), or,
 * with no hook at all, that the frame started this lifetime DIRTY (issue 15
 * #3).
 */
static void check_hook_before_write(uint64_t addr, uint64_t f)
{
	struct fmodel *m = &g.fm[f];
	uint64_t cleans = atomic_load(&m->cleans);
	uint64_t hooks = atomic_load(&m->hooks);

	if (hooks > cleans)
		return;
	violation("(f) hooks: write before the dirty hook of its dirtying", 0,
		  addr, f,
		  "a CPU write through a writable entry of frame %" PRIu64
		  " in lifetime %" PRIu64 ", with %" PRIu64 " dirty hooks "
		  "and %" PRIu64 " write-back cleans in this lifetime: the "
		  "frame is DIRTY but the hook of that dirtying has not run "
		  "(%s)",
		  f, atomic_load(&m->gen), hooks, cleans,
		  hooks ? "a write fault made the entry writable between "
			  "another marker's DIRTY and its hook, S3"
			: "the frame started the lifetime DIRTY (freed "
			  "dirty), or a write fault made the entry writable "
			  "between another marker's DIRTY and its hook, S3");
}

/*
 * A CPU write, as a vCPU with a TLB makes it: the write is atomic with
 * respect to every invalidation of the page (its TLB subscription), so the
 * bytes land while the entry the fault made writable is still the one the
 * space has. Returns 0 with the bytes written and recorded.
 */
static int cpu_write(struct thr *t, uint64_t addr, uint64_t *frame_out)
{
	struct ps_interval *sub = &t->vtlb_sub[region_of(addr)];

	for (int tries = 0; tries < 8; tries++) {
		uint64_t seq = ps_interval_read_begin(sub), f, w;
		enum ps_fault fr;
		ps_pte_t e;

		probe(t, addr);
		op_phase(t, "write fault");
		fr = ps_space_fault(g.sp, addr, PS_ACCESS_WRITE);
		if (fr == PS_FAULT_WP) {
			/* Sync: the handler lets this write through. */
			op_phase(t, "resolve wp");
			fr = resolve_wp_write(addr);
		}
		t->probing = false;
		if (fr != PS_FAULT_OK)
			return -(int)fr;
		f = frame_at(addr, &e);
		if (f == UINT64_MAX || !ps_pte_is_writable(e))
			continue; /* changed since the fault: again */
		op_phase(t, "write bytes");
		pthread_mutex_lock(&t->vtlb_lock);
		if (ps_interval_read_retry(sub, seq)) {
			pthread_mutex_unlock(&t->vtlb_lock);
			continue;
		}
		/*
		 * No invalidation since read_begin: the entry read writable is
		 * still what the space has (bar a re-arm, whose harvest
		 * returns after its own invalidation, which waits for this
		 * lock). S3: writable implies dirty, and only write-back
		 * clears DIRTY, inside an invalidation.
		 */
		w = ps_page_load(pw(f));
		if (!(w & PS_PAGE_DIRTY))
			violation("(c) writable entry on a clean frame", 0,
				  addr, f,
				  "a CPU write through the writable entry "
				  "%#" PRIx64 " finds frame %" PRIu64
				  " clean (S3: dirty before writable); a write "
				  "fault of the frame's earlier lifetime may "
				  "have made the entry of its new one writable",
				  e, f);
		check_hook_before_write(addr, f);
		device_write(f, rnd(t));
		record_write(addr, WK_CPU);
		pthread_mutex_unlock(&t->vtlb_lock);
		*frame_out = f;
		return 0;
	}
	return -EAGAIN;
}

static void op_write(struct thr *t)
{
	uint64_t addr = pick_addr(t, pick_region(t)), f = UINT64_MAX;
	int rc;

	op_begin(t, OP_WRITE, addr, "start");
	rc = cpu_write(t, addr, &f);
	op_end(t, OP_WRITE, addr, f, 0, rc);
}

static void op_read(struct thr *t)
{
	uint64_t addr = pick_addr(t, pick_region(t));
	enum ps_fault fr;

	op_begin(t, OP_READ, addr, "read fault");
	fr = ps_space_fault(g.sp, addr, PS_ACCESS_READ);
	op_end(t, OP_READ, addr, frame_at(addr, NULL), 0, -(int)fr);
}

/* --- pins ---------------------------------------------------------------- */

/*
 * A device writes the pinned frames. Under mm_lock, so the shadow mapping
 * says whether the frame is still the page's (a frame unmapped while
 * pinned is written, but that is no write to the page any more).
 */
static void pin_device_write(struct thr *t, struct pin_group *pg,
			     bool for_write)
{
	pthread_mutex_lock(&g.mm_lock);
	for (uint64_t k = 0; k < pg->n; k++) {
		uint64_t addr = pg->addr + k * PG, f = pg->frames[k];
		bool mapped = atomic_load(&g.pm[page_of(addr)].frame) ==
			      (int64_t)f;

		device_write(f, rnd(t));
		if (for_write) {
			if (mapped)
				record_write(addr, WK_PIN);
			continue;
		}
		/* A read pin: write-back learns at the dirty unpin; the
		 * dirty log needs mark_dirty (space.h). */
		hold_set_dev_wrote(pg->rec[k], true);
		if (mapped) {
			record_write(addr, WK_MARK);
			(void)ps_space_mark_dirty(g.sp, addr);
		}
	}
	pthread_mutex_unlock(&g.mm_lock);
	pg->dev_wrote = !for_write;
}

static void unpin_group(struct thr *t, int i)
{
	struct pin_group *pg = &t->pins[i];
	bool write = pg->flags & PS_PIN_WRITE;
	int rc;

	op_begin(t, OP_UNPIN, pg->addr, "device write");
	if (write)
		pin_device_write(t, pg, true); /* DMA went on meanwhile */
	op_phase(t, "unpin");
	/* A long-term release is in flight until the unpin returns. */
	if (pg->flags & PS_PIN_LONGTERM)
		atomic_fetch_add(&g.lt_inflight, 1);
	for (uint64_t k = 0; k < pg->n; k++)
		hold_release(pg->rec[k]);
	rc = ps_space_unpin(g.sp, pg->frames, pg->n,
			    (write || pg->dev_wrote ? PS_UNPIN_DIRTY : 0) |
				    (pg->flags & PS_PIN_LONGTERM
					     ? PS_UNPIN_LONGTERM
					     : 0));
	if (rc)
		violation("(b) unpin", 0, pg->addr, pg->frames[0],
			  "ps_space_unpin() of %" PRIu64 " pins taken with "
			  "flags %#x failed: %d (a long-term pin not counted)",
			  pg->n, pg->flags, rc);
	if (pg->flags & PS_PIN_LONGTERM) {
		atomic_store(&g.lt_last_end, tick());
		atomic_fetch_sub(&g.lt_inflight, 1);
	}
	for (uint64_t k = 0; k < pg->n; k++)
		hold_drop(pg->rec[k]);
	op_end(t, OP_UNPIN, pg->addr, pg->frames[0], pg->n, rc);
	t->pins[i] = t->pins[--t->npins];
}

static void op_pin(struct thr *t)
{
	struct pin_group pg;
	uint64_t len;
	bool lt;
	int rc;

	if (t->npins && (t->npins == MAX_HELD || chance(t, 50))) {
		unpin_group(t, (int)rnd_below(t, (uint64_t)t->npins));
		return;
	}
	memset(&pg, 0, sizeof(pg));
	pg.addr = pick_run(t, pick_region(t), 3, &len);
	pg.n = len / PG;
	pg.flags = (chance(t, 50) ? PS_PIN_WRITE : 0) |
		   (chance(t, 25) ? PS_PIN_LONGTERM : 0) |
		   (chance(t, 35) ? PS_PIN_PRIVATE : 0);
	lt = pg.flags & PS_PIN_LONGTERM;
	op_begin(t, OP_PIN, pg.addr, "pin_range");
	if (lt)
		atomic_fetch_add(&g.lt_inflight, 1);
	rc = ps_space_pin_range(g.sp, pg.addr, len, pg.flags, pg.frames);
	for (uint64_t k = 0;
	     rc == -EAGAIN && (pg.flags & PS_PIN_WRITE) && k < pg.n; k++) {
		/*
		 * A sync write-protected page: the error says which (frames[0],
		 * its offset). Resolve it and retry, once per page at most.
		 */
		uint64_t off = pg.frames[0];

		if (off >= len || off % PG) {
			violation("(b) pin: -EAGAIN says no page", 0, pg.addr,
				  UINT64_MAX,
				  "ps_space_pin_range(%#" PRIx64 ", %" PRIu64
				  " pages) = -EAGAIN with frames[0] = %#" PRIx64
				  ", not the offset of a page of the range",
				  pg.addr, pg.n, off);
			break;
		}
		op_phase(t, "resolve wp for a pin");
		(void)resolve_wp_write(pg.addr + off);
		op_phase(t, "pin_range again");
		rc = ps_space_pin_range(g.sp, pg.addr, len, pg.flags,
					pg.frames);
	}
	op_end(t, OP_PIN, pg.addr, rc ? UINT64_MAX : pg.frames[0],
	       pg.n | (uint64_t)pg.flags << 16, rc);
	for (uint64_t k = 0; !rc && k < pg.n; k++)
		pg.rec[k] = hold_add(H_PIN, pg.frames[k], pg.addr + k * PG,
				     pg.flags);
	/* In flight until the holds say so (a conversion's -EBUSY check). */
	if (lt) {
		atomic_store(&g.lt_last_end, tick());
		atomic_fetch_sub(&g.lt_inflight, 1);
	}
	if (rc)
		return;
	if (pg.flags & PS_PIN_WRITE)
		pin_device_write(t, &pg, true);
	else if (chance(t, 50))
		pin_device_write(t, &pg, false);
	t->pins[t->npins++] = pg;
	if (!(lt || chance(t, 30)))
		unpin_group(t, t->npins - 1);
}

/* --- write protection ---------------------------------------------------- */

/* Protect, bracketed by the invalidation a TLB flush is. */
static int protect_range(uint64_t start, uint64_t len)
{
	int rc;

	inval_start(start, len, PS_NOTIFIER_PROTECTION);
	rc = ps_pgtable_protect(g.pt, start, len);
	inval_end(start, len);
	return rc;
}

static void op_protect(struct thr *t)
{
	/* Sync regions only: protecting an async page hides its write. */
	enum region r = chance(t, 50) ? REG_SYNC : REG_SHARED;
	uint64_t len, addr = pick_run(t, r, 8, &len);
	int rc;

	op_begin(t, OP_PROTECT, addr, "protect");
	rc = protect_range(addr, len);
	op_end(t, OP_PROTECT, addr, UINT64_MAX, len / PG, rc);
}

static void op_unprotect(struct thr *t)
{
	enum region r = (enum region)rnd_below(t, REG_UNREG);
	uint64_t len, addr = pick_run(t, r, 8, &len);
	int rc;

	op_begin(t, OP_UNPROTECT, addr, "unprotect");
	rc = ps_pgtable_unprotect(g.pt, addr, len);
	op_end(t, OP_UNPROTECT, addr, UINT64_MAX, len / PG, rc);
}

static void op_mprotect(struct thr *t)
{
	uint64_t len, addr = pick_run(t, pick_region(t), 4, &len);
	unsigned int prot = chance(t, 25) ? PS_PROT_READ
					  : PS_PROT_READ | PS_PROT_WRITE;
	int rc;

	op_begin(t, OP_MPROTECT, addr, "mprotect");
	rc = ps_prot_mprotect(g.sp, addr, len, prot);
	op_end(t, OP_MPROTECT, addr, UINT64_MAX, len / PG | prot << 16, rc);
}

/* --- harvests (c) -------------------------------------------------------- */

/*
 * The user's re-arm of pages a plain harvest reported (harvest, then
 * protect: the safe order; a re-arming harvest does it itself).
 * Unregistered pages have no write protection: mprotect makes them
 * read-only and writable again, so the next write faults.
 */
static void rearm_run(enum region r, uint64_t start, uint64_t len)
{
	if (r == REG_UNREG) {
		(void)ps_prot_mprotect(g.sp, start, len, PS_PROT_READ);
		(void)ps_prot_mprotect(g.sp, start, len,
				       PS_PROT_READ | PS_PROT_WRITE);
	} else {
		(void)protect_range(start, len);
	}
}

static bool needs_user_rearm(enum region r, bool rearm)
{
	if (r == REG_SCAN)
		return false; /* not this channel's pages */
	return !rearm;
}

int harvest_range(struct thr *t, uint64_t start, uint64_t len, bool rearm)
{
	uint64_t *got = malloc(g.npages * sizeof(*got)), n = 0, at = start;
	uint64_t end = start + len, th;
	int rc = 0;

	if (!got)
		abort();
	while (at < end) {
		uint64_t addrs[64], cnt = 0, resume = end;

		rc = ps_space_harvest(g.sp, at, end - at,
				      rearm ? PS_HARVEST_REARM : 0, addrs, 64,
				      &cnt, &resume);
		if (rc)
			break;
		for (uint64_t i = 0; i < cnt && n < g.npages; i++)
			got[n++] = addrs[i];
		if (resume <= at && !cnt)
			break;
		at = resume;
	}
	op_phase(t, "user re-arm");
	for (uint64_t i = 0; i < n;) {
		enum region r = region_of(got[i]);
		uint64_t j = i + 1;

		while (j < n && got[j] == got[j - 1] + PG &&
		       region_of(got[j]) == r)
			j++;
		if (needs_user_rearm(r, rearm))
			rearm_run(r, got[i], (j - i) * PG);
		i = j;
	}
	th = tick();
	for (uint64_t i = 0; i < n; i++)
		if (region_of(got[i]) != REG_SCAN)
			record_report(got[i], th);
	free(got);
	return rc ? rc : (int)n;
}

static void op_harvest(struct thr *t)
{
	bool rearm = chance(t, 70);
	uint64_t start, len = 0;
	enum region r;
	int rc;

	if (chance(t, 30)) {
		/* Every region but the scan one: the general REARM path. */
		start = g.reg_start[REG_ASYNC] * PG;
		len = g.size - start;
		r = REG_ASYNC;
	} else {
		r = (enum region)rnd_below(t, NREG);
		if (r == REG_SCAN)
			rearm = false; /* its entries are the scans' */
		start = chance(t, 50) ? g.reg_start[r] * PG
				      : pick_run(t, r, 16, &len);
		if (start == g.reg_start[r] * PG)
			len = g.cfg.reg_pages * PG;
	}
	op_begin(t, OP_HARVEST, start, rearm ? "harvest REARM" : "harvest");
	rc = harvest_range(t, start, len, rearm);
	op_end(t, OP_HARVEST, start, UINT64_MAX,
	       len / PG | (uint64_t)rearm << 32, rc < 0 ? rc : 0);
}

/*
 * The uffd-style channel: a PAGEMAP_SCAN-like WP_MATCHING scan of WRITTEN
 * pages, bracketed by an invalidation (the kernel flushes TLBs there).
 */
int scan_range(struct thr *t, uint64_t start, uint64_t len)
{
	uint64_t end = start + len, at = start, th, n = 0;
	struct ps_pgtable_region vec[32];
	uint64_t *got = malloc(g.npages * sizeof(*got));
	long rc = 0;

	if (!got)
		abort();
	op_phase(t, "scan WP_MATCHING");
	inval_start(start, len, PS_NOTIFIER_SOFT_DIRTY);
	while (at < end) {
		struct ps_pgtable_scan a;

		memset(&a, 0, sizeof(a));
		a.start = at;
		a.end = end;
		a.flags = PS_SCAN_WP_MATCHING;
		a.category_mask = PS_CAT_WRITTEN;
		a.return_mask = PS_CAT_WRITTEN;
		a.vec = vec;
		a.vec_len = 32;
		rc = ps_pgtable_scan(g.pt, &a);
		if (rc < 0)
			break;
		for (long i = 0; i < rc; i++)
			for (uint64_t p = vec[i].start; p < vec[i].end; p += PG)
				if (n < g.npages)
					got[n++] = p;
		if (a.walk_end <= at)
			break;
		at = a.walk_end;
	}
	inval_end(start, len);
	th = tick();
	for (uint64_t i = 0; i < n; i++)
		record_report(got[i], th);
	free(got);
	return rc < 0 ? (int)rc : (int)n;
}

static void op_scan(struct thr *t)
{
	uint64_t len, start = chance(t, 50) ? pick_run(t, REG_SCAN, 16, &len)
					    : g.reg_start[REG_SCAN] * PG;
	int rc;

	if (start == g.reg_start[REG_SCAN] * PG)
		len = g.cfg.reg_pages * PG;
	op_begin(t, OP_SCAN, start, "scan");
	rc = scan_range(t, start, len);
	op_end(t, OP_SCAN, start, UINT64_MAX, len / PG, rc < 0 ? rc : 0);
}

/* --- write-back ---------------------------------------------------------- */

static int wb_fn(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct thr *t = ctx;
	struct fmodel *m = &g.fm[frame];
	uint64_t w = ps_page_load(pw(frame));
	int s = atomic_load(&m->state);

	uint64_t copy[PG_WORDS];
	int running = atomic_fetch_add(&m->in_wb, 1);

	(void)pinned;
	if (running)
		violation("(c) two write-backs of one frame at once", 0, addr,
			  frame,
			  "write-back calls fn for frame %" PRIu64 " while "
			  "another write-back's fn for it is still running "
			  "(S12: a frame under write-back is skipped or "
			  "waited for); the older copy may reach the backing "
			  "store last",
			  frame);
	/*
	 * F_CLAIMED and LIVE: a map is installing the frame, past the point
	 * where it can fail, and a write through the entry it installed
	 * dirtied it (hook_dirty() allows that) before the owner learnt that
	 * the map returned; a write-back may then write it.
	 */
	if (s != F_INUSE && s != F_AWAIT &&
	    !(s == F_CLAIMED && (w & PS_PAGE_LIVE)))
		violation("(f) write-back of a freed frame", 0, addr, frame,
			  "write-back calls fn for frame %" PRIu64
			  " in owner state %d",
			  frame, s);
	if (!(w & PS_PAGE_LIVE))
		violation("(b) write-back's frame is not LIVE", 0, addr, frame,
			  "fn(%" PRIu64 ") runs on a frame that is not LIVE "
			  "(word %#" PRIx64 ")",
			  frame, w);
	if (!(w & PS_PAGE_WRITEBACK))
		violation("(c) write-back without WRITEBACK", 0, addr, frame,
			  "fn(%" PRIu64 ") runs while the frame's WRITEBACK is "
			  "clear (word %#" PRIx64 "): another write-back of "
			  "it ended meanwhile and cleared it",
			  frame, w);
	/* Each call follows one clean-to-... transition: a dirty hook. */
	if (atomic_load(&m->hooks) <= atomic_load(&m->cleans))
		violation("(f) hooks: write-back of a page never written in "
			  "this lifetime",
			  0, addr, frame,
			  "write-back cleans frame %" PRIu64
			  " (lifetime %" PRIu64 "): %" PRIu64
			  " dirty hooks, %" PRIu64
			  " cleans so far in this lifetime: it was DIRTY "
			  "from an earlier one",
			  frame, atomic_load(&m->gen), atomic_load(&m->hooks),
			  atomic_load(&m->cleans));
	atomic_fetch_add(&m->cleans, 1);
	if (chance(t, 3)) {
		atomic_fetch_sub(&m->in_wb, 1);
		return -EIO; /* the library dirties it again */
	}
	/* The I/O takes its data when submitted and lands later. */
	for (uint64_t i = 0; i < PG_WORDS; i++)
		copy[i] = atomic_load_explicit(&frame_words(frame)[i],
					       memory_order_relaxed);
	if (chance(t, 20))
		sched_yield();
	for (uint64_t i = 0; i < PG_WORDS; i++)
		atomic_store_explicit(&backing_words(frame)[i], copy[i],
				      memory_order_relaxed);
	atomic_fetch_sub(&m->in_wb, 1);
	return 0;
}

static void op_writeback(struct thr *t)
{
	enum ps_writeback_mode mode = chance(t, 50) ? PS_WB_CLEAN
						    : PS_WB_INTEGRITY;
	struct ps_writeback_stats st;
	uint64_t start = 0, len = g.size;
	int rc;

	if (chance(t, 60)) {
		enum region r = pick_region(t);

		start = g.reg_start[r] * PG;
		len = g.cfg.reg_pages * PG;
	}
	op_begin(t, OP_WRITEBACK, start,
		 mode == PS_WB_CLEAN ? "writeback CLEAN"
				     : "writeback INTEGRITY");
	rc = ps_space_writeback(g.sp, start, len, mode, wb_fn, t, &st);
	op_end(t, OP_WRITEBACK, start, UINT64_MAX,
	       len / PG | (uint64_t)mode << 32, rc == -EIO ? 0 : rc);
}

/* --- mapping changes (under mm_lock) ------------------------------------- */

static void op_discard(struct thr *t)
{
	uint64_t len, addr = pick_run(t, pick_region(t), 6, &len);
	struct ps_discard_skip skipped[8];
	uint64_t nskipped = 0;
	int rc;

	op_begin(t, OP_DISCARD, addr, "mm_lock");
	pthread_mutex_lock(&g.mm_lock);
	op_phase(t, "discard");
	rc = ps_space_discard(g.sp, addr, len, skipped, 8, &nskipped);
	for (uint64_t p = addr; !rc && p < addr + len; p += PG) {
		struct pmodel *m = &g.pm[page_of(p)];
		int64_t f = atomic_load(&m->frame);
		bool skip = false;
		ps_pte_t e;

		for (uint64_t i = 0; i < nskipped && i < 8; i++)
			skip |= skipped[i].addr == p;
		if (f < 0)
			continue;
		if (skip) {
			if (frame_at(p, &e) != (uint64_t)f)
				violation("(b) discard skipped a page it "
					  "dropped",
					  0, p, (uint64_t)f,
					  "discard reported %#" PRIx64
					  " as left in place, but its entry "
					  "is %#" PRIx64,
					  p, e);
			continue;
		}
		if (frame_at(p, &e) != UINT64_MAX)
			violation("(b) discard left a page without saying so",
				  0, p, (uint64_t)f,
				  "discard returned without reporting %#" PRIx64
				  " skipped, but it is still mapped (%#" PRIx64
				  ")",
				  p, e);
		atomic_store(&m->frame, -1);
		record_zap(p, true);
	}
	pthread_mutex_unlock(&g.mm_lock);
	op_end(t, OP_DISCARD, addr, UINT64_MAX, len / PG | nskipped << 32, rc);
}

static void op_unmap(struct thr *t)
{
	uint64_t len, addr = pick_run(t, pick_region(t), 4, &len);
	unsigned int flags = chance(t, 50) ? PS_UNMAP_ZAP : 0;
	int rc;

	op_begin(t, OP_UNMAP, addr, "mm_lock");
	pthread_mutex_lock(&g.mm_lock);
	op_phase(t, "unmap");
	rc = ps_space_unmap(g.sp, addr, len, flags);
	for (uint64_t p = addr; !rc && p < addr + len; p += PG) {
		struct pmodel *m = &g.pm[page_of(p)];

		if (frame_at(p, NULL) != UINT64_MAX)
			violation("(b) unmap left a page", 0, p, UINT64_MAX,
				  "ps_space_unmap() returned 0 but %#" PRIx64
				  " is still present",
				  p);
		if (atomic_load(&m->frame) < 0) {
			/*
			 * A full unmap removes what a discard left too (a
			 * WRITTEN marker): like munmap(), it owes no report.
			 */
			if (!(flags & PS_UNMAP_ZAP))
				record_zap(p, false);
			continue;
		}
		atomic_store(&m->frame, -1);
		record_zap(p, flags & PS_UNMAP_ZAP);
	}
	pthread_mutex_unlock(&g.mm_lock);
	op_end(t, OP_UNMAP, addr, UINT64_MAX, len / PG | flags << 16, rc);
}

static void op_map(struct thr *t)
{
	uint64_t len, addr = pick_run(t, pick_region(t), 3, &len);
	uint64_t n = len / PG, busy = 0;
	unsigned int flags = chance(t, 90) ? PS_MAP_WRITE : 0;
	int64_t first;
	int rc;

	if (chance(t, 20))
		flags |= PS_MAP_CACHE(rnd_below(t, PS_CACHE_NR));
	op_begin(t, OP_MAP, addr, "mm_lock");
	pthread_mutex_lock(&g.mm_lock);
	for (uint64_t k = 0; k < n; k++)
		busy += atomic_load(&g.pm[page_of(addr) + k].frame) >= 0;
	/* Mostly vacant pages; some maps are meant to fail (-EEXIST). */
	if (busy && !chance(t, 8)) {
		pthread_mutex_unlock(&g.mm_lock);
		op_end(t, OP_MAP, addr, UINT64_MAX, n, 1);
		return;
	}
	first = alloc_frames(t, n);
	if (first < 0) {
		pthread_mutex_unlock(&g.mm_lock);
		op_end(t, OP_MAP, addr, UINT64_MAX, n, -ENOMEM);
		return;
	}
	op_phase(t, "map_range");
	rc = map_locked(addr, n, (uint64_t)first, flags);
	if ((rc == 0) != (busy == 0) || (rc && rc != -EEXIST))
		violation("(b) map result", 0, addr, (uint64_t)first,
			  "ps_space_map_range(%#" PRIx64 ", %" PRIu64
			  " pages, frame %" PRId64
			  ", flags %#x, NULL) = %d with %" PRIu64
			  " of its pages mapped",
			  addr, n, first, flags, rc, busy);
	pthread_mutex_unlock(&g.mm_lock);
	op_end(t, OP_MAP, addr, (uint64_t)first, n | (uint64_t)flags << 16, rc);
}

/* --- conversion (d) ------------------------------------------------------ */

/* A pin or CPU map of @frame held for the whole of [t0, t1]? */
static bool held_throughout(uint64_t frame, uint64_t t0, uint64_t t1,
			    struct hold *out)
{
	bool found = false;

	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS && !found; i++) {
		struct hold *h = &g.holds[i];

		if (h->kind && h->frame == frame && h->t_acq < t0 &&
		    (!h->t_rel || h->t_rel > t1)) {
			*out = *h;
			found = true;
		}
	}
	pthread_mutex_unlock(&g.hold_lock);
	return found;
}

/* A long-term pin of @frame held at some instant of [t0, t1]? */
static bool longterm_during(uint64_t frame, uint64_t t0, uint64_t t1)
{
	bool found = false;

	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS && !found; i++) {
		struct hold *h = &g.holds[i];

		found = h->kind == H_PIN && h->frame == frame &&
			(h->flags & PS_PIN_LONGTERM) && h->t_acq < t1 &&
			(!h->t_rel || h->t_rel > t0);
	}
	pthread_mutex_unlock(&g.hold_lock);
	return found;
}

static void op_convert(struct thr *t)
{
	uint64_t len, addr = pick_run(t, pick_region(t), 4, &len);
	enum ps_enc_state to = chance(t, 30) ? PS_ENC_PRIVATE : PS_ENC_SHARED;
	unsigned int flags = (chance(t, 50) ? PS_CONVERT_WAIT : 0) |
			     (chance(t, 70) ? PS_CONVERT_SKIP_MISSING : 0);
	struct ps_convert_opts opts = {.wait_ns = 3000000};
	uint64_t n = len / PG, frames[4], before[4], off = 0, t0, t1;
	int rc;

	op_begin(t, OP_CONVERT, addr, "mm_lock");
	pthread_mutex_lock(&g.mm_lock);
	for (uint64_t k = 0; k < n; k++) {
		frames[k] = frame_at(addr + k * PG, NULL);
		before[k] = frames[k] == UINT64_MAX
				    ? 0
				    : ps_page_load(pw(frames[k])) &
					      PS_PAGE_PRIVATE;
	}
	op_phase(t, flags & PS_CONVERT_WAIT ? "convert WAIT" : "convert");
	t0 = tick();
	rc = ps_prot_convert(g.sp, addr, len, to, flags, &opts, &off);
	t1 = tick();
	for (uint64_t k = 0; !rc && k < n; k++) {
		uint64_t f = frames[k], now;
		struct hold h;

		if (f == UINT64_MAX)
			continue;
		now = ps_page_load(pw(f)) & PS_PAGE_PRIVATE;
		if (!now != (to == PS_ENC_SHARED))
			violation("(d) conversion result", 0, addr + k * PG, f,
				  "ps_prot_convert() returned 0 but frame "
				  "%" PRIu64 " is not %s",
				  f,
				  to == PS_ENC_PRIVATE ? "private" : "shared");
		if (now != before[k] && held_throughout(f, t0, t1, &h))
			violation("(d) conversion of a pinned or CPU-mapped "
				  "page",
				  0, addr + k * PG, f,
				  "frame %" PRIu64 " was converted to %s while "
				  "thread %d held a %s (flags %#x) on it for "
				  "the whole call",
				  f,
				  to == PS_ENC_PRIVATE ? "private" : "shared",
				  h.thread, h.kind == H_PIN ? "pin" : "kmap",
				  h.flags);
	}
	if (rc == -EBUSY) {
		uint64_t f = frames[off / PG];

		if (f != UINT64_MAX && !longterm_during(f, t0, t1) &&
		    !atomic_load(&g.lt_inflight) &&
		    atomic_load(&g.lt_last_end) < t0)
			violation("(d) conversion: -EBUSY without a long-term "
				  "pin",
				  0, addr + off, f,
				  "ps_prot_convert(%s) failed with -EBUSY "
				  "(\"pinned long-term\") at frame %" PRIu64
				  ", but no long-term pin of it was held "
				  "during the call: it should %s",
				  flags & PS_CONVERT_WAIT ? "WAIT" : "no WAIT",
				  f,
				  flags & PS_CONVERT_WAIT
					  ? "wait for the pins to drain"
					  : "fail with -EAGAIN (pinned)");
	}
	if (rc == -EAGAIN && (flags & PS_CONVERT_WAIT)) {
		uint64_t f = frames[off / PG];
		struct hold h;

		if (f != UINT64_MAX && held_throughout(f, t0, t1, &h) &&
		    h.kind == H_PIN && (h.flags & PS_PIN_LONGTERM))
			violation("(d) conversion waited for a long-term pin",
				  0, addr + off, f,
				  "ps_prot_convert(WAIT) waited out its budget "
				  "(-EAGAIN) for frame %" PRIu64
				  ", held by a long-term pin: prot.h says "
				  "-EBUSY at once",
				  f);
	}
	pthread_mutex_unlock(&g.mm_lock);
	op_end(t, OP_CONVERT, addr, UINT64_MAX,
	       n | (uint64_t)flags << 16 | (uint64_t)to << 24, rc);
}

/* --- CPU maps ------------------------------------------------------------ */

static void kunmap_one(struct thr *t, int i)
{
	uint64_t f = t->kmaps[i];
	int rc;

	op_begin(t, OP_KUNMAP, UINT64_MAX, "kunmap");
	hold_release(t->kmap_rec[i]);
	rc = ps_prot_kunmap(g.sp, f);
	hold_drop(t->kmap_rec[i]);
	if (rc)
		violation("(b) kunmap of a held CPU map failed", 0, UINT64_MAX,
			  f, "ps_prot_kunmap(%" PRIu64 ") = %d", f, rc);
	op_end(t, OP_KUNMAP, UINT64_MAX, f, 0, rc);
	t->nkmaps--;
	t->kmaps[i] = t->kmaps[t->nkmaps];
	t->kmap_rec[i] = t->kmap_rec[t->nkmaps];
}

static void op_kmap(struct thr *t)
{
	uint64_t addr, f, w;
	unsigned int flags;
	int rc;

	if (t->nkmaps && (t->nkmaps == MAX_HELD || chance(t, 50))) {
		kunmap_one(t, (int)rnd_below(t, (uint64_t)t->nkmaps));
		return;
	}
	addr = pick_addr(t, pick_region(t));
	f = frame_at(addr, NULL);
	if (f == UINT64_MAX)
		return;
	if (chance(t, 15)) {
		/* The owner takes the frame out of its direct map. */
		op_begin(t, OP_KMAP, addr, "set_inaccessible");
		rc = ps_prot_set_inaccessible(g.sp, f);
		op_end(t, OP_KMAP, addr, f, 1, rc);
		return;
	}
	flags = chance(t, 30) ? PS_KMAP_PRIVATE : 0;
	op_begin(t, OP_KMAP, addr, "kmap");
	rc = ps_prot_kmap(g.sp, f, flags);
	op_end(t, OP_KMAP, addr, f, flags, rc);
	if (rc)
		return;
	t->kmap_rec[t->nkmaps] = hold_add(H_KMAP, f, addr, flags);
	t->kmaps[t->nkmaps++] = f;
	w = ps_page_load(pw(f));
	if ((w & PS_PAGE_INACCESSIBLE) || !(w & PS_PAGE_LIVE) ||
	    (!(flags & PS_KMAP_PRIVATE) && (w & PS_PAGE_PRIVATE)))
		violation("(d) kmap", 0, addr, f,
			  "ps_prot_kmap(%" PRIu64 ", %#x) returned 0 but the "
			  "frame's word is %#" PRIx64,
			  f, flags, w);
	rc = ps_prot_set_inaccessible(g.sp, f);
	if (rc != -EBUSY)
		violation("(d) set_inaccessible of a CPU-mapped frame", 0, addr,
			  f,
			  "ps_prot_set_inaccessible(%" PRIu64 ") = %d while "
			  "this thread holds a CPU map of it",
			  f, rc);
	if (!chance(t, 40))
		kunmap_one(t, t->nkmaps - 1);
}

/* --- secondary mappings, cache modes, marks, hooks ----------------------- */

static void op_secondary(struct thr *t)
{
	/* Not the scan region: device writes there reach only the log. */
	enum region r = (enum region)(1 + rnd_below(t, NREG - 1));
	uint64_t addr = pick_addr(t, r);
	bool write = chance(t, 60);
	int rc = 0;

	op_begin(t, OP_SECONDARY, addr, "device write");
	if (chance(t, 40) && iommu_device_write(t, addr)) {
		op_end(t, OP_SECONDARY, addr, UINT64_MAX, 2, 0);
		return;
	}
	op_phase(t, "map_secondary");
	rc = iommu_map(t, addr, write);
	if (!rc && write) {
		op_phase(t, "device write");
		(void)iommu_device_write(t, addr);
	}
	op_end(t, OP_SECONDARY, addr, UINT64_MAX, write, rc);
}

static void op_cache(struct thr *t)
{
	enum ps_cache_mode mode = (enum ps_cache_mode)rnd_below(t, PS_CACHE_NR);
	int rc;

	if (chance(t, 50)) {
		/* A free frame takes any mode. */
		uint64_t f = rnd_below(t, g.cfg.nframes);
		int want = F_FREE;

		if (!atomic_compare_exchange_strong(&g.fm[f].state, &want,
						    F_CACHE))
			return;
		op_begin(t, OP_CACHE, UINT64_MAX, "set_cache free");
		rc = ps_prot_set_cache(g.sp, f, mode, 0);
		if (rc)
			violation("(b) set_cache of a free frame", 0,
				  UINT64_MAX, f,
				  "ps_prot_set_cache(%" PRIu64 ", %d, 0) = %d "
				  "on a frame its owner has free: someone "
				  "holds it",
				  f, mode, rc);
		atomic_store(&g.fm[f].state, F_FREE);
		op_end(t, OP_CACHE, UINT64_MAX, f, mode, rc);
		return;
	} else {
		/* A mapped frame keeps its mode (-EBUSY). */
		uint64_t addr = pick_addr(t, pick_region(t)), f;

		op_begin(t, OP_CACHE, addr, "mm_lock");
		pthread_mutex_lock(&g.mm_lock);
		f = frame_at(addr, NULL);
		if (f != UINT64_MAX) {
			unsigned int old =
				ps_page_word_cache(ps_page_load(pw(f)));

			op_phase(t, "set_cache mapped");
			rc = ps_prot_set_cache(g.sp, f, mode, 0);
			if ((unsigned int)mode != old && rc != -EBUSY)
				violation("(b) set_cache of a mapped frame", 0,
					  addr, f,
					  "ps_prot_set_cache(%" PRIu64
					  ", %d, 0) = %d on a mapped frame "
					  "(mode %u)",
					  f, mode, rc, old);
		} else {
			rc = 1;
		}
		pthread_mutex_unlock(&g.mm_lock);
		op_end(t, OP_CACHE, addr, f, mode, rc);
	}
}

static void op_markdirty(struct thr *t)
{
	uint64_t addr = pick_addr(t, pick_region(t));
	enum ps_space_mark m;

	op_begin(t, OP_MARKDIRTY, addr, "mark_dirty");
	probe(t, addr);
	m = ps_space_mark_dirty(g.sp, addr);
	t->probing = false;
	if (m == PS_SPACE_MARK_INVALID || m == PS_SPACE_MARK_OVERFLOW)
		violation("(b) mark_dirty", 0, addr, t->probe_frame,
			  "ps_space_mark_dirty(%#" PRIx64 ") = %d: an aligned "
			  "address of the space, far below the reference limit",
			  addr, (int)m);
	op_end(t, OP_MARKDIRTY, addr, t->probe_frame, (uint64_t)m, 0);
}

static int prot_hook_check(void *ctx, struct ps_space *space, uint64_t addr,
			   uint64_t frame, enum ps_enc_state to)
{
	/* The word that holds the frame's state (a huge frame's, huge.c). */
	uint64_t w = ps_page_load(ps_space_frame_word(g.sp, frame, NULL));
	uint64_t now = tick();
	struct hold h;

	(void)ctx;
	(void)space;
	(void)to;
	if (!(w & PS_PAGE_FROZEN))
		violation("(d) conversion hook on a frame not frozen", 0, addr,
			  frame, "prepare/finish(%" PRIu64 "): word %#" PRIx64,
			  frame, w);
	/* Frozen now: no pin or CPU map may be held at this instant. */
	if (held_throughout(frame, now, now, &h))
		violation("(d) conversion of a pinned or CPU-mapped page", 0,
			  addr, frame,
			  "frame %" PRIu64 " is frozen for conversion while "
			  "thread %d holds a %s (flags %#x) on it",
			  frame, h.thread, h.kind == H_PIN ? "pin" : "kmap",
			  h.flags);
	return 0;
}

static int make_accessible(void *ctx, struct ps_space *space, uint64_t frame)
{
	uint64_t w = ps_page_load(pw(frame));

	(void)ctx;
	(void)space;
	if (!(w & PS_PAGE_INACCESSIBLE) || ps_prot_kmap_count(g.sp, frame))
		violation("(d) make_accessible", 0, UINT64_MAX, frame,
			  "make_accessible(%" PRIu64 ") with word %#" PRIx64
			  " and %u CPU maps (P6: the first map of an "
			  "inaccessible frame only)",
			  frame, w, ps_prot_kmap_count(g.sp, frame));
	return 0;
}

static const struct ps_prot_hooks prot_hooks = {
	.prepare = prot_hook_check,
	.finish = prot_hook_check,
	.make_accessible = make_accessible,
};

static void op_hooks(struct thr *t)
{
	bool on = !atomic_load(&g.hooks_on);
	int rc;

	op_begin(t, OP_HOOKS, UINT64_MAX, "set_prot_hooks");
	/* Without prepare/finish the conversion commits while unfreezing. */
	rc = ps_prot_set_hooks(g.sp, on ? &prot_hooks
					: &(struct ps_prot_hooks){
						  .make_accessible =
							  make_accessible});
	if (!rc)
		atomic_store(&g.hooks_on, on);
	op_end(t, OP_HOOKS, UINT64_MAX, UINT64_MAX, on, rc);
}

/* --- dispatch ------------------------------------------------------------ */

void run_op(struct thr *t, enum op op)
{
	switch (op) {
	case OP_HUGE:
		op_huge(t);
		break;
	case OP_WRITE:
		op_write(t);
		break;
	case OP_READ:
		op_read(t);
		break;
	case OP_PIN:
		op_pin(t);
		break;
	case OP_PROTECT:
		op_protect(t);
		break;
	case OP_UNPROTECT:
		op_unprotect(t);
		break;
	case OP_HARVEST:
		op_harvest(t);
		break;
	case OP_SCAN:
		op_scan(t);
		break;
	case OP_WRITEBACK:
		op_writeback(t);
		break;
	case OP_DISCARD:
		op_discard(t);
		break;
	case OP_UNMAP:
		op_unmap(t);
		break;
	case OP_MAP:
		op_map(t);
		break;
	case OP_CONVERT:
		op_convert(t);
		break;
	case OP_KMAP:
		op_kmap(t);
		break;
	case OP_SECONDARY:
		op_secondary(t);
		break;
	case OP_CACHE:
		op_cache(t);
		break;
	case OP_MARKDIRTY:
		op_markdirty(t);
		break;
	case OP_MPROTECT:
		op_mprotect(t);
		break;
	case OP_HOOKS:
		op_hooks(t);
		break;
	default:
		break;
	}
}

void release_all(struct thr *t)
{
	while (t->npins)
		unpin_group(t, t->npins - 1);
	while (t->nkmaps)
		kunmap_one(t, t->nkmaps - 1);
}

enum ps_fault soak_resolve_wp_write(uint64_t addr)
{
	return resolve_wp_write(addr);
}

void soak_set_prot_hooks(bool on)
{
	(void)ps_prot_set_hooks(g.sp, on ? &prot_hooks
					 : &(struct ps_prot_hooks){
						   .make_accessible =
							   make_accessible});
	atomic_store(&g.hooks_on, on);
}
