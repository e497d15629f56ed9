"""User-facing errors and warnings: one clear line that names the problem and the fix, and a
non-zero exit.

Every command's `main` is wrapped in `cli_entry` and parses its flags with `ArgumentParser`:
bad input of any kind (a flag out of range, a file that is not what it should be, a folder that
cannot be written) ends as one line on stderr and exit status 2; Ctrl-C and SIGTERM (what
`timeout`, `docker stop` and CI send) as "interrupted" and 130, after the command's cleanup ran.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import signal
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input a user can fix. CLIs print it as one line and exit with status 2."""


def warn(message: str):
    """Something the user should know that stops nothing (a broker away, a camera lost)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


_TERMINATED = []  # a SIGTERM arrived (its KeyboardInterrupt may have been swallowed)


def _terminate(signum, frame):
    _TERMINATED.append(signum)
    raise KeyboardInterrupt  # SIGTERM ends a command the way Ctrl-C does: cleanup, then exit 130


def check_not_terminated():
    """Raise KeyboardInterrupt if a SIGTERM arrived. Python drops an exception raised by a signal
    handler that runs inside a finalizer ("Exception ignored in …"), so a command could go on and
    finish after SIGTERM; what commits an artifact asks here first."""
    if _TERMINATED:
        raise KeyboardInterrupt


def cli_entry(fn):
    """Wrap a CLI `main`: a UserError, an OS error on a path, Ctrl-C or SIGTERM become one line
    on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(argv=None):
        _TERMINATED.clear()
        previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread (a command called from a worker thread)
            previous = None
        try:
            return fn(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # a path we were given that cannot be read or written
            where = f" {e.filename}" if e.filename else ""
            print(
                f"error: cannot use{where}: {e.strerror or e}; check the path and its permissions",
                file=sys.stderr,
            )
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            _TERMINATED.clear()  # the command is over: later work in this process is not stopped
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line (not the usage block) and exit status 2."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class Number:
    """A number of `kind` within [minimum, maximum] (minimum excluded when `min_open`). As an
    argparse type it parses and checks a flag's text; `convert` only parses (for settings, whose
    range a config checks once, with `check`)."""

    def __init__(self, kind, minimum=None, maximum=None, min_open=False, what=""):
        self.kind, self.minimum, self.maximum, self.min_open = kind, minimum, maximum, min_open
        self.what = self.__name__ = what or kind.__name__

    def convert(self, text):
        try:
            return self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.what}, got {text!r}") from None

    def within(self, value) -> bool:
        low, high = self.minimum, self.maximum
        too_small = low is not None and (value <= low if self.min_open else value < low)
        return not too_small and (high is None or value <= high)

    def __call__(self, text):
        value = self.convert(text)
        if not self.within(value):
            raise argparse.ArgumentTypeError(f"must be {self.what}, got {text}")
        return value

    def check(self, value, flag: str):
        if not self.within(value):
            raise UserError(f"{flag} {value}: must be {self.what}")


positive_int = Number(int, 1, what="an integer ≥ 1")
non_negative_int = Number(int, 0, what="an integer ≥ 0")
positive_float = Number(float, 0.0, min_open=True, what="a number > 0")
non_negative_float = Number(float, 0.0, what="a number ≥ 0")
fraction = Number(float, 0.0, 1.0, what="a number in [0, 1]")


SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
              "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
              "tib": 2**40}  # fmt: skip
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def _quantity(text, units: dict, flag: str, example: str) -> float:
    match = _QUANTITY.match(str(text))
    unit = match and match[2].lower()
    if not match or unit not in units:
        raise UserError(f"{flag} {text!r}: give a number with a unit, e.g. {example}")
    return float(match[1]) * units[unit]


def parse_size(text, flag: str) -> int:
    """A size as people write it (500MB, 2GB, 1.5GiB, 100k; a bare number is bytes) → bytes."""
    return int(_quantity(text, SIZE_UNITS, flag, "500MB, 20GB or 1.5GiB"))


def parse_duration(text, flag: str) -> float:
    """A duration (30s, 15m, 12h, 7d, 2w; a bare number is seconds) → seconds."""
    return _quantity(text, DURATION_UNITS, flag, "30s, 12h or 7d")


def format_size(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def read_json(path, missing: str, invalid_fix: str):
    """Parse a JSON file a user pointed us at: `missing` is the whole message when it is absent,
    `invalid_fix` ends the message when it does not parse."""
    path = Path(path)
    if not path.is_file():
        raise UserError(missing)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); {invalid_fix}") from None


def read_text(path, what: str, fix: str) -> str:
    """A UTF-8 text file a user pointed us at (a byte-order mark is allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file; {what} is text: {fix}") from None
    if "\x00" in text:
        raise UserError(f"{path} is a binary file; {what} is text: {fix}")
    return text
