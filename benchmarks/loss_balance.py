"""Each loss part's gradient norm into the frame encoder, at initialisation and after the first
epoch, with art-b16's (or art-b16-paper's) loss weights (γ1 = γ2 = 5) and recipe, through the
real art-train loop.

    python benchmarks/loss_balance.py [--config art-b16|art-b16-paper] [--seeds 0 1 2]
        [--set KEY=VALUE ...] [--out benchmarks/results/loss_balance.json]

Random weights (nothing can be downloaded here), a small input (64², T = 4) so that a ViT-B/16
trains on a CPU, 6 synthetic classes. The parts are measured on the first step of each epoch
(`part_grad_every` larger than an epoch): epoch 1's row is the initialisation, epoch 2's is after
one epoch. Also reported: the pre-clip gradient norm and the share of clipped steps.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from benchlib import RESULTS, write_result

PARTS = ("L_v", "L_con", "L_MTC", "L_sema")


def one_run(data: Path, out: Path, seed: int, extra: list, config: str = "art-b16") -> dict:
    from art_train.train import RunSpec, resolve_config, train

    sets = ["image_size=64", "num_frames=4", "part_grad_every=100000", "epochs=2", f"seed={seed}"]
    sets += extra
    model_cfg, tcfg = resolve_config(config, sets)
    with redirect_stdout(io.StringIO()):
        train(
            model_cfg,
            tcfg,
            RunSpec(data / "train.csv", data / "val.csv", data / "classes.txt", out),
        )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    when = ("initialisation", "after_epoch_1")
    result = {"seed": seed, "grad_clip": tcfg.grad_clip}
    for name, row in zip(when, rows):
        norms = {p: row[f"grad_{p}"] for p in PARTS}
        nonzero = [v for v in norms.values() if v > 0]
        result[name] = {
            "part_grad_norms": norms,
            "max_over_min_nonzero": max(nonzero) / min(nonzero),
            "terms": {p: row[p] for p in PARTS},
        }
    result["grad_norm_mean"] = [r["grad_norm_mean"] for r in rows]
    result["clipped_fraction"] = [r["clipped_fraction"] for r in rows]
    return result


def main(argv=None):
    import torch

    from art_edge.synthetic import make_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="art-b16", choices=["art-b16", "art-b16-paper"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    ap.add_argument("--out", default=str(RESULTS / "loss_balance.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0, runs = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data", per_class=6, val_per_class=2, progress=False)
        for seed in a.seeds:
            runs.append(one_run(data, Path(tmp) / f"run{seed}", seed, a.set, a.config))
            for when in ("initialisation", "after_epoch_1"):
                norms = runs[-1][when]["part_grad_norms"]
                print(
                    f"seed {seed} {when:<15} "
                    + "  ".join(f"{p} {v:6.2f}" for p, v in norms.items())
                    + f"   max/min {runs[-1][when]['max_over_min_nonzero']:.2f}"
                )
            print(
                f"seed {seed} pre-clip norm per epoch {runs[-1]['grad_norm_mean']}, clipped "
                f"{runs[-1]['clipped_fraction']} at {runs[-1]['grad_clip']}",
                flush=True,
            )
    write_result(
        a.out,
        {
            "benchmark": "loss_balance",
            "config": f"{a.config} (image_size 64, num_frames 4, random weights)",
            "seeds": a.seeds,
            "overrides": a.set,
            "threads": a.threads,
            "total_seconds": round(time.time() - t0, 1),
            "worst_max_over_min_at_init": max(
                r["initialisation"]["max_over_min_nonzero"] for r in runs
            ),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
