"""Typed, frozen configuration loaded from TOML, validated with every problem reported at once.

The map, in the order a config file meets it:

* ``field``: :func:`setting`, how a field declares its documentation, unit and range (read by validation,
  ``check-config`` and the example-file test), and the secrets' names;
* ``hume``: the ``[hume]`` sections (shared, ``[hume.v1]``, ``[hume.v0]``);
* ``schema``: every other section as a frozen dataclass, and ``Config``, the whole;
* ``loading``: TOML in, each value checked against its field, unknown and moved keys named, secrets from
  the file, the environment or systemd credentials (``load``, ``from_dict``, ``load_for_run``);
* ``policy``: the rules across fields, and why ``run`` would refuse a valid config (``run_problems``, the
  one answer ``run`` and ``check-config`` share); URL secrets masked;
* ``render``: the effective config as TOML for ``hume-edge check-config``, secrets masked.

Every public name is importable from ``agent.config`` itself (``from agent.config import Config, load``).
"""

from __future__ import annotations

from agent.config.field import (
    API_KEY_CREDENTIAL,
    API_KEY_ENV,
    MASK,
    MQTT_PASSWORD_CREDENTIAL,
    setting,
)
from agent.config.hume import (
    HumeConfig,
    HumeV0Config,
    HumeV1Config,
)
from agent.config.loading import (
    MOVED_KEYS,
    from_dict,
    load,
    load_for_run,
)
from agent.config.policy import (
    TEST_CAMERA_SOURCES,
    TEST_MICROPHONE_SOURCES,
    URL_SECRET_PARAMS,
    check_runnable,
    cross_checks,
    is_camera_device,
    is_loopback,
    redact_url,
    run_problems,
    url_host,
    url_secrets,
)
from agent.config.render import (
    iter_settings,
    render,
)
from agent.config.schema import (
    COMMAND_NAMES,
    DEFAULT_NOTICE_TEXT,
    DEPLOYMENT_CONTEXTS,
    PROHIBITED_CONTEXTS,
    CameraConfig,
    CommandsConfig,
    Config,
    MetricsConfig,
    MicrophoneConfig,
    MqttConfig,
    OutboxConfig,
    PrivacyConfig,
    SessionConfig,
    SummaryConfig,
    split_listen,
)

__all__ = [
    "API_KEY_CREDENTIAL",
    "API_KEY_ENV",
    "COMMAND_NAMES",
    "DEFAULT_NOTICE_TEXT",
    "DEPLOYMENT_CONTEXTS",
    "MASK",
    "MOVED_KEYS",
    "MQTT_PASSWORD_CREDENTIAL",
    "PROHIBITED_CONTEXTS",
    "TEST_CAMERA_SOURCES",
    "TEST_MICROPHONE_SOURCES",
    "URL_SECRET_PARAMS",
    "CameraConfig",
    "CommandsConfig",
    "Config",
    "HumeConfig",
    "HumeV0Config",
    "HumeV1Config",
    "MetricsConfig",
    "MicrophoneConfig",
    "MqttConfig",
    "OutboxConfig",
    "PrivacyConfig",
    "SessionConfig",
    "SummaryConfig",
    "check_runnable",
    "cross_checks",
    "from_dict",
    "is_camera_device",
    "is_loopback",
    "iter_settings",
    "load",
    "load_for_run",
    "redact_url",
    "render",
    "run_problems",
    "setting",
    "split_listen",
    "url_host",
    "url_secrets",
]
