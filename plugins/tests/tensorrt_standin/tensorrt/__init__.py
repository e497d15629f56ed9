"""A STAND-IN for TensorRT's compiled Python bindings (`import tensorrt`), for tests only.

Why it exists: TensorRT cannot be installed on the machines this project is tested on (its PyPI
packages download the libraries from a host they cannot reach), but NVIDIA publishes the pure-
Python `tensorrt.plugin` package in its open-source repository. To run plugins/trt_python.py
through NVIDIA's own package, that package needs the few compiled objects it imports: the
enums, PluginField and its collection, the tensor descriptors, the shape-expression builder, the
plugin registry and the plugin base classes. This file provides exactly those, behaving as the
bindings document them, and nothing else: no network, builder, engine or runtime. It is put on
`sys.path` only by tests/plugins/test_trt_python_plugins.py, and extends this package's path with
NVIDIA's `tensorrt/plugin` folder (ART_TENSORRT_PLUGIN_DIR) so that `tensorrt.plugin` is theirs.
"""

import enum
import os

import numpy as np

__version__ = "0.0-standin"
__path__.append(os.environ["ART_TENSORRT_PLUGIN_DIR"])  # noqa: F821 (a package's __path__)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


float32, float16, int8, int32, int64, bfloat16 = (
    DataType.FLOAT,
    DataType.HALF,
    DataType.INT8,
    DataType.INT32,
    DataType.INT64,
    DataType.BF16,
)
_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}


def nptype(trt_type: DataType):
    """The numpy type of a TensorRT DataType (TensorRT's DataType is not a numpy dtype)."""
    return _NUMPY[trt_type]


class TensorFormat(enum.IntEnum):
    LINEAR = 0
    CHW2 = 1
    HWC8 = 2
    CHW4 = 3
    CHW16 = 4
    CHW32 = 5
    DHWC8 = 6
    CDHW32 = 7
    HWC = 8
    DLA_LINEAR = 9
    DLA_HWC4 = 10
    HWC16 = 11
    DHWC = 12


class PluginFieldType(enum.IntEnum):
    FLOAT16 = 0
    FLOAT32 = 1
    FLOAT64 = 2
    INT8 = 3
    INT16 = 4
    INT32 = 5
    CHAR = 6
    DIMS = 7
    UNKNOWN = 8
    BF16 = 9
    INT64 = 10
    FP8 = 11
    INT4 = 12


class TensorRTPhase(enum.IntEnum):
    BUILD = 0
    RUNTIME = 1


class DimensionOperation(enum.IntEnum):
    SUM = 0
    PROD = 1
    MAX = 2
    MIN = 3
    SUB = 4
    EQUAL = 5
    LESS = 6
    FLOOR_DIV = 7
    CEIL_DIV = 8


class PluginArgType(enum.IntEnum):
    INT = 0


class PluginArgDataType(enum.IntEnum):
    INT8 = 0
    INT16 = 1
    INT32 = 2


class Logger:
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = 4, 3, 2, 1, 0

    def __init__(self, min_severity=WARNING):
        self.min_severity = min_severity

    def log(self, severity, msg):
        pass


class PluginField:
    """As the bindings expose it: `data` is a numpy array (bytes become uint8)."""

    def __init__(self, name: str = "", data=None, type=PluginFieldType.UNKNOWN):  # noqa: A002 (the binding's name)
        self.name, self.type = name, type
        if isinstance(data, (bytes, bytearray)):
            data = np.frombuffer(bytes(data), np.uint8)
        self.data = np.asarray(data) if data is not None else np.array([])
        self.size = int(self.data.size)


class PluginFieldCollection(list):
    pass


class Dims(tuple):
    MAX_DIMS = 8

    def __new__(cls, shape=()):
        return super().__new__(cls, () if isinstance(shape, int) else tuple(int(s) for s in shape))


class PluginTensorDesc:
    def __init__(self):
        self.dims, self.type, self.format, self.scale = (
            Dims(),
            DataType.FLOAT,
            TensorFormat.LINEAR,
            1.0,
        )


class DynamicPluginTensorDesc:
    def __init__(self):
        self.desc, self.min, self.max, self.opt = PluginTensorDesc(), Dims(), Dims(), Dims()


class IDimensionExpr:
    """A dimension of a shape calculation: its value in this calculation, and whether TensorRT
    would know it at build time (the batch dimension is not a constant)."""

    def __init__(self, value: int, constant: bool):
        self._value, self._constant = int(value), constant

    def is_constant(self) -> bool:
        return self._constant

    def get_constant_value(self) -> int:
        return self._value if self._constant else -1

    def is_size_tensor(self) -> bool:
        return False


_OPS = {
    DimensionOperation.SUM: lambda a, b: a + b,
    DimensionOperation.PROD: lambda a, b: a * b,
    DimensionOperation.MAX: max,
    DimensionOperation.MIN: min,
    DimensionOperation.SUB: lambda a, b: a - b,
    DimensionOperation.EQUAL: lambda a, b: int(a == b),
    DimensionOperation.LESS: lambda a, b: int(a < b),
    DimensionOperation.FLOOR_DIV: lambda a, b: a // b,
    DimensionOperation.CEIL_DIV: lambda a, b: -(-a // b),
}


class IExprBuilder:
    def constant(self, value: int) -> IDimensionExpr:
        return IDimensionExpr(value, True)

    def operation(self, op, first: IDimensionExpr, second: IDimensionExpr) -> IDimensionExpr:
        return IDimensionExpr(
            _OPS[op](first._value, second._value), first._constant and second._constant
        )

    def declare_size_tensor(self, output_index, opt, upper):
        raise NotImplementedError("size tensors are outside this stand-in")


class DimsExprs(list):
    def __init__(self, n: int = 0):
        super().__init__([None] * n)


class ISymExpr:
    def __init__(self):
        pass


class ITensor:
    pass


class IPluginV3:
    def __init__(self):
        pass


class IPluginV3QuickCore:
    def __init__(self):
        pass


class IPluginV3QuickBuild:
    def __init__(self):
        pass


class IPluginV3QuickRuntime:
    def __init__(self):
        pass


class IPluginCreatorV3Quick:
    def __init__(self):
        pass


class _PluginRegistry:
    def __init__(self):
        self._creators = {}

    def register_creator(self, creator, namespace: str) -> bool:
        self._creators[(creator.name, creator.plugin_version, namespace)] = creator
        return True

    def get_creator(self, name: str, version: str, namespace: str = ""):
        return self._creators.get((name, version, namespace))

    @property
    def all_creators(self):
        return list(self._creators.values())


_REGISTRY = _PluginRegistry()


def get_plugin_registry():
    return _REGISTRY
