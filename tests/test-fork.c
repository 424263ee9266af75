// SPDX-License-Identifier: MIT
/*
 * tests/test-fork.c - fork(), signals and thread exit (pagestate/fork.h,
 * docs/fork-signals-threads.md).
 *
 * fork: a space (frames mapped, a subscription on its notifier), a
 * standalone notifier with a subscription, a page table and, in the uffd
 * tcases, a userfaultfd attachment are alive in the tcase's process, which
 * forks a child ("kid") that does exactly what the contract allows (destroy
 * what it inherited, read it, create new objects after the bracket) or one
 * thing it forbids (which must abort with a message naming the rule).
 * The parent waits for every kid with a deadline, so a deadlock fails the
 * tcase instead of hanging it, and reads the kid's stderr through a pipe.
 * Hooks and callbacks count, in a MAP_SHARED page, any run in another
 * process than the tcase's: a kid must never run one.
 *
 * Long operations: a kid is forked while a parent thread holds the space's
 * writer mutex inside a discard (its free hook blocks) and while another
 * parent thread is inside a read-side section.
 *
 * Thread exit: thousands of short-lived threads enter a read-side section
 * (urcu-bp registers each) and exit; the registry slots they use are
 * counted through liburcu-bp 0.13's thread-local urcu_bp_reader (the slot's
 * address, exported by liburcu-bp and declared in its urcu/static/urcu-bp.h):
 * they must be reused, not leaked. A thread that exits inside a section must
 * not block grace periods.
 *
 * Signals: a handler on the main thread runs page-word operations and
 * lookups in its own read-side section while the main thread does the same
 * on the same word and the same table, and a writer thread maps, zaps and
 * trims it (frees through call_rcu).
 *
 * The uffd tcases (tag "uffd", run as meson test fork-uffd) need root and a
 * kernel with userfaultfd write protection: without them this binary exits
 * 77 (a skip) when asked for that tag alone, as test-uffd does.
 *
 * Sizes: PS_FORK_THREADS (short-lived threads, default 2000),
 * PS_FORK_STORM (forks of the stress tcase, default 40); both shrink under
 * sanitizers (PS_STRESS_SCALE_DIV).
 */
#include <pagestate/fork.h>
#include <pagestate/notifier.h>
#include <pagestate/page.h>
#include <pagestate/pgtable.h>
#include <pagestate/space.h>
#ifdef PS_TEST_UFFD
#include <pagestate/uffd.h>
#endif

#include "../lib/rcu.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG PS_PGTABLE_PAGE_SIZE
#define NFRAMES 128
#define NMAP 16 /* frames 0..15 mapped at 0..15 pages */
#define SPACE_SIZE (UINT64_C(1) << 30)
#define PT_FRAME0 100 /* the page table maps 100..115 at 0..15 pages */

/*
 * liburcu-bp 0.13: this thread's registry slot, declared by
 * urcu/static/urcu-bp.h where lib/rcu.h includes it (PS_RCU_INLINE).
 */
#if !PS_RCU_INLINE
extern _Thread_local void *urcu_bp_reader;
#endif

/* --- time ----------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Seconds a kid may take: 10, stretched as Check's timeouts are. */
static double kid_deadline(void)
{
	const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
	double k = m ? atof(m) : 1;

	return 10 * (k > 1 ? k : 1);
}

static void nap_ms(long ms)
{
	nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000}, NULL);
}

/* --- kids: forked children, waited for with a deadline -------------------- */

enum bracket {
	PLAIN,	   /* fork() alone */
	BRACKETED, /* ps_fork_prepare(), fork(), ps_fork_parent/child() */
};

struct kid {
	pid_t pid;
	int err; /* read end of the kid's stderr */
};

typedef int (*kid_fn)(void *arg);

/* In a kid: no Check assertions (they belong to the parent). */
#define KID_CHECK(cond)                                                      \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "kid: %s:%d: %s failed\n", __FILE__, \
				__LINE__, #cond);                            \
			_exit(3);                                            \
		}                                                            \
	} while (0)

static struct kid spawn(enum bracket b, kid_fn fn, void *arg)
{
	struct kid k;
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	if (b == BRACKETED)
		ck_assert_int_eq(ps_fork_prepare(), 0);
	k.pid = fork(); /* nothing of the library in between */
	if (k.pid == 0) {
		if (b == BRACKETED)
			ps_fork_child();
		dup2(p[1], STDERR_FILENO);
		alarm((unsigned int)kid_deadline() + 5); /* backstop */
		_exit(fn(arg));
	}
	if (b == BRACKETED)
		ps_fork_parent();
	ck_assert_int_gt(k.pid, 0);
	close(p[1]);
	k.err = p[0];
	return k;
}

/*
 * Wait for @k until the deadline; kill it past that. Returns its wait
 * status, or -1 if it had to be killed. Its stderr goes to @out.
 */
static int reap(struct kid *k, char *out, size_t outsz)
{
	double end = now_s() + kid_deadline();
	int st = -1;
	size_t n = 0;
	ssize_t r;

	for (;;) {
		pid_t p = waitpid(k->pid, &st, WNOHANG);

		if (p == k->pid)
			break;
		if (now_s() > end) {
			kill(k->pid, SIGKILL);
			waitpid(k->pid, NULL, 0);
			st = -1;
			break;
		}
		nap_ms(5);
	}
	while (n + 1 < outsz && (r = read(k->err, out + n, outsz - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(k->err);
	return st;
}

static void expect_exit0(struct kid k, const char *what)
{
	char out[4096];
	int st = reap(&k, out, sizeof(out));

	ck_assert_msg(st != -1,
		      "%s: the child did not end within %.0f s (a deadlock?);"
		      " its stderr: %s",
		      what, kid_deadline(), out);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s: the child ended with status %#x; its stderr: %s",
		      what, (unsigned int)st, out);
}

/* The kid aborted, and its message names @fn and contains @words. */
static void expect_refusal(struct kid k, const char *fn, const char *words)
{
	char out[4096];
	int st = reap(&k, out, sizeof(out));

	ck_assert_msg(st != -1,
		      "%s: no refusal but a deadlock (killed after"
		      " %.0f s); stderr: %s",
		      fn, kid_deadline(), out);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
		      "%s: expected an abort, got status %#x; stderr: %s", fn,
		      (unsigned int)st, out);
	ck_assert_msg(strstr(out, "libpagestate: ") && strstr(out, fn) &&
			      strstr(out, words) &&
			      strstr(out, "docs/fork-signals-threads.md"),
		      "%s: the message does not name the rule: %s", fn, out);
}

/* --- the world: objects alive at the fork --------------------------------- */

/*
 * Counters every process sees (MAP_SHARED). foreign: hooks and callbacks of
 * the world's objects (ctx or priv &world_mark) run by another process.
 */
struct shared {
	_Atomic(unsigned) frees, dirties, invalidations;
	_Atomic(unsigned) foreign;
	pid_t owner;
};

struct world {
	struct ps_space *space;
	struct ps_space *bare; /* frames mapped, no subscription */
	struct ps_pgtable *pt;
	struct ps_notifier n;
	struct ps_interval sub;	      /* on n, [0, 1 GiB) */
	struct ps_interval space_sub; /* on the space's notifier */
};

static struct shared *sh;
static struct world w;
static char world_mark; /* ctx of the world's hooks, priv of its subs */

/* The world's free hook blocks while hold_frees is set (fork during a
 * discard). */
static _Atomic(bool) hold_frees;
static _Atomic(unsigned) frees_held;

static void note_foreign(const void *ctx)
{
	if (ctx == &world_mark && getpid() != sh->owner)
		atomic_fetch_add(&sh->foreign, 1);
}

static void on_free(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)s;
	(void)frame;
	note_foreign(ctx);
	if (ctx != &world_mark)
		return; /* a kid's own space */
	atomic_fetch_add(&sh->frees, 1);
	if (ctx == &world_mark && atomic_load(&hold_frees)) {
		atomic_fetch_add(&frees_held, 1);
		while (atomic_load(&hold_frees))
			nap_ms(1);
	}
}

