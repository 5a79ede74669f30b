/* test-checkpoint — loading: hostile safetensors files, bad config.json, missing or misshapen tensors,
 * sharded checkpoints, both config generations, and unused tensors.
 *
 *   test-checkpoint TEXT_FIXTURE_DIR MM_FIXTURE_DIR
 *
 * Every bad input must give a GError whose message names what is wrong — never a crash (this test runs
 * under AddressSanitizer in CI).
 */
#include "test-util.h"
#include "model.h"
#include "safetensors.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static char *tmp;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmp, name, NULL);
}

/* Writes the 8-byte header length (`hlen`, or the padded header's when 0), the header padded with spaces
 * to keep the data 8-byte aligned, then `data_len` zero bytes. */
static char *
write_raw (const char *name, guint64 hlen, const char *header, gsize data_len)
{
  char *path = tmp_path (name);
  GString *h = g_string_new (header);
  while (h->len % 8)
    g_string_append_c (h, ' ');
  hlen = hlen ? hlen : h->len;
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 8; i++)
    g_string_append_c (s, (char) ((hlen >> (8 * i)) & 0xff));
  g_string_append_len (s, h->str, h->len);
  g_string_free (h, TRUE);
  for (gsize i = 0; i < data_len; i++)
    g_string_append_c (s, 0);
  g_assert (g_file_set_contents (path, s->str, (gssize) s->len, NULL));
  g_string_free (s, TRUE);
  return path;
}

/* The file must be refused with a message containing `expect`. */
static void
expect_bad_file (const char *what, const char *path, const char *expect)
{
  g_autoptr (GError) error = NULL;
  G3nSafetensors *st = g3n_safetensors_open (path, &error);
  check (!st && error && strstr (error->message, expect), "%s: %s", what, error ? error->message : "(accepted)");
  g3n_safetensors_free (st);
}

static void
test_hostile_files (void)
{
  const char *ok_hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  g_autofree char *good = write_raw ("good.safetensors", 0, ok_hdr, 16);
  g_autoptr (GError) error = NULL;
  G3nSafetensors *st = g3n_safetensors_open (good, &error);
  check (st && g3n_safetensors_count (st) == 1, "a well-formed file opens");
  g3n_safetensors_free (st);

  g_autofree char *p1 = write_raw ("short.safetensors", 0, "", 0);
  g_assert (g_file_set_contents (p1, "abc", 3, NULL));
  expect_bad_file ("3-byte file", p1, "too short");
  g_autofree char *p2 = write_raw ("trunc.safetensors", 0, ok_hdr, 10);
  expect_bad_file ("data truncated", p2, "past the end");
  g_autofree char *p3 = write_raw ("hlen.safetensors", 1ull << 40, ok_hdr, 16);
  expect_bad_file ("absurd header length", p3, "absurd");
  g_autofree char *p4 = write_raw ("hlen2.safetensors", strlen (ok_hdr) + 1000, ok_hdr, 16);
  expect_bad_file ("header length past EOF", p4, "past the end");
  const char *past = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[1000,1016]}}";
  g_autofree char *p5 = write_raw ("offsets.safetensors", 0, past, 16);
  expect_bad_file ("offsets past EOF", p5, "'a': data_offsets end");
  const char *mismatch = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,16]}}";
  g_autofree char *p6 = write_raw ("mismatch.safetensors", 0, mismatch, 16);
  expect_bad_file ("dtype/shape mismatch", p6, "needs 12");
  const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
  g_autofree char *p7 = write_raw ("overlap.safetensors", 0, overlap, 16);
  expect_bad_file ("overlapping tensors", p7, "overlap");
  const char *notjson = "{\"a\":{\"dtype\":";
  g_autofree char *p8 = write_raw ("json.safetensors", 0, notjson, 0);
  expect_bad_file ("malformed JSON header", p8, "not valid JSON");
  const char *dtype = "{\"a\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]}}";
  g_autofree char *p9 = write_raw ("dtype.safetensors", 0, dtype, 1);
  expect_bad_file ("unknown dtype", p9, "unknown dtype 'Q9'");
  const char *neg = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}";
  g_autofree char *p10 = write_raw ("neg.safetensors", 0, neg, 4);
  expect_bad_file ("negative dimension", p10, "shape entry 0");
  const char *huge = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}";
  g_autofree char *p11 = write_raw ("huge.safetensors", 0, huge, 4);
  expect_bad_file ("shape overflow", p11, "overflows");
  const char *odd = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}";
  g_autofree char *p13 = write_raw ("odd.safetensors", 0, odd, 8);
  expect_bad_file ("misaligned data", p13, "not aligned");
  const char *arr = "[1,2,3]";
  g_autofree char *p12 = write_raw ("array.safetensors", 0, arr, 0);
  expect_bad_file ("header not an object", p12, "not a JSON object");
  g_autofree char *missing = tmp_path ("does-not-exist.safetensors");
  expect_bad_file ("missing file", missing, "does-not-exist");
}

