/* SPDX-License-Identifier: MIT */
/*
 * pagestate/fork.h - fork(), signals and threads: what a process may do with
 * the library's objects around fork(), in signal handlers, and as its threads
 * come and go. The reasons, and the liburcu and Linux facts behind them, are
 * in docs/fork-signals-threads.md.
 *
 * ---------------------------------------------------------------------------
 * fork()
 * ---------------------------------------------------------------------------
 *
 * fork() copies the calling thread only. The child gets the parent's memory,
 * including the library's objects, as they were at that instant: possibly
 * in the middle of another thread's operation, with a mutex held by a
 * thread that does not exist in the child, and without the threads the
 * objects rely on (liburcu's call_rcu thread, a uffd attachment's handler
 * thread). Its file descriptors still reach the parent: a userfaultfd acts
 * on the address space that created it. Hence the rules for a child:
 *
 *   1. fork() then exec(), or posix_spawn(): nothing to do. Every file
 *      descriptor the library opens is close-on-exec.
 *   2. Objects the child inherited (spaces, page tables, notifiers, uffd
 *      attachments) may be left alone (exit or exec reclaims them) or
 *      destroyed. In a child, ps_space_destroy(), ps_pgtable_destroy(),
 *      ps_notifier_destroy() and ps_uffd_detach() of an inherited object only
 *      forget it: they close the child's copies of its descriptors and
 *      return 0. No hook runs, nothing waits, nothing reaches the parent, and
 *      its memory stays part of the child's copy of the parent's (freeing it
 *      would only copy the pages it frees). This holds after a plain fork().
 *   3. After a fork() between ps_fork_prepare() and ps_fork_parent() /
 *      ps_fork_child(), the child may also create objects and use them as
 *      any process does, and read inherited ones from any thread:
 *      ps_pgtable_lookup() (in a read-side section), ps_pgtable_get(),
 *      ps_pgtable_get_range(), ps_pgtable_registration(), ps_pgtable_scan()
 *      without PS_SCAN_WP_MATCHING, ps_space_page() / _pgtable() / _notifier(),
 *      the page words' read accessors and the *_stats() functions. They see the
 *      state at the fork, including work other threads had half done. This
 *      allocates in the child: the process's malloc() must survive fork() in a
 *      multi-threaded process, as glibc's does.
 *   4. Nothing else may touch an inherited object. A call that would take its
 *      mutex, wait for its in-flight work, run its hooks over a range, or reach
 *      the parent through a descriptor aborts the child with a message naming
 *      the call and this rule. Fast paths (page-word operations, pins, faults,
 *      single-entry updates) are not checked: they would act on the child's
 *      copy, or wait for a page lock a vanished thread held.
 *
 * After a plain fork(), creating an object in the child fails with -ECHILD,
 * and so does ps_fork_prepare(), as liburcu-bp's state there is still the
 * parent's (a grace period could wait for a thread that does not exist).
 * Where the child's memory is shared with the parent (a caller's page-word
 * array or guest memory in a MAP_SHARED mapping), rule 2 keeps the library
 * off it; the caller's own code in the child must do the same.
 *
 * The library notices a fork() through a pthread_atfork() child handler it
 * registers when it creates its first object (one increment; no lock).
 * _Fork(), vfork() and clone() without exec run no atfork handler: after
 * them the rules still hold, unchecked.
 *
 * ---------------------------------------------------------------------------
 * Signals
 * ---------------------------------------------------------------------------
 *
 * A signal handler may call these, even when it interrupted the library in
 * the same thread, and nothing else of the library:
 *   - the functions of pagestate/pte.h (pure functions of their arguments);
 *   - the page-word operations of pagestate/page.h (reads, reference and pin
 *     counts, flags, ps_page_trylock(), ps_page_unlock(), ps_page_freeze(),
 *     ps_page_unfreeze()) when used correctly: misuse calls the error hook,
 *     whose default prints with stdio. Not ps_page_lock(), which waits for a
 *     LOCKED bit the interrupted code may hold;
 *   - ps_pgtable_read_lock(), ps_pgtable_read_unlock(), ps_pgtable_lookup()
 *     in a section, ps_pgtable_get() and ps_pgtable_registration(), in a
 *     thread that entered a read-side section before the handler could run
 *     (the first one registers the thread with liburcu, which is not
 *     async-signal-safe), from a handler on the thread's own stack (no claim
 *     is made for a sigaltstack(2) stack).
 * Not the read sides of pagestate/seq.h and pagestate/notifier.h (a reader
 * waits for a writer the handler may have interrupted), nor anything that
 * takes a mutex, allocates, runs hooks or waits. The library installs no
 * signal handler and sends no signal; its system calls that a signal
 * interrupts are retried on EINTR.
 *
 * ---------------------------------------------------------------------------
 * Threads
 * ---------------------------------------------------------------------------
 *
 * Threads need no registration: liburcu registers a thread at its first
 * read-side section and reclaims the registration when the thread exits. A
 * thread may exit at any time outside a library call, inside a read-side
 * section of its own too (it does not block grace periods). Do not cancel a
 * thread inside a library call: the library's mutexes are not released on
 * cancellation (disable cancellation around the calls if the program cancels
 * threads). The library's own threads are liburcu's call_rcu thread (from the
 * first deferred free until the process exits) and one handler thread per
 * uffd attachment made with PS_UFFD_THREAD (from attach to detach).
 */
