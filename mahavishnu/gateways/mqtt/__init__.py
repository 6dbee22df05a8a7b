"""MQTT-only devices: their users and topics (pure) and the bridge between MQTT and the streams."""
