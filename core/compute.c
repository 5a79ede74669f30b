/* compute.c — the per-call compute settings (G3nComputeParams) and the cancellation check. */
#include "compute.h"
#include "kernels/threadpool.h"

G3nComputeParams
g3n_compute_default_params (void)
{
  return (G3nComputeParams) { .n_threads = 0, .cancellable = NULL };
}

gboolean
g3n_check_cancelled (GCancellable *cancellable, const char *what, GError **error)
{
  if (!cancellable || !g_cancellable_is_cancelled (cancellable))
    return FALSE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "%s cancelled", what);
  return TRUE;
}

void
g3n_set_threads (int n_threads)
{
  g3n_kernels_push_threads (n_threads);
}
