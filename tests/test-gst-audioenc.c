/* test-gst-audioenc — the gemma3naudioenc element in a GstHarness, on tests/data/mm-tiny.
 *
 * The mel frames are made here with the core (g3n_audio_features_compute on speech.wav), and every expected
 * embedding comes from the core's public API used directly: g3n_audio_encode of the whole clip (padding
 * tokens replaced as g3n_audio_embed_padded does), and a G3nAudioStream fed the same frames (bitwise).
 * Timestamps are checked from first principles: token i starts 16 i hops after its segment's start. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>

#include "gemma3n.h"
#include "gstgemma3nformat.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define RATE 16000
#define HOP 160
#define FRAME_TIME (GST_SECOND * HOP / RATE)
#define TOKEN_TIME (16 * FRAME_TIME)
#define MEL_CAPS "application/x-gemma3n-mel, bins=(int)128, hop=(int)160, rate=(int)16000"
#define WAIT_SECONDS 120

static char *model_dir;

/* ---------------------------------------------------------------- the core's side */

typedef struct {
  int n_frames;
  float *features; /* [n_frames, n_bins] */
  guint8 *mask;    /* [n_frames], 1 = valid */
  GstClockTime duration; /* of its samples */
} Clip;

typedef struct {
  G3nModel *model;
  G3nAudioEncoder *enc;
  G3nAudioFeatures *fx;
  float *pcm;
  gsize n_samples;
  int n_bins, n_embd;
} Core;

static Core core;

static void
core_setup (void)
{
  if (core.model)
    return;
  GError *error = NULL;
  core.model = g3n_model_load (model_dir, &error);
  fail_unless (core.model, "load %s: %s", model_dir, error ? error->message : "");
  core.enc = g3n_audio_encoder_new (core.model, &error);
  fail_unless (core.enc != NULL);
  core.fx = g3n_audio_features_new_from_file (model_dir, &error);
  fail_unless (core.fx != NULL);
  g_autofree char *wav = g_build_filename (g_getenv ("G3N_TEST_DATA"), "sample", "speech.wav", NULL);
  fail_unless (g3n_media_read_audio (wav, RATE, 60 * RATE, &core.pcm, &core.n_samples, &error), "read %s: %s", wav,
               error ? error->message : "");
  core.n_bins = g3n_audio_encoder_n_features (core.enc);
  core.n_embd = g3n_audio_encoder_n_embd (core.enc);
}

/* Samples [from, from + n) of speech.wav as one clip's frames. */
static Clip
clip_of (gsize from, gsize n)
{
  Clip c;
  c.n_frames = g3n_audio_features_n_frames (core.fx, n);
  c.features = g_new (float, (gsize) c.n_frames * core.n_bins);
  c.mask = g_new (guint8, c.n_frames);
  c.duration = gst_util_uint64_scale (n, GST_SECOND, RATE);
  fail_unless (g3n_audio_features_compute (core.fx, core.pcm + from, n, c.features, c.mask, NULL));
  return c;
}

/* Samples [from, from + n) as the processor pads them in a batch with a longer clip of `longer` samples:
 * frames past the clip's end have mask 0 (the element gets them as PADDING buffers). */
static Clip
padded_clip_of (gsize from, gsize n, gsize longer)
{
  const float *pcm[2] = { core.pcm + from, core.pcm };
  gsize lengths[2] = { n, longer };
  Clip c;
  fail_unless (g3n_audio_features_compute_batch (core.fx, pcm, lengths, 2, NULL, NULL, &c.n_frames, NULL));
  g_autofree float *features = g_new (float, (gsize) 2 * c.n_frames * core.n_bins);
  g_autofree guint8 *mask = g_new (guint8, 2 * c.n_frames);
  fail_unless (g3n_audio_features_compute_batch (core.fx, pcm, lengths, 2, features, mask, &c.n_frames, NULL));
  c.features = g_memdup2 (features, sizeof (float) * c.n_frames * core.n_bins);
  c.mask = g_memdup2 (mask, c.n_frames);
  c.duration = gst_util_uint64_scale (n, GST_SECOND, RATE);
  return c;
}

static void
clip_clear (Clip *c)
{
  g_free (c->features);
  g_free (c->mask);
}

/* g3n_audio_encode of the whole clip, padding tokens replaced by the padding embedding. */
static float *
whole_clip_embeds (const Clip *c, int *n_tokens)
{
  int n_sub, T;
  g3n_audio_encoder_sizes (core.enc, c->n_frames, &n_sub, &T);
  int S = g3n_audio_encoder_n_soft_tokens (core.enc), H = core.n_embd;
  fail_unless (T <= S, "the test clip gives %d tokens, more than the %d soft tokens", T, S);
  g_autofree float *embeds = g_new (float, (gsize) T * H);
  g_autofree guint8 *tmask = g_new (guint8, T);
  G3nAudioEncodeOutputs out = { .embeds = embeds, .tower_mask = tmask };
  GError *error = NULL;
  fail_unless (g3n_audio_encode (core.enc, NULL, c->features, c->n_frames, core.n_bins, c->mask, &out, &error),
               "encode: %s", error ? error->message : "");
  float *padded = g_new (float, (gsize) S * H);
  fail_unless (g3n_audio_embed_padded (core.enc, embeds, tmask, T, padded, &error));
  *n_tokens = T;
  return padded;
}

