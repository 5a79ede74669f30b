/* compute.h — what every long call shares: its thread budget and its cancellation. */
#ifndef G3N_COMPUTE_H
#define G3N_COMPUTE_H

#include "gemma3n.h"

G_BEGIN_DECLS

/* TRUE (with G_IO_ERROR_CANCELLED in *error, naming `what`) when `cancellable` is set and cancelled:
 * the check long calls make between layers. */
gboolean g3n_check_cancelled (GCancellable *cancellable, const char *what, GError **error);

G_END_DECLS

#endif
