# SPDX-License-Identifier: MIT
#
# A thin wrapper around meson. On a fresh Debian 12 machine (with make), each
# target first installs the Debian packages it uses (tools/install-deps.sh):
#   make          the development build: library (static and shared),
#                 tests, examples, benchmarks, man pages
#   make test     build, run every test suite: default build (archive and
#                 shared library), ASan+UBSan build (shared library), TSan
#                 build (stress, a 20 s soak), fuzz smoke build
#   make bench    build in release mode, run every benchmark and print the
#                 report
#   make install PREFIX=/usr/local   the archive, headers, .pc, man pages
#   make fuzz     run every libFuzzer target for FUZZ_SECONDS (default 60)
#   make format   lay out every C/C++ file with .clang-format (clang-format
#                 14), then report comments that are too wide or ragged
#                 (docs/contributing.md)
#
# Build directories: build/ (debugoptimized, tests), build-asan/,
# build-tsan/, build-fuzz/ (clang, libFuzzer, ASan+UBSan), build-release/
# (benchmarks, linked with the archive), build-release-shared/ (the same
# benchmarks linked with libpagestate.so; set up by tools/run-benchmarks.sh),
# build-install/ (make install).

PREFIX ?= /usr/local
MESON ?= meson
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_ARGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all deps-all deps-install deps-test deps-bench deps-fuzz deps-format \
	test test-default test-asan test-tsan test-fuzz bench fuzz format \
	install clean

all: deps-all build/build.ninja
	$(MESON) compile -C build

deps-all:
	@tools/install-deps.sh all
deps-install:
	@tools/install-deps.sh install
deps-test:
	@tools/install-deps.sh test
deps-bench:
	@tools/install-deps.sh bench
deps-fuzz:
	@tools/install-deps.sh fuzz
deps-format:
	@tools/install-deps.sh format

# The default build makes both the archive and the shared library: the
# tests that use only the public API link the shared one, and the meta
# tests check both. The ASan build is shared only: the tests that need
# internal symbols link the same objects as an archive (lib/meson.build).
build/build.ninja:
	$(MESON) setup build -Dtests=enabled -Ddefault_library=both

build-asan/build.ninja:
	$(MESON) setup build-asan -Dtests=enabled -Dbench=false -Dman=false \
		-Ddefault_library=shared \
		-Db_sanitize=address,undefined -Db_lundef=false

build-tsan/build.ninja:
	$(MESON) setup build-tsan -Dtests=enabled -Dbench=false -Dman=false \
		-Db_sanitize=thread -Db_lundef=false

build-fuzz/build.ninja:
	CC=clang $(MESON) setup build-fuzz -Dfuzz=true -Dtests=disabled \
		-Dbench=false -Dman=false \
		-Db_sanitize=address,undefined -Db_lundef=false

# make bench installs Concurrency Kit, so the report always has its column.
build-release/build.ninja:
	$(MESON) setup build-release --buildtype=release -Dtests=disabled \
		-Dman=false -Dck=enabled

build-install/build.ninja:
	$(MESON) setup build-install --buildtype=release -Dtests=disabled \
		-Dbench=false -Dexamples=false --prefix=$(PREFIX)

test: deps-test
	@$(MAKE) --no-print-directory test-default test-asan test-tsan test-fuzz
	@tools/test-summary.sh build build-asan build-tsan build-fuzz

# A build/ set up before the shared library existed is switched to both.
test-default: build/build.ninja
	@$(MESON) introspect build --buildoptions | \
		grep -q '"name": "default_library", "value": "both"' || \
		$(MESON) configure build -Ddefault_library=both -Dtests=enabled
	$(MESON) compile -C build
	$(MESON) test -C build --print-errorlogs --num-processes $(JOBS) $(TEST_ARGS)

test-asan: build-asan/build.ninja
	$(MESON) compile -C build-asan
	$(MESON) test -C build-asan --print-errorlogs --num-processes $(JOBS) \
		--suite unit --suite stress --suite examples $(TEST_ARGS)

test-tsan: build-tsan/build.ninja
	$(MESON) compile -C build-tsan
	$(MESON) test -C build-tsan --print-errorlogs --num-processes $(JOBS) \
		--suite stress --suite soak --suite examples $(TEST_ARGS)

test-fuzz: build-fuzz/build.ninja
	$(MESON) compile -C build-fuzz
	$(MESON) test -C build-fuzz --print-errorlogs --num-processes $(JOBS) \
		--suite fuzz $(TEST_ARGS)

fuzz: deps-fuzz build-fuzz/build.ninja
	$(MESON) compile -C build-fuzz
	@tools/run-fuzzers.sh build-fuzz $(FUZZ_SECONDS)

# clang-format lays out the code; the comments are for a person (or for
# tools/reflow-check.py --fix FILE), so this only reports them.
format: deps-format
	tools/format.sh
	tools/reflow-check.py --root .

bench: deps-bench build-release/build.ninja
	$(MESON) compile -C build-release
	@tools/run-benchmarks.sh build-release

# The issue-15 soak (tests/soak/README): make soak SOAK_SECONDS=N SOAK_THREADS=T
SOAK_SECONDS ?= 60
SOAK_THREADS ?= 4
SOAK_ARGS ?=
.PHONY: soak
soak: build/build.ninja
	$(MESON) compile -C build soak
	build/tests/soak --seconds $(SOAK_SECONDS) --threads $(SOAK_THREADS) $(SOAK_ARGS)

install: deps-install build-install/build.ninja
	$(MESON) configure build-install -Dprefix=$(PREFIX)
	$(MESON) install -C build-install

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release \
		build-release-shared build-install
