/* SPDX-License-Identifier: MIT */
/*
 * pagestate/notifier.h - interval invalidation notifiers with exact
 * per-range retry: Linux's mmu_interval_notifier and KVM's
 * mmu_invalidate_seq for userspace secondary mappings.
 *
 * A secondary mapping (a VMM's cached guest translation, a vhost worker's
 * map, a userspace driver's vtophys cache, an emulated IOMMU's IOTLB) is
 * built without the lock that invalidation takes, then validated with a
 * sequence number and rebuilt if an invalidation raced with it. The design,
 * the protocol and the comparison with Linux are in docs/notifier.md.
 *
 * ---------------------------------------------------------------------------
 * Objects
 * ---------------------------------------------------------------------------
 *
 *   struct ps_notifier   one per address space (embed it; ps_notifier_init).
 *   struct ps_interval   a subscription to [start, start + len) of one
 *                        notifier, with ops whose invalidate() callback runs
 *                        for every invalidation that overlaps it (embed it,
 *                        like Linux's struct mmu_interval_notifier).
 *   invalidation         ps_notifier_invalidate_start() .. _end() brackets a
 *                        change of the primary mapping of [start, start+len)
 *                        (unmap, protection change, conversion, migration,
 *                        ...). Any number may be in flight at once, from any
 *                        threads.
 *
 * ---------------------------------------------------------------------------
 * Two checks
 * ---------------------------------------------------------------------------
 *
 *   per subscription   seq = ps_interval_read_begin(sub); look up;
 *   (Linux's interval   take the user lock; ps_interval_read_retry(sub, seq)?
 *   notifier)           True only if an invalidation overlapping the
 *                       subscription ran its callback since read_begin.
 *   whole space        seq = ps_notifier_read_begin(n); many lookups;
 *   (KVM's              ps_notifier_read_retry(n, seq, addr)?
 *   mmu_invalidate_seq) True only if an invalidation whose range contains
 *                       addr was in flight at some instant since read_begin.
 *
 * The user lock is the caller's own lock over its secondary mapping. The
 * per-subscription pattern (docs/notifier.md, section "Worked example", has
 * a complete program):
 *
 *	bool invalidate(sub, inv, cur_seq, priv)	// the callback
 *		lock the user lock (if !ps_invalidation_blockable(inv):
 *			trylock, and return false if it is taken)
 *		ps_interval_set_seq(sub, cur_seq);
 *		tear down the secondary mappings of the range
 *		unlock the user lock; return true
 *
 *	build a mapping of addr:
 *		seq = ps_interval_read_begin(sub);
 *		look up addr in the primary mapping (no lock held)
 *		lock the user lock
 *		if (ps_interval_read_retry(sub, seq)): unlock, start again
 *		install the secondary mapping
 *		unlock the user lock
 *
 * Both checks are exact: invalidations of other ranges never make them
 * true, however many run, and read_begin never waits for them. The one
 * exception is memory: the notifier's record of ended invalidations keeps at
 * most 65,536 stretches of addresses (1.5 MiB; the ends of distinct pages
 * are one stretch each) and forgets the oldest ends past that, and if it
 * cannot allocate, it forgets the ends it could not keep. A whole-space check
 * reaching back to forgotten ends answers true, and each such answer is
 * counted in ps_notifier_stats.conservative_retries; a check whose read_begin
 * is among the latest 32,768 ends of distinct pages never does.
 *
 * ---------------------------------------------------------------------------
 * Where it differs from Linux
 * ---------------------------------------------------------------------------
 *
 *   - ps_interval_read_begin() waits only for the overlapping invalidations
 *     in flight when it was called; mmu_interval_read_begin(), once the
 *     subscription was hit, waits until no invalidation at all is in flight.
 *   - No reader takes a lock; mmu_interval_read_begin() takes a spinlock.
 *   - Inserts and removes during an invalidation take effect at once (Linux
 *     defers them to the end of the busy period). The caller's rules are
 *     Linux's: a new subscription's read_begin waits for the overlapping
 *     invalidations in flight, and remove waits for them.
 *   - The whole-space check keeps every range apart; KVM merges concurrent
 *     ranges into one and retries whenever any invalidation ends.
 *   - Events have no owner (Linux's MMU_NOTIFY_MIGRATE has one);
 *     PS_NOTIFIER_CONVERSION has no Linux event.
 *   - Starts and ends take the notifier's mutex briefly (a pthread mutex;
 *     Linux's is a spinlock), also with PS_NOTIFIER_NONBLOCK, which only
 *     forbids the callbacks to sleep.
 *
 * Why each differs: docs/notifier.md, section "Where it differs from Linux".
 *
 * ---------------------------------------------------------------------------
 * Progress
 * ---------------------------------------------------------------------------
 *
 * The checks take no lock. ps_interval_read_begin() is wait-free with
 * nothing in flight, lock-free with only other ranges in flight, and blocks
 * while an overlapping invalidation is in flight; ps_interval_read_retry(),
 * ps_interval_check_retry() and ps_notifier_read_begin() are wait-free;
 * ps_notifier_read_retry() is wait-free when nothing started or ended since
 * read_begin, else lock-free. Set-up, subscriptions and invalidations take
 * the notifier's mutex, which is never held across a callback. Each
 * function states its own guarantee.
 */
