/* SPDX-License-Identifier: MIT */
/*
 * pagestate/version.h - the version of these headers (macros) and of the
 * library a program runs with (functions).
 *
 * The version is MAJOR.MINOR.PATCH. While MAJOR is 0, every MINOR release
 * may change the API and the ABI, and the shared library's SONAME carries it
 * (libpagestate.so.0.MINOR): a program runs only with the minor version it
 * was built against. A PATCH release changes neither API nor ABI. Which
 * functions, structures, inline functions and word layouts are ABI, and how
 * a break is handled: docs/abi.md. What each release changed: CHANGELOG.md,
 * installed beside it (share/doc/libpagestate).
 *
 *   PS_VERSION_MAJOR, PS_VERSION_MINOR, PS_VERSION_PATCH
 *	the version of these headers, as integer constants.
 *   PS_VERSION_STRING
 *	the same as a string literal, "MAJOR.MINOR.PATCH".
 *   PS_CHECK_VERSION(major, minor, patch)
 *	true (1) in #if and in C expressions when these headers are version
 *	major.minor.patch or newer:
 *
 *	#if PS_CHECK_VERSION(0, 2, 0)
 *		... use what 0.2.0 added ...
 *	#endif
 *
 * The functions ps_version(), ps_version_major(), ps_version_minor(),
 * ps_version_patch() and ps_version_check() answer for the library actually
 * linked, which for a shared library may be a later PATCH release than the
 * headers were.
 */
#ifndef PAGESTATE_VERSION_H
#define PAGESTATE_VERSION_H

#include <pagestate/compiler.h>

#include <stdbool.h>

#define PS_VERSION_MAJOR 0
#define PS_VERSION_MINOR 2
#define PS_VERSION_PATCH 0
#define PS_VERSION_STRING "0.2.0"

#define PS_CHECK_VERSION(major, minor, patch) \
	(PS_VERSION_MAJOR > (major) ||        \
	 (PS_VERSION_MAJOR == (major) &&      \
	  (PS_VERSION_MINOR > (minor) ||      \
	   (PS_VERSION_MINOR == (minor) && PS_VERSION_PATCH >= (patch)))))

PS_BEGIN_DECLS

/**
 * ps_version() - the version of the library that is running, as a string.
 *
 * Context: any thread; pure (a constant of the library).
 * Ordering: none (no shared state).
 * Progress: wait-free.
 * Return: a static string "MAJOR.MINOR.PATCH", never NULL; equal to the
 * PS_VERSION_STRING the library itself was built with.
 */
const char *ps_version(void);

/**
 * ps_version_major() - the major version of the library that is running.
 *
 * Context: any thread; pure (a constant of the library).
 * Ordering: none (no shared state).
 * Progress: wait-free.
 * Return: the PS_VERSION_MAJOR the library was built with.
 */
int ps_version_major(void);

/**
 * ps_version_minor() - the minor version of the library that is running.
 *
 * Context: any thread; pure (a constant of the library).
 * Ordering: none (no shared state).
 * Progress: wait-free.
 * Return: the PS_VERSION_MINOR the library was built with.
 */
int ps_version_minor(void);

/**
 * ps_version_patch() - the patch level of the library that is running.
 *
 * Context: any thread; pure (a constant of the library).
 * Ordering: none (no shared state).
 * Progress: wait-free.
 * Return: the PS_VERSION_PATCH the library was built with.
 */
int ps_version_patch(void);

/**
 * ps_version_check() - is the library that is running at least a version?
 * @major: the major version required.
 * @minor: the minor version required.
 * @patch: the patch level required.
 *
 * The run-time counterpart of PS_CHECK_VERSION(): a program built against
 * newer headers than the library it runs with can refuse to start, e.g.
 * ps_version_check(PS_VERSION_MAJOR, PS_VERSION_MINOR, PS_VERSION_PATCH).
 * It compares versions only; while the major version is 0 a shared library
 * of another minor version has another SONAME and is never loaded instead.
 *
 * Context: any thread; pure (a function of its arguments and of constants
 * of the library).
 * Ordering: none (no shared state).
 * Progress: wait-free.
 * Return: true if the running library's version is @major.@minor.@patch or
 * newer; false if it is older (or an argument is negative).
 */
bool ps_version_check(int major, int minor, int patch);

PS_END_DECLS

#endif /* PAGESTATE_VERSION_H */
