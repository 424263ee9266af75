/* SPDX-License-Identifier: MIT */
/*
 * lib/space-internal.h - the address space's interface for the library's
 * modules above it (lib/prot-convert.c: conversion; lib/prot-kmap.c: CPU
 * maps; lib/uffd.c: the userfaultfd bridge). Not installed; not API.
 *
 * A module above the space sees a struct ps_space only through the
 * functions below and the public ones of pagestate/space.h; the struct's
 * definition is the space's own (lib/space-impl.h, included by lib/space*.c
 * only: tests/check-layers.sh enforces it). The space knows nothing of the
 * modules above it: what one of them keeps per space (prot's CPU-map counts
 * and hooks) hangs off the space as an extension (below), which the space
 * keeps and finalises without knowing what it is.
 *
 * The space's rules (S1..S14, stated in lib/space*.c) bind every user of
 * this interface: in particular, replacing one frame by another at an
 * address happens only under the writer lock (S1), and changing an entry
 * that a pin may be racing is followed by a seq_cst fence before the
 * frame's pins are read (S2).
 */
#ifndef PS_LIB_SPACE_INTERNAL_H
#define PS_LIB_SPACE_INTERNAL_H

#include <pagestate/space.h>

#include "fork.h"

#include <stdbool.h>
#include <stdint.h>

/* --- fork() (lib/fork.h) -------------------------------------------------- */

/* Was @space created by a parent of this process (fork())? Wait-free. */
bool ps__space_inherited(const struct ps_space *space);

/*
 * For the modules above the space: refuse, with an abort naming the rule, a
 * call on a space inherited through fork() that would take its writer lock
 * or run its hooks in bulk (pagestate/fork.h).
 */
#define PS__SPACE_FORK_CHECK(space)                                   \
	do {                                                          \
		if (ps__space_inherited(space))                       \
			ps__fork_refuse_inherited(__func__, "space"); \
	} while (0)

/* --- extensions: per-space state of a module above the space -------------- */

/**
 * struct ps__space_ext - one module's state in a space, embedded in the
 * module's own structure.
 * @key: identifies the owner: the address of a static object of its module
 *	(one extension per key and space).
 * @fini: frees the containing structure; ps_space_destroy() runs it, once,
 *	when no other thread uses the space any more.
 * @next: the extension published before this one (written by
 *	ps__space_ext_add(), fixed once published).
 */
struct ps__space_ext {
	const void *key;
	void (*fini)(struct ps__space_ext *ext);
	struct ps__space_ext *next;
};

/*
 * The first member of struct ps_space: the list of its extensions, newest
 * first. Only ps__space_ext_find() and the space's own files read it (the
 * space asserts that it comes first).
 */
struct ps__space_exts {
	PS_ATOMIC(struct ps__space_ext *) head;
};

/**
 * ps__space_ext_find() - the extension of @space with @key, or NULL.
 *
 * Inline: the modules above call it on their fast paths (kmap).
 * Context: any thread. Ordering: acquire (pairs with the release CAS of
 * ps__space_ext_add()): the extension's contents, as its owner initialised
 * them before adding it, are seen. Progress: wait-free (one load, then a
 * walk of a list that only grows at its head, one node per module).
 */
static inline struct ps__space_ext *ps__space_ext_find(struct ps_space *space,
						       const void *key)
{
	/* A struct's address is its first member's (C11 6.7.2.1). */
	struct ps__space_exts *l = (struct ps__space_exts *)(void *)space;
	/* Acquire: pairs with the release CAS in ps__space_ext_add(). */
	struct ps__space_ext *e = atomic_load_explicit(&l->head,
						       memory_order_acquire);

	while (e && e->key != key)
		e = e->next;
	return e;
}

/**
 * ps__space_ext_add() - publish @ext in @space unless an extension with its
 * key is there already.
 *
 * Context: any thread. Ordering: release CAS (what the caller wrote into
 * @ext and its container before the call is seen by every
 * ps__space_ext_find() that returns it). Progress: lock-free (the CAS
 * retries only after another extension was added).
 * Return: @ext if it was added (the space finalises it at destroy); else
 * the extension in force, and the caller frees its own @ext.
 */
struct ps__space_ext *ps__space_ext_add(struct ps_space *space,
					struct ps__space_ext *ext);

/* --- what the space lends the modules above it ---------------------------- */

/*
 * The page words of the space's frames, fixed for its life; *@nframes receives
 * how many. (ps_space_page() is the public per-frame lookup.) Wait-free.
 */
struct ps_page *ps__space_frames(struct ps_space *space, uint64_t *nframes);

