"""Campaign files: every key read, durations as people write them, and each mistake refused in one line."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.campaigns.spec import AtEnd, FailureType, GateAction, IncreaseAfter, RuleAction, TargetMode
from mahavishnu.campaigns.specfile import UPDATE_TIMEOUT_S, CampaignSpecError, load, parse

DOC = Path(__file__).resolve().parents[3] / "docs" / "campaigns.md"

FULL = """
name = "rotate-config"

[document.command]
name = "config.set"
args = { key = "rate", value = 5 }

[targets]
tags = { role = "pump" }
transport = "agent"
presence = "online"
mode = "continuous"

[pace.exponential]
base_per_minute = 10
increment_factor = 2
increase_after = "succeeded"
number = 50
maximum_per_minute = 600

[[waves]]
name = "canary"
percent = 5
success_threshold_pct = 95
on_success = "pause"
error_threshold_pct = 10
on_error = "abort"

[[waves]]
name = "rest"

[[abort]]
failure_type = "failed"
threshold_pct = 10
min_executed = 100
action = "pause"

[execution]
in_progress_timeout = "10m"
ttl = "1h"
timeout = 90
retries = { failed = 2, timed_out = 1 }

[schedule]
start = 2026-12-08T01:00:00Z
end = 2026-12-20T00:00:00+01:00
at_end = "cancel"

