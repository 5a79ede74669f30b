/* audio-features.h — log-mel features exactly as transformers' Gemma3nAudioFeatureExtractor computes them.
 *
 * 16 kHz mono float PCM → [T, feature_size] log-mel frames plus a per-frame validity mask (1 = valid, the
 * processor's input_features_mask). Whole clips follow the processor (zero padding to a multiple of 128
 * samples, truncation at 30 s); a G3nAudioFeatureStream produces the same frames from PCM pushed in pieces.
 */
#ifndef G3N_AUDIO_FEATURES_H
#define G3N_AUDIO_FEATURES_H

#include "gemma3n.h"

G_BEGIN_DECLS

/* The extractor's settings: preprocessor_config.json keys and transformers' defaults. */
typedef struct {
  int sampling_rate;            /* 16000 */
  int feature_size;             /* mel bins, 128 */
  double frame_length_ms;       /* 32 */
  double hop_length_ms;         /* 10 */
  double min_frequency;         /* 125 Hz */
  double max_frequency;         /* 7600 Hz */
  double preemphasis;           /* 0.97; 0 = none */
  gboolean preemphasis_htk_flavor;
  gboolean fft_overdrive;       /* FFT length doubled */
  double dither;                /* 0 = none (the Gemma 3n value; > 0 adds seeded Gaussian noise) */
  double input_scale_factor;    /* 1 */
  double mel_floor;             /* 1e-5 */
  const double *per_bin_mean;   /* [feature_size] or NULL; copied by g3n_audio_features_new */
  const double *per_bin_stddev; /* [feature_size] or NULL */
  int pad_to_multiple_of;       /* 128: whole clips are zero-padded to a multiple of this */
  int max_samples;              /* 480000: whole clips are truncated to this (0 = no limit) */
} G3nAudioFeatureParams;

typedef struct _G3nAudioFeatures G3nAudioFeatures;

G3nAudioFeatureParams g3n_audio_feature_default_params (void);
G3nAudioFeatures *g3n_audio_features_new (const G3nAudioFeatureParams *params, GError **error);
/* Reads PATH/preprocessor_config.json (or PATH itself when it is a file); defaults when the folder has none. */
G3nAudioFeatures *g3n_audio_features_new_from_file (const char *path, GError **error);
void g3n_audio_features_free (G3nAudioFeatures *fx);

int g3n_audio_features_size (const G3nAudioFeatures *fx);     /* mel bins */
int g3n_audio_features_hop (const G3nAudioFeatures *fx);      /* samples between frames (160) */
int g3n_audio_features_window (const G3nAudioFeatures *fx);   /* samples one frame reads (frame length + 1) */
/* Frames a whole clip of n samples gives (after truncation and padding). */
int g3n_audio_features_n_frames (const G3nAudioFeatures *fx, gsize n_samples);

/* Whole clip: features [n_frames, size] and mask [n_frames] (either may be NULL), n_frames from
 * g3n_audio_features_n_frames(). Non-finite samples are an error. */
gboolean g3n_audio_features_compute (const G3nAudioFeatures *fx, const float *pcm, gsize n_samples, float *features,
                                     guint8 *mask, GError **error);
/* A batch as the processor pads it: every clip zero-padded to the longest (rounded up to pad_to_multiple_of).
 * features [batch, T, size], mask [batch, T]; *n_frames receives T (call with features = NULL to size). */
gboolean g3n_audio_features_compute_batch (const G3nAudioFeatures *fx, const float *const *pcm,
                                           const gsize *n_samples, int batch, float *features, guint8 *mask,
                                           int *n_frames, GError **error);

/* ---------------------------------------------------------------- streaming */

/* Receives frames as soon as they are final: features [n, size], mask [n], `first` = index of features[0]. */
typedef void (*G3nAudioFramesFunc) (const float *features, const guint8 *mask, int first, int n, gpointer user_data);

typedef struct _G3nAudioFeatureStream G3nAudioFeatureStream;

/* fx must outlive the stream. Memory is bounded (one window of samples), whatever the stream's length; the
 * stream is never truncated. */
G3nAudioFeatureStream *g3n_audio_feature_stream_new (const G3nAudioFeatures *fx, G3nAudioFramesFunc func,
                                                     gpointer user_data);
void g3n_audio_feature_stream_free (G3nAudioFeatureStream *s);
/* Appends samples; emits every frame whose window is complete. */
gboolean g3n_audio_feature_stream_push (G3nAudioFeatureStream *s, const float *pcm, gsize n, GError **error);
/* End of clip: pads as a whole clip is padded and emits the remaining frames. The stream can then be reused
 * for a new clip. */
gboolean g3n_audio_feature_stream_finish (G3nAudioFeatureStream *s, GError **error);
/* Samples and frames consumed / emitted so far in this clip. */
guint64 g3n_audio_feature_stream_n_samples (const G3nAudioFeatureStream *s);
int g3n_audio_feature_stream_n_frames (const G3nAudioFeatureStream *s);

G_END_DECLS

#endif
