/* SPDX-License-Identifier: MIT */
/*
 * pagestate/seq.h - a sequence counter (seqcount): lockless readers retry if
 * a writer ran while they read. Header-only.
 *
 * ---------------------------------------------------------------------------
 * The counter
 * ---------------------------------------------------------------------------
 *
 *   even  no write in progress: data read now may be consistent
 *   odd   a writer is between ps_seq_write_begin() and ps_seq_write_end()
 *
 * Each write section adds 2, so a reader that saw value v at read_begin and
 * v again at read_retry knows no write section began or ended in between.
 * The counter is 64 bits: a reader cannot be fooled by a wrap, which would
 * need 2^63 write sections while it reads.
 *
 * Writers are single, or serialised by the caller (a mutex, or the one
 * thread that owns the data). Readers never write, and never block a writer.
 * The pattern:
 *
 *	do {
 *		seq = ps_seq_read_begin(&s);
 *		a = atomic_load_explicit(&d->a, memory_order_relaxed);
 *		b = atomic_load_explicit(&d->b, memory_order_relaxed);
 *	} while (ps_seq_read_retry(&s, seq));
 *	use(a, b);	// a consistent pair
 *
 *	ps_seq_write_begin(&s);		// under the writers' lock
 *	atomic_store_explicit(&d->a, x, memory_order_relaxed);
 *	atomic_store_explicit(&d->b, y, memory_order_relaxed);
 *	ps_seq_write_end(&s);
 *
 * Reader contract (as DPDK's rte_seqcount and Linux's seqcount state it):
 *   - data inside a read section may be torn or stale until read_retry
 *     returns false: copy it, do not act on it (no pointer chasing into
 *     memory the writer may free, no division by a value read);
 *   - data shared with a writer is read and written with atomic operations
 *     (relaxed is enough: ps_seq provides the ordering). A reader races with
 *     the writer by design, and C11 makes a race on plain data undefined.
 *
 * ---------------------------------------------------------------------------
 * Memory ordering
 * ---------------------------------------------------------------------------
 *
 *   R1  ps_seq_read_begin: acquire load of the counter; pairs with W2.
 *   R2  ps_seq_read_retry: acquire fence, then a relaxed load; pairs with W1.
 *   W1  ps_seq_write_begin: relaxed store of the odd value, then a release
 *       fence: the odd value is ordered before the section's data stores.
 *   W2  ps_seq_write_end: release store of the next even value.
 *
 * A reader that sees the value W2 wrote sees every store of that write
 * section and of all earlier ones; a reader whose data load saw a store of a
 * section re-loads that section's odd value or a later one, and retries. Under
 * ThreadSanitizer (PS_TSAN), which does not model fences, W1 is an acq_rel
 * fetch-and-add and R2 an acq_rel fetch-and-add of zero, so a reader stores to
 * the counter; in every other build readers never store.
 *
 * Linux's seqcount_t (include/linux/seqlock.h) differs: its counter is an
 * unsigned int, its data are plain loads and stores ordered by smp_rmb() and
 * smp_wmb(), and it can name the writers' lock for lockdep
 * (seqcount_LOCKNAME_t). Why, and how the C11 mapping works: docs/notifier.md,
 * section "The sequence counter".
 *
 * ---------------------------------------------------------------------------
 * Progress
 * ---------------------------------------------------------------------------
 *
 *   wait-free  write_begin, write_end, read_retry
 *   blocking   read_begin spins (with a CPU pause) while a write section is
 *              open: readers wait for the writer, as with any seqlock, and
 *              a reader can be starved by back-to-back writers. Keep write
 *              sections short and never sleep inside one.
 */
#ifndef PAGESTATE_SEQ_H
#define PAGESTATE_SEQ_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

/**
 * struct ps_seq - a sequence counter (8 bytes).
 * @seq: the counter, even or odd as the overview of pagestate/seq.h says;
 *	use it only through the functions of this header.
 *
 * Zero-filled memory is a valid counter with no write in progress.
 */
struct ps_seq {
	PS_ATOMIC(uint64_t) seq;
};

PS_STATIC_ASSERT(sizeof(struct ps_seq) == 8, "struct ps_seq is 8 bytes");

/* Static initialiser: no write in progress. */
/* clang-format off */
#define PS_SEQ_INIT {PS_ATOMIC_INIT(0)}
/* clang-format on */

/* Cold but inlinable: GCC refuses noinline on an inline function. */
#if defined(__GNUC__) || defined(__clang__)
#define PS__SEQ_COLD __attribute__((cold))
#else
#define PS__SEQ_COLD
#endif

/* A CPU hint for spin-wait loops (internal). */
static inline void ps__seq_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	/* Relaxed: a compiler barrier, so the loop re-reads the counter. */
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/**
 * ps_seq_init() - reset a counter to 0 (no write in progress).
 * @s: the counter.
 *
 * Context: no reader or writer may use the counter meanwhile.
 * Ordering: relaxed store; publish the counter by the usual means.
 * Progress: wait-free (one store).
 */
static inline void ps_seq_init(struct ps_seq *s)
{
	/* Relaxed: nobody else may use the counter yet (see Context). */
	atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
}

/*
 * The wait of ps_seq_read_begin() for an open write section. A separate
 * cold function, so that the common path is laid out straight: no taken
 * branch per read section (ck_sequence's inline spin loop costs one).
 */
