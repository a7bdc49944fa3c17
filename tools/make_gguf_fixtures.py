#!/usr/bin/env python3
"""Writes the GGUF test fixtures in tests/fixtures/gguf/ (run by hand, not in CI).

    pip install gguf numpy
    python3 tools/make_gguf_fixtures.py [--smollm2 path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

quant_types.gguf holds, for every ggml type lcq dequantizes, a tensor "<TYPE>.q" of that
type and a tensor "<TYPE>.expected" (F32, same shape) with the values the reference
implementation in the `gguf` package (gguf.quants.dequantize) gives for it. Types the
package can quantize are made from random values; for the k-quants (which it can only
dequantize) the block bytes are random but valid (finite f16 scales).

smollm2_rows.json (with --smollm2) holds the first 64 values of a few rows of real SmolLM2
tensors (Q8_0 token_embd, Q4_1 attention weights, an F32 norm), as the package dequantizes
them; rows are in GGUF/PyTorch order (row r = the r-th run of ne[0] values).
"""
import argparse
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "fixtures", "gguf")


def random_f16(rng, n, lo, hi):
    return rng.uniform(lo, hi, size=n).astype(np.float16)


def k_quant_blocks(rng, qtype, n_blocks):
    """Random but valid super-blocks for Q4_K, Q5_K and Q6_K (layouts in gguf.quants)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype in (T.Q4_K, T.Q5_K):
        # d and dmin lead the block.
        raw[:, 0:2] = random_f16(rng, n_blocks, 1e-3, 5e-2).view(np.uint8).reshape(n_blocks, 2)
        raw[:, 2:4] = random_f16(rng, n_blocks, 1e-3, 5e-2).view(np.uint8).reshape(n_blocks, 2)
    elif qtype == T.Q6_K:
        # d closes the block; the int8 scales before it may be anything.
        raw[:, type_size - 2:] = random_f16(rng, n_blocks, 1e-3, 5e-2).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def make_quant_types(path):
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(path, "fixture")
    for qtype, cols in [(T.F16, 64), (T.BF16, 64), (T.Q8_0, 64), (T.Q4_0, 64), (T.Q4_1, 64),
                        (T.Q4_K, 256), (T.Q5_K, 256), (T.Q6_K, 256)]:
        rows = 2
        name = qtype.name
        if qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
            n_blocks = rows * cols // 256
            q = k_quant_blocks(rng, qtype, n_blocks).reshape(rows, -1)
        else:
            values = rng.normal(0.0, 0.05, size=(rows, cols)).astype(np.float32)
            if qtype == T.F16:
                # Edge cases of the half format: zero, -0, a subnormal, the largest finite.
                values[0, :4] = [0.0, -0.0, 6e-8, 65504.0]
            q = quants.quantize(values, qtype)
        expected = quants.dequantize(q, qtype).astype(np.float32).reshape(rows, cols)
        if qtype == T.F16:
            w.add_tensor(name + ".q", q.view(np.float16).reshape(rows, cols))
        else:
            w.add_tensor(name + ".q", q, raw_dtype=qtype)
        w.add_tensor(name + ".expected", expected)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_smollm2_rows(model_path, path):
    r = gguf.GGUFReader(model_path)
    tensors = {t.name: t for t in r.tensors}
    picks = [("token_embd.weight", [0, 1000, 49151]),
             ("blk.0.attn_q.weight", [0, 100, 575]),
             ("blk.0.attn_k.weight", [0, 191]),
             ("blk.29.ffn_down.weight", [3, 575]),
             ("blk.0.attn_norm.weight", [0])]
    out = {"file_size": os.path.getsize(model_path), "rows": []}
    for name, rows in picks:
        t = tensors[name]
        values = quants.dequantize(np.asarray(t.data), t.tensor_type)
        values = np.asarray(values, dtype=np.float32).reshape(-1, int(t.shape[0]))  # shape[0] = ne[0]
        for row in rows:
            out["rows"].append({"tensor": name, "type": t.tensor_type.name, "row": row,
                                "values": values[row, :64]})
    # One row per line; values as the shortest decimals that read back as the same f32.
    with open(path, "w") as f:
        f.write('{"file_size": %d, "rows": [\n' % out["file_size"])
        lines = []
        for r in out["rows"]:
            vals = ", ".join(np.format_float_positional(v, unique=True, trim="-") if abs(v) >= 1e-4 or v == 0
                             else np.format_float_scientific(v, unique=True, trim="-") for v in r["values"])
            lines.append(' {"tensor": "%s", "type": "%s", "row": %d, "values": [%s]}'
                         % (r["tensor"], r["type"], r["row"], vals))
        f.write(",\n".join(lines) + "\n]}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf (default: $LCQ_SMOLLM2_GGUF)",
                    default=os.environ.get("LCQ_SMOLLM2_GGUF"))
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    make_quant_types(os.path.join(OUT_DIR, "quant_types.gguf"))
    print("wrote", os.path.join(OUT_DIR, "quant_types.gguf"))
    if args.smollm2:
        make_smollm2_rows(args.smollm2, os.path.join(OUT_DIR, "smollm2_rows.json"))
        print("wrote", os.path.join(OUT_DIR, "smollm2_rows.json"))


if __name__ == "__main__":
    main()
