/* quant-file.c — the quantised-weights file: what g3n_model_quantize computes, saved once and read back.
 *
 * It is a safetensors file, so the reader's byte-level validation (header, offsets, sizes, alignment,
 * overlaps, truncation) covers it and common tools can inspect it. Per quantised matrix, named after the
 * checkpoint tensor it replaces (the list and the by-input rule are model.c's g3n_model_text_matrices):
 *   NAME.q       U8  [stored rows, code bytes per row]   stored rows = cols when by_input
 *   NAME.scales  F16 [stored rows, blocks per row]
 *   NAME.layout  I64 [3]: logical rows, cols, by_input
 * plus a U8 tensor "padding" and "__metadata__": format, version, quant, identity (of the unquantised
 * checkpoint), source (its path, for people).
 *
 * The writer puts I64, then F16, then U8 tensors after a 64-byte aligned header, in the order given within
 * a type; "padding" is the first U8 tensor and sized so the codes that follow start on a cache line (each
 * matrix's codes are a multiple of 16 bytes, as the rows of a heap-quantised matrix are 16-byte aligned).
 *
 * Loading reads the file into memory in huge pages (g3n_safetensors_open_resident: a mapping of the page
 * cache would be in 4 KiB pages, whose TLB misses cost decode ~5-10%), checks the whole file against the
 * model before it replaces anything, then points the matrices into that one copy. Codes are not checked:
 * any byte is a valid code and none makes a kernel read out of bounds (a corrupted file gives wrong numbers,
 * like a corrupted checkpoint); hashing the data would cost about what the file saves. Scales must be finite:
 * an F16 inf or NaN would carry NaN through every later activation (and exp's input), and the check reads
 * only 2 bytes per block of 32 codes.
 */
#include "model.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define FORMAT_NAME "gemma3n-quantized-weights"
#define FORMAT_VERSION "1"
#define CODE_ALIGN 64

/* ------------------------------------------------------------------------------------------ saving */

typedef struct {
  GArray *tensors;  /* G3nTensor */
  GPtrArray *owned; /* names and layout values */
  gsize before_codes; /* bytes of the I64 and F16 tensors, which the writer puts first */
} Writer;

static void
put (Writer *w, const char *name, const char *suffix, G3nDType dtype, const void *data, int64_t d0, int64_t d1)
{
  G3nTensor t = { .name = g_strconcat (name, suffix, NULL), .dtype = dtype, .ndim = d1 < 0 ? 1 : 2,
                  .shape = { d0, d1 }, .data = data };
  g_ptr_array_add (w->owned, (gpointer) t.name);
  if (dtype != G3N_DTYPE_U8)
    w->before_codes += (gsize) g3n_tensor_numel (&t) * g3n_dtype_size (dtype);
  g_array_append_val (w->tensors, t);
}

static void
put_matrix (Writer *w, const G3nTextMatrix *tm)
{
  const G3nMatrix *q = tm->matrix;
  int stored = q->by_input ? q->cols : q->rows, width = q->by_input ? q->rows : q->cols;
  gint64 *layout = g_new (gint64, 3);
  layout[0] = q->rows, layout[1] = q->cols, layout[2] = q->by_input;
  g_ptr_array_add (w->owned, layout);
  put (w, tm->name, ".layout", G3N_DTYPE_I64, layout, 3, -1);
  put (w, tm->name, ".scales", G3N_DTYPE_F16, q->scales, stored, g3n_quant_blocks (width));
  put (w, tm->name, ".q", G3N_DTYPE_U8, q->data, stored, (int64_t) g3n_quant_row_bytes (q->quant, width));
}

/* Written beside `path` and renamed over it: an interrupted save never leaves a truncated file that a
 * later start-up would refuse. */
static gboolean
write_atomically (const char *path, const Writer *w, const char *const *metadata, GError **error)
{
  g_autofree char *tmp = g_strdup_printf ("%s.%d.tmp", path, (int) getpid ());
  if (!g3n_safetensors_write_with_metadata (tmp, (const G3nTensor *) w->tensors->data, w->tensors->len, metadata,
                                            error)) {
    g_prefix_error (error, "%s: cannot save quantised weights: ", path);
    g_unlink (tmp);
    return FALSE;
  }
  if (g_rename (tmp, path) != 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: cannot rename %s to it: %s", path, tmp, g_strerror (errno));
    g_unlink (tmp);
    return FALSE;
  }
  return TRUE;
}

