#!/usr/bin/env bash
# Forward throughput and peak memory of `lcq perplexity` (GPTQ protocol) at 1 and 2 threads,
# median of N runs, as a Markdown table. Usage:
#   bench/forward_throughput.sh MODEL TEXT [SEQLEN=2048] [WINDOWS=2] [RUNS=3]
set -euo pipefail
model=$1 text=$2 seqlen=${3:-2048} windows=${4:-2} runs=${5:-3}
lcq="$(dirname "$0")/../build/src/lcq"
echo "| threads | tokens/s (median of $runs) | all runs | peak RSS (MiB) |"
echo "|---|---|---|---|"
for t in 1 2; do
  rates=() rss=0
  for _ in $(seq "$runs"); do
    out=$("$lcq" perplexity "$model" --text "$text" --seqlen "$seqlen" --limit "$windows" --threads "$t" --json --quiet)
    rates+=("$(python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["tokens_per_second"])' <<<"$out")")
    rss=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_bytes"] // 2**20)' <<<"$out")
  done
  median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "| $t | $median | ${rates[*]} | $rss |"
done
