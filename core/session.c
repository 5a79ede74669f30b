/* session.c — one live conversation over a decoder context: turns in the Gemma 3n chat format, input
 * prefilled as it arrives (text, image and audio soft tokens, audio streamed), generation with a sampler,
 * context shift, cancellation, save/restore.
 *
 * Prefill as input arrives: the open user turn is rendered as the chat template renders it, but tokenised
 * and prefilled piece by piece. Pieces end at special tokens, which the tokenizer matches in the raw text
 * before anything else, so the pieces' tokens are exactly those of the whole turn: text waits in `tail`
 * until a special token follows it; soft tokens (whose placeholders are special tokens) go in directly, in
 * batches of prefill_batch rows at fixed offsets from their clip's start, so the computation — and every
 * logit — is the same however the input was split into calls.
 *
 * Threads: `lock` guards the queue and the flags and is never held while computing. One thread at a time
 * computes on the context: it holds the `busy` token. Adders queue their input and prefill it only if no
 * other thread is busy (otherwise the busy thread's next prefill, or the next call, takes it), so a
 * producer never waits for a generation. Callbacks run with no lock held.
 */
#include "audio-encoder.h"
#include "compute.h"
#include "kv-cache.h"
#include "model.h"
#include "vision-encoder.h"
#include "safetensors.h"
#include "gemma3n.h"

#include <string.h>

typedef enum { ITEM_TEXT, ITEM_IMAGE, ITEM_AUDIO } ItemKind;

/* Queued input. Soft rows [0, n) are final; [0, done) are in the context. The buffer is allocated for all
 * `cap` rows up front, so the prefilling thread reads rows while a producer appends more. */
typedef struct {
  ItemKind kind;
  char *text;
  float *embeds; /* [cap, n_embd] soft tokens */
  int n, cap, done;
  gboolean opened; /* the text before its soft tokens (boi/boa) is in the tail */
  gboolean closed; /* no more rows will come */
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

  GMutex lock;
  GCond idle;                /* signalled when `busy` is released */
  GThread *busy;             /* the thread computing on the context, or NULL */
  GPtrArray *pending;        /* Item*: input not yet wholly in the context, in order */
  GCancellable *cancellable; /* for every call, g3n_session_set_cancellable */
  int n_past;                /* the context's, readable while another thread computes */
  char *system;

  /* The towers (shared per model) and this session's audio stream; made on first use. */
  GMutex encoder_lock;
  G3nAudioFeatures *fx;
  G3nAudioEncoder *audio;
  G3nVisionEncoder *vision;
  G3nImageParams image_params;
  GMutex audio_lock;         /* one feeder of the streaming clip at a time */
  G3nAudioStream *astream;
  float *audio_pad;          /* [n_embd]: the audio padding id's embedding */
  Item *audio_in;            /* the clip being streamed (also in pending), or NULL */
  gsize audio_samples;       /* samples of it pushed so far */

  /* Turn state: changed only by the busy thread. */
  GArray *exchanges;         /* Exchange, oldest first */
  gboolean started;          /* <bos> is in the context (or the tail) */
  gboolean had_user_turn;    /* the system prompt went into the first user turn */
  gboolean model_turn_open;  /* the last model turn still needs "<end_of_turn>\n" */
  gboolean user_turn_open;   /* a user turn is being prefilled: the last exchange */
  gboolean mark_started, mark_had_user_turn; /* their values before it opened, for discarding it */
  GString *tail;             /* rendered text of the open turn not yet prefilled */
  GArray *turn_ids;          /* int32 ids prefilled since the last answer, for the sampler's penalty */
  char *audio_piece, *image_piece; /* placeholder token strings */
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
  return (G3nSessionParams) { .n_ctx = 4096, .keep_first_turn = TRUE, .min_free = 0, .audio_padding = TRUE,
                              .prefill_batch = 32 };
}

static char *
piece_of (G3nTokenizer *tok, int32_t id)
{
  const char *p = g3n_tokenizer_id_to_piece (tok, id);
  return g_strdup (p ? p : "");
}

G3nSession *
g3n_session_new (G3nModel *model, G3nTokenizer *tok, const G3nChatFormat *fmt, const G3nSessionParams *params,
                 GError **error)
{
  G3nSessionParams p = params ? *params : g3n_session_default_params ();
  if (p.prefill_batch <= 0)
    p.prefill_batch = g3n_session_default_params ().prefill_batch;
  G3nContextParams cp = { .n_ctx = p.n_ctx, .kv_type = p.kv_type, .n_threads = p.n_threads };
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
  g_mutex_init (&s->lock);
  g_cond_init (&s->idle);
  g_mutex_init (&s->encoder_lock);
  g_mutex_init (&s->audio_lock);
  s->pending = g_ptr_array_new_with_free_func (item_free);
  s->exchanges = g_array_new (FALSE, FALSE, sizeof (Exchange));
  s->tail = g_string_new (NULL);
  s->turn_ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  s->audio_piece = piece_of (tok, model->config->audio_token_id);
  s->image_piece = piece_of (tok, model->config->image_token_id);
  return s;
}

