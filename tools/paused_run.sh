#!/bin/bash
# Runs a command while other processes are stopped (SIGSTOP), then resumes them (SIGCONT),
# so that a benchmark on a shared machine measures itself and not the background job.
# BENCHMARKS.md's "background paused" figures were taken this way.
#
#   tools/paused_run.sh [--wait] PATTERN -- COMMAND [ARGS...]
#
# PATTERN is a `pgrep -f` pattern (e.g. 'lcq perplexity'). With --wait, the command starts
# only once such a process exists (pause an evaluation phase, never a run whose timings are
# themselves being reported). The paused processes are resumed however the command ends.
set -euo pipefail

wait_for=0
if [[ "${1:-}" == "--wait" ]]; then wait_for=1; shift; fi
if [[ $# -lt 3 || "$2" != "--" ]]; then
  echo "usage: tools/paused_run.sh [--wait] PATTERN -- COMMAND [ARGS...]" >&2
  exit 2
fi
pattern=$1
shift 2

# The matching processes, except this script and its subshells (their command lines hold
# the pattern too).
matching() {
  local pid cmd
  for pid in $(pgrep -f -- "$pattern" || true); do
    cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue  # gone meanwhile
    [[ -z "$cmd" || "$cmd" == *paused_run.sh* ]] || echo "$pid"
  done
}
if ((wait_for)); then
  until [[ -n "$(matching)" ]]; do sleep 2; done
fi
mapfile -t pids < <(matching)
resume() { ((${#pids[@]})) && kill -CONT "${pids[@]}" 2>/dev/null || true; }
trap resume EXIT
((${#pids[@]})) && kill -STOP "${pids[@]}" 2>/dev/null || true
echo "paused ${#pids[@]} process(es) matching '$pattern': ${pids[*]:-none}" >&2
"$@"
