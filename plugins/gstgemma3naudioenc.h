/* gstgemma3naudioenc.h — gemma3naudioenc: Gemma 3n's USM audio encoder, streaming, as a pipeline element. */
#ifndef GST_GEMMA3N_AUDIO_ENC_H
#define GST_GEMMA3N_AUDIO_ENC_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_GEMMA3N_AUDIO_ENC (gst_gemma3n_audio_enc_get_type ())
G_DECLARE_FINAL_TYPE (GstGemma3nAudioEnc, gst_gemma3n_audio_enc, GST, GEMMA3N_AUDIO_ENC, GstElement)

G_END_DECLS

#endif
