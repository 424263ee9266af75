/* SPDX-License-Identifier: MIT */
/*
 * lib/space-impl.h - the address space's own state and the helpers its
 * files share: for lib/space*.c only (the modules above use
 * lib/space-internal.h; tests/check-layers.sh enforces it). Not installed;
 * not API.
 *
 * One concern per file. Each file states the rules it governs (S1..S14,
 * cited by tests/test-space.c and tests/test-prot.c) at its top, and
 * refers to the others by file:
 *
 *   lib/space.c            lifetime; what replaces a frame at an address
 *                          (map, map_range, unmap, the zap they share);
 *                          what the space lends the modules above.
 *                          S1 the writer mutex, S7 where the hooks run,
 *                          S8 progress, S13 a failed map gives back
 *                          what it took
 *   lib/space-fault.c      CPU faults. S3 dirty before writable
 *   lib/space-pin.c        pins. S2 pin versus entry change, S14 the
 *                          long-term pin count
 *   lib/space-discard.c    the balloon's discard. S10 freeze or skip
 *   lib/space-dirty.c      dirty marks, harvest. S5 one dirty hook per
 *                          transition, S6 harvest never loses a mark, S11
 *                          no write escapes every harvest (log after
 *                          writable, re-arm after take)
 *   lib/space-log.c        the dirty log's levels (4 KiB pages, 2 MiB and
 *                          1 GiB units) and its one take (under S6)
 *   lib/space-secondary.c  the secondary-map helper (under S5)
 *   lib/space-writeback.c  write-back and its set. S4 write-back versus
 *                          pins, S9 no dirty frame escapes write-back,
 *                          S12 one write-back of a frame at a time
 *   lib/space-huge.c       frames of three sizes (lib/space-huge.h): the
 *                          huge page words, their declaration, stats,
 *                          and the pins, unpins and maps of huge frames.
 *                          S15..S18
 *   lib/space-ledger.c     the dirty ledger (pagestate/ledger.h): consumers
 *                          of the log, transactional harvests. C1..C4
 *
 * The helpers below are static inline because the fault and pin paths call
 * them per page from other files, and the library is built without LTO.
 */
#ifndef PS_LIB_SPACE_IMPL_H
#define PS_LIB_SPACE_IMPL_H

#include <pagestate/space.h>

#include "failpoint.h"
#include "fork.h"
#include "hbitmap.h"
#include "rcu.h"
#include "space-huge.h"
#include "space-internal.h"

#include <pthread.h>
#include <stddef.h>

#define PAGE_SHIFT PS_PGTABLE_PAGE_SHIFT
#define PAGE_SIZE PS_PGTABLE_PAGE_SIZE

/*
 * The installed part [start, end) of a map that works in chunks (S20): its
 * frames are held (claimed ones frozen) until the map commits or rolls back,
 * so unmap, discard and the modules above wait for it to go. A node on the
 * mapper's stack, linked under the writer mutex.
 */
struct ps__space_resv {
	uint64_t start, end;
	struct ps__space_resv *next;
};

struct ps_space {
	struct ps__space_exts exts; /* first: ps__space_ext_find() */
	struct ps_pgtable *pt;
	struct ps_notifier notifier;
	struct ps_page *frames;
	void *frames_map; /* library-allocated array, or NULL */
	size_t frames_bytes;
	uint64_t nframes;
	uint64_t size;
	/*
	 * The dirty log (S6, lib/space-log.c): one bit per 4 KiB page, and
	 * its unit marks, one bit per 2 MiB and per 1 GiB (every page of the
	 * unit marked). Marked with ps__space_log_unit() and the helpers
	 * below, taken only by ps__space_log_take().
	 */
	struct ps__hbm log;
	struct ps__hbm log2m;
	struct ps__hbm log1g;
	struct ps__hbm wb; /* write-back set: one bit per page (S9) */
	/* Long-term pins per frame (S14, lib/space-pin.c), from the first. */
	PS_ATOMIC(PS_ATOMIC(uint32_t) *) longterm;
	struct ps_space_hooks hooks;
	pthread_mutex_t writer; /* S1 */
	/* Chunked maps in progress (S20): under the writer mutex. */
	struct ps__space_resv *resv;
	pthread_cond_t resv_gone; /* broadcast when one goes */
	/*
	 * S20's hand-off: threads waiting for the writer mutex, and how many
	 * times a waiter got it, so that a chunked map lets one in between
	 * chunks (the mutex is not fair).
	 */
	PS_ATOMIC(uint32_t) writer_wanted;
	PS_ATOMIC(uint32_t) writer_handoffs;
	uint64_t born; /* fork generation at creation (lib/fork.h) */
	/* Huge frames (lib/space-huge.c), from the first declaration. */
	PS_ATOMIC(struct ps__space_huge *) huge;
	/* The dirty ledger (lib/space-ledger.c, C4), from the first add. */
	PS_ATOMIC(struct ps__space_ledger *) ledger;
};

