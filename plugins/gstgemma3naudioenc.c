/* gstgemma3naudioenc.c — gemma3naudioenc: Gemma 3n's USM audio encoder, streaming, as a pipeline element. */

/**
 * SECTION:element-gemma3naudioenc
 * @title: gemma3naudioenc
 * @see_also: gemma3nmel, gemma3ndecoder
 *
 * Runs Gemma 3n's audio tower (the USM conformer and embed_audio) on the log-mel frames of speech segments
 * and sends each audio soft token downstream as soon as it is final: token i covers feature frames
 * [16i, 16i + 16) (160 ms at a 10 ms hop) and is final once frame 16i + 6 exists, in batches of
 * #GstGemma3nAudioEnc:batch-rows sub-sampled rows. The tokens are the ones the model gives the whole
 * clip, whatever the input's buffer sizes; padding tokens carry the audio padding embedding, as the model
 * scatters them into a prompt.
 *
 * Each speech segment (between the START and END events of gemma3nmel) is one clip; input without those
 * events is one clip from its first buffer to EOS. Output buffers hold whole tokens ([n, width] floats),
 * timestamped with the span of the audio they encode.
 *
 * The model runs on the element's own thread (a task on the source pad), never on the upstream streaming
 * thread. From a file the input waits while more than #GstGemma3nAudioEnc:max-backlog of audio is queued;
 * from a live source nothing waits: when the encoder falls that far behind, the oldest speech segments it
 * has not begun are dropped (sent on as GAP events) and a warning says how much.
 *
 * Latency: upstream's plus what the encoder holds back, (batch-rows x 4 + 6) feature frames (540 ms at the
 * defaults): a token waits for 6 frames of look-ahead, and rows go through the conformer in batches.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample !
 *     gemma3nmel model=/models/gemma-3n-E2B-it ! gemma3naudioenc model=/models/gemma-3n-E2B-it ! fakesink
 * ]| Encodes the speech of a file into audio soft tokens.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgemma3naudioenc.h"

#include "gemma3n.h"
#include "gstgemma3nelements.h"
#include "gstgemma3nformat.h"
#include "gstgemma3nqueue.h"
#include "gstgemma3nregistry.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_gemma3n_audio_enc_debug);
#define GST_CAT_DEFAULT gst_gemma3n_audio_enc_debug

#define DEFAULT_MODEL NULL
#define DEFAULT_THREADS 0
#define DEFAULT_BATCH_ROWS 12
#define DEFAULT_MAX_BACKLOG 10000

#define MAX_THREADS 1024
#define MAX_BATCH_ROWS 64
#define MAX_MAX_BACKLOG (3600 * 1000)

/* The tower's geometry: two stride-2 convolutions make one sub-sampled row of 4 feature frames, and the
 * convolutions read LOOKAHEAD_FRAMES frames past a row before it is final. */
#define FRAMES_PER_ROW 4
#define LOOKAHEAD_FRAMES 6

enum {
  PROP_0,
  PROP_MODEL,
  PROP_THREADS,
  PROP_BATCH_ROWS,
  PROP_MAX_BACKLOG,
};

struct _GstGemma3nAudioEnc {
  GstElement parent;
  GstPad *sinkpad, *srcpad;

  /* properties, under the object lock */
  gchar *model_path;
  gint threads;
  gint batch_rows;
  guint max_backlog; /* ms */

  /* from NULL→READY to READY→NULL */
  gchar *open_path;         /* the folder the model below came from */
  G3nModel *model;
  G3nAudioEncoder *encoder;
  G3nAudioFeatures *features;
  G3nAudioStream *stream;
  float *padding_embedding; /* [n_embd]: what padding tokens become */
  gint n_features, n_embd, frames_per_token;
  GstGemma3nQueue *queue;
  GCancellable *cancellable;

  /* streaming thread */
  gboolean upstream_live;
  gboolean sink_caps_ok;

  /* under the object lock: OK while the worker runs, else why it stopped (what chain returns) */
  GstFlowReturn srcresult;

