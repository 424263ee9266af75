// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz-page.c - the page word against a reference model.
 *
 * The input is a program: each operation is one byte (the opcode) followed
 * by an argument byte where it needs one. Arguments index a table of
 * interesting counts (0, 1, 2, 512, every limit and limit + 1, huge). The
 * model is the plain, single-threaded meaning of each operation as page.h
 * documents it, the named transitions (revive, lock, conditional flag and
 * cache-mode changes) included; misuse leaves the page exactly as it was.
 * After every operation the fuzzer checks that the library agrees with the
 * model on the return value, on the misuse reported to the error hook (which
 * error, or none), and on everything the accessors show: refs, pins, flags,
 * frozen, live, pinned. Any disagreement aborts, and libFuzzer keeps the input.
 *
 * The page is also a huge frame's word with NPARTS parts: split and merge move
 * its state to the parts and back, and gets and puts on one part make the parts
 * differ, so a merge is refused with each reason the model can reach.
 */
#include <pagestate/page.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t counts[] = {
	0,
	1,
	2,
	3,
	512,
	PS_PAGE_PINS_MAX - 1,
	PS_PAGE_PINS_MAX,
	PS_PAGE_PINS_MAX + 1,
	PS_PAGE_REFS_MAX - 1,
	PS_PAGE_REFS_MAX,
	PS_PAGE_REFS_MAX + 1,
	UINT64_MAX,
};
#define NCOUNTS (sizeof(counts) / sizeof(counts[0]))

/* The model: what page.h says the word means, without the word. */
struct model {
	bool live, frozen, split;
	uint64_t refs, pins, flags; /* flags: PS_PAGE_USER_FLAGS bits only */
};

#define NPARTS 4
/* Flags a part inherits from its frame; those a merge needs equal. */
#define COPIED                                                       \
	(PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED | PS_PAGE_CACHE_MASK | \
	 PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE | PS_PAGE_POISONED)
#define UNIFORM                                                        \
	(PS_PAGE_CACHE_MASK | PS_PAGE_PRIVATE | PS_PAGE_INACCESSIBLE | \
	 PS_PAGE_POISONED)

static int last_error;
static unsigned hook_calls;

static void hook(const struct ps_page *page, enum ps_page_error error,
		 uint64_t word)
{
	(void)page;
	(void)word;
	last_error = (int)error;
	hook_calls++;
}

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "fuzz-page: %s (op %u at %zu)\n", \
				#cond, op, at);                           \
			abort();                                          \
		}                                                         \
	} while (0)

static uint64_t visible_flags(const struct model *m)
{
	return m->flags | (m->live ? PS_PAGE_LIVE : 0) |
	       (m->frozen ? PS_PAGE_FROZEN : 0) |
	       (m->split ? PS_PAGE_SPLIT : 0);
}

/* Expected result of a holder's increment by @n (pins too if @pin). */
static int model_add(struct model *m, uint64_t n, bool pin, int *err)
{
	if (n == 0)
		return -EINVAL;
	if (m->split)
		return -ESTALE; /* not misuse: go to the parts */
	if (m->frozen) {
		*err = PS_PAGE_ERR_FROZEN; /* the unit is taken back */
		return -EINVAL;
	}
	if (!m->live || m->refs == 0) {
		*err = PS_PAGE_ERR_GET_ZERO;
		return -EINVAL;
	}
	if (n > PS_PAGE_REFS_MAX - m->refs ||
	    (pin && n > PS_PAGE_PINS_MAX - m->pins))
		return -EOVERFLOW;
	m->refs += n;
	if (pin)
		m->pins += n;
	return 0;
}

/* Expected result of a speculative increment. */
static bool model_try(struct model *m, uint64_t n, bool pin, uint64_t reject)
{
	if (n == 0 || !m->live || (m->flags & reject & PS_PAGE_USER_FLAGS) ||
	    n > PS_PAGE_REFS_MAX - m->refs ||
	    (pin && n > PS_PAGE_PINS_MAX - m->pins))
		return false;
	m->refs += n;
	if (pin)
		m->pins += n;
	return true;
}

