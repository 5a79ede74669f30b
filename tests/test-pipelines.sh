#!/bin/sh
# Every pipeline in pipelines/ run as a user runs it, with the tiny model, on generated media: the subtitles
# they write parse, with cues in time order inside the media's span; the live ones print cues on the
# terminal. Also a transcriberbin-shaped live pipeline (its leaky queue, its property settings).
set -u
srcdir=${srcdir:-$(dirname "$0")/..}
DATA="$srcdir/tests/data"
P="$srcdir/pipelines"
MODEL="$DATA/mm-tiny"
export MODEL
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
server=
passed=0 failed=0
ok () { echo "ok   $1"; passed=$((passed + 1)); }
bad () { echo "FAIL $1"; failed=$((failed + 1)); }

# check_cues FILE vtt|srt MIN_CUES SPAN_S: prints what is wrong, or nothing. Cues must have start <= end,
# starts in order, and lie inside [0, SPAN_S].
check_cues () {
  awk -v kind="$2" -v min="$3" -v span="$4" '
    function secs(t,   a, n) { gsub(",", ".", t); n = split(t, a, ":"); return n == 3 ? a[1] * 3600 + a[2] * 60 + a[3] : a[1] * 60 + a[2] }
    NR == 1 && kind == "vtt" && $0 !~ /^WEBVTT/ { print "no WEBVTT header"; bad = 1 }
    / --> / {
      s = secs($1); e = secs($3); n++
      if (e < s) { print "cue " n " ends before it starts: " $0; bad = 1 }
      if (s < last) { print "cue " n " starts before the previous one: " $0; bad = 1 }
      if (s < 0 || e > span + 0.05) { print "cue " n " outside the media (0-" span " s): " $0; bad = 1 }
      last = s; want_text = 1; next
    }
    want_text { if ($0 == "") { print "cue " n " has no text"; bad = 1 } want_text = 0 }
    END { if (n < min) { print "only " n " cues, expected at least " min; bad = 1 } }
  ' "$1"
}

# expect NAME FILE KIND MIN SPAN: the check above as a test case.
expect_cues () {
  if [ ! -s "$2" ]; then bad "$1: $2 missing or empty"; return; fi
  why=$(check_cues "$2" "$3" "$4" "$5")
  if [ -z "$why" ]; then ok "$1"; else bad "$1: $why"; sed 's/^/    /' "$2" | head -20; fi
}

# Media: the bundled sample (3.37 s), and two utterances around 1.5 s of silence — the sample, then a
# sentence espeak-ng says — as 16 kHz WAV; a WebM video of the second; an Ogg/Vorbis of it served over HTTP.
sample="$DATA/sample/speech.wav"
espeak-ng -w "$tmp/said.wav" "Captions come from the audio tower and the decoder." 2>"$tmp/sox.err" \
  && sox "$tmp/said.wav" -r 16000 -c 1 "$tmp/said16.wav" 2>>"$tmp/sox.err" \
  && sox "$sample" -p pad 0 1.5 | sox - "$tmp/said16.wav" "$tmp/two.wav" 2>>"$tmp/sox.err" \
  || { echo "could not make the test speech (espeak-ng, sox)"; cat "$tmp/sox.err"; exit 1; }
two_span=$(soxi -D "$tmp/two.wav")
gst-launch-1.0 -q filesrc location="$tmp/two.wav" ! wavparse ! audioconvert ! vorbisenc ! queue ! mux. \
  videotestsrc num-buffers=206 ! video/x-raw,width=160,height=120,framerate=25/1 ! vp8enc deadline=1 ! queue ! mux. \
  webmmux name=mux ! filesink location="$tmp/two.webm" || { echo "could not make the test video"; exit 1; }
gst-launch-1.0 -q filesrc location="$tmp/two.wav" ! wavparse ! audioconvert ! vorbisenc ! oggmux ! \
  filesink location="$tmp/two.ogg" || { echo "could not make the test Ogg file"; exit 1; }

# file → WebVTT + SRT
if timeout 300 "$P/file-subtitles.sh" "$sample" "$tmp/sample" 2>"$tmp/err"; then
  expect_cues "file-subtitles: WebVTT of the sample" "$tmp/sample.vtt" vtt 1 3.37
  expect_cues "file-subtitles: SRT of the sample" "$tmp/sample.srt" srt 1 3.37
