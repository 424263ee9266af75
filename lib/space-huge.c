// SPDX-License-Identifier: MIT
/*
 * lib/space-huge.c - frames of three sizes (pagestate/space.h, "frames of
 * three sizes"): the arrays of page words for 2 MiB and 1 GiB frames, the
 * declaration of which frames they back (ps_space_set_frame_order()), the
 * lookup of the word that holds a frame's state, and the space's metadata
 * figures (ps_space_stats()). The space's other rules: lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space-huge.c as S15..S18)
 * ---------------------------------------------------------------------------
 *
 * S15 Declaration. The order of a frame is declared per 2 MiB of frames and
 *     per 1 GiB of frames, in the low bits of the frame's gate (a 32-bit word
 *     per 2 MiB and per 1 GiB of frames), under the writer mutex (S1), while
 *     no frame of the range is in use, and stored with release. Every path
 *     finds a frame through an entry that a map installed after the
 *     declaration (the map holds the writer mutex too, and the entry's CAS is
 *     a release that the finder acquires), so whoever reads the order of a
 *     frame it found reads the declaration's value; the loads are acquire all
 *     the same, so that a caller who passes a frame number it got some other
 *     way (an unpin) pairs with the store directly. The structure holding the
 *     arrays is published once, by a release CAS (ps__space_huge()'s
 *     acquire): a space that never declares a huge frame keeps NULL there,
 *     and its 4 KiB paths pay one load for it.
 *
 * S16 Where a frame's state lives: in its 1 GiB frame's word while that frame
 *     is whole, else in its 2 MiB frame's word while that one is whole (a 2
 *     MiB part of a split 1 GiB frame is a 2 MiB frame of its own), else in
 *     its 4 KiB word. The 512 2 MiB words of a 1 GiB frame are exactly one 4
 *     KiB page of the 2 MiB array, and the 512 4 KiB words of a 2 MiB frame
 *     one 4 KiB page of the 4 KiB array: splitting a frame's state touches
 *     one page of memory, and a whole frame touches none of the array below.
 *     The words below a whole frame are free: declared so (the declaration
 *     checks every resident one), split from a whole word (ps_page_split()
 *     fills them) and merged back only when all are free (ps_page_merge()
 *     leaves them free). The 4 KiB paths that take a word without asking (a
 *     pin's straight path, a write fault's common path) rely on it: their try
 *     on a free word fails, and they fall to the paths that ask.
 *
 * S17 Whole-frame units. A reference or a pin on a whole huge frame's word
 *     stands for the whole frame: a mapping of it by one huge entry, a pin of
 *     all of it, a holder of all of it. It means exactly a reference or pin on
 *     each of its parts: a split gives every part the whole word's counts and
 *     flags, and the release of a whole unit on a split frame releases one
 *     unit on each part. Nothing holds part of a whole frame: an operation on
 *     part of one (a pin, a map, an unmap or a discard of part of it) splits
 *     the frame's state first. So is_pinned, dirty and the reference count
 *     of a 4 KiB page inside a whole frame are the whole frame's, and exact;
 *     and a pin of another 4 KiB of a split frame is that page's alone. A
 *     long-term pin is counted once, at the first frame of the unit as it was
 *     pinned, and uncounted there by its release, whatever the frame's state
 *     became meanwhile (S14).
 *
 * S18 The split gate. ps_page_split() freezes the huge word at its exact
 *     count (gets and pins on it fail from then on, and their callers look
 *     again and find the parts) and writes the parts; a holder that took its
 *     unit before the freeze is counted in them. A release cannot be refused
 *     that way: one that found the word whole and lands on it after the split
 *     would be lost (PS_PAGE_ERR_SPLIT). So a release of a unit on a whole
 *     huge word counts itself in the frame's gate (fetch-and-add), and a
 *     splitter sets SPLITTING in the same word (fetch-or), then waits for the
 *     count to drain. Both are read-modify-writes of one word, so one of them
 *     sees the other: the release backs off and waits for the split (then
 *     finds the parts), or the split waits for the release to finish. Inside
 *     the gate the release reads the word again: a split that finished
 *     between its lookup and its entry sends it to the parts. A merge of a
 *     frame's free parts (ps_page_merge()) passes the gate as a split does:
 *     it makes the word whole before it frees the parts it froze, and a
 *     split let in between would find a frozen part and refuse.
 */
#include <pagestate/space.h>

#include "failpoint.h"
#include "space-impl.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* --- the arrays (S15, S16) ------------------------------------------------ */

static void *map_zeroed(size_t bytes)
{
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return m == MAP_FAILED ? NULL : m;
}

static void huge_free(struct ps__space_huge *h)
{
	if (h->w2m)
		munmap(h->w2m, h->w2m_bytes);
	if (h->w1g)
		munmap(h->w1g, h->w1g_bytes);
	if (h->gate2m)
		munmap((void *)(uintptr_t)h->gate2m, h->gate2m_bytes);
	if (h->gate1g)
		munmap((void *)(uintptr_t)h->gate1g, h->gate1g_bytes);
	free(h);
}

