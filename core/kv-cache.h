/* kv-cache.h — per-layer key/value storage for incremental decoding. */
#ifndef G3N_KV_CACHE_H
#define G3N_KV_CACHE_H

#include <glib.h>

G_BEGIN_DECLS

/* Keys and values of consecutive positions [pos0, pos0 + len) of one layer, each row `width` floats
 * (kv heads × head_dim). A sliding-window layer keeps only the last window - 1 positions between batches
 * (all a future query can see); a full layer keeps everything. Storage grows on demand, so memory follows
 * the context actually used, not the configured maximum. */
typedef struct {
  int width;
  int window;   /* 0 = full attention */
  int pos0;
  int len;
  int cap;
  float *k, *v;
} G3nKvLayer;

void g3n_kv_layer_init (G3nKvLayer *kv, int width, int window);
void g3n_kv_layer_clear (G3nKvLayer *kv);
/* Appends n rows of keys and values (positions pos0 + len ...). */
void g3n_kv_layer_append (G3nKvLayer *kv, const float *k, const float *v, int n);
/* Drops what no future query of a sliding layer can attend to. */
void g3n_kv_layer_trim (G3nKvLayer *kv);
/* Forgets all rows; the next append starts at position `pos`. */
void g3n_kv_layer_reset (G3nKvLayer *kv, int pos);
gsize g3n_kv_layer_bytes (const G3nKvLayer *kv);
/* Removes the rows of positions [begin, end) and renumbers later rows down by end - begin; rows that
 * moved are returned through first_moved/n_moved (row indices after the removal) so the caller can
 * re-rotate their keys. */
void g3n_kv_layer_remove (G3nKvLayer *kv, int begin, int end, int *first_moved, int *n_moved);

typedef struct _G3nContext G3nContext;
/* The cache of one layer of a context (NULL for KV-shared layers): for tests and session files. */
G3nKvLayer *g3n_context_kv_layer (G3nContext *ctx, int layer);
/* After the caches were filled by hand (a restored session). */
void g3n_context_set_n_past (G3nContext *ctx, int n_past);

G_END_DECLS

#endif
