"""The fused CUDA ops for PyTorch: a CUDA extension over the C ABI, built on first use.

    from plugins.torch_ops import fused_ops
    ops = fused_ops()          # None where it cannot be built (no CUDA torch, no nvcc): use the reference
    out, attn = ops.qr_attention(q, k, v, heads, scale)

Inference only (no backward): `art_train.ops` routes CUDA tensors here when gradients are off and
the kernel measures faster than the PyTorch reference. `ART_FUSED_OPS=0` turns the fused path off,
`1` takes it wherever the shapes allow.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = [HERE / "csrc" / "art_ops.cu", HERE / "torch" / "art_ops_torch.cpp"]


class FusedOps:
    """Calls the extension on the current CUDA stream and device."""

    def __init__(self, module):
        self.module = module

    def qr_attention(self, q, k, v, num_heads: int, scale: float):
        import torch

        with torch.cuda.device(q.device):
            stream = torch.cuda.current_stream().cuda_stream
            out, attn = self.module.qr_attention(q, k, v, int(num_heads), float(scale), stream)
        return out, attn

    def qr_attention_fits(self, q, k, num_heads: int) -> bool:
        """Whether the kernel runs these shapes and dtype (art_qr_attention_fits of art_ops.h)."""
        return bool(self.module.qr_attention_fits(q, k, int(num_heads)))

    def tracklet_link(self, responses, semantics, temperature: float, eps: float = 1e-6):
        import torch

        with torch.cuda.device(responses.device):
            stream = torch.cuda.current_stream().cuda_stream
            agg, saliency, coherence = self.module.tracklet_link(
                responses, semantics, float(temperature), float(eps), stream
            )
        return agg, saliency, coherence


def build_extension(verbose: bool = False):
    """Compile (or load from torch's extension cache) the extension; raises when it cannot."""
    import torch
    from torch.utils.cpp_extension import load

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device (or a CPU build of torch)")
    return load(
        name="art_ops_torch",
        sources=[str(s) for s in SOURCES],
        extra_include_paths=[str(HERE / "csrc")],
        extra_cuda_cflags=["-O3"],
        extra_cflags=["-O3"],
        verbose=verbose,
    )


def fused_ops() -> FusedOps | None:
    """The extension, built on first use; None where it cannot be built or ART_FUSED_OPS=0 (read
    at every call, so that a process can time the model with and without the kernels)."""
    if os.environ.get("ART_FUSED_OPS", "auto") == "0":
        return None
    return _built_ops()


@lru_cache(maxsize=1)
def _built_ops() -> FusedOps | None:
    try:
        return FusedOps(build_extension())
    except Exception as e:  # no nvcc, no CUDA torch, a compile error: the reference still works
        warnings.warn(
            f"fused CUDA ops unavailable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "using the PyTorch reference",
            stacklevel=2,
        )
        return None
