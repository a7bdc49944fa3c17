#!/usr/bin/env bash
# Speed of lcq and llama.cpp on the same models, back to back in one run, as one Markdown
# table (docs/llamacpp.md): SmolLM2-135M-Instruct (llama.cpp's Q4_0, IQ4_NL, Q5_0, Q8_0
# quantized from the same f32 weights lcq starts from) and an 813 M synthetic LLaMA
# (4096 wide, 4 layers, random weights; llama.cpp's Q2_K).
#
#   bench/vs_llamacpp.sh [--lcq-smollm2 FILE]... [--lcq-synthetic FILE]... [options]
#
# lcq's files are given on the command line; for a model without one the script makes one
# with `lcq quantize FP -o OUT $LCQ_SMOLLM2_QUANTIZE` / `$LCQ_SYNTHETIC_QUANTIZE`.
# Options:
#   --threads 1,2          thread counts (default 1,2)
#   --reps N               runs per figure; the table shows medians (default 3)
#   --types "Q4_0 ..."     llama.cpp types of SmolLM2 (default "Q4_0 IQ4_NL Q5_0 Q8_0"; the
#                          first is the one lcq's ratios are computed against)
#   --synthetic-types "Q2_K"   llama.cpp types of the synthetic model (first = reference)
#   --no-smollm2, --no-synthetic   skip a model
#   --work DIR             where model files and results go (default $LCQ_CACHE/vs_llamacpp)
# Environment: LCQ (the lcq binary, default build/src/lcq), LCQ_SMOLLM2_GGUF (the Q4_1 source
# file, fetched with scripts/fetch_smollm2.sh if unset and missing), LCQ_SHARED_DIR (for the
# synthetic model's vocabulary, stories260K's tok512.bin), LCQ_RUNTIME_ARGS (extra lcq runtime
# options for bench, generate and lcq-run, e.g. "--kernel auto"; lcq-run knows --kernel only), SYNTHETIC_SHAPE, the llama.cpp build
# settings of bench/llamacpp.sh. Decode is timed over 128 tokens from an empty context
# (llama-bench tg128; lcq bench --prefill 1 --decode 128), prefill over 512 tokens (pp512;
# lcq bench --prefill 512). Peak RSS: one process that loads the file and decodes 128 tokens
# (llama-bench -p 0 -n 128 -r 1; lcq-run -n 128, lcq's binary without libtorch, $LCQ_RUN; the
# log also gives `lcq generate -n 128`'s, which carries libtorch's ~150 MiB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/llamacpp.sh
. "$here/llamacpp.sh"

die() { echo "vs_llamacpp.sh: error: $*" >&2; exit 1; }
bad_usage() { echo "vs_llamacpp.sh: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

threads=1,2 reps=3 types="Q4_0 IQ4_NL Q5_0 Q8_0" synth_types="Q2_K" do_smollm2=1 do_synth=1
work="$LCQ_CACHE/vs_llamacpp"
lcq_smollm2=() lcq_synth=()
while [ $# -gt 0 ]; do
  case $1 in
    --lcq-smollm2) lcq_smollm2+=("${2:?--lcq-smollm2 needs a file}"); shift 2 ;;
    --lcq-synthetic) lcq_synth+=("${2:?--lcq-synthetic needs a file}"); shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    --types) types=${2:?}; shift 2 ;;
    --synthetic-types) synth_types=${2:?}; shift 2 ;;
    --no-smollm2) do_smollm2=0; shift ;;
    --no-synthetic) do_synth=0; shift ;;
    --work) work=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "vs_llamacpp.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $threads =~ ^[0-9]+(,[0-9]+)*$ ]] || bad_usage "--threads must look like 1,2 (got '$threads')"
[[ $reps =~ ^[1-9][0-9]*$ ]] || bad_usage "--reps must be a positive integer (got '$reps')"
for f in "${lcq_smollm2[@]}" "${lcq_synth[@]}"; do [ -f "$f" ] || die "$f: no such file"; done

