"""A local stand-in for Hume's v1 realtime API: ``/v1/expression/audio/realtime`` and ``.../video/realtime``.

The rules live in :mod:`hume_emulator.v1.emulated`; this module authenticates the handshake, moves
messages over aiohttp WebSockets, enforces the idle timeout, and lets tests induce the endings a real
deployment produces (server shutdown, measurement failures, refused handshakes). ``add_routes`` puts
both endpoints on an existing app, so the v0 and v1 emulators can share one process and port.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from typing import Any, Deque, Dict, Optional, Set, Tuple

from aiohttp import WSMsgType, web

from agent.aio import spawn
from agent.hume.v1 import protocol as p
from hume_emulator.control import json_only_controls
from hume_emulator.orglimit import OrgLimit, OrgLimitSettings
from hume_emulator.v1 import emulated
from hume_emulator.v1.emulated import FaultsV1

LOG_KEPT = 100_000
"""Client messages and ended sessions kept for assertions; a long-running emulator forgets the oldest."""


@dataclasses.dataclass(frozen=True)
class EmulatorV1Settings:
    """How the emulated service behaves; the defaults are what the contract documents or implies."""

    api_keys: Tuple[str, ...] = ("test-key",)
    """Accepted as ``X-Hume-Api-Key`` or as an ``Authorization: Bearer`` token."""
    seed: int = 0
    idle_timeout_s: float = 60.0
    """Hume documents an idle timeout without its length; a session hearing nothing this long ends."""
    audio_burst_ms: float = 2000.0
    """Audio allowance ahead of real time before ``rate_limited`` (Hume does not publish its burst)."""
    video_burst_frames: float = 2.0
    org_limit: OrgLimitSettings = dataclasses.field(default_factory=OrgLimitSettings)
    """The organisation's request limit (Hume: 600 per minute, all keys of an organisation together)."""


@dataclasses.dataclass(frozen=True)
class ClientEvent:
    """One message a client sent, for assertions: ``kind`` is a message type or ``"frame"``."""

    connection: int
    endpoint: str
    kind: str
    nbytes: int


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    """A session that ended in an orderly way, with its ``session.closed`` totals."""

    connection: int
    endpoint: str
    session_id: str
    reason: str
    received: Dict[str, int]
    produced: Dict[str, int]


DRIFT_FIELD = "emulated_drift"
"""The field :attr:`FaultsV1.drift_field` adds to every server message (no client knows it)."""
DRIFT_TYPE = "emulated.drift"
"""The message type :attr:`FaultsV1.drift_message` sends after ``session.created``."""
CLOSE_TRY_AGAIN_LATER = 1013
"""How a v1 session refused by the organisation limit ends (``--org-limit-answer error``): the SDK's
reconnect policy retries after 1013, and the ``rate_limited`` error before it says why."""


class _Connection:
    def __init__(
        self, number: int, ws: web.WebSocketResponse, session: emulated._Session, faults: FaultsV1
    ) -> None:
        self.number = number
        self.ws = ws
        self.session = session
        self.faults = faults
        self._lock = asyncio.Lock()

    async def send_pending(self) -> None:
        """Send what the session produced, in order (with the protocol drift the faults ask for)."""
        async with self._lock:
            while self.session.outbox:
                msg = self.session.outbox.pop(0)
                if self.faults.drift_field:
                    msg = {**msg, DRIFT_FIELD: self.faults.drift_field}
                if not self.ws.closed:
                    await self.ws.send_str(json.dumps(msg))
                if self.faults.drift_message and msg.get("type") == "session.created" and not self.ws.closed:
                    await self.ws.send_str(json.dumps({"type": DRIFT_TYPE, "note": "not in the contract"}))

    async def flush(self) -> None:
        """Send what the session produced; close the socket once the session has ended."""
        await self.send_pending()
        if self.session.close_code is not None and not self.ws.closed:
            await self.ws.close(code=self.faults.drift_close_code or self.session.close_code)


