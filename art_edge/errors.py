"""User-facing errors: one clear line that names the problem and the fix, and a non-zero exit."""

from __future__ import annotations

import functools
import sys


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
