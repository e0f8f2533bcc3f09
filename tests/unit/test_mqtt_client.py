"""The one paho client factory and the words for a broker that would not take us (agent and fleet alike)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from agent.config import MqttConfig
from agent.ops.mqtt_client import handshake_problem, make_client, open_problem, refused_problem


def test_the_client_follows_protocol_transport_and_credentials() -> None:
    v5 = make_client(MqttConfig(protocol="5", username="kiosk", password="pw"), "a")
    assert v5.protocol == mqtt.MQTTv5
    assert v5.username == "kiosk"
    assert v5.password == "pw"
    v311 = make_client(MqttConfig(protocol="3.1.1", transport="websockets"), "b", reconnect_on_failure=False)
    assert v311.protocol == mqtt.MQTTv311
    assert v311.transport == "websockets"
    assert v311.username is None


def test_refusals_name_the_broker_and_the_setting_to_check() -> None:
    cfg = MqttConfig(host="broker.example", port=8883, tls=True)
    assert refused_problem(cfg, "Not authorized", 135) == (
        "MQTT broker broker.example:8883 refused the connection: Not authorized (reason code 135); "
        "check mqtt.username / mqtt.password and the broker's access rules"
    )
    unreachable = open_problem(cfg, ConnectionRefusedError(111, "Connection refused"), connected_before=False)
    assert unreachable.problem == "MQTT broker broker.example:8883 unreachable: Connection refused"
    assert unreachable.transient
    tls = open_problem(cfg, ssl.SSLError(1, "bad"), connected_before=False)
    assert "check mqtt.tls_*" in tls.problem
    assert not tls.transient
    # TLS completed, then the broker hung up: it wants a client certificate (mosquitto require_certificate).
    assert "mqtt.tls_cert is empty" in handshake_problem(cfg, "EOF", connected_before=False)
    assert "restarting" in handshake_problem(cfg, "EOF", connected_before=True)