PS_STATIC_ASSERT(offsetof(struct ps_space, exts) == 0,
		 "ps__space_ext_find() reads the extensions first");

/*
 * The page table's read-side section, entered inline (lib/rcu.h): the section
 * ps_pgtable_read_lock() enters, without its call. The fast paths (a write
 * fault, the pins) enter it once per call or per run, and read entries
 * through a leaf cursor (ps_pgtable_lookup_leaf()) inside it. Wait-free
 * (after the thread's first section).
 */
static inline void ps__space_read_lock(void)
{
	ps__rcu_read_lock();
}

static inline void ps__space_read_unlock(void)
{
	ps__rcu_read_unlock();
}

/* [@start, @start + @len): non-empty, page-aligned, inside the space. */
static inline bool ps__space_range_ok(const struct ps_space *s, uint64_t start,
				      uint64_t len)
{
	return len && !(start & (PAGE_SIZE - 1)) && !(len & (PAGE_SIZE - 1)) &&
	       start < s->size && len <= s->size - start;
}

/* The bit of page @addr in the dirty log and the write-back set. */
static inline uint64_t ps__space_page_index(uint64_t addr)
{
	return addr >> PAGE_SHIFT;
}

/*
 * The space's huge-frame state, or NULL while no frame was ever declared huge
 * (every frame's state is then its 4 KiB word). Acquire: pairs with the
 * release CAS that publishes it (lib/space-huge.c, S15).
 */
static inline struct ps__space_huge *ps__space_huge(struct ps_space *s)
{
	return atomic_load_explicit(&s->huge, memory_order_acquire);
}

/*
 * The page word that holds @frame's state (S16 in lib/space-huge.c): its own
 * 4 KiB word, or the word of the whole huge frame it is part of. *@unit
 * receives what a holder of that word holds: @frame, or PS_SPACE_UNIT() of
 * that huge frame (its first frame, its order), which is what it releases
 * (ps__space_frame_put()) and PS_SPACE_UNIT_FRAME() of which the hooks are
 * told. One load more than &s->frames[@frame] in a space without huge frames.
 */
static inline struct ps_page *ps__space_word(struct ps_space *s, uint64_t frame,
					     uint64_t *unit)
{
	struct ps__space_huge *h = ps__space_huge(s);
	struct ps_page *p;
	unsigned int o;

	if (PS_LIKELY(!h)) {
		*unit = frame;
		return &s->frames[frame];
	}
	p = ps__space_huge_word(h, s->frames, frame, &o);
	*unit = PS_SPACE_UNIT(frame & ~((UINT64_C(1) << o) - 1), o);
	return p;
}

/* The frame's last reference is gone: tell the owner (S7). */
static inline void ps__space_frame_freed(struct ps_space *s, uint64_t frame)
{
	if (s->hooks.free_frame)
		s->hooks.free_frame(s->hooks.ctx, s, frame);
}

/* Drop a pin (the free_frame hook runs if it was the last reference). */
static inline void ps__space_frame_unpin(struct ps_space *s, uint64_t frame)
{
	if (ps_page_unpin(&s->frames[frame]))
		ps__space_frame_freed(s, frame);
}

/*
 * The caller just made the frame's clean-to-dirty transition, holding a
 * reference and the frame's LOCKED bit: run the dirty hook (S5,
 * lib/space-dirty.c), still under that bit. Outside the page table's
 * read-side section (S7).
 */
static inline void ps__space_frame_dirtied(struct ps_space *s, uint64_t frame)
{
	FAILPOINT(FP_DIRTY_SET, frame);
	if (s->hooks.dirty)
		s->hooks.dirty(s->hooks.ctx, s, frame);
}

