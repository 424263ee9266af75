/* SPDX-License-Identifier: MIT */
/*
 * lib/space-impl.h - the address space's own state, for the space's files
 * (lib/space*.c) only: the modules above it use lib/space-internal.h.
 * Not installed; not API.
 */
#ifndef PS_LIB_SPACE_IMPL_H
#define PS_LIB_SPACE_IMPL_H

#include <pagestate/space.h>

#include "hbitmap.h"
#include "space-internal.h"

#include <pthread.h>
#include <stddef.h>

struct ps_space {
	struct ps__space_exts exts; /* first: ps__space_ext_find() */
	struct ps_pgtable *pt;
	struct ps_notifier notifier;
	struct ps_page *frames;
	void *frames_map;	/* library-allocated array, or NULL */
	size_t frames_bytes;
	uint64_t nframes;
	uint64_t size;
	struct ps__hbm log;	 /* dirty log: one bit per page of space */
	struct ps__hbm wb;	 /* write-back candidates: one bit per page */
	struct ps__hbm longterm; /* frames with long-term pins */
	struct ps_space_hooks hooks;
	pthread_mutex_t writer; /* S1 */
};

PS_STATIC_ASSERT(offsetof(struct ps_space, exts) == 0,
		 "ps__space_ext_find() reads the extensions first");

/* Mark the frame dirty; the dirty hook runs on a clean-to-dirty
 * transition (S5). Returns true if this call made it. */
bool ps__space_mark_frame_dirty(struct ps_space *s, uint64_t frame);

#endif /* PS_LIB_SPACE_IMPL_H */
