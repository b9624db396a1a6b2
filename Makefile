# Front door for sparkbench: wraps CMake and the dependency installer.
#   make demo   install what is missing, build, run a short experiment against the built-in mock
#   make check  install what is missing, build, run every test (unit + integration, via ctest)
#   make asan   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer, but the CI
#               replay (label replay: the Test Plan's outcomes measured in time, which ASan's slowdown shifts)
#   make release-check  the same tests in a Release (-O3) build, where other warnings show, but the
#               CI replay (make check has run it on the same code; CI time); REL_TESTS picks the
#               ctest selection (CI: -L '^unit$$', see .ci/run)
#   make check-valgrind  unit tests and the integration tests' sparkbench processes under valgrind
#               memcheck (scripts/check-valgrind.sh): zero errors, zero definite/indirect leaks
#   make lint   clang-tidy over src/ with the checks in .clang-tidy (scripts/lint.sh), then
#               make analyze-static
#   make analyze-static  GCC's -fanalyzer over src/ in build-analyze (scripts/analyze-static.sh)
#   make soak   SOAK_MINUTES (default 2) of 1,000 streams against the mock with 1 % faults
#               (bench/soak.sh): fails on a lost request, fd growth, a sysmon gap or RSS growth
#   make fuzz   build the libFuzzer harnesses (clang, ASan + UBSan) and run each for FUZZ_SECONDS
#               (default 60) on its seed corpus, FUZZ_JOBS (default 1) at a time, libFuzzer
#               seed FUZZ_SEED (default 0: a fresh one each run)
# Warnings are errors here (SB_WERROR=ON); a plain `cmake` build, a user's or a packager's, keeps them
# warnings.
BUILD      ?= build
ASAN_BUILD ?= build-asan
REL_BUILD  ?= build-release
VG_BUILD   ?= build-valgrind
FUZZ_BUILD ?= build-fuzz
ANALYZE_BUILD ?= build-analyze
FUZZ_SECONDS ?= 60
FUZZ_JOBS  ?= 1
FUZZ_SEED  ?= 0
SOAK_MINUTES ?= 2
REL_TESTS  ?= -LE '^replay$$'
FUZZ_CC    ?= $(shell command -v clang-14 2>/dev/null || command -v clang 2>/dev/null || echo clang-14)
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps configure build check demo asan release-check check-valgrind lint analyze-static fuzz format format-check clean bench soak

all: build

deps:
	@scripts/install-deps.sh

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON $(CMAKE_ARGS) >/dev/null

build: deps configure
	@cmake --build $(BUILD) -j $(JOBS)

check: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)/sparkbench

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSB_SANITIZE=ON -DSB_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE '^replay$$'

release-check: deps
	@cmake -S . -B $(REL_BUILD) -DCMAKE_BUILD_TYPE=Release -DSB_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(REL_BUILD) -j $(JOBS)
	@ctest --test-dir $(REL_BUILD) --output-on-failure -j $(JOBS) $(REL_TESTS)

check-valgrind: deps
	@scripts/check-valgrind.sh $(VG_BUILD) $(JOBS)

lint:
	@scripts/lint.sh $(BUILD)
	@scripts/analyze-static.sh $(ANALYZE_BUILD) $(JOBS)

analyze-static:
	@scripts/analyze-static.sh $(ANALYZE_BUILD) $(JOBS)

fuzz:
	@scripts/install-deps.sh --fuzz
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DSB_FUZZ=ON -DSB_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz
	@SB_FUZZ_SEED=$(FUZZ_SEED) scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_JOBS)

soak: build
	@SB=$(BUILD)/sparkbench SOAK_MINUTES=$(SOAK_MINUTES) bench/soak.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

bench: build
	@scripts/install-deps.sh --bench
	@bench/mock.sh $(BUILD)/sparkbench
	@bench/engine.sh $(BUILD)/sparkbench
	@bench/sysmon.sh $(BUILD)/sparkbench
	@bench/analyze.sh $(BUILD)/sparkbench
	@bench/tokenizer.sh $(BUILD)/sparkbench
	@bench/trace.sh $(BUILD)/sparkbench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(REL_BUILD) $(VG_BUILD) $(FUZZ_BUILD)
