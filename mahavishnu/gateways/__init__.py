"""Devices that do not run our agent, reached through a gateway in `up`: MQTT, SSH, and the remote terminal."""