typedef struct {
  GArray *embeds;
  const float *pad;
} StreamOut;

static void
stream_tokens (const float *tower, const guint8 *tmask, const float *embeds, int first, int n, gpointer data)
{
  StreamOut *o = data;
  for (int i = 0; i < n; i++)
    g_array_append_vals (o->embeds, tmask[i] ? o->pad : embeds + (gsize) i * core.n_embd, core.n_embd);
}

/* A G3nAudioStream with `rows` rows a batch fed the clip's frames in one push, then finished. */
static GArray *
stream_clip_embeds (const Clip *c, int rows)
{
  int S = g3n_audio_encoder_n_soft_tokens (core.enc);
  g_autofree float *pad_rows = g_new (float, (gsize) S * core.n_embd);
  fail_unless (g3n_audio_embed_padded (core.enc, NULL, NULL, 0, pad_rows, NULL));
  StreamOut o = { g_array_new (FALSE, FALSE, sizeof (float)), pad_rows };
  G3nAudioStream *s = g3n_audio_stream_new (core.fx, core.enc, NULL, stream_tokens, &o, NULL);
  g3n_audio_stream_set_min_rows (s, rows);
  fail_unless (g3n_audio_stream_push_features (s, c->features, c->mask, c->n_frames, NULL));
  fail_unless (g3n_audio_stream_finish (s, NULL));
  g3n_audio_stream_free (s);
  return o.embeds;
}

/* ---------------------------------------------------------------- what comes out of the element */

/* Everything the harness's sink pad receives, in order (buffers and events, flushes included). */
typedef struct {
  GMutex lock;
  GCond changed;
  GPtrArray *items; /* GstMiniObject refs */
} Recorder;

static GstPadProbeReturn
record (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  (void) pad;
  Recorder *r = data;
  g_mutex_lock (&r->lock);
  g_ptr_array_add (r->items, gst_mini_object_ref (GST_PAD_PROBE_INFO_DATA (info)));
  g_cond_broadcast (&r->changed);
  g_mutex_unlock (&r->lock);
  return GST_PAD_PROBE_OK;
}

static void
recorder_attach (Recorder *r, GstHarness *h)
{
  g_mutex_init (&r->lock);
  g_cond_init (&r->changed);
  r->items = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_mini_object_unref);
  gst_pad_add_probe (h->sinkpad,
                     GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM | GST_PAD_PROBE_TYPE_EVENT_FLUSH,
                     record, r, NULL);
}

static void
recorder_clear (Recorder *r)
{
  g_ptr_array_unref (r->items);
  g_cond_clear (&r->changed);
  g_mutex_clear (&r->lock);
}

static gboolean
is_edge (GstMiniObject *o, GstGemma3nSegmentEdge want)
{
  GstGemma3nSegmentEdge edge;
  return GST_IS_EVENT (o) && gst_gemma3n_segment_event_parse (GST_EVENT_CAST (o), &edge, NULL, NULL, NULL, NULL)
         && edge == want;
}

static gboolean
is_event (GstMiniObject *o, GstEventType type)
{
  return GST_IS_EVENT (o) && GST_EVENT_TYPE (o) == type;
}

static guint
count_ends_and_eos (Recorder *r)
{
  guint n = 0;
  for (guint i = 0; i < r->items->len; i++) {
    GstMiniObject *o = g_ptr_array_index (r->items, i);
    n += is_edge (o, GST_GEMMA3N_SEGMENT_END) || is_event (o, GST_EVENT_EOS);
  }
  return n;
}

/* Waits until `n` END or EOS events have come out. */
static void
wait_for_ends (Recorder *r, guint n)
{
  gint64 until = g_get_monotonic_time () + WAIT_SECONDS * G_TIME_SPAN_SECOND;
  g_mutex_lock (&r->lock);
  while (count_ends_and_eos (r) < n)
    fail_unless (g_cond_wait_until (&r->changed, &r->lock, until), "timed out waiting for END/EOS %u", n);
  g_mutex_unlock (&r->lock);
}

/* The embeddings buffers in items [from, to), concatenated; checks each buffer's timestamps from first
 * principles: it starts at `start` + its first token x 160 ms and lasts its tokens, the last one stopping at
 * `end` (NONE: not clipped). */
