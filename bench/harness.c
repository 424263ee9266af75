// SPDX-License-Identifier: MIT
/* bench/harness.c - see harness.h. */
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_THREADS 64

#ifndef PS_BUILD_TYPE
#define PS_BUILD_TYPE "unknown"
#endif

static void usage(const char *prog, const char *extra_usage)
{
	printf("usage: %s [options]\n"
	       "  --runs N          measured runs per case (default 11)\n"
	       "  --iters N         iterations per run, for every case\n"
	       "  --scale F         multiply every case's iterations by F\n"
	       "  --quick           5 runs, a tenth of the iterations\n"
	       "  --format FMT      text (default), csv or json\n"
	       "  --filter S        only cases whose group or op contains S\n"
	       "%s",
	       prog, extra_usage ? extra_usage : "");
}

static void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];

	snprintf(buf, len, "unknown cpu");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon += 2;
		colon[strcspn(colon, "\n")] = 0;
		snprintf(buf, len, "%s", colon);
		break;
	}
	fclose(f);
}

static void machine_line(const struct bench_opts *o)
{
	struct utsname u;
	char cpu[160];
	time_t now = time(NULL);
	char date[32];

	cpu_model(cpu, sizeof(cpu));
	uname(&u);
	strftime(date, sizeof(date), "%Y-%m-%d", gmtime(&now));
	if (o->format == BENCH_CSV) {
		printf("# machine: %s; %ld cpus; Linux %s; %s; %s build; %s\n",
		       cpu, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		       "cc " __VERSION__, PS_BUILD_TYPE, date);
		printf("bench,group,op,impl,unit,median,min,max,runs,vs_floor,"
		       "vs_peer,peer,ratio_min,ratio_max,peer_ratio_min,"
		       "peer_ratio_max\n");
	} else if (o->format == BENCH_JSON) {
		printf("{\"machine\":{\"cpu\":\"%s\",\"cpus\":%ld,"
		       "\"kernel\":\"%s\",\"compiler\":\"%s\",\"build\":\"%s\","
		       "\"date\":\"%s\"},\"bench\":\"%s\"}\n",
		       cpu, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		       "cc " __VERSION__, PS_BUILD_TYPE, date, o->name);
	} else {
		printf("# machine: %s; %ld cpus; Linux %s; cc %s; "
		       "%s build; %s\n",
		       cpu, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		       __VERSION__, PS_BUILD_TYPE, date);
		printf("# bench-%s: %u runs per case after one warm-up; median "
		       "[min..max] per operation; ratios: median [min..max] of "
		       "per-round ratios where interleaved\n",
		       o->name, o->runs);
	}
	fflush(stdout);
}

void bench_init(struct bench_opts *o, int argc, char **argv, const char *name,
		const char *extra_usage, bench_extra_fn extra, void *ctx)
{
	memset(o, 0, sizeof(*o));
	o->name = name;
	o->runs = 11;
	o->scale = 1.0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int used;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0], extra_usage);
			exit(0);
		} else if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--runs") && v) {
			o->runs = (unsigned)strtoul(v, NULL, 0);
			i++;
		} else if (!strcmp(a, "--iters") && v) {
			o->iters = strtoull(v, NULL, 0);
			i++;
		} else if (!strcmp(a, "--scale") && v) {
			o->scale = strtod(v, NULL);
			i++;
		} else if (!strcmp(a, "--filter") && v) {
			o->filter = v;
			i++;
		} else if (!strcmp(a, "--format") && v) {
			if (!strcmp(v, "csv"))
				o->format = BENCH_CSV;
			else if (!strcmp(v, "json"))
				o->format = BENCH_JSON;
			else if (!strcmp(v, "text"))
				o->format = BENCH_TEXT;
			else {
				fprintf(stderr, "unknown format %s\n", v);
				exit(2);
			}
			i++;
		} else if (extra && (used = extra(a, v, ctx)) > 0) {
			i += used - 1;
		} else {
			fprintf(stderr, "%s: unknown option %s\n", argv[0], a);
			usage(argv[0], extra_usage);
			exit(2);
		}
	}
	if (o->quick && o->runs > 5)
		o->runs = 5;
	if (o->runs == 0)
		o->runs = 1;
	if (o->runs > BENCH_MAX_ROUNDS) {
		fprintf(stderr, "%s: at most %d runs\n", argv[0],
			BENCH_MAX_ROUNDS);
		exit(2);
	}
	machine_line(o);
}

