// SPDX-License-Identifier: MIT
/*
 * tests/soak/log.c - per-thread operation logs (a ring of the last LOG_LEN
 * operations), violation reports and the watchdog (g): no operation
 * completes for --watchdog seconds, so every thread's state is printed and
 * the soak aborts.
 */
#include "soak.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

const char *const op_names[NOPS_ALL] = {
	[OP_WRITE] = "write",
	[OP_READ] = "read",
	[OP_PIN] = "pin",
	[OP_PROTECT] = "protect",
	[OP_UNPROTECT] = "unprotect",
	[OP_HARVEST] = "harvest",
	[OP_SCAN] = "scan",
	[OP_WRITEBACK] = "writeback",
	[OP_DISCARD] = "discard",
	[OP_UNMAP] = "unmap",
	[OP_MAP] = "map",
	[OP_CONVERT] = "convert",
	[OP_KMAP] = "kmap",
	[OP_SECONDARY] = "secondary",
	[OP_CACHE] = "cache",
	[OP_MARKDIRTY] = "markdirty",
	[OP_MPROTECT] = "mprotect",
	[OP_HOOKS] = "hooks",
	[OP_HUGE] = "huge",
	[OP_UNPIN] = "unpin",
	[OP_KUNMAP] = "kunmap",
	[OP_CHECKPOINT] = "checkpoint",
	[OP_POPULATE] = "populate",
};

const char *region_name(enum region r)
{
	static const char *const names[NREG] = {
		[REG_SCAN] = "scan(async,uffd-style)",
		[REG_ASYNC] = "async",
		[REG_SYNC] = "sync",
		[REG_SHARED] = "sync-shared",
		[REG_UNREG] = "unregistered",
	};

	return (unsigned int)r < NREG ? names[r] : "outside";
}

const char *wkind_name(int k)
{
	static const char *const names[NWK] = {
		[WK_NONE] = "none",
		[WK_CPU] = "cpu-write",
		[WK_IOMMU] = "iommu-write",
		[WK_PIN] = "write-pin-device-write",
		[WK_MARK] = "read-pin-device-write+mark_dirty",
		[WK_ZAP] = "zap(discard/unmap)",
	};

	return (unsigned int)k < NWK ? names[k] : "?";
}

void op_begin(struct thr *t, enum op op, uint64_t addr, const char *phase)
{
	atomic_store(&t->cur_addr, addr);
	atomic_store(&t->cur_tick, tick());
	atomic_store(&t->cur_phase, phase);
	atomic_store(&t->cur_op, (int)op);
}

void op_phase(struct thr *t, const char *phase)
{
	atomic_store(&t->cur_phase, phase);
}

void op_end(struct thr *t, enum op op, uint64_t addr, uint64_t frame,
	    uint64_t aux, int rc)
{
	uint64_t n = atomic_load(&t->nlog);
	struct oplog *l = &t->log[n % LOG_LEN];

	atomic_store_explicit(&l->tick, atomic_load(&g.clock),
			      memory_order_relaxed);
	atomic_store_explicit(&l->addr, addr, memory_order_relaxed);
	atomic_store_explicit(&l->frame, frame, memory_order_relaxed);
	atomic_store_explicit(&l->aux, aux, memory_order_relaxed);
	atomic_store_explicit(&l->kind, (int)op, memory_order_relaxed);
	atomic_store_explicit(&l->rc, rc, memory_order_relaxed);
	atomic_store(&t->nlog, n + 1);
	t->nops[op]++;
	if (rc < 0)
		t->nfail[op]++;
	if (rc <= 0 && rc > -RC_MAX)
		t->nrc[op][-rc]++;
	atomic_store(&t->cur_op, -1);
	atomic_fetch_add(&t->ops_done, 1);
	atomic_fetch_add(&g.progress, 1);
}

