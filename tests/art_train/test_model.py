from dataclasses import replace

import pytest
import torch

from art_edge.errors import UserError
from art_train.configs import resolve_config
from art_train.model import (
    ART,
    ARTConfig,
    Baseline,
    SemanticsBank,
    create_model,
    get_config,
    list_models,
    select_topk,
)

CLASSES = ["a", "b", "c", "d", "e"]


def _tiny_input(cfg, b=2):
    return torch.randn(b, cfg.num_frames, 3, cfg.image_size, cfg.image_size)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("variant", ["art", "baseline"])
def test_every_registered_config_gives_the_documented_shapes(name, variant):
    # The big backbones run at a tiny input (32² and 4 frames) to keep this fast.
    small = {} if name == "art-tiny" else {"image_size": 32, "num_frames": 4}
    model = create_model(name, class_names=CLASSES, variant=variant, **small).eval()
    cfg = model.cfg
    assert isinstance(model, ART if variant == "art" else Baseline)
    with torch.no_grad():
        out = model(_tiny_input(cfg))
    assert out["logits"].shape == (2, len(CLASSES))
    assert out["x_cls"].shape == (2, model.frame_encoder.embed_dim)  # CLIP's joint space
    if variant == "art":
        k, t, length = cfg.num_queries, cfg.num_frames, model.frame_encoder.num_patches
        assert out["responses"].shape == (2, t, k, cfg.dim)
        assert out["attention"].shape == (2, t, k, length)
        assert out["saliency"].shape == (2, t, k)
        assert out["coherence"].shape == (2, t - 1, k)
        assert out["topk_ids"].shape == (2, k)
        torch.testing.assert_close(out["attention"].sum(-1), torch.ones(2, t, k))


def test_art_b16_keeps_the_papers_sizes_with_the_recipe_for_a_pretrained_tower():
    c, t = get_config("art-b16")
    # the recipe for a pretrained tower (docs/model.md); the paper's SGD schedule is a --set away
    assert (t.epochs, t.optimizer, t.tower_lr_scale, t.schedule) == (50, "adamw", 0.1, "cosine")
    assert t.grad_clip >= 50  # a safety net above the measured pre-clip norms, not the step size
    _, sgd = resolve_config(
        "art-b16",
        ["optimizer=sgd", "lr=0.01", "schedule=step", "lr_step=20", "lr_gamma=0.1"],
    )
    assert (sgd.optimizer, sgd.lr, sgd.schedule, sgd.lr_step, sgd.lr_gamma) == (
        "sgd",
        0.01,
        "step",
        20,
        0.1,
    )
    assert c.head_dropout == 0.5
    assert (c.backbone, c.num_frames, c.image_size, c.dim, c.num_queries) == (
        "ViT-B-16",
        16,
        224,
        256,
        2,
    )
    assert (c.spatial_layers, c.qr_layers, c.lambda_temporal, c.gamma1, c.gamma2) == (
        4,
        4,
        0.6,
        5.0,
        5.0,
    )


def test_unknown_config_lists_the_known_ones():
    with pytest.raises(UserError, match="art-tiny"):
        get_config("art-huge")
    with pytest.raises(UserError, match="unknown model config fields"):
        get_config("art-tiny", bogus=1)
    with pytest.raises(UserError, match="unknown config 'art-huge'"):  # a JSON config's base too
        resolve_config_from({"base": "art-huge"})


def resolve_config_from(doc, tmp=None):
    import json
    import tempfile

    from art_train.configs import resolve_config

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    return resolve_config(f.name)


def test_default_config_is_art_b16s_model_and_not_a_registered_name():
    from art_train.configs import ARTConfig as Cfg

    c = Cfg()
    assert c.name not in list_models()
    assert replace(c, name="art-b16") == get_config("art-b16")[0]
    assert (c.backbone, c.num_frames, c.dim, c.num_queries, c.spatial_layers, c.qr_layers) == (
        "ViT-B-16",
        16,
        256,
        2,
        4,
        4,
    )


def test_config_round_trips_and_rejects_unknown_fields():
    c, _ = get_config("art-tiny", num_classes=3)
    assert ARTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(UserError, match="unknown model config fields"):
        ARTConfig.from_dict({**c.to_dict(), "nope": 1})


def test_streaming_head_on_per_frame_outputs_equals_whole_clip_forward():
    model = create_model("art-tiny", class_names=CLASSES).eval()
    video = _tiny_input(model.cfg)
    with torch.no_grad():
        whole = model(video)
        per_frame = [
            model.encode_frames(video[:, t]) for t in range(video.shape[1])
        ]  # one frame at a time
        patches = torch.stack([p for p, _ in per_frame], 1)
        tokens = torch.stack([c for _, c in per_frame], 1)
        streamed = model.forward_head(patches, tokens)
    torch.testing.assert_close(streamed["logits"], whole["logits"], atol=1e-5, rtol=1e-5)


