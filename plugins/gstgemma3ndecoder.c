/* gstgemma3ndecoder.c — gemma3ndecoder: one live Gemma 3n conversation, speech segments in, captions out. */

/**
 * SECTION:element-gemma3ndecoder
 * @title: gemma3ndecoder
 *
 * Runs the text decoder of Gemma 3n as one conversation that lasts as long as the element: every speech
 * segment arriving on `audio_sink` (audio soft-token embeddings from gemma3naudioenc, bracketed by the
 * segment START/END events of gemma3nmel) becomes a user turn — the clip, then the instruction that `task`
 * or `prompt` gives — and its answer is pushed on `src` as one caption buffer spanning the segment. The
 * clip is prefilled while the speech still arrives, so after a segment's END only the instruction and the
 * answer remain to compute.
 *
 * Earlier turns stay in the context, so the model hears what came before; when the context is full the
 * oldest exchanges are shifted out (the first one, carrying the system prompt, is kept), so the element
 * runs for hours in bounded memory. `session-file` keeps the conversation across runs.
 *
 * Buffers on a `text_sink_%u` request pad are user turns of text, answered on `src` the same way. The `ask`
 * action signal asks a question of the live conversation between segments and returns the answer.
 *
 * Each answer is also posted as an element message: "gemma3n-caption" for segments (index, text, start,
 * duration, tokens, prefill-ms, generate-ms, n-past, stop) and "gemma3n-answer" for questions (question,
 * text). The model never runs on a streaming thread: the pads only queue, and a worker task on `src`
 * computes and pushes, in input order.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample ! \
 *     gemma3nmel model=gemma-3n-E2B-it ! gemma3naudioenc model=gemma-3n-E2B-it ! \
 *     gemma3ndecoder model=gemma-3n-E2B-it quant=q8_0 task=translate target-language=French ! \
 *     fakesink dump=true
 * ]| Prints the French translation of each sentence of talk.wav, and its "gemma3n-caption" message.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgemma3ndecoder.h"

#include <math.h>
#include <string.h>

#include "gemma3n.h"
#include "gstgemma3nelements.h"
#include "gstgemma3nformat.h"
#include "gstgemma3nqueue.h"
#include "gstgemma3nregistry.h"

GST_DEBUG_CATEGORY_STATIC (gst_gemma3n_decoder_debug);
#define GST_CAT_DEFAULT gst_gemma3n_decoder_debug

#define DEFAULT_MODEL NULL
#define DEFAULT_QUANT G3N_QUANT_NONE
#define DEFAULT_QUANT_CACHE NULL
#define DEFAULT_KV_TYPE G3N_KV_F32
#define DEFAULT_THREADS 0
#define DEFAULT_TASK GST_GEMMA3N_DECODER_TASK_TRANSCRIBE
#define DEFAULT_PROMPT NULL
#define DEFAULT_SYSTEM_PROMPT NULL
#define DEFAULT_LANGUAGE_CODE NULL
#define DEFAULT_TARGET_LANGUAGE "English"
#define DEFAULT_MAX_NEW_TOKENS 128
#define DEFAULT_CONTEXT_SIZE 4096
#define DEFAULT_TEMPERATURE 0.0
#define DEFAULT_SEED 0
#define DEFAULT_LATENCY 8000
#define DEFAULT_LATENESS 0
#define DEFAULT_SESSION_FILE NULL
#define DEFAULT_AUDIO_PADDING TRUE
#define DEFAULT_PREFILL_BATCH 32
#define DEFAULT_TOKENS_PER_SECOND 8.0
#define DEFAULT_REPEAT_LIMIT 4
#define DEFAULT_MAX_BACKLOG 30000

/* The loop cut looks for repeated n-grams up to this long. */
#define MAX_REPEAT_NGRAM 16

enum {
  PROP_0,
  PROP_MODEL,
  PROP_QUANT,
  PROP_QUANT_CACHE,
  PROP_KV_TYPE,
  PROP_THREADS,
  PROP_TASK,
  PROP_PROMPT,
  PROP_SYSTEM_PROMPT,
  PROP_LANGUAGE_CODE,
  PROP_TARGET_LANGUAGE,
  PROP_MAX_NEW_TOKENS,
  PROP_CONTEXT_SIZE,
  PROP_TEMPERATURE,
  PROP_SEED,
  PROP_LATENCY,
  PROP_LATENESS,
  PROP_SESSION_FILE,
  PROP_AUDIO_PADDING,
  PROP_PREFILL_BATCH,
  PROP_TOKENS_PER_SECOND,
  PROP_REPEAT_LIMIT,
  PROP_MAX_BACKLOG,
  PROP_N_PAST,
};

enum {
  SIGNAL_ASK,
  LAST_SIGNAL,
};

static guint signals[LAST_SIGNAL];

#define TEXT_CAPS "text/x-raw, format = (string) utf8"

