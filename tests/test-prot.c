// SPDX-License-Identifier: MIT
/*
 * tests/test-prot.c - per-page protection: cache-mode and encryption state of
 * the page word, and the space operations of lib/prot-convert.c and
 * lib/prot-kmap.c with the guarantees P1..P8 they cite: cache-mode conflicts,
 * mprotect keeping every other bit, conversion (all or nothing, exact error
 * offsets, waits, long-term pins, hooks, rollback, quarantine), CPU maps with
 * an exactly-once make-accessible hook, the access check, the
 * pin-versus-conversion races made to happen in their windows (failpoints), and
 * stress for "never both" and "exactly once".
 */
#include <pagestate/prot.h>

#include "../lib/failpoint.h"
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static const enum ps_cache_mode all_modes[] = {
	PS_CACHE_WB, PS_CACHE_WC, PS_CACHE_UC_MINUS,
	PS_CACHE_UC, PS_CACHE_WT, PS_CACHE_WP,
};

/* --- page word ----------------------------------------------------------- */

START_TEST(page_state_accessors)
{
	struct ps_page p = PS_PAGE_INIT(1);

	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_WB);
	ck_assert_int_eq(ps_page_enc_state(&p), PS_ENC_SHARED);
	for (size_t i = 0; i < sizeof(all_modes) / sizeof(all_modes[0]); i++) {
		ps_page_change_flags(&p, PS_PAGE_CACHE_MASK,
				     (uint64_t)all_modes[i]
					     << PS_PAGE_CACHE_SHIFT);
		ck_assert_int_eq(ps_page_cache_mode(&p), all_modes[i]);
	}
	ps_page_set_flags(&p, PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_page_enc_state(&p), PS_ENC_PRIVATE);
	ck_assert_int_eq(ps_page_cache_mode(&p), PS_CACHE_WP);
	ck_assert_uint_eq(ps_page_refs(&p), 1);
}
END_TEST

START_TEST(mode_names)
{
	ck_assert_str_eq(ps_page_cache_mode_name(PS_CACHE_WB), "WB");
	ck_assert_str_eq(ps_page_cache_mode_name(PS_CACHE_UC_MINUS), "UC-");
	ck_assert_str_eq(ps_page_cache_mode_name(PS_CACHE_WP), "WP");
	ck_assert_str_eq(ps_page_cache_mode_name((enum ps_cache_mode)6), "?");
}
END_TEST

/* === the space operations ================================================= */

#define PG PS_PGTABLE_PAGE_SIZE
#define NFRAMES 512
#define SPACE_SIZE (UINT64_C(1) << 30)

/* --- fixture: a space with recording hooks -------------------------------- */

/* One call of a conversion hook, with the state the hook saw. */
struct hook_call {
	char kind; /* 'p'repare or 'f'inish */
	uint64_t addr, frame;
	enum ps_enc_state to;
	bool word_private, entry_enc, frozen;
};

struct seen {
	_Atomic(unsigned) freed[NFRAMES];
	_Atomic(unsigned) freed_total;
	_Atomic(unsigned) make_calls;
	_Atomic(int) make_rc;
	_Atomic(int) make_yield; /* widen the hook's window (stress) */
	/* Hooks that ran without the LOCKED bit (teardown checks). */
	_Atomic(unsigned) make_unlocked;
	/* The kmap stress: racers inside kmap; hooks that saw both. */
	_Atomic(unsigned) kmap_inside, make_contended;
	struct hook_call log[64];
	unsigned nlog;
	/* Where the hook fails, for this target state (UINT64_MAX: nowhere). */
	uint64_t fail_prepare_addr, fail_finish_addr;
	enum ps_enc_state fail_prepare_to, fail_finish_to;
};

static struct seen seen;
static struct ps_space *sp;

static void on_free(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	atomic_fetch_add(&seen.freed[frame], 1);
	atomic_fetch_add(&seen.freed_total, 1);
}

static ps_pte_t entry(uint64_t addr)
{
	ps_pte_t e;

	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), addr, &e), 0);
	return e;
}

static struct ps_page *pg(uint64_t frame)
{
	return ps_space_page(sp, frame);
}

static void log_hook(char kind, uint64_t addr, uint64_t frame,
		     enum ps_enc_state to)
{
	struct hook_call *h;

	ck_assert_uint_lt(seen.nlog, 64);
	h = &seen.log[seen.nlog++];
	h->kind = kind;
	h->addr = addr;
	h->frame = frame;
	h->to = to;
	h->word_private = ps_page_test_flags(pg(frame), PS_PAGE_PRIVATE);
	h->entry_enc = ps_pte_is_encrypted(entry(addr));
	h->frozen = ps_page_is_frozen(pg(frame));
}

static int on_prepare(void *ctx, struct ps_space *s, uint64_t addr,
		      uint64_t frame, enum ps_enc_state to)
{
	(void)ctx;
	ck_assert_ptr_eq(s, sp);
	log_hook('p', addr, frame, to);
	if (addr == seen.fail_prepare_addr && to == seen.fail_prepare_to)
		return -ENOSPC;
	return 0;
}

static int on_finish(void *ctx, struct ps_space *s, uint64_t addr,
		     uint64_t frame, enum ps_enc_state to)
{
	(void)ctx;
	ck_assert_ptr_eq(s, sp);
	log_hook('f', addr, frame, to);
	if (addr == seen.fail_finish_addr && to == seen.fail_finish_to)
		return -EIO;
	return 0;
}

static int on_make_accessible(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	/*
	 * P6: the hook runs under the frame's LOCKED bit. Counted, not
	 * asserted: a kmap may run it in a worker thread, where ck_assert is
	 * not safe; teardown asserts the count.
	 */
	if (!ps_page_test_flags(pg(frame), PS_PAGE_LOCKED))
		atomic_fetch_add(&seen.make_unlocked, 1);
	if (atomic_load(&seen.make_yield)) {
		sched_yield();
		if (atomic_load(&seen.kmap_inside) > 1) /* the other racer */
			atomic_fetch_add(&seen.make_contended, 1);
	}
	atomic_fetch_add(&seen.make_calls, 1);
	return atomic_load(&seen.make_rc);
}

static const struct ps_prot_hooks all_hooks = {
	.prepare = on_prepare,
	.finish = on_finish,
	.make_accessible = on_make_accessible,
};

static const struct ps_prot_hooks make_only_hooks = {
	.make_accessible = on_make_accessible,
};

/*
 * Conversions without prepare/finish hooks commit after phase 1 and flip
 * while unfreezing (P3); with them, three phases. The conversion tcases run
 * in both configurations.
 */
static bool conv_hooks;

static void setup_with(bool hooks)
{
	struct ps_space_config cfg;

	memset(&seen, 0, sizeof(seen));
	seen.fail_prepare_addr = UINT64_MAX;
	seen.fail_finish_addr = UINT64_MAX;
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.free_frame = on_free;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	conv_hooks = hooks;
	ck_assert_int_eq(ps_prot_set_hooks(sp, hooks ? &all_hooks
						     : &make_only_hooks),
			 0);
}

static void setup(void)
{
	setup_with(true);
}

static void setup_no_conv_hooks(void)
{
	setup_with(false);
}

static void teardown(void)
{
	ck_assert_msg(atomic_load(&seen.make_unlocked) == 0,
		      "%u make_accessible hooks ran without the LOCKED bit",
		      atomic_load(&seen.make_unlocked));
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

/* A subscription that records the events it is told of. */
struct watch {
	struct ps_interval sub;
	_Atomic(unsigned) calls;
	_Atomic(int) last_event;
};

static bool watch_invalidate(struct ps_interval *sub,
			     const struct ps_invalidation *inv,
			     uint64_t cur_seq, void *priv)
{
	struct watch *w = priv;

	ps_interval_set_seq(sub, cur_seq);
	atomic_fetch_add(&w->calls, 1);
	atomic_store(&w->last_event, (int)inv->event);
	return true;
}

static const struct ps_interval_ops watch_ops = {
	.invalidate = watch_invalidate};

static void watch_init(struct watch *w, uint64_t start, uint64_t len)
{
	memset(w, 0, sizeof(*w));
	ck_assert_int_eq(ps_interval_insert(&w->sub, ps_space_notifier(sp),
					    start, len, &watch_ops, w),
			 0);
}

static uint64_t flags_of(uint64_t frame)
{
	return ps_page_flags(pg(frame));
}

static uint64_t elapsed_ms(struct timespec a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (uint64_t)((b.tv_sec - a.tv_sec) * 1000 +
			  (b.tv_nsec - a.tv_nsec) / 1000000);
}

/* --- cache modes (P7) ----------------------------------------------------- */

START_TEST(cache_set_on_free_and_in_use_frames)
{
	ck_assert_int_eq(ps_prot_set_cache(sp, 5, PS_CACHE_WC, 0), 0);
	ck_assert_int_eq(ps_page_cache_mode(pg(5)), PS_CACHE_WC);
	ck_assert(!ps_page_is_live(pg(5))); /* still free */
	ck_assert_int_eq(ps_space_map(sp, 0, 5, 0), 0);
	ck_assert_uint_eq(ps_pte_cache(entry(0)), PS_CACHE_WC);
	/* Mapped: another mode conflicts, the same is fine. */
	ck_assert_int_eq(ps_prot_set_cache(sp, 5, PS_CACHE_UC, 0), -EBUSY);
	ck_assert_int_eq(ps_prot_set_cache(sp, 5, PS_CACHE_WC, 0), 0);
	ck_assert_int_eq(ps_page_cache_mode(pg(5)), PS_CACHE_WC);
	ck_assert_uint_eq(ps_page_refs(pg(5)), 1);
	/* The owner's own reference, declared: frozen for the change. */
	ck_assert_int_eq(ps_page_init(pg(6), 1), 0);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_UC, 0), -EBUSY);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_UC, 2), -EBUSY);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_UC, 1), 0);
	ck_assert_int_eq(ps_page_cache_mode(pg(6)), PS_CACHE_UC);
	ck_assert_uint_eq(ps_page_refs(pg(6)), 1);
	ck_assert(!ps_page_is_frozen(pg(6)));
	/* Mapped on top of the owner's reference: in use, -EBUSY. */
	ck_assert_int_eq(ps_space_map(sp, PG, 6, 0), 0);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_WT, 1), -EBUSY);
	ck_assert_int_eq(ps_page_cache_mode(pg(6)), PS_CACHE_UC);
	ck_assert_uint_eq(ps_page_refs(pg(6)), 2);
	/* Unmapped again: the owner changes it. */
	ck_assert_int_eq(ps_space_unmap(sp, PG, PG, 0), 0);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_WT, 1), 0);
	/* Bad input changes nothing. */
	ck_assert_int_eq(ps_prot_set_cache(sp, NFRAMES, PS_CACHE_WB, 0),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, (enum ps_cache_mode)6, 1),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_set_cache(sp, 6, PS_CACHE_WB,
					   PS_PAGE_REFS_MAX + 1),
			 -EINVAL);
	ps_page_set_flags(pg(7), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_prot_set_cache(sp, 7, PS_CACHE_WC, 0), -EHWPOISON);
	ck_assert_int_eq(ps_page_cache_mode(pg(7)), PS_CACHE_WB);
	ck_assert_int_eq(ps_page_cache_mode(pg(6)), PS_CACHE_WT);
}
END_TEST

START_TEST(cache_pinned_frame_is_in_use)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 8, 0), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	/* Only the pin is left: still in use. */
	ck_assert_int_eq(ps_prot_set_cache(sp, 8, PS_CACHE_WC, 0), -EBUSY);
	ck_assert_int_eq(ps_prot_set_cache(sp, 8, PS_CACHE_WC, 1), -EBUSY);
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_prot_set_cache(sp, 8, PS_CACHE_WC, 0), 0);
}
END_TEST

