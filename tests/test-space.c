// SPDX-License-Identifier: MIT
/*
 * tests/test-space.c - the address space: mapping and references (a
 * map_range failing part-way takes everything back), GUP-style pins
 * (back-out, all or nothing, write-protect, private frames), balloon
 * discard (pinned frames, frames another thread froze), write faults (dirty
 * before writable), the seed-003 secondary-map helper (exactly-once dirty
 * hook), dirty harvest (write pins, REARM re-arming every page it reports,
 * budget), write-back in both modes (no dirty frame escapes it, one at a time),
 * and stress for the races the guarantees S1..S14 of the space's files are
 * about (lib/space-impl.h says which file states which). Failpoints and
 * injected failures (lib/failpoint.h: the space's files compiled with
 * -DPS_TEST_FAILPOINTS) put races and errors exactly where they hurt.
 */
#include <pagestate/ledger.h>
#include <pagestate/space.h>

#include "../lib/failpoint.h"
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define NFRAMES 256
#define SPACE_SIZE (UINT64_C(1) << 30)

/* --- fixture: a space with counting hooks --------------------------------- */

struct hooks_seen {
	_Atomic(unsigned) dirty[NFRAMES];
	_Atomic(unsigned) freed[NFRAMES];
	_Atomic(unsigned) dirty_total, freed_total, populated;
	_Atomic(unsigned) populate_access; /* the last populate's access */
	uint64_t populate_frame; /* next frame the populate hook maps */
	int populate_rc;
	/*
	 * With dirty_watch set, the dirty hook looks at the entry at
	 * dirty_addr and the frame's LOCKED bit as it runs (seed 003: the
	 * entry is not writable yet, the frame is the one locked).
	 */
	bool dirty_watch;
	uint64_t dirty_addr;
	_Atomic(unsigned) dirty_saw_writable, dirty_saw_unlocked;
	/* Dirty hooks that found their frame freed (never allowed). */
	_Atomic(unsigned) dirty_on_free;
};

static struct hooks_seen seen;
static struct ps_space *sp;
/* Broken invariants counted by stress workers (see "stress" below). */
static _Atomic(unsigned) stress_violations;

static void on_dirty(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	atomic_fetch_add(&seen.dirty[frame], 1);
	atomic_fetch_add(&seen.dirty_total, 1);
	if (!ps_page_is_live(ps_space_page(s, frame)))
		atomic_fetch_add(&seen.dirty_on_free, 1);
	if (seen.dirty_watch) {
		ps_pte_t e;

		ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(s),
						seen.dirty_addr, &e),
				 0);
		if (ps_pte_is_writable(e))
			atomic_fetch_add(&seen.dirty_saw_writable, 1);
		if (!ps_page_test_flags(ps_space_page(s, frame),
					PS_PAGE_LOCKED))
			atomic_fetch_add(&seen.dirty_saw_unlocked, 1);
	}
}

static void on_free(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	atomic_fetch_add(&seen.freed[frame], 1);
	atomic_fetch_add(&seen.freed_total, 1);
}

static int on_populate(void *ctx, struct ps_space *s, uint64_t addr,
		       unsigned int access)
{
	(void)ctx;
	atomic_store(&seen.populate_access, access);
	if (seen.populate_rc)
		return seen.populate_rc;
	atomic_fetch_add(&seen.populated, 1);
	return ps_space_map(s, addr, seen.populate_frame++, PS_MAP_WRITE);
}

static void setup_with(bool populate)
{
	struct ps_space_config cfg;

	memset(&seen, 0, sizeof(seen));
	atomic_store(&stress_violations, 0);
	seen.populate_frame = 200;
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.dirty = on_dirty;
	cfg.hooks.free_frame = on_free;
	if (populate)
		cfg.hooks.populate = on_populate;
	ck_assert_int_eq(ps_space_create(&cfg, &sp), 0);
	ps_test_ledger_if_asked(sp);
}

static void setup(void)
{
	setup_with(false);
}

static void setup_populate(void)
{
	setup_with(true);
}

static void teardown(void)
{
	ck_assert_int_eq(ps_space_destroy(sp), 0);
	sp = NULL;
}

static struct ps_page *pg(uint64_t frame)
{
	return ps_space_page(sp, frame);
}

static ps_pte_t entry(uint64_t addr)
{
	ps_pte_t e;

	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(sp), addr, &e), 0);
	return e;
}

/* --- a secondary mapping for the helper and the invalidation checks ------- */

struct secmap {
	struct ps_interval sub;
	pthread_mutex_t lock;
	_Atomic(uint64_t) frame; /* UINT64_MAX: not mapped */
	_Atomic(int) writable;
	_Atomic(unsigned) invalidations, installs;
	_Atomic(int) last_event;
	void (*before_lock)(struct secmap *m); /* test hook, once */
};

static bool sec_invalidate(struct ps_interval *sub,
			   const struct ps_invalidation *inv, uint64_t cur_seq,
			   void *priv)
{
	struct secmap *m = priv;

	pthread_mutex_lock(&m->lock);
	ps_interval_set_seq(sub, cur_seq);
	atomic_store(&m->frame, UINT64_MAX);
	atomic_store(&m->writable, 0);
	atomic_fetch_add(&m->invalidations, 1);
	atomic_store(&m->last_event, (int)inv->event);
	pthread_mutex_unlock(&m->lock);
	return true;
}

static const struct ps_interval_ops sec_ops = {.invalidate = sec_invalidate};

static void sec_lock(void *ctx)
{
	struct secmap *m = ctx;
	void (*hook)(struct secmap *) = m->before_lock;

	if (hook) {
		m->before_lock = NULL;
		hook(m);
	}
	pthread_mutex_lock(&m->lock);
}

static void sec_unlock(void *ctx)
{
	pthread_mutex_unlock(&((struct secmap *)ctx)->lock);
}

static int sec_install(void *ctx, uint64_t addr, uint64_t frame, bool write)
{
	struct secmap *m = ctx;

	(void)addr;
	atomic_store(&m->frame, frame);
	atomic_store(&m->writable, write);
	atomic_fetch_add(&m->installs, 1);
	return 0;
}

static const struct ps_secondary_ops sec_secops = {sec_lock, sec_unlock,
						   sec_install};

static void secmap_init(struct secmap *m, uint64_t start, uint64_t len)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	atomic_store(&m->frame, UINT64_MAX);
	ck_assert_int_eq(ps_interval_insert(&m->sub, ps_space_notifier(sp),
					    start, len, &sec_ops, m),
			 0);
}

static void secmap_fini(struct secmap *m)
{
	ps_interval_remove(&m->sub);
	pthread_mutex_destroy(&m->lock);
}

/* --- create / destroy ----------------------------------------------------- */

START_TEST(create_rejects_bad_config)
{
	struct ps_space_config cfg;
	struct ps_space *s;

	memset(&cfg, 0, sizeof(cfg));
	cfg.nframes = 4;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL); /* size 0 */
	cfg.size = PG + 1;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL);
	cfg.size = PS_PGTABLE_ADDR_END + PG;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL);
	cfg.size = PG;
	cfg.nframes = 0;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL);
	ck_assert_int_eq(ps_space_create(NULL, &s), -EINVAL);
}
END_TEST

START_TEST(caller_frames_and_busy_destroy)
{
	struct ps_page frames[8];
	struct ps_space_config cfg;
	struct ps_space *s;
	struct secmap m;

	memset(frames, 0, sizeof(frames));
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = 16 * PG;
	cfg.nframes = 8;
	cfg.frames = frames;
	ck_assert_int_eq(ps_space_create(&cfg, &s), 0);
	ck_assert_ptr_eq(ps_space_page(s, 3), &frames[3]);
	ck_assert_ptr_null(ps_space_page(s, 8));
	ck_assert_int_eq(ps_space_map(s, 2 * PG, 3, 0), 0);
	ck_assert_uint_eq(ps_page_refs(&frames[3]), 1);
	/* A subscription left behind keeps the space alive. */
	sp = s;
	secmap_init(&m, 0, PG);
	ck_assert_int_eq(ps_space_destroy(s), -EBUSY);
	secmap_fini(&m);
	ck_assert_int_eq(ps_space_destroy(s), 0);
	sp = NULL;
	/* Destroy dropped the mapping's reference in the caller's array. */
	ck_assert_uint_eq(ps_page_refs(&frames[3]), 0);
	ck_assert(!ps_page_is_live(&frames[3]));
}
END_TEST

/* --- map / unmap ---------------------------------------------------------- */

START_TEST(map_takes_a_reference)
{
	ck_assert(!ps_page_is_live(pg(5)));
	ck_assert_int_eq(ps_space_map(sp, 10 * PG, 5, PS_MAP_WRITE), 0);
	ck_assert_uint_eq(ps_page_refs(pg(5)), 1); /* revived by the map */
	ck_assert(ps_pte_is_present(entry(10 * PG)));
	ck_assert_uint_eq(ps_pte_frame(entry(10 * PG)), 5);
	ck_assert(ps_pte_may_write(entry(10 * PG)));
	ck_assert(!ps_pte_is_writable(entry(10 * PG))); /* write-notify */
	/* An alias takes another reference. */
	ck_assert_int_eq(ps_space_map(sp, 11 * PG, 5, 0), 0);
	ck_assert_uint_eq(ps_page_refs(pg(5)), 2);
	ck_assert_int_eq(ps_space_map(sp, 10 * PG, 6, 0), -EEXIST);
	ck_assert_uint_eq(ps_page_refs(pg(6)), 0); /* nothing left behind */
	ck_assert(!ps_page_is_live(pg(6)));
	/* It was free before and never mapped: no free hook for it. */
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 10 * PG, 2 * PG, 0), 0);
	ck_assert_uint_eq(ps_page_refs(pg(5)), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[5]), 1);
	ck_assert(ps_pte_is_none(entry(10 * PG)));
}
END_TEST

START_TEST(map_carries_frame_protection)
{
	ps_page_change_flags(pg(7), PS_PAGE_CACHE_MASK,
			     (uint64_t)3 << PS_PAGE_CACHE_SHIFT);
	ps_page_set_flags(pg(7), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_space_map(sp, 0, 7, 0), 0);
	ck_assert_uint_eq(ps_pte_cache(entry(0)), 3);
	ck_assert(ps_pte_is_encrypted(entry(0)));
}
END_TEST

START_TEST(map_refuses_frozen_and_poisoned)
{
	ck_assert_int_eq(ps_page_init(pg(8), 1), 0);
	ck_assert(ps_page_freeze(pg(8), 1));
	ck_assert_int_eq(ps_space_map(sp, 0, 8, 0), -EBUSY);
	ck_assert_int_eq(ps_page_unfreeze(pg(8), 1), 0);
	ps_page_set_flags(pg(9), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_space_map(sp, 0, 9, 0), -EHWPOISON);
	ck_assert(ps_pte_is_none(entry(0)));
	ck_assert_int_eq(ps_space_map(sp, PG + 1, 1, 0), -EINVAL);
	ck_assert_int_eq(ps_space_map(sp, SPACE_SIZE, 1, 0), -EINVAL);
	ck_assert_int_eq(ps_space_map(sp, 0, NFRAMES, 0), -EINVAL);
	ck_assert_int_eq(ps_space_map(sp, 0, 1, 0x80), -EINVAL);
}
END_TEST

START_TEST(map_range_all_or_nothing)
{
	/* Frame 13 in the middle is frozen: nothing stays mapped. */
	ck_assert_int_eq(ps_page_init(pg(13), 1), 0);
	ck_assert(ps_page_freeze(pg(13), 1));
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 10, 0, NULL),
			 -EBUSY);
	for (uint64_t f = 10; f < 18; f++) {
		if (f != 13)
			ck_assert_uint_eq(ps_page_refs(pg(f)), 0);
		ck_assert(ps_pte_is_none(entry((f - 10) * PG)));
	}
	ck_assert_int_eq(ps_page_unfreeze(pg(13), 0), 0);
	/* A run split by a different cache mode maps in two runs. */
	ps_page_change_flags(pg(14), PS_PAGE_CACHE_MASK,
			     (uint64_t)1 << PS_PAGE_CACHE_SHIFT);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 10, 0, NULL), 0);
	ck_assert_uint_eq(ps_pte_cache(entry(4 * PG)), 1);
	ck_assert_uint_eq(ps_pte_cache(entry(5 * PG)), 0);
	for (uint64_t f = 10; f < 18; f++)
		ck_assert_uint_eq(ps_page_refs(pg(f)), 1);
	/* The unwound frames were free before: no free hook, no double free. */
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	/* A frame that was in use keeps its owner's reference on unwind. */
	ck_assert_int_eq(ps_page_init(pg(30), 1), 0);
	ck_assert_int_eq(ps_page_init(pg(32), 1), 0);
	ck_assert(ps_page_freeze(pg(32), 1));
	ck_assert_int_eq(ps_space_map_range(sp, 16 * PG, 3 * PG, 30, 0, NULL),
			 -EBUSY);
	ck_assert_uint_eq(ps_page_refs(pg(30)), 1);
	ck_assert_int_eq(ps_page_unfreeze(pg(32), 1), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
}
END_TEST

START_TEST(unmap_invalidates_and_keeps_pinned_frames)
{
	struct secmap m;
	uint64_t f;

	secmap_init(&m, 0, 4 * PG);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 20, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, 0, &f), 0);
	ck_assert_uint_eq(f, 21);
	ck_assert_int_eq(ps_space_unmap(sp, 0, 4 * PG, 0), 0);
	ck_assert_uint_ge(atomic_load(&m.invalidations), 1);
	ck_assert_int_eq(atomic_load(&m.last_event), PS_NOTIFIER_UNMAP);
	/* The pin keeps frame 21 alive; the others were freed. */
	ck_assert_uint_eq(ps_page_refs(pg(21)), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 3);
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[21]), 1);
	secmap_fini(&m);
	ck_assert_int_eq(ps_space_unmap(sp, 1, PG, 0), -EINVAL);
}
END_TEST

START_TEST(unmap_zap_keeps_markers)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);

	ck_assert_int_eq(ps_space_map(sp, 0, 1, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 4 * PG, PS_WP_SHARED), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 4 * PG), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, PS_UNMAP_ZAP), 0);
	ck_assert(ps_pte_is_marker(entry(0))); /* protection survives */
	ck_assert_int_eq(ps_space_unmap(sp, 0, 4 * PG, 0), 0);
	ck_assert(ps_pte_is_none(entry(0))); /* munmap drops it */
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 4 * PG), 0);
}
END_TEST

/* --- pins ----------------------------------------------------------------- */

START_TEST(pin_and_unpin)
{
	uint64_t f[4];

	ck_assert_int_eq(ps_space_map_range(sp, 8 * PG, 4 * PG, 30, 0, NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 8 * PG, 4 * PG, 0, f), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(f[i], 30 + (uint64_t)i);
		ck_assert(ps_page_is_pinned(pg(f[i])));
		ck_assert_uint_eq(ps_page_refs(pg(f[i])), 2);
		ck_assert(!ps_page_test_flags(pg(f[i]), PS_PAGE_WRITE_PINNED));
	}
	ps_space_unpin(sp, f, 4, 0);
	for (int i = 0; i < 4; i++)
		ck_assert(!ps_page_is_pinned(pg(30 + (uint64_t)i)));
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 0);
}
END_TEST

/*
 * ps_space_unpin()'s flags: unknown bits release nothing; PS_UNPIN_DIRTY
 * dirties first; PS_UNPIN_LONGTERM for a pin that was not long-term is
 * misuse, reported (-ENOENT), and the pin is released all the same.
 */
START_TEST(unpin_flags)
{
	uint64_t f[2];

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 120, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 2 * PG, 0, f), 0);
	ck_assert_int_eq(ps_space_unpin(sp, f, 2, 0x100), -EINVAL);
	ck_assert_int_eq(ps_space_unpin(sp, f, 2, PS_PIN_PRIVATE), -EINVAL);
	ck_assert_uint_eq(ps_page_pins(pg(120)), 1);
	ck_assert_uint_eq(ps_page_pins(pg(121)), 1);
	ck_assert_int_eq(ps_space_unpin(sp, f, 2, PS_UNPIN_LONGTERM), -ENOENT);
	ck_assert_uint_eq(ps_page_pins(pg(120)), 0);
	ck_assert_uint_eq(ps_page_pins(pg(121)), 0);
	ck_assert(!ps_page_test_flags(pg(120), PS_PAGE_DIRTY));
	/* Long-term: counted and uncounted; the counts stay exact. */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 2 * PG, PS_PIN_LONGTERM, f),
			 0);
	ck_assert_int_eq(ps_space_unpin(sp, f, 1,
					PS_UNPIN_LONGTERM | PS_UNPIN_DIRTY),
			 0);
	ck_assert(ps_page_test_flags(pg(120), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(pg(121), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unpin(sp, &f[1], 1, PS_UNPIN_LONGTERM), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &f[1], 0, PS_UNPIN_LONGTERM), 0);
	ck_assert_uint_eq(ps_page_refs(pg(120)), 1);
	ck_assert_uint_eq(ps_page_refs(pg(121)), 1);
	/* Frames beyond the space are skipped. */
	f[0] = NFRAMES;
	ck_assert_int_eq(ps_space_unpin(sp, f, 1, PS_UNPIN_LONGTERM), 0);
}
END_TEST

START_TEST(write_pin_makes_writable_and_dirty)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 40, PS_MAP_WRITE), 0);
	ck_assert(!ps_pte_is_writable(entry(0)));
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE, &f), 0);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert(ps_page_test_flags(pg(40),
				     PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED));
	ck_assert_uint_eq(atomic_load(&seen.dirty[40]), 1);
	/* Unpin dirty: already dirty, no second hook. */
	ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY);
	ck_assert_uint_eq(atomic_load(&seen.dirty[40]), 1);
	/* Read-only mapping: a write pin is a bad access. */
	ck_assert_int_eq(ps_space_map(sp, PG, 41, 0), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_WRITE, &f),
			 -EFAULT);
	ck_assert(!ps_page_is_pinned(pg(41)));
}
END_TEST

START_TEST(pin_range_all_or_nothing)
{
	uint64_t f[4];

	/* Pages 0, 1, 3 mapped; page 2 missing and no populate hook. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 50, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 53, 0), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 4 * PG, 0, f), -EFAULT);
	ck_assert(!ps_page_is_pinned(pg(50)));
	ck_assert(!ps_page_is_pinned(pg(51)));
	ck_assert(!ps_page_is_pinned(pg(53)));
	ck_assert_uint_eq(ps_page_refs(pg(50)), 1);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 4 * PG, 0x40, f), -EINVAL);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 0, 0, f), -EINVAL);
}
END_TEST

START_TEST(pin_populates_missing)
{
	uint64_t f[2];

	ck_assert_int_eq(ps_space_pin_range(sp, 4 * PG, 2 * PG, 0, f), 0);
	ck_assert_uint_eq(atomic_load(&seen.populated), 2);
	ck_assert_uint_eq(f[0], 200);
	ck_assert_uint_eq(f[1], 201);
	ps_space_unpin(sp, f, 2, 0);
	seen.populate_rc = -ENOSPC;
	ck_assert_int_eq(ps_space_pin_range(sp, 8 * PG, PG, 0, f), -ENOSPC);
}
END_TEST

START_TEST(pin_write_protected)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 60, PS_MAP_WRITE,
					    NULL),
			 0);
	/* Sync: the write pin returns the fault to the caller. */
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 2 * PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 2 * PG), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE, &f),
			 -EAGAIN);
	ck_assert(!ps_page_is_pinned(pg(60)));
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0); /* read ok */
	ps_space_unpin(sp, &f, 1, 0);
	/* Async: resolved as a write would: counts as written, dirty. */
	ck_assert_int_eq(ps_pgtable_register(pt, 2 * PG, 2 * PG, PS_WP_ASYNC),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * PG, 2 * PG), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 2 * PG, PG, PS_PIN_WRITE, &f),
			 0);
	ck_assert(!ps_pte_uffd_wp(entry(2 * PG)));
	ck_assert(ps_page_test_flags(pg(62), PS_PAGE_DIRTY));
	ps_space_unpin(sp, &f, 1, 0);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 4 * PG), 0);
}
END_TEST

START_TEST(pin_private_and_poisoned)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 70, 0, NULL), 0);
	ps_page_set_flags(pg(70), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), -EPERM);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_PRIVATE, &f), 0);
	ps_space_unpin(sp, &f, 1, 0);
	ps_page_set_flags(pg(71), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, 0, &f), -EHWPOISON);
	ck_assert(!ps_page_is_pinned(pg(70)));
	ck_assert(!ps_page_is_pinned(pg(71)));
}
END_TEST

/* --- discard -------------------------------------------------------------- */

/* The skip records: address, frame and reason, in address order. */
static void assert_skip(const struct ps_discard_skip *k, uint64_t addr,
			uint64_t frame, enum ps_discard_reason reason)
{
	ck_assert_uint_eq(k->addr, addr);
	ck_assert_uint_eq(k->frame, frame);
	ck_assert_int_eq(k->reason, reason);
}

START_TEST(discard_skips_pinned)
{
	struct ps_discard_skip skipped[4];
	uint64_t f[2], nskipped = 99;
	ps_pte_t e2, e5;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 80, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 2 * PG, PG, 0, &f[0]), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 5 * PG, PG, PS_PIN_WRITE,
					    &f[1]),
			 0);
	e2 = entry(2 * PG);
	e5 = entry(5 * PG);
	ck_assert_int_eq(ps_space_discard(sp, 0, 8 * PG, skipped, 4, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 2);
	assert_skip(&skipped[0], 2 * PG, 82, PS_DISCARD_PINNED);
	assert_skip(&skipped[1], 5 * PG, 85, PS_DISCARD_PINNED);
	/* Left exactly as they were, entry and all. */
	ck_assert_uint_eq(entry(2 * PG), e2);
	ck_assert_uint_eq(entry(5 * PG), e5);
	ck_assert(ps_pte_is_none(entry(0)));
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 6);
	/* Too little room: the count is still complete, and only the room
	 * is written. */
	memset(skipped, 0xa5, sizeof(skipped));
	ck_assert_int_eq(ps_space_discard(sp, 0, 8 * PG, skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 2);
	assert_skip(&skipped[0], 2 * PG, 82, PS_DISCARD_PINNED);
	ck_assert_uint_eq(skipped[1].addr, UINT64_C(0xa5a5a5a5a5a5a5a5));
	ps_space_unpin(sp, f, 2, 0);
	ck_assert_int_eq(ps_space_discard(sp, 0, 8 * PG, NULL, 0, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 8);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, NULL, 1, NULL), -EINVAL);
}
END_TEST

/*
 * Every other holder keeps its page too, reported busy: the owner's own
 * reference, an alias (the same frame mapped twice), and frozen: a freezer
 * that is not discard. Only the frame held by its mapping alone goes, and
 * a page with no entry is not reported.
 */
START_TEST(discard_reports_busy_and_frozen)
{
	struct ps_discard_skip skipped[8];
	uint64_t nskipped = 99;
	ps_pte_t before[4];

	ck_assert_int_eq(ps_space_map(sp, 0, 110, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_page_get(pg(110)), 0); /* the owner's */
	ck_assert_int_eq(ps_space_map(sp, PG, 111, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 111, 0), 0); /* alias */
	ck_assert_int_eq(ps_space_map(sp, 2 * PG, 112, 0), 0);
	ck_assert(ps_page_freeze(pg(112), 1)); /* a foreign freezer */
	ck_assert_int_eq(ps_space_map(sp, 4 * PG, 113, 0), 0);
	for (int i = 0; i < 4; i++)
		before[i] = entry((uint64_t)i * PG);
	ck_assert_int_eq(ps_space_discard(sp, 0, 6 * PG, skipped, 8, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 4);
	assert_skip(&skipped[0], 0, 110, PS_DISCARD_BUSY);
	assert_skip(&skipped[1], PG, 111, PS_DISCARD_BUSY);
	assert_skip(&skipped[2], 2 * PG, 112, PS_DISCARD_FROZEN);
	assert_skip(&skipped[3], 3 * PG, 111, PS_DISCARD_BUSY);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(entry((uint64_t)i * PG), before[i]);
	ck_assert(ps_pte_is_none(entry(4 * PG)));
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed[113]), 1);
	ck_assert(ps_page_is_frozen(pg(112))); /* still its freezer's */
	ck_assert_uint_eq(ps_page_refs(pg(110)), 2);
	ck_assert_uint_eq(ps_page_refs(pg(111)), 2);
	/* The holders let go: those pages go; the alias is left as long as
	 * both mappings are. */
	ck_assert_int_eq(ps_page_unfreeze(pg(112), 1), 0);
	ck_assert(!ps_page_put(pg(110)));
	ck_assert_int_eq(ps_space_discard(sp, 0, 6 * PG, skipped, 8, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 2);
	assert_skip(&skipped[0], PG, 111, PS_DISCARD_BUSY);
	assert_skip(&skipped[1], 3 * PG, 111, PS_DISCARD_BUSY);
	ck_assert_uint_eq(atomic_load(&seen.freed[110]), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed[112]), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 3 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_space_discard(sp, PG, PG, skipped, 8, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[111]), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 4);
}
END_TEST

/* --- CPU faults ----------------------------------------------------------- */

START_TEST(write_fault_marks_dirty_once)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 90, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_READ), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[90]), 1);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_READ),
			 PS_FAULT_MISSING);
	ck_assert_int_eq(ps_space_fault(sp, 1, PS_ACCESS_READ),
			 PS_FAULT_INVALID);
}
END_TEST

START_TEST(fault_populates)
{
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(ps_pte_frame(entry(3 * PG)), 200);
	ck_assert(ps_pte_is_writable(entry(3 * PG)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[200]), 1);
}
END_TEST

/* --- the secondary-map helper --------------------------------------------- */

START_TEST(secondary_map_read_and_write)
{
	struct secmap m;

	secmap_init(&m, 0, 16 * PG);
	ck_assert_int_eq(ps_space_map(sp, 4 * PG, 100, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 4 * PG, false,
						&sec_secops, &m),
			 0);
	ck_assert_uint_eq(atomic_load(&m.frame), 100);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 0); /* read: none */
	ck_assert_uint_eq(ps_page_refs(pg(100)), 1); /* no reference kept */
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 4 * PG, true,
						&sec_secops, &m),
			 0);
	ck_assert(atomic_load(&m.writable));
	ck_assert_uint_eq(atomic_load(&seen.dirty[100]), 1);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 4 * PG, true,
						&sec_secops, &m),
			 0);
	ck_assert_uint_eq(atomic_load(&seen.dirty[100]), 1); /* once */
	/* Errors: outside the subscription, missing, read-only mapping. */
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 16 * PG, false,
						&sec_secops, &m),
			 -EINVAL);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 5 * PG, false,
						&sec_secops, &m),
			 -EFAULT);
	ck_assert_int_eq(ps_space_map(sp, 6 * PG, 101, 0), 0);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 6 * PG, true,
						&sec_secops, &m),
			 -EFAULT);
	ps_page_set_flags(pg(101), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 6 * PG, false,
						&sec_secops, &m),
			 -EPERM);
	secmap_fini(&m);
}
END_TEST

/*
 * Regression: the helper asked the populate hook for a read even when it
 * mapped for write, so an owner that populates differently for writes (no
 * shared zero page) mapped the wrong kind of page. The hook is told the
 * access; the primary entry still is not made writable.
 */
