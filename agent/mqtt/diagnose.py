"""Why a broker closed the connection before CONNACK, in words a person can act on (pure).

A dropped handshake has several causes the socket alone cannot tell apart; what else is known narrows it:
TLS that completed (then the broker refused the client certificate: with TLS 1.3 the client's handshake
finishes before the broker checks it), whether this broker accepted the agent before (then it is
restarting), and the protocol (an MQTT 3.1.1-only broker closes an MQTT 5 CONNECT). Seen with mosquitto
2.0.11 and ``require_certificate true``: no client certificate -> paho logs ``tlsv13 alert certificate
required``; one another CA signed -> ``EOF occurred in violation of protocol``; both arrive as a disconnect
before CONNACK (paho's text is logged at debug, since its timing varies).
"""

from __future__ import annotations

import ssl

from agent.config import MqttConfig
from agent.mqtt.link import Refusal


def handshake_problem(cfg: MqttConfig, reason: str, *, connected_before: bool) -> str:
    """The log line (and ``health`` problem) for a connection the broker ended before its CONNACK.

    The same cause always gives the same words (the publisher says a problem once, and repeats go to
    debug), so paho's error text, which varies with timing, is not part of it.
    """
    where = f"{cfg.host}:{cfg.port}"
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
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Refusal(
            "disconnected",
            f"TLS handshake with {where} failed: certificate verify failed ({exc.verify_message}); "
            "mqtt.tls_ca must name the CA that signed the broker's certificate, and the certificate "
            "must name mqtt.host",
        )
    if isinstance(exc, ssl.SSLError):
        return Refusal("disconnected", f"TLS with {where} failed: {exc.reason or exc}; check mqtt.tls_*")
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
