"""For trying and testing the agent on one machine, never loaded by ``hume-edge run``.

* ``localbroker``: a private mosquitto on a free loopback port (the demo's, and the test suite's);
* ``demo``: ``hume-edge demo``: the whole pipeline with the local emulator and broker, nothing to configure
  (with ``agent.cli``, the only agent module that loads ``hume_emulator``).
"""