/* ------------------------------------------------------------------ checkpoint folders */

static char *
make_dir (const char *name)
{
  char *d = tmp_path (name);
  g_mkdir_with_parents (d, 0700);
  return d;
}

static void
copy_file (const char *from, const char *to)
{
  g_autofree char *buf = NULL;
  gsize len;
  g_assert (g_file_get_contents (from, &buf, &len, NULL));
  g_assert (g_file_set_contents (to, buf, (gssize) len, NULL));
}

/* A checkpoint folder: `config` text (or the fixture's config.json when NULL) and the fixture's tensors
 * passed through `edit` (which may drop, rename or reshape entries) into `n_shards` files. */
typedef gboolean (*EditFn) (G3nTensor *t, gpointer data);

static char *
make_checkpoint (const char *name, const char *fixture, const char *config, EditFn edit, gpointer data, int n_shards)
{
  char *dir = make_dir (name);
  g_autofree char *cfg_dst = g_build_filename (dir, "config.json", NULL);
  if (config) {
    g_assert (g_file_set_contents (cfg_dst, config, -1, NULL));
  } else {
    g_autofree char *cfg_src = g_build_filename (fixture, "config.json", NULL);
    copy_file (cfg_src, cfg_dst);
  }
  g_autofree char *src = g_build_filename (fixture, "model.safetensors", NULL);
  G3nSafetensors *st = g3n_safetensors_open (src, NULL);
  g_assert (st);
  GArray *all = g_array_new (FALSE, FALSE, sizeof (G3nTensor));
  for (guint i = 0; i < g3n_safetensors_count (st); i++) {
    G3nTensor t = *g3n_safetensors_nth (st, i);
    if (!edit || edit (&t, data))
      g_array_append_val (all, t);
  }
  if (n_shards <= 1) {
    g_autofree char *out = g_build_filename (dir, "model.safetensors", NULL);
    g_assert (g3n_safetensors_write (out, (G3nTensor *) all->data, all->len, NULL));
  } else {
    GString *index = g_string_new ("{\"metadata\":{},\"weight_map\":{");
    guint per = (all->len + n_shards - 1) / n_shards;
    for (int s = 0; s < n_shards; s++) {
      g_autofree char *fname = g_strdup_printf ("model-%05d-of-%05d.safetensors", s + 1, n_shards);
      g_autofree char *out = g_build_filename (dir, fname, NULL);
      guint lo = s * per, hi = MIN (all->len, lo + per);
      g_assert (g3n_safetensors_write (out, &g_array_index (all, G3nTensor, lo), hi - lo, NULL));
      for (guint i = lo; i < hi; i++)
        g_string_append_printf (index, "%s\"%s\":\"%s\"", i ? "," : "", g_array_index (all, G3nTensor, i).name, fname);
    }
    g_string_append (index, "}}");
    g_autofree char *ipath = g_build_filename (dir, "model.safetensors.index.json", NULL);
    g_assert (g_file_set_contents (ipath, index->str, -1, NULL));
    g_string_free (index, TRUE);
  }
  g_array_free (all, TRUE);
  g3n_safetensors_free (st);
  return dir;
}

static void
expect_bad_model (const char *what, const char *dir, const char *expect)
{
  g_autoptr (GError) error = NULL;
  G3nModel *m = g3n_model_load (dir, &error);
  check (!m && error && strstr (error->message, expect), "%s: %s", what, error ? error->message : "(accepted)");
  if (m)
    g3n_model_unref (m);
}

static float *
logits_of (const char *dir, int *n_out)
{
  g_autoptr (GError) error = NULL;
  G3nModel *m = g3n_model_load (dir, &error);
  if (!m) {
    printf ("     load %s: %s\n", dir, error->message);
    return NULL;
  }
  int32_t ids[6] = { 2, 10, 20, 30, 40, 50 };
  int V = g3n_model_n_vocab (m);
  float *logits = g_new (float, 6 * V);
  G3nContext *ctx = g3n_context_new (m, NULL, NULL);
  G3nBatch b = { .n_tokens = 6, .ids = ids, .all_logits = TRUE, .logits = logits };
  g_assert (g3n_context_decode (ctx, &b, NULL));
  g3n_context_free (ctx);
  g3n_model_unref (m);
  *n_out = 6 * V;
  return logits;
}

