/* SPDX-License-Identifier: MIT */
/*
 * pagestate/ledger.h - the dirty ledger of a space (pagestate/space.h):
 * several consumers of its dirty log, each with its own view "dirty since my
 * last committed harvest", and harvests that are transactions.
 *
 * The design, why nothing is lost, and what it costs are in docs/ledger.md.
 *
 * ---------------------------------------------------------------------------
 * Model
 * ---------------------------------------------------------------------------
 *
 * A space has one dirty log, which every dirty source sets (write faults,
 * ps_space_mark_dirty(), pins for write, the secondary-map helper, the
 * written entries a harvest with PS_HARVEST_REARM collects): marking costs
 * the same however many consumers there are. A consumer (a live migration, an
 * incremental snapshot chain, a backup) is registered with
 * ps_ledger_consumer_add(), up to PS_LEDGER_CONSUMERS_MAX per space. Its
 * harvest (ps_ledger_harvest()) first hands every mark of the log in its
 * range to every registered consumer, then returns the pages of its own
 * share, ascending, and a token. Until the token is committed
 * (ps_ledger_commit()), the pages are in flight: an abort (ps_ledger_abort()),
 * or the consumer's removal, gives them back to that consumer, merged with the
 * marks made meanwhile. A page is reported to a consumer only if it was marked
 * since that consumer's last commit of it, except in two documented cases: a
 * page pinned for write is reported by every harvest while it is pinned (as by
 * ps_space_harvest()), and a consumer registered with PS_LEDGER_INITIALLY_SET
 * sees every page of the space as dirty until it has harvested it once.
 *
 * ps_space_harvest() and ps_space_redirty() are the space's default consumer,
 * which is always there and never counted: each of its harvests is committed
 * when it returns, and it behaves as before.
 *
 * Pages are reported as ps_space_harvest() reports them: 4 KiB addresses, or
 * with PS_HARVEST_UNITS an aligned 2 MiB or 1 GiB extent whose every page
 * the consumer has pending as one entry (the address with its order in the
 * low bits), @max counting entries.
 *
 * Concurrency: the calls for one consumer serialise on its own mutex; calls
 * for different consumers run in parallel except for the hand-over of the
 * log's marks, which one harvest at a time does (the ledger's drain mutex).
 * No call may be made from the space's hooks or a notifier callback.
 */
#ifndef PAGESTATE_LEDGER_H
#define PAGESTATE_LEDGER_H

#include <pagestate/compiler.h>
#include <pagestate/space.h>

#include <stdint.h>

PS_BEGIN_DECLS

/* How many consumers a space can have (the default consumer not counted). */
#define PS_LEDGER_CONSUMERS_MAX 8

/* Registration flags (ps_ledger_consumer_add()). */
#define PS_LEDGER_CLEAN 0x0u	     /* nothing dirty: marks from now on */
#define PS_LEDGER_INITIALLY_SET 0x1u /* every page dirty, until harvested */

/**
 * ps_ledger_consumer_add() - register a consumer of @space's dirty log.
 * @space: the space.
 * @flags: PS_LEDGER_CLEAN (the consumer's view starts empty: it is told of
 *	the marks made after this call, and of the pages pinned for write) or
 *	PS_LEDGER_INITIALLY_SET (every page of the space is dirty for it until
 *	one of its harvests reports it; nothing is written, protected or
 *	scanned now).
 * @id: receives the consumer's id, for the other calls. Ids are not reused.
 *
 * The first call on a space creates its ledger, and waits for the harvests
 * of the default consumer (ps_space_harvest()) that began before it. A CLEAN
 * registration hands the marks already in the log to the consumers already
 * there, not to this one.
 * Context: any thread, not inside the page table's read-side section, nor
 * from a hook or a notifier callback.
 * Ordering: a mark whose log bit is set after this call returns is reported
 * to the consumer (acquire and release of the ledger's drain mutex).
 * Progress: blocking (the drain mutex; the first call an RCU grace period);
 * it costs mapping the consumer's sets (zero-filled, untouched: nothing per
 * page, with INITIALLY_SET too) and a drain of what the log holds (the
 * marks, plus a word per 128 MiB).
 * Return: 0; -EINVAL (@space or @id NULL, unknown @flags); -ENOSPC (the space
 * has PS_LEDGER_CONSUMERS_MAX consumers already); -ENOMEM.
 */
