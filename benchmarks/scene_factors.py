"""Which property of the hard synthetic scene stops art-tiny: the mark anywhere, its small motion,
or its random phase? One factor (or pair) of the hard scene at a time on top of the easy one.

    python benchmarks/scene_factors.py [--factors anywhere small phase] [--seed 0] [--epochs 8]
        [--set KEY=VALUE ...] [--out benchmarks/results/scene_factors.json]

ART only, the real art-train loop, 360 training / 120 held-out clips per scene.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import RESULTS, write_result
from synthetic_ablation import one_run

# each factor: the Scene fields it takes from the hard scene
FACTORS = {
    "anywhere": {"centre_jitter": None},
    "small": {"amplitude": (0.06, 0.08)},
    "phase": {"phase_jitter": float(np.pi)},
}


def scene_for(name: str):
    """'anywhere', 'small', 'phase', or pairs joined by '+' ('small+phase'): the easy scene with
    those properties of the hard one."""
    from dataclasses import replace

    from art_edge.synthetic import EASY

    fields = {}
    for factor in name.split("+"):
        fields.update(FACTORS[factor])
    return replace(EASY, **fields)


def main(argv=None):
    import torch

    from art_edge.synthetic import make_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--factors", nargs="+", default=["anywhere", "small", "phase"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(RESULTS / "scene_factors.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0, runs = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.factors:
            data = make_dataset(
                Path(tmp) / name / "data",
                per_class=60,
                val_per_class=20,
                seed=1234,
                progress=False,
                scene=scene_for(name),
            )
            run = one_run(data, Path(tmp) / name / "run", "art", a.seed, a.epochs, a.set)
            runs.append({"scene": name, **run})
            print(
                f"{name:<16} held-out top-1 {run['top1']:.3f}  ({run['seconds']:.0f} s)", flush=True
            )
    write_result(
        a.out,
        {
            "benchmark": "scene_factors",
            "config": "art-tiny",
            "overrides": a.set,
            "epochs": a.epochs,
            "seed": a.seed,
            "threads": a.threads,
            "total_seconds": round(time.time() - t0, 1),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
