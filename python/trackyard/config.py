"""Server configuration: a strict, LiveKit-compatible subset of livekit-server's YAML.

Accepted keys (anything else is rejected, naming the full dotted key)::

    port: 7880                      # HTTP / WebSocket / Twirp listener
    bind_addresses: ["0.0.0.0"]
    keys: {api_key: secret}         # merged with key_file and LIVEKIT_KEYS
    key_file: path                  # YAML file of "key: secret" lines (relative to the CWD)
    region: ""
    development: false              # same effect as --dev
    rtc: {udp_port: 7882, tcp_port: 7881, node_ip: "", use_external_ip: false}
    room: {auto_create: true, empty_timeout: 300, departure_timeout: 20,
           max_participants: 0, enable_remote_unmute: false}
    limit: {max_metadata_size, max_attributes_size, max_room_name_length,
            max_participant_identity_length, max_participant_name_length,
            max_api_request_body_size, signal_message_size_limit}
    webhook: {urls: [], api_key: "", filter_params: {include_events: [], exclude_events: []}}
    logging: {level: info, json: true}        # level: debug|info|warn|warning|error; json: false with --dev
    metrics: {enabled: true, username: "", password: ""}   # trackyard-specific: /metrics, basic auth
    signal: {ping_interval: 5, ping_timeout: 15, reconnect_timeout: 15.0}   # trackyard-specific
    etcd: {endpoints: [], prefix: /trackyard/, username: "", password: "",   # trackyard-specific;
           ca_file: "", cert_file: "", key_file: "", dial_timeout: 3.0}    # no endpoints = single node
    node: {role: all, id: "", grpc_port: 7890, grpc_bind: "", grpc_address: "",  # trackyard-specific:
           lease_ttl: 10, load_interval: 3.0, drain_timeout: 60,                # cluster roles
           capacity: {max_rooms: 0, max_participants: 0, max_tracks: 0, max_bandwidth: 0}}

Sources, in order: ``body`` argument, else the file at ``path``, else the ``LIVEKIT_CONFIG``
environment variable, else an empty config. Keys: ``key_file`` < ``keys`` < ``LIVEKIT_KEYS``.
Values known only when the process starts (Kubernetes downward API, Secrets) come from the
variables in :data:`ENV_OVERRIDES`; set and non-empty, they win over the file.
Every problem raises :class:`trackyard.errors.ConfigError` naming the key.

To add a section: define its dataclass and add one ``field(default_factory=...)`` line to
:class:`Config`; parsing and :func:`config_to_yaml` follow the annotations. Range and
choice rules live in ``_RANGES`` / ``_CHOICES`` keyed by dotted path.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from trackyard.errors import ConfigError

logger = logging.getLogger(__name__)

DEV_KEYS = {"devkey": "secret"}
MIN_SECRET_LENGTH = 32
ENV_OVERRIDES = {  # environment variable -> (section, key)
    "NODE_IP": ("rtc", "node_ip"),  # LiveKit's variable name
    "TRACKYARD_GRPC_ADDRESS": ("node", "grpc_address"),
    "TRACKYARD_ETCD_USERNAME": ("etcd", "username"),
    "TRACKYARD_ETCD_PASSWORD": ("etcd", "password"),
    "TRACKYARD_METRICS_PASSWORD": ("metrics", "password"),
}


@dataclass
class RTCConfig:
    udp_port: int = 7882          # single UDP mux port for media
    tcp_port: int = 7881          # ICE/TCP port
    node_ip: str = ""             # address advertised in ICE candidates ("" = discover)
    use_external_ip: bool = False  # discover the public address via STUN (wins over node_ip, as in LiveKit)
    udp_gso: bool = True          # coalesce a subscriber's datagrams into one send (UDP GSO)
    stun_servers: list[str] = field(default_factory=list)  # "host:port" asked by use_external_ip


@dataclass
class RoomConfig:
    auto_create: bool = True
    empty_timeout: int = 300      # seconds
    departure_timeout: int = 20   # seconds
    max_participants: int = 0     # 0 = unlimited
    enable_remote_unmute: bool = False


@dataclass
class LimitConfig:
    max_metadata_size: int = 524288
    max_attributes_size: int = 65536
    max_room_name_length: int = 256
    max_participant_identity_length: int = 256
    max_participant_name_length: int = 256
    max_api_request_body_size: int = 10 * 1024 * 1024
    signal_message_size_limit: int = 1024 * 1024  # max decompressed signal message


_FILTER = {"group": "filter_params"}  # field lives under webhook.filter_params in YAML


@dataclass
class WebhookConfig:
    urls: list[str] = field(default_factory=list)
    api_key: str = ""
    include_events: list[str] = field(default_factory=list, metadata=_FILTER)
    exclude_events: list[str] = field(default_factory=list, metadata=_FILTER)


@dataclass
class LoggingConfig:
    level: str = "info"           # debug|info|warning|error ("warn" is normalised)
    json: bool = True             # one JSON object per line; --dev: false unless set


@dataclass
class MetricsConfig:
    """Prometheus metrics on ``/metrics`` of the HTTP port (see docs/operations.md)."""

    enabled: bool = True
    username: str = ""            # basic auth for /metrics; set together with password
    password: str = ""


@dataclass
class SignalConfig:
    ping_interval: int = 5        # seconds
    ping_timeout: int = 15        # seconds, >= ping_interval
    reconnect_timeout: float = 15.0  # seconds a vanished participant is kept for a resume


@dataclass
class EtcdConfig:
    """Cluster state store (see docs/cluster.md). No endpoints = single-node mode, no etcd."""

    endpoints: list[str] = field(default_factory=list)  # "host:port" or "http(s)://host:port"
    prefix: str = "/trackyard/"   # every key trackyard writes starts with this; normalised to end in "/"
    username: str = ""            # etcd auth; set together with password
    password: str = ""
    ca_file: str = ""             # PEM CA bundle: enables TLS (required for https:// endpoints)
    cert_file: str = ""           # client certificate + key for mutual TLS (both or neither)
    key_file: str = ""
    dial_timeout: float = 3.0     # seconds: bound on every etcd call (connect included)

    @property
    def enabled(self) -> bool:
        return bool(self.endpoints)


ROLES = ("all", "control", "media")


@dataclass
class NodeCapacityConfig:
    """Limits placement respects for this media node; 0 = unlimited."""

    max_rooms: int = 0
    max_participants: int = 0
    max_tracks: int = 0
    max_bandwidth: int = 0        # bits per second, in + out


@dataclass
class NodeConfig:
    """This process's part in a cluster (see docs/cluster.md).

    ``all`` (the default): control and media in one process; without etcd this is the
    single-node server. ``control``: signaling endpoints and the RoomService API, relayed to
    media nodes. ``media``: hosts rooms, serves the internal gRPC API. Both need etcd.
    """

    role: str = "all"
    id: str = ""                  # node id; "" = a new ND_… id at every start
    grpc_port: int = 7890         # media nodes: internal gRPC (signal relay, room admin)
    grpc_bind: str = ""           # listen address for gRPC; "" = each of bind_addresses
    grpc_address: str = ""        # "host:port" control nodes dial; "" = rtc.node_ip or the bind address
    lease_ttl: int = 10           # seconds: the node's etcd lease (its records vanish this long after a crash)
    load_interval: float = 3.0    # seconds between load reports
    drain_timeout: float = 60.0   # seconds: SIGTERM on a media node moves its rooms away within this, then exits
    capacity: NodeCapacityConfig = field(default_factory=NodeCapacityConfig)

    @property
    def hosts_rooms(self) -> bool:
        return self.role in ("all", "media")

    @property
    def serves_clients(self) -> bool:
        return self.role in ("all", "control")


@dataclass
class Config:
    port: int = 7880
    bind_addresses: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    keys: dict[str, str] = field(default_factory=dict)
    region: str = ""
    development: bool = False
    rtc: RTCConfig = field(default_factory=RTCConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    limit: LimitConfig = field(default_factory=LimitConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    node: NodeConfig = field(default_factory=NodeConfig)


_PORT = (1, 65535)
_RANGES: dict[str, tuple[float, float | None]] = {
    "port": _PORT,
    "rtc.udp_port": _PORT,
    "rtc.tcp_port": (0, 65535),  # 0: no ICE-TCP
    "room.empty_timeout": (0, None),
    "room.departure_timeout": (0, None),
    "room.max_participants": (0, None),
    "signal.ping_interval": (1, None),
    "signal.ping_timeout": (1, None),
    "signal.reconnect_timeout": (0, None),
    "etcd.dial_timeout": (0.05, 300),
    "node.grpc_port": _PORT,
    "node.lease_ttl": (2, 3600),
    "node.load_interval": (0.1, 3600),
    "node.drain_timeout": (0, 86400),
    **{f"node.capacity.{f.name}": (0, None) for f in dataclasses.fields(NodeCapacityConfig)},
    **{f"limit.{f.name}": (1, None) for f in dataclasses.fields(LimitConfig)},
}
_CHOICES = {"logging.level": ("debug", "info", "warn", "warning", "error"), "node.role": ROLES}


# ---------------------------------------------------------------- parsing


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _mapping(value: Any, path: str) -> dict:
    if value is None:  # an empty section ("room:" with everything commented out)
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
    return value


def _str_map(value: Any, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _mapping(value, path).items():
        if not isinstance(k, str) or not k:
            raise ConfigError(path, "expected a mapping of string to string (bad key)")
        if not isinstance(v, str) or not v:
            raise ConfigError(_join(path, k), "expected a non-empty string secret")
        out[k] = v
    return out


def _convert(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``hint`` (and range/choice rules)."""
    if dataclasses.is_dataclass(hint):
        return _parse_section(hint, _mapping(value, path), path)
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(path, "expected a list of strings")
        return list(value)
    if origin is dict:
        return _str_map(value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected a boolean (true/false), got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        choices = _CHOICES.get(path)
        if choices is not None and value.lower() not in choices:
            raise ConfigError(path, f"must be one of {', '.join(choices)}; got {value!r}")
        return value
    if hint is int or hint is float:
        ok = (int, float) if hint is float else (int,)
        if isinstance(value, bool) or not isinstance(value, ok):
            raise ConfigError(path, f"expected {'a number' if hint is float else 'an integer'}, got {value!r}")
        if hint is float:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(path, f"must be a finite number, got {value!r}")
        lo, hi = _RANGES.get(path, (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ConfigError(path, f"must be {span}, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {hint!r} at {path}")  # programming error


def _parse_section(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    direct: dict[str, dataclasses.Field] = {}
    groups: dict[str, dict[str, dataclasses.Field]] = {}
    for f in dataclasses.fields(cls):
        group = f.metadata.get("group")
        (groups.setdefault(group, {}) if group else direct)[f.name] = f
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = _join(prefix, key)
        if key in direct:
            kwargs[key] = _convert(hints[key], value, path)
        elif key in groups:
            for sub, sub_value in _mapping(value, path).items():
                sub_path = _join(path, sub)
                if sub not in groups[key]:
                    raise ConfigError(sub_path, "unknown key")
                kwargs[sub] = _convert(hints[sub], sub_value, sub_path)
        else:
            raise ConfigError(path, "unknown key")
    return cls(**kwargs)


def _load_yaml(text: str, source: str, *, loader: type = yaml.SafeLoader) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader or BaseLoader only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("<file>", f"YAML syntax error in {source}{where}: {problem}") from None


def _read_file(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc}") from None


def _parse_keys_text(text: str, source: str) -> dict[str, str]:
    """Parse ``key: secret`` lines, or LiveKit's ``k1: s1, k2: s2`` flag form."""
    try:
        data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - all scalars stay strings
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        data = {}
        for item in text.split(","):
            name, sep, secret = item.partition(":")
            if not sep or not name.strip() or not secret.strip():
                raise ConfigError(source, "expected 'key: secret' entries")
            data[name.strip()] = secret.strip()
    return _str_map(data, source)


# ---------------------------------------------------------------- public API


def load_config(
    path: str | None = None,
    *,
    body: str | None = None,
    dev: bool = False,
    env: Mapping[str, str] | None = None,
    role: str | None = None,
) -> Config:
    """Load, validate and complete the configuration (see the module docstring).

    ``role`` (the ``--role`` flag) overrides ``node.role``."""
    env = os.environ if env is None else env
    if body is not None:
        raw = _load_yaml(body, "config body")
    elif path is not None:
        raw = _load_yaml(_read_file(path, "<file>"), repr(path))
    elif env.get("LIVEKIT_CONFIG"):
        raw = _load_yaml(env["LIVEKIT_CONFIG"], "LIVEKIT_CONFIG")
    else:
        raw = None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("<root>", f"expected a mapping at the top level, got {type(raw).__name__}")
    raw = dict(raw)

    keys: dict[str, str] = {}
    key_file = raw.pop("key_file", None)
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file:
            raise ConfigError("key_file", "expected a file path string")
        keys.update(_parse_keys_text(_read_file(key_file, "key_file"), "key_file"))

    cfg: Config = _parse_section(Config, raw, "")
    for variable, (section, key) in ENV_OVERRIDES.items():
        if env.get(variable, "").strip():
            setattr(getattr(cfg, section), key, env[variable])
    keys.update(cfg.keys)
    if env.get("LIVEKIT_KEYS", "").strip():
        keys.update(_parse_keys_text(env["LIVEKIT_KEYS"], "LIVEKIT_KEYS"))
    cfg.keys = keys
    if role is not None:
        cfg.node.role = _convert(str, role, "node.role")

    dev = dev or cfg.development
    logging_raw = raw.get("logging") or {}
    if dev:
        cfg.development = True
        if "level" not in logging_raw:
            cfg.logging.level = "debug"
        if "json" not in logging_raw:
            cfg.logging.json = False  # readable lines in development, JSON otherwise
        if not cfg.keys:
            cfg.keys = dict(DEV_KEYS)
        if "bind_addresses" not in raw:
            cfg.bind_addresses = ["127.0.0.1"]
        # rtc.udp_port already defaults to the 7882 mux port.
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    """Cross-field checks and normalisation after per-key parsing."""
    cfg.logging.level = cfg.logging.level.lower()
    if cfg.logging.level == "warn":
        cfg.logging.level = "warning"
    if not cfg.bind_addresses:
        raise ConfigError("bind_addresses", "must list at least one address")
    if cfg.rtc.node_ip:
        try:
            ipaddress.ip_address(cfg.rtc.node_ip)
        except ValueError:
            raise ConfigError("rtc.node_ip", f"not an IP address: {cfg.rtc.node_ip!r}") from None
    for i, server in enumerate(cfg.rtc.stun_servers):
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"rtc.stun_servers[{i}]", f"expected host:port, got {server!r}")
    if cfg.rtc.use_external_ip and not cfg.rtc.stun_servers:
        raise ConfigError("rtc.use_external_ip", "needs rtc.stun_servers (host:port of STUN servers to ask)")
    if cfg.rtc.tcp_port and cfg.rtc.tcp_port == cfg.port:
        raise ConfigError("rtc.tcp_port", f"conflicts with port ({cfg.port})")
    if cfg.signal.ping_timeout < cfg.signal.ping_interval:
        raise ConfigError("signal.ping_timeout", "must be >= signal.ping_interval")
    _validate_etcd(cfg.etcd)
    if bool(cfg.metrics.username) != bool(cfg.metrics.password):
        raise ConfigError("metrics.password" if cfg.metrics.username else "metrics.username",
                          "metrics.username and metrics.password are set together")
    _validate_node(cfg)
    if not cfg.keys:
        raise ConfigError(
            "keys",
            "at least one API key is required (set keys, key_file or LIVEKIT_KEYS, or use --dev)",
        )
    if not cfg.development:
        for name, secret in cfg.keys.items():
            if len(secret) < MIN_SECRET_LENGTH:
                logger.warning("secret for API key %r is shorter than %d characters", name, MIN_SECRET_LENGTH)
    hook = cfg.webhook
    for url in hook.urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError("webhook.urls", f"not an http(s) URL: {url!r}")
    if not hook.api_key and len(cfg.keys) == 1:
        hook.api_key = next(iter(cfg.keys))
    if hook.api_key and hook.api_key not in cfg.keys:
        raise ConfigError("webhook.api_key", f"{hook.api_key!r} is not one of the configured keys")
    if hook.urls and not hook.api_key:
        raise ConfigError("webhook.api_key", "required when webhook.urls is set and several keys exist")


def _split_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``[scheme://]host:port`` → (scheme or "", host, port); raises ValueError."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    elif scheme not in ("http", "https"):
        raise ValueError("scheme must be http:// or https://")
    parsed = urlparse(f"//{rest}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
        raise ValueError("expected host:port only")
    if not parsed.hostname or parsed.port is None:  # .port raises ValueError when out of range
        raise ValueError("expected host:port")
    return scheme, parsed.hostname, parsed.port


def _validate_etcd(etcd: EtcdConfig) -> None:
    schemes = set()
    for endpoint in etcd.endpoints:
        try:
            schemes.add(_split_endpoint(endpoint)[0])
        except ValueError as exc:
            raise ConfigError("etcd.endpoints", f"{endpoint!r}: {exc}") from None
    if "http" in schemes and ("https" in schemes or etcd.ca_file):
        raise ConfigError("etcd.endpoints", "http:// endpoints cannot be mixed with https:// or ca_file")
    if "https" in schemes and not etcd.ca_file:
        raise ConfigError("etcd.ca_file", "required for https:// endpoints")
    if not etcd.prefix.strip("/"):
        raise ConfigError("etcd.prefix", f"must name a key prefix such as /trackyard/, got {etcd.prefix!r}")
    if not etcd.prefix.endswith("/"):
        etcd.prefix += "/"
    if bool(etcd.username) != bool(etcd.password):
        raise ConfigError("etcd.password" if etcd.username else "etcd.username",
                          "etcd.username and etcd.password are set together")
    if bool(etcd.cert_file) != bool(etcd.key_file):
        raise ConfigError("etcd.key_file" if etcd.cert_file else "etcd.cert_file",
                          "etcd.cert_file and etcd.key_file are set together")
    if etcd.cert_file and not etcd.ca_file:
        raise ConfigError("etcd.ca_file", "required with etcd.cert_file (client certificates need TLS)")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(etcd, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"etcd.{name}", f"no such file: {path!r}")


def _validate_node(cfg: Config) -> None:
    node = cfg.node
    node.role = node.role.lower()
    if cfg.development and (node.role != "all" or cfg.etcd.enabled):
        raise ConfigError("node.role" if node.role != "all" else "etcd.endpoints",
                          "--dev runs one process (role all) without etcd")
    if node.role in ("control", "media") and not cfg.etcd.enabled:
        raise ConfigError("etcd.endpoints", f"role {node.role!r} needs etcd (set etcd.endpoints)")
    if node.grpc_address:
        try:
            host, port = node.grpc_address.rsplit(":", 1)
            if not host or not 0 < int(port) < 65536:
                raise ValueError
        except ValueError:
            raise ConfigError("node.grpc_address", f"expected host:port, got {node.grpc_address!r}") from None
    if node.grpc_port in (cfg.port, cfg.rtc.tcp_port) and node.hosts_rooms and cfg.etcd.enabled:
        raise ConfigError("node.grpc_port", f"conflicts with another port ({node.grpc_port})")


def _dump_section(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = _dump_section(value)
        elif isinstance(value, (list, dict)):
            value = type(value)(value)
        group = f.metadata.get("group")
        (out.setdefault(group, {}) if group else out)[f.name] = value
    return out


def config_to_yaml(cfg: Config) -> str:
    """Serialise ``cfg`` as YAML that :func:`load_config` reads back to an equal Config."""
    return yaml.safe_dump(_dump_section(cfg), sort_keys=False, default_flow_style=False)
