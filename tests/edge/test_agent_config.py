"""edge.agent_config: agent.toml loaded, checked (every mistake at once) and rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError, MahavishnuError
from edge.agent_config import AgentConfig, UpdateConfig, load_agent_config, render_agent_config
from edge.errors import AgentConfigError, EdgeError

MINIMAL = """
device_id = "pump-7"
servers = ["tls://mesh.example.net:4222"]
ca = "ca.pem"
cert = "device.pem"
key = "device.key"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("ca.pem", "device.pem", "device.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def problems_of(path: Path, **options: bool) -> list[str]:
    with pytest.raises(AgentConfigError) as caught:
        load_agent_config(path, **options)
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value.problems


def test_a_minimal_file_takes_the_defaults(folder: Path) -> None:
    config = load_agent_config(write(folder, MINIMAL))

    assert config == AgentConfig(
        device_id="pump-7",
        servers=("tls://mesh.example.net:4222",),
        ca=folder / "ca.pem",
        cert=folder / "device.pem",
        key=folder / "device.key",
        state=folder / "agent-state.lmdb",
        heartbeat_interval=30.0,
        telemetry_interval=60.0,
        exec_allowlist=(),
        ack_wait=30.0,
        max_deliver=5,
        backoff=(1.0, 5.0, 15.0),
    )


def test_every_setting_is_read(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("pki")
    (elsewhere / "ca.pem").write_text("x")
    text = MINIMAL.replace('ca = "ca.pem"', f'ca = "{elsewhere / "ca.pem"}"') + (
        'state = "var/state.db"\nheartbeat_interval = 5\ntelemetry_interval = 0.5\n'
        'exec_allowlist = ["uptime", "systemctl restart pump"]\nack_wait = 60\nmax_deliver = 3\nbackoff = [2, 10]\n'
    )
    (folder / "var").mkdir()

    config = load_agent_config(write(folder, text))

    assert config.ca == elsewhere / "ca.pem"
    assert config.state == folder / "var" / "state.db"
    assert (config.heartbeat_interval, config.telemetry_interval, config.ack_wait) == (5.0, 0.5, 60.0)
    assert config.exec_allowlist == ("uptime", "systemctl restart pump")
    assert (config.max_deliver, config.backoff) == (3, (2.0, 10.0))


def test_every_wrong_field_is_reported_at_once(folder: Path) -> None:
    path = write(
        folder,
        """
device_id = "Pump_7"
servers = ["nats://mesh:4222", "tls://ok:4222"]
ca = "ca.pem"
cert = "device.pem"
key = 7
heartbeat_interval = -1
heartbeat = 5
max_deliver = 0
backoff = "1s"
exec_allowlist = "uptime"
""",
    )

    problems = problems_of(path)

    assert problems == [
        "'heartbeat' is not a setting of the agent; did you mean 'heartbeat_interval'?",
        "device_id 'Pump_7' must be 1-63 lowercase letters, digits or '-', starting with no '-'",
        "servers has 'nats://mesh:4222': each must be tls://host[:port] (the mesh takes mTLS only)",
        "key must be a file path (relative ones are beside agent.toml)",
        "heartbeat_interval -1 must be a number of seconds above 0",
        'exec_allowlist must be a list of command lines, e.g. ["systemctl restart pump"]',
        "max_deliver 0 must be a whole number of deliveries, 1 or more",
        "backoff '1s' must be a list of seconds above 0, e.g. [1, 5, 15]",
    ]
    with pytest.raises(AgentConfigError) as caught:
        load_agent_config(path)
    assert str(caught.value) == f"{path}: " + "; ".join(problems)


def test_missing_required_fields(folder: Path) -> None:
    problems = problems_of(write(folder, "servers = []\n"))

    assert problems == [
        'device_id is missing; set it to the device\'s name, e.g. device_id = "pump-7"',
        'servers must list at least one server URL, e.g. servers = ["tls://mesh.example.net:4222"]',
        "ca must be a file path (relative ones are beside agent.toml)",
        "cert must be a file path (relative ones are beside agent.toml)",
        "key must be a file path (relative ones are beside agent.toml)",
    ]


@pytest.mark.parametrize(
    "url", ["tls://", "tls://host:99999", "tls://host:0", "tls://host/path", "host:4222", "wss://host", 42]
)
def test_bad_server_urls(folder: Path, url: object) -> None:
    text = MINIMAL.replace('["tls://mesh.example.net:4222"]', f"[{url!r}]".replace("'", '"'))

    [problem] = problems_of(write(folder, text))

    assert problem.startswith("servers has ")


def test_server_urls_without_port_or_with_ipv6_pass(folder: Path) -> None:
    text = MINIMAL.replace('["tls://mesh.example.net:4222"]', '["tls://mesh", "tls://[::1]:4222"]')

    assert load_agent_config(write(folder, text)).servers == ("tls://mesh", "tls://[::1]:4222")


def test_backoff_must_be_shorter_than_max_deliver(folder: Path) -> None:
    [problem] = problems_of(write(folder, MINIMAL + "max_deliver = 3\nbackoff = [1, 2, 3]\n"))

    assert problem == "backoff has 3 delays: NATS needs fewer than max_deliver (3)"


def test_unbalanced_allowlist_lines(folder: Path) -> None:
    [problem] = problems_of(write(folder, MINIMAL + 'exec_allowlist = ["echo \'a", "ok", "x \\""]\n'))

    assert problem == "exec_allowlist has \"echo 'a\", 'x \"': unbalanced quotes; fix the quoting"


def test_missing_files_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'state = "nowhere/state.lmdb"\n')

    problems = problems_of(path)

    assert problems == [
        f"ca {tmp_path}/ca.pem does not exist; enrol the device again or fix the path",
        f"cert {tmp_path}/device.pem does not exist; enrol the device again or fix the path",
        f"key {tmp_path}/device.key does not exist; enrol the device again or fix the path",
        f"state {tmp_path}/nowhere/state.lmdb: the folder {tmp_path}/nowhere does not exist; create it",
    ]
    assert load_agent_config(path, check_files=False).ca == tmp_path / "ca.pem"


def test_unreadable_files(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "absent.toml") == ["no such file; enrol the device or pass the right --config"]
    [problem] = problems_of(write(tmp_path, "device_id = \n"))
    assert problem.startswith("is not valid TOML (")


def test_the_error_belongs_to_both_trees(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError) as caught:
        load_agent_config(tmp_path / "absent.toml")

    assert isinstance(caught.value, EdgeError)
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, MahavishnuError)
    assert caught.value.path == str(tmp_path / "absent.toml")


