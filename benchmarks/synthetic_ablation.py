"""ART against the paper's Baseline on the synthetic fine-grained set, same budget, 3 seeds, CPU.

    python benchmarks/synthetic_ablation.py [--seeds 0 1 2] [--epochs 12]
        [--out benchmarks/results/synthetic_ablation.json]

Both variants use the same art-tiny backbone, temporal token, data, epochs, optimizer and seeds;
the Baseline sends the temporal token straight into a classifier of the same shape. Runs through
the real `art-train` loop (decoding DataLoader, augmentation, best-by-val checkpoint).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from benchlib import RESULTS, write_result
from pretrain_tower import FRAME_SOURCES, write_tower


def one_run(
    data: Path, out: Path, variant: str, seed: int, epochs: int, sets: list, weights=None
) -> dict:
    """Train one variant and seed through the real art-train loop; score its best checkpoint."""
    from art_train.evaluate import evaluate_checkpoint
    from art_train.train import RunSpec, resolve_config, train_with_restarts

    model_cfg, tcfg = resolve_config(
        "art-tiny", [*sets, f"variant={variant}", f"seed={seed}", f"epochs={epochs}"]
    )
    t0 = time.time()
    with redirect_stdout(io.StringIO()):
        spec = RunSpec(
            data / "train.csv",
            data / "val.csv",
            data / "classes.txt",
            out,
            progress=False,
            clip_weights=weights,
        )
        best = train_with_restarts(model_cfg, tcfg, spec)
    # Scored on test.csv where the set has one (the best epoch is chosen on val.csv), else val.csv.
    scored = data / "test.csv" if (data / "test.csv").is_file() else data / "val.csv"
    m = evaluate_checkpoint(out, scored, data / "classes.txt")
    restarts = out / "restarts.json"
    return {
        "variant": variant,
        "seed": seed,
        "top1": m["top1"],
        "mean_class_acc": m["mean_class_acc"],
        "best_epoch": best.get("epoch"),
        "seconds": round(time.time() - t0, 1),
        "restarts": json.loads(restarts.read_text()) if restarts.is_file() else None,
    }


def summarize(runs: list, variants: list) -> dict:
    summary = {}
    for variant in variants:
        accs = [r["top1"] for r in runs if r["variant"] == variant]
        summary[variant] = {
            "top1_mean": statistics.mean(accs),
            "top1_std": statistics.pstdev(accs),
            "top1_min": min(accs),
            "top1_max": max(accs),
        }
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--scene",
        choices=["easy", "hard"],
        default="easy",
        help="hard: the mark anywhere, motion ≤ 8 %% of the frame, any phase (art-synth --scene)",
    )
    ap.add_argument(
        "--variants", nargs="+", default=["art", "baseline"], choices=["art", "baseline"]
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. --set gamma1=5 --set gamma2=5",
    )
    weights = ap.add_mutually_exclusive_group()
    weights.add_argument(
        "--clip-weights",
        help="start both variants' tower from this checkpoint (e.g. benchmarks/pretrain_tower.py's)",
    )
    weights.add_argument(
        "--pretrain-tower",
        nargs="?",
        const="varied",
        choices=sorted(FRAME_SOURCES),
        help="first pretrain the tower to localize a small object on these frames "
        "(benchmarks/pretrain_tower.py --frames-from; no action labels) and start both variants "
        "from it; its time counts in the total",
    )
    ap.add_argument("--out", default=str(RESULTS / "synthetic_ablation.json"))
    return ap


def pretrained_tower(a, tmp: Path, report: dict):
    """--clip-weights as given, or the tower --pretrain-tower writes under `tmp` (timed)."""
    if not a.pretrain_tower:
        return a.clip_weights
    path = tmp / "tower.safetensors"
    seconds = write_tower(path, source=a.pretrain_tower, log=lambda *_: None)
    report["pretrain_seconds"] = round(seconds, 1)
    print(f"tower pretrained ({report['pretrain_seconds']:.0f} s)", flush=True)
    return str(path)


def run_all(a, report: dict) -> list:
    """Every seed × variant on one dataset of the chosen scene, printed as each ends."""
    from art_edge.synthetic import SCENES, make_dataset

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = pretrained_tower(a, Path(tmp), report)
        data = make_dataset(
            Path(tmp) / "data",
            per_class=a.per_class,
            val_per_class=20,
            seed=1234,
            progress=False,
            scene=SCENES[a.scene],
        )
        for seed in a.seeds:
            for variant in a.variants:
                out = Path(tmp) / f"{variant}-{seed}"
                runs.append(one_run(data, out, variant, seed, a.epochs, a.set, weights))
                print(
                    f"{variant:<9} seed {seed}: top-1 {runs[-1]['top1']:.3f}  ({runs[-1]['seconds']:.0f} s)",
                    flush=True,
                )
    return runs


def main(argv=None):
    import torch

    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start, pretraining = time.time(), {}
    runs = run_all(a, pretraining)
    summary = summarize(runs, a.variants)
    report = {
        "benchmark": "synthetic_ablation",
        "config": "art-tiny",
        "scene": a.scene,
        "overrides": a.set,
        "clip_weights": (
            f"pretrained here (pretrain_tower.py --frames-from {a.pretrain_tower})"
            if a.pretrain_tower
            else a.clip_weights
        ),
        **pretraining,
        "epochs": a.epochs,
        "seeds": a.seeds,
        "train_clips": 6 * a.per_class,
        "val_clips": 6 * 20,
        "threads": a.threads,
        "total_seconds": round(time.time() - t_start, 1),
        "summary": summary,
        "runs": runs,
    }
    if {"art", "baseline"} <= set(summary):
        report["art_minus_baseline_points"] = 100 * (
            summary["art"]["top1_mean"] - summary["baseline"]["top1_mean"]
        )
    for v, s in summary.items():
        print(
            f"{v:<9} top-1 {100 * s['top1_mean']:.1f} ± {100 * s['top1_std']:.1f} (min {100 * s['top1_min']:.1f})"
        )
    if "art_minus_baseline_points" in report:
        print(f"ART − Baseline: {report['art_minus_baseline_points']:+.1f} points")
    print(f"{report['total_seconds']:.0f} s in all")
    write_result(a.out, report)


if __name__ == "__main__":
    main()
