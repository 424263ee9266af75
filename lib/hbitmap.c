// SPDX-License-Identifier: MIT
/* lib/hbitmap.c - see hbitmap.h for the levels and the protocol. */
#include "hbitmap.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_WORDS 8 /* level-0 words per level-1 bit */
#define CHUNK_SHIFT 9 /* 512 bits per chunk */

static uint64_t words_for(uint64_t bits)
{
	return (bits + 63) / 64;
}

static uint64_t bit_of(uint64_t i)
{
	return UINT64_C(1) << (i & 63);
}

/* Bits of word @w (covering indexes 64w .. 64w+63) within [lo, hi]. */
static uint64_t range_mask(uint64_t w, uint64_t lo, uint64_t hi)
{
	uint64_t base = w * 64;
	unsigned int a, z;

	if (hi < base || lo > base + 63)
		return 0;
	a = lo > base ? (unsigned int)(lo - base) : 0;
	z = hi < base + 63 ? (unsigned int)(hi - base) : 63;
	return (~UINT64_C(0) >> (63 - z)) & (~UINT64_C(0) << a);
}

int ps__hbm_init(struct ps__hbm *b, uint64_t nbits)
{
	uint64_t n0, n1, n2;
	size_t bytes, page = (size_t)sysconf(_SC_PAGESIZE);
	void *p;

	if (nbits == 0 || nbits > PS__HBM_MAX_BITS)
		return -EINVAL;
	n0 = words_for(nbits);
	n1 = words_for((nbits + (UINT64_C(1) << CHUNK_SHIFT) - 1) >>
		       CHUNK_SHIFT);
	n2 = words_for(n1);
	bytes = (size_t)((n0 + n1 + n2) * sizeof(uint64_t));
	bytes = (bytes + page - 1) / page * page;
	/* Zero-filled on first touch: an untouched range costs no memory. */
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	b->map = p;
	b->l0 = p;
	b->l1 = b->l0 + n0;
	b->l2 = b->l1 + n1;
	b->nbits = nbits;
	b->map_bytes = bytes;
	return 0;
}

void ps__hbm_destroy(struct ps__hbm *b)
{
	if (b->map)
		munmap(b->map, b->map_bytes);
	b->map = NULL;
	b->l0 = b->l1 = b->l2 = NULL;
}

/* Set the summary bits of @chunk (S1, S2). */
static void set_summaries(struct ps__hbm *b, uint64_t chunk)
{
	uint64_t w1 = chunk >> 6;

	/*
	 * S1, S2 - release: whatever L0 bits this thread set before are
	 * visible to the harvest that takes these bits (A1, A2).
	 */
	atomic_fetch_or_explicit(&b->l1[w1], bit_of(chunk),
				 memory_order_release);
	atomic_fetch_or_explicit(&b->l2[w1 >> 6], bit_of(w1),
				 memory_order_release);
}

bool ps__hbm_set(struct ps__hbm *b, uint64_t bit)
{
	uint64_t m = bit_of(bit);

	/*
	 * S0 - release: the caller's work before marking (a write the mark
	 * records) happens before the harvest that takes the bit (A0).
	 */
	if (atomic_fetch_or_explicit(&b->l0[bit >> 6], m,
				     memory_order_release) &
	    m)
		return false; /* its setter sets (or set) the summaries */
	set_summaries(b, bit >> CHUNK_SHIFT);
	return true;
}

void ps__hbm_set_mask(struct ps__hbm *b, uint64_t first, uint64_t mask)
{
	/* S0 - release: as in ps__hbm_set(). */
	if (mask && (atomic_fetch_or_explicit(&b->l0[first >> 6], mask,
					      memory_order_release) &
		     mask) != mask)
		set_summaries(b, first >> CHUNK_SHIFT);
}

void ps__hbm_set_range(struct ps__hbm *b, uint64_t first, uint64_t count)
{
	uint64_t last, chunk_gained = UINT64_MAX;

	if (!count)
		return;
	last = first + count - 1;
	for (uint64_t w = first >> 6; w <= last >> 6; w++) {
		uint64_t m = range_mask(w, first, last);

		/* S0 - release: as in ps__hbm_set(). */
		if ((atomic_fetch_or_explicit(&b->l0[w], m,
					      memory_order_release) &
		     m) == m)
			continue; /* nothing new: their setters did the rest */
		if (w / CHUNK_WORDS != chunk_gained) {
			chunk_gained = w / CHUNK_WORDS;
			set_summaries(b, chunk_gained);
		}
	}
}

