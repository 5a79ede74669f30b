/* gstgemma3nmel.c — log-mel frames of speech segments: the plugin's segmenter. */

/**
 * SECTION:element-gemma3nmel
 * @title: gemma3nmel
 *
 * Computes Gemma 3n's log-mel features (transformers' Gemma3nAudioFeatureExtractor, bit for bit the frames
 * libgemma3n computes for a whole clip) of the speech in 16 kHz mono float audio, and cuts it into segments,
 * one clip each, for gemma3naudioenc.
 *
 * An energy VAD classifies every 10 ms hop (RMS in dBFS against #GstGemma3nMel:silence-threshold). A segment
 * begins at the first speech hop, with #GstGemma3nMel:pre-roll of the audio before it, and ends after
 * #GstGemma3nMel:pause of silence (kept in the clip), at #GstGemma3nMel:max-segment, at EOS or at a
 * discontinuity. Only segments holding #GstGemma3nMel:min-speech of speech are sent: a custom START event,
 * the frames (a buffer per input buffer, whole frames; the clip's padding frames in buffers of their own with
 * the PADDING flag), then an END event and a "gemma3nmel-segment" element message (index, start, duration,
 * reason). The silence between segments goes downstream as GAP events. See gstgemma3nformat.h.
 *
 * With #GstGemma3nMel:vad disabled all audio is speech: segments are cut only at max-segment, EOS and
 * discontinuities, so a stream shorter than max-segment is one clip with exactly the whole clip's features.
 *
 * Times come from the samples: a buffer without a timestamp continues where the last one ended; a DISCONT
 * buffer, a timestamp more than 10 ms off, or a GAP event from upstream ends the open segment (reason
 * "discont") and starts a new timeline. NaN and Inf samples are replaced by 0 (with one warning per stream).
 * The mel computation is cheap (hundreds of times faster than real time) and runs on the streaming thread.
 * The latency it adds is one feature window (513 samples, 32 ms); note that a segment's first frames are
 * held until it has min-speech of speech.
 *
 * The input must be mono F32LE at the model's feature rate (16 kHz): put audioconvert and audioresample in
 * front of it.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *     gemma3nmel model=/path/to/gemma-3n-E2B-it pause=500 ! fakesink
 * ]| prints a gemma3nmel-segment message for every speech segment of the file.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgemma3nmel.h"

#include <math.h>
#include <string.h>

#include <gst/audio/audio.h>

#include "gstgemma3nelements.h"
#include "gstgemma3nformat.h"

GST_DEBUG_CATEGORY_STATIC (gst_gemma3n_mel_debug);
#define GST_CAT_DEFAULT gst_gemma3n_mel_debug

#define DEFAULT_MODEL NULL
#define DEFAULT_VAD TRUE
#define DEFAULT_SILENCE_THRESHOLD -45.0
#define DEFAULT_PAUSE 600
#define DEFAULT_MAX_SEGMENT 15000
#define DEFAULT_PRE_ROLL 200
#define DEFAULT_MIN_SPEECH 200

#define MAX_PRE_ROLL 1000
/* Input timestamps further than this from where the samples so far end are a discontinuity. */
#define DISCONT_TOLERANCE (10 * GST_MSECOND)

enum {
  PROP_0,
  PROP_MODEL,
  PROP_VAD,
  PROP_SILENCE_THRESHOLD,
  PROP_PAUSE,
  PROP_MAX_SEGMENT,
  PROP_PRE_ROLL,
  PROP_MIN_SPEECH,
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE (
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("audio/x-raw, format = (string) F32LE, rate = (int) 16000, channels = (int) 1, "
                     "layout = (string) interleaved"));

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_GEMMA3N_MEL_CAPS));

