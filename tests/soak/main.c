// SPDX-License-Identifier: MIT
/*
 * tests/soak/main.c - the soak (issue 15): every module on one space, as a
 * VMM uses it, with a shadow model and invariant checks. What it checks,
 * how to run it and how to narrow a failure: tests/soak/README.
 *
 * This file: the command line, the set-up (regions, initial mappings,
 * protection, subscriptions), the worker and checker threads, the
 * stop-the-world checkpoints and the tear-down.
 */
#include "soak.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct soak g;
_Thread_local struct thr *self;

/* Relative frequency of each operation (in percent, roughly). */
static const unsigned int weight[NOPS] = {
	[OP_WRITE] = 26,    [OP_READ] = 6,	[OP_PIN] = 9,
	[OP_PROTECT] = 3,   [OP_UNPROTECT] = 2, [OP_HARVEST] = 5,
	[OP_SCAN] = 3,	    [OP_WRITEBACK] = 4, [OP_DISCARD] = 4,
	[OP_UNMAP] = 3,	    [OP_MAP] = 6,	[OP_CONVERT] = 4,
	[OP_KMAP] = 5,	    [OP_SECONDARY] = 8, [OP_CACHE] = 2,
	[OP_MARKDIRTY] = 5, [OP_MPROTECT] = 2,	[OP_HOOKS] = 1,
	[OP_HUGE] = 4,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: soak [--threads N] [--seconds S] [--seed X] "
		"[--check-ms M]\n"
		"            [--ops LIST] [--allow-known LIST] [--pages P] "
		"[--frames F]\n"
		"            [--watchdog S] [--huge H] [--verbose]\n"
		"  --huge H           2 MiB frames of the huge region "
		"(default 2; 0: none)\n"
		"  --ops LIST         operations to run: all (default), or "
		"names separated by\n"
		"                     commas; -name removes one "
		"(\"all,-discard\")\n"
		"  --allow-known LIST defects to tolerate: issue 15's numbers, "
		"or Nn for the\n"
		"                     soak's own finds (it uses the workaround "
		"and keeps\n"
		"                     checking the rest)\n"
		"operations:");
	for (int i = 0; i < NOPS; i++)
		fprintf(f, " %s", op_names[i]);
	fprintf(f, "\nsee tests/soak/README\n");
}

static int op_by_name(const char *s, size_t n)
{
	for (int i = 0; i < NOPS; i++)
		if (strlen(op_names[i]) == n && !strncmp(op_names[i], s, n))
			return i;
	return -1;
}

static int parse_ops(const char *list, uint64_t *ops)
{
	const char *p = list;

	*ops = 0;
	while (*p) {
		size_t n = strcspn(p, ",");
		bool neg = *p == '-';
		int op;

		if (n == 3 && !strncmp(p, "all", 3)) {
			*ops = (UINT64_C(1) << NOPS) - 1;
		} else {
			if (neg && !*ops)
				*ops = (UINT64_C(1) << NOPS) - 1;
			op = op_by_name(p + neg, n - neg);
			if (op < 0) {
				fprintf(stderr,
					"soak: unknown operation "
					"\"%.*s\"\n",
					(int)n, p);
				return -1;
			}
			if (neg)
				*ops &= ~(UINT64_C(1) << op);
			else
				*ops |= UINT64_C(1) << op;
		}
		p += n + (p[n] == ',');
	}
	return *ops ? 0 : -1;
}

static int parse_known(const char *list, uint64_t *known_mask)
{
	for (const char *p = list; *p;) {
		bool is_new = *p == 'N' || *p == 'n';
		char *end;
		unsigned long d = strtoul(p + is_new, &end, 10);

		if (end == p + is_new || d < 1 || d > 31)
			return -1;
		*known_mask |= UINT64_C(1) << (is_new ? NEW(d) : d);
		p = end + (*end == ',');
	}
	return 0;
}