uint64_t bench_iters(const struct bench_opts *o, uint64_t base)
{
	double n;

	if (o->iters)
		return o->iters;
	n = (double)base * o->scale * (o->quick ? 0.1 : 1.0);
	return n < 1 ? 1 : (uint64_t)n;
}

bool bench_selected(const struct bench_opts *o, const char *group,
		    const char *op)
{
	return !o->filter || strstr(group, o->filter) ||
	       (op && strstr(op, o->filter));
}

double bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct bench_stats bench_stats_of(double *s, unsigned n)
{
	struct bench_stats st = {0, 0, 0, n};

	if (!n)
		return st;
	qsort(s, n, sizeof(*s), cmp_double);
	st.min = s[0];
	st.max = s[n - 1];
	st.median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	return st;
}

struct worker {
	pthread_t thread;
	unsigned cpu;
	bench_loop_fn fn;
	void *arg;
	uint64_t iters;
	pthread_barrier_t *barrier;
	double elapsed;
};

static void pin_to(unsigned cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(cpu % (unsigned)(n > 0 ? n : 1), &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *worker_main(void *p)
{
	struct worker *w = p;

	pin_to(w->cpu);
	pthread_barrier_wait(w->barrier);
	w->elapsed = w->fn(w->arg, w->iters);
	return NULL;
}

static double one_run(unsigned nthreads, bench_loop_fn fn, void *const *args,
		      uint64_t iters)
{
	struct worker w[BENCH_MAX_THREADS];
	pthread_barrier_t barrier;
	double sum = 0;

	if (nthreads > BENCH_MAX_THREADS) {
		fprintf(stderr, "at most %d threads\n", BENCH_MAX_THREADS);
		exit(2);
	}
	if (nthreads <= 1) {
		pin_to(0);
		return fn(args[0], iters) / (double)iters;
	}
	pthread_barrier_init(&barrier, NULL, nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct worker){.cpu = i,
				       .fn = fn,
				       .arg = args[i],
				       .iters = iters,
				       .barrier = &barrier};
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			perror("pthread_create");
			exit(1);
		}
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(w[i].thread, NULL);
		sum += w[i].elapsed / (double)iters;
	}
	pthread_barrier_destroy(&barrier);
	return sum / nthreads;
}

struct bench_stats bench_measure(const struct bench_opts *o, unsigned nthreads,
				 bench_loop_fn fn, void *const *args,
				 uint64_t iters)
{
	double *samples = calloc(o->runs, sizeof(*samples));
	struct bench_stats st;

	(void)one_run(nthreads, fn, args, iters); /* warm-up */
	if (!samples) {
		perror("calloc");
		exit(1);
	}
	for (unsigned r = 0; r < o->runs; r++)
		samples[r] = one_run(nthreads, fn, args, iters);
	st = bench_stats_of(samples, o->runs);
	free(samples);
	return st;
}

/* A ratio to print: its median and, if @range, its min..max. */
struct ratio {
	struct bench_stats st;
	bool range;
};

static bool ratio_on(const struct ratio *r)
{
	return r->st.median > 0;
}

static void csv_ratio_range(const struct ratio *r)
{
	if (ratio_on(r) && r->range)
		printf(",%.3f,%.3f", r->st.min, r->st.max);
	else
		printf(",,");
}

/* "key":median and, with a range, "<range>_min" and "<range>_max". */
static void json_ratio(const char *key, const char *range,
		       const struct ratio *r)
{
	if (!ratio_on(r))
		return;
	printf(",\"%s\":%.3f", key, r->st.median);
	if (r->range)
		printf(",\"%s_min\":%.3f,\"%s_max\":%.3f", range, r->st.min,
		       range, r->st.max);
}

