"""The two plugins for TensorRT ≥ 10.9 from Python (`tensorrt.plugin`), for hosts without a C++
toolchain: shapes from `register`, type/format combinations from `autotune` (FP32 and FP16, every
I/O of one type), the computation from `impl`, which calls the same C ABI (libart_ops.so, built by
plugins/CMakeLists.txt) as the C++ plugins.

    import plugins.trt_python            # registers art::QRAttention and art::TrackletLink
    art-build-engine ... --backend tensorrt

These are JIT plugins: an engine built with them needs this module imported (and Python) at run
time. For an engine that needs no Python, build libart_plugins.so with CMake instead.

Deliberately no `from __future__ import annotations` here: `tensorrt.plugin` reads the plugin
functions' annotations with `inspect.signature` and does not evaluate strings. NVIDIA's package
converts attributes with `int(f.data)` on 1-element arrays, which numpy ≥ 2.4 rejects: the
`[tensorrt]` extra pins numpy < 2.4. TensorRT cannot be installed where this project is developed;
docs/development.md says how this file is run through NVIDIA's own package without it.
"""

import ctypes
import os
from functools import lru_cache
from pathlib import Path

ART_FLOAT32, ART_FLOAT16 = 0, 1


@lru_cache(maxsize=1)
def art_ops_library(path: str | None = None) -> ctypes.CDLL:
    """libart_ops.so: $ART_OPS_LIBRARY, or the CMake build folder build/plugins/."""
    candidates = [
        path,
        os.environ.get("ART_OPS_LIBRARY"),
        str(Path(__file__).resolve().parents[1] / "build" / "plugins" / "libart_ops.so"),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            lib = ctypes.CDLL(c)
            break
    else:
        raise FileNotFoundError(
            "libart_ops.so not found: build it with `cmake -S plugins -B build/plugins && "
            "cmake --build build/plugins`, or set ART_OPS_LIBRARY"
        )
    vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.art_qr_attention.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, i, f, vp]
    lib.art_tracklet_link.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, f, f, vp]
    lib.art_qr_attention.restype = lib.art_tracklet_link.restype = i
    return lib


def art_dtype(trt, tensor) -> int:
    """The C ABI's dtype of a plugin tensor. TensorRT's DataType is an enum, not a numpy dtype."""
    return ART_FLOAT16 if tensor.dtype == trt.float16 else ART_FLOAT32


def _check(status: int, op: str):
    if status != 0:
        raise RuntimeError(
            f"{op} failed with status {status} (-1: shape outside the kernel limits)"
        )


def register_qr_attention(trt, trtp):
    @trtp.register("art::QRAttention")
    def qr_attention_desc(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, num_heads: int, scale: float
    ) -> tuple[trtp.TensorDesc, trtp.TensorDesc]:
        attn = trtp.from_shape_expr(
            (q.shape_expr[0], q.shape_expr[1], k.shape_expr[1]), dtype=q.dtype
        )
        return q.like(), attn

    @trtp.autotune("art::QRAttention")
    def qr_attention_autotune(
        q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc]
    ) -> list[trtp.AutoTuneCombination]:
        return [
            trtp.AutoTuneCombination(
                "FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR"
            )
        ]

    @trtp.impl("art::QRAttention")
    def qr_attention_impl(
        q: trtp.Tensor,
        k: trtp.Tensor,
        v: trtp.Tensor,
        num_heads: int,
        scale: float,
        outputs: tuple[trtp.Tensor],
        stream: int,
    ) -> None:
        n, nq, dim = q.shape
        _check(
            art_ops_library().art_qr_attention(
                art_dtype(trt, q),
                q.data_ptr,
                k.data_ptr,
                v.data_ptr,
                outputs[0].data_ptr,
                outputs[1].data_ptr,
                n,
                nq,
                k.shape[1],
                dim,
                num_heads,
                scale,
                stream,
            ),
            "art_qr_attention",
        )


def register_tracklet_link(trt, trtp):
    @trtp.register("art::TrackletLink")
    def tracklet_link_desc(
        r: trtp.TensorDesc, s: trtp.TensorDesc, temperature: float, eps: float
    ) -> tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
        b, t, k, d = (r.shape_expr[i] for i in range(4))
        return (
            trtp.from_shape_expr((b, k, d), dtype=r.dtype),
            trtp.from_shape_expr((b, t, k), dtype=r.dtype),
            trtp.from_shape_expr((b, t - 1, k), dtype=r.dtype),
        )

    @trtp.autotune("art::TrackletLink")
    def tracklet_link_autotune(
        r: trtp.TensorDesc, s: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc]
    ) -> list[trtp.AutoTuneCombination]:
        return [
            trtp.AutoTuneCombination(
                "FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR"
            )
        ]

    @trtp.impl("art::TrackletLink")
    def tracklet_link_impl(
        r: trtp.Tensor,
        s: trtp.Tensor,
        temperature: float,
        eps: float,
        outputs: tuple[trtp.Tensor],
        stream: int,
    ) -> None:
        b, t, k, d = r.shape
        _check(
            art_ops_library().art_tracklet_link(
                art_dtype(trt, r),
                r.data_ptr,
                s.data_ptr,
                outputs[0].data_ptr,
                outputs[1].data_ptr,
                outputs[2].data_ptr,
                b,
                t,
                k,
                d,
                temperature,
                eps,
                stream,
            ),
            "art_tracklet_link",
        )


try:  # registering needs TensorRT ≥ 10.9; importing this module without it is an error that says so
    import tensorrt
    import tensorrt.plugin
except (ImportError, OSError) as e:
    raise ImportError(
        f"plugins.trt_python needs TensorRT ≥ 10.9 with tensorrt.plugin ({e}); "
        "or build the C++ plugins with CMake (plugins/CMakeLists.txt)"
    ) from None
register_qr_attention(tensorrt, tensorrt.plugin)
register_tracklet_link(tensorrt, tensorrt.plugin)