static char *build_cmdline(void)
{
	static char buf[1024];
	size_t n;

	n = (size_t)snprintf(buf, sizeof(buf),
			     "%s --threads %d --seconds %g --seed %#" PRIx64
			     " --check-ms %u --pages %" PRIu64
			     " --huge %" PRIu64 " --ops ",
			     g.cfg.argv0, g.cfg.threads, g.cfg.seconds,
			     g.cfg.seed, g.cfg.check_ms, g.cfg.reg_pages,
			     g.cfg.huge);
	if (g.cfg.ops == (UINT64_C(1) << NOPS) - 1) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "all");
	} else {
		const char *sep = "";

		for (int i = 0; i < NOPS; i++)
			if ((g.cfg.ops >> i) & 1) {
				n += (size_t)snprintf(buf + n, sizeof(buf) - n,
						      "%s%s", sep, op_names[i]);
				sep = ",";
			}
	}
	if (g.cfg.known) {
		const char *sep = "";

		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      " --allow-known ");
		for (int d = 1; d < 64; d++)
			if ((g.cfg.known >> d) & 1) {
				n += (size_t)snprintf(buf + n, sizeof(buf) - n,
						      d < 32 ? "%s%d" : "%sN%d",
						      sep, d < 32 ? d : d - 32);
				sep = ",";
			}
	}
	return buf;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{"threads", required_argument, NULL, 't'},
		{"seconds", required_argument, NULL, 's'},
		{"seed", required_argument, NULL, 'x'},
		{"check-ms", required_argument, NULL, 'c'},
		{"ops", required_argument, NULL, 'o'},
		{"allow-known", required_argument, NULL, 'k'},
		{"pages", required_argument, NULL, 'p'},
		{"frames", required_argument, NULL, 'f'},
		{"watchdog", required_argument, NULL, 'w'},
		{"huge", required_argument, NULL, 'u'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	g.cfg.threads = 4;
	g.cfg.seconds = 10;
	g.cfg.seed = now_ns() ^ ((uint64_t)getpid() << 32);
	g.cfg.check_ms = 250;
	g.cfg.watchdog_s = 10;
	g.cfg.reg_pages = 32;
	g.cfg.huge = 2;
	g.cfg.ops = (UINT64_C(1) << NOPS) - 1;
	g.cfg.argv0 = argv[0];
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			g.cfg.threads = atoi(optarg);
			break;
		case 's':
			g.cfg.seconds = atof(optarg);
			break;
		case 'x':
			g.cfg.seed = strtoull(optarg, NULL, 0);
			break;
		case 'c':
			g.cfg.check_ms = (unsigned int)atoi(optarg);
			break;
		case 'o':
			if (parse_ops(optarg, &g.cfg.ops)) {
				usage(stderr);
				exit(2);
			}
			break;
		case 'k':
			if (parse_known(optarg, &g.cfg.known)) {
				usage(stderr);
				exit(2);
			}
			break;
		case 'p':
			g.cfg.reg_pages = strtoull(optarg, NULL, 0);
			break;
		case 'f':
			g.cfg.nframes = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			g.cfg.watchdog_s = (unsigned int)atoi(optarg);
			break;
		case 'u':
			g.cfg.huge = strtoull(optarg, NULL, 0);
			break;
		case 'v':
			g.cfg.verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || g.cfg.threads < 1 || g.cfg.threads > 64 ||
	    g.cfg.reg_pages < 4 || g.cfg.reg_pages > 4096 ||
	    g.cfg.check_ms < 1 || g.cfg.watchdog_s < 1 || g.cfg.huge > 64) {
		usage(stderr);
		exit(2);
	}
	if (!g.cfg.seed)
		g.cfg.seed = 1;
	g.npages = NREG * g.cfg.reg_pages;
	if (!g.cfg.nframes)
		g.cfg.nframes = 2 * g.npages;
	if (g.cfg.nframes < g.npages) {
		fprintf(stderr,
			"soak: --frames must be at least the %" PRIu64
			" pages\n",
			g.npages);
		exit(2);
	}
	g.cfg.cmdline = build_cmdline();
}

static void page_error(const struct ps_page *page, enum ps_page_error error,
		       uint64_t word)
{
	uint64_t f = (uint64_t)(page - g.frames);

	violation("(b) page-word misuse reported by the library", 0, UINT64_MAX,
		  f < g.cfg.nframes ? f : UINT64_MAX,
		  "the page word's error hook: %s on frame %" PRIu64
		  " (word %#" PRIx64 " as seen); the soak never misuses "
		  "a page, so the library did (or a correct call was blamed)",
		  ps_page_error_name(error), f, word);
}

static void pick_thread_op(struct thr *t)
{
	unsigned int total = 0, r;

	for (int i = 0; i < NOPS; i++)
		if ((g.cfg.ops >> i) & 1)
			total += weight[i];
	r = (unsigned int)rnd_below(t, total);
	for (int i = 0; i < NOPS; i++) {
		if (!((g.cfg.ops >> i) & 1))
			continue;
		if (r < weight[i]) {
			run_op(t, (enum op)i);
			return;
		}
		r -= weight[i];
	}
}

static void park(void)
{
	pthread_barrier_wait(&g.bar_in);
	pthread_barrier_wait(&g.bar_out);
}

static void *worker_main(void *arg)
{
	struct thr *t = arg;

	self = t;
	while (!atomic_load(&g.stop)) {
		if (atomic_load(&g.pause)) {
			park();
			continue;
		}
		pick_thread_op(t);
		if (!(atomic_load(&t->ops_done) & 15))
			limbo_reclaim();
	}
	release_all(t);
	return NULL;
}

