// SPDX-License-Identifier: MIT
/*
 * tests/soak/check.c - the invariants.
 *
 * Continuously (the checker thread, while the workers run):
 *   (a) no entry is writable and write-protected at once, and every entry
 *       is valid (ps_pte_valid());
 *   (b) every pin and CPU map the registry says is held: its frame is
 *       LIVE, pinned (WRITE_PINNED for a pin for write), CPU-mapped and
 *       accessible;
 *   (e) the IOMMU sweep (secondary.c).
 * At each quiescent checkpoint (every worker parked at a barrier):
 *   (a) again, plus: each present entry's frame is the shadow mapping's,
 *       in use, LIVE, and its entry agrees with the frame's cache mode and
 *       encryption state; a writable entry has a dirty frame (S3);
 *   (b) every frame's references = its mappings + held pins + one if any
 *       CPU map is held (the maps share one reference), pins and CPU-map
 *       counts exact; a frame the owner has free is
 *       free in its page word (not LIVE, FROZEN, LOCKED, WRITEBACK or
 *       DIRTY);
 *   (c) every frame that is not DIRTY has the contents write-back last
 *       wrote (no write escaped write-back); a frame pinned for write is
 *       DIRTY; then a final harvest of every channel, and every recorded
 *       write is covered by a later report;
 *   (f) in each frame's lifetime, dirty hooks - write-back cleans = 1 if
 *       DIRTY, else 0 (one hook per clean-to-dirty transition, and none
 *       carried over from an earlier lifetime).
 */
#include "soak.h"

#include <inttypes.h>
#include <stdlib.h>

void check_entries_live(void)
{
	ps_pgtable_read_lock();
	for (uint64_t p = 0; p < g.npages; p++) {
		ps_pte_t e = ps_pgtable_lookup(g.pt, p * PG);

		if (!ps_pte_valid(e) ||
		    (ps_pte_is_present(e) && ps_pte_is_writable(e) &&
		     ps_pte_uffd_wp(e)))
			violation("(a) entry writable and write-protected", 0,
				  p * PG, UINT64_MAX,
				  "entry %#" PRIx64 " at %#" PRIx64 " is %s", e,
				  p * PG,
				  ps_pte_valid(e) ? "writable and uffd-wp"
						  : "not valid");
	}
	ps_pgtable_read_unlock();
}

void check_holds_live(void)
{
	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS; i++) {
		struct hold *h = &g.holds[i];
		uint64_t w;
		bool bad;

		if (!h->kind || h->t_rel)
			continue;
		w = ps_page_load(pw(h->frame));
		if (h->kind == H_PIN)
			bad = !(w & PS_PAGE_LIVE) || !ps_page_word_pins(w) ||
			      ((h->flags & PS_PIN_WRITE) &&
			       !(w & PS_PAGE_WRITE_PINNED));
		else
			bad = !(w & PS_PAGE_LIVE) ||
			      (w & PS_PAGE_INACCESSIBLE) ||
			      !ps_prot_kmap_count(g.sp, h->frame);
		if (bad) {
			struct hold c = *h;

			pthread_mutex_unlock(&g.hold_lock);
			violation("(b) a held pin or CPU map", 0, c.addr,
				  c.frame,
				  "thread %d holds a %s (flags %#x) of frame "
				  "%" PRIu64 " since tick %" PRIu64
				  ", but its word is %#" PRIx64,
				  c.thread, c.kind == H_PIN ? "pin" : "kmap",
				  c.flags, c.frame, c.t_acq, w);
		}
	}
	pthread_mutex_unlock(&g.hold_lock);
}

static void check_entry(uint64_t p, ps_pte_t e, uint64_t *maps)
{
	int64_t sf = atomic_load(&g.pm[p].frame);
	uint64_t addr = p * PG, f, w;
	int s;

	if (!ps_pte_is_present(e)) {
		if (sf >= 0)
			violation("(b) shadow mapping", 0, addr, (uint64_t)sf,
				  "the shadow maps %#" PRIx64
				  " to frame %" PRId64
				  " but the entry is %#" PRIx64,
				  addr, sf, e);
		return;
	}
	f = ps_pte_frame(e);
	if (f >= g.cfg.nframes || (int64_t)f != sf)
		violation("(b) shadow mapping", 0, addr, f,
			  "the entry at %#" PRIx64 " maps frame %" PRIu64
			  ", the shadow says %" PRId64,
			  addr, f, sf);
	maps[f]++;
	w = ps_page_load(pw(f));
	s = atomic_load(&g.fm[f].state);
	if (!(w & PS_PAGE_LIVE) || (s != F_INUSE && s != F_AWAIT))
		violation("(b) a mapped frame is not in use", 0, addr, f,
			  "frame %" PRIu64 " is mapped at %#" PRIx64
			  " (word %#" PRIx64 ", owner state %d)",
			  f, addr, w, s);
	if (ps_pte_is_writable(e) && !(w & PS_PAGE_DIRTY))
		violation("(c) writable entry on a clean frame", 0, addr, f,
			  "entry %#" PRIx64 " is writable, frame %" PRIu64
			  " is clean (S3)",
			  e, f);
	if (ps_pte_cache(e) != ps_page_word_cache(w))
		violation("(b) entry and frame disagree on the cache mode", 0,
			  addr, f, "entry %#" PRIx64 ", word %#" PRIx64, e, w);
	if (ps_pte_is_encrypted(e) != !!(w & PS_PAGE_PRIVATE))
		violation("(b) entry and frame disagree on encryption", 0, addr,
			  f, "entry %#" PRIx64 ", word %#" PRIx64, e, w);
}

