/* SPDX-License-Identifier: MIT */
/*
 * lib/rcu.h - the library's one use of liburcu (internal, not installed).
 *
 * Flavour: urcu-bp ("bulletproof"), the one liburcu intends for libraries
 * that do not control their callers' threads. A thread registers itself the
 * first time it enters a read-side section, so callers of libpagestate never
 * call rcu_register_thread() or anything else: every operation that reads
 * RCU-protected memory enters and leaves its own read-side section. Nesting
 * inside a caller's own urcu-bp section is fine. With sys_membarrier (Linux
 * 4.3+, in use here) the read side needs no memory barrier: a thread-local
 * counter store and compiler barriers. But it is reached through liburcu-bp's
 * shared library: two calls and their dynamic-TLS lookups cost about 12 ns per
 * lock/unlock pair on the benchmark machine, more than a page-table lookup,
 * which is why ps_pgtable_lookup() lets callers batch lookups in one section.
 *
 * libpagestate does not define _LGPL_SOURCE: these calls go through
 * liburcu-bp's shared library, and no LGPL code is compiled into
 * libpagestate.a (see README, License).
 *
 * fork(): the three functions below that wait for or defer past a grace
 * period abort with a message where liburcu-bp's state is not this
 * process's own (a child of a plain fork()) or is locked by the calling
 * thread (between ps_fork_prepare() and ps_fork_parent()): there they would
 * hang, or leak for good. See lib/fork.h. The read side is not checked.
 *
 * ThreadSanitizer does not see liburcu's grace periods, which are
 * membarrier() calls and uninstrumented counters. It would report every
 * deferred free as racing with the readers that finished before it. Under TSan,
 * each read-side unlock therefore releases a shared sync object, and every
 * deferred callback and synchronize acquires it (plus the object handed to
 * ps__rcu_call()). That is exactly the happens-before a grace period provides.
 */
#ifndef PS_LIB_RCU_H
#define PS_LIB_RCU_H

#include <pagestate/compiler.h>

#include <urcu-bp.h>

#if PS_TSAN
#include <sanitizer/tsan_interface.h>
extern char ps__rcu_tsan_sync;
#endif

/* An object to free after a grace period: embed it, pass a callback. */
struct ps__rcu_head {
	struct rcu_head head;
	void (*fn)(struct ps__rcu_head *h);
};

/* Enter a read-side section (wait-free; may register the thread once). */
static inline void ps__rcu_read_lock(void)
{
	urcu_bp_read_lock();
}

/* Leave a read-side section. */
static inline void ps__rcu_read_unlock(void)
{
#if PS_TSAN
	__tsan_release(&ps__rcu_tsan_sync);
#endif
	urcu_bp_read_unlock();
}

/*
 * ps__rcu_call() - run @fn(@h) in liburcu's call_rcu thread once every
 * read-side section that might still see @h has ended. Wait-free for the
 * caller (liburcu's enqueue is a wait-free queue).
 */
void ps__rcu_call(struct ps__rcu_head *h, void (*fn)(struct ps__rcu_head *h));

/* Wait for a grace period (blocking). */
void ps__rcu_synchronize(void);

/* Wait until every callback queued before this call has run (blocking). */
void ps__rcu_barrier(void);

#endif /* PS_LIB_RCU_H */
