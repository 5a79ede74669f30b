/* gemma3n-caption-bench — how fast gemma3ntranscriber captions: real-time factor and the delay of each caption
 * after its speech, on a recording or on speech generated from the bundled sample.
 *
 *   gemma3n-caption-bench --model DIR [--quant q4_0] [-t 2] [--seconds N] [--set PROP=VALUE]... [--json] [FILE]
 *
 * Two runs of the same pipeline: the audio as fast as it goes (real-time factor: wall seconds per second of
 * audio), then at the pace of a live source (identity sync=true), where what a viewer of live captions sees
 * is measured: the delay from the end of each segment's speech to its caption (the pause that ends the
 * segment, the encoder's last batch, the prefill of the instruction and the answer), the time to the first
 * caption, and the share of the machine the live path uses (CPU time / audio time / threads). Without FILE,
 * --seconds of speech are made from the bundled sample (tests/data/sample/speech.wav) and 1.2 s pauses.
 */
#include <gst/gst.h>
#include <glib/gstdio.h>

#include <errno.h>

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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
  double load_s, wall_s, cpu_s, audio_s;
} Run;

static Segment *
segment_at (Run *r, guint64 index)
{
  if (r->segments->len <= index)
    g_array_set_size (r->segments, index + 1);
  return &g_array_index (r->segments, Segment, index);
}

/* Runs on the posting thread: the wall clock of the event itself, not of its arrival in the main loop. */
static GstBusSyncReply
on_message (GstBus *bus, GstMessage *msg, gpointer data)
{
  Run *r = data;
  const GstStructure *s = gst_message_get_structure (msg);
  guint64 index = 0, start = 0, duration = 0;
  if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_ELEMENT || !s || !gst_structure_get_uint64 (s, "index", &index))
    return GST_BUS_PASS;
  gint64 now = g_get_monotonic_time ();
  g_mutex_lock (&r->lock);
  if (gst_structure_has_name (s, "gemma3nmel-segment")) {
    Segment *seg = segment_at (r, index);
    gst_structure_get_uint64 (s, "start", &start);
    gst_structure_get_uint64 (s, "duration", &duration);
    const char *reason = gst_structure_get_string (s, "reason");
    seg->start = start;
    seg->duration = duration;
    /* a segment closed by a pause holds the pause's silence at its end */
    GstClockTime pause = reason && g_str_equal (reason, "pause") ? r->pause_ms * GST_MSECOND : 0;
    seg->speech_end = start + duration - MIN (pause, duration);
    seg->end_us = now;
  } else if (gst_structure_has_name (s, "gemma3n-caption")) {
    Segment *seg = segment_at (r, index);
    seg->caption_us = now;
    gst_structure_get_double (s, "prefill-ms", &seg->prefill_ms);
    gst_structure_get_double (s, "generate-ms", &seg->generate_ms);
    gst_structure_get_uint (s, "tokens", &seg->tokens);
  }
  g_mutex_unlock (&r->lock);
  return GST_BUS_PASS;
}

static double
cpu_seconds (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static gboolean
fail (GError **error, GstBus *bus, const char *what)
{
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (m) {
    gst_message_parse_error (m, error, NULL);
    gst_message_unref (m);
  } else {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_FAILED, "%s", what);
  }
  return FALSE;
}

/* One run of `desc` to EOS; NULL→READY (the model's load) is timed apart from the run. */
static gboolean
run_pipeline (const char *desc, Run *r, GError **error)
{
  GstElement *pipeline = gst_parse_launch (desc, error);
  if (*error) { /* also a pipeline made without an element it names (the plugin not found) */
    g_clear_object (&pipeline);
    return FALSE;
  }
  GstElement *t = gst_bin_get_by_name (GST_BIN (pipeline), "t");
  g_object_get (t, "pause", &r->pause_ms, NULL);
  gst_object_unref (t);
  GstBus *bus = gst_element_get_bus (pipeline);
  gst_bus_set_sync_handler (bus, on_message, r, NULL);
  gboolean ok = TRUE;
  gint64 load0 = g_get_monotonic_time ();
  if (gst_element_set_state (pipeline, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE)
    ok = fail (error, bus, "the pipeline does not start");
  r->load_s = (g_get_monotonic_time () - load0) / 1e6;
  double cpu0 = cpu_seconds ();
  r->t0_us = g_get_monotonic_time ();
  if (ok && gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
    ok = fail (error, bus, "the pipeline does not play");
  if (ok) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      gst_message_parse_error (m, error, NULL);
      ok = FALSE;
    }
    gst_message_unref (m);
  }
  r->wall_s = (g_get_monotonic_time () - r->t0_us) / 1e6;
  r->cpu_s = cpu_seconds () - cpu0;
  gint64 position = 0;
  if (gst_element_query_position (pipeline, GST_FORMAT_TIME, &position))
    r->audio_s = position / 1e9;
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  for (guint i = 0; i < r->segments->len; i++) {
    Segment *seg = &g_array_index (r->segments, Segment, i);
    r->audio_s = MAX (r->audio_s, (seg->start + seg->duration) / 1e9);
  }
  return ok;
}

