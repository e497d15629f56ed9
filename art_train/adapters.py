"""Dataset adapters: official annotation files → LIST CSVs + a classes file.

    art-prepare-dataset diving48 --annotations DIR --out DIR
    art-prepare-dataset finegym --annotations DIR --out DIR [--subset gym99|gym288]
    art-prepare-dataset ssv2 --annotations DIR --out DIR
    art-prepare-dataset kinetics --annotations DIR --out DIR
    art-prepare-dataset ntu --annotations DIR --out DIR [--protocol xsub|xview]

Each adapter returns {split: [(path, label_name, start_frame, end_frame)]} and a class list; the
paths are relative to the dataset's video folder (pass that folder as --root to art-train).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

from art_edge.errors import ArgumentParser, UserError, cli_entry
from art_edge.files import check_writable


def _need(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise UserError(f"annotation file not found: {path} ({hint})")
    return path


def _load_json(path: Path, hint: str):
    try:
        return json.loads(_need(path, hint).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); is it the official {hint}?") from None


# ----------------------------------------------------------------------------- Diving48


def diving48(ann: Path):
    """Diving48 V2: Diving48_vocab.json (a list of [takeoff, somersault, twist, flight] per class)
    and Diving48_V2_{train,test}.json (records with vid_name, label, start_frame, end_frame)."""
    vocab = _load_json(ann / "Diving48_vocab.json", "Diving48 vocab")
    classes = [" ".join(parts) for parts in vocab]
    splits = {}
    for split, name in (("train", "Diving48_V2_train.json"), ("val", "Diving48_V2_test.json")):
        rows = []
        for r in _load_json(ann / name, "Diving48 V2 split"):
            rows.append(
                (
                    f"{r['vid_name']}.mp4",
                    classes[int(r["label"])],
                    r.get("start_frame"),
                    r.get("end_frame"),
                )
            )
        splits[split] = rows
    return classes, splits


# ----------------------------------------------------------------------------- FineGym

_GYM_CATEGORY = re.compile(r"Clabel:\s*(\d+);\s*set:\s*(\d+);\s*Glabel:\s*(\d+);\s*(.+)")


def finegym(ann: Path, subset: str = "gym99"):
    """FineGym element-level lists: {subset}_categories.txt ("Clabel: 0; set: 1; Glabel: 1; name")
    and {subset}_train_element_v1.1.txt / {subset}_val_element.txt ("<action id> <label>" a line);
    the trimmed clip of an action id is <action id>.mp4."""
    if subset not in ("gym99", "gym288"):
        raise UserError(f"--subset must be gym99 or gym288, got {subset!r}")
    classes = {}
    for line in (
        _need(ann / f"{subset}_categories.txt", "FineGym categories").read_text().splitlines()
    ):
        m = _GYM_CATEGORY.match(line.strip())
        if m:
            classes[int(m.group(1))] = m.group(4).strip()
    if not classes:
        raise UserError(
            f"no 'Clabel: N; set: N; Glabel: N; name' lines in {ann / f'{subset}_categories.txt'}"
        )
    names = [classes[i] for i in sorted(classes)]
    splits = {}
    for split, name in (
        ("train", f"{subset}_train_element_v1.1.txt"),
        ("val", f"{subset}_val_element.txt"),
    ):
        rows = []
        for line in _need(ann / name, "FineGym element list").read_text().splitlines():
            if line.strip():
                clip_id, label = line.split()
                rows.append((f"{clip_id}.mp4", classes[int(label)], None, None))
        splits[split] = rows
    return names, splits


# ----------------------------------------------------------------------------- Something-Something v2


def ssv2(ann: Path):
    """Something-Something v2: something-something-v2-labels.json ({template: "index"}) and
    something-something-v2-{train,validation}.json (records with id and template); the label is
    the template with its brackets removed; videos are <id>.webm."""
    labels = _load_json(ann / "something-something-v2-labels.json", "SSv2 labels")
    classes = [name for name, _ in sorted(labels.items(), key=lambda kv: int(kv[1]))]
    splits = {}
    for split, name in (
        ("train", "something-something-v2-train.json"),
        ("val", "something-something-v2-validation.json"),
    ):
        rows = []
        for r in _load_json(ann / name, "SSv2 split"):
            label = r["template"].replace("[", "").replace("]", "")
            if label not in labels:
                raise UserError(
                    f"{ann / name}: template {label!r} of video {r['id']} is not in the labels file"
                )
            rows.append((f"{r['id']}.webm", label, None, None))
        splits[split] = rows
    return classes, splits


# ----------------------------------------------------------------------------- Kinetics


def kinetics(ann: Path):
    """Kinetics-400/600/700: {train,validate}.csv with the header label,youtube_id,time_start,time_end,split;
    videos named <youtube_id>_<start:06d>_<end:06d>.mp4 (the official downloader's names)."""
    splits, seen = {}, set()
    for split, name in (("train", "train.csv"), ("val", "validate.csv")):
        rows = []
        with _need(ann / name, "Kinetics csv").open(newline="") as f:
            reader = csv.DictReader(f)
            if not {"label", "youtube_id", "time_start", "time_end"} <= set(
                reader.fieldnames or []
            ):
                raise UserError(
                    f"{ann / name}: expected the header label,youtube_id,time_start,time_end,split"
                )
            for r in reader:
                clip = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}.mp4"
                rows.append((clip, r["label"], None, None))
                seen.add(r["label"])
        splits[split] = rows
    return sorted(seen), splits


