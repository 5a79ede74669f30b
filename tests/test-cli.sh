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

# the towers and the multimodal forward, from the whole golden file
if "$CLI" forward --model "$DATA/mm-tiny" --inputs "$DATA/mm-tiny/golden.safetensors" --output "$tmp/mm.safetensors" \
     --generate 16 --mm-generate 8 \
   && "$CMP" "$DATA/mm-tiny/golden.safetensors" "$tmp/mm.safetensors" input_features=1e-3 input_features_mask \
     audio_sscp_output audio_conformer_block_outputs audio_tower_output audio_tower_mask audio_embeds \
     audio_embeds_padded audio_batch_input_features=1e-3 audio_batch_input_features_mask audio_batch_tower_output \
     audio_batch_tower_mask audio_batch_embeds vision_tower_output image_embeds vision_block_stats=5e-3 \
     mm_inputs_embeds mm_logits=2e-4 mm_generated_ids=exact mm_generated_logits=1e-4; then
  ok "forward mm-tiny: audio, vision and multimodal outputs"
else
  bad "forward mm-tiny: audio, vision and multimodal outputs"
fi
# input files holding one modality only
"$CMP" --extract "$DATA/mm-tiny/golden.safetensors" "$tmp/audio-in.safetensors" audio_waveform
"$CMP" --extract "$DATA/mm-tiny/golden.safetensors" "$tmp/pixels-in.safetensors" pixel_values
if "$CLI" forward --model "$DATA/mm-tiny" --inputs "$tmp/audio-in.safetensors" --output "$tmp/a.safetensors" \
   && "$CMP" "$DATA/mm-tiny/golden.safetensors" "$tmp/a.safetensors" input_features=1e-3 audio_tower_output audio_embeds_padded \
   && "$CLI" forward --model "$DATA/mm-tiny" --inputs "$tmp/pixels-in.safetensors" --output "$tmp/v.safetensors" \
   && "$CMP" "$DATA/mm-tiny/golden.safetensors" "$tmp/v.safetensors" vision_tower_output image_embeds; then
  ok "forward on audio alone and on pixels alone"
else
  bad "forward on audio alone and on pixels alone"
fi
# a batch of two clips given as input_features [2, T, F]: the batch goldens, under the single-clip names
"$CMP" --extract "$DATA/mm-tiny/golden.safetensors" "$tmp/batch-in.safetensors" \
  audio_batch_input_features:input_features audio_batch_input_features_mask:input_features_mask
"$CMP" --extract "$DATA/mm-tiny/golden.safetensors" "$tmp/batch-golden.safetensors" \
  audio_batch_tower_output:audio_tower_output audio_batch_tower_mask:audio_tower_mask audio_batch_embeds:audio_embeds
if "$CLI" forward --model "$DATA/mm-tiny" --inputs "$tmp/batch-in.safetensors" --output "$tmp/b.safetensors" \
   && "$CMP" "$tmp/batch-golden.safetensors" "$tmp/b.safetensors" audio_tower_output audio_tower_mask audio_embeds; then
  ok "forward on a batch of two clips' features"
else
  bad "forward on a batch of two clips' features"
fi
# preprocess: image.png → the reference's pixel_values exactly
if "$CLI" preprocess --model "$DATA/mm-tiny" --image "$DATA/mm-tiny/image.png" --output "$tmp/px.safetensors" \
   && "$CMP" "$DATA/mm-tiny/golden.safetensors" "$tmp/px.safetensors" pixel_values=exact; then
  ok "preprocess image.png"
else
  bad "preprocess image.png"
fi
# text paths on the tiny model with its tiny tokenizer (random weights: only that they run and stream)
out=$("$CLI" tokenize --model "$DATA/mm-tiny" "Hello world")
[ -n "$out" ] && ok "tokenize: $out" || bad "tokenize"
out=$("$CLI" detokenize --model "$DATA/mm-tiny" $out)
[ "$out" = "Hello world" ] && ok "detokenize round trip" || bad "detokenize: '$out'"
"$CLI" generate --model "$DATA/mm-tiny" -p "Hi" --system "Be brief." -n 8 --seed 1 >"$tmp/gen" \
  && ok "generate -p" || bad "generate -p"
"$CLI" run --model "$DATA/mm-tiny" --image "$DATA/mm-tiny/image.png" --audio "$DATA/sample/speech.wav" \
  -p "Describe the picture and transcribe the audio." -n 8 --greedy >"$tmp/run" && ok "run with an image and an audio file" \
  || bad "run with an image and an audio file"
printf 'Hello\n/audio %s\nWhat was said?\n/quit\n' "$DATA/sample/speech.wav" \
  | "$CLI" chat --model "$DATA/mm-tiny" -n 4 --greedy >"$tmp/chat" 2>"$tmp/chat.err" && ok "chat with /audio" \
  || bad "chat with /audio: $(cat "$tmp/chat.err")"

# generate prints the reference's greedy ids
for fx in mm-tiny text-matformer; do
  prompt=$("$CMP" --ids "$DATA/$fx/golden.safetensors" generate_prompt_ids)
  want=$("$CMP" --ids "$DATA/$fx/golden.safetensors" generated_ids | tr ',' ' ')
  got=$("$CLI" generate --model "$DATA/$fx" --prompt-ids "$prompt" -n 16)
  [ "$got" = "$want" ] && ok "generate $fx: $got" || bad "generate $fx: got '$got', want '$want'"
  # an F16 KV cache keeps the same greedy ids on these fixtures (test-text-decoder measures the logits)
  got=$("$CLI" generate --model "$DATA/$fx" --prompt-ids "$prompt" -n 16 --kv-type f16)
  [ "$got" = "$want" ] && ok "generate $fx --kv-type f16" || bad "generate $fx --kv-type f16: got '$got', want '$want'"
