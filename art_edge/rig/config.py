"""art-edge's settings: one tree of dataclasses. Each setting's default, flag, help and check are
stated once, in its field; the tree is checked once, when it is built; art-edge's flags are
generated from it, and the Python API takes the same settings by the same names.

    config = RigConfig.from_settings(stride=2, segments="segments.jsonl", events=["ev.jsonl"])
    add_flags(parser)                        # --window, --stride, ..., --web-fps
    config = RigConfig.from_flags(args)      # what argparse parsed

A setting's name is its field's, or the `name` its metadata gives (`segment.path`: segments),
unique in the tree; its flag is --NAME (dashes for underscores) unless `flag` says otherwise
(`threaded`: --no-threads). A section (`stream=StreamConfig(...)`) may also be given whole. The
rest of a field's metadata: `help` (a field without it has no flag) and `check` (an
art_edge.errors.Number, or a function of the value and the flag that raises UserError).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from art_edge.errors import (
    Number,
    UserError,
    fraction,
    non_negative_float,
    non_negative_int,
    parse_duration,
    parse_size,
    positive_float,
    positive_int,
)
from art_edge.files import check_writable, is_loopback, parse_host_port, parse_origin
from art_edge.rig.camera import NAME
from art_edge.rig.clips import Retention, check_clip_options
from art_edge.rig.credentials import expand_env, read_logins, tls_context
from art_edge.rig.outlets import Rotation
from art_edge.rig.sinks import TLS, check_sink_specs
from art_edge.runtime.streaming import StreamConfig
from art_edge.video.detect import check_detector
from art_edge.video.outputs import check_output


def setting(default, help: str | None = None, check=None, name=None, flag=None, **flag_options):
    """A field of the tree (see the module docstring); `flag_options` go to argparse (metavar)."""
    meta = {"help": help, "check": check, "name": name, "flag": flag, "argparse": flag_options}
    return field(default=default, metadata=meta)


def check_size(value, flag: str):
    parse_size(value, flag)


def one_of(*choices):
    def check(value, flag: str):
        if value not in choices:
            raise UserError(f"{flag} {value!r}: use {' or '.join(choices)}")

    return check


@dataclass(frozen=True)
class SourceConfig:
    """How the cameras' sources are read."""

    realtime: bool = setting(False, "play a file at its own frame rate (drop when slow)")
    reconnect_timeout: float = setting(
        0.0,
        "seconds to keep retrying a camera that cannot be opened or was lost (0: for ever)",
        non_negative_float,
    )
    root: str | None = setting(None, "folder for relative paths in a LIST source")
    open_timeout: float = setting(
        10.0, "seconds a network stream may take to open (each try)", positive_float
    )
    read_timeout: float = setting(
        10.0, "seconds without a frame before a network stream counts as lost", positive_float
    )


@dataclass(frozen=True)
class SegmentConfig:
    """Actions as segments: a run of one label whose smoothed score stays at min_score or more."""

    path: str | None = setting(
        None, "segments JSONL: one line per finished action", name="segments"
    )
    min_score: float = setting(
        0.5, "a segment's smoothed score stays at or above this (below: idle)", fraction
    )
    min_duration: float = setting(
        0.5, "seconds: shorter segments are dropped as flicker", non_negative_float
    )

    def validate(self):
        if self.path:
            check_writable(self.path, "--segments", is_file=True)


