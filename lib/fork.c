// SPDX-License-Identifier: MIT
/*
 * lib/fork.c - fork() support (pagestate/fork.h) and the contract's checks
 * (lib/fork.h). Rationale and the liburcu-bp facts it relies on:
 * docs/fork-signals-threads.md.
 *
 * F1  The generation. ps__fork_generation is 0 in the first process and one
 *     more in each child of fork(): the pthread_atfork() child handler adds
 *     one, before fork() returns in the child. Objects record it at creation
 *     (ps__fork_born()). The handler is registered once, by the first creation,
 *     so no object can exist before it is; a process that never created one
 *     forks without the library noticing, and has nothing to notice.
 *
 * F2  liburcu-bp's generation. rcu_generation is the generation whose
 *     liburcu-bp state (its locks, its reader registry, its call_rcu
 *     thread) is this process's own: 0 at start, and the child's new
 *     generation once ps_fork_child() has run liburcu-bp's child hooks.
 *     While the two differ, creations fail with -ECHILD and grace periods
 *     and deferred frees abort (ps__fork_rcu_check()).
 *
 * F3  The bracket. ps_fork_prepare() runs liburcu-bp's call_rcu hook, then
 *     its flavour hook (the call_rcu thread may be inside a grace period,
 *     which needs the lock the flavour hook takes); ps_fork_parent() and
 *     ps_fork_child() run theirs in the reverse order (the child's new
 *     call_rcu thread registers as a reader, which needs the registry lock
 *     the flavour's child hook releases). The thread-local `preparing`
 *     pairs them and lets the RCU wrappers refuse a grace period in the
 *     thread that holds liburcu-bp's locks. fork() copies it to the child.
 */
#include <pagestate/fork.h>

#include "fork.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu-bp.h>

PS_ATOMIC(uint64_t) ps__fork_generation;
static PS_ATOMIC(uint64_t) rcu_generation;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_err;
static _Thread_local bool preparing;

static uint64_t generation(void)
{
	/* Relaxed: see ps__fork_inherited(). */
	return atomic_load_explicit(&ps__fork_generation, memory_order_relaxed);
}

/* F1: runs in the child, inside fork(), while it has one thread. */
static void child_handler(void)
{
	/* Relaxed: see ps__fork_inherited(). */
	atomic_fetch_add_explicit(&ps__fork_generation, 1,
				  memory_order_relaxed);
}

static void register_handler(void)
{
	once_err = pthread_atfork(NULL, NULL, child_handler);
}

static int ensure_handler(void)
{
	/* pthread_once() orders once_err's store before this load. */
	pthread_once(&once, register_handler);
	return once_err ? -once_err : 0;
}

static bool rcu_is_ours(void)
{
	/* Relaxed: written by ps_fork_child() in this same (only) thread. */
	return atomic_load_explicit(&rcu_generation, memory_order_relaxed) ==
	       generation();
}

int ps__fork_born(uint64_t *born)
{
	int rc = ensure_handler();

	if (rc)
		return rc;
	if (!rcu_is_ours())
		return -ECHILD; /* F2 */
	*born = generation();
	return 0;
}

/* write(2) the whole string: stdio's lock may be a parent thread's. */
static void say(const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Print "libpagestate: @fn: @why (...)" to stderr and abort(). */
static _Noreturn PS_COLD void refuse(const char *fn, const char *why)
{
	say("libpagestate: ");
	say(fn);
	say(": ");
	say(why);
	say(" (pagestate/fork.h; docs/fork-signals-threads.md)\n");
	abort();
}

void ps__fork_refuse_inherited(const char *fn, const char *what)
{
	say("libpagestate: ");
	say(fn);
	say(": this ");
	say(what);
	say(" was created before fork() by a parent of this process;"
	    " a child may only destroy or leave what it inherited");
	say(" (pagestate/fork.h; docs/fork-signals-threads.md)\n");
	abort();
}

void ps__fork_rcu_check(const char *fn)
{
	if (PS_UNLIKELY(preparing))
		refuse(fn, "called between ps_fork_prepare() and "
			   "ps_fork_parent()/ps_fork_child(), which hold "
			   "liburcu-bp's locks");
	if (PS_UNLIKELY(!rcu_is_ours()))
		refuse(fn, "a grace period or deferred free in a child of "
			   "fork() without ps_fork_prepare() and "
			   "ps_fork_child(): liburcu-bp's state is still the "
			   "parent's");
}

int ps_fork_prepare(void)
{
	int rc;

	if (preparing || urcu_bp_read_ongoing())
		return -EDEADLK;
	rc = ensure_handler();
	if (rc)
		return rc;
	if (!rcu_is_ours())
		return -ECHILD; /* F2: liburcu-bp's locks may be a ghost's */
	urcu_bp_call_rcu_before_fork(); /* F3: call_rcu first */
	urcu_bp_before_fork();
	preparing = true;
	return 0;
}

void ps_fork_parent(void)
{
	if (!preparing)
		refuse(__func__, "no ps_fork_prepare() pending in this thread");
	urcu_bp_after_fork_parent(); /* F3: reverse order */
	urcu_bp_call_rcu_after_fork_parent();
	preparing = false;
}

void ps_fork_child(void)
{
	if (!preparing)
		refuse(__func__, "no ps_fork_prepare() before this fork()");
	urcu_bp_after_fork_child(); /* F3: reverse order */
	urcu_bp_call_rcu_after_fork_child();
	preparing = false;
	/* Relaxed: F2; read by this thread and threads it starts later. */
	atomic_store_explicit(&rcu_generation, generation(),
			      memory_order_relaxed);
}
