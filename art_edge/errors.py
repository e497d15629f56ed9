"""User-facing errors: one clear line that names the problem and the fix, and a non-zero exit."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input a user can fix. CLIs print it as one line and exit with status 2."""


def cli_entry(fn):
    """Wrap a CLI `main`: a UserError (or Ctrl-C) becomes one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(argv=None):
        try:
            return fn(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


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