#ifndef PAGESTATE_NOTIFIER_H
#define PAGESTATE_NOTIFIER_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

/* --- the notifier's state word ------------------------------------------- */

/*
 * Layout of struct ps_notifier.state (bit 63 on the left):
 *
 *   63                                              7 6           0
 *   +------------------------------------------------+-------------+
 *   |                    ends (57)                   | inflight (7)|
 *   +------------------------------------------------+-------------+
 *
 *   inflight  invalidations between a successful start and their end,
 *             saturating: 127 means 127 or more (any number may be in
 *             flight; ps_notifier_get_stats() has the exact count). It is
 *             0 exactly when none is.
 *   ends      invalidations that ended (mod 2^57); numbers them for the
 *             whole-space check
 *
 * A start adds 1 (0 once inflight is saturated); an end adds
 * PS_NOTIFIER_END_ONE (ends + 1), minus 1 unless more than 127 were in
 * flight. So the word is unchanged between two reads, with inflight == 0,
 * if and only if no invalidation started or ended in between: the fast path
 * of both read_begin/retry pairs is one load each.
 */
#define PS_NOTIFIER_INFLIGHT_SHIFT 0
#define PS_NOTIFIER_INFLIGHT_WIDTH 7
#define PS_NOTIFIER_INFLIGHT_MASK                          \
	(((UINT64_C(1) << PS_NOTIFIER_INFLIGHT_WIDTH) - 1) \
	 << PS_NOTIFIER_INFLIGHT_SHIFT)
#define PS_NOTIFIER_ENDS_SHIFT \
	(PS_NOTIFIER_INFLIGHT_SHIFT + PS_NOTIFIER_INFLIGHT_WIDTH)
#define PS_NOTIFIER_ENDS_WIDTH (64 - PS_NOTIFIER_ENDS_SHIFT)
#define PS_NOTIFIER_END_ONE (UINT64_C(1) << PS_NOTIFIER_ENDS_SHIFT)

/* --- events, invalidations, callbacks ------------------------------------ */

/**
 * enum ps_notifier_event - why a range is being invalidated.
 * @PS_NOTIFIER_UNMAP: the range is unmapped or zapped (Linux MMU_NOTIFY_UNMAP).
 * @PS_NOTIFIER_CLEAR: the contents are discarded or replaced, e.g. a
 *	balloon or discard (MMU_NOTIFY_CLEAR).
 * @PS_NOTIFIER_PROTECTION: access rights shrink: write-protect, uffd-wp,
 *	mprotect (MMU_NOTIFY_PROTECTION_VMA/_PAGE).
 * @PS_NOTIFIER_SOFT_DIRTY: write-protect for dirty tracking
 *	(MMU_NOTIFY_SOFT_DIRTY).
 * @PS_NOTIFIER_CONVERSION: shared/private (encryption) conversion; no Linux
 *	event (KVM treats it as an attribute-change unmap).
 * @PS_NOTIFIER_MIGRATE: the pages move to other frames (MMU_NOTIFY_MIGRATE).
 * @PS_NOTIFIER_EXCLUSIVE: a device takes exclusive access
 *	(MMU_NOTIFY_EXCLUSIVE).
 * @PS_NOTIFIER_RELEASE: the whole space is going away (MMU_NOTIFY_RELEASE).
 *
 * Room to grow: new events get new values at the end. A callback must treat
 * an event it does not know like PS_NOTIFIER_UNMAP (tear everything down).
 */
