#!/bin/sh
# gemma3n-bench smoke test: a tiny run on the bundled checkpoint prints one JSON object with both speeds.
builddir=${builddir:-.}
srcdir=${srcdir:-$(dirname "$0")/..}
bench="$builddir/tools/gemma3n-bench"
out=$("$bench" --model "$srcdir/tests/data/mm-tiny" -p 8 -n 4 -r 1 --json 2>/dev/null) || {
  echo "FAIL: gemma3n-bench exited with an error"
  exit 1
}
printf '%s\n' "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for key in ("pp_tok_s", "tg_tok_s", "peak_rss_bytes"):
    if not isinstance(r.get(key), (int, float)) or not r[key] > 0:
        sys.exit("FAIL: %s missing or not positive: %r" % (key, r.get(key)))
# the weight bytes a generated token reads, and the read rate they imply
b = r.get("decode_bytes_per_token")
if not isinstance(b, int) or not b > 0 or not r.get("tg_weight_gb_s", 0) > 0:
    sys.exit("FAIL: decode_bytes_per_token %r / tg_weight_gb_s %r" % (b, r.get("tg_weight_gb_s")))
print("ok: pp %.1f tok/s, tg %.1f tok/s, %d weight bytes per token" % (r["pp_tok_s"], r["tg_tok_s"], b))
' || exit 1
# the quantised paths run too, and an unknown type is refused
for q in q8_0 q4_0; do
  "$bench" --model "$srcdir/tests/data/mm-tiny" --quant $q -p 8 -n 4 -r 1 --json >/dev/null 2>&1 \
    || { echo "FAIL: --quant $q"; exit 1; }
done
# --quant-cache: the first run saves the file, the second loads it
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for want in saved loaded; do
  "$bench" --model "$srcdir/tests/data/mm-tiny" --quant q8_0 --quant-cache "$tmp/q.g3nq" -p 8 -n 4 -r 1 --json \
    2>/dev/null | grep -q "\"quant_cache\": \"$want\"" || { echo "FAIL: --quant-cache run should have $want"; exit 1; }
done
if "$bench" --model "$srcdir/tests/data/mm-tiny" --quant q3_x -p 1 -n 1 -r 1 >/dev/null 2>&1; then
  echo "FAIL: --quant q3_x was accepted"
  exit 1
fi
# --kv-type and -d: reported, and an F16 cache holds half the bytes of an F32 one for the same tests
f32=$("$bench" --model "$srcdir/tests/data/mm-tiny" -p 8 -n 4 -d 20 -r 1 --json 2>/dev/null) \
  && f16=$("$bench" --model "$srcdir/tests/data/mm-tiny" -p 8 -n 4 -d 20 -r 1 --kv-type f16 --json 2>/dev/null) || {
  echo "FAIL: gemma3n-bench -d 20 [--kv-type f16] exited with an error"
  exit 1
}
printf '%s\n%s\n' "$f32" "$f16" | python3 -c '
import json, sys
text = sys.stdin.read()
a, b = [json.loads(t) for t in text.replace("}\n{", "}\x00{").split("\x00")]
if a.get("kv_type") != "f32" or b.get("kv_type") != "f16" or a.get("depth") != 20:
    sys.exit("FAIL: kv_type / depth not reported: %r %r" % (a.get("kv_type"), b.get("kv_type")))
if not a.get("kv_bytes") or a["kv_bytes"] != 2 * b.get("kv_bytes", 0):
    sys.exit("FAIL: f16 kv_bytes %r is not half of f32 %r" % (b.get("kv_bytes"), a.get("kv_bytes")))
print("ok: --kv-type f16 holds %d KV bytes, f32 %d (depth 20)" % (b["kv_bytes"], a["kv_bytes"]))
' || exit 1
if "$bench" --model "$srcdir/tests/data/mm-tiny" --kv-type q4 -p 1 -n 1 -r 1 >/dev/null 2>&1; then
  echo "FAIL: --kv-type q4 was accepted"
  exit 1
fi
# tools/quant-accuracy: one table row per comparison, and a missing model folder refused
acc=$("$builddir/tools/quant-accuracy" "$srcdir/tests/data/mm-tiny" 8) || {
  echo "FAIL: quant-accuracy exited with an error"
  exit 1
}
for row in "fp32, token by token" "bf16 activations" "q8_0" "q4_0"; do
  printf '%s\n' "$acc" | grep -q "^| $row | .*/8 " || { echo "FAIL: quant-accuracy has no '$row' row"; exit 1; }
done
if "$builddir/tools/quant-accuracy" "$srcdir/tests/data/no-such-model" 8 >/dev/null 2>&1; then
  echo "FAIL: quant-accuracy accepted a missing model folder"
  exit 1
fi
echo "ok: quant-accuracy reports its four rows"
echo "3 passed, 0 failed"
exit 0
