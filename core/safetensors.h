/* safetensors.h — memory-mapped, validated safetensors files and checkpoints (single file or shards). */
#ifndef G3N_SAFETENSORS_H
#define G3N_SAFETENSORS_H

#include "gemma3n.h"
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  G3N_DTYPE_F32,
  G3N_DTYPE_F16,
  G3N_DTYPE_BF16,
  G3N_DTYPE_F64,
  G3N_DTYPE_I64,
  G3N_DTYPE_I32,
  G3N_DTYPE_I16,
  G3N_DTYPE_I8,
  G3N_DTYPE_U8,
  G3N_DTYPE_BOOL,
  G3N_N_DTYPES
} G3nDType;

#define G3N_MAX_DIMS 8

/* One tensor: its bytes live in a mapped file (or, for tensors to be written, in caller memory). */
typedef struct {
  const char *name;
  G3nDType dtype;
  int ndim;
  int64_t shape[G3N_MAX_DIMS];
  const void *data;
  size_t nbytes;
  const char *path; /* the file it was read from, for error messages */
} G3nTensor;

gsize g3n_dtype_size (G3nDType dtype);
const char *g3n_dtype_name (G3nDType dtype);
int64_t g3n_tensor_numel (const G3nTensor *t);
/* "[2, 3, 4]" — for error messages; the caller frees it. */
char *g3n_shape_to_string (int ndim, const int64_t *shape);

/* Checks that t — found under `name`, NULL when missing (reported against `origin`) — is a float
 * weight (BF16, F16, F32) of exactly `shape`, with an error naming the file and tensor otherwise. */
gboolean g3n_tensor_expect (const G3nTensor *t, const char *name, const char *origin, int ndim, const int64_t *shape,
                            GError **error);

/* Memory for weights, free with g_free(): 64-byte aligned, and from 2 MiB on in transparent huge pages
 * where the kernel allows. Decode
 * reads a gigabyte of weights per token, and with 4 KiB pages the TLB misses (dearer still under a
 * hypervisor) cost the compute-bound quantised kernels ~10%; the sparse layers' scattered rows twice that. */
void *g3n_weights_alloc (gsize bytes);

/* A single safetensors file, mapped read-only, with every header entry validated at open. */
typedef struct _G3nSafetensors G3nSafetensors;

G3nSafetensors *g3n_safetensors_open (const char *path, GError **error);
/* The same, with the file read into memory from g3n_weights_alloc() instead of mapped: the quantised-weights
 * file, whose copy the page cache would only hold in small pages. */
G3nSafetensors *g3n_safetensors_open_resident (const char *path, GError **error);
void g3n_safetensors_free (G3nSafetensors *st);
guint g3n_safetensors_count (const G3nSafetensors *st);
const G3nTensor *g3n_safetensors_nth (const G3nSafetensors *st, guint i);
const G3nTensor *g3n_safetensors_find (const G3nSafetensors *st, const char *name);
const char *g3n_safetensors_path (const G3nSafetensors *st);
/* A string of the header's "__metadata__" map; NULL when absent (or not a string). */
const char *g3n_safetensors_metadata (const G3nSafetensors *st, const char *key);

/* Writes tensors (name, dtype, ndim, shape, data) to a new safetensors file. Tensors are laid out widest
 * element type first, in the given order within a type, from a 64-byte aligned data region. */
gboolean g3n_safetensors_write (const char *path, const G3nTensor *tensors, guint n_tensors, GError **error);
/* The same with a "__metadata__" map: metadata holds key, value, key, value, …, NULL (NULL for none). */
gboolean g3n_safetensors_write_with_metadata (const char *path, const G3nTensor *tensors, guint n_tensors,
                                              const char *const *metadata, GError **error);

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
