/* test-gst-queue — the bounded queue between an element's streaming thread and its worker
 * (plugins/gstgemma3nqueue.c), on its own with threads: non-live pushes wait at the limit, live pushes never
 * wait and drop the oldest unbegun segments as GAPs, begun segments and items outside segments are kept,
 * flushing unblocks everyone, wait_empty waits for the worker's done; the streaming-thread helpers: one drop
 * warning per burst (and at EOS), the sticky events a flush lost queued again, upstream's liveness from its
 * latency answer, which flows end the stream. Expected values are from first principles (the spans pushed, the events stored). */
#include <gst/check/gstcheck.h>
#include <string.h>

#include "gstgemma3nformat.h"
#include "gstgemma3nqueue.h"

#define MS GST_MSECOND
#define WAIT_US (10 * G_USEC_PER_SEC)
#define BLOCKED_US (100 * 1000) /* how long a blocked call is watched to stay blocked */

static GstMiniObject *
buffer_at (GstClockTime pts, GstClockTime duration)
{
  GstBuffer *b = gst_buffer_new ();
  GST_BUFFER_PTS (b) = pts;
  GST_BUFFER_DURATION (b) = duration;
  return GST_MINI_OBJECT_CAST (b);
}

static GstMiniObject *
edge (GstGemma3nSegmentEdge e, guint64 index)
{
  return GST_MINI_OBJECT_CAST (gst_gemma3n_segment_event_new (e, index, 0, GST_CLOCK_TIME_NONE,
                                                               GST_GEMMA3N_SEGMENT_PAUSE));
}

static GstMiniObject *
tag_event (void)
{
  return GST_MINI_OBJECT_CAST (gst_event_new_tag (gst_tag_list_new (GST_TAG_TITLE, "prompt", NULL)));
}

static void
push_live (GstGemma3nQueue *q, GstMiniObject *item, GstGemma3nDropped *dropped)
{
  fail_unless (gst_gemma3n_queue_push (q, item, NULL, TRUE, dropped));
}

/* What the worker takes next, checked: a buffer of that span, an event of that type, or a segment edge. */
static void
pop_buffer (GstGemma3nQueue *q, GstClockTime pts, GstClockTime duration)
{
  GstMiniObject *o = gst_gemma3n_queue_pop (q, NULL);
  fail_unless (o && GST_IS_BUFFER (o), "a buffer at %" GST_TIME_FORMAT, GST_TIME_ARGS (pts));
  fail_unless_equals_uint64 (GST_BUFFER_PTS (o), pts);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (o), duration);
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
}

static void
pop_gap (GstGemma3nQueue *q, GstClockTime start, GstClockTime duration)
{
  GstMiniObject *o = gst_gemma3n_queue_pop (q, NULL);
  fail_unless (o && GST_IS_EVENT (o) && GST_EVENT_TYPE (o) == GST_EVENT_GAP, "a GAP at %" GST_TIME_FORMAT,
               GST_TIME_ARGS (start));
  GstClockTime s, d;
  gst_event_parse_gap (GST_EVENT_CAST (o), &s, &d);
  fail_unless_equals_uint64 (s, start);
  fail_unless_equals_uint64 (d, duration);
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
}

static void
pop_edge (GstGemma3nQueue *q, GstGemma3nSegmentEdge want, guint64 want_index)
{
  GstMiniObject *o = gst_gemma3n_queue_pop (q, NULL);
  GstGemma3nSegmentEdge e;
  guint64 index;
  fail_unless (o && GST_IS_EVENT (o)
                   && gst_gemma3n_segment_event_parse (GST_EVENT_CAST (o), &e, &index, NULL, NULL, NULL),
               "a segment event");
  fail_unless (e == want && index == want_index, "segment %" G_GUINT64_FORMAT " %s (got %" G_GUINT64_FORMAT " %s)",
               want_index, want == GST_GEMMA3N_SEGMENT_START ? "START" : "END", index,
               e == GST_GEMMA3N_SEGMENT_START ? "START" : "END");
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
}

static void
pop_event (GstGemma3nQueue *q, GstEventType type)
{
  GstMiniObject *o = gst_gemma3n_queue_pop (q, NULL);
  fail_unless (o && GST_IS_EVENT (o) && GST_EVENT_TYPE (o) == type, "a %s event", gst_event_type_get_name (type));
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
}

