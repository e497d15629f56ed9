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
import signal
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input a user can fix. CLIs print it as one line and exit with status 2."""


def warn(message: str):
    """Something the user should know that stops nothing (a broker away, a camera lost)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a command the way Ctrl-C does: cleanup, then exit 130


def cli_entry(fn):
    """Wrap a CLI `main`: a UserError, an OS error on a path, Ctrl-C or SIGTERM become one line
    on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(argv=None):
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
