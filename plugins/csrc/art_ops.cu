// CUDA kernels of art::QRAttention and art::TrackletLink (FP32, FP16, BF16), behind the C ABI of
// art_ops.h. Only CUDA headers here, so this compiles wherever nvcc is (no TensorRT, no torch).
// Reference semantics: art_train/ops.py (qr_attention_reference, tracklet_link_reference).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stddef.h>
#include <stdint.h>

#include "art_math.cuh"
#include "art_ops.h"

namespace art {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kInFlight = 8;  // row chunks each thread loads before it uses the first (bytes in flight)

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over aligned groups of `width` consecutive lanes (a power of two ≤ 32): each lane gets its group's.
__device__ __forceinline__ float group_sum(float x, int width) {
    for (int o = width >> 1; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// ----------------------------------------------------------------------------- QRAttention
// Few queries over many keys is memory-bound: the kernel reads each frame's keys and values once,
// in 16-byte pieces that consecutive threads take from consecutive addresses.
//
// One block per frame (per group of queries where the scores of all of them do not fit in shared
// memory). 1. The group's queries, times `scale`, into shared memory. 2. Scores: a frame's keys
// [len, dim] are one contiguous range; thread t takes chunks t, t + 256, … of V elements (a row has
// dim / V chunks, a head's slice of it dim / heads / V, a power of two ≤ 32), dots each with every
// query's matching slice and sums the partial dots of a head's chunks over the lanes that hold
// them (shuffles): scores [heads][queries][len] in shared memory. 3. An exact softmax per (head,
// query), a warp each. 4. The map: the mean over heads, written once. 5. Values: thread t keeps
// chunk t % (dim / V) of rows t / (dim / V), + 256 / (dim / V), …, accumulating every query's
// weighted sum in registers; the threads that took the same chunk add their sums in a fixed order.

// V consecutive elements of a row, read as one 16-byte load where V · sizeof(T) = 16.
template <typename T, int V>
struct alignas(V * sizeof(T) == 16 ? 16 : alignof(T)) Chunk {
    T e[V];
};

template <typename T, int V>
__device__ __forceinline__ Chunk<T, V> load_chunk(const T* p) {
    return *reinterpret_cast<const Chunk<T, V>*>(p);
}

// x · the V floats at p (shared memory; 16-byte reads where V is a multiple of 4: no bank conflicts).
template <typename T, int V>
__device__ __forceinline__ float chunk_dot(const Chunk<T, V>& x, const float* p) {
    float s = 0.0f;
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int j = 0; j < V; j += 4) {
            const float4 f = *reinterpret_cast<const float4*>(p + j);
            s += f.x * to_float(x.e[j]) + f.y * to_float(x.e[j + 1]) + f.z * to_float(x.e[j + 2]) +
                 f.w * to_float(x.e[j + 3]);
        }
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) s += p[j] * to_float(x.e[j]);
    }
    return s;
}

// Where a block's queries, scores and sums lie in its shared memory (floats; 16-byte aligned parts).
struct QrLayout {
    int queries;  // [qn][dim] scaled queries, then the values' sums
    int scores;   // [heads][qn][len]
    int total;
};

__host__ __device__ __forceinline__ int round4(int x) { return (x + 3) / 4 * 4; }

__host__ __device__ __forceinline__ QrLayout qr_layout(int qg, int len, int dim, int heads) {
    const int queries = round4(qg * dim);
    return QrLayout{0, queries, queries + round4(heads * qg * len)};
}

template <typename T>
__device__ void load_queries(const T* q, float* qs, int count, float scale) {
    for (int i = threadIdx.x; i < count; i += kThreads) qs[i] = to_float(q[i]) * scale;
}

// The chunks a thread takes next: chunk `first + u · step` of a frame's rows (as one range of
// chunks), u < U, those before `end`. Issued before the chunks they follow are used (double
// buffering in registers), so the loads of one batch are in flight while the last is computed.
template <typename T, int V, int U>
struct Batch {
    Chunk<T, V> c[U];

    __device__ __forceinline__ void load(const T* __restrict__ rows, int first, int step, int end) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int idx = first + u * step;
            c[u] = idx < end ? load_chunk<T, V>(rows + static_cast<size_t>(idx) * V) : Chunk<T, V>{};
        }
    }
};

