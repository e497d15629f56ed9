"""Drives plugins/trt_python.py through NVIDIA's `tensorrt.plugin` package as TensorRT would, over
the stand-in for TensorRT's compiled bindings (plugins/tests/tensorrt_standin); run by
test_trt_python_plugins.py in a process whose sys.path puts the stand-in and a numpy that
tensorrt.plugin accepts first.

    python trt_python_worker.py OUT_DIR    (inputs OUT_DIR/<name>.npy; outputs OUT_DIR/<op>_<output>_<dtype>.npy)
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorrt as trt

import plugins.trt_python  # noqa: F401  (registers art::QRAttention and art::TrackletLink)

OPS = {
    # name: input names, attributes as the ONNX parser hands them over, output names
    "QRAttention": (
        ["q", "k", "v"],
        {"num_heads": np.array([8], np.int32), "scale": np.array([0.7071], np.float32)},
        ["out", "attn"],
    ),
    "TrackletLink": (
        ["r", "s"],
        {"temperature": np.array([0.1], np.float32), "eps": np.array([1e-6], np.float32)},
        ["agg", "saliency", "coherence"],
    ),
}


def fields(attrs: dict):
    return trt.PluginFieldCollection(
        [
            trt.PluginField(k, v, getattr(trt.PluginFieldType, v.dtype.name.upper()))
            for k, v in attrs.items()
        ]
    )


def tensor_desc(shape, dtype) -> "trt.DynamicPluginTensorDesc":
    d = trt.DynamicPluginTensorDesc()
    d.desc.dims = d.min = d.max = d.opt = trt.Dims(shape)
    d.desc.type, d.desc.format = dtype, trt.TensorFormat.LINEAR
    return d


def build_phase(plugin, arrays, report):
    """Output types, output shapes (batch dimension symbolic), format combinations, configure."""
    n_in = len(arrays)
    types = plugin.get_output_data_types([trt.DataType.FLOAT] * n_in, [a.ndim for a in arrays])
    report["output_types"] = [t.name for t in types]
    builder = trt.IExprBuilder()
    inputs = [trt.DimsExprs(a.ndim) for a in arrays]
    for exprs, a in zip(inputs, arrays):
        for j, size in enumerate(a.shape):
            exprs[j] = trt.IDimensionExpr(size, constant=j != 0)
    shapes = plugin.get_output_shapes(inputs, [], builder)
    report["output_shapes"] = [[e._value for e in s] for s in shapes]
    report["batch_constant"] = [s[0].is_constant() for s in shapes]
    in_out = [tensor_desc(a.shape, trt.DataType.FLOAT) for a in arrays]
    in_out += [tensor_desc(s, trt.DataType.FLOAT) for s in report["output_shapes"]]
    combos = plugin.get_supported_format_combinations(in_out, n_in)
    width = len(in_out)
    report["combinations"] = sorted(
        {
            tuple(f"{c.type.name}/{c.format.name}" for c in combos[i : i + width])
            for i in range(0, len(combos), width)
        }
    )
    plugin.configure_plugin(in_out[:n_in], in_out[n_in:])
    return report["output_shapes"]


def enqueue(plugin, arrays, out_shapes, dtype, np_dtype):
    inputs = [np.ascontiguousarray(a.astype(np_dtype)) for a in arrays]
    outputs = [np.full(s, np.nan, np_dtype) for s in out_shapes]
    descs = []
    for a in inputs + outputs:
        d = trt.PluginTensorDesc()
        d.dims, d.type, d.format = trt.Dims(a.shape), dtype, trt.TensorFormat.LINEAR
        descs.append(d)
    strides = [tuple(s // a.itemsize for s in a.strides) for a in inputs + outputs]
    plugin.enqueue(
        descs[: len(inputs)],
        descs[len(inputs) :],
        [a.ctypes.data for a in inputs],
        [a.ctypes.data for a in outputs],
        strides[: len(inputs)],
        strides[len(inputs) :],
        0,
    )
    return outputs


def drive(name, folder: Path) -> dict:
    input_names, attrs, output_names = OPS[name]
    creator = trt.get_plugin_registry().get_creator(name, "1", "art")
    report = {"registered": creator is not None}
    plugin = creator.create_plugin(name, "art", fields(attrs), trt.TensorRTPhase.BUILD)
    arrays = [np.load(folder / f"{name}_{i}.npy") for i in input_names]
    out_shapes = build_phase(plugin, arrays, report)
    serialized = plugin.get_fields_to_serialize()
    report["serialized"] = sorted(f.name for f in serialized)
    runtime = creator.create_plugin(name, "art", serialized, trt.TensorRTPhase.RUNTIME).clone()
    for dtype, np_dtype in ((trt.DataType.FLOAT, np.float32), (trt.DataType.HALF, np.float16)):
        for out_name, out in zip(
            output_names, enqueue(runtime, arrays, out_shapes, dtype, np_dtype)
        ):
            np.save(folder / f"{name}_{out_name}_{np_dtype.__name__}.npy", out)
    return report


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print(
        json.dumps(
            {"tensorrt.plugin": trt.plugin.__file__, **{name: drive(name, folder) for name in OPS}}
        )
    )
