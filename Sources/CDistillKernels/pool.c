// A pool of worker threads for short parallel loops. Dispatching through the system's thread
// pool costs a wake-up (a futex call, tens of microseconds) per loop; one decoding step runs a few
// hundred small loops, so those wake-ups were a fifth of its time. Here the workers spin for a
// short while after each loop, so the next one finds them awake, and only then sleep.
//
// A loop is a number of chunks; the caller runs chunks too and claims them with the workers from
// one atomic word (generation, chunk count, next chunk), so a sleeping worker never delays it: the
// caller simply runs the chunks nobody else took. Only one loop runs at a time; a caller that finds
// the pool busy (another thread's loop, or a loop started from inside a chunk) gets 0 back and runs
// the loop some other way.
#include "CDistillKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

// state = generation << 32 | chunks << 16 | next chunk
#define GEN(s) ((uint32_t)((s) >> 32))
#define CHUNKS(s) ((long)(((s) >> 16) & 0xFFFF))
#define NEXT(s) ((long)((s) & 0xFFFF))

#define MAX_WORKERS 255

static struct {
    _Atomic uint64_t state;
    _Atomic long done;              // chunks finished in the current loop
    _Atomic int sleepers;           // workers blocked on `wake`
    _Atomic int busy;               // a loop is running
    dk_chunk_fn fn;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int workers;                    // threads started
    long spin;                      // checks of `state` before a worker sleeps
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .spin = 2000};

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

// Claims and runs chunks of the loop of generation `gen` until none is left.
static void run_chunks(uint32_t gen) {
    for (;;) {
        uint64_t s = atomic_load(&pool.state);
        if (GEN(s) != gen || NEXT(s) >= CHUNKS(s)) return;
        if (atomic_compare_exchange_weak(&pool.state, &s, s + 1)) {
            pool.fn(pool.ctx, NEXT(s));
            atomic_fetch_add(&pool.done, 1);
        }
    }
}

static void *worker_main(void *arg) {
    long id = (long)(intptr_t)arg;      // 0, 1, …: loops of c chunks use workers 0..<c − 1
    uint32_t seen = GEN(atomic_load(&pool.state));
    long spin = pool.spin;
    for (;;) {
        uint64_t s = atomic_load(&pool.state);
        for (long i = 0; GEN(s) == seen && i < spin; i++) {
            CPU_RELAX();
            s = atomic_load(&pool.state);
        }
        if (GEN(s) == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while (GEN(s = atomic_load(&pool.state)) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = GEN(s);
        // A worker that the loop does not need (the thread count was lowered) goes back to sleep
        // without spinning; the others spin for the next loop.
        if (id < CHUNKS(s) - 1) {
            run_chunks(seen);
            spin = pool.spin;
        } else {
            spin = 0;
        }
    }
    return NULL;
}

// Starts workers until there are `n`.
static void ensure_workers(int n) {
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    if (pool.workers >= n) return;
    pthread_mutex_lock(&start_lock);
    while (pool.workers < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)pool.workers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool.workers++;
    }
    pthread_mutex_unlock(&start_lock);
}

int dk_pool_run(long chunks, dk_chunk_fn fn, void *ctx) {
    if (chunks < 1 || chunks > 0xFFFF) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    ensure_workers((int)(chunks - 1));
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store(&pool.done, 0);
    uint32_t gen = GEN(atomic_load(&pool.state)) + 1;
    atomic_store(&pool.state, (uint64_t)gen << 32 | (uint64_t)chunks << 16);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_chunks(gen);
    while (atomic_load(&pool.done) < chunks) CPU_RELAX();
    atomic_store(&pool.busy, 0);
    return 1;
}

void dk_pool_set_spin(long checks) { pool.spin = checks < 0 ? 0 : checks; }

static _Thread_local long thread_limit = 0;
void dk_thread_limit_set(long n) { thread_limit = n < 0 ? 0 : n; }
long dk_thread_limit(void) { return thread_limit; }
