// SPDX-License-Identifier: MIT
/*
 * lib/space.c - the address space (pagestate/space.h): its lifetime, what
 * replaces one frame by another at an address (map, map_range, unmap and
 * the zap they share), and what the space lends the modules above it
 * (lib/space-internal.h). Its other concerns have their own files, listed
 * with the rules they state in lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol and guarantees (cited by tests/test-space.c as S1..S14; this
 * file states S1, S7, S8, S13 and S20; S2 and S14 are in lib/space-pin.c, S3 in
 * lib/space-fault.c, S4, S9 and S12 in lib/space-writeback.c, S5, S6 and
 * S11 in lib/space-dirty.c, S10 in lib/space-discard.c, S15..S18, the huge
 * frames', in lib/space-huge.c, S19 in lib/space-writeback.c)
 * ---------------------------------------------------------------------------
 *
 * S1  Map, map_range, unmap and discard serialise on the writer mutex: they are
 *     the only operations that replace one frame by another at an address.
 *     Everything else changes entries only by the page table's transitions
 *     (faults, protect, the write-back's write-protect), which never change the
 *     frame. The modules above take the same mutex (ps__space_writer_lock())
 *     for what must not see a frame replaced (prot's conversion and mprotect).
 *
 * S7  Where the hooks run. Never inside the page table's RCU read-side
 *     section: zapped frames are collected and put after the zap returns
 *     (one exception: if growing the collection runs out of memory, that
 *     frame is put inside the zap, and a free_frame hook may run there).
 *     Library locks held when they run:
 *       - populate: none;
 *       - dirty: the frame's LOCKED bit, whoever runs it (a write fault:
 *         a CPU fault, a pin for write; mark_dirty; an unpin with
 *         PS_UNPIN_DIRTY; the secondary-map helper, which also holds the
 *         caller's own lock, taken after the bit; write-back's
 *         re-dirtying, which also holds the frame's WRITEBACK bit; S5);
 *       - free_frame: the space's writer mutex when map or map_range (a
 *         failed map giving references back), unmap or discard runs it;
 *         none from unpin, a pin's back-out, the helper, kunmap, destroy,
 *         a write fault or mark_dirty (which hold the frame they mark, and
 *         let go with no lock held) or write-back (which holds a reference
 *         of its own on the frame it visits, so the frame is not freed
 *         while fn copies it, and drops it after fn, with no lock held);
 *       - notifier callbacks: the writer mutex in unmap, discard, a failed
 *         map's rollback of the entries it installed, and prot's conversion
 *         and mprotect; the LOCKED bits of the frames being written back in
 *         write-back's PROTECTION invalidation (every frame to write in its
 *         range, and no other: write-back locks, invalidates and writes a
 *         run of pages at a time); none in a REARM harvest.
 *     So a hook run under the writer mutex must not map, map_range, unmap,
 *     discard, convert or mprotect in that space; one run under frames'
 *     LOCKED bits must not write-fault, pin for write, mark dirty, unpin
 *     dirty, write back or kmap those frames (each would wait for the lock it
 *     runs under): for write-back's callback, the pages of its range (any
 *     other page is free of it).
 *
 * S8  Progress: see the table in pagestate/space.h. Retry loops (pin, secondary
 *     map, a write fault, mark_dirty) retry only because another thread changed
 *     the entry or the frame, except the wait for a frozen frame (a conversion,
 *     or a map that claimed it, S13), which yields.
 *
 * S13 A failed map gives back exactly what it took, and the free hook runs once
 *     per frame lifetime whatever races with it. A map takes each frame with
 *     ps_page_get_or_freeze(): a LIVE frame gains the mapping's reference; a
 *     free one is claimed, frozen with no reference and its mode unchanged (the
 *     map sets the mode PS_MAP_CACHE asks for when it commits, so a claim given
 *     back needs no record of the old one). A frozen frame fails every try-get
 *     and try-pin (pins, write faults, mark_dirty, write-back, the
 *     secondary-map helper, kmap, lookups of an older mapping of the frame on
 *     their way out): whoever finds the map's entry before the map commits
 *     waits for it, as for a conversion, and never marks the frame or runs a
 *     hook for it; no one else can change its mode or freeze it. Only once the
 *     map cannot fail any more (every run installed) does it unfreeze its
 *     claimed frames with the mapping's one reference (release), clearing
 *     PS_PAGE_LIFE_FLAGS again and setting the mode in the same step, whatever
 *     a stale flag setter left on the word meanwhile. So a claimed frame that
 *     the map gives back was never held by anyone else: it goes back free with
 *     its old mode, and no hook runs; its owner may reuse it at once. A frame
 *     that was LIVE loses the map's reference, and if that was the last (its
 *     other holders let go meanwhile), its lifetime ends there with the free
 *     hook, under the writer mutex (S7). Before, a free frame was revived at
 *     once: a stale speculative pin could take a reference to it before the
 *     rollback, whose put was then not the last, and the pin's later back-out
 *     freed it again (issue 15 #4).
 *
 * S20 Bounded work: a map works in chunks of PS__SPACE_MAP_CHUNK pages of
 *     address space (64 MiB, aligned; a huge unit that crosses a boundary
 *     ends its chunk), each taken and installed under the writer mutex, all
 *     or nothing, and lets the mutex go between chunks. Nothing is kept per
 *     page: the frame of page k is first_frame + k, and under the mutex a
 *     frozen frame that an entry of the map names is the map's own claim (every
 *     other freezer, a conversion, a cache-mode change, a discard, holds the
 *     mutex while its frames are frozen; a huge frame's split holds a word
 *     frozen only inside its own step, and the huge path tells them apart,
 *     lib/space-huge.c). While the mutex is let go, the part installed so far
 *     is reserved (struct ps__space_resv, on the mapper's stack, linked under
 *     the mutex): unmap and discard of a range that meets it, and every taker
 *     of ps__space_writer_lock() (prot's conversion, mprotect, cache mode,
 *     kmap; the frame-order declaration), wait on the space's condition until
 *     the map is done, because they would put references the map has not given,
 *     or wait for its frozen frames holding the mutex the map needs to finish.
 *     A map that reaches the reserved part finds its entries and fails -EEXIST;
 *     one of a later part may win, and this map fails -EEXIST there. Claimed
 *     frames stay frozen until every chunk is in, so S13 holds for the whole
 *     call: a later chunk's failure takes the earlier chunks' entries back
 *     (invalidated) and gives their frames back, chunk by chunk under the
 *     mutex, before the reservation goes; then the commit, chunk by chunk,
 *     unfreezes them. A fault or pin that finds a claimed frame waits (yields,
 *     S8) holding no lock, and the huge write fault lets the mutex go before it
 *     yields. Between chunks the
 *     mapper hands the mutex to a waiter (ps__space_writer_take() counts them;
 *     the mutex is not fair). Unmap and destroy zap a chunk at a time too (a 1
 *     GiB leaf whole), unmap inside one invalidation and letting the mutex go
 *     between chunks, so the frames collected for the puts stay bounded.
 *     Discard goes a chunk at a time the same way (lib/space-discard.c).
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "hbitmap.h"
#include "space-impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

/* --- accessors ------------------------------------------------------------ */

