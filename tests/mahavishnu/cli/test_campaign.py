"""`mahavishnu campaign` as an operator runs it: the write steps against a real `up`, refusals in one line,
and how `list` and `show` print the campaigns queries' answers (pure)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core import subjects
from core.config import load_config
from core.events import AuditRecorded, CampaignCreated
from core.store import EventStore, connect
from mahavishnu.cli.campaign import campaign_line, campaign_text
from mahavishnu.runtime.home import Home
from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up
from tests.waiting import eventually_async

WAVED = """
name = "ping-pumps"
[document.command]
name = "config.set"
args = { key = "api_token", value = "s3cr3t" }
[targets]
tags = { role = "pump" }
[pace]
maximum_per_minute = 60
[[waves]]
name = "canary"
percent = 50
on_success = "pause"
[[waves]]
name = "rest"
[execution]
ttl = "2h"
[schedule]
start = 2099-01-01T00:00:00Z   # far off: up's orchestrator leaves it waiting
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("campaign"))
    yield running
    stop_up(running)


@pytest.fixture
async def store(up: Running) -> AsyncIterator[EventStore]:
    identity = Home(up.home).control_identity(load_config(None, env=up.env))
    nc = await connect(identity, name="tests-campaign", reconnect=False)
    try:
        yield EventStore(nc)
    finally:
        await nc.close()


def enroll(up: Running, folder: Path, device: str, *tags: str) -> None:
    labels = [part for tag in tags for part in ("--tag", tag)]
    enrolled = run("device", "enroll", device, "--out", str(folder / device), *labels, env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr


async def pumps_listed(store: EventStore, count: int) -> None:
    async def listed() -> bool:
        reply = await store.nc.request("mesh.q.devices.list", json.dumps({"tag": "role=pump"}).encode(), timeout=10)
        return len(json.loads(reply.data).get("devices", [])) == count

    await eventually_async(listed, timeout=30, what=f"{count} pumps in the devices read model")


async def test_an_operator_creates_a_campaign_of_the_devices_that_match_and_cancels_it_each_step_audited(
    up: Running, store: EventStore, tmp_path: Path
) -> None:
    enroll(up, tmp_path, "pump-01", "role=pump")
    enroll(up, tmp_path, "pump-02", "role=pump")
    enroll(up, tmp_path, "fan-01", "role=fan")
    await pumps_listed(store, 2)

    refused = one_line_error(run("campaign", "create", "--command", "ping", "--tag", "role=nobody", env=up.env))
    assert "its targets (tag role=nobody) match no enrolled or registered device now" in refused

    file = tmp_path / "pumps.toml"
    file.write_text(WAVED)
    made = run("campaign", "create", str(file), env=up.env)
    assert made.returncode == 0, made.stderr
    campaign = made.stdout.strip()

    # It waits for its start: no step but cancel fits it yet (tests/mahavishnu/campaigns/test_control.py
    # takes each step in the state it is meant for).
    for step, why in (
        ("pause", "is created: only a running campaign can be paused"),
        ("resume", "is created: only a paused campaign can be resumed"),
        ("next-wave", "is created: a wave opens only in a running or paused campaign"),
    ):
        assert f"error: campaign {campaign} {why}" == one_line_error(run("campaign", step, campaign, env=up.env))
    canceled = run("campaign", "cancel", campaign, "--force", env=up.env)
    assert (canceled.returncode, canceled.stdout.strip()) == (0, f"{campaign}: canceled (executions in progress too)")
    said = one_line_error(run("campaign", "cancel", campaign, env=up.env))
    assert said == f"error: campaign {campaign} is canceled (canceled by control) already: nothing left to cancel"

    events = [stored.event async for stored in store.read(subjects.campaign_events(campaign)) if stored.event]
    created = events[0]
    assert isinstance(created, CampaignCreated) and created.actor == "control"
    assert created.spec.targets.tags == {"role": "pump"} and created.spec.execution.ttl_s == 7200
    assert [(event.tag, event.actor) for event in events[1:]] == [("campaign.canceled.v1", "control")]
    audited = [
        stored.event
        async for stored in store.read("mesh.audit.campaign.>")
        if isinstance(stored.event, AuditRecorded) and stored.event.target == campaign
    ]
    assert [(record.actor, record.action) for record in audited] == [
        ("control", "campaign.create"),
        ("control", "campaign.cancel"),
    ]
    # The command's name, never its arguments: they may hold a secret.
    assert audited[0].details == {"name": "ping-pumps", "document": "command config.set"}
    assert audited[1].details == {"force": True}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("--command", "ping", "--devices", ""), "error: flags: targets: is empty;"),
        (("--command", "ping"), "give the targets: --devices ID,ID,... or --tag KEY=VALUE"),
        (("--command", "ping", "--devices", "a", "--args", "[1]"), "--args must be a JSON object"),
        (("--command", "ping", "--tag", "role"), "tag 'role' is not key=value"),
        (("--command", "ping", "--devices", "a", "--max-per-minute", "0.5"), "flags: pace.maximum_per_minute: 0.5"),
        (("--update", "pump-fw", "--devices", "a"), "--update 'pump-fw': name the artifact as NAME@VERSION"),
        (("--update", "pump-fw@9.9", "--devices", "a"), "no artifact pump-fw@9.9 on the mesh; add it with"),
        (("--update", "pump-fw@2", "--command", "ping", "--devices", "a"), "--command NAME or --update NAME@VERSION"),
        (("--command", "ping", "--allow-downgrade", "--devices", "a"), "--allow-downgrade goes with --update"),
    ],
)
def test_bad_flags_are_refused_in_one_line(up: Running, argv: tuple[str, ...], said: str) -> None:
    assert said in one_line_error(run("campaign", "create", *argv, env=up.env))


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[pace]\nmaximum_per_minut = 600\n", "pace.maximum_per_minut: unknown key; known keys: maximum_per_minute"),
        ('[[schedule.windows]]\ncron = "61 * * * *"\nduration = "1h"\n', "schedule.windows[0].cron: '61 * * * *'"),
        ('[[abort]]\nfailure_type = "any"\nthreshold_pct = 101\n', "abort[0].threshold_pct: expected number <= 100.0"),
        ("[targets]\ndevices = []\n", "targets: is empty"),
    ],
)
def test_a_bad_campaign_file_is_refused_in_one_line_naming_the_field(
    up: Running, tmp_path: Path, text: str, said: str
) -> None:
    file = tmp_path / "bad.toml"
    body = 'name = "x"\n[document.command]\nname = "ping"\n'
    file.write_text(body + text + ("" if "[targets]" in text else '[targets]\ndevices = ["pump-01"]\n'))
    assert f"error: {file}: {said}" in one_line_error(run("campaign", "create", str(file), env=up.env))


