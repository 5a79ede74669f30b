/* cli-media.c — images and audio clips from files into a session's next user turn. The encoders are
 * made on first use, so text-only runs never bind the towers. */
#include "cli.h"
#include "audio-encoder.h"
#include "audio-features.h"
#include "image-preprocess.h"
#include "vision-encoder.h"

struct _G3nCliMedia {
  G3nModel *model;
  G3nAudioFeatures *fx;
  G3nAudioEncoder *audio;
  G3nVisionEncoder *vision;
  G3nImageParams image_params;
};

G3nCliMedia *
g3n_cli_media_new (G3nModel *model)
{
  G3nCliMedia *m = g_new0 (G3nCliMedia, 1);
  m->model = g3n_model_ref (model);
  return m;
}

void
g3n_cli_media_free (G3nCliMedia *m)
{
  if (!m)
    return;
  g3n_audio_encoder_free (m->audio);
  g3n_vision_encoder_free (m->vision);
  g3n_audio_features_free (m->fx);
  g3n_model_unref (m->model);
  g_free (m);
}

gboolean
g3n_cli_media_add_audio (G3nCliMedia *m, G3nSession *session, const char *path, GError **error)
{
  if (!m->audio) {
    m->fx = g3n_audio_features_new_from_file (g3n_model_path (m->model), error);
    m->audio = m->fx ? g3n_audio_encoder_new (m->model, error) : NULL;
    if (!m->audio)
      return FALSE;
  }
  /* Gemma3nProcessor takes at most 30 s per clip */
  float *pcm = NULL;
  gsize n = 0;
  if (!g3n_media_read_audio (path, 16000, 30 * 16000, &pcm, &n, error))
    return FALSE;
  int T = g3n_audio_features_n_frames (m->fx, n), F = g3n_audio_features_size (m->fx);
  int H = g3n_model_n_embd (m->model), n_sub, n_tok, n_soft = g3n_audio_encoder_n_soft_tokens (m->audio);
  g3n_audio_encoder_sizes (m->audio, T, &n_sub, &n_tok);
  g_autofree float *features = g_new (float, (gsize) MAX (T, 1) * F);
  g_autofree guint8 *mask = g_new (guint8, MAX (T, 1)), *tower_mask = g_new (guint8, MAX (n_tok, 1));
  g_autofree float *embeds = g_new (float, (gsize) MAX (n_tok, 1) * H), *padded = g_new (float, (gsize) n_soft * H);
  G3nAudioEncodeOutputs out = { .tower_mask = tower_mask, .embeds = embeds };
  gboolean ok = g3n_audio_features_compute (m->fx, pcm, n, features, mask, error)
                && g3n_audio_encode (m->audio, features, T, F, mask, &out, error)
                && g3n_audio_embed_padded (m->audio, embeds, tower_mask, n_tok, padded, error)
                && g3n_session_add_audio_embeddings (session, padded, n_soft, error);
  g_free (pcm);
  return ok;
}

gboolean
g3n_cli_media_add_image (G3nCliMedia *m, G3nSession *session, const char *path, GError **error)
{
  if (!m->vision) {
    if (!g3n_image_params_load (g3n_model_path (m->model), &m->image_params, error))
      return FALSE;
    m->vision = g3n_vision_encoder_new (m->model, error);
    if (!m->vision)
      return FALSE;
  }
  G3nImage *img = g3n_image_load_file (path, error);
  if (!img)
    return FALSE;
  int size = g3n_vision_encoder_image_size (m->vision), n_tok = g3n_vision_encoder_n_tokens (m->vision);
  g_autofree float *pixels = g_new (float, (gsize) 3 * size * size);
  g_autofree float *embeds = g_new (float, (gsize) n_tok * g3n_model_n_embd (m->model));
  gboolean ok = g3n_image_preprocess (&m->image_params, img, pixels, error)
                && g3n_vision_encoder_encode (m->vision, pixels, NULL, embeds, NULL, error)
                && g3n_session_add_image_embeddings (session, embeds, n_tok, error);
  g3n_image_free (img);
  return ok;
}
