"""art-edge's configuration file: `art-edge --config rig.toml` holds any setting a flag can set,
named as the setting is (the flag's name with underscores; as the Python API names it), and a
flag given beside the file wins over it:

    engine = "/opt/engines/pool"
    source = ["pool=rtsp://10.0.0.21/stream", "board=rtsp://10.0.0.22/stream"]
    events = ["/var/lib/art-edge/events.jsonl", "mqtt://broker:1883/rig/events"]
    stride = 2
    threaded = true          # --no-threads is threaded = false; --raw is raw_clips = true

Each key is read through the very definition of its flag (art_edge.rig.config: its type, its
check, its default), so the file and the flags cannot drift apart: a key no flag has, or a value
its flag would refuse, is one line naming the key. `art-edge --print-config` writes the effective
settings as such a file, every setting with its help, secrets masked (`<masked>`: a file with a
masked value is refused until the secret is put back).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import textwrap
from urllib.parse import urlsplit, urlunsplit

from art_edge.errors import Number, UserError
from art_edge.rig.camera import NAME
from art_edge.rig.config import settings_of
from art_edge.rig.credentials import ENV_REFERENCE, masked

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

MASK = "<masked>"
SECRET_WORDS = ("token", "password", "secret")
NOT_SETTINGS = {"help", "config", "print_config", "print_systemd_unit"}


def read_toml(path) -> dict:
    """The file's table; one line naming the file and the place when it is not TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file; give the path of a rig's .toml") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--config {path} is not valid TOML ({e}); fix it there") from None
    except UnicodeDecodeError:
        raise UserError(f"--config {path} is not a UTF-8 text file; give a .toml") from None


def setting_actions(parser: argparse.ArgumentParser) -> dict:
    """The parser's settings by name (each flag's dest)."""
    return {a.dest: a for a in parser._actions if a.dest not in NOT_SETTINGS}  # noqa: SLF001


def exclusive_groups(parser) -> list[set]:
    return [{a.dest for a in g._group_actions} for g in parser._mutually_exclusive_groups]  # noqa: SLF001


