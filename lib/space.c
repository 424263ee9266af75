// SPDX-License-Identifier: MIT
/*
 * lib/space.c - the address space: a page table, the page words of its
 * frames, a notifier, a dirty log and a write-back set (pagestate/space.h).
 *
 * ---------------------------------------------------------------------------
 * Protocol and guarantees (cited by tests/test-space.c as S1..S8)
 * ---------------------------------------------------------------------------
 *
 * S1  Map, map_range, unmap and discard serialise on the writer mutex: they
 *     are the only operations that replace one frame by another at an
 *     address. Everything else changes entries only by the page table's
 *     transitions (faults, protect, the write-back's write-protect), which
 *     never change the frame.
 *
 * S2  Pin vs. entry change (Dekker). A pin reads entry e1, takes a
 *     speculative pin on e1's frame (an RMW on the page word), runs a
 *     seq_cst fence and reads the entry again (e2). An unmap or discard
 *     changes the entry (a page-table CAS), runs a seq_cst fence, then
 *     reads the frame's pins. So either the pin reads the new entry and
 *     backs out (dropping its pin, freeing the frame if that was the last
 *     reference), or the changer reads the pin. A pin that got past its
 *     re-check holds a frame that was mapped at the address at that
 *     instant.
 *
 * S3  Dirty before writable. An entry becomes writable only through
 *     ps_space_fault() (a write on MAYWRITE && !WRITE, or an async uffd-wp
 *     resolution). That fault takes the frame's LOCKED bit, runs the page
 *     table's fault, and if the write was allowed marks the frame DIRTY
 *     (and logs the address) before it drops the bit. Write-back takes the
 *     same bit around "write-protect the entry, then clear DIRTY". Hence a
 *     writable entry implies a dirty frame, whatever the interleaving, and a
 *     write during write-back faults and re-dirties the frame (never lost).
 *
 * S4  Write-back vs pins. Write-back clears DIRTY with an RMW on the page
 *     word (ps_page_fetch_clear_flags) and reads the pins in the value that
 *     RMW returns: pins and the DIRTY bit live in one word, so every pin is
 *     ordered before or after that clear. A pin before it makes the frame
 *     "pinned" for this write-back; a pin for write after it re-reads the
 *     entry, finds it write-protected (S2 then S3) and faults, dirtying the
 *     frame again.
 *
 * S5  Exactly-once dirty hook. DIRTY is set only by ps_page_test_and_set
 *     (ps__space_mark_frame_dirty()): the one caller that sees it clear
 *     runs the hook.
 *     The secondary-map helper marks only after its retry check, under the
 *     caller's lock, and only for a write.
 *
 * S6  Harvest never loses a mark. The dirty log is a three-level bitmap
 *     (lib/hbitmap.h): a mark made concurrently with a harvest is shown by
 *     it or stays for the next. A page pinned for write is kept in the log
 *     while its pins last, so every harvest until after the unpin reports
 *     it. With REARM, written entries of async ranges move into the log via
 *     the page table's get-and-rearm scan (its G7: a write racing the scan
 *     is reported by it or by the next one).
 *
 * S7  The hooks never run inside a library lock except the frame's LOCKED
 *     bit (the dirty hook, from a fault or write-back) and never inside an
 *     RCU read-side section: zapped frames are collected and put after the
 *     zap returns.
 *
 * S8  Progress: see the table in pagestate/space.h. Retry loops (pin,
 *     secondary map) retry only because another thread changed the entry or
 *     the frame, except the wait for a frozen frame (a conversion), which
 *     yields.
 */
#include <pagestate/prot.h>
#include <pagestate/space.h>

#include "hbitmap.h"
#include "space-internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Failpoints: in the test build only (-DPS_SPACE_FAILPOINTS, see
 * tests/meson.build), a hook runs at the windows of the races S2 is about,
 * so a test can make the racing change happen exactly there. Compiled out
 * of the library.
 */
#ifdef PS_SPACE_FAILPOINTS
void (*ps__space_failpoint)(int point, uint64_t addr);
#define FAILPOINT(point, addr)                                  \
	do {                                                    \
		if (ps__space_failpoint)                        \
			ps__space_failpoint((point), (addr));   \
	} while (0)
#else
#define FAILPOINT(point, addr) \
	do {                   \
	} while (0)
#endif
enum {
	FP_PIN_AFTER_LOOKUP = 1,   /* read the entry, no pin yet */
	FP_PIN_BEFORE_RECHECK,	   /* pinned, entry not re-read */
	FP_DISCARD_AFTER_CHECK,	   /* saw no pin, entry not zapped */
	FP_DISCARD_AFTER_ZAP,	   /* zapped, pins not re-checked */
};

#define PAGE_SHIFT PS_PGTABLE_PAGE_SHIFT
#define PAGE_SIZE PS_PGTABLE_PAGE_SIZE


/* --- small helpers ----------------------------------------------------------- */

static bool range_ok(const struct ps_space *s, uint64_t start, uint64_t len)
{
	return len && !(start & (PAGE_SIZE - 1)) && !(len & (PAGE_SIZE - 1)) &&
	       start < s->size && len <= s->size - start;
}

static uint64_t page_index(uint64_t addr)
{
	return addr >> PAGE_SHIFT;
}

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

/* The frame's last reference is gone: tell the owner. */
static void frame_freed(struct ps_space *s, uint64_t frame)
{
	if (s->hooks.free_frame)
		s->hooks.free_frame(s->hooks.ctx, s, frame);
}

void ps__space_frame_put(struct ps_space *s, uint64_t frame)
{
	if (ps_page_put(&s->frames[frame]))
		frame_freed(s, frame);
}

