"""ONNX Runtime backend: CPU by default; CUDA/TensorRT execution providers when present."""

from __future__ import annotations

import numpy as np

from art_edge.errors import UserError
from art_edge.runtime.backends.base import Runner, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
}


def _dim(d):
    return d if isinstance(d, int) else None


def session_options(threads: int | None = None, optimize: bool = True, profile_dir=None):
    """The one definition of how this toolkit configures ONNX Runtime (the runner, the INT8 gate
    and the benchmarks all build their sessions here)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    # Fusions off when a caller reads intermediate tensors: a fused node would swallow them.
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    # No busy-waiting between ops: on a small CPU the spinning workers steal cores from the
    # capture thread and from anything else in the process (measured: benchmarks/runtime.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_dir is not None:  # profiles go where the caller says, never into the working folder
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_dir) + "/ort"
    return opts


def create_session(
    model, threads: int | None = None, providers=("CPUExecutionProvider",), **options
):
    """An InferenceSession from a path, serialized bytes or an in-memory ModelProto."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        sess_options=session_options(threads, **options),
        providers=list(providers),
    )


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path, threads: int | None = None, providers: list[str] | None = None):
        super().__init__()
        self.model_path = str(model_path)
        self.threads = threads
        self.providers = providers or ["CPUExecutionProvider"]
        self.session = None

    def _activate(self):
        import onnxruntime as ort

        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise UserError(
                f"onnxruntime here has no {missing}; available: {ort.get_available_providers()}"
            )
        try:
            self.session = create_session(self.model_path, self.threads, self.providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise UserError(
                f"onnxruntime cannot load {self.model_path}: {str(e).splitlines()[0]}"
            ) from None

    def _deactivate(self):
        self.session = None

    def input_specs(self):
        return [
            TensorSpec(
                i.name,
                tuple(_dim(d) for d in i.shape),
                _ORT_DTYPES.get(i.type, np.dtype(np.float32)),
            )
            for i in self.session.get_inputs()
        ]

    def output_names(self):
        return [o.name for o in self.session.get_outputs()]

    def _infer(self, feeds):
        names = self.output_names()
        return dict(zip(names, self.session.run(names, feeds)))
