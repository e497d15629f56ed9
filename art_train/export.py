"""ONNX export: four graphs per checkpoint, the two fused ops as `art` local functions.

- `frame_encoder.onnx`: images [N, 3, H, W] → patches [N, L, D], frame_tokens [N, E] (the frame
  embeddings, in CLIP's joint space);
- `clip_topk.onnx`: frame_tokens [B, T, E] → x_cls [B, E], topk_ids [B, K], s_topk [B, K, D];
- `frame_head.onnx`: patches [N, L, D], s_topk [N, K, D] → responses [N, K, D], attention [N, K, L]
  (holds `art::QRAttention`);
- `clip_readout.onnx`: x_cls [B, E], responses [B, T, K, D], s_topk [B, K, D] → logits [B, C],
  saliency [B, T, K] (holds `art::TrackletLink`).

The clip head is split where its work is per frame: a live stream encodes each frame once and runs
`frame_head` once per frame and top-K set, caching the result (art_edge.runtime.streaming); N and B are
dynamic, T is fixed. `art::QRAttention` and `art::TrackletLink` are nodes of domain `art` carrying
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
from art_edge.runtime.engine_dir import GRAPH_IO

OPSET = 18
ART_DOMAIN = "art"


class FrameEncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.encode_frames(images)


class ClipTopKGraph(FrameEncoderGraph):
    def forward(self, frame_tokens):
        return self.model.head_topk(frame_tokens)


class FrameHeadGraph(FrameEncoderGraph):
    def forward(self, patches, s_topk):
        return self.model.head_frames(patches, s_topk)


class ClipReadoutGraph(FrameEncoderGraph):
    def forward(self, x_cls, responses, s_topk):
        logits, saliency, _ = self.model.head_readout(x_cls, responses, s_topk)
        return logits, saliency


GRAPH_MODULES = {
    "frame_encoder": FrameEncoderGraph,
    "clip_topk": ClipTopKGraph,
    "frame_head": FrameHeadGraph,
    "clip_readout": ClipReadoutGraph,
}


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
    """Write the four graphs of an ART model into out_dir; → name → path."""
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
    paths = {name: out_dir / f"{name}.onnx" for name in GRAPH_MODULES}
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
            for name, inputs in example_inputs(model).items():
                _export_graph(model, name, inputs, paths[name], common)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    for path in paths.values():
        _finish(path, metadata)
    return paths


@torch.no_grad()
def example_inputs(model) -> dict[str, tuple]:
    """Inputs of each graph that the model itself produces from random images (2 clips)."""
    cfg, b, t = model.cfg, 2, model.cfg.num_frames
    patches, tokens = model.encode_frames(torch.randn(2, 3, cfg.image_size, cfg.image_size))
    clip_patches = patches[:1].expand(b * t, -1, -1).contiguous() + 0.1 * torch.randn(
        b * t, *patches.shape[1:]
    )
    clip_tokens = tokens[:1].expand(b * t, -1).reshape(b, t, -1) + 0.1 * torch.randn(
        b, t, tokens.shape[-1]
    )
    x_cls, _, s_topk = model.head_topk(clip_tokens)
    per_frame = (
        s_topk.unsqueeze(1).expand(b, t, *s_topk.shape[1:]).reshape(b * t, *s_topk.shape[1:])
    )
    responses, _ = model.head_frames(clip_patches, per_frame)
    return {
        "frame_encoder": (torch.randn(2, 3, cfg.image_size, cfg.image_size),),
        "clip_topk": (clip_tokens,),
        "frame_head": (clip_patches, per_frame),
        "clip_readout": (x_cls, responses.reshape(b, t, *responses.shape[1:]), s_topk),
    }


def _export_graph(model, name: str, inputs: tuple, path: Path, common: dict):
    inputs_names, output_names = GRAPH_IO[name]
    batch = "N" if name in ("frame_encoder", "frame_head") else "B"
    with torch.no_grad():
        # Wrappers in eval mode: the exporter restores each wrapper's mode afterwards, and a fresh
        # module is in train mode, which would silently switch `model` to train mode (dropout on).
        torch.onnx.export(
            GRAPH_MODULES[name](model).eval(),
            inputs,
            str(path),
            input_names=inputs_names,
            output_names=output_names,
            dynamic_axes={n: {0: batch} for n in inputs_names + output_names},
            **(
                {"custom_opsets": {ART_DOMAIN: 1}} if name in ("frame_head", "clip_readout") else {}
            ),
            **common,
        )