# ----------------------------------------------------------------------------- NTU RGB+D

_NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})_rgb\.(avi|mp4)$")
# Cross-subject training subjects of NTU RGB+D 60 (Shahroudy et al., CVPR 2016).
NTU_XSUB_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
NTU_XVIEW_TRAIN = {2, 3}  # cameras


def ntu(ann: Path, protocol: str = "xsub"):
    """NTU RGB+D: the label and split come from the file names SsssCcccPpppRrrrAaaa_rgb.avi in
    the video folder (pass it as --annotations). Classes are A001… (NTU publishes names in its paper)."""
    if protocol not in ("xsub", "xview"):
        raise UserError(f"--protocol must be xsub or xview, got {protocol!r}")
    if not ann.is_dir():
        raise UserError(f"NTU video folder not found: {ann}")
    splits = {"train": [], "val": []}
    actions = set()
    for p in sorted(ann.iterdir()):
        m = _NTU_NAME.match(p.name)
        if not m:
            continue
        camera, subject, action = int(m.group(2)), int(m.group(3)), int(m.group(5))
        is_train = subject in NTU_XSUB_TRAIN if protocol == "xsub" else camera in NTU_XVIEW_TRAIN
        splits["train" if is_train else "val"].append((p.name, f"A{action:03d}", None, None))
        actions.add(action)
    if not actions:
        raise UserError(f"no NTU RGB+D videos (SsssCcccPpppRrrrAaaa_rgb.avi) in {ann}")
    return [f"A{a:03d}" for a in range(1, max(actions) + 1)], splits


ADAPTERS = {
    "diving48": diving48,
    "finegym": finegym,
    "ssv2": ssv2,
    "kinetics": kinetics,
    "ntu": ntu,
}


def write_lists(out: Path, classes: list[str], splits: dict):
    from art_edge.files import atomic_write, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():

        def write(p, rows=rows):
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label", "start_frame", "end_frame"])
                for path, label, start, end in rows:
                    w.writerow(
                        [path, label, "" if start is None else start, "" if end is None else end]
                    )

        atomic_write(out / f"{split}.csv", write)
    atomic_write_text(out / "classes.txt", "\n".join(classes) + "\n")


def read_official(dataset: str, ann: Path, extra: dict):
    """The adapter's output; a file that is not in the official format is one line naming it."""
    try:
        return ADAPTERS[dataset](ann, **extra)
    except UnicodeDecodeError as e:
        raise UserError(
            f"{dataset} annotations in {ann}: a file is not UTF-8 text ({e.reason})"
        ) from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        kind = {
            KeyError: "a record without the field",
            IndexError: "a line with too few columns",
        }.get(type(e), "")
        raise UserError(
            f"{dataset} annotations in {ann} are not in the official format ({kind or type(e).__name__} "
            f"{e}); check that --annotations holds the official {dataset} files, unchanged"
        ) from None


@cli_entry
def main(argv=None):
    ap = ArgumentParser(
        prog="art-prepare-dataset",
        description="Turn a dataset's official annotation files into LIST CSVs.",
    )
    ap.add_argument("dataset", choices=sorted(ADAPTERS))
    ap.add_argument(
        "--annotations",
        required=True,
        help="folder holding the official annotation files (for NTU: the video folder)",
    )
    ap.add_argument("--out", required=True, help="folder for train.csv, val.csv, classes.txt")
    ap.add_argument(
        "--subset", default="gym99", choices=["gym99", "gym288"], help="FineGym's subset"
    )
    ap.add_argument("--protocol", default="xsub", choices=["xsub", "xview"], help="NTU's protocol")
    a = ap.parse_args(argv)
    ann = Path(a.annotations)
    if not ann.is_dir():
        raise UserError(
            f"--annotations {ann}: no such folder (the folder holding the official annotation files)"
        )
    check_writable(a.out, "--out")
    extra = {"finegym": {"subset": a.subset}, "ntu": {"protocol": a.protocol}}.get(a.dataset, {})
    classes, splits = read_official(a.dataset, ann, extra)
    write_lists(Path(a.out), classes, splits)
    print(
        f"{a.dataset}: {len(classes)} classes, "
        + ", ".join(f"{k} {len(v)} clips" for k, v in splits.items())
        + f" → {a.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
