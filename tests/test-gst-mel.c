/* test-gst-mel — the gemma3nmel element in a GstHarness.
 *
 * Frames are checked against the core's whole-clip features (g3n_audio_features_compute of exactly the
 * segment's samples) and the reference goldens of tests/data/mel (its MANIFEST's tolerance); segment
 * boundaries and timestamps against first principles (the input's sample times, 62.5 µs a sample at 16 kHz,
 * and the element's settings). Every item the element sends is recorded in order by a probe on the harness'
 * sink pad, and every test first checks the protocol of gstgemma3nformat.h on that record.
 */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "gemma3n.h"
#include "gstgemma3nformat.h"

#define RATE 16000
#define HOP 160
#define BINS 128
/* One sample at 16 kHz is exactly 62500 ns, so every sample time is an integer number of ns. */
#define SAMPLE_NS 62500
#define T(k) ((GstClockTime) (k) * SAMPLE_NS)
#define MS(ms) ((guint64) (ms) * RATE / 1000)

static const char *
data_dir (void)
{
  const char *d = g_getenv ("G3N_TEST_DATA");
  return d ? d : "tests/data";
}

/* ---------------------------------------------------------------- signals */

static float *
tone (gsize n, double amplitude, double hz)
{
  float *x = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    x[i] = (float) (amplitude * sin (2 * G_PI * hz * (double) i / RATE));
  return x;
}

/* Uniform noise of the given RMS. */
static float *
noise (gsize n, double rms, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  float *x = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    x[i] = (float) (rms * sqrt (3.0) * g_rand_double_range (r, -1, 1));
  g_rand_free (r);
  return x;
}

/* Concatenation of pieces (pcm, n), NULL-terminated; pcm NULL = zeros. */
static float *
concat (gsize *total, ...)
{
  va_list ap;
  GArray *a = g_array_new (FALSE, TRUE, sizeof (float));
  va_start (ap, total);
  for (;;) {
    const float *x = va_arg (ap, const float *);
    gsize n = va_arg (ap, gsize);
    if (n == 0)
      break;
    guint at = a->len;
    g_array_set_size (a, at + n);
    if (x)
      memcpy (&g_array_index (a, float, at), x, n * sizeof (float));
  }
  va_end (ap);
  *total = a->len;
  return (float *) g_array_free (a, FALSE);
}

/* ---------------------------------------------------------------- the harness and its record */

typedef struct {
  GstHarness *h;
  GstBus *bus;
  GPtrArray *items; /* buffers and events the element sent, in order */
} Run;

static GstPadProbeReturn
record (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  Run *run = user_data;
  GstMiniObject *obj = GST_PAD_PROBE_INFO_DATA (info);
  if (GST_IS_EVENT (obj)) {
    GstEventType t = GST_EVENT_TYPE (GST_EVENT (obj));
    if (t != GST_EVENT_GAP && t != GST_EVENT_EOS && t != GST_EVENT_CUSTOM_DOWNSTREAM && t != GST_EVENT_FLUSH_STOP)
      return GST_PAD_PROBE_OK;
  }
  g_ptr_array_add (run->items, gst_mini_object_ref (obj));
  return GST_PAD_PROBE_OK;
}

/* A harness around a gemma3nmel configured by `props` ("name=value ..."), or NULL when it fails to start. */
static Run *
run_new (const char *props)
{
  GstElement *el = gst_element_factory_make ("gemma3nmel", NULL);
  fail_unless (el != NULL, "gemma3nmel not found (GST_PLUGIN_PATH?)");
  g_auto (GStrv) kv = g_strsplit (props ? props : "", " ", -1);
  for (guint i = 0; kv[i]; i++) {
    char *eq = strchr (kv[i], '=');
    if (!eq)
      continue;
    *eq = '\0';
    gst_util_set_object_arg (G_OBJECT (el), kv[i], eq + 1);
  }
  Run *run = g_new0 (Run, 1);
  run->bus = gst_bus_new ();
  gst_element_set_bus (el, run->bus);
  run->items = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_mini_object_unref);
  run->h = gst_harness_new_with_element (el, "sink", "src");
  /* The harness's upstream is live: a test clock that never moves shows nothing here waits for the clock. */
  gst_harness_use_testclock (run->h);
  gst_object_unref (el);
  gst_pad_add_probe (run->h->sinkpad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM |
                     GST_PAD_PROBE_TYPE_EVENT_FLUSH, record, run, NULL);
  return run;
}

static Run *
run_start (const char *props)
{
  Run *run = run_new (props);
  gst_harness_set_src_caps_str (run->h, "audio/x-raw, format=F32LE, rate=16000, channels=1, layout=interleaved");
  return run;
}

static void
run_free (Run *run)
{
  gst_harness_teardown (run->h);
  gst_bus_set_flushing (run->bus, TRUE);
  gst_object_unref (run->bus);
  g_ptr_array_unref (run->items);
  g_free (run);
}

static GstFlowReturn
push_pcm (Run *run, const float *pcm, gsize n, GstClockTime pts, gboolean discont)
{
  GstBuffer *buf = n ? gst_buffer_new_memdup (pcm, n * sizeof (float)) : gst_buffer_new ();
  GST_BUFFER_PTS (buf) = pts;
  GST_BUFFER_DURATION (buf) = GST_CLOCK_TIME_IS_VALID (pts) ? T (n) : GST_CLOCK_TIME_NONE;
  if (discont)
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
  return gst_harness_push (run->h, buf);
}

