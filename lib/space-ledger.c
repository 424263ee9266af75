// SPDX-License-Identifier: MIT
/*
 * lib/space-ledger.c - the dirty ledger (pagestate/ledger.h): consumers of
 * the space's dirty log, each with its own pending and in-flight sets, and
 * harvests that are transactions. The design: docs/ledger.md. The space's
 * rules: lib/space-impl.h; the log's: S5, S6, S11 in lib/space-dirty.c.
 *
 * ---------------------------------------------------------------------------
 * Protocol (cited by tests/test-ledger.c as C1..C4)
 * ---------------------------------------------------------------------------
 *
 * C1  Nothing in transit. Marks go to the space's one log, as before. A
 *     harvest of any consumer first drains the log's marks of its range:
 *     under the ledger's drain mutex it takes them through the log's one take
 *     (ps__space_log_take(), lib/space-impl.h: each mark by a seq_cst RMW, A0
 *     in lib/hbitmap.h, the same take the harvest makes) and sets each in the
 *     pending set of every registered consumer (release RMWs, S0..S2 of the
 *     bitmap), then unlocks. The set of registered consumers changes only under
 *     that mutex. So for a consumer C and a mark M whose log bit is set after C
 *     was registered, M's bit is, at any instant outside a drain, in the log,
 *     in C's pending set, in C's in-flight set, or was reported by a harvest C
 *     committed; and a harvest of C, which drains under the mutex before it
 *     takes, finds a mark completed before it began in C's pending set (the
 *     mutex orders the drain that moved it before this take). The take is
 *     the log's with units (L1..L4 in lib/space-log.c): a unit mark is shown
 *     once and set as every page of its extent in each pending set (the sets
 *     are at 4 KiB), and kept while a page of it is pinned for write, by the
 *     harvest's own look (ps__space_log_verdict(), S6). A page pinned for
 *     write keeps its log bit (S6), so every drain hands it to every consumer
 *     again: it is reported to each while it is pinned.
 *
 * C2  Transactions. A consumer's harvest takes up to @max entries from its
 *     pending set (the bitmap's acquire take, A0; with PS_HARVEST_UNITS an
 *     aligned 2 MiB or 1 GiB extent wholly pending is one entry, taken whole
 *     under the consumer's mutex, which the default consumer's take holds too:
 *     its set then only gains bits meanwhile) and sets them in its in-flight
 *     set before it returns; its token names the consumer and a serial never
 *     given before. Commit clears the in-flight set; abort takes its bits and
 *     sets them in the pending set, where every mark made meanwhile already is
 *     (an OR: a page both in flight and marked again is pending once). Harvest,
 *     commit, abort and remove of one consumer hold its mutex, so none sees the
 *     in-flight set half moved, and a harvest while one is open joins it (same
 *     token). Together with C1: after every commit, the consumer's committed
 *     harvests plus its pending and in-flight sets (plus the log) cover every
 *     mark made since it was registered; nothing is lost, and nothing is
 *     reported to another consumer because of this one (each has its own sets).
 *
 * C3  Re-arm. S11 with "take" read as "drain, then take from pending": the
 *     drain that moves P's mark reads L's release, so it comes after the CAS
 *     C that opened the path; the consumer's take from pending reads the
 *     drain's set (release, acquire), so its re-arm (PS_HARVEST_REARM, or the
 *     caller's protect after the harvest) comes after C, and acts on C's
 *     entry or a later one. A write through C's entry before any re-arm
 *     after C is in the copy the consumer makes after its harvest returns. The
 *     async ranges' get-and-rearm scan runs once per REARM harvest, before
 *     the drain, and serves every consumer (G7: written state and re-arm
 *     atomically per page). A page reported to K consumers is re-armed by
 *     each (the second finds it armed). A unit the drain moved (C1) is
 *     covered as by L2 and L3: the drain's take reads the unit mark's
 *     release and releases the pending bits it sets; a unit entry taken
 *     whole from pending is re-armed over its extent after that take. The
 *     scan is the harvest's own (ps__space_rearm_into_log()): a range that
 *     starts or ends inside a huge leaf tracked whole is widened to it.
 *
 * C4  The default consumer and the ledger's birth. ps_space_harvest() and
 *     ps_space_redirty() read s->ledger inside the page table's read-side
 *     section; while it is NULL they take from (set) the log itself. The first
 *     ps_ledger_consumer_add() publishes the ledger (release store; the
 *     readers acquire), waits for a grace period (ps__rcu_synchronize()), then
 *     marks it ready; no consumer is registered before that, so every take
 *     that read NULL has finished before any consumer can be handed a mark,
 *     and no mark logged after a registration is taken by the old path.
 *     After publication the default consumer drains and takes from its own
 *     pending set, and is committed at once (no in-flight set); a take
 *     through either path during the grace period belongs to the default
 *     consumer, the only one registered then.
 *
 * Initially set (docs/ledger.md): a consumer registered with
 * PS_LEDGER_INITIALLY_SET has a zero-filled bitmap of one bit per 2 MiB chunk
 * (512 pages), "materialised". A harvest walks its range in ascending order:
 * the pages before the next chunk not materialised are taken from pending as
 * usual; that chunk's pages are then all set in pending and the chunk marked
 * (under the consumer's mutex: its only writer), and the walk goes on, until
 * the range or the budget ends. A chunk whose pages are in pending is
 * materialised, so none is reported twice by this rule.
 */