G_DEFINE_TYPE (GstGemma3nMel, gst_gemma3n_mel, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE (gemma3nmel, "gemma3nmel", GST_RANK_NONE, GST_TYPE_GEMMA3N_MEL);

/* ---------------------------------------------------------------- time */

/* Stream time of sample k since the base. */
static GstClockTime
sample_time (GstGemma3nMel *self, guint64 k)
{
  return self->base + gst_util_uint64_scale_int_round (k, GST_SECOND, self->rate);
}

static guint64
ms_to_samples (GstGemma3nMel *self, guint ms)
{
  return (guint64) ms * self->rate / 1000;
}

/* The properties' values for the next segment. */
static void
refresh_settings (GstGemma3nMel *self)
{
  GST_OBJECT_LOCK (self);
  self->cur.vad = self->vad;
  self->cur.threshold_db = self->silence_threshold;
  self->cur.pause = ms_to_samples (self, self->pause_ms);
  self->cur.max_length = ms_to_samples (self, self->max_segment_ms);
  self->cur.pre_roll = ms_to_samples (self, self->pre_roll_ms);
  self->cur.min_speech = ms_to_samples (self, self->min_speech_ms);
  GST_OBJECT_UNLOCK (self);
}

/* ---------------------------------------------------------------- output */

static void
keep_flow (GstGemma3nMel *self, GstFlowReturn ret)
{
  if (self->flow == GST_FLOW_OK)
    self->flow = ret;
}

static void
push_event (GstGemma3nMel *self, GstEvent *event)
{
  if (!gst_pad_push_event (self->srcpad, event))
    GST_DEBUG_OBJECT (self, "downstream refused an event");
}

/* GAP for the silence [covered, k): it is in no segment and no longer held as pre-roll. */
static void
gap_until (GstGemma3nMel *self, guint64 k)
{
  if (k <= self->covered)
    return;
  GstClockTime t0 = sample_time (self, self->covered), t1 = sample_time (self, k);
  GST_LOG_OBJECT (self, "gap %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT, GST_TIME_ARGS (t0),
                  GST_TIME_ARGS (t1 - t0));
  push_event (self, gst_event_new_gap (t0, t1 - t0));
  self->covered = k;
}

/* Called by the feature stream with the frames it completes; they wait in self->frames until pushed. */
static void
on_frames (const float *features, const guint8 *mask, int first, int n, gpointer user_data)
{
  GstGemma3nMel *self = user_data;
  if (self->mask->len == 0)
    self->frames_first = first;
  g_array_append_vals (self->frames, features, (guint) n * self->bins);
  g_byte_array_append (self->mask, mask, n);
}

static void
drop_frames (GstGemma3nMel *self)
{
  g_array_set_size (self->frames, 0);
  g_byte_array_set_size (self->mask, 0);
}

/* Frames [i, i + n) of the waiting ones as one buffer, timed by the samples they start at. */
static GstBuffer *
frames_buffer (GstGemma3nMel *self, guint i, guint n, gboolean padding)
{
  gsize bytes = (gsize) n * self->bins * sizeof (float);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, bytes, NULL);
  gst_buffer_fill (buf, 0, &g_array_index (self->frames, float, (gsize) i * self->bins), bytes);
  guint64 frame = (guint64) self->frames_first + i;
  GstClockTime t0 = sample_time (self, self->seg_start + frame * self->hop);
  GstClockTime t1 = sample_time (self, self->seg_start + (frame + n) * self->hop);
  GST_BUFFER_PTS (buf) = t0;
  GST_BUFFER_DURATION (buf) = t1 - t0;
  GST_BUFFER_OFFSET (buf) = frame;
  GST_BUFFER_OFFSET_END (buf) = frame + n;
  if (padding)
    GST_BUFFER_FLAG_SET (buf, GST_GEMMA3N_BUFFER_FLAG_PADDING);
  return buf;
}

/* Pushes the waiting frames of a started segment, one buffer per run of equal mask. */
static void
push_frames (GstGemma3nMel *self)
{
  guint n = self->mask->len;
  for (guint i = 0; i < n;) {
    guint j = i + 1;
    while (j < n && self->mask->data[j] == self->mask->data[i])
      j++;
    keep_flow (self, gst_pad_push (self->srcpad, frames_buffer (self, i, j - i, self->mask->data[i] == 0)));
    i = j;
  }
  self->frames_first += n;
  drop_frames (self);
}