/* Pushes pcm starting at `base` in pieces cycling through `sizes`; every third piece without a PTS (the
 * element continues from the samples before). */
static guint
push_pieces (Run *run, const float *pcm, gsize n, GstClockTime base, const gsize *sizes, guint n_sizes)
{
  gsize at = 0;
  guint i;
  for (i = 0; at < n; i++) {
    gsize len = MIN (sizes[i % n_sizes], n - at);
    GstClockTime pts = i % 3 == 2 ? GST_CLOCK_TIME_NONE : base + T (at);
    fail_unless_equals_int (push_pcm (run, pcm + at, len, pts, FALSE), GST_FLOW_OK);
    at += len;
  }
  return i;
}

/* Returns the number of buffers pushed. */
static guint
push_all (Run *run, const float *pcm, gsize n, GstClockTime base)
{
  static const gsize sizes[] = { 1000, 37, 4000, 1, 160, 2999, 513, 1600 };
  return push_pieces (run, pcm, n, base, sizes, G_N_ELEMENTS (sizes));
}

static void
push_eos (Run *run)
{
  fail_unless (gst_harness_push_event (run->h, gst_event_new_eos ()));
}

/* ---------------------------------------------------------------- what came out */

typedef struct {
  guint64 index;
  GstClockTime start, duration; /* duration NONE while open, or when abandoned by a flush */
  GstGemma3nSegmentEnd reason;
  GArray *frames;               /* floats [n, BINS] */
  GByteArray *padding;          /* per frame: it came in a PADDING buffer */
  gboolean ended;
} Seg;

typedef struct {
  GArray *segs;                 /* Seg */
  GArray *gaps;                 /* GstClockTime pairs: start, end */
  guint n_buffers;
  gboolean eos;
} Out;

static void
seg_clear (Seg *s)
{
  g_array_unref (s->frames);
  g_byte_array_unref (s->padding);
}

static void
out_free (Out *o)
{
  for (guint i = 0; i < o->segs->len; i++)
    seg_clear (&g_array_index (o->segs, Seg, i));
  g_array_unref (o->segs);
  g_array_unref (o->gaps);
  g_free (o);
}

static Seg *
last_seg (Out *o)
{
  return o->segs->len ? &g_array_index (o->segs, Seg, o->segs->len - 1) : NULL;
}

/* Checks the protocol on the record and sorts it into segments and gaps: START and END alternate with equal
 * index and start; buffers only inside a segment, of whole frames, timed at the segment's start + 10 ms a
 * frame and contiguous; GAPs monotonic, never inside a segment; nothing after EOS. */
static Out *
parse (Run *run)
{
  Out *o = g_new0 (Out, 1);
  o->segs = g_array_new (FALSE, TRUE, sizeof (Seg));
  o->gaps = g_array_new (FALSE, FALSE, sizeof (GstClockTime));
  GstClockTime last_end = 0; /* end of the last segment or gap */
  GstClockTime next_pts = GST_CLOCK_TIME_NONE;
  gboolean open = FALSE;
  for (guint i = 0; i < run->items->len; i++) {
    GstMiniObject *obj = g_ptr_array_index (run->items, i);
    fail_if (o->eos, "item %u after EOS", i);
    if (GST_IS_BUFFER (obj)) {
      GstBuffer *buf = GST_BUFFER (obj);
      fail_unless (open, "buffer %u outside a segment", i);
      Seg *s = last_seg (o);
      gsize size = gst_buffer_get_size (buf);
      fail_unless (size > 0 && size % (BINS * sizeof (float)) == 0, "buffer of %zu bytes", size);
      guint n = size / (BINS * sizeof (float));
      fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), next_pts);
      fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), s->start + (guint64) (s->frames->len / BINS) * T (HOP));
      fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), (guint64) n * T (HOP));
      next_pts += GST_BUFFER_DURATION (buf);
      guint at = s->frames->len;
      g_array_set_size (s->frames, at + n * BINS);
      gst_buffer_extract (buf, 0, &g_array_index (s->frames, float, at), size);
      guint8 pad = GST_BUFFER_FLAG_IS_SET (buf, GST_GEMMA3N_BUFFER_FLAG_PADDING);
      for (guint f = 0; f < n; f++)
        g_byte_array_append (s->padding, &pad, 1);
      o->n_buffers++;
      continue;
    }
    GstEvent *ev = GST_EVENT (obj);
    GstGemma3nSegmentEdge edge;
    guint64 index;
    GstClockTime start, duration;
    GstGemma3nSegmentEnd reason;
    switch (GST_EVENT_TYPE (ev)) {
      case GST_EVENT_EOS:
        fail_if (open, "EOS inside a segment");
        o->eos = TRUE;
        break;
      case GST_EVENT_FLUSH_STOP:
        if (open)
          last_seg (o)->duration = GST_CLOCK_TIME_NONE;
        open = FALSE;
        last_end = 0;
        break;
      case GST_EVENT_GAP: {
        GstClockTime ts, dur;
        gst_event_parse_gap (ev, &ts, &dur);
        fail_if (open, "GAP inside a segment");
        fail_unless (ts >= last_end, "GAP at %" GST_TIME_FORMAT " before the previous end %" GST_TIME_FORMAT,
                     GST_TIME_ARGS (ts), GST_TIME_ARGS (last_end));
        fail_unless (dur > 0);
        GstClockTime end = ts + dur;
        g_array_append_val (o->gaps, ts);
        g_array_append_val (o->gaps, end);
        last_end = end;
        break;
      }
      case GST_EVENT_CUSTOM_DOWNSTREAM:
        fail_unless (gst_gemma3n_segment_event_parse (ev, &edge, &index, &start, &duration, &reason));
        if (edge == GST_GEMMA3N_SEGMENT_START) {
          fail_if (open, "START inside a segment");
          fail_unless (start >= last_end, "segment at %" GST_TIME_FORMAT " overlaps what came before",
                       GST_TIME_ARGS (start));
          Seg s = { .index = index, .start = start, .duration = GST_CLOCK_TIME_NONE,
                    .frames = g_array_new (FALSE, FALSE, sizeof (float)), .padding = g_byte_array_new () };
          g_array_append_val (o->segs, s);
          open = TRUE;
          next_pts = start;
        } else {
          fail_unless (open, "END without START");
          Seg *s = last_seg (o);
          fail_unless_equals_uint64 (index, s->index);
          fail_unless_equals_uint64 (start, s->start);
          fail_unless (next_pts <= start + duration, "frames past the segment's end");
          s->duration = duration;
          s->reason = reason;
          s->ended = TRUE;
          last_end = start + duration;
          open = FALSE;
        }
        break;
      default:
        break;
    }
  }
  return o;
}