/*
 * Mark the frame dirty; the one caller that sees DIRTY clear runs the dirty
 * hook (S5, lib/space-dirty.c). DIRTY is set only here and by a write fault's
 * hold, which takes the reference, LOCKED and DIRTY in one CAS (R1 in
 * lib/space-fault.c) and then runs ps__space_frame_dirtied() the same way. The
 * caller holds a reference on the frame (a LIVE frame, not a frozen one: a
 * frame a map claimed, S13, or a conversion froze is never marked) and its
 * LOCKED bit, so that whoever reads DIRTY under that bit finds the hook run
 * (S3, S5). Returns true if this call made it dirty.
 */
static inline bool ps__space_mark_frame_dirty(struct ps_space *s,
					      uint64_t frame)
{
	uint64_t unit;

	if (ps_page_test_and_set_flag(ps__space_word(s, frame, &unit),
				      PS_PAGE_DIRTY))
		return false;
	ps__space_frame_dirtied(s, PS_SPACE_UNIT_FRAME(unit));
	return true;
}

/*
 * ps__space_mark_frame_dirty() for a caller that holds a reference but not
 * the frame's LOCKED bit (an unpin for a device's write; mark_dirty takes
 * the bit with its reference in one CAS instead): it takes the bit around
 * the mark, so that no write-back cleans the frame between its DIRTY and
 * its hook (S5). Returns as ps__space_mark_frame_dirty().
 */
static inline bool ps__space_lock_and_mark_dirty(struct ps_space *s,
						 uint64_t frame)
{
	uint64_t unit;
	struct ps_page *p = ps__space_word(s, frame, &unit);
	bool made;

	ps_page_lock(p);
	made = ps__space_mark_frame_dirty(s, frame);
	ps_page_unlock(p);
	return made;
}

/*
 * The page at @addr was written: for migration (the dirty log, S6) and
 * write-back (its set, S9). ps__space_log_addr() is this, for the modules
 * above.
 */
static inline void ps__space_log_written(struct ps_space *s, uint64_t addr)
{
	(void)ps__hbm_set(&s->log, ps__space_page_index(addr));
	(void)ps__hbm_set(&s->wb, ps__space_page_index(addr));
}

/*
 * A path for writes to the page at @addr has just been opened (a write fault's
 * CAS made its entry writable, a pin for write passed its re-check): log it
 * for migration (S11) and put it in the write-back set (S9), as
 * ps__space_log_written(), but test each bit first: a bit that reads set
 * costs one load, not an RMW. Only for writes that come after the call (the
 * ones through the path just opened): a bit read set carries no release from
 * this caller, so a write made before the call would not be ordered before
 * the harvest that takes the bit; ps_space_mark_dirty() (the caller's write
 * came first) sets with release instead. Why skipping is safe: "Logging after
 * the CAS" in lib/space-fault.c.
 */
static inline void ps__space_log_opened(struct ps_space *s, uint64_t addr)
{
	const uint64_t i = ps__space_page_index(addr);

	if (!ps__hbm_test(&s->log, i))
		(void)ps__hbm_set(&s->log, i);
	if (!ps__hbm_test(&s->wb, i))
		(void)ps__hbm_set(&s->wb, i);
}

/*
 * Put @addr in the write-back set (S9) for a page that is pinned, or mapped
 * to a pinned or dirty frame, without logging it as written. Test first:
 * pinning pages already in the set (the common case: the set keeps a
 * pinned page) costs one load, not an RMW. Why skipping the set when the
 * bit reads set is safe, and where the callers must call this (after which
 * fence or CAS): "Recording the address" under S9 in lib/space-writeback.c.
 */
static inline void ps__space_wb_note(struct ps_space *s, uint64_t addr)
{
	if (!ps__hbm_test(&s->wb, ps__space_page_index(addr)))
		(void)ps__hbm_set(&s->wb, ps__space_page_index(addr));
}

/* Pinned for write right now (a device may write the frame)? (S4) */
static inline bool ps__space_write_pinned(uint64_t w)
{
	return ps_page_word_pinned_for_write(w);
}

/*
 * WRITE_PINNED is set by pins for write and cleared lazily here, once the
 * frame has no pins at all: one CAS that requires pins == 0, so a pin
 * taken meanwhile keeps it (S4).
 */
static inline void ps__space_clear_write_pinned(struct ps_page *p)
{
	(void)ps_page_clear_flag_if_unpinned(p, PS_PAGE_WRITE_PINNED);
}

/*
 * Fault @addr in for an internal user (a pin, the secondary-map helper): 0
 * when the access may proceed, else an errno, a populate hook's own
 * included (lib/space-fault.c).
 */
