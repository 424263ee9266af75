/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pte.h - one canonical 64-bit page-table entry: none, present,
 * swap or marker, with the userfaultfd write-protect (uffd-wp) bit in the
 * same place in every form. Header-only and pure: nothing here is atomic;
 * pagestate/pgtable.h stores these values in a table.
 *
 * ---------------------------------------------------------------------------
 * Layout (bit 63 on the left)
 * ---------------------------------------------------------------------------
 *
 * Bits 0-1 are the form (TYPE), bit 2 is uffd-wp in every form:
 *
 *   none     all 64 bits zero (zero-filled memory is a table of none entries)
 *
 *   present  63                             12 11 10  9  7  6  5  4  3  2  1 0
 *            +--------------------------------+--+--+-----+--+--+--+--+--+----+
 *            |           frame (52)           |R |E |cache|A |D |MW|W |WP| 01 |
 *            +--------------------------------+--+--+-----+--+--+--+--+--+----+
 *              WP  uffd-wp: writes are reported (sync) or tracked (async)
 *              W   WRITE: writable now (a write needs no fault)
 *              MW  MAYWRITE: writes are permitted (Linux keeps this in the VMA,
 *                  VM_WRITE); a write fault on MW && !W && !WP upgrades to W
 *              D   DIRTY, A ACCESSED
 *              cache  3-bit cache mode, same values as page.h's CACHE field
 *              E   ENC: encrypted/private (the protection module's bit)
 *              R   reserved, zero
 *
 *   swap     63                             12 11   9 8       4  3  2  1 0
 *            +--------------------------------+------+----------+--+--+----+
 *            |          offset (52)           | R(3) | type (5) |EX|WP| 10 |
 *            +--------------------------------+------+----------+--+--+----+
 *              EX  exclusive (Linux's SWP_EXCLUSIVE: the swapped page had
 *                  one owner)
 *
 *   marker   63                                        6  5  4  3  2  1 0
 *            +-------------------------------------------+--+--+--+--+----+
 *            |            reserved, zero (58)            |WR|G |P |WP| 11 |
 *            +-------------------------------------------+--+--+--+--+----+
 *              a non-empty set of PS_PTE_MARKER_{UFFD_WP,POISONED,GUARD},
 *              or PS_PTE_MARKER_WRITTEN (WR) alone; a marker never holds a
 *              frame. The set's UFFD_WP bit *is* the entry's bit 2, so
 *              ps_pte_uffd_wp() is one test for all forms.
 *
 * Invariants, in every form, enforced by the constructors below and checked
 * by ps_pte_valid() (which the table applies to every entry it is handed):
 *   - an entry is never both writable and write-protected (W => !WP), nor
 *     both written and write-protected (a WRITTEN marker holds no other
 *     marker bit);
 *   - W => MW; reserved bits are zero; a marker set is never empty (the
 *     constructor turns an empty set into none); none is exactly 0.
 *
 * The WRITTEN marker is a none page that counts as written: what a zap
 * leaves of a written page in a range registered async (see the transition
 * table in the overview of pagestate/pgtable.h), so that the next scan for
 * written pages still reports the page whose contents the zap changed.
 *
 * Where Linux differs: it keeps uffd-wp in three encodings (a present PTE
 * bit, a swap PTE bit and PTE_MARKER_UFFD_WP, include/linux/swapops.h) and
 * translates between them; here it is bit 2 in every form, and swap-out,
 * swap-in, zap-to-marker and back never move it. Linux has no WRITTEN
 * marker (its zap leaves a none PTE), keeps write permission in the VMA,
 * not in the entry, and reserves some of its 32 swap types for itself.
 * The reasons are in docs/pgtable.md, section "The entry".
 *
 * Limits: frame and swap offset 52 bits (PS_PTE_FRAME_MAX,
 * PS_PTE_SWP_OFFSET_MAX), 32 swap types (PS_PTE_SWP_TYPE_MAX).
 *
 * Ordering, progress: not applicable (pure functions of their arguments).
 */
#ifndef PAGESTATE_PTE_H
#define PAGESTATE_PTE_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

/**
 * typedef ps_pte_t - a page-table entry: one of the four forms above, as a
 * plain 64-bit value (pagestate/pgtable.h stores it atomically).
 */
typedef uint64_t ps_pte_t;

#define PS_PTE_NONE ((ps_pte_t)0)

/* --- common fields -------------------------------------------------------- */

#define PS_PTE_TYPE_SHIFT 0
#define PS_PTE_TYPE_WIDTH 2
#define PS_PTE_TYPE_MASK \
	(((UINT64_C(1) << PS_PTE_TYPE_WIDTH) - 1) << PS_PTE_TYPE_SHIFT)
#define PS_PTE_TYPE_NONE 0u
#define PS_PTE_TYPE_PRESENT 1u
#define PS_PTE_TYPE_SWAP 2u
#define PS_PTE_TYPE_MARKER 3u

#define PS_PTE_UFFD_WP_SHIFT (PS_PTE_TYPE_SHIFT + PS_PTE_TYPE_WIDTH)
#define PS_PTE_UFFD_WP (UINT64_C(1) << PS_PTE_UFFD_WP_SHIFT)

/* --- present -------------------------------------------------------------- */

#define PS_PTE_WRITE_SHIFT (PS_PTE_UFFD_WP_SHIFT + 1)
#define PS_PTE_MAYWRITE_SHIFT (PS_PTE_WRITE_SHIFT + 1)
#define PS_PTE_DIRTY_SHIFT (PS_PTE_MAYWRITE_SHIFT + 1)
#define PS_PTE_ACCESSED_SHIFT (PS_PTE_DIRTY_SHIFT + 1)
#define PS_PTE_CACHE_SHIFT (PS_PTE_ACCESSED_SHIFT + 1)
#define PS_PTE_CACHE_WIDTH 3
#define PS_PTE_ENC_SHIFT (PS_PTE_CACHE_SHIFT + PS_PTE_CACHE_WIDTH)
#define PS_PTE_RSVD_SHIFT (PS_PTE_ENC_SHIFT + 1)
#define PS_PTE_RSVD_WIDTH 1
#define PS_PTE_FRAME_SHIFT (PS_PTE_RSVD_SHIFT + PS_PTE_RSVD_WIDTH)
#define PS_PTE_FRAME_WIDTH 52

#define PS_PTE_WRITE (UINT64_C(1) << PS_PTE_WRITE_SHIFT)
#define PS_PTE_MAYWRITE (UINT64_C(1) << PS_PTE_MAYWRITE_SHIFT)
#define PS_PTE_DIRTY (UINT64_C(1) << PS_PTE_DIRTY_SHIFT)
#define PS_PTE_ACCESSED (UINT64_C(1) << PS_PTE_ACCESSED_SHIFT)
#define PS_PTE_CACHE_MASK \
	(((UINT64_C(1) << PS_PTE_CACHE_WIDTH) - 1) << PS_PTE_CACHE_SHIFT)
#define PS_PTE_ENC (UINT64_C(1) << PS_PTE_ENC_SHIFT)
#define PS_PTE_RSVD_MASK \
	(((UINT64_C(1) << PS_PTE_RSVD_WIDTH) - 1) << PS_PTE_RSVD_SHIFT)
#define PS_PTE_FRAME_MASK \
	(((UINT64_C(1) << PS_PTE_FRAME_WIDTH) - 1) << PS_PTE_FRAME_SHIFT)
#define PS_PTE_FRAME_MAX ((UINT64_C(1) << PS_PTE_FRAME_WIDTH) - 1)

/* A cache mode (0..7) as a flag for ps_pte_mk_present(). */
#define PS_PTE_CACHE(mode) \
	((((uint64_t)(mode)) << PS_PTE_CACHE_SHIFT) & PS_PTE_CACHE_MASK)

/* Every flag a present entry may carry. */
#define PS_PTE_PRESENT_FLAGS                                              \
	(PS_PTE_UFFD_WP | PS_PTE_WRITE | PS_PTE_MAYWRITE | PS_PTE_DIRTY | \
	 PS_PTE_ACCESSED | PS_PTE_CACHE_MASK | PS_PTE_ENC)

PS_STATIC_ASSERT(PS_PTE_FRAME_SHIFT + PS_PTE_FRAME_WIDTH == 64,
		 "pte present: fields must fill exactly 64 bits");
PS_STATIC_ASSERT((PS_PTE_TYPE_MASK | PS_PTE_PRESENT_FLAGS | PS_PTE_RSVD_MASK |
		  PS_PTE_FRAME_MASK) == UINT64_MAX &&
			 (PS_PTE_PRESENT_FLAGS & PS_PTE_FRAME_MASK) == 0 &&
			 (PS_PTE_PRESENT_FLAGS & PS_PTE_TYPE_MASK) == 0,
		 "pte present: fields overlap or leave holes");
PS_STATIC_ASSERT(PS_PTE_FRAME_WIDTH >= 40, "pte: at least 40 frame bits");
PS_STATIC_ASSERT(PS_PTE_FRAME_SHIFT == 12,
		 "pte: frame << 12 is the physical address");

/* --- swap ----------------------------------------------------------------- */

#define PS_PTE_SWP_EXCLUSIVE_SHIFT (PS_PTE_UFFD_WP_SHIFT + 1)
#define PS_PTE_SWP_TYPE_SHIFT (PS_PTE_SWP_EXCLUSIVE_SHIFT + 1)
#define PS_PTE_SWP_TYPE_WIDTH 5
#define PS_PTE_SWP_RSVD_SHIFT (PS_PTE_SWP_TYPE_SHIFT + PS_PTE_SWP_TYPE_WIDTH)
#define PS_PTE_SWP_RSVD_WIDTH 3
#define PS_PTE_SWP_OFFSET_SHIFT (PS_PTE_SWP_RSVD_SHIFT + PS_PTE_SWP_RSVD_WIDTH)
#define PS_PTE_SWP_OFFSET_WIDTH 52

#define PS_PTE_SWP_EXCLUSIVE (UINT64_C(1) << PS_PTE_SWP_EXCLUSIVE_SHIFT)
#define PS_PTE_SWP_TYPE_MASK \
	(((UINT64_C(1) << PS_PTE_SWP_TYPE_WIDTH) - 1) << PS_PTE_SWP_TYPE_SHIFT)
#define PS_PTE_SWP_RSVD_MASK \
	(((UINT64_C(1) << PS_PTE_SWP_RSVD_WIDTH) - 1) << PS_PTE_SWP_RSVD_SHIFT)
#define PS_PTE_SWP_OFFSET_MASK                          \
	(((UINT64_C(1) << PS_PTE_SWP_OFFSET_WIDTH) - 1) \
	 << PS_PTE_SWP_OFFSET_SHIFT)
#define PS_PTE_SWP_TYPE_MAX ((1u << PS_PTE_SWP_TYPE_WIDTH) - 1)
#define PS_PTE_SWP_OFFSET_MAX ((UINT64_C(1) << PS_PTE_SWP_OFFSET_WIDTH) - 1)

/* Every flag a swap entry may carry. */
#define PS_PTE_SWAP_FLAGS (PS_PTE_UFFD_WP | PS_PTE_SWP_EXCLUSIVE)

PS_STATIC_ASSERT(PS_PTE_SWP_OFFSET_SHIFT + PS_PTE_SWP_OFFSET_WIDTH == 64,
		 "pte swap: fields must fill exactly 64 bits");
PS_STATIC_ASSERT((PS_PTE_TYPE_MASK | PS_PTE_SWAP_FLAGS | PS_PTE_SWP_TYPE_MASK |
		  PS_PTE_SWP_RSVD_MASK | PS_PTE_SWP_OFFSET_MASK) ==
				 UINT64_MAX &&
			 (PS_PTE_SWAP_FLAGS & PS_PTE_SWP_TYPE_MASK) == 0 &&
			 (PS_PTE_SWP_TYPE_MASK & PS_PTE_SWP_RSVD_MASK) == 0,
		 "pte swap: fields overlap or leave holes");

/* --- marker --------------------------------------------------------------- */

/*
 * Marker bits, as a set: the first three are Linux's PTE_MARKER_* values and
 * combine freely; PS_PTE_MARKER_WRITTEN is the library's own and stands
 * alone (see the overview above).
 */
#define PS_PTE_MARKER_UFFD_WP 0x1u
#define PS_PTE_MARKER_POISONED 0x2u
#define PS_PTE_MARKER_GUARD 0x4u
#define PS_PTE_MARKER_ALL \
	(PS_PTE_MARKER_UFFD_WP | PS_PTE_MARKER_POISONED | PS_PTE_MARKER_GUARD)
#define PS_PTE_MARKER_WRITTEN 0x8u

#define PS_PTE_MARKER_SHIFT PS_PTE_UFFD_WP_SHIFT
#define PS_PTE_MARKER_WIDTH 4
#define PS_PTE_MARKER_MASK \
	(((UINT64_C(1) << PS_PTE_MARKER_WIDTH) - 1) << PS_PTE_MARKER_SHIFT)
#define PS_PTE_MARKER_RSVD_MASK (~(PS_PTE_TYPE_MASK | PS_PTE_MARKER_MASK))

PS_STATIC_ASSERT(
	((uint64_t)PS_PTE_MARKER_UFFD_WP << PS_PTE_MARKER_SHIFT) ==
		PS_PTE_UFFD_WP,
	"pte marker: the UFFD_WP marker bit is the entry's uffd-wp bit");
PS_STATIC_ASSERT((PS_PTE_MARKER_ALL | PS_PTE_MARKER_WRITTEN) ==
			 (1u << PS_PTE_MARKER_WIDTH) - 1,
		 "pte marker: the set fills its field");
PS_STATIC_ASSERT(PS_PTE_MARKER_WRITTEN << PS_PTE_MARKER_SHIFT == 1u << 5,
		 "pte marker: WRITTEN's low five bits are an empty marker's");

/* --- forms ---------------------------------------------------------------- */

/**
 * ps_pte_type() - the form of an entry.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: PS_PTE_TYPE_NONE, _PRESENT, _SWAP or _MARKER (bits 0-1).
 */
static inline unsigned int ps_pte_type(ps_pte_t e)
{
	return (unsigned int)((e & PS_PTE_TYPE_MASK) >> PS_PTE_TYPE_SHIFT);
}

/**
 * ps_pte_is_none() - nothing there (exactly 0).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is PS_PTE_NONE.
 */
static inline bool ps_pte_is_none(ps_pte_t e)
{
	return e == PS_PTE_NONE;
}

/**
 * ps_pte_is_present() - maps a frame.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is of the present form.
 */
static inline bool ps_pte_is_present(ps_pte_t e)
{
	return ps_pte_type(e) == PS_PTE_TYPE_PRESENT;
}

/**
 * ps_pte_is_swap() - a swap entry (type, offset).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is of the swap form.
 */
static inline bool ps_pte_is_swap(ps_pte_t e)
{
	return ps_pte_type(e) == PS_PTE_TYPE_SWAP;
}

/**
 * ps_pte_is_marker() - a marker (no frame, a set of marker bits).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is of the marker form.
 */
static inline bool ps_pte_is_marker(ps_pte_t e)
{
	return ps_pte_type(e) == PS_PTE_TYPE_MARKER;
}

/**
 * ps_pte_valid() - is @e one of the four forms with its invariants?
 * @e: an entry.
 *
 * False for a non-zero entry of type none, set reserved bits, an empty
 * marker, a WRITTEN marker with another marker bit, or a present entry that
 * is writable and write-protected, or writable without MAYWRITE.
 * Context: any; pure function of @e.
 * Return: true if @e is valid.
 */
static inline bool ps_pte_valid(ps_pte_t e)
{
	switch (ps_pte_type(e)) {
	case PS_PTE_TYPE_NONE:
		return e == PS_PTE_NONE;
	case PS_PTE_TYPE_PRESENT:
		if (e & PS_PTE_RSVD_MASK)
			return false;
		return !(e & PS_PTE_WRITE) ||
		       (e & (PS_PTE_MAYWRITE | PS_PTE_UFFD_WP)) ==
			       PS_PTE_MAYWRITE;
	case PS_PTE_TYPE_SWAP:
		return !(e & PS_PTE_SWP_RSVD_MASK);
	default:
		if (e & PS_PTE_MARKER_RSVD_MASK)
			return false;
		e = (e & PS_PTE_MARKER_MASK) >> PS_PTE_MARKER_SHIFT;
		return e != 0 && (e == PS_PTE_MARKER_WRITTEN ||
				  !(e & PS_PTE_MARKER_WRITTEN));
	}
}

/* --- constructors --------------------------------------------------------- */

/**
 * ps_pte_mk_present() - a present entry for @frame.
 * @frame: frame number, at most PS_PTE_FRAME_MAX.
 * @flags: a subset of PS_PTE_PRESENT_FLAGS (PS_PTE_CACHE(mode) for the cache
 *	mode).
 *
 * The invariants are enforced, as Linux's pte_mkuffd_wp() does: with
 * PS_PTE_UFFD_WP, PS_PTE_WRITE is dropped; PS_PTE_WRITE implies
 * PS_PTE_MAYWRITE.
 * Context: any; pure function of @frame and @flags.
 * Return: the entry; PS_PTE_NONE if @frame or @flags is out of range.
 */
static inline ps_pte_t ps_pte_mk_present(uint64_t frame, uint64_t flags)
{
	if (frame > PS_PTE_FRAME_MAX || (flags & ~PS_PTE_PRESENT_FLAGS))
		return PS_PTE_NONE;
	if (flags & PS_PTE_WRITE)
		flags |= PS_PTE_MAYWRITE;
	if (flags & PS_PTE_UFFD_WP)
		flags &= ~PS_PTE_WRITE;
	return (frame << PS_PTE_FRAME_SHIFT) | flags |
	       ((uint64_t)PS_PTE_TYPE_PRESENT << PS_PTE_TYPE_SHIFT);
}

/**
 * ps_pte_mk_swap() - a swap entry.
 * @type: swap type (0..PS_PTE_SWP_TYPE_MAX).
 * @offset: slot in that swap device (at most PS_PTE_SWP_OFFSET_MAX).
 * @flags: a subset of PS_PTE_SWAP_FLAGS (PS_PTE_UFFD_WP, PS_PTE_SWP_EXCLUSIVE).
 * Context: any; pure function of its arguments.
 * Return: the entry; PS_PTE_NONE if an argument is out of range.
 */
static inline ps_pte_t ps_pte_mk_swap(unsigned int type, uint64_t offset,
				      uint64_t flags)
{
	if (type > PS_PTE_SWP_TYPE_MAX || offset > PS_PTE_SWP_OFFSET_MAX ||
	    (flags & ~PS_PTE_SWAP_FLAGS))
		return PS_PTE_NONE;
	return (offset << PS_PTE_SWP_OFFSET_SHIFT) |
	       ((uint64_t)type << PS_PTE_SWP_TYPE_SHIFT) | flags |
	       ((uint64_t)PS_PTE_TYPE_SWAP << PS_PTE_TYPE_SHIFT);
}

/**
 * ps_pte_mk_marker() - a marker holding the set @bits (PS_PTE_MARKER_*).
 * @bits: the set: a non-empty subset of PS_PTE_MARKER_ALL, or
 *	PS_PTE_MARKER_WRITTEN alone.
 * Context: any; pure function of @bits.
 * Return: the marker; PS_PTE_NONE for an empty set, unknown bits, or
 * PS_PTE_MARKER_WRITTEN with another bit.
 */
static inline ps_pte_t ps_pte_mk_marker(unsigned int bits)
{
	if (bits == 0 ||
	    (bits != PS_PTE_MARKER_WRITTEN && (bits & ~PS_PTE_MARKER_ALL)))
		return PS_PTE_NONE;
	return ((uint64_t)bits << PS_PTE_MARKER_SHIFT) |
	       ((uint64_t)PS_PTE_TYPE_MARKER << PS_PTE_TYPE_SHIFT);
}

/* --- getters and predicates ----------------------------------------------- */

/**
 * ps_pte_uffd_wp() - is @e write-protected (present, swap or marker)?
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if bit 2 (uffd-wp) is set, whatever the form.
 */
static inline bool ps_pte_uffd_wp(ps_pte_t e)
{
	return (e & PS_PTE_UFFD_WP) != 0;
}

/**
 * ps_pte_written() - is @e written (Linux's PAGE_IS_WRITTEN)?
 * @e: an entry.
 *
 * Written means not none and not write-protected, in any form: a present
 * or swap entry without uffd-wp, a GUARD or POISONED marker without
 * UFFD_WP (as PAGEMAP_SCAN reports such a marker), and a WRITTEN marker (as
 * the kernel reports the none PTE it stands for).
 * Context: any; pure function of @e.
 * Return: true if @e is written (PS_CAT_WRITTEN).
 */
static inline bool ps_pte_written(ps_pte_t e)
{
	return e != PS_PTE_NONE && !(e & PS_PTE_UFFD_WP);
}

/**
 * ps_pte_frame() - frame number of a present entry (0 for other forms).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: the frame number, or 0 if @e is not present.
 */
static inline uint64_t ps_pte_frame(ps_pte_t e)
{
	return ps_pte_is_present(e) ? e >> PS_PTE_FRAME_SHIFT : 0;
}

/**
 * ps_pte_flags() - the PS_PTE_PRESENT_FLAGS of a present entry, else 0.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: @e & PS_PTE_PRESENT_FLAGS if present, else 0.
 */
static inline uint64_t ps_pte_flags(ps_pte_t e)
{
	return ps_pte_is_present(e) ? e & PS_PTE_PRESENT_FLAGS : 0;
}

/**
 * ps_pte_is_writable() - present and writable now (never with uffd-wp).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is present with WRITE.
 */
static inline bool ps_pte_is_writable(ps_pte_t e)
{
	return ps_pte_is_present(e) && (e & PS_PTE_WRITE);
}

/**
 * ps_pte_may_write() - present and writes are permitted (MAYWRITE).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is present with MAYWRITE.
 */
static inline bool ps_pte_may_write(ps_pte_t e)
{
	return ps_pte_is_present(e) && (e & PS_PTE_MAYWRITE);
}

/**
 * ps_pte_is_dirty() - present and DIRTY.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is present with DIRTY.
 */
static inline bool ps_pte_is_dirty(ps_pte_t e)
{
	return ps_pte_is_present(e) && (e & PS_PTE_DIRTY);
}

/**
 * ps_pte_is_accessed() - present and ACCESSED.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is present with ACCESSED.
 */
static inline bool ps_pte_is_accessed(ps_pte_t e)
{
	return ps_pte_is_present(e) && (e & PS_PTE_ACCESSED);
}

/**
 * ps_pte_cache() - the 3-bit cache mode of a present entry (0 otherwise).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: the cache mode (0..7), or 0 if @e is not present.
 */
static inline unsigned int ps_pte_cache(ps_pte_t e)
{
	return ps_pte_is_present(e) ? (unsigned int)((e & PS_PTE_CACHE_MASK) >>
						     PS_PTE_CACHE_SHIFT)
				    : 0;
}

/**
 * ps_pte_is_encrypted() - present with the ENC bit.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is present with ENC.
 */
static inline bool ps_pte_is_encrypted(ps_pte_t e)
{
	return ps_pte_is_present(e) && (e & PS_PTE_ENC);
}

/**
 * ps_pte_swap_type() - swap type of a swap entry (0 otherwise).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: the swap type (0..PS_PTE_SWP_TYPE_MAX), or 0 if @e is not swap.
 */
static inline unsigned int ps_pte_swap_type(ps_pte_t e)
{
	return ps_pte_is_swap(e) ? (unsigned int)((e & PS_PTE_SWP_TYPE_MASK) >>
						  PS_PTE_SWP_TYPE_SHIFT)
				 : 0;
}

/**
 * ps_pte_swap_offset() - swap offset of a swap entry (0 otherwise).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: the swap offset, or 0 if @e is not a swap entry.
 */
static inline uint64_t ps_pte_swap_offset(ps_pte_t e)
{
	return ps_pte_is_swap(e) ? e >> PS_PTE_SWP_OFFSET_SHIFT : 0;
}

/**
 * ps_pte_swap_exclusive() - swap entry with the exclusive bit.
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: true if @e is a swap entry with PS_PTE_SWP_EXCLUSIVE.
 */
static inline bool ps_pte_swap_exclusive(ps_pte_t e)
{
	return ps_pte_is_swap(e) && (e & PS_PTE_SWP_EXCLUSIVE);
}

/**
 * ps_pte_marker_bits() - the PS_PTE_MARKER_* set of a marker (0 otherwise).
 * @e: an entry.
 *
 * Context: any; pure function of @e.
 * Return: the marker set, or 0 if @e is not a marker.
 */
static inline unsigned int ps_pte_marker_bits(ps_pte_t e)
{
	return ps_pte_is_marker(e) ? (unsigned int)((e & PS_PTE_MARKER_MASK) >>
						    PS_PTE_MARKER_SHIFT)
				   : 0;
}

/**
 * ps_pte_is_written_marker() - is @e the WRITTEN marker?
 * @e: an entry.
 *
 * The WRITTEN marker stands for a none page that counts as written (see the
 * overview of pagestate/pte.h).
 * Context: any; pure function of @e.
 * Return: true if @e is the marker holding PS_PTE_MARKER_WRITTEN.
 */
static inline bool ps_pte_is_written_marker(ps_pte_t e)
{
	return e == (((uint64_t)PS_PTE_MARKER_WRITTEN << PS_PTE_MARKER_SHIFT) |
		     ((uint64_t)PS_PTE_TYPE_MARKER << PS_PTE_TYPE_SHIFT));
}

/* --- transitions (pure) --------------------------------------------------- */

/**
 * ps_pte_mkuffd_wp() - @e write-protected.
 * @e: an entry.
 *
 * A present entry gains uffd-wp and loses WRITE, a swap entry or a marker
 * gains the bit, and a WRITTEN marker becomes a UFFD_WP marker (re-armed). A
 * none entry stays none: whether a none page gets a UFFD_WP marker is the
 * table's policy (ps_pgtable_protect()).
 * Context: any; pure function of @e.
 * Return: the write-protected entry (PS_PTE_NONE for none).
 */
static inline ps_pte_t ps_pte_mkuffd_wp(ps_pte_t e)
{
	if (e == PS_PTE_NONE)
		return e;
	if (ps_pte_is_present(e))
		e &= ~PS_PTE_WRITE;
	else if (ps_pte_is_marker(e))
		e &= ~((uint64_t)PS_PTE_MARKER_WRITTEN << PS_PTE_MARKER_SHIFT);
	return e | PS_PTE_UFFD_WP;
}

/**
 * ps_pte_clear_uffd_wp() - @e without write protection.
 * @e: an entry.
 *
 * A marker that held only UFFD_WP becomes none (a WRITTEN marker, which
 * holds no protection, is returned unchanged). A present entry does not
 * become writable: the next write fault upgrades it if MAYWRITE (see
 * ps_pte_resolve_write()).
 * Context: any; pure function of @e.
 * Return: @e without uffd-wp (PS_PTE_NONE for a UFFD_WP-only marker).
 */
static inline ps_pte_t ps_pte_clear_uffd_wp(ps_pte_t e)
{
	e &= ~PS_PTE_UFFD_WP;
	if (ps_pte_is_marker(e) && !(e & PS_PTE_MARKER_MASK))
		return PS_PTE_NONE;
	return e;
}

/**
 * ps_pte_resolve_write() - @e after a write fault resolved it.
 * @e: an entry.
 *
 * What a write does to a present entry with MAYWRITE: uffd-wp cleared,
 * WRITE, DIRTY and ACCESSED set. Any other @e is returned unchanged (the
 * write is not allowed, or needs a page first).
 * Context: any; pure function of @e.
 * Return: the resolved entry, or @e unchanged.
 */
static inline ps_pte_t ps_pte_resolve_write(ps_pte_t e)
{
	if (!ps_pte_may_write(e))
		return e;
	return (e & ~PS_PTE_UFFD_WP) | PS_PTE_WRITE | PS_PTE_DIRTY |
	       PS_PTE_ACCESSED;
}

/**
 * ps_pte_set_maywrite() - grant or revoke write permission (mprotect).
 * @e: an entry.
 * @maywrite: grant (true) or revoke (false).
 *
 * Revoking clears WRITE too; granting does not set WRITE (the next write
 * fault does, unless write-protected). Frame, cache mode, ENC, uffd-wp,
 * DIRTY and ACCESSED are never touched (as Linux's pte_modify() keeps
 * _PAGE_CHG_MASK). Other forms are returned unchanged.
 * Context: any; pure function of @e and @maywrite.
 * Return: the changed entry, or @e unchanged.
 */
static inline ps_pte_t ps_pte_set_maywrite(ps_pte_t e, bool maywrite)
{
	if (!ps_pte_is_present(e))
		return e;
	if (maywrite)
		return e | PS_PTE_MAYWRITE;
	return e & ~(PS_PTE_MAYWRITE | PS_PTE_WRITE);
}

/**
 * ps_pte_set_cache() - a present entry with another cache mode.
 * @e: an entry.
 * @mode: the cache mode (0..7).
 *
 * Other forms, and a mode above 7, are returned unchanged.
 * Context: any; pure function of @e and @mode.
 * Return: the changed entry, or @e unchanged.
 */
static inline ps_pte_t ps_pte_set_cache(ps_pte_t e, unsigned int mode)
{
	if (!ps_pte_is_present(e) || mode > 7)
		return e;
	return (e & ~PS_PTE_CACHE_MASK) | PS_PTE_CACHE(mode);
}

/**
 * ps_pte_set_encrypted() - a present entry with ENC set or cleared.
 * @e: an entry.
 * @enc: set (true) or clear (false) ENC.
 *
 * Other forms are returned unchanged.
 * Context: any; pure function of @e and @enc.
 * Return: the changed entry; other forms unchanged.
 */
static inline ps_pte_t ps_pte_set_encrypted(ps_pte_t e, bool enc)
{
	if (!ps_pte_is_present(e))
		return e;
	return enc ? e | PS_PTE_ENC : e & ~PS_PTE_ENC;
}

/* --- huge leaves ---------------------------------------------------------- */

/*
 * A huge leaf maps an extent of 2^order pages with one entry: order
 * PS_PTE_ORDER_2M (2 MiB) or PS_PTE_ORDER_1G (1 GiB). It has exactly the layout
 * above, in the present or the marker form only (no huge swap entry: a swap-out
 * splits first), so it carries every bit a 4 KiB entry carries, with the same
 * invariants. Its one canonical form per order: a present huge leaf holds the
 * extent's first frame, aligned to 2^order frames; a marker holds its set for
 * the whole extent. The entry of page i of the extent, its "4 KiB view", is
 * ps_pte_huge_subpage(): the frame plus i, the same bits.
 */
#define PS_PTE_ORDER_2M 9u
#define PS_PTE_ORDER_1G 18u

/**
 * ps_pte_huge_valid() - is @e a canonical huge leaf of @order?
 * @e: an entry.
 * @order: PS_PTE_ORDER_2M or PS_PTE_ORDER_1G.
 *
 * True for a ps_pte_valid() present entry whose frame is a multiple of
 * 2^@order, and for a ps_pte_valid() marker. False for none, swap entries,
 * any other @order, and a present entry with an unaligned frame.
 * Context: any; pure function of its arguments.
 * Return: true if @e may stand for a whole extent of 2^@order pages.
 */
static inline bool ps_pte_huge_valid(ps_pte_t e, unsigned int order)
{
	if ((order != PS_PTE_ORDER_2M && order != PS_PTE_ORDER_1G) ||
	    !ps_pte_valid(e))
		return false;
	if (ps_pte_is_marker(e))
		return true;
	return ps_pte_is_present(e) &&
	       !((e >> PS_PTE_FRAME_SHIFT) & ((UINT64_C(1) << order) - 1));
}

/**
 * ps_pte_mk_huge() - a present huge leaf of @order for the frames from @frame.
 * @frame: the extent's first frame, a multiple of 2^@order, at most
 *	PS_PTE_FRAME_MAX + 1 - 2^@order.
 * @flags: as for ps_pte_mk_present(), with the same invariants enforced.
 * @order: PS_PTE_ORDER_2M or PS_PTE_ORDER_1G.
 *
 * Context: any; pure function of its arguments.
 * Return: the huge leaf; PS_PTE_NONE if @frame is unaligned or out of range,
 * @flags out of range, or @order neither of the two.
 */
static inline ps_pte_t ps_pte_mk_huge(uint64_t frame, uint64_t flags,
				      unsigned int order)
{
	if ((order != PS_PTE_ORDER_2M && order != PS_PTE_ORDER_1G) ||
	    (frame & ((UINT64_C(1) << order) - 1)) ||
	    frame > PS_PTE_FRAME_MAX - ((UINT64_C(1) << order) - 1))
		return PS_PTE_NONE;
	return ps_pte_mk_present(frame, flags);
}

/**
 * ps_pte_huge_subpage() - the 4 KiB view of page @i of a huge leaf.
 * @e: a huge leaf (ps_pte_huge_valid(@e, @order)).
 * @order: its order.
 * @i: the page's index in the extent; only its low @order bits are used.
 *
 * A present leaf gives the entry of frame (its frame + @i) with the same
 * bits; a marker gives itself (each page of the extent holds that set).
 * Context: any; pure function of its arguments.
 * Return: the entry page @i would have if the leaf were split.
 */
static inline ps_pte_t ps_pte_huge_subpage(ps_pte_t e, unsigned int order,
					   uint64_t i)
{
	if (!ps_pte_is_present(e))
		return e;
	return e + ((i & ((UINT64_C(1) << order) - 1)) << PS_PTE_FRAME_SHIFT);
}

PS_END_DECLS

#endif /* PAGESTATE_PTE_H */