static Seg *
seg (Out *o, guint i)
{
  fail_unless (i < o->segs->len, "segment %u of %u", i, o->segs->len);
  return &g_array_index (o->segs, Seg, i);
}

/* The core's whole-clip features of pcm[n], the frames a segment of exactly those samples must hold. */
static float *
whole_clip (const float *pcm, gsize n, int *n_frames, guint8 **mask)
{
  G3nAudioFeatures *fx = g3n_audio_features_new (NULL, NULL);
  fail_unless (fx != NULL);
  *n_frames = g3n_audio_features_n_frames (fx, n);
  float *f = g_new (float, (gsize) *n_frames * BINS + 1);
  *mask = g_new (guint8, *n_frames + 1);
  fail_unless (g3n_audio_features_compute (fx, pcm, n, f, *mask, NULL));
  g3n_audio_features_free (fx);
  return f;
}

/* The segment's frames are bitwise the whole-clip features of input samples [k0, k0 + n), and its PADDING
 * buffers hold exactly the frames of mask 0. */
static void
check_segment_frames (Seg *s, const float *input, guint64 k0, gsize n)
{
  int T_ = 0;
  guint8 *mask = NULL;
  float *want = whole_clip (input + k0, n, &T_, &mask);
  fail_unless_equals_int (s->frames->len / BINS, T_);
  fail_unless (memcmp (s->frames->data, want, (gsize) T_ * BINS * sizeof (float)) == 0,
               "segment %" G_GUINT64_FORMAT ": frames differ from the whole clip's", s->index);
  for (int t = 0; t < T_; t++)
    fail_unless_equals_int (s->padding->data[t], mask[t] == 0);
  g_free (want);
  g_free (mask);
}

/* Every buffer's span lies in [t0, t1). */
static void
check_inside (Run *run, GstClockTime t0, GstClockTime t1)
{
  for (guint i = 0; i < run->items->len; i++) {
    GstMiniObject *obj = g_ptr_array_index (run->items, i);
    if (!GST_IS_BUFFER (obj))
      continue;
    GstBuffer *b = GST_BUFFER (obj);
    fail_unless (GST_BUFFER_PTS (b) >= t0 && GST_BUFFER_PTS (b) + GST_BUFFER_DURATION (b) <= t1,
                 "buffer [%" GST_TIME_FORMAT ", +%" GST_TIME_FORMAT ") outside the input",
                 GST_TIME_ARGS (GST_BUFFER_PTS (b)), GST_TIME_ARGS (GST_BUFFER_DURATION (b)));
  }
}

/* The GAPs, contiguous ones merged, are exactly the spans t0, t1, t0, t1, ... (G_MAXUINT64-terminated). */
static void
check_gaps (Out *o, ...)
{
  GArray *merged = g_array_new (FALSE, FALSE, sizeof (GstClockTime));
  GstClockTime *g = (GstClockTime *) o->gaps->data;
  for (guint i = 0; i < o->gaps->len; i += 2) {
    guint m = merged->len;
    if (m && g_array_index (merged, GstClockTime, m - 1) == g[i])
      g_array_index (merged, GstClockTime, m - 1) = g[i + 1];
    else
      g_array_append_vals (merged, g + i, 2);
  }
  va_list ap;
  va_start (ap, o);
  guint i = 0;
  for (GstClockTime t; (t = va_arg (ap, GstClockTime)) != G_MAXUINT64; i++) {
    fail_unless (i < merged->len, "fewer gap spans than expected");
    fail_unless_equals_uint64 (g_array_index (merged, GstClockTime, i), t);
  }
  va_end (ap);
  fail_unless_equals_int (merged->len, i);
  g_array_unref (merged);
}

static guint
count_messages (Run *run, GstMessageType type)
{
  guint n = 0;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (run->bus, type))) {
    n++;
    gst_message_unref (m);
  }
  return n;
}

/* ---------------------------------------------------------------- 1, 2: whole-clip parity and timestamps */

