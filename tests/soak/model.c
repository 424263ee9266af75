// SPDX-License-Identifier: MIT
/*
 * tests/soak/model.c - the owner's side and the shadow model: a frame
 * allocator with a free hook, the dirty and populate hooks, write and
 * harvest records per page, and the registry of held pins and CPU maps.
 *
 * Frame lifetimes (enum fstate). The owner maps only frames it has free;
 * the space's references decide when a mapped frame dies, and the free
 * hook gives it back. A failed map is handled as pagestate/space.h tells
 * an owner to: a frame the map took free is free again, no hook to come.
 * The state word moves by compare-and-swap between the hook and the
 * owner, so each of them sees what the other did (F_CLAIMED -> F_HOOKED
 * when a hook comes during the map, which is a violation; F_CLAIMED ->
 * F_LIMBO when the owner learns that the map failed).
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

uint64_t pick_addr(struct thr *t, enum region r)
{
	return (g.reg_start[r] + rnd_below(t, g.cfg.reg_pages)) * PG;
}

uint64_t pick_run(struct thr *t, enum region r, uint64_t max, uint64_t *len)
{
	uint64_t first = rnd_below(t, g.cfg.reg_pages);
	uint64_t n = 1 + rnd_below(t, max);

	if (first + n > g.cfg.reg_pages)
		n = g.cfg.reg_pages - first;
	*len = n * PG;
	return (g.reg_start[r] + first) * PG;
}

enum region pick_region(struct thr *t)
{
	return (enum region)rnd_below(t, NREG);
}

static void hot_init(void);

void model_init(void)
{
	for (uint64_t p = 0; p < g.npages; p++)
		atomic_store(&g.pm[p].frame, -1);
	hot_init();
}

/* The contents a frame starts a lifetime with, and its backing copy. */
void fill_frame(uint64_t frame)
{
	uint64_t gen = atomic_load(&g.fm[frame].gen);

	for (uint64_t i = 0; i < PG_WORDS; i++) {
		uint64_t v = (gen << 40) ^ (frame << 12) ^ i;

		atomic_store_explicit(&frame_words(frame)[i], v,
				      memory_order_relaxed);
		atomic_store_explicit(&backing_words(frame)[i], v,
				      memory_order_relaxed);
	}
}

/* A device (or a CPU through a kmap) writes one word of the frame. */
void device_write(uint64_t frame, uint64_t value)
{
	atomic_store_explicit(&frame_words(frame)[value % PG_WORDS], value,
			      memory_order_relaxed);
}

static void new_life(uint64_t frame)
{
	struct fmodel *m = &g.fm[frame];

	atomic_fetch_add(&m->gen, 1);
	atomic_store(&m->t_alloc, tick());
	atomic_store(&m->hooks, 0);
	atomic_store(&m->cleans, 0);
	atomic_store(&m->frees, 0);
}

/*
 * Claim @n consecutive free frames for a map (F_FREE -> F_CLAIMED) and
 * start their lifetimes. Returns the first, or -1.
 */
/*
 * Recently freed frames, reused first (as Linux's per-CPU free lists
 * hand out hot pages): a frame comes back at once, while operations that
 * looked at its earlier lifetime may still be running.
 */
#define HOT 16
static _Atomic int64_t hot[HOT];
static _Atomic uint64_t hot_n;

static void hot_init(void)
{
	for (int i = 0; i < HOT; i++)
		atomic_store(&hot[i], -1);
}

static void hot_push(uint64_t frame)
{
	atomic_store(&hot[atomic_fetch_add(&hot_n, 1) % HOT], (int64_t)frame);
}

