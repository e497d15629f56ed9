"""Configs: the model config, the training recipe, and the one registry that names them together.

    model_cfg, train_cfg = get_config("art-tiny")
    model_cfg, train_cfg = resolve_config("art-b16", ["lr=0.005", "num_queries=4"])   # --config/--set

`ARTConfig()`'s defaults are art-b16's model (the recommended recipe, not the paper's exactly:
art-b16-paper is the paper's, and docs/model.md has the table of every difference); every
registered config spells out where it differs from the defaults. An unknown name is an error, never a fallback.
No torch here: reading a config needs none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from art_edge.errors import UserError, read_json

PROMPT_TEMPLATES = (
    "This is a video about {}.",
    "The person is doing {}.",
    "A video of a person {}.",
    "Someone performing {}.",
    "A clip of {}.",
    "Playing {}.",
    "{}",
    "The action of {}.",
)


@dataclass
class ARTConfig:
    name: str = "custom"  # registry name this config came from
    # "art", or "baseline": backbone + temporal token straight into a classifier
    variant: str = "art"
    backbone: str = "ViT-B-16"  # open_clip model name for the frame encoder and text encoder
    # backbone block/stage giving the patch tokens (-1: last; 2: stride 8 of a CNN)
    feature_stage: int = -1
    image_size: int = 224  # square input side
    num_frames: int = 16  # T: sparse frames per clip
    num_classes: int = 0  # N: set from the classes file
    dim: int = 256  # d: latent width
    num_queries: int = 2  # K: region queries = tracklets
    num_heads: int = 8  # heads in every attention
    temporal_layers: int = 2  # temporal transformer depth (x_cls)
    spatial_layers: int = 4  # spatial semantic enhancement depth
    qr_layers: int = 4  # query-response attention depth
    # r_t + W_t r_t before aggregation, so the sum over time keeps order; False: the paper's
    tracklet_time_proj: bool = True
    # a learned position embedding on the patch tokens (starts as 2D sine-cosine); False: the
    # paper's (the tower's own position embedding only)
    patch_position: bool = True
    query_init_std: float = 1.0  # init std of the learned queries P (DETR: 1)
    # "random": N(0, query_init_std); "tokens": from distinctive training tokens
    query_init: str = "random"
    # multiplies 1/sqrt(head dim) in query-response attention: sharp maps (1: the paper's)
    qr_logit_scale: float = 4.0
    # hidden width of the MLP classifiers (0: a single linear layer, the paper's)
    head_hidden: int = 256
    # "sum": Σ_t w_t r_t (paper); "ordered": [w_1 r_1 … w_T r_T] in time order
    tracklet_readout: str = "sum"
    # > 0: each tracklet's second-order motion (lag-1 cross-covariance of its responses projected
    # to this many dims) joins the read-out; 0: off (the paper's)
    motion_dim: int = 0
    # each response also carries where its region is: its attention map's centroid (token units),
    # through a learned linear embedding added after the response norm; False: the paper's
    region_position: bool = False
    mlp_ratio: float = 4.0  # MLP hidden width / d
    drop: float = 0.0  # dropout inside blocks
    head_dropout: float = 0.5  # dropout before the classifiers (paper: 0.5)
    prompts: tuple = PROMPT_TEMPLATES  # N_prom templates for the semantics bank
    ema_momentum: float = 0.99  # bank ← m·bank + (1-m)·agent after each step
    link_temperature: float = 0.1  # TrackletLink: softmax over time of cosine / temperature
    sema_temperature: float = 0.07  # L_sema InfoNCE temperature
    # L_MTC temporal: adjacent responses should reach this cosine (paper: λ)
    lambda_temporal: float = 0.6
    gamma1: float = 5.0  # weight of L_MTC (paper: γ1)
    gamma2: float = 5.0  # weight of L_sema (paper: γ2)
    # L_MTC = spatial_weight·spatial + temporal_weight·temporal + tracklet_weight·tracklet; 0.5
    # each keeps its gradient into the tower within 3× the others' at γ1 = 5 (docs/model.md;
    # the paper's sum: 1 each)
    spatial_weight: float = 0.5
    temporal_weight: float = 0.5
    tracklet_weight: float = 0.5
    # L_sema = sema_video_weight·video + sema_prototype_weight·prototype consistency; 0.5 each
    # (their mean) for the same reason (the paper's sum: 1 each)
    sema_video_weight: float = 0.5
    sema_prototype_weight: float = 0.5

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompts"] = list(self.prompts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ARTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown model config fields {unknown}; known fields: {sorted(known)}")
        d = dict(d)
        if "prompts" in d:
            d["prompts"] = tuple(d["prompts"])
        return cls(**d)


@dataclass
class TrainConfig:
    epochs: int = 50  # passes over the training list (paper: 50)
    batch_size: int = 8  # clips per optimizer step (per process under DDP)
    optimizer: str = "adamw"  # "adamw", or "sgd" (the paper's)
    lr: float = 1e-3  # peak learning rate (of the new modules)
    tower_lr_scale: float = 1.0  # the pretrained vision tower's learning rate as a fraction of lr
    weight_decay: float = 0.05  # decoupled (adamw) or L2 (sgd)
    momentum: float = 0.9  # sgd momentum
    # "cosine", or "step" (lr × lr_gamma every lr_step epochs, the paper's)
    schedule: str = "cosine"
    lr_step: int = 20  # epochs between steps of the "step" schedule
    lr_gamma: float = 0.1  # factor at each step of the "step" schedule
    warmup_epochs: float = 1.0  # linear warm-up from 0
    grad_clip: float = (
        1.0  # max gradient norm (0 = off): a safety net; metrics.jsonl logs the share clipped
    )
    # every this many steps (and an epoch's first), each loss part's gradient norm into the frame
    # encoder is measured and logged as grad_<part> (0 = off; a backward pass per part)
    part_grad_every: int = 25
    workers: int = 0  # DataLoader worker processes
    seed: int = 0  # seeds data order, augmentation, dropout and init
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    flip: bool = False  # random horizontal flip (off: a flip can change a fine-grained label)
    max_bad_fraction: float = 0.1  # stop when more than this share of the clips do not decode
    # initialisations tried for probe_epochs each; the best by val top-1 trains on
    restarts: int = 1
    probe_epochs: int = 3  # epochs each restart gets before the choice


# The clipping threshold of the configs that fine-tune a pretrained tower with every loss term on:
# well above the pre-clip norms of their first epoch (20-28 measured, docs/model.md), so it only
# catches spikes; AdamW's step size does not depend on the gradient's scale anyway.
GRAD_CLIP_SAFETY_NET = 100.0


@dataclass(frozen=True)
class RegisteredConfig:
    model: ARTConfig
    train: TrainConfig


_REGISTRY: dict[str, RegisteredConfig] = {
    # Trains on 2 CPU cores in minutes: a tiny ResNet tower (timm test_resnet) at 64², 8 frames,
    # patch tokens from its stride-8 stage (8×8). Trained from random weights, so (all measured,
    # docs/experiments/random-weights.md): no auxiliary losses (at γ = 5 they cost accuracy), no
    # spatial enhancement and one single-head query layer (they learn, slower), K = 4, queries that
    # start from distinctive training tokens, and a read-out of each region's motion: where each
    # query looks (region_position) and its lag-1 cross-covariance (motion_dim), which hold for a
    # mark anywhere, moving less than a token, from any phase.
    "art-tiny": RegisteredConfig(
        ARTConfig(
            name="art-tiny",
            backbone="ART-ResNet-Tiny",
            feature_stage=2,
            image_size=64,
            num_frames=8,
            dim=128,
            num_queries=4,
            num_heads=1,
            temporal_layers=1,
            spatial_layers=0,
            qr_layers=1,
            mlp_ratio=2.0,
            head_dropout=0.1,
            gamma1=0.0,
            gamma2=0.0,
            query_init="tokens",
            motion_dim=16,
            region_position=True,
        ),
        TrainConfig(epochs=10, batch_size=8),
    ),
    # Real-time edge model: a small open_clip backbone (ViT-S/32), T = 8, 224².
    "art-edge-s": RegisteredConfig(
        ARTConfig(
            name="art-edge-s",
            backbone="ViT-S-32",
            num_frames=8,
            temporal_layers=2,
            spatial_layers=2,
            qr_layers=2,
        ),
        TrainConfig(
            epochs=30, batch_size=8, lr=3e-4, tower_lr_scale=0.1, grad_clip=GRAD_CLIP_SAFETY_NET
        ),
    ),
    # The recommended recipe for a CLIP ViT-B/16 (per frame, in place of the paper's
    # UniFormerV2): the paper's sizes and loss weights, with the choices art-b16-paper leaves out
    # (docs/model.md: one table of every difference, with its reason and evidence), and the
    # recipe CLIP video fine-tuning uses: AdamW, the pretrained tower at a tenth of the new
    # modules' learning rate, cosine schedule after a warm-up, clipping as a safety net only.
    "art-b16": RegisteredConfig(
        ARTConfig(name="art-b16"),
        TrainConfig(
            epochs=50,
            batch_size=8,
            optimizer="adamw",
            lr=1e-4,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=2.0,
            tower_lr_scale=0.1,
            grad_clip=GRAD_CLIP_SAFETY_NET,
        ),
    ),
    # Only what the paper states; where it is silent, the simplest choice (docs/model.md names
    # each): attention at the usual 1/sqrt(head dim), no time projection, no position embedding
    # beyond the tower's, a linear head, L_MTC and L_sema as plain sums; SGD at 0.01 × 0.1 every 20
    # epochs, one learning rate for the whole model, random flips, no warm-up or clipping.
    "art-b16-paper": RegisteredConfig(
        ARTConfig(
            name="art-b16-paper",
            qr_logit_scale=1.0,
            tracklet_time_proj=False,
            patch_position=False,
            head_hidden=0,
            spatial_weight=1.0,
            temporal_weight=1.0,
            tracklet_weight=1.0,
            sema_video_weight=1.0,
            sema_prototype_weight=1.0,
        ),
        TrainConfig(
            epochs=50,
            batch_size=8,
            optimizer="sgd",
            lr=0.01,
            momentum=0.9,
            weight_decay=0.0,
            schedule="step",
            lr_step=20,
            lr_gamma=0.1,
            warmup_epochs=0.0,
            tower_lr_scale=1.0,
            grad_clip=0.0,
            flip=True,
        ),
    ),
}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> tuple[ARTConfig, TrainConfig]:
    """The registered (model config, training config) of `name`, with model-field overrides."""
    if name not in _REGISTRY:
        raise UserError(f"unknown config {name!r}; known configs: {', '.join(list_models())}")
    bad = sorted(set(overrides) - {f.name for f in fields(ARTConfig)})
    if bad:
        raise UserError(f"unknown model config fields {bad} for {name!r}")
    entry = _REGISTRY[name]
    return replace(entry.model, **overrides), replace(entry.train)


def _coerce(value: str, like):
    if isinstance(like, bool):
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise UserError(f"expected true/false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    if isinstance(like, (int, float, str)):
        try:
            return type(like)(value)
        except ValueError:
            raise UserError(f"expected a {type(like).__name__}, got {value!r}") from None
    return json.loads(value)


# field: (rule, what it must be); checked after every override, so a bad --set is one line, not a crash mid-run
_TRAIN_RULES = {
    "epochs": (lambda v: v >= 1, "≥ 1"),
    "batch_size": (lambda v: v >= 1, "≥ 1"),
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, "≥ 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer": (lambda v: v in ("adamw", "sgd"), "adamw or sgd"),
    "schedule": (lambda v: v in ("cosine", "step"), "cosine or step"),
    "lr_step": (lambda v: v >= 1, "≥ 1"),
    "lr_gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "warmup_epochs": (lambda v: v >= 0, "≥ 0"),
    "grad_clip": (lambda v: v >= 0, "≥ 0"),
    "part_grad_every": (lambda v: v >= 0, "≥ 0"),
    "workers": (lambda v: v >= 0, "≥ 0"),
    "max_bad_fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "restarts": (lambda v: v >= 1, "≥ 1"),
    "probe_epochs": (lambda v: v >= 1, "≥ 1"),
    "tower_lr_scale": (lambda v: v >= 0, "≥ 0"),
}
_MODEL_RULES = {
    "variant": (lambda v: v in ("art", "baseline"), "art or baseline"),
    "image_size": (lambda v: v >= 16, "≥ 16"),
    "num_frames": (lambda v: v >= 2, "≥ 2"),
    "dim": (lambda v: v >= 1, "≥ 1"),
    "num_queries": (lambda v: v >= 1, "≥ 1"),
    "num_heads": (lambda v: v >= 1, "≥ 1"),
    "temporal_layers": (lambda v: v >= 0, "≥ 0"),
    "spatial_layers": (lambda v: v >= 0, "≥ 0"),
    "qr_layers": (lambda v: v >= 1, "≥ 1"),
    "query_init": (lambda v: v in ("random", "tokens"), "random or tokens"),
    "tracklet_readout": (lambda v: v in ("sum", "ordered"), "sum or ordered"),
    "motion_dim": (lambda v: 0 <= v <= 64, "in [0, 64]"),
    "drop": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "head_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "link_temperature": (lambda v: v > 0, "> 0"),
    "sema_temperature": (lambda v: v > 0, "> 0"),
    "ema_momentum": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "gamma1": (lambda v: v >= 0, "≥ 0"),
    "gamma2": (lambda v: v >= 0, "≥ 0"),
    "spatial_weight": (lambda v: v >= 0, "≥ 0"),
    "temporal_weight": (lambda v: v >= 0, "≥ 0"),
    "tracklet_weight": (lambda v: v >= 0, "≥ 0"),
    "sema_video_weight": (lambda v: v >= 0, "≥ 0"),
    "sema_prototype_weight": (lambda v: v >= 0, "≥ 0"),
    "qr_logit_scale": (lambda v: v > 0, "> 0"),
    "head_hidden": (lambda v: v >= 0, "≥ 0"),
}


def validate(model_cfg: ARTConfig, train_cfg: TrainConfig):
    """Every field within its range, before anything is built or read."""
    for cfg, rules in ((model_cfg, _MODEL_RULES), (train_cfg, _TRAIN_RULES)):
        for name, (ok, what) in rules.items():
            if not ok(getattr(cfg, name)):
                raise UserError(
                    f"{name} = {getattr(cfg, name)!r}: it must be {what} (--set {name}=VALUE)"
                )
    if model_cfg.dim % model_cfg.num_heads:
        raise UserError(
            f"dim = {model_cfg.dim} is not divisible by num_heads = {model_cfg.num_heads}; "
            "pick a dim that is a multiple of num_heads"
        )


def resolve_config(config: str, sets=()) -> tuple[ARTConfig, TrainConfig]:
    """--config NAME|PATH plus --set key=value overrides → (model config, training config).

    A config file is JSON: {"base": "art-tiny", "model": {...}, "train": {...}}."""
    model_over, train_over = {}, {}
    if config.endswith(".json") or Path(config).is_file():
        doc = read_json(config, f"config file not found: {config}", "fix the config file")
        base = doc.get("base", "art-tiny")
        model_over, train_over = doc.get("model", {}), doc.get("train", {})
    else:
        base = config
    model_cfg, train_cfg = get_config(base, **model_over)
    train_fields = {f.name for f in fields(TrainConfig)}
    model_fields = {f.name for f in fields(ARTConfig)}
    bad = sorted(set(train_over) - train_fields)
    if bad:
        raise UserError(f"unknown training config fields {bad}; known: {sorted(train_fields)}")
    train_cfg = replace(train_cfg, **train_over)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set takes key=value, got {item!r}")
        if key in train_fields:
            train_cfg = replace(train_cfg, **{key: _coerce(value, getattr(train_cfg, key))})
        elif key in model_fields:
            model_cfg = replace(model_cfg, **{key: _coerce(value, getattr(model_cfg, key))})
        else:
            raise UserError(
                f"--set: unknown field {key!r}; model fields: {sorted(model_fields)}; "
                f"training fields: {sorted(train_fields)}"
            )
    validate(model_cfg, train_cfg)
    return model_cfg, train_cfg


def backbone_named(config: str, sets=()) -> bool:
    """Whether the user named the backbone (--set backbone=…, or a JSON config's model fields):
    that choice settles the activation of CLIP weights that do not say theirs (art_train.clip)."""
    if any(item.partition("=")[0] == "backbone" for item in sets):
        return True
    if config.endswith(".json") or Path(config).is_file():
        doc = read_json(config, f"config file not found: {config}", "fix the config file")
        return "backbone" in doc.get("model", {})
    return False


# What --resume may change: how long to go on, and how many loader processes read the data.
RESUME_MAY_CHANGE = {"epochs", "workers"}


def resume_config(saved: dict, sets=()) -> tuple[ARTConfig, TrainConfig]:
    """The configs a run was started with (its model.json), with the --set values that --resume
    may change; any other --set that differs from the run's is an error naming the field."""
    model_cfg = ARTConfig.from_dict(saved["model"])
    train_cfg = TrainConfig(**saved.get("train", {}))
    for item in sets:
        key, _, value = item.partition("=")
        cfg = train_cfg if key in {f.name for f in fields(TrainConfig)} else model_cfg
        if not hasattr(cfg, key):
            raise UserError(f"--set: unknown field {key!r}")
        new = _coerce(value, getattr(cfg, key))
        if key in RESUME_MAY_CHANGE:
            train_cfg = replace(train_cfg, **{key: new})
        elif new != getattr(cfg, key):
            raise UserError(
                f"--resume continues the run with its own config, where {key} = {getattr(cfg, key)!r}; "
                f"drop --set {key}={value} (or start a new run with another --out)"
            )
    validate(model_cfg, train_cfg)
    return model_cfg, train_cfg
