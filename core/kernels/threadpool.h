/* threadpool.h — a persistent pool of worker threads for the kernels. */
#ifndef G3N_THREADPOOL_H
#define G3N_THREADPOOL_H

#include <glib.h>

G_BEGIN_DECLS

/* Work item: process indices [begin, end). */
typedef void (*G3nRangeFn) (int begin, int end, gpointer data);

/* Runs fn over [0, n) split into contiguous ranges, one per thread, on the process's kernel pool (created
 * on first use with g3n_kernels_threads() workers). Returns when all ranges are done. If the pool is busy
 * (another thread of the application is inside a parallel region) the work runs on the caller's thread:
 * results are the same, only slower. `grain` is the smallest range worth giving a thread. */
void g3n_parallel_for (int n, int grain, G3nRangeFn fn, gpointer data);

/* A buffer of at least `bytes` (64-byte aligned) owned by the calling thread and kept between calls: a
 * prefill makes hundreds of products of the same few shapes, and fresh multi-MiB allocations would be
 * page-faulted in every time. `key` (G_PRIVATE_INIT (free)) holds the buffer, `size_key` its size; it
 * grows by at least a quarter when too small. */
void *g3n_thread_scratch (GPrivate *key, GPrivate *size_key, gsize bytes);

/* Threads the kernels use (g3n_kernels_set_threads; default: online cores). */
int g3n_kernels_threads (void);

G_END_DECLS

#endif