/* ---------------------------------------------------------------- segments */

static gboolean
feed_stream (GstGemma3nMel *self, const float *pcm, gsize n)
{
  GError *error = NULL;
  if (g3n_audio_feature_stream_push (self->stream, pcm, n, &error))
    return TRUE;
  GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot compute the mel features"), ("%s", error->message));
  g_error_free (error);
  keep_flow (self, GST_FLOW_ERROR);
  return FALSE;
}

/* Ends the clip in the feature stream: its padded tail frames join the waiting ones. */
static void
finish_stream (GstGemma3nMel *self)
{
  GError *error = NULL;
  if (!g3n_audio_feature_stream_finish (self->stream, &error)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot finish the mel features"), ("%s", error->message));
    g_error_free (error);
    keep_flow (self, GST_FLOW_ERROR);
  }
}

/* The segment has min-speech of speech: what was held back (the silence before it, START) goes out. */
static void
start_segment (GstGemma3nMel *self)
{
  GST_DEBUG_OBJECT (self, "segment %" G_GUINT64_FORMAT " starts at %" GST_TIME_FORMAT, self->seg_index,
                    GST_TIME_ARGS (sample_time (self, self->seg_start)));
  gap_until (self, self->seg_start);
  push_event (self, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, self->seg_index,
                                                   sample_time (self, self->seg_start), GST_CLOCK_TIME_NONE,
                                                   GST_GEMMA3N_SEGMENT_PAUSE));
  self->started = TRUE;
}

static void
post_segment_message (GstGemma3nMel *self, GstClockTime start, GstClockTime duration, GstGemma3nSegmentEnd reason)
{
  GstStructure *s = gst_structure_new ("gemma3nmel-segment", "index", G_TYPE_UINT64, self->seg_index, "start",
                                       G_TYPE_UINT64, start, "duration", G_TYPE_UINT64, duration, "reason",
                                       G_TYPE_STRING, gst_gemma3n_segment_end_name (reason), NULL);
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

/* Closes the open segment: a started one sends its last frames and END; one without min-speech of speech is
 * dropped, its samples left to the GAPs. */
static void
end_segment (GstGemma3nMel *self, GstGemma3nSegmentEnd reason)
{
  finish_stream (self);
  if (self->started) {
    GstClockTime start = sample_time (self, self->seg_start);
    GstClockTime duration = sample_time (self, self->seg_start + self->seg_len) - start;
    push_frames (self);
    GST_DEBUG_OBJECT (self, "segment %" G_GUINT64_FORMAT " ends (%s) after %" GST_TIME_FORMAT, self->seg_index,
                      gst_gemma3n_segment_end_name (reason), GST_TIME_ARGS (duration));
    push_event (self, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_END, self->seg_index, start, duration,
                                                     reason));
    post_segment_message (self, start, duration, reason);
    self->covered = self->seg_start + self->seg_len;
    self->seg_index++;
  } else {
    GST_DEBUG_OBJECT (self, "discarding %" G_GUINT64_FORMAT " samples with %" G_GUINT64_FORMAT
                      " samples of speech", self->seg_len, self->seg_speech);
    drop_frames (self);
  }
  self->in_segment = self->started = FALSE;
  refresh_settings (self);
}

/* Opens a segment at the hop of n samples about to be added: the pre-roll still held in the ring goes first,
 * as much of it as leaves room for that hop under max-segment. */
