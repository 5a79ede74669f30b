/* embedder.c — Gemma3nMultimodalEmbedder and the decoder's input embeddings.
 *
 * A multimodal embedding is norm → projection → scale-free norm; hard (token id) and soft (tower output)
 * inputs differ only in the first norm. Text ids take the scaled word embedding.
 */
#include "embedder.h"

#include <math.h>

static void
project (const G3nEmbedderWeights *e, double eps, float *normed, int n, int text_hidden, float *out)
{
  g3n_matmul (&e->embedding_projection, normed, n, out);
  for (int i = 0; i < n; i++)
    g3n_rms_norm (out + (gsize) i * text_hidden, NULL, (float) eps, text_hidden, out + (gsize) i * text_hidden);
}

void
g3n_embedder_embed_soft (const G3nEmbedderWeights *e, double eps, const float *x, int n, int mm_hidden,
                         int text_hidden, float *out)
{
  float *normed = g_new (float, (gsize) n * mm_hidden);
  for (int i = 0; i < n; i++)
    g3n_rms_norm (x + (gsize) i * mm_hidden, e->soft_embedding_norm, (float) eps, mm_hidden,
                  normed + (gsize) i * mm_hidden);
  project (e, eps, normed, n, text_hidden, out);
  g_free (normed);
}

void
g3n_embedder_embed_hard (const G3nEmbedderWeights *e, double eps, int row, int mm_hidden, int text_hidden,
                         float *out)
{
  float *normed = g_new (float, mm_hidden);
  g3n_matrix_row (&e->embedding, row, normed);
  g3n_rms_norm (normed, e->hard_embedding_norm, (float) eps, mm_hidden, normed);
  project (e, eps, normed, 1, text_hidden, out);
  g_free (normed);
}

/* Which embedder (if any) serves id; FALSE with an error when none can. */
static gboolean
embedder_for (const G3nModel *m, int32_t id, const G3nEmbedderWeights **e, int *offset, int *mm_hidden, double *eps,
              GError **error)
{
  const G3nConfig *c = m->config;
  *e = NULL;
  if (id < 0 || id >= c->text.vocab_size) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "token id %d is outside the vocabulary [0, %d)", id,
                 c->text.vocab_size);
    return FALSE;
  }
  /* A text-only config (gemma3n_text) has no multimodal ranges: every id is a text id. */
  if (!(c->vision.present || c->audio.present) || id < MIN (c->vision.vocab_offset, c->audio.vocab_offset))
    return TRUE;
  gboolean audio = id >= c->audio.vocab_offset;
  *e = audio ? &m->embed_audio : &m->embed_vision;
  *offset = audio ? c->audio.vocab_offset : c->vision.vocab_offset;
  *mm_hidden = audio ? c->audio.hidden_size : c->vision.hidden_size;
  *eps = audio ? c->audio.rms_norm_eps : c->vision.rms_norm_eps;
  int mm_vocab = audio ? c->audio.vocab_size : c->vision.vocab_size;
  if (!(*e)->present || id - *offset >= mm_vocab) {
    const char *what = audio ? "audio" : "vision";
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "token id %d is in the %s vocabulary, but %s has no usable embed_%s weights", id, what, m->path, what);
    return FALSE;
  }
  return TRUE;
}

gboolean
g3n_model_check_ids (const G3nModel *m, const int32_t *ids, int n, GError **error)
{
  const G3nEmbedderWeights *e;
  int offset, mm_hidden;
  double eps;
  for (int i = 0; i < n; i++)
    if (!embedder_for (m, ids[i], &e, &offset, &mm_hidden, &eps, error))
      return FALSE;
  return TRUE;
}

gboolean
g3n_model_embed_tokens (const G3nModel *m, const int32_t *ids, int n, float *out, GError **error)
{
  int H = m->config->text.hidden_size;
  /* The reference multiplies by a fp32 tensor holding sqrt(hidden). */
  const float scale = (float) sqrt ((double) H);
  for (int i = 0; i < n; i++) {
    const G3nEmbedderWeights *e;
    int offset = 0, mm_hidden = 0;
    double eps = 0;
    float *dst = out + (gsize) i * H;
    if (!embedder_for (m, ids[i], &e, &offset, &mm_hidden, &eps, error))
      return FALSE;
    if (e) {
      g3n_embedder_embed_hard (e, eps, ids[i] - offset, mm_hidden, H, dst);
    } else {
      g3n_matrix_row (&m->text.embed_tokens, ids[i], dst);
      for (int k = 0; k < H; k++)
        dst[k] *= scale;
    }
  }
  return TRUE;
}
