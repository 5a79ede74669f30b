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

/* The tower's weights bound from a model (which it keeps a reference to); immutable, so one encoder can serve
 * several streams and threads at once. */
typedef struct _G3nAudioEncoder G3nAudioEncoder;

/* Binds and validates model.audio_tower.* (and uses model.embed_audio.* when present). */
G3nAudioEncoder *g3n_audio_encoder_new (G3nModel *model, GError **error);
void g3n_audio_encoder_free (G3nAudioEncoder *enc);

/* For tools and tests: binds the tower from any tensor source (e.g. weights made in memory). Tensor names are
 * the checkpoint's (model.audio_tower.*); config, lookup data and embed_audio (NULL = no embeddings) must
 * outlive the encoder; path only names the source in messages. */
typedef const G3nTensor *(*G3nTensorLookup) (gpointer user_data, const char *name);
G3nAudioEncoder *g3n_audio_encoder_new_custom (const G3nConfig *config, const char *path, G3nTensorLookup lookup,
                                               gpointer user_data, const G3nEmbedderWeights *embed_audio,
                                               GError **error);

int g3n_audio_encoder_n_hidden (const G3nAudioEncoder *enc);   /* audio hidden size */
int g3n_audio_encoder_n_embd (const G3nAudioEncoder *enc);     /* text hidden size (embeddings) */
int g3n_audio_encoder_n_layers (const G3nAudioEncoder *enc);   /* conformer blocks */
int g3n_audio_encoder_n_features (const G3nAudioEncoder *enc); /* mel bins it expects */
/* audio_soft_tokens_per_image: the placeholder count a prompt reserves for one clip. */
int g3n_audio_encoder_n_soft_tokens (const G3nAudioEncoder *enc);
/* For n_frames feature frames: rows after the sub-sampling convs, and audio tokens after the reduction. */
void g3n_audio_encoder_sizes (const G3nAudioEncoder *enc, int n_frames, int *n_sub, int *n_tokens);

/* What g3n_audio_encode writes; every pointer is optional. */
typedef struct {
  float *sscp;          /* [n_sub, hidden]: sub-sample conv projection output */
  float *blocks;        /* [n_layers, n_sub, hidden]: each conformer block's output */
  float *tower;         /* [n_tokens, hidden]: tower output, zero at padding tokens */
  guint8 *tower_mask;   /* [n_tokens]: 1 = padding */
  float *embeds;        /* [n_tokens, n_embd]: embed_audio soft embeddings of `tower` */
} G3nAudioEncodeOutputs;

/* One clip's features [n_frames, n_features] with mask [n_frames] (1 = valid; NULL = all valid). */
gboolean g3n_audio_encode (const G3nAudioEncoder *enc, const float *features, int n_frames, int n_features,
                           const guint8 *mask, const G3nAudioEncodeOutputs *out, GError **error);

/* What Gemma3nModel scatters into a prompt's audio placeholders: embeds with padding tokens replaced by, and
 * padded up to n_soft_tokens rows with, the hard embedding of the audio padding id (text vocab_size - 1).
 * out: [n_soft_tokens, n_embd]. */
gboolean g3n_audio_embed_padded (const G3nAudioEncoder *enc, const float *embeds, const guint8 *tower_mask,
                                 int n_tokens, float *out, GError **error);

/* ---------------------------------------------------------------- streaming */

/* Audio tokens as soon as they are final: tower rows [n, hidden], mask [n] (1 = padding), embeds [n, n_embd]
 * (NULL when the model has no embed_audio), `first` = index of the first token in the clip. */
typedef void (*G3nAudioTokensFunc) (const float *tower, const guint8 *tower_mask, const float *embeds, int first,
                                    int n, gpointer user_data);

/* PCM in → feature frames and audio tokens out, with memory bounded whatever the stream's length. Tokens equal
 * g3n_audio_encode's on the whole clip (to float rounding) for clips up to the processor's 30 s; streams are
 * never truncated. Token i (sub-sampled row 4i) is final once feature frame 16i + 6 exists: the sub-sampling
 * convs read 6 frames (60 ms) ahead and everything after them is causal; see g3n_audio_stream_set_min_rows for
 * the batching that adds to this latency. */
typedef struct _G3nAudioStream G3nAudioStream;

/* fx and enc must outlive the stream; either callback may be NULL. */
G3nAudioStream *g3n_audio_stream_new (const G3nAudioFeatures *fx, const G3nAudioEncoder *enc,
                                      G3nAudioFramesFunc on_frames, G3nAudioTokensFunc on_tokens,
                                      gpointer user_data, GError **error);
void g3n_audio_stream_free (G3nAudioStream *s);
/* Final sub-sampled rows (40 ms each) are run through the conformer once at least `rows` are pending (default:
 * one attention chunk, 12 = 480 ms). 1 gives the lowest latency; larger batches amortise weight traffic. */
void g3n_audio_stream_set_min_rows (G3nAudioStream *s, int rows);
gboolean g3n_audio_stream_push (G3nAudioStream *s, const float *pcm, gsize n, GError **error);
/* End of clip: pads as a whole clip is padded, emits the remaining frames and tokens, resets for a new clip. */
gboolean g3n_audio_stream_finish (G3nAudioStream *s, GError **error);

G_END_DECLS

#endif
