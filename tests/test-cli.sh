#!/bin/sh
# gemma3n-cli end to end: `forward` and `generate` against the reference goldens, and bad input giving one
# clear line on stderr with a non-zero exit.
set -u
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
CLI="$builddir/cli/gemma3n-cli"
CMP="$builddir/tests/tensor-compare"
DATA="$srcdir/tests/data"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

ok () { echo "ok   $1"; passed=$((passed + 1)); }
bad () { echo "FAIL $1"; failed=$((failed + 1)); }

# forward: every text output within its MANIFEST tolerance, generation identical
check_forward () { # fixture tolerances...
  fx=$1; shift
  if "$CLI" forward --model "$DATA/$fx" --inputs "$DATA/$fx/golden.safetensors" --output "$tmp/$fx.safetensors" \
       --hidden-states --generate 16 --threads 1 \
     && "$CMP" "$DATA/$fx/golden.safetensors" "$tmp/$fx.safetensors" "$@" generated_ids=exact generated_logits=1e-4; then
    ok "forward $fx"
  else
    bad "forward $fx"
  fi
}
check_forward mm-tiny text_logits=1e-4 text_hidden_states=1e-4 text_last_hidden_state=1e-4 text_per_layer_inputs=1e-4
check_forward text-matformer text_logits=5e-4 text_hidden_states=2e-4 text_last_hidden_state=4e-4 text_per_layer_inputs=1e-4

# generate prints the reference's greedy ids
for fx in mm-tiny text-matformer; do
  prompt=$("$CMP" --ids "$DATA/$fx/golden.safetensors" generate_prompt_ids)
  want=$("$CMP" --ids "$DATA/$fx/golden.safetensors" generated_ids | tr ',' ' ')
  got=$("$CLI" generate --model "$DATA/$fx" --prompt-ids "$prompt" -n 16)
  [ "$got" = "$want" ] && ok "generate $fx: $got" || bad "generate $fx: got '$got', want '$want'"
done

# bad input: non-zero exit and exactly one line on stderr naming the problem
expect_fail () { # description, expected text, command...
  what=$1 expect=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  lines=$(wc -l <"$tmp/err")
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$expect" "$tmp/err"; then
    ok "$what: $(cat "$tmp/err")"
  else
    bad "$what (rc $rc, stderr: $(cat "$tmp/err"))"
  fi
}
expect_fail "missing model folder" "no/such/dir: model folder does not exist" \
  "$CLI" generate --model no/such/dir --prompt-ids 2,3
mkdir -p "$tmp/badcfg" && printf '{"text_config": {' >"$tmp/badcfg/config.json"
expect_fail "malformed config.json" "config.json: not valid JSON" \
  "$CLI" generate --model "$tmp/badcfg" --prompt-ids 2,3
expect_fail "no --model" "--model is required" "$CLI" generate --prompt-ids 2
expect_fail "bad prompt ids" "is not a list of token ids" "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,x
expect_fail "token id past the vocabulary" "outside the vocabulary" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,999999 -n 1
expect_fail "unknown option" "Unknown option" "$CLI" forward --frobnicate
expect_fail "unknown command" "unknown command 'frob'" "$CLI" frob
expect_fail "inputs file that is not safetensors" "too short\|past the end\|absurd" \
  "$CLI" forward --model "$DATA/mm-tiny" --inputs "$DATA/mm-tiny/config.json" --output "$tmp/o.safetensors"
expect_fail "inputs without any known tensor" "no input this command recognises" \
  "$CLI" forward --model "$DATA/text-matformer" --inputs "$DATA/text-matformer/model.safetensors" --output "$tmp/o.safetensors"
expect_fail "context too small" "context full" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3,4 -n 4 --ctx-size 4
"$CLI" --help >/dev/null && "$CLI" forward --help | grep -q -- "--hidden-states" && ok "--help documents the commands" \
  || bad "--help"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