static bool same_contents(uint64_t f)
{
	for (uint64_t i = 0; i < PG_WORDS; i++)
		if (atomic_load_explicit(&frame_words(f)[i],
					 memory_order_relaxed) !=
		    atomic_load_explicit(&backing_words(f)[i],
					 memory_order_relaxed))
			return false;
	return true;
}

static void check_frame(uint64_t f, uint64_t maps, uint64_t pins,
			uint64_t wpins, uint64_t kmaps, bool devw)
{
	struct fmodel *m = &g.fm[f];
	/* The CPU maps of a frame hold one reference between them (P5). */
	uint64_t w = ps_page_load(pw(f)), exp = maps + pins + (kmaps != 0);
	uint64_t hooks = atomic_load(&m->hooks),
		 cleans = atomic_load(&m->cleans);
	unsigned int km = ps_prot_kmap_count(g.sp, f);
	int s = atomic_load(&m->state);

	if (s == F_FREE || s == F_LIMBO) {
		if (exp || (w & (PS_PAGE_LIVE | PS_PAGE_FROZEN)) || km)
			violation("(b) a free frame is in use", 0, UINT64_MAX,
				  f,
				  "the owner has frame %" PRIu64 " free (state "
				  "%d) but it has %" PRIu64
				  " mappings, %" PRIu64 " pins, %" PRIu64
				  " CPU maps held",
				  f, s, maps, pins, kmaps);
		if (w & (PS_PAGE_LOCKED | PS_PAGE_WRITEBACK))
			violation("(b) a free frame is LOCKED or WRITEBACK", 0,
				  UINT64_MAX, f,
				  "free frame %" PRIu64 ": word %#" PRIx64, f,
				  w);
		if (w & PS_PAGE_DIRTY)
			violation("(b) a free frame is DIRTY", 0, UINT64_MAX, f,
				  "free frame %" PRIu64 " keeps DIRTY: its "
				  "next lifetime starts dirty",
				  f);
		return;
	}
	if (s != F_INUSE && s != F_AWAIT)
		violation("(b) owner state at a checkpoint", 0, UINT64_MAX, f,
			  "frame %" PRIu64 " in state %d at quiescence", f, s);
	if (!(w & PS_PAGE_LIVE))
		violation("(b) references: an in-use frame is not LIVE", 0,
			  UINT64_MAX, f,
			  "frame %" PRIu64 " (owner state %d) is not LIVE and "
			  "no free hook ran; expected %" PRIu64 " references",
			  f, s, exp);
	if (ps_page_word_refs(w) != exp || ps_page_word_pins(w) != pins ||
	    km != kmaps)
		violation("(b) references and pins balance", 0, UINT64_MAX, f,
			  "frame %" PRIu64 ": %" PRIu64 " refs, %" PRIu64
			  " pins, %u CPU maps; the model holds %" PRIu64
			  " mappings + %" PRIu64 " pins + %" PRIu64
			  " CPU maps, which hold one reference (nothing else "
			  "may hold it at quiescence)",
			  f, ps_page_word_refs(w), ps_page_word_pins(w), km,
			  maps, pins, kmaps);
	if (w & (PS_PAGE_LOCKED | PS_PAGE_WRITEBACK | PS_PAGE_FROZEN))
		violation("(b) a frame is LOCKED, WRITEBACK or FROZEN at "
			  "quiescence",
			  0, UINT64_MAX, f, "frame %" PRIu64 ": word %#" PRIx64,
			  f, w);
	if (wpins && !(w & PS_PAGE_WRITE_PINNED))
		violation("(b) pinned for write without WRITE_PINNED", 0,
			  UINT64_MAX, f, "frame %" PRIu64 ": word %#" PRIx64, f,
			  w);
	if (wpins && !(w & PS_PAGE_DIRTY))
		violation("(c) a frame pinned for write is clean", 0,
			  UINT64_MAX, f,
			  "frame %" PRIu64 " has %" PRIu64 " pins for write "
			  "but is not DIRTY: a device write now escapes "
			  "write-back",
			  f, wpins);
	if (hooks - cleans != !!(w & PS_PAGE_DIRTY))
		violation("(f) hooks: one dirty hook per clean-to-dirty "
			  "transition",
			  0, UINT64_MAX, f,
			  "frame %" PRIu64 " lifetime %" PRIu64 ": %" PRIu64
			  " dirty hooks, %" PRIu64 " write-back cleans, "
			  "DIRTY %s",
			  f, atomic_load(&m->gen), hooks, cleans,
			  w & PS_PAGE_DIRTY ? "set" : "clear");
	if (!(w & PS_PAGE_DIRTY) && !devw && !same_contents(f))
		violation("(c) a write escaped write-back", 0, UINT64_MAX, f,
			  "frame %" PRIu64 " is clean but its contents differ "
			  "from what write-back last wrote",
			  f);
}

