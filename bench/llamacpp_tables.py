#!/usr/bin/env python3
"""Helpers of bench/vs_llamacpp.sh and bench/vs_llamacpp_quality.sh (stdlib only).

  llamacpp_tables.py gguf-info FILE               {"file_bytes", "data_bytes", "parameters", "tensors"}
      data_bytes: the tensor data section (tensors and the padding that aligns each)
  llamacpp_tables.py speed-row MODEL RUNTIME LABEL FILE REFERENCE RSS THREADS RESULT...
      one line of RESULTS.jsonl: RESULT is llama-bench's `-o json` output (runtime llama.cpp), or
      `lcq bench --json` outputs named *.prefill.*.json / *.decode.*.json, one run each (lcq)
  llamacpp_tables.py peak-rss CMD...              runs CMD (output discarded), prints its peak RSS in bytes
  llamacpp_tables.py speed-table RESULTS.jsonl    the Markdown table of vs_llamacpp.sh
  llamacpp_tables.py quality-table RESULTS.jsonl  the Markdown table of vs_llamacpp_quality.sh

Every figure shown is a median of the runs recorded.
"""
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys

MIB = 2**20

# GGUF metadata value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
# 9 array, 10 u64, 11 i64, 12 f64.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class _Reader:
    def __init__(self, f, path):
        self.f, self.path = f, path

    def take(self, fmt):
        size = struct.calcsize(fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise SystemExit(f"llamacpp_tables.py: error: {self.path}: truncated GGUF header")
        return struct.unpack("<" + fmt, raw)[0]

    def string(self):
        n = self.take("Q")
        if n > 1 << 24:
            raise SystemExit(f"llamacpp_tables.py: error: {self.path}: implausible string length {n}")
        return self.f.read(n).decode("utf-8", "replace")

    def value(self, vtype):
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            inner, n = self.take("I"), self.take("Q")
            if inner in _SCALAR:  # skip fixed-size arrays without decoding them
                self.f.seek(n * struct.calcsize(_SCALAR[inner]), os.SEEK_CUR)
                return None
            for _ in range(n):
                self.value(inner)
            return None
        raise SystemExit(f"llamacpp_tables.py: error: {self.path}: unknown GGUF value type {vtype}")


def gguf_info(path):
    """Bytes of the tensor data section (tensors and their alignment padding: the file less its
    header) and the parameter count of a GGUF file; no table of ggml's types needed."""
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if f.read(4) != b"GGUF":
            raise SystemExit(f"llamacpp_tables.py: error: {path}: not a GGUF file")
        version = r.take("I")
        if version not in (2, 3):
            raise SystemExit(f"llamacpp_tables.py: error: {path}: GGUF version {version} not supported")
        n_tensors, n_kv = r.take("Q"), r.take("Q")
        alignment = 32
        for _ in range(n_kv):
            key, vtype = r.string(), r.take("I")
            v = r.value(vtype)
            if key == "general.alignment" and isinstance(v, int):
                alignment = v
        params = 0
        for _ in range(n_tensors):
            r.string()
            dims = [r.take("Q") for _ in range(r.take("I"))]
            r.take("I")  # ggml type
            r.take("Q")  # offset
            n = 1
            for d in dims:
                n *= d
            params += n
        data_offset = (f.tell() + alignment - 1) // alignment * alignment
    size = os.path.getsize(path)
    return {"file_bytes": size, "data_bytes": size - data_offset, "parameters": params, "tensors": n_tensors}


def llama_bench(path, threads):
    """Per-thread-count samples (tokens/s) of llama-bench's pp and tg tests."""
    with open(path) as f:
        runs = json.load(f)
    out = {"decode": {}, "prefill": {}, "build_commit": None}
    for run in runs:
        out["build_commit"] = run.get("build_commit")
        kind = "prefill" if run["n_prompt"] > 0 and run["n_gen"] == 0 else "decode" if run["n_gen"] > 0 and run["n_prompt"] == 0 else None
        if kind is None or str(run["n_threads"]) not in threads:
            continue
        samples = run.get("samples_ts") or [run["avg_ts"]]
        out[kind][str(run["n_threads"])] = samples
    return out


def lcq_bench(paths):
    """Samples from `lcq bench --json` runs: prefill figures from *.prefill.* runs, decode
    figures from *.decode.* runs (each mode runs with its own prompt length)."""
    out = {"decode": {}, "prefill": {}}
    for path in paths:
        kind = "prefill" if ".prefill." in os.path.basename(path) else "decode"
        with open(path) as f:
            j = json.load(f)
        for run in j["model"]["runs"]:
            out[kind].setdefault(str(run["threads"]), []).append(run[f"{kind}_tokens_per_s"])
    return out


def speed_row(model, runtime, label, path, reference, rss, threads, results):
    if runtime == "lcq":
        samples = lcq_bench(results)
    else:
        samples = llama_bench(results[0], threads.split(","))
    return {"model": model, "runtime": runtime, "label": label, "file": path,
            "file_bytes": os.path.getsize(path), "reference": reference == "yes",
            "peak_rss_bytes": int(rss) if rss.isdigit() else None,
            "decode": samples["decode"], "prefill": samples["prefill"]}


def peak_rss(cmd):
    with open(os.devnull, "wb") as null:
        rc = subprocess.call(cmd, stdout=null, stderr=null)
    if rc != 0:
        raise SystemExit(f"llamacpp_tables.py: error: {cmd[0]} exited with {rc} (run it by hand to see why)")
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux


def _med(xs):
    return statistics.median(xs) if xs else None


def _fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def speed_table(path):
    rows = _rows(path)
    if not rows:
        raise SystemExit(f"llamacpp_tables.py: error: {path}: no results")
    threads = sorted({t for r in rows for t in r["decode"]} | {t for r in rows for t in r["prefill"]}, key=int)
    ts = "/".join(threads)
    ref = {}  # model -> the llama.cpp row the lcq rows are compared with
    for r in rows:
        if r["runtime"] != "lcq" and r.get("reference"):
            ref[r["model"]] = r
    def same_size(r):
        """The llama.cpp row of r's model whose file is nearest r's in size, if within 20 %."""
        best = None
        for o in rows:
            if o["runtime"] == "lcq" or o["model"] != r["model"]:
                continue
            gap = abs(math.log(o["file_bytes"] / r["file_bytes"]))
            if gap <= math.log(1.2) and (best is None or gap < best[0]):
                best = (gap, o)
        return best[1] if best else None

    print(f"| model | runtime | file | MiB | decode tok/s ({ts} thr) | prefill tok/s ({ts} thr) | peak RSS MiB "
          f"| lcq/llama.cpp decode | lcq/llama.cpp prefill | decode vs the same size |")
    print("|---|---|---|---:|---:|---:|---:|---|---|---|")
    for r in rows:
        dec = [_med(r["decode"].get(t, [])) for t in threads]
        pre = [_med(r["prefill"].get(t, [])) for t in threads]
        ratio_d = ratio_p = ratio_s = ""
        q = lambda a, b: "–" if a is None or not b else f"{a / b:.2f}x"
        base = ref.get(r["model"])
        if r["runtime"] == "lcq" and base:
            bd = [_med(base["decode"].get(t, [])) for t in threads]
            bp = [_med(base["prefill"].get(t, [])) for t in threads]
            ratio_d = " / ".join(q(a, b) for a, b in zip(dec, bd)) + f" (vs {base['label']})"
            ratio_p = " / ".join(q(a, b) for a, b in zip(pre, bp))
        twin = same_size(r) if r["runtime"] == "lcq" else None
        if twin:
            sd = [_med(twin["decode"].get(t, [])) for t in threads]
            ratio_s = " / ".join(q(a, b) for a, b in zip(dec, sd)) + f" (vs {twin['label']})"
        rss = _fmt(r["peak_rss_bytes"] / MIB, 0) if r.get("peak_rss_bytes") else "–"
        print(f"| {r['model']} | {r['runtime']} | {r['label']} | {r['file_bytes'] / MIB:.1f} "
              f"| {' / '.join(_fmt(x) for x in dec)} | {' / '.join(_fmt(x) for x in pre)} | {rss} "
              f"| {ratio_d} | {ratio_p} | {ratio_s} |")


def quality_table(path):
    rows = _rows(path)
    texts = []
    for r in rows:
        for name in r["ppl"]:
            if name not in texts:
                texts.append(name)
    print("| file | size MB | size MiB | bits/weight | " + " | ".join(f"PPL {t}" for t in texts) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(texts))
    for r in rows:
        ppl = [r["ppl"].get(t) for t in texts]
        print(f"| {r['label']} | {r['file_bytes'] / 1e6:.1f} | {r['file_bytes'] / MIB:.1f} | {r['bpw']:.2f} | "
              + " | ".join(_fmt(p, 2) for p in ppl) + " |")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "gguf-info" and len(args) == 1:
        print(json.dumps(gguf_info(args[0])))
    elif cmd == "speed-row" and len(args) >= 8:
        print(json.dumps(speed_row(*args[:7], args[7:])))
    elif cmd == "peak-rss" and args:
        print(peak_rss(args))
    elif cmd == "speed-table" and len(args) == 1:
        speed_table(args[0])
    elif cmd == "quality-table" and len(args) == 1:
        quality_table(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
