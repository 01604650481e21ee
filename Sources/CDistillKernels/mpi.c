// Run-time binding to an MPI library (Open MPI's libmpi.so.40 or MPICH's libmpi.so.12), opened
// with dlopen like the CBLAS binding: nothing is linked at build time, so the package builds and
// runs single-process with only the Swift toolchain. Only what data-parallel training needs:
// init, rank and size, in-place sum all-reduce, broadcast, barrier, abort, finalize.
//
// The two families differ in their handles: Open MPI's are addresses of global objects in the
// library (ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum, …; MPI_IN_PLACE is (void *)1),
// MPICH's are integer constants (MPI_COMM_WORLD 0x44000000, MPI_FLOAT 0x4c00040a, MPI_SUM
// 0x58000003, …; MPI_IN_PLACE is (void *)-1). Both are passed here as intptr_t, which the C
// calling conventions of x86-64 and arm64 pass in the same integer registers as a pointer or an int.
#include "CDistillKernels.h"
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*init_fn)(int *, char ***);
typedef int (*init_thread_fn)(int *, char ***, int, int *);
typedef int (*query_thread_fn)(int *);
typedef int (*initialized_fn)(int *);
typedef int (*finalize_fn)(void);
typedef int (*comm_int_fn)(intptr_t, int *);
typedef int (*allreduce_fn)(const void *, void *, int, intptr_t, intptr_t, intptr_t);
typedef int (*bcast_fn)(void *, int, intptr_t, int, intptr_t);
typedef int (*barrier_fn)(intptr_t);
typedef int (*abort_fn)(intptr_t, int);

static struct {
    init_fn init; init_thread_fn init_thread; query_thread_fn query_thread; initialized_fn initialized; finalize_fn finalize;
    comm_int_fn rank, size; allreduce_fn allreduce; bcast_fn bcast; barrier_fn barrier; abort_fn abort;
    intptr_t world, f32, f64, byte, sum;
    void *in_place;
    char name[512];
} g;

static void *sym(void *h, const char *name) { return dlsym(h, name); }

static int try_open(const char *path) {
    // RTLD_GLOBAL: Open MPI's components (dlopened by the library itself) resolve libmpi's symbols.
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h) return 0;
    g.init = (init_fn)sym(h, "MPI_Init");
    g.init_thread = (init_thread_fn)sym(h, "MPI_Init_thread");
    g.query_thread = (query_thread_fn)sym(h, "MPI_Query_thread");
    g.initialized = (initialized_fn)sym(h, "MPI_Initialized");
    g.finalize = (finalize_fn)sym(h, "MPI_Finalize");
    g.rank = (comm_int_fn)sym(h, "MPI_Comm_rank");
    g.size = (comm_int_fn)sym(h, "MPI_Comm_size");
    g.allreduce = (allreduce_fn)sym(h, "MPI_Allreduce");
    g.bcast = (bcast_fn)sym(h, "MPI_Bcast");
    g.barrier = (barrier_fn)sym(h, "MPI_Barrier");
    g.abort = (abort_fn)sym(h, "MPI_Abort");
    if (!g.init || !g.initialized || !g.finalize || !g.rank || !g.size || !g.allreduce || !g.bcast || !g.barrier || !g.abort) {
        dlclose(h);
        memset(&g, 0, sizeof(g));
        return 0;
    }
    void *comm = sym(h, "ompi_mpi_comm_world");
    if (comm) {  // Open MPI
        g.world = (intptr_t)comm;
        g.f32 = (intptr_t)sym(h, "ompi_mpi_float");
        g.f64 = (intptr_t)sym(h, "ompi_mpi_double");
        g.byte = (intptr_t)sym(h, "ompi_mpi_byte");
        g.sum = (intptr_t)sym(h, "ompi_mpi_op_sum");
        g.in_place = (void *)1;
        if (!g.f32 || !g.f64 || !g.byte || !g.sum) { dlclose(h); memset(&g, 0, sizeof(g)); return 0; }
    } else {     // MPICH and its derivatives (Intel MPI, MVAPICH): the standard ABI constants
        g.world = 0x44000000;
        g.f32 = 0x4c00040a;
        g.f64 = 0x4c00080b;
        g.byte = 0x4c00010d;
        g.sum = 0x58000003;
        g.in_place = (void *)-1;
    }
    strncpy(g.name, path, sizeof(g.name) - 1);
    return 1;
}

int dk_mpi_load(const char *path) {
    if (g.init) return 1;
    if (path) return try_open(path);
    static const char *candidates[] = {
        "libmpi.so.40", "libmpi.so.12", "libmpi.so", "libmpich.so.12", "libmpich.so",
        "/usr/lib/x86_64-linux-gnu/libmpi.so.40", "/usr/lib/aarch64-linux-gnu/libmpi.so.40",
        "/usr/lib/x86_64-linux-gnu/libmpich.so.12", "/usr/lib64/openmpi/lib/libmpi.so.40", "/usr/lib64/mpich/lib/libmpi.so.12",
        "libmpi.40.dylib", "libmpi.dylib", "/opt/homebrew/lib/libmpi.dylib",
    };
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (try_open(candidates[i])) return 1;
    return 0;
}

const char *dk_mpi_name(void) { return g.name; }

// MPI_THREAD_SERIALIZED (2 in Open MPI and MPICH): calls may come from any thread, one at a time
// — the training step all-reduces on a helper thread while the backward pass goes on.
int dk_mpi_init(int *thread_level) {
    int done = 0, provided = 0;
    if (g.initialized(&done) != 0) return -1;
    if (done) {
        if (g.query_thread) g.query_thread(&provided);
    } else if (g.init_thread) {
        int rc = g.init_thread(NULL, NULL, 2, &provided);
        if (rc != 0) return rc;
    } else {
        int rc = g.init(NULL, NULL);
        if (rc != 0) return rc;
    }
    if (thread_level) *thread_level = provided;
    return 0;
}

int dk_mpi_rank(void) { int r = -1; g.rank(g.world, &r); return r; }
int dk_mpi_size(void) { int s = 0; g.size(g.world, &s); return s; }

// MPI counts are ints: large buffers go in pieces of 2^30 elements.
static const long piece = 1L << 30;

// The collective over `count` elements of `size` bytes, a piece at a time; 0 or the first error.
static int in_pieces(char *buffer, long count, size_t size, int (*one)(char *, int)) {
    for (long at = 0; at < count; at += piece) {
        int rc = one(buffer + at * (long)size, (int)(count - at < piece ? count - at : piece));
        if (rc != 0) return rc;
    }
    return 0;
}

static int sum_f32(char *p, int n) { return g.allreduce(g.in_place, p, n, g.f32, g.sum, g.world); }
static int sum_f64(char *p, int n) { return g.allreduce(g.in_place, p, n, g.f64, g.sum, g.world); }
static int bcast_root;
static int bcast_bytes(char *p, int n) { return g.bcast(p, n, g.byte, bcast_root, g.world); }

int dk_mpi_allreduce_sum_f32(float *buffer, long count) { return in_pieces((char *)buffer, count, sizeof(float), sum_f32); }
int dk_mpi_allreduce_sum_f64(double *buffer, long count) { return in_pieces((char *)buffer, count, sizeof(double), sum_f64); }

int dk_mpi_bcast_bytes(void *buffer, long count, int root) {
    bcast_root = root;
    return in_pieces((char *)buffer, count, 1, bcast_bytes);
}

int dk_mpi_barrier(void) { return g.barrier(g.world); }
void dk_mpi_abort(int code) { g.abort(g.world, code); }
int dk_mpi_finalize(void) { return g.finalize(); }