START_TEST(cache_map_requested_mode)
{
	/* A free frame takes the requested mode in the same step. */
	ck_assert_int_eq(ps_space_map(sp, 0, 10, PS_MAP_CACHE(PS_CACHE_WC)), 0);
	ck_assert_int_eq(ps_page_cache_mode(pg(10)), PS_CACHE_WC);
	ck_assert_uint_eq(ps_pte_cache(entry(0)), PS_CACHE_WC);
	/* An alias asking for another mode conflicts; nothing changes. */
	ck_assert_int_eq(ps_space_map(sp, PG, 10, PS_MAP_CACHE(PS_CACHE_UC)),
			 -EBUSY);
	ck_assert(ps_pte_is_none(entry(PG)));
	ck_assert_uint_eq(ps_page_refs(pg(10)), 1);
	ck_assert_int_eq(ps_page_cache_mode(pg(10)), PS_CACHE_WC);
	/* The same mode, or no request, is fine. */
	ck_assert_int_eq(ps_space_map(sp, PG, 10,
				      PS_MAP_WRITE | PS_MAP_CACHE(PS_CACHE_WC)),
			 0);
	ck_assert_int_eq(ps_space_map(sp, 2 * PG, 10, 0), 0);
	ck_assert_uint_eq(ps_pte_cache(entry(2 * PG)), PS_CACHE_WC);
	ck_assert(ps_pte_may_write(entry(PG)));
	ck_assert_uint_eq(ps_page_refs(pg(10)), 3);
	/* Bad flags. */
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 11,
				      PS_MAP_CACHE((enum ps_cache_mode)6)),
			 -EINVAL);
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 11, PS_MAP_CACHE_MASK),
			 -EINVAL);
	ck_assert(!ps_page_is_live(pg(11)));
	/* A quarantined free frame is never revived, not even for a moment. */
	ps_page_set_flags(pg(12), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 12,
				      PS_MAP_CACHE(PS_CACHE_UC)),
			 -EHWPOISON);
	ck_assert(!ps_page_is_live(pg(12)));
	ck_assert_int_eq(ps_page_cache_mode(pg(12)), PS_CACHE_WB);
	ck_assert(ps_pte_is_none(entry(3 * PG)));
}
END_TEST

START_TEST(cache_map_range_unwind_restores_modes)
{
	/* Frames 20 (free, UC), 21 (free, WB), 22 (in use, WB), 23 (free). */
	ck_assert_int_eq(ps_prot_set_cache(sp, 20, PS_CACHE_UC, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 100 * PG, 22, 0), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 20,
					    PS_MAP_CACHE(PS_CACHE_WC), NULL),
			 -EBUSY);
	for (uint64_t i = 0; i < 4; i++)
		ck_assert(ps_pte_is_none(entry(i * PG)));
	ck_assert(!ps_page_is_live(pg(20)));
	ck_assert(!ps_page_is_live(pg(21)));
	ck_assert_int_eq(ps_page_cache_mode(pg(20)), PS_CACHE_UC);
	ck_assert_int_eq(ps_page_cache_mode(pg(21)), PS_CACHE_WB);
	ck_assert_uint_eq(ps_page_refs(pg(22)), 1);
	ck_assert_int_eq(ps_page_cache_mode(pg(22)), PS_CACHE_WB);
	/* Unwinding revived frames never runs the free hook. */
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	/* -EEXIST after the frames were taken: the modes come back too. */
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 30, 0), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 20,
					    PS_MAP_CACHE(PS_CACHE_WT), NULL),
			 -EBUSY);
	ck_assert_int_eq(ps_space_unmap(sp, 100 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 20,
					    PS_MAP_CACHE(PS_CACHE_WT), NULL),
			 -EEXIST);
	ck_assert_int_eq(ps_page_cache_mode(pg(20)), PS_CACHE_UC);
	ck_assert_int_eq(ps_page_cache_mode(pg(21)), PS_CACHE_WB);
	ck_assert_int_eq(ps_page_cache_mode(pg(22)), PS_CACHE_WB);
	ck_assert(!ps_page_is_live(pg(22)));
}
END_TEST

/* --- mprotect ------------------------------------------------------------- */

START_TEST(mprotect_keeps_every_other_bit)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	const ps_pte_t rights = PS_PTE_MAYWRITE | PS_PTE_WRITE;
	struct watch w;
	ps_pte_t before[3], after;

	watch_init(&w, 0, 4 * PG);
	/* Page 0: writable, written (W, D, A), WT, private. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * PG, 40,
					    PS_MAP_WRITE |
						    PS_MAP_CACHE(PS_CACHE_WT),
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	/* Page 1: write-protected with uffd-wp (sync). */
	ck_assert_int_eq(ps_pgtable_register(pt, PG, PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, PG, PG), 0);
	for (int i = 0; i < 3; i++)
		before[i] = entry((uint64_t)i * PG);
	ck_assert(ps_pte_is_writable(before[0]));
	ck_assert(ps_pte_uffd_wp(before[1]));
	atomic_store(&w.calls, 0);

	ck_assert_int_eq(ps_prot_mprotect(sp, 0, 4 * PG, PS_PROT_READ), 0);
	ck_assert_uint_eq(atomic_load(&w.calls), 1);
	ck_assert_int_eq(atomic_load(&w.last_event), PS_NOTIFIER_PROTECTION);
	for (int i = 0; i < 3; i++) {
		after = entry((uint64_t)i * PG);
		ck_assert(!ps_pte_may_write(after) &&
			  !ps_pte_is_writable(after));
		ck_assert_uint_eq(after & ~rights, before[i] & ~rights);
	}
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE),
			 PS_FAULT_BAD_ACCESS);
	ck_assert(ps_pte_is_none(entry(3 * PG))); /* holes stay holes */

	/* Granting write: MAYWRITE only; no invalidation is needed. */
	ck_assert_int_eq(ps_prot_mprotect(sp, 0, 4 * PG, PS_PROT_WRITE), 0);
	ck_assert_uint_eq(atomic_load(&w.calls), 1);
	for (int i = 0; i < 3; i++) {
		after = entry((uint64_t)i * PG);
		ck_assert(ps_pte_may_write(after) &&
			  !ps_pte_is_writable(after));
		ck_assert_uint_eq(after & ~rights, before[i] & ~rights);
	}
	ck_assert_uint_eq(ps_pte_cache(entry(0)), PS_CACHE_WT);
	ck_assert(ps_pte_is_encrypted(entry(0)));
	ck_assert(ps_pte_uffd_wp(entry(PG)));
	/* The next write fault makes it writable again (dirty first). */
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_WP);

	ck_assert_int_eq(ps_prot_mprotect(sp, 0, PG, 0), -EOPNOTSUPP);
	ck_assert_int_eq(ps_prot_mprotect(sp, 0, PG, 0x4), -EINVAL);
	ck_assert_int_eq(ps_prot_mprotect(sp, 1, PG, PS_PROT_READ), -EINVAL);
	ck_assert_int_eq(ps_prot_mprotect(sp, 0, 0, PS_PROT_READ), -EINVAL);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_int_eq(ps_pgtable_unregister(pt, PG, PG), 0);
	ps_interval_remove(&w.sub);
}
END_TEST

/* --- conversion (P1..P4) -------------------------------------------------- */

START_TEST(convert_flips_state_and_enc_only)
{
	const uint64_t n = 8;
	struct ps_convert_opts o;
	ps_pte_t before[8];
	struct watch w;
	uint64_t off = 12345;

	watch_init(&w, 0, n * PG);
	ck_assert_int_eq(ps_space_map_range(sp, 0, n * PG, 100,
					    PS_MAP_WRITE |
						    PS_MAP_CACHE(PS_CACHE_WC),
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, 2 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_READ),
			 PS_FAULT_OK);
	for (uint64_t i = 0; i < n; i++)
		before[i] = entry(i * PG);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, 0, n * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	ck_assert_uint_eq(off, 12345); /* not written on success */
	ck_assert_uint_eq(o.converted, n);
	ck_assert_uint_eq(o.quarantined, 0);
	ck_assert_int_eq(atomic_load(&w.last_event), PS_NOTIFIER_CONVERSION);
	for (uint64_t i = 0; i < n; i++) {
		ps_pte_t e = entry(i * PG);

		ck_assert_uint_eq(e, before[i] | PS_PTE_ENC);
		ck_assert_uint_eq(flags_of(100 + i) & (PS_PAGE_PRIVATE |
						       PS_PAGE_INACCESSIBLE),
				  PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE);
		ck_assert_int_eq(ps_page_enc_state(pg(100 + i)),
				 PS_ENC_PRIVATE);
		ck_assert_int_eq(ps_page_cache_mode(pg(100 + i)), PS_CACHE_WC);
		ck_assert_uint_eq(ps_page_refs(pg(100 + i)), 1);
		ck_assert(!ps_page_is_frozen(pg(100 + i)));
	}
	/* Pages already in the target state are left alone. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, n * PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, 0);
	/* And back: exactly the entries and flags of before. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, n * PG, PS_ENC_SHARED, 0, &o,
					 NULL),
			 0);
	ck_assert_uint_eq(o.converted, n);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert_uint_eq(entry(i * PG), before[i]);
		ck_assert_uint_eq(flags_of(100 + i) & (PS_PAGE_PRIVATE |
						       PS_PAGE_INACCESSIBLE),
				  0);
	}
	/* No hook saw a frame outside a freeze. */
	for (unsigned k = 0; k < seen.nlog; k++)
		ck_assert(seen.log[k].frozen);
	ck_assert_uint_eq(seen.nlog, conv_hooks ? 4 * n : 0);
	ps_interval_remove(&w.sub);
}
END_TEST

/* The page word and entry of every page of a range, to compare. */
struct snapshot {
	uint64_t word[20];
	ps_pte_t pte[20];
};

static void snap(struct snapshot *s, uint64_t start, uint64_t first_frame,
		 uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		s->word[i] = ps_page_load(pg(first_frame + i));
		s->pte[i] = entry(start + i * PG);
	}
}

static void assert_same(const struct snapshot *a, const struct snapshot *b,
			uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		ck_assert_uint_eq(a->word[i], b->word[i]);
		ck_assert_uint_eq(a->pte[i], b->pte[i]);
	}
}

START_TEST(convert_pinned_page_in_the_middle)
{
	struct snapshot s0, s1;
	struct ps_convert_opts o;
	uint64_t f, off = 0;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 16 * PG, 200, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 9 * PG, PG, 0, &f), 0);
	snap(&s0, 0, 200, 16);
	memset(&o, 0, sizeof(o));
	o.converted = 77;
	ck_assert_int_eq(ps_prot_convert(sp, 0, 16 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 9 * PG);
	ck_assert_uint_eq(o.converted, 0);
	snap(&s1, 0, 200, 16);
	assert_same(&s0, &s1, 16);	 /* converts nothing */
	ck_assert_uint_eq(seen.nlog, 0); /* not even a prepare */
	/* The offset is relative to start. */
	ck_assert_int_eq(ps_prot_convert(sp, 4 * PG, 8 * PG, PS_ENC_PRIVATE, 0,
					 NULL, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 5 * PG);
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 16 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	ck_assert_uint_eq(o.converted, 16);
}
END_TEST

/*
 * Without prepare/finish hooks the conversion flips each entry's ENC bit in
 * its first pass, right after the page's freeze (P3); a page that fails
 * later in that pass makes it flip the entries back before it unfreezes.
 * Both ways: nothing visible changes, entries included.
 */
START_TEST(convert_failure_restores_entries)
{
	struct snapshot s0, s1;
	uint64_t f, off = 0;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 230, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 8 * PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert(ps_pte_is_encrypted(entry(0)));
	ck_assert_int_eq(ps_space_pin_range(sp, 5 * PG, PG, PS_PIN_PRIVATE, &f),
			 0);
	snap(&s0, 0, 230, 8);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 8 * PG, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 5 * PG);
	snap(&s1, 0, 230, 8);
	assert_same(&s0, &s1, 8);
	for (uint64_t i = 0; i < 8; i++) {
		ck_assert(ps_pte_is_encrypted(entry(i * PG)));
		ck_assert(!ps_page_is_frozen(pg(230 + i)));
	}
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 8 * PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert(!ps_pte_is_encrypted(entry(i * PG)));
}
END_TEST

