/* test-gst-long: a compressed two-hour live session through gemma3ntranscriber (tiny model): the bundled
 * speech sample and 2 s of silence, over and over, pushed as fast as the model goes. Every segment the mel
 * element cuts is answered (count in = count out), the context is shifted and stays within its size, and
 * memory stays bounded (RSS after the first shifts vs at the end). */
#include <gst/gst.h>
#include <gst/app/gstappsrc.h>

#include "gemma3n.h"

#include <stdio.h>
#include <string.h>

#define RATE 16000
#define SILENCE_S 2
#define HOURS 2
#define CONTEXT 1024

static gsize
rss_kib (void)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return 0;
  const char *p = strstr (status, "VmRSS:");
  return p ? (gsize) g_ascii_strtoull (p + 6, NULL, 10) : 0;
}

typedef struct {
  GstAppSrc *src;
  const float *speech;
  gsize n_speech;
  guint cycles;
} Feeder;

/* Pushes the cycles (speech, then silence) as buffers of 0.1 s; appsrc blocks when its queue is full, so
 * nothing is lost (the source is not live). */
static gpointer
feed (gpointer data)
{
  Feeder *f = data;
  const gsize cycle = f->n_speech + SILENCE_S * RATE, piece = RATE / 10;
  guint64 sample = 0;
  for (guint c = 0; c < f->cycles; c++)
    for (gsize at = 0; at < cycle; at += piece) {
      gsize n = MIN (piece, cycle - at);
      GstBuffer *buf = gst_buffer_new_allocate (NULL, n * sizeof (float), NULL);
      GstMapInfo map;
      gst_buffer_map (buf, &map, GST_MAP_WRITE);
      float *out = (float *) map.data;
      for (gsize i = 0; i < n; i++)
        out[i] = at + i < f->n_speech ? f->speech[at + i] : 0.0f;
      gst_buffer_unmap (buf, &map);
      GST_BUFFER_PTS (buf) = gst_util_uint64_scale (sample, GST_SECOND, RATE);
      GST_BUFFER_DURATION (buf) = gst_util_uint64_scale (n, GST_SECOND, RATE);
      sample += n;
      if (gst_app_src_push_buffer (f->src, buf) != GST_FLOW_OK)
        return NULL;
    }
  gst_app_src_end_of_stream (f->src);
  return NULL;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *wav = g_build_filename (data ? data : "tests/data", "sample", "speech.wav", NULL);
  g_autofree char *model = g_build_filename (data ? data : "tests/data", "mm-tiny", NULL);
  g_autoptr (GError) error = NULL;
  float *speech = NULL;
  gsize n_speech = 0;
  if (!g3n_media_read_audio (wav, RATE, 30 * RATE, &speech, &n_speech, &error)) {
    fprintf (stderr, "FAIL reading %s: %s\n", wav, error->message);
    return 1;
  }
  const double cycle_s = (double) n_speech / RATE + SILENCE_S;
  const guint cycles = (guint) (HOURS * 3600 / cycle_s) + 1;

  g_autofree char *desc = g_strdup_printf (
    "appsrc name=src format=time block=true max-bytes=64000 "
    "caps=audio/x-raw,format=F32LE,rate=%d,channels=1,layout=interleaved ! "
    "gemma3ntranscriber name=t model=\"%s\" context-size=%d max-new-tokens=6 threads=1 ! fakesink",
    RATE, model, CONTEXT);
  GstElement *pipeline = gst_parse_launch (desc, &error);
  if (!pipeline) {
    fprintf (stderr, "FAIL pipeline: %s\n", error->message);
    return 1;
  }
  Feeder feeder = { GST_APP_SRC (gst_bin_get_by_name (GST_BIN (pipeline), "src")), speech, n_speech, cycles };
  GstBus *bus = gst_element_get_bus (pipeline);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fprintf (stderr, "FAIL: the pipeline does not start\n");
    return 1;
  }
  GThread *thread = g_thread_new ("feed", feed, &feeder);
  gint64 t0 = g_get_monotonic_time ();

  guint segments = 0, captions = 0, shifts = 0;
  int last_n_past = 0, max_n_past = 0;
  gsize rss_after_shift = 0, rss_end = 0;
  gboolean done = FALSE, failed = FALSE;
  while (!done) {
    GstMessage *msg = gst_bus_timed_pop (bus, 600 * GST_SECOND);
    if (!msg) {
      fprintf (stderr, "FAIL: no message for 10 minutes (hang?)\n");
      failed = done = TRUE;
      break;
    }
    const GstStructure *s = gst_message_get_structure (msg);
    switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR: {
      g_autoptr (GError) e = NULL;
      gst_message_parse_error (msg, &e, NULL);
      fprintf (stderr, "FAIL: error from %s: %s\n", GST_OBJECT_NAME (msg->src), e->message);
      failed = done = TRUE;
      break;
    }
    case GST_MESSAGE_EOS:
      done = TRUE;
      break;
    case GST_MESSAGE_ELEMENT:
      if (gst_structure_has_name (s, "gemma3nmel-segment"))
        segments++;
      if (gst_structure_has_name (s, "gemma3n-caption")) {
        int n_past = 0;
        gst_structure_get_int (s, "n-past", &n_past);
        captions++;
        if (n_past < last_n_past) {
          shifts++;
          if (shifts == 3)
            rss_after_shift = rss_kib ();
        }
        last_n_past = n_past;
        max_n_past = MAX (max_n_past, n_past);
      }
      break;
    default:
      break;
    }
    gst_message_unref (msg);
  }
  rss_end = rss_kib ();
  double wall = (g_get_monotonic_time () - t0) / 1e6;
  gst_element_set_state (pipeline, GST_STATE_NULL);
  g_thread_join (thread);

  printf ("# %u cycles of %.2f s = %.0f s of audio in %.1f s (%.0fx real time)\n", cycles, cycle_s,
          cycles * cycle_s, wall, cycles * cycle_s / wall);
  printf ("# segments %u, captions %u, context shifts %u, max n-past %d of %d, RSS %zu KiB after 3 shifts, "
          "%zu KiB at the end\n", segments, captions, shifts, max_n_past, CONTEXT, rss_after_shift, rss_end);
  if (!failed && segments < cycles) {
    fprintf (stderr, "FAIL: %u segments for %u utterances\n", segments, cycles);
    failed = TRUE;
  }
  if (!failed && captions != segments) {
    fprintf (stderr, "FAIL: %u segments in, %u captions out\n", segments, captions);
    failed = TRUE;
  }
  if (!failed && (shifts == 0 || max_n_past > CONTEXT)) {
    fprintf (stderr, "FAIL: context not shifted or over its size (%u shifts, max %d)\n", shifts, max_n_past);
    failed = TRUE;
  }
  /* Everything that grows with the stream would show here: 1000+ segments after the third shift. */
  if (!failed && rss_end > rss_after_shift + 32 * 1024) {
    fprintf (stderr, "FAIL: RSS grew from %zu to %zu KiB\n", rss_after_shift, rss_end);
    failed = TRUE;
  }
  gst_object_unref (bus);
  gst_object_unref (feeder.src);
  gst_object_unref (pipeline);
  g_free (speech);
  printf ("%s\n", failed ? "FAIL" : "ok   two hours: every segment answered, context shifted, memory bounded");
  return failed ? 1 : 0;
}
