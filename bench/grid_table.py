#!/usr/bin/env python3
"""Markdown table of a bench/smollm2_grid.sh output directory (stdlib only)."""
import json
import pathlib
import re
import sys


def main(out_dir: str) -> None:
    d = pathlib.Path(out_dir)
    fp = json.loads((d / "fp.ppl.json").read_text())
    print(f"FP perplexity {fp['perplexity']:.2f} ({fp['windows']} windows, {fp['scored_tokens']} tokens scored)\n")
    print("| bits | method | rank | bits/weight | PPL | quantization wall time | peak RSS |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for bits in (2, 3, 4):
        for name in [f"rtn_w{bits}"] + [f"lcq_w{bits}_r{r}" for r in (1, 2, 4)]:
            p, q, err = d / f"{name}.ppl.json", d / f"{name}.q.json", d / f"{name}.q.err"
            if not p.exists() or p.stat().st_size == 0:  # not run, or running
                continue
            ppl, qj = json.loads(p.read_text()), json.loads(q.read_text())
            rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err.read_text()).group(1))
            method = qj["settings"]["method"]
            rank = qj["settings"]["rank"] if method == "lcq" else 1
            secs = qj["seconds"]
            wall = f"{secs:.1f} s" if secs < 120 else f"{secs / 60:.1f} min"
            print(f"| {bits} | {method.upper()} | {rank} | {qj['bits_per_weight']:.3f} | {ppl['perplexity']:.2f} | "
                  f"{wall} | {rss_kb / 2**20:.2f} GiB |")


if __name__ == "__main__":
    main(sys.argv[1])
