/* gstgemma3ntranscriber.c — a transcriber bin for any audio, with transcriberbin's contract. */
/**
 * SECTION:element-gemma3ntranscriber
 * @title: gemma3ntranscriber
 *
 * Live captions or translation of any audio: `audioconvert ! audioresample ! gemma3nmel ! gemma3naudioenc !
 * gemma3ndecoder` in one bin. It meets the contract GStreamer's transcriberbin expects of a transcriber: an
 * always `src` pad of `text/x-raw, format=utf8`, a string `language-code`, `latency` and `lateness` in
 * milliseconds, a live latency answer (upstream's plus `latency`), GAP events while there is nothing to say,
 * and no heavy work on the streaming thread (the encoder and the decoder each run on a worker of their own).
 *
 * Speech is cut into segments at pauses (`pause`) or at `max-segment`; each segment becomes one caption
 * buffer stamped with the speech's time plus `lateness`. A caption is due `latency` after its speech began:
 * unless `max-segment` is set, setting `latency` also sets the segments' maximum length to what leaves time
 * to answer (latency − pause − 1 s, between 1 and 30 s).
 *
 * The other properties are those of the elements inside (see gemma3nmel, gemma3naudioenc and
 * gemma3ndecoder): the model, the task and its prompt, sampling, the context, voice detection.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=talk.ogg ! decodebin ! gemma3ntranscriber model=gemma-3n-E2B-it \
 *     quant=q4_0 ! webvttenc ! filesink location=talk.vtt
 * ]| Subtitles of a recording.
 * |[
 * gst-launch-1.0 autoaudiosrc ! queue leaky=downstream max-size-time=5000000000 ! \
 *     gemma3ntranscriber model=gemma-3n-E2B-it task=translate target-language=French ! \
 *     webvttenc ! fdsink
 * ]| Live translation of the microphone, printed as WebVTT cues.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgemma3ntranscriber.h"

#include "gstgemma3naudioenc.h"
#include "gstgemma3ndecoder.h"
#include "gstgemma3nelements.h"
#include "gstgemma3nmel.h"

GST_DEBUG_CATEGORY_STATIC (gst_gemma3n_transcriber_debug);
#define GST_CAT_DEFAULT gst_gemma3n_transcriber_debug

/* The elements inside, in stream order. */
enum { CONVERT, RESAMPLE, MEL, ENCODER, DECODER, N_CHILDREN };
static const char *const child_factories[N_CHILDREN] = {
  "audioconvert", "audioresample", "gemma3nmel", "gemma3naudioenc", "gemma3ndecoder",
};

#define TO_MEL (1 << MEL)
#define TO_ENCODER (1 << ENCODER)
#define TO_DECODER (1 << DECODER)

/* The bin's properties: each one is a property of the elements named in `to`, with the first one's type,
 * range and default, and its documentation unless `blurb` says what it means for the bin; reading it reads
 * the first one. */
typedef struct {
  const char *name;
  guint to;
  const char *blurb;
} Proxy;