enum ps_notifier_event {
	PS_NOTIFIER_UNMAP = 1,
	PS_NOTIFIER_CLEAR,
	PS_NOTIFIER_PROTECTION,
	PS_NOTIFIER_SOFT_DIRTY,
	PS_NOTIFIER_CONVERSION,
	PS_NOTIFIER_MIGRATE,
	PS_NOTIFIER_EXCLUSIVE,
	PS_NOTIFIER_RELEASE,
};

/*
 * Flags of an invalidation. PS_NOTIFIER_NONBLOCK: the invalidating context
 * must not sleep; callbacks must not block and may refuse (return false),
 * and ps_notifier_invalidate_start() then fails with -EAGAIN (Linux: a range
 * without MMU_NOTIFIER_RANGE_BLOCKABLE). The start and end themselves still
 * take the notifier's mutex briefly.
 */
#define PS_NOTIFIER_NONBLOCK (1u << 0)
#define PS_NOTIFIER_FLAGS_ALL PS_NOTIFIER_NONBLOCK

/**
 * struct ps_invalidation - what a callback is told (Linux's struct
 * mmu_notifier_range).
 * @start: first address of the range.
 * @len: its length; the range is [start, start + len), len >= 1.
 * @event: why.
 * @flags: PS_NOTIFIER_NONBLOCK or 0.
 */
struct ps_invalidation {
	uint64_t start;
	uint64_t len;
	enum ps_notifier_event event;
	unsigned int flags;
};

/**
 * ps_invalidation_blockable() - may the callback sleep (take a mutex)?
 * @inv: the invalidation the callback was handed.
 *
 * Context: a callback, or any holder of @inv. Ordering: none needed: *@inv
 * is the invalidating thread's own record and never changes.
 * Progress: wait-free.
 * Return: false for a PS_NOTIFIER_NONBLOCK invalidation, else true.
 */
static inline bool ps_invalidation_blockable(const struct ps_invalidation *inv)
{
	return !(inv->flags & PS_NOTIFIER_NONBLOCK);
}

/**
 * ps_invalidation_last() - last address of the range (inclusive).
 * @inv: the invalidation the callback was handed.
 *
 * Context: as ps_invalidation_blockable(). Ordering: none needed (*@inv
 * never changes). Progress: wait-free.
 * Return: @inv->start + @inv->len - 1.
 */
static inline uint64_t ps_invalidation_last(const struct ps_invalidation *inv)
{
	return inv->start + (inv->len - 1);
}

struct ps_interval;

/**
 * struct ps_interval_ops - what a subscription does when invalidated.
 * @invalidate: called for every invalidation that overlaps the
 *	subscription, after the invalidation is published and before
 *	ps_notifier_invalidate_start() returns. It must, under the user lock
 *	that protects the secondary mapping, call ps_interval_set_seq(sub,
 *	cur_seq) and stop using (tear down) every secondary mapping of the
 *	range. It may instead ignore an event it does not care about (return
 *	true without set_seq), as Linux drivers ignore their own migrations.
 *	@priv is the pointer given to ps_interval_insert().
 *	Return: true if it could proceed. False only for a non-blocking
 *	invalidation (!ps_invalidation_blockable(inv)) that would have to
 *	sleep: the invalidation then fails with -EAGAIN. False for a blockable
 *	invalidation is ignored (Linux warns).
 *	Context: runs in the invalidating thread, outside the notifier's
 *	mutex, inside an RCU read-side section of the library's liburcu-bp:
 *	it may block when blockable (grace periods wait for it), but must not
 *	call ps_interval_remove(), ps_notifier_destroy() or
 *	ps_interval_read_begin() on an overlapping subscription, which wait for
 *	this very invalidation. It may call ps_interval_insert().
 */
struct ps_interval_ops {
	bool (*invalidate)(struct ps_interval *sub,
			   const struct ps_invalidation *inv, uint64_t cur_seq,
			   void *priv);
};

/* --- the objects ---------------------------------------------------------- */

