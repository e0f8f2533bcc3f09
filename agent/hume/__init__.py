"""The Hume side: the measuring backends behind one interface.

* ``types``: the vocabulary every layer shares (scores, model names, observations, typed link status);
* ``backend``: the one small interface every API version implements;
* ``v1/``: the realtime API (the default): wire types, per-visit sessions, pacing;
* ``v0/``: the legacy streaming API: one self-healing socket per modality, payloads, in-flight accounting.

Before: ``agent.visit`` decides what is sent. Next: observations become summaries (``agent.visit.summary``)
and leave over ``agent.mqtt``.
"""
