#!/bin/bash
# The issue-3 grid on SmolLM2-135M: FP, RTN and LCQ (ranks 1, 2, 4) at W3, W2, W4 g128.
# Each configuration is quantized (wall time and peak RSS from /usr/bin/time -v), evaluated
# on the first $LIMIT GPTQ windows (2048 tokens) of WikiText-2 test, and deleted; results
# are JSON files in $OUT, tabulated by bench/grid_table.py. Finished configurations are
# skipped on a rerun. Run nothing else meanwhile: timings are wall clock on 2 cores.
#
#   bench/smollm2_grid.sh MODEL.gguf WIKI_TEST.txt CALIB.txt OUT_DIR
# Environment: LCQ (binary, default build/src/lcq), LIMIT (12; 0 = the whole test set),
# NS (32 calibration windows of 512 tokens), EP (2 epochs), BITS ("3 2 4"), RANKS ("1 2 4"),
# EXTRA (more lcq quantize arguments, e.g. "--loss token-relative") with TAG (a suffix for
# the names of those runs, e.g. "_tr", so that variants share one FP and RTN result).
set -u
G=$1 W=$2 C=$3 O=$4
L=${LCQ:-build/src/lcq}
LIMIT=${LIMIT:-12}
CAL="--calib $C --nsamples ${NS:-32} --seqlen 512 --epochs ${EP:-2}"
mkdir -p "$O"
ppl() { $L perplexity "$1" --text "$W" --limit "$LIMIT" --threads 2 --json --quiet >"$O/$2.ppl.json.tmp" 2>"$O/$2.ppl.err" &&
        mv "$O/$2.ppl.json.tmp" "$O/$2.ppl.json"; }
run() {  # name, quantize args...
  local n=$1; shift
  [ -s "$O/$n.ppl.json" ] && return
  /usr/bin/time -v $L quantize "$G" -o "$O/$n.gguf" --group 128 --threads 2 --json --quiet "$@" >"$O/$n.q.json" 2>"$O/$n.q.err" &&
    ppl "$O/$n.gguf" "$n"
  rm -f "$O/$n.gguf"
  echo "$n done $(date +%T)" >>"$O/progress"
}
[ -s "$O/fp.ppl.json" ] || ppl "$G" fp
for b in ${BITS:-3 2 4}; do
  run rtn_w$b --method rtn --bits $b
  for r in ${RANKS:-1 2 4}; do run lcq_w${b}_r$r${TAG:-} --method lcq --bits $b --rank $r $CAL ${EXTRA:-}; done
done