/* Expected result of a release of @n references, @npins of them pins. */
static bool model_sub(struct model *m, uint64_t n, uint64_t npins, int *err)
{
	if (n == 0 || n > PS_PAGE_REFS_MAX || npins > PS_PAGE_PINS_MAX) {
		*err = PS_PAGE_ERR_BAD_COUNT;
		return false;
	}
	if (m->split) {
		*err = PS_PAGE_ERR_SPLIT; /* undone */
		return false;
	}
	if (m->frozen) {
		*err = PS_PAGE_ERR_FROZEN; /* nothing written */
		return false;
	}
	if (m->live && m->refs > n && m->pins >= npins &&
	    m->refs - n >= m->pins - npins) {
		m->refs -= n;
		m->pins -= npins;
		return false;
	}
	if (m->live && m->refs == n && m->pins == npins) {
		m->refs = m->pins = 0;
		m->live = false;
		m->flags &= ~PS_PAGE_LIFE_FLAGS; /* a free ends a lifetime */
		return true;
	}
	*err = (m->live && m->pins < npins) ? PS_PAGE_ERR_PIN_UNDERFLOW
					    : PS_PAGE_ERR_REF_UNDERFLOW;
	return false;
}

static unsigned int model_cache(const struct model *m)
{
	return (unsigned int)((m->flags & PS_PAGE_CACHE_MASK) >>
			      PS_PAGE_CACHE_SHIFT);
}

/*
 * Expected result of get_or_revive (@mode < 0) or get_or_revive_cache; the
 * latter also says which mode the page had (*@old_mode, unchanged on error).
 */
static int model_revive(struct model *m, int mode, unsigned int *old_mode)
{
	if (mode >= PS_CACHE_NR)
		return -EINVAL;
	if (m->split)
		return -ESTALE;
	if (m->frozen)
		return -EBUSY;
	if (m->live) {
		if (mode >= 0 && model_cache(m) != (unsigned int)mode)
			return -EBUSY;
		if (m->refs >= PS_PAGE_REFS_MAX)
			return -EOVERFLOW;
		if (old_mode)
			*old_mode = model_cache(m);
		m->refs++;
		return 0;
	}
	if (m->flags & PS_PAGE_POISONED)
		return -EHWPOISON;
	if (old_mode)
		*old_mode = model_cache(m);
	if (mode >= 0)
		m->flags = (m->flags & ~PS_PAGE_CACHE_MASK) |
			   (uint64_t)mode << PS_PAGE_CACHE_SHIFT;
	m->flags &= ~PS_PAGE_LIFE_FLAGS; /* a new lifetime starts clean */
	m->live = true;
	m->refs = 1;
	m->pins = 0;
	return 1;
}

/* Expected result of set_cache_if_free. */
static int model_set_cache(struct model *m, unsigned int mode, int expect)
{
	if (mode >= PS_CACHE_NR || expect >= PS_CACHE_NR || expect < -1)
		return -EINVAL;
	if (m->live || m->frozen || m->split)
		return -EBUSY;
	if (m->flags & PS_PAGE_POISONED)
		return -EHWPOISON;
	if (expect >= 0 && model_cache(m) != (unsigned int)expect)
		return -ESTALE;
	m->flags = (m->flags & ~PS_PAGE_CACHE_MASK) |
		   (uint64_t)mode << PS_PAGE_CACHE_SHIFT;
	return 0;
}

/* Expected result of ps_page_split() of @m into @part. */
static int model_split(struct model *m, struct model *part)
{
	if (m->split)
		return -EALREADY;
	if (m->frozen || (m->flags & (PS_PAGE_LOCKED | PS_PAGE_WRITEBACK)))
		return -EBUSY;
	for (int i = 0; i < NPARTS; i++)
		if (part[i].live || part[i].frozen || part[i].split ||
		    (part[i].flags & (PS_PAGE_LOCKED | PS_PAGE_WRITEBACK)))
			return -EBUSY;
	for (int i = 0; i < NPARTS; i++) {
		part[i] = *m;
		part[i].flags &= COPIED;
		if (!m->live)
			part[i].flags &= ~PS_PAGE_LIFE_FLAGS;
	}
	m->live = false;
	m->split = true;
	m->refs = m->pins = 0;
	m->flags &= ~PS_PAGE_LIFE_FLAGS;
	return 0;
}