static void
begin_segment (GstGemma3nMel *self, guint n)
{
  guint64 now = self->n_samples;
  guint64 room = self->cur.max_length > n ? self->cur.max_length - n : 0;
  guint64 pre = MIN (MIN (self->cur.pre_roll, room), MIN (now - self->covered, (guint64) self->ring_size));
  self->in_segment = TRUE;
  self->started = FALSE;
  self->seg_start = now - pre;
  self->seg_len = pre;
  self->seg_speech = self->seg_silence = 0;
  self->frames_first = 0;
  drop_frames (self);
  /* The ring is circular: its samples [seg_start, now) may wrap around its end. */
  for (guint64 k = self->seg_start; k < now;) {
    guint at = (guint) (k % self->ring_size);
    guint run = (guint) MIN (now - k, (guint64) (self->ring_size - at));
    if (!feed_stream (self, self->ring + at, run))
      return;
    k += run;
  }
  if (!self->cur.vad)
    start_segment (self);
}

/* Adds a hop to the open segment and ends it after a pause. */
static void
extend_segment (GstGemma3nMel *self, const float *pcm, guint n, gboolean speech)
{
  if (!feed_stream (self, pcm, n))
    return;
  self->seg_len += n;
  if (speech) {
    self->seg_speech += n;
    self->seg_silence = 0;
    if (!self->started && self->seg_speech >= self->cur.min_speech)
      start_segment (self);
  } else {
    self->seg_silence += n;
    if (self->seg_silence >= self->cur.pause)
      end_segment (self, GST_GEMMA3N_SEGMENT_PAUSE);
  }
}

static void
ring_write (GstGemma3nMel *self, const float *pcm, guint n)
{
  for (guint i = 0; i < n; i++)
    self->ring[(self->n_samples + i) % self->ring_size] = pcm[i];
}

static gboolean
is_speech (GstGemma3nMel *self, const float *pcm, guint n)
{
  if (!self->cur.vad)
    return TRUE;
  double energy = 0;
  for (guint i = 0; i < n; i++)
    energy += (double) pcm[i] * pcm[i];
  /* 10 log10 of the mean square = 20 log10 of the RMS; silence (0) gives -inf, below any threshold. */
  double db = 10.0 * log10 (energy / n);
  return db > self->cur.threshold_db;
}

/* One VAD hop (a whole one, or the last samples before an end). */
static void
process_hop (GstGemma3nMel *self, const float *pcm, guint n)
{
  gboolean speech = is_speech (self, pcm, n);
  if (self->in_segment && self->seg_len + n > self->cur.max_length)
    end_segment (self, GST_GEMMA3N_SEGMENT_MAX_LENGTH);
  if (!self->in_segment && speech)
    begin_segment (self, n);
  if (self->in_segment)
    extend_segment (self, pcm, n, speech);
  ring_write (self, pcm, n);
  self->n_samples += n;
}

/* Silence older than the pre-roll, or before the open segment, can no longer join a segment: a GAP. */
static void
gap_old_silence (GstGemma3nMel *self)
{
  if (self->in_segment)
    gap_until (self, self->seg_start); /* a segment waiting for min-speech: the silence before it */
  else if (self->n_samples > self->cur.pre_roll)
    gap_until (self, self->n_samples - self->cur.pre_roll);
}

/* Ends everything before an end or a break in the timeline: the last partial hop, the open segment (frames
 * and END), and a GAP for the silence left. */
static void
drain (GstGemma3nMel *self, GstGemma3nSegmentEnd reason)
{
  if (!GST_CLOCK_TIME_IS_VALID (self->base))
    return;
  if (self->hop_fill > 0) {
    process_hop (self, self->hop_buf, self->hop_fill);
    self->hop_fill = 0;
  }
  if (self->in_segment)
    end_segment (self, reason);
  gap_until (self, self->n_samples);
}

/* Forgets the timeline and any open segment without sending anything (start, flush, after a drain). */
static void
reset_timeline (GstGemma3nMel *self)
{
  if (self->in_segment) {
    finish_stream (self);
    drop_frames (self);
    if (self->started)
      self->seg_index++; /* downstream saw its START: the next segment gets a new index */
  }
  self->in_segment = self->started = FALSE;
  self->base = GST_CLOCK_TIME_NONE;
  self->n_samples = self->covered = 0;
  self->hop_fill = 0;
  refresh_settings (self);
}

