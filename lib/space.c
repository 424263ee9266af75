// SPDX-License-Identifier: MIT
/*
 * lib/space.c - the address space: a page table, the page words of its
 * frames, a notifier, a dirty log and a write-back set (pagestate/space.h).
 *
 * ---------------------------------------------------------------------------
 * Protocol and guarantees (cited by tests/test-space.c as S1..S9)
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
 *     ps_space_fault() (a write on MAYWRITE && !WRITE, or a uffd-wp
 *     resolution), and only under its frame's LOCKED bit (discard, which
 *     may give a zapped entry back, gives it back without WRITE). The
 *     fault takes the bit of the frame it looked up, reads the entry
 *     again (a different frame there now: it drops the bit and starts
 *     again), has the page table classify the write without changing
 *     anything (PS_ACCESS_CHECK), marks the frame DIRTY (the dirty hook
 *     on the clean-to-dirty transition) and logs the address, and only
 *     then makes exactly the entry it classified writable, by one CAS. No
 *     write fault lets the page table resolve a write on its own: the
 *     entry may have
 *     changed since it was looked at (mapped meanwhile, write-protected by
 *     write-back). Write-back takes the same bit around "write-protect the
 *     entry, then clear DIRTY", and reads the entry again under it, as the
 *     fault does: a frame unmapped and mapped elsewhere since write-back
 *     looked is let go (its write fault at the new address may already
 *     have made that entry writable). Hence a writable entry implies a dirty
 *     frame, whatever the interleaving; the dirty hook has run before any
 *     thread can write through the entry (seed 003); and a write during
 *     write-back faults and re-dirties the frame (never lost). A write
 *     refused after the mark (a protect or mprotect raced in) leaves the
 *     frame dirty: an over-report, never a loss.
 *
 * S4  Write-back vs pins. Write-back clears DIRTY with an RMW on the page
 *     word (ps_page_fetch_clear_flags) and reads the pins in the value that
 *     RMW returns: pins and the DIRTY bit live in one word, so every pin is
 *     ordered before or after that clear. A pin before it makes the frame
 *     "pinned" for this write-back; a pin for write after it re-reads the
 *     entry, finds it write-protected (S2 then S3) and faults, dirtying the
 *     frame again. A pin for write sets WRITE_PINNED in the CAS that takes
 *     the pin, so every word that shows the pin shows it as one for write:
 *     an INTEGRITY bounce, which looks at the word again after its copy,
 *     keeps such a frame dirty even if the pin has not finished its
 *     re-check yet (the flag alone, left by a pin that backed out, is only
 *     a hint: write_pinned() also wants pins).
 *
 * S5  Exactly-once dirty hook. DIRTY is set only by ps_page_test_and_set
 *     (ps__space_mark_frame_dirty()): the one caller that sees it clear
 *     runs the hook.
 *     The secondary-map helper marks only after its retry check, under the
 *     caller's lock, and only for a write. Write-back clears DIRTY inside
 *     its PROTECTION invalidation, before invalidate_end: a helper that the
 *     end lets through marks after the clear, so a writable secondary
 *     mapping never covers a clean frame. (The helper takes no LOCKED bit:
 *     its callbacks run under LOCKED in write-back.)
 *
 * S6  Harvest never loses a mark. The dirty log is a three-level bitmap
 *     (lib/hbitmap.h): a mark made concurrently with a harvest is shown by
 *     it or stays for the next. A page pinned for write is kept in the log
 *     while its pins last, so every harvest until after the unpin reports
 *     it (a harvest that looked while discard had the page zapped for a
 *     moment dropped it: discard's give-back logs it again). With REARM,
 *     written entries of async ranges move into the log via the page
 *     table's get-and-rearm scan (its G7: a write racing the scan is
 *     reported by it or by the next one).
 *
 * S7  Where the hooks run. Never inside the page table's RCU read-side
 *     section: zapped frames are collected and put after the zap returns
 *     (one exception: if growing the collection runs out of memory, that
 *     frame is put inside the zap, and a free_frame hook may run there).
 *     Library locks held when they run:
 *       - populate: none;
 *       - dirty: the frame's LOCKED bit when a write fault (a CPU fault, a
 *         pin for write) runs it; the caller's own lock in the
 *         secondary-map helper; none from mark_dirty, unpin or
 *         write-back's re-dirtying;
 *       - free_frame: the space's writer mutex when map or map_range (a
 *         failed map giving references back), unmap or discard runs it;
 *         none from unpin, a pin's back-out, the helper, kunmap, destroy
 *         or write-back (which holds a reference of its own on the frame it
 *         visits, so the frame is not freed while fn copies it, and drops
 *         it after fn, with no lock held);
 *       - notifier callbacks: the writer mutex in unmap, discard and
 *         prot.c's conversion and mprotect; the LOCKED bit of the frame
 *         being written back in write-back's PROTECTION invalidation; none
 *         in a REARM harvest.
 *     So a hook run under the writer mutex must not map, map_range, unmap,
 *     discard, convert or mprotect in that space; one run under a frame's
 *     LOCKED bit must not write-fault, pin for write, write back or kmap
 *     that frame (each would wait for the lock it runs under).
 *
 * S8  Progress: see the table in pagestate/space.h. Retry loops (pin,
 *     secondary map) retry only because another thread changed the entry or
 *     the frame, except the wait for a frozen frame (a conversion), which
 *     yields.
 *
 * S9  No dirty frame escapes write-back. Write-back finds frames by address
 *     (the wb set: one bit per page), and ps_space_unpin(..., dirty) knows
 *     only frames. So the address is recorded when it is known: the wb set
 *     holds every page logged as written (faults, the helper's writes,
 *     mark_dirty, pins for write: log_addr()), every page pinned, at the
 *     pin (wb_note() for pins not for write), and every page mapped to a
 *     frame that is pinned or dirty when it is mapped (map_range()). And
 *     write-back takes a page out of the set only if nothing is mapped
 *     there, or if the frame mapped there, read under its LOCKED bit (or
 *     after a bounce copy), is neither pinned nor dirty: a clean pinned
 *     frame is kept, as is a frame unpinned dirty while INTEGRITY
 *     write-back copied it. A page that discard zapped for a moment (a
 *     pin raced in) and gave back is put in the set again by discard, as a
 *     visit may have found nothing mapped in between. Hence a frame pinned
 *     at an address and unpinned dirty while still mapped there is written
 *     by the next write-back of that address: a visit whose read of the
 *     frame's word comes after the unpin sees DIRTY; one whose read comes
 *     before it sees the pin and keeps the page; a pin taken after the
 *     read puts the page back itself (wb_note() says why the test it
 *     starts with is enough: it needs the seq_cst fence the visit runs
 *     between taking the bit and reading the entry). The cost is on
 *     write-back, not on the pin: a pinned page is visited by every
 *     write-back (a read pin adds one load of the set per page, and an RMW
 *     when a write-back has taken its bit). Not covered:
 *     a frame pinned, unmapped and unpinned dirty with no mapping left
 *     (there is no address to write it at; its owner sees DIRTY in the
 *     free_frame hook or when it maps it again, which records it); an
 *     alias mapped elsewhere is written through its own address only if
 *     that one is recorded (no reverse map). The dirty log (harvest) is
 *     not the wb set: pins for write stay in it while pinned (S6); a pin
 *     not for write that is unpinned dirty is not logged for migration.
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
/*
 * Injected failures: the hook returns 0 (carry on) or the negative errno
 * that the call at @point fails with; a page-table map may first shorten
 * *@len to the part it did (a run refused after a prefix, which only a
 * store racing into the range against the page table's rules can cause).
 */
