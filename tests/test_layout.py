"""The layout rules of shared/DESIGN.md, checked on the source: who may import whom (no import
circle; inside art_edge, layers), where the kernels' limits are defined, how long a function may
be."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("art_edge", "art_train", "calibration", "plugins", "benchmarks")
OWN = ("art_edge", "art_train", "calibration", "plugins")  # the packages, importable by name
MAX_FUNCTION_LINES = 60
# art_edge's layers, each importing only itself and those before it: the ground (the modules at
# art_edge's top but the front doors), the runtime, video, the rig, what serves it, the front doors.
LAYERS = ("ground", "runtime", "video", "rig", "serve", "front doors")
FRONT_DOORS = ("art_edge.api", "art_edge.cli")
MAX_TOP_MODULES = 8  # directly in art_edge/, __init__ included


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


def module_files() -> dict[str, Path]:
    """Every module of the project by its dotted name (benchmarks' by their file name, as they
    import each other)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[1:] if package == "benchmarks" else parts
            found[".".join(parts).removesuffix(".__init__") or package] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project's modules it imports, at its top or inside a function."""

    def resolve(name: str) -> str | None:  # a module, or the package an imported name is in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
        graph[module] = targets - {None, module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports (its modules, the first again at the end), or None."""
    state, path = {}, []  # state: 1 while on the path, 2 once every import below it is done

    def visit(module):
        state[module], path[len(path) :] = 1, [module]
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_circle():
    cycle = find_cycle(import_graph(module_files()))
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def layer_of(module: str) -> str:
    if module in FRONT_DOORS:
        return "front doors"
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in LAYERS else "ground"


def test_art_edge_is_in_layers():
    """A few modules at art_edge's top, every other one in a layer folder; each layer imports
    only itself and the layers below: the runtime never the rig, what serves it or the front
    doors; video never the rig or what serves it; the rig never what serves it or the front
    doors."""
    top = sorted(p.name for p in (ROOT / "art_edge").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly in art_edge/: {top}"
    folders = {p.relative_to(ROOT / "art_edge").parts[0] for p in (ROOT / "art_edge").rglob("*.py")}
    assert folders - set(top) <= set(LAYERS), "art_edge/ folders that are not layers"
    modules = {m: p for m, p in module_files().items() if m.startswith("art_edge")}
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in import_graph(modules).items()
        for target in sorted(targets)
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    ]
    assert not upward, "imports up the layers: " + "; ".join(upward)


def function_level_imports(path: Path) -> list[str]:
    """The imports inside a function or class of a file: (line, the module)."""
    found = []
    for scope in ast.walk(ast.parse(path.read_text())):
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for node in ast.walk(scope):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", ["art_edge", "calibration"])
def test_the_projects_own_modules_are_imported_at_the_top(package):
    """Only optional dependencies (TensorRT, paho-mqtt, uvicorn, …) are imported where used: a
    module of the project imported in a function hides an edge of the import graph."""
    hidden = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in function_level_imports(path)
        if name.split(".")[0] in OWN
    ]
    assert not hidden, "imports of the project's modules inside functions: " + "; ".join(hidden)
