"""LIST files (the clip lists of shared/DESIGN.md) and classes files, without torch.

A LIST is a CSV with a header `path,label` and optional `start_frame,end_frame`; `label` is a
class name or its index; a relative path is taken from `root`, or from the LIST file's folder.
Training, calibration, evaluation and art-edge all read lists through these functions.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from art_edge.errors import UserError, read_text
from art_edge.preprocess import VideoDecodeError, count_frames

LIST_FORMAT = "a CSV with the header path,label (optional start_frame,end_frame)"


@dataclass
class ClipRecord:
    path: str
    label: int
    start_frame: int | None = None
    end_frame: int | None = None
    where: str = ""  # LIST file and line, for messages


def read_classes(path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"classes file not found: {path} (one class name a line)")
    text = read_text(p, "a classes file", "one class name a line")
    names = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith(MIRROR)
    ]
    if not names:
        raise UserError(f"classes file is empty: {path} (one class name a line)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"classes file {path} names a class twice: {dupes}")
    return names


MIRROR = "mirror:"  # a classes-file line `mirror: A | B`: a horizontal flip turns class A into B and back


def read_mirror_pairs(path, classes: list[str]) -> dict[int, int]:
    """The classes a horizontal flip exchanges, from the classes file's `mirror: A | B` lines."""
    pairs = {}
    for line_no, line in enumerate(
        read_text(path, "a classes file", "one class name a line").splitlines(), 1
    ):
        if not line.startswith(MIRROR):
            continue
        names = [n.strip() for n in line[len(MIRROR) :].split("|")]
        if len(names) != 2 or any(n not in classes for n in names) or names[0] == names[1]:
            raise UserError(
                f"{path}:{line_no}: a mirror line names two different classes of the file: "
                f"'mirror: A | B', got {line.strip()!r}"
            )
        a, b = (classes.index(n) for n in names)
        if pairs.get(a, b) != b or pairs.get(b, a) != a:
            raise UserError(
                f"{path}:{line_no}: {names[0]} or {names[1]} is already in another mirror pair"
            )
        pairs[a], pairs[b] = b, a
    return pairs


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
    """The clips of a LIST, each row checked: its label, its frame range's numbers, no values
    beyond the header's columns. (The frame range against the video: `check_frame_range`.)"""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"LIST file not found: {path}")
    base = Path(root) if root else p.parent
    reader = csv.DictReader(io.StringIO(read_text(p, "a LIST", LIST_FORMAT), newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in header or "label" not in header:
            raise UserError(
                f"{path}: the first line must be a header with 'path,label' "
                f"(optional 'start_frame,end_frame'), got {header}"
            )
        records = [
            _record(row, f"{path}:{line_no}", base, classes, header)
            for line_no, row in enumerate(reader, start=2)
        ]
    except csv.Error as e:
        raise UserError(f"{path} is not {LIST_FORMAT}: {e}") from None
    if not records:
        raise UserError(f"LIST file has no clips: {path}")
    return records


def _record(row: dict, where: str, base: Path, classes: list[str], header: list[str]) -> ClipRecord:
    extra = row.pop(None, None)
    if extra and any(v.strip() for v in extra):
        raise UserError(
            f"{where}: {len(header) + len(extra)} values, but the header names {len(header)} columns "
            f"{header}; name every column in the header (path,label,start_frame,end_frame)"
        )
    row = {(k or "").strip(): v for k, v in row.items()}
    clip = Path((row.get("path") or "").strip())
    if not str(clip) or str(clip) == ".":
        raise UserError(f"{where}: empty path")
    start, end = _optional_int(row, "start_frame", where), _optional_int(row, "end_frame", where)
    if (start is not None and start < 0) or (end is not None and end <= (start or 0)):
        raise UserError(
            f"{where}: frame range [{start}, {end}) is empty or negative; end_frame must be "
            "greater than start_frame ≥ 0"
        )
    return ClipRecord(
        path=str(clip if clip.is_absolute() else base / clip),
        label=_parse_label(row.get("label") or "", classes, where),
        start_frame=start,
        end_frame=end,
        where=where,
    )


def check_frame_range(record: ClipRecord, frames: int) -> int:
    """A record's frame range against its video's frame count; → the count."""
    if (record.end_frame or 0) > frames or (record.start_frame or 0) >= frames:
        raise UserError(
            f"{record.where}: frames [{record.start_frame}, {record.end_frame}) are past the end of "
            f"{record.path}, which has {frames} frames; fix the range or the path"
        )
    return frames


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
    """The records whose video opens and has frames, and whose frame range lies within them
    (decoding nothing else): a range past a clip's end is an error now, not mid-epoch."""
    probe = lambda r: check_frame_range(r, count_frames(r.path))
    return [r for r, _ in skip_undecodable(records, probe, max_bad_fraction, what)]
