"""The `campaigns` read model: each campaign's status, its counts per state and per wave, and the rule that fired.

It reads the CAMPAIGNS stream and folds each campaign with core.campaigns.state.apply, the
fold the orchestrator resumes from, so the counts it stores are the ones the orchestrator
acts on. That fold needs a campaign's executions, so each campaign's view stays in memory
while its events come (projections.projection.Remembers), and applying one event costs the
devices it touches (the fold keeps the counts), never the size of the campaign. After a
restart, a rebuild or a failed batch the memory is empty; the runner recalls a campaign from
its own subjects before the first batch that needs it. A campaign that is over (finished,
canceled) leaves memory at the next batch that does not name it.

The metrics (core.metrics.CampaignMetrics) follow as events apply: the executions per state
of each campaign not over, and the campaigns aborted. They describe what happens now, so a
rebuild (which replays in a child process, without them) does not count old aborts again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from core import subjects
from core.campaigns.state import CampaignView, apply, fold
from core.campaigns.states import OVER, CampaignStatus
from core.events import Event
from core.events.campaign import CampaignCreated, CampaignEvent
from core.metrics import CampaignMetrics
from projections.projection import Park, Statement

SOURCE = subjects.campaign_events()

_COLUMNS = (
    "campaign_id, created_seq, name, status, counts, waves, rule, reason, spec, created_at, created_by,"
    " started_at, ended_at, seq"
)
_CREATE = (
    f"INSERT INTO campaigns ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (campaign_id) DO UPDATE SET status = excluded.status, counts = excluded.counts,"
    " waves = excluded.waves, rule = excluded.rule, reason = excluded.reason, started_at = excluded.started_at,"
    " ended_at = excluded.ended_at, seq = excluded.seq"
)
_UPDATE = (
    "UPDATE campaigns SET status = ?, counts = ?, waves = ?, rule = ?, reason = ?, started_at = ?, ended_at = ?,"
    " seq = ? WHERE campaign_id = ?"
)

_json = msgspec.json.Encoder()


def campaign_of(subject: str) -> str:
    """The campaign a subject of the CAMPAIGNS stream is about (mesh.campaign.<campaign>.…) (pure)."""
    return subject.split(".", 3)[2]


def _is_token(value: str) -> bool:
    try:
        subjects.token(value)
    except ValueError:
        return False
    return True


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Campaigns:
    name: str = "campaigns"
    version: int = 1
    sources: tuple[str, ...] = (SOURCE,)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS campaigns ("
        " campaign_id TEXT PRIMARY KEY, created_seq INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,"
        " counts TEXT NOT NULL, waves TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, spec TEXT NOT NULL,"
        " created_at TEXT NOT NULL, created_by TEXT NOT NULL, started_at TEXT, ended_at TEXT, seq INTEGER NOT NULL)",
        # campaigns.list pages newest first (by the stream position of `campaign.created`), all or by status.
        "CREATE INDEX IF NOT EXISTS campaigns_by_creation ON campaigns (created_seq)",
        "CREATE INDEX IF NOT EXISTS campaigns_by_status ON campaigns (status, created_seq)",
    )

    # Recalled when the file opens: the campaigns not over, so that their metrics show before their next event.
    awake: str = "SELECT campaign_id FROM campaigns WHERE status NOT IN ({})".format(
        ", ".join(f"'{status.value}'" for status in sorted(OVER))
    )

    def __init__(self, metrics: CampaignMetrics | None = None) -> None:
        self.metrics = metrics
        self.views: dict[str, CampaignView] = {}

    # A rebuild's bulk loader gets a pickled copy: it starts from sequence 1 with an empty
    # memory, and without the metrics, which are this process's.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, _: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, event: Event, seq: int) -> list[Statement]:
        if not isinstance(event, CampaignEvent):
            raise Park(f"{event.tag} on a campaign subject is not a campaign event")
        key = event.campaign_id
        view = self.views.get(key)
        if view is None and not isinstance(event, CampaignCreated):
            raise Park(f"{event.tag} of campaign {key}, which was never created")
        was = view.status if view is not None else None
        view = apply(view, event)
        assert view is not None  # created, or held already
        view.last_sequence = seq
        self.views[key] = view
        counts = view.counts()
        self._measure(view, was, counts)
        changing = (
            view.status.value,
            _json.encode(counts).decode(),
            _json.encode(view.wave_counts()).decode(),
            view.rule,
            view.reason,
            _when(view.started_at),
            _when(view.ended_at),
            seq,
        )
        if isinstance(event, CampaignCreated):
            row = (key, seq, view.spec.name, *changing[:5], _json.encode(view.spec).decode())
            return [(_CREATE, (*row, _when(view.created_at), view.created_by, *changing[5:]))]
        return [(_UPDATE, (*changing, key))]

    def _measure(self, view: CampaignView, was: CampaignStatus | None, counts: dict[str, int]) -> None:
        if self.metrics is None:
            return
        if view.status == CampaignStatus.ABORTED and was != CampaignStatus.ABORTED:
            self.metrics.aborted.inc()
        if view.status in OVER:
            self.metrics.drop(view.campaign_id, counts)
        else:
            self.metrics.show(view.campaign_id, counts)

    # --- memory (projections.projection.Remembers) ---------------------------------------

    def missing(self, batch: Sequence[str]) -> list[str]:
        named = dict.fromkeys(campaign_of(subject) for subject in batch)
        for key in [key for key, view in self.views.items() if view.status in OVER and key not in named]:
            del self.views[key]
        # A name that cannot be a subject token has no history to read: its events are parked.
        return [key for key in named if key not in self.views and _is_token(key)]

    def history(self, key: str) -> str:
        return subjects.campaign_events(key)

    def recall(self, key: str, events: Sequence[Event]) -> None:
        view = fold(list(events))
        if view is not None:
            self.views[key] = view
            if self.metrics is not None and view.status not in OVER:
                self.metrics.show(key, view.counts())

    def forget(self) -> None:
        self.views.clear()
