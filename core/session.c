/* session.c — one live conversation over a decoder context: turns in the Gemma 3n chat format, text and
 * multimodal soft tokens appended as they arrive, generation with a sampler, context shift, save/restore.
 *
 * Input is tokenised a whole user turn at a time, so each turn is tokenised exactly as the chat template
 * renders it: every turn starts and ends at special tokens, which the tokenizer never merges across, so
 * turn-by-turn tokenisation equals tokenising the whole conversation at once. Only new input is prefilled.
 *
 * Locking: adders take `pending_lock` briefly; generate/save/load hold `state_lock`. One producer (a
 * streaming thread appending input) and one consumer (a worker generating) can share a session.
 */
#include "audio-encoder.h"
#include "kv-cache.h"
#include "model.h"
#include "vision-encoder.h"
#include "safetensors.h"
#include "gemma3n.h"

#include <string.h>

typedef enum { ITEM_TEXT, ITEM_IMAGE, ITEM_AUDIO } ItemKind;

typedef struct {
  ItemKind kind;
  char *text;
  float *embeds; /* [n, n_embd] soft tokens */
  int n;
} Item;

/* A span of context positions holding one user turn and the model turn that answered it. */
typedef struct {
  int begin, end;
} Exchange;

struct _G3nSession {
  G3nModel *model;
  G3nTokenizer *tok;
  G3nChatFormat *fmt;
  G3nContext *ctx;
  G3nSessionParams params;
  int32_t end_of_turn_id;

  GMutex encoder_lock; /* encoders are made on first use */
  G3nAudioFeatures *fx;
  G3nAudioEncoder *audio;
  G3nVisionEncoder *vision;
  G3nImageParams image_params;

  GMutex pending_lock;
  GPtrArray *pending; /* Item*: the open user turn */
  char *system;

  GMutex state_lock;
  GArray *exchanges;         /* Exchange, oldest first */
  gboolean started;          /* <bos> is in the context */
  gboolean had_user_turn;    /* the system prompt went into the first user turn */
  gboolean model_turn_open;  /* the last model turn still needs "<end_of_turn>\n" */
};

static void
item_free (gpointer p)
{
  Item *it = p;
  g_free (it->text);
  g_free (it->embeds);
  g_free (it);
}

G3nSessionParams
g3n_session_default_params (void)
{
  return (G3nSessionParams) { .n_ctx = 4096, .keep_first_turn = TRUE, .min_free = 0 };
}

G3nSession *
g3n_session_new (G3nModel *model, G3nTokenizer *tok, const G3nChatFormat *fmt, const G3nSessionParams *params,
                 GError **error)
{
  G3nSessionParams p = params ? *params : g3n_session_default_params ();
  G3nContextParams cp = { .n_ctx = p.n_ctx, .kv_type = p.kv_type };
  G3nContext *ctx = g3n_context_new (model, &cp, error);
  if (!ctx)
    return NULL;
  G3nSession *s = g_new0 (G3nSession, 1);
  s->model = g3n_model_ref (model);
  s->tok = tok;
  s->fmt = g3n_chat_format_copy (fmt);
  s->ctx = ctx;
  s->params = p;
  s->params.n_ctx = g3n_context_n_ctx (ctx);
  if (s->params.min_free <= 0)
    s->params.min_free = MAX (1, s->params.n_ctx / 4);
  s->end_of_turn_id = g3n_tokenizer_token_to_id (tok, g3n_chat_format_end_of_turn (fmt));
  g_mutex_init (&s->pending_lock);
  g_mutex_init (&s->encoder_lock);
  g_mutex_init (&s->state_lock);
  s->pending = g_ptr_array_new_with_free_func (item_free);
  s->exchanges = g_array_new (FALSE, FALSE, sizeof (Exchange));
  return s;
}