struct ps__notifier_impl;

/**
 * struct ps_notifier - the invalidation state of one address space.
 * @state: the state word (its layout is given with PS_NOTIFIER_INFLIGHT_SHIFT);
 *	read by the inline fast paths.
 * @impl: the rest, private to the library (its mutex, the subscriptions,
 *	the in-flight invalidations, the ended ones).
 *
 * Embed it and call ps_notifier_init(). Use it only through the functions of
 * this header.
 */
struct ps_notifier {
	PS_ATOMIC(uint64_t) state;
	struct ps__notifier_impl *impl;
};

/**
 * struct ps_interval - a subscription (embed it in the secondary mapping's
 * own structure). All fields are private: use the functions of this header.
 * @seq: the subscription's sequence, always odd; changed only by
 *	ps_interval_set_seq() (callbacks) and insert.
 * @notifier: the notifier while inserted, NULL otherwise.
 * @start, @last: the range, inclusive.
 * @ops, @priv: as given to ps_interval_insert().
 */
struct ps_interval {
	PS_ATOMIC(uint64_t) seq;
	struct ps_notifier *notifier;
	uint64_t start;
	uint64_t last;
	const struct ps_interval_ops *ops;
	void *priv;
};

/**
 * struct ps_notifier_stats - counters since ps_notifier_init() (each read
 * with a relaxed load; the set is not one atomic snapshot).
 * @invalidations: successful invalidate_start calls.
 * @nonblock_failures: invalidate_start calls that returned -EAGAIN.
 * @callbacks: invalidate callbacks called.
 * @read_begin_waits: ps_interval_read_begin calls that waited for an
 *	overlapping invalidation.
 * @remove_waits: ps_interval_remove calls that waited likewise.
 * @conservative_retries: whole-space checks answered true only because
 *	they reached back to forgotten ends (see above); 0 unless memory ran
 *	out or a check's read_begin is older than the record keeps.
 * @subscriptions: subscriptions inserted now.
 * @inflight: invalidations in flight now (exact, not saturated).
 */
struct ps_notifier_stats {
	uint64_t invalidations;
	uint64_t nonblock_failures;
	uint64_t callbacks;
	uint64_t read_begin_waits;
	uint64_t remove_waits;
	uint64_t conservative_retries;
	uint64_t subscriptions;
	uint64_t inflight;
};

/* --- set-up -------------------------------------------------------------- */

/**
 * ps_notifier_init() - initialise an empty notifier.
 * @n: the notifier (its memory is the caller's).
 *
 * Context: before @n is shared; blocking (allocates).
 * Ordering: none: the state word is stored relaxed; publish @n to other
 * threads as usual (a release store, a thread start, a lock).
 * Progress: blocking (calloc, mutex and condvar initialisation).
 * Return: 0, or -ENOMEM (also if the mutex or condvar cannot be
 * initialised; nothing is allocated then); -ECHILD in a child of a plain
 * fork() (pagestate/fork.h).
 */
int ps_notifier_init(struct ps_notifier *n);

/**
 * ps_notifier_destroy() - free what ps_notifier_init() allocated.
 * @n: a notifier with no subscription and no invalidation in flight.
 *
 * Memory retired by earlier updates is freed by liburcu's call_rcu thread
 * as usual. In a child of fork(), a notifier inherited from the parent is
 * only forgotten, whatever it holds (pagestate/fork.h, rule 2): nothing is
 * freed and 0 is returned.
 * Context: blocking; no other thread may use @n meanwhile.
 * Ordering: the check runs under the notifier's mutex, so it sees every
 * insert, remove, start and end that returned before the call.
 * Progress: blocking (the notifier's mutex; it never waits for a grace period).
 * Return: 0; -EBUSY (nothing freed) while a subscription is inserted or an
 * invalidation is in flight.
 */
int ps_notifier_destroy(struct ps_notifier *n);

/* --- subscriptions -------------------------------------------------------- */