template <int MQ>
constexpr int kBatch = MQ > 4 ? 2 : kInFlight;  // chunks a batch; fewer where MQ × V accumulators take registers

// scores [heads][qn][len] = the queries' slices · the keys' (see the kernel's comment); `batch`:
// the thread's first chunks, loaded by the caller.
template <typename T, int V, int MQ>
__device__ void scores_from_keys(const T* __restrict__ keys, Batch<T, V, kBatch<MQ>> batch,
                                 const float* qs, float* scores, int qn, int len, int dim, int heads) {
    constexpr int U = kBatch<MQ>;
    const int chunks = dim / V, per_head = dim / heads / V, total = len * chunks;
    for (int g0 = 0; g0 < total; g0 += kThreads * U) {
        Batch<T, V, U> next;
        next.load(keys, g0 + kThreads * U + static_cast<int>(threadIdx.x), kThreads, total);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int g = g0 + u * kThreads + static_cast<int>(threadIdx.x);
            const int row = g / chunks, col = g % chunks;
#pragma unroll
            for (int i = 0; i < MQ && i < qn; ++i) {
                float s = g < total ? chunk_dot<T, V>(batch.c[u], qs + i * dim + col * V) : 0.0f;
                s = group_sum(s, per_head);  // every lane of the warp takes part
                if (g < total && col % per_head == 0) scores[((col / per_head) * qn + i) * len + row] = s;
            }
        }
        batch = next;
    }
}

// Each of `count` rows of `len` scores becomes its softmax, in place: one warp a row.
__device__ void softmax_rows(float* rows, int count, int len) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int r = warp; r < count; r += kWarps) {
        float* row = rows + static_cast<size_t>(r) * len;
        float m = -INFINITY;
        for (int l = lane; l < len; l += 32) m = fmaxf(m, row[l]);
        m = warp_max(m);
        float sum = 0.0f;
        for (int l = lane; l < len; l += 32) {
            const float e = expf(row[l] - m);
            row[l] = e;
            sum += e;
        }
        const float inv = 1.0f / warp_sum(sum);
        for (int l = lane; l < len; l += 32) row[l] *= inv;
    }
}

template <typename T>
__device__ void write_mean_map(const float* probs, T* __restrict__ attn, int qn, int len, int heads) {
    const float inv = 1.0f / heads;
    for (int idx = threadIdx.x; idx < qn * len; idx += kThreads) {
        const int i = idx / len, l = idx % len;
        float s = 0.0f;
        for (int h = 0; h < heads; ++h) s += probs[(h * qn + i) * len + l];
        attn[idx] = from_float<T>(s * inv);
    }
}

// Where a thread of the values' pass starts: its chunk of a row, its first row, rows a step.
struct ValueSlot {
    int col, first_row, rows_per_step;
    __device__ __forceinline__ bool active() const { return first_row < rows_per_step; }
};

__device__ __forceinline__ ValueSlot value_slot(int dim, int vec) {
    const int chunks = dim / vec;
    return ValueSlot{static_cast<int>(threadIdx.x) % chunks, static_cast<int>(threadIdx.x) / chunks,
                     kThreads / chunks};
}

// sums [qn][dim] = Σ_l probs[head of the column][query][l] · values[l]; then written to out.
// `batch`: the thread's first chunks (rows first_row, + rows_per_step, …), loaded by the caller.
template <typename T, int V, int MQ>
__device__ void weighted_values(const T* __restrict__ values, Batch<T, V, kBatch<MQ>> batch,
                                const float* probs, float* sums, T* __restrict__ out, int qn, int len, int dim,
                                int heads) {
    constexpr int U = kBatch<MQ>;
    const ValueSlot at = value_slot(dim, V);
    const int chunks = dim / V, head = at.col / (dim / heads / V), step = at.rows_per_step * chunks;
    float acc[MQ][V] = {};
    for (int r0 = at.first_row; at.active() && r0 < len; r0 += at.rows_per_step * U) {
        Batch<T, V, U> next;
        next.load(values, (r0 + at.rows_per_step * U) * chunks + at.col, step, len * chunks);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int row = r0 + u * at.rows_per_step;
#pragma unroll
            for (int i = 0; i < MQ && i < qn; ++i) {
                const float p = row < len ? probs[(head * qn + i) * len + row] : 0.0f;
#pragma unroll
                for (int j = 0; j < V; ++j) acc[i][j] += p * to_float(batch.c[u].e[j]);
            }
        }
        batch = next;
    }
    for (int s = 0; s < at.rows_per_step; ++s) {  // slot by slot: the same sum whatever order threads run in
        if (at.first_row == s)
            for (int i = 0; i < MQ && i < qn; ++i)
                for (int j = 0; j < V; ++j) {
                    float& d = sums[i * dim + at.col * V + j];
                    d = (s == 0 ? 0.0f : d) + acc[i][j];
                }
        __syncthreads();
    }
    for (int idx = threadIdx.x; idx < qn * dim; idx += kThreads) out[idx] = from_float<T>(sums[idx]);
}