int ps_ledger_consumer_add(struct ps_space *space, unsigned int flags,
			   uint64_t *id);

/**
 * ps_ledger_consumer_remove() - unregister a consumer: its open harvest, if
 * any, is aborted, and its view is dropped.
 * @space: the space.
 * @id: the consumer, from ps_ledger_consumer_add().
 *
 * The token of the aborted harvest is no longer valid (-ESTALE). The other
 * consumers are not affected.
 * Context: any thread, not from a hook or a notifier callback.
 * Ordering: after it returns, no drain hands marks to the consumer.
 * Progress: blocking (the consumer's mutex, the drain mutex).
 * Return: 0; -EINVAL (@space NULL); -ENOENT (no consumer @id: never
 * registered, or removed already).
 */
int ps_ledger_consumer_remove(struct ps_space *space, uint64_t id);

/**
 * ps_ledger_harvest() - take a consumer's dirty pages of [@start, @start +
 * @len) and return them, in flight until committed.
 * @space: the space.
 * @id: the consumer.
 * @start: the first page (aligned).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @flags: 0, PS_HARVEST_REARM, PS_HARVEST_UNITS, or both, as for
 *	ps_space_harvest().
 * @addrs: receives the pages, ascending (as ps_space_harvest()).
 * @max: room in @addrs, in entries (at least 1), as for ps_space_harvest().
 * @count: receives how many entries were written.
 * @resume: receives where to continue (@start + @len when complete); may be
 *	NULL.
 * @token: receives the harvest's token, for ps_ledger_commit() or
 *	ps_ledger_abort().
 *
 * First every mark of the log in the range is handed to every consumer.
 * Then the consumer's own pages are taken up to @max (the others stay for
 * its next harvest) and held in flight. If the consumer has a harvest open
 * (neither committed nor aborted), this one joins it: *@token is the same
 * and one commit or abort covers the pages of both. With PS_HARVEST_REARM,
 * the written entries of PS_WP_ASYNC ranges are collected first (for every
 * consumer at once), and every page reported is re-armed after it was taken,
 * as ps_space_harvest() does: copy the pages after the harvest returns.
 * Context: any thread, not from a hook or a notifier callback; with
 * PS_HARVEST_REARM as ps_space_harvest().
 * Ordering: what a marker wrote before its mark happens before the harvest
 * that reports it (the log's release and acquire, then the drain mutex and
 * the consumer's sets). A harvest that starts after a mark completed reports
 * it, or leaves it for the next one (beyond @max).
 * Progress: blocking (the consumer's mutex, the drain mutex; with
 * PS_HARVEST_REARM the page table's writer mutex).
 * Return: 0; -EINVAL (@space, @addrs, @count or @token NULL, @max 0, the
 * range, @flags); -ENOENT (no consumer @id); with PS_HARVEST_REARM the
 * page-table scan's error (-ENOMEM, -ENOENT): nothing is taken then, and an
 * open harvest stays open.
 */
int ps_ledger_harvest(struct ps_space *space, uint64_t id, uint64_t start,
		      uint64_t len, unsigned int flags, uint64_t *addrs,
		      uint64_t max, uint64_t *count, uint64_t *resume,
		      uint64_t *token);

/**
 * ps_ledger_commit() - make a harvest final: its pages are no longer dirty
 * for its consumer (unless marked again since it took them).
 * @space: the space.
 * @token: from ps_ledger_harvest().
 *
 * Context: any thread, not from a hook or a notifier callback.
 * Ordering: none beyond the consumer's mutex.
 * Progress: blocking (the consumer's mutex); it costs what the harvest took.
 * Return: 0; -EINVAL (@space NULL, @token never given by this space);
 * -ESTALE (committed or aborted already, or its consumer removed).
 */
int ps_ledger_commit(struct ps_space *space, uint64_t token);

