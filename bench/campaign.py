"""A fleet campaign on one `up`: its pace, how fast an abort rule stops it, and whether an execution is lost.

    python bench/campaign.py [--devices 1000] [--per-minute 600] [--fail-pct 15]
                             [--threshold-pct 10] [--min-executed 700]

Prepares a state directory and runs the real `mahavishnu up` (its orchestrator included),
then `mahavishnu agent run --simulate N`: N agents in one process, each with its own
certificate, NATS identity, durable command consumer and SQLite ledger, and the
`simulate.work` handler, which fails on a fixed share of the devices (--fail-pct, by a hash
of the device id). Once every agent has reported, it creates one campaign as
`mahavishnu campaign create` does (mahavishnu.campaigns.control.create):

    document  simulate.work {"fail_pct": F}   targets   the N devices
    pace      maximum_per_minute = 600          abort     failed >= 10% of >= 700 executed: cancel

and waits until it is over (aborted, here) and every execution it notified ended. With 15%
of devices failing, the rule fires at the 700th ending, about 70 s in: the pace is seen over
more than a whole minute, then the abort.
Everything is then read back from the CAMPAIGNS stream and the devices' reports:
  duration_s          campaign.started to its last event (the abort, or the last ending after it)
  max_window_per_min  the most `campaign.notified` in any 60 s (a sliding window over their times)
  abort_s             from the device's report that crossed the threshold (its command's ending,
                      the one whose recording made the rule fire, replayed with the orchestrator's
                      own fold and rule) to `campaign.aborted`
  lost                executions notified that never ended (every one must: run, or canceled)
It also fails if a device was notified after the abort. Progress goes to stderr; the last line is
    campaign devices=N duration_s=D max_window_per_min=W abort_s=A lost=L
Targets: W <= 600, A <= 2, L = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import command
from bench.commands import agents_reported
from bench.harness import BenchError, bench_mesh, log, mesh_up, running
from core import subjects
from core.campaigns.spec import (
    AbortRule,
    CampaignSpec,
    CommandDocument,
    Document,
    FailureType,
    Pace,
    RuleAction,
    Targets,
)
from core.campaigns.state import CampaignView, apply, fold
from core.campaigns.states import EXECUTED, OVER, CampaignStatus, ExecutionState
from core.commands import ending
from core.events import (
    CampaignAborted,
    CampaignStarted,
    CommandEvent,
    Event,
    ExecutionChanged,
    ExecutionNotified,
)
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.campaigns import control, rules
from mahavishnu.runtime.streams import streams_of

WINDOW_S = 60.0
ENDING_S = 60.0  # how long executions under way may take to end once the campaign is over


def max_in_window(times: list[float], window: float = WINDOW_S) -> int:
    """The most of `times` (sorted, seconds) within any `window` seconds (pure)."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def crossing(events: list[Event]) -> ExecutionChanged | None:
    """The ending whose recording made the campaign's abort rule fire, found by replaying its events (pure)."""
    view: CampaignView | None = None
    for event in events:
        view = apply(view, event)
        ended = isinstance(event, ExecutionChanged) and event.state in EXECUTED
        if ended and view is not None and rules.fired(view.spec.abort, view.counts()) is not None:
            assert isinstance(event, ExecutionChanged)
            return event
    return None


async def campaign_events(store: EventStore, campaign_id: str) -> list[Event]:
    return [s.event async for s in store.read(subjects.campaign_events(campaign_id)) if s.event is not None]


async def report_time(store: EventStore, device: str, command_id: str) -> datetime:
    """When the device reported its command's ending (the event's own time, set by the agent)."""
    async for stored in store.read(subjects.device_event(device, "command")):
        event = stored.event
        if isinstance(event, CommandEvent) and event.command_id == command_id and ending(event) is not None:
            return event.occurred_at
    raise BenchError(f"no ending of {device}'s command {command_id}")


