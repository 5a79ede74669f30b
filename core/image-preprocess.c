/* image-preprocess.c — decoding, colour conversion and the torchvision-exact resize.
 *
 * Gemma3nProcessor resizes uint8 images with torch's antialiased bilinear kernel, which works in fixed point
 * (PIL-SIMD's scheme): the result differs from a float resize (or libswscale) by a level on some pixels, so
 * the resize is written out here to match it bit for bit. libavcodec decodes files; 8-bit RGB/grey/palette
 * layouts are copied by hand so they stay exact, 4:2:0 JPEGs get libjpeg's chroma upsampling and colour
 * matrix (what PIL shows the reference), and libswscale converts everything else.
 */
#include "image-preprocess.h"

#include <json-glib/json-glib.h>
#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>

/* Files larger than this cannot be a sane image for a 768x768 model input. */
#define MAX_FILE_BYTES ((gsize) 512 << 20)

/* ---------------------------------------------------------------- parameters */

G3nImageParams
g3n_image_default_params (void)
{
  G3nImageParams p = {
    .width = 768, .height = 768, .do_resize = TRUE, .do_rescale = TRUE, .rescale_factor = 1.0 / 255.0,
    .do_normalize = FALSE, .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f },
  };
  return p;
}

static gboolean
read_number (JsonObject *o, const char *key, double *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static void
read_bool (JsonObject *o, const char *key, gboolean *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (n);
}

static gboolean
read_triple (JsonObject *o, const char *key, float *out, const char *path, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (n)) { /* a single number applies to every channel */
    double v;
    if (!read_number (o, key, &v))
      goto bad;
    out[0] = out[1] = out[2] = (float) v;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_ARRAY (n) || json_array_get_length (json_node_get_array (n)) != 3)
    goto bad;
  for (int i = 0; i < 3; i++)
    out[i] = (float) json_array_get_double_element (json_node_get_array (n), i);
  return TRUE;
bad:
  g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: %s must be a number or a list of 3 numbers", path, key);
  return FALSE;
}

static gboolean
read_size (JsonObject *o, G3nImageParams *p, const char *path, GError **error)
{
  JsonNode *n = json_object_get_member (o, "size");
  if (!n)
    return TRUE;
  double h, w;
  JsonObject *s = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  if (!s || !read_number (s, "height", &h) || !read_number (s, "width", &w) || h < 1 || w < 1 || h > 8192
      || w > 8192) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED,
                 "%s: size must be {\"height\": H, \"width\": W} with 1 <= H, W <= 8192", path);
    return FALSE;
  }
  p->height = (int) h, p->width = (int) w;
  return TRUE;
}

gboolean
g3n_image_params_load (const char *model_dir, G3nImageParams *p, GError **error)
{
  *p = g3n_image_default_params ();
  g_autofree char *path = g_build_filename (model_dir, "preprocessor_config.json", NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_file (parser, path, &local)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: %s", path, local->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: not a JSON object", path);
    return FALSE;
  }
  JsonObject *o = json_node_get_object (root);
  read_bool (o, "do_resize", &p->do_resize);
  read_bool (o, "do_rescale", &p->do_rescale);
  read_bool (o, "do_normalize", &p->do_normalize);
  read_number (o, "rescale_factor", &p->rescale_factor);
  double resample = 2;
  if (read_number (o, "resample", &resample) && resample != 2) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED,
                 "%s: resample %g is not supported (only 2 = bilinear, as Gemma 3n uses)", path, resample);
    return FALSE;
  }
  return read_size (o, p, path, error) && read_triple (o, "image_mean", p->mean, path, error)
         && read_triple (o, "image_std", p->std, path, error);
}

/* ---------------------------------------------------------------- images */

void
g3n_image_free (G3nImage *img)
{
  if (!img)
    return;
  g_free (img->rgb);
  g_free (img);
}

