/* test-quant-file — the quantised-weights file: saved, read back into a fresh model with bit-identical
 * results, and every malformed or foreign file refused with an error naming it, the model left unchanged.
 */
#include "test-util.h"
#include "model.h"

#include <glib/gstdio.h>
#include <string.h>

static const char *tmpdir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* The golden prompt ids of a fixture. */
static int32_t *
golden_ids (const char *dir, int *T)
{
  g_autofree char *path = g_build_filename (dir, "golden.safetensors", NULL);
  G3nSafetensors *g = g3n_safetensors_open (path, NULL);
  g_assert (g);
  const G3nTensor *t = g3n_safetensors_find (g, "text_input_ids");
  *T = (int) g3n_tensor_numel (t);
  int32_t *ids = g_new (int32_t, *T);
  for (int i = 0; i < *T; i++)
    ids[i] = (int32_t) ((const gint64 *) t->data)[i];
  g3n_safetensors_free (g);
  return ids;
}

static G3nModel *
load (const char *dir)
{
  G3nModel *m = g3n_model_load (dir, NULL);
  g_assert (m);
  return m;
}

/* Whether two models give exactly the same logits on the fixture's prompt, whole and token by token. */
static gboolean
same_logits (G3nModel *a, G3nModel *b, const char *dir)
{
  int T;
  g_autofree int32_t *ids = golden_ids (dir, &T);
  gsize n = (gsize) T * g3n_model_n_vocab (a);
  g_autofree float *x = logits_chunked (a, ids, T, T), *y = logits_chunked (b, ids, T, T);
  g_autofree float *x1 = logits_chunked (a, ids, T, 1), *y1 = logits_chunked (b, ids, T, 1);
  return memcmp (x, y, n * sizeof (float)) == 0 && memcmp (x1, y1, n * sizeof (float)) == 0;
}

/* Every quantised matrix points into the file's one copy in memory, its codes 16-byte aligned (the first
 * 64). */
static gboolean
in_file_and_aligned (G3nModel *m)
{
  const G3nSafetensors *f = m->quant_file;
  const G3nTensor *pad = f ? g3n_safetensors_find (f, "padding") : NULL;
  if (!pad || ((guintptr) pad->data + pad->nbytes) % 64 != 0)
    return FALSE;
  GArray *list = g3n_model_text_matrices (m);
  gboolean ok = TRUE;
  for (guint i = 0; i < list->len; i++) {
    const G3nTextMatrix *tm = &g_array_index (list, G3nTextMatrix, i);
    g_autofree char *q = g_strconcat (tm->name, ".q", NULL);
    const G3nTensor *t = g3n_safetensors_find (f, q);
    if (tm->quantizable)
      ok &= t && tm->matrix->data == t->data && (guintptr) t->data % 16 == 0 && tm->matrix->by_input == tm->by_input;
    else
      ok &= t == NULL && tm->matrix->quant == G3N_QUANT_NONE;
  }
  g_array_unref (list);
  return ok;
}

/* Quantise at load, save, map into a fresh model: identical logits and identity. */
static void
test_round_trip (const char *dir, G3nQuantType type, const char *file)
{
  const char *tn = g3n_quant_type_name (type);
  g_autoptr (GError) error = NULL;
  G3nModel *ref = load (dir), *m = load (dir);
  gboolean saved = g3n_model_quantize (ref, type, &error) && g3n_model_save_quantized (ref, file, &error);
  check (saved, "%s %s: save %s", dir, tn, saved ? file : error->message);
  gboolean loaded = saved && g3n_model_load_quantized (m, file, &error);
  check (loaded && g3n_model_quant_type (m) == type, "%s %s: load into a fresh model%s%s", dir, tn,
         error ? ": " : "", error ? error->message : "");
  if (loaded) {
    check (same_logits (ref, m, dir), "%s %s: logits bit-identical to quantising at load", dir, tn);
    check (g_str_equal (g3n_model_identity (ref), g3n_model_identity (m))
               && g3n_model_text_weight_bytes (ref) == g3n_model_text_weight_bytes (m),
           "%s %s: same identity and weight bytes (session files are interchangeable)", dir, tn);
    check (in_file_and_aligned (m), "%s %s: matrices point into the file's copy, codes aligned", dir, tn);
    g_clear_error (&error);
    gboolean refused = !g3n_model_load_quantized (m, file, &error)
                       && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT);
    check (refused, "loading into an already quantised model is refused: %s", error ? error->message : "(accepted)");
  }
  g3n_model_unref (m);
  g3n_model_unref (ref);
}

