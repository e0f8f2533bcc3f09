"""The hub: the loops between the parts, and the health they add up to.

Media flows camera / microphone -> (privacy pause) -> presence, voice activity -> the visit's session ->
the media gate -> the Hume backend; replies flow back into the visit recorder's summaries, which leave
through the MQTT outbox. Each decision is its part's own class: the visit recorder (sessions, summaries,
checkpoints, crash recovery; ``agent.visit.recorder``), the media gate (may this piece leave; drops by
reason and kind; ``agent.visit.gate``), the privacy desk (pause and notice; ``agent.privacy.desk``). The
hub hands each the others' state and carries out their answers; ``agent.service`` builds it and
supervises its tasks.

Privacy (docs/privacy.md): while paused, frames and audio are dropped as they arrive, before the presence
check, voice activity or encoding; media of a visit leaves only once its notice is out (the retained
``notice`` acknowledged by the broker, or durably queued while it is down; in presence mode raised when a
visit's debounce begins, its media held in memory until the debounce decides); the per-part status
(``status/camera``, ``status/microphone``, ``status/hume``) follows every change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

from agent.aio import OnFirstUse, wait_event
from agent.capture.camera import FrameSource
from agent.capture.microphone import AudioSource
from agent.config import Config
from agent.hume.backend import Backend
from agent.hume.types import Observation, published_models
from agent.media.audio import AudioChunk, voice_activity
from agent.media.frames import Box, Frame
from agent.media.video import FramePipeline
from agent.messages import encode
from agent.mqtt.commands import Command
from agent.mqtt.publisher import Publisher
from agent.ops import identity, logs, parts
from agent.ops import status as status_mod
from agent.ops.health import CameraHealth, MicrophoneHealth, ServiceHealth, SessionHealth, SummaryHealth
from agent.ops.sdnotify import Notifier
from agent.privacy.desk import PrivacyDesk
from agent.privacy.state import PauseRefused
from agent.visit.audio_gate import AudioGate
from agent.visit.gate import DebounceHold, MediaGate
from agent.visit.presence import PresenceDetector
from agent.visit.recorder import VisitRecorder
from agent.visit.session import SessionEvent

_LOGGER = logging.getLogger(__name__)

TICK_S = 0.5
"""Session timers, summary windows and the watchdog are serviced at this period."""
STATUS_EVERY_S = 5.0
"""Status snapshot and systemd STATUS= period."""


class Agent:
    """The hub: composes the parts, runs the loops between them, and assembles their health.

    What each part decides is its own class: the visit recorder (sessions, summaries, checkpoints, crash
    recovery; ``agent.visit.recorder``), the media gate (may this piece leave, drops by reason and kind;
    ``agent.visit.gate``) and the privacy desk (pause and notice; ``agent.privacy.desk``). The hub only
    passes each the others' state and carries out their answers.
    """

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
        self.recorder = VisitRecorder(
            cfg.session if sensing else dataclasses.replace(cfg.session, hold_commanded=True),
            cfg.summary,
            cfg.effective_device_id,
            lambda msgs, state: publisher.enqueue_many(msgs, state=state)[0] >= 0,
            models=cfg.hume.models,
            per_face=cfg.privacy.per_face_detail,
            wall=wall,
            on_boundary=self._boundary,
        )
        self.sessions = self.recorder.sessions
        self.desk = PrivacyDesk(
            cfg.privacy,
            cfg.effective_device_id,
            publisher.enqueue,
            wall=wall,
            mqtt_pauses_per_hour=cfg.commands.privacy_per_hour,
        )
        publisher.intake.immediate["privacy"] = self._privacy_command
        self.gate = MediaGate()
        fps = min(cfg.camera.fps, cfg.hume.fps_pred)  # to Hume: the pipeline's rate, the hold's size
        self.pipeline = FramePipeline(cfg.camera, max_fps=fps)
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
        self._allowed_after: Optional[int] = None
        """Frames the camera had read when media last became allowed (None while it may not): those, captured
        before the visit's notice was out, are not sent. A count, not a wall time: a clock stepped back
        (a Pi's NTP sync) must not hold back every later frame of the visit."""
        self._allowed_since: Optional[float] = None
        """The monotonic time media last became allowed (None while it may not): audio captured before it
        is not sent (``AudioChunk.captured_mono``; a chunk arriving just after that moment holds up to
        ``microphone.chunk_ms`` from before it)."""
        self.held = DebounceHold(cfg.session.debounce_s, fps, cfg.microphone.chunk_ms)
        self._timers = OnFirstUse(asyncio.Event)
        """Set when a session timer may have moved (a debounce began): the tick loop re-arms for it."""
        self.identity = identity.collect(cfg, started_at=wall())
        publisher.on_delivered = self._notice_delivered
        publisher.service_health = self.health
        self.stopping = False
        """Set at a clean stop: the parts read ``stopped`` and the notice waits for :meth:`withdraw_notice`
        (``agent.service``: the stop's own words come last, in order)."""

    # -- visits ---------------------------------------------------------------------------------

    def _apply(self, events: Iterable[SessionEvent]) -> None:
        self.recorder.apply(events)
        self.sync_privacy()

    def _boundary(self, ev: SessionEvent) -> None:
        """Every start and end is a boundary: no audio window or face id may cross it."""
        self.backend.mark_boundary()
        self.audio_gate.reset()
        if ev.kind == "start":
            self.sync_privacy()  # the notice of this visit is queued before its start message

    def _announce(self) -> Tuple[bool, Optional[str]]:
        """Whether the notice must be up now, and the visit it names: during a visit (or idle streaming),
        and in presence mode from a debounce's first frame, under the id it will start with (its media
        then waits in :attr:`held`, ``agent.visit.gate.DebounceHold``)."""
        if self.sessions.should_stream:
            return True, self.sessions.session_id
        pending = self.sessions.pending_id if self.presence is not None else None
        return pending is not None, pending

    def _holding(self) -> bool:
        """Media captured now belongs to a visit being debounced whose notice is out: held, not sent."""
        return (
            not self.sessions.should_stream
            and self._allowed_after is not None
            and not self.desk.paused
            and self._announce()[0]
        )

    def _may_send(self, kind: str) -> bool:
        """Whether a ``kind`` piece may go to Hume now (the media gate counts one held back)."""
        return self.gate.admit(
            kind,
            in_visit=self.sessions.should_stream,
            paused=self.desk.paused,
            announced=self.desk.announced(self.publisher.connected),
        )

    # -- privacy --------------------------------------------------------------------------------

    def start_privacy(self) -> None:
        """At start-up: withdraw a notice a crash may have left active, and say each part's state."""
        self.desk.start()
        self.publish_parts()

    def start_readings(self) -> None:
        """At start-up no model has a current reading: ``state/<model>`` says ``idle`` (reason ``start``)
        to a subscriber however late, until the model's first summary."""
        for topic, payload in self.recorder.summaries.idle_at_start(
            published_models(self.cfg.hume.backend, self.cfg.hume.models), self._wall()
        ).items():
            self.publisher.set_state(topic, encode(payload))

    def stop_parts(self) -> None:
        """At a clean stop nothing measures any more: every part says ``stopped``."""
        self.stopping = True
        self.publish_parts()

    def withdraw_notice(self) -> None:
        """At a clean stop, after the parts: the notice says no media may leave (if it said otherwise)."""
        self.desk.sync(False, self.sessions.session_id, self.publisher.connected)

    def privacy(self, action: str, source: str) -> None:
        """``pause`` / ``resume`` / ``toggle`` from ``source`` (mqtt, page, button)."""
        if self.desk.command(self._mono(), action, source):
            self.sync_privacy()

    def page_pause(self) -> Optional[PauseRefused]:
        """The on-screen Pause: None when paused, else why not (the page shows the visitor)."""
        refused = self.desk.page_pause(self._mono())
        if refused is None:
            self.sync_privacy()
        return refused

    def _notice_delivered(self, seq: int) -> None:
        self.desk.delivered(seq)
        self.sync_privacy()

    def sync_privacy(self) -> None:
        """The desk's notice and listeners; media queued before a withdrawal dropped; per-part status.

        Not while stopping: the stop says the parts and the notice last, in its own order (a session end
        at SIGTERM used to publish the parts ``online`` again after they had said ``offline``).
        """
        if self.stopping:
            return
        announce, visit = self._announce()
        allowed = self.desk.sync(announce, visit, self.publisher.connected)
        if allowed and self._allowed_after is None:
            # The first frame of the visit is read now, not at the camera's next slot (up to 0.5 s later).
            self._allowed_after = self.camera.frames_read if self.camera is not None else 0
            self._allowed_since = self._mono()
            if self.camera is not None:
                self.camera.hurry()
        elif not allowed:
            self._allowed_after = self._allowed_since = None
            self.held.clear()  # a debounce that failed, or a pause: none of it leaves
        if not allowed and self.gate.withdraw():
            # Whatever was captured before this moment stays here, however long Hume was unreachable: a
            # pause pressed while the link was in backoff once sent 4.8 s of audio and 3 frames (#31).
            self.audio_gate.reset()
            dropped = self.backend.withdraw()
            if dropped:
                _LOGGER.info("media may no longer leave: dropped %d queued items captured before", dropped)
        self.publish_parts()

    def publish_parts(self) -> None:
        """Retained ``status/camera``, ``status/microphone``, ``status/hume`` (only what changed is sent)."""
        for part, state in self.part_states().items():
            self.publisher.set_state(parts.topic(part), state.encode())

    def part_states(self) -> Dict[str, str]:
        """Each part's word (``agent.ops.parts``): a pause disables capture, a lost device is offline."""
        if self.stopping:
            return {part: parts.STOPPED for part in parts.PARTS}
        paused = self.desk.paused
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

    # -- loops ----------------------------------------------------------------------------------

    async def camera_loop(self, camera: FrameSource) -> None:
        async for frame in camera.frames():
            read = camera.frames_read  # this frame's number
            self.counters["frames"] += 1
            if not self.gate.captured("frame", paused=self.desk.paused):
                continue
            withdrawals = self.gate.withdrawals
            if self.presence is not None:
                present = await asyncio.to_thread(self.presence.present, frame)
                if self.desk.paused:  # paused while the check ran: its verdict about the visitor is dropped
                    self.gate.drop("paused", "frame")
                    continue
                self._apply(self.sessions.observe(self._mono(), presence=present))
                if self.sessions.debounce_due() is not None:
                    self._timers.get().set()
            faces = self.presence.last_faces if self.presence is not None else ()
            if withdrawals == self.gate.withdrawals and self._may_send("frame"):
                while self.held.frames:  # the debounce qualified the visit: its first frames go first
                    await self._send_frame(*self.held.frames.popleft(), withdrawals)
                if self._allowed_after is None or read <= self._allowed_after:
                    self.gate.drop("unannounced", "frame")  # captured before the visit's notice was out
                    continue
                await self._send_frame(frame, faces, withdrawals)
            elif self._holding() and self._allowed_after is not None and read > self._allowed_after:
                self.held.frames.append((frame, faces))

    async def _send_frame(self, frame: Frame, faces: Sequence[Box], withdrawals: int) -> None:
        encoded = await asyncio.to_thread(self.pipeline.process, frame, faces)
        if encoded is None:
            return
        if self.desk.paused:
            self.gate.drop("paused", "frame")  # paused while it was being encoded
            return
        if self.gate.withdrawals != withdrawals:
            self.gate.drop("withdrawn", "frame")  # the notice was withdrawn while it was being encoded
            return
        self.counters["frames_sent"] += 1
        self.gate.sent()
        self.backend.send_frame(encoded.jpeg, encoded.captured_at, self.sessions.session_id)

    async def microphone_loop(self, microphone: AudioSource) -> None:
        async for chunk in microphone.chunks():
            self.counters["audio_chunks"] += 1
            if not self.gate.captured("audio", paused=self.desk.paused):
                continue
            self._apply(self.sessions.observe(self._mono(), voice=voice_activity(chunk.pcm16)))
            if not self._may_send("audio"):
                self.audio_gate.reset()
                if self._holding():
                    self.held.audio.append(chunk)
                continue
            while self.held.audio:  # the debounce qualified the visit: its first audio goes first
                self._send_audio(self.held.audio.popleft())
            self._send_audio(chunk)

    def _send_audio(self, chunk: AudioChunk) -> None:
        since = self._allowed_since
        if since is None or chunk.captured_mono < since:
            self.gate.drop("unannounced", "audio")  # all or part captured before the notice was out
        if since is None:
            self.audio_gate.reset()
            return
        # Silence is not paid for, audio from before the notice never leaves (agent.visit.audio_gate).
        for piece in self.audio_gate.admit(chunk, since_mono=since):
            self.counters["audio_sent"] += 1
            self.gate.sent()
            self.backend.send_audio(piece.pcm16, piece.captured_at, self.sessions.session_id)

    async def results_loop(self) -> None:
        while True:
            obs: Observation = await self.backend.receive()
            if obs.model == "face" and obs.session_id == self.sessions.session_id:
                self._apply(self.sessions.observe(self._mono(), face=bool(obs.measurements)))
            self.recorder.add(obs)

    def _privacy_command(self, cmd: Command) -> Optional[str]:
        """``cmd/privacy``, carried out when it arrives: why it was refused, or None when done.

        Carried out here, not queued for :meth:`command_loop`, so the reply is the pause rule's decision:
        queued, "pause, resume, pause" sent together were all vetted before any was carried out, and the
        last passed the vet, was refused by the rule (counted) and had been answered as accepted (#31).
        A pause over ``commands.privacy_per_hour`` is refused and counted (the intake logs it), a resume
        of a visitor's pause refused; a pause while paused or a resume while not is a no-op, accepted.
        """
        if cmd.action == "resume":
            why = self.desk.pause.resume_refusal("mqtt")
            if why is not None:
                return why
        elif cmd.action == "pause":
            refused = self.desk.refuse_pause(self._mono(), "mqtt")
            if refused is not None:
                return refused.reason
        self.privacy(cmd.action, "mqtt")
        return None

    async def command_loop(self) -> None:
        async for cmd in self.publisher.commands():
            if cmd.name == "session":
                self._apply(self.sessions.command(self._mono(), cmd.action))
            elif cmd.name == "text" and self._may_send("text"):
                self.gate.sent()
                self.backend.send_text(cmd.text, self._wall(), self.sessions.session_id)

    async def tick_loop(self) -> None:
        """Timers, summary windows, the watchdog and STATUS=, all from the event loop itself."""
        last_status = last_watchdog = float("-inf")
        watchdog_every_s = self.notifier.watchdog_interval_s or TICK_S
        while True:
            now = self._mono()
            if self.desk.tick(now):
                self.sync_privacy()
            self._apply(self.sessions.tick(now))
            self.recorder.flush()
            if now - last_watchdog >= watchdog_every_s:
                last_watchdog = now
                self.notifier.watchdog()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                self.notifier.status(status_mod.summary_line(self.publisher.health_snapshot().to_json()))
            # A debounce ends between ticks: wake then, so the visit starts (and its first frame is read)
            # when it is due, not up to TICK_S later.
            timers = self._timers.get()
            timers.clear()
            due = self.sessions.debounce_due()
            await wait_event(timers, TICK_S if due is None else min(TICK_S, max(0.001, due - self._mono())))

    # -- reporting ------------------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        """The agent's part of the health topic and the status snapshot (the publisher adds MQTT's)."""
        counters = self.counters
        states = self.part_states()
        return ServiceHealth(
            device_id=self.cfg.effective_device_id,
            session=SessionHealth(
                active=self.sessions.active,
                id=self.sessions.session_id,
                ended=dict(self.recorder.tally.ended),
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
                audio_unannounced_ms=self.audio_gate.unannounced_ms,
            ),
            summaries=SummaryHealth(
                **self.recorder.summaries.stats(),
                published=dict(self.recorder.tally.published),
                last_at=self.recorder.tally.last_summary_iso,
            ),
            hume=self.backend.status(),
            last_error=logs.last_problem(),
            privacy=self.desk.health(
                self._mono(),
                self.gate.drops,
                paused=self.gate.media_dropped("paused", "withdrawn"),
                unannounced=self.gate.media_dropped("unannounced"),
            ),
            identity=self.identity,
        )

    # -- shutdown -------------------------------------------------------------------------------

    def end_session(self) -> None:
        """The agent is stopping: end the open session (reason ``shutdown``) so its aggregate is queued.

        The parts and the notice hold until :meth:`stop_parts` and :meth:`withdraw_notice`.
        """
        self.stopping = True
        self.recorder.shutdown(self._mono())