/* ---------------------------------------------------------------- streaming */

/* Where the next sample's timestamp should be. */
static GstClockTime
expected_time (GstGemma3nMel *self)
{
  return sample_time (self, self->n_samples + self->hop_fill);
}

static gboolean
is_discont (GstGemma3nMel *self, GstBuffer *buf)
{
  if (!GST_CLOCK_TIME_IS_VALID (self->base))
    return FALSE;
  if (GST_BUFFER_FLAG_IS_SET (buf, GST_BUFFER_FLAG_DISCONT))
    return TRUE;
  GstClockTime pts = GST_BUFFER_PTS (buf), expected = expected_time (self);
  if (!GST_CLOCK_TIME_IS_VALID (pts))
    return FALSE;
  GstClockTimeDiff diff = GST_CLOCK_DIFF (expected, pts);
  return ABS (diff) > (GstClockTimeDiff) DISCONT_TOLERANCE;
}

/* Replaces NaN and Inf by 0 (in a copy) and warns once per stream. Returns the samples to use. */
static const float *
sanitize (GstGemma3nMel *self, GstBuffer *buf, const float *pcm, gsize n, float **copy)
{
  gsize bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += !isfinite (pcm[i]);
  if (bad == 0)
    return pcm;
  *copy = g_memdup2 (pcm, n * sizeof (float));
  for (gsize i = 0; i < n; i++)
    if (!isfinite ((*copy)[i]))
      (*copy)[i] = 0.0f;
  if (!self->warned_nonfinite) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("The audio has non-finite samples (NaN or Inf)"),
                         ("%" G_GSIZE_FORMAT " of the %" G_GSIZE_FORMAT " samples of the buffer at %"
                          GST_TIME_FORMAT " replaced by 0; later ones are replaced without warning",
                          bad, n, GST_TIME_ARGS (GST_BUFFER_PTS (buf))));
    self->warned_nonfinite = TRUE;
  }
  return *copy;
}

static void
process_samples (GstGemma3nMel *self, const float *pcm, gsize n)
{
  for (gsize i = 0; i < n && self->flow == GST_FLOW_OK;) {
    guint take = (guint) MIN ((gsize) (self->hop - self->hop_fill), n - i);
    memcpy (self->hop_buf + self->hop_fill, pcm + i, take * sizeof (float));
    self->hop_fill += take;
    i += take;
    if (self->hop_fill == (guint) self->hop) {
      process_hop (self, self->hop_buf, self->hop);
      self->hop_fill = 0;
    }
  }
}

static GstFlowReturn
gst_gemma3n_mel_chain (GstPad *pad, GstObject *parent, GstBuffer *buf)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (parent);
  if (!self->have_caps) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("No caps before the first buffer"), (NULL));
    gst_buffer_unref (buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstMapInfo map;
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot read an input buffer"), (NULL));
    gst_buffer_unref (buf);
    return GST_FLOW_ERROR;
  }
  gsize n = map.size / sizeof (float);
  self->flow = GST_FLOW_OK;
  if (n > 0) {
    if (is_discont (self, buf)) {
      GST_DEBUG_OBJECT (self, "discontinuity at %" GST_TIME_FORMAT " (expected %" GST_TIME_FORMAT ")",
                        GST_TIME_ARGS (GST_BUFFER_PTS (buf)), GST_TIME_ARGS (expected_time (self)));
      drain (self, GST_GEMMA3N_SEGMENT_DISCONT);
      reset_timeline (self);
    }
    if (!GST_CLOCK_TIME_IS_VALID (self->base)) {
      GstClockTime pts = GST_BUFFER_PTS (buf);
      self->base = GST_CLOCK_TIME_IS_VALID (pts) ? pts : self->segment.start;
    }
    if (!self->in_segment)
      refresh_settings (self);
    float *copy = NULL;
    const float *pcm = sanitize (self, buf, (const float *) map.data, n, &copy);
    process_samples (self, pcm, n);
    g_free (copy);
    if (self->in_segment && self->started)
      push_frames (self);
    gap_old_silence (self);
  }
  gst_buffer_unmap (buf, &map);
  gst_buffer_unref (buf);
  return self->flow;
}