void
g3n_session_free (G3nSession *s)
{
  if (!s)
    return;
  g_ptr_array_free (s->pending, TRUE);
  g_array_free (s->exchanges, TRUE);
  g3n_audio_encoder_free (s->audio);
  g3n_audio_features_free (s->fx);
  g3n_vision_encoder_free (s->vision);
  g_mutex_clear (&s->encoder_lock);
  g_free (s->system);
  g3n_context_free (s->ctx);
  g3n_chat_format_free (s->fmt);
  g3n_model_unref (s->model);
  g_mutex_clear (&s->pending_lock);
  g_mutex_clear (&s->state_lock);
  g_free (s);
}

/* ------------------------------------------------------------------------------- input */

gboolean
g3n_session_set_system (G3nSession *s, const char *text, GError **error)
{
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "system prompt is not valid UTF-8");
    return FALSE;
  }
  g_mutex_lock (&s->state_lock);
  gboolean ok = !s->had_user_turn;
  if (ok) {
    g_free (s->system);
    s->system = g_strdup (text);
  } else {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "the system prompt must be set before the first user turn (it is part of that turn)");
  }
  g_mutex_unlock (&s->state_lock);
  return ok;
}

static void
push_item (G3nSession *s, Item *it)
{
  g_mutex_lock (&s->pending_lock);
  g_ptr_array_add (s->pending, it);
  g_mutex_unlock (&s->pending_lock);
}

gboolean
g3n_session_add_text (G3nSession *s, const char *text, GError **error)
{
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "user text is not valid UTF-8");
    return FALSE;
  }
  Item *it = g_new0 (Item, 1);
  it->kind = ITEM_TEXT;
  it->text = g_strdup (text);
  push_item (s, it);
  return TRUE;
}

static gboolean
add_soft (G3nSession *s, ItemKind kind, const float *embeds, int n, GError **error)
{
  int want = kind == ITEM_IMAGE ? g3n_chat_format_image_tokens (s->fmt) : g3n_chat_format_audio_tokens (s->fmt);
  if (n != want) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s embeddings have %d rows; the processor config places %d soft tokens per %s",
                 kind == ITEM_IMAGE ? "image" : "audio", n, want, kind == ITEM_IMAGE ? "image" : "clip");
    return FALSE;
  }
  Item *it = g_new0 (Item, 1);
  it->kind = kind;
  it->n = n;
  it->embeds = g_memdup2 (embeds, sizeof (float) * n * g3n_model_n_embd (s->model));
  push_item (s, it);
  return TRUE;
}

gboolean
g3n_session_add_image_embeddings (G3nSession *s, const float *embeds, int n, GError **error)
{
  return add_soft (s, ITEM_IMAGE, embeds, n, error);
}

gboolean
g3n_session_add_audio_embeddings (G3nSession *s, const float *embeds, int n, GError **error)
{
  return add_soft (s, ITEM_AUDIO, embeds, n, error);
}

/* Raw media: encoded on the caller's thread (a producer), without holding the state lock, so a worker can
 * keep generating meanwhile. */

static gboolean
ensure_audio (G3nSession *s, GError **error)
{
  g_mutex_lock (&s->encoder_lock);
  if (!s->fx)
    s->fx = g3n_audio_features_new_from_file (g3n_model_path (s->model), error);
  if (s->fx && !s->audio)
    s->audio = g3n_audio_encoder_new (s->model, error);
  gboolean ok = s->audio != NULL;
  g_mutex_unlock (&s->encoder_lock);
  return ok;
}

