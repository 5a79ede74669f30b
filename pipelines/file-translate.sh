#!/bin/sh
# file-translate.sh IN LANGUAGE [OUT] — subtitles of an audio or video file translated into LANGUAGE:
# OUT.vtt and OUT.srt.
#
#   MODEL=~/models/gemma-3n-E2B-it pipelines/file-translate.sh interview.ogg French interview.fr
. "$(dirname "$0")/gemma3n-env.sh"
[ $# -ge 2 ] || { echo "usage: $0 IN LANGUAGE [OUT]" >&2; exit 2; }
need_file "$1"
out=${3:-${1%.*}.$2}
# shellcheck disable=SC2086
run filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  gemma3ntranscriber model="$MODEL" task=translate target-language="$2" $TRANSCRIBER_OPTS ! tee name=t \
  t. ! queue ! webvttenc ! filesink location="$out.vtt" \
  t. ! queue ! srtenc ! filesink location="$out.srt"
