import torch
import torch.nn.functional as F

from art_train.losses import (
    art_loss,
    mtc_spatial,
    mtc_temporal,
    mtc_tracklet,
    sema_prototype,
    sema_video,
)
from art_train.model import create_model
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
    assert sema_video(matching, sem, labels, 0.07) < sema_video(wrong, sem, labels, 0.07)


def test_prototype_consistency_falls_when_prototypes_match_their_class():
    sem = F.normalize(torch.randn(3, 4, 16), dim=-1)
    aligned = sem.mean(0)
    shuffled = aligned[[1, 0, 3, 2]]
    assert sema_prototype(aligned, sem, 0.07) < sema_prototype(shuffled, sem, 0.07)


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
