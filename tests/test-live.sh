#!/bin/sh
# test-live.sh — runs tests/test-live (concurrent users, streaming input, cancellation) on a random checkpoint
# of medium shapes: big enough that a prefill or an encode takes long enough to be cancelled part-way and
# that three users keep two cores busy, small enough to make in two seconds (220 MB, in a temporary folder).
# Its config is tests/data/live/config.json (mm-tiny's with text hidden 768 and a 6-block audio tower
# of hidden 256); tokenizer, chat template and processor configs are mm-tiny's.
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
tiny="$srcdir/tests/data/mm-tiny"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$builddir/cli/gemma3n-cli" make-random-checkpoint --shape "$srcdir/tests/data/live/config.json" --seed 1 \
  --no-verify "$tmp/model" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; echo "FAIL: make-random-checkpoint"; exit 1; }
for f in tokenizer.json chat_template.jinja processor_config.json preprocessor_config.json; do
  cp "$tiny/$f" "$tmp/model/$f" || { echo "FAIL: cannot copy $tiny/$f"; exit 1; }
done
exec "$builddir/tests/test-live" "$tmp/model" "$srcdir/tests/data/sample/speech.wav"
