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
    print("| bits | method | rank | loss | epochs | bits/weight | PPL | quantization wall time | peak RSS |")
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    rows = []
    for q in d.glob("*.q.json"):
        name = q.name[: -len(".q.json")]
        p, err = d / f"{name}.ppl.json", d / f"{name}.q.err"
        if not p.exists() or p.stat().st_size == 0:  # failed, or still running
            continue
        ppl, qj = json.loads(p.read_text()), json.loads(q.read_text())
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err.read_text()).group(1))
        st = qj["settings"]
        trained = st["method"] == "lcq"
        rows.append(((st["bits"], trained, st["rank"], st.get("loss", "mse"), st["epochs"]), st, qj, ppl, rss_kb))
    for key, st, qj, ppl, rss_kb in sorted(rows, key=lambda r: r[0]):
        secs = qj["seconds"]
        wall = f"{secs:.1f} s" if secs < 120 else f"{secs / 60:.1f} min"
        loss, epochs = (st.get("loss", "mse"), st["epochs"]) if key[1] else ("", "")
        print(f"| {st['bits']} | {st['method'].upper()} | {st['rank']} | {loss} | {epochs} | "
              f"{qj['bits_per_weight']:.3f} | {ppl['perplexity']:.2f} | {wall} | {rss_kb / 2**20:.2f} GiB |")

if __name__ == "__main__":
    main(sys.argv[1])
