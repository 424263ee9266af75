// SPDX-License-Identifier: MIT
/*
 * lib/space-ingest.c - the dirty sources outside the space (pagestate/
 * ledger.h): KVM's dirty bitmap and dirty ring, a device's dirty bitmap for
 * an IOVA range. Each dirty page is marked as ps_space_mark_dirty() marks it
 * (S5: its frame held, DIRTY and its hook under LOCKED; S11: its address
 * logged after the caller's write), in batches (B1..B4 below), so the
 * ledger's consumers see it as any other mark (C1 in lib/space-ledger.c),
 * once however many sources report it (a log bit is set once until taken).
 * Cited by tests/test-ledger.c as B1..B4.
 */
#include <pagestate/ledger.h>

#include "hbitmap.h"
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

/* --- batched marks -------------------------------------------------------- */

/*
 * Up to PS_INGEST_BATCH pages are marked in one read-side section of the page
 * table, with the leaf cursor (ps_pgtable_lookup_leaf()) for the pages of one
 * 2 MiB leaf and the log's bits set one word at a time: the same marks as
 * ps_space_mark_dirty() page by page, at a fraction of the cost. The protocol
 * is mark_dirty's (S5, S6, S11 in lib/space-dirty.c), step for step:
 *   B1 The frame is held by the one CAS of ps_page_try_get_lock_and_set()
 *      (a reference, LOCKED and DIRTY), then the entry is read again through
 *      the cursor: a changed entry (unmapped, freed, mapped elsewhere) takes
 *      the mark back under the bit and the page goes through mark_dirty.
 *   B2 No hook runs inside the section (pagestate/space.h): a page whose CAS
 *      made the clean-to-dirty transition leaves the section holding the
 *      frame, runs the dirty hook under its LOCKED bit (exactly once: the one
 *      CAS that saw DIRTY clear), releases it and enters again; a release
 *      that was the last put does the same for the free hook.
 *   B3 A frame the CAS could not hold (LOCKED by another thread, frozen, full),
 *      a page with no leaf (a huge leaf, none) and every page of a space with
 *      huge frames (checked per page, as mark_dirty checks per call: the first
 *      declaration may come mid-batch) go through ps_space_mark_dirty() outside
 *      the section: it waits, this path never does.
 *   B4 The log's bits (the log and write-back's set) are set after DIRTY and
 *      its hook, word by word (ps__hbm_set_mask()), and always before the
 *      call returns or stops: the caller's writes came before the call (S11).
 */
#define PS_INGEST_BATCH 64

struct batch {
	struct ps_space *s;
	struct ps_ledger_ingest *res;
	bool in;		     /* inside the read-side section */
	uint64_t leaf;		     /* page index of the cursor's first page */
	PS_ATOMIC(ps_pte_t) *cursor; /* its entry, or NULL */
	uint64_t logw;		     /* log word pending (first bit), or ~0 */
	uint64_t mask;		     /* its bits */
};

#define LEAF_PAGES ((uint64_t)PS__PGTABLE_FANOUT)

static void batch_flush_log(struct batch *b)
{
	if (b->mask) {
		ps__hbm_set_mask(&b->s->log, b->logw, b->mask);
		ps__hbm_set_mask(&b->s->wb, b->logw, b->mask);
	}
	b->mask = 0;
	b->logw = UINT64_MAX;
}

static void batch_log(struct batch *b, uint64_t i)
{
	if ((i & ~UINT64_C(63)) != b->logw) {
		batch_flush_log(b);
		b->logw = i & ~UINT64_C(63);
	}
	b->mask |= UINT64_C(1) << (i & 63);
}

static void batch_enter(struct batch *b)
{
	if (!b->in)
		ps_pgtable_read_lock();
	b->in = true;
}

/* Leave the section: the cursor dies with it (B2, B3). */
static void batch_leave(struct batch *b)
{
	if (b->in)
		ps_pgtable_read_unlock();
	b->in = false;
	b->cursor = NULL;
	b->leaf = UINT64_MAX;
}

/* Release the frame held by B1 (B2: the free hook outside the section). */
static void batch_put(struct batch *b, struct ps_page *p, uint64_t frame)
{
	if (ps_page_unlock_and_put(p)) { /* unmapped meanwhile (S7) */
		batch_leave(b);
		ps__space_frame_freed(b->s, frame);
	}
}