/* The huge-frame state, made and published at the first declaration (S15). */
static int huge_make(struct ps_space *s, struct ps__space_huge **out)
{
	struct ps__space_huge *h = ps__space_huge(s), *seen = NULL;

	if (h) {
		*out = h;
		return 0;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->n2m = (s->nframes + PS__SPACE_2M_PAGES - 1) >> PS_SPACE_ORDER_2M;
	h->n1g = (s->nframes + PS__SPACE_1G_PAGES - 1) >> PS_SPACE_ORDER_1G;
	h->w2m_bytes = (size_t)h->n2m * sizeof(struct ps_page);
	h->w1g_bytes = (size_t)h->n1g * sizeof(struct ps_page);
	h->gate2m_bytes = (size_t)h->n2m * sizeof(*h->gate2m);
	h->gate1g_bytes = (size_t)h->n1g * sizeof(*h->gate1g);
	h->w2m = map_zeroed(h->w2m_bytes);
	h->w1g = map_zeroed(h->w1g_bytes);
	h->gate2m = map_zeroed(h->gate2m_bytes);
	h->gate1g = map_zeroed(h->gate1g_bytes);
	atomic_init(&h->splits, 0);
	if (!h->w2m || !h->w1g || !h->gate2m || !h->gate1g) {
		huge_free(h);
		return -ENOMEM;
	}
	/*
	 * Release: the structure is complete before ps__space_huge() returns
	 * it (its acquire). Under the writer mutex no other thread makes it,
	 * so the CAS cannot fail; acquire on failure all the same.
	 */
	if (!atomic_compare_exchange_strong_explicit(&s->huge, &seen, h,
						     memory_order_release,
						     memory_order_acquire)) {
		huge_free(h);
		h = seen;
	}
	*out = h;
	return 0;
}

void ps__space_huge_fini(struct ps_space *s)
{
	/* Relaxed: no other thread uses the space any more. */
	struct ps__space_huge *h = atomic_load_explicit(&s->huge,
							memory_order_relaxed);

	if (h)
		huge_free(h);
}

/* --- resident pages ------------------------------------------------------- */

/*
 * Resident bytes of [@p, @p + @bytes), counted by page with mincore(2), in
 * chunks of a bounded vector. -ENOMEM if the vector cannot be had.
 */
static int resident_bytes(const void *p, size_t bytes, uint64_t *out)
{
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	const size_t chunk = 1u << 16; /* pages per mincore() call */
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	const uintptr_t end = (uintptr_t)p + bytes;
	unsigned char *vec;
	uint64_t n = 0;

	*out = 0;
	if (!p || !bytes)
		return 0;
	vec = malloc(chunk);
	if (!vec)
		return -ENOMEM;
	while (a < end) {
		size_t pages = (end - a + pg - 1) / pg;

		if (pages > chunk)
			pages = chunk;
		if (mincore((void *)a, pages * pg, vec) == 0)
			for (size_t i = 0; i < pages; i++)
				n += vec[i] & 1;
		a += pages * pg;
	}
	free(vec);
	*out = n * pg;
	return 0;
}

/*
 * Residency of one array, looked up by a window of pages: one mincore() per
 * RES_WINDOW pages of it (a declaration asks twice per 2 MiB of frames, so
 * per page it cost two system calls and a vector each; now a 16 TiB
 * declaration makes a few thousand calls).
 */
#define RES_WINDOW 512u

struct res_cache {
	uintptr_t lo, hi; /* the array: [lo, hi) */
	uintptr_t base;	  /* first page of the window (0: none) */
	size_t n;	  /* pages in the window */
	unsigned char vec[RES_WINDOW];
};

static void res_init(struct res_cache *c, const void *p, size_t bytes)
{
	c->lo = (uintptr_t)p;
	c->hi = (uintptr_t)p + bytes;
	c->base = 0;
	c->n = 0;
}

/* Is any byte of [@p, @p + @bytes) (inside the array) in a resident page? */
static bool res_any(struct res_cache *c, const void *p, size_t bytes)
{
	const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	const uintptr_t end = (uintptr_t)p + bytes;

	for (uintptr_t a = (uintptr_t)p & ~(pg - 1); a < end; a += pg) {
		if (!c->base || a < c->base || a >= c->base + c->n * pg) {
			const uintptr_t top = (c->hi + pg - 1) & ~(pg - 1);

			c->base = a;
			c->n = (top - a) / pg;
			if (c->n > RES_WINDOW)
				c->n = RES_WINDOW;
			if (mincore((void *)a, c->n * pg, c->vec))
				memset(c->vec, 1, c->n); /* unknown: look */
		}
		if (c->vec[(a - c->base) / pg] & 1)
			return true;
	}
	return false;
}

static bool merge_free(struct ps_space *s, struct ps__space_huge *h, uint64_t f,
		       unsigned int order);

/* --- declaration (S15) ---------------------------------------------------- */

/* Is the word @w in use: held, frozen, or split (S17, S18)? */
static bool word_busy(uint64_t w)
{
	return (w & (PS_PAGE_LIVE | PS_PAGE_FROZEN)) || ps__space_word_split(w);
}

/*
 * Is any frame of the 2 MiB of frames @i in use, under its present order?
 * The 4 KiB words are read only where their page is resident: a page of the
 * array never touched holds free words, and reading it would map it.
 */
static bool range_2m_busy(struct ps_space *s, struct ps__space_huge *h,
			  uint64_t i, struct res_cache *gates,
			  struct res_cache *words)
{
	const uint64_t first = i << PS_SPACE_ORDER_2M;
	unsigned int o = PS_SPACE_ORDER_4K;

	/*
	 * The order as declared, without mapping a page of orders never set.
	 * Acquire: pairs with the release store of the declaration (S15).
	 */
	if (atomic_load_explicit(&h->gate1g[first >> PS_SPACE_ORDER_1G],
				 memory_order_acquire) &
	    PS__SPACE_GATE_ORDER)
		o = PS_SPACE_ORDER_1G;
	else if (res_any(gates, (const void *)(uintptr_t)&h->gate2m[i],
			 sizeof(*h->gate2m)))
		o = ps__space_huge_order(h, first);

	/* A split frame whose parts are all free is merged, then free. */
	if (o == PS_SPACE_ORDER_1G &&
	    word_busy(ps_page_load(&h->w1g[first >> PS_SPACE_ORDER_1G])) &&
	    !(ps__space_word_split(
		      ps_page_load(&h->w1g[first >> PS_SPACE_ORDER_1G])) &&
	      merge_free(s, h, first, PS_SPACE_ORDER_1G)))
		return true;
	if (o == PS_SPACE_ORDER_2M && word_busy(ps_page_load(&h->w2m[i])) &&
	    !(ps__space_word_split(ps_page_load(&h->w2m[i])) &&
	      merge_free(s, h, first, PS_SPACE_ORDER_2M)))
		return true;
	if (o == PS_SPACE_ORDER_4K &&
	    res_any(words, &s->frames[first],
		    PS__SPACE_2M_PAGES * sizeof(struct ps_page)))
		for (uint64_t f = first; f < first + PS__SPACE_2M_PAGES; f++)
			if (word_busy(ps_page_load(&s->frames[f])))
				return true;
	return false;
}

int ps_space_set_frame_order(struct ps_space *s, uint64_t first_frame,
			     uint64_t nframes, unsigned int order)
{
	const uint64_t align = order == PS_SPACE_ORDER_1G ? PS__SPACE_1G_PAGES
							  : PS__SPACE_2M_PAGES;
	struct res_cache *res = NULL; /* the gates', the 4 KiB words' */
	struct ps__space_huge *h;
	int rc;

	if ((order != PS_SPACE_ORDER_4K && order != PS_SPACE_ORDER_2M &&
	     order != PS_SPACE_ORDER_1G) ||
	    !nframes || (first_frame & (align - 1)) ||
	    (nframes & (align - 1)) || first_frame >= s->nframes ||
	    nframes > s->nframes - first_frame)
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	/*
	 * S20: not while a map of several chunks is in progress: it chose its
	 * path (4 KiB or huge frames) and its units by the orders it found,
	 * and takes its later chunks' frames after letting the mutex go.
	 */
	ps__space_writer_lock(s);
	rc = huge_make(s, &h);
	/* A 1 GiB frame changes whole, or not at all. */
	if (!rc &&
	    (((first_frame & (PS__SPACE_1G_PAGES - 1)) &&
	      ps__space_huge_order(h, first_frame) == PS_SPACE_ORDER_1G) ||
	     (((first_frame + nframes) & (PS__SPACE_1G_PAGES - 1)) &&
	      first_frame + nframes < s->nframes &&
	      ps__space_huge_order(h, first_frame + nframes) ==
		      PS_SPACE_ORDER_1G)))
		rc = -EINVAL;
	if (!rc) {
		res = malloc(2 * sizeof(*res));
		if (!res)
			rc = -ENOMEM;
	}
	if (!rc) {
		res_init(&res[0], (const void *)(uintptr_t)h->gate2m,
			 h->gate2m_bytes);
		res_init(&res[1], s->frames,
			 (size_t)s->nframes * sizeof(struct ps_page));
	}
	for (uint64_t i = first_frame >> PS_SPACE_ORDER_2M;
	     !rc && i < (first_frame + nframes) >> PS_SPACE_ORDER_2M; i++)
		if (range_2m_busy(s, h, i, &res[0], &res[1]))
			rc = -EBUSY;
	free(res);
	/*
	 * Release: the order is stored before the map that installs an entry
	 * of these frames (S15; pairs with the acquire in
	 * ps__space_huge_order()). 1 GiB frames are said per GiB only; the
	 * bytes per 2 MiB under them are not read while it says so.
	 */
	if (!rc && order == PS_SPACE_ORDER_1G)
		for (uint64_t j = first_frame >> PS_SPACE_ORDER_1G;
		     j < (first_frame + nframes) >> PS_SPACE_ORDER_1G; j++)
			atomic_store_explicit(&h->gate1g[j], PS_SPACE_ORDER_1G,
					      memory_order_release);
	for (uint64_t i = first_frame >> PS_SPACE_ORDER_2M;
	     !rc && order != PS_SPACE_ORDER_1G &&
	     i < (first_frame + nframes) >> PS_SPACE_ORDER_2M;
	     i++) {
		/* Release: as above. */
		atomic_store_explicit(&h->gate2m[i], order,
				      memory_order_release);
		/* Release: as above (a GiB is covered whole, checked above). */
		if (!(i & (PS__SPACE_2M_PAGES - 1)))
			atomic_store_explicit(
				&h->gate1g[i >> PS_SPACE_ORDER_2M], 0,
				memory_order_release);
	}
	pthread_mutex_unlock(&s->writer);
	return rc;
}

unsigned int ps_space_frame_order(struct ps_space *s, uint64_t frame)
{
	struct ps__space_huge *h = ps__space_huge(s);

	if (!h || frame >= s->nframes)
		return PS_SPACE_ORDER_4K;
	return ps__space_huge_order(h, frame);
}

struct ps_page *ps_space_frame_word(struct ps_space *s, uint64_t frame,
				    unsigned int *order)
{
	struct ps__space_huge *h = ps__space_huge(s);
	unsigned int o = PS_SPACE_ORDER_4K;
	struct ps_page *p;

	if (frame >= s->nframes)
		return NULL;
	p = h ? ps__space_huge_word(h, s->frames, frame, &o)
	      : &s->frames[frame];
	if (order)
		*order = o;
	return p;
}

/* --- stats ---------------------------------------------------------------- */

int ps_space_stats(struct ps_space *s, struct ps_space_stats *st)
{
	struct ps__space_huge *h = ps__space_huge(s);
	struct ps_pgtable_stats pt;
	uint64_t r;
	int rc = 0;

	if (!st)
		return -EINVAL;
	*st = (struct ps_space_stats){0};
	rc |= resident_bytes(s->frames,
			     (size_t)s->nframes * sizeof(struct ps_page),
			     &st->words_bytes[0]);
	if (h) {
		rc |= resident_bytes(h->w2m, h->w2m_bytes, &st->words_bytes[1]);
		rc |= resident_bytes(h->w1g, h->w1g_bytes, &st->words_bytes[2]);
		rc |= resident_bytes((const void *)(uintptr_t)h->gate2m,
				     h->gate2m_bytes, &r);
		st->words_bytes[1] += r; /* the orders: per 2 MiB of frames */
		rc |= resident_bytes((const void *)(uintptr_t)h->gate1g,
				     h->gate1g_bytes, &r);
		st->words_bytes[2] += r; /* and per 1 GiB */
		/* Relaxed: a counter read for a snapshot. */
		st->frames_split = atomic_load_explicit(&h->splits,
							memory_order_relaxed);
	}
	ps_pgtable_stats(s->pt, &pt);
	st->pgtable_bytes = pt.bytes;
	rc |= resident_bytes(s->log.map, s->log.map_bytes, &st->bitmap_bytes);
	rc |= resident_bytes(s->wb.map, s->wb.map_bytes, &r);
	st->bitmap_bytes += r;
	rc |= resident_bytes(s->log2m.map, s->log2m.map_bytes, &r);
	st->bitmap_bytes += r;
	rc |= resident_bytes(s->log1g.map, s->log1g.map_bytes, &r);
	st->bitmap_bytes += r;
	{
		/* Acquire: pairs with the release CAS that mapped them. */
		const void *lt = (const void *)(uintptr_t)atomic_load_explicit(
			&s->longterm, memory_order_acquire);

		rc |= resident_bytes(lt, (size_t)s->nframes * 4,
				     &st->longterm_bytes);
	}
	st->metadata_bytes = st->words_bytes[0] + st->words_bytes[1] +
			     st->words_bytes[2] + st->pgtable_bytes +
			     st->bitmap_bytes + st->longterm_bytes;
	return rc ? -ENOMEM : 0;
}

/* --- units: whole frames and their parts (S17) ---------------------------- */

/* Pages in a unit of @order. */
static inline uint64_t unit_pages(unsigned int order)
{
	return UINT64_C(1) << order;
}

/* The gate of the whole frame of @order (9 or 18) that holds @frame (S18). */
static PS_ATOMIC(uint32_t) *gate_of(struct ps__space_huge *h, uint64_t frame,
				    unsigned int order)
{
	return order == PS_SPACE_ORDER_1G
		       ? &h->gate1g[frame >> PS_SPACE_ORDER_1G]
		       : &h->gate2m[frame >> PS_SPACE_ORDER_2M];
}

/* Wait while a split of the frame behind @g is under way (S8: yields). */
static void gate_wait(PS_ATOMIC(uint32_t) *g)
{
	/* Acquire: pairs with the release that ends the split. */
	while (atomic_load_explicit(g, memory_order_acquire) &
	       PS__SPACE_GATE_SPLITTING)
		sched_yield();
}

/*
 * Close the gate @g for a merge (S18): set SPLITTING once no split holds it,
 * then wait for the releases in flight to drain, as a split does. Blocking
 * (yields) while a split or a release is under way.
 */
static void gate_close(PS_ATOMIC(uint32_t) *g)
{
	/* Acq_rel: as split_state()'s fetch-or on the same word. */
	while (atomic_fetch_or_explicit(g, PS__SPACE_GATE_SPLITTING,
					memory_order_acq_rel) &
	       PS__SPACE_GATE_SPLITTING)
		gate_wait(g); /* a split holds it: wait, then take it */
	/* Acquire: pairs with each releaser's release count drop. */
	while (atomic_load_explicit(g, memory_order_acquire) >=
	       PS__SPACE_GATE_ONE)
		sched_yield();
}

/* Open the gate @g that gate_close() closed. */
static void gate_open(PS_ATOMIC(uint32_t) *g)
{
	/* Release: the merge's writes before anyone passes (gate_wait()). */
	(void)atomic_fetch_and_explicit(g, ~PS__SPACE_GATE_SPLITTING,
					memory_order_release);
}

/*
 * Split the state of the whole frame of @order (9 or 18) that holds @frame
 * (S18): its parts of the next order down get the whole word's counts and
 * flags (ps_page_split()). A release of a unit on the whole word must not
 * meet the split (it would land on a word that counts nothing): the gate
 * keeps them apart. The splitter sets SPLITTING and waits for the releases in
 * flight to drain; a releaser counts itself in and backs off if it finds
 * SPLITTING. Both are read-modify-writes of the one gate word, so one of
 * them sees the other. 0 when the caller may look at the frame again (split
 * by this call or another), -EBUSY when a part is not free (S16 broken).
 * Blocking: it waits for releases in flight and for a LOCKED or WRITEBACK
 * frame (yielding).
 */
static int split_state(struct ps_space *s, struct ps__space_huge *h,
		       uint64_t frame, unsigned int order)
{
	PS_ATOMIC(uint32_t) *g = gate_of(h, frame, order);
	const uint64_t head = frame & ~(unit_pages(order) - 1);
	struct ps_page *huge, *parts;
	size_t where;
	int rc;

	if (order == PS_SPACE_ORDER_1G) {
		huge = &h->w1g[head >> PS_SPACE_ORDER_1G];
		parts = &h->w2m[head >> PS_SPACE_ORDER_2M];
	} else {
		huge = &h->w2m[head >> PS_SPACE_ORDER_2M];
		parts = &s->frames[head];
	}
	for (;;) {
		/*
		 * Acq_rel: ordered with every releaser's count on the same
		 * word; acquire pairs with the release of their count drops.
		 */
		uint32_t v = atomic_fetch_or_explicit(g,
						      PS__SPACE_GATE_SPLITTING,
						      memory_order_acq_rel);

		if (v & PS__SPACE_GATE_SPLITTING) {
			gate_wait(g); /* another splits it: look again */
			return 0;
		}
		/* Acquire: pairs with each releaser's release count drop. */
		while (atomic_load_explicit(g, memory_order_acquire) >=
		       PS__SPACE_GATE_ONE)
			sched_yield();
		rc = ps_page_split(huge, parts, 512, &where);
		/* Release: the parts are written before anyone passes. */
		(void)atomic_fetch_and_explicit(g, ~PS__SPACE_GATE_SPLITTING,
						memory_order_release);
		if (!rc) {
			/* Relaxed: a statistic. */
			atomic_fetch_add_explicit(&h->splits, 1,
						  memory_order_relaxed);
			return 0;
		}
		if (rc == -EALREADY)
			return 0;
		if (where < 512)
			return -EBUSY; /* a part in use: S16 broken */
		sched_yield(); /* locked, under write-back, frozen: wait */
	}
}

/*
 * The largest unit that starts at page @p (a page number), fits in [@p, @end)
 * and is no larger than @max_order: a whole 1 GiB or 2 MiB extent, or a page.
 */
static unsigned int unit_order_at(uint64_t p, uint64_t end,
				  unsigned int max_order)
{
	if (max_order >= PS_SPACE_ORDER_1G && !(p & (PS__SPACE_1G_PAGES - 1)) &&
	    end - p >= PS__SPACE_1G_PAGES)
		return PS_SPACE_ORDER_1G;
	if (max_order >= PS_SPACE_ORDER_2M && !(p & (PS__SPACE_2M_PAGES - 1)) &&
	    end - p >= PS__SPACE_2M_PAGES)
		return PS_SPACE_ORDER_2M;
	return PS_SPACE_ORDER_4K;
}

/*
 * The word of the unit of @order at @frame (aligned to it), with the state
 * split down to @order first where a larger whole frame holds it (S17: an
 * operation on part of a whole frame splits it). *@o receives the order of
 * the word returned: @order, or less where the state is split finer (the
 * caller then works on the parts). 0, or split_state()'s error.
 */
static int unit_word(struct ps_space *s, struct ps__space_huge *h,
		     uint64_t frame, unsigned int order, struct ps_page **p,
		     unsigned int *o)
{
	for (;;) {
		int rc;

		*p = ps__space_huge_word(h, s->frames, frame, o);
		if (*o <= order)
			return 0;
		rc = split_state(s, h, frame, *o);
		if (rc)
			return rc;
	}
}

/*
 * Release one reference (@pin false) or one pin (@pin true; @dirty: mark the
 * frame dirty first, as PS_UNPIN_DIRTY) of the unit of @order at @frame: on
 * the unit's word if it is whole, else one on each part (S17). A release on a
 * whole huge word passes its gate (S18), so that no split meets it. The
 * free_frame hook runs for the unit's first frame when it frees a whole unit,
 * per part otherwise. Returns 0, or split_state()'s error (a release of part
 * of a whole frame whose parts are not free: nothing released).
 */
static int release_unit(struct ps_space *s, struct ps__space_huge *h,
			uint64_t frame, unsigned int order, bool pin,
			bool dirty)
{
	for (;;) {
		PS_ATOMIC(uint32_t) *g = NULL;
		struct ps_page *p;
		unsigned int o;
		int rc = unit_word(s, h, frame, order, &p, &o);

		if (rc)
			return rc;
		if (o < order) {
			for (uint64_t k = 0; k < unit_pages(order);
			     k += unit_pages(o)) {
				int r = release_unit(s, h, frame + k, o, pin,
						     dirty);

				if (r && !rc)
					rc = r;
			}
			return rc;
		}
		if (o) {
			FAILPOINT(FP_HUGE_RELEASE_RESOLVED, frame);
			g = gate_of(h, frame, o);
			/* Acq_rel: see split_state(). */
			if (atomic_fetch_add_explicit(g, PS__SPACE_GATE_ONE,
						      memory_order_acq_rel) &
			    PS__SPACE_GATE_SPLITTING) {
				/* Release: as the drop below. */
				atomic_fetch_sub_explicit(g, PS__SPACE_GATE_ONE,
							  memory_order_release);
				gate_wait(g);
				continue;
			}
			if (ps__space_word_split(ps_page_load(p))) {
				/* Split before this release came in. */
				atomic_fetch_sub_explicit(g, PS__SPACE_GATE_ONE,
							  memory_order_release);
				continue;
			}
		}
		if (dirty) {
			/* S5: the mark under the word's LOCKED bit. */
			ps_page_lock(p);
			if (!ps_page_test_and_set_flag(p, PS_PAGE_DIRTY))
				ps__space_frame_dirtied(s, frame);
			ps_page_unlock(p);
		}
		rc = pin ? ps_page_unpin(p) : ps_page_put(p);
		if (g)
			/*
			 * Release: this release happens before the split that
			 * waits for the count (pairs with its acquire load).
			 */
			atomic_fetch_sub_explicit(g, PS__SPACE_GATE_ONE,
						  memory_order_release);
		if (rc)
			ps__space_frame_freed(s, frame);
		return 0;
	}
}

/*
 * A release of a unit as the caller took it, with @flags as for
 * ps_space_unpin(): a long-term count is dropped once, at the unit's first
 * frame, where the pin counted it (S14), whatever happened to the frame's
 * state since. -ENOENT if none was counted (released all the same).
 */
static int release_taken(struct ps_space *s, struct ps__space_huge *h,
			 uint64_t frame, unsigned int order, bool pin,
			 unsigned int flags)
{
	int rc = 0, r;

	if (pin && (flags & PS_UNPIN_LONGTERM) &&
	    !ps__space_longterm_sub(s, frame))
		rc = -ENOENT;
	r = release_unit(s, h, frame, order, pin,
			 pin && (flags & PS_UNPIN_DIRTY));
	return r ? r : rc;
}

/*
 * Does @units[@i ..] start with the 2^@order consecutive frames from
 * @units[@i] (aligned to them)? Such a run is one unit (S17).
 */
static bool run_is_unit(const uint64_t *units, uint64_t i, uint64_t n,
			unsigned int order)
{
	const uint64_t f = units[i], len = unit_pages(order);

	if (!order || (f & (len - 1)) || n - i < len)
		return false;
	for (uint64_t k = 1; k < len; k++)
		if (units[i + k] != f + k)
			return false;
	return true;
}

/*
 * Release what @units hold: each a plain frame number or a PS_SPACE_UNIT().
 * Plain frames of huge frames are grouped: a run of all the frames of one
 * frame (or one 2 MiB part of a 1 GiB frame), in order, is released as that
 * unit, which is the same as releasing each (S17) without splitting it.
 */
static int release_units(struct ps_space *s, struct ps__space_huge *h,
			 const uint64_t *units, uint64_t n, bool pin,
			 unsigned int flags)
{
	int rc = 0;

	for (uint64_t i = 0; i < n;) {
		uint64_t f = PS_SPACE_UNIT_FRAME(units[i]);
		unsigned int order = PS_SPACE_UNIT_ORDER(units[i]), d;
		int r = 0;

		if ((order != PS_SPACE_ORDER_4K && order != PS_SPACE_ORDER_2M &&
		     order != PS_SPACE_ORDER_1G) ||
		    (f & (unit_pages(order) - 1)) || f >= s->nframes ||
		    unit_pages(order) > s->nframes - f) {
			i++; /* not a unit of the space: skipped */
			continue;
		}
		if (!order) {
			d = ps__space_huge_order(h, f);
			if (run_is_unit(units, i, n, d))
				order = d;
			else if (d == PS_SPACE_ORDER_1G &&
				 run_is_unit(units, i, n, PS_SPACE_ORDER_2M))
				order = PS_SPACE_ORDER_2M;
			i += unit_pages(order);
		} else {
			i++;
		}
		r = release_taken(s, h, f, order, pin, flags);
		if (r && !rc)
			rc = r;
	}
	return rc;
}

int ps__space_unpin_huge(struct ps_space *s, const uint64_t *units, uint64_t n,
			 unsigned int flags)
{
	if (flags & ~(PS_UNPIN_DIRTY | PS_UNPIN_LONGTERM))
		return -EINVAL;
	return release_units(s, ps__space_huge(s), units, n, true, flags);
}

void ps__space_put_unit(struct ps_space *s, uint64_t unit)
{
	(void)release_unit(s, ps__space_huge(s), PS_SPACE_UNIT_FRAME(unit),
			   PS_SPACE_UNIT_ORDER(unit), false, false);
}

void ps__space_put_run(struct ps_space *s, uint64_t first, uint64_t count)
{
	struct ps__space_huge *h = ps__space_huge(s);

	for (uint64_t f = first; f < first + count;) {
		unsigned int order = unit_order_at(f, first + count,
						   ps__space_huge_order(h, f));

		(void)release_unit(s, h, f, order, false, false);
		f += unit_pages(order);
	}
}

/* --- pins (S2 with units, S17) -------------------------------------------- */

/* Entries compare equal for a pin's re-check unless A/D bits moved (S2). */
static bool same_leaf(ps_pte_t a, ps_pte_t b)
{
	const ps_pte_t ignore = PS_PTE_ACCESSED | PS_PTE_DIRTY;

	return (a & ~ignore) == (b & ~ignore);
}

/*
 * Are the 64 bits from @bit (a multiple of 64) all set? Seq_cst, as
 * ps__hbm_test() (T0 in lib/hbitmap.h): the skip it allows is the one S9's
 * "Recording the address" proves safe for a test after the re-check.
 */
static bool hbm_word_full(const struct ps__hbm *b, uint64_t bit)
{
	/* Seq_cst: T0's order (lib/hbitmap.h), after S2's fence. */
	return atomic_load_explicit(&b->l0[bit >> 6], memory_order_seq_cst) ==
	       ~UINT64_C(0);
}

/*
 * Record a unit pinned at pages [@p, @p + @n): a pin for write logs it as one
 * unit mark (S6, S9, S11: after the re-check, the device may write from now
 * on), any pin puts its pages in the write-back set (S9). The bits are tested
 * first: a unit or range already set costs loads only (as
 * ps__space_log_opened(): the skip is safe for a path just opened).
 */
static void record_pinned(struct ps_space *s, uint64_t p, uint64_t n,
			  bool write)
{
	unsigned int o;

	if (n == 1) {
		if (write)
			ps__space_log_opened(s, p << PAGE_SHIFT);
		else
			ps__space_wb_note(s, p << PAGE_SHIFT);
		return;
	}
	o = n == unit_pages(PS_SPACE_ORDER_1G) ? PS_SPACE_ORDER_1G
					       : PS_SPACE_ORDER_2M;
	/* T0's seq_cst test (lib/hbitmap.h), as ps__space_log_opened(). */
	if (write &&
	    !ps__hbm_test(o == PS_SPACE_ORDER_1G ? &s->log1g : &s->log2m,
			  p >> o))
		ps__space_log_unit(s, p << PAGE_SHIFT, o);
	for (uint64_t i = p; i < p + n; i += 64) {
		/* Units of 512 or more pages: whole level-0 words. */
		if (!hbm_word_full(&s->wb, i))
			ps__hbm_set_range(&s->wb, i, 64);
	}
}

/*
 * Pin the unit at page @p of a range ending at page @end: the whole frame a
 * huge leaf maps when the leaf's extent starts at @p and fits (one RMW on its
 * word, S17), else the page at @p, or a part of a whole frame whose state is
 * split (then the word of that part). GUP-fast's protocol (S2): read the entry
 * and its leaf, pin speculatively (a seq_cst RMW), a seq_cst fence, read them
 * again; a changed leaf (or order) backs out. The fence pairs with the one an
 * unmap runs between its zap and its puts: with both fences, either the
 * re-read sees the zap or the put sees the pin (C11's fence rules). *@unit
 * receives the unit (PS_SPACE_UNIT()), *@npages its pages.
 */
static int pin_unit_at(struct ps_space *s, struct ps__space_huge *h, uint64_t p,
		       uint64_t end, unsigned int flags, uint64_t *unit,
		       uint64_t *npages)
{
	const bool write = flags & PS_PIN_WRITE;
	const uint64_t reject = PS_PAGE_POISONED |
				(flags & PS_PIN_PRIVATE ? 0 : PS_PAGE_PRIVATE);
	const uint64_t addr = p << PAGE_SHIFT;

	for (;;) {
		ps_pte_t e, leaf, e2, leaf2;
		unsigned int lo, lo2, u, o;
		struct ps_page *w;
		uint64_t f;
		int rc;

		if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf))
			return -EINVAL;
		if (!ps_pte_is_present(e) ||
		    (write && !ps_pte_is_writable(e))) {
			rc = ps__space_fault_in(s, addr,
						write ? PS_ACCESS_WRITE
						      : PS_ACCESS_READ);
			if (rc)
				return rc;
			continue;
		}
		f = ps_pte_frame(e);
		u = unit_order_at(p, end, lo);
		if (f >= s->nframes || unit_pages(u) > s->nframes - f)
			return -EFAULT;
		FAILPOINT(FP_PIN_LOOKED_UP, addr);
		rc = unit_word(s, h, f, u, &w, &o);
		if (rc)
			return rc;
		u = o; /* state split finer than the leaf: its part */
		FAILPOINT(FP_PIN_AFTER_LOOKUP, addr);
		/* S2's P: seq_cst on success (the page word's try-pin). */
		if (!ps_page_try_pin_and_set_flags(w, 1, reject,
						   write ? PS_PAGE_WRITE_PINNED
							 : 0)) {
			rc = ps__space_grab_failed(w, reject); /* may yield */
			if (rc)
				return rc;
			continue;
		}
		FAILPOINT(FP_PIN_BEFORE_RECHECK, addr);
		/* S2: seq_cst fence, pairs with the unmap's (lib/space.c). */
		atomic_thread_fence(memory_order_seq_cst);
		if (ps_pgtable_get_level(s->pt, addr, &e2, &lo2, &leaf2) ||
		    lo2 != lo || !same_leaf(leaf, leaf2) || !same_leaf(e, e2)) {
			/* Changed under us: back out, look again. */
			(void)release_unit(s, h, f, u, true, false);
			continue;
		}
		record_pinned(s, p, unit_pages(u), write);
		FAILPOINT(FP_PIN_RECHECKED, addr);
		*unit = PS_SPACE_UNIT(f, u);
		*npages = unit_pages(u);
		return 0;
	}
}