int64_t alloc_frames(struct thr *t, uint64_t n)
{
	uint64_t start = rnd_below(t, g.cfg.nframes);

	if (n == 1 && chance(t, 75)) {
		uint64_t h = atomic_load(&hot_n);

		for (uint64_t i = 0; i < HOT && i < h; i++) {
			int64_t f = atomic_exchange(&hot[(h - 1 - i) % HOT],
						    -1);
			int want = F_FREE;

			if (f < 0 ||
			    (ps_page_load(pw((uint64_t)f)) &
			     (PS_PAGE_LIVE | PS_PAGE_FROZEN)) ||
			    !atomic_compare_exchange_strong(&g.fm[f].state,
							    &want, F_CLAIMED))
				continue;
			new_life((uint64_t)f);
			return f;
		}
	}

	for (uint64_t i = 0; i < g.cfg.nframes; i++) {
		uint64_t first = (start + i) % g.cfg.nframes, k;

		if (first + n > g.cfg.nframes)
			continue;
		for (k = 0; k < n; k++) {
			int want = F_FREE;
			uint64_t w = ps_page_load(pw(first + k));

			if ((w & (PS_PAGE_LIVE | PS_PAGE_FROZEN)) ||
			    !atomic_compare_exchange_strong(
				    &g.fm[first + k].state, &want, F_CLAIMED))
				break;
		}
		if (k == n) {
			for (k = 0; k < n; k++)
				new_life(first + k);
			return (int64_t)first;
		}
		while (k-- > 0)
			atomic_store(&g.fm[first + k].state, F_FREE);
	}
	return -1;
}

/* The map succeeded: the frame lives by the space's references now. */
void map_done(uint64_t frame)
{
	int want = F_CLAIMED;

	if (!atomic_compare_exchange_strong(&g.fm[frame].state, &want, F_INUSE))
		violation("(f) hooks: free hook during a successful map", 0,
			  UINT64_MAX, frame,
			  "frame %" PRIu64 " was mapped (the map returned 0) "
			  "but its owner state is %d: a free hook ran for it "
			  "while the map held its reference",
			  frame, want);
}

/*
 * The map failed. As space.h says: a frame that was free when the map
 * took it (the owner maps only free frames) is free again, and no free
 * hook runs for it, now or later: the owner may reuse it at once (F_LIMBO
 * here: reused after the next checkpoint, so a hook that still comes is
 * caught, not confused with the next lifetime).
 */
void map_failed(uint64_t frame)
{
	uint64_t w = ps_page_load(pw(frame));
	int s = F_CLAIMED;

	if (w & (PS_PAGE_LIVE | PS_PAGE_FROZEN))
		violation("(f) hooks: a failed map's frame is held", 0,
			  UINT64_MAX, frame,
			  "a failed map of frame %" PRIu64 " (free when the "
			  "map took it) returned, but the frame is not free "
			  "(word %#" PRIx64 "): space.h says it is free "
			  "again, with no hook to come",
			  frame, w);
	atomic_store(&g.fm[frame].limbo_epoch, atomic_load(&g.epoch));
	if (atomic_compare_exchange_strong(&g.fm[frame].state, &s, F_LIMBO))
		return;
	/*
	 * F_HOOKED: the free hook ran while the map was in flight, for a
	 * frame the map took free and gives back free (issue 15 #4: a
	 * speculative holder of the revived frame dropped it after the
	 * map's rollback). The owner reuses it: a second free.
	 */
	violation("(f) hooks: free hook once per lifetime", 0, UINT64_MAX,
		  frame,
		  "a failed map of frame %" PRIu64 " returned with the frame "
		  "in owner state %d (%s)",
		  frame, s,
		  s == F_HOOKED ? "the free hook ran for it while the map "
				  "held it: a second free"
				: "unexpected");
	atomic_store(&g.fm[frame].state, F_LIMBO);
}

/*
 * F_LIMBO frames go back to the pool two epochs later: an epoch ends when
 * every worker has completed an operation since it began, so by then every
 * operation that was in flight when the frame went F_LIMBO has ended, and with
 * it any put (a speculative pin's back-out, a lookup's put) whose free hook was
 * still to come. The hook runs inside the operation that dropped the reference.
 */
void limbo_reclaim(void)
{
	uint64_t e;

	if (pthread_mutex_trylock(&g.epoch_lock))
		return;
	e = atomic_load(&g.epoch);
	for (int i = 0; i < g.cfg.threads; i++)
		if (atomic_load(&g.thr[i].ops_done) <= g.epoch_snap[i])
			goto out;
	for (int i = 0; i < g.cfg.threads; i++)
		g.epoch_snap[i] = atomic_load(&g.thr[i].ops_done);
	atomic_store(&g.epoch, ++e);
	for (uint64_t f = 0; f < g.cfg.nframes; f++) {
		int s = F_LIMBO;

		if (atomic_load(&g.fm[f].state) != F_LIMBO ||
		    atomic_load(&g.fm[f].limbo_epoch) + 2 > e ||
		    ps_page_is_live(pw(f)))
			continue;
		(void)atomic_compare_exchange_strong(&g.fm[f].state, &s,
						     F_FREE);
	}
out:
	pthread_mutex_unlock(&g.epoch_lock);
}

