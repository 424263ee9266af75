// SPDX-License-Identifier: MIT
/*
 * lib/itree-pool.c - the interval tree's node pool (see itree-pool.h).
 *
 * ===========================================================================
 * State
 * ===========================================================================
 *
 *   chunks     every chunk allocated, until the pool is freed; the first
 *              holds 16 objects, each next one twice as many, up to 2 MiB
 *              (then 2 MiB each, 2 MiB-aligned, madvise(MADV_HUGEPAGE)).
 *              Objects are carved from the newest chunk in order (bump).
 *   free       writer-only: objects ready for reuse, linked at link_off
 *   returned   objects whose grace period ended, pushed by liburcu's
 *              call_rcu thread (a stack, linked at link_off); the writer
 *              takes all of it at once when free runs dry
 *   refs       1 for the owner, plus 1 per retired batch not yet returned;
 *              whoever drops the last frees the pool
 *
 * ===========================================================================
 * Protocol
 * ===========================================================================
 *
 *   P1  callback (liburcu's thread, after the batch's grace period): link
 *       the batch's last object to returned's head and CAS returned to the
 *       batch's first (release; pairs with P2). Only the callbacks push;
 *       the writer takes the whole stack, so a pushed head is never
 *       popped alone and no ABA arises.
 *   P2  writer, free empty: returned = NULL by exchange (acquire; pairs
 *       with P1): the links P1 wrote, and through liburcu's grace period
 *       the readers' last reads of those objects, come before the writer
 *       writes them again.
 *   P3  refs: + 1 when a batch is retired (relaxed: the batch's own
 *       ps__rcu_call publishes it); - 1 by each callback after P1 and by
 *       release (acq_rel: every use of the pool by the others comes before
 *       the free by the last one).
 */
#include "itree-pool.h"

#include "rcu.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define HUGE_CHUNK ((size_t)2 << 20) /* one transparent huge page */
#define FIRST_OBJECTS 16
#define CHUNK_HEAD 64 /* the chunk's header line; objects start after it */

struct chunk {
	struct chunk *next;
};

/* A retired batch: at head_off of its first object. */
struct batch {
	struct ps__rcu_head rcu;
	struct ps__itree_pool *pool;
};

PS_STATIC_ASSERT(sizeof(struct batch) <= PS__ITREE_POOL_HEAD,
		 "itree pool: a batch's head fits the room objects keep");

struct ps__itree_pool {
	PS_ATOMIC(void *) returned; /* P1/P2 */
	PS_ATOMIC(uint64_t) refs;   /* P3 */
	size_t size, link_off, head_off;
	struct chunk *chunks; /* writer-only, from here down */
	char *bump, *bump_end;
	size_t next_bytes; /* the next chunk's size */
	void *free;
	struct ps__itree_pool_stats st;
};

static void **link_of(const struct ps__itree_pool *p, void *obj)
{
	return (void **)((char *)obj + p->link_off);
}

struct ps__itree_pool *ps__itree_pool_new(size_t size, size_t link_off,
					  size_t head_off)
{
	struct ps__itree_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->size = size;
	p->link_off = link_off;
	p->head_off = head_off;
	p->next_bytes = CHUNK_HEAD + FIRST_OBJECTS * size;
	/* Relaxed: @p is not shared yet. */
	atomic_store_explicit(&p->returned, NULL, memory_order_relaxed);
	/* Relaxed: as above. */
	atomic_store_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

static void pool_free(struct ps__itree_pool *p)
{
	struct chunk *c = p->chunks;

	while (c) {
		struct chunk *next = c->next;

		free(c);
		c = next;
	}
	free(p);
}

/* P3: drop one reference; the last one frees the pool. */
static void pool_put_ref(struct ps__itree_pool *p)
{
	/* Acq_rel: the others' uses of @p before the last one's free. */
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		pool_free(p);
}

void ps__itree_pool_release(struct ps__itree_pool *p)
{
	if (p)
		pool_put_ref(p);
}

/* A new chunk to carve from; false if out of memory. */
static bool chunk_add(struct ps__itree_pool *p)
{
	size_t bytes = p->next_bytes;
	struct chunk *c;

	if (bytes >= HUGE_CHUNK) {
		bytes = HUGE_CHUNK;
		if (posix_memalign((void **)&c, HUGE_CHUNK, bytes))
			return false;
#ifdef MADV_HUGEPAGE
		(void)madvise(c, bytes, MADV_HUGEPAGE); /* a hint */
#endif
	} else {
		c = aligned_alloc(64, bytes);
		if (!c)
			return false;
		p->next_bytes = 2 * bytes - CHUNK_HEAD;
	}
	c->next = p->chunks;
	p->chunks = c;
	p->bump = (char *)c + CHUNK_HEAD;
	p->bump_end = (char *)c + bytes;
	POISON(p->bump, (size_t)(p->bump_end - p->bump));
	p->st.chunks++;
	return true;
}

void *ps__itree_pool_get(struct ps__itree_pool *p)
{
	void *obj;

	if (!p->free)
		/* P2 - Acquire: pairs with P1; the returned ones are ours. */
		p->free = atomic_exchange_explicit(&p->returned, NULL,
						   memory_order_acquire);
	if (p->free) {
		obj = p->free;
		UNPOISON(obj, p->size);
		p->free = *link_of(p, obj);
		p->st.reused++;
		return obj;
	}
	if ((size_t)(p->bump_end - p->bump) < p->size && !chunk_add(p))
		return NULL;
	obj = p->bump;
	p->bump += p->size;
	UNPOISON(obj, p->size);
	p->st.objects++;
	return obj;
}

/* @obj is free: under ASan, every byte but its link is off limits. */
static void park(const struct ps__itree_pool *p, void *obj)
{
	POISON(obj, p->size);
	UNPOISON(link_of(p, obj), sizeof(void *));
}

void ps__itree_pool_put(struct ps__itree_pool *p, void *obj)
{
	*link_of(p, obj) = p->free;
	park(p, obj);
	p->free = obj;
}

/* P1: a batch's grace period is over; its objects go back. */
static void pool_returned(struct ps__rcu_head *h)
{
	struct batch *b = (struct batch *)h;
	struct ps__itree_pool *p = b->pool;
	void *first = (char *)b - p->head_off, *last = first, *head;

	while (*link_of(p, last)) {
		void *next = *link_of(p, last);

		park(p, last);
		last = next;
	}
	park(p, last);
	/* Relaxed: the CAS below publishes what we link. */
	head = atomic_load_explicit(&p->returned, memory_order_relaxed);
	do
		*link_of(p, last) = head;
	/* P1 - Release: the links first; pairs with P2. Relaxed on failure. */
	while (!atomic_compare_exchange_weak_explicit(&p->returned, &head,
						      first,
						      memory_order_release,
						      memory_order_relaxed));
	pool_put_ref(p);
}

void ps__itree_pool_retire(struct ps__itree_pool *p, void *first)
{
	struct batch *b = (struct batch *)((char *)first + p->head_off);

	b->pool = p;
	/* P3 - Relaxed: ps__rcu_call() hands the batch to the callback. */
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	ps__rcu_call(&b->rcu, pool_returned);
}

void ps__itree_pool_stats(const struct ps__itree_pool *p,
			  struct ps__itree_pool_stats *st)
{
	*st = p->st;
}