static void
check_dropped (const GstGemma3nDropped *d, guint segments, GstClockTime duration, GstClockTime start)
{
  fail_unless_equals_int (d->segments, segments);
  fail_unless_equals_uint64 (d->duration, duration);
  fail_unless_equals_uint64 (d->start, start);
}

/* ---------------------------------------------------------------- threads */

typedef struct {
  GstGemma3nQueue *q;
  guint n;          /* pushes to make (pusher) */
  gint done;        /* calls that returned (atomic) */
  gint failed;      /* calls that returned FALSE / NULL (atomic) */
} Caller;

static gpointer
push_nonlive (gpointer data)
{
  Caller *c = data;
  for (guint i = 0; i < c->n; i++) {
    if (!gst_gemma3n_queue_push (c->q, buffer_at (i * 50 * MS, 50 * MS), NULL, FALSE, NULL))
      g_atomic_int_inc (&c->failed);
    g_atomic_int_inc (&c->done);
  }
  return NULL;
}

static gpointer
pop_one (gpointer data)
{
  Caller *c = data;
  GstMiniObject *o = gst_gemma3n_queue_pop (c->q, NULL);
  if (o) {
    gst_mini_object_unref (o);
    gst_gemma3n_queue_done (c->q);
  } else {
    g_atomic_int_inc (&c->failed);
  }
  g_atomic_int_inc (&c->done);
  return NULL;
}

static gpointer
wait_empty (gpointer data)
{
  Caller *c = data;
  if (!gst_gemma3n_queue_wait_empty (c->q))
    g_atomic_int_inc (&c->failed);
  g_atomic_int_inc (&c->done);
  return NULL;
}

static gboolean
reaches (gint *counter, gint value)
{
  gint64 until = g_get_monotonic_time () + WAIT_US;
  while (g_atomic_int_get (counter) < value && g_get_monotonic_time () < until)
    g_usleep (1000);
  return g_atomic_int_get (counter) >= value;
}

static gboolean
stays_at (gint *counter, gint value)
{
  g_usleep (BLOCKED_US);
  return g_atomic_int_get (counter) == value;
}

/* ---------------------------------------------------------------- tests */

/* A file source: pushes go on while the queue holds at most its limit, then wait for the worker. */
GST_START_TEST (test_nonlive_waits)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  Caller c = { q, 4, 0, 0 };
  GThread *t = g_thread_new ("pusher", push_nonlive, &c);
  /* 0 → 50 → 100 → 150 ms: the fourth push finds 150 ms > 100 ms queued and waits */
  fail_unless (reaches (&c.done, 3));
  fail_unless (stays_at (&c.done, 3), "the fourth push waits at the limit");
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 150 * MS);
  pop_buffer (q, 0, 50 * MS); /* 100 ms left: room */
  fail_unless (reaches (&c.done, 4), "the push resumes when the worker takes one");
  g_thread_join (t);
  fail_unless_equals_int (c.failed, 0);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 150 * MS);
  for (guint i = 1; i < 4; i++)
    pop_buffer (q, i * 50 * MS, 50 * MS);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 0);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

/* A live source: never waits; over the limit the oldest unbegun segments go whole, their buffers replaced
 * by GAPs (merged when contiguous), what lies between segments kept. */
GST_START_TEST (test_live_drops_oldest_segments)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  GstGemma3nDropped d;
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 0), &d);
  push_live (q, buffer_at (0, 50 * MS), &d);
  push_live (q, buffer_at (50 * MS, 50 * MS), &d); /* contiguous with the first */
  push_live (q, edge (GST_GEMMA3N_SEGMENT_END, 0), &d);
  check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE); /* 100 ms: at the limit, not over */
  push_live (q, tag_event (), &d);                /* between segments (a prompt): never dropped */
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 1), &d);
  push_live (q, buffer_at (1000 * MS, 50 * MS), &d); /* 150 ms: segment 0 goes */
  check_dropped (&d, 1, 100 * MS, 0);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 50 * MS);
  push_live (q, buffer_at (1060 * MS, 50 * MS), &d); /* not contiguous: its own GAP when dropped */
  push_live (q, edge (GST_GEMMA3N_SEGMENT_END, 1), &d);
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 2), &d);
  check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE);
  push_live (q, buffer_at (2000 * MS, 50 * MS), &d); /* 150 ms: segment 1 goes */
  check_dropped (&d, 1, 100 * MS, 1000 * MS);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 50 * MS);

  pop_gap (q, 0, 100 * MS); /* segment 0: one GAP of both buffers, no START/END */
  pop_event (q, GST_EVENT_TAG);
  pop_gap (q, 1000 * MS, 50 * MS);
  pop_gap (q, 1060 * MS, 50 * MS);
  pop_edge (q, GST_GEMMA3N_SEGMENT_START, 2);
  pop_buffer (q, 2000 * MS, 50 * MS);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 0);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

