/* model.c — loading a checkpoint folder and binding the tensors the model needs, with validation.
 *
 * Nothing is computed before every required tensor has been found with the shape the config implies and a
 * float dtype; tensors the model does not use (e.g. the k/v projections real checkpoints carry for
 * KV-shared layers) are ignored.
 */
#include "model.h"
#include "kernels/threadpool.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

G_DEFINE_QUARK (g3n-error-quark, g3n_error)

typedef struct {
  G3nModel *model;
  const char *prefix;
  GError **error;
} Binder;

static const G3nTensor *G_GNUC_PRINTF (5, 0)
find_checked (Binder *b, int ndim, const int64_t *shape, gboolean optional, const char *fmt, va_list ap)
{
  if (*b->error)
    return NULL;
  g_autofree char *rel = g_strdup_vprintf (fmt, ap);
  g_autofree char *name = g_strconcat (rel[0] == '/' ? "" : b->prefix, rel[0] == '/' ? rel + 1 : rel, NULL);
  const G3nTensor *t = g3n_tensor_store_find (b->model->store, name);
  if (!t && optional)
    return NULL;
  return g3n_tensor_expect (t, name, b->model->path, ndim, shape, b->error) ? t : NULL;
}

/* Names starting with '/' are absolute; others are relative to the binder's prefix. */
static gboolean G_GNUC_PRINTF (5, 6)
bind_matrix (Binder *b, G3nMatrix *out, int rows, int cols, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  const G3nTensor *t = find_checked (b, 2, (int64_t[]) { rows, cols }, FALSE, fmt, ap);
  va_end (ap);
  if (t)
    *out = g3n_matrix_from_tensor (t);
  return t != NULL;
}

static const float *
f32_copy (G3nModel *m, const G3nTensor *t)
{
  gsize n = (gsize) g3n_tensor_numel (t);
  float *v = g_new (float, n ? n : 1);
  g3n_to_f32 (t->dtype, t->data, v, n);
  g_ptr_array_add (m->f32_copies, v);
  return v;
}

/* A vector or small matrix of n0 (x n1) values, kept as an fp32 copy. n1 = 0 means 1-D. */
static gboolean G_GNUC_PRINTF (5, 6)
bind_small (Binder *b, const float **out, int n0, int n1, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  const G3nTensor *t = find_checked (b, n1 ? 2 : 1, (int64_t[]) { n0, n1 }, FALSE, fmt, ap);
  va_end (ap);
  if (t)
    *out = f32_copy (b->model, t);
  return t != NULL;
}

static gboolean
bind_text_layer (Binder *b, const G3nTextConfig *c, int i, G3nTextLayer *l)
{
  int H = c->hidden_size, hd = c->head_dim, A = c->altup_num_inputs, I = c->intermediate_size[i];
  int P = c->hidden_size_per_layer_input;
  bind_matrix (b, &l->q_proj, c->num_attention_heads * hd, H, "layers.%d.self_attn.q_proj.weight", i);
  bind_matrix (b, &l->o_proj, H, c->num_attention_heads * hd, "layers.%d.self_attn.o_proj.weight", i);
  bind_small (b, &l->q_norm, hd, 0, "layers.%d.self_attn.q_norm.weight", i);
  if (g3n_text_config_kv_source_layer (c, i) == i) {
    bind_matrix (b, &l->k_proj, c->num_key_value_heads * hd, H, "layers.%d.self_attn.k_proj.weight", i);
    bind_matrix (b, &l->v_proj, c->num_key_value_heads * hd, H, "layers.%d.self_attn.v_proj.weight", i);
    bind_small (b, &l->k_norm, hd, 0, "layers.%d.self_attn.k_norm.weight", i);
  }
  bind_matrix (b, &l->gate_proj, I, H, "layers.%d.mlp.gate_proj.weight", i);
  bind_matrix (b, &l->up_proj, I, H, "layers.%d.mlp.up_proj.weight", i);
  bind_matrix (b, &l->down_proj, H, I, "layers.%d.mlp.down_proj.weight", i);
  bind_small (b, &l->input_layernorm, H, 0, "layers.%d.input_layernorm.weight", i);
  bind_small (b, &l->post_attention_layernorm, H, 0, "layers.%d.post_attention_layernorm.weight", i);
  bind_small (b, &l->pre_feedforward_layernorm, H, 0, "layers.%d.pre_feedforward_layernorm.weight", i);
  bind_small (b, &l->post_feedforward_layernorm, H, 0, "layers.%d.post_feedforward_layernorm.weight", i);
  bind_small (b, &l->altup_correct_output_scale, H, 0, "layers.%d.altup.correct_output_scale", i);
  bind_small (b, &l->altup_correction_coefs, A, A, "layers.%d.altup.correction_coefs.weight", i);
  bind_small (b, &l->altup_prediction_coefs, A * A, A, "layers.%d.altup.prediction_coefs.weight", i);
  bind_small (b, &l->altup_router_norm, H, 0, "layers.%d.altup.router_norm.weight", i);
  bind_matrix (b, &l->altup_modality_router, A, H, "layers.%d.altup.modality_router.weight", i);
  bind_matrix (b, &l->laurel_left, c->laurel_rank, H, "layers.%d.laurel.linear_left.weight", i);
  bind_matrix (b, &l->laurel_right, H, c->laurel_rank, "layers.%d.laurel.linear_right.weight", i);
  bind_small (b, &l->laurel_norm, H, 0, "layers.%d.laurel.post_laurel_norm.weight", i);
  bind_matrix (b, &l->per_layer_input_gate, P, H, "layers.%d.per_layer_input_gate.weight", i);
  bind_matrix (b, &l->per_layer_projection, H, P, "layers.%d.per_layer_projection.weight", i);
  bind_small (b, &l->post_per_layer_input_norm, H, 0, "layers.%d.post_per_layer_input_norm.weight", i);
  return *b->error == NULL;
}

