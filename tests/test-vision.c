/* test-vision — image preprocessing and the vision tower against the mm-tiny goldens, plus bad input.
 *
 *   test-vision MODEL_DIR GOLDEN.safetensors IMAGE.png [DATA_DIR]
 *
 * MODEL_DIR is the mm-tiny checkpoint, GOLDEN its golden.safetensors, IMAGE its image.png; DATA_DIR
 * (tests/data/vision) holds the small PNG/JPEG cases made by make_expected.py. Prints one line per check and
 * "N passed, M failed"; exits 1 if any failed.
 */
#include "image-preprocess.h"
#include "safetensors.h"
#include "vision-encoder.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* CRC-32 of the uint8 levels of the oracle's pixel_values for the small images (make_expected.py). */
#define CRC_SMALL_PNG 1462118545u
#define CRC_SMALL_JPG 2376681372u

typedef struct {
  int passed, failed;
} Tally;

static void G_GNUC_PRINTF (3, 4)
check (Tally *t, gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%s: %s\n", ok ? "PASS" : "FAIL", msg);
  ok ? t->passed++ : t->failed++;
}

static const float *
golden_f32 (G3nSafetensors *st, const char *name, gsize numel)
{
  const G3nTensor *t = g3n_safetensors_find (st, name);
  if (!t || t->dtype != G3N_DTYPE_F32 || (gsize) g3n_tensor_numel (t) != numel)
    return NULL;
  return t->data;
}

/* max|a - b| / max|b|, the fixtures' tolerance measure. */
static double
rel_err (const float *a, const float *b, gsize n)
{
  double d = 0, m = 0;
  for (gsize i = 0; i < n; i++) {
    d = MAX (d, fabs ((double) a[i] - b[i]));
    m = MAX (m, fabs ((double) b[i]));
  }
  return m > 0 ? d / m : d;
}

static guint32
crc32 (const guint8 *p, gsize n)
{
  guint32 c = 0xFFFFFFFFu;
  for (gsize i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
  }
  return ~c;
}

/* pixel_values → uint8 levels (exact for x/255 values), CHW. */
static guint32
levels_crc (const float *pv, gsize n)
{
  g_autofree guint8 *lv = g_malloc (n);
  for (gsize i = 0; i < n; i++)
    lv[i] = (guint8) lrintf (pv[i] * 255.0f);
  return crc32 (lv, n);
}

