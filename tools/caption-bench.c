/* caption-bench — how fast gemma3ntranscriber captions a recording: real-time factor, and the delay from the
 * end of each segment's speech to its caption.
 *
 *   caption-bench --model DIR [--quant q4_0] [--threads 2] [--realtime] [--set PROP=VALUE]... FILE
 *
 * The file is decoded and fed to gemma3ntranscriber as fast as it goes (the real-time factor: compute time
 * per second of audio), or with --realtime at the pace of a live source (identity sync=true), where the delay
 * of each caption after the end of its speech is what a viewer of live captions sees: the segment's pause
 * (the silence that ends it), the prefill of the instruction, and the answer's generation. Per segment it
 * prints the speech's span, when its caption came, and the decoder's own prefill/generation times
 * (the gemma3n-caption messages); --json for one JSON object.
 */
#include <gst/gst.h>

#include <stdio.h>
#include <string.h>

typedef struct {
  GstClockTime start, duration, speech_end;
  gint64 end_us;     /* when gemma3nmel closed the segment (wall clock) */
  gint64 caption_us; /* when its caption was posted */
  double prefill_ms, generate_ms;
  guint tokens;
} Segment;

typedef struct {
  GMutex lock;
  GArray *segments; /* Segment, by index */
  guint pause_ms;
  gint64 t0_us;     /* PLAYING */
} Bench;

static Segment *
segment_at (Bench *b, guint64 index)
{
  if (b->segments->len <= index)
    g_array_set_size (b->segments, index + 1);
  return &g_array_index (b->segments, Segment, index);
}

/* Runs on the posting thread: the wall clock of the event itself, not of its arrival in the main loop. */
static GstBusSyncReply
on_message (GstBus *bus, GstMessage *msg, gpointer data)
{
  Bench *b = data;
  const GstStructure *s = gst_message_get_structure (msg);
  if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_ELEMENT || !s)
    return GST_BUS_PASS;
  gint64 now = g_get_monotonic_time ();
  guint64 index = 0, start = 0, duration = 0;
  g_mutex_lock (&b->lock);
  if (gst_structure_has_name (s, "gemma3nmel-segment") && gst_structure_get_uint64 (s, "index", &index)) {
    Segment *seg = segment_at (b, index);
    gst_structure_get_uint64 (s, "start", &start);
    gst_structure_get_uint64 (s, "duration", &duration);
    const char *reason = gst_structure_get_string (s, "reason");
    seg->start = start;
    seg->duration = duration;
    /* a segment closed by a pause holds the pause's silence at its end */
    GstClockTime pause = reason && g_str_equal (reason, "pause") ? b->pause_ms * GST_MSECOND : 0;
    seg->speech_end = start + duration - MIN (pause, duration);
    seg->end_us = now;
  } else if (gst_structure_has_name (s, "gemma3n-caption") && gst_structure_get_uint64 (s, "index", &index)) {
    Segment *seg = segment_at (b, index);
    seg->caption_us = now;
    gst_structure_get_double (s, "prefill-ms", &seg->prefill_ms);
    gst_structure_get_double (s, "generate-ms", &seg->generate_ms);
    gst_structure_get_uint (s, "tokens", &seg->tokens);
  }
  g_mutex_unlock (&b->lock);
  return GST_BUS_PASS;
}

