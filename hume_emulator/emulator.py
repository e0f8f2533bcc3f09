"""A protocol-faithful local emulator of Hume's v0 streaming API (``GET /v0/stream/models``).

Hume sunset this API in June 2026, so this aiohttp application is now the only place its contract runs
end to end; it is judged by the official ``hume`` 0.13 SDK (tests/integration/test_v0_sdk_fidelity.py).

Behaviour, and the choices made where Hume's documentation is silent:

- Auth: header ``X-Hume-Api-Key`` or query ``?apikey=``; a missing or unknown key refuses the upgrade with
  HTTP 401 and the body the SDK reports ("Websocket initialized with invalid credentials.").
- Handshakes: at most ``handshake_rate_per_s`` upgrade attempts per second (Hume: 50 HTTP requests/s),
  beyond that HTTP 429; and the organisation's request limit (:mod:`hume_emulator.orglimit`, shared with
  the v1 endpoints on the same port): an accepted upgrade counts, over the limit HTTP 429 with
  ``Retry-After`` (v0 documents no in-session rate-limit error, so v0 always answers at the handshake).
- Strictly one JSON reply per JSON request, in order. Every reply echoes ``payload_id``; errors are
  top-level ``{"error", "code"}``, "nothing detected" warnings nest under the model key.
- Every error keeps the connection open (Hume's own examples keep sending after an error reply; close codes
  are not documented). Binary frames are answered E0101.
- Idle timeout: a connection that sends no message for ``idle_timeout_s`` (default 60; the facts say "a
  timeout of one minute", ambiguous between idle and absolute) is closed with 1000 "idle timeout".
  WebSocket pings do not count as messages.
- Media decoding, limits and error codes: :mod:`hume_emulator.media`; models, stream window, clock and
  face identity: :mod:`hume_emulator.models`. Predictions are deterministic per input and ``seed``.
- Faults (:class:`Faults`, settable at run time via ``POST /_emulator/faults`` or ``--fault``) script
  outages for the client's tests; ``GET /_emulator/stats`` reports counters. The control endpoints have no
  auth: bind the emulator to loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Deque, Dict, List, Mapping, Optional, Set, Tuple, Union

from aiohttp import WSMsgType, web

from agent.hume.v0.protocol import (
    API_KEY_HEADER,
    API_KEY_QUERY,
    AUTH_FAILED_BODY,
    CONNECTION_IDLE_S,
    PATH,
    Codes,
    ErrorMessage,
    ProtocolViolation,
    Reply,
    reply_to_json,
)
from agent.hume.v0.publish import PublishMessage
from hume_emulator import detectors
from hume_emulator.control import bind_warning, json_only_controls
from hume_emulator.faults import Faults
from hume_emulator.models import ERROR_TEXT, Session, warning_reply
from hume_emulator.orglimit import (
    ANSWERS,
    DEFAULT_REQUESTS_PER_MIN,
    DEFAULT_WINDOW_S,
    OrgLimit,
    OrgLimitSettings,
    parse_org_mapping,
)
from hume_emulator.v1.emulator import EmulatorV1Settings
from hume_emulator.v1.emulator import add_routes as add_v1_routes
from hume_emulator.v1.emulator import make_app as make_v1_app

__all__ = [
    "DEFAULT_PORT",
    "Emulator",
    "EmulatorSettings",
    "Faults",
    "add_arguments",
    "make_app",
    "run_from_args",
    "settings_from_args",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 8765
API_KEYS_ENV = "HUME_EMULATOR_API_KEYS"
"""Accepted keys from the environment (comma-separated), so none need be on the command line."""
MAX_RECORDED_REQUESTS = 10000
"""``Emulator.requests`` keeps at most this many (oldest dropped), so a long run has bounded memory."""
IDLE_CLOSE_CODE = 1000
SHUTDOWN_CLOSE_CODE = 1001


@dataclasses.dataclass(frozen=True)
class EmulatorSettings:
    """What a run of the emulator is configured with (fixed for its lifetime)."""

    api_keys: Tuple[str, ...] = ("test-key",)
    latency_ms: float = 0.0
    """Added before every reply, to look like a service across the internet."""
    seed: int = 0
    """Same seed and input, same predictions; another seed behaves like another, equally stable model."""
    idle_timeout_s: float = CONNECTION_IDLE_S
    handshake_rate_per_s: float = 50.0
    """Upgrade attempts allowed per second (0 = unlimited)."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest request frame accepted (a 3000 x 3000 PNG in base64 fits); larger closes with 1009."""
    org_limit: OrgLimitSettings = dataclasses.field(default_factory=OrgLimitSettings)
    """The organisation's request limit, counted on session opens (v0 and v1 together)."""

    def __post_init__(self) -> None:
        if not self.api_keys or not all(isinstance(k, str) and k for k in self.api_keys):
            raise ValueError("api_keys must hold at least one non-empty key")
        for name in ("latency_ms", "handshake_rate_per_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")


