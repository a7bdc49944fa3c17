#!/bin/bash
# Runs a command with every other CPU-heavy process of the machine stopped (SIGSTOP) for its
# length, and resumes them (SIGCONT) however it ends. Unlike tools/paused_run.sh (one
# pattern, matched once), it rescans every second, so that builds, tests, fuzzers and other
# lcq or llama.cpp runs started meanwhile are stopped too. The command and all of its
# descendants are left running (found by parent process id: ninja and timeout put their
# children in process groups of their own).
# BENCHMARKS.md's "quiet" figures were taken this way.
#
#   tools/quiet_run.sh COMMAND [ARGS...]
#
# QUIET_PATTERN (an awk regular expression on the process name) says what is heavy.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: tools/quiet_run.sh COMMAND [ARGS...]" >&2; exit 2; }
pattern=${QUIET_PATTERN:-'cc1plus|clang|^ld$|^lcq|llama-|^test_|ninja|fuzz|python3|ctest|make_synth|bench_|decode_acc'}
stopped=$(mktemp)
# Heavy processes that are not this script's descendants.
heavy() {
  ps -eo pid,ppid,comm --no-headers | awk -v p="$pattern" -v root=$$ '
    { parent[$1] = $2; name[$1] = $3 }
    END {
      for (pid in parent) {
        mine = 0
        for (q = pid; q > 1 && !mine; q = parent[q]) if (q == root) mine = 1
        if (!mine && name[pid] ~ p) print pid
      }
    }'
}
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