static GArray *
collect_tokens (Recorder *r, guint from, guint to, GstClockTime start, GstClockTime end)
{
  GArray *all = g_array_new (FALSE, FALSE, sizeof (float));
  guint n_tokens = 0;
  for (guint i = from; i < to; i++) {
    GstMiniObject *o = g_ptr_array_index (r->items, i);
    if (!GST_IS_BUFFER (o))
      continue;
    GstBuffer *b = GST_BUFFER_CAST (o);
    gsize size = gst_buffer_get_size (b);
    fail_unless (size > 0 && size % (core.n_embd * sizeof (float)) == 0, "buffer of %zu bytes", size);
    guint n = size / (core.n_embd * sizeof (float));
    GstClockTime pts = start + n_tokens * TOKEN_TIME, stop = start + (n_tokens + n) * TOKEN_TIME;
    if (GST_CLOCK_TIME_IS_VALID (end) && stop > end)
      stop = end;
    fail_unless_equals_uint64 (GST_BUFFER_PTS (b), pts);
    fail_unless_equals_uint64 (GST_BUFFER_DURATION (b), stop - pts);
    if (GST_CLOCK_TIME_IS_VALID (end))
      fail_unless (pts >= start && pts + GST_BUFFER_DURATION (b) <= end, "token buffer outside its segment");
    GstMapInfo map;
    gst_buffer_map (b, &map, GST_MAP_READ);
    g_array_append_vals (all, map.data, map.size / sizeof (float));
    gst_buffer_unmap (b, &map);
    n_tokens += n;
  }
  return all;
}

static double
max_rel_err (const float *a, const float *b, gsize n)
{
  double d = 0, m = 0;
  for (gsize i = 0; i < n; i++) {
    d = fmax (d, isnan (a[i]) ? INFINITY : fabs ((double) a[i] - b[i]));
    m = fmax (m, fabs (b[i]));
  }
  return m > 0 ? d / m : d;
}

/* The clip's tokens out of the element equal the whole-clip encoding (to float rounding) and, bitwise, a
 * core stream of the same batching fed the same frames. */
static void
check_clip_tokens (GArray *got, const Clip *c, int rows, const char *what)
{
  int T;
  g_autofree float *whole = whole_clip_embeds (c, &T);
  GArray *streamed = stream_clip_embeds (c, rows);
  fail_unless_equals_int (got->len, (guint) T * core.n_embd);
  double err = max_rel_err ((float *) got->data, whole, got->len);
  GST_INFO ("%s: %d tokens, max rel err %.3g vs whole clip", what, T, err);
  fail_unless (err <= 1e-5, "%s: tokens differ from the whole clip's by %.3g", what, err);
  fail_unless (streamed->len == got->len && memcmp (streamed->data, got->data, got->len * sizeof (float)) == 0,
               "%s: tokens are not bitwise those of a core stream fed the same frames", what);
  g_array_unref (streamed);
}

/* ---------------------------------------------------------------- what goes into it */

static GstHarness *
harness_new (const char *props)
{
  g_autofree char *desc = g_strdup_printf ("gemma3naudioenc model=\"%s\" %s", model_dir, props ? props : "");
  GError *error = NULL;
  GstElement *enc = gst_parse_launch (desc, &error);
  fail_unless (enc != NULL, "%s: %s", desc, error ? error->message : "");
  GstHarness *h = gst_harness_new_with_element (enc, "sink", "src");
  /* A test clock that never moves, also for the live cases (gst_harness_set_live): nothing here may wait for
   * the clock. */
  gst_harness_use_testclock (h);
  gst_object_unref (enc);
  gst_harness_set_live (h, FALSE);
  return h;
}

static GstBuffer *
mel_buffer (const Clip *c, int first, int n, GstClockTime start)
{
  gsize bytes = (gsize) n * core.n_bins * sizeof (float);
  GstBuffer *b = gst_buffer_new_memdup (c->features + (gsize) first * core.n_bins, bytes);
  GST_BUFFER_PTS (b) = start + first * FRAME_TIME;
  GST_BUFFER_DURATION (b) = n * FRAME_TIME;
  if (!c->mask[first])
    GST_BUFFER_FLAG_SET (b, GST_GEMMA3N_BUFFER_FLAG_PADDING);
  return b;
}

/* The clip's frames [from, to) in buffers of uneven sizes, cut where the mask changes (a buffer is all
 * speech or all padding). */
static void
push_frames (GstHarness *h, const Clip *c, int from, int to, GstClockTime start)
{
  static const int sizes[] = { 1, 7, 33, 2, 50, 16, 3, 64, 11 };
  int k = 0;
  for (int i = from; i < to; k++) {
    int n = MIN (sizes[k % G_N_ELEMENTS (sizes)], to - i);
    for (int j = 1; j < n; j++)
      if (c->mask[i + j] != c->mask[i])
        n = j;
    fail_unless_equals_int (gst_harness_push (h, mel_buffer (c, i, n, start)), GST_FLOW_OK);
    i += n;
  }
}

