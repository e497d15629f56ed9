"""The CUDA kernels of plugins/csrc/art_ops.cu, executed on the CPU under the CUDA execution model
of plugins/tests/cuda_emu.h, against the PyTorch references of art_train/ops.py; and proof that
the harness catches what it claims to (deliberately broken copies of the kernels fail)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parent / "emu_worker.py"
CSRC = Path(__file__).resolve().parents[2] / "plugins" / "csrc"
TOLERANCE = {"float32": 1e-5, "float16": 3e-3, "bfloat16": 2e-2}

# (n = clips × frames, queries, tokens, dim, heads)
QR_SHAPES = {
    "paper": (8 * 16, 2, 196, 256, 8),  # B = 8 clips of T = 16 frames, K = 2, 14×14 tokens, d = 256
    "edge": (8, 2, 49, 256, 8),  # art-edge-s: one clip of 8 frames, 7×7 tokens
    "one_token": (3, 2, 1, 64, 2),
    "1024_tokens": (2, 2, 1024, 64, 1),
    "16_queries": (2, 16, 49, 64, 4),
    "zero_rows": (4, 4, 49, 64, 4),
    "query_groups": (2, 16, 1024, 64, 1),  # all 16 queries' scores do not fit: 2 blocks a frame
    "scalar_chunks": (3, 2, 7, 6, 3),  # rows of 6 elements: no 16-byte pieces
    "misaligned": (3, 2, 5, 32, 2),  # inputs not 16-byte aligned: element loads
    # the general kernel: a head of 48 elements (not a power of two of chunks); 16 heads whose
    # scores for one query do not fit in shared memory
    "head_48": (2, 2, 9, 96, 2),
    "scores_too_big": (1, 2, 1024, 256, 16),
}
# (B, T, K, d)
LINK_SHAPES = {
    "paper": (8, 16, 2, 256),
    "edge": (1, 8, 2, 256),
    "two_frames": (3, 2, 2, 32),
    "64_frames": (1, 64, 2, 32),
    "16_tracklets": (1, 8, 16, 32),
    "zero_rows": (2, 8, 4, 32),
    "unstaged": (1, 40, 2, 256),  # rows and semantics beyond shared memory: read where they are
}


def run_worker(lib, cases, timeout=300):
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(lib), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc


def results(lib, cases):
    proc = run_worker(lib, cases)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cases_for(op, shapes, dtype, orders=(0,)):
    return [
        {
            "op": op,
            "shape": list(s),
            "dtype": dtype,
            "orders": list(orders),
            "zero_rows": name == "zero_rows",
            "misaligned": name == "misaligned",
            "seed": i,
        }
        for i, (name, s) in enumerate(shapes.items())
    ]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize(
    "op,shapes", [("qr", QR_SHAPES), ("link", LINK_SHAPES)], ids=["QRAttention", "TrackletLink"]
)
def test_kernels_match_the_pytorch_reference(emulated_ops, op, shapes, dtype):
    for name, got in zip(shapes, results(emulated_ops, cases_for(op, shapes, dtype))):
        assert got["status"] == 0, name
        assert not got["nan"], f"{name}: an output element was never written (still NaN)"
        worst = max(got["max_abs_error"].values())
        assert worst <= TOLERANCE[dtype], f"{name} {dtype}: {got['max_abs_error']}"


@pytest.mark.parametrize(
    "op,shapes", [("qr", QR_SHAPES), ("link", LINK_SHAPES)], ids=["QRAttention", "TrackletLink"]
)
def test_outputs_do_not_depend_on_the_order_threads_run_in(emulated_ops, op, shapes):
    """Forward, reverse and random order of a block's threads between barriers: bitwise the same."""
    picked = {k: shapes[k] for k in ("edge", "zero_rows", "head_48") if k in shapes}
    for name, got in zip(
        picked, results(emulated_ops, cases_for(op, picked, "float32", orders=(0, 1, 2)))
    ):
        assert got["status"] == 0 and got["identical_across_orders"], name


INVALID = [
    ("qr", (1, 17, 8, 8, 1)),  # 17 queries (limit 16)
    ("qr", (1, 2, 1025, 8, 1)),  # 1025 tokens (limit 1024)
    ("qr", (1, 2, 8, 10, 3)),  # dim not divisible by heads
    ("qr", (1, 2, 8, 8, 0)),  # no heads
    ("qr", (0, 2, 8, 8, 1)),  # no frames
    ("qr", (1, 2, 1024, 16384, 1)),  # more shared memory than a block may have
    ("link", (1, 65, 2, 8)),  # 65 frames (limit 64)
    ("link", (1, 1, 2, 8)),  # one frame: no coherence
    ("link", (1, 8, 17, 8)),  # 17 tracklets (limit 16)
    ("link", (1, 8, 2, 0)),  # empty responses
]


def test_out_of_limit_shapes_are_refused_without_a_launch(emulated_ops):
    cases = [{"op": op, "shape": list(s), "invalid": True} for op, s in INVALID]
    cases += [
        {"op": "link", "shape": [1, 8, 2, 8], "invalid": True, "temperature": 0.0},
        {"op": "qr", "shape": [1, 2, 8, 8, 1], "invalid": True, "dtype_code": 7},
    ]
    for case, got in zip(cases, results(emulated_ops, cases)):
        assert got == {"status": -1, "launches": 0}, case


