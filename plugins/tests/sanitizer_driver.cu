// Runs every kernel of art_ops.cu through its C ABI at the shapes the tests use, every dtype, for
// compute-sanitizer (memcheck, racecheck, synccheck, initcheck): benchmarks/gpu_check.py builds it
// with nvcc beside art_ops.cu and runs it under each tool. Inputs are zeros (initialised memory);
// exit 1 on any refused shape or CUDA error. `sanitizer_driver small`: the small shapes only (for the
// slow tools).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "art_ops.h"

namespace {

int failures = 0;

void* zeros(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess || cudaMemset(p, 0, bytes) != cudaSuccess) ++failures;
    return p;
}

void check(int status, const char* what, int dtype) {
    if (status != 0 || cudaDeviceSynchronize() != cudaSuccess) {
        std::fprintf(stderr, "%s dtype %d: status %d, %s\n", what, dtype, status,
                     cudaGetErrorString(cudaGetLastError()));
        ++failures;
    }
}

void qr(int dtype, int n, int nq, int len, int dim, int heads) {
    const size_t elem = dtype == ART_FLOAT32 ? 4 : 2;
    std::vector<void*> b = {zeros(elem * n * nq * dim), zeros(elem * n * len * dim), zeros(elem * n * len * dim),
                            zeros(elem * n * nq * dim), zeros(elem * n * nq * len)};
    check(art_qr_attention(static_cast<art_dtype>(dtype), b[0], b[1], b[2], b[3], b[4], n, nq, len, dim, heads,
                           0.5f, nullptr),
          "qr_attention", dtype);
    for (void* p : b) cudaFree(p);
}

void link(int dtype, int batch, int t, int k, int d) {
    const size_t elem = dtype == ART_FLOAT32 ? 4 : 2;
    std::vector<void*> b = {zeros(elem * batch * t * k * d), zeros(elem * batch * k * d), zeros(elem * batch * k * d),
                            zeros(elem * batch * t * k), zeros(elem * batch * (t - 1) * k)};
    check(art_tracklet_link(static_cast<art_dtype>(dtype), b[0], b[1], b[2], b[3], b[4], batch, t, k, d, 0.1f,
                            1e-6f, nullptr),
          "tracklet_link", dtype);
    for (void* p : b) cudaFree(p);
}

}  // namespace

int main(int argc, char** argv) {
    const bool small = argc > 1 && std::strcmp(argv[1], "small") == 0;
    for (int dtype : {ART_FLOAT32, ART_FLOAT16, ART_BFLOAT16}) {
        if (!small) qr(dtype, 128, 2, 196, 256, 8);  // the paper's 8 clips × 16 frames
        qr(dtype, small ? 2 : 8, 2, 49, 256, 8);      // art-edge-s
        qr(dtype, small ? 1 : 2, 16, 1024, 64, 1);    // two query groups a frame
        qr(dtype, 3, 2, 7, 6, 3);                     // element loads
        qr(dtype, 2, 2, 9, 96, 2);                    // the general kernel (a head of 48)
        link(dtype, small ? 1 : 8, 16, 2, 256);
        link(dtype, 1, 64, 16, 32);
        link(dtype, 1, 40, 2, 256);  // beyond shared memory: rows read where they are
    }
    std::printf(failures ? "FAILED (%d)\n" : "ok\n", failures);
    return failures ? 1 : 0;
}
