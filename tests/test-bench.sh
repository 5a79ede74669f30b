#!/bin/sh
# gemma3n-bench smoke test: tiny runs on the bundled checkpoint. Every run's output is parsed and its
# fields checked; the test counts the runs, JSON fields, table rows and refusals it verified, prints
# "checked ...", and fails when any count is below what this script expects, so a bench that prints
# nothing, or drops a field or a row, cannot pass.
set -u
builddir=${builddir:-.}
srcdir=${srcdir:-$(dirname "$0")/..}
bench="$builddir/tools/gemma3n-bench"
model="$srcdir/tests/data/mm-tiny"
runs=0 fields=0 rows=0 refusals=0

fail () {
  echo "FAIL: $*"
  exit 1
}

# verify SPEC...: checks the one JSON object on stdin against each SPEC, KEY>0 (a positive number),
# KEY>0:int (a positive integer) or KEY=VALUE (equal, compared as text); prints how many it checked.
verify () {
  python3 -c '
import json, sys
text = sys.stdin.read()
try:
    r = json.loads(text)
except ValueError as e:
    sys.exit("FAIL: not one JSON object (%s): %r" % (e, text[:200]))
n = 0
for spec in sys.argv[1:]:
    if "=" in spec:
        key, want = spec.split("=", 1)
        if str(r.get(key)) != want:
            sys.exit("FAIL: %s is %r, want %s" % (key, r.get(key), want))
    else:
        key, kind = spec.split(">0")
        v = r.get(key)
        ok = isinstance(v, int) if kind == ":int" else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or not v > 0:
            sys.exit("FAIL: %s missing or not a positive %s: %r" % (key, "integer" if kind else "number", v))
    n += 1
print(n)
' "$@"
}

# run_json NAME SPEC... -- BENCH_ARGS...: one bench run with --json, its output verified against SPEC;
# the output stays in $json for later comparisons.
run_json () {
  name=$1
  shift
  specs=""
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    specs="$specs $1"
    shift
  done
  shift
  json=$("$bench" --model "$model" "$@" --json 2>/dev/null) || fail "gemma3n-bench $name exited with an error"
  # shellcheck disable=SC2086
  n=$(printf '%s\n' "$json" | verify $specs) || fail "gemma3n-bench $name"
  runs=$((runs + 1)) fields=$((fields + n))
}

refused () { # NAME ARGS...: the command must fail
  name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    fail "$name was accepted"
  fi
  refusals=$((refusals + 1))
}

# both speeds, the memory, the weight bytes a generated token reads and the read rate they imply
run_json "bf16" pp_tok_s\>0 tg_tok_s\>0 peak_rss_bytes\>0:int decode_bytes_per_token\>0:int tg_weight_gb_s\>0 \
  quant=bf16 n_prompt=8 n_gen=4 reps=1 -- -p 8 -n 4 -r 1
bf16=$json
printf '%s\n' "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("ok: pp %.1f tok/s, tg %.1f tok/s, %d weight bytes per token" % (r["pp_tok_s"], r["tg_tok_s"], r["decode_bytes_per_token"]))'

# the quantised paths run too, each reading fewer weight bytes per token than the one before
run_json "--quant q8_0" quant=q8_0 pp_tok_s\>0 tg_tok_s\>0 decode_bytes_per_token\>0:int -- --quant q8_0 -p 8 -n 4 -r 1
q8=$json
run_json "--quant q4_0" quant=q4_0 pp_tok_s\>0 tg_tok_s\>0 decode_bytes_per_token\>0:int -- --quant q4_0 -p 8 -n 4 -r 1
q4=$json
printf '%s\n\036%s\n\036%s\n' "$bf16" "$q8" "$q4" | python3 -c '
import json, sys
b, q8, q4 = [json.loads(t)["decode_bytes_per_token"] for t in sys.stdin.read().split("\x1e")]
if not b > q8 > q4:
    sys.exit("FAIL: weight bytes per token should fall bf16 %d > q8_0 %d > q4_0 %d" % (b, q8, q4))
