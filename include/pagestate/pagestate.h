/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pagestate.h - umbrella header: includes every module and nothing
 * else. Include the module headers directly to depend on less.
 *
 * Processes, signals and threads (reasons and sources:
 * docs/fork-signals-threads.md):
 *   - fork(): a child may exec, leave what it inherited, or destroy it (an
 *     inherited object is then only forgotten). With ps_fork_prepare(),
 *     ps_fork_parent() and ps_fork_child() around the fork, it may also read
 *     inherited objects and create new ones. Anything else on an inherited
 *     object is refused, with an abort naming the rule, wherever the library
 *     can tell without slowing a fast path (pagestate/fork.h).
 *   - Signal handlers may call the functions of pagestate/pte.h, the
 *     page-word operations of pagestate/page.h except ps_page_lock(), and
 *     the page table's read-side section and lookups in a thread that has
 *     entered a section before (pagestate/pgtable.h). Nothing else.
 *   - Threads need no registration and may exit at any time outside a
 *     library call; the registration liburcu made for a reader is reclaimed
 *     when it exits. Do not cancel a thread inside a library call: the
 *     library's mutexes are not released on cancellation.
 */
#ifndef PAGESTATE_PAGESTATE_H
#define PAGESTATE_PAGESTATE_H

#include <pagestate/fork.h>
#include <pagestate/notifier.h>
#include <pagestate/page.h>
#include <pagestate/prot.h>
#include <pagestate/pgtable.h>
#include <pagestate/pte.h>
#include <pagestate/seq.h>
#include <pagestate/space.h>
#include <pagestate/uffd.h>

#endif /* PAGESTATE_PAGESTATE_H */
