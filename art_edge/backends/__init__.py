"""Inference backends behind one runner protocol (Polygraphy style).

    with OnnxRuntimeRunner("clip_head.onnx") as runner:
        outputs = runner.infer({"patches": p, "frame_tokens": t})
        print(runner.inference_time)

TensorRT is imported lazily inside `TensorRTRunner`, so a CPU install never needs it.
"""

from art_edge.backends.base import Runner, TensorSpec  # noqa: F401
from art_edge.backends.onnxruntime import OnnxRuntimeRunner  # noqa: F401


def __getattr__(name):
    if name == "TensorRTRunner":
        from art_edge.backends.tensorrt import TensorRTRunner

        return TensorRTRunner
    raise AttributeError(name)
