#!/bin/sh
# One code path: for a clip that fits one segment, the element chain (gemma3nmel ! gemma3naudioenc !
# gemma3ndecoder) and `gemma3n-cli run` give the same text with the same prompt and greedy sampling —
# the reference's clip layout (188 padded soft tokens) in both. The same for gemma3ntranscriber.
set -u
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
CLI="$builddir/cli/gemma3n-cli"
DATA="$srcdir/tests/data"
MODEL="$DATA/mm-tiny"
WAV="$DATA/sample/speech.wav"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok () { echo "ok   $1"; passed=$((passed + 1)); }
bad () { echo "FAIL $1"; failed=$((failed + 1)); }

# same NAME CLI_OUT ELEMENT_OUT: the CLI prints the answer and a newline; the element's caption is the
# answer trimmed, with newlines as spaces.
same () {
  tr '\n' ' ' <"$2" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' >"$2.norm"
  if [ ! -s "$2.norm" ]; then bad "$1: the CLI gave no text"; return; fi
  if cmp -s "$2.norm" "$3"; then ok "$1: $(head -c 60 "$3")…"
  else bad "$1: texts differ"; echo "    cli:     $(cat "$2.norm")"; echo "    element: $(cat "$3")"; fi
}

n=24
for prompt in "Transcribe this audio." "Describe the sound."; do
  "$CLI" run --model "$MODEL" --audio "$WAV" -p "$prompt" --greedy -n $n -t 1 >"$tmp/cli.txt" 2>"$tmp/err" \
    || { bad "gemma3n-cli run: $(cat "$tmp/err")"; continue; }
  gst-launch-1.0 -q filesrc location="$WAV" ! wavparse ! audioconvert ! audioresample ! \
    gemma3nmel model="$MODEL" vad=false ! gemma3naudioenc model="$MODEL" threads=1 ! \
    gemma3ndecoder model="$MODEL" task=custom prompt="$prompt" max-new-tokens=$n tokens-per-second=0 \
      repeat-limit=0 threads=1 ! filesink location="$tmp/elements.txt" 2>"$tmp/err" \
    || { bad "element pipeline: $(cat "$tmp/err")"; continue; }
  same "elements = CLI, \"$prompt\"" "$tmp/cli.txt" "$tmp/elements.txt"
done

# Batching is invisible: the smallest encoder and prefill batches (tokens out and prefilled as the speech comes)
# give the same text.
"$CLI" run --model "$MODEL" --audio "$WAV" -p "Transcribe this audio." --greedy -n $n -t 1 >"$tmp/cli.txt" 2>&1
gst-launch-1.0 -q filesrc location="$WAV" ! wavparse ! audioconvert ! gemma3nmel model="$MODEL" vad=false ! \
  gemma3naudioenc model="$MODEL" threads=1 batch-rows=1 ! gemma3ndecoder model="$MODEL" prefill-batch=1 \
    max-new-tokens=$n tokens-per-second=0 repeat-limit=0 threads=1 ! filesink location="$tmp/batch1.txt" 2>"$tmp/err" \
  && same "batch-rows=1 prefill-batch=1 = CLI" "$tmp/cli.txt" "$tmp/batch1.txt" || bad "batch pipeline: $(cat "$tmp/err")"

# The bin, the default task (transcribe: "Transcribe this audio."), voice detection off.
"$CLI" run --model "$MODEL" --audio "$WAV" -p "Transcribe this audio." --greedy -n $n -t 1 >"$tmp/cli.txt" 2>&1
gst-launch-1.0 -q filesrc location="$WAV" ! decodebin ! gemma3ntranscriber model="$MODEL" vad=false \
  max-new-tokens=$n tokens-per-second=0 repeat-limit=0 threads=1 ! filesink location="$tmp/bin.txt" 2>"$tmp/err" \
  && same "gemma3ntranscriber = CLI" "$tmp/cli.txt" "$tmp/bin.txt" || bad "transcriber pipeline: $(cat "$tmp/err")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
