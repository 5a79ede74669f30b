/* gstgemma3nqueue.h — the bounded queue between a heavy element's streaming thread and its worker.
 *
 * GStreamer's streaming threads never run the model: an element's chain and event functions only put
 * buffers and serialized events here, and its worker (a task on the src pad) takes them out in order and
 * computes. The queue measures what it holds in media time (the DURATION of the buffers) and bounds it:
 *
 * - from a non-live source (a file) nothing is lost: a push waits while the queue holds more than its
 *   limit, so upstream goes at the worker's pace;
 * - from a live source a push never waits: when the queue holds more than its limit, the oldest speech
 *   segments the worker has not begun are dropped whole (their START/END events and buffers), each dropped
 *   buffer replaced by a GAP event of its span so that downstream does not stall; the caller is told what
 *   was dropped and warns. A segment the worker has begun is never cut, nor anything outside a segment
 *   (text prompts, caps, tags).
 *
 * Items are GstMiniObjects (buffers, events, queries the worker answers) with a tag the caller chooses (the
 * pad they came from). Flushing empties the queue and makes every push and pop return at once.
 *
 * The streaming-thread plumbing every element with a worker needs goes with it: whether upstream is live
 * (which policy a push follows), pushes that report live drops on the element's bus, the re-queueing of
 * a sink pad's sticky events after a flush emptied the queue, and how the worker ends a stream on a fatal
 * flow.
 */
#ifndef GST_GEMMA3N_QUEUE_H
#define GST_GEMMA3N_QUEUE_H

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _GstGemma3nQueue GstGemma3nQueue;

/* What one push dropped (live sources only). */
typedef struct {
  guint segments;         /* whole segments dropped */
  GstClockTime duration;  /* media time of their buffers */
  GstClockTime start;     /* PTS of the first dropped buffer, or NONE */
} GstGemma3nDropped;

/* limit: media time the queue holds before pushes wait (non-live) or segments are dropped (live). */
GstGemma3nQueue *gst_gemma3n_queue_new (GstClockTime limit);
void gst_gemma3n_queue_free (GstGemma3nQueue *q);
void gst_gemma3n_queue_set_limit (GstGemma3nQueue *q, GstClockTime limit);

/* Streaming thread: queues `item` (taking it) with `tag`. Returns FALSE, dropping item, when the queue is
 * flushing. `dropped` (may be NULL) is filled for a live push that had to drop. */
gboolean gst_gemma3n_queue_push (GstGemma3nQueue *q, GstMiniObject *item, gpointer tag, gboolean live,
                                 GstGemma3nDropped *dropped);
/* Streaming thread: gst_gemma3n_queue_push, with what live pushes drop reported on `element`'s bus as a
 * WARNING (CORE, CLOCK: the machine computes slower than the source speaks). A dropped segment goes in
 * pieces (its START, then its buffers as they arrive), so the warning waits until the drops stop (a push
 * that drops nothing, or EOS) to say how much; drops that never stop are still reported every
 * MAX (limit, 10 s) of dropped audio. */
gboolean gst_gemma3n_queue_push_reporting (GstGemma3nQueue *q, GstMiniObject *item, gpointer tag,
                                           gboolean live, GstElement *element);
/* Streaming thread, at FLUSH_STOP: the flush emptied the queue, and with it sticky events the worker had
 * not taken yet, which upstream does not send again (`sinkpad` holds them). Queues them again with `tag`,
 * except the segment and EOS (upstream sends a segment anew after a flush) and those `srcpad` already
 * carries; CAPS always, as the source pad carries the element's own caps, not the input's. */
void gst_gemma3n_queue_requeue_sticky (GstGemma3nQueue *q, GstPad *sinkpad, GstPad *srcpad, gpointer tag,
                                       gboolean live, GstElement *element);
/* Whether the source upstream of `sinkpad` is live, by its latency query (FALSE when nobody answers). */
gboolean gst_gemma3n_upstream_is_live (GstPad *sinkpad);

/* Worker, stopping on `ret`: a fatal flow (NOT_LINKED, or an error below EOS) ends the stream as GstQueue
 * does: a flow error on the bus (unless the element posted its own, `error_posted`) and EOS downstream, so
 * that the pipeline ends rather than stalls. TRUE when `ret` was fatal. */
gboolean gst_gemma3n_worker_end_on_fatal (GstElement *element, GstPad *srcpad, GstFlowReturn ret,
                                          gboolean error_posted);

/* Worker: the oldest item (the caller owns it) and its tag, waiting for one; NULL when flushing. The item
 * counts as in progress until gst_gemma3n_queue_done. */
GstMiniObject *gst_gemma3n_queue_pop (GstGemma3nQueue *q, gpointer *tag);
void gst_gemma3n_queue_done (GstGemma3nQueue *q);
/* Streaming thread (serialized queries, drain): waits until the worker has taken and finished everything
 * queued before. FALSE when flushing. */
gboolean gst_gemma3n_queue_wait_empty (GstGemma3nQueue *q);
/* Flushing drops everything queued and wakes every waiter; pushes and pops fail until it is unset. */
void gst_gemma3n_queue_set_flushing (GstGemma3nQueue *q, gboolean flushing);
/* Media time queued now. */
GstClockTime gst_gemma3n_queue_level (GstGemma3nQueue *q);

G_END_DECLS

#endif
