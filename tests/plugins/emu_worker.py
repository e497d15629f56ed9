"""Runs the emulated kernels (a libart_ops_emu.so) through their C ABI, in a process of its own so
that a kernel that reads or writes past a buffer ends this process, not the test session.

    python emu_worker.py LIB CASES_JSON   → one JSON line: a result per case

Every buffer ends exactly where a protected page begins (a read or write past it faults), and
every output starts as NaN (an element never written stays NaN). References: the PyTorch
functions of art_train/ops.py, in float64, on the same (rounded) inputs.
"""

import ctypes
import json
import mmap
import subprocess
import sys

import numpy as np
import torch

from art_train.ops import qr_attention_reference, tracklet_link_reference

PAGE = mmap.PAGESIZE
LIBC = ctypes.CDLL(None)
# name → (art_dtype code, the numpy type its bytes are held in); bfloat16 is held as uint16
DTYPES = {"float32": (0, np.float32), "float16": (1, np.float16), "bfloat16": (2, np.uint16)}
NAN = {"float32": np.nan, "float16": np.nan, "bfloat16": 0x7FC0}  # an output never written
_keep = []  # the mappings behind the arrays handed out


def stored(values: np.ndarray, dtype: str) -> np.ndarray:
    """float values → the bytes of `dtype` (round to nearest even, as torch does)."""
    if dtype == "bfloat16":
        bf16 = torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16)
        return bf16.view(torch.int16).numpy().view(np.uint16)
    return values.astype(DTYPES[dtype][1])


def as_float64(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).double().numpy()
    return a.astype(np.float64)


