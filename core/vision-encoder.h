/* vision-encoder.h — Gemma 3n's vision tower (timm mobilenetv5_300m_enc) and the soft image embeddings.
 *
 * pixel_values [3, 768, 768] → MobileNetV5 encoder (conv stem, edge-residual, universal inverted residual
 * and mobile multi-query attention blocks, multi-scale fusion adapter) → [2048, 16, 16] → 256 soft tokens,
 * scaled by sqrt(2048) and projected by embed_vision into the text model's space, as
 * Gemma3nModel.get_image_features does.
 */
#ifndef G3N_VISION_ENCODER_H
#define G3N_VISION_ENCODER_H

#include "model.h"

G_BEGIN_DECLS

typedef struct _G3nVisionEncoder G3nVisionEncoder;

/* Binds and validates every vision tower tensor (model.vision_tower.timm_model.*) of a loaded checkpoint;
 * the architecture is built in, scaled by config vision_config.model_args.channel_multiplier. */
G3nVisionEncoder *g3n_vision_encoder_new (G3nModel *model, GError **error);

/* Supplies the tensor named `name` (timm's name, e.g. "blocks.2.9.attn.query.proj.weight") that the encoder
 * expects with the given shape; NULL if there is none. The tensor must outlive the encoder. */
typedef const G3nTensor *(*G3nVisionTensorLookup) (gpointer user_data, const char *name, int ndim,
                                                   const int64_t *shape);

/* A tower without a checkpoint folder (benchmarks, tests): tensors come from `lookup`; `origin` names the
 * source in error messages. Such an encoder has no embed_vision, so it produces tower outputs only. */
G3nVisionEncoder *g3n_vision_encoder_new_custom (G3nVisionTensorLookup lookup, gpointer user_data,
                                                 const char *origin, double channel_multiplier, GError **error);
void g3n_vision_encoder_free (G3nVisionEncoder *enc);

int g3n_vision_encoder_image_size (const G3nVisionEncoder *enc);  /* 768: pixel_values is [3, S, S] */
int g3n_vision_encoder_n_channels (const G3nVisionEncoder *enc);  /* 2048 */
int g3n_vision_encoder_n_tokens (const G3nVisionEncoder *enc);    /* 256 (16 x 16) */
int g3n_vision_encoder_n_stats (const G3nVisionEncoder *enc);     /* stem + blocks: rows of block_stats */

/* Runs the tower on pixel_values [3, S, S]. Each output is optional:
 *   tower_out    [n_channels, 16, 16]  (NCHW, the MSFA output after its norm, before any scaling)
 *   image_embeds [n_tokens, text hidden] (needs a checkpoint with embed_vision)
 *   block_stats  [n_stats, 3]: mean, rms, max|x| of the stem and every block output (diagnostics). */
gboolean g3n_vision_encoder_encode (G3nVisionEncoder *enc, const float *pixel_values, float *tower_out,
                                    float *image_embeds, float *block_stats, GError **error);

G_END_DECLS

#endif