@dataclass(frozen=True)
class ClipConfig:
    """A video per segment, from `pre` seconds before it to `post` seconds after it."""

    folder: str | None = setting(None, "folder: a video per segment", name="clips")
    pre: float = setting(2.0, "seconds of video before a segment's start")
    post: float = setting(2.0, "seconds after its end")
    history: float = setting(
        30.0,
        "seconds of frames each camera keeps for its clips (JPEG: ~45 MB for 720p at 30 FPS)",
        positive_float,
        name="clip_history",
    )
    raw: bool = setting(False, "clips without the annotation", name="raw_clips", flag="--raw")
    retain: str | None = setting(
        None,
        "keep the clips folder within a size and/or an age, the oldest clips deleted first: "
        "20GB, 7d or 20GB,7d",
        metavar="SIZE,AGE",
    )
    min_free: str = setting(
        "100MB",
        "pause clip writing while the disk of the clips has less free space than this (0: never)",
        check_size,
        metavar="SIZE",
    )

    def validate(self):
        check_clip_options(self.folder, self.pre, self.post, self.history)
        self.retention()

    def retention(self) -> Retention:
        """--retain as a size and an age (an age's unit is s, min, h, d or w)."""
        size = age = 0
        for part in filter(None, (self.retain or "").split(",")):
            if part.strip().lstrip("0123456789.").strip().lower() in ("s", "min", "h", "d", "w"):
                age = parse_duration(part, "--retain")
            else:
                size = parse_size(part, "--retain")
        return Retention(size, age)

    def min_free_bytes(self) -> int:
        return parse_size(self.min_free, "--min-free")


@dataclass(frozen=True)
class EventConfig:
    """Where the decisions and segments go as events, which decisions, and the network sinks'
    credentials and TLS (art_edge.rig.credentials)."""

    sinks: tuple = setting(
        (),
        "repeatable: a .jsonl path (one event a line), mqtt(s)://[USER:PASSWORD@]HOST:PORT/TOPIC "
        "(QoS 1; mqtts: TLS) or http(s)://… (a JSON POST each, retried); ${NAME} is read from "
        "the environment",
        name="events",
        action="append",
    )
    # "change": an event when the decided label changes; "decision": every decision
    emit: str = setting(
        "change",
        "when to write an event",
        one_of("change", "decision"),
        metavar="{change,decision}",
    )
    credentials: str | None = setting(
        None,
        "a netrc file (machine HOST login USER password PASSWORD, readable by you only): the "
        "logins of the sinks whose URI has none (MQTT's; HTTP Basic for a webhook)",
        name="events_credentials",
        metavar="FILE",
    )
    ca: str | None = setting(
        None,
        "CA certificates (PEM) that mqtts:// brokers and https:// webhooks are verified against "
        "(default: the system's)",
        name="events_ca",
        metavar="FILE",
    )
    cert: str | None = setting(
        None,
        "a client certificate (PEM) for the mqtts:// and https:// sinks",
        name="events_cert",
        metavar="FILE",
    )
    key: str | None = setting(
        None,
        "the client certificate's private key (PEM; default: in --events-cert)",
        name="events_key",
        metavar="FILE",
    )

    def __post_init__(self):  # one sink may be given as a string; ${NAME}s come from the env
        sinks = [self.sinks] if isinstance(self.sinks, str) else self.sinks
        object.__setattr__(
            self, "sinks", tuple(expand_env(str(s), "--events", "://" in str(s)) for s in sinks)
        )

    def validate(self):
        check_sink_specs(self.sinks)
        if self.credentials:
            read_logins(self.credentials)
        if self.key and not self.cert:
            raise UserError("--events-key needs --events-cert (the certificate it belongs to)")
        if (self.ca or self.cert) and not any(s.startswith(TLS) for s in self.sinks):
            flag = "--events-ca" if self.ca else "--events-cert"
            raise UserError(
                f"{flag}: no mqtts:// or https:// sink uses it; give the TLS sink (mqtts://, "
                "https://) or drop the flag"
            )
        self.tls()

    def tls(self):
        """The TLS context of the mqtts:// and https:// sinks (None when there are none)."""
        if not any(s.startswith(TLS) for s in self.sinks):
            return None
        return tls_context(self.ca, self.cert, self.key)

    def logins(self):
        """The netrc logins of --events-credentials (None without it)."""
        return read_logins(self.credentials) if self.credentials else None