gboolean
g3n_model_save_quantized (G3nModel *m, const char *path, GError **error)
{
  if (m->quant == G3N_QUANT_NONE) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT,
                 "%s: cannot save quantised weights of %s: the model is not quantised", path, m->path);
    return FALSE;
  }
  static const guint8 zeros[CODE_ALIGN];
  Writer w = { g_array_new (FALSE, FALSE, sizeof (G3nTensor)), g_ptr_array_new_with_free_func (g_free), 0 };
  put (&w, "padding", "", G3N_DTYPE_U8, zeros, 0, -1); /* sized below, once the I64/F16 bytes are known */
  GArray *list = g3n_model_text_matrices (m);
  for (guint i = 0; i < list->len; i++)
    if (g_array_index (list, G3nTextMatrix, i).quantizable)
      put_matrix (&w, &g_array_index (list, G3nTextMatrix, i));
  g_array_index (w.tensors, G3nTensor, 0).shape[0] = (CODE_ALIGN - w.before_codes % CODE_ALIGN) % CODE_ALIGN;

  g_autofree char *identity = g3n_model_source_identity (m);
  g_autofree char *source = g_utf8_make_valid (m->path, -1); /* JSON strings are UTF-8; paths need not be */
  const char *metadata[] = { "format", FORMAT_NAME, "version", FORMAT_VERSION, "quant", g3n_quant_type_name (m->quant),
                             "identity", identity, "source", source, NULL };
  gboolean ok = write_atomically (path, &w, metadata, error);
  g_array_unref (list);
  g_array_free (w.tensors, TRUE);
  g_ptr_array_free (w.owned, TRUE);
  return ok;
}

/* ----------------------------------------------------------------------------------------- loading */

static gboolean G_GNUC_PRINTF (4, 5)
refuse (GError **error, G3nErrorCode code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, G3N_ERROR, code, "%s: %s", path, msg);
  return FALSE;
}

/* The metadata: ours, a version this build reads, a known type (the one wanted unless that is NONE), and
 * made from this checkpoint. */
static gboolean
check_header (G3nModel *m, const G3nSafetensors *f, G3nQuantType want, G3nQuantType *type, GError **error)
{
  const char *path = g3n_safetensors_path (f);
  const char *format = g3n_safetensors_metadata (f, "format"), *version = g3n_safetensors_metadata (f, "version");
  const char *quant = g3n_safetensors_metadata (f, "quant"), *identity = g3n_safetensors_metadata (f, "identity");
  if (g_strcmp0 (format, FORMAT_NAME) != 0)
    return refuse (error, G3N_ERROR_FORMAT, path,
                   "not a quantised-weights file (its metadata lacks \"format\": \"" FORMAT_NAME "\")");
  if (g_strcmp0 (version, FORMAT_VERSION) != 0)
    return refuse (error, G3N_ERROR_FORMAT, path,
                   "quantised-weights format version '%s' is not supported (this build reads version " FORMAT_VERSION
                   ")", version ? version : "(none)");
  if (!quant || !g3n_quant_type_from_string (quant, type, NULL) || *type == G3N_QUANT_NONE)
    return refuse (error, G3N_ERROR_FORMAT, path, "unknown quant type '%s'", quant ? quant : "(none)");
  if (want != G3N_QUANT_NONE && *type != want)
    return refuse (error, G3N_ERROR_INVALID_ARGUMENT, path, "holds %s weights, not the %s asked for", quant,
                   g3n_quant_type_name (want));
  g_autofree char *mine = g3n_model_source_identity (m);
  if (g_strcmp0 (identity, mine) != 0)
    return refuse (error, G3N_ERROR_INVALID_ARGUMENT, path,
                   "made from another checkpoint (%s), not %s (identity %.12s…, expected %.12s…)",
                   g3n_safetensors_metadata (f, "source") ? g3n_safetensors_metadata (f, "source") : "?", m->path,
                   identity ? identity : "(none)", mine);
  return TRUE;
}

/* NAME+suffix with exactly this dtype and shape (d1 < 0: 1-D). */
static const G3nTensor *
need (const G3nSafetensors *f, const char *name, const char *suffix, G3nDType dtype, int64_t d0, int64_t d1,
      GError **error)
{
  g_autofree char *full = g_strconcat (name, suffix, NULL);
  const G3nTensor *t = g3n_safetensors_find (f, full);
  int ndim = d1 < 0 ? 1 : 2;
  int64_t shape[2] = { d0, d1 };
  if (!t) {
    refuse (error, G3N_ERROR_TENSOR, g3n_safetensors_path (f), "tensor '%s' is missing", full);
    return NULL;
  }
  if (t->dtype != dtype || t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
    g_autofree char *have = g3n_shape_to_string (t->ndim, t->shape), *want = g3n_shape_to_string (ndim, shape);
    refuse (error, G3N_ERROR_TENSOR, g3n_safetensors_path (f), "tensor '%s' is %s %s, expected %s %s", full,
            g3n_dtype_name (t->dtype), have, g3n_dtype_name (dtype), want);
    return NULL;
  }
  return t;
}

/* Index of the first F16 infinity or NaN (exponent bits all set) among n values, or -1. */
static gint64
first_non_finite_f16 (const void *data, gint64 n)
{
  const guint16 *h = data;
  for (gint64 i = 0; i < n; i++)
    if ((h[i] & 0x7c00) == 0x7c00)
      return i;
  return -1;
}

