"""The visitor's side of the kiosk: pausing measurement and being told about it (see docs/privacy.md).

* ``state``: the privacy pause and the notice gate, as pure state machines (no media leaves before the
  notice of its visit is on the broker or durably queued);
* ``desk``: the privacy desk: pause commands, each visit's notice queued, its listeners told, its health;
* ``notice_page``: the on-screen notice and pause button for the kiosk's own browser (loopback only);
* ``gpio``: an optional physical pause button and capture LED on the Pi's GPIO.
"""
