"""How fast the command line answers: `--help`, and a command sent to a live agent with `--wait`.

    python bench/cli.py [--runs N]

Times, in one run, each as the median of N runs of a fresh process (what a person or a
script pays for every call):
  - `mahavishnu --help`;
  - `mahavishnu cmd send bench-dev ping --wait` against a running `mahavishnu up` with one
    agent connected (`mahavishnu agent run`), from process start to the outcome printed;
  - the baseline: `python -c "import nats"`, the least any client of the mesh pays.
Each timed run alternates with a baseline run, so the machine's noise (this one has a
fast and a slow phase) hits both alike; baseline_ms is the median over all of them.
Progress goes to stderr, with cmd_wait_ms / baseline_ms; the last line on stdout is the result:
    cli help_ms=H cmd_wait_ms=W baseline_ms=B ratio=H/B
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchError, bench_mesh, log, mesh_up, running

DEVICE = "bench-dev"


def command() -> list[str]:
    """`mahavishnu` as installed beside this Python (the script a user runs), else `python -m mahavishnu.cli`."""
    script = Path(sys.executable).with_name("mahavishnu")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mahavishnu.cli"]


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Milliseconds from start to exit of one process; BenchError if it fails."""
    started = time.perf_counter()
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    if ran.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {ran.returncode}: {ran.stderr.strip()[-2000:]}")
    return elapsed


def help_and_baseline(runs: int, baselines: list[float]) -> float:
    helps = []
    for i in range(runs):
        helps.append(timed([*command(), "--help"]))
        baselines.append(timed([sys.executable, "-c", "import nats"]))
        log(f"help {i + 1}/{runs}: {helps[-1]:.0f} ms (import nats {baselines[-1]:.0f} ms)")
    return statistics.median(helps)


def until_it_answers(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> None:
    """Send until the agent answers once (it connects and subscribes after `up` is ready), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if ran.returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise BenchError(f"the agent did not answer within {timeout:g} s: {ran.stderr.strip()[-2000:]}")


def command_wait(runs: int, baselines: list[float]) -> float:
    with bench_mesh(prepared=False) as mesh:  # `up` prepares it, as a new user's first `up` does
        env = mesh.env
        log("starting mahavishnu up")
        with mesh_up(mesh, command()):
            timed([*command(), "device", "enroll", DEVICE], env)
            agent_toml = mesh.home.root / "devices" / DEVICE / "agent.toml"
            with running([*command(), "agent", "run", "--config", str(agent_toml)], env, mesh.root / "agent.log"):
                send = [*command(), "cmd", "send", DEVICE, "ping", "--wait"]
                until_it_answers(send, env)
                waits = []
                for i in range(runs):
                    waits.append(timed(send, env))
                    baselines.append(timed([sys.executable, "-c", "import nats"]))
                    log(f"cmd send --wait {i + 1}/{runs}: {waits[-1]:.0f} ms (import nats {baselines[-1]:.0f} ms)")
    return statistics.median(waits)


def main(runs: int) -> str:
    baselines: list[float] = []
    help_ms = help_and_baseline(runs, baselines)
    wait_ms = command_wait(runs, baselines)
    baseline_ms = statistics.median(baselines)
    log(f"cmd_wait_ms / baseline_ms = {wait_ms / baseline_ms:.2f}")
    ratio = help_ms / baseline_ms
    return f"cli help_ms={help_ms:.0f} cmd_wait_ms={wait_ms:.0f} baseline_ms={baseline_ms:.0f} ratio={ratio:.2f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each timed command")
    options = parser.parse_args()
    print(main(options.runs))
