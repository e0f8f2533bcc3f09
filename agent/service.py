"""Wires capture, the Hume backend, sessions, summaries and MQTT into one supervised set of tasks.

This is the only module that knows every part. It owns all tasks (a 3.9-safe stand-in for
``asyncio.TaskGroup``), turns SIGTERM / SIGINT into a clean stop, pings the systemd watchdog from the
event loop itself (so a stuck loop gets the unit restarted), and writes the status snapshot that
``hume-edge status`` reads.

Privacy (``agent.privacy.state``, docs/privacy.md): while paused, frames and audio are dropped as they arrive,
before the presence check, voice activity or encoding; media of a visit leaves only once the notice gate
allows it (the retained ``notice`` acknowledged by the broker, or durably queued while it is down); the
per-part status (``status/camera``, ``status/microphone``, ``status/hume``) follows every tick.

Shutdown order matters for "nothing lost": capture stops first, then the open session is ended so its
aggregate lands in the durable outbox, and only then the MQTT publisher is cancelled (it publishes a
retained ``stopped`` and disconnects). Whatever was not yet acknowledged stays in the outbox for the next
start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from agent import config as config_mod
from agent.aio import TaskOwner
from agent.capture.camera import FrameSource
from agent.capture.factory import open_camera, open_microphone
from agent.capture.microphone import AudioSource
from agent.config import Config
from agent.errors import EX_CONFIG, EX_UNAVAILABLE, AgentError, ConfigError, HumeAuthError, HumeQuotaError
from agent.hume.backend import Backend
from agent.hume.types import Observation
from agent.media.audio import voice_activity
from agent.media.frames import Frame
from agent.media.video import FramePipeline
from agent.messages import OutMessage
from agent.mqtt.guard import exposure_warnings
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.ops import identity, logs, parts
from agent.ops import status as status_mod
from agent.ops.health import (
    CameraHealth,
    MicrophoneHealth,
    PrivacyHealth,
    ServiceHealth,
    SessionHealth,
    SummaryHealth,
)
from agent.ops.sdnotify import Notifier
from agent.privacy.state import NoticeGate, PauseControl, PauseEvent
from agent.visit.audio_gate import AudioGate
from agent.visit.presence import PresenceDetector
from agent.visit.session import SessionEvent, SessionTracker
from agent.visit.summary import Summarizer
from agent.visit.tally import Tally

_LOGGER = logging.getLogger(__name__)

TICK_S = 0.5
"""Session timers, summary windows and the watchdog are serviced at this period."""
STATUS_EVERY_S = 5.0
"""Status snapshot and systemd STATUS= period."""
DRAIN_TIMEOUT_S = 3.0
"""At a clean stop, how long a connected publisher may take to deliver what is queued."""
SESSION_STATE_PREFIX = "session/"
"""Outbox ``state`` keys of open sessions' checkpoints: ``session/<session id>``."""