/* g3n_model_quantize_cached: the first call quantises and saves, the second loads, same results. */
static void
test_cached (const char *dir)
{
  g_autofree char *file = tmp_path ("cached.g3nq");
  g_autoptr (GError) error = NULL;
  G3nModel *a = load (dir), *b = load (dir);
  gboolean ok = g3n_model_quantize_cached (a, G3N_QUANT_Q8_0, file, &error) && g_file_test (file, G_FILE_TEST_EXISTS);
  check (ok, "quantize_cached without a file quantises and saves it%s%s", error ? ": " : "",
         error ? error->message : "");
  ok = ok && g3n_model_quantize_cached (b, G3N_QUANT_Q8_0, file, &error);
  check (ok && b->quant_file && same_logits (a, b, dir), "quantize_cached with the file loads it: same logits%s%s",
         error ? ": " : "", error ? error->message : "");
  check (g3n_model_quantize_cached (b, G3N_QUANT_Q8_0, file, NULL), "quantize_cached again is a no-op");
  g3n_model_unref (a);
  g3n_model_unref (b);
  G3nModel *c = load (dir);
  g_clear_error (&error);
  ok = !g3n_model_quantize_cached (c, G3N_QUANT_NONE, file, &error)
       && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT);
  check (ok, "quantize_cached to bf16 is refused: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  ok = !g3n_model_save_quantized (c, file, &error) && g_error_matches (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT);
  check (ok, "saving an unquantised model is refused: %s", error ? error->message : "(accepted)");
  g_autofree char *nodir = tmp_path ("no/such/dir.g3nq");
  g_clear_error (&error);
  ok = g3n_model_quantize (c, G3N_QUANT_Q8_0, NULL) && !g3n_model_save_quantized (c, nodir, &error)
       && g_error_matches (error, G3N_ERROR, G3N_ERROR_IO);
  check (ok, "saving into a missing folder fails cleanly: %s", error ? error->message : "(accepted)");
  g3n_model_unref (c);
}

/* Loading `file` into a fresh model of dir fails with an error naming the file (and `expect` when set),
 * and the model stays unquantised and usable. */
static void
expect_refused (const char *dir, const char *file, G3nQuantType want, const char *expect, const char *what)
{
  g_autoptr (GError) error = NULL;
  G3nModel *m = load (dir);
  gboolean ok = want == G3N_QUANT_NONE ? g3n_model_load_quantized (m, file, &error)
                                       : g3n_model_quantize_cached (m, want, file, &error);
  gboolean named = error && strstr (error->message, file) && (!expect || strstr (error->message, expect));
  gboolean intact = g3n_model_quant_type (m) == G3N_QUANT_NONE && !m->quant_file
                    && g3n_model_quantize (m, G3N_QUANT_Q4_0, NULL);
  check (!ok && named && intact, "%s refused: %s", what, error ? error->message : "(accepted)");
  g3n_model_unref (m);
}

/* A copy of src without tensor `drop` (NULL: none), with metadata `key` set to `value` (NULL: unchanged),
 * and with layout tensor `relayout` holding by_input flipped. */
