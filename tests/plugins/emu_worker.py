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
DTYPES = {"float32": (0, np.float32), "float16": (1, np.float16)}
_keep = []  # the mappings behind the arrays handed out


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


def load(lib_path: str):
    lib = ctypes.CDLL(lib_path)
    vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.art_qr_attention.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, i, f, vp]
    lib.art_tracklet_link.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, f, f, vp]
    lib.art_emu_set_order.argtypes = [i, ctypes.c_uint]
    lib.art_emu_launches.restype = ctypes.c_long
    lib.art_emu_register_shared.argtypes = [vp, ctypes.c_size_t]
    register_static_shared(lib, lib_path)
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
    dtype = DTYPES[case["dtype"]][1]
    if case["op"] == "qr":
        n, nq, length, dim, heads = case["shape"]
        shapes = [(n, nq, dim), (n, length, dim), (n, length, dim)]
    else:
        b, t, k, d = case["shape"]
        shapes = [(b, t, k, d), (b, k, d)]
    arrays = []
    for s in shapes:
        a = guarded(s, dtype)
        a[...] = rng.standard_normal(s).astype(dtype)
        if case.get("zero_rows"):
            a.reshape(-1, s[-1])[::3] = 0  # every third row all zeros
        arrays.append(a)
    return arrays


def run_qr(lib, case, arrays):
    n, nq, length, dim, heads = case["shape"]
    code, dtype = DTYPES[case["dtype"]]
    out, attn = guarded((n, nq, dim), dtype), guarded((n, nq, length), dtype)
    scale = 4.0 * (dim // heads) ** -0.5
    q, k, v = arrays
    status = lib.art_qr_attention(
        code,
        q.ctypes.data,
        k.ctypes.data,
        v.ctypes.data,
        out.ctypes.data,
        attn.ctypes.data,
        n,
        nq,
        length,
        dim,
        heads,
        scale,
        None,
    )
    ref = qr_attention_reference(
        *(torch.from_numpy(a.astype(np.float64)) for a in arrays), heads, scale
    )
    return status, {"out": out, "attn": attn}, dict(zip(("out", "attn"), ref))


def run_link(lib, case, arrays):
    b, t, k, d = case["shape"]
    code, dtype = DTYPES[case["dtype"]]
    outs = {
        "agg": guarded((b, k, d), dtype),
        "saliency": guarded((b, t, k), dtype),
        "coherence": guarded((b, t - 1, k), dtype),
    }
    r, s = arrays
    status = lib.art_tracklet_link(
        code,
        r.ctypes.data,
        s.ctypes.data,
        *(o.ctypes.data for o in outs.values()),
        b,
        t,
        k,
        d,
        0.1,
        1e-6,
        None,
    )
    ref = tracklet_link_reference(
        *(torch.from_numpy(a.astype(np.float64)) for a in arrays), 0.1, 1e-6
    )
    return status, outs, dict(zip(outs, ref))


def run_case(lib, case) -> dict:
    arrays = inputs(case)
    run = run_qr if case["op"] == "qr" else run_link
    results, reference_errors = [], None
    for order in case.get("orders", [0]):
        lib.art_emu_set_order(order, 7)
        status, outs, ref = run(lib, case, arrays)
        if status != 0:
            return {"status": status}
        results.append({name: o.tobytes() for name, o in outs.items()})
        if reference_errors is None:
            reference_errors = {
                name: float(np.abs(outs[name].astype(np.float64) - ref[name].numpy()).max())
                for name in outs
            }
            nan = any(bool(np.isnan(o).any()) for o in outs.values())
    identical = all(r == results[0] for r in results[1:])
    return {
        "status": 0,
        "max_abs_error": reference_errors,
        "nan": nan,
        "identical_across_orders": identical,
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
    print(
        json.dumps([run_invalid(lib, c) if c.get("invalid") else run_case(lib, c) for c in cases])
    )


if __name__ == "__main__":
    main()