/* Expected result of ps_page_merge(): the reason, or OK. */
static enum ps_page_merge_reason model_merge(struct model *m,
					     struct model *part, size_t *at)
{
	uint64_t dirty = 0;

	for (int i = 0; i < NPARTS; i++) {
		const struct model *p = &part[i];

		*at = (size_t)i;
		if (p->frozen || p->split ||
		    (p->flags & (PS_PAGE_LOCKED | PS_PAGE_WRITEBACK)))
			return PS_PAGE_MERGE_BUSY;
		if (p->live != part[0].live ||
		    (p->live && p->refs != part[0].refs))
			return PS_PAGE_MERGE_REFS;
		if (p->live && p->pins != part[0].pins)
			return PS_PAGE_MERGE_PINS;
		if ((p->flags ^ part[0].flags) & UNIFORM)
			return PS_PAGE_MERGE_MODE;
		dirty |= p->flags;
	}
	m->split = false;
	m->live = part[0].live;
	m->refs = part[0].live ? part[0].refs : 0;
	m->pins = part[0].live ? part[0].pins : 0;
	m->flags = (m->flags & ~COPIED) | (part[0].flags & COPIED);
	if (m->live)
		m->flags |= dirty & (PS_PAGE_DIRTY | PS_PAGE_WRITE_PINNED);
	for (int i = 0; i < NPARTS; i++) {
		part[i].live = false;
		part[i].refs = part[i].pins = 0;
		part[i].flags &= ~PS_PAGE_LIFE_FLAGS;
	}
	return PS_PAGE_MERGE_OK;
}

