/* SPDX-License-Identifier: MIT */
/*
 * lib/rcu.h - the library's one use of liburcu (internal, not installed).
 *
 * Flavour: urcu-bp ("bulletproof"), the one liburcu intends for libraries
 * that do not control their callers' threads. A thread registers itself the
 * first time it enters a read-side section, so callers of libpagestate never
 * call rcu_register_thread() or anything else: every operation that reads
 * RCU-protected memory enters and leaves its own read-side section. Nesting
 * inside a caller's own urcu-bp section is fine. The other flavours do not
 * keep that contract: urcu-memb needs each reader thread registered before
 * its first section and unregistered before it exits (a thread that exits
 * inside a section would block grace periods), urcu-qsbr needs every reader
 * to announce quiescent states. Their read sides would save one load.
 *
 * The read side is inline. ps__rcu_read_lock() and ps__rcu_read_unlock()
 * compile liburcu's own _urcu_bp_read_lock() and _urcu_bp_read_unlock()
 * (urcu/static/urcu-bp.h) into the caller: with sys_membarrier (Linux 4.3+,
 * in use here) each is a thread-local pointer load, a counter load and store
 * and compiler barriers, no fence and no call. A pair is about 20
 * instructions where liburcu-bp's two out-of-line wrappers, each with two
 * __tls_get_addr() calls, took about 95 (callgrind: ps_pgtable_get() went from
 * 126 instructions to 51, 17 of them the walk). Why an MIT library may do this:
 *   - LGPL-2.1 section 5 leaves an object file that uses only "numerical
 *     parameters, data structure layouts and accessors, and small macros
 *     and small inline functions (ten lines or less in length)" of a
 *     library's header unrestricted, and liburcu's header says of exactly
 *     these two functions (with the two helpers they call) that they are
 *     under ten lines "to be invoked directly from non-LGPL code";
 *     ps__rcu_thread_registered() reads the reader pointer they test, an
 *     accessor of a layout the header declares;
 *   - libpagestate does not define _LGPL_SOURCE, so nothing else of liburcu
 *     is compiled in: the grace periods, call_rcu and the registration
 *     itself stay calls into liburcu-bp's shared library (README, License).
 * Those inline functions read liburcu-bp's reader record and grace-period
 * counter (urcu_bp_reader, urcu_bp_gp, urcu_bp_has_sys_membarrier), which
 * liburcu keeps for as long as its SONAME (liburcu-bp.so.8; its README promises
 * inlined small functions match "as long as the library major version is
 * unchanged"): a liburcu with a new SONAME needs libpagestate rebuilt, as it
 * would anyway to link it. PS_RCU_INLINE is 0 where liburcu's header lacks the
 * inline functions and in UBSan builds (lib/meson.build says why), and then
 * the read side calls liburcu-bp as before.
 *
 * urcu_bp_reader is thread-local in liburcu-bp.so. The library reaches it
 * with the initial-exec model by default (meson option rcu_tls): one load,
 * the same in the archive and in the shared library, which is then marked
 * STATIC_TLS (a program that dlopen()s it while liburcu-bp is not loaded
 * yet needs liburcu-bp's 80 bytes of TLS from glibc's static TLS surplus).
 * rcu_tls=descriptor uses TLS descriptors instead (a two-instruction call
 * per access, four per section pair: ps_pgtable_get() 67 instructions in
 * the shared library); the general-dynamic model of liburcu-bp's own
 * wrappers calls __tls_get_addr() four times a pair.
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
 * TSan would also see the inline read side's counter accesses, whose other
 * side is uninstrumented liburcu. It reports the reuse of a reader record
 * (freed by liburcu's thread-exit destructor, taken by a later thread's
 * registration) as a race on its counter: it does not see the order that
 * liburcu's registry gives the two threads. Those accesses are liburcu's
 * protocol, not the library's, so TSan ignores them (PS__RCU_TSAN_IGNORE);
 * the annotations above still apply.
 */
#ifndef PS_LIB_RCU_H
#define PS_LIB_RCU_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <urcu-bp.h>

#ifndef PS_RCU_INLINE
#define PS_RCU_INLINE 0
#endif
#if PS_RCU_INLINE
/* For _urcu_bp_read_lock() and _urcu_bp_read_unlock() only (see above). */
#include <urcu/static/urcu-bp.h>
#endif

#if PS_TSAN
#include <sanitizer/tsan_interface.h>
extern char ps__rcu_tsan_sync;
/* The TSan runtime's, undeclared by its header: ignore accesses between. */
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define PS__RCU_TSAN_IGNORE(stmt)             \
	do {                                  \
		__tsan_ignore_thread_begin(); \
		stmt;                         \
		__tsan_ignore_thread_end();   \
	} while (0)
#else
#define PS__RCU_TSAN_IGNORE(stmt) stmt
#endif

/* An object to free after a grace period: embed it, pass a callback. */
struct ps__rcu_head {
	struct rcu_head head;
	void (*fn)(struct ps__rcu_head *h);
};

#if PS_RCU_INLINE
/* A thread's first section: registers it, then enters (lib/rcu.c). */
PS_COLD void ps__rcu_read_lock_first(void);
#endif

/*
 * Has the calling thread entered a read-side section before (is it
 * registered with urcu-bp)? A fast path that tests this first and leaves
 * the first section to a cold function makes no call of its own when it is
 * registered, and so saves no registers.
 */
static inline bool ps__rcu_thread_registered(void)
{
#if PS_RCU_INLINE
	return PS_LIKELY(URCU_TLS(urcu_bp_reader) != NULL);
#else
	return true;
#endif
}

/* Enter a read-side section (wait-free; may register the thread once). */
static inline void ps__rcu_read_lock(void)
{
#if PS_RCU_INLINE
	/*
	 * The registration test of _urcu_bp_read_lock(), made first so that
	 * the compiler knows the thread is registered on the fast path and
	 * drops the call, with the registers it would have to save.
	 */
	if (PS_UNLIKELY(!URCU_TLS(urcu_bp_reader)))
		ps__rcu_read_lock_first();
	else
		PS__RCU_TSAN_IGNORE(_urcu_bp_read_lock());
#else
	urcu_bp_read_lock();
#endif
}

/* Leave a read-side section. */
static inline void ps__rcu_read_unlock(void)
{
#if PS_TSAN
	__tsan_release(&ps__rcu_tsan_sync);
#endif
#if PS_RCU_INLINE
	PS__RCU_TSAN_IGNORE(_urcu_bp_read_unlock());
#else
	urcu_bp_read_unlock();
#endif
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