/**
 * ps_ledger_abort() - undo a harvest: its pages are dirty again for its
 * consumer, merged with the marks made meanwhile.
 * @space: the space.
 * @token: from ps_ledger_harvest().
 *
 * The pages are reported by the consumer's next harvest. A page that the
 * harvest re-armed stays re-armed.
 * Context: any thread, not from a hook or a notifier callback.
 * Ordering: the consumer's next harvest (after its mutex) sees them.
 * Progress: blocking (the consumer's mutex); it costs what the harvest took.
 * Return: 0; -EINVAL (@space NULL, @token never given by this space);
 * -ESTALE (committed or aborted already, or its consumer removed).
 */
int ps_ledger_abort(struct ps_space *space, uint64_t token);

/* --- sources: dirty records of KVM and devices --------------------------- */

/*
 * The dirty sources outside the space (KVM's dirty bitmap and dirty ring, a
 * device's dirty bitmap for an IOVA range) are ingested from the caller's
 * buffers: each dirty page is marked as ps_space_mark_dirty() marks it (its
 * frame held, marked DIRTY with its hook under the frame's LOCKED bit, its
 * address logged after), so it reaches every consumer exactly as a software
 * mark does, and once however many sources report it; the dirty hook runs
 * once per clean-to-dirty transition, outside the page table's read-side
 * section. The bitmaps are marked in batches of up to 64 pages (one
 * read-side section, one page-table walk per 2 MiB, the log set a word at a
 * time); the results are those of marking page by page. A page with nothing
 * mapped is not marked, and is counted.
 */

/**
 * struct ps_ledger_ingest - what an ingest did.
 * @marked: pages marked (newly dirty, or dirty already).
 * @unmapped: pages reported dirty with nothing mapped (or, for a device, an
 *	IOVA the translation did not know): not marked.
 * @first_unmapped: the first of those: a space address (an IOVA for a
 *	device's untranslated page), or UINT64_MAX if none.
 * @stopped: after an error, where the ingest stopped: the space address of the
 *	page it could not mark (the ring: the entry's index); else UINT64_MAX.
 */
struct ps_ledger_ingest {
	uint64_t marked;
	uint64_t unmapped;
	uint64_t first_unmapped;
	uint64_t stopped;
};

/**
 * ps_ledger_ingest_bitmap() - mark the pages of a KVM_GET_DIRTY_LOG bitmap.
 * @space: the space.
 * @base: the space address of the memory slot's first page (aligned).
 * @bitmap: bit i (bit i % 64 of the 64-bit word i / 64) set: the page at
 *	@base + i * 4 KiB is dirty. The caller's copy: not changed.
 * @npages: how many bits (the slot's pages; @base + @npages pages inside the
 *	space).
 * @res: receives what was done.
 *
 * Context: any thread not holding a frame's LOCKED bit (as
 * ps_space_mark_dirty()).
 * Ordering: as ps_space_mark_dirty() for each page.
 * Progress: blocking (a mark may wait for a frame another thread holds); it
 * costs a load per 64 pages and, per dirty page, two RMWs on its page word
 * and a share of one per 64 pages of the log.
 * Return: 0; -EINVAL (@space, @bitmap or @res NULL, @base unaligned, the range
 * outside the space); -EOVERFLOW (a frame's references are full: @res->stopped
 * says which page; the pages before it were marked, those after it were not).
 */
int ps_ledger_ingest_bitmap(struct ps_space *space, uint64_t base,
			    const uint64_t *bitmap, uint64_t npages,
			    struct ps_ledger_ingest *res);

/*
 * A dirty ring entry, laid out as Linux's struct kvm_dirty_gfn: @flags
 * (PS_LEDGER_GFN_DIRTY when KVM published it, PS_LEDGER_GFN_RESET once
 * collected), @slot (the memory slot, as ps_ledger_ingest_ring()'s table
 * indexes it) and @offset (the page within the slot).
 */
struct ps_ledger_dirty_gfn {
	PS_ATOMIC(uint32_t) flags;
	uint32_t slot;
	uint64_t offset;
};

#define PS_LEDGER_GFN_DIRTY 0x1u /* KVM_DIRTY_GFN_F_DIRTY */
#define PS_LEDGER_GFN_RESET 0x2u /* KVM_DIRTY_GFN_F_RESET */