static GstStaticPadTemplate audio_sink_template = GST_STATIC_PAD_TEMPLATE (
    "audio_sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_GEMMA3N_AUDIO_EMBEDDINGS_CAPS));
static GstStaticPadTemplate text_sink_template = GST_STATIC_PAD_TEMPLATE (
    "text_sink_%u", GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS (TEXT_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (TEXT_CAPS));

/* What a sink pad carries, and so what the worker does with its buffers. An image_sink (embeddings,
 * modality=image, one frame's tokens a buffer, g3n_session_add_image_embeddings) would be one more kind. */
typedef enum {
  SINK_AUDIO,
  SINK_TEXT,
} SinkKind;

/* One per sink pad, for the element's life: it is the tag of the pad's items in the queue, so an item
 * queued before its request pad was released still has a valid tag (with pad = NULL: ignored). */
typedef struct {
  SinkKind kind;
  GstPad *pad;   /* not a reference; NULL once released (object lock) */
  gboolean eos;  /* worker: the pad's EOS was handled */
} SinkInfo;

/* The segment whose turn is open (worker only). */
typedef struct {
  gboolean open;
  guint n_tokens;                 /* soft tokens pushed */
  guint64 index;
  GstClockTime start, duration;   /* from START/END; NONE when unknown */
  GstClockTime first_pts, end;    /* span of its buffers */
} Segment;

/* A question of the `ask` signal, waiting for the worker (ask_lock). */
typedef struct {
  gchar *question;
  gchar *answer;
  gboolean done;
} Ask;

/* An item held back while a segment's turn is open (text turns, gaps): it runs after the segment. */
typedef struct {
  GstMiniObject *item;
  SinkInfo *info;
} Deferred;

struct _GstGemma3nDecoder {
  GstElement parent;

  GstPad *audio_sink, *src;
  SinkInfo *audio_info;
  GPtrArray *sink_infos; /* SinkInfo*, every sink pad ever made (object lock) */
  guint next_text_pad;
  GstGemma3nQueue *queue;

  /* properties (object lock) */
  gchar *model_path;
  G3nQuantType quant;
  gchar *quant_cache;
  G3nKvType kv_type;
  gint threads;
  GstGemma3nDecoderTask task;
  gchar *prompt, *system_prompt, *language_code, *target_language;
  guint max_new_tokens, context_size;
  gdouble temperature;
  guint64 seed;
  guint latency_ms, lateness_ms;
  gchar *session_file;
  gboolean audio_padding;
  guint prefill_batch;
  gdouble tokens_per_second;
  guint repeat_limit, max_backlog_ms;

  /* the conversation: made in NULL→READY, freed in READY→NULL */
  G3nModel *model;
  G3nTokenizer *tokenizer;
  G3nChatFormat *format;
  G3nSession *session;
  GCancellable *cancellable;
  gint n_embd;
  gint n_past; /* atomic: the session's positions after the last turn */

  gboolean live;             /* upstream of audio_sink is live (object lock) */
  GstFlowReturn src_result;  /* the worker's last push (object lock) */

  /* worker */
  Segment seg;
  GQueue deferred; /* of Deferred* */
  guint64 n_turns;      /* answers generated: seeds each turn's sampler */
  guint64 n_segments;   /* segments opened: numbers those without a START */

  GMutex ask_lock;
  GCond ask_cond;
  GQueue asks;               /* of Ask*, not yet taken by the worker */
  gpointer worker_thread;    /* atomic: the GThread running worker_loop */
  gboolean accepting_asks;   /* the worker runs */
};

#define gst_gemma3n_decoder_parent_class parent_class
G_DEFINE_TYPE (GstGemma3nDecoder, gst_gemma3n_decoder, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE (gemma3ndecoder, "gemma3ndecoder", GST_RANK_NONE, GST_TYPE_GEMMA3N_DECODER);

/* ---------------------------------------------------------------- enum types */

#define GST_TYPE_GEMMA3N_DECODER_QUANT (gst_gemma3n_decoder_quant_get_type ())
static GType
gst_gemma3n_decoder_quant_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { G3N_QUANT_NONE, "As stored in the checkpoint (BF16)", "none" },
    { G3N_QUANT_Q8_0, "8-bit blocks (8.5 bits a weight)", "q8_0" },
    { G3N_QUANT_Q4_0, "4-bit blocks (4.5 bits a weight)", "q4_0" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstGemma3nDecoderQuant", values));
  return type;
}

#define GST_TYPE_GEMMA3N_DECODER_KV_TYPE (gst_gemma3n_decoder_kv_type_get_type ())
static GType
gst_gemma3n_decoder_kv_type_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { G3N_KV_F32, "32-bit floats", "f32" },
    { G3N_KV_F16, "16-bit floats (half the memory)", "f16" },
    { G3N_KV_BF16, "bfloat16 (half the memory)", "bf16" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstGemma3nDecoderKvType", values));
  return type;
}

#define GST_TYPE_GEMMA3N_DECODER_TASK (gst_gemma3n_decoder_task_get_type ())
static GType
gst_gemma3n_decoder_task_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { GST_GEMMA3N_DECODER_TASK_TRANSCRIBE, "Transcribe the speech (in language-code, if set)", "transcribe" },
    { GST_GEMMA3N_DECODER_TASK_TRANSLATE, "Translate the speech into target-language", "translate" },
    { GST_GEMMA3N_DECODER_TASK_DESCRIBE, "Describe the audio", "describe" },
    { GST_GEMMA3N_DECODER_TASK_CUSTOM, "Ask the prompt property's instruction", "custom" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstGemma3nDecoderTask", values));
  return type;
}

/* ---------------------------------------------------------------- settings of one turn */

/* The properties one turn uses, read at once under the object lock. */
typedef struct {
  gchar *instruction;
  guint max_new_tokens;
  gdouble tokens_per_second;
  guint repeat_limit;
  gdouble temperature;
  guint64 seed;
  GstClockTime lateness;
} TurnSettings;

static gchar *
instruction_locked (GstGemma3nDecoder *self)
{
  if (self->prompt && *self->prompt)
    return g_strdup (self->prompt);
  switch (self->task) {
    case GST_GEMMA3N_DECODER_TASK_TRANSLATE:
      return g_strdup_printf ("Translate this audio into %s.",
                              self->target_language && *self->target_language ? self->target_language
                                                                              : DEFAULT_TARGET_LANGUAGE);
    case GST_GEMMA3N_DECODER_TASK_DESCRIBE:
      return g_strdup ("Describe this audio.");
    case GST_GEMMA3N_DECODER_TASK_CUSTOM: /* refused at READY without a prompt */
      return g_strdup ("");
    case GST_GEMMA3N_DECODER_TASK_TRANSCRIBE:
    default:
      if (self->language_code && *self->language_code)
        return g_strdup_printf ("Transcribe this audio. The speech is in %s.", self->language_code);
      return g_strdup ("Transcribe this audio.");
  }
}

static void
turn_settings_read (GstGemma3nDecoder *self, TurnSettings *ts)
{
  GST_OBJECT_LOCK (self);
  ts->instruction = instruction_locked (self);
  ts->max_new_tokens = self->max_new_tokens;
  ts->tokens_per_second = self->tokens_per_second;
  ts->repeat_limit = self->repeat_limit;
  ts->temperature = self->temperature;
  ts->seed = self->seed;
  ts->lateness = self->lateness_ms * GST_MSECOND;
  GST_OBJECT_UNLOCK (self);
}

static void
turn_settings_clear (TurnSettings *ts)
{
  g_clear_pointer (&ts->instruction, g_free);
}

/* A segment's answer is capped by its length: a few tokens per second of speech say all it holds, and a
 * random-looking ramble beyond that would only delay the next caption. */
static guint
segment_token_cap (const TurnSettings *ts, GstClockTime duration)
{
  if (ts->tokens_per_second <= 0 || !GST_CLOCK_TIME_IS_VALID (duration))
    return ts->max_new_tokens;
  double seconds = (double) duration / GST_SECOND;
  double cap = 8 + ceil (seconds * ts->tokens_per_second);
  return cap < ts->max_new_tokens ? (guint) cap : ts->max_new_tokens;
}

/* ---------------------------------------------------------------- generation */

/* One answer as it is generated: the text, and per token where its text ended, for the loop cut. */
typedef struct {
  GString *text;
  GArray *tokens;      /* int32_t */
  GArray *text_ends;   /* gsize: text->len after each token */
  guint repeat_limit;  /* < 2: off */
  gboolean repeated;   /* stopped by the loop cut */
  gsize keep;          /* with repeated: bytes of text before the repeats */
  gint64 first_token_us;
} Generation;

/* Whether the last tokens are one n-gram repeated `limit` times in a row; *n_out gets n. */
static gboolean
ends_in_repeats (const GArray *tokens, guint limit, guint *n_out)
{
  const int32_t *t = (const int32_t *) tokens->data;
  guint len = tokens->len;
  for (guint n = 1; n <= MAX_REPEAT_NGRAM && n * limit <= len; n++) {
    gboolean periodic = TRUE;
    for (guint i = len - n * limit; periodic && i + n < len; i++)
      periodic = t[i] == t[i + n];
    if (periodic) {
      *n_out = n;
      return TRUE;
    }
  }
  return FALSE;
}

static gboolean
on_token (int32_t token, const char *text, gpointer user_data)
{
  Generation *g = user_data;
  if (token < 0) { /* held-back text of the last tokens: cut with them when the loop cut stopped us */
    if (!g->repeated)
      g_string_append (g->text, text);
    return TRUE;
  }
  if (!g->tokens->len)
    g->first_token_us = g_get_monotonic_time ();
  g_string_append (g->text, text);
  g_array_append_val (g->tokens, token);
  g_array_append_val (g->text_ends, g->text->len);
  guint n;
  if (g->repeat_limit >= 2 && ends_in_repeats (g->tokens, g->repeat_limit, &n)) {
    guint kept_tokens = g->tokens->len - n * (g->repeat_limit - 1);
    g->keep = g_array_index (g->text_ends, gsize, kept_tokens - 1);
    g->repeated = TRUE;
    return FALSE;
  }
  return TRUE;
}

/* The answer as a caption: the loop's repeats dropped, newlines as spaces, trimmed. */
static gchar *
generation_caption (Generation *g)
{
  if (g->repeated)
    g_string_truncate (g->text, g->keep);
  for (gsize i = 0; i < g->text->len; i++)
    if (g->text->str[i] == '\n' || g->text->str[i] == '\r')
      g->text->str[i] = ' ';
  return g_strstrip (g_strdup (g->text->str));
}

static G3nSampler *
turn_sampler (GstGemma3nDecoder *self, const TurnSettings *ts)
{
  if (ts->temperature <= 0) {
    G3nSamplerParams greedy = g3n_sampler_greedy_params ();
    return g3n_sampler_new (&greedy);
  }
  G3nSamplerParams p = g3n_sampler_default_params ();
  p.temperature = ts->temperature;
  /* each turn draws its own numbers, and a run with a given seed draws the same ones again */
  p.seed = ts->seed ? ts->seed + self->n_turns : 0;
  return g3n_sampler_new (&p);
}

/* Generates the answer of the open user turn (at most cap tokens). */
static gboolean
generate_answer (GstGemma3nDecoder *self, const TurnSettings *ts, guint cap, Generation *g, const char **stop,
                 GError **error)
{
  g->text = g_string_new (NULL);
  g->tokens = g_array_new (FALSE, FALSE, sizeof (int32_t));
  g->text_ends = g_array_new (FALSE, FALSE, sizeof (gsize));
  g->repeat_limit = ts->repeat_limit;
  g->first_token_us = 0;
  G3nSampler *sampler = turn_sampler (self, ts);
  G3nStopReason why = G3N_STOP_MAX_TOKENS;
  gboolean ok = g3n_session_generate (self->session, sampler, (int) MIN (cap, G_MAXINT), on_token, g, &why, error);
  g3n_sampler_free (sampler);
  self->n_turns++;
  g_atomic_int_set (&self->n_past, g3n_session_n_past (self->session));
  *stop = g->repeated ? "repeat" : why == G3N_STOP_END_OF_TURN ? "end-of-turn" : "max-tokens";
  return ok;
}

static void
generation_clear (Generation *g)
{
  if (g->text)
    g_string_free (g->text, TRUE);
  if (g->tokens)
    g_array_free (g->tokens, TRUE);
  if (g->text_ends)
    g_array_free (g->text_ends, TRUE);
  memset (g, 0, sizeof *g);
}

/* ---------------------------------------------------------------- worker: output */

static gboolean
is_cancelled (const GError *error)
{
  return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* A failed call of the model: cancelled means flushing; anything else stops the stream with an error. */
static GstFlowReturn
model_failure (GstGemma3nDecoder *self, const char *what, GError *error)
{
  if (is_cancelled (error)) {
    g_error_free (error);
    return GST_FLOW_FLUSHING;
  }
  GST_ELEMENT_ERROR (self, LIBRARY, FAILED, ("Gemma 3n failed to %s", what), ("%s", error->message));
  g_error_free (error);
  return GST_FLOW_ERROR;
}

/* src's caps are fixed, whatever the input's. */
static GstEvent *
src_caps_event (void)
{
  GstCaps *caps = gst_static_pad_template_get_caps (&src_template);
  GstEvent *event = gst_event_new_caps (caps);
  gst_caps_unref (caps);
  return event;
}

/* Output can start before anything came on audio_sink (a text turn): src then gets its own start. */
static void
ensure_src_started (GstGemma3nDecoder *self)
{
  GstEvent *ev = gst_pad_get_sticky_event (self->src, GST_EVENT_STREAM_START, 0);
  if (ev) {
    gst_event_unref (ev);
  } else {
    gchar *id = g_strdup_printf ("gemma3ndecoder-%p-%" G_GINT64_FORMAT, (void *) self, g_get_real_time ());
    gst_pad_push_event (self->src, gst_event_new_stream_start (id));
    g_free (id);
  }
  if (!gst_pad_has_current_caps (self->src))
    gst_pad_push_event (self->src, src_caps_event ());
  ev = gst_pad_get_sticky_event (self->src, GST_EVENT_SEGMENT, 0);
  if (ev) {
    gst_event_unref (ev);
  } else {
    GstSegment segment;
    gst_segment_init (&segment, GST_FORMAT_TIME);
    gst_pad_push_event (self->src, gst_event_new_segment (&segment));
  }
}

static GstFlowReturn
push_text (GstGemma3nDecoder *self, const gchar *text, GstClockTime pts, GstClockTime duration)
{
  ensure_src_started (self);
  gsize len = strlen (text);
  GstBuffer *buf = gst_buffer_new_memdup (text, len);
  GST_BUFFER_PTS (buf) = pts;
  GST_BUFFER_DURATION (buf) = duration;
  return gst_pad_push (self->src, buf);
}

/* A span without words: a GAP, so that downstream (a subtitle overlay, a muxer) goes on. */
static void
push_gap (GstGemma3nDecoder *self, GstClockTime start, GstClockTime duration)
{
  if (!GST_CLOCK_TIME_IS_VALID (start))
    return;
  ensure_src_started (self);
  gst_pad_push_event (self->src, gst_event_new_gap (start, duration));
}

static GstClockTime
shifted (GstClockTime t, GstClockTime lateness)
{
  return GST_CLOCK_TIME_IS_VALID (t) ? t + lateness : GST_CLOCK_TIME_NONE;
}

static void
post_caption (GstGemma3nDecoder *self, const Segment *seg, const gchar *text, const Generation *g,
              double prefill_ms, double generate_ms, const char *stop)
{
  GstStructure *s = gst_structure_new ("gemma3n-caption", "index", G_TYPE_UINT64, seg->index, "text",
                                       G_TYPE_STRING, text, "start", G_TYPE_UINT64, seg->start, "duration",
                                       G_TYPE_UINT64, seg->duration, "tokens", G_TYPE_UINT, g->tokens->len,
                                       "prefill-ms", G_TYPE_DOUBLE, prefill_ms, "generate-ms", G_TYPE_DOUBLE,
                                       generate_ms, "n-past", G_TYPE_INT, g_atomic_int_get (&self->n_past),
                                       "stop", G_TYPE_STRING, stop, NULL);
  gst_element_post_message (GST_ELEMENT_CAST (self), gst_message_new_element (GST_OBJECT_CAST (self), s));
}

static void
post_answer (GstGemma3nDecoder *self, const gchar *question, const gchar *text)
{
  GstStructure *s = gst_structure_new ("gemma3n-answer", "question", G_TYPE_STRING, question, "text",
                                       G_TYPE_STRING, text ? text : "", NULL);
  gst_element_post_message (GST_ELEMENT_CAST (self), gst_message_new_element (GST_OBJECT_CAST (self), s));
}

/* ---------------------------------------------------------------- worker: turns */

static GstFlowReturn handle_item (GstGemma3nDecoder *self, SinkInfo *info, GstMiniObject *item);

/* A text turn (a question, a text_sink buffer): the answer text, or NULL with *ret set on failure. */
static gchar *
answer_text (GstGemma3nDecoder *self, const gchar *question, gboolean from_ask, GstFlowReturn *ret)
{
  TurnSettings ts;
  turn_settings_read (self, &ts);
  GError *error = NULL;
  Generation g = { 0 };
  const char *stop;
  gchar *answer = NULL;
  if (g3n_session_add_text (self->session, question, &error)
      && generate_answer (self, &ts, ts.max_new_tokens, &g, &stop, &error)) {
    answer = generation_caption (&g);
    *ret = GST_FLOW_OK;
  } else if (from_ask && !is_cancelled (error)) {
    /* a question that cannot be answered (too long for the context, ...) is the asker's problem, not the
     * stream's: it gets NULL, the captions go on */
    GST_ELEMENT_WARNING (self, LIBRARY, FAILED, ("Could not answer the question"), ("%s", error->message));
    g_error_free (error);
    *ret = GST_FLOW_OK;
  } else {
    *ret = model_failure (self, "answer a text turn", error);
  }
  generation_clear (&g);
  turn_settings_clear (&ts);
  return answer;
}

static void
answer_pending_asks (GstGemma3nDecoder *self)
{
  g_mutex_lock (&self->ask_lock);
  Ask *ask;
  while ((ask = g_queue_pop_head (&self->asks))) {
    g_mutex_unlock (&self->ask_lock);
    GstFlowReturn ret;
    gchar *answer = answer_text (self, ask->question, TRUE, &ret);
    if (answer)
      post_answer (self, ask->question, answer);
    g_mutex_lock (&self->ask_lock);
    ask->answer = answer;
    ask->done = TRUE;
    g_cond_broadcast (&self->ask_cond);
  }
  g_mutex_unlock (&self->ask_lock);
}

/* Every question still waiting gets NULL (the element stops or flushes). */
static void
fail_pending_asks (GstGemma3nDecoder *self, gboolean stop_accepting)
{
  g_mutex_lock (&self->ask_lock);
  if (stop_accepting)
    self->accepting_asks = FALSE;
  Ask *ask;
  while ((ask = g_queue_pop_head (&self->asks)))
    ask->done = TRUE;
  g_cond_broadcast (&self->ask_cond);
  g_mutex_unlock (&self->ask_lock);
}

static GstFlowReturn
run_deferred (GstGemma3nDecoder *self)
{
  GstFlowReturn ret = GST_FLOW_OK;
  Deferred *d;
  while (ret == GST_FLOW_OK && !self->seg.open && (d = g_queue_pop_head (&self->deferred))) {
    ret = handle_item (self, d->info, d->item);
    g_free (d);
  }
  return ret;
}

static void
clear_deferred (GstGemma3nDecoder *self)
{
  Deferred *d;
  while ((d = g_queue_pop_head (&self->deferred))) {
    gst_mini_object_unref (d->item);
    g_free (d);
  }
}

static GstFlowReturn
open_segment (GstGemma3nDecoder *self, guint64 index, GstClockTime start, GstClockTime duration)
{
  GError *error = NULL;
  if (!g3n_session_begin_audio (self->session, &error))
    return model_failure (self, "begin a speech segment", error);
  self->seg = (Segment) { TRUE, 0, index, start, duration, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE };
  self->n_segments++;
  GST_DEBUG_OBJECT (self, "segment %" G_GUINT64_FORMAT " opened at %" GST_TIME_FORMAT, index,
                    GST_TIME_ARGS (start));
  return GST_FLOW_OK;
}

/* The segment's span: what START/END said, else what its buffers covered. */
static void
segment_fix_span (Segment *seg)
{
  if (!GST_CLOCK_TIME_IS_VALID (seg->start))
    seg->start = seg->first_pts;
  if (!GST_CLOCK_TIME_IS_VALID (seg->duration) && GST_CLOCK_TIME_IS_VALID (seg->start)
      && GST_CLOCK_TIME_IS_VALID (seg->end) && seg->end > seg->start)
    seg->duration = seg->end - seg->start;
}

/* The segment's turn: the clip is in, the instruction follows, the answer is its caption. */
static GstFlowReturn
close_segment (GstGemma3nDecoder *self)
{
  Segment seg = self->seg;
  self->seg.open = FALSE;
  segment_fix_span (&seg);
  TurnSettings ts;
  turn_settings_read (self, &ts);
  GError *error = NULL;
  GstFlowReturn ret = GST_FLOW_OK;
  GstClockTime pts = shifted (seg.start, ts.lateness);
  if (seg.n_tokens == 0) { /* nothing was heard: no turn */
    if (!g3n_session_discard_turn (self->session, &error))
      ret = model_failure (self, "drop an empty segment", error);
    else
      push_gap (self, pts, seg.duration);
    turn_settings_clear (&ts);
    return ret == GST_FLOW_OK ? run_deferred (self) : ret;
  }
  Generation g = { 0 };
  const char *stop = NULL;
  gint64 t_end = g_get_monotonic_time ();
  guint cap = segment_token_cap (&ts, seg.duration);
  if (!g3n_session_end_audio (self->session, &error) || !g3n_session_add_text (self->session, ts.instruction, &error)
      || !generate_answer (self, &ts, cap, &g, &stop, &error)) {
    ret = model_failure (self, "answer a speech segment", error);
  } else {
    gint64 t_done = g_get_monotonic_time ();
    gint64 t_first = g.tokens->len ? g.first_token_us : t_done;
    gchar *caption = generation_caption (&g);
    GST_DEBUG_OBJECT (self, "segment %" G_GUINT64_FORMAT ": %u tokens (%s), \"%s\"", seg.index, g.tokens->len,
                      stop, caption);
    post_caption (self, &seg, caption, &g, (t_first - t_end) / 1000.0, (t_done - t_first) / 1000.0, stop);
    if (*caption)
      ret = push_text (self, caption, pts, seg.duration);
    else
      push_gap (self, pts, seg.duration);
    g_free (caption);
  }
  generation_clear (&g);
  turn_settings_clear (&ts);
  return ret == GST_FLOW_OK ? run_deferred (self) : ret;
}

static GstFlowReturn
handle_audio_buffer (GstGemma3nDecoder *self, GstBuffer *buf)
{
  GstFlowReturn ret = GST_FLOW_OK;
  if (!self->seg.open) { /* embeddings without a START: a segment of their own, closed by START or EOS */
    ret = open_segment (self, self->n_segments, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE);
    if (ret != GST_FLOW_OK)
      return ret;
  }
  gsize row = (gsize) self->n_embd * sizeof (float);
  GstMapInfo map;
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map an embeddings buffer"), (NULL));
    return GST_FLOW_ERROR;
  }
  if (map.size % row) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Embeddings buffer of %" G_GSIZE_FORMAT " bytes", map.size),
                       ("not whole tokens of width %d (%" G_GSIZE_FORMAT " bytes each)", self->n_embd, row));
    gst_buffer_unmap (buf, &map);
    return GST_FLOW_ERROR;
  }
  int n = (int) (map.size / row);
  GError *error = NULL;
  gboolean ok = n == 0 || g3n_session_push_audio_embeddings (self->session, (const float *) map.data, n, &error);
  gst_buffer_unmap (buf, &map);
  if (!ok)
    return model_failure (self, "take a segment's audio", error);
  self->seg.n_tokens += n;
  GstClockTime pts = GST_BUFFER_PTS (buf), dur = GST_BUFFER_DURATION (buf);
  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    if (!GST_CLOCK_TIME_IS_VALID (self->seg.first_pts))
      self->seg.first_pts = pts;
    self->seg.end = pts + (GST_CLOCK_TIME_IS_VALID (dur) ? dur : 0);
  }
  return GST_FLOW_OK;
}

