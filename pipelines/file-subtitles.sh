#!/bin/sh
# file-subtitles.sh IN [OUT] — subtitles of an audio or video file: OUT.vtt (WebVTT) and OUT.srt (SubRip).
#
#   MODEL=~/models/gemma-3n-E2B-it pipelines/file-subtitles.sh talk.mp4 talk
#
# OUT defaults to IN without its extension. Nothing is dropped: a file is read at the model's pace.
. "$(dirname "$0")/gemma3n-env.sh"
[ $# -ge 1 ] || { echo "usage: $0 IN [OUT]" >&2; exit 2; }
need_file "$1"
out=${2:-${1%.*}}
# shellcheck disable=SC2086
run filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  gemma3ntranscriber model="$MODEL" $TRANSCRIBER_OPTS ! tee name=t \
  t. ! queue ! webvttenc ! filesink location="$out.vtt" \
  t. ! queue ! srtenc ! filesink location="$out.srt"