gboolean
g3n_session_add_audio (G3nSession *s, const float *pcm, gsize n_samples, GError **error)
{
  if (!ensure_audio (s, error))
    return FALSE;
  int T = g3n_audio_features_n_frames (s->fx, n_samples), F = g3n_audio_features_size (s->fx);
  int H = g3n_model_n_embd (s->model), n_sub, n_tok, n_soft = g3n_audio_encoder_n_soft_tokens (s->audio);
  if (T <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio clip of %" G_GSIZE_FORMAT
                 " samples is too short for one feature frame", n_samples);
    return FALSE;
  }
  g3n_audio_encoder_sizes (s->audio, T, &n_sub, &n_tok);
  g_autofree float *features = g_new (float, (gsize) T * F);
  g_autofree guint8 *mask = g_new (guint8, T), *tower_mask = g_new (guint8, MAX (n_tok, 1));
  g_autofree float *embeds = g_new (float, (gsize) MAX (n_tok, 1) * H), *padded = g_new (float, (gsize) n_soft * H);
  G3nAudioEncodeOutputs out = { .tower_mask = tower_mask, .embeds = embeds };
  return g3n_audio_features_compute (s->fx, pcm, n_samples, features, mask, error)
         && g3n_audio_encode (s->audio, features, T, F, mask, &out, error)
         && g3n_audio_embed_padded (s->audio, embeds, tower_mask, n_tok, padded, error)
         && add_soft (s, ITEM_AUDIO, padded, n_soft, error);
}

gboolean
g3n_session_add_image (G3nSession *s, const G3nImage *image, GError **error)
{
  g_mutex_lock (&s->encoder_lock);
  gboolean ok = s->vision || (g3n_image_params_load (g3n_model_path (s->model), &s->image_params, error)
                              && (s->vision = g3n_vision_encoder_new (s->model, error)) != NULL);
  g_mutex_unlock (&s->encoder_lock);
  if (!ok)
    return FALSE;
  int size = g3n_vision_encoder_image_size (s->vision), n_tok = g3n_vision_encoder_n_tokens (s->vision);
  g_autofree float *pixels = g_new (float, (gsize) 3 * size * size);
  g_autofree float *embeds = g_new (float, (gsize) n_tok * g3n_model_n_embd (s->model));
  return g3n_image_preprocess (&s->image_params, image, pixels, error)
         && g3n_vision_encoder_encode (s->vision, pixels, NULL, embeds, NULL, error)
         && add_soft (s, ITEM_IMAGE, embeds, n_tok, error);
}

/* ----------------------------------------------------------------------- turn assembly */

/* Text that closes the previous model turn if it is still open ("<end_of_turn>\n"). It belongs to the
 * previous exchange, so it is tokenised apart (it ends at the next turn's special token anyway). */
static char *
render_close (G3nSession *s)
{
  return s->model_turn_open ? g_strdup_printf ("%s\n", g3n_chat_format_end_of_turn (s->fmt)) : g_strdup ("");
}

/* The next turn: <bos> if nothing is in the context yet, the pending user turn (with the system prompt as
 * its prefix if it is the first), then a whole model turn (model_text) or the model header to generate. */
static GString *
render_turn (G3nSession *s, GPtrArray *items, const char *model_text, gboolean generation_prompt)
{
  GString *out = g_string_new (NULL);
  if (!s->started)
    g_string_append (out, g3n_chat_format_bos (s->fmt));
  gboolean system_now = s->system && !s->had_user_turn;
  if (items->len > 0 || system_now) {
    g_string_append_printf (out, "%suser\n", g3n_chat_format_start_of_turn (s->fmt));
    if (system_now)
      g_string_append_printf (out, "%s\n\n", s->system);
    for (guint i = 0; i < items->len; i++) {
      Item *it = g_ptr_array_index (items, i);
      G3nChatItemType type = it->kind == ITEM_TEXT ? G3N_CHAT_TEXT : it->kind == ITEM_IMAGE ? G3N_CHAT_IMAGE
                                                                                           : G3N_CHAT_AUDIO;
      g3n_chat_format_append_item (s->fmt, out, type, it->text, TRUE);
    }
    g_string_append_printf (out, "%s\n", g3n_chat_format_end_of_turn (s->fmt));
  }
  if (model_text || generation_prompt)
    g_string_append_printf (out, "%smodel\n", g3n_chat_format_start_of_turn (s->fmt));
  if (model_text) {
    g3n_chat_format_append_item (s->fmt, out, G3N_CHAT_TEXT, model_text, TRUE);
    g_string_append_printf (out, "%s\n", g3n_chat_format_end_of_turn (s->fmt));
  }
  return out;
}