START_TEST(secondary_map_populates_for_its_access)
{
	struct secmap m;

	secmap_init(&m, 0, 16 * PG);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 5 * PG, true,
						&sec_secops, &m),
			 0);
	ck_assert_uint_eq(atomic_load(&seen.populated), 1);
	ck_assert_uint_eq(atomic_load(&seen.populate_access), PS_ACCESS_WRITE);
	ck_assert_uint_eq(atomic_load(&m.frame), 200);
	ck_assert(atomic_load(&m.writable));
	ck_assert(!ps_pte_is_writable(entry(5 * PG)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[200]), 1);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 6 * PG, false,
						&sec_secops, &m),
			 0);
	ck_assert_uint_eq(atomic_load(&seen.populated), 2);
	ck_assert_uint_eq(atomic_load(&seen.populate_access), PS_ACCESS_READ);
	ck_assert_uint_eq(atomic_load(&seen.dirty[201]), 0);
	/* The hook's error is the helper's. */
	seen.populate_rc = -ENOSPC;
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 7 * PG, true,
						&sec_secops, &m),
			 -ENOSPC);
	secmap_fini(&m);
}
END_TEST

/* Replace the frame at 4 * PG between the helper's lookup and its lock. */
static void remap_racer(struct secmap *m)
{
	(void)m;
	ck_assert_int_eq(ps_space_unmap(sp, 4 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 4 * PG, 111, PS_MAP_WRITE), 0);
}

START_TEST(secondary_map_retries_on_invalidation)
{
	struct secmap m;

	secmap_init(&m, 0, 16 * PG);
	ck_assert_int_eq(ps_space_map(sp, 4 * PG, 110, PS_MAP_WRITE), 0);
	m.before_lock = remap_racer;
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 4 * PG, true,
						&sec_secops, &m),
			 0);
	/* The retried attempt installed the new frame, and only it. */
	ck_assert_uint_eq(atomic_load(&m.frame), 111);
	ck_assert_uint_eq(atomic_load(&m.installs), 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty[110]), 0);
	ck_assert_uint_eq(atomic_load(&seen.dirty[111]), 1);
	ck_assert_uint_eq(atomic_load(&seen.freed[110]), 1);
	secmap_fini(&m);
}
END_TEST

START_TEST(secondary_map_write_protected)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct secmap m;
	uint64_t got[4], n;

	secmap_init(&m, 0, 16 * PG);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 120, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_register(pt, PG, PG, PS_WP_ASYNC), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 2 * PG), 0);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 0, true,
						&sec_secops, &m),
			 -EAGAIN); /* sync: seen before it happens */
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, PG, true,
						&sec_secops, &m),
			 0);
	ck_assert(ps_pte_uffd_wp(entry(PG))); /* still protected for CPU */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 2 * PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], PG); /* the device write is in the log */
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 2 * PG), 0);
	secmap_fini(&m);
}
END_TEST

/* --- dirty tracking and harvest ------------------------------------------- */

START_TEST(mark_dirty_and_harvest)
{
	uint64_t got[8], n, resume;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 130, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 5 * PG),
			 PS_SPACE_MARK_DIRTIED);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 5 * PG),
			 PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 2 * PG),
			 PS_SPACE_MARK_DIRTIED);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 9 * PG),
			 PS_SPACE_MARK_UNMAPPED);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 2);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 8, &n,
					  &resume),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], 2 * PG);
	ck_assert_uint_eq(got[1], 5 * PG);
	ck_assert_uint_eq(resume, 8 * PG);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0); /* cleared */
	/* Marks again after a harvest, and a failed transfer put back. */
	ck_assert_int_eq(ps_space_mark_dirty(sp, 5 * PG),
			 PS_SPACE_MARK_WAS_DIRTY); /* frame still dirty */
	ck_assert_int_eq(ps_space_redirty(sp, (uint64_t[]){7 * PG}, 1), 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[1], 7 * PG);
	ck_assert_int_eq(ps_space_redirty(sp, (uint64_t[]){3}, 1), -EINVAL);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 0, &n, NULL),
			 -EINVAL);
}
END_TEST

START_TEST(harvest_budget_and_resume)
{
	uint64_t got[3], n, resume, total = 0;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 10 * PG, 140, 0, NULL), 0);
	for (int i = 0; i < 10; i++)
		(void)ps_space_mark_dirty(sp, (uint64_t)i * PG);
	resume = 0;
	while (resume < 10 * PG) {
		ck_assert_int_eq(ps_space_harvest(sp, resume, 10 * PG - resume,
						  0, got, 3, &n, &resume),
				 0);
		ck_assert_uint_le(n, 3);
		for (uint64_t k = 0; k < n; k++)
			ck_assert_uint_eq(got[k], (total + k) * PG);
		total += n;
	}
	ck_assert_uint_eq(total, 10);
}
END_TEST

START_TEST(harvest_reports_write_pinned_until_unpinned)
{
	uint64_t got[4], n, f;

	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 150, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 3 * PG, PG, PS_PIN_WRITE, &f),
			 0);
	for (int round = 0; round < 3; round++) {
		ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 4, &n,
						  NULL),
				 0);
		ck_assert_uint_eq(n, 1);
		ck_assert_uint_eq(got[0], 3 * PG);
	}
	ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY);
	/* Once more after the unpin (writes up to it), then not again. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0);
	ck_assert(!ps_page_test_flags(pg(150), PS_PAGE_WRITE_PINNED));
}
END_TEST

START_TEST(harvest_rearm_collects_cpu_writes)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct secmap m;
	uint64_t got[8], n;

	secmap_init(&m, 0, 8 * PG);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 160, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 8 * PG, PS_WP_ASYNC), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 8 * PG), 0);
	ck_assert_int_eq(ps_space_fault(sp, 1 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 6 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert(!ps_pte_uffd_wp(entry(6 * PG)));
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 6 * PG, false,
						&sec_secops, &m),
			 0);
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, PS_HARVEST_REARM, got,
					  8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], 1 * PG);
	ck_assert_uint_eq(got[1], 6 * PG);
	ck_assert(ps_pte_uffd_wp(entry(6 * PG)));	      /* re-armed */
	ck_assert_uint_eq(atomic_load(&m.frame), UINT64_MAX); /* torn down */
	ck_assert_int_eq(atomic_load(&m.last_event), PS_NOTIFIER_SOFT_DIRTY);
	/* Nothing written since: an empty harvest. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, PS_HARVEST_REARM, got,
					  8, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 8 * PG), 0);
	secmap_fini(&m);
}
END_TEST

/*
 * REARM over a range of several registrations: the written entries of
 * every async part are collected and re-armed, a sync part's are left
 * alone, whether the range starts in an async registration (its check of
 * the whole range fails, so the search for async parts runs) or not.
 */
START_TEST(harvest_rearm_mixed_registrations)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t got[16], n;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 16 * PG, 100, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 4 * PG, PS_WP_ASYNC), 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 4 * PG, 4 * PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 8 * PG, 4 * PG, PS_WP_ASYNC),
			 0);
	/* Pages 12..15 are not registered. */
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 12 * PG), 0);
	ck_assert_int_eq(ps_pgtable_unprotect(pt, 5 * PG, PG), 0);
	for (uint64_t a = 1 * PG; a <= 9 * PG; a += 4 * PG) /* 1, 5, 9 */
		ck_assert_int_eq(ps_pgtable_fault(pt, a, PS_ACCESS_WRITE),
				 PS_FAULT_OK); /* the table alone saw them */

	/* From an async registration over all four parts. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 16 * PG, PS_HARVEST_REARM, got,
					  16, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(got[0], 1 * PG);
	ck_assert_uint_eq(got[1], 9 * PG);
	ck_assert(ps_pte_uffd_wp(entry(1 * PG)));
	ck_assert(ps_pte_uffd_wp(entry(9 * PG)));
	ck_assert(!ps_pte_uffd_wp(entry(5 * PG))); /* sync: left alone */
	ck_assert(ps_pte_written(entry(5 * PG)));

	/* From the sync registration, and from inside one async range. */
	ck_assert_int_eq(ps_pgtable_fault(pt, 10 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_harvest(sp, 4 * PG, 12 * PG, PS_HARVEST_REARM,
					  got, 16, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 10 * PG);
	ck_assert_int_eq(ps_pgtable_fault(pt, 2 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_harvest(sp, 1 * PG, 3 * PG, PS_HARVEST_REARM,
					  got, 16, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 2 * PG);
	ck_assert(ps_pte_uffd_wp(entry(2 * PG)));
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 12 * PG), 0);
}
END_TEST

/* --- write-back ----------------------------------------------------------- */

struct wb_seen {
	uint64_t addrs[16];
	bool pinned[16];
	unsigned n;
	int fail_once;
	/* An address to write while its write-back runs. */
	uint64_t write_during;
};

static void wb_seen_init(struct wb_seen *w)
{
	memset(w, 0, sizeof(*w));
	w->write_during = UINT64_MAX;
}

static int wb_write(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct wb_seen *w = ctx;

	(void)frame;
	ck_assert(ps_page_test_flags(pg(frame), PS_PAGE_WRITEBACK));
	if (w->n < 16) {
		w->addrs[w->n] = addr;
		w->pinned[w->n] = pinned;
	}
	w->n++;
	if (addr == w->write_during) {
		/* The entry is write-protected: the write faults, dirties. */
		ck_assert(!ps_pte_is_writable(entry(addr)));
		ck_assert_int_eq(ps_space_fault(sp, addr, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	}
	if (w->fail_once) {
		w->fail_once = 0;
		return -EIO;
	}
	return 0;
}

START_TEST(writeback_unpinned)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 170, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	w.write_during = 3 * PG;
	ck_assert_int_eq(ps_space_writeback(sp, 0, 4 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 2);
	ck_assert_uint_eq(st.written, 2);
	ck_assert(!ps_page_test_flags(pg(171), PS_PAGE_DIRTY));
	ck_assert(!ps_pte_is_writable(entry(PG))); /* stable page */
	/* The write during write-back was kept: dirty again, written again. */
	ck_assert(ps_page_test_flags(pg(173), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&seen.dirty[173]), 2);
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 4 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 1);
	ck_assert_uint_eq(w.addrs[0], 3 * PG);
	/* Nothing dirty: nothing written. */
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 4 * PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 0);
}
END_TEST

START_TEST(writeback_pinned_modes)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t fw, fr;

	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 180, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE, &fw), 0);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, 0, &fr), 0);
	/* Cleaning write-back skips both pinned frames: they stay dirty. */
	ck_assert_int_eq(ps_space_writeback(sp, 0, 2 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 0);
	ck_assert_uint_eq(st.skipped_pinned, 2);
	ck_assert(ps_page_test_flags(pg(180), PS_PAGE_DIRTY));
	ck_assert(ps_page_test_flags(pg(181), PS_PAGE_DIRTY));
	/* Integrity: both bounced; the write-pinned one stays dirty. */
	ck_assert_int_eq(ps_space_writeback(sp, 0, 2 * PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 2);
	ck_assert(w.pinned[0] && w.pinned[1]);
	ck_assert_uint_eq(st.bounced, 2);
	ck_assert_uint_eq(st.kept_dirty, 1);
	ck_assert(ps_page_test_flags(pg(180), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(pg(181), PS_PAGE_DIRTY));
	ps_space_unpin(sp, &fw, 1, PS_UNPIN_DIRTY);
	ps_space_unpin(sp, &fr, 1, 0);
	/* After the unpin an ordinary write-back cleans it. */
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 2 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	ck_assert(!ps_page_test_flags(pg(180), PS_PAGE_DIRTY));
}
END_TEST

START_TEST(writeback_error_redirties)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	wb_seen_init(&w);
	w.fail_once = 1;
	ck_assert_int_eq(ps_space_map(sp, 0, 190, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_write,
					    &w, &st),
			 -EIO);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert(ps_page_test_flags(pg(190), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_write,
					    &w, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, 7, wb_write, &w, &st),
			 -EINVAL);
}
END_TEST

/* --- failpoints: the races of S2, made to happen exactly in their windows - */

/*
 * The failpoints (lib/failpoint.h): this test compiles the space's files
 * and lib/failpoint.c with -DPS_TEST_FAILPOINTS (tests/meson.build).
 */
/*
 * Each armed point fires once; arm_also() arms a second one. Every point
 * reached, by any thread, is counted in fp_hits.
 */
static int fp_point, fp_point2;
static unsigned fp_fired, fp_fired2;
static void (*fp_action)(uint64_t addr);
static void (*fp_action2)(uint64_t addr);
static _Atomic(unsigned) fp_hits[FP_NR];

static void failpoint(int point, uint64_t addr)
{
	ck_assert_int_lt(point, FP_NR);
	atomic_fetch_add(&fp_hits[point], 1);
	if (point == fp_point && !fp_fired) {
		fp_fired++;
		fp_action(addr);
	} else if (point == fp_point2 && !fp_fired2) {
		fp_fired2++;
		fp_action2(addr);
	}
}

static void arm(int point, void (*action)(uint64_t addr))
{
	for (int i = 0; i < FP_NR; i++)
		atomic_store(&fp_hits[i], 0);
	fp_point = point;
	fp_fired = 0;
	fp_action = action;
	fp_point2 = 0;
	ps__failpoint = failpoint;
}

static void arm_also(int point, void (*action)(uint64_t addr))
{
	fp_point2 = point;
	fp_fired2 = 0;
	fp_action2 = action;
}

static void disarm(void)
{
	ps__failpoint = NULL;
}

static void replace_frame(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, addr, 101, 0), 0);
}

/* The entry changes between the pin and its re-check: back out, retry. */
START_TEST(fp_pin_backs_out_on_change)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	arm(FP_PIN_BEFORE_RECHECK, replace_frame);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(f, 101); /* the frame mapped now */
	/* The old frame: no residual pin or reference, freed exactly once. */
	ck_assert(!ps_page_is_live(pg(100)));
	ck_assert_uint_eq(ps_page_pins(pg(100)), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[100]), 1);
	ck_assert_uint_eq(ps_page_pins(pg(101)), 1);
	ps_space_unpin(sp, &f, 1, 0);
}
END_TEST

/* The frame is unmapped between the lookup and the pin: the pin fails on
 * the free frame and the lookup is retried. */
START_TEST(fp_pin_retries_on_freed_frame)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	arm(FP_PIN_AFTER_LOOKUP, replace_frame);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	disarm();
	ck_assert_uint_eq(f, 101);
	ck_assert(!ps_page_is_live(pg(100)));
	ps_space_unpin(sp, &f, 1, 0);
}
END_TEST

static void replace_frame_and_trim(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	/* The leaf is empty now: trim unlinks it (freed after a grace
	 * period, which the pinner's section holds off). */
	ck_assert_int_eq(ps_pgtable_trim(ps_space_pgtable(sp), 0, 512 * PG), 0);
	ck_assert_int_eq(ps_space_map(sp, addr, 101, 0), 0);
}

/*
 * The pins read an entry twice through one leaf cursor (S2 in lib/space-pin.c).
 * Here the frame is unmapped between the pin and its re-read, the leaf trimmed
 * and a new leaf made for a new mapping: the cursor still points into the old
 * leaf, which reads none, so the pin backs out and takes the frame mapped now;
 * in a range, the pages after it are pinned through a cursor walked again.
 */
START_TEST(fp_pin_cursor_on_trimmed_leaf)
{
	uint64_t f[3];

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	arm(FP_PIN_BEFORE_RECHECK, replace_frame_and_trim);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, f), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(f[0], 101);
	ck_assert(!ps_page_is_live(pg(100)));
	ck_assert_uint_eq(ps_page_pins(pg(101)), 1);
	ps_space_unpin(sp, f, 1, 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);

	/* The same in the middle of a range: the cursor moves on. */
	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	ck_assert_int_eq(ps_space_map_range(sp, PG, 2 * PG, 102, 0, NULL), 0);
	arm(FP_PIN_BEFORE_RECHECK, replace_frame);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 3 * PG, 0, f), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(f[0], 101); /* backed out, pinned again */
	ck_assert_uint_eq(f[1], 102);
	ck_assert_uint_eq(f[2], 103);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(ps_page_pins(pg(f[i])), 1);
	ck_assert_uint_eq(ps_page_pins(pg(100)), 0);
	ps_space_unpin(sp, f, 3, 0);
}
END_TEST

static uint64_t fp_pinned_frame;

static void pin_now(uint64_t addr)
{
	ck_assert_int_eq(ps_space_pin_range(sp, addr, PG, 0, &fp_pinned_frame),
			 0);
}

/*
 * A pin lands right after discard saw the mapping's reference alone: the
 * freeze fails (the pin came first on the frame's word), discard looks
 * again and reports the page pinned, its entry untouched (S10).
 */
START_TEST(fp_discard_pin_before_freeze)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped;
	ps_pte_t before;

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	before = entry(0);
	arm(FP_DISCARD_AFTER_CHECK, pin_now);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1, &nskipped),
			 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(nskipped, 1);
	assert_skip(&skipped, 0, 100, PS_DISCARD_PINNED);
	ck_assert_uint_eq(entry(0), before);
	ck_assert_uint_eq(ps_page_refs(pg(100)), 2); /* mapping + pin */
	ck_assert_uint_eq(atomic_load(&seen.freed[100]), 0);
	ps_space_unpin(sp, &fp_pinned_frame, 1, 0);
}
END_TEST

/*
 * A pin that tries while discard holds the frame frozen fails its try,
 * waits, and finds the page gone (no populate hook here: -EFAULT): it
 * never holds the frame discard frees, and the discard goes through.
 */
struct late_pin {
	pthread_t t;
	int rc;
	uint64_t frame;
};

static struct late_pin late_pin;

static void *late_pinner(void *arg)
{
	struct late_pin *l = arg;

	l->rc = ps_space_pin_range(sp, 0, PG, 0, &l->frame);
	return NULL;
}

static void pin_while_frozen(uint64_t addr)
{
	(void)addr;
	ck_assert(ps_page_is_frozen(pg(100)));
	ck_assert_int_eq(pthread_create(&late_pin.t, NULL, late_pinner,
					&late_pin),
			 0);
	/* Its try failed on the frozen frame and it looked again. */
	while (atomic_load(&fp_hits[FP_PIN_AFTER_LOOKUP]) < 2)
		sched_yield();
	ck_assert(!ps_page_is_pinned(pg(100)));
}

START_TEST(fp_discard_pin_while_frozen)
{
	uint64_t nskipped = 99;

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	memset(&late_pin, 0, sizeof(late_pin));
	arm(FP_DISCARD_FROZEN, pin_while_frozen);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, NULL, 0, &nskipped), 0);
	pthread_join(late_pin.t, NULL);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_int_eq(late_pin.rc, -EFAULT);
	ck_assert(ps_pte_is_none(entry(0)));
	ck_assert(!ps_page_is_live(pg(100)));
	ck_assert(!ps_page_is_frozen(pg(100)));
	ck_assert_uint_eq(atomic_load(&seen.freed[100]), 1);
}
END_TEST

/* A frame held only by its mapping is discarded exactly (freeze path). */
START_TEST(discard_exact_path_frees)
{
	uint64_t nskipped;

	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	ps_page_set_flags(pg(100), PS_PAGE_DIRTY);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, NULL, 0, &nskipped), 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert(!ps_page_is_live(pg(100)));
	ck_assert(!ps_page_is_frozen(pg(100)));
	/* The free ends its lifetime (issue 15 #3): contents given up. */
	ck_assert(!ps_page_test_flags(pg(100), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&seen.freed[100]), 1);
}
END_TEST

/* --- discard and a frame frozen by another thread ------------------------- */

/*
 * Discard one page whose frame @frame the test holds frozen with @refs (as
 * prot.h's set_cache or an owner's migration would): the page is left in
 * place and reported frozen, the frame stays frozen, nothing is freed.
 */
static void discard_frozen_page(uint64_t frame, uint64_t refs)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped = 99;

	ck_assert(ps_page_freeze(pg(frame), refs));
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 1);
	assert_skip(&skipped, 0, frame, PS_DISCARD_FROZEN);
	ck_assert(ps_page_is_frozen(pg(frame)));
	ck_assert(ps_pte_is_present(entry(0)));
	ck_assert_uint_eq(ps_pte_frame(entry(0)), frame);
	ck_assert_uint_eq(atomic_load(&seen.freed[frame]), 0);
	/* The freezer ends its freeze with the references it counted. */
	ck_assert_int_eq(ps_page_unfreeze(pg(frame), refs), 0);
	ck_assert_uint_eq(ps_page_refs(pg(frame)), refs);
}

START_TEST(discard_leaves_a_foreign_freeze)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped;

	/* Held only by the mapping. */
	ck_assert_int_eq(ps_space_map(sp, 0, 100, 0), 0);
	discard_frozen_page(100, 1);
	/* Unfrozen, the page goes as usual. */
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, NULL, 0, &nskipped), 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[100]), 1);
	/* With another holder too: frozen while frozen, busy after. */
	ck_assert_int_eq(ps_space_map(sp, 0, 101, 0), 0);
	ck_assert_int_eq(ps_page_get(pg(101)), 0);
	discard_frozen_page(101, 2);
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 1);
	assert_skip(&skipped, 0, 101, PS_DISCARD_BUSY);
	ck_assert_uint_eq(ps_page_refs(pg(101)), 2);
	ck_assert(!ps_page_put(pg(101)));
	ck_assert_int_eq(ps_space_discard(sp, 0, PG, NULL, 0, &nskipped), 0);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[101]), 1);
}
END_TEST

static uint64_t fp_freeze_frame, fp_freeze_refs;

static void freeze_now(uint64_t addr)
{
	(void)addr;
	ck_assert(ps_page_freeze(pg(fp_freeze_frame), fp_freeze_refs));
}

/*
 * A freeze (a cache-mode change, a migration) lands right after discard looked
 * at the frame: discard's own freeze fails, and it reports the page frozen. A
 * frame with another holder is reported busy before any freeze is tried.
 */
START_TEST(fp_discard_freeze_after_check)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped;

	for (uint64_t refs = 1; refs <= 2; refs++) {
		uint64_t frame = 100 + refs;

		ck_assert_int_eq(ps_space_map(sp, 0, frame, 0), 0);
		if (refs == 2)
			ck_assert_int_eq(ps_page_get(pg(frame)), 0);
		fp_freeze_frame = frame;
		fp_freeze_refs = refs;
		arm(FP_DISCARD_AFTER_CHECK, freeze_now);
		ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1,
						  &nskipped),
				 0);
		disarm();
		ck_assert_uint_eq(nskipped, 1);
		ck_assert(ps_pte_is_present(entry(0)));
		ck_assert_uint_eq(atomic_load(&seen.freed[frame]), 0);
		if (refs == 1) {
			ck_assert_uint_eq(fp_fired, 1);
			assert_skip(&skipped, 0, frame, PS_DISCARD_FROZEN);
			ck_assert(ps_page_is_frozen(pg(frame)));
			ck_assert_int_eq(ps_page_unfreeze(pg(frame), refs), 0);
		} else {
			ck_assert_uint_eq(fp_fired, 0);
			assert_skip(&skipped, 0, frame, PS_DISCARD_BUSY);
			ck_assert(!ps_page_is_frozen(pg(frame)));
			ck_assert(!ps_page_put(pg(frame)));
		}
		ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
		ck_assert_uint_eq(atomic_load(&seen.freed[frame]), 1);
	}
}
END_TEST

/* --- write faults: dirty before writable (seed 003, S3) ------------------- */

static void watch_dirty(uint64_t addr)
{
	seen.dirty_addr = addr;
	atomic_store(&seen.dirty_saw_writable, 0);
	atomic_store(&seen.dirty_saw_unlocked, 0);
	seen.dirty_watch = true;
}

static void watch_end(void)
{
	seen.dirty_watch = false;
	ck_assert_msg(atomic_load(&seen.dirty_saw_writable) == 0,
		      "the dirty hook ran with the entry already writable");
	ck_assert_msg(atomic_load(&seen.dirty_saw_unlocked) == 0,
		      "the dirty hook ran without its frame's LOCKED bit");
}

/* Every path that makes an entry writable: the hook first. */
START_TEST(write_fault_dirty_before_writable)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 4 * PG, 20, PS_MAP_WRITE,
					    NULL),
			 0);
	/* A CPU write fault. */
	watch_dirty(0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	watch_end();
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[20]), 1);
	/* A pin for write. */
	watch_dirty(PG);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_WRITE, &f), 0);
	watch_end();
	ck_assert(ps_pte_is_writable(entry(PG)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[21]), 1);
	ps_space_unpin(sp, &f, 1, 0);
	/* An async write-protected page, and a sync one resolved. */
	ck_assert_int_eq(ps_pgtable_register(pt, 2 * PG, PG, PS_WP_ASYNC), 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 3 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * PG, PG), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 3 * PG, PG), 0);
	watch_dirty(2 * PG);
	ck_assert_int_eq(ps_space_fault(sp, 2 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	watch_end();
	watch_dirty(3 * PG);
	/* Refused: nothing marked (the write did not happen). */
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_WP);
	ck_assert_uint_eq(atomic_load(&seen.dirty[23]), 0);
	ck_assert(!ps_pte_is_writable(entry(3 * PG)));
	ck_assert_int_eq(ps_space_fault(sp, 3 * PG,
					PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP),
			 PS_FAULT_OK);
	watch_end();
	ck_assert(ps_pte_is_writable(entry(3 * PG)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[22]), 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty[23]), 1);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 2 * PG, 2 * PG), 0);
}
END_TEST

static void replace_with_writable_frame(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, addr, 31, PS_MAP_WRITE), 0);
}

/* The entry changes to another frame while the fault holds the first
 * frame's lock: the fault must mark and make writable the new frame, under
 * the new frame's lock, and leave the old one alone. */
