/* SPDX-License-Identifier: MIT */
/*
 * lib/itree-pool.h - the interval tree's node memory: a per-tree pool whose
 * nodes come back for reuse a grace period after an update replaced them
 * (internal, not installed).
 *
 * Why a pool: with 100,000 subscriptions the tree's nodes fill several MiB
 * that a search touches at random, one node per level. From malloc they are
 * spread over 4 KiB pages and a search misses the TLB at almost every level;
 * here they sit in chunks of 2 MiB, aligned and advised for transparent huge
 * pages, and a search of the whole tree needs a few TLB entries. Reuse keeps
 * the set of chunks the size of the live tree plus what one grace period
 * retires, where malloc would scatter every update's copies further.
 *
 *   writers   ps__itree_pool_get(), _put(), _retire(): serialised by the
 *             tree's caller (the notifier's mutex).
 *   liburcu   the grace-period callback of _retire() gives its nodes back,
 *             in liburcu's call_rcu thread, concurrently with the writer
 *             (P1/P2 in lib/itree-pool.c).
 *
 * Objects are @size bytes (a multiple of 64), 64-byte aligned. The pool keeps
 * its own links in each object at @link_off (a pointer), and a retired batch's
 * head in PS__ITREE_POOL_HEAD bytes at @head_off of its first object (8-byte
 * aligned): fields that readers never read. Progress: get is blocking only
 * through malloc when every chunk is in use (a new chunk), else O(1); put
 * and retire are O(1) and wait-free; the callback is lock-free (one CAS
 * loop, shared with nothing else).
 */
#ifndef PS_LIB_ITREE_POOL_H
#define PS_LIB_ITREE_POOL_H

#include <pagestate/compiler.h>

#include <stddef.h>
#include <stdint.h>

struct ps__itree_pool;

/* The bytes an object keeps at head_off for a retired batch's head. */
#define PS__ITREE_POOL_HEAD 32

/* A pool of @size-byte objects; NULL if out of memory. */
struct ps__itree_pool *ps__itree_pool_new(size_t size, size_t link_off,
					  size_t head_off);

/*
 * The owner is done with @p: its memory is freed once no retired batch is
 * pending (here, or by the last grace-period callback). Objects still handed
 * out are freed with it, so no reader may use any of them any more, except
 * those of batches still pending.
 */
void ps__itree_pool_release(struct ps__itree_pool *p);

/* An object (contents undefined), or NULL if out of memory. Writer. */
void *ps__itree_pool_get(struct ps__itree_pool *p);

/* Give back @obj, which no reader can have seen. Writer. */
void ps__itree_pool_put(struct ps__itree_pool *p, void *obj);

/*
 * @first and the objects linked from it (at @link_off, NULL-terminated) may
 * still be read by readers: reuse them after a grace period. Writer. Never
 * fails and never waits (a call_rcu).
 */
void ps__itree_pool_retire(struct ps__itree_pool *p, void *first);

/* Counts for tests. */
struct ps__itree_pool_stats {
	uint64_t chunks;  /* allocated */
	uint64_t objects; /* carved from the chunks so far */
	uint64_t reused;  /* handed out again after a put or a grace period */
};

/* Writer (or a quiescent pool). */
void ps__itree_pool_stats(const struct ps__itree_pool *p,
			  struct ps__itree_pool_stats *st);

#endif /* PS_LIB_ITREE_POOL_H */
