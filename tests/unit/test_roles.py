"""Roles in the configuration (`node` section, `--role`), and what the relay carries:
grants as claims, an admitted connection as a SessionStart."""

from __future__ import annotations

import textwrap

import pytest
from livekit.protocol import models, rtc
from livekit.protocol.room import RoomConfiguration

from trackyard.auth.grants import ClaimGrants, VideoGrant
from trackyard.config import NodeCapacityConfig, NodeConfig, config_to_yaml, load_config
from trackyard.errors import ConfigError
from trackyard.rpc import relay_pb2
from trackyard.rpc.codec import decode_start, encode_start
from trackyard.signal.admission import Admission
from trackyard.signal.join_params import JoinParams

SECRET = "s" * 40
ETCD = "etcd: {endpoints: ['127.0.0.1:2379']}\n"


def load(body: str, **kw):
    return load_config(body=f"keys: {{k: {SECRET}}}\n" + textwrap.dedent(body), env={}, **kw)


def err(body: str, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(body, **kw)
    return info.value


# ---------------------------------------------------------------- config


def test_node_defaults_are_the_single_process_server():
    cfg = load("")
    assert cfg.node == NodeConfig(role="all", id="", grpc_port=7890, grpc_bind="", grpc_address="", lease_ttl=10,
                                  load_interval=3.0, drain_timeout=60.0, capacity=NodeCapacityConfig(0, 0, 0, 0))
    assert cfg.node.hosts_rooms and cfg.node.serves_clients and not cfg.etcd.enabled


def test_every_node_key_and_round_trip():
    cfg = load("""
        etcd: {endpoints: ['127.0.0.1:2379']}
        node:
          role: Media
          id: ND_a
          grpc_port: 9100
          grpc_bind: 10.0.0.2
          grpc_address: media-a.internal:9100
          lease_ttl: 5
          load_interval: 1
          drain_timeout: 7.5
          capacity: {max_rooms: 10, max_participants: 200, max_tracks: 400, max_bandwidth: 1000000000}
    """)
    assert cfg.node == NodeConfig("media", "ND_a", 9100, "10.0.0.2", "media-a.internal:9100", 5, 1.0, 7.5,
                                  NodeCapacityConfig(10, 200, 400, 1_000_000_000))
    assert not cfg.node.serves_clients and cfg.node.hosts_rooms
    assert load_config(body=config_to_yaml(cfg), env={}) == cfg


@pytest.mark.parametrize("body, key, words", [
    ("node: {role: edge}\n", "node.role", "must be one of"),
    ("node: {role: media}\n", "etcd.endpoints", "needs etcd"),
    ("node: {role: control}\n", "etcd.endpoints", "needs etcd"),
    (ETCD + "node: {grpc_port: 0}\n", "node.grpc_port", "between"),
    (ETCD + "node: {grpc_port: 7880}\n", "node.grpc_port", "conflicts"),
    (ETCD + "node: {grpc_address: 'nohost'}\n", "node.grpc_address", "host:port"),
    (ETCD + "node: {lease_ttl: 1}\n", "node.lease_ttl", "between"),
    (ETCD + "node: {drain_timeout: -1}\n", "node.drain_timeout", "between"),
    (ETCD + "node: {drain_timeout: 100000}\n", "node.drain_timeout", "between"),
    (ETCD + "node: {drain_timeout: soon}\n", "node.drain_timeout", ""),
    (ETCD + "node: {capacity: {max_rooms: -1}}\n", "node.capacity.max_rooms", ">= 0"),
    (ETCD + "node: {capacity: {rooms: 1}}\n", "node.capacity.rooms", "unknown key"),
])
def test_bad_node_values_name_the_key(body, key, words):
    error = err(body)
    assert error.key == key and words in error.problem, error


def test_role_flag_overrides_the_file_and_is_checked():
    assert load(ETCD + "node: {role: media}\n", role="control").node.role == "control"
    assert err("", role="media").key == "etcd.endpoints"
    assert err("", role="nonsense").key == "node.role"


def test_dev_stays_single_process_without_etcd():
    assert load_config(dev=True, env={}).node.role == "all"
    with pytest.raises(ConfigError) as info:
        load_config(dev=True, env={}, role="control")
    assert info.value.key == "node.role" and "--dev" in info.value.problem
    with pytest.raises(ConfigError) as info:
        load_config(body=ETCD, dev=True, env={})
    assert info.value.key == "etcd.endpoints"


# ---------------------------------------------------------------- what the relay carries


def test_grants_survive_the_claims_round_trip():
    grants = ClaimGrants(
        api_key="k", identity="alice", name="Alice", metadata="md", attributes={"a": "1"},
        kind=models.ParticipantInfo.Kind.AGENT, room_preset="", sha256="abc", expires_at=1900000000.0,
        video=VideoGrant(room_join=True, room="r", can_publish=False, can_publish_sources=["camera"], hidden=True),
        room_config=RoomConfiguration(name="r", max_participants=3, empty_timeout=9))
    assert ClaimGrants.from_claims(grants.to_claims()) == grants
    plain = ClaimGrants(api_key="k", identity="bob", video=VideoGrant(room_join=True, room="r"))
    assert ClaimGrants.from_claims(plain.to_claims()) == plain


def test_session_start_round_trip_v1_and_v0():
    grants = ClaimGrants(api_key="k", identity="alice", video=VideoGrant(room_join=True, room="r", room_create=True))
    v1 = JoinParams(
        single_pc=True, auto_subscribe=False, adaptive_stream=True,
        client_info=models.ClientInfo(sdk=models.ClientInfo.JS, protocol=17, version="2.1"),
        publisher_offer=rtc.SessionDescription(type="offer", sdp="v=0\r\n", id=3),
        metadata="m", attributes={"x": "y"},
        add_track_requests=[rtc.AddTrackRequest(cid="c1", name="mic", type=models.TrackType.AUDIO)],
        sync_state=rtc.SyncState(answer=rtc.SessionDescription(type="answer", sdp="v=0\r\n")))
    v0 = JoinParams(single_pc=False, reconnect=True, participant_sid="PA_x", reconnect_reason=2,
                    client_info=models.ClientInfo(sdk=models.ClientInfo.PYTHON))
    for params in (v1, v0):
        admission = Admission(grants=grants, room_name="r", params=params)
        start = encode_start(admission, room_sid="RM_1", control_node_id="ND_c")
        wire = relay_pb2.SessionStart.FromString(start.SerializeToString())
        assert (wire.room_sid, wire.control_node_id, wire.validate_only) == ("RM_1", "ND_c", False)
        assert decode_start(wire) == admission


def test_malformed_session_start_is_refused():
    with pytest.raises(ValueError):
        decode_start(relay_pb2.SessionStart(room_name="r", grants_json="{not json"))
    with pytest.raises(ValueError):
        decode_start(relay_pb2.SessionStart(room_name="r", grants_json='{"sub": "a"}'))  # no video grant
    with pytest.raises(ValueError):
        decode_start(relay_pb2.SessionStart(room_name="r", grants_json='{"video": {}}',
                                            params=relay_pb2.JoinParams(client_info=b"\xff\xff")))