static gboolean
check_size (int width, int height, const char *origin, GError **error)
{
  if (width <= 0 || height <= 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: image is %dx%d (empty)", origin, width, height);
    return FALSE;
  }
  if (width > G3N_IMAGE_MAX_SIDE || height > G3N_IMAGE_MAX_SIDE
      || (gint64) width * height > G3N_IMAGE_MAX_PIXELS) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED,
                 "%s: image is %dx%d, larger than the %dx%d / %d-pixel limit", origin, width, height,
                 G3N_IMAGE_MAX_SIDE, G3N_IMAGE_MAX_SIDE, G3N_IMAGE_MAX_PIXELS);
    return FALSE;
  }
  return TRUE;
}

static G3nImage *
image_new (int width, int height)
{
  G3nImage *img = g_new0 (G3nImage, 1);
  img->width = width, img->height = height;
  img->rgb = g_malloc ((gsize) width * height * 3);
  return img;
}

/* ---------------------------------------------------------------- container checks
 *
 * libavcodec decodes what it can of a truncated file and reports success with grey or missing rows, so
 * completeness is checked on the byte structure first; the same walk reads the dimensions, so an absurd
 * header is refused before the decoder allocates a frame. */

static guint32
be32 (const guint8 *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

static guint
be16 (const guint8 *p)
{
  return (guint) p[0] << 8 | p[1];
}

static gboolean
png_check (const guint8 *d, gsize n, const char *origin, GError **error)
{
  if (n < 33 || memcmp (d + 12, "IHDR", 4) != 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: PNG file has no IHDR header", origin);
    return FALSE;
  }
  guint32 w = be32 (d + 16), h = be32 (d + 20);
  if (!check_size (w > G_MAXINT ? G_MAXINT : (int) w, h > G_MAXINT ? G_MAXINT : (int) h, origin, error))
    return FALSE;
  for (gsize pos = 8; pos + 12 <= n;) {
    guint32 len = be32 (d + pos);
    if (memcmp (d + pos + 4, "IEND", 4) == 0)
      return TRUE;
    if (len > n - pos - 12)
      break;
    pos += 12 + (gsize) len;
  }
  g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: PNG file is truncated (no IEND chunk)", origin);
  return FALSE;
}

/* Skips entropy-coded data after an SOS: returns the offset of the next real marker (0xFF, not a stuffed
 * 0x00 or a restart marker), or n. */
static gsize
jpeg_skip_scan (const guint8 *d, gsize n, gsize pos)
{
  for (; pos + 1 < n; pos++)
    if (d[pos] == 0xFF && d[pos + 1] != 0x00 && !(d[pos + 1] >= 0xD0 && d[pos + 1] <= 0xD7) && d[pos + 1] != 0xFF)
      return pos;
  return n;
}

static gboolean
jpeg_check (const guint8 *d, gsize n, const char *origin, GError **error)
{
  gboolean have_sof = FALSE;
  gsize pos = 2;
  while (pos + 2 <= n) {
    if (d[pos] != 0xFF)
      break;
    guint m = d[pos + 1];
    if (m == 0xFF) { /* fill byte */
      pos++;
      continue;
    }
    if (m == 0xD9)
      return have_sof || (g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: JPEG file has no frame", origin),
                          FALSE);
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (pos + 4 > n)
      break;
    guint len = be16 (d + pos + 2);
    if (len < 2 || pos + 2 + len > n)
      break;
    gboolean sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && !have_sof) {
      if (len < 7)
        break;
      if (!check_size ((int) be16 (d + pos + 7), (int) be16 (d + pos + 5), origin, error))
        return FALSE;
      have_sof = TRUE;
    }
    pos += 2 + len;
    if (m == 0xDA)
      pos = jpeg_skip_scan (d, n, pos);
  }
  g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: JPEG file is truncated or corrupt (no end-of-image marker)",
               origin);
  return FALSE;
}

/* ---------------------------------------------------------------- decoding */

/* Full-range YCbCr 4:2:0 (JPEG) → RGB as libjpeg does it for PIL: "fancy" triangle upsampling of chroma
 * (3/4 nearer sample, 1/4 farther, edges replicated) and its 16-bit fixed-point colour matrix. */