static void
rewrite (const char *src, const char *dst, const char *drop, const char *key, const char *value, const char *relayout)
{
  G3nSafetensors *f = g3n_safetensors_open (src, NULL);
  g_assert (f);
  GArray *out = g_array_new (FALSE, FALSE, sizeof (G3nTensor));
  gint64 flipped[3];
  for (guint i = 0; i < g3n_safetensors_count (f); i++) {
    G3nTensor t = *g3n_safetensors_nth (f, i);
    if (g_strcmp0 (t.name, drop) == 0)
      continue;
    if (g_strcmp0 (t.name, relayout) == 0) {
      memcpy (flipped, t.data, sizeof flipped);
      flipped[2] = !flipped[2];
      t.data = flipped;
    }
    g_array_append_val (out, t);
  }
  const char *keys[] = { "format", "version", "quant", "identity", "source" };
  const char *meta[2 * G_N_ELEMENTS (keys) + 1] = { NULL };
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
    meta[2 * i] = keys[i];
    meta[2 * i + 1] = g_strcmp0 (keys[i], key) == 0 ? value : g3n_safetensors_metadata (f, keys[i]);
  }
  g_assert (g3n_safetensors_write_with_metadata (dst, (G3nTensor *) out->data, out->len, meta, NULL));
  g_array_free (out, TRUE);
  g3n_safetensors_free (f);
}