static void
push_segment (GstHarness *h, const Clip *c, guint64 index, GstClockTime start)
{
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, index, start,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  push_frames (h, c, 0, c->n_frames, start);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_END, index, start,
                                                                         c->duration, GST_GEMMA3N_SEGMENT_PAUSE)));
}

static guint
find_item (Recorder *r, guint from, gboolean (*match) (GstMiniObject *))
{
  for (guint i = from; i < r->items->len; i++)
    if (match (g_ptr_array_index (r->items, i)))
      return i;
  return G_MAXUINT;
}

static gboolean match_start (GstMiniObject *o) { return is_edge (o, GST_GEMMA3N_SEGMENT_START); }
static gboolean match_end (GstMiniObject *o) { return is_edge (o, GST_GEMMA3N_SEGMENT_END); }
static gboolean match_gap (GstMiniObject *o) { return is_event (o, GST_EVENT_GAP); }
static gboolean match_eos (GstMiniObject *o) { return is_event (o, GST_EVENT_EOS); }
static gboolean match_flush_stop (GstMiniObject *o) { return is_event (o, GST_EVENT_FLUSH_STOP); }
static gboolean match_buffer (GstMiniObject *o) { return GST_IS_BUFFER (o); }

/* ---------------------------------------------------------------- tests */

/* One segment in uneven buffers: the whole clip's tokens, timestamped per token inside the segment. */
GST_START_TEST (test_one_segment)
{
  core_setup ();
  Clip c = clip_of (0, core.n_samples);
  GstHarness *h = harness_new (NULL);
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  GstClockTime start = 1 * GST_SECOND;
  push_segment (h, &c, 0, start);
  wait_for_ends (&r, 1);

  g_mutex_lock (&r.lock);
  guint s = find_item (&r, 0, match_start), e = find_item (&r, 0, match_end);
  fail_unless (s < e && e < G_MAXUINT, "START then END forwarded");
  fail_unless (find_item (&r, 0, match_buffer) > s, "no tokens before START");
  fail_unless (find_item (&r, e, match_buffer) == G_MAXUINT, "no tokens after END");
  GArray *got = collect_tokens (&r, s, e, start, start + c.duration);
  g_mutex_unlock (&r.lock);
  check_clip_tokens (got, &c, 12, "one segment");

  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  GstStructure *st = gst_caps_get_structure (caps, 0);
  gint width;
  fail_unless (gst_structure_has_name (st, "application/x-gemma3n-embeddings"));
  fail_unless (gst_structure_get_int (st, "width", &width) && width == core.n_embd);
  fail_unless_equals_string (gst_structure_get_string (st, "modality"), "audio");
  fail_unless_equals_string (gst_structure_get_string (st, "dtype"), "float32");
  gst_caps_unref (caps);

  g_array_unref (got);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&c);
}
GST_END_TEST;

/* From a file with a backlog smaller than a buffer: upstream waits for the worker, nothing is lost; and the
 * output caps are known (src caps query) before any input. */
GST_START_TEST (test_file_backpressure)
{
  core_setup ();
  Clip c = clip_of (0, core.n_samples);
  GstHarness *h = harness_new ("max-backlog=20");
  GstCaps *caps = gst_pad_peer_query_caps (h->sinkpad, NULL);
  GstStructure *st = gst_caps_get_structure (caps, 0);
  gint width = 0;
  fail_unless (gst_caps_is_fixed (caps) && gst_structure_get_int (st, "width", &width) && width == core.n_embd,
               "src caps before input: %" GST_PTR_FORMAT, caps);
  gst_caps_unref (caps);
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  push_segment (h, &c, 0, 0);
  wait_for_ends (&r, 1);
  g_mutex_lock (&r.lock);
  GArray *got = collect_tokens (&r, 0, find_item (&r, 0, match_end), 0, c.duration);
  g_mutex_unlock (&r.lock);
  check_clip_tokens (got, &c, 12, "file source over a 20 ms backlog");
  g_array_unref (got);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&c);
}
GST_END_TEST;

/* A frame the tower cannot take (not finite): an error with the core's message, EOS downstream, and the
 * streaming thread gets ERROR from then on. */
GST_START_TEST (test_compute_error)
{
  core_setup ();
  Clip c = clip_of (0, 16000);
  c.features[5 * core.n_bins + 3] = NAN;
  GstHarness *h = harness_new (NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (h->element, bus);
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, 0,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  fail_unless_equals_int (gst_harness_push (h, mel_buffer (&c, 0, 10, 0)), GST_FLOW_OK);
  wait_for_ends (&r, 1); /* the worker's EOS */
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL, "an error message");
  GError *error = NULL;
  gst_message_parse_error (m, &error, NULL);
  GST_INFO ("compute error: %s", error->message);
  fail_unless (strstr (error->message, "not finite"), "the core's message: %s", error->message);
  g_error_free (error);
  gst_message_unref (m);
  fail_unless_equals_int (gst_harness_push (h, mel_buffer (&c, 10, 10, 0)), GST_FLOW_ERROR);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&c);
}
GST_END_TEST;

