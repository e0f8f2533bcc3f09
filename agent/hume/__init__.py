"""The Hume side: the measuring backends behind one interface.

* ``types``: the vocabulary every layer shares (scores, model names, observations, typed link status);
* ``backend``: the one small interface every API version implements;
* ``pricing``: what Hume bills, the one place the agent and the benchmarks price media;
* ``drift``: what a Hume server sent that our client does not know, counted per link;
* ``v1/``: the realtime API (the default): visits, wire, handshake, endpoint, session, the backend;
* ``v0/``: the legacy streaming API: one self-healing socket per modality, payloads, in-flight accounting;
* ``probe``: ``hume-edge probe``, a short, billed check of the real Hume link before a fleet goes live.
* ``probe_report``: what the probe saw, as plain values: a report per endpoint, the differences, the cost
  ceiling, the terminal lines and the redacted transcript.

Before: ``agent.visit`` decides what is sent. Next: observations become summaries (``agent.visit.summary``)
and leave over ``agent.mqtt``.
"""
