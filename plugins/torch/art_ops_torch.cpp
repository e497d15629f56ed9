// PyTorch binding of the C ABI in art_ops.h: inference-only CUDA versions of the two fused ops.
// Shapes and limits are checked here so a bad call is a Python exception, not a CUDA error.
// The caller (plugins/torch_ops.py) passes the current CUDA stream and selects the device, so this
// file needs only the CPU-side torch headers and compiles (and is checked) without a CUDA torch.
#include <torch/extension.h>

#include "art_ops.h"

namespace {

art_dtype dtype_of(const torch::Tensor& t) {
    switch (t.scalar_type()) {
        case torch::kFloat32: return ART_FLOAT32;
        case torch::kFloat16: return ART_FLOAT16;
        case torch::kBFloat16: return ART_BFLOAT16;
        default: TORCH_CHECK(false, "art ops take float32, float16 or bfloat16 tensors, got ", t.scalar_type());
    }
}

// Contiguous and 16-byte aligned (the kernels read keys and values in 16-byte pieces): a view that
// starts mid-allocation is copied.
torch::Tensor aligned(const torch::Tensor& t) {
    auto c = t.contiguous();
    return reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 == 0 ? c : c.clone();
}

void check_input(const torch::Tensor& t, const char* name, int64_t dims, const torch::Tensor& like) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dimensions, got ", t.dim());
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have the dtype of the first input");
    TORCH_CHECK(t.device() == like.device(), name, " must be on the device of the first input");
}

void check_status(int status, const char* op) {
    TORCH_CHECK(status != ART_EINVAL, op, ": shapes outside the kernel limits (see plugins/csrc/art_ops.h)");
    TORCH_CHECK(status == 0, op, ": CUDA error ", cudaGetErrorString(static_cast<cudaError_t>(status)));
}

cudaStream_t as_stream(int64_t stream) { return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(stream)); }

std::vector<torch::Tensor> qr_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, int64_t heads,
                                        double scale, int64_t stream) {
    check_input(q, "q", 3, q);
    check_input(k, "k", 3, q);
    check_input(v, "v", 3, q);
    TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(2) == q.size(2),
                "qr_attention: q [n, nq, dim], k and v [n, len, dim]");
    q = q.contiguous();
    k = aligned(k);
    v = aligned(v);
    auto out = torch::empty_like(q);
    auto attn = torch::empty({q.size(0), q.size(1), k.size(1)}, q.options());
    check_status(art_qr_attention(dtype_of(q), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                  attn.data_ptr(), q.size(0), q.size(1), k.size(1), q.size(2),
                                  static_cast<int>(heads), static_cast<float>(scale),
                                  as_stream(stream)),
                 "qr_attention");
    return {out, attn};
}

// Whether qr_attention runs these shapes (else it raises): q [n, nq, dim], k [n, len, dim].
bool qr_attention_fits(const torch::Tensor& q, const torch::Tensor& k, int64_t heads) {
    return q.dim() == 3 && k.dim() == 3 &&
           art_qr_attention_fits(dtype_of(q), q.size(1), k.size(1), q.size(2), static_cast<int>(heads)) == 1;
}

std::vector<torch::Tensor> tracklet_link(torch::Tensor r, torch::Tensor s, double temperature, double eps,
                                         int64_t stream) {
    check_input(r, "responses", 4, r);
    check_input(s, "semantics", 3, r);
    TORCH_CHECK(s.size(0) == r.size(0) && s.size(1) == r.size(2) && s.size(2) == r.size(3),
                "tracklet_link: responses [b, t, k, d], semantics [b, k, d]");
    r = r.contiguous();
    s = s.contiguous();
    const auto b = r.size(0), t = r.size(1), k = r.size(2), d = r.size(3);
    auto agg = torch::empty({b, k, d}, r.options());
    auto saliency = torch::empty({b, t, k}, r.options());
    auto coherence = torch::empty({b, t - 1, k}, r.options());
    check_status(art_tracklet_link(dtype_of(r), r.data_ptr(), s.data_ptr(), agg.data_ptr(), saliency.data_ptr(),
                                   coherence.data_ptr(), b, t, k, d, static_cast<float>(temperature),
                                   static_cast<float>(eps), as_stream(stream)),
                 "tracklet_link");
    return {agg, saliency, coherence};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("qr_attention", &qr_attention, "fused QRAttention (CUDA): q, k, v, heads, scale, stream -> out, attn");
    m.def("qr_attention_fits", &qr_attention_fits, "whether qr_attention runs q [n, nq, dim], k [n, len, dim]");
    m.def("tracklet_link", &tracklet_link, "fused TrackletLink (CUDA): r, s, temperature, eps, stream -> agg, saliency, coherence");
}
