"""The main job on the embedded default (CPU): the whole toolkit in one command.

    python -m art_train.demo --out demo        (what `make demo` runs)

Makes a synthetic fine-grained dataset, trains art-tiny on it, builds an INT8 engine dir
(calibrated on the training clips, gated against FP32 on the held-out clips), runs `art-edge` on
the held-out clips played back to back as a live source, and prints the accuracy, the FPS and
where the annotated video and the events went.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from art_edge.errors import cli_entry


@cli_entry
def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the whole toolkit on synthetic data, on the CPU.")
    ap.add_argument(
        "--out", default="demo", help="folder for the dataset, the run, the engine and the outputs"
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: the art-tiny preset)"
    )
    ap.add_argument("--per-class", type=int, default=60, help="synthetic training clips per class")
    ap.add_argument(
        "--precision", default="int8", choices=["int8", "fp32"], help="engine precision"
    )
    a = ap.parse_args(argv)
    from art_edge.app import EdgeOptions, print_summary, run_edge
    from art_edge.engine import ARTEngine
    from art_edge.sources import open_source
    from art_edge.streaming import StreamConfig
    from art_edge.synthetic import make_dataset
    from art_train.build_engine import build_engine
    from art_train.train import resolve_config, train_with_restarts
    from calibration.build import Int8Options

    out = Path(a.out)
    data, run, engine_dir = out / "data", out / "run", out / "engine"
    t0 = time.time()
    if not (data / "classes.txt").is_file():
        print(f"[1/4] synthetic dataset → {data}")
        make_dataset(data, per_class=a.per_class, val_per_class=20, progress=sys.stderr.isatty())
    else:
        print(f"[1/4] synthetic dataset: reusing {data}")
    model_cfg, tcfg = resolve_config("art-tiny", [f"epochs={a.epochs}"] if a.epochs else [])
    print(f"[2/4] training art-tiny → {run}")
    train_with_restarts(
        model_cfg,
        tcfg,
        data / "train.csv",
        data / "val.csv",
        data / "classes.txt",
        run,
        resume=(run / "last.pt").is_file(),
    )
    print(f"[3/4] building the {a.precision.upper()} engine dir → {engine_dir}")
    int8 = Int8Options(calib=str(data / "train.csv"), holdout=str(data / "val.csv"), auto_exclude=3)
    manifest = build_engine(
        run,
        engine_dir,
        precision=a.precision,
        backend="onnxruntime",
        int8=int8 if a.precision == "int8" else None,
        force=True,
    )
    print(
        "[4/4] art-edge on the held-out clips, played back to back as a live source (ONNX Runtime, CPU)"
    )
    video, events = out / "edge.mp4", out / "events.jsonl"
    with ARTEngine.load(engine_dir) as engine:
        source = open_source(str(data / "val.csv"), classes=engine.classes)
        summary = run_edge(
            engine,
            source,
            EdgeOptions(StreamConfig(window=32, stride=4), output=str(video), events=str(events)),
        )
    report = {
        "clip_top1": summary.get("clip_top1"),
        "clips": summary.get("clips_scored"),
        "chance": 1.0 / len(engine.classes),
        "precision": a.precision,
        "edge": summary,
        "seconds": round(time.time() - t0, 1),
    }
    if a.precision == "int8":
        report["int8_gate"] = {
            k: manifest["int8"][k] for k in ("top1_agreement", "top1_drop_points", "kept_in_float")
        }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print()
    print_summary(summary)
    print(
        f"\nart-tiny {a.precision.upper()} engine through art-edge on {summary.get('clips_scored')} held-out "
        f"synthetic clips: top-1 {summary.get('clip_top1', 0):.3f} (chance {report['chance']:.3f}), "
        f"{summary['fps']:.0f} FPS with overlay and video writing"
    )
    if a.precision == "int8":
        g = report["int8_gate"]
        print(
            f"INT8 gate against FP32: agreement {100 * g['top1_agreement']:.1f} %, top-1 drop "
            f"{g['top1_drop_points']:+.2f} points; report {engine_dir}/int8_report.png"
        )
    print(
        f"checkpoint: {run}/model.safetensors   curves: {run}/curves.png   engine: {engine_dir}/manifest.json"
    )
    print(f"report: {out}/report.json   total {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