print("ok: weight bytes per token bf16 %d > q8_0 %d > q4_0 %d" % (b, q8, q4))' || exit 1
fields=$((fields + 1))
refused "--quant q3_x" "$bench" --model "$model" --quant q3_x -p 1 -n 1 -r 1

# --quant-cache: the first run saves the file, the second loads it
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for want in saved loaded; do
  run_json "--quant-cache ($want)" quant_cache=$want tg_tok_s\>0 -- --quant q8_0 --quant-cache "$tmp/q.g3nq" -p 8 -n 4 -r 1
done

# --kv-type and -d: reported, and an F16 cache holds half the bytes of an F32 one for the same tests
run_json "-d 20" kv_type=f32 depth=20 kv_bytes\>0:int -- -p 8 -n 4 -d 20 -r 1
f32=$json
run_json "-d 20 --kv-type f16" kv_type=f16 depth=20 kv_bytes\>0:int -- -p 8 -n 4 -d 20 -r 1 --kv-type f16
f16=$json
printf '%s\n\036%s\n' "$f32" "$f16" | python3 -c '
import json, sys
a, b = [json.loads(t) for t in sys.stdin.read().split("\x1e")]
if a["kv_bytes"] != 2 * b["kv_bytes"]:
    sys.exit("FAIL: f16 kv_bytes %r is not half of f32 %r" % (b["kv_bytes"], a["kv_bytes"]))
print("ok: --kv-type f16 holds %d KV bytes, f32 %d (depth 20)" % (b["kv_bytes"], a["kv_bytes"]))' || exit 1
fields=$((fields + 1))
refused "--kv-type q4" "$bench" --model "$model" --kv-type q4 -p 1 -n 1 -r 1

# the table form: one row per test, with a positive median and best
table=$("$bench" --model "$model" -p 8 -n 4 -r 1 2>/dev/null) || fail "gemma3n-bench (table) exited with an error"
runs=$((runs + 1))
for test in pp8 tg4; do
  printf '%s\n' "$table" | awk -F'|' -v t="$test" '
    { gsub(/ /, "", $7); gsub(/ /, "", $8); gsub(/ /, "", $9); gsub(/ /, "", $10) }
    $7 == t && $8 + 0 > 0 && $9 + 0 > 0 && $10 == "tok/s" { found = 1 }
    END { exit !found }' || fail "gemma3n-bench table has no '$test' row with positive speeds"
  rows=$((rows + 1))
done

# tests/bench/quant-accuracy: one table row per comparison, and a missing model folder refused
acc=$("$builddir/tests/bench/quant-accuracy" "$model" 8) || fail "quant-accuracy exited with an error"
runs=$((runs + 1))
for row in "fp32, token by token" "bf16 activations" "q8_0" "q4_0"; do
  printf '%s\n' "$acc" | grep -q "^| $row | .*/8 " || fail "quant-accuracy has no '$row' row"
  rows=$((rows + 1))
done
echo "ok: quant-accuracy reports its four rows"
refused "quant-accuracy on a missing model folder" "$builddir/tests/bench/quant-accuracy" "$srcdir/tests/data/no-such-model" 8

# what this script verifies when every part ran: 9 runs (7 JSON, 1 table, quant-accuracy), 9 + 4 + 4 + 1 +
# 2 + 2 + 3 + 3 + 1 = 29 JSON fields and comparisons, 2 + 4 table rows, 3 refusals
echo "checked $runs runs, $fields JSON fields and comparisons, $rows table rows, $refusals refusals"
[ "$runs" -ge 9 ] && [ "$fields" -ge 29 ] && [ "$rows" -ge 6 ] && [ "$refusals" -ge 3 ] \
  || fail "fewer checks than expected (want 9 runs, 29 fields, 6 rows, 3 refusals)"
exit 0