static GstFlowReturn
handle_text_buffer (GstGemma3nDecoder *self, GstBuffer *buf)
{
  GstMapInfo map;
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map a text buffer"), (NULL));
    return GST_FLOW_ERROR;
  }
  gchar *question = g_strndup ((const gchar *) map.data, map.size);
  gst_buffer_unmap (buf, &map);
  GstFlowReturn ret = GST_FLOW_OK;
  if (!g_utf8_validate (question, -1, NULL)) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("A text turn is not UTF-8: ignored"), (NULL));
  } else if (*g_strstrip (question)) {
    gchar *answer = answer_text (self, question, FALSE, &ret);
    if (answer) {
      post_answer (self, question, answer);
      GstClockTime lateness;
      GST_OBJECT_LOCK (self);
      lateness = self->lateness_ms * GST_MSECOND;
      GST_OBJECT_UNLOCK (self);
      GstClockTime pts = shifted (GST_BUFFER_PTS (buf), lateness);
      if (*answer)
        ret = push_text (self, answer, pts, GST_BUFFER_DURATION (buf));
      else
        push_gap (self, pts, GST_BUFFER_DURATION (buf));
      g_free (answer);
    }
  }
  g_free (question);
  return ret;
}

/* Whether every linked sink pad has had its EOS. */
static gboolean
all_linked_sinks_eos (GstGemma3nDecoder *self)
{
  gboolean all = TRUE;
  GST_OBJECT_LOCK (self);
  for (guint i = 0; all && i < self->sink_infos->len; i++) {
    SinkInfo *info = g_ptr_array_index (self->sink_infos, i);
    all = !info->pad || info->eos || !gst_pad_is_linked (info->pad);
  }
  GST_OBJECT_UNLOCK (self);
  return all;
}

