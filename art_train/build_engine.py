"""art-build-engine: a checkpoint, or an engine dir built elsewhere → a deployable engine dir.

    art-build-engine --ckpt runs/tiny --out engines/tiny                       # training host (torch)
    art-build-engine --ckpt runs/tiny --out engines/tiny-int8 --precision int8 --calib train.csv --holdout val.csv
    art-build-engine --from engines/tiny --out engines/tiny-int8 --precision int8 --calib site.csv   # device, no torch
    art-build-engine --from engines/tiny --out engines/tiny-trt --backend tensorrt --precision fp16

`--ckpt` exports the FP32 ONNX graphs with torch; `--from` takes them from an engine dir (checked
against its manifest). Both then go through calibration.deploy: INT8 calibration and the gate,
TensorRT engines, the manifest. The engine dir is built in a temporary folder beside --out and
renamed into place at the end, so a failed build leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from art_edge.errors import (
    ArgumentParser,
    Number,
    UserError,
    cli_entry,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from art_edge.files import atomic_dir
from calibration.calib_set import DEFAULT_CALIB_CLIPS
from calibration.deploy import BACKENDS, PRECISIONS, check_build, copy_fp32_graphs, deploy
from calibration.quantize import METHODS

percentile = Number(float, 0.0, 100.0, min_open=True, what="a percentile in (0, 100]")


def build_engine(
    ckpt, out, precision="fp32", backend="auto", int8=None, force=False, log=print
) -> dict:
    """Checkpoint → engine dir: export with torch, then `calibration.deploy`."""
    from art_train.checkpoint import load_checkpoint
    from art_train.export import export_onnx

    def export(tmp: Path) -> dict:
        model, meta = load_checkpoint(ckpt)
        log(f"exporting {meta['model']['name']} from {ckpt} to ONNX")
        export_onnx(model, meta, tmp)
        return meta

    return _build(export, {"checkpoint": str(ckpt)}, out, precision, backend, int8, force, log)


def build_from(
    engine_dir, out, precision="fp32", backend="auto", int8=None, force=False, log=print
) -> dict:
    """Engine dir → engine dir, without torch: the FP32 graphs of `engine_dir`, then `calibration.deploy`."""
    if Path(engine_dir).resolve() == Path(out).resolve():
        raise UserError("--from and --out are the same folder: write the new engine dir elsewhere")

    def copy(tmp: Path) -> dict:
        log(f"building from the FP32 graphs of {engine_dir}")
        return copy_fp32_graphs(engine_dir, tmp)

    return _build(copy, {"engine_dir": str(engine_dir)}, out, precision, backend, int8, force, log)


def _build(fp32_graphs, source: dict, out, precision, backend, int8, force, log) -> dict:
    """Check everything first, then in a folder renamed to `out` only when all went well: the FP32
    graphs (`fp32_graphs(folder)` → model meta), then INT8, TensorRT and the manifest."""
    backend = check_build(out, precision, backend, int8, force)
    with atomic_dir(out, replace=True) as tmp:
        meta = fp32_graphs(tmp)
        manifest = deploy(tmp, Path(out), meta, precision, backend, int8, log, source)
    _log_files(out, manifest, log)
    return manifest


def _log_files(out, manifest: dict, log):
    log(
        f"engine dir {out}: "
        + ", ".join(f"{n} ({e['bytes'] / 1e6:.1f} MB)" for n, e in manifest["files"].items())
    )


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="art-build-engine",
        description="Build a deployable engine dir from an art-train checkpoint "
        "or from another engine dir.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--ckpt", help="run dir written by art-train (needs torch: the training install)"
    )
    src.add_argument(
        "--from",
        dest="from_dir",
        metavar="ENGINE_DIR",
        help="engine dir built elsewhere: its FP32 graphs are the start (no torch needed)",
    )
    ap.add_argument("--out", required=True, help="engine dir to write")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp16 needs TensorRT")
    ap.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="auto: TensorRT when it loads here"
    )
    ap.add_argument("--force", action="store_true", help="replace an existing engine dir")
    add_int8_flags(ap.add_argument_group("INT8 (--precision int8)"))
    return ap


def add_int8_flags(q):
    q.add_argument("--calib", help="LIST of real clips to calibrate on (the training LIST works)")
    q.add_argument("--root", help="folder for relative paths in --calib and --holdout")
    q.add_argument(
        "--holdout",
        help="LIST for the accuracy gate (default: --calib clips not used to calibrate)",
    )
    q.add_argument(
        "--calib-size", type=positive_int, default=DEFAULT_CALIB_CLIPS, help="clips to calibrate on"
    )
    q.add_argument(
        "--gate-size", type=positive_int, help="held-out clips the gate scores (default: all)"
    )
    q.add_argument(
        "--calib-method", default="minmax", choices=METHODS, help="how activation ranges are chosen"
    )
    q.add_argument(
        "--percentile",
        type=percentile,
        default=99.999,
        help="clipping point of --calib-method percentile",
    )
    q.add_argument(
        "--calib-cache", help="ranges to reuse when they match (default: the old engine dir's)"
    )
    q.add_argument(
        "--max-drop",
        type=non_negative_float,
        default=1.0,
        help="top-1 points INT8 may lose against FP32",
    )
    q.add_argument(
        "--min-agreement", type=fraction, help="also require this FP32/INT8 top-1 agreement (0..1)"
    )
    q.add_argument(
        "--auto-exclude",
        type=non_negative_int,
        default=0,
        metavar="ROUNDS",
        help="on a gate failure, keep the 2 most sensitive nodes in float and retry, up to ROUNDS times",
    )
    q.add_argument(
        "--keep-failed-int8", action="store_true", help="keep an INT8 build that fails the gate"
    )
    q.add_argument(
        "--threads", type=positive_int, help="ONNX Runtime threads for calibration and the gate"
    )


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
    build = build_engine if a.ckpt else build_from
    build(a.ckpt or a.from_dir, a.out, a.precision, a.backend, int8_options(a), a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