@dataclass(frozen=True)
class VideoConfig:
    """The annotated video of one camera."""

    output: str | None = setting(None, "annotated video (.mp4/.avi) or 'display' (one camera)")
    headless: bool = setting(False, "draw nothing")

    def validate(self):
        if self.headless and self.output:
            raise UserError("--headless draws nothing: drop --output, or drop --headless")
        if self.output:
            check_output(self.output)


@dataclass(frozen=True)
class PrometheusConfig:
    """Prometheus /metrics and /healthz."""

    address: str | None = setting(
        None,
        "HOST:PORT: Prometheus /metrics and /healthz (HOST default 127.0.0.1)",
        name="metrics",
    )

    def validate(self):
        if self.address:
            parse_host_port(self.address, "--metrics")


@dataclass(frozen=True)
class DashboardConfig:
    """The live dashboard in the browser."""

    address: str | None = setting(
        None,
        "a live dashboard in the browser (HOST default 127.0.0.1; any other address needs "
        "--web-token)",
        name="web",
        metavar="HOST:PORT",
    )
    token: str | None = setting(
        None,
        "a secret every dashboard request must carry (${NAME}: from the environment)",
        name="web_token",
        metavar="SECRET",
    )
    fps: float = setting(
        5.0,
        "the dashboard's frames per camera, at most (recognition never waits for the page)",
        positive_float,
        name="web_fps",
        metavar="N",
    )
    origins: tuple = setting(
        (),
        "repeatable: another origin (scheme://HOST[:PORT]) whose pages may use the dashboard and "
        "whose name it answers to, e.g. a reverse proxy's https://rig.example.org",
        name="web_origin",
        metavar="ORIGIN",
        action="append",
    )
    clients: int = setting(
        64,
        "browsers the dashboard serves at once (its WebSockets); more are turned away",
        Number(int, 1, 1024, what="an integer in [1, 1024]"),
        name="web_clients",
        metavar="N",
    )
    cpu: float = setting(
        0.03,
        "the dashboard's share of the CPU the rig has (what it uses and what lies idle), at "
        "most: its frames adapt to it",
        Number(float, 0.0, 1.0, min_open=True, what="a fraction in (0, 1]"),
        name="web_cpu",
        metavar="FRACTION",
    )

    def __post_init__(self):
        origins = [self.origins] if isinstance(self.origins, str) else self.origins
        object.__setattr__(self, "origins", tuple(str(o) for o in origins))
        if self.token:
            object.__setattr__(self, "token", expand_env(self.token, "--web-token"))

    def validate(self):
        """The address is HOST:PORT; beyond localhost it needs a token; origins are origins."""
        if self.token is not None and not self.token:
            raise UserError("--web-token: give a non-empty secret")
        for origin in self.origins:
            parse_origin(origin)
        if not self.address:
            if self.token or self.origins:
                flag = "--web-token" if self.token else "--web-origin"
                raise UserError(f"{flag} needs --web HOST:PORT (the dashboard it is for)")
            return
        host, _ = parse_host_port(self.address, "--web")
        if not is_loopback(host) and not self.token:
            raise UserError(
                f"--web {self.address}: serving beyond localhost needs --web-token SECRET (every "
                "request must then carry it); or bind 127.0.0.1"
            )


