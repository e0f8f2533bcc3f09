"""hume-edge-agent: a Raspberry Pi kiosk daemon streaming camera and microphone to Hume and publishing top emotions over MQTT."""
