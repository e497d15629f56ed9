"""The two hot ops of ART, each defined once in plain PyTorch.

Export writes them as `art::QRAttention` / `art::TrackletLink` ONNX functions, the CUDA kernels in
`plugins/` are checked against them, and the model calls them: one definition for all three.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugins import LINK_MAX_FRAMES, QR_MAX_QUERIES, QR_MAX_TOKENS


def _fused(x: torch.Tensor):
    """The CUDA kernels of plugins/ for inference on a GPU (no backward), else None."""
    if not x.is_cuda or torch.is_grad_enabled() or x.dtype not in (torch.float32, torch.float16):
        return None
    from plugins.torch_ops import fused_ops

    return fused_ops()


def qr_attention(q, k, v, num_heads: int, scale: float):
    """`qr_attention_reference`, written as one `art::QRAttention` node when exporting to ONNX, and
    run by the fused CUDA kernel for inference on a GPU."""
    if torch.onnx.is_in_onnx_export():
        return _QRAttentionNode.apply(q, k, v, num_heads, scale)
    fused = _fused(q)
    if fused is not None and q.shape[1] <= QR_MAX_QUERIES and k.shape[1] <= QR_MAX_TOKENS:
        return fused.qr_attention(q, k, v, num_heads, scale)
    return qr_attention_reference(q, k, v, num_heads, scale)


def tracklet_link(responses, semantics, temperature: float, eps: float = 1e-6):
    """`tracklet_link_reference`, written as one `art::TrackletLink` node when exporting to ONNX, and
    run by the fused CUDA kernel for inference on a GPU."""
    if torch.onnx.is_in_onnx_export():
        return _TrackletLinkNode.apply(responses, semantics, temperature, eps)
    fused = _fused(responses)
    if (
        fused is not None
        and 2 <= responses.shape[1] <= LINK_MAX_FRAMES
        and responses.shape[2] <= QR_MAX_QUERIES
    ):
        return fused.tracklet_link(responses, semantics, temperature, eps)
    return tracklet_link_reference(responses, semantics, temperature, eps)


def qr_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, scale: float
):
    """Multi-head cross-attention of a few queries over one frame's tokens.

    q: [N, K, D] queries (N = clips × frames), k, v: [N, L, D] token keys and values (L = HW).
    Returns out [N, K, D] and the attention maps [N, K, L] averaged over heads (softmax over L),
    which the overlay shows as each tracklet's region response.
    """
    n, nq, dim = q.shape
    length = k.shape[1]
    hd = dim // num_heads
    qh = q.reshape(n, nq, num_heads, hd).transpose(1, 2)  # N H K hd
    kh = k.reshape(n, length, num_heads, hd).transpose(1, 2)  # N H L hd
    vh = v.reshape(n, length, num_heads, hd).transpose(1, 2)
    attn = torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)) * scale, dim=-1)  # N H K L
    out = torch.matmul(attn, vh).transpose(1, 2).reshape(n, nq, dim)
    return out, attn.mean(dim=1)


def tracklet_link_reference(
    responses: torch.Tensor, semantics: torch.Tensor, temperature: float, eps: float = 1e-6
):
    """Aggregate each tracklet over time by its relevance to the top-K class semantics.

    responses: [B, T, K, D] (tracklet k = query k in every frame), semantics: [B, K, D] (S_topk).
    sim[b,t,k,j] = cos(r_tk, s_j); softmax over t of sim/temperature per (k, j); the saliency
    w_tk is the mean over j, so each tracklet's weights sum to 1 over time.
    Returns agg [B, K, D] = Σ_t w_tk r_tk, saliency [B, T, K], and the adjacent-frame coherence
    cos(r_tk, r_(t+1)k) [B, T-1, K] that the overlay and the temporal loss use.
    """
    b, t, nq, dim = responses.shape
    rn = F.normalize(responses, dim=-1, eps=eps)
    sn = F.normalize(semantics, dim=-1, eps=eps)
    sim = torch.matmul(rn.reshape(b, t * nq, dim), sn.transpose(1, 2)).reshape(b, t, nq, -1)
    saliency = torch.softmax(sim / temperature, dim=1).mean(dim=-1)  # B T K
    agg = (saliency.unsqueeze(-1) * responses).sum(dim=1)
    coherence = (rn[:, 1:] * rn[:, :-1]).sum(dim=-1)
    return agg, saliency, coherence


# ----------------------------------------------------------------------------- ONNX export nodes
# The exporter calls `symbolic` instead of tracing `forward`: one custom node per op, whose
# attributes carry what a TensorRT plugin or the ONNX function body (art_train/export.py) needs.


class _QRAttentionNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, num_heads, scale):
        return qr_attention_reference(q, k, v, num_heads, scale)

    @staticmethod
    def symbolic(g, q, k, v, num_heads, scale):
        out, attn = g.op(
            "art::QRAttention",
            q,
            k,
            v,
            num_heads_i=num_heads,
            scale_f=scale,
            plugin_namespace_s="art",
            plugin_version_s="1",
            outputs=2,
        )
        out.setType(q.type())
        attn.setType(q.type().with_sizes([None, None, None]))
        return out, attn


class _TrackletLinkNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, responses, semantics, temperature, eps):
        return tracklet_link_reference(responses, semantics, temperature, eps)

    @staticmethod
    def symbolic(g, responses, semantics, temperature, eps):
        agg, saliency, coherence = g.op(
            "art::TrackletLink",
            responses,
            semantics,
            temperature_f=temperature,
            eps_f=eps,
            plugin_namespace_s="art",
            plugin_version_s="1",
            outputs=3,
        )
        agg.setType(semantics.type())
        saliency.setType(responses.type().with_sizes([None, None, None]))
        coherence.setType(responses.type().with_sizes([None, None, None]))
        return agg, saliency, coherence
