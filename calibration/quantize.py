"""Explicit INT8: Q/DQ nodes written into the ONNX graph by ONNX Runtime's static quantizer.

The canonical INT8 graph is what TensorRT 10/11 builds strongly typed: signed INT8, symmetric
(zero point 0) activations and per-channel symmetric weights, and only the matrix products
(MatMul, Conv, Gemm) quantized, so LayerNorm, Softmax, residual adds and the `art` function
nodes stay float.

The same graph runs on ONNX Runtime's CPU integer kernels (tried there: U8 activations were no
faster than these S8 ones once the float readers read float tensors).

Ranges are cached (`CalibrationCache`) under a key of the graph's sha256, the calibration method
and the identity of the calibration data, and reused only when the key matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from art_edge.errors import UserError
from art_edge.files import atomic_write_text, sha256_file

CACHE_FORMAT = "art-calib-cache/1"
METHODS = ("minmax", "entropy", "percentile")


@dataclass
class QuantSettings:
    method: str = "minmax"  # calibration method: minmax, entropy or percentile
    percentile: float = 99.999  # the percentile method's clipping point
    op_types: tuple = ("MatMul", "Conv", "Gemm")  # only the matrix products are quantized
    per_channel: bool = True  # per-output-channel weight scales
    # 7-bit weights. ONNX Runtime's integer kernels on x86 CPUs without VNNI add u8×s8 products in
    # pairs into int16, which saturates with full 8-bit weights (measured on art-tiny's encoder:
    # 21 % relative output error against 2 % with 7-bit weights). TensorRT and VNNI/ARM CPUs do
    # not need it; no flag turns it off yet (QuantSettings(reduce_range=False) from Python).
    reduce_range: bool = True
    # INT32 biases (scale = input scale × weight scale): ONNX Runtime then runs Conv and Gemm as
    # integer kernels. TensorRT's Q/DQ takes INT8 tensors only, so its graph keeps float biases.
    quantize_bias: bool = False
    # Readers that are not matrix products (residual adds, norms, reshapes) read the float tensor,
    # not its rounded copy; off, ONNX Runtime's quantizer hands them DQ(Q(x)) as well.
    float_readers: bool = True
    exclude: list = field(default_factory=list)  # node names kept in float

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; use one of {', '.join(METHODS)}"
            )

    def key(self) -> dict:
        """What the ranges depend on (node exclusions do not change them)."""
        return {
            "method": self.method,
            "percentile": self.percentile if self.method == "percentile" else None,
            "op_types": list(self.op_types),
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
        }


class CalibrationCache:
    """One JSON file of ranges for several graphs: {graph name: {"key": ..., "ranges": ...}}."""

    def __init__(self, path: Path | None, log=print):
        self.path, self.log, self.entries, self.made_here = path, log, {}, set()
        if path is not None and Path(path).is_file():
            try:
                doc = json.loads(Path(path).read_text())
                if doc.get("format") != CACHE_FORMAT:
                    raise ValueError(f"format {doc.get('format')!r}")
                self.entries = doc["entries"]
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                log(
                    f"calibration cache {path} is not readable ({e}); ignoring it and calibrating afresh"
                )

    def get(self, graph: str, key: dict):
        entry = self.entries.get(graph)
        if entry is None:
            return None
        from_file = graph not in self.made_here
        if entry["key"] != key:
            changed = sorted(
                k for k in set(key) | set(entry["key"]) if key.get(k) != entry["key"].get(k)
            )
            if from_file:
                self.log(
                    f"calibration cache {self.path}: the {graph} ranges were made for a different "
                    f"{', '.join(changed)}; ignoring them and calibrating afresh"
                )
            return None
        if from_file:
            self.log(f"calibration cache {self.path}: reusing the {graph} ranges")
        return entry["ranges"]

    def put(self, graph: str, key: dict, ranges: dict):
        self.entries[graph] = {"key": key, "ranges": ranges}
        self.made_here.add(graph)

    def save(self, path: Path):
        atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "entries": self.entries}))


def data_identity(list_path, root, size: int, seed: int) -> dict:
    """Which clips calibration reads: the LIST file's content, where its paths point, how many, which."""
    return {
        "list_sha256": hashlib.sha256(Path(list_path).read_bytes()).hexdigest(),
        "root": str(Path(root).resolve()) if root else str(Path(list_path).resolve().parent),
        "size": size,
        "seed": seed,
    }


