"""Rules across fields and what ``run`` refuses: one place, so ``check-config`` is a true guide to ``run``.

``cross_checks`` are the rules no single field can state (a maximum below its minimum, a model the chosen
backend lacks, TLS half set up, the EU AI Act's prohibited contexts); :func:`run_problems` is what makes
``hume-edge run`` refuse a valid config (no key, a key in clear, test media billed as a visitor). The URL
helpers mask a secret wherever a URL is shown.
"""

from __future__ import annotations

import os
import re
import stat
from typing import List, Optional
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from agent.config.field import MASK
from agent.config.schema import PROHIBITED_CONTEXTS, Config, MetricsConfig, PrivacyConfig, split_listen
from agent.errors import ConfigError
from agent.untrusted import clip


def cross_checks(cfg: Config, problems: List[str]) -> None:
    if cfg.hume.v0.backoff_max_s < cfg.hume.v0.backoff_initial_s:
        problems.append(
            f"hume.v0.backoff_max_s = {cfg.hume.v0.backoff_max_s:g}: must be >= hume.v0.backoff_initial_s "
            f"({cfg.hume.v0.backoff_initial_s:g})"
        )
    if cfg.hume.backend == "v1" and "language" in cfg.hume.models:
        problems.append("hume.models: 'language' needs hume.backend = 'v0' (v1 has no language model)")
    if cfg.mqtt.reconnect_max_s < cfg.mqtt.reconnect_min_s:
        problems.append(
            f"mqtt.reconnect_max_s = {cfg.mqtt.reconnect_max_s:g}: must be >= mqtt.reconnect_min_s "
            f"({cfg.mqtt.reconnect_min_s:g})"
        )
    if bool(cfg.mqtt.tls_cert) != bool(cfg.mqtt.tls_key):
        problems.append("mqtt.tls_cert / mqtt.tls_key: give both or neither")
    if (cfg.mqtt.tls_ca or cfg.mqtt.tls_cert) and not cfg.mqtt.tls:
        problems.append("mqtt.tls_ca / mqtt.tls_cert are set but mqtt.tls = false")
    if cfg.camera.source == "opencv" and not cfg.camera.device:
        problems.append("camera.device: required when camera.source = 'opencv'")
    if cfg.microphone.source == "wav" and not cfg.microphone.wav_path:
        problems.append("microphone.wav_path: required when microphone.source = 'wav'")
    if len(set(cfg.hume.models)) != len(cfg.hume.models):
        problems.append(f"hume.models = {list(cfg.hume.models)!r}: lists a model twice")
    _privacy_checks(cfg.privacy, problems)
    _metrics_checks(cfg.metrics, problems)
    _topic_checks(cfg, problems)


def topic_problem(value: str, *, levels: bool) -> Optional[str]:
    """Why ``value`` cannot be (part of) an MQTT topic name, or None. ``levels``: it may hold ``/``.

    A device id of ``kiosk/+`` or ``lobby#`` made every topic of the kiosk a wildcard (the broker refuses
    to publish on it, and run crash-looped); ``/`` in a device id shifts every topic a level and escapes a
    per-device ACL; a control character or U+2028 in it reaches every log line and message (#31).
    """
    for char in value:
        if char in "+#":
            return f"contains the MQTT wildcard {char!r}"
        if not char.isprintable() or char in "\u2028\u2029":
            return f"contains the control or line-separator character U+{ord(char):04X}"
    if not levels and "/" in value:
        return "contains '/', the topic level separator"
    if levels and (value.startswith("/") or value.endswith("/") or "//" in value):
        return "has an empty topic level (a leading, trailing or doubled '/')"
    if value.startswith("$"):
        return "starts with '$', which brokers reserve for their own topics ($SYS)"
    return None


_LEVELS_ALLOWED = "topic levels of printable text without '+' or '#', separated by single '/'"


