/* test-gst-decoder.c — gemma3ndecoder against a G3nSession driven directly with the same steps.
 *
 * The embeddings are made with the core (speech.wav → features → audio tower → soft tokens of
 * tests/data/mm-tiny), pushed into the element in a few buffers between segment START/END events, and the
 * captions compared with what a session the test drives itself answers: same clip, same instruction,
 * greedy, same token cap. Timestamps are checked from first principles (segment start + lateness).
 */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "gemma3n.h"
#include "gstgemma3nformat.h"

#define TOKEN_TIME (160 * GST_MSECOND) /* one audio soft token */
#define EMBEDDINGS_CAPS "application/x-gemma3n-embeddings, modality=(string)audio, width=(int)%d, dtype=(string)float32"
#define TRANSCRIBE "Transcribe this audio."

static gchar *model_dir;
static G3nModel *model;
static G3nTokenizer *tokenizer;
static G3nChatFormat *chat_format;
static float *embeds; /* [n_tokens, n_embd]: the speech's soft tokens, padding tokens replaced */
static int n_tokens, n_embd;

/* ---------------------------------------------------------------- the speech's embeddings */

static void
make_embeddings (void)
{
  GError *error = NULL;
  gchar *wav = g_build_filename (g_getenv ("G3N_TEST_DATA"), "sample", "speech.wav", NULL);
  float *pcm = NULL;
  gsize n_samples = 0;
  fail_unless (g3n_media_read_audio (wav, 16000, 480000, &pcm, &n_samples, &error), "%s: %s", wav,
               error ? error->message : "");
  G3nAudioFeatures *fx = g3n_audio_features_new_from_file (model_dir, &error);
  fail_unless (fx != NULL);
  int n_frames = g3n_audio_features_n_frames (fx, n_samples), bins = g3n_audio_features_size (fx);
  float *features = g_new (float, (gsize) n_frames * bins);
  guint8 *mask = g_new (guint8, n_frames);
  fail_unless (g3n_audio_features_compute (fx, pcm, n_samples, features, mask, &error));
  G3nAudioEncoder *enc = g3n_audio_encoder_new (model, &error);
  fail_unless (enc != NULL, "%s", error ? error->message : "");
  int n_sub, n_tok;
  g3n_audio_encoder_sizes (enc, n_frames, &n_sub, &n_tok);
  n_embd = g3n_audio_encoder_n_embd (enc);
  float *raw = g_new (float, (gsize) n_tok * n_embd);
  guint8 *tower_mask = g_new (guint8, n_tok);
  G3nAudioEncodeOutputs out = { .embeds = raw, .tower_mask = tower_mask };
  fail_unless (g3n_audio_encode (enc, NULL, features, n_frames, bins, mask, &out, &error));
  /* as the session expects pushed embeddings: padding tokens replaced by the padding embedding */
  int n_soft = g3n_audio_encoder_n_soft_tokens (enc);
  float *padded = g_new (float, (gsize) n_soft * n_embd);
  fail_unless (g3n_audio_embed_padded (enc, raw, tower_mask, n_tok, padded, &error));
  n_tokens = MIN (n_tok, n_soft);
  embeds = g_memdup2 (padded, (gsize) n_tokens * n_embd * sizeof (float));
  fail_unless (n_tokens > 8 && n_embd == g3n_model_n_embd (model));
  g_free (padded);
  g_free (raw);
  g_free (tower_mask);
  g3n_audio_encoder_free (enc);
  g_free (features);
  g_free (mask);
  g3n_audio_features_free (fx);
  g_free (pcm);
  g_free (wav);
}

static void
global_setup (void)
{
  GError *error = NULL;
  model_dir = g_build_filename (g_getenv ("G3N_TEST_DATA"), "mm-tiny", NULL);
  model = g3n_model_load (model_dir, &error);
  fail_unless (model != NULL, "%s", error ? error->message : "");
  gchar *tok_path = g_build_filename (model_dir, "tokenizer.json", NULL);
  tokenizer = g3n_tokenizer_new_from_file (tok_path, &error);
  fail_unless (tokenizer != NULL);
  g_free (tok_path);
  chat_format = g3n_chat_format_load (model_dir, &error);
  fail_unless (chat_format != NULL);
  make_embeddings ();
}

static GstClockTime
segment_duration (void)
{
  return n_tokens * TOKEN_TIME;
}

/* ---------------------------------------------------------------- the direct session */

static G3nSession *
direct_session (int n_ctx, gboolean audio_padding)
{
  G3nSessionParams sp = g3n_session_default_params ();
  sp.n_ctx = n_ctx;
  sp.keep_first_turn = TRUE;
  sp.n_threads = 2;
  sp.audio_padding = audio_padding;
  GError *error = NULL;
  G3nSession *s = g3n_session_new (model, tokenizer, chat_format, &sp, &error);
  fail_unless (s != NULL, "%s", error ? error->message : "");
  return s;
}

static gboolean
collect_text (int32_t token, const char *text, gpointer user_data)
{
  g_string_append ((GString *) user_data, text);
  return TRUE;
}

/* A caption as the element is documented to make it: newlines as spaces, trimmed. */
static gchar *
caption_of (GString *answer)
{
  for (gsize i = 0; i < answer->len; i++)
    if (answer->str[i] == '\n' || answer->str[i] == '\r')
      answer->str[i] = ' ';
  gchar *c = g_strstrip (g_strdup (answer->str));
  g_string_free (answer, TRUE);
  return c;
}

static gchar *
direct_generate (G3nSession *s, int cap)
{
  G3nSamplerParams greedy = g3n_sampler_greedy_params ();
  G3nSampler *sampler = g3n_sampler_new (&greedy);
  GString *answer = g_string_new (NULL);
  GError *error = NULL;
  fail_unless (g3n_session_generate (s, sampler, cap, collect_text, answer, NULL, &error), "%s",
               error ? error->message : "");
  g3n_sampler_free (sampler);
  return caption_of (answer);
}

