// C ABI of the ART fused ops: one source of truth for every binding (PyTorch extension, TensorRT
// C++ plugins, TensorRT Python plugins). Tensors are contiguous, row-major, on the device.
#pragma once
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ART_FLOAT32 = 0, ART_FLOAT16 = 1, ART_BFLOAT16 = 2 } art_dtype;

// Return codes: 0 success; ART_EINVAL for shapes outside the kernels' limits; else a cudaError_t.
#define ART_EINVAL (-1)
#define ART_QR_MAX_QUERIES 16
#define ART_QR_MAX_TOKENS 1024
#define ART_LINK_MAX_FRAMES 64
// Dynamic shared memory a block may use without an opt-in (cudaFuncSetAttribute), on every GPU.
#define ART_MAX_DYNAMIC_SHARED (48 * 1024)

// QRAttention: q [n, nq, dim], k/v [n, len, dim] → out [n, nq, dim], attn [n, nq, len] (mean over
// heads of softmax over len of q·k·scale). nq ≤ 16, len ≤ 1024, dim % heads == 0; ART_EINVAL
// otherwise, before any launch. Fast where the head dim dim/heads is a power of two of at most 32
// chunks (a chunk: 16 bytes' worth of elements where dim·elem is a multiple of 16 and k, v are
// 16-byte aligned, else one element), a row has at most 256 chunks, and one query's scores over
// all heads fit in ART_MAX_DYNAMIC_SHARED; other shapes take a general, slower kernel.
int art_qr_attention(art_dtype dtype, const void* q, const void* k, const void* v, void* out, void* attn,
                     int n, int nq, int len, int dim, int heads, float scale, cudaStream_t stream);

// 1 where art_qr_attention runs this shape, else 0 (no launch, no GPU).
int art_qr_attention_fits(art_dtype dtype, int nq, int len, int dim, int heads);

// TrackletLink: r [b, t, k, d], s [b, k, d] → agg [b, k, d], saliency [b, t, k], coherence [b, t-1, k].
// t ≤ 64, k ≤ 16.
int art_tracklet_link(art_dtype dtype, const void* r, const void* s, void* agg, void* saliency, void* coherence,
                      int b, int t, int k, int d, float temperature, float eps, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