static long
peak_rss_mb (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

/* ---------------------------------------------------------------- preprocessing */

static float *
preprocess_file (const char *model_dir, const char *path, GError **error)
{
  G3nImageParams p;
  if (!g3n_image_params_load (model_dir, &p, error))
    return NULL;
  g_autoptr (G3nImage) img = g3n_image_load_file (path, error);
  if (!img)
    return NULL;
  float *pv = g_new (float, (gsize) 3 * p.width * p.height);
  if (!g3n_image_preprocess (&p, img, pv, error))
    g_clear_pointer (&pv, g_free);
  return pv;
}

static void
test_pixel_values (Tally *t, const char *model_dir, G3nSafetensors *golden, const char *image)
{
  gsize n = (gsize) 3 * 768 * 768;
  const float *want = golden_f32 (golden, "pixel_values", n);
  g_autoptr (GError) error = NULL;
  g_autofree float *pv = preprocess_file (model_dir, image, &error);
  if (!want || !pv) {
    check (t, FALSE, "pixel_values from %s: %s", image, error ? error->message : "golden pixel_values missing");
    return;
  }
  gsize differ = 0;
  double max_levels = 0;
  for (gsize i = 0; i < n; i++)
    if (memcmp (&pv[i], &want[i], sizeof (float)) != 0) {
      differ++;
      max_levels = MAX (max_levels, fabs (pv[i] - want[i]) * 255.0);
    }
  check (t, differ == 0, "pixel_values from image.png bit-exact (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
         " values differ, max %.0f levels)", differ, n, max_levels);
}

static void
test_small_images (Tally *t, const char *model_dir, const char *data_dir)
{
  gsize n = (gsize) 3 * 768 * 768;
  g_autoptr (GError) error = NULL;
  g_autofree char *png = g_build_filename (data_dir, "small.png", NULL);
  g_autofree float *pv = preprocess_file (model_dir, png, &error);
  check (t, pv && levels_crc (pv, n) == CRC_SMALL_PNG, "97x61 PNG upscaled to 768x768 matches the oracle%s%s",
         error ? ": " : "", error ? error->message : "");
  g_clear_error (&error);

  /* The oracle's JPEG decode (PIL/libjpeg) fed to our resize must give the oracle's pixel_values exactly. */
  g_autofree char *raw_path = g_build_filename (data_dir, "small-jpg-pil.rgb", NULL);
  g_autofree char *raw = NULL;
  gsize raw_len = 0;
  G3nImageParams p = g3n_image_default_params ();
  if (g_file_get_contents (raw_path, &raw, &raw_len, NULL) && raw_len == 97 * 61 * 3) {
    G3nImage pil = { 97, 61, (guint8 *) raw };
    g_autofree float *pv2 = g_new (float, n);
    g3n_image_preprocess (&p, &pil, pv2, NULL);
    check (t, levels_crc (pv2, n) == CRC_SMALL_JPG, "resize of PIL-decoded JPEG matches the oracle exactly");
  } else {
    check (t, FALSE, "%s missing or not 97x61 RGB", raw_path);
  }

  /* Chroma upsampling and colour conversion follow libjpeg, but libavcodec's IDCT is not libjpeg's ISLOW:
   * a few levels on a few pixels. */
  g_autofree char *jpg = g_build_filename (data_dir, "small.jpg", NULL);
  g_autoptr (G3nImage) img = g3n_image_load_file (jpg, &error);
  int max_diff = 256;
  double mean_diff = 256;
  if (img && raw && img->width == 97 && img->height == 61) {
    max_diff = 0, mean_diff = 0;
    for (gsize i = 0; i < raw_len; i++) {
      int d = abs ((int) img->rgb[i] - (guint8) raw[i]);
      max_diff = MAX (max_diff, d), mean_diff += d;
    }
    mean_diff /= raw_len;
  }
  check (t, mean_diff <= 0.5 && max_diff <= 4, "JPEG decode close to PIL's (mean %.2f, max %d levels)%s%s", mean_diff, max_diff,
         error ? ": " : "", error ? error->message : "");
}

/* ---------------------------------------------------------------- frames */

/* from_frame must refuse what would make it (or libswscale) read past a plane (issue 16's fuzz finding: I420
 * strides shorter than a row were accepted, and libswscale read past the planes): each case names the
 * stride and width, or the size or plane at fault. `planes` are 64x48 I420 planes, large enough that
 * none of these reads past them even without the check. */
static void
test_hostile_frames (Tally *t, const guint8 *const *planes)
{
  static const struct {
    G3nPixelFormat format;
    int width, height, strides[3];
    const char *expect, *what;
  } cases[] = {
    { G3N_PIXEL_I420, 64, 48, { 32, 32, 32 }, "plane 0 has stride 32", "I420 luma stride half a row" },
    { G3N_PIXEL_I420, 64, 48, { 64, 16, 32 }, "plane 1 has stride 16", "I420 U stride half a chroma row" },
    { G3N_PIXEL_I420, 64, 48, { 64, 32, 0 }, "plane 2 has stride 0", "I420 V stride 0" },
    { G3N_PIXEL_I420, 63, 47, { 63, 31, 32 }, "width 63", "I420 odd width: chroma rows round up (32, not 31)" },
    { G3N_PIXEL_I420, 64, 48, { -64, 32, 32 }, "stride -64", "I420 negative stride" },
    { G3N_PIXEL_RGB24, 20, 10, { 59, 0, 0 }, "stride 59", "RGB24 stride one byte short of a row" },
    { G3N_PIXEL_BGRA, 16, 10, { 48, 0, 0 }, "width 16", "BGRA stride of an RGB24 row" },
    { G3N_PIXEL_RGB24, -4, 10, { 64, 0, 0 }, "-4x10", "negative width" },
    { G3N_PIXEL_I420, 64, 0, { 64, 32, 32 }, "64x0", "zero height" },
    { (G3nPixelFormat) 99, 4, 4, { 64, 0, 0 }, "pixel format 99", "unknown pixel format" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (G3nImage) f = g3n_image_from_frame (cases[i].format, cases[i].width, cases[i].height, planes,
                                                   cases[i].strides, &error);
    check (t, !f && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT)
                && strstr (error->message, cases[i].expect), "%s refused: %s", cases[i].what,
           error ? error->message : "(accepted)");
  }
  const guint8 *missing[3] = { planes[0], NULL, planes[2] };
  const int strides[3] = { 64, 32, 32 };
  g_autoptr (GError) error = NULL;
  g_autoptr (G3nImage) f = g3n_image_from_frame (G3N_PIXEL_I420, 64, 48, missing, strides, &error);
  check (t, !f && error && strstr (error->message, "plane 1 is missing"), "I420 without its U plane refused: %s",
         error ? error->message : "(accepted)");
  g_clear_error (&error);
  g_autoptr (G3nImage) g = g3n_image_from_frame (G3N_PIXEL_RGB24, 4, 4, NULL, strides, &error);
  check (t, !g && error && strstr (error->message, "missing"), "no planes at all refused: %s",
         error ? error->message : "(accepted)");
  const int odd[3] = { 63, 32, 32 };
  g_autoptr (G3nImage) h = g3n_image_from_frame (G3N_PIXEL_I420, 63, 47, planes, odd, NULL);
  check (t, h && h->width == 63 && h->height == 47, "I420 odd width with chroma strides of 32 converts");
}

static void
test_frames (Tally *t, const char *image)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (G3nImage) img = g3n_image_load_file (image, &error);
  if (!img) {
    check (t, FALSE, "load %s: %s", image, error->message);
    return;
  }
  int w = img->width, h = img->height;
  struct {
    G3nPixelFormat f;
    int bpp, r, g, b;
    const char *name;
  } cases[] = { { G3N_PIXEL_RGB24, 3, 0, 1, 2, "RGB24" }, { G3N_PIXEL_BGR24, 3, 2, 1, 0, "BGR24" },
                { G3N_PIXEL_RGBA, 4, 0, 1, 2, "RGBA" }, { G3N_PIXEL_BGRA, 4, 2, 1, 0, "BGRA" } };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    int stride = w * cases[c].bpp + 13; /* padded rows */
    g_autofree guint8 *buf = g_malloc0 ((gsize) stride * h);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        guint8 *o = buf + (gsize) y * stride + (gsize) x * cases[c].bpp;
        const guint8 *s = img->rgb + ((gsize) y * w + x) * 3;
        o[cases[c].r] = s[0], o[cases[c].g] = s[1], o[cases[c].b] = s[2];
        if (cases[c].bpp == 4)
          o[3] = 77;
      }
    const guint8 *planes[1] = { buf };
    g_autoptr (G3nImage) f = g3n_image_from_frame (cases[c].f, w, h, planes, &stride, NULL);
    check (t, f && memcmp (f->rgb, img->rgb, (gsize) w * h * 3) == 0, "%s frame (padded stride) equals the image",
           cases[c].name);
  }
  /* I420: limited-range white (Y 235, neutral chroma) is RGB white. */
  int fw = 64, fh = 48, strides[3] = { 64, 32, 32 };
  g_autofree guint8 *yp = g_malloc ((gsize) fw * fh), *up = g_malloc ((gsize) fw * fh / 4),
                    *vp = g_malloc ((gsize) fw * fh / 4);
  memset (yp, 235, (gsize) fw * fh), memset (up, 128, (gsize) fw * fh / 4), memset (vp, 128, (gsize) fw * fh / 4);
  const guint8 *planes[3] = { yp, up, vp };
  g_autoptr (G3nImage) f = g3n_image_from_frame (G3N_PIXEL_I420, fw, fh, planes, strides, &error);
  int lo = 255;
  for (gsize i = 0; f && i < (gsize) fw * fh * 3; i++)
    lo = MIN (lo, f->rgb[i]);
  check (t, f && lo >= 253, "I420 white frame converts to white (min level %d)", f ? lo : -1);
  g_autoptr (G3nImage) z = g3n_image_from_frame (G3N_PIXEL_RGB24, 0, 0, planes, strides, &error);
  check (t, !z && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT), "0x0 frame refused: %s",
         error ? error->message : "(no error)");
  test_hostile_frames (t, planes);
}

