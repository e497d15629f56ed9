"""One command that checks and measures the project on a CUDA GPU: benchmarks/results/gpu.json.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu.json] [--skip SECTION,...]
                                   [--budget SECONDS]

Sections, each in a process of its own (a CUDA error in one cannot break the others), each given
the time left of the budget (default 450 s); the JSON is rewritten after every section and says
what failed, or ran out of time, and why:
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

ROOT = Path(__file__).resolve().parents[1]
# The repository itself: on a GPU machine its own Python runs the project from the clone.
sys.path.insert(0, str(ROOT))

from benchlib import RESULTS, write_result  # noqa: E402

SECTIONS = ("machine", "tests", "kernels", "model", "sanitizer", "commands")
BUDGET_S = 450  # the whole run, under 8 minutes
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


def machine(torch, _seconds=None) -> dict:
    from kernels import copy_bandwidth_gbs, gpu_warmup

    gpu_warmup(torch)
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


def child_env() -> dict:
    """Every core for the CPU side (tests/conftest.py otherwise keeps 2), the repository on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(
        os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 2), PYTHONPATH=path, PYTHONUNBUFFERED="1"
    )


def gpu_tests(_torch, seconds: float) -> dict:
    files = ["tests/plugins/test_plugins.py", "tests/art_train/test_cuda.py"]
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        cmd + files, cwd=ROOT, capture_output=True, text=True, timeout=seconds, env=child_env()
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?)", last)
    counts = {("errors" if k.startswith("error") else k): int(v) for v, k in found}
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


def build_sanitizer_driver(exe: Path):
    sources = [
        ROOT / "plugins" / "tests" / "sanitizer_driver.cu",
        ROOT / "plugins" / "csrc" / "art_ops.cu",
    ]
    cmd = [cuda_tool("nvcc"), "-std=c++17", "-O2", "-arch=native", f"-I{ROOT / 'plugins' / 'csrc'}",
           *map(str, sources), "-o", str(exe)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc could not build the sanitizer driver: {proc.stderr[-2000:]}")


def sanitizer_row(tool: str, proc) -> dict:
    """Exit code and summary line; `unsupported` where the tool cannot attach to this GPU (some
    virtualised machines), which says nothing about the kernels."""
    text = proc.stdout + proc.stderr
    summary = [ln for ln in text.splitlines() if "SUMMARY" in ln]
    if not summary and ("not supported" in text.lower() or "unsupported" in text.lower()):
        return {
            "exit_code": proc.returncode,
            "status": "unsupported",
            "summary": text.strip()[-300:],
        }
    return {
        "exit_code": proc.returncode,
        "status": "ran",
        "summary": summary[-1] if summary else text[-300:],
    }


def sanitizer(_torch, seconds: float) -> dict:
    """plugins/tests/sanitizer_driver.cu (every kernel, every dtype, the tests' shapes) under each
    compute-sanitizer tool; the slow ones on the small shapes."""
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="art-sanitizer-") as tmp:
        exe = Path(tmp) / "sanitizer_driver"
        build_sanitizer_driver(exe)
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
            left = max(1.0, deadline - time.monotonic())
            rows[tool] = sanitizer_row(
                tool, subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            )
            print(
                f"compute-sanitizer {tool:<10} exit {rows[tool]['exit_code']}  {rows[tool]['summary']}"
            )
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


def route_seconds(torch, model, x, dtype: str, route: str, repeats: int) -> float:
    """Median seconds of one forward on x with the ops routed as ART_FUSED_OPS says."""
    previous = os.environ.get("ART_FUSED_OPS")
    os.environ["ART_FUSED_OPS"] = ROUTES[route]
    kind = x.device.type
    try:
        with torch.no_grad(), torch.autocast(kind, dtype=torch.float16, enabled=dtype == "float16"):
            return seconds_per_call(torch, lambda: model(x)["logits"], repeats)
    finally:  # the commands' processes must not inherit a route
        if previous is None:
            del os.environ["ART_FUSED_OPS"]
        else:
            os.environ["ART_FUSED_OPS"] = previous


