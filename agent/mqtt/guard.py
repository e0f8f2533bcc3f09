"""What the kiosk lets broker clients make it do, and how often: pure, clock passed in.

A kiosk often shares its broker with accounts that must not control it (docs/security.md ships
the ACL that keeps them out); this is the agent's own line of defence for a broker that is open anyway:

* **Retained commands are ignored.** A retained ``cmd/session start`` would be replayed at every connect, so
  a restarted kiosk would start a paid session by itself. Commands act only when sent live.
* **Only ``commands.allowed`` are obeyed** (a kiosk with a PIR sensor may allow ``session`` and nothing else).
* **``cmd/privacy pause`` is limited by the pause's own rule, not here**: at most
  ``commands.privacy_per_hour`` (6) pauses begun in any hour, a sliding window shared in kind with the
  on-screen page, so with ``privacy.max_pause_s`` of 300 s broker accounts can keep the kiosk paused at
  most half of any hour, the first included; a pause while paused does not extend it, and a visitor's
  pause cannot be ended (``agent.privacy.state.PauseControl``; the hub carries the command out on
  arrival, so the reply says what the rule decided). A token bucket here had let a script hold the
  whole first hour (#31).
* **What costs money is rate-limited:** forced session starts per hour, ``cmd/text`` characters per minute
  (each message is a payload billed by Hume), Home Assistant re-announcements per minute (each re-sends the
  discovery config, the last summary per model and health).
* **Replies are bounded:** every command is answered on ``cmd/result`` while within ``replies_per_s``; a flood
  of refusals past it goes unanswered (counted), so 500 commands cannot make 500 publications.

Token buckets: each starts full (a burst of one period's allowance) and refills continuously.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable, Counter, Dict, List, Optional

from agent.config import CommandsConfig, MqttConfig, is_loopback
from agent.ops.health import CommandHealth
from agent.throttle import TokenBucket


class CommandGuard:
    """Decides, per command, whether it is acted on; the intake asks it before and after parsing."""

    def __init__(self, cfg: CommandsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        now = clock()
        self._starts = TokenBucket(cfg.session_starts_per_hour / 3600.0, cfg.session_starts_per_hour, now)
        self._text = TokenBucket(cfg.text_chars_per_minute / 60.0, cfg.text_chars_per_minute, now)
        self._announce = TokenBucket(cfg.discovery_per_minute / 60.0, cfg.discovery_per_minute, now)
        self._replies = TokenBucket(cfg.replies_per_s, max(1.0, 2 * cfg.replies_per_s), now)
        self.counts: Counter[str] = collections.Counter()
        self._retained_seen: Dict[str, int] = {}

    def retained(self, name: str) -> bool:
        """Count a retained command (always ignored); True the first time for ``name`` (log it once)."""
        self.counts["retained_ignored"] += 1
        first = name not in self._retained_seen
        if first and len(self._retained_seen) < 16:  # names are bounded by the topic check that follows
            self._retained_seen[name] = 1
        return first

    def disabled(self, name: str) -> Optional[str]:
        """Why ``cmd/<name>`` is not obeyed on this kiosk, or None if it is allowed."""
        if name in self.cfg.allowed:
            return None
        self.counts["disabled"] += 1
        allowed = ", ".join(self.cfg.allowed) or "none"
        return f"cmd/{name} is disabled on this kiosk (commands.allowed: {allowed})"

    def budget(self, name: str, action: str = "", chars: int = 0) -> Optional[str]:
        """Why this command is over its rate limit now, or None (and its cost is spent)."""
        if name == "session" and action == "start" and not self._starts.try_take(1, self._clock()):
            why = f"cmd/session start: at most {self.cfg.session_starts_per_hour} an hour; try again later"
        elif name == "text" and not self._text.try_take(chars, self._clock()):
            why = f"cmd/text: at most {self.cfg.text_chars_per_minute} characters a minute; try again later"
        elif name == "discovery" and not self._announce.try_take(1, self._clock()):
            why = f"cmd/discovery: at most {self.cfg.discovery_per_minute} a minute; try again later"
        else:
            self.counts["accepted"] += 1
            return None
        self.counts["rate_limited"] += 1
        return why

    def announce_allowed(self) -> bool:
        """Home Assistant's birth message: re-announce only within the same per-minute budget."""
        if self._announce.try_take(1, self._clock()):
            return True
        self.counts["rate_limited"] += 1
        return False

    def oversized(self) -> None:
        """Count a message above ``mqtt.max_incoming_bytes`` (dropped unread)."""
        self.counts["oversized"] += 1

    def invalid(self) -> None:
        """Count a command refused by validation."""
        self.counts["invalid"] += 1

    def snapshot(self) -> CommandHealth:
        """The counts, for ``health``."""
        return CommandHealth(**{f.name: self.counts[f.name] for f in dataclasses.fields(CommandHealth)})

    def may_reply(self) -> bool:
        """Whether a ``cmd/result`` reply may be published now (False: drop it, counted)."""
        if self._replies.try_take(1, self._clock()):
            return True
        self.counts["replies_dropped"] += 1
        return False


def exposure_warnings(cfg: MqttConfig) -> List[str]:
    """What is exposed when the broker is not on this machine: said once at start-up, never refused
    (a lab broker may be plaintext on purpose)."""
    if is_loopback(cfg.host):
        return []
    where = f"mqtt.host = {cfg.host!r} is not on this machine"
    out = []
    if not cfg.tls:
        out.append(
            f"{where} and mqtt.tls = false: summaries, commands and the broker password travel in clear; "
            "set mqtt.tls = true (docs/security.md)"
        )
    if not cfg.username:
        out.append(
            f"{where} and mqtt.username is empty: a broker that lets this kiosk in anonymously lets anyone "
            "command it; give each kiosk its own account (docs/security.md)"
        )
    return out
