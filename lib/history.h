/* SPDX-License-Identifier: MIT */
/*
 * lib/history.h - which addresses the ended invalidations covered, by end
 * number (internal, not installed): what makes the notifier's whole-space
 * check exact however many invalidations ended since read_begin.
 *
 * Ends are numbered 1, 2, 3, ... by the writer (the notifier numbers them in
 * its state word, modulo 2^PS_NOTIFIER_ENDS_WIDTH). The question a reader asks:
 * did an end numbered after e0 cover an address of [start, last]? Every end up
 * to e1, the latest the reader knows of, counts; later ones, concurrent with
 * the question, may or may not. The answer is exact whatever e1 - e0 is, except
 * for ends forgotten: after a failed allocation the ends the writer could not
 * keep, and beyond the cap on memory the oldest (see Memory). A question
 * reaching back to a forgotten end answers PS__HIST_FORGOTTEN.
 *
 *   writer    ps__hist_add(): serialised by the caller (the notifier's
 *             mutex). O(1), plus every PS__HIST_LOG ends a merge into the
 *             sorted levels: amortised O(log m) per end for m runs kept
 *             (one end in about m / 32 merges 32 levels of the highest
 *             tier, O(m)).
 *   readers   ps__hist_query(): lock-free, any thread, concurrently with the
 *             writer; no lock, no store to shared memory (an RCU read-side
 *             section of lib/rcu.h when the question reaches past the ring).
 *
 * Memory: the ring, plus one run per stretch of addresses whose latest end
 * differs from its neighbours' (a later end covering earlier ones replaces
 * them), 24 bytes each, at most max_runs (PS__HIST_MAX_RUNS: 1.5 MiB) after
 * every merge. Old stretches are kept while they fit, since a reader's e0 can
 * be arbitrarily old and nothing tells the writer which ones are; past the
 * cap, a merge drops the runs of the oldest ends down to half of it, and
 * those ends are forgotten. Ends of distinct pages leave one run each, so
 * readers whose e0 is among the latest 32,768 such ends keep exact answers,
 * and the history costs at most about 3 * 1.5 MiB with the arrays a merge
 * replaces, however many pages the address space has (without the cap it
 * grew by 24 bytes per page ever invalidated).
 *
 * The log format, the levels and the protocol are private to lib/history.c.
 */
#ifndef PS_LIB_HISTORY_H
#define PS_LIB_HISTORY_H

#include <pagestate/compiler.h>

#include "rec.h"

#include <stddef.h>
#include <stdint.h>

#define PS__HIST_LOG 256 /* the ring of the latest ends (a power of two) */
#define PS__HIST_MAX_RUNS 65536 /* the cap on runs kept (see Memory) */
#define PS__HIST_FANIN 32 /* arrays of one tier merged into one of the next */

struct ps__hist_ver;

/* The history. Embed it; ps__hist_init() before use. */
struct ps__hist {
	PS_ATOMIC(struct ps__hist_ver *) ver; /* the merged levels (RCU) */
	PS_ATOMIC(uint64_t) logbase;	      /* the ring holds (logbase, e] */
	PS_ATOMIC(uint64_t) lost;	      /* ends <= lost: may be lost */
	uint64_t mask;			      /* end numbers are mod mask + 1 */
	uint64_t last_end;		      /* writer-only: the latest end */
	uint64_t forgotten;		      /* writer-only: ends forgotten */
	uint64_t max_runs; /* writer-only: the cap (>= 4 * PS__HIST_LOG);
			    * tests lower it */
	/* The allocator of merges: malloc. Tests replace it to fail. */
	void *(*alloc)(size_t size);
	void *scratch; /* writer-only: a merge's working space, kept */
	struct ps__rec log[PS__HIST_LOG]; /* end e: {e | valid, start, last} */
};

/* A reader's answer. */
enum ps__hist_answer {
	PS__HIST_NO,	    /* no end after e0 covered the range */
	PS__HIST_YES,	    /* one did */
	PS__HIST_FORGOTTEN, /* unknown: it would need forgotten ends */
};

/*
 * An empty history whose end numbers count modulo 2^@width (@width <= 62), the
 * next end being number @base + 1. Before it is shared. Allocates nothing.
 */
void ps__hist_init(struct ps__hist *h, unsigned int width, uint64_t base);

/* Free it all now. No reader or writer may run (the caller's promise). */
void ps__hist_destroy(struct ps__hist *h);

/*
 * Record end number @e (the previous one plus 1, modulo 2^width) of the
 * range [start, last]. Writer. Never fails: if a merge cannot allocate,
 * the ends it would have kept are forgotten (see ps__hist_query()). Call it
 * before publishing @e to readers (the notifier's state word): it stores
 * the record with release semantics, and a reader that learns e1 from a
 * later acquire finds every end up to e1.
 */
void ps__hist_add(struct ps__hist *h, uint64_t e, uint64_t start,
		  uint64_t last);

/*
 * Did an end numbered after @e0 cover an address of [start, last]? @e1 is the
 * latest end the caller knows of: a number it learnt after ps__hist_add(e1)
 * returned (see there); e0 <= e1, and e1 - e0 less than half the number
 * space. Reader: lock-free, any thread; it retries only when the writer merged
 * the ring meanwhile. O(log m) per level searched plus the runs in range, and
 * O(e1 - e0) (at most PS__HIST_LOG) records of the ring.
 * Return: PS__HIST_YES if an end in (e0, e1] covered the range, and maybe
 * (not necessarily) if only a later one did; PS__HIST_NO if none after e0
 * did; PS__HIST_FORGOTTEN if the answer would need ends forgotten after a
 * failed allocation. PS__HIST_YES also if @e0 is after @e1 (misuse).
 */
enum ps__hist_answer ps__hist_query(const struct ps__hist *h, uint64_t e0,
				    uint64_t e1, uint64_t start, uint64_t last);

/* The shape of the merged levels (for tests). */
struct ps__hist_shape {
	unsigned int levels;
	uint64_t runs;	 /* in all levels */
	uint64_t merged; /* ends merged into them (the weights' sum) */
};

/*
 * Check the invariants of lib/history.c (runs sorted, disjoint, joined where
 * they touch with one stamp; each level's newest stamp; each level older than
 * the one before it; tiers rising, fewer than PS__HIST_FANIN of each) and
 * describe the shape, for tests. Writer, or a quiescent history. O(m).
 * Return: 0 with *@shape filled in, or -EUCLEAN if an invariant is broken.
 */
int ps__hist_check(const struct ps__hist *h, struct ps__hist_shape *shape);

/* Ends forgotten so far (writer, or a quiescent history). */
static inline uint64_t ps__hist_forgotten(const struct ps__hist *h)
{
	return h->forgotten;
}

#endif /* PS_LIB_HISTORY_H */
