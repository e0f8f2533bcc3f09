"""The agent's exception tree, in one place.

    AgentError                 anything the agent reports to a person
    ├── ConfigError            bad config file / value; carries every problem; exit 78 (EX_CONFIG)
    ├── HumeError              the Hume link
    │   ├── HumeAuthError      key refused (HTTP 401): fatal at start-up, slow retries later
    │   └── HumeProtocolError  a reply that breaks the published contract
    └── BrokerError            the MQTT link (refused CONNACK, TLS, unreachable)

Messages never contain secrets: the API key and MQTT password stay out of them.
"""

from __future__ import annotations

from typing import Sequence

EX_CONFIG = 78
"""sysexits.h: configuration error. systemd is told not to restart on it (RestartPreventExitStatus)."""

EX_UNAVAILABLE = 69
"""sysexits.h: a required service (Hume) refused us, e.g. a wrong API key at start-up."""


class AgentError(Exception):
    """Base of every error the agent reports to a person."""


class ConfigError(AgentError):
    """A config file or value is wrong; ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class HumeError(AgentError):
    """The Hume link failed in a way worth telling a person."""


class HumeAuthError(HumeError):
    """The API key was refused. Retrying fast will not help."""


class HumeProtocolError(HumeError):
    """The server sent something the published contract does not allow."""


class BrokerError(AgentError):
    """The MQTT broker refused us or cannot be reached."""