/*
 * Pin [@start, @start + @len) unit by unit; @emit stores each unit. All or
 * nothing: on an error the units pinned are released from what @emit stored
 * (@undo), so no memory proportional to the range is kept. Returns 0, or the
 * error with *@where the offset of the page that stopped the call.
 */
struct pin_out {
	uint64_t *out;
	uint64_t max, n;
	bool per_page; /* ps_space_pin_range(): a frame per page */
};

static int pin_emit(struct pin_out *o, uint64_t unit, uint64_t npages)
{
	if (o->per_page) {
		for (uint64_t k = 0; k < npages; k++)
			o->out[o->n + k] = PS_SPACE_UNIT_FRAME(unit) + k;
		o->n += npages;
		return 0;
	}
	if (o->n == o->max)
		return -ENOBUFS;
	o->out[o->n++] = unit;
	return 0;
}

static int pin_walk(struct ps_space *s, uint64_t start, uint64_t len,
		    unsigned int flags, struct pin_out *o)
{
	struct ps__space_huge *h = ps__space_huge(s);
	const uint64_t end = (start + len) >> PAGE_SHIFT;
	uint64_t p = start >> PAGE_SHIFT;
	int rc = 0;

	while (p < end) {
		uint64_t unit, n;

		rc = pin_unit_at(s, h, p, end, flags, &unit, &n);
		/* S14: counted after the re-check, at the unit's frame. */
		if (!rc && (flags & PS_PIN_LONGTERM)) {
			rc = ps__space_longterm_add(s,
						    PS_SPACE_UNIT_FRAME(unit));
			if (rc)
				(void)release_unit(s, h,
						   PS_SPACE_UNIT_FRAME(unit),
						   PS_SPACE_UNIT_ORDER(unit),
						   true, false);
		}
		if (!rc) {
			rc = pin_emit(o, unit, n);
			if (rc)
				(void)release_taken(s, h,
						    PS_SPACE_UNIT_FRAME(unit),
						    PS_SPACE_UNIT_ORDER(unit),
						    true,
						    flags & PS_PIN_LONGTERM
							    ? PS_UNPIN_LONGTERM
							    : 0);
		}
		if (rc)
			break;
		p += n;
	}
	if (rc) {
		(void)release_units(s, h, o->out, o->n, true,
				    flags & PS_PIN_LONGTERM ? PS_UNPIN_LONGTERM
							    : 0);
		o->out[0] = (p << PAGE_SHIFT) - start;
		o->n = 0;
	}
	return rc;
}

