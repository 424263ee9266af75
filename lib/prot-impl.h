/* SPDX-License-Identifier: MIT */
/*
 * lib/prot-impl.h - prot's state in a space and the helpers its files
 * share: for lib/prot*.c only (tests/check-layers.sh enforces it). Not
 * installed; not API.
 *
 * One concern per file. Each file states the rules it governs (P1..P8, cited
 * by tests/test-prot.c) at its top:
 *
 *   lib/prot-convert.c  encryption and cache-mode state: conversion, the
 *                       access check, cache-mode changes, mprotect.
 *                       P1 serialisation, P2 one decision per page, P3 all
 *                       or nothing, P4 quarantine, P7 cache mode, P8 hooks
 *                       outside read-side sections, P9 huge frames
 *   lib/prot-kmap.c     CPU maps (kmap, kunmap, set_inaccessible) and prot's
 *                       per-space state below (created there).
 *                       P5 the CPU-map count, P6 exactly-once
 *                       make-accessible
 *
 * The space's rules (S1..S14) hold too: lib/space-impl.h lists them. Prot
 * reaches the space only through lib/space-internal.h and pagestate/space.h.
 *
 * State. What prot keeps per space (the CPU-map counts of P5 and P6, the hooks)
 * is prot's own: an extension of the space (lib/space-internal.h), created by
 * the first kmap or ps_prot_set_hooks() and freed by ps_space_destroy(). Before
 * it exists every reader reads "no CPU map, no hooks", as a new one says.
 */
#ifndef PS_LIB_PROT_IMPL_H
#define PS_LIB_PROT_IMPL_H

#include <pagestate/prot.h>

#include "space-internal.h"

#include <stddef.h>
#include <stdint.h>

#define PAGE_SHIFT PS_PGTABLE_PAGE_SHIFT
#define PAGE_SIZE PS_PGTABLE_PAGE_SIZE

/* One installed set of hooks; replaced sets stay until destroy. */
struct ps__prot_hooks_node {
	struct ps_prot_hooks h;
	struct ps__prot_hooks_node *prev;
};

/*
 * What prot keeps per space: an extension of the space (space-internal.h),
 * which the space keeps and frees at destroy without knowing what it is.
 * Created by the first operation that needs to write it (a kmap, setting
 * hooks); until then every reader finds none, which reads as a new state
 * would: no CPU maps, no hooks. Lock-free: the first creators race to
 * publish theirs, and the losers free their own.
 */
struct ps__prot_space {
	struct ps__space_ext ext; /* first */
	struct ps_page *frames;	  /* the space's, fixed for its life */
	uint64_t nframes;
	PS_ATOMIC(uint32_t) *kmaps; /* CPU maps per frame (lazily zeroed) */
	void *kmaps_map;	    /* the mapping holding them */
	size_t kmaps_bytes;
	/* The protection hooks in force; older sets are kept until destroy. */
	PS_ATOMIC(struct ps__prot_hooks_node *) hooks;
};

/* The extension's key: prot's, in every space (lib/prot-kmap.c). */
extern const char ps__prot_key;

/* Prot's state in @s, or NULL if no operation has needed one yet. */
static inline struct ps__prot_space *ps__prot_peek(struct ps_space *s)
{
	/* The extension is the state's first member. */
	return (struct ps__prot_space *)ps__space_ext_find(s, &ps__prot_key);
}

/*
 * Create prot's state in @s (or find the one another thread created): 0, or
 * -ENOMEM. lib/prot-kmap.c.
 */
int ps__prot_create(struct ps_space *s, struct ps__prot_space **out);

/* Prot's state in @s, created if needed: 0, or -ENOMEM. */
static inline int ps__prot_get(struct ps_space *s, struct ps__prot_space **out)
{
	*out = ps__prot_peek(s);
	return *out ? 0 : ps__prot_create(s, out);
}

/*
 * A frame's CPU-map word (P5, P10 in lib/prot-kmap.c): in bits 0-1 HELD: 0
 * while the maps hold no reference, else the order of the unit their one
 * reference was taken on, plus one (1: the frame's 4 KiB word, 2: a whole 2
 * MiB frame's word, 3: a whole 1 GiB frame's), so that the last kunmap
 * releases what the first kmap took, whatever the frame's state became; in
 * bits 2-31 the count (at most PS_PAGE_REFS_MAX maps; the values above are
 * room for the adds that look after they add). The frame is CPU-mapped while
 * HELD is set; a count without HELD is only kmaps on their way to the first
 * map's path (none of them a map yet). The count is above HELD so that an add
 * or a subtract that is undone never carries into HELD: every add and
 * subtract of a count commutes, and only compare-and-swaps change HELD.
 */
#define PS__PROT_KMAP_HELD 3u
#define PS__PROT_KMAP_SHIFT 2
#define PS__PROT_KMAP_ONE (1u << PS__PROT_KMAP_SHIFT)

/* The count in the CPU-map word @c, HELD or not. */
static inline uint32_t ps__prot_kmap_n(uint32_t c)
{
	return c >> PS__PROT_KMAP_SHIFT;
}

/* The CPU maps counted in the CPU-map word @c (0 without HELD). */
static inline uint32_t ps__prot_kmap_maps(uint32_t c)
{
	return c & PS__PROT_KMAP_HELD ? ps__prot_kmap_n(c) : 0;
}

/* The CPU maps of @frame (below nframes) now: 0 if none was ever taken. */
static inline uint32_t ps__prot_cpu_maps(struct ps_space *s, uint64_t frame)
{
	struct ps__prot_space *ps = ps__prot_peek(s);

	/*
	 * Acquire: pairs with the release of kmap_slow()'s CAS that sets HELD
	 * and of kunmap (a kunmap's CPU accesses are over), lib/prot-kmap.c.
	 */
	return ps ? ps__prot_kmap_maps(atomic_load_explicit(
			    &ps->kmaps[frame], memory_order_acquire))
		  : 0;
}

/*
 * Is any of the @n frames from @frame CPU-mapped now (P10: a whole huge
 * frame's maps count at the 4 KiB frame they map)? One acquire load per
 * frame, as ps__prot_cpu_maps(): HELD, which only a first map that took its
 * reference sets (P5).
 */
static inline bool ps__prot_cpu_mapped(struct ps__prot_space *ps,
				       uint64_t frame, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		/* Acquire: as ps__prot_cpu_maps(). */
		if (atomic_load_explicit(&ps->kmaps[frame + k],
					 memory_order_acquire) &
		    PS__PROT_KMAP_HELD)
			return true;
	return false;
}

/* The hooks in force (never freed before the space). */
static inline const struct ps_prot_hooks *ps__prot_hooks(struct ps_space *s)
{
	struct ps__prot_space *ps = ps__prot_peek(s);
	struct ps__prot_hooks_node *n;

	if (!ps)
		return NULL;
	/* Acquire: pairs with the release in ps_prot_set_hooks(). */
	n = atomic_load_explicit(&ps->hooks, memory_order_acquire);
	return n ? &n->h : NULL;
}

#endif /* PS_LIB_PROT_IMPL_H */
