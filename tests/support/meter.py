"""A loopback MQTT proxy that counts QoS 1 publishes in flight, as the broker sees them.

It is :class:`~tests.support.proxy.Proxy` (with its ``delay``) plus a frame reader on both directions: a
client-to-broker PUBLISH with QoS 1 adds its packet id, a broker-to-client PUBACK removes it, and
``max_inflight`` is the most that were ever outstanding at once. A delay makes the PUBACKs come late, so a
client that ignores the broker's Receive Maximum would show it here.
"""

from __future__ import annotations

import asyncio
from typing import Dict, List, Set, Tuple

from tests.support.proxy import Proxy

PUBLISH, PUBACK, SUBSCRIBE = 3, 4, 8


class _Frames:
    """MQTT frames out of a byte stream: (packet type, flags, body) once each is complete."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> List[Tuple[int, int, bytes]]:
        self.buffer += data
        frames: List[Tuple[int, int, bytes]] = []
        while True:
            length, shift, pos = 0, 0, 1
            while True:
                if pos >= len(self.buffer):
                    return frames
                byte = self.buffer[pos]
                length |= (byte & 0x7F) << shift
                shift += 7
                pos += 1
                if not byte & 0x80:
                    break
            if len(self.buffer) < pos + length:
                return frames
            first = self.buffer[0]
            frames.append((first >> 4, first & 0x0F, bytes(self.buffer[pos : pos + length])))
            del self.buffer[: pos + length]


class InflightMeter(Proxy):
    """See the module docstring; clients connect to ``.port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.inflight: Set[int] = set()
        self.max_inflight = 0
        self.publishes = 0
        self.upstream: List[Tuple[int, bytes]] = []
        """Every client-to-broker packet in order: (packet type, topic of a PUBLISH, else b"")."""
        self._frames: Dict[int, _Frames] = {}

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = writer.get_extra_info("peername")[1] == self.target[1]
        frames = self._frames.setdefault(id(reader), _Frames())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for kind, flags, body in frames.feed(data):
                    self._count(upstream, kind, flags, body)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)  # scenario: the injected latency
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return

    def _count(self, upstream: bool, kind: int, flags: int, body: bytes) -> None:
        if upstream:
            topic_len = int.from_bytes(body[:2], "big") if kind == PUBLISH else 0
            self.upstream.append((kind, body[2 : 2 + topic_len]))
        if upstream and kind == PUBLISH and (flags >> 1) & 3 == 1:
            topic_len = int.from_bytes(body[:2], "big")
            self.inflight.add(int.from_bytes(body[2 + topic_len : 4 + topic_len], "big"))
            self.publishes += 1
            self.max_inflight = max(self.max_inflight, len(self.inflight))
        elif not upstream and kind == PUBACK:
            self.inflight.discard(int.from_bytes(body[:2], "big"))
