/* model-config.c — config.json into G3nConfig.
 *
 * Two generations of keys are read: Google's checkpoints (transformers 4.5x: `rope_theta`,
 * `rope_local_base_freq`, `torch_dtype`, an int `intermediate_size`) and transformers 5 (`rope_parameters`
 * per layer type, `dtype`, a per-layer `intermediate_size` list). Absent keys take the defaults of
 * transformers' Gemma3n*Config, including the derived ones (layer_types from the 4:1 pattern, the
 * activation sparsity pattern). Every value is range-checked so later code can trust it.
 */
#include "model-config.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  const char *origin; /* file name, for messages */
  const char *section; /* "text_config", ... */
  GError **error;
} Reader;

static gboolean G_GNUC_PRINTF (2, 3)
bad (Reader *r, const char *fmt, ...)
{
  if (r->error && *r->error)
    return FALSE;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (r->error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: %s%s%s", r->origin, r->section ? r->section : "",
               r->section ? "." : "", msg);
  return FALSE;
}

static JsonNode *
member (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;
  return (n && !JSON_NODE_HOLDS_NULL (n)) ? n : NULL;
}

static gboolean
node_is_number (JsonNode *n)
{
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
}

static gboolean
node_to_int (JsonNode *n, gint64 *out)
{
  if (!node_is_number (n))
    return FALSE;
  if (json_node_get_value_type (n) == G_TYPE_INT64) {
    *out = json_node_get_int (n);
    return TRUE;
  }
  double d = json_node_get_double (n);
  if (d != floor (d) || fabs (d) > 1e15)
    return FALSE;
  *out = (gint64) d;
  return TRUE;
}

/* An integer in [lo, hi]; `def` when the key is absent or null. */
static int
get_int (Reader *r, JsonObject *o, const char *key, int def, gint64 lo, gint64 hi)
{
  JsonNode *n = member (o, key);
  gint64 v = def;
  if (n && !node_to_int (n, &v))
    return bad (r, "%s must be an integer", key), def;
  if (v < lo || v > hi)
    return bad (r, "%s = %" G_GINT64_FORMAT " is out of range [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", key, v,
                lo, hi),
           def;
  return (int) v;
}

static double
get_double (Reader *r, JsonObject *o, const char *key, double def)
{
  JsonNode *n = member (o, key);
  if (!n)
    return def;
  if (!node_is_number (n))
    return bad (r, "%s must be a number", key), def;
  double v = json_node_get_value_type (n) == G_TYPE_INT64 ? (double) json_node_get_int (n) : json_node_get_double (n);
  if (!isfinite (v))
    return bad (r, "%s must be finite", key), def;
  return v;
}

static gboolean
get_bool (Reader *r, JsonObject *o, const char *key, gboolean def)
{
  JsonNode *n = member (o, key);
  if (!n)
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return bad (r, "%s must be true or false", key), def;
  return json_node_get_boolean (n);
}

static const char *
get_string (Reader *r, JsonObject *o, const char *key, const char *def)
{
  JsonNode *n = member (o, key);
  if (!n)
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return bad (r, "%s must be a string", key), def;
  return json_node_get_string (n);
}

static JsonObject *
get_object (Reader *r, JsonObject *o, const char *key)
{
  JsonNode *n = member (o, key);
  if (n && !JSON_NODE_HOLDS_OBJECT (n))
    return bad (r, "%s must be an object", key), NULL;
  return n ? json_node_get_object (n) : NULL;
}

/* A per-layer list, or a scalar broadcast to every layer (the older int intermediate_size). */
static gboolean
get_per_layer_numbers (Reader *r, JsonObject *o, const char *key, int n_layers, double *out, gboolean *present)
{
  JsonNode *n = member (o, key);
  *present = n != NULL;
  if (!n)
    return TRUE;
  if (node_is_number (n)) {
    double v = get_double (r, o, key, 0);
    for (int i = 0; i < n_layers; i++)
      out[i] = v;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return bad (r, "%s must be a number or a list", key);
  JsonArray *a = json_node_get_array (n);
  if ((int) json_array_get_length (a) != n_layers)
    return bad (r, "%s has %u entries but num_hidden_layers is %d", key, json_array_get_length (a), n_layers);
  for (int i = 0; i < n_layers; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!node_is_number (e))
      return bad (r, "%s[%d] is not a number", key, i);
    out[i] = json_node_get_value_type (e) == G_TYPE_INT64 ? (double) json_node_get_int (e) : json_node_get_double (e);
  }
  return TRUE;
}

