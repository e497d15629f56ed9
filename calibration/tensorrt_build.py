"""Build TensorRT engines from the ONNX graphs of an engine dir, on the target device (the build
side: art-build-engine calls it through calibration.deploy; art_edge only runs the engines).

Written against the documented TensorRT 10/11 Python API: a strongly typed network (explicit
Q/DQ INT8 and FP16 come from the graph itself; TensorRT 11 has no calibrator INT8), the `art`
plugin library loaded and checked before parsing, one optimization profile for the batch
dimension, and a timing cache. Engines are keyed by (graph sha256, GPU compute capability,
TensorRT version, precision) and rebuilt when the key does not match.

TensorRT cannot be installed where this project is developed: nothing here runs in its CI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from art_edge.errors import UserError
from art_edge.files import sha256_file
from art_edge.runtime.backends.tensorrt import cuda_runtime, import_tensorrt
from art_edge.runtime.engine_dir import BATCH_PROFILE

PLUGIN_OPS = ("QRAttention", "TrackletLink")


def _gpu_capability(cudart) -> str:
    err, device = cudart.cudaGetDevice()
    err, prop = cudart.cudaGetDeviceProperties(device)
    return f"sm_{prop.major}{prop.minor}"


def engine_key(graph_sha256: str, capability: str, trt_version: str, precision: str) -> dict:
    return {
        "graph_sha256": graph_sha256,
        "gpu": capability,
        "tensorrt": trt_version,
        "precision": precision,
    }


def load_plugins(trt, plugin_library: str | None):
    """Load the art plugin library and check that both creators are registered, before parsing."""
    registry = trt.get_plugin_registry()
    if plugin_library:
        if not Path(plugin_library).is_file():
            raise UserError(
                f"plugin library not found: {plugin_library} (build plugins/ with CMake first)"
            )
        registry.load_library(str(plugin_library))
    found = {c.name for c in registry.all_creators if getattr(c, "plugin_namespace", "") == "art"}
    missing = [op for op in PLUGIN_OPS if op not in found]
    if missing:
        raise UserError(
            f"TensorRT plugins {missing} (namespace 'art') are not registered: pass the library built "
            "from plugins/ (ART_PLUGIN_LIBRARY=/path/libart_plugins.so), or import plugins.trt_python"
        )


def graph_for_plugins(onnx_path: Path) -> bytes:
    """The graph without the bodies of the `art` functions, so the parser can only take the
    registered plugins for those nodes (never silently inline the unfused body instead)."""
    import onnx

    model = onnx.load(str(onnx_path))
    keep = [f for f in model.functions if not (f.domain == "art" and f.name in PLUGIN_OPS)]
    del model.functions[:]
    model.functions.extend(keep)
    return model.SerializeToString()


def build_one(
    trt, onnx_path: Path, engine_path: Path, precision: str, batch: tuple, timing_cache: Path, log
):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # fp32 graphs and int8 Q/DQ graphs build strongly typed: precision follows the graph. fp16
    # from an fp32 graph needs the (weakly typed) FP16 builder flag of TensorRT 10.
    strongly_typed = precision != "fp16"
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph_for_plugins(onnx_path), str(onnx_path.parent)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, *[(b, *rest) for b in batch])
    config.add_optimization_profile(profile)
    log(f"building TensorRT engine {engine_path.name} ({precision})")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build {onnx_path.name}; see the TensorRT log above")
    engine_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_tensorrt_engines(
    engine_dir,
    graphs: dict,
    precision: str,
    plugin_library: str | None = None,
    previous_dir=None,
    log=print,
) -> dict:
    """Build one engine per graph, or reuse the one in `previous_dir` (the engine dir being
    replaced) when its key matches; → the manifest's tensorrt entry."""
    trt = import_tensorrt()
    plugin_library = plugin_library or os.environ.get("ART_PLUGIN_LIBRARY")
    load_plugins(trt, plugin_library)
    engine_dir = Path(engine_dir)
    capability = _gpu_capability(cuda_runtime())
    keys_path = engine_dir / "tensorrt_keys.json"
    old_dir = Path(previous_dir) if previous_dir else engine_dir
    old_keys_path = old_dir / "tensorrt_keys.json"
    old_keys = json.loads(old_keys_path.read_text()) if old_keys_path.is_file() else {}
    if (old_dir / "timing.cache").is_file() and old_dir != engine_dir:
        shutil.copy(old_dir / "timing.cache", engine_dir / "timing.cache")
    engines, keys = {}, {}
    for name, onnx_name in graphs.items():
        key = engine_key(
            sha256_file(engine_dir / onnx_name), capability, trt.__version__, precision
        )
        engine_name = f"{name}.{precision}.{capability}.engine"
        if old_keys.get(name) == key and (old_dir / engine_name).is_file():
            log(
                f"reusing TensorRT engine {engine_name} (same graph, GPU, TensorRT version and precision)"
            )
            if old_dir != engine_dir:
                shutil.copy(old_dir / engine_name, engine_dir / engine_name)
        else:
            build_one(
                trt,
                engine_dir / onnx_name,
                engine_dir / engine_name,
                precision,
                BATCH_PROFILE[name],
                engine_dir / "timing.cache",
                log,
            )
        engines[name], keys[name] = engine_name, key
    keys_path.write_text(json.dumps(keys, indent=2))
    return {
        "engines": engines,
        "keys": keys,
        "gpu": capability,
        "version": trt.__version__,
        "plugin_library": plugin_library,
    }
