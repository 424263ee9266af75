// SPDX-License-Identifier: MIT
/* lib/rcu.c - see rcu.h. */
#include "rcu.h"

#include "fork.h"

#include <stddef.h>

#if PS_TSAN
/* The sync object of the TSan annotations: its address is all that counts. */
char ps__rcu_tsan_sync;
#endif

#if PS_RCU_INLINE
void ps__rcu_read_lock_first(void)
{
	PS__RCU_TSAN_IGNORE(_urcu_bp_read_lock()); /* registers the thread */
}
#endif

static void trampoline(struct rcu_head *rh)
{
	struct ps__rcu_head *h =
		(struct ps__rcu_head *)((char *)rh -
					offsetof(struct ps__rcu_head, head));

#if PS_TSAN
	__tsan_acquire(&ps__rcu_tsan_sync); /* readers that finished */
	__tsan_acquire(h);		    /* the writer that queued @h */
#endif
	h->fn(h);
}

void ps__rcu_call(struct ps__rcu_head *h, void (*fn)(struct ps__rcu_head *h))
{
	ps__fork_rcu_check("call_rcu");
	h->fn = fn;
#if PS_TSAN
	__tsan_release(h);
#endif
	urcu_bp_call_rcu(&h->head, trampoline);
}

void ps__rcu_synchronize(void)
{
	ps__fork_rcu_check("synchronize_rcu");
	urcu_bp_synchronize_rcu();
#if PS_TSAN
	__tsan_acquire(&ps__rcu_tsan_sync);
#endif
}

void ps__rcu_barrier(void)
{
	ps__fork_rcu_check("rcu_barrier");
	urcu_bp_barrier();
}
