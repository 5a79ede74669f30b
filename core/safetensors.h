/* safetensors.h — memory-mapped, validated safetensors files and checkpoints (single file or shards). */
#ifndef G3N_SAFETENSORS_H
#define G3N_SAFETENSORS_H

#include "gemma3n.h"
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* G3nDType, G3nTensor, the dtype and shape helpers, G3nSafetensors (open, find, write) are public: see
 * gemma3n.h ("tensor files"). What follows is for the library and its tests. */

/* Checks that t — found under `name`, NULL when missing (reported against `origin`) — is a float
 * weight (BF16, F16, F32) of exactly `shape`, with an error naming the file and tensor otherwise. */
gboolean g3n_tensor_expect (const G3nTensor *t, const char *name, const char *origin, int ndim, const int64_t *shape,
                            GError **error);

/* Memory for weights, free with g_free(): 64-byte aligned, and from 2 MiB on in transparent huge pages
 * where the kernel allows. Decode
 * reads a gigabyte of weights per token, and with 4 KiB pages the TLB misses (dearer still under a
 * hypervisor) cost the compute-bound quantised kernels ~10%; the sparse layers' scattered rows twice that. */
void *g3n_weights_alloc (gsize bytes);

/* g3n_safetensors_open, with the file read into memory from g3n_weights_alloc() instead of mapped: the
 * quantised-weights file, whose copy the page cache would only hold in small pages. */
G3nSafetensors *g3n_safetensors_open_resident (const char *path, GError **error);

/* A checkpoint folder: model.safetensors, or the shards listed by model.safetensors.index.json. */
typedef struct _G3nTensorStore G3nTensorStore;

G3nTensorStore *g3n_tensor_store_open (const char *dir, GError **error);
void g3n_tensor_store_free (G3nTensorStore *store);
const G3nTensor *g3n_tensor_store_find (const G3nTensorStore *store, const char *name);
guint g3n_tensor_store_count (const G3nTensorStore *store);
/* SHA-256 over every tensor's name, dtype, shape and first bytes: identifies a checkpoint cheaply. */
char *g3n_tensor_store_digest (const G3nTensorStore *store);

G_END_DECLS

#endif