static guint8
clamp_u8 (int v)
{
  return (guint8) CLAMP (v, 0, 255);
}

static void
jpeg_ycc_420_to_rgb (const AVFrame *f, G3nImage *img)
{
  int w = f->width, h = f->height, cw = (w + 1) / 2, ch = (h + 1) / 2;
  g_autofree int *cs = g_new (int, (gsize) cw * 2); /* column sums of Cb then Cr for one output row */
  for (int y = 0; y < h; y++) {
    int cy = y / 2, other = CLAMP (y % 2 ? cy + 1 : cy - 1, 0, ch - 1);
    for (int p = 0; p < 2; p++) {
      const guint8 *a = f->data[1 + p] + (gsize) cy * f->linesize[1 + p];
      const guint8 *b = f->data[1 + p] + (gsize) other * f->linesize[1 + p];
      for (int x = 0; x < cw; x++)
        cs[p * cw + x] = 3 * a[x] + b[x];
    }
    const guint8 *yr = f->data[0] + (gsize) y * f->linesize[0];
    guint8 *o = img->rgb + (gsize) y * w * 3;
    for (int x = 0; x < w; x++) {
      int cx = x / 2, nx = CLAMP (x % 2 ? cx + 1 : cx - 1, 0, cw - 1), c[2];
      for (int p = 0; p < 2; p++) {
        int t = cs[p * cw + cx], u = cs[p * cw + nx];
        c[p] = cw == 1 ? (4 * t + 8 - (x % 2)) >> 4 : (3 * t + u + 8 - (x % 2)) >> 4;
      }
      int Y = yr[x], cb = c[0] - 128, cr = c[1] - 128;
      o[3 * x] = clamp_u8 (Y + ((91881 * cr + 32768) >> 16));
      o[3 * x + 1] = clamp_u8 (Y + ((-22554 * cb - 46802 * cr + 32768) >> 16));
      o[3 * x + 2] = clamp_u8 (Y + ((116130 * cb + 32768) >> 16));
    }
  }
}

/* Frame → RGB24. 8-bit RGB, grey and palette layouts are copied exactly (PIL's convert("RGB") semantics:
 * alpha dropped, no blending); everything else goes through libswscale. */