struct ps_page *ps_space_page(struct ps_space *s, uint64_t frame)
{
	return frame < s->nframes ? &s->frames[frame] : NULL;
}

struct ps_pgtable *ps_space_pgtable(struct ps_space *s)
{
	return s->pt;
}

struct ps_notifier *ps_space_notifier(struct ps_space *s)
{
	return &s->notifier;
}

/* --- what the space lends the modules above it (space-internal.h) --------- */

struct ps_page *ps__space_frames(struct ps_space *s, uint64_t *nframes)
{
	*nframes = s->nframes;
	return s->frames;
}

uint64_t ps__space_size(const struct ps_space *s)
{
	return s->size;
}

struct ps__space_ext *ps__space_ext_add(struct ps_space *s,
					struct ps__space_ext *ext)
{
	/*
	 * Acquire: pairs with the release CAS that added the head, so the
	 * nodes walked below are seen complete.
	 */
	struct ps__space_ext *head = atomic_load_explicit(&s->exts.head,
							  memory_order_acquire);

	for (;;) {
		struct ps__space_ext *e;

		for (e = head; e; e = e->next)
			if (e->key == ext->key)
				return e; /* another's: the caller's goes */
		ext->next = head;
		/*
		 * Release: @ext and its container are complete before any
		 * ps__space_ext_find() returns it (pairs with its acquire).
		 * Acquire on failure, as the load above.
		 */
		if (atomic_compare_exchange_weak_explicit(&s->exts.head, &head,
							  ext,
							  memory_order_release,
							  memory_order_acquire))
			return ext;
	}
}

/* Run every extension's finaliser: the space is going away. */
static void exts_fini(struct ps_space *s)
{
	/* Relaxed: no other thread uses the space any more. */
	struct ps__space_ext *e = atomic_load_explicit(&s->exts.head,
						       memory_order_relaxed);

	while (e) {
		struct ps__space_ext *next = e->next;

		e->fini(e);
		e = next;
	}
}

void ps__space_frame_put(struct ps_space *s, uint64_t frame)
{
	/* A unit, or a frame of a huge frame: lib/space-huge.c (S17, S18). */
	if (PS_UNLIKELY(ps__space_huge(s))) {
		ps__space_put_unit(s, frame);
		return;
	}
	if (ps_page_put(&s->frames[frame]))
		ps__space_frame_freed(s, frame);
}

/* --- lifetime ------------------------------------------------------------- */

/*
 * Every frame has an entry form. The arrays indexed by frame (a
 * library-allocated page-word array, 8 bytes a frame; the long-term pin
 * counts, 4 bytes, S14) stay well within a 47-bit address space.
 */
PS_STATIC_ASSERT(PS_SPACE_NFRAMES_MAX - 1 <= PS_PTE_FRAME_MAX,
		 "frames beyond what an entry can name");
PS_STATIC_ASSERT(PS_SPACE_NFRAMES_MAX * 12 <= (UINT64_C(1) << 46),
		 "frame arrays beyond half a 47-bit address space");
PS_STATIC_ASSERT((PS_PGTABLE_ADDR_END >> PS_PGTABLE_PAGE_SHIFT) <=
			 PS__HBM_MAX_BITS,
		 "pages beyond the dirty log and the write-back set");

