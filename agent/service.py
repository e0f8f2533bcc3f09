"""Composes the agent and supervises it: capture, the Hume backend, the hub (``agent.hub``) and MQTT.

This is the only module that builds every part. It owns all tasks (a 3.9-safe stand-in for
``asyncio.TaskGroup``), turns SIGTERM / SIGINT into a clean stop, pings the systemd watchdog from the
event loop itself (so a stuck loop gets the unit restarted), and writes the status snapshot that
``hume-edge status`` reads. :func:`run_agent` takes a ``make_backend`` and an ``on_agent`` seam, so tests
and benchmarks patch nothing here.

Shutdown order matters for "nothing lost" and for "a stopped kiosk looks stopped": capture stops first,
then the open session is ended so its aggregate, end and idle messages land in the durable outbox and are
delivered (within :data:`DRAIN_TIMEOUT_S` in all); only then the parts say ``stopped``, the notice is
withdrawn (delivered too), and the MQTT publisher is cancelled: a last ``health`` (session inactive, notice
off, parts stopped), the retained ``stopped`` status, a clean disconnect. Nothing re-publishes a part
``online`` after that (the session end used to). Whatever was not yet acknowledged stays in the outbox for
the next start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from typing import Any, Callable, Optional, Tuple

from agent import config as config_mod
from agent.aio import TaskOwner
from agent.capture.camera import FrameSource
from agent.capture.factory import open_camera, open_microphone
from agent.capture.microphone import AudioSource
from agent.config import Config
from agent.errors import EX_CONFIG, EX_UNAVAILABLE, AgentError, ConfigError, HumeAuthError
from agent.hub import STATUS_EVERY_S, Agent
from agent.hume.backend import Backend
from agent.hume.types import published_models
from agent.mqtt.guard import exposure_warnings
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.ops import status as status_mod
from agent.ops.sdnotify import Notifier
from agent.privacy.desk import PrivacyDesk
from agent.visit.recorder import SESSION_STATE_PREFIX

_LOGGER = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 3.0
"""At a clean stop, how long a connected publisher may take to deliver what is queued."""


def make_backend(cfg: Config) -> Backend:
    """The Hume backend the config asks for. Only this function knows the implementations."""
    if cfg.hume.backend == "v1":
        from agent.hume.v1.client import V1Backend

        return V1Backend(cfg.hume)
    from agent.hume.v0.client import V0Backend

    return V0Backend(cfg.hume)


async def run_agent(
    cfg: Config,
    stop: Optional[asyncio.Event] = None,
    sources: Optional[Tuple[Optional[FrameSource], Optional[AudioSource]]] = None,
    source: str = "config",
    *,
    make_backend: Callable[[Config], Backend] = make_backend,
    on_agent: Optional[Callable[[Agent], None]] = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Run until SIGTERM / SIGINT (or ``stop`` is set); return the process exit code.

    ``sources`` replaces the configured camera and microphone (scripted scenes in tests). ``source``
    names the config in a refusal (:func:`agent.config.check_runnable`, exit 78, the very message
    ``hume-edge check-config`` prints). The seams for tests and benchmarks: ``make_backend`` builds the
    Hume backend (wrap :func:`make_backend` to record what it is sent); ``on_agent`` sees the composed
    :class:`Agent` before any of its tasks starts; ``monotonic`` is the clock of the agent's rules (visits,
    pauses, command limits), so a faster one lets a test live through an hour of them in a minute
    (``tests/integration/test_privacy_limits.py``; the links' timeouts keep the real clock).
    """
    try:
        config_mod.check_runnable(cfg, source)
    except ConfigError as exc:
        _LOGGER.error("%s", exc)
        return EX_CONFIG
    raise_open_files_limit()
    notifier = Notifier.from_env()
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    for warning in exposure_warnings(cfg.mqtt):
        _LOGGER.warning("%s", warning)
    gpio = None
    if cfg.privacy.gpio_button_pin >= 0 or cfg.privacy.gpio_led_pin >= 0:
        from agent.privacy.gpio import GpioControls

        try:  # before anything opens: a busy pin is a config problem (exit 78)
            gpio = GpioControls(cfg.privacy)
        except AgentError as exc:
            _LOGGER.error("%s", exc)
            return EX_CONFIG
    outbox = Outbox(cfg.outbox_path, cfg.outbox)
    backend = make_backend(cfg)
    publisher = Publisher(
        cfg.mqtt,
        cfg.effective_device_id,
        outbox,
        models=published_models(cfg.hume.backend, cfg.hume.models),
        commands=cfg.commands,
        command_clock=monotonic,
    )
    camera, microphone = sources or (open_camera(cfg.camera), open_microphone(cfg.microphone))
    agent = Agent(cfg, backend, publisher, camera, microphone, notifier=notifier, monotonic=monotonic)
    if on_agent is not None:
        on_agent(agent)
    agent.recorder.recover(outbox.state_items(SESSION_STATE_PREFIX))
    agent.start_readings()
    owner = TaskOwner()
    _log_context(cfg)
    agent.start_privacy()
    if gpio is not None:
        gpio.on_press = functools.partial(agent.privacy, "toggle", "button")
        agent.desk.listeners.append(functools.partial(_light, gpio, agent.desk))
    if cfg.privacy.page:
        owner.start("page", _notice_page(cfg, agent, monotonic).run())
    owner.start("mqtt", publisher.run())
    owner.start("hume", backend.run())
    owner.start("results", agent.results_loop())
    owner.start("commands", agent.command_loop())
    owner.start("tick", agent.tick_loop())
    owner.start(
        "status",
        status_mod.run(
            status_mod.default_path(), lambda: publisher.health_snapshot().to_json(), STATUS_EVERY_S
        ),
    )
    if cfg.metrics.textfile_dir or cfg.metrics.listen:
        from agent.ops import metrics_run  # prometheus_client is imported only when metrics are on

        owner.start(
            "metrics",
            metrics_run.run(
                cfg.metrics,
                cfg.effective_device_id,
                lambda: publisher.health_snapshot().to_json(),
                cfg.mqtt.health_interval_s,
            ),
        )
    if agent.camera is not None:
        owner.start("camera", agent.camera_loop(agent.camera))
    if agent.microphone is not None:
        owner.start("microphone", agent.microphone_loop(agent.microphone))
    notifier.ready()
    _LOGGER.info("hume-edge running as %s: tasks %s", cfg.effective_device_id, ", ".join(owner.names))

    code = 0
    ended = await owner.wait_any(stop)
    if ended is not None:
        code = _exit_code_for(ended)
    # systemd's STATUS= says why we stop (e.g. "hume auth_failed"), not what it said a tick ago.
    notifier.status(status_mod.summary_line(publisher.health_snapshot().to_json()))
    notifier.stopping()
    _LOGGER.info("stopping")
    await owner.cancel([n for n in owner.names if n not in ("mqtt",)])
    await _close_devices(agent)
    # The visit's end first, then the stop's own words, in order: the parts say stopped, the notice is
    # withdrawn, and the publisher, cancelled, sends a last health and the retained "stopped".
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    agent.end_session()
    await _drain(publisher, deadline)
    agent.stop_parts()
    agent.withdraw_notice()
    if gpio is not None:
        gpio.close()
    await _drain(publisher, deadline)
    await owner.cancel(["mqtt"])
    outbox.close()
    _LOGGER.info("stopped (exit %d)", code)
    return code


