"""Each benchmark still runs and prints its result line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re

from tests.bench.running import run_bench


def test_the_append_benchmark_prints_its_line() -> None:
    last, progress = run_bench("append.py", "--events", "2000", "--rounds", "1", timeout=120)
    assert re.fullmatch(r"append events=2000 rate=\d+ baseline_natspy=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in progress  # progress is shown


def test_the_rebuild_benchmark_prints_its_line() -> None:
    last, progress = run_bench("rebuild.py", "--events", "3000", "--rounds", "1", timeout=180)
    pattern = r"rebuild events=3000 rate=\d+ baseline_replay=\d+ ratio=\d+\.\d\d rss_mb=\d+"
    assert re.fullmatch(pattern, last), last
    assert "round 1/1" in progress and "rebuild 3,000/3,000" in progress  # progress is shown


def test_the_query_benchmark_prints_its_line() -> None:
    last, progress = run_bench("query.py", "--seconds", "1", "--rounds", "1", "--entries", "1000", timeout=240)
    assert re.fullmatch(r"query qps=\d+ p99_ms=\d+\.\d baseline_qps=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in progress  # progress is shown
    assert "0 chain breaks" in progress  # and the audit trail it left was checked


def test_the_http_query_benchmark_prints_its_line() -> None:
    last, progress = run_bench("http_query.py", "--seconds", "1", "--rounds", "1", "--entries", "1000", timeout=240)
    assert re.fullmatch(r"http_query qps=\d+ p99_ms=\d+\.\d baseline_qps=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in progress  # progress is shown
    assert "0 chain breaks" in progress  # and the audit trail it left was checked


def test_the_commands_benchmark_prints_its_line() -> None:
    last, progress = run_bench("commands.py", "--devices", "3", "--rate", "20", "--seconds", "1", timeout=240)
    pattern = (
        r"commands devices=3 sent=20 p50_ms=\d+\.\d p99_ms=\d+\.\d baseline_rtt_p99_ms=\d+\.\d\d"
        r" lost=0 twice=0 ratio=\d+\.\d"
    )
    assert re.fullmatch(pattern, last), last
    assert "3 agents connected" in progress  # progress is shown


def test_the_cluster_benchmark_prints_its_line() -> None:
    last, progress = run_bench("cluster.py", "--events", "2000", "--rounds", "1", timeout=180)
    assert re.fullmatch(r"cluster rate_r3=\d+ rate_r1=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in progress  # progress is shown


def test_the_cli_benchmark_prints_its_line() -> None:
    last, progress = run_bench("cli.py", "--runs", "1", timeout=240)
    assert re.fullmatch(r"cli help_ms=\d+ cmd_wait_ms=\d+ baseline_ms=\d+ ratio=\d+\.\d\d", last), last
    assert "cmd send --wait 1/1" in progress  # progress is shown


def test_the_lag_benchmark_prints_its_line() -> None:
    last, progress = run_bench("lag.py", "--rate", "200", "--seconds", "2", timeout=240)
    assert re.fullmatch(r"lag rate=\d+ p99_s=\d+\.\d\d max_s=\d+\.\d\d", last), last
    assert "devices:" in progress and "status answered" in progress  # per read model, and the sampling


def test_the_rebuild_budget_benchmark_prints_its_line() -> None:
    last, progress = run_bench("rebuild_budget.py", "--events", "3000", timeout=180)
    stages = " ".join(rf"{stage}_us=\d+\.\d" for stage in ("replay", "server", "decode", "apply", "insert", "index"))
    assert re.fullmatch(rf"rebuild_budget events=3000 {stages}", last), last
    assert "with a core each" in progress  # the third-core figure is shown


def test_the_enrol_benchmark_prints_its_line() -> None:
    last, progress = run_bench("enrol.py", "--devices", "500", timeout=240)
    pattern = (
        r"enrol devices=500 rate=\d+ first100_ms=\d+\.\d last100_ms=\d+\.\d ratio=\d+\.\d\d"
        r" connect_ms=\d+ server_rss_mb=\d+"
    )
    assert re.fullmatch(pattern, last), last
    assert "enrolled 500/500" in progress  # progress is shown


def test_the_fleet_benchmark_prints_its_line() -> None:
    args = [
        "--devices",
        "60",
        "--agents",
        "40",
        "--processes",
        "2",
        "--targets",
        "20",
        "--rate",
        "20",
        "--seconds",
        "1",
    ]
    last, progress = run_bench("fleet.py", *args, timeout=300)
    pattern = (
        r"fleet enrolled=60 enrol_per_s=\d+ connected=40 connect_s=\d+\.\d p50_ms=\d+\.\d p99_ms=\d+\.\d"
        r" baseline_rtt_p99_ms=\d+\.\d\d lost=0 server_rss_mb=\d+"
    )
    assert re.fullmatch(pattern, last), last
    assert "enrolled 60/60" in progress and "40 agents connected" in progress  # progress is shown


def test_the_reconnect_benchmark_loses_no_command_and_runs_none_twice() -> None:
    args = ["--agents", "30", "--processes", "2", "--rate", "20", "--seconds", "2"]
    last, progress = run_bench("reconnect.py", *args, timeout=400)
    pattern = (
        r"reconnect agents=30 connect_s=\d+\.\d restart_s=\d+\.\d back_s=\d+\.\d ratio=\d+\.\d\d"
        r" audited_s=\d+\.\d probe_p99_ms=\d+\.\d commands=\d+ lost=0 twice=0"
    )
    assert re.fullmatch(pattern, last), last
    assert "all 30 agents back" in progress  # progress is shown


def test_the_consumers_benchmark_prints_its_line_for_a_cluster() -> None:
    args = ["--consumers", "30", "--nodes", "3", "--replicas", "3", "--idle-seconds", "1"]
    last, _ = run_bench("consumers.py", *args, timeout=240)
    pattern = (
        r"consumers n=30 nodes=3 replicas=3 consumer_replicas=1 create_s=\d+\.\d rss_mb_per_node=\d+/\d+/\d+"
        r" baseline_rss_mb=\d+/\d+/\d+ kb_per_consumer=-?\d+ idle_cpu_pct_per_node=[\d.]+/[\d.]+/[\d.]+ stop_s=\d+\.\d"
    )
    assert re.fullmatch(pattern, last), last


def test_the_campaign_benchmark_prints_its_line() -> None:
    last, progress = run_bench("campaign.py", "--devices", "20", "--fail-pct", "50", "--min-executed", "5", timeout=240)
    pattern = r"campaign devices=20 duration_s=\d+\.\d max_window_per_min=\d+ abort_s=\d+\.\d\d lost=0"
    assert re.fullmatch(pattern, last), last
    assert "20 agents connected" in progress and "aborted by 'abort[0]" in progress  # progress is shown


def test_the_ota_benchmark_prints_its_line() -> None:
    last, progress = run_bench("ota.py", "--size-mb", "2", "--agents", "2", "--rounds", "1", timeout=180)
    figures = " ".join(
        rf"{name}=\d+\.\d" for name in ("upload_mb_s", "download_mb_s", "agents=2 aggregate_mb_s", "rss_growth_mb")
    )
    assert re.fullmatch(rf"ota size_mb=2 {figures} baseline_get_mb_s=\d+\.\d", last), last
    assert "round 1/1" in progress and "nats-py's ObjectStore.get()" in progress  # progress is shown