/* Stopping in the middle of a segment, the worker busy or not: the state change neither fails nor hangs. */
GST_START_TEST (test_stop_mid_segment)
{
  core_setup ();
  Clip c = clip_of (0, core.n_samples);
  for (int wait_us = 0; wait_us <= 20000; wait_us += 10000) {
    GstHarness *h = harness_new ("batch-rows=1 threads=1");
    gst_harness_set_src_caps_str (h, MEL_CAPS);
    fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, 0,
                                                                           GST_CLOCK_TIME_NONE,
                                                                           GST_GEMMA3N_SEGMENT_PAUSE)));
    push_frames (h, &c, 0, c.n_frames, 0);
    g_usleep (wait_us);
    gst_harness_teardown (h); /* asserts that PLAYING→NULL succeeds */
  }
  clip_clear (&c);
}
GST_END_TEST;

static void
count_bytes (GstElement *sink, GstBuffer *buf, GstPad *pad, gpointer data)
{
  (void) sink;
  (void) pad;
  *(gsize *) data += gst_buffer_get_size (buf);
}

/* In a real pipeline (appsrc ! gemma3naudioenc ! fakesink), live and not: it prerolls, plays to EOS and
 * gives the clip's tokens; the latency query of a live one goes through it to the source. */
GST_START_TEST (test_pipeline)
{
  core_setup ();
  Clip c = clip_of (0, core.n_samples);
  int n_tokens;
  g_free (whole_clip_embeds (&c, &n_tokens));
  for (int live = 0; live < 2; live++) {
    g_autofree char *desc = g_strdup_printf ("appsrc name=src format=time is-live=%d caps=\"%s\" ! "
                                             "gemma3naudioenc model=\"%s\" ! fakesink name=sink sync=false "
                                             "signal-handoffs=true", live, MEL_CAPS, model_dir);
    GstElement *pipeline = gst_parse_launch (desc, NULL);
    fail_unless (pipeline != NULL);
    GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
    GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
    gsize bytes = 0;
    g_signal_connect (sink, "handoff", G_CALLBACK (count_bytes), &bytes);
    fail_if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
    for (int i = 0; i < c.n_frames; i += 25) {
      GstFlowReturn ret;
      g_signal_emit_by_name (src, "push-buffer", mel_buffer (&c, i, MIN (25, c.n_frames - i), 0), &ret);
      fail_unless_equals_int (ret, GST_FLOW_OK);
    }
    GstFlowReturn ret;
    g_signal_emit_by_name (src, "end-of-stream", &ret);
    GstBus *bus = gst_element_get_bus (pipeline);
    GstMessage *m = gst_bus_timed_pop_filtered (bus, WAIT_SECONDS * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    fail_unless (m && GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS, "%s pipeline reaches EOS", live ? "live" : "file");
    gst_message_unref (m);
    fail_unless_equals_uint64 (bytes, (guint64) n_tokens * core.n_embd * sizeof (float));
    if (live) {
      GstQuery *q = gst_query_new_latency ();
      gboolean is_live;
      GstClockTime min;
      GstPad *sinkpad = gst_element_get_static_pad (sink, "sink"); /* a sync=false sink answers "not live" */
      fail_unless (gst_pad_peer_query (sinkpad, q));
      gst_object_unref (sinkpad);
      gst_query_parse_latency (q, &is_live, &min, NULL);
      fail_unless (is_live && min >= (12 * 4 + 6) * FRAME_TIME, "live latency %" GST_TIME_FORMAT,
                   GST_TIME_ARGS (min));
      gst_query_unref (q);
    }
    fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    gst_object_unref (bus);
    gst_object_unref (src);
    gst_object_unref (sink);
    gst_object_unref (pipeline);
  }
  clip_clear (&c);
}
GST_END_TEST;

/* The lowest-latency batching gives the same tokens as a core stream of it, and its tokens come out before
 * the segment ends. */
GST_START_TEST (test_batch_rows_1)
{
  core_setup ();
  Clip c = clip_of (0, core.n_samples);
  GstHarness *h = harness_new ("batch-rows=1 threads=1");
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, 0,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  push_frames (h, &c, 0, c.n_frames, 0);
  /* the frames are in but END is not: the tokens final so far come out anyway */
  gint64 until = g_get_monotonic_time () + WAIT_SECONDS * G_TIME_SPAN_SECOND;
  g_mutex_lock (&r.lock);
  while (find_item (&r, 0, match_buffer) == G_MAXUINT)
    fail_unless (g_cond_wait_until (&r.changed, &r.lock, until), "no token before END");
  g_mutex_unlock (&r.lock);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_END, 0, 0, c.duration,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  wait_for_ends (&r, 1);
  g_mutex_lock (&r.lock);
  GArray *got = collect_tokens (&r, 0, find_item (&r, 0, match_end), 0, c.duration);
  g_mutex_unlock (&r.lock);
  check_clip_tokens (got, &c, 1, "batch-rows 1");
  g_array_unref (got);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&c);
}
GST_END_TEST;