void checkpoint(struct thr *t, bool final)
{
	uint64_t nf = g.cfg.nframes;
	uint64_t *maps = calloc(5 * nf, sizeof(uint64_t));
	uint64_t *pins = maps + nf, *wpins = pins + nf, *kmaps = wpins + nf;
	uint64_t *devw = kmaps + nf;
	uint64_t astart = g.reg_start[REG_ASYNC] * PG, t0;

	if (!maps)
		abort();
	op_begin(t, OP_CHECKPOINT, UINT64_MAX, "entries");
	check_entries_live();
	for (uint64_t p = 0; p < g.npages; p++) {
		ps_pte_t e = 0;

		(void)ps_pgtable_get(g.pt, p * PG, &e);
		check_entry(p, e, maps);
	}
	op_phase(t, "frames");
	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS; i++) {
		struct hold *h = &g.holds[i];

		if (!h->kind || h->t_rel)
			continue;
		if (h->kind == H_KMAP) {
			kmaps[h->frame]++;
			continue;
		}
		pins[h->frame]++;
		wpins[h->frame] += !!(h->flags & PS_PIN_WRITE);
		devw[h->frame] |= h->dev_wrote;
	}
	pthread_mutex_unlock(&g.hold_lock);
	for (uint64_t f = 0; f < nf; f++)
		check_frame(f, maps[f], pins[f], wpins[f], kmaps[f], devw[f]);
	op_phase(t, "final harvest");
	t0 = tick();
	(void)harvest_range(t, astart, g.size - astart, true);
	/* S6: a page pinned for write is reported by every harvest. */
	pthread_mutex_lock(&g.hold_lock);
	for (int i = 0; i < MAX_HOLDS; i++) {
		struct hold h = g.holds[i];

		if (h.kind != H_PIN || h.t_rel || !(h.flags & PS_PIN_WRITE) ||
		    region_of(h.addr) == REG_SCAN ||
		    atomic_load(&g.pm[page_of(h.addr)].frame) !=
			    (int64_t)h.frame ||
		    atomic_load(&g.pm[page_of(h.addr)].h) > t0)
			continue;
		pthread_mutex_unlock(&g.hold_lock);
		violation("(c) a page pinned for write is not harvested", 0,
			  h.addr, h.frame,
			  "thread %d holds a pin for write of frame %" PRIu64
			  " at %#" PRIx64 " (since tick %" PRIu64 "), but the "
			  "checkpoint's harvest did not report the page",
			  h.thread, h.frame, h.addr, h.t_acq);
	}
	pthread_mutex_unlock(&g.hold_lock);
	(void)scan_range(t, g.reg_start[REG_SCAN] * PG, g.cfg.reg_pages * PG);
	for (uint64_t p = 0; p < g.npages; p++) {
		struct pmodel *m = &g.pm[p];
		uint64_t w = atomic_load(&m->w), h = atomic_load(&m->h);

		if (w > h)
			violation("(c) a recorded write is in no harvest", 0,
				  p * PG, UINT64_MAX,
				  "%s at %#" PRIx64 " (tick %" PRIu64
				  ", thread %d) was reported by no harvest "
				  "since (the latest report: tick %" PRIu64
				  "), not even the checkpoint's own",
				  wkind_name(atomic_load(&m->wkind)), p * PG, w,
				  atomic_load(&m->wthread), h);
	}
	op_phase(t, "huge region");
	huge_checkpoint(final);
	op_phase(t, "iommu");
	iommu_sweep();
	limbo_to_free();
	free(maps);
	atomic_fetch_add(&g.checkpoints, 1);
	op_end(t, OP_CHECKPOINT, UINT64_MAX, UINT64_MAX, final, 0);
}

void check_after_destroy(void)
{
	for (uint64_t f = 0; f < g.cfg.nframes; f++) {
		int s = atomic_load(&g.fm[f].state);
		uint64_t w = ps_page_load(pw(f));

		if ((s != F_FREE && s != F_LIMBO) || (w & PS_PAGE_LIVE))
			violation("(f) hooks: a frame was not freed by destroy",
				  0, UINT64_MAX, f,
				  "after ps_space_destroy(), frame %" PRIu64
				  " is in owner state %d, word %#" PRIx64,
				  f, s, w);
	}
}