/* ---------------------------------------------------------------- events and queries */

static gboolean
set_input_caps (GstGemma3nMel *self, GstCaps *caps)
{
  GstAudioInfo info;
  if (!gst_audio_info_from_caps (&info, caps)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Invalid input caps"), ("%" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  if (GST_AUDIO_INFO_RATE (&info) != self->rate) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
                       ("The input rate %d Hz is not the model's feature rate %d Hz",
                        GST_AUDIO_INFO_RATE (&info), self->rate),
                       ("put audioresample in front of gemma3nmel"));
    return FALSE;
  }
  GstCaps *out = gst_caps_new_simple (GST_GEMMA3N_MEL_MEDIA_TYPE, "bins", G_TYPE_INT, self->bins, "hop",
                                      G_TYPE_INT, self->hop, "rate", G_TYPE_INT, self->rate, NULL);
  gboolean ok = gst_pad_push_event (self->srcpad, gst_event_new_caps (out));
  gst_caps_unref (out);
  self->have_caps = ok;
  return ok;
}

static gboolean
gst_gemma3n_mel_sink_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (parent);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      gboolean ok = set_input_caps (self, caps);
      gst_event_unref (event);
      return ok;
    }
    case GST_EVENT_SEGMENT: {
      const GstSegment *segment;
      gst_event_parse_segment (event, &segment);
      if (segment->format != GST_FORMAT_TIME) {
        GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Only TIME segments are supported"),
                           ("got a segment in %s", gst_format_get_name (segment->format)));
        gst_event_unref (event);
        return FALSE;
      }
      gst_segment_copy_into (segment, &self->segment);
      break;
    }
    case GST_EVENT_STREAM_START:
      self->warned_nonfinite = FALSE;
      break;
    case GST_EVENT_GAP:
      /* No samples for a while: what came before ends here, the next buffer starts a new timeline. */
      self->flow = GST_FLOW_OK;
      drain (self, GST_GEMMA3N_SEGMENT_DISCONT);
      reset_timeline (self);
      break;
    case GST_EVENT_EOS:
      self->flow = GST_FLOW_OK;
      drain (self, GST_GEMMA3N_SEGMENT_EOS);
      reset_timeline (self);
      break;
    case GST_EVENT_FLUSH_STOP:
      reset_timeline (self);
      break;
    default:
      break;
  }
  return gst_pad_event_default (pad, parent, event);
}

/* Every frame reads `window` samples: that much audio is held before the frame can be computed. */
static gboolean
gst_gemma3n_mel_src_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (parent);
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return gst_pad_query_default (pad, parent, query);
  if (!gst_pad_peer_query (self->sinkpad, query))
    return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (query, &live, &min, &max);
  GstClockTime window = gst_util_uint64_scale_int_ceil (self->window, GST_SECOND, self->rate ? self->rate : 16000);
  min += window;
  if (GST_CLOCK_TIME_IS_VALID (max))
    max += window;
  GST_DEBUG_OBJECT (self, "latency: live %d, min %" GST_TIME_FORMAT ", max %" GST_TIME_FORMAT, live,
                    GST_TIME_ARGS (min), GST_TIME_ARGS (max));
  gst_query_set_latency (query, live, min, max);
  return TRUE;
}

/* ---------------------------------------------------------------- state */

static void
free_features (GstGemma3nMel *self)
{
  g_clear_pointer (&self->stream, g3n_audio_feature_stream_free);
  g_clear_pointer (&self->fx, g3n_audio_features_free);
  g_clear_pointer (&self->hop_buf, g_free);
  g_clear_pointer (&self->ring, g_free);
}