/* A memory slot of the ring's table: its first page's space address, size. */
struct ps_ledger_slot {
	uint64_t base;
	uint64_t npages;
};

/**
 * ps_ledger_ingest_ring() - collect the published entries of a KVM dirty
 * ring: mark each page and hand the entry back (RESET), as a VMM does before
 * KVM_RESET_DIRTY_RINGS.
 * @space: the space.
 * @ring: the ring's entries (the vCPU's mapping of it, or a copy).
 * @size: its number of entries (a power of two).
 * @fetch: in: the index of the next entry to collect (free-running, as
 *	KVM's); out: the index after the last one collected.
 * @slots: the memory slots, indexed by an entry's slot.
 * @nslots: how many.
 * @res: receives what was done (unmapped: entries whose slot or offset is
 *	outside @slots, or whose page has nothing mapped; first_unmapped is
 *	the first such entry's index).
 *
 * Collects from *@fetch on, while the entry is published (DIRTY set) and at
 * most @size entries: marks its page, then stores RESET in its flags.
 * Context: any thread not holding a frame's LOCKED bit.
 * Ordering: acquire load of each entry's flags (pairs with KVM's release
 * store that publishes it), then its slot and offset are read; the RESET is
 * a release store after the mark.
 * Progress: blocking (each mark); it costs a mark per entry collected.
 * Return: how many entries were collected (>= 0); -EINVAL (@space, @ring,
 * @fetch, @res NULL, @size not a power of two, @slots NULL with @nslots);
 * -EOVERFLOW (as ps_ledger_ingest_bitmap(); @res->stopped is the entry's
 * index, which is not collected: *@fetch stops there).
 */
long ps_ledger_ingest_ring(struct ps_space *space,
			   struct ps_ledger_dirty_gfn *ring, uint32_t size,
			   uint64_t *fetch, const struct ps_ledger_slot *slots,
			   uint32_t nslots, struct ps_ledger_ingest *res);

/*
 * A device's IOVA to space address translation: 0 and *@addr (the space
 * address of the 4 KiB page at @iova), or a negative errno (-ENOENT: the IOVA
 * is not mapped; the page is counted unmapped).
 */
typedef int (*ps_ledger_iova_fn)(void *ctx, uint64_t iova, uint64_t *addr);

/**
 * ps_ledger_ingest_device() - mark the pages of a device's dirty bitmap for
 * an IOVA range (VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
 * IOMMU_HWPT_GET_DIRTY_BITMAP, vfio-user's dirty pages).
 * @space: the space.
 * @iova: the range's first IOVA (aligned to @pgsize).
 * @len: its length (a non-zero multiple of @pgsize).
 * @pgsize: the bitmap's page size: a power of two, at least 4 KiB.
 * @bitmap: bit i set: the @pgsize page at @iova + i * @pgsize is dirty.
 * @translate: the device's IOVA to space address translation, called for
 *	each 4 KiB page of each dirty @pgsize page.
 * @ctx: for @translate.
 * @res: receives what was done.
 *
 * Context: any thread not holding a frame's LOCKED bit; @translate runs in it,
 *	outside any read-side section, before the marks of its batch (up to 64
 *	pages): an error it returns stops the ingest after the pages before it
 *	are marked.
 * Ordering: as ps_space_mark_dirty() for each page.
 * Progress: blocking (each mark, @translate); it costs a load per 64 bits
 * and a translation and a mark per dirty 4 KiB page.
 * Return: 0; -EINVAL (NULL arguments, @pgsize, @iova or @len, an address
 * @translate gave that is unaligned or outside the space: @res->stopped is that
 * IOVA); -EOVERFLOW (as ps_ledger_ingest_bitmap(); @res->stopped is the space
 * address); another error of @translate (it stops there: stopped is the IOVA).
 */
int ps_ledger_ingest_device(struct ps_space *space, uint64_t iova, uint64_t len,
			    uint64_t pgsize, const uint64_t *bitmap,
			    ps_ledger_iova_fn translate, void *ctx,
			    struct ps_ledger_ingest *res);

PS_END_DECLS

#endif /* PAGESTATE_LEDGER_H */
