"""One command that checks and measures the project on a CUDA GPU: benchmarks/results/gpu.json.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu.json] [--skip SECTION,...]

Sections (each runs even where one before it failed; the JSON says what failed and why):
- machine: GPU, driver, CUDA, torch, multiprocessors, L2, the device-to-device copy bandwidth;
- tests: `pytest -m gpu` (kernels against the reference; the model fused against reference in
  FP32, FP16 and BF16; art-train and art-eval --ckpt on CUDA);
- sanitizer: every kernel under compute-sanitizer's memcheck, racecheck, synccheck, initcheck;
- kernels: benchmarks/kernels.py (kernel time with L2 flushed and hot, the Python call apart, each
  kernel's floor and fraction_of_floor, unfused PyTorch and SDPA beside them);
- model (random weights): art-b16 (8 clips) and art-edge-s (32 clips), FP32 and FP16 autocast,
  with the reference ops, the fused ops as the model routes them (by measurement, the default)
  and forced on: clips/s and one-clip latency; the CLIP frame encoder alone (the bound the ART
  head adds to); a BF16 training step of art-b16;
- commands, as a user runs them on CUDA: art-synth, art-train (art-tiny, 2 epochs), art-eval
  --ckpt, art-build-engine --ckpt (INT8), torchrun --nproc_per_node=1 art-train.
Needs the training install (torch with CUDA, open_clip_torch, timm) and nvcc for the fused ops.
Without a GPU it says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchlib import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("machine", "tests", "sanitizer", "kernels", "model", "commands")
SANITIZER_TOOLS = {
    "memcheck": [],
    "racecheck": ["small"],
    "synccheck": ["small"],
    "initcheck": ["small"],
}
MODELS = {"art-b16": 8, "art-edge-s": 32}  # config → clips a batch
ROUTES = {"reference": "0", "routed": "auto", "fused": "1"}  # ART_FUSED_OPS
NEEDED = ("open_clip", "timm", "safetensors", "onnx", "onnxruntime", "cv2")


# ----------------------------------------------------------------------------- the machine


def nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def machine(torch) -> dict:
    from kernels import copy_bandwidth_gbs

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "l2_mb": round(props.L2_cache_size / 2**20, 1),
        "memory_gb": round(props.total_memory / 1e9, 1),
        "driver": nvidia_smi("driver_version"),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "copy_bandwidth_gbs": round(copy_bandwidth_gbs(torch), 1),
    }


def missing_packages() -> list[str]:
    import importlib

    missing = []
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except Exception as e:  # an ImportError, or a package that fails as it loads
            missing.append(f"{name} ({type(e).__name__})")
    return missing


# ----------------------------------------------------------------------------- the GPU tests


def gpu_tests(_torch) -> dict:
    files = ["tests/plugins/test_plugins.py", "tests/art_train/test_cuda.py"]
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd + files, cwd=ROOT, capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last)}
    return {
        "command": "python -m pytest -m gpu -q -rs " + " ".join(files),
        "exit_code": proc.returncode,
        "summary": last,
        **counts,
        "failures": [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))],
    }


# ----------------------------------------------------------------------------- compute-sanitizer


def cuda_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(
        name, path=str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin")
    )
    if not found:
        raise FileNotFoundError(f"{name} is not on PATH nor in $CUDA_HOME/bin")
    return found


def sanitizer(_torch) -> dict:
    """plugins/tests/sanitizer_driver.cu (every kernel, every dtype, the tests' shapes) under each
    compute-sanitizer tool; the slow ones on the small shapes."""
    with tempfile.TemporaryDirectory(prefix="art-sanitizer-") as tmp:
        exe = Path(tmp) / "sanitizer_driver"
        sources = [
            ROOT / "plugins" / "tests" / "sanitizer_driver.cu",
            ROOT / "plugins" / "csrc" / "art_ops.cu",
        ]
        subprocess.run([cuda_tool("nvcc"), "-std=c++17", "-O2", "-arch=native", f"-I{ROOT / 'plugins' / 'csrc'}",
                        *map(str, sources), "-o", str(exe)], check=True, capture_output=True, timeout=300)  # fmt: skip
        rows = {}
        for tool, args in SANITIZER_TOOLS.items():
            cmd = [
                cuda_tool("compute-sanitizer"),
                "--tool",
                tool,
                "--error-exitcode",
                "1",
                str(exe),
                *args,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            summary = [ln for ln in proc.stdout.splitlines() if "SUMMARY" in ln]
            rows[tool] = {
                "exit_code": proc.returncode,
                "summary": summary[-1] if summary else proc.stdout[-300:],
            }
            print(f"compute-sanitizer {tool:<10} exit {proc.returncode}  {rows[tool]['summary']}")
        return rows


# ----------------------------------------------------------------------------- the model


def seconds_per_call(torch, fn, repeats: int = 10) -> float:
    """Median wall seconds of fn, the device synchronised after each call (what a caller waits)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inference(torch, model, clips, dtype: str, route: str, repeats: int) -> dict:
    """clips/s of a batch and the one-clip latency, with the ops routed as ART_FUSED_OPS says."""
    from art_train.ops import ROUTER

    os.environ["ART_FUSED_OPS"] = ROUTES[route]
    ROUTER.decisions.clear()
    kind = clips.device.type
    run = lambda x: model(x)["logits"]  # noqa: E731
    with torch.no_grad(), torch.autocast(kind, dtype=torch.float16, enabled=dtype == "float16"):
        batch_s = seconds_per_call(torch, lambda: run(clips), repeats)
        one_s = seconds_per_call(torch, lambda: run(clips[:1]), repeats)
    row = {"clips_per_s": len(clips) / batch_s, "one_clip_ms": one_s * 1000}
    if route == "routed":
        row["decisions"] = [
            {"op": key[0], "shapes": [list(s) for s in key[3:-1]], **value}
            for key, value in ROUTER.decisions.items()
        ]
    return row


def encoder_alone(torch, model, clips, dtype: str, repeats: int) -> float:
    """clips/s of the CLIP frame encoder alone on the same frames (the bound ART's head adds to)."""
    frames = clips.flatten(0, 1)
    kind = clips.device.type
    with torch.no_grad(), torch.autocast(kind, dtype=torch.float16, enabled=dtype == "float16"):
        seconds = seconds_per_call(torch, lambda: model.encode_frames(frames), repeats)
    return len(clips) / seconds


def model_figures(torch, name: str, batch: int, device: str = "cuda", dtypes=("float32", "float16"),
                  repeats: int = 10, size: int | None = None) -> dict:  # fmt: skip
    """One config, random weights: every route in every dtype, the encoder alone, the ratios."""
    from art_train.model import create_model

    torch.manual_seed(0)
    overrides = {"image_size": size} if size else {}
    model = create_model(name, [f"class {i}" for i in range(10)], **overrides).to(device).eval()
    cfg = model.cfg
    clips = torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
    out = {"batch": batch, "frames": cfg.num_frames, "image_size": cfg.image_size}
    for dtype in dtypes:
        row = {route: inference(torch, model, clips, dtype, route, repeats) for route in ROUTES}
        row["encoder_alone_clips_per_s"] = encoder_alone(torch, model, clips, dtype, repeats)
        ref = row["reference"]["clips_per_s"]
        row["fused_over_reference"] = row["routed"]["clips_per_s"] / ref
        row["forced_fused_over_reference"] = row["fused"]["clips_per_s"] / ref
        out[dtype] = row
        print(
            f"{name:<11} {dtype:<8} reference {ref:8.1f} clips/s  routed {row['routed']['clips_per_s']:8.1f}"
            f" (×{row['fused_over_reference']:.2f})  forced fused ×{row['forced_fused_over_reference']:.2f}"
            f"  encoder alone {row['encoder_alone_clips_per_s']:8.1f}  one clip "
            f"{row['routed']['one_clip_ms']:.1f} ms"
        )
    os.environ.pop("ART_FUSED_OPS", None)
    return out


def training_step(torch, name: str = "art-b16", batch: int = 8, device: str = "cuda",
                  steps: int = 5, size: int | None = None) -> dict:  # fmt: skip
    """clips/s of art-train's own step (forward, losses, backward, clipping; BF16 autocast on a
    GPU) plus the optimizer's, on random clips."""
    from types import SimpleNamespace

    from art_train.configs import get_config
    from art_train.model import create_model
    from art_train.train import train_step

    torch.manual_seed(0)
    overrides = {"image_size": size} if size else {}
    model = create_model(name, [f"class {i}" for i in range(10)], **overrides).to(device).train()
    tcfg = get_config(name)[1]
    cfg = model.cfg
    clips = torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
    labels = torch.arange(batch, device=device) % 10
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    place = SimpleNamespace(device=torch.device(device))

    def step():
        optimizer.zero_grad(set_to_none=True)
        train_step(model, model, clips, labels, tcfg, place, measure=False)
        optimizer.step()

    seconds = seconds_per_call(torch, step, steps)
    return {"config": name, "batch": batch, "step_ms": seconds * 1000, "clips_per_s": batch / seconds,
            "precision": "bf16 autocast" if device.startswith("cuda") else "fp32"}  # fmt: skip


def model_section(torch) -> dict:
    out = {name: model_figures(torch, name, batch) for name, batch in MODELS.items()}
    out["training_step"] = training_step(torch)
    print(f"training step art-b16 BF16: {out['training_step']['clips_per_s']:.1f} clips/s")
    return out


# ----------------------------------------------------------------------------- the commands


def run_command(name: str, args: list, shown: str, timeout: int = 600) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    row = {
        "command": shown,
        "exit_code": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{name:<12} exit {proc.returncode}  {row['seconds']:6.1f} s  {shown}")
    return row | {"last_lines": tail}


def user_commands(work: Path, device: str = "cuda") -> dict:
    """The smoke run: each command as `python -m` of its module (what the console script runs)."""
    py, data, run, engine = sys.executable, work / "data", work / "run", work / "engine"
    lists = [
        "--train",
        data / "train.csv",
        "--val",
        data / "val.csv",
        "--classes",
        data / "classes.txt",
    ]
    steps = {
        "art-synth": ["-m", "art_edge.synthetic", "--out", data, "--per-class", 4, "--val-per-class", 2,
                      "--classes", 4, "--size", 64, "--frames", 16],
        "art-train": ["-m", "art_train.train", "--config", "art-tiny", *lists, "--out", run,
                      "--epochs", 2, "--device", device],
        "art-eval": ["-m", "art_train.evaluate", "--ckpt", run, "--val", data / "val.csv",
                     "--classes", data / "classes.txt", "--json"],
        "art-build-engine": ["-m", "art_train.build_engine", "--ckpt", run, "--out", engine,
                             "--precision", "int8", "--calib", data / "train.csv", "--holdout",
                             data / "val.csv", "--auto-exclude", 3, "--max-drop", 25],
        "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node=1", "-m", "art_train.train",
                     "--config", "art-tiny", *lists, "--out", work / "ddp", "--epochs", 2,
                     "--device", device],
    }  # fmt: skip
    shown = lambda name, args: " ".join(map(str, [name, *args[2:]]))  # noqa: E731  (no -m module)
    return {name: run_command(name, [py, *args], shown(name, args)) for name, args in steps.items()}


def commands_section(_torch) -> dict:
    with tempfile.TemporaryDirectory(prefix="art-gpu-check-") as tmp:
        return user_commands(Path(tmp))


# ----------------------------------------------------------------------------- the run


def run_sections(torch, skip: set) -> tuple[dict, dict]:
    from plugins.torch_ops import FusedOps, build_extension

    from kernels import kernel_figures

    report, errors = {}, {}
    steps = {
        "machine": machine,
        "tests": gpu_tests,
        "sanitizer": sanitizer,
        "kernels": lambda t: kernel_figures(
            t, FusedOps(build_extension()), report["machine"]["copy_bandwidth_gbs"]
        ),
        "model": model_section,
        "commands": commands_section,
    }
    for name, step in steps.items():
        if name in skip:
            continue
        print(f"--- {name}", flush=True)
        try:
            report[name] = step(torch)
        except Exception as e:  # one section's failure must not lose the others' figures
            errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(
                f"{name} failed: {errors[name]}\n{traceback.format_exc()[-2000:]}", file=sys.stderr
            )
    return report, errors


def failed(report: dict, errors: dict) -> list[str]:
    """What did not pass: a section, the GPU tests, a command."""
    bad = [f"section {name}" for name in errors]
    tests = report.get("tests", {})
    if tests and tests["exit_code"] != 0:
        bad.append(f"GPU tests ({tests['summary']})")
    for name, row in report.get("sanitizer", {}).items():
        if row["exit_code"] != 0:
            bad.append(f"compute-sanitizer {name}")
    for name, row in report.get("commands", {}).items():
        if row["exit_code"] != 0:
            bad.append(f"command {name}")
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "gpu.json"))
    ap.add_argument(
        "--skip", default="", help=f"sections to leave out, comma-separated: {', '.join(SECTIONS)}"
    )
    a = ap.parse_args(argv)
    skip = {s for s in a.skip.split(",") if s}
    if skip - set(SECTIONS) or "machine" in skip:
        print(f"error: --skip takes {', '.join(SECTIONS[1:])}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(
            "error: benchmarks/gpu_check.py needs an NVIDIA GPU with CUDA (torch sees none)",
            file=sys.stderr,
        )
        return 2
    missing = missing_packages()
    if missing:
        print(
            f"warning: not importable here: {', '.join(missing)}; the model and command sections need them"
        )
    t0 = time.perf_counter()
    report, errors = run_sections(torch, skip)
    bad = failed(report, errors)
    doc = {"benchmark": "gpu_check", "date": time.strftime("%Y-%m-%d"), **report,
           "errors": errors, "not_passed": bad, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_result(a.out, doc)
    print(
        json.dumps(
            {
                "gpu": report.get("machine", {}).get("gpu"),
                "not_passed": bad,
                "seconds": doc["seconds"],
            }
        )
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