# name: (text in art_ops.cu, the broken version, how the harness must catch it)
MUTANTS = {
    # the barrier between the softmax and the map that reads its rows, removed
    "barrier_removed": (
        "    softmax_rows(scores, heads * qn, len);\n    __syncthreads();\n",
        "    softmax_rows(scores, heads * qn, len);\n",
        "thread order",
    ),
    # the barrier between two slots' additions into the values' sums, removed
    "sum_barrier_removed": (
        "                    d = (s == 0 ? 0.0f : d) + acc[i][j];\n                }\n        __syncthreads();\n",
        "                    d = (s == 0 ? 0.0f : d) + acc[i][j];\n                }\n",
        "reference",
    ),
    # the warp reduction stops one step early (sums 16 lanes, not 32)
    "warp_reduction_short": (
        "for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync",
        "for (int o = 16; o > 1; o >>= 1) x += __shfl_xor_sync",
        "reference",
    ),
    # the scores' shared memory one row short
    "shared_memory_one_row_short": (
        "queries + round4(heads * qg * len)}",
        "queries + round4(heads * qg * len - len)}",
        "protected page",
    ),
    # a barrier only some threads of the block reach
    "divergent_barrier": (
        "softmax_prob(st, sim[t * nk + j]);\n    }\n    __syncthreads();\n",
        "softmax_prob(st, sim[t * nk + j]);\n        __syncthreads();\n    }\n",
        "divergence",
    ),
}


def how_caught(proc) -> set:
    """Every check a run of the worker failed."""
    if proc.returncode == -11:  # SIGSEGV: a read or write past a buffer, into the protected page
        return {"protected page"}
    if proc.returncode != 0:
        return {"divergence"} if "art_emu: divergence" in proc.stderr else {"crash"}
    caught = set()
    for g in json.loads(proc.stdout.strip().splitlines()[-1]):
        if not g["identical_across_orders"]:
            caught.add("thread order")
        if g["nan"] or max(g["max_abs_error"].values()) > 1e-5:
            caught.add("reference")
    return caught


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_harness_catches_a_broken_kernel(build_kernel_copy, mutant):
    before, after, expected = MUTANTS[mutant]
    source = (CSRC / "art_ops.cu").read_text()
    assert source.count(before) == 1, f"the mutation {mutant} no longer applies to art_ops.cu"
    lib = build_kernel_copy(source.replace(before, after))
    cases = [
        {
            "op": op,
            "shape": list(shapes["edge"]),
            "dtype": "float32",
            "orders": [0, 1, 2],
            "seed": 3,
        }
        for op, shapes in (("qr", QR_SHAPES), ("link", LINK_SHAPES))
    ]
    assert expected in how_caught(run_worker(lib, cases)), mutant


# ----------------------------------------------------------------------------- memory traffic
# The traced build counts each launch's global-memory traffic (plugins/tests/emu_trace.cpp): the
# bytes read against every input once, and how many 32-byte sectors each warp's load touches
# against the fewest it could.


def traffic(lib, op, shape, dtype) -> dict:
    from plugins.emulation import traffic_figures

    (got,) = results(lib, [{"op": op, "shape": list(shape), "dtype": dtype, "trace": True}])
    assert got["status"] == 0
    return traffic_figures(got)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape", ["edge", "16_queries"])
def test_qr_attention_reads_each_input_once_in_whole_sectors(traced_ops, dtype, shape):
    got = traffic(traced_ops, "qr", QR_SHAPES[shape], dtype)
    assert got["bytes_read_over_minimum"] <= 1.1, got
    assert got["sector_efficiency"] >= 0.9, got
    # keys and values in 16-byte pieces (the queries, read once per block, element by element)
    assert got["share_read_in_16_byte_loads"] >= 0.8, got


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", ["paper", "edge"])
def test_tracklet_link_reads_its_rows_once(traced_ops, dtype, shape):
    """Each tracklet's rows once; each clip's semantics once a tracklet (K blocks read them)."""
    got = traffic(traced_ops, "link", LINK_SHAPES[shape], dtype)
    assert got["bytes_read_over_minimum"] <= 1.15, got
    assert got["sector_efficiency"] >= 0.9, got


# name: (text in art_ops.cu, the version that moves more memory, the figure that must show it)
TRAFFIC_MUTANTS = {
    # each element of a chunk loaded on its own: a warp's load spreads over 4× the sectors
    "element_loads": (
        "    return *reinterpret_cast<const Chunk<T, V>*>(p);\n",
        "    Chunk<T, V> c;\n    for (int j = 0; j < V; ++j) c.e[j] = p[j];\n    return c;\n",
        lambda got: got["sector_efficiency"] < 0.5,
    ),
    # a block per query, as the first kernel had: every frame's keys and values read per query
    "a_block_per_query": (
        "    int most = nq;\n",
        "    int most = 1;\n",
        lambda got: got["bytes_read_over_minimum"] > 1.8,
    ),
}


@pytest.mark.parametrize("mutant", list(TRAFFIC_MUTANTS))
def test_the_traffic_count_catches_a_kernel_that_moves_more(build_kernel_copy, mutant):
    before, after, shows = TRAFFIC_MUTANTS[mutant]
    source = (CSRC / "art_ops.cu").read_text()
    assert source.count(before) == 1, f"the mutation {mutant} no longer applies to art_ops.cu"
    got = traffic(
        build_kernel_copy(source.replace(before, after), traced=True),
        "qr",
        QR_SHAPES["edge"],
        "float32",
    )
    assert shows(got), (mutant, got)
