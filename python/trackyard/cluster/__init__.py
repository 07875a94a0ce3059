"""Cluster state in etcd: media-node membership, load, and room placement.

The only code in trackyard that talks to etcd (and only :mod:`.store` imports the client
library). Key layout, under ``etcd.prefix`` (default ``/trackyard/``)::

    nodes/{node_id}   NodeInfo JSON   {node_id, rtc_address, signal_address, region, state,
                                       capacity{max_rooms, max_participants, max_tracks,
                                       max_bandwidth}, started_at}      bound to the node's lease
    load/{node_id}    NodeLoad JSON   {cpu, rooms, participants, tracks, bandwidth, updated_at}
                                       rewritten every few seconds; bound to the node's lease
    rooms/{room_name} RoomRecord JSON {node_id, room_sid, created}
                                       created once (create-if-absent transaction), bound to
                                       the HOSTING node's lease: a dead node's rooms vanish
                                       with it, no sweeper needed
    room_state/{room_name} RoomState JSON {room_sid, empty_timeout, departure_timeout,
                                       max_participants, metadata, saved_at}   no lease:
                                       a room's settings outlive its node (.room_state)

Modules: :mod:`.store` (the etcd adapter), :mod:`.view` (a watched local copy of a prefix),
:mod:`.registry` (NodeRegistry for media nodes, NodeDirectory for control nodes),
:mod:`.placement` (choose a node, place and look up rooms), :mod:`.room_state` (a room's
settings across a move). See docs/cluster.md.
"""

from trackyard.cluster.placement import Placement, RoomRecord, choose_node, claim_rooms, release_room
from trackyard.cluster.registry import (
    DRAINING,
    SERVING,
    NodeCapacity,
    NodeDirectory,
    NodeInfo,
    NodeLoad,
    NodeRegistry,
    NodeView,
)
from trackyard.cluster.store import EtcdStore, EtcdUnavailable, LeaseNotFound

__all__ = [
    "DRAINING", "SERVING", "EtcdStore", "EtcdUnavailable", "LeaseNotFound", "NodeCapacity",
    "NodeDirectory", "NodeInfo", "NodeLoad", "NodeRegistry", "NodeView", "Placement", "RoomRecord",
    "choose_node", "claim_rooms", "release_room",
]