static void frame_unpin(struct ps_space *s, uint64_t frame)
{
	if (ps_page_unpin(&s->frames[frame]))
		frame_freed(s, frame);
}

/* S5: the one thread that sees DIRTY clear runs the hook. */
bool ps__space_mark_frame_dirty(struct ps_space *s, uint64_t frame)
{
	if (ps_page_test_and_set_flag(&s->frames[frame], PS_PAGE_DIRTY))
		return false;
	if (s->hooks.dirty)
		s->hooks.dirty(s->hooks.ctx, s, frame);
	return true;
}

/* The address was written: for migration (log) and write-back (wb). */
static void log_addr(struct ps_space *s, uint64_t addr)
{
	(void)ps__hbm_set(&s->log, page_index(addr));
	(void)ps__hbm_set(&s->wb, page_index(addr));
}

void ps__space_log_addr(struct ps_space *s, uint64_t addr)
{
	log_addr(s, addr);
}

/* The frame's LOCKED bit, a sleeping bit lock for the slow paths (S3). */
void ps__space_frame_lock(struct ps_page *p)
{
	for (unsigned int spins = 0;
	     ps_page_test_and_set_flag(p, PS_PAGE_LOCKED); spins++) {
		if (spins > 64)
			sched_yield();
	}
}

void ps__space_frame_unlock(struct ps_page *p)
{
	ps_page_clear_flags(p, PS_PAGE_LOCKED);
}

/*
 * WRITE_PINNED is set by pins for write and cleared lazily here, once the
 * frame has no pins at all: one CAS that requires pins == 0, so a pin
 * taken meanwhile keeps it.
 */
static void clear_write_pinned_if_unpinned(struct ps_page *p)
{
	enum ps__page_verdict why;
	uint64_t seen;

	/* Relaxed: a hint bit; harvest and write-back re-read the pins. */
	(void)ps__page_cas(p, PS_PAGE_WRITE_PINNED | PS_PAGE_PINS_MASK,
			   PS_PAGE_WRITE_PINNED, PS_PAGE_WRITE_PINNED, 0, 0, 0,
			   false, memory_order_relaxed, &seen, &why);
}

/* Pinned for write right now (a device may write the frame)? */
static bool write_pinned(uint64_t w)
{
	return (w & PS_PAGE_WRITE_PINNED) && ps_page_word_pins(w);
}

/* Entries compare equal for the pin re-check unless A/D bits moved. */
static bool same_mapping(ps_pte_t a, ps_pte_t b)
{
	const ps_pte_t ignore = PS_PTE_ACCESSED | PS_PTE_DIRTY;

	return (a & ~ignore) == (b & ~ignore);
}

/* --- lifetime --------------------------------------------------------------- */

int ps_space_create(const struct ps_space_config *cfg, struct ps_space **out)
{
	struct ps_space *s;
	uint64_t npages;
	int rc;

	if (!cfg || !out || !cfg->size || (cfg->size & (PAGE_SIZE - 1)) ||
	    cfg->size > PS_PGTABLE_ADDR_END || !cfg->nframes ||
	    cfg->nframes - 1 > PS_PTE_FRAME_MAX)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	npages = cfg->size >> PAGE_SHIFT;
	s->size = cfg->size;
	s->nframes = cfg->nframes;
	s->hooks = cfg->hooks;
	pthread_mutex_init(&s->writer, NULL);
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
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
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
	if (!rc)
		rc = ps__hbm_init(&s->wb, npages);
	if (!rc)
		rc = ps__hbm_init(&s->longterm, cfg->nframes);
	if (!rc)
		rc = ps__prot_space_init(s);
	if (rc)
		goto fail_bitmaps;
	*out = s;
	return 0;

fail_bitmaps:
	ps__prot_space_fini(s);
	ps__hbm_destroy(&s->log);
	ps__hbm_destroy(&s->wb);
	ps__hbm_destroy(&s->longterm);
	(void)ps_notifier_destroy(&s->notifier);
fail_pt:
	ps_pgtable_destroy(s->pt);
fail:
	if (s->frames_map)
		munmap(s->frames_map, s->frames_bytes);
	pthread_mutex_destroy(&s->writer);
	free(s);
	return rc;
}

/* --- zapping and dropping references (S7) ---------------------------------- */

/* Frames a zap removed, kept until the zap has returned (S7). */
struct zapped {
	struct ps_space *s;
	uint64_t *frames;
	size_t n, cap;
};

static void collect_frame(void *ctx, uint64_t addr, ps_pte_t old,
			  ps_pte_t new_pte)
{
	struct zapped *z = ctx;
	uint64_t frame;

	(void)addr;
	(void)new_pte;
	if (!ps_pte_is_present(old) || ps_pte_frame(old) >= z->s->nframes)
		return;
	frame = ps_pte_frame(old);
	if (z->n == z->cap) {
		size_t cap = z->cap ? 2 * z->cap : 256;
		uint64_t *f = realloc(z->frames, cap * sizeof(*f));

		if (!f) {
			/* Out of memory: drop it here, inside the section. */
			ps__space_frame_put(z->s, frame);
			return;
		}
		z->frames = f;
		z->cap = cap;
	}
	z->frames[z->n++] = frame;
}

/*
 * Zap [start, start + len) and drop the mappings' references once the zap
 * has returned: outside the page table's read-side section, so the free
 * hook may do anything (S7). The zap skips empty parts of the table, so a
 * sparse range costs its mapped pages, not its size.
 */