START_TEST(fp_fault_frame_changed_under_lock)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 30, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_page_get(pg(30)), 0); /* keeps it alive */
	arm(FP_FAULT_LOCKED, replace_with_writable_frame);
	watch_dirty(0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	disarm();
	watch_end();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(ps_pte_frame(entry(0)), 31);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[31]), 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty[30]), 0);
	ck_assert(!ps_page_test_flags(pg(30), PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert(!ps_page_test_flags(pg(31), PS_PAGE_LOCKED));
	ck_assert(ps_page_put(pg(30)));
}
END_TEST

static void map_writable_frame(uint64_t addr)
{
	ck_assert_int_eq(ps_space_map(sp, addr, 32, PS_MAP_WRITE), 0);
}

/* A write fault finds no page; a page is mapped before it acts: the entry
 * must not become writable without its frame marked dirty first. */
START_TEST(fp_fault_page_mapped_meanwhile)
{
	enum ps_fault fr;

	arm(FP_FAULT_CHECKED, map_writable_frame);
	watch_dirty(0);
	fr = ps_space_fault(sp, 0, PS_ACCESS_WRITE);
	disarm();
	watch_end();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert(fr == PS_FAULT_OK || fr == PS_FAULT_MISSING);
	if (ps_pte_is_writable(entry(0)))
		ck_assert_msg(ps_page_test_flags(pg(32), PS_PAGE_DIRTY) &&
				      atomic_load(&seen.dirty[32]) == 1,
			      "writable entry, frame never marked dirty");
}
END_TEST

static int wb_nop(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	(void)ctx;
	(void)addr;
	(void)frame;
	(void)pinned;
	return 0;
}

static void write_back_now(uint64_t addr)
{
	struct ps_writeback_stats st;

	ck_assert_int_eq(ps_space_writeback(sp, addr, PG, PS_WB_CLEAN, wb_nop,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	ck_assert(!ps_pte_is_writable(entry(addr))); /* stable page */
}

/* A write fault sees a writable entry; write-back write-protects and cleans the
 * frame before the fault acts: the fault must not make the entry writable again
 * without dirtying the frame (else the write is never written back). */
START_TEST(fp_fault_writeback_meanwhile)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 33, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[33]), 1);
	arm(FP_FAULT_CHECKED, write_back_now);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	/* The fault is ordered before the write-back (the entry was
	 * writable when it looked), or after it (it dirtied the frame). */
	if (ps_pte_is_writable(entry(0)))
		ck_assert_msg(ps_page_test_flags(pg(33), PS_PAGE_DIRTY),
			      "writable entry over a clean frame: the next "
			      "write is never written back");
	/* The next write faults and dirties it again, before writable. */
	watch_dirty(0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	watch_end();
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert(ps_page_test_flags(pg(33), PS_PAGE_DIRTY));
}
END_TEST

/* --- write-back in batches (B1..B5 under S9) ---------------------------- */

/* What a PROTECTION callback saw of the frames of its range. */
struct wb_batch_sub {
	struct ps_interval sub;
	uint64_t base_frame; /* frame of page 0: page i maps base + i */
	unsigned calls;
	uint64_t ranges[8][2];
	bool unlocked_frame; /* a frame of the range was not LOCKED */
};

static bool wb_batch_invalidate(struct ps_interval *sub,
				const struct ps_invalidation *inv,
				uint64_t cur_seq, void *priv)
{
	struct wb_batch_sub *b = priv;

	ps_interval_set_seq(sub, cur_seq);
	if (inv->event != PS_NOTIFIER_PROTECTION)
		return true;
	if (b->calls < 8) {
		b->ranges[b->calls][0] = inv->start;
		b->ranges[b->calls][1] = inv->start + inv->len;
	}
	b->calls++;
	for (uint64_t a = inv->start; a < inv->start + inv->len; a += PG)
		if (!ps_page_test_flags(pg(b->base_frame + a / PG),
					PS_PAGE_LOCKED))
			b->unlocked_frame = true;
	return true;
}

static const struct ps_interval_ops wb_batch_ops = {
	.invalidate = wb_batch_invalidate};

/* A callback that writes the next page of its run while it writes its own. */
struct wb_batch_fn {
	unsigned n;
	uint64_t addrs[64];
	bool saw_locked;	/* a frame of the batch was LOCKED during fn */
	uint64_t write_next_of; /* fault the page after this one, or ~0 */
};

static int wb_batch_write(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct wb_batch_fn *w = ctx;

	(void)frame;
	(void)pinned;
	if (w->n < 64)
		w->addrs[w->n] = addr;
	w->n++;
	for (uint64_t f = 100; f < 164; f++)
		if (ps_page_test_flags(pg(f), PS_PAGE_LOCKED))
			w->saw_locked = true;
	/* No library lock held: a write to another page of the run works. */
	if (addr == w->write_next_of)
		ck_assert_int_eq(ps_space_fault(sp, addr + PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	return 0;
}

/*
 * Write-back takes a word of its set (64 pages) at a time (B1..B5 in
 * lib/space-writeback.c): two runs of dirty pages in one word get one
 * PROTECTION invalidation each, exactly their range, called under the LOCKED
 * bits of the run's frames; a pinned page (CLEAN skips it) and clean pages in
 * between break the runs; every LOCKED bit is dropped before the first @fn
 * (which may then write to another page of its run: that page faults, is
 * dirtied again under WRITEBACK and is written after all, dirty again).
 */
START_TEST(writeback_batches_runs)
{
	struct wb_batch_sub b;
	struct wb_batch_fn w;
	struct ps_writeback_stats st;
	uint64_t f;

	memset(&b, 0, sizeof(b));
	memset(&w, 0, sizeof(w));
	b.base_frame = 100;
	w.write_next_of = 2 * PG;
	ck_assert_int_eq(ps_space_map_range(sp, 0, 64 * PG, 100, PS_MAP_WRITE,
					    NULL),
			 0);
	for (uint64_t i = 0; i < 64; i++)
		if (i < 10 || (i >= 20 && i < 30) || i == 40)
			ck_assert_int_eq(ps_space_fault(sp, i * PG,
							PS_ACCESS_WRITE),
					 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_pin_range(sp, 40 * PG, PG, 0, &f), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 50 * PG, PG, 0, &f), 0);
	ck_assert_int_eq(ps_interval_insert(&b.sub, ps_space_notifier(sp), 0,
					    64 * PG, &wb_batch_ops, &b),
			 0);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 64 * PG, PS_WB_CLEAN,
					    wb_batch_write, &w, &st),
			 0);
	ps_interval_remove(&b.sub);
	ck_assert_uint_eq(st.written, 20);
	ck_assert_uint_eq(st.skipped_pinned, 1); /* page 40 */
	ck_assert_uint_eq(w.n, 20);
	ck_assert_uint_eq(b.calls, 2);
	ck_assert_uint_eq(b.ranges[0][0], 0);
	ck_assert_uint_eq(b.ranges[0][1], 10 * PG);
	ck_assert_uint_eq(b.ranges[1][0], 20 * PG);
	ck_assert_uint_eq(b.ranges[1][1], 30 * PG);
	ck_assert_msg(!b.unlocked_frame,
		      "a run's invalidation ran with a frame of it unlocked");
	ck_assert_msg(!w.saw_locked, "@fn ran with a frame of its run LOCKED");
	for (uint64_t i = 0; i < 64; i++) {
		bool dirty = ps_page_test_flags(pg(100 + i), PS_PAGE_DIRTY);

		/* Page 3 was written during page 2's @fn: dirty again. */
		ck_assert_msg(dirty == (i == 3 || i == 40), "page %u",
			      (unsigned)i);
		if (i < 30 && i != 3)
			ck_assert(!ps_pte_is_writable(entry(i * PG)));
	}
	ck_assert(ps_pte_is_writable(entry(3 * PG)));
	f = 140;
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
	f = 150;
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
}
END_TEST

struct lock_holder {
	struct ps_page *p;
	_Atomic(int) state; /* 1 holds LOCKED, 2 told to let go */
	unsigned n;
	uint64_t addrs[8];
};

static void *lock_holder_fn(void *arg)
{
	struct lock_holder *h = arg;

	ps_page_lock(h->p);
	atomic_store(&h->state, 1);
	while (atomic_load(&h->state) != 2)
		sched_yield();
	ps_page_unlock(h->p);
	return NULL;
}

/* Record the order; the first write lets the lock holder go. */
static int wb_release_write(void *ctx, uint64_t addr, uint64_t frame,
			    bool pinned)
{
	struct lock_holder *h = ctx;

	(void)frame;
	(void)pinned;
	if (h->n < 8)
		h->addrs[h->n] = addr;
	h->n++;
	atomic_store(&h->state, 2);
	return 0;
}

/*
 * A frame another thread holds LOCKED is not waited for inside the batch
 * (B1 never waits, and never inside its read-side section): the rest of the
 * word is written first, and the page is visited on its own after them
 * (B5), which waits for the bit. Here the holder lets go only once the
 * first @fn has run: a batch that waited for it would never get there.
 */
START_TEST(writeback_batch_leaves_locked_frame_to_the_end)
{
	struct lock_holder h;
	struct ps_writeback_stats st;
	pthread_t t;

	memset(&h, 0, sizeof(h));
	h.p = pg(105);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 100, PS_MAP_WRITE,
					    NULL),
			 0);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert_int_eq(ps_space_fault(sp, i * PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	ck_assert_int_eq(pthread_create(&t, NULL, lock_holder_fn, &h), 0);
	while (atomic_load(&h.state) != 1)
		sched_yield();
	ck_assert_int_eq(ps_space_writeback(sp, 0, 8 * PG, PS_WB_CLEAN,
					    wb_release_write, &h, &st),
			 0);
	pthread_join(t, NULL);
	ck_assert_uint_eq(st.written, 8);
	ck_assert_uint_eq(h.n, 8);
	ck_assert_uint_eq(h.addrs[7], 5 * PG); /* left to the end */
	for (uint64_t i = 0; i < 8; i++) {
		ck_assert(!ps_page_test_flags(pg(100 + i), PS_PAGE_DIRTY));
		ck_assert(!ps_pte_is_writable(entry(i * PG)));
	}
}
END_TEST

/*
 * What a PROTECTION callback saw of the frames of the word (frames base ..
 * base + 63 at pages 0 .. 63) outside its own range, and a write it makes
 * to a page of another run while it runs.
 */
struct wb_other_sub {
	struct ps_interval sub;
	uint64_t base_frame, at; /* page 0 of the word: frame, address */
	unsigned calls;
	uint64_t other_locked; /* pages outside the range found LOCKED */
	uint64_t touch;	       /* page the first callback marks dirty */
	int touch_rc;	       /* its outcome, or -1 if not tried */
};

static bool wb_other_invalidate(struct ps_interval *sub,
				const struct ps_invalidation *inv,
				uint64_t cur_seq, void *priv)
{
	struct wb_other_sub *b = priv;

	ps_interval_set_seq(sub, cur_seq);
	if (inv->event != PS_NOTIFIER_PROTECTION)
		return true;
	for (uint64_t i = 0; i < 64; i++) {
		const uint64_t a = b->at + i * PG;

		if ((a < inv->start || a >= inv->start + inv->len) &&
		    ps_page_test_flags(pg(b->base_frame + i), PS_PAGE_LOCKED))
			b->other_locked |= UINT64_C(1) << i;
	}
	/*
	 * A page of another run: mark_dirty waits for its frame's LOCKED bit.
	 * Tried only when it is not held, so that the test fails rather than
	 * hangs where the batch holds it.
	 */
	if (!b->calls++ &&
	    !ps_page_test_flags(pg(b->base_frame + (b->touch - b->at) / PG),
				PS_PAGE_LOCKED))
		b->touch_rc = (int)ps_space_mark_dirty(sp, b->touch);
	return true;
}

static const struct ps_interval_ops wb_other_ops = {
	.invalidate = wb_other_invalidate};

/*
 * Regression: a write-back batch held the LOCKED bit of every frame of a
 * 64-page word to write while each run's invalidation ran, so a callback
 * that touched a page of another run of the word (here: marks it dirty)
 * waited for a bit its own thread held, for ever. Now a run is held, looked
 * at, invalidated and written before the next is taken: a callback finds no
 * frame outside its range LOCKED. Two shapes: runs apart in the set (pages
 * 0-9 and 20-29), and one run of the set with a page not to write in it
 * (page 12, pinned clean: kept, not written), which splits the pages to
 * write into two runs (0-11 and 13-19) of one invalidation each.
 */
START_TEST(writeback_callback_may_touch_another_run)
{
	struct wb_other_sub b;
	struct ps_writeback_stats st;
	uint64_t f;

	for (int shape = 0; shape < 2; shape++) {
		const uint64_t base = 100;
		const uint64_t at = shape ? 64 * PG : 0;

		memset(&b, 0, sizeof(b));
		b.base_frame = base;
		b.at = at;
		b.touch = at + (shape ? 15 : 25) * PG;
		b.touch_rc = -1;
		if (!shape) {
			ck_assert_int_eq(ps_space_map_range(sp, at, 64 * PG,
							    base, PS_MAP_WRITE,
							    NULL),
					 0);
		} else {
			/* The same frames, one word further on. */
			ck_assert_int_eq(ps_space_unmap(sp, 0, 64 * PG, 0), 0);
			ck_assert_int_eq(ps_space_map_range(sp, at, 64 * PG,
							    base, PS_MAP_WRITE,
							    NULL),
					 0);
		}
		for (uint64_t i = 0; i < 30; i++) {
			if (shape ? (i == 12 || i >= 20) : (i >= 10 && i < 20))
				continue;
			ck_assert_int_eq(ps_space_fault(sp, at + i * PG,
							PS_ACCESS_WRITE),
					 PS_FAULT_OK);
		}
		if (shape)
			ck_assert_int_eq(ps_space_pin_range(sp, at + 12 * PG,
							    PG, 0, &f),
					 0);
		ck_assert_int_eq(ps_interval_insert(&b.sub,
						    ps_space_notifier(sp), at,
						    64 * PG, &wb_other_ops, &b),
				 0);
		ck_assert_int_eq(ps_space_writeback(sp, at, 64 * PG,
						    PS_WB_CLEAN, wb_nop, NULL,
						    &st),
				 0);
		ps_interval_remove(&b.sub);
		ck_assert_msg(!b.other_locked,
			      "shape %d: a callback ran with frames of "
			      "another run LOCKED (pages %#llx)",
			      shape, (unsigned long long)b.other_locked);
		ck_assert_uint_eq(b.calls, 2);
		ck_assert_int_eq(b.touch_rc, PS_SPACE_MARK_WAS_DIRTY);
		ck_assert_uint_eq(st.written, shape ? 19 : 20);
		/* The other run was written after the mark: clean now. */
		ck_assert(!ps_page_test_flags(pg(base + b.touch / PG - at / PG),
					      PS_PAGE_DIRTY));
		if (shape) {
			ck_assert(!ps_page_test_flags(pg(base + 12),
						      PS_PAGE_DIRTY));
			ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
		}
	}
}
END_TEST

/*
 * Write the pages of run 4-7; the callback of page 4 starts an INTEGRITY
 * write-back of the whole word, whose pages 4-7 are all under this thread's
 * write-back (4 being written, 5-7 to come).
 */
struct wb_nested_run {
	int rc;
	struct ps_writeback_stats st;
	unsigned n;
};

static int wb_nested_run_write(void *ctx, uint64_t addr, uint64_t frame,
			       bool pinned)
{
	struct wb_nested_run *r = ctx;

	(void)frame;
	(void)pinned;
	r->n++;
	if (addr == 4 * PG)
		r->rc = ps_space_writeback(sp, 0, 8 * PG, PS_WB_INTEGRITY,
					   wb_nop, NULL, &r->st);
	return 0;
}

/*
 * Regression: a callback that starts an INTEGRITY write-back of a page of
 * its own run whose @fn has not run yet waited for that page's WRITEBACK,
 * which only its own thread could end: it waited for ever. Such pages are
 * this thread's write-backs too: -EDEADLK, each, and the first says where.
 */
START_TEST(writeback_fn_integrity_of_its_run_is_refused)
{
	struct wb_nested_run r;
	struct ps_writeback_stats st;

	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 100, PS_MAP_WRITE,
					    NULL),
			 0);
	for (uint64_t i = 4; i < 8; i++)
		ck_assert_int_eq(ps_space_fault(sp, i * PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 8 * PG, PS_WB_CLEAN,
					    wb_nested_run_write, &r, &st),
			 0);
	ck_assert_int_eq(r.rc, -EDEADLK);
	ck_assert_uint_eq(r.st.errors, 4);
	ck_assert_uint_eq(r.st.error_offset, 4 * PG);
	ck_assert_uint_eq(r.st.written, 0);
	ck_assert_uint_eq(r.n, 4);
	ck_assert_uint_eq(st.written, 4);
	for (uint64_t i = 4; i < 8; i++)
		ck_assert(!ps_page_test_flags(pg(100 + i), PS_PAGE_DIRTY));
}
END_TEST

/* Fail every invalidation's slot allocation; the first one frees h. */
static struct lock_holder *nomem_holder;
static _Atomic(unsigned) nomem_injected;

static int inject_slot_nomem(int point, uint64_t addr, uint64_t *len)
{
	(void)addr;
	(void)len;
	if (point != FP_NOTIFIER_SLOT)
		return 0;
	atomic_fetch_add(&nomem_injected, 1);
	if (nomem_holder)
		atomic_store(&nomem_holder->state, 2);
	return -ENOMEM;
}

/*
 * Regression: when write-back's PROTECTION invalidation could not start
 * (-ENOMEM: no slot), write-back went on without it: it cleared DIRTY and
 * called @fn while secondary mappings could still be writable, so a write
 * through one after the copy was lost. Now nothing is cleaned: the frames
 * stay dirty, the pages stay in the set, @fn is not called, and the error
 * says where. Pages 8-11 of a write-back from page 4: a run of the batch
 * (8-9 and 11, around page 10, whose frame another thread holds LOCKED) and
 * page 10 on its own (the holder lets go at the first injection).
 */
START_TEST(writeback_invalidation_nomem_keeps_pages_dirty)
{
	struct lock_holder h;
	struct ps_writeback_stats st;
	struct wb_seen w;
	pthread_t t;

	memset(&h, 0, sizeof(h));
	h.p = pg(110);
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_map_range(sp, 8 * PG, 4 * PG, 108,
					    PS_MAP_WRITE, NULL),
			 0);
	for (uint64_t i = 8; i < 12; i++)
		ck_assert_int_eq(ps_space_fault(sp, i * PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	ck_assert_int_eq(pthread_create(&t, NULL, lock_holder_fn, &h), 0);
	while (atomic_load(&h.state) != 1)
		sched_yield();
	nomem_holder = &h;
	atomic_store(&nomem_injected, 0);
	ps__inject = inject_slot_nomem;
	ck_assert_int_eq(ps_space_writeback(sp, 4 * PG, 12 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 -ENOMEM);
	ps__inject = NULL;
	nomem_holder = NULL;
	pthread_join(t, NULL);
	ck_assert_uint_ge(atomic_load(&nomem_injected), 2);
	ck_assert_msg(w.n == 0, "@fn ran without the invalidation (%u)", w.n);
	ck_assert_uint_eq(st.written, 0);
	ck_assert_uint_eq(st.errors, 4);
	ck_assert_uint_eq(st.error_offset, 4 * PG); /* page 8 */
	for (uint64_t i = 8; i < 12; i++) {
		ck_assert_msg(ps_page_test_flags(pg(100 + i), PS_PAGE_DIRTY),
			      "page %u cleaned", (unsigned)i);
		ck_assert(!ps_page_test_flags(pg(100 + i),
					      PS_PAGE_LOCKED |
						      PS_PAGE_WRITEBACK));
		ck_assert(ps_pte_is_writable(entry(i * PG)));
		ck_assert_uint_eq(ps_page_refs(pg(100 + i)), 1);
	}
	/* Still in the set: the next write-back writes them. */
	ck_assert_int_eq(ps_space_writeback(sp, 4 * PG, 12 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(st.written, 4);
	ck_assert_uint_eq(st.error_offset, 0);
}
END_TEST

/* Fail the callback of page fail_at (-EIO). */
static uint64_t wb_fail_at;

static int wb_fail_one(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	(void)ctx;
	(void)frame;
	(void)pinned;
	return addr == wb_fail_at ? -EIO : 0;
}

/*
 * Errors say where: the returned error's page, as a byte offset from @start,
 * in stats.error_offset: a callback's error (page 6 of a write-back from
 * page 2), a frame at the reference limit (-EOVERFLOW, page 9 of one from
 * page 8). Every other page is still visited.
 */
START_TEST(writeback_errors_say_where)
{
	struct ps_writeback_stats st;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 12 * PG, 100, PS_MAP_WRITE,
					    NULL),
			 0);
	for (uint64_t i = 0; i < 12; i++)
		ck_assert_int_eq(ps_space_fault(sp, i * PG, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	wb_fail_at = 6 * PG;
	ck_assert_int_eq(ps_space_writeback(sp, 2 * PG, 6 * PG, PS_WB_CLEAN,
					    wb_fail_one, NULL, &st),
			 -EIO);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert_uint_eq(st.written, 5);
	ck_assert_uint_eq(st.error_offset, 4 * PG);

	ck_assert_int_eq(ps_page_get_many(pg(109), PS_PAGE_REFS_MAX - 1), 0);
	ck_assert_int_eq(ps_space_writeback(sp, 8 * PG, 4 * PG, PS_WB_CLEAN,
					    wb_fail_one, NULL, &st),
			 -EOVERFLOW);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert_uint_eq(st.written, 3);
	ck_assert_uint_eq(st.error_offset, PG);
	ck_assert(ps_page_test_flags(pg(109), PS_PAGE_DIRTY));
	ck_assert(!ps_page_put_many(pg(109), PS_PAGE_REFS_MAX - 1));
	/* Below the limit again: written. */
	ck_assert_int_eq(ps_space_writeback(sp, 8 * PG, 4 * PG, PS_WB_CLEAN,
					    wb_fail_one, NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
}
END_TEST

/* --- unpin(..., dirty) reaches write-back (S9) ---------------------------- */

/* A read pin unpinned dirty (a device wrote after all): write-back, of
 * either mode, writes the frame at the address it was pinned at. */
START_TEST(unpin_dirty_read_pin_is_written_back)
{
	static const enum ps_writeback_mode modes[] = {PS_WB_CLEAN,
						       PS_WB_INTEGRITY};
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t f;

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 40, PS_MAP_WRITE,
					    NULL),
			 0);
	for (int m = 0; m < 2; m++) {
		uint64_t addr = (uint64_t)m * PG;

		ck_assert_int_eq(ps_space_pin_range(sp, addr, PG, 0, &f), 0);
		ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY);
		ck_assert(ps_page_test_flags(pg(f), PS_PAGE_DIRTY));
		ck_assert_uint_eq(atomic_load(&seen.dirty[f]), 1);
		wb_seen_init(&w);
		ck_assert_int_eq(ps_space_writeback(sp, 0, 2 * PG, modes[m],
						    wb_write, &w, &st),
				 0);
		ck_assert_msg(w.n == 1,
			      "mode %d: the dirty frame was not "
			      "written back",
			      m);
		ck_assert_uint_eq(w.addrs[0], addr);
		ck_assert_uint_eq(st.written, 1);
		ck_assert(!ps_page_test_flags(pg(f), PS_PAGE_DIRTY));
	}
}
END_TEST

/* A clean page stays in the write-back set while it is pinned (visited,
 * nothing written), so the dirty unpin that comes later is written. */
START_TEST(pinned_clean_page_stays_watched)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 42, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	for (int round = 0; round < 2; round++) {
		wb_seen_init(&w);
		ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
						    wb_write, &w, &st),
				 0);
		ck_assert_uint_eq(w.n, 0);
	}
	ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY);
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_write,
					    &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 1);
	ck_assert(!ps_page_test_flags(pg(42), PS_PAGE_DIRTY));
	/* Unpinned and clean: it leaves the set. */
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 0);
}
END_TEST

/* A frame pinned at one address, unmapped, mapped at another while still
 * pinned, then unpinned dirty: written at the new address. */
START_TEST(remapped_pinned_frame_is_written_back)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 43, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 5 * PG, 43, PS_MAP_WRITE), 0);
	ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY);
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 8 * PG, PS_WB_CLEAN,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 1);
	ck_assert_uint_eq(w.addrs[0], 5 * PG);
	ck_assert(!ps_page_test_flags(pg(43), PS_PAGE_DIRTY));
}
END_TEST

static void device_done_dirty(uint64_t addr)
{
	(void)addr;
	ps_space_unpin(sp, &fp_pinned_frame, 1, PS_UNPIN_DIRTY);
}

/* INTEGRITY write-back bounces a write-pinned frame; the device finishes
 * and unpins it dirty between the copy and write-back's last look: the
 * page must stay in the set, and the next write-back writes it. */
START_TEST(fp_unpin_dirty_during_bounce)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map(sp, 0, 44, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE,
					    &fp_pinned_frame),
			 0);
	wb_seen_init(&w);
	arm(FP_WB_BOUNCED, device_done_dirty);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(st.bounced, 1);
	ck_assert(ps_page_test_flags(pg(44), PS_PAGE_DIRTY));
	ck_assert(!ps_page_is_pinned(pg(44)));
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_write,
					    &w, &st),
			 0);
	ck_assert_msg(w.n == 1, "the frame stayed dirty, never written back");
	ck_assert_uint_eq(st.written, 1);
	ck_assert(!ps_page_test_flags(pg(44), PS_PAGE_DIRTY));
}
END_TEST

/*
 * Regression (the soak's N3): a write-back cleaned a frame before the dirty
 * hook of the dirtying it wrote had run. The hook counts dirtyings, @fn
 * counts cleans; at every clean the hooks must be ahead (as a dirty-page
 * account would be). wb_count_clean() records the hooks run when it cleans.
 */
static _Atomic(unsigned) clean_saw_hooks;

static int wb_count_clean(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	(void)ctx;
	(void)addr;
	(void)frame;
	(void)pinned;
	atomic_store(&clean_saw_hooks, atomic_load(&seen.dirty_total));
	return 0;
}

static void clean_now(uint64_t addr)
{
	struct ps_writeback_stats st;

	ck_assert_int_eq(ps_space_writeback(sp, addr, PG, PS_WB_CLEAN,
					    wb_count_clean, NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
}

/*
 * A write-back whose write fails dirties the frame again. Before the fix
 * it ended WRITEBACK first and ran the hook after: a write-back in between
 * (here, at the end) cleaned the frame with the hook still to come.
 */
START_TEST(fp_redirty_hook_before_writeback_ends)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map(sp, 0, 45, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	wb_seen_init(&w);
	w.fail_once = 1;
	atomic_store(&clean_saw_hooks, 0);
	arm(FP_WB_ENDED, clean_now);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 -EIO);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 2);
	ck_assert_msg(atomic_load(&clean_saw_hooks) == 2,
		      "a write-back cleaned the frame re-dirtied by a failed "
		      "write before its dirty hook ran (%u hooks then)",
		      atomic_load(&clean_saw_hooks));
	ck_assert(!ps_page_test_flags(pg(45), PS_PAGE_DIRTY));
}
END_TEST

/*
 * ps_space_unpin(PS_UNPIN_DIRTY) marks under the frame's LOCKED bit, as
 * Linux's unpin_user_pages_dirty_lock() holds the folio lock. Before the
 * fix it did not, and an INTEGRITY write-back, which clears DIRTY of a
 * pinned frame too, cleaned (bounced) it between the unpin's DIRTY and its
 * hook. Here the write-back starts in another thread at that instant; the
 * unpin gives it 200 ms before it runs its hook.
 */
static _Atomic(bool) racer_done;

static _Atomic(int) racer_rc;

static void *integrity_racer(void *arg)
{
	struct ps_writeback_stats st;

	(void)arg;
	/* No Check assertion off the main thread: the tests check the rc. */
	atomic_store(&racer_rc, ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
						   wb_count_clean, NULL, &st));
	atomic_store(&racer_done, true);
	return NULL;
}

static pthread_t racer;

static void start_integrity_racer(uint64_t frame)
{
	(void)frame;
	ck_assert_int_eq(pthread_create(&racer, NULL, integrity_racer, NULL),
			 0);
	for (int i = 0; i < 200 && !atomic_load(&racer_done); i++)
		usleep(1000);
}

START_TEST(fp_unpin_dirty_marks_under_lock)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 46, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	atomic_store(&racer_done, false);
	atomic_store(&clean_saw_hooks, 99);
	arm(FP_DIRTY_SET, start_integrity_racer);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY), 0);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	ck_assert_msg(atomic_load(&clean_saw_hooks) == 1,
		      "the unpin's dirtying was written back before its dirty "
		      "hook ran (%u hooks then)",
		      atomic_load(&clean_saw_hooks));
}
END_TEST

/*
 * ps_space_mark_dirty() marks under the frame's LOCKED bit too. Before the
 * fix it held only a reference, and an INTEGRITY write-back (here on a
 * frame pinned for read, so that the page is in the write-back set) cleaned
 * it between the mark's DIRTY and its hook.
 */