OPEN_FILES_SOFT = 4096
"""The soft RLIMIT_NOFILE the agent raises itself to at start (at most the hard limit): the unit's
``LimitNOFILE=``. Linux's default soft limit is 1024, which ~1,010 idle connections once used up (#31)."""


def raise_open_files_limit(want: int = OPEN_FILES_SOFT) -> int:
    """Raise the soft descriptor limit to ``want`` (capped by the hard limit); never lower it. Returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            _LOGGER.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft


async def _close_devices(agent: Agent) -> None:
    """Wait for the camera's and the microphone's threads to end before the process does (see
    :meth:`FrameSource.close`); one that does not is named, and the process exits without it."""
    for name, device in (("camera", agent.camera), ("microphone", agent.microphone)):
        if device is not None and not await device.close():
            _LOGGER.warning("the %s's thread was still busy at exit (%s)", name, device.describe())


def _light(gpio: Any, desk: PrivacyDesk) -> None:
    """The capture LED follows whether media may leave."""
    gpio.capturing(desk.media_allowed)


def _log_context(cfg: Config) -> None:
    """Say once where the kiosk says it is deployed, and any Art. 5(1)(f) exception claimed for it."""
    reason = cfg.privacy.medical_or_safety_reason.strip()
    if reason:
        _LOGGER.warning(
            "deployment context %r under the medical / safety exception of EU AI Act Art. 5(1)(f): %s",
            cfg.privacy.deployment_context,
            reason,
        )
    else:
        _LOGGER.info("deployment context: %s (docs/privacy.md)", cfg.privacy.deployment_context)


def _notice_page(cfg: Config, agent: Agent, monotonic: Callable[[], float]) -> Any:
    """The on-screen page (``privacy.page``); aiohttp.web is imported only here, when it is on."""
    from agent.privacy.notice_page import NoticePage, PageState

    desk = agent.desk

    def state() -> PageState:
        left = desk.pause.remaining_s(monotonic())
        return PageState(
            measuring=desk.notice.active,
            notice=desk.notice.text,
            paused=desk.pause.paused,
            pause_left_s=None if left is None else int(left + 0.999),
        )

    page = NoticePage(cfg.privacy.page_host, cfg.privacy.page_port, state, agent.page_pause)
    desk.listeners.append(page.changed)
    return page


async def _drain(publisher: Publisher, deadline: float) -> None:
    """Give a connected publisher a moment to deliver the last session's messages before we exit.

    Not required for correctness (the outbox keeps them for the next start), but a dashboard should see
    a visit end when the agent is stopped, not when it is started again.
    """
    while time.monotonic() < deadline:
        state = publisher.status()
        if state.state != "connected" or not state.queue_depth:
            return
        await asyncio.sleep(0.05)


def _exit_code_for(task: asyncio.Task[Any]) -> int:
    name = task.get_name()
    if task.cancelled():
        return 1
    exc = task.exception()
    if isinstance(exc, HumeAuthError):
        _LOGGER.error("%s", exc)
        return EX_UNAVAILABLE
    if exc is not None:
        _LOGGER.error("%s failed", name, exc_info=exc)
        return 1
    _LOGGER.error("%s ended unexpectedly", name)
    return 1
