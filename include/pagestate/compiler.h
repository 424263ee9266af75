/* SPDX-License-Identifier: MIT */
/*
 * pagestate/compiler.h - the few language shims the public headers share.
 *
 * This is not a module and holds no API: it maps the features the headers
 * need onto C11 and onto C++ (C++11 and later), so that every public header
 * compiles alone as `-std=c11 -Wall -Wextra -pedantic -Werror` and from C++.
 *
 *   PS_ATOMIC(T)         an atomic object of type T: _Atomic(T) in C11 and
 *                        C++23 (<stdatomic.h>), std::atomic<T> before C++23.
 *   PS_ATOMIC_INIT(v)    the initialiser of a PS_ATOMIC member in a static
 *                        initialiser: v in C, {v} in C++ (where a std::atomic
 *                        cannot be copy-initialised before C++17).
 *   PS_STATIC_ASSERT     _Static_assert in C, static_assert in C++.
 *   PS_MUST_CHECK        the caller must look at the result.
 *   PS_LIKELY/PS_UNLIKELY branch hints for the fast paths.
 *   PS_COLD              out-of-line error reporting, kept off the hot path.
 *   PS_BEGIN_DECLS/PS_END_DECLS  extern "C" guards; with GCC and clang they
 *                        also give what they enclose default visibility, so
 *                        the library can be built with -fvisibility=hidden
 *                        and export exactly the public declarations.
 *   PS_TSAN              1 when compiled with ThreadSanitizer, which does not
 *                        model atomic_thread_fence(): where correctness rests
 *                        on a fence, the code uses an equivalent that TSan
 *                        understands under it (seq.h's read side).
 *
 * Before C++23 the C atomic names (atomic_load_explicit, memory_order_relaxed,
 * ...) are brought into the global namespace with using-declarations, which is
 * exactly what C++23's <stdatomic.h> does, so one spelling serves C and C++.
 */
#ifndef PAGESTATE_COMPILER_H
#define PAGESTATE_COMPILER_H

#if defined(__cplusplus)
#if __cplusplus > 202002L && defined(__has_include)
#if __has_include(<stdatomic.h>)
#define PS_HAVE_CXX_STDATOMIC 1
#endif
#endif
#ifdef PS_HAVE_CXX_STDATOMIC
#include <stdatomic.h>
#define PS_ATOMIC(T) _Atomic(T)
#else
#include <atomic>
#define PS_ATOMIC(T) std::atomic<T>
using std::atomic_compare_exchange_strong_explicit;
using std::atomic_compare_exchange_weak_explicit;
using std::atomic_exchange_explicit;
using std::atomic_fetch_add_explicit;
using std::atomic_fetch_and_explicit;
using std::atomic_fetch_or_explicit;
using std::atomic_fetch_sub_explicit;
using std::atomic_load_explicit;
using std::atomic_signal_fence;
using std::atomic_store_explicit;
using std::atomic_thread_fence;
using std::memory_order;
using std::memory_order_acq_rel;
using std::memory_order_acquire;
using std::memory_order_relaxed;
using std::memory_order_release;
using std::memory_order_seq_cst;
#endif
/* clang-format 14 splits a braced macro body over lines: */
/* clang-format off */
#define PS_ATOMIC_INIT(v) {v}
/* clang-format on */
#define PS_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define PS__EXTERN_C_BEGIN extern "C" {
#define PS__EXTERN_C_END }
#else
#include <stdatomic.h>
#define PS_ATOMIC(T) _Atomic(T)
#define PS_ATOMIC_INIT(v) (v)
#define PS_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define PS__EXTERN_C_BEGIN
#define PS__EXTERN_C_END
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PS_BEGIN_DECLS \
	PS__EXTERN_C_BEGIN _Pragma("GCC visibility push(default)")
#define PS_END_DECLS _Pragma("GCC visibility pop") PS__EXTERN_C_END
#else
#define PS_BEGIN_DECLS PS__EXTERN_C_BEGIN
#define PS_END_DECLS PS__EXTERN_C_END
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PS_MUST_CHECK __attribute__((warn_unused_result))
#define PS_LIKELY(x) __builtin_expect(!!(x), 1)
#define PS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PS_COLD __attribute__((cold, noinline))
#else
#define PS_MUST_CHECK
#define PS_LIKELY(x) (x)
#define PS_UNLIKELY(x) (x)
#define PS_COLD
#endif

#if defined(__SANITIZE_THREAD__)
#define PS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PS_TSAN 1
#endif
#endif
#ifndef PS_TSAN
#define PS_TSAN 0
#endif

#endif /* PAGESTATE_COMPILER_H */