/* At a checkpoint: frames of failed maps go back to the pool. */
void limbo_to_free(void)
{
	for (uint64_t f = 0; f < g.cfg.nframes; f++) {
		int s = atomic_load(&g.fm[f].state);

		if (s != F_LIMBO)
			continue;
		if (ps_page_is_live(pw(f)))
			violation("(b) refs: a failed map's frame is held", 0,
				  UINT64_MAX, f,
				  "frame %" PRIu64 " was free after a failed "
				  "map but is LIVE at a quiescent checkpoint",
				  f);
		atomic_store(&g.fm[f].state, F_FREE);
	}
}

static bool held_now(uint64_t frame, int *kind)
{
	bool held = false;

	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS; i++) {
		struct hold *h = &g.holds[i];

		if (h->kind && h->frame == frame && !h->t_rel) {
			*kind = h->kind;
			held = true;
			break;
		}
	}
	pthread_mutex_unlock(&g.hold_lock);
	return held;
}

void hook_free(void *ctx, struct ps_space *space, uint64_t frame)
{
	struct fmodel *m = &g.fm[frame % g.cfg.nframes];
	uint64_t w = ps_page_load(pw(frame));
	int kind;

	(void)ctx;
	(void)space;
	if (huge_frame(frame)) {
		huge_hook_free(frame); /* huge.c's model */
		return;
	}
	if (w & PS_PAGE_LIVE)
		violation("(f) hooks: free hook for a LIVE frame", 0,
			  UINT64_MAX, frame,
			  "free_frame(%" PRIu64 ") ran but the frame is LIVE",
			  frame);
	if (held_now(frame, &kind))
		violation("(b) refs: free hook for a held frame", 0, UINT64_MAX,
			  frame,
			  "free_frame(%" PRIu64
			  ") ran while a %s is held on it",
			  frame, kind == H_PIN ? "pin" : "kmap");
	atomic_fetch_add(&m->frees, 1);
	atomic_store(&m->t_free, tick());
	for (;;) {
		int s = atomic_load(&m->state);
		int next;

		switch (s) {
		case F_INUSE:
		case F_AWAIT:
			next = F_FREE;
			hot_push(frame);
			break;
		case F_CLAIMED:
			next = F_HOOKED;
			break;
		case F_LIMBO:
			violation("(f) hooks: free hook once per lifetime", 0,
				  UINT64_MAX, frame,
				  "free_frame(%" PRIu64 ") ran after a failed "
				  "map gave the frame back free (space.h: no "
				  "hook for it, now or later): a second free",
				  frame);
			return;
		default:
			violation("(f) hooks: free hook for a free frame", 0,
				  UINT64_MAX, frame,
				  "free_frame(%" PRIu64 ") ran for a frame "
				  "the allocator has in state %d (free, or "
				  "already freed in this lifetime)",
				  frame, s);
			return;
		}
		if (atomic_compare_exchange_strong(&m->state, &s, next))
			return;
	}
}

