"""STAND-IN for a torchvision whose C++ extension loads (a CUDA machine with the matching
torchvision), which the CPU torch of the test machines cannot have. Why a stand-in: the real
extension cannot load beside CPU torch 2.13.0, so the case it stands for cannot happen here.

It does what the real extension does when it loads: it registers `torchvision::nms` and
`torchvision::qnms`, and aborts the process (exit 134, as the C++ registration does) when the
schemas are already defined. Then it runs the installed torchvision's own package in its place,
so open_clip gets real transforms. Put its parent folder first on PYTHONPATH.
"""

import os
import sys
from pathlib import Path

import torch

try:
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
except RuntimeError as _e:
    print(f"terminate called after throwing an instance of 'c10::Error': {_e}", file=sys.stderr)
    sys.stderr.flush()
    os.abort()
STANDIN_REGISTERED = True

_here = Path(__file__).resolve().parent
_real = next(
    Path(entry) / "torchvision"
    for entry in sys.path
    if entry
    and (Path(entry) / "torchvision" / "__init__.py").is_file()
    and (Path(entry) / "torchvision").resolve() != _here
)
__path__ = [str(_real)]
__file__ = str(_real / "__init__.py")
exec(compile((_real / "__init__.py").read_text(), __file__, "exec"))