def guarded(shape, dtype, fill=np.nan) -> np.ndarray:
    """An array whose last byte is followed by a protected page."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    body = max(PAGE, -(-nbytes // PAGE) * PAGE)
    mm = mmap.mmap(-1, body + PAGE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    assert LIBC.mprotect(ctypes.c_void_p(address + body), PAGE, 0) == 0  # PROT_NONE
    _keep.append(mm)
    a = np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=body - nbytes).reshape(
        shape
    )
    a[...] = fill
    return a


def output(shape, dtype: str) -> np.ndarray:
    return guarded(shape, DTYPES[dtype][1], NAN[dtype])


def load(lib_path: str):
    lib = ctypes.CDLL(lib_path)
    vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.art_qr_attention.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, i, f, vp]
    lib.art_tracklet_link.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, f, f, vp]
    lib.art_emu_set_order.argtypes = [i, ctypes.c_uint]
    lib.art_emu_launches.restype = ctypes.c_long
    lib.art_emu_register_shared.argtypes = [vp, ctypes.c_size_t]
    register_static_shared(lib, lib_path)
    if hasattr(lib, "art_emu_trace_report"):
        lib.art_emu_trace_region.argtypes = [vp, ctypes.c_size_t]
        lib.art_emu_trace_report.argtypes = [ctypes.POINTER(ctypes.c_double)]
    return lib


def register_static_shared(lib, lib_path: str):
    """The kernels' static __shared__ arrays (static locals of namespace art) from the symbol
    table, so the emulator resets them to NaN before every block."""
    symbols = {}
    for line in subprocess.run(
        ["nm", "-S", "--defined-only", lib_path], capture_output=True, text=True, check=True
    ).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = (int(parts[0], 16), int(parts[1], 16), parts[2])
        elif len(parts) == 3:
            symbols[parts[2]] = (int(parts[0], 16), 0, parts[1])
    base = ctypes.cast(lib.art_emu_launches, ctypes.c_void_p).value - symbols["art_emu_launches"][0]
    for name, (offset, size, kind) in symbols.items():
        if name.startswith("_ZZN3art") and kind in "bd" and size:
            lib.art_emu_register_shared(base + offset, size)


def inputs(case):
    rng = np.random.default_rng(case.get("seed", 0))
    if case["op"] == "qr":
        n, nq, length, dim, heads = case["shape"]
        shapes = [(n, nq, dim), (n, length, dim), (n, length, dim)]
    else:
        b, t, k, d = case["shape"]
        shapes = [(b, t, k, d), (b, k, d)]
    arrays = []
    for s in shapes:
        a = guarded(s, DTYPES[case["dtype"]][1], fill=0)
        if case.get("misaligned"):  # one element earlier: not 16-byte aligned
            a = guarded((int(np.prod(s)) + 1,), a.dtype, fill=0)[:-1].reshape(s)
        a[...] = stored(rng.standard_normal(s), case["dtype"])
        if case.get("zero_rows"):
            a.reshape(-1, s[-1])[::3] = 0  # every third row all zeros
        arrays.append(a)
    return arrays


def qr_outputs(case) -> dict:
    n, nq, length, dim, heads = case["shape"]
    return {
        "out": output((n, nq, dim), case["dtype"]),
        "attn": output((n, nq, length), case["dtype"]),
    }


def launch_qr(lib, case, arrays, outs) -> int:
    n, nq, length, dim, heads = case["shape"]
    q, k, v = (a.ctypes.data for a in arrays)
    scale = 4.0 * (dim // heads) ** -0.5
    code = DTYPES[case["dtype"]][0]
    out, attn = outs["out"].ctypes.data, outs["attn"].ctypes.data
    return lib.art_qr_attention(code, q, k, v, out, attn, n, nq, length, dim, heads, scale, None)


def reference_qr(case, floats) -> dict:
    n, nq, length, dim, heads = case["shape"]
    scale = 4.0 * (dim // heads) ** -0.5
    return dict(zip(("out", "attn"), qr_attention_reference(*floats, heads, scale)))


def link_outputs(case) -> dict:
    b, t, k, d = case["shape"]
    shapes = {"agg": (b, k, d), "saliency": (b, t, k), "coherence": (b, t - 1, k)}
    return {name: output(shape, case["dtype"]) for name, shape in shapes.items()}


def launch_link(lib, case, arrays, outs) -> int:
    b, t, k, d = case["shape"]
    r, s = (a.ctypes.data for a in arrays)
    code = DTYPES[case["dtype"]][0]
    pointers = (o.ctypes.data for o in outs.values())
    return lib.art_tracklet_link(code, r, s, *pointers, b, t, k, d, 0.1, 1e-6, None)


def reference_link(case, floats) -> dict:
    return dict(zip(("agg", "saliency", "coherence"), tracklet_link_reference(*floats, 0.1, 1e-6)))


OPS = {
    "qr": (qr_outputs, launch_qr, reference_qr),
    "link": (link_outputs, launch_link, reference_link),
}


def run_case(lib, case) -> dict:
    """The kernel in each thread order of `orders`: its largest error against the float64
    reference on the same rounded inputs, any element never written, and whether every order
    gave the same bytes."""
    arrays = inputs(case)
    make_outputs, launch, reference = OPS[case["op"]]
    floats = [torch.from_numpy(as_float64(a, case["dtype"])) for a in arrays]
    ref = {name: r.numpy() for name, r in reference(case, floats).items()}
    results, first = [], None
    for order in case.get("orders", [0]):
        lib.art_emu_set_order(order, 7)
        outs = make_outputs(case)
        status = launch(lib, case, arrays, outs)
        if status != 0:
            return {"status": status}
        results.append({name: o.tobytes() for name, o in outs.items()})
        first = first or {name: as_float64(o, case["dtype"]) for name, o in outs.items()}
    return {
        "status": 0,
        "max_abs_error": {name: float(np.abs(first[name] - ref[name]).max()) for name in first},
        "nan": any(bool(np.isnan(o).any()) for o in first.values()),
        "identical_across_orders": all(r == results[0] for r in results[1:]),
    }


TRAFFIC = (
    "bytes_read", "bytes_written", "read_sectors", "read_sectors_min", "write_sectors",
    "write_sectors_min", "read_instructions", "write_instructions", "bytes_read_16",
)  # fmt: skip


def trace_case(lib, case) -> dict:
    """One launch of a traced library (plugins/emulation.py, traced=True): the global-memory
    traffic emu_trace.cpp counted, and the bytes of the inputs and outputs."""
    arrays = inputs(case)
    make_outputs, launch, _ = OPS[case["op"]]
    outs = make_outputs(case)
    lib.art_emu_trace_reset()
    for a in [*arrays, *outs.values()]:
        lib.art_emu_trace_region(a.ctypes.data, a.nbytes)
    status = launch(lib, case, arrays, outs)
    counts = (ctypes.c_double * len(TRAFFIC))()
    lib.art_emu_trace_report(counts)
    return {
        "status": status,
        **{name: float(v) for name, v in zip(TRAFFIC, counts)},
        "input_bytes": sum(a.nbytes for a in arrays),
        "output_bytes": sum(o.nbytes for o in outs.values()),
    }


def run_invalid(lib, case) -> dict:
    """Null pointers: a shape outside the limits must be refused before anything is touched."""
    before = lib.art_emu_launches()
    code = case.get("dtype_code", 0)
    null = None
    if case["op"] == "qr":
        n, nq, length, dim, heads = case["shape"]
        status = lib.art_qr_attention(
            code, null, null, null, null, null, n, nq, length, dim, heads, 1.0, null
        )
    else:
        b, t, k, d = case["shape"]
        status = lib.art_tracklet_link(
            code, null, null, null, null, null, b, t, k, d, case.get("temperature", 0.1), 1e-6, null
        )
    return {"status": status, "launches": lib.art_emu_launches() - before}


def main():
    lib = load(sys.argv[1])
    cases = json.loads(sys.argv[2])
    run = lambda c: (
        run_invalid(lib, c)
        if c.get("invalid")
        else (trace_case if c.get("trace") else run_case)(lib, c)
    )  # noqa: E731
    print(json.dumps([run(c) for c in cases]))


if __name__ == "__main__":
    main()