static void zap_and_put(struct ps_space *s, uint64_t start, uint64_t len,
			unsigned int zap_flags)
{
	struct zapped z = {s, NULL, 0, 0};

	(void)ps_pgtable_zap(s->pt, start, len, zap_flags, collect_frame, &z);
	/*
	 * S2 - seq_cst fence: the zap's entry CASes come before any read of
	 * the frames' pins by whoever frees them; pairs with the pin path's
	 * fence.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	for (size_t i = 0; i < z.n; i++)
		ps__space_frame_put(s, z.frames[i]);
	free(z.frames);
}

int ps_space_destroy(struct ps_space *s)
{
	struct ps_notifier_stats st;

	if (!s)
		return 0;
	ps_notifier_get_stats(&s->notifier, &st);
	if (st.subscriptions)
		return -EBUSY;
	zap_and_put(s, 0, s->size, PS_ZAP_UNMAP);
	ps_pgtable_destroy(s->pt);
	(void)ps_notifier_destroy(&s->notifier);
	ps__hbm_destroy(&s->log);
	ps__hbm_destroy(&s->wb);
	ps__hbm_destroy(&s->longterm);
	ps__prot_space_fini(s);
	if (s->frames_map)
		munmap(s->frames_map, s->frames_bytes);
	pthread_mutex_destroy(&s->writer);
	free(s);
	return 0;
}

/* --- mapping ------------------------------------------------------------------- */

/* What a map took from a frame, to give it back if the map fails. */
struct taken {
	bool revived;		/* the frame was free: this map revived it */
	uint8_t old_cache;	/* its cache mode before the revival */
	uint8_t new_cache;	/* the mode the revival gave it */
};

/*
 * Give back a reference a failed map took. If the map revived the frame
 * (it was free), the frame goes back to free without the free hook: its
 * owner never saw it mapped, and may already count it as free. A frame that
 * PS_MAP_CACHE revived with another mode gets its old mode back, unless it
 * was revived again meanwhile (then its new owner's mode stands).
 */
static void untake_frame(struct ps_space *s, uint64_t frame, struct taken t)
{
	struct ps_page *p = &s->frames[frame];
	enum ps__page_verdict why;
	uint64_t seen;
	bool freed = ps_page_put(p);

	if (!t.revived) {
		if (freed)
			frame_freed(s, frame);
		return;
	}
	if (!freed || t.old_cache == t.new_cache)
		return;
	/* Relaxed: the frame is free; whoever revives it acquires. */
	(void)ps__page_cas(p, PS_PAGE_LIVE | PS_PAGE_FROZEN | PS_PAGE_CACHE_MASK,
			   (uint64_t)t.new_cache << PS_PAGE_CACHE_SHIFT,
			   PS_PAGE_CACHE_MASK,
			   (uint64_t)t.old_cache << PS_PAGE_CACHE_SHIFT, 0, 0,
			   false, memory_order_relaxed, &seen, &why);
}

/* Take a mapping's reference on @frame and build its entry flags. */
static int take_frame(struct ps_space *s, uint64_t frame, unsigned int flags,
		      uint64_t *pte_flags, struct taken *t)
{
	struct ps_page *p = &s->frames[frame];
	unsigned int old_mode = 0;
	uint64_t w;
	int rc;

	if (flags & PS_MAP_CACHE_SET)
		rc = ps_page_get_or_revive_cache(
			p, (enum ps_cache_mode)((flags & PS_MAP_CACHE_MASK) >>
						PS_MAP_CACHE_SHIFT),
			&old_mode);
	else
		rc = ps_page_get_or_revive(p);
	if (rc < 0)
		return rc;
	w = ps_page_load(p);
	t->revived = rc == 1;
	t->new_cache = (uint8_t)ps_page_word_cache(w);
	t->old_cache = t->new_cache;
	if (t->revived && (flags & PS_MAP_CACHE_SET))
		t->old_cache = (uint8_t)old_mode;
	if (w & PS_PAGE_POISONED) {
		untake_frame(s, frame, *t);
		return -EHWPOISON;
	}
	*pte_flags = (flags & PS_MAP_WRITE ? PS_PTE_MAYWRITE : 0) |
		     PS_PTE_CACHE(ps_page_word_cache(w)) |
		     (w & PS_PAGE_PRIVATE ? PS_PTE_ENC : 0);
	return 0;
}

/* Map frames first + [i, j) (references already taken) at their pages. */
static int map_run(struct ps_space *s, uint64_t start, uint64_t first_frame,
		   uint64_t i, uint64_t j, uint64_t pte_flags)
{
	return ps_pgtable_map(s->pt, start + (i << PAGE_SHIFT),
			      (j - i) << PAGE_SHIFT, first_frame + i,
			      pte_flags);
}

int ps_space_map_range(struct ps_space *s, uint64_t start, uint64_t len,
		       uint64_t first_frame, unsigned int flags)
{
	uint64_t npages = len >> PAGE_SHIFT, run = 0, i, run_flags = 0;
	struct taken *taken; /* per page: what to give back on failure */
	int rc = 0;

	if (!range_ok(s, start, len) ||
	    (flags & ~(PS_MAP_WRITE | PS_MAP_CACHE_SET | PS_MAP_CACHE_MASK)) ||
	    (!(flags & PS_MAP_CACHE_SET) && (flags & PS_MAP_CACHE_MASK)) ||
	    ((flags & PS_MAP_CACHE_MASK) >> PS_MAP_CACHE_SHIFT) >= PS_CACHE_NR ||
	    first_frame >= s->nframes || npages > s->nframes - first_frame)
		return -EINVAL;
	taken = calloc(npages, sizeof(*taken));
	if (!taken)
		return -ENOMEM;
	pthread_mutex_lock(&s->writer);
	/*
	 * References first, then entries, so a reader never finds an entry
	 * whose frame lacks the mapping's reference. A run of frames with the
	 * same cache and encryption state is mapped with one page-table map;
	 * frames [run, i) are taken but not yet mapped.
	 */
	for (i = 0; i < npages; i++) {
		uint64_t f;

		rc = take_frame(s, first_frame + i, flags, &f, &taken[i]);
		if (rc)
			break;
		if (i > run && f != run_flags) {
			rc = map_run(s, start, first_frame, run, i, run_flags);
			if (rc) {
				i++; /* frame i is taken: undo it too */
				break;
			}
			run = i;
		}
		run_flags = f;
	}
	if (!rc)
		rc = map_run(s, start, first_frame, run, npages, run_flags);
	if (rc) {
		/*
		 * All or nothing: the mapped runs go first (entries, then
		 * references), then the frames taken but never mapped.
		 */
		uint64_t ntaken = i < npages ? i : npages;

		if (run)
			(void)ps_pgtable_zap(s->pt, start, run << PAGE_SHIFT,
					     PS_ZAP_UNMAP, NULL, NULL);
		/* S2 - seq_cst fence: entries gone before the puts. */
		atomic_thread_fence(memory_order_seq_cst);
		for (uint64_t k = 0; k < ntaken; k++)
			untake_frame(s, first_frame + k, taken[k]);
	}
	pthread_mutex_unlock(&s->writer);
	free(taken);
	return rc;
}

int ps_space_map(struct ps_space *s, uint64_t addr, uint64_t frame,
		 unsigned int flags)
{
	return ps_space_map_range(s, addr, PAGE_SIZE, frame, flags);
}

int ps_space_unmap(struct ps_space *s, uint64_t start, uint64_t len,
		   unsigned int flags)
{
	int rc;

	if (!range_ok(s, start, len) || (flags & ~PS_UNMAP_ZAP))
		return -EINVAL;
	pthread_mutex_lock(&s->writer);
	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_UNMAP, 0);
	if (!rc) {
		zap_and_put(s, start, len,
			    flags & PS_UNMAP_ZAP ? 0 : PS_ZAP_UNMAP);
		rc = ps_notifier_invalidate_end(&s->notifier, start, len);
	}
	pthread_mutex_unlock(&s->writer);
	return rc;
}

