/* kv-cache.c — growable per-layer key/value rows. */
#include "kv-cache.h"

#include <string.h>

void
g3n_kv_layer_init (G3nKvLayer *kv, int width, int window)
{
  memset (kv, 0, sizeof *kv);
  kv->width = width;
  kv->window = window;
}

void
g3n_kv_layer_clear (G3nKvLayer *kv)
{
  g_free (kv->k);
  g_free (kv->v);
  kv->k = kv->v = NULL;
  kv->len = kv->cap = 0;
}

static void
reserve (G3nKvLayer *kv, int need)
{
  if (need <= kv->cap)
    return;
  int cap = MAX (need, kv->cap + kv->cap / 2);
  cap = MAX (cap, 16);
  kv->k = g_renew (float, kv->k, (gsize) cap * kv->width);
  kv->v = g_renew (float, kv->v, (gsize) cap * kv->width);
  kv->cap = cap;
}

void
g3n_kv_layer_append (G3nKvLayer *kv, const float *k, const float *v, int n)
{
  reserve (kv, kv->len + n);
  gsize row = (gsize) kv->width * sizeof (float);
  memcpy (kv->k + (gsize) kv->len * kv->width, k, n * row);
  memcpy (kv->v + (gsize) kv->len * kv->width, v, n * row);
  kv->len += n;
}

void
g3n_kv_layer_trim (G3nKvLayer *kv)
{
  int keep = kv->window - 1;
  if (kv->window <= 0 || kv->len <= keep)
    return;
  int drop = kv->len - keep;
  gsize row = (gsize) kv->width;
  memmove (kv->k, kv->k + drop * row, (gsize) keep * row * sizeof (float));
  memmove (kv->v, kv->v + drop * row, (gsize) keep * row * sizeof (float));
  kv->pos0 += drop;
  kv->len = keep;
  /* Give back what a long prefill batch made the buffer grow to. */
  if (kv->cap > 4 * MAX (keep, 16)) {
    kv->cap = MAX (keep, 16);
    kv->k = g_renew (float, kv->k, (gsize) kv->cap * row);
    kv->v = g_renew (float, kv->v, (gsize) kv->cap * row);
  }
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
  return (gsize) kv->cap * kv->width * 2 * sizeof (float);
}

void
g3n_kv_layer_remove (G3nKvLayer *kv, int begin, int end, int *first_moved, int *n_moved)
{
  int lo = CLAMP (begin - kv->pos0, 0, kv->len), hi = CLAMP (end - kv->pos0, 0, kv->len);
  gsize row = (gsize) kv->width;
  int tail = kv->len - hi;
  memmove (kv->k + lo * row, kv->k + hi * row, (gsize) tail * row * sizeof (float));
  memmove (kv->v + lo * row, kv->v + hi * row, (gsize) tail * row * sizeof (float));
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