void
g3n_session_free (G3nSession *s)
{
  if (!s)
    return;
  g_ptr_array_free (s->pending, TRUE);
  g_array_free (s->exchanges, TRUE);
  g_array_free (s->turn_ids, TRUE);
  g_string_free (s->tail, TRUE);
  g3n_audio_stream_free (s->astream);
  g3n_audio_encoder_free (s->audio);
  g3n_audio_features_free (s->fx);
  g3n_vision_encoder_free (s->vision);
  g_free (s->audio_pad);
  g_free (s->audio_piece);
  g_free (s->image_piece);
  g_clear_object (&s->cancellable);
  g_mutex_clear (&s->encoder_lock);
  g_mutex_clear (&s->audio_lock);
  g_free (s->system);
  g3n_context_free (s->ctx);
  g3n_chat_format_free (s->fmt);
  g3n_model_unref (s->model);
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->idle);
  g_free (s);
}

void
g3n_session_set_cancellable (G3nSession *s, GCancellable *cancellable)
{
  g_mutex_lock (&s->lock);
  g_set_object (&s->cancellable, cancellable);
  g_mutex_unlock (&s->lock);
}

/* The session's threads and cancellable (a reference: another thread may replace it meanwhile), released
 * with compute_clear. */
static G3nComputeParams
compute_params (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  G3nComputeParams c = { .n_threads = s->params.n_threads,
                         .cancellable = s->cancellable ? g_object_ref (s->cancellable) : NULL };
  g_mutex_unlock (&s->lock);
  return c;
}

static void
compute_clear (G3nComputeParams *c)
{
  g_clear_object (&c->cancellable);
}

/* ------------------------------------------------------------------------- the busy token */

/* Waits until no other thread computes on the context, then takes the token. A call from the busy thread
 * itself (a token callback calling back into the session) is refused instead of deadlocking. */
static gboolean
enter (G3nSession *s, GError **error)
{
  g_mutex_lock (&s->lock);
  if (s->busy == g_thread_self ()) {
    g_mutex_unlock (&s->lock);
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "the session is computing on this thread (called from its own callback?)");
    return FALSE;
  }
  while (s->busy)
    g_cond_wait (&s->idle, &s->lock);
  s->busy = g_thread_self ();
  g_mutex_unlock (&s->lock);
  return TRUE;
}

/* Takes the token only if it is free. */
static gboolean
try_enter (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  gboolean got = s->busy == NULL;
  if (got)
    s->busy = g_thread_self ();
  g_mutex_unlock (&s->lock);
  return got;
}

static void
leave (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  s->n_past = g3n_context_n_past (s->ctx);
  s->busy = NULL;
  g_cond_broadcast (&s->idle);
  g_mutex_unlock (&s->lock);
}

/* ------------------------------------------------------------------------------ prefill */

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
 * set (it holds the system prompt) and the last `keep_last` exchanges (the one being extended). */
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

/* Decodes ids (with embeds, or their token embeddings) at the end of the last exchange, which grows by
 * them; with the session's threads and cancellable. A failed decode changes nothing. */
static gboolean
decode (G3nSession *s, const int32_t *ids, const float *embeds, int n, float *logits, GError **error)
{
  if (n == 0)
    return TRUE;
  if (!make_room (s, n + 1, 1, error))
    return FALSE;
  g_autofree float *own = NULL;
  if (!embeds) {
    own = g_new (float, (gsize) n * g3n_model_n_embd (s->model));
    if (!g3n_model_embed_tokens (s->model, ids, n, own, error))
      return FALSE;
  }
  G3nComputeParams c = compute_params (s);
  G3nBatch b = { .n_tokens = n, .ids = ids, .embeds = embeds ? embeds : own, .logits = logits,
                 .cancellable = c.cancellable };
  gboolean ok = g3n_context_decode (s->ctx, &b, error);
  compute_clear (&c);
  if (!ok)
    return FALSE;
  g_array_index (s->exchanges, Exchange, s->exchanges->len - 1).end = g3n_context_n_past (s->ctx);
  g_array_append_vals (s->turn_ids, ids, n);
  g_mutex_lock (&s->lock);
  s->n_past = g3n_context_n_past (s->ctx);
  g_mutex_unlock (&s->lock);
  return TRUE;
}

/* Prefills the tail: all of it, or (whole = FALSE) up to its last special token, after which the text could
 * still merge with what follows. Placeholder tokens cannot come from text (add_text refuses them). */
