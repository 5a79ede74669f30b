/* media.c — reading audio from any file FFmpeg understands, as 16 kHz (or any rate) mono float PCM.
 *
 * libavformat demuxes, libavcodec decodes, libswresample converts to mono float at the wanted rate. Reading
 * stops after max_samples, so a file of hours costs no more memory than the caller allows.
 */
#include "gemma3n.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

typedef struct {
  AVFormatContext *fmt;
  AVCodecContext *dec;
  SwrContext *swr;
  AVPacket *pkt;
  AVFrame *frame;
  int stream;
} Reader;

static void
reader_close (Reader *r)
{
  av_frame_free (&r->frame);
  av_packet_free (&r->pkt);
  swr_free (&r->swr);
  avcodec_free_context (&r->dec);
  avformat_close_input (&r->fmt);
}

static gboolean
av_fail (GError **error, const char *path, const char *what, int err)
{
  char buf[AV_ERROR_MAX_STRING_SIZE] = { 0 };
  av_strerror (err, buf, sizeof buf);
  g_set_error (error, G3N_ERROR, err == AVERROR (ENOENT) ? G3N_ERROR_IO : G3N_ERROR_FORMAT, "%s: %s: %s", path, what,
               buf);
  return FALSE;
}

static gboolean
reader_open (Reader *r, const char *path, int rate, GError **error)
{
  int err;
  if ((err = avformat_open_input (&r->fmt, path, NULL, NULL)) < 0)
    return av_fail (error, path, "cannot open", err);
  if ((err = avformat_find_stream_info (r->fmt, NULL)) < 0)
    return av_fail (error, path, "cannot read stream info", err);
  const AVCodec *codec = NULL;
  r->stream = av_find_best_stream (r->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (r->stream < 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: no audio stream", path);
    return FALSE;
  }
  r->dec = avcodec_alloc_context3 (codec);
  if (!r->dec || (err = avcodec_parameters_to_context (r->dec, r->fmt->streams[r->stream]->codecpar)) < 0
      || (err = avcodec_open2 (r->dec, codec, NULL)) < 0)
    return av_fail (error, path, "cannot open the audio decoder", err);
  if (r->dec->ch_layout.nb_channels <= 0 || r->dec->sample_rate <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: audio stream without channels or sample rate", path);
    return FALSE;
  }
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  if ((err = swr_alloc_set_opts2 (&r->swr, &mono, AV_SAMPLE_FMT_FLT, rate, &r->dec->ch_layout, r->dec->sample_fmt,
                                  r->dec->sample_rate, 0, NULL)) < 0
      || (err = swr_init (r->swr)) < 0)
    return av_fail (error, path, "cannot set up resampling", err);
  r->pkt = av_packet_alloc ();
  r->frame = av_frame_alloc ();
  return TRUE;
}

/* Converts one decoded frame (or flushes with frame == NULL) and appends to pcm, up to max. */
static gboolean
convert (Reader *r, const AVFrame *frame, GArray *pcm, gsize max)
{
  int in = frame ? frame->nb_samples : 0;
  int cap = swr_get_out_samples (r->swr, in);
  if (cap <= 0)
    return TRUE;
  float *out = g_new (float, cap);
  uint8_t *planes[1] = { (uint8_t *) out };
  int got = swr_convert (r->swr, planes, cap, frame ? (const uint8_t **) frame->extended_data : NULL, in);
  if (got > 0)
    g_array_append_vals (pcm, out, MIN ((gsize) got, max - MIN (max, pcm->len)));
  g_free (out);
  return got >= 0;
}

static gboolean
drain (Reader *r, GArray *pcm, gsize max, const char *path, GError **error)
{
  int err;
  while ((err = avcodec_receive_frame (r->dec, r->frame)) >= 0) {
    gboolean ok = convert (r, r->frame, pcm, max);
    av_frame_unref (r->frame);
    if (!ok)
      return av_fail (error, path, "resampling failed", AVERROR (EINVAL));
  }
  return err == AVERROR (EAGAIN) || err == AVERROR_EOF ? TRUE : av_fail (error, path, "decoding failed", err);
}

gboolean
g3n_media_read_audio (const char *path, int sample_rate, gsize max_samples, float **pcm_out, gsize *n_out,
                      GError **error)
{
  Reader r = { 0 };
  GArray *pcm = g_array_new (FALSE, FALSE, sizeof (float));
  gboolean ok = reader_open (&r, path, sample_rate, error);
  while (ok && pcm->len < max_samples && av_read_frame (r.fmt, r.pkt) >= 0) {
    if (r.pkt->stream_index == r.stream) {
      int err = avcodec_send_packet (r.dec, r.pkt);
      /* a corrupt packet is skipped, as players do; a file of nothing but corrupt packets gives no audio */
      if (err >= 0 || err == AVERROR_INVALIDDATA)
        ok = drain (&r, pcm, max_samples, path, error);
      else
        ok = av_fail (error, path, "decoding failed", err);
    }
    av_packet_unref (r.pkt);
  }
  if (ok && pcm->len < max_samples) {
    avcodec_send_packet (r.dec, NULL);
    ok = drain (&r, pcm, max_samples, path, error) && convert (&r, NULL, pcm, max_samples);
  }
  if (ok && pcm->len == 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: no audio samples could be decoded", path);
    ok = FALSE;
  }
  reader_close (&r);
  *n_out = ok ? pcm->len : 0;
  *pcm_out = ok ? (float *) g_array_free (pcm, FALSE) : (g_array_free (pcm, TRUE), NULL);
  return ok;
}