class EmulatorState:
    """Everything the endpoints share: settings, faults, the live connections and the logs."""

    def __init__(
        self,
        settings: EmulatorV1Settings,
        faults: Optional[FaultsV1] = None,
        org_limit: Optional[OrgLimit] = None,
    ) -> None:
        """``org_limit``: shared with a v0 emulator on the same port (one organisation, one budget)."""
        self.settings = settings
        self.faults = faults or FaultsV1()
        self.org_limit = org_limit or OrgLimit(settings.org_limit)
        self.requests: Deque[ClientEvent] = collections.deque(maxlen=LOG_KEPT)
        self.sessions: Deque[SessionRecord] = collections.deque(maxlen=LOG_KEPT)
        self.connections = 0
        self.live: Dict[int, _Connection] = {}
        self._closing: Set[asyncio.Future[bool]] = set()

    async def shutdown_sessions(self, close_code: int = p.CLOSE_RESTART) -> int:
        """End every live session with ``server_shutdown``, as a deployment does; return how many."""
        live = list(self.live.values())
        for conn in live:
            conn.session.end(p.Reasons.SERVER_SHUTDOWN, close_code)
            await conn.send_pending()
            # Closing waits for the client's close frame; the caller (a control request) must not.
            task = spawn(conn.ws.close(code=close_code), "hume-emulator.v1.close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(live)

    def stats(self) -> Dict[str, Any]:
        return {
            "connections": self.connections,
            "live": len(self.live),
            "sessions": [dataclasses.asdict(s) for s in self.sessions],
            "org_limit": self.org_limit.stats(),
        }


def _refusal(state: EmulatorState, request: web.Request) -> Tuple[Optional[web.Response], Optional[str]]:
    """(a refusal, or None to upgrade; the organisation limit's reason when the session must instead be
    ended with the realtime ``rate_limited`` error)."""
    key = request.headers.get(p.API_KEY_HEADER)
    auth = request.headers.get("Authorization")
    bearer = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
    if (key is None) == (auth is None) or (auth is not None and bearer is None):
        message = f"send exactly one credential: {p.API_KEY_HEADER} or Authorization: Bearer"
        return web.json_response({"message": message}, status=401), None
    credential = key if key is not None else bearer
    if credential not in state.settings.api_keys:
        return web.json_response({"message": "invalid API key", "request_id": "emulated"}, status=401), None
    if state.faults.refuse_status:
        return web.json_response({"message": "induced refusal"}, status=state.faults.refuse_status), None
    assert credential is not None
    wait_s = state.org_limit.admit(credential)
    if wait_s is None:
        return None, None
    text = state.org_limit.refusal_text(credential)
    if state.org_limit.settings.answer == "error":
        return None, text
    headers = state.org_limit.retry_after_header(wait_s)
    return web.json_response({"message": text, "request_id": "emulated"}, status=429, headers=headers), None


async def _serve(state: EmulatorState, request: web.Request, endpoint: str) -> web.StreamResponse:
    refusal, limited = _refusal(state, request)
    if refusal is not None:
        return refusal
    limit = p.AUDIO_MESSAGE_MAX_BYTES if endpoint == "audio" else p.VIDEO_MESSAGE_MAX_BYTES
    ws = web.WebSocketResponse(max_msg_size=4 * limit)
    await ws.prepare(request)
    if limited is not None:
        # No session is created (no run, nothing billed): the error says why, 1013 says "try again later".
        error = {"type": "error", "code": p.Codes.RATE_LIMITED, "message": limited, "retryable": True}
        await ws.send_str(json.dumps(error))
        await ws.close(code=CLOSE_TRY_AGAIN_LATER)
        return ws
    state.connections += 1
    number = state.connections
    s, now = state.settings, time.monotonic()
    session: emulated._Session = (
        emulated.AudioSession(s.seed, state.faults, now, s.audio_burst_ms)
        if endpoint == "audio"
        else emulated.VideoSession(s.seed, state.faults, now, s.video_burst_frames)
    )
    conn = state.live[number] = _Connection(number, ws, session, state.faults)
    try:
        await conn.flush()
        while session.close_code is None and not ws.closed:
            try:
                msg = await asyncio.wait_for(ws.receive(), s.idle_timeout_s)
            except asyncio.TimeoutError:
                session.end(p.Reasons.IDLE_TIMEOUT, p.CLOSE_NORMAL)
                await conn.flush()
                break
            if msg.type == WSMsgType.TEXT:
                text: str = msg.data
                kind = _type_of(text)
                state.requests.append(ClientEvent(number, endpoint, kind, len(text.encode())))
                session.on_text(text)
            elif msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
                state.requests.append(ClientEvent(number, endpoint, "frame", len(data)))
                session.on_binary(data, time.monotonic())
            else:
                break
            await conn.flush()
    finally:
        del state.live[number]
        if session.reason is not None:
            received, produced = session.totals()
            state.sessions.append(
                SessionRecord(number, endpoint, session.session_id, session.reason, received, produced)
            )
        if not ws.closed:
            await ws.close()
    return ws


def _type_of(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return "(not json)"
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else "(no type)"


STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("hume_v1_emulator", EmulatorState)


def add_routes(
    app: web.Application,
    settings: EmulatorV1Settings,
    faults: Optional[FaultsV1] = None,
    org_limit: Optional[OrgLimit] = None,
) -> EmulatorState:
    """Serve both v1 realtime endpoints (and ``/_emulator/v1/...`` controls) on ``app``."""
    state = EmulatorState(settings, faults, org_limit)
    app[STATE_KEY] = state

    async def audio(request: web.Request) -> web.StreamResponse:
        return await _serve(state, request, "audio")

    async def video(request: web.Request) -> web.StreamResponse:
        return await _serve(state, request, "video")

    async def shutdown(request: web.Request) -> web.Response:
        code = int(request.query.get("code", p.CLOSE_RESTART))
        return web.json_response({"ended": await state.shutdown_sessions(code)})

    async def faults_post(request: web.Request) -> web.Response:
        body = await request.json()
        known = {f.name for f in dataclasses.fields(FaultsV1)}
        unknown = set(body) - known if isinstance(body, dict) else {"(not an object)"}
        if unknown:
            return web.json_response(
                {"message": f"unknown faults {sorted(unknown)}; known: {sorted(known)}"}, status=400
            )
        for key, value in body.items():
            setattr(state.faults, key, int(value))
        return web.json_response(dataclasses.asdict(state.faults))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    app.router.add_get(p.AUDIO_PATH, audio)
    app.router.add_get(p.VIDEO_PATH, video)
    app.router.add_post("/_emulator/v1/shutdown", shutdown)
    app.router.add_post("/_emulator/v1/faults", faults_post)
    app.router.add_get("/_emulator/v1/stats", stats)
    return state


def make_app(settings: EmulatorV1Settings, faults: Optional[FaultsV1] = None) -> web.Application:
    """An aiohttp application serving only the v1 emulator."""
    app = web.Application(middlewares=[json_only_controls])
    add_routes(app, settings, faults)
    return app


class EmulatorV1:
    """The v1 emulator on a loopback port, as an async context manager (tests, demos)."""

    def __init__(
        self, settings: Optional[EmulatorV1Settings] = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.settings = settings or EmulatorV1Settings()
        self.host = host
        self.port = port
        self.app = make_app(self.settings)
        self.state = self.app[STATE_KEY]
        self._runner: Optional[web.AppRunner] = None

    async def __aenter__(self) -> EmulatorV1:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://host:port``, as the v0 emulator's: the SDK's ``base``; ``v1_url`` takes it too."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port``: the SDK environment's ``production`` (WebSocket base)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def url_audio(self) -> str:
        return self.ws_url + p.AUDIO_PATH

    @property
    def url_video(self) -> str:
        return self.ws_url + p.VIDEO_PATH

    @property
    def faults(self) -> FaultsV1:
        return self.state.faults

    @property
    def requests(self) -> Deque[ClientEvent]:
        return self.state.requests

    @property
    def sessions(self) -> Deque[SessionRecord]:
        return self.state.sessions

    @property
    def connections(self) -> int:
        return self.state.connections

    async def shutdown_sessions(self, close_code: int = p.CLOSE_RESTART) -> int:
        """Induce a deployment: every live session ends with ``server_shutdown``."""
        return await self.state.shutdown_sessions(close_code)
