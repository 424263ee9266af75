// SPDX-License-Identifier: MIT
/*
 * lib/version.c - the version of the library that is running: the constants
 * of pagestate/version.h as this library was built with them.
 */
#include <pagestate/version.h>

const char *ps_version(void)
{
	return PS_VERSION_STRING;
}

int ps_version_major(void)
{
	return PS_VERSION_MAJOR;
}

int ps_version_minor(void)
{
	return PS_VERSION_MINOR;
}

int ps_version_patch(void)
{
	return PS_VERSION_PATCH;
}

bool ps_version_check(int major, int minor, int patch)
{
	if (major < 0 || minor < 0 || patch < 0)
		return false;
	if (PS_VERSION_MAJOR != major)
		return PS_VERSION_MAJOR > major;
	if (PS_VERSION_MINOR != minor)
		return PS_VERSION_MINOR > minor;
	return PS_VERSION_PATCH >= patch;
}