static gboolean
flush_tail (G3nSession *s, gboolean whole, float *logits, GError **error)
{
  g_autoptr (GArray) ids = g3n_tokenizer_encode (s->tok, s->tail->str, (gssize) s->tail->len, FALSE, error);
  if (!ids)
    return FALSE;
  int n = (int) ids->len;
  gsize cut = s->tail->len;
  if (!whole) {
    while (n > 0 && !g3n_tokenizer_is_special (s->tok, g_array_index (ids, int32_t, n - 1)))
      n--;
    if (n == 0)
      return TRUE;
    const char *piece = g3n_tokenizer_id_to_piece (s->tok, g_array_index (ids, int32_t, n - 1));
    const char *at = piece ? g_strrstr (s->tail->str, piece) : NULL;
    if (!at)
      return TRUE; /* cannot tell where it ends in the text: keep it all for the final flush */
    cut = (gsize) (at - s->tail->str) + strlen (piece);
  }
  if (!decode (s, (const int32_t *) ids->data, NULL, n, logits, error))
    return FALSE;
  g_string_erase (s->tail, 0, (gssize) cut);
  return TRUE;
}

/* Opens a user turn (the last exchange from now on): closes the previous model turn if it is open, then
 * renders <bos> (first turn), the user header and the system prompt (first user turn) into the tail. */
static gboolean
close_model_turn (G3nSession *s, GError **error)
{
  if (!s->model_turn_open)
    return TRUE;
  g_autofree char *close = g_strdup_printf ("%s\n", g3n_chat_format_end_of_turn (s->fmt));
  g_autoptr (GArray) ids = g3n_tokenizer_encode (s->tok, close, -1, FALSE, error);
  if (!ids || !make_room (s, (int) ids->len + 1, 0, error))
    return FALSE;
  /* the shift may have dropped the open model turn: then nothing is left to close */
  if (s->model_turn_open && !decode (s, (const int32_t *) ids->data, NULL, (int) ids->len, NULL, error))
    return FALSE;
  s->model_turn_open = FALSE;
  return TRUE;
}

static gboolean
open_user_turn (G3nSession *s, GError **error)
{
  if (!close_model_turn (s, error))
    return FALSE;
  s->mark_started = s->started;
  s->mark_had_user_turn = s->had_user_turn;
  Exchange e = { g3n_context_n_past (s->ctx), g3n_context_n_past (s->ctx) };
  g_array_append_val (s->exchanges, e);
  /* until the turn closes it may be discarded: the sliding layers keep what they had at its start */
  g3n_context_keep_from (s->ctx, e.begin);
  g_string_truncate (s->tail, 0);
  if (!s->started)
    g_string_append (s->tail, g3n_chat_format_bos (s->fmt));
  g_string_append_printf (s->tail, "%suser\n", g3n_chat_format_start_of_turn (s->fmt));
  if (s->system && !s->had_user_turn)
    g_string_append_printf (s->tail, "%s\n\n", s->system);
  s->started = s->had_user_turn = s->user_turn_open = TRUE;
  return TRUE;
}

/* The text before and after a soft item's placeholders, as the template renders it. */
static void
soft_parts (G3nSession *s, const Item *it, GString *before, GString *after)
{
  g_autoptr (GString) all = g_string_new (NULL);
  g3n_chat_format_append_item (s->fmt, all, it->kind == ITEM_IMAGE ? G3N_CHAT_IMAGE : G3N_CHAT_AUDIO, NULL, TRUE);
  const char *piece = it->kind == ITEM_IMAGE ? s->image_piece : s->audio_piece;
  const char *first = *piece ? strstr (all->str, piece) : NULL, *last = first ? g_strrstr (all->str, piece) : NULL;
  if (!first) { /* no placeholder in the template: the rows go after its text */
    g_string_append (before, all->str);
    return;
  }
  g_string_append_len (before, all->str, first - all->str);
  g_string_append (after, last + strlen (piece));
}

/* Prefills what is final of a soft item: its opening text, then its rows in batches of prefill_batch at
 * fixed offsets (the last batch of a closed item may be shorter), then its closing text into the tail.
 * Returns whether the item is done. */
static gboolean
prefill_soft (G3nSession *s, Item *it, gboolean *done, GError **error)
{
  if (!it->opened) {
    g_autoptr (GString) before = g_string_new (NULL), after = g_string_new (NULL);
    soft_parts (s, it, before, after);
    g_string_append (s->tail, before->str);
    it->opened = TRUE;
  }
  if (!flush_tail (s, TRUE, NULL, error)) /* it ends at boi/boa, a special token */
    return FALSE;
  int32_t id = it->kind == ITEM_IMAGE ? s->model->config->image_token_id : s->model->config->audio_token_id;
  int H = g3n_model_n_embd (s->model), B = s->params.prefill_batch;
  g_autofree int32_t *ids = g_new (int32_t, B);
  for (int i = 0; i < B; i++)
    ids[i] = id;
  for (;;) {
    g_mutex_lock (&s->lock);
    int avail = it->n;
    gboolean closed = it->closed;
    g_mutex_unlock (&s->lock);
    int k = avail - it->done >= B ? B : closed ? avail - it->done : 0;
    if (k == 0) {
      *done = closed;
      break;
    }
    if (!decode (s, ids, it->embeds + (gsize) it->done * H, k, NULL, error))
      return FALSE;
    it->done += k;
  }
  if (*done) {
    g_autoptr (GString) before = g_string_new (NULL), after = g_string_new (NULL);
    soft_parts (s, it, before, after);
    g_string_append (s->tail, after->str);
  }
  return TRUE;
}

