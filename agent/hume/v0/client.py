"""The v0 streaming backend: one resilient WebSocket per modality to ``/v0/stream/models``.

Why one socket per modality (video -> face, audio -> prosody + burst, text -> language):
v0 is strictly one request, one reply per socket (facts sections 1 and 7), and model config travels with
every payload. On one shared socket a face reply would hold up the next audio payload and vice versa; with
a socket each, a slow face model never delays prosody. Prosody and burst share the audio socket because
both read the same audio: one payload, one reply with both results, half the uploads. Facemesh rides on
no socket: it measures face-mesh landmarks, which the agent does not compute, and requested on a JPEG it
fails the whole payload (E0102), face result included; the config does not offer it.

Per socket exactly one payload is in flight. Meanwhile media waits in a bounded buffer
(:mod:`agent.hume.v0.payloads`): the newest frames, at most 3 (older ones dropped and counted), audio
accumulated into one WAV payload of at most 5000 ms (the API limit; the backlog bounded by
``queue_seconds``, oldest dropped and counted), text in a short queue. So capture never waits on the
network: ``send_*`` only append to memory and wake the socket's task.

Every payload carries a ``payload_id``; an in-flight table matches each reply (predictions, warning or
error) to its payload, its session and its capture time, and measures the round trip. A reply that does not
come within ``reply_timeout_s`` is counted and its socket is considered broken and reopened. "No face" /
"no speech" warnings are normal outcomes: counted, and passed on as observations with a warning code.

``reset_stream: true`` goes on the first payload of each socket after every :meth:`V0Backend.mark_boundary`
and after every (re)connect, and on no other payload. A fresh connection probably starts with an empty
window, but the API does not say so, and a reset there costs nothing, so it is always sent. Face ids are
kept per connection whatever ``reset_stream`` says (API reference), so with ``identify_faces`` a boundary
also replaces the video socket (at once; a frame of the old visit still waiting goes out first, on the old
one), and the new visitor's first frame meets an empty face-id cache.

Each socket is reopened before the server's one-minute limit (``reconnect_after_s``, only while nothing is
in flight) and closed when it had nothing to send for that long; it reconnects on demand. Failures back
off (capped, jittered, :mod:`agent.backoff`); a refused key (HTTP 401) or an exhausted account (E0300)
is retried only every ``fatal_retry_s`` and shown as ``auth_failed`` / ``quota_exhausted`` in
:meth:`V0Backend.status`. A key refused before any connection was ever accepted makes :meth:`run` raise
:class:`agent.errors.HumeAuthError` (the service exits non-zero), whether the refusal came on the very first
attempt or on the first one that reached the server after the network came up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Dict, Optional

from agent.aio import OnFirstUse, cancel_and_wait, spawn
from agent.config import HumeConfig
from agent.hume.backend import Backend
from agent.hume.types import BackendStatus, Observation, counters
from agent.hume.v0.connector import HEARTBEAT_S, Connector
from agent.hume.v0.link import Link, MediaBuffer
from agent.hume.v0.payloads import (
    AudioBuffer,
    FrameSlot,
    TextBuffer,
    max_audio_payload_ms,
    modality_models,
)

_LOGGER = logging.getLogger(__name__)

OBSERVATIONS_MAX = 1000
"""Results waiting for :meth:`V0Backend.receive`; past it the oldest are dropped (counted)."""

CANCEL_GRACE_S = 3.0
"""Time a link gets to close its socket when cancelled (its close handshake is bounded at 2 s)."""


class V0Backend(Backend):
    """Hume's v0 streaming API behind the :class:`Backend` interface."""

    def __init__(self, cfg: HumeConfig, *, heartbeat_s: float = HEARTBEAT_S) -> None:
        """``heartbeat_s``: the WebSocket ping period that finds a half-open socket (tests shorten it)."""
        self._cfg = cfg
        self._heartbeat_s = heartbeat_s
        self._epoch = 0
        self._frames = FrameSlot()
        self._audio = AudioBuffer(cfg.queue_seconds, max_audio_payload_ms(cfg))
        self._text = TextBuffer()
        buffers: Dict[str, MediaBuffer] = {"video": self._frames, "audio": self._audio, "text": self._text}
        self._links = {
            modality: Link(
                modality, cfg, models, buffers[modality], emit=self._emit, current_epoch=lambda: self._epoch
            )
            for modality, models in modality_models(cfg).items()
        }
        self._results: OnFirstUse[asyncio.Queue[Observation]] = OnFirstUse(
            lambda: asyncio.Queue(OBSERVATIONS_MAX)
        )
        self._dropped_results = 0
        self._buffers = buffers
        self._withdrawn = 0

    def __repr__(self) -> str:
        return f"V0Backend(url={self._cfg.v0.url!r}, sockets={sorted(self._links)})"

    async def run(self) -> None:
        if not self._links:  # no model configured: nothing to connect, stay out of the way
            await asyncio.get_running_loop().create_future()
        async with Connector(self._cfg.v0.url, self._cfg.api_key, self._heartbeat_s) as connector:
            tasks = [spawn(link.run(connector), f"hume-edge.hume.{n}") for n, link in self._links.items()]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # a link only ends by raising (a key refused at start-up)
            finally:
                await cancel_and_wait(tasks, recancel_s=CANCEL_GRACE_S)

    def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self._queue("video", lambda: self._frames.put(jpeg, captured_at, session_id, self._epoch))

    def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self._queue("audio", lambda: self._audio.put(pcm16, captured_at, session_id, self._epoch))

    def send_text(self, text: str, captured_at: float, session_id: Optional[str]) -> None:
        self._queue("text", lambda: self._text.put(text, captured_at, session_id, self._epoch))

    def _queue(self, modality: str, put: Callable[[], None]) -> None:
        link = self._links.get(modality)
        if link is not None:  # media for a modality without configured models is not sent anywhere
            put()
            link.wake()

    def mark_boundary(self) -> None:
        self._epoch += 1
        for link in self._links.values():
            link.wake()  # the video socket is replaced now when face ids are on (see the module docs)

    def withdraw(self) -> int:
        """Drop every buffered frame, audio chunk and text; a new epoch, so the next payload resets."""
        dropped = sum(buffer.clear() for buffer in self._buffers.values())
        self._withdrawn += dropped
        self.mark_boundary()
        return dropped

    async def receive(self) -> Observation:
        return await self._result_queue().get()

    def _result_queue(self) -> asyncio.Queue[Observation]:
        return self._results.get()

    def _emit(self, obs: Observation) -> None:
        queue = self._result_queue()
        if queue.full():
            queue.get_nowait()
            self._dropped_results += 1
        queue.put_nowait(obs)

    def status(self) -> BackendStatus:
        return BackendStatus.of_links(
            "v0",
            tuple((name, link.status()) for name, link in self._links.items()),
            {name: link.last_error_at for name, link in self._links.items()},
            counters(
                {
                    "boundaries": self._epoch,
                    "dropped_results": self._dropped_results,
                    "media_withdrawn": self._withdrawn,
                }
            ),
        )