/*
 * The commit path records what it froze as runs of consecutive frames, one
 * walk per leaf; past 16 runs (plus one per leaf) it falls back to a bitmap
 * (P3, "Runs"). Either way every frozen page is unfrozen exactly once, with
 * its entry flipped, or flipped back when a later page fails: scattered
 * frames (each page its own run, more than fit) and a range that crosses a
 * leaf boundary, converting and failing.
 */
static void convert_and_fail(uint64_t start, uint64_t n, const uint64_t *frames,
			     uint64_t pin_at)
{
	struct snapshot s0, s1;
	struct ps_convert_opts o;
	uint64_t f, off = 0;

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, start, n * PG, PS_ENC_PRIVATE, 0,
					 &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, n);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert(ps_pte_is_encrypted(entry(start + i * PG)));
		ck_assert_int_eq(ps_page_enc_state(pg(frames[i])),
				 PS_ENC_PRIVATE);
		ck_assert_uint_eq(ps_page_load(pg(frames[i])) &
					  (PS_PAGE_FROZEN | PS_PAGE_LIVE),
				  PS_PAGE_LIVE);
		ck_assert_uint_eq(ps_page_refs(pg(frames[i])), 1);
	}
	ck_assert_int_eq(ps_space_pin_range(sp, start + pin_at * PG, PG,
					    PS_PIN_PRIVATE, &f),
			 0);
	for (uint64_t i = 0; i < n; i++) {
		s0.word[i] = ps_page_load(pg(frames[i]));
		s0.pte[i] = entry(start + i * PG);
	}
	ck_assert_int_eq(ps_prot_convert(sp, start, n * PG, PS_ENC_SHARED, 0,
					 NULL, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, pin_at * PG);
	for (uint64_t i = 0; i < n; i++) {
		s1.word[i] = ps_page_load(pg(frames[i]));
		s1.pte[i] = entry(start + i * PG);
	}
	assert_same(&s0, &s1, n); /* entries flipped back, all unfrozen */
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_prot_convert(sp, start, n * PG, PS_ENC_SHARED, 0,
					 &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, n);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert(!ps_pte_is_encrypted(entry(start + i * PG)));
		ck_assert_int_eq(ps_page_enc_state(pg(frames[i])),
				 PS_ENC_SHARED);
		ck_assert_uint_eq(ps_page_refs(pg(frames[i])), 1);
	}
}

START_TEST(convert_runs_scattered_and_across_leaves)
{
	const uint64_t leaf = PS_PGTABLE_LEAF_PAGES * PG;
	uint64_t frames[20];

	/* 20 pages, each its own run: more than the 16 runs room holds. */
	for (uint64_t i = 0; i < 20; i++) {
		frames[i] = 300 + 2 * (19 - i);
		ck_assert_int_eq(ps_space_map(sp, i * PG, frames[i],
					      PS_MAP_WRITE),
				 0);
	}
	convert_and_fail(0, 20, frames, 18);
	/* 16 of them: the runs hold exactly. */
	convert_and_fail(4 * PG, 16, frames + 4, 15);
	/* Consecutive frames across a leaf boundary, failing past it. */
	for (uint64_t i = 0; i < 16; i++)
		frames[i] = 400 + i;
	ck_assert_int_eq(ps_space_map_range(sp, leaf - 6 * PG, 16 * PG, 400,
					    PS_MAP_WRITE, NULL),
			 0);
	convert_and_fail(leaf - 6 * PG, 16, frames, 11);
}
END_TEST

START_TEST(convert_refuses_cpu_mapped_and_unexpected_refs)
{
	struct ps_convert_opts o;
	uint64_t off;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 40, 0, NULL), 0);
	/* A CPU map holds a reference: the freeze sees it. */
	ck_assert_int_eq(ps_prot_kmap(sp, 43, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, NULL,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 3 * PG);
	ck_assert_int_eq(ps_prot_kunmap(sp, 43), 0);
	/* An undeclared reference: retried briefly, then -EAGAIN. */
	ck_assert_int_eq(ps_page_get(pg(41)), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, NULL,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, PG);
	/* Declared (every frame holds one more): converted. */
	for (uint64_t f = 40; f < 44; f++)
		if (f != 41)
			ck_assert_int_eq(ps_page_get(pg(f)), 0);
	memset(&o, 0, sizeof(o));
	o.extra_refs = 1;
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	for (uint64_t f = 40; f < 44; f++) {
		ck_assert_uint_eq(ps_page_refs(pg(f)), 2);
		ck_assert_int_eq(ps_page_enc_state(pg(f)), PS_ENC_PRIVATE);
		(void)ps_page_put(pg(f));
	}
	/* Declaring more than there are fails too. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_SHARED, 0, &o,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 0);
	/* A frame mapped twice in the range, its alias declared: it is frozen
	 * at the first page, so the second page fails; nothing changes. */
	ck_assert_int_eq(ps_space_map(sp, 8 * PG, 48, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 9 * PG, 48, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 8 * PG, 2 * PG, PS_ENC_PRIVATE, 0,
					 &o, &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, PG);
	ck_assert(!ps_page_is_frozen(pg(48)));
	ck_assert_uint_eq(ps_page_refs(pg(48)), 2);
	ck_assert_int_eq(ps_page_enc_state(pg(48)), PS_ENC_SHARED);
	ck_assert(!ps_pte_is_encrypted(entry(8 * PG)));
}
END_TEST

/*
 * A CPU map's reference declared in extra_refs (the caller's own map): the
 * freeze counts it as expected, so only the CPU-map count can refuse the
 * frame. Without that check the frame became private and INACCESSIBLE
 * while mapped (P5), and the next kmap took the fast path and never called
 * make_accessible. Now: -EAGAIN at that page, nothing changed, every frame
 * unfrozen, and after the kunmap the same call converts and the next kmap
 * calls the hook.
 */
START_TEST(convert_refuses_cpu_map_declared_in_extra_refs)
{
	struct ps_convert_opts o;
	uint64_t off = UINT64_MAX;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 160, 0, NULL), 0);
	ck_assert_int_eq(ps_page_get(pg(160)), 0);     /* declared, not a map */
	ck_assert_int_eq(ps_prot_kmap(sp, 161, 0), 0); /* the caller's own */
	memset(&o, 0, sizeof(o));
	o.extra_refs = 1;
	ck_assert_int_eq(ps_prot_convert(sp, 0, 2 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, PG);
	for (uint64_t f = 160; f < 162; f++) {
		ck_assert(!ps_page_is_frozen(pg(f)));
		ck_assert_uint_eq(ps_page_refs(pg(f)), 2);
		ck_assert_int_eq(ps_page_enc_state(pg(f)), PS_ENC_SHARED);
		ck_assert(!ps_page_test_flags(pg(f), PS_PAGE_INACCESSIBLE));
	}
	ck_assert(!ps_pte_is_encrypted(entry(PG)));
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 161), 1);
	ck_assert_uint_eq(o.converted, 0);
	/* The map ends; its reference is replaced by a declared one. */
	ck_assert_int_eq(ps_page_get(pg(161)), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 161), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 2 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	ck_assert(ps_page_test_flags(pg(161), PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_prot_kmap(sp, 161, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 161), 0);
	(void)ps_page_put(pg(160));
	(void)ps_page_put(pg(161));
}
END_TEST

struct unpinner {
	uint64_t frame;
	unsigned delay_ms;
	_Atomic(int) done;
};

static void *unpin_later(void *arg)
{
	struct unpinner *u = arg;
	struct timespec ts = {0, (long)u->delay_ms * 1000000};

	nanosleep(&ts, NULL);
	atomic_store(&u->done, 1);
	ps_space_unpin(sp, &u->frame, 1, 0);
	return NULL;
}

START_TEST(convert_waits_for_pins_to_drain)
{
	struct ps_convert_opts o;
	struct unpinner u;
	struct timespec t0;
	pthread_t t;
	uint64_t off;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 60, 0, NULL), 0);
	memset(&u, 0, sizeof(u));
	u.delay_ms = 20;
	ck_assert_int_eq(ps_space_pin_range(sp, 2 * PG, PG, 0, &u.frame), 0);
	/* Bounded: the budget runs out while the pin is held. */
	memset(&o, 0, sizeof(o));
	o.wait_ns = 5 * 1000000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 -EAGAIN);
	ck_assert_uint_ge(elapsed_ms(t0), 5);
	ck_assert_uint_eq(off, 2 * PG);
	ck_assert_int_eq(ps_page_enc_state(pg(60)), PS_ENC_SHARED);
	/* The pin drains within the budget: converted. */
	o.wait_ns = 5 * UINT64_C(1000000000);
	ck_assert_int_eq(pthread_create(&t, NULL, unpin_later, &u), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 0);
	ck_assert(atomic_load(&u.done));
	pthread_join(t, NULL);
	ck_assert_uint_eq(o.converted, 4);
}
END_TEST

START_TEST(convert_never_waits_for_longterm_pins)
{
	struct ps_convert_opts o;
	struct unpinner u;
	struct timespec t0;
	uint64_t f, off;
	pthread_t t;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 70, 0, NULL), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_LONGTERM, &f),
			 0);
	memset(&o, 0, sizeof(o));
	o.wait_ns = 10 * UINT64_C(1000000000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 -EBUSY);
	ck_assert_uint_lt(elapsed_ms(t0), 1000);
	ck_assert_uint_eq(off, PG);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, PS_UNPIN_LONGTERM), 0);
	/* Converted once the long-term pin is gone; its mark with it. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_SHARED, 0, &o,
					 &off),
			 0);
	/* A short-term pin of the same frame is now waited for. */
	memset(&u, 0, sizeof(u));
	u.delay_ms = 10;
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, 0, &u.frame), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, unpin_later, &u), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 0);
	pthread_join(t, NULL);
}
END_TEST

/*
 * convert_waits_after_longterm_unpin: a frame once pinned long-term kept
 * its long-term mark until a conversion succeeded, so a later short-term
 * pin made PS_CONVERT_WAIT fail at once with -EBUSY instead of waiting for
 * it to drain (issue 15 #9). The mark is now exact: it is true while a
 * long-term pin is held, and only then.
 */
START_TEST(convert_waits_after_longterm_unpin)
{
	struct ps_convert_opts o;
	struct unpinner u;
	uint64_t f[2], off = 999;
	pthread_t t;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 90, 0, NULL), 0);
	memset(&o, 0, sizeof(o));
	o.wait_ns = 5 * UINT64_C(1000000000);
	/* Two long-term pins: -EBUSY while either is held. */
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_LONGTERM, &f[0]),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_LONGTERM, &f[1]),
			 0);
	ck_assert_int_eq(ps_space_unpin(sp, &f[0], 1, PS_UNPIN_LONGTERM), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 -EBUSY);
	ck_assert_uint_eq(off, PG);
	ck_assert_int_eq(ps_space_unpin(sp, &f[1], 1, PS_UNPIN_LONGTERM), 0);
	/* None held any more: a short-term pin is waited for. */
	memset(&u, 0, sizeof(u));
	u.delay_ms = 10;
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, 0, &u.frame), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, unpin_later, &u), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 0);
	pthread_join(t, NULL);
	ck_assert(atomic_load(&u.done));
	ck_assert_int_eq(ps_page_enc_state(pg(91)), PS_ENC_PRIVATE);
}
END_TEST

