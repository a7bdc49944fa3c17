#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang, -DLCQ_FUZZ=ON: coverage + AddressSanitizer
# + UndefinedBehaviorSanitizer), makes their seed corpora once (fuzz/make_corpus.sh) and runs
# each target in turn on one core, niced. Exits 1 when any target finds something: the input
# is saved in build-fuzz/findings/. docs/fuzzing.md explains the targets and the output.
#
#   scripts/fuzz.sh [--smoke | --time SECONDS [--cpu]] [--timeout SECONDS] [--jobs N] [TARGET...]
#     --smoke        30 s per target, from the seeds alone (what CI runs)
#     --time S       S seconds per target (default 600), growing build-fuzz/corpus/TARGET
#     --jobs N       build jobs (default 2)
#     --timeout S    seconds one input may take before it counts as a hang (default 30; the
#                    clock is wall time, so raise it on a machine whose jobs get paused)
#     --cpu          count --time in CPU seconds of the target, not wall time: on a machine
#                    where other work pauses jobs (SIGSTOP), each target still gets its time
#     TARGET         gguf codebook llama2c safetensors hf_model tokenizer_bin tokenizer_json
#                    spm_proto zeroshot_tasks (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
all_targets=(gguf codebook llama2c safetensors hf_model tokenizer_bin tokenizer_json spm_proto zeroshot_tasks)
seconds=600
timeout=30
cpu=0
smoke=0
jobs=2
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; seconds=30 ;;
    --time) seconds=${2:?--time needs seconds}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift ;;
    --cpu) cpu=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "scripts/fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "scripts/fuzz.sh: unknown target '$t' (${all_targets[*]})" >&2; exit 2; }
done

shared=${LCQ_SHARED_DIR:-../shared}
export LCQ_SHARED_DIR=$(cd "$shared" && pwd)
dir=build-fuzz
cxx=${LCQ_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++)}
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" -DLCQ_FUZZ=ON \
  -DLCQ_BUILD_TESTS=OFF -DLCQ_BUILD_BENCH=OFF -DLCQ_SHARED_DIR="$LCQ_SHARED_DIR" >/dev/null
cmake --build "$dir" --target lcq_fuzzers -j "$jobs"
[ -d "$dir/seeds" ] || fuzz/make_corpus.sh "$dir/seeds"

dict_for() {
  case "$1" in
    gguf|codebook) echo fuzz/dicts/gguf.dict ;;
    safetensors|hf_model|tokenizer_json) echo fuzz/dicts/json.dict ;;
    zeroshot_tasks) echo fuzz/dicts/zeroshot.dict ;;
  esac
}

mkdir -p "$dir/findings" "$dir/logs"
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$dir/corpus/$t"
  [ "$smoke" = 1 ] && corpus="$dir/smoke-corpus/$t" && rm -rf "$corpus"
  mkdir -p "$corpus" "$dir/seeds/$t"
  dict=$(dict_for "$t")
  log="$dir/logs/$t.log"
  echo "== fuzz_$t: $seconds s"
  # One process on one core (libFuzzer's default: no -jobs/-workers); the limits make a slow
  # input (hang), a large allocation or a growing heap a finding rather than a stall.
  # TIMEFORMAT: the CPU seconds the target had (less than the wall time on a busy machine).
  # With --cpu libFuzzer gets no time limit; it is interrupted (SIGINT: it prints its final
  # statistics and exits) once it has used $seconds CPU seconds.
  limit=$seconds
  [ "$cpu" = 1 ] && limit=$((seconds * 1000))
  set +e
  TIMEFORMAT="cpu %U+%S s, wall %R s"
  { time {
      nice -n 10 "$dir/fuzz/fuzz_$t" "$corpus" "$dir/seeds/$t" ${dict:+-dict="$dict"} \
        -max_total_time="$limit" -max_len=65536 -timeout="$timeout" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$dir/findings/$t-" >"$log" 2>&1 &
      pid=$!
      if [ "$cpu" = 1 ]; then
        tick=$(getconf CLK_TCK)
        while kill -0 "$pid" 2>/dev/null; do
          used=$(awk -v t="$tick" '{ print int(($14 + $15) / t) }' "/proc/$pid/stat" 2>/dev/null || echo 0)
          [ "${used:-0}" -ge "$seconds" ] && { kill -INT "$pid"; break; }
          sleep 2
        done
      fi
      wait "$pid"
    }; } 2>"$dir/logs/$t.time"
  rc=$?
  set -e
  # clang 14's libFuzzer exits 72 when interrupted, whatever -interrupt_exitcode says.
  [ "$cpu" = 1 ] && [ "$rc" = 72 ] && grep -q 'libFuzzer: run interrupted' "$log" && rc=0
  stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -E 's/^#([0-9]+)\s+\S+\s+/\1 /')
  runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  line="$t: ${runs:-?} runs, $(cat "$dir/logs/$t.time"), last status: #${stats:-?}"
  summary+=("$line")
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz_$t FOUND SOMETHING (exit $rc); log: $log" >&2
    grep -E 'ERROR|lcq fuzz finding|runtime error|Test unit written|SUMMARY' "$log" | head -n 20 >&2 || true
  fi
done
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]} (inputs in $dir/findings/)" >&2
  exit 1
fi
