/* gstgemma3nqueue.c — the bounded queue between a heavy element's streaming thread and its worker. */
#include "gstgemma3nqueue.h"

#include "gstgemma3nformat.h"

typedef struct {
  GstMiniObject *item;
  gpointer tag;
} Item;

struct _GstGemma3nQueue {
  GMutex lock;
  GCond changed;          /* an item came, went or was finished; flushing changed */
  GQueue items;           /* of Item* */
  GstClockTime level;     /* sum of the queued buffers' durations */
  GstClockTime limit;
  gboolean flushing;
  gboolean busy;          /* the worker holds a popped item */
  /* Live drops: a segment whose START was dropped while its END had not come yet keeps being dropped as
   * its buffers arrive, until its END. */
  gboolean dropping_open_segment;
  gpointer dropping_tag;
  /* what live pushes dropped since the last warning (gst_gemma3n_queue_push_reporting) */
  GstGemma3nDropped unreported;
};

/* Live drops that go on without a pause are still reported this often (media time dropped). */
#define WARN_EVERY (10 * GST_SECOND)

static const GstGemma3nDropped NOTHING_DROPPED = { 0, 0, GST_CLOCK_TIME_NONE };

GstGemma3nQueue *
gst_gemma3n_queue_new (GstClockTime limit)
{
  GstGemma3nQueue *q = g_new0 (GstGemma3nQueue, 1);
  g_mutex_init (&q->lock);
  g_cond_init (&q->changed);
  g_queue_init (&q->items);
  q->limit = limit;
  q->unreported = NOTHING_DROPPED;
  return q;
}

static void
item_free (Item *it)
{
  gst_mini_object_unref (it->item);
  g_free (it);
}

static GstClockTime
item_duration (const Item *it)
{
  if (!GST_IS_BUFFER (it->item))
    return 0;
  GstClockTime d = GST_BUFFER_DURATION (GST_BUFFER_CAST (it->item));
  return GST_CLOCK_TIME_IS_VALID (d) ? d : 0;
}

static void
clear_locked (GstGemma3nQueue *q)
{
  g_queue_clear_full (&q->items, (GDestroyNotify) item_free);
  q->level = 0;
  q->dropping_open_segment = FALSE;
}

void
gst_gemma3n_queue_free (GstGemma3nQueue *q)
{
  if (!q)
    return;
  clear_locked (q);
  g_cond_clear (&q->changed);
  g_mutex_clear (&q->lock);
  g_free (q);
}

void
gst_gemma3n_queue_set_limit (GstGemma3nQueue *q, GstClockTime limit)
{
  g_mutex_lock (&q->lock);
  q->limit = limit;
  g_cond_broadcast (&q->changed);
  g_mutex_unlock (&q->lock);
}

static gboolean
is_segment_edge (const Item *it, GstGemma3nSegmentEdge *edge)
{
  return GST_IS_EVENT (it->item)
         && gst_gemma3n_segment_event_parse (GST_EVENT_CAST (it->item), edge, NULL, NULL, NULL, NULL);
}

/* A dropped buffer becomes a GAP of its span, merged into a GAP just before it when they touch. */
static void
replace_with_gap (GstGemma3nQueue *q, GList *link, GstGemma3nDropped *dropped)
{
  Item *it = link->data;
  GstBuffer *buf = GST_BUFFER_CAST (it->item);
  GstClockTime pts = GST_BUFFER_PTS (buf), dur = item_duration (it);
  q->level -= dur;
  dropped->duration += dur;
  if (!GST_CLOCK_TIME_IS_VALID (dropped->start))
    dropped->start = pts;
  Item *prev = link->prev ? link->prev->data : NULL;
  GstClockTime prev_start, prev_dur;
  if (prev && GST_IS_EVENT (prev->item) && GST_EVENT_TYPE (prev->item) == GST_EVENT_GAP && prev->tag == it->tag) {
    gst_event_parse_gap (GST_EVENT_CAST (prev->item), &prev_start, &prev_dur);
    if (GST_CLOCK_TIME_IS_VALID (pts) && GST_CLOCK_TIME_IS_VALID (prev_dur) && prev_start + prev_dur == pts) {
      gst_event_unref (GST_EVENT_CAST (prev->item));
      prev->item = GST_MINI_OBJECT_CAST (gst_event_new_gap (prev_start, prev_dur + dur));
      item_free (it);
      g_queue_delete_link (&q->items, link);
      return;
    }
  }
  gst_buffer_unref (buf);
  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    it->item = GST_MINI_OBJECT_CAST (gst_event_new_gap (pts, dur));
  } else {
    g_free (it);
    g_queue_delete_link (&q->items, link);
  }
}

/* Drops the oldest queued segment (from its START to its END, or to the end of the queue when its END has
 * not come: later buffers of it are then dropped as they arrive). FALSE when the queue holds none. */
