/* gstgemma3n.c — the `gemma3n` GStreamer plugin: Gemma 3n's audio path as pipeline elements.
 *
 * gemma3nmel (log-mel frames of speech segments) → gemma3naudioenc (audio soft tokens) → gemma3ndecoder
 * (one live conversation, captions out), and gemma3ntranscriber, the three in a bin with transcriberbin's
 * contract. They run libgemma3n through its public header only; see gstgemma3nformat.h for what flows
 * between them.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgemma3nelements.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  gboolean ok = TRUE;
  ok &= GST_ELEMENT_REGISTER (gemma3nmel, plugin);
  ok &= GST_ELEMENT_REGISTER (gemma3naudioenc, plugin);
  ok &= GST_ELEMENT_REGISTER (gemma3ndecoder, plugin);
  ok &= GST_ELEMENT_REGISTER (gemma3ntranscriber, plugin);
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, gemma3n,
                   "Gemma 3n (audio encoder, decoder) natively: live captions and translation", plugin_init,
                   PACKAGE_VERSION, "LGPL", PACKAGE_NAME, "https://github.com/gst-gemma3n/gst-gemma3n")