class Agent:
    """The running agent: the loops between the parts and the state they share."""

    def __init__(
        self,
        cfg: Config,
        backend: Backend,
        publisher: Publisher,
        camera: Optional[FrameSource],
        microphone: Optional[AudioSource],
        *,
        notifier: Notifier,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.publisher = publisher
        self.camera = camera
        self.microphone = microphone
        self.notifier = notifier
        self._mono = monotonic
        self._wall = wall
        # A kiosk with neither camera nor microphone cannot tell absence (and streams only cmd/text, which
        # commands bring): there a commanded session is held as before.
        sensing = camera is not None or microphone is not None
        self.sessions = SessionTracker(
            cfg.session if sensing else dataclasses.replace(cfg.session, hold_commanded=True)
        )
        self.summaries = Summarizer(
            cfg.summary, cfg.effective_device_id, per_face=cfg.privacy.per_face_detail
        )
        self.pipeline = FramePipeline(cfg.camera, max_fps=min(cfg.camera.fps, cfg.hume.fps_pred))
        # Starts and ends visits in presence mode; ends commanded ones nobody attends in command mode (unless
        # session.hold_commanded); finds the faces camera.crop keeps.
        absence_ends_commanded = cfg.session.mode == "command" and not cfg.session.hold_commanded
        self.presence = (
            PresenceDetector(min_face_px=cfg.hume.min_face_size, sent_width=cfg.camera.width)
            if cfg.session.mode == "presence" or absence_ends_commanded or cfg.camera.crop == "faces"
            else None
        )
        self.audio_gate = AudioGate(cfg.microphone, spill_hangover=cfg.hume.backend == "v1")
        self.counters: Dict[str, int] = {"frames": 0, "frames_sent": 0, "audio_chunks": 0, "audio_sent": 0}
        self.tally = Tally(cfg.hume.models)
        """Visits ended by reason and summaries by model, from what is queued (health, metrics)."""
        self.identity = identity.collect(cfg, started_at=wall())
        self._checkpointed: Set[str] = set()
        """Sessions whose checkpoint is in the outbox's ``state`` table (deleted when they end)."""
        self.pause = PauseControl(cfg.privacy.max_pause_s)
        self.notice = NoticeGate(cfg.privacy.notice_text, cfg.effective_device_id)
        self.dropped_paused = 0
        """Frames and audio chunks dropped unprocessed because of a privacy pause."""
        self.dropped_unannounced = 0
        """Frames and chunks of a visit dropped because its notice was not yet published."""
        self.on_privacy_change: List[Callable[[], None]] = []
        """Called whenever the notice, the pause or the gate may have changed (the page, the LED)."""
        self._media_was_allowed = False
        self._queued_since_withdraw = False
        """Media went to the backend since its queues were last dropped (:meth:`_withdraw`)."""
        self.withdrawals = 0
        """Times media stopped being allowed with media queued: a frame encoded across one is dropped."""
        self.page: Optional[Any] = None
        """The on-screen page (``agent.privacy.notice_page.NoticePage``) when ``privacy.page`` is on."""
        publisher.on_delivered = self._notice_delivered

    # -- session events -------------------------------------------------------------------------

    def _apply(self, events: Iterable[SessionEvent]) -> None:
        for ev in events:
            wall = self._wall()
            if ev.kind == "start":
                _LOGGER.info("session %s started (%s)", ev.session_id, ev.reason)
                msgs = self.summaries.session_started(ev, wall)
            else:
                _LOGGER.info("session %s ended (%s)", ev.session_id, ev.reason)
                msgs = self.summaries.session_ended(ev, wall)
            # Every start and end is a boundary: no audio window or face id may cross it.
            self.backend.mark_boundary()
            self.audio_gate.reset()
            if ev.kind == "start":
                self.sync_privacy()  # the notice of this visit is queued before its start message
            self._publish(msgs)
        self.sync_privacy()

    def _publish(self, msgs: Iterable[OutMessage]) -> None:
        """Queue messages together with the checkpoints of the open sessions, in one transaction.

        A checkpoint is rewritten only with messages (a session start, a window's summaries, an end), so a
        quiet visit costs no writes; at a session's end its checkpoint is deleted with its end message.
        """
        batch = list(msgs)
        if not batch:
            return
        current = self.summaries.checkpoints(self._wall())
        state: Dict[str, Optional[str]] = {SESSION_STATE_PREFIX + sid: doc for sid, doc in current.items()}
        state.update({SESSION_STATE_PREFIX + sid: None for sid in self._checkpointed - set(current)})
        if self.publisher.enqueue_many(batch, state=state)[0] >= 0:
            self._checkpointed = set(current)
            self.tally.observe(batch, self._wall())

    def recover_interrupted(self, checkpoints: Mapping[str, str]) -> int:
        """End the sessions a previous run left open (reason ``interrupted``); returns how many.

        ``checkpoints`` are the outbox's ``state`` rows under :data:`SESSION_STATE_PREFIX`. Each session's
        aggregate, end and idle messages are queued with the deletion of its checkpoint, in one
        transaction, before any new session can start. An unreadable checkpoint still gets its end (with
        no aggregate, zero duration and the restart as its start), so the retained ``session`` is never
        left at ``start``.
        """
        wall = self._wall()
        for key, checkpoint in sorted(checkpoints.items()):
            sid = key[len(SESSION_STATE_PREFIX) :]
            try:
                msgs = self.summaries.recover(sid, checkpoint, wall)
            except ValueError as exc:
                _LOGGER.error("%s; ending it without an aggregate", exc)
                msgs = self.summaries.recover(sid, self.summaries.bare_checkpoint(wall), wall)
            _LOGGER.warning(
                "session %s was still open when the agent last stopped (killed, crashed or a power cut): "
                "ended it with reason interrupted",
                sid,
            )
            self.publisher.enqueue_many(msgs, state={key: None})
            self.tally.observe(msgs, wall)
        return len(checkpoints)

    @property
    def _streaming(self) -> bool:
        """Media may go to Hume: a visit (or idle streaming), no pause, and the visit's notice is out."""
        if not self.sessions.should_stream or self.pause.paused:
            return False
        if self.notice.media_allowed(self.publisher.connected):
            return True
        self.dropped_unannounced += 1
        return False

    # -- privacy --------------------------------------------------------------------------------

    def start_privacy(self) -> None:
        """At start-up: withdraw a notice a crash may have left active, and say each part's state."""
        self.publisher.enqueue(self.notice.message(self._wall()))
        self.publish_parts()

    def stop_parts(self) -> None:
        """At a clean stop nothing measures any more: every part says ``offline``."""
        for part in parts.PARTS:
            self.publisher.set_state(parts.topic(part), parts.OFFLINE.encode())

    def privacy(self, action: str, source: str) -> None:
        """``pause`` / ``resume`` / ``toggle`` from ``source`` (mqtt, page, button)."""
        now = self._mono()
        events = (
            self.pause.toggle(now, source) if action == "toggle" else self.pause.command(now, action, source)
        )
        self._paused(events)

    def _paused(self, events: Iterable[PauseEvent]) -> None:
        for ev in events:
            if ev.kind == "paused":
                _LOGGER.info(
                    "privacy pause (%s): nothing is captured or sent for at most %g s",
                    ev.source,
                    self.pause.max_pause_s,
                )
            else:
                _LOGGER.info("privacy pause ended (%s): measuring again", ev.source)
            self.sync_privacy()

    def _notice_delivered(self, seq: int) -> None:
        self.notice.delivered(seq)
        self.sync_privacy()

    def sync_privacy(self) -> None:
        """Publish the notice if what it must say changed; refresh per-part status, the page and the LED."""
        msg = self.notice.update(
            self.sessions.should_stream and not self.pause.paused, self.sessions.session_id, self._wall()
        )
        if msg is not None:
            self.notice.queued(self.publisher.enqueue(msg))
        allowed = self.notice.media_allowed(self.publisher.connected) and not self.pause.paused
        if not allowed and self._queued_since_withdraw:
            self._withdraw()
        if msg is not None or allowed != self._media_was_allowed:
            self._media_was_allowed = allowed
            for callback in self.on_privacy_change:
                callback()
        self.publish_parts()

    def _withdraw(self) -> None:
        """Media may no longer leave: drop what the backend and the silence gate's pre-roll hold.

        Whatever was captured before this moment stays here, however long Hume was unreachable: a pause
        pressed while the link was in backoff once sent 4.8 s of audio and 3 frames afterwards (#31).
        """
        self._queued_since_withdraw = False
        self.withdrawals += 1
        self.audio_gate.reset()
        dropped = self.backend.withdraw()
        if dropped:
            _LOGGER.info("media may no longer leave: dropped %d queued items captured before", dropped)

    def publish_parts(self) -> None:
        """Retained ``status/camera``, ``status/microphone``, ``status/hume`` (only what changed is sent)."""
        for part, state in self.part_states().items():
            self.publisher.set_state(parts.topic(part), state.encode())

    def part_states(self) -> Dict[str, str]:
        """Each part's word (``agent.ops.parts``): a pause disables capture, a lost device is offline."""
        paused = self.pause.paused
        return {
            "camera": parts.capture_state(
                self.camera is not None, self.camera is not None and self.camera.recovery.lost, paused
            ),
            "microphone": parts.capture_state(
                self.microphone is not None,
                self.microphone is not None and self.microphone.recovery.lost,
                paused,
            ),
            "hume": parts.hume_state(self.backend.status().ok),
        }

    @property
    def media_allowed(self) -> bool:
        """Whether media may leave right now (the capture LED)."""
        return self._media_was_allowed and not self.pause.paused

    # -- loops ----------------------------------------------------------------------------------

    async def camera_loop(self, camera: FrameSource) -> None:
        async for frame in camera.frames():
            self.counters["frames"] += 1
            if self.pause.paused:
                self.dropped_paused += 1
                continue
            withdrawals = self.withdrawals
            if self.presence is not None:
                present = await asyncio.to_thread(self.presence.present, frame)
                self._apply(self.sessions.observe(self._mono(), presence=present))
            if self._streaming and withdrawals == self.withdrawals:
                await self._send_frame(frame, withdrawals)

    async def _send_frame(self, frame: Frame, withdrawals: int) -> None:
        faces = self.presence.last_faces if self.presence is not None else ()
        encoded = await asyncio.to_thread(self.pipeline.process, frame, faces)
        if encoded is None:
            return
        if self.withdrawals != withdrawals or self.pause.paused:
            self.dropped_paused += 1  # paused (or the notice withdrawn) while it was being encoded
            return
        self.counters["frames_sent"] += 1
        self._queued_since_withdraw = True
        self.backend.send_frame(encoded.jpeg, encoded.captured_at, self.sessions.session_id)

    async def microphone_loop(self, microphone: AudioSource) -> None:
        async for chunk in microphone.chunks():
            self.counters["audio_chunks"] += 1
            if self.pause.paused:
                self.dropped_paused += 1
                continue
            self._apply(self.sessions.observe(self._mono(), voice=voice_activity(chunk.pcm16)))
            if not self._streaming:
                self.audio_gate.reset()
                continue
            for piece in self.audio_gate.admit(chunk):  # silence is not paid for (agent.visit.audio_gate)
                self.counters["audio_sent"] += 1
                self._queued_since_withdraw = True
                self.backend.send_audio(piece.pcm16, piece.captured_at, self.sessions.session_id)

    async def results_loop(self) -> None:
        while True:
            obs: Observation = await self.backend.receive()
            if obs.model == "face" and obs.session_id == self.sessions.session_id:
                self._apply(self.sessions.observe(self._mono(), face=bool(obs.measurements)))
            self.summaries.add(obs)

    async def command_loop(self) -> None:
        async for cmd in self.publisher.commands():
            if cmd.name == "session":
                self._apply(self.sessions.command(self._mono(), cmd.action))
            elif cmd.name == "text" and self._streaming:
                self._queued_since_withdraw = True
                self.backend.send_text(cmd.text, self._wall(), self.sessions.session_id)
            elif cmd.name == "privacy":
                self.privacy(cmd.action, "mqtt")

    async def tick_loop(self) -> None:
        """Timers, summary windows, the watchdog and STATUS=, all from the event loop itself."""
        last_status = last_watchdog = float("-inf")
        watchdog_every_s = self.notifier.watchdog_interval_s or TICK_S
        while True:
            now = self._mono()
            self._paused(self.pause.tick(now))
            self._apply(self.sessions.tick(now))
            self._publish(self.summaries.flush(self._wall()))
            if now - last_watchdog >= watchdog_every_s:
                last_watchdog = now
                self.notifier.watchdog()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                self.notifier.status(status_mod.summary_line(self.publisher.health_snapshot().to_json()))
            await asyncio.sleep(TICK_S)

    # -- reporting ------------------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """The agent's part of the health topic and the status snapshot (the publisher adds MQTT's)."""
        counters = self.counters
        states = self.part_states()
        return ServiceHealth(
            device_id=self.cfg.effective_device_id,
            session=SessionHealth(
                active=self.sessions.active, id=self.sessions.session_id, ended=dict(self.tally.ended)
            ),
            camera=CameraHealth(
                state=states["camera"],
                frames=counters["frames"],
                frames_sent=counters["frames_sent"],
                media=dict(self.pipeline.counters),
            ),
            microphone=MicrophoneHealth(
                state=states["microphone"],
                chunks=counters["audio_chunks"],
                chunks_sent=counters["audio_sent"],
                audio_sent_ms=self.audio_gate.passed_ms,
                audio_skipped_ms=self.audio_gate.skipped_ms,
            ),
            summaries=SummaryHealth(
                **self.summaries.stats(),
                published=dict(self.tally.published),
                last_at=self.tally.last_summary_iso,
            ),
            hume=self.backend.status(),
            last_error=logs.last_problem(),
            privacy=PrivacyHealth(
                deployment_context=self.cfg.privacy.deployment_context,
                paused=self.pause.paused,
                pause_left_s=_round1(self.pause.remaining_s(self._mono())),
                pauses=self.pause.pauses,
                notice_active=self.notice.active,
                notice_published=self.notice.state().published,
                notices=self.notice.notices,
                dropped_paused=self.dropped_paused,
                dropped_unannounced=self.dropped_unannounced,
            ),
            identity=self.identity,
        )

    # -- shutdown -------------------------------------------------------------------------------

    def end_session(self) -> None:
        """The agent is stopping: end the open session (reason ``shutdown``) so its aggregate is queued."""
        self._apply(self.sessions.shutdown(self._mono()))
        self._publish(self.summaries.flush(self._wall()))


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
) -> int:
    """Run until SIGTERM / SIGINT (or ``stop`` is set); return the process exit code.

    ``sources`` replaces the configured camera and microphone (scripted scenes in tests). ``source``
    names the config in a refusal (:func:`agent.config.check_runnable`, exit 78, the very message
    ``hume-edge check-config`` prints).
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
    agent: Optional[Agent] = None
    gpio = None
    if cfg.privacy.gpio_button_pin >= 0 or cfg.privacy.gpio_led_pin >= 0:
        from agent.privacy.gpio import GpioControls

        try:
            gpio = GpioControls(cfg.privacy, lambda: agent.privacy("toggle", "button") if agent else None)
        except AgentError as exc:
            _LOGGER.error("%s", exc)
            return EX_CONFIG
    outbox = Outbox(cfg.outbox_path, cfg.outbox)
    backend = make_backend(cfg)
    publisher = Publisher(
        cfg.mqtt,
        cfg.effective_device_id,
        outbox,
        health=lambda: agent.health() if agent else None,
        models=cfg.hume.models,
        commands=cfg.commands,
    )
    camera, microphone = sources or (open_camera(cfg.camera), open_microphone(cfg.microphone))
    agent = Agent(cfg, backend, publisher, camera, microphone, notifier=notifier)
    agent.recover_interrupted(outbox.state_items(SESSION_STATE_PREFIX))
    owner = TaskOwner()
    _log_context(cfg)
    agent.start_privacy()
    if gpio is not None:
        led = gpio
        agent.on_privacy_change.append(lambda: led.capturing(agent.media_allowed if agent else False))
    if cfg.privacy.page:
        owner.start("page", _notice_page(cfg, agent).run())
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
    agent.end_session()
    agent.stop_parts()
    if gpio is not None:
        gpio.close()
    await _drain(publisher)
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


def _round1(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


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


def _notice_page(cfg: Config, agent: Agent) -> Any:
    """The on-screen page (``privacy.page``); aiohttp.web is imported only here, when it is on."""
    from agent.privacy.notice_page import NoticePage, PageState

    def state() -> PageState:
        left = agent.pause.remaining_s(time.monotonic())
        return PageState(
            measuring=agent.notice.active,
            notice=agent.notice.text,
            paused=agent.pause.paused,
            pause_left_s=None if left is None else int(left + 0.999),
        )

    page = NoticePage(
        cfg.privacy.page_host, cfg.privacy.page_port, state, lambda: agent.privacy("pause", "page")
    )
    agent.on_privacy_change.append(page.changed)
    agent.page = page
    return page


async def _drain(publisher: Publisher) -> None:
    """Give a connected publisher a moment to deliver the last session's messages before we exit.

    Not required for correctness (the outbox keeps them for the next start), but a dashboard should see
    a visit end when the agent is stopped, not when it is started again.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
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
    if isinstance(exc, (HumeAuthError, HumeQuotaError)):
        _LOGGER.error("%s", exc)
        return EX_UNAVAILABLE
    if exc is not None:
        _LOGGER.error("%s failed", name, exc_info=exc)
        return 1
    _LOGGER.error("%s ended unexpectedly", name)
    return 1
