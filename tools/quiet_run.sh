#!/bin/bash
# Runs a command with every other CPU-heavy process of the machine stopped (SIGSTOP) for its
# length, and resumes them (SIGCONT) however it ends. Unlike tools/paused_run.sh (one
# pattern, matched once), it rescans every second, so that builds, tests, fuzzers and other
# lcq or llama.cpp runs started meanwhile are stopped too. The command's own process group
# (the benchmark script and everything it starts) is left running.
# BENCHMARKS.md's "quiet" figures were taken this way.
#
#   tools/quiet_run.sh COMMAND [ARGS...]
#
# QUIET_PATTERN (an awk regular expression on the process name) says what is heavy.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: tools/quiet_run.sh COMMAND [ARGS...]" >&2; exit 2; }
pattern=${QUIET_PATTERN:-'cc1plus|clang|^ld$|^lcq|llama-|^test_|ninja|fuzz|python3|ctest|make_synth|bench_|decode_acc'}
me=$(ps -o pgid= $$ | tr -d ' ')
stopped=$(mktemp)
heavy() { ps -eo pid,pgid,comm --no-headers | awk -v p="$pattern" -v me="$me" '$2 != me && $3 ~ p {print $1}'; }
scan() {
  while true; do
    for pid in $(heavy); do grep -qx "$pid" "$stopped" || { kill -STOP "$pid" 2>/dev/null && echo "$pid" >>"$stopped"; }; done
    sleep 1
  done
}
resume() {
  kill "$scanner" 2>/dev/null; wait "$scanner" 2>/dev/null
  xargs -r kill -CONT <"$stopped" 2>/dev/null
  rm -f "$stopped"
}
scan &
scanner=$!
trap resume EXIT
trap 'exit 130' INT TERM
sleep 1.5  # one scan has run
"$@"