static inline PS__SEQ_COLD uint64_t ps__seq_read_wait(const struct ps_seq *s)
{
	uint64_t v;

	do {
		ps__seq_relax();
		/* R1 - Acquire: as in ps_seq_read_begin(). */
		v = atomic_load_explicit(&s->seq, memory_order_acquire);
	} while (v & 1);
	return v;
}

/**
 * ps_seq_read_begin() - start a read section.
 * @s: the counter.
 *
 * Waits while a write section is open, then returns the (even) counter.
 * Copy the data with atomic loads, then ask ps_seq_read_retry().
 * Context: any thread, except a writer inside its own write section (it
 * would wait for itself forever).
 * Ordering: acquire (R1), pairs with the release store in ps_seq_write_end()
 * (W2).
 * Progress: wait-free with no writer; spins while a write section is open.
 * Return: the value to hand to ps_seq_read_retry().
 */
static inline uint64_t ps_seq_read_begin(const struct ps_seq *s)
{
	/* R1 - Acquire: pairs with W2 in ps_seq_write_end(). */
	uint64_t v = atomic_load_explicit(&s->seq, memory_order_acquire);

	if (PS_UNLIKELY(v & 1))
		v = ps__seq_read_wait(s);
	return v;
}

/**
 * ps_seq_read_retry() - end a read section: must it be repeated?
 * @s: the counter.
 * @start: what ps_seq_read_begin() returned.
 *
 * Context: any thread, after reading the data with atomic loads.
 * Ordering: acquire fence before a relaxed load (R2), pairs with the release
 * fence in ps_seq_write_begin() (W1). Under ThreadSanitizer: an acq_rel add
 * of zero (see the overview of pagestate/seq.h).
 * Progress: wait-free.
 * Return: true if a write section began or ended since @start was read: the
 * data may be inconsistent, read again. False: the data read in between is a
 * consistent snapshot.
 */
static inline PS_MUST_CHECK bool ps_seq_read_retry(const struct ps_seq *s,
						   uint64_t start)
{
#if PS_TSAN
	/*
	 * R2 (TSan) - Acq_rel: a read-don't-modify-write that TSan models;
	 * pairs with the acq_rel add in ps_seq_write_begin(). Adding zero
	 * changes nothing, hence the cast away from const.
	 */
	return atomic_fetch_add_explicit(
		       (PS_ATOMIC(uint64_t) *)(uintptr_t)&s->seq, 0,
		       memory_order_acq_rel) != start;
#else
	/* R2 - Acquire fence: data loads stay before the re-load; pairs W1. */
	atomic_thread_fence(memory_order_acquire);
	/* Relaxed: ordered by the fence just above. */
	return atomic_load_explicit(&s->seq, memory_order_relaxed) != start;
#endif
}

/**
 * ps_seq_write_begin() - open a write section (the counter becomes odd).
 * @s: the counter.
 *
 * Context: the only writer, or the holder of the writers' lock. Write
 * sections do not nest.
 * Ordering: the odd value is ordered before every later store of this thread
 * (release fence W1; pairs with R2 in ps_seq_read_retry()). Under
 * ThreadSanitizer: an acq_rel fetch-and-add.
 * Progress: wait-free.
 */
static inline void ps_seq_write_begin(struct ps_seq *s)
{
#if PS_TSAN
	/* W1 (TSan) - Acq_rel: pairs with the add of zero in read_retry. */
	atomic_fetch_add_explicit(&s->seq, 1, memory_order_acq_rel);
#else
	/* Relaxed: only writers store, and they are serialised (Context). */
	uint64_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);

	/* Relaxed: the fence below orders it before the data stores. */
	atomic_store_explicit(&s->seq, v + 1, memory_order_relaxed);
	/* W1 - Release fence: odd value before the data; pairs with R2. */
	atomic_thread_fence(memory_order_release);
#endif
}

/**
 * ps_seq_write_end() - close a write section (the counter becomes even).
 * @s: the counter, in a write section opened by this thread.
 *
 * Context: the writer that opened the section, still holding the writers'
 * lock if there is one.
 * Ordering: release (W2): every store of the section happens before a
 * reader's ps_seq_read_begin() that returns the new value (pairs with R1).
 * Progress: wait-free.
 */
static inline void ps_seq_write_end(struct ps_seq *s)
{
	/* Relaxed: only the writer stores the counter (see write_begin). */
	uint64_t v = atomic_load_explicit(&s->seq, memory_order_relaxed);

	/* W2 - Release: publishes the section's stores; pairs with R1. */
	atomic_store_explicit(&s->seq, v + 1, memory_order_release);
}

/**
 * ps_seq_is_writing() - is a write section open right now? (a snapshot)
 * @s: the counter.
 *
 * For assertions and statistics, not for synchronisation.
 * Context: any thread.
 * Ordering: relaxed.
 * Progress: wait-free.
 * Return: true if the counter was odd at the load.
 */
static inline bool ps_seq_is_writing(const struct ps_seq *s)
{
	/* Relaxed: an instantaneous answer that orders nothing. */
	return (atomic_load_explicit(&s->seq, memory_order_relaxed) & 1) != 0;
}

PS_END_DECLS

#endif /* PAGESTATE_SEQ_H */
