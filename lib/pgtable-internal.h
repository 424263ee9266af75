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
 * The protect count (G10 in lib/pgtable.c): odd while a ps_pgtable_protect()
 * runs, changed by each one. For a caller that removes an entry and puts it
 * back (lib/space.c's discard): load it before the removing CAS; after the
 * restoring CAS, a seq_cst fence, then load it again; if the first was odd
 * or the two differ, a protect may have found the page empty and skipped it,
 * so protect the entry put back. Seq_cst load; wait-free.
 */
uint64_t ps__pgtable_protect_seq(const struct ps_pgtable *t);

#endif /* PS_LIB_PGTABLE_INTERNAL_H */