static void on_dirty(void *ctx, struct ps_space *s, uint64_t frame)
{
	(void)s;
	(void)frame;
	note_foreign(ctx);
	atomic_fetch_add(&sh->dirties, 1);
}

static bool on_invalidate(struct ps_interval *sub,
			  const struct ps_invalidation *inv, uint64_t cur_seq,
			  void *priv)
{
	(void)inv;
	note_foreign(priv);
	atomic_fetch_add(&sh->invalidations, 1);
	ps_interval_set_seq(sub, cur_seq);
	return true;
}

static const struct ps_interval_ops ops = {on_invalidate};

/* A space with the counting hooks (@ctx: &world_mark or NULL), or NULL. */
static struct ps_space *new_space(void *ctx)
{
	struct ps_space_config cfg = {0};
	struct ps_space *s = NULL;

	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	cfg.hooks.dirty = on_dirty;
	cfg.hooks.free_frame = on_free;
	cfg.hooks.ctx = ctx;
	return ps_space_create(&cfg, &s) ? NULL : s;
}

static void world_setup(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	sh->owner = getpid();
	atomic_store(&hold_frees, false);
	atomic_store(&frees_held, 0);

	w.space = new_space(&world_mark);
	ck_assert_ptr_nonnull(w.space);
	w.bare = new_space(&world_mark);
	ck_assert_ptr_nonnull(w.bare);
	ck_assert_int_eq(ps_space_map_range(w.bare, 0, 4 * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ps_space_map_range(w.space, 0, NMAP * PG, 0,
					    PS_MAP_WRITE, NULL),
			 0);
	ck_assert_int_eq(ps_interval_insert(&w.space_sub,
					    ps_space_notifier(w.space), 0,
					    SPACE_SIZE, &ops, &world_mark),
			 0);
	w.pt = ps_pgtable_create();
	ck_assert_ptr_nonnull(w.pt);
	ck_assert_int_eq(ps_pgtable_map(w.pt, 0, NMAP * PG, PT_FRAME0,
					PS_PTE_MAYWRITE),
			 0);
	ck_assert_int_eq(ps_notifier_init(&w.n), 0);
	ck_assert_int_eq(ps_interval_insert(&w.sub, &w.n, 0, SPACE_SIZE, &ops,
					    &world_mark),
			 0);
}

/* Everything still works in the parent, and no kid ran a hook. */
static void world_teardown(void)
{
	unsigned frees = atomic_load(&sh->frees);

	ck_assert_uint_eq(atomic_load(&sh->foreign), 0);
	ck_assert_int_eq(ps_notifier_invalidate_start(&w.n, 0, PG,
						      PS_NOTIFIER_UNMAP, 0),
			 0);
	ck_assert_int_eq(ps_notifier_invalidate_end(&w.n, 0, PG), 0);
	ps_interval_remove(&w.sub);
	ck_assert_int_eq(ps_notifier_destroy(&w.n), 0);
	ck_assert_int_eq(ps_pgtable_trim(w.pt, 0, SPACE_SIZE), 0);
	ps_pgtable_destroy(w.pt);
	ps_interval_remove(&w.space_sub);
	ck_assert_int_eq(ps_space_unmap(w.space, 0, SPACE_SIZE, 0), 0);
	/* Each frame still mapped is freed here, in the parent, once. */
	for (uint64_t f = 0; f < NFRAMES; f++)
		ck_assert_uint_eq(ps_page_refs(ps_space_page(w.space, f)), 0);
	ck_assert_uint_ge(atomic_load(&sh->frees), frees);
	ck_assert_int_eq(ps_space_destroy(w.space), 0);
	ck_assert_int_eq(ps_space_destroy(w.bare), 0);
	ck_assert_uint_eq(atomic_load(&sh->foreign), 0);
	munmap(sh, sizeof(*sh));
}

/* --- what a kid may do ---------------------------------------------------- */

/* Rule 2: forget everything inherited; nothing may block or run a hook. */
static int kid_destroy_all(void *arg)
{
	(void)arg;
	KID_CHECK(ps_space_destroy(w.bare) == 0);  /* no free hook runs */
	KID_CHECK(ps_space_destroy(w.space) == 0); /* subscription or not */
	ps_pgtable_destroy(w.pt);
	KID_CHECK(ps_notifier_destroy(&w.n) == 0); /* subscription or not */
	KID_CHECK(atomic_load(&sh->foreign) == 0);
	return 0;
}

/*
 * Rule 3: read what was inherited, from the state at the fork (the space's
 * entries only if no discard was running then).
 */
static int kid_read_inherited(bool space_intact)
{
	struct ps_pgtable *spt = ps_space_pgtable(w.space);
	struct ps_pgtable_region vec[4];
	struct ps_pgtable_scan sc;
	struct ps_notifier_stats ns;
	unsigned int flags;
	ps_pte_t e;

	for (uint64_t i = 0; i < NMAP && space_intact; i++) {
		KID_CHECK(ps_pgtable_get(spt, i * PG, &e) == 0);
		KID_CHECK(ps_pte_is_present(e) && ps_pte_frame(e) == i);
		KID_CHECK(ps_page_refs(ps_space_page(w.space, i)) >= 1);
	}
	ps_pgtable_read_lock();
	for (uint64_t i = 0; i < NMAP; i++) {
		e = ps_pgtable_lookup(w.pt, i * PG);
		KID_CHECK(ps_pte_frame(e) == PT_FRAME0 + i);
	}
	ps_pgtable_read_unlock();
	KID_CHECK(ps_pgtable_registration(w.pt, 0, &flags) == -ENOENT);
	memset(&sc, 0, sizeof(sc));
	sc.start = 0;
	sc.end = 64 * PG;
	sc.vec = vec;
	sc.vec_len = 4;
	sc.return_mask = PS_CAT_ALL;
	sc.category_anyof_mask = PS_CAT_PRESENT;
	KID_CHECK(ps_pgtable_scan(w.pt, &sc) == 1);
	KID_CHECK(vec[0].start == 0 && vec[0].end == NMAP * PG);
	ps_notifier_get_stats(&w.n, &ns);
	KID_CHECK(ns.subscriptions == 1);
	return 0;
}

/* Rule 3: new objects work as in any process (grace periods included). */
static int kid_use_new_objects(void)
{
	struct ps_space *s;
	struct ps_pgtable *t = ps_pgtable_create();
	struct ps_notifier n;
	struct ps_interval sub;
	uint64_t frame, addrs[4], count, resume;

	KID_CHECK(t);
	KID_CHECK(ps_pgtable_register(t, 0, 64 * PG, 0) == 0);
	KID_CHECK(ps_pgtable_map(t, 0, 8 * PG, 1, PS_PTE_MAYWRITE) == 0);
	KID_CHECK(ps_pgtable_protect(t, 0, 8 * PG) == 0);
	KID_CHECK(ps_pgtable_unregister(t, 0, 64 * PG) == 0); /* synchronize */
	KID_CHECK(ps_pgtable_zap(t, 0, 8 * PG, PS_ZAP_UNMAP, NULL, NULL) == 0);
	KID_CHECK(ps_pgtable_trim(t, 0, SPACE_SIZE) == 0); /* call_rcu */
	ps_pgtable_destroy(t);				   /* rcu_barrier */

	KID_CHECK(ps_notifier_init(&n) == 0);
	KID_CHECK(ps_interval_insert(&sub, &n, 0, PG, &ops, NULL) == 0);
	KID_CHECK(ps_notifier_invalidate_start(&n, 0, PG, PS_NOTIFIER_UNMAP,
					       0) == 0);
	KID_CHECK(ps_notifier_invalidate_end(&n, 0, PG) == 0);
	ps_interval_remove(&sub);
	KID_CHECK(ps_notifier_destroy(&n) == 0);

	/* Hooks may run here: they are the kid's own space's (ctx NULL). */
	s = new_space(NULL);
	KID_CHECK(s);
	KID_CHECK(ps_space_map(s, 0, 5, PS_MAP_WRITE) == 0);
	KID_CHECK(ps_space_pin_range(s, 0, PG, PS_PIN_WRITE, &frame) == 0);
	KID_CHECK(ps_space_unpin(s, &frame, 1, PS_UNPIN_DIRTY) == 0);
	KID_CHECK(ps_space_harvest(s, 0, PG, 0, addrs, 4, &count, &resume) ==
		  0);
	KID_CHECK(count == 1 && addrs[0] == 0);
	KID_CHECK(ps_space_discard(s, 0, PG, NULL, 0, NULL) == 0);
	KID_CHECK(ps_space_destroy(s) == 0);
	return 0;
}

static int kid_bracketed_everything(void *arg)
{
	int rc = kid_read_inherited(true);

	if (!rc)
		rc = kid_use_new_objects();
	if (!rc)
		rc = kid_destroy_all(arg);
	return rc;
}

/* After a plain fork() nothing new may be created. */
static int kid_create_refused(void *arg)
{
	struct ps_space_config cfg = {0};
	struct ps_space *s = NULL;
	struct ps_notifier n;

	(void)arg;
	errno = 0;
	KID_CHECK(ps_pgtable_create() == NULL && errno == ECHILD);
	cfg.size = SPACE_SIZE;
	cfg.nframes = NFRAMES;
	KID_CHECK(ps_space_create(&cfg, &s) == -ECHILD && !s);
	KID_CHECK(ps_notifier_init(&n) == -ECHILD);
	KID_CHECK(ps_fork_prepare() == -ECHILD);
	return kid_destroy_all(NULL);
}

/* --- fork with objects alive ---------------------------------------------- */

/*
 * After a plain fork() the child can destroy everything it inherited,
 * although a subscription is still inserted on each notifier: nothing
 * blocks, no hook runs (the free hook would run in the kid for the 16
 * mapped frames otherwise), the parent's objects stay as they were.
 */
START_TEST(plain_child_destroys_what_it_inherited)
{
	expect_exit0(spawn(PLAIN, kid_destroy_all, NULL), "destroy");
	/* The parent's objects are intact: the kid changed only its copy. */
	for (uint64_t i = 0; i < NMAP; i++)
		ck_assert_uint_eq(ps_page_refs(ps_space_page(w.space, i)), 1);
	ck_assert_uint_eq(ps_page_refs(ps_space_page(w.bare, 3)), 1);
	ck_assert_uint_eq(atomic_load(&sh->frees), 0);
}
END_TEST

/* Rule 3: after the bracket, reads of inherited objects and new objects. */
START_TEST(bracketed_child_reads_and_creates)
{
	expect_exit0(spawn(BRACKETED, kid_bracketed_everything, NULL),
		     "bracketed");
	expect_exit0(spawn(PLAIN, kid_create_refused, NULL), "plain");
	/* The parent goes on as before, its grace periods included. */
	ck_assert_int_eq(ps_pgtable_register(w.pt, 0, PG, 0), 0);
	ck_assert_int_eq(ps_pgtable_unregister(w.pt, 0, PG), 0);
	ps__rcu_barrier();
}
END_TEST

/* A kid calls one forbidden function on an inherited object. */
static int forbidden(void *arg)
{
	int which = *(int *)arg;
	uint64_t addrs[4], count, resume;

	switch (which) {
	case 0:
		(void)ps_space_discard(w.space, 0, PG, NULL, 0, NULL);
		break;
	case 1:
		(void)ps_space_map(w.space, 64 * PG, 64, 0);
		break;
	case 2:
		(void)ps_space_harvest(w.space, 0, PG, 0, addrs, 4, &count,
				       &resume);
		break;
	case 3:
		(void)ps_pgtable_protect(w.pt, 0, PG);
		break;
	case 4:
		(void)ps_pgtable_register(w.pt, 0, PG, 0);
		break;
	case 5:
		(void)ps_pgtable_trim(w.pt, 0, SPACE_SIZE);
		break;
	case 6:
		(void)ps_notifier_invalidate_start(&w.n, 0, PG,
						   PS_NOTIFIER_UNMAP, 0);
		break;
	case 7:
		ps_interval_remove(&w.sub);
		break;
	case 8: /* through the space: its embedded notifier */
		ps_interval_remove(&w.space_sub);
		break;
	}
	return 0; /* a refusal never gets here */
}

static const struct {
	const char *fn, *what;
} forbidden_calls[] = {
	{"ps_space_discard", "this space"},
	{"ps_space_map_range", "this space"},
	{"ps_space_harvest", "this space"},
	{"ps_pgtable_protect", "this page table"},
	{"ps_pgtable_register", "this page table"},
	{"ps_pgtable_trim", "this page table"},
	{"ps_notifier_invalidate_start", "this notifier"},
	{"ps_interval_remove", "this notifier"},
	{"ps_interval_remove", "this notifier"},
};

#define NFORBIDDEN (int)(sizeof(forbidden_calls) / sizeof(forbidden_calls[0]))

/* Rule 4, after a plain fork() and after the bracket alike. */
START_TEST(inherited_use_is_refused)
{
	int which = _i % NFORBIDDEN;
	enum bracket b = _i < NFORBIDDEN ? PLAIN : BRACKETED;

	expect_refusal(spawn(b, forbidden, &which), forbidden_calls[which].fn,
		       forbidden_calls[which].what);
}
END_TEST

/* --- the bracket itself --------------------------------------------------- */

static int kid_parent_without_prepare(void *arg)
{
	(void)arg;
	ps_fork_parent();
	return 0;
}

static int kid_barrier_after_plain_fork(void *arg)
{
	(void)arg;
	ps__rcu_barrier(); /* would wait for a call_rcu thread not there */
	return 0;
}

static int kid_sync_between_prepare_and_fork(void *arg)
{
	(void)arg;
	KID_CHECK(ps_fork_prepare() == 0);
	ps__rcu_synchronize(); /* its own locks: a self-deadlock */
	return 0;
}

START_TEST(bracket_misuse_is_refused)
{
	ps_pgtable_read_lock();
	ck_assert_int_eq(ps_fork_prepare(), -EDEADLK);
	ps_pgtable_read_unlock();
	ck_assert_int_eq(ps_fork_prepare(), 0);
	ck_assert_int_eq(ps_fork_prepare(), -EDEADLK);
	ps_fork_parent(); /* fork() may also have failed: this undoes it */
	ps__rcu_synchronize();

	expect_refusal(spawn(PLAIN, kid_parent_without_prepare, NULL),
		       "ps_fork_parent", "no ps_fork_prepare()");
	expect_refusal(spawn(PLAIN, kid_barrier_after_plain_fork, NULL),
		       "rcu_barrier", "without ps_fork_prepare()");
	expect_refusal(spawn(BRACKETED, kid_sync_between_prepare_and_fork,
			     NULL),
		       "synchronize_rcu", "between ps_fork_prepare()");
}
END_TEST

/* --- fork during long operations ------------------------------------------ */

static void *discard_main(void *arg)
{
	(void)arg;
	/* Holds the writer mutex, mid-invalidation, while the hook blocks. */
	return (void *)(intptr_t)ps_space_discard(w.space, 0, NMAP * PG, NULL,
						  0, NULL);
}

/* @arg: the bracket; the world's discard may be running in the parent. */
static int kid_after_discard(void *arg)
{
	if (*(enum bracket *)arg == BRACKETED) {
		int rc = kid_read_inherited(false);

		if (rc)
			return rc;
		rc = kid_use_new_objects();
		if (rc)
			return rc;
	}
	return kid_destroy_all(NULL);
}

/*
 * A parent thread is inside ps_space_discard() (writer mutex held, an
 * invalidation in flight, a free hook running) at the fork. The kid must
 * neither deadlock nor run the hook; after the bracket it also uses new
 * objects. A kid that tries the space's writer path is refused.
 */
START_TEST(fork_during_discard)
{
	enum bracket b = _i ? BRACKETED : PLAIN;
	int which = 0; /* ps_space_discard */
	pthread_t th;
	void *rc;

	atomic_store(&hold_frees, true);
	ck_assert_int_eq(pthread_create(&th, NULL, discard_main, NULL), 0);
	while (!atomic_load(&frees_held))
		nap_ms(1);
	expect_exit0(spawn(b, kid_after_discard, &b), "fork during discard");
	expect_refusal(spawn(b, forbidden, &which), "ps_space_discard",
		       "this space");
	atomic_store(&hold_frees, false);
	pthread_join(th, &rc);
	ck_assert_int_eq((int)(intptr_t)rc, 0);
	ck_assert_uint_eq(atomic_load(&sh->frees), NMAP);
}
END_TEST

struct section_holder {
	pthread_t th;
	_Atomic(int) state; /* 0 starting, 1 inside, 2 leaving */
	_Atomic(bool) enough;
	double until;
};

/*
 * Stay in a read-side section until told or until @until, whichever comes
 * first (never waiting for the forking thread without a bound); flag 2
 * before leaving it.
 */
static void *hold_section(void *arg)
{
	struct section_holder *h = arg;

	ps_pgtable_read_lock();
	(void)ps_pgtable_lookup(w.pt, 0);
	atomic_store(&h->state, 1);
	while (now_s() < h->until && !atomic_load(&h->enough))
		nap_ms(1);
	atomic_store(&h->state, 2);
	ps_pgtable_read_unlock();
	return NULL;
}

/*
 * Another parent thread is inside a read-side section at the fork (it
 * leaves on its own: ps_fork_prepare() may wait for grace periods, so no
 * thread may wait for the forking one inside a section). The bracketed
 * kid's grace periods must not wait for that thread's copy in liburcu's
 * registry; the plain kid only destroys.
 */
START_TEST(fork_inside_read_section)
{
	enum bracket b = _i ? BRACKETED : PLAIN;
	struct section_holder h = {.until = now_s() + kid_deadline()};
	struct kid k;

	ps__rcu_barrier(); /* no grace period pending: prepare waits for none */
	ck_assert_int_eq(pthread_create(&h.th, NULL, hold_section, &h), 0);
	while (atomic_load(&h.state) == 0)
		nap_ms(1);
	k = spawn(b, kid_after_discard, &b);
	ck_assert_msg(atomic_load(&h.state) == 1,
		      "the section ended before the fork: nothing was tested");
	atomic_store(&h.enough, true);
	expect_exit0(k, "fork inside a read-side section");
	pthread_join(h.th, NULL);
}
END_TEST

/* --- thread exit ---------------------------------------------------------- */

struct slot_note {
	pthread_t th;
	void *slot;
};

static void *short_reader(void *arg)
{
	struct slot_note *note = arg;
	ps_pte_t e;

	/* The thread's first section: urcu-bp registers it here. */
	ck_assert_int_eq(ps_pgtable_get(w.pt, 0, &e), 0);
	note->slot = urcu_bp_reader;
	return NULL;
}

/*
 * Thousands of short-lived readers, WAVE at a time: urcu-bp frees each
 * one's registry slot when it exits (a thread-specific-data destructor), so
 * they all fit in the slots of one wave. A leaked slot would also slow
 * every grace period, which scans the registry.
 */
START_TEST(exited_readers_give_back_their_slot)
{
	enum { WAVE = 8, MAXSLOTS = 64 };
	uint64_t n = ps_test_stress_size("PS_FORK_THREADS", 2000);
	void *slots[MAXSLOTS];
	unsigned int nslots = 0;
	ps_pte_t e;

	ck_assert_int_eq(ps_pgtable_get(w.pt, 0, &e), 0); /* main: its own */
	ck_assert_ptr_nonnull(urcu_bp_reader);
	for (uint64_t done = 0; done < n; done += WAVE) {
		struct slot_note notes[WAVE];

		for (int i = 0; i < WAVE; i++)
			ck_assert_int_eq(pthread_create(&notes[i].th, NULL,
							short_reader,
							&notes[i]),
					 0);
		for (int i = 0; i < WAVE; i++) {
			unsigned int j;

			pthread_join(notes[i].th, NULL);
			ck_assert_ptr_nonnull(notes[i].slot);
			ck_assert_ptr_ne(notes[i].slot, urcu_bp_reader);
			for (j = 0; j < nslots; j++)
				if (slots[j] == notes[i].slot)
					break;
			if (j == nslots) {
				ck_assert_msg(nslots < MAXSLOTS,
					      "%u registry slots after %llu"
					      " threads: slots leak",
					      nslots, (unsigned long long)done);
				slots[nslots++] = notes[i].slot;
			}
		}
	}
	/* At most WAVE live at once; 2 spare for timing of the destructors. */
	ck_assert_msg(nslots <= WAVE + 2, "%u distinct slots for %llu threads",
		      nslots, (unsigned long long)n);
	ps__rcu_synchronize();
}
END_TEST

static void *exit_inside_section(void *arg)
{
	(void)arg;
	ps_pgtable_read_lock();
	(void)ps_pgtable_lookup(w.pt, 0);
	return NULL; /* exits inside the section */
}

static void *synchronize_main(void *arg)
{
	(void)arg;
	ps__rcu_synchronize();
	return NULL;
}

/* urcu-bp's exit destructor clears the thread's nesting count. */
START_TEST(thread_exit_inside_section_does_not_block_grace_periods)
{
	pthread_t th;
	struct timespec dl;

	ck_assert_int_eq(pthread_create(&th, NULL, exit_inside_section, NULL),
			 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(pthread_create(&th, NULL, synchronize_main, NULL), 0);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += (time_t)kid_deadline();
	ck_assert_msg(pthread_timedjoin_np(th, NULL, &dl) == 0,
		      "a grace period waits for a thread that exited");
}
END_TEST

/* --- signals -------------------------------------------------------------- */

#define SIG_PAGES 64 /* the table region the handler looks up */

static struct ps_page sig_word; /* hammered by the handler and main */
static struct ps_pgtable *sig_pt;
static _Atomic(unsigned long) sig_runs, sig_bad;
static _Atomic(bool) sig_stop;

/* Every entry of the region is none or maps frame 1000 + its page. */
static unsigned long check_region(void)
{
	unsigned long bad = 0;

	for (uint64_t i = 0; i < SIG_PAGES; i++) {
		ps_pte_t e = ps_pgtable_lookup(sig_pt, i * PG);

		if (e != PS_PTE_NONE &&
		    (!ps_pte_is_present(e) || ps_pte_frame(e) != 1000 + i))
			bad++;
	}
	return bad;
}

/* Only what docs/fork-signals-threads.md calls async-signal-safe. */
static void on_signal(int sig)
{
	int saved = errno;
	unsigned long bad = 0;

	(void)sig;
	if (ps_page_get(&sig_word) || ps_page_pin(&sig_word))
		bad++;
	/* WRITEBACK is the handler's: main must never see it set. */
	if (ps_page_set_flags(&sig_word, PS_PAGE_WRITEBACK) & PS_PAGE_WRITEBACK)
		bad++;
	if (ps_page_trylock(&sig_word)) /* fails while main holds it */
		ps_page_unlock(&sig_word);
	ps_page_clear_flags(&sig_word, PS_PAGE_WRITEBACK);
	ps_pgtable_read_lock(); /* nests in main's section, if any */
	bad += check_region();
	ps_pgtable_read_unlock();
	if (ps_page_unpin(&sig_word) || ps_page_put(&sig_word))
		bad++; /* never the last: main holds the base reference */
	if (bad)
		atomic_fetch_add(&sig_bad, bad);
	atomic_fetch_add(&sig_runs, 1);
	errno = saved;
}

/* Map, zap and trim the region: lookups race frees through call_rcu. */
static void *region_writer(void *arg)
{
	(void)arg;
	while (!atomic_load(&sig_stop)) {
		for (uint64_t i = 0; i < SIG_PAGES; i += 8)
			(void)ps_pgtable_map(sig_pt, i * PG, 8 * PG, 1000 + i,
					     PS_PTE_MAYWRITE);
		(void)ps_pgtable_zap(sig_pt, 0, SIG_PAGES * PG, PS_ZAP_UNMAP,
				     NULL, NULL);
		(void)ps_pgtable_trim(sig_pt, 0, SPACE_SIZE);
	}
	return NULL;
}

/*
 * The handler interrupts the main thread anywhere: inside its section,
 * between the load and the store of a page-word update, inside a lookup.
 * Counts balance, sections nest, lookups see only valid entries. A timer
 * aimed at the main thread interrupts it at its timer interrupts, so
 * anywhere in its loop (a signal sent by another thread may wait for the
 * next kernel entry of the target: measured at a few tens a second on the
 * CI machine, against hundreds for the timer).
 */
START_TEST(signal_handler_page_ops_and_lookups)
{
	pthread_t wr_th;
	struct sigaction sa, old;
	struct sigevent ev;
	struct itimerspec every = {{0, 20000}, {0, 20000}}, off = {{0}, {0}};
	timer_t timer;
	double end = now_s() +
		     (double)ps_test_env_u64("PS_FORK_SIGNAL_MS", 1000) / 1000;
	sigset_t block;

	sig_pt = ps_pgtable_create();
	ck_assert_ptr_nonnull(sig_pt);
	ck_assert_int_eq(ps_page_init(&sig_word, 1), 0);
	atomic_store(&sig_runs, 0);
	atomic_store(&sig_bad, 0);
	atomic_store(&sig_stop, false);
	/* The main thread's first section is outside the handler. */
	ps_pgtable_read_lock();
	ps_pgtable_read_unlock();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
	ck_assert_int_eq(pthread_create(&wr_th, NULL, region_writer, NULL), 0);
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGUSR1;
	ev._sigev_un._tid = gettid();
	ck_assert_int_eq(timer_create(CLOCK_MONOTONIC, &ev, &timer), 0);
	ck_assert_int_eq(timer_settime(timer, 0, &every, NULL), 0);

	while (now_s() < end) {
		for (int i = 0; i < 64; i++) {
			ck_assert_int_eq(ps_page_get(&sig_word), 0);
			ck_assert_int_eq(ps_page_pin(&sig_word), 0);
			ps_page_lock(&sig_word);
			ps_page_set_flags(&sig_word, PS_PAGE_DIRTY);
			ck_assert_uint_eq(ps_page_flags(&sig_word) &
						  (PS_PAGE_WRITEBACK |
						   PS_PAGE_LOCKED |
						   PS_PAGE_DIRTY),
					  PS_PAGE_LOCKED | PS_PAGE_DIRTY);
			ps_page_clear_flags(&sig_word, PS_PAGE_DIRTY);
			ps_page_unlock(&sig_word);
			ck_assert(!ps_page_unpin(&sig_word));
			ck_assert(!ps_page_put(&sig_word));
		}
		ps_pgtable_read_lock();
		ck_assert_uint_eq(check_region(), 0);
		ck_assert(urcu_bp_read_ongoing());
		ps_pgtable_read_unlock();
		ck_assert(!urcu_bp_read_ongoing());
	}

	ck_assert_int_eq(timer_settime(timer, 0, &off, NULL), 0);
	timer_delete(timer);
	atomic_store(&sig_stop, true);
	pthread_join(wr_th, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, NULL); /* one may still be pending */
	sigaction(SIGUSR1, &old, NULL);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	ck_assert_uint_eq(atomic_load(&sig_bad), 0);
	ck_assert_msg(atomic_load(&sig_runs) >= 20, "only %lu handler runs",
		      atomic_load(&sig_runs));
	ck_assert_uint_eq(ps_page_refs(&sig_word), 1);
	ck_assert_uint_eq(ps_page_pins(&sig_word), 0);
	ck_assert_uint_eq(ps_page_flags(&sig_word) &
				  (PS_PAGE_WRITEBACK | PS_PAGE_LOCKED |
				   PS_PAGE_DIRTY),
			  0);
	ps_pgtable_destroy(sig_pt);
}
END_TEST

/* --- stress: forks while every module is busy ----------------------------- */

#define STORM_WORKERS 2
#define STORM_SLOTS 8 /* addresses/frames per worker, from page 32 */

static _Atomic(bool) storm_stop;

/*
 * GCC 12's AddressSanitizer allocator (Debian 12's libsanitizer) is not
 * locked around fork(): a child of a process whose other thread was inside
 * malloc() at the fork can block for ever in its own first malloc() (seen
 * here: the bracketed kid's new call_rcu thread, in ASan's thread start).
 * glibc's malloc is (fork() takes its locks). The kids of plain forks never
 * allocate (rule 2); those of bracketed ones do, so under ASan the workers
 * park between operations around those forks.
 */
#if defined(__SANITIZE_ADDRESS__)
#define STORM_PARK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STORM_PARK 1
#endif
#endif
#ifndef STORM_PARK
#define STORM_PARK 0
#endif
static _Atomic(bool) storm_park;
static _Atomic(unsigned) storm_parked;

static void storm_park_point(void)
{
	if (!atomic_load(&storm_park))
		return;
	atomic_fetch_add(&storm_parked, 1);
	while (atomic_load(&storm_park))
		sched_yield();
	atomic_fetch_sub(&storm_parked, 1);
}

/*
 * A worker's first failed call (no Check assertion off the main thread): how
 * many failed, and the first one's return, checked after the join.
 */
static _Atomic(unsigned) storm_failures;
static _Atomic(int) storm_failed_rc;

static void storm_failed(int rc)
{
	if (!atomic_fetch_add(&storm_failures, 1))
		atomic_store(&storm_failed_rc, rc);
}

static void *storm_worker(void *arg)
{
	uint64_t base = 32 + (uint64_t)(intptr_t)arg * STORM_SLOTS;
	struct ps_test_rng r = ps_test_rng_new(base);
	struct ps_notifier_stats ns;

	while (!atomic_load(&storm_stop)) {
		uint64_t k = base + ps_test_below(&r, STORM_SLOTS), f;
		int rc;

		storm_park_point();
		if (ps_space_map(w.space, k * PG, k, PS_MAP_WRITE) == 0 &&
		    ps_space_pin_range(w.space, k * PG, PG, PS_PIN_WRITE, &f) ==
			    0)
			(void)ps_space_unpin(w.space, &f, 1,
					     ps_test_below(&r, 2)
						     ? PS_UNPIN_DIRTY
						     : 0);
		if (ps_test_below(&r, 2))
			(void)ps_space_unmap(w.space, k * PG, PG, 0);
		else
			(void)ps_space_discard(w.space, k * PG, PG, NULL, 0,
					       NULL);
		rc = ps_notifier_invalidate_start(&w.n, k * PG, PG,
						  PS_NOTIFIER_CLEAR, 0);
		if (!rc)
			rc = ps_notifier_invalidate_end(&w.n, k * PG, PG);
		if (rc)
			storm_failed(rc);
		(void)ps_pgtable_trim(w.pt, 0, SPACE_SIZE);
		ps_notifier_get_stats(&w.n, &ns);
	}
	return NULL;
}

/*
 * Forks, bracketed and plain, while workers map, pin, discard, invalidate
 * and trim: every kid ends, the parent's state is consistent afterwards.
 */
START_TEST(stress_fork_while_busy)
{
	uint64_t n = ps_test_stress_size("PS_FORK_STORM", 40);
	pthread_t th[STORM_WORKERS];
	struct ps_notifier_stats ns;

	atomic_store(&storm_stop, false);
	atomic_store(&storm_failures, 0);
	for (intptr_t i = 0; i < STORM_WORKERS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, storm_worker,
						(void *)i),
				 0);
	for (uint64_t i = 0; i < n; i++) {
		enum bracket b = i & 1 ? PLAIN : BRACKETED;
		bool park = STORM_PARK && b == BRACKETED;
		struct kid k;

		atomic_store(&storm_park, park);
		while (park && atomic_load(&storm_parked) < STORM_WORKERS)
			sched_yield();
		k = spawn(b, kid_after_discard, &b);
		atomic_store(&storm_park, false);
		expect_exit0(k, "storm");
	}
	atomic_store(&storm_stop, true);
	for (int i = 0; i < STORM_WORKERS; i++)
		pthread_join(th[i], NULL);
	ck_assert_msg(!atomic_load(&storm_failures),
		      "workers: %u invalidations failed, the first with %d",
		      atomic_load(&storm_failures),
		      atomic_load(&storm_failed_rc));
	ck_assert_int_eq(ps_space_unmap(w.space, 32 * PG,
					STORM_WORKERS * STORM_SLOTS * PG, 0),
			 0);
	for (uint64_t f = 32; f < 32 + STORM_WORKERS * STORM_SLOTS; f++) {
		ck_assert_uint_eq(ps_page_refs(ps_space_page(w.space, f)), 0);
		ck_assert_uint_eq(ps_page_pins(ps_space_page(w.space, f)), 0);
	}
	ps_notifier_get_stats(&w.n, &ns);
	ck_assert_uint_eq(ns.inflight, 0);
	ck_assert_uint_eq(atomic_load(&sh->foreign), 0);
}
END_TEST

/* --- the uffd bridge ------------------------------------------------------ */

#ifdef PS_TEST_UFFD
#define UNP 16			  /* pages attached */
#define LBASE (UINT64_C(1) << 20) /* their library address */
#define PMD (UINT64_C(2) << 20)
#define PM_WP (UINT64_C(1) << 57) /* pagemap: uffd-wp */

static const unsigned int uffd_modes[] = {PS_UFFD_THREAD, PS_UFFD_ASYNC};

struct ufix {
	void *reserve;
	uint8_t *host;
	struct ps_uffd *u;
	int pagemap;
};

static struct ufix uf;

static uint64_t pagemap_of(unsigned int page)
{
	uint64_t e = 0;

	ck_assert_int_eq(pread(uf.pagemap, &e, 8,
			       (off_t)(((uintptr_t)uf.host / PG + page) * 8)),
			 8);
	return e;
}

/* Threads of this process, from /proc/self/status. */
static int count_threads(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC), n = -1;
	ssize_t len;
	char *p;

	ck_assert_int_ge(fd, 0);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(len, 0);
	buf[len] = 0;
	p = strstr(buf, "\nThreads:");
	if (p)
		n = atoi(p + 9);
	return n;
}

