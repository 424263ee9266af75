/* SPDX-License-Identifier: MIT */
/*
 * pagestate/pagestate.h - the umbrella header: includes every module of
 * libpagestate, its version and its build configuration, and nothing else.
 * Include the module headers directly to depend on less.
 *
 * libpagestate keeps, for memory a program manages by pages (a guest's RAM in a
 * VMM, a userspace driver's DMA buffers), the state Linux keeps for a process's
 * pages, as lock-free primitives in C11: each page's references, exact DMA pins
 * and flags in one atomic word; a radix page table with userfaultfd-style write
 * protection, markers, faults and scans; a sequence counter and interval
 * invalidation notifiers for secondary mappings; an address space that ties
 * them together with a dirty log; per-page protection; and a bridge that
 * mirrors write protection onto real memory with Linux's userfaultfd. Fast
 * paths take no lock, and every function states its progress guarantee.
 *
 *   header       what it is for
 *   page.h       the page word: references, DMA pins, flags
 *   pte.h        the 64-bit page-table entry: present, swap, markers
 *   pgtable.h    the lock-free radix page table: protect, fault, scan
 *   seq.h        the sequence counter
 *   notifier.h   interval invalidation notifiers (secondary mappings)
 *   space.h      the address space: map, pin, fault, dirty log, discard
 *   ledger.h     the dirty ledger: several consumers, harvest transactions
 *   prot.h       per-page encryption, cache mode, conversion, kmap
 *   x86.h        x86 page-table bits for cache mode and encryption
 *   uffd.h       the Linux userfaultfd bridge
 *   fork.h       fork(), signals and threads
 *   version.h    the version, at build time and at run time
 *   config.h     how the installed library was built (PS_HAVE_*)
 *   compiler.h   the C11/C++ shims the headers share (no API)
 *
 * Each header states its model and contracts in its overview and in the comment
 * above each function, which is also the function's man page in section 3
 * (ps_space_pin_range(3)); libpagestate(7) lists the pages by header. Why a
 * module is built as it is, how it differs from Linux and what it costs are
 * explained in docs/, installed under share/doc/libpagestate with CHANGELOG.md
 * and LICENSE:
 *
 *   docs/page.md                  page.h
 *   docs/pgtable.md               pte.h and pgtable.h
 *   docs/notifier.md              seq.h and notifier.h
 *   docs/space.md                 space.h
 *   docs/ledger.md                ledger.h
 *   docs/prot.md                  prot.h and x86.h
 *   docs/uffd.md                  uffd.h
 *   docs/fork-signals-threads.md  fork.h
 *   docs/abi.md                   version.h: what is API and ABI, 0.x policy
 *   docs/building.md              building, installing and embedding
 *   docs/contributing.md          the project's rules and checks
 *   docs/linux-differences.md     where the library differs from Linux, why
 *   docs/examples.md              a short program per module
 *
 * Names say where things live. A function's prefix names the header that
 * declares it: ps_page_*() is in page.h, ps_space_*() in space.h,
 * ps_prot_*() in prot.h. A header's types, enum constants and macros carry
 * its prefix too (struct ps_page, PS_PAGE_DIRTY), or a namespace the naming
 * table that follows gives that header (space.h's PS_PIN_WRITE); no namespace
 * belongs to two headers. A namespace N covers N itself and every N_*. The
 * internal forms, ps__page_*() and PS__PAGE_*, are a header's own inline
 * machinery, not API. The library's meta checks hold every installed header to
 * this table, and use it to tell which module an identifier belongs to.
 *
 *   header       functions        types, constants and macros also in
 *   compiler.h   -                PS_ATOMIC PS_BEGIN_DECLS PS_END_DECLS
 *                                 PS__EXTERN_C PS_COLD PS_HAVE_CXX_STDATOMIC
 *                                 PS_LIKELY
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
 *   space.h      ps_space         PS_MAP PS_UNMAP PS_PIN PS_UNPIN
 *                                 PS_HARVEST ps_discard PS_DISCARD
 *                                 ps_secondary
 *                                 ps_writeback PS_WB
 *   ledger.h     ps_ledger
 *   prot.h       ps_prot          ps_convert PS_CONVERT PS_KMAP
 *                                 ps_memory_fault PS_MEMORY_FAULT
 *   uffd.h       ps_uffd
 *   version.h    ps_version       PS_VERSION PS_CHECK_VERSION
 *   fork.h       ps_fork
 *   pagestate.h  -
 *
 * pagestate/config.h, generated by the build, holds only PS_HAVE_* answers
 * (PS_HAVE_UFFD). notifier.h has three objects (the notifier, its intervals, an
 * invalidation) and x86.h two encodings (the PAT, the confidential-computing
 * bit), each with its own prefix.
 */
#ifndef PAGESTATE_PAGESTATE_H
#define PAGESTATE_PAGESTATE_H

#include <pagestate/config.h>
#include <pagestate/fork.h>
#include <pagestate/ledger.h>
#include <pagestate/notifier.h>
#include <pagestate/page.h>
#include <pagestate/prot.h>
#include <pagestate/pgtable.h>
#include <pagestate/pte.h>
#include <pagestate/seq.h>
#include <pagestate/space.h>
#include <pagestate/uffd.h>
#include <pagestate/version.h>
#include <pagestate/x86.h>

#endif /* PAGESTATE_PAGESTATE_H */
