"""The campaign orchestrator: the service in `up` that runs fleet campaigns (ADR 0015).

It follows the CAMPAIGNS stream from its start and folds each campaign's events
(core.campaigns.state), so a crashed orchestrator resumes from the stream alone. Each of
its decisions is an event there, appended before it acts, with a deterministic event id
(its Nats-Msg-Id: an append retried after a crash is stored once):

    start       CampaignTargeted (the targets in chunks, each with its wave), CampaignStarted,
                CampaignWaveOpened(0), once the schedule allows (windows.is_open)
    notify      ExecutionNotified, THEN the command (delivery.send) with the id of
                (campaign, device, attempt): at the pace (pace.budget over the times of the
                notifications of the last 60 s, read from the stream), only while running
                and inside the schedule
    outcomes    ExecutionChanged from the devices' command reports (outcomes.py: a durable
                consumer of its own, acknowledged once the change is stored)
    judge       after each outcome: abort rules (rules.fired) and wave gates (gates.decide)
    timeouts    ExecutionChanged(timed_out) for executions past in_progress_timeout (a tick
                of TICK_S), and the command canceled if its device has not taken it
    retries     a new attempt for failed or timed out executions with retries left
    stop        cancel (operator's or the schedule's end), abort: executions not taken are canceled

On resume, each execution still queued is looked up on COMMANDS by its subject and sent
only if it is not there: one attempt is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import islice

from core import subjects
from core.campaigns.spec import AtEnd, GateAction, RuleAction, TargetMode
from core.campaigns.state import CampaignView, Execution, apply
from core.campaigns.states import OVER, CampaignStatus, ExecutionState
from core.errors import MahavishnuError
from core.events import (
    CampaignAborted,
    CampaignCanceled,
    CampaignEvent,
    CampaignFinished,
    CampaignPaused,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    Event,
    ExecutionChanged,
    ExecutionNotified,
)
from core.events.base import utc_now
from core.store import EventStore
from core.store.records import StoredEvent
from mahavishnu.campaigns import delivery, gates, pace, plan, rules, targeting, windows
from mahavishnu.campaigns.fleetwatch import FleetChanges
from mahavishnu.campaigns.metrics import OrchestratorMetrics
from mahavishnu.campaigns.outcomes import Outcomes, Report
from mahavishnu.control.requests import request_applied

log = logging.getLogger("mahavishnu.campaigns")

ACTOR = "orchestrator"
TICK_S = 0.25  # timeouts are recorded within a tick (plus an append) of their moment
IDLE_S = 1.0  # with no campaign under way: how soon a new one (or an operator's step) is seen
NOTIFY_BATCH = 50  # notifications per round, so outcomes (and an abort) are never held up long
TARGET_CHUNK = 500  # devices per campaign.targeted event
READ_BATCH = 1000
DEVICES_SOURCE = "mesh.evt.device.>"  # the devices read model's source (projections.devices), for its position
RETRY_S = 2.0  # after a failed step (the query service not answering, say)
RETARGET_EVERY_S = 300.0  # a continuous campaign asks which devices match now at least this often
SETTLE_S = 10.0  # how long the devices read model may take to apply a change before it is asked


class Orchestrator:
    """Runs every campaign on the CAMPAIGNS stream; `run(stop)` until `stop` is set."""

    def __init__(
        self,
        store: EventStore,
        *,
        metrics: OrchestratorMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        site_of: Callable[[str], str] = lambda device_id: "",
    ) -> None:
        """`site_of(device)`: the JetStream API of the edge site the device belongs to, "" for the hub's own
        (what commands.cancel needs to cancel a site device's command there too)."""
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.site_of = site_of
        self.views: dict[str, CampaignView] = {}
        self.position = 0  # the last CAMPAIGNS sequence applied
        self.mine: set[str] = set()  # ids of events appended and applied here, not applied again when read back
        # per campaign: notification event id -> its time (epoch s), the last 60 s of them: the pace
        self.recent: dict[str, dict[str, float]] = {}
        self.unconfirmed: dict[str, set[str]] = {}  # per campaign: devices whose queued attempt may be unsent
        self.settled: set[str] = set()  # campaigns with nothing left to do (see `active`)
        self.failed_until: dict[str, float] = {}  # campaigns whose last step failed: left alone until then
        self.to_stop: dict[str, bool] = {}  # campaigns whose untaken executions to cancel -> force
        # continuous campaigns: (fleet changes seen, when) at their last query of the devices read model
        self.retargeted: dict[str, tuple[int, float]] = {}
        self.changes: FleetChanges | None = None
        self.changed_at = 0  # the last sequence on EVENTS of the fleet changes seen so far
        self.wake = asyncio.Event()
        self.ready = asyncio.Event()  # set once caught up with the stream and following the reports

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.catch_up()
        log.info(
            "following campaigns",
            extra={
                "campaigns": sum(1 for v in self.views.values() if v.status not in OVER),
                "position": self.position,
                "to_look_up": sum(len(devices) for devices in self.unconfirmed.values()),
            },
        )
        async with Outcomes(self.store, self.wake) as outcomes, FleetChanges(self.store.nc) as changes:
            self.changes = changes
            self.ready.set()
            while not stop.is_set():
                self.wake.clear()
                for report in outcomes.take():
                    try:
                        await self.report(report)
                    except MahavishnuError as exc:  # unacknowledged, it comes back after outcomes.ACK_WAIT_S
                        log.warning(
                            "command report not recorded", extra={"command": report.command_id, "reason": str(exc)}
                        )
                        continue
                    await report.ack()
                await self.catch_up()
                delay = TICK_S if self.active() else IDLE_S
                clock = asyncio.get_running_loop().time()
                for campaign_id in self.active():
                    if clock < self.failed_until.get(campaign_id, 0.0):
                        continue
                    try:
                        delay = min(delay, await self.step(self.views[campaign_id]))
                    except Exception as exc:  # one campaign's trouble must not stop the others: retried in RETRY_S
                        self.failed_until[campaign_id] = clock + RETRY_S
                        log.warning(
                            "campaign step failed",
                            extra={"campaign": campaign_id, "reason": f"{type(exc).__name__}: {exc}"},
                            exc_info=None if isinstance(exc, MahavishnuError) else exc,
                        )
                await _first(stop, self.wake, max(delay, 0.01))

    def active(self) -> list[str]:
        """The campaigns with something left to do: not over, or with executions still under way or to stop.

        Over ones whose executions all ended are settled once and then skipped: a mesh keeps
        every campaign it ever ran on its stream, and each round must not walk them all.
        """
        for campaign_id, view in self.views.items():
            if campaign_id in self.settled or campaign_id in self.to_stop:
                continue
            stopped = view.status in OVER or (
                view.status == CampaignStatus.ABORTED and view.abort_action != RuleAction.ROLLBACK
            )
            if stopped and plan.all_ended(view):
                self.settled.add(campaign_id)
        return [campaign_id for campaign_id in self.views if campaign_id not in self.settled]

    async def catch_up(self) -> None:
        """Apply what CAMPAIGNS holds after the last event applied."""
        while True:
            raws, more = await self.store.read_after(subjects.campaign_events(), self.position + 1, batch=READ_BATCH)
            for raw in raws:
                stored = StoredEvent.of(raw.stream, raw.seq, raw.subject, raw.data)
                self.position = raw.seq
                if stored.event is None:
                    log.warning("campaign event skipped", extra={"seq": raw.seq, "reason": stored.error})
                elif stored.event.event_id in self.mine:
                    self.mine.discard(stored.event.event_id)
                else:
                    self._apply(stored.event)
                    if isinstance(stored.event, ExecutionNotified):
                        # notified by an earlier run (or by an append that failed to answer): perhaps unsent
                        self.unconfirmed.setdefault(stored.event.campaign_id, set()).add(stored.event.device_id)
            if not more or not raws:
                return

    def _apply(self, event: Event) -> None:
        if not isinstance(event, CampaignEvent):
            return
        view = apply(self.views.get(event.campaign_id), event)
        if view is None:
            return
        self.views[event.campaign_id] = view
        self.settled.discard(event.campaign_id)
        match event:
            case ExecutionNotified() if (self.clock() - event.occurred_at).total_seconds() < pace.WINDOW_S:
                self.recent.setdefault(event.campaign_id, {})[event.event_id] = event.occurred_at.timestamp()
            case ExecutionChanged():
                execution = view.executions.get(event.device_id)
                if execution is None or execution.ended:
                    self.unconfirmed.get(event.campaign_id, set()).discard(event.device_id)
            case CampaignCanceled(force=force):
                self.to_stop[event.campaign_id] = force or self.to_stop.get(event.campaign_id, False)
            case CampaignAborted():
                self.to_stop.setdefault(event.campaign_id, False)

    async def record(self, *events: Event) -> None:
        """Append the events (one after the other, each deduplicated by its id), applying each once stored."""
        for event in events:
            await self.store.append(event)
            self.mine.add(event.event_id)
            self._apply(event)

    # --- one campaign ------------------------------------------------------------------

    async def step(self, view: CampaignView) -> float:
        """Do what `view` needs now; returns in how many seconds to look again at the latest."""
        now = self.clock()
        await self._timeouts(view, now)
        if view.campaign_id in self.to_stop:
            await self._stop_executions(view, force=self.to_stop.pop(view.campaign_id))
        if view.status == CampaignStatus.ABORTED and view.abort_action == RuleAction.ROLLBACK:
            await self._confirm(view)
            return await self._notify(view, now, plan.rollbacks)
        if view.status in OVER or view.status == CampaignStatus.ABORTED:
            return TICK_S
        schedule = view.spec.schedule
        if schedule.end is not None and now >= schedule.end:
            await self._end(view)
            return TICK_S
        if view.status == CampaignStatus.CREATED:
            if not windows.is_open(schedule, now):
                return TICK_S
            await self._start(view)
        await self.judge(view)
        if view.status != CampaignStatus.RUNNING:
            return TICK_S
        await self._confirm(view)
        if view.spec.targets.mode == TargetMode.CONTINUOUS:
            await self._retarget(view)
        delay = await self._notify(view, now, plan.due) if windows.is_open(schedule, now) else TICK_S
        reason = plan.over(view)
        if reason is not None:
            await self.record(
                CampaignFinished(
                    event_id=f"{view.campaign_id}.finished", campaign_id=view.campaign_id, reason=reason, actor=ACTOR
                )
            )
        return delay

    async def _start(self, view: CampaignView) -> None:
        """Record the targets (before `started`: a start cut short by a crash is taken again), start, open wave 0."""
        campaign = view.campaign_id
        found = await targeting.resolve(self.store.nc, view.spec)
        by_wave: dict[int, list[str]] = {}
        for device, wave in found.items():
            by_wave.setdefault(wave, []).append(device)
        for wave, devices in sorted(by_wave.items()):
            for index, chunk in enumerate(_chunks(devices, TARGET_CHUNK)):
                await self.record(
                    CampaignTargeted(
                        event_id=f"{campaign}.targeted.{wave}.{index}",
                        campaign_id=campaign,
                        devices=chunk,
                        wave=wave,
                        actor=ACTOR,
                    )
                )
        if self.changes is not None:  # what it just found counts as its first look
            self.retargeted[campaign] = (self.changes.version, asyncio.get_running_loop().time())
        await self.record(
            CampaignStarted(event_id=f"{campaign}.started", campaign_id=campaign, actor=ACTOR),
            CampaignWaveOpened(
                event_id=f"{campaign}.wave.0", campaign_id=campaign, wave=0, reason="start", actor=ACTOR
            ),
        )

    async def _retarget(self, view: CampaignView) -> None:
        """A continuous campaign: devices that match now and are not targets yet join the newest open wave.

        Asked when the fleet changed since its last look (fleetwatch.py), once the devices
        read model applied the change, and every RETARGET_EVERY_S anyway.
        """
        assert self.changes is not None
        clock = asyncio.get_running_loop().time()
        seen, at = self.retargeted.get(view.campaign_id, (-1, 0.0))
        if seen == self.changes.version and clock - at < RETARGET_EVERY_S:
            return
        version = self.changes.version
        for subject in self.changes.take():
            self.changed_at = max(self.changed_at, await self.store.last_subject_sequence(subject))
        if self.changed_at:
            await request_applied(self.store.nc, "devices", {DEVICES_SOURCE: self.changed_at}, timeout_s=SETTLE_S)
        found = await targeting.resolve(self.store.nc, view.spec)
        self.retargeted[view.campaign_id] = (version, clock)
        await self._remove(view, [device for device in view.targets if device not in found])
        late = [device for device in found if device not in view.targets]
        wave = max(view.waves_open - 1, 0)
        for chunk in _chunks(late, TARGET_CHUNK):
            await self.record(
                CampaignTargeted(
                    event_id=f"{view.campaign_id}.targeted.late.{chunk[0]}",
                    campaign_id=view.campaign_id,
                    devices=chunk,
                    wave=wave,
                    actor=ACTOR,
                )
            )

    async def _notify(
        self, view: CampaignView, now: datetime, due: Callable[[CampaignView, int], list[plan.Attempt]]
    ) -> float:
        """Notify what `due` says (plan.due, plan.rollbacks) within the pace; returns when to look again."""
        campaign, moment = view.campaign_id, now.timestamp()
        recent = self.recent.setdefault(campaign, {})
        for event_id, at in list(recent.items()):
            if moment - at >= pace.WINDOW_S:
                del recent[event_id]
        counts = view.counts()
        allowed, again = pace.budget(
            view.spec.pace,
            list(recent.values()),
            moment,
            notified=len(view.executions),
            succeeded=counts[ExecutionState.SUCCEEDED.value],
        )
        attempts = due(view, min(allowed, NOTIFY_BATCH))
        for attempt in attempts:
            command_id = attempt.command_id(campaign)
            await self.record(
                ExecutionNotified(
                    event_id=f"{command_id}.notified",
                    campaign_id=campaign,
                    device_id=attempt.device_id,
                    attempt=attempt.attempt,
                    command_id=command_id,
                    wave=attempt.wave,
                    rollback=attempt.rollback,
                    actor=ACTOR,
                )
            )
            await self._send(view, view.executions[attempt.device_id])
        if len(attempts) == NOTIFY_BATCH:
            return 0.0  # more may be due: after the outcomes that came meanwhile
        return again if allowed == 0 else TICK_S

    async def _send(self, view: CampaignView, execution: Execution) -> None:
        try:
            sent = await delivery.send(self.store, view, execution)
        except MahavishnuError as exc:  # notified but perhaps not sent: looked up and sent on a later round
            self.unconfirmed.setdefault(view.campaign_id, set()).add(execution.device_id)
            log.warning("campaign command not sent", extra={"command": execution.command_id, "reason": str(exc)})
            return
        if sent is None:  # a rollback with nothing to restore
            nothing = delivery.NO_EARLIER_VERSION if view.spec.document.update else delivery.NOTHING_TO_ROLL_BACK
            await self._change(view, execution, ExecutionState.SUCCEEDED, nothing)

    async def _confirm(self, view: CampaignView) -> None:
        """Send the queued attempts that were notified but perhaps not sent (a crash between the two): only
        those whose command is not on COMMANDS."""
        waiting = self.unconfirmed.pop(view.campaign_id, set())
        for device in waiting:
            execution = view.executions.get(device)
            if execution is None or execution.state != ExecutionState.QUEUED:
                continue
            if view.status != CampaignStatus.RUNNING and not execution.rollback:
                continue  # stopped meanwhile: what was not sent stays unsent (and is canceled or times out)
            if not await delivery.was_sent(self.store, device, execution.command_id):
                log.info("sending a notified command found unsent", extra={"command": execution.command_id})
                await self._send(view, execution)

    # --- outcomes and what they decide -------------------------------------------------

    async def report(self, report: Report) -> None:
        """Record what a device's command report means for its campaign execution, then judge the campaign."""
        found = plan.outcome(self.views, report.command_id, report.device_id, report.state, report.detail)
        if found == "foreign":
            if self.metrics is not None:
                self.metrics.foreign_reports.inc()
            log.info(
                "a report of no campaign execution ignored",
                extra={"device": report.device_id, "command": report.command_id},
            )
            return
        if found is None:
            return
        view = self.views[found.campaign_id]
        await self._change(view, view.executions[found.device_id], found.state, found.detail)
        await self.judge(view)

    async def _remove(self, view: CampaignView, gone: list[str]) -> None:
        """Targets of a continuous campaign that no longer match it are removed (AWS IoT Jobs' REMOVED):
        one not notified yet never will be, one whose command waits untaken has it canceled. One whose
        device took its command already runs to its end, and is recorded as it ends."""
        detail = "no longer a target: it stopped matching the campaign's filter"
        for device in gone:
            execution = view.executions.get(device)
            if execution is None:
                await self.record(
                    ExecutionChanged(
                        event_id=f"{view.campaign_id}.{device}.removed",
                        campaign_id=view.campaign_id,
                        device_id=device,
                        attempt=0,
                        state=ExecutionState.REMOVED,
                        detail=detail,
                        actor=ACTOR,
                    )
                )
            elif execution.state == ExecutionState.QUEUED and await delivery.cancel(
                self.store, device, execution.command_id, reason=detail, site_of=self.site_of
            ):
                await self._change(view, execution, ExecutionState.REMOVED, detail)

    async def _change(self, view: CampaignView, execution: Execution, state: ExecutionState, detail: str) -> None:
        await self.record(
            ExecutionChanged(
                event_id=f"{execution.command_id}.{state.value}{'.rollback' if execution.rollback else ''}",
                campaign_id=view.campaign_id,
                device_id=execution.device_id,
                attempt=execution.attempt,
                state=state,
                detail=detail,
                rollback=execution.rollback,
                actor=ACTOR,
            )
        )

    async def judge(self, view: CampaignView) -> None:
        """Abort rules, then wave gates, on the counts as they are now."""
        if view.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
            return
        campaign = view.campaign_id
        fired = rules.fired(view.spec.abort, view.counts(), acknowledged=view.acknowledged)
        if fired is not None:
            if fired.rule.action == RuleAction.PAUSE:
                if view.status == CampaignStatus.RUNNING:
                    await self.record(
                        CampaignPaused(
                            event_id=f"{campaign}.{fired.name}.{len(view.acknowledged)}",
                            campaign_id=campaign,
                            reason="an abort rule fired",
                            rule=fired.text,
                            actor=ACTOR,
                        )
                    )
                return
            await self.record(
                CampaignAborted(
                    event_id=f"{campaign}.aborted",
                    campaign_id=campaign,
                    rule=fired.text,
                    action=fired.rule.action,
                    actor=ACTOR,
                )
            )
            return
        decision = gates.decide(view)
        if decision is None:
            return
        if decision.action == GateAction.NEXT_WAVE:
            await self.record(
                CampaignWaveOpened(
                    event_id=f"{campaign}.wave.{decision.wave + 1}",
                    campaign_id=campaign,
                    wave=decision.wave + 1,
                    reason=decision.text,
                    actor=ACTOR,
                )
            )
        elif decision.action == GateAction.PAUSE:
            await self.record(
                CampaignPaused(
                    event_id=f"{campaign}.{decision.name}.{len(view.acknowledged)}",
                    campaign_id=campaign,
                    reason="a wave's gate",
                    rule=decision.text,
                    actor=ACTOR,
                )
            )
        else:
            await self.record(
                CampaignAborted(
                    event_id=f"{campaign}.aborted",
                    campaign_id=campaign,
                    rule=decision.text,
                    action=RuleAction.CANCEL,
                    actor=ACTOR,
                )
            )

    async def _timeouts(self, view: CampaignView, now: datetime) -> None:
        limit = plan.time_limit(view.spec.execution)
        for execution in plan.overdue(view, now):
            was = execution.state
            await self._change(view, execution, ExecutionState.TIMED_OUT, f"still {was} after {limit:g} s")
            if was == ExecutionState.QUEUED:
                await delivery.cancel(
                    self.store, execution.device_id, execution.command_id, reason="timed out", site_of=self.site_of
                )

    async def _stop_executions(self, view: CampaignView, *, force: bool) -> None:
        """Cancel the executions whose devices have not taken their commands; with `force`, record those in
        progress as canceled too (a taken command cannot be withdrawn: its device may still finish it, and
        that ending is then ignored)."""
        # An aborted campaign's rollbacks are what it does next, not what it stops.
        rolling = view.status == CampaignStatus.ABORTED
        for execution in [e for e in view.executions.values() if not e.ended and not (rolling and e.rollback)]:
            if execution.state == ExecutionState.QUEUED and await delivery.cancel(
                self.store,
                execution.device_id,
                execution.command_id,
                reason=f"campaign {view.status}",
                site_of=self.site_of,
            ):
                await self._change(view, execution, ExecutionState.CANCELED, f"the campaign was {view.status}")
            elif force:
                await self._change(
                    view, execution, ExecutionState.CANCELED, "canceled by force; its device had already taken it"
                )

    async def _end(self, view: CampaignView) -> None:
        """The schedule's end: stop notifying (finished), or cancel."""
        campaign = view.campaign_id
        if view.spec.schedule.at_end == AtEnd.CANCEL:
            await self.record(
                CampaignCanceled(
                    event_id=f"{campaign}.canceled.end", campaign_id=campaign, reason="the schedule ended", actor=ACTOR
                )
            )
        else:
            await self.record(
                CampaignFinished(
                    event_id=f"{campaign}.finished", campaign_id=campaign, reason="the schedule ended", actor=ACTOR
                )
            )


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    iterator = iter(items)
    return list(iter(lambda: list(islice(iterator, size)), []))


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Wait until `stop` or `wake` is set, or `timeout` passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
