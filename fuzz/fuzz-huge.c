// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-huge.c - huge leaves against 4 KiB entries: two tables run the
 * same operation sequence over one 2 MiB extent, A where it may be a huge
 * leaf (mapped huge, split, collapsed), B always 4 KiB entries. B is the
 * model: 4 KiB semantics are fuzzed against the plain model by
 * fuzz-pgtable.c, so after every operation every page of A must read what
 * the same page of B reads (docs/pgtable.md, "Huge leaves").
 *
 * The input's first byte chooses the registration of the extent (none,
 * sync, async, shared, each with PS_WP_HUGE_SPLIT or _WHOLE); then each
 * operation is a byte (low four bits the operation, the rest a variant) and its
 * arguments: map (huge in A), protect, unprotect, zap, faults, split, collapse
 * (A only; B's pages then get the bits it merges: ACCESSED if any had it, WRITE
 * only if all had it), a WP_MATCHING scan, harvest, swap-out, set. The
 * exceptions are the documented ones: a fault that changes a leaf whole is
 * applied to every page of B (A's order before the fault says whether there was
 * a leaf), a THP-like async write to its page only; a huge map over a UFFD_WP
 * marker protects the whole leaf (B's pages are protected after its map); where
 * the registration tracks leaves whole, a partial protect, unprotect or re-arm
 * of a leaf is -EINVAL in A, and then B is left alone. A's order must agree
 * with what it stores: a page reported under a leaf reads that leaf's view.
 */
#include "fuzz-input.h"

#include <pagestate/pgtable.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define X (UINT64_C(3) << 30) /* the extent: 2 MiB at 3 GiB */
#define N 512u
#define EXT (N * PG)

static struct ps_pgtable *A, *B;
static unsigned int reg; /* registration flags, or ~0u: none */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                         \
	do {                                                             \
		if (!(c)) {                                              \
			fprintf(stderr, "fuzz-huge: %s (line %d)\n", #c, \
				__LINE__);                               \
			abort();                                         \
		}                                                        \
	} while (0)

static void compare(void)
{
	static ps_pte_t va[N + 2], vb[N + 2];

	CHECK(!ps_pgtable_get_range(A, X - PG, N + 2, va));
	CHECK(!ps_pgtable_get_range(B, X - PG, N + 2, vb));
	for (unsigned int i = 0; i < N + 2; i++) {
		if (va[i] != vb[i])
			fprintf(stderr, "page %u: %#llx vs %#llx\n", i,
				(unsigned long long)va[i],
				(unsigned long long)vb[i]);
		CHECK(va[i] == vb[i]);
		CHECK(ps_pte_valid(va[i]));
	}
	for (unsigned int i = 0; i < N; i += 97) {
		ps_pte_t e, leaf;
		unsigned int order;

		CHECK(!ps_pgtable_get_level(A, X + i * PG, &e, &order, &leaf));
		CHECK(order == 0 || order == PS_PGTABLE_ORDER_2M);
		if (order)
			CHECK(ps_pte_huge_subpage(leaf, order, i) == e);
	}
}

static unsigned int order_of(uint64_t addr)
{
	ps_pte_t e, leaf;
	unsigned int order = 0;

	CHECK(!ps_pgtable_get_level(A, addr, &e, &order, &leaf));
	return order;
}

/* A range in the extent: [lo, hi), both page-aligned, lo < hi. */
static void gen_range(struct in *in, uint64_t *lo, uint64_t *hi)
{
	unsigned int a = u8(in) * 2u % N, b = u8(in) * 2u % (N + 1);

	if (u8(in) & 1) { /* the whole extent, often */
		a = 0;
		b = N;
	}
	if (b <= a)
		b = a + 1;
	*lo = X + (uint64_t)a * PG;
	*hi = X + (uint64_t)b * PG;
}

/* Does [lo, hi) cut a leaf that the registration tracks whole? */
static bool cuts_whole(uint64_t lo, uint64_t hi)
{
	return reg != ~0u && (reg & PS_WP_HUGE_WHOLE) && order_of(X) != 0 &&
	       (lo != X || hi != X + EXT);
}

static void op_map(uint8_t v, struct in *in)
{
	uint64_t flags = ((uint64_t)u8(in) << 2) & PS_PTE_PRESENT_FLAGS;
	uint64_t frame = (uint64_t)(1 + (v & 3)) * N;
	int ra, rb;

	if (reg == ~0u)
		flags &= ~PS_PTE_UFFD_WP;
	static ps_pte_t before[N];
	bool wp = false;

	CHECK(!ps_pgtable_get_range(B, X, N, before));
	for (unsigned int i = 0; i < N; i++)
		wp |= ps_pte_uffd_wp(before[i]);
	ra = ps_pgtable_map_huge(A, X, EXT, frame, flags, PS_PGTABLE_ORDER_2M,
				 NULL);
	rb = ps_pgtable_map(B, X, EXT, frame, flags);
	CHECK(ra == rb);
	/* One UFFD_WP marker protects the whole leaf: never dropped. */
	for (unsigned int i = 0; !ra && wp && i < N; i++) {
		ps_pte_t e;

		CHECK(!ps_pgtable_get(B, X + i * PG, &e));
		CHECK(!ps_pgtable_set(B, X + i * PG, ps_pte_mkuffd_wp(e),
				      NULL));
	}
}

static void op_fault(uint8_t v, struct in *in)
{
	const unsigned int i = u8(in) * 2u % N;
	const uint64_t addr = X + (uint64_t)i * PG;
	unsigned int access = (v & 7) ? (v & 7) : PS_ACCESS_READ;
	ps_pte_t e, after;
	bool split, huge = order_of(addr) != 0;
	enum ps_fault fa, fb;

	CHECK(!ps_pgtable_get(B, addr, &e));
	/* The THP-like split: an async (or resolving) write on wp. */
	split = ps_pte_is_present(e) && ps_pte_uffd_wp(e) &&
		ps_pte_may_write(e) && (access & PS_ACCESS_WRITE) &&
		reg != ~0u &&
		((reg & PS_WP_ASYNC) || (access & PS_ACCESS_RESOLVE_WP)) &&
		!(reg & PS_WP_HUGE_WHOLE);
	fa = ps_pgtable_fault_pte(A, addr, access, &after);
	if (!huge || split) {
		fb = ps_pgtable_fault(B, addr, access);
	} else {
		for (unsigned int j = 0; j < N; j++)
			fb = ps_pgtable_fault(B, X + j * PG, access);
	}
	CHECK(fa == fb);
	CHECK(!ps_pgtable_get(B, addr, &e));
	if (fa == PS_FAULT_INVALID)
		return; /* *pte untouched */
	if (after != e)
		fprintf(stderr, "fault %#x at page %u: %#llx, want %#llx\n",
			access, i, (unsigned long long)after,
			(unsigned long long)e);
	CHECK(after == e);
}

/* What a collapse does to the bits it merges, done to B's pages. */
static void collapse_b(void)
{
	static ps_pte_t e[N];
	ps_pte_t acc = 0, wr = PS_PTE_WRITE;

	CHECK(!ps_pgtable_get_range(B, X, N, e));
	if (!ps_pte_is_present(e[0]))
		return;
	for (unsigned int i = 0; i < N; i++) {
		acc |= e[i] & PS_PTE_ACCESSED;
		wr &= e[i] & PS_PTE_WRITE;
	}
	for (unsigned int i = 0; i < N; i++)
		CHECK(!ps_pgtable_set(
			B, X + i * PG,
			(e[i] & ~(PS_PTE_ACCESSED | PS_PTE_WRITE)) | acc | wr,
			NULL));
}

static void noop_run(void *ctx, uint64_t s, uint64_t e)
{
	(void)ctx;
	(void)s;
	(void)e;
}

static void op(uint8_t b, struct in *in)
{
	uint8_t v = b >> 4;
	uint64_t lo, hi;
	int ra, rb;

	switch (b & 15) {
	case 0:
		op_map(v, in);
		return;
	case 1:
	case 2:
		gen_range(in, &lo, &hi);
		if (cuts_whole(lo, hi)) {
			ra = (b & 15) == 1
				     ? ps_pgtable_protect(A, lo, hi - lo)
				     : ps_pgtable_unprotect(A, lo, hi - lo);
			CHECK(ra == -EINVAL || reg == ~0u);
			return;
		}
		ra = (b & 15) == 1 ? ps_pgtable_protect(A, lo, hi - lo)
				   : ps_pgtable_unprotect(A, lo, hi - lo);
		rb = (b & 15) == 1 ? ps_pgtable_protect(B, lo, hi - lo)
				   : ps_pgtable_unprotect(B, lo, hi - lo);
		CHECK(ra == rb);
		return;
	case 3:
		gen_range(in, &lo, &hi);
		ra = ps_pgtable_zap(A, lo, hi - lo, v & 1 ? PS_ZAP_UNMAP : 0,
				    NULL, NULL);
		rb = ps_pgtable_zap(B, lo, hi - lo, v & 1 ? PS_ZAP_UNMAP : 0,
				    NULL, NULL);
		CHECK(ra == rb);
		return;
	case 4:
	case 5:
		op_fault(v, in);
		return;
	case 6:
		gen_range(in, &lo, &hi);
		CHECK(!ps_pgtable_split(A, lo, hi - lo));
		if (lo <= X && hi >= X + PG)
			CHECK(order_of(lo) == 0);
		return;
	case 7:
		if (v & 1) /* a grace period each: not every time */
			return;
		ra = ps_pgtable_collapse(A, X, EXT, PS_PGTABLE_ORDER_2M, NULL);
		CHECK(ra == 0 || ra == -EBUSY);
		if (!ra && order_of(X))
			collapse_b(); /* ACCESSED OR-ed, WRITE AND-ed */
		return;
	case 8:
	case 9: {
		struct ps_pgtable_scan q = {.flags = PS_SCAN_WP_MATCHING};

		gen_range(in, &lo, &hi);
		q.start = lo;
		q.end = hi;
		if (cuts_whole(lo, hi)) {
			CHECK(ps_pgtable_scan(A, &q) == -EINVAL || reg == ~0u);
			return;
		}
		if ((b & 15) == 8) {
			ra = (int)ps_pgtable_scan(A, &q);
			rb = (int)ps_pgtable_scan(B, &q);
		} else {
			ra = ps_pgtable_harvest(A, lo, hi - lo, 0, noop_run,
						NULL);
			rb = ps_pgtable_harvest(B, lo, hi - lo, 0, noop_run,
						NULL);
		}
		CHECK(ra == rb);
		return;
	}
	case 10: {
		uint64_t a = X + (uint64_t)(u8(in) * 2u % N) * PG;
		ps_pte_t oa = 1, ob = 2;

		ra = ps_pgtable_swap_out(A, a, 1, v, 0, &oa);
		rb = ps_pgtable_swap_out(B, a, 1, v, 0, &ob);
		CHECK(ra == rb && oa == ob);
		return;
	}
	default: {
		uint64_t a = X + (uint64_t)(u8(in) * 2u % N) * PG;
		ps_pte_t e, exp_a, exp_b;

		CHECK(!ps_pgtable_get(B, a, &e));
		exp_a = exp_b = e;
		if (ps_pte_is_present(e))
			e ^= (uint64_t)(v & 3) << 5; /* DIRTY, ACCESSED */
		ra = ps_pgtable_cmpxchg(A, a, &exp_a, e);
		rb = ps_pgtable_cmpxchg(B, a, &exp_b, e);
		CHECK(ra == rb && exp_a == exp_b);
		return;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned int regs[8] = {
		~0u,
		PS_WP_HUGE_SPLIT,
		PS_WP_ASYNC,
		PS_WP_SHARED | PS_WP_HUGE_SPLIT,
		PS_WP_HUGE_WHOLE,
		PS_WP_ASYNC | PS_WP_HUGE_WHOLE,
		PS_WP_SHARED | PS_WP_HUGE_WHOLE,
		PS_WP_UNPOPULATED,
	};
	struct in in = {data, size, 0};

	if (!A) {
		A = ps_pgtable_create();
		B = ps_pgtable_create();
		CHECK(A && B);
	}
	reg = size ? regs[u8(&in) & 7] : ~0u;
	if (reg != ~0u) {
		CHECK(!ps_pgtable_register(A, X - PG, EXT + 2 * PG, reg));
		CHECK(!ps_pgtable_register(B, X - PG, EXT + 2 * PG, reg));
	}
	while (in.at < in.n) {
		op(u8(&in), &in);
		compare();
	}
	/* Leave both as new for the next input, without destroy's wait. */
	for (int k = 0; k < 2; k++) {
		struct ps_pgtable *t = k ? B : A;

		if (reg != ~0u)
			CHECK(!ps_pgtable_unregister(t, X - PG, EXT + 2 * PG));
		CHECK(!ps_pgtable_zap(t, 0, PS_PGTABLE_ADDR_END, PS_ZAP_UNMAP,
				      NULL, NULL));
		CHECK(!ps_pgtable_trim(t, 0, PS_PGTABLE_ADDR_END));
	}
	return 0;
}