def routes_side_by_side(torch, model, clips, dtype: str, repeats: int) -> dict:
    """Every route on the whole batch and on one clip, in alternating order (half the repeats
    each way), so that none is favoured by going first; the router's choices of the routed one."""
    from art_train.ops import ROUTER

    ROUTER.decisions.clear()
    half = max(1, repeats // 2)
    samples = {route: {"batch": [], "one": []} for route in ROUTES}
    for order in (list(ROUTES), list(reversed(ROUTES))):
        for route in order:
            samples[route]["batch"].append(route_seconds(torch, model, clips, dtype, route, half))
            samples[route]["one"].append(route_seconds(torch, model, clips[:1], dtype, route, half))
    rows = {}
    for route, got in samples.items():
        rows[route] = {"clips_per_s": len(clips) / statistics.mean(got["batch"]),
                       "one_clip_ms": statistics.mean(got["one"]) * 1000}  # fmt: skip
    rows["routed"]["decisions"] = [
        {"op": key[0], "shapes": [list(s) for s in key[3:-1]], **value}
        for key, value in ROUTER.decisions.items()
    ]
    return rows


def encoder_alone(torch, model, clips, dtype: str, repeats: int) -> float:
    """clips/s of the CLIP frame encoder alone on the same frames (the bound ART's head adds to)."""
    frames = clips.flatten(0, 1)
    kind = clips.device.type
    with torch.no_grad(), torch.autocast(kind, dtype=torch.float16, enabled=dtype == "float16"):
        seconds = seconds_per_call(torch, lambda: model.encode_frames(frames), repeats)
    return len(clips) / seconds


def random_model(torch, name: str, device: str, size: int | None = None):
    from art_train.model import create_model

    torch.manual_seed(0)
    overrides = {"image_size": size} if size else {}
    return create_model(name, [f"class {i}" for i in range(10)], **overrides).to(device)


def model_figures(
    torch, model, batch: int, dtypes=("float32", "float16"), repeats: int = 10
) -> dict:
    """One model, random weights: every route in every dtype, the encoder alone, the ratios."""
    cfg, device = model.cfg, next(model.parameters()).device
    model.eval()
    clips = torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
    out = {"batch": batch, "frames": cfg.num_frames, "image_size": cfg.image_size}
    for dtype in dtypes:
        row = routes_side_by_side(torch, model, clips, dtype, repeats)
        row["encoder_alone_clips_per_s"] = encoder_alone(torch, model, clips, dtype, repeats)
        ref = row["reference"]["clips_per_s"]
        row["fused_over_reference"] = row["routed"]["clips_per_s"] / ref
        row["forced_fused_over_reference"] = row["fused"]["clips_per_s"] / ref
        out[dtype] = row
        print(
            f"{cfg.name:<11} {dtype:<8} reference {ref:8.1f} clips/s  routed {row['routed']['clips_per_s']:8.1f}"
            f" (×{row['fused_over_reference']:.2f})  forced fused ×{row['forced_fused_over_reference']:.2f}"
            f"  encoder alone {row['encoder_alone_clips_per_s']:8.1f}  one clip "
            f"{row['routed']['one_clip_ms']:.1f} ms"
        )
    return out


def training_step(torch, model, batch: int = 8, steps: int = 5) -> dict:
    """clips/s of art-train's own step (forward, losses, backward, clipping; BF16 autocast on a
    GPU) plus the optimizer's, on random clips."""
    from types import SimpleNamespace

    from art_train.configs import get_config
    from art_train.train import train_step

    cfg, device = model.cfg, next(model.parameters()).device
    model.train()
    tcfg = get_config(cfg.name)[1]
    clips = torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
    labels = torch.arange(batch, device=device) % cfg.num_classes
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    place = SimpleNamespace(device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        train_step(model, model, clips, labels, tcfg, place, measure=False)
        optimizer.step()

    seconds = seconds_per_call(torch, step, steps)
    return {"config": cfg.name, "batch": batch, "step_ms": seconds * 1000, "clips_per_s": batch / seconds,
            "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}  # fmt: skip


def model_section(torch, _seconds=None) -> dict:
    from kernels import gpu_warmup

    gpu_warmup(torch)
    out = {}
    for name, batch in MODELS.items():
        try:
            model = random_model(torch, name, "cuda")
            out[name] = model_figures(torch, model, batch)
            if name == "art-b16":
                out["training_step"] = training_step(torch, model)
                print(
                    f"training step art-b16 BF16: {out['training_step']['clips_per_s']:.1f} clips/s"
                )
        except Exception as e:  # one model's failure (memory, say) must not lose the other's
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name} failed: {out[name]['error']}", file=sys.stderr)
        torch.cuda.empty_cache()
    return out


# ----------------------------------------------------------------------------- the commands


def run_command(name: str, args: list, shown: str, timeout: float = 600) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=child_env(),
    )  # fmt: skip
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    row = {
        "command": shown,
        "exit_code": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{name:<12} exit {proc.returncode}  {row['seconds']:6.1f} s  {shown}")
    return row | {"last_lines": tail}


def user_commands(work: Path, device: str = "cuda", seconds: float = 600) -> dict:
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
                     "--config", "art-tiny", *lists, "--out", work / "ddp", "--epochs", 1,
                     "--device", device],
    }  # fmt: skip
    shown = lambda name, args: " ".join(map(str, [name, *args[2:]]))  # noqa: E731  (no -m module)
    deadline, rows = time.monotonic() + seconds, {}
    for name, args in steps.items():
        left = max(1.0, deadline - time.monotonic())
        rows[name] = run_command(name, [py, *args], shown(name, args), left)
    return rows


