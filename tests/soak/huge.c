// SPDX-License-Identifier: MIT
/*
 * tests/soak/huge.c - the soak's huge-frame workload (issue 16): a region of
 * --huge 2 MiB frames after the five regions of 4 KiB frames, on the same
 * space, registered async with 4 KiB tracking (THP-like: a write to a protected
 * huge entry splits it). One operation, "huge", picks a step: a write fault, a
 * pin of part of a frame (1-3 pages, for write or read) or of a whole frame
 * (ps_space_pin_units()), an unpin, a re-arming harvest, a split or a collapse
 * of a frame's entry (ps_pgtable_split(), _collapse()), a 4 KiB conversion to
 * private and back, a write-back, or a remap of a frame with no pin (unmap,
 * map: the map merges its parts). The steps run under the workload's own lock,
 * so its model is exact, while every other operation of the soak runs on the
 * same space meanwhile (one writer mutex, one notifier, one dirty log).
 *
 * Checked after every step and at every checkpoint (README, "What runs"):
 *  (h1) every page of the region is mapped to its frame (frame of page i is
 *       the region's first frame + i), never writable and write-protected;
 *  (h2) per page, the word that holds its frame's state (ps_space_frame_word():
 *       the whole frame's, or the part's) has references = its mapping +
 *       the pins held on the page, and pins = those pins (a whole-frame pin
 *       counts on every page); no frame is private after a step;
 *  (h3) every write (a write fault that returned OK, a pin for write) is
 *       reported by the next re-arming harvest of the region: a page still
 *       flagged after one is a lost write (a split, a collapse, a merge or a
 *       conversion dropped it);
 *  (h4) a conversion of a page with no pin on it succeeds (no false -EAGAIN
 *       or -EBUSY for pins of other parts of its frame), and makes exactly
 *       that frame private;
 *  (h5) hooks: the dirty hook runs for a frame whose word is LIVE; the free
 *       hook for a frame that no entry maps.
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HP (UINT64_C(1) << PS_SPACE_ORDER_2M) /* pages per 2 MiB frame */
#define HMAX_PINS 8

struct hpin {
	uint64_t addr, n; /* pages: part pins 1..3, a whole pin HP */
	uint64_t nunits;  /* units in @units (a whole pin of split state:
			   * one per part) */
	uint64_t units[HP];
	bool whole, write;
};

static struct {
	pthread_mutex_t lock;
	uint64_t first_page, first_frame, npages;
	unsigned char *flag; /* written, not reported yet (h3) */
	struct hpin pins[HMAX_PINS];
	int npins;
	uint64_t steps[10], fails;
	/* The latest steps (a ring), printed with an (h3) violation. */
	struct {
		unsigned int s;
		uint64_t page, aux;
		int rc;
	} ring[64];
	uint64_t nring, aux;
} H;

static void ring_dump(void)
{
	static const char *const names[10] = {"write",	   "pin part",
					      "pin whole", "unpin",
					      "harvest",   "split",
					      "collapse",  "convert",
					      "writeback", "remap"};
	uint64_t k = H.nring > 64 ? H.nring - 64 : 0;

	fprintf(stderr, "  the huge region's latest steps (page, aux, rc):\n");
	for (; k < H.nring; k++)
		fprintf(stderr, "    %-9s %5" PRIu64 " %#" PRIx64 " %d\n",
			names[H.ring[k % 64].s], H.ring[k % 64].page,
			H.ring[k % 64].aux, H.ring[k % 64].rc);
}

static uint64_t h_addr(uint64_t i)
{
	return (H.first_page + i) * PG;
}

void huge_layout(uint64_t *size, uint64_t *nframes)
{
	if (!g.cfg.huge)
		return;
	/* 2 MiB aligned, in addresses and in frames, after the rest. */
	H.first_page = (*size / PG + HP - 1) & ~(HP - 1);
	H.first_frame = (*nframes + HP - 1) & ~(HP - 1);
	H.npages = g.cfg.huge * HP;
	*size = (H.first_page + H.npages) * PG;
	*nframes = H.first_frame + H.npages;
}

bool huge_frame(uint64_t frame)
{
	return g.cfg.huge && frame >= H.first_frame &&
	       frame < H.first_frame + H.npages;
}

