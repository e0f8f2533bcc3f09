"""Running the agent: what it reports about itself, to systemd, the journal, the operator and the fleet.

* ``identity``: what runs (version, Python, OS, config fingerprint, start);
* ``parts``: the per-part status words (``online``, ``offline``, ``disabled``);
* ``health``: the typed agent-wide health snapshot (the retained topic, the status file, ``STATUS=``);
  ``health_view``: the one reader of it (``status`` and ``fleet``), untrusted bytes or a body in;
* ``ago``: how long ago, in words (status and fleet);
* ``replace``: replacing a small file atomically (the status snapshot, the metrics textfile);
* ``mqtt_client``: reaching an MQTT broker: the paho client factory and the words for what went wrong
  (the agent's link in ``agent.mqtt`` and ``fleet``);
* ``status``: the status file and ``hume-edge status`` for an operator on the box;
* ``sdnotify``: systemd's notify protocol (readiness, watchdog, status text);
* ``logs``: logging that reads well in a terminal and in the journal;
* ``metrics_model``, ``metrics_text``, ``metrics_export``, ``metrics_run``: Prometheus metrics read from
  the health body, their exposition, where they go (textfile, ``GET /metrics``), and the agent's task;
* ``fleet``: ``hume-edge fleet``: every kiosk on a broker, one line each, from what the agents publish;
  ``fleet_metrics``: the same fleet as one Prometheus target.
"""
