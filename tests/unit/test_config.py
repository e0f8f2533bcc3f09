"""Config loading: every problem reported at once, with key path, value and what is allowed."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

from agent import config
from agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "hume-edge.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_file_loads_and_matches_defaults() -> None:
    cfg = config.load(EXAMPLE, environ={})
    assert cfg == config.from_dict({}, environ={})


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    section = ""
    documented = set()
    for line in text.splitlines():
        m = re.match(r"^\[([\w.]+)\]", line)
        if m:
            section = m.group(1) + "."
        m = re.match(r"^(\w+) = .*# \S", line)
        if m:
            documented.add(section + m.group(1))
    keys = {k for k, _, _ in config.iter_settings(config.Config())}
    assert keys == documented


def test_misspelt_key_names_key_and_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[mqtt]\nhots = 'broker'\n")
    with pytest.raises(ConfigError) as err:
        config.load(p, environ={})
    assert str(p) in str(err.value)
    assert "mqtt.hots: unknown key (did you mean 'host'?" in str(err.value)


def test_three_problems_reported_together(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "[mqtt]\nport = 70000\n[camera]\nfps = 'fast'\n[hume]\nmodels = ['face', 'smell']\n",
    )
    with pytest.raises(ConfigError) as err:
        config.load(p, environ={})
    problems = err.value.problems
    assert len(problems) == 3
    assert any("mqtt.port = 70000: must be between 1 and 65535" in p for p in problems)
    assert any("camera.fps = 'fast': expected number" in p for p in problems)
    assert any("hume.models[1] = 'smell': must be one of" in p for p in problems)


def test_a_field_with_only_a_minimum_names_it(tmp_path: Path) -> None:
    """hume.reply_timeout_s has a minimum and no maximum: the message formatted None and crashed."""
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, "[hume]\nreply_timeout_s = 0.5\n"), environ={})
    assert err.value.problems == ["hume.reply_timeout_s = 0.5: must be at least 1 s"]


def test_wrong_table_type_and_bool_for_int(tmp_path: Path) -> None:
    p = write(tmp_path, "mqtt = 3\n[summary]\ntop_k = true\n")
    with pytest.raises(ConfigError) as err:
        config.load(p, environ={})
    assert len(err.value.problems) == 2


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[mqtt\n"), environ={})
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml", environ={})


def test_cross_field_checks(tmp_path: Path) -> None:
    p = write(tmp_path, "[mqtt]\ntls_cert = 'c.pem'\n[microphone]\nsource = 'wav'\n")
    with pytest.raises(ConfigError) as err:
        config.load(p, environ={})
    text = str(err.value)
    assert "tls_cert / mqtt.tls_key: give both or neither" in text
    assert "microphone.wav_path: required" in text


def test_api_key_sources_in_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hume_api_key").write_text("from-credential\n", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert config.from_dict({}, environ=env).hume.api_key == "from-credential"
    env["HUME_API_KEY"] = "from-env"
    assert config.from_dict({}, environ=env).hume.api_key == "from-env"
    assert config.from_dict({"hume": {"api_key": "from-file"}}, environ=env).hume.api_key == "from-file"


def test_secrets_masked_in_render_and_errors() -> None:
    cfg = config.from_dict({"hume": {"api_key": "sekrit-123"}, "mqtt": {"password": "pw-456"}}, environ={})
    text = config.render(cfg)
    assert "sekrit-123" not in text
    assert "pw-456" not in text
    assert "sekrit-123" not in repr(cfg)
    assert config.MASK in text
    with pytest.raises(ConfigError) as err:
        config.from_dict({"mqtt": {"password": 12345}}, environ={})
    assert "12345" not in str(err.value)


def test_config_is_frozen() -> None:
    cfg = config.from_dict({}, environ={})
    with pytest.raises(AttributeError):
        cfg.mqtt.port = 1  # type: ignore[misc]


def test_secrets_in_urls_are_masked_wherever_a_url_is_shown() -> None:
    from agent.config import redact_url, url_secrets

    url = "wss://api.hume.ai/v0/stream/models?apikey=sk-123&x=1"
    assert url_secrets(url) == ["a query parameter ('apikey')", "a query parameter (unnamed here)"]
    assert redact_url(url) == "wss://api.hume.ai/v0/stream/models?********"
    assert redact_url("wss://api.cloud.hume.ai") == "wss://api.cloud.hume.ai"
    cfg = config.from_dict({"hume": {"backend": "v0", "v0": {"url": url}}}, environ={})
    rendered = config.render(cfg)
    assert "sk-123" not in rendered
    assert "models?********" in rendered


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"device_id": "kiosk/+"}, "device_id = 'kiosk/+': contains the MQTT wildcard '+'"),
        ({"device_id": "lobby#"}, "device_id = 'lobby#': contains the MQTT wildcard '#'"),
        ({"device_id": "kiosk-lobby/cmd"}, "contains '/', the topic level separator"),
        (
            {"device_id": "a\u2028b"},
            "device_id = 'a?b': contains the control or line-separator character U+2028",
        ),
        ({"device_id": "a\nb"}, "U+000A"),
        (
            {"mqtt": {"topic_prefix": "fleet/#"}},
            "mqtt.topic_prefix = 'fleet/#': contains the MQTT wildcard '#'",
        ),
        ({"mqtt": {"topic_prefix": "fleet//a"}}, "has an empty topic level"),
        ({"mqtt": {"topic_prefix": ""}}, "mqtt.topic_prefix = '': is empty"),
        ({"mqtt": {"discovery_prefix": "$SYS"}}, "starts with '$'"),
        ({"mqtt": {"discovery_prefix": "ha\x00"}}, "U+0000"),
    ],
)
def test_device_id_and_topic_prefixes_name_the_key_and_what_is_allowed(
    data: Dict[str, Any], words: str
) -> None:
    """Such a device id made every topic a wildcard or shifted it a level, and run crash-looped (#31)."""
    with pytest.raises(ConfigError) as err:
        config.from_dict(data, environ={})
    assert words in str(err.value)
    assert "allowed:" in str(err.value)


def test_device_ids_and_prefixes_in_use_stay_valid() -> None:
    for data in (
        {"device_id": "kiosk-lobby_2.b"},
        {"device_id": "Kiosk Café"},
        {"mqtt": {"topic_prefix": "site/a/hume-edge", "discovery_prefix": "homeassistant"}},
    ):
        config.from_dict(data, environ={})


def test_check_config_prints_valid_toml_even_for_a_multi_line_notice() -> None:
    """check-config's output is a config file: a notice_text with a newline (or a quote, a tab, a DEL)
    used to end the string mid-line and make the whole output unreadable as TOML."""
    text = 'Line one\nLine "two"\twith \\ a backslash, a DEL \x7f and é'
    cfg = config.from_dict({"privacy": {"notice_text": text}}, environ={})
    rendered = config.render(cfg)
    parsed = tomllib.loads(rendered)
    assert parsed["privacy"]["notice_text"] == text
    assert config.from_dict(parsed, environ={}) == cfg  # it reads back as the same config
