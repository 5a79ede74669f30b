#!/bin/sh
# stream-captions.sh URI — live captions of a network stream (RTSP, HTTP, anything uridecodebin plays),
# printed on the terminal as WebVTT cues.
#
#   MODEL=~/models/gemma-3n-E2B-it pipelines/stream-captions.sh rtsp://camera.local/stream
#   MODEL=~/models/gemma-3n-E2B-it pipelines/stream-captions.sh https://radio.example/live.ogg
# Live: each segment's clip holds only its own soft tokens (audio-padding=false), not the reference's 188, so
# the answer starts ~2 s sooner on E2B and a 2-core machine keeps up; TRANSCRIBER_OPTS="audio-padding=true"
# restores the reference layout.
. "$(dirname "$0")/gemma3n-env.sh"
[ $# -ge 1 ] || { echo "usage: $0 URI" >&2; exit 2; }
# shellcheck disable=SC2086
run uridecodebin uri="$1" ! audioconvert ! queue leaky=downstream max-size-time=5000000000 ! \
  audioresample ! gemma3ntranscriber model="$MODEL" audio-padding=false $TRANSCRIBER_OPTS ! webvttenc ! fdsink fd=1 sync=false