// Up to 4 queries a block: two blocks a multiprocessor (≤ 128 registers a thread), so that two
// frames' loads overlap where a GPU has fewer multiprocessors than frames; not for bfloat16,
// whose conversions would spill at that bound.
template <typename T>
constexpr bool kIsBf16 = false;
template <>
constexpr bool kIsBf16<__nv_bfloat16> = true;

template <typename T, int V, int MQ>
__global__ void __launch_bounds__(kThreads, MQ > 4 || kIsBf16<T> ? 1 : 2)
qr_attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ out,
                    T* __restrict__ attn, int nq, int qg, int len, int dim, int heads, float scale) {
    extern __shared__ __align__(16) float smem[];  // float4 reads in chunk_dot
    const int groups = (nq + qg - 1) / qg;
    const int n = blockIdx.x / groups, q0 = (blockIdx.x % groups) * qg, qn = min(qg, nq - q0);
    const QrLayout layout = qr_layout(qg, len, dim, heads);
    float* queries = smem + layout.queries;
    float* scores = smem + layout.scores;
    const size_t frame = static_cast<size_t>(n) * len * dim, first = static_cast<size_t>(n) * nq + q0;
    const int chunks = dim / V;
    // each pass's first loads are issued a step early: the keys' before the queries are read, the
    // values' before the softmax, so that no pass starts by waiting on memory
    Batch<T, V, kBatch<MQ>> keys, values;
    keys.load(k + frame, threadIdx.x, kThreads, len * chunks);
    load_queries(q + first * dim, queries, qn * dim, scale);
    __syncthreads();
    scores_from_keys<T, V, MQ>(k + frame, keys, queries, scores, qn, len, dim, heads);
    const ValueSlot slot = value_slot(dim, V);
    values.load(v + frame, slot.active() ? slot.first_row * chunks + slot.col : len * chunks,
                slot.rows_per_step * chunks, len * chunks);
    __syncthreads();
    softmax_rows(scores, heads * qn, len);
    __syncthreads();
    write_mean_map(scores, attn + first * len, qn, len, heads);
    weighted_values<T, V, MQ>(v + frame, values, scores, queries, out + first * dim, qn, len, dim, heads);
}

// The general path, for shapes the kernel above cannot take (a head dim that is not a power of two
// of chunks, one query's scores over all heads beyond the shared memory): one block per (frame,
// query), a thread a key row, head after head. Slower (a frame's keys and values read once per
// query, a row per thread) but any head dim, in (2 · len + head dim) floats of shared memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
qr_attention_general_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            T* __restrict__ out, T* __restrict__ attn, int nq, int len, int dim, int heads,
                            float scale) {
    extern __shared__ float smem[];
    float* probs = smem;            // [len]
    float* mean_map = probs + len;  // [len]
    float* qh = mean_map + len;     // [head_dim]
    const int n = blockIdx.x / nq, hd = dim / heads;
    const size_t row = static_cast<size_t>(blockIdx.x), frame = static_cast<size_t>(n) * len * dim;
    for (int l = threadIdx.x; l < len; l += kThreads) mean_map[l] = 0.0f;
    for (int h = 0; h < heads; ++h) {
        for (int j = threadIdx.x; j < hd; j += kThreads) qh[j] = to_float(q[row * dim + h * hd + j]) * scale;
        __syncthreads();
        for (int l = threadIdx.x; l < len; l += kThreads) {
            float s = 0.0f;
            for (int j = 0; j < hd; ++j) s += qh[j] * to_float(k[frame + static_cast<size_t>(l) * dim + h * hd + j]);
            probs[l] = s;
        }
        __syncthreads();
        softmax_rows(probs, 1, len);
        __syncthreads();
        for (int l = threadIdx.x; l < len; l += kThreads) mean_map[l] += probs[l];
        for (int j = threadIdx.x; j < hd; j += kThreads) {
            float acc = 0.0f;
            for (int l = 0; l < len; ++l) acc += probs[l] * to_float(v[frame + static_cast<size_t>(l) * dim + h * hd + j]);
            out[row * dim + h * hd + j] = from_float<T>(acc);
        }
        __syncthreads();
    }
    for (int l = threadIdx.x; l < len; l += kThreads) attn[row * len + l] = from_float<T>(mean_map[l] / heads);
}

