"""hume-edge-agent: a Raspberry Pi kiosk daemon.

Camera and microphone are streamed to Hume's Expression Measurement API; top emotions go out over MQTT.

The map, in the order data flows through a kiosk (each package's docstring maps its own modules):

* ``capture/``: camera and microphone sources, on a device or synthetic;
* ``media/``: frames and audio chunks as plain values, and the pure downsampling of them;
* ``visit/``: a visitor at the kiosk: presence, the silence gate, the session, its summaries;
* ``hume/``: the Hume backends (``v1`` realtime, the default; ``v0`` legacy) behind one interface;
* ``mqtt/``: the durable outbox, the broker connection, commands, Home Assistant discovery.

Beside the flow:

* ``privacy/``: the pause and the notice gate, the desk that runs them, the page, the GPIO button and LED;
* ``ops/``: running it: health, status, systemd notify, logs, identity, per-part words, metrics,
  ``hume-edge fleet``;
* ``config/``: typed, frozen settings: schema, loading, the rules across fields, ``check-config``'s TOML;
* ``dev/``: the demo and the private mosquitto it (and the tests) start.

Modules of the package itself: ``cli`` (the ``hume-edge`` command), ``service`` (composes and supervises
every part), ``hub`` (the loops between the parts and the health they add up to), and the leaves every
layer shares: ``errors``, ``messages`` (what producers hand to MQTT), ``untrusted`` (reading hostile
bytes), ``aio`` (named, owned tasks), ``backoff``, ``throttle`` (the token bucket every rate uses, and
rate-limited log lines), ``version``. The import layers are contracts in ``pyproject.toml`` (import-linter).
"""