/*
 * A long-term pin released without PS_UNPIN_LONGTERM (misuse) leaves its
 * count behind: a later short-term pin then looks long-term (-EBUSY), as
 * before issue 15 #9's fix, until a conversion freezes the frame, which
 * resets the count (no pin can exist then). Correct callers never see it.
 */
START_TEST(convert_heals_a_leaked_longterm_count)
{
	struct ps_convert_opts o;
	struct unpinner u;
	uint64_t f, off;
	pthread_t t;

	ck_assert_int_eq(ps_space_map(sp, 0, 95, 0), 0);
	memset(&o, 0, sizeof(o));
	o.wait_ns = 5 * UINT64_C(1000000000);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_LONGTERM, &f), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0); /* misuse */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE,
					 PS_CONVERT_WAIT, &o, &off),
			 -EBUSY);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	/* Frozen with no pin: the leaked unit goes. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 0);
	memset(&u, 0, sizeof(u));
	u.delay_ms = 10;
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_PRIVATE,
					    &u.frame),
			 0);
	ck_assert_int_eq(pthread_create(&t, NULL, unpin_later, &u), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED,
					 PS_CONVERT_WAIT, &o, &off),
			 0);
	pthread_join(t, NULL);
}
END_TEST

START_TEST(convert_missing_poisoned_and_bad_input)
{
	struct ps_convert_opts o;
	struct watch w;
	uint64_t off = 999;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 80, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 83, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, NULL,
					 &off),
			 -ENOENT);
	ck_assert_uint_eq(off, 2 * PG);
	ck_assert_int_eq(ps_page_enc_state(pg(80)), PS_ENC_SHARED);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE,
					 PS_CONVERT_SKIP_MISSING, &o, &off),
			 0);
	ck_assert_uint_eq(o.converted, 3);
	ck_assert_int_eq(ps_page_enc_state(pg(83)), PS_ENC_PRIVATE);
	ps_page_set_flags(pg(81), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 2 * PG, PS_ENC_SHARED, 0, &o,
					 &off),
			 -EHWPOISON);
	ck_assert_uint_eq(off, PG);
	ck_assert_int_eq(ps_page_enc_state(pg(80)), PS_ENC_PRIVATE);
	/* Bad input: nothing happens, not even the invalidation. */
	watch_init(&w, 0, 4 * PG);
	off = 999;
	ck_assert_int_eq(ps_prot_convert(sp, 1, PG, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG + 1, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 0, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_convert(sp, SPACE_SIZE - PG, 2 * PG,
					 PS_ENC_SHARED, 0, NULL, &off),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, (enum ps_enc_state)2, 0,
					 NULL, &off),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0x80, NULL,
					 &off),
			 -EINVAL);
	o.extra_refs = PS_PAGE_REFS_MAX;
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0, &o, &off),
			 -EINVAL);
	ck_assert_uint_eq(off, 999);
	ck_assert_uint_eq(atomic_load(&w.calls), 0);
	ck_assert_int_eq(ps_page_enc_state(pg(80)), PS_ENC_PRIVATE);
	ps_interval_remove(&w.sub);
}
END_TEST

START_TEST(convert_private_pins)
{
	uint64_t f, off;

	ck_assert_int_eq(ps_space_map(sp, 0, 90, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	/* A path that expects shared memory cannot pin it (P2). */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), -EPERM);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE, &f),
			 -EPERM);
	ck_assert(!ps_page_is_pinned(pg(90)));
	/* A private pin: resident, blocks conversion, never makes it
	 * accessible (seed 000). */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_PRIVATE, &f), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 0);
	ck_assert(ps_page_test_flags(pg(90), PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EAGAIN);
	ck_assert_uint_eq(off, 0);
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 0);
}
END_TEST

START_TEST(convert_to_shared_inaccessible)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 95, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED,
					 PS_CONVERT_INACCESSIBLE, NULL, NULL),
			 0);
	ck_assert_uint_eq(flags_of(95) &
				  (PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE),
			  PS_PAGE_INACCESSIBLE);
	ck_assert_int_eq(ps_prot_kmap(sp, 95, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 95), 0);
}
END_TEST

/* --- hooks, rollback, quarantine (P3, P4) --------------------------------- */

static void expect_call(unsigned k, char kind, uint64_t addr,
			enum ps_enc_state to)
{
	ck_assert_uint_lt(k, seen.nlog);
	ck_assert_int_eq(seen.log[k].kind, kind);
	ck_assert_uint_eq(seen.log[k].addr, addr);
	ck_assert_int_eq(seen.log[k].to, to);
	ck_assert(seen.log[k].frozen);
}

START_TEST(hooks_prepare_flip_finish_order)
{
	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * PG, 110, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, 3 * PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_uint_eq(seen.nlog, 6);
	for (unsigned i = 0; i < 3; i++) {
		const struct hook_call *p = &seen.log[2 * i];
		const struct hook_call *f = &seen.log[2 * i + 1];

		expect_call(2 * i, 'p', i * PG, PS_ENC_PRIVATE);
		expect_call(2 * i + 1, 'f', i * PG, PS_ENC_PRIVATE);
		ck_assert_uint_eq(p->frame, 110 + i);
		/* prepare before the flip, finish after it. */
		ck_assert(!p->word_private && !p->entry_enc);
		ck_assert(f->word_private && f->entry_enc);
	}
}
END_TEST

START_TEST(hooks_prepare_failure_changes_nothing)
{
	struct snapshot s0, s1;
	struct ps_convert_opts o;
	uint64_t off;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 120, 0, NULL), 0);
	snap(&s0, 0, 120, 4);
	seen.fail_prepare_addr = 2 * PG;
	seen.fail_prepare_to = PS_ENC_PRIVATE;
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EIO);
	ck_assert_uint_eq(off, 2 * PG);
	ck_assert_int_eq(o.hook_error, -ENOSPC);
	ck_assert_uint_eq(o.quarantined, 0);
	ck_assert_uint_eq(o.converted, 0);
	/* Pages 0 and 1 went through and were converted back, last first. */
	ck_assert_uint_eq(seen.nlog, 9);
	expect_call(0, 'p', 0, PS_ENC_PRIVATE);
	expect_call(1, 'f', 0, PS_ENC_PRIVATE);
	expect_call(2, 'p', PG, PS_ENC_PRIVATE);
	expect_call(3, 'f', PG, PS_ENC_PRIVATE);
	expect_call(4, 'p', 2 * PG, PS_ENC_PRIVATE);
	expect_call(5, 'p', PG, PS_ENC_SHARED);
	expect_call(6, 'f', PG, PS_ENC_SHARED);
	expect_call(7, 'p', 0, PS_ENC_SHARED);
	expect_call(8, 'f', 0, PS_ENC_SHARED);
	snap(&s1, 0, 120, 4);
	assert_same(&s0, &s1, 4);
}
END_TEST

/* Everything that must refuse a quarantined page at @addr, frame @frame. */
static void assert_quarantined(uint64_t addr, uint64_t frame)
{
	struct ps_memory_fault mf;
	uint64_t f, off;

	ck_assert(ps_page_test_flags(pg(frame), PS_PAGE_POISONED));
	ck_assert(!ps_page_is_frozen(pg(frame)));
	ck_assert(ps_pte_is_marker(entry(addr)));
	ck_assert_uint_eq(ps_pte_marker_bits(entry(addr)),
			  PS_PTE_MARKER_POISONED);
	ck_assert_int_eq(ps_space_pin_range(sp, addr, PG, PS_PIN_PRIVATE, &f),
			 -EHWPOISON);
	ck_assert_int_eq(ps_space_fault(sp, addr, PS_ACCESS_READ),
			 PS_FAULT_POISONED);
	ck_assert_int_eq(ps_prot_kmap(sp, frame, PS_KMAP_PRIVATE), -EHWPOISON);
	ck_assert_int_eq(ps_space_map(sp, 500 * PG, frame, 0), -EHWPOISON);
	ck_assert_int_eq(ps_prot_check_access(sp, addr, 8, PS_ENC_SHARED, &mf),
			 -EHWPOISON);
	ck_assert_int_eq(ps_prot_convert(sp, addr, PG, PS_ENC_SHARED, 0, NULL,
					 &off),
			 -EHWPOISON);
	ck_assert_int_eq(ps_prot_convert(sp, addr, PG, PS_ENC_PRIVATE,
					 PS_CONVERT_SKIP_MISSING, NULL, &off),
			 -EHWPOISON);
	ck_assert_int_eq(ps_prot_set_cache(sp, frame, PS_CACHE_UC, 1),
			 -EHWPOISON);
}

START_TEST(hooks_finish_failure_quarantines)
{
	struct ps_convert_opts o;
	uint64_t off;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 130, 0, NULL), 0);
	seen.fail_finish_addr = PG;
	seen.fail_finish_to = PS_ENC_PRIVATE;
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, 0, 4 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EIO);
	ck_assert_uint_eq(off, PG);
	ck_assert_int_eq(o.hook_error, -EIO);
	ck_assert_uint_eq(o.quarantined, 1);
	/* prepare0 finish0 prepare1 finish1(fails), then page 0 back. */
	ck_assert_uint_eq(seen.nlog, 6);
	expect_call(4, 'p', 0, PS_ENC_SHARED);
	expect_call(5, 'f', 0, PS_ENC_SHARED);
	assert_quarantined(PG, 131);
	for (uint64_t f = 130; f < 134; f++) {
		if (f == 131)
			continue;
		ck_assert_uint_eq(flags_of(f) & (PS_PAGE_PRIVATE |
						 PS_PAGE_INACCESSIBLE |
						 PS_PAGE_POISONED),
				  0);
		ck_assert(!ps_pte_is_encrypted(entry((f - 130) * PG)));
	}
	/* The mapping's reference is leaked: the frame is never freed. */
	ck_assert_int_eq(ps_space_unmap(sp, 0, 4 * PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 3);
	ck_assert_uint_eq(atomic_load(&seen.freed[131]), 0);
	ck_assert(ps_page_is_live(pg(131)));
}
END_TEST

START_TEST(hooks_rollback_failure_quarantines_too)
{
	struct ps_convert_opts o;
	uint64_t off;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * PG, 140, 0, NULL), 0);
	seen.fail_finish_addr = 2 * PG;
	seen.fail_finish_to = PS_ENC_PRIVATE;
	seen.fail_prepare_addr = 0;
	seen.fail_prepare_to = PS_ENC_SHARED; /* page 0 cannot go back */
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(sp, 0, 3 * PG, PS_ENC_PRIVATE, 0, &o,
					 &off),
			 -EIO);
	ck_assert_uint_eq(off, 2 * PG);
	ck_assert_int_eq(o.hook_error, -EIO); /* the cause, not the rollback */
	ck_assert_uint_eq(o.quarantined, 2);
	assert_quarantined(2 * PG, 142);
	assert_quarantined(0, 140);
	ck_assert_uint_eq(flags_of(141) & (PS_PAGE_PRIVATE | PS_PAGE_POISONED),
			  0);
}
END_TEST

/* --- CPU maps (P5, P6) ---------------------------------------------------- */

