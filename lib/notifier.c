// SPDX-License-Identifier: MIT
/*
 * lib/notifier.c - interval invalidation notifiers (see notifier.h).
 *
 * ===========================================================================
 * State
 * ===========================================================================
 *
 * Per notifier:
 *   state (public word)  ends (57 bits) | inflight (7 bits, saturating at
 *                        127), see notifier.h
 *   slots                one record per in-flight invalidation (lib/rec.h):
 *                        {tag = its ticket, start, last}; tag 0 = free. In
 *                        chunks of 64 with a busy bitmap each: the first
 *                        chunk is part of the notifier, more are linked when
 *                        all are busy and kept until destroy (memory for the
 *                        most invalidations ever in flight at once)
 *   inflight             the exact number in flight (under lock)
 *   hist                 every ended invalidation by address and end number
 *                        (lib/history.h: a ring of the latest 256, merged
 *                        into sorted levels; its own protocol is there)
 *   tree                 the subscriptions: an interval set searched
 *                        under RCU while writers publish new versions
 *                        (lib/itree.h; its own protocol is in itree.c)
 *   lock, wake           the writers' mutex, and a condvar for waiters
 *   last_ticket          the ticket of the latest start (odd, under lock)
 * Per subscription: seq (odd), set to the ticket of the invalidation whose
 * callback last ran for it (or to last_ticket at insert).
 *
 * Tickets are unique and increase (3, 5, 7, ...). That is what makes the
 * per-subscription check exact. Linux hands every invalidation of one busy
 * period the same odd value, so its subscription sequence cannot tell two of
 * them apart, and read_begin must wait for the whole period to end: for
 * invalidations of unrelated ranges too. Here read_begin looks at the exact
 * in-flight ranges instead (G2), and the sequence only says "a callback ran
 * since" (G3).
 *
 * Linux's "fully/partially excluded" states do not exist here: an
 * invalidation never freezes the subscription set. It walks the RCU snapshot
 * it loaded, inserts and removes publish new snapshots meanwhile, and what
 * Linux gets from deferring them is had from the in-flight records: a new
 * subscription waits in read_begin for the overlapping invalidations in
 * flight (G8), and remove waits for them (G7).
 *
 * ===========================================================================
 * Protocol (labels: P = publish a start, E = an end, T = tree, A = reader)
 * ===========================================================================
 *
 * invalidate_start (mutex held for P0-P3 only; it never waits for a slot):
 *   P0  if every chunk is full: link a new zeroed chunk (release)
 *   P1  write slot i (RW1-RW4 of lib/rec.h: release stores of the tag)
 *   P2  set bit i in its chunk's busy (release)
 *   P3  state += 1 while inflight < 127, else += 0 (release RMW either way;
 *       every state update is an RMW, so any later value heads a release
 *       sequence containing P3)
 *   P4  release fence: P1-P3 are ordered before the callbacks' stores and
 *       the caller's primary-mapping stores that follow
 *   A6  under the RCU read lock, visit the tree's current version (R1 of
 *       lib/itree.c: acquire, pairs with its T1) and call every overlapping
 *       subscription's callback with the ticket
 * invalidate_end (mutex held):
 *   E1  record end number e in the history (ps__hist_add: H0-H4 of
 *       lib/history.c; its record is a release store)
 *   E2  state += END_ONE, minus 1 while inflight <= 127 (release RMW)
 *   E3  clear slot i's tag (release)
 *   E4  clear bit i in busy (release), then wake waiters
 *   The order E1 < E2 < E3 < E4 is what readers rely on: a reader that sees
 *   the slot free (E3, E4) sees the end counted in state (E2), and one that
 *   sees the count finds the end in the history (E1).
 * insert/remove (mutex held):
 *   T1  the tree publishes its new version (release; T1 of lib/itree.c),
 *       after insert wrote @sub's fields; the replaced nodes are freed
 *       after a grace period
 * readers (no lock, no store):
 *   A1  ps_interval_read_begin: sub->seq (acquire, pairs with S1)
 *   A2  state (acquire, pairs with P3/E2)
 *   A3  per chunk: busy (acquire, pairs with P2/E4), then next (acquire,
 *       pairs with P0)
 *   A4  ps__rec_read (RR1-RR4 of lib/rec.h): a consistent record, or free
 *   A5  ps_notifier_read_retry: acquire fence first (pairs with P4)
 *   A7  ps__hist_query (Q1/Q2 of lib/history.c): an end after seq's that
 *       overlaps the range?
 * callbacks:
 *   S1  ps_interval_set_seq (release), under the user lock
 *
 * Why read_retry must be true (the interleaving Linux draws in
 * mmu_interval_read_begin):
 *
 *   reader                              invalidator
 *   ------                              -----------
 *   seq = ps_interval_read_begin(sub)
 *     A1, A2: nothing in flight
 *                                       ps_notifier_invalidate_start()
 *                                         P1-P4: published
 *                                         callback: lock(user)
 *                                           set_seq(sub, ticket)   (S1)
 *                                           tear down the mapping
 *                                         unlock(user)
 *                                       change the primary mapping
 *   page = lookup(addr)  <- may see the new primary mapping, or the old
 *   lock(user)
 *   ps_interval_read_retry(sub, seq)    [Required: true]
 *
 * The user lock orders the reader's check after S1, so it sees the new
 * sequence and retries. If instead the reader's lock section comes first,
 * it installs a mapping, and the callback, which takes the lock after it,
 * tears it down. Either way no stale mapping survives. And if the callback
 * had already run before read_begin (the invalidation is still in flight),
 * A1 sees S1, so A2 sees P3 (S1 follows P3 in the invalidator), and
 * read_begin waits for the end (G2) instead of returning that sequence.
 *
 * The in-flight field saturates (a start beyond 127 adds 0, an end down
 * from above 127 subtracts nothing), so the readers' test "nothing in
 * flight" stays one load for any number in flight. It is exact where it
 * matters: it is 0 exactly when nothing is in flight, since it is
 * min(inflight, 127) after every update. A state value that A2 may read
 * after S1 comes from P3 or a later update, or from an update before P3 while
 * already saturated: nonzero either way while the invalidation is in flight.
 *
 * The whole-space check has no per-subscription sequence. Its reader:
 *
 *   seq = ps_notifier_read_begin(n)     A2
 *   lookups                            (the invalidator's P4 + primary-mapping
 *                                       stores happen here)
 *   ps_notifier_read_retry(n, seq, a)   A5, A2, then slots (A3, A4) and the
 *                                       history since seq (A2 again, A7)
 *
 * If a lookup saw a primary-mapping store made after some start returned,
 * P4 and A5 synchronise, so A3/A4 see the slot (P0-P2 come before P4) and
 * the state load sees P3 (or later); if the slot is already free, E2 is
 * visible and the history has the end (E1). So every invalidation in flight
 * at any instant since read_begin is found, either in a slot or in the
 * history, and the history keeps every end (not just the last 256) until it
 * forgets one, which it reports (G6). So an answer of true has such an
 * invalidation behind it, or a forgotten end, counted.
 *
 * ===========================================================================
 * Guarantees (cited by tests/test-notifier.c)
 * ===========================================================================
 *
 * G1  No stale mapping: if ps_interval_read_retry() returns false under the
 *     user lock, every invalidation overlapping the subscription either
 *     ended before read_begin returned, or runs its callback after the
 *     reader's lock section (and tears down what was installed in it).
 * G2  read_begin waits only for invalidations that overlap the subscription
 *     and were in flight when it was called; it returns once they ended.
 * G3  No false retries, per subscription: read_retry and check_retry are
 *     true only if the callback of an invalidation overlapping the
 *     subscription ran set_seq after read_begin loaded the sequence.
 * G4  check_retry: true is reliable (as G3); false is a hint.
 * G5  Whole space, soundness: read_retry(seq, range) is true if an
 *     invalidation overlapping the range was in flight at any instant
 *     between read_begin and the call.
 * G6  Whole space, exactness: otherwise it is false, however many invalidations
 *     started or ended since read_begin. The one exception: ends the history
 *     forgot are answered true (counted in conservative_retries): those it
 *     could not keep after a failed allocation, and the oldest once it holds
 *     more than PS__HIST_MAX_RUNS stretches of addresses (the cap on its
 *     memory, lib/history.h: readers within the latest 32,768 ends of
 *     distinct pages stay exact).
 * G7  After ps_interval_remove() returns, no callback runs for the
 *     subscription; it waited only for overlapping invalidations that were
 *     in flight.
 * G8  Insert: invalidations starting after insert returns call the new
 *     subscription; overlapping ones already in flight make its read_begin
 *     wait (G2).
 * G9  -EAGAIN (non-blocking): the invalidation is over and must not be
 *     ended; the refusing callback's successors were not called.
 * G10 A bad range (len == 0, or wrapping) is refused with -EOVERFLOW before
 *     anything is published or called.
 * G11 Any number of invalidations may be in flight, from any threads; a
 *     start never waits for another invalidation to end, so a thread may
 *     hold any number (Linux has no limit either). It fails only when a new
 *     chunk of slots cannot be allocated (-ENOMEM).
 *
 * ===========================================================================
 * Complexity (n subscriptions, k of them hit)
 * ===========================================================================
 *
 *   invalidate_start  O(log n + k) when subscriptions do not overlap each
 *                     other; with overlapping ones a subtree is also entered
 *                     when its starts reach the range and its largest end
 *                     does, without a hit below (as in Linux's augmented
 *                     interval tree); never O(n) unless k is. Plus the
 *                     callbacks, and O(chunks) to find a free slot (one
 *                     load per chunk; one chunk while at most 64 are in
 *                     flight)
 *   invalidate_end    O(chunks + in flight) to find the slot, plus the
 *                     history's add: O(1), and every 256th end a merge,
 *                     amortised O(log m) per end for m runs kept (see
 *                     lib/history.c)
 *   insert, remove    O(log n): a path copy in the tree (lib/itree.c);
 *                     insert also checks for a double insert
 *   read_begin/retry  O(1) with nothing in flight; else O(chunks + in
 *                     flight), plus for the whole-space check the history's
 *                     query: the ends since read_begin while they are among
 *                     the latest 256, else also O(log m) per level (at most
 *                     log2(ends / 256) + 1 levels)
 */
