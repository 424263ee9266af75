// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-history.c - the record of ended invalidations (lib/history.h)
 * against a brute-force model: every end kept in an array, by number.
 *
 * The first byte sets the cap on runs (max_runs: from 4 * PS__HIST_LOG, so
 * that merges drop old runs early, up to the default) and where the end
 * numbers start (at 1, or just before they wrap past 2^57 - 1). Then the
 * input is a program; an operation is one byte, its low two bits choosing
 * it, more bytes following where it needs them:
 *
 *   end      one end, of a range drawn from two small windows (at 0 and at
 *            UINT64_MAX, where ranges overlap, nest and touch), of a page,
 *            or of anything
 *   burst    up to 256 ends in a pattern (one page again and again,
 *            ascending pages, nested ranges, the windows): a few fill a
 *            tier and merge it, and pass a low cap
 *   ask      a question from any past end number over a range: YES and NO
 *            must be the model's answer; FORGOTTEN only once something was
 *            forgotten (a failed allocation or the cap)
 *   fail     make the k-th allocation from now fail (the scratch, a ring's
 *            envelope, a version, a merge of a tier, the cap's cut): the
 *            merge forgets the ring's ends and nothing else changes
 *
 * After every merge ps__hist_check() (order, joins, newest stamps, tiers,
 * each level older than the one before it, the cap), and at the end every
 * address of both windows asked from four ages. Any disagreement aborts.
 */
#include "../lib/history.h"
#include "../lib/rcu.h"

#include "fuzz-check.h"
#include "fuzz-input.h"
#include "fuzz-leaks.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WIDTH 57 /* the notifier's */
#define MASK ((UINT64_C(1) << WIDTH) - 1)
#define MAXE (1u << 14) /* ends per input, at most: tiers 0 and 1 */

static struct ps__hist hist;
static uint64_t first; /* the number of the first end */
static uint64_t mstart[MAXE], mlast[MAXE];
static unsigned int nends;

/* --- allocations that fail on demand -------------------------------------- */

static unsigned int fail_in; /* 0: none; k: the k-th allocation fails */

static void *fuzz_alloc(size_t size)
{
	if (fail_in && --fail_in == 0)
		return NULL;
	return malloc(size);
}

/* --- the model ------------------------------------------------------------ */

static uint64_t num(unsigned int i)
{
	return (first + i) & MASK;
}

static void do_end(uint64_t s, uint64_t l)
{
	struct ps__hist_shape sh;

	if (nends == MAXE)
		return;
	if (s > l) {
		uint64_t x = s;

		s = l;
		l = x;
	}
	mstart[nends] = s;
	mlast[nends] = l;
	ps__hist_add(&hist, num(nends), s, l);
	nends++;
	if (nends % PS__HIST_LOG != 1)
		return; /* no merge: the levels did not change */
	CHECK(ps__hist_check(&hist, &sh) == 0);
	CHECK(sh.runs <= hist.max_runs || ps__hist_forgotten(&hist));
}

/* Ends with index >= @i0 (e0 = the number before it), up to the latest. */
static void do_ask(unsigned int i0, uint64_t s, uint64_t l)
{
	enum ps__hist_answer a;
	bool want = false;

	if (!nends)
		return;
	if (s > l) {
		uint64_t x = s;

		s = l;
		l = x;
	}
	for (unsigned int i = i0; i < nends && !want; i++)
		want = mstart[i] <= l && s <= mlast[i];
	a = ps__hist_query(&hist, (num(i0) - 1) & MASK, num(nends - 1), s, l);
	if (a == PS__HIST_FORGOTTEN)
		CHECK(ps__hist_forgotten(&hist) > 0);
	else
		CHECK(a == (want ? PS__HIST_YES : PS__HIST_NO));
}

/* --- input decoding ------------------------------------------------------- */

/* An address: the low window, the high window, a page, or anything. */
static uint64_t addr(struct in *in)
{
	uint8_t k = u8(in);

	switch (k >> 6) {
	case 0:
		return k & 31;
	case 1:
		return UINT64_MAX - (k & 31);
	case 2:
		return (uint64_t)(k & 63) << 12;
	default:
		return raw64(in);
	}
}

/* A last for @s: short mostly, sometimes long, sometimes anything. */
static uint64_t last_for(struct in *in, uint64_t s)
{
	uint8_t k = u8(in);
	uint64_t len = k >> 6 == 3 ? raw64(in) : k >> 6 == 2 ? 4095 : k & 15;

	return s + len < s ? UINT64_MAX : s + len;
}

static void burst(struct in *in, uint8_t op)
{
	unsigned int count = 1 + u8(in);
	uint64_t base = addr(in);

	for (unsigned int i = 0; i < count; i++) {
		uint64_t s, l;

		switch ((op >> 2) & 3) {
		case 0: /* one page, again and again */
			s = base;
			l = base + 4095;
			break;
		case 1: /* ascending pages */
			s = base + ((uint64_t)i << 12);
			l = s + 4095;
			break;
		case 2: /* nested around base */
			s = base - i;
			l = base + i;
			break;
		default: /* the windows, scrambled */
			s = (i * 7u) % 29;
			l = s + (i % 5);
			if (i & 1) {
				uint64_t x = UINT64_MAX - l;

				l = UINT64_MAX - s;
				s = x;
			}
			break;
		}
		if (l < s) /* wrapped: still a range */
			l = UINT64_MAX;
		do_end(s, l);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};
	uint8_t setup = u8(&in);
	uint64_t caps[4] = {4 * PS__HIST_LOG, 6 * PS__HIST_LOG,
			    16 * PS__HIST_LOG, PS__HIST_MAX_RUNS};

	first = setup & 0x80 ? MASK - 300 : 1;
	ps__hist_init(&hist, WIDTH, first - 1);
	hist.max_runs = caps[setup & 3];
	hist.alloc = fuzz_alloc;
	fail_in = 0;
	nends = 0;
	while (in.at < in.n) {
		uint8_t op;
		uint64_t s;

		fz_at = in.at;
		op = u8(&in);
		fz_op = op & 3;
		switch (op & 3) {
		case 0:
			s = addr(&in);
			do_end(s, last_for(&in, s));
			break;
		case 1:
			burst(&in, op);
			break;
		case 2:
			s = addr(&in);
			do_ask(nends ? (unsigned int)(raw64(&in) % (nends + 1))
				     : 0,
			       s, last_for(&in, s));
			break;
		default:
			fail_in = 1 + (op >> 2);
			break;
		}
	}
	/* Every address of both windows, from four ages. */
	for (unsigned int q = 0; q < 4; q++)
		for (uint64_t a = 0; a < 40; a++) {
			do_ask(q * nends / 3, a, a);
			do_ask(q * nends / 3, UINT64_MAX - a, UINT64_MAX - a);
		}
	ps__hist_destroy(&hist);
	return 0;
}
