"""TensorRT backend: deserialize an engine, bind named I/O tensors, run on a CUDA stream.

Written against the documented TensorRT 10 Python API (name-based tensors, execute_async_v3) and
cuda-python's runtime bindings. TensorRT cannot be installed where this project is developed, so
this file is kept thin and is NOT exercised by the test suite there; its tests skip with a reason.
Both imports are lazy: a CPU install never needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from art_edge.errors import UserError
from art_edge.runtime.backends.base import Runner, TensorSpec


def cuda_runtime():
    """cuda-python's runtime bindings (the runner's memory and streams, the engine build's GPU
    query), whichever module this cuda-python version keeps them in."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python ≥ 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise UserError(
                "the TensorRT backend needs cuda-python: pip install cuda-python"
            ) from None
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def import_tensorrt():
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        raise UserError(
            f"TensorRT is not installed or cannot load ({e}); use --backend onnxruntime"
        ) from None
    return trt


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path, plugin_library: str | None = None):
        super().__init__()
        self.engine_path = Path(engine_path)
        self.plugin_library = plugin_library
        self.engine = self.context = self.stream = None
        self._device_buffers: dict[str, tuple[int, int]] = {}  # name → (pointer, bytes)

    def _activate(self):
        trt = import_tensorrt()
        self.cudart = cuda_runtime()
        logger = trt.Logger(trt.Logger.WARNING)
        if self.plugin_library:
            trt.get_plugin_registry().load_library(str(self.plugin_library))
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"TensorRT cannot deserialize {self.engine_path}: built for another GPU or TensorRT "
                "version? Rebuild it on this device with art-build-engine --backend tensorrt"
            )
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.trt = trt

    def _deactivate(self):
        for ptr, _ in self._device_buffers.values():
            self.cudart.cudaFree(ptr)
        self._device_buffers.clear()
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
        self.engine = self.context = self.stream = None

    def _names(self, mode):
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [n for n in names if self.engine.get_tensor_mode(n) == mode]

    def input_specs(self):
        return [
            TensorSpec(
                n,
                tuple(None if d < 0 else d for d in self.engine.get_tensor_shape(n)),
                np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))),
            )
            for n in self._names(self.trt.TensorIOMode.INPUT)
        ]

    def output_names(self):
        return self._names(self.trt.TensorIOMode.OUTPUT)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device_buffers.get(name, (0, 0))
        if size < nbytes:  # grow only: steady-state inference allocates nothing
            if ptr:
                self.cudart.cudaFree(ptr)
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._device_buffers[name] = (ptr, nbytes)
        return ptr

    def _infer(self, feeds):
        cudart, h2d, d2h = self.cudart, 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
        for name, value in feeds.items():
            value = np.ascontiguousarray(value)
            self.context.set_input_shape(name, value.shape)
            ptr = self._buffer(name, value.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, value.ctypes.data, value.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        outputs = {}
        for name in self.output_names():
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = np.empty(
                shape, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name))
            )
            self.context.set_tensor_address(name, self._buffer(name, max(1, outputs[name].nbytes)))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name, host in outputs.items():
            _check(
                cudart.cudaMemcpyAsync(
                    host.ctypes.data, self._device_buffers[name][0], host.nbytes, d2h, self.stream
                )
            )
        _check(cudart.cudaStreamSynchronize(self.stream))
        return outputs
