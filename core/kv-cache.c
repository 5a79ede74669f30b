/* kv-cache.c — growable per-layer key/value rows, in fp32 or a 16-bit float type. */
#include "kv-cache.h"
#include "gemma3n.h"
#include "kernels/kernels.h"

#include <string.h>

/* Rows converted per step through an fp32 buffer (F16 <-> BF16). */
#define CONVERT_CHUNK 1024

const char *
g3n_kv_type_name (G3nKvType type)
{
  switch (type) {
  case G3N_KV_F16:
    return "f16";
  case G3N_KV_BF16:
    return "bf16";
  default:
    return "f32";
  }
}

gboolean
g3n_kv_type_from_string (const char *name, G3nKvType *type, GError **error)
{
  const G3nKvType types[] = { G3N_KV_F32, G3N_KV_F16, G3N_KV_BF16 };
  for (guint i = 0; name && i < G_N_ELEMENTS (types); i++)
    if (g_ascii_strcasecmp (name, g3n_kv_type_name (types[i])) == 0) {
      *type = types[i];
      return TRUE;
    }
  g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "unknown KV cache type '%s' (expected f32, f16 or bf16)",
               name ? name : "(null)");
  return FALSE;
}

void
g3n_kv_layer_init (G3nKvLayer *kv, int width, int window, G3nDType dtype)
{
  g_return_if_fail (dtype == G3N_DTYPE_F32 || dtype == G3N_DTYPE_F16 || dtype == G3N_DTYPE_BF16);
  memset (kv, 0, sizeof *kv);
  kv->width = width;
  kv->window = window;
  kv->dtype = dtype;
}

void
g3n_kv_layer_clear (G3nKvLayer *kv)
{
  g_free (kv->k);
  g_free (kv->v);
  kv->k = kv->v = NULL;
  kv->len = kv->cap = 0;
}

gsize
g3n_kv_layer_row_bytes (const G3nKvLayer *kv)
{
  return (gsize) kv->width * g3n_dtype_size (kv->dtype);
}

void *
g3n_kv_layer_row (const G3nKvLayer *kv, gboolean values, int r)
{
  return (guint8 *) (values ? kv->v : kv->k) + (gsize) r * g3n_kv_layer_row_bytes (kv);
}

static void
resize (G3nKvLayer *kv, int cap)
{
  kv->k = g_realloc (kv->k, (gsize) cap * g3n_kv_layer_row_bytes (kv));
  kv->v = g_realloc (kv->v, (gsize) cap * g3n_kv_layer_row_bytes (kv));
  kv->cap = cap;
}

static void
reserve (G3nKvLayer *kv, int need)
{
  if (need <= kv->cap)
    return;
  int cap = MAX (need, kv->cap + kv->cap / 2);
  resize (kv, MAX (cap, 16));
}

/* n elements from one float dtype to another; fp32 is one side of every conversion but F16 <-> BF16. */
static void
convert (G3nDType from, const void *src, G3nDType to, void *dst, gsize n)
{
  if (from == to) {
    memcpy (dst, src, n * g3n_dtype_size (to));
  } else if (to == G3N_DTYPE_F32) {
    g3n_half_to_f32 (from, src, dst, n);
  } else if (from == G3N_DTYPE_F32) {
    g3n_from_f32 (to, src, dst, n);
  } else {
    float buf[CONVERT_CHUNK];
    for (gsize i = 0; i < n; i += CONVERT_CHUNK) {
      gsize m = MIN (CONVERT_CHUNK, n - i);
      g3n_half_to_f32 (from, (const guint16 *) src + i, buf, m);
      g3n_from_f32 (to, buf, (guint16 *) dst + i, m);
    }
  }
}

void
g3n_kv_layer_append_as (G3nKvLayer *kv, G3nDType dtype, const void *k, const void *v, int n)
{
  if (n <= 0)
    return;
  reserve (kv, kv->len + n);
  gsize count = (gsize) n * kv->width;
  convert (dtype, k, kv->dtype, g3n_kv_layer_row (kv, FALSE, kv->len), count);
  convert (dtype, v, kv->dtype, g3n_kv_layer_row (kv, TRUE, kv->len), count);
  kv->len += n;
}

void
g3n_kv_layer_append (G3nKvLayer *kv, const float *k, const float *v, int n)
{
  g3n_kv_layer_append_as (kv, G3N_DTYPE_F32, k, v, n);
}

void
g3n_kv_layer_read (const G3nKvLayer *kv, gboolean values, int r, int n, int col, int ncols, float *dst)
{
  gsize esize = g3n_dtype_size (kv->dtype);
  for (int i = 0; i < n; i++) {
    const guint8 *src = (const guint8 *) g3n_kv_layer_row (kv, values, r + i) + (gsize) col * esize;
    convert (kv->dtype, src, G3N_DTYPE_F32, dst + (gsize) i * ncols, ncols);
  }
}

void
g3n_kv_layer_write (G3nKvLayer *kv, gboolean values, int r, const float *src)
{
  convert (G3N_DTYPE_F32, src, kv->dtype, g3n_kv_layer_row (kv, values, r), kv->width);
}

/* Moves n rows from index `from` to index `to` (overlap allowed). */
static void
move_rows (G3nKvLayer *kv, int to, int from, int n)
{
  if (n <= 0)
    return;
  gsize bytes = (gsize) n * g3n_kv_layer_row_bytes (kv);
  memmove (g3n_kv_layer_row (kv, FALSE, to), g3n_kv_layer_row (kv, FALSE, from), bytes);
  memmove (g3n_kv_layer_row (kv, TRUE, to), g3n_kv_layer_row (kv, TRUE, from), bytes);
}

void
g3n_kv_layer_trim (G3nKvLayer *kv, int keep_from)
{
  int keep = kv->window - 1;
  if (kv->window <= 0 || kv->len <= keep)
    return;
  int first = kv->pos0 + kv->len - keep; /* the oldest row a future query can attend to */
  if (keep_from >= 0)
    first = MIN (first, keep_from - keep); /* and the window the position keep_from sees */
  int drop = first - kv->pos0;
  if (drop <= 0)
    return;
  move_rows (kv, 0, drop, kv->len - drop);
  kv->pos0 += drop;
  kv->len -= drop;
  /* Give back what a long prefill batch made the buffer grow to. */
  if (kv->cap > 4 * MAX (kv->len, 16))
    resize (kv, MAX (kv->len, 16));
}

void
g3n_kv_layer_reset (G3nKvLayer *kv, int pos)
{
  kv->len = 0;
  kv->pos0 = pos;
}

gsize
g3n_kv_layer_bytes (const G3nKvLayer *kv)
{
  return (gsize) kv->cap * 2 * g3n_kv_layer_row_bytes (kv);
}

void
g3n_kv_layer_remove (G3nKvLayer *kv, int begin, int end, int *first_moved, int *n_moved)
{
  int lo = CLAMP (begin - kv->pos0, 0, kv->len), hi = CLAMP (end - kv->pos0, 0, kv->len);
  move_rows (kv, lo, hi, kv->len - hi);
  kv->len -= hi - lo;
  /* Rows wholly before the cut keep their positions; the rest move down by the cut's length. When the
   * cut starts before this layer's first row (a sliding layer), the first row takes its new position. */
  if (begin <= kv->pos0) {
    *first_moved = 0;
    kv->pos0 = begin < kv->pos0 ? MAX (begin, kv->pos0 - (end - begin)) : kv->pos0;
  } else {
    *first_moved = lo;
  }
  *n_moved = kv->len - *first_moved;
}