static gboolean
read_layer_types (Reader *r, JsonObject *o, G3nTextConfig *t)
{
  JsonNode *n = member (o, "layer_types");
  for (int i = 0; i < t->num_hidden_layers; i++)
    t->is_sliding[i] = (i + 1) % 5 != 0; /* transformers' default: every fifth layer is global */
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n) || (int) json_array_get_length (json_node_get_array (n)) != t->num_hidden_layers)
    return bad (r, "layer_types must be a list of num_hidden_layers (%d) strings", t->num_hidden_layers);
  JsonArray *a = json_node_get_array (n);
  for (int i = 0; i < t->num_hidden_layers; i++) {
    JsonNode *e = json_array_get_element (a, i);
    const char *s = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                        ? json_node_get_string (e) : "";
    if (strcmp (s, "sliding_attention") == 0)
      t->is_sliding[i] = TRUE;
    else if (strcmp (s, "full_attention") == 0)
      t->is_sliding[i] = FALSE;
    else
      return bad (r, "layer_types[%d] = '%s' (expected sliding_attention or full_attention)", i, s);
  }
  return TRUE;
}

/* rope_parameters (transformers 5) wins; else rope_theta / rope_local_base_freq (older); else defaults. */
static gboolean
read_rope (Reader *r, JsonObject *o, G3nTextConfig *t)
{
  t->rope_theta_global = get_double (r, o, "rope_theta", 1000000.0);
  t->rope_theta_local = get_double (r, o, "rope_local_base_freq", 10000.0);
  if (member (o, "rope_scaling"))
    return bad (r, "rope_scaling is not supported (only default RoPE)");
  JsonObject *params = get_object (r, o, "rope_parameters");
  const char *types[2] = { "full_attention", "sliding_attention" };
  double *thetas[2] = { &t->rope_theta_global, &t->rope_theta_local };
  for (int i = 0; params && i < 2; i++) {
    JsonObject *p = get_object (r, params, types[i]);
    if (!p)
      continue;
    const char *kind = get_string (r, p, "rope_type", "default");
    if (strcmp (kind, "default") != 0)
      return bad (r, "rope_parameters.%s.rope_type '%s' is not supported (only default)", types[i], kind);
    *thetas[i] = get_double (r, p, "rope_theta", *thetas[i]);
  }
  if (t->rope_theta_global <= 1.0 || t->rope_theta_local <= 1.0)
    return bad (r, "RoPE thetas must be > 1");
  return TRUE;
}

static void
read_eos (Reader *r, JsonObject *o, G3nTextConfig *t)
{
  JsonNode *n = member (o, "eos_token_id");
  t->eos_token_ids[0] = 1;
  t->n_eos_token_ids = 1;
  if (!n)
    return;
  if (JSON_NODE_HOLDS_ARRAY (n)) {
    JsonArray *a = json_node_get_array (n);
    t->n_eos_token_ids = 0;
    for (guint i = 0; i < json_array_get_length (a) && i < G_N_ELEMENTS (t->eos_token_ids); i++) {
      gint64 v;
      if (!node_to_int (json_array_get_element (a, i), &v))
        return (void) bad (r, "eos_token_id[%u] is not an integer", i);
      t->eos_token_ids[t->n_eos_token_ids++] = (int) v;
    }
  } else {
    t->eos_token_ids[0] = get_int (r, o, "eos_token_id", 1, 0, G_MAXINT32);
  }
}

