#!/usr/bin/env python3
"""The v0 and v1 emulators (one port) behind a byte-counting TCP proxy, driven over stdin.

See ``_common.EmulatorHost``. Prints ``{"proxy_port": N, "emulator_port": M}`` when ready, then answers
each stdin line with one JSON line: ``stats`` -> bytes client->server and server->client through the
proxy (HTTP upgrade, WebSocket framing and compression and all: the bytes on the wire), the v0 requests
the emulator validated, face ones apart, with the characters of their ``data`` fields (the base64 media
before any compression) and the seconds of WAV audio they carried, and the v1 sessions that ended (in
any way) with the media-seconds Hume bills for them (``_common.v1_billed_s``); ``reset`` zeroes all
of it. Exits at end of input.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import sys
import wave
from typing import Any, Dict, List, Tuple

import _common

_common.ensure_venv()

from hume_emulator import detectors  # noqa: E402
from hume_emulator.emulator import Emulator, EmulatorSettings  # noqa: E402
from hume_emulator.v1.emulator import STATE_KEY  # noqa: E402

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


def wav_s(data: str) -> float:
    """Seconds of audio in a base64 WAV payload (0 when it is not one)."""
    try:
        with wave.open(io.BytesIO(base64.b64decode(data))) as w:
            return w.getnframes() / w.getframerate()
    except (binascii.Error, wave.Error, EOFError):
        return 0.0


def is_face(request: Any) -> bool:
    return bool(request.models and "face" in request.models.enabled)


class BilledSessions(Dict[int, Any]):
    """The v1 emulator's live connections; every session leaving it is kept with what it took in.

    Hume bills a run for the media it took in however it ended (a dropped connection included), while
    the emulator's own log keeps only sessions that ended with ``session.closed``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ended: List[Tuple[str, Dict[str, int]]] = []

    def __delitem__(self, key: int) -> None:
        session = self[key].session
        self.ended.append((session.endpoint, session.totals()[0]))
        super().__delitem__(key)


def v1_stats(sessions: List[Tuple[str, Dict[str, int]]]) -> Dict[str, Any]:
    by = {e: [r for endpoint, r in sessions if endpoint == e] for e in ("audio", "video")}
    return {
        "v1_sessions": len(sessions),
        "v1_billed_audio_s": sum(_common.v1_billed_s("audio", r) for r in by["audio"]),
        "v1_billed_video_s": sum(_common.v1_billed_s("video", r) for r in by["video"]),
        "v1_audio_s": sum(r.get("audio_duration_ms", 0) for r in by["audio"]) / 1000,
        "v1_frames": sum(r.get("frames", 0) for r in by["video"]),
    }


async def main() -> None:
    if "--no-detect" in sys.argv:
        # A naive side's host: its bill and its upload do not depend on the faces found, and finding
        # faces in every frame of an all-day stream is what would starve a shared 2-core machine.
        detectors.detect_faces = lambda *_args, **_kwargs: []  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    emulator = Emulator(EmulatorSettings(api_keys=(_common.API_KEY,)))
    emulator.serve_v1_too()
    v1 = BilledSessions()
    emulator.app[STATE_KEY].live = v1
    async with emulator:
        proxy = CountingProxy(emulator.port)
        server = await asyncio.start_server(proxy.accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"proxy_port": port, "emulator_port": emulator.port}), flush=True)
        seen = v1_seen = 0
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line:
                break
            requests = emulator.requests[seen:]
            sessions = v1.ended[v1_seen:]
            if line == "reset":
                proxy.bytes = {"up": 0, "down": 0}
                seen = len(emulator.requests)
                v1_seen = len(v1.ended)
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
                        "v0_audio_s": sum(wav_s(r.data or "") for _, r in requests if not is_face(r)),
                        **v1_stats(sessions),
                        "connections": proxy.connections,
                    }
                ),
                flush=True,
            )
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
