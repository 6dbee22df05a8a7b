"""The agent's probe answers and its hand-written metrics text (pure parts)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edge.probes import exposition, respond


def answer(method: str, path: str, *, healthy: bool = True, ready: bool = True) -> tuple[int, str, bytes]:
    return respond(method, path, health=lambda: healthy, ready=lambda: ready, metrics=lambda: b"m 1\\n")


def test_health_and_ready_answer_200_or_503() -> None:
    assert answer("GET", "/health")[::2] == (200, b'{"status": "ok"}')
    assert answer("GET", "/health", healthy=False)[::2] == (503, b'{"status": "unhealthy"}')
    assert answer("GET", "/ready")[::2] == (200, b'{"ready": true}')
    assert answer("GET", "/ready", ready=False)[::2] == (503, b'{"ready": false}')


def test_other_paths_and_methods_are_refused_by_name() -> None:
    status, _, body = answer("GET", "/admin")
    assert status == 404 and b"/health, /ready and /metrics" in body
    assert answer("POST", "/health")[0] == 405


def test_the_metrics_text_is_what_prometheus_parses() -> None:
    text = exposition({"succeeded": 3, "rejected": 1}, outbox=7, connected=False).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    commands = {sample.labels["outcome"]: sample.value for sample in families["mahavishnu_agent_commands"].samples}
    assert commands == {"succeeded": 3.0, "rejected": 1.0}
    assert families["mahavishnu_agent_commands"].type == "counter"
    assert families["mahavishnu_agent_outbox_events"].samples[0].value == 7.0
    assert families["mahavishnu_agent_connected"].samples[0].value == 0.0
