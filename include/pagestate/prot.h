/* SPDX-License-Identifier: MIT */
/*
 * pagestate/prot.h - per-page protection: the address-space operations on
 * cache mode and encryption state: shared/private conversion under pins,
 * CPU maps that make pages accessible, the access check of a VMM's fault
 * path, cache-mode changes and mprotect-like protection changes. (Their
 * x86 page-table encodings are in pagestate/x86.h.)
 *
 * Protection here is per frame, not per mapping: each frame's page word holds
 * its cache mode and encryption state (pagestate/page.h: the CACHE field, the
 * PRIVATE and INACCESSIBLE flags), and each entry that maps it carries the
 * same bits (pagestate/pte.h: cache and ENC). Why, the protocol behind each
 * guarantee, and the comparison with Linux and KVM are in docs/prot.md.
 *
 * ---------------------------------------------------------------------------
 * Cache modes
 * ---------------------------------------------------------------------------
 *
 * enum ps_cache_mode (pagestate/page.h) numbers the modes as Linux's enum
 * page_cache_mode does, with write-back at 0, so a zeroed page word or entry
 * means write-back:
 *
 *   WB   write-back, normal memory
 *   WC   write-combining (frame buffers, doorbells)
 *   UC-  uncached, but an MTRR may make it WC
 *   UC   strongly uncached (MMIO registers)
 *   WT   write-through
 *   WP   write-protected (reads cached, writes go to memory)
 *
 * One frame, one cache mode: a frame in use (LIVE: mapped, pinned, CPU-mapped
 * or referenced by its owner) keeps its mode.
 *   - ps_space_map(..., PS_MAP_CACHE(mode)) gives a free frame @mode in the
 *     atomic step that claims it (a failed map gives the old mode back); on a
 *     frame in use with another mode it fails with -EBUSY. Without
 *     PS_MAP_CACHE a mapping takes the frame's mode and never conflicts.
 *   - ps_prot_set_cache() changes the mode of a free frame, or of one whose
 *     only references are the ones the caller accounts for (the frame is
 *     frozen for the change); otherwise -EBUSY. The same mode is always
 *     fine. A mapped frame is changed by unmapping it first.
 * The x86 encoders (pagestate/x86.h) fail with -EOPNOTSUPP where Linux would
 * fall back to UC- silently.
 *
 * A protection change (ps_prot_mprotect(): read-only or writable) changes
 * only MAYWRITE and WRITE of each entry (ps_pte_set_maywrite()), never the
 * frame, the cache mode, ENC, uffd-wp, DIRTY or ACCESSED, as Linux's
 * pte_modify() keeps _PAGE_CHG_MASK.
 *
 * ---------------------------------------------------------------------------
 * Encryption
 * ---------------------------------------------------------------------------
 *
 * A page is private (encrypted, owned by the guest) or shared (decrypted,
 * visible to the host and to devices). In the page word PRIVATE is that
 * state, and INACCESSIBLE says that the CPU may not touch the contents until
 * the make-accessible hook has run (a private page, or a shared one removed
 * from the owner's own mappings). A frame is created shared and accessible (a
 * zero word); conversion to private sets both flags. An owner that creates
 * frames private by hand sets PRIVATE and INACCESSIBLE together, before the
 * frame is first mapped.
 *
 * ---------------------------------------------------------------------------
 * Conversion (ps_prot_convert())
 * ---------------------------------------------------------------------------
 *
 * Converts the frames mapped in a range between shared and private, all or
 * nothing, in the order of Linux's set_memory_decrypted():
 *
 *   1. Take the space's writer mutex (no map, unmap or discard meanwhile;
 *      a ps_space_map_range() of several chunks in progress anywhere in the
 *      space is waited for first) and start a PS_NOTIFIER_CONVERSION
 *      invalidation of the range.
 *   2. Freeze every frame not yet in the target state with its expected
 *      references: the mapping's one plus opts->extra_refs. A frame that
 *      holds a pin, a CPU map (even one whose reference is declared in
 *      extra_refs) or any other reference cannot be frozen: the call waits
 *      (see "Waiting") or fails at that page, and every frame frozen so far
 *      is unfrozen, with nothing changed.
 *   3. Page by page, in address order: the prepare hook; the flip (PRIVATE,
 *      INACCESSIBLE with it, and the entry's ENC bit, nothing else); the
 *      finish hook.
 *   4. Unfreeze every frame with the same references, end the invalidation,
 *      drop the mutex.
 *
 * Pins and conversions. A pin that expects shared memory, a CPU map without
 * PS_KMAP_PRIVATE and the secondary-map helper take their reference in one
 * atomic step that also refuses a PRIVATE frame, on the word the conversion
 * freezes. So exactly one wins: the pin first (the conversion fails at that
 * page with -EAGAIN, or waits), or the conversion (the pin waits while the
 * frame is frozen, then finds it PRIVATE and fails with -EPERM). A private
 * pin (PS_PIN_PRIVATE, pagestate/space.h) keeps the frame resident and
 * unconverted, and makes its contents accessible to no one: it is for
 * trusted agents (firmware, a TDISP device, encrypted migration).
 *
 * Waiting (PS_CONVERT_WAIT). Without it, a page held by a pin or a CPU map
 * fails the call at once; other references (a racing lookup, a pin backing
 * out, a ps_space_writeback() callback copying the frame) are retried for up
 * to PS_CONVERT_TRANSIENT_NS. With it, the call waits until every page can be
 * frozen, or until opts->wait_ns has passed since the first page it had to
 * wait for; pages frozen so far stay frozen meanwhile. A frame pinned with
 * PS_PIN_LONGTERM is never waited for: -EBUSY at once, while a long-term pin
 * of it is held, and only then.
 *
 * Hooks and quarantine (struct ps_prot_hooks). A prepare failure fails the
 * call with -EIO, and the pages before it are converted back: nothing has
 * changed. A finish failure leaves the page's state unknown: the page is
 * quarantined, the other pages are converted back, and the call fails with
 * -EIO. Converting back runs the reverse conversion with the same hooks; a
 * page whose reverse hooks fail is quarantined too. A quarantined frame is
 * POISONED, its entry a POISONED marker (faults report PS_FAULT_POISONED;
 * pins, maps, conversion and kmap refuse it), and its mapping's reference is
 * leaked: it is never freed or handed out again. opts->quarantined counts them.
 *
 * Errors and error_offset. *error_offset receives the byte offset from @start
 * of the page that stopped the call, for every error that concerns a page
 * (all but -EINVAL and -ENOMEM); otherwise it is not written.
 *   -EAGAIN     a page is pinned (not long-term), CPU-mapped or holds other
 *               references than expected, or is frozen by someone else;
 *               with PS_CONVERT_WAIT: still so when the budget ran out.
 *               Drop them (or wait) and call again.
 *   -EBUSY      a page is pinned with PS_PIN_LONGTERM: it will not drain.
 *   -ENOENT     a page has no present entry (without
 *               PS_CONVERT_SKIP_MISSING). Populate it first: the state
 *               belongs to frames, not to addresses.
 *   -EHWPOISON  a page's frame is poisoned (quarantined).
 *   -EIO        a platform hook failed (opts->hook_error has its errno).
 * On every error no frame of the range has changed state, except the
 * quarantined ones.
 *
 * Where this differs from Linux and KVM (docs/prot.md, "Where it differs from
 * Linux and KVM", says why): pins are seen exactly and decided against per
 * page in one atomic step; short-term pins can be waited for and long-term
 * ones are -EBUSY; hooks run per page, so a failure quarantines one page, not
 * the range; a page without a present entry fails (or is skipped).
 *
 * ---------------------------------------------------------------------------
 * CPU maps (ps_prot_kmap())
 * ---------------------------------------------------------------------------
 *
 * A CPU that reads or writes a frame's contents brackets the access with
 * ps_prot_kmap() / ps_prot_kunmap(), as the kernel uses kmap(). A kmap counts
 * one CPU map, and the CPU maps of a frame hold one reference on it between
 * them (so a conversion refuses the page): the first map takes it, the last
 * kunmap drops it, and a kmap + kunmap of a frame already CPU-mapped is one
 * atomic add and one subtract on the count. The first CPU map of an
 * INACCESSIBLE frame calls the make-accessible hook (Linux's
 * arch_make_page_accessible()) exactly once, however many threads kmap it at
 * the same time; if the hook fails, the kmap fails and nothing changes. The
 * frame then stays accessible until a conversion to private or
 * ps_prot_set_inaccessible(). A kmap refuses a private frame unless
 * PS_KMAP_PRIVATE. Pins never call the hook: a pin is not a CPU access (Linux
 * calls it for FOLL_PIN; docs/prot.md, "CPU maps and the make-accessible
 * hook", says why). Write-back hands frames to its callback as they are: a
 * callback that may read a private or inaccessible frame brackets the read
 * with ps_prot_kmap() / ps_prot_kunmap().
 *
 * ---------------------------------------------------------------------------
 * The access check (ps_prot_check_access())
 * ---------------------------------------------------------------------------
 *
 * A VMM's fault path knows whether a guest access was private or shared. If
 * that kind does not match the page's state, KVM exits to the VMM with
 * KVM_EXIT_MEMORY_FAULT (gpa, size, KVM_MEMORY_EXIT_FLAG_PRIVATE), and the VMM
 * converts the page or stops the guest. ps_prot_check_access() is that check:
 * it fills a struct ps_memory_fault with the part of the access inside the
 * first page that does not match, and its kind.
 *
 * ---------------------------------------------------------------------------
 * Ordering and progress
 * ---------------------------------------------------------------------------
 *
 *   wait-free   ps_prot_check_access, ps_prot_kmap_count
 *   lock-free   ps_prot_kmap when the frame is already CPU-mapped,
 *               ps_prot_kunmap, ps_prot_set_cache of a free frame
 *   blocking    ps_prot_set_cache with expected_refs (writer mutex; it
 *               freezes the frame briefly: others wait meanwhile),
 *               ps_prot_convert (writer mutex, invalidation, hooks, the
 *               wait), ps_prot_mprotect (writer mutex, invalidation),
 *               ps_prot_kmap's first CPU map (the LOCKED bit and the hook)
 *               and any kmap of a frame being converted (it waits for the
 *               unfreeze), ps_prot_set_inaccessible (LOCKED),
 *               ps_prot_set_hooks (mutex); every call that takes the
 *               writer mutex first waits for the ps_space_map_range()
 *               calls of several chunks in progress in the space
 *
 *   ps_prot_convert       the unfreeze of each frame is a release: a pin or
 *                         kmap that finds the frame in its new state (an
 *                         acquiring try) sees the new entry and what the
 *                         hooks wrote; the invalidation's end is a release
 *                         for secondary-mapping readers.
 *   ps_prot_kmap          acquire: the caller sees what the make-accessible
 *                         hook did and what earlier holders wrote.
 *   ps_prot_kunmap        release: the caller's accesses come before it.
 *   ps_prot_check_access  acquire loads: an answer "matches" was true at
 *                         the instant of the load.
 */
