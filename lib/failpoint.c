// SPDX-License-Identifier: MIT
/*
 * lib/failpoint.c - the definitions of lib/failpoint.h's hooks. Compiled
 * only into the test binaries that use failpoints (tests/meson.build), with
 * -DPS_TEST_FAILPOINTS; never into the library.
 */
#include "failpoint.h"

#include <stddef.h>

#ifdef PS_TEST_FAILPOINTS
void (*ps__failpoint)(int point, uint64_t addr);
int (*ps__inject)(int point, uint64_t addr, uint64_t *len);
#endif
