"""What the orchestrator counts for /metrics (the campaigns' own gauges are the read model's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class OrchestratorMetrics:
    """foreign_reports: reports of commands shaped like a campaign's that are no execution of that campaign
    (a device answering a campaign it was not part of): ignored, and counted here."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.foreign_reports = Counter(
            "mahavishnu_campaign_foreign_reports_total",
            "Reports of campaign commands that were no execution of that campaign, ignored.",
            registry=registry,
        )