static void
save_session (GstGemma3nDecoder *self)
{
  GST_OBJECT_LOCK (self);
  gchar *path = g_strdup (self->session_file);
  GST_OBJECT_UNLOCK (self);
  GError *error = NULL;
  if (path && *path && self->session && !g3n_session_save (self->session, path, &error)) {
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE, ("Could not save the conversation to %s", path), ("%s",
                         error->message));
    g_error_free (error);
  } else if (path && *path) {
    GST_INFO_OBJECT (self, "conversation saved to %s", path);
  }
  g_free (path);
}

static GstFlowReturn
handle_eos (GstGemma3nDecoder *self, SinkInfo *info, GstEvent *event)
{
  GstFlowReturn ret = GST_FLOW_OK;
  if (info->kind == SINK_AUDIO && self->seg.open)
    ret = close_segment (self);
  info->eos = TRUE;
  if (ret == GST_FLOW_OK && all_linked_sinks_eos (self)) {
    save_session (self);
    ensure_src_started (self);
    gst_pad_push_event (self->src, event);
  } else {
    gst_event_unref (event);
  }
  return ret;
}

static GstFlowReturn
handle_segment_edge (GstGemma3nDecoder *self, GstEvent *event)
{
  GstGemma3nSegmentEdge edge;
  guint64 index;
  GstClockTime start, duration;
  gst_gemma3n_segment_event_parse (event, &edge, &index, &start, &duration, NULL);
  gst_event_unref (event);
  GstFlowReturn ret = GST_FLOW_OK;
  if (edge == GST_GEMMA3N_SEGMENT_START) {
    if (self->seg.open) /* the previous segment's END never came */
      ret = close_segment (self);
    return ret == GST_FLOW_OK ? open_segment (self, index, start, duration) : ret;
  }
  if (!self->seg.open) /* a segment that had no START here: nothing of it was taken */
    return GST_FLOW_OK;
  if (GST_CLOCK_TIME_IS_VALID (start))
    self->seg.start = start;
  if (GST_CLOCK_TIME_IS_VALID (duration))
    self->seg.duration = duration;
  return close_segment (self);
}

static GstFlowReturn
handle_event (GstGemma3nDecoder *self, SinkInfo *info, GstEvent *event)
{
  if (gst_gemma3n_segment_event_parse (event, NULL, NULL, NULL, NULL, NULL)) {
    if (info->kind == SINK_AUDIO)
      return handle_segment_edge (self, event);
    gst_event_unref (event);
    return GST_FLOW_OK;
  }
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_EOS:
      return handle_eos (self, info, event);
    case GST_EVENT_GAP: {
      GstClockTime start, duration, lateness;
      gst_event_parse_gap (event, &start, &duration);
      gst_event_unref (event);
      GST_OBJECT_LOCK (self);
      lateness = self->lateness_ms * GST_MSECOND;
      GST_OBJECT_UNLOCK (self);
      push_gap (self, shifted (start, lateness), duration);
      return GST_FLOW_OK;
    }
    case GST_EVENT_CAPS:
      gst_event_unref (event);
      gst_pad_push_event (self->src, src_caps_event ());
      return GST_FLOW_OK;
    default:
      /* the output's stream follows the audio's (stream-start, segment, tags); text pads' are their own */
      if (info->kind == SINK_AUDIO)
        gst_pad_push_event (self->src, event);
      else
        gst_event_unref (event);
      return GST_FLOW_OK;
  }
}

static GstFlowReturn
handle_item (GstGemma3nDecoder *self, SinkInfo *info, GstMiniObject *item)
{
  GST_OBJECT_LOCK (self);
  gboolean released = !info->pad;
  GST_OBJECT_UNLOCK (self);
  if (released) {
    gst_mini_object_unref (item);
    return GST_FLOW_OK;
  }
  /* while a segment's turn is open, what does not belong to it waits for its END */
  if (self->seg.open && (info->kind != SINK_AUDIO || (GST_IS_EVENT (item) && GST_EVENT_TYPE (item) == GST_EVENT_GAP))) {
    Deferred *d = g_new (Deferred, 1);
    d->item = item;
    d->info = info;
    g_queue_push_tail (&self->deferred, d);
    return GST_FLOW_OK;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_IS_BUFFER (item)) {
    GstBuffer *buf = GST_BUFFER_CAST (item);
    ret = info->kind == SINK_AUDIO ? handle_audio_buffer (self, buf) : handle_text_buffer (self, buf);
    gst_buffer_unref (buf);
  } else if (GST_IS_EVENT (item)) {
    ret = handle_event (self, info, GST_EVENT_CAST (item));
  } else {
    gst_mini_object_unref (item);
  }
  return ret;
}

static void
worker_loop (gpointer user_data)
{
  GstGemma3nDecoder *self = user_data;
  g_atomic_pointer_set (&self->worker_thread, g_thread_self ());
  if (!self->seg.open)
    answer_pending_asks (self);
  gpointer tag = NULL;
  GstMiniObject *item = gst_gemma3n_queue_pop (self->queue, &tag);
  if (!item) {
    GST_DEBUG_OBJECT (self, "flushing: worker pauses");
    gst_pad_pause_task (self->src);
    return;
  }
  /* the wake-up of an `ask` (tag NULL) only brings the worker to the top of the loop */
  GstFlowReturn ret = tag ? handle_item (self, tag, item) : (gst_mini_object_unref (item), GST_FLOW_OK);
  gst_gemma3n_queue_done (self->queue);
  if (ret == GST_FLOW_OK)
    return;
  GST_OBJECT_LOCK (self);
  self->src_result = ret;
  GST_OBJECT_UNLOCK (self);
  /* model failures (GST_FLOW_ERROR) posted their own error */
  if (ret == GST_FLOW_FLUSHING
      || gst_gemma3n_worker_end_on_fatal (GST_ELEMENT_CAST (self), self->src, ret, ret == GST_FLOW_ERROR))
    gst_pad_pause_task (self->src);
}