/* Prefills the queue as far as it is final. Called by the busy thread. On an error (a full context, a
 * cancellation) what was prefilled stays and the rest stays queued, so a later call resumes. */
static gboolean
prefill_pending (G3nSession *s, GError **error)
{
  for (;;) {
    g_mutex_lock (&s->lock);
    Item *it = s->pending->len ? g_ptr_array_index (s->pending, 0) : NULL;
    g_mutex_unlock (&s->lock);
    if (!it)
      break;
    if (!s->user_turn_open && !open_user_turn (s, error))
      return FALSE;
    gboolean done = TRUE;
    if (it->kind == ITEM_TEXT)
      g3n_chat_format_append_item (s->fmt, s->tail, G3N_CHAT_TEXT, it->text, TRUE);
    else if (!prefill_soft (s, it, &done, error))
      return FALSE;
    if (!done)
      return TRUE; /* an open clip: the rest when more of it arrives */
    g_mutex_lock (&s->lock);
    g_ptr_array_remove_index (s->pending, 0);
    g_mutex_unlock (&s->lock);
  }
  return !s->user_turn_open || flush_tail (s, FALSE, NULL, error);
}

/* After input was queued: prefills it now unless another thread computes (it then stays queued). */
static gboolean
prefill_if_free (G3nSession *s, GError **error)
{
  if (!try_enter (s))
    return TRUE;
  gboolean ok = prefill_pending (s, error);
  leave (s);
  return ok;
}

gboolean
g3n_session_prefill (G3nSession *s, GError **error)
{
  if (!enter (s, error))
    return FALSE;
  gboolean ok = prefill_pending (s, error);
  leave (s);
  return ok;
}

/* Forgets the open user turn: its queued input and what of it is in the context. The caller holds the busy
 * token and the audio lock. */
static void
discard_turn (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  g_ptr_array_set_size (s->pending, 0);
  gboolean streaming = s->audio_in && s->audio_samples > 0;
  s->audio_in = NULL;
  s->audio_samples = 0;
  g_mutex_unlock (&s->lock);
  if (streaming)
    g3n_audio_stream_reset (s->astream);
  if (s->user_turn_open) {
    Exchange open = g_array_index (s->exchanges, Exchange, s->exchanges->len - 1);
    if (open.end > open.begin)
      g3n_context_remove (s->ctx, open.begin, open.end, NULL);
    g3n_context_keep_from (s->ctx, -1);
    g_array_set_size (s->exchanges, s->exchanges->len - 1);
    s->started = s->mark_started;
    s->had_user_turn = s->mark_had_user_turn;
    s->user_turn_open = FALSE;
  }
  g_string_truncate (s->tail, 0);
  g_array_set_size (s->turn_ids, 0);
}

gboolean
g3n_session_discard_turn (G3nSession *s, GError **error)
{
  g_mutex_lock (&s->audio_lock);
  gboolean ok = enter (s, error);
  if (ok) {
    discard_turn (s);
    leave (s);
  }
  g_mutex_unlock (&s->audio_lock);
  return ok;
}

/* ------------------------------------------------------------------------------- input */

gboolean
g3n_session_set_system (G3nSession *s, const char *text, GError **error)
{
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "system prompt is not valid UTF-8");
    return FALSE;
  }
  if (!enter (s, error))
    return FALSE;
  gboolean ok = !s->had_user_turn;
  if (ok) {
    g_free (s->system);
    s->system = g_strdup (text);
  } else {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "the system prompt must be set before the first user turn (it is part of that turn)");
  }
  leave (s);
  return ok;
}

static void
queue (G3nSession *s, Item *it)
{
  g_mutex_lock (&s->lock);
  g_ptr_array_add (s->pending, it);
  g_mutex_unlock (&s->lock);
}

/* Text the chat template would render as is: valid UTF-8, without soft-token placeholders (they would not
 * line up with any embeddings). */
static gboolean
check_text (G3nSession *s, const char *text, const char *what, GError **error)
{
  if (!g_utf8_validate (text, -1, NULL)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
    return FALSE;
  }
  const char *bad = *s->audio_piece && strstr (text, s->audio_piece) ? s->audio_piece
                    : *s->image_piece && strstr (text, s->image_piece) ? s->image_piece : NULL;
  if (bad)
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s holds the soft-token placeholder %s: add images and audio as media, not as text", what, bad);
  return bad == NULL;
}

