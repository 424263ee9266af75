/* SPDX-License-Identifier: MIT */
/*
 * lib/space-huge.h - frames of three sizes: the space's arrays of page words
 * for 2 MiB and 1 GiB frames, the order of each 2 MiB of frames, and the
 * lookup of the word that holds a frame's state. For lib/space*.c only
 * (tests/check-layers.sh); not installed, not API. The rules (S15..S18) are
 * stated at the top of lib/space-huge.c; docs/space.md, "Huge frames", has
 * the design.
 */
#ifndef PS_LIB_SPACE_HUGE_H
#define PS_LIB_SPACE_HUGE_H

#include <pagestate/page.h>
#include <pagestate/space.h>

#include <stddef.h>
#include <stdint.h>

#define PS__SPACE_2M_PAGES (UINT64_C(1) << PS_SPACE_ORDER_2M)
#define PS__SPACE_1G_PAGES (UINT64_C(1) << PS_SPACE_ORDER_1G)

/*
 * A frame's gate: one 32-bit word per 2 MiB of frames and per 1 GiB of frames
 * (S15, S18). Bits 0-4 hold the declared order (9 in a 2 MiB gate, 18 in a 1
 * GiB gate, else 0), bit 5 says a split of that frame's state is under way,
 * bits 6-31 count the releases of a unit on its whole word in flight.
 */
#define PS__SPACE_GATE_ORDER 0x1fu
#define PS__SPACE_GATE_SPLITTING 0x20u
#define PS__SPACE_GATE_ONE 0x40u

/*
 * What a space keeps for huge frames, made at the first
 * ps_space_set_frame_order() and fixed (but for the contents) until destroy.
 * Each array is one anonymous MAP_NORESERVE mapping: zero-filled on first
 * touch, so a 2 MiB of frames that is never declared huge costs nothing.
 */
struct ps__space_huge {
	struct ps_page *w2m;	     /* one word per 2 MiB of frames */
	struct ps_page *w1g;	     /* one word per 1 GiB of frames */
	PS_ATOMIC(uint32_t) *gate1g; /* per 1 GiB of frames: order 18 or 0 */
	PS_ATOMIC(uint32_t) *gate2m; /* per 2 MiB of frames: order 9 or 0 */
	size_t w2m_bytes, w1g_bytes, gate1g_bytes, gate2m_bytes;
	uint64_t n2m, n1g;	    /* entries of each array */
	PS_ATOMIC(uint64_t) splits; /* huge frames split (stats) */
};

/*
 * Has the huge word @w split state (its parts count in the words below)? Not
 * while a split or a merge is under way (SPLIT and FROZEN): the parts are
 * being written then, and the word is the one to wait on. A try on it fails
 * and looks again; a release waits at the frame's gate (S18), which the
 * splitter holds until the parts are complete.
 */
static inline bool ps__space_word_split(uint64_t w)
{
	return (w & (PS_PAGE_SPLIT | PS_PAGE_FROZEN)) == PS_PAGE_SPLIT;
}

/*
 * The order the 4 KiB frame @frame is declared with (S15): the gate of its 1
 * GiB of frames says 1 GiB, else the gate of its 2 MiB says 2 MiB or 4 KiB.
 * Two arrays, so that 1 GiB frames cost a gate per GiB, not one per 2 MiB.
 */
static inline unsigned int ps__space_huge_order(const struct ps__space_huge *h,
						uint64_t frame)
{
	/* Acquire: pairs with the release stores of the declaration (S15). */
	if (atomic_load_explicit(&h->gate1g[frame >> PS_SPACE_ORDER_1G],
				 memory_order_acquire) &
	    PS__SPACE_GATE_ORDER)
		return PS_SPACE_ORDER_1G;
	/* Acquire: as above. */
	return atomic_load_explicit(&h->gate2m[frame >> PS_SPACE_ORDER_2M],
				    memory_order_acquire) &
	       PS__SPACE_GATE_ORDER;
}

/*
 * The word that holds @frame's state now (S16): the 1 GiB word while that frame
 * is whole, else the 2 MiB word while that one is whole, else the 4 KiB word
 * @frames4k[@frame]. *@order receives the unit's order. A splitter freezes the
 * huge word before it writes the parts and sets SPLIT, so a caller that then
 * fails its try on the frozen word looks again and finds the parts (S17).
 */
static inline struct ps_page *ps__space_huge_word(struct ps__space_huge *h,
						  struct ps_page *frames4k,
						  uint64_t frame,
						  unsigned int *order)
{
	unsigned int o = ps__space_huge_order(h, frame);

	if (o == PS_SPACE_ORDER_1G) {
		struct ps_page *p = &h->w1g[frame >> PS_SPACE_ORDER_1G];

		if (!ps__space_word_split(ps_page_load(p))) {
			*order = PS_SPACE_ORDER_1G;
			return p;
		}
		o = PS_SPACE_ORDER_2M; /* its 2 MiB parts count */
	}
	if (o == PS_SPACE_ORDER_2M) {
		struct ps_page *p = &h->w2m[frame >> PS_SPACE_ORDER_2M];

		if (!ps__space_word_split(ps_page_load(p))) {
			*order = PS_SPACE_ORDER_2M;
			return p;
		}
	}
	*order = PS_SPACE_ORDER_4K;
	return &frames4k[frame];
}

#endif /* PS_LIB_SPACE_HUGE_H */