/* ---------------------------------------------------------------- bad input */

static void
put_be32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* A PNG signature, an IHDR of w x h and an IEND: enough for the header checks. */
static gsize
fake_png (guint8 *b, guint32 w, guint32 h)
{
  static const guint8 magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
  memcpy (b, magic, 8);
  put_be32 (b + 8, 13);
  memcpy (b + 12, "IHDR", 4);
  put_be32 (b + 16, w), put_be32 (b + 20, h);
  memcpy (b + 24, "\x08\x02\x00\x00\x00", 5);
  put_be32 (b + 29, 0);
  put_be32 (b + 33, 0);
  memcpy (b + 37, "IEND", 4);
  put_be32 (b + 41, 0);
  return 45;
}

static void
expect_error (Tally *t, const guint8 *d, gsize n, int code, const char *what)
{
  g_autoptr (GError) error = NULL;
  long before = peak_rss_mb ();
  g_autoptr (G3nImage) img = g3n_image_load_data (d, n, what, &error);
  long grew = peak_rss_mb () - before;
  check (t, !img && g_error_matches (error, G3N_ERROR, code) && grew < 64, "%s refused (peak RSS +%ld MiB): %s",
         what, grew, error ? error->message : "(no error)");
}

static void
test_bad_input (Tally *t, const char *image, const char *data_dir)
{
  g_autofree char *png = NULL, *jpg = NULL;
  gsize png_len = 0, jpg_len = 0;
  g_file_get_contents (image, &png, &png_len, NULL);
  expect_error (t, (guint8 *) png, png_len / 2, G3N_ERROR_FORMAT, "truncated PNG");
  expect_error (t, (guint8 *) png, 40, G3N_ERROR_FORMAT, "PNG cut after its header");
  if (data_dir) {
    g_autofree char *path = g_build_filename (data_dir, "small.jpg", NULL);
    g_file_get_contents (path, &jpg, &jpg_len, NULL);
    expect_error (t, (guint8 *) jpg, jpg_len * 2 / 3, G3N_ERROR_FORMAT, "truncated JPEG");
    expect_error (t, (guint8 *) jpg, 2, G3N_ERROR_FORMAT, "2-byte JPEG start");
  }
  const char *text = "This is a text file, not an image.\n";
  expect_error (t, (const guint8 *) text, strlen (text), G3N_ERROR_FORMAT, "text file");
  expect_error (t, (const guint8 *) "", 0, G3N_ERROR_FORMAT, "empty file");
  guint8 buf[64];
  gsize n = fake_png (buf, 0, 0);
  expect_error (t, buf, n, G3N_ERROR_INVALID_ARGUMENT, "0x0 PNG");
  n = fake_png (buf, 20000, 20000);
  expect_error (t, buf, n, G3N_ERROR_UNSUPPORTED, "20000x20000 PNG header");
  /* SOI, SOF0 20000x20000 with 3 components, EOI. */
  static const guint8 big_jpeg[] = { 0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x4E, 0x20, 0x4E, 0x20, 0x03, 0x01,
                                     0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9 };
  expect_error (t, big_jpeg, sizeof big_jpeg, G3N_ERROR_UNSUPPORTED, "20000x20000 JPEG header");

  g_autoptr (GError) error = NULL;
  g_autoptr (G3nImage) img = g3n_image_load_file ("/nonexistent/image.png", &error);
  check (t, !img && g_error_matches (error, G3N_ERROR, G3N_ERROR_IO), "missing file refused: %s",
         error ? error->message : "(no error)");
}

