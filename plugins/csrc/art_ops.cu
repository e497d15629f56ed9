// CUDA kernels of art::QRAttention and art::TrackletLink (FP32 and FP16), behind the C ABI of
// art_ops.h. Only CUDA headers here, so this compiles wherever nvcc is (no TensorRT, no torch).
// Reference semantics: art_train/ops.py (qr_attention_reference, tracklet_link_reference).
#include <cuda_fp16.h>

#include "art_math.cuh"
#include "art_ops.h"

namespace art {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ SoftmaxState warp_softmax_merge(SoftmaxState st) {
    for (int o = 16; o > 0; o >>= 1) {
        SoftmaxState other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o)};
        st = softmax_merge(st, other);
    }
    return st;
}

// Every thread gets the merged state of the whole block. `scratch` holds 2 * kWarps floats.
__device__ SoftmaxState block_softmax_merge(SoftmaxState st, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    st = warp_softmax_merge(st);
    if (lane == 0) {
        scratch[warp] = st.m;
        scratch[kWarps + warp] = st.s;
    }
    __syncthreads();
    SoftmaxState total = softmax_init();
    for (int w = 0; w < kWarps; ++w) total = softmax_merge(total, SoftmaxState{scratch[w], scratch[kWarps + w]});
    __syncthreads();
    return total;
}

// One block per (frame n, query qi). For each head: scores over the frame's tokens into shared
// memory, one online-softmax pass merged across the block, probabilities, the weighted sum of the
// values, and the head-mean attention map accumulated in shared memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
qr_attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ out,
                    T* __restrict__ attn, int nq, int len, int dim, int heads, float scale) {
    extern __shared__ float smem[];
    float* scores = smem;               // [len]
    float* mean_map = scores + len;     // [len]
    float* qh = mean_map + len;         // [head_dim]
    float* scratch = qh + dim / heads;  // [2 * kWarps]
    const int n = blockIdx.x / nq, qi = blockIdx.x % nq, hd = dim / heads;
    const T* qrow = q + (static_cast<size_t>(n) * nq + qi) * dim;
    const T* kframe = k + static_cast<size_t>(n) * len * dim;
    const T* vframe = v + static_cast<size_t>(n) * len * dim;
    for (int l = threadIdx.x; l < len; l += kThreads) mean_map[l] = 0.0f;
    for (int h = 0; h < heads; ++h) {
        for (int j = threadIdx.x; j < hd; j += kThreads) qh[j] = to_float(qrow[h * hd + j]);
        __syncthreads();
        SoftmaxState st = softmax_init();
        for (int l = threadIdx.x; l < len; l += kThreads) {
            const T* krow = kframe + static_cast<size_t>(l) * dim + h * hd;
            float s = 0.0f;
            for (int j = 0; j < hd; ++j) s += qh[j] * to_float(krow[j]);
            s *= scale;
            scores[l] = s;
            st = softmax_push(st, s);
        }
        st = block_softmax_merge(st, scratch);
        for (int l = threadIdx.x; l < len; l += kThreads) {
            const float p = softmax_prob(st, scores[l]);
            scores[l] = p;
            mean_map[l] += p / heads;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < hd; j += kThreads) {
            float acc = 0.0f;
            for (int l = 0; l < len; ++l) acc += scores[l] * to_float(vframe[static_cast<size_t>(l) * dim + h * hd + j]);
            out[(static_cast<size_t>(n) * nq + qi) * dim + h * hd + j] = from_float<T>(acc);
        }
        __syncthreads();
    }
    for (int l = threadIdx.x; l < len; l += kThreads)
        attn[(static_cast<size_t>(n) * nq + qi) * len + l] = from_float<T>(mean_map[l]);
}

// Dot product of two length-d rows by one warp; every lane gets the result.
template <typename T>
__device__ __forceinline__ float warp_dot(const T* a, const T* b, int d) {
    float s = 0.0f;
    for (int i = threadIdx.x & 31; i < d; i += 32) s += to_float(a[i]) * to_float(b[i]);
    return warp_sum(s);
}

