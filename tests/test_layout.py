"""The layout rules of shared/DESIGN.md, checked on the source: who may import whom, where the
kernels' limits are defined, how long a function may be."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("art_edge", "art_train", "calibration", "plugins", "benchmarks")
MAX_FUNCTION_LINES = 60


def imported_modules(package: str) -> dict[str, set[str]]:
    """file → the top-level module of every import in it (lazy imports inside functions included)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("art_edge", {"torch", "art_train", "calibration", "plugins"}),  # the ground floor
        ("calibration", {"torch", "art_train"}),  # runs on the edge install
    ],
)
def test_import_rule(package, forbidden):
    offenders = {f: sorted(names & forbidden) for f, names in imported_modules(package).items()}
    assert not {f: n for f, n in offenders.items() if n}, (
        f"{package} must never import {sorted(forbidden)}"
    )


@pytest.mark.parametrize(
    "module",
    [
        "art_train",
        "art_edge.synthetic",
        "art_train.adapters",
        "art_train.evaluate",
        "calibration.build",
    ],
)
def test_modules_that_the_edge_install_runs_do_not_load_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_kernel_limits_agree_between_python_and_the_c_header():
    import plugins

    header = (ROOT / "plugins" / "csrc" / "art_ops.h").read_text()
    c_values = {m[0]: int(m[1]) for m in re.findall(r"#define ART_(\w+_MAX_\w+) (\d+)", header)}
    py_values = {name: getattr(plugins, name) for name in dir(plugins) if "_MAX_" in name}
    assert c_values and c_values == py_values


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                        long.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - start + 1} lines)"
                        )
    assert not long, "functions over 60 lines: " + "; ".join(long)


def test_no_generated_file_is_committed():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: nothing to check")
    generated = [
        f
        for f in tracked
        if re.search(r"onnxruntime_profile__|\.onnx$|\.engine$|\.pyc$|\.part\.", f)
    ]
    assert not generated
