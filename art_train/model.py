"""ART: Action-Region Tracking (IEEE TNNLS 2025), and the paper's Baseline, in one file.

Read top-down: blocks, then the config, then the models, then the registry.
Shapes: B clips, T frames, L = HW patches per frame, D latent width (d), K queries (= tracklets),
N classes, P prompt templates.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from art_edge.errors import UserError
from art_edge.preprocess import Preprocessing
from art_train.configs import ARTConfig, get_config, list_models  # noqa: F401 (the registry lives there)
from art_train.ops import qr_attention, tracklet_link

# ----------------------------------------------------------------------------- blocks


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer=nn.GELU, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SelfAttention(nn.Module):
    """Plain multi-head self-attention (explicit MatMul/Softmax: exports and quantizes cleanly)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)

    def forward(self, x):
        b, n, d = x.shape
        qkv = (
            self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_drop(
            torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        )
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        norm_layer=nn.LayerNorm,
        act_layer=nn.GELU,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SelfAttention(dim, num_heads, attn_drop=drop)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class QueryResponseBlock(nn.Module):
    """Region queries attend to one frame's enhanced patch tokens (step 7: MCA, softmax over HW).
    The attention core is the fused op `qr_attention`; its projections stay plain Linear layers."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        norm_layer=nn.LayerNorm,
        act_layer=nn.GELU,
        logit_scale: float = 1.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = logit_scale * (dim // num_heads) ** -0.5
        self.norm_q = norm_layer(dim)
        self.norm_x = norm_layer(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop = nn.Dropout(drop)

    def forward(self, q, x):
        nx = self.norm_x(x)
        out, attn = qr_attention(
            self.q_proj(self.norm_q(q)),
            self.k_proj(nx),
            self.v_proj(nx),
            self.num_heads,
            self.scale,
        )
        q = q + self.drop(self.out_proj(out))
        return q + self.mlp(self.norm2(q)), attn


def classifier(
    dim: int, num_classes: int, hidden: int, drop: float, act_layer=nn.GELU
) -> nn.Module:
    """Dropout → Linear, or Dropout → Linear → act → Linear when hidden > 0. The order-aware
    tracklet features need a non-linear read-out (a linear head did not learn: docs/experiments/random-weights.md)."""
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(drop), nn.Linear(dim, num_classes))
    return nn.Sequential(
        nn.Dropout(drop), nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, num_classes)
    )


class FrameEncoder(nn.Module):
    """An open_clip vision tower run on each frame: patch tokens [N, L, D] and the frame's image
    embedding [N, E] in CLIP's joint image-text space (the tower's own pooling and image
    projection, untouched: what CLIP compares with its text embeddings).

    Uses open_clip's `forward_intermediates`, which every open_clip architecture (ViT, ResNet,
    MobileCLIP, timm towers) implements: the last feature map gives the patches, the pooled image
    embedding the frame embedding."""

    def __init__(self, visual: nn.Module, image_size: int, dim: int, feature_stage: int = -1):
        super().__init__()
        self.visual = visual
        # Which block/stage gives the patch tokens: the last by default; an earlier one for
        # conv towers, whose last stage (stride 32) is too coarse for region queries.
        self.indices = 1 if feature_stage < 0 else [feature_stage]
        with torch.no_grad():
            was_training = visual.training
            probe = visual.eval().forward_intermediates(
                torch.zeros(1, 3, image_size, image_size), indices=self.indices
            )
            visual.train(was_training)
        fmap, pooled = probe["image_intermediates"][-1], probe["image_features"]
        self.grid = (fmap.shape[2], fmap.shape[3])
        self.num_patches = fmap.shape[2] * fmap.shape[3]
        self.embed_dim = pooled.shape[-1]  # E: CLIP's joint space
        self.patch_proj = nn.Linear(fmap.shape[1], dim)

    def forward(self, images):
        out = self.visual.forward_intermediates(
            images, indices=self.indices, normalize_intermediates=True
        )
        patches = out["image_intermediates"][-1].flatten(2).transpose(1, 2)  # N L C
        return self.patch_proj(patches), out["image_features"]


class TemporalEncoder(nn.Module):
    """Step 2: the clip token x_cls [B, E], in CLIP's joint space: a small transformer over the T
    frame embeddings, then their mean over time. Its position embedding and the output of every
    residual branch start at zero (as CLIP video recognisers start their temporal modules), so at
    initialisation x_cls is the clip's mean frame embedding, which CLIP zero-shot classification
    compares with the class texts; the transformer then learns what time adds."""

    def __init__(
        self,
        dim: int,
        num_frames: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        if dim % num_heads:
            raise UserError(
                f"the temporal encoder works in CLIP's {dim}-wide joint space: num_heads = "
                f"{num_heads} does not divide it; pick a num_heads that does"
            )
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, drop, norm_layer) for _ in range(depth)
        )
        for blk in self.blocks:  # residual branches that add nothing at the start
            for layer in (blk.attn.proj, blk.mlp.fc2):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, frame_tokens):  # [B, T, E] → [B, E]
        x = frame_tokens + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x.mean(dim=1)


class SemanticsBank(nn.Module):
    """Step 3: the text-constrained semantics bank S [P, N, E] (CLIP text embeddings of every
    class under every prompt template, in CLIP's joint space), built once at training start and
    stored in the checkpoint.

    EMA-like fine-tuning: a trainable agent copy S_a is trained by L_sema; the bank S (a buffer,
    no gradient) follows it with momentum after each optimizer step. The model reads the bank:
    top-K compares it with x_cls in the joint space, and `proj` brings the K chosen into the
    head's latent width d."""

    def __init__(
        self, num_prompts: int, num_classes: int, text_dim: int, dim: int, momentum: float
    ):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("bank", torch.zeros(num_prompts, num_classes, text_dim))
        self.agent = nn.Parameter(torch.zeros(num_prompts, num_classes, text_dim))
        self.proj = nn.Linear(text_dim, dim)

    @torch.no_grad()
    def init_from(self, text_features):
        self.bank.copy_(text_features)
        self.agent.copy_(text_features)

    @torch.no_grad()
    def ema_update(self):
        self.bank.mul_(self.momentum).add_(self.agent.detach(), alpha=1.0 - self.momentum)

    def class_embeddings(self):  # [N, E]: each template's embedding normalised, then averaged
        return F.normalize(self.bank, dim=-1).mean(dim=0)  # (CLIP's zero-shot classifier)

    def class_semantics(self):  # [N, D]: the class embeddings in the head's latent width
        return self.proj(self.class_embeddings())

    def agent_semantics(self):  # [P, N, E]: what L_sema trains, in the joint space
        return self.agent


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding [1, h·w, dim] with unit amplitude (DETR/MAE style)."""
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))
    parts = [f(c.reshape(-1, 1) * freqs) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1])).unsqueeze(0)


def select_topk(x_cls, class_embeddings, k: int):
    """Step 4: the K classes whose embeddings are most similar (cosine) to the clip token, both
    in CLIP's joint space (as CLIP zero-shot classification compares an image with the class
    texts). Returns their ids [B, K], most similar first."""
    sim = F.normalize(x_cls, dim=-1) @ F.normalize(class_embeddings, dim=-1).t()
    return torch.topk(sim, k, dim=-1).indices


# ----------------------------------------------------------------------------- models


class ART(nn.Module):
    def __init__(self, cfg: ARTConfig, visual: nn.Module, text_dim: int):
        super().__init__()
        if cfg.num_queries > cfg.num_classes:
            raise UserError(
                f"K = {cfg.num_queries} queries need at least K classes, got {cfg.num_classes}: "
                "lower num_queries or add classes"
            )
        self.cfg = cfg
        d, h = cfg.dim, cfg.num_heads
        self.frame_encoder = FrameEncoder(visual, cfg.image_size, d, cfg.feature_stage)
        e = self.frame_encoder.embed_dim  # CLIP's joint space (= text_dim): x_cls, bank, L_sema
        self.temporal = TemporalEncoder(
            e, cfg.num_frames, cfg.temporal_layers, h, cfg.mlp_ratio, cfg.drop
        )
        self.semantics = SemanticsBank(
            len(cfg.prompts), cfg.num_classes, text_dim, d, cfg.ema_momentum
        )
        # patch_position: region queries must know *where* a response comes from; a learned
        # position embedding that starts as a unit-scale 2D sine-cosine one (from a 0.02-scale
        # random start, a model trained from scratch never found the small region:
        # docs/experiments/random-weights.md). Off: the tower's own position embedding only.
        self.patch_pos = (
            nn.Parameter(sincos_2d(self.frame_encoder.grid, d)) if cfg.patch_position else None
        )
        self.spatial = nn.ModuleList(
            Block(d, h, cfg.mlp_ratio, cfg.drop) for _ in range(cfg.spatial_layers)
        )
        self.spatial_norm = nn.LayerNorm(d)
        # P: discriminative queries, N(0, 1) as DETR's query embeddings. At 0.02 scale the
        # (unit-scale, clip-dependent) top-K semantics dominate Q = P + Ŝ at the start, so every clip
        # asks a different question and no consistent "where to look" forms.
        self.queries = nn.Parameter(torch.randn(1, cfg.num_queries, d) * cfg.query_init_std)
        self.qr_blocks = nn.ModuleList(
            QueryResponseBlock(d, h, cfg.mlp_ratio, cfg.drop, logit_scale=cfg.qr_logit_scale)
            for _ in range(cfg.qr_layers)
        )
        self.response_norm = nn.LayerNorm(d)
        # region_position: where each query's region is, as its attention map's centroid. A
        # response is an attention-weighted sum of values, and a LayerNorm follows: a motion smaller
        # than a token survives that only faintly; the centroid keeps it (to a fraction of a token
        # with a tower that localizes, docs/experiments/random-weights.md).
        rows, cols = self.frame_encoder.grid
        yy, xx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        token_xy = torch.stack([xx - (cols - 1) / 2, yy - (rows - 1) / 2], -1).reshape(-1, 2)
        self.register_buffer("token_xy", token_xy.float(), persistent=False)
        self.region_position = nn.Linear(2, d, bias=False) if cfg.region_position else None
        # The paper's UniFormerV2 backbone mixes time inside every frame feature; our per-frame
        # CLIP tower does not, and a saliency-weighted sum over time is blind to order (it cannot
        # tell a motion from its reverse). So each frame's response gets a projection of its own
        # time step first: r'_t = r_t + W_t r_t, and Σ_t w_t r'_t keeps the order. (A transformer
        # block over time did not learn within our CPU budget; this did: docs/experiments/random-weights.md.)
        self.tracklet_time_proj = (
            nn.Parameter(torch.randn(cfg.num_frames, d, d) * d**-0.5)
            if cfg.tracklet_time_proj
            else None
        )
        # W: class prototypes in the joint space beside x_cls, decoupled from the head
        self.prototypes = nn.Parameter(torch.randn(cfg.num_classes, e) * 0.02)
        self._build_heads(cfg, e)

    def _build_heads(self, cfg: ARTConfig, clip_dim: int):
        """The fusion head (x_cls [E] + K tracklets) and the video head (x_cls alone)."""
        if cfg.query_init not in ("random", "tokens"):
            raise UserError(f"query_init must be 'random' or 'tokens', got {cfg.query_init!r}")
        if cfg.tracklet_readout not in ("ordered", "sum"):
            raise UserError(
                f"tracklet_readout must be 'ordered' or 'sum', got {cfg.tracklet_readout!r}"
            )
        d = cfg.dim
        per_tracklet = d * (cfg.num_frames if cfg.tracklet_readout == "ordered" else 1)
        # Second-order motion of each tracklet (motion_dim > 0): its raw responses projected to
        # motion_dim, centred over time, and the lag-1 cross-covariance Σ_t z_t z_(t+1)ᵀ. Invariant
        # to where the region is and to the phase the motion starts at; its antisymmetric part is
        # the turning direction, its symmetric part the axis (docs/experiments/random-weights.md).
        m = cfg.motion_dim
        self.motion_proj = nn.Linear(d, m) if m > 0 else None
        per_tracklet += m * m
        self.head = classifier(
            clip_dim + cfg.num_queries * per_tracklet,
            cfg.num_classes,
            cfg.head_hidden,
            cfg.head_dropout,
        )
        self.video_head = classifier(clip_dim, cfg.num_classes, cfg.head_hidden, cfg.head_dropout)
        # The heads read x_cls normalised (the joint space's own scale is CLIP's, not theirs);
        # top-K and L_sema read it as it is, by cosine.
        self.clip_norm = nn.LayerNorm(clip_dim)

    def encode_frames(self, images):
        """[N, 3, H, W] → patch tokens [N, L, D], frame embeddings [N, E]. Cacheable per frame."""
        return self.frame_encoder(images)

    # The head in three stages, so that a stream does each frame's work once: the per-frame stage
    # depends on the frame and its clip's top-K semantics only, and is cached by the live path.

    def head_topk(self, frame_tokens):
        """Per clip, first (steps 2, 4): frame embeddings [B, T, E] → x_cls [B, E], the top-K
        ids [B, K] (chosen in CLIP's joint space) and their semantics [B, K, D]."""
        x_cls = self.temporal(frame_tokens)
        embeddings = self.semantics.class_embeddings()
        topk_ids = select_topk(x_cls, embeddings, self.cfg.num_queries)
        return x_cls, topk_ids, self.semantics.proj(embeddings)[topk_ids]

    def head_frames(self, patches, s_topk):
        """Per frame, given its clip's top-K semantics (steps 5-7): patches [N, L, D], s_topk
        [N, K, D] → responses [N, K, D], attention maps [N, K, L]."""
        length = patches.shape[1]
        # Step 5: self-attention over concat(X_t, S_topk), every frame at once.
        if self.patch_pos is not None:
            patches = patches + self.patch_pos
        x = torch.cat([patches, s_topk], dim=1)
        for blk in self.spatial:
            x = blk(x)
        x = self.spatial_norm(x)
        x_hat, s_hat = x[:, :length], x[:, length:]
        # Steps 6-7: region queries Q_t = P + Ŝ_t attend to X̂_t.
        q = self.queries + s_hat
        for blk in self.qr_blocks:
            q, attn = blk(q, x_hat)
        responses = self.response_norm(q)
        if self.region_position is not None:
            responses = responses + self.region_position(attn @ self.token_xy)
        return responses, attn

    def head_readout(self, x_cls, responses, s_topk):
        """Per clip, last (steps 8-10): x_cls [B, E], the T frames' raw responses [B, T, K, D],
        s_topk [B, K, D] → logits [B, N], saliency [B, T, K], coherence [B, T-1, K]."""
        b, t, k, d = responses.shape
        # Steps 8-9: tracklet k is query k in every frame; its saliency and coherence come from the
        # raw responses (relevance to S_topk and agreement of adjacent frames do not depend on time).
        agg, saliency, coherence = tracklet_link(responses, s_topk, self.cfg.link_temperature)
        # Step 10. The read-out sees each frame's response with a projection of its own time step
        # (encode_tracklets), so the order survives. "sum" is the paper's Σ_t w_t r_t; "ordered"
        # instead lets the head read each tracklet's saliency-weighted responses in time order
        # (T·w_t r_t: uniform weights leave them at scale). art-tiny reads "sum" and the motion
        # term below (docs/experiments/random-weights.md).
        timed = self.encode_tracklets(responses)
        weighted = saliency.unsqueeze(-1) * timed
        if self.cfg.tracklet_readout == "ordered":
            tracklets = (weighted * t).transpose(1, 2).reshape(b, k * t * d)
        elif self.tracklet_time_proj is None:
            tracklets = agg.reshape(b, k * d)
        else:
            tracklets = weighted.sum(dim=1).reshape(b, k * d)
        parts = [self.clip_norm(x_cls), tracklets]
        if self.motion_proj is not None:
            parts.append(self.tracklet_motion(responses))
        return self.head(torch.cat(parts, dim=-1)), saliency, coherence

    def tracklet_motion(self, responses):
        """[B, T, K, D] → [B, K·m·m]: each tracklet's lag-1 cross-covariance of its centred,
        projected responses (see motion_dim)."""
        b, t, k, _ = responses.shape
        z = self.motion_proj(responses)
        z = z - z.mean(dim=1, keepdim=True)
        lag = (z[:, :-1].unsqueeze(-1) * z[:, 1:].unsqueeze(-2)).mean(dim=1)  # [B, K, m, m]
        return lag.reshape(b, -1)

    def forward_head(self, patches, frame_tokens):
        """patches [B, T, L, D], frame_tokens [B, T, E] → dict of outputs (see `forward`): the
        three stages, every frame of every clip."""
        b, t, length, _ = patches.shape
        k = self.cfg.num_queries
        x_cls, topk_ids, s_topk = self.head_topk(frame_tokens)
        d = s_topk.shape[-1]
        per_frame = s_topk.unsqueeze(1).expand(b, t, k, d).reshape(b * t, k, d)
        raw, attn = self.head_frames(patches.reshape(b * t, length, d), per_frame)
        responses = raw.reshape(b, t, k, d)
        logits, saliency, coherence = self.head_readout(x_cls, responses, s_topk)
        return {
            "logits": logits,
            "logits_video": self.video_head(self.clip_norm(x_cls)),
            "x_cls": x_cls,
            "responses": responses,
            "attention": attn.reshape(b, t, k, length),
            "saliency": saliency,
            "coherence": coherence,
            "topk_ids": topk_ids,
        }

    @torch.no_grad()
    def init_queries_from_tokens(self, video, candidates: float = 0.1):
        """Query selection (as two-stage DETR): each query P_k starts as one of the most distinctive
        patch tokens of a batch of training clips — among the strongest-responding tenth, chosen
        far apart from each other — and the first query-response block's query projection starts
        equal to its key projection, so query k first attends to tokens that look like its exemplar.
        From random weights this makes lock-on less a matter of a random direction."""
        was_training = self.training
        self.eval()  # batch norms in the tower: leave their running statistics alone
        patches, _ = self.encode_frames(video.flatten(0, 1))
        self.train(was_training)
        tokens = patches.reshape(-1, patches.shape[-1])
        count = max(self.cfg.num_queries, int(candidates * len(tokens)))
        strong = tokens[tokens.norm(dim=-1).argsort(descending=True)[:count]]
        blk = self.qr_blocks[0]
        keys = torch.nn.functional.normalize(blk.k_proj(blk.norm_x(strong)), dim=-1)
        chosen = [0]
        for _ in range(self.cfg.num_queries - 1):  # farthest-point sampling in key direction
            sim = (keys @ keys[chosen].T).max(dim=1).values
            chosen.append(int(sim.argmin()))
        blk.q_proj.weight.copy_(blk.k_proj.weight)
        blk.q_proj.bias.copy_(blk.k_proj.bias)
        # ×3: the exemplar dominates Ŝ (unit scale after its norm) in Q = P + Ŝ.
        self.queries.copy_(3.0 * blk.norm_x(strong[chosen]).unsqueeze(0))

    def encode_tracklets(self, responses):
        """[B, T, K, D] → [B, T, K, D]: r_t + W_t r_t, a projection of each frame's own time step
        (for the read-out only; saliency, coherence and L_MTC use the raw r_t)."""
        if self.tracklet_time_proj is None:
            return responses
        return responses + torch.matmul(responses, self.tracklet_time_proj.unsqueeze(0))

    def forward(self, video):
        """video [B, T, 3, H, W] → dict: logits [B, N], logits_video [B, N], x_cls [B, E],
        responses [B, T, K, D], attention [B, T, K, L], saliency [B, T, K], coherence [B, T-1, K],
        topk_ids [B, K]."""
        b, t = video.shape[:2]
        patches, frame_tokens = self.encode_frames(video.flatten(0, 1))
        return self.forward_head(
            patches.reshape(b, t, *patches.shape[1:]), frame_tokens.reshape(b, t, -1)
        )


class Baseline(nn.Module):
    """The paper's Baseline: the same backbone and temporal token, straight into a classifier."""

    def __init__(self, cfg: ARTConfig, visual: nn.Module, text_dim: int = 0):
        super().__init__()
        self.cfg = cfg
        self.frame_encoder = FrameEncoder(visual, cfg.image_size, cfg.dim, cfg.feature_stage)
        e = self.frame_encoder.embed_dim
        self.temporal = TemporalEncoder(
            e, cfg.num_frames, cfg.temporal_layers, cfg.num_heads, cfg.mlp_ratio, cfg.drop
        )
        self.head = classifier(e, cfg.num_classes, cfg.head_hidden, cfg.head_dropout)  # as ART's
        self.clip_norm = nn.LayerNorm(e)

    def encode_frames(self, images):
        return self.frame_encoder(images)

    def forward_head(self, patches, frame_tokens):
        x_cls = self.temporal(frame_tokens)
        logits = self.head(self.clip_norm(x_cls))
        return {"logits": logits, "logits_video": logits, "x_cls": x_cls}

    forward = ART.forward


# ----------------------------------------------------------------------------- factory


@torch.no_grad()
def encode_class_texts(clip_model, backbone: str, class_names, prompts) -> torch.Tensor:
    """S0 [P, N, Ct]: every class name under every template through the CLIP text encoder."""
    from art_train.clip import tokenizer_for

    tokenizer = tokenizer_for(backbone)
    names = [n.replace("_", " ") for n in class_names]
    was_training = clip_model.training
    clip_model.eval()
    feats = [clip_model.encode_text(tokenizer([p.format(n) for n in names])) for p in prompts]
    clip_model.train(was_training)
    return torch.stack(feats)


def build_model(
    cfg: ARTConfig,
    class_names=None,
    clip_weights=None,
    quiet: bool = False,
    backbone_given: bool = False,
) -> nn.Module:
    """The model for `cfg`. With `class_names`, the semantics bank is built by the CLIP text
    encoder (training start); without, it is left for a checkpoint to fill (loading), and without
    `clip_weights` too, only the vision tower is built: a checkpoint holds no text tower.
    `clip_weights`: a local CLIP checkpoint (path); `backbone_given`: the user named the backbone,
    which settles the activation of a file that does not say it (art_train.clip)."""
    from art_train.clip import backbone_for_weights, create_clip, embed_dim, read_clip_weights

    if cfg.variant not in ("art", "baseline"):
        raise UserError(f"unknown variant {cfg.variant!r}; use 'art' or 'baseline'")
    if cfg.num_classes < 1:
        raise UserError("num_classes must be set (from the classes file) before building a model")
    weights = read_clip_weights(clip_weights) if clip_weights else None
    # The tower that matches the file's activation; model.json records the tower actually built.
    backbone = backbone_for_weights(cfg.backbone, weights, backbone_given)
    if backbone != cfg.backbone and not quiet:
        print(f"--clip-weights: building {backbone} ({weights.evidence})", file=sys.stderr)
    cfg = replace(cfg, backbone=backbone)
    cls = Baseline if cfg.variant == "baseline" else ART
    if class_names is None and weights is None:  # a checkpoint's weights follow
        return cls(cfg, create_clip(cfg.backbone, cfg.image_size, text_tower=False),
                   embed_dim(cfg.backbone))  # fmt: skip
    clip_model = create_clip(cfg.backbone, cfg.image_size, weights, warn_random=not quiet)
    model = cls(cfg, clip_model.visual, embed_dim(cfg.backbone))
    if class_names is not None and cfg.variant == "art":
        model.semantics.init_from(
            encode_class_texts(clip_model, cfg.backbone, class_names, cfg.prompts)
        )
    return model


def create_model(
    name: str, class_names=None, clip_weights: str | None = None, **overrides
) -> nn.Module:
    """timm-style factory: `create_model("art-tiny", num_classes=6, variant="baseline")`."""
    cfg, _ = get_config(name, **overrides)
    if class_names is not None and cfg.num_classes == 0:
        cfg = replace(cfg, num_classes=len(class_names))
    return build_model(cfg, class_names, clip_weights, backbone_given="backbone" in overrides)


def preprocessing_for(model) -> Preprocessing:
    """The preprocessing that matches a built model: its size and T, and the mean/std its visual
    tower was trained with (open_clip carries them on the tower)."""
    from art_train.clip import preprocess_stats

    mean, std = preprocess_stats(model.frame_encoder)
    return Preprocessing(
        image_size=model.cfg.image_size, num_frames=model.cfg.num_frames, mean=mean, std=std
    )


def create_model_and_transforms(
    name: str, class_names=None, clip_weights: str | None = None, **overrides
):
    """open_clip-style factory: (model, its Preprocessing)."""
    model = create_model(name, class_names, clip_weights, **overrides)
    return model, preprocessing_for(model)