int ps_space_create(const struct ps_space_config *cfg, struct ps_space **out)
{
	struct ps_space *s;
	uint64_t npages, born;
	int rc;

	if (!cfg || !out || !cfg->size || (cfg->size & (PAGE_SIZE - 1)) ||
	    cfg->size > PS_PGTABLE_ADDR_END || !cfg->nframes ||
	    cfg->nframes > PS_SPACE_NFRAMES_MAX)
		return -EINVAL;
	rc = ps__fork_born(&born);
	if (rc)
		return rc; /* -ECHILD: a child of a plain fork() */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->born = born;
	npages = cfg->size >> PAGE_SHIFT;
	s->size = cfg->size;
	s->nframes = cfg->nframes;
	s->hooks = cfg->hooks;
	rc = INJECT(FP_CREATE_MUTEX, 0, NULL);
	if (rc || pthread_mutex_init(&s->writer, NULL)) {
		/* EAGAIN, ENOMEM (EPERM, EBUSY, EINVAL: not with no attrs). */
		free(s);
		return -ENOMEM;
	}
	if (pthread_cond_init(&s->resv_gone, NULL)) {
		pthread_mutex_destroy(&s->writer);
		free(s);
		return -ENOMEM;
	}
	rc = -ENOMEM;
	if (cfg->frames) {
		s->frames = cfg->frames;
	} else {
		if (cfg->nframes > SIZE_MAX / sizeof(struct ps_page))
			goto fail;
		s->frames_bytes = (size_t)cfg->nframes * sizeof(struct ps_page);
		/* Zero-filled on first touch: a zero word is a free frame. */
		s->frames_map = mmap(NULL, s->frames_bytes,
				     PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS |
					     MAP_NORESERVE,
				     -1, 0);
		if (s->frames_map == MAP_FAILED) {
			s->frames_map = NULL;
			goto fail;
		}
		s->frames = s->frames_map;
	}
	s->pt = ps_pgtable_create();
	if (!s->pt)
		goto fail;
	rc = ps_notifier_init(&s->notifier);
	if (rc)
		goto fail_pt;
	rc = ps__hbm_init(&s->log, npages);
	if (!rc) /* the unit marks (lib/space-log.c) */
		rc = ps__hbm_init(&s->log2m,
				  (npages + (UINT64_C(1) << PS_SPACE_ORDER_2M) -
				   1) >> PS_SPACE_ORDER_2M);
	if (!rc)
		rc = ps__hbm_init(&s->log1g,
				  (npages + (UINT64_C(1) << PS_SPACE_ORDER_1G) -
				   1) >> PS_SPACE_ORDER_1G);
	if (!rc)
		rc = ps__hbm_init(&s->wb, npages);
	if (rc)
		goto fail_bitmaps;
	atomic_init(&s->exts.head, NULL); /* no extension yet */
	atomic_init(&s->longterm, NULL);  /* no long-term pin yet (S14) */
	atomic_init(&s->huge, NULL);	  /* no huge frame yet (S15) */
	atomic_init(&s->writer_wanted, 0);
	atomic_init(&s->writer_handoffs, 0);
	*out = s;
	return 0;

fail_bitmaps:
	ps__hbm_destroy(&s->log);
	ps__hbm_destroy(&s->log2m);
	ps__hbm_destroy(&s->log1g);
	ps__hbm_destroy(&s->wb);
	(void)ps_notifier_destroy(&s->notifier);
fail_pt:
	ps_pgtable_destroy(s->pt);
fail:
	if (s->frames_map)
		munmap(s->frames_map, s->frames_bytes);
	pthread_cond_destroy(&s->resv_gone);
	pthread_mutex_destroy(&s->writer);
	free(s);
	return rc;
}

/* --- zapping and dropping references (S7) --------------------------------- */

/*
 * Frames a zap removed, kept until the zap has returned (S7). In a space with
 * huge frames they are kept as runs (frames[2i], frames[2i + 1]: the first
 * frame and how many follow it), so that a huge leaf costs one record, not
 * 512, and a whole frame is put as one unit (lib/space-huge.c, S17).
 */
struct zapped {
	struct ps_space *s;
	uint64_t *frames;
	size_t n, cap;
	bool runs;
};

/* Keep frames [@frame, @frame + @count) to put after the zap. */
static void collect(struct zapped *z, uint64_t frame, uint64_t count)
{
	if (!z->runs && count > 1) {
		/* 4 KiB frames under a huge leaf (a collapse): one by one. */
		for (uint64_t k = 0; k < count; k++)
			collect(z, frame + k, 1);
		return;
	}
	if (z->runs && z->n &&
	    z->frames[z->n - 2] + z->frames[z->n - 1] == frame) {
		z->frames[z->n - 1] += count; /* the run goes on */
		return;
	}
	if (z->n + 2 > z->cap) {
		size_t cap = z->cap ? 2 * z->cap : 256;
		uint64_t *f = realloc(z->frames, cap * sizeof(*f));

		if (!f) {
			/* Out of memory: drop it here, inside the section. */
			if (z->runs)
				ps__space_put_run(z->s, frame, count);
			else
				ps__space_frame_put(z->s, frame);
			return;
		}
		z->frames = f;
		z->cap = cap;
	}
	z->frames[z->n++] = frame;
	if (z->runs)
		z->frames[z->n++] = count;
}