static const Proxy proxies[] = {
  { "model", TO_DECODER | TO_ENCODER | TO_MEL,
    "Gemma 3n checkpoint folder (config.json, safetensors, tokenizer.json), with an audio tower: its features' "
    "settings, audio encoder and decoder, loaded once and shared by every element naming it" },
  { "quant", TO_DECODER, NULL },
  { "quant-cache", TO_DECODER, NULL },
  { "threads", TO_DECODER | TO_ENCODER, "Threads the audio encoder and the decoder each compute with (0 = all cores)" },
  { "language-code", TO_DECODER, NULL },
  { "latency", TO_DECODER, NULL },
  { "lateness", TO_DECODER, NULL },
  { "task", TO_DECODER, NULL },
  { "prompt", TO_DECODER, NULL },
  { "system-prompt", TO_DECODER, NULL },
  { "target-language", TO_DECODER, NULL },
  { "max-new-tokens", TO_DECODER, NULL },
  { "temperature", TO_DECODER, NULL },
  { "seed", TO_DECODER, NULL },
  { "context-size", TO_DECODER, NULL },
  { "kv-type", TO_DECODER, NULL },
  { "audio-padding", TO_DECODER, NULL },
  { "prefill-batch", TO_DECODER, NULL },
  { "session-file", TO_DECODER, NULL },
  { "tokens-per-second", TO_DECODER, NULL },
  { "repeat-limit", TO_DECODER, NULL },
  { "batch-rows", TO_ENCODER, NULL },
  { "max-backlog", TO_DECODER | TO_ENCODER,
    "Milliseconds of audio that may wait for the audio encoder, and for the decoder: beyond it a file source "
    "waits, a live source's oldest waiting speech segments are dropped with a warning" },
  { "vad", TO_MEL, NULL },
  { "silence-threshold", TO_MEL, NULL },
  { "pause", TO_MEL, NULL },
  { "max-segment", TO_MEL, NULL },
  { "min-speech", TO_MEL, NULL },
  { "pre-roll", TO_MEL, NULL },
};

struct _GstGemma3nTranscriber {
  GstBin parent;
  GstElement *child[N_CHILDREN];
  gboolean max_segment_set; /* the user chose max-segment: latency no longer moves it */
};

G_DEFINE_TYPE (GstGemma3nTranscriber, gst_gemma3n_transcriber, GST_TYPE_BIN);
GST_ELEMENT_REGISTER_DEFINE (gemma3ntranscriber, "gemma3ntranscriber", GST_RANK_NONE,
                             GST_TYPE_GEMMA3N_TRANSCRIBER);

enum { SIGNAL_ASK, N_SIGNALS };
static guint signals[N_SIGNALS];

static GstStaticPadTemplate sink_template =
  GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS ("audio/x-raw"));
static GstStaticPadTemplate src_template =
  GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS ("text/x-raw, format = (string) utf8"));

/* The element a proxied property reads from: the first of `to`. */
static int
first_child (guint to)
{
  for (int c = 0; c < N_CHILDREN; c++)
    if (to & (1u << c))
      return c;
  return DECODER;
}

/* A property of the bin with the type, range, default and blurb of the child's property `p`. */
static GParamSpec *
proxy_param_spec (GParamSpec *p, const char *own_blurb)
{
  const GParamFlags flags = (p->flags & (G_PARAM_READWRITE | GST_PARAM_MUTABLE_READY | GST_PARAM_MUTABLE_PAUSED
                                         | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE))
                            | G_PARAM_STATIC_STRINGS;
  const char *name = g_param_spec_get_name (p), *nick = g_param_spec_get_nick (p), *blurb = own_blurb ? own_blurb : g_param_spec_get_blurb (p);
  if (G_IS_PARAM_SPEC_STRING (p))
    return g_param_spec_string (name, nick, blurb, G_PARAM_SPEC_STRING (p)->default_value, flags);
  if (G_IS_PARAM_SPEC_BOOLEAN (p))
    return g_param_spec_boolean (name, nick, blurb, G_PARAM_SPEC_BOOLEAN (p)->default_value, flags);
  if (G_IS_PARAM_SPEC_ENUM (p))
    return g_param_spec_enum (name, nick, blurb, p->value_type, G_PARAM_SPEC_ENUM (p)->default_value, flags);
  if (G_IS_PARAM_SPEC_INT (p)) {
    GParamSpecInt *s = G_PARAM_SPEC_INT (p);
    return g_param_spec_int (name, nick, blurb, s->minimum, s->maximum, s->default_value, flags);
  }
  if (G_IS_PARAM_SPEC_UINT (p)) {
    GParamSpecUInt *s = G_PARAM_SPEC_UINT (p);
    return g_param_spec_uint (name, nick, blurb, s->minimum, s->maximum, s->default_value, flags);
  }
  if (G_IS_PARAM_SPEC_UINT64 (p)) {
    GParamSpecUInt64 *s = G_PARAM_SPEC_UINT64 (p);
    return g_param_spec_uint64 (name, nick, blurb, s->minimum, s->maximum, s->default_value, flags);
  }
  if (G_IS_PARAM_SPEC_DOUBLE (p)) {
    GParamSpecDouble *s = G_PARAM_SPEC_DOUBLE (p);
    return g_param_spec_double (name, nick, blurb, s->minimum, s->maximum, s->default_value, flags);
  }
  g_error ("gemma3ntranscriber: cannot proxy property %s of type %s", name, g_type_name (p->value_type));
  return NULL;
}