  /* the worker (the source pad's task) */
  gint bins, hop, rate;     /* of the mel caps it took out of the queue */
  gboolean in_clip, clip_has_frames;
  GstClockTime clip_start;  /* stream time of the clip's first frame, or NONE */
  GstClockTime clip_end;    /* end of the segment when known, or NONE */
  GArray *pending;          /* floats of the tokens the current call made final */
  gint pending_first, pending_n;
  gboolean error_posted;
};

G_DEFINE_TYPE_WITH_CODE (GstGemma3nAudioEnc, gst_gemma3n_audio_enc, GST_TYPE_ELEMENT,
                         GST_DEBUG_CATEGORY_INIT (gst_gemma3n_audio_enc_debug, "gemma3naudioenc", 0,
                                                  "Gemma 3n streaming audio encoder"));
GST_ELEMENT_REGISTER_DEFINE (gemma3naudioenc, "gemma3naudioenc", GST_RANK_NONE, GST_TYPE_GEMMA3N_AUDIO_ENC);

static GstStaticPadTemplate sink_template
    = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_GEMMA3N_MEL_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                                                                    GST_STATIC_CAPS (GST_GEMMA3N_AUDIO_EMBEDDINGS_CAPS));

/* ---------------------------------------------------------------- the worker's result */

static GstFlowReturn
get_srcresult (GstGemma3nAudioEnc *self)
{
  GST_OBJECT_LOCK (self);
  GstFlowReturn ret = self->srcresult;
  GST_OBJECT_UNLOCK (self);
  return ret;
}

static void
set_srcresult (GstGemma3nAudioEnc *self, GstFlowReturn ret)
{
  GST_OBJECT_LOCK (self);
  self->srcresult = ret;
  GST_OBJECT_UNLOCK (self);
}

/* ---------------------------------------------------------------- token output */

/* The tokens callback of the stream: runs inside push_features/finish on the worker; collects what one
 * call made final, so that it goes downstream as one buffer. */
static void
collect_tokens (const float *tower, const guint8 *tower_mask, const float *embeds, int first, int n,
                gpointer user_data)
{
  (void) tower;
  GstGemma3nAudioEnc *self = user_data;
  if (self->pending_n == 0)
    self->pending_first = first;
  for (int i = 0; i < n; i++) {
    /* embed_audio of a padding token is not what the model uses: it scatters the padding embedding there */
    const float *row = tower_mask[i] ? self->padding_embedding : embeds + (gsize) i * self->n_embd;
    g_array_append_vals (self->pending, row, self->n_embd);
  }
  self->pending_n += n;
}

static void
drop_pending (GstGemma3nAudioEnc *self)
{
  g_array_set_size (self->pending, 0);
  self->pending_n = 0;
}

/* Start of token `index` of the clip, from the caps' hop and rate (no rounding drift across a long clip). */
static GstClockTime
token_time (GstGemma3nAudioEnc *self, gint index)
{
  if (!GST_CLOCK_TIME_IS_VALID (self->clip_start) || self->rate <= 0)
    return GST_CLOCK_TIME_NONE;
  guint64 samples = (guint64) index * self->frames_per_token * self->hop;
  return self->clip_start + gst_util_uint64_scale (samples, GST_SECOND, self->rate);
}

static GstFlowReturn
push_pending (GstGemma3nAudioEnc *self)
{
  if (self->pending_n == 0)
    return GST_FLOW_OK;
  GstBuffer *buf = gst_buffer_new_memdup (self->pending->data, self->pending->len * sizeof (float));
  GstClockTime start = token_time (self, self->pending_first);
  GstClockTime end = token_time (self, self->pending_first + self->pending_n);
  /* the last token's frames reach past the speech: its span stops at the segment's end */
  if (GST_CLOCK_TIME_IS_VALID (end) && GST_CLOCK_TIME_IS_VALID (self->clip_end))
    end = CLAMP (self->clip_end, start, end);
  GST_BUFFER_PTS (buf) = start;
  GST_BUFFER_DURATION (buf) = GST_CLOCK_TIME_IS_VALID (start) ? end - start : GST_CLOCK_TIME_NONE;
  GST_LOG_OBJECT (self, "tokens %d..%d at %" GST_TIME_FORMAT, self->pending_first,
                  self->pending_first + self->pending_n, GST_TIME_ARGS (start));
  drop_pending (self);
  return gst_pad_push (self->srcpad, buf);
}

