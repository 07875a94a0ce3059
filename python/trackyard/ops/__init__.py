"""Operator commands against a running cluster (registered on the `trackyard` command):

- ``trackyard nodes list``: media nodes registered in etcd, their state, load and rooms;
- ``trackyard rooms list``: rooms placed in etcd and the node hosting each, with
  participants from the RoomService API when ``--url`` is given;
- ``trackyard node drain <id>`` / ``trackyard node undrain <id>``: write or delete the
  node's drain request in etcd (``drain/{id}``), which the media node follows.

They reach etcd through :mod:`trackyard.cluster` with the server's own configuration
(``--config FILE``, else ``LIVEKIT_CONFIG``) or ``--etcd`` endpoints. Tables by default,
``--json`` for machines. Exit status: 0 done, 1 failed (etcd unreachable, unknown node),
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse

from trackyard.ops import nodes, rooms
from trackyard.ops.access import add_access_flags


def add_commands(sub: argparse._SubParsersAction) -> None:
    nodes_cmd = sub.add_parser("nodes", help="media nodes of a running cluster")
    nodes_sub = nodes_cmd.add_subparsers(dest="nodes_command", required=True)
    listing = nodes_sub.add_parser("list", help="registered media nodes, state, load, rooms")
    add_access_flags(listing)
    listing.set_defaults(run=nodes.list_nodes)

    node_cmd = sub.add_parser("node", help="drain or undrain a media node")
    node_sub = node_cmd.add_subparsers(dest="node_command", required=True)
    drain = node_sub.add_parser("drain", help="ask a media node to drain: it moves its rooms away and "
                                              "stays up, unready, until undrained")
    drain.add_argument("node_id", help="the node's id (see `trackyard nodes list`)")
    drain.add_argument("--reason", default="", help="recorded with the request")
    drain.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait up to this long for the node to be draining with no room left")
    add_access_flags(drain)
    drain.set_defaults(run=nodes.drain_node)
    undrain = node_sub.add_parser("undrain", help="take a drain request back: the node serves again")
    undrain.add_argument("node_id")
    undrain.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="wait up to this long for the node to be serving again")
    add_access_flags(undrain)
    undrain.set_defaults(run=nodes.undrain_node)

    rooms_cmd = sub.add_parser("rooms", help="rooms of a running cluster")
    rooms_sub = rooms_cmd.add_subparsers(dest="rooms_command", required=True)
    listing = rooms_sub.add_parser("list", help="rooms, the node hosting each, participants")
    add_access_flags(listing, etcd_optional=True)
    rooms.add_api_flags(listing)
    listing.set_defaults(run=rooms.list_rooms)