/*
 * The zap's visitor (PS_ZAP_UNITS): a 4 KiB entry, or a whole huge leaf told
 * of once, its order in the low bits of @addr, so that destroying or
 * unmapping huge memory costs per leaf, not per 4 KiB page.
 */
static void collect_frame(void *ctx, uint64_t addr, ps_pte_t old,
			  ps_pte_t new_pte)
{
	struct zapped *z = ctx;
	const uint64_t count = UINT64_C(1) << (addr & (PAGE_SIZE - 1));

	(void)new_pte;
	if (!ps_pte_is_present(old) || ps_pte_frame(old) >= z->s->nframes ||
	    count > z->s->nframes - ps_pte_frame(old))
		return;
	collect(z, ps_pte_frame(old), count);
}

/*
 * Zap [start, start + len) and drop the mappings' references once the zap
 * has returned: outside the page table's read-side section, so the free
 * hook may do anything (S7). The zap skips empty parts of the table, so a
 * sparse range costs its mapped pages, not its size. Returns the zap's
 * error: -ENOMEM leaves the pages from the huge entry it could not split on
 * mapped, with their references.
 */
static int zap_and_put(struct ps_space *s, uint64_t start, uint64_t len,
		       unsigned int zap_flags)
{
	struct zapped z = {s, NULL, 0, 0, ps__space_huge(s) != NULL};
	/*
	 * -ENOMEM: a huge entry the range covers in part could not be split;
	 * the entries before it are zapped (and put below), the rest not.
	 */
	const int rc = ps_pgtable_zap(s->pt, start, len,
				      zap_flags | PS_ZAP_UNITS, collect_frame,
				      &z);

	/*
	 * S2 - seq_cst fence: the zap's entry CASes come before any read of the
	 * frames' pins by whoever frees them; pairs with the pin path's seq_cst
	 * pin and seq_cst re-read (lib/space-pin.c).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	for (size_t i = 0; i < z.n; i += z.runs ? 2 : 1)
		if (z.runs)
			ps__space_put_run(s, z.frames[i], z.frames[i + 1]);
		else
			ps__space_frame_put(s, z.frames[i]);
	free(z.frames);
	return rc;
}

/*
 * The end of the zap chunk (S20) that begins at address @a, at most @end: the
 * next 64 MiB boundary, or the end of a 1 GiB leaf that crosses it (a zap of
 * part of a leaf would split it, and the frame's state with it).
 */
uint64_t ps__space_chunk_next(struct ps_space *s, uint64_t a, uint64_t end)
{
	const uint64_t gib = UINT64_C(1) << (PS_PGTABLE_ORDER_1G + PAGE_SHIFT);
	uint64_t b = (a | ((PS__SPACE_MAP_CHUNK << PAGE_SHIFT) - 1)) + 1;
	unsigned int order;
	ps_pte_t e, leaf;

	if (b < end && (b & (gib - 1)) &&
	    !ps_pgtable_get_level(s->pt, b, &e, &order, &leaf) &&
	    order == PS_PGTABLE_ORDER_1G)
		b = (b | (gib - 1)) + 1;
	return b < end ? b : end;
}

bool ps__space_inherited(const struct ps_space *space)
{
	return ps__fork_inherited(space->born);
}

int ps_space_destroy(struct ps_space *s)
{
	struct ps_notifier_stats st;

	if (!s || ps__fork_inherited(s->born))
		return 0; /* in a child, an inherited space is only forgotten */
	ps_notifier_get_stats(&s->notifier, &st);
	if (st.subscriptions)
		return -EBUSY;
	/* A chunk at a time: the frames collected stay bounded (S20). */
	for (uint64_t a = 0, b; a < s->size; a = b) {
		b = ps__space_chunk_next(s, a, s->size);
		(void)zap_and_put(s, a, b - a, PS_ZAP_UNMAP);
	}
	ps_pgtable_destroy(s->pt);
	(void)ps_notifier_destroy(&s->notifier);
	ps__hbm_destroy(&s->log);
	ps__hbm_destroy(&s->log2m);
	ps__hbm_destroy(&s->log1g);
	ps__hbm_destroy(&s->wb);
	ps__space_pins_fini(s);
	ps__space_huge_fini(s);
	ps__space_ledger_fini(s);
	exts_fini(s);
	if (s->frames_map)
		munmap(s->frames_map, s->frames_bytes);
	pthread_cond_destroy(&s->resv_gone);
	pthread_mutex_destroy(&s->writer);
	free(s);
	return 0;
}

/* --- mapping -------------------------------------------------------------- */

/* The cache mode PS_MAP_CACHE asks for, or -1 (keep the frame's). */
static int map_mode(unsigned int flags)
{
	return flags & PS_MAP_CACHE_SET ? (int)((flags & PS_MAP_CACHE_MASK) >>
						PS_MAP_CACHE_SHIFT)
					: -1;
}

/*
 * S13: give back what a failed map took of @frame. Under the writer mutex a
 * frozen frame that a map's entry names is that map's claim (S20: every other
 * freezer holds the mutex while its frames are frozen): it was frozen all
 * along, nobody else took it, looked at its mode or froze it, so it goes back
 * free exactly as it was (the map sets the mode only when it commits) and no
 * hook runs (its owner never saw it mapped). A frame that was LIVE loses the
 * map's reference; if that was the last one (its other holders let go
 * meanwhile), this put ends its lifetime and runs the free hook, as any last
 * put does.
 */
static void untake_frame(struct ps_space *s, uint64_t frame)
{
	struct ps_page *p = &s->frames[frame];

	if (ps_page_load(p) & PS_PAGE_FROZEN) {
		(void)ps_page_unfreeze_change_flags(p, 0, 0, 0);
		return;
	}
	if (ps_page_put(p))
		ps__space_frame_freed(s, frame);
}

/*
 * Take a mapping's reference on @frame: a LIVE frame gains a reference (and
 * must have the mode @mode asks for); a free one is claimed, frozen with none
 * and its mode unchanged, until the map commits (S13). Nothing is kept per
 * frame: the FROZEN bit says what was claimed (untake_frame()).
 */
static int take_frame(struct ps_space *s, uint64_t frame, int mode)
{
	struct ps_page *p = &s->frames[frame];
	uint64_t w;
	int rc;

	rc = ps_page_get_or_freeze(p, -1, NULL);
	if (rc < 0)
		return rc;
	w = ps_page_load(p);
	if (w & PS_PAGE_POISONED) {
		untake_frame(s, frame);
		return -EHWPOISON;
	}
	if (rc == 0 && mode >= 0 && ps_page_word_cache(w) != (unsigned)mode) {
		untake_frame(s, frame);
		return -EBUSY; /* LIVE in another mode */
	}
	return 0;
}

/* The entry flags of a frame the map holds (its word is stable: held). */
static uint64_t frame_pte_flags(struct ps_space *s, uint64_t frame,
				unsigned int flags, int mode)
{
	const uint64_t w = ps_page_load(&s->frames[frame]);

	return (flags & PS_MAP_WRITE ? PS_PTE_MAYWRITE : 0) |
	       PS_PTE_CACHE(mode >= 0 ? (unsigned)mode
				      : ps_page_word_cache(w)) |
	       (w & PS_PAGE_PRIVATE ? PS_PTE_ENC : 0);
}

/*
 * What a page taken back by a failed map gets for its entry @e: the map's
 * page was unprotected, so it counts as written (pgtable.h); in a range
 * registered async, where that is tracked, it becomes a WRITTEN marker,
 * as an async zap of it would leave.
 */
static ps_pte_t untaken_entry(struct ps_space *s, uint64_t addr, ps_pte_t e)
{
	unsigned int flags;

	if (ps_pte_uffd_wp(e))
		return ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);
	if (!ps_pgtable_registration(s->pt, addr, &flags) &&
	    (flags & PS_WP_ASYNC))
		return ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN);
	return PS_PTE_NONE;
}