/*
 * A boundary chunk is only partly in the harvested range, yet its summary
 * bit was taken whole: restore it if bits outside the range remain. Bits set
 * before the take are visible here (A1 acquired them); bits set after it
 * re-set the summary themselves.
 */
static void keep_summary_if_set(struct ps__hbm *b, uint64_t chunk)
{
	for (uint64_t w0 = chunk * CHUNK_WORDS; w0 < (chunk + 1) * CHUNK_WORDS;
	     w0++) {
		/* Relaxed: ordered after A1 (see above). */
		if (atomic_load_explicit(&b->l0[w0], memory_order_relaxed)) {
			set_summaries(b, chunk);
			return;
		}
	}
}

/* The same for a boundary level-1 word and its level-2 bit. */
static void keep_l2_if_set(struct ps__hbm *b, uint64_t w1)
{
	/* Relaxed: ordered after A2 (which acquired the setters' S1). */
	if (atomic_load_explicit(&b->l1[w1], memory_order_relaxed))
		/* Release: as S2. */
		atomic_fetch_or_explicit(&b->l2[w1 >> 6], bit_of(w1),
					 memory_order_release);
}

/*
 * Put back the bits a stopped harvest took but did not consume: @rest0 in
 * level-0 word @w0 of @chunk (the ones kept, the one it stopped at and those
 * not shown), then the summaries above it.
 */
static void put_back(struct ps__hbm *b, uint64_t chunk, uint64_t w0,
		     uint64_t rest0, uint64_t w1, uint64_t rest1, uint64_t w2,
		     uint64_t rest2)
{
	/* Release: as S0. */
	atomic_fetch_or_explicit(&b->l0[w0], rest0, memory_order_release);
	set_summaries(b, chunk);
	if (rest1) {
		/* Release: as S1 (restoring bits this harvest took). */
		atomic_fetch_or_explicit(&b->l1[w1], rest1,
					 memory_order_release);
		atomic_fetch_or_explicit(&b->l2[w1 >> 6], bit_of(w1),
					 memory_order_release);
	}
	if (rest2)
		/* Release: as S2. */
		atomic_fetch_or_explicit(&b->l2[w2], rest2,
					 memory_order_release);
}

/*
 * Take the summary bits @m of @word, of which @take covers only bits outside
 * the range (H1 in lib/hbitmap.h): those are read, not cleared. A harvest of
 * another range that shares the word would find them clear meanwhile and skip
 * bits set before it began. Acquire (A1, A2): pairs with S1, S2.
 */
static uint64_t take_summary(PS_ATOMIC(uint64_t) *word, uint64_t m,
			     uint64_t take)
{
	uint64_t t = 0;

	if (take)
		t = atomic_fetch_and_explicit(word, ~take,
					      memory_order_acq_rel) &
		    take;
	if (m & ~take)
		t |= atomic_load_explicit(word, memory_order_acquire) & m &
		     ~take;
	return t;
}

/*
 * The one harvest loop: each level-0 word's taken bits go to @visit_word
 * (one call a word) if it is set, else to @visit bit by bit. A summary bit is
 * cleared only if the range covers every bit below it (H1).
 */
