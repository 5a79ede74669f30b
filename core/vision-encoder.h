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

/* The public API is in gemma3n.h ("vision encoder"); this is for tools and tests. */
/* Supplies the tensor named `name` (timm's name, e.g. "blocks.2.9.attn.query.proj.weight") that the encoder
 * expects with the given shape; NULL if there is none. The tensor must outlive the encoder. */
typedef const G3nTensor *(*G3nVisionTensorLookup) (gpointer user_data, const char *name, int ndim,
                                                   const int64_t *shape);

/* A tower without a checkpoint folder (benchmarks, tests): tensors come from `lookup`; `origin` names the
 * source in error messages. Such an encoder has no embed_vision, so it produces tower outputs only. */
G3nVisionEncoder *g3n_vision_encoder_new_custom (G3nVisionTensorLookup lookup, gpointer user_data,
                                                 const char *origin, double channel_multiplier, GError **error);

G_END_DECLS

#endif