/* ---------------------------------------------------------------- clips (worker) */

/* A failed push or finish: the stream has abandoned the clip. Cancellation (a flush, a stop) is not an
 * error. */
static GstFlowReturn
compute_failed (GstGemma3nAudioEnc *self, GError *error)
{
  drop_pending (self);
  self->in_clip = FALSE;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
    GST_DEBUG_OBJECT (self, "encoding cancelled");
    g_error_free (error);
    return GST_FLOW_FLUSHING;
  }
  GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Audio encoding failed: %s", error->message), (NULL));
  self->error_posted = TRUE;
  g_error_free (error);
  return GST_FLOW_ERROR;
}

static void
open_clip (GstGemma3nAudioEnc *self, GstClockTime start, GstClockTime duration)
{
  GST_OBJECT_LOCK (self);
  gint rows = self->batch_rows, threads = self->threads;
  GST_OBJECT_UNLOCK (self);
  g3n_audio_stream_reset (self->stream);
  g3n_audio_stream_set_min_rows (self->stream, rows);
  G3nComputeParams compute = { .n_threads = threads, .cancellable = self->cancellable };
  g3n_audio_stream_set_compute (self->stream, &compute);
  self->in_clip = TRUE;
  self->clip_has_frames = FALSE;
  self->clip_start = start;
  self->clip_end = GST_CLOCK_TIME_IS_VALID (start) && GST_CLOCK_TIME_IS_VALID (duration) ? start + duration
                                                                                         : GST_CLOCK_TIME_NONE;
  GST_DEBUG_OBJECT (self, "clip opened at %" GST_TIME_FORMAT " (%d rows a batch, %d threads)",
                    GST_TIME_ARGS (start), rows, threads);
}

/* Ends the open clip: its remaining tokens go downstream. A clip without frames just closes. */
static GstFlowReturn
close_clip (GstGemma3nAudioEnc *self)
{
  if (!self->in_clip)
    return GST_FLOW_OK;
  self->in_clip = FALSE;
  if (!self->clip_has_frames) {
    g3n_audio_stream_reset (self->stream);
    return GST_FLOW_OK;
  }
  GError *error = NULL;
  if (!g3n_audio_stream_finish (self->stream, &error))
    return compute_failed (self, error);
  return push_pending (self);
}

static GstFlowReturn
encode_buffer (GstGemma3nAudioEnc *self, GstBuffer *buf)
{
  if (!self->in_clip) /* input without segment events: the first buffer opens the clip, EOS closes it */
    open_clip (self, GST_BUFFER_PTS (buf), GST_CLOCK_TIME_NONE);
  if (self->bins <= 0) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("A mel buffer came before the mel caps."), (NULL));
    self->error_posted = TRUE;
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstMapInfo map;
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, RESOURCE, READ, ("Could not map a mel buffer."), (NULL));
    self->error_posted = TRUE;
    return GST_FLOW_ERROR;
  }
  gsize frame_bytes = (gsize) self->bins * sizeof (float);
  if (map.size % frame_bytes != 0) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT,
                       ("A mel buffer of %" G_GSIZE_FORMAT " bytes is not a whole number of %d-bin frames.",
                        map.size, self->bins),
                       (NULL));
    gst_buffer_unmap (buf, &map);
    self->error_posted = TRUE;
    return GST_FLOW_ERROR;
  }
  int n = map.size / frame_bytes;
  /* padding frames (past the clip's last sample) go in with mask 0, as the processor masks them */
  g_autofree guint8 *mask = GST_BUFFER_FLAG_IS_SET (buf, GST_GEMMA3N_BUFFER_FLAG_PADDING) ? g_malloc0 (n) : NULL;
  GError *error = NULL;
  gboolean ok = g3n_audio_stream_push_features (self->stream, (const float *) map.data, mask, n, &error);
  gst_buffer_unmap (buf, &map);
  if (!ok)
    return compute_failed (self, error);
  self->clip_has_frames |= n > 0;
  return push_pending (self);
}

