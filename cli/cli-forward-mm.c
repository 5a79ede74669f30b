/* cli-forward-mm.c — the audio, vision and multimodal outputs of `gemma3n-cli forward`, named and shaped as
 * in the mm-tiny MANIFEST. */
#include "cli.h"

#include <math.h>
#include <string.h>

static const G3nTensor *
float_input (const G3nSafetensors *in, const char *name, int min_dims, int max_dims, GError **error)
{
  const G3nTensor *t = g3n_safetensors_find (in, name);
  if (t && (t->dtype != G3N_DTYPE_F32 || t->ndim < min_dims || t->ndim > max_dims || g3n_tensor_numel (t) == 0)) {
    g_autofree char *s = g3n_shape_to_string (t->ndim, t->shape);
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: '%s' must be a non-empty F32 tensor (is %s %s)",
                 t->path, name, g3n_dtype_name (t->dtype), s);
    return NULL;
  }
  return t;
}

/* Encoders made on first use and the audio/image soft tokens, kept for the multimodal forward. */
typedef struct {
  G3nAudioFeatures *fx;
  G3nAudioEncoder *audio;
  G3nVisionEncoder *vision;
  float *audio_soft;   /* [clips * soft tokens, H] */
  int n_audio_soft;
  float *image_soft;   /* [images * 256, H] */
  int n_image_soft;
} Towers;

static gboolean
need_audio (G3nModel *m, Towers *tw, GError **error)
{
  if (!tw->fx)
    tw->fx = g3n_audio_features_new_from_file (g3n_model_path (m), error);
  if (tw->fx && !tw->audio)
    tw->audio = g3n_audio_encoder_new (m, error);
  return tw->audio != NULL;
}

/* The audio tower outputs of B clips of T frames, written under the MANIFEST's names with batch B (the
 * per-block outputs as [blocks, B, T_sub, hidden]); each clip's padded soft tokens are kept, in order, for
 * the multimodal forward. Clips are encoded one by one: they do not interact in the reference either. */
static gboolean
encode_clips (G3nModel *m, Towers *tw, const float *features, const guint8 *valid, int B, int T, int F,
              G3nCliOutputs *o, GError **error)
{
  int n_sub, N, L = g3n_audio_encoder_n_layers (tw->audio), AH = g3n_audio_encoder_n_hidden (tw->audio);
  int H = g3n_model_n_embd (m), S = g3n_audio_encoder_n_soft_tokens (tw->audio);
  g3n_audio_encoder_sizes (tw->audio, T, &n_sub, &N);
  float *sscp = g_new (float, (gsize) B * n_sub * AH), *blocks = g_new (float, (gsize) L * B * n_sub * AH);
  float *tower = g_new (float, (gsize) B * N * AH), *embeds = g_new (float, (gsize) B * N * H);
  guint8 *mask = g_new (guint8, (gsize) B * N);
  float *padded = g_new (float, (gsize) B * S * H);
  g3n_cli_output (o, "audio_sscp_output", G3N_DTYPE_F32, sscp, 3, (int64_t[]) { B, n_sub, AH });
  g3n_cli_output (o, "audio_conformer_block_outputs", G3N_DTYPE_F32, blocks, 4, (int64_t[]) { L, B, n_sub, AH });
  g3n_cli_output (o, "audio_tower_output", G3N_DTYPE_F32, tower, 3, (int64_t[]) { B, N, AH });
  g3n_cli_output (o, "audio_tower_mask", G3N_DTYPE_U8, mask, 2, (int64_t[]) { B, N });
  g3n_cli_output (o, "audio_embeds", G3N_DTYPE_F32, embeds, 3, (int64_t[]) { B, N, H });
  g3n_cli_output (o, "audio_embeds_padded", G3N_DTYPE_F32, padded, 3, (int64_t[]) { B, S, H });
  g_autofree float *clip_blocks = g_new (float, (gsize) L * n_sub * AH);
  for (int b = 0; b < B; b++) {
    G3nAudioEncodeOutputs out = { sscp + (gsize) b * n_sub * AH, clip_blocks, tower + (gsize) b * N * AH,
                                  mask + (gsize) b * N, embeds + (gsize) b * N * H };
    if (!g3n_audio_encode (tw->audio, NULL, features + (gsize) b * T * F, T, F, valid ? valid + (gsize) b * T : NULL, &out,
                           error)
        || !g3n_audio_embed_padded (tw->audio, out.embeds, out.tower_mask, N, padded + (gsize) b * S * H, error))
      return FALSE;
    for (int l = 0; l < L; l++)
      memcpy (blocks + ((gsize) l * B + b) * n_sub * AH, clip_blocks + (gsize) l * n_sub * AH,
              sizeof (float) * n_sub * AH);
  }
  tw->audio_soft = g_memdup2 (padded, sizeof (float) * B * S * H);
  tw->n_audio_soft = B * S;
  return TRUE;
}