static gboolean
frame_to_rgb (const AVFrame *f, G3nImage *img, const char *origin, GError **error)
{
  int w = f->width, h = f->height;
  if (f->format == AV_PIX_FMT_YUVJ420P
      || (f->format == AV_PIX_FMT_YUV420P && f->color_range == AVCOL_RANGE_JPEG && f->width > 1)) {
    jpeg_ycc_420_to_rgb (f, img);
    return TRUE;
  }
  for (int y = 0; y < h; y++) {
    const guint8 *s = f->data[0] + (gsize) y * f->linesize[0];
    guint8 *o = img->rgb + (gsize) y * w * 3;
    switch (f->format) {
    case AV_PIX_FMT_RGB24:
      memcpy (o, s, (gsize) w * 3);
      break;
    case AV_PIX_FMT_RGBA:
      for (int x = 0; x < w; x++)
        o[3 * x] = s[4 * x], o[3 * x + 1] = s[4 * x + 1], o[3 * x + 2] = s[4 * x + 2];
      break;
    case AV_PIX_FMT_RGB48BE: /* PIL keeps the high byte of 16-bit samples */
    case AV_PIX_FMT_RGBA64BE: {
      int step = f->format == AV_PIX_FMT_RGB48BE ? 6 : 8;
      for (int x = 0; x < w; x++)
        o[3 * x] = s[step * x], o[3 * x + 1] = s[step * x + 2], o[3 * x + 2] = s[step * x + 4];
      break;
    }
    case AV_PIX_FMT_GRAY8:
    case AV_PIX_FMT_YA8: {
      int step = f->format == AV_PIX_FMT_GRAY8 ? 1 : 2;
      for (int x = 0; x < w; x++)
        o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = s[step * x];
      break;
    }
    case AV_PIX_FMT_PAL8: {
      const guint32 *pal = (const guint32 *) f->data[1];
      for (int x = 0; x < w; x++) {
        guint32 c = pal[s[x]];
        o[3 * x] = (c >> 16) & 0xFF, o[3 * x + 1] = (c >> 8) & 0xFF, o[3 * x + 2] = c & 0xFF;
      }
      break;
    }
    default:
      goto convert;
    }
  }
  return TRUE;

convert:;
  /* libavcodec still labels JPEG output with the deprecated full-range "yuvj" formats: map them to the plain
   * ones and pass the range explicitly, so swscale neither warns nor guesses. */
  enum AVPixelFormat fmt = f->format;
  gboolean full_range = f->color_range == AVCOL_RANGE_JPEG;
  static const enum AVPixelFormat yuvj[][2] = { { AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUV420P },
                                                { AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUV422P },
                                                { AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_YUV444P },
                                                { AV_PIX_FMT_YUVJ440P, AV_PIX_FMT_YUV440P },
                                                { AV_PIX_FMT_YUVJ411P, AV_PIX_FMT_YUV411P } };
  for (guint i = 0; i < G_N_ELEMENTS (yuvj); i++)
    if (fmt == yuvj[i][0])
      fmt = yuvj[i][1], full_range = TRUE;
  struct SwsContext *sws = sws_getContext (w, h, fmt, w, h, AV_PIX_FMT_RGB24,
                                           SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP,
                                           NULL, NULL, NULL);
  if (!sws) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "%s: cannot convert pixel format %s to RGB", origin,
                 av_get_pix_fmt_name (f->format));
    return FALSE;
  }
  int *inv_table, *table, src_range, dst_range, brightness, contrast, saturation;
  sws_getColorspaceDetails (sws, &inv_table, &src_range, &table, &dst_range, &brightness, &contrast, &saturation);
  sws_setColorspaceDetails (sws, sws_getCoefficients (SWS_CS_ITU601), full_range, table, 1, brightness, contrast,
                            saturation);
  guint8 *dst[4] = { img->rgb };
  int dst_stride[4] = { w * 3 };
  sws_scale (sws, (const guint8 *const *) f->data, f->linesize, 0, h, dst, dst_stride);
  sws_freeContext (sws);
  return TRUE;
}

static G3nImage *
decode (enum AVCodecID id, const guint8 *data, gsize size, const char *origin, GError **error)
{
  const AVCodec *codec = avcodec_find_decoder (id);
  if (!codec) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "%s: this libavcodec has no %s decoder", origin,
                 avcodec_get_name (id));
    return NULL;
  }
  AVCodecContext *cc = avcodec_alloc_context3 (codec);
  AVPacket *pkt = av_packet_alloc ();
  AVFrame *frame = av_frame_alloc ();
  /* The decoder reads past the end of a packet: it needs zeroed padding after the data. */
  guint8 *buf = g_malloc0 (size + AV_INPUT_BUFFER_PADDING_SIZE);
  memcpy (buf, data, size);
  cc->max_pixels = G3N_IMAGE_MAX_PIXELS;
  cc->thread_count = 1;
  G3nImage *img = NULL;
  int ret = avcodec_open2 (cc, codec, NULL);
  if (ret >= 0) {
    pkt->data = buf;
    pkt->size = (int) size;
    ret = avcodec_send_packet (cc, pkt);
    if (ret >= 0)
      avcodec_send_packet (cc, NULL);
    if (ret >= 0)
      ret = avcodec_receive_frame (cc, frame);
  }
  if (ret < 0) {
    char msg[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror (ret, msg, sizeof msg);
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: cannot decode %s image: %s", origin,
                 avcodec_get_name (id), msg);
  } else if (check_size (frame->width, frame->height, origin, error)) {
    img = image_new (frame->width, frame->height);
    if (!frame_to_rgb (frame, img, origin, error))
      g_clear_pointer (&img, g3n_image_free);
  }
  g_free (buf);
  av_frame_free (&frame);
  av_packet_free (&pkt);
  avcodec_free_context (&cc);
  return img;
}