#ifndef PAGESTATE_PROT_H
#define PAGESTATE_PROT_H

#include <pagestate/compiler.h>
#include <pagestate/page.h>
#include <pagestate/space.h>

#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

/*
 * Cache modes and encryption states: enum ps_cache_mode, PS_CACHE_NR, enum
 * ps_enc_state, ps_page_cache_mode_name() and the page-word operations that
 * store them (ps_page_cache_mode(), ps_page_enc_state(),
 * ps_page_get_or_revive_cache(), ps_page_set_cache_if_free()) are in
 * pagestate/page.h, beside the word that holds them.
 */

/* --- the space operations: hooks ------------------------------------------ */

/**
 * struct ps_prot_hooks - the platform's callbacks (each may be NULL).
 * @prepare: before page @addr (frame @frame) is flipped to @to
 *	(enc_status_change_prepare(): e.g. TDX MapGPA + accept for shared to
 *	private). Return 0, or a negative errno: the conversion fails with
 *	-EIO and this page has not changed.
 * @finish: after the flip (enc_status_change_finish(): e.g. SNP's RMP update
 *	for private to shared). Return 0, or a negative errno: the page is
 *	quarantined and the conversion fails with -EIO.
 * @make_accessible: the first CPU map of INACCESSIBLE frame @frame
 *	(arch_make_page_accessible(): export a secure page, put it back in the
 *	VMM's own mapping). Return 0, or a negative errno that ps_prot_kmap()
 *	returns (nothing changed).
 * @ctx: handed to every hook.
 *
 * Context: @prepare and @finish run in the converting thread with the
 * space's writer mutex held and inside the conversion's invalidation, the
 * frame frozen: they must not map, unmap, discard, convert or mprotect in
 * the same space, nor pin, kmap or fault the frame. The rollback of a failed
 * conversion calls them again with the reverse @to. @make_accessible runs
 * in the kmapping thread under the frame's LOCKED bit, with the kmap's
 * reference held: it must not kmap, fault, write back or set_inaccessible
 * that frame. None runs inside an RCU read-side section.
 */