static gchar *
direct_audio_turn (G3nSession *s, const char *instruction, int cap)
{
  GError *error = NULL;
  fail_unless (g3n_session_begin_audio (s, &error));
  fail_unless (g3n_session_push_audio_embeddings (s, embeds, n_tokens, &error));
  fail_unless (g3n_session_end_audio (s, &error));
  fail_unless (g3n_session_add_text (s, instruction, &error));
  return direct_generate (s, cap);
}

static gchar *
direct_text_turn (G3nSession *s, const char *text, int cap)
{
  GError *error = NULL;
  fail_unless (g3n_session_add_text (s, text, &error));
  return direct_generate (s, cap);
}

/* ---------------------------------------------------------------- the element */

typedef struct {
  GstHarness *h;
  GstElement *dec;
  GstBus *bus;
} Fixture;

/* The harness answers latency queries as a live source; a test clears this to stand for a file. */
static gboolean upstream_live = TRUE;

static GstPadProbeReturn
answer_not_live (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  GstQuery *q = GST_PAD_PROBE_INFO_QUERY (info);
  if (GST_QUERY_TYPE (q) != GST_QUERY_LATENCY)
    return GST_PAD_PROBE_OK;
  gst_query_set_latency (q, FALSE, 0, GST_CLOCK_TIME_NONE);
  return GST_PAD_PROBE_HANDLED;
}

/* A decoder on mm-tiny with a bus (element messages), in a harness, its caps and TIME segment sent;
 * max-backlog is large unless a test wants drops. */
static Fixture
fixture_new (const char *first_prop, ...)
{
  Fixture f;
  f.dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  fail_unless (f.dec != NULL);
  g_object_set (f.dec, "model", model_dir, "threads", 2, "max-backlog", 3600000, NULL);
  if (first_prop) {
    va_list ap;
    va_start (ap, first_prop);
    g_object_set_valist (G_OBJECT (f.dec), first_prop, ap);
    va_end (ap);
  }
  f.bus = gst_bus_new ();
  gst_element_set_bus (f.dec, f.bus);
  f.h = gst_harness_new_with_element (f.dec, "audio_sink", "src");
  if (!upstream_live)
    gst_pad_add_probe (f.h->srcpad, GST_PAD_PROBE_TYPE_QUERY_UPSTREAM, answer_not_live, NULL, NULL);
  else /* live cases on a test clock that never moves: nothing in the element may wait for the clock */
    gst_harness_use_testclock (f.h);
  gchar *caps = g_strdup_printf (EMBEDDINGS_CAPS, n_embd);
  gst_harness_set_src_caps_str (f.h, caps);
  g_free (caps);
  return f;
}

static void
fixture_free (Fixture *f)
{
  gst_harness_teardown (f->h);
  gst_element_set_bus (f->dec, NULL);
  gst_bus_set_flushing (f->bus, TRUE);
  gst_object_unref (f->bus);
  gst_object_unref (f->dec);
}

static GstBuffer *
embeddings_buffer (int first, int n, GstClockTime start)
{
  GstBuffer *buf = gst_buffer_new_memdup (embeds + (gsize) first * n_embd, (gsize) n * n_embd * sizeof (float));
  GST_BUFFER_PTS (buf) = start + first * TOKEN_TIME;
  GST_BUFFER_DURATION (buf) = n * TOKEN_TIME;
  return buf;
}

/* START, then the first n_pushed of the speech's tokens in three buffers (all with n_pushed = -1). */
static void
push_segment_start (GstHarness *h, guint64 index, GstClockTime start, int n_pushed)
{
  int n = n_pushed < 0 ? n_tokens : n_pushed;
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_START, index, start,
                                                                         GST_CLOCK_TIME_NONE,
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
  int step = (n_tokens + 2) / 3;
  for (int i = 0; i < n; i += step)
    fail_unless_equals_int (gst_harness_push (h, embeddings_buffer (i, MIN (step, n - i), start)), GST_FLOW_OK);
}

static void
push_segment_end (GstHarness *h, guint64 index, GstClockTime start)
{
  fail_unless (gst_harness_push_event (h, gst_gemma3n_segment_event_new (GST_GEMMA3N_SEGMENT_END, index, start,
                                                                         segment_duration (),
                                                                         GST_GEMMA3N_SEGMENT_PAUSE)));
}

static void
push_segment (GstHarness *h, guint64 index, GstClockTime start)
{
  push_segment_start (h, index, start, -1);
  push_segment_end (h, index, start);
}

static gchar *
buffer_text (GstBuffer *buf)
{
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
  gchar *text = g_strndup ((const gchar *) map.data, map.size);
  gst_buffer_unmap (buf, &map);
  return text;
}

/* The next caption: its text, checked to span [start + lateness, + the segment's duration). */
static gchar *
pull_caption (GstHarness *h, GstClockTime start, GstClockTime lateness)
{
  GstBuffer *buf = gst_harness_pull (h);
  fail_unless (buf != NULL, "no caption");
  fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), start + lateness);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), segment_duration ());
  gchar *text = buffer_text (buf);
  gst_buffer_unref (buf);
  return text;
}