LCQ=${LCQ:-$repo/build/src/lcq}
LCQ_RUN=${LCQ_RUN:-$repo/build/src/lcq-run}
SYNTH_TOOL=${SYNTH_TOOL:-$repo/build/bench/make_synthetic_model}
LCQ_SMOLLM2_QUANTIZE=${LCQ_SMOLLM2_QUANTIZE---method rtn --bits 4 --group 64}
LCQ_SYNTHETIC_QUANTIZE=${LCQ_SYNTHETIC_QUANTIZE---method rtn --bits 2 --group 128}
SYNTHETIC_SHAPE=${SYNTHETIC_SHAPE:---dim 4096 --ffn 11008 --layers 4 --heads 32 --kv-heads 32}
shared=${LCQ_SHARED_DIR:-$repo/../shared}
[ -x "$LCQ" ] || die "$LCQ: not built (cmake --build build --target lcq), or set LCQ"
read -r -a rt_args <<<"${LCQ_RUNTIME_ARGS:-}"
tables="$here/llamacpp_tables.py"

llamacpp_ensure
load0=$(cut -d' ' -f1-3 /proc/loadavg)  # the machine may be shared: say how busy it was
mkdir -p "$work" || die "cannot create $work"
stamp=$(date +%Y%m%d-%H%M%S)
results="$work/speed-$stamp.jsonl"
logs="$work/logs-$stamp"
mkdir -p "$logs"
: >"$results"

cur_tmp=
trap '[ -n "$cur_tmp" ] && rm -f "$cur_tmp"' EXIT  # no half-made file left behind
trap 'exit 130' INT
trap 'exit 143' TERM
# Runs "$@" (which writes $out) only when $out is missing; the output appears atomically.
make_once() {
  local out=$1; shift
  [ -s "$out" ] && return 0
  local tmp="${out%.gguf}.tmp$$.gguf"  # tools pick the format from the extension
  rm -f "$tmp"
  cur_tmp=$tmp
  echo "vs_llamacpp.sh: making $out" >&2
  "${@//@OUT@/$tmp}" >"$logs/$(basename "$out").log" 2>&1 ||
    { rm -f "$tmp"; die "could not make $out; see $logs/$(basename "$out").log"; }
  mv "$tmp" "$out"
  cur_tmp=
}

slug() { echo "$*" | tr -c 'A-Za-z0-9_.\n' '-' | sed 's/--*/-/g; s/^-//; s/-$//'; }

bench_llamacpp() {  # MODEL LABEL FILE REFERENCE
  local model=$1 label=$2 file=$3 ref=$4 base json rss
  base="$logs/$(slug "$model-$label")"
  json="$base.llama-bench.json"
  echo "vs_llamacpp.sh: llama-bench $label ($model)" >&2
  "$LLAMACPP_BIN/llama-bench" -m "$file" -p 512 -n 128 -t "$threads" -r "$reps" -o json \
    >"$json" 2>"$base.llama-bench.log" || die "llama-bench failed on $file; see $base.llama-bench.log"
  rss=$(python3 "$tables" peak-rss "$LLAMACPP_BIN/llama-bench" -m "$file" -p 0 -n 128 -t 1 -r 1)
  python3 "$tables" speed-row "$model" llama.cpp "$label" "$file" "$ref" "$rss" "$threads" "$json" >>"$results"
}

bench_lcq() {  # MODEL LABEL FILE
  local model=$1 label=$2 file=$3 base r rss outs=()
  base="$logs/$(slug "$model-$label")"
  echo "vs_llamacpp.sh: lcq bench $label ($model)" >&2
  for r in $(seq "$reps"); do  # one run per invocation: the median is taken here
    for mode in prefill decode; do
      local args=(--prefill 512 --decode 1)
      [ $mode = decode ] && args=(--prefill 1 --decode 128)
      "$LCQ" bench "$file" --no-kernels --threads "$threads" --reps 1 "${args[@]}" "${rt_args[@]}" --json \
        >"$base.$mode.$r.json" 2>"$base.lcq-bench.log" || die "lcq bench failed on $file; see $base.lcq-bench.log"
      outs+=("$base.$mode.$r.json")
    done
  done
  rss=$(python3 "$tables" peak-rss "$LCQ_RUN" "$file" -p "The" -n 128 --ignore-eos --threads 1 "${rt_args[@]}")
  echo "vs_llamacpp.sh: peak RSS $label: lcq-run $((rss >> 20)) MiB, lcq generate $(($(python3 "$tables" peak-rss \
    "$LCQ" generate "$file" -p "The" -n 128 --ignore-eos --threads 1 "${rt_args[@]}") >> 20)) MiB" >&2
  python3 "$tables" speed-row "$model" lcq "$label" "$file" no "$rss" "$threads" "${outs[@]}" >>"$results"
}