/* --- CPU access (S3) ------------------------------------------------------------ */

/* One fault, no populate (S3 for writes that make an entry writable). */
static enum ps_fault fault_once(struct ps_space *s, uint64_t addr,
				unsigned int access)
{
	enum ps_fault fr;
	ps_pte_t e, after;
	struct ps_page *p;

	if (ps_pgtable_get(s->pt, addr, &e))
		return PS_FAULT_INVALID;
	if (!(access & PS_ACCESS_WRITE) || !ps_pte_is_present(e) ||
	    ps_pte_is_writable(e) || ps_pte_frame(e) >= s->nframes)
		return ps_pgtable_fault(s->pt, addr, access);
	/* A write that may make the entry writable: dirty first (S3). */
	p = &s->frames[ps_pte_frame(e)];
	ps__space_frame_lock(p);
	fr = ps_pgtable_fault_pte(s->pt, addr, access, &after);
	if (fr == PS_FAULT_OK && ps_pte_is_present(after) &&
	    ps_pte_frame(after) < s->nframes) {
		ps__space_mark_frame_dirty(s, ps_pte_frame(after));
		log_addr(s, addr);
	}
	ps__space_frame_unlock(p);
	return fr;
}

/* The populate hook for a missing page: 0, or its error (-EFAULT without). */
static int populate(struct ps_space *s, uint64_t addr, unsigned int access)
{
	if (!s->hooks.populate)
		return -EFAULT;
	return s->hooks.populate(s->hooks.ctx, s, addr,
				 access & PS_ACCESS_WRITE ? PS_ACCESS_WRITE
							  : PS_ACCESS_READ);
}

enum ps_fault ps__space_fault_nopopulate(struct ps_space *s, uint64_t addr,
					 unsigned int access)
{
	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size)
		return PS_FAULT_INVALID;
	return fault_once(s, addr, access);
}

enum ps_fault ps_space_fault(struct ps_space *s, uint64_t addr,
			     unsigned int access)
{
	enum ps_fault fr;

	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size)
		return PS_FAULT_INVALID;
	fr = fault_once(s, addr, access);
	if (fr == PS_FAULT_MISSING && !populate(s, addr, access))
		fr = fault_once(s, addr, access);
	return fr;
}

/* Errno for a fault that did not let an access through. */
static int fault_errno(enum ps_fault fr)
{
	switch (fr) {
	case PS_FAULT_OK:
		return 0;
	case PS_FAULT_WP:
		return -EAGAIN;
	case PS_FAULT_POISONED:
		return -EHWPOISON;
	case PS_FAULT_INVALID:
		return -EINVAL;
	case PS_FAULT_MISSING:
	case PS_FAULT_GUARD:
	case PS_FAULT_BAD_ACCESS:
		break;
	}
	return -EFAULT;
}

/*
 * Fault @addr in for an internal user (pin, secondary map): 0 when the
 * access may proceed, else an errno, a populate hook's own included.
 */
static int fault_in(struct ps_space *s, uint64_t addr, unsigned int access)
{
	enum ps_fault fr = fault_once(s, addr, access);
	int rc;

	if (fr == PS_FAULT_MISSING) {
		rc = populate(s, addr, access);
		if (rc)
			return rc;
		fr = fault_once(s, addr, access);
	}
	return fault_errno(fr);
}