static gboolean
load_features (GstGemma3nMel *self)
{
  GST_OBJECT_LOCK (self);
  g_autofree char *path = g_strdup (self->model);
  GST_OBJECT_UNLOCK (self);
  GError *error = NULL;
  self->fx = path ? g3n_audio_features_new_from_file (path, &error) : g3n_audio_features_new (NULL, &error);
  if (!self->fx) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
                       ("Cannot read the audio feature settings of model '%s'", path ? path : "(defaults)"),
                       ("%s", error->message));
    g_error_free (error);
    free_features (self);
    return FALSE;
  }
  self->rate = g3n_audio_features_rate (self->fx);
  self->bins = g3n_audio_features_size (self->fx);
  self->hop = g3n_audio_features_hop (self->fx);
  self->window = g3n_audio_features_window (self->fx);
  self->stream = g3n_audio_feature_stream_new (self->fx, on_frames, self);
  self->hop_buf = g_new0 (float, self->hop);
  self->ring_size = (guint) MAX (ms_to_samples (self, MAX_PRE_ROLL), 1);
  self->ring = g_new0 (float, self->ring_size);
  GST_INFO_OBJECT (self, "features of %s: %d bins, hop %d, window %d at %d Hz", path ? path : "(defaults)",
                   self->bins, self->hop, self->window, self->rate);
  return TRUE;
}

static GstStateChangeReturn
gst_gemma3n_mel_change_state (GstElement *element, GstStateChange transition)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (element);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!load_features (self))
        return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      self->have_caps = FALSE;
      self->warned_nonfinite = FALSE;
      self->seg_index = 0;
      gst_segment_init (&self->segment, GST_FORMAT_TIME);
      reset_timeline (self);
      break;
    default:
      break;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS (gst_gemma3n_mel_parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      reset_timeline (self);
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      free_features (self);
      break;
    default:
      break;
  }
  return ret;
}

/* ---------------------------------------------------------------- properties */

