/* audio-encoder.h — Gemma 3n's USM audio tower (Gemma3nAudioEncoder) and embed_audio's soft path, whole clip
 * or streaming.
 *
 * Masks: feature masks are 1 = valid frame (the processor's input_features_mask); tower masks are 1 = padding
 * (the tower's audio_mel_mask), as the reference names them.
 */
#ifndef G3N_AUDIO_ENCODER_H
#define G3N_AUDIO_ENCODER_H

#include "audio-features.h"
#include "model.h"

G_BEGIN_DECLS

/* The public API is in gemma3n.h ("audio encoder"); this is for tools and tests. */
/* For tools and tests: binds the tower from any tensor source (e.g. weights made in memory). Tensor names are
 * the checkpoint's (model.audio_tower.*); config, lookup data and embed_audio (NULL = no embeddings) must
 * outlive the encoder; path only names the source in messages. */
typedef const G3nTensor *(*G3nTensorLookup) (gpointer user_data, const char *name);
G3nAudioEncoder *g3n_audio_encoder_new_custom (const G3nConfig *config, const char *path, G3nTensorLookup lookup,
                                               gpointer user_data, const G3nEmbedderWeights *embed_audio,
                                               GError **error);

G_END_DECLS

#endif