int ps__space_fault_in(struct ps_space *s, uint64_t addr, unsigned int access);

/*
 * Why a speculative grab of a frame (a try-pin, a masked try-get) failed,
 * as an errno, or 0 to look at the entry again (the frame went away, or is
 * frozen: then it yields first, S8). lib/space-pin.c.
 */
int ps__space_grab_failed(struct ps_page *p, uint64_t reject);

/*
 * A space with huge frames (lib/space-huge.c): the public pin, unpin and map
 * calls hand over to these once ps__space_huge() is not NULL; an unmap puts
 * the frames it zapped by runs (whole frames as one unit, S17).
 */
int ps__space_pin_range_huge(struct ps_space *s, uint64_t start, uint64_t len,
			     unsigned int flags, uint64_t *frames_out);
int ps__space_unpin_huge(struct ps_space *s, const uint64_t *units, uint64_t n,
			 unsigned int flags);

/*
 * A map of pages [0, npages) of [start, ...) to first_frame + page, worked in
 * chunks (S20, lib/space.c). Each function runs under the writer mutex:
 * @step takes and installs the chunk that begins at page @i, all or nothing
 * (on failure it gives back its own and says where, a page of the call),
 * and sets *@e to its end; @undo takes back a chunk that @step installed and
 * @commit commits one; both return its end. A chunk ends at the first boundary
 * of the call's unit decomposition at or after ps__space_chunk_end(), the same
 * every time it is walked (the frames it holds keep their order: S15).
 */
struct ps__space_map {
	struct ps_space *s;
	uint64_t start, npages, first_frame;
	unsigned int flags;
	int mode; /* PS_MAP_CACHE's mode, or -1 */
	int (*step)(const struct ps__space_map *m, uint64_t i, uint64_t *e,
		    uint64_t *where);
	uint64_t (*undo)(const struct ps__space_map *m, uint64_t i);
	uint64_t (*commit)(const struct ps__space_map *m, uint64_t i);
};

/* Pages of address space a map works on per chunk (S20): 64 MiB. */
#define PS__SPACE_MAP_CHUNK PS__FP_MAP_CHUNK_PAGES

/* The page (of the call) where the chunk beginning at page @i ends. */
uint64_t ps__space_chunk_end(const struct ps__space_map *m, uint64_t i);
/* Run a map chunk by chunk (S20): 0, or its step's error (*@where set). */
int ps__space_map_chunked(const struct ps__space_map *m, uint64_t *where);
/* The first page of [@i, @j) a map may not replace, else @i (lib/space.c). */
uint64_t ps__space_first_occupied(struct ps_space *s, uint64_t start,
				  uint64_t i, uint64_t j);
/* Take the writer mutex, counted as a waiter (S20's hand-off). */
void ps__space_writer_take(struct ps_space *s);
/*
 * The end of the zap chunk (S20) that begins at address @a, at most @end: the
 * next 64 MiB boundary, or the end of a 1 GiB leaf that crosses it.
 */
uint64_t ps__space_chunk_next(struct ps_space *s, uint64_t a, uint64_t end);
/* Between two chunks, the mutex let go: yield to a waiter (S20). */
void ps__space_writer_hand_off(struct ps_space *s);
/* Take the writer mutex once no chunked map holds [@start, +@len) (S20). */
void ps__space_writer_lock_range(struct ps_space *s, uint64_t start,
				 uint64_t len);
int ps__space_map_huge_step(const struct ps__space_map *m, uint64_t i,
			    uint64_t *e, uint64_t *where);
uint64_t ps__space_map_huge_undo(const struct ps__space_map *m, uint64_t i);
uint64_t ps__space_map_huge_commit(const struct ps__space_map *m, uint64_t i);
void ps__space_put_run(struct ps_space *s, uint64_t first, uint64_t count);
void ps__space_put_unit(struct ps_space *s, uint64_t unit);
int ps__space_discard_unit(struct ps_space *s, uint64_t addr, uint64_t end,
			   uint64_t *frame, struct ps_page **p, uint64_t *n);
uint64_t ps__space_harvest_units(uint64_t *addrs, uint64_t n);

/*
 * The dirty log (lib/space-log.c). ps__space_log_unit(): mark every page of
 * the unit of @order (PS_SPACE_ORDER_4K, _2M or _1G) at @addr (aligned to
 * it) with one release RMW of its level (and the summaries): wait-free.
 */