/* ---------------------------------------------------------------- tower */

typedef struct {
  G3nModel *model;
  const char *drop;   /* tensor reported missing */
  const char *reshape; /* tensor given a wrong shape */
  G3nTensor fake;
} Tamper;

static const G3nTensor *
tamper_lookup (gpointer user_data, const char *name, int ndim, const int64_t *shape)
{
  Tamper *tp = user_data;
  g_autofree char *full = g_strconcat ("model.vision_tower.timm_model.", name, NULL);
  const G3nTensor *t = g3n_tensor_store_find (tp->model->store, full);
  if (tp->drop && strcmp (name, tp->drop) == 0)
    return NULL;
  if (t && tp->reshape && strcmp (name, tp->reshape) == 0) {
    tp->fake = *t;
    tp->fake.shape[0] += 1;
    return &tp->fake;
  }
  return t;
}

static void
test_bad_weights (Tally *t, G3nModel *model)
{
  g_autoptr (GError) error = NULL;
  Tamper tp = { .model = model, .drop = "blocks.2.9.attn.key.down_conv.weight" };
  G3nVisionEncoder *e = g3n_vision_encoder_new_custom (tamper_lookup, &tp, "tampered", 0.09, &error);
  check (t, !e && g_error_matches (error, G3N_ERROR, G3N_ERROR_TENSOR) && strstr (error->message, tp.drop),
         "missing tensor named: %s", error ? error->message : "(no error)");
  g_clear_error (&error);
  tp = (Tamper) { .model = model, .reshape = "blocks.3.1.attn.query.proj.weight" };
  e = g3n_vision_encoder_new_custom (tamper_lookup, &tp, "tampered", 0.09, &error);
  check (t, !e && g_error_matches (error, G3N_ERROR, G3N_ERROR_TENSOR) && strstr (error->message, "shape"),
         "wrong shape named: %s", error ? error->message : "(no error)");
  g_clear_error (&error);
  /* A wrong channel multiplier shows up as shape mismatches, not garbage. */
  tp = (Tamper) { .model = model };
  e = g3n_vision_encoder_new_custom (tamper_lookup, &tp, "tampered", 0.5, &error);
  check (t, !e && g_error_matches (error, G3N_ERROR, G3N_ERROR_TENSOR), "channel_multiplier 0.5 on a 0.09 tower: %s",
         error ? error->message : "(no error)");
  g3n_vision_encoder_free (e);
}

