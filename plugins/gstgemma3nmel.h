/* gstgemma3nmel.h — gemma3nmel: log-mel frames of the speech segments of 16 kHz mono audio. */
#ifndef GST_GEMMA3N_MEL_H
#define GST_GEMMA3N_MEL_H

#include <gst/gst.h>

#include "gemma3n.h"

G_BEGIN_DECLS

#define GST_TYPE_GEMMA3N_MEL (gst_gemma3n_mel_get_type ())
G_DECLARE_FINAL_TYPE (GstGemma3nMel, gst_gemma3n_mel, GST, GEMMA3N_MEL, GstElement)

/* The settings one segment is cut with, in samples: a snapshot of the properties taken between segments. */
typedef struct {
  gboolean vad;
  gdouble threshold_db;
  guint64 pause;
  guint64 max_length;
  guint64 pre_roll;
  guint64 min_speech;
} GstGemma3nMelSettings;

struct _GstGemma3nMel {
  GstElement parent;

  GstPad *sinkpad, *srcpad;

  /* Properties (object lock). */
  gchar *model;
  gboolean vad;
  gdouble silence_threshold;
  guint pause_ms, max_segment_ms, pre_roll_ms, min_speech_ms;

  /* The feature extractor of `model`, from NULL→READY to READY→NULL. */
  G3nAudioFeatures *fx;
  G3nAudioFeatureStream *stream;
  gint rate, bins, hop, window;

  /* Streaming state (stream lock). Sample indices count from `base`, the time of the first sample since the
   * last reset (start, flush, discontinuity). */
  GstGemma3nMelSettings cur;
  gboolean have_caps;
  GstSegment segment;
  GstClockTime base;
  guint64 n_samples;       /* samples classified by the VAD so far */
  gfloat *hop_buf;         /* the hop being filled: hop_fill of `hop` samples */
  guint hop_fill;
  gfloat *ring;            /* the last ring_size classified samples, for the pre-roll */
  guint ring_size;
  guint64 covered;         /* every sample before this was sent in a segment or covered by a GAP */
  gboolean in_segment, started; /* a segment is open; its START was sent (it has min-speech of speech) */
  guint64 seg_start, seg_len, seg_speech, seg_silence;
  guint64 seg_index;
  GArray *frames;          /* the open segment's frames not pushed yet: floats [n, bins] */
  GByteArray *mask;        /* their feature mask (1 = valid) */
  gint frames_first;       /* index in the segment of frames[0] */
  gboolean warned_nonfinite;
  GstFlowReturn flow;      /* the first failed push of the current chain or event */
};

G_END_DECLS

#endif