// One block per (clip b, tracklet kk): norms, cosine to each of the K semantics, softmax over
// time per semantic, saliency = mean over semantics, weighted sum, adjacent-frame coherence.
template <typename T>
__global__ void __launch_bounds__(kThreads)
tracklet_link_kernel(const T* __restrict__ r, const T* __restrict__ s, T* __restrict__ agg, T* __restrict__ saliency,
                     T* __restrict__ coherence, int frames, int nk, int d, float temperature, float eps) {
    __shared__ float r_inv[ART_LINK_MAX_FRAMES];
    __shared__ float s_inv[ART_QR_MAX_QUERIES];
    __shared__ float sim[ART_LINK_MAX_FRAMES * ART_QR_MAX_QUERIES];
    __shared__ float weight[ART_LINK_MAX_FRAMES];
    const int b = blockIdx.x / nk, kk = blockIdx.x % nk;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    auto row_r = [&](int t) { return r + ((static_cast<size_t>(b) * frames + t) * nk + kk) * d; };
    auto row_s = [&](int j) { return s + (static_cast<size_t>(b) * nk + j) * d; };
    for (int t = warp; t < frames; t += kWarps) {
        const float ss = warp_dot(row_r(t), row_r(t), d);
        if (lane == 0) r_inv[t] = inv_norm(ss, eps);
    }
    for (int j = warp; j < nk; j += kWarps) {
        const float ss = warp_dot(row_s(j), row_s(j), d);
        if (lane == 0) s_inv[j] = inv_norm(ss, eps);
    }
    __syncthreads();
    for (int p = warp; p < frames * nk; p += kWarps) {
        const int t = p / nk, j = p % nk;
        const float dot = warp_dot(row_r(t), row_s(j), d);
        if (lane == 0) sim[p] = dot * r_inv[t] * s_inv[j] / temperature;
    }
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < nk) {  // one thread per semantic: softmax over time, in place
        const int j = threadIdx.x;
        SoftmaxState st = softmax_init();
        for (int t = 0; t < frames; ++t) st = softmax_push(st, sim[t * nk + j]);
        for (int t = 0; t < frames; ++t) sim[t * nk + j] = softmax_prob(st, sim[t * nk + j]);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < frames; t += kThreads) {
        float w = 0.0f;
        for (int j = 0; j < nk; ++j) w += sim[t * nk + j];
        weight[t] = w / nk;
        saliency[(static_cast<size_t>(b) * frames + t) * nk + kk] = from_float<T>(w / nk);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += kThreads) {
        float acc = 0.0f;
        for (int t = 0; t < frames; ++t) acc += weight[t] * to_float(row_r(t)[i]);
        agg[(static_cast<size_t>(b) * nk + kk) * d + i] = from_float<T>(acc);
    }
    for (int t = warp; t + 1 < frames; t += kWarps) {
        const float dot = warp_dot(row_r(t), row_r(t + 1), d);
        if (lane == 0)
            coherence[(static_cast<size_t>(b) * (frames - 1) + t) * nk + kk] = from_float<T>(dot * r_inv[t] * r_inv[t + 1]);
    }
}

// Dynamic shared memory of qr_attention_kernel: scores and mean map [len] each, the head's query
// [head_dim], the block merge's scratch [2 * kWarps].
size_t qr_shared_bytes(int len, int dim, int heads) {
    return (2 * static_cast<size_t>(len) + dim / heads + 2 * kWarps) * sizeof(float);
}

template <typename T>
int launch_qr(const void* q, const void* k, const void* v, void* out, void* attn, int n, int nq, int len, int dim,
              int heads, float scale, cudaStream_t stream) {
    const size_t shared = qr_shared_bytes(len, dim, heads);
    qr_attention_kernel<T><<<n * nq, kThreads, shared, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out),
        static_cast<T*>(attn), nq, len, dim, heads, scale);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_link(const void* r, const void* s, void* agg, void* sal, void* coh, int b, int t, int k, int d,
                float temperature, float eps, cudaStream_t stream) {
    tracklet_link_kernel<T><<<b * k, kThreads, 0, stream>>>(
        static_cast<const T*>(r), static_cast<const T*>(s), static_cast<T*>(agg), static_cast<T*>(sal),
        static_cast<T*>(coh), t, k, d, temperature, eps);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace
}  // namespace art

extern "C" int art_qr_attention(art_dtype dtype, const void* q, const void* k, const void* v, void* out, void* attn,
                                int n, int nq, int len, int dim, int heads, float scale, cudaStream_t stream) {
    if (n < 1 || nq < 1 || nq > ART_QR_MAX_QUERIES || len < 1 || len > ART_QR_MAX_TOKENS || heads < 1 || dim < 1 ||
        dim % heads != 0 || art::qr_shared_bytes(len, dim, heads) > ART_MAX_DYNAMIC_SHARED)
        return ART_EINVAL;
    if (dtype == ART_FLOAT32) return art::launch_qr<float>(q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
    if (dtype == ART_FLOAT16) return art::launch_qr<__half>(q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
    return ART_EINVAL;
}

extern "C" int art_tracklet_link(art_dtype dtype, const void* r, const void* s, void* agg, void* saliency,
                                 void* coherence, int b, int t, int k, int d, float temperature, float eps,
                                 cudaStream_t stream) {
    if (b < 1 || t < 2 || t > ART_LINK_MAX_FRAMES || k < 1 || k > ART_QR_MAX_QUERIES || d < 1 || !(temperature > 0.0f))
        return ART_EINVAL;
    if (dtype == ART_FLOAT32)
        return art::launch_link<float>(r, s, agg, saliency, coherence, b, t, k, d, temperature, eps, stream);
    if (dtype == ART_FLOAT16)
        return art::launch_link<__half>(r, s, agg, saliency, coherence, b, t, k, d, temperature, eps, stream);
    return ART_EINVAL;
}