/* Anonymous memory, attached to the world's space at LBASE, protected. */
static void uffd_attach(unsigned int mode)
{
	struct ps_uffd_config c = {0};
	const char *why = NULL;

	uf.reserve = mmap(NULL, 2 * PMD, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(uf.reserve, MAP_FAILED);
	uf.host = (uint8_t *)(((uintptr_t)uf.reserve + PMD - 1) & ~(PMD - 1));
	(void)madvise(uf.host, PMD, MADV_NOHUGEPAGE);
	memset(uf.host, 1, UNP * PG);
	uf.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(uf.pagemap, 0);
	ck_assert_int_eq(ps_space_map_range(w.space, LBASE, UNP * PG, 64,
					    PS_MAP_WRITE, NULL),
			 0);
	c.host = uf.host;
	c.addr = LBASE;
	c.len = UNP * PG;
	c.flags = mode;
	c.why = &why;
	ck_assert_msg(ps_uffd_attach_space(w.space, &c, &uf.u) == 0,
		      "attach: %s", why ? why : "?");
	ck_assert_int_eq(ps_uffd_protect(uf.u, LBASE, UNP * PG), 0);
	ck_assert(pagemap_of(5) & PM_WP);
}

static void uffd_detach(void)
{
	ck_assert_int_eq(ps_uffd_detach(uf.u), 0);
	close(uf.pagemap);
	munmap(uf.reserve, 2 * PMD);
	ck_assert_int_eq(ps_space_unmap(w.space, LBASE, UNP * PG, 0), 0);
}

static int kid_detach(void *arg)
{
	(void)arg;
	memset(uf.host, 2, UNP * PG); /* the kid's copy: no fault, no report */
	KID_CHECK(ps_uffd_detach(uf.u) == 0);
	return kid_destroy_all(NULL);
}

struct writer {
	uint8_t *p;
	_Atomic(bool) done;
};

static void *write_one(void *arg)
{
	struct writer *wr = arg;

	*(volatile uint8_t *)wr->p = 3;
	atomic_store(&wr->done, true);
	return NULL;
}

/*
 * A child detaches what it inherited (and writes its copy of the memory):
 * the parent stays attached and protected, its handler thread still
 * resolves faults, and its harvest reports its own write, not the kid's.
 * Detach used to stop the parent's handler thread through the shared
 * eventfd, join a thread the kid does not have, and unregister the
 * parent's range through the inherited userfaultfd.
 */
START_TEST(uffd_child_detach_leaves_parent_attached)
{
	unsigned int mode = uffd_modes[_i];
	struct writer wr = {0};
	uint64_t addrs[UNP], n = 0, resume;
	char out[4096];
	struct kid k;
	pthread_t th;
	double end;
	int st, threads;

	uffd_attach(mode);
	threads = count_threads();
	k = spawn(PLAIN, kid_detach, NULL);
	st = reap(&k, out, sizeof(out));
	/* The parent first: that is what a kid must not damage. */
	nap_ms(50); /* a handler thread told to stop would be gone by now */
	ck_assert_msg(count_threads() == threads,
		      "the parent's handler thread stopped");
	ck_assert_msg(pagemap_of(5) & PM_WP,
		      "the parent's range lost its protection");
	wr.p = uf.host + 3 * PG;
	ck_assert_int_eq(pthread_create(&th, NULL, write_one, &wr), 0);
	end = now_s() + kid_deadline();
	while (!atomic_load(&wr.done) && now_s() < end)
		nap_ms(1);
	ck_assert_msg(atomic_load(&wr.done),
		      "the parent's write never completed: its handler thread"
		      " is gone");
	pthread_join(th, NULL);
	ck_assert_int_eq(ps_uffd_harvest(uf.u, LBASE, UNP * PG, addrs, UNP, &n,
					 &resume),
			 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(addrs[0], LBASE + 3 * PG);
	ck_assert_uint_eq(uf.host[5 * PG], 1); /* the kid's writes stayed its */
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "the kid ended with status %#x: %s", (unsigned int)st,
		      out);
	uffd_detach();
}
END_TEST

static int kid_uffd_forbidden(void *arg)
{
	uint64_t addrs[UNP], n, resume;

	switch (*(int *)arg) {
	case 0:
		(void)ps_uffd_protect(uf.u, LBASE, PG);
		break;
	case 1:
		(void)ps_uffd_harvest(uf.u, LBASE, PG, addrs, UNP, &n, &resume);
		break;
	case 2:
		(void)ps_uffd_handle_events(uf.u, 0);
		break;
	}
	return 0;
}

/* Rule 4 for the bridge: its descriptors reach the parent. */
START_TEST(uffd_inherited_use_is_refused)
{
	static const char *const fn[] = {"ps_uffd_protect", "ps_uffd_harvest",
					 "ps_uffd_handle_events"};
	int which = _i;

	uffd_attach(which == 2 ? 0 : PS_UFFD_THREAD); /* events: no thread */
	expect_refusal(spawn(PLAIN, kid_uffd_forbidden, &which), fn[which],
		       "this uffd attachment");
	ck_assert(pagemap_of(5) & PM_WP);
	uffd_detach();
}
END_TEST

/* The open descriptors of this process, as a bitmap of the first 1024. */
static void open_fds(uint64_t set[16])
{
	memset(set, 0, 16 * sizeof(set[0]));
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			set[fd / 64] |= UINT64_C(1) << (fd % 64);
}

/*
 * Rule 1: every descriptor an attachment opens (the userfaultfd, the
 * pagemap for async, the eventfd of the handler thread) is close-on-exec,
 * so a helper that execs inherits none.
 */
START_TEST(uffd_descriptors_close_on_exec)
{
	uint64_t before[16], after[16];
	unsigned int opened = 0;

	open_fds(before);
	uffd_attach(uffd_modes[_i]);
	close(uf.pagemap); /* the test's own */
	open_fds(after);
	for (int fd = 0; fd < 1024; fd++) {
		uint64_t bit = UINT64_C(1) << (fd % 64);

		if (!(after[fd / 64] & bit) || (before[fd / 64] & bit))
			continue;
		opened++;
		ck_assert_msg(fcntl(fd, F_GETFD) & FD_CLOEXEC,
			      "descriptor %d survives exec", fd);
	}
	ck_assert_uint_eq(opened, 2); /* uffd + eventfd, or uffd + pagemap */
	uf.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uffd_detach();
}
END_TEST

/* The library's own threads: a handler thread ends with its attachment. */
START_TEST(uffd_handler_threads_end_with_detach)
{
	int before;

	uffd_attach(PS_UFFD_THREAD); /* liburcu's call_rcu thread starts */
	uffd_detach();
	before = count_threads();
	for (int i = 0; i < 20; i++) {
		uffd_attach(PS_UFFD_THREAD);
		ck_assert_int_eq(count_threads(), before + 1);
		uffd_detach();
		ck_assert_int_eq(count_threads(), before);
	}
}
END_TEST
#endif /* PS_TEST_UFFD */

static Suite *fork_suite(void)
{
	Suite *s = suite_create("fork");
	TCase *tc;

	tc = ps_test_tcase(s, "plain_child_destroys", 60);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, plain_child_destroys_what_it_inherited);

	tc = ps_test_tcase(s, "bracketed_child_reads_and_creates", 60);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, bracketed_child_reads_and_creates);

	tc = ps_test_tcase(s, "inherited_use_is_refused", 120);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, inherited_use_is_refused, 0, 2 * NFORBIDDEN);

	tc = ps_test_tcase(s, "bracket_misuse_is_refused", 60);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, bracket_misuse_is_refused);

	tc = ps_test_tcase(s, "fork_during_discard", 60);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, fork_during_discard, 0, 2);

	tc = ps_test_tcase(s, "fork_inside_read_section", 60);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, fork_inside_read_section, 0, 2);

	tc = ps_test_tcase(s, "thread_exit", 120);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, exited_readers_give_back_their_slot);
	tcase_add_test(tc,
		       thread_exit_inside_section_does_not_block_grace_periods);

	tc = ps_test_tcase(s, "signals", 120);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, signal_handler_page_ops_and_lookups);

	tc = ps_test_stress_tcase(s, "stress", 300);
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, stress_fork_while_busy);