void hook_dirty(void *ctx, struct ps_space *space, uint64_t frame)
{
	struct fmodel *m = &g.fm[frame % g.cfg.nframes];
	int s = atomic_load(&m->state);
	uint64_t w = ps_page_load(pw(frame));

	(void)ctx;
	(void)space;
	if (huge_frame(frame)) {
		huge_hook_dirty(frame); /* huge.c's model */
		return;
	}
	/*
	 * F_CLAIMED: a map is installing the frame, and a write through the
	 * entry it installed may mark it before the owner learns that the
	 * map returned. (A late mark of an earlier lifetime looks the same
	 * here; the CPU write's S3 check catches what it leads to.)
	 */
	if (s != F_INUSE && s != F_AWAIT && s != F_CLAIMED) {
		violation("(f) hooks: dirty hook for a freed frame", 0,
			  self && self->probing ? self->probe_addr : UINT64_MAX,
			  frame,
			  "set_page_dirty(%" PRIu64 ") ran for a frame the "
			  "owner has in state %d (not in use: freed); page "
			  "word %#" PRIx64,
			  frame, s, w);
		return;
	}
	if (!(w & PS_PAGE_LIVE))
		violation("(f) hooks: dirty hook for a freed frame", 0,
			  UINT64_MAX, frame,
			  "set_page_dirty(%" PRIu64 ") ran for a frame that "
			  "is not LIVE (word %#" PRIx64 ")",
			  frame, w);
	/*
	 * The write being made looked at this frame in an earlier lifetime:
	 * if the frame is not mapped at that address now, the mark belongs
	 * to the old lifetime (a write fault or mark_dirty that held no
	 * reference, issue 15 #1).
	 */
	if (self && self->probing && self->probe_frame == frame &&
	    atomic_load(&m->gen) != self->probe_gen) {
		ps_pte_t e = 0;

		(void)ps_pgtable_get(g.pt, self->probe_addr, &e);
		if (!ps_pte_is_present(e) || ps_pte_frame(e) != frame)
			violation("(f) hooks: dirty hook for a freed frame", 0,
				  self->probe_addr, frame,
				  "set_page_dirty(%" PRIu64 ") ran for the "
				  "write at %#" PRIx64 " that found the frame "
				  "in lifetime %" PRIu64 "; it is in lifetime "
				  "%" PRIu64 " now and no longer mapped there",
				  frame, self->probe_addr, self->probe_gen,
				  atomic_load(&m->gen));
	}
	atomic_fetch_add(&m->hooks, 1);
	atomic_store(&m->t_dirty, tick());
}

/* Caller holds mm_lock; frames [first, first + n) are F_CLAIMED. */
int map_locked(uint64_t addr, uint64_t n, uint64_t first, unsigned int flags)
{
	int rc;

	for (uint64_t k = 0; k < n; k++)
		fill_frame(first + k);
	rc = ps_space_map_range(g.sp, addr, n * PG, first, flags, NULL);
	for (uint64_t k = 0; k < n; k++) {
		if (!rc) {
			atomic_store(&g.pm[page_of(addr) + k].frame,
				     (int64_t)(first + k));
			map_done(first + k);
		} else {
			map_failed(first + k);
		}
	}
	return rc;
}

int hook_populate(void *ctx, struct ps_space *space, uint64_t addr,
		  unsigned int access)
{
	struct thr *t = self;
	int64_t f;
	int rc;

	(void)ctx;
	(void)space;
	(void)access;
	if (addr >= g.size)
		return -EFAULT; /* the huge region (huge.c): always mapped */
	pthread_mutex_lock(&g.mm_lock);
	if (atomic_load(&g.pm[page_of(addr)].frame) >= 0) {
		pthread_mutex_unlock(&g.mm_lock);
		return 0; /* mapped meanwhile: the caller retries */
	}
	f = alloc_frames(t, 1);
	if (f < 0) {
		pthread_mutex_unlock(&g.mm_lock);
		return -ENOMEM;
	}
	rc = map_locked(addr, 1, (uint64_t)f, PS_MAP_WRITE);
	pthread_mutex_unlock(&g.mm_lock);
	if (t) {
		uint64_t n = atomic_load(&t->nlog);
		struct oplog *l = &t->log[n % LOG_LEN];

		/* Logged inside the operation that faulted. */
		atomic_store_explicit(&l->tick, atomic_load(&g.clock),
				      memory_order_relaxed);
		atomic_store_explicit(&l->addr, addr, memory_order_relaxed);
		atomic_store_explicit(&l->frame, (uint64_t)f,
				      memory_order_relaxed);
		atomic_store_explicit(&l->aux, 1, memory_order_relaxed);
		atomic_store_explicit(&l->kind, OP_POPULATE,
				      memory_order_relaxed);
		atomic_store_explicit(&l->rc, rc, memory_order_relaxed);
		atomic_store(&t->nlog, n + 1);
	}
	return rc;
}

