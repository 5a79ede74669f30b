/* test-gst-registry — the plugin's model registry: elements naming one checkpoint share one G3nModel
 * (compared by real path and load parameters), a tower user shares any model of its folder, concurrent first users load it once, the last release frees
 * it, and a missing folder is an error naming it. Usage: test-gst-registry MODEL_DIR */
#include "test-util.h"
#include "gstgemma3nregistry.h"

#include <glib/gstdio.h>
#include <string.h>

static const char *model_dir;

static gpointer
acquire_in_thread (gpointer unused)
{
  (void) unused;
  return gst_gemma3n_model_acquire (model_dir, NULL, NULL);
}

int
main (int argc, char **argv)
{
  if (argc != 2) {
    fprintf (stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  model_dir = argv[1];
  g_autoptr (GError) error = NULL;

  /* the same folder by two spellings: one model */
  g_autofree char *tmp = g_dir_make_tmp ("g3n-registry-XXXXXX", NULL);
  g_autofree char *real = realpath (model_dir, NULL);
  g_autofree char *link = g_build_filename (tmp, "model-link", NULL);
  g_assert (real && symlink (real, link) == 0);
  G3nModel *a = gst_gemma3n_model_acquire (model_dir, NULL, &error);
  G3nModel *b = gst_gemma3n_model_acquire (link, NULL, &error);
  check (a && a == b && gst_gemma3n_registry_size () == 1,
         "one checkpoint named two ways (%s, a symlink) gives one model (%u held)", model_dir,
         gst_gemma3n_registry_size ());

  /* other load parameters: another model */
  G3nModelParams q8 = g3n_model_default_params ();
  q8.quant = G3N_QUANT_Q8_0;
  G3nModel *c = gst_gemma3n_model_acquire (model_dir, &q8, &error);
  check (c && c != a && g3n_model_quant_type (c) == G3N_QUANT_Q8_0 && gst_gemma3n_registry_size () == 2,
         "the same checkpoint quantised to q8_0 is another model (%u held)", gst_gemma3n_registry_size ());
  gst_gemma3n_model_release (c);
  gst_gemma3n_model_release (b);
  check (gst_gemma3n_registry_size () == 1, "released by all but one user: still held (%u)",
         gst_gemma3n_registry_size ());
  gst_gemma3n_model_release (a);
  check (gst_gemma3n_registry_size () == 0, "released by its last user: freed (%u held)", gst_gemma3n_registry_size ());

  /* first users on two threads at once: one load, one model */
  GThread *t1 = g_thread_new ("user 1", acquire_in_thread, NULL), *t2 = g_thread_new ("user 2", acquire_in_thread, NULL);
  G3nModel *m1 = g_thread_join (t1), *m2 = g_thread_join (t2);
  check (m1 && m1 == m2 && gst_gemma3n_registry_size () == 1, "two elements starting at once share one load");
  gst_gemma3n_model_release (m1);
  gst_gemma3n_model_release (m2);

  /* a tower user shares whatever model of the folder is held, whatever its load parameters */
  G3nModel *dec = gst_gemma3n_model_acquire (model_dir, &q8, &error);
  G3nModel *tower = gst_gemma3n_model_acquire_tower (link, &error);
  check (dec && tower == dec && gst_gemma3n_registry_size () == 1,
         "a tower user (by a symlink) shares the decoder's q8_0 model (%u held)", gst_gemma3n_registry_size ());
  gst_gemma3n_model_release (dec);
  check (gst_gemma3n_registry_size () == 1, "the decoder released, the tower user still holds it (%u held)",
         gst_gemma3n_registry_size ());
  gst_gemma3n_model_release (tower);
  check (gst_gemma3n_registry_size () == 0, "the tower user released it last: freed (%u held)",
         gst_gemma3n_registry_size ());
  /* none held: the tower user loads one with the default parameters, which a default user then shares */
  tower = gst_gemma3n_model_acquire_tower (model_dir, &error);
  dec = gst_gemma3n_model_acquire (link, NULL, &error);
  check (tower && g3n_model_quant_type (tower) == G3N_QUANT_NONE && dec == tower && gst_gemma3n_registry_size () == 1,
         "a tower user alone loads the default model, shared by a later default user (%u held)",
         gst_gemma3n_registry_size ());
  c = gst_gemma3n_model_acquire (model_dir, &q8, &error);
  check (c && c != tower && gst_gemma3n_registry_size () == 2,
         "a q8_0 user after it still gets its own model (%u held)", gst_gemma3n_registry_size ());
  gst_gemma3n_model_release (c);
  gst_gemma3n_model_release (dec);
  gst_gemma3n_model_release (tower);
  check (gst_gemma3n_registry_size () == 0, "all released: none held (%u)", gst_gemma3n_registry_size ());

  /* a missing folder, no folder */
  g_autofree char *missing = g_build_filename (tmp, "no-such-model", NULL);
  G3nModel *none = gst_gemma3n_model_acquire (missing, NULL, &error);
  check (!none && error && strstr (error->message, "no-such-model") && gst_gemma3n_registry_size () == 0,
         "a missing folder: %s", error ? error->message : "no error");
  g_clear_error (&error);
  none = gst_gemma3n_model_acquire_tower (missing, &error);
  check (!none && error && strstr (error->message, "no-such-model") && gst_gemma3n_registry_size () == 0,
         "a missing folder for a tower user: %s", error ? error->message : "no error");
  g_clear_error (&error);
  none = gst_gemma3n_model_acquire (NULL, NULL, &error);
  check (!none && error, "no folder: %s", error ? error->message : "no error");
  g_clear_error (&error);
  none = gst_gemma3n_model_acquire_tower (NULL, &error);
  check (!none && error, "no folder for a tower user: %s", error ? error->message : "no error");
  g_unlink (link);
  g_rmdir (tmp);
  return test_summary ();
}