void ps__space_log_unit(struct ps_space *s, uint64_t addr, unsigned int order);

/*
 * A taker's visitor (ps__space_log_take()): shown a mark as the unit it is,
 * @addr (aligned) and @order, it says what becomes of it, as for
 * ps__hbm_harvest(): CLEAR (taken), KEEP (taken and set again), STOP (not
 * taken: it and every mark not yet shown stay).
 */
typedef enum ps__hbm_verdict (*ps__space_log_fn)(void *ctx, uint64_t addr,
						 unsigned int order);

/*
 * Take the marks of [@start, @start + @len) (pages, inside the space), in
 * address order, as runs (addr, order). With @units a unit mark whose extent
 * lies inside the range is shown once, as its unit, and the finer marks inside
 * an extent shown are taken with it (not shown); a unit mark that lies only
 * partly inside is first put back as marks one level finer, down to 4 KiB
 * pages, so that the part inside is shown and the rest stays. Without @units
 * every unit mark touching the range is put back as 4 KiB marks first, and
 * only pages are shown. *@resume: the first page not taken (where a STOP
 * came), or the range's end. Lock-free. Returns how many marks were shown.
 * Its takers: the harvest (S6) and the ledger's drain (C1 in
 * lib/space-ledger.c), whose visitors look entries up in the page table's
 * read-side section, which they hold across the take.
 */
uint64_t ps__space_log_take(struct ps_space *s, uint64_t start, uint64_t len,
			    bool units, ps__space_log_fn fn, void *ctx,
			    uint64_t *resume);
bool ps__space_huge_write_fault(struct ps_space *s, uint64_t addr,
				unsigned int access, enum ps_fault *fr,
				int *err);

/* Free the huge-frame state: the space is going away. */
void ps__space_huge_fini(struct ps_space *s);

/*
 * Count one long-term pin more of the unit at @frame (S14; the counts are
 * made at the first): 0, -ENOMEM or -EOVERFLOW; and one less: false if none
 * was counted. lib/space-pin.c, for lib/space-huge.c.
 */
int ps__space_longterm_add(struct ps_space *s, uint64_t frame);
bool ps__space_longterm_sub(struct ps_space *s, uint64_t frame);

/* Free the long-term pin counts (S14): the space is going away. */
void ps__space_pins_fini(struct ps_space *s);

/*
 * What a take does with the mark of the unit of @order at @addr: KEEP while
 * a page of it is pinned for write (S6; a stale WRITE_PINNED is cleared on
 * the way), else CLEAR: the harvest's own look (lib/space-dirty.c), one per
 * word that holds a frame's state (one for a whole huge frame). In the page
 * table's read-side section.
 */
enum ps__hbm_verdict ps__space_log_verdict(struct ps_space *s, uint64_t addr,
					   unsigned int order);

/*
 * A REARM harvest's two steps (lib/space-dirty.c, S11), for the ledger's
 * harvests: before the take, the written entries of async ranges into the
 * log; after it, the re-arm and invalidation of the pages reported.
 */
int ps__space_rearm_into_log(struct ps_space *s, uint64_t start, uint64_t end);
void ps__space_rearm_reported(struct ps_space *s, const uint64_t *addrs,
			      uint64_t n);

/* The ledger, or NULL before the first consumer (acquire: C4). */
static inline struct ps__space_ledger *ps__space_ledger(struct ps_space *s)
{
	/* Acquire: pairs with the release store that publishes it (C4). */
	return atomic_load_explicit(&s->ledger, memory_order_acquire);
}

/*
 * The default consumer (ps_space_harvest(), ps_space_redirty()) once the
 * ledger exists (lib/space-ledger.c, C4): drain, then take pages [@first,
 * @first + @count) from its pending set, at most @max entries into @addrs
 * (@units: an aligned 2 MiB or 1 GiB extent wholly pending is one entry, addr
 * | order); returns how many, *@resume the page to resume from. And put the
 * unit of @order at @addr back (every page of it).
 */
uint64_t ps__space_ledger_take_default(struct ps_space *s, uint64_t first,
				       uint64_t count, bool units,
				       uint64_t *addrs, uint64_t max,
				       uint64_t *resume);
void ps__space_ledger_redirty(struct ps_space *s, uint64_t addr,
			      unsigned int order);

/* Free the ledger: the space is going away. */
void ps__space_ledger_fini(struct ps_space *s);

#endif /* PS_LIB_SPACE_IMPL_H */