def test_frame_order_matters_to_art():
    # Reversed time must be able to change the output (clockwise vs counter-clockwise).
    model = create_model("art-tiny", class_names=CLASSES).eval()
    video = _tiny_input(model.cfg)
    with torch.no_grad():
        fwd, rev = model(video)["logits"], model(video.flip(1))["logits"]
    assert not torch.allclose(fwd, rev, atol=1e-4)


def test_ema_update_moves_the_bank_towards_the_agent_by_the_momentum():
    bank = SemanticsBank(num_prompts=2, num_classes=3, text_dim=4, dim=8, momentum=0.9)
    bank.init_from(torch.zeros(2, 3, 4))
    with torch.no_grad():
        bank.agent.fill_(1.0)
    bank.ema_update()
    torch.testing.assert_close(bank.bank, torch.full((2, 3, 4), 0.1))
    bank.ema_update()
    torch.testing.assert_close(bank.bank, torch.full((2, 3, 4), 0.19))
    assert not bank.bank.requires_grad and bank.agent.requires_grad


def test_semantics_bank_is_built_from_text_and_differs_per_class():
    model = create_model("art-tiny", class_names=CLASSES)
    bank = model.semantics.bank
    assert bank.shape == (len(model.cfg.prompts), len(CLASSES), bank.shape[-1])
    assert bank.abs().sum() > 0
    assert not torch.allclose(bank[:, 0], bank[:, 1])
    torch.testing.assert_close(model.semantics.agent.detach(), bank)


def test_topk_picks_the_most_similar_semantics_first():
    sem = torch.eye(4) * torch.tensor([[1.0], [0.1], [5.0], [1.0]])  # cosine: norms do not count
    x = torch.tensor([[0.1, 0.9, 0.5, 0.0]])
    assert select_topk(x, sem, 2).tolist() == [[1, 2]]


def test_more_queries_than_classes_is_a_clear_error():
    with pytest.raises(UserError, match="at least K classes"):
        create_model("art-tiny", class_names=["only"], num_queries=2)


@pytest.mark.parametrize("readout", ["sum", "ordered"])
def test_tracklet_readouts_give_logits_and_reject_unknown(readout):
    model = create_model("art-tiny", class_names=CLASSES, tracklet_readout=readout).eval()
    with torch.no_grad():
        assert model(_tiny_input(model.cfg))["logits"].shape == (2, len(CLASSES))
    with pytest.raises(UserError, match="tracklet_readout"):
        create_model("art-tiny", class_names=CLASSES, tracklet_readout="max")