# -- Rendering ----------------------------------------------------------------------------------


def test_rendered_files_load_back(folder: Path) -> None:
    text = render_agent_config(
        device_id="pump-7",
        servers=["tls://a:4222", "tls://b:4222"],
        ca="ca.pem",
        cert=folder / "device.pem",
        key="device.key",
        exec_allowlist=['sh -c "echo \\"hi\\" \\\\ there"', "uptime", "naïve\tline\x7f"],
        heartbeat_interval=10,
        backoff=[0.5, 2],
        max_deliver=4,
    )

    config = load_agent_config(write(folder, text))

    assert text.startswith("# Mahavishnu edge agent.")
    assert config == AgentConfig(
        device_id="pump-7",
        servers=("tls://a:4222", "tls://b:4222"),
        ca=folder / "ca.pem",
        cert=folder / "device.pem",
        key=folder / "device.key",
        state=folder / "agent-state.lmdb",
        heartbeat_interval=10.0,
        exec_allowlist=('sh -c "echo \\"hi\\" \\\\ there"', "uptime", "naïve\tline\x7f"),
        max_deliver=4,
        backoff=(0.5, 2.0),
    )


def test_render_refuses_what_load_would_refuse() -> None:
    with pytest.raises(AgentConfigError) as caught:
        render_agent_config(device_id="-bad", servers=[], ca="ca.pem", cert="c.pem", key="k.pem", ack_wait=0)

    assert [p.split()[0] for p in caught.value.problems] == ["device_id", "servers", "ack_wait"]
    assert str(caught.value).startswith("the agent.toml to write: device_id '-bad'")


