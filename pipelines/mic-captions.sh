#!/bin/sh
# mic-captions.sh — live captions of the microphone, printed on the terminal as WebVTT cues.
#
#   MODEL=~/models/gemma-3n-E2B-it pipelines/mic-captions.sh
#   SOURCE="pulsesrc device=..." pipelines/mic-captions.sh      # another live source
#
# The leaky queue keeps the source from ever blocking (transcriberbin's arrangement); when the model falls
# behind, gemma3ntranscriber drops the oldest speech and warns.
# Live: each segment's clip holds only its own soft tokens (audio-padding=false), not the reference's 188, so
# the answer starts ~2 s sooner on E2B and a 2-core machine keeps up; TRANSCRIBER_OPTS="audio-padding=true"
# restores the reference layout.
. "$(dirname "$0")/gemma3n-env.sh"
SOURCE=${SOURCE:-autoaudiosrc}
# shellcheck disable=SC2086
run $SOURCE ! queue leaky=downstream max-size-time=5000000000 ! audioconvert ! audioresample ! \
  gemma3ntranscriber model="$MODEL" audio-padding=false $TRANSCRIBER_OPTS ! webvttenc ! fdsink fd=1 sync=false