gboolean
g3n_session_add_text (G3nSession *s, const char *text, GError **error)
{
  if (!check_text (s, text, "user text", error))
    return FALSE;
  Item *it = g_new0 (Item, 1);
  it->kind = ITEM_TEXT;
  it->text = g_strdup (text);
  queue (s, it);
  return prefill_if_free (s, error);
}

static Item *
soft_item (G3nSession *s, ItemKind kind, int cap)
{
  Item *it = g_new0 (Item, 1);
  it->kind = kind;
  it->cap = cap;
  it->embeds = g_new (float, (gsize) MAX (cap, 1) * g3n_model_n_embd (s->model));
  return it;
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
  Item *it = soft_item (s, kind, n);
  memcpy (it->embeds, embeds, sizeof (float) * n * g3n_model_n_embd (s->model));
  it->n = n;
  it->closed = TRUE;
  queue (s, it);
  return prefill_if_free (s, error);
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

gboolean
g3n_session_add_image (G3nSession *s, const G3nImage *image, GError **error)
{
  g_mutex_lock (&s->encoder_lock);
  gboolean ok = s->vision || (g3n_image_params_load (g3n_model_path (s->model), &s->image_params, error)
                              && (s->vision = g3n_vision_encoder_new (s->model, error)) != NULL);
  g_mutex_unlock (&s->encoder_lock);
  if (!ok)
    return FALSE;
  /* encoded on the caller's thread, holding nothing: another thread may generate meanwhile */
  int size = g3n_vision_encoder_image_size (s->vision), n_tok = g3n_vision_encoder_n_tokens (s->vision);
  g_autofree float *pixels = g_new (float, (gsize) 3 * size * size);
  g_autofree float *embeds = g_new (float, (gsize) n_tok * g3n_model_n_embd (s->model));
  G3nComputeParams c = compute_params (s);
  ok = g3n_image_preprocess (&s->image_params, image, pixels, error)
       && g3n_vision_encoder_encode (s->vision, &c, pixels, NULL, embeds, NULL, error);
  compute_clear (&c);
  return ok && add_soft (s, ITEM_IMAGE, embeds, n_tok, error);
}

/* ------------------------------------------------------------------------ streaming audio */

/* Rows of the streamed clip beyond its soft-token count are dropped, as the processor cuts clips at 30 s. */
static void
append_audio_rows (G3nSession *s, const float *embeds, const guint8 *padding, int n)
{
  int H = g3n_model_n_embd (s->model);
  g_mutex_lock (&s->lock);
  Item *it = s->audio_in;
  for (int i = 0; it && i < n && it->n < it->cap; i++, it->n++)
    memcpy (it->embeds + (gsize) it->n * H, padding && padding[i] ? s->audio_pad : embeds + (gsize) i * H,
            sizeof (float) * H);
  g_mutex_unlock (&s->lock);
}

static void
on_audio_tokens (const float *tower, const guint8 *tower_mask, const float *embeds, int first, int n, gpointer data)
{
  (void) tower, (void) first;
  append_audio_rows (data, embeds, tower_mask, n); /* padding tokens take the padding embedding */
}

/* The audio features, the model's tower, this session's stream and the padding embedding, once. */
static gboolean
ensure_audio (G3nSession *s, GError **error)
{
  g_mutex_lock (&s->encoder_lock);
  if (!s->fx)
    s->fx = g3n_audio_features_new_from_file (g3n_model_path (s->model), error);
  if (s->fx && !s->audio)
    s->audio = g3n_audio_encoder_new (s->model, error);
  if (s->audio && !s->audio_pad) {
    int S = g3n_audio_encoder_n_soft_tokens (s->audio), H = g3n_model_n_embd (s->model);
    g_autofree float *rows = g_new (float, (gsize) MAX (S, 1) * H);
    if (S > 0 && g3n_audio_embed_padded (s->audio, NULL, NULL, 0, rows, error))
      s->audio_pad = g_memdup2 (rows, sizeof (float) * H);
    else if (S <= 0)
      g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: audio_soft_tokens_per_image is %d",
                   g3n_model_path (s->model), S);
  }
  if (s->audio_pad && !s->astream)
    s->astream = g3n_audio_stream_new (s->fx, s->audio, NULL, on_audio_tokens, s, error);
  gboolean ok = s->astream != NULL;
  g_mutex_unlock (&s->encoder_lock);
  return ok;
}

static gboolean
check_clip_open (G3nSession *s, gboolean want_open, GError **error)
{
  g_mutex_lock (&s->lock);
  gboolean open = s->audio_in != NULL;
  g_mutex_unlock (&s->lock);
  if (open != want_open)
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, want_open
                 ? "no audio clip is open (g3n_session_begin_audio first)"
                 : "an audio clip is already open (g3n_session_end_audio first)");
  return open == want_open;
}

