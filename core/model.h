/* model.h — a loaded checkpoint: config, mapped tensors, and the text decoder's weights bound by name. */
#ifndef G3N_MODEL_H
#define G3N_MODEL_H

#include "model-config.h"
#include "kernels/kernels.h"
#include "safetensors.h"

G_BEGIN_DECLS

/* One decoder layer. Vectors (norm weights, AltUp coefficients) are small, so they are kept as fp32 copies;
 * matrices stay in the mapping. The k/v members are unset for KV-shared layers. */
typedef struct {
  G3nMatrix q_proj, k_proj, v_proj, o_proj;
  const float *q_norm, *k_norm;
  G3nMatrix gate_proj, up_proj, down_proj;
  const float *input_layernorm, *post_attention_layernorm, *pre_feedforward_layernorm, *post_feedforward_layernorm;
  const float *altup_correct_output_scale;
  const float *altup_correction_coefs;  /* [A, A] */
  const float *altup_prediction_coefs;  /* [A*A, A] */
  const float *altup_router_norm;
  G3nMatrix altup_modality_router;      /* [A, hidden] */
  G3nMatrix laurel_left, laurel_right;
  const float *laurel_norm;
  G3nMatrix per_layer_input_gate, per_layer_projection;
  const float *post_per_layer_input_norm;
} G3nTextLayer;

typedef struct {
  G3nMatrix embed_tokens;               /* [vocab, hidden]; also the LM head when tied */
  G3nMatrix embed_tokens_per_layer;     /* [vocab_per_layer, layers * per_layer_dim] */
  G3nMatrix per_layer_model_projection; /* [layers * per_layer_dim, hidden] */
  const float *per_layer_projection_norm;
  G3nMatrix *altup_projections;         /* altup_num_inputs - 1 of [hidden, hidden] */
  G3nMatrix *altup_unembed_projections;
  const float *norm;
  G3nMatrix lm_head;
  G3nTextLayer *layers;
} G3nTextWeights;

/* Multimodal embedder (embed_vision / embed_audio): hard token embeddings and soft-token projection. */
typedef struct {
  gboolean present;
  G3nMatrix embedding;                  /* [vocab, mm_hidden] */
  const float *hard_embedding_norm, *soft_embedding_norm;
  G3nMatrix embedding_projection;       /* [text_hidden, mm_hidden] */
} G3nEmbedderWeights;

typedef enum { G3N_TOWER_AUDIO, G3N_TOWER_VISION, G3N_N_TOWERS } G3nTowerKind;

struct _G3nModel {
  gint ref_count;
  char *path;
  G3nConfig *config;
  G3nTensorStore *store;
  GPtrArray *f32_copies; /* owned fp32 copies of small vectors */
  G3nTextWeights text;
  G3nEmbedderWeights embed_vision, embed_audio;
  const char *identity; /* lazily computed, see g3n_model_identity */
  G3nQuantType quant;   /* g3n_model_quantize */
  GPtrArray *quant_buffers; /* storage of matrices we made: quantised, or laid out by input */
  G3nSafetensors *quant_file; /* or their mapping, g3n_model_load_quantized (quant-file.c) */
  GMutex layout_lock;         /* g3n_model_lay_out_sparse_layers, once */
  gboolean laid_out;
  GMutex tower_lock;          /* g3n_model_shared_tower */
  gpointer towers[G3N_N_TOWERS];
  GDestroyNotify tower_destroy[G3N_N_TOWERS];
};

/* The encoder of a tower with its prepared weights (fp32 copies of small tensors, bound matrices), made once
 * per model on first use and destroyed with the model: every session and element of the model shares it.
 * `make` runs under the model's tower lock; a failure is reported to this caller and retried by the next. */
gpointer g3n_model_shared_tower (G3nModel *m, G3nTowerKind kind, gpointer (*make) (G3nModel *m, GError **error),
                                 GDestroyNotify destroy, GError **error);

/* A text-decoder matrix that quantisation replaces, with the checkpoint tensor it was bound from: the one
 * definition g3n_model_quantize and the quantised-weights file (quant-file.c) share. */
typedef struct {
  G3nMatrix *matrix;
  char *name;           /* e.g. "model.language_model.layers.3.mlp.down_proj.weight" */
  gboolean by_input;    /* stored by input feature, float (from load) or quantised: the sparse layers' down_proj */
  gboolean quantizable; /* at least one block wide as stored; narrower ones stay as in the checkpoint */
} G3nTextMatrix;

/* Lays the float sparse layers' down_proj out by input (once), at the end of loading: after any
 * quantisation, which replaces those matrices, so the copies never add to the peak memory of start-up. */
void g3n_model_lay_out_sparse_layers (G3nModel *m);

/* The text decoder's large matrices in a fixed order (G3nTextMatrix; g_array_unref frees the names too). */
GArray *g3n_model_text_matrices (G3nModel *m);
/* Replaces a quantizable matrix by its quantised form q, dropping what it replaced: the mapped checkpoint
 * pages it came from, or our copy laid out by input. */
void g3n_model_replace_matrix (G3nModel *m, G3nTextMatrix *tm, const G3nMatrix *q);
/* Marks the model as now holding `type` weights (its identity changes with it). */
void g3n_model_set_quant (G3nModel *m, G3nQuantType type);
/* The identity of the checkpoint as stored (unquantised), whatever the model holds now; the caller frees it. */
char *g3n_model_source_identity (G3nModel *m);

/* Weight preparation, run by g3n_model_load_with_params before the model is handed out (and by tests).
 * g3n_model_quantize converts the text decoder's large matrices and a copy of the tied LM head to `type`;
 * again with the model's current type is a no-op, with another type an error. The quantised-weights file
 * (quant-file.c): save writes the model's quantised matrices (replaced atomically; the model must be
 * quantised); load reads one into huge pages and replaces the matrices by its own (the model must be
 * unquantised; a file of another version, checkpoint or shape is refused, the model then unchanged);
 * quantize_cached loads `path` when it exists, otherwise quantises and saves it (NULL path: quantize). */
gboolean g3n_model_quantize (G3nModel *model, G3nQuantType type, GError **error);
gboolean g3n_model_save_quantized (G3nModel *model, const char *path, GError **error);
gboolean g3n_model_load_quantized (G3nModel *model, const char *path, GError **error);
gboolean g3n_model_quantize_cached (G3nModel *model, G3nQuantType type, const char *path, GError **error);

G_END_DECLS

#endif