/* Localises a tower mismatch: the first stats row (stem, then blocks in timm order) off by more than the
 * diagnostic tolerance, relative to the row's rms. */
static void
check_block_stats (Tally *t, const float *ours, const float *want, int rows)
{
  int first_bad = -1;
  double worst = 0;
  for (int r = 0; r < rows; r++) {
    double scale = MAX (fabs (want[3 * r + 1]), 1e-12), e = 0;
    for (int c = 0; c < 3; c++)
      e = MAX (e, fabs ((double) ours[3 * r + c] - want[3 * r + c]) / scale);
    worst = MAX (worst, e);
    if (e > 5e-3 && first_bad < 0) {
      first_bad = r;
      printf ("  row %d (%s%d): ours mean %g rms %g max %g, golden %g %g %g\n", r, r ? "block " : "stem", r ? r - 1 : 0,
              ours[3 * r], ours[3 * r + 1], ours[3 * r + 2], want[3 * r], want[3 * r + 1], want[3 * r + 2]);
    }
  }
  check (t, first_bad < 0, "vision_block_stats (%d rows) within 5e-3 of rms (worst %.2e%s)", rows, worst,
         first_bad < 0 ? "" : ", see first bad row above");
}

static void
test_tower (Tally *t, G3nModel *model, G3nSafetensors *golden)
{
  g_autoptr (GError) error = NULL;
  G3nVisionEncoder *e = g3n_vision_encoder_new (model, &error);
  check (t, e != NULL, "vision encoder binds mm-tiny%s%s", error ? ": " : "", error ? error->message : "");
  if (!e)
    return;
  int C = g3n_vision_encoder_n_channels (e), N = g3n_vision_encoder_n_tokens (e), H = g3n_model_n_embd (model);
  int rows = g3n_vision_encoder_n_stats (e);
  const float *pv = golden_f32 (golden, "pixel_values", (gsize) 3 * 768 * 768);
  const float *want_out = golden_f32 (golden, "vision_tower_output", (gsize) C * N);
  const float *want_emb = golden_f32 (golden, "image_embeds", (gsize) N * H);
  const float *want_stats = golden_f32 (golden, "vision_block_stats", (gsize) rows * 3);
  if (!pv || !want_out || !want_emb || !want_stats) {
    check (t, FALSE, "golden vision tensors present with the expected sizes (%d stats rows)", rows);
    g3n_vision_encoder_free (e);
    return;
  }
  g_autofree float *out = g_new (float, (gsize) C * N), *emb = g_new (float, (gsize) N * H),
                   *st = g_new (float, (gsize) rows * 3);
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = g3n_vision_encoder_encode (e, NULL, pv, out, emb, st, &error);
  double ms = (g_get_monotonic_time () - t0) / 1000.0;
  check (t, ok, "encode golden pixel_values (%.0f ms)%s%s", ms, error ? ": " : "", error ? error->message : "");
  if (ok) {
    check_block_stats (t, st, want_stats, rows);
    double e1 = rel_err (out, want_out, (gsize) C * N), e2 = rel_err (emb, want_emb, (gsize) N * H);
    check (t, e1 <= 1e-4, "vision_tower_output rel err %.2e (tol 1e-4)", e1);
    check (t, e2 <= 1e-4, "image_embeds rel err %.2e (tol 1e-4)", e2);
  }
  g3n_vision_encoder_free (e);
}