G3nImage *
g3n_image_load_data (const guint8 *d, gsize n, const char *origin, GError **error)
{
  static const guint8 png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
  if (n > MAX_FILE_BYTES || n > G_MAXINT - AV_INPUT_BUFFER_PADDING_SIZE) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_UNSUPPORTED, "%s: %" G_GSIZE_FORMAT " bytes is too large for an image",
                 origin, n);
    return NULL;
  }
  if (n >= 8 && memcmp (d, png_magic, 8) == 0)
    return png_check (d, n, origin, error) ? decode (AV_CODEC_ID_PNG, d, n, origin, error) : NULL;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
    return jpeg_check (d, n, origin, error) ? decode (AV_CODEC_ID_MJPEG, d, n, origin, error) : NULL;
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    gint32 w = (gint32) (d[18] | d[19] << 8 | d[20] << 16 | (guint32) d[21] << 24);
    gint32 h = (gint32) (d[22] | d[23] << 8 | d[24] << 16 | (guint32) d[25] << 24);
    if (!check_size (w, h == G_MININT32 ? G_MAXINT32 : ABS (h), origin, error))
      return NULL;
    return decode (AV_CODEC_ID_BMP, d, n, origin, error);
  }
  if (n >= 12 && memcmp (d, "RIFF", 4) == 0 && memcmp (d + 8, "WEBP", 4) == 0)
    return decode (AV_CODEC_ID_WEBP, d, n, origin, error);
  g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: not a PNG, JPEG, BMP or WebP image", origin);
  return NULL;
}

G3nImage *
g3n_image_load_file (const char *path, GError **error)
{
  g_autoptr (GMappedFile) mf = NULL;
  g_autoptr (GError) local = NULL;
  mf = g_mapped_file_new (path, FALSE, &local);
  if (!mf) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s", local->message);
    return NULL;
  }
  return g3n_image_load_data ((const guint8 *) g_mapped_file_get_contents (mf), g_mapped_file_get_length (mf), path,
                              error);
}

/* ---------------------------------------------------------------- raw frames */

static void
copy_packed (const guint8 *src, int stride, int w, int h, int bpp, gboolean bgr, G3nImage *img)
{
  for (int y = 0; y < h; y++) {
    const guint8 *s = src + (gsize) y * stride;
    guint8 *o = img->rgb + (gsize) y * w * 3;
    for (int x = 0; x < w; x++) {
      o[3 * x] = s[bpp * x + (bgr ? 2 : 0)];
      o[3 * x + 1] = s[bpp * x + 1];
      o[3 * x + 2] = s[bpp * x + (bgr ? 0 : 2)];
    }
  }
}

/* Bytes per pixel of a packed format; 0 for I420 and unknown formats. */
static int
packed_bpp (G3nPixelFormat format)
{
  switch (format) {
  case G3N_PIXEL_RGB24:
  case G3N_PIXEL_BGR24:
    return 3;
  case G3N_PIXEL_RGBA:
  case G3N_PIXEL_BGRA:
    return 4;
  default:
    return 0;
  }
}

/* Every plane present, with a stride that holds at least one row of it (I420's chroma rows: half the width,
 * rounded up): a shorter stride would make the copy, or libswscale, read past the plane. */