/*
 * Why a speculative grab of a frame failed, as an errno, or 0 to retry (the
 * frame went away or is being converted: look at the entry again).
 */
static int grab_failed(struct ps_page *p, uint64_t reject)
{
	uint64_t w = ps_page_load(p);

	if (w & PS_PAGE_POISONED)
		return -EHWPOISON;
	if ((w & PS_PAGE_LIVE) && (w & reject & PS_PAGE_PRIVATE))
		return -EPERM;
	if (w & PS_PAGE_FROZEN) {
		sched_yield(); /* a conversion holds it: wait (S8) */
		return 0;
	}
	if ((w & PS_PAGE_LIVE) && (ps_page_word_pins(w) >= PS_PAGE_PINS_MAX ||
				   ps_page_word_refs(w) >= PS_PAGE_REFS_MAX))
		return -EOVERFLOW;
	return 0; /* freed or replaced under us */
}

/* --- pins (S2) -------------------------------------------------------------------- */

/*
 * Pin the frame at @addr. Called inside the page table's read-side section,
 * which pin_range holds across all its pages (one section instead of one
 * per page: a urcu-bp section costs about 12 ns). The slow paths leave it:
 * faulting in (the populate and dirty hooks), waiting for a frozen frame,
 * and dropping a backed-out pin (the free hook), so no hook ever runs
 * inside it (S7).
 */
static int pin_one(struct ps_space *s, uint64_t addr, unsigned int flags,
		   uint64_t *frame_out)
{
	const bool write = flags & PS_PIN_WRITE;
	const uint64_t reject =
		PS_PAGE_POISONED | (flags & PS_PIN_PRIVATE ? 0 : PS_PAGE_PRIVATE);

	for (;;) {
		struct ps_page *p;
		ps_pte_t e1, e2;
		uint64_t frame;
		int rc;

		e1 = ps_pgtable_lookup(s->pt, addr);
		if (!ps_pte_is_present(e1) ||
		    (write && !ps_pte_is_writable(e1))) {
			/* Missing, or a write needs resolving: fault it in. */
			ps_pgtable_read_unlock();
			rc = fault_in(s, addr,
				      write ? PS_ACCESS_WRITE : PS_ACCESS_READ);
			ps_pgtable_read_lock();
			if (rc)
				return rc;
			continue;
		}
		frame = ps_pte_frame(e1);
		if (frame >= s->nframes)
			return -EFAULT;
		p = &s->frames[frame];
		FAILPOINT(FP_PIN_AFTER_LOOKUP, addr);
		if (!ps_page_try_pin_masked(p, 1, reject)) {
			ps_pgtable_read_unlock();
			rc = grab_failed(p, reject); /* may yield */
			ps_pgtable_read_lock();
			if (rc)
				return rc;
			continue;
		}
		/* S2 - seq_cst fence: the pin before the re-read. */
		atomic_thread_fence(memory_order_seq_cst);
		FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
		e2 = ps_pgtable_lookup(s->pt, addr);
		if (!same_mapping(e1, e2)) {
			/* Changed under us: back out (outside), again. */
			ps_pgtable_read_unlock();
			frame_unpin(s, frame);
			ps_pgtable_read_lock();
			continue;
		}
		if (write) {
			if (!ps_page_test_flags(p, PS_PAGE_WRITE_PINNED))
				ps_page_set_flags(p, PS_PAGE_WRITE_PINNED);
			log_addr(s, addr);
		}
		if (flags & PS_PIN_LONGTERM)
			(void)ps__hbm_set(&s->longterm, frame);
		*frame_out = frame;
		return 0;
	}
}

int ps_space_pin_range(struct ps_space *s, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *frames_out)
{
	uint64_t npages;
	int rc = 0;

	if (!range_ok(s, start, len) || !frames_out ||
	    (flags & ~(PS_PIN_WRITE | PS_PIN_LONGTERM | PS_PIN_PRIVATE)))
		return -EINVAL;
	npages = len >> PAGE_SHIFT;
	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < npages; i++) {
		rc = pin_one(s, start + (i << PAGE_SHIFT), flags,
			     &frames_out[i]);
		if (rc) {
			ps_pgtable_read_unlock();
			/* All or nothing: release every pin taken. */
			ps_space_unpin(s, frames_out, i, false);
			return rc;
		}
	}
	ps_pgtable_read_unlock();
	return 0;
}

void ps_space_unpin(struct ps_space *s, const uint64_t *frames, uint64_t n,
		    bool dirty)
{
	for (uint64_t i = 0; i < n; i++) {
		if (frames[i] >= s->nframes)
			continue;
		if (dirty)
			ps__space_mark_frame_dirty(s, frames[i]);
		frame_unpin(s, frames[i]);
	}
}

/* --- discard (S2) ------------------------------------------------------------------ */

struct discard_one {
	ps_pte_t old, new_pte;
	bool changed;
};

static void note_change(void *ctx, uint64_t addr, ps_pte_t old,
			ps_pte_t new_pte)
{
	struct discard_one *d = ctx;

	(void)addr;
	d->old = old;
	d->new_pte = new_pte;
	d->changed = true;
}