int (*ps__space_inject)(int point, uint64_t addr, uint64_t *len);
#define INJECT(point, addr, len) \
	(ps__space_inject ? ps__space_inject((point), (addr), (len)) : 0)
#else
#define FAILPOINT(point, addr) \
	do {                   \
	} while (0)
#define INJECT(point, addr, len) 0
#endif
enum {
	FP_PIN_AFTER_LOOKUP = 1,   /* read the entry, no pin yet */
	FP_PIN_BEFORE_RECHECK,	   /* pinned, entry not re-read */
	FP_DISCARD_AFTER_CHECK,	   /* saw no pin, entry not zapped */
	FP_DISCARD_AFTER_ZAP,	   /* zapped, pins not re-checked */
	FP_MAP_RUN,		   /* inject: the page-table map of a run */
	FP_FAULT_CHECKED,	   /* a write classified, nothing changed */
	FP_FAULT_LOCKED,	   /* frame LOCKED, entry not read again */
	FP_WB_BOUNCED,		   /* write-back: pinned frame copied, not
				    * looked at again */
	FP_CREATE_MUTEX,	   /* inject: the writer mutex's init */
	FP_WB_LOOKED_UP,	   /* write-back: entry read, frame neither
				    * held nor locked */
	FP_WB_INVALIDATED,	   /* write-back: PROTECTION invalidation
				    * ended, frame still LOCKED */
	FP_PIN_RECHECKED,	   /* pinned, re-check passed, address not
				    * recorded yet */
	FP_DISCARD_GAVE_BACK,	   /* discard's give-back done, address not
				    * recorded again yet */
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

/*
 * Put @addr in the write-back set (S9) for a page that is pinned, or
 * mapped to a pinned or dirty frame, without logging it as written. Test
 * first: pinning pages already in the set (the common case: the set keeps
 * a pinned page) costs one load, not an RMW. Skipping the set is safe
 * because the bit read set is either still set or was taken by a
 * write-back's harvest whose visit sees the pin or the entry:
 *   - if the visit found the frame mapped, it takes the frame's LOCKED bit
 *     (an RMW on the page word, acq_rel) after the take. If that RMW
 *     precedes the pin's RMW on the word, the pin's acquire synchronises
 *     with it, so the take happens before the test here, which then reads
 *     the take or a later set. If it follows, the visit reads the pin.
 *   - if the visit found no entry (mapped after it looked: map_range, or
 *     discard's give-back), the visit runs a seq_cst fence Fv between the
 *     take (A0, seq_cst) and its entry load (acquire), which read a value
 *     before the entry CAS (seq_cst). For the mapper (map_range, the
 *     give-back), whose test (T0, seq_cst) is sequenced after its CAS:
 *     the load is coherence-ordered before the CAS, so Fv precedes the
 *     CAS in the total order S, and the CAS precedes T0; A0 is sequenced
 *     before Fv, so T0 reads the take or a later set (A0, T0 in
 *     lib/hbitmap.h). For a pin, whose entry loads are acquire: its first
 *     read of the entry read the CAS or later, so the visit's load is
 *     coherence-ordered before it; the pin's fence (S2) is sequenced
 *     after that read and before its test, so Fv precedes the pin's fence
 *     in S, and again T0 reads the take or later. That is why a read pin
 *     tests after its fence and not after its re-read (an acquire load
 *     that read the CAS would not order the CAS before T0 in S). A pin
 *     whose first read saw the page before a discard's zap and whose
 *     re-read sees the entry given back needs no argument of its own:
 *     discard's own test, after its give-back CAS, is the mapper's case.
 *     Without Fv, store buffering would let the visit read the old entry
 *     while the test still reads the bit the take took.
 */
static void wb_note(struct ps_space *s, uint64_t addr)
{
	if (!ps__hbm_test(&s->wb, page_index(addr)))
		(void)ps__hbm_set(&s->wb, page_index(addr));
}

/*
 * WRITE_PINNED is set by pins for write and cleared lazily here, once the
 * frame has no pins at all: one CAS that requires pins == 0, so a pin
 * taken meanwhile keeps it.
 */
static void clear_write_pinned_if_unpinned(struct ps_page *p)
{
	(void)ps_page_clear_flag_if_unpinned(p, PS_PAGE_WRITE_PINNED);
}

/* Pinned for write right now (a device may write the frame)? */
static bool write_pinned(uint64_t w)
{
	return ps_page_word_pinned_for_write(w);
}

/* Entries compare equal for the pin re-check unless A/D bits moved. */
static bool same_mapping(ps_pte_t a, ps_pte_t b)
{
	const ps_pte_t ignore = PS_PTE_ACCESSED | PS_PTE_DIRTY;

	return (a & ~ignore) == (b & ~ignore);
}

/* --- lifetime --------------------------------------------------------------- */

/* Every frame has an entry form, and a bit in the longterm bitmap. */
PS_STATIC_ASSERT(PS_SPACE_NFRAMES_MAX - 1 <= PS_PTE_FRAME_MAX,
		 "frames beyond what an entry can name");
PS_STATIC_ASSERT(PS_SPACE_NFRAMES_MAX <= PS__HBM_MAX_BITS,
		 "frames beyond the longterm bitmap");
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

