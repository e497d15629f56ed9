"""Pretrain art-tiny's tower to find small objects, as an --clip-weights file (an experiment).

    python benchmarks/pretrain_tower.py --out tower.safetensors [--frames-from varied|hard]
    python benchmarks/synthetic_ablation.py --scene hard --clip-weights tower.safetensors ...

Users fine-tune from pretrained weights; art-tiny's tower (open_clip `ART-ResNet-Tiny`) has none
to download. This pretrains it on single frames to localize a small object the way keypoint and
detection heads are trained: from each stride-8 token, a 1×1 head predicts whether the object's
centre lies in that token and where inside it (CenterNet-style), and the soft-argmax of its
centre logits must land on the centre (integral regression), which makes the centre readable
to a fraction of a token. The frames (`--frames-from`) are `varied` (small discs and squares over
textures and noise beside large ones: no dataset's frames) or the `hard` scene's; they carry no
action labels. The vision tower is written as safetensors (about 1.5 MB), its metadata saying
that it holds the vision tower alone and the command that made it; `--clip-weights` loads it
strictly into the vision tower and leaves the text tower at its random start. The tower art-tiny
starts from by default (art_train/towers/ART-ResNet-Tiny.safetensors) is this script's output
with its defaults (docs/model.md).
docs/experiments/random-weights.md says what it did.
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


def varied_frame(rng):
    """One frame of no dataset: a small disc or square (2-5 % of the side, any colour that stands
    out, drawn to 1/16 pixel) somewhere over smooth texture or pixel noise, beside one or two large
    discs or squares → (BGR uint8 [S, S, 3], its centre (x, y) in pixels), S in 64…128."""
    from art_edge.synthetic import texture

    size = int(rng.choice([64, 96, 112, 128]))
    if rng.random() < 0.5:
        img = texture(rng, size)
    else:
        grey = rng.uniform(40, 200, 3)
        img = grey + rng.normal(0, rng.uniform(5, 40), (size, size, 3))
    img = np.ascontiguousarray(img, np.float32)
    for _ in range(int(rng.integers(1, 3))):  # large distractors
        _draw(
            img, rng.uniform(0, size, 2), size * rng.uniform(0.1, 0.22), rng.uniform(0, 255, 3), rng
        )
    radius = size * rng.uniform(0.02, 0.05)
    centre = rng.uniform(radius + 2, size - radius - 2, 2)
    x, y = centre.astype(int)
    local = img[max(0, y - 6) : y + 7, max(0, x - 6) : x + 7].mean(axis=(0, 1))
    sign = 1.0 if (rng.random() < 0.5 and local.mean() < 190) or local.mean() < 70 else -1.0
    _draw(img, centre, radius, np.clip(local + sign * rng.uniform(70, 150, 3), 0, 255), rng)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), centre


def _draw(img, centre, radius, colour, rng):
    """A filled disc or square, anti-aliased, its centre to 1/16 pixel (cv2's `shift`)."""
    import cv2

    c, r = (centre * 16).astype(int), int(radius * 16)
    if rng.random() < 0.5:
        cv2.circle(img, (int(c[0]), int(c[1])), r, colour.tolist(), -1, cv2.LINE_AA, shift=4)
    else:
        corners = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) + c
        cv2.fillPoly(img, [corners.astype(np.int32)], colour.tolist(), cv2.LINE_AA, shift=4)


def varied_frames(count: int, seed: int):
    """`count` varied_frame()s as art-tiny sees them, and the small object's centre in the
    model's input pixels → (float32 [N, 3, S, S], float32 [N, 2])."""
    from art_edge.preprocess import Preprocessing, preprocess_frame

    rng, prep = np.random.default_rng(seed), Preprocessing(image_size=IMAGE_SIZE)
    images, centres = [], []
    for _ in range(count):
        bgr, centre = varied_frame(rng)
        images.append(preprocess_frame(np.ascontiguousarray(bgr[:, :, ::-1]), prep))
        centres.append(centre * IMAGE_SIZE / bgr.shape[0])
    return np.stack(images), np.stack(centres).astype(np.float32)


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
        centre_logits = out[:, 0].flatten(1)  # [B, H·W]
        target = token[b, 1] * grid[-1] + token[b, 0]
        find = F.cross_entropy(centre_logits, target)
        there = out[torch.arange(len(b)), 1:, token[b, 1], token[b, 0]].sigmoid()
        place = F.l1_loss(there, offset[b])
        # Integral regression: the soft-argmax of the centre logits is the mark's centre, to a
        # fraction of a token (what a query's attention centroid can then read).
        centroid = centre_logits.softmax(-1) @ centres_of_tokens
        soft = F.l1_loss(centroid, pos[b] / cell)
        loss = find + 5 * place + 5 * soft
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            hit = (centre_logits.argmax(1) == target).float().mean().item()
            log(f"step {step}: centre token found {hit:.2f}, offset error {place.item() * cell:.2f} px, "
                f"soft-argmax error {soft.item() * cell:.2f} px ({time.time() - t0:.0f} s)")  # fmt: skip
    return clip


FRAME_SOURCES = {"varied": varied_frames, "hard": frames_with_marks}


def write_tower(
    out: Path, frames: int = 6000, steps: int = 1500, seed: int = 0, source="varied", log=print
) -> float:
    """Pretrain on `frames` frames of `source` (their own seed, apart from any benchmark's clips)
    and write the vision tower as safetensors to `out`, atomically → the seconds it took."""
    import torch
    from safetensors.torch import save_file

    from art_edge.files import atomic_write
    from art_train.clip import VISION_ONLY

    t0 = time.time()
    images, centres = FRAME_SOURCES[source](frames, 20_000 + seed)
    clip = pretrain(images, centres, steps, seed, log=log)
    # The vision tower alone (its text tower was never trained), declared so in the metadata:
    # --clip-weights fills the vision tower from it and leaves the text tower at its start.
    state = {k: v.contiguous() for k, v in clip.state_dict().items() if k.startswith("visual.")}
    made_by = (
        f"python benchmarks/pretrain_tower.py --frames {frames} --steps {steps} --seed {seed} "
        f"--frames-from {source} --threads {torch.get_num_threads()}"
    )
    metadata = {**VISION_ONLY, "open_clip_model": TOWER, "image_size": str(IMAGE_SIZE),
                "made_by": made_by}  # fmt: skip
    atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the .safetensors file to write")
    ap.add_argument("--frames", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--frames-from",
        choices=sorted(FRAME_SOURCES),
        default="varied",
        help="varied: small discs and squares over textures and noise, beside large ones (no "
        "dataset's frames); hard: frames of art-synth's hard scene",
    )
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    write_tower(Path(a.out), a.frames, a.steps, a.seed, a.frames_from)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