@dataclass(frozen=True)
class TrackConfig:
    """Several athletes a camera: a detector, a tracker, and a lane (window, decisions, segments)
    for each track, its crop following it (art_edge.video.tracks)."""

    detectors: tuple = setting(
        (),
        "track the people each camera sees and recognise each one's actions: motion (background "
        "subtraction, fixed cameras; the default), hog (OpenCV's people detector) or onnx:PATH "
        "(a YOLO-layout ONNX detector); NAME=DETECTOR for one camera; repeatable",
        name="track",
        action="append",
        nargs="?",
        const="motion",
        metavar="[NAME=]DETECTOR",
    )
    every: int = setting(
        1, "run the detector every N frames (the tracker predicts between)", positive_int,
        name="detect_every", metavar="N",
    )  # fmt: skip
    max_tracks: int = setting(
        8, "tracks served per camera at most (the others are counted)", positive_int, metavar="N"
    )
    pad: float = setting(
        1.0, "a track's crop: a square this many times its box's longer side",
        Number(float, 1.0, 3.0, what="a number in [1, 3]"), name="track_pad", metavar="X",
    )  # fmt: skip

    def __post_init__(self):  # one detector may be given as a string
        given = [self.detectors] if isinstance(self.detectors, str) else self.detectors
        object.__setattr__(self, "detectors", tuple(str(d) for d in given))

    def validate(self):
        for _, detector in self.per_camera():
            check_detector(detector)

    def per_camera(self) -> list[tuple[str | None, str]]:
        """(camera name or None for every camera, detector) of each --track."""
        found = []
        for spec in self.detectors:
            name, sep, detector = spec.partition("=")
            named = sep and NAME.match(name) and name not in ("motion", "hog")
            found.append((name, detector) if named else (None, spec))
        return found

    def detector_for(self, camera: str) -> str | None:
        """The detector of `camera` (None: not tracked)."""
        chosen = None
        for name, detector in self.per_camera():
            if name in (None, camera):
                chosen = detector if name == camera or chosen is None else chosen
        return chosen


@dataclass(frozen=True)
class UnattendedConfig:
    """What keeps a rig going for weeks with nobody watching: JSONL rotation, the network
    events' spool, and the bound on shutdown."""

    rotate: str | None = setting(
        None,
        "start a new --events/--segments JSONL file at this size and/or each day: 100MB, daily "
        "or 100MB,daily (the old ones: NAME.1, NAME.2, …)",
        metavar="SIZE,daily",
    )
    rotate_keep: int = setting(5, "old JSONL files kept per output (--rotate)", non_negative_int)
    spool: str | None = setting(
        None,
        "folder where MQTT and webhook events wait, in order and across restarts, while their "
        "endpoint is away (default: in memory, 1000 events a sink)",
        metavar="DIR",
    )
    spool_size: str = setting(
        "100MB",
        "the most each network sink's spool holds; beyond it the oldest events are dropped "
        "(counted)",
        check_size,
        metavar="SIZE",
    )
    stop_timeout: float = setting(
        10.0,
        "seconds the outputs get at shutdown to write what they hold; what is left then is "
        "counted lost, and the run ends",
        positive_float,
    )

    def validate(self):
        self.rotation()
        if self.spool:
            path = Path(self.spool)
            if path.exists() and not path.is_dir():
                raise UserError(f"--spool {self.spool}: a file, not a folder; give a folder")
            check_writable(path / ".probe", "--spool")

    def rotation(self) -> Rotation:
        size, daily = 0, False
        for part in filter(None, (self.rotate or "").split(",")):
            if part.strip().lower() == "daily":
                daily = True
            else:
                size = parse_size(part, "--rotate")
        return Rotation(size, daily, self.rotate_keep)

    def spool_bytes(self) -> int:
        return parse_size(self.spool_size, "--spool-size")


def section(cls):
    return field(default_factory=cls)