/* A clip whose encoding failed (cancelled) cannot be completed: the turn it was in goes with it. */
static void
abandon_clip (G3nSession *s)
{
  if (enter (s, NULL)) {
    discard_turn (s);
    leave (s);
  }
}

gboolean
g3n_session_begin_audio (G3nSession *s, GError **error)
{
  if (!ensure_audio (s, error))
    return FALSE;
  g_mutex_lock (&s->audio_lock);
  gboolean ok = check_clip_open (s, FALSE, error);
  if (ok) {
    Item *it = soft_item (s, ITEM_AUDIO, g3n_chat_format_audio_tokens (s->fmt));
    g_mutex_lock (&s->lock);
    s->audio_in = it;
    s->audio_samples = 0;
    g_ptr_array_add (s->pending, it);
    g_mutex_unlock (&s->lock);
    ok = prefill_if_free (s, error);
  }
  g_mutex_unlock (&s->audio_lock);
  return ok;
}

/* Prefills what the clip made final. A cancelled audio call discards its turn (the clip cannot be completed,
 * whichever of its encoding or its prefill was cancelled). The caller holds the audio lock. */
static gboolean
prefill_clip (G3nSession *s, GError **error)
{
  GError *own = NULL;
  if (prefill_if_free (s, &own))
    return TRUE;
  if (g_error_matches (own, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    abandon_clip (s);
  g_propagate_error (error, own);
  return FALSE;
}

gboolean
g3n_session_push_audio (G3nSession *s, const float *pcm, gsize n_samples, GError **error)
{
  g_mutex_lock (&s->audio_lock);
  GError *own = NULL;
  gboolean ok = check_clip_open (s, TRUE, error);
  if (ok) {
    gsize max = g3n_audio_features_max_samples (s->fx);
    gsize n = max ? MIN (n_samples, max - MIN (max, s->audio_samples)) : n_samples;
    G3nComputeParams c = compute_params (s);
    g3n_audio_stream_set_compute (s->astream, &c);
    /* features and conformer run here, on the feeder's thread, holding nothing */
    ok = n == 0 || g3n_audio_stream_push (s->astream, pcm, n, &own);
    compute_clear (&c);
    s->audio_samples += n;
    if (!ok && g_error_matches (own, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      abandon_clip (s); /* the stream abandoned the clip */
    if (!ok)
      g_propagate_error (error, own);
    ok = ok && prefill_clip (s, error);
  }
  g_mutex_unlock (&s->audio_lock);
  return ok;
}

gboolean
g3n_session_push_audio_embeddings (G3nSession *s, const float *embeds, int n, GError **error)
{
  g_mutex_lock (&s->audio_lock);
  gboolean ok = check_clip_open (s, TRUE, error);
  if (ok && s->audio_samples > 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "the open audio clip is fed with PCM: embeddings cannot be mixed into it");
    ok = FALSE;
  }
  if (ok)
    append_audio_rows (s, embeds, NULL, n);
  ok = ok && prefill_clip (s, error);
  g_mutex_unlock (&s->audio_lock);
  return ok;
}

gboolean
g3n_session_end_audio (G3nSession *s, GError **error)
{
  g_mutex_lock (&s->audio_lock);
  if (!check_clip_open (s, TRUE, error)) {
    g_mutex_unlock (&s->audio_lock);
    return FALSE;
  }
  gboolean ok = TRUE;
  if (s->audio_samples > 0) {
    G3nComputeParams c = compute_params (s);
    g3n_audio_stream_set_compute (s->astream, &c);
    ok = g3n_audio_stream_finish (s->astream, error);
    compute_clear (&c);
  }
  if (ok) {
    int H = g3n_model_n_embd (s->model);
    g_mutex_lock (&s->lock);
    Item *it = s->audio_in;
    ok = it->n > 0;
    for (; ok && s->params.audio_padding && it->n < it->cap; it->n++)
      memcpy (it->embeds + (gsize) it->n * H, s->audio_pad, sizeof (float) * H);
    it->closed = TRUE;
    s->audio_in = NULL;
    s->audio_samples = 0;
    g_mutex_unlock (&s->lock);
    if (!ok)
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "the audio clip ended without any audio tokens");
  }
  if (!ok)
    abandon_clip (s); /* cancelled or empty: the clip cannot be completed */
  else
    ok = prefill_clip (s, error);
  g_mutex_unlock (&s->audio_lock);
  return ok;
}

gboolean
g3n_session_add_audio (G3nSession *s, const float *pcm, gsize n_samples, GError **error)
{
  if (n_samples == 0 || !ensure_audio (s, error)) {
    if (n_samples == 0)
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio clip has no samples");
    return FALSE;
  }
  if (g3n_audio_features_n_frames (s->fx, n_samples) <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "audio clip of %" G_GSIZE_FORMAT
                 " samples is too short for one feature frame", n_samples);
    return FALSE;
  }
  /* one path for whole clips and streams: the same batches, so the same numbers */
  return g3n_session_begin_audio (s, error) && g3n_session_push_audio (s, pcm, n_samples, error)
         && g3n_session_end_audio (s, error);
}

/* ----------------------------------------------------------------------- closing a turn */

/* Prefills everything queued and closes the user turn with `closing` (the model header, maybe a whole
 * model turn); logits (optional) of the last token. A turn is opened if input or a first system prompt
 * wants one; without a user turn, `closing` goes on the last exchange (a new one if there is none). */
static gboolean
close_turn (G3nSession *s, const char *closing, float *logits, GError **error)
{
  g_mutex_lock (&s->lock);
  gboolean clip_open = s->audio_in != NULL;
  g_mutex_unlock (&s->lock);
  if (clip_open) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "an audio clip is still open: end it first");
    return FALSE;
  }
  if (!prefill_pending (s, error))
    return FALSE;
  if (!s->user_turn_open && s->system && !s->had_user_turn && !open_user_turn (s, error))
    return FALSE;
  gsize keep = s->tail->len;
  gboolean started = s->started;
  if (s->user_turn_open) {
    g_string_append_printf (s->tail, "%s\n", g3n_chat_format_end_of_turn (s->fmt));
  } else { /* no user input: a model turn alone, on the last exchange */
    if (!close_model_turn (s, error))
      return FALSE;
    if (s->exchanges->len == 0) {
      Exchange e = { g3n_context_n_past (s->ctx), g3n_context_n_past (s->ctx) };
      g_array_append_val (s->exchanges, e);
    }
    if (!s->started)
      g_string_append (s->tail, g3n_chat_format_bos (s->fmt));
    s->started = TRUE;
  }
  g_string_append (s->tail, closing);
  if (!flush_tail (s, TRUE, logits, error)) {
    g_string_truncate (s->tail, keep);
    s->started = started;
    return FALSE;
  }
  s->user_turn_open = FALSE;
  g3n_context_keep_from (s->ctx, -1);
  return TRUE;
}