static int
compare_doubles (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of sorted values. */
static double
percentile (const GArray *sorted, double p)
{
  if (sorted->len == 0)
    return 0;
  guint rank = (guint) MAX (1.0, (p / 100.0) * sorted->len + 0.999999);
  return g_array_index (sorted, double, MIN (rank, sorted->len) - 1);
}

/* The live run's delays after the speech, sorted; prints the per-segment lines unless json. */
static GArray *
live_delays (const Run *r, gboolean json, double *first_caption_s)
{
  GArray *d = g_array_new (FALSE, FALSE, sizeof (double));
  *first_caption_s = 0;
  for (guint i = 0; i < r->segments->len; i++) {
    const Segment *seg = &g_array_index (r->segments, Segment, i);
    if (!seg->caption_us)
      continue;
    double caption_at = (seg->caption_us - r->t0_us) / 1e6, delay = caption_at - seg->speech_end / 1e9;
    if (d->len == 0)
      *first_caption_s = caption_at;
    g_array_append_val (d, delay);
    if (!json)
      printf ("segment %3u  speech %7.2f-%7.2f s  caption at %7.2f s: %5.0f ms after the speech "
              "(after the segment closed %5.0f ms: prefill %5.0f, generate %5.0f ms, %u tokens)\n", i,
              seg->start / 1e9, seg->speech_end / 1e9, caption_at, delay * 1e3,
              (seg->caption_us - seg->end_us) / 1e3, seg->prefill_ms, seg->generate_ms, seg->tokens);
  }
  g_array_sort (d, compare_doubles);
  return d;
}

/* Seconds of audio in `path` (0 when it cannot be read). */
static double
media_seconds (const char *path)
{
  g_autofree char *desc = g_strdup_printf ("filesrc location=\"%s\" ! decodebin ! fakesink", path);
  GstElement *p = gst_parse_launch (desc, NULL);
  if (!p)
    return 0;
  gint64 duration = 0;
  if (gst_element_set_state (p, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE
      && gst_element_get_state (p, NULL, NULL, 10 * GST_SECOND) == GST_STATE_CHANGE_SUCCESS)
    gst_element_query_duration (p, GST_FORMAT_TIME, &duration);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (p);
  return duration > 0 ? duration / 1e9 : 0;
}

#define PAUSE_S 1.2 /* the silence after each utterance */

/* Speech for the benchmark: the sample, then a pause, over and over for `seconds`. */
static char *
make_speech (const char *sample, double seconds, GError **error)
{
  double sample_s = media_seconds (sample);
  if (sample_s <= 0) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ, "cannot read the audio of %s", sample);
    return NULL;
  }
  char *path = g_build_filename (g_get_tmp_dir (), "gemma3n-caption-bench-XXXXXX.wav", NULL);
  int fd = g_mkstemp (path);
  if (fd < 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s", path);
    g_free (path);
    return NULL;
  }
  close (fd);
  /* audiomixer-free: a concat of the sample and silence, repeated, encoded once as WAV */
  GString *d = g_string_new ("concat name=c ! audioconvert ! audioresample ! "
                             "audio/x-raw,format=S16LE,rate=16000,channels=1 ! wavenc ! filesink location=\"");
  g_string_append_printf (d, "%s\" ", path);
  int n = 0;
  for (double t = 0; t < seconds; t += sample_s + PAUSE_S, n++)
    g_string_append_printf (d, "filesrc location=\"%s\" ! decodebin ! audioconvert ! audioresample ! c. "
                            "audiotestsrc wave=silence num-buffers=%d samplesperbuffer=1600 ! "
                            "audio/x-raw,rate=16000,channels=1 ! c. ", sample, (int) (PAUSE_S * 10));
  GstElement *p = gst_parse_launch (d->str, error);
  g_string_free (d, TRUE);
  if (*error) {
    g_clear_object (&p);
    g_free (path);
    return NULL;
  }
  gst_element_set_state (p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
    gst_message_parse_error (m, error, NULL);
  gst_message_unref (m);
  gst_object_unref (bus);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (p);
  if (*error) {
    g_unlink (path);
    g_clear_pointer (&path, g_free);
  }
  return path;
}

int
main (int argc, char **argv)
{
  g_autofree char *model = NULL, *quant = NULL, *quant_cache = NULL, *sample = NULL;
  g_auto (GStrv) sets = NULL;
  int threads = 0;
  double seconds = 60;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Checkpoint folder", "DIR" },
    { "quant", 0, 0, G_OPTION_ARG_STRING, &quant, "Text weights: none, q8_0 or q4_0", "TYPE" },
    { "quant-cache", 0, 0, G_OPTION_ARG_FILENAME, &quant_cache, "Quantised-weights file", "FILE" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Threads of the encoder and the decoder (0: all cores)", "N" },
    { "seconds", 's', 0, G_OPTION_ARG_DOUBLE, &seconds, "Without FILE: seconds of speech to make (default 60)", "S" },
    { "sample", 0, 0, G_OPTION_ARG_FILENAME, &sample, "Without FILE: the utterance to repeat "
      "(default tests/data/sample/speech.wav)", "WAV" },
    { "set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &sets, "Another gemma3ntranscriber property (repeatable)", "PROP=VALUE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON object on stdout", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("[FILE] - time live captions of a recording");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_add_group (octx, gst_init_get_option_group ());
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (octx, &argc, &argv, &error) || argc > 2 || !model || seconds <= 0) {
    fprintf (stderr, "gemma3n-caption-bench: %s\n", error ? error->message : "give --model DIR (and at most one FILE)");
    return 2;
  }
  g_autofree char *made = NULL;
  if (argc < 2) {
    made = make_speech (sample ? sample : "tests/data/sample/speech.wav", seconds, &error);
    if (!made) {
      fprintf (stderr, "gemma3n-caption-bench: cannot make the speech: %s\n", error->message);
      return 1;
    }
  }
  const char *file = made ? made : argv[1];
  if (!g_file_test (file, G_FILE_TEST_IS_REGULAR)) {
    fprintf (stderr, "gemma3n-caption-bench: no such file: %s\n", file);
    return 1;
  }
  GString *props = g_string_new (NULL);
  g_string_append_printf (props, "model=\"%s\" threads=%d", model, threads);
  if (quant)
    g_string_append_printf (props, " quant=%s", quant);
  if (quant_cache)
    g_string_append_printf (props, " quant-cache=\"%s\"", quant_cache);
  for (int i = 0; sets && sets[i]; i++)
    g_string_append_printf (props, " %s", sets[i]);

  Run fast = { .segments = g_array_new (FALSE, TRUE, sizeof (Segment)) };
  Run live = { .segments = g_array_new (FALSE, TRUE, sizeof (Segment)) };
  g_mutex_init (&fast.lock);
  g_mutex_init (&live.lock);
  int rc = 0;
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    g_autofree char *desc = g_strdup_printf (
      "filesrc location=\"%s\" ! decodebin ! audioconvert ! audioresample ! "
      /* 20 ms buffers: synced on their start, they arrive no earlier than a live source's would */
      "audiobuffersplit output-buffer-duration=1/50 ! identity sync=%s ! "
      "gemma3ntranscriber name=t %s ! fakesink sync=false", file, pass ? "true" : "false", props->str);
    if (!run_pipeline (desc, pass ? &live : &fast, &error)) {
      fprintf (stderr, "gemma3n-caption-bench: %s\n", error->message);
      rc = 1;
    }
  }
  g_string_free (props, TRUE);
  if (made)
    g_unlink (made);
  if (rc)
    return rc;

  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  double peak_rss_mib = ru.ru_maxrss / 1024.0;
  double first_s;
  g_autoptr (GArray) d = live_delays (&live, json, &first_s);
  int n_threads = threads > 0 ? threads : (int) g_get_num_processors ();
  double rtf = fast.wall_s / fast.audio_s, live_rtf = live.cpu_s / live.audio_s / n_threads;
  double p50 = percentile (d, 50), p95 = percentile (d, 95), dmax = percentile (d, 100);
  if (json)
    printf ("{\"file\": \"%s\", \"audio_s\": %.2f, \"load_s\": %.2f, \"rtf\": %.3f, \"captions\": %u, "
            "\"live_rtf\": %.3f, \"live_wall_s\": %.2f, \"live_delay_p50_s\": %.3f, \"live_delay_p95_s\": %.3f, "
            "\"live_delay_max_s\": %.3f, \"live_first_caption_s\": %.3f, \"peak_rss_mib\": %.0f}\n",
            made ? "(generated)" : file, fast.audio_s, fast.load_s, rtf, d->len, live_rtf, live.wall_s, p50, p95,
            dmax, first_s, peak_rss_mib);
  else
    printf ("%.1f s of audio: real-time factor %.3f as fast as it goes; live: %u captions %.2f / %.2f / %.2f s "
            "after the speech (median / p95 / max), first caption at %.2f s, CPU %.3f of %d threads per second of "
            "audio; model load %.2f s; peak RSS %.0f MiB\n", fast.audio_s, rtf, d->len, p50, p95, dmax, first_s,
            live_rtf, n_threads, fast.load_s, peak_rss_mib);
  return 0;
}
