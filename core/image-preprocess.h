/* image-preprocess.h — images and video frames into Gemma 3n pixel_values.
 *
 * Equal to Gemma3nProcessor's image path (SiglipImageProcessor, torchvision backend): RGB uint8, resize to
 * size.height x size.width with torchvision's antialiased bilinear filter on uint8 (PyTorch's fixed-point
 * kernel, result uint8), then x rescale_factor (float32), optionally (x - mean) / std. The checkpoint's
 * preprocessor_config.json decides every step; its absence means the Gemma 3n defaults.
 */
#ifndef G3N_IMAGE_PREPROCESS_H
#define G3N_IMAGE_PREPROCESS_H

#include "gemma3n.h"

G_BEGIN_DECLS

/* The public API is in gemma3n.h ("images"). */

G_END_DECLS

#endif