START_TEST(fp_mark_dirty_marks_under_lock)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 47, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	atomic_store(&racer_done, false);
	atomic_store(&clean_saw_hooks, 99);
	arm(FP_DIRTY_SET, start_integrity_racer);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_DIRTIED);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	ck_assert_msg(atomic_load(&clean_saw_hooks) == 1,
		      "mark_dirty's dirtying was written back before its "
		      "dirty hook ran (%u hooks then)",
		      atomic_load(&clean_saw_hooks));
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
}
END_TEST

/*
 * A write fault marks its frame in the CAS that takes LOCKED (R1 in
 * lib/space-fault.c), and its hook runs after that CAS: an INTEGRITY
 * write-back (on a frame pinned for read, so that the page is in the
 * write-back set) that starts between the two waits for LOCKED and cleans
 * only after the hook has run (S5), and the entry made writable is the one
 * it write-protects, so the frame stays dirty or its entry stays protected.
 */
START_TEST(fp_fault_marks_under_lock)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 48, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0, &f), 0);
	atomic_store(&racer_done, false);
	atomic_store(&clean_saw_hooks, 99);
	arm(FP_DIRTY_SET, start_integrity_racer);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	ck_assert_msg(atomic_load(&clean_saw_hooks) == 1,
		      "the fault's dirtying was written back before its dirty "
		      "hook ran (%u hooks then)",
		      atomic_load(&clean_saw_hooks));
	/* S3 after the write-back: writable implies dirty. */
	if (ps_pte_is_writable(entry(0)))
		ck_assert(ps_page_test_flags(pg(48), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, 0), 0);
}
END_TEST

struct locked_fault {
	_Atomic(int) state; /* 1 faulting, 2 done */
	enum ps_fault fr;
};

static void *locked_faulter(void *arg)
{
	struct locked_fault *lf = arg;

	atomic_store(&lf->state, 1);
	lf->fr = ps_space_fault(sp, 0, PS_ACCESS_WRITE);
	atomic_store(&lf->state, 2);
	return NULL;
}

/*
 * A write fault whose frame another thread holds LOCKED waits for it outside
 * the page table's read-side section: its one-CAS hold (R1) refuses a locked
 * frame and the general path waits. Waiting inside the section would block
 * grace periods for as long as the holder holds the bit, and a holder that
 * waits for one (an unregister from a hook run under LOCKED) would never
 * get it. Here the holder waits for a grace period (unregister, G6 in
 * lib/pgtable.c) while the fault waits for its lock: both finish.
 */
START_TEST(fault_waits_for_lock_outside_section)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct locked_fault lf = {0};
	pthread_t t;

	ck_assert_int_eq(ps_space_map(sp, 0, 49, PS_MAP_WRITE), 0);
	ps_page_lock(pg(49));
	ck_assert_int_eq(pthread_create(&t, NULL, locked_faulter, &lf), 0);
	while (atomic_load(&lf.state) == 0)
		sched_yield();
	while (ps_page_refs(pg(49)) != 2) /* the fault holds it, waits */
		sched_yield();
	ck_assert_int_eq(ps_pgtable_register(pt, 64 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 64 * PG, PG), 0);
	ck_assert_int_eq(atomic_load(&lf.state), 1); /* still waiting */
	ps_page_unlock(pg(49));
	pthread_join(t, NULL);
	ck_assert_int_eq(lf.fr, PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert(ps_page_test_flags(pg(49), PS_PAGE_DIRTY));
	ck_assert_uint_eq(atomic_load(&seen.dirty[49]), 1);
	ck_assert(!ps_page_test_flags(pg(49), PS_PAGE_LOCKED));
}
END_TEST

/*
 * A write fault that finds its frame DIRTY under the frame's LOCKED bit
 * marks nothing and makes the entry writable: it trusts that the dirty hook
 * of that dirtying has run (space.h: "the dirty hook has run before any
 * thread can write through the entry"). So every marker must set DIRTY and
 * run the hook under that bit. write_fault_racer() is a CPU write fault
 * started, from another thread, between a marker's DIRTY and its hook (the
 * marker gives it 200 ms); it records the hooks that had run when the fault
 * let the write through.
 */
static _Atomic(unsigned) fault_saw_hooks;
static _Atomic(int) racer_fault;

static void *write_fault_racer(void *arg)
{
	(void)arg;
	atomic_store(&racer_fault, ps_space_fault(sp, 0, PS_ACCESS_WRITE));
	atomic_store(&fault_saw_hooks, atomic_load(&seen.dirty_total));
	atomic_store(&racer_done, true);
	return NULL;
}

static void start_write_fault_racer(uint64_t frame)
{
	(void)frame;
	ck_assert_int_eq(pthread_create(&racer, NULL, write_fault_racer, NULL),
			 0);
	for (int i = 0; i < 200 && !atomic_load(&racer_done); i++)
		usleep(1000);
}

/*
 * Regression (the soak's "write without a dirty hook in this lifetime",
 * TSan run): the secondary-map helper marked under the caller's lock only.
 * A CPU write fault between its DIRTY and its hook found the fresh frame
 * dirty, made the entry writable, and the CPU wrote before any dirty hook
 * of the frame's lifetime had run.
 */
START_TEST(fp_secondary_write_marks_under_lock)
{
	struct secmap m;

	secmap_init(&m, 0, 4 * PG);
	ck_assert_int_eq(ps_space_map(sp, 0, 48, PS_MAP_WRITE), 0);
	atomic_store(&racer_done, false);
	atomic_store(&fault_saw_hooks, 99);
	arm(FP_DIRTY_SET, start_write_fault_racer);
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 0, true,
						&sec_secops, &m),
			 0);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(atomic_load(&racer_fault), PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert(atomic_load(&m.writable));
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	ck_assert_msg(atomic_load(&fault_saw_hooks) == 1,
		      "a write fault made the entry writable between the "
		      "helper's DIRTY and its dirty hook (%u hooks then)",
		      atomic_load(&fault_saw_hooks));
	secmap_fini(&m);
}
END_TEST

/*
 * Regression, the same window in write-back: a write that fails dirties the
 * frame again, and that re-dirtying ran its hook holding only WRITEBACK, not
 * LOCKED. A CPU write fault in between (the entry was write-protected for
 * the write-back) made the entry writable before that hook ran.
 */
START_TEST(fp_redirty_marks_under_lock)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map(sp, 0, 49, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 1);
	wb_seen_init(&w);
	w.fail_once = 1;
	atomic_store(&racer_done, false);
	atomic_store(&fault_saw_hooks, 99);
	arm(FP_DIRTY_SET, start_write_fault_racer);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 -EIO);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(atomic_load(&racer_fault), PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 2);
	ck_assert_msg(atomic_load(&fault_saw_hooks) == 2,
		      "a write fault made the entry writable between "
		      "write-back's re-dirtying and its dirty hook (%u hooks "
		      "then)",
		      atomic_load(&fault_saw_hooks));
}
END_TEST

/* --- create: the frame limit, the writer mutex ---------------------------- */

/* The documented limit is the real one: 2^40 frames (the arrays indexed by
 * frame), not what an entry can name. */
START_TEST(create_frame_limit)
{
	struct ps_page frames[4];
	struct ps_space_config cfg;
	struct ps_space *s = NULL;
	int rc;

	memset(frames, 0, sizeof(frames));
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = 16 * PG;
	cfg.frames = frames; /* only the first four are ever touched */
	cfg.nframes = PS_SPACE_NFRAMES_MAX + 1;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL);
	cfg.nframes = PS_PTE_FRAME_MAX + 1;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -EINVAL);
	ck_assert_ptr_null(s);
	/* The limit itself is accepted (its arrays only reserve address
	 * space; a machine short of it says -ENOMEM). */
	cfg.nframes = PS_SPACE_NFRAMES_MAX;
	rc = ps_space_create(&cfg, &s);
	ck_assert_msg(rc == 0 || rc == -ENOMEM, "create: %d", rc);
	if (!rc) {
		ck_assert_int_eq(ps_space_map(s, 0, 3, PS_MAP_WRITE), 0);
		ck_assert_int_eq(ps_space_destroy(s), 0);
	}
}
END_TEST

static int fail_mutex_init(int point, uint64_t addr, uint64_t *len)
{
	(void)addr;
	(void)len;
	return point == FP_CREATE_MUTEX ? -EAGAIN : 0;
}

/* pthread_mutex_init() failing (EAGAIN: out of resources) fails create. */
START_TEST(create_checks_mutex_init)
{
	struct ps_space_config cfg;
	struct ps_space *s = (struct ps_space *)&cfg; /* not written */

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = 16 * PG;
	cfg.nframes = 4;
	ps__inject = fail_mutex_init;
	ck_assert_int_eq(ps_space_create(&cfg, &s), -ENOMEM);
	ps__inject = NULL;
	ck_assert_ptr_eq(s, (struct ps_space *)&cfg);
	ck_assert_int_eq(ps_space_create(&cfg, &s), 0);
	ck_assert_int_eq(ps_space_destroy(s), 0);
}
END_TEST

/* --- map_range: a page-table map that fails part-way ---------------------- */

/*
 * ps_pgtable_map() checks a run, then installs it leaf by leaf; a level
 * allocation failing part-way returns -ENOMEM with a prefix installed. The
 * injection does exactly that to the run that starts at inject_at: it maps
 * inject_keep bytes of it for real, then fails.
 */
static uint64_t inject_at, inject_keep;

static int inject_map_nomem(int point, uint64_t addr, uint64_t *len)
{
	if (point != FP_MAP_RUN || addr != inject_at)
		return 0;
	*len = inject_keep;
	return -ENOMEM;
}

static int map_range_failing(uint64_t start, uint64_t len, uint64_t frame,
			     uint64_t fail_at, uint64_t keep)
{
	int rc;

	inject_at = fail_at;
	inject_keep = keep;
	ps__inject = inject_map_nomem;
	rc = ps_space_map_range(sp, start, len, frame, PS_MAP_WRITE, NULL);
	ps__inject = NULL;
	return rc;
}

/* One run, five of its eight pages installed before -ENOMEM: no entry may
 * stay behind (its frame's reference is given back). */
START_TEST(map_range_nomem_takes_back_the_failed_run)
{
	ck_assert_int_eq(map_range_failing(0, 8 * PG, 10, 0, 5 * PG), -ENOMEM);
	for (uint64_t f = 10; f < 18; f++) {
		ck_assert_msg(ps_pte_is_none(entry((f - 10) * PG)),
			      "page %u still mapped to a frame without its "
			      "reference",
			      (unsigned)(f - 10));
		ck_assert_uint_eq(ps_page_refs(pg(f)), 0);
		ck_assert(!ps_page_is_live(pg(f)));
	}
	/* They were free and never mapped: back to free, no free hook. */
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	/* Nothing left over: the same map now succeeds. */
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 10, PS_MAP_WRITE,
					    NULL),
			 0);
	for (uint64_t f = 10; f < 18; f++)
		ck_assert_uint_eq(ps_page_refs(pg(f)), 1);
}
END_TEST

/* Three runs (frame 14 has another cache mode); the last fails after one
 * page: the runs before it and its own page go, every reference is given
 * back, and a frame its owner held keeps the owner's reference. */
START_TEST(map_range_nomem_after_mapped_runs)
{
	ps_page_change_flags(pg(14), PS_PAGE_CACHE_MASK,
			     (uint64_t)1 << PS_PAGE_CACHE_SHIFT);
	ck_assert_int_eq(ps_page_init(pg(11), 1), 0); /* the owner's */
	ck_assert_int_eq(map_range_failing(0, 8 * PG, 10, 5 * PG, PG), -ENOMEM);
	for (uint64_t f = 10; f < 18; f++) {
		ck_assert(ps_pte_is_none(entry((f - 10) * PG)));
		ck_assert_uint_eq(ps_page_refs(pg(f)), f == 11 ? 1 : 0);
	}
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	ck_assert_uint_eq(ps_page_word_cache(ps_page_load(pg(14))), 1);
	ck_assert(ps_page_put(pg(11)));
}
END_TEST

/* Over UFFD_WP markers (a shared registered range, protected): the map
 * keeps each marker's protection as the entry's wp bit, and the rollback
 * puts the markers back, for mapped runs and the failed one alike. */
START_TEST(map_range_nomem_keeps_wp_markers)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);

	ck_assert_int_eq(ps_pgtable_register(pt, 0, 4 * PG, PS_WP_SHARED), 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 4 * PG), 0);
	ps_page_change_flags(pg(22), PS_PAGE_CACHE_MASK,
			     (uint64_t)1 << PS_PAGE_CACHE_SHIFT);
	/* Runs [0, 2), [2, 3), [3, 4); the last fails before installing. */
	ck_assert_int_eq(map_range_failing(0, 4 * PG, 20, 3 * PG, 0), -ENOMEM);
	for (uint64_t k = 0; k < 4; k++) {
		ps_pte_t e = entry(k * PG);

		ck_assert_msg(ps_pte_is_marker(e) && ps_pte_uffd_wp(e),
			      "page %u lost its write protection", (unsigned)k);
		ck_assert_uint_eq(ps_page_refs(pg(20 + k)), 0);
	}
	/* One run, half installed. */
	ck_assert_int_eq(map_range_failing(0, 2 * PG, 20, 0, PG), -ENOMEM);
	ck_assert(ps_pte_is_marker(entry(0)) && ps_pte_uffd_wp(entry(0)));
	ck_assert(ps_pte_is_marker(entry(PG)) && ps_pte_uffd_wp(entry(PG)));
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 4 * PG), 0);
}
END_TEST

/*
 * Regression (issue 15): a failed map's rollback turned every entry it took
 * back into none (or a UFFD_WP marker). Over a WRITTEN marker (what a zap
 * of a written page leaves in an async range, not yet reported), that
 * dropped the written page: the next scan for written pages missed it. An
 * async range's page comes back as the WRITTEN marker (what a zap of the
 * written page the map installed would leave too), a protected one as its
 * UFFD_WP marker, any other page as none.
 */
START_TEST(map_range_nomem_keeps_written_markers)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct ps_pgtable_region reg[4];
	struct ps_pgtable_scan q;
	const ps_pte_t written = ps_pte_mk_marker(PS_PTE_MARKER_WRITTEN);

	ck_assert_int_eq(ps_pgtable_register(pt, 0, 2 * PG, PS_WP_ASYNC), 0);
	ck_assert_int_eq(ps_space_map(sp, 0, 30, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, PS_UNMAP_ZAP), 0);
	ck_assert_uint_eq(entry(0), written);
	/* The map over it fails after installing its page: taken back. */
	ck_assert_int_eq(map_range_failing(0, PG, 31, 0, PG), -ENOMEM);
	ck_assert_msg(entry(0) == written,
		      "the failed map dropped a WRITTEN marker (entry %#llx)",
		      (unsigned long long)entry(0));
	ck_assert_uint_eq(ps_page_refs(pg(31)), 0);
	/* Page 1 was none: the map's written page comes back as a zap of
	 * it would leave it (reported once, never lost). */
	ck_assert_int_eq(map_range_failing(PG, PG, 32, PG, PG), -ENOMEM);
	ck_assert_uint_eq(entry(PG), written);
	/* The next scan for written pages reports both, once. */
	memset(&q, 0, sizeof(q));
	q.start = 0;
	q.end = 2 * PG;
	q.flags = PS_SCAN_WP_MATCHING;
	q.category_mask = PS_CAT_WRITTEN;
	q.return_mask = PS_CAT_WRITTEN;
	q.vec = reg;
	q.vec_len = 4;
	ck_assert_int_eq(ps_pgtable_scan(pt, &q), 1);
	ck_assert_uint_eq(reg[0].start, 0);
	ck_assert_uint_eq(reg[0].end, 2 * PG);
	ck_assert_int_eq(ps_pgtable_scan(pt, &q), 0);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 2 * PG), 0);
}
END_TEST

/* --- regressions: write-back, write pins, map_range ----------------------- */

/*
 * fp_writeback_frame_moved: write-back read A -> F, then (before it held or
 * locked F) A was unmapped, F freed and mapped at C, and a write at C
 * made C writable over dirty F. Write-back went on with F as if it were
 * still A's: wrote F as A's contents and cleaned it under C's writable
 * entry, so C's later writes were never written back (S3). It must read
 * the entry again under the lock, and let go.
 */
static void move_frame_to_c(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[60]), 1);
	/* Its owner reuses it at once; a CPU write there follows. */
	ck_assert_int_eq(ps_space_map(sp, 16 * PG, 60, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 16 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
}

START_TEST(fp_writeback_frame_moved)
{
	struct ps_writeback_stats st;
	struct wb_seen w;

	ck_assert_int_eq(ps_space_map(sp, 0, 60, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	wb_seen_init(&w);
	arm(FP_WB_LOOKED_UP, move_frame_to_c);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_msg(w.n == 0, "frame 60 written as the contents of unmapped "
				"address 0");
	ck_assert(ps_pte_is_writable(entry(16 * PG)));
	ck_assert_msg(ps_page_test_flags(pg(60), PS_PAGE_DIRTY),
		      "writable entry at C over a clean frame (S3)");
	/* C's write is written back, at C. */
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, 32 * PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 1);
	ck_assert_uint_eq(w.addrs[0], 16 * PG);
}
END_TEST

/*
 * writeback_holds_frame_during_fn: write-back's fn ran with no reference on the
 * frame, so a discard (or unmap) during the copy freed it (the free_frame hook
 * ran; its owner could reuse it mid-copy). Write-back now holds a reference of
 * its own until fn has returned: a discard during fn finds it and leaves the
 * page (busy, S10), and an unmap during fn drops only the mapping's reference.
 */
static unsigned freed_during_fn = 99;

static int wb_discard_during(void *ctx, uint64_t addr, uint64_t frame,
			     bool pinned)
{
	struct ps_discard_skip skipped;
	uint64_t nskipped;

	(void)ctx;
	(void)pinned;
	ck_assert_int_eq(ps_space_discard(sp, addr, PG, &skipped, 1, &nskipped),
			 0);
	ck_assert_uint_eq(nskipped, 1);
	assert_skip(&skipped, addr, frame, PS_DISCARD_BUSY);
	ck_assert(ps_pte_is_present(entry(addr)));
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert(ps_pte_is_none(entry(addr)));
	freed_during_fn = atomic_load(&seen.freed[frame]);
	ck_assert(ps_page_is_live(pg(frame)));
	return 0;
}

START_TEST(writeback_holds_frame_during_fn)
{
	struct ps_writeback_stats st;

	ck_assert_int_eq(ps_space_map(sp, 0, 61, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN,
					    wb_discard_during, NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	ck_assert_msg(freed_during_fn == 0,
		      "frame freed while write-back's fn was copying it");
	/* Freed once, by write-back's own put after fn. */
	ck_assert_uint_eq(atomic_load(&seen.freed[61]), 1);
	ck_assert(!ps_page_is_live(pg(61)));
}
END_TEST

/*
 * fp_writeback_clean_before_invalidate_end: write-back ended its
 * PROTECTION invalidation before clearing DIRTY, so a secondary map for
 * write that the end let through found the frame dirty (its mark did
 * nothing), installed a writable mapping, and then write-back cleaned the
 * frame under it: device writes through it were never written (S5).
 */
static struct secmap *fp_secmap;
static int fp_secmap_rc = 99;

static void *secmap_writer(void *arg)
{
	fp_secmap_rc = ps_space_map_secondary(sp, &fp_secmap->sub,
					      (uint64_t)(uintptr_t)arg, true,
					      &sec_secops, fp_secmap);
	atomic_store(&racer_done, true);
	return NULL;
}

static void map_secondary_for_write(uint64_t addr)
{
	/*
	 * FP_WB_INVALIDATED sits right after the invalidation's end
	 * (lib/space-writeback.c says to keep it there): DIRTY must already
	 * be clear at that point, and the map for write must dirty the frame
	 * again. The map runs in another thread, as the device's driver would:
	 * it marks under the frame's LOCKED bit, which this write-back still
	 * holds, so it is given 200 ms and may finish after the bit is dropped.
	 */
	ck_assert_msg(!ps_page_test_flags(pg(62), PS_PAGE_DIRTY),
		      "the invalidation ended before DIRTY was cleared");
	ck_assert_int_eq(pthread_create(&racer, NULL, secmap_writer,
					(void *)(uintptr_t)addr),
			 0);
	for (int i = 0; i < 200 && !atomic_load(&racer_done); i++)
		usleep(1000);
}

START_TEST(fp_writeback_clean_before_invalidate_end)
{
	struct ps_writeback_stats st;
	struct wb_seen w;
	struct secmap m;

	secmap_init(&m, 0, 4 * PG);
	fp_secmap = &m;
	ck_assert_int_eq(ps_space_map(sp, 0, 62, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	atomic_store(&racer_done, false);
	arm(FP_WB_INVALIDATED, map_secondary_for_write);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_nop,
					    NULL, &st),
			 0);
	pthread_join(racer, NULL);
	ck_assert_int_eq(atomic_load(&racer_rc), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(fp_secmap_rc, 0);
	ck_assert(atomic_load(&m.writable));
	ck_assert_msg(ps_page_test_flags(pg(62), PS_PAGE_DIRTY),
		      "writable secondary mapping over a clean frame");
	/* What the device writes through it is written back. */
	wb_seen_init(&w);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY,
					    wb_write, &w, &st),
			 0);
	ck_assert_uint_eq(w.n, 1);
	secmap_fini(&m);
}
END_TEST

/*
 * fp_write_pin_seen_by_bounce: a pin for write set WRITE_PINNED only after
 * its re-check, so an INTEGRITY write-back in between bounced the frame,
 * saw pins but no WRITE_PINNED and left it clean: later fsyncs wrote
 * nothing of what the device wrote. The flag now comes with the pin.
 */
static void integrity_writeback_now(uint64_t addr)
{
	struct ps_writeback_stats st;

	ck_assert_int_eq(ps_space_writeback(sp, addr, PG, PS_WB_INTEGRITY,
					    wb_nop, NULL, &st),
			 0);
	ck_assert_uint_eq(st.bounced, 1);
}

START_TEST(fp_write_pin_seen_by_bounce)
{
	struct ps_writeback_stats st;
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, 0, 63, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	arm(FP_PIN_RECHECKED, integrity_writeback_now);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, PS_PIN_WRITE, &f), 0);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(f, 63);
	ck_assert_msg(ps_page_test_flags(pg(63), PS_PAGE_DIRTY),
		      "a frame pinned for write left clean by a bounce");
	/* Every fsync while it is pinned for write bounces it again. */
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY, wb_nop,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.bounced, 1);
	ck_assert_uint_eq(st.kept_dirty, 1);
	ps_space_unpin(sp, &f, 1, 0);
}
END_TEST

/*
 * map_range_nomem_shows_no_entry: map_range installed its runs one by one,
 * so when a later run ran out of memory for a level, a pin had already
 * found an earlier run's entry; the rollback's put did not free the frame
 * it had revived, and the pin's unpin ran the free_frame hook for a frame
 * its owner was told never left the free pool (a double free there). Now
 * every level is allocated before any entry is installed.
 */
extern bool (*ps__pgtable_alloc_fails)(void);
static int alloc_fail_pin_rc = 99;

static bool pin_then_fail(void)
{
	if (alloc_fail_pin_rc == 99) {
		uint64_t f;

		alloc_fail_pin_rc = ps_space_pin_range(sp, 511 * PG, PG, 0, &f);
		if (!alloc_fail_pin_rc)
			fp_pinned_frame = f;
	}
	return true;
}