/* The text model's tensors sit under model.language_model. (Gemma3nForConditionalGeneration, the real
 * checkpoints) or model. (a Gemma3nForCausalLM save). */
static const char *
text_prefix (const G3nTensorStore *store)
{
  static const char *const prefixes[] = { "model.language_model.", "model.", "language_model.model." };
  for (guint i = 0; i < G_N_ELEMENTS (prefixes); i++) {
    g_autofree char *name = g_strconcat (prefixes[i], "embed_tokens.weight", NULL);
    if (g3n_tensor_store_find (store, name))
      return prefixes[i];
  }
  return prefixes[0];
}

static gboolean
bind_text (G3nModel *m, GError **error)
{
  const G3nTextConfig *c = &m->config->text;
  G3nTextWeights *w = &m->text;
  Binder b = { m, text_prefix (m->store), error };
  int H = c->hidden_size, L = c->num_hidden_layers, P = c->hidden_size_per_layer_input, A = c->altup_num_inputs;
  bind_matrix (&b, &w->embed_tokens, c->vocab_size, H, "embed_tokens.weight");
  bind_matrix (&b, &w->embed_tokens_per_layer, c->vocab_size_per_layer_input, L * P, "embed_tokens_per_layer.weight");
  bind_matrix (&b, &w->per_layer_model_projection, L * P, H, "per_layer_model_projection.weight");
  bind_small (&b, &w->per_layer_projection_norm, P, 0, "per_layer_projection_norm.weight");
  bind_small (&b, &w->norm, H, 0, "norm.weight");
  w->altup_projections = g_new0 (G3nMatrix, A);
  w->altup_unembed_projections = g_new0 (G3nMatrix, A);
  for (int i = 0; i + 1 < A; i++) {
    bind_matrix (&b, &w->altup_projections[i], H, H, "altup_projections.%d.weight", i);
    bind_matrix (&b, &w->altup_unembed_projections[i], H, H, "altup_unembed_projections.%d.weight", i);
  }
  w->lm_head = w->embed_tokens; /* Gemma ties the LM head to the input embedding */
  w->layers = g_new0 (G3nTextLayer, L);
  for (int i = 0; i < L && !*error; i++)
    bind_text_layer (&b, c, i, &w->layers[i]);
  return *error == NULL;
}

/* embed_vision / embed_audio are optional as a whole (a text-only checkpoint omits them) but complete
 * when present. */