def test_a_step_on_no_campaign_says_so(up: Running) -> None:
    assert "no campaign cp-000000000000" in one_line_error(run("campaign", "pause", "cp-000000000000", env=up.env))
    assert "'nope' is no campaign id" in one_line_error(run("campaign", "cancel", "nope", env=up.env))


LISTED: dict[str, Any] = {
    "id": "cp-0123456789ab",
    "name": "rotate",
    "status": "aborted",
    "counts": {"pending": 880, "queued": 3, "in_progress": 2, "succeeded": 98, "failed": 17, "timed_out": 0},
    "rule": "abort[0]: failed 14.8% >= 10% of 115 executed",
    "created_at": "2026-12-07T07:00:00+00:00",
    "created_by": "control",
}


def test_a_listed_campaign_is_one_line() -> None:
    assert campaign_line(LISTED) == (
        "cp-0123456789ab  aborted  rotate  98/1000 succeeded, 3 queued, 2 in_progress, 17 failed, 880 pending"
        "  created 2026-12-07T07:00:00+00:00 by control  rule abort[0]: failed 14.8% >= 10% of 115 executed"
    )


def test_a_shown_campaign_has_its_counts_per_state_and_per_wave_and_the_rule() -> None:
    wave = {"in_progress": 0, "timed_out": 0, "rejected": 0, "removed": 0, "canceled": 0}
    shown = {
        **LISTED,
        "reason": "",
        "spec": {"name": "rotate"},
        "started_at": "2026-12-07T07:00:01+00:00",
        "ended_at": None,
        "waves": [
            {
                **wave,
                "wave": 0,
                "name": "canary",
                "open": True,
                "targets": 50,
                "queued": 0,
                "succeeded": 45,
                "failed": 5,
            },
            {
                **wave,
                "wave": 1,
                "name": "rest",
                "open": True,
                "targets": 950,
                "queued": 3,
                "succeeded": 53,
                "failed": 12,
            },
        ],
    }
    assert campaign_text(shown).splitlines() == [
        "cp-0123456789ab  rotate  aborted",
        "rule: abort[0]: failed 14.8% >= 10% of 115 executed",
        "created 2026-12-07T07:00:00+00:00  started 2026-12-07T07:00:01+00:00  by control",
        "counts: 98/1000 succeeded, 3 queued, 2 in_progress, 17 failed, 880 pending",
        "pending 880  queued 3  in_progress 2  succeeded 98  failed 17  timed_out 0  rejected 0  removed 0  canceled 0",
        "waves:",
        "  0 canary  open    45/50 succeeded, 5 failed",
        "  1 rest    open    53/950 succeeded, 3 queued, 12 failed",
    ]


def test_a_campaign_without_waves_shows_no_wave_table() -> None:
    plain = {**LISTED, "rule": "", "waves": [{"wave": 0, "name": "", "open": True, "targets": 1000}]}
    assert "waves:" not in campaign_text(plain)
