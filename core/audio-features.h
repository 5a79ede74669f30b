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

/* The public API is in gemma3n.h ("audio features"). */

G_END_DECLS

#endif
