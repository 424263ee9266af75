/* SPDX-License-Identifier: MIT */
/*
 * fuzz/fuzz-leaks.h - libFuzzer's per-input leak check, off by default for
 * the targets whose library code frees through call_rcu (the page table's
 * registrations and trimmed levels, the interval tree's replaced nodes).
 *
 * libFuzzer's leak check after an input (-detect_leaks) counts mallocs and
 * frees: such frees happen later and in another thread, so nearly every input
 * looks like a leak and costs a LeakSanitizer pass (half the smoke's time, for
 * nothing). It is turned off unless asked for; LeakSanitizer still checks the
 * whole process at exit, where memory lost by the library would show.
 */
#ifndef PS_FUZZ_LEAKS_H
#define PS_FUZZ_LEAKS_H

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char off[] = "-detect_leaks=0";
	static char *args[64];

	for (int i = 1; i < *argc; i++)
		if (!strncmp((*argv)[i], "-detect_leaks=", 14))
			return 0;
	if (*argc + 2 > (int)(sizeof(args) / sizeof(args[0])))
		return 0;
	for (int i = 0; i < *argc; i++)
		args[i] = (*argv)[i];
	args[*argc] = off;
	args[*argc + 1] = NULL;
	(*argc)++;
	*argv = args;
	return 0;
}

#endif /* PS_FUZZ_LEAKS_H */