START_TEST(kmap_calls_make_accessible_once)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 150, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	/* A path that expects plaintext cannot map a private page. */
	ck_assert_int_eq(ps_prot_kmap(sp, 150, 0), -EPERM);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 150), 0);
	ck_assert_uint_eq(ps_page_refs(pg(150)), 1);
	ck_assert_int_eq(ps_prot_kmap(sp, 150, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert(!ps_page_test_flags(pg(150), PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_prot_kmap(sp, 150, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 150), 2);
	/* The maps hold one reference between them (P5). */
	ck_assert_uint_eq(ps_page_refs(pg(150)), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 150), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 150), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 150), 0);
	ck_assert_uint_eq(ps_page_refs(pg(150)), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 150), -EINVAL);
	/* Still accessible: the next first map calls nothing. */
	ck_assert_int_eq(ps_prot_kmap(sp, 150, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 150), 0);
	/* A CPU-mapped page cannot be converted; after kunmap it can, and it
	 * is inaccessible again. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 150, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 150), 0);
	/* A shared, accessible page never calls it. */
	ck_assert_int_eq(ps_space_map(sp, PG, 151, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 151, 0), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 151), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 2);
}
END_TEST

START_TEST(kmap_hook_failure_changes_nothing)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 152, 0), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	atomic_store(&seen.make_rc, -ENOMEM);
	ck_assert_int_eq(ps_prot_kmap(sp, 152, PS_KMAP_PRIVATE), -ENOMEM);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 152), 0);
	ck_assert_uint_eq(ps_page_refs(pg(152)), 1);
	ck_assert(ps_page_test_flags(pg(152), PS_PAGE_INACCESSIBLE));
	ck_assert(!ps_page_test_flags(pg(152), PS_PAGE_LOCKED));
	atomic_store(&seen.make_rc, 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 152, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 152), 0);
}
END_TEST

START_TEST(kmap_pins_never_call_the_hook)
{
	uint64_t f[2];

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 154, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, 155), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG,
					    PS_PIN_PRIVATE | PS_PIN_WRITE,
					    &f[0]),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_LONGTERM, &f[1]),
			 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 0);
	ck_assert(ps_page_test_flags(pg(154), PS_PAGE_INACCESSIBLE));
	ck_assert(ps_page_test_flags(pg(155), PS_PAGE_INACCESSIBLE));
	ps_space_unpin(sp, &f[0], 1, 0);
	ps_space_unpin(sp, &f[1], 1, PS_UNPIN_LONGTERM);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 0);
}
END_TEST

START_TEST(kmap_set_inaccessible_and_misuse)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 160, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 160, 0), 0);
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, 160), -EBUSY);
	ck_assert_int_eq(ps_prot_kunmap(sp, 160), 0);
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, 160), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 160, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 160), 0);
	/* A free frame may be marked (an owner's no-direct-map frames). */
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, 161), 0);
	ck_assert(ps_page_test_flags(pg(161), PS_PAGE_INACCESSIBLE));
	/* kmap needs a frame in use. */
	ck_assert_int_eq(ps_prot_kmap(sp, 161, 0), -ENOENT);
	ck_assert_int_eq(ps_prot_kmap(sp, NFRAMES, 0), -EINVAL);
	ck_assert_int_eq(ps_prot_kmap(sp, 160, 0x2), -EINVAL);
	ck_assert_int_eq(ps_prot_kunmap(sp, NFRAMES), -EINVAL);
	ck_assert_int_eq(ps_prot_kunmap(sp, 161), -EINVAL);
	ck_assert_int_eq(ps_prot_set_inaccessible(sp, NFRAMES), -EINVAL);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, NFRAMES), 0);
	ck_assert(!ps_page_is_live(pg(161)));
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 1);
}
END_TEST

/*
 * The CPU maps of a frame hold one reference between them (P5): the first
 * takes it, later ones only count, the last kunmap drops it. A conversion
 * or a cache-mode change refuses a CPU-mapped frame even when the caller
 * declares that reference as its own (it holds a map itself).
 */
START_TEST(kmaps_share_one_reference)
{
	struct ps_convert_opts o;

	ck_assert_int_eq(ps_space_map(sp, 0, 164, 0), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ps_prot_kmap(sp, 164, 0), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 164), 3);
	ck_assert_uint_eq(ps_page_refs(pg(164)), 2);
	memset(&o, 0, sizeof(o));
	o.extra_refs = 1; /* the maps' reference, declared */
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, &o,
					 NULL),
			 -EAGAIN);
	ck_assert_int_eq(ps_prot_set_cache(sp, 164, PS_CACHE_WC, 2), -EBUSY);
	ck_assert(!ps_page_is_frozen(pg(164)));
	ck_assert_int_eq(ps_page_cache_mode(pg(164)), PS_CACHE_WB);
	ck_assert_int_eq(ps_page_enc_state(pg(164)), PS_ENC_SHARED);
	ck_assert_int_eq(ps_prot_kunmap(sp, 164), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 164), 0);
	ck_assert_uint_eq(ps_page_refs(pg(164)), 2); /* one map left */
	ck_assert_int_eq(ps_prot_kunmap(sp, 164), 0);
	ck_assert_uint_eq(ps_page_refs(pg(164)), 1); /* the mapping's */
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 164), 0);
	ck_assert_int_eq(ps_prot_set_cache(sp, 164, PS_CACHE_WC, 1), 0);
}
END_TEST

/*
 * A kunmap that finds no map to end (never mapped, or one kunmap too many)
 * changes nothing (P5: its subtract is undone, HELD untouched): the count
 * stays 0, the maps' reference was dropped once, the next kmap takes it
 * again, and a conversion without declared references is not refused by a
 * leftover of the count.
 */
START_TEST(kunmap_without_a_map_changes_nothing)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 166, 0), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), -EINVAL);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 166), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 166, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 166, 0), 0);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), 0);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), -EINVAL);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), -EINVAL);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 166), 0);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 1);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	/* A shared kmap of the private frame counts itself, then gives up. */
	ck_assert_int_eq(ps_prot_kmap(sp, 166, 0), -EPERM);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 166), 0);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 1);
	ck_assert_int_eq(ps_prot_kmap(sp, 166, PS_KMAP_PRIVATE), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 166), 1);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 2);
	ck_assert_int_eq(ps_prot_kmap(sp, 166, 0), -EPERM); /* a join, undone */
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 166), 1);
	ck_assert_int_eq(ps_prot_kunmap(sp, 166), 0);
	ck_assert_uint_eq(ps_page_refs(pg(166)), 1);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
}
END_TEST

/*
 * A CPU-mapped frame is held by its kmap: a balloon discard leaves the page
 * exactly as it is and reports it busy (S10 in lib/space-discard.c); after
 * the kunmap it goes.
 */
START_TEST(discard_skips_cpu_mapped_page)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped = 99;
	ps_pte_t before;

	ck_assert_int_eq(ps_space_map(sp, 0, 163, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 163, 0), 0);
	before = entry(0);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 1);
	ck_assert_uint_eq(skipped.addr, 0);
	ck_assert_uint_eq(skipped.frame, 163);
	ck_assert_int_eq(skipped.reason, PS_DISCARD_BUSY);
	ck_assert_uint_eq(entry(0), before);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 163), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed[163]), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 163), 0);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert(ps_pte_is_none(entry(0)));
	ck_assert_uint_eq(atomic_load(&seen.freed[163]), 1);
}
END_TEST

START_TEST(kunmap_of_the_last_reference_frees)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 162, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 162, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[162]), 0);
	ck_assert_int_eq(ps_prot_kunmap(sp, 162), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[162]), 1);
	ck_assert(!ps_page_is_live(pg(162)));
}
END_TEST

/* --- prot's per-space state, created by the first kmap or set_prot_hooks -- */

static struct ps_space *bare_space(void)
{
	struct ps_space_config cfg;
	struct ps_space *s;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	ck_assert_int_eq(ps_space_create(&cfg, &s), 0);
	return s;
}

/*
 * A space that no kmap and no set_prot_hooks has touched has no prot state:
 * every operation reads it as "no CPU maps, no hooks", as before it existed.
 */
START_TEST(prot_state_absent_reads_as_empty)
{
	struct ps_space *s = bare_space();
	struct ps_memory_fault mf;
	struct ps_convert_opts o;

	ck_assert_uint_eq(ps_prot_kmap_count(s, 3), 0);
	ck_assert_int_eq(ps_prot_kunmap(s, 3), -EINVAL);
	ck_assert_int_eq(ps_prot_kunmap(s, NFRAMES), -EINVAL);
	ck_assert_int_eq(ps_prot_set_inaccessible(s, 4), 0); /* free frame */
	ck_assert_int_eq(ps_prot_set_inaccessible(s, NFRAMES), -EINVAL);
	ck_assert_int_eq(ps_prot_set_cache(s, 5, PS_CACHE_WC, 0), 0);
	ck_assert_int_eq(ps_space_map(s, 0, 3, PS_MAP_WRITE), 0);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(ps_prot_convert(s, 0, PG, PS_ENC_PRIVATE, 0, &o, NULL),
			 0);
	ck_assert_uint_eq(o.converted, 1);
	ck_assert_int_eq(ps_prot_check_access(s, 0, 8, PS_ENC_PRIVATE, &mf), 0);
	ck_assert_int_eq(ps_prot_mprotect(s, 0, PG, PS_PROT_READ), 0);
	ck_assert_int_eq(ps_prot_convert(s, 0, PG, PS_ENC_SHARED, 0, NULL,
					 NULL),
			 0);
	/* The first kmap creates it; without hooks the frame just opens. */
	ck_assert_int_eq(ps_prot_kmap(s, 3, 0), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(s, 3), 1);
	ck_assert(!ps_page_test_flags(ps_space_page(s, 3),
				      PS_PAGE_INACCESSIBLE));
	ck_assert_int_eq(ps_prot_kunmap(s, 3), 0);
	ck_assert_int_eq(ps_space_destroy(s), 0);
}
END_TEST

/* Threads whose first kmaps of a new space race to create its state. */
struct first_kmaps {
	struct ps_space *s;
	pthread_barrier_t go;
	_Atomic(unsigned) errors;
};

struct first_kmapper_arg {
	struct first_kmaps *k;
	uint64_t frame;
};

static void *first_kmapper(void *arg)
{
	struct first_kmapper_arg *a = arg;

	pthread_barrier_wait(&a->k->go);
	if (ps_prot_kmap(a->k->s, a->frame, 0))
		atomic_fetch_add(&a->k->errors, 1);
	return NULL;
}

/*
 * Each round: a fresh space, four threads kmap four frames at once. Every
 * kmap succeeds and is counted in the one state that won (a loser's state
 * is freed: ASan's leak check watches that), and destroy frees it.
 */
START_TEST(prot_state_first_kmaps_race)
{
	uint64_t rounds = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			  5000;
	struct first_kmaps k;

	for (uint64_t r = 0; r < rounds; r++) {
		struct first_kmapper_arg a[4];
		pthread_t t[4];

		memset(&k, 0, sizeof(k));
		k.s = bare_space();
		pthread_barrier_init(&k.go, NULL, 4);
		for (int i = 0; i < 4; i++) {
			a[i].k = &k;
			a[i].frame = 10 + (uint64_t)i;
			ck_assert_int_eq(ps_space_map(k.s, (uint64_t)i * PG,
						      a[i].frame, 0),
					 0);
		}
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL,
							first_kmapper, &a[i]),
					 0);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		ck_assert_uint_eq(atomic_load(&k.errors), 0);
		for (int i = 0; i < 4; i++) {
			ck_assert_uint_eq(ps_prot_kmap_count(k.s, a[i].frame),
					  1);
			ck_assert_int_eq(ps_prot_kunmap(k.s, a[i].frame), 0);
			ck_assert_uint_eq(ps_prot_kmap_count(k.s, a[i].frame),
					  0);
		}
		pthread_barrier_destroy(&k.go);
		ck_assert_int_eq(ps_space_destroy(k.s), 0);
	}
}
END_TEST

