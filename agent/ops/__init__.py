"""Running the agent: what it reports about itself, to systemd, the journal, the operator and the fleet.

* ``identity``: what runs (version, Python, OS, config fingerprint, start);
* ``parts``: the per-part status words (``online``, ``offline``, ``disabled``);
* ``health``: the typed agent-wide health snapshot (the retained topic, the status file, ``STATUS=``);
* ``status``: the status file and ``hume-edge status`` for an operator on the box;
* ``sdnotify``: systemd's notify protocol (readiness, watchdog, status text);
* ``logs``: logging that reads well in a terminal and in the journal;
* ``fleet``: ``hume-edge fleet``: every kiosk on a broker, one line each, from what the agents publish.
"""