def _topic_checks(cfg: Config, problems: List[str]) -> None:
    checks = (
        ("device_id", cfg.device_id, False, "one topic level: printable text without '/', '+' or '#'"),
        ("mqtt.topic_prefix", cfg.mqtt.topic_prefix, True, _LEVELS_ALLOWED),
        ("mqtt.discovery_prefix", cfg.mqtt.discovery_prefix, True, _LEVELS_ALLOWED),
    )
    for key, value, levels, allowed in checks:
        if not value and key == "device_id":
            continue  # empty: the host name, which can hold none of these
        why = "is empty" if not value else topic_problem(value, levels=levels)
        if why is not None:
            problems.append(f"{key} = {clip(value, 80)!r}: {why}; allowed: {allowed}")


def _metrics_checks(cfg: MetricsConfig, problems: List[str]) -> None:
    if cfg.listen:
        try:
            host, _ = split_listen(cfg.listen)
        except ValueError as exc:
            problems.append(f"metrics.listen = {exc}")
            return
        if not cfg.allow_remote and not is_loopback(host):
            problems.append(
                f"metrics.listen = {cfg.listen!r}: not a loopback address; anyone on that network could "
                "read the kiosk's figures: use 127.0.0.1, or set metrics.allow_remote = true"
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): the only place the page may listen."""
    if host == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _privacy_checks(cfg: PrivacyConfig, problems: List[str]) -> None:
    if cfg.deployment_context in PROHIBITED_CONTEXTS and not cfg.medical_or_safety_reason.strip():
        problems.append(
            f"privacy.deployment_context = {cfg.deployment_context!r}: emotion recognition in workplaces "
            "and education institutions is prohibited by the EU AI Act, Art. 5(1)(f) (since 2 February "
            "2025), except for medical or safety reasons; if that exception applies, state the purpose in "
            "privacy.medical_or_safety_reason (see docs/privacy.md)"
        )
    if not is_loopback(cfg.page_host):
        problems.append(
            f"privacy.page_host = {cfg.page_host!r}: must be a loopback address (127.0.0.1, ::1 or "
            "localhost); the page is for the kiosk's own browser only"
        )
    if not cfg.notice_text.strip():
        problems.append("privacy.notice_text: must not be empty (visitors are told what the kiosk does)")
    pins = (cfg.gpio_button_pin, cfg.gpio_led_pin)
    if pins[0] >= 0 and pins[0] == pins[1]:
        problems.append(f"privacy.gpio_led_pin = {pins[1]}: the same pin as privacy.gpio_button_pin")


def url_host(url: str) -> str:
    """The host part of ``url`` ("" when there is none)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


URL_SECRET_PARAMS = frozenset({"apikey", "api_key", "key", "token", "access_token", "password", "secret"})
"""Parameter names shown by name when found (Hume's v0 accepted ``?apikey=``, so a copied URL may hold one);
any other parameter is named only by where it is, since a bare ``?s3cr3t`` is its own value."""


