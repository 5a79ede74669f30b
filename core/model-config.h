/* model-config.h — Gemma 3n config.json, with the defaults transformers applies for absent keys. */
#ifndef G3N_MODEL_CONFIG_H
#define G3N_MODEL_CONFIG_H

#include "gemma3n.h"

G_BEGIN_DECLS

typedef struct {
  int hidden_size;
  int num_hidden_layers;
  int num_attention_heads;
  int num_key_value_heads;
  int head_dim;
  int *intermediate_size;       /* per layer (MatFormer widths) */
  float *activation_sparsity;   /* per layer target sparsity; 0 = dense */
  gboolean *is_sliding;         /* per layer: sliding_attention (TRUE) or full_attention */
  int vocab_size;
  int vocab_size_per_layer_input;
  int hidden_size_per_layer_input;
  int sliding_window;
  int num_kv_shared_layers;
  int altup_num_inputs;
  int altup_active_idx;
  double altup_coef_clip;       /* applied only in training by the reference; kept for completeness */
  gboolean altup_correct_scale;
  int laurel_rank;
  double final_logit_softcapping; /* 0 = none */
  double rms_norm_eps;
  double rope_theta_global;     /* full_attention layers */
  double rope_theta_local;      /* sliding_attention layers */
  int max_position_embeddings;
  int bos_token_id;
  int pad_token_id;
  int eos_token_ids[4];
  int n_eos_token_ids;
} G3nTextConfig;

typedef struct {
  gboolean present;
  int hidden_size;
  int input_feat_size;
  int vocab_size;
  int vocab_offset;
  double rms_norm_eps;
  double gradient_clipping;
  int conf_attention_chunk_size;
  int conf_attention_context_left;
  int conf_attention_context_right;
  double conf_attention_logit_cap;
  int conf_num_attention_heads;
  int conf_num_hidden_layers;
  int conf_conv_kernel_size;
  int conf_reduction_factor;
  double conf_residual_weight;
  int sscp_conv_channel_size[2];
  double sscp_conv_group_norm_eps;
  int sscp_conv_kernel_size[2][2];
  int sscp_conv_stride_size[2][2];
} G3nAudioConfig;

typedef struct {
  gboolean present;
  char *architecture;
  int hidden_size;
  int vocab_size;
  int vocab_offset;
  double rms_norm_eps;
  double channel_multiplier;    /* model_args.channel_multiplier, 1.0 when absent */
} G3nVisionConfig;

typedef struct {
  char *path;
  G3nTextConfig text;
  G3nAudioConfig audio;
  G3nVisionConfig vision;
  int audio_soft_tokens_per_image;
  int vision_soft_tokens_per_image;
  int boi_token_id, eoi_token_id, image_token_id;
  int boa_token_id, eoa_token_id, audio_token_id;
} G3nConfig;

/* Reads DIR/config.json (or the file itself when given a file). */
G3nConfig *g3n_config_load (const char *path, GError **error);
G3nConfig *g3n_config_parse (const char *json, gssize length, const char *origin, GError **error);
void g3n_config_free (G3nConfig *config);

/* The layer whose key/value states layer `layer` reuses (itself when it computes its own). */
int g3n_text_config_kv_source_layer (const G3nTextConfig *c, int layer);

G_END_DECLS

#endif
