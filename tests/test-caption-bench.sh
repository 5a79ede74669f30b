#!/bin/sh
# gemma3n-caption-bench on the tiny model (a smoke test: the numbers come from the elements' own messages): its
# JSON has every field, a caption per utterance, live delays at least the pause that ends a segment and below
# a few seconds, and a bad model is an error.
set -u
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
BENCH="$builddir/tools/gemma3n-caption-bench"
MODEL="$srcdir/tests/data/mm-tiny"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0
bad () { echo "FAIL $1"; failed=1; }

"$BENCH" --model "$MODEL" -t 1 --seconds 9 --sample "$srcdir/tests/data/sample/speech.wav" --json >"$out" 2>&1 \
  || { bad "gemma3n-caption-bench failed: $(cat "$out")"; exit 1; }
cat "$out"
for key in audio_s load_s rtf captions live_rtf live_wall_s live_delay_p50_s live_delay_p95_s live_delay_max_s \
           live_first_caption_s peak_rss_mib; do
  grep -q "\"$key\": [0-9]" "$out" || bad "no $key"
done
num () { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$out"; }
# 9 s asked: two sample utterances (3.37 s + 1.2 s pause each) and 9.14 s of audio
awk -v a="$(num audio_s)" -v c="$(num captions)" 'BEGIN { exit !(a > 9 && a < 9.3 && c == 2) }' \
  || bad "expected 2 captions of 9.1 s of audio: $(num captions) of $(num audio_s)"
# the default pause (600 ms) ends a segment: no caption can come sooner; the tiny model answers in milliseconds
awk -v p="$(num live_delay_p50_s)" -v m="$(num live_delay_max_s)" 'BEGIN { exit !(p >= 0.55 && m < 3) }' \
  || bad "live delays $(num live_delay_p50_s) / $(num live_delay_max_s) s"
awk -v r="$(num rtf)" 'BEGIN { exit !(r > 0 && r < 1) }' || bad "real-time factor $(num rtf)"

if "$BENCH" --model /nonexistent-model --seconds 1 --sample "$srcdir/tests/data/sample/speech.wav" >"$out" 2>&1; then
  bad "a missing model was accepted"
elif ! grep -q nonexistent-model "$out"; then bad "missing model: $(cat "$out")"; fi

if "$BENCH" --model "$MODEL" --seconds 1 --sample /nonexistent-sample.wav >"$out" 2>&1; then
  bad "a missing sample was accepted"
elif ! grep -q nonexistent-sample "$out"; then bad "missing sample: $(cat "$out")"; fi

[ "$failed" -eq 0 ] && echo "ok   gemma3n-caption-bench"
exit "$failed"