[[schedule.windows]]
cron = "0 2 * * sat,sun"
duration = "4h"
timezone = "Europe/Berlin"
"""

MINIMAL = """
name = "ping"
[document.command]
name = "ping"
[targets]
devices = ["a", "b"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    return path


def test_every_key_of_a_full_file_is_read(tmp_path: Path) -> None:
    spec = load(write(tmp_path, FULL))
    assert spec.document.command is not None and spec.document.command.args == {"key": "rate", "value": 5}
    assert (spec.targets.tags, spec.targets.mode) == ({"role": "pump"}, TargetMode.CONTINUOUS)
    exponential = spec.pace.exponential
    assert exponential is not None and exponential.increase_after == IncreaseAfter.SUCCEEDED
    assert [wave.name for wave in spec.waves] == ["canary", "rest"]
    assert (spec.waves[0].on_success, spec.waves[0].on_error) == (GateAction.PAUSE, GateAction.ABORT)
    assert spec.abort[0].failure_type == FailureType.FAILED and spec.abort[0].action == RuleAction.PAUSE
    execution = spec.execution
    assert (execution.in_progress_timeout_s, execution.ttl_s, execution.timeout_s) == (600, 3600, 90)
    assert (execution.retries.failed, execution.retries.timed_out) == (2, 1)
    assert spec.schedule.start == datetime(2026, 12, 8, 1, tzinfo=UTC)
    assert spec.schedule.end == datetime(2026, 12, 19, 23, tzinfo=UTC)
    assert spec.schedule.at_end == AtEnd.CANCEL
    assert spec.schedule.windows[0].duration_s == 4 * 3600


def test_the_documented_examples_load() -> None:
    examples = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert examples
    for example in examples:
        spec = parse(tomllib.loads(example), source="docs/campaigns.md")
        assert spec.name


def test_a_minimal_file_takes_the_defaults(tmp_path: Path) -> None:
    spec = load(write(tmp_path, MINIMAL))
    assert spec.targets.devices == ["a", "b"]
    assert spec.pace.maximum_per_minute is None and spec.waves == [] and spec.execution.ttl_s == 3600


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # The bad input: an unknown key, a bad cron expression, a threshold over 100, no targets.
        (
            ("[targets]", "[pace]\nmaximum_per_minut = 600\n[targets]"),
            "pace.maximum_per_minut: unknown key; known keys: maximum_per_minute, exponential",
        ),
        (
            ("[targets]", '[[schedule.windows]]\ncron = "0 25 * * *"\nduration = "1h"\n[targets]'),
            "schedule.windows[0].cron: '0 25 * * *' is no cron expression",
        ),
        (
            ("[targets]", '[[abort]]\nfailure_type = "failed"\nthreshold_pct = 150\n[targets]'),
            "abort[0].threshold_pct: expected number <= 100.0, got 150",
        ),
        (('devices = ["a", "b"]', "devices = []"), "targets: is empty; list devices = [...] or filter by"),
        (('devices = ["a", "b"]', ""), "targets: is empty"),
        # And the rest of what the struct's types cannot say, or say unclearly.
        (("[targets]", "[waves.x]\n[targets]"), "waves: expected list, got"),
        (("[targets]", "[document.desired]\nrate = 5\n[targets]"), "document: give exactly one of"),
        (
            ("[targets]", '[[abort]]\nfailure_type = "failedx"\nthreshold_pct = 5\n[targets]'),
            "abort[0].failure_type: invalid enum value 'failedx'; one of failed, rejected, timed_out, any",
        ),
        (
            ("[targets]", '[[schedule.windows]]\ncron = "0 2 * * *"\n[targets]'),
            "schedule.windows[0].duration: missing; it is required",
        ),
        (("[targets]", '[execution]\nttl = "1 hour"\n[targets]'), "execution.ttl: not a duration: '1 hour'"),
        (("[targets]", "[execution]\nttl_s = 60\n[targets]"), "execution.ttl_s: unknown key; known keys:"),
        (("[targets]", "[pace]\nmaximum_per_minute = 0.5\n[targets]"), "pace.maximum_per_minute: 0.5 per minute"),
        (
            (
                "[targets]",
                "[pace.exponential]\nbase_per_minute = 10\nincrement_factor = 2\nnumber = 5\n"
                "maximum_per_minute = 5\n[targets]",
            ),
            "pace.exponential.maximum_per_minute: is below base_per_minute",
        ),
        (('\nname = "ping"\n[document', "\n[document"), ": name: missing; it is required"),
        (('devices = ["a", "b"]', 'devices = ["a", "a"]'), "targets.devices: names a device twice"),
        (('devices = ["a", "b"]', 'devices = ["a.b"]'), "targets.devices[0]: device id 'a.b' cannot be used"),
        (('devices = ["a", "b"]', 'tags = { Role = "x" }'), "targets.tags.Role: tag key 'Role' is not allowed"),
        (('devices = ["a", "b"]', 'transport = "lora"'), "targets.transport: 'lora' is no transport"),
        (('devices = ["a", "b"]', 'devices = ["a"]\npresence = "online"'), "targets: give devices or a filter"),
        (
            ("[targets]", "[[waves]]\npercent = 60\n[[waves]]\npercent = 50\n[targets]"),
            "waves: the waves' percent add up to 110%",
        ),
        (
            ("[targets]", '[[waves]]\non_error = "next_wave"\n[targets]'),
            "waves[0].on_error: 'next_wave': after errors, pause or abort",
        ),
        (
            ("[targets]", '[[schedule.windows]]\ncron = "0 2 * * *"\nduration = "1h"\ntimezone = "Mars"\n[targets]'),
            "schedule.windows[0].timezone: 'Mars' is no time zone known here",
        ),
        (
            ("[targets]", "[schedule]\nstart = 2026-12-08T01:00:00\n[targets]"),
            "schedule.start: 2026-12-08T01:00:00 has no",
        ),
        (
            ("[targets]", "[schedule]\nstart = 2026-12-08T01:00:00Z\nend = 2026-12-08T00:00:00Z\n[targets]"),
            "schedule.end: is not after schedule.start",
        ),
        (("[targets]", '[document.command]\nname = "x"\n[targets]'), "not valid TOML"),
        (
            ("[targets]", '[[abort]]\nfailure_type = "failed"\nthreshold_pct = 5\naction = "rollback"\n[targets]'),
            "abort[0].action: rollback undoes a desired state or an update",
        ),
        (("[targets]", '[document.update]\nname = "fw"\nversion = "2"\n[targets]'), "document: give exactly one of"),
    ],
)
def test_a_mistake_is_refused_in_one_line_naming_the_field(tmp_path: Path, change: tuple[str, str], said: str) -> None:
    path = write(tmp_path, MINIMAL.replace(*change, 1))
    with pytest.raises(CampaignSpecError) as refused:
        load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ")
    assert said in message
    assert "\n" not in message


def test_an_update_campaign_names_an_artifact_and_gets_time_for_a_download_and_a_health_check() -> None:
    update = {"update": {"name": "pump-fw", "version": "2.1.0"}}
    document = {"name": "fw", "document": update, "targets": {"devices": ["a"]}}
    spec = parse(document, source="flags")
    assert spec.document.update is not None and spec.document.update.version == "2.1.0"
    assert not spec.document.update.allow_downgrade and spec.execution.timeout_s == UPDATE_TIMEOUT_S
    shorter = parse({**document, "execution": {"timeout": "5m"}}, source="flags")
    assert shorter.execution.timeout_s == 300
    with pytest.raises(CampaignSpecError, match=r"document\.update\.version: artifact version 'two words'"):
        parse({**document, "document": {"update": {"name": "pump-fw", "version": "two words"}}}, source="flags")


def test_a_missing_required_field_names_it(tmp_path: Path) -> None:
    with pytest.raises(CampaignSpecError) as refused:
        parse({"name": "x", "document": {"command": {}}, "targets": {"presence": "online"}}, source="--flags")
    assert str(refused.value) == "--flags: document.command.name: missing; it is required"


def test_a_file_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    with pytest.raises(CampaignSpecError, match=r"cannot be read"):
        load(tmp_path / "nowhere.toml")