struct ps_prot_hooks {
	int (*prepare)(void *ctx, struct ps_space *space, uint64_t addr,
		       uint64_t frame, enum ps_enc_state to);
	int (*finish)(void *ctx, struct ps_space *space, uint64_t addr,
		      uint64_t frame, enum ps_enc_state to);
	int (*make_accessible)(void *ctx, struct ps_space *space,
			       uint64_t frame);
	void *ctx;
};

/**
 * ps_prot_set_hooks() - install hooks for every later conversion and
 * kmap of a space.
 * @space: the space.
 * @hooks: the hooks (copied), or NULL to remove them.
 *
 * A conversion uses the hooks in force when it started; a kmap those in
 * force when it calls make_accessible. Replaced sets are kept until
 * ps_space_destroy(), so a hook running meanwhile is never freed under it.
 * Context: any thread; not from a hook or a notifier callback of this space
 * (the writer mutex). Ordering: release store of the new set (kmaps and
 * conversions load it with acquire). Progress: blocking (the writer mutex,
 * allocation).
 * Return: 0; -ENOMEM (nothing changed).
 */
int ps_prot_set_hooks(struct ps_space *space,
		      const struct ps_prot_hooks *hooks);

/* --- conversion ----------------------------------------------------------- */

/* Conversion flags. */
#define PS_CONVERT_WAIT 0x1u	     /* wait (bounded) for pins, CPU maps */
#define PS_CONVERT_SKIP_MISSING 0x2u /* leave pages with no present entry */
#define PS_CONVERT_INACCESSIBLE 0x4u /* to shared: keep pages INACCESSIBLE */
#define PS_CONVERT_FLAGS_ALL \
	(PS_CONVERT_WAIT | PS_CONVERT_SKIP_MISSING | PS_CONVERT_INACCESSIBLE)