// ----------------------------------------------------------------------------- TrackletLink

// Dot product of two length-d rows by one warp; every lane gets the result.
template <typename T>
__device__ __forceinline__ float warp_dot(const T* a, const T* b, int d) {
    float s = 0.0f;
    for (int i = threadIdx.x & 31; i < d; i += 32) s += to_float(a[i]) * to_float(b[i]);
    return warp_sum(s);
}

// A tracklet's rows and its clip's semantics, where the kernel reads them: staged in shared memory
// (floats) or left in global memory (T).
template <typename R>
struct LinkRows {
    const R* r;
    size_t r_stride;  // row t at r + t · r_stride
    const R* s;       // semantic j at s + j · d
    __device__ __forceinline__ const R* row_r(int t) const { return r + t * r_stride; }
};

// Norms, cosine to each of the K semantics, softmax over time per semantic, saliency = mean over
// semantics, weighted sum, adjacent-frame coherence: one block, tracklet kk of clip b.
template <typename T, typename R>
__device__ void link_tracklet(LinkRows<R> rows, T* __restrict__ agg, T* __restrict__ saliency,
                              T* __restrict__ coherence, int b, int kk, int frames, int nk, int d, float temperature,
                              float eps) {
    __shared__ float r_inv[ART_LINK_MAX_FRAMES];
    __shared__ float s_inv[ART_QR_MAX_QUERIES];
    __shared__ float sim[ART_LINK_MAX_FRAMES * ART_QR_MAX_QUERIES];
    __shared__ float weight[ART_LINK_MAX_FRAMES];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    auto row_s = [&](int j) { return rows.s + static_cast<size_t>(j) * d; };
    for (int t = warp; t < frames; t += kWarps) {
        const float ss = warp_dot(rows.row_r(t), rows.row_r(t), d);
        if (lane == 0) r_inv[t] = inv_norm(ss, eps);
    }
    for (int j = warp; j < nk; j += kWarps) {
        const float ss = warp_dot(row_s(j), row_s(j), d);
        if (lane == 0) s_inv[j] = inv_norm(ss, eps);
    }
    __syncthreads();
    for (int p = warp; p < frames * nk; p += kWarps) {
        const int t = p / nk, j = p % nk;
        const float dot = warp_dot(rows.row_r(t), row_s(j), d);
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
        for (int t = 0; t < frames; ++t) acc += weight[t] * to_float(rows.row_r(t)[i]);
        agg[(static_cast<size_t>(b) * nk + kk) * d + i] = from_float<T>(acc);
    }
    for (int t = warp; t + 1 < frames; t += kWarps) {
        const float dot = warp_dot(rows.row_r(t), rows.row_r(t + 1), d);
        if (lane == 0)
            coherence[(static_cast<size_t>(b) * (frames - 1) + t) * nk + kk] = from_float<T>(dot * r_inv[t] * r_inv[t + 1]);
    }
}

// `count` rows of d elements, row i at src + i · stride, into dst as floats, consecutive threads on
// consecutive elements.
template <typename T>
__device__ void stage_rows(const T* __restrict__ src, int count, size_t stride, int d, float* dst) {
    for (int i = threadIdx.x; i < count * d; i += kThreads)
        dst[i] = to_float(src[static_cast<size_t>(i / d) * stride + i % d]);
}

