"""Fixtures of the plugin tests: the kernels built for the host (plugins/emulation.py), and where
NVIDIA's published TensorRT headers and Python package are."""

import os
from pathlib import Path

import pytest

from plugins.emulation import SHIPPED_SOURCE, EmulationUnavailable, build_emulated

ROOT = Path(__file__).resolve().parents[2]


def _build(source: str, out_dir: Path, traced: bool = False) -> Path:
    try:
        return build_emulated(source, out_dir, traced)
    except EmulationUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def emulated_ops(tmp_path_factory) -> Path:
    """libart_ops_emu.so built from the shipped art_ops.cu."""
    return _build(SHIPPED_SOURCE.read_text(), tmp_path_factory.mktemp("emu"))


@pytest.fixture(scope="session")
def traced_ops(tmp_path_factory) -> Path:
    """libart_ops_emu.so of the shipped art_ops.cu whose global-memory traffic is counted."""
    return _build(SHIPPED_SOURCE.read_text(), tmp_path_factory.mktemp("traced"), traced=True)


@pytest.fixture(scope="session")
def build_kernel_copy(tmp_path_factory):
    """build_kernel_copy(source, traced=False) → a library built from another version of art_ops.cu."""
    return lambda source, traced=False: _build(source, tmp_path_factory.mktemp("mutant"), traced)


@pytest.fixture(scope="session")
def tensorrt_share() -> Path:
    """NVIDIA's TensorRT headers and tensorrt.plugin sources: shared/tensorrt beside the clone, or
    ART_TENSORRT_HEADERS."""
    return Path(os.environ.get("ART_TENSORRT_HEADERS", ROOT.parent / "shared" / "tensorrt"))