@dataclasses.dataclass
class _Counters:
    connections: int = 0
    refused: int = 0
    requests: int = 0
    replies: int = 0


class _Server:
    """The state of one emulator application: settings, faults, counters, open sockets."""

    def __init__(self, settings: EmulatorSettings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        self.counters = _Counters()
        self.requests: List[Tuple[int, PublishMessage]] = []
        self.sockets: Set[web.WebSocketResponse] = set()
        self._handshakes: Deque[float] = collections.deque()
        self.org_limit = OrgLimit(settings.org_limit)

    def _refusal(self, request: web.Request) -> Optional[web.Response]:
        if self.faults.refusing():
            return web.Response(
                status=self.faults.refuse_status, text="Connections refused (injected fault)."
            )
        now = time.monotonic()
        rate = self.settings.handshake_rate_per_s
        while self._handshakes and now - self._handshakes[0] >= 1.0:
            self._handshakes.popleft()
        if rate and len(self._handshakes) >= rate:
            return web.Response(status=429, text="Too many requests: at most 50 handshakes per second.")
        self._handshakes.append(now)
        key = request.headers.get(API_KEY_HEADER) or request.query.get(API_KEY_QUERY)
        if key is None or key not in self.settings.api_keys:
            return web.Response(status=401, text=AUTH_FAILED_BODY)
        wait_s = self.org_limit.admit(key)
        if wait_s is not None:
            headers = self.org_limit.retry_after_header(wait_s)
            return web.Response(status=429, text=self.org_limit.refusal_text(key), headers=headers)
        return None

    async def models(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            self.counters.refused += 1
            return refusal
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_message_bytes)
        await ws.prepare(request)
        self.counters.connections += 1
        connection_no = self.counters.connections
        self.sockets.add(ws)
        _LOGGER.info("connection %d opened from %s", connection_no, request.remote)
        try:
            replies = await self._serve(ws, Session(self.settings.seed, connection_no), connection_no)
            _LOGGER.info(
                "connection %d closed (code %s) after %d replies", connection_no, ws.close_code, replies
            )
        finally:
            self.sockets.discard(ws)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, session: Session, connection_no: int) -> int:
        """Answer requests until the socket closes; the number of replies sent."""
        loop = asyncio.get_running_loop()
        replies = 0
        while not ws.closed:
            close_after = self.faults.close_after
            if close_after is not None and replies >= close_after:
                await ws.close(code=self.faults.close_code, message=b"injected fault: close-after")
                return replies
            try:
                msg = await asyncio.wait_for(ws.receive(), self.settings.idle_timeout_s)
            except asyncio.TimeoutError:
                _LOGGER.debug("connection %d idle for %.0f s", connection_no, self.settings.idle_timeout_s)
                await ws.close(code=IDLE_CLOSE_CODE, message=b"idle timeout")
                return replies
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return replies
            reply = await self._answer(msg.data, session, connection_no, loop)
            if reply is None:
                continue
            delay_ms = self.settings.latency_ms + self.faults.delay_ms
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000.0)
            try:
                await ws.send_str(reply_to_json(reply))
            except ConnectionResetError:  # the client left while we "thought"
                return replies
            self.counters.replies += 1
            replies += 1
        return replies

    async def _answer(
        self, text: Union[str, bytes], session: Session, connection_no: int, loop: asyncio.AbstractEventLoop
    ) -> Optional[Reply]:
        """The reply to one frame (None: the silent fault swallows it)."""
        self.counters.requests += 1
        if self.faults.silent:
            return None
        if not isinstance(text, str):
            return ErrorMessage("Binary frames are not accepted: send JSON text.", Codes.INVALID_STRUCTURE)
        try:
            msg = PublishMessage.from_json(text)
        except ProtocolViolation as exc:
            payload_id, wants_job = _echo_of(text)
            return ErrorMessage(exc.message, exc.code, payload_id, session.job_id if wants_job else None)
        self.requests.append((connection_no, msg))
        del self.requests[:-MAX_RECORDED_REQUESTS]
        error_code = self.faults.error_code
        if error_code is not None:
            job = session.job_id if msg.job_details else None
            return ErrorMessage(
                ERROR_TEXT.get(error_code, f"Error {error_code}."), error_code, msg.payload_id, job
            )
        reply = await loop.run_in_executor(None, session.handle, msg)
        warning_code = self.faults.warning_code
        return reply if warning_code is None else warning_reply(warning_code, msg, reply)

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of fault fields")
            self.faults.update(changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        _LOGGER.info("faults now %s", self.faults)
        return web.json_response(self.faults.to_obj())

    async def stats(self, request: web.Request) -> web.Response:
        body = dict(
            dataclasses.asdict(self.counters),
            open=len(self.sockets),
            faults=self.faults.to_obj(),
            org_limit=self.org_limit.stats(),
        )
        return web.json_response(body)

    async def close_all(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close(code=SHUTDOWN_CLOSE_CODE, message=b"emulator shutting down")


def _echo_of(text: str) -> Tuple[Optional[str], bool]:
    """``payload_id`` and the ``job_details`` flag of a request that failed validation, as far as they
    can still be read: every reply echoes them."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None, False
    if not isinstance(obj, dict):
        return None, False
    payload_id = obj.get("payload_id")
    return (payload_id if isinstance(payload_id, str) else None), obj.get("job_details") is True


SERVER_KEY = web.AppKey("hume_emulator", _Server)


def make_app(settings: EmulatorSettings, faults: Faults) -> web.Application:
    """The emulator as an aiohttp application: the streaming endpoint plus the control endpoints."""
    server = _Server(settings, faults)
    app = web.Application(middlewares=[json_only_controls])
    app[SERVER_KEY] = server
    app.router.add_get(PATH, server.models)
    app.router.add_post("/_emulator/faults", server.set_faults)
    app.router.add_get("/_emulator/stats", server.stats)
    app.on_shutdown.append(server.close_all)
    return app


def _v1_settings(settings: EmulatorSettings) -> EmulatorV1Settings:
    return EmulatorV1Settings(
        api_keys=settings.api_keys,
        seed=settings.seed,
        idle_timeout_s=settings.idle_timeout_s,
        org_limit=settings.org_limit,
    )


class Emulator:
    """A started emulator on a loopback port: ``async with Emulator(settings) as emu: ... emu.url``."""

    def __init__(
        self,
        settings: Optional[EmulatorSettings] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Optional[Faults] = None,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.faults = faults or Faults()
        self.host = host
        self.port = port
        self.app = make_app(self.settings, self.faults)
        self._runner: Optional[web.AppRunner] = None

    def serve_v1_too(self) -> None:
        """Also serve the v1 realtime emulator (same keys, seed, idle timeout and organisation budget)."""
        add_v1_routes(self.app, _v1_settings(self.settings), org_limit=self.org_limit)

    @property
    def org_limit(self) -> OrgLimit:
        """The organisation request limit (its counters and judged handshakes)."""
        return self.app[SERVER_KEY].org_limit

    @property
    def url(self) -> str:
        """The streaming endpoint, e.g. ``ws://127.0.0.1:8765/v0/stream/models``."""
        return f"ws://{self.netloc}{PATH}"

    @property
    def base_url(self) -> str:
        """``http://host:port``: what the official SDK takes as ``base_url``."""
        return f"http://{self.netloc}"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def requests(self) -> List[Tuple[int, PublishMessage]]:
        """``(connection_no, message)`` of every valid request received (the latest 10,000)."""
        return self.app[SERVER_KEY].requests

    @property
    def connections(self) -> int:
        """Connections accepted so far (the n-th has ``connection_no`` n)."""
        return self.app[SERVER_KEY].counters.connections

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free one, read it back from ``.port``); RuntimeError without OpenCV."""
        detectors.opencv()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ------------------------------------------------------------------------------------------------------
# Command line (wired by the lead as ``hume-edge emulator``)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge emulator`` flags."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (0 = any free; default: %(default)s)"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted key, repeatable (default: test-key); visible in ps: prefer --api-key-file or "
        f"${API_KEYS_ENV}",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help=f"accepted keys, one a line (also ${API_KEYS_ENV}: comma-separated); added to --api-key",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the emulated models (default: 0)")
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=CONNECTION_IDLE_S,
        help="close a silent connection after (default: 60)",
    )
    parser.add_argument(
        "--api",
        choices=("v0", "v1", "both"),
        default="both",
        help="which API versions to serve on the port: v0 /v0/stream/models, v1 "
        "/v1/expression/{audio,video}/realtime, or both (default: both, so an agent of either "
        "hume.backend finds its endpoint; v0 or v1 narrows it)",
    )
    parser.add_argument(
        "--org-requests-per-min",
        type=int,
        default=DEFAULT_REQUESTS_PER_MIN,
        metavar="N",
        help="session opens each organisation may make per window, all its keys together; beyond it "
        "HTTP 429 with Retry-After (Hume: 600 a minute; 0 = unlimited; default: %(default)s)",
    )
    parser.add_argument(
        "--org-window-s",
        type=float,
        default=DEFAULT_WINDOW_S,
        metavar="S",
        help="the limit's sliding window (default: %(default)s; tests scale it down)",
    )
    parser.add_argument(
        "--org",
        action="append",
        default=[],
        metavar="KEY=ORG",
        help="put API key KEY in organisation ORG, repeatable (unmapped keys share one organisation)",
    )
    parser.add_argument(
        "--org-limit-answer",
        choices=ANSWERS,
        default="handshake",
        help="how v1 refuses over the limit: HTTP 429 at the handshake, or accept and send the realtime "
        "rate_limited error, then close 1013 (Hume documents neither; v0 always answers 429) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a fault, repeatable: close-after=N, close-code=1011, delay-ms=MS, error=E0300, "
        "warning=W0103, refuse-for-s=S, refuse-status=503, silent",
    )


def api_keys_from(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The accepted keys: ``--api-key`` flags, the ``--api-key-file`` lines and ``$HUME_EMULATOR_API_KEYS``
    (comma-separated), in that order; ``test-key`` when none. A key on the command line shows in ``ps`` to
    every local user (#31), so the file and the variable exist; the flag stays for tests and demos."""
    env = os.environ if environ is None else environ
    keys = list(args.api_keys or ())
    path = getattr(args, "api_key_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                keys += [line.strip() for line in fh if line.strip() and not line.startswith("#")]
        except OSError as exc:
            raise ValueError(f"--api-key-file {path}: {exc.strerror or exc}") from None
    keys += [k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
    return tuple(dict.fromkeys(keys)) or ("test-key",)


def settings_from_args(
    args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None
) -> Tuple[EmulatorSettings, Faults]:
    """Settings and faults from parsed flags; ValueError naming the bad flag otherwise."""
    settings = EmulatorSettings(
        api_keys=api_keys_from(args, environ),
        latency_ms=args.latency_ms,
        seed=args.seed,
        idle_timeout_s=args.idle_timeout_s,
        org_limit=OrgLimitSettings(
            requests=args.org_requests_per_min,
            window_s=args.org_window_s,
            orgs=parse_org_mapping(args.org),
            answer=args.org_limit_answer,
        ),
    )
    changes: Dict[str, Any] = {}
    for spec in args.fault:
        name, _, value = spec.partition("=")
        changes[name.strip()] = value.strip() if value else None
    faults = Faults()
    faults.update(changes)
    return settings, faults


def run_from_args(args: argparse.Namespace) -> int:
    """Run the emulator in the foreground until SIGINT/SIGTERM; the exit status."""
    try:
        settings, faults = settings_from_args(args)
    except ValueError as exc:
        print(f"hume-edge emulator: {exc}", file=sys.stderr)
        return 2
    warning = bind_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    emulator = Emulator(settings, args.host, args.port, faults)
    if args.api == "v1":
        emulator.app = make_v1_app(_v1_settings(settings))
    elif args.api == "both":
        emulator.serve_v1_too()
    try:
        asyncio.run(_serve_forever(emulator, args.api))
    except OSError as exc:
        print(
            f"hume-edge emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    except RuntimeError as exc:  # OpenCV missing
        print(f"hume-edge emulator: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_forever(emulator: Emulator, api: str = "both") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        urls = []
        if api in ("v0", "both"):
            urls.append(emulator.url)
        if api in ("v1", "both"):
            urls.append(f"ws://{emulator.netloc}/v1/expression/{{audio,video}}/realtime")
        print(f"emulator listening on {' and '.join(urls)} (seed {emulator.settings.seed})", flush=True)
        await stop.wait()
