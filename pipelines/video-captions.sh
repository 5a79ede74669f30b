#!/bin/sh
# video-captions.sh IN OUT.webm — a video with its captions drawn into the picture (textoverlay), as a new
# WebM file (VP8 video, Vorbis audio).
#
#   MODEL=~/models/gemma-3n-E2B-it pipelines/video-captions.sh lecture.mp4 lecture-captioned.webm
#
# The file is read twice: once for the picture and sound, once for the transcriber, so that the picture can
# wait in textoverlay for each caption (a segment is answered after its speech) without holding up the audio
# the transcriber needs.
. "$(dirname "$0")/gemma3n-env.sh"
[ $# -ge 2 ] || { echo "usage: $0 IN OUT.webm" >&2; exit 2; }
need_file "$1"
# shellcheck disable=SC2086
run filesrc location="$1" ! decodebin name=d \
  d. ! videoconvert ! queue ! textoverlay name=overlay valignment=bottom ! videoconvert ! \
       vp8enc deadline=1 ! queue ! mux. \
  d. ! audioconvert ! queue ! vorbisenc ! queue ! mux. \
  webmmux name=mux ! filesink location="$2" \
  filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
    gemma3ntranscriber model="$MODEL" $TRANSCRIBER_OPTS ! overlay.text_sink