def url_secrets(url: str) -> List[str]:
    """Every place ``url`` could carry a secret, found by parsing it (empty: none).

    A Hume URL needs a scheme, a host, a port and a path, nothing else, so each of these counts, whatever
    its name: user info (``user:SECRET@host``), every query and fragment parameter (``&`` and ``;``
    separated, names percent-decoded: ``?api%6Bey=``), and every ``;`` parameter of a path segment. A name
    blocklist let ``?api%6Bey=``, ``user:SECRET@host``, ``;apikey=`` and ``#apikey=`` through (#31).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises ValueError for a malformed one
    except ValueError:
        return ["an unparseable URL (it is not printed)"]
    found: List[str] = []
    if "@" in parts.netloc:
        found.append("user info (user:password@host)")
    for segment in parts.path.split("/"):
        for param in segment.split(";")[1:]:
            found.append(f"a path parameter ({_param_name(param)})")
    for where, text in (("query", parts.query), ("fragment", parts.fragment)):
        for param in re.split(r"[&;]", text):
            if param:
                found.append(f"a {where} parameter ({_param_name(param)})")
    return found


def _param_name(param: str) -> str:
    name = unquote_plus(param.split("=", 1)[0]).strip().lower()
    return repr(name) if name in URL_SECRET_PARAMS else "unnamed here"


def redact_url(url: str) -> str:
    """``url`` without whatever could carry a secret (:func:`url_secrets`), for every place it is shown."""
    if not url_secrets(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    path = re.sub(r";[^/]*", ";" + MASK, parts.path)
    return urlunsplit(
        (parts.scheme, netloc, path, MASK if parts.query else "", MASK if parts.fragment else "")
    )


TEST_CAMERA_SOURCES = ("synthetic",)


def is_camera_device(device: str) -> bool:
    """Whether an OpenCV ``camera.device`` names a camera (an index, or a device node) rather than a file.

    A node under ``/dev/`` (``/dev/video0``, ``/dev/v4l/by-id/...``) is a camera, also while it is unplugged
    (absent); a regular file there (``/dev/shm/clip.mp4``) is a file. Refusing ``/dev/video0`` as "a video
    file" pushed operators to ``hume.allow_test_sources = true``, which switches the test-media guard off.
    """
    text = device.strip()
    if text.isdigit():
        return True
    path = os.path.normpath(text)
    if not path.startswith("/dev/"):
        return False
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:  # absent (unplugged) or unreadable: a device path all the same
        return True


TEST_MICROPHONE_SOURCES = ("speech", "wav")


def run_problems(cfg: Config) -> List[str]:
    """Why ``hume-edge run`` would refuse ``cfg`` (empty: it would start). check-config asks the same.

    One function for both, so the unit's ``ExecStartPre=hume-edge check-config`` is a true guide: a
    missing key; a plaintext ``ws://`` / ``http://`` Hume URL to a host off this machine (the key would
    travel in clear); test media (synthetic face, file, synthetic speech) streamed to a Hume endpoint off
    this machine, which bills a fake, always-present visitor around the clock (about $0.29 per minute by
    our benchmark) unless ``hume.allow_test_sources`` says so.
    """
    problems: List[str] = []
    hume = cfg.hume
    if not hume.api_key:
        problems.append(
            "hume.api_key: no Hume API key: set hume.api_key in the config, the HUME_API_KEY environment "
            "variable, or a systemd credential named hume_api_key"
        )
    mqtt = cfg.mqtt
    if not is_loopback(mqtt.host) and not mqtt.tls and not mqtt.allow_plaintext:
        problems.append(
            f"mqtt.host = {mqtt.host!r} is not on this machine and mqtt.tls = false: summaries, commands "
            "and the broker password would travel in clear; set mqtt.tls = true (docs/security.md), "
            "or mqtt.allow_plaintext = true for a broker on a network you trust"
        )
    where = f"hume.{hume.backend}.url"
    host = url_host(hume.url)
    remote = not is_loopback(host)
    secrets = url_secrets(hume.url)
    if secrets:
        problems.append(
            f"{where} = {redact_url(hume.url)!r}: may carry a secret in {', '.join(secrets)}, which would "
            "be logged and printed with the URL; a Hume URL takes only scheme, host, port and path: put "
            "the key in hume.api_key, $HUME_API_KEY or the hume_api_key credential (it is sent as the "
            "X-Hume-Api-Key header)"
        )
    if remote and hume.url.lower().startswith(("ws://", "http://")):
        problems.append(
            f"{where} = {redact_url(hume.url)!r}: plaintext to {host or 'an unnamed host'}, so the API key "
            "would travel in clear; use wss:// (plain ws:// is allowed only to a loopback emulator)"
        )
    if remote and not hume.allow_test_sources:
        tests = []
        if cfg.camera.source in TEST_CAMERA_SOURCES:
            tests.append(f"camera.source = {cfg.camera.source!r}")
        elif cfg.camera.source == "opencv" and not is_camera_device(cfg.camera.device):
            tests.append(f"camera.device = {cfg.camera.device!r} (a video file)")
        if cfg.microphone.source in TEST_MICROPHONE_SOURCES:
            tests.append(f"microphone.source = {cfg.microphone.source!r}")
        for test in tests:
            problems.append(
                f"{test}: test media would stream to Hume at {host or hume.url} and be billed as a "
                "visitor; use a real device (camera.source = 'picamera2' or 'opencv' with a camera "
                "index, microphone.source = 'pyaudio'), point "
                f"{where} at a loopback emulator, or set hume.allow_test_sources = true"
            )
    return problems


def check_runnable(cfg: Config, source: str = "config") -> None:
    """Raise :class:`ConfigError` with :func:`run_problems`, if any."""
    problems = run_problems(cfg)
    if problems:
        raise ConfigError(problems, source)