/* ---------------------------------------------------------------- events (worker) */

static GstFlowReturn
forward (GstGemma3nAudioEnc *self, GstEvent *event)
{
  gst_pad_push_event (self->srcpad, event);
  return GST_FLOW_OK;
}

static GstCaps *embeddings_caps (GstGemma3nAudioEnc *self);

/* The mel caps (checked on the streaming thread) become the fixed embeddings caps. */
static GstFlowReturn
take_mel_caps (GstGemma3nAudioEnc *self, GstEvent *event)
{
  GstCaps *caps;
  gst_event_parse_caps (event, &caps);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  gst_structure_get_int (s, "bins", &self->bins);
  gst_structure_get_int (s, "hop", &self->hop);
  gst_structure_get_int (s, "rate", &self->rate);
  gst_event_unref (event);
  GstCaps *out = embeddings_caps (self);
  GstCaps *current = gst_pad_get_current_caps (self->srcpad);
  gboolean same = current && gst_caps_is_equal (current, out);
  gboolean ok = same || gst_pad_push_event (self->srcpad, gst_event_new_caps (out));
  if (current)
    gst_caps_unref (current);
  gst_caps_unref (out);
  return ok ? GST_FLOW_OK : GST_FLOW_NOT_NEGOTIATED;
}

static GstFlowReturn
handle_event (GstGemma3nAudioEnc *self, GstEvent *event)
{
  GstGemma3nSegmentEdge edge;
  GstClockTime start, duration;
  GstFlowReturn ret;
  if (gst_gemma3n_segment_event_parse (event, &edge, NULL, &start, &duration, NULL)) {
    if (edge == GST_GEMMA3N_SEGMENT_START) {
      ret = close_clip (self); /* a START while a clip is open ends that clip here */
      open_clip (self, start, duration);
    } else {
      if (self->in_clip && GST_CLOCK_TIME_IS_VALID (start) && GST_CLOCK_TIME_IS_VALID (duration))
        self->clip_end = start + duration; /* END knows the segment's length; START may not have */
      ret = close_clip (self);
    }
    if (ret != GST_FLOW_OK) {
      gst_event_unref (event);
      return ret;
    }
    return forward (self, event);
  }
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:
      return take_mel_caps (self, event);
    case GST_EVENT_EOS:
      ret = close_clip (self);
      if (ret != GST_FLOW_OK) {
        gst_event_unref (event);
        return ret;
      }
      forward (self, event);
      return GST_FLOW_EOS; /* nothing more until a flush or a restart */
    default:
      return forward (self, event);
  }
}

/* ---------------------------------------------------------------- the worker task */

static void
worker_reset (GstGemma3nAudioEnc *self)
{
  g3n_audio_stream_reset (self->stream);
  drop_pending (self);
  self->in_clip = FALSE;
  self->clip_start = self->clip_end = GST_CLOCK_TIME_NONE;
  self->error_posted = FALSE;
}

/* The worker stops on anything but OK; what the streaming thread then gets, as GstQueue does. */
static void
worker_stop (GstGemma3nAudioEnc *self, GstFlowReturn ret)
{
  GST_DEBUG_OBJECT (self, "worker stops: %s", gst_flow_get_name (ret));
  GST_OBJECT_LOCK (self);
  if (self->srcresult == GST_FLOW_OK)
    self->srcresult = ret;
  GST_OBJECT_UNLOCK (self);
  gst_gemma3n_queue_set_flushing (self->queue, TRUE); /* a streaming thread waiting for room returns */
  gst_pad_pause_task (self->srcpad);
  gst_gemma3n_worker_end_on_fatal (GST_ELEMENT_CAST (self), self->srcpad, ret, self->error_posted);
}