/* A segment the worker has begun (its START popped) is never cut, however far behind the worker is; nor is
 * media outside any segment. */
GST_START_TEST (test_live_keeps_begun_and_unsegmented)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  GstGemma3nDropped d;
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 0), &d);
  pop_edge (q, GST_GEMMA3N_SEGMENT_START, 0);
  for (guint i = 0; i < 6; i++) {
    push_live (q, buffer_at (i * 50 * MS, 50 * MS), &d);
    check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE);
  }
  push_live (q, edge (GST_GEMMA3N_SEGMENT_END, 0), &d);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 300 * MS);
  for (guint i = 0; i < 6; i++)
    pop_buffer (q, i * 50 * MS, 50 * MS);
  pop_edge (q, GST_GEMMA3N_SEGMENT_END, 0);

  for (guint i = 0; i < 5; i++) { /* no segment events at all (input not from gemma3nmel) */
    push_live (q, buffer_at (i * 50 * MS, 50 * MS), &d);
    check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE);
  }
  push_live (q, tag_event (), &d);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 250 * MS);
  for (guint i = 0; i < 5; i++)
    pop_buffer (q, i * 50 * MS, 50 * MS);
  pop_event (q, GST_EVENT_TAG);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

/* A segment dropped before its END came keeps being dropped as its buffers arrive, until its END; the
 * segment after it is queued again. */
GST_START_TEST (test_live_drops_open_segment_as_it_arrives)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  GstGemma3nDropped d;
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 0), &d);
  pop_edge (q, GST_GEMMA3N_SEGMENT_START, 0); /* begun: kept */
  for (guint i = 0; i < 3; i++)
    push_live (q, buffer_at (i * 50 * MS, 50 * MS), &d);
  push_live (q, edge (GST_GEMMA3N_SEGMENT_END, 0), &d);
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 1), &d); /* 150 ms queued: segment 1 goes at once */
  check_dropped (&d, 1, 0, GST_CLOCK_TIME_NONE);
  push_live (q, buffer_at (1000 * MS, 50 * MS), &d);
  check_dropped (&d, 0, 50 * MS, 1000 * MS);
  push_live (q, buffer_at (1050 * MS, 50 * MS), &d); /* merged into the GAP before it */
  check_dropped (&d, 0, 50 * MS, 1050 * MS);
  push_live (q, edge (GST_GEMMA3N_SEGMENT_END, 1), &d); /* the dropped segment ends */
  check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 150 * MS);
  for (guint i = 0; i < 3; i++) /* the worker catches up */
    pop_buffer (q, i * 50 * MS, 50 * MS);
  pop_edge (q, GST_GEMMA3N_SEGMENT_END, 0);
  push_live (q, edge (GST_GEMMA3N_SEGMENT_START, 2), &d);
  push_live (q, buffer_at (2000 * MS, 50 * MS), &d);
  check_dropped (&d, 0, 0, GST_CLOCK_TIME_NONE);
  pop_gap (q, 1000 * MS, 100 * MS);
  pop_edge (q, GST_GEMMA3N_SEGMENT_START, 2);
  pop_buffer (q, 2000 * MS, 50 * MS);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

/* Flushing wakes a push waiting for room and a pop waiting for items, empties the queue, and fails every
 * call until it is unset. */