static int
compare_doubles (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (GArray *v)
{
  if (v->len == 0)
    return 0;
  g_array_sort (v, compare_doubles);
  const double *x = (const double *) v->data;
  return v->len % 2 ? x[v->len / 2] : (x[v->len / 2 - 1] + x[v->len / 2]) / 2;
}

int
main (int argc, char **argv)
{
  g_autofree char *model = NULL, *quant = NULL, *quant_cache = NULL;
  g_auto (GStrv) sets = NULL;
  int threads = 0;
  gboolean realtime = FALSE, json = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Checkpoint folder", "DIR" },
    { "quant", 0, 0, G_OPTION_ARG_STRING, &quant, "none, q8_0 or q4_0", "TYPE" },
    { "quant-cache", 0, 0, G_OPTION_ARG_FILENAME, &quant_cache, "Quantised-weights file", "FILE" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads of the encoder and the decoder (0: all cores)", "N" },
    { "realtime", 0, 0, G_OPTION_ARG_NONE, &realtime, "Feed the audio at the pace of a live source", NULL },
    { "set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &sets, "Another gemma3ntranscriber property", "PROP=VALUE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON object on stdout", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("FILE - caption a recording, timing every segment");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_add_group (octx, gst_init_get_option_group ());
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (octx, &argc, &argv, &error) || argc != 2 || !model) {
    fprintf (stderr, "caption-bench: %s\n", error ? error->message : "give --model DIR and one FILE");
    return 2;
  }
  GString *props = g_string_new (NULL);
  g_string_append_printf (props, " model=\"%s\" threads=%d", model, threads);
  if (quant)
    g_string_append_printf (props, " quant=%s", quant);
  if (quant_cache)
    g_string_append_printf (props, " quant-cache=\"%s\"", quant_cache);
  for (int i = 0; sets && sets[i]; i++)
    g_string_append_printf (props, " %s", sets[i]);
  g_autofree char *desc = g_strdup_printf (
    "filesrc location=\"%s\" ! decodebin ! audioconvert ! audioresample ! identity sync=%s ! "
    "gemma3ntranscriber name=t%s ! fakesink sync=false", argv[1], realtime ? "true" : "false", props->str);
  g_string_free (props, TRUE);
  GstElement *pipeline = gst_parse_launch (desc, &error);
  if (error) { /* also a pipeline made without an element it names (the plugin not found) */
    fprintf (stderr, "caption-bench: %s\n", error->message);
    return 1;
  }
  Bench b = { .segments = g_array_new (FALSE, TRUE, sizeof (Segment)) };
  g_mutex_init (&b.lock);
  GstElement *t = gst_bin_get_by_name (GST_BIN (pipeline), "t");
  g_object_get (t, "pause", &b.pause_ms, NULL);
  gst_object_unref (t);
  GstBus *bus = gst_element_get_bus (pipeline);
  gst_bus_set_sync_handler (bus, on_message, &b, NULL);

  /* NULL→READY loads the model; the clock of the run starts after it, before any audio flows. */
  gint64 load0 = g_get_monotonic_time ();
  if (gst_element_set_state (pipeline, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE) {
    GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (m) {
      gst_message_parse_error (m, &error, NULL);
      gst_message_unref (m);
    }
    fprintf (stderr, "caption-bench: %s\n", error ? error->message : "the pipeline does not start");
    return 1;
  }
  double load_s = (g_get_monotonic_time () - load0) / 1e6;
  b.t0_us = g_get_monotonic_time ();
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  double wall_s = (g_get_monotonic_time () - b.t0_us) / 1e6;
  int rc = 0;
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    gst_message_parse_error (m, &error, NULL);
    fprintf (stderr, "caption-bench: %s\n", error->message);
    rc = 1;
  }
  gst_message_unref (m);
  gint64 position = 0;
  gst_element_query_position (pipeline, GST_FORMAT_TIME, &position);
  gst_element_set_state (pipeline, GST_STATE_NULL);

  g_autoptr (GArray) delays = g_array_new (FALSE, FALSE, sizeof (double));
  GString *rows = g_string_new (NULL);
  double audio_s = 0, speech_s = 0;
  for (guint i = 0; i < b.segments->len; i++) {
    Segment *seg = &g_array_index (b.segments, Segment, i);
    if (!seg->caption_us)
      continue;
    double start = seg->start / 1e9, end = seg->speech_end / 1e9;
    double caption_at = (seg->caption_us - b.t0_us) / 1e6;
    double after_close = (seg->caption_us - seg->end_us) / 1e3;
    speech_s += seg->duration / 1e9;
    audio_s = MAX (audio_s, (seg->start + seg->duration) / 1e9);
    double delay = realtime ? caption_at - end : after_close / 1e3;
    g_array_append_val (delays, delay);
    if (json)
      g_string_append_printf (rows, "%s{\"start\": %.3f, \"speech_end\": %.3f, \"caption_at\": %.3f, "
                              "\"after_close_ms\": %.1f, \"prefill_ms\": %.1f, \"generate_ms\": %.1f, \"tokens\": %u}",
                              rows->len ? ", " : "", start, end, caption_at, after_close, seg->prefill_ms,
                              seg->generate_ms, seg->tokens);
    else
      printf ("segment %2u  speech %7.2f-%7.2f s  caption at %7.2f s  %s %6.0f ms  (after close %5.0f ms: prefill %5.0f, "
              "generate %5.0f ms, %u tokens)\n", i, start, end, caption_at,
              realtime ? "after speech" : "after close ", delay * 1e3, after_close, seg->prefill_ms,
              seg->generate_ms, seg->tokens);
  }
  audio_s = MAX (audio_s, position / 1e9);
  double med = median (delays);
  if (json)
    printf ("{\"file\": \"%s\", \"realtime\": %s, \"load_s\": %.2f, \"audio_s\": %.2f, \"wall_s\": %.2f, "
            "\"rtf\": %.3f, \"segments\": [%s], \"median_delay_s\": %.3f}\n", argv[1], realtime ? "true" : "false",
            load_s, audio_s, wall_s, wall_s / audio_s, rows->str, med);
  else
    printf ("%u captions, %.1f s of audio (%.1f s in segments) in %.2f s: real-time factor %.3f%s; load %.2f s; "
            "median delay %s %.0f ms\n", delays->len, audio_s, speech_s, wall_s, wall_s / audio_s,
            realtime ? " (paced by the audio)" : "", load_s, realtime ? "after the speech" : "after the segment closed",
            med * 1e3);
  g_string_free (rows, TRUE);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  return rc;
}
