"""The agent's configuration: `agent.toml`, read with tomllib and checked field by field.

    device_id = "pump-7"                          # ^[a-z0-9][a-z0-9-]{0,62}$, the certificate's name
    servers = ["tls://mesh.example.net:4222"]     # at least one; tls:// only (mTLS)
    ca = "ca.pem"                                 # paths; relative ones are beside agent.toml
    cert = "device.pem"
    key = "device.key"
    state = "agent-state.lmdb"                    # ledger, outbox, config values (default shown)
    heartbeat_interval = 30                       # seconds
    telemetry_interval = 60
    exec_allowlist = ["systemctl restart pump"]   # exact command lines `exec` may run
    shell_allowlist = ["/bin/sh", "/bin/bash"]    # shells `mahavishnu shell` may open (default: none)
    ack_wait = 30                                 # the command consumer: seconds before redelivery,
    max_deliver = 5                               # deliveries at most,
    backoff = [1, 5, 15]                          # and redelivery delays (fewer than max_deliver)
    probe_port = 9465                             # /health, /ready, /metrics over HTTP (0: none, the default)
    probe_host = "127.0.0.1"                      # where they listen (loopback by default)

    [update]                                      # optional: without it the agent takes no updates
    device_type = "pump-controller"               # artifacts for other types are refused
    installer = "ab"                              # "ab" (A/B slots) or "hooks" (Mender-style scripts)
    slots = "/opt/pump"                           # ab: the folder of slots a, b and the `current` link
    hooks = "/etc/mahavishnu/hooks"               # hooks: the folder of the state scripts
    health_check = "/opt/pump/current/bin/check"  # a command line that exits 0 when healthy (default: none;
                                                  # hooks: the ArtifactCommit_Enter scripts are one)
    commit_timeout = 60                           # seconds the health check (and commit) may take
    hook_timeout = 120                            # seconds one hook script may take
    trust = "trust"                               # the trusted TUF metadata (root.json from enrolment)
    downloads = "updates"                         # where artifacts are downloaded before install

Every wrong field is reported at once, in one AgentConfigError naming the file.
`render_agent_config` writes such a file (pure), refusing values `load_agent_config` would refuse.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from core.updates.naming import device_type as checked_device_type
from edge.errors import AgentConfigError

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DEFAULT_STATE = "agent-state.lmdb"
DEFAULT_BACKOFF = (1.0, 5.0, 15.0)
INSTALLERS = ("ab", "hooks")
# The folder each installer needs; the other's key is refused, so a config says one thing.
INSTALLER_FOLDER = {"ab": "slots", "hooks": "hooks"}


class UpdateConfig(msgspec.Struct, frozen=True, kw_only=True):
    """agent.toml's [update] section, checked; paths are absolute (docs/updates.md)."""

    device_type: str
    installer: str
    folder: Path  # the slots (ab) or the hook scripts (hooks)
    trust: Path
    downloads: Path
    health_check: tuple[str, ...] = ()  # argv; () for none
    commit_timeout: float = 60.0
    hook_timeout: float = 120.0


UPDATE_KEYS = (
    "device_type",
    "installer",
    "slots",
    "hooks",
    "health_check",
    "commit_timeout",
    "hook_timeout",
    "trust",
    "downloads",
)


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A checked agent.toml; paths are absolute. Build it with load_agent_config()."""

    device_id: str
    servers: tuple[str, ...]
    ca: Path
    cert: Path
    key: Path
    state: Path
    heartbeat_interval: float = 30.0
    telemetry_interval: float = 60.0
    exec_allowlist: tuple[str, ...] = ()
    shell_allowlist: tuple[str, ...] = ()
    ack_wait: float = 30.0
    max_deliver: int = 5
    backoff: tuple[float, ...] = DEFAULT_BACKOFF
    probe_port: int = 0
    probe_host: str = "127.0.0.1"
    update: UpdateConfig | None = None


KEYS = tuple(AgentConfig.__struct_fields__)


def load_agent_config(path: Path | str, *, check_files: bool = True) -> AgentConfig:
    """Read and check `path`; AgentConfigError with one message per wrong field, all at once.

    With `check_files`, ca, cert and key must exist and the state file's folder too.
    """
    path = Path(path).absolute()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AgentConfigError(path, ["no such file; enrol the device or pass the right --config"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigError(path, [f"cannot be read ({exc}); check its permissions"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentConfigError(path, [f"is not valid TOML ({exc}); fix the syntax"]) from None
    config, problems = parse_agent_config(data, folder=path.parent)
    if config is not None and check_files:
        problems += file_problems(config)
    if problems or config is None:
        raise AgentConfigError(path, problems)
    return config


def parse_agent_config(data: dict[str, Any], *, folder: Path) -> tuple[AgentConfig | None, list[str]]:
    """Check the decoded TOML (pure); the config, or None and the problems (one per wrong field)."""
    check = _Checker(data)
    check.unknown_keys()
    device_id = check.device_id()
    servers = check.servers()
    ca, cert, key = (check.path(name, folder, required=True) for name in ("ca", "cert", "key"))
    state = check.path("state", folder, required=False) or folder.absolute() / DEFAULT_STATE
    heartbeat_interval = check.number("heartbeat_interval", 30.0)
    telemetry_interval = check.number("telemetry_interval", 60.0)
    exec_allowlist = check.allowlist()
    shell_allowlist = check.shells()
    ack_wait = check.number("ack_wait", 30.0)
    max_deliver = check.max_deliver()
    backoff = check.backoff()
    probe_port = check.port("probe_port")
    probe_host = check.host("probe_host")
    update = check.update(folder)
    if check.problems or device_id is None or servers is None or ca is None or cert is None or key is None:
        return None, check.problems
    config = AgentConfig(
        device_id=device_id,
        servers=servers,
        ca=ca,
        cert=cert,
        key=key,
        state=state,
        heartbeat_interval=heartbeat_interval,
        telemetry_interval=telemetry_interval,
        exec_allowlist=exec_allowlist,
        shell_allowlist=shell_allowlist,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        backoff=backoff,
        probe_port=probe_port,
        probe_host=probe_host,
        update=update,
    )
    return config, []


def file_problems(config: AgentConfig) -> list[str]:
    """What is missing on disk: the TLS files and the state file's folder."""
    problems = [
        f"{key} {getattr(config, key)} does not exist; enrol the device again or fix the path"
        for key in ("ca", "cert", "key")
        if not getattr(config, key).is_file()
    ]
    if not config.state.parent.is_dir():
        problems.append(f"state {config.state}: the folder {config.state.parent} does not exist; create it")
    update = config.update
    if update is not None:
        key = INSTALLER_FOLDER[update.installer]
        if not update.folder.parent.is_dir():
            problems.append(
                f"update.{key} {update.folder}: the folder {update.folder.parent} does not exist; create it"
            )
    return problems


