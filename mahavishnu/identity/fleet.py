"""What the callout knows of the fleet, read from the files that hold it and reread only when they change.

The CA's revocation list and the MQTT device registry are small files written by
`mahavishnu device revoke|enroll`; one stat each per connection keeps the callout's view
current without a reload, a restart or a cache to invalidate.
"""

from __future__ import annotations

from pathlib import Path

from certs import read_revocations, revocations_path
from mahavishnu.control.operators import file_version
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.identity.decision import Fleet
from mahavishnu.runtime.home import Home


class FleetFiles:
    """The current Fleet of a state directory."""

    def __init__(self, home: Home) -> None:
        self._home = home
        self._paths: tuple[Path, Path] = (revocations_path(home.ca_dir), home.root / mqtt.REGISTRY_FILE)
        self._versions: tuple[object, ...] = ()
        self._fleet = Fleet(frozenset(), frozenset())

    def current(self) -> Fleet:
        versions = tuple(file_version(path) for path in self._paths)
        if versions != self._versions:
            self._fleet = Fleet(
                revoked=frozenset(entry.serial for entry in read_revocations(self._home.ca_dir)),
                mqtt_devices=mqtt.registered(self._home.root),
            )
            self._versions = versions
        return self._fleet
