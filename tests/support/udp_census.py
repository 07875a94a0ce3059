"""Count the UDP packets on one lab interface, by kind, for a bounded time.

Run inside a lab namespace (`NetLab.run`), as root::

    python udp_census.py --dev ty0 --seconds 5

It opens an AF_PACKET socket (a capture of what the interface carries, nothing is sent),
classifies every IPv4 UDP packet's payload by its first byte as RFC 7983 does (STUN 0-3,
DTLS 20-63, RTP/RTCP 128-191; RTCP when the second byte is 192-223, i.e. PT 64-95 with the
marker bit), separately for packets arriving (``in``) and leaving (``out``), and prints one
JSON line at the end::

    {"dev": "ty0", "seconds": 5.0, "in": {"stun": n, "dtls": n, "rtp": n, "rtcp": n,
     "other": n, "bytes": n, "rtp_bytes": n}, "out": {...}, "rtp_ssrcs_in": [...]}

It prints ``{"ready": true}`` first once the socket is bound, so a test knows when the
window has begun. SRTP keeps the RTP header in the clear, so a media packet is recognised
without any key. SIGTERM ends the window early (the JSON line is still printed).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def classify(payload: bytes) -> str:
    if not payload:
        return "other"
    b = payload[0]
    if b <= 3:
        return "stun"
    if 20 <= b <= 63:
        return "dtls"
    if 128 <= b <= 191 and len(payload) >= 12:
        return "rtcp" if 192 <= payload[1] <= 223 else "rtp"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev", default="ty0")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((args.dev, 0))
    sock.settimeout(0.2)
    counts = {d: {"stun": 0, "dtls": 0, "rtp": 0, "rtcp": 0, "other": 0, "bytes": 0, "rtp_bytes": 0}
              for d in ("in", "out")}
    ssrcs: set[int] = set()
    print(json.dumps({"ready": True}), flush=True)
    started = time.monotonic()
    try:
        while not stop["now"] and time.monotonic() - started < args.seconds:
            try:
                packet, addr = sock.recvfrom(65535)
            except (socket.timeout, InterruptedError):
                continue
            if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 17:
                continue  # IPv4 UDP only
            ihl = (packet[0] & 0x0F) * 4
            payload = packet[ihl + 8:]
            direction = "out" if addr[2] == PACKET_OUTGOING else "in"
            kind = classify(payload)
            c = counts[direction]
            c[kind] += 1
            c["bytes"] += len(payload)
            if kind == "rtp":
                c["rtp_bytes"] += len(payload)
                if direction == "in":
                    ssrcs.add(struct.unpack_from("!I", payload, 8)[0])
    finally:
        sock.close()
        print(json.dumps({"dev": args.dev, "seconds": round(time.monotonic() - started, 3), **counts,
                          "rtp_ssrcs_in": sorted(ssrcs)}), flush=True)


if __name__ == "__main__":
    main()
