#!/usr/bin/env python3
"""Benchmark 10: a fleet sharing one Hume organisation's request limit (600 session opens a minute).

What is real: every kiosk is the agent's own v1 backend (``V1Backend``: visits, billing-aware session
opening, pacing, reconnects and the rate-limit wait of ``agent.backoff``), each visit opens real WebSocket
sessions over loopback TCP to the real v1 emulator, whose organisation limit (``hume_emulator.orglimit``)
counts every accepted open in a sliding window. All kiosks and the emulator share one process and one
event loop (the loop's lag is reported).

What is simulated: capture and visitors. Each kiosk alternates empty and occupied spells (exponential,
visits of 60 s on average, empty spells of 540 s: 10 % occupancy), started in the stationary state, and
hands over one small pre-encoded JPEG per 10 s of visitor (no camera, no presence check, no encoding);
visits of less than ``hume.v1.min_session_s`` (5 s) open nothing, as on a kiosk. Face only: one session
per visit; the largest fleet runs once more streaming voice too (silence, so only its second session per
visit counts: its opens per minute).

Time is compressed ``x20`` (``--quick``: ``x60``) and everything that has a duration is scaled by it: the
organisation's window (60 s -> 3 s, limit still 600), visits, the agent's delays (rate-limit floor, first
ceiling and cap; reconnect backoff; held-frame lag; ``min_session_s``) and the emulator's ``Retry-After``
(sent with decimals instead of whole seconds, so it scales too). Times below are simulated ones.

Scenarios, for N = 10, 100 and 1,000 kiosks, each against a limited organisation and, at the same time in
the same loop, an unlimited one (the baseline): a **steady** stretch of a 10 %-occupancy day (10 simulated
minutes; the day is stationary, so its minutes repeat), and a **shared 5-minute outage** (1 minute steady,
5 minutes every handshake refused with 503 after the live sessions were shut down, then recovery).
The largest fleet also runs on an organisation a tenth the size (60 opens a minute): kiosks are
independent and the limit sees only their sum, so 1,000 kiosks on 60 stand for 10,000 on 600 (the N=10,000
rows). Reported, the first simulated minute left out of the per-minute counts (every kiosk starts in its
stationary state, so the visits under way at the start all open at once): session opens per minute
(peak, p99 over the minutes), 429s, the share of visitor-seconds measured (frames with a result) against
the unlimited organisation, and the time to full recovery after the outage (until no kiosk is in a
failure state: ``rate_limited``, ``backoff``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from typing import Any, Dict, List, Tuple

import _common

_common.ensure_venv()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from agent import backoff  # noqa: E402
from agent.aio import cancel_and_wait, spawn  # noqa: E402
from agent.config import HumeConfig, HumeV1Config  # noqa: E402
from agent.hume.types import FAILURE_STATES  # noqa: E402
from agent.hume.v1 import client as v1_client  # noqa: E402
from agent.hume.v1 import endpoint as v1_endpoint  # noqa: E402
from agent.hume.v1.client import V1Backend  # noqa: E402
from hume_emulator import orglimit  # noqa: E402
from hume_emulator.orglimit import OrgLimitSettings  # noqa: E402
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings  # noqa: E402

KEY = "bench-key"
LIMIT = 600
WINDOW_S = 60.0
OCCUPANCY = 0.10
VISIT_MEAN_S = 60.0
EMPTY_MEAN_S = VISIT_MEAN_S * (1 - OCCUPANCY) / OCCUPANCY
FRAME_EVERY_S = 10.0
"""Simulated visitor-seconds per frame handed over (the measured share counts frames)."""
MIN_SESSION_S = 5.0
SIZES = (10, 100, 1000)
SCALED_LIMIT = LIMIT // 10
"""The largest fleet also runs on an organisation a tenth the size: kiosks are independent and the limit
sees only their sum, so N kiosks on 60 a minute stand for 10 x N on 600."""


@dataclasses.dataclass
class Plan:
    compression: float
    sizes: Tuple[int, ...]
    steady_min: float
    before_min: float
    outage_min: float
    after_min: float


FULL = Plan(20.0, SIZES, 10.0, 1.0, 5.0, 5.0)
QUICK = Plan(60.0, (10,), 3.0, 0.5, 1.0, 2.0)


def scale_the_agent(c: float) -> None:
    """Every constant of the agent that has a duration, divided by the compression (see the module doc)."""
    backoff.RATE_LIMIT_FLOOR_S /= c
    backoff.RATE_LIMIT_FIRST_CEILING_S /= c
    v1_endpoint.MAX_DELAY_S /= c  # read by each Endpoint's backoff
    v1_client.MIN_UPTIME_S /= c  # the client's own name for it (imported from endpoint)
    v1_client.HELD_LAG_MARGIN_S /= c
    orglimit.OrgLimit.retry_after_header = staticmethod(  # type: ignore[method-assign]
        lambda wait_s: {orglimit.RETRY_AFTER_HEADER: f"{max(wait_s, 0.001):.3f}"}
    )


def tiny_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    return bytes(data.tobytes())


@dataclasses.dataclass
class Kiosk:
    backend: V1Backend
    rng: random.Random
    frames: int = 0
    measured: int = 0


class Group:
    """N kiosks on one emulated organisation (limited or not)."""

    def __init__(self, n: int, limit: int, c: float, seed: int, voice: bool = False) -> None:
        """``voice``: the kiosks stream voice too (silence: it costs a second session per visit, and the
        emulator's voice detection finds nothing to measure in it)."""
        self.n, self.limit, self.c, self.voice = n, limit, c, voice
        settings = EmulatorV1Settings(api_keys=(KEY,), org_limit=OrgLimitSettings(limit, WINDOW_S / c))
        self.emulator = EmulatorV1(settings)
        self.kiosks: List[Kiosk] = []
        self.seed = seed
        self.failing_at: List[float] = []
        self.tasks: List[asyncio.Task[Any]] = []

    async def start(self, jpeg: bytes, until: float) -> None:
        await self.emulator.__aenter__()
        c = self.c
        cfg = HumeConfig(
            backend="v1",
            api_key=KEY,
            models=("face", "prosody") if self.voice else ("face",),
            rate_limit_max_s=backoff.RATE_LIMIT_MAX_S / c,
            v1=HumeV1Config(url=self.emulator.base_url, min_session_s=MIN_SESSION_S / c),
        )
        for i in range(self.n):
            backend = V1Backend(cfg, first_delay_range_s=(1.0 / c, 5.0 / c))
            kiosk = Kiosk(backend, random.Random(self.seed * 7919 + i))
            self.kiosks.append(kiosk)
            self.tasks.append(spawn(kiosk.backend.run(), f"bench.kiosk{i}"))
            self.tasks.append(spawn(self._results(kiosk), f"bench.results{i}"))
            self.tasks.append(spawn(self._visitors(kiosk, jpeg, until), f"bench.visitors{i}"))

    async def _results(self, kiosk: Kiosk) -> None:
        while True:
            await kiosk.backend.receive()
            kiosk.measured += 1

    async def _visitors(self, kiosk: Kiosk, jpeg: bytes, until: float) -> None:
        c, rng = self.c, kiosk.rng
        occupied = rng.random() < OCCUPANCY
        visit = 0
        while time.monotonic() < until:
            if not occupied:
                await asyncio.sleep(rng.expovariate(1 / EMPTY_MEAN_S) / c)  # scenario: an empty kiosk
                occupied = True
                continue
            visit += 1
            end = time.monotonic() + rng.expovariate(1 / VISIT_MEAN_S) / c
            silence = bytes(int(32000 * FRAME_EVERY_S / c) // 2 * 2)
            while time.monotonic() < end:
                if self.voice:
                    kiosk.backend.send_audio(silence, time.time(), f"v{visit}")
                kiosk.backend.send_frame(jpeg, time.time(), f"v{visit}")
                kiosk.frames += 1
                await asyncio.sleep(FRAME_EVERY_S / c)  # scenario: the visitor's next frame
            kiosk.backend.mark_boundary()
            occupied = False

    def sample(self, now: float) -> None:
        if any(k.backend.status().state in FAILURE_STATES for k in self.kiosks):
            self.failing_at.append(now)

    async def stop(self) -> None:
        await cancel_and_wait(self.tasks, timeout_s=30)
        await self.emulator.__aexit__(None, None, None)

    def opens_per_min(self, t0: float, t1: float) -> List[int]:
        minute = WINDOW_S / self.c
        buckets = [0] * max(1, int((t1 - t0) / minute))
        for e in self.emulator.state.org_limit.events:
            if e.admitted and t0 <= e.at < t0 + len(buckets) * minute:
                buckets[int((e.at - t0) / minute)] += 1
        return buckets

    @property
    def refused(self) -> int:
        return sum(self.emulator.state.org_limit.refused.values())

    @property
    def share(self) -> float:
        frames = sum(k.frames for k in self.kiosks)
        return sum(k.measured for k in self.kiosks) / frames if frames else float("nan")


async def run_scenario(plan: Plan, outage: bool) -> Dict[int, Dict[str, Any]]:
    c = plan.compression
    minute = WINDOW_S / c
    total_min = plan.before_min + plan.outage_min + plan.after_min if outage else plan.steady_min
    start = time.monotonic()
    until = start + total_min * minute
    jpeg = tiny_jpeg()
    largest = max(plan.sizes)
    groups = {(n, limit): Group(n, limit, c, seed=n) for n in plan.sizes for limit in (LIMIT, 0)}
    groups[(largest, SCALED_LIMIT)] = Group(largest, SCALED_LIMIT, c, seed=largest)
    voice = Group(largest, LIMIT, c, seed=largest, voice=True)
    groups[(largest, -1)] = voice
    for group in groups.values():
        await group.start(jpeg, until)
    lag: List[float] = []
    outage_from = start + plan.before_min * minute
    outage_to = outage_from + plan.outage_min * minute
    in_outage = False
    while time.monotonic() < until:
        tick = time.monotonic()
        await asyncio.sleep(0.05)  # polling: a sampler, as a dashboard would poll
        now = time.monotonic()
        lag.append(now - tick - 0.05)
        if outage and not in_outage and outage_from <= now < outage_to:
            in_outage = True
            for group in groups.values():
                group.emulator.faults.refuse_status = 503
                await group.emulator.shutdown_sessions()
        elif outage and in_outage and now >= outage_to:
            in_outage = False
            for group in groups.values():
                group.emulator.faults.refuse_status = 0
        if not outage or now >= outage_to:
            for group in groups.values():
                group.sample(now)
    end = time.monotonic()
    results: Dict[int, Dict[str, Any]] = {}
    warm = start + minute  # the first minute: kiosks start mid-visit (the stationary state) and all open
    for n, limit in [(n, LIMIT) for n in plan.sizes] + [(largest, SCALED_LIMIT)]:
        lim, free = groups[(n, limit)], groups[(n, 0)]
        per_min = lim.opens_per_min(warm, end)
        after = lim.failing_at[-1] - outage_to if outage and lim.failing_at else 0.0
        after_free = free.failing_at[-1] - outage_to if outage and free.failing_at else 0.0
        results[n * LIMIT // limit] = {
            "limit": limit,
            "kiosks": n,
            "opens_peak": max(per_min),
            "opens_p99": _common.pct(per_min, 0.99),
            "opens_unlimited_peak": max(free.opens_per_min(warm, end)),
            "refused": lim.refused,
            "share": lim.share,
            "share_unlimited": free.share,
            "recovery_s": after * c,
            "recovery_unlimited_s": after_free * c,
            "still_failing": bool(lim.failing_at) and outage and end - lim.failing_at[-1] < 0.2,
            "frames": sum(k.frames for k in lim.kiosks),
        }
    for group in groups.values():
        await group.stop()
    voice_min = voice.opens_per_min(warm, end)
    results[0] = {
        "lag_p99_ms": _common.pct(lag, 0.99) * 1000,
        "took_s": end - start,
        "voice_kiosks": largest,
        "voice_peak": max(voice_min),
        "voice_refused": voice.refused,
    }
    return results


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    plan = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.ERROR)  # a thousand kiosks each announcing the outage once: not news
    scale_the_agent(plan.compression)
    steady = asyncio.run(run_scenario(plan, outage=False))
    outage = asyncio.run(run_scenario(plan, outage=True))
    rows = []
    details = []
    for n in [k for k in steady if k]:
        s, o = steady[n], outage[n]
        scaled = f" (as {s['kiosks']} on {s['limit']}/min)" if s["limit"] != LIMIT else ""
        ratio_s = s["share"] / s["share_unlimited"] if s["share_unlimited"] else float("nan")
        ratio_o = o["share"] / o["share_unlimited"] if o["share_unlimited"] else float("nan")
        details.append(
            f"N={n}{scaled}: steady opens/min peak {s['opens_peak']} p99 {s['opens_p99']} (unlimited peak "
            f"{s['opens_unlimited_peak']}), 429s {s['refused']}, measured {s['share']:.3f} vs "
            f"{s['share_unlimited']:.3f} unlimited ({s['frames']} frames); outage: opens/min peak "
            f"{o['opens_peak']} p99 {o['opens_p99']} (unlimited {o['opens_unlimited_peak']}), 429s "
            f"{o['refused']}, measured {o['share']:.3f} vs {o['share_unlimited']:.3f}, recovered "
            f"{o['recovery_s']:.0f} s after the outage (unlimited {o['recovery_unlimited_s']:.0f} s)"
            + (" - STILL FAILING at the end" if o["still_failing"] else "")
        )
        rows += [
            _common.row(
                "10 org limit",
                f"N={n:,}{scaled} steady 10 %: session opens/min peak / p99",
                (f"{s['opens_peak']} / {s['opens_p99']}", f"{s['opens_unlimited_peak']} unlimited", ""),
                f"<= {s['limit']}",
                s["opens_peak"] <= s["limit"],
            ),
            _common.row(
                "10 org limit",
                f"N={n:,}{scaled} steady 10 %: 429s; visitor-seconds measured vs unlimited",
                (f"{s['refused']}; {s['share']:.3f}", f"{s['share_unlimited']:.3f}", f"{ratio_s:.2f}x"),
                ">= 0.95x",
                ratio_s >= 0.95,
            ),
            _common.row(
                "10 org limit",
                f"N={n:,}{scaled} 5-min outage: opens/min peak / p99; 429s",
                (f"{o['opens_peak']} / {o['opens_p99']}; {o['refused']}", f"{o['opens_unlimited_peak']}", ""),
                f"<= {o['limit']}",
                o["opens_peak"] <= o["limit"],
            ),
            _common.row(
                "10 org limit",
                f"N={n:,}{scaled} 5-min outage: measured vs unlimited; time to full recovery",
                (
                    f"{o['share']:.3f}; {o['recovery_s']:.0f} s",
                    f"{o['share_unlimited']:.3f}; {o['recovery_unlimited_s']:.0f} s",
                    f"{ratio_o:.2f}x",
                ),
                "recovered <= 120 s",
                o["recovery_s"] <= 120 and not o["still_failing"],
            ),
        ]
    v_s, v_o = steady[0], outage[0]
    details.append(
        f"Face and voice, N={v_s['voice_kiosks']}: opens/min peak {v_s['voice_peak']} steady, "
        f"{v_o['voice_peak']} after the outage; 429s {v_s['voice_refused']} / {v_o['voice_refused']}."
    )
    rows.append(
        _common.row(
            "10 org limit",
            f"N={v_s['voice_kiosks']:,} face + voice (2 sessions a visit): opens/min peak steady / outage",
            (f"{v_s['voice_peak']} / {v_o['voice_peak']}", "", ""),
            f"<= {LIMIT}",
            max(v_s["voice_peak"], v_o["voice_peak"]) <= LIMIT,
        )
    )
    details.append(
        f"Time x{plan.compression:g}: the steady run took {steady[0]['took_s']:.0f} s, the outage run "
        f"{outage[0]['took_s']:.0f} s; event-loop lag p99 {steady[0]['lag_p99_ms']:.0f} / "
        f"{outage[0]['lag_p99_ms']:.0f} ms real ({steady[0]['lag_p99_ms'] * plan.compression / 1000:.1f} / "
        f"{outage[0]['lag_p99_ms'] * plan.compression / 1000:.1f} s simulated)."
    )
    _common.finish(
        args, "Benchmark 10: a fleet on one organisation's request limit", "\n".join(details), rows
    )


if __name__ == "__main__":
    main()
