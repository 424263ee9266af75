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
 * Comparisons are interleaved (bench_interleave()): every implementation of
 * one operation runs once per round, in an order that rotates from round to
 * round, so a noisy stretch of the shared machine hits all of them alike.
 * Each round gives one ratio of every implementation to the first (the
 * floor); a ratio is reported as the median of those per-round ratios with
 * their min..max, and targets are judged on that median. A ratio of two
 * medians taken in separate loops (bench_measure() twice) is not a
 * comparison: the two loops saw different machines.
 *
 * Output, one result per line, the machine line first:
 *   text   # machine: ...
 *          <bench> <group> <op> <impl>  median [min..max] ns/op
 *                  [ratio [min..max]x floor] [ratio [min..max]x peer]
 *          # target <what>  ratio [min..max] (<= limit): met|MISSED
 *   csv    bench,group,op,impl,unit,median,min,max,runs,vs_floor,vs_peer,
 *          peer,ratio_min,ratio_max,peer_ratio_min,peer_ratio_max
 *          (ratio_* are the min and max of the per-round ratios to the
 *          floor and to the peer; empty where not measured interleaved)
 *   json   one JSON object per line (JSON Lines), the same fields; a target
 *          line has "value" (the median) and, for an interleaved ratio,
 *          "min" and "max"
 *
 * Common options: --runs N, --iters N, --scale F, --quick,
 * --format text|csv|json, --filter SUBSTRING, --help.
 */
#ifndef PS_BENCH_HARNESS_H
#define PS_BENCH_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

/* Limits of bench_interleave(): implementations per case, rounds per case. */
#define BENCH_MAX_IMPLS 8
#define BENCH_MAX_ROUNDS 256

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
 * @op @limit): met|MISSED". @op is "<=" or ">=". Returns true if met. For a
 * ratio measured interleaved use bench_target_ratio(), which also prints the
 * ratio's min..max.
 */
bool bench_target(const struct bench_opts *o, const char *what, double value,
		  const char *op, double limit);

/* --- interleaved comparisons ---------------------------------------------- */

/* One implementation of the operation a case compares. */
struct bench_impl {
	const char *name; /* its column, e.g. "floor", "pagestate" */
	bench_loop_fn fn; /* the measured loop (times itself) */
	void *arg;	  /* its argument (see bench_interleave()'s @args) */
};

/*
 * The result of bench_interleave(). t[k][r] is implementation k's time per
 * operation in round r (ns, times the case's scale); time[k] summarises it.
 * ratio[k] summarises t[k][r] / t[0][r] over the rounds (ratio[0] is 1).
 */
struct bench_cmp {
	unsigned n, rounds;
	const char *name[BENCH_MAX_IMPLS];
	double t[BENCH_MAX_IMPLS][BENCH_MAX_ROUNDS];
	struct bench_stats time[BENCH_MAX_IMPLS];
	struct bench_stats ratio[BENCH_MAX_IMPLS];
};

/*
 * bench_interleave() - measure @n (2..BENCH_MAX_IMPLS) implementations of
 * one operation interleaved, the first being the floor the others are
 * compared with.
 * @o:        options (o->runs rounds, at most BENCH_MAX_ROUNDS).
 * @nthreads: threads per run, all started together (as bench_measure():
 *            thread i is pinned to CPU i modulo the CPU count; a run's time
 *            is the mean over threads).
 * @args:     NULL: every thread of implementation k gets im[k].arg; else
 *            thread i of every implementation gets args[i].
 * @im:       the implementations; im[0] is the floor.
 * @n:        how many.
 * @iters:    iterations of each loop per run.
 * @scale:    multiplies ns per operation into the case's unit (1 for ns/op,
 *            1e-3 for us, NPAGES for ns per page of a whole-range loop ...).
 * @c:        receives the samples and their statistics.
 *
 * First every implementation runs once, untimed (warm-up). Then each of
 * o->runs rounds runs every implementation once, starting with
 * implementation (round mod @n) and going round, so that none always runs
 * first or right after a particular other. A round's ratio of implementation
 * k is its time divided by the floor's time in the same round. Exits on
 * bad arguments (a benchmark's bug).
 */
void bench_interleave(const struct bench_opts *o, unsigned nthreads,
		      void *const *args, const struct bench_impl *im,
		      unsigned n, uint64_t iters, double scale,
		      struct bench_cmp *c);

/*
 * bench_cmp_ratio() - the statistics of the per-round ratio of
 * implementation @k to implementation @j of @c (t[k][r] / t[j][r]).
 */
struct bench_stats bench_cmp_ratio(const struct bench_cmp *c, unsigned k,
				   unsigned j);

/*
 * bench_emit_cmp() - print each implementation of @c: its median [min..max]
 * in @unit, its ratio to the floor as "median [min..max]x floor" and, when
 * @peer is not -1, its ratio to implementation @peer, printed the same way.
 */
void bench_emit_cmp(const struct bench_opts *o, const char *group,
		    const char *op, const char *unit, const struct bench_cmp *c,
		    int peer);

/*
 * bench_emit_ratio() - bench_emit() for a row whose ratios are per-round
 * statistics: @vs_floor and @vs_peer (runs == 0 to omit) are printed as
 * "median [min..max]".
 */
void bench_emit_ratio(const struct bench_opts *o, const char *group,
		      const char *op, const char *impl, const char *unit,
		      struct bench_stats st, struct bench_stats vs_floor,
		      struct bench_stats vs_peer, const char *peer);

/*
 * bench_target_ratio() - bench_target() for a ratio measured interleaved:
 * judged on @r's median, printed as "median [min..max]". Returns true if met.
 */
bool bench_target_ratio(const struct bench_opts *o, const char *what,
			struct bench_stats r, const char *op, double limit);

#endif /* PS_BENCH_HARNESS_H */
