/* test-media — audio files through FFmpeg: the bundled WAV (the mm-tiny golden waveform written as 16-bit
 * PCM) decodes to that waveform within 16-bit rounding; resampling to another rate keeps the length
 * ratio; max_samples bounds what is read; files that are not audio are refused. */
#include "test-util.h"
#include "gemma3n.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int
main (void)
{
  const char *data = g_getenv ("G3N_TEST_DATA");
  g_autofree char *wav = g_build_filename (data ? data : "tests/data", "sample", "speech.wav", NULL);
  g_autofree char *golden = g_build_filename (data ? data : "tests/data", "mm-tiny", "golden.safetensors", NULL);
  g_autofree char *text = g_build_filename (data ? data : "tests/data", "mm-tiny", "config.json", NULL);
  g_autoptr (GError) error = NULL;
  G3nSafetensors *g = g3n_safetensors_open (golden, &error);
  const G3nTensor *ref = g ? g3n_safetensors_find (g, "audio_waveform") : NULL;
  g_assert (ref);
  gsize n_ref = (gsize) g3n_tensor_numel (ref);

  float *pcm = NULL;
  gsize n = 0;
  gboolean ok = g3n_media_read_audio (wav, 16000, G_MAXSIZE, &pcm, &n, &error);
  double worst = 0;
  for (gsize i = 0; ok && i < MIN (n, n_ref); i++)
    worst = fmax (worst, fabs (pcm[i] - ((const float *) ref->data)[i]));
  /* the WAV holds round(x · 32767); FFmpeg reads s16 back as q / 32768: half a step of rounding plus
   * |x| · (1/32767 − 1/32768) of scale, under two steps of 1/32768 for |x| <= 1 */
  check (ok && n == n_ref && worst <= 2.0 / 32768, "speech.wav at 16 kHz: %" G_GSIZE_FORMAT " samples, max |diff| %.2g",
         n, worst);
  g_free (pcm);

  ok = g3n_media_read_audio (wav, 8000, G_MAXSIZE, &pcm, &n, &error);
  check (ok && n > n_ref / 2 - 64 && n < n_ref / 2 + 64, "resampled to 8 kHz: %" G_GSIZE_FORMAT " samples", n);
  g_free (pcm);

  ok = g3n_media_read_audio (wav, 16000, 1000, &pcm, &n, &error);
  check (ok && n == 1000, "max_samples bounds the read (%" G_GSIZE_FORMAT ")", n);
  g_free (pcm);

  ok = g3n_media_read_audio (text, 16000, G_MAXSIZE, &pcm, &n, &error);
  check (!ok && error, "a JSON file is refused: %s", error ? error->message : "(accepted)");
  g_clear_error (&error);
  ok = g3n_media_read_audio ("/nonexistent/a.wav", 16000, G_MAXSIZE, &pcm, &n, &error);
  check (!ok && error && strstr (error->message, "/nonexistent/a.wav"), "a missing file is named: %s",
         error ? error->message : "(accepted)");
  g3n_safetensors_free (g);
  return test_summary ();
}
