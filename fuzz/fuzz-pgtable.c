// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-pgtable.c - page-table operation sequences against a plain
 * reference model (fuzz/pgtable-model.h).
 *
 * The input is a program over two tables (copy goes from one to the other).
 * An operation is one byte: the low four bits choose the operation, bit 4
 * the table, bits 5-7 a variant; its arguments follow (pages, ranges,
 * entries, flags). Every operation of pgtable.h is there: set, get,
 * cmpxchg, map, register and unregister with every flag combination (and
 * unknown ones), protect, unprotect, zap with and without PS_ZAP_UNMAP
 * (its visit callback checked entry by entry), swap out and in, faults
 * (read, write, RESOLVE_WP, invalid access bits, through the three entry
 * points), copy and move between and within the tables, trim (with the
 * level counts checked after a whole-space trim), and a report-only scan of
 * everything. Addresses are a 64-page window across the leaf boundary at
 * page 512 plus the last page of the space; ranges sometimes cover pages
 * outside the model where the operation cannot change them, and sometimes
 * are invalid in each of the ways the header lists.
 *
 * After every operation: the return value (or fault result) against the
 * model's, and every modelled page of both tables, entry and registration
 * (ps_pgtable_registration()). Any disagreement aborts.
 */
#include "pgtable-model.h"

static struct ps_pgtable *tab[2];
static struct mtable model[2];

/* --- visits --------------------------------------------------------------- */

struct visit {
	uint64_t addr;
	ps_pte_t old, new_pte;
};

static struct {
	unsigned int n;
	struct visit v[NPAGES_M];
} got_visits, want_visits;

static void visit_fn(void *ctx, uint64_t addr, ps_pte_t old, ps_pte_t new_pte)
{
	CHECK(ctx == &got_visits);
	CHECK(got_visits.n < NPAGES_M); /* one visit per page at most */
	got_visits.v[got_visits.n++] = (struct visit){addr, old, new_pte};
}

static void want_visit(uint64_t addr, ps_pte_t old, ps_pte_t new_pte)
{
	CHECK(want_visits.n < NPAGES_M);
	want_visits.v[want_visits.n++] = (struct visit){addr, old, new_pte};
}

static void print_visit(const char *what, const struct visit *v)
{
	fprintf(stderr, "%s %#llx: %#llx -> %#llx\n", what,
		(unsigned long long)v->addr, (unsigned long long)v->old,
		(unsigned long long)v->new_pte);
}

static void check_visits(void)
{
	bool same = got_visits.n == want_visits.n;

	for (unsigned int i = 0; same && i < got_visits.n; i++)
		same = !memcmp(&got_visits.v[i], &want_visits.v[i],
			       sizeof(struct visit));
	if (same)
		return;
	for (unsigned int i = 0; i < got_visits.n; i++)
		print_visit("visited", &got_visits.v[i]);
	for (unsigned int i = 0; i < want_visits.n; i++)
		print_visit("want", &want_visits.v[i]);
	CHECK(same);
}

/* --- operations ----------------------------------------------------------- */

static int want_of(bool einval, int rc)
{
	return einval ? -EINVAL : rc;
}