/* Input embeddings for ids: token embeddings, with the soft tokens of images and audio clips (in order)
 * written over their placeholder runs. */
static float *
embed_turn (G3nSession *s, const int32_t *ids, int n, GPtrArray *items, GError **error)
{
  const G3nConfig *c = s->model->config;
  int H = g3n_model_n_embd (s->model);
  float *emb = g_new (float, (gsize) n * H);
  /* Placeholders are overwritten below; embed them as padding meanwhile. */
  g_autofree int32_t *plain = g_memdup2 (ids, sizeof (int32_t) * MAX (n, 1));
  for (int i = 0; i < n; i++)
    if (plain[i] == c->image_token_id || plain[i] == c->audio_token_id)
      plain[i] = c->text.pad_token_id;
  if (!g3n_model_embed_tokens (s->model, plain, n, emb, error)) {
    g_free (emb);
    return NULL;
  }
  int pos = 0;
  for (guint k = 0; k < items->len; k++) {
    Item *it = g_ptr_array_index (items, k);
    if (it->kind == ITEM_TEXT)
      continue;
    int32_t want = it->kind == ITEM_IMAGE ? c->image_token_id : c->audio_token_id;
    while (pos < n && ids[pos] != c->image_token_id && ids[pos] != c->audio_token_id)
      pos++;
    for (int j = 0; j < it->n; j++)
      if (pos + j >= n || ids[pos + j] != want) {
        g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                     "the turn's %s placeholders do not line up with its embeddings (a literal placeholder token "
                     "in the text?)", it->kind == ITEM_IMAGE ? "image" : "audio");
        g_free (emb);
        return NULL;
      }
    memcpy (emb + (gsize) pos * H, it->embeds, sizeof (float) * it->n * H);
    pos += it->n;
  }
  return emb;
}

static void
drop_exchange (G3nSession *s, guint index)
{
  Exchange gone = g_array_index (s->exchanges, Exchange, index);
  int len = gone.end - gone.begin;
  if (index == s->exchanges->len - 1)
    s->model_turn_open = FALSE; /* its model turn goes with it */
  g3n_context_remove (s->ctx, gone.begin, gone.end, NULL);
  g_array_remove_index (s->exchanges, index);
  for (guint i = index; i < s->exchanges->len; i++) {
    g_array_index (s->exchanges, Exchange, i).begin -= len;
    g_array_index (s->exchanges, Exchange, i).end -= len;
  }
}

/* Context shift: when `need` more positions do not fit, drops whole exchanges, oldest first, until
 * min_free positions are spare beyond `need`. Never dropped: the first exchange when keep_first_turn is
 * set (it holds the system prompt) and the last `keep_last` exchanges (the one being answered). */
static gboolean
make_room (G3nSession *s, int need, guint keep_last, GError **error)
{
  int n_ctx = s->params.n_ctx;
  if (g3n_context_n_past (s->ctx) + need <= n_ctx)
    return TRUE;
  guint first = s->params.keep_first_turn ? 1 : 0;
  while (s->exchanges->len > first + keep_last && g3n_context_n_past (s->ctx) + need + s->params.min_free > n_ctx)
    drop_exchange (s, first);
  if (g3n_context_n_past (s->ctx) + need > n_ctx) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONTEXT_FULL,
                 "context of %d positions is too small: %d are in use and cannot be shifted out, %d more needed",
                 n_ctx, g3n_context_n_past (s->ctx), need);
    return FALSE;
  }
  return TRUE;
}

/* Tokenises, embeds and prefills the next turn(s); on error nothing is consumed. The ids fed are offered
 * to `sampler` (when set) for its repetition penalty, as HF applies it to the whole input. */