if [ "$do_smollm2" = 1 ]; then
  src=${LCQ_SMOLLM2_GGUF:-}
  [ -n "$src" ] || src=$("$repo/scripts/fetch_smollm2.sh") || die "could not fetch SmolLM2 (scripts/fetch_smollm2.sh)"
  [ -f "$src" ] || die "$src: no such file (LCQ_SMOLLM2_GGUF)"
  d="$work/smollm2"; mkdir -p "$d"
  fp="$d/fp32.gguf"  # the Q4_1 file's weights, dequantized: what lcq and llama.cpp both start from
  make_once "$fp" "$LCQ" convert "$src" @OUT@ --type f32 --quiet
  first=1
  for t in $types; do
    make_once "$d/llamacpp-$t.gguf" "$LLAMACPP_BIN/llama-quantize" "$fp" @OUT@ "$t"
  done
  if [ ${#lcq_smollm2[@]} = 0 ] && [ -n "$LCQ_SMOLLM2_QUANTIZE" ]; then
    read -r -a qargs <<<"$LCQ_SMOLLM2_QUANTIZE"
    f="$d/lcq-$(slug "$LCQ_SMOLLM2_QUANTIZE").gguf"
    make_once "$f" "$LCQ" quantize "$fp" -o @OUT@ "${qargs[@]}" --quiet
    lcq_smollm2=("$f")
  fi
  for t in $types; do
    bench_llamacpp SmolLM2-135M "$t" "$d/llamacpp-$t.gguf" "$([ $first = 1 ] && echo yes || echo no)"
    first=0
  done
  for f in "${lcq_smollm2[@]}"; do bench_lcq SmolLM2-135M "$(basename "$f" .gguf)" "$f"; done
fi

if [ "$do_synth" = 1 ]; then
  tok="$shared/models/stories260K/tok512.bin"
  [ -f "$tok" ] || die "$tok: missing (the synthetic model's vocabulary; set LCQ_SHARED_DIR)"
  [ -x "$SYNTH_TOOL" ] || die "$SYNTH_TOOL: not built (cmake --build build --target make_synthetic_model)"
  d="$work/synthetic"; mkdir -p "$d"
  read -r -a shape <<<"$SYNTHETIC_SHAPE"
  fp="$d/$(slug "$SYNTHETIC_SHAPE")-f16.gguf"
  make_once "$fp" "$SYNTH_TOOL" @OUT@ --tokenizer "$tok" "${shape[@]}" --type f16
  for t in $synth_types; do
    make_once "$d/$(basename "$fp" -f16.gguf)-llamacpp-$t.gguf" "$LLAMACPP_BIN/llama-quantize" "$fp" @OUT@ "$t"
  done
  if [ ${#lcq_synth[@]} = 0 ] && [ -n "$LCQ_SYNTHETIC_QUANTIZE" ]; then
    read -r -a qargs <<<"$LCQ_SYNTHETIC_QUANTIZE"
    f="$d/$(basename "$fp" -f16.gguf)-lcq-$(slug "$LCQ_SYNTHETIC_QUANTIZE").gguf"
    make_once "$f" "$LCQ" quantize "$fp" -o @OUT@ "${qargs[@]}" --quiet
    lcq_synth=("$f")
  fi
  first=1
  for t in $synth_types; do
    bench_llamacpp synthetic-813M "$t" "$d/$(basename "$fp" -f16.gguf)-llamacpp-$t.gguf" \
      "$([ $first = 1 ] && echo yes || echo no)"
    first=0
  done
  for f in "${lcq_synth[@]}"; do
    label=$(basename "$f" .gguf)
    bench_lcq synthetic-813M "${label#"$(basename "$fp" -f16.gguf)"-}" "$f"
  done
fi

echo
echo "$LLAMACPP_VERSION_LINE; lcq $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?');" \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1); $(date -u +%Y-%m-%d); medians of $reps runs;" \
  "threads ${threads//,/ and }; decode tg128 from an empty context, prefill pp512; load average at start $load0"
echo
python3 "$tables" speed-table "$results"
echo
echo "(results: $results; logs: $logs)"
