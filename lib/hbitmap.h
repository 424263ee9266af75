/* SPDX-License-Identifier: MIT */
/*
 * lib/hbitmap.h - a three-level atomic bitmap: set bits anywhere, harvest
 * them in time proportional to what is set (internal, not installed).
 *
 *   level 2   1 bit per level-1 word                   (64 chunks)
 *   level 1   1 bit per chunk of 8 level-0 words       (512 bits)
 *   level 0   1 bit per item                           (a 4 KiB page)
 *
 * With one bit per 4 KiB page, a chunk is 2 MiB and a level-2 bit 128 MiB. A
 * harvest reads every level-2 word of its range (for 1 TiB: 128 words), then
 * only the level-1 words and chunks whose summary bit is set. Its cost is
 * therefore the number of set bits plus a tiny term per 128 MiB, not the size
 * of the bitmap. The memory is one anonymous NORESERVE mapping, filled with
 * zeros by the kernel on first touch, so an untouched range costs no resident
 * memory (a 1 TiB range reserves 32 MiB + 64 KiB + 1 KiB of address space).
 *
 * Protocol (every operation is lock-free; set is wait-free):
 *   set:     L0 |= bit, then, if that made it set, L1 |= chunk, L2 |= word.
 *            Each is a release RMW (S0 -> S1 -> S2).
 *   harvest: take L2 bits (fetch-and, acquire), then for each taken bit take
 *            the L1 bits (acquire), then for each taken chunk take the set
 *            L0 bits of its 8 words (A0: seq_cst, see test). A summary bit
 *            is taken (cleared) only where the range covers everything
 *            below it; where it covers part, the bit is read (acquire) and
 *            left set (H1): clearing it for a moment would make a harvest
 *            of the other part, sharing the summary, skip bits set before
 *            it began. Acquiring a
 *            summary bit set by S1/S2 makes the setter's S0 visible, so a
 *            bit whose summary was taken is either taken in the same pass
 *            or (set later) has re-set its summary for the next pass. A set
 *            bit is never lost: it is visited exactly once by exactly one
 *            harvest, unless the visitor keeps it.
 *   test:    one seq_cst load of the L0 word (T0). A0 and T0 are seq_cst so
 *            that a caller can place them in the single total order of its
 *            own seq_cst operations: a test that comes after a take there
 *            reads that take or a later set, never the bit the take took
 *            (lib/space.c's S9 relies on it; on x86 and Arm it costs the
 *            same as acquire).
 *   A summary bit may be set with nothing below it (a harvest took the L0
 *   bits of a chunk whose setter had not yet set L1). That costs the next
 *   harvest one look, never a wrong answer.
 */
#ifndef PS_LIB_HBITMAP_H
#define PS_LIB_HBITMAP_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ps__hbm {
	PS_ATOMIC(uint64_t) *l0;
	PS_ATOMIC(uint64_t) *l1;
	PS_ATOMIC(uint64_t) *l2;
	uint64_t nbits;
	void *map; /* the one mapping holding all three levels */
	size_t map_bytes;
};

/* What a harvest visitor wants done with the bit it was shown. */
enum ps__hbm_verdict {
	PS__HBM_CLEAR = 0, /* consumed: leave it clear */
	PS__HBM_KEEP,	   /* leave it set (it will be shown again) */
	PS__HBM_STOP,	   /* keep it and every bit not yet shown; stop */
};

typedef enum ps__hbm_verdict (*ps__hbm_visit_fn)(void *ctx, uint64_t bit);

/* The most bits a bitmap has: 4 PiB of 4 KiB pages (the mapping of its
 * levels stays within a 47-bit address space). */
#define PS__HBM_MAX_BITS (UINT64_C(1) << 40)

/* Map a zeroed bitmap of @nbits bits (at most PS__HBM_MAX_BITS).
 * Return: 0, -EINVAL, -ENOMEM. */
int ps__hbm_init(struct ps__hbm *b, uint64_t nbits);

/* Unmap it. No other thread may use it any more. */
void ps__hbm_destroy(struct ps__hbm *b);

/* Set @bit. Returns true if this call set it (it was clear). Wait-free. */
bool ps__hbm_set(struct ps__hbm *b, uint64_t bit);

/*
 * Set the bits of @mask in the level-0 word of bit @first (a multiple of 64):
 * one RMW, and the summaries if it gained a bit. Wait-free.
 */
void ps__hbm_set_mask(struct ps__hbm *b, uint64_t first, uint64_t mask);

/*
 * Set bits [@first, @first + @count): one RMW per level-0 word, and the
 * summaries once per chunk that gained a bit. Wait-free.
 */
void ps__hbm_set_range(struct ps__hbm *b, uint64_t first, uint64_t count);

/* Is @bit set? A hint under concurrency (a harvest may take it next). */
static inline bool ps__hbm_test(const struct ps__hbm *b, uint64_t bit)
{
	/* T0 - seq_cst: ordered with A0 in the total order (see above). */
	return (atomic_load_explicit(&b->l0[bit >> 6], memory_order_seq_cst) >>
		(bit & 63)) &
	       1;
}

/*
 * ps__hbm_harvest() - show every set bit in [first, first + count) to @visit,
 * in increasing order, taking it from the bitmap unless the visitor keeps it.
 * Returns how many bits were shown. With PS__HBM_STOP, *@resume (if not NULL)
 * is the bit to resume from; otherwise it is first + count. Lock-free;
 * concurrent harvests of overlapping ranges each see a disjoint subset.
 */
uint64_t ps__hbm_harvest(struct ps__hbm *b, uint64_t first, uint64_t count,
			 ps__hbm_visit_fn visit, void *ctx, uint64_t *resume);

/*
 * A word visitor: shown the bits taken from one level-0 word at once (@bits,
 * bit i standing for bit @first + i, @first a multiple of 64), it returns
 * those to keep set (as PS__HBM_KEEP for each); the others stay clear.
 */
typedef uint64_t (*ps__hbm_visit_word_fn)(void *ctx, uint64_t first,
					  uint64_t bits);

/*
 * ps__hbm_harvest() for a visitor that takes a level-0 word's bits together
 * (one call per word that had any), in increasing order; it cannot stop.
 * Returns how many bits were shown. The same guarantees: the word's bits are
 * taken by one seq_cst RMW (A0) before the call.
 */
uint64_t ps__hbm_harvest_words(struct ps__hbm *b, uint64_t first,
			       uint64_t count, ps__hbm_visit_word_fn visit,
			       void *ctx);

#endif /* PS_LIB_HBITMAP_H */
