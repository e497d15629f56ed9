"""The main job on the embedded default (CPU): the whole toolkit in one command.

    python -m art_train.demo --out demo        (what `make demo` runs)

Makes a synthetic fine-grained dataset, trains art-tiny on it, builds an FP32 engine dir
(ONNX Runtime), evaluates the engine on held-out clips through the runtime, and prints where
everything went. The live art-edge stage joins when it lands.
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
    ap.add_argument("--out", default="demo", help="folder for the dataset, the run and the reports")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the art-tiny preset)")
    ap.add_argument("--per-class", type=int, default=60, help="synthetic training clips per class")
    a = ap.parse_args(argv)
    from art_train.build_engine import build_engine
    from art_train.evaluate import evaluate_engine
    from art_train.synthetic import make_dataset
    from art_train.train import resolve_config, train_with_restarts

    out = Path(a.out)
    data, run, engine = out / "data", out / "run", out / "engine"
    t0 = time.time()
    if not (data / "classes.txt").is_file():
        print(f"[1/4] synthetic dataset → {data}")
        make_dataset(data, per_class=a.per_class, val_per_class=20, progress=sys.stderr.isatty())
    else:
        print(f"[1/4] synthetic dataset: reusing {data}")
    sets = [f"epochs={a.epochs}"] if a.epochs else []
    model_cfg, tcfg = resolve_config("art-tiny", sets)
    print(f"[2/4] training art-tiny → {run}")
    resume = (run / "last.pt").is_file()
    train_with_restarts(model_cfg, tcfg, data / "train.csv", data / "val.csv", data / "classes.txt", run,
                        resume=resume)
    print(f"[3/4] building the FP32 engine dir → {engine}")
    build_engine(run, engine, precision="fp32", backend="onnxruntime", force=True)
    print("[4/4] evaluating the engine (ONNX Runtime, CPU) on the held-out clips")
    m = evaluate_engine(engine, data / "val.csv", data / "classes.txt")
    report = {"top1": m["top1"], "mean_class_acc": m["mean_class_acc"], "n": m["n"],
              "chance": 1.0 / len((data / "classes.txt").read_text().split()), "seconds": round(time.time() - t0, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nart-tiny engine on held-out synthetic clips: top-1 {m['top1']:.3f} (chance {report['chance']:.3f}), "
          f"mean class acc {m['mean_class_acc']:.3f}, n = {m['n']}")
    print(f"checkpoint: {run}/model.safetensors   curves: {run}/curves.png   confusion: {run}/confusion.png")
    print(f"engine dir: {engine}/manifest.json")
    print(f"report: {out}/report.json   total {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