/* Two segments with a GAP between: two clips, each its own whole-clip encoding, events in order. */
GST_START_TEST (test_two_segments)
{
  core_setup ();
  gsize cut = 24000 + 77;
  Clip a = padded_clip_of (0, cut, cut + 4000), b = clip_of (cut, core.n_samples - cut);
  fail_unless (!a.mask[a.n_frames - 1], "clip A has padding frames");
  GstHarness *h = harness_new (NULL);
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  GstClockTime start_b = a.duration + 500 * GST_MSECOND;
  push_segment (h, &a, 0, 0);
  fail_unless (gst_harness_push_event (h, gst_event_new_gap (a.duration, start_b - a.duration)));
  push_segment (h, &b, 1, start_b);
  wait_for_ends (&r, 2);

  g_mutex_lock (&r.lock);
  guint s0 = find_item (&r, 0, match_start), e0 = find_item (&r, 0, match_end);
  guint gap = find_item (&r, 0, match_gap);
  guint s1 = find_item (&r, e0, match_start), e1 = find_item (&r, s1, match_end);
  fail_unless (s0 < e0 && e0 < gap && gap < s1 && s1 < e1 && e1 < G_MAXUINT,
               "START, END, GAP, START, END in order (%u %u %u %u %u)", s0, e0, gap, s1, e1);
  fail_unless (find_item (&r, e0, match_buffer) > s1, "no tokens between the segments");
  GstClockTime gap_start, gap_dur;
  gst_event_parse_gap (g_ptr_array_index (r.items, gap), &gap_start, &gap_dur);
  fail_unless_equals_uint64 (gap_start, a.duration);
  GArray *got_a = collect_tokens (&r, s0, e0, 0, a.duration);
  GArray *got_b = collect_tokens (&r, s1, e1, start_b, start_b + b.duration);
  g_mutex_unlock (&r.lock);
  check_clip_tokens (got_a, &a, 12, "segment A");
  check_clip_tokens (got_b, &b, 12, "segment B");
  g_array_unref (got_a);
  g_array_unref (got_b);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&a);
  clip_clear (&b);
}
GST_END_TEST;

/* A flush in the middle of a segment abandons it; the next segment is encoded from a clean state. */
GST_START_TEST (test_flush)
{
  core_setup ();
  Clip a = clip_of (0, core.n_samples), b = clip_of (8000, 30000);
  GstHarness *h = harness_new (NULL);
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, 0,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  push_frames (h, &a, 0, a.n_frames / 2, 0);
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  push_segment (h, &b, 1, 0);
  wait_for_ends (&r, 1);

  g_mutex_lock (&r.lock);
  guint fs = find_item (&r, 0, match_flush_stop);
  guint s = find_item (&r, fs, match_start), e = find_item (&r, s, match_end);
  fail_unless (fs < s && s < e && e < G_MAXUINT, "FLUSH_STOP, then the new segment's START and END");
  GArray *got = collect_tokens (&r, s, e, 0, b.duration);
  g_mutex_unlock (&r.lock);
  check_clip_tokens (got, &b, 12, "segment after a flush");
  g_array_unref (got);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&a);
  clip_clear (&b);
}
GST_END_TEST;

/* EOS in a segment (no END), and input with no segment events at all: the clip's tokens, then EOS. */
GST_START_TEST (test_eos_closes_clip)
{
  core_setup ();
  Clip c = clip_of (0, 30000 + 5);
  for (int with_start = 0; with_start < 2; with_start++) {
    GstHarness *h = harness_new (NULL);
    Recorder r;
    recorder_attach (&r, h);
    gst_harness_set_src_caps_str (h, MEL_CAPS);
    GstClockTime start = 2 * GST_SECOND;
    if (with_start)
      fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, start,
                                                                             GST_CLOCK_TIME_NONE,
                                                                             GST_GEMMA3N_SEGMENT_PAUSE)));
    push_frames (h, &c, 0, c.n_frames, start);
    fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
    wait_for_ends (&r, 1);
    g_mutex_lock (&r.lock);
    guint eos = find_item (&r, 0, match_eos);
    fail_unless (find_item (&r, eos, match_buffer) == G_MAXUINT, "tokens after EOS");
    /* no segment end is known: the last token's span is not clipped */
    GArray *got = collect_tokens (&r, 0, eos, start, GST_CLOCK_TIME_NONE);
    g_mutex_unlock (&r.lock);
    check_clip_tokens (got, &c, 12, with_start ? "EOS inside a segment" : "input without segment events");
    g_array_unref (got);
    gst_harness_teardown (h);
    recorder_clear (&r);
  }
  clip_clear (&c);
}
GST_END_TEST;