/**
 * ps_interval_insert() - subscribe @sub to [start, start + len) of @n.
 * @sub: the subscription (not inserted).
 * @n: the notifier.
 * @start: first address.
 * @len: length, at least 1; start + len - 1 must not overflow.
 * @ops: the callbacks (ops->invalidate must be set); must outlive @sub.
 * @priv: handed to ops->invalidate.
 *
 * The subscription joins the set at once: every invalidation that starts
 * after this call returns calls it. Invalidations already in flight do not
 * call it, and, as in Linux, the new subscription must assume they include
 * its range: ps_interval_read_begin() waits for those of them that overlap
 * it. @sub must not be inserted in any notifier: its fields are overwritten.
 * Undo with ps_interval_remove().
 *
 * Context: blocking (the notifier's mutex, allocation). May be called from a
 * callback.
 * Ordering: the subscription is published with a release store.
 * Progress: blocking (the notifier's mutex, malloc); never waits for a
 * grace period. Complexity: O(log n) for n subscriptions.
 * Return: 0; -EOVERFLOW if len == 0 or the range wraps past 2^64 (as
 * Linux); -EINVAL if @n is NULL or @ops has no invalidate; -EEXIST if @sub
 * is already inserted in @n at @start (a double insert); -ENOMEM. On error
 * nothing changes.
 */
int ps_interval_insert(struct ps_interval *sub, struct ps_notifier *n,
		       uint64_t start, uint64_t len,
		       const struct ps_interval_ops *ops, void *priv);

/**
 * ps_interval_remove() - unsubscribe; no callback runs for @sub afterwards.
 * @sub: an inserted subscription (a subscription that is not inserted is
 *	left alone).
 *
 * The subscription leaves the set at once: invalidations starting later do
 * not see it. Then, as in Linux, remove waits for the invalidations that
 * were in flight and overlap it, since they may still call it; it does not
 * wait for invalidations of other ranges. When it returns, no callback runs
 * for @sub and its memory may be reused. It cannot fail: if memory for the
 * new subscription set cannot be allocated, it waits for memory.
 *
 * Context: blocking. Not from a callback, nor from a thread between its own
 * ps_notifier_invalidate_start() and ps_notifier_invalidate_end() of a range
 * that overlaps @sub.
 * Ordering: the subscription set without @sub is published with a release
 * store; the waits are under the notifier's mutex, so the callbacks of the
 * invalidations it waited for happen before it returns.
 * Progress: blocking: the mutex, the overlapping invalidations in flight
 * and, out of memory, liburcu's pending frees (rcu_barrier) and a sleep.
 * Complexity: O(log n) for n subscriptions.
 */
void ps_interval_remove(struct ps_interval *sub);

/**
 * ps_interval_start() - first address of the subscription.
 * @sub: an inserted subscription.
 *
 * Context: any thread, while @sub is inserted. Ordering: a plain load: the
 * field is written only by ps_interval_insert(), before it publishes @sub.
 * Progress: wait-free.
 * Return: the start given to ps_interval_insert().
 */
static inline uint64_t ps_interval_start(const struct ps_interval *sub)
{
	return sub->start;
}

/**
 * ps_interval_last() - last address of the subscription (inclusive).
 * @sub: an inserted subscription.
 *
 * Context: as ps_interval_start(). Ordering: a plain load (as there).
 * Progress: wait-free.
 * Return: start + len - 1, as given to ps_interval_insert().
 */
static inline uint64_t ps_interval_last(const struct ps_interval *sub)
{
	return sub->last;
}

/* --- per-subscription retry ----------------------------------------------- */

/*
 * The slow half of ps_interval_read_begin(): exported for that inline
 * function only (it is part of the ABI), not for direct calls.
 */
uint64_t ps_interval_read_begin_slow(struct ps_interval *sub, uint64_t seq);

/**
 * ps_interval_read_begin() - start building a secondary mapping of @sub.
 * @sub: an inserted subscription.
 *
 * If no invalidation overlapping @sub is in flight, returns at once (two
 * acquire loads when nothing at all is in flight). If some are, it WAITS for
 * those that were in flight when it was called to end (Linux's choice, so
 * that the caller does not spin through doomed lookups); it never waits for
 * invalidations of other ranges, nor for ones that start later. If another
 * overlapping invalidation starts meanwhile, the value returned makes
 * ps_interval_read_retry() true once that one's callback has run.
 *
 * Context: may block: never call it with a lock held that a callback of an
 * overlapping invalidation takes (the user lock), nor from a callback.
 * Ordering: acquire loads of @sub's sequence (pairs with the release in
 * ps_interval_set_seq()) and of the notifier's state word (pairs with the
 * release that publishes an invalidation).
 * Progress: wait-free with nothing in flight; lock-free with only
 * non-overlapping invalidations in flight; blocking otherwise, bounded by
 * the overlapping invalidations in flight at the call.
 * Return: the sequence to pass to ps_interval_read_retry() (always odd).
 */