int
main (int argc, char **argv)
{
  if (argc < 4) {
    fprintf (stderr, "usage: %s MODEL_DIR GOLDEN.safetensors IMAGE.png [DATA_DIR]\n", argv[0]);
    return 2;
  }
  const char *model_dir = argv[1], *golden_path = argv[2], *image = argv[3], *data_dir = argc > 4 ? argv[4] : NULL;
  Tally t = { 0 };
  g_autoptr (GError) error = NULL;
  G3nSafetensors *golden = g3n_safetensors_open (golden_path, &error);
  G3nModel *model = golden ? g3n_model_load (model_dir, &error) : NULL;
  check (&t, model != NULL, "load %s and %s%s%s", model_dir, golden_path, error ? ": " : "",
         error ? error->message : "");
  if (model) {
    test_tower (&t, model, golden);
    test_pixel_values (&t, model_dir, golden, image);
    test_bad_weights (&t, model);
  }
  if (data_dir)
    test_small_images (&t, model_dir, data_dir);
  test_frames (&t, image);
  test_bad_input (&t, image, data_dir);
  if (model)
    g3n_model_unref (model);
  g3n_safetensors_free (golden);
  printf ("%d passed, %d failed\n", t.passed, t.failed);
  return t.failed ? 1 : 0;
}