static uint64_t harvest(struct ps__hbm *b, uint64_t first, uint64_t count,
			ps__hbm_visit_fn visit,
			ps__hbm_visit_word_fn visit_word, void *ctx,
			uint64_t *resume)
{
	uint64_t last, c_first, c_last, w1_first, w1_last, shown = 0;
	/* Chunks and level-1 words the range covers whole: [f, l_end). */
	uint64_t cf, cf_end, wf, wf_end;

	if (first >= b->nbits)
		count = 0;
	else if (count > b->nbits - first)
		count = b->nbits - first;
	if (resume)
		*resume = first + count;
	if (!count)
		return 0;
	last = first + count - 1;
	c_first = first >> CHUNK_SHIFT;
	c_last = last >> CHUNK_SHIFT;
	w1_first = c_first >> 6;
	w1_last = c_last >> 6;
	cf = (first + (UINT64_C(1) << CHUNK_SHIFT) - 1) >> CHUNK_SHIFT;
	cf_end = (last + 1) >> CHUNK_SHIFT;
	if (cf_end < cf)
		cf_end = cf;
	wf = (cf + 63) >> 6;
	wf_end = cf_end >> 6;
	if (wf_end < wf)
		wf_end = wf;
	for (uint64_t w2 = w1_first >> 6; w2 <= w1_last >> 6; w2++) {
		uint64_t m2 = range_mask(w2, w1_first, w1_last);
		/* A2 - acquire: pairs with S2; makes S1 (and S0) visible. */
		uint64_t t2 = take_summary(
			&b->l2[w2], m2,
			wf < wf_end ? m2 & range_mask(w2, wf, wf_end - 1) : 0);

		while (t2) {
			uint64_t w1 = w2 * 64 + (uint64_t)__builtin_ctzll(t2);
			uint64_t m1 = range_mask(w1, c_first, c_last);
			/* A1 - acquire: pairs with S1; makes S0 visible. */
			uint64_t t1 = take_summary(
				&b->l1[w1], m1,
				cf < cf_end
					? m1 & range_mask(w1, cf, cf_end - 1)
					: 0);

			t2 &= t2 - 1;
			while (t1) {
				uint64_t c = w1 * 64 +
					     (uint64_t)__builtin_ctzll(t1);

				t1 &= t1 - 1;
				for (uint64_t w0 = c * CHUNK_WORDS;
				     w0 < (c + 1) * CHUNK_WORDS; w0++) {
					uint64_t m0 = range_mask(w0, first,
								 last);
					uint64_t t0, keep = 0;

					/*
					 * Relaxed peek: A1 already ordered it
					 * after the setters' S0.
					 */
					if (!m0 ||
					    !(atomic_load_explicit(
						      &b->l0[w0],
						      memory_order_relaxed) &
					      m0))
						continue;
					/*
					 * A0 - seq_cst: acquire pairs with
					 * S0; seq_cst orders it with T0.
					 */
					t0 = atomic_fetch_and_explicit(
						     &b->l0[w0], ~m0,
						     memory_order_seq_cst) &
					     m0;
					if (visit_word) {
						shown += (uint64_t)
							__builtin_popcountll(
								t0);
						keep = visit_word(ctx, w0 * 64,
								  t0) &
						       t0;
						t0 = 0;
					}
					while (t0) {
						uint64_t bit =
							w0 * 64 +
							(uint64_t)
								__builtin_ctzll(
									t0);
						enum ps__hbm_verdict v =
							visit(ctx, bit);

						t0 &= t0 - 1;
						shown++;
						if (v == PS__HBM_KEEP) {
							keep |= bit_of(bit);
						} else if (v == PS__HBM_STOP) {
							keep |= bit_of(bit) |
								t0;
							put_back(b, c, w0, keep,
								 w1, t1, w2,
								 t2);
							if (resume)
								*resume = bit;
							return shown;
						}
					}
					if (keep) {
						/* Release: as S0. */
						atomic_fetch_or_explicit(
							&b->l0[w0], keep,
							memory_order_release);
						set_summaries(b, c);
					}
				}
				if (c == c_first || c == c_last)
					keep_summary_if_set(b, c);
			}
			if (w1 == w1_first || w1 == w1_last)
				keep_l2_if_set(b, w1);
		}
	}
	return shown;
}

uint64_t ps__hbm_harvest(struct ps__hbm *b, uint64_t first, uint64_t count,
			 ps__hbm_visit_fn visit, void *ctx, uint64_t *resume)
{
	return harvest(b, first, count, visit, NULL, ctx, resume);
}

uint64_t ps__hbm_harvest_words(struct ps__hbm *b, uint64_t first,
			       uint64_t count, ps__hbm_visit_word_fn visit,
			       void *ctx)
{
	return harvest(b, first, count, NULL, visit, ctx, NULL);
}
