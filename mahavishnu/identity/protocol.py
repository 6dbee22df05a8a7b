"""What a device and up's provisioning service say to each other on mesh.provision.<claim> (pure; msgspec only).

    request  {"device_id": "sensor-07", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----…"}
    answer   {"device_id", "serial", "cert_pem", "ca_pem", "agent_toml"}
    refusal  the micro error headers: Nats-Service-Error-Code (HTTP-like) and Nats-Service-Error (why)

A device's install has msgspec, so both sides share these types.
"""

from __future__ import annotations

import msgspec


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    csr_pem: str  # the device's own CSR (CN=device_id): its key never leaves the device


class Provisioned(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    serial: str  # the device certificate's, hex
    cert_pem: str
    ca_pem: str
    agent_toml: str
    root_json: str = ""  # the update metadata's root the device trusts (core.updates.naming.TRUSTED_ROOT)


REQUESTS = msgspec.json.Decoder(ProvisionRequest)
ANSWERS = msgspec.json.Decoder(Provisioned)
ENCODER = msgspec.json.Encoder()
