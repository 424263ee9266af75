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
 * with PS_HARVEST_UNITS aligned 2 MiB and 1 GiB extents as one entry each
 * (the address with its order in the low bits), @max counting pages taken.
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
 * it costs O(1) with INITIALLY_SET, and what the log holds with CLEAN.
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
 * @max: room in @addrs (at least 1); with PS_HARVEST_UNITS it counts pages.
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

PS_END_DECLS

#endif /* PAGESTATE_LEDGER_H */
