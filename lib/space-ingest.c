// SPDX-License-Identifier: MIT
/*
 * lib/space-ingest.c - the dirty sources outside the space (pagestate/
 * ledger.h): KVM's dirty bitmap and dirty ring, a device's dirty bitmap for
 * an IOVA range. Each dirty page is marked through ps_space_mark_dirty(),
 * the normal path (S5: its frame held, DIRTY and its hook under LOCKED; S11:
 * its address logged after the caller's write), so the ledger's consumers
 * see it as any other mark (C1 in lib/space-ledger.c), once however many
 * sources report it (a log bit is set once until taken).
 */
#include <pagestate/ledger.h>

#include "space-impl.h"

#include <errno.h>

PS_STATIC_ASSERT(sizeof(struct ps_ledger_dirty_gfn) == 16,
		 "laid out as struct kvm_dirty_gfn");

static void res_init(struct ps_ledger_ingest *res)
{
	res->marked = 0;
	res->unmapped = 0;
	res->first_unmapped = UINT64_MAX;
	res->stopped = UINT64_MAX;
}

static void res_unmapped(struct ps_ledger_ingest *res, uint64_t where)
{
	if (!res->unmapped++)
		res->first_unmapped = where;
}

/* Mark @addr (inside the space, aligned): 0, or -EOVERFLOW. */
static int mark(struct ps_space *s, uint64_t addr, struct ps_ledger_ingest *res)
{
	switch (ps_space_mark_dirty(s, addr)) {
	case PS_SPACE_MARK_DIRTIED:
	case PS_SPACE_MARK_WAS_DIRTY:
		res->marked++;
		return 0;
	case PS_SPACE_MARK_UNMAPPED:
		res_unmapped(res, addr);
		return 0;
	case PS_SPACE_MARK_OVERFLOW:
		break;
	case PS_SPACE_MARK_INVALID:
		return -EINVAL; /* the callers check first */
	}
	res->stopped = addr;
	return -EOVERFLOW;
}

int ps_ledger_ingest_bitmap(struct ps_space *s, uint64_t base,
			    const uint64_t *bitmap, uint64_t npages,
			    struct ps_ledger_ingest *res)
{
	if (!s || !bitmap || !res || (base & (PAGE_SIZE - 1)) ||
	    base >= s->size || npages > (s->size - base) >> PAGE_SHIFT)
		return -EINVAL;
	res_init(res);
	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		uint64_t bits = bitmap[w];

		if (w == npages / 64)
			bits &= (UINT64_C(1) << (npages % 64)) - 1;
		for (; bits; bits &= bits - 1) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(bits);
			int rc = mark(s, base + (i << PAGE_SHIFT), res);

			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Does @e name a page of the slot table, inside the space? */
static bool slot_page_ok(const struct ps_space *s,
			 const struct ps_ledger_slot *slots, uint32_t nslots,
			 const struct ps_ledger_dirty_gfn *e)
{
	const struct ps_ledger_slot *m;

	if (e->slot >= nslots)
		return false;
	m = &slots[e->slot];
	return !(m->base & (PAGE_SIZE - 1)) && m->base < s->size &&
	       e->offset < m->npages &&
	       e->offset < (s->size - m->base) >> PAGE_SHIFT;
}

long ps_ledger_ingest_ring(struct ps_space *s, struct ps_ledger_dirty_gfn *ring,
			   uint32_t size, uint64_t *fetch,
			   const struct ps_ledger_slot *slots, uint32_t nslots,
			   struct ps_ledger_ingest *res)
{
	long n = 0;

	if (!s || !ring || !fetch || !res || !size || (size & (size - 1)) ||
	    (!slots && nslots))
		return -EINVAL;
	res_init(res);
	for (; n < (long)size; n++) {
		uint64_t at = *fetch;
		struct ps_ledger_dirty_gfn *e = &ring[at & (size - 1)];
		/* Acquire: pairs with KVM's release that published it. */
		uint32_t f = atomic_load_explicit(&e->flags,
						  memory_order_acquire);

		if (!(f & PS_LEDGER_GFN_DIRTY) || (f & PS_LEDGER_GFN_RESET))
			break; /* not published yet, or collected already */
		uint64_t was = res->unmapped;

		if (!slot_page_ok(s, slots, nslots, e)) {
			res->unmapped++; /* a slot or page the table lacks */
		} else if (mark(s,
				slots[e->slot].base + (e->offset << PAGE_SHIFT),
				res)) {
			res->stopped = at;
			return -EOVERFLOW;
		}
		if (!was && res->unmapped)
			res->first_unmapped = at; /* the ring's: an index */
		/* Release: the mark before KVM may reuse the entry. */
		atomic_store_explicit(&e->flags, PS_LEDGER_GFN_RESET,
				      memory_order_release);
		*fetch = at + 1;
	}
	return n;
}

int ps_ledger_ingest_device(struct ps_space *s, uint64_t iova, uint64_t len,
			    uint64_t pgsize, const uint64_t *bitmap,
			    ps_ledger_iova_fn translate, void *ctx,
			    struct ps_ledger_ingest *res)
{
	uint64_t nbits;

	if (!s || !bitmap || !translate || !res || pgsize < PAGE_SIZE ||
	    (pgsize & (pgsize - 1)) || !len || (len & (pgsize - 1)) ||
	    (iova & (pgsize - 1)) || iova + len < iova)
		return -EINVAL;
	res_init(res);
	nbits = len / pgsize;
	for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
		uint64_t bits = bitmap[w];

		if (w == nbits / 64)
			bits &= (UINT64_C(1) << (nbits % 64)) - 1;
		for (; bits; bits &= bits - 1) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(bits);
			uint64_t v0 = iova + i * pgsize;

			for (uint64_t v = v0; v < v0 + pgsize; v += PAGE_SIZE) {
				uint64_t addr;
				int rc = translate(ctx, v, &addr);

				if (rc == -ENOENT) {
					res_unmapped(res, v);
					continue;
				}
				if (!rc && ((addr & (PAGE_SIZE - 1)) ||
					    addr >= s->size))
					rc = -EINVAL;
				if (rc) {
					res->stopped = v;
					return rc;
				}
				rc = mark(s, addr, res);
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}