GST_START_TEST (test_parity_speech_wav)
{
  g_autofree char *wav = g_build_filename (data_dir (), "sample", "speech.wav", NULL);
  float *pcm = NULL;
  gsize n = 0;
  fail_unless (g3n_media_read_audio (wav, RATE, G_MAXSIZE, &pcm, &n, NULL));
  fail_unless (n > RATE);
  const GstClockTime base = 5 * GST_SECOND;
  Run *run = run_start ("vad=false");
  push_all (run, pcm, n, base);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 1);
  Seg *s = seg (o, 0);
  fail_unless (s->ended && s->reason == GST_GEMMA3N_SEGMENT_EOS);
  fail_unless_equals_uint64 (s->start, base);
  fail_unless_equals_uint64 (s->duration, T (n));
  fail_unless (o->n_buffers > 3, "one buffer per input buffer that completes frames");
  check_segment_frames (s, pcm, 0, n);
  /* 2: every buffer inside the input, consecutive (parse checked PTS = previous PTS + DURATION). */
  check_inside (run, base, base + T (n));
  fail_unless_equals_int (o->gaps->len, 0);
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* The MANIFEST's check: linear mel within 1e-5 of the peak, log-mel within 5e-3 where golden > -6.9. */
static void
check_golden (const float *ours, const float *gold, gsize n)
{
  double peak = 0, lin = 0, lg = 0;
  for (gsize i = 0; i < n; i++) {
    peak = MAX (peak, exp (gold[i]));
    lin = MAX (lin, fabs (exp (ours[i]) - exp (gold[i])));
    if (gold[i] > -6.9)
      lg = MAX (lg, fabs ((double) ours[i] - gold[i]));
  }
  fail_unless (lin <= 1e-5 * peak && lg <= 5e-3, "against the golden: linear %.3g of peak, log %.3g", lin / peak, lg);
}

GST_START_TEST (test_parity_golden)
{
  g_autofree char *path = g_build_filename (data_dir (), "mel", "golden.safetensors", NULL);
  G3nSafetensors *st = g3n_safetensors_open (path, NULL);
  fail_unless (st != NULL, "%s", path);
  const G3nTensor *w = g3n_safetensors_find (st, "speech_natural_waveform");
  const G3nTensor *gf = g3n_safetensors_find (st, "speech_natural_features");
  const G3nTensor *gm = g3n_safetensors_find (st, "speech_natural_mask");
  fail_unless (w && gf && gm);
  gsize n = (gsize) w->shape[0];
  const float *pcm = w->data;
  g_autofree char *model = g_build_filename (data_dir (), "mel", NULL);
  g_autofree char *props = g_strdup_printf ("vad=false model=%s", model);
  Run *run = run_start (props);
  static const gsize sizes[] = { 7, 4096, 333, 160, 1599 };
  push_pieces (run, pcm, n, 0, sizes, G_N_ELEMENTS (sizes));
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 1);
  Seg *s = seg (o, 0);
  int T_ = (int) gf->shape[1];
  fail_unless_equals_int (T_, 380); /* (ceil(61083 / 128) * 128 - 513) / 160 + 1, the MANIFEST's count */
  fail_unless_equals_int (s->frames->len / BINS, T_);
  check_golden ((const float *) s->frames->data, gf->data, (gsize) T_ * BINS);
  const guint8 *mask = gm->data;
  for (int t = 0; t < T_; t++)
    fail_unless_equals_int (s->padding->data[t], mask[t] == 0);
  out_free (o);
  run_free (run);
  g3n_safetensors_free (st);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 3: silence */

GST_START_TEST (test_silence_only)
{
  /* 1.5 s of zeros, then 1.5 s of noise at -60 dBFS: under the -45 dBFS threshold. */
  float *quiet = noise (MS (1500), 0.001, 7);
  gsize n;
  float *pcm = concat (&n, (float *) NULL, (gsize) MS (1500), quiet, (gsize) MS (1500), NULL, (gsize) 0);
  const GstClockTime base = 2 * GST_SECOND;
  Run *run = run_start (NULL);
  guint pushed = push_all (run, pcm, n, base);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->n_buffers, 0);
  fail_unless (o->gaps->len / 2 <= pushed + 1, "at most one GAP per input buffer (and one at EOS)");
  fail_unless_equals_int (o->segs->len, 0);
  /* Contiguous gaps from the first sample to the last. */
  check_gaps (o, base, base + T (n), G_MAXUINT64);
  /* Not one GAP for the whole stream at EOS: the silence goes out as it arrives. */
  fail_unless (o->gaps->len / 2 > 3);
  fail_unless (o->eos);
  out_free (o);
  run_free (run);
  g_free (pcm);
  g_free (quiet);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 4: pauses, min-speech */