/* audio_waveform → input_features(_mask); input_features [B, T, F] (+ mask; given, or those) → tower outputs. */
static gboolean
forward_audio (G3nModel *m, const G3nSafetensors *in, Towers *tw, G3nCliOutputs *o, GError **error)
{
  const G3nTensor *wave = float_input (in, "audio_waveform", 1, 1, error);
  const G3nTensor *feat = *error ? NULL : float_input (in, "input_features", 3, 3, error);
  if (*error || (!wave && !feat))
    return *error == NULL;
  if (!need_audio (m, tw, error))
    return FALSE;
  int F = g3n_audio_features_size (tw->fx), T = 0, B = 1;
  float *my_feat = NULL;
  guint8 *my_mask = NULL;
  if (wave) {
    gsize n = (gsize) g3n_tensor_numel (wave);
    T = g3n_audio_features_n_frames (tw->fx, n);
    my_feat = g_new (float, (gsize) MAX (T, 1) * F);
    my_mask = g_new (guint8, MAX (T, 1));
    g3n_cli_output (o, "input_features", G3N_DTYPE_F32, my_feat, 3, (int64_t[]) { 1, T, F });
    g3n_cli_output (o, "input_features_mask", G3N_DTYPE_U8, my_mask, 2, (int64_t[]) { 1, T });
    if (!g3n_audio_features_compute (tw->fx, wave->data, n, my_feat, my_mask, error))
      return FALSE;
  }
  const float *use = my_feat;
  const guint8 *valid = my_mask;
  if (feat) {
    /* given features win: the tower is then checked on the reference's own features */
    if (feat->shape[2] != F) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: input_features must be [clips, frames, %d]",
                   feat->path, F);
      return FALSE;
    }
    B = (int) feat->shape[0];
    T = (int) feat->shape[1];
    use = feat->data;
    const G3nTensor *mt = g3n_safetensors_find (in, "input_features_mask");
    if (mt && (g3n_tensor_numel (mt) != (gint64) B * T || (mt->dtype != G3N_DTYPE_U8 && mt->dtype != G3N_DTYPE_BOOL))) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: input_features_mask must be U8/BOOL [%d, %d]",
                   mt->path, B, T);
      return FALSE;
    }
    valid = mt ? mt->data : NULL;
  }
  return encode_clips (m, tw, use, valid, B, T, F, o, error);
}

