"""The model and the commands on a CUDA GPU, as a user with a CUDA workstation runs them: the whole
model in eval mode in FP32 and under float16 and bfloat16 autocast, the fused CUDA ops against
the PyTorch reference ops; art-train for two epochs and art-eval --ckpt on the GPU. Marked `gpu`;
without a GPU each says so and skips (benchmarks/gpu_check.py runs them on a GPU machine)."""

import json

import pytest
import torch

pytestmark = pytest.mark.gpu

# largest logit difference, fused against reference, relative to the logits' scale
TOLERANCE = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 1e-1}


def need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the model and commands on a GPU need one")


@pytest.fixture
def counted_fused_calls(monkeypatch):
    """How often the fused CUDA ops ran (they must, where ART_FUSED_OPS=1)."""
    need_cuda()
    from plugins.torch_ops import FusedOps, fused_ops

    if fused_ops() is None:
        pytest.fail("a GPU is present but the fused-op extension did not build (see the warning)")
    calls = {"qr_attention": 0, "tracklet_link": 0}
    for name in calls:
        original = getattr(FusedOps, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FusedOps, name, counted)
    return calls


def logits(model, clips, dtype, fused: bool, monkeypatch):
    monkeypatch.setenv("ART_FUSED_OPS", "1" if fused else "0")
    autocast = dtype != "float32"
    with torch.no_grad(), torch.autocast("cuda", dtype=getattr(torch, dtype), enabled=autocast):
        return model(clips)["logits"].float()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name,batch", [("art-tiny", 8), ("art-edge-s", 4)])
def test_the_model_on_cuda_fused_against_reference(
    name, batch, dtype, counted_fused_calls, monkeypatch
):
    need_cuda()
    from art_train.model import create_model

    torch.manual_seed(0)
    model = create_model(name, class_names=[f"c{i}" for i in range(6)]).cuda().eval()
    size, frames = model.cfg.image_size, model.cfg.num_frames
    clips = torch.randn(batch, frames, 3, size, size, device="cuda")
    reference = logits(model, clips, dtype, fused=False, monkeypatch=monkeypatch)
    fused = logits(model, clips, dtype, fused=True, monkeypatch=monkeypatch)
    assert counted_fused_calls["qr_attention"] > 0 and counted_fused_calls["tracklet_link"] > 0
    scale = max(1.0, reference.abs().max().item())
    worst = (fused - reference).abs().max().item()
    assert worst <= TOLERANCE[dtype] * scale, f"{name} {dtype}: logits differ by {worst}"
    # same top-1 wherever the reference's top two are further apart than the tolerance
    top2 = reference.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * TOLERANCE[dtype] * scale
    assert torch.equal(fused.argmax(-1)[clear], reference.argmax(-1)[clear])


def test_art_train_two_epochs_and_art_eval_on_cuda(synth, train_run, tmp_path, capsys):
    need_cuda()
    from art_train import evaluate

    run = tmp_path / "run"
    assert train_run(synth, run, "--epochs", 2, "--device", "cuda") == 0
    log = capsys.readouterr()
    assert "process(es) on cuda" in log.out + log.err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    args = ["--ckpt", run, "--val", synth / "val.csv", "--classes", synth / "classes.txt"]
    args += ["--batch-size", 2, "--json"]
    assert evaluate.main([str(a) for a in args]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["device"].startswith("cuda") and report["precision"] == "fp16 autocast"
    assert report["n"] == 8 and report["clips_per_s"] > 0