GST_START_TEST (test_two_segments)
{
  /* tone 1 s / silence 1 s / tone 1 s / silence 1 s. Defaults: pause 600 ms, pre-roll 200 ms. */
  float *a = tone (MS (1000), 0.3, 440), *b = tone (MS (1000), 0.2, 660);
  gsize n;
  float *pcm = concat (&n, a, (gsize) MS (1000), NULL, (gsize) MS (1000), b, (gsize) MS (1000), NULL,
                       (gsize) MS (1000), NULL, (gsize) 0);
  Run *run = run_start (NULL);
  push_all (run, pcm, n, 0);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 2);
  Seg *s0 = seg (o, 0), *s1 = seg (o, 1);
  /* The first starts with the tone (nothing before it to pre-roll) and ends 600 ms into the silence. */
  fail_unless_equals_uint64 (s0->index, 0);
  fail_unless_equals_uint64 (s0->start, 0);
  fail_unless_equals_int (s0->reason, GST_GEMMA3N_SEGMENT_PAUSE);
  fail_unless_equals_uint64 (s0->duration, T (MS (1600)));
  /* The second includes 200 ms of pre-roll. */
  fail_unless_equals_uint64 (s1->index, 1);
  fail_unless_equals_uint64 (s1->start, T (MS (1800)));
  fail_unless_equals_int (s1->reason, GST_GEMMA3N_SEGMENT_PAUSE);
  fail_unless_equals_uint64 (s1->duration, T (MS (1800)));
  check_segment_frames (s0, pcm, 0, MS (1600));
  check_segment_frames (s1, pcm, MS (1800), MS (1800));
  /* The silence between them and after the second is covered by GAPs, [1.6 s, 1.8 s) and [3.6 s, 4 s). */
  check_gaps (o, T (MS (1600)), T (MS (1800)), T (MS (3600)), T (n), G_MAXUINT64);
  check_inside (run, 0, T (n));
  /* One element message per END, with its fields. */
  for (guint i = 0; i < 2; i++) {
    GstMessage *m = gst_bus_pop_filtered (run->bus, GST_MESSAGE_ELEMENT);
    fail_unless (m != NULL);
    const GstStructure *st = gst_message_get_structure (m);
    fail_unless (gst_structure_has_name (st, "gemma3nmel-segment"));
    guint64 index, start, duration;
    fail_unless (gst_structure_get_uint64 (st, "index", &index) && gst_structure_get_uint64 (st, "start", &start)
                 && gst_structure_get_uint64 (st, "duration", &duration));
    fail_unless_equals_uint64 (index, seg (o, i)->index);
    fail_unless_equals_uint64 (start, seg (o, i)->start);
    fail_unless_equals_uint64 (duration, seg (o, i)->duration);
    fail_unless_equals_string (gst_structure_get_string (st, "reason"), "pause");
    gst_message_unref (m);
  }
  fail_unless_equals_int (count_messages (run, GST_MESSAGE_ELEMENT), 0);
  out_free (o);
  run_free (run);
  g_free (pcm);
  g_free (a);
  g_free (b);
}
GST_END_TEST;

/* A 50 ms click in 2 s of silence: dropped with the default min-speech (200 ms), a segment with 0. */
static Out *
run_click (const char *props, float **pcm_out, gsize *n_out)
{
  float *click = tone (MS (50), 0.5, 1000);
  gsize n;
  float *pcm = concat (&n, (float *) NULL, (gsize) MS (1000), click, (gsize) MS (50), NULL, (gsize) MS (950),
                       NULL, (gsize) 0);
  Run *run = run_start (props);
  push_all (run, pcm, n, 0);
  push_eos (run);
  Out *o = parse (run);
  run_free (run);
  g_free (click);
  *pcm_out = pcm;
  *n_out = n;
  return o;
}

GST_START_TEST (test_min_speech)
{
  float *pcm;
  gsize n;
  Out *o = run_click (NULL, &pcm, &n);
  fail_unless_equals_int (o->segs->len, 0);
  fail_unless_equals_int (o->n_buffers, 0);
  check_gaps (o, (GstClockTime) 0, T (n), G_MAXUINT64);
  out_free (o);
  g_free (pcm);

  /* The same click is speech to the VAD: with min-speech=0 it is a segment (pre-roll, click, pause). */
  o = run_click ("min-speech=0", &pcm, &n);
  fail_unless_equals_int (o->segs->len, 1);
  fail_unless_equals_uint64 (seg (o, 0)->start, T (MS (800)));
  fail_unless_equals_uint64 (seg (o, 0)->duration, T (MS (200 + 50 + 600)));
  check_segment_frames (seg (o, 0), pcm, MS (800), MS (850));
  out_free (o);
  g_free (pcm);
}
GST_END_TEST;

/* A property set during a segment applies from the next one: pause 600 ms for the open one, then 100 ms. */
GST_START_TEST (test_settings_next_segment)
{
  float *a = tone (MS (1000), 0.3, 440);
  gsize n;
  float *pcm = concat (&n, a, (gsize) MS (1000), NULL, (gsize) MS (1000), a, (gsize) MS (1000), NULL,
                       (gsize) MS (1000), NULL, (gsize) 0);
  Run *run = run_start (NULL);
  push_all (run, pcm, MS (500), 0);
  g_object_set (run->h->element, "pause", 100, NULL);
  push_all (run, pcm + MS (500), n - MS (500), T (MS (500)));
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 2);
  fail_unless_equals_uint64 (seg (o, 0)->duration, T (MS (1600)));
  fail_unless_equals_uint64 (seg (o, 1)->start, T (MS (1800)));
  fail_unless_equals_uint64 (seg (o, 1)->duration, T (MS (200 + 1000 + 100)));
  out_free (o);
  run_free (run);
  g_free (pcm);
  g_free (a);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 5: max-segment */

GST_START_TEST (test_max_segment)
{
  float *pcm = tone (MS (4000), 0.3, 300);
  gsize n = MS (4000);
  Run *run = run_start ("max-segment=1500");
  push_all (run, pcm, n, GST_SECOND);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 3);
  static const guint ms[] = { 1500, 1500, 1000 };
  static const GstGemma3nSegmentEnd why[] = { GST_GEMMA3N_SEGMENT_MAX_LENGTH, GST_GEMMA3N_SEGMENT_MAX_LENGTH,
                                              GST_GEMMA3N_SEGMENT_EOS };
  guint64 k = 0;
  for (guint i = 0; i < 3; i++) {
    Seg *s = seg (o, i);
    fail_unless_equals_uint64 (s->start, GST_SECOND + T (k)); /* contiguous: each starts where the last ended */
    fail_unless_equals_uint64 (s->duration, T (MS (ms[i])));
    fail_unless_equals_int (s->reason, why[i]);
    check_segment_frames (s, pcm, k, MS (ms[i]));
    k += MS (ms[i]);
  }
  fail_unless_equals_int (o->gaps->len, 0);
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 6: discontinuities */

