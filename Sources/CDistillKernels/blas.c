// Run-time binding to a CBLAS library. Nothing is linked at build time, so the package builds on a
// machine with only the Swift toolchain; when OpenBLAS (or Accelerate on Apple platforms) is
// present, GEMM goes through its cblas_sgemm.
#include "CDistillKernels.h"
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef void (*cblas_sgemm_fn)(int order, int transA, int transB, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);
typedef void (*set_threads_fn)(int);

typedef char *(*corename_fn)(void);

static cblas_sgemm_fn g_sgemm = NULL;
static set_threads_fn g_set_threads = NULL;
static corename_fn g_corename = NULL;
static corename_fn g_config = NULL;
static char g_name[512] = "";

static int try_open(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
    cblas_sgemm_fn f = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    if (!f) { dlclose(h); return 0; }
    g_sgemm = f;
    g_set_threads = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
    g_corename = (corename_fn)dlsym(h, "openblas_get_corename");
    g_config = (corename_fn)dlsym(h, "openblas_get_config");
    strncpy(g_name, path, sizeof(g_name) - 1);
    return 1;
}

int dk_blas_load(const char *path) {
    // OpenBLAS's idle threads spin for 2^28 cycles by default before sleeping; between GEMMs that
    // spinning takes the cores from Distill's own parallel loops (normalisation, attention,
    // softmax, optimizer). 2^4 (its minimum; read when the library starts) makes them yield almost
    // at once: about 10% faster training steps on 2 cores (distill bench train). A value the user
    // set is kept.
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
    if (path) return try_open(path);
    static const char *candidates[] = {
#if defined(__APPLE__)
        "/System/Library/Frameworks/Accelerate.framework/Accelerate",
#endif
        "libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.3.21.so",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "libopenblas.dylib", "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    };
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (try_open(candidates[i])) return 1;
    return 0;
}

int dk_blas_available(void) { return g_sgemm != NULL; }
const char *dk_blas_name(void) { return g_name; }
void dk_blas_set_threads(int n) { if (g_set_threads) g_set_threads(n); }
const char *dk_blas_core_name(void) { return g_corename ? g_corename() : NULL; }
const char *dk_blas_config(void) { return g_config ? g_config() : NULL; }

void dk_blas_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                   const float *A, long lda, const float *B, long ldb,
                   float beta, float *C, long ldc) {
    enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
    g_sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, (int)M, (int)N, (int)K,
            alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