class FeedReader:
    """ONNX Runtime's CalibrationDataReader over a lazy iterable of feed dicts."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


@contextlib.contextmanager
def _quiet_quantizer():
    """ONNX Runtime's quantizer logs advice meant for its own users ("consider pre-processing")
    on the root logger at WARNING: not for ours, who see our own log lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_graph(
    fp32_path,
    out_path,
    feeds,
    settings: QuantSettings,
    cache: CalibrationCache,
    graph: str,
    data_key: dict,
) -> Path:
    """Write the canonical INT8 Q/DQ graph of `fp32_path` to `out_path`.

    `feeds` is a callable returning an iterable of feed dicts; it is called only when the cache
    has no matching ranges."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    key = {"graph_sha256": sha256_file(fp32_path), **settings.key(), **data_key}
    ranges = cache.get(graph, key)
    with tempfile.TemporaryDirectory(prefix="art-quant-") as tmp:
        ort_cache = Path(tmp) / "ranges.json"
        if ranges is not None:
            ort_cache.write_text(json.dumps(ranges))
        with _quiet_quantizer():
            quantize_static(
                str(fp32_path),
                str(out_path),
                FeedReader(feeds()) if ranges is None else None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(settings.op_types),
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(settings.exclude) + float_matmuls(fp32_path),
                calibrate_method=methods[settings.method],
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": settings.quantize_bias,
                    "CalibPercentile": settings.percentile,
                    "CalibTensorRangeSymmetric": True,
                },
                calibration_cache_path=str(ort_cache),
            )
        if ranges is None:
            cache.put(graph, key, json.loads(ort_cache.read_text()))
    _finish_qdq(fp32_path, out_path, settings.op_types if settings.float_readers else None)
    return Path(out_path)


def float_matmuls(path) -> list[str]:
    """MatMuls kept in float:
    - activation × activation (attention scores and attention × values): one side is a softmax
      in [0, 1], which symmetric INT8 resolves to 127 levels; on art-edge-s the gate kept asking
      for them back in float (measured with --auto-exclude);
    - a weight of rank > 2 (one matrix per query): neither ONNX Runtime's integer MatMul nor
      TensorRT takes per-channel scales on it, and these are small."""
    model = onnx.load(str(path), load_external_data=False)
    ranks = {t.name: len(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and (not any(i in ranks for i in n.input) or any(ranks.get(i, 0) > 2 for i in n.input))
    ]


def _float_readers_read_float(model: onnx.ModelProto, op_types) -> int:
    """ONNX Runtime's quantizer hands DQ(Q(x)) to every reader of a quantized tensor x. Give the
    readers that are not matrix products (residual adds, norms, reshapes) x itself back, so only
    the matrix products see rounded inputs; drop the Q/DQ pairs nobody reads any more."""
    nodes = model.graph.node
    q_input = {n.output[0]: n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    dq_float = {
        n.output[0]: q_input[n.input[0]]
        for n in nodes
        if n.op_type == "DequantizeLinear" and n.input[0] in q_input
    }
    rewired = 0
    for n in nodes:
        if n.op_type in op_types or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            if name in dq_float:
                n.input[i] = dq_float[name]
                rewired += 1
    graph_outputs = {o.name for o in model.graph.output}
    while True:  # remove DQ, then Q, nodes whose outputs nobody reads
        read = {i for n in nodes for i in n.input} | graph_outputs
        dead = [
            n
            for n in nodes
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in read
        ]
        if not dead:
            break
        for n in dead:
            nodes.remove(n)
    used = {i for n in nodes for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return rewired


def _finish_qdq(src, dst, op_types):
    """Float readers back on float tensors, and the metadata the quantizer dropped (the engine
    reads classes and preprocessing from it)."""
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    if op_types is not None:
        _float_readers_read_float(model, op_types)
    del model.metadata_props[:]
    for k, v in {**meta, "precision": "int8"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(dst))


def quantized_nodes(int8_path, op_types=QuantSettings.op_types) -> list[str]:
    """Names of the matrix products that now read quantized inputs."""
    model = onnx.load(str(int8_path), load_external_data=False)
    produced_by_dq = {
        o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output
    }
    return [
        n.name
        for n in model.graph.node
        if n.op_type in op_types and any(i in produced_by_dq for i in n.input)
    ]


def settings_dict(settings: QuantSettings) -> dict:
    return {**asdict(settings), "op_types": list(settings.op_types)}