static gboolean
prefill (G3nSession *s, GPtrArray *items, const char *model_text, gboolean generation_prompt, float *logits,
         G3nSampler *sampler, GError **error)
{
  g_autofree char *close = render_close (s);
  g_autoptr (GString) turn = render_turn (s, items, model_text, generation_prompt);
  g_autoptr (GArray) ids = g3n_tokenizer_encode (s->tok, close, -1, FALSE, error);
  g_autoptr (GArray) turn_ids = ids ? g3n_tokenizer_encode (s->tok, turn->str, (gssize) turn->len, FALSE, error)
                                    : NULL;
  if (!turn_ids)
    return FALSE;
  gboolean new_exchange = items->len > 0 || (s->system && !s->had_user_turn) || s->exchanges->len == 0;
  if (!make_room (s, (int) (ids->len + turn_ids->len) + 1, new_exchange ? 0 : 1, error))
    return FALSE;
  if (!s->model_turn_open) /* the shift dropped the open model turn: nothing left to close */
    g_array_set_size (ids, 0);
  int n_close = (int) ids->len;
  g_array_append_vals (ids, turn_ids->data, turn_ids->len);
  int n = (int) ids->len;
  if (n == 0)
    return TRUE;
  g_autofree float *emb = embed_turn (s, (const int32_t *) ids->data, n, items, error);
  if (!emb)
    return FALSE;
  int begin = g3n_context_n_past (s->ctx);
  G3nBatch b = { .n_tokens = n, .ids = (const int32_t *) ids->data, .embeds = emb, .logits = logits };
  if (!g3n_context_decode (s->ctx, &b, error))
    return FALSE;
  int end = g3n_context_n_past (s->ctx);
  for (int i = 0; sampler && i < n; i++)
    g3n_sampler_accept (sampler, g_array_index (ids, int32_t, i));
  if (n_close > 0)
    g_array_index (s->exchanges, Exchange, s->exchanges->len - 1).end = begin + n_close;
  if (new_exchange) {
    Exchange e = { begin + n_close, end };
    g_array_append_val (s->exchanges, e);
  } else {
    g_array_index (s->exchanges, Exchange, s->exchanges->len - 1).end = end;
  }
  s->started = TRUE;
  s->had_user_turn = s->had_user_turn || items->len > 0 || s->system != NULL;
  s->model_turn_open = generation_prompt && !model_text;
  return TRUE;
}

static GPtrArray *
take_pending (G3nSession *s)
{
  g_mutex_lock (&s->pending_lock);
  GPtrArray *items = s->pending;
  s->pending = g_ptr_array_new_with_free_func (item_free);
  g_mutex_unlock (&s->pending_lock);
  return items;
}

gboolean
g3n_session_add_model_text (G3nSession *s, const char *text, GError **error)
{
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "model text is not valid UTF-8");
    return FALSE;
  }
  g_mutex_lock (&s->state_lock);
  g_autoptr (GPtrArray) items = take_pending (s);
  gboolean ok = prefill (s, items, text, FALSE, NULL, NULL, error);
  g_mutex_unlock (&s->state_lock);
  return ok;
}

/* ------------------------------------------------------------------------------ generate */

static gboolean
is_stop (G3nSession *s, int32_t token)
{
  return token == s->end_of_turn_id || g3n_model_is_eos (s->model, token);
}