/* audio_waveform + audio_batch_waveform_1 → the audio_batch_* outputs (clips padded together, each encoded). */
static gboolean
forward_audio_batch (G3nModel *m, const G3nSafetensors *in, Towers *tw, G3nCliOutputs *o, GError **error)
{
  const G3nTensor *w0 = float_input (in, "audio_waveform", 1, 2, error);
  const G3nTensor *w1 = *error ? NULL : float_input (in, "audio_batch_waveform_1", 1, 2, error);
  if (*error || !w0 || !w1)
    return *error == NULL;
  const float *pcm[2] = { w0->data, w1->data };
  gsize n[2] = { (gsize) g3n_tensor_numel (w0), (gsize) g3n_tensor_numel (w1) };
  int T, F = g3n_audio_features_size (tw->fx), H = g3n_model_n_embd (m), AH = g3n_audio_encoder_n_hidden (tw->audio);
  if (!g3n_audio_features_compute_batch (tw->fx, pcm, n, 2, NULL, NULL, &T, error))
    return FALSE;
  float *feat = g_new (float, (gsize) 2 * T * F);
  guint8 *mask = g_new (guint8, 2 * T);
  g3n_cli_output (o, "audio_batch_input_features", G3N_DTYPE_F32, feat, 3, (int64_t[]) { 2, T, F });
  g3n_cli_output (o, "audio_batch_input_features_mask", G3N_DTYPE_U8, mask, 2, (int64_t[]) { 2, T });
  if (!g3n_audio_features_compute_batch (tw->fx, pcm, n, 2, feat, mask, &T, error))
    return FALSE;
  int n_sub, N;
  g3n_audio_encoder_sizes (tw->audio, T, &n_sub, &N);
  float *tower = g_new (float, (gsize) 2 * N * AH), *embeds = g_new (float, (gsize) 2 * N * H);
  guint8 *tmask = g_new (guint8, 2 * N);
  g3n_cli_output (o, "audio_batch_tower_output", G3N_DTYPE_F32, tower, 3, (int64_t[]) { 2, N, AH });
  g3n_cli_output (o, "audio_batch_tower_mask", G3N_DTYPE_U8, tmask, 2, (int64_t[]) { 2, N });
  g3n_cli_output (o, "audio_batch_embeds", G3N_DTYPE_F32, embeds, 3, (int64_t[]) { 2, N, H });
  for (int b = 0; b < 2; b++) {
    G3nAudioEncodeOutputs out = { .tower = tower + (gsize) b * N * AH, .tower_mask = tmask + (gsize) b * N,
                                  .embeds = embeds + (gsize) b * N * H };
    if (!g3n_audio_encode (tw->audio, NULL, feat + (gsize) b * T * F, T, F, mask + (gsize) b * T, &out, error))
      return FALSE;
  }
  return TRUE;
}

/* pixel_values [B, 3, S, S] → vision_tower_output [B, C, 16, 16], image_embeds [B, 256, H], vision_block_stats. */
static gboolean
forward_vision (G3nModel *m, const G3nSafetensors *in, Towers *tw, G3nCliOutputs *o, GError **error)
{
  const G3nTensor *px = float_input (in, "pixel_values", 4, 4, error);
  if (*error || !px)
    return *error == NULL;
  if (!tw->vision && !(tw->vision = g3n_vision_encoder_new (m, error)))
    return FALSE;
  int S = g3n_vision_encoder_image_size (tw->vision), C = g3n_vision_encoder_n_channels (tw->vision);
  int N = g3n_vision_encoder_n_tokens (tw->vision), H = g3n_model_n_embd (m), ns = g3n_vision_encoder_n_stats (tw->vision);
  int B = (int) px->shape[0], side = (int) sqrt ((double) N);
  if (px->shape[1] != 3 || px->shape[2] != S || px->shape[3] != S) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: pixel_values must be [batch, 3, %d, %d]",
                 px->path, S, S);
    return FALSE;
  }
  float *tower = g_new (float, (gsize) B * C * N), *embeds = g_new (float, (gsize) B * N * H);
  float *stats = g_new (float, (gsize) ns * 3);
  g3n_cli_output (o, "vision_tower_output", G3N_DTYPE_F32, tower, 4, (int64_t[]) { B, C, side, N / side });
  g3n_cli_output (o, "image_embeds", G3N_DTYPE_F32, embeds, 3, (int64_t[]) { B, N, H });
  g3n_cli_output (o, "vision_block_stats", G3N_DTYPE_F32, stats, 2, (int64_t[]) { ns, 3 });
  for (int b = 0; b < B; b++)
    if (!g3n_vision_encoder_encode (tw->vision, NULL, (const float *) px->data + (gsize) b * 3 * S * S,
                                    tower + (gsize) b * C * N, embeds + (gsize) b * N * H, b == 0 ? stats : NULL,
                                    error))
      return FALSE;
  tw->image_soft = g_memdup2 (embeds, sizeof (float) * B * N * H);
  tw->n_image_soft = B * N;
  return TRUE;
}

/* mm_input_ids with the image and audio soft tokens in their placeholders → mm_inputs_embeds, mm_logits, and
 * with n_generate > 0 greedy mm_generated_ids / mm_generated_logits. */
