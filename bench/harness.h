/* SPDX-License-Identifier: MIT */
/*
 * bench/harness.h - what every benchmark program shares.
 *
 * A benchmark is a program, not a test: it asserts nothing and measures.
 * Machines are noisy, so each case is run --runs times after a discarded
 * warm-up run. The harness reports the median with min and max, and the
 * programs print ratios to a floor and to peers measured in the same run,
 * never a lone absolute time.
 *
 * Output, one result per line, the machine line first:
 *   text   # machine: ...
 *          <bench> <group> <op> <impl>  median min max ns/op  [ratios]
 *   csv    bench,group,op,impl,unit,median,min,max,runs,vs_floor,vs_peer,peer
 *   json   one JSON object per line (JSON Lines)
 *
 * Common options: --runs N, --iters N, --scale F, --quick,
 * --format text|csv|json, --filter SUBSTRING, --help.
 */
#ifndef PS_BENCH_HARNESS_H
#define PS_BENCH_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

enum bench_format { BENCH_TEXT, BENCH_CSV, BENCH_JSON };

struct bench_opts {
	const char *name;	  /* the program, e.g. "page" */
	unsigned runs;		  /* measured runs per case (median of these) */
	double scale;		  /* multiplies every case's iteration count */
	uint64_t iters;		  /* if set, overrides every case's count */
	enum bench_format format; /* output format */
	const char *filter;	  /* run only groups/ops containing this */
	bool quick;		  /* fewer runs and iterations (smoke runs) */
};

struct bench_stats {
	double median, min, max; /* per operation, in the case's unit */
	unsigned runs;
};

/* Extra option hook: return 1 if @arg (with @val, may be NULL) was used,
 * 2 if @val was consumed too, 0 if unknown. */
typedef int (*bench_extra_fn)(const char *arg, const char *val, void *ctx);

/*
 * bench_init() - parse the common options (and the program's own through
 * @extra), then print the machine line. Exits on --help or bad options.
 */
void bench_init(struct bench_opts *o, int argc, char **argv, const char *name,
		const char *extra_usage, bench_extra_fn extra, void *ctx);

/* Iterations for a case whose default is @base, after --scale/--quick. */
uint64_t bench_iters(const struct bench_opts *o, uint64_t base);

/* Should the case (group, op) run, given --filter? */
bool bench_selected(const struct bench_opts *o, const char *group,
		    const char *op);

/* Monotonic time in nanoseconds. */
double bench_now_ns(void);

/*
 * A measured loop: run the operation @iters times on @arg and return the
 * elapsed nanoseconds of the loop (the function times itself, so set-up it
 * does first is not counted).
 */
typedef double (*bench_loop_fn)(void *arg, uint64_t iters);

/*
 * bench_measure() - run @fn on @nthreads threads at once (thread i gets
 * args[i], pinned to CPU i modulo the CPU count), once as warm-up and then
 * o->runs times. Each run's value is the mean over threads of elapsed/iters.
 * Returns the median, min and max of those values.
 */
struct bench_stats bench_measure(const struct bench_opts *o, unsigned nthreads,
				 bench_loop_fn fn, void *const *args,
				 uint64_t iters);

/* Statistics of @n samples (sorted in place). */
struct bench_stats bench_stats_of(double *samples, unsigned n);

/*
 * bench_emit() - print one result. @vs_floor and @vs_peer are ratios of
 * medians (<= 0 to omit). @peer names what vs_peer compares with.
 */
void bench_emit(const struct bench_opts *o, const char *group, const char *op,
		const char *impl, const char *unit, struct bench_stats st,
		double vs_floor, double vs_peer, const char *peer);

/* Print a comment line (text: "# ..."; csv/json: nothing). */
void bench_note(const struct bench_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * bench_target() - print whether a target was met: "@what: @value (target
 * @op @limit): met|MISSED". @op is "<=" or ">=". Returns true if met.
 */
bool bench_target(const struct bench_opts *o, const char *what, double value,
		  const char *op, double limit);

#endif /* PS_BENCH_HARNESS_H */