/* The next element message of that name. */
static const GstStructure *
pop_element_message (GstBus *bus, const char *name, GstMessage **msg)
{
  while ((*msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *s = gst_message_get_structure (*msg);
    if (gst_structure_has_name (s, name))
      return s;
    gst_message_unref (*msg);
  }
  return NULL;
}

/* Events downstream up to the first of `type` (which the caller owns). */
static GstEvent *
pull_event_of_type (GstHarness *h, GstEventType type)
{
  GstEvent *ev;
  while ((ev = gst_harness_pull_event (h))) {
    if (GST_EVENT_TYPE (ev) == type)
      return ev;
    gst_event_unref (ev);
  }
  return NULL;
}

static gint
element_n_past (GstElement *dec)
{
  gint n_past;
  g_object_get (dec, "n-past", &n_past, NULL);
  return n_past;
}

/* ---------------------------------------------------------------- 1, 2: captions */

GST_START_TEST (test_caption_equals_session)
{
  const GstClockTime start = 1 * GST_SECOND, lateness = 250 * GST_MSECOND;
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_audio_turn (s, TRANSCRIBE, 128);
  Fixture f = fixture_new ("tokens-per-second", 0.0, "repeat-limit", 0, "lateness", 250, NULL);
  push_segment (f.h, 7, start);
  gchar *caption = pull_caption (f.h, start, lateness);
  fail_unless (*expected, "the direct session answered nothing: the comparison would prove little");
  fail_unless_equals_string (caption, expected);

  /* (popping skips other types: first) the load was announced: PROGRESS start, then complete */
  GstProgressType types[2];
  for (int i = 0; i < 2; i++) {
    GstMessage *msg = gst_bus_pop_filtered (f.bus, GST_MESSAGE_PROGRESS);
    fail_unless (msg != NULL, "no progress message %d", i);
    gst_message_parse_progress (msg, &types[i], NULL, NULL);
    gst_message_unref (msg);
  }
  fail_unless (types[0] == GST_PROGRESS_TYPE_START && types[1] == GST_PROGRESS_TYPE_COMPLETE);

  GstMessage *msg;
  const GstStructure *st = pop_element_message (f.bus, "gemma3n-caption", &msg);
  fail_unless (st != NULL, "no gemma3n-caption message");
  guint64 index, mstart, mdur;
  guint tokens;
  gint n_past;
  gdouble prefill_ms, generate_ms;
  fail_unless (gst_structure_get (st, "index", G_TYPE_UINT64, &index, "start", G_TYPE_UINT64, &mstart, "duration",
                                  G_TYPE_UINT64, &mdur, "tokens", G_TYPE_UINT, &tokens, "n-past", G_TYPE_INT, &n_past,
                                  "prefill-ms", G_TYPE_DOUBLE, &prefill_ms, "generate-ms", G_TYPE_DOUBLE,
                                  &generate_ms, NULL));
  fail_unless_equals_string (gst_structure_get_string (st, "text"), expected);
  fail_unless_equals_uint64 (index, 7);
  fail_unless_equals_uint64 (mstart, start);
  fail_unless_equals_uint64 (mdur, segment_duration ());
  fail_unless_equals_int (n_past, g3n_session_n_past (s));
  fail_unless_equals_int (element_n_past (f.dec), g3n_session_n_past (s));
  fail_unless (tokens >= 1 && tokens <= 128);
  fail_unless (prefill_ms >= 0 && generate_ms >= 0);
  const char *stop = gst_structure_get_string (st, "stop");
  fail_unless (g_str_equal (stop, "end-of-turn") || g_str_equal (stop, "max-tokens"), "stop %s", stop);
  gst_message_unref (msg);

  GST_INFO ("caption: \"%s\" (%u tokens, prefill %.1f ms, generate %.1f ms)", caption, tokens, prefill_ms,
            generate_ms);
  g_free (caption);
  g_free (expected);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

GST_START_TEST (test_two_segments_keep_context)
{
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected1 = direct_audio_turn (s, "Describe this audio.", 24);
  gchar *expected2 = direct_audio_turn (s, "Describe this audio.", 24);
  Fixture f = fixture_new ("task", 2 /* describe */, "max-new-tokens", 24, "tokens-per-second", 0.0,
                           "repeat-limit", 0, NULL);
  push_segment (f.h, 0, 0);
  push_segment (f.h, 1, 10 * GST_SECOND);
  gchar *c1 = pull_caption (f.h, 0, 0), *c2 = pull_caption (f.h, 10 * GST_SECOND, 0);
  fail_unless_equals_string (c1, expected1);
  fail_unless_equals_string (c2, expected2);
  fail_unless_equals_int (element_n_past (f.dec), g3n_session_n_past (s));
  g_free (c1);
  g_free (c2);
  g_free (expected1);
  g_free (expected2);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* The token cap: 8 + ceil(seconds × tokens-per-second) tokens at most. */
GST_START_TEST (test_token_cap)
{
  const double tps = 2.0;
  int cap = 8 + (int) ceil ((double) segment_duration () / GST_SECOND * tps);
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_audio_turn (s, TRANSCRIBE, cap);
  Fixture f = fixture_new ("tokens-per-second", tps, "repeat-limit", 0, NULL);
  push_segment (f.h, 0, 0);
  gchar *caption = pull_caption (f.h, 0, 0);
  fail_unless_equals_string (caption, expected);
  GstMessage *msg;
  const GstStructure *st = pop_element_message (f.bus, "gemma3n-caption", &msg);
  guint tokens;
  fail_unless (st && gst_structure_get_uint (st, "tokens", &tokens));
  fail_unless (tokens <= (guint) cap, "%u tokens over the cap of %d", tokens, cap);
  gst_message_unref (msg);
  g_free (caption);
  g_free (expected);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 3, 4: gaps, EOS */

GST_START_TEST (test_gap_forwarded)
{
  Fixture f = fixture_new ("lateness", 500, NULL);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_gap (5 * GST_SECOND, 2 * GST_SECOND)));
  GstEvent *gap = pull_event_of_type (f.h, GST_EVENT_GAP);
  fail_unless (gap != NULL);
  GstClockTime ts, dur;
  gst_event_parse_gap (gap, &ts, &dur);
  fail_unless_equals_uint64 (ts, 5 * GST_SECOND + 500 * GST_MSECOND);
  fail_unless_equals_uint64 (dur, 2 * GST_SECOND);
  gst_event_unref (gap);
  fixture_free (&f);
}
GST_END_TEST;

/* A segment answered with nothing (max-new-tokens = 0) gives a GAP of its span, and no buffer. */
GST_START_TEST (test_empty_answer_gives_gap)
{
  Fixture f = fixture_new ("max-new-tokens", 0, "lateness", 100, NULL);
  push_segment (f.h, 0, 3 * GST_SECOND);
  GstEvent *gap = pull_event_of_type (f.h, GST_EVENT_GAP);
  fail_unless (gap != NULL);
  GstClockTime ts, dur;
  gst_event_parse_gap (gap, &ts, &dur);
  fail_unless_equals_uint64 (ts, 3 * GST_SECOND + 100 * GST_MSECOND);
  fail_unless_equals_uint64 (dur, segment_duration ());
  gst_event_unref (gap);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  GstEvent *eos = pull_event_of_type (f.h, GST_EVENT_EOS);
  fail_unless (eos != NULL);
  gst_event_unref (eos);
  fail_unless_equals_int (gst_harness_buffers_received (f.h), 0);
  fixture_free (&f);
}
GST_END_TEST;

/* A GAP arriving while a segment is open comes out after that segment's caption: output stays in order. */
GST_START_TEST (test_gap_inside_segment_after_caption)
{
  Fixture f = fixture_new ("max-new-tokens", 8, NULL);
  push_segment_start (f.h, 0, 0, -1);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_gap (segment_duration (), GST_SECOND)));
  push_segment_end (f.h, 0, 0);
  gchar *caption = pull_caption (f.h, 0, 0);
  GstEvent *gap = pull_event_of_type (f.h, GST_EVENT_GAP);
  fail_unless (gap != NULL);
  GstClockTime ts;
  gst_event_parse_gap (gap, &ts, NULL);
  fail_unless_equals_uint64 (ts, segment_duration ());
  gst_event_unref (gap);
  g_free (caption);
  fixture_free (&f);
}
GST_END_TEST;