/* Default budget of PS_CONVERT_WAIT (opts NULL or wait_ns 0): 100 ms. */
#define PS_CONVERT_WAIT_DEFAULT_NS UINT64_C(100000000)
/* How long references that are neither pins nor CPU maps are retried. */
#define PS_CONVERT_TRANSIENT_NS UINT64_C(200000)

/**
 * struct ps_convert_opts - the less common inputs and the outputs of a
 * conversion (pass NULL for the defaults).
 * @extra_refs: in: references each frame holds beyond its mapping's, that
 *	the caller accounts for (its own, not another mapping's: an alias
 *	mapping outside the range would keep the old ENC bit, and a frame mapped
 *	twice inside it fails the call with -EAGAIN at its second page). They
 *	must stay held during the call. The CPU maps' reference (ps_prot_kmap())
 *	cannot be declared: a frame CPU-mapped when it is frozen fails the call
 *	with -EAGAIN at its page, declared or not. Default 0.
 * @wait_ns: in: the PS_CONVERT_WAIT budget, 0 for the default.
 * @converted: out: pages whose state this call changed (0 on failure;
 *	pages already in the target state are not counted).
 * @quarantined: out: pages this call quarantined (the overview of
 *	pagestate/prot.h, "Hooks and quarantine").
 * @hook_error: out: the errno of the failed hook behind -EIO, else 0.
 */
struct ps_convert_opts {
	uint64_t extra_refs;
	uint64_t wait_ns;
	uint64_t converted;
	uint64_t quarantined;
	int hook_error;
};

