/* SPDX-License-Identifier: MIT */
/*
 * lib/space-internal.h - the address space's state, for the library's other
 * modules that operate on a space (prot.c: conversion, CPU maps; uffd.c).
 * Not installed; not API. The rules of lib/space.c (S1..S9) apply to every
 * user: in particular, replacing one frame by another at an address takes
 * the writer mutex (S1), and changing an entry that a pin may be racing is
 * followed by a seq_cst fence before the frame's pins are read (S2).
 */
#ifndef PS_LIB_SPACE_INTERNAL_H
#define PS_LIB_SPACE_INTERNAL_H

#include <pagestate/space.h>

#include "fork.h"
#include "hbitmap.h"

#include <pthread.h>

struct ps__prot_hooks_node;

struct ps_space {
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
	/* lib/prot.c (P1..P8 there): */
	PS_ATOMIC(uint32_t) *kmaps; /* CPU maps per frame (lazily zeroed) */
	void *kmaps_map;	    /* the mapping holding them */
	size_t kmaps_bytes;
	/* The protection hooks in force; older sets are kept until destroy. */
	PS_ATOMIC(struct ps__prot_hooks_node *) prot_hooks;
	uint64_t born; /* fork generation at creation (lib/fork.h) */
};

/* prot.c's part of ps_space_create() / ps_space_destroy(). */
int ps__prot_space_init(struct ps_space *s);
void ps__prot_space_fini(struct ps_space *s);

/* Drop a reference (the free_frame hook runs if it was the last). */
void ps__space_frame_put(struct ps_space *s, uint64_t frame);

/* Mark the frame dirty; the dirty hook runs on a clean-to-dirty
 * transition (S5). Returns true if this call made it. */
bool ps__space_mark_frame_dirty(struct ps_space *s, uint64_t frame);

/* Log @addr as written: dirty log and write-back set (as every marking
 * path of space.c does). */
void ps__space_log_addr(struct ps_space *s, uint64_t addr);

/* ps_space_fault() without the populate hook: a write that makes an entry
 * writable marks its frame dirty and logs the address first (S3). */
enum ps_fault ps__space_fault_nopopulate(struct ps_space *s, uint64_t addr,
					 unsigned int access);

#endif /* PS_LIB_SPACE_INTERNAL_H */