def test_query_selection_starts_each_query_on_a_distinct_strong_token():
    """query_init=tokens: every query's first attention key direction is one training token's,
    chosen among the strongest and far apart; a bad value is a clear error."""
    torch.manual_seed(0)
    classes = [f"c{i}" for i in range(4)]
    model = create_model(
        "art-tiny", class_names=classes, image_size=32, num_frames=4, dim=32
    ).train()
    video = torch.randn(2, 4, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.init_queries_from_tokens(video)
    assert model.training, "the init must leave the model in the mode it found it"
    for k, v in before.items():  # batch-norm statistics untouched
        torch.testing.assert_close(model.state_dict()[k], v)
    blk = model.qr_blocks[0]
    torch.testing.assert_close(blk.q_proj.weight, blk.k_proj.weight)
    with torch.no_grad():
        patches, _ = model.eval().encode_frames(video.flatten(0, 1))  # as the init saw them
        keys = torch.nn.functional.normalize(
            blk.k_proj(blk.norm_x(patches.reshape(-1, 32))), dim=-1
        )
        queries = torch.nn.functional.normalize(blk.q_proj(blk.norm_q(model.queries[0])), dim=-1)
    best = (queries @ keys.T).max(dim=1)
    assert torch.all(best.values > 0.999), best.values  # each query is some token's key direction
    assert len(set(best.indices.tolist())) == 4  # four different tokens
    norms = patches.reshape(-1, 32).norm(dim=-1)
    assert torch.all(norms[best.indices] >= norms.quantile(0.85))  # among the strongest tokens
    with pytest.raises(UserError, match="query_init"):
        create_model("art-tiny", class_names=classes, query_init="kmeans")


def test_tracklet_motion_ignores_where_the_region_is_and_flips_with_time():
    """motion_dim: the lag-1 cross-covariance of centred responses is the same wherever the
    region is (a constant added to every frame), and reversing time transposes it (the turning
    direction changes sign), which a saliency-weighted sum cannot see."""
    model = create_model("art-tiny", class_names=list("abcd"), motion_dim=6)
    r = torch.randn(2, 8, 4, model.cfg.dim)
    m = model.cfg.motion_dim
    base = model.tracklet_motion(r).reshape(2, 4, m, m)
    shifted = model.tracklet_motion(r + 5 * torch.randn(1, 1, 4, model.cfg.dim))
    torch.testing.assert_close(shifted.reshape(2, 4, m, m), base, atol=1e-4, rtol=1e-4)
    reversed_ = model.tracklet_motion(r.flip(1)).reshape(2, 4, m, m)
    torch.testing.assert_close(reversed_, base.transpose(-1, -2), atol=1e-5, rtol=1e-5)
    assert (base - base.transpose(-1, -2)).abs().max() > 1e-3


def test_region_position_adds_where_each_query_looks():
    """region_position: each response gains W·(the centroid of its attention map), in token units
    from the grid's centre, x along the columns and y down the rows (the patch map's order)."""
    torch.manual_seed(0)
    model = create_model("art-tiny", class_names=list("abcd")).eval()  # on in art-tiny
    rows, cols = model.frame_encoder.grid
    xy = model.token_xy.reshape(rows, cols, 2)
    assert xy[0, 0].tolist() == [-(cols - 1) / 2, -(rows - 1) / 2]
    assert xy[1, 2].tolist() == [2 - (cols - 1) / 2, 1 - (rows - 1) / 2]
    plain = create_model("art-tiny", class_names=list("abcd"), region_position=False).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    patches = torch.randn(3, rows * cols, model.cfg.dim)
    s_topk = torch.randn(3, model.cfg.num_queries, model.cfg.dim)
    with torch.no_grad():
        with_position, attn = model.head_frames(patches, s_topk)
        without, _ = plain.head_frames(patches, s_topk)
        centroid = attn @ model.token_xy
        torch.testing.assert_close(with_position - without, model.region_position(centroid))
    assert centroid.abs().max() > 0.05  # the maps are not uniform: the term carries something


def test_art_b16_paper_is_only_what_the_paper_states():
    paper, recipe = get_config("art-b16-paper")
    ours, _ = get_config("art-b16")
    # the paper's sizes, heads and loss weights, as art-b16's
    for field in ("backbone", "num_frames", "image_size", "dim", "num_queries", "spatial_layers",
                  "qr_layers", "lambda_temporal", "gamma1", "gamma2", "head_dropout"):  # fmt: skip
        assert getattr(paper, field) == getattr(ours, field), field
    # where art-b16 differs (docs/model.md's table)
    assert (paper.qr_logit_scale, paper.tracklet_time_proj, paper.patch_position) == (
        1.0,
        False,
        False,
    )
    assert paper.head_hidden == 0 and (paper.motion_dim, paper.region_position) == (0, False)
    weights = ("spatial_weight", "temporal_weight", "tracklet_weight", "sema_video_weight",
               "sema_prototype_weight")  # fmt: skip
    assert all(getattr(paper, w) == 1.0 for w in weights)
    # lr 0.01 × 0.1 every 20 epochs, 50 epochs, random flips; one rate, no warm-up, no clipping
    assert (recipe.optimizer, recipe.lr, recipe.schedule, recipe.lr_step, recipe.lr_gamma) == (
        "sgd", 0.01, "step", 20, 0.1)  # fmt: skip
    assert (recipe.epochs, recipe.flip, recipe.tower_lr_scale, recipe.warmup_epochs) == (
        50, True, 1.0, 0.0)  # fmt: skip
    assert recipe.grad_clip == 0 and recipe.weight_decay == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["art-b16", "art-b16-paper"])
def test_b16_configs_build_run_forward_and_train_a_few_steps_on_the_cpu(name):
    """ViT-B/16 at 32² and 4 frames: the real model, the real training step and recipe."""
    from types import SimpleNamespace

    from art_train.model import build_model
    from art_train.train import make_optimizer, train_one_epoch

    model_cfg, tcfg = resolve_config(name, ["image_size=32", "num_frames=4", "part_grad_every=0"])
    model_cfg = replace(model_cfg, num_classes=len(CLASSES))
    torch.manual_seed(0)
    model = build_model(model_cfg, CLASSES, quiet=True)
    assert (model.patch_pos is None) == (name == "art-b16-paper")
    optimizer = make_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    batches = [(torch.randn(2, 4, 3, 32, 32), torch.tensor([i, i + 1])) for i in range(2)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dist = SimpleNamespace(device=torch.device("cpu"))
    row = train_one_epoch(model, model, batches, optimizer, scheduler, dist, tcfg, 0, False)
    assert all(v == v and abs(v) < 1e6 for v in row.values())  # finite
    assert row["L_MTC"] > 0 and row["L_sema"] > 0
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "queries" in moved and any(n.startswith("frame_encoder.visual.") for n in moved)
    with torch.no_grad():
        out = model.eval()(batches[0][0])
    assert out["logits"].shape == (2, len(CLASSES)) and torch.isfinite(out["logits"]).all()


def test_loading_a_checkpoint_builds_no_text_tower(trained, monkeypatch):
    from art_train.checkpoint import load_checkpoint, read_weights
    from art_train.clip import import_open_clip

    def refuse(*args, **kwargs):
        raise AssertionError("a whole CLIP model (with its text tower) was built")

    open_clip = import_open_clip()
    monkeypatch.setattr(open_clip, "create_model", refuse)
    monkeypatch.setattr(open_clip, "get_tokenizer", refuse)
    model, meta = load_checkpoint(trained)
    state = read_weights(trained)
    assert sorted(model.state_dict()) == sorted(state)
    assert torch.equal(model.semantics.bank, state["semantics.bank"])