static gboolean
forward_multimodal (G3nModel *m, const int32_t *ids, int T, Towers *tw, int n_generate, G3nKvType kv_type,
                    G3nCliOutputs *o, GError **error)
{
  const int32_t image_token = g3n_model_image_token (m), audio_token = g3n_model_audio_token (m);
  int H = g3n_model_n_embd (m), V = g3n_model_n_vocab (m), ni = 0, na = 0;
  for (int i = 0; i < T; i++) {
    ni += ids[i] == image_token;
    na += ids[i] == audio_token;
  }
  if (ni != tw->n_image_soft || na != tw->n_audio_soft) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "mm_input_ids holds %d image and %d audio placeholders, but the inputs give %d image and %d audio "
                 "soft tokens (pixel_values / input_features)", ni, na, tw->n_image_soft, tw->n_audio_soft);
    return FALSE;
  }
  float *emb = g_new (float, (gsize) T * H);
  g3n_cli_output (o, "mm_inputs_embeds", G3N_DTYPE_F32, emb, 3, (int64_t[]) { 1, T, H });
  if (!g3n_model_embed_tokens (m, ids, T, emb, error))
    return FALSE;
  for (int i = 0, a = 0, v = 0; i < T; i++) {
    if (ids[i] == image_token)
      memcpy (emb + (gsize) i * H, tw->image_soft + (gsize) v++ * H, sizeof (float) * H);
    else if (ids[i] == audio_token)
      memcpy (emb + (gsize) i * H, tw->audio_soft + (gsize) a++ * H, sizeof (float) * H);
  }
  float *logits = g_new (float, (gsize) T * V);
  g3n_cli_output (o, "mm_logits", G3N_DTYPE_F32, logits, 3, (int64_t[]) { 1, T, V });
  G3nContextParams cp = { .n_ctx = T + MAX (n_generate, 0), .kv_type = kv_type };
  G3nContext *ctx = g3n_context_new (m, &cp, error);
  G3nBatch b = { .n_tokens = T, .ids = ids, .embeds = emb, .all_logits = TRUE, .logits = logits };
  gboolean ok = ctx && g3n_context_decode (ctx, &b, error);
  if (ok && n_generate > 0) {
    gint64 *gen = g_new (gint64, n_generate);
    float *gl = g_new (float, (gsize) n_generate * V);
    g3n_cli_output (o, "mm_generated_ids", G3N_DTYPE_I64, gen, 2, (int64_t[]) { 1, n_generate });
    g3n_cli_output (o, "mm_generated_logits", G3N_DTYPE_F32, gl, 2, (int64_t[]) { n_generate, V });
    memcpy (gl, logits + (gsize) (T - 1) * V, sizeof (float) * V);
    for (int i = 0; ok && i < n_generate; i++) {
      int32_t tok = g3n_cli_argmax (gl + (gsize) i * V, V);
      gen[i] = tok;
      G3nBatch one = { .n_tokens = 1, .ids = &tok, .logits = i + 1 < n_generate ? gl + (gsize) (i + 1) * V : NULL };
      ok = i + 1 == n_generate || g3n_context_decode (ctx, &one, error);
    }
  }
  g3n_context_free (ctx);
  return ok;
}

gboolean
g3n_cli_forward_towers (G3nModel *m, const G3nSafetensors *in, int n_generate, G3nKvType kv_type, G3nCliOutputs *o,
                        gboolean *any, GError **error)
{
  Towers tw = { 0 };
  gboolean ok = forward_audio (m, in, &tw, o, error) && forward_vision (m, in, &tw, o, error);
  gboolean has_audio = tw.audio != NULL;
  if (ok && has_audio)
    ok = forward_audio_batch (m, in, &tw, o, error);
  *any = *any || has_audio || tw.vision != NULL;
  const G3nTensor *mm = g3n_safetensors_find (in, "mm_input_ids");
  if (ok && mm) {
    int B, T;
    g_autofree int32_t *ids = g3n_cli_read_ids (in, "mm_input_ids", &B, &T, error);
    ok = ids && B == 1;
    if (ids && B != 1)
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: mm_input_ids must hold one prompt", mm->path);
    ok = ok && forward_multimodal (m, ids, T, &tw, n_generate, kv_type, o, error);
    *any = TRUE;
  }
  g_free (tw.audio_soft);
  g_free (tw.image_soft);
  g3n_vision_encoder_free (tw.vision);
  g3n_audio_encoder_free (tw.audio);
  g3n_audio_features_free (tw.fx);
  return ok;
}
