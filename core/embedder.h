/* embedder.h — the multimodal embedders (embed_vision, embed_audio): token or soft embeddings into the
 * text model's space. */
#ifndef G3N_EMBEDDER_H
#define G3N_EMBEDDER_H

#include "model.h"

G_BEGIN_DECLS

/* Soft path: x [n, mm_hidden] (tower output) → out [n, text_hidden]. */
void g3n_embedder_embed_soft (const G3nEmbedderWeights *e, double eps, const float *x, int n, int mm_hidden,
                              int text_hidden, float *out);
/* Hard path: one multimodal vocabulary row (id - vocab_offset) → out [text_hidden]. */
void g3n_embedder_embed_hard (const G3nEmbedderWeights *e, double eps, int row, int mm_hidden, int text_hidden,
                              float *out);

G_END_DECLS

#endif
