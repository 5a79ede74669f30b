/* gstgemma3nformat.c — the segment events between the plugin's elements. */
#include "gstgemma3nformat.h"

static const char *const edge_names[] = { "start", "end" };
static const char *const end_names[] = { "pause", "max-length", "eos", "discont" };

GstEvent *
gst_gemma3n_segment_event_new (GstGemma3nSegmentEdge edge, guint64 index, GstClockTime start,
                               GstClockTime duration, GstGemma3nSegmentEnd reason)
{
  GstStructure *s = gst_structure_new (GST_GEMMA3N_SEGMENT_EVENT_NAME, "edge", G_TYPE_STRING, edge_names[edge],
                                       "index", G_TYPE_UINT64, index, "start", G_TYPE_UINT64, start,
                                       "duration", G_TYPE_UINT64, duration, "reason", G_TYPE_STRING,
                                       end_names[reason], NULL);
  return gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM, s);
}

static gboolean
name_index (const char *name, const char *const *names, guint n, guint *out)
{
  for (guint i = 0; name && i < n; i++)
    if (g_str_equal (name, names[i])) {
      *out = i;
      return TRUE;
    }
  return FALSE;
}

gboolean
gst_gemma3n_segment_event_parse (GstEvent *event, GstGemma3nSegmentEdge *edge, guint64 *index,
                                 GstClockTime *start, GstClockTime *duration, GstGemma3nSegmentEnd *reason)
{
  if (GST_EVENT_TYPE (event) != GST_EVENT_CUSTOM_DOWNSTREAM)
    return FALSE;
  const GstStructure *s = gst_event_get_structure (event);
  if (!s || !gst_structure_has_name (s, GST_GEMMA3N_SEGMENT_EVENT_NAME))
    return FALSE;
  guint e = 0, r = 0;
  guint64 i = 0, t = GST_CLOCK_TIME_NONE, d = GST_CLOCK_TIME_NONE;
  if (!name_index (gst_structure_get_string (s, "edge"), edge_names, G_N_ELEMENTS (edge_names), &e)
      || !name_index (gst_structure_get_string (s, "reason"), end_names, G_N_ELEMENTS (end_names), &r)
      || !gst_structure_get_uint64 (s, "index", &i) || !gst_structure_get_uint64 (s, "start", &t)
      || !gst_structure_get_uint64 (s, "duration", &d))
    return FALSE;
  if (edge)
    *edge = e;
  if (index)
    *index = i;
  if (start)
    *start = t;
  if (duration)
    *duration = d;
  if (reason)
    *reason = r;
  return TRUE;
}

const char *
gst_gemma3n_segment_end_name (GstGemma3nSegmentEnd reason)
{
  return reason < G_N_ELEMENTS (end_names) ? end_names[reason] : "unknown";
}