/*
 * Take back the entries a map installed at pages [i, j) of [@start, ...):
 * each entry that still maps its frame (@first_frame + k at page k) goes
 * back to what the page held before the map, which had to be none, a lone
 * UFFD_WP marker or a WRITTEN marker (pgtable.h). The map kept a UFFD_WP
 * marker's protection as the entry's uffd-wp bit, so an entry with that bit
 * becomes the marker again: a failed map drops no write protection. (A protect
 * that raced with the map and set the bit leaves a marker too: more protection
 * than it would have, never less.) A map over a WRITTEN marker installs a
 * written page (written pages of async ranges are what that marker records), so
 * in an async range an entry without the bit becomes the WRITTEN marker: a
 * failed map drops no written page. Where the page was none, the rollback
 * cannot tell (the map keeps no record of what it replaced), and the page is
 * reported written once: the written page the map installed was visible until
 * now, and an async zap of it would leave the same marker. Outside async ranges
 * an entry without the bit becomes none. (A WRITTEN marker outside an async
 * range is a leftover of an earlier async registration, which unregister kept:
 * a failed map over it loses it. This rollback runs only when a store raced
 * into the range against pgtable.h's exclusion rules, or when a later chunk of
 * the map failed, S20.) Pages without such an entry are left alone. Under the
 * writer mutex no other thread maps a frame here (S1), and no unmap or discard
 * reaches an installed chunk (S20); faults may still set accessed, dirty or
 * writable bits, and protect the uffd-wp bit: the CAS then looks again.
 */
static void unmap_installed(struct ps_space *s, uint64_t start,
			    uint64_t first_frame, uint64_t i, uint64_t j)
{
	for (uint64_t k = i; k < j; k++) {
		uint64_t addr = start + (k << PAGE_SHIFT);
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e))
			continue;
		while (ps_pte_is_present(e) &&
		       ps_pte_frame(e) == first_frame + k &&
		       ps_pgtable_cmpxchg(s->pt, addr, &e,
					  untaken_entry(s, addr, e)) == -EAGAIN)
			;
	}
}

/*
 * Map frames first + [i, j) (references already taken) at their pages, all or
 * nothing. The page table checks every page and allocates every level before it
 * installs anything, so -EEXIST and -ENOMEM install nothing (under the writer
 * mutex nobody else maps here, S1), and after ps_pgtable_map_prepare() neither
 * can happen at all. Any other failure (the test build's injection: a run
 * refused part-way, as only a store racing into the range against pgtable.h's
 * exclusion rules could) may leave part of the run installed: the caller takes
 * it back (undo_installed()); the other pages are still vacant.
 */