/* Mark @addr the slow way (B3): 0 or -EOVERFLOW. */
static int batch_slow(struct batch *b, uint64_t addr)
{
	batch_leave(b);
	return mark(b->s, addr, b->res);
}

/* Mark the page @addr (inside the space, aligned) in the batch. */
static int batch_mark(struct batch *b, uint64_t addr)
{
	struct ps_space *s = b->s;
	const uint64_t i = ps__space_page_index(addr);
	const uint64_t pi = addr >> PS_PGTABLE_PAGE_SHIFT;
	PS_ATOMIC(ps_pte_t) *slot;
	uint64_t frame, seen;
	struct ps_page *p;
	ps_pte_t e;
	bool made;

	if (PS_UNLIKELY(ps__space_huge(s)))
		return batch_slow(b, addr); /* as mark_dirty: per page (B3) */
	batch_enter(b);
	if ((pi & ~(LEAF_PAGES - 1)) != b->leaf) {
		b->leaf = pi & ~(LEAF_PAGES - 1);
		b->cursor = ps_pgtable_lookup_leaf(
			s->pt, b->leaf << PS_PGTABLE_PAGE_SHIFT);
	}
	if (!b->cursor)
		return batch_slow(b, addr); /* a huge leaf, or none (B3) */
	slot = b->cursor + (pi - b->leaf);
	/* Acquire: pairs with the release of the store that set the entry. */
	e = atomic_load_explicit(slot, memory_order_acquire);
	if (!ps_pte_is_present(e) || ps_pte_frame(e) >= s->nframes) {
		res_unmapped(b->res, addr);
		return 0;
	}
	frame = ps_pte_frame(e);
	p = &s->frames[frame];
	if (!ps_page_try_get_lock_and_set(p, PS_PAGE_DIRTY, &seen))
		return batch_slow(b, addr); /* held, frozen, full (B3) */
	made = !(seen & PS_PAGE_DIRTY);
	/* Acquire: as above; the CAS's acquire orders it after the hold. */
	e = atomic_load_explicit(slot, memory_order_acquire);
	if (PS_UNLIKELY(!ps_pte_is_present(e) || ps_pte_frame(e) != frame)) {
		/* Not this lifetime's: take the mark back (B1, S5). */
		if (made)
			(void)ps_page_clear_flags(p, PS_PAGE_DIRTY);
		batch_put(b, p, frame);
		return batch_slow(b, addr);
	}
	if (made) { /* the CAS made the transition: its hook (B2) */
		batch_leave(b);
		ps__space_frame_dirtied(s, frame);
	}
	batch_log(b, i);
	batch_put(b, p, frame);
	b->res->marked++;
	return 0;
}

/*
 * Mark the @n pages of @addrs (inside the space, aligned), as mark() each
 * one: 0, or -EOVERFLOW with res->stopped set (the pages before it marked).
 */
static int mark_batch(struct ps_space *s, const uint64_t *addrs, unsigned int n,
		      struct ps_ledger_ingest *res)
{
	struct batch b = {.s = s,
			  .res = res,
			  .leaf = UINT64_MAX,
			  .logw = UINT64_MAX};
	int rc = 0;

	for (unsigned int k = 0; k < n && !rc; k++)
		rc = batch_mark(&b, addrs[k]);
	batch_leave(&b);
	batch_flush_log(&b); /* B4 */
	return rc;
}

int ps_ledger_ingest_bitmap(struct ps_space *s, uint64_t base,
			    const uint64_t *bitmap, uint64_t npages,
			    struct ps_ledger_ingest *res)
{
	uint64_t addrs[PS_INGEST_BATCH];
	unsigned int n = 0;
	int rc;

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

			addrs[n++] = base + (i << PAGE_SHIFT);
			if (n == PS_INGEST_BATCH) {
				rc = mark_batch(s, addrs, n, res);
				if (rc)
					return rc;
				n = 0;
			}
		}
	}
	return mark_batch(s, addrs, n, res);
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
	uint64_t addrs[PS_INGEST_BATCH], nbits;
	unsigned int n = 0;

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
					/* The pages before @v, marked first. */
					int mrc = mark_batch(s, addrs, n, res);

					if (mrc)
						return mrc;
					res->stopped = v;
					return rc;
				}
				addrs[n++] = addr;
				if (n < PS_INGEST_BATCH)
					continue;
				rc = mark_batch(s, addrs, n, res);
				if (rc)
					return rc;
				n = 0;
			}
		}
	}
	return mark_batch(s, addrs, n, res);
}
