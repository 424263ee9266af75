/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pagestate.h - umbrella header: includes every module and nothing
 * else. Include the module headers directly to depend on less.
 *
 * Names say where things live. A function's prefix names the header that
 * declares it: ps_page_*() is in page.h, ps_space_*() in space.h,
 * ps_prot_*() in prot.h. A header's types, enum constants and macros carry
 * its prefix too (struct ps_page, PS_PAGE_DIRTY), or a namespace the table
 * below gives that header (space.h's PS_PIN_WRITE); no namespace belongs to
 * two headers. A namespace N covers N itself and every N_*. The internal
 * forms, ps__page_*() and PS__PAGE_*, are a header's own inline machinery,
 * not API. The library's meta checks hold every installed header to this
 * table, and use it to tell which module an identifier belongs to.
 *
 *   header       functions        types, constants and macros also in
 *   compiler.h   -                PS_ATOMIC PS_BEGIN_DECLS PS_END_DECLS
 *                                 PS__EXTERN_C PS_COLD PS_HAVE PS_LIKELY
 *                                 PS_UNLIKELY PS_MUST_CHECK
 *                                 PS_STATIC_ASSERT PS_TSAN
 *   page.h       ps_page          ps_cache_mode PS_CACHE ps_enc_state
 *                                 PS_ENC
 *   pte.h        ps_pte
 *   seq.h        ps_seq
 *   x86.h        ps_x86 ps_cc
 *   pgtable.h    ps_pgtable       ps_fault PS_FAULT PS_ACCESS PS_WP
 *                                 PS_SCAN PS_CAT PS_ZAP PS_KEEP_WP
 *   notifier.h   ps_notifier
 *                ps_interval
 *                ps_invalidation
 *   space.h      ps_space         PS_MAP PS_UNMAP PS_PIN PS_HARVEST
 *                                 ps_discard PS_DISCARD ps_secondary
 *                                 ps_writeback PS_WB
 *   prot.h       ps_prot          ps_convert PS_CONVERT PS_KMAP
 *                                 ps_memory_fault PS_MEMORY_FAULT
 *   uffd.h       ps_uffd
 *   pagestate.h  -
 *
 * notifier.h has three objects (the notifier, its intervals, an
 * invalidation) and x86.h two encodings (the PAT, the confidential-computing
 * bit), each with its own prefix.
 */
#ifndef PAGESTATE_PAGESTATE_H
#define PAGESTATE_PAGESTATE_H

#include <pagestate/notifier.h>
#include <pagestate/page.h>
#include <pagestate/prot.h>
#include <pagestate/pgtable.h>
#include <pagestate/pte.h>
#include <pagestate/seq.h>
#include <pagestate/space.h>
#include <pagestate/uffd.h>
#include <pagestate/x86.h>

#endif /* PAGESTATE_PAGESTATE_H */
