/* kv-cache.h — per-layer key/value storage for incremental decoding. */
#ifndef G3N_KV_CACHE_H
#define G3N_KV_CACHE_H

#include "safetensors.h"

#include <glib.h>

G_BEGIN_DECLS

/* Keys and values of consecutive positions [pos0, pos0 + len) of one layer, each row `width` elements
 * (kv heads × head_dim) of `dtype`: F32, or F16/BF16 to halve memory and the bytes attention reads
 * (G3nContextParams.kv_type). A sliding-window layer keeps only the last window - 1 positions between
 * batches (all a future query can see); a full layer keeps everything. Storage grows on demand, so memory
 * follows the context actually used, not the configured maximum. */
typedef struct {
  int width;
  int window;   /* 0 = full attention */
  int pos0;
  int len;
  int cap;
  G3nDType dtype; /* F32, F16 or BF16 */
  void *k, *v;
} G3nKvLayer;

void g3n_kv_layer_init (G3nKvLayer *kv, int width, int window, G3nDType dtype);
void g3n_kv_layer_clear (G3nKvLayer *kv);
/* Appends n rows of fp32 keys and values (positions pos0 + len ...), rounded to the cache's dtype. */
void g3n_kv_layer_append (G3nKvLayer *kv, const float *k, const float *v, int n);
/* The same from rows of any float dtype (a session file's), converted to the cache's. */
void g3n_kv_layer_append_as (G3nKvLayer *kv, G3nDType dtype, const void *k, const void *v, int n);
/* Drops what no future query of a sliding layer can attend to, keeping also the window of position
 * keep_from and every row after it (-1: no such position). */
void g3n_kv_layer_trim (G3nKvLayer *kv, int keep_from);
/* Forgets all rows; the next append starts at position `pos`. */
void g3n_kv_layer_reset (G3nKvLayer *kv, int pos);
gsize g3n_kv_layer_bytes (const G3nKvLayer *kv);
/* Bytes of one row of keys (or values). */
gsize g3n_kv_layer_row_bytes (const G3nKvLayer *kv);
/* Row r (index from pos0) of the keys or values, in the cache's dtype. */
void *g3n_kv_layer_row (const G3nKvLayer *kv, gboolean values, int r);
/* Columns [col, col + ncols) of rows [r, r + n) as fp32, into dst [n, ncols]. */
void g3n_kv_layer_read (const G3nKvLayer *kv, gboolean values, int r, int n, int col, int ncols, float *dst);
/* Replaces row r of the keys or values with fp32 src (rounded to the cache's dtype). */
void g3n_kv_layer_write (G3nKvLayer *kv, gboolean values, int r, const float *src);
/* Removes the rows of positions [begin, end) and renumbers later rows down by end - begin; rows that
 * moved are returned through first_moved/n_moved (row indices after the removal) so the caller can
 * re-rotate their keys. */
void g3n_kv_layer_remove (G3nKvLayer *kv, int begin, int end, int *first_moved, int *n_moved);

typedef struct _G3nContext G3nContext;
/* The cache of one layer of a context (NULL for KV-shared layers): for tests and session files. */
G3nKvLayer *g3n_context_kv_layer (G3nContext *ctx, int layer);
/* Until pos is set back to -1, sliding layers keep every row from pos - (window - 1) on, so that removing
 * positions [pos, n_past) later (a discarded turn) leaves every layer as it was at pos. */
void g3n_context_keep_from (G3nContext *ctx, int pos);
/* After the caches were filled by hand (a restored session). */
void g3n_context_set_n_past (G3nContext *ctx, int n_past);

G_END_DECLS

#endif
