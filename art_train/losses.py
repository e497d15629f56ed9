"""ART losses: L_v + L_con + γ1·L_MTC + γ2·L_sema, every term returned for logging.

Choices where the paper leaves the formula out (each a config field or documented here):
- L_v is cross-entropy on the video head (x_cls alone), L_con on the fusion head.
- MTC spatial: mean over frames of the positive part of the cosine between the K responses of a
  frame (pushes them towards orthogonal, not opposite). Tracklet: the same over whole tracklets
  (each the mean of its normalised responses). Temporal: hinge relu(λ − cos(r_tk, r_(t+1)k)), so
  adjacent responses of one tracklet are pulled together until they reach correlation λ.
- L_sema video consistency: winner-take-all over templates — for each class, the template whose
  agent semantics is closest to x_cls — then InfoNCE over classes with `sema_temperature`.
  Prototype consistency: InfoNCE between the class prototypes W and the template-averaged agent
  semantics (class i should match prototype i), which keeps the bank's classes apart.
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


def sema_video(x_cls, agent_semantics, labels, temperature: float):
    """x_cls [B, D], agent_semantics [P, N, D]."""
    sim = torch.einsum(
        "bd,pnd->bpn", F.normalize(x_cls, dim=-1), F.normalize(agent_semantics, dim=-1)
    )
    return F.cross_entropy(sim.max(dim=1).values / temperature, labels)


def sema_prototype(prototypes, agent_semantics, temperature: float):
    """prototypes [N, D] against the template-averaged agent semantics [N, D]."""
    sim = F.normalize(prototypes, dim=-1) @ F.normalize(agent_semantics.mean(dim=0), dim=-1).t()
    return F.cross_entropy(sim / temperature, torch.arange(sim.shape[0], device=sim.device))


def art_loss(out: dict, labels, model, cfg):
    """Total loss and a dict of every term (floats detached in `terms`)."""
    terms = {"L_con": F.cross_entropy(out["logits"], labels)}
    if cfg.variant == "baseline":
        total = terms["L_con"]
    else:
        terms["L_v"] = F.cross_entropy(out["logits_video"], labels)
        terms["mtc_spatial"] = mtc_spatial(out["responses"])
        terms["mtc_temporal"] = mtc_temporal(out["coherence"], cfg.lambda_temporal)
        terms["mtc_tracklet"] = mtc_tracklet(out["responses"])
        agent = model.semantics.agent_semantics()
        terms["sema_video"] = sema_video(out["x_cls"], agent, labels, cfg.sema_temperature)
        terms["sema_prototype"] = sema_prototype(model.prototypes, agent, cfg.sema_temperature)
        terms["L_MTC"] = (
            cfg.spatial_weight * terms["mtc_spatial"]
            + cfg.temporal_weight * terms["mtc_temporal"]
            + cfg.tracklet_weight * terms["mtc_tracklet"]
        )
        terms["L_sema"] = terms["sema_video"] + terms["sema_prototype"]
        total = (
            terms["L_v"]
            + terms["L_con"]
            + cfg.gamma1 * terms["L_MTC"]
            + cfg.gamma2 * terms["L_sema"]
        )
    terms["loss"] = total
    return total, {k: float(v.detach()) for k, v in terms.items()}
