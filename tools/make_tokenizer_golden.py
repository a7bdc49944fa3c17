#!/usr/bin/env python3
"""Writes the golden files that tests/test_tokenizer.cpp compares against.

Run by hand (not in CI) after changing the strings below:

    pip install tokenizers gguf numpy
    python3 tools/make_tokenizer_golden.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf

Outputs, in tests/fixtures/tokenizer/:

* smollm2_golden.json -- SmolLM2's vocabulary (read from the GGUF) encoded by Hugging Face
  `tokenizers` with SmolLM2's own pre-tokenizer: Sequence[Digits(individual_digits=True),
  ByteLevel(add_prefix_space=False)]. Ids of the strings below and the token count of the
  whole WikiText-2 test file.
* bytelevel_tiny.json -- a 768-token byte-level BPE trained here on a slice of the shared
  TinyStories/WikiText text (small, so the tests run in CI without the GGUF), and
* bytelevel_golden.json -- its encodings of the strings under the four pre-tokenizers we
  support (default/GPT-2, smollm, llama3, qwen2).

Why `tokenizers` and not `transformers.AutoTokenizer.from_pretrained(dir, gguf_file=...)`:
transformers' GGUF converter has no entry for the GGUF pre-tokenizer "smollm" and falls back
to a plain ByteLevel, so it would not split digits the way SmolLM2 (and llama.cpp) do; it
also needs PyTorch just to read the file. Building the tokenizer from the GGUF's vocabulary
and merges with SmolLM2's published pre-tokenizer is the faithful reference.
"""

import argparse
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def golden_strings(shared):
    with open(os.path.join(shared, "data/wikitext2/wiki.test.joined.txt"), encoding="utf-8") as f:
        wiki = f.read()
    paragraph = next(p for p in wiki.split("\n") if len(p) > 500)
    return [
        "Hello world",
        "Once upon a time, there was a little girl named Lily.",
        "12345",
        "The year 2024 had 365 days; 3.14159 is pi and 1,000,000 is a million (0.5% of 42nd).",
        "Hello, world! How's it going? I'm fine; you'll see. DON'T We'RE they've",
        "multiple   spaces    here",
        "  leading and trailing spaces  ",
        "line one\nline two\n\nline four\n",
        "tabs\tand\r\nwindows newlines\r\n",
        "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F642",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>",
        "email@example.com https://example.org/path?q=1&r=2",
        "def f(x):\n    return x ** 2  # square\n",
        " = Robert Boulter = \n",
        "fa\u00e7ade \u2014 \u201cquotes\u201d and \u2018apostrophes\u2019 \u2026 ellipsis",
        "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0440\u0443\u0441\u0441\u043a\u0438\u0439 "
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940",
        "",
        "   ",
        "aaaaaaaaaa!!!???",
        paragraph,
    ]


def byte_level(use_regex):
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=use_regex)


def pre_tokenizer_for(name):
    if name == "default":
        return byte_level(True)
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level(True)])
    regex = {"llama3": LLAMA3_RE, "qwen2": QWEN2_RE}[name]
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated")
    return pre_tokenizers.Sequence([split, byte_level(False)])


def read_gguf_vocab(path):
    from gguf import GGUFReader
    reader = GGUFReader(path)

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    def ints(key):
        field = reader.fields[key]
        return [int(field.parts[i][0]) for i in field.data]

    return (strings("tokenizer.ggml.tokens"), ints("tokenizer.ggml.token_type"),
            strings("tokenizer.ggml.merges"))


def smollm2_golden(gguf_path, strings, wiki_text):
    tokens, types, merges = read_gguf_vocab(gguf_path)
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tok.pre_tokenizer = pre_tokenizer_for("smollm")
    tok.decoder = decoders.ByteLevel()
    control = [AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(control)
    cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in strings]
    return {
        "source": os.path.basename(gguf_path),
        "reference": "tokenizers %s: BPE from the GGUF vocab/merges, Digits(individual) + ByteLevel" % (
            __import__("tokenizers").__version__),
        "cases": cases,
        "wikitext2_test_tokens": len(tok.encode(wiki_text, add_special_tokens=False).ids),
    }


def tiny_byte_level(shared, strings):
    lines = []
    with open(os.path.join(shared, "data/tinystories/tinystories_val.txt"), encoding="utf-8") as f:
        lines += f.read().split("\n")[:4000]
    with open(os.path.join(shared, "data/wikitext2/wiki.test.joined.txt"), encoding="utf-8") as f:
        lines += f.read().split("\n")[:400]
    # Numbers, apostrophes, code and line breaks, so that the merges cross the places where
    # the four pre-tokenizers cut differently.
    for i in range(3000):
        lines.append("In %d there were %d people, %d.%d%% of %d. It's THEY'RE\n\n" % (
            1900 + i % 200, i * 37 % 100000, i % 100, i % 7, i * 13))
        lines.append("def f%d(x):\n    return x ** %d  # (note)\r\n" % (i % 50, i % 9))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer_for("default")
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=768, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    tokenizer_json = tok.to_str()
    golden = {}
    for name in ["default", "smollm", "llama3", "qwen2"]:
        variant = Tokenizer.from_str(tokenizer_json)
        variant.pre_tokenizer = pre_tokenizer_for(name)
        if name == "llama3":  # Llama 3's tokenizer.json takes a chunk whole when it is a token
            spec = json.loads(variant.to_str())
            spec["model"]["ignore_merges"] = True
            variant = Tokenizer.from_str(json.dumps(spec))
        golden[name] = [{"text": s, "ids": variant.encode(s, add_special_tokens=False).ids} for s in strings]
    return tokenizer_json, golden


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.environ.get("LCQ_SMOLLM2_GGUF", ""), help="SmolLM2 GGUF file")
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"), help="the shared data directory")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    strings = golden_strings(args.shared)

    def write(name, text):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote", os.path.join(args.out, name))

    tokenizer_json, golden = tiny_byte_level(args.shared, strings)
    write("bytelevel_tiny.json", tokenizer_json)
    write("bytelevel_golden.json", json.dumps(golden, ensure_ascii=False) + "\n")

    if not args.gguf:
        print("no --gguf / LCQ_SMOLLM2_GGUF: smollm2_golden.json not written", file=sys.stderr)
        return
    with open(os.path.join(args.shared, "data/wikitext2/wiki.test.joined.txt"), encoding="utf-8") as f:
        wiki = f.read()
    golden = smollm2_golden(args.gguf, strings, wiki)
    write("smollm2_golden.json", json.dumps(golden, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