int ps__space_pin_range_huge(struct ps_space *s, uint64_t start, uint64_t len,
			     unsigned int flags, uint64_t *frames_out)
{
	struct pin_out o = {frames_out, 0, 0, true};

	if (!ps__space_range_ok(s, start, len) || !frames_out ||
	    (flags & ~(PS_PIN_WRITE | PS_PIN_LONGTERM | PS_PIN_PRIVATE)))
		return -EINVAL;
	return pin_walk(s, start, len, flags, &o);
}

int ps_space_pin_units(struct ps_space *s, uint64_t start, uint64_t len,
		       unsigned int flags, uint64_t *units, uint64_t max,
		       uint64_t *count)
{
	struct pin_out o = {units, max, 0, false};
	int rc;

	if (!ps__space_range_ok(s, start, len) || !units || !max || !count ||
	    (flags & ~(PS_PIN_WRITE | PS_PIN_LONGTERM | PS_PIN_PRIVATE)))
		return -EINVAL;
	if (!ps__space_huge(s)) {
		/* No huge frame: a unit per page, the pin_range path. */
		if (len >> PAGE_SHIFT > max) {
			units[0] = max
				   << PAGE_SHIFT; /* the first without room */
			return -ENOBUFS;
		}
		rc = ps_space_pin_range(s, start, len, flags, units);
		*count = rc ? 0 : len >> PAGE_SHIFT;
		return rc;
	}
	rc = pin_walk(s, start, len, flags, &o);
	*count = o.n;
	return rc;
}

