#!/usr/bin/env python3
"""Markdown table of several `lcq eval --json` outputs side by side (stdlib only).

Usage: bench/zeroshot_table.py NAME=FILE.json [NAME=FILE.json ...]

One row per task metric (acc, acc_norm, LAMBADA's perplexity), one column per model, each
cell "value ± stderr"; then the mean accuracy over tasks, the examples per task, and the
evaluation's wall time and peak RSS as `lcq eval` measured them.
"""
import json
import sys


def cell(metrics: dict, name: str) -> str:
    v = metrics.get(name)
    if v is None:
        return ""
    se = metrics.get(name + "_stderr")
    if name == "perplexity" and v >= 1e5:  # a collapsed model: digits say nothing
        return f"{v:.2e}" + (f" ± {se:.1e}" if se is not None else "")
    digits = 2 if name == "perplexity" else 3
    return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def main(pairs: list) -> None:
    runs = []
    for p in pairs:
        name, _, path = p.partition("=")
        with open(path) as f:
            runs.append((name, json.load(f)))
    print("| task | metric | " + " | ".join(n for n, _ in runs) + " |")
    print("|---|---|" + "---:|" * len(runs))
    first = runs[0][1]
    for ti, task in enumerate(first["tasks"]):
        for mi, metric in enumerate(m for m in task["metrics"] if not m.endswith("_stderr")):
            cells = [cell(r["tasks"][ti]["metrics"], metric) for _, r in runs]
            print(f"| {task['task'] if mi == 0 else ''} | {metric} | " + " | ".join(cells) + " |")
    means = []
    for _, r in runs:
        accs = [t["metrics"]["acc"] for t in r["tasks"]]
        means.append(f"{sum(accs) / len(accs):.3f}")
    print("| **mean acc** | | " + " | ".join(means) + " |")
    print("| examples per task | | " + " | ".join(
        "/".join(sorted({str(t["examples"]) for t in r["tasks"]}, key=int)) for _, r in runs) + " |")
    print("| wall time | | " + " | ".join(f"{r['seconds'] / 60:.1f} min" for _, r in runs) + " |")
    print("| peak RSS | | " + " | ".join(f"{r['peak_rss_bytes'] / 2**20:.0f} MiB" for _, r in runs) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