static inline uint64_t ps_interval_read_begin(struct ps_interval *sub)
{
	/*
	 * Acquire: pairs with the release in ps_interval_set_seq(). A
	 * callback's set_seq happens after its invalidation was published, so
	 * if this load sees it, the load of the state word below sees that
	 * invalidation in flight, or ended.
	 */
	uint64_t seq = atomic_load_explicit(&sub->seq, memory_order_acquire);
	/* Acquire: pairs with the release publishing each start and end. */
	uint64_t state = atomic_load_explicit(&sub->notifier->state,
					      memory_order_acquire);

	if (PS_LIKELY(!(state & PS_NOTIFIER_INFLIGHT_MASK)))
		return seq;
	return ps_interval_read_begin_slow(sub, seq);
}

/**
 * ps_interval_read_retry() - must the mapping be built again?
 * @sub: the subscription.
 * @seq: what ps_interval_read_begin() returned.
 *
 * Authoritative: call it under the user lock, the lock the callback holds
 * while calling ps_interval_set_seq(). If it returns false, install the
 * mapping before dropping the lock: any later invalidation's callback will
 * find it and tear it down.
 * Context: under the user lock. Ordering: relaxed; the user lock orders it
 * against ps_interval_set_seq(). Progress: wait-free.
 * Return: true if an invalidation overlapping @sub ran its callback since
 * read_begin (or is in flight and did before read_begin returned): the
 * lookup may be stale. Never true otherwise (no false retries).
 */
static inline PS_MUST_CHECK bool
ps_interval_read_retry(const struct ps_interval *sub, uint64_t seq)
{
	/* Relaxed: the user lock orders this load against set_seq. */
	return atomic_load_explicit(&sub->seq, memory_order_relaxed) != seq;
}

/**
 * ps_interval_check_retry() - lockless early check, for long loops.
 * @sub: the subscription.
 * @seq: what ps_interval_read_begin() returned.
 *
 * True is reliable: an overlapping invalidation ran its callback since
 * read_begin, so the work can be abandoned now. False is only a hint: a
 * callback may run a moment later; the authoritative check is
 * ps_interval_read_retry() under the user lock.
 * Context: any thread, no lock. Ordering: relaxed. Progress: wait-free.
 * Return: true if an overlapping invalidation ran its callback since
 * read_begin (reliable); false if none has yet (a hint).
 */
static inline PS_MUST_CHECK bool
ps_interval_check_retry(const struct ps_interval *sub, uint64_t seq)
{
	/* Relaxed: a hint; a true answer needs no ordering to be right. */
	return atomic_load_explicit(&sub->seq, memory_order_relaxed) != seq;
}

/**
 * ps_interval_set_seq() - record an invalidation in @sub (from a callback).
 * @sub: the subscription the callback was called for.
 * @cur_seq: the callback's @cur_seq argument.
 *
 * A callback that acts on the invalidation calls it under the user lock,
 * before it tears its mappings down: from then on ps_interval_read_retry()
 * is true for every reader whose ps_interval_read_begin() returned before.
 * Context: inside the invalidate callback, under the user lock.
 * Ordering: release; pairs with the acquire in ps_interval_read_begin().
 * Progress: wait-free.
 */
static inline void ps_interval_set_seq(struct ps_interval *sub,
				       uint64_t cur_seq)
{
	/* Release: pairs with the acquire of @seq in read_begin (see there). */
	atomic_store_explicit(&sub->seq, cur_seq, memory_order_release);
}

/* --- invalidations -------------------------------------------------------- */

