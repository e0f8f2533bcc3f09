"""A Backend that passes everything to the real one and keeps every result it yields.

Tests and benchmarks (``scripts/bench/kioskday.py``) read what came back, with its capture times, without
reaching into the real backend.
"""

from __future__ import annotations

from typing import Any, List, Optional

from agent.hume.backend import Backend
from agent.hume.types import Observation


class Recorder(Backend):
    """The real backend, with every result it yields kept (capture times, for missed seconds)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.results: List[Observation] = []

    async def run(self) -> None:
        await self.inner.run()

    def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self.inner.send_frame(jpeg, captured_at, session_id)

    def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self.inner.send_audio(pcm16, captured_at, session_id)

    def send_text(self, text: str, captured_at: float, session_id: Optional[str]) -> None:
        self.inner.send_text(text, captured_at, session_id)

    def mark_boundary(self) -> None:
        self.inner.mark_boundary()

    def withdraw(self) -> int:
        return self.inner.withdraw()

    async def receive(self) -> Observation:
        obs = await self.inner.receive()
        self.results.append(obs)
        return obs

    def status(self) -> Any:
        return self.inner.status()
