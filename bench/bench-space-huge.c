// SPDX-License-Identifier: MIT
/*
 * bench/bench-space-huge.c - frames of three sizes (issue 16, design step 2).
 *
 *   metadata           bytes of metadata per TiB (ps_space_stats(): page
 *                      words, table, bitmaps, resident only) of a 1 TiB space
 *                      whose frames are all 2 MiB frames, then all 1 GiB
 *                      frames, mapped whole with PS_MAP_WRITE; and, for
 *                      scale, 4 KiB frames measured on 4 GiB and multiplied
 *                      by 256;
 *   map 1 GiB          ps_space_map_range() of 1 GiB (then an unmap, outside
 *                      the time): 4 KiB frames (floor) against 2 MiB frames,
 *                      per GiB;
 *   pin 1 GiB          pin_range + unpin of 1 GiB: 4 KiB frames through
 *                      ps_space_pin_range()/ps_space_unpin() (floor) against
 *                      2 MiB frames through ps_space_pin_units()/
 *                      ps_space_unpin(), per GiB.
 *
 * Comparisons are interleaved round by round (bench_interleave()); ratios are
 * medians [min..max] of per-round ratios.
 *
 * Targets (issue 16): metadata of whole 2 MiB frames <= 16 MiB per TiB, of 1
 * GiB frames <= 64 KiB per TiB; map and pin_range+unpin per GiB with 2 MiB
 * frames <= 1/100 of the 4 KiB cost (printed as 4 KiB / 2 MiB >= 100).
 */
#include <pagestate/space.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)
#define PG PS_PGTABLE_PAGE_SIZE

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench-space-huge: %s: %d\n", what, rc);
	exit(1);
}

/* A space of @size bytes and as many frames, of @order (0: 4 KiB). */
static struct ps_space *make_space(uint64_t size, unsigned int order)
{
	struct ps_space_config cfg;
	struct ps_space *s;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = size;
	cfg.nframes = size / PG;
	rc = ps_space_create(&cfg, &s);
	if (rc)
		die("ps_space_create", rc);
	if (order) {
		rc = ps_space_set_frame_order(s, 0, cfg.nframes, order);
		if (rc)
			die("ps_space_set_frame_order", rc);
	}
	return s;
}

/* Metadata bytes per TiB of a space of @size mapped whole with @order. */
static double metadata_per_tib(uint64_t size, unsigned int order,
			       struct ps_space_stats *st)
{
	struct ps_space *s = make_space(size, order);
	int rc = ps_space_map_range(s, 0, size, 0, PS_MAP_WRITE, NULL);

	if (rc)
		die("ps_space_map_range", rc);
	rc = ps_space_stats(s, st);
	if (rc)
		die("ps_space_stats", rc);
	(void)ps_space_destroy(s);
	return (double)st->metadata_bytes * (double)(TIB / size);
}

static void metadata(const struct bench_opts *o)
{
	static const struct {
		const char *name;
		uint64_t size;
		unsigned int order;
		double target;
	} c[] = {
		{"2 MiB frames", TIB, PS_SPACE_ORDER_2M, 16.0 * 1024 * 1024},
		{"1 GiB frames", TIB, PS_SPACE_ORDER_1G, 64.0 * 1024},
		{"4 KiB frames (4 GiB x 256)", 4 * GIB, PS_SPACE_ORDER_4K, 0},
	};

	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct ps_space_stats st;
		double b = metadata_per_tib(c[i].size, c[i].order, &st);
		const double k = (double)(TIB / c[i].size);

		bench_note(o,
			   "metadata per TiB, %s: %.0f bytes (words 4K %.0f, "
			   "2M %.0f, 1G %.0f; table %.0f; bitmaps %.0f)",
			   c[i].name, b, st.words_bytes[0] * k,
			   st.words_bytes[1] * k, st.words_bytes[2] * k,
			   st.pgtable_bytes * k, st.bitmap_bytes * k);
		if (c[i].target > 0) {
			char what[80];

			snprintf(what, sizeof(what), "metadata per TiB, %s",
				 c[i].name);
			bench_target(o, what, b, "<=", c[i].target);
		}
	}
}

/* --- map ------------------------------------------------------------------ */

struct map_arg {
	struct ps_space *s;
};

