// SPDX-License-Identifier: MIT
/*
 * snapshot-chain.c - an incremental snapshot chain and a live migration of
 * one guest at the same time, each a consumer of the space's dirty ledger
 * (pagestate/ledger.h).
 *
 * The guest's RAM is real memory: one anonymous mmap of 64 MiB, whose page f
 * is frame f of a struct ps_space mapped at guest-physical address f * 4096;
 * its upper half is declared as 2 MiB frames, mapped by 2 MiB entries. A
 * writer thread (a vCPU) mutates it, and logs each write after making it
 * (software dirty logging: ps_space_mark_dirty(); the ledger's consumers do
 * not yet see the uffd bridge's async writes, docs/ledger.md "Not yet"). Two
 * consumers run at once:
 *
 *   1. the snapshot chain: S0 is a full copy, then each diff S1, S2, ... is
 *      one harvest of its consumer, copied to the diff's buffer, and
 *      committed only once the diff is written. One capture is interrupted
 *      midway (the pages half copied, then a simulated failure): its harvest
 *      is aborted and its partial diff thrown away; the next diff must still
 *      contain every page the aborted one held;
 *   2. a pre-copy live migration, in its own thread: a bulk copy to the
 *      destination, harvest rounds of its own consumer while the guest
 *      runs, then a final stop-and-copy round once the guest is paused.
 *
 * At the end, with the guest stopped: restoring S0 and the diffs in order
 * reproduces the guest byte for byte, and so does the migration's
 * destination. It prints the pages of each diff and how many were re-sent
 * after the abort, and exits non-zero if an outcome is not the expected one;
 * the test suite runs it (meson test --suite examples). PS_EXAMPLE_REQUESTS
 * scales the writer's pace (the sanitizer builds slow it down).
 */
/*
 * MAP_ANONYMOUS and nanosleep() are outside strict C11 and POSIX: ask for
 * them, so that the README's consumer line (cc -std=c11) builds this file.
 */
#define _DEFAULT_SOURCE

#include <pagestate/pagestate.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* clang-format off */
#define PAGE 4096ull
#define WORDS (PAGE / 8)
#define GUEST_SIZE (64ull << 20)          /* 64 MiB of guest RAM */
#define NFRAMES (GUEST_SIZE / PAGE)
#define HUGE_GPA (32ull << 20)            /* [32, 64) MiB: 2 MiB frames */
#define HOT_PAGES 1024ull                 /* the writer's hot 4 MiB ... */
#define HOT_GPA (30ull << 20)             /* ... across the 2 MiB frames */
#define NDIFFS 6                          /* S1..S6; S6 with the guest paused */
#define INTERRUPTED 3                     /* the capture of S3 fails once */
#define PRECOPY_ROUNDS 4
#define BATCH 4096ull                     /* pages a harvest call returns */
/* clang-format on */

static int failures;

#define EXPECT(cond, ...)                                                 \
	do {                                                              \
		if (!(cond)) {                                            \
			printf("  FAILED (%s:%d): ", __FILE__, __LINE__); \
			printf(__VA_ARGS__);                              \
			printf("\n");                                     \
			failures++;                                       \
		}                                                         \
	} while (0)