static char *
state_change_error (GstElement *e, GstState state, GstStateChangeReturn *ret)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  *ret = gst_element_set_state (e, state);
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  char *text = NULL;
  if (m) {
    GError *error = NULL;
    gst_message_parse_error (m, &error, NULL);
    text = g_strdup (error->message);
    g_error_free (error);
    gst_message_unref (m);
  }
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  return text;
}

/* A missing folder, a checkpoint without an audio tower, no folder: the state change fails with an error
 * naming the problem. */
GST_START_TEST (test_bad_model)
{
  g_autofree char *text_only = g_build_filename (g_getenv ("G3N_TEST_DATA"), "text-matformer", NULL);
  const char *paths[] = { "/nonexistent/no-such-model", text_only, NULL };
  const char *expect[] = { "no-such-model", "audio", "model" };
  for (int i = 0; i < 3; i++) {
    GstElement *e = gst_element_factory_make ("gemma3naudioenc", NULL);
    fail_unless (e != NULL);
    if (paths[i])
      g_object_set (e, "model", paths[i], NULL);
    GstStateChangeReturn ret;
    g_autofree char *error = state_change_error (e, GST_STATE_READY, &ret);
    GST_INFO ("model %s: %s", paths[i] ? paths[i] : "(none)", error ? error : "no error");
    fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
    fail_unless (error && strstr (error, expect[i]), "error for model %s names '%s': %s",
                 paths[i] ? paths[i] : "(none)", expect[i], error ? error : "none");
    if (paths[i] == text_only)
      fail_unless (strstr (error, "text-matformer"), "names the checkpoint: %s", error);
    gst_object_unref (e);
  }
}
GST_END_TEST;

/* Mel caps with another number of bins than the tower's: refused, with an error naming both numbers. */
GST_START_TEST (test_bins_mismatch)
{
  core_setup ();
  GstHarness *h = harness_new (NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (h->element, bus);
  GstCaps *caps = gst_caps_from_string ("application/x-gemma3n-mel, bins=(int)80, hop=(int)160, rate=(int)16000");
  gst_harness_push_event (h, gst_event_new_caps (caps)); /* stored upstream as sticky whatever we answer */
  gst_caps_unref (caps);
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL, "an error message");
  GError *error = NULL;
  gst_message_parse_error (m, &error, NULL);
  GST_INFO ("bins mismatch: %s", error->message);
  fail_unless (strstr (error->message, "80") && strstr (error->message, "128"), "names 80 and 128: %s",
               error->message);
  g_error_free (error);
  gst_message_unref (m);
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  gst_harness_push_event (h, gst_event_new_segment (&seg));
  GstBuffer *b = gst_buffer_new_allocate (NULL, 80 * sizeof (float), NULL);
  fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_NOT_NEGOTIATED);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}
GST_END_TEST;

static void
query_latency (GstHarness *h, gboolean *live, GstClockTime *min, GstClockTime *max)
{
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_pad_peer_query (h->sinkpad, q));
  gst_query_parse_latency (q, live, min, max);
  gst_query_unref (q);
}

/* Upstream's latency plus (batch-rows x 4 + 6) frames of the caps' hop. */
/* The model is opened in NULL→READY: while running, another folder is refused (what runs stays named). */
GST_START_TEST (test_model_fixed_while_running)
{
  GstHarness *h = harness_new (NULL);
  g_object_set (h->element, "model", "/some/other/model", NULL);
  g_autofree char *now = NULL;
  g_object_get (h->element, "model", &now, NULL);
  fail_unless_equals_string (now, model_dir);
  gst_harness_teardown (h);
}
GST_END_TEST;

GST_START_TEST (test_latency)
{
  GstHarness *h = harness_new ("batch-rows=12 max-backlog=2000");
  gst_harness_set_live (h, TRUE);
  gst_harness_set_upstream_latency (h, 100 * GST_MSECOND);
  gboolean live;
  GstClockTime min, max;
  query_latency (h, &live, &min, &max);
  fail_unless (live);
  fail_unless_equals_uint64 (min, 100 * GST_MSECOND + (12 * 4 + 6) * 10 * GST_MSECOND); /* Gemma 3n's 10 ms hop */
  fail_unless_equals_uint64 (max, GST_CLOCK_TIME_NONE);
  g_object_set (h->element, "batch-rows", 1, NULL);
  gst_harness_set_src_caps_str (h, "application/x-gemma3n-mel, bins=(int)128, hop=(int)320, rate=(int)16000");
  query_latency (h, &live, &min, &max);
  fail_unless_equals_uint64 (min, 100 * GST_MSECOND + (1 * 4 + 6) * 20 * GST_MSECOND); /* the caps' 20 ms hop */
  gst_harness_teardown (h);
}
GST_END_TEST;

