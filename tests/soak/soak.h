/* SPDX-License-Identifier: MIT */
/*
 * tests/soak/soak.h - the soak's shared state: configuration, the shadow
 * model, per-thread state and operation logs, and the helpers every part
 * uses. What the soak checks and how to run it: tests/soak/README.
 *
 * The model's atomics are seq_cst unless a comment says otherwise: the soak
 * is a checker, not a fast path, and several of its checks are Dekker-style
 * (a hook and the owner each store, then read the other's flag).
 */
#ifndef SOAK_H
#define SOAK_H

#include <pagestate/pagestate.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define PG_WORDS (PG / sizeof(uint64_t))

/* --- regions ------------------------------------------------------------- */

/*
 * The space is five regions of --pages pages each, in this order. The
 * order matters: the scan region comes first, so that a re-arming space
 * harvest can cover every other region with one range (and take the
 * general path of rearm_into_log()) without re-arming the scan region,
 * whose only consumer is the page-table scan (the uffd-style channel).
 */
enum region {
	REG_SCAN = 0, /* async, anonymous; harvested by WP_MATCHING scans */
	REG_ASYNC,    /* async, anonymous; harvested by space harvests */
	REG_SYNC,     /* sync, anonymous */
	REG_SHARED,   /* sync, PS_WP_SHARED (markers survive zaps) */
	REG_UNREG,    /* not registered */
	NREG,
};

/* What wrote a page (the shadow model's write records). */
enum wkind {
	WK_NONE = 0,
	WK_CPU,	  /* a CPU write through a fault that returned OK */
	WK_IOMMU, /* a device write through the secondary-map helper */
	WK_PIN,	  /* a device write through a pin for write */
	WK_MARK,  /* a device write through a read pin, then mark_dirty */
	WK_ZAP,	  /* an async page discarded or unmapped (issue 15 #8) */
	NWK,
};

/* --- operations ---------------------------------------------------------- */

enum op {
	OP_WRITE,
	OP_READ,
	OP_PIN,
	OP_PROTECT,
	OP_UNPROTECT,
	OP_HARVEST,
	OP_SCAN,
	OP_WRITEBACK,
	OP_DISCARD,
	OP_UNMAP,
	OP_MAP,
	OP_CONVERT,
	OP_KMAP,
	OP_SECONDARY,
	OP_CACHE,
	OP_MARKDIRTY,
	OP_MPROTECT,
	OP_HOOKS,
	OP_HUGE, /* the huge-frame workload (huge.c) */
	NOPS,
	/* Not chosen at random; they appear in logs. */
	OP_UNPIN = NOPS,
	OP_KUNMAP,
	OP_CHECKPOINT,
	OP_POPULATE,
	NOPS_ALL,
};

extern const char *const op_names[NOPS_ALL];

/* --- configuration ------------------------------------------------------- */

struct config {
	int threads;
	double seconds;
	uint64_t seed;
	unsigned int check_ms;
	unsigned int watchdog_s;
	uint64_t reg_pages; /* pages per region */
	uint64_t nframes;
	uint64_t huge;	/* 2 MiB frames of the huge region (huge.c) */
	uint64_t ops;	/* bit per enum op */
	uint64_t known; /* bit per issue-15 defect number allowed */
	bool verbose;
	const char *argv0;
	const char *cmdline; /* to print with a violation */
};

/* --- the shadow model ---------------------------------------------------- */

/* A frame as its owner (the soak's allocator) sees it. */
enum fstate {
	F_FREE = 0, /* in the pool: no hook may run for it */
	F_CLAIMED,  /* taken by a map in flight */
	F_INUSE,    /* mapped, or held; its last put frees it (hook) */
	F_AWAIT,    /* a failed map left it LIVE: the hook will free it */
	F_LIMBO,    /* a failed map left it free: back to the pool at the
		     * next checkpoint (a late hook is issue 15 #4) */
	F_CACHE,    /* taken by the cache-mode operation */
	F_HOOKED,   /* the free hook ran while F_CLAIMED (map in flight) */
};

struct fmodel {
	_Atomic int state;
	_Atomic uint64_t gen;	 /* lifetimes so far */
	_Atomic uint64_t hooks;	 /* dirty hooks in this lifetime */
	_Atomic uint64_t cleans; /* write-back callbacks in this lifetime */
	_Atomic uint64_t frees;	 /* free hooks in this lifetime */
	_Atomic int in_wb;	 /* write-back callbacks running on it */
	_Atomic uint64_t limbo_epoch; /* when it went F_LIMBO */
	/* Ticks of the latest allocation, free hook and dirty hook. */
	_Atomic uint64_t t_alloc, t_free, t_dirty;
};