#include <pagestate/notifier.h>

#include "failpoint.h"
#include "fork.h"
#include "history.h"
#include "itree.h"
#include "rcu.h"
#include "rec.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENDS_MASK (UINT64_MAX >> PS_NOTIFIER_ENDS_SHIFT) /* ends, unshifted */
#define INFLIGHT_ONE (UINT64_C(1) << PS_NOTIFIER_INFLIGHT_SHIFT)
#define INFLIGHT_MAX (PS_NOTIFIER_INFLIGHT_MASK >> PS_NOTIFIER_INFLIGHT_SHIFT)
#define CHUNK 64 /* in-flight slots per chunk: one 64-bit busy bitmap */

PS_STATIC_ASSERT(PS_NOTIFIER_ENDS_WIDTH <= 62,
		 "notifier: the history's tags need a spare top bit");

/*
 * In-flight slots, CHUNK per chunk. The first chunk is part of the
 * notifier; more are linked at the end when all are busy (P0) and stay
 * until destroy, so readers follow next without any other protection.
 */
struct chunk {
	PS_ATOMIC(uint64_t) busy;	/* bitmap of the slots in use */
	PS_ATOMIC(struct chunk *) next; /* NULL: the last chunk */
	struct ps__rec slot[CHUNK];	/* {ticket, start, last}; 0 = free */
};

