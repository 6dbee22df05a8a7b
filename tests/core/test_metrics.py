"""core.metrics and core.probes: the shared metrics, and the probe server on a real loopback port."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from core.metrics import EventStoreMetrics, new_registry
from core.probes import ProbeError, ProbeServer, ServerTLS

# -- Metrics ---------------------------------------------------------------------------


def test_time_append_counts_successes_and_failures() -> None:
    registry = new_registry(process_metrics=False)
    metrics = EventStoreMetrics(registry)

    with metrics.time_append("EVENTS"):
        pass
    with pytest.raises(TimeoutError), metrics.time_append("EVENTS"):
        raise TimeoutError

    assert registry.get_sample_value("mahavishnu_events_appended_total", {"stream": "EVENTS"}) == 1.0
    failed = registry.get_sample_value(
        "mahavishnu_events_append_failed_total", {"stream": "EVENTS", "reason": "TimeoutError"}
    )
    assert failed == 1.0
    assert registry.get_sample_value("mahavishnu_append_seconds_count", {"stream": "EVENTS"}) == 2.0


def test_registries_are_independent() -> None:
    first, second = new_registry(), new_registry()
    EventStoreMetrics(first).appended.labels(stream="EVENTS").inc()
    EventStoreMetrics(second)

    assert first.get_sample_value("mahavishnu_events_appended_total", {"stream": "EVENTS"}) == 1.0
    assert second.get_sample_value("mahavishnu_events_appended_total", {"stream": "EVENTS"}) is None
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        EventStoreMetrics(first)


def test_new_registry_has_process_metrics_unless_told_not_to() -> None:
    names = {metric.name for metric in new_registry().collect()}
    bare = {metric.name for metric in new_registry(process_metrics=False).collect()}

    assert "python_info" in names
    assert bare == set()


# -- Probe server ---------------------------------------------------------------------


class Flags:
    def __init__(self) -> None:
        self.ready = False
        self.healthy = True

    def is_ready(self) -> bool:
        return self.ready

    def is_healthy(self) -> bool:
        return self.healthy


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry(process_metrics=False)


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
async def probes(registry: CollectorRegistry, flags: Flags) -> AsyncIterator[ProbeServer]:
    server = ProbeServer("127.0.0.1", 0, registry, ready=flags.is_ready, health=flags.is_healthy)
    await server.start()
    yield server
    await server.stop()


def client(server: ProbeServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False, timeout=10)


async def test_metrics_shows_the_registry(probes: ProbeServer, registry: CollectorRegistry) -> None:
    EventStoreMetrics(registry).appended.labels(stream="EVENTS").inc(3)

    async with client(probes) as http:
        response = await http.get("/metrics")
        open_metrics = await http.get("/metrics", headers={"accept": "application/openmetrics-text"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mahavishnu_events_appended_total{stream="EVENTS"} 3.0' in response.text
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


async def test_ready_follows_the_callable(probes: ProbeServer, flags: Flags) -> None:
    async with client(probes) as http:
        before = await http.get("/ready")
        flags.ready = True
        after = await http.get("/ready")

    assert (before.status_code, before.json()) == (503, {"ready": False})
    assert (after.status_code, after.json()) == (200, {"ready": True})


async def test_health(probes: ProbeServer, flags: Flags) -> None:
    async with client(probes) as http:
        healthy = await http.get("/health")
        flags.healthy = False
        unhealthy = await http.get("/health")
        wrong_method = await http.post("/health")

    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    assert (unhealthy.status_code, unhealthy.json()) == (503, {"status": "unhealthy"})
    assert wrong_method.status_code == 405


async def test_async_and_failing_checks(registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    async def ready() -> bool:
        return True

    def health() -> bool:
        raise RuntimeError("database gone")

    async with ProbeServer("127.0.0.1", 0, registry, ready=ready, health=health) as server, client(server) as http:
        ready_response = await http.get("/ready")
        health_response = await http.get("/health")

    assert ready_response.status_code == 200
    assert health_response.status_code == 503
    assert "the health check raised" in caplog.text


async def test_stop_frees_the_port(registry: CollectorRegistry) -> None:
    server = ProbeServer("127.0.0.1", 0, registry, ready=lambda: True)
    await server.start()
    port = server.port
    async with client(server) as http:
        assert (await http.get("/ready")).status_code == 200

    await server.stop()
    await server.stop()  # idempotent

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    again = ProbeServer("127.0.0.1", port, registry, ready=lambda: True)
    await again.start()
    await again.stop()
    assert again.port == port


async def test_a_busy_port_is_a_probe_error(probes: ProbeServer, registry: CollectorRegistry) -> None:
    second = ProbeServer("127.0.0.1", probes.port, registry, ready=lambda: True)

    with pytest.raises(ProbeError) as caught:
        await second.start()

    assert f"cannot listen on 127.0.0.1:{probes.port}" in str(caught.value)


async def test_unusable_tls_files_are_a_probe_error_naming_them(registry: CollectorRegistry, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    tls = ServerTLS(tmp_path / "cert.pem", tmp_path / "key.pem", client_ca=tmp_path / "ca.pem")
    server = ProbeServer("127.0.0.1", 0, registry, ready=lambda: True, tls=tls)

    with pytest.raises(ProbeError) as caught:
        await server.start()

    assert f"cannot serve HTTPS with {tmp_path / 'cert.pem'}" in str(caught.value)


async def test_starting_twice_is_refused(probes: ProbeServer) -> None:
    with pytest.raises(RuntimeError, match="twice"):
        await probes.start()


async def test_leaves_signal_handlers_and_logging_alone(registry: CollectorRegistry) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    root_handlers = logging.getLogger().handlers[:]

    async with ProbeServer("127.0.0.1", 0, registry, ready=lambda: True):
        during = {sig: signal.getsignal(sig) for sig in handlers}
        root_during = logging.getLogger().handlers[:]

    assert during == handlers
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert root_during == root_handlers
