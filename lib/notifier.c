// SPDX-License-Identifier: MIT
/*
 * lib/notifier.c - interval invalidation notifiers (see notifier.h).
 *
 * ===========================================================================
 * State
 * ===========================================================================
 *
 * Per notifier:
 *   state (public word)  ends (57 bits) | inflight (7 bits), see notifier.h
 *   slot[64]             one record per in-flight invalidation:
 *                        {tag = its ticket, start, last}; tag 0 = free
 *   busy                 bitmap of the slots in use
 *   log[256]             the last 256 ended invalidations: entry e % 256 =
 *                        {tag = e | LOG_VALID, start, last} for the e-th end
 *   root                 RCU-protected copy-on-write B+-tree of the
 *                        subscriptions
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
 * invalidate_start (mutex held for P1-P3 only):
 *   P1  write slot i (rec_write: release fence, fields, release store of tag)
 *   P2  set bit i in busy (release)
 *   P3  state += 1 (release RMW; every state update is an RMW, so any later
 *       value heads a release sequence containing P3)
 *   P4  release fence: P1-P3 are ordered before the callbacks' stores and
 *       the caller's primary-mapping stores that follow
 *   A6  root (acquire, pairs with T1), then walk it under the RCU read lock
 *       and call every overlapping subscription's callback with the ticket
 * invalidate_end (mutex held):
 *   E1  write log entry for end number e (rec_write, as P1)
 *   E2  state += END_ONE - 1 (release RMW)
 *   E3  clear slot i's tag (release)
 *   E4  clear bit i in busy (release), then wake waiters
 *   The order E1 < E2 < E3 < E4 is what readers rely on: a reader that sees
 *   the slot free (E3, E4) sees the end counted in state (E2), and one that
 *   sees the count sees the log entry (E1).
 * insert/remove (mutex held):
 *   T1  root = the new snapshot (release); the old nodes are freed after a
 *       grace period (ps__rcu_call)
 * readers (no lock, no store):
 *   A1  ps_interval_read_begin: sub->seq (acquire, pairs with S1)
 *   A2  state (acquire, pairs with P3/E2)
 *   A3  busy (acquire, pairs with P2/E4)
 *   A4  rec_read: tag (acquire, pairs with the tag store of rec_write),
 *       fields, acquire fence (pairs with rec_write's release fence),
 *       tag again: equal tags = a consistent record
 *   A5  ps_notifier_read_retry: acquire fence first (pairs with P4)
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
 * The whole-space check has no per-subscription sequence. Its reader:
 *
 *   seq = ps_notifier_read_begin(n)     A2
 *   lookups                            (the invalidator's P4 + primary-mapping
 *                                       stores happen here)
 *   ps_notifier_read_retry(n, seq, a)   A5, A2, then slots (A3, A4) and the
 *                                       log since seq (A2 again, A4)
 *
 * If a lookup saw a primary-mapping store made after some start returned,
 * P4 and A5 synchronise, so the state load sees P3 (or later), and then A3/A4
 * see the slot; if the slot is already free, E2 is visible and the log scan
 * finds the end. So every invalidation in flight at any instant since
 * read_begin is found, either in a slot or in the log.
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
 * G6  Whole space, exactness: otherwise it is false, except when more than
 *     PS_NOTIFIER_LOG_SIZE invalidations ended since read_begin (counted in
 *     conservative_retries).
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
 *
 * ===========================================================================
 * Complexity (n subscriptions, k of them hit)
 * ===========================================================================
 *
 *   invalidate_start  O(log n + k) when subscriptions do not overlap each
 *                     other; with overlapping ones a subtree is also entered
 *                     when its starts reach the range and its largest end
 *                     does, without a hit below (as in Linux's augmented
 *                     interval tree); never O(n) unless k is. Plus O(1)
 *                     bookkeeping and the callbacks
 *   invalidate_end    O(PS_NOTIFIER_MAX_INFLIGHT) to find the slot, O(1) else
 *   insert, remove    O(log n): a path copy of O(log n) tree nodes (16
 *                     entries each), freed a grace period later in one
 *                     batch; insert also checks for a double insert
 *   read_begin/retry  O(1) with nothing in flight; else O(in-flight slots)
 *                     plus O(ends since read_begin) <= O(LOG_SIZE) for the
 *                     whole-space check
 *
 * Why a copy-on-write B+-tree: invalidators search it without any lock
 * while inserts and removes go on. A path copy replaces O(log n) nodes per
 * update (a copy-on-write sorted array would copy all n: 100,000 inserts
 * would copy 5 * 10^9 entries), and nothing is modified in place, so a
 * reader walking an old root sees a consistent, immutable tree until a grace
 * period after it is replaced. Nodes of 16 entries keep the search to a few
 * cache lines per level: with 100,000 subscriptions a binary tree (a treap
 * was the first version) costs one cache miss per level, ~23 levels, and
 * its invalidations were 7.5x slower than with 1,000; this tree is 5 levels.
 */
