"""edge.exec_handler: only allowlisted lines run, without a shell; output capped; timeouts kill."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from core.events import CommandFailed, CommandRejected, CommandSucceeded, CommandTimedOut
from edge.builtin import default_registry
from edge.errors import CommandError, InvalidArguments
from edge.exec_handler import OUTPUT_CAP, Exec
from edge.handlers import HandlerContext
from edge.lifecycle import admit, execute
from tests.edge.samples import T0, gone, issued, meta_of, python_line


def test_only_exact_allowlisted_lines_pass() -> None:
    handler = Exec(allowlist=frozenset({"echo hi"}))
    handler.validate({"command": "echo hi"})

    for line in ("echo  hi", "echo hi ", "echo hi; reboot", "echo"):
        with pytest.raises(InvalidArguments) as caught:
            handler.validate({"command": line})
        assert caught.value.reason == (
            f"the command line {line!r} is not in this device's exec_allowlist; "
            "add that exact line to exec_allowlist in the device's agent.toml to allow it"
        )


def test_exec_arguments_are_checked() -> None:
    handler = Exec(allowlist=frozenset({"echo 'unbalanced"}))

    for args in ({}, {"command": ""}, {"command": 3}):
        with pytest.raises(InvalidArguments, match="needs 'command'"):
            handler.validate(args)
    with pytest.raises(InvalidArguments, match="does not take 'shell'"):
        handler.validate({"command": "echo hi", "shell": True})
    with pytest.raises(InvalidArguments, match="cannot be split"):
        handler.validate({"command": "echo 'unbalanced"})


def test_a_refused_line_is_rejected_never_run() -> None:
    registry = default_registry(exec_allowlist=["uptime"])

    admission = admit(issued("exec", {"command": "rm -rf /"}), now=T0, registry=registry, ledger_state="new")

    assert admission.action == "rejected"
    assert isinstance(admission.events[0], CommandRejected)
    assert "not in this device's exec_allowlist" in admission.events[0].reason


async def test_runs_without_a_shell(context: HandlerContext) -> None:
    line = "echo $HOME '*' >out"
    result = await Exec(allowlist=frozenset({line})).run({"command": line}, context)

    assert result == {
        "exit_code": 0,
        "stdout": "$HOME * >out\n",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
    }


async def test_output_is_capped_at_64_kib_each(context: HandlerContext) -> None:
    line = python_line("import sys; sys.stdout.write('o' * 200000); sys.stderr.write('e' * 70000)")

    result = await Exec(allowlist=frozenset({line})).run({"command": line}, context)

    assert OUTPUT_CAP == 65536
    assert result["stdout"] == "o" * OUTPUT_CAP and result["stdout_truncated"] is True
    assert result["stderr"] == "e" * OUTPUT_CAP and result["stderr_truncated"] is True


async def test_a_non_zero_exit_fails_with_the_last_stderr_line(context: HandlerContext) -> None:
    line = python_line("import sys; print('out'); sys.stderr.write('warming up\\nno pump found\\n'); sys.exit(3)")

    with pytest.raises(CommandError) as caught:
        await Exec(allowlist=frozenset({line})).run({"command": line}, context)

    assert caught.value.message == f"{sys.executable} exited with code 3: no pump found"


async def test_a_missing_program_fails(context: HandlerContext, tmp_path: Path) -> None:
    line = str(tmp_path / "no-such-program")

    with pytest.raises(CommandError) as caught:
        await Exec(allowlist=frozenset({line})).run({"command": line}, context)

    assert caught.value.message.startswith(f"cannot start {line!r}: No such file or directory")


async def test_the_outcome_reaches_the_events(context: HandlerContext) -> None:
    ok, bad = "true", "false"
    handler = Exec(allowlist=frozenset({ok, bad}))

    [succeeded] = await execute(issued("exec", {"command": ok}), handler, context)
    [failed] = await execute(issued("exec", {"command": bad}), handler, context)

    assert isinstance(succeeded, CommandSucceeded) and succeeded.result["exit_code"] == 0
    assert isinstance(failed, CommandFailed) and failed.error == "false exited with code 1"


# In CI a missing tool is a failure, not a skip (the test then fails on os.pidfd_open).
@pytest.mark.skipif(
    not hasattr(os, "pidfd_open") and os.environ.get("CI") != "true",
    reason="needs pidfd_open to wait on the grandchild",
)
async def test_a_timeout_kills_the_process_and_its_children(context: HandlerContext, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(60)\n"
    )
    line = python_line(code, str(pids))
    handler = Exec(allowlist=frozenset({line}), timeout_s=1.5)

    [event] = await execute(issued("exec", {"command": line}, timeout_s=30), handler, context)

    assert event == CommandTimedOut(timeout_s=1.5, **meta_of(event))
    leader, grandchild = map(int, pids.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.kill(leader, 0)  # killed and reaped
    assert gone(grandchild)  # killed with its group (its new parent reaps it)
