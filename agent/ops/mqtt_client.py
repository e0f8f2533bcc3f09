"""Reaching an MQTT broker: the one paho client factory, and what went wrong in words a person can act on.

Two programs reach the broker with the same ``[mqtt]`` settings: the agent's link (``agent.mqtt.bridge``)
and ``hume-edge fleet`` (``agent.ops.fleet.broker``). Both build their paho client with
:func:`make_client` (protocol, transport, credentials, TLS) and say a failure with the same words, so a
setting that works for one works for the other, and a fix read in one's error fits the other's. Here,
below both in the import layers (``agent.ops`` sits under ``agent.mqtt``).

A dropped handshake has several causes the socket alone cannot tell apart; what else is known narrows it:
TLS that completed (then the broker refused the client certificate: with TLS 1.3 the client's handshake
finishes before the broker checks it), whether this broker accepted the agent before (then it is
restarting), and the protocol (an MQTT 3.1.1-only broker closes an MQTT 5 CONNECT). Seen with mosquitto
2.0.11 and ``require_certificate true``: no client certificate -> paho logs ``tlsv13 alert certificate
required``; one another CA signed -> ``EOF occurred in violation of protocol``; both arrive as a disconnect
before CONNACK (paho's text is logged at debug, since its timing varies).
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a connection attempt did not get us connected: the state to report and words to act on."""

    state: str
    problem: str
    transient: bool = False
    """The broker's host answered at once but did not take the connection (refused, reset or closed during
    the handshake): what a restarting broker does. Cheap to retry soon, unlike a timeout."""


def make_client(cfg: MqttConfig, client_id: str, **options: Any) -> mqtt.Client:
    """A paho client for ``cfg``: MQTT 5 or 3.1.1, TCP or WebSockets, username and password, TLS.

    ``options``: paho's other ``Client`` arguments (``reconnect_on_failure``, ``userdata``). Raises
    OSError or ValueError when a ``mqtt.tls_*`` file cannot be read.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311,
        transport="websockets" if cfg.transport == "websockets" else "tcp",
        **options,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password or None)
    if cfg.tls:
        client.tls_set(
            ca_certs=cfg.tls_ca or None, certfile=cfg.tls_cert or None, keyfile=cfg.tls_key or None
        )
    return client


def broker_where(cfg: MqttConfig) -> str:
    """``host:port``, as every message about the broker names it."""
    return f"{cfg.host}:{cfg.port}"


def refused_problem(cfg: MqttConfig, reason: str, code: int) -> str:
    """The words for a CONNACK that refused us (MQTT reason ``reason``, code ``code``)."""
    return (
        f"MQTT broker {broker_where(cfg)} refused the connection: {reason} (reason code {code}); "
        "check mqtt.username / mqtt.password and the broker's access rules"
    )


def handshake_problem(cfg: MqttConfig, reason: str, *, connected_before: bool) -> str:
    """The log line (and ``health`` problem) for a connection the broker ended before its CONNACK.

    The same cause always gives the same words (the publisher says a problem once, and repeats go to
    debug), so paho's error text, which varies with timing, is not part of it.
    """
    where = broker_where(cfg)
    if cfg.tls and not connected_before:
        fix = (
            "set mqtt.tls_cert and mqtt.tls_key to this device's certificate and key, signed by a CA the "
            "broker trusts"
        )
        if not cfg.tls_cert:
            return (
                f"{where} closed the TLS connection before CONNACK ({reason}): it requires a client "
                f"certificate (mutual TLS) and mqtt.tls_cert is empty; {fix} (or check this is its MQTT port)"
            )
        return (
            f"{where} closed the TLS connection before CONNACK ({reason}): it did not accept the client "
            f"certificate mqtt.tls_cert = {cfg.tls_cert}; it must be signed by a CA the broker trusts "
            "(mosquitto: cafile with require_certificate true), unexpired, and match mqtt.tls_key (or check "
            "this is its MQTT port)"
        )
    if connected_before:
        return (
            f"{where} closed the connection during the MQTT handshake ({reason}); it accepted this "
            "agent before, so it is probably restarting or overloaded"
        )
    hint = (
        " A broker that speaks only MQTT 3.1.1 (RabbitMQ before 3.13) does this to an MQTT 5 CONNECT: set "
        'mqtt.protocol = "3.1.1".'
        if cfg.protocol == "5"
        else ""
    )
    return (
        f"{where} closed the connection before CONNACK ({reason}); is it an MQTT port, and does mqtt.tls "
        f"match it?{hint}"
    )


def open_problem(cfg: MqttConfig, exc: Exception, *, connected_before: bool) -> Refusal:
    """What went wrong in TCP connect, TLS handshake or CONNECT (paho's ``connect``), as a refusal.

    ``transient``: refused or reset at once, as a restarting broker does (the publisher retries soon).
    """
    where = broker_where(cfg)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Refusal(
            "disconnected",
            f"TLS handshake with {where} failed: certificate verify failed ({exc.verify_message}); "
            "mqtt.tls_ca must name the CA that signed the broker's certificate, and the certificate "
            "must name mqtt.host",
        )
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or exc  # OpenSSL's reason; an SSLError raised by hand has none
        return Refusal("disconnected", f"TLS with {where} failed: {why}; check mqtt.tls_*")
    if isinstance(exc, ConnectionResetError):
        reason = exc.strerror or "reset"
        return Refusal(
            "disconnected", handshake_problem(cfg, reason, connected_before=connected_before), True
        )
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return Refusal(
        "disconnected",
        f"MQTT broker {where} unreachable: {reason}",
        transient=isinstance(exc, ConnectionRefusedError),
    )
