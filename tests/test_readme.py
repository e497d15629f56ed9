"""The README's Python example runs as written (paths swapped for the test's own)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_python_example_runs(engine_dir, synth, tmp_path, capsys):
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    clip = sorted((synth / "videos").glob("val_*.mp4"))[0]
    code = block.replace('"engines/diving"', repr(str(engine_dir))).replace("match.mp4", str(clip))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # events.jsonl lands here
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0] for line in lines} == {"pool", "board"}, lines[:5]
    assert (tmp_path / "events.jsonl").read_text().strip()