#include <pagestate/notifier.h>

#include "rcu.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENDS_MASK (UINT64_MAX >> PS_NOTIFIER_ENDS_SHIFT) /* ends, unshifted */
#define LOG_VALID (UINT64_C(1) << 63) /* a log tag: end number | LOG_VALID */
#define ALL_SLOTS                                                 \
	(PS_NOTIFIER_MAX_INFLIGHT == 64                           \
		 ? UINT64_MAX                                     \
		 : (UINT64_C(1) << PS_NOTIFIER_MAX_INFLIGHT) - 1)

PS_STATIC_ASSERT(PS_NOTIFIER_ENDS_WIDTH < 63,
		 "notifier: log tags need a spare top bit");

/* --- records: a slot or a log entry -------------------------------------- */

/*
 * A record is written only under the mutex and read without it. tag == 0
 * means "free or being rewritten". Readers check the tag before and after
 * the fields (A4): a small seqlock per record whose "odd" value is 0, so a
 * reader never waits for a writer: at worst it re-reads after an update.
 */
struct rec {
	PS_ATOMIC(uint64_t) tag;
	PS_ATOMIC(uint64_t) start;
	PS_ATOMIC(uint64_t) last;
};

static void rec_write(struct rec *r, uint64_t tag, uint64_t start,
		      uint64_t last)
{
	/* Relaxed: the fence below orders it before the fields. */
	atomic_store_explicit(&r->tag, 0, memory_order_relaxed);
	/* Release fence: 0 before the new fields; pairs with A4's fence. */
	atomic_thread_fence(memory_order_release);
	/* Relaxed: published by the release store of the tag below. */
	atomic_store_explicit(&r->start, start, memory_order_relaxed);
	atomic_store_explicit(&r->last, last, memory_order_relaxed);
	/* Release: publishes the fields; pairs with A4's acquire of the tag. */
	atomic_store_explicit(&r->tag, tag, memory_order_release);
}

static void rec_clear(struct rec *r)
{
	/* E3 - Release: E1 and E2 come first; pairs with A4's acquire. */
	atomic_store_explicit(&r->tag, 0, memory_order_release);
}

/* A4: a consistent (tag, start, last); tag 0 = free. Lock-free. */
static uint64_t rec_read(const struct rec *r, uint64_t *start, uint64_t *last)
{
	for (;;) {
		/* A4 - Acquire: pairs with the tag stores of rec_write/_clear. */
		uint64_t tag = atomic_load_explicit(&r->tag,
						    memory_order_acquire);

		if (!tag)
			return 0;
		/* Relaxed: validated by the tag re-read below. */
		*start = atomic_load_explicit(&r->start, memory_order_relaxed);
		*last = atomic_load_explicit(&r->last, memory_order_relaxed);
		/* Acquire fence: fields before the re-read; pairs rec_write. */
		atomic_thread_fence(memory_order_acquire);
		/* Relaxed: ordered by the fence above. */
		if (atomic_load_explicit(&r->tag, memory_order_relaxed) == tag)
			return tag;
	}
}

/* --- the tree ------------------------------------------------------------- */