static void
test_refusals (const char *mm, const char *mf)
{
  g_autofree char *good = tmp_path ("mm-q4_0.g3nq"), *other = tmp_path ("mf-q4_0.g3nq"), *bad = NULL;
  G3nModel *m = load (mm), *o = load (mf);
  g_assert (g3n_model_quantize (m, G3N_QUANT_Q4_0, NULL) && g3n_model_save_quantized (m, good, NULL));
  g_assert (g3n_model_quantize (o, G3N_QUANT_Q4_0, NULL) && g3n_model_save_quantized (o, other, NULL));
  g3n_model_unref (m);
  g3n_model_unref (o);

  expect_refused (mm, other, G3N_QUANT_NONE, "another checkpoint", "text-matformer's file into mm-tiny");
  expect_refused (mm, good, G3N_QUANT_Q8_0, "not the q8_0 asked for", "a q4_0 file asked for as q8_0");
  g_autofree char *model_file = g_build_filename (mm, "model.safetensors", NULL);
  expect_refused (mm, model_file, G3N_QUANT_NONE, "not a quantised-weights file", "the BF16 checkpoint file");
  expect_refused (mm, model_file, G3N_QUANT_Q4_0, "not a quantised-weights file",
                  "the BF16 checkpoint file as a cache");

  /* truncations: in the length prefix, in the header, where the data starts, within the codes, one byte short */
  g_autofree char *bytes = NULL;
  gsize n = 0;
  g_assert (g_file_get_contents (good, &bytes, &n, NULL));
  gsize header_end = 8;
  for (int i = 0; i < 8; i++)
    header_end += (gsize) (guint8) bytes[i] << (8 * i);
  const gsize cuts[] = { 0, 5, 8, 200, header_end, header_end + 100, n / 2, n - 1 };
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_autofree char *name = g_strdup_printf ("cut-%u.g3nq", i), *path = tmp_path (name);
    g_autofree char *what = g_strdup_printf ("the file truncated to %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes",
                                             cuts[i], n);
    g_assert (g_file_set_contents (path, bytes, (gssize) cuts[i], NULL));
    expect_refused (mm, path, G3N_QUANT_Q4_0, NULL, what);
  }

  /* corrupted header: a JSON byte, then an absurd length */
  bad = tmp_path ("corrupt-json.g3nq");
  bytes[8] = '[';
  g_assert (g_file_set_contents (bad, bytes, (gssize) n, NULL));
  expect_refused (mm, bad, G3N_QUANT_NONE, "JSON", "a corrupted header");
  bytes[8] = '{';
  bytes[6] = 0x7f;
  g_free (bad);
  bad = tmp_path ("corrupt-length.g3nq");
  g_assert (g_file_set_contents (bad, bytes, (gssize) n, NULL));
  expect_refused (mm, bad, G3N_QUANT_NONE, "header length", "an absurd header length");

  /* well-formed safetensors, wrong contents */
  m = load (mm);
  GArray *list = g3n_model_text_matrices (m);
  g_autofree char *down0 = NULL;
  for (guint i = 0; i < list->len && !down0; i++)
    if (g_array_index (list, G3nTextMatrix, i).by_input)
      down0 = g_strdup (g_array_index (list, G3nTextMatrix, i).name);
  g_array_unref (list);
  g3n_model_unref (m);
  g_assert (down0);
  g_autofree char *scales = g_strconcat (down0, ".scales", NULL), *layout = g_strconcat (down0, ".layout", NULL);
  g_free (bad);
  bad = tmp_path ("rewritten.g3nq");
  rewrite (good, bad, scales, NULL, NULL, NULL);
  expect_refused (mm, bad, G3N_QUANT_NONE, scales, "a file missing a scales tensor");
  rewrite (good, bad, NULL, NULL, NULL, layout);
  expect_refused (mm, bad, G3N_QUANT_NONE, "by input", "a matrix saved in the other orientation");
  rewrite (good, bad, "padding", NULL, NULL, NULL);
  expect_refused (mm, bad, G3N_QUANT_NONE, "tensors", "a file with a tensor too few");
  rewrite (good, bad, NULL, "version", "2", NULL);
  expect_refused (mm, bad, G3N_QUANT_NONE, "version '2'", "another format version");
  rewrite (good, bad, NULL, "quant", "q3_x", NULL);
  expect_refused (mm, bad, G3N_QUANT_NONE, "q3_x", "an unknown quant type");
  rewrite (good, bad, NULL, "format", "pt", NULL);
  expect_refused (mm, bad, G3N_QUANT_NONE, "not a quantised-weights file", "another format");
  /* non-finite scales (issue 16's fuzz finding: NaN reached exp in attention, and generate printed garbage
   * with exit 0): an F16 inf in the first block, a NaN further in */
  const guint16 f16_inf = 0x7c00, f16_nan = 0xfe01;
  g_free (bytes);
  g_assert (g_file_get_contents (good, &bytes, &n, NULL));
  g_assert (g_file_set_contents (bad, bytes, (gssize) n, NULL));
  check (patch_tensor (bad, scales, 0, &f16_inf, 2), "patched an inf into %s", scales);
  expect_refused (mm, bad, G3N_QUANT_NONE, scales, "a file with an inf scale");
  g_assert (g_file_set_contents (bad, bytes, (gssize) n, NULL));
  check (patch_tensor (bad, scales, 2 * 5, &f16_nan, 2), "patched a NaN into %s", scales);
  expect_refused (mm, bad, G3N_QUANT_Q4_0, "non-finite", "a cache file with a NaN scale");
  rewrite (good, bad, NULL, NULL, NULL, NULL);
  G3nModel *ok_model = load (mm);
  check (g3n_model_load_quantized (ok_model, bad, NULL), "the unchanged rewrite still loads (the refusals above "
                                                         "are for the change alone)");
  g3n_model_unref (ok_model);
  g_autofree char *missing = tmp_path ("absent.g3nq");
  expect_refused (mm, missing, G3N_QUANT_NONE, NULL, "a missing file");
}

static void
remove_tree (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  for (const char *name; d && (name = g_dir_read_name (d));) {
    g_autofree char *path = g_build_filename (dir, name, NULL);
    g_unlink (path);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
}

int
main (void)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *mm = g_build_filename (data ? data : "tests/data", "mm-tiny", NULL);
  g_autofree char *mf = g_build_filename (data ? data : "tests/data", "text-matformer", NULL);
  g_autofree char *dir = g_dir_make_tmp ("g3n-quant-file-XXXXXX", NULL);
  g_assert (dir);
  tmpdir = dir;
  const char *dirs[] = { mm, mf };
  const G3nQuantType types[] = { G3N_QUANT_Q8_0, G3N_QUANT_Q4_0 };
  for (guint d = 0; d < G_N_ELEMENTS (dirs); d++)
    for (guint t = 0; t < G_N_ELEMENTS (types); t++) {
      g_autofree char *name = g_strdup_printf ("rt-%u-%u.g3nq", d, t), *file = tmp_path (name);
      test_round_trip (dirs[d], types[t], file);
    }
  test_cached (mm);
  test_refusals (mm, mf);
  remove_tree (dir);
  return test_summary ();
}