static void
worker_loop (gpointer user_data)
{
  GstGemma3nAudioEnc *self = user_data;
  GstMiniObject *item = gst_gemma3n_queue_pop (self->queue, NULL);
  if (!item) {
    worker_stop (self, GST_FLOW_FLUSHING);
    return;
  }
  GstFlowReturn ret;
  if (GST_IS_BUFFER (item)) {
    ret = encode_buffer (self, GST_BUFFER_CAST (item));
    gst_buffer_unref (GST_BUFFER_CAST (item));
  } else {
    ret = handle_event (self, GST_EVENT_CAST (item));
  }
  gst_gemma3n_queue_done (self->queue);
  if (ret != GST_FLOW_OK)
    worker_stop (self, ret);
}

static gboolean
worker_start (GstGemma3nAudioEnc *self)
{
  worker_reset (self);
  g_cancellable_reset (self->cancellable);
  gst_gemma3n_queue_set_flushing (self->queue, FALSE);
  set_srcresult (self, GST_FLOW_OK);
  return gst_pad_start_task (self->srcpad, worker_loop, self, NULL);
}

/* Unblocks the worker wherever it is (waiting for input, computing) and the streaming thread (waiting for
 * room); the caller then pauses or stops the task. */
static void
worker_interrupt (GstGemma3nAudioEnc *self)
{
  set_srcresult (self, GST_FLOW_FLUSHING);
  gst_gemma3n_queue_set_flushing (self->queue, TRUE);
  g_cancellable_cancel (self->cancellable);
}

static gboolean
src_activate_mode (GstPad *pad, GstObject *parent, GstPadMode mode, gboolean active)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (parent);
  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  if (active)
    return worker_start (self);
  worker_interrupt (self);
  return gst_pad_stop_task (pad);
}

/* ---------------------------------------------------------------- streaming thread */

/* Queues an item for the worker; FALSE when the worker is not taking any (flushing, stopped). */
static gboolean
queue_item (GstGemma3nAudioEnc *self, GstMiniObject *item)
{
  return gst_gemma3n_queue_push_reporting (self->queue, item, NULL, self->upstream_live, GST_ELEMENT_CAST (self));
}

static GstFlowReturn
sink_chain (GstPad *pad, GstObject *parent, GstBuffer *buf)
{
  (void) pad;
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (parent);
  GstFlowReturn ret = get_srcresult (self);
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  if (!self->sink_caps_ok) {
    gst_buffer_unref (buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (queue_item (self, GST_MINI_OBJECT_CAST (buf)))
    return GST_FLOW_OK;
  ret = get_srcresult (self);
  return ret != GST_FLOW_OK ? ret : GST_FLOW_FLUSHING;
}

static gboolean
accept_mel_caps (GstGemma3nAudioEnc *self, GstCaps *caps)
{
  GstStructure *s = gst_caps_get_structure (caps, 0);
  gint bins, hop, rate;
  if (!gst_structure_get_int (s, "bins", &bins) || !gst_structure_get_int (s, "hop", &hop)
      || !gst_structure_get_int (s, "rate", &rate)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Mel caps without bins, hop or rate: %" GST_PTR_FORMAT, caps),
                       (NULL));
    return FALSE;
  }
  if (bins != self->n_features) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
                       ("The mel frames have %d bins, but the audio tower of %s expects %d.", bins,
                        self->open_path, self->n_features),
                       (NULL));
    return FALSE;
  }
  return TRUE;
}

static gboolean
sink_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (parent);
  gboolean ok;
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_START:
      ok = gst_pad_push_event (self->srcpad, event); /* first, so that a worker pushing downstream returns */
      worker_interrupt (self);
      gst_pad_pause_task (self->srcpad);
      return ok;
    case GST_EVENT_FLUSH_STOP:
      ok = gst_pad_push_event (self->srcpad, event);
      ok &= worker_start (self);
      /* the worker skips the mel caps when they are unchanged */
      gst_gemma3n_queue_requeue_sticky (self->queue, self->sinkpad, self->srcpad, NULL, self->upstream_live,
                                        GST_ELEMENT_CAST (self));
      return ok;
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      self->sink_caps_ok = accept_mel_caps (self, caps);
      if (!self->sink_caps_ok) {
        gst_event_unref (event);
        return FALSE;
      }
      self->upstream_live = gst_gemma3n_upstream_is_live (self->sinkpad);
      GST_DEBUG_OBJECT (self, "upstream is %s", self->upstream_live ? "live" : "not live");
      return queue_item (self, GST_MINI_OBJECT_CAST (event));
    }
    case GST_EVENT_STREAM_START:
      self->upstream_live = gst_gemma3n_upstream_is_live (self->sinkpad);
      return queue_item (self, GST_MINI_OBJECT_CAST (event));
    default:
      if (GST_EVENT_IS_SERIALIZED (event))
        return queue_item (self, GST_MINI_OBJECT_CAST (event));
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
sink_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (parent);
  /* a serialized query (drain, allocation) comes after the data queued before it */
  if (GST_QUERY_IS_SERIALIZED (query) && (!self->queue || !gst_gemma3n_queue_wait_empty (self->queue)))
    return FALSE;
  return gst_pad_query_default (pad, parent, query);
}