else bad "file-subtitles.sh failed: $(tail -3 "$tmp/err")"; fi
if timeout 300 "$P/file-subtitles.sh" "$tmp/two.webm" "$tmp/two" 2>"$tmp/err"; then
  expect_cues "file-subtitles: a video file's two utterances, two cues" "$tmp/two.vtt" vtt 2 "$two_span"
  expect_cues "file-subtitles: SRT of the video" "$tmp/two.srt" srt 2 "$two_span"
else bad "file-subtitles.sh on a video failed: $(tail -3 "$tmp/err")"; fi

# file → translated subtitles
if timeout 300 "$P/file-translate.sh" "$tmp/two.wav" French "$tmp/two.fr" 2>"$tmp/err"; then
  expect_cues "file-translate: WebVTT" "$tmp/two.fr.vtt" vtt 2 "$two_span"
  expect_cues "file-translate: SRT" "$tmp/two.fr.srt" srt 2 "$two_span"
else bad "file-translate.sh failed: $(tail -3 "$tmp/err")"; fi

# video → captions drawn into a new file: it plays, with video and audio of the input's length, and the
# picture carries text (bright pixels that the input's frame lacks) while a caption is due, not in between.
# gray_frame FILE T: the frame at T seconds (25 fps) as 160x120 GRAY8 bytes.
gray_frame () {
  # the audio linked too: a decodebin with a pad left unlinked can stall
  timeout 120 gst-launch-1.0 -q filesrc location="$1" ! decodebin name=dec dec. ! videoconvert ! \
    video/x-raw,format=GRAY8 ! filesink location="$tmp/frames.gray" dec. ! audioconvert ! fakesink 2>/dev/null
  dd if="$tmp/frames.gray" bs=19200 skip="$(awk -v t="$2" 'BEGIN { print int(t * 25) }')" count=1 2>/dev/null
}
# drawn_pixels A B: pixels of the bottom half more than 64 levels apart.
drawn_pixels () {
  cmp -l "$1" "$2" | awk 'function oct(s,  v, i) { v = 0; for (i = 1; i <= length(s); i++) v = v * 8 + substr(s, i, 1); return v }
    $1 > 9600 { d = oct($2) - oct($3); if (d > 64 || d < -64) n++ } END { print n + 0 }'
}
if timeout 300 "$P/video-captions.sh" "$tmp/two.webm" "$tmp/captioned.webm" 2>"$tmp/err"; then
  info=$(gst-discoverer-1.0 "$tmp/captioned.webm" 2>&1)
  dur=$(echo "$info" | sed -n 's/^ *Duration: \([0-9]*\):\([0-9]*\):\([0-9.]*\)$/\1 \2 \3/p' | awk '{ print $1 * 3600 + $2 * 60 + $3 }')
  if echo "$info" | grep -q "video #" && echo "$info" | grep -q "audio #" \
     && awk -v d="$dur" -v s="$two_span" 'BEGIN { exit !(d > s - 0.2 && d < s + 0.3) }'; then
    ok "video-captions: a WebM with video and audio of ${dur} s"
  else bad "video-captions: output is not the captioned video: $info"; fi
  # the first cue of the same file's subtitles (made above) says when text is due
  first=$(sed -n 's/^\([0-9:.]*\) --> .*/\1/p' "$tmp/two.vtt" | head -1 | awk -F: '{ print $1 * 3600 + $2 * 60 + $3 + 0.5 }')
  gray_frame "$tmp/two.webm" "$first" >"$tmp/in.gray"; gray_frame "$tmp/captioned.webm" "$first" >"$tmp/out.gray"
  gray_frame "$tmp/two.webm" 4.3 >"$tmp/in-gap.gray"; gray_frame "$tmp/captioned.webm" 4.3 >"$tmp/out-gap.gray"
  with=$(drawn_pixels "$tmp/in.gray" "$tmp/out.gray") without=$(drawn_pixels "$tmp/in-gap.gray" "$tmp/out-gap.gray")
  if [ "$with" -gt 100 ] && [ "$without" -lt 20 ]; then
    ok "video-captions: text drawn at ${first} s ($with pixels), none in the pause at 4.3 s ($without)"
  else bad "video-captions: drawn pixels at ${first} s: $with, in the pause: $without"; fi