// One block per (clip b, tracklet kk). kStaged: the tracklet's rows and the clip's semantics are
// read once into shared memory, and every pass reads them there; otherwise (too large for shared
// memory) each pass reads them from global memory.
template <typename T, bool kStaged>
__global__ void __launch_bounds__(kThreads)
tracklet_link_kernel(const T* __restrict__ r, const T* __restrict__ s, T* __restrict__ agg, T* __restrict__ saliency,
                     T* __restrict__ coherence, int frames, int nk, int d, float temperature, float eps) {
    const int b = blockIdx.x / nk, kk = blockIdx.x % nk;
    const T* rows = r + (static_cast<size_t>(b) * frames * nk + kk) * d;
    const T* semantics = s + static_cast<size_t>(b) * nk * d;
    if constexpr (kStaged) {
        extern __shared__ __align__(16) float staged[];  // [frames + nk][d]
        stage_rows(rows, frames, static_cast<size_t>(nk) * d, d, staged);
        stage_rows(semantics, nk, static_cast<size_t>(d), d, staged + frames * d);
        __syncthreads();
        const LinkRows<float> in{staged, static_cast<size_t>(d), staged + frames * d};
        link_tracklet(in, agg, saliency, coherence, b, kk, frames, nk, d, temperature, eps);
    } else {
        const LinkRows<T> in{rows, static_cast<size_t>(nk) * d, semantics};
        link_tracklet(in, agg, saliency, coherence, b, kk, frames, nk, d, temperature, eps);
    }
}

// Staged where the rows and semantics fit beside link_tracklet's static shared arrays (~5 KB).
size_t link_staged_bytes(int frames, int nk, int d) {
    return static_cast<size_t>(frames + nk) * d * sizeof(float);
}
constexpr size_t kLinkStagedMax = ART_MAX_DYNAMIC_SHARED - 8 * 1024;

// ----------------------------------------------------------------------------- launches

// How a QRAttention launch runs: chunk width, queries a block takes, register bound on them.
struct QrPlan {
    int vec;     // elements a thread loads at once: 16 bytes' worth, or 1
    int qg;      // queries per block
    int groups;  // blocks per frame
};

__host__ __forceinline__ bool power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

// A chunk width fits when a head's slice is 1 to 32 whole chunks (a power of two: the lanes that
// sum a head's partial dots) and a row has no more chunks than a block has threads.
bool vec_fits(int vec, int dim, int heads) {
    const int head_dim = dim / heads, per_head = head_dim / vec;
    return head_dim % vec == 0 && power_of_two(per_head) && per_head <= 32 && dim / vec <= kThreads;
}

bool qr_shape_valid(int nq, int len, int dim, int heads) {
    return nq >= 1 && nq <= ART_QR_MAX_QUERIES && len >= 1 && len <= ART_QR_MAX_TOKENS && heads >= 1 && dim >= 1 &&
           dim % heads == 0;
}

size_t general_shared_bytes(int len, int dim, int heads) {
    return (2 * static_cast<size_t>(len) + dim / heads) * sizeof(float);
}

// → false where qr_attention_kernel cannot run the shape. `aligned`: keys and values 16-byte aligned.
bool plan_qr(int elem_bytes, int nq, int len, int dim, int heads, bool aligned, QrPlan* plan) {
    if (!qr_shape_valid(nq, len, dim, heads)) return false;
    const int wide = 16 / elem_bytes;
    const bool vectorised = aligned && (dim * elem_bytes) % 16 == 0 && vec_fits(wide, dim, heads);
    plan->vec = vectorised ? wide : 1;
    if (!vectorised && !vec_fits(1, dim, heads)) return false;
    const auto bytes = [&](int qg) { return static_cast<size_t>(qr_layout(qg, len, dim, heads).total) * sizeof(float); };
    int most = nq;
    while (most > 0 && bytes(most) > ART_MAX_DYNAMIC_SHARED) --most;
    if (most == 0) return false;
    plan->groups = (nq + most - 1) / most;
    plan->qg = (nq + plan->groups - 1) / plan->groups;  // even groups
    return true;
}

bool general_fits(int nq, int len, int dim, int heads) {
    return qr_shape_valid(nq, len, dim, heads) && general_shared_bytes(len, dim, heads) <= ART_MAX_DYNAMIC_SHARED;
}