/* --- the access check ----------------------------------------------------- */

START_TEST(access_check_reports_exactly)
{
	struct ps_memory_fault mf;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 170, 0, NULL), 0);
	ck_assert_int_eq(ps_prot_convert(sp, PG, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_check_access(sp, 8, 8, PS_ENC_SHARED, &mf), 0);
	ck_assert_int_eq(ps_prot_check_access(sp, PG, PG, PS_ENC_PRIVATE, &mf),
			 0);
	/* A shared access to the private page. */
	ck_assert_int_eq(ps_prot_check_access(sp, PG + 16, 8, PS_ENC_SHARED,
					      &mf),
			 -EFAULT);
	ck_assert_uint_eq(mf.flags, 0);
	ck_assert_uint_eq(mf.addr, PG + 16);
	ck_assert_uint_eq(mf.size, 8);
	/* A private access to the shared page. */
	ck_assert_int_eq(ps_prot_check_access(sp, 40, 4, PS_ENC_PRIVATE, &mf),
			 -EFAULT);
	ck_assert_uint_eq(mf.flags, PS_MEMORY_FAULT_PRIVATE);
	ck_assert_uint_eq(mf.addr, 40);
	ck_assert_uint_eq(mf.size, 4);
	/* Across the boundary: the part inside the first offending page. */
	ck_assert_int_eq(ps_prot_check_access(sp, PG - 4, 16, PS_ENC_SHARED,
					      &mf),
			 -EFAULT);
	ck_assert_uint_eq(mf.addr, PG);
	ck_assert_uint_eq(mf.size, 12);
	ck_assert_int_eq(ps_prot_check_access(sp, PG - 4, 16, PS_ENC_PRIVATE,
					      &mf),
			 -EFAULT);
	ck_assert_uint_eq(mf.addr, PG - 4);
	ck_assert_uint_eq(mf.size, 4);
	/* Nothing mapped there. */
	ck_assert_int_eq(ps_prot_check_access(sp, 2 * PG + 100, 2 * PG,
					      PS_ENC_SHARED, &mf),
			 -ENOENT);
	ck_assert_uint_eq(mf.addr, 2 * PG + 100);
	ck_assert_uint_eq(mf.size, PG - 100);
	/* Bad input leaves the report alone. */
	mf.addr = 7;
	ck_assert_int_eq(ps_prot_check_access(sp, 0, 0, PS_ENC_SHARED, &mf),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_check_access(sp, SPACE_SIZE - 4, 8,
					      PS_ENC_SHARED, &mf),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_check_access(sp, 0, 8, (enum ps_enc_state)5,
					      &mf),
			 -EINVAL);
	ck_assert_int_eq(ps_prot_check_access(sp, 0, 8, PS_ENC_SHARED, NULL),
			 -EINVAL);
	ck_assert_uint_eq(mf.addr, 7);
}
END_TEST

/* --- failpoints: pin versus conversion in its windows (P2) ---------------- */

/*
 * The failpoints (lib/failpoint.h): this test compiles the space's files,
 * lib/prot-*.c and lib/failpoint.c with -DPS_TEST_FAILPOINTS.
 */

/* Count every point reached; fire the armed one once; pass all to fp_all. */
static _Atomic(unsigned) fp_hits[FP_NR];
static _Atomic(int) fp_space_point;
static _Atomic(int) fp_space_fired;
static void (*fp_space_action)(uint64_t addr);
static void (*fp_all)(int point, uint64_t addr);

static void space_failpoint(int point, uint64_t addr)
{
	ck_assert_int_lt(point, FP_NR);
	atomic_fetch_add(&fp_hits[point], 1);
	if (point == atomic_load(&fp_space_point) &&
	    !atomic_exchange(&fp_space_fired, 1))
		fp_space_action(addr);
	if (fp_all)
		fp_all(point, addr);
}

static void arm_space(int point, void (*action)(uint64_t addr))
{
	for (int i = 0; i < FP_NR; i++)
		atomic_store(&fp_hits[i], 0);
	fp_space_action = action;
	atomic_store(&fp_space_fired, 0);
	atomic_store(&fp_space_point, point);
	ps__failpoint = space_failpoint;
}

static void disarm(void)
{
	ps__failpoint = NULL;
	fp_all = NULL;
	atomic_store(&fp_space_point, 0);
}

static int fp_convert_rc;
static uint64_t fp_convert_off;

static void convert_now(uint64_t addr)
{
	(void)addr;
	fp_convert_rc = ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					&fp_convert_off);
}

/* The pin is taken, not yet re-checked: the conversion must fail there. */
START_TEST(fp_pin_first_then_conversion_fails)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 180, 0), 0);
	arm_space(FP_PIN_BEFORE_RECHECK, convert_now);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	disarm();
	ck_assert_int_eq(fp_convert_rc, -EAGAIN);
	ck_assert_uint_eq(fp_convert_off, 0);
	ck_assert_int_eq(ps_page_enc_state(pg(180)), PS_ENC_SHARED);
	ck_assert_uint_eq(f, 180);
	ck_assert(ps_page_is_pinned(pg(180)));
	ps_space_unpin(sp, &f, 1, 0);
}
END_TEST

/*
 * A kmap that expects shared memory is about to join a frame another map
 * holds and, before it joins, that map ended, the frame was converted to
 * private and mapped again by a private kmap: the maps hold it again (an
 * ABA for a caller that saw it mapped). The join succeeds on HELD alone, so
 * the kmap must read the frame after it and refuse (P5): -EPERM, its join
 * undone, the private map and the reference as they were.
 */
static void unmap_convert_remap(uint64_t frame)
{
	ck_assert_int_eq(ps_prot_kunmap(sp, frame), 0);
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	ck_assert_int_eq(ps_prot_kmap(sp, frame, PS_KMAP_PRIVATE), 0);
}

START_TEST(fp_kmap_join_after_conversion_refuses)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 184, 0), 0);
	ck_assert_int_eq(ps_prot_kmap(sp, 184, 0), 0);
	arm_space(FP_KMAP_JOIN, unmap_convert_remap);
	ck_assert_int_eq(ps_prot_kmap(sp, 184, 0), -EPERM);
	disarm();
	ck_assert_int_eq(atomic_load(&fp_space_fired), 1);
	ck_assert_int_eq(ps_page_enc_state(pg(184)), PS_ENC_PRIVATE);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, 184), 1);
	ck_assert_uint_eq(ps_page_refs(pg(184)), 2);
	ck_assert_int_eq(ps_prot_kunmap(sp, 184), 0);
	ck_assert_uint_eq(ps_page_refs(pg(184)), 1);
}
END_TEST

/* The pin read the (shared) entry; the conversion completes before its
 * try: the try finds PRIVATE and the pin fails. */
START_TEST(fp_conversion_first_then_pin_fails)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 181, 0), 0);
	arm_space(FP_PIN_AFTER_LOOKUP, convert_now);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), -EPERM);
	disarm();
	ck_assert_int_eq(fp_convert_rc, 0);
	ck_assert_int_eq(ps_page_enc_state(pg(181)), PS_ENC_PRIVATE);
	ck_assert(!ps_page_is_pinned(pg(181)));
	ck_assert_uint_eq(ps_page_refs(pg(181)), 1);
}
END_TEST

struct fp_pinner {
	unsigned int flags;
	int rc;
	uint64_t frame;
};

static void *fp_pin_thread(void *arg)
{
	struct fp_pinner *p = arg;

	p->rc = ps_space_pin_range(sp, 0, PG, p->flags, &p->frame);
	return NULL;
}

static struct fp_pinner fp_pinner;
static pthread_t fp_thread;

/* Every page frozen: start a pinner and let it find the frame frozen (it
 * looks the entry up again after each failed try). */
static void start_pinner_while_frozen(int point, uint64_t addr)
{
	(void)addr;
	if (point != FP_CONVERT_FROZEN)
		return;
	ck_assert(ps_page_is_frozen(pg(182)));
	ck_assert_int_eq(pthread_create(&fp_thread, NULL, fp_pin_thread,
					&fp_pinner),
			 0);
	while (atomic_load(&fp_hits[FP_PIN_AFTER_LOOKUP]) < 3)
		sched_yield();
	ck_assert(!ps_page_is_pinned(pg(182)));
}

static void pin_during_conversion(unsigned int pin_flags)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 182, 0), 0);
	memset(&fp_pinner, 0, sizeof(fp_pinner));
	fp_pinner.flags = pin_flags;
	arm_space(0, NULL); /* count hits only */
	fp_all = start_pinner_while_frozen;
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
	pthread_join(fp_thread, NULL);
	disarm();
}

START_TEST(fp_pin_waits_on_frozen_then_sees_private)
{
	pin_during_conversion(0);
	ck_assert_int_eq(fp_pinner.rc, -EPERM);
	ck_assert(!ps_page_is_pinned(pg(182)));
	ck_assert_uint_eq(ps_page_refs(pg(182)), 1);
}
END_TEST

START_TEST(fp_private_pin_waits_then_pins)
{
	pin_during_conversion(PS_PIN_PRIVATE);
	ck_assert_int_eq(fp_pinner.rc, 0);
	ck_assert_uint_eq(fp_pinner.frame, 182);
	ck_assert(ps_page_is_pinned(pg(182)));
	ck_assert_int_eq(ps_page_enc_state(pg(182)), PS_ENC_PRIVATE);
	ck_assert_uint_eq(atomic_load(&seen.make_calls), 0);
	ps_space_unpin(sp, &fp_pinner.frame, 1, 0);
}
END_TEST

/* --- stress --------------------------------------------------------------- */

#define RACE_PAGES 4
#define RACE_FRAME 300

/*
 * The stress tcases run their threads until each did its share and they
 * overlapped in enough operations (harness.h), on one CPU too, and fail if they
 * did not; a race a tcase asserts happened holds the loops until it did
 * (stress_seen()). Worker threads count what they find wrong (Check's
 * assertions are safe only in the test's own thread), and the main thread
 * asserts the counts after the join.
 */

/* A race the loops were held for happened: the first time, release them. */
static void stress_seen(_Atomic(int) *once, struct ps_test_overlap *ov)
{
	if (!atomic_exchange(once, 1))
		ps_test_overlap_release(ov);
}

/*
 * Pin versus conversion on the same pages (P2): a pinner pins random pages of
 * four, expecting shared memory, and checks while it holds the pin (yielding
 * once, so that the converter runs meanwhile on one CPU too) that the frame is
 * still shared; the converter converts the four pages to private and back,
 * sometimes waiting for pins. After a successful conversion to private no
 * shared pin may be held: every shared pin either came first (the conversion
 * failed) or failed. Counted on both sides; both must be zero. The loops run
 * until a pin and a conversion to private succeeded.
 */
struct race {
	_Atomic(int) held; /* shared pins held right now */
	_Atomic(unsigned) pinner_saw_private, pins_ok, pins_refused;
	_Atomic(int) pinned, converted;
	struct ps_test_overlap ov; /* side 0 the converter, 1 the pinner */
};

