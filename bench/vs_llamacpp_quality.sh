#!/usr/bin/env bash
# Accuracy per byte of lcq's files and llama.cpp's imatrix quants of SmolLM2-135M-Instruct,
# scored by one protocol (`lcq perplexity`, GPTQ windows of 2048 tokens) on the whole
# WikiText-2 test set and on PTB test, as one Markdown table (docs/llamacpp.md).
#
#   bench/vs_llamacpp_quality.sh [LCQ_FILE]... [options]
#
# llama.cpp's side: an importance matrix from the calibration text lcq uses (llama-imatrix
# -c 512 --chunks 128 on ptb.valid.txt by default), the Q4_0, IQ4_NL, Q5_0 and Q8_0 files
# quantized with it from the same f32 weights lcq starts from (the Q4_1 file dequantized,
# the row "FP"), each dequantized to F32 (llama-quantize --allow-requantize IN OUT F32) so
# that lcq scores it. The LCQ_FILEs (lcq's quantized SmolLM2 files) are scored as they are.
# Sizes and bits per weight are those of the quantized files (tensor bytes x 8 / the FP
# model's parameters, embedding and head included).
#
# Each score is cached in WORK/ppl-cache under the file's and the text's SHA-256 and the
# protocol, so a rerun scores only new files (the whole WikiText-2 test takes ~30 min per
# file on a 2-core machine). Options:
#   --types "Q4_0 ..."   llama.cpp types (default "Q4_0 IQ4_NL Q5_0 Q8_0")
#   --calib FILE         calibration text (default $LCQ_SHARED_DIR/data/ptb/ptb.valid.txt)
#   --chunks N, --ctx N  imatrix calibration: N chunks of N tokens (default 128 x 512)
#   --text NAME=FILE     a text to score (repeatable; default wiki = WikiText-2 test joined,
#                        ptb = PTB test)
#   --limit N            score only the first N windows of each text (default 0: all)
#   --seqlen N           window length (default 2048)
#   --threads N          threads of lcq perplexity (default 2)
#   --no-fp              leave out the FP row
#   --work DIR           default $LCQ_CACHE/vs_llamacpp
# Environment: LCQ, LCQ_SMOLLM2_GGUF, LCQ_SHARED_DIR, LCQ_NICE (niceness of the long steps:
# imatrix, quantization, scoring; default 19, the machine may be shared), and
# bench/llamacpp.sh's settings.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/llamacpp.sh
. "$here/llamacpp.sh"

die() { echo "vs_llamacpp_quality.sh: error: $*" >&2; exit 1; }
bad_usage() { echo "vs_llamacpp_quality.sh: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

shared=${LCQ_SHARED_DIR:-$repo/../shared}
types="Q4_0 IQ4_NL Q5_0 Q8_0" calib="$shared/data/ptb/ptb.valid.txt" chunks=128 ctx=512
limit=0 seqlen=2048 nthreads=2 with_fp=1 work="$LCQ_CACHE/vs_llamacpp"
text_names=() text_files=() lcq_files=()
while [ $# -gt 0 ]; do
  case $1 in
    --types) types=${2:?}; shift 2 ;;
    --calib) calib=${2:?}; shift 2 ;;
    --chunks) chunks=${2:?}; shift 2 ;;
    --ctx) ctx=${2:?}; shift 2 ;;
    --text) [[ ${2:-} == *=* ]] || bad_usage "--text needs NAME=FILE"; text_names+=("${2%%=*}"); text_files+=("${2#*=}"); shift 2 ;;
    --limit) limit=${2:?}; shift 2 ;;
    --seqlen) seqlen=${2:?}; shift 2 ;;
    --threads) nthreads=${2:?}; shift 2 ;;
    --no-fp) with_fp=0; shift ;;
    --work) work=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "vs_llamacpp_quality.sh: unknown option '$1'" >&2; usage ;;
    *) lcq_files+=("$1"); shift ;;
  esac