	if (!s || ps__fork_inherited(s->born))
		return 0; /* in a child, an inherited space is only forgotten */
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
	uint64_t pte_flags;	/* its entry's flags (runs: equal flags) */
	bool revived;		/* the frame was free: this map revived it */
	bool wb;		/* pinned or dirty: its page goes in wb (S9) */
	uint8_t old_cache;	/* its cache mode before the revival */
	uint8_t new_cache;	/* the mode the revival gave it */
};

/*
 * Give back a reference a failed map took. If the map revived the frame
 * (it was free), the frame goes back to free without the free hook: its
 * owner never saw it mapped, and may already count it as free. A frame that
 * PS_MAP_CACHE revived with another mode gets its old mode back, unless it
 * was revived again meanwhile (then its new owner's mode stands).
 *
 * That needs this put to be the last one. The map installs no entry
 * before it cannot fail (ps_space_map_range()), so no pin can have found
 * the frame through the map; another holder can only be one that took
 * the frame by its number (the owner's own kmap or get, a speculative pin
 * or lookup of an older mapping on its way out). Then the frame stays
 * LIVE, with the mode the revival gave it (a LIVE frame's mode changes
 * only while frozen, prot.c's P7), and that holder's last put frees it,
 * with the free hook (space.h says so).
 */
static void untake_frame(struct ps_space *s, uint64_t frame, struct taken t)
{
	struct ps_page *p = &s->frames[frame];
	bool freed = ps_page_put(p);

	if (!t.revived) {
		if (freed)
			frame_freed(s, frame);
		return;
	}
	if (!freed || t.old_cache == t.new_cache)
		return;
	/* Only if still free with the mode this map gave it. */
	(void)ps_page_set_cache_if_free(p, (enum ps_cache_mode)t.old_cache,
					t.new_cache);
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
	t->wb = (w & PS_PAGE_DIRTY) || ps_page_word_pins(w);
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

/*
 * Take back the entries a map installed at pages [i, j) of [@start, ...):
 * each entry that still maps its frame (@first_frame + k at page k) goes
 * back to what the page held before the map, which had to be none or a
 * lone UFFD_WP marker (pgtable.h). The map kept such a marker's protection
 * as the entry's uffd-wp bit, so an entry with that bit becomes the marker
 * again and any other becomes none: a failed map drops no write
 * protection. (A protect that raced with the map and set the bit leaves a
 * marker too: more protection than it would have, never less.) Pages
 * without such an entry are left alone. Under the writer mutex no other
 * thread maps a frame here (S1); faults may still set accessed, dirty or
 * writable bits, and protect the uffd-wp bit: the CAS then looks again.
 */
static void unmap_installed(struct ps_space *s, uint64_t start,
			    uint64_t first_frame, uint64_t i, uint64_t j)
{
	const ps_pte_t marker = ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);

	for (uint64_t k = i; k < j; k++) {
		uint64_t addr = start + (k << PAGE_SHIFT);
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e))
			continue;
		while (ps_pte_is_present(e) &&
		       ps_pte_frame(e) == first_frame + k &&
		       ps_pgtable_cmpxchg(s->pt, addr, &e,
					  ps_pte_uffd_wp(e) ? marker
							    : PS_PTE_NONE) ==
			       -EAGAIN)
			;
	}
}

