"""The agent's identity: version, platform, and a config fingerprint that means "same behaviour"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent import config
from agent.ops import identity


def _cfg(toml_data: dict) -> config.Config:  # type: ignore[type-arg]
    return config.from_dict(toml_data, environ={})


def test_fingerprint_ignores_device_identity_and_secrets() -> None:
    base = _cfg({"device_id": "kiosk-a", "mqtt": {"host": "broker.example"}})
    other = _cfg(
        {
            "device_id": "kiosk-b",
            "hume": {"api_key": "secret-1"},
            "mqtt": {"host": "broker.example", "client_id": "lobby", "password": "pw"},
        }
    )
    assert identity.config_fingerprint(base) == identity.config_fingerprint(other)
    items = identity.fingerprint_items(other)
    assert items == {"mqtt.host": "broker.example"}


def test_fingerprint_changes_with_any_behavioural_setting() -> None:
    base = identity.config_fingerprint(_cfg({}))
    seen = {base}
    for change in (
        {"camera": {"fps": 1.0}},
        {"hume": {"models": ["face"]}},
        {"hume": {"backend": "v0"}},
        {"session": {"mode": "always"}},
        {"log_level": "debug"},
    ):
        seen.add(identity.config_fingerprint(_cfg(change)))
    assert len(seen) == 6


def test_a_key_written_with_its_default_equals_a_key_left_out() -> None:
    explicit = _cfg({"camera": {"fps": config.CameraConfig().fps}, "mqtt": {"port": 1883}})
    assert identity.config_fingerprint(explicit) == identity.config_fingerprint(_cfg({}))


def test_fingerprint_is_short_hex_and_stable_across_calls() -> None:
    cfg = _cfg({"mqtt": {"host": "b"}, "hume": {"models": ["face", "burst"]}})
    fp = identity.config_fingerprint(cfg)
    assert len(fp) == identity.FINGERPRINT_CHARS
    int(fp, 16)
    assert fp == identity.config_fingerprint(dataclasses.replace(cfg))


def test_os_name_reads_pretty_name_and_falls_back(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert identity.os_name(release) == "Debian GNU/Linux 12 (bookworm)"
    assert identity.os_name(tmp_path / "missing")  # platform string, never empty


def test_collect_and_wire_shape(tmp_path: Path) -> None:
    cfg = _cfg({"hume": {"backend": "v1", "models": ["face", "prosody"]}})
    ident = identity.collect(cfg, started_at=1764020000.5, os_release=tmp_path / "none")
    body = ident.to_json()
    assert body["backend"] == "v1"
    assert body["models"] == ["face", "prosody"]
    assert body["started_at"] == "2025-11-24T21:33:20.500Z"
    assert body["config_fingerprint"] == identity.config_fingerprint(cfg)
    assert body["version"] == identity.agent_version()
    assert set(body) == {f.name for f in dataclasses.fields(identity.Identity)}
