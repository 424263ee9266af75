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
		       "vs_peer,peer\n");
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
		       "[min..max] per operation\n",
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

void bench_emit(const struct bench_opts *o, const char *group, const char *op,
		const char *impl, const char *unit, struct bench_stats st,
		double vs_floor, double vs_peer, const char *peer)
{
	if (o->format != BENCH_TEXT) /* progress for long runs */
		fprintf(stderr, "  bench-%s: %s / %s / %s: %.2f %s\n", o->name,
			group, op, impl, st.median, unit);
	if (o->format == BENCH_CSV) {
		printf("%s,%s,%s,%s,%s,%.3f,%.3f,%.3f,%u,", o->name, group, op,
		       impl, unit, st.median, st.min, st.max, st.runs);
		if (vs_floor > 0)
			printf("%.3f", vs_floor);
		printf(",");
		if (vs_peer > 0)
			printf("%.3f", vs_peer);
		printf(",%s\n", vs_peer > 0 && peer ? peer : "");
	} else if (o->format == BENCH_JSON) {
		printf("{\"bench\":\"%s\",\"group\":\"%s\",\"op\":\"%s\","
		       "\"impl\":\"%s\",\"unit\":\"%s\",\"median\":%.3f,"
		       "\"min\":%.3f,\"max\":%.3f,\"runs\":%u",
		       o->name, group, op, impl, unit, st.median, st.min,
		       st.max, st.runs);
		if (vs_floor > 0)
			printf(",\"vs_floor\":%.3f", vs_floor);
		if (vs_peer > 0)
			printf(",\"vs_peer\":%.3f,\"peer\":\"%s\"", vs_peer,
			       peer ? peer : "");
		printf("}\n");
	} else {
		printf("%-6s %-14s %-20s %-14s %10.2f [%.2f..%.2f] %s", o->name,
		       group, op, impl, st.median, st.min, st.max, unit);
		if (vs_floor > 0)
			printf("  %5.2fx floor", vs_floor);
		if (vs_peer > 0)
			printf("  %5.2fx %s", vs_peer, peer ? peer : "peer");
		printf("\n");
	}
	fflush(stdout);
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

bool bench_target(const struct bench_opts *o, const char *what, double value,
		  const char *op, double limit)
{
	bool met = op[0] == '<' ? value <= limit : value >= limit;

	if (o->format == BENCH_TEXT)
		printf("# target %-52s %7.2f (%s %.2f): %s\n", what, value, op,
		       limit, met ? "met" : "MISSED");
	else if (o->format == BENCH_JSON)
		printf("{\"bench\":\"%s\",\"target\":\"%s\",\"value\":%.3f,"
		       "\"op\":\"%s\",\"limit\":%.3f,\"met\":%s}\n",
		       o->name, what, value, op, limit, met ? "true" : "false");
	fflush(stdout);
	return met;
}
