/* gstgemma3nregistry.c — the process's loaded models, one per checkpoint and load parameters. */
#include "gstgemma3nregistry.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  char *key;          /* real path + load parameters */
  G3nModel *model;    /* NULL while loading */
  gboolean loading;
  int users;          /* acquisitions not yet released, waiting ones included */
} Entry;

static GMutex lock;
static GCond loaded;
static GHashTable *by_key; /* key → Entry */

static char *
entry_key (const char *path, const G3nModelParams *p)
{
  g_autofree char *real = realpath (path, NULL);
  return g_strdup_printf ("%s|%s|%s", real ? real : path, g3n_quant_type_name (p->quant),
                          p->quant_cache ? p->quant_cache : "");
}

static Entry *
find_by_model (G3nModel *model)
{
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, by_key);
  while (g_hash_table_iter_next (&it, NULL, &value))
    if (((Entry *) value)->model == model)
      return value;
  return NULL;
}

static void
entry_drop_locked (Entry *e)
{
  if (--e->users > 0)
    return;
  g_hash_table_remove (by_key, e->key);
  if (e->model)
    g3n_model_unref (e->model);
  g_free (e->key);
  g_free (e);
}

/* Loads outside the lock, so other checkpoints can be acquired meanwhile. */
static G3nModel *
load_entry (Entry *e, const char *path, const G3nModelParams *params, GError **error)
{
  g_mutex_unlock (&lock);
  G3nModel *model = g3n_model_load_with_params (path, params, error);
  g_mutex_lock (&lock);
  e->model = model;
  e->loading = FALSE;
  g_cond_broadcast (&loaded);
  return model;
}

G3nModel *
gst_gemma3n_model_acquire (const char *path, const G3nModelParams *params, GError **error)
{
  if (!path || !*path) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_INVALID_ARGUMENT, "no model folder given (set the model property)");
    return NULL;
  }
  G3nModelParams p = params ? *params : g3n_model_default_params ();
  g_autofree char *key = entry_key (path, &p);
  g_mutex_lock (&lock);
  if (!by_key)
    by_key = g_hash_table_new (g_str_hash, g_str_equal);
  Entry *e = g_hash_table_lookup (by_key, key);
  if (!e) {
    e = g_new0 (Entry, 1);
    e->key = g_strdup (key);
    g_hash_table_insert (by_key, e->key, e);
  }
  e->users++;
  while (e->loading) /* another element is loading it: wait for that instead of loading twice */
    g_cond_wait (&loaded, &lock);
  G3nModel *model = e->model;
  if (!model) { /* first, or the last try failed: load (again), so the error is this caller's own */
    e->loading = TRUE;
    model = load_entry (e, path, &p, error);
  }
  if (model)
    g3n_model_ref (model);
  else
    entry_drop_locked (e);
  g_mutex_unlock (&lock);
  return model;
}

/* An entry of folder `real` (any load parameters), preferring one already loaded to one being loaded. */
static Entry *
find_by_folder_locked (const char *real)
{
  gsize len = strlen (real);
  Entry *found = NULL;
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, by_key);
  while (g_hash_table_iter_next (&it, NULL, &value)) {
    Entry *e = value;
    if (strncmp (e->key, real, len) != 0 || e->key[len] != '|')
      continue;
    if (e->model)
      return e;
    found = e;
  }
  return found;
}

G3nModel *
gst_gemma3n_model_acquire_tower (const char *path, GError **error)
{
  g_autofree char *real = path && *path ? realpath (path, NULL) : NULL;
  if (real) {
    g_mutex_lock (&lock);
    Entry *e = by_key ? find_by_folder_locked (real) : NULL;
    if (e) {
      e->users++;
      while (e->loading)
        g_cond_wait (&loaded, &lock);
      G3nModel *model = e->model;
      if (model) {
        g3n_model_ref (model);
        g_mutex_unlock (&lock);
        return model;
      }
      entry_drop_locked (e); /* its load failed: load with the defaults below, for this caller's own error */
    }
    g_mutex_unlock (&lock);
  }
  return gst_gemma3n_model_acquire (path, NULL, error);
}

void
gst_gemma3n_model_release (G3nModel *model)
{
  if (!model)
    return;
  g_mutex_lock (&lock);
  Entry *e = by_key ? find_by_model (model) : NULL;
  g3n_model_unref (model);
  if (e)
    entry_drop_locked (e);
  g_mutex_unlock (&lock);
}

guint
gst_gemma3n_registry_size (void)
{
  g_mutex_lock (&lock);
  guint n = by_key ? g_hash_table_size (by_key) : 0;
  g_mutex_unlock (&lock);
  return n;
}