static gboolean
drop_oldest_segment (GstGemma3nQueue *q, GstGemma3nDropped *dropped)
{
  GList *l = q->items.head;
  GstGemma3nSegmentEdge edge;
  while (l && !(is_segment_edge (l->data, &edge) && edge == GST_GEMMA3N_SEGMENT_START))
    l = l->next;
  if (!l)
    return FALSE;
  gpointer tag = ((Item *) l->data)->tag;
  gboolean ended = FALSE;
  while (l && !ended) {
    GList *next = l->next;
    Item *it = l->data;
    if (it->tag != tag) {
      l = next;
      continue;
    }
    if (is_segment_edge (it, &edge)) {
      ended = edge == GST_GEMMA3N_SEGMENT_END;
      item_free (it);
      g_queue_delete_link (&q->items, l);
    } else if (GST_IS_BUFFER (it->item)) {
      replace_with_gap (q, l, dropped);
    }
    l = next;
  }
  if (!ended) {
    q->dropping_open_segment = TRUE;
    q->dropping_tag = tag;
  }
  dropped->segments++;
  return TRUE;
}

/* An item arriving for a segment being dropped: dropped too (buffers as GAPs). TRUE when it was taken. */
static gboolean
drop_arriving (GstGemma3nQueue *q, Item *it, GstGemma3nDropped *dropped)
{
  if (!q->dropping_open_segment || it->tag != q->dropping_tag)
    return FALSE;
  GstGemma3nSegmentEdge edge;
  if (is_segment_edge (it, &edge)) {
    if (edge == GST_GEMMA3N_SEGMENT_END) {
      q->dropping_open_segment = FALSE;
      item_free (it);
      return TRUE;
    }
    q->dropping_open_segment = FALSE; /* a new segment: kept */
    return FALSE;
  }
  if (!GST_IS_BUFFER (it->item))
    return FALSE;
  g_queue_push_tail (&q->items, it);
  q->level += item_duration (it);
  replace_with_gap (q, q->items.tail, dropped);
  return TRUE;
}

gboolean
gst_gemma3n_queue_push (GstGemma3nQueue *q, GstMiniObject *item, gpointer tag, gboolean live,
                        GstGemma3nDropped *dropped)
{
  GstGemma3nDropped none = NOTHING_DROPPED;
  GstGemma3nDropped *d = dropped ? dropped : &none;
  *d = none;
  Item *it = g_new (Item, 1);
  it->item = item;
  it->tag = tag;
  g_mutex_lock (&q->lock);
  /* A non-live push of media waits for room: upstream goes at the worker's pace. */
  while (!live && !q->flushing && GST_IS_BUFFER (item) && q->level > q->limit)
    g_cond_wait (&q->changed, &q->lock);
  if (q->flushing) {
    g_mutex_unlock (&q->lock);
    item_free (it);
    return FALSE;
  }
  if (!(live && drop_arriving (q, it, d))) {
    g_queue_push_tail (&q->items, it);
    q->level += item_duration (it);
    while (live && q->level > q->limit && drop_oldest_segment (q, d))
      ;
  }
  g_cond_broadcast (&q->changed);
  g_mutex_unlock (&q->lock);
  return TRUE;
}

/* Adds what one push dropped to what is unreported; TRUE, with `report` filled, when it is time to warn. */
static gboolean
account_dropped (GstGemma3nQueue *q, const GstGemma3nDropped *now, gboolean last, GstGemma3nDropped *report)
{
  gboolean dropped_now = now->segments > 0 || now->duration > 0;
  gboolean due = FALSE;
  g_mutex_lock (&q->lock);
  GstGemma3nDropped *acc = &q->unreported;
  if (dropped_now) {
    acc->segments += now->segments;
    acc->duration += now->duration;
    if (!GST_CLOCK_TIME_IS_VALID (acc->start))
      acc->start = now->start;
  }
  if ((acc->segments > 0 || acc->duration > 0)
      && (!dropped_now || last || acc->duration >= MAX (q->limit, WARN_EVERY))) {
    *report = *acc;
    *acc = NOTHING_DROPPED;
    due = TRUE;
  }
  g_mutex_unlock (&q->lock);
  return due;
}

static void
warn_dropped (GstGemma3nQueue *q, GstElement *element, const GstGemma3nDropped *d)
{
  g_mutex_lock (&q->lock);
  guint backlog_ms = (guint) (q->limit / GST_MSECOND);
  g_mutex_unlock (&q->lock);
  /* the machine computes slower than the live source speaks: basesink's "too slow" category */
  GST_ELEMENT_WARNING (element, CORE, CLOCK,
                       ("%s fell more than max-backlog (%u ms) behind the live source: dropped %u speech "
                        "segment(s), %.3f s of audio, from %" GST_TIME_FORMAT ".",
                        GST_ELEMENT_NAME (element), backlog_ms, d->segments, (double) d->duration / GST_SECOND,
                        GST_TIME_ARGS (d->start)),
                       ("dropped %" GST_TIME_FORMAT " of audio in %u segment(s) from %" GST_TIME_FORMAT
                        ": more than max-backlog = %u ms waited for the worker",
                        GST_TIME_ARGS (d->duration), d->segments, GST_TIME_ARGS (d->start), backlog_ms));
}