static gboolean
bind_embedder (G3nModel *m, const char *name, int vocab, int mm_hidden, G3nEmbedderWeights *e, GError **error)
{
  g_autofree char *probe = g_strdup_printf ("model.%s.embedding.weight", name);
  if (!g3n_tensor_store_find (m->store, probe))
    return TRUE;
  Binder b = { m, "model.", error };
  int H = m->config->text.hidden_size;
  bind_matrix (&b, &e->embedding, vocab, mm_hidden, "%s.embedding.weight", name);
  bind_small (&b, &e->hard_embedding_norm, mm_hidden, 0, "%s.hard_embedding_norm.weight", name);
  bind_small (&b, &e->soft_embedding_norm, mm_hidden, 0, "%s.soft_embedding_norm.weight", name);
  bind_matrix (&b, &e->embedding_projection, H, mm_hidden, "%s.embedding_projection.weight", name);
  e->present = *error == NULL;
  return e->present;
}

static G3nModel *load_checked (const char *dir, GError **error);

G3nModelParams
g3n_model_default_params (void)
{
  return (G3nModelParams) { .quant = G3N_QUANT_NONE };
}

/* Everything that changes the weights happens here, before the model is handed out: afterwards it is
 * read-only, so any number of contexts and encoders on any threads can share it. */
static gboolean
prepare_weights (G3nModel *m, const G3nModelParams *p, GError **error)
{
  int previous = g3n_kernels_push_threads (p->n_threads);
  gboolean ok = (p->quant == G3N_QUANT_NONE && !p->quant_cache)
                || g3n_model_quantize_cached (m, p->quant, p->quant_cache, error);
  if (ok)
    g3n_model_lay_out_sparse_layers (m);
  g3n_kernels_pop_threads (previous);
  return ok;
}

G3nModel *
g3n_model_load_with_params (const char *dir, const G3nModelParams *params, GError **error)
{
  G3nModelParams p = params ? *params : g3n_model_default_params ();
  /* The binders test *error to stop at the first problem, so they need a real one even if the caller
   * passed NULL. */
  GError *local = NULL;
  G3nModel *m = load_checked (dir, &local);
  if (m && !prepare_weights (m, &p, &local))
    g_clear_pointer (&m, g3n_model_unref);
  if (local)
    g_propagate_error (error, local);
  return m;
}

G3nModel *
g3n_model_load (const char *dir, GError **error)
{
  return g3n_model_load_with_params (dir, NULL, error);
}

static G3nModel *
load_checked (const char *dir, GError **error)
{
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: model folder does not exist", dir);
    return NULL;
  }
  G3nModel *m = g_new0 (G3nModel, 1);
  m->ref_count = 1;
  m->path = g_strdup (dir);
  m->f32_copies = g_ptr_array_new_with_free_func (g_free);
  g_mutex_init (&m->layout_lock);
  g_mutex_init (&m->tower_lock);
  m->config = g3n_config_load (dir, error);
  if (m->config)
    m->store = g3n_tensor_store_open (dir, error);
  if (!m->store || !bind_text (m, error)
      || !bind_embedder (m, "embed_vision", m->config->vision.vocab_size, m->config->vision.hidden_size,
                         &m->embed_vision, error)
      || !bind_embedder (m, "embed_audio", m->config->audio.vocab_size, m->config->audio.hidden_size,
                         &m->embed_audio, error)) {
    g3n_model_unref (m);
    return NULL;
  }
  return m;
}

G3nModel *
g3n_model_ref (G3nModel *m)
{
  g_atomic_int_inc (&m->ref_count);
  return m;
}

void
g3n_model_unref (G3nModel *m)
{
  if (!m || !g_atomic_int_dec_and_test (&m->ref_count))
    return;
  for (int k = 0; k < G3N_N_TOWERS; k++)
    if (m->towers[k])
      m->tower_destroy[k] (m->towers[k]);
  g_mutex_clear (&m->tower_lock);
  g_free (m->text.layers);
  g_free (m->text.altup_projections);
  g_free (m->text.altup_unembed_projections);
  g_ptr_array_free (m->f32_copies, TRUE);
  if (m->quant_buffers)
    g_ptr_array_free (m->quant_buffers, TRUE);
  g3n_safetensors_free (m->quant_file);
  g_free ((gpointer) m->identity);
  g3n_tensor_store_free (m->store);
  g3n_config_free (m->config);
  g_mutex_clear (&m->layout_lock);
  g_free (m->path);
  g_free (m);
}

gpointer
g3n_model_shared_tower (G3nModel *m, G3nTowerKind kind, gpointer (*make) (G3nModel *m, GError **error),
                        GDestroyNotify destroy, GError **error)
{
  g_mutex_lock (&m->tower_lock);
  if (!m->towers[kind]) {
    m->towers[kind] = make (m, error);
    m->tower_destroy[kind] = destroy;
  }
  gpointer tower = m->towers[kind];
  g_mutex_unlock (&m->tower_lock);
  return tower;
}