static GstElement *
proxy_target (GstGemma3nTranscriber *self, guint prop_id, int c)
{
  return (proxies[prop_id - 1].to & (1u << c)) ? self->child[c] : NULL;
}

/* latency − pause − 1 s: what leaves the decoder time to answer a segment before its caption is due. */
static void
follow_latency (GstGemma3nTranscriber *self)
{
  if (self->max_segment_set || !self->child[MEL] || !self->child[DECODER])
    return;
  guint latency = 0, pause = 0;
  g_object_get (self->child[DECODER], "latency", &latency, NULL);
  g_object_get (self->child[MEL], "pause", &pause, NULL);
  gint64 max_segment = (gint64) latency - pause - 1000;
  g_object_set (self->child[MEL], "max-segment", (guint) CLAMP (max_segment, 1000, 30000), NULL);
}

static void
gst_gemma3n_transcriber_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstGemma3nTranscriber *self = GST_GEMMA3N_TRANSCRIBER (object);
  if (prop_id == 0 || prop_id > G_N_ELEMENTS (proxies)) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    return;
  }
  for (int c = 0; c < N_CHILDREN; c++) {
    GstElement *target = proxy_target (self, prop_id, c);
    if (target)
      g_object_set_property (G_OBJECT (target), pspec->name, value);
  }
  if (g_str_equal (pspec->name, "max-segment"))
    self->max_segment_set = TRUE;
  if (g_str_equal (pspec->name, "latency") || g_str_equal (pspec->name, "pause"))
    follow_latency (self);
}

static void
gst_gemma3n_transcriber_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstGemma3nTranscriber *self = GST_GEMMA3N_TRANSCRIBER (object);
  if (prop_id == 0 || prop_id > G_N_ELEMENTS (proxies)) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    return;
  }
  GstElement *source = self->child[first_child (proxies[prop_id - 1].to)];
  if (source)
    g_object_get_property (G_OBJECT (source), pspec->name, value);
}

static gchar *
gst_gemma3n_transcriber_ask (GstGemma3nTranscriber *self, const gchar *question)
{
  gchar *answer = NULL;
  if (self->child[DECODER])
    g_signal_emit_by_name (self->child[DECODER], "ask", question, &answer);
  return answer;
}

/* The elements inside; a missing one (its GStreamer package not installed) fails the first state change. */
static gboolean
make_children (GstGemma3nTranscriber *self)
{
  gboolean ok = TRUE;
  for (int c = 0; c < N_CHILDREN; c++) {
    self->child[c] = gst_element_factory_make (child_factories[c], NULL);
    if (!self->child[c]) {
      ok = FALSE;
      continue;
    }
    gst_bin_add (GST_BIN (self), self->child[c]);
  }
  for (int c = 0; ok && c + 1 < N_CHILDREN; c++)
    ok = gst_element_link (self->child[c], self->child[c + 1]);
  return ok;
}

static void
add_ghost_pad (GstGemma3nTranscriber *self, GstElement *child, const char *child_pad, GstStaticPadTemplate *tmpl)
{
  GstPad *target = child ? gst_element_get_static_pad (child, child_pad) : NULL;
  GstPadTemplate *pad_template = gst_static_pad_template_get (tmpl);
  GstPad *ghost = gst_ghost_pad_new_no_target_from_template (tmpl->name_template, pad_template);
  gst_object_unref (pad_template);
  if (target) {
    gst_ghost_pad_set_target (GST_GHOST_PAD (ghost), target);
    gst_object_unref (target);
  }
  gst_element_add_pad (GST_ELEMENT (self), ghost);
}