GST_START_TEST (test_eos_closes_segment)
{
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_audio_turn (s, TRANSCRIBE, 32);
  Fixture f = fixture_new ("max-new-tokens", 32, "tokens-per-second", 0.0, "repeat-limit", 0, NULL);
  const GstClockTime start = 2 * GST_SECOND;
  push_segment_start (f.h, 0, start, -1);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  /* no END: the span is that of the buffers */
  gchar *caption = pull_caption (f.h, start, 0);
  fail_unless_equals_string (caption, expected);
  GstEvent *eos = pull_event_of_type (f.h, GST_EVENT_EOS);
  fail_unless (eos != NULL);
  gst_event_unref (eos);
  g_free (caption);
  g_free (expected);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* Embeddings without any START: a segment of their own, from their first PTS, closed by EOS. */
GST_START_TEST (test_implicit_segment)
{
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_audio_turn (s, TRANSCRIBE, 32);
  Fixture f = fixture_new ("max-new-tokens", 32, "tokens-per-second", 0.0, "repeat-limit", 0, NULL);
  const GstClockTime start = 4 * GST_SECOND;
  fail_unless_equals_int (gst_harness_push (f.h, embeddings_buffer (0, 10, start)), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (f.h, embeddings_buffer (10, n_tokens - 10, start)), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  gchar *caption = pull_caption (f.h, start, 0);
  fail_unless_equals_string (caption, expected);
  g_free (caption);
  g_free (expected);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 5: flush */

GST_START_TEST (test_flush_forgets_segment)
{
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_audio_turn (s, TRANSCRIBE, 32);
  Fixture f = fixture_new ("max-new-tokens", 32, "tokens-per-second", 0.0, "repeat-limit", 0, NULL);
  push_segment_start (f.h, 0, 0, n_tokens / 2);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (f.h, gst_event_new_flush_stop (TRUE)));
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_segment (&segment)));
  const GstClockTime start = 20 * GST_SECOND;
  push_segment (f.h, 1, start);
  gchar *caption = pull_caption (f.h, start, 0); /* the first caption is the second segment's */
  fail_unless_equals_string (caption, expected);
  fail_unless_equals_int (element_n_past (f.dec), g3n_session_n_past (s));
  g_free (caption);
  g_free (expected);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 6: ask, text turns */

GST_START_TEST (test_ask_between_segments)
{
  const char *question = "What was said?";
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected_caption = direct_audio_turn (s, TRANSCRIBE, 16);
  gchar *expected_answer = direct_text_turn (s, question, 16);
  gchar *expected_next = direct_audio_turn (s, TRANSCRIBE, 16);
  Fixture f = fixture_new ("max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0, NULL);
  push_segment (f.h, 0, 0);
  gchar *caption = pull_caption (f.h, 0, 0);
  fail_unless_equals_string (caption, expected_caption);
  gchar *answer = NULL;
  g_signal_emit_by_name (f.dec, "ask", question, &answer);
  fail_unless (answer != NULL);
  fail_unless_equals_string (answer, expected_answer);
  GstMessage *msg;
  const GstStructure *st = pop_element_message (f.bus, "gemma3n-answer", &msg);
  fail_unless (st != NULL);
  fail_unless_equals_string (gst_structure_get_string (st, "question"), question);
  fail_unless_equals_string (gst_structure_get_string (st, "text"), expected_answer);
  gst_message_unref (msg);
  /* the question stays in the conversation */
  push_segment (f.h, 1, 10 * GST_SECOND);
  gchar *next = pull_caption (f.h, 10 * GST_SECOND, 0);
  fail_unless_equals_string (next, expected_next);
  g_free (next);
  g_free (answer);
  g_free (caption);
  g_free (expected_caption);
  g_free (expected_answer);
  g_free (expected_next);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

static gint asked; /* set once ask_in_thread's question has its answer */

static gpointer
ask_in_thread (gpointer dec)
{
  gchar *answer = NULL;
  g_signal_emit_by_name (dec, "ask", "Who is speaking?", &answer);
  g_atomic_int_set (&asked, 1);
  return answer;
}

GST_START_TEST (test_ask_not_running)
{
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  gchar *answer = (gchar *) "unset";
  g_signal_emit_by_name (dec, "ask", "Anyone there?", &answer);
  fail_unless (answer == NULL);
  gst_object_unref (dec);
}
GST_END_TEST;

static GstBusSyncReply
ask_from_sync_handler (GstBus *bus, GstMessage *msg, gpointer user_data)
{
  const GstStructure *st = gst_message_get_structure (msg);
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ELEMENT && gst_structure_has_name (st, "gemma3n-caption")) {
    gchar *answer = (gchar *) "unset";
    g_signal_emit_by_name (GST_MESSAGE_SRC (msg), "ask", "And now?", &answer);
    *(gboolean *) user_data = answer == NULL;
  }
  return GST_BUS_PASS;
}

/* The worker's own thread (a sync handler of its caption message) asking would wait for itself: refused. */
GST_START_TEST (test_ask_from_worker_refused)
{
  Fixture f = fixture_new ("max-new-tokens", 4, NULL);
  gboolean refused = FALSE;
  gst_bus_set_sync_handler (f.bus, ask_from_sync_handler, &refused, NULL);
  push_segment (f.h, 0, 0);
  g_free (pull_caption (f.h, 0, 0));
  fail_unless (refused);
  gst_bus_set_sync_handler (f.bus, NULL, NULL, NULL);
  fixture_free (&f);
}
GST_END_TEST;

/* A text_sink buffer is a user turn, answered on src with its timestamps. */
GST_START_TEST (test_text_turn)
{
  const char *question = "Hello, who are you?";
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected = direct_text_turn (s, question, 16);
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", model_dir, "threads", 2, "max-new-tokens", 16, "repeat-limit", 0, NULL);
  GstHarness *h = gst_harness_new_with_element (dec, "text_sink_%u", "src");
  gst_harness_set_src_caps_str (h, "text/x-raw, format=(string)utf8");
  GstBuffer *buf = gst_buffer_new_memdup (question, strlen (question));
  GST_BUFFER_PTS (buf) = 3 * GST_SECOND;
  GST_BUFFER_DURATION (buf) = GST_SECOND;
  fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  GstBuffer *out = gst_harness_pull (h);
  fail_unless (out != NULL);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (out), 3 * GST_SECOND);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (out), GST_SECOND);
  gchar *text = buffer_text (out);
  fail_unless_equals_string (text, expected);
  gst_buffer_unref (out);
  g_free (text);
  g_free (expected);
  g3n_session_free (s);
  gst_harness_teardown (h);
  gst_object_unref (dec);
}
GST_END_TEST;

