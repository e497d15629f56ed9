"""The two hot ops of ART, each defined once in plain PyTorch.

Export writes them as `art::QRAttention` / `art::TrackletLink` ONNX functions, the CUDA kernels in
`plugins/` are checked against them, and the model calls them: one definition for all three.
"""

from __future__ import annotations

import functools
import os
import statistics

import torch
import torch.nn.functional as F

from plugins import LINK_MAX_FRAMES, QR_MAX_QUERIES, QR_MAX_TOKENS

# What the kernels of plugins/ take; anything else (float64) runs the reference.
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def qr_attention(q, k, v, num_heads: int, scale: float):
    """`qr_attention_reference`, written as one `art::QRAttention` node when exporting to ONNX, and
    run by the fused CUDA kernel for inference on a GPU where that is the faster of the two."""
    if torch.onnx.is_in_onnx_export():
        return _QRAttentionNode.apply(q, k, v, num_heads, scale)
    given = (q, k, v)
    fused = _fused_ops_for(given) if within_limits(q.shape[1], k.shape[1]) else None
    if fused is not None:
        cast = tuple(t.to(matmul_dtype(given)) for t in given)  # the kernel takes one dtype
        if fused.qr_attention_fits(cast[0], cast[1], num_heads):
            run = lambda: fused.qr_attention(*cast, num_heads, scale)  # noqa: E731
            ref_in = reference_inputs(given, cast)
            reference = lambda: qr_attention_reference(*ref_in, num_heads, scale)  # noqa: E731
            return (run if ROUTER.fused_is_faster("qr_attention", cast, run, reference) else reference)()  # fmt: skip
    return qr_attention_reference(q, k, v, num_heads, scale)


def tracklet_link(responses, semantics, temperature: float, eps: float = 1e-6):
    """`tracklet_link_reference`, written as one `art::TrackletLink` node when exporting to ONNX,
    and run by the fused CUDA kernel for inference on a GPU where that is the faster of the two."""
    if torch.onnx.is_in_onnx_export():
        return _TrackletLinkNode.apply(responses, semantics, temperature, eps)
    given = (responses, semantics)
    frames, tracklets = responses.shape[1], responses.shape[2]
    linkable = 2 <= frames <= LINK_MAX_FRAMES and tracklets <= QR_MAX_QUERIES
    fused = _fused_ops_for(given) if linkable else None
    if fused is not None:
        cast = tuple(t.to(matmul_dtype(given)) for t in given)
        run = lambda: fused.tracklet_link(*cast, temperature, eps)  # noqa: E731
        ref_in = reference_inputs(given, cast)
        reference = lambda: tracklet_link_reference(*ref_in, temperature, eps)  # noqa: E731
        return (run if ROUTER.fused_is_faster("tracklet_link", cast, run, reference) else reference)()  # fmt: skip
    return tracklet_link_reference(responses, semantics, temperature, eps)


def within_limits(queries: int, tokens: int) -> bool:
    return queries <= QR_MAX_QUERIES and tokens <= QR_MAX_TOKENS


def reference_inputs(given, cast):
    """What the reference runs on: the inputs as given, as it does where there are no kernels;
    where their dtypes differ with autocast off (PyTorch's matmul refuses that), `cast`."""
    if len({t.dtype for t in given}) == 1 or torch.is_autocast_enabled(given[0].device.type):
        return given
    return cast


# ----------------------------------------------------------------------------- the fused path


def matmul_dtype(tensors) -> torch.dtype:
    """The one dtype the fused ops run these inputs in: what autocast would run a matmul of them
    in (its float16/bfloat16 where it is on for their device), else their promoted type."""
    device_type = tensors[0].device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors))


def on_gpu(tensors) -> bool:
    return all(t.is_cuda for t in tensors)


def _fused_ops_for(tensors):
    """The CUDA kernels of plugins/ for these inputs, or None: they run inference on a GPU (no
    backward), in one of FUSED_DTYPES, outside tracing (torch.compile takes the reference)."""
    if torch.is_grad_enabled() or not on_gpu(tensors) or torch.compiler.is_compiling():
        return None
    if matmul_dtype(tensors) not in FUSED_DTYPES:
        return None
    from plugins.torch_ops import fused_ops  # builds the CUDA extension on first use

    return fused_ops()


class FusedRouter:
    """Route by measurement, not by assumption: the first call of an op at a shape, dtype and
    autocast state runs the fused kernel, then the PyTorch reference, a warm-up and `repeats`
    timed calls each, and every later call at that key takes the faster (`decisions` keeps the
    medians).

    ART_FUSED_OPS: `auto` (default) measures; `1` always takes the kernel where it can run;
    `0` never builds or runs it."""

    def __init__(self, repeats: int = 5, max_keys: int = 512):
        self.repeats, self.max_keys = repeats, max_keys
        self.decisions: dict[tuple, dict] = {}

    def fused_is_faster(self, op: str, inputs, fused, reference) -> bool:
        mode = os.environ.get("ART_FUSED_OPS", "auto")
        if mode == "1":
            return True
        key = (op, str(inputs[0].device), inputs[0].dtype, *(tuple(t.shape) for t in inputs))
        key += (torch.is_autocast_enabled(inputs[0].device.type),)
        if key not in self.decisions:
            if capturing(inputs[0]):
                return False  # no timing inside a CUDA graph capture: the reference is captured
            if len(self.decisions) >= self.max_keys:
                self.decisions.clear()
            fused_ms = self.median_ms(fused, inputs[0])
            reference_ms = self.median_ms(reference, inputs[0])
            self.decisions[key] = {
                "fused_ms": fused_ms,
                "reference_ms": reference_ms,
                "fused": fused_ms < reference_ms,
            }
        return self.decisions[key]["fused"]

    def median_ms(self, fn, like) -> float:
        fn()  # warm-up: allocator, caches
        return statistics.median(elapsed_ms(fn, like) for _ in range(self.repeats))


def capturing(like) -> bool:
    return like.is_cuda and torch.cuda.is_current_stream_capturing()


CALLS_PER_SAMPLE = 5


def elapsed_ms(fn, like) -> float:
    """Milliseconds a call of fn on `like`'s device: CALLS_PER_SAMPLE calls back to back between
    one CUDA event pair, so that the GPU's time counts where it is longer than the host's (as in a
    busy forward pass) and the host's where it is not."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(CALLS_PER_SAMPLE):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / CALLS_PER_SAMPLE


ROUTER = FusedRouter()


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