static gboolean
check_planes (G3nPixelFormat format, int width, const guint8 *const *planes, const int *strides, GError **error)
{
  if (format != G3N_PIXEL_I420 && !packed_bpp (format)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "frame: unknown pixel format %d", (int) format);
    return FALSE;
  }
  int n_planes = format == G3N_PIXEL_I420 ? 3 : 1;
  for (int i = 0; i < n_planes; i++) {
    int plane_width = format != G3N_PIXEL_I420 ? width : i == 0 ? width : (width + 1) / 2;
    int row_bytes = plane_width * (format == G3N_PIXEL_I420 ? 1 : packed_bpp (format));
    if (!planes || !planes[i] || !strides) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "frame: plane %d is missing", i);
      return FALSE;
    }
    if (strides[i] < row_bytes) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                   "frame: plane %d has stride %d, shorter than its row: %d pixels of width %d (%d bytes)", i,
                   strides[i], plane_width, width, row_bytes);
      return FALSE;
    }
  }
  return TRUE;
}

G3nImage *
g3n_image_from_frame (G3nPixelFormat format, int width, int height, const guint8 *const *planes,
                      const int *strides, GError **error)
{
  if (!check_size (width, height, "frame", error) || !check_planes (format, width, planes, strides, error))
    return NULL;
  G3nImage *img = image_new (width, height);
  if (format != G3N_PIXEL_I420) {
    copy_packed (planes[0], strides[0], width, height, packed_bpp (format),
                 format == G3N_PIXEL_BGR24 || format == G3N_PIXEL_BGRA, img);
    return img;
  }
  AVFrame f = { .width = width, .height = height, .format = AV_PIX_FMT_YUV420P };
  for (int i = 0; i < 3; i++)
    f.data[i] = (guint8 *) planes[i], f.linesize[i] = strides[i];
  if (frame_to_rgb (&f, img, "frame", error))
    return img;
  g3n_image_free (img);
  return NULL;
}

/* ---------------------------------------------------------------- resize */

/* One axis of the resize: for each output index, the first input index, the tap count and int16 weights
 * with `precision` fractional bits (PyTorch's _compute_indices_int16_weights_aa). */
typedef struct {
  int *first, *count;
  gint16 *w;
  int taps;
  int precision;
} AxisWeights;

