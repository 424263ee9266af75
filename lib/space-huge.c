// SPDX-License-Identifier: MIT
/*
 * lib/space-huge.c - frames of three sizes (pagestate/space.h, "frames of
 * three sizes"): the arrays of page words for 2 MiB and 1 GiB frames, the
 * declaration of which frames they back (ps_space_set_frame_order()), the
 * lookup of the word that holds a frame's state, and the space's metadata
 * figures (ps_space_stats()). The space's other rules: lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space-huge.c as H1..H4)
 * ---------------------------------------------------------------------------
 *
 * H1  The order of a frame is declared per 2 MiB of frames, in a byte array
 *     (0, 9 or 18), under the writer mutex (S1), while no frame of the range
 *     is in use, and stored with release. Every path finds a frame through an
 *     entry that a map installed after the declaration (the map holds the
 *     writer mutex too, and the entry's CAS is a release that the finder
 *     acquires), so whoever reads the order of a frame it found reads the
 *     declaration's value; the loads are acquire all the same, so that a caller
 *     who passes a frame number it got some other way (an unpin) pairs with the
 *     store directly. The structure holding the arrays is published once, by a
 *     release CAS (ps__space_huge()'s acquire): a space that never declares a
 *     huge frame keeps NULL there, and its 4 KiB paths pay one load for it.
 *
 * H2  Where a frame's state lives: in its 1 GiB frame's word while that frame
 *     is whole, else in its 2 MiB frame's word while that one is whole (a 2
 *     MiB part of a split 1 GiB frame is a 2 MiB frame of its own), else in
 *     its 4 KiB word. The 512 2 MiB words of a 1 GiB frame are exactly one 4
 *     KiB page of the 2 MiB array, and the 512 4 KiB words of a 2 MiB frame
 *     one 4 KiB page of the 4 KiB array: splitting a frame's state touches
 *     one page of memory, and a whole frame touches none of the array below.
 *
 * H3  Whole-frame units. A reference or a pin on a whole huge frame's word
 *     stands for the whole frame: a mapping of it by one huge entry, a pin of
 *     all of it, a holder of all of it. It means exactly a reference or pin on
 *     each of its parts: a split gives every part the whole word's counts and
 *     flags, and the release of a whole unit on a split frame releases one
 *     unit on each part. Nothing holds part of a whole frame: an operation on
 *     part of one (a pin, a map or an unmap of part of it) splits the frame's
 *     state first. So is_pinned, dirty and the reference count of a 4 KiB
 *     page inside a whole frame are the whole frame's, and exact.
 *
 * H4  A split freezes the huge word at its exact counts, writes the parts,
 *     and unfreezes it with SPLIT set (the page word's split transition).
 *     A try-get or try-pin on the frozen word fails and its caller looks
 *     again (S8: it yields), then finds SPLIT and the parts. A holder that
 *     took its unit before the freeze is counted in the parts.
 */
#include <pagestate/space.h>

#include "space-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* --- the arrays (H1, H2) -------------------------------------------------- */

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
	if (h->order)
		munmap((void *)(uintptr_t)h->order, h->order_bytes);
	free(h);
}

/* The huge-frame state, made and published at the first declaration (H1). */
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
	h->order_bytes = (size_t)h->n2m;
	h->w2m = map_zeroed(h->w2m_bytes);
	h->w1g = map_zeroed(h->w1g_bytes);
	h->order = map_zeroed(h->order_bytes);
	atomic_init(&h->splits, 0);
	if (!h->w2m || !h->w1g || !h->order) {
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

/* Is any byte of [@p, @p + @bytes) in a resident page? */
static bool any_resident(const void *p, size_t bytes)
{
	uint64_t r;

	return resident_bytes(p, bytes, &r) || r; /* unknown: look */
}

/* --- declaration (H1) ----------------------------------------------------- */

/* Is the word @w in use: held, frozen, or split (H3, H4)? */
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
			  uint64_t i)
{
	const uint64_t first = i << PS_SPACE_ORDER_2M;
	unsigned int o = ps__space_huge_order(h, first);

	if (o == PS_SPACE_ORDER_1G &&
	    word_busy(ps_page_load(&h->w1g[first >> PS_SPACE_ORDER_1G])))
		return true;
	if (o != PS_SPACE_ORDER_4K && word_busy(ps_page_load(&h->w2m[i])))
		return true;
	if (o == PS_SPACE_ORDER_4K &&
	    any_resident(&s->frames[first],
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
	struct ps__space_huge *h;
	int rc;

	if ((order != PS_SPACE_ORDER_4K && order != PS_SPACE_ORDER_2M &&
	     order != PS_SPACE_ORDER_1G) ||
	    !nframes || (first_frame & (align - 1)) ||
	    (nframes & (align - 1)) || first_frame >= s->nframes ||
	    nframes > s->nframes - first_frame)
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	pthread_mutex_lock(&s->writer);
	rc = huge_make(s, &h);
	for (uint64_t i = first_frame >> PS_SPACE_ORDER_2M;
	     !rc && i < (first_frame + nframes) >> PS_SPACE_ORDER_2M; i++)
		if (range_2m_busy(s, h, i))
			rc = -EBUSY;
	/*
	 * Release: the order is stored before the map that installs an entry of
	 * these frames (H1; pairs with the acquire in ps__space_huge_order()).
	 */
	for (uint64_t i = first_frame >> PS_SPACE_ORDER_2M;
	     !rc && i < (first_frame + nframes) >> PS_SPACE_ORDER_2M; i++)
		atomic_store_explicit(&h->order[i], (uint8_t)order,
				      memory_order_release);
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
		rc |= resident_bytes((const void *)(uintptr_t)h->order,
				     h->order_bytes, &r);
		st->words_bytes[1] += r; /* the orders: per 2 MiB of frames */
		/* Relaxed: a counter read for a snapshot. */
		st->frames_split = atomic_load_explicit(&h->splits,
							memory_order_relaxed);
	}
	ps_pgtable_stats(s->pt, &pt);
	st->pgtable_bytes = pt.bytes;
	rc |= resident_bytes(s->log.map, s->log.map_bytes, &st->bitmap_bytes);
	rc |= resident_bytes(s->wb.map, s->wb.map_bytes, &r);
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