static gboolean
same_logits (const char *a, const char *b)
{
  int na = 0, nb = 0;
  g_autofree float *la = logits_of (a, &na), *lb = logits_of (b, &nb);
  return la && lb && na == nb && memcmp (la, lb, sizeof (float) * na) == 0;
}

static double
logits_rel_err (const char *a, const char *b)
{
  int na = 0, nb = 0;
  g_autofree float *la = logits_of (a, &na), *lb = logits_of (b, &nb);
  if (!la || !lb || na != nb)
    return INFINITY;
  double d = 0, m = 0;
  for (int i = 0; i < na; i++) {
    d = fmax (d, fabs (la[i] - lb[i]));
    m = fmax (m, fabs (la[i]));
  }
  return m > 0 ? d / m : d;
}

static gboolean
drop_tensor (G3nTensor *t, gpointer name)
{
  return strcmp (t->name, name) != 0;
}

static gboolean
transpose_tensor (G3nTensor *t, gpointer name)
{
  if (strcmp (t->name, name) == 0) {
    int64_t r = t->shape[0];
    t->shape[0] = t->shape[1];
    t->shape[1] = r;
  }
  return TRUE;
}

static gboolean
retype_tensor (G3nTensor *t, gpointer name)
{
  if (strcmp (t->name, name) == 0)
    t->dtype = G3N_DTYPE_I16; /* same byte size as BF16, wrong kind */
  return TRUE;
}

static void
test_bad_models (const char *fixture)
{
  g_autofree char *nodir = tmp_path ("no-such-model");
  expect_bad_model ("missing folder", nodir, "does not exist");
  g_autofree char *empty = make_dir ("empty");
  expect_bad_model ("folder without config.json", empty, "config.json");

  const char *layer3 = "model.language_model.layers.3.mlp.gate_proj.weight";
  g_autofree char *d1 = make_checkpoint ("missing-tensor", fixture, NULL, drop_tensor, (gpointer) layer3, 1);
  expect_bad_model ("missing tensor", d1, "required tensor 'model.language_model.layers.3.mlp.gate_proj.weight' is missing");
  g_autofree char *d2 = make_checkpoint ("wrong-shape", fixture, NULL, transpose_tensor, (gpointer) layer3, 1);
  expect_bad_model ("wrong shape", d2, "layers.3.mlp.gate_proj.weight' has shape");
  g_autofree char *d3 = make_checkpoint ("wrong-dtype", fixture, NULL, retype_tensor, (gpointer) layer3, 1);
  expect_bad_model ("wrong dtype", d3, "has dtype I16");

  g_autofree char *d4 = make_checkpoint ("bad-json", fixture, "{\"text_config\": {\"hidden_size\": 80,", NULL, NULL, 1);
  expect_bad_model ("malformed config.json", d4, "not valid JSON");
  g_autofree char *d5 = make_checkpoint ("bad-widths", fixture,
                                        "{\"model_type\":\"gemma3n\",\"text_config\":{\"num_hidden_layers\":15,\"num_kv_shared_layers\":5,"
                                        "\"intermediate_size\":[1,2,3]}}", NULL, NULL, 1);
  expect_bad_model ("intermediate_size list of the wrong length", d5, "intermediate_size has 3 entries");
  g_autofree char *d6 = make_checkpoint ("bad-act", fixture,
                                        "{\"model_type\":\"gemma3n\",\"text_config\":{\"hidden_activation\":\"relu\"}}",
                                        NULL, NULL, 1);
  expect_bad_model ("unsupported activation", d6, "hidden_activation 'relu'");
  g_autofree char *d7 = make_checkpoint ("bad-type", fixture, "{\"model_type\":\"llama\"}", NULL, NULL, 1);
  expect_bad_model ("wrong model_type", d7, "model_type 'llama'");
  g_autofree char *d8 = make_checkpoint ("bad-value", fixture,
                                        "{\"model_type\":\"gemma3n\",\"text_config\":{\"hidden_size\":\"big\"}}", NULL,
                                        NULL, 1);
  expect_bad_model ("non-integer hidden_size", d8, "text_config.hidden_size must be an integer");
  /* The defaults (E4B sizes) do not match the fixture's tensors: a clear shape error, not a crash. */
  g_autofree char *d9 = make_checkpoint ("defaults", fixture, "{\"model_type\":\"gemma3n\"}", NULL, NULL, 1);
  expect_bad_model ("config whose sizes do not match the tensors", d9, "has shape");
}

