"""art-build-engine: checkpoint → engine dir (ONNX graphs + manifest, and TensorRT engines on a GPU).

    art-build-engine --ckpt runs/tiny --out engines/tiny [--precision fp32] [--backend auto]

The engine dir is built in a temporary folder beside --out and renamed into place at the end, so
a failed build leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from art_edge import __version__
from art_edge.engine import FORMAT, MANIFEST, sha256_file
from art_edge.errors import UserError, cli_entry


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
        raise UserError("--backend tensorrt: TensorRT is not installed or cannot load here; "
                        "use --backend onnxruntime (or auto)")
    if backend not in ("onnxruntime", "tensorrt"):
        raise UserError(f"unknown --backend {backend!r}; use auto, onnxruntime or tensorrt")
    return backend


def write_manifest(engine_dir: Path, meta: dict, precision: str, backend: str, graphs: dict, extra: dict | None = None):
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(engine_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"format": FORMAT, "toolkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "model": meta["model"], "classes": meta["classes"], "preprocessing": meta["preprocessing"],
                "precision": precision, "backend": backend, "graphs": graphs, "files": files, **(extra or {})}
    (engine_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def build_engine(ckpt, out, precision: str = "fp32", backend: str = "auto", calib=None, root=None,
                 force: bool = False, log=print) -> dict:
    from art_train.checkpoint import load_checkpoint
    from art_train.export import export_onnx

    out = Path(out)
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"unknown --precision {precision!r}; use fp32, fp16 or int8")
    if precision == "int8":
        raise UserError("--precision int8 is not available yet (INT8 calibration is a separate step still to land); "
                        "use --precision fp32")
    backend = resolve_backend(backend)
    if precision == "fp16" and backend != "tensorrt":
        raise UserError("--precision fp16 needs --backend tensorrt; ONNX Runtime on the CPU runs fp32 or int8")
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} exists and is not empty: pass --force to replace it, or choose another --out")
    model, meta = load_checkpoint(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        log(f"exporting {meta['model']['name']} from {ckpt} to ONNX")
        paths = export_onnx(model, meta, tmp)
        graphs = {k: p.name for k, p in paths.items()}
        extra = {}
        if backend == "tensorrt":
            from art_edge.tensorrt_build import build_tensorrt_engines

            extra["tensorrt"] = build_tensorrt_engines(tmp, graphs, precision, log=log)
        manifest = write_manifest(tmp, meta, precision, backend, graphs, extra)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"engine dir {out}: " + ", ".join(f"{n} ({e['bytes'] / 1e6:.1f} MB)" for n, e in manifest["files"].items()))
    return manifest


@cli_entry
def main(argv=None):
    ap = argparse.ArgumentParser(description="Build an engine dir from an art-train checkpoint.")
    ap.add_argument("--ckpt", required=True, help="run dir written by art-train")
    ap.add_argument("--out", required=True, help="engine dir to write")
    ap.add_argument("--precision", default="fp32", help="fp32, fp16 (TensorRT) or int8")
    ap.add_argument("--calib", help="LIST of clips for INT8 calibration")
    ap.add_argument("--root", help="folder for relative paths in --calib")
    ap.add_argument("--backend", default="auto", help="auto (TensorRT when present), onnxruntime or tensorrt")
    ap.add_argument("--force", action="store_true", help="replace an existing engine dir")
    a = ap.parse_args(argv)
    build_engine(a.ckpt, a.out, a.precision, a.backend, a.calib, a.root, a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