/**
 * ps_prot_convert() - convert the frames mapped in [@start, @start + @len)
 * to @to, all or nothing.
 * @space: the space.
 * @start: the first page (aligned, inside the space).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @to: PS_ENC_PRIVATE or PS_ENC_SHARED.
 * @flags: PS_CONVERT_*.
 * @opts: NULL, or the extra inputs and the outputs.
 * @error_offset: NULL, or receives the offset from @start of the page that
 *	stopped the call (every error but -EINVAL and -ENOMEM).
 *
 * To private: PRIVATE and INACCESSIBLE are set, and the entry gets ENC. To
 * shared: both are cleared (INACCESSIBLE stays set with
 * PS_CONVERT_INACCESSIBLE), and ENC too. Pages already in the target state
 * are left as they are. The steps, the rule against pins and CPU maps, the
 * waits and the hooks are in the overview of pagestate/prot.h, "Conversion".
 * Memory: two bits per page of the range, and 24 bytes per 2 MiB of it plus
 * 384, for the duration of the call.
 * Context: any thread; not from a notifier callback or a hook of this space
 * (the writer mutex), nor holding a lock a notifier callback takes.
 * Ordering: each frame's unfreeze is a release (a pin or kmap that finds
 * the new state sees the new entry and what the hooks did); the
 * invalidation brackets the change (pagestate/notifier.h).
 * Progress: blocking (the writer mutex, the invalidation, the hooks, the
 * bounded waits).
 * Return: 0; -EINVAL (bad range, @to, @flags or extra_refs; nothing
 * happened, not even the invalidation); -ENOMEM; or a per-page error:
 * -EAGAIN (pinned, CPU-mapped, other references, or frozen by someone else),
 * -EBUSY (a long-term pin), -ENOENT (no present entry), -EHWPOISON
 * (quarantined), -EIO (a hook failed), with the page's offset in *@error_offset
 * (the overview of pagestate/prot.h, "Errors and error_offset"). On every error
 * no frame has changed state but the quarantined ones.
 */
int ps_prot_convert(struct ps_space *space, uint64_t start, uint64_t len,
		    enum ps_enc_state to, unsigned int flags,
		    struct ps_convert_opts *opts, uint64_t *error_offset);

/* --- CPU maps ------------------------------------------------------------- */

/* kmap flags. */
#define PS_KMAP_PRIVATE 0x1u /* allow a private frame (its ciphertext) */

/**
 * ps_prot_kmap() - the CPU is about to access @frame's contents.
 * @space: the space.
 * @frame: the frame (an index below the space's nframes).
 * @flags: 0 or PS_KMAP_PRIVATE.
 *
 * Counts one CPU map; the CPU maps of the frame hold one reference on it
 * between them, which the first takes. The first CPU map of an INACCESSIBLE
 * frame calls the make-accessible hook first, exactly once however many
 * threads race (without a hook, the frame simply becomes accessible, as
 * Linux's default arch_make_page_accessible() is a no-op). The frame must be
 * in use (LIVE): the caller holds it mapped, pinned or referenced. A frame
 * being converted is waited for. A 4 KiB frame of a whole 2 MiB or 1 GiB
 * frame (ps_space_set_frame_order()) is mapped without splitting that frame:
 * the maps' reference is one on the whole frame's word (released by the last
 * kunmap, also if the frame was split meanwhile), the frame is private,
 * poisoned or inaccessible as a whole, and the first map of any of its pages
 * that finds it inaccessible calls the hook for each of its 4 KiB frames.
 * Context: any thread; not from this frame's make_accessible hook.
 * Ordering: acquire. Progress: lock-free when the frame is already
 * CPU-mapped; otherwise blocking (the frame's LOCKED bit and the hook; a
 * frozen frame is waited for).
 * Return: 0; -EINVAL (@frame out of range, unknown flags); -ENOENT (the
 * frame is free); -EPERM (private, without PS_KMAP_PRIVATE); -EHWPOISON
 * (poisoned); -EOVERFLOW (reference limit, or PS_PAGE_REFS_MAX CPU maps
 * already); -ENOMEM (the space's first kmap, or first ps_prot_set_hooks(),
 * reserves its per-frame CPU-map counts, 4 bytes of address space per frame,
 * and that failed); the hook's negative errno. On error nothing changed.
 */
int ps_prot_kmap(struct ps_space *space, uint64_t frame, unsigned int flags);

