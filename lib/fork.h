/* SPDX-License-Identifier: MIT */
/*
 * lib/fork.h - the checks of the fork() contract (internal, not installed).
 * The contract is pagestate/fork.h's; why it is what it is, and the facts
 * about liburcu-bp it rests on, are in docs/fork-signals-threads.md.
 *
 * Every object the library creates (space, page table, notifier, uffd
 * attachment) records at creation the process's fork generation, which
 * the atfork child handler of lib/fork.c increments in every child of
 * fork(). An object whose recorded generation differs from the current
 * one was inherited from a parent. Then:
 *
 *   - its destroy function only forgets it (closing the child's copies of
 *     its file descriptors), and returns 0;
 *   - every function that would take one of its mutexes, wait for its
 *     in-flight work, run its hooks in bulk or reach the parent through an
 *     inherited descriptor calls PS__FORK_CHECK() first, which aborts with
 *     a message naming the rule instead of deadlocking or corrupting the
 *     parent. Fast paths are not checked.
 *
 * Creating an object fails with -ECHILD in a child whose liburcu-bp state
 * is still the parent's (fork() without ps_fork_prepare()/ps_fork_child()),
 * and so does every grace-period wait or deferred free there (lib/rcu.c).
 */
#ifndef PS_LIB_FORK_H
#define PS_LIB_FORK_H

#include <pagestate/compiler.h>

#include <stdbool.h>
#include <stdint.h>

/* The current generation: 0 in a process that never forked (see above). */
extern PS_ATOMIC(uint64_t) ps__fork_generation;

/*
 * ps__fork_born() - the generation to record in a new object.
 * Registers the atfork handler the first time (any thread).
 * Returns 0 and sets *@born; -ECHILD in a child of fork() in which
 * ps_fork_child() did not run (liburcu-bp's state is the parent's);
 * -ENOMEM if pthread_atfork() failed (forks could not be detected).
 */
int ps__fork_born(uint64_t *born);

/* Was the object that recorded @born created by a parent of this process? */
static inline bool ps__fork_inherited(uint64_t born)
{
	/*
	 * Relaxed: the generation changes only in a child's atfork handler,
	 * while the child has one thread (fork() copies only the caller);
	 * threads it starts later see it through pthread_create().
	 */
	return PS_UNLIKELY(atomic_load_explicit(&ps__fork_generation,
						memory_order_relaxed) != born);
}

/*
 * Print "libpagestate: @fn: this @what was created before fork() by a
 * parent ..." to stderr and abort(). @what: "space", "page table", ...
 */
_Noreturn PS_COLD void ps__fork_refuse_inherited(const char *fn,
						 const char *what);

#define PS__FORK_CHECK(born, what)                                 \
	do {                                                       \
		if (ps__fork_inherited(born))                      \
			ps__fork_refuse_inherited(__func__, what); \
	} while (0)

/*
 * ps__fork_rcu_check() - refuse a grace-period wait or a deferred free
 * where it would hang or leak for good: in a child of fork() in which
 * ps_fork_child() did not run (liburcu-bp's locks and registry are the
 * parent's, and its call_rcu thread does not exist), and in the thread
 * between ps_fork_prepare() and ps_fork_parent()/ps_fork_child() (it holds
 * liburcu-bp's locks). One relaxed load and one thread-local load.
 */
void ps__fork_rcu_check(const char *fn);

#endif /* PS_LIB_FORK_H */