START_TEST(map_range_nomem_shows_no_entry)
{
	int rc;

	/* Leaf 0 exists (pages 0..511); leaf 1 (page 512) does not. */
	ck_assert_int_eq(ps_space_map(sp, 0, 50, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	/* Two runs: frame 11 has another cache mode. */
	ps_page_change_flags(pg(11), PS_PAGE_CACHE_MASK,
			     (uint64_t)1 << PS_PAGE_CACHE_SHIFT);
	ps__pgtable_alloc_fails = pin_then_fail;
	rc = ps_space_map_range(sp, 511 * PG, 2 * PG, 10, PS_MAP_WRITE, NULL);
	ps__pgtable_alloc_fails = NULL;
	ck_assert_int_eq(rc, -ENOMEM);
	if (!alloc_fail_pin_rc)
		ps_space_unpin(sp, &fp_pinned_frame, 1, 0);
	ck_assert_msg(alloc_fail_pin_rc == -EFAULT,
		      "a pin found an entry of the failed map (%d)",
		      alloc_fail_pin_rc);
	ck_assert_uint_eq(atomic_load(&seen.freed[10]), 0);
	ck_assert(!ps_page_is_live(pg(10)));
	ck_assert(!ps_page_is_live(pg(11)));
	ck_assert(ps_pte_is_none(entry(511 * PG)));
	ck_assert(ps_pte_is_none(entry(512 * PG)));
	/* The levels stay: the same map now succeeds. */
	ck_assert_int_eq(ps_space_map_range(sp, 511 * PG, 2 * PG, 10,
					    PS_MAP_WRITE, NULL),
			 0);
	alloc_fail_pin_rc = 99;
}
END_TEST

/* The same for a page that is not vacant in the second run (-EEXIST):
 * checked for the whole range before the first run is installed. */
static int eexist_pin_rc = 99;

static int pin_at_second_run(int point, uint64_t addr, uint64_t *len)
{
	(void)len;
	if (point == FP_MAP_RUN && addr == PG) {
		uint64_t f;

		eexist_pin_rc = ps_space_pin_range(sp, 0, PG, 0, &f);
		if (!eexist_pin_rc)
			fp_pinned_frame = f;
	}
	return 0;
}

START_TEST(map_range_eexist_shows_no_entry)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	int rc;

	ck_assert_int_eq(
		ps_pgtable_set(pt, PG, ps_pte_mk_marker(PS_PTE_MARKER_POISONED),
			       NULL),
		0);
	ps_page_change_flags(pg(11), PS_PAGE_CACHE_MASK,
			     (uint64_t)1 << PS_PAGE_CACHE_SHIFT);
	ps__inject = pin_at_second_run;
	rc = ps_space_map_range(sp, 0, 2 * PG, 10, PS_MAP_WRITE, NULL);
	ps__inject = NULL;
	ck_assert_int_eq(rc, -EEXIST);
	if (!eexist_pin_rc)
		ps_space_unpin(sp, &fp_pinned_frame, 1, 0);
	ck_assert_msg(eexist_pin_rc != 0, "a pin found an entry of the "
					  "failed map");
	ck_assert_uint_eq(atomic_load(&seen.freed[10]), 0);
	ck_assert(!ps_page_is_live(pg(10)));
	ck_assert(ps_pte_is_none(entry(0)));
	eexist_pin_rc = 99;
}
END_TEST

/* --- two write-backs of one frame (the soak's N2) ------------------------- */

/*
 * Write-back A of a frame is in its callback (the frame clean, WRITEBACK
 * set) when write-back B of the same page starts. The callbacks model I/O
 * that takes its data when submitted and lands later: each copies the
 * page's version on entry and stores it in "backing" on return. Before the
 * fix, B ran its callback at once: with the page written again (dirty) it
 * copied the newer version and landed first, then A landed the older one,
 * and the frame was clean over a stale backing copy; with the page clean,
 * an INTEGRITY B returned while A's copy had not landed. Linux: cleaning
 * write-back skips a page under write-back, data-integrity write-back
 * waits for it (folio_wait_writeback) before it writes the page again.
 */
struct wb_two {
	_Atomic(unsigned) in_fn, max_in_fn;
	_Atomic(uint64_t) version, backing; /* of the page; what landed */
	_Atomic(int) b_done, b_called;
	_Atomic(int) a_returned_with_b_done;
	enum ps_writeback_mode b_mode;
	bool rewrite; /* A's callback writes the page again first */
	bool nested;  /* A's callback writes the page back itself */
	int nested_rc;
	struct ps_writeback_stats nested_st;
	struct ps_writeback_stats b_st;
	int b_rc;
	pthread_t b;
};

static struct wb_two two;

static void two_enter(void)
{
	unsigned n = atomic_fetch_add(&two.in_fn, 1) + 1;
	unsigned m = atomic_load(&two.max_in_fn);

	while (n > m && !atomic_compare_exchange_weak(&two.max_in_fn, &m, n))
		;
}

/* B's callback (and any later one): copy, land. */
static int wb_copy(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	uint64_t v;

	(void)ctx;
	(void)addr;
	(void)frame;
	(void)pinned;
	two_enter();
	atomic_store(&two.b_called, 1);
	v = atomic_load(&two.version);
	atomic_store(&two.backing, v);
	atomic_fetch_sub(&two.in_fn, 1);
	return 0;
}

static void *two_b(void *arg)
{
	(void)arg;
	two.b_rc = ps_space_writeback(sp, 0, PG, two.b_mode, wb_copy, NULL,
				      &two.b_st);
	atomic_store(&two.b_done, 1);
	return NULL;
}

/* A's callback: take the copy, let B run as far as it can, then land. */
static int wb_first(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	uint64_t v;

	(void)ctx;
	(void)frame;
	(void)pinned;
	two_enter();
	v = atomic_load(&two.version); /* submitted: the copy is taken */
	if (two.rewrite) {
		/* The entry is write-protected: the CPU write faults. */
		ck_assert_int_eq(ps_space_fault(sp, addr, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
		atomic_fetch_add(&two.version, 1);
	}
	if (two.nested) {
		two.nested_rc = ps_space_writeback(sp, addr, PG,
						   PS_WB_INTEGRITY, wb_copy,
						   NULL, &two.nested_st);
	} else {
		ck_assert_int_eq(pthread_create(&two.b, NULL, two_b, NULL), 0);
		/* B's callback has run, B returned, or B waits for A. */
		for (int i = 0; i < 5000 && !atomic_load(&two.b_done) &&
				!atomic_load(&fp_hits[FP_WB_WAIT]);
		     i++) {
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
		atomic_store(&two.a_returned_with_b_done,
			     atomic_load(&two.b_done));
	}
	atomic_store(&two.backing, v); /* the I/O lands */
	atomic_fetch_sub(&two.in_fn, 1);
	return 0;
}

static void fp_noop(uint64_t addr)
{
	(void)addr;
}

/* Write back page 0 (frame 64, written once) with A's callback. */
static void two_run(enum ps_writeback_mode b_mode, bool rewrite, bool nested)
{
	struct ps_writeback_stats st;

	memset(&two, 0, sizeof(two));
	two.b_mode = b_mode;
	two.rewrite = rewrite;
	two.nested = nested;
	ck_assert_int_eq(ps_space_map(sp, 0, 64, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	atomic_store(&two.version, 1);
	arm(FP_WB_WAIT, fp_noop); /* count the waits */
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_first,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	if (!nested) {
		pthread_join(two.b, NULL);
		ck_assert_int_eq(two.b_rc, 0);
	}
	disarm();
	ck_assert_msg(atomic_load(&two.max_in_fn) == 1,
		      "two write-back callbacks of one frame ran at once");
	ck_assert(!ps_page_test_flags(pg(64), PS_PAGE_WRITEBACK));
}

/* The page is clean and its copy landed: they agree. */
static void two_check_landed(void)
{
	if (!ps_page_test_flags(pg(64), PS_PAGE_DIRTY))
		ck_assert_msg(atomic_load(&two.backing) ==
				      atomic_load(&two.version),
			      "clean frame over a stale backing copy "
			      "(version %llu landed, %llu written)",
			      (unsigned long long)atomic_load(&two.backing),
			      (unsigned long long)atomic_load(&two.version));
}

/* INTEGRITY B over a page written again during A's I/O: B waits for A,
 * then writes the newer version, which lands last. */
START_TEST(fp_integrity_waits_for_writeback)
{
	two_run(PS_WB_INTEGRITY, true, false);
	ck_assert_msg(atomic_load(&fp_hits[FP_WB_WAIT]) >= 1,
		      "integrity write-back did not wait for the write-back "
		      "in flight");
	ck_assert(atomic_load(&two.b_called));
	ck_assert_uint_eq(two.b_st.written, 1);
	ck_assert(!ps_page_test_flags(pg(64), PS_PAGE_DIRTY));
	two_check_landed();
}
END_TEST

/* CLEAN B over a page written again during A's I/O: B skips it (it stays
 * dirty and in the set); the next write-back writes the newer version. */
START_TEST(fp_clean_skips_writeback)
{
	struct ps_writeback_stats st;

	two_run(PS_WB_CLEAN, true, false);
	ck_assert_msg(!atomic_load(&two.b_called),
		      "cleaning write-back wrote a frame under write-back");
	ck_assert_uint_eq(two.b_st.written, 0);
	ck_assert(ps_page_test_flags(pg(64), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_copy,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);
	ck_assert(!ps_page_test_flags(pg(64), PS_PAGE_DIRTY));
	two_check_landed();
}
END_TEST

/* INTEGRITY B while A writes a clean page: B returns only after A's I/O
 * has landed (fsync waits for write-back in flight). */
START_TEST(fp_integrity_waits_for_clean_writeback)
{
	two_run(PS_WB_INTEGRITY, false, false);
	ck_assert_msg(!atomic_load(&two.a_returned_with_b_done),
		      "integrity write-back returned while a write-back of "
		      "its range was still in flight");
	ck_assert(atomic_load(&fp_hits[FP_WB_WAIT]) >= 1);
	ck_assert(!atomic_load(&two.b_called)); /* clean: nothing to write */
	ck_assert(!ps_page_test_flags(pg(64), PS_PAGE_DIRTY));
	two_check_landed();
}
END_TEST

/* A callback that writes back its own page with INTEGRITY would wait for
 * itself: the nested write-back says -EDEADLK for that page instead. */
START_TEST(nested_integrity_writeback_is_refused)
{
	two_run(PS_WB_INTEGRITY, true, true);
	ck_assert_int_eq(two.nested_rc, -EDEADLK);
	ck_assert_uint_eq(two.nested_st.errors, 1);
	ck_assert_uint_eq(two.nested_st.written, 0);
	ck_assert(!atomic_load(&two.b_called));
	/* Written again meanwhile: still dirty, written by the next one. */
	ck_assert(ps_page_test_flags(pg(64), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY, wb_copy,
					    NULL, &two.b_st),
			 0);
	ck_assert_uint_eq(two.b_st.written, 1);
	two_check_landed();
}
END_TEST

/* --- issue 15: a frame's lifetimes ---------------------------------------- */

/*
 * Regression (issue 15 #3): a frame freed while dirty started its next
 * lifetime dirty: after unmap (or discard) and a new map of the same
 * frame, the first write ran no dirty hook, and write-back wrote a page
 * never written in its new life. A free ends a lifetime (page.h).
 */
START_TEST(remapped_frame_starts_clean)
{
	struct ps_writeback_stats st;
	uint64_t f;

	/* Unmapped dirty, mapped again at the same address. */
	ck_assert_int_eq(ps_space_map(sp, 0, 40, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[40]), 1);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[40]), 1);
	ck_assert(!ps_page_test_flags(pg(40), PS_PAGE_LIFE_FLAGS));
	ck_assert_int_eq(ps_space_map(sp, 0, 40, PS_MAP_WRITE), 0);
	/* Not written in this life: write-back has nothing to write. */
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY, wb_nop,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.written + st.bounced, 0);
	/* The first write of the new life is a clean-to-dirty transition. */
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[40]), 2);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_INTEGRITY, wb_nop,
					    NULL, &st),
			 0);
	ck_assert_uint_eq(st.written, 1);

	/* Discarded dirty (a balloon), mapped again elsewhere. */
	ck_assert_int_eq(ps_space_map(sp, PG, 41, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_int_eq(ps_space_discard(sp, PG, PG, NULL, 0, NULL), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[41]), 1);
	ck_assert(!ps_page_test_flags(pg(41), PS_PAGE_LIFE_FLAGS));
	ck_assert_int_eq(ps_space_map(sp, 2 * PG, 41, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 2 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[41]), 2);

	/* Pinned for write, unmapped, unpinned dirty: freed clean. */
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 42, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, 3 * PG, PG, PS_PIN_WRITE, &f),
			 0);
	ck_assert_int_eq(ps_space_unmap(sp, 3 * PG, PG, 0), 0);
	ck_assert_int_eq(ps_space_unpin(sp, &f, 1, PS_UNPIN_DIRTY),
			 0); /* the last */
	ck_assert_uint_eq(atomic_load(&seen.freed[42]), 1);
	ck_assert(!ps_page_test_flags(pg(42), PS_PAGE_LIFE_FLAGS));
}
END_TEST

/*
 * Regression (issue 15 #1): a write fault marked its frame dirty holding
 * only the frame's LOCKED bit, and no reference. An unmap (or a discard,
 * whose freeze ignored LOCKED) between the fault's look at the entry and
 * its mark freed the frame: the dirty hook then ran for a frame whose free
 * hook had run, and DIRTY and LOCKED were left on a free frame. The fault
 * holds a reference, as write-back does.
 */
static void unmap_now(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
}

START_TEST(fp_fault_unmap_before_mark)
{
	enum ps_fault fr;

	ck_assert_int_eq(ps_space_map(sp, 0, 50, PS_MAP_WRITE), 0);
	arm(FP_FAULT_RECHECKED, unmap_now);
	fr = ps_space_fault(sp, 0, PS_ACCESS_WRITE);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_msg(atomic_load(&seen.dirty_on_free) == 0,
		      "the dirty hook ran for a frame already freed");
	ck_assert_int_eq(fr, PS_FAULT_MISSING); /* the page is gone */
	ck_assert(ps_pte_is_none(entry(0)));
	/* Freed once (by the fault's own put), and nothing left on it. */
	ck_assert_uint_eq(atomic_load(&seen.freed[50]), 1);
	ck_assert(!ps_page_is_live(pg(50)));
	ck_assert(!ps_page_test_flags(pg(50), PS_PAGE_DIRTY | PS_PAGE_LOCKED));
}
END_TEST

/*
 * The soak's lifetime race on the common write fault: it classified the entry
 * of frame 54 at page 0; before its one-CAS hold (R1 in lib/space-fault.c), the
 * page was unmapped (frame 54 freed) and the frame mapped again at page 5 by
 * its owner: a new lifetime. R1 then holds and marks that lifetime. The fault
 * must read the entry again under the bit, take its mark back and let go: no
 * dirty hook for a lifetime it did not find mapped at its address, DIRTY and
 * LOCKED clear, the new mapping's one reference left. Before the re-read, the
 * hook ran for frame 54's new lifetime and DIRTY stayed set.
 */
static void unmap_and_map_elsewhere(uint64_t addr)
{
	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 5 * PG, 54, PS_MAP_WRITE), 0);
}

START_TEST(fp_fault_frame_reused_before_hold)
{
	enum ps_fault fr;

	ck_assert_int_eq(ps_space_map(sp, 0, 54, PS_MAP_WRITE), 0);
	arm(FP_FAULT_CHECKED, unmap_and_map_elsewhere);
	fr = ps_space_fault(sp, 0, PS_ACCESS_WRITE);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(fr, PS_FAULT_MISSING);
	ck_assert_uint_eq(atomic_load(&seen.freed[54]), 1);
	ck_assert_msg(atomic_load(&seen.dirty[54]) == 0,
		      "the dirty hook ran for the frame's next lifetime");
	ck_assert(!ps_page_test_flags(pg(54), PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert_uint_eq(ps_page_refs(pg(54)), 1);
	ck_assert(!ps_pte_is_writable(entry(5 * PG)));
	/* Its new owner's first write is a clean-to-dirty transition. */
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[54]), 1);
}
END_TEST

static uint64_t fp_discard_nskipped;
static struct ps_discard_skip fp_discard_skip;

static void discard_now(uint64_t addr)
{
	ck_assert_int_eq(ps_space_discard(sp, addr, PG, &fp_discard_skip, 1,
					  &fp_discard_nskipped),
			 0);
}

START_TEST(fp_fault_discard_before_mark)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 51, PS_MAP_WRITE), 0);
	fp_discard_nskipped = 99;
	arm(FP_FAULT_RECHECKED, discard_now);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_msg(atomic_load(&seen.dirty_on_free) == 0,
		      "the dirty hook ran for a frame discard freed");
	/* The fault's reference: discard leaves the page, busy. */
	ck_assert_uint_eq(fp_discard_nskipped, 1);
	ck_assert_int_eq(fp_discard_skip.reason, PS_DISCARD_BUSY);
	ck_assert_uint_eq(atomic_load(&seen.freed[51]), 0);
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert(ps_page_test_flags(pg(51), PS_PAGE_DIRTY));
	ck_assert(!ps_page_test_flags(pg(51), PS_PAGE_LOCKED));
	ck_assert_uint_eq(ps_page_refs(pg(51)), 1);
}
END_TEST

/*
 * The soak's ABA: between the fault's mark and its CAS, the frame is
 * unmapped and mapped again at the same address with the same flags (an
 * identical entry). Without a reference the frame was freed and revived
 * clean, and the fault's CAS made the new lifetime's entry writable over a
 * clean frame (S3). Holding it, the frame is never freed: the map takes
 * another reference on the same, dirty lifetime.
 */
static void remap_same_frame(uint64_t addr)
{
	uint64_t frame = ps_pte_frame(entry(addr));

	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, addr, frame, PS_MAP_WRITE), 0);
}

START_TEST(fp_fault_remap_before_writable)
{
	ck_assert_int_eq(ps_space_map(sp, 0, 52, PS_MAP_WRITE), 0);
	arm(FP_FAULT_MARKED, remap_same_frame);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	if (ps_pte_is_writable(entry(0)))
		ck_assert_msg(ps_page_test_flags(pg(52), PS_PAGE_DIRTY),
			      "a writable entry over a clean frame: a stale "
			      "fault made the frame's next lifetime writable");
	ck_assert_uint_eq(atomic_load(&seen.freed[52]), 0); /* never freed */
	ck_assert_uint_eq(ps_page_refs(pg(52)), 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_on_free), 0);
}
END_TEST

/*
 * The same for ps_space_mark_dirty(): it read the entry and marked the
 * frame with no reference. An unmap in between freed the frame: the hook
 * ran for it, DIRTY landed on the free word, and the address was logged;
 * mapped elsewhere meanwhile, the frame's new lifetime was marked for a
 * write at an address it is no longer at.
 */
static void unmap_and_reuse(uint64_t addr)
{
	uint64_t frame = ps_pte_frame(entry(addr));

	ck_assert_int_eq(ps_space_unmap(sp, addr, PG, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 20 * PG, frame, PS_MAP_WRITE), 0);
}

START_TEST(fp_mark_dirty_unmap_before_mark)
{
	uint64_t got[4], n;

	ck_assert_int_eq(ps_space_map(sp, 0, 53, PS_MAP_WRITE), 0);
	arm(FP_MARK_LOOKED_UP, unmap_now);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_UNMAPPED);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty[53]), 0);
	ck_assert_uint_eq(atomic_load(&seen.dirty_on_free), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[53]), 1);
	ck_assert(!ps_page_is_live(pg(53)));
	ck_assert_uint_eq(ps_page_flags(pg(53)), 0); /* a clean free word */

	/* Unmapped and reused at another address meanwhile. */
	ck_assert_int_eq(ps_space_map(sp, PG, 54, PS_MAP_WRITE), 0);
	arm(FP_MARK_LOOKED_UP, unmap_and_reuse);
	ck_assert_int_eq(ps_space_mark_dirty(sp, PG), PS_SPACE_MARK_UNMAPPED);
	disarm();
	ck_assert_uint_eq(atomic_load(&seen.dirty[54]), 0);
	ck_assert(!ps_page_test_flags(pg(54), PS_PAGE_DIRTY));
	ck_assert_int_eq(ps_space_harvest(sp, 0, 32 * PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 0); /* nothing was written */
}
END_TEST

/* --- issue 15: the next write after a harvest is seen --------------------- */

static uint64_t harvest_all(uint64_t len, unsigned int flags, uint64_t *got,
			    uint64_t max)
{
	uint64_t n;

	ck_assert_int_eq(ps_space_harvest(sp, 0, len, flags, got, max, &n,
					  NULL),
			 0);
	return n;
}

/*
 * Regression (issue 15 #2): a re-arming harvest re-armed only async
 * ranges. In a sync-registered or an unregistered range: write, harvest
 * with REARM (reported; the entry stayed writable), write again (no
 * fault: nothing marked), harvest: nothing. REARM re-arms every page it
 * reports: uffd-wp in a sync range (the next write faults to the
 * handler), WRITE cleared in an unregistered one (soft-dirty style: the
 * next write faults on MAYWRITE && !WRITE); async pages as before.
 */
START_TEST(harvest_rearm_rearms_every_page)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct secmap m;
	uint64_t got[8], n;

	secmap_init(&m, 0, 8 * PG);
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 60, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 2 * PG, 0), 0); /* sync */
	ck_assert_int_eq(ps_pgtable_register(pt, 2 * PG, 2 * PG, PS_WP_ASYNC),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * PG, 2 * PG), 0);
	/* Pages 4..7 are not registered. Write 1 (sync), 2 (async), 5. */
	for (uint64_t a = 1 * PG; a <= 5 * PG; a += a == 2 * PG ? 3 * PG : PG)
		ck_assert_int_eq(ps_space_fault(sp, a, PS_ACCESS_WRITE),
				 PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(1 * PG)));
	ck_assert(ps_pte_is_writable(entry(5 * PG)));
	ck_assert_int_eq(ps_space_map_secondary(sp, &m.sub, 5 * PG, true,
						&sec_secops, &m),
			 0);
	n = harvest_all(8 * PG, PS_HARVEST_REARM, got, 8);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(got[0], 1 * PG);
	ck_assert_uint_eq(got[1], 2 * PG);
	ck_assert_uint_eq(got[2], 5 * PG);
	/* Re-armed, each as its range says; the secondary mapping torn down. */
	ck_assert(ps_pte_uffd_wp(entry(1 * PG)));
	ck_assert(!ps_pte_is_writable(entry(1 * PG)));
	ck_assert(ps_pte_uffd_wp(entry(2 * PG)));
	ck_assert(!ps_pte_uffd_wp(entry(5 * PG)));
	ck_assert(!ps_pte_is_writable(entry(5 * PG)));
	ck_assert(ps_pte_may_write(entry(5 * PG)));
	ck_assert_uint_eq(atomic_load(&m.frame), UINT64_MAX);
	/* The next writes fault, and are seen. */
	ck_assert_int_eq(ps_space_fault(sp, 1 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_WP); /* the handler's */
	ck_assert_int_eq(ps_space_fault(sp, 1 * PG,
					PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 2 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 5 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	n = harvest_all(8 * PG, PS_HARVEST_REARM, got, 8);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(got[0], 1 * PG);
	ck_assert_uint_eq(got[1], 2 * PG);
	ck_assert_uint_eq(got[2], 5 * PG);
	/* Nothing written since: nothing reported, nothing re-armed. */
	ck_assert_uint_eq(harvest_all(8 * PG, PS_HARVEST_REARM, got, 8), 0);
	/* A page left over by a budget is neither reported nor re-armed. */
	ck_assert_int_eq(ps_space_fault(sp, 6 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_fault(sp, 7 * PG, PS_ACCESS_WRITE),
			 PS_FAULT_OK);
	ck_assert_uint_eq(harvest_all(8 * PG, PS_HARVEST_REARM, got, 1), 1);
	ck_assert_uint_eq(got[0], 6 * PG);
	ck_assert(!ps_pte_is_writable(entry(6 * PG)));
	ck_assert(ps_pte_is_writable(entry(7 * PG)));
	ck_assert_uint_eq(harvest_all(8 * PG, PS_HARVEST_REARM, got, 8), 1);
	ck_assert_uint_eq(got[0], 7 * PG);
	ck_assert(!ps_pte_is_writable(entry(7 * PG)));
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 4 * PG), 0);
	secmap_fini(&m);
}
END_TEST

/*
 * fp_clean_writeback_pin_race: a pin landed between a CLEAN write-back's
 * first look (unpinned, dirty) and its clear of DIRTY. Write-back cleared
 * DIRTY, saw the pin, and set DIRTY again: a mark in that window (here
 * ps_space_mark_dirty(), on the failpoint right after the clear) found the
 * frame clean and ran the dirty hook a second time for one clean-to-dirty
 * transition, although no write-back had cleaned the frame (the soak's
 * "hooks - cleans" check found it). A cleaning write-back now clears DIRTY
 * only while the frame is unpinned, in one atomic step, so a pinned frame
 * is never clean for a moment.
 */
static bool crp_pinned;

static bool pin_on_protection(struct ps_interval *sub,
			      const struct ps_invalidation *inv,
			      uint64_t cur_seq, void *priv)
{
	(void)priv;
	ps_interval_set_seq(sub, cur_seq);
	if (inv->event == PS_NOTIFIER_PROTECTION && !crp_pinned) {
		/* A read pin: allowed under the frame's LOCKED bit (S7). */
		ck_assert_int_eq(ps_space_pin_range(sp, 0, PG, 0,
						    &fp_pinned_frame),
				 0);
		crp_pinned = true;
	}
	return true;
}

static const struct ps_interval_ops pin_on_protection_ops = {
	.invalidate = pin_on_protection};

/*
 * A mark from another thread at that instant. mark_dirty takes the frame's
 * LOCKED bit, which the write-back holds here, so it waits until the visit
 * is done (it gets 100 ms; joined at the end of the test).
 */
static pthread_t crp_marker;
static _Atomic(bool) crp_marked;

static void *crp_mark(void *arg)
{
	(void)ps_space_mark_dirty(sp, (uint64_t)(uintptr_t)arg);
	atomic_store(&crp_marked, true);
	return NULL;
}

static void mark_dirty_now(uint64_t addr)
{
	atomic_store(&crp_marked, false);
	ck_assert_int_eq(pthread_create(&crp_marker, NULL, crp_mark,
					(void *)(uintptr_t)addr),
			 0);
	for (int i = 0; i < 100 && !atomic_load(&crp_marked); i++)
		usleep(1000);
}

START_TEST(fp_clean_writeback_pin_race)
{
	struct ps_writeback_stats st;
	struct ps_interval sub;

	crp_pinned = false;
	ck_assert_int_eq(ps_space_map(sp, 0, 66, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_fault(sp, 0, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert_uint_eq(atomic_load(&seen.dirty[66]), 1);
	ck_assert_int_eq(ps_interval_insert(&sub, ps_space_notifier(sp), 0, PG,
					    &pin_on_protection_ops, NULL),
			 0);
	arm(FP_WB_CLEARED, mark_dirty_now);
	ck_assert_int_eq(ps_space_writeback(sp, 0, PG, PS_WB_CLEAN, wb_nop,
					    NULL, &st),
			 0);
	pthread_join(crp_marker, NULL);
	disarm();
	ps_interval_remove(&sub);
	ck_assert(crp_pinned);
	ck_assert_uint_eq(st.skipped_pinned, 1);
	ck_assert_uint_eq(st.written, 0);
	ck_assert(ps_page_test_flags(pg(66), PS_PAGE_DIRTY));
	ck_assert_msg(atomic_load(&seen.dirty[66]) == 1,
		      "%u dirty hooks for one clean-to-dirty transition",
		      atomic_load(&seen.dirty[66]));
	ck_assert_int_eq(ps_space_unpin(sp, &fp_pinned_frame, 1, 0), 0);
}
END_TEST

/* --- a failed map's frame (issue 15 #4) ----------------------------------- */

/*
 * A pin read page 0's entry (frame 70) and stalled before its speculative
 * pin. The owner unmapped page 0 (70 freed: the free hook ran) and mapped
 * 70 again, in a map that fails (-EEXIST). Before the fix, the map revived
 * 70, the stale pin landed on it between that revival and the map's
 * rollback, the rollback's put was not the last, and the pin's back-out,
 * after the map had returned, ran the free hook a second time for a frame
 * the owner had been told (space.h: "checks ps_page_is_live()") was free
 * again. Now a frame the map took free stays frozen, out of every
 * speculative get's reach, until the map cannot fail: the stale pin finds
 * it frozen and gives up, and the failed map gives it back free, no hook.
 */
static struct {
	sem_t looked, go, recheck;
	_Atomic(int) pin_done, at_recheck;
	int pin_rc;
	uint64_t pin_frame;
} mr;

static void mr_failpoint(int point, uint64_t addr)
{
	(void)addr;
	ck_assert_int_lt(point, FP_NR);
	if (atomic_fetch_add(&fp_hits[point], 1))
		return; /* each point acts once */
	switch (point) {
	case FP_PIN_AFTER_LOOKUP: /* the pinner: entry read, no pin yet */
		sem_post(&mr.looked);
		sem_wait(&mr.go);
		break;
	case FP_MAP_TAKEN: /* the owner's map: frames taken, no entry */
		sem_post(&mr.go);
		/* The stale pin lands, or gives up and returns. */
		while (!atomic_load(&mr.pin_done) &&
		       !atomic_load(&mr.at_recheck))
			sched_yield();
		break;
	case FP_PIN_BEFORE_RECHECK: /* it holds a pin: park it */
		atomic_store(&mr.at_recheck, 1);
		sem_wait(&mr.recheck);
		break;
	default:
		break;
	}
}

static void *mr_pinner(void *arg)
{
	(void)arg;
	mr.pin_rc = ps_space_pin_range(sp, 0, PG, 0, &mr.pin_frame);
	atomic_store(&mr.pin_done, 1);
	return NULL;
}

START_TEST(fp_failed_map_frame_freed_once)
{
	pthread_t t;
	int rc;

	memset(&mr, 0, sizeof(mr));
	sem_init(&mr.looked, 0, 0);
	sem_init(&mr.go, 0, 0);
	sem_init(&mr.recheck, 0, 0);
	for (int i = 0; i < FP_NR; i++)
		atomic_store(&fp_hits[i], 0);
	ck_assert_int_eq(ps_space_map(sp, 0, 70, 0), 0);
	ck_assert_int_eq(ps_space_map(sp, 5 * PG, 72, 0), 0);
	ps__failpoint = mr_failpoint;
	ck_assert_int_eq(pthread_create(&t, NULL, mr_pinner, NULL), 0);
	sem_wait(&mr.looked);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[70]), 1);
	/* The owner maps 70 (free) again; page 5 is taken: -EEXIST. */
	rc = ps_space_map_range(sp, 4 * PG, 2 * PG, 70, 0, NULL);
	if (atomic_load(&mr.at_recheck))
		sem_post(&mr.recheck); /* the stale pin goes on */
	pthread_join(t, NULL);
	ps__failpoint = NULL;
	ck_assert_int_eq(rc, -EEXIST);
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_TAKEN]), 1);
	if (!mr.pin_rc)
		ps_space_unpin(sp, &mr.pin_frame, 1, 0);
	ck_assert_msg(atomic_load(&seen.freed[70]) == 1,
		      "the free hook ran again for frame 70, which the failed "
		      "map gave back free");
	ck_assert_uint_eq(atomic_load(&seen.freed[71]), 0);
	ck_assert_int_eq(mr.pin_rc, -EFAULT); /* page 0 is empty now */
	ck_assert(!ps_page_is_live(pg(70)));
	ck_assert(!ps_page_is_frozen(pg(70)));
	ck_assert(!ps_page_is_live(pg(71)));
	/* The owner reuses it at once: one more lifetime, one more free. */
	ck_assert_int_eq(ps_space_map(sp, 0, 70, 0), 0);
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[70]), 2);
	sem_destroy(&mr.looked);
	sem_destroy(&mr.go);
	sem_destroy(&mr.recheck);
}
END_TEST

