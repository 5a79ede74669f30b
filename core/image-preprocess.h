/* image-preprocess.h — images and video frames into Gemma 3n pixel_values.
 *
 * Equal to Gemma3nProcessor's image path (SiglipImageProcessor, torchvision backend): RGB uint8, resize to
 * size.height x size.width with torchvision's antialiased bilinear filter on uint8 (PyTorch's fixed-point
 * kernel, result uint8), then x rescale_factor (float32), optionally (x - mean) / std. The checkpoint's
 * preprocessor_config.json decides every step; its absence means the Gemma 3n defaults.
 */
#ifndef G3N_IMAGE_PREPROCESS_H
#define G3N_IMAGE_PREPROCESS_H

#include "gemma3n.h"

G_BEGIN_DECLS

/* Images larger than this (either side, or in total) are refused before any pixel buffer is allocated. */
#define G3N_IMAGE_MAX_SIDE 16384
#define G3N_IMAGE_MAX_PIXELS (8192 * 8192)

typedef struct {
  int width, height;        /* output size (size.width / size.height), 768 x 768 for Gemma 3n */
  gboolean do_resize;
  gboolean do_rescale;
  double rescale_factor;    /* 1/255 */
  gboolean do_normalize;
  float mean[3], std[3];
} G3nImageParams;

/* The Gemma 3n defaults: resize to 768x768, rescale 1/255, no normalisation. */
G3nImageParams g3n_image_default_params (void);
/* Reads DIR/preprocessor_config.json over the defaults (absent file: defaults). Refuses what this build
 * cannot reproduce exactly (a resample filter other than bilinear). */
gboolean g3n_image_params_load (const char *model_dir, G3nImageParams *params, GError **error);

/* An 8-bit RGB image, packed RGBRGB…, rows without padding. */
typedef struct {
  int width, height;
  guint8 *rgb;
} G3nImage;

void g3n_image_free (G3nImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (G3nImage, g3n_image_free)

/* Decodes a PNG, JPEG, BMP or WebP file (libavcodec) into RGB, as PIL's convert("RGB") would: alpha is
 * dropped, grey and palette images expanded. 4:2:0 JPEGs are upsampled and colour-converted as libjpeg does;
 * libavcodec's IDCT still differs from libjpeg's by a few levels on some pixels. */
G3nImage *g3n_image_load_file (const char *path, GError **error);
/* The same from bytes in memory; `origin` names them in error messages. */
G3nImage *g3n_image_load_data (const guint8 *data, gsize size, const char *origin, GError **error);

typedef enum {
  G3N_PIXEL_RGB24,  /* packed R,G,B */
  G3N_PIXEL_BGR24,
  G3N_PIXEL_RGBA,   /* packed R,G,B,A; alpha ignored */
  G3N_PIXEL_BGRA,
  G3N_PIXEL_I420,   /* planar Y, U, V (4:2:0), BT.601 limited range, converted with libswscale */
} G3nPixelFormat;

/* Copies a raw frame into an RGB image. planes/strides: one entry for packed formats, three for I420. */
G3nImage *g3n_image_from_frame (G3nPixelFormat format, int width, int height, const guint8 *const *planes,
                                const int *strides, GError **error);

/* torchvision/PyTorch antialiased bilinear resize of packed RGB uint8 (align_corners=False), bit-exact with
 * the uint8 kernel: per-axis weights rounded to int16 fixed point, horizontal pass first, each pass rounded
 * and clamped to uint8. */
void g3n_image_resize_bilinear_aa (const guint8 *src, int src_w, int src_h, guint8 *dst, int dst_w, int dst_h);

/* img → pixel_values [3, params->height, params->width] (CHW, float). */
gboolean g3n_image_preprocess (const G3nImageParams *params, const G3nImage *img, float *pixel_values,
                               GError **error);

G_END_DECLS

#endif