static void
gst_gemma3n_mel_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (object);
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_free (self->model);
      self->model = g_value_dup_string (value);
      break;
    case PROP_VAD:
      self->vad = g_value_get_boolean (value);
      break;
    case PROP_SILENCE_THRESHOLD:
      self->silence_threshold = g_value_get_double (value);
      break;
    case PROP_PAUSE:
      self->pause_ms = g_value_get_uint (value);
      break;
    case PROP_MAX_SEGMENT:
      self->max_segment_ms = g_value_get_uint (value);
      break;
    case PROP_PRE_ROLL:
      self->pre_roll_ms = g_value_get_uint (value);
      break;
    case PROP_MIN_SPEECH:
      self->min_speech_ms = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_gemma3n_mel_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (object);
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model);
      break;
    case PROP_VAD:
      g_value_set_boolean (value, self->vad);
      break;
    case PROP_SILENCE_THRESHOLD:
      g_value_set_double (value, self->silence_threshold);
      break;
    case PROP_PAUSE:
      g_value_set_uint (value, self->pause_ms);
      break;
    case PROP_MAX_SEGMENT:
      g_value_set_uint (value, self->max_segment_ms);
      break;
    case PROP_PRE_ROLL:
      g_value_set_uint (value, self->pre_roll_ms);
      break;
    case PROP_MIN_SPEECH:
      g_value_set_uint (value, self->min_speech_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_gemma3n_mel_finalize (GObject *object)
{
  GstGemma3nMel *self = GST_GEMMA3N_MEL (object);
  free_features (self);
  g_free (self->model);
  g_array_unref (self->frames);
  g_byte_array_unref (self->mask);
  G_OBJECT_CLASS (gst_gemma3n_mel_parent_class)->finalize (object);
}

static void
gst_gemma3n_mel_class_init (GstGemma3nMelClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  const GParamFlags flags = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;

  gobject_class->set_property = gst_gemma3n_mel_set_property;
  gobject_class->get_property = gst_gemma3n_mel_get_property;
  gobject_class->finalize = gst_gemma3n_mel_finalize;

  g_object_class_install_property (
      gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
                           "Checkpoint folder whose preprocessor_config.json sets the features (only that file "
                           "is read; NULL: Gemma 3n's defaults)",
                           DEFAULT_MODEL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (
      gobject_class, PROP_VAD,
      g_param_spec_boolean ("vad", "VAD",
                            "Send only speech, cut at pauses (FALSE: all audio is speech, cut only at "
                            "max-segment, EOS and discontinuities)",
                            DEFAULT_VAD, flags));
  g_object_class_install_property (
      gobject_class, PROP_SILENCE_THRESHOLD,
      g_param_spec_double ("silence-threshold", "Silence threshold",
                           "A 10 ms hop is speech when its RMS is above this (dBFS)", -120.0, 0.0,
                           DEFAULT_SILENCE_THRESHOLD, flags));
  g_object_class_install_property (
      gobject_class, PROP_PAUSE,
      g_param_spec_uint ("pause", "Pause", "Silence that ends a segment (ms; kept in the segment)", 0, 10000,
                         DEFAULT_PAUSE, flags));
  g_object_class_install_property (
      gobject_class, PROP_MAX_SEGMENT,
      g_param_spec_uint ("max-segment", "Maximum segment",
                         "Longest segment (ms); longer speech goes on in a new segment (30 s: one clip's most)",
                         1000, 30000, DEFAULT_MAX_SEGMENT, flags));
  g_object_class_install_property (
      gobject_class, PROP_PRE_ROLL,
      g_param_spec_uint ("pre-roll", "Pre-roll", "Audio before the first speech hop included in a segment (ms)", 0,
                         MAX_PRE_ROLL, DEFAULT_PRE_ROLL, flags));
  g_object_class_install_property (
      gobject_class, PROP_MIN_SPEECH,
      g_param_spec_uint ("min-speech", "Minimum speech",
                         "Speech a segment needs to be sent (ms); shorter ones (clicks) are dropped as silence",
                         0, 5000, DEFAULT_MIN_SPEECH, flags));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "Gemma 3n log-mel segmenter", "Filter/Analyzer/Audio",
                                         "Cuts speech into segments and computes Gemma 3n's log-mel features of "
                                         "each",
                                         "gst-gemma3n developers");
  element_class->change_state = GST_DEBUG_FUNCPTR (gst_gemma3n_mel_change_state);

  GST_DEBUG_CATEGORY_INIT (gst_gemma3n_mel_debug, "gemma3nmel", 0, "Gemma 3n log-mel segmenter");
}

static void
gst_gemma3n_mel_init (GstGemma3nMel *self)
{
  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad, GST_DEBUG_FUNCPTR (gst_gemma3n_mel_chain));
  gst_pad_set_event_function (self->sinkpad, GST_DEBUG_FUNCPTR (gst_gemma3n_mel_sink_event));
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_set_query_function (self->srcpad, GST_DEBUG_FUNCPTR (gst_gemma3n_mel_src_query));
  gst_pad_use_fixed_caps (self->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);

  self->model = DEFAULT_MODEL;
  self->vad = DEFAULT_VAD;
  self->silence_threshold = DEFAULT_SILENCE_THRESHOLD;
  self->pause_ms = DEFAULT_PAUSE;
  self->max_segment_ms = DEFAULT_MAX_SEGMENT;
  self->pre_roll_ms = DEFAULT_PRE_ROLL;
  self->min_speech_ms = DEFAULT_MIN_SPEECH;
  self->rate = g3n_audio_feature_default_params ().sampling_rate;
  self->base = GST_CLOCK_TIME_NONE;
  self->frames = g_array_new (FALSE, FALSE, sizeof (float));
  self->mask = g_byte_array_new ();
}
