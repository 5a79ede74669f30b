/* gstgemma3ndecoder.h — gemma3ndecoder: one live Gemma 3n conversation, speech segments in, captions out. */
#ifndef GST_GEMMA3N_DECODER_H
#define GST_GEMMA3N_DECODER_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_GEMMA3N_DECODER (gst_gemma3n_decoder_get_type ())
G_DECLARE_FINAL_TYPE (GstGemma3nDecoder, gst_gemma3n_decoder, GST, GEMMA3N_DECODER, GstElement)

/* What a segment's turn asks the model (the `task` property). */
typedef enum {
  GST_GEMMA3N_DECODER_TASK_TRANSCRIBE,
  GST_GEMMA3N_DECODER_TASK_TRANSLATE,
  GST_GEMMA3N_DECODER_TASK_DESCRIBE,
  GST_GEMMA3N_DECODER_TASK_CUSTOM,
} GstGemma3nDecoderTask;

G_END_DECLS

#endif