/* --- write and harvest records (c) -------------------------------------- */

/*
 * Which writes a region's harvest channel must report. The scan region's
 * channel is the page table's WP_MATCHING scan, which sees entry writes
 * only: device writes there go to the space's dirty log, which nobody
 * checks in that region. A zap counts as written in async regions (issue
 * 15 #8, Linux's behaviour).
 */
bool write_counts(enum region r, enum wkind k)
{
	switch (r) {
	case REG_SCAN:
		return k == WK_CPU || k == WK_ZAP;
	case REG_ASYNC:
		return true;
	case REG_SYNC:
	case REG_SHARED:
	case REG_UNREG:
		return k != WK_ZAP;
	default:
		return false;
	}
}

static void store_max(_Atomic uint64_t *x, uint64_t v)
{
	uint64_t old = atomic_load(x);

	while (old < v && !atomic_compare_exchange_weak(x, &old, v))
		;
}

void record_write(uint64_t addr, enum wkind k)
{
	struct pmodel *m = &g.pm[page_of(addr)];

	if (!write_counts(region_of(addr), k))
		return;
	store_max(&m->w, tick());
	atomic_store(&m->wkind, (int)k);
	atomic_store(&m->wthread, self ? self->id : -1);
}

/*
 * @addr lost its page (the caller holds mm_lock). @dontneed: a
 * balloon's discard or MADV_DONTNEED (PS_UNMAP_ZAP), which an async range
 * counts as a write; not a munmap, after which the page is new memory.
 */
void record_zap(uint64_t addr, bool dontneed)
{
	struct pmodel *m = &g.pm[page_of(addr)];
	enum region r = region_of(addr);
	uint64_t t0;

	/*
	 * Under mm_lock, which populate needs: no write reached the page
	 * since the zap, so every write recorded before now preceded it (a
	 * write may be recorded after the call began, before its
	 * invalidation's callback took the vCPU's TLB lock).
	 */
	t0 = tick();
	atomic_store(&m->zapped, t0);
	if (dontneed && (r == REG_SCAN || r == REG_ASYNC)) {
		/*
		 * A write not yet reported stays owed: the zap of a written
		 * page leaves a WRITTEN marker, which the next harvest
		 * reports (#8). The zap itself is no write: a page re-armed
		 * since its last write was protected, and its zap leaves
		 * nothing to report, as in Linux.
		 */
	} else {
		/*
		 * A balloon's page: its contents are gone and nobody reads
		 * them, so the writes before the zap need no report.
		 */
		uint64_t w = atomic_load(&m->w);

		while (w && w < t0 &&
		       !atomic_compare_exchange_weak(&m->w, &w, 0))
			;
	}
}

void record_report(uint64_t addr, uint64_t t)
{
	store_max(&g.pm[page_of(addr)].h, t);
}

/* --- held pins and CPU maps (b, d) ------------------------------------- */

int hold_add(int kind, uint64_t frame, uint64_t addr, unsigned int flags)
{
	int rec = -1;

	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS; i++) {
		struct hold *h = &g.holds[i];

		if (h->kind)
			continue;
		h->kind = kind;
		h->thread = self ? self->id : -1;
		h->frame = frame;
		h->addr = addr;
		h->flags = flags;
		h->t_acq = tick();
		h->t_rel = 0;
		h->dev_wrote = false;
		rec = i;
		break;
	}
	pthread_mutex_unlock(&g.hold_lock);
	if (rec < 0) {
		fprintf(stderr, "soak: the hold registry is full\n");
		_exit(3);
	}
	return rec;
}

void hold_release(int rec)
{
	pthread_mutex_lock(&g.hold_lock);
	g.holds[rec].t_rel = tick();
	pthread_mutex_unlock(&g.hold_lock);
}

void hold_drop(int rec)
{
	pthread_mutex_lock(&g.hold_lock);
	g.holds[rec].kind = 0;
	pthread_mutex_unlock(&g.hold_lock);
}

void hold_set_dev_wrote(int rec, bool v)
{
	pthread_mutex_lock(&g.hold_lock);
	g.holds[rec].dev_wrote = v;
	pthread_mutex_unlock(&g.hold_lock);
}