static gboolean
read_text (Reader *r, JsonObject *o, G3nTextConfig *t)
{
  r->section = "text_config";
  t->hidden_size = get_int (r, o, "hidden_size", 2048, 1, 1 << 16);
  t->num_hidden_layers = get_int (r, o, "num_hidden_layers", 35, 1, 1024);
  t->num_attention_heads = get_int (r, o, "num_attention_heads", 8, 1, 1024);
  t->num_key_value_heads = get_int (r, o, "num_key_value_heads", 2, 1, 1024);
  t->head_dim = get_int (r, o, "head_dim", 256, 2, 4096);
  t->vocab_size = get_int (r, o, "vocab_size", 262400, 1, 1 << 24);
  t->vocab_size_per_layer_input = get_int (r, o, "vocab_size_per_layer_input", 262144, 1, 1 << 24);
  t->hidden_size_per_layer_input = get_int (r, o, "hidden_size_per_layer_input", 256, 1, 1 << 16);
  t->sliding_window = get_int (r, o, "sliding_window", 512, 1, G_MAXINT32);
  t->num_kv_shared_layers = get_int (r, o, "num_kv_shared_layers", 15, 0, 1024);
  t->altup_num_inputs = get_int (r, o, "altup_num_inputs", 4, 1, 64);
  t->altup_active_idx = get_int (r, o, "altup_active_idx", 0, 0, 63);
  t->altup_coef_clip = get_double (r, o, "altup_coef_clip", 120.0);
  t->altup_correct_scale = get_bool (r, o, "altup_correct_scale", TRUE);
  t->laurel_rank = get_int (r, o, "laurel_rank", 64, 1, 1 << 16);
  t->final_logit_softcapping = get_double (r, o, "final_logit_softcapping", 30.0);
  t->rms_norm_eps = get_double (r, o, "rms_norm_eps", 1e-6);
  t->max_position_embeddings = get_int (r, o, "max_position_embeddings", 32768, 1, G_MAXINT32);
  t->bos_token_id = get_int (r, o, "bos_token_id", 2, 0, G_MAXINT32);
  t->pad_token_id = get_int (r, o, "pad_token_id", 0, 0, G_MAXINT32);
  read_eos (r, o, t);
  if (r->error && *r->error)
    return FALSE;
  if (o && json_object_has_member (o, "final_logit_softcapping") && !member (o, "final_logit_softcapping"))
    t->final_logit_softcapping = 0; /* explicit null: no capping */
  if (member (o, "attn_logit_softcapping"))
    return bad (r, "attn_logit_softcapping is not supported by Gemma 3n");
  const char *act = get_string (r, o, "hidden_activation", "gelu_pytorch_tanh");
  if (act && strcmp (act, "gelu_pytorch_tanh") != 0)
    return bad (r, "hidden_activation '%s' is not supported (gelu_pytorch_tanh)", act);
  if (t->altup_active_idx >= t->altup_num_inputs)
    return bad (r, "altup_active_idx %d >= altup_num_inputs %d", t->altup_active_idx, t->altup_num_inputs);
  if (t->num_attention_heads % t->num_key_value_heads != 0)
    return bad (r, "num_attention_heads %d is not a multiple of num_key_value_heads %d", t->num_attention_heads,
                t->num_key_value_heads);
  if (t->head_dim % 2 != 0)
    return bad (r, "head_dim %d must be even for RoPE", t->head_dim);
  if (t->num_kv_shared_layers >= t->num_hidden_layers)
    return bad (r, "num_kv_shared_layers %d must be below num_hidden_layers %d", t->num_kv_shared_layers,
                t->num_hidden_layers);
  if (t->rms_norm_eps < 0)
    return bad (r, "rms_norm_eps must be >= 0");

  int L = t->num_hidden_layers;
  t->intermediate_size = g_new0 (int, L);
  t->activation_sparsity = g_new0 (float, L);
  t->is_sliding = g_new0 (gboolean, L);
  g_autofree double *tmp = g_new0 (double, L);
  gboolean present;
  if (!get_per_layer_numbers (r, o, "intermediate_size", L, tmp, &present))
    return FALSE;
  for (int i = 0; i < L; i++) {
    double v = present ? tmp[i] : 16384;
    if (v != floor (v) || v < 1 || v > (1 << 20))
      return bad (r, "intermediate_size[%d] = %g is not a valid width", i, v);
    t->intermediate_size[i] = (int) v;
  }
  if (!get_per_layer_numbers (r, o, "activation_sparsity_pattern", L, tmp, &present))
    return FALSE;
  int n_sparse = L > 10 ? 10 : 0; /* transformers' default pattern */
  for (int i = 0; i < L; i++) {
    double v = present ? tmp[i] : (i < n_sparse ? 0.95 : 0.0);
    if (!(v >= 0.0 && v < 1.0))
      return bad (r, "activation_sparsity_pattern[%d] = %g must be in [0, 1)", i, v);
    t->activation_sparsity[i] = (float) v;
  }
  if (!read_layer_types (r, o, t) || !read_rope (r, o, t))
    return FALSE;
  for (int i = 0; i < L; i++)
    if (g3n_text_config_kv_source_layer (t, i) < 0)
      return bad (r, "layer %d shares key/value states but no earlier unshared layer has its attention type", i);
  return TRUE;
}