gboolean
g3n_session_generate (G3nSession *s, G3nSampler *sampler, int max_tokens, G3nTokenCallback callback,
                      gpointer user_data, G3nStopReason *reason, GError **error)
{
  int V = g3n_model_n_vocab (s->model);
  g_autofree float *logits = g_new (float, V);
  g_mutex_lock (&s->state_lock);
  g_autoptr (GPtrArray) items = take_pending (s);
  G3nStopReason why = G3N_STOP_MAX_TOKENS;
  gboolean ok = TRUE;
  /* An answer needs a new user turn (a system prompt alone makes one). */
  if (items->len == 0 && !(s->system && !s->had_user_turn)) {
    ok = FALSE;
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "nothing new to answer: add user input first");
  } else {
    ok = prefill (s, items, NULL, TRUE, logits, sampler, error);
  }
  G3nDetokenizer *dt = g3n_detokenizer_new (s->tok, TRUE);
  GString *piece = g_string_new (NULL);
  for (int i = 0; ok && i < max_tokens; i++) {
    int32_t token = g3n_sampler_sample (sampler, logits, V);
    if (is_stop (s, token)) {
      why = G3N_STOP_END_OF_TURN;
      break;
    }
    g_string_truncate (piece, 0);
    g3n_detokenizer_push (dt, token, piece);
    if (callback && !callback (token, piece->str, user_data)) {
      why = G3N_STOP_CALLBACK;
      /* the token is still part of the answer */
    }
    if (!make_room (s, 1, 1, error)) {
      ok = FALSE;
      break;
    }
    G3nBatch b = { .n_tokens = 1, .ids = &token, .logits = logits };
    ok = g3n_context_decode (s->ctx, &b, error);
    if (ok && s->exchanges->len > 0)
      g_array_index (s->exchanges, Exchange, s->exchanges->len - 1).end = g3n_context_n_past (s->ctx);
    if (why == G3N_STOP_CALLBACK)
      break;
  }
  g_string_truncate (piece, 0);
  g3n_detokenizer_finish (dt, piece);
  if (ok && piece->len && callback)
    callback (-1, piece->str, user_data);
  g_string_free (piece, TRUE);
  g3n_detokenizer_free (dt);
  if (reason)
    *reason = why;
  g_mutex_unlock (&s->state_lock);
  return ok;
}

int
g3n_session_n_past (G3nSession *s)
{
  g_mutex_lock (&s->state_lock);
  int n = g3n_context_n_past (s->ctx);
  g_mutex_unlock (&s->state_lock);
  return n;
}

int
g3n_session_n_ctx (const G3nSession *s)
{
  return s->params.n_ctx;
}

G3nContext *
g3n_session_get_context (G3nSession *s)
{
  return s->ctx;
}

/* ---------------------------------------------------------------------------- save / load */

/* A session file is a safetensors file: the KV rows of every layer that owns a cache (in the cache's own
 * dtype, F32, F16 or BF16, so the file records it), the turn state, and the model's identity, so a daemon
 * can resume a conversation after a restart. */
typedef struct {
  GArray *tensors; /* G3nTensor */
  GPtrArray *names, *data;
} Writer;

static void
put (Writer *w, const char *name, G3nDType dtype, const void *data, int ndim, int64_t d0, int64_t d1)
{
  G3nTensor t = { .dtype = dtype, .ndim = ndim, .shape = { d0, d1 } };
  t.name = g_strdup (name);
  gsize nbytes = (gsize) d0 * (ndim > 1 ? d1 : 1) * g3n_dtype_size (dtype);
  t.data = nbytes ? g_memdup2 (data, nbytes) : g_malloc0 (1);
  g_ptr_array_add (w->names, (gpointer) t.name);
  g_ptr_array_add (w->data, (gpointer) t.data);
  g_array_append_val (w->tensors, t);
}

