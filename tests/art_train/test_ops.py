import os

import pytest
import torch
import torch.nn.functional as F

from art_train.ops import (
    qr_attention,
    qr_attention_reference,
    tracklet_link,
    tracklet_link_reference,
)


def test_qr_attention_matches_sdpa_and_maps_sum_to_one():
    torch.manual_seed(0)
    n, k, length, d, h = 6, 2, 49, 64, 4
    q, kk, v = torch.randn(n, k, d), torch.randn(n, length, d), torch.randn(n, length, d)
    out, attn = qr_attention(q, kk, v, h, (d // h) ** -0.5)
    split = lambda x: x.reshape(n, -1, h, d // h).transpose(1, 2)  # noqa: E731
    ref = (
        F.scaled_dot_product_attention(split(q), split(kk), split(v))
        .transpose(1, 2)
        .reshape(n, k, d)
    )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert attn.shape == (n, k, length)
    torch.testing.assert_close(attn.sum(-1), torch.ones(n, k))


def test_qr_attention_map_peaks_on_the_matching_token():
    d = 32
    keys = torch.eye(d)[:16].unsqueeze(0) * 10  # token i points along axis i
    q = keys[:, [5, 11]]
    _, attn = qr_attention(q, keys, keys, 1, 1.0)
    assert attn[0, 0].argmax() == 5 and attn[0, 1].argmax() == 11


def test_tracklet_link_weights_sum_to_one_and_follow_relevance():
    torch.manual_seed(0)
    b, t, k, d = 2, 8, 2, 16
    sem = F.normalize(torch.randn(b, k, d), dim=-1)
    resp = torch.randn(b, t, k, d) * 0.1
    resp[:, 3] = sem * 5  # frame 3 matches the semantics best
    agg, sal, coh = tracklet_link(resp, sem, temperature=0.1)
    assert agg.shape == (b, k, d) and sal.shape == (b, t, k) and coh.shape == (b, t - 1, k)
    torch.testing.assert_close(sal.sum(1), torch.ones(b, k))
    assert (sal.argmax(1) == 3).all()
    torch.testing.assert_close(agg, (sal.unsqueeze(-1) * resp).sum(1))


def test_tracklet_link_coherence_is_adjacent_cosine():
    r = torch.randn(1, 5, 3, 8)
    _, _, coh = tracklet_link(r, torch.randn(1, 3, 8), 0.1)
    torch.testing.assert_close(coh[0, 2, 1], F.cosine_similarity(r[0, 2, 1], r[0, 3, 1], dim=0))


# ----------------------------------------------------------------------------- dispatch to the kernels


class StandInExtension:
    """STAND-IN for plugins.torch_ops.FusedOps, the CUDA extension, which cannot run without a GPU.
    It checks its inputs the way the extension's C++ binding does (one floating dtype for all,
    one the kernels have), records what it received, and answers with the reference op computed
    in float32 and returned in the input dtype, as the kernels do."""

    KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

    def __init__(self):
        self.calls = []

    def check(self, op, tensors):
        first = tensors[0].dtype
        if any(t.dtype != first for t in tensors):
            raise RuntimeError(f"{op}: inputs must have the dtype of the first input")
        if first not in self.KERNEL_DTYPES:
            raise RuntimeError(f"{op}: art ops take float32, float16 or bfloat16, got {first}")
        self.calls.append((op, first))

    def qr_attention_fits(self, q, k, heads):
        return True  # every shape of these tests is within the kernel's limits

    def qr_attention(self, q, k, v, heads, scale):
        self.check("qr_attention", (q, k, v))
        out = qr_attention_reference(q.float(), k.float(), v.float(), heads, scale)
        return tuple(t.to(q.dtype) for t in out)

    def tracklet_link(self, r, s, temperature, eps=1e-6):
        self.check("tracklet_link", (r, s))
        out = tracklet_link_reference(r.float(), s.float(), temperature, eps)
        return tuple(t.to(r.dtype) for t in out)


def timings(fused_ms, reference_ms):
    """A stand-in for the router's CUDA-event timer: it measures the kernel first, then the
    reference, `repeats` calls each (1 in these tests)."""
    answers = iter([fused_ms, reference_ms] * 1000)
    return lambda fn, like: (fn(), next(answers))[1]


@pytest.fixture
def stand_in(monkeypatch):
    """The dispatch of art_train/ops.py as on a GPU, with the stand-in extension; the router's
    timer says the kernel is faster unless a test says otherwise."""
    import plugins.torch_ops
    from art_train import ops

    ext = StandInExtension()
    monkeypatch.setattr(ops, "on_gpu", lambda tensors: True)
    monkeypatch.setattr(plugins.torch_ops, "fused_ops", lambda: ext)
    monkeypatch.setattr(ops, "ROUTER", ops.FusedRouter(repeats=1))
    monkeypatch.setattr(ops, "elapsed_ms", timings(fused_ms=1.0, reference_ms=2.0))
    monkeypatch.delenv("ART_FUSED_OPS", raising=False)
    return ext


def qkv(dtypes, n=3, nq=2, length=10, d=16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, m, d, generator=g).to(dt) for m, dt in zip((nq, length, length), dtypes)]


@pytest.mark.parametrize(
    "dtypes,autocast,expected",
    [
        ((torch.float16, torch.float32, torch.float32), None, torch.float32),  # promoted
        ((torch.float32,) * 3, torch.bfloat16, torch.bfloat16),  # autocast's dtype
        ((torch.float16, torch.float32, torch.bfloat16), torch.float16, torch.float16),
        ((torch.bfloat16,) * 3, None, torch.bfloat16),
    ],
)
def test_fused_ops_get_one_dtype_the_way_autocast_runs_a_matmul(
    stand_in, dtypes, autocast, expected
):
    q, k, v = qkv(dtypes)
    sem = torch.randn(3, 2, 16).to(dtypes[-1])
    resp = torch.randn(3, 5, 2, 16).to(dtypes[0])
    with (
        torch.no_grad(),
        torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=bool(autocast)),
    ):
        out, attn = qr_attention(q, k, v, 2, 0.25)
        agg, sal, coh = tracklet_link(resp, sem, 0.1)
    assert {call for call in stand_in.calls} == {
        ("qr_attention", expected),
        ("tracklet_link", expected),
    }
    assert {t.dtype for t in (out, attn, agg, sal, coh)} == {expected}
    ref_out, _ = qr_attention_reference(*(t.double() for t in (q, k, v)), 2, 0.25)
    assert (out.double() - ref_out).abs().max() < 0.05


def test_what_the_kernels_cannot_take_runs_the_reference(stand_in):
    q, k, v = qkv((torch.float64,) * 3)
    with torch.no_grad():
        qr_attention(q, k, v, 2, 0.25)  # float64
    q, k, v = qkv((torch.float32,) * 3)
    qr_attention(q, k, v, 2, 0.25)  # gradients on: training
    with torch.no_grad():
        tracklet_link(torch.randn(1, 1, 2, 16), torch.randn(1, 2, 16), 0.1)  # one frame
    assert stand_in.calls == []


def test_the_router_takes_the_faster_path_and_measures_once_per_key(stand_in, monkeypatch):
    from art_train import ops

    monkeypatch.setattr(ops, "elapsed_ms", timings(fused_ms=3.0, reference_ms=2.0))
    q, k, v = qkv((torch.float32,) * 3)
    with torch.no_grad():
        qr_attention(q, k, v, 2, 0.25)
        measured = len(stand_in.calls)  # a warm-up and a timed call
        for _ in range(3):
            qr_attention(q, k, v, 2, 0.25)
    assert measured == 2 and len(stand_in.calls) == 2  # the reference was faster: kept
    (decision,) = ops.ROUTER.decisions.values()
    assert decision == {"fused_ms": 3.0, "reference_ms": 2.0, "fused": False}
    monkeypatch.setenv("ART_FUSED_OPS", "1")  # forced on
    with torch.no_grad():
        qr_attention(q, k, v, 2, 0.25)
    assert len(stand_in.calls) == 3


def test_the_model_runs_under_autocast_through_the_fused_dispatch(stand_in):
    """The whole model in eval mode under autocast, as on a GPU: the fused ops get one dtype and
    the logits agree with the reference path's."""
    from art_train.model import create_model
    from art_train.ops import ROUTER

    torch.manual_seed(0)
    model = create_model("art-tiny", class_names=list("abcde")).eval()
    clips = torch.randn(2, model.cfg.num_frames, 3, model.cfg.image_size, model.cfg.image_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused = model(clips)["logits"].float()
    assert {op for op, _ in stand_in.calls} == {"qr_attention", "tracklet_link"}
    assert {dt for _, dt in stand_in.calls} == {torch.bfloat16}
    ROUTER.decisions.clear()
    os.environ["ART_FUSED_OPS"] = "0"
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            reference = model(clips)["logits"].float()
    finally:
        del os.environ["ART_FUSED_OPS"]
    assert fused.argmax(-1).tolist() == reference.argmax(-1).tolist()
    assert (fused - reference).abs().max() < 0.1


def test_ART_FUSED_OPS_is_read_at_every_call(monkeypatch):
    """A process that times the model with and without the kernels (gpu_check.py) switches with
    the variable: a first call with the kernels off must not switch them off for good."""
    import plugins.torch_ops as torch_ops

    built = object()
    monkeypatch.setattr(torch_ops, "_built_ops", lambda: built)
    monkeypatch.setenv("ART_FUSED_OPS", "0")
    assert torch_ops.fused_ops() is None
    monkeypatch.setenv("ART_FUSED_OPS", "auto")
    assert torch_ops.fused_ops() is built