void huge_init(void)
{
	if (!g.cfg.huge)
		return;
	pthread_mutex_init(&H.lock, NULL);
	H.flag = calloc(H.npages, 1);
	if (!H.flag ||
	    ps_space_set_frame_order(g.sp, H.first_frame, H.npages,
				     PS_SPACE_ORDER_2M) ||
	    ps_pgtable_register(g.pt, h_addr(0), H.npages * PG, PS_WP_ASYNC) ||
	    ps_space_map_range(g.sp, h_addr(0), H.npages * PG, H.first_frame,
			       PS_MAP_WRITE, NULL) ||
	    ps_pgtable_protect(g.pt, h_addr(0), H.npages * PG)) {
		fprintf(stderr, "soak: the huge region's set-up failed\n");
		exit(3);
	}
}

/* --- hooks (h5) ---------------------------------------------------------- */

void huge_hook_dirty(uint64_t frame)
{
	if (!ps_page_is_live(ps_space_frame_word(g.sp, frame, NULL)))
		violation("(h5) dirty hook for a huge frame not in use", 0,
			  h_addr(frame - H.first_frame), frame,
			  "dirty(%" PRIu64 "): its word is not LIVE", frame);
}

void huge_hook_free(uint64_t frame)
{
	ps_pte_t e = 0;

	(void)ps_pgtable_get(g.pt, h_addr(frame - H.first_frame), &e);
	if (ps_pte_is_present(e) && ps_pte_frame(e) == frame)
		violation("(h5) free hook for a huge frame still mapped", 0,
			  h_addr(frame - H.first_frame), frame,
			  "free_frame(%" PRIu64 ") while entry %#" PRIx64
			  " maps it",
			  frame, e);
}

/* --- the model's checks (h1..h3) ----------------------------------------- */

/* Pins held on page @i (part pins of it, whole pins of its frame). */
static uint64_t pins_on(uint64_t i, bool *write)
{
	uint64_t n = 0;

	*write = false;
	for (int k = 0; k < H.npins; k++) {
		const struct hpin *p = &H.pins[k];
		const uint64_t a = (p->addr / PG) - H.first_page;

		if (i >= a && i < a + p->n) {
			n++;
			*write |= p->write;
		}
	}
	return n;
}

static void check_region(const char *when)
{
	for (uint64_t i = 0; i < H.npages; i++) {
		const uint64_t f = H.first_frame + i;
		ps_pte_t e = 0;
		bool write;
		const uint64_t pins = pins_on(i, &write);
		struct ps_page *w = ps_space_frame_word(g.sp, f, NULL);
		uint64_t word = ps_page_load(w);

		(void)ps_pgtable_get(g.pt, h_addr(i), &e);
		if (!ps_pte_is_present(e) || ps_pte_frame(e) != f ||
		    (ps_pte_is_writable(e) && ps_pte_uffd_wp(e)))
			violation("(h1) huge region entry", 0, h_addr(i), f,
				  "%s: entry %#" PRIx64 " (frame %" PRIu64
				  " expected, never writable and wp)",
				  when, e, f);
		if (ps_page_refs(w) != 1 + pins || ps_page_pins(w) != pins ||
		    (word & PS_PAGE_PRIVATE))
			violation("(h2) huge frame counts", 0, h_addr(i), f,
				  "%s: word %#" PRIx64 ": %" PRIu64
				  " refs, %" PRIu64 " pins; "
				  "expected %" PRIu64 " and %" PRIu64
				  ", shared",
				  when, word, (uint64_t)ps_page_refs(w),
				  (uint64_t)ps_page_pins(w), 1 + pins, pins);
	}
}

/* A re-arming harvest of the region; then no page may still be flagged. */
static int harvest_check(const char *when)
{
	uint64_t addrs[512], n, at = h_addr(0), end = h_addr(H.npages);
	int rc;

	while (at < end) {
		uint64_t resume = end;

		rc = ps_space_harvest(g.sp, at, end - at, PS_HARVEST_REARM,
				      addrs, 512, &n, &resume);
		if (rc)
			return rc;
		for (uint64_t k = 0; k < n; k++)
			if (addrs[k] >= h_addr(0) && addrs[k] < end)
				H.flag[addrs[k] / PG - H.first_page] = 0;
		at = resume;
	}
	for (uint64_t i = 0; i < H.npages; i++) {
		if (H.flag[i])
			ring_dump();
		if (H.flag[i])
			violation("(h3) a write in the huge region was lost", 0,
				  h_addr(i), H.first_frame + i,
				  "%s: page %" PRIu64 " written (or pinned for "
				  "write) and in no re-arming harvest since",
				  when, i);
	}
	return 0;
}

