/* gstgemma3nregistry.h — one loaded model per checkpoint in the process, shared by every element that names it.
 *
 * Each element that runs a part of the model (mel features need only the folder's configs; the audio and
 * vision encoders and the decoder need the weights) has a `model` property. Elements naming the same folder
 * with the same load parameters get the same G3nModel, mapped once: a pipeline with an audio encoder and a
 * decoder, or a daemon running several pipelines, holds one copy of the weights. The first element to ask
 * loads it (on its own thread, typically in NULL→READY); others asking meanwhile wait for that load instead of
 * starting their own. The model is freed when the last element releases it.
 */
#ifndef GST_GEMMA3N_REGISTRY_H
#define GST_GEMMA3N_REGISTRY_H

#include "gemma3n.h"

G_BEGIN_DECLS

/* The model of checkpoint folder `path` loaded with `params` (NULL: defaults), loading it if no element holds
 * it yet. Folders are compared by their real path, so "./m" and "/abs/m" share. The caller releases it with
 * gst_gemma3n_model_release. On failure, NULL and the loader's error (it names the path or tensor). */
G3nModel *gst_gemma3n_model_acquire (const char *path, const G3nModelParams *params, GError **error);
/* For elements that run only a tower (the audio encoder): the towers do not depend on how the text decoder's
 * weights are stored, so any model of that folder will do. When one is held (loaded with any parameters, e.g.
 * the decoder's quantisation) it is shared; otherwise one is loaded with the default parameters and registered
 * under them (a decoder asking for those later shares it). Released with gst_gemma3n_model_release. */
G3nModel *gst_gemma3n_model_acquire_tower (const char *path, GError **error);
void gst_gemma3n_model_release (G3nModel *model);

/* Models held now (for tests). */
guint gst_gemma3n_registry_size (void);

G_END_DECLS

#endif
