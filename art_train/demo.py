"""The main job on the embedded default (CPU): the whole toolkit in one command.

    python -m art_train.demo --out demo        (what `make demo` runs)

Makes a synthetic fine-grained dataset, trains art-tiny on it, builds an INT8 engine dir
(calibrated on the training clips, gated against FP32 on the held-out clips), runs `art-edge` on
the held-out clips played back to back as a live source, and prints the accuracy, the FPS and
where the annotated video and the events went.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from art_edge.errors import ArgumentParser, cli_entry, positive_int
from art_edge.files import atomic_write_text


def prepare_data(data: Path, per_class: int):
    from art_edge.synthetic import make_dataset

    if (data / "classes.txt").is_file():
        print(f"[1/4] synthetic dataset: reusing {data}")
        return
    print(f"[1/4] synthetic dataset → {data}")
    make_dataset(data, per_class=per_class, val_per_class=20, progress=sys.stderr.isatty())


def train_tiny(data: Path, run: Path, epochs: int | None):
    from art_train.clip import resolve_clip_weights
    from art_train.train import RunSpec, resolve_config, train_with_restarts

    model_cfg, tcfg = resolve_config("art-tiny", [f"epochs={epochs}"] if epochs else [])
    print(f"[2/4] training art-tiny → {run}")
    weights = resolve_clip_weights(
        None, model_cfg.backbone
    )  # art-train's default: the shipped tower
    spec = RunSpec(
        data / "train.csv", data / "val.csv", data / "classes.txt", run, clip_weights=weights
    )
    train_with_restarts(model_cfg, tcfg, spec, resume=(run / "last.pt").is_file())


def build(data: Path, run: Path, engine_dir: Path, precision: str) -> dict:
    from art_train.build_engine import build_engine
    from calibration.build import Int8Options

    print(f"[3/4] building the {precision.upper()} engine dir → {engine_dir}")
    int8 = Int8Options(calib=str(data / "train.csv"), holdout=str(data / "val.csv"), auto_exclude=3)
    return build_engine(
        run,
        engine_dir,
        precision=precision,
        backend="onnxruntime",
        int8=int8 if precision == "int8" else None,
        force=True,
    )


def play(data: Path, engine_dir: Path, out: Path) -> tuple[dict, int]:
    """art-edge on the held-out clips as one live source; → (summary, number of classes)."""
    from art_edge.api import run_edge
    from art_edge.rig.config import RigConfig
    from art_edge.runtime.engine import ARTEngine
    from art_edge.runtime.streaming import StreamConfig
    from art_edge.video.sources import open_source

    print(
        "[4/4] art-edge on the held-out clips, played back to back as a live source (ONNX Runtime, CPU)"
    )
    opts = RigConfig.from_settings(
        stream=StreamConfig(window=32, stride=4),
        output=str(out / "edge.mp4"),
        events=str(out / "events.jsonl"),
    )
    with ARTEngine.load(engine_dir) as engine:
        return run_edge(
            engine, open_source(str(data / "val.csv"), classes=engine.classes), opts, status=True
        ), len(engine.classes)


def report(
    out: Path, summary: dict, num_classes: int, precision: str, manifest: dict, seconds: float
) -> dict:
    doc = {
        "clip_top1": summary.get("clip_top1"),
        "clips": summary.get("clips_scored"),
        "chance": 1.0 / num_classes,
        "precision": precision,
        "edge": summary,
        "seconds": round(seconds, 1),
    }
    if precision == "int8":
        doc["int8_gate"] = {
            k: manifest["int8"][k] for k in ("top1_agreement", "top1_drop_points", "kept_in_float")
        }
    atomic_write_text(out / "report.json", json.dumps(doc, indent=2))
    return doc


def print_report(doc: dict, out: Path):
    from art_edge.cli import print_summary

    summary, run, engine_dir = doc["edge"], out / "run", out / "engine"
    print()
    print_summary(summary)
    print(
        f"\nart-tiny {doc['precision'].upper()} engine through art-edge on {summary.get('clips_scored')} held-out "
        f"synthetic clips: top-1 {summary.get('clip_top1', 0):.3f} (chance {doc['chance']:.3f}), "
        f"{summary['fps']:.0f} FPS with overlay and video writing"
    )
    if "int8_gate" in doc:
        g = doc["int8_gate"]
        print(
            f"INT8 gate against FP32: agreement {100 * g['top1_agreement']:.1f} %, top-1 drop "
            f"{g['top1_drop_points']:+.2f} points; report {engine_dir}/int8_report.png"
        )
    print(
        f"checkpoint: {run}/model.safetensors   curves: {run}/curves.png   engine: {engine_dir}/manifest.json"
    )
    print(f"report: {out}/report.json   total {doc['seconds']:.0f} s")


@cli_entry
def main(argv=None):
    ap = ArgumentParser(
        prog="art-demo", description="Run the whole toolkit on synthetic data, on the CPU."
    )
    ap.add_argument(
        "--out", default="demo", help="folder for the dataset, the run, the engine and the outputs"
    )
    ap.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs (default: the art-tiny recipe)",
    )
    ap.add_argument(
        "--per-class", type=positive_int, default=60, help="synthetic training clips per class"
    )
    ap.add_argument(
        "--precision", default="int8", choices=["int8", "fp32"], help="engine precision"
    )
    a = ap.parse_args(argv)
    out, t0 = Path(a.out), time.time()
    data, run, engine_dir = out / "data", out / "run", out / "engine"
    prepare_data(data, a.per_class)
    train_tiny(data, run, a.epochs)
    manifest = build(data, run, engine_dir, a.precision)
    summary, num_classes = play(data, engine_dir, out)
    print_report(report(out, summary, num_classes, a.precision, manifest, time.time() - t0), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
