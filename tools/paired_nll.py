#!/usr/bin/env python3
"""Paired comparison of two `lcq perplexity --json` results on the same text.

Both runs score the same windows, so the difference of their per-window mean NLL
(`window_nll`) is a paired sample: its mean and standard error say whether a perplexity
gap is larger than the spread between windows.

    tools/paired_nll.py A.json B.json

prints the perplexities, the mean NLL difference B - A with its standard error, and the
number of windows where B is better.
"""
import json
import math
import sys


def load(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d, d["window_nll"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{path}: not an `lcq perplexity --json` result with window_nll ({e})")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: tools/paired_nll.py A.json B.json")
    (a, wa), (b, wb) = load(sys.argv[1]), load(sys.argv[2])
    if len(wa) != len(wb) or a.get("text") != b.get("text") or a.get("seqlen") != b.get("seqlen"):
        sys.exit(f"{sys.argv[2]}: not the same windows as {sys.argv[1]} (text, seqlen or window count differ)")
    n = len(wa)
    d = [y - x for x, y in zip(wa, wb)]
    mean = sum(d) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1) / n) if n > 1 else float("nan")
    print(f"A {a['perplexity']:.4f}  B {b['perplexity']:.4f}  ({n} windows)")
    print(f"mean NLL B - A = {mean:+.5f} nats, standard error {se:.5f} ({mean / se:+.1f} SE)" if se > 0 else
          f"mean NLL B - A = {mean:+.5f} nats")
    print(f"B better on {sum(v < 0 for v in d)} of {n} windows")


if __name__ == "__main__":
    main()
