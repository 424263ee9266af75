/* SPDX-License-Identifier: MIT */
/*
 * pagestate/x86.h - x86 page-table encodings of the per-page state, for
 * users who write real page-table entries: the PAT/PCD/PWT bits that select
 * a cache mode (enum ps_cache_mode, pagestate/page.h), and the encryption
 * bit of confidential computing (enum ps_enc_state). Pure functions of
 * their arguments: nothing in the library calls them, and they touch no
 * page word, table or space. Its two prefixes: ps_x86_ (the PAT encoding)
 * and ps_cc_ (the confidential-computing platform). docs/prot.md, "The x86
 * encodings", says how they relate to Linux's.
 *
 * ---------------------------------------------------------------------------
 * Cache modes: PAT, PCD, PWT
 * ---------------------------------------------------------------------------
 *
 * An x86 PTE selects one of the 8 slots of the IA32_PAT MSR with three bits:
 * slot = PAT << 2 | PCD << 1 | PWT. PWT is bit 3 and PCD bit 4. PAT is bit 7
 * in a 4 KiB entry and bit 12 in a 2 MiB or 1 GiB entry, where bit 7 means
 * "page size". ps_x86_cache_bits() picks the lowest slot holding the wanted
 * memory type, as Linux's __init_cache_modes() does. ps_x86_cache_mode()
 * decodes the slot back through the PAT. PS_X86_PAT_LINUX is the PAT Linux
 * programs by default (pat_init()):
 *
 *   slot  0   1   2    3   4   5   6    7
 *         WB  WC  UC-  UC  WB  WP  UC-  WT
 *
 * WT sits in slot 7, so an erratum that ignores the PAT bit lands on slot 3,
 * UC. Where a PAT has no slot for a mode, Linux silently maps WC, WT and WP to
 * UC-. Here the call fails with -EOPNOTSUPP instead, so the caller chooses.
 *
 * ---------------------------------------------------------------------------
 * Encryption (confidential computing)
 * ---------------------------------------------------------------------------
 *
 * A page is private (encrypted, owned by the guest) or shared (decrypted,
 * visible to the host and devices). In a guest's page-table entries one
 * physical-address bit encodes it, with opposite polarities:
 *
 *   AMD SEV/SME  C-bit (CPUID 0x8000001F EBX[5:0]): set = private/encrypted
 *   Intel TDX    shared bit = bit (gpa_width - 1) (47 or 51): set = shared
 *
 * struct ps_cc_platform describes the platform once, and the
 * ps_cc_pte_*() helpers apply its polarity (Linux's cc_mkenc()/cc_mkdec()).
 * Without confidential computing (PS_CC_NONE) there is no such bit: every
 * page is shared, and asking for a private encoding is -EOPNOTSUPP.
 *
 * Progress: every function here is wait-free and pure.
 */
#ifndef PAGESTATE_X86_H
#define PAGESTATE_X86_H

#include <pagestate/compiler.h>
#include <pagestate/page.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

PS_BEGIN_DECLS

/* --- x86 PAT / PCD / PWT -------------------------------------------------- */

#define PS_X86_PTE_PWT (UINT64_C(1) << 3)
#define PS_X86_PTE_PCD (UINT64_C(1) << 4)
#define PS_X86_PTE_PAT (UINT64_C(1) << 7)	 /* 4 KiB entries */
#define PS_X86_PTE_PAT_LARGE (UINT64_C(1) << 12) /* 2 MiB / 1 GiB entries */

/**
 * enum ps_x86_level - which entry format: the PAT bit moves with it.
 * @PS_X86_4K: a 4 KiB PTE: PAT is bit 7.
 * @PS_X86_LARGE: a 2 MiB PDE or 1 GiB PDPTE: PAT is bit 12 (bit 7 is "page
 *	size" there).
 */
enum ps_x86_level {
	PS_X86_4K = 0,
	PS_X86_LARGE = 1,
};

/* IA32_PAT memory-type encodings, one byte per slot. */
#define PS_X86_MT_UC 0x00
#define PS_X86_MT_WC 0x01
#define PS_X86_MT_WT 0x04
#define PS_X86_MT_WP 0x05
#define PS_X86_MT_WB 0x06
#define PS_X86_MT_UC_MINUS 0x07

/* The IA32_PAT value Linux programs: WB WC UC- UC WB WP UC- WT (slot 0..7). */
#define PS_X86_PAT_LINUX UINT64_C(0x0407050600070106)

/**
 * ps_x86_cache_bits() - PWT/PCD/PAT bits selecting @mode under @pat.
 * @pat: the IA32_PAT value in force (PS_X86_PAT_LINUX for Linux's).
 * @mode: the wanted cache mode.
 * @level: the entry format (where the PAT bit goes).
 * @bits: receives the bits, a subset of PWT | PCD | PAT(_LARGE).
 *
 * Picks the lowest slot holding @mode's memory type.
 * Context: any thread; pure.
 * Return: 0; -EINVAL for an unknown @mode or @level; -EOPNOTSUPP if @pat
 * has no slot for @mode (Linux would silently use UC- there). On error
 * @bits is untouched.
 */
int ps_x86_cache_bits(uint64_t pat, enum ps_cache_mode mode,
		      enum ps_x86_level level, uint64_t *bits);