/* --- maps (S13 with units, S17) ------------------------------------------- */

/*
 * The unit a map of frame @f at page @p, in a range ending at page @end,
 * takes: the whole frame when the frame and the page are both aligned to it
 * and it fits, else smaller. A unit smaller than the frame that backs @f is
 * part of a huge frame (its state is split first, S17).
 */
static unsigned int map_unit_order(struct ps__space_huge *h, uint64_t f,
				   uint64_t p, uint64_t end)
{
	/* @p and @end are page numbers of the space (alignment counts). */
	unsigned int d = ps__space_huge_order(h, f);

	while (d && ((f | p) & (unit_pages(d) - 1) || end - p < unit_pages(d)))
		d = d == PS_SPACE_ORDER_1G ? PS_SPACE_ORDER_2M
					   : PS_SPACE_ORDER_4K;
	return d;
}

/*
 * S13 for a unit: take the mapping's reference on its word. A LIVE word gains
 * one; a free one is claimed, frozen with none and with its mode unchanged,
 * until the map commits (then it takes the mode PS_MAP_CACHE asks for). So a
 * failed map finds what it claimed by the FROZEN bit alone (nobody else can
 * freeze a word this map holds, under the writer mutex) and gives it back as
 * it was: no record per unit is kept (design 6).
 */
static void untake_unit(struct ps_space *s, struct ps__space_huge *h,
			uint64_t f, unsigned int u);