static void check_visible(const struct ps_page *p, const struct model *m,
			  unsigned op, size_t at)
{
	CHECK(ps_page_refs(p) == m->refs);
	CHECK(ps_page_pins(p) == m->pins);
	CHECK(ps_page_flags(p) == visible_flags(m));
	CHECK(ps_page_is_frozen(p) == m->frozen);
	CHECK(ps_page_is_live(p) == m->live);
	CHECK(ps_page_is_pinned(p) == (m->pins != 0));
	CHECK(ps_page_maybe_dma_pinned(p) == ps_page_is_pinned(p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ps_page page, part[NPARTS];
	struct model m = {0}, pm[NPARTS] = {{0}};
	size_t at = 0;

	ps_page_set_error_hook(hook);
	(void)ps_page_init(&page, 0);
	for (int i = 0; i < NPARTS; i++)
		(void)ps_page_init(&part[i], 0);
	while (at < size) {
		unsigned op = data[at++] % 32;
		/* The argument byte, if any (0 past the end of the input). */
		const uint8_t arg = at < size ? data[at] : 0;
		uint64_t n = counts[arg % NCOUNTS];
		uint64_t mask = (uint64_t)arg | (uint64_t)arg << 4;
		int want_err = 0, rc, want_rc;
		bool b, want_b;
		uint64_t before;

		hook_calls = 0;
		last_error = 0;
		switch (op) {
		case 0: /* init */
			at++;
			want_rc = n > PS_PAGE_REFS_MAX ? -EOVERFLOW : 0;
			CHECK(ps_page_init(&page, n) == want_rc);
			if (!want_rc) {
				m = (struct model){0};
				m.refs = n;
				m.live = n != 0;
			}
			break;
		case 1: /* get */
			want_rc = model_add(&m, 1, false, &want_err);
			CHECK(ps_page_get(&page) == want_rc);
			break;
		case 2: /* pin */
			want_rc = model_add(&m, 1, true, &want_err);
			CHECK(ps_page_pin(&page) == want_rc);
			break;
		case 3: /* get_many */
			at++;
			want_rc = model_add(&m, n, false, &want_err);
			CHECK(ps_page_get_many(&page, n) == want_rc);
			break;
		case 4: /* pin_many */
			at++;
			want_rc = model_add(&m, n, true, &want_err);
			CHECK(ps_page_pin_many(&page, n) == want_rc);
			break;
		case 5: /* try_get */
			want_b = model_try(&m, 1, false, 0);
			CHECK(ps_page_try_get(&page) == want_b);
			break;
		case 6: /* try_pin */
			want_b = model_try(&m, 1, true, 0);
			CHECK(ps_page_try_pin(&page) == want_b);
			break;
		case 7: /* try_get_many */
			at++;
			want_b = model_try(&m, n, false, 0);
			CHECK(ps_page_try_get_many(&page, n) == want_b);
			break;
		case 8: /* try_pin_masked */
			at++;
			want_b = model_try(&m, n, true, mask);
			CHECK(ps_page_try_pin_masked(&page, n, mask) == want_b);
			break;
		case 9: /* try_get_masked */
			at++;
			want_b = model_try(&m, n, false, mask);
			CHECK(ps_page_try_get_masked(&page, n, mask) == want_b);
			break;
		case 10: /* put */
			want_b = model_sub(&m, 1, 0, &want_err);
			CHECK(ps_page_put(&page) == want_b);
			break;
		case 11: /* unpin */
			want_b = model_sub(&m, 1, 1, &want_err);
			CHECK(ps_page_unpin(&page) == want_b);
			break;
		case 12: /* put_many */
			at++;
			want_b = model_sub(&m, n, 0, &want_err);
			CHECK(ps_page_put_many(&page, n) == want_b);
			break;
		case 13: /* unpin_many */
			at++;
			want_b = model_sub(&m, n, n, &want_err);
			CHECK(ps_page_unpin_many(&page, n) == want_b);
			break;
		case 14: /* freeze */
			at++;
			want_b = n <= PS_PAGE_REFS_MAX && m.live &&
				 m.refs == n && m.pins == 0;
			CHECK(ps_page_freeze(&page, n) == want_b);
			if (want_b) {
				m.live = false;
				m.frozen = true;
				m.refs = 0;
			}
			break;
		case 15: /* unfreeze */
			at++;
			if (n > PS_PAGE_REFS_MAX) {
				want_rc = -EOVERFLOW;
			} else if (!m.frozen) {
				want_rc = -EINVAL;
				want_err = PS_PAGE_ERR_NOT_FROZEN;
			} else {
				want_rc = 0;
				m.frozen = false;
				m.refs = n;
				m.pins = 0;
				m.live = n != 0;
				if (!n) /* a free ends a lifetime */
					m.flags &= ~PS_PAGE_LIFE_FLAGS;
			}
			CHECK(ps_page_unfreeze(&page, n) == want_rc);
			break;
		case 16: /* set_flags */
			at++;
			before = visible_flags(&m);
			m.flags |= mask & PS_PAGE_USER_FLAGS;
			CHECK(ps_page_set_flags(&page, mask) == before);
			break;
		case 17: /* clear_flags */
			at++;
			before = visible_flags(&m);
			m.flags &= ~(mask & PS_PAGE_USER_FLAGS);
			CHECK(ps_page_clear_flags(&page, mask) == before);
			break;
		case 18: /* test_and_set / test_and_clear one flag */
			at++;
			mask = UINT64_C(1) << (mask % PS_PAGE_FLAGS_WIDTH);
			if (mask & PS_PAGE_USER_FLAGS) {
				want_b = (m.flags & mask) != 0;
				if (arg & 0x80) {
					m.flags &= ~mask;
					b = ps_page_test_and_clear_flag(&page,
									mask);
				} else {
					m.flags |= mask;
					b = ps_page_test_and_set_flag(&page,
								      mask);
				}
				CHECK(b == want_b);
			}
			break;
		case 20: /* get_or_revive */
			want_rc = model_revive(&m, -1, NULL);
			CHECK(ps_page_get_or_revive(&page) == want_rc);
			break;
		case 21: /* get_or_revive_cache */
			at++;
			{
				unsigned int old = 99, want_old = 99;

				enum ps_cache_mode mode =
					(enum ps_cache_mode)(arg % 8);

				want_rc = model_revive(&m, arg % 8, &want_old);
				CHECK(ps_page_get_or_revive_cache(&page, mode,
								  &old) ==
				      want_rc);
				CHECK(old == want_old);
			}
			break;
		case 22: /* unfreeze_change_flags */
			at++;
			if (n > PS_PAGE_REFS_MAX) {
				want_rc = -EOVERFLOW;
			} else if (!m.frozen) {
				want_rc = -EINVAL;
				want_err = PS_PAGE_ERR_NOT_FROZEN;
			} else {
				want_rc = 0;
				m.frozen = false;
				m.refs = n;
				m.pins = 0;
				m.live = n != 0;
				if (!n) /* a free ends a lifetime */
					m.flags &= ~PS_PAGE_LIFE_FLAGS;
				m.flags &= ~(mask & PS_PAGE_USER_FLAGS);
				m.flags |= (mask >> 3) & PS_PAGE_USER_FLAGS;
			}
			CHECK(ps_page_unfreeze_change_flags(&page, n, mask,
							    mask >> 3) ==
			      want_rc);
			break;
		case 23: /* try_pin_and_set_flags: reject some, set others */
			at++;
			want_b = model_try(&m, n, true, mask & 0xf0);
			if (want_b)
				m.flags |= (mask >> 5) & PS_PAGE_USER_FLAGS;
			b = ps_page_try_pin_and_set_flags(&page, n, mask & 0xf0,
							  mask >> 5);
			CHECK(b == want_b);
			break;
		case 24: /* clear_flag_if_unpinned */
			at++;
			mask = UINT64_C(1) << (arg % PS_PAGE_FLAGS_WIDTH);
			want_b = (mask & PS_PAGE_USER_FLAGS & m.flags) &&
				 m.pins == 0;
			if (want_b)
				m.flags &= ~mask;
			CHECK(ps_page_clear_flag_if_unpinned(&page, mask) ==
			      want_b);
			break;
		case 25: /* set_flags_unless_frozen */
			at++;
			want_b = !m.frozen;
			if (want_b)
				m.flags |= mask & PS_PAGE_USER_FLAGS;
			CHECK(ps_page_set_flags_unless_frozen(&page, mask) ==
			      want_b);
			break;
		case 26: /* set_cache_if_free */
			at++;
			{
				enum ps_cache_mode mode =
					(enum ps_cache_mode)(arg % 8);
				int expect = (int)(arg >> 3) % 9 - 1;

				want_rc = model_set_cache(&m, arg % 8, expect);
				CHECK(ps_page_set_cache_if_free(&page, mode,
								expect) ==
				      want_rc);
			}
			break;
		case 27: /* the page lock: trylock or unlock */
			at++;
			if (arg & 1) {
				want_b = !(m.flags & PS_PAGE_LOCKED);
				m.flags |= PS_PAGE_LOCKED;
				CHECK(ps_page_trylock(&page) == want_b);
			} else {
				m.flags &= ~PS_PAGE_LOCKED;
				ps_page_unlock(&page);
			}
			break;
		case 28: /* split */
			want_rc = model_split(&m, pm);
			CHECK(ps_page_split(&page, part, NPARTS, NULL) ==
			      want_rc);
			break;
		case 29: { /* merge */
			struct ps_page_merge_refusal why;
			enum ps_page_merge_reason want_r = PS_PAGE_MERGE_OK;
			size_t want_at = 0;

			if (!m.split || m.frozen)
				want_rc = -EINVAL;
			else {
				want_r = model_merge(&m, pm, &want_at);
				want_rc = want_r ? -EBUSY : 0;
			}
			CHECK(ps_page_merge(&page, part, NPARTS, &why) ==
			      want_rc);
			CHECK(why.reason == want_r);
			CHECK(!want_r || why.index == want_at);
			break;
		}
		case 30: /* a get on one part */
			at++;
			want_rc = model_add(&pm[arg % NPARTS], 1, false,
					    &want_err);
			CHECK(ps_page_get(&part[arg % NPARTS]) == want_rc);
			break;
		case 31: /* a put on one part */
			at++;
			want_b = model_sub(&pm[arg % NPARTS], 1, 0, &want_err);
			CHECK(ps_page_put(&part[arg % NPARTS]) == want_b);
			break;
		default: /* change_flags: clear one set of bits, set another */
			at++;
			before = visible_flags(&m);
			m.flags = (m.flags & ~(mask & PS_PAGE_USER_FLAGS)) |
				  ((mask >> 3) & PS_PAGE_USER_FLAGS);
			CHECK(ps_page_change_flags(&page, mask, mask >> 3) ==
			      before);
			break;
		}
		rc = want_err;
		CHECK(hook_calls == (rc ? 1u : 0u));
		CHECK(last_error == rc);
		check_visible(&page, &m, op, at);
		for (int i = 0; i < NPARTS; i++)
			check_visible(&part[i], &pm[i], op, at);
	}
	return 0;
}