/**
 * ps_notifier_invalidate_start() - begin invalidating [start, start + len).
 * @n: the notifier.
 * @start: first address.
 * @len: length, at least 1.
 * @event: why (handed to the callbacks).
 * @flags: 0, or PS_NOTIFIER_NONBLOCK.
 *
 * Publishes the invalidation (from now on the whole-space check and
 * read_begin of overlapping subscriptions see it), then calls the invalidate
 * callback of every subscription overlapping the range. When it returns 0,
 * no secondary mapping of the range is in use: change the primary mapping,
 * then call ps_notifier_invalidate_end() with the same range.
 *
 * Any number of invalidations may be in flight at once, from any threads (a
 * thread may hold several, as in Linux). After an error the invalidation is
 * over: do not call ps_notifier_invalidate_end(). After -EAGAIN, the callbacks
 * that ran before the refusal did their teardown and their readers retry, and
 * the whole-space check counts the attempt as an invalidation that was in
 * flight.
 *
 * Context: any thread. The callbacks run in this thread, outside the
 * notifier's mutex; without PS_NOTIFIER_NONBLOCK they may sleep.
 * Ordering: the in-flight record is published (release) before the first
 * callback; a release fence then orders it before every store the caller
 * makes after the return (pairs with the acquire fence in
 * ps_notifier_read_retry_range()).
 * Progress: blocking: the notifier's mutex, taken briefly also with
 * PS_NOTIFIER_NONBLOCK; an allocation when more invalidations are in flight
 * than ever before; the callbacks. Never a wait for another invalidation.
 * Complexity: O(log n + k) for n subscriptions of which k overlap the range,
 * when subscriptions do not overlap each other (never more than O(n)), plus
 * the callbacks.
 * Return: 0; -EOVERFLOW if len == 0 or the range wraps past 2^64 (nothing is
 * published or called); -EINVAL for unknown @flags; -ENOMEM if more
 * invalidations are in flight than ever before and 64 more slots cannot be
 * allocated (nothing is published or called); -EAGAIN with
 * PS_NOTIFIER_NONBLOCK if a callback refused.
 */
int ps_notifier_invalidate_start(struct ps_notifier *n, uint64_t start,
				 uint64_t len, enum ps_notifier_event event,
				 unsigned int flags);

/**
 * ps_notifier_invalidate_end() - end an invalidation started with the same
 * range.
 * @n: the notifier.
 * @start: as given to the successful ps_notifier_invalidate_start().
 * @len: likewise.
 *
 * Readers whose ps_interval_read_begin() waits for this invalidation, and
 * removers, are woken. With several identical ranges in flight the oldest
 * ends: they are indistinguishable to readers. The end is recorded for the
 * whole-space check; every 256th end merges the latest ones into a sorted
 * record (of at most 65,536 stretches of addresses: past that the oldest ends
 * are forgotten), and if that merge cannot allocate, the end still succeeds and
 * the 256 ends before it are forgotten (see ps_notifier_read_retry_range()).
 * Context: any thread; blocking (the notifier's mutex, briefly).
 * Ordering: release: the caller's changes to the primary mapping happen
 * before a reader that sees this end.
 * Progress: blocking (the notifier's mutex; it never waits for anything
 * else). Complexity: O(invalidations in flight) to find the record, then O(1),
 * except that every 256th end merges the latest 256 into the record of ended
 * invalidations: amortised O(log m) per end for m runs kept, O(m) for the rare
 * merge of the largest tier (docs/notifier.md, section "Limits and costs").
 * Return: 0; -EOVERFLOW if len == 0 or the range wraps past 2^64; -ENOENT
 * if no invalidation of exactly [start, start + len) is in flight (misuse;
 * nothing changes).
 */
int ps_notifier_invalidate_end(struct ps_notifier *n, uint64_t start,
			       uint64_t len);

/* --- whole-space retry (KVM's mmu_invalidate_seq pattern) ----------------- */

/*
 * The slow half of ps_notifier_read_retry_range(): exported for that inline
 * function only (it is part of the ABI), not for direct calls.
 */
bool ps_notifier_retry_slow(const struct ps_notifier *n, uint64_t seq,
			    uint64_t start, uint64_t last);

/**
 * ps_notifier_read_begin() - start a batch of lookups anywhere in the space.
 * @n: the notifier.
 *
 * Never waits (KVM's mmu_invalidate_seq read): invalidations in flight are
 * reported by the retry check instead.
 * Context: any thread. Ordering: acquire (pairs with the release that
 * publishes each start and end). Progress: wait-free.
 * Return: the sequence for ps_notifier_read_retry().
 */