/* EOS goes downstream once every linked sink pad has had one: the text pad's turn after the audio's EOS
 * is still answered. */
GST_START_TEST (test_eos_waits_for_every_sink)
{
  Fixture f = fixture_new ("max-new-tokens", 8, NULL);
  GstPad *text_sink = gst_element_request_pad_simple (f.dec, "text_sink_%u");
  GstPad *text_src = gst_pad_new ("text-src", GST_PAD_SRC);
  fail_unless_equals_int (gst_pad_link (text_src, text_sink), GST_PAD_LINK_OK);
  gst_pad_set_active (text_src, TRUE);
  fail_unless (gst_pad_push_event (text_src, gst_event_new_stream_start ("text")));
  GstCaps *text_caps = gst_caps_from_string ("text/x-raw, format=utf8");
  fail_unless (gst_pad_push_event (text_src, gst_event_new_caps (text_caps)));
  gst_caps_unref (text_caps);
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  fail_unless (gst_pad_push_event (text_src, gst_event_new_segment (&segment)));

  push_segment (f.h, 0, 0);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  g_free (pull_caption (f.h, 0, 0));
  const char *question = "Anything else?";
  GstBuffer *buf = gst_buffer_new_memdup (question, strlen (question));
  GST_BUFFER_PTS (buf) = 9 * GST_SECOND;
  fail_unless_equals_int (gst_pad_push (text_src, buf), GST_FLOW_OK);
  GstBuffer *answer = gst_harness_pull (f.h); /* queued after the audio's EOS: that EOS was handled */
  fail_unless (answer != NULL);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (answer), 9 * GST_SECOND);
  gst_buffer_unref (answer);
  GstEvent *ev;
  while ((ev = gst_harness_try_pull_event (f.h))) {
    fail_if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS, "EOS before the text pad's");
    gst_event_unref (ev);
  }
  fail_unless (gst_pad_push_event (text_src, gst_event_new_eos ()));
  ev = pull_event_of_type (f.h, GST_EVENT_EOS);
  fail_unless (ev != NULL);
  gst_event_unref (ev);

  gst_pad_set_active (text_src, FALSE);
  gst_pad_unlink (text_src, text_sink);
  gst_element_release_request_pad (f.dec, text_sink);
  gst_object_unref (text_sink);
  gst_object_unref (text_src);
  fixture_free (&f);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 7: context shift */