template <typename T, int V>
int launch_qr_vec(const QrPlan& plan, const void* q, const void* k, const void* v, void* out, void* attn, int n,
                  int nq, int len, int dim, int heads, float scale, cudaStream_t stream) {
    const size_t shared = static_cast<size_t>(qr_layout(plan.qg, len, dim, heads).total) * sizeof(float);
    const auto* qt = static_cast<const T*>(q);
    const auto* kt = static_cast<const T*>(k);
    const auto* vt = static_cast<const T*>(v);
    auto* ot = static_cast<T*>(out);
    auto* at = static_cast<T*>(attn);
    const int blocks = n * plan.groups;
    if (plan.qg <= 4)
        qr_attention_kernel<T, V, 4><<<blocks, kThreads, shared, stream>>>(qt, kt, vt, ot, at, nq, plan.qg, len, dim,
                                                                           heads, scale);
    else
        qr_attention_kernel<T, V, 16><<<blocks, kThreads, shared, stream>>>(qt, kt, vt, ot, at, nq, plan.qg, len,
                                                                            dim, heads, scale);
    return static_cast<int>(cudaGetLastError());
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T>
int launch_qr(const void* q, const void* k, const void* v, void* out, void* attn, int n, int nq, int len, int dim,
              int heads, float scale, cudaStream_t stream) {
    const bool aligned = aligned16(k) && aligned16(v);  // the only inputs read in 16-byte pieces
    QrPlan plan{};
    if (n < 1) return ART_EINVAL;
    if (!plan_qr(sizeof(T), nq, len, dim, heads, aligned, &plan)) {
        if (!general_fits(nq, len, dim, heads)) return ART_EINVAL;
        qr_attention_general_kernel<T><<<n * nq, kThreads, general_shared_bytes(len, dim, heads), stream>>>(
            static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out),
            static_cast<T*>(attn), nq, len, dim, heads, scale);
        return static_cast<int>(cudaGetLastError());
    }
    if (plan.vec == 1) return launch_qr_vec<T, 1>(plan, q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
    return launch_qr_vec<T, 16 / sizeof(T)>(plan, q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
}

template <typename T>
int launch_link(const void* r, const void* s, void* agg, void* sal, void* coh, int b, int t, int k, int d,
                float temperature, float eps, cudaStream_t stream) {
    const auto* rt = static_cast<const T*>(r);
    const auto* st = static_cast<const T*>(s);
    auto *at = static_cast<T*>(agg), *salt = static_cast<T*>(sal), *ct = static_cast<T*>(coh);
    const size_t staged = link_staged_bytes(t, k, d);
    if (staged <= kLinkStagedMax)
        tracklet_link_kernel<T, true><<<b * k, kThreads, staged, stream>>>(rt, st, at, salt, ct, t, k, d, temperature,
                                                                          eps);
    else
        tracklet_link_kernel<T, false><<<b * k, kThreads, 0, stream>>>(rt, st, at, salt, ct, t, k, d, temperature,
                                                                       eps);
    return static_cast<int>(cudaGetLastError());
}

int elem_bytes(art_dtype dtype) {
    return dtype == ART_FLOAT32 ? 4 : (dtype == ART_FLOAT16 || dtype == ART_BFLOAT16) ? 2 : 0;
}

}  // namespace
}  // namespace art

extern "C" int art_qr_attention_fits(art_dtype dtype, int nq, int len, int dim, int heads) {
    art::QrPlan plan{};
    const int bytes = art::elem_bytes(dtype);
    return bytes > 0 && (art::plan_qr(bytes, nq, len, dim, heads, true, &plan) || art::general_fits(nq, len, dim, heads))
               ? 1
               : 0;
}

extern "C" int art_qr_attention(art_dtype dtype, const void* q, const void* k, const void* v, void* out, void* attn,
                                int n, int nq, int len, int dim, int heads, float scale, cudaStream_t stream) {
    if (dtype == ART_FLOAT32) return art::launch_qr<float>(q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
    if (dtype == ART_FLOAT16) return art::launch_qr<__half>(q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
    if (dtype == ART_BFLOAT16)
        return art::launch_qr<__nv_bfloat16>(q, k, v, out, attn, n, nq, len, dim, heads, scale, stream);
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
    if (dtype == ART_BFLOAT16)
        return art::launch_link<__nv_bfloat16>(r, s, agg, saliency, coherence, b, t, k, d, temperature, eps, stream);
    return ART_EINVAL;
}
