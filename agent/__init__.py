"""hume-edge-agent: a Raspberry Pi kiosk daemon.

Camera and microphone are streamed to Hume's Expression Measurement API; top emotions go out over MQTT.
"""
