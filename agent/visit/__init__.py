"""A visitor at the kiosk, as pure logic: when a visit starts and ends, what of it is sent, what is kept.

In the order media meets them:

* ``presence``: is somebody there? A cheap on-device face check that starts and ends a visit;
* ``audio_gate``: pay for voices, not silence: which microphone audio of a visit goes to Hume;
* ``session``: the visitor session as a state machine driven by plain values and times;
* ``gate``: the media gate: may this frame, chunk or text leave now (visit, pause, notice), and every
  piece held back counted by reason and kind; a visit's media held in memory while its debounce decides;
* ``stats``: a visit's running statistics (means, ranges, per-model and per-face totals), checkpointable;
* ``summary``: top emotions per model over short windows and one aggregate per session (with the durable
  checkpoint a restarted agent ends a crashed session from);
* ``tally``: what was queued, counted (visits ended by reason, summaries by model) for health and metrics;
* ``recorder``: the visit recorder: session events into summaries, queued with their checkpoints, and the
  sessions a crash left open ended at the next start.

Before: ``agent.media``. Next: ``agent.hume`` measures what this lets through; summaries go to ``agent.mqtt``.
"""