/*
 * Discard one resident page unless its frame is pinned. Returns true if it
 * was left in place (pinned).
 *
 * The common case is exact and atomic: a frame held only by this mapping
 * (one reference, no pin) is frozen with exactly that reference. The freeze
 * fails if a pin or any other holder appears, and while it holds, new pins
 * and speculative gets fail (they wait for the frozen frame and then find
 * the page gone). So a pinned page is never unmapped, not even for a moment.
 * A frame with other holders (an alias mapping, a kmap, a lookup in flight)
 * cannot be frozen: then the zap comes first and the pins are checked after
 * a full fence (S2), and a pin that raced in gets the entry back. Only in
 * that case can a concurrent fault see the page missing for a moment.
 */
static bool discard_one(struct ps_space *s, uint64_t addr, uint64_t frame)
{
	struct ps_page *p = &s->frames[frame];
	struct discard_one d = {0, 0, false};
	uint64_t w;
	bool pinned;

	for (;;) {
		w = ps_page_load(p);
		if (ps_page_word_pins(w))
			return true;
		FAILPOINT(FP_DISCARD_AFTER_CHECK, addr);
		if (ps_page_word_refs(w) != 1 || ps_page_freeze(p, 1))
			break;
		/* A pin or another holder appeared, or a flag moved: again. */
	}
	if (ps_page_is_frozen(p)) {
		(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change, &d);
		/* The mapping's reference was the only one: the frame is free. */
		(void)ps_page_unfreeze(p, 0);
		frame_freed(s, frame);
		return false;
	}
	(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change, &d);
	/* S2 - seq_cst fence: the zap before the pin check. */
	atomic_thread_fence(memory_order_seq_cst);
	FAILPOINT(FP_DISCARD_AFTER_ZAP, addr);
	pinned = ps_page_is_pinned(p);
	if (pinned && d.changed) {
		/* A pin raced in: give the entry back. */
		ps_pte_t expect = d.new_pte;

		if (ps_pgtable_cmpxchg(s->pt, addr, &expect, d.old))
			pinned = false; /* cannot (replaced): dropped */
	}
	if (!pinned && d.changed && ps_pte_is_present(d.old))
		ps__space_frame_put(s, ps_pte_frame(d.old));
	return pinned;
}

int ps_space_discard(struct ps_space *s, uint64_t start, uint64_t len,
		     uint64_t *skipped, uint64_t max_skipped,
		     uint64_t *nskipped)
{
	uint64_t nskip = 0;
	int rc;

	if (!range_ok(s, start, len) || (max_skipped && !skipped))
		return -EINVAL;
	pthread_mutex_lock(&s->writer);
	rc = ps_notifier_invalidate_start(&s->notifier, start, len,
					  PS_NOTIFIER_CLEAR, 0);
	if (rc)
		goto out;
	for (uint64_t addr = start; addr < start + len; addr += PAGE_SIZE) {
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
		    ps_pte_frame(e) >= s->nframes)
			continue; /* only resident frames are discarded */
		if (discard_one(s, addr, ps_pte_frame(e))) {
			if (nskip < max_skipped)
				skipped[nskip] = addr;
			nskip++;
		}
	}
	rc = ps_notifier_invalidate_end(&s->notifier, start, len);
out:
	pthread_mutex_unlock(&s->writer);
	if (nskipped)
		*nskipped = nskip;
	return rc;
}

/* --- the secondary-map helper (S5) --------------------------------------------------- */

/* Is @addr registered for async write protection? (wait-free) */
static bool wp_async(struct ps_space *s, uint64_t addr)
{
	unsigned int flags;

	return !ps_pgtable_registration(s->pt, addr, &flags) &&
	       (flags & PS_WP_ASYNC);
}

int ps_space_map_secondary(struct ps_space *s, struct ps_interval *sub,
			   uint64_t addr, bool write,
			   const struct ps_secondary_ops *ops, void *ctx)
{
	const uint64_t reject = PS_PAGE_POISONED | PS_PAGE_PRIVATE;

	if (!sub || !ops || !ops->lock || !ops->unlock || !ops->install ||
	    sub->notifier != &s->notifier || (addr & (PAGE_SIZE - 1)) ||
	    addr >= s->size || addr < ps_interval_start(sub) ||
	    addr > ps_interval_last(sub))
		return -EINVAL;
	for (;;) {
		uint64_t seq = ps_interval_read_begin(sub);
		struct ps_page *p;
		uint64_t frame;
		ps_pte_t e;
		int rc;

		if (ps_pgtable_get(s->pt, addr, &e))
			return -EINVAL;
		if (!ps_pte_is_present(e)) {
			rc = fault_in(s, addr, PS_ACCESS_READ);
			if (rc)
				return rc;
			continue;
		}
		if (write && !ps_pte_may_write(e))
			return -EFAULT;
		/*
		 * A device write to a page protected in a sync range must be
		 * seen before it happens: the caller resolves the fault. In an
		 * async range it is recorded in the dirty log below and the
		 * entry stays protected for the CPU.
		 */
		if (write && ps_pte_uffd_wp(e) && !wp_async(s, addr))
			return -EAGAIN;
		frame = ps_pte_frame(e);
		if (frame >= s->nframes)
			return -EFAULT;
		p = &s->frames[frame];
		/*
		 * The lookup reference. No re-check of the entry: every change
		 * of frame at @addr is bracketed by an invalidation, which the
		 * retry check below sees.
		 */
		if (!ps_page_try_get_masked(p, 1, reject)) {
			rc = grab_failed(p, reject);
			if (rc)
				return rc;
			continue;
		}
		ops->lock(ctx);
		if (ps_interval_read_retry(sub, seq)) {
			ops->unlock(ctx);
			ps__space_frame_put(s, frame);
			continue; /* an invalidation raced: again */
		}
		if (write) { /* dirty before the writable mapping (S5) */
			ps__space_mark_frame_dirty(s, frame);
			log_addr(s, addr);
		}
		rc = ops->install(ctx, addr, frame, write);
		ops->unlock(ctx);
		ps__space_frame_put(s, frame);
		return rc;
	}
}

