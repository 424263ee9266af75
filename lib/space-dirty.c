// SPDX-License-Identifier: MIT
/*
 * lib/space-dirty.c - dirty marks and the dirty log: ps_space_mark_dirty(),
 * ps_space_redirty(), ps_space_harvest() (with REARM: the written entries
 * of async-registered ranges). The space's rules: lib/space-impl.h.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-space.c as S5 and S6)
 * ---------------------------------------------------------------------------
 *
 * S5  Exactly-once dirty hook. DIRTY is set only by ps_page_test_and_set
 *     (ps__space_mark_frame_dirty(), lib/space-impl.h): the one caller that
 *     sees it clear runs the hook. The secondary-map helper
 *     (lib/space-secondary.c) marks only after its retry check, under the
 *     caller's lock, and only for a write. Write-back
 *     (lib/space-writeback.c) clears DIRTY inside its PROTECTION
 *     invalidation, before invalidate_end: a helper that the end lets
 *     through marks after the clear, so a writable secondary mapping never
 *     covers a clean frame. (The helper takes no LOCKED bit: its callbacks
 *     run under LOCKED in write-back.)
 *
 * S6  Harvest never loses a mark. The dirty log is a three-level bitmap
 *     (lib/hbitmap.h): a mark made concurrently with a harvest is shown by it
 *     or stays for the next. A page pinned for write is kept in the log while
 *     its pins last, so every harvest until after the unpin reports it (discard
 *     never unmaps a pinned page, S10 in lib/space-discard.c, so no harvest
 *     finds such a page missing). With REARM, written entries of async ranges
 *     move into the log via the page table's get-and-rearm scan (its G7: a
 *     write racing the scan is reported by it or by the next one).
 */
#include <pagestate/space.h>

#include "hbitmap.h"
#include "space-impl.h"

#include <string.h>

/* --- marks ----------------------------------------------------------------------- */

void ps__space_log_addr(struct ps_space *s, uint64_t addr)
{
	ps__space_log_written(s, addr);
}

bool ps_space_mark_dirty(struct ps_space *s, uint64_t addr)
{
	ps_pte_t e;
	bool made;

	if ((addr & (PAGE_SIZE - 1)) || addr >= s->size ||
	    ps_pgtable_get(s->pt, addr, &e) || !ps_pte_is_present(e) ||
	    ps_pte_frame(e) >= s->nframes)
		return false;
	made = ps__space_mark_frame_dirty(s, ps_pte_frame(e));
	ps__space_log_written(s, addr);
	return made;
}

int ps_space_redirty(struct ps_space *s, const uint64_t *addrs, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if ((addrs[i] & (PAGE_SIZE - 1)) || addrs[i] >= s->size)
			return -EINVAL;
		(void)ps__hbm_set(&s->log, ps__space_page_index(addrs[i]));
	}
	return 0;
}

/* --- harvest (S6) ---------------------------------------------------------------- */

/* ps_pgtable_harvest()'s callback: a run of written pages, into the log. */
static void rearm_log_run(void *ctx, uint64_t start, uint64_t end)
{
	struct ps_space *s = ctx;

	ps__hbm_set_range(&s->log, ps__space_page_index(start),
			  ps__space_page_index(end - start));
}

/* Written entries of [start, end), re-armed as reported, into the log. */
static int rearm_region(struct ps_space *s, uint64_t start, uint64_t end,
			unsigned int check)
{
	return ps_pgtable_harvest(s->pt, start, end - start, check,
				  rearm_log_run, s);
}

/*
 * Move the written entries of the async-registered parts of a range into
 * the log, re-protecting them (the page table's get-and-rearm scan).
 *
 * The common case, a range inside one async registration (a bridge's
 * attachment, a guest RAM region), needs no search for registrations: the
 * registration of the first page says async, and the get-and-rearm scan
 * with PS_SCAN_CHECK_WPASYNC checks the rest before it changes anything
 * (-EPERM or -ENOENT: then the general path). The general path finds the
 * async regions with a report scan, which reads every entry of the range
 * (0.13 ms a GiB), where the scan of written pages reads only hinted lines.
 */
