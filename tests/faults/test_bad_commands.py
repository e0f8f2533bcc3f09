"""Generated ``cmd/…`` messages at the running agent through a real mosquitto: each gets one reply.

The agent is the real process (``hume-edge run``) from the fault rig, without faults. Hypothesis writes
the topic (every known ``cmd/…`` or any other name a broker accepts) and the payload (valid
words, JSON of any shape, text, binary, oversized). Documented behaviour: every command gets exactly one
``cmd/result`` (``ok`` true for a valid one, else an error naming the topic and what is allowed);
``cmd/result`` itself is ignored. The agent stays up and logs no traceback.
"""

from __future__ import annotations

import json
from typing import Iterator, List

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from agent.mqtt.commands import COMMANDS
from agent.untrusted import clip
from tests.support.mosquitto import Received
from tests.support.processes import PREFIX
from tests.support.rig import Rig, rig_for

REPLY_TIMEOUT_S = 10.0
RESULT = PREFIX + "cmd/result"

topic_chars = st.characters(
    blacklist_categories=("Cc", "Cs", "Cn", "Co"), blacklist_characters="+#\x00"
)  # what mosquitto accepts in a topic name
names = st.one_of(
    st.sampled_from([*COMMANDS, "Session", "session/", "session/start", "", "reboot"]),
    st.text(topic_chars, max_size=80).filter(lambda n: n != "result"),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["start", "end"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["action", "x"]), inner, max_size=3)
    ),
    max_leaves=10,
)
payloads = st.one_of(
    st.sampled_from([b"start", b"end", b" END\n", b'{"action":"start"}', b'"end"', b"{", b"", b"x" * 1025]),
    st.binary(max_size=1500),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig_for(tmp_path_factory.mktemp("commands"), seed=12) as r:
        assert r.wait_online(), r.agent.tail()
        yield r


def _replies(messages: List[Received]) -> List[Received]:
    """The agent's replies (stamped with ``ts``; the test's own publish on cmd/result is not)."""
    return [m for m in messages if m.topic == RESULT and b'"ts"' in m.payload]


def _results(rig: Rig) -> List[Received]:
    with rig.subscriber._cond:
        return _replies(rig.subscriber.messages)


def _send(rig: Rig, name: str, payload: bytes) -> Received:
    before = len(_results(rig))
    rig.subscriber.publish(f"{PREFIX}cmd/{name}", payload)
    # Woken by the reply itself (the subscriber's condition), not a 0.05 s poll paid by each of 150 examples.
    assert rig.subscriber.wait_for(lambda ms: len(_replies(ms)) > before, REPLY_TIMEOUT_S), (
        f"no cmd/result for cmd/{name!r} {payload[:80]!r}\n{rig.agent.tail()}"
    )
    return _results(rig)[before]


@given(name=names, payload=payloads)
@settings(max_examples=150, deadline=None)
def test_every_command_gets_one_clear_reply(rig: Rig, name: str, payload: bytes) -> None:
    reply = json.loads(_send(rig, name, payload).payload)
    assert isinstance(reply["ok"], bool)
    if not reply["ok"]:
        shown = clip(name, 64)[:10]  # one printable line: a U+2028 in a topic cannot forge a log entry
        assert f"cmd/{shown}" in reply["error"] or "busy" in reply["error"], reply  # names the topic
    else:
        assert name in COMMANDS, reply
    assert rig.agent.proc is not None
    assert rig.agent.proc.poll() is None, rig.agent.tail()


def test_after_the_fuzz_the_agent_runs_and_obeys(rig: Rig) -> None:
    rig.subscriber.publish(f"{PREFIX}cmd/result", b'{"ok": false}')  # ignored: it is the agent's own topic
    reply = json.loads(_send(rig, "session", b"end").payload)
    assert reply == {"ok": True, "command": "session", "action": "end", "ts": reply["ts"]}
    assert rig.agent.proc is not None
    assert rig.agent.proc.poll() is None
    log = rig.agent.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    # ~150 refusals, but refusals are logged at most once a minute per kind (invalid, over a budget,
    # disabled): a publisher cannot flood the journal (#31). Health counts every one.
    refusals = log.count("refused a command")
    assert 1 <= refusals <= 12, f"{refusals} refusal lines"