static const char *errname(int err)
{
	return err ? strerror(-err) : "ok";
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ------------------------------------------------------------------------ */
/* The guest and its writer                                                 */
/* ------------------------------------------------------------------------ */

static struct ps_space *space;
/*
 * Guest RAM as 64-bit words: the writer, the captures and the migration
 * touch it concurrently, as in a real VMM; atomic accesses make that defined
 * behaviour in C (and visible to TSan).
 */
static _Atomic uint64_t *ram;
static void *ram_host;	      /* the same memory, for memcmp() and munmap() */
static _Atomic bool stopping; /* the guest stops (set by main) */
static _Atomic bool paused;   /* the writer has stopped (main, after join) */
static _Atomic uint64_t writes;
static uint64_t pace = 2000; /* writes between yields */

static void copy_words(_Atomic uint64_t *dst, const _Atomic uint64_t *src)
{
	for (uint64_t w = 0; w < WORDS; w++)
		/* Relaxed: a racing write is marked, and copied again. */
		atomic_store_explicit(
			&dst[w],
			atomic_load_explicit(&src[w], memory_order_relaxed),
			memory_order_relaxed);
}

/*
 * The vCPU: nine writes in ten to a hot 4 MiB that spans 4 KiB and 2 MiB
 * frames, the tenth anywhere. Each write is logged after it is made (vhost's
 * dirty log): a harvest in between copies the page already written, and the
 * mark makes the next one copy it again. Nothing is lost either way.
 */
static void *writer_main(void *arg)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull, n = 0;

	(void)arg;
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		uint64_t r = xorshift(&rng), page;

		page = r % 10 ? HOT_GPA / PAGE + (r >> 8) % HOT_PAGES
			      : (r >> 8) % NFRAMES;
		/* Relaxed: guest memory; the mark and harvest order it. */
		atomic_store_explicit(&ram[page * WORDS + (r >> 40) % WORDS],
				      ++n, memory_order_relaxed);
		if (ps_space_mark_dirty(space, page * PAGE) >
		    PS_SPACE_MARK_WAS_DIRTY) {
			printf("  FAILED: mark of 0x%llx\n",
			       (unsigned long long)(page * PAGE));
			abort();
		}
		if (n % pace == 0)
			sleep_ms(1);
	}
	/* Relaxed: read by main after the join. */
	atomic_store_explicit(&writes, n, memory_order_relaxed);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* The snapshot chain                                                       */
/* ------------------------------------------------------------------------ */

struct diff {
	uint64_t n;
	uint64_t *addrs;	/* the pages, ascending */
	_Atomic uint64_t *data; /* n pages, in that order */
};

static uint64_t batch[BATCH];

/*
 * Harvest every page of the consumer's view: the calls after the first join
 * its open harvest, so one token covers them all. Appends to *d.
 */
static int harvest_all(uint64_t id, struct diff *d, uint64_t *token)
{
	uint64_t at = 0;

	while (at < GUEST_SIZE) {
		uint64_t n = 0;
		int err = ps_ledger_harvest(space, id, at, GUEST_SIZE - at, 0,
					    batch, BATCH, &n, &at, token);

		if (err)
			return err;
		d->addrs = realloc(d->addrs, (d->n + n) * sizeof(uint64_t));
		if (!d->addrs)
			return -ENOMEM;
		memcpy(d->addrs + d->n, batch, n * sizeof(uint64_t));
		d->n += n;
	}
	return 0;
}

/* Write the diff: copy its pages (up to @upto) after the harvest took them. */
static int write_diff(struct diff *d, uint64_t upto)
{
	d->data = malloc(d->n * PAGE + 1);
	if (!d->data)
		return -ENOMEM;
	for (uint64_t i = 0; i < d->n && i < upto; i++)
		copy_words(d->data + i * WORDS, ram + d->addrs[i] / 8);
	return 0;
}

static void drop_diff(struct diff *d)
{
	free(d->addrs);
	free(d->data);
	*d = (struct diff){0};
}

