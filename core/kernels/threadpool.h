/* threadpool.h — a persistent pool of worker threads for the kernels. */
#ifndef G3N_THREADPOOL_H
#define G3N_THREADPOOL_H

#include <glib.h>

G_BEGIN_DECLS

/* Work item: process indices [begin, end). */
typedef void (*G3nRangeFn) (int begin, int end, gpointer data);

/* Runs fn over [0, n) split into contiguous ranges, at most one per thread of the caller's budget
 * (g3n_kernels_threads), on the process's shared kernel pool, and returns when all are done. Several
 * threads may run regions at once: each caller runs parts of its own region itself and idle workers take
 * the rest, so no caller waits for another's region; the pool grows so that every open region can have all
 * its parts running at once, up to the online cores (each user gets its whole budget while there are cores
 * for it). Results do not depend on which thread runs a range.
 * `grain` is the smallest range worth giving a thread. */
void g3n_parallel_for (int n, int grain, G3nRangeFn fn, gpointer data);

/* A buffer of at least `bytes` (64-byte aligned) owned by the calling thread and kept between calls: a
 * prefill makes hundreds of products of the same few shapes, and fresh multi-MiB allocations would be
 * page-faulted in every time. `key` (G_PRIVATE_INIT (free)) holds the buffer, `size_key` its size; it
 * grows by at least a quarter when too small. */
void *g3n_thread_scratch (GPrivate *key, GPrivate *size_key, gsize bytes);

/* The calling thread's budget: the threads its parallel regions are split over. Set per user (a context,
 * an encoder call) with g3n_kernels_push_threads; default: online cores; G3N_THREADS overrides it for
 * every user (tests and benchmarks). */
int g3n_kernels_threads (void);
/* Sets the calling thread's budget (0 = online cores) and returns the previous one, which the caller
 * restores with g3n_kernels_pop_threads when its call ends. */
int g3n_kernels_push_threads (int n_threads);
void g3n_kernels_pop_threads (int previous);

G_END_DECLS

#endif
