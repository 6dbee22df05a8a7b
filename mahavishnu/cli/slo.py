"""`mahavishnu slo report [--window 30d]`: the four SLOs and their error budgets, from Prometheus.

The mesh serves its metrics; Prometheus keeps their history. The report asks Prometheus
(its HTTP API, `[metrics] prometheus` or --prometheus) for each objective's good and total
counts over the window; the arithmetic is mahavishnu.observability.slo's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.observability import slo
from mahavishnu.runtime.home import Home

QUERY_TIMEOUT_S = 30.0


class SloError(MahavishnuError):
    """Prometheus could not be asked, or refused a query."""


def add(group: argparse.ArgumentParser) -> None:
    actions = group.add_subparsers(dest="slo_command", required=True, metavar="ACTION")
    report = actions.add_parser("report", help="the four SLOs and the error budget left over a window")
    report.add_argument("--window", type=_window, default="30d", help="how far back: 30d (default), 7d, 12h, 90m")
    report.add_argument("--prometheus", metavar="URL", help="the Prometheus to ask (default: [metrics] prometheus)")
    report.add_argument("--job", help="the scrape job of the mesh's metrics (default: [metrics] job)")
    report.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    report.set_defaults(handler=_report)


def _window(text: str) -> str:
    try:
        return slo.parse_window(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _report(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    base = (args.prometheus or settings.metrics.prometheus).rstrip("/")
    job = args.job or settings.metrics.job
    measured = await measure(base, job=job, window=args.window)
    if args.json:
        document = {"window": args.window, "prometheus": base, "job": job}
        print(json.dumps({**document, "objectives": [item.as_json() for item in measured]}, indent=2))
    else:
        print(slo.render(measured, window=args.window, source=f"{base} (job {job!r})"))
    return 0


async def measure(base: str, *, job: str, window: str) -> list[slo.Measured]:
    """Ask Prometheus at `base` for every objective's counts, all queries at once and for one instant.

    One evaluation time for all: `good` and `total` evaluated a scrape apart see different
    extrapolations of increase(), which reads as a ratio below 1 with nothing failed.
    """
    at = f"{time.time():.3f}"
    async with httpx.AsyncClient(base_url=base, timeout=QUERY_TIMEOUT_S) as client:
        pairs = [objective.queries(job=job, window=window) for objective in slo.OBJECTIVES]
        values = await asyncio.gather(*(_ask(client, base, query, at) for pair in pairs for query in pair))
    return [
        slo.Measured(objective, good=values[2 * i], total=values[2 * i + 1])
        for i, objective in enumerate(slo.OBJECTIVES)
    ]


async def _ask(client: httpx.AsyncClient, base: str, query: str, at: str) -> float | None:
    try:
        response = await client.get("/api/v1/query", params={"query": query, "time": at})
    except httpx.HTTPError as exc:
        raise SloError(
            f"cannot reach Prometheus at {base} ({exc.__class__.__name__}: {exc}): start it, or pass "
            "--prometheus URL (or set [metrics] prometheus in mahavishnu.toml)"
        ) from None
    try:
        return slo.scalar(response.json())
    except ValueError as exc:  # also a body that is not JSON: not a Prometheus at that address
        raise SloError(
            f"Prometheus at {base} did not answer the query {query!r} (HTTP {response.status_code}: {exc}); "
            "check that the URL is Prometheus's own"
        ) from None