/*
 * The map's install window (issue 15 #1 meets #4): a map claims a free frame
 * frozen and installs its entry before it makes the frame LIVE. A write fault
 * and ps_space_mark_dirty() that find the entry in that window must wait for
 * the map, as for a conversion: no mark of the frozen frame, no dirty hook for
 * it. Once the map commits they mark it once, in a lifetime that starts clean
 * although a stale setter left DIRTY on the free word before the map and on
 * the frozen word during it (the claim and the commit clear the life flags).
 * If the map fails instead, they find nothing: no mark, no hook, the frame
 * free. The racers are started at FP_MAP_INSTALLED (entries in, frames still
 * frozen), and the map waits there until each has found the frame frozen at
 * least once (its lookup failpoint hit twice).
 */
static struct {
	_Atomic(int) go;
	uint64_t addr, frame;
	enum ps_fault fault_rc;
	enum ps_space_mark mark_rc;
} iw;

static void *iw_faulter(void *arg)
{
	(void)arg;
	while (!atomic_load(&iw.go))
		sched_yield();
	iw.fault_rc = ps_space_fault(sp, iw.addr, PS_ACCESS_WRITE);
	return NULL;
}

static void *iw_marker(void *arg)
{
	(void)arg;
	while (!atomic_load(&iw.go))
		sched_yield();
	iw.mark_rc = ps_space_mark_dirty(sp, iw.addr);
	return NULL;
}

static void iw_window(uint64_t addr)
{
	struct timespec t0, t;

	(void)addr;
	ck_assert(ps_pte_is_present(entry(iw.addr)));
	ck_assert(ps_page_is_frozen(pg(iw.frame)));
	/* The claim cleared the stale DIRTY; a stale setter sets it again. */
	ck_assert(!ps_page_test_flags(pg(iw.frame), PS_PAGE_LIFE_FLAGS));
	ps_page_set_flags(pg(iw.frame), PS_PAGE_DIRTY);
	atomic_store(&iw.go, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&fp_hits[FP_FAULT_CHECKED]) < 2 ||
	       atomic_load(&fp_hits[FP_MARK_LOOKED_UP]) < 2) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		ck_assert_msg(t.tv_sec - t0.tv_sec < 8,
			      "the racers never found the frozen frame");
		sched_yield();
	}
	/* Both looked at the frozen frame: neither marked it. */
	ck_assert_uint_eq(atomic_load(&seen.dirty[iw.frame]), 0);
	ck_assert(ps_page_is_frozen(pg(iw.frame)));
	ck_assert_uint_eq(ps_page_refs(pg(iw.frame)), 0);
}

static void iw_start(uint64_t addr, uint64_t frame, pthread_t t[2])
{
	memset(&iw, 0, sizeof(iw));
	iw.addr = addr;
	iw.frame = frame;
	/* A stale setter left DIRTY on the free word. */
	ps_page_set_flags(pg(frame), PS_PAGE_DIRTY);
	ck_assert_int_eq(pthread_create(&t[0], NULL, iw_faulter, NULL), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, iw_marker, NULL), 0);
	arm(FP_MAP_INSTALLED, iw_window);
}

START_TEST(fp_map_install_window_fault_and_mark_wait)
{
	pthread_t t[2];

	iw_start(0, 75, t);
	ck_assert_int_eq(ps_space_map(sp, 0, 75, PS_MAP_WRITE), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(iw.fault_rc, PS_FAULT_OK);
	ck_assert(iw.mark_rc == PS_SPACE_MARK_DIRTIED ||
		  iw.mark_rc == PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_uint_eq(atomic_load(&seen.dirty_on_free), 0);
	ck_assert_msg(atomic_load(&seen.dirty[75]) == 1,
		      "%u dirty hooks for the first writes of a new lifetime",
		      atomic_load(&seen.dirty[75]));
	ck_assert(ps_page_test_flags(pg(75), PS_PAGE_DIRTY));
	ck_assert(ps_pte_is_writable(entry(0)));
	ck_assert_uint_eq(ps_page_refs(pg(75)), 1); /* the mapping's */
	ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed[75]), 1);
}
END_TEST

START_TEST(fp_failed_map_install_window_marks_nothing)
{
	pthread_t t[2];
	int rc;

	iw_start(0, 76, t);
	/* One run of two pages: the first installed, then -ENOMEM. */
	inject_at = 0;
	inject_keep = PG;
	ps__inject = inject_map_nomem;
	rc = ps_space_map_range(sp, 0, 2 * PG, 76, PS_MAP_WRITE, NULL);
	ps__inject = NULL;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	disarm();
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_uint_eq(fp_fired, 1);
	ck_assert_int_eq(iw.fault_rc, PS_FAULT_MISSING);
	ck_assert_int_eq(iw.mark_rc, PS_SPACE_MARK_UNMAPPED);
	ck_assert_uint_eq(atomic_load(&seen.dirty_total), 0);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	ck_assert(ps_pte_is_none(entry(0)));
	for (uint64_t f = 76; f < 78; f++) {
		ck_assert(!ps_page_is_live(pg(f)));
		ck_assert(!ps_page_is_frozen(pg(f)));
		ck_assert_uint_eq(ps_page_refs(pg(f)), 0);
	}
	ck_assert(!ps_page_test_flags(pg(76), PS_PAGE_LIFE_FLAGS));
}
END_TEST

/*
 * A failed map's rollback is an unmap of what it installed. The helper maps
 * a page of a map that then fails (an injected -ENOMEM after the first page;
 * the frame there is in use elsewhere, so the helper's reference succeeds).
 * Its retry check sees a change of frame only through an invalidation:
 * before the fix the rollback took the entry back with none, and the
 * secondary mapping of a page no longer mapped stayed (the frame was free to
 * be mapped elsewhere, or given back). The rollback now runs inside an UNMAP
 * invalidation, which tears the secondary mapping down.
 */
static struct secmap *rb_m;
static int rb_helper_rc;

static void rb_map_secondary(uint64_t addr)
{
	(void)addr;
	rb_helper_rc = ps_space_map_secondary(sp, &rb_m->sub, 0, false,
					      &sec_secops, rb_m);
}

START_TEST(fp_failed_map_rollback_invalidates)
{
	struct secmap m;
	int rc;

	secmap_init(&m, 0, 2 * PG);
	rb_m = &m;
	rb_helper_rc = 99;
	ck_assert_int_eq(ps_space_map(sp, 10 * PG, 78, 0), 0); /* in use */
	arm(FP_MAP_INSTALLED, rb_map_secondary);
	inject_at = 0;
	inject_keep = PG;
	ps__inject = inject_map_nomem;
	rc = ps_space_map_range(sp, 0, 2 * PG, 78, 0, NULL);
	ps__inject = NULL;
	disarm();
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_int_eq(rb_helper_rc, 0);
	ck_assert_uint_eq(atomic_load(&m.installs), 1);
	ck_assert_msg(atomic_load(&m.frame) == UINT64_MAX,
		      "a secondary mapping of page 0 (frame %llu) outlived "
		      "the failed map's entry",
		      (unsigned long long)atomic_load(&m.frame));
	ck_assert_int_eq(atomic_load(&m.last_event), PS_NOTIFIER_UNMAP);
	ck_assert(ps_pte_is_none(entry(0)));
	ck_assert_uint_eq(ps_page_refs(pg(78)), 1); /* its other mapping */
	ck_assert(!ps_page_is_live(pg(79)));
	ck_assert_uint_eq(atomic_load(&seen.freed_total), 0);
	secmap_fini(&m);
}
END_TEST

/*
 * Regression (the soak's N1): harvest-then-protect lost a write. The write
 * fault marked and logged, then made the entry it had classified
 * writable by CAS. A harvest (plain, the user then protecting: the safe
 * order) between the log and the CAS took the page's mark, and the
 * protect changed nothing (the entry was still write-protected); the CAS
 * then made the entry writable with no mark left, and the write through
 * it was never reported. The fault logs after its CAS.
 */
static void harvest_then_protect(uint64_t addr)
{
	uint64_t got[4], n;

	ck_assert_int_eq(ps_space_harvest(sp, addr, PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(ps_space_pgtable(sp), addr, PG), 0);
}

/* The same with an ABA: protected and unprotected (an identical entry). */
static void harvest_then_protect_unprotect(uint64_t addr)
{
	harvest_then_protect(addr);
	ck_assert_int_eq(ps_pgtable_unprotect(ps_space_pgtable(sp), addr, PG),
			 0);
}

START_TEST(fp_fault_harvest_before_writable)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t got[4];

	ck_assert_int_eq(ps_space_map_range(sp, 0, 2 * PG, 70, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 2 * PG, 0), 0); /* sync */
	/* A write-protected page: the handler resolves the fault. */
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, PG), 0);
	arm(FP_FAULT_MARKED, harvest_then_protect);
	ck_assert_int_eq(ps_space_fault(sp, 0,
					PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP),
			 PS_FAULT_OK);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	if (ps_pte_is_writable(entry(0)))
		ck_assert_msg(harvest_all(2 * PG, 0, got, 4) == 1 &&
				      got[0] == 0,
			      "a writable entry whose write no harvest will "
			      "report");
	/* Unprotected, then protected and unprotected again meanwhile. */
	arm(FP_FAULT_MARKED, harvest_then_protect_unprotect);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_OK);
	disarm();
	ck_assert_uint_eq(fp_fired, 1);
	if (ps_pte_is_writable(entry(PG)))
		ck_assert_msg(harvest_all(2 * PG, 0, got, 4) == 1 &&
				      got[0] == PG,
			      "a writable entry whose write no harvest will "
			      "report (ABA)");
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 2 * PG), 0);
}
END_TEST

/* --- issue 15 #12: errors say what failed --------------------------------- */

/*
 * Errors say where: ps_space_map_range() puts the byte offset from @start of
 * the page that stopped it in *@error_offset, for every error but -EINVAL
 * and -ENOMEM (left unwritten): a frame frozen or in use with another cache
 * mode (-EBUSY), poisoned (-EHWPOISON), at the reference limit
 * (-EOVERFLOW), a page already mapped (-EEXIST), in a range of one run and
 * of several (a private frame makes a run of its own, which the page-table
 * prepare checks at once). Each failure leaves every frame as it was.
 */
START_TEST(map_range_error_says_where)
{
	uint64_t off;

	/* -EBUSY: frame 123 (page 3) is mapped write-back, the range UC. */
	ck_assert_int_eq(ps_space_map(sp, 100 * PG, 123, 0), 0);
	off = 77;
	ck_assert_int_eq(ps_space_map_range(sp, 0, 8 * PG, 120,
					    PS_MAP_CACHE(PS_CACHE_UC), &off),
			 -EBUSY);
	ck_assert_uint_eq(off, 3 * PG);
	ck_assert_uint_eq(ps_page_refs(pg(123)), 1);
	ck_assert(!ps_page_is_live(pg(120)));
	/* -EHWPOISON: frame 134, page 4 of a range from 8 * PG. */
	ps_page_set_flags(pg(134), PS_PAGE_POISONED);
	ck_assert_int_eq(ps_space_map_range(sp, 8 * PG, 8 * PG, 130,
					    PS_MAP_WRITE, &off),
			 -EHWPOISON);
	ck_assert_uint_eq(off, 4 * PG);
	/* -EOVERFLOW: frame 141 at the reference limit, page 1. */
	ck_assert_int_eq(ps_space_map(sp, 101 * PG, 141, 0), 0);
	ck_assert_int_eq(ps_page_get_many(pg(141), PS_PAGE_REFS_MAX - 1), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 16 * PG, 4 * PG, 140,
					    PS_MAP_WRITE, &off),
			 -EOVERFLOW);
	ck_assert_uint_eq(off, PG);
	ck_assert(!ps_page_put_many(pg(141), PS_PAGE_REFS_MAX - 1));
	/* -EEXIST, one run: page 5 of a range from 32 * PG is mapped. */
	ck_assert_int_eq(ps_space_map(sp, 37 * PG, 50, 0), 0);
	ck_assert_int_eq(ps_space_map_range(sp, 32 * PG, 8 * PG, 150,
					    PS_MAP_WRITE, &off),
			 -EEXIST);
	ck_assert_uint_eq(off, 5 * PG);
	/* Several runs (frame 152 private): the same page, from the prepare. */
	ps_page_set_flags(pg(152), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_space_map_range(sp, 32 * PG, 8 * PG, 150,
					    PS_MAP_WRITE, &off),
			 -EEXIST);
	ck_assert_uint_eq(off, 5 * PG);
	for (uint64_t f = 150; f < 158; f++)
		ck_assert(!ps_page_is_live(pg(f)));
	/* -EINVAL concerns no page: not written. */
	off = 77;
	ck_assert_int_eq(ps_space_map_range(sp, 1, PG, 150, 0, &off), -EINVAL);
	ck_assert_uint_eq(off, 77);
	/* Success: not written; NULL is allowed. */
	ck_assert_int_eq(ps_space_map_range(sp, 48 * PG, 2 * PG, 160, 0, &off),
			 0);
	ck_assert_uint_eq(off, 77);
	ck_assert_int_eq(ps_space_map_range(sp, 37 * PG, PG, 170, 0, NULL),
			 -EEXIST);
}
END_TEST

/*
 * Regression (issue 15 #12): ps_space_pin_range() said -EAGAIN for a sync
 * write-protected page without saying which one, so a caller resolved
 * every page of the range. On an error that concerns a page, frames_out[0]
 * holds that page's offset from @start.
 */
START_TEST(pin_range_error_says_where)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t f[4];

	ck_assert_int_eq(ps_space_map_range(sp, 0, 3 * PG, 80, PS_MAP_WRITE,
					    NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, 4 * PG, 0), 0); /* sync */
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * PG, PG), 0);
	/* Page 2 is write-protected: resolve it, and only it. */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 3 * PG, PS_PIN_WRITE, f),
			 -EAGAIN);
	ck_assert_uint_eq(f[0], 2 * PG);
	ck_assert(!ps_page_is_pinned(pg(80)) && !ps_page_is_pinned(pg(81)));
	ck_assert_int_eq(ps_space_fault(sp, f[0],
					PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP),
			 PS_FAULT_OK);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 3 * PG, PS_PIN_WRITE, f), 0);
	ck_assert_int_eq(ps_space_unpin(sp, f, 3, 0), 0);
	/* From another start: the offset is from it. */
	ck_assert_int_eq(ps_pgtable_protect(pt, 2 * PG, PG), 0);
	ck_assert_int_eq(ps_space_pin_range(sp, PG, 2 * PG, PS_PIN_WRITE, f),
			 -EAGAIN);
	ck_assert_uint_eq(f[0], PG);
	/* Page 3 is missing (no populate hook): -EFAULT there. */
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 4 * PG, 0, f), -EFAULT);
	ck_assert_uint_eq(f[0], 3 * PG);
	/* A private frame without PS_PIN_PRIVATE: -EPERM there. */
	ps_page_set_flags(pg(81), PS_PAGE_PRIVATE);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 3 * PG, 0, f), -EPERM);
	ck_assert_uint_eq(f[0], PG);
	ps_page_clear_flags(pg(81), PS_PAGE_PRIVATE);
	/* Bad arguments concern no page: frames_out is not written. */
	f[0] = 12345;
	ck_assert_int_eq(ps_space_pin_range(sp, 1, PG, 0, f), -EINVAL);
	ck_assert_uint_eq(f[0], 12345);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 4 * PG), 0);
}
END_TEST

/*
 * Regression (issue 15 #12): ps_space_mark_dirty() returned false both
 * for "already dirty" (logged) and for "nothing mapped" (nothing done).
 * One outcome each.
 */
START_TEST(mark_dirty_outcomes)
{
	uint64_t got[4], n;

	ck_assert_int_eq(ps_space_map(sp, 0, 90, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_DIRTIED);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_uint_eq(atomic_load(&seen.dirty[90]), 1);
	ck_assert_int_eq(ps_space_mark_dirty(sp, PG), PS_SPACE_MARK_UNMAPPED);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 1), PS_SPACE_MARK_INVALID);
	ck_assert_int_eq(ps_space_mark_dirty(sp, SPACE_SIZE),
			 PS_SPACE_MARK_INVALID);
	/* A frame outside the space's array: not the space's to mark. */
	ck_assert_int_eq(ps_pgtable_set(ps_space_pgtable(sp), 2 * PG,
					ps_pte_mk_present(NFRAMES, 0), NULL),
			 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 2 * PG),
			 PS_SPACE_MARK_UNMAPPED);
	ck_assert_int_eq(ps_pgtable_set(ps_space_pgtable(sp), 2 * PG,
					PS_PTE_NONE, NULL),
			 0);
	/* At the reference limit it cannot hold the frame: nothing done. */
	ck_assert_int_eq(ps_space_map(sp, 3 * PG, 91, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_page_get_many(pg(91), PS_PAGE_REFS_MAX - 1), 0);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 3 * PG),
			 PS_SPACE_MARK_OVERFLOW);
	ck_assert(!ps_page_test_flags(pg(91), PS_PAGE_DIRTY));
	ck_assert(!ps_page_put_many(pg(91), PS_PAGE_REFS_MAX - 1));
	/* Logged: the two marks of page 0 only. */
	ck_assert_int_eq(ps_space_harvest(sp, 0, 8 * PG, 0, got, 4, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got[0], 0);
}
END_TEST

static _Atomic(int) marker_rc = -1;

static void *marker_fn(void *arg)
{
	(void)arg;
	atomic_store(&marker_rc, (int)ps_space_mark_dirty(sp, 0));
	return NULL;
}

/*
 * ps_space_mark_dirty() holds the frame with one CAS (a reference, LOCKED,
 * DIRTY) that never waits; a frame another thread holds LOCKED is waited for,
 * then marked under the bit: one transition, its hook under LOCKED, the
 * reference given back.
 */
START_TEST(mark_dirty_waits_for_a_locked_frame)
{
	struct lock_holder h;
	struct timespec ts = {0, 20000000};
	pthread_t t, m;

	memset(&h, 0, sizeof(h));
	h.p = pg(95);
	ck_assert_int_eq(ps_space_map(sp, 0, 95, PS_MAP_WRITE), 0);
	seen.dirty_watch = true;
	seen.dirty_addr = 0;
	atomic_store(&marker_rc, -1);
	ck_assert_int_eq(pthread_create(&t, NULL, lock_holder_fn, &h), 0);
	while (atomic_load(&h.state) != 1)
		sched_yield();
	ck_assert_int_eq(pthread_create(&m, NULL, marker_fn, NULL), 0);
	nanosleep(&ts, NULL);
	ck_assert_int_eq(atomic_load(&marker_rc), -1); /* it waits */
	ck_assert_uint_eq(atomic_load(&seen.dirty[95]), 0);
	atomic_store(&h.state, 2);
	pthread_join(t, NULL);
	pthread_join(m, NULL);
	ck_assert_int_eq(atomic_load(&marker_rc), PS_SPACE_MARK_DIRTIED);
	ck_assert_uint_eq(atomic_load(&seen.dirty[95]), 1);
	ck_assert_uint_eq(atomic_load(&seen.dirty_saw_unlocked), 0);
	ck_assert(!ps_page_test_flags(pg(95), PS_PAGE_LOCKED));
	ck_assert(ps_page_test_flags(pg(95), PS_PAGE_DIRTY));
	ck_assert_uint_eq(ps_page_refs(pg(95)), 1);
	ck_assert_int_eq(ps_space_mark_dirty(sp, 0), PS_SPACE_MARK_WAS_DIRTY);
	ck_assert_uint_eq(ps_page_refs(pg(95)), 1);
}
END_TEST

/*
 * A write fault holds the frame it marks (#1): at the reference limit it
 * cannot, and changes nothing (PS_FAULT_INVALID; a pin's fault-in says
 * -EOVERFLOW, at the page). One below the limit it works.
 */
START_TEST(write_fault_at_reference_limit)
{
	uint64_t f;

	ck_assert_int_eq(ps_space_map(sp, PG, 92, PS_MAP_WRITE), 0);
	ck_assert_int_eq(ps_page_get_many(pg(92), PS_PAGE_REFS_MAX - 1), 0);
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE),
			 PS_FAULT_INVALID);
	ck_assert(!ps_pte_is_writable(entry(PG)));
	ck_assert(!ps_page_test_flags(pg(92), PS_PAGE_DIRTY | PS_PAGE_LOCKED));
	ck_assert_uint_eq(ps_page_refs(pg(92)), PS_PAGE_REFS_MAX);
	ck_assert_int_eq(ps_space_pin_range(sp, 0, 2 * PG, PS_PIN_WRITE, &f),
			 -EFAULT); /* page 0 is missing */
	ck_assert_int_eq(ps_space_pin_range(sp, PG, PG, PS_PIN_WRITE, &f),
			 -EOVERFLOW);
	ck_assert_uint_eq(f, 0);
	/* A read fault takes no reference: fine at the limit. */
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_READ), PS_FAULT_OK);
	ck_assert(!ps_page_put(pg(92)));
	ck_assert_int_eq(ps_space_fault(sp, PG, PS_ACCESS_WRITE), PS_FAULT_OK);
	ck_assert(ps_pte_is_writable(entry(PG)));
	ck_assert_uint_eq(atomic_load(&seen.dirty[92]), 1);
	ck_assert_uint_eq(ps_page_refs(pg(92)), PS_PAGE_REFS_MAX - 1);
	ck_assert(!ps_page_put_many(pg(92), PS_PAGE_REFS_MAX - 2));
}
END_TEST

/* --- stress --------------------------------------------------------------- */

/*
 * The stress tcases run their threads until each did its share and they
 * overlapped in enough operations (harness.h), on one CPU too, and fail if they
 * did not; a race a tcase must have seen holds the loops until it was
 * (stress_seen()). Their worker threads never call ck_assert (Check's
 * assertions are safe only in the test's own thread): they count a broken
 * invariant with stress_violation(), which says what on stderr, and the main
 * thread asserts the count after the join.
 */
static void stress_violation(const char *what, uint64_t a, uint64_t b)
{
	fprintf(stderr,
		"stress invariant broken: %s (%#" PRIx64 ", %#" PRIx64 ")\n",
		what, a, b);
	atomic_fetch_add(&stress_violations, 1);
}

static void stress_check_violations(void)
{
	ck_assert_msg(atomic_load(&stress_violations) == 0,
		      "%u stress invariants broken (stderr says which)",
		      atomic_load(&stress_violations));
}

/* entry() for a worker thread: a failed get is a violation. */
static ps_pte_t stress_entry(uint64_t addr)
{
	ps_pte_t e;

	if (ps_pgtable_get(ps_space_pgtable(sp), addr, &e)) {
		stress_violation("ps_pgtable_get failed", addr, 0);
		return PS_PTE_NONE;
	}
	return e;
}

/* A race the loops were held for happened: the first time, release them. */
static void stress_seen(_Atomic(int) *once, struct ps_test_overlap *ov)
{
	if (!atomic_exchange(once, 1))
		ps_test_overlap_release(ov);
}

/*
 * Pin versus replacement: a mapper maps page 0 with alternating frames A and B
 * and unmaps it again (each of the two an operation, so that the pinner may
 * run between them on one CPU too) while a pinner pins and unpins it. A pin
 * must always return the frame mapped at some instant (A or B), hold a pin on
 * it, and when both threads stop no reference or pin may be left behind (the
 * back-out leaves nothing). The loops run until a pin succeeded.
 */
struct pin_race {
	_Atomic(uint64_t) pins;
	_Atomic(int) pinned;
	struct ps_test_overlap ov; /* side 0 the mapper, 1 the pinner */
};

static void *pin_race_pinner(void *arg)
{
	struct pin_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t f;
		int rc = ps_space_pin_range(sp, 0, PG, 0, &f);

		if (rc == -EFAULT)
			continue; /* unmapped at that instant */
		if (rc || (f != 1 && f != 2) || !ps_page_is_pinned(pg(f))) {
			stress_violation("a pin failed, or got an unmapped "
					 "or unpinned frame",
					 (uint64_t)rc, f);
			continue;
		}
		ps_space_unpin(sp, &f, 1, 0);
		atomic_fetch_add(&r->pins, 1);
		stress_seen(&r->pinned, &r->ov);
	}
	return NULL;
}

START_TEST(stress_pin_backs_out)
{
	struct pin_race r;
	struct ps_test_side me;
	uint64_t maps = 0, i;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops =
		2 * (ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 50);
	ps_test_overlap_hold(&r.ov); /* until a pin succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, pin_race_pinner, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		if (i & 1) {
			ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
			continue;
		}
		ck_assert_int_eq(ps_space_map(sp, 0, 1 + (maps & 1), 0), 0);
		maps++;
	}
	pthread_join(t, NULL);
	if (i & 1) /* the last operation was a map */
		ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	stress_check_violations();
	ps_test_overlap_check(&r.ov, "mapper vs pinner");
	ck_assert_uint_eq(ps_page_refs(pg(1)), 0);
	ck_assert_uint_eq(ps_page_refs(pg(2)), 0);
	ck_assert_uint_eq(ps_page_pins(pg(1)), 0);
	ck_assert_uint_eq(ps_page_pins(pg(2)), 0);
	/* Both frames ended free, each lifetime freed once (a pin held
	 * across a remap merges two lifetimes, so at most one per map). */
	ck_assert(!ps_page_is_live(pg(1)));
	ck_assert(!ps_page_is_live(pg(2)));
	ck_assert_uint_le(atomic_load(&seen.freed[1]) +
				  atomic_load(&seen.freed[2]),
			  maps);
	ck_assert_uint_gt(atomic_load(&seen.freed[1]), 0);
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
}
END_TEST

/*
 * Pin versus discard (S10): a balloon thread discards page 0 and, when the
 * discard dropped it, maps a fresh frame there; a pinner pins page 0, and
 * unpins it in its next operation (so that, on one CPU too, the balloon may
 * run while the pin is held). While the pinner holds its pin, the discard
 * must skip the page and say it is pinned, so the page stays mapped to exactly
 * the pinned frame until the unpin, and the frame keeps the pin (never lost):
 * the pinner checks that after the pin and again before the unpin. Every
 * frame discard dropped was freed exactly once, by discard; none was freed
 * while pinned. The loops run until a discard skipped a pinned page.
 */
struct discard_race {
	_Atomic(unsigned) pinned_ok;
	_Atomic(int) skipped;
	struct ps_test_overlap ov; /* side 0 the balloon, 1 the pinner */
};

static void discard_check_held(uint64_t f)
{
	ps_pte_t e = stress_entry(0);

	if (!ps_pte_is_present(e) || ps_pte_frame(e) != f)
		stress_violation("a pinned page was unmapped or replaced", e,
				 f);
	if (!ps_page_is_pinned(pg(f)) || !ps_page_is_live(pg(f)))
		stress_violation("a pinned frame lost its pin or was freed",
				 ps_page_load(pg(f)), f);
}