/*
 * The frame of @order at @f has split state: if every part is free, make it
 * whole again (ps_page_merge()), so that a map of the whole frame takes one
 * word. Only free parts are merged: nobody holds one, so no release on a part
 * can meet the merge (a release that frees one has finished, or the merge
 * finds the part dying and refuses). A part split further (1 GiB) is merged
 * first. True if the frame is whole now.
 */
static bool merge_free(struct ps_space *s, struct ps__space_huge *h, uint64_t f,
		       unsigned int order)
{
	const uint64_t head = f & ~(unit_pages(order) - 1);
	struct ps_page *huge, *parts;
	bool merged;

	if (order == PS_SPACE_ORDER_1G) {
		huge = &h->w1g[head >> PS_SPACE_ORDER_1G];
		parts = &h->w2m[head >> PS_SPACE_ORDER_2M];
	} else {
		huge = &h->w2m[head >> PS_SPACE_ORDER_2M];
		parts = &s->frames[head];
	}
	for (uint64_t k = 0; k < 512; k++) {
		uint64_t w = ps_page_load(&parts[k]);

		if (order == PS_SPACE_ORDER_1G && ps__space_word_split(w) &&
		    !merge_free(s, h, head + (k << PS_SPACE_ORDER_2M),
				PS_SPACE_ORDER_2M))
			return false;
		if (ps_page_load(&parts[k]) & (PS_PAGE_LIVE | PS_PAGE_FROZEN))
			return false;
	}
	/*
	 * S18: the merge passes the split gate. ps_page_merge() makes the
	 * word whole before it frees the parts it froze; a split let in
	 * between would find a frozen part and refuse (-EBUSY to a pin of
	 * part of the frame).
	 */
	gate_close(gate_of(h, head, order));
	merged = !ps_page_merge(huge, parts, 512, NULL);
	gate_open(gate_of(h, head, order));
	return merged;
}

static int take_unit(struct ps_space *s, struct ps__space_huge *h, uint64_t f,
		     unsigned int u, int mode)
{
	struct ps_page *w;
	unsigned int o;
	uint64_t word;
	int rc = unit_word(s, h, f, u, &w, &o);

	if (rc)
		return rc;
	if (o < u && merge_free(s, h, f, u))
		return take_unit(s, h, f, u, mode); /* whole again */
	if (o < u) {
		/* Split finer (S17): the unit is each of its parts. */
		for (uint64_t k = 0; k < unit_pages(u); k += unit_pages(o)) {
			rc = take_unit(s, h, f + k, o, mode);
			if (rc) {
				while (k) {
					k -= unit_pages(o);
					untake_unit(s, h, f + k, o);
				}
				return rc;
			}
		}
		return 0;
	}
	rc = ps_page_get_or_freeze(w, -1, NULL);
	if (rc == -ESTALE)
		return take_unit(s, h, f, u, mode); /* split meanwhile */
	if (rc < 0)
		return rc;
	word = ps_page_load(w);
	if ((word & PS_PAGE_POISONED) ||
	    (mode >= 0 && rc == 0 &&
	     ps_page_word_cache(word) != (unsigned)mode))
		rc = word & PS_PAGE_POISONED ? -EHWPOISON : -EBUSY;
	else
		return 0;
	untake_unit(s, h, f, u);
	return rc;
}

/*
 * Is @w a word this map claimed (S13, S20)? FROZEN without SPLIT: a split
 * of a unit the map holds (a pin of part of a frame through an entry the map
 * installed, lib/space.c S20) freezes the word with SPLIT for its own step,
 * and is none of the map's.
 */
static bool claimed(uint64_t w)
{
	return (w & (PS_PAGE_FROZEN | PS_PAGE_SPLIT)) == PS_PAGE_FROZEN;
}

/*
 * Give back what take_unit() took (S13): a claimed word (FROZEN: no split
 * takes a frozen word) goes back free as it was; a reference goes as any
 * release does (release_unit(): to the parts if the frame was split since).
 */
static void untake_unit(struct ps_space *s, struct ps__space_huge *h,
			uint64_t f, unsigned int u)
{
	unsigned int o;
	struct ps_page *w = ps__space_huge_word(h, s->frames, f, &o);

	if (o == u && claimed(ps_page_load(w)))
		(void)ps_page_unfreeze_change_flags(w, 0, 0, 0);
	else if (o < u && claimed(ps_page_load(w)))
		for (uint64_t k = 0; k < unit_pages(u); k += unit_pages(o))
			untake_unit(s, h, f + k, o);
	else
		(void)release_unit(s, h, f, u, false, false);
}

/* The entry flags of a unit taken (its word is held: stable). */
static uint64_t unit_pte_flags(struct ps_space *s, struct ps__space_huge *h,
			       uint64_t f, unsigned int flags, int mode)
{
	unsigned int o;
	uint64_t w = ps_page_load(ps__space_huge_word(h, s->frames, f, &o));

	return (flags & PS_MAP_WRITE ? PS_PTE_MAYWRITE : 0) |
	       PS_PTE_CACHE(mode >= 0 ? (unsigned)mode
				      : ps_page_word_cache(w)) |
	       (w & PS_PAGE_PRIVATE ? PS_PTE_ENC : 0);
}

/*
 * Commit a unit (S13): a claimed word goes LIVE with the mapping's reference,
 * clean, in the mode asked for (release: pairs with the acquire of the tries
 * that find it); a word pinned or dirty puts its pages in the write-back set
 * (S9).
 */
static void commit_unit(struct ps_space *s, struct ps__space_huge *h,
			uint64_t f, unsigned int u, uint64_t p, int mode)
{
	unsigned int o;
	struct ps_page *w = ps__space_huge_word(h, s->frames, f, &o);
	uint64_t word = ps_page_load(w);

	if (o < u) {
		/* Taken part by part (split state): committed so. */
		for (uint64_t k = 0; k < unit_pages(u); k += unit_pages(o))
			commit_unit(s, h, f + k, o, p + k, mode);
		return;
	}
	if (claimed(word))
		(void)ps_page_unfreeze_change_flags(
			w, 1,
			PS_PAGE_LIFE_FLAGS |
				(mode >= 0 ? PS_PAGE_CACHE_MASK : 0),
			mode >= 0 ? (uint64_t)mode << PS_PAGE_CACHE_SHIFT : 0);
	else if ((word & PS_PAGE_DIRTY) || ps_page_word_pins(word))
		ps__hbm_set_range(&s->wb, p, unit_pages(u));
}

/*
 * Install the units of pages [@p, @q) of the range (taken), one table map per
 * run of units of one order and one set of entry flags. *@done receives the
 * pages before the first that may not be installed.
 */
static int install(struct ps_space *s, struct ps__space_huge *h, uint64_t start,
		   uint64_t first_frame, uint64_t p, uint64_t q,
		   unsigned int flags, int mode, uint64_t *done)
{
	const uint64_t p0 = start >> PAGE_SHIFT;

	while (p < q) {
		const uint64_t f = first_frame + p;
		const unsigned int u = map_unit_order(h, f, p0 + p, p0 + q);
		const uint64_t fl = unit_pte_flags(s, h, f, flags, mode);
		uint64_t r = p + unit_pages(u), len;
		int rc;

		while (r < q &&
		       map_unit_order(h, first_frame + r, p0 + r, p0 + q) ==
			       u &&
		       unit_pte_flags(s, h, first_frame + r, flags, mode) == fl)
			r += unit_pages(u);
		len = (r - p) << PAGE_SHIFT;
		rc = INJECT(FP_MAP_RUN, start + (p << PAGE_SHIFT), &len);
		if (rc) {
			/* The injected refusal after a prefix of @len. */
			*done = p + (len >> PAGE_SHIFT);
			return rc;
		}
		if (len)
			rc = u ? ps_pgtable_map_huge(s->pt,
						     start + (p << PAGE_SHIFT),
						     len, f, fl, u, NULL)
			       : ps_pgtable_map(s->pt,
						start + (p << PAGE_SHIFT), len,
						f, fl);
		if (rc) {
			/*
			 * -EEXIST installs nothing: the run's pages hold
			 * others' entries (a racing map's, S20), which stay.
			 * Else a prefix may be in (the test's injection).
			 */
			*done = p + (rc == -EEXIST ? 0 : len >> PAGE_SHIFT);
			return rc;
		}
		p = r;
	}
	*done = q;
	return 0;
}

/* The unit of the map @m at page @p of the call (its decomposition). */
static unsigned int call_unit(const struct ps__space_map *m,
			      struct ps__space_huge *h, uint64_t p)
{
	const uint64_t p0 = m->start >> PAGE_SHIFT;