/* --- steps --------------------------------------------------------------- */

static int wb_count(void *ctx, uint64_t addr, uint64_t frame, bool pinned)
{
	(void)ctx;
	(void)pinned;
	if (!huge_frame(frame) || addr != h_addr(frame - H.first_frame))
		violation("(h1) write-back of a huge page", 0, addr, frame,
			  "write-back called for frame %" PRIu64
			  " at %#" PRIx64,
			  frame, addr);
	return 0;
}

static void unpin_one(int k)
{
	struct hpin *p = &H.pins[k];
	int rc = ps_space_unpin(g.sp, p->units, p->nunits, 0);

	if (rc)
		violation("(h2) unpin in the huge region", 0, p->addr,
			  p->units[0], "ps_space_unpin: %d", rc);
	H.pins[k] = H.pins[--H.npins];
}

static bool frame_pinned(uint64_t fi)
{
	for (int k = 0; k < H.npins; k++)
		if ((H.pins[k].addr / PG - H.first_page) / HP == fi)
			return true;
	return false;
}

static int step(struct thr *t, unsigned int s, uint64_t *addr)
{
	const uint64_t fi = rnd_below(t, g.cfg.huge);  /* the frame */
	const uint64_t i = fi * HP + rnd_below(t, HP); /* a page of it */
	const uint64_t x = h_addr(fi * HP);	       /* its extent */
	struct ps_pgtable_collapse_err err;
	struct ps_writeback_stats st;
	bool write;
	int rc = 0;

	*addr = h_addr(i);
	H.aux = 0;
	switch (s) {
	case 0: /* a CPU write (4 KiB tracking: may split the entry) */
		H.flag[i] = 1;
		if (ps_space_fault(g.sp, h_addr(i), PS_ACCESS_WRITE) !=
		    PS_FAULT_OK)
			rc = -EFAULT;
		break;
	case 1: { /* a pin of part of a frame, held across steps */
		struct hpin *p = &H.pins[H.npins];
		const uint64_t n = 1 + rnd_below(t, 3);
		const uint64_t a = i + n <= H.npages ? i : H.npages - n;

		if (H.npins == HMAX_PINS)
			return 0;
		memset(p, 0, sizeof(*p));
		p->addr = h_addr(a);
		p->n = n;
		H.aux = a << 8 | n;
		p->write = chance(t, 50);
		rc = ps_space_pin_range(g.sp, p->addr, n * PG,
					p->write ? PS_PIN_WRITE : 0, p->units);
		p->nunits = n;
		if (!rc) {
			for (uint64_t k = 0; p->write && k < n; k++)
				H.flag[a + k] = 1;
			H.npins++;
		}
		break;
	}
	case 2: { /* a pin of a whole frame: one unit */
		struct hpin *p = &H.pins[H.npins];
		uint64_t n = 0;

		if (H.npins == HMAX_PINS)
			return 0;
		memset(p, 0, sizeof(*p));
		p->addr = x;
		p->n = HP;
		p->whole = true;
		/* One unit if the frame's state is whole, else its parts. */
		rc = ps_space_pin_units(g.sp, x, HP * PG, 0, p->units, HP, &n);
		p->nunits = n;
		if (!rc && n != 1 && n != HP)
			violation("(h2) whole-frame pin", 0, x, UINT64_MAX,
				  "%" PRIu64 " units for one 2 MiB frame", n);
		if (!rc)
			H.npins++;
		break;
	}
	case 3: /* unpin */
		if (H.npins) {
			const int k = (int)rnd_below(t, (uint64_t)H.npins);

			H.aux = (H.pins[k].addr / PG - H.first_page) << 8 |
				(H.pins[k].n & 0xff);
			unpin_one(k);
		}
		break;
	case 4: /* a re-arming harvest of the whole region (h3) */
		rc = harvest_check("after a harvest");
		break;
	case 5: /* the VMM's eager split of a frame's entry, or of a page */
		rc = ps_pgtable_split(g.pt, chance(t, 50) ? x : h_addr(i),
				      chance(t, 50) ? HP * PG : PG);
		break;
	case 6: /* collapse the frame's entry back: may refuse (-EBUSY) */
		rc = ps_pgtable_collapse(g.pt, x, HP * PG, PS_PGTABLE_ORDER_2M,
					 &err);
		if (rc == -EBUSY)
			rc = 0;
		break;
	case 7: /* a 4 KiB conversion inside the frame, and back (h4) */
		if (pins_on(i, &write))
			return 0;
		rc = ps_prot_convert(g.sp, h_addr(i), PG, PS_ENC_PRIVATE, 0,
				     NULL, NULL);
		if (!rc &&
		    !(ps_page_load(ps_space_frame_word(g.sp, H.first_frame + i,
						       NULL)) &
		      PS_PAGE_PRIVATE))
			violation("(h4) conversion in a huge frame", 0,
				  h_addr(i), H.first_frame + i,
				  "converted to private, the word is not");
		if (!rc)
			rc = ps_prot_convert(g.sp, h_addr(i), PG, PS_ENC_SHARED,
					     0, NULL, NULL);
		if (rc)
			violation("(h4) conversion in a huge frame", 0,
				  h_addr(i), H.first_frame + i,
				  "ps_prot_convert of a page with no pin: %d "
				  "(%d pins held in the region)",
				  rc, H.npins);
		break;
	case 8: /* write-back of the frame (clean: pinned pages stay dirty) */
		rc = ps_space_writeback(g.sp, x, HP * PG,
					chance(t, 50) ? PS_WB_CLEAN
						      : PS_WB_INTEGRITY,
					wb_count, NULL, &st);
		break;
	default: /* remap a frame with no pin: the map merges its parts */
		if (frame_pinned(fi))
			return 0;
		/* munmap: the frame's written state goes with it. */
		rc = ps_space_unmap(g.sp, x, HP * PG, 0);
		memset(&H.flag[fi * HP], 0, HP);
		if (!rc)
			rc = ps_space_map_range(g.sp, x, HP * PG,
						H.first_frame + fi * HP,
						PS_MAP_WRITE, NULL);
		if (!rc && chance(t, 50))
			rc = ps_pgtable_protect(g.pt, x, HP * PG);
		break;
	}
	return rc;
}

