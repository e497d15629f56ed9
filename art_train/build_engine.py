"""art-build-engine: checkpoint → engine dir (ONNX graphs + manifest, and TensorRT engines on a GPU).

    art-build-engine --ckpt runs/tiny --out engines/tiny [--precision fp32] [--backend auto]
    art-build-engine --ckpt runs/tiny --out engines/tiny-int8 --precision int8 --calib train.csv --holdout val.csv

The engine dir is built in a temporary folder beside --out and renamed into place at the end, so
a failed build leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from art_edge import __version__
from art_edge.engine import FORMAT, MANIFEST, sha256_file
from art_edge.errors import UserError, cli_entry
from art_edge.files import atomic_dir
from calibration.calib_set import DEFAULT_CALIB_CLIPS
from calibration.quantize import METHODS

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "onnxruntime", "tensorrt")


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "tensorrt" if tensorrt_available() else "onnxruntime"
    if backend == "tensorrt" and not tensorrt_available():
        raise UserError(
            "--backend tensorrt: TensorRT is not installed or cannot load here; "
            "use --backend onnxruntime (or auto)"
        )
    if backend not in ("onnxruntime", "tensorrt"):
        raise UserError(f"unknown --backend {backend!r}; use auto, onnxruntime or tensorrt")
    return backend


def write_manifest(
    engine_dir: Path,
    meta: dict,
    precision: str,
    backend: str,
    graphs: dict,
    extra: dict | None = None,
):
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(engine_dir.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "format": FORMAT,
        "toolkit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": meta["model"],
        "classes": meta["classes"],
        "preprocessing": meta["preprocessing"],
        "precision": precision,
        "backend": backend,
        "graphs": graphs,
        "files": files,
        **(extra or {}),
    }
    (engine_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def build_engine(
    ckpt,
    out,
    precision: str = "fp32",
    backend: str = "auto",
    int8=None,
    force: bool = False,
    log=print,
) -> dict:
    """Export, (INT8: calibrate, quantize, gate,) (TensorRT: build engines,) write the manifest,
    all in a temporary dir renamed to `out` at the end. `int8` is a calibration.build.Int8Options."""
    from art_train.checkpoint import load_checkpoint
    from art_train.export import export_onnx

    out = Path(out)
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"unknown --precision {precision!r}; use fp32, fp16 or int8")
    if precision == "int8" and (int8 is None or not int8.calib):
        raise UserError(
            "--precision int8 needs --calib LIST: real clips to calibrate on (the training LIST works)"
        )
    backend = resolve_backend(backend)
    if precision == "fp16" and backend != "tensorrt":
        raise UserError(
            "--precision fp16 needs --backend tensorrt; ONNX Runtime on the CPU runs fp32 or int8"
        )
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(
            f"{out} exists and is not empty: pass --force to replace it, or choose another --out"
        )
    model, meta = load_checkpoint(ckpt)
    with atomic_dir(out, replace=True) as tmp:
        log(f"exporting {meta['model']['name']} from {ckpt} to ONNX")
        paths = export_onnx(model, meta, tmp)
        graphs = {k: p.name for k, p in paths.items()}
        trt_graphs, extra = graphs, {}
        if precision == "int8":
            # ONNX Runtime's CPU timings say nothing about a TensorRT engine: time them for ORT builds only.
            int8 = dataclasses.replace(
                int8, measure_speed=int8.measure_speed and backend == "onnxruntime"
            )
            extra = _build_int8(tmp, out, meta, int8, log)
            graphs = trt_graphs = extra.pop("graphs")
        if backend == "tensorrt":
            from art_edge.tensorrt_build import build_tensorrt_engines

            extra["tensorrt"] = build_tensorrt_engines(
                tmp, trt_graphs, precision, previous_dir=out, log=log
            )
        manifest = write_manifest(tmp, meta, precision, backend, graphs, extra)
    log(
        f"engine dir {out}: "
        + ", ".join(f"{n} ({e['bytes'] / 1e6:.1f} MB)" for n, e in manifest["files"].items())
    )
    return manifest


def _build_int8(tmp: Path, out: Path, meta: dict, int8, log) -> dict:
    from calibration.build import CACHE_NAME, build_int8

    if int8.cache is None and (out / CACHE_NAME).is_file():
        int8.cache = str(out / CACHE_NAME)  # the last build's ranges, reused when they still match
    return build_int8(tmp, meta, int8, log=log, failed_report_prefix=out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Build an engine dir from an art-train checkpoint.")
    ap.add_argument("--ckpt", required=True, help="run dir written by art-train")
    ap.add_argument("--out", required=True, help="engine dir to write")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp16 needs TensorRT")
    ap.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="auto: TensorRT when it loads here"
    )
    ap.add_argument("--force", action="store_true", help="replace an existing engine dir")
    q = ap.add_argument_group("INT8 (--precision int8)")
    q.add_argument("--calib", help="LIST of real clips to calibrate on (the training LIST works)")
    q.add_argument("--root", help="folder for relative paths in --calib and --holdout")
    q.add_argument(
        "--holdout",
        help="LIST for the accuracy gate (default: --calib clips not used to calibrate)",
    )
    q.add_argument(
        "--calib-size", type=int, default=DEFAULT_CALIB_CLIPS, help="clips to calibrate on"
    )
    q.add_argument("--gate-size", type=int, help="held-out clips the gate scores (default: all)")
    q.add_argument(
        "--calib-method", default="minmax", choices=METHODS, help="how activation ranges are chosen"
    )
    q.add_argument(
        "--percentile",
        type=float,
        default=99.999,
        help="clipping point of --calib-method percentile",
    )
    q.add_argument(
        "--calib-cache", help="ranges to reuse when they match (default: the old engine dir's)"
    )
    q.add_argument(
        "--max-drop", type=float, default=1.0, help="top-1 points INT8 may lose against FP32"
    )
    q.add_argument(
        "--min-agreement", type=float, help="also require this FP32/INT8 top-1 agreement (0..1)"
    )
    q.add_argument(
        "--auto-exclude",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="on a gate failure, keep the 2 most sensitive nodes in float and retry, up to ROUNDS times",
    )
    q.add_argument(
        "--keep-failed-int8", action="store_true", help="keep an INT8 build that fails the gate"
    )
    q.add_argument("--threads", type=int, help="ONNX Runtime threads for calibration and the gate")
    return ap


def int8_options(a):
    """The INT8 settings of the parsed flags (None unless --precision int8)."""
    if a.precision != "int8":
        return None
    from calibration.build import Int8Options
    from calibration.quantize import QuantSettings

    return Int8Options(
        calib=a.calib,
        root=a.root,
        holdout=a.holdout,
        calib_size=a.calib_size,
        gate_size=a.gate_size,
        settings=QuantSettings(method=a.calib_method, percentile=a.percentile),
        max_drop=a.max_drop,
        min_agreement=a.min_agreement,
        keep_failed=a.keep_failed_int8,
        auto_exclude=a.auto_exclude,
        cache=a.calib_cache,
        threads=a.threads,
    )


@cli_entry
def main(argv=None):
    a = build_parser().parse_args(argv)
    build_engine(a.ckpt, a.out, a.precision, a.backend, int8_options(a), a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
