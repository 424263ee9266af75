/* SPDX-License-Identifier: MIT */
/*
 * lib/pgtable-internal.h - what the library's other modules need of the
 * page table beyond pagestate/pgtable.h. Not installed; not API.
 */
#ifndef PS_LIB_PGTABLE_INTERNAL_H
#define PS_LIB_PGTABLE_INTERNAL_H

#include <pagestate/pgtable.h>

#include <stdint.h>

/*
 * The count of finished ps_pgtable_protect() calls (G10 in lib/pgtable.c),
 * for ps__pgtable_give_back(): read it before the CAS that takes the entry
 * away. Acquire, pairing with each protect's release increment; wait-free.
 */
uint64_t ps__pgtable_protects(const struct ps_pgtable *t);

/*
 * Put the present entry @old back at page @addr, which a CAS of the caller
 * turned into none (or a lone UFFD_WP marker, which a protect may also have
 * made of it since) after the caller read @protects. The entry comes back
 * without WRITE (the next write faults: whoever looked while it was away may
 * have acted on its absence), with uffd-wp if the page holds a UFFD_WP
 * marker now, or if a protect finished since @protects and the page is
 * registered (it may have found the page empty and skipped it: G10). Runs
 * under t->lock, so no protect interleaves and the registration is stable.
 * Context: not inside a read-side section. Ordering: one seq_cst CAS, as
 * ps_pgtable_cmpxchg(). Progress: blocking (t->lock: range writers).
 * Returns 0; -EINVAL (@old not present, @addr bad); -EEXIST (the page holds
 * anything else: someone stored there against the exclusion rules).
 */
int ps__pgtable_give_back(struct ps_pgtable *t, uint64_t addr, ps_pte_t old,
			  uint64_t protects);

#endif /* PS_LIB_PGTABLE_INTERNAL_H */