/* ---------------------------------------------------------------- streaming threads */

static void
reset_worker_state (GstGemma3nDecoder *self)
{
  self->seg.open = FALSE;
  clear_deferred (self);
  GST_OBJECT_LOCK (self);
  for (guint i = 0; i < self->sink_infos->len; i++)
    ((SinkInfo *) g_ptr_array_index (self->sink_infos, i))->eos = FALSE;
  self->src_result = GST_FLOW_OK;
  GST_OBJECT_UNLOCK (self);
}

/* Stops the worker between turns or in the middle of one (cancelled); pending questions get NULL. */
static void
stop_worker (GstGemma3nDecoder *self, gboolean for_good)
{
  gst_gemma3n_queue_set_flushing (self->queue, TRUE);
  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
  fail_pending_asks (self, for_good);
}

/* Forgets the turn the worker was in (a flushed segment never happened) and starts it again. */
static gboolean
restart_worker (GstGemma3nDecoder *self)
{
  GError *error = NULL;
  if (self->session && !g3n_session_discard_turn (self->session, &error)) {
    GST_WARNING_OBJECT (self, "could not drop the flushed turn: %s", error->message);
    g_clear_error (&error);
  }
  if (self->cancellable)
    g_cancellable_reset (self->cancellable);
  reset_worker_state (self);
  gst_gemma3n_queue_set_flushing (self->queue, FALSE);
  g_mutex_lock (&self->ask_lock);
  self->accepting_asks = TRUE;
  g_mutex_unlock (&self->ask_lock);
  return gst_pad_start_task (self->src, worker_loop, self, NULL);
}

static gboolean
upstream_live (GstGemma3nDecoder *self)
{
  GST_OBJECT_LOCK (self);
  gboolean live = self->live;
  GST_OBJECT_UNLOCK (self);
  return live;
}

/* Streaming thread: everything goes to the worker, in order. */
static gboolean
queue_item (GstGemma3nDecoder *self, GstPad *pad, GstMiniObject *item)
{
  return gst_gemma3n_queue_push_reporting (self->queue, item, gst_pad_get_element_private (pad),
                                           upstream_live (self), GST_ELEMENT_CAST (self));
}

static GstFlowReturn
gst_gemma3n_decoder_chain (GstPad *pad, GstObject *parent, GstBuffer *buf)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (parent);
  GST_OBJECT_LOCK (self);
  GstFlowReturn ret = self->src_result;
  GST_OBJECT_UNLOCK (self);
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  return queue_item (self, pad, GST_MINI_OBJECT_CAST (buf)) ? GST_FLOW_OK : GST_FLOW_FLUSHING;
}

static gboolean
check_audio_caps (GstGemma3nDecoder *self, GstCaps *caps)
{
  const GstStructure *s = gst_caps_get_structure (caps, 0);
  gint width = 0;
  if (!gst_structure_get_int (s, "width", &width) || width != self->n_embd) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Embeddings of width %d, the model's are %d wide", width,
                       self->n_embd), ("caps %" GST_PTR_FORMAT ": width must equal the text hidden size of %s",
                       caps, g3n_model_path (self->model)));
    return FALSE;
  }
  return TRUE;
}

static gboolean
gst_gemma3n_decoder_sink_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (parent);
  SinkInfo *info = gst_pad_get_element_private (pad);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_START:
      stop_worker (self, FALSE);
      gst_pad_push_event (self->src, event);
      gst_pad_pause_task (self->src);
      return TRUE;
    case GST_EVENT_FLUSH_STOP:
      /* (a FLUSH_STOP without FLUSH_START still finds the worker stopped) */
      stop_worker (self, FALSE);
      gst_pad_pause_task (self->src);
      gst_pad_push_event (self->src, event);
      if (!restart_worker (self))
        return FALSE;
      /* the flush may have dropped the queued stream-start, caps or tags that src had not had yet */
      gst_gemma3n_queue_requeue_sticky (self->queue, self->audio_sink, self->src, self->audio_info,
                                        upstream_live (self), GST_ELEMENT_CAST (self));
      return TRUE;
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      if (info->kind == SINK_AUDIO && !check_audio_caps (self, caps)) {
        gst_event_unref (event);
        return FALSE;
      }
      if (info->kind != SINK_AUDIO) { /* src's caps follow the audio: nothing to tell */
        gst_event_unref (event);
        return TRUE;
      }
      break;
    }
    case GST_EVENT_SEGMENT: {
      const GstSegment *segment;
      gst_event_parse_segment (event, &segment);
      if (info->kind == SINK_AUDIO && segment->format != GST_FORMAT_TIME) {
        GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Embeddings need a TIME segment"),
                           ("got a %s segment on audio_sink", gst_format_get_name (segment->format)));
        gst_event_unref (event);
        return FALSE;
      }
      break;
    }
    case GST_EVENT_STREAM_START:
      if (info->kind == SINK_AUDIO) {
        gboolean live = gst_gemma3n_upstream_is_live (self->audio_sink);
        GST_OBJECT_LOCK (self);
        self->live = live;
        GST_OBJECT_UNLOCK (self);
        GST_INFO_OBJECT (self, "upstream is %s", live ? "live: a backlog is dropped" : "not live");
      }
      break;
    default:
      break;
  }
  if (!GST_EVENT_IS_SERIALIZED (event))
    return info->kind == SINK_AUDIO ? gst_pad_event_default (pad, parent, event) : (gst_event_unref (event), TRUE);
  return queue_item (self, pad, GST_MINI_OBJECT_CAST (event));
}

static GstCaps *
audio_sink_caps (GstGemma3nDecoder *self, GstCaps *filter)
{
  GstCaps *caps = gst_static_pad_template_get_caps (&audio_sink_template);
  GST_OBJECT_LOCK (self);
  gint width = self->n_embd;
  GST_OBJECT_UNLOCK (self);
  if (width > 0) {
    caps = gst_caps_make_writable (caps);
    gst_caps_set_simple (caps, "width", G_TYPE_INT, width, NULL);
  }
  if (filter) {
    GstCaps *both = gst_caps_intersect_full (filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (caps);
    caps = both;
  }
  return caps;
}

static gboolean
gst_gemma3n_decoder_sink_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (parent);
  SinkInfo *info = gst_pad_get_element_private (pad);
  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_CAPS:
      if (info->kind == SINK_AUDIO) {
        GstCaps *filter, *caps;
        gst_query_parse_caps (query, &filter);
        caps = audio_sink_caps (self, filter);
        gst_query_set_caps_result (query, caps);
        gst_caps_unref (caps);
        return TRUE;
      }
      break;
    case GST_QUERY_ACCEPT_CAPS: {
      /* any width is accepted here, so that a wrong one reaches the CAPS event and its error names both */
      GstCaps *caps;
      gst_query_parse_accept_caps (query, &caps);
      GstCaps *tmpl = gst_pad_get_pad_template_caps (pad);
      gst_query_set_accept_caps_result (query, gst_caps_is_subset (caps, tmpl));
      gst_caps_unref (tmpl);
      return TRUE;
    }
    case GST_QUERY_DRAIN:
      /* everything queued before is answered first */
      if (!gst_gemma3n_queue_wait_empty (self->queue))
        return FALSE;
      break;
    default:
      break;
  }
  return gst_pad_query_default (pad, parent, query);
}

static gboolean
gst_gemma3n_decoder_src_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (parent);
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return gst_pad_query_default (pad, parent, query);
  GstQuery *up = gst_query_new_latency ();
  gboolean ok;
  if (gst_pad_is_linked (self->audio_sink)) {
    ok = gst_pad_peer_query (self->audio_sink, up);
  } else { /* text turns only: our own latency, not live */
    gst_query_set_latency (up, FALSE, 0, GST_CLOCK_TIME_NONE);
    ok = TRUE;
  }
  if (ok) {
    gboolean live;
    GstClockTime min, max, latency;
    gst_query_parse_latency (up, &live, &min, &max);
    GST_OBJECT_LOCK (self);
    latency = self->latency_ms * GST_MSECOND;
    GST_OBJECT_UNLOCK (self);
    /* a caption comes at most `latency` after its segment's end */
    min += latency;
    if (GST_CLOCK_TIME_IS_VALID (max))
      max += latency;
    gst_query_set_latency (query, live, min, max);
  }
  gst_query_unref (up);
  return ok;
}

static gboolean
gst_gemma3n_decoder_src_activate_mode (GstPad *pad, GstObject *parent, GstPadMode mode, gboolean active)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (parent);
  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  if (active)
    return restart_worker (self);
  stop_worker (self, TRUE);
  return gst_pad_stop_task (pad);
}

/* ---------------------------------------------------------------- ask */