#ifdef PS_TEST_UFFD
	tc = ps_test_tcase(s, "uffd_child_detach", 60);
	tcase_set_tags(tc, "uffd");
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, uffd_child_detach_leaves_parent_attached, 0,
			    (int)(sizeof(uffd_modes) / sizeof(uffd_modes[0])));

	tc = ps_test_tcase(s, "uffd_inherited_use_is_refused", 60);
	tcase_set_tags(tc, "uffd");
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, uffd_inherited_use_is_refused, 0, 3);

	tc = ps_test_tcase(s, "uffd_descriptors_close_on_exec", 60);
	tcase_set_tags(tc, "uffd");
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_loop_test(tc, uffd_descriptors_close_on_exec, 0,
			    (int)(sizeof(uffd_modes) / sizeof(uffd_modes[0])));

	tc = ps_test_tcase(s, "uffd_handler_threads", 60);
	tcase_set_tags(tc, "uffd");
	tcase_add_checked_fixture(tc, world_setup, world_teardown);
	tcase_add_test(tc, uffd_handler_threads_end_with_detach);
#endif
	return s;
}

/* Asked for the uffd tcases alone, skip (77) where they cannot run. */
static int uffd_skip(void)
{
	const char *inc = getenv("CK_INCLUDE_TAGS");

	if (!inc || !strstr(inc, "uffd"))
		return 0;
#ifdef PS_TEST_UFFD
	{
		const char *why = NULL;
		int rc;

		if (geteuid() != 0) {
			printf("skip: the userfaultfd tests need root\n");
			return 77;
		}
		rc = ps_uffd_probe(PS_UFFD_THREAD, &why);
		if (!rc)
			rc = ps_uffd_probe(PS_UFFD_ASYNC, &why);
		if (rc) {
			printf("skip: userfaultfd bridge unavailable: "
			       "%s (%s)\n",
			       why ? why : "?", strerror(-rc));
			return 77;
		}
		return 0;
	}
#else
	printf("skip: built without the userfaultfd bridge\n");
	return 77;
#endif
}

int main(void)
{
	int skip = uffd_skip();

	return skip ? skip : ps_test_run(fork_suite());
}