static void text_ratio(const struct ratio *r, const char *what)
{
	if (!ratio_on(r))
		return;
	if (r->range)
		printf("  %5.2fx [%.2f..%.2f] %s", r->st.median, r->st.min,
		       r->st.max, what);
	else
		printf("  %5.2fx %s", r->st.median, what);
}

static void emit_row(const struct bench_opts *o, const char *group,
		     const char *op, const char *impl, const char *unit,
		     struct bench_stats st, const struct ratio *vf,
		     const struct ratio *vp, const char *peer)
{
	if (o->format != BENCH_TEXT) /* progress for long runs */
		fprintf(stderr, "  bench-%s: %s / %s / %s: %.2f %s\n", o->name,
			group, op, impl, st.median, unit);
	if (o->format == BENCH_CSV) {
		printf("%s,%s,%s,%s,%s,%.3f,%.3f,%.3f,%u,", o->name, group, op,
		       impl, unit, st.median, st.min, st.max, st.runs);
		if (ratio_on(vf))
			printf("%.3f", vf->st.median);
		printf(",");
		if (ratio_on(vp))
			printf("%.3f", vp->st.median);
		printf(",%s", ratio_on(vp) && peer ? peer : "");
		csv_ratio_range(vf);
		csv_ratio_range(vp);
		printf("\n");
	} else if (o->format == BENCH_JSON) {
		printf("{\"bench\":\"%s\",\"group\":\"%s\",\"op\":\"%s\","
		       "\"impl\":\"%s\",\"unit\":\"%s\",\"median\":%.3f,"
		       "\"min\":%.3f,\"max\":%.3f,\"runs\":%u",
		       o->name, group, op, impl, unit, st.median, st.min,
		       st.max, st.runs);
		json_ratio("vs_floor", "ratio", vf);
		json_ratio("vs_peer", "peer_ratio", vp);
		if (ratio_on(vp))
			printf(",\"peer\":\"%s\"", peer ? peer : "");
		printf("}\n");
	} else {
		printf("%-6s %-14s %-20s %-14s %10.2f [%.2f..%.2f] %s", o->name,
		       group, op, impl, st.median, st.min, st.max, unit);
		text_ratio(vf, "floor");
		text_ratio(vp, peer ? peer : "peer");
		printf("\n");
	}
	fflush(stdout);
}

void bench_emit(const struct bench_opts *o, const char *group, const char *op,
		const char *impl, const char *unit, struct bench_stats st,
		double vs_floor, double vs_peer, const char *peer)
{
	struct ratio vf = {{vs_floor, vs_floor, vs_floor, 1}, false};
	struct ratio vp = {{vs_peer, vs_peer, vs_peer, 1}, false};

	emit_row(o, group, op, impl, unit, st, &vf, &vp, peer);
}

void bench_emit_ratio(const struct bench_opts *o, const char *group,
		      const char *op, const char *impl, const char *unit,
		      struct bench_stats st, struct bench_stats vs_floor,
		      struct bench_stats vs_peer, const char *peer)
{
	struct ratio vf = {vs_floor, true}, vp = {vs_peer, true};

	if (!vs_floor.runs)
		vf.st.median = 0;
	if (!vs_peer.runs)
		vp.st.median = 0;
	emit_row(o, group, op, impl, unit, st, &vf, &vp, peer);
}

