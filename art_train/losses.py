"""ART losses: L_v + L_con + γ1·L_MTC + γ2·L_sema, every term returned for logging.

Choices where the paper leaves the formula out (each a config field or documented here, and in
docs/model.md with the measurements behind them):
- L_v is cross-entropy on the video head (x_cls alone), L_con on the fusion head.
- L_MTC acts on the raw per-frame responses r_t (not the time-projected r_t + W_t r_t that the
  read-out uses): the projection differs per frame on purpose, so identical frames would look
  incoherent through it. Spatial: mean over frames of the positive part of the cosine between the
  K responses of a frame (pushes them towards orthogonal, not opposite). Tracklet: the same over
  whole tracklets (each the mean of its normalised responses). Temporal: hinge
  relu(λ − cos(r_tk, r_(t+1)k)), so adjacent responses of one tracklet are pulled together until
  they reach correlation λ. L_MTC is their weighted sum, each weighted 0.5 by default (measured:
  at 1.0 its part reached 3× L_con's into the tower after one epoch at γ1 = 5; docs/model.md).
- L_sema is a cosine-similarity loss, as the paper calls it, so that at γ2 = 5 it does not drown
  the classification terms (an InfoNCE at temperature 0.07 had ~6× their gradient into the tower):
  video consistency: 1 − the winner-take-all cosine between x_cls and its class's templates in the
  agent semantics. Prototype consistency: 1 − cos(x_cls, W_y) pulls each video towards its class
  prototype W_y (decoupled from the head), and a temperature-scaled InfoNCE (τ·CE, whose gradient
  is bounded like a classifier's) keeps prototype i closest to class i's agent semantics.
  L_sema is the mean of the two (both pull x_cls): `sema_video_weight`, `sema_prototype_weight`.
- x_cls, the agent semantics and the prototypes live in CLIP's joint image-text space (E wide),
  where top-K compares x_cls with the bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _offdiag_cos(x):
    """x [..., K, D] → mean positive cosine between distinct rows (0 when K == 1)."""
    k = x.shape[-2]
    if k < 2:
        return x.new_zeros(())
    xn = F.normalize(x, dim=-1)
    sim = xn @ xn.transpose(-1, -2)
    mask = ~torch.eye(k, dtype=torch.bool, device=x.device)
    return sim[..., mask].clamp(min=0).mean()


def mtc_spatial(responses):  # [B, T, K, D]
    return _offdiag_cos(responses)


def mtc_temporal(coherence, lam: float):  # [B, T-1, K]
    return F.relu(lam - coherence).mean()


def mtc_tracklet(responses):
    return _offdiag_cos(F.normalize(responses, dim=-1).mean(dim=1))  # [B, K, D]


def sema_video(x_cls, agent_semantics, labels):
    """x_cls [B, D], agent_semantics [P, N, D] → mean of 1 − max over templates of the cosine
    between x_cls and its class's template semantics."""
    sim = _class_template_cos(x_cls, agent_semantics, labels)
    return (1 - sim.max(dim=1).values).mean()


def _class_template_cos(x_cls, agent_semantics, labels):
    """[B, P]: cosine between each clip's x_cls and every template of its own class."""
    own = F.normalize(agent_semantics[:, labels], dim=-1)  # [P, B, D]
    return torch.einsum("bd,pbd->bp", F.normalize(x_cls, dim=-1), own)


def sema_prototype(x_cls, prototypes, agent_semantics, labels, temperature: float):
    """Videos towards their class prototype (1 − cosine), and prototypes [N, D] matched to the
    template-averaged agent semantics [N, D] by a temperature-scaled InfoNCE."""
    to_video = 1 - F.cosine_similarity(x_cls, prototypes[labels], dim=-1).mean()
    sim = F.normalize(prototypes, dim=-1) @ F.normalize(agent_semantics.mean(dim=0), dim=-1).t()
    own = torch.arange(sim.shape[0], device=sim.device)
    return to_video + temperature * F.cross_entropy(sim / temperature, own)


def loss_parts(out: dict, labels, model, cfg) -> tuple[dict, dict]:
    """(the weighted parts of the total loss, as tensors: L_v, L_con, γ1·L_MTC, γ2·L_sema; every
    term unweighted, as tensors, for logging)."""
    terms = {"L_con": F.cross_entropy(out["logits"], labels)}
    if cfg.variant == "baseline":
        return {"L_con": terms["L_con"]}, terms
    terms["L_v"] = F.cross_entropy(out["logits_video"], labels)
    terms["mtc_spatial"] = mtc_spatial(out["responses"])
    terms["mtc_temporal"] = mtc_temporal(out["coherence"], cfg.lambda_temporal)
    terms["mtc_tracklet"] = mtc_tracklet(out["responses"])
    agent = model.semantics.agent_semantics()
    terms["sema_video"] = sema_video(out["x_cls"], agent, labels)
    terms["sema_prototype"] = sema_prototype(
        out["x_cls"], model.prototypes, agent, labels, cfg.sema_temperature
    )
    terms["L_MTC"] = (
        cfg.spatial_weight * terms["mtc_spatial"]
        + cfg.temporal_weight * terms["mtc_temporal"]
        + cfg.tracklet_weight * terms["mtc_tracklet"]
    )
    # 0.5 each (their mean) by default: both pull x_cls, and their sum had ~4× L_con's gradient
    # into the tower at γ2 = 5 (docs/model.md); the paper's sum in art-b16-paper
    terms["L_sema"] = (
        cfg.sema_video_weight * terms["sema_video"]
        + cfg.sema_prototype_weight * terms["sema_prototype"]
    )
    parts = {
        "L_v": terms["L_v"],
        "L_con": terms["L_con"],
        "L_MTC": cfg.gamma1 * terms["L_MTC"],
        "L_sema": cfg.gamma2 * terms["L_sema"],
    }
    return parts, terms


def total_loss(parts: dict, terms: dict):
    """The total of the weighted parts, and every term (and the total, as `loss`) as floats."""
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(total.detach())}


def art_loss(out: dict, labels, model, cfg):
    """Total loss and a dict of every term (floats detached in `terms`)."""
    return total_loss(*loss_parts(out, labels, model, cfg))


def shared_parameters(model) -> list:
    """The parameters every loss term reaches: the frame encoder (the tower and its patch
    projection)."""
    return [p for p in model.frame_encoder.parameters() if p.requires_grad]


def part_grad_norms(parts: dict, params: list) -> dict:
    """Each weighted loss part's gradient norm into `params` (a backward pass each: measure every
    N steps, not every step). Keeps the graph for the step's own backward."""
    norms = {}
    for name, part in parts.items():
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        sq = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[name] = float(torch.sqrt(sum(sq))) if sq else 0.0
    return norms