def _convert(action, key: str, value, where: str):
    """A TOML value as the flag's own type takes it."""
    kind = "true or false"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        if isinstance(value, bool):
            return value
    elif isinstance(action, argparse._AppendAction):  # noqa: SLF001
        values = [value] if isinstance(value, str) else value
        kind = 'a list of strings, e.g. ["a", "b"]'
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return values
    elif not isinstance(value, (bool, list, dict)):
        try:
            converted = action.type(str(value)) if action.type else str(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            raise UserError(f"{where}: {key} = {value!r}: {e}") from None
        if action.choices and converted not in action.choices:
            raise UserError(f"{where}: {key} = {value!r}: use one of {sorted(action.choices)}")
        return converted
    else:
        kind = "a number or a string" if not action.type else "a number"
    raise UserError(f"{where}: {key} = {value!r}: give {kind}")


def _check(field, key: str, value, where: str):
    """The setting's own check, naming the key in the file."""
    check = field.metadata.get("check") if field is not None else None
    if check is not None and value is not None:
        (check.check if isinstance(check, Number) else check)(value, f"{where}: {key}")


def read_settings(parser: argparse.ArgumentParser, path, trees: tuple) -> dict:
    """The settings of the file at `path`, each converted and checked by its flag's definition
    (`trees`: the dataclass trees of settings whose checks apply, e.g. RigConfig)."""
    actions, table = setting_actions(parser), read_toml(path)
    known = {name: f for tree in trees for name, f in settings_of(tree)}
    values = {}
    for key, value in table.items():
        if isinstance(value, dict):
            raise UserError(f"--config {path}: [{key}] is a table; settings are read from the top "
                            "of the file (e.g. stride = 2), not from tables")  # fmt: skip
        if key not in actions:
            near = difflib.get_close_matches(key, actions, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise UserError(f"--config {path}: unknown key {key!r}{hint}; art-edge --print-config "
                            "lists every setting")  # fmt: skip
        if MASK in json.dumps(value):
            raise UserError(f"--config {path}: {key} holds a masked secret ({MASK}); put the "
                            "secret itself there, or give it as a flag")  # fmt: skip
        values[key] = _convert(actions[key], key, value, f"--config {path}")
        _check(known.get(key), key, values[key], f"--config {path}")
    for group in exclusive_groups(parser):
        if len(group & set(values)) > 1:
            raise UserError(f"--config {path}: give one of {', '.join(sorted(group))}, not several")
    return values


def parse_with_config(parser: argparse.ArgumentParser, argv, trees: tuple) -> argparse.Namespace:
    """argv parsed with the settings of its --config file (if any) as the defaults: a flag given
    wins over the file (a repeatable flag given replaces the file's list; a source given, the
    file's sources)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    given, _ = pre.parse_known_args(argv)
    values = read_settings(parser, given.config, trees) if given.config else {}
    actions = setting_actions(parser)
    grouped = set().union(*exclusive_groups(parser))
    late = {k for k, a in actions.items() if k in grouped or isinstance(a, argparse._AppendAction)}  # noqa: SLF001
    parser.set_defaults(**{k: v for k, v in values.items() if k not in late})
    args = parser.parse_args(argv)
    for group in exclusive_groups(parser):
        if any(getattr(args, k, None) not in (None, []) for k in group):
            late -= group  # a source on the command line replaces the file's
    for key in late & set(values):
        if getattr(args, key, None) in (None, []):
            setattr(args, key, values[key])
    return args


def mask(key: str, value):
    """`value` of setting `key` with its secrets masked: a secret setting's whole value; the
    password of any URI (a camera's `rtsp://user:password@…` too), and what an event sink's URI
    may hide a token in (a user name alone, query values, long path segments: the rules of the
    names sinks are shown by). A ${NAME} reference stays: it names a secret, it is not one."""
    if value in (None, "", [], ()):
        return value
    if isinstance(value, str) and ENV_REFERENCE.fullmatch(value):
        return value
    if any(word in key for word in SECRET_WORDS):
        return MASK
    if isinstance(value, (list, tuple)):
        return [mask(key, v) for v in value]
    if isinstance(value, str) and "://" in value:
        name, sep, uri = value.partition("=")
        if sep and "://" in uri and "://" not in name:  # a camera's NAME=URI
            return f"{name}={mask_uri(uri)}"
        return mask_uri(value)
    return value


def mask_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https", "mqtt", "mqtts"):  # an event sink
        return masked(uri, MASK, keep_references=True)
    if parts.password is None or ENV_REFERENCE.fullmatch(parts.password):
        return uri  # nothing secret in it: as written
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


# settings that name files or folders (a source or an --events value only when it is not a URI,
# a camera index or the display)
PATH_SETTINGS = {"engine", "video", "source", "root", "segments", "clips", "events",
                 "events_credentials", "events_ca", "events_cert", "events_key", "output",
                 "spool", "summary"}  # fmt: skip


def absolute(key: str, value):
    """A path setting's value made absolute: the file is read from elsewhere (a service runs in
    its own folder), so a path relative to where --print-config ran would point nowhere."""
    if isinstance(value, (list, tuple)):
        return [absolute(key, v) for v in value]
    if key not in PATH_SETTINGS or not isinstance(value, str) or "://" in value:
        return value
    name, sep, path = value.partition("=") if key == "source" else ("", "", value)
    if not sep or not NAME.match(name):  # a source's NAME=, as parse_source_specs reads it
        name, sep, path = "", "", value
    if not path or path.isdigit() or path == "display" or ENV_REFERENCE.search(path):
        return value
    return f"{name}{sep}{os.path.abspath(os.path.expanduser(path))}"


def config_text(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The effective settings of `args` as a --config file: each setting with its help as a
    comment, unset ones commented out, paths made absolute, secrets masked."""
    lines = [
        "# art-edge --config FILE runs this rig; a flag given beside the file wins over it.",
        f"# Secrets are masked ({MASK}): put them back, or give them as flags, before using it.",
    ]
    for key, action in setting_actions(parser).items():
        value = getattr(args, key, None)
        lines.append("")
        help_text = (action.help or "").replace("%%", "%")
        lines += textwrap.wrap(help_text, 98, initial_indent="# ", subsequent_indent="# ")
        if value is None or (isinstance(value, (list, tuple)) and not value):
            lines.append(f"# {key} =")
        else:
            lines.append(f"{key} = {toml_value(mask(key, absolute(key, value)))}")
    return "\n".join(lines) + "\n"
