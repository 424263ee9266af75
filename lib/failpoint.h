/* SPDX-License-Identifier: MIT */
/*
 * lib/failpoint.h - the test build's failpoints of the space's files, of
 * prot and of the notifier's allocation: one list, one hook, one injection
 * hook. Not installed; not API.
 *
 * A failpoint is a place in a race window where a test wants the racing
 * change to happen exactly (tests/test-space.c, tests/test-prot.c cite
 * them). They exist only in the test binaries that compile the library
 * files they race into with -DPS_TEST_FAILPOINTS (tests/meson.build, which
 * also links lib/failpoint.c, the hooks' definitions); in the library the
 * macros below are empty and cost nothing.
 */
#ifndef PS_LIB_FAILPOINT_H
#define PS_LIB_FAILPOINT_H

#include <stdint.h>

/* Every failpoint, numbered from 1 (where each sits: the file that has it). */
/* clang-format off */
enum {
	FP_PIN_AFTER_LOOKUP = 1,   /* pin: read the entry, no pin yet */
	FP_PIN_BEFORE_RECHECK,	   /* pin: pinned, entry not re-read */
	FP_DISCARD_AFTER_CHECK,	   /* discard: saw the mapping's reference
				    * alone, frame not frozen yet */
	FP_DISCARD_FROZEN,	   /* discard: frame frozen, entry not zapped */
	FP_MAP_RUN,		   /* inject: the page-table map of a run */
	FP_FAULT_CHECKED,	   /* fault: a write classified, nothing
				    * changed */
	FP_FAULT_LOCKED,	   /* fault: frame LOCKED, entry not read
				    * again */
	FP_WB_BOUNCED,		   /* write-back: pinned frame copied, not
				    * looked at again */
	FP_CREATE_MUTEX,	   /* inject: the writer mutex's init */
	FP_WB_LOOKED_UP,	   /* write-back: entry read, frame neither
				    * held nor locked */
	FP_WB_INVALIDATED,	   /* write-back: PROTECTION invalidation
				    * ended, frame still LOCKED */
	FP_PIN_RECHECKED,	   /* pin: re-check passed, address not
				    * recorded yet */
	FP_CONVERT_FROZEN,	   /* prot: every page frozen, no hook run, no
				    * flip */
	FP_WB_WAIT,		   /* write-back: INTEGRITY, about to wait
				    * for another's WRITEBACK */
	FP_MAP_TAKEN,		   /* map: every frame taken, no entry
				    * installed yet */
	FP_WB_CLEARED,		   /* write-back: DIRTY cleared, frame still
				    * LOCKED, invalidation not ended */
	FP_FAULT_RECHECKED,	   /* fault: entry read again under LOCKED,
				    * frame not marked yet */
	FP_FAULT_MARKED,	   /* fault: frame marked dirty, entry not
				    * writable yet */
	FP_MARK_LOOKED_UP,	   /* mark_dirty: entry read, frame neither
				    * held nor marked */
	FP_MAP_INSTALLED,	   /* map: every entry installed, claimed
				    * frames still frozen */
	FP_DIRTY_SET,		   /* a mark: DIRTY set, hook not run yet
				    * (arg: the frame) */
	FP_WB_ENDED,		   /* write-back: WRITEBACK ended after @fn */
	FP_KMAP_JOIN,		   /* prot: kmap about to count itself
				    * (join the maps, or not) */
	FP_NOTIFIER_SLOT,	   /* inject: an invalidation's slot
				    * allocation (arg: its start) */
	FP_HUGE_RELEASE_RESOLVED,  /* space-huge: a release found a whole
				    * huge word, not in its gate yet (arg:
				    * the unit's first frame) */
	FP_PIN_LOOKED_UP,	   /* space-huge: a pin read the entry, its
				    * frame's state not looked up yet */
	FP_MAP_CHUNK,		   /* map: a chunk installed, the writer
				    * mutex let go, the next not begun (arg:
				    * its address; lib/space.c, S20) */
	FP_UNMAP_CHUNK,		   /* unmap: a chunk zapped, the writer
				    * mutex let go (arg: the next chunk's
				    * address; lib/space.c, S20) */
	FP_SET_CACHE_FROZEN,	   /* prot: set_cache froze a LIVE frame,
				    * mode not changed yet (arg: the frame) */
	FP_DISCARD_CHUNK,	   /* discard: a chunk done, the writer mutex
				    * let go (arg: the next chunk's address;
				    * lib/space-discard.c, S20) */
	FP_NR
};
/* clang-format on */

/*
 * Pages of address space a map works on per chunk (lib/space.c, S20): 64 MiB,
 * aligned. Here so that the tests size their ranges by it.
 */
#define PS__FP_MAP_CHUNK_PAGES (UINT64_C(1) << 14)

#ifdef PS_TEST_FAILPOINTS
/* The test's hook: runs at every failpoint reached (NULL: none). */
extern void (*ps__failpoint)(int point, uint64_t addr);
/*
 * The test's injected failures: returns 0 (carry on) or the negative errno
 * that the call at @point fails with; a page-table map may first shorten
 * *@len to the part it did (a run refused after a prefix, which only a
 * store racing into the range against the page table's rules can cause).
 */
extern int (*ps__inject)(int point, uint64_t addr, uint64_t *len);
#define FAILPOINT(point, addr)                          \
	do {                                            \
		if (ps__failpoint)                      \
			ps__failpoint((point), (addr)); \
	} while (0)
#define INJECT(point, addr, len) \
	(ps__inject ? ps__inject((point), (addr), (len)) : 0)
#else
#define FAILPOINT(point, addr) \
	do {                   \
	} while (0)
#define INJECT(point, addr, len) 0
#endif

#endif /* PS_LIB_FAILPOINT_H */
