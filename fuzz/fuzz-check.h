/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz-check.h - the fuzz targets' abort on a disagreement with their
 * model, saying where in the input it happened: the target sets fz_at (the
 * offset of the operation being run) and fz_op (its opcode) as it decodes,
 * and CHECK() or CHECK_EQ() prints the file, line, condition (and for
 * CHECK_EQ both values), operation and offset, then aborts, which libFuzzer
 * records as a crash with its input.
 */
#ifndef PS_FUZZ_CHECK_H
#define PS_FUZZ_CHECK_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static size_t fz_at;	   /* offset of the current operation */
static unsigned int fz_op; /* its opcode */

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "%s:%d: %s (op %u at %zu)\n",     \
				__FILE__, __LINE__, #cond, fz_op, fz_at); \
			abort();                                          \
		}                                                         \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		unsigned long long a_ = (unsigned long long)(a);             \
		unsigned long long b_ = (unsigned long long)(b);             \
		if (a_ != b_) {                                              \
			fprintf(stderr,                                      \
				"%s:%d: %s == %s: %#llx != %#llx (op %u at " \
				"%zu)\n",                                    \
				__FILE__, __LINE__, #a, #b, a_, b_, fz_op,   \
				fz_at);                                      \
			abort();                                             \
		}                                                            \
	} while (0)

#endif /* PS_FUZZ_CHECK_H */