static int map_run(struct ps_space *s, uint64_t start, uint64_t first_frame,
		   uint64_t i, uint64_t j, uint64_t pte_flags)
{
	uint64_t addr = start + (i << PAGE_SHIFT), len = (j - i) << PAGE_SHIFT;
	int rc = INJECT(FP_MAP_RUN, addr, &len);

	if (len) {
		int done = ps_pgtable_map(s->pt, addr, len, first_frame + i,
					  pte_flags);

		if (done)
			rc = done;
	}
	return rc;
}

/*
 * A failed map takes back the entries it installed at pages [@i, @j), inside
 * an UNMAP invalidation, as an unmap would: they were visible, so the
 * secondary-map helper may have mapped one of them meanwhile (its retry check
 * sees no change of frame that no invalidation brackets), and the mapping it
 * made must go before the frames are given back and mapped elsewhere. The
 * callbacks run under the writer mutex, as an unmap's do (S7).
 */
static void undo_installed(struct ps_space *s, uint64_t start,
			   uint64_t first_frame, uint64_t i, uint64_t j)
{
	const uint64_t a = start + (i << PAGE_SHIFT), len = (j - i)
							    << PAGE_SHIFT;

	if (j <= i)
		return;
	/* Blockable: it cannot fail (notifier.h). */
	(void)ps_notifier_invalidate_start(&s->notifier, a, len,
					   PS_NOTIFIER_UNMAP, 0);
	unmap_installed(s, start, first_frame, i, j);
	(void)ps_notifier_invalidate_end(&s->notifier, a, len);
}

/*
 * Errors say where: the first page of pages [@i, @j) of [@start, ...) that a
 * map may not replace (pgtable.h's -EEXIST): an entry other than none, a
 * lone UFFD_WP marker or a WRITTEN marker. The caller holds the writer
 * mutex (S1), so only a store racing into the range against pgtable.h's
 * exclusion rules can have removed it since: then @i.
 */
uint64_t ps__space_first_occupied(struct ps_space *s, uint64_t start,
				  uint64_t i, uint64_t j)
{
	for (uint64_t k = i; k < j; k++) {
		ps_pte_t e;

		if (!ps_pgtable_get(s->pt, start + (k << PAGE_SHIFT), &e) &&
		    e != PS_PTE_NONE &&
		    e != ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP) &&
		    !ps_pte_is_written_marker(e))
			return k;
	}
	return i;
}

/* --- maps in chunks (S20) ------------------------------------------------- */

void ps__space_writer_take(struct ps_space *s)
{
	/*
	 * Relaxed: a hint for a chunked map between chunks (S20), which only
	 * yields on it; the mutex orders everything the two share.
	 */
	atomic_fetch_add_explicit(&s->writer_wanted, 1, memory_order_relaxed);
	pthread_mutex_lock(&s->writer);
	atomic_fetch_sub_explicit(&s->writer_wanted, 1, memory_order_relaxed);
	/* Relaxed: the same hint. */
	atomic_fetch_add_explicit(&s->writer_handoffs, 1, memory_order_relaxed);
}

/*
 * Between two chunks of a map (S20), the mutex let go: if a thread waits for
 * it, yield until one has had it (or a bounded number of times), since this
 * thread would otherwise take it straight back and the waiter would wait for
 * the whole map after all.
 */
void ps__space_writer_hand_off(struct ps_space *s)
{
	/* Relaxed: hints (see ps__space_writer_take()). */
	const uint32_t h = atomic_load_explicit(&s->writer_handoffs,
						memory_order_relaxed);

	for (unsigned int n = 0;
	     n < 64 &&
	     atomic_load_explicit(&s->writer_wanted, memory_order_relaxed) &&
	     atomic_load_explicit(&s->writer_handoffs, memory_order_relaxed) ==
		     h;
	     n++)
		sched_yield();
}

void ps__space_writer_lock_range(struct ps_space *s, uint64_t start,
				 uint64_t len)
{
	ps__space_writer_take(s);
	for (;;) {
		const struct ps__space_resv *r = s->resv;

		while (r && (start >= r->end || r->start >= start + len))
			r = r->next;
		if (!r)
			return;
		/* An installed chunk of a map in progress: wait (S20). */
		pthread_cond_wait(&s->resv_gone, &s->writer);
	}
}

void ps__space_writer_lock(struct ps_space *s)
{
	ps__space_writer_lock_range(s, 0, s->size);
}

void ps__space_writer_unlock(struct ps_space *s)
{
	pthread_mutex_unlock(&s->writer);
}

/* The end (a page of the call) of the chunk that begins at page @i. */
uint64_t ps__space_chunk_end(const struct ps__space_map *m, uint64_t i)
{
	const uint64_t p0 = m->start >> PAGE_SHIFT;
	const uint64_t e = ((p0 + i) | (PS__SPACE_MAP_CHUNK - 1)) + 1 - p0;

	return e < m->npages ? e : m->npages;
}

