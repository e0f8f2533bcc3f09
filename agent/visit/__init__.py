"""A visitor at the kiosk, as pure logic: when a visit starts and ends, what of it is sent, what is kept.

In the order media meets them:

* ``presence``: is somebody there? A cheap on-device face check that starts and ends a visit;
* ``audio_gate``: pay for voices, not silence: which microphone audio of a visit goes to Hume;
* ``session``: the visitor session as a state machine driven by plain values and times;
* ``summary``: top emotions per model over short windows and one aggregate per session (with the durable
  checkpoint a restarted agent ends a crashed session from).

Before: ``agent.media``. Next: ``agent.hume`` measures what this lets through; summaries go to ``agent.mqtt``.
"""