/* Map 1 GiB, timed; unmap it, untimed. */
static double map_loop(void *arg, uint64_t iters)
{
	struct map_arg *a = arg;
	double t = 0;

	for (uint64_t i = 0; i < iters; i++) {
		double t0 = bench_now_ns();
		int rc = ps_space_map_range(a->s, 0, GIB, 0, PS_MAP_WRITE,
					    NULL);

		t += bench_now_ns() - t0;
		if (rc)
			die("map", rc);
		rc = ps_space_unmap(a->s, 0, GIB, 0);
		if (rc)
			die("unmap", rc);
	}
	return t;
}

/* --- pin ------------------------------------------------------------------ */

struct pin_arg {
	struct ps_space *s;
	uint64_t *out, max;
	bool units;
};

static double pin_loop(void *arg, uint64_t iters)
{
	struct pin_arg *a = arg;
	double t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t n = GIB / PG;
		int rc = a->units ? ps_space_pin_units(a->s, 0, GIB, 0, a->out,
						       a->max, &n)
				  : ps_space_pin_range(a->s, 0, GIB, 0, a->out);

		if (rc)
			die("pin", rc);
		(void)ps_space_unpin(a->s, a->out, n, 0);
	}
	return bench_now_ns() - t0;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_stats map_r = {0}, pin_r = {0};
	static struct bench_cmp c;

	bench_init(&o, argc, argv, "space-huge", NULL, NULL, NULL);

	if (bench_selected(&o, "metadata", "per TiB"))
		metadata(&o);

	if (bench_selected(&o, "map 1 GiB", "map_range")) {
		struct map_arg a4 = {make_space(GIB, 0)};
		struct map_arg a2 = {make_space(GIB, PS_SPACE_ORDER_2M)};
		const struct bench_impl im[] = {
			{"4 KiB frames", map_loop, &a4},
			{"2 MiB frames", map_loop, &a2},
		};

		bench_interleave(&o, 1, NULL, im, 2, bench_iters(&o, 3), 1e-3,
				 &c);
		bench_emit_cmp(&o, "map 1 GiB", "map_range", "us/GiB", &c, -1);
		map_r = bench_cmp_ratio(&c, 0, 1); /* 4 KiB / 2 MiB */
		(void)ps_space_destroy(a4.s);
		(void)ps_space_destroy(a2.s);
	}

	if (bench_selected(&o, "pin 1 GiB", "pin_range+unpin")) {
		struct pin_arg a4 = {make_space(GIB, 0), NULL, GIB / PG, false};
		struct pin_arg a2 = {make_space(GIB, PS_SPACE_ORDER_2M), NULL,
				     GIB / PG, true};
		const struct bench_impl im[] = {
			{"4 KiB frames", pin_loop, &a4},
			{"2 MiB frames", pin_loop, &a2},
		};
		int rc = ps_space_map_range(a4.s, 0, GIB, 0, PS_MAP_WRITE,
					    NULL);

		if (!rc)
			rc = ps_space_map_range(a2.s, 0, GIB, 0, PS_MAP_WRITE,
						NULL);
		if (rc)
			die("map", rc);
		a4.out = calloc(GIB / PG, sizeof(uint64_t));
		a2.out = calloc(GIB / PG, sizeof(uint64_t));
		if (!a4.out || !a2.out)
			die("calloc", -1);
		bench_interleave(&o, 1, NULL, im, 2, bench_iters(&o, 3), 1e-3,
				 &c);
		bench_emit_cmp(&o, "pin 1 GiB", "pin_range+unpin", "us/GiB", &c,
			       -1);
		pin_r = bench_cmp_ratio(&c, 0, 1); /* 4 KiB / 2 MiB */
		free(a4.out);
		free(a2.out);
		(void)ps_space_destroy(a4.s);
		(void)ps_space_destroy(a2.s);
	}

	if (map_r.runs)
		bench_target_ratio(&o, "map per GiB, 4 KiB / 2 MiB frames",
				   map_r, ">=", 100);
	if (pin_r.runs)
		bench_target_ratio(&o,
				   "pin_range+unpin per GiB, 4 KiB / 2 MiB "
				   "frames",
				   pin_r, ">=", 100);
	return 0;
}