GST_START_TEST (test_flushing)
{
  GstGemma3nQueue *full = gst_gemma3n_queue_new (100 * MS), *empty = gst_gemma3n_queue_new (100 * MS);
  Caller pusher = { full, 4, 0, 0 }, popper = { empty, 0, 0, 0 };
  GThread *tp = g_thread_new ("pusher", push_nonlive, &pusher), *tq = g_thread_new ("popper", pop_one, &popper);
  fail_unless (reaches (&pusher.done, 3));
  fail_unless (stays_at (&pusher.done, 3) && stays_at (&popper.done, 0), "both wait");
  gst_gemma3n_queue_set_flushing (full, TRUE);
  gst_gemma3n_queue_set_flushing (empty, TRUE);
  g_thread_join (tp);
  g_thread_join (tq);
  fail_unless_equals_int (pusher.failed, 1); /* the waiting push returned FALSE */
  fail_unless_equals_int (popper.failed, 1); /* the waiting pop returned NULL */
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (full), 0);
  fail_if (gst_gemma3n_queue_push (full, buffer_at (0, 50 * MS), NULL, TRUE, NULL));
  fail_unless (gst_gemma3n_queue_pop (full, NULL) == NULL);
  fail_if (gst_gemma3n_queue_wait_empty (full));
  gst_gemma3n_queue_set_flushing (full, FALSE);
  fail_unless (gst_gemma3n_queue_push (full, buffer_at (7 * MS, 50 * MS), NULL, FALSE, NULL));
  pop_buffer (full, 7 * MS, 50 * MS); /* only what came after the flush */
  gst_gemma3n_queue_free (full);
  gst_gemma3n_queue_free (empty);
}
GST_END_TEST;

/* wait_empty returns once the worker has taken everything and finished the last item (done), not when it
 * merely popped it; flushing ends the wait with FALSE. */
GST_START_TEST (test_wait_empty)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  fail_unless (gst_gemma3n_queue_wait_empty (q), "an idle empty queue does not wait");
  fail_unless (gst_gemma3n_queue_push (q, buffer_at (0, 10 * MS), NULL, FALSE, NULL));
  fail_unless (gst_gemma3n_queue_push (q, tag_event (), NULL, FALSE, NULL));
  Caller waiter = { q, 0, 0, 0 };
  GThread *t = g_thread_new ("waiter", wait_empty, &waiter);
  fail_unless (stays_at (&waiter.done, 0), "two items queued: waits");
  GstMiniObject *o = gst_gemma3n_queue_pop (q, NULL);
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
  fail_unless (stays_at (&waiter.done, 0), "one item queued: waits");
  o = gst_gemma3n_queue_pop (q, NULL);
  fail_unless (stays_at (&waiter.done, 0), "the last item popped but not done: waits");
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
  fail_unless (reaches (&waiter.done, 1), "done: the wait ends");
  g_thread_join (t);
  fail_unless_equals_int (waiter.failed, 0);

  fail_unless (gst_gemma3n_queue_push (q, buffer_at (0, 10 * MS), NULL, FALSE, NULL));
  Caller flushed = { q, 0, 0, 0 };
  t = g_thread_new ("waiter", wait_empty, &flushed);
  fail_unless (stays_at (&flushed.done, 0));
  gst_gemma3n_queue_set_flushing (q, TRUE);
  g_thread_join (t);
  fail_unless_equals_int (flushed.failed, 1);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

/* ---------------------------------------------------------------- the streaming-thread helpers */

static void
push_reporting (GstGemma3nQueue *q, GstMiniObject *item, GstElement *element)
{
  fail_unless (gst_gemma3n_queue_push_reporting (q, item, NULL, TRUE, element));
}

/* The next WARNING on `bus`, whose message must hold `want`; NULL `want`: there must be none. */
static void
check_warning (GstBus *bus, const gchar *want)
{
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  if (!want) {
    fail_unless (m == NULL, "no warning yet");
    return;
  }
  fail_unless (m != NULL, "a warning with \"%s\"", want);
  GError *error = NULL;
  gchar *debug = NULL;
  gst_message_parse_warning (m, &error, &debug);
  fail_unless (g_error_matches (error, GST_CORE_ERROR, GST_CORE_ERROR_CLOCK), "%s", error->message);
  fail_unless (strstr (error->message, want) && strstr (error->message, "worker0"), "%s", error->message);
  fail_unless (debug && strstr (debug, "segment"), "%s", debug);
  g_error_free (error);
  g_free (debug);
  gst_message_unref (m);
}