/* The size of the address space in bytes, fixed at creation. Wait-free. */
uint64_t ps__space_size(const struct ps_space *space);

/*
 * The writer lock (S1): held, no frame is replaced at an address of the
 * space. Blocking (a mutex); the hooks and notifier callbacks that run
 * under it must not take it again (S7).
 */
void ps__space_writer_lock(struct ps_space *space);
void ps__space_writer_unlock(struct ps_space *space);

/*
 * Is a long-term pin of @frame held (S14 in lib/space-pin.c: counted from
 * before ps_space_pin_range() returns until ps_space_unpin(...,
 * PS_UNPIN_LONGTERM))? Read by a conversion that waits for pins to drain (a
 * long-term pin will not). The forget is for the conversion that froze the
 * frame (no pin can exist until it unfreezes): it resets a count that a
 * long-term pin released without PS_UNPIN_LONGTERM left behind. Wait-free
 * (a load or two; the forget adds a store if a count is left).
 */
bool ps__space_longterm_pinned(struct ps_space *space, uint64_t frame);
void ps__space_longterm_forget(struct ps_space *space, uint64_t frame);

/*
 * Has a long-term pin ever been taken in @space (the counts exist)? Once
 * true, true for the space's life: a caller that reads false knows there is
 * no count to forget from before the call. Wait-free (one acquire load).
 */
bool ps__space_longterm_any(struct ps_space *space);

/* Drop a reference on @frame (the free_frame hook runs if it was the last). */
void ps__space_frame_put(struct ps_space *space, uint64_t frame);

/*
 * Log @addr as written: dirty log and write-back set (S6, S9). The log
 * records that writes may go through a path (S11 in lib/space-dirty.c): a
 * caller that opens one logs after the point from which writes can go
 * through it, never before, or a harvest may take the mark before the path
 * is open and no harvest reports what goes through it. The bridge's sync
 * resolution (lib/uffd.c) logs after the library's fault (which has logged
 * already, after its CAS) and before the kernel's un-protect opens the host
 * page, under the attachment's mutex, which ps_uffd_harvest() holds too:
 * no harvest through the bridge falls between the two.
 */
void ps__space_log_addr(struct ps_space *space, uint64_t addr);

/*
 * ps_space_discard() that also tells @dropped of each page it discards, in
 * address order: @dropped(@ctx, addr) runs right after the page's frame was
 * freed (its free_frame hook returned), in the discarding thread, under the
 * writer lock (S1, S10) and inside the discard's invalidation: it must not
 * take that lock nor anything a thread waiting for it may hold, and must
 * not block for long (a wait-free record is what it is for: lib/uffd.c
 * fixes the kernel's side of those pages after the return). NULL: none.
 * Pages skipped are reported in @skipped as by ps_space_discard(), never to
 * @dropped. Returns what ps_space_discard() returns.
 */
typedef void (*ps__space_dropped_fn)(void *ctx, uint64_t addr);
int ps__space_discard(struct ps_space *space, uint64_t start, uint64_t len,
		      struct ps_discard_skip *skipped, uint64_t max_skipped,
		      uint64_t *nskipped, ps__space_dropped_fn dropped,
		      void *ctx);

/*
 * ps_space_fault() without the populate hook, with the same contract (S3, S11):
 * a write that makes an entry writable holds its frame (a reference and LOCKED)
 * and marks it dirty first, then makes the entry writable by one CAS, then logs
 * the address (after the CAS, so a harvest that takes the mark comes after the
 * entry is writable and its re-arm ends the path). Releasing the frame may free
 * it, if it was unmapped meanwhile: the free_frame hook then runs in the
 * caller's thread, under whatever lock the caller holds. A frame at the
 * reference limit: PS_FAULT_INVALID, nothing changed.
 */
enum ps_fault ps__space_fault_nopopulate(struct ps_space *space, uint64_t addr,
					 unsigned int access);

/*
 * Split the state of the huge frame holding @frame until the word that holds
 * @frame's state is of @order or smaller (S17, S18 in lib/space-huge.c): a
 * conversion or a cache-mode change of part of a whole huge frame splits it
 * first, as a pin of part of it does. The caller must not hold that frame's
 * word frozen, locked or under write-back (the split waits for them). 0 (also
 * when no split was needed), or -EBUSY when a part is not free (the words
 * below a whole frame are in use: S16 broken; nothing changed). Blocking
 * (yields while releases of the whole frame are in flight).
 */
int ps__space_split_frame(struct ps_space *space, uint64_t frame,
			  unsigned int order);

#endif /* PS_LIB_SPACE_INTERNAL_H */