static gchar *
gst_gemma3n_decoder_ask (GstGemma3nDecoder *self, const gchar *question)
{
  if (!question || !*question || !g_utf8_validate (question, -1, NULL))
    return NULL;
  /* e.g. from a bus sync handler of our own caption message: the worker would wait for itself */
  if (g_atomic_pointer_get (&self->worker_thread) == (gpointer) g_thread_self ()) {
    GST_WARNING_OBJECT (self, "ask from the element's own worker thread refused (it would never be answered)");
    return NULL;
  }
  Ask ask = { g_strdup (question), NULL, FALSE };
  g_mutex_lock (&self->ask_lock);
  if (!self->accepting_asks) {
    g_mutex_unlock (&self->ask_lock);
    g_free (ask.question);
    return NULL;
  }
  g_queue_push_tail (&self->asks, &ask);
  g_mutex_unlock (&self->ask_lock);
  /* wakes the worker if it waits for input; tag NULL: no pad */
  GstEvent *wake = gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM_OOB, gst_structure_new_empty ("gemma3n-ask"));
  gboolean queued = gst_gemma3n_queue_push (self->queue, GST_MINI_OBJECT_CAST (wake), NULL, TRUE, NULL);
  g_mutex_lock (&self->ask_lock);
  if (!queued && !ask.done) {
    g_queue_remove (&self->asks, &ask);
    ask.done = TRUE;
  }
  while (!ask.done)
    g_cond_wait (&self->ask_cond, &self->ask_lock);
  g_mutex_unlock (&self->ask_lock);
  g_free (ask.question);
  return ask.answer;
}

/* ---------------------------------------------------------------- state */

typedef struct {
  gchar *model_path, *quant_cache, *system_prompt, *session_file;
  G3nQuantType quant;
  G3nKvType kv_type;
  gint threads;
  guint context_size;
  gboolean audio_padding;
  guint prefill_batch;
  gboolean custom_without_prompt;
} LoadSettings;

static void
load_settings_read (GstGemma3nDecoder *self, LoadSettings *ls)
{
  GST_OBJECT_LOCK (self);
  ls->model_path = g_strdup (self->model_path);
  ls->quant_cache = g_strdup (self->quant_cache);
  ls->system_prompt = g_strdup (self->system_prompt);
  ls->session_file = g_strdup (self->session_file);
  ls->quant = self->quant;
  ls->kv_type = self->kv_type;
  ls->threads = self->threads;
  ls->context_size = self->context_size;
  ls->audio_padding = self->audio_padding;
  ls->prefill_batch = self->prefill_batch;
  ls->custom_without_prompt = self->task == GST_GEMMA3N_DECODER_TASK_CUSTOM && !(self->prompt && *self->prompt);
  GST_OBJECT_UNLOCK (self);
}

static void
load_settings_clear (LoadSettings *ls)
{
  g_free (ls->model_path);
  g_free (ls->quant_cache);
  g_free (ls->system_prompt);
  g_free (ls->session_file);
}

static void
post_progress (GstGemma3nDecoder *self, GstProgressType type, const char *path)
{
  const char *what = type == GST_PROGRESS_TYPE_START      ? "Loading %s"
                     : type == GST_PROGRESS_TYPE_COMPLETE ? "Loaded %s"
                                                          : "Could not load %s";
  gchar *text = g_strdup_printf (what, path);
  gst_element_post_message (GST_ELEMENT_CAST (self),
                            gst_message_new_progress (GST_OBJECT_CAST (self), type, "load-model", text));
  g_free (text);
}

static G3nModel *
acquire_model (GstGemma3nDecoder *self, const LoadSettings *ls)
{
  G3nModelParams mp = g3n_model_default_params ();
  mp.quant = ls->quant;
  mp.quant_cache = ls->quant_cache && *ls->quant_cache ? ls->quant_cache : NULL;
  mp.n_threads = ls->threads;
  GError *error = NULL;
  post_progress (self, GST_PROGRESS_TYPE_START, ls->model_path);
  G3nModel *model = gst_gemma3n_model_acquire (ls->model_path, &mp, &error);
  if (!model) {
    post_progress (self, GST_PROGRESS_TYPE_ERROR, ls->model_path);
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Could not load the Gemma 3n model %s", ls->model_path),
                       ("%s", error->message));
    g_error_free (error);
    return NULL;
  }
  post_progress (self, GST_PROGRESS_TYPE_COMPLETE, ls->model_path);
  /* the embeddings come from elsewhere, but from this model's tower: without one (a text-only checkpoint,
   * or a config naming a tower whose weights are missing) there is nothing to hear */
  G3nAudioEncoder *tower = g3n_model_has_audio_tower (model) ? g3n_audio_encoder_new (model, &error) : NULL;
  if (!tower) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("The model %s has no audio tower", ls->model_path),
                       ("%s", error ? error->message : "its config.json describes no audio_config"));
    g_clear_error (&error);
    gst_gemma3n_model_release (model);
    return NULL;
  }
  g3n_audio_encoder_free (tower);
  return model;
}

/* The session's state from session-file when it exists, else a new conversation with the system prompt. */
static gboolean
start_conversation (GstGemma3nDecoder *self, const LoadSettings *ls)
{
  GError *error = NULL;
  if (ls->session_file && *ls->session_file && g_file_test (ls->session_file, G_FILE_TEST_EXISTS)) {
    if (!g3n_session_load (self->session, ls->session_file, &error)) {
      GST_ELEMENT_ERROR (self, RESOURCE, READ, ("Could not resume the conversation in %s", ls->session_file),
                         ("%s", error->message));
      g_error_free (error);
      return FALSE;
    }
    GST_INFO_OBJECT (self, "resumed %s: %d positions", ls->session_file, g3n_session_n_past (self->session));
  } else if (ls->system_prompt && *ls->system_prompt
             && !g3n_session_set_system (self->session, ls->system_prompt, &error)) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("Could not set the system prompt"), ("%s", error->message));
    g_error_free (error);
    return FALSE;
  }
  g_atomic_int_set (&self->n_past, g3n_session_n_past (self->session));
  return TRUE;
}

static gboolean
open_session (GstGemma3nDecoder *self, const LoadSettings *ls)
{
  GError *error = NULL;
  gchar *tok_path = g_build_filename (ls->model_path, "tokenizer.json", NULL);
  self->tokenizer = g3n_tokenizer_new_from_file (tok_path, &error);
  if (!self->tokenizer) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Could not read the tokenizer %s", tok_path),
                       ("%s", error->message));
    g_free (tok_path);
    g_error_free (error);
    return FALSE;
  }
  g_free (tok_path);
  self->format = g3n_chat_format_load (ls->model_path, &error);
  if (!self->format) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Could not read the chat format of %s", ls->model_path),
                       ("%s", error->message));
    g_error_free (error);
    return FALSE;
  }
  G3nSessionParams sp = g3n_session_default_params ();
  sp.n_ctx = (int) ls->context_size;
  sp.keep_first_turn = TRUE;
  sp.kv_type = ls->kv_type;
  sp.n_threads = ls->threads;
  sp.audio_padding = ls->audio_padding;
  sp.prefill_batch = (int) ls->prefill_batch;
  self->session = g3n_session_new (self->model, self->tokenizer, self->format, &sp, &error);
  if (!self->session) {
    GST_ELEMENT_ERROR (self, LIBRARY, INIT, ("Could not start a conversation of %u positions", ls->context_size),
                       ("%s", error->message));
    g_error_free (error);
    return FALSE;
  }
  self->cancellable = g_cancellable_new ();
  g3n_session_set_cancellable (self->session, self->cancellable);
  return start_conversation (self, ls);
}

static void
close_conversation (GstGemma3nDecoder *self)
{
  g_clear_pointer (&self->session, g3n_session_free);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->format, g3n_chat_format_free);
  g_clear_pointer (&self->tokenizer, g3n_tokenizer_free);
  g_clear_pointer (&self->model, gst_gemma3n_model_release);
  GST_OBJECT_LOCK (self);
  self->n_embd = 0;
  GST_OBJECT_UNLOCK (self);
}

static gboolean
open_conversation (GstGemma3nDecoder *self)
{
  LoadSettings ls;
  load_settings_read (self, &ls);
  gboolean ok = FALSE;
  if (!ls.model_path || !*ls.model_path) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No model given"),
                       ("set the model property to a Gemma 3n checkpoint folder"));
  } else if (ls.custom_without_prompt) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("task=custom needs a prompt"),
                       ("set the prompt property to the instruction each segment is answered with"));
  } else if ((self->model = acquire_model (self, &ls))) {
    GST_OBJECT_LOCK (self);
    self->n_embd = g3n_model_n_embd (self->model);
    GST_OBJECT_UNLOCK (self);
    ok = open_session (self, &ls);
  }
  load_settings_clear (&ls);
  if (!ok)
    close_conversation (self);
  return ok;
}

static GstStateChangeReturn
gst_gemma3n_decoder_change_state (GstElement *element, GstStateChange transition)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (element);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY && !open_conversation (self))
    return GST_STATE_CHANGE_FAILURE;
  GstStateChangeReturn ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY: {
      /* the worker is stopped (src deactivated): the open turn is dropped, the rest kept */
      GError *error = NULL;
      if (self->session && !g3n_session_discard_turn (self->session, &error)) {
        GST_WARNING_OBJECT (self, "could not drop the open turn: %s", error->message);
        g_clear_error (&error);
      }
      if (self->cancellable)
        g_cancellable_reset (self->cancellable);
      reset_worker_state (self);
      g_atomic_int_set (&self->n_past, self->session ? g3n_session_n_past (self->session) : 0);
      save_session (self);
      break;
    }
    case GST_STATE_CHANGE_READY_TO_NULL:
      close_conversation (self);
      break;
    default:
      break;
  }
  return ret;
}