gboolean
g3n_session_add_model_text (G3nSession *s, const char *text, GError **error)
{
  if (!check_text (s, text, "model text", error) || !enter (s, error))
    return FALSE;
  g_autoptr (GString) closing = g_string_new (NULL);
  g_string_append_printf (closing, "%smodel\n", g3n_chat_format_start_of_turn (s->fmt));
  g3n_chat_format_append_item (s->fmt, closing, G3N_CHAT_TEXT, text, TRUE);
  g_string_append_printf (closing, "%s\n", g3n_chat_format_end_of_turn (s->fmt));
  gboolean ok = close_turn (s, closing->str, NULL, error);
  if (ok) {
    s->model_turn_open = FALSE;
    g_array_set_size (s->turn_ids, 0);
  }
  leave (s);
  return ok;
}

/* ------------------------------------------------------------------------------ generate */

static gboolean
is_stop (G3nSession *s, int32_t token)
{
  return token == s->end_of_turn_id || g3n_model_is_eos (s->model, token);
}

static gboolean
has_new_input (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  gboolean any = s->pending->len > 0 || s->user_turn_open || (s->system && !s->had_user_turn);
  g_mutex_unlock (&s->lock);
  return any;
}

/* The answer, token by token: sample, report, decode. Runs holding only the busy token. */
static gboolean
answer (G3nSession *s, G3nSampler *sampler, int max_tokens, float *logits, G3nTokenCallback callback,
        gpointer user_data, G3nStopReason *why, GError **error)
{
  int V = g3n_model_n_vocab (s->model);
  G3nDetokenizer *dt = g3n_detokenizer_new (s->tok, TRUE);
  GString *piece = g_string_new (NULL);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < max_tokens; i++) {
    int32_t token = g3n_sampler_sample (sampler, logits, V);
    if (is_stop (s, token)) {
      *why = G3N_STOP_END_OF_TURN;
      break;
    }
    g_string_truncate (piece, 0);
    g3n_detokenizer_push (dt, token, piece);
    if (callback && !callback (token, piece->str, user_data))
      *why = G3N_STOP_CALLBACK; /* the token is still part of the answer */
    ok = decode (s, &token, NULL, 1, logits, error);
    if (*why == G3N_STOP_CALLBACK)
      break;
  }
  g_string_truncate (piece, 0);
  g3n_detokenizer_finish (dt, piece);
  if (ok && piece->len && callback)
    callback (-1, piece->str, user_data);
  g_string_free (piece, TRUE);
  g3n_detokenizer_free (dt);
  return ok;
}