/**
 * ps_prot_kunmap() - end one CPU map of @frame.
 * @space: the space.
 * @frame: a frame this thread (or one it hands over to) CPU-mapped.
 *
 * The count drops; the last map's kunmap drops the maps' reference, and the
 * free_frame hook runs if that was the frame's last reference. The frame stays
 * accessible.
 * Context: any thread; the free_frame hook runs in it, with no library
 * lock held. Ordering: release. Progress: lock-free.
 * Return: 0; -EINVAL if @frame is out of range or not CPU-mapped (nothing
 * changed).
 */
int ps_prot_kunmap(struct ps_space *space, uint64_t frame);

/**
 * ps_prot_kmap_count() - how many CPU maps a frame has now.
 * @space: the space.
 * @frame: the frame.
 *
 * Context: any thread. Ordering: acquire load. Progress: wait-free.
 * Return: the count, 0 if @frame is out of range.
 */
uint32_t ps_prot_kmap_count(struct ps_space *space, uint64_t frame);

/**
 * ps_prot_set_inaccessible() - mark @frame INACCESSIBLE again.
 * @space: the space.
 * @frame: the frame; it may be free. Or a whole 2 MiB or 1 GiB frame named as
 *	its unit (PS_SPACE_UNIT() of its first frame and its order).
 *
 * For an owner that removed the frame from its own mappings (its "direct
 * map"): the next first CPU map calls the make-accessible hook again. A unit
 * marks the whole frame's word (it must be a whole frame of that order:
 * -EINVAL otherwise), refused while any of its pages is CPU-mapped. A 4 KiB
 * frame of a whole huge frame splits that frame's state first, under the
 * space's writer mutex, and marks its own word only.
 * Context: any thread; not from this frame's make_accessible hook, nor, for a
 * 4 KiB frame of a whole huge frame, from a hook or callback run under the
 * writer mutex.
 * Ordering: acquire load of the count (pairs with kunmap's release: the
 * CPU maps' accesses are over), acq_rel flag change.
 * Progress: blocking (the frame's LOCKED bit; the writer mutex for a split).
 * Return: 0; -EINVAL (@frame out of range, not a whole frame of the unit's
 * order); -EBUSY while it is CPU-mapped or being converted, or its huge frame
 * could not be split (nothing changed).
 */
int ps_prot_set_inaccessible(struct ps_space *space, uint64_t frame);

/* --- the access check ----------------------------------------------------- */

/* struct ps_memory_fault flags: KVM_MEMORY_EXIT_FLAG_PRIVATE's value. */
#define PS_MEMORY_FAULT_PRIVATE (UINT64_C(1) << 3)

/**
 * struct ps_memory_fault - KVM's run->memory_fault, field for field.
 * @flags: PS_MEMORY_FAULT_PRIVATE if the access was private.
 * @addr: the first byte of the access inside the offending page.
 * @size: the bytes of the access inside that page.
 */
struct ps_memory_fault {
	uint64_t flags;
	uint64_t addr;
	uint64_t size;
};

/**
 * ps_prot_check_access() - does an access of kind @kind to [@addr, @addr +
 * @size) match the state of the pages it touches?
 * @space: the space.
 * @addr: the first byte accessed (any alignment).
 * @size: the bytes accessed (at least 1; the range must stay in the space).
 * @kind: PS_ENC_PRIVATE for a private (encrypted) access, else PS_ENC_SHARED.
 * @fault: receives the report on every error but -EINVAL.
 *
 * Pages are checked in address order; the first that fails stops the
 * check, and @fault describes the part of the access inside it.
 * Context: any thread (a vCPU's fault path). Ordering: acquire loads: a
 * "matches" was true at the instant of each page's load; a conversion may
 * follow at once, and the fault path retries as with any translation.
 * Progress: wait-free.
 * Return: 0 if every page is mapped with a frame in state @kind; -EFAULT
 * on a mismatch (KVM_RUN's -EFAULT with KVM_EXIT_MEMORY_FAULT: convert, or
 * stop the guest); -ENOENT if a page has no present entry (populate it);
 * -EHWPOISON if a page is poisoned (a POISONED marker or frame); -EINVAL for
 * @size 0, a range that wraps or leaves the space, or an unknown @kind.
 */
int ps_prot_check_access(struct ps_space *space, uint64_t addr, uint64_t size,
			 enum ps_enc_state kind, struct ps_memory_fault *fault);