/* What the encoder holds back: a token is final once frame 16i + 6 exists, and rows go in batches. */
static GstClockTime
held_latency (GstGemma3nAudioEnc *self)
{
  G3nAudioFeatureParams defaults = g3n_audio_feature_default_params ();
  gint hop = (gint) (defaults.sampling_rate * defaults.hop_length_ms / 1000), rate = defaults.sampling_rate;
  GstCaps *caps = gst_pad_get_current_caps (self->sinkpad); /* before negotiation: Gemma 3n's features */
  if (caps) {
    GstStructure *s = gst_caps_get_structure (caps, 0);
    gst_structure_get_int (s, "hop", &hop);
    gst_structure_get_int (s, "rate", &rate);
    gst_caps_unref (caps);
  }
  GST_OBJECT_LOCK (self);
  guint64 frames = (guint64) self->batch_rows * FRAMES_PER_ROW + LOOKAHEAD_FRAMES;
  GST_OBJECT_UNLOCK (self);
  return gst_util_uint64_scale (frames * hop, GST_SECOND, rate);
}

static GstCaps *
embeddings_caps (GstGemma3nAudioEnc *self)
{
  return gst_caps_new_simple (GST_GEMMA3N_EMBEDDINGS_MEDIA_TYPE, "modality", G_TYPE_STRING, "audio", "width",
                              G_TYPE_INT, self->n_embd, "dtype", G_TYPE_STRING, "float32", NULL);
}

/* Once the model is loaded the output is known before any input: downstream can negotiate its width. */
static gboolean
answer_src_caps (GstGemma3nAudioEnc *self, GstPad *pad, GstQuery *query)
{
  GstCaps *filter, *caps = self->n_embd > 0 ? embeddings_caps (self) : gst_pad_get_pad_template_caps (pad);
  gst_query_parse_caps (query, &filter);
  if (filter)
    gst_caps_take (&caps, gst_caps_intersect_full (filter, caps, GST_CAPS_INTERSECT_FIRST));
  gst_query_set_caps_result (query, caps);
  gst_caps_unref (caps);
  return TRUE;
}

static gboolean
src_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (parent);
  if (GST_QUERY_TYPE (query) == GST_QUERY_CAPS)
    return answer_src_caps (self, pad, query);
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return gst_pad_query_default (pad, parent, query);
  if (!gst_pad_peer_query (self->sinkpad, query))
    return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (query, &live, &min, &max);
  GstClockTime held = held_latency (self);
  GST_OBJECT_LOCK (self);
  GstClockTime backlog = self->max_backlog * GST_MSECOND;
  GST_OBJECT_UNLOCK (self);
  min += held;
  if (GST_CLOCK_TIME_IS_VALID (max))
    max += held + backlog; /* the queue can hold that much more */
  GST_DEBUG_OBJECT (self, "latency: upstream's + %" GST_TIME_FORMAT, GST_TIME_ARGS (held));
  gst_query_set_latency (query, live, min, max);
  return TRUE;
}

/* ---------------------------------------------------------------- the model */

static void
post_model_error (GstGemma3nAudioEnc *self, const char *path, GError *error)
{
  if (!error)
    g_set_error (&error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "the model could not be opened");
  if (strstr (error->message, path))
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("%s", error->message), (NULL));
  else
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Model %s: %s", path, error->message), (NULL));
  g_error_free (error);
}

