/* threadpool.c — persistent workers shared by every user of the kernels, running several regions at once.
 *
 * Creating threads per matrix product would cost more than a decode-step GEMV itself, so workers are made
 * once and wait on a condition variable. Each parallel region is split into a fixed number of parts (the
 * caller's thread budget, see g3n_kernels_threads); the caller and any idle worker claim parts until none
 * is left. Several callers (a decoder, an audio encoder and a vision encoder on their own threads) can have
 * regions open at once: none waits for another's region, and each claims its own parts itself, so it
 * always progresses even when every worker is busy elsewhere. Results do not depend on who runs a part:
 * the split depends only on the region's size and its part count.
 */
#include "threadpool.h"
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>

#define MAX_THREADS 256

/* One open parallel region; lives on its caller's stack. */
typedef struct Region {
  int n, parts;
  G3nRangeFn fn;
  gpointer data;
  int next_part;          /* atomic: the next part to claim */
  int parts_done;         /* atomic */
  struct Region *older, *newer; /* the pool's list of regions with parts left to claim */
} Region;

typedef struct {
  pthread_mutex_t lock;   /* guards the list, the worker count and the sleepers */
  pthread_cond_t wake;    /* a region was opened */
  pthread_cond_t done;    /* some region's last part finished */
  Region *oldest, *newest;
  guint64 generation;     /* atomic: counts regions opened, so spinning workers see new work */
  int n_workers;
  int wanted;             /* workers the open regions could use at once: the sum of their parts - 1 */
} Pool;

static Pool pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
                     .done = PTHREAD_COND_INITIALIZER };

/* The calling thread's budget (g3n_kernels_push_threads); 0 = none set. */
static __thread int thread_budget;

/* The cores this process may run on (its CPU affinity, as a container's cpuset limits it). */
static int
online_cores (void)
{
  return (int) CLAMP (g_get_num_processors (), 1, MAX_THREADS);
}

int
g3n_kernels_threads (void)
{
  /* G3N_THREADS pins every user's count, for tests and benchmarks only. */
  const char *env = g_getenv ("G3N_THREADS");
  if (env && atoi (env) > 0)
    return MIN (atoi (env), MAX_THREADS);
  return thread_budget > 0 ? thread_budget : online_cores ();
}

int
g3n_kernels_push_threads (int n_threads)
{
  int previous = thread_budget;
  thread_budget = n_threads > 0 ? MIN (n_threads, MAX_THREADS) : 0;
  return previous;
}

void
g3n_kernels_pop_threads (int previous)
{
  thread_budget = previous;
}

static void
run_part (Region *r, int part)
{
  int begin = (int) ((gint64) r->n * part / r->parts), end = (int) ((gint64) r->n * (part + 1) / r->parts);
  if (begin < end)
    r->fn (begin, end, r->data);
}

/* Marks a part finished. The last one wakes the region's caller if it went to sleep; the caller may
 * return (and its stack region vanish) as soon as parts_done reaches parts, so r is not touched after. */
static void
finish_part (Region *r)
{
  int parts = r->parts;
  if (__atomic_add_fetch (&r->parts_done, 1, __ATOMIC_ACQ_REL) == parts) {
    pthread_mutex_lock (&pool.lock);
    pthread_cond_broadcast (&pool.done);
    pthread_mutex_unlock (&pool.lock);
  }
}

static void
unlink_region (Region *r)
{
  if (r->older)
    r->older->newer = r->newer;
  else if (pool.oldest == r)
    pool.oldest = r->newer;
  if (r->newer)
    r->newer->older = r->older;
  else if (pool.newest == r)
    pool.newest = r->older;
  r->older = r->newer = NULL;
}

/* Under pool.lock: a part of the oldest region with parts left, so regions finish in the order opened. A
 * claimed part keeps its region alive (its caller waits for every part), so it can run after unlocking. */
static gboolean
claim_locked (Region **region, int *part)
{
  for (Region *r = pool.oldest; r; r = r->newer) {
    int p = __atomic_fetch_add (&r->next_part, 1, __ATOMIC_ACQ_REL);
    if (p < r->parts) {
      *region = r;
      *part = p;
      return TRUE;
    }
  }
  return FALSE;
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
worker_main (void *unused)
{
  for (;;) {
    guint64 seen = __atomic_load_n (&pool.generation, __ATOMIC_ACQUIRE);
    Region *r;
    int part;
    pthread_mutex_lock (&pool.lock);
    gboolean got = claim_locked (&r, &part);
    pthread_mutex_unlock (&pool.lock);
    if (got) {
      run_part (r, part);
      finish_part (r);
      continue;
    }
    for (int i = 0; i < SPIN && __atomic_load_n (&pool.generation, __ATOMIC_ACQUIRE) == seen; i++)
      cpu_relax ();
    pthread_mutex_lock (&pool.lock);
    while (__atomic_load_n (&pool.generation, __ATOMIC_ACQUIRE) == seen)
      pthread_cond_wait (&pool.wake, &pool.lock);
    pthread_mutex_unlock (&pool.lock);
  }
  return NULL;
}

/* Under pool.lock: enough workers that the region just opened can run all its parts at once, and that
 * every open region can, up to the cores there are: each user gets its whole budget while the machine has
 * cores for it, and beyond that more threads would only take turns on the same cores (spinning against each
 * other). Workers are never stopped: the pool keeps the most it needed. */
static void
grow_locked (int parts)
{
  int target = MAX (parts - 1, MIN (pool.wanted, online_cores () - 1));
  while (pool.n_workers < target) {
    pthread_t t;
    if (pthread_create (&t, NULL, worker_main, NULL) != 0)
      break; /* fewer workers: the callers run more parts themselves */
    pthread_detach (t);
    pool.n_workers++;
  }
}

void
g3n_parallel_for (int n, int grain, G3nRangeFn fn, gpointer data)
{
  int threads = g3n_kernels_threads ();
  int parts = MIN (threads, MAX (1, n / MAX (grain, 1)));
  if (parts <= 1) {
    fn (0, n, data);
    return;
  }
  Region r = { .n = n, .parts = parts, .fn = fn, .data = data };
  pthread_mutex_lock (&pool.lock);
  pool.wanted += parts - 1;
  grow_locked (parts);
  r.older = pool.newest;
  if (pool.newest)
    pool.newest->newer = &r;
  else
    pool.oldest = &r;
  pool.newest = &r;
  __atomic_add_fetch (&pool.generation, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast (&pool.wake);
  pthread_mutex_unlock (&pool.lock);

  /* The caller claims its own parts without the lock: it never depends on a worker being free. */
  for (int p; (p = __atomic_fetch_add (&r.next_part, 1, __ATOMIC_ACQ_REL)) < parts;) {
    run_part (&r, p);
    __atomic_add_fetch (&r.parts_done, 1, __ATOMIC_ACQ_REL);
  }
  pthread_mutex_lock (&pool.lock);
  unlink_region (&r);
  pool.wanted -= parts - 1;
  pthread_mutex_unlock (&pool.lock);

  for (int i = 0; i < SPIN && __atomic_load_n (&r.parts_done, __ATOMIC_ACQUIRE) < parts; i++)
    cpu_relax ();
  if (__atomic_load_n (&r.parts_done, __ATOMIC_ACQUIRE) < parts) {
    pthread_mutex_lock (&pool.lock);
    while (__atomic_load_n (&r.parts_done, __ATOMIC_ACQUIRE) < parts)
      pthread_cond_wait (&pool.done, &pool.lock);
    pthread_mutex_unlock (&pool.lock);
  }
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