@dataclass(frozen=True)
class RigConfig:
    """Everything art-edge does with the frames of its cameras, and where the results go."""

    stream: StreamConfig = section(StreamConfig)
    source: SourceConfig = section(SourceConfig)
    max_frames: int = setting(0, "stop after N frames (0: until the source ends)", non_negative_int)
    # reading, encoding and the head on threads of their own (False: all in one, as a baseline)
    threaded: bool = setting(
        True,
        "read, encode and decide in one thread (a decision then holds up the frames behind it)",
        flag="--no-threads",
    )
    # a camera with no decision for this long is failed in /healthz (the page: no signal)
    stale_after: float = setting(
        10.0,
        "seconds without a decision after which /healthz reports a camera failed (and an "
        "output whose write has not returned, stuck)",
        positive_float,
    )
    segment: SegmentConfig = section(SegmentConfig)
    clip: ClipConfig = section(ClipConfig)
    event: EventConfig = section(EventConfig)
    video: VideoConfig = section(VideoConfig)
    prometheus: PrometheusConfig = section(PrometheusConfig)
    dashboard: DashboardConfig = section(DashboardConfig)
    unattended: UnattendedConfig = section(UnattendedConfig)
    tracking: TrackConfig = section(TrackConfig)

    def __post_init__(self):
        validate(self)

    @classmethod
    def from_settings(cls, **settings) -> RigConfig:
        """The tree from settings by name (`stride=2`, `segments="s.jsonl"`) or whole sections
        (`stream=StreamConfig(...)`); the rest keep their defaults."""
        return from_settings(cls, settings)

    @classmethod
    def from_flags(cls, args: argparse.Namespace) -> RigConfig:
        """The tree from what argparse parsed of the flags add_flags added."""
        return from_flags(cls, args)


def from_settings(cls, settings: dict):
    """A tree of settings (RigConfig, or another dataclass of settings) from settings by name."""
    settings = dict(settings)
    config = _build(cls, settings)
    if settings:
        raise TypeError(f"unknown settings {sorted(settings)}; see {cls.__module__}.{cls.__name__}")
    return config


def from_flags(cls, args: argparse.Namespace):
    """A tree of settings from what argparse parsed of the flags add_flags added."""
    given = {name: getattr(args, name, None) for name, _ in settings_of(cls)}
    return from_settings(cls, {k: v for k, v in given.items() if v is not None})


def _is_section(f) -> bool:
    return isinstance(f.default_factory, type) and is_dataclass(f.default_factory)


def settings_of(cls):
    """Every setting of the tree under `cls`: (name, field)."""
    for f in fields(cls):
        if _is_section(f):
            yield from settings_of(f.default_factory)
        else:
            yield f.metadata.get("name") or f.name, f


def flag_of(name: str, f) -> str:
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def _build(cls, given: dict):
    """An instance of `cls` (a section or the tree) from the settings in `given`, which are
    taken out of it."""
    values = {}
    for f in fields(cls):
        if _is_section(f):
            whole = given.pop(f.name, None)
            values[f.name] = whole if whole is not None else _build(f.default_factory, given)
        elif (f.metadata.get("name") or f.name) in given:
            values[f.name] = given.pop(f.metadata.get("name") or f.name)
    return cls(**values)


def validate(config):
    """Each setting's own check, then each section's checks across its settings, once."""
    for f in fields(config):
        value = getattr(config, f.name)
        if _is_section(f):
            validate(value)
            continue
        check = f.metadata.get("check")
        if check is not None and value is not None:  # None: not given, where that may be
            name = f.metadata.get("name") or f.name
            (check.check if isinstance(check, Number) else check)(value, flag_of(name, f))
    if hasattr(config, "validate"):
        config.validate()


def add_flags(parser: argparse.ArgumentParser, cls=RigConfig):
    """A flag for each setting with a help text, its default the field's."""
    for name, f in settings_of(cls):
        meta = f.metadata
        if not meta.get("help"):
            continue
        options = {"dest": name, "help": meta["help"], **meta.get("argparse", {})}
        if isinstance(f.default, bool):
            options["action"] = "store_false" if f.default else "store_true"
        elif options.get("action") == "append":
            options["default"] = None  # none given: the field's default
        else:
            check = meta.get("check")
            kind = type(f.default) if isinstance(f.default, (int, float)) else str
            options.update(type=check.convert if isinstance(check, Number) else kind)
            options["default"] = f.default
        parser.add_argument(flag_of(name, f), **options)
