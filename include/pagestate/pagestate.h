/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pagestate.h - umbrella header: includes every module and nothing
 * else. Include the module headers directly to depend on less.
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