/* A dropped segment goes in pieces: one warning once the drops stop, saying how much, and one at EOS. */
GST_START_TEST (test_push_reporting_warns_per_burst)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  GstElement *element = gst_bin_new ("worker0");
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (element, bus);
  push_reporting (q, edge (GST_GEMMA3N_SEGMENT_START, 0), element);
  push_reporting (q, buffer_at (0, 100 * MS), element);
  push_reporting (q, edge (GST_GEMMA3N_SEGMENT_END, 0), element);
  push_reporting (q, edge (GST_GEMMA3N_SEGMENT_START, 1), element);
  push_reporting (q, buffer_at (1000 * MS, 60 * MS), element); /* 160 ms: segment 0 goes */
  check_warning (bus, NULL);
  push_reporting (q, buffer_at (1060 * MS, 20 * MS), element); /* 80 ms: the drops stopped */
  check_warning (bus, "dropped 1 speech segment(s), 0.100 s of audio, from 0:00:00.000000000");
  check_warning (bus, NULL);
  push_reporting (q, buffer_at (1080 * MS, 40 * MS), element); /* 120 ms: segment 1, still open, goes */
  push_reporting (q, buffer_at (1120 * MS, 30 * MS), element); /* dropped as it arrives */
  check_warning (bus, NULL);
  push_reporting (q, GST_MINI_OBJECT_CAST (gst_event_new_eos ()), element);
  check_warning (bus, "dropped 1 speech segment(s), 0.150 s of audio, from 0:00:01.000000000");
  check_warning (bus, NULL);
  gst_element_set_bus (element, NULL);
  gst_object_unref (bus);
  gst_object_unref (element);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

static GstPad *
active_pad (const gchar *name, GstPadDirection direction)
{
  GstPad *pad = gst_pad_new (name, direction);
  fail_unless (gst_pad_set_active (pad, TRUE));
  return pad;
}

/* After a flush: the sink pad's sticky events the source pad lacks, and the caps, go in the queue again;
 * the segment does not (upstream sends a new one). */
GST_START_TEST (test_requeue_sticky)
{
  GstGemma3nQueue *q = gst_gemma3n_queue_new (100 * MS);
  GstPad *sink = active_pad ("sink", GST_PAD_SINK), *src = active_pad ("src", GST_PAD_SRC);
  GstEvent *start = gst_event_new_stream_start ("s");
  GstSegment segment;
  gst_segment_init (&segment, GST_FORMAT_TIME);
  fail_unless_equals_int (gst_pad_store_sticky_event (sink, start), GST_FLOW_OK);
  fail_unless_equals_int (gst_pad_store_sticky_event (src, start), GST_FLOW_OK); /* src has it already */
  GstEvent *in_caps = gst_event_new_caps (gst_caps_new_empty_simple ("audio/x-mel"));
  fail_unless_equals_int (gst_pad_store_sticky_event (sink, in_caps), GST_FLOW_OK);
  GstEvent *out_caps = gst_event_new_caps (gst_caps_new_empty_simple ("audio/x-tokens"));
  fail_unless_equals_int (gst_pad_store_sticky_event (src, out_caps), GST_FLOW_OK);
  GstEvent *seg = gst_event_new_segment (&segment);
  fail_unless_equals_int (gst_pad_store_sticky_event (sink, seg), GST_FLOW_OK);
  GstEvent *tags = GST_EVENT_CAST (tag_event ());
  fail_unless_equals_int (gst_pad_store_sticky_event (sink, tags), GST_FLOW_OK);

  gint tag;
  gst_gemma3n_queue_requeue_sticky (q, sink, src, &tag, FALSE, NULL);
  gpointer got_tag = NULL;
  GstMiniObject *o = gst_gemma3n_queue_pop (q, &got_tag);
  fail_unless (o == GST_MINI_OBJECT_CAST (in_caps) && got_tag == &tag, "the input caps first");
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
  o = gst_gemma3n_queue_pop (q, NULL);
  fail_unless (o == GST_MINI_OBJECT_CAST (tags), "then the tags");
  gst_mini_object_unref (o);
  gst_gemma3n_queue_done (q);
  fail_unless_equals_uint64 (gst_gemma3n_queue_level (q), 0);
  gst_gemma3n_queue_set_flushing (q, TRUE);
  fail_unless (gst_gemma3n_queue_pop (q, NULL) == NULL, "nothing else: no stream-start, no segment");

  gst_event_unref (start);
  gst_event_unref (in_caps);
  gst_event_unref (out_caps);
  gst_event_unref (seg);
  gst_event_unref (tags);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_gemma3n_queue_free (q);
}
GST_END_TEST;