def commands_section(_torch, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="art-gpu-check-") as tmp:
        return user_commands(Path(tmp), seconds=seconds)


# ----------------------------------------------------------------------------- the run


def kernels_section(torch, _seconds=None) -> dict:
    from plugins.torch_ops import FusedOps, build_extension

    from kernels import copy_bandwidth_gbs, gpu_warmup, kernel_figures

    gpu_warmup(torch)
    ops = FusedOps(build_extension())
    return kernel_figures(torch, ops, copy_bandwidth_gbs(torch))


STEPS = {
    "machine": machine,
    "tests": gpu_tests,
    "kernels": kernels_section,
    "model": model_section,
    "sanitizer": sanitizer,
    "commands": commands_section,
}


def run_child(name: str, seconds: float, out: Path) -> None:
    """One section in this process (started by the parent with --section): its result or its
    error, as JSON in `out`."""
    import torch

    try:
        doc = {"result": STEPS[name](torch, seconds)}
    except Exception as e:
        doc = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        print(f"{name} failed: {doc['error']}\n{traceback.format_exc()[-2000:]}", file=sys.stderr)
    out.write_text(json.dumps(doc))


def run_section(name: str, seconds: float) -> dict:
    """A section in a child process given `seconds`; → {"result": …} or {"error": …}."""
    with tempfile.TemporaryDirectory(prefix="art-gpu-section-") as tmp:
        out = Path(tmp) / "section.json"
        args = [sys.executable, str(Path(__file__).resolve()), "--section", name,
                "--section-out", str(out), "--budget", str(int(seconds))]  # fmt: skip
        try:
            subprocess.run(args, cwd=ROOT, env=child_env(), timeout=seconds + 15)
        except subprocess.TimeoutExpired:
            return {"error": f"out of time ({seconds:.0f} s left for it)"}
        if not out.is_file():
            return {"error": "its process ended without a result (a crash: see the output above)"}
        return json.loads(out.read_text())


def failed(report: dict, errors: dict) -> list[str]:
    """What did not pass: a section, the GPU tests, a compute-sanitizer tool, a command."""
    bad = [f"section {name}" for name in errors]
    tests = report.get("tests", {})
    if tests and tests["exit_code"] != 0:
        bad.append(f"GPU tests ({tests['summary']})")
    for name, row in report.get("sanitizer", {}).items():
        if row["exit_code"] != 0 and row.get("status") != "unsupported":
            bad.append(f"compute-sanitizer {name}")
    for name, row in report.get("commands", {}).items():
        if row["exit_code"] != 0:
            bad.append(f"command {name}")
    return bad


def run_all(skip: set, budget: float, out: str) -> list[str]:
    """Every section not skipped, each in its own process, the JSON rewritten after each."""
    start = time.monotonic()
    report, errors = {}, {}
    for name in SECTIONS:
        if name in skip:
            continue
        left = budget - (time.monotonic() - start)
        print(f"--- {name} ({left:.0f} s left)", flush=True)
        got = run_section(name, left) if left > 5 else {"error": "out of time before it started"}
        if "result" in got:
            report[name] = got["result"]
        else:
            errors[name] = got["error"]
        doc = {"benchmark": "gpu_check", "date": time.strftime("%Y-%m-%d"), **report,
               "errors": errors, "not_passed": failed(report, errors),
               "seconds": round(time.monotonic() - start, 1)}  # fmt: skip
        write_result(out, doc)
    return doc["not_passed"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "gpu.json"))
    ap.add_argument(
        "--skip",
        default="",
        help=f"sections to leave out, comma-separated: {', '.join(SECTIONS[1:])}",
    )
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    ap.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # a child's one section
    ap.add_argument("--section-out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.section:
        run_child(a.section, a.budget, Path(a.section_out))
        return 0
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
    bad = run_all(skip, a.budget, a.out)
    print(json.dumps({"not_passed": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
