// Math shared by the kernels that does not depend on thread layout. It compiles as plain C++ too,
// so a host-side test checks it against NumPy without a GPU (tests/test_plugins.py).
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define ART_HD __host__ __device__ __forceinline__
#else
#define ART_HD inline
#endif

namespace art {

// Online softmax: running maximum m and the sum s of exp(x - m) over the values pushed so far.
struct SoftmaxState {
    float m;
    float s;
};

ART_HD SoftmaxState softmax_init() { return SoftmaxState{-INFINITY, 0.0f}; }

ART_HD SoftmaxState softmax_push(SoftmaxState st, float x) {
    if (st.m == -INFINITY) return SoftmaxState{x, 1.0f};
    const float m = fmaxf(st.m, x);
    return SoftmaxState{m, st.s * expf(st.m - m) + expf(x - m)};
}

// Combine two partial states (from two threads or two warps).
ART_HD SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b) {
    if (a.m == -INFINITY) return b;
    if (b.m == -INFINITY) return a;
    const float m = fmaxf(a.m, b.m);
    return SoftmaxState{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// exp(x - m) / s: the probability of x under a finished state.
ART_HD float softmax_prob(SoftmaxState st, float x) { return expf(x - st.m) / st.s; }

// 1 / max(||x||, eps), from the sum of squares: matches torch.nn.functional.normalize.
ART_HD float inv_norm(float sum_of_squares, float eps) { return 1.0f / fmaxf(sqrtf(sum_of_squares), eps); }

}  // namespace art