else bad "video-captions.sh failed: $(tail -3 "$tmp/err")"; fi

# network stream → captions on the terminal (HTTP here; rtsp:// goes the same way through uridecodebin)
port=$((20000 + $$ % 20000))
# An internet-radio-like server: the file as one response without Content-Length or Range support (a stream,
# not a seekable file).
cat >"$tmp/serve.py" <<PY
import http.server, sys
class Stream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            data = open(sys.argv[2] + self.path, "rb").read()
        except OSError:
            self.send_error(404); return
        self.send_response(200); self.send_header("Content-Type", "application/ogg"); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Stream).serve_forever()
PY
python3 "$tmp/serve.py" "$port" "$tmp" &
server=$!
for i in 1 2 3 4 5 6 7 8 9 10; do
  gst-launch-1.0 -q souphttpsrc location="http://127.0.0.1:$port/two.ogg" num-buffers=1 ! fakesink 2>/dev/null && break
  sleep 0.3
done
if timeout 300 "$P/stream-captions.sh" "http://127.0.0.1:$port/two.ogg" >"$tmp/stream.vtt" 2>"$tmp/err"; then
  expect_cues "stream-captions: WebVTT cues on the terminal from HTTP" "$tmp/stream.vtt" vtt 2 "$two_span"
else bad "stream-captions.sh failed: $(tail -3 "$tmp/err")"; fi

# microphone → captions on the terminal, the microphone emulated by a live source: 0.6 s tones every 2 s, 6 s
live="audiotestsrc is-live=true wave=ticks tick-interval=2000000000 sine-periods-per-tick=264 freq=440 volume=0.5 samplesperbuffer=1600 num-buffers=60 ! audio/x-raw,rate=16000"
if SOURCE="$live" timeout 300 "$P/mic-captions.sh" >"$tmp/mic.vtt" 2>"$tmp/err"; then
  expect_cues "mic-captions: live cues on the terminal" "$tmp/mic.vtt" vtt 2 6.5
else bad "mic-captions.sh failed: $(tail -3 "$tmp/err")"; fi

# transcriberbin's arrangement: its leaky queue, audioresample ! audioconvert, and the properties it sets
GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-}
if timeout 300 gst-launch-1.0 -q -e $live ! queue leaky=downstream max-size-time=5000000000 ! audioresample ! audioconvert ! \
     gemma3ntranscriber model="$MODEL" language-code=en-US latency=4000 lateness=0 ! webvttenc ! \
     filesink location="$tmp/tbin.vtt" 2>"$tmp/err"; then
  expect_cues "transcriberbin-shaped live pipeline: timed captions" "$tmp/tbin.vtt" vtt 2 6.5
else bad "transcriberbin-shaped pipeline failed: $(tail -3 "$tmp/err")"; fi

# bad input: a missing file, a missing model → an error, non-zero exit, no hang
if timeout 300 "$P/file-subtitles.sh" "$tmp/nothing.wav" 2>"$tmp/err"; then bad "missing input accepted"
elif grep -q "nothing.wav" "$tmp/err"; then ok "missing input: error naming it"; else bad "missing input: $(cat "$tmp/err")"; fi
if MODEL="$tmp/no-model" timeout 300 "$P/file-subtitles.sh" "$sample" "$tmp/x" 2>"$tmp/err"; then bad "missing model accepted"
elif grep -q "no-model" "$tmp/err"; then ok "missing model: error naming it"; else bad "missing model: $(cat "$tmp/err")"; fi

# the element's own errors through gst-launch: a model folder that does not exist, a checkpoint without an
# audio tower → the state change fails, gst-launch exits non-zero with a message naming it
for bad in "$tmp/no-such-model:no-such-model" "$DATA/text-matformer:audio"; do
  dir=${bad%%:*} word=${bad#*:}
  if timeout 60 gst-launch-1.0 -q audiotestsrc num-buffers=10 ! gemma3ntranscriber model="$dir" ! fakesink \
       >"$tmp/out" 2>"$tmp/err"; then bad "gst-launch accepted model $dir"
  elif grep -q "$word" "$tmp/err"; then ok "gst-launch with model $(basename "$dir"): exit non-zero, \"$(grep -m1 "$word" "$tmp/err" | cut -c1-90)\""
  else bad "gst-launch with model $dir: $(cat "$tmp/err")"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
