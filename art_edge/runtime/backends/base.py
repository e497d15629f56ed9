"""The runner protocol every backend implements."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from art_edge.errors import UserError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or None for a dynamic dimension
    dtype: np.dtype


class Runner:
    """activate() → infer(feeds) → deactivate(); a context manager; `inference_time` is the
    seconds the last infer() spent in the backend. Feeds are checked against the model's inputs
    (names, ranks, fixed dimensions, dtypes) before they reach the backend, so a wrong feed is one
    clear error rather than a backend trace."""

    name = "runner"

    def __init__(self):
        self.is_active = False
        self.inference_time = 0.0

    # -- subclasses implement these
    def _activate(self):
        raise NotImplementedError

    def _deactivate(self):
        pass

    def _infer(self, feeds: dict) -> dict:
        raise NotImplementedError

    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        raise NotImplementedError

    # -- the protocol
    def activate(self):
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self):
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def infer(self, feeds: dict) -> dict:
        if not self.is_active:
            raise UserError(
                f"{self.name}: call activate() (or use it in a with block) before infer()"
            )
        self.validate(feeds)
        start = time.perf_counter()
        out = self._infer(feeds)
        self.inference_time = time.perf_counter() - start
        return out

    def validate(self, feeds: dict):
        specs = {s.name: s for s in self.input_specs()}
        missing, extra = sorted(set(specs) - set(feeds)), sorted(set(feeds) - set(specs))
        if missing or extra:
            raise UserError(
                f"{self.name}: feeds must be exactly {sorted(specs)}; missing {missing}, unexpected {extra}"
            )
        for name, spec in specs.items():
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                raise UserError(
                    f"{self.name}: feed {name!r} must be a numpy array, got {type(value).__name__}"
                )
            if value.dtype != spec.dtype:
                raise UserError(
                    f"{self.name}: feed {name!r} must be {spec.dtype}, got {value.dtype}"
                )
            if value.ndim != len(spec.shape) or any(
                w is not None and w != g for w, g in zip(spec.shape, value.shape)
            ):
                want = "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"
                raise UserError(
                    f"{self.name}: feed {name!r} has shape {list(value.shape)}, the model takes {want}"
                )
