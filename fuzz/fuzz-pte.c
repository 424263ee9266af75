// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-pte.c - the entry encoding of pagestate/pte.h with arbitrary
 * inputs.
 *
 * The input is a program over one current entry. An operation is one byte
 * (the opcode) followed by its arguments: constructors (present, swap,
 * marker) from arbitrary or boundary arguments, a raw 64-bit value, or one
 * of the pure transitions applied to the current entry. After every
 * operation the fuzzer checks, against the layout as the header's text
 * draws it (not against the header's own helpers):
 *   - every getter and predicate of the entry, valid or not: forms, fields,
 *     zero for the other forms;
 *   - ps_pte_valid() against the invariants written out again: a non-zero
 *     entry of type none, reserved bits, an empty marker, a WRITTEN marker
 *     with another marker bit, W without MW, W with WP are invalid,
 *     everything else valid;
 *   - for a valid entry: exactly one form, never writable + wp, W implies
 *     MW, a marker holds no frame, and the getters rebuild the entry
 *     through its constructor (every field round-trips);
 * and for each constructor and transition, the documented result: what an
 * out-of-range argument gives (none), which bits a transition may change
 * and which it must keep (set_maywrite never touches frame, cache, ENC, wp,
 * D, A; mkuffd_wp and clear_uffd_wp keep frame, offset, type, ...), that a
 * transition of a valid entry is valid, and the algebra between them
 * (idempotence, protect then unprotect). Any disagreement aborts.
 */
#include <pagestate/pte.h>

#include "fuzz-check.h"
#include "fuzz-input.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The layout, bit by bit, as the header's pictures draw it. */
#define B(n) (UINT64_C(1) << (n))
#define WP B(2)
#define W B(3)
#define MW B(4)
#define D B(5)
#define A B(6)
#define CACHE (UINT64_C(7) << 7)
#define ENC B(10)
#define RSVD_PRESENT B(11)
#define EX B(3)
#define MARKERS (UINT64_C(15) << 2) /* U, P, G, WRITTEN */
#define WRITTEN_MARKER B(5)
#define RSVD_SWAP (UINT64_C(7) << 9)
#define FIELD_MAX ((UINT64_C(1) << 52) - 1)

/* struct in, u8(), raw64(): fuzz-input.h */

static const uint64_t interesting[] = {
	0,
	1,
	2,
	7,
	8,
	31,
	32,
	(UINT64_C(1) << 40) - 1,
	UINT64_C(1) << 40,
	FIELD_MAX - 1,
	FIELD_MAX,
	FIELD_MAX + 1,
	UINT64_C(1) << 63,
	UINT64_MAX,
	UINT32_MAX,
	(uint64_t)UINT32_MAX + 1,
};
#define NINTERESTING (sizeof(interesting) / sizeof(interesting[0]))

/* A number: a boundary value, a small one, one bit, or 64 raw bits. */
static uint64_t number(struct in *in)
{
	uint8_t sel = u8(in);

	switch (sel & 3) {
	case 0:
		return interesting[(sel >> 2) % NINTERESTING];
	case 1:
		return sel >> 2;
	case 2:
		return B((sel >> 2) % 64);
	default:
		return raw64(in);
	}
}

/* Flags: often confined to @allowed (so constructors succeed), else raw. */
static uint64_t flags_in(struct in *in, uint64_t allowed)
{
	uint8_t sel = u8(in);

	if (sel & 0x80)
		return number(in);
	return raw64(in) & allowed;
}

/* ps_pte_valid(), written again from the header's invariant list. */
static bool ref_valid(ps_pte_t e)
{
	switch (e & 3) {
	case 0:
		return e == 0;
	case 1:
		if (e & RSVD_PRESENT)
			return false;
		if ((e & W) && !(e & MW))
			return false;
		return !((e & W) && (e & WP));
	case 2:
		return !(e & RSVD_SWAP);
	default:
		return (e >> 6) == 0 && (e & MARKERS) != 0 &&
		       ((e & MARKERS) == WRITTEN_MARKER ||
			!(e & WRITTEN_MARKER));
	}
}

/* Every getter and predicate of @e, any 64-bit value. */
static void check_entry(ps_pte_t e)
{
	unsigned int type = (unsigned int)(e & 3);
	bool present = type == 1, swap = type == 2, marker = type == 3;
	bool valid = ref_valid(e);

	CHECK(ps_pte_valid(e) == valid);
	CHECK(ps_pte_type(e) == type);
	CHECK(ps_pte_is_none(e) == (e == 0));
	CHECK(ps_pte_is_present(e) == present);
	CHECK(ps_pte_is_swap(e) == swap);
	CHECK(ps_pte_is_marker(e) == marker);
	CHECK(ps_pte_uffd_wp(e) == ((e & WP) != 0));
	CHECK(ps_pte_written(e) == (e != 0 && !(e & WP)));
	CHECK(ps_pte_frame(e) == (present ? e >> 12 : 0));
	CHECK(ps_pte_flags(e) ==
	      (present ? e & (WP | W | MW | D | A | CACHE | ENC) : 0));
	CHECK(ps_pte_is_writable(e) == (present && (e & W)));
	CHECK(ps_pte_may_write(e) == (present && (e & MW)));
	CHECK(ps_pte_is_dirty(e) == (present && (e & D)));
	CHECK(ps_pte_is_accessed(e) == (present && (e & A)));
	CHECK(ps_pte_cache(e) == (present ? (e >> 7) & 7 : 0));
	CHECK(ps_pte_is_encrypted(e) == (present && (e & ENC)));
	CHECK(ps_pte_swap_type(e) == (swap ? (e >> 4) & 31 : 0));
	CHECK(ps_pte_swap_offset(e) == (swap ? e >> 12 : 0));
	CHECK(ps_pte_swap_exclusive(e) == (swap && (e & EX)));
	CHECK(ps_pte_marker_bits(e) == (marker ? (e >> 2) & 15 : 0));
	CHECK(ps_pte_is_written_marker(e) == (e == (WRITTEN_MARKER | 3)));
	if (!valid)
		return;
	/* Exactly one form. */
	CHECK(ps_pte_is_none(e) + ps_pte_is_present(e) + ps_pte_is_swap(e) +
		      ps_pte_is_marker(e) ==
	      1);
	/* Never writable + wp; W implies MW. */
	CHECK(!(ps_pte_is_writable(e) && ps_pte_uffd_wp(e)));
	CHECK(!ps_pte_is_writable(e) || ps_pte_may_write(e));
	/* A marker never holds a frame, and its set is never empty. */
	if (marker) {
		CHECK(ps_pte_frame(e) == 0 && ps_pte_swap_offset(e) == 0);
		CHECK(ps_pte_marker_bits(e) != 0);
		CHECK(ps_pte_uffd_wp(e) ==
		      ((ps_pte_marker_bits(e) & PS_PTE_MARKER_UFFD_WP) != 0));
	}
	/* Every field round-trips: the getters rebuild the entry. */
	switch (type) {
	case 0:
		CHECK(e == PS_PTE_NONE);
		break;
	case 1:
		CHECK(ps_pte_mk_present(ps_pte_frame(e), ps_pte_flags(e)) == e);
		break;
	case 2:
		CHECK(ps_pte_mk_swap(ps_pte_swap_type(e), ps_pte_swap_offset(e),
				     (ps_pte_uffd_wp(e) ? PS_PTE_UFFD_WP : 0) |
					     (ps_pte_swap_exclusive(e)
						      ? PS_PTE_SWP_EXCLUSIVE
						      : 0)) == e);
		break;
	default:
		CHECK(ps_pte_mk_marker(ps_pte_marker_bits(e)) == e);
		break;
	}
}

static ps_pte_t op_present(struct in *in)
{
	uint64_t frame = number(in);
	uint64_t flags = flags_in(in, WP | W | MW | D | A | CACHE | ENC);
	ps_pte_t e = ps_pte_mk_present(frame, flags);
	uint64_t want;

	if (frame > FIELD_MAX ||
	    (flags & ~(WP | W | MW | D | A | CACHE | ENC))) {
		CHECK(e == PS_PTE_NONE);
		return e;
	}
	want = flags;
	if (want & W)
		want |= MW;
	if (want & WP)
		want &= ~W;
	CHECK(ps_pte_valid(e));
	CHECK(ps_pte_is_present(e));
	CHECK(ps_pte_frame(e) == frame);
	CHECK(ps_pte_flags(e) == want);
	CHECK(e == (frame << 12 | want | 1));
	CHECK(ps_pte_uffd_wp(e) == ((flags & WP) != 0));
	CHECK(ps_pte_is_writable(e) == ((flags & W) && !(flags & WP)));
	CHECK(ps_pte_may_write(e) == ((flags & (W | MW)) != 0));
	CHECK(ps_pte_is_dirty(e) == ((flags & D) != 0));
	CHECK(ps_pte_is_accessed(e) == ((flags & A) != 0));
	CHECK(ps_pte_cache(e) == ((flags >> 7) & 7));
	CHECK(ps_pte_is_encrypted(e) == ((flags & ENC) != 0));
	/* PS_PTE_CACHE() builds the mode's flag, masking stray bits. */
	CHECK(PS_PTE_CACHE(ps_pte_cache(e)) == (flags & CACHE));
	CHECK(PS_PTE_CACHE(frame) == ((frame & 7) << 7));
	return e;
}

static ps_pte_t op_swap(struct in *in)
{
	uint64_t type64 = number(in);
	unsigned int type = (unsigned int)type64;
	uint64_t offset = number(in);
	uint64_t flags = flags_in(in, WP | EX);
	ps_pte_t e = ps_pte_mk_swap(type, offset, flags);

	if (type > 31 || offset > FIELD_MAX || (flags & ~(WP | EX))) {
		CHECK(e == PS_PTE_NONE);
		return e;
	}
	CHECK(ps_pte_valid(e));
	CHECK(ps_pte_is_swap(e));
	CHECK(ps_pte_swap_type(e) == type);
	CHECK(ps_pte_swap_offset(e) == offset);
	CHECK(ps_pte_swap_exclusive(e) == ((flags & EX) != 0));
	CHECK(ps_pte_uffd_wp(e) == ((flags & WP) != 0));
	CHECK(e == (offset << 12 | (uint64_t)type << 4 | flags | 2));
	CHECK(ps_pte_frame(e) == 0 && ps_pte_flags(e) == 0);
	return e;
}

static ps_pte_t op_marker(struct in *in)
{
	uint8_t sel = u8(in);
	unsigned int bits = sel & 0x80 ? (unsigned int)number(in) : sel & 15;
	ps_pte_t e = ps_pte_mk_marker(bits);

	/* U, P, G combine; WRITTEN (8) stands alone. */
	if (bits == 0 || bits > 15 || ((bits & 8) && bits != 8)) {
		CHECK(e == PS_PTE_NONE);
		return e;
	}
	CHECK(ps_pte_valid(e));
	CHECK(ps_pte_is_marker(e));
	CHECK(ps_pte_marker_bits(e) == bits);
	CHECK(ps_pte_uffd_wp(e) == ((bits & PS_PTE_MARKER_UFFD_WP) != 0));
	CHECK(ps_pte_frame(e) == 0);
	CHECK(e == ((uint64_t)bits << 2 | 3));
	/* The UFFD_WP marker bit is the entry's wp bit (one test for all). */
	CHECK(ps_pte_written(e) == !(bits & PS_PTE_MARKER_UFFD_WP));
	return e;
}

/*
 * mkuffd_wp: none stays none, present loses W, a marker loses WRITTEN,
 * every form but none gains wp.
 */
static ps_pte_t op_mkuffd_wp(ps_pte_t e)
{
	ps_pte_t n = ps_pte_mkuffd_wp(e), want;

	if (e == 0)
		want = 0;
	else if ((e & 3) == 1)
		want = (e & ~W) | WP;
	else if ((e & 3) == 3)
		want = (e & ~WRITTEN_MARKER) | WP;
	else
		want = e | WP;
	CHECK(n == want);
	CHECK(ps_pte_mkuffd_wp(n) == n); /* idempotent */
	CHECK(!ps_pte_written(n));
	CHECK(!ps_pte_is_writable(n));
	if (ref_valid(e)) {
		CHECK(ps_pte_valid(n));
		/* The frame, offset, type and marker set stay. */
		CHECK(ps_pte_frame(n) == ps_pte_frame(e));
		CHECK(ps_pte_swap_offset(n) == ps_pte_swap_offset(e));
		CHECK(ps_pte_swap_type(n) == ps_pte_swap_type(e));
		CHECK(ps_pte_swap_exclusive(n) == ps_pte_swap_exclusive(e));
		CHECK(ps_pte_type(n) == ps_pte_type(e));
		CHECK(ps_pte_cache(n) == ps_pte_cache(e));
		CHECK(ps_pte_is_encrypted(n) == ps_pte_is_encrypted(e));
		CHECK(ps_pte_may_write(n) == ps_pte_may_write(e));
		if (ps_pte_is_marker(e))
			CHECK(ps_pte_marker_bits(n) ==
			      ((ps_pte_marker_bits(e) &
				~PS_PTE_MARKER_WRITTEN) |
			       PS_PTE_MARKER_UFFD_WP));
		/*
		 * Protect then unprotect: back, except a present W, and a
		 * WRITTEN marker (re-armed: a UFFD_WP marker, then none).
		 */
		if (ps_pte_is_written_marker(e))
			CHECK(ps_pte_clear_uffd_wp(n) == PS_PTE_NONE);
		else
			CHECK(ps_pte_clear_uffd_wp(n) ==
			      ps_pte_clear_uffd_wp(ps_pte_is_present(e) ? e & ~W
									: e));
	}
	return n;
}

/* clear_uffd_wp: wp gone; a marker of UFFD_WP alone becomes none. */
static ps_pte_t op_clear_uffd_wp(ps_pte_t e)
{
	ps_pte_t n = ps_pte_clear_uffd_wp(e), want = e & ~WP;

	if ((e & 3) == 3 && (want & MARKERS) == 0)
		want = 0;
	CHECK(n == want);
	CHECK(ps_pte_clear_uffd_wp(n) == n); /* idempotent */
	CHECK(!ps_pte_uffd_wp(n));
	/* Never makes an entry writable. */
	CHECK(ps_pte_is_writable(n) == ps_pte_is_writable(e));
	if (ref_valid(e)) {
		CHECK(ps_pte_valid(n));
		CHECK(ps_pte_frame(n) == ps_pte_frame(e));
		CHECK(ps_pte_swap_offset(n) == ps_pte_swap_offset(e));
		CHECK(ps_pte_swap_type(n) == ps_pte_swap_type(e));
		CHECK(ps_pte_swap_exclusive(n) == ps_pte_swap_exclusive(e));
		CHECK(ps_pte_flags(n) == (ps_pte_flags(e) & ~WP));
		if (ps_pte_is_marker(e))
			CHECK(ps_pte_marker_bits(n) ==
			      (ps_pte_marker_bits(e) & ~PS_PTE_MARKER_UFFD_WP));
		else
			CHECK(ps_pte_type(n) == ps_pte_type(e));
		CHECK(ps_pte_written(n) == (n != 0));
	}
	return n;
}

/* resolve_write: only a present MW entry changes: -wp, +W, D, A. */
static ps_pte_t op_resolve_write(ps_pte_t e)
{
	ps_pte_t n = ps_pte_resolve_write(e);

	if ((e & 3) != 1 || !(e & MW)) {
		CHECK(n == e);
		return n;
	}
	CHECK(n == ((e & ~WP) | W | D | A));
	CHECK(ps_pte_is_writable(n) && ps_pte_written(n) && !ps_pte_uffd_wp(n));
	CHECK(ps_pte_resolve_write(n) == n);
	if (ref_valid(e))
		CHECK(ps_pte_valid(n));
	return n;
}

/* set_maywrite: only MW (and W when revoking) of a present entry. */
static ps_pte_t op_set_maywrite(ps_pte_t e, bool maywrite)
{
	ps_pte_t n = ps_pte_set_maywrite(e, maywrite);

	if ((e & 3) != 1) {
		CHECK(n == e);
		return n;
	}
	/* Frame, cache, ENC, wp, D, A, reserved: never touched. */
	CHECK((n & ~(MW | W)) == (e & ~(MW | W)));
	if (maywrite) {
		CHECK(n == (e | MW));
		CHECK((n & W) == (e & W)); /* granting does not set W */
	} else {
		CHECK(n == (e & ~(MW | W)));
	}
	if (ref_valid(e))
		CHECK(ps_pte_valid(n));
	return n;
}

/* set_cache: only the cache field of a present entry, mode 0..7. */
static ps_pte_t op_set_cache(ps_pte_t e, unsigned int mode)
{
	ps_pte_t n = ps_pte_set_cache(e, mode);

	if ((e & 3) != 1 || mode > 7) {
		CHECK(n == e);
		return n;
	}
	CHECK((n & ~CACHE) == (e & ~CACHE));
	CHECK(ps_pte_cache(n) == mode);
	if (ref_valid(e))
		CHECK(ps_pte_valid(n));
	return n;
}

/* set_encrypted: only ENC of a present entry. */
static ps_pte_t op_set_encrypted(ps_pte_t e, bool enc)
{
	ps_pte_t n = ps_pte_set_encrypted(e, enc);

	if ((e & 3) != 1) {
		CHECK(n == e);
		return n;
	}
	CHECK((n & ~ENC) == (e & ~ENC));
	CHECK(ps_pte_is_encrypted(n) == enc);
	if (ref_valid(e))
		CHECK(ps_pte_valid(n));
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};
	ps_pte_t e = PS_PTE_NONE;

	while (in.at < in.n) {
		uint8_t arg;

		fz_at = in.at;
		fz_op = u8(&in) % 12;
		switch (fz_op) {
		case 0:
			e = op_present(&in);
			break;
		case 1:
			e = op_swap(&in);
			break;
		case 2:
			e = op_marker(&in);
			break;
		case 3: /* any 64 bits: predicates and getters must cope */
			e = raw64(&in);
			break;
		case 4: /* a bit flipped: invalid neighbours of valid ones */
			e ^= B(u8(&in) % 64);
			break;
		case 5:
			e = op_mkuffd_wp(e);
			break;
		case 6:
			e = op_clear_uffd_wp(e);
			break;
		case 7:
			e = op_resolve_write(e);
			break;
		case 8:
			e = op_set_maywrite(e, u8(&in) & 1);
			break;
		case 9:
			arg = u8(&in);
			e = op_set_cache(e, arg & 0x80
						    ? (unsigned int)number(&in)
						    : arg & 15u);
			break;
		case 10:
			e = op_set_encrypted(e, u8(&in) & 1);
			break;
		default: /* every transition of the same entry, e unchanged */
			(void)op_mkuffd_wp(e);
			(void)op_clear_uffd_wp(e);
			(void)op_resolve_write(e);
			(void)op_set_maywrite(e, true);
			(void)op_set_maywrite(e, false);
			(void)op_set_encrypted(e, true);
			(void)op_set_encrypted(e, false);
			break;
		}
		check_entry(e);
	}
	return 0;
}
