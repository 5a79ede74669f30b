/* cli-media.c — image and audio files into a session's next user turn. */
#include "cli.h"

gboolean
g3n_cli_media_add_audio (G3nSession *session, const char *path, GError **error)
{
  /* Gemma3nProcessor takes at most 30 s per clip; reading stops there. */
  float *pcm = NULL;
  gsize n = 0;
  if (!g3n_media_read_audio (path, 16000, 30 * 16000, &pcm, &n, error))
    return FALSE;
  gboolean ok = g3n_session_add_audio (session, pcm, n, error);
  g_free (pcm);
  return ok;
}

gboolean
g3n_cli_media_add_image (G3nSession *session, const char *path, GError **error)
{
  G3nImage *img = g3n_image_load_file (path, error);
  gboolean ok = img && g3n_session_add_image (session, img, error);
  if (img)
    g3n_image_free (img);
  return ok;
}