static bool contains(const struct diff *d, uint64_t addr)
{
	uint64_t lo = 0, hi = d->n;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (d->addrs[mid] == addr)
			return true;
		if (d->addrs[mid] < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* The migration                                                            */
/* ------------------------------------------------------------------------ */

struct migration {
	pthread_t tid;
	uint64_t id;
	_Atomic uint64_t *dest;
	void *dest_host;
	uint64_t sent[PRECOPY_ROUNDS + 1];
	int err;
};

/* One round: harvest its own view, copy to the destination, commit. */
static int migration_round(struct migration *m, uint64_t *sent)
{
	uint64_t at = 0, token = 0;
	bool taken = false;
	static uint64_t addrs[BATCH]; /* only the migration thread uses it */

	*sent = 0;
	while (at < GUEST_SIZE) {
		uint64_t n = 0;
		int err = ps_ledger_harvest(space, m->id, at, GUEST_SIZE - at,
					    0, addrs, BATCH, &n, &at, &token);

		if (err)
			return taken ? ps_ledger_abort(space, token), err : err;
		taken = true;
		for (uint64_t i = 0; i < n; i++)
			copy_words(m->dest + addrs[i] / 8, ram + addrs[i] / 8);
		*sent += n;
	}
	/* Sent: the destination acknowledged these pages. */
	return ps_ledger_commit(space, token);
}

static void *migration_main(void *arg)
{
	struct migration *m = arg;

	for (uint64_t p = 0; p < NFRAMES; p++) /* the bulk pass */
		copy_words(m->dest + p * WORDS, ram + p * WORDS);
	for (int r = 0; r < PRECOPY_ROUNDS && !m->err; r++) {
		sleep_ms(15);
		m->err = migration_round(m, &m->sent[r]);
	}
	/* Stop-and-copy. Acquire: pairs with main's release after the join. */
	while (!atomic_load_explicit(&paused, memory_order_acquire))
		sleep_ms(1);
	if (!m->err)
		m->err = migration_round(m, &m->sent[PRECOPY_ROUNDS]);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* The scenario                                                             */
/* ------------------------------------------------------------------------ */

static void *map_anon(void)
{
	void *p = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int main(void)
{
	struct ps_space_config cfg = {.size = GUEST_SIZE, .nframes = NFRAMES};
	static struct diff diffs[NDIFFS + 1]; /* [1..NDIFFS] */
	static struct migration mig;
	_Atomic uint64_t *s0;
	void *s0_host;
	pthread_t writer;
	uint64_t snap, resent = 0, aborted_n = 0;
	const char *env = getenv("PS_EXAMPLE_REQUESTS");
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (env && strtoull(env, NULL, 0) > 0)
		pace = strtoull(env, NULL, 0);
	ram_host = map_anon();
	s0_host = map_anon();
	mig.dest_host = map_anon();
	if (!ram_host || !s0_host || !mig.dest_host) {
		perror("mmap");
		return 1;
	}
	ram = ram_host;
	s0 = s0_host;
	mig.dest = mig.dest_host;
	err = ps_space_create(&cfg, &space);
	if (!err)
		err = ps_space_set_frame_order(space, HUGE_GPA / PAGE,
					       (GUEST_SIZE - HUGE_GPA) / PAGE,
					       PS_SPACE_ORDER_2M);
	if (!err)
		err = ps_space_map_range(space, 0, GUEST_SIZE, 0, PS_MAP_WRITE,
					 NULL);
	if (!err)
		err = ps_ledger_consumer_add(space, PS_LEDGER_CLEAN, &snap);
	if (!err)
		err = ps_ledger_consumer_add(space, PS_LEDGER_CLEAN, &mig.id);
	if (err) {
		printf("setting up the space: %s\n", errname(err));
		return 1;
	}
	printf("[setup] %llu MiB of guest RAM at %p (the upper %llu MiB in "
	       "2 MiB frames); consumers: snapshot chain %llu, migration "
	       "%llu\n",
	       GUEST_SIZE >> 20, ram_host, (GUEST_SIZE - HUGE_GPA) >> 20,
	       (unsigned long long)snap, (unsigned long long)mig.id);

	/* The guest runs; the migration starts. */
	pthread_create(&writer, NULL, writer_main, NULL);
	pthread_create(&mig.tid, NULL, migration_main, &mig);

	/*
	 * S0: a full copy. The consumer was registered before the writer
	 * started, so a page written while (or after) S0 copies it is in
	 * the consumer's view, for S1.
	 */
	for (uint64_t p = 0; p < NFRAMES; p++)
		copy_words(s0 + p * WORDS, ram + p * WORDS);
	printf("[S0] full: %llu pages\n", (unsigned long long)NFRAMES);

	for (int k = 1; k <= NDIFFS; k++) {
		struct diff *d = &diffs[k];
		uint64_t token = 0;

		if (k == NDIFFS) {
			/* The last diff with the guest stopped. */
			atomic_store_explicit(&stopping, true,
					      memory_order_relaxed);
			pthread_join(writer, NULL);
			/* Release: pairs with the migration's acquire. */
			atomic_store_explicit(&paused, true,
					      memory_order_release);
		} else {
			sleep_ms(10);
		}
		if (k == INTERRUPTED) {
			/*
			 * The capture fails midway: half its pages written,
			 * then the disk is full (or the process dies). Abort:
			 * the harvest's pages are dirty again for the chain.
			 */
			struct diff lost = {0};

			err = harvest_all(snap, &lost, &token);
			if (!err)
				err = write_diff(&lost, lost.n / 2);
			EXPECT(!err, "interrupted capture: %s", errname(err));
			err = ps_ledger_abort(space, token);
			EXPECT(!err, "abort: %s", errname(err));
			err = ps_ledger_commit(space, token);
			EXPECT(err == -ESTALE, "commit after abort: %s",
			       errname(err));
			printf("[S%d] capture interrupted after %llu of %llu "
			       "pages: aborted, partial diff discarded\n",
			       k, (unsigned long long)(lost.n / 2),
			       (unsigned long long)lost.n);
			sleep_ms(5);
			/* The retry: every page of the aborted harvest. */
			err = harvest_all(snap, d, &token);
			for (uint64_t i = 0; !err && i < lost.n; i++)
				resent += contains(d, lost.addrs[i]);
			aborted_n = lost.n;
			EXPECT(resent == lost.n,
			       "only %llu of the %llu aborted pages in the "
			       "retry",
			       (unsigned long long)resent,
			       (unsigned long long)lost.n);
			drop_diff(&lost);
		} else {
			err = harvest_all(snap, d, &token);
		}
		if (!err)
			err = write_diff(d, d->n);
		/* Commit only once the diff is safely written. */
		if (!err)
			err = ps_ledger_commit(space, token);
		EXPECT(!err, "S%d: %s", k, errname(err));
		printf("[S%d] diff: %llu pages%s\n", k,
		       (unsigned long long)d->n,
		       k == INTERRUPTED ? " (the retry: the aborted pages "
					  "and those written since)"
		       : k == NDIFFS	? " (guest stopped)"
					: "");
	}
	if (aborted_n)
		printf("    after the abort, %llu of the %llu pages held by "
		       "the failed capture were re-sent in S%d\n",
		       (unsigned long long)resent,
		       (unsigned long long)aborted_n, INTERRUPTED);

	/* The migration's stop-and-copy round runs now the guest is paused. */
	pthread_join(mig.tid, NULL);
	EXPECT(!mig.err, "migration: %s", errname(mig.err));
	printf("[migration] bulk copy, then pre-copy rounds of");
	for (int r = 0; r < PRECOPY_ROUNDS; r++)
		printf(" %llu", (unsigned long long)mig.sent[r]);
	printf(" pages, stop-and-copy %llu pages\n",
	       (unsigned long long)mig.sent[PRECOPY_ROUNDS]);

	/* Restore the chain into S0: S0, then each diff in order. */
	for (int k = 1; k <= NDIFFS; k++)
		for (uint64_t i = 0; i < diffs[k].n; i++)
			copy_words(s0 + diffs[k].addrs[i] / 8,
				   diffs[k].data + i * WORDS);
	EXPECT(!memcmp(s0_host, ram_host, GUEST_SIZE),
	       "the restored chain differs from the guest");
	EXPECT(!memcmp(mig.dest_host, ram_host, GUEST_SIZE),
	       "the migration's destination differs from the guest");
	printf("[check] S0 + S1..S%d restored equals the guest: %s; the "
	       "destination equals the guest: %s (the writer wrote %llu "
	       "times)\n",
	       NDIFFS, memcmp(s0_host, ram_host, GUEST_SIZE) ? "NO" : "yes",
	       memcmp(mig.dest_host, ram_host, GUEST_SIZE) ? "NO" : "yes",
	       (unsigned long long)atomic_load_explicit(&writes,
							memory_order_relaxed));

	/* Teardown: the consumers go, then the space. */
	EXPECT(!ps_ledger_consumer_remove(space, snap), "remove snapshot");
	EXPECT(!ps_ledger_consumer_remove(space, mig.id), "remove migration");
	for (int k = 1; k <= NDIFFS; k++)
		drop_diff(&diffs[k]);
	err = ps_space_destroy(space);
	EXPECT(!err, "destroy: %s", errname(err));
	munmap(ram_host, GUEST_SIZE);
	munmap(s0_host, GUEST_SIZE);
	munmap(mig.dest_host, GUEST_SIZE);
	printf("[done] %s\n", failures ? "FAILED" : "all outcomes as expected");
	return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