/*
 * A copy-on-write B+-tree of subscriptions ordered by start, searched
 * without locks under RCU. A node never changes once published (T1): an
 * update copies the nodes on its path (and splits full ones), and the copies
 * are published by one release store of the root. Only gc_next is written
 * after publication, by the writer that retires the node; readers never
 * read it.
 *
 * Entry i of a node: start[i] is a subscription's start (leaf) or the
 * smallest start in child i (internal); maxl[i] is the subscription's last
 * (leaf) or the largest last in child i; pmax[i] = max(maxl[0..i]), a prefix
 * maximum, so it never decreases. To find the entries overlapping
 * [s, l]: the ones with start <= l are a prefix (binary search on start),
 * the ones before the first pmax >= s all end before s (binary search on
 * pmax), and in between each entry is tested. For subscriptions that do not
 * overlap each other that is O(log B) per level and O(log n + hits) overall.
 *
 * Deletion does not merge underfull nodes; it only frees empty ones and
 * collapses a root with one child. Depth therefore stays bounded by the
 * largest size the tree ever had: log_{B/2} of it.
 */
#define TREE_B 16

struct node {
	_Alignas(64) uint32_t n; /* entries in use; nodes start a cache line */
	bool leaf;
	struct node *gc_next; /* writer-only: fresh or retired list */
	uint64_t start[TREE_B];
	uint64_t pmax[TREE_B];
	uint64_t maxl[TREE_B];
	void *ptr[TREE_B]; /* struct ps_interval * (leaf) or child node */
};

/* aligned_alloc() wants a size that is a multiple of the alignment. */
PS_STATIC_ASSERT(sizeof(struct node) % 64 == 0, "tree nodes fill cache lines");

/* Nodes replaced by one update, freed together after a grace period. */
struct retired {
	struct ps__rcu_head rcu;
	struct node *list;
};

/* One update in progress: what it allocated and what it replaced. */
struct tctx {
	struct node *fresh;   /* allocated by this update (freed on failure) */
	struct node *retired; /* replaced by this update */
	bool failed;	      /* an allocation failed: discard the result */
	bool found;	      /* remove: the subscription was in the tree */
};