/* Per page: the latest write and the latest harvest that reported it. */
struct pmodel {
	_Atomic uint64_t w;	 /* tick of the latest recorded write */
	_Atomic int wkind;	 /* its kind */
	_Atomic int wthread;	 /* its thread */
	_Atomic uint64_t h;	 /* tick after the latest report */
	_Atomic uint64_t zapped; /* tick of the latest zap */
	_Atomic int64_t frame;	 /* shadow mapping: frame or -1 (mm_lock) */
};

/* Held pins and CPU maps, for (b) and (d). */
enum hkind { H_PIN = 1, H_KMAP };

struct hold {
	int kind; /* 0: unused */
	int thread;
	uint64_t frame, addr;
	unsigned int flags; /* PS_PIN_* or PS_KMAP_* */
	uint64_t t_acq;	    /* tick after the pin or kmap returned */
	uint64_t t_rel;	    /* tick before unpin or kunmap: 0 while held */
	bool dev_wrote;	    /* read pin written by the device, not yet
			     * unpinned dirty: excluded from the content
			     * check */
};

#define MAX_HOLDS 512
#define MAX_HELD 4 /* pin groups and kmaps a thread holds across ops */
#define MAX_PIN_PAGES 4

/* --- per-thread state ---------------------------------------------------- */

#define LOG_LEN 64
#define RC_MAX 140

struct oplog {
	_Atomic uint64_t tick, addr, frame, aux;
	_Atomic int kind, rc;
};

struct pin_group {
	uint64_t addr, n;
	uint64_t frames[MAX_PIN_PAGES];
	int rec[MAX_PIN_PAGES];
	unsigned int flags;
	bool dev_wrote;
};

struct thr {
	int id;
	uint64_t rng;
	pthread_t tid;
	/* The vCPU's TLB: CPU writes are validated against invalidations. */
	pthread_mutex_t vtlb_lock;
	struct ps_interval vtlb_sub[NREG];
	struct pin_group pins[MAX_HELD];
	int npins;
	uint64_t kmaps[MAX_HELD];
	int kmap_rec[MAX_HELD];
	int nkmaps;
	/* For the dirty hook: the frame the current write looked at. */
	uint64_t probe_addr, probe_frame, probe_gen;
	bool probing;
	/* What the thread is doing (the watchdog prints it). */
	_Atomic int cur_op;
	_Atomic uint64_t cur_addr, cur_tick;
	_Atomic(const char *) cur_phase;
	struct oplog log[LOG_LEN];
	_Atomic uint64_t nlog;
	_Atomic uint64_t ops_done; /* operations completed (limbo epochs) */
	uint64_t nops[NOPS_ALL];
	uint64_t nfail[NOPS_ALL];
	uint64_t nrc[NOPS_ALL][RC_MAX]; /* results -rc, for --verbose */
};

/* --- global state -------------------------------------------------------- */

struct soak {
	struct config cfg;
	struct ps_space *sp;
	struct ps_pgtable *pt;
	struct ps_page *frames; /* caller's page words (outlive the space) */
	uint64_t npages, size;
	uint64_t reg_start[NREG];
	_Atomic uint64_t *arena;   /* frame i: PG_WORDS words at i * PG_WORDS */
	_Atomic uint64_t *backing; /* what write-back wrote, per frame */
	struct fmodel *fm;
	struct pmodel *pm;
	/* Serialises what changes mappings (map, unmap, discard, convert) with
	 * the shadow mapping: held around the library call and the shadow
	 * update. Lock order: mm_lock, then the library's writer mutex, then
	 * the vTLB and IOMMU locks (notifier callbacks), then hold_lock. */
	pthread_mutex_t mm_lock;
	pthread_mutex_t hold_lock;
	struct hold holds[MAX_HOLDS];
	_Atomic uint64_t clock;
	_Atomic uint64_t progress;
	_Atomic int lt_inflight;      /* long-term pins or unpins running */
	_Atomic uint64_t lt_last_end; /* tick when the last one returned */
	_Atomic bool stop, pause, done;
	pthread_barrier_t bar_in, bar_out;
	struct thr *thr; /* cfg.threads workers, then the checker */
	int nthr;
	struct thr main_thr;
	_Atomic bool failed;
	_Atomic uint64_t checkpoints;
	_Atomic bool hooks_on;
	/* Epochs for F_LIMBO frames (model.c). */
	pthread_mutex_t epoch_lock;
	_Atomic uint64_t epoch;
	uint64_t *epoch_snap;
};

extern struct soak g;
extern _Thread_local struct thr *self;