static void
close_model (GstGemma3nAudioEnc *self)
{
  g_clear_pointer (&self->stream, g3n_audio_stream_free);
  g_clear_pointer (&self->features, g3n_audio_features_free);
  g_clear_pointer (&self->encoder, g3n_audio_encoder_free);
  g_clear_pointer (&self->model, gst_gemma3n_model_release);
  g_clear_pointer (&self->padding_embedding, g_free);
  g_clear_pointer (&self->queue, gst_gemma3n_queue_free);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->pending, g_array_unref);
  g_clear_pointer (&self->open_path, g_free);
  self->n_features = self->n_embd = 0;
}

/* The padding embedding: row 0 of a clip of no tokens padded to the prompt's soft-token count. */
static gboolean
make_padding_embedding (GstGemma3nAudioEnc *self, GError **error)
{
  gint n_rows = MAX (g3n_audio_encoder_n_soft_tokens (self->encoder), 1);
  g_autofree float *rows = g_new (float, (gsize) n_rows * self->n_embd);
  if (!g3n_audio_embed_padded (self->encoder, NULL, NULL, 0, rows, error))
    return FALSE;
  self->padding_embedding = g_memdup2 (rows, sizeof (float) * self->n_embd);
  return TRUE;
}

static gboolean
open_model (GstGemma3nAudioEnc *self)
{
  GST_OBJECT_LOCK (self);
  self->open_path = g_strdup (self->model_path);
  guint backlog = self->max_backlog;
  GST_OBJECT_UNLOCK (self);
  if (!self->open_path || !*self->open_path) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No model folder given (set the 'model' property)."), (NULL));
    return FALSE;
  }
  GError *error = NULL;
  self->model = gst_gemma3n_model_acquire_tower (self->open_path, &error);
  if (self->model)
    self->encoder = g3n_audio_encoder_new (self->model, &error);
  if (self->encoder) {
    self->n_features = g3n_audio_encoder_n_features (self->encoder);
    self->n_embd = g3n_audio_encoder_n_embd (self->encoder);
    gint n_sub, n_tokens;
    g3n_audio_encoder_sizes (self->encoder, 16384, &n_sub, &n_tokens); /* a long clip gives the ratio */
    self->frames_per_token = n_tokens > 0 ? 16384 / n_tokens : 16;
  }
  if (self->encoder && make_padding_embedding (self, &error))
    self->features = g3n_audio_features_new_from_file (self->open_path, &error);
  if (self->features) {
    self->pending = g_array_new (FALSE, FALSE, sizeof (float));
    self->stream = g3n_audio_stream_new (self->features, self->encoder, NULL, collect_tokens, self, &error);
  }
  if (!self->stream) {
    post_model_error (self, self->open_path, error);
    close_model (self);
    return FALSE;
  }
  self->sink_caps_ok = FALSE;
  self->bins = self->hop = self->rate = 0;
  self->queue = gst_gemma3n_queue_new (backlog * GST_MSECOND);
  gst_gemma3n_queue_set_flushing (self->queue, TRUE); /* until the source pad starts the worker */
  self->cancellable = g_cancellable_new ();
  GST_INFO_OBJECT (self, "%s: %d mel bins in, %d-wide tokens of %d frames out", self->open_path, self->n_features,
                   self->n_embd, self->frames_per_token);
  return TRUE;
}

static GstStateChangeReturn
change_state (GstElement *element, GstStateChange transition)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (element);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY && !open_model (self))
    return GST_STATE_CHANGE_FAILURE;
  /* a streaming thread waiting for room in the queue must return before its pad can deactivate */
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    worker_interrupt (self);
  GstStateChangeReturn ret = GST_ELEMENT_CLASS (gst_gemma3n_audio_enc_parent_class)->change_state (element, transition);
  if (transition == GST_STATE_CHANGE_READY_TO_NULL)
    close_model (self);
  return ret;
}

/* ---------------------------------------------------------------- GObject */

