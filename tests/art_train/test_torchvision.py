"""open_clip imports torchvision; art_train/clip.py must work with both torchvisions a user has:
one whose C++ extension loads (every CUDA machine with the matching torchvision: its own
registration of torchvision::nms must be the only one, or the process aborts) and one whose
extension cannot load beside this torch (the CPU machines here: stand-in schemas, then retry)."""

import os
import subprocess
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "torchvision_standin"
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, torch
from art_train import clip
clip.import_open_clip()
import torchvision
print("standin" if getattr(torchvision, "STANDIN_REGISTERED", False) else "installed",
      len(clip._SHIM_LIBS), hasattr(torch.ops.torchvision, "nms"))
"""


def run(code_or_args, standin: bool, timeout=300):
    env = dict(os.environ)
    if standin:
        env["PYTHONPATH"] = os.pathsep.join([str(STANDIN), str(ROOT)])
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def test_a_torchvision_whose_extension_loads_registers_its_own_ops():
    proc = run(PROBE, standin=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["standin", "0", "True"]  # no schema of ours beside its own


def test_a_torchvision_whose_extension_cannot_load_gets_the_two_schemas():
    proc = run(PROBE, standin=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["installed", "1", "True"]


def test_the_standin_aborts_like_the_real_extension_when_the_schema_exists():
    """The stand-in can fail: with the schemas defined first (what art_train/clip.py used to do),
    its import ends the process the way the real extension's registration does."""
    code = (
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'DEF')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "import torchvision\n"
    )
    proc = run(code, standin=True)
    assert proc.returncode == -6, proc.stderr[-2000:]  # SIGABRT, exit 134 in a shell
    assert "c10::Error" in proc.stderr


def test_art_train_runs_an_epoch_beside_a_torchvision_whose_extension_loads(
    synth_args, small_args, tmp_path
):
    args = ["-m", "art_train.train", "--config", "art-tiny", *map(str, synth_args)]
    args += ["--out", str(tmp_path / "run"), *small_args, "--epochs", "1"]
    proc = run(args, standin=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