#include <pagestate/ledger.h>

#include "hbitmap.h"
#include "rcu.h"
#include "space-impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define SLOTS PS_LEDGER_CONSUMERS_MAX
#define DEFAULT_SLOT SLOTS /* ps_space_harvest()'s consumer */
#define SLOT_BITS 4	   /* an id or token: serial << 4 | slot */
#define CHUNK_SHIFT 9	   /* 512 pages: 2 MiB */

PS_STATIC_ASSERT(SLOTS < (1 << SLOT_BITS), "a slot fits in an id");

struct consumer {
	pthread_mutex_t lock; /* C2: harvest, commit, abort, remove */
	uint64_t id;	      /* 0: a free slot (written under both locks) */
	uint64_t open;	      /* the open harvest's token, or 0 */
	bool active;	      /* drains hand it marks (drain mutex) */
	struct ps__hbm pending;
	struct ps__hbm inflight;
	uint64_t *init; /* initially set: one bit per chunk materialised */
	size_t init_bytes;
	uint64_t init_left; /* chunks not yet materialised */
};

struct ps__space_ledger {
	pthread_mutex_t drain; /* C1: drains, (un)registration */
	PS_ATOMIC(uint64_t) serial;
	PS_ATOMIC(bool) ready; /* C4: the grace period has passed */
	uint64_t npages;
	struct consumer c[SLOTS + 1];
};

/* Serialises the creation of ledgers (the first add of each space). */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

/* An id or token never given before in this ledger. */
static uint64_t next_serial(struct ps__space_ledger *l, unsigned int slot)
{
	/* Relaxed: uniqueness only; the locks order what it names. */
	uint64_t n = atomic_fetch_add_explicit(&l->serial, 1,
					       memory_order_relaxed) +
		     1;

	return n << SLOT_BITS | slot;
}

static uint64_t serial_of(uint64_t v)
{
	return v >> SLOT_BITS;
}

static unsigned int slot_of(uint64_t v)
{
	return (unsigned int)(v & ((1u << SLOT_BITS) - 1));
}

/* --- drain (C1) ----------------------------------------------------------- */

/*
 * A drain's marks on their way to the consumers: the page marks of one
 * level-0 word are gathered (the take shows them in address order) and set
 * in each pending set by one RMW, as the log's own words were taken.
 */
struct drain_ctx {
	struct ps_space *s;
	struct ps__space_ledger *l;
	uint64_t base, mask; /* the gathered word: pages base .. base + 63 */
};

/* Set the gathered word in every registered consumer's pending set. */
static void drain_flush(struct drain_ctx *d)
{
	for (unsigned int k = 0; d->mask && k <= SLOTS; k++)
		if (d->l->c[k].active)
			ps__hbm_set_mask(&d->l->c[k].pending, d->base, d->mask);
	d->mask = 0;
}

/*
 * The log's take: hand a mark (a page, or a unit of 2^@order pages) to every
 * registered consumer; a page pinned for write keeps its mark (S6).
 */
