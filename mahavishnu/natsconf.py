"""Renders nats-server configuration from the templates in nats/ (pure, except for reading the template)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

# In a source checkout (and an editable install) the templates are the repository's nats/
# folder; a wheel carries them as mahavishnu/nats_templates.
_REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "nats"


def template_text(name: str) -> str:
    packaged = resources.files("mahavishnu").joinpath("nats_templates", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (_REPO_TEMPLATES / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class User:
    """One identity the server accepts: its certificate URI SAN, and what it may publish and subscribe to.

    None for a permission list means unrestricted (the control services).
    """

    name: str
    publish_allow: tuple[str, ...] | None = None
    subscribe_allow: tuple[str, ...] | None = None

    def render(self) -> str:
        entry = f"user: {json.dumps(self.name)}"
        rules = []
        if self.publish_allow is not None:
            rules.append(f"publish: {{ allow: {json.dumps(list(self.publish_allow))} }}")
        if self.subscribe_allow is not None:
            rules.append(f"subscribe: {{ allow: {json.dumps(list(self.subscribe_allow))} }}")
        if rules:
            entry += ", permissions: { " + ", ".join(rules) + " }"
        return "      { " + entry + " }"


@dataclass(frozen=True)
class ServerConfig:
    """Everything one node's configuration depends on. Paths must be absolute."""

    server_name: str
    host: str
    port: int  # -1: the server picks a free port (tests)
    monitor_port: int  # 0: no monitoring; -1: a free port (tests)
    server_cert: Path
    server_key: Path
    ca_file: Path
    store_dir: Path
    key_include: str  # file name of the JetStream key include, beside the rendered config
    max_memory: int = 256 * 1024 * 1024
    max_file: int = 10 * 1024**3
    users: tuple[User, ...] = field(default_factory=tuple)

    def render(self) -> str:
        for path in (self.server_cert, self.server_key, self.ca_file, self.store_dir):
            if not path.is_absolute():
                raise ValueError(f"{path} must be absolute: the server resolves relative paths from its own cwd")
        if "/" in self.key_include:
            raise ValueError("key_include must be a file name beside the configuration file")
        monitor = f"http: 127.0.0.1:{self.monitor_port}" if self.monitor_port else "# no monitoring port"
        return Template(template_text("server.conf.tmpl")).substitute(
            server_name=self.server_name,
            host=self.host,
            port=self.port,
            monitor=monitor,
            server_cert=self.server_cert,
            server_key=self.server_key,
            ca_file=self.ca_file,
            store_dir=self.store_dir,
            max_memory=self.max_memory,
            max_file=self.max_file,
            key_include=self.key_include,
            users="\n".join(user.render() for user in self.users),
        )


def key_include_text(key: str) -> str:
    """The content of the 0600 include file that holds the JetStream encryption key."""
    return f"key: {json.dumps(key)}\n"