static void *discard_pinner(void *arg)
{
	struct discard_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);
	uint64_t f = UINT64_MAX; /* the frame pinned, or none */

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		if (f != UINT64_MAX) {
			discard_check_held(f);
			ps_space_unpin(sp, &f, 1, 0);
			f = UINT64_MAX;
			continue;
		}
		if (ps_space_pin_range(sp, 0, PG, 0, &f)) {
			f = UINT64_MAX; /* it holds the failing offset */
			continue;	/* discarded at that instant */
		}
		for (int k = 0; k < 8; k++)
			discard_check_held(f);
		atomic_fetch_add(&r->pinned_ok, 1);
	}
	if (f != UINT64_MAX) {
		discard_check_held(f);
		ps_space_unpin(sp, &f, 1, 0);
	}
	return NULL;
}

START_TEST(stress_discard_never_drops_pinned)
{
	uint64_t frame = 10, dropped = 0, wrong_reason = 0, skips = 0;
	struct discard_race r;
	struct ps_test_side me;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       50;
	ps_test_overlap_hold(&r.ov); /* until a pinned page was skipped */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(ps_space_map(sp, 0, frame, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, discard_pinner, &r), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		struct ps_discard_skip skipped;
		uint64_t nskipped;

		ck_assert_int_eq(ps_space_discard(sp, 0, PG, &skipped, 1,
						  &nskipped),
				 0);
		if (nskipped) {
			/* Only the pinner holds anything: pinned. */
			if (skipped.reason != PS_DISCARD_PINNED ||
			    skipped.frame != frame) {
				wrong_reason++;
			} else {
				skips++;
				stress_seen(&r.skipped, &r.ov);
			}
			continue;
		}
		/* Dropped: discard freed it, with no pin on it. */
		dropped++;
		ck_assert_uint_eq(atomic_load(&seen.freed[frame]),
				  (dropped + 1) / 2);
		frame = frame == 10 ? 11 : 10;
		ck_assert(!ps_page_is_live(pg(frame)));
		ck_assert_int_eq(ps_space_map(sp, 0, frame, 0), 0);
	}
	pthread_join(t, NULL);
	stress_check_violations();
	ps_test_overlap_check(&r.ov, "balloon vs pinner");
	ck_assert_uint_eq(wrong_reason, 0);
	ck_assert_uint_gt(atomic_load(&r.pinned_ok), 0);
	ck_assert_uint_gt(skips, 0);
	ck_assert_uint_eq(atomic_load(&seen.freed_total), dropped);
}
END_TEST

/*
 * Exactly-once dirty: a mapper maps page 0 writable through the helper (and
 * read-only every third time) while the main thread invalidates the page
 * (forcing retries) and cleans its frame. Every clean-to-dirty transition runs
 * the hook once: hooks == cleans that found it dirty + (1 if dirty at the end),
 * never more. The loops run until a clean found the frame dirty.
 */
struct dirty_race {
	struct secmap m;
	_Atomic(unsigned) errors;
	_Atomic(int) cleaned;
	struct ps_test_overlap ov; /* side 0 the cleaner, 1 the mapper */
};

static void *dirty_mapper(void *arg)
{
	struct dirty_race *d = arg;
	struct ps_test_side me = ps_test_side(&d->ov, 1, 0);

	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me))
		if (ps_space_map_secondary(sp, &d->m.sub, 0, i % 3 != 0,
					   &sec_secops, &d->m))
			atomic_fetch_add(&d->errors, 1);
	return NULL;
}

START_TEST(stress_dirty_hook_exactly_once)
{
	struct dirty_race d;
	struct ps_test_side me;
	unsigned cleans = 0;
	pthread_t t;

	memset(&d, 0, sizeof(d));
	ps_test_overlap_init(&d.ov, 2, 0);
	d.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       20;
	ps_test_overlap_hold(&d.ov); /* until a clean found it dirty */
	me = ps_test_side(&d.ov, 0, 0);
	ck_assert_int_eq(ps_space_map(sp, 0, 3, PS_MAP_WRITE), 0);
	secmap_init(&d.m, 0, PG);
	ck_assert_int_eq(pthread_create(&t, NULL, dirty_mapper, &d), 0);
	for (uint64_t i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		if (i & 1) {
			ck_assert_int_eq(ps_notifier_invalidate_start(
						 ps_space_notifier(sp), 0, PG,
						 PS_NOTIFIER_PROTECTION, 0),
					 0);
			ck_assert_int_eq(ps_notifier_invalidate_end(
						 ps_space_notifier(sp), 0, PG),
					 0);
		} else if (ps_page_test_and_clear_flag(pg(3), PS_PAGE_DIRTY)) {
			cleans++;
			stress_seen(&d.cleaned, &d.ov);
		}
	}
	pthread_join(t, NULL);
	secmap_fini(&d.m);
	ps_test_overlap_check(&d.ov, "cleaner vs secondary mapper");
	ck_assert_uint_eq(atomic_load(&d.errors), 0);
	ck_assert_uint_eq(atomic_load(&seen.dirty[3]),
			  cleans + (ps_page_test_flags(pg(3), PS_PAGE_DIRTY)
					    ? 1
					    : 0));
	ck_assert_uint_gt(cleans, 0);
}
END_TEST

/*
 * Harvest never loses a write (the migration invariant): a writer writes
 * random pages, bumping each page's version; the main thread harvests with
 * REARM and, after each harvest call, "copies" every reported page (reads
 * its version). After the writer stops and a final harvest, every page's
 * copied version is its last one. Even pages are written by software and
 * marked with ps_space_mark_dirty() after the write; odd pages by the CPU:
 * a write fault, then the write, which, like hardware, faults again if a
 * harvest re-protected the entry in between. After each round the harvester
 * lets the writer write (ps_test_overlap_wait()): on one CPU it could
 * otherwise come between every fault of the writer and its write.
 */
#define HV_PAGES 256

struct harvest_race {
	_Atomic(uint64_t) version[HV_PAGES];
	uint64_t copied[HV_PAGES];
	_Atomic(unsigned) bad_faults;
	uint64_t iters;
	struct ps_test_overlap ov; /* side 0 the harvester, 1 the writer */
};

static void *harvest_writer(void *arg)
{
	struct harvest_race *h = arg;
	struct ps_test_rng rng = ps_test_rng_new(31);
	struct ps_test_side me = ps_test_side(&h->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t page = ps_test_below(&rng, HV_PAGES);

		if (!(page & 1)) {
			atomic_fetch_add(&h->version[page], 1);
			(void)ps_space_mark_dirty(sp, page * PG);
			continue;
		}
		do {
			if (ps_space_fault(sp, page * PG, PS_ACCESS_WRITE) !=
			    PS_FAULT_OK) {
				atomic_fetch_add(&h->bad_faults, 1);
				break;
			}
			atomic_fetch_add(&h->version[page], 1);
			/* Still writable: the write went through it. */
		} while (!ps_pte_is_writable(stress_entry(page * PG)));
	}
	return NULL;
}

static void harvest_round(struct harvest_race *h)
{
	uint64_t got[64], n, resume = 0;

	while (resume < HV_PAGES * PG) {
		ck_assert_int_eq(ps_space_harvest(sp, resume,
						  HV_PAGES * PG - resume,
						  PS_HARVEST_REARM, got, 64, &n,
						  &resume),
				 0);
		for (uint64_t k = 0; k < n; k++) /* copy after the harvest */
			h->copied[got[k] / PG] =
				atomic_load(&h->version[got[k] / PG]);
	}
}

START_TEST(stress_harvest_never_loses)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct harvest_race *h = calloc(1, sizeof(*h));
	struct ps_test_side me;
	uint64_t writes = 0;
	pthread_t t;

	ck_assert_ptr_nonnull(h);
	h->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 10;
	ps_test_overlap_init(&h->ov, 2, 0);
	h->ov.side[1].min_ops = h->iters;
	me = ps_test_side(&h->ov, 0, 0);
	ck_assert_int_eq(ps_space_map_range(sp, 0, HV_PAGES * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, HV_PAGES * PG, PS_WP_ASYNC),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, HV_PAGES * PG), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, harvest_writer, h), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		harvest_round(h);
		ps_test_overlap_wait(&me, 1000000); /* let the writer write */
	}
	pthread_join(t, NULL);
	harvest_round(h); /* the final one */
	stress_check_violations();
	ps_test_overlap_check(&h->ov, "harvester vs writer");
	ck_assert_uint_eq(atomic_load(&h->bad_faults), 0);
	for (int p = 0; p < HV_PAGES; p++) {
		uint64_t v = atomic_load(&h->version[p]);

		writes += v;
		if (h->copied[p] != v)
			ck_abort_msg("page %d: version %llu written, %llu "
				     "copied: a write was lost",
				     p, (unsigned long long)v,
				     (unsigned long long)h->copied[p]);
	}
	ck_assert_uint_ge(writes, h->iters);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, HV_PAGES * PG), 0);
	free(h);
}
END_TEST

/*
 * One write-back of a frame at a time (S12): a writer writes random pages (a
 * write fault, then the write, which faults again if a write-back protected the
 * entry in between), bumping each page's version; two write-back threads write
 * back the whole range in either mode, each letting the writer write after
 * each write-back (ps_test_overlap_wait()). Each callback copies the page's
 * version on entry and lands it on return, sometimes after a yield.
 * Invariants: never two callbacks of one frame at once; an INTEGRITY write-back
 * returns only after every callback of its range that was running when it began
 * has returned (with no third write-back in play here, see space.h); once
 * everything stopped and a final INTEGRITY write-back ran, each page's landed
 * copy is its last version, and no frame is left under write-back.
 */
#define WBR_PAGES 16
#define WBR_FRAME0 100

struct wb_race {
	_Atomic(uint64_t) version[WBR_PAGES], backing[WBR_PAGES];
	_Atomic(unsigned) in_fn[WBR_PAGES];
	_Atomic(uint64_t) started[WBR_PAGES], ended[WBR_PAGES];
	_Atomic(unsigned) overlaps, early_returns, bad_faults, integrity_waits;
	uint64_t iters;
	/* Side 0 the main write-back, 1 the writer, 2 the flusher. */
	struct ps_test_overlap ov;
};

static struct wb_race *wbr;

static int wbr_fn(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	struct ps_test_rng *rng = ctx;
	uint64_t p = addr / PG, v;

	(void)pinned;
	if (p >= WBR_PAGES || frame != WBR_FRAME0 + p) {
		stress_violation("a write-back callback for another page or "
				 "frame",
				 addr, frame);
		return 0;
	}
	if (atomic_fetch_add(&wbr->in_fn[p], 1))
		atomic_fetch_add(&wbr->overlaps, 1);
	atomic_fetch_add(&wbr->started[p], 1);
	v = atomic_load(&wbr->version[p]);
	if (ps_test_below(rng, 4) == 0)
		sched_yield(); /* the I/O takes a while */
	atomic_store(&wbr->backing[p], v);
	atomic_fetch_add(&wbr->ended[p], 1);
	atomic_fetch_sub(&wbr->in_fn[p], 1);
	return 0;
}

static void wbr_writeback(struct ps_test_rng *rng, enum ps_writeback_mode m)
{
	struct ps_writeback_stats st;
	uint64_t snap[WBR_PAGES];
	unsigned running = 0;
	int rc;

	for (int p = 0; p < WBR_PAGES; p++) {
		snap[p] = atomic_load(&wbr->started[p]);
		running += atomic_load(&wbr->in_fn[p]) != 0;
	}
	rc = ps_space_writeback(sp, 0, WBR_PAGES * PG, m, wbr_fn, rng, &st);
	if (rc)
		stress_violation("a write-back failed", (uint64_t)rc,
				 (uint64_t)m);
	if (m != PS_WB_INTEGRITY)
		return;
	if (running)
		atomic_fetch_add(&wbr->integrity_waits, 1);
	for (int p = 0; p < WBR_PAGES; p++)
		if (atomic_load(&wbr->ended[p]) < snap[p])
			atomic_fetch_add(&wbr->early_returns, 1);
}

static void *wbr_writer(void *arg)
{
	struct ps_test_rng rng = ps_test_rng_new(41);
	struct ps_test_side me = ps_test_side(&wbr->ov, 1, 0);

	(void)arg;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t page = ps_test_below(&rng, WBR_PAGES);

		do {
			if (ps_space_fault(sp, page * PG, PS_ACCESS_WRITE) !=
			    PS_FAULT_OK) {
				atomic_fetch_add(&wbr->bad_faults, 1);
				break;
			}
			atomic_fetch_add(&wbr->version[page], 1);
			/* Still writable: the write went through it. */
		} while (!ps_pte_is_writable(stress_entry(page * PG)));
	}
	return NULL;
}

static void *wbr_flusher(void *arg)
{
	struct ps_test_rng rng = ps_test_rng_new(43);
	/* A write-back overlaps when the writer wrote since the previous. */
	struct ps_test_side me = ps_test_side(&wbr->ov, 2, 1u << 1);

	(void)arg;
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		wbr_writeback(&rng, ps_test_below(&rng, 2) ? PS_WB_CLEAN
							   : PS_WB_INTEGRITY);
		ps_test_overlap_wait(&me, 1000000); /* let the writer write */
	}
	return NULL;
}

START_TEST(stress_writeback_one_at_a_time)
{
	struct ps_test_rng rng = ps_test_rng_new(47);
	struct ps_test_side me;
	pthread_t w, f;

	wbr = calloc(1, sizeof(*wbr));
	ck_assert_ptr_nonnull(wbr);
	wbr->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 20;
	ps_test_overlap_init(&wbr->ov, 3, 0);
	wbr->ov.side[1].min_ops = wbr->iters;
	me = ps_test_side(&wbr->ov, 0, 1u << 1);
	ck_assert_int_eq(ps_space_map_range(sp, 0, WBR_PAGES * PG, WBR_FRAME0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(pthread_create(&w, NULL, wbr_writer, NULL), 0);
	ck_assert_int_eq(pthread_create(&f, NULL, wbr_flusher, NULL), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		wbr_writeback(&rng, ps_test_below(&rng, 3) ? PS_WB_INTEGRITY
							   : PS_WB_CLEAN);
		ps_test_overlap_wait(&me, 1000000); /* let the writer write */
	}
	pthread_join(w, NULL);
	pthread_join(f, NULL);
	wbr_writeback(&rng, PS_WB_INTEGRITY); /* the final one */
	stress_check_violations();
	ps_test_overlap_check(&wbr->ov, "write-backs vs writer");
	ck_assert_uint_eq(atomic_load(&wbr->bad_faults), 0);
	ck_assert_msg(atomic_load(&wbr->overlaps) == 0,
		      "%u callbacks ran while another of the same frame ran",
		      atomic_load(&wbr->overlaps));
	ck_assert_msg(atomic_load(&wbr->early_returns) == 0,
		      "%u times an INTEGRITY write-back returned before a "
		      "callback of its range that ran when it began",
		      atomic_load(&wbr->early_returns));
	for (int p = 0; p < WBR_PAGES; p++) {
		uint64_t w0 = ps_page_load(pg(WBR_FRAME0 + p));

		ck_assert(!(w0 & PS_PAGE_WRITEBACK));
		ck_assert(!(w0 & PS_PAGE_DIRTY));
		ck_assert_msg(
			atomic_load(&wbr->backing[p]) ==
				atomic_load(&wbr->version[p]),
			"page %d: version %llu written, %llu landed "
			"last: a stale copy landed after a newer one",
			p, (unsigned long long)atomic_load(&wbr->version[p]),
			(unsigned long long)atomic_load(&wbr->backing[p]));
	}
	free(wbr);
}
END_TEST

/*
 * The same race, left to chance: an owner maps frame F at page 0 (an
 * operation), unmaps it, then maps F again in a map that fails (-EEXIST: page
 * 5 is taken), and reuses F at once (the next operation), over and over; a
 * pinner pins page 0 all the while (its lookups go stale whenever the owner
 * unmaps). Every free hook for F must come from an unmap of page 0: one per
 * lifetime, none for a frame the owner holds as free after a failed map. The
 * loops run until a pin succeeded.
 */
struct failed_map_race {
	_Atomic(uint64_t) pins;
	_Atomic(int) pinned;
	struct ps_test_overlap ov; /* side 0 the owner, 1 the pinner */
};

static void *failed_map_pinner(void *arg)
{
	struct failed_map_race *r = arg;
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t f;

		if (!ps_space_pin_range(sp, 0, PG, 0, &f)) {
			ps_space_unpin(sp, &f, 1, 0);
			atomic_fetch_add(&r->pins, 1);
			stress_seen(&r->pinned, &r->ov);
		}
	}
	return NULL;
}

START_TEST(stress_failed_map_frees_once)
{
	struct failed_map_race r;
	struct ps_test_side me;
	unsigned lives = 0;
	uint64_t i;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops =
		2 * (ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 50);
	ps_test_overlap_hold(&r.ov); /* until a pin succeeded */
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(ps_space_map(sp, 5 * PG, 90, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, failed_map_pinner, &r), 0);
	for (i = 0; !ps_test_overlap_done(&me);
	     i++, ps_test_overlap_step(&me)) {
		if (!(i & 1)) { /* the pinner may pin it before the unmap */
			ck_assert_int_eq(ps_space_map(sp, 0, 80, 0), 0);
			lives++;
			continue;
		}
		ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
		/* The pins' references go soon; then the hook has run. */
		while (atomic_load(&seen.freed[80]) != lives)
			sched_yield();
		ck_assert_int_eq(ps_space_map_range(sp, 4 * PG, 2 * PG, 80, 0,
						    NULL),
				 -EEXIST);
		ck_assert_msg(!ps_page_is_live(pg(80)) &&
				      !ps_page_is_frozen(pg(80)),
			      "a failed map of a free frame left it held");
		ck_assert_msg(atomic_load(&seen.freed[80]) == lives,
			      "free hook for frame 80, free after a failed "
			      "map (lifetime %u)",
			      lives);
	}
	pthread_join(t, NULL);
	if (i & 1) /* the last operation was a map */
		ck_assert_int_eq(ps_space_unmap(sp, 0, PG, 0), 0);
	ps_test_overlap_check(&r.ov, "owner vs pinner");
	ck_assert_uint_eq(atomic_load(&seen.freed[80]), lives);
	ck_assert_uint_eq(atomic_load(&seen.freed[81]), 0);
	ck_assert(!ps_page_is_live(pg(80)));
	ck_assert_uint_gt(atomic_load(&r.pins), 0);
}
END_TEST

/*
 * Issue 15 #2 and the soak's N1, under contention: a writer writes pages of an
 * async, a sync and an unregistered part (resolving sync write-protect faults
 * as a handler would; even pages are device writes, marked with
 * ps_space_mark_dirty() after the write), one harvester runs re-arming harvests
 * over everything, another plain harvests of the sync part followed by a
 * protect of what it reported (harvest, then protect: the caller's safe order).
 * Each copies what it reported after its re-arm, then lets the writer write
 * (ps_test_overlap_wait()). Checked: after a final re-arming harvest, every
 * page's last write was copied (no write escaped every harvest).
 */
#define RA_PART 32
#define RA_PAGES (3 * RA_PART) /* async, sync, unregistered */

struct rearm_race {
	_Atomic(uint64_t) version[RA_PAGES];
	_Atomic(uint64_t) copied[RA_PAGES];
	_Atomic(unsigned) bad_faults;
	uint64_t iters;
	/* Side 0 the re-arming harvester, 1 the writer, 2 the plain one. */
	struct ps_test_overlap ov;
};

static void rearm_copy(struct rearm_race *h, uint64_t addr)
{
	uint64_t p = addr / PG, v = atomic_load(&h->version[p]);
	uint64_t old = atomic_load(&h->copied[p]);

	while (old < v && !atomic_compare_exchange_weak(&h->copied[p], &old, v))
		;
}

static void *rearm_writer(void *arg)
{
	struct rearm_race *h = arg;
	struct ps_test_rng rng = ps_test_rng_new(47);
	struct ps_test_side me = ps_test_side(&h->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t page = ps_test_below(&rng, RA_PAGES);

		if (!(page & 1)) {
			atomic_fetch_add(&h->version[page], 1);
			(void)ps_space_mark_dirty(sp, page * PG);
			continue;
		}
		do {
			enum ps_fault fr = ps_space_fault(sp, page * PG,
							  PS_ACCESS_WRITE);

			if (fr == PS_FAULT_WP) /* the sync handler's turn */
				fr = ps_space_fault(
					sp, page * PG,
					PS_ACCESS_WRITE | PS_ACCESS_RESOLVE_WP);
			if (fr != PS_FAULT_OK) {
				atomic_fetch_add(&h->bad_faults, 1);
				break;
			}
			atomic_fetch_add(&h->version[page], 1);
			/* Still writable: the write went through it. */
		} while (!ps_pte_is_writable(stress_entry(page * PG)));
	}
	return NULL;
}

static void rearm_round(struct rearm_race *h)
{
	uint64_t got[16], n, resume = 0;

	while (resume < RA_PAGES * PG) {
		ck_assert_int_eq(ps_space_harvest(sp, resume,
						  RA_PAGES * PG - resume,
						  PS_HARVEST_REARM, got, 16, &n,
						  &resume),
				 0);
		for (uint64_t k = 0; k < n; k++) /* copy after the harvest */
			rearm_copy(h, got[k]);
	}
}

/* One plain harvest of the sync part, then a protect of what it reported. */
static void plain_round(struct rearm_race *h)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	uint64_t got[8], n, resume = RA_PART * PG;
	int rc;

	while (resume < 2 * RA_PART * PG) {
		rc = ps_space_harvest(sp, resume, 2 * RA_PART * PG - resume, 0,
				      got, 8, &n, &resume);
		if (rc) {
			stress_violation("a plain harvest failed", resume,
					 (uint64_t)rc);
			return;
		}
		for (uint64_t k = 0; k < n; k++) /* then protect */
			if (ps_pgtable_protect(pt, got[k], PG))
				stress_violation("a protect failed", got[k], 0);
		for (uint64_t k = 0; k < n; k++) /* then copy */
			rearm_copy(h, got[k]);
	}
}

static void *plain_harvester(void *arg)
{
	struct rearm_race *h = arg;
	struct ps_test_side me = ps_test_side(&h->ov, 2, 1u << 1);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		plain_round(h);
		ps_test_overlap_wait(&me, 1000000); /* let the writer write */
	}
	return NULL;
}

START_TEST(stress_harvest_rearm_every_range)
{
	struct ps_pgtable *pt = ps_space_pgtable(sp);
	struct rearm_race *h = calloc(1, sizeof(*h));
	struct ps_test_side me;
	uint64_t writes = 0;
	pthread_t t[2];

	ck_assert_ptr_nonnull(h);
	h->iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 10;
	ps_test_overlap_init(&h->ov, 3, 0);
	h->ov.side[1].min_ops = h->iters;
	/* A harvest overlaps when the writer wrote since the previous. */
	me = ps_test_side(&h->ov, 0, 1u << 1);
	ck_assert_int_eq(ps_space_map_range(sp, 0, RA_PAGES * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, 0, RA_PART * PG, PS_WP_ASYNC),
			 0);
	ck_assert_int_eq(ps_pgtable_register(pt, RA_PART * PG, RA_PART * PG, 0),
			 0);
	ck_assert_int_eq(ps_pgtable_protect(pt, 0, 2 * RA_PART * PG), 0);
	ck_assert_int_eq(pthread_create(&t[0], NULL, rearm_writer, h), 0);
	ck_assert_int_eq(pthread_create(&t[1], NULL, plain_harvester, h), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		rearm_round(h);
		ps_test_overlap_wait(&me, 1000000); /* let the writer write */
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	rearm_round(h); /* the final one */
	stress_check_violations();
	ps_test_overlap_check(&h->ov, "harvesters vs writer");
	ck_assert_uint_eq(atomic_load(&h->bad_faults), 0);
	for (int p = 0; p < RA_PAGES; p++) {
		uint64_t v = atomic_load(&h->version[p]);

		writes += v;
		if (atomic_load(&h->copied[p]) != v)
			ck_abort_msg("page %d (%s): version %llu written, "
				     "%llu copied: a write was lost",
				     p,
				     p < RA_PART       ? "async"
				     : p < 2 * RA_PART ? "sync"
						       : "unregistered",
				     (unsigned long long)v,
				     (unsigned long long)
					     atomic_load(&h->copied[p]));
	}
	ck_assert_uint_ge(writes, h->iters);
	ck_assert_int_eq(ps_pgtable_unregister(pt, 0, 2 * RA_PART * PG), 0);
	free(h);
}
END_TEST

/*
 * Issue 15 #1 under contention: a writer write-faults and mark_dirty()s the
 * pages of a small range while a mapper unmaps, discards and maps them
 * again, reusing a small pool of frames (a frame freed comes back soon, at
 * the same address or another). Checked: no dirty hook ever finds its
 * frame freed; at the end, with everything unmapped, no frame is LIVE,
 * DIRTY or LOCKED, and a writable entry never sat on a clean frame.
 */
#define FR_PAGES 8
#define FR_FRAMES 12
#define FR_BASE 100

struct fault_race {
	_Atomic(unsigned) clean_writable;
	struct ps_test_overlap ov; /* side 0 the mapper, 1 the writer */
};

static void *fault_race_writer(void *arg)
{
	struct fault_race *r = arg;
	struct ps_test_rng rng = ps_test_rng_new(53);
	struct ps_test_side me = ps_test_side(&r->ov, 1, 0);

	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t a = ps_test_below(&rng, FR_PAGES) * PG;
		ps_pte_t e;

		if (ps_test_below(&rng, 4) == 0) {
			(void)ps_space_mark_dirty(sp, a);
			continue;
		}
		if (ps_space_fault(sp, a, PS_ACCESS_WRITE) != PS_FAULT_OK)
			continue;
		/* S3, sampled: writable implies dirty (a window remains, so
		 * only a frame that is clean and still mapped writable there
		 * after a re-read counts). */
		e = stress_entry(a);
		if (ps_pte_is_writable(e) &&
		    !ps_page_test_flags(pg(ps_pte_frame(e)), PS_PAGE_DIRTY) &&
		    stress_entry(a) == e &&
		    ps_page_is_live(pg(ps_pte_frame(e))) &&
		    !ps_page_test_flags(pg(ps_pte_frame(e)), PS_PAGE_DIRTY))
			atomic_fetch_add(&r->clean_writable, 1);
	}
	return NULL;
}

START_TEST(stress_fault_holds_its_frame)
{
	struct fault_race r;
	struct ps_test_rng rng = ps_test_rng_new(59);
	struct ps_test_side me;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	ps_test_overlap_init(&r.ov, 2, 0);
	r.ov.side[0].min_ops = ps_test_stress_size("PS_STRESS_ITERS", 1000000) /
			       10;
	me = ps_test_side(&r.ov, 0, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, fault_race_writer, &r), 0);
	for (; !ps_test_overlap_done(&me); ps_test_overlap_step(&me)) {
		uint64_t a = ps_test_below(&rng, FR_PAGES) * PG;
		uint64_t f = FR_BASE + ps_test_below(&rng, FR_FRAMES);

		switch (ps_test_below(&rng, 3)) {
		case 0:
			ck_assert_int_eq(ps_space_unmap(sp, a, PG, 0), 0);
			break;
		case 1:
			ck_assert_int_eq(ps_space_discard(sp, a, PG, NULL, 0,
							  NULL),
					 0);
			break;
		default: /* a free frame, or an alias of a live one */
			(void)ps_space_map(sp, a, f, PS_MAP_WRITE);
			break;
		}
	}
	pthread_join(t, NULL);
	stress_check_violations();
	ps_test_overlap_check(&r.ov, "mapper vs writer");
	ck_assert_msg(atomic_load(&seen.dirty_on_free) == 0,
		      "%u dirty hooks ran for a freed frame",
		      atomic_load(&seen.dirty_on_free));
	ck_assert_msg(atomic_load(&r.clean_writable) == 0,
		      "%u writable entries over a clean frame",
		      atomic_load(&r.clean_writable));
	ck_assert_int_eq(ps_space_unmap(sp, 0, FR_PAGES * PG, 0), 0);
	for (uint64_t f = FR_BASE; f < FR_BASE + FR_FRAMES; f++) {
		ck_assert_msg(!ps_page_is_live(pg(f)), "frame %llu still held",
			      (unsigned long long)f);
		ck_assert_msg(!ps_page_test_flags(pg(f),
						  PS_PAGE_DIRTY |
							  PS_PAGE_LOCKED),
			      "frame %llu free with %#llx",
			      (unsigned long long)f,
			      (unsigned long long)ps_page_flags(pg(f)));
	}
}
END_TEST

