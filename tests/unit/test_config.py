"""Tests for trackyard.config: defaults, strict parsing, key sources, --dev, YAML round trip."""

from __future__ import annotations

import logging
import textwrap

import pytest

from trackyard.config import (
    Config,
    EtcdConfig,
    LimitConfig,
    RoomConfig,
    RTCConfig,
    SignalConfig,
    config_to_yaml,
    load_config,
)
from trackyard.errors import ConfigError

SECRET = "s" * 40
NOENV: dict[str, str] = {}


def load(body: str, **kw) -> Config:
    kw.setdefault("env", NOENV)
    return load_config(body=textwrap.dedent(body), **kw)


def err(body: str, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(body, **kw)
    return info.value


FULL = f"""
port: 9000
bind_addresses: ["10.0.0.1", "::1"]
keys:
  k1: {SECRET}
  k2: {SECRET}x
region: eu-west
development: false
rtc:
  udp_port: 9002
  tcp_port: 9001
  node_ip: 203.0.113.7
  use_external_ip: true
  stun_servers: ["stun.example:3478", "192.0.2.1:19302"]
room:
  auto_create: false
  empty_timeout: 60
  departure_timeout: 5
  max_participants: 12
  enable_remote_unmute: true
limit:
  max_metadata_size: 1000
  max_attributes_size: 2000
  max_room_name_length: 64
  max_participant_identity_length: 65
  max_participant_name_length: 66
  max_api_request_body_size: 4096
  signal_message_size_limit: 8192
webhook:
  urls: ["http://hooks.example/a", "https://hooks.example/b"]
  api_key: k2
  filter_params:
    include_events: [room_started, participant_joined]
    exclude_events: [track_published]
logging:
  level: WARN
  json: true
signal:
  ping_interval: 3
  ping_timeout: 9
  reconnect_timeout: 2.5
etcd:
  endpoints: ["10.0.0.5:2379", "http://etcd-1.etcd:2379"]
  prefix: /prod/trackyard/
  username: trackyard
  password: hunter2
  dial_timeout: 1.5
"""


# ---------------------------------------------------------------- defaults


def test_dataclass_defaults():
    cfg = Config()
    assert (cfg.port, cfg.bind_addresses, cfg.keys, cfg.region, cfg.development) == (
        7880, ["0.0.0.0"], {}, "", False)
    assert cfg.rtc == RTCConfig(udp_port=7882, tcp_port=7881, node_ip="", use_external_ip=False)
    assert cfg.room == RoomConfig(auto_create=True, empty_timeout=300, departure_timeout=20,
                                  max_participants=0, enable_remote_unmute=False)
    assert cfg.limit.max_metadata_size == 512 * 1024
    assert cfg.limit.max_api_request_body_size == 10 * 1024 * 1024
    assert cfg.limit.signal_message_size_limit == 1024 * 1024
    assert cfg.webhook.urls == [] and cfg.webhook.include_events == [] and cfg.webhook.exclude_events == []
    assert (cfg.logging.level, cfg.logging.json) == ("info", True)
    assert cfg.signal == SignalConfig(ping_interval=5, ping_timeout=15, reconnect_timeout=15.0)
    assert cfg.etcd == EtcdConfig(endpoints=[], prefix="/trackyard/", username="", password="",
                                  ca_file="", cert_file="", key_file="", dial_timeout=3.0)
    assert cfg.etcd.enabled is False  # no endpoints: single-node mode
    assert Config().bind_addresses is not cfg.bind_addresses  # factories, not shared defaults


def test_minimal_file_gets_defaults():
    cfg = load(f"keys: {{k: {SECRET}}}")
    expected = Config(keys={"k": SECRET})
    expected.webhook.api_key = "k"  # the single key becomes the webhook key
    assert cfg == expected


# ---------------------------------------------------------------- full file


def test_full_yaml_every_key():
    cfg = load(FULL)
    assert cfg.port == 9000 and cfg.bind_addresses == ["10.0.0.1", "::1"]
    assert cfg.keys == {"k1": SECRET, "k2": SECRET + "x"}
    assert cfg.region == "eu-west" and cfg.development is False
    assert cfg.rtc == RTCConfig(9002, 9001, "203.0.113.7", True,
                                stun_servers=["stun.example:3478", "192.0.2.1:19302"])
    assert cfg.room == RoomConfig(False, 60, 5, 12, True)
    assert cfg.limit == LimitConfig(1000, 2000, 64, 65, 66, 4096, 8192)
    assert cfg.webhook.urls == ["http://hooks.example/a", "https://hooks.example/b"]
    assert cfg.webhook.api_key == "k2"
    assert cfg.webhook.include_events == ["room_started", "participant_joined"]
    assert cfg.webhook.exclude_events == ["track_published"]
    assert cfg.logging.level == "warning" and cfg.logging.json is True
    assert cfg.signal == SignalConfig(3, 9, 2.5)
    assert cfg.etcd == EtcdConfig(["10.0.0.5:2379", "http://etcd-1.etcd:2379"], "/prod/trackyard/",
                                  "trackyard", "hunter2", "", "", "", 1.5)
    assert cfg.etcd.enabled is True


def test_full_yaml_round_trips():
    cfg = load(FULL)
    again = load(config_to_yaml(cfg))
    assert again == cfg
    assert config_to_yaml(again) == config_to_yaml(cfg)


def test_empty_section_and_empty_file():
    assert load(f"keys: {{k: {SECRET}}}\nroom:\n").room == RoomConfig()
    with pytest.raises(ConfigError) as info:
        load("")
    assert info.value.key == "keys"


def test_int_reconnect_timeout_becomes_float():
    cfg = load(f"keys: {{k: {SECRET}}}\nsignal: {{reconnect_timeout: 7}}")
    assert cfg.signal.reconnect_timeout == 7.0 and isinstance(cfg.signal.reconnect_timeout, float)


# ---------------------------------------------------------------- errors

KEYS = f"keys: {{k: {SECRET}}}\n"


@pytest.mark.parametrize(
    "body, key, words",
    [
        ("room: {emtpy_timeout: 5}", "room.emtpy_timeout", "unknown key"),
        ("prometheus: {port: 9}", "prometheus", "unknown key"),
        ("webhook: {filter_params: {include: [a]}}", "webhook.filter_params.include", "unknown key"),
        ("webhook: {include_events: [a]}", "webhook.include_events", "unknown key"),
        ("port: '7880'", "port", "integer"),
        ("port: true", "port", "integer"),
        ("room: {empty_timeout: 1.5}", "room.empty_timeout", "integer"),
        ("room: {auto_create: 'yes'}", "room.auto_create", "boolean"),
        ("room: {auto_create: 1}", "room.auto_create", "boolean"),
        ("logging: {json: 'true'}", "logging.json", "boolean"),
        ("region: 5", "region", "string"),
        ("bind_addresses: 0.0.0.0", "bind_addresses", "list of strings"),
        ("bind_addresses: [1, 2]", "bind_addresses", "list of strings"),
        ("webhook: {urls: http://x}", "webhook.urls", "list of strings"),
        ("rtc: 5", "rtc", "mapping"),
        ("signal: {reconnect_timeout: 'x'}", "signal.reconnect_timeout", "number"),
        ("port: 0", "port", "between 1 and 65535"),
        ("port: 70000", "port", "between 1 and 65535"),
        ("rtc: {udp_port: 65536}", "rtc.udp_port", "between 1 and 65535"),
        ("rtc: {tcp_port: -1}", "rtc.tcp_port", "between 0 and 65535"),
        ("room: {empty_timeout: -1}", "room.empty_timeout", ">= 0"),
        ("room: {departure_timeout: -1}", "room.departure_timeout", ">= 0"),
        ("room: {max_participants: -3}", "room.max_participants", ">= 0"),
        ("signal: {ping_interval: 0}", "signal.ping_interval", ">= 1"),
        ("signal: {ping_timeout: 0}", "signal.ping_timeout", ">= 1"),
        ("signal: {ping_interval: 10, ping_timeout: 5}", "signal.ping_timeout", "ping_interval"),
        ("signal: {reconnect_timeout: -0.5}", "signal.reconnect_timeout", ">= 0"),
        ("signal: {reconnect_timeout: .nan}", "signal.reconnect_timeout", "finite"),
        ("limit: {max_metadata_size: 0}", "limit.max_metadata_size", ">= 1"),
        ("logging: {level: verbose}", "logging.level", "must be one of"),
        ("rtc: {node_ip: not-an-ip}", "rtc.node_ip", "IP address"),
        ("rtc: {tcp_port: 7880}", "rtc.tcp_port", "conflicts"),
        ("rtc: {use_external_ip: true}", "rtc.use_external_ip", "needs rtc.stun_servers"),
        ("rtc: {stun_servers: [stun.example]}", "rtc.stun_servers[0]", "host:port"),
        ("bind_addresses: []", "bind_addresses", "at least one"),
        ("webhook: {urls: ['ftp://x']}", "webhook.urls", "http"),
    ],
)
def test_bad_values_name_the_dotted_key(body, key, words):
    e = err(KEYS + body)
    assert e.key == key
    assert words in e.problem
    assert repr(key) in str(e)


def test_keys_must_be_string_mapping():
    assert err("keys: [a, b]").key == "keys"
    e = err("keys: {k: 12345}")
    assert e.key == "keys.k" and "string" in e.problem
    assert err("keys: {1: abc}").key == "keys"


def test_top_level_must_be_mapping():
    e = err("- a\n- b\n")
    assert e.key == "<root>" and "mapping" in e.problem
    assert err("just a string").key == "<root>"


def test_missing_keys():
    e = err("port: 7880")
    assert e.key == "keys" and "at least one API key is required" in e.problem


def test_webhook_api_key_must_be_a_configured_key():
    e = err(KEYS + "webhook: {urls: ['http://h/x'], api_key: other}")
    assert e.key == "webhook.api_key" and "not one of the configured keys" in e.problem


def test_webhook_api_key_required_with_several_keys():
    e = err(f"keys: {{a: {SECRET}, b: {SECRET}}}\nwebhook: {{urls: ['http://h/x']}}")
    assert e.key == "webhook.api_key"


def test_webhook_api_key_defaults_to_single_key():
    cfg = load(KEYS + "webhook: {urls: ['http://h/x']}")
    assert cfg.webhook.api_key == "k"


def test_yaml_syntax_error_names_line():
    e = err(KEYS + "room:\n  empty_timeout: [1, 2\n  departure_timeout: 3\n")
    assert e.key == "<file>" and "line" in e.problem
    e = err("port: 1\nrtc: {udp_port: 1\nfoo: : :\n")
    assert e.key == "<file>"


def test_yaml_syntax_error_line_number_from_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("port: 7880\nkeys:\n  k: v\n   bad: indent\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(p), env=NOENV)
    assert info.value.key == "<file>"
    assert "line 4" in info.value.problem and str(p) in info.value.problem


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing), env=NOENV)
    assert info.value.key == "<file>" and "cannot read" in info.value.problem
    assert str(missing) in info.value.problem


