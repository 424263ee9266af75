// SPDX-License-Identifier: MIT
/*
 * tests/consumer-cxx.cc - a C++ program using every static initialiser of
 * the public headers (every PS_*_INIT; tests/meson.build checks that none
 * is missing here) and a few calls through the inline functions. Built as
 * C++11 and as C++17 against the library, and run.
 */
#include <pagestate/pagestate.h>

#include <cstdio>

/* Namespace scope: constant initialisation, as a C program would do it. */
static struct ps_page global_page = PS_PAGE_INIT(0);
static struct ps_seq global_seq = PS_SEQ_INIT;
static const uint64_t live_word = PS_PAGE_WORD_INIT(1);

#define EXPECT(cond)                                                         \
	do {                                                                 \
		if (!(cond)) {                                               \
			std::fprintf(stderr, "consumer-cxx (C++ %ld): %s\n", \
				     (long)__cplusplus, #cond);              \
			return 1;                                            \
		}                                                            \
	} while (0)

namespace
{

bool on_invalidate(struct ps_interval *sub, const struct ps_invalidation *,
		   uint64_t cur_seq, void *)
{
	ps_interval_set_seq(sub, cur_seq);
	return true;
}

} // namespace

int main()
{
	struct ps_page page = PS_PAGE_INIT(1);
	struct ps_page pages[2] = {PS_PAGE_INIT(1), PS_PAGE_INIT(0)};
	struct ps_seq seq = PS_SEQ_INIT;
	static const struct ps_interval_ops ops = {on_invalidate};
	struct ps_notifier n;
	struct ps_interval sub;
	uint64_t s;

	EXPECT(ps_page_load(&global_page) == 0);
	EXPECT(ps_page_load(&page) == live_word);
	EXPECT(ps_page_refs(&pages[0]) == 1 && ps_page_refs(&pages[1]) == 0);

	/* page.h: a pin and its release, through the inline fast paths. */
	EXPECT(ps_page_pin(&page) == 0 && ps_page_is_pinned(&page));
	EXPECT(!ps_page_unpin(&page) && ps_page_put(&page));

	/* seq.h: header-only. */
	s = ps_seq_read_begin(&seq);
	EXPECT(!ps_seq_read_retry(&seq, s));
	ps_seq_write_begin(&global_seq);
	ps_seq_write_end(&global_seq);
	EXPECT(ps_seq_read_retry(&global_seq, 0));

	/* notifier.h: the library, and the exported slow path of read_begin. */
	EXPECT(ps_notifier_init(&n) == 0);
	EXPECT(ps_interval_insert(&sub, &n, 0, 4096, &ops, nullptr) == 0);
	s = ps_interval_read_begin(&sub);
	EXPECT(ps_notifier_invalidate_start(&n, 0, 1, PS_NOTIFIER_UNMAP, 0) ==
	       0);
	EXPECT(ps_notifier_invalidate_end(&n, 0, 1) == 0);
	EXPECT(ps_interval_read_retry(&sub, s));
	ps_interval_remove(&sub);
	EXPECT(ps_notifier_destroy(&n) == 0);

	/* version.h */
	EXPECT(ps_version_check(PS_VERSION_MAJOR, PS_VERSION_MINOR,
				PS_VERSION_PATCH));
	std::printf("consumer-cxx: C++ %ld, libpagestate %s\n",
		    (long)__cplusplus, ps_version());
	return 0;
}