static void
test_shards_and_extras (const char *fixture)
{
  g_autofree char *whole = make_checkpoint ("whole", fixture, NULL, NULL, NULL, 1);
  g_autofree char *sharded = make_checkpoint ("sharded", fixture, NULL, NULL, NULL, 3);
  check (same_logits (whole, sharded), "a checkpoint in 3 shards + index gives the same logits");

  g_autofree char *shard2 = g_build_filename (sharded, "model-00002-of-00003.safetensors", NULL);
  g_autofree char *moved = g_build_filename (tmp, "moved.safetensors", NULL);
  g_assert (g_rename (shard2, moved) == 0);
  expect_bad_model ("index naming a missing shard", sharded, "model-00002-of-00003.safetensors");
  g_assert (g_rename (moved, shard2) == 0);

  g_autofree char *ipath = g_build_filename (sharded, "model.safetensors.index.json", NULL);
  g_autofree char *index = NULL;
  g_assert (g_file_get_contents (ipath, &index, NULL, NULL));
  g_autofree char *lying = g_strconcat ("{\"weight_map\":{\"model.extra.weight\":\"model-00001-of-00003.safetensors\",",
                                        strstr (index, "\"weight_map\":{") + 14, NULL);
  g_assert (g_file_set_contents (ipath, lying, -1, NULL));
  expect_bad_model ("index listing a tensor its shard lacks", sharded, "model.extra.weight");

  /* Real checkpoints carry k/v projections for KV-shared layers; they are ignored. */
  const char *shared_k = "model.language_model.layers.14.self_attn.k_proj.weight";
  g_autofree char *mm = g_build_filename (fixture, "model.safetensors", NULL);
  G3nSafetensors *st = g3n_safetensors_open (mm, NULL);
  GArray *all = g_array_new (FALSE, FALSE, sizeof (G3nTensor));
  for (guint i = 0; i < g3n_safetensors_count (st); i++)
    g_array_append_val (all, *g3n_safetensors_nth (st, i));
  G3nTensor extra = *g3n_safetensors_find (st, "model.language_model.layers.0.self_attn.k_proj.weight");
  extra.name = shared_k;
  g_array_append_val (all, extra);
  g_autofree char *xdir = make_dir ("extras");
  g_autofree char *xcfg = g_build_filename (xdir, "config.json", NULL), *fcfg = g_build_filename (fixture, "config.json", NULL);
  copy_file (fcfg, xcfg);
  g_autofree char *xmodel = g_build_filename (xdir, "model.safetensors", NULL);
  g_assert (g3n_safetensors_write (xmodel, (G3nTensor *) all->data, all->len, NULL));
  g_array_free (all, TRUE);
  g3n_safetensors_free (st);
  check (same_logits (whole, xdir), "unused tensors (k_proj of a KV-shared layer) are ignored");
}

/* BF16 → F32 is exact; BF16 → F16 is exact for the fixture's magnitudes except values below F16's normal
 * range, so the logits agree to rounding. */
static guint16
f32_to_f16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  guint32 sign = (u >> 16) & 0x8000;
  int exp = (int) ((u >> 23) & 0xff) - 127 + 15;
  guint32 man = u & 0x7fffff;
  if (exp <= 0)
    return (guint16) sign; /* flush tiny values: fine for this comparison */
  if (exp >= 31)
    return (guint16) (sign | 0x7c00);
  guint32 h = sign | ((guint32) exp << 10) | (man >> 13);
  if ((man >> 12) & 1) /* round half up on the dropped bits */
    h++;
  return (guint16) h;
}

static GPtrArray *converted;

static gboolean
widen (G3nTensor *t, gpointer to_f16)
{
  gsize n = (gsize) g3n_tensor_numel (t);
  float *f = g_new (float, n);
  g3n_to_f32 (t->dtype, t->data, f, n);
  if (GPOINTER_TO_INT (to_f16)) {
    guint16 *h = g_new (guint16, n);
    for (gsize i = 0; i < n; i++)
      h[i] = f32_to_f16 (f[i]);
    g_free (f);
    t->data = h;
    t->dtype = G3N_DTYPE_F16;
  } else {
    t->data = f;
    t->dtype = G3N_DTYPE_F32;
  }
  g_ptr_array_add (converted, (gpointer) t->data);
  return TRUE;
}

