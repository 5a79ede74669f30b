/* test-pool — the kernels' shared thread pool with several users at once: while one user's parallel region
 * holds every thread of its budget, other users' regions run to the end, each on as many threads as its own
 * budget. Run without G3N_THREADS (which pins every budget). */
#include "kernels/threadpool.h"

#include <glib.h>
#include <stdio.h>

static int passed, failed;

/* ---------------------------------------------------------------- the pool, several users at once */

typedef struct {
  GMutex lock;
  GCond cond;
  gboolean released;
  gint entered;      /* ranges of the blocked region that started */
  gint done;         /* indices the free regions processed */
  gint timed_out;    /* a blocked range gave up waiting */
  GMutex seen_lock;
  GHashTable *threads_seen; /* threads that ran the current free region's ranges */
} PoolProbe;

/* A range that holds its thread until released (or 10 s pass: a pool that ran one region at a time would
 * otherwise hang the test instead of failing it). */
static void
blocking_range (int begin, int end, gpointer data)
{
  (void) begin, (void) end;
  PoolProbe *p = data;
  g_atomic_int_inc (&p->entered);
  gint64 deadline = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&p->lock);
  while (!p->released)
    if (!g_cond_wait_until (&p->cond, &p->lock, deadline)) {
      g_atomic_int_set (&p->timed_out, 1);
      break;
    }
  g_mutex_unlock (&p->lock);
}

/* Slow enough (20 ms a range) that every thread of the budget takes part if it is free. */
static void
counting_range (int begin, int end, gpointer data)
{
  PoolProbe *p = data;
  g_mutex_lock (&p->seen_lock);
  g_hash_table_add (p->threads_seen, g_thread_self ());
  g_mutex_unlock (&p->seen_lock);
  g_usleep (20000);
  g_atomic_int_add (&p->done, end - begin);
}

/* A region of `budget` parts run by this thread: on how many threads it ran. */
static int
free_region (PoolProbe *p, int budget)
{
  g_hash_table_remove_all (p->threads_seen);
  int previous = g3n_kernels_push_threads (budget);
  g3n_parallel_for (budget, 1, counting_range, p);
  g3n_kernels_pop_threads (previous);
  return (int) g_hash_table_size (p->threads_seen);
}

static gpointer
blocked_user (gpointer data)
{
  g3n_kernels_push_threads (2);
  g3n_parallel_for (2, 1, blocking_range, data);
  return NULL;
}

/* The threads a region of `budget` parts gets while another user's region holds `held` workers: its
 * caller, and the free workers of a pool grown to this region's budget, or to every open region's, up to
 * the cores. */
static int
expected_threads (int budget, int held)
{
  int cores = (int) g_get_num_processors ();
  int workers = MAX (budget - 1, MIN (held + budget - 1, cores - 1));
  return 1 + MIN (budget - 1, MAX (0, workers - held));
}

/* One user's parallel region is stuck on both threads of its budget; two other users' regions still run to
 * the end meanwhile, each on as many threads as its own budget where the cores allow — no caller waits for
 * another's region, and none has to make do with the threads another left over. */
static void
test_pool_regions_at_once (void)
{
  PoolProbe p = { .threads_seen = g_hash_table_new (NULL, NULL) };
  g_mutex_init (&p.seen_lock);
  g_mutex_init (&p.lock);
  g_cond_init (&p.cond);
  GThread *blocked = g_thread_new ("blocked user", blocked_user, &p);
  while (g_atomic_int_get (&p.entered) < 2) /* until both its ranges hold threads */
    g_usleep (100);
  int on2 = free_region (&p, 2), on3 = free_region (&p, 3);
  g_mutex_lock (&p.lock);
  p.released = TRUE;
  g_cond_broadcast (&p.cond);
  g_mutex_unlock (&p.lock);
  g_thread_join (blocked);
  int want2 = expected_threads (2, 1), want3 = expected_threads (3, 1);
  gboolean ok = !g_atomic_int_get (&p.timed_out) && g_atomic_int_get (&p.done) == 5 && on2 == want2 && on3 == want3;
  printf ("%s the pool: while one user's region holds both threads of its budget, two others' regions "
          "(budgets 2 and 3) run to the end on %d and %d threads (%d cores; %d of 5 ranges, on %d and %d threads)\n",
          ok ? "ok  " : "FAIL", want2, want3, (int) g_get_num_processors (), p.done, on2, on3);
  ok ? passed++ : failed++;
  g_mutex_clear (&p.lock);
  g_mutex_clear (&p.seen_lock);
  g_cond_clear (&p.cond);
  g_hash_table_unref (p.threads_seen);
}

int
main (void)
{
  if (g_getenv ("G3N_THREADS")) {
    printf ("SKIP: G3N_THREADS pins every budget; this test needs the budgets it sets\n");
    return 77;
  }
  test_pool_regions_at_once ();
  printf ("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