static int rearm_into_log(struct ps_space *s, uint64_t start, uint64_t end)
{
	struct ps_pgtable_region reg[64];
	struct ps_pgtable_scan q;
	unsigned int flags;

	if (!ps_pgtable_registration(s->pt, start, &flags) &&
	    (flags & PS_WP_ASYNC)) {
		int rc = rearm_region(s, start, end, PS_SCAN_CHECK_WPASYNC);

		if (rc != -EPERM && rc != -ENOENT)
			return rc;
	}
	/* Pass 1: the registered async regions (report only). */
	for (uint64_t at = start; at < end;) {
		long n;

		memset(&q, 0, sizeof(q));
		q.start = at;
		q.end = end;
		q.category_mask = PS_CAT_WPALLOWED;
		q.return_mask = PS_CAT_WPALLOWED;
		q.vec = reg;
		q.vec_len = 64;
		n = ps_pgtable_scan(s->pt, &q);
		if (n < 0)
			return (int)n;
		for (long i = 0; i < n; i++) {
			/* Pass 2: written pages there, re-armed as reported. */
			int rc = rearm_region(s, reg[i].start, reg[i].end, 0);

			if (rc)
				return rc;
		}
		at = q.walk_end;
	}
	return 0;
}

struct harvest_ctx {
	struct ps_space *s;
	uint64_t *addrs;
	uint64_t max, n;
};

static enum ps__hbm_verdict harvest_visit(void *ctx, uint64_t bit)
{
	struct harvest_ctx *h = ctx;
	uint64_t addr = bit << PAGE_SHIFT;
	bool keep = false;
	ps_pte_t e;

	if (h->n == h->max)
		return PS__HBM_STOP; /* kept, shown again on resume */
	h->addrs[h->n++] = addr;
	/*
	 * A page pinned for write stays dirty while its pins last (S6). The
	 * harvest holds the page table's read-side section across the visits
	 * (no hook runs here), so this is a bare lookup.
	 */
	e = ps_pgtable_lookup(h->s->pt, addr);
	if (ps_pte_is_present(e) && ps_pte_frame(e) < h->s->nframes) {
		struct ps_page *p = &h->s->frames[ps_pte_frame(e)];
		uint64_t w = ps_page_load(p);

		keep = ps__space_write_pinned(w);
		if ((w & PS_PAGE_WRITE_PINNED) && !keep)
			ps__space_clear_write_pinned(p);
	}
	return keep ? PS__HBM_KEEP : PS__HBM_CLEAR;
}

/* Tear down secondary mappings of the harvested pages, run by run. */
static void invalidate_harvested(struct ps_space *s, const uint64_t *addrs,
				 uint64_t n)
{
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i + 1;

		while (j < n && addrs[j] == addrs[j - 1] + PAGE_SIZE)
			j++;
		if (!ps_notifier_invalidate_start(&s->notifier, addrs[i],
						  (j - i) << PAGE_SHIFT,
						  PS_NOTIFIER_SOFT_DIRTY, 0))
			(void)ps_notifier_invalidate_end(&s->notifier, addrs[i],
							 (j - i) << PAGE_SHIFT);
		i = j;
	}
}

int ps_space_harvest(struct ps_space *s, uint64_t start, uint64_t len,
		     unsigned int flags, uint64_t *addrs, uint64_t max,
		     uint64_t *count, uint64_t *resume)
{
	struct harvest_ctx h = {s, addrs, max, 0};
	uint64_t resume_bit;

	if (!ps__space_range_ok(s, start, len) || !addrs || !max || !count ||
	    (flags & ~PS_HARVEST_REARM))
		return -EINVAL;
	if (flags & PS_HARVEST_REARM) {
		int rc = rearm_into_log(s, start, start + len);

		if (rc)
			return rc;
	}
	ps_pgtable_read_lock();
	(void)ps__hbm_harvest(&s->log, ps__space_page_index(start),
			      ps__space_page_index(len), harvest_visit, &h,
			      &resume_bit);
	ps_pgtable_read_unlock();
	if (flags & PS_HARVEST_REARM)
		invalidate_harvested(s, addrs, h.n);
	*count = h.n;
	if (resume)
		*resume = resume_bit << PAGE_SHIFT;
	return 0;
}
