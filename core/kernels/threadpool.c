/* threadpool.c — persistent workers woken per parallel region.
 *
 * Creating threads per matrix product would cost more than a decode-step GEMV itself, so workers are made
 * once and wait on a condition variable. One region runs at a time; a second caller arriving while a
 * region is running does its work inline instead of queueing behind it.
 */
#include "threadpool.h"
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  GMutex region; /* held by the thread running a parallel region */
  int n_workers;   /* threads besides the caller */
  pthread_t *workers;
  guint64 generation;
  int pending;
  /* the current region */
  int n, parts;
  G3nRangeFn fn;
  gpointer data;
} Pool;

static Pool pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };
static int requested_threads; /* 0 = online cores */
static GOnce pool_once = G_ONCE_INIT;

int
g3n_kernels_threads (void)
{
  if (requested_threads > 0)
    return requested_threads;
  const char *env = g_getenv ("G3N_THREADS"); /* lets tests and benchmarks pin the count */
  if (env && atoi (env) > 0)
    return MIN (atoi (env), 256);
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int) MIN (n, 256) : 1;
}

static void
run_part (int part, int parts, int n, G3nRangeFn fn, gpointer data)
{
  int begin = (int) ((gint64) n * part / parts), end = (int) ((gint64) n * (part + 1) / parts);
  if (begin < end)
    fn (begin, end, data);
}

/* Iterations a thread spins before sleeping (~tens of µs): decode runs hundreds of short regions per token,
 * and a futex wake-up per region costs more than the work of many of them. */
#define SPIN 4000

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

static void *
worker_main (void *arg)
{
  int index = GPOINTER_TO_INT (arg); /* 1..n_workers; the caller is part 0 */
  guint64 seen = 0;
  for (;;) {
    for (int i = 0; i < SPIN && __atomic_load_n (&pool.generation, __ATOMIC_ACQUIRE) == seen; i++)
      cpu_relax ();
    pthread_mutex_lock (&pool.lock);
    while (pool.generation == seen)
      pthread_cond_wait (&pool.wake, &pool.lock);
    seen = pool.generation;
    int n = pool.n, parts = pool.parts;
    G3nRangeFn fn = pool.fn;
    gpointer data = pool.data;
    pthread_mutex_unlock (&pool.lock);
    if (index < parts)
      run_part (index, parts, n, fn, data);
    if (__atomic_sub_fetch (&pool.pending, 1, __ATOMIC_ACQ_REL) == 0) {
      /* under the lock, so a caller that saw pending > 0 and went to sleep is woken */
      pthread_mutex_lock (&pool.lock);
      pthread_cond_signal (&pool.done);
      pthread_mutex_unlock (&pool.lock);
    }
  }
  return NULL;
}

static gpointer
start_pool (gpointer unused)
{
  g_mutex_init (&pool.region);
  pool.n_workers = g3n_kernels_threads () - 1;
  pool.workers = g_new0 (pthread_t, MAX (pool.n_workers, 1));
  for (int i = 0; i < pool.n_workers; i++)
    pthread_create (&pool.workers[i], NULL, worker_main, GINT_TO_POINTER (i + 1));
  return NULL;
}

void
g3n_parallel_for (int n, int grain, G3nRangeFn fn, gpointer data)
{
  g_once (&pool_once, start_pool, NULL);
  int parts = MIN (pool.n_workers + 1, g3n_kernels_threads ());
  parts = MIN (parts, MAX (1, n / MAX (grain, 1)));
  if (parts <= 1 || !g_mutex_trylock (&pool.region)) {
    fn (0, n, data);
    return;
  }
  pthread_mutex_lock (&pool.lock);
  pool.n = n;
  pool.parts = parts;
  pool.fn = fn;
  pool.data = data;
  __atomic_store_n (&pool.pending, pool.n_workers, __ATOMIC_RELEASE);
  __atomic_add_fetch (&pool.generation, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast (&pool.wake);
  pthread_mutex_unlock (&pool.lock);

  run_part (0, parts, n, fn, data);

  for (int i = 0; i < SPIN && __atomic_load_n (&pool.pending, __ATOMIC_ACQUIRE) > 0; i++)
    cpu_relax ();
  pthread_mutex_lock (&pool.lock);
  while (__atomic_load_n (&pool.pending, __ATOMIC_ACQUIRE) > 0)
    pthread_cond_wait (&pool.done, &pool.lock);
  pthread_mutex_unlock (&pool.lock);
  g_mutex_unlock (&pool.region);
}

void
g3n_kernels_set_threads (int n_threads)
{
  /* The pool is sized at first use; later calls can only use fewer of its workers. */
  requested_threads = n_threads > 0 ? n_threads : 0;
}

void *
g3n_thread_scratch (GPrivate *key, GPrivate *size_key, gsize bytes)
{
  gsize have = GPOINTER_TO_SIZE (g_private_get (size_key));
  void *buf = g_private_get (key);
  if (!buf || have < bytes) {
    void *fresh = NULL;
    bytes = MAX (bytes, have + have / 4);
    if (posix_memalign (&fresh, 64, bytes) != 0)
      g_error ("kernels: out of memory for %" G_GSIZE_FORMAT " bytes of scratch", bytes);
    g_private_replace (key, fresh); /* frees the old one */
    g_private_set (size_key, GSIZE_TO_POINTER (bytes));
    buf = fresh;
  }
  return buf;
}
