#!/usr/bin/env bash
# Tests of the llama.cpp comparison's own tools (registered with ctest by bench/CMakeLists.txt;
# llama.cpp itself is not needed): make_synthetic_model's files against lcq's reader and the
# shape arithmetic, llamacpp_tables.py's GGUF sizes against `lcq info`, and its tables against
# medians and ratios worked out by hand.
#
#   test_anchor_tools.sh MAKE_SYNTHETIC_MODEL LCQ SHARED_DIR
set -uo pipefail
synth=$1 lcq=$2 shared=$3
here=$(cd "$(dirname "$0")" && pwd)
tables="$here/llamacpp_tables.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() {  # NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else echo "FAILED: $name" >&2; failed=$((failed + 1)); fi
}
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

tok="$shared/models/stories260K/tok512.bin"
if [ ! -f "$tok" ]; then echo "skipped: $tok missing"; exit 0; fi

# A small synthetic model: 2 layers, dim 256, ffn 512, 4 heads, 2 key/value heads.
"$synth" "$tmp/syn.gguf" --tokenizer "$tok" --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --seed 7 >/dev/null
check "make_synthetic_model writes a file" test -s "$tmp/syn.gguf"
info=$("$lcq" info "$tmp/syn.gguf" --json)
d=256 f=512 L=2 V=512 kv=128  # kv = 2 heads x head size 64
expect=$((2 * V * d + L * (2 * d * d + 2 * kv * d + 3 * d * f + 2 * d) + d))
check "lcq reads the synthetic shape" test "$(json 'tuple(j["config"][k] for k in ("dim","hidden_dim","n_layers","n_heads","n_kv_heads","vocab_size","tie_embeddings"))' <<<"$info")" = "(256, 512, 2, 4, 2, 512, False)"
check "parameter count = the shape's" test "$(json 'j["parameters"]' <<<"$info")" = "$expect"
check "matrices stored as F16" test "$(json 'j["tensor_types"]["F16"]["tensors"]' <<<"$info")" = "$((2 + 7 * L))"
# The same seed gives the same file, another seed another one.
"$synth" "$tmp/syn2.gguf" --tokenizer "$tok" --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --seed 7 >/dev/null
"$synth" "$tmp/syn3.gguf" --tokenizer "$tok" --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --seed 8 >/dev/null
check "same seed, same bytes" cmp -s "$tmp/syn.gguf" "$tmp/syn2.gguf"
check "other seed, other bytes" bash -c "! cmp -s '$tmp/syn.gguf' '$tmp/syn3.gguf'"
# The weights: N(0, 0.02^2) (std within 5 %), norms 1, through lcq's f32 conversion.
"$synth" "$tmp/syn32.gguf" --tokenizer "$tok" --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --type f32 >/dev/null
stats=$(python3 - "$tmp/syn32.gguf" <<'EOF'
import math, struct, sys
data = open(sys.argv[1], "rb").read()
# The last 256 floats before output.weight's 512x256 are output_norm; output.weight ends the file.
w = struct.unpack("<%df" % (512 * 256), data[-512 * 256 * 4:])
mean = sum(w) / len(w)
std = math.sqrt(sum((x - mean) ** 2 for x in w) / len(w))
print("ok" if abs(mean) < 1e-3 and abs(std / 0.02 - 1) < 0.05 else f"mean {mean} std {std}")
EOF
)
check "weights ~ N(0, 0.02^2) ($stats)" test "$stats" = ok
check "lcq runs the synthetic model" bash -c "'$lcq' generate '$tmp/syn.gguf' -p Once -n 4 --threads 1 >/dev/null 2>&1"

# Bad input: one error line, exit 1, no file left behind.
err=$("$synth" "$tmp/bad.gguf" --tokenizer "$tok" --dim 250 --heads 4 2>&1 >/dev/null); rc=$?
check "dim not a multiple of heads is refused" test "$rc" = 1
check "... with a message naming the problem" grep -q "not a multiple of --heads" <<<"$err"
check "... and no file" test ! -e "$tmp/bad.gguf"
"$synth" "$tmp/no/such/dir/x.gguf" --tokenizer "$tok" --dim 64 --ffn 64 --heads 4 --kv-heads 4 --layers 1 >/dev/null 2>&1
check "an unwritable path fails" test $? = 1

