"""Rules across fields and what ``run`` refuses: one place, so ``check-config`` is a true guide to ``run``.

``cross_checks`` are the rules no single field can state (a maximum below its minimum, a model the chosen
backend lacks, TLS half set up, the EU AI Act's prohibited contexts); :func:`run_problems` is what makes
``hume-edge run`` refuse a valid config (no key, a key in clear, test media billed as a visitor). The URL
helpers mask a secret wherever a URL is shown.
"""

from __future__ import annotations

import os
import stat
from typing import List
from urllib.parse import urlsplit

from agent.config.schema import MASK, PROHIBITED_CONTEXTS, Config, MetricsConfig, PrivacyConfig, split_listen
from agent.errors import ConfigError


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
"""Query parameters that carry a secret; Hume's v0 accepted ``?apikey=``, so a copied URL may hold one."""


def url_secrets(url: str) -> List[str]:
    """Names of the query parameters of ``url`` that carry a secret (empty: none)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    return [n for n in names if n.lower() in URL_SECRET_PARAMS]


def redact_url(url: str) -> str:
    """``url`` with the values of its secret query parameters masked, for every place it is shown."""
    if not url_secrets(url):
        return url
    head, _, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}{eq}{MASK}" if eq and name.lower() in URL_SECRET_PARAMS else part)
    return f"{head}?{'&'.join(parts)}{hash_}{fragment}"


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
    where = f"hume.{hume.backend}.url"
    host = url_host(hume.url)
    remote = not is_loopback(host)
    secrets = url_secrets(hume.url)
    if secrets:
        problems.append(
            f"{where} = {redact_url(hume.url)!r}: carries a secret in its query ({', '.join(secrets)}), "
            "which would be logged and printed with the URL; remove it: the key belongs in hume.api_key, "
            "$HUME_API_KEY or the hume_api_key credential, and is sent as the X-Hume-Api-Key header"
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
