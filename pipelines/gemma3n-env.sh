# gemma3n-env.sh — sourced by the pipelines: finds the gemma3n plugin and the model.
#
#   MODEL              checkpoint folder (default: the bundled tiny model, random weights: gibberish text)
#   TRANSCRIBER_OPTS   more gemma3ntranscriber properties, e.g. "quant=q4_0 threads=4 language-code=en-US"
#   GST_LAUNCH         the gst-launch-1.0 to run (default: gst-launch-1.0)
#
# Run from a build tree, the uninstalled plugin is used (GST_PLUGIN_PATH=plugins/.libs) unless GStreamer
# already finds an installed one.
top=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$top/plugins/.libs/libgstgemma3n.so" ] && ! gst-inspect-1.0 gemma3n >/dev/null 2>&1; then
  GST_PLUGIN_PATH="$top/plugins/.libs${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  export GST_PLUGIN_PATH
fi
if [ -z "${MODEL:-}" ]; then
  MODEL="$top/tests/data/mm-tiny"
  echo "$(basename "$0"): MODEL not set: using the bundled tiny model ($MODEL), whose answers are random text" >&2
fi
[ -d "$MODEL" ] || { echo "$(basename "$0"): model folder not found: $MODEL" >&2; exit 1; }
GST_LAUNCH=${GST_LAUNCH:-gst-launch-1.0}

# run PIPELINE...: prints the pipeline, then runs it (EOS on Ctrl-C, so the last caption is written).
run () {
  echo "+ $GST_LAUNCH -e $*" >&2
  # shellcheck disable=SC2086
  exec $GST_LAUNCH -q -e "$@"
}

# Whether a file names an existing, readable input.
need_file () {
  [ -r "$1" ] || { echo "$(basename "$0"): cannot read $1" >&2; exit 1; }
}
