// SPDX-License-Identifier: MIT
/*
 * lib/x86.c - the x86 encodings of the per-page state (pagestate/x86.h): the
 * PAT/PCD/PWT bits of a cache mode and the confidential-computing platform
 * descriptor. Pure functions; nothing else in the library uses them.
 */
#include <pagestate/x86.h>

/* --- PAT / PCD / PWT ------------------------------------------------------ */

/* IA32_PAT memory type of each cache mode (PS_CACHE_* order). */
static const uint8_t mode_mtype[PS_CACHE_NR] = {
	[PS_CACHE_WB] = PS_X86_MT_WB,
	[PS_CACHE_WC] = PS_X86_MT_WC,
	[PS_CACHE_UC_MINUS] = PS_X86_MT_UC_MINUS,
	[PS_CACHE_UC] = PS_X86_MT_UC,
	[PS_CACHE_WT] = PS_X86_MT_WT,
	[PS_CACHE_WP] = PS_X86_MT_WP,
};

static unsigned int pat_slot_type(uint64_t pat, unsigned int slot)
{
	return (unsigned int)(pat >> (8 * slot)) & 0xff;
}

/* The PAT bit of an entry at @level: 0, or -EINVAL for an unknown level. */
static int pat_bit_of(enum ps_x86_level level, uint64_t *bit)
{
	if (level == PS_X86_4K)
		*bit = PS_X86_PTE_PAT;
	else if (level == PS_X86_LARGE)
		*bit = PS_X86_PTE_PAT_LARGE;
	else
		return -EINVAL;
	return 0;
}

int ps_x86_cache_bits(uint64_t pat, enum ps_cache_mode mode,
		      enum ps_x86_level level, uint64_t *bits)
{
	uint64_t pat_bit;

	if ((unsigned int)mode >= PS_CACHE_NR || pat_bit_of(level, &pat_bit))
		return -EINVAL;
	/* The lowest slot wins, as in Linux's __init_cache_modes(). */
	for (unsigned int slot = 0; slot < 8; slot++) {
		if (pat_slot_type(pat, slot) != mode_mtype[mode])
			continue;
		*bits = (slot & 1 ? PS_X86_PTE_PWT : 0) |
			(slot & 2 ? PS_X86_PTE_PCD : 0) |
			(slot & 4 ? pat_bit : 0);
		return 0;
	}
	return -EOPNOTSUPP;
}

int ps_x86_cache_mode(uint64_t pat, uint64_t entry, enum ps_x86_level level,
		      enum ps_cache_mode *mode)
{
	uint64_t pat_bit;
	unsigned int slot, type;

	if (pat_bit_of(level, &pat_bit))
		return -EINVAL;
	slot = (entry & PS_X86_PTE_PWT ? 1 : 0) |
	       (entry & PS_X86_PTE_PCD ? 2 : 0) | (entry & pat_bit ? 4 : 0);
	type = pat_slot_type(pat, slot);
	for (unsigned int m = 0; m < PS_CACHE_NR; m++) {
		if (mode_mtype[m] == type) {
			*mode = (enum ps_cache_mode)m;
			return 0;
		}
	}
	return -EINVAL; /* a reserved memory type in that slot */
}

/* --- confidential computing ----------------------------------------------- */

int ps_cc_platform_init(struct ps_cc_platform *p, enum ps_cc_vendor vendor,
			unsigned int bit)
{
	switch (vendor) {
	case PS_CC_NONE:
		p->vendor = vendor;
		p->mask = 0;
		return 0;
	case PS_CC_AMD_SEV:
		/* The C-bit is a physical-address bit above 4 GiB. */
		if (bit < 32 || bit > 63)
			return -EINVAL;
		p->vendor = vendor;
		p->mask = UINT64_C(1) << bit;
		return 0;
	case PS_CC_INTEL_TDX:
		/* @bit is the GPA width; the shared bit is its top bit. */
		if (bit < 32 || bit > 64)
			return -EINVAL;
		p->vendor = vendor;
		p->mask = UINT64_C(1) << (bit - 1);
		return 0;
	}
	return -EINVAL;
}
