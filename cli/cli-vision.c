/* cli-vision.c — `gemma3n-cli preprocess`: an image file into pixel_values, as Gemma3nProcessor makes them. */
#include "cli.h"

#include <stdio.h>

int
g3n_cli_preprocess (int argc, char **argv)
{
  g_autofree char *model_dir = NULL, *image = NULL, *output = NULL;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      "Checkpoint folder (its preprocessor_config.json decides size and rescaling)", "DIR" },
    { "image", 'i', 0, G_OPTION_ARG_FILENAME, &image, "PNG, JPEG, BMP or WebP image", "FILE" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "safetensors file to write", "OUT" },
    { NULL },
  };
  g_autoptr (GOptionContext) octx = g_option_context_new ("- image into pixel_values");
  g_option_context_set_description (octx, "Writes pixel_values [1, 3, H, W] float32 (768 x 768 for Gemma 3n).");
  g_option_context_add_main_entries (octx, entries, NULL);
  if (!g3n_cli_parse (octx, &argc, &argv))
    return 1;
  if (!model_dir || !image || !output)
    return g3n_cli_fail ("preprocess: --model, --image and --output are required");

  g_autoptr (GError) error = NULL;
  G3nImageParams params;
  if (!g3n_image_params_load (model_dir, &params, &error))
    return g3n_cli_fail ("%s", error->message);
  g_autoptr (G3nImage) img = g3n_image_load_file (image, &error);
  if (!img)
    return g3n_cli_fail ("%s", error->message);
  g_autofree float *pv = g_new (float, (gsize) 3 * params.width * params.height);
  if (!g3n_image_preprocess (&params, img, pv, &error))
    return g3n_cli_fail ("%s", error->message);
  G3nTensor t = { .name = "pixel_values", .dtype = G3N_DTYPE_F32, .ndim = 4,
                  .shape = { 1, 3, params.height, params.width }, .data = pv,
                  .nbytes = sizeof (float) * 3 * params.width * params.height };
  if (!g3n_safetensors_write (output, &t, 1, &error))
    return g3n_cli_fail ("%s", error->message);
  return 0;
}