static double
triangle (double x)
{
  x = fabs (x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

static void
axis_weights (int in, int out, AxisWeights *a)
{
  double scale = (double) in / out;
  double support = scale >= 1.0 ? scale : 1.0; /* bilinear: half-width 1, stretched when shrinking */
  double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  a->taps = (int) ceil (support) * 2 + 1;
  a->first = g_new (int, out);
  a->count = g_new (int, out);
  double *wf = g_new0 (double, (gsize) out * a->taps);
  double w_max = 0;
  for (int i = 0; i < out; i++) {
    double center = scale * (i + 0.5);
    gint64 lo = MAX ((gint64) (center - support + 0.5), 0);
    gint64 hi = MIN ((gint64) (center + support + 0.5), in);
    double *w = wf + (gsize) i * a->taps, total = 0;
    a->first[i] = (int) lo;
    a->count[i] = (int) (hi - lo);
    for (int j = 0; j < a->count[i]; j++)
      total += w[j] = triangle ((j + lo - center + 0.5) * invscale);
    for (int j = 0; j < a->count[i]; j++) {
      if (total != 0.0)
        w[j] /= total;
      w_max = MAX (w_max, w[j]);
    }
  }
  /* The most fractional bits that keep the largest weight (times 2) inside int16. */
  for (a->precision = 0; a->precision < 22; a->precision++)
    if ((int) (0.5 + w_max * (1 << (a->precision + 1))) >= (1 << 15))
      break;
  a->w = g_new (gint16, (gsize) out * a->taps);
  for (gsize k = 0; k < (gsize) out * a->taps; k++) {
    double v = wf[k] * (1 << a->precision);
    a->w[k] = (gint16) (v < 0 ? (int) (-0.5 + v) : (int) (0.5 + v));
  }
  g_free (wf);
}

static void
axis_weights_clear (AxisWeights *a)
{
  g_free (a->first);
  g_free (a->count);
  g_free (a->w);
}

static inline guint8
fixed_to_u8 (gint32 acc, int precision)
{
  acc >>= precision;
  return (guint8) CLAMP (acc, 0, 255);
}

/* Resamples along x: src [h, sw, 3] → dst [h, dw, 3]. */
static void
resample_rows (const guint8 *src, int sw, int h, guint8 *dst, int dw, const AxisWeights *a)
{
  for (int y = 0; y < h; y++) {
    const guint8 *s = src + (gsize) y * sw * 3;
    guint8 *o = dst + (gsize) y * dw * 3;
    for (int x = 0; x < dw; x++) {
      const gint16 *w = a->w + (gsize) x * a->taps;
      const guint8 *p = s + (gsize) a->first[x] * 3;
      gint32 r = 1 << (a->precision - 1), g = r, b = r;
      for (int j = 0; j < a->count[x]; j++, p += 3)
        r += p[0] * w[j], g += p[1] * w[j], b += p[2] * w[j];
      o[3 * x] = fixed_to_u8 (r, a->precision);
      o[3 * x + 1] = fixed_to_u8 (g, a->precision);
      o[3 * x + 2] = fixed_to_u8 (b, a->precision);
    }
  }
}

/* Resamples along y: src [sh, w, 3] → dst [dh, w, 3]; the inner loop runs along a row, so it vectorises. */
static void
resample_columns (const guint8 *src, int w, guint8 *dst, int dh, const AxisWeights *a)
{
  gsize row = (gsize) w * 3;
  gint32 *acc = g_new (gint32, row);
  for (int y = 0; y < dh; y++) {
    const gint16 *k = a->w + (gsize) y * a->taps;
    for (gsize i = 0; i < row; i++)
      acc[i] = 1 << (a->precision - 1);
    for (int j = 0; j < a->count[y]; j++) {
      const guint8 *s = src + (gsize) (a->first[y] + j) * row;
      gint32 kj = k[j];
      for (gsize i = 0; i < row; i++)
        acc[i] += s[i] * kj;
    }
    guint8 *o = dst + (gsize) y * row;
    for (gsize i = 0; i < row; i++)
      o[i] = fixed_to_u8 (acc[i], a->precision);
  }
  g_free (acc);
}

void
g3n_image_resize_bilinear_aa (const guint8 *src, int sw, int sh, guint8 *dst, int dw, int dh)
{
  if (sw == dw && sh == dh) {
    memcpy (dst, src, (gsize) sw * sh * 3);
    return;
  }
  const guint8 *cur = src;
  guint8 *tmp = NULL;
  if (sw != dw) {
    AxisWeights ax;
    axis_weights (sw, dw, &ax);
    guint8 *out = sh == dh ? dst : (tmp = g_malloc ((gsize) dw * sh * 3));
    resample_rows (src, sw, sh, out, dw, &ax);
    axis_weights_clear (&ax);
    cur = out;
  }
  if (sh != dh) {
    AxisWeights ay;
    axis_weights (sh, dh, &ay);
    resample_columns (cur, dw, dst, dh, &ay);
    axis_weights_clear (&ay);
  }
  g_free (tmp);
}

/* ---------------------------------------------------------------- pixel_values */

gboolean
g3n_image_preprocess (const G3nImageParams *p, const G3nImage *img, float *out, GError **error)
{
  int W = p->width, H = p->height;
  if (!p->do_resize && (img->width != W || img->height != H)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "image is %dx%d but resizing is disabled and the model needs %dx%d", img->width, img->height, W, H);
    return FALSE;
  }
  g_autofree guint8 *resized = g_malloc ((gsize) W * H * 3);
  g3n_image_resize_bilinear_aa (img->rgb, img->width, img->height, resized, W, H);
  /* The reference multiplies by a float32 scalar: rescale in float, not double. */
  const float scale = p->do_rescale ? (float) p->rescale_factor : 1.0f;
  for (int c = 0; c < 3; c++) {
    float *plane = out + (gsize) c * W * H;
    for (gsize i = 0; i < (gsize) W * H; i++) {
      float v = (float) resized[3 * i + c] * scale;
      plane[i] = p->do_normalize ? (v - p->mean[c]) / p->std[c] : v;
    }
  }
  return TRUE;
}