#ifndef PAGESTATE_FORK_H
#define PAGESTATE_FORK_H

#include <pagestate/compiler.h>

PS_BEGIN_DECLS

/**
 * ps_fork_prepare() - make liburcu-bp's state safe to copy; call it right
 * before fork() when the child will not exec.
 *
 * Pauses liburcu-bp's call_rcu threads, then takes its grace-period and
 * registry locks, with every signal blocked in the calling thread (liburcu's
 * urcu_bp_call_rcu_before_fork() and urcu_bp_before_fork()). Call fork() next
 * and no other function of the library; then ps_fork_parent() in the parent,
 * whether fork() succeeded or not, and ps_fork_child() in the child. Other
 * threads may keep using the library; one that needs a grace period or
 * registers as a reader waits until ps_fork_parent(). The library's own
 * operations are not waited for: the child leaves their state alone (rule 2
 * of the overview of pagestate/fork.h).
 *
 * Context: any thread, outside every read-side section (ps_pgtable_read_lock()
 * or the caller's own urcu-bp section), not between its own earlier
 * ps_fork_prepare() and ps_fork_parent(). Not async-signal-safe. A program
 * some other part of which already runs liburcu-bp's fork hooks around fork()
 * (for example through pthread_atfork()) must not call this as well: the
 * locks are not recursive. This is not a pthread_atfork() handler:
 * docs/fork-signals-threads.md, "Why the bracket, and why not
 * pthread_atfork()", says why.
 * Ordering: acquires liburcu-bp's locks; everything the parent did before
 * it is in the child's copy.
 * Progress: blocking: waits for a grace period in progress and for the call_rcu
 * thread to finish the callbacks it is running (polling each millisecond). So
 * no other thread may be waiting for the caller inside a read-side section.
 * Return: 0; -EDEADLK inside a read-side section, or again before
 * ps_fork_parent() (it would deadlock); -ECHILD in a child of a plain fork()
 * (liburcu-bp's locks may be held by threads that do not exist there);
 * -ENOMEM if the library's fork handler cannot be registered. On error
 * nothing is held: do not call ps_fork_parent() or ps_fork_child().
 */
PS_MUST_CHECK int ps_fork_prepare(void);

/**
 * ps_fork_parent() - undo ps_fork_prepare() in the parent once fork() has
 * returned (a pid, or -1).
 *
 * Releases liburcu-bp's locks, restores the thread's signal mask and resumes
 * the call_rcu threads (urcu_bp_after_fork_parent(), then
 * urcu_bp_call_rcu_after_fork_parent()).
 *
 * Context: the thread that called ps_fork_prepare(), right after fork().
 * Without a pending ps_fork_prepare() in this thread it aborts with a message
 * (releasing locks it does not hold would be undefined).
 * Ordering: releases liburcu-bp's locks.
 * Progress: blocking: waits for the call_rcu threads to resume (polling each
 * millisecond).
 */
void ps_fork_parent(void);

/**
 * ps_fork_child() - give the child a liburcu-bp state of its own once fork()
 * has returned 0.
 *
 * Removes every thread but the caller from liburcu-bp's reader registry,
 * releases its locks, restores the signal mask (urcu_bp_after_fork_child()),
 * then starts a new call_rcu thread that runs the callbacks queued before
 * the fork (urcu_bp_call_rcu_after_fork_child()). The child may then create
 * objects, and read inherited ones (rule 3 of the overview of
 * pagestate/fork.h).
 *
 * Context: the child's only thread, right after fork(), when the parent
 * called ps_fork_prepare() before it. Without that it aborts with a message.
 * Ordering: none beyond program order (the child has one thread).
 * Progress: blocking (allocates and starts a thread).
 */
void ps_fork_child(void);

PS_END_DECLS

#endif /* PAGESTATE_FORK_H */