static void
check_discont (gboolean flag)
{
  /* n1 samples of tone at 0 (not a whole number of hops: the last partial hop ends the segment); then 1 s
   * more, either flagged DISCONT right after it or timestamped at 5 s. */
  const gsize n1 = MS (1000) + 77;
  float *pcm = tone (n1 + MS (1000), 0.3, 500);
  GstClockTime t2 = flag ? T (n1) : 5 * GST_SECOND;
  Run *run = run_start (NULL);
  push_all (run, pcm, n1, 0);
  fail_unless_equals_int (push_pcm (run, pcm + n1, MS (500), t2, flag), GST_FLOW_OK);
  fail_unless_equals_int (push_pcm (run, pcm + n1 + MS (500), MS (500), t2 + T (MS (500)), FALSE), GST_FLOW_OK);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 2);
  fail_unless_equals_int (seg (o, 0)->reason, GST_GEMMA3N_SEGMENT_DISCONT);
  fail_unless_equals_uint64 (seg (o, 0)->start, 0);
  fail_unless_equals_uint64 (seg (o, 0)->duration, T (n1));
  fail_unless_equals_int (seg (o, 1)->reason, GST_GEMMA3N_SEGMENT_EOS);
  fail_unless_equals_uint64 (seg (o, 1)->start, t2);
  fail_unless_equals_uint64 (seg (o, 1)->duration, GST_SECOND);
  check_segment_frames (seg (o, 0), pcm, 0, n1);
  check_segment_frames (seg (o, 1), pcm, n1, MS (1000));
  out_free (o);
  run_free (run);
  g_free (pcm);
}

GST_START_TEST (test_discont)
{
  check_discont (TRUE);
  check_discont (FALSE);
}
GST_END_TEST;