static void *checker_main(void *arg)
{
	struct thr *t = arg;

	self = t;
	while (!atomic_load(&g.stop)) {
		struct timespec ts = {0, 2 * 1000 * 1000};

		if (atomic_load(&g.pause)) {
			park();
			continue;
		}
		check_entries_live();
		check_holds_live();
		iommu_sweep();
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void set_up(void)
{
	struct ps_space_config sc;
	uint64_t nf = g.cfg.nframes, space_size, space_frames;
	static const unsigned int reg_flags[NREG] = {
		[REG_SCAN] = PS_WP_ASYNC,
		[REG_ASYNC] = PS_WP_ASYNC,
		[REG_SYNC] = 0,
		[REG_SHARED] = PS_WP_SHARED,
	};

	g.size = g.npages * PG;
	for (int r = 0; r < NREG; r++)
		g.reg_start[r] = (uint64_t)r * g.cfg.reg_pages;
	g.arena = calloc(nf * PG_WORDS, sizeof(*g.arena));
	g.backing = calloc(nf * PG_WORDS, sizeof(*g.backing));
	g.fm = calloc(nf, sizeof(*g.fm));
	g.pm = calloc(g.npages, sizeof(*g.pm));
	/* The huge region's frames and pages come after the model's. */
	space_size = g.size;
	space_frames = nf;
	huge_layout(&space_size, &space_frames);
	g.frames = calloc(space_frames, sizeof(*g.frames));
	if (!g.arena || !g.backing || !g.fm || !g.pm || !g.frames)
		abort();
	pthread_mutex_init(&g.mm_lock, NULL);
	pthread_mutex_init(&g.hold_lock, NULL);
	pthread_mutex_init(&g.epoch_lock, NULL);
	model_init();
	(void)ps_page_set_error_hook(page_error);

	memset(&sc, 0, sizeof(sc));
	sc.size = space_size;
	sc.nframes = space_frames;
	sc.frames = g.frames;
	sc.hooks.populate = hook_populate;
	sc.hooks.dirty = hook_dirty;
	sc.hooks.free_frame = hook_free;
	if (ps_space_create(&sc, &g.sp)) {
		fprintf(stderr, "soak: ps_space_create failed\n");
		exit(3);
	}
	g.pt = ps_space_pgtable(g.sp);
	for (int r = 0; r < REG_UNREG; r++)
		if (ps_pgtable_register(g.pt, g.reg_start[r] * PG,
					g.cfg.reg_pages * PG, reg_flags[r]))
			abort();

	/* Guest RAM: most pages mapped, the rest populated on demand. */
	pthread_mutex_lock(&g.mm_lock);
	for (uint64_t p = 0; p < g.npages; p++) {
		int64_t f;

		if (rnd_below(&g.main_thr, 100) >= 80)
			continue;
		f = alloc_frames(&g.main_thr, 1);
		if (f < 0 || map_locked(p * PG, 1, (uint64_t)f, PS_MAP_WRITE))
			abort();
	}
	pthread_mutex_unlock(&g.mm_lock);
	/* Tracking starts: protect what is registered (async: arm). */
	for (int r = 0; r < REG_UNREG; r++)
		if (ps_pgtable_protect(g.pt, g.reg_start[r] * PG,
				       g.cfg.reg_pages * PG))
			abort();
	huge_init();
	soak_set_prot_hooks(true);
	iommu_init();
}

int main(int argc, char **argv)
{
	pthread_t watchdog;
	uint64_t t_end, astart;
	uint64_t total[NOPS_ALL] = {0}, fails[NOPS_ALL] = {0};

	parse_args(argc, argv);
	g.main_thr.id = g.cfg.threads + 1;
	g.main_thr.rng = g.cfg.seed ^ UINT64_C(0x9e3779b97f4a7c15);
	atomic_store(&g.main_thr.cur_op, -1);
	self = &g.main_thr;
	printf("soak: %s\n", g.cfg.cmdline);
	fflush(stdout);
	set_up();

	g.nthr = g.cfg.threads + 1; /* the workers, then the checker */
	g.thr = calloc((size_t)g.nthr, sizeof(*g.thr));
	g.epoch_snap = calloc((size_t)g.nthr, sizeof(*g.epoch_snap));
	if (!g.thr || !g.epoch_snap)
		abort();
	for (int i = 0; i < g.nthr; i++) {
		struct thr *t = &g.thr[i];

		t->id = i;
		t->rng = g.cfg.seed * (UINT64_C(2) * (uint64_t)i + 3) ^
			 UINT64_C(0xd1b54a32d192ed03);
		if (!t->rng)
			t->rng = 1;
		atomic_store(&t->cur_op, -1);
		vtlb_init(t);
	}
	/* The destination starts with everything: harvest once. */
	astart = g.reg_start[REG_ASYNC] * PG;
	(void)harvest_range(&g.main_thr, astart, g.size - astart, true);
	(void)scan_range(&g.main_thr, 0, g.cfg.reg_pages * PG);

	pthread_barrier_init(&g.bar_in, NULL, (unsigned int)g.nthr + 1);
	pthread_barrier_init(&g.bar_out, NULL, (unsigned int)g.nthr + 1);
	if (pthread_create(&watchdog, NULL, watchdog_main, NULL))
		abort();
	for (int i = 0; i < g.nthr; i++)
		if (pthread_create(&g.thr[i].tid, NULL,
				   i < g.cfg.threads ? worker_main
						     : checker_main,
				   &g.thr[i]))
			abort();

	t_end = now_ns() + (uint64_t)(g.cfg.seconds * 1e9);
	while (now_ns() < t_end) {
		uint64_t left = t_end - now_ns();
		uint64_t ns = (uint64_t)g.cfg.check_ms * 1000000u;
		struct timespec ts;

		if (ns > left)
			ns = left;
		ts.tv_sec = (time_t)(ns / 1000000000u);
		ts.tv_nsec = (long)(ns % 1000000000u);
		nanosleep(&ts, NULL);
		op_begin(&g.main_thr, OP_CHECKPOINT, UINT64_MAX,
			 "waiting for every thread to park");
		atomic_store(&g.pause, true);
		pthread_barrier_wait(&g.bar_in);
		checkpoint(&g.main_thr, false);
		atomic_store(&g.pause, false);
		pthread_barrier_wait(&g.bar_out);
		if (g.cfg.verbose) {
			uint64_t ops = 0;

			for (int i = 0; i < g.cfg.threads; i++)
				for (int k = 0; k < NOPS_ALL; k++)
					ops += g.thr[i].nops[k];
			uint64_t st[8] = {0}, mapped = 0;

			for (uint64_t f = 0; f < g.cfg.nframes; f++)
				st[atomic_load(&g.fm[f].state) & 7]++;
			for (uint64_t p = 0; p < g.npages; p++)
				mapped += atomic_load(&g.pm[p].frame) >= 0;
			printf("soak: checkpoint %" PRIu64 ": %" PRIu64
			       " operations, tick %" PRIu64 ", %" PRIu64
			       " pages mapped; frames free %" PRIu64
			       ", in use %" PRIu64
			       ", awaiting the hook %" PRIu64 "\n",
			       atomic_load(&g.checkpoints), ops,
			       atomic_load(&g.clock), mapped, st[F_FREE],
			       st[F_INUSE], st[F_AWAIT]);
			fflush(stdout);
		}
	}
	atomic_store(&g.stop, true);
	for (int i = 0; i < g.nthr; i++)
		pthread_join(g.thr[i].tid, NULL);

	/* Every pin and CPU map is released: the last checkpoint. */
	checkpoint(&g.main_thr, true);
	for (int i = 0; i < g.nthr; i++)
		vtlb_fini(&g.thr[i]);
	iommu_fini();
	if (ps_space_destroy(g.sp)) {
		fprintf(stderr, "soak: ps_space_destroy failed\n");
		return 3;
	}
	g.sp = NULL;
	check_after_destroy();
	atomic_store(&g.done, true);
	pthread_join(watchdog, NULL);

	for (int i = 0; i < g.cfg.threads; i++)
		for (int k = 0; k < NOPS_ALL; k++) {
			total[k] += g.thr[i].nops[k];
			fails[k] += g.thr[i].nfail[k];
		}
	printf("soak: OK: %" PRIu64 " checkpoints, operations (failed):",
	       atomic_load(&g.checkpoints));
	for (int k = 0; k < NOPS_ALL; k++)
		if (total[k])
			printf(" %s %" PRIu64 " (%" PRIu64 ")", op_names[k],
			       total[k], fails[k]);
	printf("\n");
	huge_report();
	if (g.cfg.verbose) {
		for (int k = 0; k < NOPS_ALL; k++) {
			if (!fails[k])
				continue;
			printf("soak: %s results:", op_names[k]);
			for (int r = 0; r < RC_MAX; r++) {
				uint64_t c = 0;

				for (int i = 0; i < g.cfg.threads; i++)
					c += g.thr[i].nrc[k][r];
				if (c)
					printf(" %d:%" PRIu64, -r, c);
			}
			printf("\n");
		}
	}
	return 0;
}