/* --- dirty tracking (S6) -------------------------------------------------------------- */

bool ps_space_mark_dirty(struct ps_space *s, uint64_t addr)
{
	ps_pte_t e;
	bool made;

	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size ||
	    ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
	    ps_pte_frame(e) >= s->nframes)
		return false;
	made = ps__space_mark_frame_dirty(s, ps_pte_frame(e));
	log_addr(s, addr);
	return made;
}

int ps_space_redirty(struct ps_space *s, const uint64_t *addrs, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if ((addrs[i] & (PAGE_SIZE - 1)) || addrs[i] >= s->size)
			return -EINVAL;
		(void)ps__hbm_set(&s->log, page_index(addrs[i]));
	}
	return 0;
}

/* Written entries of [start, end), re-armed as reported, into the log. */
static int rearm_region(struct ps_space *s, uint64_t start, uint64_t end,
			unsigned int check)
{
	struct ps_pgtable_region wr[64];

	for (uint64_t w = start; w < end;) {
		struct ps_pgtable_scan a;
		long m;

		memset(&a, 0, sizeof(a));
		a.start = w;
		a.end = end;
		a.flags = PS_SCAN_WP_MATCHING | check;
		a.category_mask = PS_CAT_WRITTEN;
		a.return_mask = PS_CAT_WRITTEN;
		a.vec = wr;
		a.vec_len = 64;
		m = ps_pgtable_scan(s->pt, &a);
		if (m < 0)
			return (int)m;
		for (long j = 0; j < m; j++)
			ps__hbm_set_range(&s->log, page_index(wr[j].start),
					  page_index(wr[j].end - wr[j].start));
		w = a.walk_end;
	}
	return 0;
}

/*
 * Move the written entries of the async-registered parts of a range into
 * the log, re-protecting them (the page table's get-and-rearm scan).
 *
 * The common case, a range inside one async registration (a bridge's
 * attachment, a guest RAM region), needs no search for registrations: the
 * registration of the first page says async, and the get-and-rearm scan
 * with PS_SCAN_CHECK_WPASYNC checks the rest before it changes anything
 * (-EPERM or -ENOENT: then the general path). The general path finds the
 * async regions with a report scan, which reads every entry of the range
 * (0.13 ms a GiB), where the scan of written pages reads only hinted lines.
 */
static int rearm_into_log(struct ps_space *s, uint64_t start, uint64_t end)
{
	struct ps_pgtable_region reg[64];
	struct ps_pgtable_scan q;
	unsigned int flags;

	if (!ps_pgtable_registration(s->pt, start, &flags) &&
	    (flags & PS_WP_ASYNC)) {
		int rc = rearm_region(s, start, end, PS_SCAN_CHECK_WPASYNC);

		if (rc != -EPERM && rc != -ENOENT)
			return rc;
	}
	/* Pass 1: the registered async regions (report only). */
	for (uint64_t at = start; at < end;) {
		long n;

		memset(&q, 0, sizeof(q));
		q.start = at;
		q.end = end;
		q.category_mask = PS_CAT_WPALLOWED;
		q.return_mask = PS_CAT_WPALLOWED;
		q.vec = reg;
		q.vec_len = 64;
		n = ps_pgtable_scan(s->pt, &q);
		if (n < 0)
			return (int)n;
		for (long i = 0; i < n; i++) {
			/* Pass 2: written pages there, re-armed as reported. */
			int rc = rearm_region(s, reg[i].start, reg[i].end, 0);

			if (rc)
				return rc;
		}
		at = q.walk_end;
	}
	return 0;
}

struct harvest_ctx {
	struct ps_space *s;
	uint64_t *addrs;
	uint64_t max, n;
};

static enum ps__hbm_verdict harvest_visit(void *ctx, uint64_t bit)
{
	struct harvest_ctx *h = ctx;
	uint64_t addr = bit << PAGE_SHIFT;
	bool keep = false;
	ps_pte_t e;

	if (h->n == h->max)
		return PS__HBM_STOP; /* kept, shown again on resume */
	h->addrs[h->n++] = addr;
	/*
	 * A page pinned for write stays dirty while its pins last (S6). The
	 * harvest holds the page table's read-side section across the visits
	 * (no hook runs here), so this is a bare lookup.
	 */
	e = ps_pgtable_lookup(h->s->pt, addr);
	if (ps_pte_is_present(e) && ps_pte_frame(e) < h->s->nframes) {
		struct ps_page *p = &h->s->frames[ps_pte_frame(e)];
		uint64_t w = ps_page_load(p);

		keep = write_pinned(w);
		if ((w & PS_PAGE_WRITE_PINNED) && !keep)
			clear_write_pinned_if_unpinned(p);
	}
	return keep ? PS__HBM_KEEP : PS__HBM_CLEAR;
}

/* Tear down secondary mappings of the harvested pages, run by run. */
static void invalidate_harvested(struct ps_space *s, const uint64_t *addrs,
				 uint64_t n)
{
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;

		while (j < n && addrs[j] == addrs[j - 1] + PAGE_SIZE)
			j++;
		if (!ps_notifier_invalidate_start(&s->notifier, addrs[i],
						  (j - i) << PAGE_SHIFT,
						  PS_NOTIFIER_SOFT_DIRTY, 0))
			(void)ps_notifier_invalidate_end(&s->notifier, addrs[i],
							 (j - i) << PAGE_SHIFT);
		i = j;
	}
}

