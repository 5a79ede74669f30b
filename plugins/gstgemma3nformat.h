/* gstgemma3nformat.h — what flows between the plugin's elements: caps, buffer flags and segment events.
 *
 *   audio/x-raw (F32LE, 16 kHz, mono)
 *     → gemma3nmel      → application/x-gemma3n-mel         (log-mel frames of speech, one clip per segment)
 *     → gemma3naudioenc → application/x-gemma3n-embeddings  (soft tokens of those clips)
 *     → gemma3ndecoder  → text/x-raw, format=utf8           (one caption per segment)
 *
 * The caps are private, named like upstream's later tensor caps so that a move to GstTensorMeta
 * (GStreamer >= 1.26) stays mechanical.
 *
 * Payloads are rows of native floats: a mel buffer holds whole frames ([n, bins]), an embeddings buffer whole
 * tokens ([n, width]). PTS/DURATION are the span of the media the rows were computed from.
 *
 * Speech segments: gemma3nmel decides where speech is (energy VAD, pauses, a maximum length) and feeds only
 * speech to the elements after it. Each segment is one clip, bracketed by two custom serialized downstream
 * events, START before its first frame and END after its last; between segments it sends GAP events for the
 * silence. Every element passes both events on, in order, after the data of the segment: the audio encoder
 * finishes its clip on END (as a whole clip is finished), the decoder answers the turn.
 */
#ifndef GST_GEMMA3N_FORMAT_H
#define GST_GEMMA3N_FORMAT_H

#include <gst/gst.h>

G_BEGIN_DECLS

/* Log-mel frames: `bins` floats per frame, one frame every `hop` samples at `rate`. */
#define GST_GEMMA3N_MEL_MEDIA_TYPE "application/x-gemma3n-mel"
#define GST_GEMMA3N_MEL_CAPS \
  GST_GEMMA3N_MEL_MEDIA_TYPE ", bins = (int) [ 1, 1024 ], hop = (int) [ 1, 16000 ], rate = (int) [ 1, 192000 ]"

/* Soft-token embeddings: `width` floats (dtype float32) per token, of modality "audio" or "image". */
#define GST_GEMMA3N_EMBEDDINGS_MEDIA_TYPE "application/x-gemma3n-embeddings"
#define GST_GEMMA3N_EMBEDDINGS_CAPS \
  GST_GEMMA3N_EMBEDDINGS_MEDIA_TYPE ", modality = (string) { audio, image }, width = (int) [ 1, 65536 ], " \
  "dtype = (string) float32"
#define GST_GEMMA3N_AUDIO_EMBEDDINGS_CAPS \
  GST_GEMMA3N_EMBEDDINGS_MEDIA_TYPE ", modality = (string) audio, width = (int) [ 1, 65536 ], " \
  "dtype = (string) float32"

/* A mel buffer whose frames are the clip's padding (the processor's input_features_mask = 0): the frames
 * g3n_audio_feature_stream_finish emits past the clip's last sample. They are fed to the encoder with mask 0. */
#define GST_GEMMA3N_BUFFER_FLAG_PADDING GST_BUFFER_FLAG_LAST

typedef enum {
  GST_GEMMA3N_SEGMENT_START,
  GST_GEMMA3N_SEGMENT_END,
} GstGemma3nSegmentEdge;

/* Why a segment ended. */
typedef enum {
  GST_GEMMA3N_SEGMENT_PAUSE,      /* silence longer than the pause */
  GST_GEMMA3N_SEGMENT_MAX_LENGTH, /* the segment reached its maximum length */
  GST_GEMMA3N_SEGMENT_EOS,        /* end of stream */
  GST_GEMMA3N_SEGMENT_DISCONT,    /* a discontinuity in the input (a gap, a DISCONT buffer) */
} GstGemma3nSegmentEnd;

#define GST_GEMMA3N_SEGMENT_EVENT_NAME "gemma3n-segment"

/* A START or END event of the segment [start, start + duration) (stream time of its samples, as the
 * buffers' PTS). `index` numbers the segments of the stream from 0; `reason` only means something on END. */
GstEvent *gst_gemma3n_segment_event_new (GstGemma3nSegmentEdge edge, guint64 index, GstClockTime start,
                                         GstClockTime duration, GstGemma3nSegmentEnd reason);
/* Whether `event` is one of ours; the out pointers (each may be NULL) receive its fields. */
gboolean gst_gemma3n_segment_event_parse (GstEvent *event, GstGemma3nSegmentEdge *edge, guint64 *index,
                                          GstClockTime *start, GstClockTime *duration,
                                          GstGemma3nSegmentEnd *reason);
const char *gst_gemma3n_segment_end_name (GstGemma3nSegmentEnd reason);

G_END_DECLS

#endif
