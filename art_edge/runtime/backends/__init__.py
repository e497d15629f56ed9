"""Inference backends behind one runner protocol (Polygraphy style).

    with OnnxRuntimeRunner("clip_head.onnx") as runner:
        outputs = runner.infer({"patches": p, "frame_tokens": t})
        print(runner.inference_time)

TensorRT and cuda-python are imported inside `TensorRTRunner` when it activates, so a CPU install
never needs them.
"""

from art_edge.runtime.backends.base import Runner, TensorSpec  # noqa: F401
from art_edge.runtime.backends.onnxruntime import OnnxRuntimeRunner  # noqa: F401
from art_edge.runtime.backends.tensorrt import TensorRTRunner  # noqa: F401