GST_START_TEST (test_context_shift)
{
  const int n_ctx = 600, n_segments = 14;
  Fixture f = fixture_new ("context-size", n_ctx, "audio-padding", FALSE, NULL);
  gint last = 0, max_seen = 0;
  gboolean decreased = FALSE;
  for (int i = 0; i < n_segments; i++) {
    GstClockTime start = i * 5 * GST_SECOND;
    push_segment (f.h, i, start);
    g_free (pull_caption (f.h, start, 0));
    gint n_past = element_n_past (f.dec);
    fail_unless (n_past > 0 && n_past <= n_ctx, "segment %d: n-past %d", i, n_past);
    decreased |= n_past < last;
    max_seen = MAX (max_seen, n_past);
    last = n_past;
  }
  fail_unless_equals_int (gst_harness_buffers_received (f.h), n_segments);
  fail_unless (decreased, "the context never shifted (n-past at most %d of %d)", max_seen, n_ctx);
  fixture_free (&f);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 8: session file */

GST_START_TEST (test_session_file_resumes)
{
  gchar *dir = g_dir_make_tmp ("test-gst-decoder-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "conversation.g3ns", NULL);
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected1 = direct_audio_turn (s, TRANSCRIBE, 16);
  gint n_past1 = g3n_session_n_past (s);
  gchar *expected2 = direct_audio_turn (s, TRANSCRIBE, 16);

  Fixture a = fixture_new ("session-file", path, "max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0,
                           NULL);
  push_segment (a.h, 0, 0);
  fail_unless (gst_harness_push_event (a.h, gst_event_new_eos ()));
  gchar *c1 = pull_caption (a.h, 0, 0);
  fail_unless_equals_string (c1, expected1);
  GstEvent *eos = pull_event_of_type (a.h, GST_EVENT_EOS);
  fail_unless (eos != NULL);
  gst_event_unref (eos);
  fail_unless (g_file_test (path, G_FILE_TEST_IS_REGULAR), "%s not saved at EOS", path);
  fail_unless_equals_int (element_n_past (a.dec), n_past1);
  fixture_free (&a);

  Fixture b = fixture_new ("session-file", path, "max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0,
                           NULL);
  fail_unless_equals_int (element_n_past (b.dec), n_past1);
  push_segment (b.h, 1, 10 * GST_SECOND);
  gchar *c2 = pull_caption (b.h, 10 * GST_SECOND, 0);
  fail_unless_equals_string (c2, expected2);
  fixture_free (&b);

  g_free (c1);
  g_free (c2);
  g_free (expected1);
  g_free (expected2);
  g3n_session_free (s);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 9: errors */

/* Taking the element to READY fails, with an error message whose texts contain `needle`. */
static void
check_ready_fails (GstElement *dec, const char *needle)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (dec, bus);
  fail_unless_equals_int (gst_element_set_state (dec, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "no error message");
  GError *error = NULL;
  gchar *debug = NULL;
  gst_message_parse_error (msg, &error, &debug);
  fail_unless (strstr (error->message, needle) || (debug && strstr (debug, needle)), "\"%s\" not in \"%s\" / \"%s\"",
               needle, error->message, debug);
  g_error_free (error);
  g_free (debug);
  gst_message_unref (msg);
  gst_element_set_state (dec, GST_STATE_NULL);
  gst_element_set_bus (dec, NULL);
  gst_object_unref (bus);
  gst_object_unref (dec);
}

GST_START_TEST (test_missing_model)
{
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", "/nonexistent/gemma-3n", NULL);
  check_ready_fails (dec, "/nonexistent/gemma-3n");
}
GST_END_TEST;

GST_START_TEST (test_no_model_set)
{
  check_ready_fails (gst_element_factory_make ("gemma3ndecoder", NULL), "model");
}
GST_END_TEST;

GST_START_TEST (test_no_audio_tower)
{
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  gchar *text_only = g_build_filename (g_getenv ("G3N_TEST_DATA"), "text-matformer", NULL);
  g_object_set (dec, "model", text_only, NULL);
  check_ready_fails (dec, "audio tower");
  g_free (text_only);
}
GST_END_TEST;

GST_START_TEST (test_custom_without_prompt)
{
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", model_dir, "task", 3 /* custom */, NULL);
  check_ready_fails (dec, "prompt");
}
GST_END_TEST;

/* A checkpoint folder without tokenizer.json (the weights found through links to mm-tiny's). */
GST_START_TEST (test_missing_tokenizer)
{
  gchar *dir = g_dir_make_tmp ("test-gst-decoder-XXXXXX", NULL);
  const char *files[] = { "config.json", "model.safetensors", "preprocessor_config.json", "processor_config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    gchar *target = g_build_filename (model_dir, files[i], NULL), *link = g_build_filename (dir, files[i], NULL);
    gchar *abs_target = g_canonicalize_filename (target, NULL);
    fail_unless (symlink (abs_target, link) == 0);
    g_free (abs_target);
    g_free (target);
    g_free (link);
  }
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", dir, NULL);
  gchar *tok = g_build_filename (dir, "tokenizer.json", NULL);
  check_ready_fails (dec, tok);
  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    gchar *link = g_build_filename (dir, files[i], NULL);
    g_unlink (link);
    g_free (link);
  }
  g_rmdir (dir);
  g_free (tok);
  g_free (dir);
}
GST_END_TEST;

GST_START_TEST (test_bad_session_file)
{
  gchar *dir = g_dir_make_tmp ("test-gst-decoder-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "garbage.g3ns", NULL);
  fail_unless (g_file_set_contents (path, "not a session", -1, NULL));
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", model_dir, "session-file", path, NULL);
  check_ready_fails (dec, path);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}
GST_END_TEST;

GST_START_TEST (test_wrong_width_refused)
{
  GstElement *dec = gst_element_factory_make ("gemma3ndecoder", NULL);
  g_object_set (dec, "model", model_dir, "threads", 2, NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (dec, bus);
  GstHarness *h = gst_harness_new_with_element (dec, "audio_sink", "src");
  fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("wrong-width")));
  gchar *caps_str = g_strdup_printf (EMBEDDINGS_CAPS, n_embd + 1);
  GstCaps *caps = gst_caps_from_string (caps_str);
  gst_harness_push_event (h, gst_event_new_caps (caps));
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  gst_harness_push_event (h, gst_event_new_segment (&segment));
  /* refused: data after it is not negotiated */
  fail_unless_equals_int (gst_harness_push (h, embeddings_buffer (0, 1, 0)), GST_FLOW_NOT_NEGOTIATED);
  /* the pad's caps query offers the model's width only */
  GstCaps *allowed = gst_pad_query_caps (GST_PAD_PEER (h->srcpad), NULL);
  fail_if (gst_caps_can_intersect (allowed, caps));
  gst_caps_unref (allowed);
  gst_caps_unref (caps);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  GError *error = NULL;
  gst_message_parse_error (msg, &error, NULL);
  gchar *both = g_strdup_printf ("%d", n_embd + 1), *model_width = g_strdup_printf ("%d", n_embd);
  fail_unless (strstr (error->message, both) && strstr (error->message, model_width), "%s", error->message);
  g_free (both);
  g_free (model_width);
  g_error_free (error);
  gst_message_unref (msg);
  g_free (caps_str);
  gst_harness_teardown (h);
  gst_element_set_bus (dec, NULL);
  gst_object_unref (bus);
  gst_object_unref (dec);
}
GST_END_TEST;

/* ---------------------------------------------------------------- 10, 11: live */

GST_START_TEST (test_latency_query)
{
  Fixture f = fixture_new ("latency", 2000, NULL);
  gst_harness_set_upstream_latency (f.h, 100 * GST_MSECOND);
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_pad_peer_query (f.h->sinkpad, q));
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (q, &live, &min, &max);
  fail_unless (live);
  fail_unless_equals_uint64 (min, 2100 * GST_MSECOND);
  fail_unless_equals_uint64 (max, GST_CLOCK_TIME_NONE);
  gst_query_unref (q);
  fixture_free (&f);
}
GST_END_TEST;

GST_START_TEST (test_live_drop)
{
  Fixture f = fixture_new ("max-backlog", 1, "max-new-tokens", 64, "tokens-per-second", 0.0, "repeat-limit", 0,
                           NULL);
  const int n_fast = 6;
  for (int i = 0; i < n_fast; i++)
    push_segment (f.h, i, i * 4 * GST_SECOND);
  /* the worker catches up; the last segment, with room again, is answered */
  g_object_set (f.dec, "max-backlog", 3600000, NULL);
  GstClockTime last = n_fast * 4 * GST_SECOND;
  push_segment (f.h, n_fast, last);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  GstEvent *eos = pull_event_of_type (f.h, GST_EVENT_EOS);
  fail_unless (eos != NULL, "no EOS: the decoder hangs");
  gst_event_unref (eos);
  guint n_captions = gst_harness_buffers_received (f.h);
  fail_unless (n_captions >= 1 && n_captions < (guint) n_fast + 1, "%u captions of %d segments", n_captions,
               n_fast + 1);
  GstBuffer *buf, *final = NULL;
  while ((buf = gst_harness_try_pull (f.h))) {
    gst_clear_buffer (&final);
    final = buf;
  }
  fail_unless (final && GST_BUFFER_PTS (final) == last, "the last segment got no caption");
  gst_buffer_unref (final);
  GstMessage *msg = gst_bus_pop_filtered (f.bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning for the dropped segments");
  GError *error = NULL;
  gchar *debug = NULL;
  gst_message_parse_warning (msg, &error, &debug);
  fail_unless (debug && strstr (debug, "segment"), "%s", debug);
  g_error_free (error);
  g_free (debug);
  gst_message_unref (msg);
  fixture_free (&f);
}
GST_END_TEST;

/* From a source that is not live nothing is dropped, however small max-backlog: pushes wait. */
GST_START_TEST (test_not_live_waits)
{
  upstream_live = FALSE;
  Fixture f = fixture_new ("max-backlog", 1, "max-new-tokens", 16, NULL);
  const int n = 5;
  for (int i = 0; i < n; i++)
    push_segment (f.h, i, i * 4 * GST_SECOND);
  fail_unless (gst_harness_push_event (f.h, gst_event_new_eos ()));
  GstEvent *eos = pull_event_of_type (f.h, GST_EVENT_EOS);
  fail_unless (eos != NULL);
  gst_event_unref (eos);
  fail_unless_equals_int (gst_harness_buffers_received (f.h), n);
  fail_unless (gst_bus_pop_filtered (f.bus, GST_MESSAGE_WARNING) == NULL);
  fixture_free (&f);
}
GST_END_TEST;

/* A question asked while a segment is open is answered after that segment's turn. */
GST_START_TEST (test_ask_waits_for_segment_end)
{
  const char *question = "Who is speaking?";
  G3nSession *s = direct_session (4096, TRUE);
  gchar *expected_caption = direct_audio_turn (s, TRANSCRIBE, 16);
  gchar *expected_answer = direct_text_turn (s, question, 16);
  Fixture f = fixture_new ("max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0, NULL);
  push_segment_start (f.h, 0, 0, -1);
  /* the worker has taken the START and the clip: the segment is open */
  GstQuery *drain = gst_query_new_drain ();
  fail_unless (gst_pad_peer_query (f.h->srcpad, drain));
  gst_query_unref (drain);
  GThread *asker = g_thread_new ("ask", (GThreadFunc) ask_in_thread, f.dec);
  g_usleep (300 * 1000); /* (long enough for an answer of the tiny model, were it not held back) */
  fail_if (g_atomic_int_get (&asked), "answered in the middle of the segment's turn");
  fail_unless (gst_harness_buffers_in_queue (f.h) == 0);
  push_segment_end (f.h, 0, 0);
  gchar *answer = g_thread_join (asker);
  gchar *caption = pull_caption (f.h, 0, 0);
  fail_unless_equals_string (caption, expected_caption);
  fail_unless_equals_string (answer, expected_answer);
  g_free (answer);
  g_free (caption);
  g_free (expected_caption);
  g_free (expected_answer);
  g3n_session_free (s);
  fixture_free (&f);
}
GST_END_TEST;

/* Stopping (PAUSED→READY) saves the conversation too, between turns: a segment left open is dropped, and
 * the resumed conversation answers the next segment as the direct session does after the first. (n-past
 * may be 2 above the direct session's: the dropped turn's start may already have closed the model's
 * turn, <end_of_turn> and a newline, which the next input adds anyway.) */
GST_START_TEST (test_session_file_saved_at_stop)
{
  gchar *dir = g_dir_make_tmp ("test-gst-decoder-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "conversation.g3ns", NULL);
  G3nSession *s = direct_session (4096, TRUE);
  g_free (direct_audio_turn (s, TRANSCRIBE, 16));
  gint n_past1 = g3n_session_n_past (s);
  gchar *expected2 = direct_audio_turn (s, TRANSCRIBE, 16);
  Fixture a = fixture_new ("session-file", path, "max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0,
                           NULL);
  push_segment (a.h, 0, 0);
  g_free (pull_caption (a.h, 0, 0));
  push_segment_start (a.h, 1, 10 * GST_SECOND, n_tokens / 2);
  GstQuery *drain = gst_query_new_drain (); /* the worker has the second segment open */
  fail_unless (gst_pad_peer_query (a.h->srcpad, drain));
  gst_query_unref (drain);
  fail_unless_equals_int (gst_element_set_state (a.dec, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  fail_unless (g_file_test (path, G_FILE_TEST_IS_REGULAR), "%s not saved at PAUSED→READY", path);
  gint n_past_a = element_n_past (a.dec);
  fail_unless (n_past_a == n_past1 || n_past_a == n_past1 + 2, "n-past %d after the first turn's %d", n_past_a,
               n_past1);
  fixture_free (&a);
  Fixture b = fixture_new ("session-file", path, "max-new-tokens", 16, "tokens-per-second", 0.0, "repeat-limit", 0,
                           NULL);
  fail_unless_equals_int (element_n_past (b.dec), n_past_a);
  push_segment (b.h, 1, 10 * GST_SECOND);
  gchar *c2 = pull_caption (b.h, 10 * GST_SECOND, 0);
  fail_unless_equals_string (c2, expected2);
  fail_unless_equals_int (element_n_past (b.dec), g3n_session_n_past (s));
  fixture_free (&b);
  g_free (c2);
  g_free (expected2);
  g3n_session_free (s);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}
GST_END_TEST;

/* ---------------------------------------------------------------- the loop cut */

/* A caption whose tokens end in an n-gram repeated repeat-limit times stops there, keeping one copy: it is a
 * prefix of the uncut answer, and the uncut answer (if the model loops on that input) goes on past it. */
GST_START_TEST (test_repeat_limit_cuts)
{
  G3nSession *s = direct_session (4096, TRUE);
  gchar *uncut = direct_audio_turn (s, TRANSCRIBE, 128);
  g3n_session_free (s);
  Fixture f = fixture_new ("tokens-per-second", 0.0, "repeat-limit", 2, NULL);
  push_segment (f.h, 0, 0);
  gchar *caption = pull_caption (f.h, 0, 0);
  GstMessage *msg;
  const GstStructure *st = pop_element_message (f.bus, "gemma3n-caption", &msg);
  fail_unless (st != NULL);
  const char *stop = gst_structure_get_string (st, "stop");
  fail_unless (g_str_has_prefix (uncut, caption), "\"%s\" is not a prefix of \"%s\"", caption, uncut);
  if (g_str_equal (stop, "repeat"))
    fail_unless (strlen (caption) < strlen (uncut));
  else
    fail_unless_equals_string (caption, uncut);
  GST_INFO ("repeat-limit 2: stop %s, \"%s\" of \"%s\"", stop, caption, uncut);
  gst_message_unref (msg);
  g_free (caption);
  g_free (uncut);
  fixture_free (&f);
}
GST_END_TEST;

static Suite *
decoder_suite (void)
{
  Suite *s = suite_create ("gemma3ndecoder");
  TCase *tc = tcase_create ("general");
  tcase_add_unchecked_fixture (tc, global_setup, NULL);
  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_caption_equals_session);
  tcase_add_test (tc, test_two_segments_keep_context);
  tcase_add_test (tc, test_token_cap);
  tcase_add_test (tc, test_gap_forwarded);
  tcase_add_test (tc, test_empty_answer_gives_gap);
  tcase_add_test (tc, test_gap_inside_segment_after_caption);
  tcase_add_test (tc, test_eos_closes_segment);
  tcase_add_test (tc, test_implicit_segment);
  tcase_add_test (tc, test_flush_forgets_segment);
  tcase_add_test (tc, test_ask_between_segments);
  tcase_add_test (tc, test_ask_not_running);
  tcase_add_test (tc, test_ask_from_worker_refused);
  tcase_add_test (tc, test_text_turn);
  tcase_add_test (tc, test_eos_waits_for_every_sink);
  tcase_add_test (tc, test_context_shift);
  tcase_add_test (tc, test_session_file_resumes);
  tcase_add_test (tc, test_missing_model);
  tcase_add_test (tc, test_no_model_set);
  tcase_add_test (tc, test_no_audio_tower);
  tcase_add_test (tc, test_custom_without_prompt);
  tcase_add_test (tc, test_missing_tokenizer);
  tcase_add_test (tc, test_bad_session_file);
  tcase_add_test (tc, test_wrong_width_refused);
  tcase_add_test (tc, test_latency_query);
  tcase_add_test (tc, test_live_drop);
  tcase_add_test (tc, test_repeat_limit_cuts);
  tcase_add_test (tc, test_not_live_waits);
  tcase_add_test (tc, test_ask_waits_for_segment_end);
  tcase_add_test (tc, test_session_file_saved_at_stop);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (decoder);