/* First index in a[0..n) with a[i] > x. */
static uint32_t upper_bound(const uint64_t *a, uint32_t n, uint64_t x)
{
	uint32_t lo = 0;

	while (n) {
		uint32_t half = n / 2;

		if (a[lo + half] <= x) {
			lo += half + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	return lo;
}

/* First index in a[0..n) with a[i] >= x. */
static uint32_t lower_bound(const uint64_t *a, uint32_t n, uint64_t x)
{
	return x ? upper_bound(a, n, x - 1) : 0;
}

static void fix(struct node *t)
{
	uint64_t m = 0;

	for (uint32_t i = 0; i < t->n; i++) {
		if (t->maxl[i] > m)
			m = t->maxl[i];
		t->pmax[i] = m;
	}
}

/* The subtree's largest last (its entry's maxl in the parent). */
static uint64_t node_max(const struct node *t)
{
	return t->pmax[t->n - 1];
}

static struct node *node_new(struct tctx *c, bool leaf)
{
	struct node *n = aligned_alloc(64, sizeof(*n));

	if (!n) {
		c->failed = true;
		return NULL;
	}
	n->n = 0;
	n->leaf = leaf;
	n->gc_next = c->fresh;
	c->fresh = n;
	return n;
}

static void retire(struct tctx *c, struct node *old)
{
	old->gc_next = c->retired;
	c->retired = old;
}

/* A fresh copy of @old, which this update replaces. */
static struct node *node_copy(struct tctx *c, struct node *old)
{
	struct node *n = node_new(c, old->leaf);

	if (!n)
		return NULL;
	n->n = old->n;
	memcpy(n->start, old->start, sizeof(n->start));
	memcpy(n->maxl, old->maxl, sizeof(n->maxl));
	memcpy(n->ptr, old->ptr, sizeof(n->ptr));
	retire(c, old);
	return n;
}

static void entry_set(struct node *t, uint32_t i, uint64_t start,
		      uint64_t maxl, void *ptr)
{
	t->start[i] = start;
	t->maxl[i] = maxl;
	t->ptr[i] = ptr;
}

static void entry_move(struct node *to, uint32_t ti, const struct node *from,
		       uint32_t fi, uint32_t count)
{
	memmove(&to->start[ti], &from->start[fi], count * sizeof(uint64_t));
	memmove(&to->maxl[ti], &from->maxl[fi], count * sizeof(uint64_t));
	memmove(&to->ptr[ti], &from->ptr[fi], count * sizeof(void *));
}

/*
 * Put an entry at @pos of the fresh node @t. If @t is full, split it and
 * return the new right sibling (also fresh). Appending at the right end
 * splits off a single entry, so ascending inserts fill nodes completely.
 */
static struct node *entry_insert(struct tctx *c, struct node *t, uint32_t pos,
				 uint64_t start, uint64_t maxl, void *ptr)
{
	struct node *r, *dst;
	uint32_t keep;

	if (t->n < TREE_B) {
		entry_move(t, pos + 1, t, pos, t->n - pos);
		entry_set(t, pos, start, maxl, ptr);
		t->n++;
		fix(t);
		return NULL;
	}
	r = node_new(c, t->leaf);
	if (!r)
		return NULL;
	keep = pos == TREE_B ? TREE_B : TREE_B / 2;
	r->n = TREE_B - keep;
	entry_move(r, 0, t, keep, r->n);
	t->n = keep;
	dst = pos <= keep && pos != TREE_B ? t : r;
	if (dst == r)
		pos -= keep;
	entry_move(dst, pos + 1, dst, pos, dst->n - pos);
	entry_set(dst, pos, start, maxl, ptr);
	dst->n++;
	fix(t);
	fix(r);
	return r;
}

/*
 * Insert (@start, @last, @sub) below @t. Returns @t's replacement and, if
 * it split, the new right sibling in *@right.
 */
static struct node *tr_insert(struct tctx *c, struct node *t, uint64_t start,
			      uint64_t last, struct ps_interval *sub,
			      struct node **right)
{
	struct node *n = node_copy(c, t), *child, *split;
	uint32_t pos;

	*right = NULL;
	if (!n)
		return t;
	pos = upper_bound(t->start, t->n, start);
	if (t->leaf) {
		*right = entry_insert(c, n, pos, start, last, sub);
		return n;
	}
	pos = pos ? pos - 1 : 0; /* the child whose range takes start */
	child = tr_insert(c, t->ptr[pos], start, last, sub, &split);
	if (c->failed)
		return t;
	entry_set(n, pos, child->start[0], node_max(child), child);
	fix(n);
	if (split)
		*right = entry_insert(c, n, pos + 1, split->start[0],
				      node_max(split), split);
	return n;
}

/* The root split in two: a new root above both halves. */
static struct node *grow_root(struct tctx *c, struct node *left,
			      struct node *right)
{
	struct node *r = node_new(c, false);

	if (!r)
		return left;
	entry_set(r, 0, left->start[0], node_max(left), left);
	entry_set(r, 1, right->start[0], node_max(right), right);
	r->n = 2;
	fix(r);
	return r;
}

/* Is @sub in the tree at @start? (for -EEXIST; the writer's view) */
static bool tr_contains(const struct node *t, uint64_t start,
			const struct ps_interval *sub)
{
	uint32_t lo, hi;

	if (!t)
		return false;
	lo = lower_bound(t->start, t->n, start);
	hi = upper_bound(t->start, t->n, start);
	if (t->leaf) {
		for (uint32_t i = lo; i < hi; i++)
			if (t->ptr[i] == sub)
				return true;
		return false;
	}
	/* Equal starts may span children: from the one before lo to hi. */
	for (uint32_t i = lo ? lo - 1 : 0; i < hi; i++)
		if (tr_contains(t->ptr[i], start, sub))
			return true;
	return false;
}

/*
 * Remove @sub (at @start) below @t. Returns @t's replacement, NULL if it
 * became empty, or @t itself if @sub is not there (c->found stays false).
 */
static struct node *tr_remove(struct tctx *c, struct node *t, uint64_t start,
			      const struct ps_interval *sub)
{
	uint32_t lo = lower_bound(t->start, t->n, start);
	uint32_t hi = upper_bound(t->start, t->n, start);
	struct node *n, *child = NULL;
	uint32_t i;

	if (!t->leaf)
		lo = lo ? lo - 1 : 0;
	for (i = lo; i < hi && !c->found; i++) {
		if (t->leaf) {
			c->found = t->ptr[i] == sub;
		} else {
			child = tr_remove(c, t->ptr[i], start, sub);
			if (c->failed)
				return t;
		}
	}
	if (!c->found)
		return t;
	i--;
	if (t->n == 1 && !child) {
		retire(c, t);
		return NULL;
	}
	n = node_copy(c, t);
	if (!n)
		return t;
	if (child) {
		entry_set(n, i, child->start[0], node_max(child), child);
	} else {
		entry_move(n, i, n, i + 1, n->n - i - 1);
		n->n--;
	}
	fix(n);
	return n;
}

static void free_list(struct node *n)
{
	while (n) {
		struct node *next = n->gc_next;

		free(n);
		n = next;
	}
}

static void free_retired(struct ps__rcu_head *h)
{
	struct retired *r =
		(struct retired *)((char *)h - offsetof(struct retired, rcu));

	free_list(r->list);
	free(r);
}

/*
 * Hand the nodes an update replaced to liburcu. @batch was allocated before
 * the update, so this cannot fail (and never waits for a grace period, so
 * it is safe inside a callback's RCU read-side section).
 */
static void retire_commit(struct tctx *c, struct retired *batch)
{
	if (!c->retired) {
		free(batch);
		return;
	}
	batch->list = c->retired;
	ps__rcu_call(&batch->rcu, free_retired);
}

/* --- the notifier ------------------------------------------------------------ */

struct ps__notifier_impl {
	pthread_mutex_t lock;
	pthread_cond_t wake;	/* broadcast by an end when waiters != 0 */
	unsigned int waiters;	/* under lock */
	uint64_t last_ticket;	/* under lock; odd */
	PS_ATOMIC(struct node *) root;
	PS_ATOMIC(uint64_t) busy;
	struct rec slot[PS_NOTIFIER_MAX_INFLIGHT];
	struct rec log[PS_NOTIFIER_LOG_SIZE];
	/* Statistics; relaxed counters. */
	PS_ATOMIC(uint64_t) st_invalidations;
	PS_ATOMIC(uint64_t) st_nonblock_failures;
	PS_ATOMIC(uint64_t) st_callbacks;
	PS_ATOMIC(uint64_t) st_read_begin_waits;
	PS_ATOMIC(uint64_t) st_remove_waits;
	PS_ATOMIC(uint64_t) st_conservative;
	PS_ATOMIC(uint64_t) st_subscriptions;
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
	struct ps__notifier_impl *impl = calloc(1, sizeof(*impl));

	if (!impl)
		return -ENOMEM;
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
	/* Relaxed: the notifier is not shared yet (publish it as usual). */
	atomic_store_explicit(&n->state, 0, memory_order_relaxed);
	n->impl = impl;
	return 0;
}

int ps_notifier_destroy(struct ps_notifier *n)
{
	struct ps__notifier_impl *impl = n->impl;
	bool busy;

	pthread_mutex_lock(&impl->lock);
	/* Relaxed: under the writers' mutex, which orders every update. */
	busy = atomic_load_explicit(&impl->root, memory_order_relaxed) ||
	       atomic_load_explicit(&impl->busy, memory_order_relaxed);
	pthread_mutex_unlock(&impl->lock);
	if (busy)
		return -EBUSY;
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
	/* A3 - Acquire: pairs with P2/E4, so the slots below are visible. */
	uint64_t busy = atomic_load_explicit(&impl->busy, memory_order_acquire);
	uint64_t found = 0;

	while (busy) {
		uint64_t s, l;
		uint64_t tag = rec_read(&impl->slot[__builtin_ctzll(busy)], &s,
					&l);

		busy &= busy - 1;
		if (tag && tag <= below && tag > found &&
		    overlaps(s, l, start, last))
			found = tag;
	}
	return found;
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

/* Under lock: end the invalidation in slot @i (E1-E4). */
static void finish(struct ps_notifier *n, unsigned int i)
{
	struct ps__notifier_impl *impl = n->impl;
	/* Relaxed: only lock holders update these. */
	uint64_t state = atomic_load_explicit(&n->state, memory_order_relaxed);
	uint64_t busy = atomic_load_explicit(&impl->busy, memory_order_relaxed);
	uint64_t e = ((state >> PS_NOTIFIER_ENDS_SHIFT) + 1) & ENDS_MASK;
	struct rec *slot = &impl->slot[i];
	uint64_t start, last;

	(void)rec_read(slot, &start, &last);
	rec_write(&impl->log[e & (PS_NOTIFIER_LOG_SIZE - 1)], e | LOG_VALID,
		  start, last); /* E1: the log entry of end e */
	/* E2 - Release: E1 first; pairs with A2 (release sequence). */
	atomic_fetch_add_explicit(&n->state, PS_NOTIFIER_END_ONE - 1,
				  memory_order_release);
	rec_clear(slot); /* E3 */
	/* E4 - Release: E1-E3 first; pairs with A3. */
	atomic_store_explicit(&impl->busy, busy & ~(UINT64_C(1) << i),
			      memory_order_release);
	if (impl->waiters)
		pthread_cond_broadcast(&impl->wake);
}

/* --- invalidations -------------------------------------------------------------- */

struct walk {
	const struct ps_invalidation *inv;
	uint64_t start, last, ticket;
	uint64_t calls;
	bool refused;
};

/* Call every subscription below @t overlapping [start, last]; false = stop. */
static bool walk(const struct node *t, struct walk *w)
{
	uint32_t hi = upper_bound(t->start, t->n, w->last);

	for (uint32_t i = lower_bound(t->pmax, hi, w->start); i < hi; i++) {
		struct ps_interval *sub;

		if (t->maxl[i] < w->start)
			continue;
		if (!t->leaf) {
			if (!walk(t->ptr[i], w))
				return false;
			continue;
		}
		sub = t->ptr[i];
		w->calls++;
		if (!sub->ops->invalidate(sub, w->inv, w->ticket, sub->priv) &&
		    !ps_invalidation_blockable(w->inv)) {
			w->refused = true;
			return false;
		}
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
	const struct node *root;
	uint64_t busy;
	unsigned int i;

	if (bad_range(start, len))
		return -EOVERFLOW;
	if (flags & ~PS_NOTIFIER_FLAGS_ALL)
		return -EINVAL;

	pthread_mutex_lock(&impl->lock);
	for (;;) {
		/* Relaxed: under the mutex. */
		busy = atomic_load_explicit(&impl->busy, memory_order_relaxed);
		if (busy != ALL_SLOTS)
			break;
		if (flags & PS_NOTIFIER_NONBLOCK) {
			pthread_mutex_unlock(&impl->lock);
			count(&impl->st_nonblock_failures, 1);
			return -EAGAIN;
		}
		impl->waiters++;
		pthread_cond_wait(&impl->wake, &impl->lock);
		impl->waiters--;
	}
	i = (unsigned int)__builtin_ctzll(~busy);
	impl->last_ticket += 2;
	w.ticket = impl->last_ticket;
	rec_write(&impl->slot[i], w.ticket, w.start, w.last); /* P1 */
	/* P2 - Release: the slot first; pairs with A3. */
	atomic_store_explicit(&impl->busy, busy | (UINT64_C(1) << i),
			      memory_order_release);
	/* P3 - Release: P1, P2 first; pairs with A2 (release sequence). */
	atomic_fetch_add_explicit(&n->state, 1, memory_order_release);
	pthread_mutex_unlock(&impl->lock);
	/*
	 * P4 - Release fence: P1-P3 before every later store of this thread,
	 * the callbacks' teardown and the caller's primary-mapping change.
	 * Pairs with A5 in ps_notifier_read_retry_range().
	 */
	atomic_thread_fence(memory_order_release);

	ps__rcu_read_lock();
	/* A6 - Acquire: pairs with T1; the snapshot's nodes are visible. */
	root = atomic_load_explicit(&impl->root, memory_order_acquire);
	if (root)
		walk(root, &w);
	ps__rcu_read_unlock();

	count(&impl->st_callbacks, w.calls);
	if (w.refused) {
		/* G9: the invalidation is over; the caller must not end it. */
		pthread_mutex_lock(&impl->lock);
		finish(n, i);
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
	uint64_t busy, best = UINT64_MAX;
	unsigned int found = PS_NOTIFIER_MAX_INFLIGHT;

	if (bad_range(start, len))
		return -EOVERFLOW;
	pthread_mutex_lock(&impl->lock);
	/* Relaxed: under the mutex, as every writer of the slots. */
	busy = atomic_load_explicit(&impl->busy, memory_order_relaxed);
	while (busy) { /* the oldest in-flight record of exactly this range */
		unsigned int i = (unsigned int)__builtin_ctzll(busy);
		uint64_t s = 0, l = 0, tag = rec_read(&impl->slot[i], &s, &l);

		busy &= busy - 1;
		if (tag && s == start && l == start + (len - 1) && tag < best) {
			best = tag;
			found = i;
		}
	}
	if (found < PS_NOTIFIER_MAX_INFLIGHT)
		finish(n, found);
	pthread_mutex_unlock(&impl->lock);
	return found < PS_NOTIFIER_MAX_INFLIGHT ? 0 : -ENOENT;
}

/* --- readers' slow paths ------------------------------------------------------ */

uint64_t ps_interval_read_begin_slow(struct ps_interval *sub, uint64_t seq)
{
	struct ps__notifier_impl *impl = sub->notifier->impl;
	uint64_t max_ticket = inflight_scan(impl, sub->start, sub->last,
					    UINT64_MAX);
	uint64_t now;

	if (!max_ticket)
		return seq; /* only other ranges are in flight */

	count(&impl->st_read_begin_waits, 1);
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

static bool conservative(struct ps__notifier_impl *impl)
{
	count(&impl->st_conservative, 1);
	return true;
}

bool ps_notifier_retry_slow(const struct ps_notifier *n, uint64_t seq,
			    uint64_t start, uint64_t last)
{
	struct ps__notifier_impl *impl = n->impl;
	uint64_t state, e1, ends;

	/* In flight now, including since before read_begin (G5). */
	if (inflight_scan(impl, start, last, UINT64_MAX))
		return true;
	/*
	 * A2 - Acquire, after the slot scan: an invalidation whose slot that
	 * scan saw free has its end counted here (E2 before E3/E4).
	 */
	state = atomic_load_explicit(&n->state, memory_order_acquire);
	e1 = state >> PS_NOTIFIER_ENDS_SHIFT;
	ends = (e1 - (seq >> PS_NOTIFIER_ENDS_SHIFT)) & ENDS_MASK;
	if (ends > PS_NOTIFIER_LOG_SIZE)
		return conservative(impl); /* the log wrapped (G6) */
	for (uint64_t k = 0; k < ends; k++) {
		uint64_t e = (e1 - k) & ENDS_MASK, s, l;
		const struct rec *r = &impl->log[e & (PS_NOTIFIER_LOG_SIZE - 1)];

		if (rec_read(r, &s, &l) != (e | LOG_VALID))
			return conservative(impl); /* overwritten meanwhile */
		if (overlaps(s, l, start, last))
			return true;
	}
	return false;
}

/* --- subscriptions ------------------------------------------------------------- */

int ps_interval_insert(struct ps_interval *sub, struct ps_notifier *n,
		       uint64_t start, uint64_t len,
		       const struct ps_interval_ops *ops, void *priv)
{
	struct ps__notifier_impl *impl;
	struct tctx c = {NULL, NULL, false, false};
	struct retired *batch;
	struct node *root, *split;

	if (bad_range(start, len))
		return -EOVERFLOW;
	if (!n || !ops || !ops->invalidate)
		return -EINVAL;
	impl = n->impl;
	batch = malloc(sizeof(*batch));
	if (!batch)
		return -ENOMEM;

	pthread_mutex_lock(&impl->lock);
	/* Relaxed: under the mutex; root only changes under it. */
	root = atomic_load_explicit(&impl->root, memory_order_relaxed);
	if (tr_contains(root, start, sub)) {
		c.found = true;
	} else if (!root) {
		root = node_new(&c, true);
		if (root) {
			entry_set(root, 0, start, start + (len - 1), sub);
			root->n = 1;
			fix(root);
		}
	} else {
		root = tr_insert(&c, root, start, start + (len - 1), sub,
				 &split);
		if (split && !c.failed)
			root = grow_root(&c, root, split);
	}
	if (c.failed || c.found) {
		pthread_mutex_unlock(&impl->lock);
		free_list(c.fresh);
		free(batch);
		return c.found ? -EEXIST : -ENOMEM;
	}
	sub->notifier = n;
	sub->start = start;
	sub->last = start + (len - 1);
	sub->ops = ops;
	sub->priv = priv;
	/*
	 * Relaxed: published with the node by T1. Any ticket issued later is
	 * larger, so no later callback can set this same value (G3).
	 */
	atomic_store_explicit(&sub->seq, impl->last_ticket,
			      memory_order_relaxed);
	/* T1 - Release: the nodes and @sub's fields first; pairs with A6. */
	atomic_store_explicit(&impl->root, root, memory_order_release);
	pthread_mutex_unlock(&impl->lock);
	count(&impl->st_subscriptions, 1);
	retire_commit(&c, batch);
	return 0;
}

void ps_interval_remove(struct ps_interval *sub)
{
	struct ps_notifier *n = sub->notifier;
	struct ps__notifier_impl *impl;
	struct retired *batch;
	struct node *root;
	struct tctx c;

	if (!n)
		return;
	impl = n->impl;
	for (;;) {
		batch = malloc(sizeof(*batch));
		c = (struct tctx){NULL, NULL, false, false};
		pthread_mutex_lock(&impl->lock);
		/* Relaxed: under the mutex; root only changes under it. */
		root = atomic_load_explicit(&impl->root, memory_order_relaxed);
		if (!root)
			break; /* not inserted: an empty tree */
		if (batch) {
			root = tr_remove(&c, root, sub->start, sub);
			if (!c.failed)
				break;
		}
		/* Out of memory: release everything and wait for some. */
		pthread_mutex_unlock(&impl->lock);
		free_list(c.fresh);
		free(batch);
		ps__rcu_barrier(); /* frees what earlier updates retired */
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	if (c.found) {
		/* A root left with one child gives way to it. */
		while (root && !root->leaf && root->n == 1) {
			retire(&c, root); /* fresh: freed after a grace period */
			root = root->ptr[0];
		}
		/* T1 - Release: the new snapshot; pairs with A6. */
		atomic_store_explicit(&impl->root, root, memory_order_release);
		count(&impl->st_subscriptions, UINT64_MAX); /* minus one */
		/*
		 * G7: invalidations published before T1 may have loaded the old
		 * root and may still call @sub. Wait for those that overlap it
		 * (tickets <= last_ticket); later ones cannot see it.
		 */
		if (inflight_scan(impl, sub->start, sub->last,
				  impl->last_ticket)) {
			count(&impl->st_remove_waits, 1);
			wait_overlapping(impl, sub->start, sub->last,
					 impl->last_ticket);
		}
	}
	pthread_mutex_unlock(&impl->lock); /* not found: nothing was copied */
	retire_commit(&c, batch);
	sub->notifier = NULL;
}

/* --- statistics ---------------------------------------------------------------- */

static uint64_t stat(const PS_ATOMIC(uint64_t) *c)
{
	/* Relaxed: a statistic; the set is not one snapshot (see notifier.h). */
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
	st->inflight = stat(&n->state) & PS_NOTIFIER_INFLIGHT_MASK;
}