static inline uint64_t ps_notifier_read_begin(const struct ps_notifier *n)
{
	/* Acquire: pairs with the release publishing each start and end. */
	return atomic_load_explicit(&n->state, memory_order_acquire);
}

/**
 * ps_notifier_read_retry_range() - was [start, start + len) invalidated
 * since ps_notifier_read_begin()?
 * @n: the notifier.
 * @seq: what ps_notifier_read_begin() returned.
 * @start: the first address the caller looked up.
 * @len: the length of that range (len >= 1).
 *
 * Exact: true if and only if an invalidation overlapping the range was in
 * flight at some instant between read_begin and this call: it was in flight at
 * read_begin, or started or ended since. Invalidations of other ranges never
 * make it true, however many ran, and ranges are never merged. One exception,
 * counted in the stats: true, conservatively, if the answer needs ends that
 * were forgotten, because memory ran out or they are older than the record
 * keeps (see the overview and ps_notifier_invalidate_end()).
 *
 * Authoritative when called under the user lock that the callbacks covering
 * the range take (as KVM calls mmu_invalidate_retry_gfn() under mmu_lock):
 * then a false answer means the mapping may be installed before the lock is
 * dropped. Without the lock it is exact about the past, but an invalidation
 * may start right after it returns.
 * Context: any thread.
 * Ordering: an acquire fence first, so the caller's lookups before the call are
 * covered (pairs with the release fence in ps_notifier_invalidate_start()).
 * Progress: wait-free if nothing started or ended since read_begin: an
 * acquire fence and one load. Else lock-free: a call that reads the
 * invalidations in flight and the ends since read_begin, again only where a
 * writer changed them meanwhile (docs/notifier.md, section "Limits and costs").
 * Return: true if an invalidation overlapping the range was in flight at
 * some instant since read_begin, or, conservatively, if the answer needs
 * forgotten ends; else false. True for len == 0 or a wrapping range (misuse).
 */
static inline PS_MUST_CHECK bool
ps_notifier_read_retry_range(const struct ps_notifier *n, uint64_t seq,
			     uint64_t start, uint64_t len)
{
	uint64_t state;

	if (PS_UNLIKELY(len == 0 || start + (len - 1) < start))
		return true;
	/*
	 * Acquire fence: the caller's lookups first; pairs with the release
	 * fence in ps_notifier_invalidate_start().
	 */
	atomic_thread_fence(memory_order_acquire);
	/*
	 * Acquire: pairs with the release RMWs of starts and ends, so the
	 * slow path sees the records of every start this load sees.
	 */
	state = atomic_load_explicit(&n->state, memory_order_acquire);
	if (PS_LIKELY(state == seq && !(seq & PS_NOTIFIER_INFLIGHT_MASK)))
		return false;
	return ps_notifier_retry_slow(n, seq, start, start + (len - 1));
}

/**
 * ps_notifier_read_retry() - ps_notifier_read_retry_range() for one address.
 * @n: the notifier.
 * @seq: what ps_notifier_read_begin() returned.
 * @addr: the address the caller looked up.
 *
 * Context: any thread. Ordering: as ps_notifier_read_retry_range() (an
 * acquire fence first). Progress: wait-free if nothing started or ended
 * since read_begin, else lock-free.
 * Return: true if an invalidation containing @addr was in flight at some
 * instant since read_begin (or, conservatively, the answer needs forgotten
 * ends).
 */
static inline PS_MUST_CHECK bool
ps_notifier_read_retry(const struct ps_notifier *n, uint64_t seq, uint64_t addr)
{
	return ps_notifier_read_retry_range(n, seq, addr, 1);
}

/* --- statistics ----------------------------------------------------------- */

/**
 * ps_notifier_get_stats() - read the counters.
 * @n: an initialised notifier.
 * @st: receives the counters.
 *
 * Context: any thread. Ordering: relaxed loads (not one snapshot).
 * Progress: wait-free (eight loads).
 */
void ps_notifier_get_stats(const struct ps_notifier *n,
			   struct ps_notifier_stats *st);

PS_END_DECLS

#endif /* PAGESTATE_NOTIFIER_H */