	return map_unit_order(h, m->first_frame + p, p0 + p, p0 + m->npages);
}

/*
 * The end of the chunk that begins at page @i: the first unit boundary at or
 * after ps__space_chunk_end() (a 1 GiB unit spans chunks of 64 MiB).
 */
static uint64_t huge_chunk_end(const struct ps__space_map *m,
			       struct ps__space_huge *h, uint64_t i)
{
	const uint64_t ce = ps__space_chunk_end(m, i);
	uint64_t p = i;

	while (p < ce)
		p += unit_pages(call_unit(m, h, p));
	return p;
}

/*
 * Take back the entries of pages [@i, @j) of the map, inside an invalidation,
 * as the 4 KiB map's rollback does (lib/space.c, unmap_installed()): the map
 * kept a UFFD_WP marker's protection as its leaf's uffd-wp bit, so a leaf with
 * that bit is protected again once zapped (a UFFD_WP marker where the range
 * keeps markers): a failed map drops no write protection. The zap keeps
 * protection as a marker only in a shared range; in an anonymous one
 * (PS_WP_UNPOPULATED, async) it would leave none. Without the bit, the zap
 * leaves what the 4 KiB rollback does: a WRITTEN marker in an async range (the
 * map's page was unprotected: written), none elsewhere. Leaf by leaf, so no
 * leaf is split; between a leaf's zap and its protect no map fills the hole
 * (the writer mutex, S1: a fault there is missing, and its populate hook maps
 * through that mutex). Protecting a whole leaf's extent splits nothing.
 */
static void huge_uninstall(const struct ps__space_map *m, uint64_t i,
			   uint64_t j)
{
	struct ps_space *s = m->s;
	const uint64_t a = m->start + (i << PAGE_SHIFT), len = (j - i)
							       << PAGE_SHIFT;

	if (j <= i)
		return;
	/* Visible entries go inside an invalidation (S13). */
	(void)ps_notifier_invalidate_start(&s->notifier, a, len,
					   PS_NOTIFIER_UNMAP, 0);
	for (uint64_t x = a, y; x < a + len; x = y) {
		unsigned int lo = PS_PGTABLE_ORDER_4K;
		ps_pte_t e = PS_PTE_NONE;

		(void)ps_pgtable_get_level(s->pt, x, &e, &lo, NULL);
		y = (x | ((PAGE_SIZE << lo) - 1)) + 1;
		if (y > a + len)
			y = a + len;
		(void)ps_pgtable_zap(s->pt, x, y - x, 0, NULL, NULL);
		if (ps_pte_uffd_wp(e))
			(void)ps_pgtable_protect(s->pt, x, y - x);
	}
	(void)ps_notifier_invalidate_end(&s->notifier, a, len);
}

/* Give back the units of pages [@i, @j) of the map (S13). */
static void huge_untake(const struct ps__space_map *m, struct ps__space_huge *h,
			uint64_t i, uint64_t j)
{
	for (uint64_t p = i; p < j;) {
		const unsigned int u = call_unit(m, h, p);

		untake_unit(m->s, h, m->first_frame + p, u);
		p += unit_pages(u);
	}
}

/*
 * One chunk of a map with huge frames (S20), under the writer mutex, all or
 * nothing: references first (S13), unit by unit, none kept in memory; then
 * the entries, one table map per run of units.
 */
int ps__space_map_huge_step(const struct ps__space_map *m, uint64_t i,
			    uint64_t *e, uint64_t *where)
{
	struct ps_space *s = m->s;
	struct ps__space_huge *h = ps__space_huge(s);
	const uint64_t ce = ps__space_chunk_end(m, i);
	uint64_t taken, done = i;
	int rc = 0;

	for (taken = i; taken < ce;) {
		const unsigned int u = call_unit(m, h, taken);

		rc = take_unit(s, h, m->first_frame + taken, u, m->mode);
		if (rc)
			break;
		taken += unit_pages(u);
	}
	*e = taken;
	*where = taken; /* errors say where: the unit not taken */
	FAILPOINT(FP_MAP_TAKEN, m->start + (i << PAGE_SHIFT));
	if (!rc) {
		rc = install(s, h, m->start, m->first_frame, i, taken, m->flags,
			     m->mode, &done);
		if (rc == -EEXIST)
			*where = ps__space_first_occupied(s, m->start, done,
							  taken);
		else if (rc)
			*where = done;
	}
	FAILPOINT(FP_MAP_INSTALLED, m->start + (i << PAGE_SHIFT));
	if (rc) {
		huge_uninstall(m, i, done);
		/* S2 - seq_cst fence: entries gone before the puts. */
		atomic_thread_fence(memory_order_seq_cst);
		huge_untake(m, h, i, taken);
	}
	return rc;
}

/* A later chunk failed: take back chunk [@i, ...) whole (S20). */
uint64_t ps__space_map_huge_undo(const struct ps__space_map *m, uint64_t i)
{
	struct ps__space_huge *h = ps__space_huge(m->s);
	const uint64_t end = huge_chunk_end(m, h, i);

	huge_uninstall(m, i, end);
	/* S2 - seq_cst fence: entries gone before the puts. */
	atomic_thread_fence(memory_order_seq_cst);
	huge_untake(m, h, i, end);
	return end;
}

/* The map cannot fail any more: commit chunk [@i, ...) (S13). */
uint64_t ps__space_map_huge_commit(const struct ps__space_map *m, uint64_t i)
{
	struct ps__space_huge *h = ps__space_huge(m->s);
	const uint64_t end = huge_chunk_end(m, h, i),
		       p0 = m->start >> PAGE_SHIFT;

	for (uint64_t p = i; p < end;) {
		const unsigned int u = call_unit(m, h, p);

		commit_unit(m->s, h, m->first_frame + p, u, p0 + p, m->mode);
		p += unit_pages(u);
	}
	return end;
}

/* --- write faults on huge entries (S3 for a whole frame) ------------------ */

/*
 * After a write fault at @addr split a leaf of order @lo and left a leaf of
 * order @lo2 < @lo writable there: does every other part of the extent still
 * refuse writes (not writable)? A part found writable (the leaf was made
 * writable whole and split by someone else, or another fault since) makes
 * the caller log the whole extent, which never loses a write.
 */
static bool others_refuse_writes(struct ps_space *s, uint64_t addr,
				 unsigned int lo, unsigned int lo2)
{
	const uint64_t sub = UINT64_C(1) << (PS_SPACE_ORDER_2M + PAGE_SHIFT);
	const uint64_t base = addr & ~((unit_pages(lo) << PAGE_SHIFT) - 1);
	ps_pte_t v[PS__SPACE_2M_PAGES];

	for (uint64_t a = base; a < base + (unit_pages(lo) << PAGE_SHIFT);
	     a += sub) {
		const bool mine = (addr & ~(sub - 1)) == a;

		if (mine && lo2 != PS_SPACE_ORDER_4K)
			continue; /* @addr's 2 MiB leaf, writable whole */
		if (!mine || lo == PS_SPACE_ORDER_1G) {
			/* A 2 MiB part: its first page says for a leaf. */
			if (ps_pgtable_get(s->pt, a, &v[0]) ||
			    (a != addr && ps_pte_is_writable(v[0])))
				return false;
			if (!mine)
				continue;
		}
		if (ps_pgtable_get_range(s->pt, a, PS__SPACE_2M_PAGES, v))
			return false;
		for (uint64_t i = 0; i < PS__SPACE_2M_PAGES; i++)
			if (a + (i << PAGE_SHIFT) != addr &&
			    ps_pte_is_writable(v[i]))
				return false;
	}
	return true;
}

/*
 * A write fault at @addr, a page under a huge entry: true with *@fr the
 * answer, false if @addr is not under one (the caller goes on). The page
 * table's own fault makes the whole entry writable, dirty and accessed by one
 * CAS of the entry (a CAS of one page of it would split it); S3 needs the
 * frame marked dirty before, holding it, and the entry made writable to be
 * the one that maps it. The page table's fault cannot be told which entry to
 * expect, so the frame is pinned to the address instead: under the writer
 * mutex no frame is replaced at an address (S1), and holding the frame's word
 * (a reference and LOCKED) the fault marks it, then runs the table's fault,
 * then logs the pages it made writable: the extent's, or the part left writable
 * where a protected leaf split (S11: after the path opened). Blocking (the
 * writer mutex), once per frame and dirtying: the next writes find the entry
 * writable and dirty, and need no CAS at all.
 */
