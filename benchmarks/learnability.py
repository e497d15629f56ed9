"""What can learn the synthetic fine-grained task from random weights, in a few CPU epochs?

    python benchmarks/learnability.py [--epochs 6] [--out benchmarks/results/learnability.json]

Small probes on the same clips (decoded once, eval transform), each trained with AdamW 1e-3,
batch 8: they locate where learning from scratch breaks down (docs/experiments/random-weights.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"

FRAMES, SIZE, CLASSES = 8, 64, 6


def load_split(data: Path, split: str):
    from art_edge.cliplist import read_classes, read_list
    from art_edge.preprocess import Preprocessing, load_clip

    prep = Preprocessing(image_size=SIZE, num_frames=FRAMES)
    recs = read_list(data / f"{split}.csv", read_classes(data / "classes.txt"))
    return torch.from_numpy(np.stack([load_clip(r.path, prep) for r in recs])), torch.tensor(
        [r.label for r in recs]
    )


class Probe(nn.Module):
    """Frame features [N, L, d] (a tower) → a read-out over the clip → class logits."""

    def __init__(
        self, tower: str, readout: str, d: int = 64, queries: int = 4, logit_scale: float = 1.0
    ):
        super().__init__()
        from art_train.clip import create_clip
        from art_train.model import FrameEncoder, sincos_2d

        self.readout, self.d, self.k, self.scale = readout, d, queries, logit_scale * d**-0.5
        if tower == "cnn":  # a plain 3-layer CNN, stride 4 → 8×8 after pooling
            self.cnn = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1),
                nn.GELU(),
                nn.Conv2d(16, 16, 3, 1, 1),
                nn.GELU(),
                nn.Conv2d(16, d, 3, 2, 1),
                nn.AdaptiveAvgPool2d(8),
            )
            grid = (8, 8)
        else:
            name, stage = {"vit": ("ART-ViT-Tiny", -1), "resnet": ("ART-ResNet-Tiny", 2)}[tower]
            self.encoder = FrameEncoder(
                create_clip(name, SIZE, warn_random=False).visual, SIZE, d, stage
            )
            grid = self.encoder.grid
        length = grid[0] * grid[1]
        self.register_buffer("pos", sincos_2d(grid, d))
        self.queries = nn.Parameter(torch.randn(queries, d))
        self.wk, self.wv = nn.Linear(d, d), nn.Linear(d, d)
        self.semantics = nn.Parameter(torch.randn(1, queries, d))
        self.time_proj = nn.Parameter(torch.randn(FRAMES, d, d) * d**-0.5)
        flat = FRAMES * (length if readout == "flatten" else queries) * d
        self.flat_head = nn.Linear(flat, CLASSES)
        self.mlp = nn.Sequential(
            nn.Linear(flat if readout == "attn_mlp" else queries * d, 128),
            nn.GELU(),
            nn.Linear(128, CLASSES),
        )
        self.lin = nn.Linear(queries * d, CLASSES)

    def features(self, frames):
        if hasattr(self, "cnn"):
            return self.cnn(frames).flatten(2).transpose(1, 2)
        return self.encoder(frames)[0]

    def forward(self, video):
        from art_train.ops import tracklet_link

        b = video.shape[0]
        p = self.features(video.flatten(0, 1))
        if self.readout == "flatten":
            return self.flat_head(p.reshape(b, -1))
        k, v = self.wk(p + self.pos), self.wv(p + self.pos)
        r = torch.softmax(self.queries @ k.transpose(1, 2) * self.scale, -1) @ v  # [B·T, K, d]
        if self.readout == "attn_mlp":
            return self.mlp(r.reshape(b, -1))
        r = r.reshape(b, FRAMES, self.k, self.d)
        if self.readout == "attn_timeproj_sum_mlp":
            r = r + torch.matmul(r, self.time_proj.unsqueeze(0))
        agg = tracklet_link(r, self.semantics.expand(b, -1, -1), 0.1)[0].reshape(b, -1)
        return self.lin(agg) if self.readout == "attn_sum_linear" else self.mlp(agg)


def train_probe(model, train, val, epochs: int) -> dict:
    (xtr, ytr), (xva, yva) = train, val
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    torch.manual_seed(0)
    t0 = time.time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 8):
            idx = perm[i : i + 8]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xva).argmax(-1) == yva).float().mean())
    return {"val_top1": acc, "seconds": round(time.time() - t0, 1)}


def linear_on_pixels(train, val) -> dict:
    """Logistic regression on 16×16 grey pixels of the 8 frames (full batch, 300 steps)."""
    (xtr, ytr), (xva, yva) = train, val
    f = lambda x: F.avg_pool2d(x.mean(2), 4).flatten(1)  # noqa: E731
    a, b = f(xtr), f(xva)
    mu, sd = a.mean(0), a.std(0) + 1e-3
    a, b = (a - mu) / sd, (b - mu) / sd
    lin = nn.Linear(a.shape[1], CLASSES)
    opt = torch.optim.AdamW(lin.parameters(), 1e-3, weight_decay=0.1)
    for _ in range(300):
        loss = F.cross_entropy(lin(a), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {"val_top1": float((lin(b).argmax(-1) == yva).float().mean())}


PROBES = [  # (name, tower, read-out, attention logit scale)
    ("cnn_flatten_linear", "cnn", "flatten", 1.0),
    ("vit_flatten_linear", "vit", "flatten", 1.0),
    ("resnet_flatten_linear", "resnet", "flatten", 1.0),
    ("resnet_queries_default_scale_mlp", "resnet", "attn_mlp", 1.0),
    ("resnet_queries_scale4_mlp", "resnet", "attn_mlp", 4.0),
    ("resnet_queries_scale4_saliency_sum_linear", "resnet", "attn_sum_linear", 4.0),
    ("resnet_queries_scale4_timeproj_saliency_sum_mlp", "resnet", "attn_timeproj_sum_mlp", 4.0),
]


def main(argv=None):
    from art_edge.synthetic import make_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "learnability.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(
            Path(tmp) / "data", per_class=60, val_per_class=20, seed=1234, progress=False
        )
        train, val = load_split(data, "train"), load_split(data, "val")
    results = {"linear_on_pixels": linear_on_pixels(train, val)}
    print(f"{'linear_on_pixels':<50} {results['linear_on_pixels']['val_top1']:.3f}", flush=True)
    for name, tower, readout, scale in PROBES:
        torch.manual_seed(0)
        results[name] = train_probe(Probe(tower, readout, logit_scale=scale), train, val, a.epochs)
        print(
            f"{name:<50} {results[name]['val_top1']:.3f}  ({results[name]['seconds']:.0f} s)",
            flush=True,
        )
    report = {
        "benchmark": "learnability",
        "epochs": a.epochs,
        "train_clips": len(train[1]),
        "val_clips": len(val[1]),
        "chance": 1 / CLASSES,
        "results": results,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