int ps__space_map_chunked(const struct ps__space_map *m, uint64_t *where)
{
	struct ps_space *s = m->s;
	struct ps__space_resv r = {m->start, m->start, NULL}, **pp;
	uint64_t i = 0, e = 0, end;
	bool linked = false;
	int rc = 0;

	ps__space_writer_take(s);
	for (;;) {
		rc = m->step(m, i, &e, where);
		if (rc || e >= m->npages)
			break;
		/*
		 * More to do: the installed part is reserved (unmap, discard
		 * and the modules above wait for it; a map that reaches it
		 * finds its entries and fails -EEXIST), and the mutex let go,
		 * so that others' maps, unmaps and faults elsewhere proceed.
		 */
		i = e;
		r.end = m->start + (i << PAGE_SHIFT);
		if (!linked) {
			r.next = s->resv;
			s->resv = &r;
			linked = true;
		}
		pthread_mutex_unlock(&s->writer);
		FAILPOINT(FP_MAP_CHUNK, r.end);
		ps__space_writer_hand_off(s);
		ps__space_writer_take(s);
	}
	/*
	 * Failed in a later chunk (the step gave back its own): the chunks
	 * before it go. Or done: every chunk commits (S13: only now can the
	 * map not fail any more). Chunk by chunk, letting the mutex go
	 * between them.
	 */
	end = rc ? i : m->npages;
	for (uint64_t k = 0; k < end;) {
		k = rc ? m->undo(m, k) : m->commit(m, k);
		if (k < end) {
			pthread_mutex_unlock(&s->writer);
			ps__space_writer_hand_off(s);
			ps__space_writer_take(s);
		}
	}
	if (linked) {
		for (pp = &s->resv; *pp != &r; pp = &(*pp)->next)
			;
		*pp = r.next;
		pthread_cond_broadcast(&s->resv_gone);
	}
	pthread_mutex_unlock(&s->writer);
	return rc;
}

/*
 * One chunk of a map of 4 KiB frames, pages [@i, *@e), under the writer mutex,
 * all or nothing. References first (a free frame claimed, frozen: S13), then
 * entries, so a reader never finds an entry whose frame lacks the mapping's
 * reference; while no entry is installed, no pin or fault can find the frames.
 * A run of frames with the same cache and encryption state is mapped with one
 * page-table map, which checks its pages and allocates its levels before it
 * installs anything. With several runs, the page table is prepared for the
 * whole chunk first (every page vacant, every level allocated), so that no run
 * can fail once one is visible. A pin racing with the map finds each page
 * either not yet mapped, or mapped for good (a claimed frame frozen until the
 * map commits: the pin waits for it, as for a conversion).
 */
static int map_step(const struct ps__space_map *m, uint64_t i, uint64_t *e,
		    uint64_t *where)
{
	struct ps_space *s = m->s;
	const uint64_t end = ps__space_chunk_end(m, i), ff = m->first_frame;
	uint64_t k, nruns = 0, prev = 0, a = i, b = i;
	int rc = 0;

	*e = end;
	for (k = i; k < end; k++) {
		uint64_t fl;

		rc = take_frame(s, ff + k, m->mode);
		if (rc)
			break;
		fl = frame_pte_flags(s, ff + k, m->flags, m->mode);
		if (k == i || fl != prev)
			nruns++;
		prev = fl;
	}
	FAILPOINT(FP_MAP_TAKEN, m->start + (i << PAGE_SHIFT));
	/* Errors say where: the frame that could not be taken. */
	*where = k;
	if (!rc && nruns > 1) {
		rc = ps_pgtable_map_prepare(s->pt, m->start + (i << PAGE_SHIFT),
					    (end - i) << PAGE_SHIFT);
		if (rc == -EEXIST)
			*where = ps__space_first_occupied(s, m->start, i, end);
	}
	while (!rc && a < end) {
		const uint64_t fl = frame_pte_flags(s, ff + a, m->flags,
						    m->mode);

		for (b = a + 1; b < end && frame_pte_flags(s, ff + b, m->flags,
							   m->mode) == fl;
		     b++)
			;
		rc = map_run(s, m->start, ff, a, b, fl);
		if (!rc)
			a = b;
		else if (rc == -EEXIST)
			*where = ps__space_first_occupied(s, m->start, a, b);
	}
	/* Entries installed; the frames the map claimed still frozen. */
	FAILPOINT(FP_MAP_INSTALLED, m->start + (i << PAGE_SHIFT));
	if (rc) {
		/*
		 * Only a store racing into the range against the exclusion
		 * rules (pgtable.h) fails a run after the prepare: then the
		 * runs mapped before [a, ...) go, and what the failed run
		 * installed (-EEXIST: nothing; its pages may hold entries of
		 * others, which stay), and every reference taken.
		 */
		undo_installed(s, m->start, ff, i,
			       rc == -EEXIST || b <= a ? a : b);
		/* S2 - seq_cst fence: entries gone before the puts. */
		atomic_thread_fence(memory_order_seq_cst);
		for (uint64_t n = i; n < k; n++)
			untake_frame(s, ff + n);
	}
	return rc;
}