done
if [ ${#text_names[@]} = 0 ]; then
  text_names=(wiki ptb)
  text_files=("$shared/data/wikitext2/wiki.test.joined.txt" "$shared/data/ptb/ptb.test.txt")
fi
for n in limit seqlen nthreads chunks ctx; do
  [[ ${!n} =~ ^[0-9]+$ ]] || bad_usage "--${n/nthreads/threads} must be a non-negative integer (got '${!n}')"
done
for f in "$calib" "${text_files[@]}" "${lcq_files[@]}"; do [ -f "$f" ] || die "$f: no such file"; done

LCQ=${LCQ:-$repo/build/src/lcq}
nice=${LCQ_NICE:-19}
[ -x "$LCQ" ] || die "$LCQ: not built (cmake --build build --target lcq), or set LCQ"
tables="$here/llamacpp_tables.py"
llamacpp_ensure
d="$work/smollm2"
cache="$work/ppl-cache"
logs="$work/quality-logs"
mkdir -p "$d" "$cache" "$logs" || die "cannot create directories under $work"

cur_tmp=
trap '[ -n "$cur_tmp" ] && rm -f "$cur_tmp"' EXIT  # no half-made file left behind
trap 'exit 130' INT
trap 'exit 143' TERM
make_once() {  # OUT CMD... (@OUT@ in CMD = the temporary output); the output appears atomically
  local out=$1; shift
  [ -s "$out" ] && return 0
  local tmp="${out%.gguf}.tmp$$.gguf" log
  log="$logs/$(basename "$out").log"
  rm -f "$tmp"
  cur_tmp=$tmp
  echo "vs_llamacpp_quality.sh: making $out" >&2
  nice -n "$nice" "${@//@OUT@/$tmp}" >"$log" 2>&1 || { rm -f "$tmp"; die "could not make $out; see $log"; }
  mv "$tmp" "$out"
  cur_tmp=
}

src=${LCQ_SMOLLM2_GGUF:-}
[ -n "$src" ] || src=$("$repo/scripts/fetch_smollm2.sh") || die "could not fetch SmolLM2 (scripts/fetch_smollm2.sh)"
[ -f "$src" ] || die "$src: no such file (LCQ_SMOLLM2_GGUF)"
fp="$d/fp32.gguf"
make_once "$fp" "$LCQ" convert "$src" @OUT@ --type f32 --quiet
calib_tag="$(basename "$calib" .txt)-$(sha256sum "$calib" | cut -c1-8)-c$ctx-x$chunks"
imatrix="$d/imatrix-$calib_tag.gguf"
make_once "$imatrix" "$LLAMACPP_BIN/llama-imatrix" -m "$fp" -f "$calib" -c "$ctx" --chunks "$chunks" \
  -t "$nthreads" -o @OUT@

# label, file whose size counts, file that is scored
labels=() sized=() scored=()
[ "$with_fp" = 1 ] && { labels+=("FP (f32)"); sized+=("$fp"); scored+=("$fp"); }
for t in $types; do
  q="$d/llamacpp-$t-imatrix-$calib_tag.gguf"
  make_once "$q" "$LLAMACPP_BIN/llama-quantize" --imatrix "$imatrix" "$fp" @OUT@ "$t"
  make_once "${q%.gguf}.f32.gguf" "$LLAMACPP_BIN/llama-quantize" --allow-requantize "$q" @OUT@ F32
  labels+=("llama.cpp $t + imatrix"); sized+=("$q"); scored+=("${q%.gguf}.f32.gguf")
done
for f in "${lcq_files[@]}"; do labels+=("lcq $(basename "$f" .gguf)"); sized+=("$f"); scored+=("$f"); done

params=$(python3 "$tables" gguf-info "$fp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["parameters"])')
protocol="gptq-s$seqlen-l$limit"
declare -A hashes
for f in "${scored[@]}"; do hashes[$f]=$(sha256sum "$f" | cut -c1-16); done

# Scores text by text (all files on the first text before the second), from the cache when there.
declare -A ppl
for i in "${!text_names[@]}"; do
  name=${text_names[$i]} text=${text_files[$i]}
  th=$(sha256sum "$text" | cut -c1-16)
  for k in "${!scored[@]}"; do
    f=${scored[$k]}
    entry="$cache/${hashes[$f]}-$th-$protocol.json"
    if [ ! -s "$entry" ]; then
      echo "vs_llamacpp_quality.sh: scoring ${labels[$k]} on $name ($(date +%H:%M))" >&2
      log="$logs/$(basename "$f" .gguf)-$name-$protocol.log"
      cur_tmp="$entry.tmp"
      nice -n "$nice" "$LCQ" perplexity "$f" --text "$text" --seqlen "$seqlen" --limit "$limit" --threads "$nthreads" \
        --json --quiet >"$entry.tmp" 2>"$log" || { rm -f "$entry.tmp"; die "lcq perplexity failed on $f; see $log"; }
      mv "$entry.tmp" "$entry"
      cur_tmp=
    fi
    ppl[$k,$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["perplexity"])' "$entry")
  done
done

rows="$work/quality-$(date +%Y%m%d-%H%M%S).jsonl"
: >"$rows"
for k in "${!scored[@]}"; do
  info=$(python3 "$tables" gguf-info "${sized[$k]}")
  pj="{"
  for name in "${text_names[@]}"; do pj+="\"$name\": ${ppl[$k,$name]},"; done
  python3 - "$info" "${pj%,}}" "${labels[$k]}" "${sized[$k]}" "$params" >>"$rows" <<'EOF'
import json, sys
info, ppl, label, path, params = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
print(json.dumps({"label": label, "file": path, "file_bytes": info["file_bytes"],
                  "bpw": 8 * info["data_bytes"] / params, "ppl": ppl}))
EOF
done

echo
echo "SmolLM2-135M-Instruct ($params parameters); $LLAMACPP_VERSION_LINE; imatrix from $chunks x $ctx tokens of" \
  "$(basename "$calib"); lcq perplexity, GPTQ protocol, seqlen $seqlen, $([ "$limit" = 0 ] && echo "whole texts" || echo "first $limit windows")" \
  "($(for i in "${!text_names[@]}"; do printf '%s = %s; ' "${text_names[$i]}" "$(basename "${text_files[$i]}")"; done | sed 's/; $//'))"
echo
python3 "$tables" quality-table "$rows"
