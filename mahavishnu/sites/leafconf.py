"""Renders an edge site's leaf nats-server configuration from nats/leaf.conf.tmpl (pure).

The site server has its own JetStream domain (so its API never answers the hub's
`$JS.API` and the hub reaches it as `$JS.<domain>.API`), an mTLS client listener for its
devices, and one leaf remote to the hub authenticated with the site's certificate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mahavishnu.control.permissions import LEAF_DENIED
from mahavishnu.runtime.natsconf import template_text


@dataclass(frozen=True)
class LeafConfig:
    """Everything a site server's configuration depends on. Paths must be absolute."""

    server_name: str
    domain: str
    host: str
    port: int  # -1: the server picks (tests)
    monitor_port: int  # 0: none; -1: a free port
    hub_urls: tuple[str, ...]
    cert_file: Path
    key_file: Path
    ca_file: Path
    store_dir: Path
    key_include: str  # file names beside the rendered configuration
    users_include: str
    pid_file: Path
    reconnect_s: int = 1  # how often the leaf redials a lost hub
    max_memory: int = 256 * 1024 * 1024
    max_file: int = 10 * 1024**3
    denied: Sequence[str] = LEAF_DENIED

    def render(self) -> str:
        for path in (self.cert_file, self.key_file, self.ca_file, self.store_dir, self.pid_file):
            if not path.is_absolute():
                raise ValueError(f"{path} must be absolute: the server resolves relative paths from its own cwd")
        if "/" in self.key_include + self.users_include:
            raise ValueError("key_include and users_include must be file names beside the configuration file")
        if not self.hub_urls:
            raise ValueError("a site needs at least one hub URL to link to")
        monitor = f"http: 127.0.0.1:{self.monitor_port}" if self.monitor_port else "# no monitoring port"
        return Template(template_text("leaf.conf.tmpl")).substitute(
            server_name=self.server_name,
            domain=self.domain,
            host=self.host,
            port=self.port,
            monitor=monitor,
            hub_urls=json.dumps(list(self.hub_urls)),
            cert_file=self.cert_file,
            key_file=self.key_file,
            ca_file=self.ca_file,
            store_dir=self.store_dir,
            key_include=self.key_include,
            users_include=self.users_include,
            pid_file=self.pid_file,
            reconnect=self.reconnect_s,
            max_memory=self.max_memory,
            max_file=self.max_file,
            denied=json.dumps(list(self.denied)),
        )