const char *
g3n_model_path (const G3nModel *m)
{
  return m->path;
}

int
g3n_model_n_vocab (const G3nModel *m)
{
  return m->config->text.vocab_size;
}

int
g3n_model_n_embd (const G3nModel *m)
{
  return m->config->text.hidden_size;
}

int
g3n_model_n_layers (const G3nModel *m)
{
  return m->config->text.num_hidden_layers;
}

int
g3n_model_n_altup (const G3nModel *m)
{
  return m->config->text.altup_num_inputs;
}

int
g3n_model_n_embd_per_layer (const G3nModel *m)
{
  return m->config->text.hidden_size_per_layer_input;
}

int
g3n_model_bos_token (const G3nModel *m)
{
  return m->config->text.bos_token_id;
}

gboolean
g3n_model_is_eos (const G3nModel *m, int32_t token)
{
  for (int i = 0; i < m->config->text.n_eos_token_ids; i++)
    if (m->config->text.eos_token_ids[i] == token)
      return TRUE;
  return FALSE;
}

/* SHA-256 over the tensor layout, config.json and (when quantised) the weight type. */
static char *
compute_identity (G3nModel *m, G3nQuantType quant)
{
  g_autofree char *layout = g3n_tensor_store_digest (m->store);
  g_autofree char *cfg_path = g_file_test (m->path, G_FILE_TEST_IS_DIR)
                                  ? g_build_filename (m->path, "config.json", NULL) : g_strdup (m->path);
  g_autofree char *cfg = NULL;
  gsize len = 0;
  g_file_get_contents (cfg_path, &cfg, &len, NULL);
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, (const guchar *) layout, -1);
  if (cfg)
    g_checksum_update (sum, (const guchar *) cfg, (gssize) len);
  if (quant != G3N_QUANT_NONE) /* a quantised model computes (and caches) other values */
    g_checksum_update (sum, (const guchar *) g3n_quant_type_name (quant), -1);
  return g_strdup (g_checksum_get_string (sum));
}

const char *
g3n_model_identity (G3nModel *m)
{
  if (g_once_init_enter (&m->identity))
    g_once_init_leave (&m->identity, compute_identity (m, m->quant));
  return m->identity;
}

char *
g3n_model_source_identity (G3nModel *m)
{
  return compute_identity (m, G3N_QUANT_NONE);
}

/* ------------------------------------------------------------------------------ quantisation */

const char *
g3n_quant_type_name (G3nQuantType type)
{
  switch (type) {
  case G3N_QUANT_Q8_0:
    return "q8_0";
  case G3N_QUANT_Q4_0:
    return "q4_0";
  default:
    return "bf16";
  }
}

gboolean
g3n_quant_type_from_string (const char *name, G3nQuantType *type, GError **error)
{
  static const struct {
    const char *name;
    G3nQuantType type;
  } names[] = { { "bf16", G3N_QUANT_NONE }, { "none", G3N_QUANT_NONE }, { "q8_0", G3N_QUANT_Q8_0 },
                { "q8", G3N_QUANT_Q8_0 },   { "q4_0", G3N_QUANT_Q4_0 }, { "q4", G3N_QUANT_Q4_0 } };
  for (guint i = 0; name && i < G_N_ELEMENTS (names); i++)
    if (g_ascii_strcasecmp (name, names[i].name) == 0) {
      *type = names[i].type;
      return TRUE;
    }
  g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "unknown weight type '%s' (expected bf16, q8_0 or q4_0)",
               name ? name : "(null)");
  return FALSE;
}

G3nQuantType
g3n_model_quant_type (const G3nModel *m)
{
  return m->quant;
}

static void
clear_text_matrix (gpointer p)
{
  g_free (((G3nTextMatrix *) p)->name);
}

static void G_GNUC_PRINTF (4, 5)
add_matrix (GArray *list, G3nMatrix *mat, gboolean by_input, const char *fmt, ...)
{
  if (!mat->data) /* k/v are unset in KV-shared layers */
    return;
  va_list ap;
  va_start (ap, fmt);
  G3nTextMatrix tm = { mat, g_strdup_vprintf (fmt, ap), by_input, FALSE };
  va_end (ap);
  tm.quantizable = (by_input ? mat->rows : mat->cols) >= G3N_QBLOCK;
  g_array_append_val (list, tm);
}