gboolean
g3n_session_save (G3nSession *s, const char *path, GError **error)
{
  g_mutex_lock (&s->state_lock);
  Writer w = { g_array_new (FALSE, FALSE, sizeof (G3nTensor)), g_ptr_array_new_with_free_func (g_free),
               g_ptr_array_new_with_free_func (g_free) };
  const char *id = g3n_model_identity (s->model);
  put (&w, "session.identity", G3N_DTYPE_U8, id, 1, (int64_t) strlen (id), 0);
  gint64 state[5] = { g3n_context_n_past (s->ctx), s->started, s->had_user_turn, s->model_turn_open, s->params.n_ctx };
  put (&w, "session.state", G3N_DTYPE_I64, state, 1, 5, 0);
  g_autofree gint64 *ex = g_new (gint64, 2 * s->exchanges->len + 1);
  for (guint i = 0; i < s->exchanges->len; i++) {
    ex[2 * i] = g_array_index (s->exchanges, Exchange, i).begin;
    ex[2 * i + 1] = g_array_index (s->exchanges, Exchange, i).end;
  }
  put (&w, "session.exchanges", G3N_DTYPE_I64, ex, 2, s->exchanges->len, 2);
  if (s->system)
    put (&w, "session.system", G3N_DTYPE_U8, s->system, 1, (int64_t) strlen (s->system), 0);
  for (int l = 0; l < g3n_model_n_layers (s->model); l++) {
    G3nKvLayer *kv = g3n_context_kv_layer (s->ctx, l);
    if (!kv)
      continue;
    g_autofree char *k = g_strdup_printf ("kv.%d.k", l), *v = g_strdup_printf ("kv.%d.v", l);
    g_autofree char *p = g_strdup_printf ("kv.%d.pos0", l);
    gint64 pos0 = kv->pos0;
    put (&w, k, kv->dtype, kv->k, 2, kv->len, kv->width);
    put (&w, v, kv->dtype, kv->v, 2, kv->len, kv->width);
    put (&w, p, G3N_DTYPE_I64, &pos0, 1, 1, 0);
  }
  gboolean ok = g3n_safetensors_write (path, (G3nTensor *) w.tensors->data, w.tensors->len, error);
  g_array_free (w.tensors, TRUE);
  g_ptr_array_free (w.names, TRUE);
  g_ptr_array_free (w.data, TRUE);
  g_mutex_unlock (&s->state_lock);
  return ok;
}

static const G3nTensor *
need_tensor (G3nSafetensors *f, const char *name, G3nDType dtype, int ndim, GError **error)
{
  const G3nTensor *t = g3n_safetensors_find (f, name);
  if (!t || t->dtype != dtype || t->ndim != ndim) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: session tensor '%s' is missing or malformed",
                 g3n_safetensors_path (f), name);
    return NULL;
  }
  return t;
}

static gint64
i64_at (const G3nTensor *t, gsize i)
{
  gint64 v;
  memcpy (&v, (const guint8 *) t->data + 8 * i, 8);
  return v;
}

/* Saved keys or values: F32, F16 or BF16 (any of them loads into any cache type, converted). */
static const G3nTensor *
need_kv_tensor (G3nSafetensors *f, const char *name, GError **error)
{
  const G3nTensor *t = g3n_safetensors_find (f, name);
  G3nDType dtype = t && (t->dtype == G3N_DTYPE_F16 || t->dtype == G3N_DTYPE_BF16) ? t->dtype : G3N_DTYPE_F32;
  return need_tensor (f, name, dtype, 2, error);
}

/* Checks a layer's saved rows against the state before anything is changed. */
static gboolean
check_layer (G3nSession *s, G3nSafetensors *f, int l, int n_past, GError **error)
{
  G3nKvLayer *kv = g3n_context_kv_layer (s->ctx, l);
  g_autofree char *kn = g_strdup_printf ("kv.%d.k", l), *vn = g_strdup_printf ("kv.%d.v", l);
  g_autofree char *pn = g_strdup_printf ("kv.%d.pos0", l);
  const G3nTensor *k = need_kv_tensor (f, kn, error);
  const G3nTensor *v = k ? need_tensor (f, vn, k->dtype, 2, error) : NULL;
  const G3nTensor *p = v ? need_tensor (f, pn, G3N_DTYPE_I64, 1, error) : NULL;
  if (!p)
    return FALSE;
  gint64 pos0 = g3n_tensor_numel (p) == 1 ? i64_at (p, 0) : -1;
  gint64 len = k->shape[0];
  gboolean ok = k->shape[1] == kv->width && v->shape[0] == len && v->shape[1] == kv->width && pos0 >= 0
                && pos0 + len == n_past && (kv->window <= 0 ? pos0 == 0 : len <= kv->window);
  if (!ok)
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: the cache of layer %d does not fit this model's layout",
                 g3n_safetensors_path (f), l);
  return ok;
}