gboolean
g3n_session_generate (G3nSession *s, G3nSampler *sampler, int max_tokens, G3nTokenCallback callback,
                      gpointer user_data, G3nStopReason *reason, GError **error)
{
  if (!enter (s, error))
    return FALSE;
  G3nStopReason why = G3N_STOP_MAX_TOKENS;
  g_autofree float *logits = g_new (float, g3n_model_n_vocab (s->model));
  g_autofree char *header = g_strdup_printf ("%smodel\n", g3n_chat_format_start_of_turn (s->fmt));
  /* An answer needs a new user turn (a system prompt alone makes one). */
  gboolean ok = has_new_input (s);
  if (!ok)
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "nothing new to answer: add user input first");
  ok = ok && close_turn (s, header, logits, error);
  if (ok) {
    /* HF applies the repetition penalty to the whole input it was given */
    for (guint i = 0; i < s->turn_ids->len; i++)
      g3n_sampler_accept (sampler, g_array_index (s->turn_ids, int32_t, i));
    g_array_set_size (s->turn_ids, 0);
    s->model_turn_open = TRUE;
    ok = answer (s, sampler, max_tokens, logits, callback, user_data, &why, error);
    g_array_set_size (s->turn_ids, 0);
  }
  if (reason)
    *reason = why;
  leave (s);
  return ok;
}

int
g3n_session_n_past (G3nSession *s)
{
  g_mutex_lock (&s->lock);
  int n = s->n_past;
  g_mutex_unlock (&s->lock);
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
  if (!enter (s, error))
    return FALSE;
  g_mutex_lock (&s->lock);
  gboolean open = s->user_turn_open || s->pending->len > 0;
  g_mutex_unlock (&s->lock);
  if (open) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s: a user turn is still open; save after it is answered (or discarded)", path);
    leave (s);
    return FALSE;
  }
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
  leave (s);
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

/* Index of the first infinity or NaN (exponent bits all set) among n values of an F32, F16 or BF16
 * tensor, or -1. */
static gint64
first_non_finite (G3nDType dtype, const void *data, gint64 n)
{
  if (dtype == G3N_DTYPE_F32) {
    for (gint64 i = 0; i < n; i++) {
      guint32 u;
      memcpy (&u, (const guint8 *) data + 4 * i, 4);
      if ((u & 0x7f800000u) == 0x7f800000u)
        return i;
    }
    return -1;
  }
  guint16 mask = dtype == G3N_DTYPE_F16 ? 0x7c00 : 0x7f80;
  for (gint64 i = 0; i < n; i++) {
    guint16 h;
    memcpy (&h, (const guint8 *) data + 2 * i, 2);
    if ((h & mask) == mask)
      return i;
  }
  return -1;
}

/* Saved keys and values must be finite: an inf or NaN in the cache makes every later attention score NaN
 * (and the answer garbage) instead of an error. */
static gboolean
check_finite (G3nSafetensors *f, const G3nTensor *t, const char *name, GError **error)
{
  gint64 bad = first_non_finite (t->dtype, t->data, g3n_tensor_numel (t));
  if (bad < 0)
    return TRUE;
  g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: tensor '%s' holds a non-finite value at element %" G_GINT64_FORMAT
               " (row %" G_GINT64_FORMAT ")", g3n_safetensors_path (f), name, bad, bad / MAX (t->shape[1], 1));
  return FALSE;
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
  /* pos0 is the file's: compared as n_past - len (both small and len <= n_past) so that no pos0, however
   * near INT64_MAX, overflows */
  if (len <= n_past && pos0 != n_past - len) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: tensor '%s' is %" G_GINT64_FORMAT ", but the layer's %"
                 G_GINT64_FORMAT " rows end at position %d: it must be %" G_GINT64_FORMAT, g3n_safetensors_path (f), pn,
                 pos0, len, n_past, n_past - len);
    return FALSE;
  }
  gboolean ok = k->shape[1] == kv->width && v->shape[0] == len && v->shape[1] == kv->width && len <= n_past
                && (kv->window <= 0 ? pos0 == 0 : len <= kv->window);
  if (!ok) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: the cache of layer %d does not fit this model's layout",
                 g3n_safetensors_path (f), l);
    return FALSE;
  }
  return check_finite (f, k, kn, error) && check_finite (f, v, vn, error);
}

gboolean
g3n_session_load (G3nSession *s, const char *path, GError **error)
{
  G3nSafetensors *f = g3n_safetensors_open (path, error);
  if (!f)
    return FALSE;
  g_mutex_lock (&s->audio_lock);
  if (!enter (s, error)) {
    g_mutex_unlock (&s->audio_lock);
    g3n_safetensors_free (f);
    return FALSE;
  }
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
    discard_turn (s); /* the loaded conversation replaces everything, open input included */
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
  leave (s);
  g_mutex_unlock (&s->audio_lock);
  g3n_safetensors_free (f);
  return ok;
}
