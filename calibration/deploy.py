"""FP32 ONNX graphs → a deployable engine dir: INT8 (calibrate, quantize, gate), TensorRT engines,
the manifest. No torch: this runs on the edge install, on the device and its own footage.

    with atomic_dir(out, replace=True) as tmp:
        meta = copy_fp32_graphs(source_engine_dir, tmp)     # or art_train's export, from a checkpoint
        manifest = deploy(tmp, out, meta, "int8", "onnxruntime", int8_options)

`art-build-engine --ckpt` exports with torch and then calls `deploy`; `art-build-engine --from`
starts from an engine dir built elsewhere and calls the same `deploy`, so both write the same
contract: files, manifest, report.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from art_edge.errors import UserError
from art_edge.files import check_writable
from art_edge.runtime.engine_dir import GRAPHS, read_manifest, write_manifest
from calibration.build import CACHE_NAME, build_int8
from calibration.tensorrt_build import build_tensorrt_engines

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "onnxruntime", "tensorrt")


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}; use auto, onnxruntime or tensorrt")
    if backend == "auto":
        return "tensorrt" if tensorrt_available() else "onnxruntime"
    if backend == "tensorrt" and not tensorrt_available():
        raise UserError(
            "--backend tensorrt: TensorRT is not installed or cannot load here; "
            "use --backend onnxruntime (or auto)"
        )
    return backend


def check_build(out, precision: str, backend: str, int8, force: bool) -> str:
    """Everything about a build that can be wrong before any work starts; → the resolved backend."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown --precision {precision!r}; use fp32, fp16 or int8")
    if precision == "int8" and (int8 is None or not int8.calib):
        raise UserError(
            "--precision int8 needs --calib LIST: real clips to calibrate on (the training LIST, "
            "or footage from this device's cameras)"
        )
    backend = resolve_backend(backend)
    if precision == "fp16" and backend != "tensorrt":
        raise UserError(
            "--precision fp16 needs --backend tensorrt; ONNX Runtime on the CPU runs fp32 or int8"
        )
    out = Path(out)
    check_writable(out, "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; an engine dir is a folder: choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(
            f"{out} exists and is not empty: pass --force to replace it, or choose another --out"
        )
    return backend


def copy_fp32_graphs(engine_dir, dest: Path) -> dict:
    """The FP32 ONNX graphs of an engine dir (checked against its manifest) copied into `dest`;
    → the model meta (config, classes, preprocessing) they were exported with."""
    manifest = read_manifest(engine_dir)
    fp32 = (manifest.get("int8") or {}).get("fp32_graphs") or manifest["graphs"]
    for name in GRAPHS:
        if name not in fp32:
            raise UserError(
                f"{engine_dir} has no FP32 {name} graph; rebuild it with art-build-engine --ckpt"
            )
        shutil.copy2(Path(engine_dir) / fp32[name], dest / f"{name}.onnx")
    return {k: manifest[k] for k in ("model", "classes", "preprocessing")}


def deploy(
    work_dir: Path,
    out: Path,
    meta: dict,
    precision: str,
    backend: str,
    int8=None,
    log=print,
    source: dict | None = None,
) -> dict:
    """INT8 and TensorRT steps over the FP32 graphs in `work_dir` (the engine dir being built,
    renamed to `out` by the caller), then the manifest. `int8` is a calibration.build.Int8Options."""
    graphs = {name: f"{name}.onnx" for name in GRAPHS}
    trt_graphs, extra = graphs, {"source": source or {}}
    if precision == "int8":
        # ONNX Runtime's CPU timings say nothing about a TensorRT engine: time them for ORT builds only.
        int8 = dataclasses.replace(
            int8, measure_speed=int8.measure_speed and backend == "onnxruntime"
        )
        extra.update(_build_int8(work_dir, Path(out), meta, int8, log))
        graphs = trt_graphs = extra.pop("graphs")
    if backend == "tensorrt":
        extra["tensorrt"] = build_tensorrt_engines(
            work_dir, trt_graphs, precision, previous_dir=out, log=log
        )
    return write_manifest(work_dir, meta, precision, backend, graphs, extra)


def _build_int8(work_dir: Path, out: Path, meta: dict, int8, log) -> dict:
    if int8.cache is None and (out / CACHE_NAME).is_file():
        int8.cache = str(out / CACHE_NAME)  # the last build's ranges, reused when they still match
    return build_int8(work_dir, meta, int8, log=log, failed_report_prefix=out)