/* ---------------------------------------------------------------- pads */

static SinkInfo *
add_sink_info (GstGemma3nDecoder *self, GstPad *pad, SinkKind kind)
{
  SinkInfo *info = g_new0 (SinkInfo, 1);
  info->kind = kind;
  info->pad = pad;
  GST_OBJECT_LOCK (self);
  g_ptr_array_add (self->sink_infos, info);
  GST_OBJECT_UNLOCK (self);
  gst_pad_set_element_private (pad, info);
  gst_pad_set_chain_function (pad, GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_chain));
  gst_pad_set_event_function (pad, GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_sink_event));
  gst_pad_set_query_function (pad, GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_sink_query));
  return info;
}

static GstPad *
gst_gemma3n_decoder_request_new_pad (GstElement *element, GstPadTemplate *templ, const gchar *name,
                                     const GstCaps *caps)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (element);
  GST_OBJECT_LOCK (self);
  gchar *pad_name = name ? g_strdup (name) : g_strdup_printf ("text_sink_%u", self->next_text_pad);
  self->next_text_pad++;
  GST_OBJECT_UNLOCK (self);
  GstPad *pad = gst_pad_new_from_template (templ, pad_name);
  g_free (pad_name);
  add_sink_info (self, pad, SINK_TEXT);
  gst_pad_set_active (pad, GST_STATE (element) > GST_STATE_READY || GST_STATE_PENDING (element) > GST_STATE_READY);
  if (!gst_element_add_pad (element, pad)) {
    GST_OBJECT_LOCK (self);
    ((SinkInfo *) gst_pad_get_element_private (pad))->pad = NULL;
    GST_OBJECT_UNLOCK (self);
    gst_object_unref (pad);
    return NULL;
  }
  return pad;
}

static void
gst_gemma3n_decoder_release_pad (GstElement *element, GstPad *pad)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (element);
  SinkInfo *info = gst_pad_get_element_private (pad);
  GST_OBJECT_LOCK (self);
  info->pad = NULL; /* its items still queued are dropped by the worker */
  GST_OBJECT_UNLOCK (self);
  gst_pad_set_active (pad, FALSE);
  gst_element_remove_pad (element, pad);
}

/* ---------------------------------------------------------------- properties */

/* Properties that shape the loaded model or the session: changed in NULL or READY only, used at the next
 * NULL→READY. */
static gboolean
can_change_setup_locked (GstGemma3nDecoder *self, GParamSpec *pspec)
{
  if (GST_STATE (self) <= GST_STATE_READY)
    return TRUE;
  GST_WARNING_OBJECT (self, "%s can only be changed in the NULL or READY state", pspec->name);
  return FALSE;
}

static void
replace_string (gchar **field, const GValue *value)
{
  g_free (*field);
  *field = g_value_dup_string (value);
}

static void
gst_gemma3n_decoder_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (object);
  gboolean latency_changed = FALSE;
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      if (can_change_setup_locked (self, pspec))
        replace_string (&self->model_path, value);
      break;
    case PROP_QUANT:
      if (can_change_setup_locked (self, pspec))
        self->quant = g_value_get_enum (value);
      break;
    case PROP_QUANT_CACHE:
      if (can_change_setup_locked (self, pspec))
        replace_string (&self->quant_cache, value);
      break;
    case PROP_KV_TYPE:
      if (can_change_setup_locked (self, pspec))
        self->kv_type = g_value_get_enum (value);
      break;
    case PROP_THREADS:
      if (can_change_setup_locked (self, pspec))
        self->threads = g_value_get_int (value);
      break;
    case PROP_CONTEXT_SIZE:
      if (can_change_setup_locked (self, pspec))
        self->context_size = g_value_get_uint (value);
      break;
    case PROP_AUDIO_PADDING:
      if (can_change_setup_locked (self, pspec))
        self->audio_padding = g_value_get_boolean (value);
      break;
    case PROP_PREFILL_BATCH:
      if (can_change_setup_locked (self, pspec))
        self->prefill_batch = g_value_get_uint (value);
      break;
    case PROP_SYSTEM_PROMPT:
      if (can_change_setup_locked (self, pspec))
        replace_string (&self->system_prompt, value);
      break;
    case PROP_SESSION_FILE:
      replace_string (&self->session_file, value);
      break;
    case PROP_TASK:
      self->task = g_value_get_enum (value);
      break;
    case PROP_PROMPT:
      replace_string (&self->prompt, value);
      break;
    case PROP_LANGUAGE_CODE:
      replace_string (&self->language_code, value);
      break;
    case PROP_TARGET_LANGUAGE:
      replace_string (&self->target_language, value);
      break;
    case PROP_MAX_NEW_TOKENS:
      self->max_new_tokens = g_value_get_uint (value);
      break;
    case PROP_TEMPERATURE:
      self->temperature = g_value_get_double (value);
      break;
    case PROP_SEED:
      self->seed = g_value_get_uint64 (value);
      break;
    case PROP_LATENCY:
      latency_changed = self->latency_ms != g_value_get_uint (value);
      self->latency_ms = g_value_get_uint (value);
      break;
    case PROP_LATENESS:
      self->lateness_ms = g_value_get_uint (value);
      break;
    case PROP_TOKENS_PER_SECOND:
      self->tokens_per_second = g_value_get_double (value);
      break;
    case PROP_REPEAT_LIMIT:
      self->repeat_limit = g_value_get_uint (value);
      break;
    case PROP_MAX_BACKLOG:
      self->max_backlog_ms = g_value_get_uint (value);
      gst_gemma3n_queue_set_limit (self->queue, self->max_backlog_ms * GST_MSECOND);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
  if (latency_changed)
    gst_element_post_message (GST_ELEMENT_CAST (self), gst_message_new_latency (GST_OBJECT_CAST (self)));
}

static void
gst_gemma3n_decoder_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (object);
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL: g_value_set_string (value, self->model_path); break;
    case PROP_QUANT: g_value_set_enum (value, self->quant); break;
    case PROP_QUANT_CACHE: g_value_set_string (value, self->quant_cache); break;
    case PROP_KV_TYPE: g_value_set_enum (value, self->kv_type); break;
    case PROP_THREADS: g_value_set_int (value, self->threads); break;
    case PROP_TASK: g_value_set_enum (value, self->task); break;
    case PROP_PROMPT: g_value_set_string (value, self->prompt); break;
    case PROP_SYSTEM_PROMPT: g_value_set_string (value, self->system_prompt); break;
    case PROP_LANGUAGE_CODE: g_value_set_string (value, self->language_code); break;
    case PROP_TARGET_LANGUAGE: g_value_set_string (value, self->target_language); break;
    case PROP_MAX_NEW_TOKENS: g_value_set_uint (value, self->max_new_tokens); break;
    case PROP_CONTEXT_SIZE: g_value_set_uint (value, self->context_size); break;
    case PROP_TEMPERATURE: g_value_set_double (value, self->temperature); break;
    case PROP_SEED: g_value_set_uint64 (value, self->seed); break;
    case PROP_LATENCY: g_value_set_uint (value, self->latency_ms); break;
    case PROP_LATENESS: g_value_set_uint (value, self->lateness_ms); break;
    case PROP_SESSION_FILE: g_value_set_string (value, self->session_file); break;
    case PROP_AUDIO_PADDING: g_value_set_boolean (value, self->audio_padding); break;
    case PROP_PREFILL_BATCH: g_value_set_uint (value, self->prefill_batch); break;
    case PROP_TOKENS_PER_SECOND: g_value_set_double (value, self->tokens_per_second); break;
    case PROP_REPEAT_LIMIT: g_value_set_uint (value, self->repeat_limit); break;
    case PROP_MAX_BACKLOG: g_value_set_uint (value, self->max_backlog_ms); break;
    case PROP_N_PAST: g_value_set_int (value, g_atomic_int_get (&self->n_past)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* ---------------------------------------------------------------- GObject */

static void
gst_gemma3n_decoder_finalize (GObject *object)
{
  GstGemma3nDecoder *self = GST_GEMMA3N_DECODER (object);
  close_conversation (self);
  clear_deferred (self);
  gst_gemma3n_queue_free (self->queue);
  g_ptr_array_free (self->sink_infos, TRUE);
  g_free (self->model_path);
  g_free (self->quant_cache);
  g_free (self->prompt);
  g_free (self->system_prompt);
  g_free (self->language_code);
  g_free (self->target_language);
  g_free (self->session_file);
  g_mutex_clear (&self->ask_lock);
  g_cond_clear (&self->ask_cond);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_gemma3n_decoder_init (GstGemma3nDecoder *self)
{
  self->quant = DEFAULT_QUANT;
  self->kv_type = DEFAULT_KV_TYPE;
  self->threads = DEFAULT_THREADS;
  self->task = DEFAULT_TASK;
  self->target_language = g_strdup (DEFAULT_TARGET_LANGUAGE);
  self->max_new_tokens = DEFAULT_MAX_NEW_TOKENS;
  self->context_size = DEFAULT_CONTEXT_SIZE;
  self->temperature = DEFAULT_TEMPERATURE;
  self->seed = DEFAULT_SEED;
  self->latency_ms = DEFAULT_LATENCY;
  self->lateness_ms = DEFAULT_LATENESS;
  self->audio_padding = DEFAULT_AUDIO_PADDING;
  self->prefill_batch = DEFAULT_PREFILL_BATCH;
  self->tokens_per_second = DEFAULT_TOKENS_PER_SECOND;
  self->repeat_limit = DEFAULT_REPEAT_LIMIT;
  self->max_backlog_ms = DEFAULT_MAX_BACKLOG;
  self->src_result = GST_FLOW_OK;
  self->sink_infos = g_ptr_array_new_with_free_func (g_free);
  self->queue = gst_gemma3n_queue_new (self->max_backlog_ms * GST_MSECOND);
  g_queue_init (&self->deferred);
  g_queue_init (&self->asks);
  g_mutex_init (&self->ask_lock);
  g_cond_init (&self->ask_cond);

  self->audio_sink = gst_pad_new_from_static_template (&audio_sink_template, "audio_sink");
  self->audio_info = add_sink_info (self, self->audio_sink, SINK_AUDIO);
  gst_element_add_pad (GST_ELEMENT_CAST (self), self->audio_sink);

  self->src = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_use_fixed_caps (self->src);
  gst_pad_set_query_function (self->src, GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_src_query));
  gst_pad_set_activatemode_function (self->src, GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_src_activate_mode));
  gst_element_add_pad (GST_ELEMENT_CAST (self), self->src);
}