bool ps__space_huge_write_fault(struct ps_space *s, uint64_t addr,
				unsigned int access, enum ps_fault *fr,
				int *err)
{
	struct ps__space_huge *h = ps__space_huge(s);

	for (;;) {
		ps_pte_t e, leaf, n;
		unsigned int lo, lo2 = 0, o;
		struct ps_page *w;
		uint64_t f, p0;

		if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf) || !lo ||
		    !ps_pte_is_present(e))
			return false;
		n = ps_pte_resolve_write(e);
		if (ps_pte_is_writable(e) && n == e) {
			*fr = PS_FAULT_OK; /* writable, dirty, accessed */
			return true;
		}
		f = ps_pte_frame(leaf);
		if (f >= s->nframes || unit_pages(lo) > s->nframes - f)
			return false;
		ps__space_writer_take(s);
		if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf) || !lo ||
		    ps_pte_frame(leaf) != f) {
			pthread_mutex_unlock(&s->writer);
			continue; /* replaced before the mutex: again */
		}
		*fr = ps_pgtable_fault_pte(s->pt, addr,
					   access | PS_ACCESS_CHECK, &e);
		if (*fr != PS_FAULT_OK || ps_pte_is_writable(e)) {
			/* Refused, or writable: the table's fault alone. */
			if (*fr == PS_FAULT_OK)
				*fr = ps_pgtable_fault(s->pt, addr, access);
			pthread_mutex_unlock(&s->writer);
			return true;
		}
		w = ps__space_huge_word(h, s->frames, f, &o);
		if (o != lo || !ps_page_try_get_and_lock(w)) {
			uint64_t word = ps_page_load(w);

			pthread_mutex_unlock(&s->writer);
			if (o != lo) {
				/*
				 * Split state under a huge entry: making the
				 * entry writable would need every part dirty
				 * first. Split the entry instead (THP-like) and
				 * let the 4 KiB path make this page's part
				 * dirty and its entry writable.
				 */
				const uint64_t ext = unit_pages(lo)
						     << PAGE_SHIFT;

				if (ps_pgtable_split(s->pt, addr & ~(ext - 1),
						     ext)) {
					*fr = PS_FAULT_INVALID;
					if (err)
						*err = -ENOMEM;
					return true;
				}
				return false;
			}
			if ((word & PS_PAGE_LIVE) &&
			    ps_page_word_refs(word) >= PS_PAGE_REFS_MAX) {
				*fr = PS_FAULT_INVALID;
				if (err)
					*err = -EOVERFLOW;
				return true;
			}
			sched_yield(); /* frozen or locked: wait (S8) */
			continue;
		}
		/* S3, S5: dirty first, the hook under LOCKED, for the frame. */
		if (!ps_page_test_and_set_flag(w, PS_PAGE_DIRTY))
			ps__space_frame_dirtied(s, f);
		*fr = ps_pgtable_fault(s->pt, addr, access);
		/*
		 * A write-protected leaf of a PS_WP_HUGE_SPLIT range is split
		 * by the fault, which makes only the leaf now at @addr
		 * writable (a 4 KiB page, or a 2 MiB part of a 1 GiB leaf):
		 * the log gets that leaf's pages alone (4 KiB tracking).
		 * Otherwise the whole leaf became writable and every page of
		 * it may be written from now on. The table's own writers
		 * (an unprotect, a split) do not take the space's mutex, so
		 * the narrowing is kept only if the leaf was protected and
		 * every other part of the extent still refuses writes.
		 */
		lo2 = lo;
		if (*fr == PS_FAULT_OK && ps_pte_uffd_wp(e) &&
		    !ps_pgtable_get_level(s->pt, addr, &n, &lo2, &leaf) &&
		    (lo2 >= lo || !others_refuse_writes(s, addr, lo, lo2)))
			lo2 = lo;
		(void)ps_page_unlock_and_put(w); /* the mapping holds it */
		pthread_mutex_unlock(&s->writer);
		if (*fr == PS_FAULT_OK) {
			/*
			 * S11: logged after the path opened, as the leaf
			 * made writable: one unit mark (lib/space-log.c).
			 */
			p0 = (addr >> PAGE_SHIFT) & ~(unit_pages(lo2) - 1);
			ps__space_log_unit(s, p0 << PAGE_SHIFT, lo2);
			/* Write-back: the frame's pages, as before. */
			p0 = (addr >> PAGE_SHIFT) & ~(unit_pages(lo) - 1);
			ps__hbm_set_range(&s->wb, p0, unit_pages(lo));
		}
		return true;
	}
}

/* --- discard (S10 for a unit) --------------------------------------------- */

/*
 * The unit a discard finds at @addr (a present page, its frame *@frame below
 * nframes; the range ends at @end): a whole frame that a huge entry maps from
 * its first page, inside the range (*@frame its first frame, *@p its word,
 * *@n its pages: discarded as one, S10 on its word), or a 4 KiB page with its
 * own word (*@n 1). Part of a whole frame: the frame's state is split first
 * (S17), and the page is discarded alone; the table splits the entry in the
 * zap. Returns 0, or PS_DISCARD_BUSY for the page if the split could not be
 * made (a part in use: S16 broken).
 */
int ps__space_discard_unit(struct ps_space *s, uint64_t addr, uint64_t end,
			   uint64_t *frame, struct ps_page **p, uint64_t *n)
{
	struct ps__space_huge *h = ps__space_huge(s);
	const uint64_t pg = addr >> PAGE_SHIFT;
	ps_pte_t e, leaf;
	unsigned int lo, u, o;

	*n = 1;
	if (ps_pgtable_get_level(s->pt, addr, &e, &lo, &leaf))
		return 0;
	u = unit_order_at(pg, end >> PAGE_SHIFT, lo);
	if (ps_pte_frame(leaf) != *frame)
		u = PS_SPACE_ORDER_4K; /* not from the extent's first page */
	if (unit_word(s, h, *frame, u, p, &o))
		return PS_DISCARD_BUSY;
	*n = unit_pages(o);
	*frame &= ~(unit_pages(o) - 1);
	return 0;
}

/* --- harvest in units ----------------------------------------------------- */

/*
 * PS_HARVEST_UNITS: rewrite @addrs[0 .. @n) (entries addr | order, ascending
 * and disjoint, as the dirty log's take shows them: pages, and unit marks
 * shown whole) in place, a run of entries that covers an aligned 1 GiB or 2
 * MiB extent exactly becoming one entry, addr | order. Returns the entries
 * left. A run is walked only from an entry aligned to the extent, and stops
 * at the extent's end or at a gap, so each entry is walked at most once per
 * order: linear in @n. A run of pages only is found by one compare, as an
 * entry that is a unit already.
 */
uint64_t ps__space_harvest_units(uint64_t *addrs, uint64_t n)
{
	static const unsigned int orders[] = {PS_SPACE_ORDER_1G,
					      PS_SPACE_ORDER_2M};
	const uint64_t low = PAGE_SIZE - 1;
	uint64_t out = 0;

	for (uint64_t i = 0; i < n;) {
		const uint64_t a = addrs[i] & ~low;
		unsigned int o = (unsigned int)(addrs[i] & low);
		uint64_t j = i + 1;

		for (unsigned int k = 0; k < 2 && o < orders[k]; k++) {
			const uint64_t ext = PAGE_SIZE << orders[k];
			uint64_t end = a + (PAGE_SIZE << o), m = i + 1;

			if (a & (ext - 1))
				continue;
			/*
			 * Pages only: the entry len - 1 places on starts
			 * len - 1 pages on (disjoint, ascending, each at least
			 * a page) exactly when all are contiguous pages.
			 */
			if (!o && n - i >= ext / PAGE_SIZE &&
			    addrs[i + ext / PAGE_SIZE - 1] ==
				    a + ext - PAGE_SIZE) {
				o = orders[k];
				j = i + ext / PAGE_SIZE;
				break;
			}
			while (m < n && end < a + ext &&
			       (addrs[m] & ~low) == end)
				end += PAGE_SIZE << (addrs[m++] & low);
			if (end == a + ext) {
				o = orders[k];
				j = m;
				break;
			}
		}
		addrs[out++] = a | o;
		i = j;
	}
	return out;
}

/* --- splits for the modules above the space (lib/space-internal.h) ------- */

int ps__space_split_frame(struct ps_space *s, uint64_t frame,
			  unsigned int order)
{
	struct ps__space_huge *h = ps__space_huge(s);
	struct ps_page *p;
	unsigned int o;

	if (!h || frame >= s->nframes)
		return 0; /* no huge frame: every word is 4 KiB already */
	return unit_word(s, h, frame, order, &p, &o);
}
