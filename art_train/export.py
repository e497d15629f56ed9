"""ONNX export: two graphs per checkpoint, the two fused ops as `art` local functions.

- `frame_encoder.onnx`: images [N, 3, H, W] → patches [N, L, D], frame_tokens [N, D] (N dynamic),
  so a live stream encodes each frame once;
- `clip_head.onnx`: patches [B, T, L, D], frame_tokens [B, T, D] → logits [B, N_cls],
  attention [B, T, K, L], saliency [B, T, K], topk_ids [B, K] (B dynamic, T fixed).

`art::QRAttention` and `art::TrackletLink` are nodes of domain `art` carrying
`plugin_namespace="art"` (TensorRT's parser then takes the registered plugin of that name), and
the model carries an ONNX function of each name whose body is standard ONNX (so ONNX Runtime
inlines and runs it on any CPU). The bodies read the node attributes by reference.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn
from onnx import TensorProto
from onnx import helper as oh

from art_edge.errors import UserError

OPSET = 18
ART_DOMAIN = "art"
FRAME_INPUTS, FRAME_OUTPUTS = ["images"], ["patches", "frame_tokens"]
HEAD_INPUTS, HEAD_OUTPUTS = (
    ["patches", "frame_tokens"],
    ["logits", "attention", "saliency", "topk_ids"],
)


class FrameEncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.encode_frames(images)


class ClipHeadGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, patches, frame_tokens):
        out = self.model.forward_head(patches, frame_tokens)
        return out["logits"], out["attention"], out["saliency"], out["topk_ids"]


# ----------------------------------------------------------------------------- function bodies


def _ref(name: str, ref_name: str, kind) -> onnx.AttributeProto:
    a = onnx.AttributeProto()
    a.name, a.ref_attr_name, a.type = name, ref_name, kind
    return a


def _const_node(out: str, ref_name: str, kind) -> onnx.NodeProto:
    node = oh.make_node("Constant", [], [out])
    field = {onnx.AttributeProto.INT: "value_int", onnx.AttributeProto.FLOAT: "value_float"}[kind]
    node.attribute.append(_ref(field, ref_name, kind))
    return node


def _ints(name: str, values) -> onnx.NodeProto:
    return oh.make_node(
        "Constant", [], [name], value=oh.make_tensor(name, TensorProto.INT64, [len(values)], values)
    )


def qr_attention_function() -> onnx.FunctionProto:
    """QRAttention(q [N,K,D], k [N,L,D], v [N,L,D]) <num_heads, scale> → out [N,K,D], attn [N,K,L]."""
    n = oh.make_node
    nodes = [
        _const_node("h0", "num_heads", onnx.AttributeProto.INT),
        _ints("zero", [0]),
        _ints("two", [2]),
        _ints("three", [3]),
        _ints("ax1", [1]),
        n("Unsqueeze", ["h0", "zero"], ["h"]),
        n("Shape", ["q"], ["sq"]),
        n("Shape", ["k"], ["sk"]),
        n("Slice", ["sq", "zero", "two"], ["nk"]),
        n("Slice", ["sk", "zero", "two"], ["nl"]),
        n("Slice", ["sq", "two", "three"], ["d"]),
        n("Div", ["d", "h"], ["hd"]),
        n("Concat", ["nk", "h", "hd"], ["shape_q"], axis=0),
        n("Concat", ["nl", "h", "hd"], ["shape_k"], axis=0),
        n("Reshape", ["q", "shape_q"], ["q4"]),
        n("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
        n("Reshape", ["k", "shape_k"], ["k4"]),
        n("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
        n("Reshape", ["v", "shape_k"], ["v4"]),
        n("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        _const_node("scale", "scale", onnx.AttributeProto.FLOAT),
        n("MatMul", ["qh", "kt"], ["scores0"]),
        n("Mul", ["scores0", "scale"], ["scores"]),
        n("Softmax", ["scores"], ["attn_h"], axis=-1),
        n("MatMul", ["attn_h", "vh"], ["o4"]),
        n("Transpose", ["o4"], ["o"], perm=[0, 2, 1, 3]),
        n("Reshape", ["o", "sq"], ["out"]),
        n("ReduceMean", ["attn_h", "ax1"], ["attn"], keepdims=0),
    ]
    return oh.make_function(
        ART_DOMAIN,
        "QRAttention",
        ["q", "k", "v"],
        ["out", "attn"],
        nodes,
        [oh.make_opsetid("", OPSET)],
        attributes=["num_heads", "scale"],
    )


def tracklet_link_function() -> onnx.FunctionProto:
    """TrackletLink(r [B,T,K,D], s [B,K,D]) <temperature, eps> → agg [B,K,D], saliency [B,T,K], coherence [B,T-1,K]."""
    n = oh.make_node
    nodes = [
        _ints("last", [-1]),
        _ints("ax1", [1]),
        _ints("one", [1]),
        _ints("zero", [0]),
        _ints("minus1", [-1]),
        _ints("big", [2**62]),
        _const_node("eps", "eps", onnx.AttributeProto.FLOAT),
        _const_node("temp", "temperature", onnx.AttributeProto.FLOAT),
        n("ReduceL2", ["r", "last"], ["rnorm0"], keepdims=1),
        n("Max", ["rnorm0", "eps"], ["rnorm"]),
        n("Div", ["r", "rnorm"], ["rn"]),
        n("ReduceL2", ["s", "last"], ["snorm0"], keepdims=1),
        n("Max", ["snorm0", "eps"], ["snorm"]),
        n("Div", ["s", "snorm"], ["sn"]),
        n("Transpose", ["sn"], ["snt"], perm=[0, 2, 1]),
        n("Unsqueeze", ["snt", "ax1"], ["snt4"]),
        n("MatMul", ["rn", "snt4"], ["sim"]),  # [B,T,K,K]
        n("Div", ["sim", "temp"], ["logits"]),
        n("Softmax", ["logits"], ["w"], axis=1),
        n("ReduceMean", ["w", "last"], ["saliency"], keepdims=0),
        n("Unsqueeze", ["saliency", "last"], ["sal4"]),
        n("Mul", ["sal4", "r"], ["weighted"]),
        n("ReduceSum", ["weighted", "ax1"], ["agg"], keepdims=0),
        n("Slice", ["rn", "one", "big", "ax1"], ["later"]),
        n("Slice", ["rn", "zero", "minus1", "ax1"], ["earlier"]),
        n("Mul", ["later", "earlier"], ["prod"]),
        n("ReduceSum", ["prod", "last"], ["coherence"], keepdims=0),
    ]
    return oh.make_function(
        ART_DOMAIN,
        "TrackletLink",
        ["r", "s"],
        ["agg", "saliency", "coherence"],
        nodes,
        [oh.make_opsetid("", OPSET)],
        attributes=["temperature", "eps"],
    )


# ----------------------------------------------------------------------------- export


def _finish(path: Path, metadata: dict):
    """Attach the art functions and metadata, then check the graph fully and save it."""
    model = onnx.load(str(path))
    used = {node.op_type for node in model.graph.node if node.domain == ART_DOMAIN}
    model.functions.extend(
        f for f in (qr_attention_function(), tracklet_link_function()) if f.name in used
    )
    if used and not any(o.domain == ART_DOMAIN for o in model.opset_import):
        model.opset_import.append(oh.make_opsetid(ART_DOMAIN, 1))
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, str(path))


def export_onnx(model, meta: dict, out_dir, opset: int = OPSET) -> dict[str, Path]:
    """Write frame_encoder.onnx and clip_head.onnx for an ART model into out_dir."""
    if getattr(model.cfg, "variant", "art") != "art":
        raise UserError("only ART checkpoints export to an engine (this one is the Baseline)")
    model = model.eval().cpu()
    cfg = model.cfg
    out_dir = Path(out_dir)
    metadata = {
        "classes": json.dumps(meta["classes"]),
        "preprocessing": json.dumps(meta["preprocessing"]),
        "num_frames": str(cfg.num_frames),
        "config": json.dumps(cfg.to_dict()),
    }
    images = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        patches, tokens = model.encode_frames(images)
    b, t = 2, cfg.num_frames
    clip_patches = patches[:1].expand(b * t, -1, -1).reshape(b, t, *patches.shape[1:]).contiguous()
    clip_tokens = tokens[:1].expand(b * t, -1).reshape(b, t, -1).contiguous()
    clip_patches = clip_patches + 0.1 * torch.randn_like(clip_patches)
    clip_tokens = clip_tokens + 0.1 * torch.randn_like(clip_tokens)
    paths = {
        "frame_encoder": out_dir / "frame_encoder.onnx",
        "clip_head": out_dir / "clip_head.onnx",
    }
    common = dict(opset_version=opset, dynamo=False, do_constant_folding=True)
    # nn.MultiheadAttention (open_clip's ViT towers) takes a fused fast path in eval mode that the
    # exporter cannot write; the plain path exports as MatMul/Softmax.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with (
            warnings.catch_warnings()
        ):  # tracer chatter about shape asserts: expected, not actionable
            warnings.simplefilter("ignore")
            _export_graphs(model, images, clip_patches, clip_tokens, paths, common)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    for path in paths.values():
        _finish(path, metadata)
    return paths


def _export_graphs(model, images, clip_patches, clip_tokens, paths, common):
    with torch.no_grad():
        # Wrappers in eval mode: the exporter restores each wrapper's mode afterwards, and a fresh
        # module is in train mode, which would silently switch `model` to train mode (dropout on).
        torch.onnx.export(
            FrameEncoderGraph(model).eval(),
            (images,),
            str(paths["frame_encoder"]),
            input_names=FRAME_INPUTS,
            output_names=FRAME_OUTPUTS,
            dynamic_axes={"images": {0: "N"}, "patches": {0: "N"}, "frame_tokens": {0: "N"}},
            **common,
        )
        torch.onnx.export(
            ClipHeadGraph(model).eval(),
            (clip_patches, clip_tokens),
            str(paths["clip_head"]),
            input_names=HEAD_INPUTS,
            output_names=HEAD_OUTPUTS,
            dynamic_axes={name: {0: "B"} for name in HEAD_INPUTS + HEAD_OUTPUTS},
            custom_opsets={ART_DOMAIN: 1},
            **common,
        )