gboolean
g3n_session_load (G3nSession *s, const char *path, GError **error)
{
  G3nSafetensors *f = g3n_safetensors_open (path, error);
  if (!f)
    return FALSE;
  g_mutex_lock (&s->state_lock);
  const G3nTensor *id = need_tensor (f, "session.identity", G3N_DTYPE_U8, 1, error);
  const G3nTensor *st = id ? need_tensor (f, "session.state", G3N_DTYPE_I64, 1, error) : NULL;
  const G3nTensor *ex = st ? need_tensor (f, "session.exchanges", G3N_DTYPE_I64, 2, error) : NULL;
  const char *mine = g3n_model_identity (s->model);
  gboolean ok = ex != NULL;
  if (ok && (id->nbytes != strlen (mine) || memcmp (id->data, mine, id->nbytes) != 0)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: the session was saved with another model", path);
    ok = FALSE;
  }
  gint64 n_past = ok && g3n_tensor_numel (st) == 5 ? i64_at (st, 0) : -1;
  if (ok && (n_past < 0 || n_past > s->params.n_ctx || ex->shape[1] != 2)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: %" G_GINT64_FORMAT " positions do not fit n_ctx %d", path,
                 n_past, s->params.n_ctx);
    ok = FALSE;
  }
  for (gint64 i = 0; ok && i < ex->shape[0] * 2; i++)
    ok = i64_at (ex, i) >= 0 && i64_at (ex, i) <= n_past && (i % 2 == 0 || i64_at (ex, i) >= i64_at (ex, i - 1));
  if (ex && !ok && error && !*error)
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: invalid exchange positions", path);
  for (int l = 0; ok && l < g3n_model_n_layers (s->model); l++)
    ok = !g3n_context_kv_layer (s->ctx, l) || check_layer (s, f, l, (int) n_past, error);
  if (ok) {
    for (int l = 0; l < g3n_model_n_layers (s->model); l++) {
      G3nKvLayer *kv = g3n_context_kv_layer (s->ctx, l);
      if (!kv)
        continue;
      g_autofree char *kn = g_strdup_printf ("kv.%d.k", l), *vn = g_strdup_printf ("kv.%d.v", l);
      g_autofree char *pn = g_strdup_printf ("kv.%d.pos0", l);
      const G3nTensor *k = g3n_safetensors_find (f, kn), *v = g3n_safetensors_find (f, vn);
      g3n_kv_layer_reset (kv, (int) i64_at (g3n_safetensors_find (f, pn), 0));
      /* a file of another KV type is converted: widening is exact, narrowing rounds as decoding would */
      g3n_kv_layer_append_as (kv, k->dtype, k->data, v->data, (int) k->shape[0]);
    }
    g3n_context_set_n_past (s->ctx, (int) n_past);
    g_array_set_size (s->exchanges, (guint) ex->shape[0]);
    for (guint i = 0; i < s->exchanges->len; i++)
      g_array_index (s->exchanges, Exchange, i) = (Exchange) { (int) i64_at (ex, 2 * i), (int) i64_at (ex, 2 * i + 1) };
    s->started = i64_at (st, 1) != 0;
    s->had_user_turn = i64_at (st, 2) != 0;
    s->model_turn_open = i64_at (st, 3) != 0;
    const G3nTensor *sys = g3n_safetensors_find (f, "session.system");
    g_free (s->system);
    s->system = sys && sys->dtype == G3N_DTYPE_U8 ? g_strndup (sys->data, sys->nbytes) : NULL;
  }
  g_mutex_unlock (&s->state_lock);
  g3n_safetensors_free (f);
  return ok;
}