/* A GAP from upstream (no samples for a while) is a discontinuity too; it is passed on after the segment. */
GST_START_TEST (test_upstream_gap)
{
  float *pcm = tone (MS (2000), 0.3, 500);
  Run *run = run_start (NULL);
  push_all (run, pcm, MS (1000), 0);
  fail_unless (gst_harness_push_event (run->h, gst_event_new_gap (GST_SECOND, GST_SECOND)));
  push_all (run, pcm + MS (1000), MS (1000), 2 * GST_SECOND);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 2);
  fail_unless_equals_int (seg (o, 0)->reason, GST_GEMMA3N_SEGMENT_DISCONT);
  fail_unless_equals_uint64 (seg (o, 0)->duration, GST_SECOND);
  fail_unless_equals_uint64 (seg (o, 1)->start, 2 * GST_SECOND);
  check_segment_frames (seg (o, 1), pcm, MS (1000), MS (1000));
  check_gaps (o, GST_SECOND, 2 * GST_SECOND, G_MAXUINT64);
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* A timestamp jitter under 10 ms is not a discontinuity. */
GST_START_TEST (test_jitter)
{
  float *pcm = tone (MS (2000), 0.3, 500);
  Run *run = run_start (NULL);
  fail_unless_equals_int (push_pcm (run, pcm, MS (1000), 0, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_pcm (run, pcm + MS (1000), MS (1000), GST_SECOND + 5 * GST_MSECOND, FALSE),
                          GST_FLOW_OK);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 1);
  fail_unless_equals_uint64 (seg (o, 0)->duration, 2 * GST_SECOND);
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 7: EOS */

GST_START_TEST (test_eos_mid_segment)
{
  /* About 1 s of tone, of a length whose whole-clip padding (to a multiple of 128 samples) adds a frame: that
   * frame can only come at EOS, from g3n_audio_feature_stream_finish. */
  G3nAudioFeatures *fx = g3n_audio_features_new (NULL, NULL);
  gsize n = MS (1000);
  while (g3n_audio_features_n_frames (fx, n) == (int) ((n - 513) / HOP + 1))
    n++;
  g3n_audio_features_free (fx);
  float *pcm = tone (n, 0.3, 440);
  Run *run = run_start (NULL);
  push_all (run, pcm, n, 0);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 1);
  fail_if (seg (o, 0)->ended, "END before EOS");
  guint before = seg (o, 0)->frames->len;
  out_free (o);
  push_eos (run);
  o = parse (run); /* parse checks the order: frames, END, then EOS and nothing after */
  fail_unless (o->eos);
  Seg *s = seg (o, 0);
  fail_unless (s->ended && s->reason == GST_GEMMA3N_SEGMENT_EOS);
  fail_unless (s->frames->len > before, "the tail frames come at EOS");
  fail_unless_equals_uint64 (s->duration, T (n));
  check_segment_frames (s, pcm, 0, n);
  /* The last item is EOS, right after the END. */
  GstMiniObject *last = g_ptr_array_index (run->items, run->items->len - 1);
  GstMiniObject *end = g_ptr_array_index (run->items, run->items->len - 2);
  fail_unless (GST_IS_EVENT (last) && GST_EVENT_TYPE (GST_EVENT (last)) == GST_EVENT_EOS);
  fail_unless (GST_IS_EVENT (end) && gst_gemma3n_segment_event_parse (GST_EVENT (end), NULL, NULL, NULL, NULL, NULL));
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 8: flush */

GST_START_TEST (test_flush)
{
  float *pcm = tone (MS (1500), 0.3, 440);
  Run *run = run_start (NULL);
  push_all (run, pcm, MS (500), 0);
  fail_unless (gst_harness_push_event (run->h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (run->h, gst_event_new_flush_stop (TRUE)));
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (run->h, gst_event_new_segment (&segment)));
  push_all (run, pcm + MS (500), MS (1000), 10 * GST_SECOND);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 2);
  fail_if (seg (o, 0)->ended, "an END for the abandoned segment");
  fail_unless_equals_uint64 (seg (o, 0)->start, 0);
  Seg *s = seg (o, 1);
  fail_unless (s->ended && s->reason == GST_GEMMA3N_SEGMENT_EOS);
  fail_unless (s->index != seg (o, 0)->index);
  fail_unless_equals_uint64 (s->start, 10 * GST_SECOND);
  fail_unless_equals_uint64 (s->duration, GST_SECOND);
  check_segment_frames (s, pcm, MS (500), MS (1000));
  out_free (o);
  run_free (run);
  g_free (pcm);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 9: bad samples, empty buffers */

GST_START_TEST (test_nonfinite_and_empty)
{
  gsize n = MS (1000);
  float *pcm = tone (n, 0.3, 440), *clean = g_memdup2 (pcm, n * sizeof (float));
  for (gsize i = 100; i < 110; i++) /* 10 NaN and an Inf in the first half, 3 NaN in the second */
    pcm[i] = NAN;
  pcm[4000] = INFINITY;
  pcm[12000] = pcm[12001] = pcm[12002] = -NAN;
  for (gsize i = 100; i < 110; i++)
    clean[i] = 0;
  clean[4000] = clean[12000] = clean[12001] = clean[12002] = 0;
  Run *run = run_start ("vad=false");
  fail_unless_equals_int (push_pcm (run, pcm, MS (500), 0, FALSE), GST_FLOW_OK);
  /* An empty buffer (even a mistimed, DISCONT one) changes nothing. */
  fail_unless_equals_int (push_pcm (run, pcm, 0, 77 * GST_SECOND, TRUE), GST_FLOW_OK);
  fail_unless_equals_int (push_pcm (run, pcm + MS (500), MS (500), T (MS (500)), FALSE), GST_FLOW_OK);
  push_eos (run);
  Out *o = parse (run);
  fail_unless_equals_int (o->segs->len, 1);
  Seg *s = seg (o, 0);
  fail_unless_equals_uint64 (s->duration, GST_SECOND);
  for (guint i = 0; i < s->frames->len; i++)
    fail_unless (isfinite (g_array_index (s->frames, float, i)));
  check_segment_frames (s, clean, 0, n);
  fail_unless_equals_int (count_messages (run, GST_MESSAGE_WARNING), 1);
  out_free (o);
  run_free (run);
  g_free (pcm);
  g_free (clean);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 10: caps */

static void
check_refused (const char *props, const char *caps, const char *error_names)
{
  Run *run = run_new (props);
  GstCaps *c = gst_caps_from_string (caps);
  GstPad *sink = gst_element_get_static_pad (run->h->element, "sink");
  /* The template refuses other formats; a rate the model's features are not at, the caps event does. */
  fail_unless (gst_pad_query_accept_caps (sink, c) == (error_names != NULL), "accept-caps of %s", caps);
  gst_object_unref (sink);
  gst_harness_push_event (run->h, gst_event_new_caps (c)); /* a sticky event: stored even when refused */
  gst_caps_unref (c);
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  gst_harness_push_event (run->h, gst_event_new_segment (&segment));
  float pcm[320] = { 0 };
  fail_unless_equals_int (push_pcm (run, pcm, 320, 0, FALSE), GST_FLOW_NOT_NEGOTIATED);
  if (error_names) {
    GstMessage *m = gst_bus_pop_filtered (run->bus, GST_MESSAGE_ERROR);
    fail_unless (m != NULL, "no error message for %s", caps);
    GError *err = NULL;
    gst_message_parse_error (m, &err, NULL);
    fail_unless (strstr (err->message, error_names) != NULL, "'%s' does not name %s", err->message, error_names);
    g_error_free (err);
    gst_message_unref (m);
  }
  run_free (run);
}

GST_START_TEST (test_caps_refused)
{
  check_refused (NULL, "audio/x-raw, format=S16LE, rate=16000, channels=1, layout=interleaved", NULL);
  check_refused (NULL, "audio/x-raw, format=F32LE, rate=44100, channels=1, layout=interleaved", NULL);
  check_refused (NULL, "audio/x-raw, format=F32LE, rate=16000, channels=2, layout=interleaved", NULL);
  /* A model whose features are at 32 kHz: 16 kHz input is not-negotiated, the error names both rates. */
  g_autofree char *dir = g_dir_make_tmp ("test-gst-mel-XXXXXX", NULL);
  g_autofree char *cfg = g_build_filename (dir, "preprocessor_config.json", NULL);
  fail_unless (g_file_set_contents (cfg, "{\"sampling_rate\": 32000}", -1, NULL));
  g_autofree char *props = g_strdup_printf ("model=%s", dir);
  check_refused (props, "audio/x-raw, format=F32LE, rate=16000, channels=1, layout=interleaved", "32000");
  check_refused (props, "audio/x-raw, format=F32LE, rate=16000, channels=1, layout=interleaved", "16000");
  g_unlink (cfg);
  g_rmdir (dir);
}
GST_END_TEST;

/* Only TIME segments: the samples' times are what every output time is made of. */
GST_START_TEST (test_segment_format)
{
  Run *run = run_new (NULL);
  GstCaps *caps = gst_caps_from_string ("audio/x-raw, format=F32LE, rate=16000, channels=1, layout=interleaved");
  gst_harness_push_event (run->h, gst_event_new_caps (caps));
  gst_caps_unref (caps);
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_BYTES);
  gst_harness_push_event (run->h, gst_event_new_segment (&segment));
  float pcm[320] = { 0 };
  fail_if (push_pcm (run, pcm, 320, 0, FALSE) == GST_FLOW_OK);
  GstMessage *m = gst_bus_pop_filtered (run->bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL);
  GError *err = NULL;
  gst_message_parse_error (m, &err, NULL);
  fail_unless (strstr (err->message, "TIME") != NULL, "'%s'", err->message);
  g_error_free (err);
  gst_message_unref (m);
  run_free (run);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 11: model */

GST_START_TEST (test_model_property)
{
  g_autofree char *missing = g_build_filename (data_dir (), "no-such-model", NULL);
  GstElement *el = gst_element_factory_make ("gemma3nmel", NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (el, bus);
  g_object_set (el, "model", missing, NULL);
  fail_unless_equals_int (gst_element_set_state (el, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL);
  GError *err = NULL;
  g_autofree char *debug = NULL;
  gst_message_parse_error (m, &err, &debug);
  fail_unless (strstr (err->message, missing) != NULL, "'%s' does not name %s", err->message, missing);
  g_error_free (err);
  gst_message_unref (m);
  gst_element_set_state (el, GST_STATE_NULL);

  /* A malformed config: refused, naming the file. */
  g_autofree char *dir = g_dir_make_tmp ("test-gst-mel-XXXXXX", NULL);
  g_autofree char *cfg = g_build_filename (dir, "preprocessor_config.json", NULL);
  fail_unless (g_file_set_contents (cfg, "{\"feature_size\": \"many\"}", -1, NULL));
  g_object_set (el, "model", dir, NULL);
  fail_unless_equals_int (gst_element_set_state (el, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
  m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL);
  gst_message_parse_error (m, &err, NULL);
  fail_unless (strstr (err->message, dir) != NULL, "'%s' does not name %s", err->message, dir);
  g_error_free (err);
  gst_message_unref (m);
  gst_element_set_state (el, GST_STATE_NULL);
  g_unlink (cfg);
  g_rmdir (dir);

  g_autofree char *tiny = g_build_filename (data_dir (), "mm-tiny", NULL);
  g_object_set (el, "model", tiny, NULL);
  fail_unless_equals_int (gst_element_set_state (el, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  gst_element_set_state (el, GST_STATE_NULL);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
  gst_object_unref (el);

  /* mm-tiny's preprocessor_config.json: feature_size 128 at 16 kHz, hop 10 ms. */
  g_autofree char *props = g_strdup_printf ("model=%s", tiny);
  Run *run = run_start (props);
  GstCaps *caps = gst_pad_get_current_caps (run->h->sinkpad);
  fail_unless (caps != NULL);
  GstCaps *want = gst_caps_from_string (GST_GEMMA3N_MEL_MEDIA_TYPE ", bins=(int)128, hop=(int)160, rate=(int)16000");
  fail_unless (gst_caps_is_equal (caps, want), "caps %" GST_PTR_FORMAT, caps);
  gst_caps_unref (caps);
  gst_caps_unref (want);
  run_free (run);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 12: latency */

GST_START_TEST (test_latency)
{
  Run *run = run_start (NULL);
  gst_harness_set_upstream_latency (run->h, 20 * GST_MSECOND);
  /* A frame reads 513 samples (frame length 512 + 1): 32.0625 ms at 16 kHz. */
  G3nAudioFeatures *fx = g3n_audio_features_new (NULL, NULL);
  fail_unless_equals_int (g3n_audio_features_window (fx), 513);
  g3n_audio_features_free (fx);
  fail_unless_equals_uint64 (gst_harness_query_latency (run->h), 20 * GST_MSECOND + T (513));
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_pad_peer_query (run->h->sinkpad, q));
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (q, &live, &min, &max);
  fail_unless_equals_uint64 (min, 20 * GST_MSECOND + T (513));
  fail_unless (!GST_CLOCK_TIME_IS_VALID (max) || max >= min);
  gst_query_unref (q);
  run_free (run);
}
GST_END_TEST;

static Suite *
gemma3nmel_suite (void)
{
  Suite *s = suite_create ("gemma3nmel");
  TCase *tc = tcase_create ("general");
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_parity_speech_wav);
  tcase_add_test (tc, test_parity_golden);
  tcase_add_test (tc, test_silence_only);
  tcase_add_test (tc, test_two_segments);
  tcase_add_test (tc, test_min_speech);
  tcase_add_test (tc, test_settings_next_segment);
  tcase_add_test (tc, test_max_segment);
  tcase_add_test (tc, test_discont);
  tcase_add_test (tc, test_upstream_gap);
  tcase_add_test (tc, test_jitter);
  tcase_add_test (tc, test_eos_mid_segment);
  tcase_add_test (tc, test_flush);
  tcase_add_test (tc, test_nonfinite_and_empty);
  tcase_add_test (tc, test_caps_refused);
  tcase_add_test (tc, test_segment_format);
  tcase_add_test (tc, test_model_property);
  tcase_add_test (tc, test_latency);
  return s;
}

GST_CHECK_MAIN (gemma3nmel);
