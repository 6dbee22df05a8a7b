"""Campaigns as the running `up` reads them: the read model, its queries, its metrics, a rebuild by the running mesh.

The campaign's events are appended straight to CAMPAIGNS, as an orchestrator would (its own
tests run it); `up` keeps the campaigns read model and answers mesh.q.campaigns.*. `up`'s
own orchestrator follows them too: their schedule's only window opens one second a year, so
it notifies none of their devices, whose states this test writes itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from core.campaigns.ids import new_campaign_id
from core.campaigns.spec import Schedule, Window
from core.campaigns.states import ExecutionState
from core.store import EventStore, Identity, connect
from tests.mahavishnu.cli_harness import Running, run, scrape_metrics
from tests.projections.campaign_life import aborted, executions, finished, started
from tests.waiting import eventually_async, wait_until

SHUT = Schedule(windows=[Window(cron="0 0 1 1 *", duration_s=1)])  # open at 00:00:00 UTC on 1 January only


async def campaign(nc: Client, campaign_id: str) -> dict[str, Any] | None:
    reply = await nc.request("mesh.q.campaigns.get", json.dumps({"id": campaign_id}).encode(), timeout=10)
    return json.loads(reply.data)["campaign"] if reply.data else None


async def test_up_keeps_the_campaigns_read_model_its_metrics_and_rebuilds_it(up: Running) -> None:
    document = json.loads(run("env", "--json", env=up.env).stdout)
    identity = Identity(document["url"], Path(document["ca"]), Path(document["cert"]), Path(document["key"]))
    one, two = new_campaign_id(), new_campaign_id()
    fleet = [f"dev-{n:03d}" for n in range(20)]
    nc = await connect(identity, name="a-test", reconnect=False)
    try:
        store = EventStore(nc)
        await store.append_many(
            [
                *started(one, fleet, schedule=SHUT),
                *executions(one, fleet[:6], 0, ExecutionState.SUCCEEDED),
                *started(two, fleet, waves=1, schedule=SHUT),
                *executions(two, fleet[:2], 0, ExecutionState.FAILED),
            ]
        )
        seen: dict[str, Any] = {}

        async def counted() -> bool:
            seen.update(one=await campaign(nc, one), two=await campaign(nc, two))
            return bool(seen["one"] and seen["two"] and seen["two"]["counts"]["failed"] == 2)

        await eventually_async(counted, timeout=30, what="both campaigns in the read model")
        assert seen["one"]["counts"]["succeeded"] == 6 and seen["one"]["counts"]["pending"] == 14
        samples = wait_until(
            lambda: (
                (found := scrape_metrics(up)).get(f'mahavishnu_campaign_executions{{campaign="{two}",state="failed"}}')
                == 2.0
                and found
            ),
            timeout=30,
            what="campaign two's executions in the metrics",
        )
        assert samples[f'mahavishnu_campaign_executions{{campaign="{one}",state="succeeded"}}'] == 6.0
        assert samples["mahavishnu_campaigns_aborted_total"] == 0.0

        await store.append_many([aborted(two), finished(one)])
        after = wait_until(
            lambda: (found := scrape_metrics(up)).get("mahavishnu_campaigns_aborted_total") == 1.0 and found,
            timeout=30,
            what="the abort counted",
        )

        async def over() -> bool:
            found = await campaign(nc, one)
            return bool(found and found["status"] == "finished")

        await eventually_async(over, timeout=30, what="campaign one finished")
        assert f'mahavishnu_campaign_executions{{campaign="{two}",state="failed"}}' in after  # aborted, not over
        wait_until(
            lambda: (found := scrape_metrics(up)) and not [name for name in found if f'campaign="{one}"' in name],
            timeout=30,
            what="the finished campaign's series gone",
        )

        live = await campaign(nc, two)
        rebuilt = run("projections", "rebuild", "campaigns", env=up.env)
        assert rebuilt.returncode == 0 and "rebuilt by the running mesh" in rebuilt.stdout, rebuilt.stderr
        assert await campaign(nc, two) == live  # counts rebuilt from the stream equal the live ones
        # And after the rebuild it goes on, its memory of the campaign recalled from the stream.
        await store.append_many(executions(two, fleet[2:5], 0, ExecutionState.SUCCEEDED))

        async def went_on() -> bool:
            found = await campaign(nc, two)
            return bool(found and found["counts"]["succeeded"] == 3 and found["counts"]["failed"] == 2)

        await eventually_async(went_on, timeout=30, what="the rebuilt read model going on")
    finally:
        await nc.close()