static void
set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (object);
  gboolean latency_changed = FALSE;
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      /* the model is opened in NULL→READY: a change later would not be what runs */
      if (GST_STATE (self) > GST_STATE_READY) {
        GST_WARNING_OBJECT (self, "model can only be changed in the NULL or READY state");
        break;
      }
      g_free (self->model_path);
      self->model_path = g_value_dup_string (value);
      break;
    case PROP_THREADS:
      self->threads = g_value_get_int (value);
      break;
    case PROP_BATCH_ROWS:
      latency_changed = self->batch_rows != g_value_get_int (value);
      self->batch_rows = g_value_get_int (value);
      break;
    case PROP_MAX_BACKLOG:
      self->max_backlog = g_value_get_uint (value);
      if (self->queue)
        gst_gemma3n_queue_set_limit (self->queue, self->max_backlog * GST_MSECOND);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
  if (latency_changed)
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

static void
get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (object);
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model_path);
      break;
    case PROP_THREADS:
      g_value_set_int (value, self->threads);
      break;
    case PROP_BATCH_ROWS:
      g_value_set_int (value, self->batch_rows);
      break;
    case PROP_MAX_BACKLOG:
      g_value_set_uint (value, self->max_backlog);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
finalize (GObject *object)
{
  GstGemma3nAudioEnc *self = GST_GEMMA3N_AUDIO_ENC (object);
  close_model (self);
  g_free (self->model_path);
  G_OBJECT_CLASS (gst_gemma3n_audio_enc_parent_class)->finalize (object);
}

static void
gst_gemma3n_audio_enc_class_init (GstGemma3nAudioEncClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  gobject_class->set_property = set_property;
  gobject_class->get_property = get_property;
  gobject_class->finalize = finalize;

  g_object_class_install_property (
      gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
                           "Gemma 3n checkpoint folder (config.json, safetensors, preprocessor_config.json), opened "
                           "when going from NULL to READY; its weights are shared with every element naming it",
                           DEFAULT_MODEL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (
      gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "Threads the encoder computes with (0 = all online cores)", 0,
                        MAX_THREADS, DEFAULT_THREADS,
                        G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (
      gobject_class, PROP_BATCH_ROWS,
      g_param_spec_int ("batch-rows", "Batch rows",
                        "Sub-sampled rows (40 ms each) run through the conformer at once, from the next segment on: "
                        "1 gives the lowest latency, more cost less per row (adds rows x 40 ms of latency)",
                        1, MAX_BATCH_ROWS, DEFAULT_BATCH_ROWS,
                        G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (
      gobject_class, PROP_MAX_BACKLOG,
      g_param_spec_uint ("max-backlog", "Maximum backlog",
                         "Audio (ms) queued for the encoder before a file source waits, or a live source's oldest "
                         "unbegun speech segments are dropped",
                         1, MAX_MAX_BACKLOG, DEFAULT_MAX_BACKLOG,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "Gemma 3n audio encoder", "Filter/Encoder/Audio",
                                         "Encodes log-mel frames of speech into Gemma 3n audio soft tokens as they "
                                         "arrive (USM conformer, embed_audio)",
                                         "gst-gemma3n developers");
  element_class->change_state = GST_DEBUG_FUNCPTR (change_state);
}

static void
gst_gemma3n_audio_enc_init (GstGemma3nAudioEnc *self)
{
  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad, GST_DEBUG_FUNCPTR (sink_chain));
  gst_pad_set_event_function (self->sinkpad, GST_DEBUG_FUNCPTR (sink_event));
  gst_pad_set_query_function (self->sinkpad, GST_DEBUG_FUNCPTR (sink_query));
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_set_activatemode_function (self->srcpad, GST_DEBUG_FUNCPTR (src_activate_mode));
  gst_pad_set_query_function (self->srcpad, GST_DEBUG_FUNCPTR (src_query));
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);

  self->model_path = g_strdup (DEFAULT_MODEL);
  self->threads = DEFAULT_THREADS;
  self->batch_rows = DEFAULT_BATCH_ROWS;
  self->max_backlog = DEFAULT_MAX_BACKLOG;
  self->srcresult = GST_FLOW_FLUSHING;
  self->clip_start = self->clip_end = GST_CLOCK_TIME_NONE;
}
