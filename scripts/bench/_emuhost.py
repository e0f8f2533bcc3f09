#!/usr/bin/env python3
"""The v0 emulator behind a byte-counting TCP proxy, driven over stdin (see ``_common.EmulatorHost``).

Prints ``{"proxy_port": N, "emulator_port": M}`` when ready, then answers each stdin line with one JSON
line: ``stats`` -> bytes client->server and server->client through the proxy (HTTP upgrade, WebSocket
framing and compression and all: the bytes on the wire), and the requests the emulator validated, face
ones apart, with the characters of their ``data`` fields (the base64 media before any compression);
``reset`` zeroes all of it. Exits at end of input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Dict, List

import _common

_common.ensure_venv()

from hume_emulator.emulator import Emulator, EmulatorSettings  # noqa: E402

CHUNK = 65536


class CountingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.bytes: Dict[str, int] = {"up": 0, "down": 0}
        self.connections = 0

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, "up"), self._pump(up_reader, writer, "down"), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                self.bytes[way] += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    async with Emulator(EmulatorSettings(api_keys=(_common.API_KEY,))) as emulator:
        proxy = CountingProxy(emulator.port)
        server = await asyncio.start_server(proxy.accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"proxy_port": port, "emulator_port": emulator.port}), flush=True)
        seen = 0
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line:
                break
            requests = emulator.requests[seen:]
            if line == "reset":
                proxy.bytes = {"up": 0, "down": 0}
                seen = len(emulator.requests)
                print("{}", flush=True)
                continue
            models: List[str] = [m for _, r in requests for m in (r.models.enabled if r.models else ())]
            video = [len(r.data or "") for _, r in requests if r.models and "face" in r.models.enabled]
            print(
                json.dumps(
                    {
                        **proxy.bytes,
                        "requests": len(requests),
                        "face_requests": models.count("face"),
                        "data_video": sum(video),
                        "data_all": sum(len(r.data or "") for _, r in requests),
                        "connections": proxy.connections,
                    }
                ),
                flush=True,
            )
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