def test_short_secret_warns_outside_dev(caplog):
    with caplog.at_level(logging.WARNING, logger="trackyard.config"):
        load("keys: {k: short}")
    assert any("shorter than 32" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trackyard.config"):
        load("", dev=True)
    assert not caplog.records


# ---------------------------------------------------------------- key sources


def test_livekit_keys_env_line_form():
    env = {"LIVEKIT_KEYS": f"a: {SECRET}\nb: 12345\n"}
    cfg = load("", env=env)
    assert cfg.keys == {"a": SECRET, "b": "12345"}


def test_livekit_keys_env_comma_form():
    env = {"LIVEKIT_KEYS": f"a: {SECRET}, b: {SECRET}2"}
    cfg = load("", env=env)
    assert cfg.keys == {"a": SECRET, "b": SECRET + "2"}


def test_livekit_keys_env_wins_over_file_and_merges():
    env = {"LIVEKIT_KEYS": f"a: {SECRET}env"}
    cfg = load(f"keys: {{a: {SECRET}, c: {SECRET}c}}", env=env)
    assert cfg.keys == {"a": SECRET + "env", "c": SECRET + "c"}


def test_livekit_keys_env_malformed():
    e = err("", env={"LIVEKIT_KEYS": "justakey"})
    assert e.key == "LIVEKIT_KEYS"


def test_livekit_config_env_used_without_path_or_body():
    env = {"LIVEKIT_CONFIG": f"port: 9100\nkeys: {{k: {SECRET}}}"}
    assert load_config(env=env).port == 9100
    # body wins over LIVEKIT_CONFIG
    assert load_config(body=f"keys: {{k: {SECRET}}}", env=env).port == 7880


def test_key_file_merged_into_keys(tmp_path):
    kf = tmp_path / "keys.yaml"
    kf.write_text(f"fk: {SECRET}\nshared: {SECRET}file\n")
    cfg = load(f"key_file: {kf}\nkeys: {{shared: {SECRET}inline}}")
    assert cfg.keys == {"fk": SECRET, "shared": SECRET + "inline"}


def test_key_file_errors(tmp_path):
    assert err(f"key_file: {tmp_path / 'missing.yaml'}").key == "key_file"
    assert err("key_file: 5").key == "key_file"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    assert err(f"key_file: {bad}").key == "key_file"


def test_load_from_path(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(FULL)
    assert load_config(str(p), env=NOENV) == load(FULL)


# ---------------------------------------------------------------- --dev


def test_dev_defaults():
    cfg = load_config(dev=True, env=NOENV)
    assert cfg.development is True
    assert cfg.logging.level == "debug"
    assert cfg.keys == {"devkey": "secret"}
    assert cfg.bind_addresses == ["127.0.0.1"]
    assert cfg.rtc.udp_port == 7882
    assert cfg.port == 7880
    assert cfg.webhook.api_key == "devkey"


def test_dev_with_file_overrides():
    cfg = load(
        f"""
        port: 9999
        keys: {{mine: {SECRET}}}
        bind_addresses: [0.0.0.0]
        logging: {{level: error}}
        rtc: {{udp_port: 9998}}
        """,
        dev=True,
    )
    assert cfg.development is True
    assert cfg.port == 9999
    assert cfg.keys == {"mine": SECRET}
    assert cfg.bind_addresses == ["0.0.0.0"]
    assert cfg.logging.level == "error"
    assert cfg.rtc.udp_port == 9998


def test_dev_with_env_keys_does_not_add_devkey():
    cfg = load("", dev=True, env={"LIVEKIT_KEYS": f"e: {SECRET}"})
    assert cfg.keys == {"e": SECRET}


def test_development_true_in_file_acts_like_dev():
    cfg = load("development: true")
    assert cfg.keys == {"devkey": "secret"} and cfg.logging.level == "debug"


def test_dev_config_round_trips_without_dev_flag():
    cfg = load_config(dev=True, env=NOENV)
    assert load(config_to_yaml(cfg)) == cfg


def test_config_to_yaml_round_trip_defaults():
    cfg = Config(keys={"k": SECRET})
    cfg.webhook.api_key = "k"
    text = config_to_yaml(cfg)
    assert "filter_params:" in text and "include_events" in text
    assert load(text) == cfg


# ---------------------------------------------------------------- etcd


def test_etcd_tls_files(tmp_path):
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_text("PEM")
    cfg = load(KEYS + f"""
etcd:
  endpoints: ["https://etcd.example:2379", "[2001:db8::1]:2379"]
  ca_file: {tmp_path / "ca.pem"}
  cert_file: {tmp_path / "client.pem"}
  key_file: {tmp_path / "client-key.pem"}
""")
    assert cfg.etcd.ca_file == str(tmp_path / "ca.pem")
    assert cfg.etcd.key_file == str(tmp_path / "client-key.pem")
    assert load(config_to_yaml(cfg)) == cfg
    # TLS to plain host:port endpoints is allowed (ca_file decides); a CA alone is enough.
    assert load(KEYS + f"etcd: {{endpoints: ['10.0.0.1:2379'], ca_file: {tmp_path / 'ca.pem'}}}").etcd.ca_file


def test_etcd_prefix_normalised_and_dial_timeout_int():
    cfg = load(KEYS + "etcd: {endpoints: ['127.0.0.1:2379'], prefix: /a/b, dial_timeout: 2}")
    assert cfg.etcd.prefix == "/a/b/"
    assert cfg.etcd.dial_timeout == 2.0 and isinstance(cfg.etcd.dial_timeout, float)
    assert load(KEYS + "etcd:\n").etcd == EtcdConfig()


@pytest.mark.parametrize(
    "body, key, words",
    [
        ("etcd: {endpoint: ['a:1']}", "etcd.endpoint", "unknown key"),
        ("etcd: {endpoints: 'a:2379'}", "etcd.endpoints", "list of strings"),
        ("etcd: {endpoints: [a]}", "etcd.endpoints", "host:port"),
        ("etcd: {endpoints: ['a:notaport']}", "etcd.endpoints", "'a:notaport'"),
        ("etcd: {endpoints: ['a:70000']}", "etcd.endpoints", "'a:70000'"),
        ("etcd: {endpoints: ['ftp://a:1']}", "etcd.endpoints", "http:// or https://"),
        ("etcd: {endpoints: ['http://a:1/v3']}", "etcd.endpoints", "host:port only"),
        ("etcd: {endpoints: ['http://u:p@a:1']}", "etcd.endpoints", "host:port only"),
        ("etcd: {endpoints: [':2379']}", "etcd.endpoints", "host:port"),
        ("etcd: {endpoints: ['http://a:1', 'https://b:1'], ca_file: x}", "etcd.endpoints", "mixed"),
        ("etcd: {endpoints: ['https://a:1']}", "etcd.ca_file", "https://"),
        ("etcd: {prefix: ''}", "etcd.prefix", "key prefix"),
        ("etcd: {prefix: /}", "etcd.prefix", "key prefix"),
        ("etcd: {prefix: 5}", "etcd.prefix", "string"),
        ("etcd: {username: u}", "etcd.password", "set together"),
        ("etcd: {password: p}", "etcd.username", "set together"),
        ("etcd: {cert_file: c}", "etcd.key_file", "set together"),
        ("etcd: {key_file: k}", "etcd.cert_file", "set together"),
        ("etcd: {cert_file: c, key_file: k}", "etcd.ca_file", "client certificates"),
        ("etcd: {ca_file: /nonexistent/ca.pem}", "etcd.ca_file", "no such file"),
        ("etcd: {dial_timeout: 0}", "etcd.dial_timeout", "between"),
        ("etcd: {dial_timeout: -1}", "etcd.dial_timeout", "between"),
        ("etcd: {dial_timeout: 1000}", "etcd.dial_timeout", "between"),
        ("etcd: {dial_timeout: .inf}", "etcd.dial_timeout", "finite"),
        ("etcd: {dial_timeout: fast}", "etcd.dial_timeout", "number"),
        ("etcd: [a]", "etcd", "mapping"),
    ],
)
def test_etcd_bad_values_name_the_key(body, key, words):
    e = err(KEYS + body)
    assert e.key == key
    assert words in e.problem, e.problem


def test_etcd_http_endpoint_with_ca_file_is_rejected(tmp_path):
    (tmp_path / "ca.pem").write_text("PEM")
    e = err(KEYS + f"etcd: {{endpoints: ['http://a:2379'], ca_file: {tmp_path / 'ca.pem'}}}")
    assert e.key == "etcd.endpoints" and "ca_file" in e.problem


def test_etcd_missing_client_key_file(tmp_path):
    (tmp_path / "ca.pem").write_text("PEM")
    (tmp_path / "c.pem").write_text("PEM")
    e = err(KEYS + f"etcd: {{ca_file: {tmp_path / 'ca.pem'}, cert_file: {tmp_path / 'c.pem'}, "
                   f"key_file: {tmp_path / 'missing.pem'}}}")
    assert e.key == "etcd.key_file" and "no such file" in e.problem


# ---------------------------------------------------------------- environment overrides


def test_env_overrides_win_over_the_file():
    env = {"NODE_IP": "10.1.2.3", "TRACKYARD_GRPC_ADDRESS": "10.1.2.3:7890",
           "TRACKYARD_ETCD_USERNAME": "trackyard", "TRACKYARD_ETCD_PASSWORD": " pass word "}
    cfg = load(KEYS + "rtc: {node_ip: 192.0.2.1}\nnode: {grpc_address: 'x:1'}\n"
                      "etcd: {username: u, password: p}", env=env)
    assert cfg.rtc.node_ip == "10.1.2.3"
    assert cfg.node.grpc_address == "10.1.2.3:7890"
    assert (cfg.etcd.username, cfg.etcd.password) == ("trackyard", " pass word ")


def test_empty_env_overrides_leave_the_file_value():
    cfg = load(KEYS + "rtc: {node_ip: 192.0.2.1}", env={"NODE_IP": "", "TRACKYARD_GRPC_ADDRESS": " "})
    assert cfg.rtc.node_ip == "192.0.2.1" and cfg.node.grpc_address == ""


def test_env_overrides_are_validated():
    assert err(KEYS, env={"NODE_IP": "node-1"}).key == "rtc.node_ip"
    assert err(KEYS, env={"TRACKYARD_GRPC_ADDRESS": "nohost"}).key == "node.grpc_address"
    assert err(KEYS, env={"TRACKYARD_ETCD_USERNAME": "u"}).key == "etcd.password"