/* The quantised form of tm held by the file, as a view into its mapping. */
static gboolean
view_matrix (const G3nSafetensors *f, const G3nTextMatrix *tm, G3nQuantType type, G3nMatrix *out, GError **error)
{
  const G3nMatrix *m = tm->matrix;
  const G3nTensor *layout = need (f, tm->name, ".layout", G3N_DTYPE_I64, 3, -1, error);
  if (!layout)
    return FALSE;
  gint64 v[3];
  memcpy (v, layout->data, sizeof v);
  if (v[0] != m->rows || v[1] != m->cols || v[2] != tm->by_input)
    return refuse (error, G3N_ERROR_TENSOR, g3n_safetensors_path (f),
                   "matrix '%s' was saved as [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]%s, this model has [%d, %d]%s",
                   tm->name, v[0], v[1], v[2] ? " by input" : "", m->rows, m->cols, tm->by_input ? " by input" : "");
  int stored = tm->by_input ? m->cols : m->rows, width = tm->by_input ? m->rows : m->cols;
  const G3nTensor *q = need (f, tm->name, ".q", G3N_DTYPE_U8, stored, (int64_t) g3n_quant_row_bytes (type, width),
                             error);
  const G3nTensor *s = q ? need (f, tm->name, ".scales", G3N_DTYPE_F16, stored, g3n_quant_blocks (width), error)
                         : NULL;
  if (!s)
    return FALSE;
  gint64 bad = first_non_finite_f16 (s->data, g3n_tensor_numel (s));
  if (bad >= 0)
    return refuse (error, G3N_ERROR_TENSOR, g3n_safetensors_path (f),
                   "tensor '%s.scales' holds a non-finite scale (F16 bits 0x%04x at element %" G_GINT64_FORMAT ")",
                   tm->name, ((const guint16 *) s->data)[bad], bad);
  *out = (G3nMatrix) { .data = q->data, .dtype = m->dtype, .rows = m->rows, .cols = m->cols, .quant = type,
                       .scales = s->data, .by_input = tm->by_input };
  return TRUE;
}

/* Every matrix of `list` that quantisation replaces, viewed in f; views[i] for list[i]. */
static gboolean
view_all (const G3nSafetensors *f, GArray *list, G3nQuantType type, G3nMatrix *views, GError **error)
{
  guint expected = 1; /* "padding" */
  for (guint i = 0; i < list->len; i++) {
    const G3nTextMatrix *tm = &g_array_index (list, G3nTextMatrix, i);
    if (!tm->quantizable)
      continue;
    if (!view_matrix (f, tm, type, &views[i], error))
      return FALSE;
    expected += 3;
  }
  if (g3n_safetensors_count (f) != expected)
    return refuse (error, G3N_ERROR_FORMAT, g3n_safetensors_path (f), "holds %u tensors where this model's layout has %u",
                   g3n_safetensors_count (f), expected);
  return TRUE;
}

/* Loads path into m, which must be unquantised; `want` = NONE accepts either type. */
static gboolean
load_file (G3nModel *m, const char *path, G3nQuantType want, GError **error)
{
  if (m->quant != G3N_QUANT_NONE)
    return refuse (error, G3N_ERROR_INVALID_ARGUMENT, path,
                   "cannot load quantised weights into %s: it already holds %s weights", m->path,
                   g3n_quant_type_name (m->quant));
  G3nSafetensors *f = g3n_safetensors_open_resident (path, error); /* in huge pages: see g3n_weights_alloc */
  if (!f)
    return FALSE;
  GArray *list = g3n_model_text_matrices (m);
  g_autofree G3nMatrix *views = g_new0 (G3nMatrix, MAX (list->len, 1));
  G3nQuantType type = G3N_QUANT_NONE;
  gboolean ok = check_header (m, f, want, &type, error) && view_all (f, list, type, views, error);
  if (ok) {
    for (guint i = 0; i < list->len; i++)
      if (g_array_index (list, G3nTextMatrix, i).quantizable)
        g3n_model_replace_matrix (m, &g_array_index (list, G3nTextMatrix, i), &views[i]);
    m->quant_file = f; /* the matrices point into it until the model is freed */
    g3n_model_set_quant (m, type);
  } else {
    g3n_safetensors_free (f);
  }
  g_array_unref (list);
  return ok;
}

gboolean
g3n_model_load_quantized (G3nModel *m, const char *path, GError **error)
{
  return load_file (m, path, G3N_QUANT_NONE, error);
}

gboolean
g3n_model_quantize_cached (G3nModel *m, G3nQuantType type, const char *path, GError **error)
{
  if (!path)
    return g3n_model_quantize (m, type, error);
  if (type != G3N_QUANT_Q8_0 && type != G3N_QUANT_Q4_0)
    return refuse (error, G3N_ERROR_INVALID_ARGUMENT, path, "a quantised-weights file holds q8_0 or q4_0, not %s",
                   g3n_quant_type_name (type));
  if (m->quant == type) /* as g3n_model_quantize: already done */
    return TRUE;
  if (g_file_test (path, G_FILE_TEST_EXISTS))
    return load_file (m, path, type, error);
  return g3n_model_quantize (m, type, error) && g3n_model_save_quantized (m, path, error);
}
