"""The MQTT side: everything leaves through a durable outbox; commands come in through a guard.

Out, in the order a message travels:

* ``outbox`` (``outbox_file`` its SQLite file, ``acks`` in-flight and acknowledged rows in memory): the
  durable at-least-once queue;
* ``drain``: outbox rows onto the link, a row deleted only on its PUBACK, within ``limits`` (publish rate,
  packet size);
* ``link``: one connection's state and the values the bridge hands over; ``bridge``: paho in, asyncio out
  (its client and the words for a refusal are ``agent.ops.mqtt_client``'s, shared with ``hume-edge fleet``).

In: ``commands`` (parsing ``cmd/...``), ``guard`` (what broker clients may make the kiosk do, how often),
``intake`` (commands in, each answered). Home Assistant: ``discovery`` (the device config), ``announce``
(sent when HA (re)starts). ``publisher`` composes them all. For the broker's operator: ``broker_acl``
(``hume-edge broker-acl``: the per-account ACL the shipped broker config uses).

Before: ``agent.visit.summary`` and the service hand over ``agent.messages.OutMessage`` values.
"""