static void print_word(FILE *f, uint64_t frame)
{
	uint64_t w;

	if (frame >= g.cfg.nframes)
		return;
	w = ps_page_load(pw(frame));
	fprintf(f,
		"  frame %" PRIu64 ": word 0x%016" PRIx64 " (refs %" PRIu64
		" pins %" PRIu64
		"%s%s%s%s%s%s%s%s%s cache %u), kmaps %u; owner "
		"state %d, lifetime %" PRIu64 " (allocated at tick %" PRIu64
		"), dirty hooks %" PRIu64 " (latest tick %" PRIu64
		"), cleans %" PRIu64 ", frees %" PRIu64 " (latest tick %" PRIu64
		")\n",
		frame, w, ps_page_word_refs(w), ps_page_word_pins(w),
		w & PS_PAGE_LIVE ? " LIVE" : "",
		w & PS_PAGE_DIRTY ? " DIRTY" : "",
		w & PS_PAGE_WRITEBACK ? " WRITEBACK" : "",
		w & PS_PAGE_FROZEN ? " FROZEN" : "",
		w & PS_PAGE_LOCKED ? " LOCKED" : "",
		w & PS_PAGE_WRITE_PINNED ? " WRITE_PINNED" : "",
		w & PS_PAGE_PRIVATE ? " PRIVATE" : "",
		w & PS_PAGE_INACCESSIBLE ? " INACCESSIBLE" : "",
		w & PS_PAGE_POISONED ? " POISONED" : "", ps_page_word_cache(w),
		g.sp ? ps_prot_kmap_count(g.sp, frame) : 0,
		atomic_load(&g.fm[frame].state), atomic_load(&g.fm[frame].gen),
		atomic_load(&g.fm[frame].t_alloc),
		atomic_load(&g.fm[frame].hooks),
		atomic_load(&g.fm[frame].t_dirty),
		atomic_load(&g.fm[frame].cleans),
		atomic_load(&g.fm[frame].frees),
		atomic_load(&g.fm[frame].t_free));
}

static void print_entry(FILE *f, uint64_t addr)
{
	struct pmodel *m;
	ps_pte_t e = 0;

	if (addr >= g.size || !g.sp)
		return;
	m = &g.pm[page_of(addr)];
	(void)ps_pgtable_get(g.pt, addr, &e);
	fprintf(f,
		"  address 0x%" PRIx64 " (page %" PRIu64 ", region %s): entry "
		"0x%016" PRIx64 "%s%s%s%s; shadow frame %" PRId64
		"; last write tick %" PRIu64 " (%s, thread %d), last report "
		"tick %" PRIu64 ", last zap tick %" PRIu64 "\n",
		addr, page_of(addr), region_name(region_of(addr)), e,
		ps_pte_is_present(e) ? " present" : "",
		ps_pte_is_present(e) && ps_pte_is_writable(e) ? " W" : "",
		ps_pte_uffd_wp(e) ? " WP" : "",
		ps_pte_is_marker(e) ? " marker" : "", atomic_load(&m->frame),
		atomic_load(&m->w), wkind_name(atomic_load(&m->wkind)),
		atomic_load(&m->wthread), atomic_load(&m->h),
		atomic_load(&m->zapped));
	if (ps_pte_is_present(e) && ps_pte_frame(e) < g.cfg.nframes)
		print_word(f, ps_pte_frame(e));
}

/* Operations whose log entry covers aux & 0xffff pages from its address. */
static bool is_range_op(int kind)
{
	switch (kind) {
	case OP_PIN:
	case OP_UNPIN:
	case OP_PROTECT:
	case OP_UNPROTECT:
	case OP_HARVEST:
	case OP_SCAN:
	case OP_WRITEBACK:
	case OP_DISCARD:
	case OP_UNMAP:
	case OP_MAP:
	case OP_CONVERT:
	case OP_MPROTECT:
		return true;
	default:
		return false;
	}
}

static void print_thread(FILE *f, struct thr *t, uint64_t addr, uint64_t frame,
			 unsigned int tail)
{
	uint64_t n = atomic_load(&t->nlog);
	uint64_t first = n > LOG_LEN ? n - LOG_LEN : 0;
	int cur = atomic_load(&t->cur_op);
	const char *phase = atomic_load(&t->cur_phase);

	fprintf(f, " thread %d: ", t->id);
	if (cur >= 0 && cur < NOPS_ALL)
		fprintf(f,
			"in %s at 0x%" PRIx64 " since tick %" PRIu64 " (%s)\n",
			op_names[cur], atomic_load(&t->cur_addr),
			atomic_load(&t->cur_tick), phase ? phase : "");
	else
		fprintf(f, "between operations\n");
	for (uint64_t i = first; i < n; i++) {
		struct oplog *l = &t->log[i % LOG_LEN];
		uint64_t la = atomic_load_explicit(&l->addr,
						   memory_order_relaxed);
		uint64_t lf = atomic_load_explicit(&l->frame,
						   memory_order_relaxed);
		uint64_t aux = atomic_load_explicit(&l->aux,
						    memory_order_relaxed);
		int kind = atomic_load_explicit(&l->kind, memory_order_relaxed);
		bool hit = (addr != UINT64_MAX &&
			    (la == addr ||
			     (is_range_op(kind) && la <= addr &&
			      addr < la + (aux & 0xffff) * PG))) ||
			   (frame != UINT64_MAX && lf == frame);

		if (!hit && i + tail < n)
			continue;
		fprintf(f,
			"  %c tick %8" PRIu64 " %-10s addr 0x%06" PRIx64
			" frame %6" PRId64 " aux %#" PRIx64 " rc %d\n",
			hit ? '*' : ' ',
			atomic_load_explicit(&l->tick, memory_order_relaxed),
			(unsigned int)kind < NOPS_ALL ? op_names[kind] : "?",
			la, lf == UINT64_MAX ? (int64_t)-1 : (int64_t)lf, aux,
			atomic_load_explicit(&l->rc, memory_order_relaxed));
	}
}