int
g3n_text_config_kv_source_layer (const G3nTextConfig *c, int layer)
{
  int first_shared = c->num_hidden_layers - c->num_kv_shared_layers;
  if (first_shared <= 0 || layer < first_shared)
    return layer;
  for (int j = first_shared - 1; j >= 0; j--)
    if (c->is_sliding[j] == c->is_sliding[layer])
      return j;
  return -1;
}

static void
read_pair (Reader *r, JsonObject *o, const char *key, int out[2], const int def[2])
{
  JsonNode *n = member (o, key);
  out[0] = def[0];
  out[1] = def[1];
  if (!n)
    return;
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  gint64 v0, v1;
  if (!a || json_array_get_length (a) != 2 || !node_to_int (json_array_get_element (a, 0), &v0)
      || !node_to_int (json_array_get_element (a, 1), &v1) || v0 < 1 || v1 < 1 || v0 > 65536 || v1 > 65536)
    return (void) bad (r, "%s must be two positive integers", key);
  out[0] = (int) v0;
  out[1] = (int) v1;
}

static void
read_pair_pair (Reader *r, JsonObject *o, const char *key, int out[2][2], int def)
{
  JsonNode *n = member (o, key);
  for (int i = 0; i < 2; i++)
    out[i][0] = out[i][1] = def;
  if (!n)
    return;
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  if (!a || json_array_get_length (a) != 2)
    return (void) bad (r, "%s must be a list of two [h, w] pairs", key);
  for (int i = 0; i < 2; i++) {
    JsonNode *e = json_array_get_element (a, i);
    JsonArray *p = JSON_NODE_HOLDS_ARRAY (e) ? json_node_get_array (e) : NULL;
    gint64 v0, v1;
    if (!p || json_array_get_length (p) != 2 || !node_to_int (json_array_get_element (p, 0), &v0)
        || !node_to_int (json_array_get_element (p, 1), &v1) || v0 < 1 || v1 < 1 || v0 > 64 || v1 > 64)
      return (void) bad (r, "%s[%d] must be two integers in [1, 64]", key, i);
    out[i][0] = (int) v0;
    out[i][1] = (int) v1;
  }
}

static gboolean
read_audio (Reader *r, JsonObject *o, G3nAudioConfig *a)
{
  r->section = "audio_config";
  a->present = o != NULL;
  a->hidden_size = get_int (r, o, "hidden_size", 1536, 1, 1 << 16);
  a->input_feat_size = get_int (r, o, "input_feat_size", 128, 1, 4096);
  a->vocab_size = get_int (r, o, "vocab_size", 128, 1, 1 << 20);
  a->vocab_offset = get_int (r, o, "vocab_offset", 262144 + 128, 0, 1 << 24);
  a->rms_norm_eps = get_double (r, o, "rms_norm_eps", 1e-6);
  a->gradient_clipping = get_double (r, o, "gradient_clipping", 1e10);
  a->conf_attention_chunk_size = get_int (r, o, "conf_attention_chunk_size", 12, 1, 4096);
  a->conf_attention_context_left = get_int (r, o, "conf_attention_context_left", 13, 0, 4096);
  a->conf_attention_context_right = get_int (r, o, "conf_attention_context_right", 0, 0, 4096);
  a->conf_attention_logit_cap = get_double (r, o, "conf_attention_logit_cap", 50.0);
  a->conf_num_attention_heads = get_int (r, o, "conf_num_attention_heads", 8, 1, 1024);
  a->conf_num_hidden_layers = get_int (r, o, "conf_num_hidden_layers", 12, 0, 1024);
  a->conf_conv_kernel_size = get_int (r, o, "conf_conv_kernel_size", 5, 1, 1024);
  a->conf_reduction_factor = get_int (r, o, "conf_reduction_factor", 4, 1, 1024);
  a->conf_residual_weight = get_double (r, o, "conf_residual_weight", 0.5);
  read_pair (r, o, "sscp_conv_channel_size", a->sscp_conv_channel_size, (const int[2]) { 128, 32 });
  a->sscp_conv_group_norm_eps = get_double (r, o, "sscp_conv_group_norm_eps", 1e-3);
  read_pair_pair (r, o, "sscp_conv_kernel_size", a->sscp_conv_kernel_size, 3);
  read_pair_pair (r, o, "sscp_conv_stride_size", a->sscp_conv_stride_size, 2);
  if (a->hidden_size % a->conf_num_attention_heads != 0)
    bad (r, "hidden_size %d is not a multiple of conf_num_attention_heads %d", a->hidden_size,
         a->conf_num_attention_heads);
  return !(r->error && *r->error);
}

