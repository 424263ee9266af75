/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz-input.h - the fuzz input as a byte stream, for the targets that
 * decode it field by field (fuzz-pte.c, and fuzz-pgtable.c and fuzz-scan.c
 * through pgtable-model.h). Past the end every byte reads as 0, so a short
 * input is still a whole, deterministic program.
 */
#ifndef PS_FUZZ_INPUT_H
#define PS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct in {
	const uint8_t *d;
	size_t n, at;
};

static uint8_t u8(struct in *in)
{
	return in->at < in->n ? in->d[in->at++] : 0;
}

/* Eight bytes, little-endian. */
static uint64_t raw64(struct in *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)u8(in) << (8 * i);
	return v;
}

#endif /* PS_FUZZ_INPUT_H */
