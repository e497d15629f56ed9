"""Files: atomic writes (a reader never sees half a file or half a folder) and their checksums.

    atomic_write(path, lambda tmp: save(tmp))        # a file, written beside `path`, then renamed
    atomic_write_text(path, json.dumps(doc))
    with atomic_dir(out, replace=True) as tmp:       # a folder, built beside `out`, renamed at the end
        ...

Every artifact the toolkit writes (checkpoints, engine dirs, datasets, reports, caches, videos)
goes through these, so an interrupted or failed command leaves the old file or nothing.
`sha256_file` is the checksum engine dirs and calibration caches record; `parse_host_port` reads
the address a server of ours (metrics, dashboard) listens on, `parse_origin` the web origins the
dashboard allows.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from art_edge.errors import UserError, check_not_terminated


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    """A HOST:PORT (or :PORT, on 127.0.0.1) a server of ours listens on."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{flag} {text!r}: give HOST:PORT (e.g. 127.0.0.1:9100) or :PORT")
    return host or "127.0.0.1", int(port)


def parse_origin(origin: str, flag: str = "--web-origin") -> tuple[str, str, int]:
    """A web origin, 'scheme://host[:port]' (--web-origin) → (scheme, host, port), the port the
    scheme's when not given."""
    parts = urlsplit(origin.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path:
        raise UserError(
            f"{flag} {origin!r}: give an origin, scheme://HOST[:PORT] with no path "
            "(e.g. https://rig.example.org, as the browser's address bar shows it)"
        )
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def partial_path(path) -> Path:
    """Where a file that is still being written lives: `.NAME.part.EXT`, hidden, beside `path`
    (same folder, so the final rename is atomic; same extension, so writers that pick a format by
    extension still work)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.part{path.suffix}")


def check_writable(path, flag: str, is_file: bool = False):
    """Before any work starts: `path` can be created or replaced (its nearest existing folder is a
    writable folder, and `path` itself is not the wrong kind of thing). `is_file`: `path` is a
    file to write (an existing one is replaced), not a folder to write into."""
    path = Path(path)
    if is_file and path.is_dir():
        raise UserError(f"{flag} {path}: a folder, not a file; give a file path")
    ancestor = path if path.exists() and not is_file else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {ancestor} is a file, not a folder; choose another path")
    try:  # try it: permission bits say nothing for root, read-only mounts and the like
        fd, probe = tempfile.mkstemp(prefix=".art-write-check-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(
            f"{flag} {path}: cannot write in {ancestor} ({e.strerror}); choose a path in a folder you "
            "can write"
        ) from None


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait while a temporary name is created and recorded, so an interrupt
    can never leave one behind that no cleanup knows of (delivered right after)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError):  # no signal masks here (not POSIX): nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def atomic_write(path, write_fn):
    """Call write_fn(tmp_path), then rename over `path`. On any error (or Ctrl-C) the partial file
    is removed and the error goes on as itself."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        with _signals_held():
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent
            )
        os.close(fd)
        write_fn(tmp)
        check_not_terminated()  # a SIGTERM swallowed on the way: nothing is committed
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


@contextlib.contextmanager
def atomic_dir(out, replace: bool = False, prefix: str = "build"):
    """Yield a fresh folder beside `out`; when the block ends without error it becomes `out`
    (an existing `out` is removed first when `replace`, else it must be empty). On error the
    folder is removed and nothing at `out` changes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        with _signals_held():
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{prefix}-", dir=out.parent))
        yield tmp
        check_not_terminated()  # a SIGTERM swallowed on the way: nothing is committed
        if out.exists():
            if replace:
                shutil.rmtree(out)
            else:
                out.rmdir()  # empty by the caller's check; anything else is an error worth seeing
        os.replace(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