static void
test_dtypes (const char *fixture)
{
  converted = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *bf16 = make_checkpoint ("dt-bf16", fixture, NULL, NULL, NULL, 1);
  g_autofree char *f32 = make_checkpoint ("dt-f32", fixture, NULL, widen, GINT_TO_POINTER (0), 1);
  g_autofree char *f16 = make_checkpoint ("dt-f16", fixture, NULL, widen, GINT_TO_POINTER (1), 1);
  g_ptr_array_free (converted, TRUE);
  /* F32 weights hold the same values; only the kernels' blocking (hence summation order) differs. */
  double e32 = logits_rel_err (bf16, f32), e16 = logits_rel_err (bf16, f16);
  check (e32 < 1e-5, "an F32 copy of the BF16 checkpoint gives the same logits (rel err %.2g)", e32);
  check (e16 < 1e-3, "an F16 copy gives the same logits to rounding (rel err %.2g)", e16);
}

/* Google's checkpoints use the older keys; both generations must give the same model. */
static void
test_old_config (const char *mm_fixture)
{
  g_autofree char *cfg_path = g_build_filename (mm_fixture, "config.json", NULL);
  g_autofree char *cfg = NULL;
  g_assert (g_file_get_contents (cfg_path, &cfg, NULL, NULL));
  g_autoptr (GRegex) rope = g_regex_new ("\"rope_parameters\": \\{[^}]*\\{[^}]*\\},[^}]*\\{[^}]*\\}\\s*\\}",
                                         G_REGEX_DOTALL, 0, NULL);
  g_autofree char *a = g_regex_replace_literal (rope, cfg, -1, 0,
                                                "\"rope_theta\": 1000000.0, \"rope_local_base_freq\": 10000.0, "
                                                "\"rope_scaling\": null, \"query_pre_attn_scalar\": 256", 0, NULL);
  g_autoptr (GRegex) inter = g_regex_new ("\"intermediate_size\": \\[[^\\]]*\\]", G_REGEX_DOTALL, 0, NULL);
  g_autofree char *b = g_regex_replace_literal (inter, a, -1, 0, "\"intermediate_size\": 256", 0, NULL);
  g_autoptr (GRegex) dtype = g_regex_new ("\"dtype\": \"bfloat16\"", 0, 0, NULL);
  g_autofree char *old = g_regex_replace_literal (dtype, b, -1, 0, "\"torch_dtype\": \"bfloat16\"", 0, NULL);
  check (strstr (old, "rope_local_base_freq") && strstr (old, "\"intermediate_size\": 256") && !strstr (old, "rope_parameters"),
         "older-generation config written (rope_theta, rope_local_base_freq, int intermediate_size, torch_dtype)");
  g_autofree char *new_dir = make_checkpoint ("mm-new", mm_fixture, NULL, NULL, NULL, 1);
  g_autofree char *old_dir = make_checkpoint ("mm-old", mm_fixture, old, NULL, NULL, 1);
  check (same_logits (new_dir, old_dir), "older config keys give the same logits as transformers 5 keys");

  /* A theta that differs must change the result: the keys are really read. */
  g_autofree char *other = g_strdup (old);
  char *p = strstr (other, "\"rope_local_base_freq\": 10000.0");
  memcpy (p, "\"rope_local_base_freq\": 20000.0", strlen ("\"rope_local_base_freq\": 20000.0"));
  g_autofree char *other_dir = make_checkpoint ("mm-theta", mm_fixture, other, NULL, NULL, 1);
  check (!same_logits (old_dir, other_dir), "rope_local_base_freq is honoured");
}

static void
remove_tree (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  if (d) {
    const char *name;
    while ((name = g_dir_read_name (d))) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
    g_dir_close (d);
  }
  g_remove (path);
}

int
main (int argc, char **argv)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *text = argc >= 3 ? g_strdup (argv[1]) : data ? g_build_filename (data, "text-matformer", NULL) : NULL;
  g_autofree char *mm = argc >= 3 ? g_strdup (argv[2]) : data ? g_build_filename (data, "mm-tiny", NULL) : NULL;
  if (!text || !mm) {
    fprintf (stderr, "usage: %s TEXT_FIXTURE_DIR MM_FIXTURE_DIR (or set G3N_TEST_DATA)\n", argv[0]);
    return 2;
  }
  tmp = g_dir_make_tmp ("g3n-checkpoint-XXXXXX", NULL);
  test_hostile_files ();
  test_bad_models (text);
  test_shards_and_extras (text);
  test_dtypes (text);
  test_old_config (mm);
  remove_tree (tmp);
  g_free (tmp);
  return test_summary ();
}