def test_the_shell_allowlist_takes_absolute_paths_only(folder: Path) -> None:
    config = load_agent_config(write(folder, MINIMAL + 'shell_allowlist = ["/bin/sh", "/bin/bash"]\n'))
    assert config.shell_allowlist == ("/bin/sh", "/bin/bash")
    assert load_agent_config(write(folder, MINIMAL)).shell_allowlist == ()  # by default: no shells

    problems = problems_of(write(folder, MINIMAL + 'shell_allowlist = ["sh"]\n'))
    assert problems == ['shell_allowlist must be a list of absolute paths of shells, e.g. ["/bin/sh", "/bin/bash"]']


UPDATE = """
[update]
device_type = "pump-controller"
installer = "ab"
slots = "app"
health_check = "/opt/pump/current/bin/check --quick"
commit_timeout = 30
"""


def test_the_update_section_is_read_with_its_defaults(folder: Path) -> None:
    config = load_agent_config(write(folder, MINIMAL + UPDATE))

    assert config.update == UpdateConfig(
        device_type="pump-controller",
        installer="ab",
        folder=folder / "app",
        trust=folder / "trust",
        downloads=folder / "updates",
        health_check=("/opt/pump/current/bin/check", "--quick"),
        commit_timeout=30.0,
        hook_timeout=120.0,
    )
    assert load_agent_config(write(folder, MINIMAL)).update is None


def test_every_wrong_update_field_is_reported_at_once(folder: Path) -> None:
    text = (
        MINIMAL
        + """
[update]
device_type = "Pump Controller"
installer = "ab"
slots = "app"
hooks = "hooks"
health_check = "check 'unbalanced"
commit_timeout = 0
colour = "blue"
"""
    )
    assert problems_of(write(folder, text)) == [
        "update.'colour' is not a setting of [update]; the known keys are device_type, installer, slots, hooks, "
        "health_check, commit_timeout, hook_timeout, trust, downloads",
        "update.device_type is wrong: device type 'Pump Controller': use 1-64 lower-case letters, digits, _ or -",
        'update.hooks is for installer = "hooks"; remove it',
        'update.health_check must be a command line, e.g. health_check = "/opt/pump/current/bin/check"',
        "update.commit_timeout 0 must be a number of seconds above 0",
    ]


def test_the_update_section_needs_an_installer_and_its_folder(folder: Path) -> None:
    assert problems_of(write(folder, MINIMAL + '[update]\ndevice_type = "pump"\ninstaller = "apt"\n')) == [
        'update.installer \'apt\' must be "ab" (A/B slots) or "hooks" (state scripts)'
    ]
    assert problems_of(write(folder, MINIMAL + '[update]\ndevice_type = "pump"\ninstaller = "hooks"\n')) == [
        "update.hooks must be a file path (relative ones are beside agent.toml)"
    ]
    assert problems_of(write(folder, MINIMAL + 'update = "yes"\n')) == [
        "update must be a table: write [update] on a line of its own, then its keys"
    ]


def test_a_rendered_update_section_loads_back(folder: Path) -> None:
    update = {"device_type": "pump", "installer": "hooks", "hooks": folder / "hooks", "hook_timeout": 5}
    text = render_agent_config(
        device_id="pump-7", servers=["tls://a:4222"], ca="ca.pem", cert="device.pem", key="device.key", update=update
    )

    config = load_agent_config(write(folder, text))

    assert "\n[update]\n" in text
    assert config.update is not None
    assert (config.update.installer, config.update.folder, config.update.hook_timeout) == (
        "hooks",
        folder / "hooks",
        5.0,
    )
    with pytest.raises(AgentConfigError, match=r"update\.installer"):
        render_agent_config(
            device_id="pump-7", servers=["tls://a:4222"], ca="c", cert="c", key="k", update={"installer": "x"}
        )
