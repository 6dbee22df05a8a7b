"""`campaigns.list` and `campaigns.get`: fleet campaigns, their counts per state and per wave, and the rule that fired.

    campaigns.list {limit, after, status}  -> {"campaigns": [{id, name, status, counts, rule,
                                              created_at, created_by}, ...], "next": id | null}
    campaigns.get {id}                     -> {"campaign": {id, name, status, counts, waves, rule,
                                              reason, spec, created_at, started_at, ended_at, created_by}}

The list pages newest first (by the stream position of each campaign's `campaign.created`),
at most `limit` (1..PAGE_MAX) after the cursor `after`: the id of the last campaign of the
previous page, its `next`. A caller pages until `next` is null and meets every campaign
once; one created meanwhile comes first in a new listing, not in the pages that follow.
The counts are the campaigns read model's (projections.campaigns): the orchestrator's own fold.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from core.campaigns.ids import is_campaign_id
from core.campaigns.states import CampaignStatus
from projections.reading import QueryError, ReadModels, read_rows

PAGE_MAX = 1000
PAGE_DEFAULT = 100


class CampaignList(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = PAGE_DEFAULT
    after: str | None = None  # a cursor: the campaigns created before this one (a previous answer's `next`)
    status: CampaignStatus | None = None


class CampaignGet(msgspec.Struct, forbid_unknown_fields=True):
    id: str


def _checked(campaign_id: str, what: str) -> str:
    if not is_campaign_id(campaign_id):
        raise QueryError(400, f"bad request: {what} {campaign_id!r} is not a campaign id (cp- and 12 hex digits)")
    return campaign_id


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["campaign_id"],
        "name": row["name"],
        "status": row["status"],
        "counts": json.loads(row["counts"]),
        "rule": row["rule"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }


async def campaigns_list(models: ReadModels, request: CampaignList) -> dict[str, Any]:
    """A page of campaigns, newest first, and the cursor to the next; only those in `status` when given."""
    if not 1 <= request.limit <= PAGE_MAX:
        raise QueryError(400, f"bad request: limit must be 1..{PAGE_MAX}; page with `after` for more")
    conditions: list[str] = []
    params: dict[str, object] = {"limit": request.limit + 1}  # one more than the page: is there another?
    if request.after is not None:
        params["after"] = _checked(request.after, "after")
        found = await read_rows(
            models, "campaigns", "SELECT created_seq FROM campaigns WHERE campaign_id = :after", **params
        )
        if not found:
            raise QueryError(400, f"bad request: after: no campaign {request.after!r}; start again without `after`")
        conditions.append("created_seq < :before")
        params["before"] = found[0]["created_seq"]
    if request.status is not None:
        conditions.append("status = :status")
        params["status"] = request.status.value
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        "SELECT campaign_id, name, status, counts, rule, created_at, created_by FROM campaigns"
        f" {where} ORDER BY created_seq DESC LIMIT :limit"
    )
    rows = await read_rows(models, "campaigns", sql, **params)
    page = [_listed(row) for row in rows[: request.limit]]
    return {"campaigns": page, "next": page[-1]["id"] if len(rows) > request.limit else None}


async def campaigns_get(models: ReadModels, request: CampaignGet) -> dict[str, Any]:
    """One campaign: its counts per state, per-wave progress, the rule that fired and its spec; 404 if unknown."""
    rows = await read_rows(
        models, "campaigns", "SELECT * FROM campaigns WHERE campaign_id = ?", _checked(request.id, "id")
    )
    if not rows:
        raise QueryError(404, f"no campaign {request.id!r}: `mahavishnu campaign list` lists them")
    row = rows[0]
    return {
        "campaign": {
            **_listed(row),
            "waves": json.loads(row["waves"]),
            "reason": row["reason"],
            "spec": json.loads(row["spec"]),
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
        }
    }


CAMPAIGN_QUERIES: dict[str, tuple[type[Any], Any]] = {
    "campaigns.list": (CampaignList, campaigns_list),
    "campaigns.get": (CampaignGet, campaigns_get),
}