void bench_note(const struct bench_opts *o, const char *fmt, ...)
{
	va_list ap;

	if (o->format != BENCH_TEXT)
		return;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static bool target_row(const struct bench_opts *o, const char *what,
		       const struct ratio *v, const char *op, double limit)
{
	double value = v->st.median;
	bool met = op[0] == '<' ? value <= limit : value >= limit;
	char range[64] = "";

	if (v->range)
		snprintf(range, sizeof(range), " [%.2f..%.2f]", v->st.min,
			 v->st.max);
	if (o->format == BENCH_TEXT) {
		printf("# target %-52s %7.2f%s (%s %.2f): %s\n", what, value,
		       range, op, limit, met ? "met" : "MISSED");
	} else if (o->format == BENCH_JSON) {
		printf("{\"bench\":\"%s\",\"target\":\"%s\",\"value\":%.3f",
		       o->name, what, value);
		if (v->range)
			printf(",\"min\":%.3f,\"max\":%.3f", v->st.min,
			       v->st.max);
		printf(",\"op\":\"%s\",\"limit\":%.3f,\"met\":%s}\n", op, limit,
		       met ? "true" : "false");
	}
	fflush(stdout);
	return met;
}

bool bench_target(const struct bench_opts *o, const char *what, double value,
		  const char *op, double limit)
{
	struct ratio v = {{value, value, value, 1}, false};

	return target_row(o, what, &v, op, limit);
}

bool bench_target_ratio(const struct bench_opts *o, const char *what,
			struct bench_stats r, const char *op, double limit)
{
	struct ratio v = {r, true};

	return target_row(o, what, &v, op, limit);
}

/* --- interleaved comparisons ---------------------------------------------- */

/* The threads' arguments of implementation @k. */
static void *const *impl_args(void **argv, unsigned nthreads, void *const *args,
			      const struct bench_impl *im)
{
	if (args)
		return args;
	for (unsigned i = 0; i < nthreads; i++)
		argv[i] = im->arg;
	return argv;
}

void bench_interleave(const struct bench_opts *o, unsigned nthreads,
		      void *const *args, const struct bench_impl *im,
		      unsigned n, uint64_t iters, double scale,
		      struct bench_cmp *c)
{
	void *argv[BENCH_MAX_THREADS];
	double s[BENCH_MAX_ROUNDS];

	if (n < 2 || n > BENCH_MAX_IMPLS || o->runs > BENCH_MAX_ROUNDS ||
	    !nthreads || nthreads > BENCH_MAX_THREADS || !iters) {
		fprintf(stderr,
			"bench_interleave: %u implementations (2..%d), %u "
			"rounds (1..%d), %u threads (1..%d), %llu iterations\n",
			n, BENCH_MAX_IMPLS, o->runs, BENCH_MAX_ROUNDS, nthreads,
			BENCH_MAX_THREADS, (unsigned long long)iters);
		exit(2);
	}
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->rounds = o->runs;
	for (unsigned k = 0; k < n; k++) {
		c->name[k] = im[k].name;
		(void)one_run(nthreads, im[k].fn,
			      impl_args(argv, nthreads, args, &im[k]),
			      iters); /* warm-up */
	}
	for (unsigned r = 0; r < c->rounds; r++) {
		for (unsigned j = 0; j < n; j++) {
			unsigned k = (r + j) % n;

			c->t[k][r] = one_run(nthreads, im[k].fn,
					     impl_args(argv, nthreads, args,
						       &im[k]),
					     iters) *
				     scale;
		}
	}
	for (unsigned k = 0; k < n; k++) {
		memcpy(s, c->t[k], c->rounds * sizeof(*s));
		c->time[k] = bench_stats_of(s, c->rounds);
		c->ratio[k] = bench_cmp_ratio(c, k, 0);
	}
}

struct bench_stats bench_cmp_ratio(const struct bench_cmp *c, unsigned k,
				   unsigned j)
{
	double s[BENCH_MAX_ROUNDS];

	for (unsigned r = 0; r < c->rounds; r++)
		s[r] = c->t[j][r] > 0 ? c->t[k][r] / c->t[j][r] : 0;
	return bench_stats_of(s, c->rounds);
}

void bench_emit_cmp(const struct bench_opts *o, const char *group,
		    const char *op, const char *unit, const struct bench_cmp *c,
		    int peer)
{
	static const struct bench_stats none = {0, 0, 0, 0};

	for (unsigned k = 0; k < c->n; k++) {
		bool vs_peer = peer >= 0 && (unsigned)peer != k;

		bench_emit_ratio(o, group, op, c->name[k], unit, c->time[k],
				 k ? c->ratio[k] : none,
				 vs_peer ? bench_cmp_ratio(c, k, (unsigned)peer)
					 : none,
				 vs_peer ? c->name[peer] : NULL);
	}
}