static enum ps__hbm_verdict drain_visit(void *ctx, uint64_t addr,
					unsigned int order)
{
	struct drain_ctx *d = ctx;
	const uint64_t page = ps__space_page_index(addr);

	if (PS_LIKELY(!order)) {
		if ((page & ~UINT64_C(63)) != d->base) {
			drain_flush(d);
			d->base = page & ~UINT64_C(63);
		}
		d->mask |= UINT64_C(1) << (page & 63);
	} else {
		drain_flush(d);
		for (unsigned int k = 0; k <= SLOTS; k++)
			if (d->l->c[k].active)
				ps__hbm_set_range(&d->l->c[k].pending, page,
						  UINT64_C(1) << order);
	}
	return ps__space_log_verdict(d->s, addr, order);
}

/* Move the log's marks of pages [first, first + count) (the drain mutex). */
static void drain_locked(struct ps_space *s, struct ps__space_ledger *l,
			 uint64_t first, uint64_t count)
{
	struct drain_ctx d = {s, l, 0, 0};
	uint64_t end;

	ps__space_read_lock(); /* the verdicts' lookups */
	(void)ps__space_log_take(s, first << PAGE_SHIFT, count << PAGE_SHIFT,
				 true, drain_visit, &d, &end);
	ps__space_read_unlock();
	drain_flush(&d); /* C1: before the drain mutex is released */
}

static void drain(struct ps_space *s, struct ps__space_ledger *l,
		  uint64_t first, uint64_t count)
{
	pthread_mutex_lock(&l->drain);
	drain_locked(s, l, first, count);
	pthread_mutex_unlock(&l->drain);
}

/* --- the ledger's birth (C4) ---------------------------------------------- */

static void consumer_free_sets(struct consumer *c)
{
	ps__hbm_destroy(&c->pending);
	ps__hbm_destroy(&c->inflight);
	if (c->init)
		munmap(c->init, c->init_bytes);
	c->init = NULL;
	c->init_left = 0;
}

static struct ps__space_ledger *ledger_new(uint64_t npages)
{
	struct ps__space_ledger *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	if (ps__hbm_init(&l->c[DEFAULT_SLOT].pending, npages)) {
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->drain, NULL);
	for (unsigned int k = 0; k <= SLOTS; k++)
		pthread_mutex_init(&l->c[k].lock, NULL);
	l->npages = npages;
	l->c[DEFAULT_SLOT].active = true;
	return l;
}

/* The space's ledger, created and made ready (C4) if needed. */
static struct ps__space_ledger *ledger_get(struct ps_space *s)
{
	struct ps__space_ledger *l = ps__space_ledger(s);

	/* Acquire: pairs with the release store of ready below. */
	if (l && atomic_load_explicit(&l->ready, memory_order_acquire))
		return l;
	pthread_mutex_lock(&create_lock);
	l = ps__space_ledger(s);
	if (!l) {
		l = ledger_new(s->size >> PAGE_SHIFT);
		if (!l) {
			pthread_mutex_unlock(&create_lock);
			return NULL;
		}
		/* Release: pairs with ps__space_ledger()'s acquire. */
		atomic_store_explicit(&s->ledger, l, memory_order_release);
		/* C4: every take that read NULL has finished after this. */
		ps__rcu_synchronize();
		/* Release: pairs with the acquire above. */
		atomic_store_explicit(&l->ready, true, memory_order_release);
	}
	pthread_mutex_unlock(&create_lock);
	return l;
}

void ps__space_ledger_fini(struct ps_space *s)
{
	/* Relaxed: no other thread uses the space any more. */
	struct ps__space_ledger *l = atomic_load_explicit(&s->ledger,
							  memory_order_relaxed);

	if (!l)
		return;
	for (unsigned int k = 0; k <= SLOTS; k++) {
		consumer_free_sets(&l->c[k]);
		pthread_mutex_destroy(&l->c[k].lock);
	}
	pthread_mutex_destroy(&l->drain);
	free(l);
}

/* --- registration --------------------------------------------------------- */

static int consumer_init_sets(struct consumer *c, uint64_t npages,
			      bool initially_set)
{
	uint64_t nchunks = (npages + (UINT64_C(1) << CHUNK_SHIFT) - 1) >>
			   CHUNK_SHIFT;

	if (ps__hbm_init(&c->pending, npages))
		return -ENOMEM;
	if (ps__hbm_init(&c->inflight, npages)) {
		ps__hbm_destroy(&c->pending);
		return -ENOMEM;
	}
	if (initially_set) {
		/* Zero-filled on first touch: O(1) whatever the size. */
		c->init_bytes = (size_t)((nchunks + 63) / 64 * 8);
		c->init = mmap(NULL, c->init_bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			       0);
		if (c->init == MAP_FAILED) {
			c->init = NULL;
			consumer_free_sets(c);
			return -ENOMEM;
		}
		c->init_left = nchunks;
	}
	return 0;
}

