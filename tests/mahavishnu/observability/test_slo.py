"""`mahavishnu slo report`: the arithmetic, and the report read from a real Prometheus scraping a real mesh."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mahavishnu.observability.slo import OBJECTIVES, Measured, parse_window, render, scalar
from tests.harness import free_port
from tests.mahavishnu.cli_harness import Running, one_line_error, run
from tests.tools import tool
from tests.waiting import wait_until

FRESHNESS, AVAILABILITY, POLLING, DELIVERY = OBJECTIVES


def test_the_budget_left_is_full_when_nothing_failed_empty_at_the_target_and_negative_below() -> None:
    assert Measured(DELIVERY, good=1000, total=1000).budget_left == 1.0
    at_target = Measured(DELIVERY, good=995, total=1000)
    assert at_target.budget_left == pytest.approx(0.0, abs=1e-9)
    assert at_target.status == "met"
    missed = Measured(AVAILABILITY, good=997, total=1000)  # 0.3% failed against a 0.1% budget
    assert missed.budget_left == pytest.approx(-2.0)
    assert missed.status == "MISSED"


def test_no_data_is_said_as_such_never_as_a_perfect_score() -> None:
    for empty in (Measured(POLLING, good=None, total=None), Measured(POLLING, good=0.0, total=0.0)):
        assert empty.ratio is None and empty.budget_left is None and empty.status == "no data"
    text = render([Measured(POLLING, None, None), Measured(FRESHNESS, 19, 20)], window="7d", source="p")
    assert "no data for polling health" in text
    freshness = next(line for line in text.splitlines() if "index freshness" in line).split()
    assert freshness[2:] == ["95.0%", "95.00%", "0.0%", "met"]  # exactly on target: no budget left


def test_windows_are_checked() -> None:
    assert parse_window("30d") == "30d"
    for wrong in ("30", "0d", "30s", "1y", "d", "30d;drop"):
        with pytest.raises(ValueError, match="30d"):
            parse_window(wrong)


def test_prometheus_answers_are_read_and_errors_named() -> None:
    assert scalar({"status": "success", "data": {"result": [{"metric": {}, "value": [1, "0.5"]}]}}) == 0.5
    assert scalar({"status": "success", "data": {"result": []}}) is None
    assert scalar({"status": "success", "data": {"result": [{"metric": {}, "value": [1, "NaN"]}]}}) is None
    with pytest.raises(ValueError, match="bad_data: parse error"):
        scalar({"status": "error", "errorType": "bad_data", "error": "parse error"})


def test_the_job_name_cannot_break_out_of_its_label_matcher() -> None:
    good, _ = DELIVERY.queries(job='x"} or vector(1) or {a="', window="1h")
    assert 'job="x\\"} or vector(1) or {a=\\""' in good


@pytest.fixture
def prometheus(up: Running, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping `up`'s metrics every second under the job "mahavishnu"."""
    binary = tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: mahavishnu\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{up.env['MAHAVISHNU_METRICS__PORT']}']}}]\n"
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _samples(url: str, query: str) -> float:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    except (httpx.TransportError, ValueError, KeyError):
        return 0.0
    return float(result[0]["value"][1]) if result else 0.0


def test_the_report_reads_the_four_objectives_from_prometheus(up: Running, prometheus: str) -> None:
    # Ready scrapes and two appends seen apart (increase() needs two samples of a series).
    wait_until(
        lambda: _samples(prometheus, 'sum_over_time(mahavishnu_ready{job="mahavishnu"}[1h])') >= 2,
        timeout=60,
        what="Prometheus to scrape the mesh ready twice",
    )
    # Every connection is audited: an append to AUDIT. increase() needs two samples of a series,
    # so the second connection comes once Prometheus has seen the first one's counter.
    audit_appends = 'sum(mahavishnu_events_appended_total{job="mahavishnu",stream="AUDIT"})'
    assert run("events", "read", "mesh.evt.>", "--limit", "1", env=up.env).returncode == 0
    wait_until(lambda: _samples(prometheus, audit_appends) >= 1, timeout=60, what="Prometheus to see an append")
    assert run("events", "read", "mesh.evt.>", "--limit", "1", env=up.env).returncode == 0
    wait_until(
        lambda: _samples(prometheus, 'sum(increase(mahavishnu_events_appended_total{job="mahavishnu"}[1h]))') > 0,
        timeout=60,
        what="Prometheus to see appends increase",
    )

    answer = run("slo", "report", "--window", "1h", "--prometheus", prometheus, "--json", env=up.env)
    assert answer.returncode == 0, answer.stderr
    report = {item["objective"]: item for item in json.loads(answer.stdout)["objectives"]}
    assert set(report) == {"index_freshness", "availability", "polling_health", "event_delivery"}
    assert 0.0 < report["availability"]["measured"] <= 1.0
    assert report["event_delivery"]["measured"] == 1.0 and report["event_delivery"]["error_budget_left"] == 1.0
    assert report["polling_health"]["status"] == "no data"  # no repository was added: nothing polled
    assert report["index_freshness"]["status"] == "no data"

    table = run("slo", "report", "--window", "1h", "--prometheus", prometheus, env=up.env)
    assert table.returncode == 0
    assert "event delivery" in table.stdout and "99.5%" in table.stdout and "100.00%" in table.stdout


def test_an_unreachable_prometheus_and_a_wrong_window_are_named(up: Running) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    message = one_line_error(run("slo", "report", "--prometheus", url, env=up.env))
    assert url in message and "--prometheus" in message
    assert "30d" in one_line_error(run("slo", "report", "--window", "forever", env=up.env))