static gboolean
answer_live (GstPad *pad, GstObject *parent, GstQuery *query)
{
  (void) pad;
  (void) parent;
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return FALSE;
  gst_query_set_latency (query, TRUE, 0, GST_CLOCK_TIME_NONE);
  return TRUE;
}

GST_START_TEST (test_upstream_is_live)
{
  GstPad *sink = active_pad ("sink", GST_PAD_SINK), *src = gst_pad_new ("src", GST_PAD_SRC);
  fail_if (gst_gemma3n_upstream_is_live (sink), "nobody upstream: not live");
  gst_pad_set_query_function (src, answer_live);
  fail_unless (gst_pad_set_active (src, TRUE));
  fail_unless_equals_int (gst_pad_link (src, sink), GST_PAD_LINK_OK);
  fail_unless (gst_gemma3n_upstream_is_live (sink), "a live answer");
  gst_object_unref (sink);
  gst_object_unref (src);
}
GST_END_TEST;

static gint eos_received;

static gboolean
count_eos (GstPad *pad, GstObject *parent, GstEvent *event)
{
  (void) pad;
  (void) parent;
  if (GST_EVENT_TYPE (event) == GST_EVENT_EOS)
    g_atomic_int_inc (&eos_received);
  gst_event_unref (event);
  return TRUE;
}

/* What the worker does on stopping with `ret`: (fatal?, EOS sent downstream?, error messages posted). */
static void
check_end_on_fatal (GstFlowReturn ret, gboolean error_posted, gboolean fatal, guint n_errors)
{
  GstElement *element = gst_bin_new ("worker0");
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (element, bus);
  GstPad *src = active_pad ("src", GST_PAD_SRC), *sink = gst_pad_new ("sink", GST_PAD_SINK);
  gst_pad_set_event_function (sink, count_eos);
  fail_unless (gst_pad_set_active (sink, TRUE));
  fail_unless_equals_int (gst_pad_link (src, sink), GST_PAD_LINK_OK);
  g_atomic_int_set (&eos_received, 0);
  fail_unless_equals_int (gst_gemma3n_worker_end_on_fatal (element, src, ret, error_posted), fatal);
  fail_unless_equals_int (g_atomic_int_get (&eos_received), fatal ? 1 : 0);
  guint errors = 0;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR))) {
    errors++;
    gst_message_unref (m);
  }
  fail_unless_equals_int (errors, n_errors);
  gst_element_set_bus (element, NULL);
  gst_object_unref (bus);
  gst_object_unref (element);
  gst_object_unref (src);
  gst_object_unref (sink);
}

/* NOT_LINKED and errors below EOS end the stream (an error, unless posted already, and EOS); OK, EOS and
 * FLUSHING do not. */
GST_START_TEST (test_worker_end_on_fatal)
{
  check_end_on_fatal (GST_FLOW_OK, FALSE, FALSE, 0);
  check_end_on_fatal (GST_FLOW_EOS, FALSE, FALSE, 0);
  check_end_on_fatal (GST_FLOW_FLUSHING, FALSE, FALSE, 0);
  check_end_on_fatal (GST_FLOW_NOT_LINKED, FALSE, TRUE, 1);
  check_end_on_fatal (GST_FLOW_NOT_NEGOTIATED, FALSE, TRUE, 1);
  check_end_on_fatal (GST_FLOW_ERROR, TRUE, TRUE, 0);
}
GST_END_TEST;

static Suite *
queue_suite (void)
{
  Suite *s = suite_create ("gstgemma3nqueue");
  TCase *tc = tcase_create ("general");
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_nonlive_waits);
  tcase_add_test (tc, test_live_drops_oldest_segments);
  tcase_add_test (tc, test_live_keeps_begun_and_unsegmented);
  tcase_add_test (tc, test_live_drops_open_segment_as_it_arrives);
  tcase_add_test (tc, test_flushing);
  tcase_add_test (tc, test_wait_empty);
  tcase_add_test (tc, test_push_reporting_warns_per_burst);
  tcase_add_test (tc, test_requeue_sticky);
  tcase_add_test (tc, test_upstream_is_live);
  tcase_add_test (tc, test_worker_end_on_fatal);
  return s;
}

GST_CHECK_MAIN (queue);