/* A later chunk failed: take back chunk [@i, ...) whole (S20). */
static uint64_t map_undo(const struct ps__space_map *m, uint64_t i)
{
	const uint64_t end = ps__space_chunk_end(m, i);

	undo_installed(m->s, m->start, m->first_frame, i, end);
	/* S2 - seq_cst fence: entries gone before the puts. */
	atomic_thread_fence(memory_order_seq_cst);
	for (uint64_t k = i; k < end; k++)
		untake_frame(m->s, m->first_frame + k);
	return end;
}

/*
 * S13: the map can no longer fail: the frames it claimed go LIVE with the
 * mapping's reference, in the mode it asks for, and without the life flags a
 * stale setter may have left on the frozen word: a new lifetime starts clean
 * (release: pairs with the acquire of the try-gets and try-pins that find
 * them). S9: once the entries are there, write-back can reach a frame that
 * is pinned or dirty.
 */
static uint64_t map_commit(const struct ps__space_map *m, uint64_t i)
{
	const uint64_t end = ps__space_chunk_end(m, i);

	for (uint64_t k = i; k < end; k++) {
		struct ps_page *p = &m->s->frames[m->first_frame + k];
		const uint64_t w = ps_page_load(p);

		if (w & PS_PAGE_FROZEN)
			(void)ps_page_unfreeze_change_flags(
				p, 1,
				PS_PAGE_LIFE_FLAGS |
					(m->mode >= 0 ? PS_PAGE_CACHE_MASK : 0),
				m->mode >= 0 ? (uint64_t)m->mode
						       << PS_PAGE_CACHE_SHIFT
					     : 0);
		else if ((w & PS_PAGE_DIRTY) || ps_page_word_pins(w))
			ps__space_wb_note(m->s, m->start + (k << PAGE_SHIFT));
	}
	return end;
}

int ps_space_map_range(struct ps_space *s, uint64_t start, uint64_t len,
		       uint64_t first_frame, unsigned int flags,
		       uint64_t *error_offset)
{
	struct ps__space_map m = {.s = s,
				  .start = start,
				  .npages = len >> PAGE_SHIFT,
				  .first_frame = first_frame,
				  .flags = flags,
				  .mode = map_mode(flags),
				  .step = map_step,
				  .undo = map_undo,
				  .commit = map_commit};
	uint64_t where = 0;
	int rc;

	if (!ps__space_range_ok(s, start, len) ||
	    (flags & ~(PS_MAP_WRITE | PS_MAP_CACHE_SET | PS_MAP_CACHE_MASK)) ||
	    (!(flags & PS_MAP_CACHE_SET) && (flags & PS_MAP_CACHE_MASK)) ||
	    ((flags & PS_MAP_CACHE_MASK) >> PS_MAP_CACHE_SHIFT) >=
		    PS_CACHE_NR ||
	    first_frame >= s->nframes || m.npages > s->nframes - first_frame)
		return -EINVAL;
	if (ps__space_huge(s)) { /* frames of three sizes: lib/space-huge.c */
		m.step = ps__space_map_huge_step;
		m.undo = ps__space_map_huge_undo;
		m.commit = ps__space_map_huge_commit;
	}
	PS__FORK_CHECK(s->born, "space");
	rc = ps__space_map_chunked(&m, &where);
	/* Every error but -EINVAL and -ENOMEM concerns a page. */
	if (rc && rc != -ENOMEM && error_offset)
		*error_offset = where << PAGE_SHIFT;
	return rc;
}

int ps_space_map(struct ps_space *s, uint64_t addr, uint64_t frame,
		 unsigned int flags)
{
	return ps_space_map_range(s, addr, PAGE_SIZE, frame, flags, NULL);
}

int ps_space_unmap(struct ps_space *s, uint64_t start, uint64_t len,
		   unsigned int flags)
{
	int rc, zrc = 0;

	if (!ps__space_range_ok(s, start, len) || (flags & ~PS_UNMAP_ZAP))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	/*
	 * S20: one invalidation brackets the whole zap, which goes a chunk at
	 * a time under the writer mutex, letting it go between chunks (and
	 * waiting for the part of a chunked map in progress a chunk meets),
	 * so that neither the mutex nor the frames collected for the puts
	 * grow with the range.
	 */
	ps__space_writer_take(s);
	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_UNMAP, 0);
	pthread_mutex_unlock(&s->writer);
	if (rc)
		return rc;
	for (uint64_t a = start, b = start; a < start + len && !zrc; a = b) {
		/* Under the mutex, no leaf appears between check and zap. */
		for (uint64_t c = ps__space_chunk_next(s, a, start + len);
		     c != b;) {
			if (b != a)
				pthread_mutex_unlock(&s->writer);
			b = c;
			ps__space_writer_lock_range(s, a, b - a);
			c = ps__space_chunk_next(s, a, start + len);
		}
		/* -ENOMEM (a huge entry not split): stop there, say so. */
		zrc = zap_and_put(s, a, b - a,
				  flags & PS_UNMAP_ZAP ? 0 : PS_ZAP_UNMAP);
		pthread_mutex_unlock(&s->writer);
		if (!zrc && b < start + len) {
			FAILPOINT(FP_UNMAP_CHUNK, b);
			ps__space_writer_hand_off(s);
		}
	}
	ps__space_writer_take(s);
	rc = ps_notifier_invalidate_end(&s->notifier, start, len);
	pthread_mutex_unlock(&s->writer);
	return rc ? rc : zrc;
}
