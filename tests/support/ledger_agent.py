"""``hume-edge run`` that also writes down every ``seq`` its outbox stamped, for the power-loss campaign.

Test instrumentation, not product: ``python -m tests.support.ledger_agent run --config FILE`` is the
agent's own CLI with :meth:`agent.mqtt.outbox.Outbox.put_many` wrapped: once a put returned (committed:
what ``full`` promises to keep), one line per message goes to the file named by ``$HUME_EDGE_TEST_LEDGER``
on a disk the cut does not touch: ``<life> <seq> <topic> <sha1 of the stored JSON>``. The campaign
compares it with what the broker delivered, so "lost", "duplicated" and "reused" are counted per message,
not inferred from the counter.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from agent import cli
from agent.mqtt.outbox import Outbox

LEDGER_ENV = "HUME_EDGE_TEST_LEDGER"
LIFE_ENV = "HUME_EDGE_TEST_LIFE"


def digest(payload: bytes) -> str:
    return hashlib.sha1(payload).hexdigest()[:16]


def install(path: str, life: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    original = Outbox.put_many

    def put_many(
        self: Outbox,
        items: Sequence[Tuple[str, Mapping[str, Any], bool]],
        *,
        state: Optional[Mapping[str, Optional[str]]] = None,
    ) -> List[int]:
        seqs = original(self, items, state=state)
        marks = ",".join("?" * len(seqs))
        rows = self._db.execute(f"SELECT seq, topic, payload FROM messages WHERE seq IN ({marks})", seqs)
        lines = "".join(f"{life} {seq} {topic} {digest(bytes(payload))}\n" for seq, topic, payload in rows)
        os.write(fd, lines.encode())
        return seqs

    Outbox.put_many = put_many  # type: ignore[method-assign]


if __name__ == "__main__":
    install(os.environ[LEDGER_ENV], os.environ.get(LIFE_ENV, "0"))
    sys.exit(cli.main(sys.argv[1:]))
