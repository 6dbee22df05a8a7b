"""The nats-server child: its failures explained in one line, and the restart policy."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from mahavishnu.runtime.server import NatsServer, ServerStartError, explain_fatal
from mahavishnu.runtime.supervisor import RestartPolicy
from tests.harness import Mesh


@pytest.mark.parametrize(
    ("lines", "advice"),
    [
        (['Error listening on port: 127.0.0.1:4222, "bind: address already in use"'], "MAHAVISHNU_SERVER__PORT"),
        (["server.conf:13:1: error parsing X509 certificate/key pair: tls: failed to find any PEM data"], "server/"),
        (["error decrypting message block: cipher: message authentication failed"], "key file"),
        (["server.conf:3:1: Parse error: unexpected token"], "mahavishnu.toml"),
        ([], "without saying why"),
    ],
)
def test_fatal_lines_become_one_line_of_advice(lines: list[str], advice: str) -> None:
    message = explain_fatal(lines)
    assert advice in message
    assert "\n" not in message


def test_the_restart_backoff_doubles_up_to_its_maximum() -> None:
    policy = RestartPolicy(initial=0.5, maximum=4.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_policy_gives_up_after_too_many_crashes_in_the_window() -> None:
    policy = RestartPolicy(max_crashes=3, window=60)
    assert not policy.exhausted(deque([0.0, 10.0]), now=20.0)
    assert policy.exhausted(deque([0.0, 10.0, 20.0]), now=30.0)
    assert not policy.exhausted(deque([0.0, 10.0, 20.0]), now=65.0)  # the first crash is out of the window


def test_a_server_that_cannot_load_its_configuration_reports_why(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text('listen: "127.0.0.1:-1"\ntls { cert_file: "/nonexistent/cert.pem", key_file: "/x.pem" }\n')
    with pytest.raises(ServerStartError) as failed:
        NatsServer(conf).start(timeout=20)
    assert "cert" in str(failed.value).lower()


def test_the_harness_server_reports_its_port(mesh: Mesh) -> None:
    assert mesh.server.endpoints is not None
    assert mesh.server.endpoints.port == mesh.port > 0
    assert any("Server is ready" in line for line in mesh.server.recent)