/* One slot. */
struct slotref {
	struct chunk *c;
	unsigned int i;
};

/* --- the notifier --------------------------------------------------------- */

struct ps__notifier_impl {
	pthread_mutex_t lock;
	pthread_cond_t wake;  /* broadcast by an end when waiters != 0 */
	unsigned int waiters; /* under lock */
	uint64_t last_ticket; /* under lock; odd */
	PS_ATOMIC(uint64_t) inflight; /* written under lock; read for stats */
	struct ps__itree tree; /* the subscriptions; written under lock */
	struct chunk slots;    /* the first chunk of in-flight slots */
	struct ps__hist hist;  /* the ended invalidations (lib/history.h) */
	/* Statistics; relaxed counters. */
	PS_ATOMIC(uint64_t) st_invalidations;
	PS_ATOMIC(uint64_t) st_nonblock_failures;
	PS_ATOMIC(uint64_t) st_callbacks;
	PS_ATOMIC(uint64_t) st_read_begin_waits;
	PS_ATOMIC(uint64_t) st_remove_waits;
	PS_ATOMIC(uint64_t) st_conservative;
	PS_ATOMIC(uint64_t) st_subscriptions;
	uint64_t born; /* fork generation at init (lib/fork.h) */
};

static void count(PS_ATOMIC(uint64_t) *c, uint64_t n)
{
	/* Relaxed: a statistic; it orders nothing. */
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static bool bad_range(uint64_t start, uint64_t len)
{
	return len == 0 || start + (len - 1) < start;
}

static bool overlaps(uint64_t s1, uint64_t l1, uint64_t s2, uint64_t l2)
{
	return s1 <= l2 && s2 <= l1;
}

int ps_notifier_init(struct ps_notifier *n)
{
	struct ps__notifier_impl *impl;
	uint64_t born;
	int rc = ps__fork_born(&born);

	if (rc)
		return rc; /* -ECHILD: a child of a plain fork() */
	impl = calloc(1, sizeof(*impl));
	if (!impl)
		return -ENOMEM;
	impl->born = born;
	if (pthread_mutex_init(&impl->lock, NULL)) {
		free(impl);
		return -ENOMEM;
	}
	if (pthread_cond_init(&impl->wake, NULL)) {
		pthread_mutex_destroy(&impl->lock);
		free(impl);
		return -ENOMEM;
	}
	impl->last_ticket = 1;
	ps__itree_init(&impl->tree);
	ps__hist_init(&impl->hist, PS_NOTIFIER_ENDS_WIDTH, 0); /* ends = 0 */
	/* Relaxed: the notifier is not shared yet (publish it as usual). */
	atomic_store_explicit(&n->state, 0, memory_order_relaxed);
	n->impl = impl;
	return 0;
}

int ps_notifier_destroy(struct ps_notifier *n)
{
	struct ps__notifier_impl *impl = n->impl;
	struct chunk *c;
	bool busy;

	if (ps__fork_inherited(impl->born))
		return 0; /* in a child, an inherited notifier is forgotten */
	pthread_mutex_lock(&impl->lock);
	/* Relaxed: under the writers' mutex, which orders every update. */
	busy = ps__itree_count(&impl->tree) ||
	       atomic_load_explicit(&impl->inflight, memory_order_relaxed);
	pthread_mutex_unlock(&impl->lock);
	if (busy)
		return -EBUSY;
	/* Relaxed: no other thread uses @n now (the caller's promise). */
	c = atomic_load_explicit(&impl->slots.next, memory_order_relaxed);
	while (c) {
		/* Relaxed: as above. */
		struct chunk *next = atomic_load_explicit(&c->next,
							  memory_order_relaxed);

		free(c);
		c = next;
	}
	/*
	 * The tree is empty but its node pool lives on from the first
	 * insert; batches still in their grace period keep it until the last
	 * returns (lib/itree-pool.h), so this never waits.
	 */
	ps__itree_destroy(&impl->tree);
	ps__hist_destroy(&impl->hist);
	pthread_cond_destroy(&impl->wake);
	pthread_mutex_destroy(&impl->lock);
	free(impl);
	n->impl = NULL;
	return 0;
}

/* --- in-flight records ---------------------------------------------------- */

/*
 * The largest ticket <= @below among the in-flight invalidations that
 * overlap [start, last], or 0 if there is none. Lock-free (A3, A4); under
 * the mutex the same scan reads a set that cannot change.
 */
static uint64_t inflight_scan(const struct ps__notifier_impl *impl,
			      uint64_t start, uint64_t last, uint64_t below)
{
	const struct chunk *c = &impl->slots;
	uint64_t found = 0;

	while (c) {
		/* A3 - Acquire: pairs with P2/E4, so the slots are visible. */
		uint64_t busy = atomic_load_explicit(&c->busy,
						     memory_order_acquire);

		while (busy) {
			uint64_t s, l;
			uint64_t tag =
				ps__rec_read(&c->slot[__builtin_ctzll(busy)],
					     &s, &l); /* A4 */

			busy &= busy - 1;
			if (tag && tag <= below && tag > found &&
			    overlaps(s, l, start, last))
				found = tag;
		}
		/* A3 - Acquire: pairs with P0; the next chunk is set up. */
		c = atomic_load_explicit(&c->next, memory_order_acquire);
	}
	return found;
}

/*
 * Under lock: a free slot for the invalidation of @start; if every chunk is
 * full, a new chunk is linked at the end (P0). -ENOMEM if it cannot be
 * allocated (or the test build injects that failure: FP_NOTIFIER_SLOT).
 */
static int slot_get(struct ps__notifier_impl *impl, uint64_t start,
		    struct slotref *ref)
{
	struct chunk *c = &impl->slots, *next;

	(void)start; /* read only by the test build's injection */
	if (INJECT(FP_NOTIFIER_SLOT, start, NULL))
		return -ENOMEM;

	for (;;) {
		/* Relaxed: under the mutex, as every writer of the slots. */
		uint64_t busy = atomic_load_explicit(&c->busy,
						     memory_order_relaxed);

		if (~busy) {
			ref->c = c;
			ref->i = (unsigned int)__builtin_ctzll(~busy);
			return 0;
		}
		/* Relaxed: as above. */
		next = atomic_load_explicit(&c->next, memory_order_relaxed);
		if (!next)
			break;
		c = next;
	}
	next = calloc(1, sizeof(*next));
	if (!next)
		return -ENOMEM;
	/* P0 - Release: the zeroed chunk first; pairs with A3's next load. */
	atomic_store_explicit(&c->next, next, memory_order_release);
	ref->c = next;
	ref->i = 0;
	return 0;
}

/* Under lock: wait until no such invalidation is in flight (G2, G7). */
static void wait_overlapping(struct ps__notifier_impl *impl, uint64_t start,
			     uint64_t last, uint64_t max_ticket)
{
	impl->waiters++;
	while (inflight_scan(impl, start, last, max_ticket))
		pthread_cond_wait(&impl->wake, &impl->lock);
	impl->waiters--;
}

/* Under lock: end the invalidation in slot @ref (E1-E4). */
static void finish(struct ps_notifier *n, struct slotref ref)
{
	struct ps__notifier_impl *impl = n->impl;
	/* Relaxed: only lock holders update these. */
	uint64_t state = atomic_load_explicit(&n->state, memory_order_relaxed);
	uint64_t busy = atomic_load_explicit(&ref.c->busy,
					     memory_order_relaxed);
	uint64_t inflight = atomic_load_explicit(&impl->inflight,
						 memory_order_relaxed);
	uint64_t e = ((state >> PS_NOTIFIER_ENDS_SHIFT) + 1) & ENDS_MASK;
	struct ps__rec *slot = &ref.c->slot[ref.i];
	uint64_t start = 0, last = 0;
	uint64_t down = inflight <= INFLIGHT_MAX ? INFLIGHT_ONE : 0;

	(void)ps__rec_read(slot, &start, &last);
	ps__hist_add(&impl->hist, e, start, last); /* E1: the end of number e */
	/*
	 * E2 - Release: E1 first; pairs with A2 (release sequence). The
	 * in-flight field goes down only while it is not saturated.
	 */
	atomic_fetch_add_explicit(&n->state, PS_NOTIFIER_END_ONE - down,
				  memory_order_release);
	/* Relaxed: under the mutex; a statistic for readers. */
	atomic_store_explicit(&impl->inflight, inflight - 1,
			      memory_order_relaxed);
	ps__rec_clear(slot); /* E3: release; E1 and E2 come first */
	/* E4 - Release: E1-E3 first; pairs with A3. */
	atomic_store_explicit(&ref.c->busy, busy & ~(UINT64_C(1) << ref.i),
			      memory_order_release);
	if (impl->waiters)
		pthread_cond_broadcast(&impl->wake);
}

/* --- invalidations -------------------------------------------------------- */

struct walk {
	const struct ps_invalidation *inv;
	uint64_t start, last, ticket;
	uint64_t calls;
	bool refused;
};

/* Call one overlapping subscription (a ps__itree_visit_fn); false = stop. */
static bool walk_one(void *ctx, void *item, uint64_t start, uint64_t last)
{
	struct walk *w = ctx;
	struct ps_interval *sub = item;

	(void)start;
	(void)last;
	w->calls++;
	if (!sub->ops->invalidate(sub, w->inv, w->ticket, sub->priv) &&
	    !ps_invalidation_blockable(w->inv)) {
		w->refused = true;
		return false;
	}
	return true;
}

int ps_notifier_invalidate_start(struct ps_notifier *n, uint64_t start,
				 uint64_t len, enum ps_notifier_event event,
				 unsigned int flags)
{
	struct ps__notifier_impl *impl = n->impl;
	struct ps_invalidation inv = {start, len, event, flags};
	struct walk w = {&inv, start, start + (len - 1), 0, 0, false};
	struct slotref ref;
	uint64_t busy, inflight;

	if (bad_range(start, len))
		return -EOVERFLOW;
	if (flags & ~PS_NOTIFIER_FLAGS_ALL)
		return -EINVAL;

	PS__FORK_CHECK(impl->born, "notifier");
	pthread_mutex_lock(&impl->lock);
	if (slot_get(impl, start, &ref)) { /* never waits: no limit (G11) */
		pthread_mutex_unlock(&impl->lock);
		return -ENOMEM;
	}
	impl->last_ticket += 2;
	w.ticket = impl->last_ticket;
	/* P1: RW1-RW4 of lib/rec.h. */
	ps__rec_write(&ref.c->slot[ref.i], w.ticket, w.start, w.last);
	/* Relaxed: under the mutex, as every writer of the slots. */
	busy = atomic_load_explicit(&ref.c->busy, memory_order_relaxed);
	/* P2 - Release: the slot first; pairs with A3. */
	atomic_store_explicit(&ref.c->busy, busy | (UINT64_C(1) << ref.i),
			      memory_order_release);
	/* Relaxed: only lock holders write it. */
	inflight = atomic_load_explicit(&impl->inflight, memory_order_relaxed);
	/*
	 * P3 - Release: P1, P2 first; pairs with A2 (release sequence). An
	 * RMW even when it adds 0 (the in-flight field is saturated), so
	 * every start and end stays in the word's release sequence.
	 */
	atomic_fetch_add_explicit(&n->state,
				  inflight < INFLIGHT_MAX ? INFLIGHT_ONE : 0,
				  memory_order_release);
	/* Relaxed: under the mutex; a statistic for readers. */
	atomic_store_explicit(&impl->inflight, inflight + 1,
			      memory_order_relaxed);
	pthread_mutex_unlock(&impl->lock);
	/*
	 * P4 - Release fence: P1-P3 before every later store of this thread,
	 * the callbacks' teardown and the caller's primary-mapping change.
	 * Pairs with A5 in ps_notifier_read_retry_range().
	 */
	atomic_thread_fence(memory_order_release);

	ps__rcu_read_lock();
	/* A6: the tree's current version (R1 of lib/itree.c, pairs with T1). */
	(void)ps__itree_visit(&impl->tree, w.start, w.last, walk_one, &w);
	ps__rcu_read_unlock();

	count(&impl->st_callbacks, w.calls);
	if (w.refused) {
		/* G9: the invalidation is over; the caller must not end it. */
		pthread_mutex_lock(&impl->lock);
		finish(n, ref);
		pthread_mutex_unlock(&impl->lock);
		count(&impl->st_nonblock_failures, 1);
		return -EAGAIN;
	}
	count(&impl->st_invalidations, 1);
	return 0;
}

int ps_notifier_invalidate_end(struct ps_notifier *n, uint64_t start,
			       uint64_t len)
{
	struct ps__notifier_impl *impl = n->impl;
	struct slotref found = {NULL, 0};
	uint64_t best = UINT64_MAX;

	if (bad_range(start, len))
		return -EOVERFLOW;
	PS__FORK_CHECK(impl->born, "notifier");
	pthread_mutex_lock(&impl->lock);
	/* The oldest in-flight record of exactly this range. */
	for (struct chunk *c = &impl->slots; c;
	     /* Relaxed: under the mutex, as every writer of the slots. */
	     c = atomic_load_explicit(&c->next, memory_order_relaxed)) {
		/* Relaxed: as above. */
		uint64_t busy = atomic_load_explicit(&c->busy,
						     memory_order_relaxed);

		while (busy) {
			unsigned int i = (unsigned int)__builtin_ctzll(busy);
			uint64_t s = 0, l = 0;
			uint64_t tag = ps__rec_read(&c->slot[i], &s, &l);

			busy &= busy - 1;
			if (tag && s == start && l == start + (len - 1) &&
			    tag < best) {
				best = tag;
				found = (struct slotref){c, i};
			}
		}
	}
	if (found.c)
		finish(n, found);
	pthread_mutex_unlock(&impl->lock);
	return found.c ? 0 : -ENOENT;
}

/* --- readers' slow paths -------------------------------------------------- */

uint64_t ps_interval_read_begin_slow(struct ps_interval *sub, uint64_t seq)
{
	struct ps__notifier_impl *impl = sub->notifier->impl;
	uint64_t max_ticket = inflight_scan(impl, sub->start, sub->last,
					    UINT64_MAX);
	uint64_t now;

	if (!max_ticket)
		return seq; /* only other ranges are in flight */

	count(&impl->st_read_begin_waits, 1);
	PS__FORK_CHECK(impl->born, "notifier");
	pthread_mutex_lock(&impl->lock);
	wait_overlapping(impl, sub->start, sub->last, max_ticket);
	pthread_mutex_unlock(&impl->lock);

	/*
	 * The invalidations we waited for have ended. If no other overlapping
	 * one started meanwhile, a fresh sequence saves the caller a doomed
	 * round. Otherwise return the old one: once the new invalidation's
	 * callback runs, read_retry reports it (G1), and read_begin never
	 * waits twice (G2).
	 */
	/* A1 - Acquire: as in ps_interval_read_begin(). */
	now = atomic_load_explicit(&sub->seq, memory_order_acquire);
	return inflight_scan(impl, sub->start, sub->last, UINT64_MAX) ? seq
								      : now;
}

bool ps_notifier_retry_slow(const struct ps_notifier *n, uint64_t seq,
			    uint64_t start, uint64_t last)
{
	struct ps__notifier_impl *impl = n->impl;
	uint64_t state;

	/* In flight now, including since before read_begin (G5). */
	if (inflight_scan(impl, start, last, UINT64_MAX))
		return true;
	/*
	 * A2 - Acquire, after the slot scan: an invalidation whose slot that
	 * scan saw free has its end counted here (E2 before E3/E4), and its
	 * record in the history (E1 before E2).
	 */
	state = atomic_load_explicit(&n->state, memory_order_acquire);
	/* A7: ended since read_begin, however many did (G6). */
	switch (ps__hist_query(&impl->hist, seq >> PS_NOTIFIER_ENDS_SHIFT,
			       state >> PS_NOTIFIER_ENDS_SHIFT, start, last)) {
	case PS__HIST_NO:
		return false;
	case PS__HIST_YES:
		return true;
	default: /* forgotten: a failed allocation, or the cap (G6) */
		count(&impl->st_conservative, 1);
		return true;
	}
}

/* --- subscriptions -------------------------------------------------------- */

int ps_interval_insert(struct ps_interval *sub, struct ps_notifier *n,
		       uint64_t start, uint64_t len,
		       const struct ps_interval_ops *ops, void *priv)
{
	struct ps__notifier_impl *impl;
	struct ps_interval old;
	uint64_t seq;
	int rc;

	if (bad_range(start, len))
		return -EOVERFLOW;
	if (!n || !ops || !ops->invalidate)
		return -EINVAL;
	impl = n->impl;

	PS__FORK_CHECK(impl->born, "notifier");
	pthread_mutex_lock(&impl->lock);
	if (ps__itree_contains(&impl->tree, start, sub)) {
		pthread_mutex_unlock(&impl->lock);
		return -EEXIST;
	}
	/*
	 * The fields go first: T1 in ps__itree_insert() publishes them with
	 * the tree. They are put back if it fails (nothing changes on error).
	 */
	old.notifier = sub->notifier;
	old.start = sub->start;
	old.last = sub->last;
	old.ops = sub->ops;
	old.priv = sub->priv;
	sub->notifier = n;
	sub->start = start;
	sub->last = start + (len - 1);
	sub->ops = ops;
	sub->priv = priv;
	/* Relaxed: @sub is not inserted; no reader can see it yet. */
	seq = atomic_load_explicit(&sub->seq, memory_order_relaxed);
	/*
	 * Relaxed: published with the node by T1. Any ticket issued later is
	 * larger, so no later callback can set this same value (G3).
	 */
	atomic_store_explicit(&sub->seq, impl->last_ticket,
			      memory_order_relaxed);
	rc = ps__itree_insert(&impl->tree, start, sub->last, sub); /* T1 */
	if (rc) {
		sub->notifier = old.notifier;
		sub->start = old.start;
		sub->last = old.last;
		sub->ops = old.ops;
		sub->priv = old.priv;
		/* Relaxed: @sub was never published. */
		atomic_store_explicit(&sub->seq, seq, memory_order_relaxed);
		pthread_mutex_unlock(&impl->lock);
		return rc; /* -ENOMEM */
	}
	pthread_mutex_unlock(&impl->lock);
	count(&impl->st_subscriptions, 1);
	return 0;
}

void ps_interval_remove(struct ps_interval *sub)
{
	struct ps_notifier *n = sub->notifier;
	struct ps__notifier_impl *impl;
	int rc;

	if (!n)
		return;
	impl = n->impl;
	PS__FORK_CHECK(impl->born, "notifier");
	for (;;) {
		pthread_mutex_lock(&impl->lock);
		rc = ps__itree_remove(&impl->tree, sub->start, sub); /* T1 */
		if (rc != -ENOMEM)
			break;
		/* Out of memory: release everything and wait for some. */
		pthread_mutex_unlock(&impl->lock);
		ps__rcu_barrier(); /* frees what earlier updates retired */
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	if (rc == 0) {
		count(&impl->st_subscriptions, UINT64_MAX); /* minus one */
		/*
		 * G7: invalidations published before T1 may have loaded the old
		 * version and may still call @sub. Wait for those that overlap
		 * it (tickets <= last_ticket); later ones cannot see it.
		 */
		if (inflight_scan(impl, sub->start, sub->last,
				  impl->last_ticket)) {
			count(&impl->st_remove_waits, 1);
			wait_overlapping(impl, sub->start, sub->last,
					 impl->last_ticket);
		}
	}
	pthread_mutex_unlock(&impl->lock); /* -ENOENT: not inserted here */
	sub->notifier = NULL;
}

/* --- statistics ----------------------------------------------------------- */

static uint64_t stat(const PS_ATOMIC(uint64_t) *c)
{
	/* Relaxed: a statistic; not one snapshot (see notifier.h). */
	return atomic_load_explicit(c, memory_order_relaxed);
}

void ps_notifier_get_stats(const struct ps_notifier *n,
			   struct ps_notifier_stats *st)
{
	const struct ps__notifier_impl *impl = n->impl;

	st->invalidations = stat(&impl->st_invalidations);
	st->nonblock_failures = stat(&impl->st_nonblock_failures);
	st->callbacks = stat(&impl->st_callbacks);
	st->read_begin_waits = stat(&impl->st_read_begin_waits);
	st->remove_waits = stat(&impl->st_remove_waits);
	st->conservative_retries = stat(&impl->st_conservative);
	st->subscriptions = stat(&impl->st_subscriptions);
	st->inflight = stat(&impl->inflight);
}
