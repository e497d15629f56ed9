"""The INT8 report: JSON for scripts, a PNG for people (per-class accuracy, error per node)."""

from __future__ import annotations

import json
from pathlib import Path

from art_edge.files import atomic_write, atomic_write_text

REPORT_JSON, REPORT_PNG = "int8_report.json", "int8_report.png"


def write_report(report: dict, folder: Path, top_nodes: int = 20) -> list[Path]:
    folder = Path(folder)
    json_path, png_path = folder / REPORT_JSON, folder / REPORT_PNG
    atomic_write_text(json_path, json.dumps(report, indent=2))
    atomic_write(png_path, lambda tmp: plot_report(report, tmp, top_nodes))
    return [json_path, png_path]


def plot_report(report: dict, path: Path, top_nodes: int = 20):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gate = report["gate"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    classes = [row["class"] for row in gate["per_class"]]
    xs = range(len(classes))
    for offset, key, label in ((-0.2, "top1_fp32", "FP32"), (0.2, "top1_int8", "INT8")):
        ax1.bar(
            [x + offset for x in xs],
            [row[key] or 0 for row in gate["per_class"]],
            width=0.4,
            label=label,
        )
    ax1.set_xticks(list(xs), classes, rotation=45, ha="right", fontsize=8)
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("held-out top-1")
    ax1.set_title(
        f"agreement {100 * gate['top1_agreement']:.1f} %, top-1 drop {gate['top1_drop_points']:+.2f} pt "
        f"(n = {gate['n']})",
        fontsize=10,
    )
    ax1.legend(loc="lower right")
    nodes = report["node_errors"][:top_nodes][::-1]
    ax2.barh(
        range(len(nodes)),
        [n["added_rel_error"] for n in nodes],
        color=["tab:orange" if n["graph"] == "clip_head" else "tab:blue" for n in nodes],
    )
    short = {"frame_encoder": "encoder", "clip_head": "head"}
    ax2.set_yticks(
        range(len(nodes)),
        [f"{short.get(n['graph'], n['graph'])} {n['node'][-40:]}" for n in nodes],
        fontsize=7,
    )
    ax2.set_xlabel("relative error added by the node (output − inputs)")
    ax2.set_title(
        "most sensitive quantized nodes (blue: frame encoder, orange: clip head)", fontsize=10
    )
    speed = report.get("speed_onnxruntime_cpu")
    if speed:
        fig.suptitle(
            f"INT8 speed here (ONNX Runtime, CPU): frame encoder {speed['frame_encoder']['speedup']:.2f}×, "
            f"clip head {speed['clip_head']['speedup']:.2f}× FP32",
            fontsize=10,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long node names stay inside the image
    plt.close(fig)
