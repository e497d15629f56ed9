"""The event sinks' secrets: where they come from, how they are used, and that they are never shown.

    uri = expand_env("mqtts://rig:${MQTT_PASSWORD}@broker/rig/events", "--events")
    masked(uri)                    # 'mqtts://rig:***@broker/rig/events'
    redact(str(error), uri)        # the URI's secrets, wherever they appear, as ***
    read_logins("creds.netrc")     # netrc: machine HOST login USER password PASSWORD
    tls_context(ca, cert, key)     # verifies the server (the system's CAs, or `ca`)

A sink's credentials come from its URI (`user:password@`, query values such as `?apikey=`), whose
`${NAME}`s are read from the environment (so that a secret need not be on the command line, where
every user of the machine can read it), or from a netrc file (--events-credentials). A sink is
shown (the summary, /metrics labels, warnings, errors) only by its masked name: the password, a
user name given alone, every query value and every path segment of 16 characters or more (the
token of a Slack or Discord webhook URL) replaced by ***.
"""

from __future__ import annotations

import netrc
import os
import re
import ssl
import stat
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from art_edge.errors import UserError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "***"
LONG_SEGMENT = 16  # a path segment this long may be a token: masked


def expand_env(text: str, flag: str, in_uri: bool = False) -> str:
    """`text` with each ${NAME} replaced by the environment's NAME; a NAME that is not set is
    an error (an empty password is better refused than sent). `in_uri`: the values are
    percent-encoded, so that a password with `/`, `@`, `#` or `?` in it stays one part of the URI
    (and masked as one)."""

    def value(match):
        name = match.group(1)
        if name not in os.environ:
            raise UserError(
                f"{flag} {masked(text)}: ${{{name}}} is not set in the environment; export it "
                "before starting art-edge"
            )
        return quote(os.environ[name], safe="") if in_uri else os.environ[name]

    return ENV_REFERENCE.sub(value, text)


def _split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """'user:pass@host:port' → (user, password, 'host:port'), each None when absent."""
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), hostport


def secrets_of(uri: str) -> list[str]:
    """The parts of `uri` that may be secret, as written and percent-decoded, longest first."""
    parts = urlsplit(uri)
    user, password, _ = _split_userinfo(parts.netloc)
    found = [password] if password else []
    if user and password is None:
        found.append(user)
    for pair in parts.query.split("&"):
        found.append(pair.partition("=")[2])
    found += [s for s in parts.path.split("/") if len(s) >= LONG_SEGMENT]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def masked(uri: str, marker: str = MASK, keep_references: bool = False) -> str:
    """The name a sink is shown by: its URI with every secret part replaced by `marker`.
    `keep_references`: a part that is a ${NAME} reference stays as written (it names a secret,
    it is not one: --print-config keeps it)."""
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return uri  # a file path

    def hide(secret: str) -> str:
        return secret if keep_references and ENV_REFERENCE.fullmatch(secret) else marker

    user, password, hostport = _split_userinfo(parts.netloc)
    if password is not None:
        hostport = f"{user}:{hide(password)}@{hostport}"
    elif user:
        hostport = f"{hide(user)}@{hostport}"
    path = "/".join(hide(s) if len(s) >= LONG_SEGMENT else s for s in parts.path.split("/"))
    query = "&".join(
        f"{pair.partition('=')[0]}={hide(pair.partition('=')[2])}" if "=" in pair else hide(pair)
        for pair in parts.query.split("&")
        if pair
    )
    return f"{parts.scheme}://{hostport}{path}" + (f"?{query}" if query else "")


def redact(text: str, uri: str) -> str:
    """`text` (an error message) with every secret of `uri` in it replaced by ***."""
    for secret in secrets_of(uri):
        if len(secret) >= 3:  # shorter, it would garble the message and protect nothing
            text = text.replace(secret, MASK)
    return text


def userinfo(uri: str) -> tuple[str, str | None] | None:
    """The user and password written in `uri` (percent-decoded), or None."""
    user, password, _ = _split_userinfo(urlsplit(uri).netloc)
    if not user:
        return None
    return unquote(user), (unquote(password) if password is not None else None)


def without_userinfo(uri: str) -> str:
    parts = urlsplit(uri)
    return parts._replace(netloc=_split_userinfo(parts.netloc)[2]).geturl()


def read_logins(path, flag: str = "--events-credentials") -> netrc.netrc:
    """A netrc file of logins, readable by its owner only (as ssh insists for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file; give a netrc file of the sinks' logins")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"{flag} {path}: other users can read it (mode {stat.S_IMODE(mode):04o}); "
            f"chmod 600 {path}"
        )
    try:
        return netrc.netrc(str(path))
    except (netrc.NetrcParseError, UnicodeDecodeError) as e:
        line = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
        raise UserError(
            f"{flag} {path}: not a netrc file{line}; write lines of the form "
            "'machine HOST login USER password PASSWORD'"
        ) from None


def login_for(logins: netrc.netrc | None, host: str) -> tuple[str, str | None] | None:
    """(user, password) of `host` in the netrc logins (its `default` entry otherwise), or None."""
    found = logins.authenticators(host) if logins is not None else None
    return (found[0], found[2]) if found else None


def tls_context(ca=None, cert=None, key=None) -> ssl.SSLContext:
    """A client's TLS context that verifies the server's certificate and name against the
    system's CAs, or against `ca` (PEM) alone; with `cert` (and `key`), a client certificate."""
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise UserError(
            f"--events-ca {ca}: cannot read CA certificates from it ({_reason(e)}); give a PEM file"
        ) from None
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise UserError(
                f"--events-cert {cert}: cannot load the client certificate and its key "
                f"({_reason(e)}); give PEM files (the key with --events-key if it is apart)"
            ) from None
    return context


def _reason(error: Exception) -> str:
    return getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
