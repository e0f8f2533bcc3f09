"""Certificate identity: mutual TLS against mosquitto with ``require_certificate true``.

A kiosk whose certificate the broker's CA signed connects and delivers; one with no certificate, or with
one another CA signed, is refused, and the log line names the cause and the keys to fix (said once).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, Certs, make_certs, make_client_cert, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 20.0


@pytest.fixture
def pki(tmp_path: Path) -> Tuple[Certs, Path]:
    directory = tmp_path / "pki"
    return make_certs(directory), directory


def errors(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("agent.mqtt")
    ]


def retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("still:") for r in caplog.records)


async def test_a_certificate_signed_by_the_brokers_ca_connects(
    tmp_path: Path, pki: Tuple[Certs, Path], mosquitto_factory: Callable[..., Broker]
) -> None:
    certs, directory = pki
    broker = mosquitto_factory(tls=certs, require_certificate=True)
    cert, key = make_client_cert(directory, "kiosk1")
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(
        broker.host, broker.port, tls=True, tls_ca=str(certs.ca), tls_cert=str(cert), tls_key=str(key)
    )
    pub = Publisher(cfg, "kiosk1", outbox)
    async with running(pub):
        pub.enqueue(OutMessage("session", {"event": "start"}, retain=True))
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)  # PUBACK came
        assert pub.status().state == "connected"
    outbox.close()


CASES = [(None, "requires a client certificate"), ("other-ca", "did not accept the client certificate")]


@pytest.mark.parametrize("case", CASES, ids=["no certificate", "another CA's certificate"])
async def test_no_or_a_wrong_certificate_is_refused_with_a_clear_line(
    tmp_path: Path,
    pki: Tuple[Certs, Path],
    mosquitto_factory: Callable[..., Broker],
    caplog: pytest.LogCaptureFixture,
    case: Tuple[Optional[str], str],
) -> None:
    client_ca, cause = case
    certs, directory = pki
    broker = mosquitto_factory(tls=certs, require_certificate=True)
    options = {"tls": True, "tls_ca": str(certs.ca)}
    if client_ca is not None:
        cert, key = make_client_cert(directory, "stranger", ca=client_ca)
        options.update(tls_cert=str(cert), tls_key=str(key))
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    pub = Publisher(mqtt_config(broker.host, broker.port, **options), "kiosk1", outbox)
    async with running(pub) as task:
        assert await eventually(lambda: retries(caplog) >= 2, TIMEOUT_S)
        assert not task.done()
        assert pub.status().connects == 0
    assert len(errors(caplog)) == 1, errors(caplog)
    line = errors(caplog)[0]
    assert cause in line
    assert "mqtt.tls_cert" in line
    outbox.close()