/* The text decoder's matrices that quantisation replaces: everything large. The AltUp router (A rows) stays
 * as stored; matrices narrower than one block (the tiny fixtures' LAuReL / per-layer projections) too
 * (quantizable = FALSE). down_proj of the activation-sparse layers is stored by input: decode then reads
 * ~5% of it. */
GArray *
g3n_model_text_matrices (G3nModel *m)
{
  const G3nTextConfig *c = &m->config->text;
  G3nTextWeights *w = &m->text;
  const char *p = text_prefix (m->store);
  GArray *list = g_array_new (FALSE, FALSE, sizeof (G3nTextMatrix));
  g_array_set_clear_func (list, clear_text_matrix);
  add_matrix (list, &w->lm_head, FALSE, "%sembed_tokens.weight", p); /* tied: a copy of the embedding */
  add_matrix (list, &w->per_layer_model_projection, FALSE, "%sper_layer_model_projection.weight", p);
  for (int i = 0; i + 1 < c->altup_num_inputs; i++) {
    add_matrix (list, &w->altup_projections[i], FALSE, "%saltup_projections.%d.weight", p, i);
    add_matrix (list, &w->altup_unembed_projections[i], FALSE, "%saltup_unembed_projections.%d.weight", p, i);
  }
  static const struct {
    gsize offset;
    const char *name;
  } per_layer[] = {
    { G_STRUCT_OFFSET (G3nTextLayer, q_proj), "self_attn.q_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, k_proj), "self_attn.k_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, v_proj), "self_attn.v_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, o_proj), "self_attn.o_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, gate_proj), "mlp.gate_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, up_proj), "mlp.up_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, down_proj), "mlp.down_proj" },
    { G_STRUCT_OFFSET (G3nTextLayer, laurel_left), "laurel.linear_left" },
    { G_STRUCT_OFFSET (G3nTextLayer, laurel_right), "laurel.linear_right" },
    { G_STRUCT_OFFSET (G3nTextLayer, per_layer_input_gate), "per_layer_input_gate" },
    { G_STRUCT_OFFSET (G3nTextLayer, per_layer_projection), "per_layer_projection" },
  };
  for (int i = 0; i < c->num_hidden_layers; i++)
    for (guint k = 0; k < G_N_ELEMENTS (per_layer); k++) {
      gboolean sparse_down = per_layer[k].offset == G_STRUCT_OFFSET (G3nTextLayer, down_proj)
                             && c->activation_sparsity[i] > 0;
      add_matrix (list, G_STRUCT_MEMBER_P (&w->layers[i], per_layer[k].offset), sparse_down, "%slayers.%d.%s.weight",
                  p, i, per_layer[k].name);
    }
  return list;
}

/* Drops the mapped pages wholly inside [p, p + n) from this process: they are clean file pages, read back
 * from the file should anything touch them again (an embedding lookup in the tied LM head's rows). */
static void
release_pages (const void *p, gsize n)
{
  gsize page = (gsize) sysconf (_SC_PAGESIZE);
  guintptr begin = ((guintptr) p + page - 1) & ~(guintptr) (page - 1);
  guintptr end = ((guintptr) p + n) & ~(guintptr) (page - 1);
  if (end > begin)
    madvise ((void *) begin, end - begin, MADV_DONTNEED);
}

/* The sparse layers' down_proj by input (see G3nMatrix.by_input) lets decode read only the rows of the ~5%
 * non-zero activations: E2B's first 10 layers then read 16 MB instead of 335 MB of it per token. The copy
 * replaces the mapped pages (released), so memory stays the same. */
void
g3n_model_lay_out_sparse_layers (G3nModel *m)
{
  g_mutex_lock (&m->layout_lock);
  GArray *list = m->laid_out ? NULL : g3n_model_text_matrices (m); /* its by_input marks them */
  for (guint i = 0; list && i < list->len; i++) {
    G3nMatrix *mat = g_array_index (list, G3nTextMatrix, i).matrix, t;
    if (!g_array_index (list, G3nTextMatrix, i).by_input || mat->by_input || mat->quant != G3N_QUANT_NONE)
      continue;
    if (!m->quant_buffers)
      m->quant_buffers = g_ptr_array_new_with_free_func (g_free);
    g_ptr_array_add (m->quant_buffers, g3n_matrix_transpose_by_input (mat, &t));
    release_pages (mat->data, g3n_matrix_bytes (mat));
    *mat = t;
  }
  if (list)
    g_array_unref (list);
  m->laid_out = TRUE;
  g_mutex_unlock (&m->layout_lock);
}