static void *race_pinner(void *arg)
{
	struct race *r = arg;
	struct ps_test_rng rng = ps_test_rng_new(7);
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t page = ps_test_below(&rng, RACE_PAGES), f;
		int rc = ps_space_pin_range(sp, page * PG, PG, 0, &f);

		if (rc) {
			if (rc != -EPERM)
				atomic_fetch_add(&r->pinner_saw_private, 100);
			atomic_fetch_add(&r->pins_refused, 1);
			continue;
		}
		atomic_fetch_add(&r->held, 1);
		for (int k = 0; k < 4; k++) {
			if (ps_page_test_flags(pg(f), PS_PAGE_PRIVATE) ||
			    ps_page_is_frozen(pg(f)))
				atomic_fetch_add(&r->pinner_saw_private, 1);
			if (k == 1)
				sched_yield();
		}
		atomic_fetch_sub(&r->held, 1);
		ps_space_unpin(sp, &f, 1, 0);
		atomic_fetch_add(&r->pins_ok, 1);
		stress_seen(&r->pinned, &r->ov);
	}
	return NULL;
}

START_TEST(stress_pin_versus_convert_never_both)
{
	unsigned converted = 0, converter_saw_pin = 0;
	struct ps_convert_opts o;
	struct ps_test_side me;
	struct race r;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	memset(&o, 0, sizeof(o));
	o.wait_ns = 200000;
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       50;
	ps_test_overlap_hold(&r.ov); /* until a pin succeeded */
	ps_test_overlap_hold(&r.ov); /* until a conversion succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(ps_prot_set_hooks(sp, NULL), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, RACE_PAGES * PG, RACE_FRAME,
					    0, NULL),
			 0);
	ck_assert_int_eq(pthread_create(&t, NULL, race_pinner, &r), 0);
	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		unsigned int fl = i % 3 == 0 ? PS_CONVERT_WAIT : 0;
		int rc = ps_prot_convert(sp, 0, RACE_PAGES * PG, PS_ENC_PRIVATE,
					 fl, &o, NULL);

		if (rc == 0) {
			converted++;
			stress_seen(&r.converted, &r.ov);
			/* No shared pin can be held now (nor start). */
			if (atomic_load(&r.held))
				converter_saw_pin++;
		} else {
			ck_assert_int_eq(rc, -EAGAIN);
		}
		while (ps_prot_convert(sp, 0, RACE_PAGES * PG, PS_ENC_SHARED,
				       PS_CONVERT_WAIT, &o, NULL))
			;
	}
	pthread_join(t, NULL);
	ps_test_overlap_check(&r.ov, "converter vs pinner");
	ck_assert_uint_eq(converter_saw_pin, 0);
	ck_assert_uint_eq(atomic_load(&r.pinner_saw_private), 0);
	ck_assert_uint_gt(converted, 0);
	ck_assert_uint_gt(atomic_load(&r.pins_ok), 0);
	for (uint64_t f = RACE_FRAME; f < RACE_FRAME + RACE_PAGES; f++) {
		ck_assert_uint_eq(ps_page_refs(pg(f)), 1);
		ck_assert_uint_eq(ps_page_pins(pg(f)), 0);
		ck_assert(!ps_page_is_frozen(pg(f)));
	}
}
END_TEST

/*
 * CPU maps versus conversion (P5): two mappers kmap the shared frame and
 * kunmap it, often while the other holds its map (so that kmaps join the
 * maps, and the last kunmap of one round races the first kmap of the next),
 * while the main thread converts the frame to private (no declared
 * references: only its freeze decides) and back. A mapper that holds a
 * shared map must never find the frame private or frozen, and at the end
 * the frame holds only its mapping's reference and no map.
 */
struct kmap_conv_race {
	_Atomic(unsigned) errors, saw_private;
	_Atomic(uint64_t) maps, joins;
	_Atomic(int) mapped, converted, holding;
	struct ps_test_overlap ov; /* side 0 the converter, 1 and 2 mappers */
};

struct kmap_conv_arg {
	struct kmap_conv_race *r;
	unsigned int id;
};

static void *kmap_conv_mapper(void *arg)
{
	const struct kmap_conv_arg *a = arg;
	struct kmap_conv_race *r = a->r;
	struct ps_test_side me = ps_test_side(&r->ov, a->id, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		int rc = ps_prot_kmap(sp, RACE_FRAME, 0);

		if (rc) {
			if (rc != -EPERM)
				atomic_fetch_add(&r->errors, 1);
			continue;
		}
		if (atomic_fetch_add(&r->holding, 1))
			atomic_fetch_add(&r->joins, 1);
		for (int k = 0; k < 3; k++) {
			if (ps_page_test_flags(pg(RACE_FRAME),
					       PS_PAGE_PRIVATE) ||
			    ps_page_is_frozen(pg(RACE_FRAME)))
				atomic_fetch_add(&r->saw_private, 1);
			if (k == 1)
				sched_yield();
		}
		atomic_fetch_sub(&r->holding, 1);
		if (ps_prot_kunmap(sp, RACE_FRAME))
			atomic_fetch_add(&r->errors, 1);
		atomic_fetch_add(&r->maps, 1);
		stress_seen(&r->mapped, &r->ov);
	}
	return NULL;
}

START_TEST(stress_kmap_joins_versus_convert)
{
	struct kmap_conv_arg a[2];
	struct kmap_conv_race r;
	struct ps_test_side me;
	pthread_t t[2];

	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 3, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       100;
	ps_test_overlap_hold(&r.ov); /* until a map succeeded */
	ps_test_overlap_hold(&r.ov); /* until a conversion succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(ps_prot_set_hooks(sp, NULL), 0);
	ck_assert_int_eq(ps_space_map(sp, 0, RACE_FRAME, 0), 0);
	for (unsigned int i = 0; i < 2; i++) {
		a[i] = (struct kmap_conv_arg){&r, i + 1};
		ck_assert_int_eq(pthread_create(&t[i], NULL, kmap_conv_mapper,
						&a[i]),
				 0);
	}
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		int rc = ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL);

		if (rc) {
			ck_assert_int_eq(rc, -EAGAIN);
			continue;
		}
		stress_seen(&r.converted, &r.ov);
		while (ps_prot_convert(sp, 0, PG, PS_ENC_SHARED,
				       PS_CONVERT_WAIT, NULL, NULL))
			;
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ps_test_overlap_check(&r.ov, "converter vs mappers");
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"kmap joins vs convert: %llu maps, %llu joins\n",
			(unsigned long long)atomic_load(&r.maps),
			(unsigned long long)atomic_load(&r.joins));
	ck_assert_uint_eq(atomic_load(&r.errors), 0);
	ck_assert_uint_eq(atomic_load(&r.saw_private), 0);
	ck_assert_uint_gt(atomic_load(&r.maps), 0);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, RACE_FRAME), 0);
	ck_assert_uint_eq(ps_page_refs(pg(RACE_FRAME)), 1);
	ck_assert(!ps_page_is_frozen(pg(RACE_FRAME)));
	/* No leftover of the count refuses a conversion. */
	ck_assert_int_eq(ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE, 0, NULL,
					 NULL),
			 0);
}
END_TEST

/*
 * The long-term mark is exact (issue 15 #9): a pinner pins page 0 over and
 * over, long-term or not, holds the pin a moment and unpins it; the main thread
 * converts the page back and forth with PS_CONVERT_WAIT. A conversion may fail
 * with -EBUSY only if a long-term pin was held at some instant of the call
 * (counted with two tallies: long-term pins begun before the call ended, and
 * ended before it began); otherwise it waits for the short-term pins to drain,
 * and succeeds. The loops run until a pin and a conversion succeeded.
 */
struct lt_race {
	_Atomic(uint64_t) lt_begun, lt_ended, pins;
	_Atomic(unsigned) errors;
	_Atomic(int) pinned, converted;
	struct ps_test_overlap ov; /* side 0 the converter, 1 the pinner */
};

static void *lt_pinner(void *arg)
{
	struct lt_race *r = arg;
	struct ps_test_rng rng = ps_test_rng_new(17);
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		bool lt = ps_test_below(&rng, 4) == 0;
		unsigned int fl = PS_PIN_PRIVATE | (lt ? PS_PIN_LONGTERM : 0);
		uint64_t f;
		int rc;

		if (lt)
			atomic_fetch_add(&r->lt_begun, 1);
		rc = ps_space_pin_range(sp, 0, PG, fl, &f);
		if (!rc) {
			atomic_fetch_add(&r->pins, 1);
			stress_seen(&r->pinned, &r->ov);
			sched_yield();
			ps_space_unpin(sp, &f, 1, lt ? PS_UNPIN_LONGTERM : 0);
		} else if (rc != -EAGAIN) {
			atomic_fetch_add(&r->errors, 1);
		}
		if (lt)
			atomic_fetch_add(&r->lt_ended, 1);
		sched_yield(); /* a moment with no pin: conversions drain */
	}
	return NULL;
}

START_TEST(stress_longterm_mark_is_exact)
{
	unsigned busy = 0, converted = 0, wrong_busy = 0;
	enum ps_enc_state to = PS_ENC_PRIVATE;
	struct ps_convert_opts o;
	struct ps_test_side me;
	struct lt_race r;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	memset(&o, 0, sizeof(o));
	o.wait_ns = 5 * UINT64_C(1000000000);
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       200;
	ps_test_overlap_hold(&r.ov); /* until a pin succeeded */
	ps_test_overlap_hold(&r.ov); /* until a conversion succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(ps_prot_set_hooks(sp, NULL), 0);
	ck_assert_int_eq(ps_space_map(sp, 0, RACE_FRAME, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, lt_pinner, &r), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t ended = atomic_load(&r.lt_ended);
		int rc = ps_prot_convert(sp, 0, PG, to, PS_CONVERT_WAIT, &o,
					 NULL);

		if (rc == -EBUSY) {
			busy++;
			if (atomic_load(&r.lt_begun) == ended)
				wrong_busy++; /* no long-term pin overlapped */
			continue;
		}
		ck_assert_int_eq(rc, 0);
		converted++;
		stress_seen(&r.converted, &r.ov);
		to = to == PS_ENC_PRIVATE ? PS_ENC_SHARED : PS_ENC_PRIVATE;
	}
	pthread_join(t, NULL);
	ps_test_overlap_check(&r.ov, "converter vs long-term pinner");
	ck_assert_uint_eq(atomic_load(&r.errors), 0);
	ck_assert_msg(wrong_busy == 0,
		      "%u conversions failed with -EBUSY while no long-term "
		      "pin was held",
		      wrong_busy);
	ck_assert_uint_gt(converted, 0);
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
	ck_assert_uint_eq(ps_page_refs(pg(RACE_FRAME)), 1);
	ck_assert_uint_eq(ps_page_pins(pg(RACE_FRAME)), 0);
	(void)busy;
}
END_TEST

/*
 * Exactly-once make-accessible (P6): each round converts the page to
 * private (inaccessible), then two threads kmap it at the same instant; the
 * hook must have run exactly once when both hold their map, each time under
 * the frame's LOCKED bit. The hook yields, so that the other racer starts its
 * kmap while it runs (on one CPU too): a round where it did is contended
 * (seen.make_contended). The rounds go on until each racer did its share and
 * overlapped the other (harness.h; in lockstep, each round) and at least
 * PS_STRESS_OVERLAP / 20 rounds were contended: a hook never raced proves
 * nothing.
 */
struct kmap_race {
	pthread_barrier_t go, done;
	_Atomic(int) stop;
	_Atomic(unsigned) errors;
	struct ps_test_overlap ov; /* side i racer i */
};

struct kmap_racer_arg {
	struct kmap_race *k;
	unsigned int id;
};

static void *kmap_racer(void *arg)
{
	struct kmap_racer_arg *a = arg;
	struct kmap_race *k = a->k;
	struct ps_test_side me = ps_test_side(&k->ov, a->id, 0);

	for (;;) {
		pthread_barrier_wait(&k->go);
		if (atomic_load(&k->stop))
			break;
		atomic_fetch_add(&seen.kmap_inside, 1);
		if (ps_prot_kmap(sp, RACE_FRAME, PS_KMAP_PRIVATE))
			atomic_fetch_add(&k->errors, 1);
		atomic_fetch_sub(&seen.kmap_inside, 1);
		ps_test_overlap_step(&me);
		pthread_barrier_wait(&k->done); /* the main thread checks */
		pthread_barrier_wait(&k->done);
		if (ps_prot_kunmap(sp, RACE_FRAME))
			atomic_fetch_add(&k->errors, 1);
	}
	return NULL;
}