int ps_space_harvest(struct ps_space *s, uint64_t start, uint64_t len,
		     unsigned int flags, uint64_t *addrs, uint64_t max,
		     uint64_t *count, uint64_t *resume)
{
	struct harvest_ctx h = {s, addrs, max, 0};
	uint64_t resume_bit;

	if (!range_ok(s, start, len) || !addrs || !max || !count ||
	    (flags & ~PS_HARVEST_REARM))
		return -EINVAL;
	if (flags & PS_HARVEST_REARM) {
		int rc = rearm_into_log(s, start, start + len);

		if (rc)
			return rc;
	}
	ps_pgtable_read_lock();
	(void)ps__hbm_harvest(&s->log, page_index(start), page_index(len),
			      harvest_visit, &h, &resume_bit);
	ps_pgtable_read_unlock();
	if (flags & PS_HARVEST_REARM)
		invalidate_harvested(s, addrs, h.n);
	*count = h.n;
	if (resume)
		*resume = resume_bit << PAGE_SHIFT;
	return 0;
}

/* --- write-back (S3, S4) ------------------------------------------------------------- */

struct wb_ctx {
	struct ps_space *s;
	enum ps_writeback_mode mode;
	ps_writeback_fn fn;
	void *ctx;
	struct ps_writeback_stats st;
	int first_error;
};

/* Clear WRITE on the entry at @addr (stable pages), if it is @frame's. */
static void write_protect_entry(struct ps_space *s, uint64_t addr,
				uint64_t frame)
{
	ps_pte_t e;

	if (ps_pgtable_get(s->pt, addr, &e))
		return;
	while (ps_pte_is_present(e) && ps_pte_frame(e) == frame &&
	       ps_pte_is_writable(e)) {
		if (!ps_pgtable_cmpxchg(s->pt, addr, &e, e & ~PS_PTE_WRITE))
			break; /* else e was refreshed: look again */
	}
}

static enum ps__hbm_verdict writeback_visit(void *ctx, uint64_t bit)
{
	struct wb_ctx *c = ctx;
	struct ps_space *s = c->s;
	uint64_t addr = bit << PAGE_SHIFT, frame, w;
	struct ps_page *p;
	bool pinned;
	ps_pte_t e;
	int rc;

	if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
	    ps_pte_frame(e) >= s->nframes)
		return PS__HBM_CLEAR; /* nothing mapped: nothing to write */
	frame = ps_pte_frame(e);
	p = &s->frames[frame];
	ps__space_frame_lock(p);
	if (!ps_page_test_flags(p, PS_PAGE_DIRTY)) {
		ps__space_frame_unlock(p);
		return PS__HBM_CLEAR;
	}
	pinned = ps_page_is_pinned(p);
	if (pinned && c->mode == PS_WB_CLEAN) {
		ps__space_frame_unlock(p);
		c->st.skipped_pinned++;
		return PS__HBM_KEEP; /* stays dirty */
	}
	/*
	 * Stable pages: no writable mapping, primary or secondary, so a CPU
	 * write from now on faults and dirties the frame again (S3). A pinned
	 * frame too: the CPU may write it after the bounce copy.
	 */
	if (!ps_notifier_invalidate_start(&s->notifier, addr, PAGE_SIZE,
					  PS_NOTIFIER_PROTECTION, 0)) {
		write_protect_entry(s, addr, frame);
		(void)ps_notifier_invalidate_end(&s->notifier, addr, PAGE_SIZE);
	}
	/* S4: the clear's old word orders every pin before or after it. */
	w = ps_page_fetch_clear_flags(p, PS_PAGE_DIRTY);
	pinned = ps_page_word_pins(w) != 0;
	if (pinned && c->mode == PS_WB_CLEAN) {
		ps_page_set_flags(p, PS_PAGE_DIRTY); /* a pin raced in */
		ps__space_frame_unlock(p);
		c->st.skipped_pinned++;
		return PS__HBM_KEEP;
	}
	ps_page_set_flags(p, PS_PAGE_WRITEBACK);
	ps__space_frame_unlock(p);
	rc = c->fn(c->ctx, addr, frame, pinned);
	ps_page_clear_flags(p, PS_PAGE_WRITEBACK);
	if (rc) {
		c->st.errors++;
		if (!c->first_error)
			c->first_error = rc;
		ps__space_mark_frame_dirty(s, frame);
		return PS__HBM_KEEP;
	}
	if (!pinned) {
		c->st.written++;
		return PS__HBM_CLEAR;
	}
	c->st.bounced++;
	w = ps_page_load(p);
	if (write_pinned(w)) {
		/* A device may have written after the copy: stays dirty. */
		ps__space_mark_frame_dirty(s, frame);
		c->st.kept_dirty++;
		return PS__HBM_KEEP;
	}
	clear_write_pinned_if_unpinned(p);
	return PS__HBM_CLEAR;
}

int ps_space_writeback(struct ps_space *s, uint64_t start, uint64_t len,
		       enum ps_writeback_mode mode, ps_writeback_fn fn,
		       void *ctx, struct ps_writeback_stats *stats)
{
	struct wb_ctx c;

	if (!range_ok(s, start, len) || !fn ||
	    (mode != PS_WB_CLEAN && mode != PS_WB_INTEGRITY))
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.mode = mode;
	c.fn = fn;
	c.ctx = ctx;
	(void)ps__hbm_harvest(&s->wb, page_index(start), page_index(len),
			      writeback_visit, &c, NULL);
	if (stats)
		*stats = c.st;
	return c.first_error;
}
