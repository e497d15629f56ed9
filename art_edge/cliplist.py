"""LIST files (the clip lists of shared/DESIGN.md) and classes files, without torch.

A LIST is a CSV with a header `path,label` and optional `start_frame,end_frame`; `label` is a
class name or its index; a relative path is taken from `root`, or from the LIST file's folder.
Training, calibration, evaluation and art-edge all read lists through these functions.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from art_edge.errors import UserError
from art_edge.preprocess import VideoDecodeError, count_frames


@dataclass
class ClipRecord:
    path: str
    label: int
    start_frame: int | None = None
    end_frame: int | None = None


def read_classes(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"classes file not found: {path} (one class name a line)")
    names = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"classes file is empty: {path} (one class name a line)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"classes file {path} names a class twice: {dupes}")
    return names


def _parse_label(value: str, classes: list[str], where: str) -> int:
    value = value.strip()
    if value in classes:
        return classes.index(value)
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    raise UserError(
        f"{where}: unknown label {value!r}; it must be a name from the classes file "
        f"or an index below {len(classes)}"
    )


def _optional_int(row: dict, key: str, where: str) -> int | None:
    value = (row.get(key) or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{where}: {key} must be an integer, got {value!r}") from None


def read_list(path, classes: list[str], root=None) -> list[ClipRecord]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"LIST file not found: {path}")
    base = Path(root) if root else p.parent
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in header or "label" not in header:
            raise UserError(
                f"{path}: the first line must be a header with 'path,label' "
                f"(optional 'start_frame,end_frame'), got {header}"
            )
        records = []
        for line_no, row in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in row.items()}
            where = f"{path}:{line_no}"
            clip = Path((row.get("path") or "").strip())
            if not str(clip) or str(clip) == ".":
                raise UserError(f"{where}: empty path")
            records.append(
                ClipRecord(
                    path=str(clip if clip.is_absolute() else base / clip),
                    label=_parse_label(row.get("label") or "", classes, where),
                    start_frame=_optional_int(row, "start_frame", where),
                    end_frame=_optional_int(row, "end_frame", where),
                )
            )
    if not records:
        raise UserError(f"LIST file has no clips: {path}")
    return records


def skip_undecodable(
    records: list[ClipRecord],
    load,
    max_bad_fraction: float = 0.1,
    what: str = "clips",
    progress: bool = False,
) -> list[tuple[ClipRecord, object]]:
    """The one policy for clips that do not decode, wherever clips are read: → [(record,
    load(record))] for the clips that load; the others are skipped with a count and a warning,
    and more than `max_bad_fraction` of them (a wrong --root, usually), or none that loads, is an
    error."""
    from tqdm import tqdm

    good, bad = [], []
    for r in tqdm(records, desc=what, disable=not progress, leave=False, unit="clip"):
        try:
            good.append((r, load(r)))
        except VideoDecodeError as e:
            bad.append(str(e))
    if bad:
        print(
            f"warning: skipping {len(bad)} of {len(records)} {what} that do not decode "
            f"(first: {bad[0]})",
            file=sys.stderr,
        )
    if len(bad) > max_bad_fraction * len(records) or not good:
        raise UserError(
            f"{len(bad)} of {len(records)} {what} are missing or do not decode "
            f"(first: {bad[0] if bad else 'none'}); check the LIST paths and --root"
        )
    return good


def probe_records(
    records: list[ClipRecord], max_bad_fraction: float = 0.1, what: str = "clips"
) -> list[ClipRecord]:
    """The records whose video opens and has frames (decoding nothing else)."""
    return [
        r
        for r, _ in skip_undecodable(
            records, lambda r: count_frames(r.path), max_bad_fraction, what
        )
    ]
