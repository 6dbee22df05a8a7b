"""Nats-Request-Info as a real server writes it, for the parser's tests and its callers' (shell, queries)."""

from __future__ import annotations

import json
from typing import Any

# Captured from nats-server 2.15: an operator's connection (OPS) requesting mesh.shell.open
# across the import; test_requester.py captures a fresh one from a real server to check the shape.
CAPTURED = (
    '{"start":"2026-12-06T21:55:37.932741802Z","host":"127.0.0.1","id":9,"acc":"OPS",'
    '"user":"mahavishnu:cert:6cba153bf7d8f5d94f37c7df44fcc9c2576d6d27","name":"cap-op-other","lang":"python3",'
    '"ver":"2.16.0","rtt":6096437,"server":"mahavishnu","kind":"Client","client_type":"nats"}'
)


def captured(**changes: Any) -> str:
    """The captured header with fields replaced (None drops a field)."""
    info = {**json.loads(CAPTURED), **changes}
    return json.dumps({key: value for key, value in info.items() if value is not None})