static uint64_t frame_of_addr(uint64_t addr)
{
	ps_pte_t e = 0;

	if (addr >= g.size || ps_pgtable_get(g.pt, addr, &e) ||
	    !ps_pte_is_present(e))
		return UINT64_MAX;
	return ps_pte_frame(e);
}

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

void violation(const char *inv, int defect, uint64_t addr, uint64_t frame,
	       const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&g.failed, true)) {
		for (;;)
			pause(); /* another thread reports; it exits */
	}
	pthread_mutex_lock(&print_lock);
	fflush(stdout);
	fprintf(stderr, "\nsoak: VIOLATION of invariant %s\n  ", inv);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (defect > 0 && defect < 32)
		fprintf(stderr,
			"  likely issue 15 defect #%d (--allow-known %d "
			"tolerates it and keeps checking the rest)\n",
			defect, defect);
	else if (defect >= 32)
		fprintf(stderr,
			"  likely defect N%d, found by the soak, not in issue "
			"15 (see tests/soak/README; --allow-known N%d "
			"tolerates it)\n",
			defect - 32, defect - 32);
	else
		fprintf(stderr, "  not one of issue 15's listed defects "
				"(NEW), or a bug in the soak's model\n");
	fprintf(stderr, "  tick %" PRIu64 ", thread %d\n",
		atomic_load(&g.clock), self ? self->id : -1);
	if (addr != UINT64_MAX)
		print_entry(stderr, addr);
	if (frame != UINT64_MAX &&
	    (addr == UINT64_MAX || !g.sp || frame_of_addr(addr) != frame))
		print_word(stderr, frame);
	fprintf(stderr,
		"  seed %#" PRIx64 "; reproduce: %s\n"
		"  operation logs (oldest first; * = involves the address or "
		"frame; aux: pages in the low 16 bits, then flags):\n",
		g.cfg.seed, g.cfg.cmdline);
	for (int i = 0; i < g.nthr; i++)
		print_thread(stderr, &g.thr[i], addr, frame, 6);
	print_thread(stderr, &g.main_thr, addr, frame, 2);
	fflush(stderr);
	_exit(1);
}

void watchdog_dump(void)
{
	fprintf(stderr,
		"\nsoak: WATCHDOG: no operation completed for %u "
		"seconds (g: a deadlock or livelock)\n",
		g.cfg.watchdog_s);
	fprintf(stderr, "  seed %#" PRIx64 "; reproduce: %s\n", g.cfg.seed,
		g.cfg.cmdline);
	for (int i = 0; i < g.nthr; i++)
		print_thread(stderr, &g.thr[i], UINT64_MAX, UINT64_MAX, 8);
	print_thread(stderr, &g.main_thr, UINT64_MAX, UINT64_MAX, 4);
	fflush(stderr);
}

void *watchdog_main(void *arg)
{
	uint64_t last = UINT64_MAX;
	unsigned int idle = 0;

	(void)arg;
	while (!atomic_load(&g.done)) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		uint64_t p;

		nanosleep(&ts, NULL);
		p = atomic_load(&g.progress);
		if (p != last) {
			last = p;
			idle = 0;
			continue;
		}
		if (++idle < g.cfg.watchdog_s * 10)
			continue;
		if (atomic_exchange(&g.failed, true))
			return NULL;
		pthread_mutex_lock(&print_lock);
		watchdog_dump();
		abort();
	}
	return NULL;
}