def render_agent_config(
    *,
    device_id: str,
    servers: Iterable[str],
    ca: Path | str,
    cert: Path | str,
    key: Path | str,
    state: Path | str = DEFAULT_STATE,
    heartbeat_interval: float = 30.0,
    telemetry_interval: float = 60.0,
    exec_allowlist: Iterable[str] = (),
    ack_wait: float = 30.0,
    max_deliver: int = 5,
    backoff: Iterable[float] = DEFAULT_BACKOFF,
    update: dict[str, Any] | None = None,
) -> str:
    """The text of an agent.toml with these values (pure); AgentConfigError for values load would refuse.

    Paths are written as given: relative ones are read back relative to the file's folder.
    """
    data: dict[str, Any] = {
        "device_id": device_id,
        "servers": list(servers),
        "ca": str(ca),
        "cert": str(cert),
        "key": str(key),
        "state": str(state),
        "heartbeat_interval": heartbeat_interval,
        "telemetry_interval": telemetry_interval,
        "exec_allowlist": list(exec_allowlist),
        "ack_wait": ack_wait,
        "max_deliver": max_deliver,
        "backoff": list(backoff),
    }
    if update is not None:
        data["update"] = {key: str(value) if isinstance(value, Path) else value for key, value in update.items()}
    _, problems = parse_agent_config(data, folder=Path("."))
    if problems:
        raise AgentConfigError("the agent.toml to write", problems)
    section = data.pop("update", None)
    lines = [
        "# Mahavishnu edge agent. Relative paths are beside this file; intervals are in seconds.",
        *(f"{name} = {_toml(value)}" for name, value in data.items()),
    ]
    if section is not None:
        lines += ["", "[update]", *(f"{name} = {_toml(value)}" for name, value in section.items())]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value for a string, a number or a list of them."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str):  # a JSON string is a TOML basic string, once DEL is escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)