void
g3n_model_replace_matrix (G3nModel *m, G3nTextMatrix *tm, const G3nMatrix *q)
{
  /* a copy laid out by input at load is ours: freed; mapped checkpoint pages are released */
  if (!m->quant_buffers || !g_ptr_array_remove_fast (m->quant_buffers, (gpointer) tm->matrix->data))
    release_pages (tm->matrix->data, g3n_matrix_bytes (tm->matrix));
  *tm->matrix = *q;
}

void
g3n_model_set_quant (G3nModel *m, G3nQuantType type)
{
  m->quant = type;
  g_free ((gpointer) m->identity); /* recomputed with the type */
  m->identity = NULL;
}

gboolean
g3n_model_quantize (G3nModel *m, G3nQuantType type, GError **error)
{
  if (type == m->quant)
    return TRUE;
  if (m->quant != G3N_QUANT_NONE || (type != G3N_QUANT_Q8_0 && type != G3N_QUANT_Q4_0)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "%s: cannot quantise weights of type %s to %s",
                 m->path, g3n_quant_type_name (m->quant), g3n_quant_type_name (type));
    return FALSE;
  }
  if (!m->quant_buffers)
    m->quant_buffers = g_ptr_array_new_with_free_func (g_free);
  GArray *list = g3n_model_text_matrices (m);
  for (guint i = 0; i < list->len; i++) {
    G3nTextMatrix *tm = &g_array_index (list, G3nTextMatrix, i);
    if (!tm->quantizable)
      continue;
    G3nMatrix q;
    g_ptr_array_add (m->quant_buffers, tm->by_input ? g3n_matrix_quantize_by_input (tm->matrix, type, &q)
                                                    : g3n_matrix_quantize (tm->matrix, type, &q));
    g3n_model_replace_matrix (m, tm, &q);
  }
  g_array_unref (list);
  g3n_model_set_quant (m, type);
  return TRUE;
}

gsize
g3n_model_text_weight_bytes (const G3nModel *m)
{
  GArray *list = g3n_model_text_matrices ((G3nModel *) m);
  gsize total = 0;
  for (guint i = 0; i < list->len; i++)
    total += g3n_matrix_bytes (g_array_index (list, G3nTextMatrix, i).matrix);
  g_array_unref (list);
  return total;
}

gsize
g3n_model_decode_bytes_per_token (const G3nModel *m)
{
  const G3nTextConfig *c = &m->config->text;
  double total = (double) g3n_model_text_weight_bytes (m);
  for (int l = 0; l < c->num_hidden_layers; l++) {
    const G3nTextLayer *layer = &m->text.layers[l];
    if (c->activation_sparsity[l] > 0) /* see mlp() in text-decoder.c */
      total -= c->activation_sparsity[l]
               * (double) (g3n_matrix_bytes (&layer->up_proj) + g3n_matrix_bytes (&layer->down_proj));
  }
  return (gsize) total;
}

/* ---------------------------------------------------------------- what callers read of the config */

int
g3n_model_n_vocab_per_layer (const G3nModel *m)
{
  return m->config->text.vocab_size_per_layer_input;
}

gboolean
g3n_model_has_audio_tower (const G3nModel *m)
{
  return m->config->audio.present;
}

gboolean
g3n_model_has_vision_tower (const G3nModel *m)
{
  return m->config->vision.present;
}

gboolean
g3n_model_has_audio_embedder (const G3nModel *m)
{
  return m->embed_audio.present;
}

gboolean
g3n_model_has_vision_embedder (const G3nModel *m)
{
  return m->embed_vision.present;
}

int32_t
g3n_model_image_token (const G3nModel *m)
{
  return m->config->image_token_id;
}

int32_t
g3n_model_audio_token (const G3nModel *m)
{
  return m->config->audio_token_id;
}

int
g3n_model_image_soft_tokens (const G3nModel *m)
{
  return m->config->vision_soft_tokens_per_image;
}

int
g3n_model_audio_soft_tokens (const G3nModel *m)
{
  return m->config->audio_soft_tokens_per_image;
}
