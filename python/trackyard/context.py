"""What a running node is made of, handed to the HTTP layers that serve it."""

from __future__ import annotations

from dataclasses import dataclass, field

from livekit.protocol import models

from trackyard import ids
from trackyard.config import Config
from trackyard.media.session import MediaBackend
from trackyard.rooms.manager import RoomManager

# The LiveKit server version whose client-visible behaviour trackyard reproduces. SDKs
# compare server_info.version numerically to enable features, so it must look like one.
LIVEKIT_COMPATIBLE_VERSION = "1.9.0"
# LiveKit's signal protocol revision trackyard speaks (17 = the Go server's current one;
# 18 would switch the Python SDK to pre-negotiated data channels).
PROTOCOL_VERSION = 17


@dataclass
class NodeContext:
    config: Config
    rooms: RoomManager
    media: MediaBackend
    node_id: str = field(default_factory=lambda: ids.new_id(ids.NODE))

    def server_info(self) -> models.ServerInfo:
        return models.ServerInfo(
            edition=models.ServerInfo.Standard,
            version=LIVEKIT_COMPATIBLE_VERSION,
            protocol=PROTOCOL_VERSION,
            region=self.config.region,
            node_id=self.node_id,
        )