/*
 * Map frames first + [i, j) (references already taken) at their pages, all
 * or nothing. The page table checks every page and allocates every level
 * before it installs anything, so -EEXIST and -ENOMEM install nothing
 * (under the writer mutex nobody else maps here, S1), and after
 * ps_pgtable_map_prepare() neither can happen at all. Any other failure
 * (the test build's injection: a run refused part-way, as only a store
 * racing into the range against pgtable.h's exclusion rules could) takes
 * back what the run installed; the other pages are still vacant.
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
	if (rc && rc != -EEXIST)
		unmap_installed(s, start, first_frame, i, j);
	return rc;
}

int ps_space_map_range(struct ps_space *s, uint64_t start, uint64_t len,
		       uint64_t first_frame, unsigned int flags)
{
	uint64_t npages = len >> PAGE_SHIFT, ntaken, i, j, nruns = 0;
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
	PS__FORK_CHECK(s->born, "space");
	pthread_mutex_lock(&s->writer);
	/*
	 * All or nothing, and nothing visible on failure. References first,
	 * then entries, so a reader never finds an entry whose frame lacks
	 * the mapping's reference; while no entry is installed, no pin or
	 * fault can find the frames. A run of frames with the same cache and
	 * encryption state is mapped with one page-table map, which checks
	 * its pages and allocates its levels before it installs anything.
	 * With several runs, the page table is prepared for the whole range
	 * first (every page vacant, every level allocated), so that no run
	 * can fail once one is visible. A pin racing with the map finds each
	 * page either not yet mapped, or mapped for good.
	 */
	for (ntaken = 0; ntaken < npages; ntaken++) {
		rc = take_frame(s, first_frame + ntaken, flags,
				&taken[ntaken].pte_flags, &taken[ntaken]);
		if (rc)
			break;
		if (!ntaken ||
		    taken[ntaken].pte_flags != taken[ntaken - 1].pte_flags)
			nruns++;
	}
	if (!rc && nruns > 1)
		rc = ps_pgtable_map_prepare(s->pt, start, len);
	for (i = 0; !rc && i < npages;) {
		for (j = i + 1;
		     j < npages && taken[j].pte_flags == taken[i].pte_flags; j++)
			;
		rc = map_run(s, start, first_frame, i, j, taken[i].pte_flags);
		if (!rc)
			i = j;
	}
	if (rc) {
		/*
		 * Only a store racing into the range against the exclusion
		 * rules (pgtable.h) fails a run after the prepare: then the
		 * runs mapped before [i, ...) go (a failed run took its own
		 * back), and every reference taken.
		 */
		unmap_installed(s, start, first_frame, 0, i);
		/* S2 - seq_cst fence: entries gone before the puts. */
		atomic_thread_fence(memory_order_seq_cst);
		for (uint64_t k = 0; k < ntaken; k++)
			untake_frame(s, first_frame + k, taken[k]);
	} else {
		/* S9: once the entries are there, write-back can reach them. */
		for (uint64_t k = 0; k < npages; k++)
			if (taken[k].wb)
				wb_note(s, start + (k << PAGE_SHIFT));
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
	PS__FORK_CHECK(s->born, "space");
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

/* write_fault_locked(): the entry no longer maps the frame locked. */
#define FAULT_AGAIN (-1)
/* resolve_write(): the entry changed since it was classified. */
#define FAULT_CHANGED (-2)

/*
 * Make the entry @e at @addr, just classified with the write allowed, what
 * the write makes of it (ps_pte_resolve_write()), by one CAS from exactly
 * @e. Returns PS_FAULT_OK (also when nothing changes), PS_FAULT_INVALID
 * (the table refused), or FAULT_CHANGED (someone changed the entry:
 * classify again). The callers decide whether the frame must be marked
 * dirty first (S3).
 */
static int resolve_write(struct ps_space *s, uint64_t addr, ps_pte_t e)
{
	ps_pte_t n = ps_pte_resolve_write(e);
	int rc;

	if (n == e)
		return PS_FAULT_OK;
	rc = ps_pgtable_cmpxchg(s->pt, addr, &e, n);
	if (!rc)
		return PS_FAULT_OK;
	return rc == -EAGAIN ? FAULT_CHANGED : PS_FAULT_INVALID;
}

/*
 * A write the page table allows, to the entry of @frame at @addr, under
 * that frame's LOCKED bit (S3). The entry is read again here, with the page
 * table's classification (PS_ACCESS_CHECK: nothing changes). If it no
 * longer maps @frame, FAULT_AGAIN: the caller takes the new frame's lock.
 * Otherwise, for an entry that is not writable yet, the frame is marked
 * dirty (the dirty hook runs on the clean-to-dirty transition) and the
 * address logged first, and only then does exactly that entry become
 * ps_pte_resolve_write() of itself, by one CAS. So the hook has run before
 * any thread can write through the entry (seed 003), and the frame marked
 * is the frame made writable. A failed CAS (a fault moved accessed bits,
 * protect set wp, mprotect took MAYWRITE, the frame was replaced) looks
 * again; if the write is refused then (WP, BAD_ACCESS), the frame stays
 * dirty: an over-report, never a lost write.
 */
static int write_fault_locked(struct ps_space *s, uint64_t addr,
			      unsigned int access, uint64_t frame)
{
	for (;;) {
		enum ps_fault fr;
		ps_pte_t e;
		int rc;

		fr = ps_pgtable_fault_pte(s->pt, addr,
					  access | PS_ACCESS_CHECK, &e);
		if (!ps_pte_is_present(e) || ps_pte_frame(e) != frame)
			return FAULT_AGAIN;
		if (fr != PS_FAULT_OK)
			return fr; /* WP or BAD_ACCESS: nothing changes */
		/* Writable already: made so under this lock, dirty (S3). */
		if (!ps_pte_is_writable(e)) {
			ps__space_mark_frame_dirty(s, frame);
			log_addr(s, addr);
		}
		rc = resolve_write(s, addr, e);
		if (rc != FAULT_CHANGED)
			return rc;
	}
}

/*
 * One fault, no populate. Reads are the page table's fault: they never
 * make an entry writable. A write is classified first (PS_ACCESS_CHECK),
 * and no write path ever lets the page table make an entry writable on
 * its own, because the entry may have changed since it was looked at
 * (mapped meanwhile, or write-protected by write-back) and S3 would be
 * lost. Instead:
 *   - a missing page (none, swap, marker) gets a read fault, which finds
 *     what the write would (pgtable.h's fault table), clears a stale
 *     marker as the write would (G9 there), and makes nothing writable;
 *     if it finds a page after all, one was mapped meanwhile: again;
 *   - a refused write (WP, BAD_ACCESS) changes nothing;
 *   - a writable entry (its frame is dirty, S3), or one whose frame is
 *     outside the space's array (nothing to mark), gets the table's
 *     transition by a CAS from exactly the entry classified;
 *   - anything else becomes writable under its frame's LOCKED bit, dirty
 *     first (write_fault_locked()).
 */
static enum ps_fault fault_once(struct ps_space *s, uint64_t addr,
				unsigned int access)
{
	if (!(access & PS_ACCESS_WRITE))
		return ps_pgtable_fault(s->pt, addr, access);
	for (;;) {
		enum ps_fault fr;
		struct ps_page *p;
		ps_pte_t e;
		int rc;

		fr = ps_pgtable_fault_pte(s->pt, addr,
					  access | PS_ACCESS_CHECK, &e);
		if (fr == PS_FAULT_INVALID)
			return fr;
		FAILPOINT(FP_FAULT_CHECKED, addr);
		if (!ps_pte_is_present(e)) {
			fr = ps_pgtable_fault(s->pt, addr, PS_ACCESS_READ);
			if (fr != PS_FAULT_OK)
				return fr;
			continue; /* mapped meanwhile */
		}
		if (fr != PS_FAULT_OK)
			return fr;
		if (ps_pte_is_writable(e) || ps_pte_frame(e) >= s->nframes) {
			rc = resolve_write(s, addr, e);
			if (rc != FAULT_CHANGED)
				return (enum ps_fault)rc;
			continue; /* changed: classify again */
		}
		p = &s->frames[ps_pte_frame(e)];
		ps_page_lock(p);
		FAILPOINT(FP_FAULT_LOCKED, addr);
		rc = write_fault_locked(s, addr, access, ps_pte_frame(e));
		ps_page_unlock(p);
		if (rc != FAULT_AGAIN)
			return (enum ps_fault)rc;
	}
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
 * The speculative pin: ps_page_try_pin_masked() for one pin, which for a
 * pin for write also sets WRITE_PINNED in the same CAS. So every write-back
 * whose RMW on the word comes after the pin sees the pin as a pin for write
 * (S4): none can find the pin but not the flag and clean a frame a device
 * is about to write. A pin that backs out leaves the flag: a hint, as
 * write_pinned() also wants pins, cleared lazily once there are none.
 */
static inline bool try_pin(struct ps_page *p, uint64_t reject, bool write)
{
	/*
	 * It acquires (pairs with the release of the put or unfreeze that
	 * came before), so the pinner sees the frame as it was left; S2's
	 * fence follows.
	 */
	return ps_page_try_pin_and_set_flags(
		p, 1, reject, write ? PS_PAGE_WRITE_PINNED : 0);
}

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
		if (!try_pin(p, reject, write)) {
			ps_pgtable_read_unlock();
			rc = grab_failed(p, reject); /* may yield */
			ps_pgtable_read_lock();
			if (rc)
				return rc;
			continue;
		}
		/* S2 - seq_cst fence: the pin before the re-read. */
		atomic_thread_fence(memory_order_seq_cst);
		/*
		 * S9: a read pin's frame may be unpinned dirty. After the
		 * fence (wb_note() says why); a pin that backs out leaves
		 * the bit to the next write-back, which finds it clean.
		 */
		if (!write)
			wb_note(s, addr);
		FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
		e2 = ps_pgtable_lookup(s->pt, addr);
		if (!same_mapping(e1, e2)) {
			/* Changed under us: back out (outside), again. */
			ps_pgtable_read_unlock();
			frame_unpin(s, frame);
			ps_pgtable_read_lock();
			continue;
		}
		FAILPOINT(FP_PIN_RECHECKED, addr);
		if (write)
			log_addr(s, addr); /* S6, S9 */
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
 * Give the entry @old that discard zapped back to @addr; the zap left
 * @left there. Lock-free: one CAS per change of the entry (it retries only
 * when someone else changed it).
 *
 * @left is none or a lone UFFD_WP marker, and under the writer mutex nobody
 * maps here (S1), but the entry may still move between those two: a
 * protect or unprotect, uffd's mirror of a protected none page, a read
 * fault clearing a stale marker. Protection comes back as follows:
 *   - in a range that uses markers (shared, or PS_WP_UNPOPULATED, which
 *     async implies) a protect of the page while it is away makes it a
 *     marker, and @old comes back write-protected (folded in as pgtable.c's
 *     tr_map does); a marker the zap left and someone removed meanwhile
 *     (an unprotect) brings it back unprotected. A protect after the CAS
 *     finds the entry itself. So an async range's record of writes is never
 *     hidden behind a protection nobody asked for. (A protected page the
 *     zap left none, an anonymous one, comes back protected even if an
 *     unprotect ran, which found nothing to do: a spurious fault.)
 *   - in any other registered range (sync, anonymous) a protect skips a
 *     none page without a trace, so the page comes back write-protected
 *     whatever it was: a protect that ran while it was away is never lost,
 *     at the price of a spurious write-protect fault when none did (the
 *     handler resolves it as any other). The registration is read before
 *     the CAS: a range registered and protected within that instant is
 *     missed, and one unregistered within it keeps a stale bit, which is
 *     inert (G9 in lib/pgtable.c).
 * @old never comes back writable (S3): a write-back that visited meanwhile
 * found nothing to write-protect and may have cleaned the frame, so the
 * next write must fault and dirty it again. False only if the page holds
 * anything else (someone stored there against the exclusion rules).
 */
static bool give_back(struct ps_space *s, uint64_t addr, ps_pte_t old,
		      ps_pte_t left)
{
	const ps_pte_t marker = ps_pte_mk_marker(PS_PTE_MARKER_UFFD_WP);
	unsigned int flags;
	ps_pte_t e;

	old &= ~PS_PTE_WRITE;
	if (!ps_pgtable_registration(s->pt, addr, &flags) &&
	    !(flags & (PS_WP_SHARED | PS_WP_UNPOPULATED)))
		old = ps_pte_mkuffd_wp(old);
	else if (left == marker)
		old = ps_pte_clear_uffd_wp(old); /* if still none: unprotected */
	if (ps_pgtable_get(s->pt, addr, &e))
		return false;
	for (;;) {
		ps_pte_t want;
		int rc;

		if (e == PS_PTE_NONE)
			want = old;
		else if (e == marker)
			want = ps_pte_mkuffd_wp(old);
		else
			return false;
		/* Seq_cst CAS (pgtable.h): before wb_note()'s test (S9). */
		rc = ps_pgtable_cmpxchg(s->pt, addr, &e, want);
		if (!rc)
			break;
		if (rc != -EAGAIN)
			return false;
	}
	FAILPOINT(FP_DISCARD_GAVE_BACK, addr);
	return true;
}

/*
 * Discard one resident page unless its frame is pinned or frozen by another
 * thread. Returns true if it was left in place.
 *
 * A frame frozen by someone else (prot.h's cache-mode change, the owner's
 * own freeze for a migration; a conversion holds the writer mutex, so not
 * that) belongs to its freezer until the unfreeze, which gives it the
 * references the freezer counted: discard must neither zap nor free it.
 * It leaves the page in place and reports it like a pinned one rather than
 * wait: it holds the writer mutex, which the freezer may be waiting for.
 *
 * The common case is exact and atomic: a frame held only by this mapping
 * (one reference, no pin) is frozen by this call with exactly that
 * reference, and only this call's own successful freeze leads to the free.
 * The freeze fails if a pin or any other holder appears, and while it
 * holds, new pins and speculative gets fail (they wait for the frozen frame
 * and then find the page gone). So a pinned page is never unmapped, not
 * even for a moment. A frame with other holders (an alias mapping, a kmap,
 * a lookup in flight) cannot be frozen: then this call takes a reference
 * of its own first (a try-get, which fails on a frozen frame), so no
 * freezer that does not count it can freeze the frame until the mapping's
 * reference is dropped; the zap comes first and the pins are checked after
 * a full fence (S2), and a pin that raced in gets the entry back. Only in
 * that case can a concurrent fault see the page missing for a moment.
 */
static bool discard_one(struct ps_space *s, uint64_t addr, uint64_t frame)
{
	struct ps_page *p = &s->frames[frame];
	struct discard_one d = {0, 0, false};
	bool frozen, pinned;
	uint64_t w;

	for (;;) {
		w = ps_page_load(p);
		if (!(w & PS_PAGE_LIVE))
			return true; /* frozen by another thread: its own */
		if (ps_page_word_pins(w))
			return true;
		FAILPOINT(FP_DISCARD_AFTER_CHECK, addr);
		if (ps_page_word_refs(w) == 1) {
			frozen = ps_page_freeze(p, 1); /* this call's own */
			if (frozen)
				break;
		} else if (ps_page_try_get(p)) {
			frozen = false; /* our reference holds freezers off */
			break;
		}
		/* A pin, another holder, a freeze, or a flag moved: again. */
	}
	if (frozen) {
		(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change,
				     &d);
		/* The mapping's reference was the only one: the frame is free. */
		(void)ps_page_unfreeze(p, 0);
		frame_freed(s, frame);
		return false;
	}
	(void)ps_pgtable_zap(s->pt, addr, PAGE_SIZE, 0, note_change, &d);
	/* S2 - seq_cst fence: the zap before the pin check. */
	atomic_thread_fence(memory_order_seq_cst);
	FAILPOINT(FP_DISCARD_AFTER_ZAP, addr);
	w = ps_page_load(p);
	pinned = ps_page_word_pins(w) != 0;
	if (pinned && d.changed) {
		/* A pin raced in: give the entry back. */
		if (give_back(s, addr, d.old, d.new_pte)) {
			/*
			 * A write-back or harvest that looked while the page
			 * was zapped found nothing mapped and dropped the
			 * address: record it again (S9; S6 for a pin for
			 * write, which the harvest must keep reporting).
			 */
			if (write_pinned(w))
				log_addr(s, addr);
			else
				wb_note(s, addr);
		} else {
			pinned = false; /* cannot (replaced): dropped */
		}
	}
	if (!pinned && d.changed && ps_pte_is_present(d.old))
		ps__space_frame_put(s, ps_pte_frame(d.old));
	ps__space_frame_put(s, frame); /* ours; the last one frees it */
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
	PS__FORK_CHECK(s->born, "space");
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

/* ps_pgtable_harvest()'s callback: a run of written pages, into the log. */
static void rearm_log_run(void *ctx, uint64_t start, uint64_t end)
{
	struct ps_space *s = ctx;

	ps__hbm_set_range(&s->log, page_index(start), page_index(end - start));
}

/* Written entries of [start, end), re-armed as reported, into the log. */
static int rearm_region(struct ps_space *s, uint64_t start, uint64_t end,
			unsigned int check)
{
	return ps_pgtable_harvest(s->pt, start, end - start, check,
				  rearm_log_run, s);
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

	PS__FORK_CHECK(s->born, "space");
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

/*
 * Hold the frame mapped at @addr for a visit (S3, S9): a reference of the
 * visit's own first, so that the frame can be neither freed nor handed to
 * another owner while the visit looks at it and @fn copies it (an unmap or
 * discard meanwhile drops only the mapping's reference; the visit's put
 * frees it, after @fn); then its LOCKED bit; then the entry read again
 * under the bit, as a write fault does (S3). The frame may have been
 * unmapped, freed and mapped elsewhere since the entry was first read: if
 * the entry no longer maps it, let go and look again, like the fault's
 * FAULT_AGAIN. Returns 0 with *@frame_out held and locked, 1 if nothing is
 * mapped at @addr, or -EOVERFLOW (the frame is at the reference limit).
 */
static int wb_hold(struct ps_space *s, uint64_t addr, uint64_t *frame_out)
{
	for (;;) {
		struct ps_page *p;
		uint64_t frame, w;
		ps_pte_t e;

		if (ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
		    ps_pte_frame(e) >= s->nframes)
			return 1; /* nothing mapped: nothing to write */
		frame = ps_pte_frame(e);
		p = &s->frames[frame];
		FAILPOINT(FP_WB_LOOKED_UP, addr);
		if (!ps_page_try_get(p)) {
			w = ps_page_load(p);
			if ((w & PS_PAGE_LIVE) &&
			    ps_page_word_refs(w) >= PS_PAGE_REFS_MAX)
				return -EOVERFLOW;
			if (w & PS_PAGE_FROZEN)
				sched_yield(); /* a conversion holds it (S8) */
			continue; /* freed or frozen: look again */
		}
		ps_page_lock(p);
		if (!ps_pgtable_get(s->pt, addr, &e) && ps_pte_is_present(e) &&
		    ps_pte_frame(e) == frame) {
			*frame_out = frame;
			return 0;
		}
		/* Replaced under us: let go (the put may free it), again. */
		ps_page_unlock(p);
		ps__space_frame_put(s, frame);
	}
}

/*
 * Write back @frame, mapped at @addr, held and LOCKED by wb_hold(). Drops
 * LOCKED (before @fn runs); the caller drops the reference.
 */
static enum ps__hbm_verdict writeback_frame(struct wb_ctx *c, uint64_t addr,
					    uint64_t frame)
{
	struct ps_space *s = c->s;
	struct ps_page *p = &s->frames[frame];
	bool pinned, inval, redirty;
	uint64_t w;
	int rc;

	w = ps_page_load(p);
	if (!(w & PS_PAGE_DIRTY)) {
		ps_page_unlock(p);
		/* S9: a pinned frame may be unpinned dirty: keep watching. */
		return ps_page_word_pins(w) ? PS__HBM_KEEP : PS__HBM_CLEAR;
	}
	pinned = ps_page_word_pins(w) != 0;
	if (pinned && c->mode == PS_WB_CLEAN) {
		ps_page_unlock(p);
		c->st.skipped_pinned++;
		return PS__HBM_KEEP; /* stays dirty */
	}
	/*
	 * Stable pages: no writable mapping, primary or secondary, so a CPU
	 * write from now on faults and dirties the frame again (S3). A pinned
	 * frame too: the CPU may write it after the bounce copy. DIRTY is
	 * cleared inside the invalidation, before it ends (S5): a secondary
	 * mapping for write that the end lets through (the helper retries
	 * until no invalidation is in progress) marks the frame dirty after
	 * this clear, so it never maps a clean frame writable.
	 */
	inval = !ps_notifier_invalidate_start(&s->notifier, addr, PAGE_SIZE,
					      PS_NOTIFIER_PROTECTION, 0);
	if (inval)
		write_protect_entry(s, addr, frame);
	/* S4: the clear's old word orders every pin before or after it. */
	w = ps_page_fetch_clear_flags(p, PS_PAGE_DIRTY);
	pinned = ps_page_word_pins(w) != 0;
	redirty = pinned && c->mode == PS_WB_CLEAN;
	if (redirty)
		ps_page_set_flags(p, PS_PAGE_DIRTY); /* a pin raced in */
	if (inval)
		(void)ps_notifier_invalidate_end(&s->notifier, addr, PAGE_SIZE);
	/* Keep right after the end: tests check DIRTY is clear here (S5). */
	FAILPOINT(FP_WB_INVALIDATED, addr);
	if (redirty) {
		ps_page_unlock(p);
		c->st.skipped_pinned++;
		return PS__HBM_KEEP;
	}
	ps_page_set_flags(p, PS_PAGE_WRITEBACK);
	ps_page_unlock(p);
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
	FAILPOINT(FP_WB_BOUNCED, addr);
	w = ps_page_load(p);
	if (write_pinned(w)) {
		/* A device may have written after the copy: stays dirty. */
		ps__space_mark_frame_dirty(s, frame);
		c->st.kept_dirty++;
		return PS__HBM_KEEP;
	}
	clear_write_pinned_if_unpinned(p);
	/*
	 * S9: still pinned (for read), or unpinned dirty after the copy (a
	 * device that finished meanwhile): the next write-back looks again.
	 */
	if (ps_page_word_pins(w) || (w & PS_PAGE_DIRTY))
		return PS__HBM_KEEP;
	return PS__HBM_CLEAR;
}

static enum ps__hbm_verdict writeback_visit(void *ctx, uint64_t bit)
{
	struct wb_ctx *c = ctx;
	uint64_t addr = bit << PAGE_SHIFT, frame;
	enum ps__hbm_verdict v;
	int rc;

	/*
	 * S9 - seq_cst fence: the harvest's take of this bit (A0, seq_cst)
	 * before the entry loads (acquire, in ps_pgtable_get()). Pairs with
	 * the seq_cst entry CAS of a map (map_range) and of discard's
	 * give-back, each followed by wb_note()'s test, and with a read
	 * pin's fence (S2), which it runs between its read of the entry and
	 * that test: without it, store buffering lets this visit read the
	 * old entry while the other side's test still reads the bit set (see
	 * wb_note()).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	rc = wb_hold(c->s, addr, &frame);
	if (rc > 0)
		return PS__HBM_CLEAR; /* nothing mapped: nothing to write */
	if (rc < 0) {
		c->st.errors++;
		if (!c->first_error)
			c->first_error = rc;
		return PS__HBM_KEEP; /* not looked at: the next one will */
	}
	v = writeback_frame(c, addr, frame);
	ps__space_frame_put(c->s, frame); /* the visit's own (S7) */
	return v;
}

int ps_space_writeback(struct ps_space *s, uint64_t start, uint64_t len,
		       enum ps_writeback_mode mode, ps_writeback_fn fn,
		       void *ctx, struct ps_writeback_stats *stats)
{
	struct wb_ctx c;

	if (!range_ok(s, start, len) || !fn ||
	    (mode != PS_WB_CLEAN && mode != PS_WB_INTEGRITY))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
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