static void op_set(int k, struct in *in)
{
	uint64_t addr = gen_addr(in);
	ps_pte_t e = gen_entry(in), old = 0x4242;
	int i = mindex(addr);
	int rc = ps_pgtable_set(tab[k], addr, e, &old);

	if (m_bad_addr(addr) || !ps_pte_valid(e)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(old, model[k].e[i]);
	model[k].e[i] = e;
}

static void op_get(int k, struct in *in)
{
	uint64_t addr = gen_addr(in);
	ps_pte_t e = 0x4242;
	int rc = ps_pgtable_get(tab[k], addr, &e);

	if (m_bad_addr(addr)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(e, model[k].e[mindex(addr)]);
}

static void op_cmpxchg(int k, unsigned int variant, struct in *in)
{
	uint64_t addr = gen_addr(in);
	int i = mindex(addr);
	ps_pte_t expected = gen_entry(in), desired = gen_entry(in);
	int rc;

	if (i >= 0 && (variant & 1))
		expected = model[k].e[i]; /* mostly the right guess */
	rc = ps_pgtable_cmpxchg(tab[k], addr, &expected, desired);
	if (m_bad_addr(addr) || !ps_pte_valid(desired)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (expected == model[k].e[i] && rc == 0) {
		model[k].e[i] = desired;
		return;
	}
	CHECK_EQ(rc, -EAGAIN);
	CHECK_EQ(expected, model[k].e[i]);
}

static void op_map(int k, unsigned int variant, struct in *in)
{
	struct range r = gen_range(in, false);
	uint64_t end = r.start + r.len, frame, flags, npages = r.len / PG;
	struct mtable *m = &model[k];
	bool einval, enoent, eexist = false;
	int rc;

	flags = (uint64_t)u8(in) << 2 | (uint64_t)u8(in) << 10;
	flags &= PS_PTE_PRESENT_FLAGS;
	if (variant & 1)
		flags |= PS_PTE_UFFD_WP;
	if (variant == 6)
		flags |= UINT64_C(1) << (11 + u8(in) % 53); /* unknown */
	frame = variant == 7 ? PS_PTE_FRAME_MAX - u8(in) % 70 : u8(in);
	einval = m_bad_range(r.start, r.len) ||
		 (flags & ~PS_PTE_PRESENT_FLAGS) || frame > PS_PTE_FRAME_MAX ||
		 npages - 1 > PS_PTE_FRAME_MAX - frame;
	rc = ps_pgtable_map(tab[k], r.start, r.len, frame, flags);
	if (einval) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	enoent = (flags & PS_PTE_UFFD_WP) &&
		 !all_registered(m, r.start, end, 0);
	FOR_PAGES(i, r.start, end)
	{
		if (m->e[i] != PS_PTE_NONE && m->e[i] != MU && m->e[i] != MWR)
			eexist = true;
	}
	if (enoent || eexist) {
		/* Which of the two comes first is not documented. */
		CHECK(rc == (enoent ? -ENOENT : -EEXIST) ||
		      rc == (eexist ? -EEXIST : -ENOENT));
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, end)
	{
		uint64_t f = frame + (maddr(i) - r.start) / PG;

		m->e[i] = ps_pte_mk_present(f, flags | (m->e[i] == MU
								? PS_PTE_UFFD_WP
								: 0));
	}
}

static void op_register(int k, unsigned int variant, struct in *in)
{
	struct range r = gen_range(in, false);
	unsigned int flags = variant & PS_WP_ALL;
	struct mtable *m = &model[k];
	int rc;

	if ((variant & 7) == 7 && (u8(in) & 1))
		flags |= (PS_WP_ALL + 1) << (u8(in) % 26); /* an unknown flag */
	rc = ps_pgtable_register(tab[k], r.start, r.len, flags);
	if (m_bad_range(r.start, r.len) || (flags & ~PS_WP_ALL) ||
	    (flags & (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE)) ==
		    (PS_WP_HUGE_SPLIT | PS_WP_HUGE_WHOLE)) {
		CHECK_EQ(rc, -EINVAL); /* at most one huge granularity */
		return;
	}
	if (any_registered(m, r.start, r.start + r.len)) {
		CHECK_EQ(rc, -EBUSY);
		return;
	}
	CHECK_EQ(rc, 0);
	if (flags & PS_WP_ASYNC)
		flags |= PS_WP_UNPOPULATED; /* ASYNC implies UNPOPULATED */
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		m->reg[i] = MREG | flags;
	}
}

static void op_unregister(int k, struct in *in)
{
	struct range r = gen_range(in, true);
	struct mtable *m = &model[k];
	int rc = ps_pgtable_unregister(tab[k], r.start, r.len);

	if (m_bad_range(r.start, r.len)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (!any_registered(m, r.start, r.start + r.len)) {
		CHECK_EQ(rc, -ENOENT);
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		m->reg[i] = 0;
		m->e[i] = m_unprotect(m->e[i]);
	}
}

static void op_wp(int k, bool protect, struct in *in)
{
	struct range r = gen_range(in, true);
	struct mtable *m = &model[k];
	int rc = protect ? ps_pgtable_protect(tab[k], r.start, r.len)
			 : ps_pgtable_unprotect(tab[k], r.start, r.len);

	if (m_bad_range(r.start, r.len)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (!all_registered(m, r.start, r.start + r.len, 0)) {
		CHECK_EQ(rc, -ENOENT);
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		m->e[i] = protect ? m_protect(m->e[i], m->reg[i])
				  : m_unprotect(m->e[i]);
	}
}

static void op_zap(int k, unsigned int variant, struct in *in)
{
	struct range r = gen_range(in, true);
	unsigned int flags = variant & 1 ? PS_ZAP_UNMAP : 0;
	bool visit = !(variant & 2);
	struct mtable *m = &model[k];
	struct ps_pgtable_stats before, after;
	int rc;

	if (variant == 7) /* an unknown flag (PS_ZAP_UNITS is known) */
		flags |= 4u << (u8(in) % 30);
	else if (variant & 4) /* no huge leaves here: visits as without */
		flags |= PS_ZAP_UNITS;
	got_visits.n = want_visits.n = 0;
	ps_pgtable_stats(tab[k], &before);
	rc = ps_pgtable_zap(tab[k], r.start, r.len, flags,
			    visit ? visit_fn : NULL, &got_visits);
	ps_pgtable_stats(tab[k], &after);
	/* "Never allocates" (nor frees: only trim does). */
	CHECK(!memcmp(&before, &after, sizeof(before)));
	if (m_bad_range(r.start, r.len) ||
	    (flags & ~(PS_ZAP_UNMAP | PS_ZAP_UNITS))) {
		CHECK_EQ(rc, -EINVAL);
		CHECK_EQ(got_visits.n, 0);
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, r.start + r.len)
	{
		ps_pte_t n = m_zap(m->e[i], m->reg[i], flags & PS_ZAP_UNMAP);

		if (n != m->e[i] && visit)
			want_visit(maddr(i), m->e[i], n);
		m->e[i] = n;
	}
	check_visits();
}

static void op_swap_out(int k, unsigned int variant, struct in *in)
{
	uint64_t addr = gen_addr(in);
	uint8_t x = u8(in);
	unsigned int type = variant == 7 ? 32u + x : x % 32u;
	uint64_t offset = variant == 6 ? PS_PTE_SWP_OFFSET_MAX + (x & 1)
				       : (uint64_t)u8(in) << 8;
	uint64_t flags = variant & 1 ? PS_PTE_SWP_EXCLUSIVE : 0;
	ps_pte_t old = 0x4242;
	int i = mindex(addr), rc;

	if (variant == 5)
		flags |= x & 0x80 ? PS_PTE_UFFD_WP : UINT64_C(1) << (x % 64);
	rc = ps_pgtable_swap_out(tab[k], addr, type, offset, flags, &old);
	if (m_bad_addr(addr) || type > PS_PTE_SWP_TYPE_MAX ||
	    offset > PS_PTE_SWP_OFFSET_MAX || (flags & ~PS_PTE_SWP_EXCLUSIVE)) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (!ps_pte_is_present(model[k].e[i])) {
		CHECK_EQ(rc, -ENXIO);
		return;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(old, model[k].e[i]);
	model[k].e[i] = ps_pte_mk_swap(type, offset,
				       flags | (old & PS_PTE_UFFD_WP));
}

static void op_swap_in(int k, unsigned int variant, struct in *in)
{
	uint64_t addr = gen_addr(in);
	uint64_t frame = variant == 7 ? PS_PTE_FRAME_MAX + (u8(in) & 1)
				      : u8(in);
	uint64_t flags = ((uint64_t)u8(in) << 2) & PS_PTE_PRESENT_FLAGS;
	ps_pte_t old = 0x4242;
	int i = mindex(addr), rc;

	if (variant == 6)
		flags |= UINT64_C(1) << (u8(in) % 64); /* maybe UFFD_WP */
	rc = ps_pgtable_swap_in(tab[k], addr, frame, flags, &old);
	if (m_bad_addr(addr) || frame > PS_PTE_FRAME_MAX ||
	    (flags & ~(PS_PTE_PRESENT_FLAGS & ~PS_PTE_UFFD_WP))) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	if (!ps_pte_is_swap(model[k].e[i])) {
		CHECK_EQ(rc, -ENXIO);
		return;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(old, model[k].e[i]);
	model[k].e[i] = ps_pte_mk_present(frame,
					  flags | (old & PS_PTE_UFFD_WP));
}

static void op_fault(int k, unsigned int variant, struct in *in)
{
	uint64_t addr = gen_addr(in);
	uint8_t x = u8(in);
	/* READ, WRITE, RESOLVE_WP, and CHECK (classify only) now and then. */
	unsigned int access = (x & 7) |
			      (variant == 4 || variant == 5 ? PS_ACCESS_CHECK
							    : 0);
	int i = mindex(addr);
	enum ps_fault fr, want;
	ps_pte_t after = 0x4242, want_after;

	if (variant == 7)
		access |= 16u << (x % 28); /* an unknown access bit */
	switch (variant % 3) {		   /* the three entry points */
	case 0:
		fr = ps_pgtable_fault(tab[k], addr, access);
		break;
	case 1:
		fr = ps_pgtable_fault_pte(tab[k], addr, access, &after);
		break;
	default:
		ps_pgtable_read_lock();
		fr = ps_pgtable_fault_locked(tab[k], addr, access, &after);
		ps_pgtable_read_unlock();
		break;
	}
	if (m_bad_addr(addr) ||
	    (access &
	     ~(unsigned int)(PS_ACCESS_READ | PS_ACCESS_WRITE |
			     PS_ACCESS_RESOLVE_WP | PS_ACCESS_CHECK)) ||
	    !(access & (PS_ACCESS_READ | PS_ACCESS_WRITE))) {
		CHECK_EQ(fr, PS_FAULT_INVALID);
		return;
	}
	want = m_fault(model[k].e[i], model[k].reg[i],
		       access & ~PS_ACCESS_CHECK, &want_after);
	if (access & PS_ACCESS_CHECK)
		want_after = model[k].e[i]; /* answers, changes nothing */
	if (fr != want)
		fprintf(stderr, "fault %#x on %#llx (reg %#x): %d, want %d\n",
			access, (unsigned long long)model[k].e[i],
			model[k].reg[i], fr, want);
	CHECK_EQ(fr, want);
	if (variant % 3)
		CHECK_EQ(after, want_after);
	model[k].e[i] = want_after;
}

/* Is every page of [start, end) of @m none? (pages not modelled are) */
static bool all_none(const struct mtable *m, uint64_t start, uint64_t end)
{
	FOR_PAGES(i, start, end)
	{
		if (m->e[i] != PS_PTE_NONE)
			return false;
	}
	return true;
}

static void op_copy(int k, unsigned int variant, struct in *in)
{
	struct range r = gen_range(in, true);
	int d = variant == 7 ? k : !k;
	unsigned int flags = variant & 1 ? PS_KEEP_WP : 0;
	bool visit = !(variant & 2), einval, enoent, eexist;
	struct mtable *src = &model[k], *dst = &model[d];
	uint64_t end = r.start + r.len;
	int rc;

	if (variant == 6)
		flags |= 2u << (u8(in) % 31);
	got_visits.n = want_visits.n = 0;
	rc = ps_pgtable_copy(tab[d], tab[k], r.start, r.len, flags,
			     visit ? visit_fn : NULL, &got_visits);
	einval = m_bad_range(r.start, r.len) || d == k || (flags & ~PS_KEEP_WP);
	if (einval) {
		CHECK_EQ(rc, -EINVAL);
		CHECK_EQ(got_visits.n, 0);
		return;
	}
	enoent = (flags & PS_KEEP_WP) && !all_registered(dst, r.start, end, 0);
	eexist = !all_none(dst, r.start, end);
	if (enoent || eexist) {
		CHECK(rc == (enoent ? -ENOENT : -EEXIST) ||
		      rc == (eexist ? -EEXIST : -ENOENT));
		CHECK_EQ(got_visits.n, 0);
		return;
	}
	CHECK_EQ(rc, 0);
	FOR_PAGES(i, r.start, end)
	{
		ps_pte_t n = m_copy(src->e[i], flags & PS_KEEP_WP);

		if (n == PS_PTE_NONE)
			continue;
		dst->e[i] = n;
		if (visit)
			want_visit(maddr(i), src->e[i], n);
	}
	check_visits();
}

static void op_move(int k, unsigned int variant, struct in *in)
{
	struct range r = gen_range(in, false);
	unsigned int flags = variant & 1 ? PS_KEEP_WP : 0;
	uint8_t x = u8(in);
	uint64_t to, from = r.start, len = r.len;
	struct mtable *m = &model[k];
	bool einval, enoent, eexist;
	ps_pte_t moved[NPAGES_M];
	int rc;

	if (variant == 6)
		flags |= 2u << (x % 31);
	/* The target: a window range of the same length, or the edge page. */
	if (len / PG == 1 && (x & 0x80))
		to = EDGE_ADDR;
	else if (len / PG <= WIN_PAGES && len % PG == 0 && len)
		to = maddr(x % (WIN_PAGES - (unsigned int)(len / PG) + 1));
	else
		to = WIN_START; /* with an invalid @r */
	if (variant == 5)
		to += PG / 2; /* unaligned */
	rc = ps_pgtable_move(tab[k], from, to, len, flags);
	einval = m_bad_range(from, len) || m_bad_range(to, len) ||
		 (from < to + len && to < from + len) || (flags & ~PS_KEEP_WP);
	if (einval) {
		CHECK_EQ(rc, -EINVAL);
		return;
	}
	enoent = (flags & PS_KEEP_WP) && !all_registered(m, to, to + len, 0);
	eexist = !all_none(m, to, to + len);
	if (enoent || eexist) {
		CHECK(rc == (enoent ? -ENOENT : -EEXIST) ||
		      rc == (eexist ? -EEXIST : -ENOENT));
		return;
	}
	CHECK_EQ(rc, 0);
	for (unsigned int j = 0; j < len / PG; j++) {
		int s = mindex(from + j * PG);

		moved[j] = m_copy(m->e[s], flags & PS_KEEP_WP);
		m->e[s] = PS_PTE_NONE;
	}
	for (unsigned int j = 0; j < len / PG; j++)
		m->e[mindex(to + j * PG)] = moved[j];
}

/*
 * The levels that hold a non-none entry of table @k: the least a table can
 * have, and exactly what a whole-space trim must leave.
 */
static void needed_levels(int k, uint64_t *leaves, uint64_t *nodes)
{
	const struct mtable *m = &model[k];
	bool leaf[3] = {false, false, false};

	for (unsigned int i = 0; i < NPAGES_M; i++)
		if (m->e[i] != PS_PTE_NONE)
			leaf[i == EDGE ? 2 : (WIN_FIRST + i) / 512] = true;
	*leaves = (uint64_t)leaf[0] + leaf[1] + leaf[2];
	/* The window's leaves share one mid and one low node. */
	*nodes = 2 * ((uint64_t)(leaf[0] || leaf[1]) + leaf[2]);
}

static void check_trimmed(int k)
{
	struct ps_pgtable_stats st;
	uint64_t leaves, nodes;

	needed_levels(k, &leaves, &nodes);
	ps_pgtable_stats(tab[k], &st);
	CHECK_EQ(st.leaves, leaves);
	CHECK_EQ(st.nodes, nodes);
}

static void op_trim(int k, struct in *in)
{
	struct range r = gen_range(in, true);
	struct ps_pgtable_stats before, after;
	uint64_t leaves, nodes;
	int rc;

	ps_pgtable_stats(tab[k], &before);
	rc = ps_pgtable_trim(tab[k], r.start, r.len);
	ps_pgtable_stats(tab[k], &after);
	if (m_bad_range(r.start, r.len)) {
		CHECK_EQ(rc, -EINVAL);
		CHECK(!memcmp(&before, &after, sizeof(before)));
		return;
	}
	CHECK_EQ(rc, 0);
	/* Only frees, and never a level that holds an entry. */
	needed_levels(k, &leaves, &nodes);
	CHECK(after.leaves <= before.leaves && after.leaves >= leaves);
	CHECK(after.nodes <= before.nodes && after.nodes >= nodes);
	if (r.start == 0 && r.len == SPACE_END)
		check_trimmed(k);
}

/* A report-only scan of everything: every category of every page. */
static void op_scan_all(int k, unsigned int variant)
{
	struct ps_pgtable_region vec[1];
	struct ps_pgtable_scan a = {
		.start = 0,
		.end = SPACE_END,
		.return_mask = PS_CAT_ALL,
		.vec = vec,
		.vec_len = VEC_MAX,
	};

	if (variant & 1) /* the hinted path: only written pages */
		a.category_mask = PS_CAT_WRITTEN;
	if (variant & 2)
		a.category_anyof_mask = PS_CAT_WRITTEN;
	if (variant & 4) { /* re-arm the window, hint included */
		a.start = WIN_START;
		a.end = WIN_END;
		a.flags = PS_SCAN_WP_MATCHING;
	}
	check_scan(tab[k], &model[k], &a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};

	for (int k = 0; k < 2; k++) {
		if (!tab[k])
			tab[k] = ps_pgtable_create();
		CHECK(tab[k]);
		memset(&model[k], 0, sizeof(model[k]));
	}
	while (in.at < in.n) {
		uint8_t b;
		int k;
		unsigned int variant;

		fz_at = in.at;
		b = u8(&in);
		fz_op = b & 15;
		k = (b >> 4) & 1;
		variant = b >> 5;
		switch (fz_op) {
		case 0:
			op_set(k, &in);
			break;
		case 1:
			op_get(k, &in);
			break;
		case 2:
			op_cmpxchg(k, variant, &in);
			break;
		case 3:
			op_map(k, variant, &in);
			break;
		case 4:
			op_register(k, variant, &in);
			break;
		case 5:
			op_unregister(k, &in);
			break;
		case 6:
			op_wp(k, true, &in);
			break;
		case 7:
			op_wp(k, false, &in);
			break;
		case 8:
			op_zap(k, variant, &in);
			break;
		case 9:
			op_swap_out(k, variant, &in);
			break;
		case 10:
			op_swap_in(k, variant, &in);
			break;
		case 11:
			op_fault(k, variant, &in);
			break;
		case 12:
			op_copy(k, variant, &in);
			break;
		case 13:
			op_move(k, variant, &in);
			break;
		case 14:
			op_trim(k, &in);
			break;
		default:
			op_scan_all(k, variant);
			break;
		}
		compare_table(tab[0], &model[0]);
		compare_table(tab[1], &model[1]);
	}
	/*
	 * Leave both tables empty, unregistered and trimmed for the next
	 * input: as good as new (fresh leaves, fresh hints), without
	 * destroy's wait for deferred frees, which costs milliseconds.
	 */
	fz_op = 16;
	for (int k = 0; k < 2; k++) {
		CHECK_EQ(ps_pgtable_unregister(tab[k], 0, SPACE_END),
			 any_registered_at_all(&model[k]) ? 0 : -ENOENT);
		CHECK_EQ(ps_pgtable_zap(tab[k], 0, SPACE_END, PS_ZAP_UNMAP,
					NULL, NULL),
			 0);
		CHECK_EQ(ps_pgtable_trim(tab[k], 0, SPACE_END), 0);
		memset(&model[k], 0, sizeof(model[k]));
		check_trimmed(k);
	}
	return 0;
}