gboolean
gst_gemma3n_queue_push_reporting (GstGemma3nQueue *q, GstMiniObject *item, gpointer tag, gboolean live,
                                  GstElement *element)
{
  gboolean eos = GST_IS_EVENT (item) && GST_EVENT_TYPE (item) == GST_EVENT_EOS;
  GstGemma3nDropped dropped, report;
  if (!gst_gemma3n_queue_push (q, item, tag, live, &dropped))
    return FALSE;
  if (account_dropped (q, &dropped, eos, &report))
    warn_dropped (q, element, &report);
  return TRUE;
}

typedef struct {
  GstGemma3nQueue *q;
  GstPad *srcpad;
  gpointer tag;
  gboolean live;
  GstElement *element;
} Requeue;

static gboolean
requeue_one_sticky (GstPad *pad, GstEvent **event, gpointer user_data)
{
  (void) pad;
  const Requeue *r = user_data;
  GstEventType type = GST_EVENT_TYPE (*event);
  if (type == GST_EVENT_SEGMENT || type == GST_EVENT_EOS)
    return TRUE;
  GstEvent *sent = gst_pad_get_sticky_event (r->srcpad, type, 0);
  if (type == GST_EVENT_CAPS || sent != *event)
    gst_gemma3n_queue_push_reporting (r->q, GST_MINI_OBJECT_CAST (gst_event_ref (*event)), r->tag, r->live,
                                      r->element);
  if (sent)
    gst_event_unref (sent);
  return TRUE;
}

void
gst_gemma3n_queue_requeue_sticky (GstGemma3nQueue *q, GstPad *sinkpad, GstPad *srcpad, gpointer tag,
                                  gboolean live, GstElement *element)
{
  Requeue r = { q, srcpad, tag, live, element };
  gst_pad_sticky_events_foreach (sinkpad, requeue_one_sticky, &r);
}

gboolean
gst_gemma3n_upstream_is_live (GstPad *sinkpad)
{
  GstQuery *query = gst_query_new_latency ();
  gboolean live = FALSE;
  if (gst_pad_peer_query (sinkpad, query))
    gst_query_parse_latency (query, &live, NULL, NULL);
  gst_query_unref (query);
  return live;
}

gboolean
gst_gemma3n_worker_end_on_fatal (GstElement *element, GstPad *srcpad, GstFlowReturn ret, gboolean error_posted)
{
  if (ret != GST_FLOW_NOT_LINKED && ret >= GST_FLOW_EOS)
    return FALSE;
  if (!error_posted)
    GST_ELEMENT_FLOW_ERROR (element, ret);
  gst_pad_push_event (srcpad, gst_event_new_eos ());
  return TRUE;
}

GstMiniObject *
gst_gemma3n_queue_pop (GstGemma3nQueue *q, gpointer *tag)
{
  g_mutex_lock (&q->lock);
  while (!q->flushing && g_queue_is_empty (&q->items))
    g_cond_wait (&q->changed, &q->lock);
  GstMiniObject *item = NULL;
  if (!q->flushing) {
    Item *it = g_queue_pop_head (&q->items);
    q->level -= item_duration (it);
    item = it->item;
    if (tag)
      *tag = it->tag;
    g_free (it);
    q->busy = TRUE;
    g_cond_broadcast (&q->changed);
  }
  g_mutex_unlock (&q->lock);
  return item;
}

void
gst_gemma3n_queue_done (GstGemma3nQueue *q)
{
  g_mutex_lock (&q->lock);
  q->busy = FALSE;
  g_cond_broadcast (&q->changed);
  g_mutex_unlock (&q->lock);
}

gboolean
gst_gemma3n_queue_wait_empty (GstGemma3nQueue *q)
{
  g_mutex_lock (&q->lock);
  while (!q->flushing && (q->busy || !g_queue_is_empty (&q->items)))
    g_cond_wait (&q->changed, &q->lock);
  gboolean ok = !q->flushing;
  g_mutex_unlock (&q->lock);
  return ok;
}

void
gst_gemma3n_queue_set_flushing (GstGemma3nQueue *q, gboolean flushing)
{
  g_mutex_lock (&q->lock);
  q->flushing = flushing;
  if (flushing) {
    clear_locked (q);
    q->busy = FALSE;
  }
  g_cond_broadcast (&q->changed);
  g_mutex_unlock (&q->lock);
}

GstClockTime
gst_gemma3n_queue_level (GstGemma3nQueue *q)
{
  g_mutex_lock (&q->lock);
  GstClockTime level = q->level;
  g_mutex_unlock (&q->lock);
  return level;
}
