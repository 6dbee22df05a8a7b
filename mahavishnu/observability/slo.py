"""The four service-level objectives of the mesh, computed from its Prometheus metrics (pure).

    index freshness   95%    commits queryable within 5 minutes of being seen by a poll
    availability      99.9%  scrapes that found `up` answering and ready
    polling health    99%    polls of repositories that succeeded
    event delivery    99.5%  appends that JetStream acknowledged

Each objective is a ratio of good events to all events over a window, both read from
Prometheus by one PromQL expression each (the `slo report` command does the I/O). The
error budget is the share of failures the target allows; what is left of it is
1 - (1 - measured) / (1 - target): 100% when nothing failed, 0% when the target is just
met, negative when it is missed.

A counter series born inside the window loses its first increment to `increase()`
(Prometheus cannot tell it from a reset); over a window of days this is noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.metrics import FRESHNESS_OBJECTIVE_S

_WINDOW = re.compile(r"([1-9][0-9]{0,4})([mhdw])")


def parse_window(text: str) -> str:
    """A PromQL range such as "30d" (minutes, hours, days or weeks); ValueError saying what is accepted."""
    if not _WINDOW.fullmatch(text.strip()):
        raise ValueError(f"window {text!r} is not a duration such as 30d, 7d, 12h or 90m (m, h, d or w)")
    return text.strip()


@dataclass(frozen=True)
class Objective:
    """One SLO: its target ratio and the PromQL for its good and total counts ({job} and {window} filled in)."""

    name: str
    title: str
    target: float
    meaning: str
    good: str
    total: str

    def queries(self, *, job: str, window: str) -> tuple[str, str]:
        # The job name goes into a PromQL string literal: quote it as JSON does (a subset of PromQL's escapes).
        quoted = '"' + job.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return (
            self.good.format(job=quoted, window=window),
            self.total.format(job=quoted, window=window),
        )


OBJECTIVES: tuple[Objective, ...] = (
    Objective(
        name="index_freshness",
        title="index freshness",
        target=0.95,
        meaning=f"commits queryable within {FRESHNESS_OBJECTIVE_S / 60:.0f} minutes of being seen",
        good=(
            "sum(increase(mahavishnu_index_freshness_seconds_bucket"
            f'{{{{job={{job}},le="{FRESHNESS_OBJECTIVE_S}"}}}}[{{window}}]))'
        ),
        total="sum(increase(mahavishnu_index_freshness_seconds_count{{job={job}}}[{window}]))",
    ),
    Objective(
        name="availability",
        title="availability",
        target=0.999,
        meaning="scrapes that found the mesh up and ready",
        good="sum(sum_over_time(mahavishnu_ready{{job={job}}}[{window}]))",
        total="sum(count_over_time(up{{job={job}}}[{window}]))",
    ),
    Objective(
        name="polling_health",
        title="polling health",
        target=0.99,
        meaning="polls of repositories that succeeded",
        good='sum(increase(mahavishnu_polls_total{{job={job},outcome="ok"}}[{window}]))',
        total="sum(increase(mahavishnu_polls_total{{job={job}}}[{window}]))",
    ),
    Objective(
        name="event_delivery",
        title="event delivery",
        target=0.995,
        meaning="appends acknowledged by JetStream",
        good="sum(increase(mahavishnu_events_appended_total{{job={job}}}[{window}]))",
        total=(
            "sum(increase(mahavishnu_events_appended_total{{job={job}}}[{window}]))"
            " + (sum(increase(mahavishnu_events_append_failed_total{{job={job}}}[{window}])) or vector(0))"
        ),
    ),
)


@dataclass(frozen=True)
class Measured:
    """What Prometheus said of one objective; None where it had no data."""

    objective: Objective
    good: float | None
    total: float | None

    @property
    def ratio(self) -> float | None:
        if self.good is None or self.total is None or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.good / self.total))

    @property
    def budget_left(self) -> float | None:
        ratio = self.ratio
        if ratio is None:
            return None
        return 1.0 - (1.0 - ratio) / (1.0 - self.objective.target)

    @property
    def status(self) -> str:
        ratio = self.ratio
        if ratio is None:
            return "no data"
        return "met" if ratio >= self.objective.target else "MISSED"

    def as_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective.name,
            "meaning": self.objective.meaning,
            "target": self.objective.target,
            "good": self.good,
            "total": self.total,
            "measured": self.ratio,
            "error_budget_left": self.budget_left,
            "status": self.status,
        }


def scalar(response: dict[str, Any]) -> float | None:
    """The one value of an instant-query answer of Prometheus; None for an empty vector (pure).

    ValueError when the answer is an error or not the shape asked for.
    """
    if response.get("status") != "success":
        raise ValueError(f"{response.get('errorType', 'error')}: {response.get('error', 'no reason given')}")
    result = response.get("data", {}).get("result")
    if not isinstance(result, list):
        raise ValueError("the answer holds no result vector")
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: no data either


def _percent(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def render(measured: list[Measured], *, window: str, source: str) -> str:
    """The report as a table a person reads (pure)."""
    lines = [
        f"SLO report over the last {window}, from {source}",
        f"  {'objective':<16} {'target':>7} {'measured':>9} {'budget left':>12}  status",
    ]
    for item in measured:
        lines.append(
            f"  {item.objective.title:<16} {_percent(item.objective.target, 1):>7} {_percent(item.ratio, 2):>9} "
            f"{_percent(item.budget_left, 1):>12}  {item.status}"
        )
    missing = [item.objective.title for item in measured if item.ratio is None]
    if missing:
        lines.append(
            f"  no data for {', '.join(missing)}: nothing of that kind happened in the window, "
            "or Prometheus does not scrape it under this job"
        )
    return "\n".join(lines)