void op_huge(struct thr *t)
{
	const unsigned int s = (unsigned int)rnd_below(t, 10);
	uint64_t addr = UINT64_MAX;
	int rc;

	if (!g.cfg.huge)
		return;
	op_begin(t, OP_HUGE, UINT64_MAX, "huge step");
	pthread_mutex_lock(&H.lock);
	rc = step(t, s, &addr);
	H.steps[s]++;
	H.ring[H.nring % 64].s = s;
	H.ring[H.nring % 64].page = addr / PG - H.first_page;
	H.ring[H.nring % 64].aux = H.aux;
	H.ring[H.nring % 64].rc = rc;
	H.nring++;
	if (rc) {
		H.fails++;
		violation("(h) a step in the huge region failed", 0, addr,
			  UINT64_MAX, "step %u: %d", s, rc);
	}
	check_region("after a step");
	pthread_mutex_unlock(&H.lock);
	op_end(t, OP_HUGE, addr, UINT64_MAX, s, rc);
}

/* At a checkpoint (every worker parked): the checks, a harvest; @final
 * releases every pin first. */
void huge_checkpoint(bool final)
{
	if (!g.cfg.huge)
		return;
	pthread_mutex_lock(&H.lock);
	while (final && H.npins)
		unpin_one(H.npins - 1);
	check_region(final ? "at the last checkpoint" : "at a checkpoint");
	if (harvest_check("at a checkpoint"))
		violation("(h3) checkpoint harvest of the huge region", 0,
			  h_addr(0), UINT64_MAX, "ps_space_harvest failed");
	pthread_mutex_unlock(&H.lock);
}

void huge_report(void)
{
	static const char *const names[10] = {"write",	   "pin part",
					      "pin whole", "unpin",
					      "harvest",   "split",
					      "collapse",  "convert",
					      "writeback", "remap"};

	if (!g.cfg.huge)
		return;
	printf("soak: huge region (%" PRIu64 " x 2 MiB):", g.cfg.huge);
	for (int s = 0; s < 10; s++)
		printf(" %s %" PRIu64, names[s], H.steps[s]);
	printf("\n");
}
