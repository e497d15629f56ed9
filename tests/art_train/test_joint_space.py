"""Top-K semantics in CLIP's joint space: at initialisation, ART's top-K classes for a clip are the
top-K of open_clip's own zero-shot scores (the cosine of the clip's mean frame embedding with each
class's prompt-averaged text embedding), whatever the weights; and the new temporal modules leave
that space unchanged until they have learned something."""

import pytest
import torch
import torch.nn.functional as F

from art_train.clip import create_clip, import_open_clip
from art_train.model import build_model, get_config

CLASSES = ["pike", "tuck", "layout", "twist", "salto", "handspring", "round off", "split leap"]
K = 3


@torch.no_grad()
def zero_shot_scores(clip, name: str, video, prompts) -> torch.Tensor:
    """open_clip zero-shot classification of each clip, written the way open_clip's
    zero_shot_classifier and CLIP's papers do it: [B, N] cosines."""
    tokenizer = import_open_clip().get_tokenizer(name)
    clip.eval()
    classes = []
    for c in CLASSES:
        e = clip.encode_text(tokenizer([p.format(c) for p in prompts]), normalize=True).mean(0)
        classes.append(e / e.norm())
    b, t = video.shape[:2]
    frames = clip.encode_image(video.flatten(0, 1)).reshape(b, t, -1)
    return F.normalize(frames.mean(1), dim=-1) @ torch.stack(classes).t()


def art_with_clip(tmp_path, backbone: str, seed: int, **overrides):
    """(ART at initialisation, the open_clip model whose weights it was built from)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    clip = create_clip(backbone, 64, None, warn_random=False)
    path = tmp_path / f"{backbone}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    cfg, _ = get_config(
        "art-tiny", backbone=backbone, num_classes=len(CLASSES), num_queries=K, **overrides
    )
    torch.manual_seed(seed + 100)  # the new modules: another draw than the CLIP weights
    return build_model(cfg, CLASSES, str(path), quiet=True).eval(), clip


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "backbone,overrides",
    [
        ("ART-ViT-Tiny", {"feature_stage": -1, "temporal_layers": 2, "num_heads": 2}),
        ("ART-ResNet-Tiny", {}),
    ],
)
def test_topk_at_initialisation_is_open_clips_zero_shot_topk(tmp_path, backbone, overrides, seed):
    model, clip = art_with_clip(tmp_path, backbone, seed, **overrides)
    torch.manual_seed(seed + 7)
    video = torch.randn(6, model.cfg.num_frames, 3, 64, 64)
    with torch.no_grad():
        art_ids = model(video)["topk_ids"]
    scores = zero_shot_scores(clip, backbone, video, model.cfg.prompts)
    best = scores.topk(K, dim=-1)
    # the same classes in the same order, up to ties closer than float rounding
    torch.testing.assert_close(scores.gather(1, art_ids), best.values, atol=1e-6, rtol=0)
    gaps = best.values[:, :-1] - best.values[:, 1:]
    clear = (gaps.min(dim=1).values > 1e-5) & (
        best.values[:, -1] - scores.sort(-1, True).values[:, K] > 1e-5
    )
    assert clear.any()
    assert torch.equal(art_ids[clear], best.indices[clear])


def test_the_clip_token_starts_as_the_mean_frame_embedding_and_then_learns(tmp_path):
    model, clip = art_with_clip(
        tmp_path, "ART-ViT-Tiny", 0, feature_stage=-1, temporal_layers=2, num_heads=2
    )
    video = torch.randn(2, model.cfg.num_frames, 3, 64, 64)
    with torch.no_grad():
        frames = clip.eval().encode_image(video.flatten(0, 1)).reshape(2, model.cfg.num_frames, -1)
        torch.testing.assert_close(model(video)["x_cls"], frames.mean(1), atol=1e-5, rtol=1e-5)
    model.train()
    model(video)["x_cls"].pow(2).sum().backward()
    # the zero-initialised residual branches still receive gradient: time can be learned
    for blk in model.temporal.blocks:
        assert blk.attn.proj.weight.grad.abs().sum() > 0 and blk.mlp.fc2.weight.grad.abs().sum() > 0
