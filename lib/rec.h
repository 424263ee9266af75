/* SPDX-License-Identifier: MIT */
/*
 * lib/rec.h - a record of three words {tag, start, last} written by one
 * writer at a time (under the caller's lock) and read without any lock
 * (internal, not installed). Used by the notifier's in-flight slots and by
 * the ring of ended invalidations (lib/history.c).
 *
 * tag == 0 means "free, or being rewritten"; a live record has a tag the
 * writer never reuses while readers may hold the old one (a ticket, an end
 * number with a valid bit). A small seqlock whose "odd" value is 0, so a
 * reader never waits for a writer: at worst it re-reads after an update.
 *
 *   RW1  tag = 0 (release: what the writer did before, such as publishing
 *        where the record's old contents went, is visible to a reader that
 *        sees the 0)
 *   RW2  release fence: the 0 before the new fields
 *   RW3  start, last (relaxed; published by RW4)
 *   RW4  tag = the new tag (release)
 *   RR1  tag (acquire; pairs with RW1, RW4 and ps__rec_clear())
 *   RR2  start, last (relaxed)
 *   RR3  acquire fence (pairs with RW2: fields that a rewrite changed come
 *        with its 0 or its new tag)
 *   RR4  tag again (relaxed, ordered by RR3): equal to RR1 = the fields
 *        belong to that tag
 */
#ifndef PS_LIB_REC_H
#define PS_LIB_REC_H

#include <pagestate/compiler.h>

#include <stdint.h>

struct ps__rec {
	PS_ATOMIC(uint64_t) tag;
	PS_ATOMIC(uint64_t) start;
	PS_ATOMIC(uint64_t) last;
};

/* Write a record (RW1-RW4). The caller's lock serialises writers. */
static inline void ps__rec_write(struct ps__rec *r, uint64_t tag,
				 uint64_t start, uint64_t last)
{
	/* RW1 - Release: the writer's earlier stores first; pairs with RR1. */
	atomic_store_explicit(&r->tag, 0, memory_order_release);
	/* RW2 - Release fence: the 0 before the fields; pairs with RR3. */
	atomic_thread_fence(memory_order_release);
	/* RW3 - Relaxed: published by the release store of the tag below. */
	atomic_store_explicit(&r->start, start, memory_order_relaxed);
	atomic_store_explicit(&r->last, last, memory_order_relaxed);
	/* RW4 - Release: publishes the fields; pairs with RR1. */
	atomic_store_explicit(&r->tag, tag, memory_order_release);
}

/* Free a record: its tag becomes 0. */
static inline void ps__rec_clear(struct ps__rec *r)
{
	/* Release: the writer's earlier stores first; pairs with RR1. */
	atomic_store_explicit(&r->tag, 0, memory_order_release);
}

/*
 * A consistent (tag, start, last), RR1-RR4; returns the tag, 0 for a free
 * record (then *@start and *@last are not set). Lock-free: it reads again
 * only when a writer rewrote the record meanwhile.
 */
static inline uint64_t ps__rec_read(const struct ps__rec *r, uint64_t *start,
				    uint64_t *last)
{
	for (;;) {
		/* RR1 - Acquire: pairs with the tag stores of the writer. */
		uint64_t tag = atomic_load_explicit(&r->tag,
						    memory_order_acquire);

		if (!tag)
			return 0;
		/* RR2 - Relaxed: validated by the tag re-read below. */
		*start = atomic_load_explicit(&r->start, memory_order_relaxed);
		*last = atomic_load_explicit(&r->last, memory_order_relaxed);
		/* RR3 - Acquire fence: the fields first; pairs with RW2. */
		atomic_thread_fence(memory_order_acquire);
		/* RR4 - Relaxed: ordered by the fence above. */
		if (atomic_load_explicit(&r->tag, memory_order_relaxed) == tag)
			return tag;
	}
}

#endif /* PS_LIB_REC_H */
