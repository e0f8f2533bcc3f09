"""``hume-edge fleet --metrics-listen HOST:PORT``: every kiosk on a broker as one Prometheus target.

The fleet view already holds the broker subscription and folds every kiosk's retained ``status`` and
``health``; this serves what it folded, per kiosk with a ``device`` label, in the same samples a kiosk's own
exporter gives (``agent.ops.metrics_model``): one scrape target for a whole fleet, and the route for kiosks
behind NAT, without touching any of them.

**Bounds.** Only kiosks the fold tracks are exported (at most ``MAX_KIOSKS``), each with at most about 120
series whatever its health says, kept as samples (not the message) and replaced by each new health.
Rendering happens on a scrape, at most once a second (``metrics_export.Cached``), on the server's thread
under a lock the paho thread also takes for each message. Measured on this (shared, 2-core) machine with a
2.2 KB health each: 1,000 kiosks are about 70,000 series, 5 MB of text rendered in 1.7 s, +29 MB RSS;
folding their health costs about 1.1 ms a message (30 messages a second at the default 30 s health period).
Render time grows with the fleet: past about 3,000 kiosks it nears Prometheus' default 10 s scrape timeout,
so run one exporter per prefix (``--prefix``) or per broker.

**Scaling.** One exporter per broker (or per topic prefix). Beyond what one Prometheus holds (a few million
active series: 10,000 kiosks are about 700,000), shard by broker or prefix and use Prometheus federation or
remote-write to Mimir or Thanos; we build no aggregation of our own (docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Dict, List, Sequence, TextIO, Tuple

from agent import untrusted
from agent.config import MqttConfig, split_listen
from agent.ops.fleet import EXIT_BROKER, MAX_KIOSKS, MAX_PAYLOAD_BYTES, STATES, FleetFold, FleetReport, watch
from agent.ops.metrics_export import Cached, ThreadedServer
from agent.ops.metrics_model import COUNTER, FAMILIES, GAUGE, Family, Sample, health_samples, state_samples

FLEET_FAMILIES: Tuple[Family, ...] = (
    Family("hume_edge_fleet_kiosks", GAUGE, "Kiosks the fleet exporter sees, by state", ("state",)),
    Family(
        "hume_edge_fleet_unexpected_kiosks",
        GAUGE,
        "Kiosks that match no --expect pattern (anyone who may publish under the prefix can add one)",
    ),
    Family(
        "hume_edge_fleet_config_differs_kiosks",
        GAUGE,
        "Kiosks whose config fingerprint is not the one most kiosks run",
    ),
    Family(
        "hume_edge_fleet_ignored_messages_total",
        COUNTER,
        "Broker messages that changed nothing (too large, bad JSON, bad status or topic, too many kiosks)",
        ("reason",),
    ),
)


class MetricsFold(FleetFold):
    """A :class:`FleetFold` that also keeps each kiosk's samples, safe to read from another thread."""

    def __init__(self, prefix: str, max_kiosks: int = MAX_KIOSKS, expect: Sequence[str] = ()) -> None:
        super().__init__(prefix, max_kiosks, expect)
        self.lock = threading.Lock()
        self._samples: Dict[str, Tuple[Sample, ...]] = {}

    def receive(self, topic: str, payload: bytes) -> None:
        with self.lock:
            super().receive(topic, payload)
            parsed = self._device(topic)
            if parsed is None:
                return
            device, kind = parsed
            if device not in self._kiosks or (kind == "health" and not payload):
                self._samples.pop(device, None)
                return
            if kind != "health":
                return
            try:
                body = untrusted.loads(payload, max_bytes=MAX_PAYLOAD_BYTES, what="health")
            except ValueError:
                return  # counted by the fold; the kiosk keeps its last good figures
            if isinstance(body, dict):
                self._samples[device] = tuple(health_samples(device, body))

    def report(self) -> FleetReport:
        with self.lock:
            return super().report()

    def samples(self) -> Tuple[List[Sample], List[Sample]]:
        """(every kiosk's samples, the exporter's own), at one moment."""
        with self.lock:
            report = super().report()
            kiosks: List[Sample] = []
            for row in report.kiosks:
                kiosks.extend(state_samples(row.device, row.state))
                kiosks.extend(self._samples.get(row.device, ()))
        counts = {state: 0 for state in (*STATES, "unknown")}
        for row in report.kiosks:
            counts[row.state] = counts.get(row.state, 0) + 1
        own = [Sample("hume_edge_fleet_kiosks", (state,), float(n)) for state, n in counts.items()]
        unexpected = sum(1 for row in report.kiosks if not row.expected)
        differs = sum(1 for row in report.kiosks if row.config_differs)
        own.append(Sample("hume_edge_fleet_unexpected_kiosks", (), float(unexpected)))
        own.append(Sample("hume_edge_fleet_config_differs_kiosks", (), float(differs)))
        own += [
            Sample("hume_edge_fleet_ignored_messages_total", (reason,), float(n))
            for reason, n in vars(report.ignored).items()
        ]
        return kiosks, own

    def render(self) -> bytes:
        from agent.ops import metrics_text  # noqa: PLC0415 - prometheus_client only with --metrics-listen

        kiosks, own = self.samples()
        return metrics_text.render([(FAMILIES, kiosks), (FLEET_FAMILIES, own)])


def serve(cfg: MqttConfig, args: argparse.Namespace, out: TextIO) -> int:
    """Serve ``--metrics-listen`` while watching the broker (``agent.ops.fleet.watch``) until stopped;
    exit 1 when the address cannot be bound or the broker not read."""
    host, port = split_listen(args.metrics_listen)
    fold = MetricsFold(cfg.topic_prefix, expect=args.expect)
    server = ThreadedServer(host, port, Cached(fold.render))
    try:
        server.start()  # logs where it serves
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    print(
        f"fleet: serving http://{host}:{port}/metrics for the kiosks on {cfg.host}:{cfg.port}",
        file=sys.stderr,
    )
    try:
        return watch(
            cfg, args.wait_s, args.interval_s, args.json, out, expect=args.expect, fold=fold, emit=args.watch
        )
    finally:
        server.stop()