static gboolean
read_vision (Reader *r, JsonObject *o, G3nVisionConfig *v)
{
  r->section = "vision_config";
  v->present = o != NULL;
  v->architecture = g_strdup (get_string (r, o, "architecture", "mobilenetv5_300m_enc"));
  v->hidden_size = get_int (r, o, "hidden_size", 2048, 1, 1 << 16);
  v->vocab_size = get_int (r, o, "vocab_size", 128, 1, 1 << 20);
  v->vocab_offset = get_int (r, o, "vocab_offset", 262144, 0, 1 << 24);
  v->rms_norm_eps = get_double (r, o, "rms_norm_eps", 1e-6);
  JsonObject *args = get_object (r, o, "model_args");
  v->channel_multiplier = get_double (r, args, "channel_multiplier", 1.0);
  if (v->channel_multiplier <= 0 || v->channel_multiplier > 16)
    bad (r, "model_args.channel_multiplier %g is out of range", v->channel_multiplier);
  return !(r->error && *r->error);
}

static gboolean
read_top (Reader *r, JsonObject *root, G3nConfig *c)
{
  r->section = NULL;
  c->audio_soft_tokens_per_image = get_int (r, root, "audio_soft_tokens_per_image", 188, 0, 1 << 20);
  c->vision_soft_tokens_per_image = get_int (r, root, "vision_soft_tokens_per_image", 256, 0, 1 << 20);
  c->boi_token_id = get_int (r, root, "boi_token_id", 255999, 0, G_MAXINT32);
  c->eoi_token_id = get_int (r, root, "eoi_token_id", 262144, 0, G_MAXINT32);
  c->image_token_id = get_int (r, root, "image_token_id", 262145, 0, G_MAXINT32);
  c->boa_token_id = get_int (r, root, "boa_token_id", 256000, 0, G_MAXINT32);
  c->eoa_token_id = get_int (r, root, "eoa_token_id", 262272, 0, G_MAXINT32);
  c->audio_token_id = get_int (r, root, "audio_token_id", 262273, 0, G_MAXINT32);
  return !(r->error && *r->error);
}

G3nConfig *
g3n_config_parse (const char *json, gssize length, const char *origin, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, json, length, &jerr)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: not valid JSON: %s", origin, jerr->message);
    return NULL;
  }
  JsonNode *rootn = json_parser_get_root (parser);
  if (!rootn || !JSON_NODE_HOLDS_OBJECT (rootn)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_CONFIG, "%s: not a JSON object", origin);
    return NULL;
  }
  JsonObject *root = json_node_get_object (rootn);
  Reader r = { .origin = origin, .error = error };
  G3nConfig *c = g_new0 (G3nConfig, 1);
  c->path = g_strdup (origin);
  const char *type = get_string (&r, root, "model_type", "gemma3n");
  gboolean ok;
  if (g_strcmp0 (type, "gemma3n_text") == 0) {
    /* A bare text config (Gemma3nForCausalLM): no towers. */
    ok = read_text (&r, root, &c->text) && read_top (&r, NULL, c);
  } else if (g_strcmp0 (type, "gemma3n") == 0) {
    JsonObject *text = get_object (&r, root, "text_config");
    ok = read_text (&r, text, &c->text) && read_audio (&r, get_object (&r, root, "audio_config"), &c->audio)
         && read_vision (&r, get_object (&r, root, "vision_config"), &c->vision) && read_top (&r, root, c);
  } else {
    ok = bad (&r, "model_type '%s' is not gemma3n", type ? type : "?");
  }
  if (!ok) {
    g3n_config_free (c);
    return NULL;
  }
  return c;
}

G3nConfig *
g3n_config_load (const char *path, GError **error)
{
  g_autofree char *file = g_file_test (path, G_FILE_TEST_IS_DIR) ? g_build_filename (path, "config.json", NULL)
                                                                 : g_strdup (path);
  g_autofree char *contents = NULL;
  gsize len = 0;
  g_autoptr (GError) ferr = NULL;
  if (!g_file_get_contents (file, &contents, &len, &ferr)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s", ferr->message);
    return NULL;
  }
  return g3n_config_parse (contents, (gssize) len, file, error);
}

void
g3n_config_free (G3nConfig *c)
{
  if (!c)
    return;
  g_free (c->text.intermediate_size);
  g_free (c->text.activation_sparsity);
  g_free (c->text.is_sliding);
  g_free (c->vision.architecture);
  g_free (c->path);
  g_free (c);
}