int ps_ledger_consumer_add(struct ps_space *s, unsigned int flags, uint64_t *id)
{
	struct ps__space_ledger *l;

	if (!s || !id || (flags & ~PS_LEDGER_INITIALLY_SET))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	l = ledger_get(s);
	if (!l)
		return -ENOMEM;
	for (unsigned int k = 0; k < SLOTS; k++) {
		struct consumer *c = &l->c[k];
		int rc;

		pthread_mutex_lock(&c->lock);
		if (c->id) {
			pthread_mutex_unlock(&c->lock);
			continue;
		}
		rc = consumer_init_sets(c, l->npages,
					flags & PS_LEDGER_INITIALLY_SET);
		if (!rc) {
			/*
			 * C1: the marks logged so far go to the consumers
			 * already there; this one gets the later ones.
			 */
			pthread_mutex_lock(&l->drain);
			drain_locked(s, l, 0, l->npages);
			c->id = next_serial(l, k);
			c->open = 0;
			c->active = true;
			*id = c->id;
			pthread_mutex_unlock(&l->drain);
		}
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	return -ENOSPC;
}

/* The consumer @id, locked, or NULL (no such consumer). */
static struct consumer *consumer_lock(struct ps__space_ledger *l, uint64_t id)
{
	struct consumer *c;

	if (!l || slot_of(id) >= SLOTS)
		return NULL;
	c = &l->c[slot_of(id)];
	pthread_mutex_lock(&c->lock);
	if (c->id && c->id == id)
		return c;
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int ps_ledger_consumer_remove(struct ps_space *s, uint64_t id)
{
	struct ps__space_ledger *l;
	struct consumer *c;

	if (!s)
		return -EINVAL;
	l = ps__space_ledger(s);
	c = consumer_lock(l, id);
	if (!c)
		return -ENOENT;
	/* Its open harvest is aborted: its token is stale from now (C2). */
	pthread_mutex_lock(&l->drain);
	c->active = false;
	c->id = 0;
	c->open = 0;
	pthread_mutex_unlock(&l->drain);
	consumer_free_sets(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- harvest (C2) --------------------------------------------------------- */

struct take_ctx {
	struct ps__hbm *pending;
	struct ps__hbm *inflight; /* NULL: the default consumer */
	uint64_t *addrs;
	uint64_t max, n;
	bool units;    /* PS_HARVEST_UNITS: whole extents as one entry */
	uint64_t end;  /* the end of the current take_pending() */
	uint64_t unit; /* a whole extent found at this page, or UINT64_MAX */
	unsigned int order; /* and its order */
	uint64_t skip;	    /* a page found not to start one after all */
};

/* Are the level-0 words of pending pages [first, first + n) all set? */
static bool words_full(struct ps__hbm *b, uint64_t first, uint64_t n)
{
	for (uint64_t w = first / 64; w < (first + n) / 64; w++)
		/* Relaxed: a hint; the take that follows is the acquire. */
		if (atomic_load_explicit(&b->l0[w], memory_order_relaxed) !=
		    ~UINT64_C(0))
			return false;
	return true;
}

/*
 * The order of the aligned extent starting at page @bit whose pages are all
 * pending, inside the take (its first level-0 word aside: the visit holds
 * it); 0 if none.
 */
static unsigned int whole_extent(const struct take_ctx *t, uint64_t bit)
{
	static const unsigned int orders[] = {PS_SPACE_ORDER_1G,
					      PS_SPACE_ORDER_2M};

	for (unsigned int k = 0; k < 2; k++) {
		const uint64_t n = UINT64_C(1) << orders[k];

		if (!(bit & (n - 1)) && t->end - bit >= n &&
		    words_full(t->pending, bit + 64, n - 64))
			return orders[k];
	}
	return 0;
}

static enum ps__hbm_verdict take_visit(void *ctx, uint64_t bit)
{
	struct take_ctx *t = ctx;

	if (t->n == t->max)
		return PS__HBM_STOP; /* stays pending */
	if (t->units && !(bit & 511) && bit != t->skip &&
	    (t->order = whole_extent(t, bit))) {
		t->unit = bit; /* taken whole by take_pending() */
		return PS__HBM_STOP;
	}
	t->addrs[t->n++] = bit << PAGE_SHIFT;
	if (t->inflight)
		(void)ps__hbm_set(t->inflight, bit);
	return PS__HBM_CLEAR;
}

/* A whole extent's pages, taken together. */
static enum ps__hbm_verdict take_all(void *ctx, uint64_t bit)
{
	(void)ctx;
	(void)bit;
	return PS__HBM_CLEAR;
}

/*
 * Take pending pages [first, end); false if the budget stopped it. With
 * units, an aligned 2 MiB or 1 GiB extent inside whose pages are all pending
 * is one entry (addr | order), so @max counts entries, as ps_space_harvest()'s
 * in units. The caller holds the consumer's lock: the only other writers of
 * its pending set add (drains, redirty), so an extent seen whole stays whole
 * until taken; pages added meanwhile are taken with it (C3: its re-arm comes
 * after the take).
 */
static bool take_pending(struct ps__hbm *pending, struct take_ctx *t,
			 uint64_t first, uint64_t end, uint64_t *resume)
{
	uint64_t r;

	t->pending = pending;
	t->end = end;
	t->skip = UINT64_MAX;
	while (first < end) {
		uint64_t n;

		t->unit = UINT64_MAX;
		(void)ps__hbm_harvest(pending, first, end - first, take_visit,
				      t, &r);
		if (t->unit == UINT64_MAX) {
			*resume = r;
			return r >= end;
		}
		n = UINT64_C(1) << t->order;
		/* The first word was the visit's: whole too? */
		if (!words_full(pending, t->unit, 64)) {
			t->skip = t->unit; /* pages after all */
			first = t->unit;
			continue;
		}
		(void)ps__hbm_harvest(pending, t->unit, n, take_all, NULL,
				      NULL);
		t->addrs[t->n++] = (t->unit << PAGE_SHIFT) | t->order;
		if (t->inflight)
			ps__hbm_set_range(t->inflight, t->unit, n);
		first = t->unit + n;
	}
	*resume = end;
	return true;
}

/* The first chunk in [lo, hi] not yet materialised, or UINT64_MAX. */
static uint64_t next_unmaterialised(const struct consumer *c, uint64_t lo,
				    uint64_t hi)
{
	for (uint64_t w = lo / 64; w <= hi / 64; w++) {
		uint64_t z = ~c->init[w];

		if (w == lo / 64)
			z &= ~UINT64_C(0) << (lo % 64);
		if (z) {
			uint64_t k = w * 64 + (uint64_t)__builtin_ctzll(z);

			return k <= hi ? k : UINT64_MAX;
		}
	}
	return UINT64_MAX;
}

/*
 * Take the consumer's pages [first, first + count), materialising the
 * initially-set chunks as the walk reaches them (see the top). Returns the
 * page to resume from.
 */
static uint64_t take(struct ps__space_ledger *l, struct consumer *c,
		     struct take_ctx *t, uint64_t first, uint64_t count)
{
	const uint64_t end = first + count;
	uint64_t at = first, resume = end;

	while (c->init_left) {
		uint64_t k = next_unmaterialised(c, at >> CHUNK_SHIFT,
						 (end - 1) >> CHUNK_SHIFT);
		uint64_t k0, n;

		if (k == UINT64_MAX)
			break;
		k0 = k << CHUNK_SHIFT;
		if (!take_pending(&c->pending, t, at, k0, &resume))
			return resume;
		n = l->npages - k0 < (UINT64_C(1) << CHUNK_SHIFT)
			    ? l->npages - k0
			    : UINT64_C(1) << CHUNK_SHIFT;
		ps__hbm_set_range(&c->pending, k0, n);
		c->init[k / 64] |= UINT64_C(1) << (k % 64);
		c->init_left--;
		if (k0 > at)
			at = k0;
	}
	if (!take_pending(&c->pending, t, at, end, &resume))
		return resume;
	return end;
}

int ps_ledger_harvest(struct ps_space *s, uint64_t id, uint64_t start,
		      uint64_t len, unsigned int flags, uint64_t *addrs,
		      uint64_t max, uint64_t *count, uint64_t *resume,
		      uint64_t *token)
{
	struct ps__space_ledger *l;
	struct consumer *c;
	struct take_ctx t = {.addrs = addrs,
			     .max = max,
			     .units = flags & PS_HARVEST_UNITS};
	uint64_t first, npages, r;

	if (!s || !ps__space_range_ok(s, start, len) || !addrs || !max ||
	    !count || !token ||
	    (flags & ~(PS_HARVEST_REARM | PS_HARVEST_UNITS)))
		return -EINVAL;
	PS__FORK_CHECK(s->born, "space");
	l = ps__space_ledger(s);
	c = consumer_lock(l, id);
	if (!c)
		return -ENOENT;
	if (flags & PS_HARVEST_REARM) {
		int rc = ps__space_rearm_into_log(s, start, start + len);

		if (rc) {
			pthread_mutex_unlock(&c->lock);
			return rc;
		}
	}
	first = ps__space_page_index(start);
	npages = ps__space_page_index(len);
	drain(s, l, first, npages); /* C1 */
	t.inflight = &c->inflight;
	r = take(l, c, &t, first, npages);
	if (flags & PS_HARVEST_REARM) /* C3 */
		ps__space_rearm_reported(s, addrs, t.n);
	if (flags & PS_HARVEST_UNITS) /* lib/space-huge.c */
		t.n = ps__space_harvest_units(addrs, t.n);
	if (!c->open)
		c->open = next_serial(l, slot_of(id));
	*token = c->open;
	*count = t.n;
	if (resume)
		*resume = r << PAGE_SHIFT;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- commit and abort (C2) ------------------------------------------------ */

/* Abort's visitor: the in-flight bits back into pending. */
static uint64_t merge_back(void *ctx, uint64_t base, uint64_t bits)
{
	ps__hbm_set_mask(ctx, base, bits);
	return 0;
}

/* Commit's visitor: the in-flight bits are dropped. */
static uint64_t drop(void *ctx, uint64_t base, uint64_t bits)
{
	(void)ctx;
	(void)base;
	(void)bits;
	return 0;
}

/* The consumer of @token, locked with @token open; or an errno. */
static int token_lock(struct ps_space *s, uint64_t token, struct consumer **cp)
{
	struct ps__space_ledger *l;
	struct consumer *c;

	if (!s)
		return -EINVAL;
	l = ps__space_ledger(s);
	/* Relaxed: a bound, not an order (the serials given so far). */
	if (!l || !serial_of(token) || slot_of(token) >= SLOTS ||
	    serial_of(token) >
		    atomic_load_explicit(&l->serial, memory_order_relaxed))
		return -EINVAL;
	c = &l->c[slot_of(token)];
	pthread_mutex_lock(&c->lock);
	if (!c->id || c->open != token) {
		pthread_mutex_unlock(&c->lock);
		return -ESTALE;
	}
	*cp = c;
	return 0;
}

static int finish(struct ps_space *s, uint64_t token, bool commit)
{
	struct consumer *c;
	int rc = token_lock(s, token, &c);

	if (rc)
		return rc;
	(void)ps__hbm_harvest_words(&c->inflight, 0, c->inflight.nbits,
				    commit ? drop : merge_back, &c->pending);
	c->open = 0;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int ps_ledger_commit(struct ps_space *s, uint64_t token)
{
	return finish(s, token, true);
}

int ps_ledger_abort(struct ps_space *s, uint64_t token)
{
	return finish(s, token, false);
}

/* --- the default consumer (C4) -------------------------------------------- */

uint64_t ps__space_ledger_take_default(struct ps_space *s, uint64_t first,
				       uint64_t count, bool units,
				       uint64_t *addrs, uint64_t max,
				       uint64_t *resume)
{
	struct ps__space_ledger *l = ps__space_ledger(s);
	struct consumer *c = &l->c[DEFAULT_SLOT];
	struct take_ctx t = {.addrs = addrs, .max = max, .units = units};

	*resume = first + count;
	pthread_mutex_lock(&c->lock); /* take_pending(): takers one at a time */
	drain(s, l, first, count);
	(void)take_pending(&c->pending, &t, first, first + count, resume);
	pthread_mutex_unlock(&c->lock);
	return t.n;
}

void ps__space_ledger_redirty(struct ps_space *s, uint64_t addr,
			      unsigned int order)
{
	ps__hbm_set_range(&ps__space_ledger(s)->c[DEFAULT_SLOT].pending,
			  ps__space_page_index(addr), UINT64_C(1) << order);
}