START_TEST(stress_first_kmap_calls_hook_exactly_once)
{
	uint64_t need = ps_test_stress_size("PS_STRESS_OVERLAP", 1000) / 20;
	struct kmap_racer_arg a[2];
	bool contended = false;
	struct kmap_race k;
	pthread_t t[2];
	uint64_t i;

	memset(&k, 0, sizeof(k));
	if (!need)
		need = 1;
	ps_test_overlap_init(&k.ov, 2, 0);
	k.ov.side[0].min_ops = k.ov.side[1].min_ops =
		ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 500;
	ps_test_overlap_hold(&k.ov); /* until enough rounds were contended */
	pthread_barrier_init(&k.go, NULL, 3);
	pthread_barrier_init(&k.done, NULL, 3);
	atomic_store(&seen.make_yield, 1);
	ck_assert_int_eq(ps_prot_set_hooks(sp, &make_only_hooks), 0);
	ck_assert_int_eq(ps_space_map(sp, 0, RACE_FRAME, 0), 0);
	for (unsigned int r = 0; r < 2; r++) {
		a[r].k = &k;
		a[r].id = r;
		ck_assert_int_eq(pthread_create(&t[r], NULL, kmap_racer, &a[r]),
				 0);
	}
	for (i = 0;; i++) {
		if (!contended && atomic_load(&seen.make_contended) >= need) {
			contended = true;
			ps_test_overlap_release(&k.ov);
		}
		if (ps_test_overlap_enough(&k.ov))
			break;
		if (ps_test_now_ns() - k.ov.start_ns >= k.ov.cap_ns) {
			atomic_store(&k.ov.capped, 1);
			break;
		}
		while (ps_prot_convert(sp, 0, PG, PS_ENC_PRIVATE,
				       PS_CONVERT_WAIT, NULL, NULL))
			;
		ck_assert(ps_page_test_flags(pg(RACE_FRAME),
					     PS_PAGE_INACCESSIBLE));
		pthread_barrier_wait(&k.go);
		pthread_barrier_wait(&k.done);
		ck_assert_uint_eq(atomic_load(&seen.make_calls), i + 1);
		ck_assert_uint_eq(ps_prot_kmap_count(sp, RACE_FRAME), 2);
		pthread_barrier_wait(&k.done);
		while (ps_prot_convert(sp, 0, PG, PS_ENC_SHARED,
				       PS_CONVERT_WAIT, NULL, NULL))
			;
	}
	atomic_store(&k.stop, 1);
	pthread_barrier_wait(&k.go);
	for (int r = 0; r < 2; r++)
		pthread_join(t[r], NULL);
	if (getenv("PS_STRESS_VERBOSE"))
		fprintf(stderr,
			"first kmaps: %u of %" PRIu64 " rounds "
			"contended\n",
			atomic_load(&seen.make_contended), i);
	ck_assert_uint_eq(atomic_load(&k.errors), 0);
	ck_assert_uint_eq(atomic_load(&seen.make_unlocked), 0);
	ps_test_overlap_check(&k.ov, "first kmaps");
	ck_assert_msg(contended,
		      "%u of %" PRIu64 " rounds had the other racer start its "
		      "kmap while the hook ran, needs %" PRIu64 ": the race "
		      "was not tested",
		      atomic_load(&seen.make_contended), i, need);
	ck_assert_uint_eq(ps_prot_kmap_count(sp, RACE_FRAME), 0);
	ck_assert_uint_eq(ps_page_refs(pg(RACE_FRAME)), 1);
	pthread_barrier_destroy(&k.go);
	pthread_barrier_destroy(&k.done);
}
END_TEST

/*
 * S20 (lib/space.c): a map's commit, and its rollback, tell the frames the map
 * claimed by their FROZEN bit, which holds only if every other freezer holds
 * the writer mutex while its frames are frozen. ps_prot_set_cache() with
 * expected_refs freezes a LIVE frame. Here frame 0, mapped elsewhere already,
 * is taken (a reference) by a map of two chunks; at the chunk boundary, the
 * writer mutex let go, another thread sets its cache mode with its two
 * references, and stays frozen while the map goes on. Before the fix the
 * set_cache froze it without the mutex, the map's commit took the freeze for
 * its claim and unfroze the frame with one reference (the other mapping's
 * lost: freed while mapped), and set_cache's own unfreeze failed unnoticed.
 */
#define CC_PAGES (PS__FP_MAP_CHUNK_PAGES + 1) /* two chunks */
#define CC_FAR (UINT64_C(512) << 20)	      /* frame 0's other mapping */

static struct ps_space *cc_sp;
static _Atomic(int) cc_state, cc_rc = 1;
static pthread_t cc_thread;
static bool cc_started;

static void *cc_setter(void *arg)
{
	(void)arg;
	atomic_store(&cc_rc, ps_prot_set_cache(cc_sp, 0, PS_CACHE_WC, 2));
	return NULL;
}

static void cc_failpoint(int point, uint64_t addr)
{
	(void)addr;
	if (point == FP_MAP_CHUNK && atomic_load(&cc_state) == 0) {
		/* The setter's freeze, or 2 s (it may wait for the map). */
		const time_t until = time(NULL) + 2;

		atomic_store(&cc_state, 1);
		cc_started = !pthread_create(&cc_thread, NULL, cc_setter, NULL);
		while (cc_started && atomic_load(&cc_state) == 1 &&
		       atomic_load(&cc_rc) == 1 && time(NULL) < until)
			sched_yield();
	} else if (point == FP_SET_CACHE_FROZEN &&
		   atomic_load(&cc_state) == 1) {
		atomic_store(&cc_state, 2); /* frozen: the map goes on */
		while (atomic_load(&cc_state) != 3)
			sched_yield();
	}
}

START_TEST(set_cache_during_a_chunked_map)
{
	struct ps_space_config cfg;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = CC_PAGES;
	ck_assert_int_eq(ps_space_create(&cfg, &cc_sp), 0);
	ck_assert_int_eq(ps_space_map_range(cc_sp, CC_FAR, PG, 0, 0, NULL), 0);
	atomic_store(&cc_state, 0);
	atomic_store(&cc_rc, 1);
	cc_started = false;
	ps__failpoint = cc_failpoint; /* the chunk boundary starts the setter */
	rc = ps_space_map_range(cc_sp, 0, CC_PAGES * PG, 0, 0, NULL);
	atomic_store(&cc_state, 3);
	ck_assert_int_eq(rc, 0);
	ck_assert(cc_started);
	pthread_join(cc_thread, NULL);
	ps__failpoint = NULL;
	/* Mapped twice: two references, whatever set_cache said. */
	ck_assert_uint_eq(ps_page_refs(ps_space_page(cc_sp, 0)), 2);
	ck_assert(ps_page_is_live(ps_space_page(cc_sp, 0)));
	ck_assert(!ps_page_is_frozen(ps_space_page(cc_sp, 0)));
	ck_assert_int_ne(atomic_load(&cc_rc), 1);
	ck_assert_int_eq(ps_space_unmap(cc_sp, 0, CC_PAGES * PG, 0), 0);
	ck_assert_int_eq(ps_space_unmap(cc_sp, CC_FAR, PG, 0), 0);
	ck_assert_int_eq(ps_space_destroy(cc_sp), 0);
}
END_TEST

static Suite *prot_suite(void)
{
	Suite *s = suite_create("prot");
	TCase *tc;

	tc = ps_test_tcase(s, "page state", 10);
	tcase_add_test(tc, page_state_accessors);
	tcase_add_test(tc, mode_names);

	tc = ps_test_tcase(s, "cache modes", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, cache_set_on_free_and_in_use_frames);
	tcase_add_test(tc, cache_pinned_frame_is_in_use);
	tcase_add_test(tc, cache_map_requested_mode);
	tcase_add_test(tc, cache_map_range_unwind_restores_modes);
	tcase_add_test(tc, set_cache_during_a_chunked_map);

	tc = ps_test_tcase(s, "mprotect", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mprotect_keeps_every_other_bit);

	for (int hooks = 1; hooks >= 0; hooks--) {
		tc = ps_test_tcase(s,
				   hooks ? "conversion"
					 : "conversion, no hooks",
				   30);
		tcase_add_checked_fixture(tc,
					  hooks ? setup : setup_no_conv_hooks,
					  teardown);
		tcase_add_test(tc, convert_flips_state_and_enc_only);
		tcase_add_test(tc, convert_pinned_page_in_the_middle);
		tcase_add_test(tc, convert_failure_restores_entries);
		if (!hooks) /* the commit path's runs */
			tcase_add_test(
				tc, convert_runs_scattered_and_across_leaves);
		tcase_add_test(tc,
			       convert_refuses_cpu_mapped_and_unexpected_refs);
		tcase_add_test(tc,
			       convert_refuses_cpu_map_declared_in_extra_refs);
		tcase_add_test(tc, convert_waits_for_pins_to_drain);
		tcase_add_test(tc, convert_never_waits_for_longterm_pins);
		tcase_add_test(tc, convert_waits_after_longterm_unpin);
		tcase_add_test(tc, convert_heals_a_leaked_longterm_count);
		tcase_add_test(tc, convert_missing_poisoned_and_bad_input);
		tcase_add_test(tc, convert_private_pins);
		tcase_add_test(tc, convert_to_shared_inaccessible);
		tcase_add_test(tc, kmap_calls_make_accessible_once);
		tcase_add_test(tc, access_check_reports_exactly);
		tcase_add_test(tc, fp_pin_first_then_conversion_fails);
		tcase_add_test(tc, fp_conversion_first_then_pin_fails);
		tcase_add_test(tc, fp_kmap_join_after_conversion_refuses);
		tcase_add_test(tc, fp_pin_waits_on_frozen_then_sees_private);
		tcase_add_test(tc, fp_private_pin_waits_then_pins);
	}

	tc = ps_test_tcase(s, "conversion hooks", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, hooks_prepare_flip_finish_order);
	tcase_add_test(tc, hooks_prepare_failure_changes_nothing);
	tcase_add_test(tc, hooks_finish_failure_quarantines);
	tcase_add_test(tc, hooks_rollback_failure_quarantines_too);

	tc = ps_test_tcase(s, "cpu maps", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, kmap_hook_failure_changes_nothing);
	tcase_add_test(tc, kmap_pins_never_call_the_hook);
	tcase_add_test(tc, kmap_set_inaccessible_and_misuse);
	tcase_add_test(tc, kmaps_share_one_reference);
	tcase_add_test(tc, kunmap_without_a_map_changes_nothing);
	tcase_add_test(tc, kunmap_of_the_last_reference_frees);
	tcase_add_test(tc, discard_skips_cpu_mapped_page);

	tc = ps_test_tcase(s, "prot state", 30);
	tcase_add_test(tc, prot_state_absent_reads_as_empty);
	tcase_add_test(tc, prot_state_first_kmaps_race);

	tc = ps_test_stress_tcase(s, "stress", 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stress_pin_versus_convert_never_both);
	tcase_add_test(tc, stress_first_kmap_calls_hook_exactly_once);
	tcase_add_test(tc, stress_kmap_joins_versus_convert);
	tcase_add_test(tc, stress_longterm_mark_is_exact);
	return s;
}

PS_TEST_MAIN(prot_suite)
