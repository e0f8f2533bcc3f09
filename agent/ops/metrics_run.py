"""The agent's metrics task: the textfile every health interval, and ``GET /metrics`` when configured.

Off by default (``[metrics]`` empty): then neither this module nor ``prometheus_client`` is imported, and
the agent opens no port. Both outputs render the health snapshot the retained ``health`` topic carries
(``agent.ops.metrics_model``), with the state ``online`` while running and ``stopped`` in the last file.
A textfile that cannot be written (directory missing, permissions) is logged once, then once more when it
works again; the agent keeps measuring either way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable, Mapping, Optional

from agent.config import MetricsConfig, split_listen
from agent.ops.metrics_export import Cached, MetricsServer, write_textfile
from agent.ops.metrics_model import FAMILIES, kiosk_samples

_LOGGER = logging.getLogger(__name__)


class AgentMetrics:
    """Renders this kiosk's exposition from ``health()`` (a ``Health.to_json()`` body)."""

    def __init__(self, device: str, health: Callable[[], Mapping[str, object]]) -> None:
        from agent.ops import metrics_text  # noqa: PLC0415 - prometheus_client only once metrics are on

        self._text = metrics_text
        self.device = device
        self.health = health

    def render(self, state: str = "online") -> bytes:
        return self._text.render([(FAMILIES, kiosk_samples(self.device, state, self.health()))])


async def run(
    cfg: MetricsConfig, device: str, health: Callable[[], Mapping[str, object]], interval_s: float
) -> None:
    """Serve and write until cancelled; then a last textfile with ``state="stopped"``."""
    metrics = AgentMetrics(device, health)
    server: Optional[MetricsServer] = None
    if cfg.listen:
        host, port = split_listen(cfg.listen)
        server = MetricsServer(host, port, Cached(metrics.render))
    listening = said = False
    directory = Path(cfg.textfile_dir) if cfg.textfile_dir else None
    failing = False
    try:
        while True:
            if server is not None and not listening:
                # A port in use is no reason to stop measuring: said once, retried every interval.
                try:
                    await server.start()
                    listening = True
                except OSError as exc:
                    if not said:
                        _LOGGER.error(
                            "%s (metrics.listen; retrying every %g s)", exc.strerror or exc, interval_s
                        )
                    said = True
            if directory is not None:
                failing = _write(directory, metrics.render(), failing)
            await asyncio.sleep(interval_s)
    finally:
        if directory is not None:
            _write(directory, metrics.render("stopped"), failing)
        if server is not None:
            await server.close()


def _write(directory: Path, body: bytes, failing: bool) -> bool:
    """Write the textfile; returns whether it failed, logging only the changes between failing and not."""
    try:
        write_textfile(directory, body)
    except OSError as exc:
        if not failing:
            _LOGGER.warning(
                "metrics: cannot write %s: %s (metrics.textfile_dir; retrying every health interval)",
                directory,
                exc.strerror or exc,
            )
        return True
    if failing:
        _LOGGER.info("metrics: writing %s again", directory)
    return False
