/* gstgemma3nelements.h — the plugin's elements, registered by gstgemma3n.c. */
#ifndef GST_GEMMA3N_ELEMENTS_H
#define GST_GEMMA3N_ELEMENTS_H

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE (gemma3nmel);
GST_ELEMENT_REGISTER_DECLARE (gemma3naudioenc);
GST_ELEMENT_REGISTER_DECLARE (gemma3ndecoder);
GST_ELEMENT_REGISTER_DECLARE (gemma3ntranscriber);

G_END_DECLS

#endif