class _Checker:
    """Reads fields out of the decoded TOML, collecting one problem per wrong field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def fail(self, key: str, problem: str) -> None:
        self.problems.append(f"{key} {problem}")

    def unknown_keys(self) -> None:
        for name in sorted(set(self.data) - set(KEYS)):
            import difflib  # only for a wrong key: an agent that starts well never loads it

            close = difflib.get_close_matches(name, KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the known keys are {', '.join(KEYS)}"
            self.fail(repr(name), f"is not a setting of the agent; {hint}")

    def device_id(self) -> str | None:
        value = self.data.get("device_id")
        if value is None:
            self.fail("device_id", 'is missing; set it to the device\'s name, e.g. device_id = "pump-7"')
        elif not isinstance(value, str) or not DEVICE_ID.fullmatch(value):
            self.fail("device_id", f"{value!r} must be 1-63 lowercase letters, digits or '-', starting with no '-'")
        else:
            return value
        return None

    def servers(self) -> tuple[str, ...] | None:
        value = self.data.get("servers")
        if not isinstance(value, list) or not value:
            self.fail("servers", 'must list at least one server URL, e.g. servers = ["tls://mesh.example.net:4222"]')
            return None
        bad = [f"{url!r}" for url in value if not _tls_url(url)]
        if bad:
            self.fail("servers", f"has {', '.join(bad)}: each must be tls://host[:port] (the mesh takes mTLS only)")
            return None
        return tuple(value)

    def path(self, key: str, folder: Path, *, required: bool) -> Path | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a file path (relative ones are beside agent.toml)")
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else folder.absolute() / path

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if not _positive(value):
            self.fail(key, f"{value!r} must be a number of seconds above 0")
            return default
        return float(value)

    def max_deliver(self) -> int:
        value = self.data.get("max_deliver", 5)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail("max_deliver", f"{value!r} must be a whole number of deliveries, 1 or more")
            return 5
        return value

    def backoff(self) -> tuple[float, ...]:
        value = self.data.get("backoff", list(DEFAULT_BACKOFF))
        if not isinstance(value, list) or not all(_positive(v) for v in value):
            self.fail("backoff", f"{value!r} must be a list of seconds above 0, e.g. [1, 5, 15]")
            return DEFAULT_BACKOFF
        max_deliver = self.data.get("max_deliver", 5)
        if isinstance(max_deliver, int) and len(value) >= max_deliver >= 1:
            self.fail("backoff", f"has {len(value)} delays: NATS needs fewer than max_deliver ({max_deliver})")
        return tuple(float(v) for v in value)

    def port(self, key: str) -> int:
        value = self.data.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
            self.fail(key, f"{value!r} must be a port from 1 to 65535, or 0 for none")
            return 0
        return value

    def host(self, key: str) -> str:
        value = self.data.get(key, "127.0.0.1")
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f'{value!r} must be an address to listen on, e.g. "127.0.0.1"')
            return "127.0.0.1"
        return value

    def update(self, folder: Path) -> UpdateConfig | None:
        """The [update] section, checked field by field; None when there is none (or it is wrong)."""
        section = self.data.get("update")
        if section is None:
            return None
        if not isinstance(section, dict):
            self.fail("update", "must be a table: write [update] on a line of its own, then its keys")
            return None
        check = _Checker(section)
        for name in sorted(set(section) - set(UPDATE_KEYS)):
            check.fail(repr(name), f"is not a setting of [update]; the known keys are {', '.join(UPDATE_KEYS)}")
        device_type = section.get("device_type")
        if not isinstance(device_type, str):
            check.fail("device_type", 'is missing; set it to the kind of device, e.g. device_type = "pump-controller"')
            device_type = None
        else:
            try:
                checked_device_type(device_type)
            except ValueError as exc:
                check.fail("device_type", f"is wrong: {exc}")
        installer = section.get("installer")
        folder_path: Path | None = None
        if installer not in INSTALLERS:
            check.fail("installer", f'{installer!r} must be "ab" (A/B slots) or "hooks" (state scripts)')
        else:
            key, other = INSTALLER_FOLDER[installer], INSTALLER_FOLDER["hooks" if installer == "ab" else "ab"]
            folder_path = check.path(key, folder, required=True)
            if other in section:
                check.fail(other, f'is for installer = "{"hooks" if installer == "ab" else "ab"}"; remove it')
        health_check = section.get("health_check", "")
        argv: tuple[str, ...] = ()
        if not isinstance(health_check, str) or (health_check and not _splits(health_check)):
            check.fail("health_check", 'must be a command line, e.g. health_check = "/opt/pump/current/bin/check"')
        elif health_check:
            argv = tuple(shlex.split(health_check))
        commit_timeout = check.number("commit_timeout", 60.0)
        hook_timeout = check.number("hook_timeout", 120.0)
        trust = check.path("trust", folder, required=False) or folder.absolute() / "trust"
        downloads = check.path("downloads", folder, required=False) or folder.absolute() / "updates"
        self.problems += [f"update.{problem}" for problem in check.problems]
        if check.problems or device_type is None or folder_path is None or not isinstance(installer, str):
            return None
        return UpdateConfig(
            device_type=device_type,
            installer=installer,
            folder=folder_path,
            trust=trust,
            downloads=downloads,
            health_check=argv,
            commit_timeout=commit_timeout,
            hook_timeout=hook_timeout,
        )

    def allowlist(self) -> tuple[str, ...]:
        value = self.data.get("exec_allowlist", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail("exec_allowlist", 'must be a list of command lines, e.g. ["systemctl restart pump"]')
            return ()
        unsplittable = [repr(line) for line in value if not _splits(line)]
        if unsplittable:
            self.fail("exec_allowlist", f"has {', '.join(unsplittable)}: unbalanced quotes; fix the quoting")
        return tuple(value)

    def shells(self) -> tuple[str, ...]:
        value = self.data.get("shell_allowlist", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("/") for v in value):
            self.fail("shell_allowlist", 'must be a list of absolute paths of shells, e.g. ["/bin/sh", "/bin/bash"]')
            return ()
        return tuple(value)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _splits(line: str) -> bool:
    try:
        return bool(shlex.split(line))
    except ValueError:
        return False


def _tls_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number from 0 to 65535
    except ValueError:
        return False
    return parts.scheme == "tls" and bool(parts.hostname) and port != 0 and parts.path in ("", "/")