done
# forward with an F16 cache: generation identical, logits within test-text-decoder's F16 bound
if "$CLI" forward --model "$DATA/mm-tiny" --inputs "$DATA/mm-tiny/golden.safetensors" --output "$tmp/f16.safetensors" \
     --generate 16 --mm-generate 4 --kv-type f16 \
   && "$CMP" "$DATA/mm-tiny/golden.safetensors" "$tmp/f16.safetensors" text_logits=1e-2 generated_ids=exact \
     generated_logits=1e-2; then
  ok "forward mm-tiny --kv-type f16"
else
  bad "forward mm-tiny --kv-type f16"
fi
printf 'Hello\nAgain\n/quit\n' | "$CLI" chat --model "$DATA/mm-tiny" -n 4 --greedy --kv-type bf16 >"$tmp/chat" \
  2>"$tmp/chat.err" && "$CLI" run --model "$DATA/mm-tiny" -p "Hi" -n 4 --greedy --kv-type f16 >"$tmp/run" \
  && ok "chat --kv-type bf16, run --kv-type f16" || bad "chat / run with --kv-type: $(cat "$tmp/chat.err")"

# --quant-cache: the first run quantises and saves the file, the second maps it; same ids as quantising
prompt=$("$CMP" --ids "$DATA/mm-tiny/golden.safetensors" generate_prompt_ids)
plain=$("$CLI" generate --model "$DATA/mm-tiny" --prompt-ids "$prompt" -n 16 --quant q4_0)
first=$("$CLI" generate --model "$DATA/mm-tiny" --prompt-ids "$prompt" -n 16 --quant q4_0 --quant-cache "$tmp/mm.g3nq")
saved=$([ -s "$tmp/mm.g3nq" ] && echo yes)
second=$("$CLI" generate --model "$DATA/mm-tiny" --prompt-ids "$prompt" -n 16 --quant q4_0 --quant-cache "$tmp/mm.g3nq")
[ -n "$plain" ] && [ "$saved" = yes ] && [ "$first" = "$plain" ] && [ "$second" = "$plain" ] \
  && ok "generate --quant-cache twice (save, then load): $second" \
  || bad "generate --quant-cache: plain '$plain', first '$first', second '$second', saved '$saved'"

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
expect_fail "image for a checkpoint without a vision tower" "vision_tower" \
  "$CLI" run --model "$DATA/text-matformer" --image "$DATA/mm-tiny/image.png" -p hi
expect_fail "audio file that is not audio" "speech.wav.txt\|no audio\|Invalid data" \
  "$CLI" run --model "$DATA/mm-tiny" --audio "$DATA/mm-tiny/config.json" -p hi
expect_fail "image file that is a text file" "config.json" \
  "$CLI" preprocess --model "$DATA/mm-tiny" --image "$DATA/mm-tiny/config.json" --output "$tmp/x.safetensors"
expect_fail "unknown KV cache type" "unknown KV cache type 'q4'" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3 --kv-type q4
expect_fail "context too small" "context full" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3,4 -n 4 --ctx-size 4
expect_fail "quant cache of another model" "mm.g3nq: made from another checkpoint" \
  "$CLI" generate --model "$DATA/text-matformer" --prompt-ids 2,3 -n 1 --quant q4_0 --quant-cache "$tmp/mm.g3nq"
expect_fail "quant cache of another type" "holds q4_0 weights, not the q8_0" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3 -n 1 --quant q8_0 --quant-cache "$tmp/mm.g3nq"
# a quant cache whose first scale is an F16 NaN (issue 16: it printed garbage and exited 0); the scale's
# place comes from the header: [8-byte length][JSON header][data], "NAME.scales":{...,"data_offsets":[B,E]}
cp "$tmp/mm.g3nq" "$tmp/nan.g3nq"
hlen=$(od -An -t u8 -N8 "$tmp/nan.g3nq" | tr -d ' ')
scale_at=$(head -c $((8 + hlen)) "$tmp/nan.g3nq" | tail -c "$hlen" \
  | grep -o '\.scales":{[^}]*}' | head -n 1 | sed -n 's/.*"data_offsets":\[\([0-9]*\),.*/\1/p')
if [ -n "$scale_at" ] && printf '\001\376' | dd of="$tmp/nan.g3nq" bs=1 seek=$((8 + hlen + scale_at)) conv=notrunc 2>/dev/null
then
  expect_fail "quant cache with a NaN scale" "nan.g3nq: tensor '.*\.scales' holds a non-finite scale" \
    "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3 -n 1 --quant q4_0 --quant-cache "$tmp/nan.g3nq"
else
  bad "could not find a scales tensor in the header of $tmp/mm.g3nq"
fi
expect_fail "quant cache without --quant" "needs --quant" \
  "$CLI" generate --model "$DATA/mm-tiny" --prompt-ids 2,3 -n 1 --quant-cache "$tmp/mm.g3nq"
"$CLI" --help >/dev/null && "$CLI" forward --help | grep -q -- "--hidden-states" && ok "--help documents the commands" \
  || bad "--help"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