/* --- helpers ------------------------------------------------------------- */

static inline uint64_t tick(void)
{
	return atomic_fetch_add(&g.clock, 1) + 1;
}

static inline uint64_t rnd(struct thr *t)
{
	/* xorshift64*: deterministic per thread from --seed. */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * UINT64_C(2685821657736338717);
}

static inline uint64_t rnd_below(struct thr *t, uint64_t n)
{
	return n ? rnd(t) % n : 0;
}

static inline bool chance(struct thr *t, unsigned int percent)
{
	return rnd_below(t, 100) < percent;
}

/*
 * Defect numbers: 1..31 are issue 15's list; NEW(n), found by the soak
 * and not in the issue, are "Nn" on the command line and in reports.
 */
#define NEW(n) (32 + (n))

static inline bool known(int defect)
{
	return (g.cfg.known >> defect) & 1;
}

static inline uint64_t page_of(uint64_t addr)
{
	return addr / PG;
}

static inline enum region region_of(uint64_t addr)
{
	return (enum region)(page_of(addr) / g.cfg.reg_pages);
}

static inline struct ps_page *pw(uint64_t frame)
{
	return &g.frames[frame];
}

static inline _Atomic uint64_t *frame_words(uint64_t frame)
{
	return g.arena + frame * PG_WORDS;
}

static inline _Atomic uint64_t *backing_words(uint64_t frame)
{
	return g.backing + frame * PG_WORDS;
}

/* A random page of region @r, and a run of up to @max pages inside it. */
uint64_t pick_addr(struct thr *t, enum region r);
uint64_t pick_run(struct thr *t, enum region r, uint64_t max, uint64_t *len);
enum region pick_region(struct thr *t);

/* log.c */
void op_begin(struct thr *t, enum op op, uint64_t addr, const char *phase);
void op_phase(struct thr *t, const char *phase);
void op_end(struct thr *t, enum op op, uint64_t addr, uint64_t frame,
	    uint64_t aux, int rc);
void violation(const char *inv, int defect, uint64_t addr, uint64_t frame,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void watchdog_dump(void);
void *watchdog_main(void *arg);
const char *region_name(enum region r);
const char *wkind_name(int k);

/* model.c */
void model_init(void);
int64_t alloc_frames(struct thr *t, uint64_t n);
void fill_frame(uint64_t frame);
void map_failed(uint64_t frame);
void map_done(uint64_t frame);
void limbo_to_free(void);
void limbo_reclaim(void);
void hook_dirty(void *ctx, struct ps_space *space, uint64_t frame);
void hook_free(void *ctx, struct ps_space *space, uint64_t frame);
int hook_populate(void *ctx, struct ps_space *space, uint64_t addr,
		  unsigned int access);
void record_write(uint64_t addr, enum wkind k);
void record_zap(uint64_t addr, bool dontneed);
void record_report(uint64_t addr, uint64_t t);
bool write_counts(enum region r, enum wkind k);
int hold_add(int kind, uint64_t frame, uint64_t addr, unsigned int flags);
void hold_release(int rec);
void hold_drop(int rec);
void hold_set_dev_wrote(int rec, bool v);
int map_locked(uint64_t addr, uint64_t n, uint64_t first, unsigned int flags);
void device_write(uint64_t frame, uint64_t value);

/* secondary.c */
void iommu_init(void);
void iommu_fini(void);
void iommu_sweep(void);
int iommu_map(struct thr *t, uint64_t addr, bool write);
bool iommu_device_write(struct thr *t, uint64_t addr);
void vtlb_init(struct thr *t);
void vtlb_fini(struct thr *t);
void inval_start(uint64_t start, uint64_t len, enum ps_notifier_event ev);
void inval_end(uint64_t start, uint64_t len);

/* ops.c */
void run_op(struct thr *t, enum op op);
void release_all(struct thr *t);
int harvest_range(struct thr *t, uint64_t start, uint64_t len, bool rearm);
int scan_range(struct thr *t, uint64_t start, uint64_t len);
void soak_set_prot_hooks(bool on);
enum ps_fault soak_resolve_wp_write(uint64_t addr);

/* huge.c */
void huge_layout(uint64_t *size, uint64_t *nframes);
bool huge_frame(uint64_t frame);
void huge_init(void);
void huge_hook_dirty(uint64_t frame);
void huge_hook_free(uint64_t frame);
void op_huge(struct thr *t);
void huge_checkpoint(bool final);
void huge_report(void);

/* check.c */
void check_entries_live(void);
void check_holds_live(void);
void checkpoint(struct thr *t, bool final);
void check_after_destroy(void);

#endif /* SOAK_H */