async def wait_over(store: EventStore, campaign_id: str, timeout: float) -> list[Event]:
    """The campaign's events once it is over (finished, canceled, or aborted) and its executions all ended.

    An aborted campaign stays `aborted` (core.campaigns.states), so it is over when nothing
    it notified is still under way. Past `timeout`, or ENDING_S after it is over without
    every execution ending, the events as they are: the missing endings count as lost.
    """
    deadline = time.monotonic() + timeout
    over_at: float | None = None
    while True:
        events = await campaign_events(store, campaign_id)
        view = fold(events)
        if view is not None and view.status in (CampaignStatus.ABORTED, *OVER):
            over_at = over_at or time.monotonic()
            if all(execution.ended for execution in view.executions.values()):
                return events
            if time.monotonic() > over_at + ENDING_S:
                return events
        if time.monotonic() > deadline:
            raise BenchError(f"campaign {campaign_id} was not over within {timeout:g} s")
        if view is not None:
            log(f"campaign {view.status}: {', '.join(f'{k} {v}' for k, v in view.counts().items() if v)}")
        await asyncio.sleep(2)  # progress, not synchronisation: the loop ends on what the stream holds


async def main(args: argparse.Namespace) -> str:
    devices = [f"sim-{i}" for i in range(args.devices)]
    spec = CampaignSpec(
        name="bench",
        document=Document(command=CommandDocument(name="simulate.work", args={"fail_pct": args.fail_pct})),
        targets=Targets(devices=devices),
        pace=Pace(maximum_per_minute=args.per_minute),
        abort=[
            AbortRule(
                failure_type=FailureType.FAILED,
                threshold_pct=args.threshold_pct,
                min_executed=args.min_executed,
                action=RuleAction.CANCEL,
            )
        ],
    )
    with bench_mesh(prepared=False) as mesh:
        home, settings = mesh.home, mesh.settings
        log("starting mahavishnu up")
        with mesh_up(mesh, command()):
            nc = await connect(home.control_identity(settings), name="bench-campaign", reconnect=False)
            store = EventStore(nc, streams_of(settings))
            try:
                simulate = [*command(), "agent", "run", "--simulate", str(args.devices)]
                with running(simulate, mesh.env, mesh.root / "agents.log", stdout=subprocess.DEVNULL) as agents:
                    await agents_reported(nc, devices, [agents], timeout=120 + args.devices / 5)
                    log(f"{args.devices} agents connected; creating the campaign")
                    campaign_id = await control.create(store, spec, actor="bench")
                    events = await wait_over(store, campaign_id, timeout=120 + 2 * 60 * args.devices / args.per_minute)
                    return await measure(store, args.devices, events)
            finally:
                await nc.close()


async def measure(store: EventStore, count: int, events: list[Event]) -> str:
    started = next(e for e in events if isinstance(e, CampaignStarted)).occurred_at
    ended = max(e.occurred_at for e in events)  # its last decision or recorded ending
    notified = [e for e in events if isinstance(e, ExecutionNotified) and not e.rollback]
    times = sorted(e.occurred_at.timestamp() for e in notified)
    aborted = next((e for e in events if isinstance(e, CampaignAborted)), None)
    if aborted is None:
        raise BenchError("the abort rule never fired")
    late = [e for e in notified if e.occurred_at > aborted.occurred_at]
    if late:
        raise BenchError(f"{len(late)} devices notified after the abort, the first {late[0].device_id}")
    crossed = crossing(events)
    if crossed is None:
        raise BenchError("no ending crosses the rule when the events are replayed")
    view = fold(events)
    assert view is not None
    lost = [e.device_id for e in view.executions.values() if not e.ended]
    command_id = view.executions[crossed.device_id].command_id
    reported = await report_time(store, crossed.device_id, command_id)
    abort_s = (aborted.occurred_at - reported).total_seconds()
    counts = view.counts()
    log(
        f"notified {len(notified)}; ended: {', '.join(f'{s} {counts[s]}' for s in ExecutionState if counts[s])}; "
        f"aborted by {aborted.rule!r} {abort_s:.2f} s after {crossed.device_id}'s report"
    )
    return (
        f"campaign devices={count} duration_s={(ended - started).total_seconds():.1f} "
        f"max_window_per_min={max_in_window(times)} abort_s={abort_s:.2f} lost={len(lost)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000, help="simulated agents (one process)")
    parser.add_argument("--per-minute", type=float, default=600.0, help="the campaign's maximum_per_minute")
    parser.add_argument("--fail-pct", type=float, default=15.0, help="the share of devices whose execution fails")
    parser.add_argument("--threshold-pct", type=float, default=10.0, help="the abort rule's threshold")
    parser.add_argument("--min-executed", type=int, default=700, help="the abort rule's min_executed")
    arguments = parser.parse_args()
    configure_logging(level="warning")
    try:
        print(asyncio.run(main(arguments)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