/* --- map_range in chunks (S20) -------------------------------------------- */

/*
 * A map of more than one chunk (PS__FP_MAP_CHUNK_PAGES pages, 64 MiB, aligned)
 * takes and installs chunk by chunk, letting the writer mutex go between
 * chunks (FP_MAP_CHUNK), and stays all or nothing. These tcases use a space
 * of their own: 4 chunks of address space, as many frames, plus a few.
 */
#define CK_PAGES PS__FP_MAP_CHUNK_PAGES
#define CK_SIZE (CK_PAGES * PG)
#define CK_FRAMES (4 * CK_PAGES + 64)

static struct ps_space *ck;
static _Atomic(unsigned) ck_freed;

static void ck_on_free(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)ctx;
	(void)s;
	(void)frame;
	atomic_fetch_add(&ck_freed, 1);
}

static void ck_setup(void)
{
	struct ps_space_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = 5 * CK_SIZE;
	cfg.nframes = CK_FRAMES;
	cfg.hooks.free_frame = ck_on_free;
	atomic_store(&ck_freed, 0);
	ck_assert_int_eq(ps_space_create(&cfg, &ck), 0);
}

static void ck_teardown(void)
{
	ps__failpoint = NULL;
	ps__inject = NULL;
	ck_assert_int_eq(ps_space_destroy(ck), 0);
	ck = NULL;
}

static void ck_nothing(uint64_t addr)
{
	(void)addr;
}

static ps_pte_t ck_entry(uint64_t addr)
{
	ps_pte_t e = PS_PTE_NONE;

	ck_assert_int_eq(ps_pgtable_get(ps_space_pgtable(ck), addr, &e), 0);
	return e;
}

/* Pages [0, n) at @start map frames @frame + page, each LIVE once. */
static void ck_assert_mapped(uint64_t start, uint64_t n, uint64_t frame)
{
	for (uint64_t k = 0; k < n; k++) {
		const ps_pte_t e = ck_entry(start + k * PG);

		ck_assert_msg(ps_pte_is_present(e) &&
				      ps_pte_frame(e) == frame + k,
			      "page %llu not mapped to its frame",
			      (unsigned long long)k);
		ck_assert_uint_eq(ps_page_refs(ps_space_page(ck, frame + k)),
				  1);
	}
}

/* Pages [0, n) at @start empty, frames @frame + [0, n) free, not frozen. */
static void ck_assert_untouched(uint64_t start, uint64_t n, uint64_t frame)
{
	for (uint64_t k = 0; k < n; k++) {
		ck_assert_msg(ps_pte_is_none(ck_entry(start + k * PG)),
			      "page %llu left mapped by a failed map",
			      (unsigned long long)k);
		ck_assert_msg(!ps_page_is_live(ps_space_page(ck, frame + k)) &&
				      !ps_page_is_frozen(
					      ps_space_page(ck, frame + k)),
			      "frame %llu left held by a failed map",
			      (unsigned long long)(frame + k));
	}
}

/*
 * The other thread of ck_other_op: maps a page outside the big map's range
 * and unmaps it again, then says so. It needs the writer mutex.
 */
static sem_t ck_other_done;
static _Atomic(unsigned) ck_other_bad;

static void *ck_other(void *arg)
{
	(void)arg;
	/* Checked by the main thread (no ck_assert off it). */
	if (ps_space_map(ck, 4 * CK_SIZE, CK_FRAMES - 1, 0) ||
	    ps_space_unmap(ck, 4 * CK_SIZE, PG, 0))
		atomic_fetch_add(&ck_other_bad, 1);
	sem_post(&ck_other_done);
	return NULL;
}

static _Atomic(unsigned) ck_other_ran;

/*
 * At the first chunk boundary: another thread's map and unmap elsewhere must
 * finish while the big map is still in progress. With the mutex held for the
 * whole range it would wait for the big map, which waits here: the timed
 * wait fails instead of hanging.
 */
static void ck_other_op(uint64_t addr)
{
	struct timespec ts;
	pthread_t t;

	(void)addr;
	ck_assert_int_eq(pthread_create(&t, NULL, ck_other, NULL), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	ck_assert_msg(sem_timedwait(&ck_other_done, &ts) == 0,
		      "another part of the space waited for the whole map");
	pthread_join(t, NULL);
	atomic_fetch_add(&ck_other_ran, 1);
}

/* S20: the writer mutex is let go between chunks. */
START_TEST(map_chunks_let_others_in)
{
	sem_init(&ck_other_done, 0, 0);
	atomic_store(&ck_other_ran, 0);
	atomic_store(&ck_other_bad, 0);
	arm(FP_MAP_CHUNK, ck_other_op);
	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, NULL), 0);
	disarm();
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 2);
	ck_assert_uint_eq(atomic_load(&ck_other_ran), 1);
	ck_assert_uint_eq(atomic_load(&ck_other_bad), 0);
	ck_assert_mapped(0, 3 * CK_PAGES, 0);
	/* The other thread's frame came and went: one lifetime. */
	ck_assert_uint_eq(atomic_load(&ck_freed), 1);
	ck_assert_int_eq(ps_space_unmap(ck, 0, 3 * CK_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&ck_freed), 1 + 3 * CK_PAGES);
	sem_destroy(&ck_other_done);
}
END_TEST

/*
 * S20: an unmap lets the mutex go between chunks too: another thread's map
 * and unmap elsewhere finish inside it, and it frees each frame once.
 */
START_TEST(unmap_chunks_let_others_in)
{
	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, NULL), 0);
	sem_init(&ck_other_done, 0, 0);
	atomic_store(&ck_other_ran, 0);
	atomic_store(&ck_other_bad, 0);
	arm(FP_UNMAP_CHUNK, ck_other_op);
	ck_assert_int_eq(ps_space_unmap(ck, 0, 3 * CK_SIZE, 0), 0);
	disarm();
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_UNMAP_CHUNK]), 2);
	ck_assert_uint_eq(atomic_load(&ck_other_ran), 1);
	ck_assert_uint_eq(atomic_load(&ck_other_bad), 0);
	ck_assert_untouched(0, 3 * CK_PAGES, 0);
	ck_assert_uint_eq(atomic_load(&ck_freed), 1 + 3 * CK_PAGES);
	sem_destroy(&ck_other_done);
}
END_TEST

/*
 * S20: a discard lets the mutex go between chunks too: another thread's map
 * and unmap elsewhere finish inside it; each page's outcome is reported
 * across chunks as in one (a pinned page of the second and of the third
 * chunk skipped, in address order, the rest dropped, each frame freed once).
 */
START_TEST(discard_chunks_let_others_in)
{
	const uint64_t pin_at[2] = {CK_SIZE + 7 * PG, 2 * CK_SIZE + 3 * PG};
	struct ps_discard_skip skip[4];
	uint64_t frames[2], n = 0;

	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, NULL), 0);
	for (unsigned int k = 0; k < 2; k++)
		ck_assert_int_eq(ps_space_pin_range(ck, pin_at[k], PG, 0,
						    &frames[k]),
				 0);
	sem_init(&ck_other_done, 0, 0);
	atomic_store(&ck_other_ran, 0);
	atomic_store(&ck_other_bad, 0);
	arm(FP_DISCARD_CHUNK, ck_other_op);
	ck_assert_int_eq(ps_space_discard(ck, 0, 3 * CK_SIZE, skip, 4, &n), 0);
	disarm();
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_DISCARD_CHUNK]), 2);
	ck_assert_uint_eq(atomic_load(&ck_other_ran), 1);
	ck_assert_uint_eq(atomic_load(&ck_other_bad), 0);
	ck_assert_uint_eq(n, 2);
	for (unsigned int k = 0; k < 2; k++) {
		ck_assert_uint_eq(skip[k].addr, pin_at[k]);
		ck_assert_uint_eq(skip[k].frame, pin_at[k] / PG);
		ck_assert_int_eq(skip[k].reason, PS_DISCARD_PINNED);
		ck_assert(ps_pte_is_present(ck_entry(pin_at[k])));
	}
	ck_assert(ps_pte_is_none(ck_entry(0)));
	ck_assert(ps_pte_is_none(ck_entry(3 * CK_SIZE - PG)));
	/* Every frame but the pinned two, and the other thread's one. */
	ck_assert_uint_eq(atomic_load(&ck_freed), 1 + 3 * CK_PAGES - 2);
	ck_assert_int_eq(ps_space_unpin(ck, frames, 2, 0), 0);
	ck_assert_int_eq(ps_space_unmap(ck, 0, 3 * CK_SIZE, 0), 0);
	ck_assert_uint_eq(atomic_load(&ck_freed), 1 + 3 * CK_PAGES);
	sem_destroy(&ck_other_done);
}
END_TEST

static uint64_t ck_fail_at;

static int ck_inject_nomem(int point, uint64_t addr, uint64_t *len)
{
	(void)len;
	return point == FP_MAP_RUN && addr == ck_fail_at ? -ENOMEM : 0;
}

/*
 * S20, S13: -ENOMEM in the middle chunk of three: the first chunk, installed
 * and visible, goes again, the third is never begun, every claimed frame goes
 * back free without its hook, and a frame that was LIVE (mapped elsewhere)
 * keeps exactly its other mapping's reference.
 */
START_TEST(map_chunks_fail_in_the_middle)
{
	const uint64_t live = 100; /* a frame of the first chunk, mapped */
	uint64_t where = 7;

	ck_assert_int_eq(ps_space_map(ck, 4 * CK_SIZE, live, 0), 0);
	arm(FP_MAP_CHUNK, ck_nothing);
	ck_fail_at = CK_SIZE;
	ps__inject = ck_inject_nomem;
	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, &where),
			 -ENOMEM);
	ps__inject = NULL;
	disarm();
	ck_assert_uint_eq(where, 7); /* -ENOMEM concerns no page */
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 1);
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_TAKEN]), 2);
	for (uint64_t k = 0; k < 3 * CK_PAGES; k++)
		ck_assert_msg(ps_pte_is_none(ck_entry(k * PG)),
			      "page %llu left mapped by a failed map",
			      (unsigned long long)k);
	ck_assert_untouched(0, live, 0);
	ck_assert_untouched((live + 1) * PG, 3 * CK_PAGES - live - 1, live + 1);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(ck, live)), 1);
	ck_assert_uint_eq(atomic_load(&ck_freed), 0);
	/* Nothing left over: the same map succeeds now. */
	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, NULL), 0);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(ck, live)), 2);
}
END_TEST

/* At the first chunk boundary, another map takes a page of the next chunk. */
static void ck_race_in(uint64_t addr)
{
	ck_assert_uint_eq(addr, CK_SIZE);
	ck_assert_int_eq(ps_space_map(ck, CK_SIZE + 5 * PG, CK_FRAMES - 2, 0),
			 0);
}

/*
 * S20: a concurrent map that lands in a later chunk wins: the big map fails
 * -EEXIST at that page, and everything it did goes, the racer's page stays.
 */
START_TEST(map_chunks_race_into_a_later_chunk)
{
	uint64_t where = 0;

	arm(FP_MAP_CHUNK, ck_race_in);
	ck_assert_int_eq(ps_space_map_range(ck, 0, 3 * CK_SIZE, 0, 0, &where),
			 -EEXIST);
	disarm();
	ck_assert_uint_eq(where, CK_SIZE + 5 * PG);
	ck_assert_untouched(0, CK_PAGES + 5, 0);
	ck_assert_untouched(CK_SIZE + 6 * PG, 2 * CK_PAGES - 6, CK_PAGES + 6);
	ck_assert_untouched(CK_SIZE + 5 * PG, 0, 0);
	ck_assert_uint_eq(ps_pte_frame(ck_entry(CK_SIZE + 5 * PG)),
			  CK_FRAMES - 2);
	ck_assert(!ps_page_is_live(ps_space_page(ck, CK_PAGES + 5)));
	ck_assert_uint_eq(atomic_load(&ck_freed), 0);
}
END_TEST

/*
 * An unmap of the installed part waits for the map (S20): started at the
 * first chunk boundary, it finds the whole range mapped when it runs.
 */
static pthread_t ck_unmapper;
static _Atomic(int) ck_unmap_rc = 1;

static void *ck_unmap_first(void *arg)
{
	(void)arg;
	atomic_store(&ck_unmap_rc, ps_space_unmap(ck, 0, 2 * CK_SIZE, 0));
	return NULL;
}

static void ck_start_unmap(uint64_t addr)
{
	(void)addr;
	ck_assert_int_eq(pthread_create(&ck_unmapper, NULL, ck_unmap_first,
					NULL),
			 0);
	/* Give it a chance to run; it must wait for the map however long. */
	for (int i = 0; i < 100; i++)
		sched_yield();
	ck_assert_msg(
		atomic_load(&ck_unmap_rc) == 1,
		"an unmap of an installed chunk did not wait for the map");
}

START_TEST(map_chunks_unmap_waits)
{
	atomic_store(&ck_unmap_rc, 1);
	arm(FP_MAP_CHUNK, ck_start_unmap);
	ck_assert_int_eq(ps_space_map_range(ck, 0, 2 * CK_SIZE, 0, 0, NULL), 0);
	pthread_join(ck_unmapper, NULL); /* it reads the hook: then disarm */
	disarm();
	ck_assert_int_eq(atomic_load(&ck_unmap_rc), 0);
	ck_assert_untouched(0, 2 * CK_PAGES, 0);
	ck_assert_uint_eq(atomic_load(&ck_freed), 2 * CK_PAGES);
}
END_TEST

/*
 * Boundaries: exactly one chunk is one step (no boundary); one chunk and 4
 * KiB, or one chunk from an unaligned start, is two.
 */
START_TEST(map_chunks_boundaries)
{
	arm(FP_MAP_CHUNK, ck_nothing);
	ck_assert_int_eq(ps_space_map_range(ck, 0, CK_SIZE, 0, 0, NULL), 0);
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 0);
	ck_assert_mapped(0, CK_PAGES, 0);

	arm(FP_MAP_CHUNK, ck_nothing);
	ck_assert_int_eq(ps_space_map_range(ck, CK_SIZE, CK_SIZE + PG, CK_PAGES,
					    0, NULL),
			 0);
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 1);
	ck_assert_mapped(CK_SIZE, CK_PAGES + 1, CK_PAGES);

	arm(FP_MAP_CHUNK, ck_nothing);
	ck_assert_int_eq(ps_space_map_range(ck, 2 * CK_SIZE, CK_SIZE,
					    2 * CK_PAGES + 1, 0, NULL),
			 -EEXIST); /* its first page is the previous map's */
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 0);
	ck_assert_int_eq(ps_space_map_range(ck, 3 * CK_SIZE + PG, CK_SIZE,
					    2 * CK_PAGES + 1, 0, NULL),
			 0);
	disarm();
	ck_assert_uint_eq(atomic_load(&fp_hits[FP_MAP_CHUNK]), 1);
	ck_assert_mapped(3 * CK_SIZE + PG, CK_PAGES, 2 * CK_PAGES + 1);
	ck_assert_uint_eq(atomic_load(&ck_freed), 0);
}
END_TEST

/*
 * Two threads: one maps and unmaps a range of two chunks and a page, the
 * other maps and unmaps single pages inside its second chunk and outside it.
 * Every big map either succeeds whole or fails -EEXIST at a page the other
 * held, leaving nothing; every frame's reference count is exact at the end.
 */
struct ck_race {
	_Atomic(int) stop;
	_Atomic(unsigned) small_ok, bad;
	uint64_t iters;
};

static void *ck_small_mapper(void *arg)
{
	struct ck_race *r = arg;
	struct ps_test_rng rng = ps_test_rng_new(1);

	while (!atomic_load(&r->stop)) {
		const uint64_t at =
			ps_test_below(&rng, 2)
				? CK_SIZE + ps_test_below(&rng, CK_PAGES) * PG
				: 4 * CK_SIZE;
		const int rc = ps_space_map(ck, at, CK_FRAMES - 3, 0);

		/* Checked by the main thread (no ck_assert off it). */
		if (rc && rc != -EEXIST)
			atomic_fetch_add(&r->bad, 1);
		if (!rc) {
			atomic_fetch_add(&r->small_ok, 1);
			if (ps_space_unmap(ck, at, PG, 0))
				atomic_fetch_add(&r->bad, 1);
		}
	}
	return NULL;
}

START_TEST(stress_map_chunks_race)
{
	struct ck_race r;
	unsigned ok = 0, failed = 0, freed = 0;
	pthread_t t;

	memset(&r, 0, sizeof(r));
	r.iters = ps_test_stress_size("PS_STRESS_ITERS", 1000000) / 5000;
	if (r.iters < 4)
		r.iters = 4;
	ck_assert_int_eq(pthread_create(&t, NULL, ck_small_mapper, &r), 0);
	for (uint64_t i = 0; i < r.iters; i++) {
		uint64_t where = 0;
		const int rc = ps_space_map_range(ck, 0, 2 * CK_SIZE + PG, 0, 0,
						  &where);

		if (rc) {
			ck_assert_int_eq(rc, -EEXIST);
			ck_assert_uint_ge(where, CK_SIZE);
			failed++;
			continue;
		}
		ok++;
		ck_assert_int_eq(ps_space_unmap(ck, 0, 2 * CK_SIZE + PG, 0), 0);
		freed += 2 * CK_PAGES + 1;
	}
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	freed += atomic_load(&r.small_ok);
	ck_assert_uint_eq(atomic_load(&r.bad), 0);
	ck_assert_uint_eq(atomic_load(&ck_freed), freed);
	ck_assert_untouched(0, 2 * CK_PAGES + 1, 0);
	ck_assert(!ps_page_is_live(ps_space_page(ck, CK_FRAMES - 3)));
	ck_assert_uint_gt(ok + failed, 0);
	ck_assert_uint_gt(atomic_load(&r.small_ok), 0);
}
END_TEST

static Suite *space_suite(void)
{
	Suite *s = suite_create("space");
	TCase *tc;

	tc = ps_test_tcase(s, "create/destroy", 10);
	tcase_add_test(tc, create_rejects_bad_config);
	tcase_add_test(tc, caller_frames_and_busy_destroy);

	tc = ps_test_tcase(s, "map/unmap", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, map_takes_a_reference);
	tcase_add_test(tc, map_carries_frame_protection);
	tcase_add_test(tc, map_refuses_frozen_and_poisoned);
	tcase_add_test(tc, map_range_all_or_nothing);
	tcase_add_test(tc, unmap_invalidates_and_keeps_pinned_frames);
	tcase_add_test(tc, unmap_zap_keeps_markers);

	tc = ps_test_tcase(s, "pins", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pin_and_unpin);
	tcase_add_test(tc, unpin_flags);
	tcase_add_test(tc, write_pin_makes_writable_and_dirty);
	tcase_add_test(tc, pin_range_all_or_nothing);
	tcase_add_test(tc, pin_write_protected);
	tcase_add_test(tc, pin_private_and_poisoned);

	tc = ps_test_tcase(s, "pins with populate", 10);
	tcase_add_checked_fixture(tc, setup_populate, teardown);
	tcase_add_test(tc, pin_populates_missing);
	tcase_add_test(tc, fault_populates);

	tc = ps_test_tcase(s, "secondary map with populate", 10);
	tcase_add_checked_fixture(tc, setup_populate, teardown);
	tcase_add_test(tc, secondary_map_populates_for_its_access);

	tc = ps_test_tcase(s, "discard", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, discard_skips_pinned);
	tcase_add_test(tc, discard_reports_busy_and_frozen);

	tc = ps_test_tcase(s, "faults", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, write_fault_marks_dirty_once);

	tc = ps_test_tcase(s, "secondary map", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, secondary_map_read_and_write);
	tcase_add_test(tc, secondary_map_retries_on_invalidation);
	tcase_add_test(tc, secondary_map_write_protected);

	tc = ps_test_tcase(s, "dirty and harvest", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mark_dirty_and_harvest);
	tcase_add_test(tc, mark_dirty_waits_for_a_locked_frame);
	tcase_add_test(tc, harvest_budget_and_resume);
	tcase_add_test(tc, harvest_reports_write_pinned_until_unpinned);
	tcase_add_test(tc, harvest_rearm_collects_cpu_writes);
	tcase_add_test(tc, harvest_rearm_mixed_registrations);

	tc = ps_test_tcase(s, "write-back", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, writeback_unpinned);
	tcase_add_test(tc, writeback_pinned_modes);
	tcase_add_test(tc, writeback_error_redirties);
	tcase_add_test(tc, writeback_batches_runs);
	tcase_add_test(tc, writeback_batch_leaves_locked_frame_to_the_end);
	tcase_add_test(tc, writeback_callback_may_touch_another_run);
	tcase_add_test(tc, writeback_fn_integrity_of_its_run_is_refused);
	tcase_add_test(tc, writeback_invalidation_nomem_keeps_pages_dirty);
	tcase_add_test(tc, writeback_errors_say_where);

	tc = ps_test_tcase(s, "races (failpoints)", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_pin_backs_out_on_change);
	tcase_add_test(tc, fp_pin_retries_on_freed_frame);
	tcase_add_test(tc, fp_pin_cursor_on_trimmed_leaf);
	tcase_add_test(tc, fp_discard_pin_before_freeze);
	tcase_add_test(tc, fp_discard_pin_while_frozen);
	tcase_add_test(tc, discard_exact_path_frees);

	tc = ps_test_tcase(s, "write fault: dirty before writable", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, write_fault_dirty_before_writable);
	tcase_add_test(tc, fp_fault_frame_changed_under_lock);
	tcase_add_test(tc, fp_fault_page_mapped_meanwhile);
	tcase_add_test(tc, fp_fault_writeback_meanwhile);

	tc = ps_test_tcase(s, "create limits", 30);
	tcase_add_test(tc, create_frame_limit);
	tcase_add_test(tc, create_checks_mutex_init);

	tc = ps_test_tcase(s, "unpin dirty reaches write-back", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, unpin_dirty_read_pin_is_written_back);
	tcase_add_test(tc, pinned_clean_page_stays_watched);
	tcase_add_test(tc, remapped_pinned_frame_is_written_back);
	tcase_add_test(tc, fp_unpin_dirty_during_bounce);

	tc = ps_test_tcase(s, "a clean comes after its dirty hook", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_redirty_hook_before_writeback_ends);
	tcase_add_test(tc, fp_unpin_dirty_marks_under_lock);
	tcase_add_test(tc, fp_mark_dirty_marks_under_lock);
	tcase_add_test(tc, fp_fault_marks_under_lock);
	tcase_add_test(tc, fault_waits_for_lock_outside_section);

	tc = ps_test_tcase(s, "a write goes through after its dirty hook", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_secondary_write_marks_under_lock);
	tcase_add_test(tc, fp_redirty_marks_under_lock);

	tc = ps_test_tcase(s, "discard vs a foreign freeze", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, discard_leaves_a_foreign_freeze);
	tcase_add_test(tc, fp_discard_freeze_after_check);

	tc = ps_test_tcase(s, "map_range rollback", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, map_range_nomem_takes_back_the_failed_run);
	tcase_add_test(tc, map_range_nomem_after_mapped_runs);
	tcase_add_test(tc, map_range_nomem_keeps_wp_markers);
	tcase_add_test(tc, map_range_nomem_keeps_written_markers);

	tc = ps_test_tcase(s, "review regressions", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_writeback_frame_moved);
	tcase_add_test(tc, writeback_holds_frame_during_fn);
	tcase_add_test(tc, fp_writeback_clean_before_invalidate_end);
	tcase_add_test(tc, fp_write_pin_seen_by_bounce);
	tcase_add_test(tc, map_range_nomem_shows_no_entry);
	tcase_add_test(tc, map_range_eexist_shows_no_entry);

	tc = ps_test_tcase(s, "two write-backs of one frame", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_integrity_waits_for_writeback);
	tcase_add_test(tc, fp_clean_skips_writeback);
	tcase_add_test(tc, fp_integrity_waits_for_clean_writeback);
	tcase_add_test(tc, nested_integrity_writeback_is_refused);
	tcase_add_test(tc, fp_clean_writeback_pin_race);

	tc = ps_test_tcase(s, "a failed map's frame", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fp_failed_map_frame_freed_once);
	tcase_add_test(tc, fp_map_install_window_fault_and_mark_wait);
	tcase_add_test(tc, fp_failed_map_install_window_marks_nothing);
	tcase_add_test(tc, fp_failed_map_rollback_invalidates);
	tc = ps_test_tcase(s, "a frame's lifetimes (issue 15)", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, remapped_frame_starts_clean);
	tcase_add_test(tc, fp_fault_unmap_before_mark);
	tcase_add_test(tc, fp_fault_frame_reused_before_hold);
	tcase_add_test(tc, fp_fault_discard_before_mark);
	tcase_add_test(tc, fp_fault_remap_before_writable);
	tcase_add_test(tc, fp_mark_dirty_unmap_before_mark);

	tc = ps_test_tcase(s, "the next write after a harvest (issue 15)", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, harvest_rearm_rearms_every_page);
	tcase_add_test(tc, fp_fault_harvest_before_writable);

	tc = ps_test_tcase(s, "errors say what failed (issue 15)", 10);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pin_range_error_says_where);
	tcase_add_test(tc, map_range_error_says_where);
	tcase_add_test(tc, mark_dirty_outcomes);
	tcase_add_test(tc, write_fault_at_reference_limit);

	tc = ps_test_stress_tcase(s, "stress", 240);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, stress_pin_backs_out);
	tcase_add_test(tc, stress_discard_never_drops_pinned);
	tcase_add_test(tc, stress_dirty_hook_exactly_once);
	tcase_add_test(tc, stress_harvest_never_loses);
	tcase_add_test(tc, stress_writeback_one_at_a_time);
	tcase_add_test(tc, stress_failed_map_frees_once);
	tcase_add_test(tc, stress_harvest_rearm_every_range);
	tcase_add_test(tc, stress_fault_holds_its_frame);

	tc = ps_test_tcase(s, "map in chunks", 60);
	tcase_add_checked_fixture(tc, ck_setup, ck_teardown);
	tcase_add_test(tc, map_chunks_let_others_in);
	tcase_add_test(tc, map_chunks_fail_in_the_middle);
	tcase_add_test(tc, map_chunks_race_into_a_later_chunk);
	tcase_add_test(tc, map_chunks_unmap_waits);
	tcase_add_test(tc, map_chunks_boundaries);
	tcase_add_test(tc, unmap_chunks_let_others_in);
	tcase_add_test(tc, discard_chunks_let_others_in);

	tc = ps_test_stress_tcase(s, "stress map in chunks", 240);
	tcase_add_checked_fixture(tc, ck_setup, ck_teardown);
	tcase_add_test(tc, stress_map_chunks_race);
	return s;
}

PS_TEST_MAIN(space_suite)
