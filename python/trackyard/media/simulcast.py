"""Simulcast layers: which layer a rid is, and which layer a subscriber's settings ask for."""

from __future__ import annotations

from livekit.protocol import models

_RID_RANK = {"q": 0, "h": 1, "f": 2}
TOP_LAYER = 2


def simulcast_layer(rids: list[str], rid: str) -> int:
    """The spatial layer (0 = lowest) of a simulcast rid.

    The SDKs name layers from the lowest up (3 layers: q, h, f; 2 layers: q, h, where h is
    then the top), and may list them in any order in `a=simulcast`, so the layer is the rid's
    position among the offered rids sorted by that rank; unknown names keep offer order.
    """
    if rid not in rids:
        return 0
    ranked = sorted(rids, key=lambda r: (_RID_RANK.get(r, 3), rids.index(r)))
    return ranked.index(rid)


def layer_for_settings(track: models.TrackInfo, quality: int, width: int, height: int) -> int | None:
    """The top layer a subscriber wants, from UpdateTrackSettings; None means "off" (pause).

    Dimensions win over quality (adaptive stream sends the rendered size): the smallest
    published layer at least as large as the requested size, else the largest. Without
    dimensions, quality LOW/MEDIUM/HIGH maps to the layer of that quality among those the
    publisher announced.
    """
    layers = sorted(track.layers, key=lambda layer: (layer.width * layer.height, layer.quality))
    if width or height:
        if not layers:
            return TOP_LAYER
        for index, layer in enumerate(layers):
            if layer.width >= width and layer.height >= height:
                return index
        return len(layers) - 1
    if quality == models.VideoQuality.OFF:
        return None
    if not layers:
        return min(quality, TOP_LAYER)
    below = [i for i, layer in enumerate(layers) if layer.quality <= quality]
    return below[-1] if below else 0
