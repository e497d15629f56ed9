import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A small synthetic fine-grained dataset (real MP4 files), shared by the session."""
    from art_train.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("synth") / "data", per_class=3, val_per_class=2, size=72,
                        num_frames=16, num_classes=4, seed=1, progress=False)


def run_cli(main, *args):
    """Run a CLI main; → (exit code, stdout, stderr) via capsys in the caller."""
    return main(list(map(str, args)))
