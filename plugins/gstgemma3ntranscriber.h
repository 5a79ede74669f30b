/* gstgemma3ntranscriber.h — gemma3ntranscriber: audioconvert ! audioresample ! gemma3nmel ! gemma3naudioenc !
 * gemma3ndecoder in one bin, with transcriberbin's contract. */
#ifndef GST_GEMMA3N_TRANSCRIBER_H
#define GST_GEMMA3N_TRANSCRIBER_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_GEMMA3N_TRANSCRIBER (gst_gemma3n_transcriber_get_type ())
G_DECLARE_FINAL_TYPE (GstGemma3nTranscriber, gst_gemma3n_transcriber, GST, GEMMA3N_TRANSCRIBER, GstBin)

G_END_DECLS

#endif