#define SETUP_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)
#define LIVE_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING)

static void
install_properties (GObjectClass *oc)
{
  g_object_class_install_property (oc, PROP_MODEL, g_param_spec_string ("model", "Model",
      "Gemma 3n checkpoint folder (config.json, safetensors, tokenizer.json), with an audio tower",
      DEFAULT_MODEL, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_QUANT, g_param_spec_enum ("quant", "Quantisation",
      "Storage of the text decoder's weights, converted at load (shared with other elements of the same "
      "model and quant)", GST_TYPE_GEMMA3N_DECODER_QUANT, DEFAULT_QUANT, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_QUANT_CACHE, g_param_spec_string ("quant-cache", "Quant cache",
      "File of the quantised weights: read when it exists, else written after the conversion",
      DEFAULT_QUANT_CACHE, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_KV_TYPE, g_param_spec_enum ("kv-type", "KV cache type",
      "Storage of the conversation's key/value cache", GST_TYPE_GEMMA3N_DECODER_KV_TYPE, DEFAULT_KV_TYPE,
      SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_THREADS, g_param_spec_int ("threads", "Threads",
      "Threads the decoder computes with (0 = all cores)", 0, 256, DEFAULT_THREADS, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_TASK, g_param_spec_enum ("task", "Task",
      "What each speech segment is answered with (when prompt is not set)", GST_TYPE_GEMMA3N_DECODER_TASK,
      DEFAULT_TASK, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_PROMPT, g_param_spec_string ("prompt", "Prompt",
      "The instruction after each segment's audio, instead of the task's (required by task=custom)",
      DEFAULT_PROMPT, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_SYSTEM_PROMPT, g_param_spec_string ("system-prompt",
      "System prompt", "Text before the first turn, kept however long the conversation runs (not applied "
      "when session-file resumes a conversation)", DEFAULT_SYSTEM_PROMPT, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_LANGUAGE_CODE, g_param_spec_string ("language-code",
      "Language code", "Language of the speech, named in the transcribe instruction (\"\" or NULL: not said)",
      DEFAULT_LANGUAGE_CODE, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_TARGET_LANGUAGE, g_param_spec_string ("target-language",
      "Target language", "Language task=translate translates into", DEFAULT_TARGET_LANGUAGE, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_MAX_NEW_TOKENS, g_param_spec_uint ("max-new-tokens",
      "Max new tokens", "Most tokens an answer has (0: the audio only enters the conversation, every "
      "segment gives a GAP)", 0, G_MAXINT, DEFAULT_MAX_NEW_TOKENS, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_CONTEXT_SIZE, g_param_spec_uint ("context-size", "Context size",
      "Positions of the conversation; when full, the oldest exchanges after the first are shifted out",
      64, 1 << 20, DEFAULT_CONTEXT_SIZE, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_TEMPERATURE, g_param_spec_double ("temperature", "Temperature",
      "Sampling temperature (0 = greedy: the most likely token, reproducible)", 0.0, 100.0,
      DEFAULT_TEMPERATURE, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_SEED, g_param_spec_uint64 ("seed", "Seed",
      "Seed of the sampler when temperature > 0 (0 = from the clock)", 0, G_MAXUINT64, DEFAULT_SEED,
      LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_LATENCY, g_param_spec_uint ("latency", "Latency",
      "Milliseconds a caption may come after its segment's end, added to the pipeline's latency", 0,
      G_MAXINT, DEFAULT_LATENCY, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_LATENESS, g_param_spec_uint ("lateness", "Lateness",
      "Milliseconds added to every output timestamp (captions shown that much after the speech)", 0,
      G_MAXINT, DEFAULT_LATENESS, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_SESSION_FILE, g_param_spec_string ("session-file",
      "Session file", "The conversation resumed from this file at start when it exists, and saved to it at "
      "EOS and when stopping", DEFAULT_SESSION_FILE, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_AUDIO_PADDING, g_param_spec_boolean ("audio-padding",
      "Audio padding", "Pad every clip to the processor's soft-token count as the reference does (FALSE: "
      "only the clip's own tokens, fewer positions and faster, answers may differ)", DEFAULT_AUDIO_PADDING,
      SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_PREFILL_BATCH, g_param_spec_uint ("prefill-batch",
      "Prefill batch", "Soft tokens (160 ms of audio each) prefilled at a time while a segment is spoken: "
      "smaller batches leave less to do after its end, larger ones read the weights fewer times", 1, 188,
      DEFAULT_PREFILL_BATCH, SETUP_FLAGS));
  g_object_class_install_property (oc, PROP_TOKENS_PER_SECOND, g_param_spec_double ("tokens-per-second",
      "Tokens per second", "A segment's answer is capped at 8 + this many tokens per second of speech "
      "(0 = only max-new-tokens)", 0.0, 1000.0, DEFAULT_TOKENS_PER_SECOND, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_REPEAT_LIMIT, g_param_spec_uint ("repeat-limit", "Repeat limit",
      "Stop an answer whose last tokens are one n-gram (up to 16 tokens) repeated this many times, keeping "
      "one (0 or 1 = off)", 0, 1000, DEFAULT_REPEAT_LIMIT, LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_MAX_BACKLOG, g_param_spec_uint ("max-backlog", "Max backlog",
      "Milliseconds of audio that may wait for the decoder: beyond it a live stream's oldest waiting "
      "segments are dropped (with a warning), a non-live one waits", 0, G_MAXINT, DEFAULT_MAX_BACKLOG,
      LIVE_FLAGS));
  g_object_class_install_property (oc, PROP_N_PAST, g_param_spec_int ("n-past", "Positions",
      "Positions the conversation holds now (at most context-size)", 0, G_MAXINT, 0,
      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
}

static void
gst_gemma3n_decoder_class_init (GstGemma3nDecoderClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GstElementClass *ec = GST_ELEMENT_CLASS (klass);
  GST_DEBUG_CATEGORY_INIT (gst_gemma3n_decoder_debug, "gemma3ndecoder", 0, "Gemma 3n conversation decoder");

  oc->set_property = gst_gemma3n_decoder_set_property;
  oc->get_property = gst_gemma3n_decoder_get_property;
  oc->finalize = gst_gemma3n_decoder_finalize;
  install_properties (oc);

  /**
   * GstGemma3nDecoder::ask:
   * @decoder: the element
   * @question: a question, UTF-8
   *
   * Asks the live conversation between segments (after the open one's END) and waits for the answer.
   *
   * Returns: (transfer full) (nullable): the answer, or NULL when the element is not running or flushes.
   */
  signals[SIGNAL_ASK] = g_signal_new_class_handler ("ask", G_TYPE_FROM_CLASS (klass),
                                                    G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
                                                    G_CALLBACK (gst_gemma3n_decoder_ask), NULL, NULL, NULL,
                                                    G_TYPE_STRING, 1, G_TYPE_STRING);

  ec->change_state = GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_change_state);
  ec->request_new_pad = GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_request_new_pad);
  ec->release_pad = GST_DEBUG_FUNCPTR (gst_gemma3n_decoder_release_pad);
  gst_element_class_add_static_pad_template (ec, &audio_sink_template);
  gst_element_class_add_static_pad_template (ec, &text_sink_template);
  gst_element_class_add_static_pad_template (ec, &src_template);
  gst_element_class_set_static_metadata (ec, "Gemma 3n conversation decoder", "Filter/Audio/Text",
      "Answers each speech segment (audio soft tokens) in one live Gemma 3n conversation: captions, "
      "translations, answers to questions", "gst-gemma3n");
  gst_type_mark_as_plugin_api (GST_TYPE_GEMMA3N_DECODER_QUANT, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_GEMMA3N_DECODER_KV_TYPE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_GEMMA3N_DECODER_TASK, 0);
}