static void
gst_gemma3n_transcriber_init (GstGemma3nTranscriber *self)
{
  gboolean ok = make_children (self);
  add_ghost_pad (self, self->child[CONVERT], "sink", &sink_template);
  add_ghost_pad (self, self->child[DECODER], "src", &src_template);
  if (!ok)
    GST_WARNING_OBJECT (self, "could not build the bin: an element is missing");
  else
    follow_latency (self);
}

static GstStateChangeReturn
gst_gemma3n_transcriber_change_state (GstElement *element, GstStateChange transition)
{
  GstGemma3nTranscriber *self = GST_GEMMA3N_TRANSCRIBER (element);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
    for (int c = 0; c < N_CHILDREN; c++)
      if (!self->child[c]) {
        GST_ELEMENT_ERROR (self, CORE, MISSING_PLUGIN, ("Element %s is missing.", child_factories[c]),
                           ("gemma3ntranscriber needs %s (%s)", child_factories[c],
                            c < MEL ? "gstreamer1.0-plugins-base" : "the gemma3n plugin"));
        return GST_STATE_CHANGE_FAILURE;
      }
  }
  return GST_ELEMENT_CLASS (gst_gemma3n_transcriber_parent_class)->change_state (element, transition);
}

static void
install_proxies (GObjectClass *gobject_class)
{
  /* The classes stay referenced: the proxies' strings and enum types are theirs. */
  GObjectClass *child_class[N_CHILDREN] = { NULL };
  child_class[MEL] = g_type_class_ref (GST_TYPE_GEMMA3N_MEL);
  child_class[ENCODER] = g_type_class_ref (GST_TYPE_GEMMA3N_AUDIO_ENC);
  child_class[DECODER] = g_type_class_ref (GST_TYPE_GEMMA3N_DECODER);
  for (guint i = 0; i < G_N_ELEMENTS (proxies); i++) {
    GObjectClass *k = child_class[first_child (proxies[i].to)];
    GParamSpec *p = k ? g_object_class_find_property (k, proxies[i].name) : NULL;
    if (p)
      g_object_class_install_property (gobject_class, i + 1, proxy_param_spec (p, proxies[i].blurb));
    else
      g_error ("gemma3ntranscriber: no property %s to proxy", proxies[i].name);
  }
}

static void
gst_gemma3n_transcriber_class_init (GstGemma3nTranscriberClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GST_DEBUG_CATEGORY_INIT (gst_gemma3n_transcriber_debug, "gemma3ntranscriber", 0, "Gemma 3n transcriber bin");

  gobject_class->set_property = gst_gemma3n_transcriber_set_property;
  gobject_class->get_property = gst_gemma3n_transcriber_get_property;
  install_proxies (gobject_class);

  /**
   * GstGemma3nTranscriber::ask:
   * @transcriber: the element
   * @question: a question about what was said
   *
   * Answers @question from the live conversation between two segments (see gemma3ndecoder's ask).
   *
   * Returns: (transfer full) (nullable): the answer, or %NULL when the element is not running.
   */
  signals[SIGNAL_ASK] = g_signal_new_class_handler ("ask", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
                                                    G_CALLBACK (gst_gemma3n_transcriber_ask), NULL, NULL, NULL,
                                                    G_TYPE_STRING, 1, G_TYPE_STRING);

  element_class->change_state = gst_gemma3n_transcriber_change_state;
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "Gemma 3n transcriber", "Audio/Text/Filter",
                                         "Captions or translates speech with Gemma 3n (transcriberbin-compatible)",
                                         "gst-gemma3n developers");
}
