"""`mahavishnu shell` against a real `mahavishnu up` and a real `mahavishnu agent run`: the broker as deployed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from mahavishnu.gateways.shell.journal import SessionJournal, journal_path
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run
from tests.mahavishnu.shell_harness import Terminal


def start_agent(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MAHAVISHNU, "agent", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_an_operator_opens_a_shell_through_up(up: Running, tmp_path: Path) -> None:
    enrolled = run("device", "enroll", "dev-tty", "--out", str(tmp_path / "dev-tty"), env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr
    with (tmp_path / "dev-tty" / "agent.toml").open("a") as config:
        config.write('shell_allowlist = ["/bin/sh"]\n')
    added = run("operator", "add", "olga", "--role", "operator", env=up.env)
    assert added.returncode == 0, added.stderr
    agent = start_agent(tmp_path / "dev-tty" / "agent.toml", up.env)
    terminal: Terminal | None = None
    try:
        ping = run("cmd", "send", "dev-tty", "ping", "--ttl", "60s", "--wait", env=up.env, timeout=90)
        assert ping.returncode == 0, ping.stderr  # the agent is connected
        terminal = Terminal(["dev-tty", "--as", "olga"], up.env)
        session = await terminal.session()
        await terminal.prompt()
        assert "it closes after 15m without a keystroke and after 30m in all" in terminal.text()  # the defaults
        terminal.type("echo hello\r")
        await terminal.expect(r"^hello\r?$")
        terminal.type("exit 3\r")
        assert await terminal.exit_code() == 3  # the shell's own exit status
        assert "the shell exited (status 3)" in terminal.text()
    finally:
        if terminal is not None:
            terminal.close()
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)

    trail = run("events", "read", "mesh.audit.shell.olga", env=up.env)
    assert trail.returncode == 0, trail.stderr
    entries = [json.loads(line)["event"] for line in trail.stdout.splitlines()]
    mine = [e for e in entries if e["details"].get("session") == session]
    assert mine[0]["action"] == "shell.open" and mine[0]["target"] == "dev-tty"
    typed = "".join(e["details"]["text"] for e in mine if e["action"] == "shell.input")
    printed = "".join(e["details"]["text"] for e in mine if e["action"] == "shell.output")
    assert "echo hello\r" in typed and "\r\nhello\r\n" in printed
    assert mine[-1]["action"] == "shell.close" and mine[-1]["details"]["reason"] == "exited"
    assert SessionJournal(journal_path(up.home)).load() == []  # up's broker journals; nothing is left open