/**
 * ps_x86_cache_mode() - the cache mode an entry selects under @pat.
 * @pat: the IA32_PAT value in force.
 * @entry: an x86 page-table entry (only PWT, PCD and the PAT bit of @level
 *	are read).
 * @level: the entry format.
 * @mode: receives the mode.
 *
 * Context: any thread; pure.
 * Return: 0; -EINVAL for an unknown @level or if the slot holds a reserved
 * memory type (2 or 3, or above 7).
 */
int ps_x86_cache_mode(uint64_t pat, uint64_t entry, enum ps_x86_level level,
		      enum ps_cache_mode *mode);

/**
 * ps_x86_cache_mask() - all cache-selecting bits of an entry at @level.
 * @level: the entry format.
 *
 * Context: any thread; pure.
 * Return: PWT | PCD | the PAT bit of @level.
 */
static inline uint64_t ps_x86_cache_mask(enum ps_x86_level level)
{
	return PS_X86_PTE_PWT | PS_X86_PTE_PCD |
	       (level == PS_X86_LARGE ? PS_X86_PTE_PAT_LARGE : PS_X86_PTE_PAT);
}

/* --- confidential computing: the encryption bit --------------------------- */

/**
 * enum ps_cc_vendor - which polarity the encryption bit has.
 * @PS_CC_NONE: no memory encryption: every page is shared.
 * @PS_CC_AMD_SEV: the C-bit set means private (SEV, SEV-ES, SEV-SNP, SME).
 * @PS_CC_INTEL_TDX: the shared bit set means shared.
 */
enum ps_cc_vendor {
	PS_CC_NONE = 0,
	PS_CC_AMD_SEV = 1,
	PS_CC_INTEL_TDX = 2,
};

/**
 * struct ps_cc_platform - the encryption bit of a platform.
 * @vendor: polarity.
 * @mask: the one bit (0 for PS_CC_NONE).
 *
 * Build it with ps_cc_platform_init(), not by hand.
 */
struct ps_cc_platform {
	enum ps_cc_vendor vendor;
	uint64_t mask;
};

/**
 * ps_cc_platform_init() - describe a platform's encryption bit.
 * @p: the descriptor to fill.
 * @vendor: the polarity.
 * @bit: AMD: the C-bit position (CPUID 0x8000001F EBX[5:0]). TDX: the guest
 *	physical address width (TDG.VP.INFO), so the shared bit is @bit - 1.
 *	Ignored for PS_CC_NONE.
 *
 * Context: any thread; pure (it writes only *@p).
 * Return: 0; -EINVAL for an unknown @vendor or a bit outside what the
 * architecture allows (AMD: 32..63; TDX: width 32..64, i.e. the shared bit
 * above the 4 KiB page offset and the usual 32-bit range).
 */
int ps_cc_platform_init(struct ps_cc_platform *p, enum ps_cc_vendor vendor,
			unsigned int bit);

/**
 * ps_cc_pte_is_private() - does @entry map its page as private?
 * @p: the platform.
 * @entry: an x86 page-table entry.
 *
 * Context: any thread; pure.
 * Return: AMD: the C-bit is set. TDX: the shared bit is clear. PS_CC_NONE:
 * false.
 */
static inline bool ps_cc_pte_is_private(const struct ps_cc_platform *p,
					uint64_t entry)
{
	switch (p->vendor) {
	case PS_CC_AMD_SEV:
		return (entry & p->mask) != 0;
	case PS_CC_INTEL_TDX:
		return (entry & p->mask) == 0;
	case PS_CC_NONE:
		break;
	}
	return false;
}

/**
 * ps_cc_pte_set_state() - @entry with its encryption bit set for @state.
 * @p: the platform.
 * @entry: an x86 page-table entry.
 * @state: private or shared.
 * @out: receives the entry. Only the encryption bit differs from @entry.
 *
 * This is Linux's cc_mkenc() / cc_mkdec().
 * Context: any thread; pure.
 * Return: 0; -EOPNOTSUPP for PS_ENC_PRIVATE on PS_CC_NONE; -EINVAL for an
 * unknown @state or vendor.
 */
static inline int ps_cc_pte_set_state(const struct ps_cc_platform *p,
				      uint64_t entry, enum ps_enc_state state,
				      uint64_t *out)
{
	bool set;

	if (state != PS_ENC_PRIVATE && state != PS_ENC_SHARED)
		return -EINVAL;
	switch (p->vendor) {
	case PS_CC_NONE:
		if (state == PS_ENC_PRIVATE)
			return -EOPNOTSUPP;
		*out = entry;
		return 0;
	case PS_CC_AMD_SEV:
		set = state == PS_ENC_PRIVATE;
		break;
	case PS_CC_INTEL_TDX:
		set = state == PS_ENC_SHARED;
		break;
	default:
		return -EINVAL;
	}
	*out = set ? entry | p->mask : entry & ~p->mask;
	return 0;
}

/**
 * ps_cc_phys_mask() - the address bits that are not the encryption bit.
 * @p: the platform.
 *
 * AND an entry's address field with this before using it as a physical
 * address (Linux: physical_mask &= ~sme_me_mask, or &= cc_mask - 1 on TDX).
 * Context: any thread; pure.
 * Return: the mask (all ones for PS_CC_NONE).
 */
static inline uint64_t ps_cc_phys_mask(const struct ps_cc_platform *p)
{
	if (p->vendor == PS_CC_INTEL_TDX)
		return p->mask - 1; /* the shared bit and everything above */
	return ~p->mask;
}

PS_END_DECLS

#endif /* PAGESTATE_X86_H */