# GGUF sizes: llamacpp_tables.py (header arithmetic) against lcq info (per-type block sizes),
# on an F16 file, an lcq file (packed indices and codebooks) and, when given, SmolLM2's Q4_1
# file: the same parameters, and a data section = the tensors plus < 32 bytes of padding each.
"$lcq" quantize "$tmp/syn.gguf" -o "$tmp/syn-w2.gguf" --method rtn --bits 2 --group 64 --quiet >/dev/null 2>&1
check "lcq quantizes the synthetic model" test -s "$tmp/syn-w2.gguf"
for g in "$tmp/syn.gguf" "$tmp/syn-w2.gguf" ${LCQ_SMOLLM2_GGUF:+"$LCQ_SMOLLM2_GGUF"}; do
  a=$(python3 "$tables" gguf-info "$g")
  b=$("$lcq" info "$g" --json)
  verdict=$(python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ok = a["parameters"] == b["parameters"] and 0 <= a["data_bytes"] - b["tensor_bytes"] < 32 * a["tensors"]
print("ok" if ok else "%s vs %s, %s" % (a, b["parameters"], b["tensor_bytes"]))' "$a" "$b")
  check "gguf-info agrees with lcq info on $(basename "$g") ($verdict)" test "$verdict" = ok
done
printf 'not a gguf' >"$tmp/x.gguf"
check "gguf-info refuses a non-GGUF file" bash -c "! python3 '$tables' gguf-info '$tmp/x.gguf' 2>/dev/null"

# The speed table: medians of each runtime's samples and the lcq/llama.cpp ratios.
cat >"$tmp/lb.json" <<'EOF'
[{"build_commit": "abc", "n_prompt": 512, "n_gen": 0, "n_threads": 1, "avg_ts": 0, "samples_ts": [100, 300, 200]},
 {"build_commit": "abc", "n_prompt": 0, "n_gen": 128, "n_threads": 1, "avg_ts": 0, "samples_ts": [20, 10, 30]},
 {"build_commit": "abc", "n_prompt": 0, "n_gen": 128, "n_threads": 2, "avg_ts": 0, "samples_ts": [40]},
 {"build_commit": "abc", "n_prompt": 512, "n_gen": 0, "n_threads": 2, "avg_ts": 400}]
EOF
i=0
for v in 5 15 10; do
  i=$((i + 1))
  echo "{\"model\": {\"runs\": [{\"threads\": 1, \"prefill_tokens_per_s\": 0, \"decode_tokens_per_s\": $v}, {\"threads\": 2, \"prefill_tokens_per_s\": 0, \"decode_tokens_per_s\": $((v * 2))}]}}" >"$tmp/m.decode.$i.json"
  echo "{\"model\": {\"runs\": [{\"threads\": 1, \"prefill_tokens_per_s\": $((v * 10)), \"decode_tokens_per_s\": 0}, {\"threads\": 2, \"prefill_tokens_per_s\": $((v * 40)), \"decode_tokens_per_s\": 0}]}}" >"$tmp/m.prefill.$i.json"
done
{
  python3 "$tables" speed-row M llama.cpp Q4_0 "$tmp/syn.gguf" yes 1048576 1,2 "$tmp/lb.json"
  python3 "$tables" speed-row M lcq mine "$tmp/syn.gguf" no 2097152 1,2 "$tmp"/m.*.json
} >"$tmp/rows.jsonl"
table=$(python3 "$tables" speed-table "$tmp/rows.jsonl")
# llama.cpp: decode 20 / 40, prefill 200 / 400; lcq: decode 10 / 20, prefill 100 / 400.
check "llama.cpp row" grep -qF "| M | llama.cpp | Q4_0 | $(python3 -c "import os; print(f'{os.path.getsize(\"$tmp/syn.gguf\") / 2**20:.1f}')") | 20.0 / 40.0 | 200.0 / 400.0 | 1 |" <<<"$table"
check "lcq row with ratios" grep -qF "| 10.0 / 20.0 | 100.0 / 400.0 | 2 | 0.50x / 0.50x (vs Q4_0) | 0.50x / 1.00x |" <<<"$table"

# The quality table: sizes in MB and MiB, bits per weight, perplexities.
echo '{"label": "x", "file": "f", "file_bytes": 2097152, "bpw": 4.5, "ppl": {"wiki": 12.345, "ptb": 20}}' >"$tmp/q.jsonl"
check "quality row" grep -qF "| x | 2.1 | 2.0 | 4.50 | 12.35 | 20.00 |" <<<"$(python3 "$tables" quality-table "$tmp/q.jsonl")"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
