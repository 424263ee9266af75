// SPDX-License-Identifier: MIT
/* An outside program, built by check-install.sh from the installed tree. */
#include <pagestate/pagestate.h>

#include <stdio.h>

static bool on_invalidate(struct ps_interval *sub,
			  const struct ps_invalidation *inv, uint64_t cur_seq,
			  void *priv)
{
	(void)inv;
	(void)priv;
	ps_interval_set_seq(sub, cur_seq);
	return true;
}

/* The notifier links liburcu-bp: pkg-config --static must bring it. */
static int notifier_round_trip(void)
{
	static const struct ps_interval_ops ops = {on_invalidate};
	struct ps_notifier n;
	struct ps_interval sub;
	uint64_t seq;
	int bad;

	if (ps_notifier_init(&n) ||
	    ps_interval_insert(&sub, &n, 0, 4096, &ops, NULL))
		return 1;
	seq = ps_interval_read_begin(&sub);
	bad = ps_notifier_invalidate_start(&n, 0, 1, PS_NOTIFIER_UNMAP, 0) ||
	      ps_notifier_invalidate_end(&n, 0, 1) ||
	      !ps_interval_read_retry(&sub, seq);
	ps_interval_remove(&sub);
	return bad || ps_notifier_destroy(&n);
}

int main(void)
{
	struct ps_page page = PS_PAGE_INIT(1);

	if (ps_page_pin(&page) != 0 || !ps_page_is_pinned(&page))
		return 1;
	if (ps_page_unpin(&page) || !ps_page_put(&page))
		return 1;
	if (notifier_round_trip())
		return 1;
	puts("consumer: linked against the installed libpagestate");
	return 0;
}