/* A live source faster than the encoder: the oldest unbegun segment is dropped (as GAPs), with a warning. */
GST_START_TEST (test_live_drop)
{
  core_setup ();
  Clip c = clip_of (0, 16000);
  GstHarness *h = harness_new ("max-backlog=500 batch-rows=1");
  gst_harness_set_live (h, TRUE);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (h->element, bus);
  gst_harness_set_blocking_push_mode (h); /* the worker stalls on its first token until we pull */
  Recorder r;
  recorder_attach (&r, h);
  gst_harness_set_src_caps_str (h, MEL_CAPS);
  /* segment 0 begun: its START and 300 ms of it are taken before the rest comes */
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, 0, 0,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  push_frames (h, &c, 0, 30, 0);
  gint64 until = g_get_monotonic_time () + WAIT_SECONDS * G_TIME_SPAN_SECOND;
  g_mutex_lock (&r.lock);
  while (find_item (&r, 0, match_buffer) == G_MAXUINT)
    fail_unless (g_cond_wait_until (&r.changed, &r.lock, until), "no first token");
  g_mutex_unlock (&r.lock);
  push_frames (h, &c, 30, c.n_frames, 0);
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_END, 0, 0, c.duration,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  /* the worker is stalled with 700 ms of segment 0 queued: the next segments arrive over the limit */
  for (guint k = 1; k < 4; k++)
    push_segment (h, &c, k, k * 2 * GST_SECOND);
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (m != NULL, "a warning about the drop");
  GError *error = NULL;
  gst_message_parse_warning (m, &error, NULL);
  GST_INFO ("live drop: %s", error->message);
  fail_unless (strstr (error->message, "dropped") && strstr (error->message, "segment")
                   && !strstr (error->message, " 0.000 s"),
               "%s", error->message);
  g_error_free (error);
  gst_message_unref (m);
  /* EOS is never dropped: unblock the worker by pulling until it came out */
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  until = g_get_monotonic_time () + WAIT_SECONDS * G_TIME_SPAN_SECOND;
  gboolean eos = FALSE;
  while (!eos && g_get_monotonic_time () < until) {
    GstBuffer *b = gst_harness_try_pull (h);
    if (b)
      gst_buffer_unref (b);
    else
      g_usleep (1000);
    g_mutex_lock (&r.lock);
    eos = find_item (&r, 0, match_eos) < G_MAXUINT;
    g_mutex_unlock (&r.lock);
  }
  fail_unless (eos, "EOS came out");
  g_mutex_lock (&r.lock);
  guint ends = 0;
  for (guint i = find_item (&r, 0, match_end); i < G_MAXUINT; i = find_item (&r, i + 1, match_end))
    ends++;
  fail_unless (ends >= 1 && ends < 4, "some segments kept, some dropped (%u ENDs)", ends);
  guint64 index = 99;
  gst_gemma3n_segment_event_parse (g_ptr_array_index (r.items, find_item (&r, 0, match_end)), NULL, &index, NULL,
                                   NULL, NULL);
  fail_unless_equals_uint64 (index, 0); /* the begun segment is never cut */
  fail_unless (find_item (&r, 0, match_gap) < G_MAXUINT, "the dropped audio went on as GAP events");
  g_mutex_unlock (&r.lock);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  recorder_clear (&r);
  clip_clear (&c);
}
GST_END_TEST;

static Suite *
audioenc_suite (void)
{
  Suite *s = suite_create ("gemma3naudioenc");
  TCase *tc = tcase_create ("general");
  tcase_set_timeout (tc, 300);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_one_segment);
  tcase_add_test (tc, test_model_fixed_while_running);
  tcase_add_test (tc, test_batch_rows_1);
  tcase_add_test (tc, test_file_backpressure);
  tcase_add_test (tc, test_compute_error);
  tcase_add_test (tc, test_stop_mid_segment);
  tcase_add_test (tc, test_pipeline);
  tcase_add_test (tc, test_two_segments);
  tcase_add_test (tc, test_flush);
  tcase_add_test (tc, test_eos_closes_clip);
  tcase_add_test (tc, test_bad_model);
  tcase_add_test (tc, test_bins_mismatch);
  tcase_add_test (tc, test_latency);
  tcase_add_test (tc, test_live_drop);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  const char *data = g_getenv ("G3N_TEST_DATA");
  if (!data) {
    fprintf (stderr, "G3N_TEST_DATA is not set (make check sets it)\n");
    return 1;
  }
  model_dir = g_build_filename (data, "mm-tiny", NULL);
  return gst_check_run_suite (audioenc_suite (), "gemma3naudioenc", __FILE__);
}