/* --- cache modes and protection changes ----------------------------------- */

/**
 * ps_prot_set_cache() - give @frame cache mode @mode.
 * @space: the space.
 * @frame: the frame, or a whole 2 MiB or 1 GiB frame named as its unit
 *	(PS_SPACE_UNIT() of its first frame and its order).
 * @mode: the mode.
 * @expected_refs: 0 for a free frame; otherwise the exact references the
 *	frame holds that the caller accounts for and that are not mappings
 *	(e.g. the owner's own). The frame is frozen for the change.
 *
 * A unit changes the whole frame's word, once (it must be a whole frame of
 * that order: -EINVAL otherwise). A 4 KiB frame of a whole huge frame splits
 * that frame's state first (under the space's writer mutex), and only its own
 * word changes.
 *
 * The same mode is always fine (0, nothing changes). Otherwise the frame
 * must be free (not LIVE, not frozen) or, with @expected_refs, LIVE with
 * exactly that many references and no pins: one frame, one cache mode (the
 * overview of pagestate/prot.h, "Cache modes"). With @expected_refs the freeze
 * is made under the space's writer mutex, after any map in progress (a map of
 * several chunks tells the frames it claimed by their freeze, docs/space.md).
 * Context: any thread; with @expected_refs, not from a hook or callback run
 * under the writer mutex. Ordering: acquire and release (one CAS on a free
 * frame; freeze and unfreeze otherwise). Progress: lock-free for a free
 * frame; blocking with @expected_refs (the writer mutex; while the frame is
 * frozen for the change, others that want it wait).
 * Return: 0; -EINVAL (@frame out of range, unknown @mode, @expected_refs over
 * PS_PAGE_REFS_MAX); -EBUSY (in use otherwise: mapped, pinned, CPU-mapped,
 * frozen, or held by a ps_space_writeback() whose callback is copying it; retry
 * after the write-back); -EHWPOISON (poisoned). On error nothing changed.
 */
int ps_prot_set_cache(struct ps_space *space, uint64_t frame,
		      enum ps_cache_mode mode, uint64_t expected_refs);

/* Protection of ps_prot_mprotect(), mprotect()'s values. */
#define PS_PROT_READ 0x1u
#define PS_PROT_WRITE 0x2u

/**
 * ps_prot_mprotect() - change the access rights of the pages mapped in
 * [@start, @start + @len).
 * @space: the space.
 * @start: the first page (aligned, inside the space).
 * @len: the length (a non-zero multiple of the page size, inside the space).
 * @prot: PS_PROT_READ (read-only) or PS_PROT_READ | PS_PROT_WRITE
 *	(PS_PROT_WRITE alone means both, as on x86).
 *
 * Only MAYWRITE and WRITE of present entries change (ps_pte_set_maywrite()):
 * never the frame, cache mode, ENC, uffd-wp, DIRTY or ACCESSED. Granting
 * write sets MAYWRITE only: the next write fault makes the entry writable
 * and the frame dirty (dirty before writable). Revoking write is bracketed
 * by an invalidation (PS_NOTIFIER_PROTECTION), so writable secondary
 * mappings go. Entries that are not present are left alone (there is no
 * VMA; a page mapped later takes its map's flags). A 2 MiB or 1 GiB entry
 * inside the range changes whole, by one compare-and-swap (it is not split);
 * one that the range cuts is split first, with the state of a whole huge frame
 * it maps (as ps_prot_convert() does), and its pages in the range change.
 * Context: any thread; not from a notifier callback or a hook of this space
 * (the writer mutex). Ordering: each entry changes by the page table's
 * release CAS, inside the invalidation when write is revoked.
 * Progress: blocking (the writer mutex, the invalidation).
 * Return: 0; -EINVAL (bad range, unknown bits); -EOPNOTSUPP for PROT_NONE
 * (entries have no "not readable" state: unmap, or write-protect with
 * uffd-wp, instead); -ENOMEM or -EBUSY (splitting a huge entry or frame
 * at an edge of the range failed: no access right changed).
 */
int ps_prot_mprotect(struct ps_space *space, uint64_t start, uint64_t len,
		     unsigned int prot);

PS_END_DECLS

#endif /* PAGESTATE_PROT_H */
