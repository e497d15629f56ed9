"""Pretrain art-tiny's tower to find small objects, as an --clip-weights file (an experiment).

    python benchmarks/pretrain_tower.py --out tower.safetensors [--frames 6000] [--steps 1500]
    python benchmarks/synthetic_ablation.py --scene hard --clip-weights tower.safetensors ...

Users fine-tune from pretrained weights; art-tiny's tower (open_clip `ART-ResNet-Tiny`) has none
to download. This pretrains it on single synthetic frames to localize the small mark the way
keypoint/detection heads are trained (CenterNet-style): from each stride-8 token, a 1×1 head
predicts whether the mark's centre lies in that token and where inside it. The frames carry no
action labels (their clips' labels are drawn at random and thrown away; only the mark's position
per frame is used). The whole CLIP model (the text tower at its random start) is written as
safetensors, so `--clip-weights` loads it strictly like any other checkpoint.
docs/experiments/random-weights.md says what it did to the hard scene.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

TOWER, IMAGE_SIZE, FEATURE_STAGE = "ART-ResNet-Tiny", 64, 2  # art-tiny's (art_train/configs.py)


def frames_with_marks(count: int, seed: int):
    """`count` frames of the hard scene (the mark anywhere), as art-tiny sees them, and the mark's
    centre in the model's input pixels → (float32 [N, 3, S, S], float32 [N, 2])."""
    from art_edge.preprocess import Preprocessing, preprocess_frame
    from art_edge.synthetic import HARD, marked_frames

    rng, size, prep = np.random.default_rng(seed), 96, Preprocessing(image_size=IMAGE_SIZE)
    images, centres = [], []
    while len(images) < count:
        label = int(rng.integers(6))  # any motion: the label is not kept
        for bgr, centre in marked_frames(label, size, 8, rng, scene=HARD):
            images.append(preprocess_frame(np.ascontiguousarray(bgr[:, :, ::-1]), prep))
            centres.append(np.asarray(centre) * IMAGE_SIZE / size)
    return np.stack(images[:count]), np.stack(centres[:count]).astype(np.float32)


def pretrain(images, centres, steps: int, seed: int, log=print):
    """The tower and a 1×1 head (centre-token logit, offset x, offset y) trained together;
    → the CLIP model whose tower was trained."""
    import torch
    import torch.nn.functional as F

    from art_train.clip import create_clip

    torch.manual_seed(seed)
    clip = create_clip(TOWER, IMAGE_SIZE, None, warn_random=False)
    tower, x, pos = clip.visual, torch.from_numpy(images), torch.from_numpy(centres)

    def feature_map(batch):
        out = tower.forward_intermediates(
            batch, indices=[FEATURE_STAGE], normalize_intermediates=True
        )
        return out["image_intermediates"][-1]

    grid = feature_map(x[:1]).shape
    head = torch.nn.Conv2d(grid[1], 3, 1)
    cell = IMAGE_SIZE / grid[-1]
    token = (pos / cell).floor().long().clamp(0, grid[-1] - 1)  # [N, 2]: column, row
    offset = pos / cell - token  # where in its token, [0, 1)
    rows, cols = torch.meshgrid(torch.arange(grid[-2]), torch.arange(grid[-1]), indexing="ij")
    centres_of_tokens = torch.stack([cols, rows], -1).reshape(-1, 2).float() + 0.5
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=2e-3, weight_decay=0.01)
    t0 = time.time()
    for step in range(steps):
        b = torch.randint(0, len(x), (64,))
        out = head(feature_map(x[b]))  # [B, 3, H, W]
        target = token[b, 1] * grid[-1] + token[b, 0]
        find = F.cross_entropy(out[:, 0].flatten(1), target)
        there = out[torch.arange(len(b)), 1:, token[b, 1], token[b, 0]].sigmoid()
        place = F.l1_loss(there, offset[b])
        # Integral regression: the soft-argmax of the centre logits is the mark's centre, to a
        # fraction of a token (what a query's attention centroid can then read).
        centroid = out[:, 0].flatten(1).softmax(-1) @ centres_of_tokens
        soft = F.l1_loss(centroid, pos[b] / cell)
        loss = find + 5 * place + 5 * soft
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            hit = (out[:, 0].flatten(1).argmax(1) == target).float().mean().item()
            log(f"step {step}: centre token found {hit:.2f}, offset error {place.item() * cell:.2f} px, "
                f"soft-argmax error {soft.item() * cell:.2f} px ({time.time() - t0:.0f} s)")  # fmt: skip
    return clip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the .safetensors file to write")
    ap.add_argument("--frames", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import torch
    from safetensors.torch import save_file

    from art_edge.files import atomic_write

    torch.set_num_threads(a.threads)
    images, centres = frames_with_marks(a.frames, 20_000 + a.seed)
    clip = pretrain(images, centres, a.steps, a.seed)
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    atomic_write(Path(a.out), lambda tmp: save_file(state, str(tmp)))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
