import pytest
import torch
import torch.nn.functional as F

from art_train.losses import (
    art_loss,
    loss_parts,
    mtc_spatial,
    mtc_temporal,
    mtc_tracklet,
    part_grad_norms,
    sema_prototype,
    sema_video,
    shared_parameters,
)
from art_train.model import build_model, create_model
from art_train.ops import tracklet_link


def test_spatial_term_falls_as_a_frames_responses_separate():
    base = torch.randn(2, 4, 1, 16)
    close = torch.cat([base, base + 0.05 * torch.randn_like(base)], dim=2)
    apart = torch.cat([base, torch.randn_like(base)], dim=2)
    assert mtc_spatial(apart) < mtc_spatial(close)
    assert mtc_spatial(close) > 0.9


def test_temporal_term_falls_as_adjacent_responses_agree():
    smooth = torch.randn(2, 1, 2, 16).repeat(1, 6, 1, 1) + 0.01 * torch.randn(2, 6, 2, 16)
    jumpy = torch.randn(2, 6, 2, 16)
    sem = torch.randn(2, 2, 16)
    coh_smooth = tracklet_link(smooth, sem, 0.1)[2]
    coh_jumpy = tracklet_link(jumpy, sem, 0.1)[2]
    assert mtc_temporal(coh_smooth, 0.6) < mtc_temporal(coh_jumpy, 0.6)
    assert mtc_temporal(coh_smooth, 0.6) == 0  # above λ: nothing left to attract


def test_tracklet_term_falls_as_whole_tracklets_separate():
    a = torch.randn(2, 6, 1, 16)
    same = torch.cat([a, a], dim=2)
    different = torch.cat([a, torch.randn(2, 6, 1, 16)], dim=2)
    assert mtc_tracklet(different) < mtc_tracklet(same)


def test_video_consistency_falls_when_x_cls_matches_its_class_template():
    sem = F.normalize(torch.randn(3, 4, 16), dim=-1)  # P=3 templates, N=4 classes
    labels = torch.tensor([2])
    matching = sem[1, 2].unsqueeze(0)  # one template of class 2 (winner-take-all)
    wrong = sem[0, 0].unsqueeze(0)
    assert sema_video(matching, sem, labels) < 1e-6  # a cosine loss: 0 at the template itself
    assert sema_video(wrong, sem, labels) > 0.1


def test_prototype_consistency_pulls_videos_to_their_prototype_and_keeps_classes_apart():
    sem = F.normalize(torch.randn(3, 4, 16), dim=-1)
    aligned = sem.mean(0)
    labels = torch.tensor([0, 2])
    on_prototype, elsewhere = aligned[labels], aligned[[1, 3]]
    assert sema_prototype(on_prototype, aligned, sem, labels, 0.07) < sema_prototype(
        elsewhere, aligned, sem, labels, 0.07
    )
    shuffled = aligned[[1, 0, 3, 2]]
    assert sema_prototype(on_prototype, aligned, sem, labels, 0.07) < sema_prototype(
        shuffled[labels], shuffled, sem, labels, 0.07
    )


def test_mtc_sees_identical_frames_as_coherent_whatever_the_time_projection():
    """L_MTC and the saliency act on the raw responses: 16 identical frames are fully coherent
    (the time projection, different per frame, would make them look only half coherent)."""
    model = create_model("art-tiny", class_names=list("abcd"), gamma1=5.0, num_frames=16)
    model.eval()
    frame = torch.randn(1, 1, 3, model.cfg.image_size, model.cfg.image_size)
    out = model(frame.expand(1, 16, -1, -1, -1))
    assert torch.allclose(out["coherence"], torch.ones_like(out["coherence"]), atol=1e-4)
    assert mtc_temporal(out["coherence"], model.cfg.lambda_temporal) == 0


def test_art_loss_logs_every_term_and_backpropagates_to_the_agent():
    model = create_model(
        "art-tiny", class_names=list("abcd"), gamma1=5.0, gamma2=5.0
    )  # the paper's weights
    video = torch.randn(2, model.cfg.num_frames, 3, model.cfg.image_size, model.cfg.image_size)
    total, terms = art_loss(model(video), torch.tensor([0, 3]), model, model.cfg)
    for k in (
        "L_v",
        "L_con",
        "mtc_spatial",
        "mtc_temporal",
        "mtc_tracklet",
        "L_MTC",
        "sema_video",
        "sema_prototype",
        "L_sema",
        "loss",
    ):
        assert k in terms
    c = model.cfg
    expected = (
        terms["L_v"] + terms["L_con"] + c.gamma1 * terms["L_MTC"] + c.gamma2 * terms["L_sema"]
    )
    assert abs(terms["loss"] - expected) < 1e-4
    total.backward()
    assert model.semantics.agent.grad is not None and model.semantics.agent.grad.abs().sum() > 0
    assert model.prototypes.grad.abs().sum() > 0


def test_baseline_loss_is_cross_entropy_only():
    model = create_model("art-tiny", class_names=list("abcd"), variant="baseline")
    video = torch.randn(2, model.cfg.num_frames, 3, model.cfg.image_size, model.cfg.image_size)
    out = model(video)
    _, terms = art_loss(out, torch.tensor([0, 1]), model, model.cfg)
    assert set(terms) == {"L_con", "loss"}
    assert (
        abs(float(terms["loss"]) - F.cross_entropy(out["logits"], torch.tensor([0, 1])).item())
        < 1e-5
    )


@pytest.mark.slow
def test_art_b16_loss_parts_are_balanced_and_its_steps_are_not_clipped():
    """art-b16's loss settings (γ1 = γ2 = 5) on a small input: at initialisation no part's
    gradient into the frame encoder exceeds 3× another's, and over a short run of its recipe
    (AdamW, tower at 0.1×) clipping is a safety net, not the rule."""
    from art_train.configs import get_config
    from art_train.train import Distributed, make_optimizer, train_step

    torch.manual_seed(0)
    model_cfg, tcfg = get_config("art-b16", image_size=64, num_frames=4, num_classes=6)
    model = build_model(model_cfg, class_names=[f"class {i}" for i in range(6)], quiet=True)
    model.train()
    video = torch.randn(4, 4, 3, 64, 64)
    labels = torch.tensor([0, 2, 4, 5])
    parts, _ = loss_parts(model(video), labels, model, model.cfg)
    norms = part_grad_norms(parts, shared_parameters(model))
    assert set(norms) == {"L_v", "L_con", "L_MTC", "L_sema"}
    assert max(norms.values()) <= 3 * min(norms.values()), norms
    optimizer, dist, clipped = make_optimizer(model, tcfg), Distributed("cpu"), 0
    for _ in range(4):
        optimizer.zero_grad(set_to_none=True)
        _, _, norm, _ = train_step(model, model, video, labels, tcfg, dist, measure=False)
        optimizer.step()
        clipped += norm > tcfg.grad_clip
    assert clipped <= 1, f"{clipped} of 4 steps clipped at {tcfg.grad_clip}"


def test_weight_decay_spares_queries_embeddings_tokens_norms_and_biases():
    from art_train.configs import TrainConfig
    from art_train.train import param_groups

    model = create_model("art-tiny", class_names=list("abcd"))
    decayed = {
        id(p)
        for g in param_groups(model, TrainConfig())
        if g["weight_decay"] > 0
        for p in g["params"]
    }
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    for spared in (
        "queries",
        "patch_pos",
        "temporal.pos_embed",
        "semantics.agent",
    ):
        assert spared not in names
    assert not any(n.endswith(".bias") or "norm" in n for n in names)
    assert "head.1.weight" in names and "tracklet_time_proj" in names
